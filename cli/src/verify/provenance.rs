//! The provenance of a release against the release itself: every subject of
//! `provenance.intoto.jsonl` has the digest it claims (archives hashed on disk, binaries hashed
//! inside their archives, image manifests against the dist manifest's record), and every
//! archive of the release is a subject. Reads only.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};

use crate::digest::{self, Sha256Digest};
use crate::elf;
use crate::finding::{Finding, FindingKind};
use crate::records::{ArtifactKind, DistManifest};
use crate::release::provenance::{self, ResourceDescriptor};

/// Checks the provenance beside a dist manifest (`dir/provenance.intoto.jsonl`).
pub fn check(dir: &Path, manifest: &DistManifest, findings: &mut Vec<Finding>) -> Result<()> {
    let path = dir.join(provenance::FILE_NAME);
    let shown = path.display().to_string();
    let statement = match provenance::read(&path) {
        Ok((_, statement)) => statement,
        Err(e) => {
            findings.push(Finding::new(
                FindingKind::Unreadable,
                shown,
                format!("{e:#}"),
            ));
            return Ok(());
        }
    };
    let mut by_name: BTreeMap<&str, &ResourceDescriptor> = BTreeMap::new();
    for subject in &statement.subject {
        let Some(name) = subject.name.as_deref() else {
            continue;
        };
        by_name.insert(name, subject);
    }
    for artifact in manifest
        .artifacts
        .iter()
        .filter(|a| matches!(a.kind, ArtifactKind::Archive | ArtifactKind::ImageArchive))
    {
        if !by_name.contains_key(artifact.path.as_str()) {
            findings.push(Finding::new(
                FindingKind::FileAdded,
                dir.join(&artifact.path).display().to_string(),
                format!("not a subject of {}", provenance::FILE_NAME),
            ));
        }
    }
    for (name, subject) in &by_name {
        let Some(claimed) = subject.sha256() else {
            findings.push(Finding::new(
                FindingKind::Unreadable,
                format!("{shown}: {name}"),
                "the subject has no sha256 digest",
            ));
            continue;
        };
        let actual = match actual_digest(dir, manifest, name) {
            Ok(Some(actual)) => actual,
            Ok(None) => {
                findings.push(Finding::new(
                    FindingKind::FileMissing,
                    dir.join(name).display().to_string(),
                    format!(
                        "a subject of {} that the release lacks",
                        provenance::FILE_NAME
                    ),
                ));
                continue;
            }
            Err(e) => {
                findings.push(Finding::new(
                    FindingKind::Unreadable,
                    dir.join(name).display().to_string(),
                    format!("{e:#}"),
                ));
                continue;
            }
        };
        if actual.hex() != claimed {
            findings.push(
                Finding::new(
                    FindingKind::FileModified,
                    dir.join(name).display().to_string(),
                    format!(
                        "sha256 differs from its subject in {}",
                        provenance::FILE_NAME
                    ),
                )
                .values(claimed, actual.hex()),
            );
        }
    }
    Ok(())
}

/// The digest of the subject `name` as the release holds it: a file of the directory, an
/// image (`image:<tag>[:<platform>]`) from the dist manifest, or a binary (`<triple>/<bin>`)
/// inside an archive of that target. None when the release has no such thing.
fn actual_digest(dir: &Path, manifest: &DistManifest, name: &str) -> Result<Option<Sha256Digest>> {
    if let Some(artifact) = manifest.artifacts.iter().find(|a| a.path == name) {
        return Ok(Some(digest::hash_file(&dir.join(&artifact.path))?.0));
    }
    if let Some(rest) = name.strip_prefix("image:") {
        for image in &manifest.images {
            if rest == image.tag {
                return Ok(Some(image.digest));
            }
            if let Some(platform) = rest
                .strip_prefix(image.tag.as_str())
                .and_then(|r| r.strip_prefix(':'))
            {
                return Ok(image.manifests.get(platform).copied());
            }
        }
        return Ok(None);
    }
    let Some((triple, bin)) = name.split_once('/') else {
        return Ok(None);
    };
    for archive in manifest
        .artifacts
        .iter()
        .filter(|a| a.kind == ArtifactKind::Archive && a.target.as_deref() == Some(triple))
    {
        if let Some(found) = binary_in_archive(&dir.join(&archive.path), bin)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The sha256 of `<top>/<bin>` in a release archive (`.tar.gz` or `.tar.zst`), read within
/// [`elf::MAX_BINARY_SIZE`].
pub fn binary_in_archive(path: &Path, bin: &str) -> Result<Option<Sha256Digest>> {
    with_binary_in_archive(path, bin, |entry| {
        let (found, _) = digest::hash_reader(entry)
            .with_context(|| format!("cannot read {bin} in {}", path.display()))?;
        Ok(found)
    })
}

/// The bytes of `<top>/<bin>` in a release archive, read within [`elf::MAX_BINARY_SIZE`].
pub fn read_binary_in_archive(path: &Path, bin: &str) -> Result<Option<Vec<u8>>> {
    with_binary_in_archive(path, bin, |mut entry| {
        let mut bytes = Vec::new();
        entry
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {bin} in {}", path.display()))?;
        Ok(bytes)
    })
}

/// Calls `read` on the regular file `<top>/<bin>` of a release archive, if it holds one no
/// larger than [`elf::MAX_BINARY_SIZE`] (its header says so before any of it is read).
fn with_binary_in_archive<T>(
    path: &Path,
    bin: &str,
    read: impl FnOnce(tar::Entry<'_, Box<dyn Read>>) -> Result<T>,
) -> Result<Option<T>> {
    let file = crate::input::open_regular(path, crate::input::Links::Follow)?.file;
    let reader: Box<dyn Read> = if path.to_string_lossy().ends_with(".tar.zst") {
        Box::new(zstd::Decoder::new(file).with_context(|| format!("{}", path.display()))?)
    } else {
        Box::new(flate2::read::GzDecoder::new(file))
    };
    let mut archive = tar::Archive::new(reader);
    let entries = archive
        .entries()
        .with_context(|| format!("cannot read {}", path.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", path.display()))?;
        let entry_path = entry.path()?.into_owned();
        let mut parts = entry_path.components();
        let (Some(_top), Some(file), None) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if file.as_os_str() != bin || entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        if entry.size() > elf::MAX_BINARY_SIZE {
            anyhow::bail!("{}: {bin} is larger than airlock reads", path.display());
        }
        return read(entry).map(Some);
    }
    Ok(None)
}
