//! Reads a base layer once, without extracting it: the blob through the verified reader (its
//! digest checked), decompressed (gzip, zstd or plain tar, by its media type) with the tar
//! stream hashed into the `diff_id` the config must name, and every entry's path (and hard
//! link target) checked to stay inside the root. A base whose layer would write outside the
//! container's root is refused, whatever its digest.

use std::io::{self, Read};

use anyhow::{Context, Result};
use oci_spec::image::Descriptor;

use crate::digest::{HashingReader, Sha256Digest};
use crate::error;
use crate::oci::blob::BlobStore;
use crate::oci::media::{LayerCodec, MediaKind};
use crate::tarball::{LimitedReader, UnsafePath, safe_entry_path};

/// How far a layer may expand: a hundred times its compressed size, and at least 8 GiB (a
/// layer of zeros compresses a thousandfold; this only stops a stream that never ends).
fn expansion_limit(compressed: u64) -> u64 {
    compressed.saturating_mul(100).max(8 << 30)
}

/// What a base layer holds.
#[derive(Debug, Clone)]
pub(super) struct LayerScan {
    /// The uncompressed tar's digest.
    pub diff_id: Sha256Digest,
    /// The uncompressed tar's size.
    pub size: u64,
    /// The paths of its entries, relative (`etc/passwd`).
    pub paths: Vec<String>,
}

pub(super) fn scan_layer(store: BlobStore<'_>, descriptor: &Descriptor) -> Result<LayerScan> {
    let digest = descriptor.digest().to_string();
    let codec = MediaKind::of(descriptor.media_type())
        .layer_codec()
        .ok_or_else(|| {
            error::input(format!(
                "layer {digest} has media type {}, which is not a tar layer (plain, gzip or \
                 zstd)",
                descriptor.media_type()
            ))
        })?;
    let mut blob = store.open_verified(descriptor)?;
    let result = {
        let decompressed: Box<dyn Read + '_> = match codec {
            LayerCodec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(&mut blob)),
            LayerCodec::Zstd => {
                Box::new(zstd::stream::read::Decoder::new(&mut blob).context("cannot start zstd")?)
            }
            LayerCodec::Tar => Box::new(&mut blob),
        };
        let limited = LimitedReader::new(decompressed, expansion_limit(descriptor.size()));
        read_entries(HashingReader::new(limited), &digest)
    };
    // A layer that does not decompress is most often a blob that changed: the digest check
    // comes first, so that is what the error says.
    blob.finish()?;
    result
}

fn read_entries<R: Read>(stream: HashingReader<R>, digest: &str) -> Result<LayerScan> {
    let broken = |e: io::Error| {
        error::check_failed(format!(
            "layer {digest} is not a readable tar stream ({e}); the base is damaged"
        ))
    };
    let mut archive = tar::Archive::new(stream);
    let mut paths = Vec::new();
    for entry in archive.entries().map_err(broken)? {
        let entry = entry.map_err(broken)?;
        let raw = entry.path().map_err(broken)?.into_owned();
        let escapes = |what: &str, why: String| {
            error::check_failed(format!(
                "layer {digest} has an entry whose {what} leaves the root ({why}); refusing \
                 the base: a runtime unpacking it could write outside the container"
            ))
        };
        let relative = match safe_entry_path(&raw, None) {
            Ok(relative) => relative,
            // `./`, the root directory itself (umoci and others write it).
            Err(UnsafePath::Empty) => continue,
            Err(e) => return Err(escapes("path", e.to_string())),
        };
        if entry.header().entry_type() == tar::EntryType::Link
            && let Some(target) = entry.link_name().map_err(broken)?
        {
            safe_entry_path(&target, None)
                .map_err(|e| escapes("hard link target", e.to_string()))?;
        }
        paths.push(relative.to_string_lossy().into_owned());
    }
    // The end-of-archive blocks and any padding after them belong to the diff_id too.
    let mut stream = archive.into_inner();
    io::copy(&mut stream, &mut io::sink()).map_err(broken)?;
    let (diff_id, size, _) = stream.finish();
    Ok(LayerScan {
        diff_id,
        size,
        paths,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn prop_a_scanned_layer_never_names_a_path_outside_the_root(
            names in prop::collection::vec(
                prop::collection::vec(prop_oneof![
                    Just("..".to_owned()),
                    Just(".".to_owned()),
                    Just("".to_owned()),
                    "[a-z]{1,5}",
                ], 1..5),
                1..5,
            ),
            absolute in prop::collection::vec(proptest::bool::ANY, 5),
            links in prop::collection::vec(proptest::option::of("[a-z./]{1,12}"), 5),
        ) {
            let mut builder = tar::Builder::new(Vec::new());
            for (n, parts) in names.iter().enumerate() {
                let mut name = parts.join("/");
                if absolute[n] {
                    name.insert(0, '/');
                }
                if name.is_empty() || name.len() > 99 {
                    continue;
                }
                let link = links[n].as_deref();
                let kind = if link.is_some() { tar::EntryType::Link } else { tar::EntryType::Regular };
                builder.append(&raw_header(&name, kind, link), io::empty()).unwrap();
            }
            let bytes = builder.into_inner().unwrap();
            if let Ok(scanned) = scan(&bytes) {
                for path in &scanned.paths {
                    prop_assert!(!path.starts_with('/') && !path.split('/').any(|p| p == ".."), "{path}");
                }
                prop_assert_eq!(scanned.diff_id, Sha256Digest::of(&bytes));
            }
        }
    }

    fn raw_header(path: &str, kind: tar::EntryType, link: Option<&str>) -> tar::Header {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(kind);
        header.set_size(0);
        header.set_mode(0o644);
        let name = header.as_old_mut().name.as_mut();
        name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(link) = link {
            let field = header.as_old_mut().linkname.as_mut();
            field[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_cksum();
        header
    }

    fn tar_with(path: &str, kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        builder
            .append(&raw_header(path, kind, link), io::empty())
            .unwrap();
        builder.into_inner().unwrap()
    }

    fn scan(bytes: &[u8]) -> Result<LayerScan> {
        read_entries(HashingReader::new(bytes), "sha256:test")
    }

    #[test]
    fn hashes_the_whole_stream_and_refuses_escapes() {
        let root = scan(&tar_with("./", tar::EntryType::Directory, None)).unwrap();
        assert!(root.paths.is_empty());
        let good = tar_with("etc/passwd", tar::EntryType::Regular, None);
        let scanned = scan(&good).unwrap();
        assert_eq!(scanned.diff_id, Sha256Digest::of(&good));
        assert_eq!(scanned.size, good.len() as u64);
        assert_eq!(scanned.paths, ["etc/passwd"]);
        // Absolute symlink targets resolve inside the root: fine.
        assert!(
            scan(&tar_with(
                "etc/localtime",
                tar::EntryType::Symlink,
                Some("/usr/x")
            ))
            .is_ok()
        );
        for bad in [
            tar_with("../../etc/evil", tar::EntryType::Regular, None),
            tar_with("/etc/evil", tar::EntryType::Regular, None),
            tar_with(
                "etc/evil",
                tar::EntryType::Link,
                Some("../../../etc/shadow"),
            ),
        ] {
            let err = scan(&bad).unwrap_err();
            assert_eq!(error::exit_kind(&err), error::ExitKind::CheckFailed);
            assert!(format!("{err:#}").contains("leaves the root"), "{err:#}");
        }
        let err = scan(b"not a tar at all, just some bytes that are not 512 long").unwrap_err();
        assert_eq!(error::exit_kind(&err), error::ExitKind::CheckFailed);
    }
}
