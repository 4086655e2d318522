//! The binary's sizes: as shipped, stripped, and compressed with `gzip -9` and `zstd -19`
//! (in process, with flate2 and zstd at those levels).

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use super::measure::{GZIP_LEVEL, ZSTD_LEVEL};
use super::model::{BinaryReport, BinarySource};
use crate::elf::strip;

/// Measures `bytes`, the binary at `path` (in the image, or on disk).
pub fn measure_binary(path: &str, source: BinarySource, bytes: &[u8]) -> Result<BinaryReport> {
    let elf = crate::elf::parse_elf(Path::new(path), bytes).ok();
    let (stripped, strip_method) = match &elf {
        Some(_) => {
            let (size, method) = strip::stripped_size(Path::new(path), bytes)?;
            (Some(size), Some(method))
        }
        None => (None, None),
    };
    let (gzip, zstd) = rayon::join(|| gzip_size(bytes), || zstd_size(bytes));
    Ok(BinaryReport {
        path: path.to_owned(),
        source,
        size: bytes.len() as u64,
        built: None,
        stripped,
        strip_method,
        already_stripped: elf.as_ref().is_some_and(|e| e.stripped),
        gzip: gzip?,
        zstd: zstd?,
        linkage: elf.as_ref().map(|e| e.linkage.as_str().to_owned()),
        machine: elf.as_ref().map(|e| e.machine.clone()),
    })
}

/// Reads and measures a binary on disk (`--binary FILE`).
pub fn measure_binary_file(path: &Path) -> Result<BinaryReport> {
    let bytes = crate::elf::read_binary(path)?;
    measure_binary(&path.display().to_string(), BinarySource::File, &bytes)
}

/// `gzip -9` size of `bytes`.
pub fn gzip_size(bytes: &[u8]) -> Result<u64> {
    let mut encoder =
        flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
    encoder.write_all(bytes).context("gzip")?;
    Ok(encoder.finish().context("gzip")?.len() as u64)
}

/// `zstd -19` size of `bytes`.
pub fn zstd_size(bytes: &[u8]) -> Result<u64> {
    Ok(zstd::bulk::compress(bytes, ZSTD_LEVEL)
        .context("zstd")?
        .len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_sizes_match_the_cli_tools_order_of_magnitude() {
        let text = "the quick brown fox jumps over the lazy dog\n".repeat(1000);
        let gz = gzip_size(text.as_bytes()).unwrap();
        let zst = zstd_size(text.as_bytes()).unwrap();
        assert!(gz < 1000 && zst < 1000, "{gz} {zst}");
        // Both decompress back to the input.
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(9));
        encoder.write_all(text.as_bytes()).unwrap();
        assert_eq!(encoder.finish().unwrap().len() as u64, gz);
    }

    #[test]
    fn non_elf_files_have_no_stripped_size() {
        let report = measure_binary("/etc/motd", BinarySource::File, b"hello\n").unwrap();
        assert_eq!(report.size, 6);
        assert_eq!(report.stripped, None);
        assert_eq!(report.linkage, None);
    }
}
