//! The binary's sizes: as shipped, stripped, and compressed with `gzip -9` and `zstd -19` (in
//! process, on every core, as `image` compresses layers), or taken from its layer's
//! recompression when it is alone in that layer. Never compresses the same bytes twice.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use super::measure::{GZIP_LEVEL, LayerRecompressed, ZSTD_LEVEL};
use super::model::{BinaryReport, BinarySource};
use crate::elf::strip;
use crate::oci::gzip::ParallelGzEncoder;
use crate::oci::layer;

/// Measures `bytes`, the binary at `path` (in the image, or on disk).
pub fn measure_binary(path: &str, source: BinarySource, bytes: &[u8]) -> Result<BinaryReport> {
    measure_binary_in_layer(path, source, bytes, LayerRecompressed::default())
}

/// Measures `bytes`, taking each compressed size its layer's scan already has (`known`) rather
/// than compressing the binary again: `zstd -19` of a large binary takes as long as the whole
/// layer's.
pub fn measure_binary_in_layer(
    path: &str,
    source: BinarySource,
    bytes: &[u8],
    known: LayerRecompressed,
) -> Result<BinaryReport> {
    let elf = crate::elf::parse_elf(Path::new(path), bytes).ok();
    let (stripped, strip_method) = match &elf {
        Some(_) => {
            let (size, method) = strip::stripped_size(Path::new(path), bytes)?;
            (Some(size), Some(method))
        }
        None => (None, None),
    };
    let (gzip, zstd) = rayon::join(
        || known.gzip.map_or_else(|| gzip_size(bytes), Ok),
        || known.zstd.map_or_else(|| zstd_size(bytes), Ok),
    );
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

/// Counts the bytes written into it.
#[derive(Default)]
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `gzip -9` size of `bytes`, compressed as `image` does (1 MiB pieces on every core).
pub fn gzip_size(bytes: &[u8]) -> Result<u64> {
    let mut encoder = ParallelGzEncoder::new(Counter::default(), GZIP_LEVEL);
    encoder.write_all(bytes).context("gzip")?;
    Ok(encoder.finish().context("gzip")?.0)
}

/// `zstd -19` size of `bytes`, compressed as `image` does (on zstd's worker threads).
pub fn zstd_size(bytes: &[u8]) -> Result<u64> {
    let mut encoder = layer::zstd_encoder(Counter::default(), ZSTD_LEVEL, layer::zstd_workers())?;
    encoder.write_all(bytes).context("zstd")?;
    Ok(encoder.finish().context("zstd")?.0)
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
        // The sizes of what `image` writes.
        let mut encoder = ParallelGzEncoder::new(Vec::new(), 9);
        encoder.write_all(text.as_bytes()).unwrap();
        assert_eq!(encoder.finish().unwrap().len() as u64, gz);
        let mut encoder = layer::zstd_encoder(Vec::new(), 19, 1).unwrap();
        encoder.write_all(text.as_bytes()).unwrap();
        assert_eq!(encoder.finish().unwrap().len() as u64, zst);
    }

    #[test]
    fn non_elf_files_have_no_stripped_size() {
        let report = measure_binary("/etc/motd", BinarySource::File, b"hello\n").unwrap();
        assert_eq!(report.size, 6);
        assert_eq!(report.stripped, None);
        assert_eq!(report.linkage, None);
    }
}
