//! `verify --sums SHA256SUMS` and `verify --manifest dist-manifest.json`: a release directory
//! against its own records (and its provenance's subjects), naming every missing or changed
//! file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{CheckSummary, layout as layout_check, provenance as provenance_check};
use crate::digest;
use crate::error;
use crate::finding::{Finding, FindingKind};
use crate::oci::layout::{Layout, descriptor_digest};
use crate::records::{ArtifactKind, DistManifest, Sha256Sums};

/// The directory a record file describes: its parent.
fn base_dir(record: &Path) -> PathBuf {
    match record.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn read_record(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| error::input(format!("cannot read {}: {e}", path.display())))
}

/// One file a release record lists: its name, digest and (when recorded) size.
struct Listed<'a> {
    name: &'a str,
    expected: &'a digest::Sha256Digest,
    size: Option<u64>,
}

/// Checks the listed files, hashed in parallel (several release archives hash on all cores
/// at once), adding what was hashed to `summary` and the differences to `findings`, in list
/// order.
fn check_files(
    dir: &Path,
    listed: &[Listed<'_>],
    summary: &mut CheckSummary,
    findings: &mut Vec<Finding>,
) {
    let paths: Vec<PathBuf> = listed.iter().map(|file| dir.join(file.name)).collect();
    let hashed = digest::hash_files(&paths);
    for ((file, path), result) in listed.iter().zip(&paths).zip(hashed) {
        check_file(path, file, result, summary, findings);
    }
}

/// Checks one listed file against its hash result: present, and (when given) of this size
/// and digest.
fn check_file(
    path: &Path,
    file: &Listed<'_>,
    hashed: Result<(digest::Sha256Digest, u64)>,
    summary: &mut CheckSummary,
    findings: &mut Vec<Finding>,
) {
    let shown = path.display().to_string();
    let (actual, actual_size) = match hashed {
        Ok(hashed) => hashed,
        Err(_) if !path.exists() => {
            findings.push(Finding::new(
                FindingKind::FileMissing,
                shown,
                "listed in the release records but missing",
            ));
            return;
        }
        Err(e) => {
            findings.push(Finding::new(
                FindingKind::Unreadable,
                shown,
                format!("{e:#}"),
            ));
            return;
        }
    };
    summary.files += 1;
    summary.bytes += actual_size;
    if let Some(size) = file.size.filter(|s| *s != actual_size) {
        findings.push(
            Finding::new(
                FindingKind::FileModified,
                shown.clone(),
                "size differs from the records",
            )
            .values(size, actual_size),
        );
    }
    if actual != *file.expected {
        findings.push(
            Finding::new(
                FindingKind::FileModified,
                shown,
                "sha256 differs from the records",
            )
            .values(file.expected.hex(), actual.hex()),
        );
    }
}

/// `--sums FILE`: every file `SHA256SUMS` lists, relative to its directory.
pub fn check_sums(path: &Path) -> Result<(CheckSummary, Vec<Finding>)> {
    let text = String::from_utf8(read_record(path)?)
        .map_err(|_| error::input(format!("{} is not text", path.display())))?;
    let sums = Sha256Sums::parse(&text, path)?;
    let dir = base_dir(path);
    let mut summary = CheckSummary {
        check: super::CheckKind::Sums,
        target: dir.clone(),
        against: path.to_path_buf(),
        items: sums.entries.len(),
        files: 0,
        bytes: 0,
        compared_with_crate: 0,
    };
    let mut findings = Vec::new();
    let listed: Vec<Listed<'_>> = sums
        .entries
        .iter()
        .map(|(name, expected)| Listed {
            name,
            expected,
            size: None,
        })
        .collect();
    check_files(&dir, &listed, &mut summary, &mut findings);
    Ok((summary, findings))
}

/// `--manifest FILE`: every artifact of `dist-manifest.json` (size and digest), every image
/// (the layout's blobs, the tag pointing at the recorded digest, the SBOM artifacts), and no
/// file in the directory that the manifest does not list.
pub fn check_manifest(path: &Path) -> Result<(CheckSummary, Vec<Finding>)> {
    let manifest = DistManifest::parse(&read_record(path)?, path)?;
    let dir = base_dir(path);
    let mut summary = CheckSummary {
        check: super::CheckKind::Manifest,
        target: dir.clone(),
        against: path.to_path_buf(),
        items: manifest.artifacts.len() + manifest.images.len(),
        files: 0,
        bytes: 0,
        compared_with_crate: 0,
    };
    let mut findings = Vec::new();
    let listed: Vec<Listed<'_>> = manifest
        .artifacts
        .iter()
        .map(|artifact| Listed {
            name: &artifact.path,
            expected: &artifact.sha256,
            size: Some(artifact.size),
        })
        .collect();
    check_files(&dir, &listed, &mut summary, &mut findings);

    let mut listed: BTreeSet<String> = manifest.artifacts.iter().map(|a| a.path.clone()).collect();
    let record_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    listed.insert(record_name);
    for image in &manifest.images {
        listed.insert(image.layout.clone());
        let root = dir.join(&image.layout);
        let (layout_summary, layout_findings) = layout_check::check_layout(&root)?;
        summary.files += layout_summary.files;
        summary.bytes += layout_summary.bytes;
        findings.extend(layout_findings);
        check_image_record(&root, image, &mut findings);
    }
    if manifest
        .artifacts
        .iter()
        .any(|a| a.kind == ArtifactKind::Provenance)
    {
        provenance_check::check(&dir, &manifest, &mut findings)?;
    }
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("cannot read {}", dir.display()))?
    {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !listed.contains(&name) {
            findings.push(Finding::new(
                FindingKind::FileAdded,
                entry.path().display().to_string(),
                "not listed in the dist manifest",
            ));
        }
    }
    Ok((summary, findings))
}

/// The tag of a recorded image still points at the recorded digest, and its SBOMs are there.
fn check_image_record(
    root: &Path,
    image: &crate::records::ImageRecord,
    findings: &mut Vec<Finding>,
) {
    let shown = format!("{}:{}", root.display(), image.tag);
    let Ok(layout) = Layout::open(root) else {
        return; // check_layout already reported why.
    };
    match layout.resolve(Some(&image.tag)).map(descriptor_digest) {
        Ok(Ok(actual)) if actual == image.digest => {}
        Ok(Ok(actual)) => findings.push(
            Finding::new(
                FindingKind::FileModified,
                shown,
                "the tag points at another image than the records",
            )
            .values(image.digest, actual),
        ),
        Ok(Err(e)) | Err(e) => findings.push(Finding::new(
            FindingKind::FileMissing,
            shown,
            format!("{e:#}"),
        )),
    }
    let present: BTreeSet<String> = layout
        .index()
        .manifests()
        .iter()
        .map(|d| d.digest().to_string())
        .collect();
    for (digests, what) in [
        (&image.sboms, "the SBOM"),
        (&image.attestations, "the attestation"),
    ] {
        for digest in digests {
            if !present.contains(&digest.to_string()) {
                findings.push(Finding::new(
                    FindingKind::FileMissing,
                    format!("{}@{digest}", root.display()),
                    format!("{what} attached to the image is missing from index.json"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Sha256Digest;

    #[test]
    fn sums_name_changed_and_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut sums = Sha256Sums::default();
        for (name, body) in [
            ("a.tar.gz", &b"a"[..]),
            ("b.tar.gz", b"b"),
            ("c.tar.gz", b"c"),
        ] {
            std::fs::write(dir.path().join(name), body).unwrap();
            sums.entries.insert(name.into(), Sha256Digest::of(body));
        }
        let path = dir.path().join("SHA256SUMS");
        std::fs::write(&path, sums.to_text()).unwrap();
        let (summary, findings) = check_sums(&path).unwrap();
        assert!(findings.is_empty());
        assert_eq!((summary.items, summary.files), (3, 3));

        std::fs::write(dir.path().join("a.tar.gz"), b"A").unwrap();
        std::fs::remove_file(dir.path().join("c.tar.gz")).unwrap();
        let (_, findings) = check_sums(&path).unwrap();
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert_eq!(findings[0].kind, FindingKind::FileModified);
        assert!(findings[0].path.ends_with("a.tar.gz"));
        assert_eq!(
            findings[0].expected.as_deref(),
            Some(Sha256Digest::of(b"a").hex().as_str())
        );
        assert_eq!(findings[1].kind, FindingKind::FileMissing);
        assert!(findings[1].path.ends_with("c.tar.gz"));
    }
}
