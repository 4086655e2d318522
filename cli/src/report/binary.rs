//! The binary's sizes: as shipped; stripped, computed from its ELF headers (the size the
//! in-process strip writes, without writing it); and `gzip -9` and `zstd -19`. A compressed
//! size its layer already gives is taken from it: when the binary is alone in its layer, a
//! gzip layer's blob is its gzip figure (tar headers included), a zstd layer's its zstd
//! figure, and a layer recompressed with the other codec gives that one. What is still missing
//! is compressed as the binary streams past (in process, on every core, as `image` compresses
//! layers), and only when asked for ([`super::measure::Recompress`]).
//!
//! Never holds the binary in memory: it is read in sequential passes (usually one when it is
//! compressed, two when not: the section name table lies before the headers that locate it),
//! keeping only its ELF header tables.

use std::io::{self, Read, Write};
use std::path::Path;

use anyhow::{Context, Result};

use super::measure::{GZIP_LEVEL, LayerRecompressed, ZSTD_LEVEL};
use super::model::{BinaryReport, BinarySource};
use crate::elf::headers::HeaderReader;
use crate::elf::strip::StripMethod;
use crate::input::{self, Links};
use crate::oci::gzip::ParallelGzEncoder;
use crate::oci::layer;

/// Gives a reader at the binary's start, once per call, to the visitor.
pub type Passes<'a> = dyn FnMut(&mut dyn FnMut(&mut dyn Read) -> Result<()>) -> Result<()> + 'a;

/// Measures the binary at `path` (in the image, or on disk), `size` bytes, read by `passes`.
/// `known` are the compressed sizes its layer gives; the others are compressed when
/// `compress`, else left out.
pub fn measure_streamed(
    path: &str,
    source: BinarySource,
    size: u64,
    known: LayerRecompressed,
    compress: bool,
    passes: &mut Passes<'_>,
) -> Result<BinaryReport> {
    let mut compressors = Compressors::new(
        compress && known.gzip.is_none(),
        compress && known.zstd.is_none(),
        size,
    )?;
    let mut headers = HeaderReader::new(size);
    let mut elf = None;
    let mut fed = !compressors.any();
    while elf.is_none() {
        let mut result = Ok(false);
        passes(&mut |reader| {
            let sink = (!fed).then_some(&mut compressors as &mut dyn Write);
            result = headers.pass(reader, sink);
            Ok(())
        })?;
        match result {
            Ok(false) => fed = true,
            Ok(true) => {
                fed = true;
                elf = Some(Ok(()));
            }
            // Not an ELF file (or a broken one): its sizes are still measured, but the pass
            // that found out may have stopped early.
            Err(e) => elf = Some(Err(e)),
        }
    }
    let headers = match elf {
        Some(Ok(())) => Some(std::mem::replace(&mut headers, HeaderReader::new(0)).finish()),
        _ => None,
    }
    .transpose()
    .ok()
    .flatten();
    if headers.is_none() && compressors.any() {
        compressors = Compressors::new(
            compress && known.gzip.is_none(),
            compress && known.zstd.is_none(),
            size,
        )?;
        passes(&mut |reader| {
            io::copy(reader, &mut compressors)?;
            Ok(())
        })?;
    }
    let (gzip, zstd) = compressors.finish()?;
    Ok(BinaryReport {
        path: path.to_owned(),
        source,
        size,
        built: None,
        stripped: headers.as_ref().map(|h| h.stripped_size),
        strip_method: headers.as_ref().map(|_| StripMethod::Headers),
        already_stripped: headers.as_ref().is_some_and(|h| h.stripped),
        gzip: known.gzip.or(gzip),
        zstd: known.zstd.or(zstd),
        linkage: headers.as_ref().map(|h| h.linkage.as_str().to_owned()),
        machine: headers.map(|h| h.machine),
    })
}

/// Measures `bytes`, a binary in memory, compressing it with both codecs.
pub fn measure_binary(path: &str, source: BinarySource, bytes: &[u8]) -> Result<BinaryReport> {
    measure_streamed(
        path,
        source,
        bytes.len() as u64,
        LayerRecompressed::default(),
        true,
        &mut |visit| visit(&mut &bytes[..]),
    )
}

/// Measures a binary on disk (`--binary FILE`), streaming it from the file once per pass;
/// compresses it when `compress`.
pub fn measure_binary_file(path: &Path, compress: bool) -> Result<BinaryReport> {
    let size = input::open_regular(path, Links::Follow)?.size;
    measure_streamed(
        &path.display().to_string(),
        BinarySource::File,
        size,
        LayerRecompressed::default(),
        compress,
        &mut |visit| {
            let file = input::open_regular(path, Links::Follow)?;
            if file.size != size {
                return Err(crate::error::input(format!(
                    "{} changed size while it was measured",
                    path.display()
                )));
            }
            visit(&mut io::BufReader::with_capacity(1 << 20, file.file))
        },
    )
}

/// Counts the bytes written into it.
#[derive(Default)]
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The codecs a binary is still to be compressed with, their output only counted.
struct Compressors {
    gzip: Option<ParallelGzEncoder<Counter>>,
    zstd: Option<zstd::stream::write::Encoder<'static, Counter>>,
}

impl Compressors {
    /// Compressors of `size` bytes.
    fn new(gzip: bool, zstd: bool, size: u64) -> Result<Self> {
        Ok(Compressors {
            gzip: gzip.then(|| ParallelGzEncoder::new(Counter::default(), GZIP_LEVEL)),
            zstd: if zstd {
                Some(layer::zstd_encoder(
                    Counter::default(),
                    ZSTD_LEVEL,
                    layer::zstd_workers(),
                    size,
                )?)
            } else {
                None
            },
        })
    }

    fn any(&self) -> bool {
        self.gzip.is_some() || self.zstd.is_some()
    }

    fn finish(self) -> Result<(Option<u64>, Option<u64>)> {
        let gzip = self
            .gzip
            .map(|e| e.finish().map(|c| c.0))
            .transpose()
            .context("gzip")?;
        let zstd = self
            .zstd
            .map(|e| e.finish().map(|c| c.0))
            .transpose()
            .context("zstd")?;
        Ok((gzip, zstd))
    }
}

impl Write for Compressors {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Both on every core already: one after the other keeps every core busy.
        if let Some(gzip) = &mut self.gzip {
            gzip.write_all(buf)?;
        }
        if let Some(zstd) = &mut self.zstd {
            zstd.write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `gzip -9` size of `bytes`, compressed as `image --level 9` does (libdeflate, 1 MiB pieces on
/// every core).
pub fn gzip_size(bytes: &[u8]) -> Result<u64> {
    let mut encoder = ParallelGzEncoder::new(Counter::default(), GZIP_LEVEL);
    encoder.write_all(bytes).context("gzip")?;
    Ok(encoder.finish().context("gzip")?.0)
}

/// `zstd -19` size of `bytes`, compressed as `image` does (on zstd's worker threads).
pub fn zstd_size(bytes: &[u8]) -> Result<u64> {
    let mut encoder = layer::zstd_encoder(
        Counter::default(),
        ZSTD_LEVEL,
        layer::zstd_workers(),
        bytes.len() as u64,
    )?;
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
        let mut encoder = layer::zstd_encoder(Vec::new(), 19, 1, text.len() as u64).unwrap();
        encoder.write_all(text.as_bytes()).unwrap();
        assert_eq!(encoder.finish().unwrap().len() as u64, zst);
        // Streamed, the same figures.
        let report = measure_binary("/text", BinarySource::File, text.as_bytes()).unwrap();
        assert_eq!((report.gzip, report.zstd), (Some(gz), Some(zst)));
    }

    #[test]
    fn non_elf_files_have_no_stripped_size() {
        let report = measure_binary("/etc/motd", BinarySource::File, b"hello\n").unwrap();
        assert_eq!(report.size, 6);
        assert_eq!(report.stripped, None);
        assert_eq!(report.linkage, None);
        assert!(report.gzip.is_some() && report.zstd.is_some());
    }

    #[test]
    fn known_sizes_are_taken_and_nothing_is_compressed_unless_asked() {
        let own = std::env::current_exe().unwrap();
        let bytes = std::fs::read(&own).unwrap();
        let mut passes = 0;
        let known = LayerRecompressed {
            gzip: Some(7),
            zstd: None,
        };
        let report = measure_streamed(
            "/app",
            BinarySource::Entrypoint,
            bytes.len() as u64,
            known,
            false,
            &mut |visit| {
                passes += 1;
                visit(&mut &bytes[..])
            },
        )
        .unwrap();
        assert_eq!((report.gzip, report.zstd), (Some(7), None));
        assert_eq!(
            report.stripped,
            Some(crate::elf::strip::strip_in_process(&bytes).unwrap().len() as u64)
        );
        assert_eq!(report.strip_method, Some(StripMethod::Headers));
        assert!(passes <= 2, "{passes} passes");
        let file = measure_binary_file(&own, false).unwrap();
        assert_eq!(file.stripped, report.stripped);
        assert_eq!((file.gzip, file.zstd), (None, None));
    }
}
