//! `verify --vendor DIR`: a vendor directory against `Cargo.lock` and, where the pristine
//! `.crate` is at hand, against the `.crate`'s own files.
//!
//! `.cargo-checksum.json` alone proves nothing against someone who rewrites it with the file
//! (cargo itself only compares files with it): its `package` checksum is compared with
//! `Cargo.lock`, and with the pristine `.crate` every file is compared with the archive.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use rayon::prelude::*;

use crate::digest::{COPY_BUFFER_SIZE, Sha256Digest, hash_both, hash_file, hash_reader};
use crate::input::{self, Links, MAX_TEXT_INPUT, read_regular_to_string};
use crate::lock::{LockedPackage, Lockfile, PackageId, Source};
use crate::vendoring::PendingCrate;
use crate::vendoring::archive::{CHECKSUM_FILE, CargoChecksum, CrateArchive};
use crate::vendoring::bundle::{Bundle, PassedCrate};
use crate::vendoring::cache::CrateCache;
use crate::vendoring::platform;

use super::{CheckSummary, Finding, FindingKind, shown};

/// What can be read of a vendor directory without `Cargo.lock`: its package directories and
/// whom each belongs to, and with [`survey`]'s `hash_until`, the files' digests and checksum
/// files of the packages read while `Cargo.lock` is still being found (`cargo metadata` takes
/// tens of milliseconds to start).
pub struct Survey {
    dir: PathBuf,
    findings: Vec<Finding>,
    /// (name, version) → directory name, read from each directory's Cargo.toml.
    owners: BTreeMap<(String, String), Vec<String>>,
    /// Directory name → its files hashed (only with `hash_until`, until it was set).
    hashed: BTreeMap<String, Result<Hashed>>,
}

/// A package directory's files hashed and its checksum file read, before it is known which
/// locked package it is.
struct Hashed {
    is_stub: bool,
    paths: Paths,
    special: Vec<PathBuf>,
    on_disk: OnDisk,
    checksum_file: Result<CargoChecksum>,
}

/// Lists `dir`'s package directories and reads whom each belongs to; with `hash_until` (when
/// no pristine `.crate` will be compared), also hashes the files and reads the checksum file
/// of each package reached before it is set (only until then: what is kept here grows with
/// the files, what [`check`] keeps does not).
pub fn survey(dir: &Path, hash_until: Option<&AtomicBool>) -> Result<Survey> {
    let entries = fs::read_dir(dir).with_context(|| {
        format!(
            "cannot read the vendor directory {}; vendor with `cargo airlock vendor {}`",
            dir.display(),
            dir.display()
        )
    })?;
    let mut findings = Vec::new();
    // (name, version) → directory name, read from each directory's Cargo.toml.
    let mut owners: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut dir_names: Vec<String> = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let kind = entry.file_type()?;
        if !kind.is_dir() {
            if !name.starts_with('.') {
                findings.push(Finding::new(
                    FindingKind::FileAdded,
                    shown(dir, &name),
                    "not a package directory; a vendor directory holds only packages",
                ));
            }
            continue;
        }
        dir_names.push(name);
    }
    dir_names.sort();
    // Parsing every Cargo.toml (some list thousands of features) is worth both cores.
    type Owner = Result<(String, String)>;
    let packages: Vec<(Owner, Option<Result<Hashed>>)> = dir_names
        .par_iter()
        .with_max_len(1)
        .map(|name| {
            let package = dir.join(name);
            let hash = hash_until.is_some_and(|done| !done.load(Ordering::Relaxed));
            (package_of(&package), hash.then(|| hash_package(&package)))
        })
        .collect();
    let mut hashed = BTreeMap::new();
    for (name, (package, files)) in dir_names.iter().zip(packages) {
        if let Some(files) = files {
            hashed.insert(name.clone(), files);
        }
        match package {
            Ok(key) => owners.entry(key).or_default().push(name.clone()),
            Err(e) => findings.push(Finding::new(
                FindingKind::UnlockedPackage,
                shown(dir, name),
                format!("no locked package owns this directory ({e:#})"),
            )),
        }
    }
    Ok(Survey {
        dir: dir.to_path_buf(),
        findings,
        owners,
        hashed,
    })
}

/// [`Hashed`] for the package directory `dir`.
fn hash_package(dir: &Path) -> Result<Hashed> {
    let is_stub = platform::is_stub(dir);
    let (paths, special) = list_tree(dir)?;
    let on_disk = hash_paths(&paths)?;
    Ok(Hashed {
        is_stub,
        paths,
        special,
        on_disk,
        checksum_file: CargoChecksum::read_from(dir),
    })
}

/// Checks the vendor directory of `survey` against `lock`. The pristine `.crate` files come
/// from `bundle` (its `.crate` files that passed its check, read in one more pass over it as
/// their packages are checked) and from `pristine` (in `cache`, read and proven against
/// `Cargo.lock` when their package's turn comes), by package: either way only the packages
/// being checked are in memory.
pub fn check(
    survey: Survey,
    lock: &Lockfile,
    bundle: Option<(&Bundle, &[PassedCrate])>,
    pristine: &BTreeMap<PackageId, PendingCrate>,
    cache: &CrateCache,
) -> Result<(CheckSummary, Vec<Finding>)> {
    let Survey {
        dir,
        mut findings,
        mut owners,
        hashed,
    } = survey;
    let dir = dir.as_path();
    let hashed = std::sync::Mutex::new(hashed);
    let take_hashed = |name: &str| {
        hashed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(name)
    };

    let mut matched: Vec<(&LockedPackage, String)> = Vec::new();
    for package in lock.remote_packages() {
        let key = (package.id.name.clone(), package.id.version.to_string());
        match owners.remove(&key) {
            None => findings.push(
                Finding::new(
                    FindingKind::MissingPackage,
                    shown(dir, &package.id.name),
                    "Cargo.lock locks this package but the vendor directory does not hold it",
                )
                .package(&package.id),
            ),
            Some(mut dirs) => {
                dirs.sort();
                matched.push((package, dirs.remove(0)));
                for extra in dirs {
                    findings.push(
                        Finding::new(
                            FindingKind::UnlockedPackage,
                            shown(dir, &extra),
                            "a second directory for a package that is already vendored",
                        )
                        .package(&package.id),
                    );
                }
            }
        }
    }
    for ((name, version), dirs) in owners {
        for d in dirs {
            findings.push(Finding::new(
                FindingKind::UnlockedPackage,
                shown(dir, &d),
                format!("no locked package owns this directory (it holds {name} {version})"),
            ));
        }
    }

    // The packages whose pristine .crate the bundle holds are checked as a pass over the
    // bundle reads them; the others from the cache, or from their checksum file alone.
    let in_bundle: BTreeMap<&PackageId, &PassedCrate> = bundle
        .map(|(_, passed)| passed.iter().map(|p| (&p.id, p)).collect())
        .unwrap_or_default();
    let (from_bundle, mut matched): (Vec<_>, Vec<_>) = matched
        .into_iter()
        .partition(|(package, _)| in_bundle.contains_key(&package.id));
    let mut results: Vec<PackageCheck> = Vec::with_capacity(from_bundle.len() + matched.len());
    if let Some((bundle, _)) = bundle
        && !from_bundle.is_empty()
    {
        let names: BTreeMap<&PackageId, (&LockedPackage, &str)> = from_bundle
            .iter()
            .map(|(package, name)| (&package.id, (*package, name.as_str())))
            .collect();
        let wanted: Vec<PassedCrate> = from_bundle
            .iter()
            .map(|(package, _)| in_bundle[&package.id].clone())
            .collect();
        results.extend(bundle.for_each_passed(&wanted, |archive| {
            let (package, name) = names
                .get(&archive.id)
                .with_context(|| format!("{} was not asked of the bundle", archive.id))?;
            check_package(dir, name, package, Some(archive), take_hashed(name))
        })?);
    }
    // Largest .crate first, one package per task, so a big package started last does not
    // leave the other cores idle (each package is read on one core).
    matched.sort_by_key(|(package, _)| {
        std::cmp::Reverse(pristine.get(&package.id).map_or(0, PendingCrate::size))
    });
    // Each task reads its own pristine .crate: only the packages being checked are in memory.
    let rest: Vec<PackageCheck> = matched
        .par_iter()
        .with_max_len(1)
        .map(|(package, name)| {
            let archive = match pristine.get(&package.id) {
                // A cached file that is not the locked one is not pristine: the package is
                // checked against its checksum file alone, as without a cache. A file that
                // cannot be read is an error, as it was when the cache was read up front.
                Some(pending) => pending.load(cache)?.ok(),
                None => None,
            };
            check_package(dir, name, package, archive.as_deref(), take_hashed(name))
        })
        .collect::<Result<_>>()?;
    results.extend(rest);
    let mut summary = CheckSummary {
        check: super::CheckKind::Vendor,
        target: dir.to_path_buf(),
        against: lock.path().to_path_buf(),
        items: results.len(),
        files: 0,
        bytes: 0,
        compared_with_crate: 0,
    };
    for result in results {
        summary.files += result.files;
        summary.bytes += result.bytes;
        summary.compared_with_crate += usize::from(result.compared);
        findings.extend(result.findings);
    }
    Ok((summary, findings))
}

/// `[package] name` and `version` of the package in `dir`.
fn package_of(dir: &Path) -> Result<(String, String)> {
    let path = dir.join("Cargo.toml");
    let text = input::read_regular_to_string(&path, Links::Refuse, input::MAX_TEXT_INPUT)
        .with_context(|| format!("no readable {}", path.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("{} is not valid TOML", path.display()))?;
    let field = |key: &str| {
        table
            .get("package")
            .and_then(|p| p.get(key))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("{} has no package.{key}", path.display()))
    };
    Ok((field("name")?, field("version")?))
}

struct PackageCheck {
    findings: Vec<Finding>,
    files: usize,
    bytes: u64,
    compared: bool,
}

/// Checks the package directory `name` against `package` and its `pristine` `.crate`, from
/// what `hashed` found of it already, when it was hashed beforehand.
fn check_package(
    vendor_dir: &Path,
    name: &str,
    package: &LockedPackage,
    pristine: Option<&CrateArchive>,
    hashed: Option<Result<Hashed>>,
) -> Result<PackageCheck> {
    let dir = vendor_dir.join(name);
    let id = &package.id;
    let mut findings = Vec::new();
    let (is_stub, paths, special, on_disk, checksum_file) = match hashed {
        Some(hashed) => {
            let h = hashed?;
            (
                h.is_stub,
                h.paths,
                h.special,
                Some(h.on_disk),
                h.checksum_file,
            )
        }
        None => {
            let is_stub = platform::is_stub(&dir);
            let (paths, special) = list_tree(&dir)?;
            (
                is_stub,
                paths,
                special,
                None,
                CargoChecksum::read_from(&dir),
            )
        }
    };
    for path in special {
        findings.push(
            Finding::new(
                FindingKind::FileAdded,
                path.display().to_string(),
                "a link or special file; vendored sources are regular files",
            )
            .package(id),
        );
    }
    // With the pristine .crate, each file is read beside its pristine copy and hashed once
    // when they are equal; otherwise every file is hashed on its own.
    let (on_disk, from_crate) = match (pristine, on_disk) {
        (Some(archive), _) if !is_stub => {
            let (on_disk, from_crate) = hash_against_crate(archive, paths)?;
            (on_disk, Some(from_crate))
        }
        (_, Some(on_disk)) => (on_disk, None),
        (_, None) => (hash_paths(&paths)?, None),
    };
    let files = on_disk.len();
    let bytes = on_disk.values().map(|(_, len)| len).sum();

    let checksum_file = match checksum_file {
        Ok(sum) => Some(sum),
        Err(e) => {
            findings.push(
                Finding::new(
                    FindingKind::Unreadable,
                    shown(&dir, CHECKSUM_FILE),
                    format!("{e:#}"),
                )
                .package(id),
            );
            None
        }
    };
    if let Some(sum) = &checksum_file {
        check_package_checksum(&dir, package, sum, &mut findings);
    }

    // The truth for file contents: the pristine .crate when at hand, else the checksum file.
    let expected: Option<BTreeMap<String, String>> = match pristine {
        Some(archive) if is_stub => Some(stub_files(archive, &dir)?),
        Some(_) => from_crate,
        None => checksum_file.as_ref().map(|s| s.files.clone()),
    };
    let compared = pristine.is_some();
    if let Some(expected) = &expected {
        compare_files(&dir, id, expected, &on_disk, compared, &mut findings);
        if compared && let Some(sum) = &checksum_file {
            compare_checksum_file(&dir, id, expected, sum, &mut findings);
        }
    }
    Ok(PackageCheck {
        findings,
        files,
        bytes,
        compared,
    })
}

fn check_package_checksum(
    dir: &Path,
    package: &LockedPackage,
    sum: &CargoChecksum,
    findings: &mut Vec<Finding>,
) {
    let path = shown(dir, CHECKSUM_FILE);
    let recorded = sum.package.as_deref().unwrap_or("null");
    match (&package.id.source, package.checksum) {
        (Source::Git { .. }, _) => {
            if sum.package.is_some() {
                findings.push(
                    Finding::new(
                        FindingKind::PackageChecksum,
                        path,
                        "a git package's checksum file must have \"package\": null",
                    )
                    .package(&package.id)
                    .values("null", recorded),
                );
            }
        }
        (_, None) => findings.push(
            Finding::new(
                FindingKind::MissingChecksum,
                path,
                "Cargo.lock has no checksum for this registry package",
            )
            .package(&package.id),
        ),
        (_, Some(expected)) => {
            if sum.package.as_deref() != Some(expected.hex().as_str()) {
                findings.push(
                    Finding::new(
                        FindingKind::PackageChecksum,
                        path,
                        "the package checksum differs from Cargo.lock",
                    )
                    .package(&package.id)
                    .values(expected.hex(), recorded),
                );
            }
        }
    }
}

/// Every regular file under `dir` except the checksum file: (relative path, path), sorted;
/// and the links and special files.
fn list_tree(dir: &Path) -> Result<(Paths, Vec<PathBuf>)> {
    let mut paths: Paths = Vec::new();
    let mut special = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let kind = entry.file_type();
        if kind.is_dir() {
            continue;
        }
        let relative = entry
            .path()
            .strip_prefix(dir)
            .unwrap_or(entry.path())
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/");
        if relative == CHECKSUM_FILE {
            continue;
        }
        if !kind.is_file() {
            special.push(entry.into_path());
            continue;
        }
        paths.push((relative, entry.into_path()));
    }
    Ok((paths, special))
}

/// Files of a package directory: (relative path, path).
type Paths = Vec<(String, PathBuf)>;

/// Files on disk: relative path → (hex sha256, size).
type OnDisk = BTreeMap<String, (String, u64)>;

/// Hashes every listed file.
fn hash_paths(paths: &[(String, PathBuf)]) -> Result<OnDisk> {
    paths
        .par_iter()
        .map(|(relative, path)| {
            let (digest, len): (Sha256Digest, u64) = hash_file(path)?;
            Ok((relative.clone(), (digest.hex(), len)))
        })
        .collect()
}

/// Hashes the listed files side by side with the pristine `.crate`'s: the files on disk, and
/// relative path → hex of every file the `.crate` holds. The `.crate` is
/// decompressed once, and a file equal to its pristine copy is hashed once.
fn hash_against_crate(
    archive: &CrateArchive,
    paths: Vec<(String, PathBuf)>,
) -> Result<(OnDisk, BTreeMap<String, String>)> {
    let mut not_in_crate: BTreeMap<String, PathBuf> = paths.into_iter().collect();
    let mut on_disk = BTreeMap::new();
    let mut from_crate = BTreeMap::new();
    let mut buffer = vec![0; 2 * COPY_BUFFER_SIZE];
    archive.for_each_file(|relative, _, pristine| {
        let digest = match not_in_crate.remove(relative) {
            Some(path) => {
                let file = fs::File::open(&path)
                    .with_context(|| format!("cannot open {}", path.display()))?;
                let [(disk, len), (digest, _)] = hash_both(file, pristine, &mut buffer)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                on_disk.insert(relative.to_owned(), (disk.hex(), len));
                digest
            }
            None => hash_reader(pristine)?.0,
        };
        from_crate.insert(relative.to_owned(), digest.hex());
        Ok(())
    })?;
    let rest: Vec<(String, PathBuf)> = not_in_crate.into_iter().collect();
    on_disk.extend(hash_paths(&rest)?);
    Ok((on_disk, from_crate))
}

fn compare_files(
    dir: &Path,
    id: &PackageId,
    expected: &BTreeMap<String, String>,
    on_disk: &OnDisk,
    against_crate: bool,
    findings: &mut Vec<Finding>,
) {
    let truth = if against_crate {
        "the .crate"
    } else {
        CHECKSUM_FILE
    };
    for (path, want) in expected {
        match on_disk.get(path) {
            None => findings.push(
                Finding::new(
                    FindingKind::FileMissing,
                    shown(dir, path),
                    format!("listed in {truth} but missing"),
                )
                .package(id),
            ),
            Some((have, _)) if have != want => findings.push(
                Finding::new(
                    FindingKind::FileModified,
                    shown(dir, path),
                    format!("sha256 differs from {truth}"),
                )
                .package(id)
                .values(want, have),
            ),
            Some(_) => {}
        }
    }
    for path in on_disk.keys().filter(|p| !expected.contains_key(*p)) {
        findings.push(
            Finding::new(
                FindingKind::FileAdded,
                shown(dir, path),
                format!("not in {truth}"),
            )
            .package(id),
        );
    }
}

fn compare_checksum_file(
    dir: &Path,
    id: &PackageId,
    pristine: &BTreeMap<String, String>,
    sum: &CargoChecksum,
    findings: &mut Vec<Finding>,
) {
    let path = shown(dir, CHECKSUM_FILE);
    let mut keys: Vec<&String> = pristine.keys().chain(sum.files.keys()).collect();
    keys.sort();
    keys.dedup();
    for key in keys {
        let (want, have) = (pristine.get(key), sum.files.get(key));
        if want != have {
            findings.push(
                Finding::new(
                    FindingKind::ChecksumFileAltered,
                    path.clone(),
                    format!(
                        "its entry for `{key}` is not the .crate's; the checksum file was rewritten"
                    ),
                )
                .package(id)
                .values(
                    want.map_or("(absent)", String::as_str),
                    have.map_or("(absent)", String::as_str),
                ),
            );
        }
    }
}

/// The files a stub made from `archive` must have (the first line of `Cargo.toml`, which names
/// the platforms, is taken from the stub itself).
fn stub_files(archive: &CrateArchive, dir: &Path) -> Result<BTreeMap<String, String>> {
    let original = archive
        .read_file("Cargo.toml")?
        .ok_or_else(|| anyhow::anyhow!("{} has no Cargo.toml", archive.origin))?;
    let generated = platform::stub_manifest(&archive.id, &original, &[])?;
    // Only the first line is taken; a manifest that cannot be read as a regular file compares
    // as empty (and is reported as modified).
    let on_disk = read_regular_to_string(&dir.join("Cargo.toml"), Links::Refuse, MAX_TEXT_INPUT)
        .unwrap_or_default();
    let first_line = on_disk.lines().next().unwrap_or("");
    let body = generated.split_once('\n').map_or("", |(_, b)| b);
    let expected_manifest = format!("{first_line}\n{body}");
    let mut files = BTreeMap::new();
    files.insert(
        "Cargo.toml".to_owned(),
        Sha256Digest::of(expected_manifest.as_bytes()).hex(),
    );
    files.insert("src/lib.rs".to_owned(), Sha256Digest::of(b"").hex());
    Ok(files)
}
