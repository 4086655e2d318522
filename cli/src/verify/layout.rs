//! `verify --layout DIR`: an OCI image layout's blobs against their digests, and every blob
//! that `index.json` reaches (manifests, configs, layers, children of indexes, subjects)
//! present with the size its descriptor records.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::Result;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use super::CheckSummary;
use crate::digest::{self, Sha256Digest};
use crate::finding::{Finding, FindingKind};
use crate::oci::layout::{Layout, descriptor_digest};

/// Checks the layout at `root`.
pub fn check_layout(root: &Path) -> Result<(CheckSummary, Vec<Finding>)> {
    let layout = Layout::open(root)?;
    let mut summary = CheckSummary {
        check: "layout".into(),
        target: root.to_path_buf(),
        against: root.join("index.json"),
        items: 0,
        files: 0,
        bytes: 0,
        compared_with_crate: 0,
    };
    let mut findings = Vec::new();

    // Every blob file hashes to its own name.
    let blobs = root.join("blobs").join("sha256");
    let mut present = BTreeSet::new();
    let mut tampered = BTreeSet::new();
    let mut named_blobs: Vec<(PathBuf, Sha256Digest)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(&blobs) {
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            match Sha256Digest::from_hex(&name) {
                Ok(expected) => named_blobs.push((path, expected)),
                Err(_) => findings.push(Finding::new(
                    FindingKind::FileAdded,
                    path.display().to_string(),
                    "not a blob: its name is not a sha256 digest",
                )),
            }
        }
        named_blobs.sort();
        let paths: Vec<PathBuf> = named_blobs.iter().map(|(path, _)| path.clone()).collect();
        for ((path, expected), hashed) in named_blobs.iter().zip(digest::hash_files(&paths)) {
            let (shown, expected) = (path.display().to_string(), *expected);
            match hashed {
                Ok((actual, size)) => {
                    summary.files += 1;
                    summary.bytes += size;
                    present.insert(expected);
                    if actual != expected {
                        tampered.insert(expected);
                        findings.push(
                            Finding::new(
                                FindingKind::FileModified,
                                shown,
                                "blob content does not match its digest",
                            )
                            .values(expected.hex(), actual.hex()),
                        );
                    }
                }
                Err(e) => findings.push(Finding::new(
                    FindingKind::Unreadable,
                    shown,
                    format!("{e:#}"),
                )),
            }
        }
    }

    // Everything index.json reaches is there, with the recorded size.
    let mut seen = BTreeSet::new();
    let mut queue: Vec<Descriptor> = layout.index().manifests().clone();
    while let Some(descriptor) = queue.pop() {
        let Ok(digest) = descriptor_digest(&descriptor) else {
            findings.push(Finding::new(
                FindingKind::Unreadable,
                root.join("index.json").display().to_string(),
                format!(
                    "descriptor with an unsupported digest {}",
                    descriptor.digest()
                ),
            ));
            continue;
        };
        if !seen.insert(digest) {
            continue;
        }
        summary.items += 1;
        let path = layout.blob_path(&digest);
        let shown = path.display().to_string();
        if !present.contains(&digest) {
            findings.push(Finding::new(
                FindingKind::FileMissing,
                shown,
                format!(
                    "blob {digest} ({}) is referenced but missing",
                    descriptor.media_type()
                ),
            ));
            continue;
        }
        let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        if size != descriptor.size() {
            findings.push(
                Finding::new(
                    FindingKind::FileModified,
                    shown,
                    "blob size differs from its descriptor",
                )
                .values(descriptor.size(), size),
            );
            continue;
        }
        if !tampered.contains(&digest) {
            queue.extend(children(&layout, &descriptor, &mut findings));
        }
    }
    Ok((summary, findings))
}

/// The descriptors an index or manifest points to.
fn children(
    layout: &Layout,
    descriptor: &Descriptor,
    findings: &mut Vec<Finding>,
) -> Vec<Descriptor> {
    let unreadable = |e: anyhow::Error| {
        Finding::new(
            FindingKind::Unreadable,
            layout.root().display().to_string(),
            format!("{e:#}"),
        )
    };
    match descriptor.media_type() {
        MediaType::ImageIndex => match layout.read_json::<ImageIndex>(descriptor) {
            Ok(index) => {
                let mut out = index.manifests().clone();
                out.extend(index.subject().clone());
                out
            }
            Err(e) => {
                findings.push(unreadable(e));
                Vec::new()
            }
        },
        MediaType::ImageManifest => match layout.read_json::<ImageManifest>(descriptor) {
            Ok(manifest) => {
                let mut out = vec![manifest.config().clone()];
                out.extend(manifest.layers().iter().cloned());
                out.extend(manifest.subject().clone());
                out
            }
            Err(e) => {
                findings.push(unreadable(e));
                Vec::new()
            }
        },
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::layout::{LayoutWriter, with_ref_name};
    use oci_spec::image::{ImageIndexBuilder, ImageManifestBuilder};

    fn sample_layout(root: &Path) -> (Descriptor, Descriptor) {
        let writer = LayoutWriter::create(root).unwrap();
        let config = writer
            .put_blob(
                MediaType::ImageConfig,
                b"{\"architecture\":\"amd64\",\"os\":\"linux\"}",
            )
            .unwrap();
        let layer = writer
            .put_blob(MediaType::ImageLayerGzip, b"not really gzip")
            .unwrap();
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .config(config)
            .layers(vec![layer.clone()])
            .build()
            .unwrap();
        let (manifest, _) = writer
            .put_json(MediaType::ImageManifest, &manifest)
            .unwrap();
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .manifests(vec![with_ref_name(manifest.clone(), "v1")])
            .build()
            .unwrap();
        writer.finish(&index).unwrap();
        (manifest, layer)
    }

    #[test]
    fn intact_layout_passes_and_every_fault_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("layout");
        let (manifest, layer) = sample_layout(&root);
        let (summary, findings) = check_layout(&root).unwrap();
        assert!(findings.is_empty(), "{findings:?}");
        assert_eq!(summary.items, 3);

        let layout = Layout::open(&root).unwrap();
        let layer_path = layout.blob_path(&descriptor_digest(&layer).unwrap());
        std::fs::write(&layer_path, b"tampered layer!").unwrap();
        std::fs::write(root.join("blobs/sha256/stray"), b"x").unwrap();
        let manifest_path = layout.blob_path(&descriptor_digest(&manifest).unwrap());
        let (_, findings) = check_layout(&root).unwrap();
        let kinds: Vec<(FindingKind, bool)> = findings
            .iter()
            .map(|f| (f.kind, f.path.contains(&layer_path.display().to_string())))
            .collect();
        assert!(
            kinds.contains(&(FindingKind::FileModified, true)),
            "{findings:?}"
        );
        assert!(
            findings
                .iter()
                .any(|f| f.kind == FindingKind::FileAdded && f.path.ends_with("stray"))
        );

        std::fs::remove_file(&manifest_path).unwrap();
        let (_, findings) = check_layout(&root).unwrap();
        assert!(
            findings.iter().any(|f| f.kind == FindingKind::FileMissing
                && f.path == manifest_path.display().to_string()),
            "{findings:?}"
        );
    }
}
