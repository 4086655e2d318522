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

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::finding::{Finding, FindingKind};
use crate::input::{Links, RegularFile};
use crate::lock::{Lockfile, Source, parse_package_version, validate_package_name};
use crate::tarball::{FILE_MODE, TarBuilder, safe_entry_path};

use super::archive::{ArchiveKind, CrateArchive};
use super::git_proof::{self, BundleObjects, GitProof, ProblemKind};

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

/// A finding when the `.crate`'s own `Cargo.toml` is missing, unreadable or names another
/// package than the one it is bundled as: cargo's `directory` source would take the package
/// its manifest names.
fn names_another_package(archive: &CrateArchive) -> Option<Finding> {
    let label = archive.id.to_string();
    let bad = |kind, why: String| {
        Some(Finding::new(kind, format!("{}/Cargo.toml", archive.origin), why).package(&label))
    };
    let manifest = match archive.read_file_bounded("Cargo.toml", MAX_MANIFEST_BYTES) {
        Ok(Some(bytes)) => bytes,
        Ok(None) => {
            return bad(
                FindingKind::FileMissing,
                "the .crate has no Cargo.toml".into(),
            );
        }
        Err(e) => return bad(FindingKind::Unreadable, format!("{e:#}")),
    };
    let table: toml::Table = match std::str::from_utf8(&manifest)
        .map_err(|e| e.to_string())
        .and_then(|text| text.parse().map_err(|e: toml::de::Error| e.to_string()))
    {
        Ok(table) => table,
        Err(e) => {
            return bad(
                FindingKind::Unreadable,
                format!("the .crate's Cargo.toml cannot be parsed: {e}"),
            );
        }
    };
    let package = table.get("package");
    let name = package.and_then(|p| p.get("name")).and_then(|n| n.as_str());
    // A manifest without a version is version 0.0.0 (cargo 1.75 and later).
    let version = package
        .and_then(|p| p.get("version"))
        .map_or(Some("0.0.0"), |v| v.as_str());
    let expected_version = archive.id.version.to_string();
    if name == Some(archive.id.name.as_str()) && version == Some(expected_version.as_str()) {
        return None;
    }
    Some(
        Finding::new(
            FindingKind::UnlockedPackage,
            format!("{}/Cargo.toml", archive.origin),
            format!(
                "the .crate's Cargo.toml names package {} {}, not the locked {} {}; \
                 refusing to vendor it",
                name.unwrap_or("(none)"),
                version.unwrap_or("(not a string)"),
                archive.id.name,
                expected_version
            ),
        )
        .package(&label)
        .values(
            format!("{} {}", archive.id.name, expected_version),
            format!("{} {}", name.unwrap_or(""), version.unwrap_or("")),
        ),
    )
}

/// Writes a bundle of `archives` and `lockfile` to `path` (atomically); returns its sha256 and
/// size. The same inputs give the same bytes.
pub fn write_bundle(
    path: &Path,
    lockfile: &[u8],
    archives: &[CrateArchive],
    mtime: u64,
) -> Result<(Sha256Digest, u64)> {
    let mut tar = TarBuilder::new();
    let mut packages = Vec::with_capacity(archives.len());
    for archive in archives {
        let file = format!("crates/{}.crate", archive.id.dir_name());
        tar.file(
            &format!("{BUNDLE_ROOT}/{file}"),
            archive.bytes.clone(),
            FILE_MODE,
        );
        let git = match (archive.kind, &archive.git_evidence) {
            (ArchiveKind::Registry, _) => None,
            (ArchiveKind::Git, Some(evidence)) => {
                for (id, raw) in &evidence.objects {
                    let object = format!("{BUNDLE_ROOT}/{}", BundleObjects::file_of(*id));
                    tar.file(&object, raw.clone(), FILE_MODE);
                }
                Some(evidence.proof.clone())
            }
            (ArchiveKind::Git, None) => anyhow::bail!(
                "{}: no git proof was gathered; a bundle cannot carry it unproven",
                archive.id
            ),
        };
        packages.push(BundleEntry {
            name: archive.id.name.clone(),
            version: archive.id.version.to_string(),
            source: archive.id.source.to_string(),
            kind: archive.kind,
            sha256: archive.digest,
            file,
            git,
        });
    }
    packages.sort_by(|a, b| a.file.cmp(&b.file));
    let manifest = BundleManifest {
        format: BUNDLE_FORMAT,
        lockfile_sha256: Sha256Digest::of(lockfile),
        packages,
    };
    // Plain structs and vectors only: serde writes the same bytes every time.
    let mut manifest_json = serde_json::to_vec_pretty(&manifest)?;
    manifest_json.push(b'\n');
    tar.file(&format!("{BUNDLE_ROOT}/Cargo.lock"), lockfile, FILE_MODE);
    tar.file(
        &format!("{BUNDLE_ROOT}/manifest.json"),
        manifest_json,
        FILE_MODE,
    );

    crate::atomic::write_file_with(path, crate::atomic::FILE_MODE, |out| {
        let mut encoder = zstd::Encoder::new(out, ZSTD_LEVEL)?;
        encoder.include_checksum(true)?;
        let encoder = tar.write_to(encoder, mtime)?;
        encoder.finish()?;
        Ok(())
    })?;
    crate::digest::hash_file(path)
}

/// A bundle read into memory.
#[derive(Debug)]
pub struct Bundle {
    /// Where it was read from.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: BundleManifest,
    /// The bundled `Cargo.lock`.
    pub lockfile: Vec<u8>,
    /// Every other file, by path under `airlock-bundle/`.
    pub files: BTreeMap<String, Vec<u8>>,
}

impl Bundle {
    /// Reads and unpacks a bundle, refusing unsafe entries; fails on a truncated or corrupt
    /// file (exit 2) and names the bundle.
    ///
    /// Memory is bounded by the bundle's size: everything it holds may expand to at most
    /// [`bundle_expansion_limit`] bytes, each entry's declared size is checked against what is
    /// left of that before a byte of it is read, and the zstd window is capped. A bundle that
    /// exceeds a bound, holds a path twice, or holds anything but regular files is refused
    /// (exit 1).
    pub fn read(path: &Path) -> Result<Bundle> {
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
        let mut budget = limit;
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
            if files.contains_key(&key) {
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
            let mut bytes = Vec::with_capacity(capacity);
            (&mut entry)
                .take(declared)
                .read_to_end(&mut bytes)
                .map_err(broken)?;
            if bytes.len() as u64 != declared {
                return Err(broken(std::io::Error::from(
                    std::io::ErrorKind::UnexpectedEof,
                )));
            }
            files.insert(key, bytes);
        }
        let manifest_bytes = files.remove("manifest.json").ok_or_else(|| {
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
        let lockfile = files.remove("Cargo.lock").ok_or_else(|| {
            crate::error::input(format!("{shown} has no {BUNDLE_ROOT}/Cargo.lock"))
        })?;
        Ok(Bundle {
            path: path.to_path_buf(),
            manifest,
            lockfile,
            files,
        })
    }

    /// Checks every `.crate` against the manifest and `lock`, and the bundle against `lock`
    /// (every remote locked package present). Returns the archives that passed, and a finding
    /// for every difference.
    pub fn check(&self, lock: &Lockfile) -> (Vec<CrateArchive>, Vec<Finding>) {
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
            let Some(bytes) = self.files.get(&entry.file) else {
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
            let actual = Sha256Digest::of(bytes);
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
            let archive =
                CrateArchive::new(locked.id.clone(), kind, bytes.clone(), at(&entry.file));
            if let Some(finding) = names_another_package(&archive) {
                findings.push(finding);
                continue;
            }
            if let Source::Git { commit, .. } = &locked.id.source {
                proofs_read += 1;
                let problems = self.git_problems(&archive, commit, entry, &mut objects);
                if !problems.is_empty() {
                    findings.extend(problems);
                    continue;
                }
            }
            passed.push(archive);
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
        for file in self.files.keys().filter(|f| !listed.contains(*f)) {
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
