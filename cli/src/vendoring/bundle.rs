//! Air-gap bundles: one deterministic `.tar.zst` holding the pristine `.crate` files,
//! `Cargo.lock` and a manifest (name, version, source, sha256 of each), to carry into a network
//! with no access to crates.io and vendor there with nothing else.
//!
//! Layout (sorted, fixed mtime, uid/gid 0, via [`crate::tarball::TarBuilder`]):
//! ```text
//! airlock-bundle/Cargo.lock
//! airlock-bundle/crates/NAME-VERSION.crate
//! airlock-bundle/manifest.json
//! ```
//! Git dependencies travel as the `.crate` that `cargo package` made of their locked commit;
//! the manifest records their `git+URL#COMMIT` source, which must equal `Cargo.lock`'s.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::finding::{Finding, FindingKind};
use crate::lock::{Lockfile, Source};
use crate::tarball::{FILE_MODE, LimitedReader, TarBuilder, safe_entry_path};

use super::archive::{ArchiveKind, CrateArchive, expansion_limit};

/// The top directory of every bundle.
pub const BUNDLE_ROOT: &str = "airlock-bundle";
/// The manifest format this airlock writes and reads.
pub const BUNDLE_FORMAT: u32 = 1;
/// zstd level of bundles (`.crate` files are gzip already; a higher level gains little).
const ZSTD_LEVEL: i32 = 3;

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
        packages.push(BundleEntry {
            name: archive.id.name.clone(),
            version: archive.id.version.to_string(),
            source: archive.id.source.to_string(),
            kind: archive.kind,
            sha256: archive.digest,
            file,
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
    pub fn read(path: &Path) -> Result<Bundle> {
        let shown = path.display();
        let file =
            std::fs::File::open(path).with_context(|| format!("cannot open the bundle {shown}"))?;
        let size = file.metadata().map(|m| m.len()).unwrap_or(0);
        let decoder = zstd::Decoder::new(file)
            .with_context(|| format!("{shown} is not a zstd-compressed bundle"))?;
        let mut tar = tar::Archive::new(LimitedReader::new(decoder, expansion_limit(size)));
        let mut files = BTreeMap::new();
        let broken = || {
            crate::error::input(format!(
                "{shown} is truncated or corrupt; copy the bundle again and compare its sha256 \
                 with the one `cargo airlock vendor --bundle` printed"
            ))
        };
        for entry in tar.entries().map_err(|e| broken().context(e))? {
            let mut entry = entry.map_err(|e| broken().context(e))?;
            let raw = entry.path().map_err(|e| broken().context(e))?.into_owned();
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
            let mut bytes = Vec::new();
            entry
                .read_to_end(&mut bytes)
                .map_err(|e| broken().context(e))?;
            let key = relative.to_string_lossy().into_owned();
            files.insert(key, bytes);
        }
        let manifest_bytes = files.remove("manifest.json").ok_or_else(|| {
            crate::error::input(format!("{shown} has no {BUNDLE_ROOT}/manifest.json"))
        })?;
        let manifest: BundleManifest = serde_json::from_slice(&manifest_bytes)
            .with_context(|| format!("{shown}: manifest.json is not a bundle manifest"))?;
        if manifest.format != BUNDLE_FORMAT {
            return Err(crate::error::input(format!(
                "{shown} has bundle format {}; this airlock reads format {BUNDLE_FORMAT}",
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
        let mut listed = std::collections::BTreeSet::new();
        for entry in &self.manifest.packages {
            listed.insert(entry.file.clone());
            let label = format!("{} v{}", entry.name, entry.version);
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
            passed.push(CrateArchive::new(
                locked.id.clone(),
                kind,
                bytes.clone(),
                at(&entry.file),
            ));
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
