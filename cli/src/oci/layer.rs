//! Image layers: a deterministic tar from [`TarBuilder`], compressed with gzip or zstd, written
//! as a blob while both the compressed digest (the descriptor) and the uncompressed one (the
//! config's `diff_id`, image-spec `config.md` "layer DiffID") are computed in the same pass.

use std::fmt;
use std::io::{self, Write};
use std::str::FromStr;

use anyhow::{Context, Result};
use oci_spec::image::{Descriptor, MediaType};
use serde::{Deserialize, Serialize};

use crate::digest::{HashingWriter, Sha256Digest};
use crate::error;
use crate::oci::gzip::ParallelGzEncoder;
use crate::oci::layout::{LayoutWriter, descriptor_digest};
use crate::tarball::TarBuilder;

/// How layers are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CompressionKind {
    /// `application/vnd.oci.image.layer.v1.tar+gzip`: every client reads it. Compressed on
    /// every core by libdeflate ([`crate::oci::gzip`]); its levels are libdeflate's.
    #[default]
    Gzip,
    /// `application/vnd.oci.image.layer.v1.tar+zstd`: smaller and faster to unpack; needs
    /// a recent client (containerd 1.5, podman 3, Docker 23).
    Zstd,
}

impl CompressionKind {
    /// The level chosen for size: gzip 7 (libdeflate's fastest level whose layer is no
    /// bigger than GNU `gzip -9` of the binary, in 1 MiB pieces), zstd 19 (`zstd -19`, the
    /// highest level that needs no `--ultra` memory on the unpacking side; with a shorter
    /// target length on inputs up to 6 MiB, [`ZstdPlan`]).
    pub fn default_level(self) -> i32 {
        match self {
            CompressionKind::Gzip => 7,
            CompressionKind::Zstd => 19,
        }
    }

    /// The levels the compressor accepts.
    pub fn levels(self) -> std::ops::RangeInclusive<i32> {
        match self {
            CompressionKind::Gzip => 0..=crate::oci::gzip::MAX_LEVEL as i32,
            CompressionKind::Zstd => 1..=22,
        }
    }

    /// The layer media type.
    pub fn media_type(self) -> MediaType {
        match self {
            CompressionKind::Gzip => MediaType::ImageLayerGzip,
            CompressionKind::Zstd => MediaType::ImageLayerZstd,
        }
    }
}

impl fmt::Display for CompressionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompressionKind::Gzip => "gzip",
            CompressionKind::Zstd => "zstd",
        })
    }
}

impl FromStr for CompressionKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gzip" | "gz" => Ok(CompressionKind::Gzip),
            "zstd" | "zst" => Ok(CompressionKind::Zstd),
            other => Err(error::input(format!(
                "unknown compression `{other}`: use gzip or zstd"
            ))),
        }
    }
}

/// A compression and its level, checked against the levels the compressor accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Compression {
    /// gzip or zstd.
    pub kind: CompressionKind,
    /// The level.
    pub level: i32,
}

impl Compression {
    /// `kind` at `level`, or at its default level when `level` is None.
    pub fn new(kind: CompressionKind, level: Option<i32>) -> Result<Compression> {
        let level = level.unwrap_or_else(|| kind.default_level());
        let levels = kind.levels();
        if !levels.contains(&level) {
            return Err(error::input(format!(
                "compression level {level} is out of range for {kind} (use {} to {})",
                levels.start(),
                levels.end()
            )));
        }
        Ok(Compression { kind, level })
    }

    /// Compresses everything `write` produces into `out`, on every core, the bytes the same
    /// on any machine (layers; `dist`'s archives). `input_bytes`, about how many bytes `write`
    /// produces, is part of the output format for zstd ([`ZstdPlan::for_input`]).
    pub fn compress(
        self,
        out: &mut dyn Write,
        input_bytes: u64,
        write: impl FnOnce(&mut dyn Write) -> Result<()>,
    ) -> Result<()> {
        match self.kind {
            CompressionKind::Gzip => {
                let mut encoder = ParallelGzEncoder::new(out, self.level as u32);
                write(&mut encoder)?;
                encoder.finish().context("cannot finish the gzip stream")?;
            }
            CompressionKind::Zstd => {
                let mut encoder = zstd_encoder(out, self.level, zstd_workers(), input_bytes)?;
                write(&mut encoder)?;
                encoder.finish().context("cannot finish the zstd stream")?;
            }
        }
        Ok(())
    }
}

/// How zstd compresses a stream of about a given size: part of the output format (changing
/// it changes zstd layers' digests), chosen from the level and the number of bytes coming,
/// never from the number of cores, so the bytes are the same on every machine.
///
/// **Jobs.** Every job but the first reloads the end of the one before as history (zstd.h
/// `ZSTD_c_overlapLog`: 5 is a sixteenth of the window, 512 KiB at `-19`; 8 half), at about
/// half the cost of compressing it, and zstd never makes a job smaller than its overlap. A job
/// sees no further back than its overlap, where `zstd -19` on one core sees its whole 8 MiB
/// window. Up to [`ZstdPlan::SMALL`], two jobs of half the input with a short overlap keep a
/// binary of a few MiB on two cores, each taking about as long; they lose matches from
/// further back as the input grows: past about 8 MiB of code, more than 1 % over one thread's
/// `zstd -19` (the test `zstd_19_of_a_large_input_keeps_its_window` builds such an input).
/// Past it, jobs of half the input (4 to 8 MiB) with a 4 MiB overlap keep within it, at more
/// CPU than the small jobs (`cargo xtask bench large` measures the size).
///
/// **Target length.** At the default level, 19, an input up to [`ZstdPlan::SMALL`] is
/// compressed with `ZSTD_c_targetLength` 64 (level 18's) instead of 256: the optimal parser
/// stops extending a match at 64 bytes. That takes about a third less CPU for a few tenths of
/// a percent of size on a binary of a few MiB, where the layer's wall time is one job's
/// (`cargo xtask bench image` measures both); on large inputs with debug info the long matches
/// are worth about 2 %, and a large layer's time is linear in its bytes anyway, so they keep
/// level 19's. Every other level is zstd's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZstdPlan {
    /// `ZSTD_c_jobSize`, in bytes.
    pub job_size: u32,
    /// `ZSTD_c_overlapLog`.
    pub overlap_log: u32,
    /// `ZSTD_c_targetLength`, when not the level's own.
    pub target_length: Option<u32>,
}

impl ZstdPlan {
    /// The largest input cut into two jobs with a short overlap (and, at level 19, compressed
    /// with a shorter target length).
    pub const SMALL: u64 = 6 << 20;

    /// The plan for `bytes` of input at `level` (`bytes` is a hint: the size of the files
    /// going into the stream, which the stream's own headers make a little larger; jobs are
    /// rounded up to 64 KiB, more than a layer's headers).
    pub fn for_input(level: i32, bytes: u64) -> ZstdPlan {
        const KIB_64: u64 = 64 << 10;
        const MIB: u64 = 1 << 20;
        if bytes <= Self::SMALL {
            let half = bytes.div_ceil(2).div_ceil(KIB_64) * KIB_64;
            return ZstdPlan {
                job_size: half.max(MIB) as u32,
                overlap_log: 5,
                target_length: (level == CompressionKind::Zstd.default_level()).then_some(64),
            };
        }
        let half = bytes.div_ceil(2).div_ceil(MIB) * MIB;
        ZstdPlan {
            job_size: half.clamp(4 * MIB, 8 * MIB) as u32,
            overlap_log: 8,
            target_length: None,
        }
    }
}

/// The number of zstd worker threads: every core. The output does not depend on it (zstd.h:
/// with `ZSTD_c_nbWorkers` at 1 or more, jobs are cut at `ZSTD_c_jobSize` whatever the number
/// of workers), so the layer digest is the same on every machine.
pub fn zstd_workers() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(64) as u32)
}

/// A zstd encoder at `level` on `workers` threads (at least one: zstd's single-threaded mode,
/// `nbWorkers` 0, writes different frames), its jobs cut for about `input_bytes` of input
/// ([`ZstdPlan::for_input`]).
pub fn zstd_encoder<W: Write>(
    out: W,
    level: i32,
    workers: u32,
    input_bytes: u64,
) -> Result<zstd::stream::write::Encoder<'static, W>> {
    let plan = ZstdPlan::for_input(level, input_bytes);
    let mut encoder = zstd::stream::write::Encoder::new(out, level)
        .context("cannot start the zstd compressor")?;
    let configure = |encoder: &mut zstd::stream::write::Encoder<'static, W>| -> io::Result<()> {
        encoder.include_checksum(true)?;
        encoder.multithread(workers.max(1))?;
        encoder.set_parameter(zstd::zstd_safe::CParameter::JobSize(plan.job_size))?;
        encoder.set_parameter(zstd::zstd_safe::CParameter::OverlapSizeLog(
            plan.overlap_log,
        ))?;
        if let Some(length) = plan.target_length {
            encoder.set_parameter(zstd::zstd_safe::CParameter::TargetLength(length))?;
        }
        Ok(())
    };
    configure(&mut encoder).context("cannot configure the zstd compressor")?;
    Ok(encoder)
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -{}", self.kind, self.level)
    }
}

/// A layer written to a layout.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The descriptor of the compressed blob (goes in the manifest).
    pub descriptor: Descriptor,
    /// The digest of the uncompressed tar (goes in the config's `rootfs.diff_ids`).
    pub diff_id: Sha256Digest,
    /// The size of the uncompressed tar.
    pub uncompressed_size: u64,
}

impl Layer {
    /// The compressed blob's digest.
    pub fn digest(&self) -> Result<Sha256Digest> {
        descriptor_digest(&self.descriptor)
    }
}

/// Writes `tar` (every header's mtime `mtime`) compressed as a blob of `layout`.
pub fn write_layer(
    layout: &LayoutWriter,
    tar: &TarBuilder,
    mtime: u64,
    compression: Compression,
) -> Result<Layer> {
    let mut uncompressed = None;
    let descriptor = layout.put_blob_with(compression.kind.media_type(), |out| {
        compression.compress(out, tar.file_bytes(), |compressed| {
            let hashing = tar.write_to(HashingWriter::new(compressed), mtime)?;
            let (diff_id, size, _) = hashing.finish();
            uncompressed = Some((diff_id, size));
            Ok(())
        })
    })?;
    let (diff_id, uncompressed_size) =
        uncompressed.context("the layer was written without its tar stream")?;
    Ok(Layer {
        descriptor,
        diff_id,
        uncompressed_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample() -> TarBuilder {
        let mut tar = TarBuilder::new();
        tar.file("usr/local/bin/app", vec![7u8; 100_000], 0o755);
        tar
    }

    #[test]
    fn layers_decompress_to_the_diff_id_and_are_reproducible() {
        let dir = tempfile::tempdir().unwrap();
        let layout = LayoutWriter::create(&dir.path().join("layout")).unwrap();
        for kind in [CompressionKind::Gzip, CompressionKind::Zstd] {
            let compression = Compression::new(kind, None).unwrap();
            let layer = write_layer(&layout, &sample(), 1_700_000_000, compression).unwrap();
            let again = write_layer(&layout, &sample(), 1_700_000_000, compression).unwrap();
            assert_eq!(layer.descriptor, again.descriptor);
            assert_eq!(layer.descriptor.media_type(), &kind.media_type());

            let blob = std::fs::read(crate::oci::layout::blob_path(
                layout.path(),
                &layer.digest().unwrap(),
            ))
            .unwrap();
            assert_eq!(blob.len() as u64, layer.descriptor.size());
            let mut tar = Vec::new();
            match kind {
                CompressionKind::Gzip => {
                    flate2::read::GzDecoder::new(blob.as_slice())
                        .read_to_end(&mut tar)
                        .unwrap();
                }
                CompressionKind::Zstd => {
                    tar = zstd::decode_all(blob.as_slice()).unwrap();
                }
            }
            assert_eq!(tar, sample().to_bytes(1_700_000_000).unwrap());
            assert_eq!(Sha256Digest::of(&tar), layer.diff_id);
            assert_eq!(tar.len() as u64, layer.uncompressed_size);
        }
    }

    /// The bytes do not depend on the number of zstd workers (one, or more than the cores),
    /// and a layer spans several jobs, so the workers did share it.
    #[test]
    fn zstd_layers_are_the_same_on_any_number_of_workers() {
        let mut input = Vec::new();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let plan = ZstdPlan::for_input(3, 5 << 20);
        while input.len() < 5 * plan.job_size as usize {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            // Compressible but not trivially: a few distinct bytes at random.
            input.push(b"airlock!"[(state % 8) as usize]);
        }
        let compress = |workers: u32| {
            let mut encoder = zstd_encoder(Vec::new(), 3, workers, 5 << 20).unwrap();
            // Fed in uneven pieces: the jobs are cut by size, not by write.
            for piece in input.chunks(777_777) {
                encoder.write_all(piece).unwrap();
            }
            encoder.finish().unwrap()
        };
        let one = compress(1);
        assert_eq!(one, compress(4));
        assert_eq!(one, compress(zstd_workers()));
        assert_eq!(zstd::decode_all(one.as_slice()).unwrap(), input);
        // The jobs did run apart: zstd on one thread (`nbWorkers` 0) sees the whole history
        // and writes other bytes.
        let mut single = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        single.include_checksum(true).unwrap();
        single.write_all(&input).unwrap();
        let single = single.finish().unwrap();
        assert_ne!(one, single);
    }

    #[test]
    fn zstd_plans_follow_the_input_and_the_level() {
        const MIB: u64 = 1 << 20;
        let plan = |level: i32, bytes: u64| {
            let p = ZstdPlan::for_input(level, bytes);
            (u64::from(p.job_size), p.overlap_log, p.target_length)
        };
        // Two jobs of half the input, in 64 KiB steps, never under 1 MiB.
        assert_eq!(plan(19, 0), (MIB, 5, Some(64)));
        assert_eq!(plan(19, 2 * MIB + 1), (MIB + (64 << 10), 5, Some(64)));
        // The bench's hello: two jobs, its tar's headers (three 512-byte blocks) included.
        let hello = 5_199_688;
        assert_eq!(plan(19, hello), (2_621_440, 5, Some(64)));
        assert!(2 * plan(19, hello).0 > hello + 3 * 512);
        assert_eq!(plan(19, ZstdPlan::SMALL), (3 * MIB, 5, Some(64)));
        // Only the default level's target length changes.
        assert_eq!(plan(3, ZstdPlan::SMALL), (3 * MIB, 5, None));
        assert_eq!(plan(22, MIB), (MIB, 5, None));
        assert_eq!(plan(19, ZstdPlan::SMALL + 1), (4 * MIB, 8, None));
        assert_eq!(plan(19, 11 * MIB), (6 * MIB, 8, None));
        assert_eq!(plan(19, 11 * MIB + 1), (6 * MIB, 8, None));
        assert_eq!(plan(19, 12 * MIB + 1), (7 * MIB, 8, None));
        assert_eq!(plan(19, 500 * MIB), (8 * MIB, 8, None));
    }

    /// The default level on a binary of a few MiB (the first 5 MiB of this test's own
    /// executable: code and debug info, as a dev-profile binary is) stays within 1 % of
    /// `zstd -19` on one thread, its shorter target length and two jobs included.
    #[test]
    fn zstd_19_of_a_small_binary_stays_within_a_percent() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let input = &exe[..exe.len().min(5 << 20)];
        assert!(
            input.len() > 2 << 20,
            "a test executable of {} bytes",
            input.len()
        );
        let mut encoder = zstd_encoder(Vec::new(), 19, zstd_workers(), input.len() as u64).unwrap();
        encoder.write_all(input).unwrap();
        let layer = encoder.finish().unwrap();
        assert_eq!(zstd::decode_all(layer.as_slice()).unwrap(), input);
        let one_thread = zstd::bulk::compress(input, 19).unwrap();
        assert!(
            (layer.len() as f64) < one_thread.len() as f64 * 1.01,
            "{} bytes against one thread's {}",
            layer.len(),
            one_thread.len()
        );
        // The shorter target length reached zstd: the same jobs at level 19's own (256)
        // write other, smaller bytes.
        let plan = ZstdPlan::for_input(19, input.len() as u64);
        assert_eq!(plan.target_length, Some(64));
        let mut full = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
        full.include_checksum(true).unwrap();
        full.multithread(zstd_workers()).unwrap();
        full.set_parameter(zstd::zstd_safe::CParameter::JobSize(plan.job_size))
            .unwrap();
        full.set_parameter(zstd::zstd_safe::CParameter::OverlapSizeLog(
            plan.overlap_log,
        ))
        .unwrap();
        full.write_all(input).unwrap();
        let full = full.finish().unwrap();
        assert!(
            full.len() < layer.len(),
            "{} against {}",
            full.len(),
            layer.len()
        );
    }

    /// Matches from further back than a small job's overlap, but within `zstd -19`'s 8 MiB
    /// window: 3.5 MiB of noise three times over. One thread finds every repeat; 3 MiB jobs
    /// with a 2 MiB overlap (the old small plan) found none before the first job ends and wrote twice as much.
    #[test]
    fn zstd_19_of_a_large_input_keeps_its_window() {
        let mut noise = Vec::with_capacity(7 << 19);
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        while noise.len() < 7 << 19 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            noise.extend_from_slice(&state.to_le_bytes());
        }
        let input = noise.repeat(3);
        let mut encoder = zstd_encoder(Vec::new(), 19, zstd_workers(), input.len() as u64).unwrap();
        encoder.write_all(&input).unwrap();
        let layer = encoder.finish().unwrap();
        assert_eq!(zstd::decode_all(layer.as_slice()).unwrap(), input);
        let one_thread = zstd::bulk::compress(&input, 19).unwrap();
        assert!(
            (layer.len() as f64) < one_thread.len() as f64 * 1.01,
            "{} bytes against one thread's {}",
            layer.len(),
            one_thread.len()
        );
    }

    #[test]
    fn levels_are_checked() {
        assert!(Compression::new(CompressionKind::Gzip, Some(13)).is_err());
        assert!(Compression::new(CompressionKind::Gzip, Some(12)).is_ok());
        assert_eq!(
            Compression::new(CompressionKind::Gzip, None).unwrap().level,
            7
        );
        assert!(Compression::new(CompressionKind::Zstd, Some(0)).is_err());
        assert_eq!(
            Compression::new(CompressionKind::Zstd, None).unwrap().level,
            19
        );
        assert!("brotli".parse::<CompressionKind>().is_err());
    }
}
