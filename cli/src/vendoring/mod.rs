//! `cargo airlock vendor`: every locked dependency's sources, each `.crate` proven against its
//! `Cargo.lock` checksum before extraction, in the layout of cargo's `directory` source; and
//! single-file bundles to carry across an air gap.
//!
//! Steps: `cargo fetch --locked` (unless offline) fills cargo's cache; then, on every core and
//! largest first, each registry `.crate` is read from the cache into memory, its sha256
//! compared with `Cargo.lock`, and only then extracted into a staged directory, hashing each
//! file as it is written, with a `.cargo-checksum.json` each (only the crates being extracted
//! are in memory). Any `.crate` that differs fails the whole run, listing every one; the
//! staged directory replaces the old one in one rename only when all passed. Never edits the
//! user's project except its cargo configuration file (`.cargo/config.toml`, or the legacy
//! `.cargo/config`) when asked to.

pub mod archive;
pub mod bundle;
pub mod cache;
pub mod config;
pub mod git;
pub mod git_proof;
pub mod platform;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result};
use rayon::prelude::*;
use serde::Serialize;

use crate::digest::Sha256Digest;
use crate::lock::{LockedPackage, Lockfile, PackageId, Source, SourceKind};
use crate::render::{CommandReport, human_bytes};
use crate::workspace::Workspace;
use crate::{atomic, process, progress};

use archive::{ArchiveKind, CargoChecksum, CrateArchive, PackageFiles};
use cache::{CrateCache, Lookup};
use platform::{Declaration, TargetPlatform};

/// Options of `cargo airlock vendor`.
#[derive(Debug, Clone, Default)]
pub struct VendorOptions {
    /// The workspace's `Cargo.toml` (default: the current directory's workspace).
    pub manifest_path: Option<PathBuf>,
    /// Where the vendored sources go (default `vendor`, relative to the current directory).
    pub dir: PathBuf,
    /// Do not run `cargo fetch`: use what cargo's cache already holds.
    pub offline: bool,
    /// Always name directories `NAME-VERSION`.
    pub versioned_dirs: bool,
    /// Keep sources only for these target triples; stubs for the rest.
    pub platforms: Vec<String>,
    /// Write `.cargo/config.toml` in the workspace root instead of only printing it.
    pub write_config: bool,
    /// Write an air-gap bundle here instead of a vendor directory.
    pub bundle: Option<PathBuf>,
    /// Vendor from this bundle instead of cargo's cache (no network, no `CARGO_HOME`).
    pub from_bundle: Option<PathBuf>,
    /// Cargo's home (default: `$CARGO_HOME`, else `~/.cargo`).
    pub cargo_home: Option<PathBuf>,
}

/// One vendored package.
#[derive(Debug, Clone, Serialize)]
pub struct VendoredPackage {
    /// Name, version, source.
    #[serde(flatten)]
    pub id: PackageId,
    /// Registry or git.
    pub kind: SourceKind,
    /// Its directory name inside the vendor directory (None in a bundle).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// sha256 of the `.crate` it came from.
    pub crate_sha256: Sha256Digest,
    /// Files written.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
    /// Whether it was replaced by a stub (`--platform`).
    pub stub: bool,
    /// Size of the `.crate` archive a stub stands in for (0 when not a stub): what the
    /// receiver of the vendor directory does not carry.
    pub bytes_left_out: u64,
}

/// The result of `vendor`.
#[derive(Debug, Clone, Serialize)]
pub struct VendorReport {
    /// The vendor directory written (None when a bundle was written).
    pub dir: Option<PathBuf>,
    /// The bundle written, and its sha256 and size.
    pub bundle: Option<BundleSummary>,
    /// The bundle read (`--from-bundle`).
    pub from_bundle: Option<PathBuf>,
    /// `--platform` triples (empty: all platforms).
    pub platforms: Vec<String>,
    /// Packages vendored or bundled (stubs included).
    pub crates: usize,
    /// Of which stubs.
    pub stubs: usize,
    /// Files written.
    pub files: usize,
    /// Bytes written.
    pub bytes: u64,
    /// Total size of the `.crate` archives the stubs stand in for.
    pub bytes_left_out: u64,
    /// Wall time in seconds.
    pub seconds: f64,
    /// Every package.
    pub packages: Vec<VendoredPackage>,
    /// The `.cargo/config.toml` source replacement.
    pub cargo_config: Option<String>,
    /// Where it was written (`--write-config`).
    pub config_written: Option<PathBuf>,
}

/// A bundle that was written.
#[derive(Debug, Clone, Serialize)]
pub struct BundleSummary {
    /// Its path.
    pub path: PathBuf,
    /// sha256 of the file.
    pub sha256: Sha256Digest,
    /// Its size.
    pub bytes: u64,
}

/// Vendors (or bundles) the workspace's locked dependencies.
pub fn vendor(opts: &VendorOptions) -> Result<VendorReport> {
    let started = Instant::now();
    let mut phase = Phase::start();
    // `cargo metadata` and the rustc queries of `--platform` are processes that each take tens
    // of milliseconds to start: they run side by side, and meanwhile the `.crate` files of the
    // `Cargo.lock` that metadata will most likely name are read and proven on the idle core.
    let ahead = opts.offline && opts.bundle.is_none() && opts.from_bundle.is_none();
    let stop = AtomicBool::new(false);
    let (ws, platforms, ahead) = std::thread::scope(|scope| {
        let platforms = (opts.bundle.is_none() && !opts.platforms.is_empty())
            .then(|| scope.spawn(|| TargetPlatform::query_with_host(&opts.platforms)));
        let ahead = ahead.then(|| scope.spawn(|| ProvenAhead::run(opts, &stop)));
        let ws = Workspace::load(opts.manifest_path.as_deref());
        stop.store(true, Ordering::Relaxed);
        let ahead = ahead.and_then(|handle| handle.join().ok().flatten());
        let platforms = platforms.map(|handle| {
            handle
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a rustc query panicked")))
        });
        (ws, platforms, ahead)
    });
    let ws = ws?;
    let platforms = platforms.transpose()?;
    let (lock, ahead) = match ahead {
        Some(ahead) if ahead.lock.path() == ws.lockfile() => {
            progress::detail(format_args!(
                "{} .crate files read and proven while cargo metadata ran",
                ahead.proven
            ));
            (ahead.lock, Some(ahead.cache))
        }
        other => {
            if let Some(ahead) = other {
                progress::detail(format_args!(
                    "{} .crate files proven against {} while cargo metadata ran, discarded: \
                     the workspace's lockfile is {}",
                    ahead.proven,
                    ahead.lock.path().display(),
                    ws.lockfile().display()
                ));
            }
            (Lockfile::load(&ws.lockfile())?, None)
        }
    };
    check_unique(&lock)?;
    // The source replacement is planned (and a conflicting one refused) before anything is
    // fetched or vendored, so a refusal leaves the vendor directory and the config as they were.
    let (cargo_config, config_plan) = if opts.bundle.is_some() {
        (None, None)
    } else {
        plan_cargo_config(&ws, &lock, opts)?
    };
    phase.done("workspace and Cargo.lock");

    let crates = match &opts.from_bundle {
        Some(path) => {
            if opts.bundle.is_some() {
                return Err(crate::error::input(
                    "--bundle and --from-bundle cannot be combined: a bundle is made from \
                     cargo's cache",
                ));
            }
            let (bundle, passed) = checked_bundle(path, &lock)?;
            phase.done(format_args!(
                "{} .crate files checked in the bundle",
                passed.len()
            ));
            Crates::Bundle(bundle, passed)
        }
        None => {
            let cargo_home = match &opts.cargo_home {
                Some(home) => home.clone(),
                None => cache::cargo_home()?,
            };
            if !opts.offline {
                fetch(&ws)?;
                phase.done("cargo fetch");
            }
            let cache = match ahead {
                Some(cache) => cache,
                None => CrateCache::scan(&cargo_home)?,
            };
            let (cache, pending) = pending_from_cache(
                &lock,
                cache,
                &cargo_home,
                opts.offline,
                opts.bundle.is_some(),
            )?;
            phase.done(format_args!("{} .crate files found", pending.len()));
            if let Some(bundle_path) = &opts.bundle {
                return write_bundle_report(&ws, &lock, &cache, pending, bundle_path, started);
            }
            Crates::Cache(cache, pending)
        }
    };

    let mut filter = platforms.map(|(platforms, host)| {
        let mut host_platforms = platforms.clone();
        if !platforms.iter().any(|p| p.triple == host.triple) {
            host_platforms.push(host);
        }
        PlatformFilter {
            manifests: member_manifests(&ws, &lock),
            platforms,
            host_platforms,
        }
    });

    let dir_names = dir_names(&lock, opts.versioned_dirs);
    let staged = atomic::StagedDir::new(&opts.dir)?;
    let count = match &crates {
        Crates::Cache(_, pending) => pending.len(),
        Crates::Bundle(_, passed) => passed.len(),
    };
    progress::status(
        "Vendoring",
        format!("{count} crates into {}", opts.dir.display()),
    );
    let bar = progress::bar(count as u64, "Extracting");
    let empty = CrateCache::default();
    let mut job = VendorJob {
        cache: &empty,
        lock: &lock,
        dir_names: &dir_names,
        dir: staged.path(),
        needed: None,
        platforms: &opts.platforms,
        read_manifests: false,
    };
    let outcomes: Vec<Result<VendoredPackage, String>> = match &crates {
        Crates::Bundle(bundle, passed) => {
            // The first pass read every manifest: every stub is decided before the second.
            let needed = filter.as_mut().map(|f| {
                for p in passed {
                    f.manifests
                        .declarations
                        .insert(p.id.clone(), p.declarations.clone());
                    if p.proc_macro {
                        f.manifests.proc_macros.insert(p.id.clone());
                    }
                }
                platform::needed_packages(&lock, &f.platforms, &f.host_platforms, &f.manifests)
            });
            job.needed = needed.as_ref();
            let done = bundle.for_each_passed(passed, |archive| {
                let stub = job.needed.is_some_and(|n| !n.contains(&archive.id));
                let outcome = job.vendor_archive(archive, stub);
                bar.inc(1);
                outcome
            })?;
            done.into_iter()
                .map(|outcome| outcome.map(|(package, _)| package))
                .collect()
        }
        Crates::Cache(cache, pending) => {
            job.cache = cache;
            match filter {
                None => vendor_all(&job, pending, &bar)?,
                Some(filter) => {
                    job.read_manifests = true;
                    vendor_scheduled(&job, pending, &lock, filter, &bar)?
                }
            }
        }
    };
    bar.finish_and_clear();
    let (mut packages, mismatches) = split_mismatches(outcomes);
    match &crates {
        Crates::Cache(cache, _) => {
            fail_on_mismatches(mismatches, cache)?;
            phase.done(format_args!(
                "read ({} .crate files from cargo's cache), proven against Cargo.lock, \
                 extracted and hashed",
                cache.files_read()
            ));
        }
        Crates::Bundle(..) => phase.done("read from the bundle, extracted and hashed"),
    }
    staged.commit()?;
    phase.done("swapped into place");
    packages.sort_by(|a, b| a.id.cmp(&b.id));

    let config_written = config_plan.map(|plan| plan.write()).transpose()?;
    Ok(VendorReport {
        dir: Some(opts.dir.clone()),
        bundle: None,
        from_bundle: opts.from_bundle.clone(),
        platforms: opts.platforms.clone(),
        crates: packages.len(),
        stubs: packages.iter().filter(|p| p.stub).count(),
        files: packages.iter().map(|p| p.files).sum(),
        bytes: packages.iter().map(|p| p.bytes).sum(),
        bytes_left_out: packages.iter().map(|p| p.bytes_left_out).sum(),
        seconds: started.elapsed().as_secs_f64(),
        packages,
        cargo_config,
        config_written,
    })
}

/// The most `.crate` bytes [`ProvenAhead`] holds before their packages' turns.
const PROVE_AHEAD_BUDGET: u64 = archive::WHOLE_INFLATE_BUDGET as u64;

/// `Cargo.lock` read, and the largest of its `.crate` files read and proven, before
/// `cargo metadata` confirms that this is the workspace's lockfile; thrown away if it is not.
struct ProvenAhead {
    lock: Lockfile,
    /// Holds the archives proven, each taken by its package's lookup.
    cache: CrateCache,
    /// How many.
    proven: usize,
}

impl ProvenAhead {
    /// Reads the `Cargo.lock` found without cargo ([`crate::workspace::find_lockfile`]) and
    /// proves its largest `.crate` files until `stop`. Only offline (`cargo fetch` would change
    /// the cache after it was listed) and from cargo's cache. None on any error: the normal
    /// path, after `cargo metadata`, meets it again and reports it.
    fn run(opts: &VendorOptions, stop: &AtomicBool) -> Option<ProvenAhead> {
        let found = crate::workspace::find_lockfile(opts.manifest_path.as_deref())?;
        let cargo_home = match &opts.cargo_home {
            Some(home) => home.clone(),
            None => cache::cargo_home().ok()?,
        };
        let lock = Lockfile::load(&found.path).ok()?;
        let cache = CrateCache::scan(&cargo_home).ok()?;
        let packages: Vec<(&LockedPackage, Sha256Digest)> = lock
            .remote_packages()
            .filter(|p| p.id.source.is_registry())
            .filter_map(|p| Some((p, p.checksum?)))
            .collect();
        let proven = cache.prove_ahead(&packages, PROVE_AHEAD_BUDGET, stop);
        Some(ProvenAhead {
            lock,
            cache,
            proven,
        })
    }
}

/// Where the `.crate` files come from.
enum Crates {
    /// Cargo's cache (and git packages packaged here), each read when its turn comes.
    Cache(CrateCache, Vec<PendingCrate>),
    /// A bundle, checked against `Cargo.lock`, the `.crate` files that passed read in a second
    /// pass over it.
    Bundle(bundle::Bundle, Vec<bundle::PassedCrate>),
}

/// Vendors `pending` from `job.cache`, largest first, one package per task on every core:
/// a few crates (windows-sys, linux-raw-sys) expand to a tenth of the tree each, and one of
/// them started last would leave the other cores idle. Each task reads its `.crate`, proves it
/// and extracts it, so only the crates being extracted are in memory, whatever the size of
/// the lockfile.
fn vendor_all(
    job: &VendorJob<'_>,
    pending: &[PendingCrate],
    bar: &indicatif::ProgressBar,
) -> Result<Vec<Result<VendoredPackage, String>>> {
    let mut order: Vec<&PendingCrate> = pending.iter().collect();
    order.sort_by_key(|p| std::cmp::Reverse(p.size()));
    let done: Vec<Outcome> = order
        .into_par_iter()
        .with_max_len(1)
        .map(|pending| {
            let outcome = job.vendor_one(pending);
            bar.inc(1);
            outcome
        })
        .collect::<Result<_>>()?;
    Ok(done
        .into_iter()
        .map(|outcome| outcome.map(|(package, _)| package))
        .collect())
}

/// [`vendor_all`] with `--platform`: whether a package gets a stub depends on the manifests of
/// the packages that depend on it, so a package is decided once every package that depends on
/// it in `Cargo.lock` is done (its manifest read while it was extracted), and each `.crate` is
/// read and inflated once. [`platform::needed_packages`] then answers for it exactly as with
/// every manifest: every chain of edges from a workspace member to it runs through packages
/// that depend on it, all done (see [`platform::batches`], whose argument this is, without
/// waiting for a whole batch: a core that would wait takes the largest package decided). A
/// package [`platform::surely_needed`] keeps already does not wait for its dependents.
/// Packages on a cycle (cargo forbids them among remote packages) come last, decided with some
/// manifests unknown, which keeps more packages, never fewer.
fn vendor_scheduled(
    job: &VendorJob<'_>,
    pending: &[PendingCrate],
    lock: &Lockfile,
    filter: PlatformFilter,
    bar: &indicatif::ProgressBar,
) -> Result<Vec<Result<VendoredPackage, String>>> {
    use std::sync::{Condvar, Mutex, PoisonError};
    let index: HashMap<&PackageId, usize> = pending
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id(), i))
        .collect();
    let by_id: HashMap<&PackageId, &LockedPackage> =
        lock.packages().iter().map(|p| (&p.id, p)).collect();
    let mut children: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); pending.len()];
    let mut parents = vec![0usize; pending.len()];
    for (i, p) in pending.iter().enumerate() {
        for dep in by_id.get(p.id()).map_or(&[][..], |l| &l.dependencies[..]) {
            if let Some(&j) = index.get(dep)
                && j != i
                && children[i].insert(j)
            {
                parents[j] += 1;
            }
        }
    }
    let workers = rayon::current_num_threads().max(1);
    let state = Mutex::new(Schedule {
        undecided: (0..pending.len()).filter(|&i| parents[i] == 0).collect(),
        queued: parents.iter().map(|&n| n == 0).collect(),
        parents,
        ready: std::collections::BinaryHeap::new(),
        running: 0,
        learned: true,
        filter,
        outcomes: Vec::with_capacity(pending.len()),
        failed: None,
    });
    let wake = Condvar::new();
    let lock_state = || state.lock().unwrap_or_else(PoisonError::into_inner);
    let next = || -> Option<(usize, bool)> {
        let mut now = lock_state();
        loop {
            if now.failed.is_some() {
                return None;
            }
            // Decided only when a core is about to run short: each decision walks the graph.
            if now.ready.len() < workers && (!now.undecided.is_empty() || now.learned) {
                now.decide(lock, pending);
            }
            if let Some(Ready { index, stub, .. }) = now.ready.pop() {
                now.running += 1;
                return Some((index.0, stub));
            }
            if now.running == 0 {
                // Nothing ready and nothing running: what is left waits on a cycle.
                let left: Vec<usize> = (0..pending.len()).filter(|&i| !now.queued[i]).collect();
                if left.is_empty() {
                    return None;
                }
                for &i in &left {
                    now.queued[i] = true;
                }
                now.undecided.extend(left);
                continue;
            }
            now = wake.wait(now).unwrap_or_else(PoisonError::into_inner);
        }
    };
    rayon::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|_| {
                while let Some((i, stub)) = next() {
                    let outcome = job.vendor_as(&pending[i], stub);
                    bar.inc(1);
                    let mut now = lock_state();
                    now.running -= 1;
                    match outcome {
                        Ok(outcome) => now.done(outcome, &children[i]),
                        Err(e) => {
                            now.failed.get_or_insert(e);
                        }
                    }
                    drop(now);
                    wake.notify_all();
                }
            });
        }
    });
    let state = state.into_inner().unwrap_or_else(PoisonError::into_inner);
    match state.failed {
        Some(e) => Err(e),
        None => Ok(state.outcomes),
    }
}

/// What [`vendor_scheduled`]'s workers share.
struct Schedule {
    /// Packages whose dependents are all done, not decided yet.
    undecided: Vec<usize>,
    /// Whether a package was made ready (or decided as one left on a cycle).
    queued: Vec<bool>,
    /// Dependents not done yet, per package.
    parents: Vec<usize>,
    /// Decided packages, the largest first.
    ready: std::collections::BinaryHeap<Ready>,
    running: usize,
    /// Whether a manifest was learned since the last decision.
    learned: bool,
    filter: PlatformFilter,
    outcomes: Vec<Result<VendoredPackage, String>>,
    failed: Option<anyhow::Error>,
}

/// A decided package: its `.crate`'s size, then its index (for a fixed order).
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Ready {
    size: u64,
    index: std::cmp::Reverse<usize>,
    stub: bool,
}

impl Schedule {
    /// Decides every undecided package from the manifests known now, and makes ready, kept,
    /// every package not ready yet that some platform surely needs already (so chains of
    /// dependencies do not wait for each package's dependents).
    fn decide(&mut self, lock: &Lockfile, pending: &[PendingCrate]) {
        let f = &self.filter;
        if !self.undecided.is_empty() {
            let needed =
                platform::needed_packages(lock, &f.platforms, &f.host_platforms, &f.manifests);
            for i in self.undecided.drain(..) {
                self.ready.push(Ready {
                    size: pending[i].size(),
                    index: std::cmp::Reverse(i),
                    stub: !needed.contains(pending[i].id()),
                });
            }
        }
        if self.learned {
            self.learned = false;
            let surely =
                platform::surely_needed(lock, &f.platforms, &f.host_platforms, &f.manifests);
            for (i, p) in pending.iter().enumerate() {
                if !self.queued[i] && surely.contains(p.id()) {
                    self.queued[i] = true;
                    self.ready.push(Ready {
                        size: p.size(),
                        index: std::cmp::Reverse(i),
                        stub: false,
                    });
                }
            }
        }
    }

    /// Records a package's outcome and manifest, and makes ready its dependencies (`children`)
    /// whose dependents are now all done.
    fn done(&mut self, outcome: Outcome, children: &BTreeSet<usize>) {
        self.outcomes.push(outcome.map(|(package, manifest)| {
            if let Some((declarations, proc_macro)) = manifest {
                self.learned = true;
                let manifests = &mut self.filter.manifests;
                if proc_macro {
                    manifests.proc_macros.insert(package.id.clone());
                }
                manifests
                    .declarations
                    .insert(package.id.clone(), declarations);
            }
            package
        }));
        for &child in children {
            self.parents[child] = self.parents[child].saturating_sub(1);
            if self.parents[child] == 0 && !self.queued[child] {
                self.queued[child] = true;
                self.undecided.push(child);
            }
        }
    }
}

/// The `.cargo/config.toml` source replacement for `lock`'s sources and `opts.dir`, and with
/// `--write-config` the planned write (None when nothing is remote: no replacement is needed).
fn plan_cargo_config(
    ws: &Workspace,
    lock: &Lockfile,
    opts: &VendorOptions,
) -> Result<(Option<String>, Option<config::ConfigPlan>)> {
    let sources: BTreeSet<Source> = lock
        .remote_packages()
        .map(|p| p.id.source.clone())
        .collect();
    if sources.is_empty() {
        return Ok((None, None));
    }
    let directory = config::relative_path(ws.root(), &opts.dir);
    let text = config::render(&sources, &directory.to_string_lossy());
    let plan = if opts.write_config {
        Some(config::plan(ws.root(), &text)?)
    } else {
        None
    };
    Ok((Some(text), plan))
}

/// The time each step took, shown with `-v` (where a slow vendor spends its time).
struct Phase(Instant);

impl Phase {
    fn start() -> Phase {
        Phase(Instant::now())
    }

    /// Prints how long `what` took since the previous step, and starts the next one.
    fn done(&mut self, what: impl std::fmt::Display) {
        progress::detail(format_args!(
            "{what}: {:.3} s",
            self.0.elapsed().as_secs_f64()
        ));
        self.0 = Instant::now();
    }
}

/// cargo's `directory` source needs one directory per package: two packages with the same
/// name and version from different sources cannot both be vendored (cargo refuses too).
fn check_unique(lock: &Lockfile) -> Result<()> {
    let mut seen: HashMap<(&str, String), &Source> = HashMap::new();
    for p in lock.remote_packages() {
        if let Some(other) = seen.insert((&p.id.name, p.id.version.to_string()), &p.id.source) {
            return Err(crate::error::input(format!(
                "{} v{} is locked from two sources ({other} and {}); a vendor directory can \
                 hold only one",
                p.id.name, p.id.version, p.id.source
            )));
        }
    }
    Ok(())
}

/// Directory names as cargo vendor chooses them: `NAME` for the highest version of a name,
/// `NAME-VERSION` for the others (and for all with `versioned`).
pub fn dir_names(lock: &Lockfile, versioned: bool) -> BTreeMap<PackageId, String> {
    let mut highest: HashMap<&str, &cargo_metadata::semver::Version> = HashMap::new();
    for p in lock.remote_packages() {
        let entry = highest.entry(&p.id.name).or_insert(&p.id.version);
        if p.id.version > **entry {
            *entry = &p.id.version;
        }
    }
    lock.remote_packages()
        .map(|p| {
            let name = if versioned || highest[p.id.name.as_str()] != &p.id.version {
                p.id.dir_name()
            } else {
                p.id.name.clone()
            };
            (p.id.clone(), name)
        })
        .collect()
}

/// `cargo fetch --locked`, so the user's cargo configuration (mirrors, proxies, registries)
/// decides where crates come from.
fn fetch(ws: &Workspace) -> Result<()> {
    progress::status("Fetching", "cargo fetch --locked");
    let mut cmd = process::cargo();
    cmd.args(["fetch", "--locked", "--manifest-path"])
        .arg(ws.root().join("Cargo.toml"))
        .current_dir(ws.root());
    if progress::verbosity() < 0 {
        cmd.arg("--quiet");
    }
    // A project already switched to vendored sources would "fetch" from its vendor directory
    // and leave cargo's cache empty: fetch from outside the project (cargo reads
    // `.cargo/config.toml` from the working directory up), with the project's configuration
    // minus those sources, so its registries, mirrors and network settings still apply.
    let outside = tempfile::tempdir().context("cannot create a temporary directory")?;
    if let Some(config) = config::without_directory_sources(ws.root())? {
        progress::detail(
            "the project's cargo configuration replaces sources with a directory; fetching \
             from outside the project with the rest of that configuration",
        );
        let dir = outside.path().join(".cargo");
        std::fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        atomic::write_file(&dir.join("config.toml"), config.as_bytes())?;
        cmd.current_dir(outside.path());
    }
    process::run_inherit_stderr(&mut cmd).map_err(|e| {
        e.context("cannot fetch the locked crates; check the network, or run with --offline when cargo's cache already holds them")
    })?;
    Ok(())
}

/// A locked package's `.crate` before it is extracted or bundled: in cargo's cache, read and
/// proven only when its turn comes, or already in memory (packaged from git, or from a bundle).
pub enum PendingCrate {
    /// In cargo's cache.
    Cached {
        /// The package.
        package: LockedPackage,
        /// Its `Cargo.lock` checksum.
        expected: Sha256Digest,
        /// The size of the file found for it.
        size: u64,
    },
    /// Read and proven already.
    Loaded(CrateArchive),
}

impl PendingCrate {
    /// The package.
    pub fn id(&self) -> &PackageId {
        match self {
            PendingCrate::Cached { package, .. } => &package.id,
            PendingCrate::Loaded(archive) => &archive.id,
        }
    }

    /// The `.crate`'s size, to start the largest first.
    pub fn size(&self) -> u64 {
        match self {
            PendingCrate::Cached { size, .. } => *size,
            PendingCrate::Loaded(archive) => archive.bytes.len() as u64,
        }
    }

    /// The archive, read from `cache` and proven against `Cargo.lock` now; or the line that
    /// says why it differs. A file gone since the cache was listed is an error.
    pub fn load<'a>(
        &'a self,
        cache: &CrateCache,
    ) -> Result<Result<std::borrow::Cow<'a, CrateArchive>, String>> {
        let (package, expected) = match self {
            PendingCrate::Loaded(archive) => return Ok(Ok(std::borrow::Cow::Borrowed(archive))),
            PendingCrate::Cached {
                package, expected, ..
            } => (package, *expected),
        };
        match cache.lookup(package, expected)? {
            Lookup::Verified(archive) => Ok(Ok(std::borrow::Cow::Owned(archive))),
            Lookup::Mismatch { path, actual } => Ok(Err(format!(
                "{} ({}): sha256 differs from Cargo.lock: expected {expected}, found {actual}",
                package.id,
                path.display()
            ))),
            Lookup::Missing => Err(crate::error::input(format!(
                "{}: its .crate left cargo's cache ({}) while airlock was reading it; run again",
                package.id,
                cache.root().display()
            ))),
        }
    }
}

/// The packages that were done, and the mismatch lines of those that were not.
fn split_mismatches<T>(outcomes: Vec<Result<T, String>>) -> (Vec<T>, Vec<String>) {
    let mut done = Vec::with_capacity(outcomes.len());
    let mut mismatches = Vec::new();
    for outcome in outcomes {
        match outcome {
            Ok(value) => done.push(value),
            Err(line) => mismatches.push(line),
        }
    }
    mismatches.sort();
    (done, mismatches)
}

/// Fails (exit 1) listing every `.crate` that differs from `Cargo.lock`.
pub(crate) fn fail_on_mismatches(mismatches: Vec<String>, cache: &CrateCache) -> Result<()> {
    if mismatches.is_empty() {
        return Ok(());
    }
    Err(crate::error::check_failed(format!(
        "{} .crate file(s) failed the Cargo.lock check; nothing was extracted from them and \
         nothing was written:\n  {}\n\
         Remove the bad files from {} and fetch again, or check where they came from.",
        mismatches.len(),
        mismatches.join("\n  "),
        cache.root().display()
    )))
}

/// Every remote locked package's `.crate` in `cache` (cargo's, in `cargo_home`), found but not
/// read yet (unless proven ahead); git packages packaged at their locked commit (with what
/// proves them, for a bundle, when `prove_git`). Fails listing every package that cannot be
/// proven or is missing.
fn pending_from_cache(
    lock: &Lockfile,
    cache: CrateCache,
    cargo_home: &Path,
    offline: bool,
    prove_git: bool,
) -> Result<(CrateCache, Vec<PendingCrate>)> {
    let mut pending = Vec::new();
    let mut unprovable = Vec::new();
    let mut missing = Vec::new();
    for package in lock.remote_packages().filter(|p| p.id.source.is_registry()) {
        match package.checksum {
            None => unprovable.push(format!(
                "{}: Cargo.lock has no checksum for this registry package, so it cannot be \
                 proven; regenerate Cargo.lock with a current cargo",
                package.id
            )),
            Some(_) if cache.candidates(package).is_empty() => missing.push(package.id.to_string()),
            Some(expected) => pending.push(PendingCrate::Cached {
                package: package.clone(),
                expected,
                size: cache.size_hint(package),
            }),
        }
    }
    fail_on_mismatches(unprovable, &cache)?;
    if !missing.is_empty() {
        let hint = if offline {
            "run without --offline so `cargo fetch --locked` downloads them"
        } else {
            "`cargo fetch --locked` did not leave them there; is a source replacement or \
             another CARGO_HOME in effect?"
        };
        return Err(crate::error::input(format!(
            "{} locked crate(s) are not in cargo's cache ({}): {}; {hint}",
            missing.len(),
            cache.root().display(),
            missing.join(", ")
        )));
    }
    for package in lock
        .remote_packages()
        .filter(|p| matches!(p.id.source, Source::Git { .. }))
    {
        progress::status("Packaging", format!("{} (git)", package.id));
        let scratch = tempfile::tempdir().context("cannot create a temporary directory")?;
        pending.push(PendingCrate::Loaded(git::package_git_dependency(
            &package.id,
            cargo_home,
            scratch.path(),
            prove_git,
        )?));
    }
    pending.sort_by(|a, b| a.id().cmp(b.id()));
    Ok((cache, pending))
}

/// A bundle, read once and checked against its manifest and `Cargo.lock`, and its `.crate`
/// files (all of them pass, or this fails listing every problem, exit 1).
fn checked_bundle(
    path: &Path,
    lock: &Lockfile,
) -> Result<(bundle::Bundle, Vec<bundle::PassedCrate>)> {
    progress::status("Reading", path.display());
    let bundle = bundle::Bundle::read(path)?;
    let (passed, findings) = bundle.check(lock);
    if !findings.is_empty() {
        let lines: Vec<String> = findings.iter().map(|f| format!("{f}")).collect();
        let message = format!(
            "the bundle {} does not match {} ({} problem(s)); nothing was extracted:\n  {}",
            path.display(),
            lock.path().display(),
            findings.len(),
            lines.join("\n  ")
        );
        return Err(crate::error::check_failed(message));
    }
    Ok((bundle, passed))
}

fn write_bundle_report(
    ws: &Workspace,
    lock: &Lockfile,
    cache: &CrateCache,
    pending: Vec<PendingCrate>,
    path: &Path,
    started: Instant,
) -> Result<VendorReport> {
    let lockfile = std::fs::read(lock.path())
        .with_context(|| format!("cannot read {}", lock.path().display()))?;
    let mtime = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(_) => crate::workspace::source_date_epoch(ws.root())?,
        Err(_) => 0,
    };
    progress::status(
        "Bundling",
        format!("{} crates into {}", pending.len(), path.display()),
    );
    let written = bundle::write_bundle(path, &lockfile, &pending, cache, mtime)?;
    let packages: Vec<VendoredPackage> = written
        .crates
        .into_iter()
        .map(|(id, digest, size)| VendoredPackage {
            kind: id.source.kind(),
            id,
            dir: None,
            crate_sha256: digest,
            files: 1,
            bytes: size,
            stub: false,
            bytes_left_out: 0,
        })
        .collect();
    Ok(VendorReport {
        dir: None,
        bundle: Some(BundleSummary {
            path: path.to_path_buf(),
            sha256: written.sha256,
            bytes: written.bytes,
        }),
        from_bundle: None,
        platforms: Vec::new(),
        crates: packages.len(),
        stubs: 0,
        files: packages.len(),
        bytes: written.bytes,
        bytes_left_out: 0,
        seconds: started.elapsed().as_secs_f64(),
        packages,
        cargo_config: None,
        config_written: None,
    })
}

/// What `--platform` decides from: the kept platforms, where build scripts and proc-macros
/// run, and the manifests read so far.
struct PlatformFilter {
    platforms: Vec<TargetPlatform>,
    host_platforms: Vec<TargetPlatform>,
    manifests: platform::Manifests,
}

/// A vendored package and, when the platform filter needs them, its manifest's dependency
/// declarations and whether it is a proc-macro; or why its `.crate` differs.
type Outcome = Result<(VendoredPackage, Option<(Vec<Declaration>, bool)>), String>;

/// What vendoring one package of a batch needs.
struct VendorJob<'a> {
    cache: &'a CrateCache,
    lock: &'a Lockfile,
    dir_names: &'a BTreeMap<PackageId, String>,
    dir: &'a Path,
    /// With `--platform`: the packages some platform needs; the others get a stub.
    needed: Option<&'a BTreeSet<PackageId>>,
    platforms: &'a [String],
    /// Whether the platform filter still needs each package's manifest (returned with it).
    read_manifests: bool,
}

impl VendorJob<'_> {
    /// Reads `pending`'s `.crate` (once), proves it, and extracts it or writes its stub.
    fn vendor_one(&self, pending: &PendingCrate) -> Result<Outcome> {
        let stub = self.needed.is_some_and(|n| !n.contains(pending.id()));
        self.vendor_as(pending, stub)
    }

    /// [`VendorJob::vendor_one`], a stub when `stub`.
    fn vendor_as(&self, pending: &PendingCrate, stub: bool) -> Result<Outcome> {
        match pending.load(self.cache)? {
            Ok(archive) => self.vendor_archive(&archive, stub),
            Err(mismatch) => Ok(Err(mismatch)),
        }
    }

    /// Extracts `archive` (proven already) or writes its stub.
    fn vendor_archive(&self, archive: &CrateArchive, stub: bool) -> Result<Outcome> {
        let name = &self.dir_names[&archive.id];
        let dest = self.dir.join(name);
        let (files, left_out, manifest) = if stub {
            let (files, left_out) = write_stub(archive, &dest, self.platforms)?;
            (files, left_out, None)
        } else {
            let (files, manifest) = write_package(archive, &dest, self.lock, self.read_manifests)?;
            let manifest = manifest.map(|m| declared(archive, &m)).transpose()?;
            (files, 0, manifest)
        };
        Ok(Ok((
            VendoredPackage {
                id: archive.id.clone(),
                kind: archive.id.source.kind(),
                dir: Some(name.clone()),
                crate_sha256: archive.digest,
                files: files.files.len() + 1,
                bytes: files.bytes,
                stub,
                bytes_left_out: left_out,
            },
            manifest,
        )))
    }
}

/// What the platform filter reads from a package's own `Cargo.toml`.
fn declared(archive: &CrateArchive, manifest: &[u8]) -> Result<(Vec<Declaration>, bool)> {
    let table: toml::Table = String::from_utf8_lossy(manifest)
        .parse()
        .with_context(|| format!("cannot parse the Cargo.toml of {}", archive.id))?;
    Ok((
        platform::declarations(&table),
        platform::is_proc_macro(&table),
    ))
}

/// The manifests of the workspace members (from `cargo metadata`), where the platform filter
/// starts; registry and git packages' are read from their `.crate` as they are extracted.
fn member_manifests(ws: &Workspace, lock: &Lockfile) -> platform::Manifests {
    let mut manifests = platform::Manifests::default();
    for member in &ws.metadata.packages {
        let Some(locked) = lock.packages().iter().find(|p| {
            p.id.source == Source::Path
                && p.id.name == member.name.as_str()
                && p.id.version == member.version
        }) else {
            continue;
        };
        let decls = member
            .dependencies
            .iter()
            .map(|d| Declaration {
                package: d.name.clone(),
                platform: d.target.clone(),
                build: d.kind == cargo_metadata::DependencyKind::Build,
            })
            .collect();
        manifests.declarations.insert(locked.id.clone(), decls);
        if member
            .targets
            .iter()
            .any(|t| t.kind.contains(&cargo_metadata::TargetKind::ProcMacro))
        {
            manifests.proc_macros.insert(locked.id.clone());
        }
    }
    manifests
}

/// Extracts one package and writes its checksum file; returns its files, and its
/// `Cargo.toml` when `manifest` (an error when it has none).
fn write_package(
    archive: &CrateArchive,
    dest: &Path,
    lock: &Lockfile,
    manifest: bool,
) -> Result<(PackageFiles, Option<Vec<u8>>)> {
    let (files, kept) = archive
        .extract_keeping_manifest(dest, manifest)
        .with_context(|| format!("cannot vendor {}", archive.id))?;
    if manifest && kept.is_none() {
        return Err(anyhow::anyhow!("{} has no Cargo.toml", archive.origin));
    }
    let package_sum = match archive.kind {
        ArchiveKind::Registry => lock.get(&archive.id).and_then(|p| p.checksum),
        ArchiveKind::Git => None,
    };
    CargoChecksum::new(&files, package_sum).write_to(dest)?;
    Ok((files, kept))
}

/// Writes a stub for `archive` (see [`platform`]); returns its files and the bytes of the
/// `.crate` it leaves out.
fn write_stub(
    archive: &CrateArchive,
    dest: &Path,
    platforms: &[String],
) -> Result<(PackageFiles, u64)> {
    // The archive is inflated only as far as its `Cargo.toml` (near the start: `cargo package`
    // sorts entries by path, so only dot-files and names such as `CHANGELOG.md` precede it);
    // what is left out is counted as the `.crate` the receiver need not carry, known without
    // inflating the rest.
    let original = archive
        .read_file("Cargo.toml")?
        .ok_or_else(|| anyhow::anyhow!("{} has no Cargo.toml", archive.origin))?;
    let left_out = archive.bytes.len() as u64;
    let manifest = platform::stub_manifest(&archive.id, &original, platforms)?;
    std::fs::create_dir_all(dest.join("src"))
        .with_context(|| format!("cannot create {}", dest.display()))?;
    let mut files = PackageFiles::default();
    for (relative, contents) in [("Cargo.toml", manifest.as_bytes()), ("src/lib.rs", b"")] {
        let path = dest.join(relative);
        std::fs::write(&path, contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        files.insert(relative, Sha256Digest::of(contents), contents.len() as u64);
    }
    // The package checksum stays: cargo compares it with Cargo.lock while resolving.
    let package_sum = (archive.kind == ArchiveKind::Registry).then_some(archive.digest);
    CargoChecksum::new(&files, package_sum).write_to(dest)?;
    Ok((files, left_out))
}

impl CommandReport for VendorReport {
    fn human(&self) -> String {
        let mut out = String::new();
        if let Some(bundle) = &self.bundle {
            let _ = writeln!(
                out,
                "Bundled {} crates into {} ({}) in {:.2} s\n{}  {}\n\nCarry it across, then run there:\n  cargo airlock verify --bundle {}\n  cargo airlock vendor --from-bundle {} --write-config",
                self.crates,
                bundle.path.display(),
                human_bytes(bundle.bytes),
                self.seconds,
                bundle.sha256.hex(),
                bundle.path.display(),
                bundle.path.display(),
                bundle.path.display(),
            );
            return out;
        }
        let dir = self
            .dir
            .as_deref()
            .map(|d| d.display().to_string())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "Vendored {} crates into {dir}: {} files, {} in {:.2} s",
            self.crates,
            self.files,
            human_bytes(self.bytes),
            self.seconds
        );
        if !self.platforms.is_empty() {
            let _ = writeln!(
                out,
                "Platforms {}: {} crates replaced by stubs ({} of .crate archives left out)",
                self.platforms.join(", "),
                self.stubs,
                human_bytes(self.bytes_left_out)
            );
        }
        match (&self.config_written, &self.cargo_config) {
            (Some(path), _) => {
                let _ = writeln!(
                    out,
                    "Wrote {}; build with `cargo build --offline --frozen`",
                    path.display()
                );
            }
            (None, Some(config)) => {
                let _ = write!(
                    out,
                    "\nTo use the vendored sources, add this to .cargo/config.toml (or rerun with --write-config):\n\n{config}"
                );
            }
            (None, None) => {}
        }
        out
    }
}
