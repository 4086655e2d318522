//! `verify --layout DIR`: an OCI image layout's blobs against their digests, and every blob
//! that `index.json` reaches (indexes and manifests, OCI or Docker; configs, layers, subjects)
//! present with the size its descriptor records.
//!
//! Blobs are read only through `oci`'s verified reader and its one walker: a blob that is a
//! link, FIFO or device is a finding, never followed or read.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};
use rayon::prelude::*;

use super::CheckSummary;
use crate::digest::Sha256Digest;
use crate::finding::{Finding, FindingKind};
use crate::oci::blob::{BlobError, BlobStore, Fault};
use crate::oci::layout::Layout;
use crate::oci::walk::{self, WalkOptions};

/// Checks the layout at `root`.
pub fn check_layout(root: &Path) -> Result<(CheckSummary, Vec<Finding>)> {
    let layout = Layout::open(root)?;
    let mut summary = CheckSummary {
        check: super::CheckKind::Layout,
        target: root.to_path_buf(),
        against: root.join("index.json"),
        items: 0,
        files: 0,
        bytes: 0,
        compared_with_crate: 0,
    };
    let mut findings = Vec::new();
    let reported = check_blob_files(layout.blobs(), &mut summary, &mut findings)?;

    // Everything index.json reaches is there, with the recorded size.
    let options = WalkOptions {
        subjects: true,
        ..WalkOptions::default()
    };
    let graph = walk::walk(layout.blobs(), layout.index().manifests(), &options)?;
    for node in graph.nodes {
        summary.items += 1;
        if node.is_dangling_subject() {
            continue;
        }
        let Some(problem) = node.problem else {
            continue;
        };
        // A blob whose bytes or type the first pass already named is not named twice.
        let named = node.digest.is_some_and(|d| reported.contains(&d));
        match problem.fault {
            Fault::Digest { .. } | Fault::Unreadable(_) if named => {}
            Fault::Missing => findings.push(Finding::new(
                FindingKind::FileMissing,
                problem.path.display().to_string(),
                format!(
                    "blob {} ({}) is referenced but missing",
                    problem.digest,
                    node.descriptor.media_type()
                ),
            )),
            _ => findings.push(blob_finding(problem)),
        }
    }
    Ok((summary, findings))
}

/// Every file in `blobs/sha256/` hashes to its own name. Returns the digests of the files
/// already named as altered or unreadable.
fn check_blob_files(
    store: BlobStore<'_>,
    summary: &mut CheckSummary,
    findings: &mut Vec<Finding>,
) -> Result<BTreeSet<Sha256Digest>> {
    let dir = store.root().join("blobs").join("sha256");
    let mut named: Vec<(Sha256Digest, u64)> = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        entries => entries.with_context(|| format!("cannot read {}", dir.display()))?,
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        match Sha256Digest::from_hex(&name) {
            Ok(digest) => named.push((digest, entry.metadata().map_or(0, |m| m.len()))),
            Err(_) => findings.push(Finding::new(
                FindingKind::FileAdded,
                entry.path().display().to_string(),
                "not a blob: its name is not a sha256 digest",
            )),
        }
    }
    // The largest first, so one big layer started last does not leave a core idle.
    named.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let hashed: Vec<_> = named
        .par_iter()
        .with_max_len(1)
        .map(|(digest, _)| (*digest, store.hash(digest)))
        .collect();
    let mut reported = BTreeSet::new();
    let mut results: Vec<_> = hashed.into_iter().collect();
    results.sort_by_key(|(digest, _)| *digest);
    for (expected, hashed) in results {
        match hashed {
            Ok((actual, size)) => {
                summary.files += 1;
                summary.bytes += size;
                if actual != expected {
                    reported.insert(expected);
                    findings.push(
                        Finding::new(
                            FindingKind::FileModified,
                            store.path(&expected).display().to_string(),
                            "blob content does not match its digest",
                        )
                        .values(expected.hex(), actual.hex()),
                    );
                }
            }
            Err(problem) => {
                reported.insert(expected);
                findings.push(blob_finding(problem));
            }
        }
    }
    Ok(reported)
}

/// The finding for a blob that failed: what was expected and found where the fault says.
fn blob_finding(problem: BlobError) -> Finding {
    let path = problem.path.display().to_string();
    match problem.fault {
        Fault::Missing => Finding::new(FindingKind::FileMissing, path, problem.to_string()),
        Fault::Size { expected, found } => Finding::new(
            FindingKind::FileModified,
            path,
            "blob size differs from its descriptor",
        )
        .values(expected, found),
        Fault::Digest { expected, found } => Finding::new(
            FindingKind::FileModified,
            path,
            "blob content does not match its descriptor",
        )
        .values(expected.hex(), found.hex()),
        _ => Finding::new(FindingKind::Unreadable, path, problem.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::layout::{LayoutWriter, descriptor_digest, with_ref_name};
    use oci_spec::image::{Descriptor, ImageIndexBuilder, ImageManifestBuilder, MediaType};

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
