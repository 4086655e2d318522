//! `cargo airlock verify`: what is on disk (vendor directories, bundles, `SHA256SUMS`, OCI
//! layouts, a release and its provenance) against what it claims to be, naming every file that
//! differs; a whole release against its signatures (`--release DIR --key KEY.pub`). Reads only
//! what it checks (`--rebuild` builds in a temporary directory) and never uses the network
//! (`--rebuild` lets cargo fetch what it has not cached).
//!
//! Every check adds a [`CheckSummary`] and its [`Finding`]s to one [`VerifyReport`]; any
//! finding makes the exit code 1, unreadable input is an error (exit 2).

mod custody;
mod layout;
mod provenance;
mod rebuild;
mod release;
mod signatures;
mod vendor_dir;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Result;
use serde::Serialize;

pub use crate::finding::{Finding, FindingKind};

use crate::error::ExitKind;
use crate::lock::{Lockfile, PackageId};
use crate::render::{CommandReport, human_bytes};
use crate::vendoring::PendingCrate as Pristine;
use crate::vendoring::bundle::{Bundle, PassedCrate};
use crate::vendoring::cache::{self, CrateCache};
use crate::workspace::Workspace;

/// Options of `cargo airlock verify`.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The workspace's `Cargo.toml` (default: the current directory's workspace).
    pub manifest_path: Option<PathBuf>,
    /// The `Cargo.lock` to verify against (default: the workspace's; with only `--bundle` and
    /// no workspace, the bundle's own).
    pub lockfile: Option<PathBuf>,
    /// A vendor directory to check.
    pub vendor: Option<PathBuf>,
    /// A bundle to check, and the pristine `.crate` files to compare a vendor directory with.
    pub bundle: Option<PathBuf>,
    /// Do not use cargo's cache for pristine `.crate` files.
    pub no_cache: bool,
    /// Cargo's home (default: `$CARGO_HOME`, else `~/.cargo`).
    pub cargo_home: Option<PathBuf>,
    /// A `SHA256SUMS` file to check the files beside it against.
    pub sums: Option<PathBuf>,
    /// A `dist-manifest.json` to check the release directory beside it against.
    pub manifest: Option<PathBuf>,
    /// An OCI image layout whose blobs to check against their digests.
    pub layout: Option<PathBuf>,
    /// A release directory to rebuild from its provenance and compare byte for byte.
    pub rebuild: Option<PathBuf>,
    /// A release directory to check whole against its signatures by `key`.
    pub release: Option<PathBuf>,
    /// With `layout`: the public key every image of the layout must be signed with; with
    /// `release`: the release key.
    pub key: Option<PathBuf>,
}

/// Which check a [`CheckSummary`] is about (`check` in the JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckKind {
    /// `--vendor DIR` against `Cargo.lock` (and pristine `.crate` files).
    Vendor,
    /// `--bundle FILE` against `Cargo.lock`.
    Bundle,
    /// `--sums SHA256SUMS` against the files beside it.
    Sums,
    /// `--manifest dist-manifest.json` against the release directory.
    Manifest,
    /// `--layout DIR`: blobs against their digests.
    Layout,
    /// `--layout DIR --key KEY.pub`: every image signed by the key.
    Signatures,
    /// `--rebuild DIR`: the release rebuilt from its provenance.
    Rebuild,
    /// `--release DIR --key KEY.pub`: the signatures of `SHA256SUMS` and the provenance, the
    /// SBOM attachments and the embedded dependency lists (the other checks it runs have
    /// their own summaries).
    Release,
}

impl CheckKind {
    /// What the check counts in `items`, for the human table.
    fn items(self) -> &'static str {
        match self {
            CheckKind::Vendor => "packages",
            CheckKind::Bundle => "crates",
            CheckKind::Sums => "entries",
            CheckKind::Manifest => "artifacts and images",
            CheckKind::Layout => "referenced blobs",
            CheckKind::Signatures => "images",
            CheckKind::Rebuild => "subjects",
            CheckKind::Release => "signatures, SBOM attachments and dependency lists",
        }
    }
}

impl std::fmt::Display for CheckKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            CheckKind::Vendor => "vendor",
            CheckKind::Bundle => "bundle",
            CheckKind::Sums => "sums",
            CheckKind::Manifest => "manifest",
            CheckKind::Layout => "layout",
            CheckKind::Signatures => "signatures",
            CheckKind::Rebuild => "rebuild",
            CheckKind::Release => "release",
        })
    }
}

/// What one check looked at.
#[derive(Debug, Clone, Serialize)]
pub struct CheckSummary {
    /// Which check.
    pub check: CheckKind,
    /// The directory or file checked.
    pub target: PathBuf,
    /// What it was checked against.
    pub against: PathBuf,
    /// Packages (or entries) checked.
    pub items: usize,
    /// Files hashed.
    pub files: usize,
    /// Bytes hashed.
    pub bytes: u64,
    /// Packages whose files were compared with their pristine `.crate`.
    pub compared_with_crate: usize,
}

/// The result of `verify`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Whether every check passed.
    pub ok: bool,
    /// One summary per check run.
    pub checks: Vec<CheckSummary>,
    /// Every difference found, sorted by path.
    pub findings: Vec<Finding>,
    /// With `--key`: each image of the layout and the repositories its valid signatures name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub signatures: Vec<crate::signing::ImageVerdict>,
    /// Wall time in seconds.
    pub seconds: f64,
}

/// Runs the checks `opts` asks for.
pub fn verify(opts: &VerifyOptions) -> Result<VerifyReport> {
    let started = Instant::now();
    let release_checks = [
        &opts.sums,
        &opts.manifest,
        &opts.layout,
        &opts.rebuild,
        &opts.release,
    ];
    if opts.vendor.is_none() && opts.bundle.is_none() && release_checks.iter().all(|o| o.is_none())
    {
        return Err(crate::error::input(
            "nothing to verify: give --vendor DIR, --bundle FILE, --sums FILE, --manifest FILE, \
             --layout DIR, --release DIR or --rebuild DIR",
        ));
    }
    if opts.release.is_some() && opts.key.is_none() {
        return Err(crate::error::input(
            "--release checks a release against its signatures: give the release's public key \
             with --key KEY.pub",
        ));
    }
    let mut checks = Vec::new();
    let mut findings = Vec::new();
    for (path, check) in [
        (
            &opts.sums,
            release::check_sums as fn(&Path) -> Result<(CheckSummary, Vec<Finding>)>,
        ),
        (&opts.manifest, release::check_manifest),
        (&opts.layout, layout::check_layout),
    ] {
        if let Some(path) = path {
            let (summary, found) = check(path)?;
            checks.push(summary);
            findings.extend(found);
        }
    }
    let mut signatures = Vec::new();
    if let (Some(dir), Some(key)) = (&opts.release, &opts.key) {
        let verdict = custody::check_release(dir, key)?;
        checks.extend(verdict.checks);
        findings.extend(verdict.findings);
        signatures = verdict.images;
    }
    if let Some(key) = &opts.key
        && opts.release.is_none()
    {
        let Some(layout) = &opts.layout else {
            return Err(crate::error::input(
                "--key checks the signatures of a layout or a release: give --layout DIR or \
                 --release DIR too",
            ));
        };
        let (summary, found, verdicts) = signatures::check_signatures(layout, key)?;
        checks.push(summary);
        findings.extend(found);
        signatures.extend(verdicts);
    }
    if opts.vendor.is_some() || opts.bundle.is_some() {
        check_dependencies(opts, &mut checks, &mut findings)?;
    }
    if let Some(dir) = &opts.rebuild {
        let (summary, found) = rebuild::check_rebuild(dir, opts.manifest_path.as_deref())?;
        checks.push(summary);
        findings.extend(found);
    }
    findings.sort();
    findings.dedup();
    Ok(VerifyReport {
        ok: findings.is_empty(),
        checks,
        findings,
        signatures,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The `--vendor` and `--bundle` checks, against `Cargo.lock`.
fn check_dependencies(
    opts: &VerifyOptions,
    checks: &mut Vec<CheckSummary>,
    findings: &mut Vec<Finding>,
) -> Result<()> {
    let bundle = opts.bundle.as_deref().map(Bundle::read).transpose()?;
    // Finding `Cargo.lock` runs `cargo metadata`, tens of milliseconds of process start-up:
    // the vendor directory is read meanwhile, and, when no pristine `.crate` can be compared
    // with it, hashed until `Cargo.lock` is there.
    let hash_until = (opts.no_cache && bundle.is_none()).then(|| AtomicBool::new(false));
    let (lock, survey) = std::thread::scope(|scope| {
        let survey = opts
            .vendor
            .as_deref()
            .map(|dir| scope.spawn(|| vendor_dir::survey(dir, hash_until.as_ref())));
        let lock = load_lockfile(opts, bundle.as_ref());
        if let Some(flag) = &hash_until {
            flag.store(true, Ordering::Relaxed);
        }
        let survey = survey.map(|handle| {
            handle
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("reading the vendor directory panicked")))
        });
        (lock, survey)
    });
    let lock = lock?;
    let mut pristine: BTreeMap<PackageId, Pristine> = BTreeMap::new();
    let mut crates = CrateCache::default();
    let mut passed = Vec::new();

    if let Some(bundle) = &bundle {
        let found;
        (passed, found) = bundle.check(&lock);
        checks.push(CheckSummary {
            check: CheckKind::Bundle,
            target: bundle.path.clone(),
            against: lock.path().to_path_buf(),
            items: bundle.manifest.packages.len(),
            files: bundle.manifest.packages.len(),
            bytes: passed.iter().map(|p| p.size).sum(),
            compared_with_crate: 0,
        });
        findings.extend(found);
    }

    if let Some(survey) = survey {
        let survey = survey?;
        if !opts.no_cache {
            crates = add_cached_crates(opts, &lock, &passed, &mut pristine)?;
        }
        // Only a vendor directory to compare needs the bundle's bytes: one more pass over it.
        let bundle = bundle.as_ref().map(|b| (b, passed.as_slice()));
        let (summary, found) = vendor_dir::check(survey, &lock, bundle, &pristine, &crates)?;
        checks.push(summary);
        findings.extend(found);
    }

    Ok(())
}

fn load_lockfile(opts: &VerifyOptions, bundle: Option<&Bundle>) -> Result<Lockfile> {
    if let Some(path) = &opts.lockfile {
        return Lockfile::load(path);
    }
    if let Some(found) = crate::workspace::find_lockfile(opts.manifest_path.as_deref())
        && found.certain
    {
        return Lockfile::load(&found.path);
    }
    match Workspace::load(opts.manifest_path.as_deref()) {
        Ok(ws) => Lockfile::load(&ws.lockfile()),
        Err(e) => match bundle {
            Some(b) if opts.manifest_path.is_none() && opts.vendor.is_none() => {
                let text = String::from_utf8_lossy(&b.lockfile);
                Lockfile::parse(&text, &b.path.join("Cargo.lock"))
            }
            _ => Err(e),
        },
    }
}

/// Pristine `.crate` files from cargo's cache, for the packages the bundle did not provide:
/// found now, read and proven against `Cargo.lock` only when their package is checked (a file
/// with another sha256 is not used). Returns the cache they are read from.
fn add_cached_crates(
    opts: &VerifyOptions,
    lock: &Lockfile,
    from_bundle: &[PassedCrate],
    pristine: &mut BTreeMap<PackageId, Pristine>,
) -> Result<CrateCache> {
    let from_bundle: BTreeSet<&PackageId> = from_bundle.iter().map(|p| &p.id).collect();
    let home = match &opts.cargo_home {
        Some(home) => home.clone(),
        None => match cache::cargo_home() {
            Ok(home) => home,
            Err(_) => return Ok(CrateCache::default()),
        },
    };
    let crates = CrateCache::scan(&home)?;
    for package in lock.remote_packages() {
        if from_bundle.contains(&package.id) || crates.candidates(package).is_empty() {
            continue;
        }
        if let Some(expected) = package.checksum {
            pristine.insert(
                package.id.clone(),
                Pristine::Cached {
                    package: package.clone(),
                    expected,
                    size: crates.size_hint(package),
                },
            );
        }
    }
    Ok(crates)
}

impl CommandReport for VerifyReport {
    fn human(&self) -> String {
        let mut out = String::new();
        for check in &self.checks {
            if check.check == CheckKind::Signatures {
                let _ = writeln!(
                    out,
                    "signatures: {} against {}: {} images, {} signatures",
                    check.target.display(),
                    check.against.display(),
                    check.items,
                    check.files
                );
                continue;
            }
            let _ = write!(
                out,
                "{}: {} against {}: {} {}, {} files ({})",
                check.check,
                check.target.display(),
                check.against.display(),
                check.items,
                check.check.items(),
                check.files,
                human_bytes(check.bytes)
            );
            if check.check == CheckKind::Vendor {
                let _ = write!(
                    out,
                    ", {} compared with their .crate",
                    check.compared_with_crate
                );
            }
            out.push('\n');
        }
        for image in self.signatures.iter().filter(|i| i.ok()) {
            let _ = writeln!(
                out,
                "signed: {} {} for {}",
                if image.tags.is_empty() {
                    "-".to_owned()
                } else {
                    image.tags.join(",")
                },
                image.digest,
                image.signed_repositories.join(", ")
            );
        }
        if self.findings.is_empty() {
            out.push_str("ok: no differences\n");
            return out;
        }
        let _ = writeln!(out, "{} difference(s):", self.findings.len());
        for finding in &self.findings {
            let _ = writeln!(out, "  {finding}");
        }
        out
    }

    fn exit_kind(&self) -> ExitKind {
        if self.ok {
            ExitKind::Ok
        } else {
            ExitKind::CheckFailed
        }
    }
}

/// `dir/relative` for findings.
fn shown(dir: &Path, relative: &str) -> String {
    dir.join(relative).display().to_string()
}
