//! `--platform`: which locked packages some target platform needs, and the stubs that stand in
//! for the others.
//!
//! A package is needed when a chain of dependency edges from a workspace member reaches it and
//! every edge is declared for a platform that matches (no `[target.'cfg(…)']` table, or one
//! whose triple or `cfg` expression matches the platform's `rustc --print cfg`). Edges come
//! from `Cargo.lock`, which holds every feature's dependencies, so the result is a superset of
//! what any feature selection builds.
//!
//! Build scripts and proc-macros run on the machine that builds, so cargo evaluates the `cfg`
//! of build-dependencies, and of every dependency below a build-dependency or a proc-macro, for
//! the host (cargo's `FeatureResolver::deps`: build-dependencies and `FeaturesFor::HostDep` use
//! `CompileKind::Host`). Those host-side edges are evaluated for the host platforms (the kept
//! platforms and the machine running `vendor`), the others for the kept platforms.
//!
//! A package no platform needs is replaced by a stub (as cargo-vendor-filterer does): its own
//! manifest with every target but an empty library removed, and the package checksum kept, so
//! `cargo build --offline --frozen` still resolves the whole lockfile without its sources.
//!
//! rustc's `cfg` answers are kept between runs while the toolchain is the same one
//! ([`crate::rustc`]), as `build` keeps its probe's: a run with them kept starts no rustc.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::str::FromStr;

use anyhow::{Context, Result};
use cargo_metadata::cargo_platform::{Cfg, Platform};
use serde::{Deserialize, Serialize};

use crate::input::{Links, open_regular};
use crate::lock::{Lockfile, PackageId, Source};
use crate::process;

/// A target platform: its triple and the `cfg` values rustc reports for it.
#[derive(Debug, Clone)]
pub struct TargetPlatform {
    /// The target triple.
    pub triple: String,
    cfgs: Vec<Cfg>,
}

impl TargetPlatform {
    /// Asks `rustc --print cfg --target TRIPLE` for the platform's `cfg` values, or recalls
    /// what it said ([`recalled_or_asked`]).
    pub fn query(triple: &str) -> Result<TargetPlatform> {
        // A target rustc reads from a file (a path, or a name looked up in RUST_TARGET_PATH)
        // can change while the toolchain stays the same: never kept.
        let from_file = triple.contains('/')
            || triple.ends_with(".json")
            || std::env::var_os("RUST_TARGET_PATH").is_some();
        let question = (!from_file).then(|| format!("--print cfg --target {triple}"));
        recalled_or_asked(question.as_deref(), || {
            Ok(Answer {
                triple: triple.to_owned(),
                cfg: print_cfg(Some(triple))?,
            })
        })
    }

    /// Each of `triples` ([`TargetPlatform::query`]), and the platform of the machine running
    /// airlock (`rustc -vV`'s host, where build scripts and proc-macros run), all asked of
    /// rustc at once: each `rustc` (behind rustup's proxy) takes tens of
    /// milliseconds to start, most of `vendor --platform`'s own time if run one after another.
    /// Answers kept from an earlier run of the same toolchain start no rustc at all.
    /// The first error in the order of `triples`, the host's last, is the one returned.
    pub fn query_with_host(triples: &[String]) -> Result<(Vec<TargetPlatform>, TargetPlatform)> {
        std::thread::scope(|scope| {
            let host = scope.spawn(|| recalled_or_asked(Some(HOST_QUESTION), host_platform));
            let queried: Vec<_> = triples
                .iter()
                .map(|triple| scope.spawn(move || TargetPlatform::query(triple)))
                .collect();
            let platforms = queried
                .into_iter()
                .map(joined)
                .collect::<Result<Vec<_>>>()?;
            Ok((platforms, joined(host)?))
        })
    }

    /// A platform from known cfg lines (tests).
    pub fn from_cfg_lines(triple: &str, lines: &[&str]) -> Result<TargetPlatform> {
        Ok(TargetPlatform {
            triple: triple.to_owned(),
            cfgs: lines
                .iter()
                .map(|l| Cfg::from_str(l))
                .collect::<Result<_, _>>()?,
        })
    }

    fn matches(&self, platform: &Platform) -> bool {
        platform.matches(&self.triple, &self.cfgs)
    }
}

/// What rustc says of a platform, as kept between runs: its triple and `--print cfg` lines.
#[derive(Debug, Serialize, Deserialize)]
struct Answer {
    triple: String,
    cfg: Vec<String>,
}

impl Answer {
    fn platform(&self) -> Result<TargetPlatform> {
        Ok(TargetPlatform {
            triple: self.triple.clone(),
            cfgs: self
                .cfg
                .iter()
                .map(|l| Cfg::from_str(l))
                .collect::<Result<_, _>>()?,
        })
    }
}

/// The question [`host_platform`] answers, as kept.
const HOST_QUESTION: &str = "--print host-tuple --print cfg";

/// The platform rustc's answer to `question` describes: kept from an earlier run while the
/// toolchain is the same one ([`crate::rustc`]), else `ask`ed and kept (`question` None: asked
/// and never kept). A kept answer that does not parse is asked again.
fn recalled_or_asked(
    question: Option<&str>,
    ask: impl FnOnce() -> Result<Answer>,
) -> Result<TargetPlatform> {
    let kept = question
        .zip(crate::rustc::answers_dir())
        .zip(crate::rustc::Toolchain::identify(&crate::rustc::program()));
    if let Some(((question, dir), toolchain)) = &kept
        && let Some(answer) = toolchain.recall::<Answer>(dir, question)
        && let Ok(platform) = answer.platform()
    {
        return Ok(platform);
    }
    let answer = ask()?;
    let platform = answer.platform()?;
    if let Some(((question, dir), toolchain)) = kept
        && let Ok(fresh) = toolchain.keep(&dir, question, &answer)
    {
        fresh.write();
    }
    Ok(platform)
}

/// The `cfg` lines `rustc --print cfg` reports for `triple` (None: the host).
fn print_cfg(triple: Option<&str>) -> Result<Vec<String>> {
    let mut cmd = rustc();
    cmd.args(["--print", "cfg"]);
    if let Some(triple) = triple {
        cmd.args(["--target", triple]);
    }
    let output = process::run_captured(&mut cmd).map_err(|e| match triple {
        Some(triple) => crate::error::input(format!(
            "rustc does not know the target `{triple}` ({e:#}); see `rustc --print target-list`"
        )),
        None => host_unknown("rustc --print cfg", &e),
    })?;
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    if let Some(bad) = lines.iter().find(|l| Cfg::from_str(l).is_err()) {
        anyhow::bail!(
            "cannot parse `{}`: `{bad}` is no cfg",
            process::display(&cmd)
        );
    }
    Ok(lines)
}

/// The host platform: `rustc --print host-tuple --print cfg` (rustc 1.84 and later), one
/// process where older rustc needs two, `rustc -vV` for the triple and `rustc --print cfg`
/// (without `--target`, the host's).
fn host_platform() -> Result<Answer> {
    if let Ok(output) =
        process::run_captured(rustc().args(["--print", "host-tuple", "--print", "cfg"]))
    {
        let text = String::from_utf8_lossy(&output.stdout);
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        if let Some(triple) = lines.next()
            && !triple.contains(['=', '"'])
        {
            let cfg: Vec<String> = lines.map(str::to_owned).collect();
            if cfg.iter().all(|l| Cfg::from_str(l).is_ok()) {
                return Ok(Answer {
                    triple: triple.trim().to_owned(),
                    cfg,
                });
            }
        }
    }
    std::thread::scope(|scope| {
        let cfg = scope.spawn(|| print_cfg(None));
        let triple = host_triple()?;
        Ok(Answer {
            triple,
            cfg: joined(cfg)?,
        })
    })
}

/// The host triple, from `rustc -vV`.
fn host_triple() -> Result<String> {
    let output =
        process::run_captured(rustc().arg("-vV")).map_err(|e| host_unknown("rustc -vV", &e))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let triple = text
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .with_context(|| format!("`rustc -vV` names no host:\n{text}"))?;
    Ok(triple.trim().to_owned())
}

fn host_unknown(command: &str, e: &anyhow::Error) -> anyhow::Error {
    crate::error::environment(format!(
        "cannot ask rustc for the host platform (`{command}`: {e:#}); is a Rust toolchain \
         installed (rustup)?"
    ))
}

/// `$RUSTC`, else `rustc` (cargo's own rule), run as cargo runs it: when the `rustc` on `PATH`
/// is rustup's proxy and rustup chose the toolchain already (`RUSTUP_TOOLCHAIN` and
/// `RUSTUP_HOME` set, as rustup sets them for the cargo it started), that toolchain's own
/// `rustc`, which is what the proxy would run, without the proxy's start-up (cargo's
/// `GlobalContext::maybe_get_tool`, "optimize usage under rustup", cargo #11917).
fn rustc() -> Command {
    if let Some(rustc) = std::env::var_os("RUSTC") {
        return Command::new(rustc);
    }
    Command::new(toolchain_rustc(|key| std::env::var_os(key)).unwrap_or_else(|| "rustc".into()))
}

/// The toolchain `rustc` [`rustc`] runs instead of rustup's proxy, from the environment `var`.
fn toolchain_rustc(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let toolchain = var("RUSTUP_TOOLCHAIN")?;
    let home = var("RUSTUP_HOME")?;
    // A toolchain name, never a path (`RUSTUP_TOOLCHAIN` may name one: then the proxy runs).
    let mut components = Path::new(&toolchain).components();
    if !matches!(
        (components.next(), components.next()),
        (Some(std::path::Component::Normal(_)), None)
    ) {
        return None;
    }
    let direct = Path::new(&home)
        .join("toolchains")
        .join(&toolchain)
        .join("bin")
        .join("rustc");
    let path = var("PATH")?;
    let on_path = |name: &str| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    };
    // The proxy is rustup itself under another name (a link, hard or symbolic, to it).
    let same_file = |a: &Path, b: &Path| {
        use std::os::unix::fs::MetadataExt;
        match (std::fs::metadata(a), std::fs::metadata(b)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    };
    let proxy = on_path("rustc")?;
    let rustup = on_path("rustup")?;
    (same_file(&proxy, &rustup) && direct.is_file()).then_some(direct)
}

/// The value a thread of [`TargetPlatform::query_with_host`] returned.
fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    handle
        .join()
        .unwrap_or_else(|_| Err(anyhow::anyhow!("a rustc query panicked")))
}

/// One dependency declaration of a manifest: the package it names and the platform table it
/// sits under (None: every platform).
#[derive(Debug, Clone, PartialEq)]
pub struct Declaration {
    /// The dependency's package name (after `package = …` renames).
    pub package: String,
    /// `[target.<platform>.…]`, if any.
    pub platform: Option<Platform>,
    /// Whether it is a build-dependency (built and evaluated for the host).
    pub build: bool,
}

/// What the platform filter reads from the manifests of the locked packages.
#[derive(Debug, Clone, Default)]
pub struct Manifests {
    /// Each package's dependency declarations; a package missing here (unknown manifest)
    /// keeps every locked dependency.
    pub declarations: BTreeMap<PackageId, Vec<Declaration>>,
    /// Packages whose library is a proc-macro (built for the host).
    pub proc_macros: BTreeSet<PackageId>,
}

/// Whether a manifest's `[lib]` is a proc-macro (`proc-macro`, or the old `proc_macro`).
pub fn is_proc_macro(manifest: &toml::Table) -> bool {
    manifest
        .get("lib")
        .and_then(|l| l.as_table())
        .is_some_and(|lib| {
            ["proc-macro", "proc_macro"]
                .iter()
                .any(|k| lib.get(*k).and_then(|v| v.as_bool()) == Some(true))
        })
}

/// Every dependency declaration of a manifest (normal, build and dev; top level and per
/// target).
pub fn declarations(manifest: &toml::Table) -> Vec<Declaration> {
    const TABLES: [&str; 5] = [
        "dependencies",
        "build-dependencies",
        "build_dependencies",
        "dev-dependencies",
        "dev_dependencies",
    ];
    let mut found = Vec::new();
    let mut add = |table: &toml::Table, platform: Option<Platform>| {
        for kind in TABLES {
            let Some(deps) = table.get(kind).and_then(|d| d.as_table()) else {
                continue;
            };
            for (key, value) in deps {
                let package = value
                    .get("package")
                    .and_then(|p| p.as_str())
                    .unwrap_or(key)
                    .to_owned();
                found.push(Declaration {
                    package,
                    platform: platform.clone(),
                    build: kind.starts_with("build"),
                });
            }
        }
    };
    add(manifest, None);
    if let Some(targets) = manifest.get("target").and_then(|t| t.as_table()) {
        for (spec, table) in targets {
            let Some(table) = table.as_table() else {
                continue;
            };
            // An unparsable platform is kept for every platform (never drop what may be needed).
            add(table, Platform::from_str(spec).ok());
        }
    }
    found
}

/// The locked packages some platform in `platforms` needs, starting from the workspace
/// members (the path packages). Host-side edges (see the module documentation) are evaluated
/// for `host_platforms`, which should hold `platforms` too.
pub fn needed_packages(
    lock: &Lockfile,
    platforms: &[TargetPlatform],
    host_platforms: &[TargetPlatform],
    manifests: &Manifests,
) -> BTreeSet<PackageId> {
    reached(lock, platforms, host_platforms, manifests, true)
}

/// The locked packages some platform surely needs, whatever the manifests not known yet say:
/// those [`needed_packages`] reaches through packages whose manifests are known (or never will
/// be: path packages outside the workspace, which keep every dependency either way). Knowing
/// more manifests only removes edges from packages whose manifests were unknown, so each of
/// these stays needed.
pub fn surely_needed(
    lock: &Lockfile,
    platforms: &[TargetPlatform],
    host_platforms: &[TargetPlatform],
    manifests: &Manifests,
) -> BTreeSet<PackageId> {
    reached(lock, platforms, host_platforms, manifests, false)
}

/// [`needed_packages`], following the dependencies of a remote package whose manifest is
/// unknown (all of them) only with `through_unknown`.
fn reached(
    lock: &Lockfile,
    platforms: &[TargetPlatform],
    host_platforms: &[TargetPlatform],
    manifests: &Manifests,
    through_unknown: bool,
) -> BTreeSet<PackageId> {
    let matches = |on: &[TargetPlatform], declaration: &Declaration| match &declaration.platform {
        None => true,
        Some(p) => on.iter().any(|t| t.matches(p)),
    };
    // (package, built for the host)
    let mut seen: BTreeSet<(&PackageId, bool)> = BTreeSet::new();
    let mut queue: VecDeque<(&PackageId, bool)> = lock
        .packages()
        .iter()
        .filter(|p| p.id.source == Source::Path)
        .map(|p| (&p.id, manifests.proc_macros.contains(&p.id)))
        .collect();
    let by_id: std::collections::HashMap<&PackageId, &crate::lock::LockedPackage> =
        lock.packages().iter().map(|p| (&p.id, p)).collect();
    while let Some((id, host)) = queue.pop_front() {
        if !seen.insert((id, host)) {
            continue;
        }
        let Some(package) = by_id.get(id) else {
            continue;
        };
        let decls = manifests.declarations.get(id);
        if decls.is_none() && !through_unknown && id.source != Source::Path {
            continue;
        }
        for dep in &package.dependencies {
            let for_dep: Vec<&Declaration> = match decls {
                None => Vec::new(),
                Some(decls) => decls.iter().filter(|d| d.package == dep.name).collect(),
            };
            // The sides the dependency is built for: the dependent's, or the host for a
            // build-dependency. An unknown manifest, or a lock edge no declaration names
            // (a rename cargo resolved differently), keeps the dependency on the same side.
            let mut sides = Vec::new();
            if for_dep.is_empty() {
                sides.push(host);
            }
            for declaration in for_dep {
                let on_host = host || declaration.build;
                let on = if on_host { host_platforms } else { platforms };
                if matches(on, declaration) {
                    sides.push(on_host);
                }
            }
            for side in sides {
                let side = side || manifests.proc_macros.contains(dep);
                if !seen.contains(&(dep, side)) {
                    queue.push_back((dep, side));
                }
            }
        }
    }
    seen.into_iter().map(|(id, _)| id.clone()).collect()
}

/// The remote packages of `lock` in batches the platform filter can decide one after the
/// other, each from the manifests of the batches before it, so each `.crate` is read once
/// (its manifest read while it is extracted).
///
/// A remote package's batch is one more than the highest batch of the remote packages that
/// depend on it in `Cargo.lock` (path packages, whose manifests `cargo metadata` gives, count
/// as batch 0), so every package on a chain of edges from a workspace member to a package of
/// batch k is in a batch before k, and [`needed_packages`] with only their manifests known
/// answers for batch k exactly as with every manifest. Packages on a cycle (cargo forbids them
/// among remote packages) and below one come last, together: decided with some manifests
/// unknown, which keeps more packages, never fewer.
pub fn batches(lock: &Lockfile) -> Vec<Vec<PackageId>> {
    let remote: BTreeSet<&PackageId> = lock.remote_packages().map(|p| &p.id).collect();
    let mut children: BTreeMap<&PackageId, BTreeSet<&PackageId>> = BTreeMap::new();
    let mut parents: BTreeMap<&PackageId, usize> = remote.iter().map(|id| (*id, 0)).collect();
    for package in lock.remote_packages() {
        let mine = children.entry(&package.id).or_default();
        for dep in &package.dependencies {
            if let Some(&dep) = remote.get(dep)
                && mine.insert(dep)
                && let Some(count) = parents.get_mut(dep)
            {
                *count += 1;
            }
        }
    }
    let mut batch: BTreeMap<&PackageId, usize> = BTreeMap::new();
    let mut ready: VecDeque<&PackageId> = parents
        .iter()
        .filter(|(_, count)| **count == 0)
        .map(|(id, _)| *id)
        .collect();
    for id in &ready {
        batch.insert(*id, 0);
    }
    while let Some(id) = ready.pop_front() {
        let next = batch[id] + 1;
        for child in children.get(id).into_iter().flatten() {
            let level = batch.entry(child).or_insert(next);
            *level = (*level).max(next);
            if let Some(count) = parents.get_mut(child) {
                *count -= 1;
                if *count == 0 {
                    ready.push_back(child);
                }
            }
        }
    }
    let mut out: Vec<Vec<PackageId>> = Vec::new();
    let mut left = Vec::new();
    for id in remote {
        match parents[id] {
            0 => {
                let level = batch[id];
                if out.len() <= level {
                    out.resize_with(level + 1, Vec::new);
                }
                out[level].push(id.clone());
            }
            _ => left.push(id.clone()),
        }
    }
    if !left.is_empty() {
        out.push(left);
    }
    out.retain(|b| !b.is_empty());
    out
}

/// The first line of every stub's `Cargo.toml`, so `verify` and people can tell stubs apart.
pub const STUB_MARKER: &str = "# airlock vendor --platform: stub";

/// `[package]` keys a stub keeps: its identity, and the descriptive fields SBOM and license
/// tools read. Every other key can name a file the stub lacks (`build`, `readme`,
/// `license-file`, `workspace`), a target it lacks (`default-run`: cargo refuses a manifest
/// whose `default-run` names no binary), or needs a build script (`links`: cargo refuses
/// `links` without one), so it goes.
const STUB_PACKAGE_KEYS: [&str; 9] = [
    "name",
    "version",
    "edition",
    "description",
    "license",
    "authors",
    "repository",
    "homepage",
    "documentation",
];

/// Top-level tables a stub keeps as they are. Dependencies (of every kind, per platform too)
/// and features stay so cargo resolves the lockfile exactly as with the sources: features name
/// dependencies, dev-dependencies included (cargo's `build_feature_map` accepts `dev-dep/feat`).
const STUB_TABLES: [&str; 7] = [
    "features",
    "dependencies",
    "build-dependencies",
    "build_dependencies",
    "dev-dependencies",
    "dev_dependencies",
    "target",
];

/// The `Cargo.toml` of a stub for `id`, made from the package's own (normalized) manifest:
/// a manifest cargo parses in every case (`cargo metadata`, `cargo build` of the other
/// packages), with the package's identity, dependencies and features, and one empty library
/// (a proc-macro one when the package is a proc-macro), no build script and no other target.
pub fn stub_manifest(id: &PackageId, original: &[u8], platforms: &[String]) -> Result<String> {
    let text =
        std::str::from_utf8(original).with_context(|| format!("{id}: Cargo.toml is not UTF-8"))?;
    let manifest: toml::Table = text
        .parse()
        .with_context(|| format!("{id}: cannot parse its Cargo.toml"))?;
    let original_package = manifest
        .get("package")
        .and_then(|p| p.as_table())
        .with_context(|| format!("{id}: its Cargo.toml has no [package] table"))?;

    let mut package = toml::Table::new();
    for key in STUB_PACKAGE_KEYS {
        if let Some(value) = original_package.get(key) {
            package.insert(key.into(), value.clone());
        }
    }
    // The stub's own name and version are the locked ones, whatever the manifest says.
    package.insert("name".into(), id.name.as_str().into());
    package.insert("version".into(), id.version.to_string().into());
    // No build script, and no target discovery: the stub's only target is its library.
    package.insert("build".into(), false.into());
    for key in ["autobins", "autoexamples", "autotests", "autobenches"] {
        package.insert(key.into(), false.into());
    }

    let original_lib = manifest.get("lib").and_then(|l| l.as_table());
    let mut lib = toml::Table::new();
    if let Some(name) = original_lib
        .and_then(|l| l.get("name"))
        .and_then(|n| n.as_str())
    {
        lib.insert("name".into(), name.into());
    }
    lib.insert("path".into(), "src/lib.rs".into());
    // A proc-macro stays one, so `cargo metadata` (and every tool reading it) reports the
    // same target kinds with the stub as with the sources.
    if is_proc_macro(&manifest) {
        lib.insert("proc-macro".into(), true.into());
    }

    // Sections in cargo's own order (`[package]` first), each serialized on its own so the
    // output does not depend on the map's key order.
    let mut sections: Vec<(&str, toml::Value)> = Vec::new();
    if let Some(features) = manifest.get("cargo-features") {
        sections.push(("cargo-features", features.clone()));
    }
    sections.push(("package", package.into()));
    sections.push(("lib", lib.into()));
    for key in STUB_TABLES {
        if let Some(value) = manifest.get(key) {
            sections.push((key, value.clone()));
        }
    }
    let mut body = String::new();
    for (key, value) in sections {
        let mut one = toml::Table::new();
        one.insert(key.into(), value);
        let text = toml::to_string(&one).with_context(|| format!("{id}: cannot write its stub"))?;
        if !body.is_empty() {
            body.push('\n');
        }
        body.push_str(&text);
    }
    Ok(format!(
        "{STUB_MARKER} of {} {}; no platform of [{}] needs its sources.\n{body}",
        id.name,
        id.version,
        platforms.join(", ")
    ))
}

/// Whether the package directory `dir` holds a stub: its `Cargo.toml` is a regular file (not a
/// link, a FIFO or a device: the vendor directory is hostile until checked) that starts with
/// [`STUB_MARKER`]. Reads only the marker's length.
pub fn is_stub(dir: &Path) -> bool {
    let Ok(manifest) = open_regular(&dir.join("Cargo.toml"), Links::Refuse) else {
        return false;
    };
    let mut start = Vec::with_capacity(STUB_MARKER.len());
    manifest
        .file
        .take(STUB_MARKER.len() as u64)
        .read_to_end(&mut start)
        .is_ok_and(|_| start == STUB_MARKER.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// rustup's proxy is skipped only as cargo skips it: the `rustc` on `PATH` is rustup
    /// itself, and the toolchain rustup chose has its own `rustc`.
    #[test]
    fn toolchain_rustc_skips_only_rustups_proxy() {
        let temp = tempfile::tempdir().unwrap();
        let bin = temp.path().join("cargo-home/bin");
        let home = temp.path().join("rustup-home");
        let toolchain_bin = home.join("toolchains/1.95.0-x86_64-unknown-linux-gnu/bin");
        let other = temp.path().join("other-bin");
        for dir in [&bin, &toolchain_bin, &other] {
            std::fs::create_dir_all(dir).unwrap();
        }
        std::fs::write(bin.join("rustup"), "rustup").unwrap();
        std::os::unix::fs::symlink("rustup", bin.join("rustc")).unwrap();
        std::fs::write(toolchain_bin.join("rustc"), "rustc").unwrap();
        std::fs::write(other.join("rustc"), "another rustc").unwrap();
        let env = |toolchain: &str, path: &[&Path]| {
            let path = std::env::join_paths(path).unwrap();
            let home = home.clone();
            let toolchain = OsString::from(toolchain);
            move |key: &str| match key {
                "RUSTUP_TOOLCHAIN" => Some(toolchain.clone()),
                "RUSTUP_HOME" => Some(home.clone().into_os_string()),
                "PATH" => Some(path.clone()),
                _ => None,
            }
        };
        assert_eq!(
            toolchain_rustc(env("1.95.0-x86_64-unknown-linux-gnu", &[&bin])),
            Some(toolchain_bin.join("rustc"))
        );
        // A hard link is rustup too.
        std::fs::remove_file(bin.join("rustc")).unwrap();
        std::fs::hard_link(bin.join("rustup"), bin.join("rustc")).unwrap();
        assert_eq!(
            toolchain_rustc(env("1.95.0-x86_64-unknown-linux-gnu", &[&bin])),
            Some(toolchain_bin.join("rustc"))
        );
        // Another rustc first on PATH: cargo runs that one.
        assert_eq!(
            toolchain_rustc(env("1.95.0-x86_64-unknown-linux-gnu", &[&other, &bin])),
            None
        );
        // A toolchain without its own rustc, or named by a path: the proxy decides.
        assert_eq!(toolchain_rustc(env("stable", &[&bin])), None);
        assert_eq!(toolchain_rustc(env("../../x", &[&bin])), None);
        std::fs::create_dir_all(home.join("bin")).unwrap();
        std::fs::write(home.join("bin/rustc"), "not a toolchain's").unwrap();
        assert_eq!(toolchain_rustc(env("..", &[&bin])), None);
        // No rustup in charge.
        assert_eq!(toolchain_rustc(|_: &str| None), None);
    }

    const LINUX: &[&str] = &[
        "target_os=\"linux\"",
        "target_family=\"unix\"",
        "unix",
        "target_arch=\"x86_64\"",
        "target_env=\"gnu\"",
    ];

    #[test]
    fn reads_declarations_with_renames_and_targets() {
        let manifest: toml::Table = r#"
            [dependencies]
            a = "1"
            old = { package = "b", version = "0.1" }
            [target.'cfg(windows)'.dependencies]
            w = "1"
            [target.x86_64-unknown-linux-gnu.build-dependencies]
            l = "1"
        "#
        .parse()
        .unwrap();
        let decls = declarations(&manifest);
        let names: Vec<_> = decls.iter().map(|d| d.package.as_str()).collect();
        assert_eq!(names, ["a", "b", "w", "l"]);
        let linux = TargetPlatform::from_cfg_lines("x86_64-unknown-linux-gnu", LINUX).unwrap();
        assert!(!linux.matches(decls[2].platform.as_ref().unwrap()));
        assert!(linux.matches(decls[3].platform.as_ref().unwrap()));
    }

    #[test]
    fn windows_only_dependencies_are_not_needed_on_linux() {
        let lock = crate::lock::Lockfile::parse(
            r#"version = 4
[[package]]
name = "app"
version = "0.1.0"
dependencies = ["same-file"]

[[package]]
name = "same-file"
version = "1.0.6"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = ["winapi-util"]

[[package]]
name = "winapi-util"
version = "0.1.11"
source = "registry+https://github.com/rust-lang/crates.io-index"
"#,
            Path::new("Cargo.lock"),
        )
        .unwrap();
        let p = lock.packages();
        let mut declared = Manifests::default();
        declared.declarations.insert(
            p[1].id.clone(),
            declarations(
                &"[target.'cfg(windows)'.dependencies]\nwinapi-util = \"0.1\""
                    .parse()
                    .unwrap(),
            ),
        );
        let linux = TargetPlatform::from_cfg_lines("x86_64-unknown-linux-gnu", LINUX).unwrap();
        let needed = needed_packages(
            &lock,
            std::slice::from_ref(&linux),
            std::slice::from_ref(&linux),
            &declared,
        );
        assert!(needed.contains(&p[1].id));
        assert!(!needed.contains(&p[2].id));
        let windows = TargetPlatform::from_cfg_lines(
            "x86_64-pc-windows-msvc",
            &["windows", "target_os=\"windows\""],
        )
        .unwrap();
        assert!(
            needed_packages(
                &lock,
                std::slice::from_ref(&windows),
                std::slice::from_ref(&windows),
                &declared
            )
            .contains(&p[2].id)
        );
        assert_batches_decide_as_with_every_manifest(
            &lock,
            std::slice::from_ref(&linux),
            std::slice::from_ref(&linux),
            &declared,
        );
        // Unknown manifests keep everything.
        let linux = TargetPlatform::from_cfg_lines("x86_64-unknown-linux-gnu", LINUX).unwrap();
        let unknown = Manifests::default();
        assert_eq!(
            needed_packages(
                &lock,
                std::slice::from_ref(&linux),
                std::slice::from_ref(&linux),
                &unknown
            )
            .len(),
            3
        );
    }

    fn stub(original: &str) -> toml::Table {
        let id = crate::vendoring::archive::tests::id("winapi-util", "0.1.11");
        let stub = stub_manifest(
            &id,
            original.as_bytes(),
            &["x86_64-unknown-linux-gnu".into()],
        )
        .unwrap();
        assert!(stub.starts_with(STUB_MARKER), "{stub}");
        stub.parse().unwrap_or_else(|e| panic!("{e}\n{stub}"))
    }

    #[test]
    fn stub_keeps_dependencies_and_features_and_drops_targets() {
        let parsed = stub(
            r#"[package]
name = "winapi-util"
version = "0.1.11"
edition = "2021"
build = "build.rs"
readme = "README.md"
license-file = "LICENSE"
workspace = ".."
default-run = "tool"
links = "w"
include = ["/src"]
autolib = false

[features]
std = ["dep:serde", "serde?/std", "trybuild/diff"]

[lib]
name = "winapi_util"
path = "src/other.rs"
crate-type = ["cdylib"]

[[bin]]
name = "tool"
path = "src/bin/tool.rs"
required-features = ["std"]

[[example]]
name = "e"
path = "examples/e.rs"

[[bench]]
name = "b"

[dependencies.serde]
version = "1"
optional = true

[dev-dependencies.trybuild]
version = "1"

[target.'cfg(windows)'.dependencies.windows-sys]
version = "0.61"

[badges.maintenance]
status = "passively-maintained"

[lints.rust]
unsafe_code = "forbid"
"#,
        );
        let package = parsed["package"].as_table().unwrap();
        let keys: Vec<&str> = package.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "autobenches",
                "autobins",
                "autoexamples",
                "autotests",
                "build",
                "edition",
                "name",
                "version"
            ]
        );
        assert_eq!(package["build"].as_bool(), Some(false));
        let lib = parsed["lib"].as_table().unwrap();
        assert_eq!(lib.len(), 2, "{lib:?}");
        assert_eq!(lib["path"].as_str(), Some("src/lib.rs"));
        assert_eq!(lib["name"].as_str(), Some("winapi_util"));
        for gone in ["bin", "example", "bench", "test", "badges", "lints"] {
            assert!(parsed.get(gone).is_none(), "{gone} kept");
        }
        assert_eq!(
            parsed["features"]["std"].as_array().unwrap().len(),
            3,
            "features stay as they are"
        );
        assert!(parsed["dependencies"]["serde"].is_table());
        assert!(parsed["dev-dependencies"]["trybuild"].is_table());
        assert!(parsed["target"]["cfg(windows)"]["dependencies"]["windows-sys"].is_table());
    }

    /// Build-dependencies, and everything below a build-dependency or a proc-macro, are built
    /// for the host: cargo evaluates their `cfg` for the host, not for the kept platform.
    #[test]
    fn host_side_dependencies_are_evaluated_for_the_host() {
        let lock = crate::lock::Lockfile::parse(
            r#"version = 4
[[package]]
name = "app"
version = "0.1.0"
dependencies = ["gnu-only", "macros", "sys"]

[[package]]
name = "gnu-only"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "macros"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = ["macro-helper"]

[[package]]
name = "macro-helper"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "sys"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = ["build-helper"]

[[package]]
name = "build-helper"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = ["build-helper-dep"]

[[package]]
name = "build-helper-dep"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
"#,
            Path::new("Cargo.lock"),
        )
        .unwrap();
        let id = |name: &str| {
            lock.packages()
                .iter()
                .find(|p| p.id.name == name)
                .unwrap()
                .id
                .clone()
        };
        let gnu = "[target.'cfg(target_env = \"gnu\")'";
        let mut manifests = Manifests::default();
        for (package, manifest) in [
            (
                "app",
                format!(
                    "{gnu}.dependencies]\ngnu-only = \"1\"\n[dependencies]\nmacros = \"1\"\nsys = \"1\""
                ),
            ),
            (
                "macros",
                format!("[lib]\nproc-macro = true\n{gnu}.dependencies]\nmacro-helper = \"1\""),
            ),
            (
                "sys",
                format!("{gnu}.build-dependencies]\nbuild-helper = \"1\""),
            ),
            (
                "build-helper",
                format!("{gnu}.dependencies]\nbuild-helper-dep = \"1\""),
            ),
        ] {
            let table: toml::Table = manifest.parse().unwrap();
            if is_proc_macro(&table) {
                manifests.proc_macros.insert(id(package));
            }
            manifests
                .declarations
                .insert(id(package), declarations(&table));
        }
        let musl = TargetPlatform::from_cfg_lines(
            "x86_64-unknown-linux-musl",
            &["target_os=\"linux\"", "target_env=\"musl\""],
        )
        .unwrap();
        let gnu_host = TargetPlatform::from_cfg_lines(
            "x86_64-unknown-linux-gnu",
            &["target_os=\"linux\"", "target_env=\"gnu\""],
        )
        .unwrap();
        let names = |needed: BTreeSet<PackageId>| -> Vec<String> {
            needed.into_iter().map(|p| p.name).collect()
        };
        let on_gnu_host = needed_packages(
            &lock,
            std::slice::from_ref(&musl),
            &[musl.clone(), gnu_host.clone()],
            &manifests,
        );
        assert_eq!(
            names(on_gnu_host),
            [
                "app",
                "build-helper",
                "build-helper-dep",
                "macro-helper",
                "macros",
                "sys"
            ]
        );
        let on_musl_host = needed_packages(
            &lock,
            std::slice::from_ref(&musl),
            std::slice::from_ref(&musl),
            &manifests,
        );
        assert_eq!(names(on_musl_host), ["app", "macros", "sys"]);
        assert_eq!(
            batches(&lock),
            [
                vec![id("gnu-only"), id("macros"), id("sys")],
                vec![id("build-helper"), id("macro-helper")],
                vec![id("build-helper-dep")],
            ]
        );
        for host in [&gnu_host, &musl] {
            let hosts = [musl.clone(), host.clone()];
            assert_batches_decide_as_with_every_manifest(
                &lock,
                std::slice::from_ref(&musl),
                &hosts,
                &manifests,
            );
        }
    }

    /// Deciding batch after batch, each from the manifests of the members and of the batches
    /// before it (those `vendor` has read by then), keeps exactly what every manifest keeps.
    fn assert_batches_decide_as_with_every_manifest(
        lock: &Lockfile,
        platforms: &[TargetPlatform],
        host_platforms: &[TargetPlatform],
        manifests: &Manifests,
    ) {
        let all = needed_packages(lock, platforms, host_platforms, manifests);
        let mut known = Manifests::default();
        let learn = |known: &mut Manifests, id: &PackageId| {
            if let Some(decls) = manifests.declarations.get(id) {
                known.declarations.insert(id.clone(), decls.clone());
            }
            if manifests.proc_macros.contains(id) {
                known.proc_macros.insert(id.clone());
            }
        };
        let mut decided = BTreeSet::new();
        for member in lock
            .packages()
            .iter()
            .filter(|p| p.id.source == Source::Path)
        {
            learn(&mut known, &member.id);
            decided.insert(member.id.clone());
        }
        let batches = batches(lock);
        assert_eq!(
            batches.iter().map(Vec::len).sum::<usize>(),
            lock.remote_packages().count()
        );
        for batch in batches {
            let needed = needed_packages(lock, platforms, host_platforms, &known);
            // What is surely needed with some manifests unknown stays needed with all known.
            let surely = surely_needed(lock, platforms, host_platforms, &known);
            assert!(surely.is_subset(&all), "{surely:?} not within {all:?}");
            for id in &batch {
                if needed.contains(id) {
                    decided.insert(id.clone());
                }
            }
            for id in &batch {
                learn(&mut known, id);
            }
        }
        assert_eq!(decided, all);
    }

    #[test]
    fn a_package_comes_after_every_package_that_depends_on_it() {
        // app -> a -> b -> c, and a -> c directly: c waits for b. `orphan` has no dependent.
        let lock = crate::lock::Lockfile::parse(
            r#"version = 4
[[package]]
name = "app"
version = "0.1.0"
dependencies = ["a"]

[[package]]
name = "a"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = ["b", "c"]

[[package]]
name = "b"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = ["c"]

[[package]]
name = "c"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "orphan"
version = "1.0.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
"#,
            Path::new("Cargo.lock"),
        )
        .unwrap();
        let names: Vec<Vec<String>> = batches(&lock)
            .into_iter()
            .map(|b| b.into_iter().map(|id| id.name).collect())
            .collect();
        assert_eq!(names, [vec!["a", "orphan"], vec!["b"], vec!["c"]]);
    }

    #[test]
    fn stub_keeps_a_proc_macro_and_puts_package_first() {
        let id = crate::vendoring::archive::tests::id("wasm-bindgen-macro", "0.2.130");
        let stub = stub_manifest(
            &id,
            b"[dependencies.quote]\nversion = \"1\"\n\n[lib]\nproc_macro = true\n\n\
              [package]\nname = \"wasm-bindgen-macro\"\nversion = \"0.2.130\"\n",
            &[],
        )
        .unwrap();
        let mut lines = stub.lines();
        assert!(lines.next().unwrap().starts_with(STUB_MARKER));
        assert_eq!(lines.next(), Some("[package]"), "{stub}");
        let parsed: toml::Table = stub.parse().unwrap();
        assert_eq!(parsed["lib"]["proc-macro"].as_bool(), Some(true));
        assert!(parsed["lib"].get("proc_macro").is_none());
    }

    #[test]
    fn only_a_regular_manifest_starting_with_the_marker_is_a_stub() {
        let root = tempfile::tempdir().unwrap();
        let dir = |name: &str| {
            let dir = root.path().join(name);
            std::fs::create_dir(&dir).unwrap();
            dir
        };
        let stub = dir("stub");
        std::fs::write(
            stub.join("Cargo.toml"),
            format!("{STUB_MARKER} of x 1.0.0\n"),
        )
        .unwrap();
        assert!(is_stub(&stub));
        let full = dir("full");
        std::fs::write(full.join("Cargo.toml"), "[package]\n").unwrap();
        assert!(!is_stub(&full));
        let link = dir("link");
        std::os::unix::fs::symlink(stub.join("Cargo.toml"), link.join("Cargo.toml")).unwrap();
        assert!(!is_stub(&link), "a link is never read");
        let fifo = dir("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            fifo.join("Cargo.toml"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
            0,
        )
        .unwrap();
        assert!(!is_stub(&fifo), "a FIFO is never read (it would block)");
        assert!(!is_stub(&dir("empty")));
    }

    #[test]
    fn stub_of_a_manifest_without_package_is_an_error() {
        let id = crate::vendoring::archive::tests::id("winapi-util", "0.1.11");
        let err = stub_manifest(&id, b"[lib]\n", &[]).unwrap_err();
        assert!(format!("{err:#}").contains("winapi-util"), "{err:#}");
    }
}
