//! `verify --rebuild DIR`: the release in `DIR` rebuilt from its provenance and compared byte
//! for byte. The recorded revision is cloned from the local repository into a temporary
//! directory (nothing of the working tree comes along), its `Cargo.lock` is checked against
//! the recorded digest, `dist` runs there with the recorded targets, packages, binaries and
//! archive formats (`--locked`), and every subject of the rebuilt provenance is compared with
//! the original's. Nothing is fetched but what cargo itself needs (none with a warm cache or
//! vendored sources); `DIR` is never written.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::CheckSummary;
use crate::digest::Sha256Digest;
use crate::error;
use crate::finding::{Finding, FindingKind};
use crate::process;
use crate::release::provenance::{self, ResourceDescriptor, Statement};
use crate::release::{self, DistOptions};
use crate::target::TargetTriple;
use crate::workspace;

/// Rebuilds the release in `dir` from the repository holding the workspace at `manifest_path`
/// (default: the current directory's) and compares every subject.
pub fn check_rebuild(
    dir: &Path,
    manifest_path: Option<&Path>,
) -> Result<(CheckSummary, Vec<Finding>)> {
    let provenance_path = dir.join(provenance::FILE_NAME);
    let (_, original) = provenance::read(&provenance_path).with_context(|| {
        format!(
            "{} has no readable provenance; `cargo airlock dist` writes it",
            dir.display()
        )
    })?;
    let build = &original.predicate.build_definition;
    let parameters = &build.external_parameters;
    let Some(revision) = parameters.source.revision.as_deref() else {
        return Err(error::input(format!(
            "{}: the release was not built from a git checkout, so there is no revision to \
             rebuild from",
            provenance_path.display()
        )));
    };
    if !revision.chars().all(|c| c.is_ascii_hexdigit()) || revision.len() < 7 {
        return Err(error::input(format!(
            "{}: `{revision}` is not a git commit id",
            provenance_path.display()
        )));
    }
    if parameters.profile != "release" || !parameters.features.is_empty() {
        return Err(error::input(format!(
            "{}: the release was built with profile `{}` and features [{}]; `dist` rebuilds the \
             `release` profile without extra features",
            provenance_path.display(),
            parameters.profile,
            parameters.features.join(", ")
        )));
    }
    if parameters.source.dirty {
        crate::progress::warn(format!(
            "{}: the release was built from a checkout with uncommitted changes; the revision \
             alone may not reproduce it",
            provenance_path.display()
        ));
    }
    let repository = repository_root(manifest_path)?;
    let scratch = tempfile::Builder::new()
        .prefix("airlock-rebuild-")
        .tempdir()
        .context("cannot create a temporary directory for the rebuild")?;
    let checkout = scratch.path().join("source");
    clone_revision(&repository, revision, &checkout)?;
    let workspace_dir = checkout.join(workspace_subdir(&parameters.source.workspace)?);

    let mut findings = Vec::new();
    check_lockfile(build, &workspace_dir, &mut findings)?;
    let expected_epoch = build.internal_parameters.source_date_epoch;
    let epoch = workspace::source_date_epoch(&workspace_dir)?;
    if epoch != expected_epoch {
        return Err(error::input(format!(
            "{}: the release was built with SOURCE_DATE_EPOCH={expected_epoch}, the rebuild \
             would use {epoch}; run again with SOURCE_DATE_EPOCH={expected_epoch}",
            provenance_path.display()
        )));
    }

    let targets = parameters
        .targets
        .iter()
        .map(|t| {
            t.parse::<TargetTriple>()
                .map_err(|e| error::input(format!("{}: {e}", provenance_path.display())))
        })
        .collect::<Result<Vec<_>>>()?;
    let archives = parameters
        .archives
        .iter()
        .map(|a| a.parse())
        .collect::<Result<Vec<_>>>()
        .with_context(|| format!("{}", provenance_path.display()))?;
    let out = scratch.path().join("dist");
    crate::progress::status(
        "Rebuilding",
        format!("{revision} in {}", checkout.display()),
    );
    release::dist(&DistOptions {
        manifest_path: Some(workspace_dir.join("Cargo.toml")),
        out_dir: Some(out.clone()),
        targets,
        packages: parameters.packages.clone(),
        bins: parameters.bins.clone(),
        archives,
        no_image: !parameters.image,
        strip: Some(parameters.strip),
        budget: None,
        locked: true,
        offline: false,
        // The rebuild compares subjects, which no signature changes: no key needed, even when
        // the settings of the revision ask for a signed release.
        sign: false,
        no_sign: true,
        key: None,
        passphrase: None,
        signed_repository: None,
        load: None,
    })
    .with_context(|| format!("the rebuild of {revision} failed"))?;
    let (_, rebuilt) = provenance::read(&out.join(provenance::FILE_NAME))?;
    compare_subjects(dir, &original, &rebuilt, &mut findings);
    Ok((
        CheckSummary {
            check: super::CheckKind::Rebuild,
            target: dir.to_path_buf(),
            against: provenance_path,
            items: original.subject.len(),
            files: rebuilt.subject.len(),
            bytes: 0,
            compared_with_crate: 0,
        },
        findings,
    ))
}

/// The top of the git repository holding the workspace.
fn repository_root(manifest_path: Option<&Path>) -> Result<PathBuf> {
    let start = match manifest_path {
        Some(path) => path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".")),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    workspace::git_output(&start, &["rev-parse", "--show-toplevel"])
        .map(PathBuf::from)
        .ok_or_else(|| {
            error::input(format!(
                "{} is not inside a git repository; --rebuild needs the repository the release \
                 was built from (give --manifest-path of its workspace)",
                start.display()
            ))
        })
}

/// The recorded workspace directory, refused when it would leave the checkout.
fn workspace_subdir(recorded: &str) -> Result<PathBuf> {
    let path = Path::new(recorded);
    if path.is_absolute()
        || path
            .components()
            .any(|c| matches!(c, std::path::Component::ParentDir))
    {
        return Err(error::input(format!(
            "the provenance names the workspace directory `{recorded}`, which is not inside the \
             repository"
        )));
    }
    Ok(path.to_path_buf())
}

/// `git clone --no-checkout` of the local repository, then a detached checkout of `revision`:
/// only committed files, whatever the working tree holds.
fn clone_revision(repository: &Path, revision: &str, dest: &Path) -> Result<()> {
    let exists = process::run_captured(
        Command::new("git")
            .arg("-C")
            .arg(repository)
            .args(["cat-file", "-e"])
            .arg(format!("{revision}^{{commit}}")),
    );
    if exists.is_err() {
        return Err(error::input(format!(
            "the release was built from commit {revision}, which the repository at {} does not \
             have; fetch it first",
            repository.display()
        )));
    }
    process::run_captured(
        Command::new("git")
            .args(["clone", "--quiet", "--no-checkout"])
            .arg(repository)
            .arg(dest),
    )
    .with_context(|| format!("cannot clone {}", repository.display()))?;
    process::run_captured(Command::new("git").arg("-C").arg(dest).args([
        "-c",
        "advice.detachedHead=false",
        "checkout",
        "--quiet",
        "--detach",
        revision,
    ]))
    .with_context(|| format!("cannot check out {revision}"))?;
    Ok(())
}

/// The checkout's `Cargo.lock` against the digest the provenance recorded.
fn check_lockfile(
    build: &provenance::BuildDefinition,
    workspace_dir: &Path,
    findings: &mut Vec<Finding>,
) -> Result<()> {
    let Some(recorded) = build
        .resolved_dependencies
        .iter()
        .find(|d| d.name.as_deref() == Some("Cargo.lock"))
        .and_then(ResourceDescriptor::sha256)
    else {
        return Ok(());
    };
    let path = workspace_dir.join("Cargo.lock");
    let bytes = crate::input::read_regular(
        &path,
        crate::input::Links::Refuse,
        crate::input::MAX_TEXT_INPUT,
    )?;
    let actual = Sha256Digest::of(&bytes).hex();
    if actual != recorded {
        findings.push(
            Finding::new(
                FindingKind::FileModified,
                "Cargo.lock",
                "the revision's Cargo.lock is not the one the release was built with",
            )
            .values(recorded, actual),
        );
    }
    Ok(())
}

/// Every subject of the original against the rebuild's, by name.
fn compare_subjects(
    dir: &Path,
    original: &Statement,
    rebuilt: &Statement,
    findings: &mut Vec<Finding>,
) {
    let digests = |s: &Statement| -> BTreeMap<String, Option<String>> {
        s.subject
            .iter()
            .filter_map(|d| Some((d.name.clone()?, d.sha256().map(str::to_owned))))
            .collect()
    };
    let before = digests(original);
    let after = digests(rebuilt);
    for (name, expected) in &before {
        let shown = dir.join(name).display().to_string();
        match after.get(name) {
            None => findings.push(Finding::new(
                FindingKind::FileMissing,
                shown,
                "the rebuild did not produce it",
            )),
            Some(actual) if actual != expected => findings.push(
                Finding::new(
                    FindingKind::FileModified,
                    shown,
                    "the rebuild differs from the release",
                )
                .values(
                    expected.as_deref().unwrap_or("none"),
                    actual.as_deref().unwrap_or("none"),
                ),
            ),
            Some(_) => {}
        }
    }
    for name in after.keys().filter(|n| !before.contains_key(*n)) {
        findings.push(Finding::new(
            FindingKind::FileAdded,
            dir.join(name).display().to_string(),
            "the rebuild produced it, the release's provenance does not list it",
        ));
    }
}
