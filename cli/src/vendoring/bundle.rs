//! Air-gap bundles: one deterministic `.tar.zst` holding the pristine `.crate` files,
//! `Cargo.lock` and a manifest (name, version, source, sha256 of each), to carry into a network
//! with no access to crates.io and vendor there with nothing else.
//!
//! Layout (sorted, fixed mtime, uid/gid 0, via [`crate::tarball::TarBuilder`]):
//! ```text
//! airlock-bundle/Cargo.lock
//! airlock-bundle/crates/NAME-VERSION.crate
//! airlock-bundle/git/OBJECT-ID
//! airlock-bundle/manifest.json
//! ```
//! Git dependencies travel as the `.crate` that `cargo package` made of their locked commit;
//! the manifest records their `git+URL#COMMIT` source, which must equal `Cargo.lock`'s, and
//! their package directory in the repository; `git/` holds the raw git objects (the commit and
//! the trees down to every file) that prove each file of the `.crate` against that commit
//! ([`super::git_proof`] says what is proven and what is not).
//!
//! A bundle is hostile input: reading it is bounded in memory by its size, and it is checked
//! entry by entry before anything is extracted from it. Never writes outside the bundle file.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Condvar, Mutex, PoisonError};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::finding::{Finding, FindingKind};
use crate::input::{Links, RegularFile};
use crate::lock::{Lockfile, PackageId, Source, parse_package_version, validate_package_name};
use crate::tarball::{EXEC_MODE, FILE_MODE, header, safe_entry_path};

use super::PendingCrate;
use super::archive::{self, ArchiveKind, CrateArchive};
use super::cache::CrateCache;
use super::git_proof::{self, BundleObjects, GitProof, ProblemKind};
use super::platform::{self, Declaration};

/// The top directory of every bundle.
pub const BUNDLE_ROOT: &str = "airlock-bundle";
/// The manifest format this airlock writes (and the newest it reads). Format 2 added git
/// proofs; a format 1 bundle is read, but a git package in it is unproven (a finding).
pub const BUNDLE_FORMAT: u32 = 2;
/// zstd level of bundles (`.crate` files are gzip already; a higher level gains little).
const ZSTD_LEVEL: i32 = 3;
/// The largest zstd window a bundle may need, as a power of two (8 MiB; level 3 uses 2 MiB,
/// level 19 8 MiB): the decoder allocates the window a frame asks for, whatever its content.
const ZSTD_WINDOW_LOG_MAX: u32 = 23;
/// How many times its own size a bundle may expand to. Its `.crate` files are gzip already (about
/// 1:1 in zstd); tar headers, the lockfile and the manifest compress well, and a bundle of many
/// tiny crates stays below 4 x; 16 leaves room for git packages' tree objects.
pub const BUNDLE_EXPANSION_FACTOR: u64 = 16;
/// What a bundle may expand to on top of [`BUNDLE_EXPANSION_FACTOR`] times its size (a large
/// `Cargo.lock` in a small bundle).
pub const BUNDLE_EXPANSION_SLACK: u64 = 4 << 20;

/// The most bytes a bundle of `compressed` bytes may expand to, tar headers included.
pub fn bundle_expansion_limit(compressed: u64) -> u64 {
    compressed
        .saturating_mul(BUNDLE_EXPANSION_FACTOR)
        .saturating_add(BUNDLE_EXPANSION_SLACK)
}

/// Counts what the tar reader takes from the decompressed stream, failing past the limit and
/// remembering that it did (so the error says "too large", not "corrupt").
struct Bounded<R> {
    inner: R,
    remaining: u64,
    exceeded: Rc<Cell<bool>>,
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.remaining == 0 {
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => {
                    self.exceeded.set(true);
                    Err(std::io::Error::other("the bundle expands beyond its limit"))
                }
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// `manifest.json` of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BundleManifest {
    /// [`BUNDLE_FORMAT`].
    pub format: u32,
    /// sha256 of the bundled `Cargo.lock`.
    pub lockfile_sha256: Sha256Digest,
    /// One entry per `.crate`, sorted by file.
    pub packages: Vec<BundleEntry>,
}

/// One `.crate` of a bundle.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct BundleEntry {
    /// Package name.
    pub name: String,
    /// Package version.
    pub version: String,
    /// The lockfile source (`registry+…`, `sparse+…`, `git+…#COMMIT`).
    pub source: String,
    /// Registry `.crate` or one packaged from git.
    pub kind: ArchiveKind,
    /// sha256 of the `.crate` file.
    pub sha256: Sha256Digest,
    /// Its path inside the bundle, under `airlock-bundle/`.
    pub file: String,
    /// For a git package: what proves its files against the locked commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitProof>,
}

impl Bundle {
    /// The findings of checking the git package `archive`, locked at `commit`, against the
    /// proof its manifest `entry` records and the bundle's git objects.
    fn git_problems(
        &self,
        archive: &CrateArchive,
        commit: &str,
        entry: &BundleEntry,
        objects: &mut BundleObjects<'_>,
    ) -> Vec<Finding> {
        let label = archive.id.to_string();
        let Some(proof) = &entry.git else {
            return vec![
                Finding::new(
                    FindingKind::SourceMismatch,
                    archive.origin.clone(),
                    "the bundle carries no proof that this git package is its locked commit \
                     (bundle format 1); make the bundle again with `cargo airlock vendor \
                     --bundle`",
                )
                .package(&label),
            ];
        };
        git_proof::check_package(archive, commit, proof, objects)
            .into_iter()
            .map(|problem| {
                let kind = match problem.kind {
                    ProblemKind::Modified => FindingKind::FileModified,
                    ProblemKind::NotInCommit => FindingKind::FileAdded,
                    ProblemKind::Missing => FindingKind::FileMissing,
                    ProblemKind::WrongCommit => FindingKind::SourceMismatch,
                    ProblemKind::Broken => FindingKind::Unreadable,
                };
                let path = if problem.file.is_empty() {
                    archive.origin.clone()
                } else {
                    format!("{}/{}", archive.origin, problem.file)
                };
                let finding = Finding::new(kind, path, problem.message).package(&label);
                match problem.values {
                    Some((expected, actual)) => finding.values(expected, actual),
                    None => finding,
                }
            })
            .collect()
    }
}

impl BundleEntry {
    /// Checks the fields that name things: a cargo package name, a canonical semver version,
    /// and `file` exactly `crates/NAME-VERSION.crate` (so no entry can point at another's file
    /// or outside `crates/`).
    pub fn well_formed(&self) -> Result<(), String> {
        validate_package_name(&self.name)
            .map_err(|why| format!("name {:?} is not a cargo package name: {why}", self.name))?;
        parse_package_version(&self.version)
            .map_err(|why| format!("version {:?} is not a semver version: {why}", self.version))?;
        let expected = format!("crates/{}-{}.crate", self.name, self.version);
        if self.file != expected {
            return Err(format!("file {:?} must be {expected:?}", self.file));
        }
        Ok(())
    }
}

/// The most bytes of a `.crate`'s `Cargo.toml` read into memory (the largest on crates.io are
/// a few hundred KB).
const MAX_MANIFEST_BYTES: u64 = 4 << 20;

/// What a bundled `.crate`'s own `Cargo.toml` says it is, read while the bundle is scanned.
#[derive(Debug, Clone, PartialEq)]
pub enum OwnManifest {
    /// `[package] name` and `version` (`None`: absent or not a string), and what the platform
    /// filter reads (so `vendor --from-bundle --platform` decides every stub before the second
    /// pass over the bundle, which reads each `.crate` once).
    Names {
        /// The name.
        name: Option<String>,
        /// The version (a manifest without one is 0.0.0).
        version: Option<String>,
        /// Its dependency declarations.
        declarations: Vec<Declaration>,
        /// Whether its library is a proc-macro.
        proc_macro: bool,
    },
    /// The `.crate` has no `Cargo.toml`.
    Missing,
    /// The `.crate` or its `Cargo.toml` cannot be read or parsed: why.
    Unreadable(String),
}

impl OwnManifest {
    /// Reads the `Cargo.toml` of the `.crate` `bytes`, whose entries sit under `dir_name/`.
    fn of(bytes: &[u8], dir_name: &str, origin: &str) -> OwnManifest {
        let manifest = match archive::packaged_manifest(bytes, dir_name, origin, MAX_MANIFEST_BYTES)
        {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return OwnManifest::Missing,
            Err(e) => return OwnManifest::Unreadable(format!("{e:#}")),
        };
        let table: toml::Table = match std::str::from_utf8(&manifest)
            .map_err(|e| e.to_string())
            .and_then(|text| text.parse().map_err(|e: toml::de::Error| e.to_string()))
        {
            Ok(table) => table,
            Err(e) => {
                return OwnManifest::Unreadable(format!(
                    "the .crate's Cargo.toml cannot be parsed: {e}"
                ));
            }
        };
        let package = table.get("package");
        let field = |key| package.and_then(|p| p.get(key));
        OwnManifest::Names {
            name: field("name").and_then(|n| n.as_str()).map(str::to_owned),
            // A manifest without a version is version 0.0.0 (cargo 1.75 and later).
            version: field("version")
                .map_or(Some("0.0.0".to_owned()), |v| v.as_str().map(str::to_owned)),
            declarations: platform::declarations(&table),
            proc_macro: platform::is_proc_macro(&table),
        }
    }
}

/// A finding when the `.crate`'s own `Cargo.toml` is missing, unreadable or names another
/// package than `id`, the one it is bundled as: cargo's `directory` source would take the
/// package its manifest names.
fn names_another_package(own: &OwnManifest, id: &PackageId, origin: &str) -> Option<Finding> {
    let label = id.to_string();
    let bad = |kind, why: String| {
        Some(Finding::new(kind, format!("{origin}/Cargo.toml"), why).package(&label))
    };
    let (name, version) = match own {
        OwnManifest::Names { name, version, .. } => (name.as_deref(), version.as_deref()),
        OwnManifest::Missing => {
            return bad(
                FindingKind::FileMissing,
                "the .crate has no Cargo.toml".into(),
            );
        }
        OwnManifest::Unreadable(why) => return bad(FindingKind::Unreadable, why.clone()),
    };
    let expected_version = id.version.to_string();
    if name == Some(id.name.as_str()) && version == Some(expected_version.as_str()) {
        return None;
    }
    Some(
        Finding::new(
            FindingKind::UnlockedPackage,
            format!("{origin}/Cargo.toml"),
            format!(
                "the .crate's Cargo.toml names package {} {}, not the locked {} {}; \
                 refusing to vendor it",
                name.unwrap_or("(none)"),
                version.unwrap_or("(not a string)"),
                id.name,
                expected_version
            ),
        )
        .package(&label)
        .values(
            format!("{} {}", id.name, expected_version),
            format!("{} {}", name.unwrap_or(""), version.unwrap_or("")),
        ),
    )
}

/// A bundle that was written: its sha256 and size, and every package it holds (with the
/// sha256 and size of its `.crate`).
#[derive(Debug)]
pub struct WrittenBundle {
    /// sha256 of the file.
    pub sha256: Sha256Digest,
    /// Its size.
    pub bytes: u64,
    /// Every package, sorted by file.
    pub crates: Vec<(PackageId, Sha256Digest, u64)>,
}

/// What a bundle entry holds, in the order the tar lists it.
enum Item<'a> {
    Dir,
    Bytes(&'a [u8]),
    Crate(&'a PendingCrate),
}

/// Writes a bundle of `pending` (read from `cache` one at a time, each proven against
/// `Cargo.lock` as it is read) and `lockfile` to `path` (atomically). The same inputs give the
/// same bytes; only the `.crate` being written is in memory. Fails, writing nothing, listing
/// every `.crate` that differs from `Cargo.lock`.
pub fn write_bundle(
    path: &Path,
    lockfile: &[u8],
    pending: &[PendingCrate],
    cache: &CrateCache,
    mtime: u64,
) -> Result<WrittenBundle> {
    let mut items: BTreeMap<String, Item<'_>> = BTreeMap::new();
    let mut packages = Vec::with_capacity(pending.len());
    for crate_file in pending {
        let id = crate_file.id();
        let file = format!("crates/{}.crate", id.dir_name());
        let (kind, sha256, git) = match crate_file {
            PendingCrate::Cached { expected, .. } => (ArchiveKind::Registry, *expected, None),
            PendingCrate::Loaded(archive) => {
                let git = match (archive.kind, &archive.git_evidence) {
                    (ArchiveKind::Registry, _) => None,
                    (ArchiveKind::Git, Some(evidence)) => {
                        for (object, raw) in &evidence.objects {
                            let entry =
                                format!("{BUNDLE_ROOT}/{}", BundleObjects::file_of(*object));
                            items.insert(entry, Item::Bytes(raw));
                        }
                        Some(evidence.proof.clone())
                    }
                    (ArchiveKind::Git, None) => anyhow::bail!(
                        "{}: no git proof was gathered; a bundle cannot carry it unproven",
                        archive.id
                    ),
                };
                (archive.kind, archive.digest, git)
            }
        };
        items.insert(format!("{BUNDLE_ROOT}/{file}"), Item::Crate(crate_file));
        packages.push(BundleEntry {
            name: id.name.clone(),
            version: id.version.to_string(),
            source: id.source.to_string(),
            kind,
            sha256,
            file,
            git,
        });
    }
    packages.sort_by(|a, b| a.file.cmp(&b.file));
    // The manifest records the digests the crates must have (Cargo.lock's); a crate that has
    // another fails the write below, so the manifest never lies.
    let manifest = BundleManifest {
        format: BUNDLE_FORMAT,
        lockfile_sha256: Sha256Digest::of(lockfile),
        packages,
    };
    // Plain structs and vectors only: serde writes the same bytes every time.
    let mut manifest_json = serde_json::to_vec_pretty(&manifest)?;
    manifest_json.push(b'\n');
    items.insert(format!("{BUNDLE_ROOT}/Cargo.lock"), Item::Bytes(lockfile));
    items.insert(
        format!("{BUNDLE_ROOT}/manifest.json"),
        Item::Bytes(&manifest_json),
    );
    // Every parent directory, as `TarBuilder` implies them.
    let paths: Vec<String> = items.keys().cloned().collect();
    for path in paths {
        let mut parent = Path::new(&path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            items
                .entry(dir.to_string_lossy().into_owned())
                .or_insert(Item::Dir);
            parent = dir.parent();
        }
    }

    let mut crates = Vec::with_capacity(pending.len());
    let mut mismatches = Vec::new();
    crate::atomic::write_file_with(path, crate::atomic::FILE_MODE, |out| {
        let mut encoder = zstd::Encoder::new(out, ZSTD_LEVEL)?;
        encoder.include_checksum(true)?;
        let mut tar = tar::Builder::new(encoder);
        tar.mode(tar::HeaderMode::Deterministic);
        for (entry, item) in &items {
            let bytes: std::borrow::Cow<'_, [u8]> = match item {
                Item::Dir => {
                    let mut h = header(tar::EntryType::Directory, 0, EXEC_MODE, mtime);
                    tar.append_data(&mut h, format!("{entry}/"), std::io::empty())
                        .with_context(|| format!("cannot add directory {entry} to the bundle"))?;
                    continue;
                }
                Item::Bytes(bytes) => std::borrow::Cow::Borrowed(*bytes),
                Item::Crate(pending) => match pending.load(cache)? {
                    Ok(archive) => {
                        crates.push((
                            archive.id.clone(),
                            archive.digest,
                            archive.bytes.len() as u64,
                        ));
                        match archive {
                            std::borrow::Cow::Borrowed(a) => {
                                std::borrow::Cow::Borrowed(&a.bytes[..])
                            }
                            std::borrow::Cow::Owned(a) => std::borrow::Cow::Owned(a.bytes),
                        }
                    }
                    Err(mismatch) => {
                        mismatches.push(mismatch);
                        continue;
                    }
                },
            };
            if !mismatches.is_empty() {
                // The bundle is discarded: only the rest of the crates are still proven, so
                // every mismatch is named at once.
                continue;
            }
            let mut h = header(
                tar::EntryType::Regular,
                bytes.len() as u64,
                FILE_MODE,
                mtime,
            );
            tar.append_data(&mut h, entry, &bytes[..])
                .with_context(|| format!("cannot add {entry} to the bundle"))?;
        }
        super::fail_on_mismatches(std::mem::take(&mut mismatches), cache)?;
        tar.into_inner()
            .context("cannot finish the bundle")?
            .finish()?;
        Ok(())
    })?;
    let (sha256, bytes) = crate::digest::hash_file(path)?;
    crates.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(WrittenBundle {
        sha256,
        bytes,
        crates,
    })
}

/// A bundle, scanned: its manifest, its `Cargo.lock`, its git objects, and the digest, size
/// and own manifest of every `.crate` (whose bytes are not kept, except for git packages).
#[derive(Debug)]
pub struct Bundle {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: BundleManifest,
    /// The bundled `Cargo.lock`.
    pub lockfile: Vec<u8>,
    /// The git objects and any other file that is neither a `.crate` nor the two above, by path
    /// under `airlock-bundle/` (the contents of the latter are not kept).
    pub files: BTreeMap<String, Vec<u8>>,
    /// Every `crates/NAME-VERSION.crate`, by path under `airlock-bundle/`.
    pub crates: BTreeMap<String, BundledCrate>,
}

/// One `.crate` of a bundle, as the scan saw it.
#[derive(Debug)]
pub struct BundledCrate {
    /// sha256 of its bytes.
    pub sha256: Sha256Digest,
    /// Its size.
    pub size: u64,
    /// What its own `Cargo.toml` says.
    pub own_manifest: OwnManifest,
    /// Its bytes, kept only for what the bundled `Cargo.lock` locks from git (their proofs
    /// are checked after the scan, against git objects stored after them).
    pub bytes: Option<Vec<u8>>,
}

/// A `.crate` of a bundle that passed every check.
#[derive(Debug, Clone)]
pub struct PassedCrate {
    /// The package `Cargo.lock` locks.
    pub id: PackageId,
    /// Registry or git.
    pub kind: ArchiveKind,
    /// Its path under `airlock-bundle/`.
    pub file: String,
    /// sha256 of the `.crate`.
    pub sha256: Sha256Digest,
    /// Its size.
    pub size: u64,
    /// Its own `Cargo.toml`'s dependency declarations.
    pub declarations: Vec<Declaration>,
    /// Whether its library is a proc-macro.
    pub proc_macro: bool,
}

/// What a second pass over a bundle does with its `.crate` files.
trait CrateSink {
    /// A buffer to read the `.crate` at `key` (under `airlock-bundle/`) into, or None to skip
    /// it.
    fn buffer_for(&mut self, key: &str) -> Option<Vec<u8>>;
    /// Takes the `.crate` at `key`, read into the buffer [`CrateSink::buffer_for`] gave.
    fn take(&mut self, key: &str, bytes: Vec<u8>) -> Result<()>;
}

/// What [`Bundle::for_each_passed`]'s reader and workers share.
struct HandOnState<T> {
    /// Workers at work.
    busy: usize,
    /// What the work returned.
    done: Vec<T>,
    /// The work's first error.
    failed: Option<anyhow::Error>,
    /// Buffers of `.crate` files done with, to read the next ones into.
    buffers: Vec<Vec<u8>>,
}

fn lock<T>(state: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The sink of [`Bundle::for_each_passed`]: proves each wanted `.crate` and hands it to a free
/// worker (`spawn`), waiting for one.
struct HandOn<'a, T, S> {
    wanted: BTreeMap<&'a str, &'a PassedCrate>,
    shown: String,
    workers: usize,
    state: &'a Mutex<HandOnState<T>>,
    freed: &'a Condvar,
    spawn: S,
}

impl<T, S: FnMut(CrateArchive)> CrateSink for HandOn<'_, T, S> {
    fn buffer_for(&mut self, key: &str) -> Option<Vec<u8>> {
        self.wanted
            .contains_key(key)
            .then(|| lock(self.state).buffers.pop().unwrap_or_default())
    }

    fn take(&mut self, key: &str, bytes: Vec<u8>) -> Result<()> {
        let Some(pass) = self.wanted.get(key) else {
            return Ok(());
        };
        let archive = CrateArchive::new(
            pass.id.clone(),
            pass.kind,
            bytes,
            format!("{}:{BUNDLE_ROOT}/{key}", self.shown),
        );
        if archive.digest != pass.sha256 {
            return Err(crate::error::check_failed(format!(
                "{}: changed while airlock was reading it (expected {}, found {}); copy the \
                 bundle again",
                archive.origin, pass.sha256, archive.digest
            )));
        }
        let mut now = lock(self.state);
        while now.busy >= self.workers && now.failed.is_none() {
            now = self.freed.wait(now).unwrap_or_else(PoisonError::into_inner);
        }
        if now.failed.is_some() {
            // The work's error is the one returned.
            anyhow::bail!("the work on the bundle stopped");
        }
        now.busy += 1;
        drop(now);
        (self.spawn)(archive);
        Ok(())
    }
}

/// The `NAME-VERSION` of every package a bundled `Cargo.lock` locks from git (None when it
/// cannot be parsed: then every `.crate` is kept, and the check says what is wrong).
fn git_packages(lockfile: &[u8]) -> Option<BTreeSet<String>> {
    let text = std::str::from_utf8(lockfile).ok()?;
    let lock = Lockfile::parse(text, Path::new("Cargo.lock")).ok()?;
    Some(
        lock.remote_packages()
            .filter(|p| matches!(p.id.source, Source::Git { .. }))
            .map(|p| p.id.dir_name())
            .collect(),
    )
}

/// The name of a bundle's `.crate` entry, `NAME-VERSION`, when `key` is `crates/NAME-VERSION.crate`.
fn crate_stem(key: &str) -> Option<&str> {
    key.strip_prefix("crates/")?
        .strip_suffix(".crate")
        .filter(|stem| !stem.is_empty() && !stem.contains('/'))
}

impl Bundle {
    /// Reads a bundle in one pass, refusing unsafe entries; fails on a truncated or corrupt
    /// file (exit 2) and names the bundle.
    ///
    /// Memory does not grow with the bundle: each `.crate` is read, hashed and its own
    /// `Cargo.toml` parsed, then dropped (git packages' are kept for their proofs). Every read
    /// is bounded by the bundle's size: everything it holds may expand to at most
    /// [`bundle_expansion_limit`] bytes, each entry's declared size is checked against what is
    /// left of that before a byte of it is read, and the zstd window is capped. A bundle that
    /// exceeds a bound, holds a path twice, or holds anything but regular files is refused
    /// (exit 1).
    pub fn read(path: &Path) -> Result<Bundle> {
        Self::scan(path, None)
    }

    /// [`Bundle::read`]; with `sink`, a second pass that records nothing about the `.crate`
    /// files (the first did) and hands those `sink` wants to it instead, with the same bounds
    /// and refusals.
    fn scan(path: &Path, mut sink: Option<&mut dyn CrateSink>) -> Result<Bundle> {
        let shown = path.display();
        let RegularFile { file, size } = crate::input::open_regular(path, Links::Follow)
            .with_context(|| format!("cannot open the bundle {shown}"))?;
        let limit = bundle_expansion_limit(size);
        let mut decoder = zstd::Decoder::new(file)
            .with_context(|| format!("{shown} is not a zstd-compressed bundle"))?;
        decoder
            .window_log_max(ZSTD_WINDOW_LOG_MAX)
            .with_context(|| format!("cannot set up the zstd decoder for {shown}"))?;
        let exceeded = Rc::new(Cell::new(false));
        let mut tar = tar::Archive::new(Bounded {
            inner: decoder,
            remaining: limit,
            exceeded: Rc::clone(&exceeded),
        });
        let too_big = |what: String| {
            crate::error::check_failed(format!(
                "{shown}: {what}, more than the {limit} bytes a bundle of {size} bytes may expand \
                 to ({BUNDLE_EXPANSION_FACTOR} x its size + {BUNDLE_EXPANSION_SLACK} bytes); \
                 refusing it (the bundle is damaged or hostile)"
            ))
        };
        let broken = |e: std::io::Error| {
            if exceeded.get() {
                return too_big("its contents expand further".to_owned());
            }
            crate::error::input(format!(
                "{shown} is truncated or corrupt; copy the bundle again and compare its sha256 \
                 with the one `cargo airlock vendor --bundle` printed"
            ))
            .context(e)
        };
        let mut files = BTreeMap::new();
        let mut crates = BTreeMap::new();
        let mut lockfile = None;
        let mut manifest_bytes = None;
        // The git packages of the bundled Cargo.lock (its first entry); until it is read, every
        // .crate is kept, as a bundle in another order needs.
        let mut git_stems: Option<BTreeSet<String>> = None;
        let mut budget = limit;
        // The `.crate` files handed to `visit` (not recorded in `crates`).
        let mut visited = BTreeSet::new();
        for entry in tar.entries().map_err(broken)? {
            let mut entry = entry.map_err(broken)?;
            let raw = entry.path().map_err(broken)?.into_owned();
            let relative = safe_entry_path(&raw, Some(BUNDLE_ROOT))
                .map_err(|e| crate::error::check_failed(format!("{shown}: refusing entry: {e}")))?;
            match entry.header().entry_type() {
                tar::EntryType::Directory | tar::EntryType::XGlobalHeader => continue,
                tar::EntryType::Regular | tar::EntryType::Continuous => {}
                _ => {
                    return Err(crate::error::check_failed(format!(
                        "{shown}: refusing entry `{}`: not a regular file",
                        raw.display()
                    )));
                }
            }
            let key = relative.to_str().map(str::to_owned).ok_or_else(|| {
                crate::error::check_failed(format!(
                    "{shown}: refusing entry `{}`: not a UTF-8 path",
                    raw.display()
                ))
            })?;
            if files.contains_key(&key)
                || crates.contains_key(&key)
                || (sink.is_some() && crate_stem(&key).is_some() && !visited.insert(key.clone()))
                || (key == "Cargo.lock" && lockfile.is_some())
                || (key == "manifest.json" && manifest_bytes.is_some())
            {
                // A second copy would silently replace the first: which one was checked?
                return Err(crate::error::check_failed(format!(
                    "{shown}: entry `{}` appears twice; refusing the bundle (a bundle holds \
                     each file once; it was altered after `cargo airlock vendor --bundle`)",
                    raw.display()
                )));
            }
            let declared = entry.size();
            if declared > budget {
                return Err(too_big(format!(
                    "entry `{}` declares {declared} bytes, with {budget} bytes left",
                    raw.display()
                )));
            }
            budget -= declared;
            let capacity = usize::try_from(declared).map_err(|_| {
                too_big(format!(
                    "entry `{}` declares {declared} bytes",
                    raw.display()
                ))
            })?;
            let mut bytes = match (&mut sink, crate_stem(&key)) {
                (Some(sink), Some(_)) => match sink.buffer_for(&key) {
                    Some(mut buffer) => {
                        buffer.clear();
                        buffer.reserve_exact(capacity);
                        buffer
                    }
                    // Not wanted: the tar reader reads past it to the next entry.
                    None => continue,
                },
                _ => Vec::with_capacity(capacity),
            };
            (&mut entry)
                .take(declared)
                .read_to_end(&mut bytes)
                .map_err(broken)?;
            if bytes.len() as u64 != declared {
                return Err(broken(std::io::Error::from(
                    std::io::ErrorKind::UnexpectedEof,
                )));
            }
            match key.as_str() {
                "Cargo.lock" => {
                    git_stems = git_packages(&bytes);
                    lockfile = Some(bytes);
                }
                "manifest.json" => manifest_bytes = Some(bytes),
                _ => match crate_stem(&key) {
                    Some(_) if sink.is_some() => {
                        if let Some(sink) = sink.as_mut() {
                            sink.take(&key, bytes)?;
                        }
                    }
                    Some(stem) => {
                        let origin = format!("{shown}:{BUNDLE_ROOT}/{key}");
                        let keep = git_stems.as_ref().is_none_or(|git| git.contains(stem));
                        crates.insert(
                            key.clone(),
                            BundledCrate {
                                sha256: Sha256Digest::of(&bytes),
                                size: declared,
                                own_manifest: OwnManifest::of(&bytes, stem, &origin),
                                bytes: keep.then_some(bytes),
                            },
                        );
                    }
                    None if key.starts_with(&format!("{}/", git_proof::OBJECTS_DIR)) => {
                        files.insert(key, bytes);
                    }
                    // Reported as not listed; its contents are never needed.
                    None => {
                        files.insert(key, Vec::new());
                    }
                },
            }
        }
        let manifest_bytes = manifest_bytes.ok_or_else(|| {
            crate::error::input(format!("{shown} has no {BUNDLE_ROOT}/manifest.json"))
        })?;
        let manifest: BundleManifest = serde_json::from_slice(&manifest_bytes)
            .with_context(|| format!("{shown}: manifest.json is not a bundle manifest"))?;
        if !(1..=BUNDLE_FORMAT).contains(&manifest.format) {
            return Err(crate::error::input(format!(
                "{shown} has bundle format {}; this airlock reads formats 1 to {BUNDLE_FORMAT}",
                manifest.format
            )));
        }
        let lockfile = lockfile.ok_or_else(|| {
            crate::error::input(format!("{shown} has no {BUNDLE_ROOT}/Cargo.lock"))
        })?;
        Ok(Bundle {
            path: path.to_path_buf(),
            manifest,
            lockfile,
            files,
            crates,
        })
    }

    /// Runs `work` on each `.crate` of `passed` (which passed [`Bundle::check`]), on every
    /// core, as a second pass over the bundle reads it, each proven against the digest the
    /// first pass found; returns what `work` returned, in no particular order.
    ///
    /// Memory stays bounded whatever the size of the bundle: this thread reads the bundle and
    /// waits, before handing a `.crate` on, until a worker is free, so at most one per worker
    /// and the one being read are in memory, in buffers reused from one `.crate` to the next
    /// (so the peak does not depend on how the allocator reuses freed memory). The first error
    /// stops the reading and the work and is returned, `work`'s first.
    pub fn for_each_passed<T: Send>(
        &self,
        passed: &[PassedCrate],
        work: impl Fn(&CrateArchive) -> Result<T> + Sync,
    ) -> Result<Vec<T>> {
        let state = Mutex::new(HandOnState {
            busy: 0,
            done: Vec::with_capacity(passed.len()),
            failed: None,
            buffers: Vec::new(),
        });
        let freed = Condvar::new();
        let read = rayon::in_place_scope(|scope| {
            let (state, freed, work) = (&state, &freed, &work);
            let mut sink = HandOn {
                wanted: passed.iter().map(|p| (p.file.as_str(), p)).collect(),
                shown: self.path.display().to_string(),
                workers: rayon::current_num_threads().max(1),
                state,
                freed,
                spawn: |archive: CrateArchive| {
                    scope.spawn(move |_| {
                        let result = work(&archive);
                        let mut now = lock(state);
                        now.busy -= 1;
                        match result {
                            Ok(value) => now.done.push(value),
                            Err(e) => {
                                now.failed.get_or_insert(e);
                            }
                        }
                        now.buffers.push(archive.bytes);
                        freed.notify_one();
                    });
                },
            };
            Self::scan(&self.path, Some(&mut sink)).map(drop)
        });
        let state = state.into_inner().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = state.failed {
            return Err(e);
        }
        read?;
        Ok(state.done)
    }

    /// Checks every `.crate` against the manifest and `lock`, and the bundle against `lock`
    /// (every remote locked package present). Returns the `.crate` files that passed, and a
    /// finding for every difference.
    pub fn check(&self, lock: &Lockfile) -> (Vec<PassedCrate>, Vec<Finding>) {
        let shown = self.path.display().to_string();
        let at = |file: &str| format!("{shown}:{BUNDLE_ROOT}/{file}");
        let mut findings = Vec::new();
        let mut passed = Vec::new();
        if Sha256Digest::of(&self.lockfile) != self.manifest.lockfile_sha256 {
            findings.push(
                Finding::new(
                    FindingKind::FileModified,
                    at("Cargo.lock"),
                    "the bundled Cargo.lock differs from the one its manifest records",
                )
                .values(
                    self.manifest.lockfile_sha256,
                    Sha256Digest::of(&self.lockfile),
                ),
            );
        }
        let mut listed = BTreeSet::new();
        let mut ids = BTreeSet::new();
        let mut objects = BundleObjects::new(&self.files);
        // Git packages whose proof was read: objects look unused when one was skipped.
        let mut proofs_read = 0;
        for entry in &self.manifest.packages {
            let label = format!("{} v{}", entry.name, entry.version);
            // The manifest travels inside the bundle: its names are checked like a lockfile's
            // before anything is looked up or made from them.
            if let Err(why) = entry.well_formed() {
                findings.push(
                    Finding::new(
                        FindingKind::Unreadable,
                        at("manifest.json"),
                        format!("a package entry is malformed: {why}"),
                    )
                    .package(&label),
                );
                continue;
            }
            if !listed.insert(entry.file.clone())
                || !ids.insert((&entry.name, &entry.version, &entry.source))
            {
                findings.push(
                    Finding::new(
                        FindingKind::FileAdded,
                        at("manifest.json"),
                        format!(
                            "{label} from {} is listed twice in the bundle manifest; a bundle \
                             lists each package once",
                            entry.source
                        ),
                    )
                    .package(&label),
                );
                continue;
            }
            let Some(bundled) = self.crates.get(&entry.file) else {
                findings.push(
                    Finding::new(
                        FindingKind::FileMissing,
                        at(&entry.file),
                        "listed in the bundle manifest but not in the bundle",
                    )
                    .package(&label),
                );
                continue;
            };
            let actual = bundled.sha256;
            if actual != entry.sha256 {
                findings.push(
                    Finding::new(
                        FindingKind::CrateChecksum,
                        at(&entry.file),
                        "the .crate differs from the bundle manifest",
                    )
                    .package(&label)
                    .values(entry.sha256, actual),
                );
                continue;
            }
            let locked = lock.packages().iter().find(|p| {
                p.id.name == entry.name
                    && p.id.version.to_string() == entry.version
                    && p.id.source.to_string() == entry.source
            });
            let Some(locked) = locked else {
                findings.push(
                    Finding::new(
                        FindingKind::UnlockedPackage,
                        at(&entry.file),
                        format!(
                            "Cargo.lock locks no package {label} from {}; the bundle was made \
                             for another Cargo.lock",
                            entry.source
                        ),
                    )
                    .package(&label),
                );
                continue;
            };
            if locked.id.source.is_registry() {
                match locked.checksum {
                    None => {
                        findings.push(
                            Finding::new(
                                FindingKind::MissingChecksum,
                                lock.path().display().to_string(),
                                "Cargo.lock has no checksum for this registry package",
                            )
                            .package(&locked.id),
                        );
                        continue;
                    }
                    Some(expected) if expected != actual => {
                        findings.push(
                            Finding::new(
                                FindingKind::CrateChecksum,
                                at(&entry.file),
                                "the .crate differs from Cargo.lock's checksum",
                            )
                            .package(&locked.id)
                            .values(expected, actual),
                        );
                        continue;
                    }
                    Some(_) => {}
                }
            }
            let kind = if matches!(locked.id.source, Source::Git { .. }) {
                ArchiveKind::Git
            } else {
                ArchiveKind::Registry
            };
            if let Some(finding) =
                names_another_package(&bundled.own_manifest, &locked.id, &at(&entry.file))
            {
                findings.push(finding);
                continue;
            }
            if let Source::Git { commit, .. } = &locked.id.source {
                proofs_read += 1;
                let Some(bytes) = &bundled.bytes else {
                    findings.push(
                        Finding::new(
                            FindingKind::SourceMismatch,
                            at(&entry.file),
                            "Cargo.lock locks this package from git but the bundled Cargo.lock \
                             does not; the bundle was made for another Cargo.lock",
                        )
                        .package(&locked.id),
                    );
                    continue;
                };
                // The proof walks the .crate's files: one git package at a time in memory.
                let archive =
                    CrateArchive::new(locked.id.clone(), kind, bytes.clone(), at(&entry.file));
                let problems = self.git_problems(&archive, commit, entry, &mut objects);
                if !problems.is_empty() {
                    findings.extend(problems);
                    continue;
                }
            }
            let (declarations, proc_macro) = match &bundled.own_manifest {
                OwnManifest::Names {
                    declarations,
                    proc_macro,
                    ..
                } => (declarations.clone(), *proc_macro),
                // Refused above.
                OwnManifest::Missing | OwnManifest::Unreadable(_) => continue,
            };
            passed.push(PassedCrate {
                id: locked.id.clone(),
                kind,
                file: entry.file.clone(),
                sha256: actual,
                size: bundled.size,
                declarations,
                proc_macro,
            });
        }
        // Objects no proof needed: carried for nothing, or left behind by an edit.
        let objects_dir = format!("{}/", git_proof::OBJECTS_DIR);
        let proofs_all_read = proofs_read
            == self
                .manifest
                .packages
                .iter()
                .filter(|e| e.source.starts_with("git+"))
                .count();
        for file in self.files.keys().filter(|f| f.starts_with(&objects_dir)) {
            let used = file
                .rsplit('/')
                .next()
                .and_then(git_proof::ObjectId::parse)
                .is_some_and(|id| {
                    objects.used.contains(&id) && BundleObjects::file_of(id) == *file
                });
            listed.insert(file.clone());
            if !used && proofs_all_read {
                findings.push(Finding::new(
                    FindingKind::FileAdded,
                    at(file),
                    "a git object that no git package's proof needs",
                ));
            }
        }
        for file in self
            .files
            .keys()
            .chain(self.crates.keys())
            .filter(|f| !listed.contains(*f))
        {
            findings.push(Finding::new(
                FindingKind::FileAdded,
                at(file),
                "not listed in the bundle manifest",
            ));
        }
        for package in lock.remote_packages() {
            let present = self.manifest.packages.iter().any(|e| {
                e.name == package.id.name
                    && e.version == package.id.version.to_string()
                    && e.source == package.id.source.to_string()
            });
            if !present {
                findings.push(
                    Finding::new(
                        FindingKind::MissingPackage,
                        shown.clone(),
                        "Cargo.lock locks this package but the bundle does not hold it; make \
                         the bundle again from this Cargo.lock",
                    )
                    .package(&package.id),
                );
            }
        }
        (passed, findings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, version: &str, file: &str) -> BundleEntry {
        BundleEntry {
            name: name.into(),
            version: version.into(),
            source: crate::lock::CRATES_IO_INDEX.into(),
            kind: ArchiveKind::Registry,
            sha256: Sha256Digest::of(b""),
            file: file.into(),
            git: None,
        }
    }

    #[test]
    fn manifest_entries_name_only_their_own_file() {
        assert_eq!(
            entry("serde", "1.0.0", "crates/serde-1.0.0.crate").well_formed(),
            Ok(())
        );
        for (name, version, file, why) in [
            (
                "../x",
                "1.0.0",
                "crates/../x-1.0.0.crate",
                "not a cargo package name",
            ),
            (
                "/abs",
                "1.0.0",
                "crates//abs-1.0.0.crate",
                "not a cargo package name",
            ),
            ("x", "1.0", "crates/x-1.0.crate", "not a semver version"),
            ("x", "1.0.0", "crates/y-1.0.0.crate", "must be"),
            ("x", "1.0.0", "../../x-1.0.0.crate", "must be"),
            ("x", "1.0.0", "Cargo.lock", "must be"),
        ] {
            let err = entry(name, version, file).well_formed().unwrap_err();
            assert!(err.contains(why), "{name} {file}: {err}");
        }
    }

    #[test]
    fn expansion_is_bounded_by_the_bundle_size() {
        assert_eq!(bundle_expansion_limit(0), 4 << 20);
        assert_eq!(bundle_expansion_limit(1 << 20), (16 << 20) + (4 << 20));
        assert_eq!(bundle_expansion_limit(u64::MAX), u64::MAX);
    }
}
