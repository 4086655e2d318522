//! The layers an image is made of, bottom first: the base's (copied byte for byte), then
//! airlock's own, each deterministic and shared by every platform that has the same contents:
//! the essentials, the extra files, and one binary layer per platform (on top, since it
//! changes most often).

use std::collections::BTreeSet;
use std::io;

use anyhow::Result;
use rayon::prelude::*;

use super::ImageBinary;
use super::binaries::Binaries;
use crate::digest::Sha256Digest;
use crate::oci::base::Base;
use crate::oci::document;
use crate::oci::essentials::{self, Essential, Essentials, EssentialsOptions};
use crate::oci::files::{self, Claim, Claims, IncludeSource, IncludedFiles};
use crate::oci::layer::{self, Compression, Layer};
use crate::oci::layout::LayoutWriter;
use crate::progress;
use crate::tarball::{self, TarBuilder};

/// The essentials layer and what went into it.
pub(super) type EssentialsLayer = (Layer, Essentials);
/// The files layer and what went into it.
pub(super) type FilesLayer = (Layer, IncludedFiles);

/// airlock's own layers.
pub(super) struct OwnLayers {
    pub(super) essentials: Option<EssentialsLayer>,
    pub(super) files: Option<FilesLayer>,
    /// One per platform, in the order of `binaries`.
    pub(super) binaries: Vec<Layer>,
}

/// What goes into airlock's own layers.
pub(super) struct LayerInputs<'a> {
    pub(super) essentials: &'a EssentialsOptions,
    pub(super) files: &'a std::collections::BTreeMap<String, IncludeSource>,
    pub(super) binaries: &'a Binaries,
    pub(super) base: Option<&'a Base>,
    pub(super) epoch: u64,
    pub(super) compression: Compression,
}

/// The binary layer of one platform: each binary at its path, executable, as it ships (the
/// stripped bytes when stripping changed them in memory, else streamed from disk (the staged
/// stripped file, or the file as built), checked against the bytes it was judged by: its
/// headers, or all of it when it was judged whole).
pub(super) fn binary_tar(binaries: &[ImageBinary]) -> TarBuilder {
    let mut tar = TarBuilder::new();
    for binary in binaries {
        let path = binary.path.trim_start_matches('/');
        let from = binary.staged.as_ref().map_or(&*binary.source, |s| s.path());
        match (&binary.shipped, &binary.pinned, binary.checked) {
            (Some(bytes), _, _) => tar.file(path, bytes.as_slice(), tarball::EXEC_MODE),
            (None, Some(pinned), _) => {
                tar.file_pinned(path, from, pinned.clone(), tarball::EXEC_MODE)
            }
            (None, None, Some(digest)) => tar.file_checked(path, from, digest, tarball::EXEC_MODE),
            (None, None, None) => tar.file_from_disk(path, &binary.source, tarball::EXEC_MODE),
        };
    }
    tar
}

/// A platform's binary layer, annotated with the sizes as built when stripping changed them.
fn binary_layer(
    list: &[ImageBinary],
    compress: impl Fn(&TarBuilder) -> Result<Layer>,
) -> Result<Layer> {
    let mut layer = compress(&binary_tar(list))?;
    if let Some(sizes) = super::built_sizes(list) {
        let annotations =
            std::collections::HashMap::from([(super::BUILT_SIZES_ANNOTATION.to_owned(), sizes)]);
        layer.descriptor.set_annotations(Some(annotations));
    }
    Ok(layer)
}

/// Checks that no two layers of airlock's claim one path, builds the trees, then compresses
/// every own layer at once (the slow part; one core each) while the base's layers are copied.
pub(super) fn write_layers(writer: &LayoutWriter, inputs: &LayerInputs<'_>) -> Result<OwnLayers> {
    let mut claims = Claims::default();
    let binary_paths: BTreeSet<&str> = inputs
        .binaries
        .values()
        .flatten()
        .map(|b| b.path.trim_start_matches('/'))
        .collect();
    for path in binary_paths {
        claims.claim(path, Claim::File, "the binary")?;
    }
    for item in &inputs.essentials.items {
        for (path, is_dir) in item.paths() {
            let kind = if is_dir { Claim::Dir } else { Claim::File };
            claims.claim(&path, kind, &format!("the essential {item}"))?;
        }
    }
    let files_tar = files::files_tar(inputs.files, &mut claims)?;
    let essentials_tar = essentials::essentials_tar(inputs.essentials)?;
    if let Some((_, report)) = &essentials_tar {
        progress::status("Packaging", format!("essentials ({})", list(&report.items)));
        if let Some(base) = inputs.base {
            warn_replaced(base, &report.items);
        }
    }
    if let Some((_, report)) = &files_tar {
        progress::status(
            "Packaging",
            format!(
                "{} extra files ({})",
                report.files,
                render_bytes(report.bytes)
            ),
        );
    }
    for (arch, list) in inputs.binaries {
        let names: Vec<&str> = list.iter().map(|b| b.name.as_str()).collect();
        let platform = document::platform_name(*arch);
        progress::status("Packaging", format!("{} for {platform}", names.join(", ")));
    }
    let (epoch, compression) = (inputs.epoch, inputs.compression);
    let compress = |tar: &TarBuilder| layer::write_layer(writer, tar, epoch, compression);
    let (base_copied, (own, binaries)) = rayon::join(
        || {
            inputs
                .base
                .map_or(Ok(()), |base| copy_base_layers(writer, base))
        },
        || {
            rayon::join(
                || {
                    rayon::join(
                        || {
                            essentials_tar
                                .map(|(tar, report)| compress(&tar).map(|l| (l, report)))
                                .transpose()
                        },
                        || {
                            files_tar
                                .map(|(tar, report)| compress(&tar).map(|l| (l, report)))
                                .transpose()
                        },
                    )
                },
                || {
                    inputs
                        .binaries
                        .par_iter()
                        .map(|(_, list)| binary_layer(list, compress))
                        .collect::<Result<Vec<_>>>()
                },
            )
        },
    );
    base_copied?;
    let (essentials, files) = own;
    Ok(OwnLayers {
        essentials: essentials?,
        files: files?,
        binaries: binaries?,
    })
}

/// Copies every layer of the base into the layout through the verified reader: a blob is
/// kept only when it is, byte for byte, the one its descriptor names.
fn copy_base_layers(writer: &LayoutWriter, base: &Base) -> Result<()> {
    let mut copied = BTreeSet::<Sha256Digest>::new();
    let store = base.blobs();
    for platform in base.platforms.values() {
        for layer in &platform.layers {
            let digest = layer.layer.digest()?;
            if !copied.insert(digest) {
                continue;
            }
            writer.put_blob_with(layer.layer.descriptor.media_type().clone(), |out| {
                let mut blob = store.open_verified(&layer.source)?;
                io::copy(&mut blob, out)?;
                blob.finish()?;
                Ok(())
            })?;
        }
    }
    Ok(())
}

/// airlock's layers go above the base's, so the essentials replace the base's files at the
/// same paths: say so for each one the base has.
fn warn_replaced(base: &Base, items: &[Essential]) {
    let replaced: BTreeSet<String> = items
        .iter()
        .flat_map(|item| item.paths())
        .filter(|(path, is_dir)| !is_dir && base.platforms.values().any(|p| p.paths.contains(path)))
        .map(|(path, _)| format!("/{path}"))
        .collect();
    if !replaced.is_empty() {
        progress::warn(format!(
            "the essentials replace the base's {}: airlock's layers go above the base's; ask \
             only for the essentials the base lacks (--essential ITEM) to keep the base's",
            replaced.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
}

/// `passwd, ca-certs, tmp`.
pub(super) fn list(items: &[Essential]) -> String {
    items
        .iter()
        .map(|i| i.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn render_bytes(bytes: u64) -> String {
    crate::render::human_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::layer::CompressionKind;
    use std::io::{Seek, SeekFrom, Write};

    /// The bytes this thread has read from files so far (`/proc/thread-self/io`).
    fn read_by_this_thread() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
        let line = io.lines().find(|l| l.starts_with("rchar:")).unwrap();
        line["rchar:".len()..].trim().parse().unwrap()
    }

    fn blobs(layout: &LayoutWriter) -> usize {
        let dir = layout.path().join("blobs").join("sha256");
        std::fs::read_dir(dir).map_or(0, |d| d.count())
    }

    /// A `--binary` file is judged from its headers, read with seeks, not by reading it whole;
    /// its layer streams it once, checking the header bytes judged, and refuses it with nothing
    /// written when they changed in between (the race of a build rewriting the file).
    #[test]
    fn a_binary_is_judged_from_its_headers_and_its_layer_refuses_other_headers() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app");
        // This test's own ELF file as its headers see it: the header bytes at their offsets in a
        // sparse file of its size (tens of MB that take no room).
        let (_, judged) =
            crate::elf::headers::read_file(&std::env::current_exe().unwrap()).unwrap();
        let mut out = std::fs::File::create(&file).unwrap();
        out.set_len(judged.size).unwrap();
        for (at, bytes) in &judged.ranges {
            out.seek(SeekFrom::Start(*at)).unwrap();
            out.write_all(bytes).unwrap();
        }
        drop(out);
        let size = judged.size;
        assert!(size > 4 << 20, "{size}");

        let before = read_by_this_thread();
        let found = super::super::binaries::prebuilt_binaries(std::slice::from_ref(&file)).unwrap();
        let read = read_by_this_thread() - before;
        assert!(read < 1 << 20, "{read} bytes of {size} read to judge it");
        let binary = found.into_iter().next().unwrap().0;
        assert_eq!(binary.size, size);
        let binaries = vec![binary];

        let layout = LayoutWriter::create(&dir.path().join("layout")).unwrap();
        let compression = Compression::new(CompressionKind::Gzip, Some(1)).unwrap();
        let write = || layer::write_layer(&layout, &binary_tar(&binaries), 0, compression);
        let layer = write().unwrap();
        assert_eq!(
            layer.uncompressed_size,
            512 * 4 + size.next_multiple_of(512) + 1024
        );
        let written = blobs(&layout);

        // The ELF header's machine, rewritten since it was judged.
        let mut out = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        out.seek(SeekFrom::Start(18)).unwrap();
        out.write_all(&[0xb7, 0]).unwrap();
        drop(out);
        let err = write().unwrap_err();
        assert_eq!(crate::error::exit_kind(&err).code(), 2);
        let message = format!("{err:#}");
        assert!(
            message.contains(&file.display().to_string()) && message.contains("offset 18 "),
            "{message}"
        );
        assert_eq!(blobs(&layout), written, "a blob was left behind");
    }
}
