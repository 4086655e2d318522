//! `verify --release DIR --key KEY.pub`: a release's chain of custody, checked with no
//! network. What the key proves (the signatures of `SHA256SUMS`, of every image and of the
//! provenance envelope) anchors everything else: the files `SHA256SUMS` lists, the dist
//! manifest and the layout (the `--sums`, `--manifest` and `--layout --key` checks, run
//! as they are), the provenance subjects against the release, the SBOM artifacts against the
//! image they must be attached to, the provenance attached to the image against the key, and
//! each binary's embedded dependency list against the provenance's resolved dependencies.
//!
//! Reads only. A missing signature or record is a finding naming the file it should be,
//! never an error: every problem of the release is reported in one run.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use oci_spec::image::ImageManifest;

use super::{
    CheckKind, CheckSummary, provenance as provenance_check, release as release_check,
    signatures as signatures_check,
};
use crate::digest::Sha256Digest;
use crate::elf::{self, EmbeddedDeps};
use crate::error;
use crate::finding::{Finding, FindingKind};
use crate::input::{self, Links};
use crate::oci::layout::{Layout, descriptor_digest};
use crate::records::{ArtifactKind, DistManifest, ImageRecord, Sha256Sums};
use crate::release::provenance::{self, Statement};
use crate::signing::file::{self as file_signature, Verdict};
use crate::signing::{Envelope, ImageVerdict, PublicKey};

/// The files of a release directory that `SHA256SUMS` does not list, by design: itself, its
/// signature, the records written after it, and the image layout (which its own signatures
/// and the provenance vouch for).
const UNLISTED: [&str; 5] = [
    "SHA256SUMS",
    "SHA256SUMS.sig",
    provenance::FILE_NAME,
    "dist-manifest.json",
    "image",
];

/// The most bytes read of `SHA256SUMS` or `dist-manifest.json`.
const MAX_RECORD: u64 = 64 << 20;

/// What `--release` found: one summary per check it composed, and every image's verdict.
pub struct ReleaseVerdict {
    /// `release` first, then `sums`, `manifest`, `signatures`.
    pub checks: Vec<CheckSummary>,
    /// Every problem.
    pub findings: Vec<Finding>,
    /// Each image of `DIR/image` and the repositories its valid signatures name.
    pub images: Vec<ImageVerdict>,
}

/// Checks the release in `dir` against the public key at `key_path`.
pub fn check_release(dir: &Path, key_path: &Path) -> Result<ReleaseVerdict> {
    if !dir.is_dir() {
        return Err(error::input(format!(
            "{} is not a release directory (`cargo airlock dist` writes one, default \
             target/dist)",
            dir.display()
        )));
    }
    let key = PublicKey::load(key_path)?;
    let mut summary = CheckSummary {
        check: CheckKind::Release,
        target: dir.to_path_buf(),
        against: key_path.to_path_buf(),
        items: 0,
        files: 0,
        bytes: 0,
        compared_with_crate: 0,
    };
    let mut verdict = ReleaseVerdict {
        checks: Vec::new(),
        findings: Vec::new(),
        images: Vec::new(),
    };
    let findings = &mut verdict.findings;

    let sums_path = dir.join("SHA256SUMS");
    if present(&sums_path, "the list of the release's files", findings) {
        check_sums_signature(&key, key_path, &sums_path, &mut summary, findings);
        let (sums_summary, found) = release_check::check_sums(&sums_path)?;
        verdict.checks.push(sums_summary);
        findings.extend(found);
        let text = input::read_regular_to_string(&sums_path, Links::Follow, MAX_RECORD)?;
        check_unlisted(dir, &Sha256Sums::parse(&text, &sums_path)?, findings)?;
    }

    let manifest_path = dir.join("dist-manifest.json");
    let manifest = if present(&manifest_path, "the release's records", findings) {
        let (manifest_summary, found) = release_check::check_manifest(&manifest_path)?;
        verdict.checks.push(manifest_summary);
        findings.extend(found);
        let bytes = input::read_regular(&manifest_path, Links::Follow, MAX_RECORD)?;
        Some(DistManifest::parse(&bytes, &manifest_path)?)
    } else {
        None
    };

    let layout = dir.join("image");
    if layout.exists() {
        let (signature_summary, found, images) =
            signatures_check::check_signatures(&layout, key_path)?;
        verdict.checks.push(signature_summary);
        findings.extend(found);
        verdict.images = images;
    }

    let statement = check_provenance_signature(dir, &key, key_path, &mut summary, findings);
    if let Some(manifest) = &manifest {
        if statement.is_some() {
            provenance_check::check(dir, manifest, findings)?;
        }
        for image in &manifest.images {
            check_sbom_attachments(dir, manifest, image, &mut summary, findings);
            check_attestations(dir, image, &key, key_path, &mut summary, findings);
        }
        if let Some(statement) = &statement {
            check_embedded_dependencies(dir, manifest, statement, &mut summary, findings)?;
        }
    }
    verdict.checks.insert(0, summary);
    Ok(verdict)
}

/// Whether `path` is there; a finding naming it when it is not.
fn present(path: &Path, what: &str, findings: &mut Vec<Finding>) -> bool {
    if path.symlink_metadata().is_ok() {
        return true;
    }
    findings.push(Finding::new(
        FindingKind::FileMissing,
        path.display().to_string(),
        format!("the release lacks {what}"),
    ));
    false
}

/// `SHA256SUMS.sig` is the key's signature of `SHA256SUMS`.
fn check_sums_signature(
    key: &PublicKey,
    key_path: &Path,
    sums: &Path,
    summary: &mut CheckSummary,
    findings: &mut Vec<Finding>,
) {
    let signature = file_signature::signature_path(sums);
    let shown = signature.display().to_string();
    summary.items += 1;
    if signature.symlink_metadata().is_err() {
        findings.push(Finding::new(
            FindingKind::SignatureMissing,
            shown,
            "SHA256SUMS is not signed; sign the release with `cargo airlock sign --key KEY DIR` \
             (or `dist --sign`)",
        ));
        return;
    }
    match file_signature::verify_file(key, sums, &signature) {
        Ok(Verdict::Valid) => {}
        Ok(Verdict::Invalid(why)) => findings.push(Finding::new(
            FindingKind::SignatureInvalid,
            shown,
            format!("{why} ({})", key_path.display()),
        )),
        Err(e) => findings.push(Finding::new(
            FindingKind::Unreadable,
            shown,
            format!("{e:#}"),
        )),
    }
}

/// Every file of the release but [`UNLISTED`] is in the signed `SHA256SUMS`: a file nothing
/// signed vouches for is named, whatever the unsigned dist manifest says of it.
fn check_unlisted(dir: &Path, sums: &Sha256Sums, findings: &mut Vec<Finding>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !UNLISTED.contains(&name.as_str()) && !sums.entries.contains_key(&name) {
            findings.push(Finding::new(
                FindingKind::FileAdded,
                entry.path().display().to_string(),
                "not listed in SHA256SUMS: no signature vouches for it",
            ));
        }
    }
    Ok(())
}

/// The provenance envelope carries a signature by the key; returns its statement when it can
/// be read (checked further even when unsigned, so every problem is named).
fn check_provenance_signature(
    dir: &Path,
    key: &PublicKey,
    key_path: &Path,
    summary: &mut CheckSummary,
    findings: &mut Vec<Finding>,
) -> Option<Statement> {
    let path = dir.join(provenance::FILE_NAME);
    if !present(&path, "its SLSA provenance", findings) {
        return None;
    }
    let shown = path.display().to_string();
    summary.items += 1;
    let (envelope, statement) = match provenance::read(&path) {
        Ok(read) => read,
        Err(e) => {
            findings.push(Finding::new(
                FindingKind::Unreadable,
                shown,
                format!("{e:#}"),
            ));
            return None;
        }
    };
    if envelope.signatures.is_empty() {
        findings.push(Finding::new(
            FindingKind::SignatureMissing,
            shown,
            "the provenance envelope carries no signature: the release was made without \
             --sign (`cargo airlock dist --sign --key KEY`)",
        ));
    } else if envelope.verify(key).is_none() {
        findings.push(Finding::new(
            FindingKind::SignatureInvalid,
            shown,
            format!(
                "no signature of the provenance envelope is by the key {} ({})",
                key.key_id(),
                key_path.display()
            ),
        ));
    }
    Some(statement)
}

/// Each SBOM artifact the image record names has the image as its `subject` and carries the
/// release's SBOM files byte for byte; every release-wide SBOM is attached.
fn check_sbom_attachments(
    dir: &Path,
    manifest: &DistManifest,
    image: &ImageRecord,
    summary: &mut CheckSummary,
    findings: &mut Vec<Finding>,
) {
    let root = dir.join(&image.layout);
    let Ok(layout) = Layout::open(&root) else {
        return; // the manifest check already named why.
    };
    let release_sboms: BTreeMap<&str, &Sha256Digest> = manifest
        .artifacts
        .iter()
        .filter(|a| matches!(a.kind, ArtifactKind::SbomCyclonedx | ArtifactKind::SbomSpdx))
        .map(|a| (a.path.as_str(), &a.sha256))
        .collect();
    let mut attached = BTreeSet::new();
    for sbom in &image.sboms {
        summary.items += 1;
        let shown = format!("{}@{sbom}", root.display());
        let Some(entry) = layout.entry(sbom) else {
            continue; // the manifest check already named it.
        };
        let artifact: ImageManifest = match layout.read_json(entry) {
            Ok(artifact) => artifact,
            Err(e) => {
                findings.push(Finding::new(
                    FindingKind::Unreadable,
                    shown,
                    format!("{e:#}"),
                ));
                continue;
            }
        };
        let subject = artifact.subject().as_ref().map(descriptor_digest);
        if !matches!(subject, Some(Ok(s)) if s == image.digest) {
            findings.push(
                Finding::new(
                    FindingKind::FileModified,
                    shown.clone(),
                    format!("the SBOM is not attached to the image {}", image.tag),
                )
                .values(
                    image.digest,
                    match subject {
                        Some(Ok(s)) => s.to_string(),
                        _ => "no subject".to_owned(),
                    },
                ),
            );
        }
        for layer in artifact.layers() {
            let title = layer
                .annotations()
                .as_ref()
                .and_then(|a| a.get("org.opencontainers.image.title"))
                .map(String::as_str)
                .unwrap_or_default();
            let Ok(digest) = descriptor_digest(layer) else {
                continue; // the layout check named the layer.
            };
            match release_sboms.get(title) {
                Some(expected) if **expected == digest => {
                    attached.insert(title.to_owned());
                }
                Some(expected) => findings.push(
                    Finding::new(
                        FindingKind::FileModified,
                        shown.clone(),
                        format!("the SBOM attached as {title} is not the release's {title}"),
                    )
                    .values(expected.hex(), digest.hex()),
                ),
                None => findings.push(Finding::new(
                    FindingKind::FileAdded,
                    shown.clone(),
                    format!("attaches `{title}`, which is not an SBOM of the release"),
                )),
            }
        }
    }
    for (name, _) in release_sboms {
        let release_wide = manifest
            .artifacts
            .iter()
            .any(|a| a.path == name && a.target.is_none());
        if release_wide && !attached.contains(name) {
            findings.push(Finding::new(
                FindingKind::FileMissing,
                dir.join(name).display().to_string(),
                format!(
                    "not attached to the image {} in {}",
                    image.tag,
                    root.display()
                ),
            ));
        }
    }
}

/// Each attestation the image record names (the provenance `dist` attached to the image, which
/// `push` carries and cosign or a policy inside reads) is an envelope the key signed.
fn check_attestations(
    dir: &Path,
    image: &ImageRecord,
    key: &PublicKey,
    key_path: &Path,
    summary: &mut CheckSummary,
    findings: &mut Vec<Finding>,
) {
    let root = dir.join(&image.layout);
    let Ok(layout) = Layout::open(&root) else {
        return; // the manifest check already named why.
    };
    for attestation in &image.attestations {
        summary.items += 1;
        let shown = format!("{}@{attestation}", root.display());
        let Some(entry) = layout.entry(attestation) else {
            continue; // the manifest check already named it.
        };
        let envelopes = layout
            .read_json::<ImageManifest>(entry)
            .and_then(|artifact| {
                artifact
                    .layers()
                    .iter()
                    .map(|layer| {
                        let bytes = layout.read_document(layer)?;
                        Envelope::parse(&bytes, &shown)
                    })
                    .collect::<Result<Vec<_>>>()
            });
        match envelopes {
            Ok(envelopes) if envelopes.iter().all(|e| e.verify(key).is_some()) => {}
            Ok(_) => findings.push(Finding::new(
                FindingKind::SignatureInvalid,
                shown,
                format!(
                    "the provenance attached to the image {} is not signed by the key {} ({})",
                    image.tag,
                    key.key_id(),
                    key_path.display()
                ),
            )),
            Err(e) => findings.push(Finding::new(
                FindingKind::Unreadable,
                shown,
                format!("{e:#}"),
            )),
        }
    }
}

/// Every package in the embedded dependency list of each released binary (the provenance's
/// `<triple>/<bin>` subjects, read from the archives of that target) is a resolved dependency
/// of the provenance: `pkg:cargo/<name>@<version>`.
fn check_embedded_dependencies(
    dir: &Path,
    manifest: &DistManifest,
    statement: &Statement,
    summary: &mut CheckSummary,
    findings: &mut Vec<Finding>,
) -> Result<()> {
    let resolved: BTreeSet<&str> = statement
        .predicate
        .build_definition
        .resolved_dependencies
        .iter()
        .filter_map(|d| d.uri.as_deref())
        .collect();
    for subject in &statement.subject {
        let Some((triple, bin)) = subject.name.as_deref().and_then(|n| n.split_once('/')) else {
            continue;
        };
        for archive in manifest
            .artifacts
            .iter()
            .filter(|a| a.kind == ArtifactKind::Archive && a.target.as_deref() == Some(triple))
        {
            let archive_path = dir.join(&archive.path);
            let shown = format!("{} ({bin})", archive_path.display());
            let bytes = match provenance_check::read_binary_in_archive(&archive_path, bin) {
                Ok(Some(bytes)) => bytes,
                Ok(None) => continue, // the subject check names a binary no archive holds.
                Err(e) => {
                    findings.push(Finding::new(
                        FindingKind::Unreadable,
                        shown,
                        format!("{e:#}"),
                    ));
                    continue;
                }
            };
            summary.files += 1;
            summary.bytes += bytes.len() as u64;
            let info = match elf::parse_elf(Path::new(&shown), &bytes) {
                Ok(info) => info,
                Err(e) => {
                    findings.push(Finding::new(
                        FindingKind::Unreadable,
                        shown,
                        format!("{e:#}"),
                    ));
                    continue;
                }
            };
            match &info.dependencies {
                EmbeddedDeps::Absent => {}
                EmbeddedDeps::Unreadable { reason } => findings.push(Finding::new(
                    FindingKind::Unreadable,
                    shown,
                    format!("its embedded dependency list (.dep-v0) cannot be read: {reason}"),
                )),
                EmbeddedDeps::Present(list) => {
                    summary.items += 1;
                    for package in &list.packages {
                        let purl = package.purl();
                        if !resolved.contains(purl.as_str()) {
                            findings.push(
                                Finding::new(
                                    FindingKind::UnlockedPackage,
                                    shown.clone(),
                                    format!(
                                        "{bin} embeds {purl}, which is not a resolved dependency \
                                         in {}",
                                        provenance::FILE_NAME
                                    ),
                                )
                                .package(format!("{} v{}", package.name, package.version)),
                            );
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
