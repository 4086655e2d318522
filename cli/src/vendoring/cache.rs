//! Cargo's download cache: where `cargo fetch` leaves each registry `.crate`, found without
//! knowing how cargo names its index directories.
//!
//! Cargo keeps `.crate` files in `$CARGO_HOME/registry/cache/<host>-<hash>/NAME-VERSION.crate`,
//! where `<hash>` is a hash of the source id that changed between cargo versions. airlock lists
//! every index directory, prefers those named after the registry's host, and takes the first
//! file whose sha256 is the one `Cargo.lock` wants; a file found with another digest is a
//! mismatch, reported with both digests.
//!
//! Nothing is read until a package's turn comes ([`CrateCache::lookup`]): callers hold only the
//! `.crate` files they are working on, so memory does not grow with the lockfile. The one
//! exception, [`CrateCache::prove_ahead`], reads and proves the largest files while a core
//! would wait (on `cargo metadata`), bounded in bytes; each is kept and handed to its
//! package's lookup, so a `.crate` is still read once and extracted from the bytes proven.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, Result};

use crate::digest::{HashingWriter, Sha256Digest};
use crate::input::{Links, read_regular};
use crate::lock::{LockedPackage, PackageId, Source};

use super::archive::{ArchiveKind, CrateArchive};

/// The largest `.crate` file read (crates.io refuses uploads over 10 MB; other registries may
/// allow more, so the bound is only against reading something that is not a `.crate`).
pub const MAX_CRATE_FILE: u64 = 1 << 30;

/// How much of a `.crate` [`CrateCache::prove_ahead`] hashes between looks at its stop flag
/// (a fraction of a millisecond).
const PROVE_AHEAD_PIECE: usize = 256 << 10;

/// `$CARGO_HOME`, or `~/.cargo` when it is not set (cargo's own rule).
pub fn cargo_home() -> Result<PathBuf> {
    if let Some(home) = std::env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        return Ok(PathBuf::from(home));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            crate::error::environment("neither CARGO_HOME nor HOME is set; set CARGO_HOME")
        })?;
    Ok(PathBuf::from(home).join(".cargo"))
}

/// The `.crate` files of every index directory under `registry/cache`.
#[derive(Debug, Default)]
pub struct CrateCache {
    root: PathBuf,
    /// File name → every index directory holding a file of that name.
    by_file: HashMap<String, Vec<PathBuf>>,
    /// `.crate` files read so far (shown with `-v`: each should be read once per run).
    reads: AtomicUsize,
    /// Archives read and proven ahead of their turn ([`CrateCache::prove_ahead`]), each taken
    /// by its package's [`CrateCache::lookup`].
    proven: Mutex<HashMap<PackageId, CrateArchive>>,
}

/// What looking a package up in the cache found.
#[derive(Debug)]
pub enum Lookup {
    /// A file whose digest is the locked checksum.
    Verified(CrateArchive),
    /// Files exist but none has the locked checksum; the first one found.
    Mismatch {
        /// The file.
        path: PathBuf,
        /// Its digest.
        actual: Sha256Digest,
    },
    /// No index directory has the file.
    Missing,
}

impl CrateCache {
    /// Lists `cargo_home/registry/cache/*/*.crate` (an absent cache is an empty one).
    pub fn scan(cargo_home: &Path) -> Result<CrateCache> {
        let root = cargo_home.join("registry").join("cache");
        let mut cache = CrateCache {
            root: root.clone(),
            by_file: HashMap::new(),
            reads: AtomicUsize::new(0),
            proven: Mutex::default(),
        };
        let dirs = match fs::read_dir(&root) {
            Ok(dirs) => dirs,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(cache),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", root.display())),
        };
        for dir in dirs {
            let dir = dir.with_context(|| format!("cannot list {}", root.display()))?;
            if !dir.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let files = fs::read_dir(dir.path())
                .with_context(|| format!("cannot list {}", dir.path().display()))?;
            for file in files.flatten() {
                if let Some(name) = file.file_name().to_str()
                    && name.ends_with(".crate")
                {
                    cache
                        .by_file
                        .entry(name.to_owned())
                        .or_default()
                        .push(dir.path());
                }
            }
        }
        for dirs in cache.by_file.values_mut() {
            dirs.sort();
        }
        Ok(cache)
    }

    /// The cache directory (for messages).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// How many `.crate` files [`CrateCache::lookup`] has read.
    pub fn files_read(&self) -> usize {
        self.reads.load(Ordering::Relaxed)
    }

    /// The candidate files for `package`, those in directories named after its registry's
    /// host first.
    pub fn candidates(&self, package: &LockedPackage) -> Vec<PathBuf> {
        let file = format!("{}.crate", package.id.dir_name());
        let Some(dirs) = self.by_file.get(&file) else {
            return Vec::new();
        };
        let hosts = index_hosts(&package.id.source);
        let mut ranked: Vec<(usize, &PathBuf)> = dirs
            .iter()
            .map(|dir| {
                let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let rank = hosts
                    .iter()
                    .position(|h| name.starts_with(&format!("{h}-")))
                    .unwrap_or(hosts.len());
                (rank, dir)
            })
            .collect();
        ranked.sort();
        ranked.into_iter().map(|(_, dir)| dir.join(&file)).collect()
    }

    /// The size of `package`'s best candidate file (0 when it has none): to start the largest
    /// packages first without reading any.
    pub fn size_hint(&self, package: &LockedPackage) -> u64 {
        self.candidates(package)
            .first()
            .and_then(|path| fs::metadata(path).ok())
            .map_or(0, |m| m.len())
    }

    /// Reads and proves the `.crate` files of `packages` (each with its `Cargo.lock` checksum),
    /// largest first, keeping those proven for [`CrateCache::lookup`]; stops once `stop` is set
    /// (between pieces of a file, dropping the file half hashed: whoever waits for this must not
    /// wait for a whole large file), or before the bytes kept would exceed `budget`. A file that
    /// is missing or differs is left for its turn, which reports it. Returns how many were kept.
    pub fn prove_ahead(
        &self,
        packages: &[(&LockedPackage, Sha256Digest)],
        budget: u64,
        stop: &AtomicBool,
    ) -> usize {
        let stopped = || stop.load(Ordering::Relaxed);
        let mut sized = Vec::with_capacity(packages.len());
        for &(package, expected) in packages {
            if stopped() {
                return 0;
            }
            let size = self.size_hint(package);
            if size > 0 && size <= budget {
                sized.push((size, package, expected));
            }
        }
        sized.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
        let (mut held, mut kept) = (0, 0);
        for (size, package, expected) in sized {
            if held + size > budget {
                continue;
            }
            let Some(path) = self.candidates(package).into_iter().next() else {
                continue;
            };
            if stopped() {
                break;
            }
            let Ok(bytes) = read_regular(&path, Links::Follow, budget - held) else {
                continue;
            };
            self.reads.fetch_add(1, Ordering::Relaxed);
            let mut hasher = HashingWriter::new(std::io::sink());
            for (i, piece) in bytes.chunks(PROVE_AHEAD_PIECE).enumerate() {
                if i > 0 && stopped() {
                    return kept;
                }
                hasher.write_all(piece).ok();
            }
            let (digest, _, _) = hasher.finish();
            if digest != expected {
                continue;
            }
            held += bytes.len() as u64;
            kept += 1;
            let archive = CrateArchive {
                id: package.id.clone(),
                kind: ArchiveKind::Registry,
                bytes,
                digest,
                origin: path.display().to_string(),
                git_evidence: None,
            };
            self.proven_ahead().insert(package.id.clone(), archive);
        }
        kept
    }

    fn proven_ahead(&self) -> std::sync::MutexGuard<'_, HashMap<PackageId, CrateArchive>> {
        self.proven
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Finds `package`'s `.crate`, reads it (a regular file, at most [`MAX_CRATE_FILE`] bytes)
    /// and proves it against `expected` (its lockfile checksum); or takes the archive
    /// [`CrateCache::prove_ahead`] read and proved.
    pub fn lookup(&self, package: &LockedPackage, expected: Sha256Digest) -> Result<Lookup> {
        if let Some(archive) = self.proven_ahead().remove(&package.id)
            && archive.digest == expected
        {
            return Ok(Lookup::Verified(archive));
        }
        let mut first_mismatch = None;
        for path in self.candidates(package) {
            let bytes = read_regular(&path, Links::Follow, MAX_CRATE_FILE)?;
            self.reads.fetch_add(1, Ordering::Relaxed);
            let archive = CrateArchive::new(
                package.id.clone(),
                ArchiveKind::Registry,
                bytes,
                path.display().to_string(),
            );
            if archive.digest == expected {
                return Ok(Lookup::Verified(archive));
            }
            if first_mismatch.is_none() {
                first_mismatch = Some(Lookup::Mismatch {
                    path,
                    actual: archive.digest,
                });
            }
        }
        Ok(first_mismatch.unwrap_or(Lookup::Missing))
    }
}

/// Host names cargo uses for the index directory of `source`, best first.
fn index_hosts(source: &Source) -> Vec<String> {
    let mut hosts = Vec::new();
    if source.is_crates_io() {
        // Since cargo 1.70 crates.io is fetched through its sparse index by default.
        hosts.push("index.crates.io".to_owned());
    }
    let url = match source {
        Source::Registry { url } | Source::SparseRegistry { url } => url.as_str(),
        _ => "",
    };
    if let Some(host) = url
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or(""))
        .filter(|h| !h.is_empty())
    {
        hosts.push(host.to_owned());
    }
    hosts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vendoring::archive::tests::{crate_bytes, id};

    #[test]
    fn finds_crates_in_any_index_dir_and_checks_digests() {
        let home = tempfile::tempdir().unwrap();
        let good = crate_bytes(&[("demo-1.0.0/Cargo.toml", tar::EntryType::Regular, b"a")]);
        let bad = crate_bytes(&[("demo-1.0.0/Cargo.toml", tar::EntryType::Regular, b"b")]);
        let other = home
            .path()
            .join("registry/cache/mirror.example-0123456789abcdef");
        let crates_io = home
            .path()
            .join("registry/cache/index.crates.io-fedcba9876543210");
        fs::create_dir_all(&other).unwrap();
        fs::create_dir_all(&crates_io).unwrap();
        fs::write(other.join("demo-1.0.0.crate"), &good).unwrap();
        fs::write(crates_io.join("demo-1.0.0.crate"), &bad).unwrap();

        let cache = CrateCache::scan(home.path()).unwrap();
        let package = LockedPackage {
            id: id("demo", "1.0.0"),
            checksum: Some(Sha256Digest::of(&good)),
            dependencies: vec![],
        };
        let candidates = cache.candidates(&package);
        assert!(candidates[0].starts_with(&crates_io), "{candidates:?}");
        match cache.lookup(&package, Sha256Digest::of(&good)).unwrap() {
            Lookup::Verified(a) => assert!(a.origin.contains("mirror.example")),
            other => panic!("{other:?}"),
        }
        match cache.lookup(&package, Sha256Digest::of(b"nope")).unwrap() {
            Lookup::Mismatch { path, actual } => {
                assert!(path.starts_with(&crates_io));
                assert_eq!(actual, Sha256Digest::of(&bad));
            }
            other => panic!("{other:?}"),
        }
        let absent = LockedPackage {
            id: id("absent", "1.0.0"),
            ..package
        };
        assert!(matches!(
            cache.lookup(&absent, Sha256Digest::of(b"")).unwrap(),
            Lookup::Missing
        ));
    }

    /// `.crate` files proven ahead are kept and handed to their lookup without a second read
    /// (a file swapped afterwards is not seen); one that differs is not kept, and its lookup
    /// reads it and reports it; nothing is held past the budget or after `stop`.
    #[test]
    fn proven_ahead_are_taken_by_lookup_without_a_second_read() {
        let home = tempfile::tempdir().unwrap();
        let dir = home
            .path()
            .join("registry/cache/index.crates.io-fedcba9876543210");
        fs::create_dir_all(&dir).unwrap();
        let bytes = |name: &str, body: &[u8]| {
            crate_bytes(&[(
                &format!("{name}-1.0.0/Cargo.toml"),
                tar::EntryType::Regular,
                body,
            )])
        };
        let locked = |name: &str, contents: &[u8]| LockedPackage {
            id: id(name, "1.0.0"),
            checksum: Some(Sha256Digest::of(contents)),
            dependencies: vec![],
        };
        let (a, b, c) = (
            bytes("a", b"a"),
            bytes("b", &[b'b'; 4096]),
            bytes("c", b"c"),
        );
        for (name, contents) in [("a", &a), ("b", &b), ("c", &c)] {
            fs::write(dir.join(format!("{name}-1.0.0.crate")), contents).unwrap();
        }
        let (pa, pb) = (locked("a", &a), locked("b", &b));
        let pc = locked("c", b"what Cargo.lock says");
        let packages: Vec<(&LockedPackage, Sha256Digest)> = [&pa, &pb, &pc]
            .into_iter()
            .map(|p| (p, p.checksum.unwrap()))
            .collect();

        let stop = AtomicBool::new(false);
        let cache = CrateCache::scan(home.path()).unwrap();
        assert_eq!(cache.prove_ahead(&packages, 1 << 20, &stop), 2);
        assert_eq!(cache.files_read(), 3);
        fs::write(dir.join("a-1.0.0.crate"), b"swapped").unwrap();
        match cache.lookup(&pa, pa.checksum.unwrap()).unwrap() {
            Lookup::Verified(archive) => assert_eq!(archive.bytes, a),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            cache.lookup(&pc, pc.checksum.unwrap()).unwrap(),
            Lookup::Mismatch { .. }
        ));
        assert_eq!(cache.files_read(), 4);
        // Taken once: a second lookup reads the file as it is now.
        assert!(matches!(
            cache.lookup(&pa, pa.checksum.unwrap()).unwrap(),
            Lookup::Mismatch { .. }
        ));

        // The budget holds the largest that fits (b does not), and `stop` ends it.
        let cache = CrateCache::scan(home.path()).unwrap();
        let budget = (b.len() - 1) as u64;
        assert_eq!(cache.prove_ahead(&packages[1..2], budget, &stop), 0);
        assert_eq!(cache.files_read(), 0);
        stop.store(true, Ordering::Relaxed);
        assert_eq!(cache.prove_ahead(&packages, 1 << 20, &stop), 0);
        assert_eq!(cache.files_read(), 0);
    }
}
