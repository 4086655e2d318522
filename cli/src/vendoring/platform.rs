//! `--platform`: which locked packages some target platform needs, and the stubs that stand in
//! for the others.
//!
//! A package is needed when a chain of dependency edges from a workspace member reaches it and
//! every edge is declared for a platform that matches (no `[target.'cfg(…)']` table, or one
//! whose triple or `cfg` expression matches the platform's `rustc --print cfg`). Edges come
//! from `Cargo.lock`, which holds every feature's dependencies, so the result is a superset of
//! what any feature selection builds.
//!
//! A package no platform needs is replaced by a stub (as cargo-vendor-filterer does): its own
//! manifest with every target but an empty library removed, and the package checksum kept, so
//! `cargo build --offline --frozen` still resolves the whole lockfile without its sources.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::process::Command;
use std::str::FromStr;

use anyhow::{Context, Result};
use cargo_metadata::cargo_platform::{Cfg, Platform};

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
    /// Asks `rustc --print cfg --target TRIPLE` for the platform's `cfg` values.
    pub fn query(triple: &str) -> Result<TargetPlatform> {
        let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
        let output = process::run_captured(
            Command::new(rustc).args(["--print", "cfg", "--target", triple]),
        )
        .map_err(|e| {
            crate::error::input(format!(
                "rustc does not know the target `{triple}` ({e:#}); see `rustc --print target-list`"
            ))
        })?;
        let text = String::from_utf8_lossy(&output.stdout);
        let cfgs = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(Cfg::from_str)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("cannot parse `rustc --print cfg --target {triple}`"))?;
        Ok(TargetPlatform {
            triple: triple.to_owned(),
            cfgs,
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

/// One dependency declaration of a manifest: the package it names and the platform table it
/// sits under (None: every platform).
#[derive(Debug, Clone, PartialEq)]
pub struct Declaration {
    /// The dependency's package name (after `package = …` renames).
    pub package: String,
    /// `[target.<platform>.…]`, if any.
    pub platform: Option<Platform>,
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
/// members (the path packages). `declared` gives a package's dependency declarations; None
/// (unknown manifest) keeps every locked dependency of that package.
pub fn needed_packages(
    lock: &Lockfile,
    platforms: &[TargetPlatform],
    declared: &BTreeMap<PackageId, Vec<Declaration>>,
) -> BTreeSet<PackageId> {
    let mut needed = BTreeSet::new();
    let mut queue: VecDeque<&PackageId> = lock
        .packages()
        .iter()
        .filter(|p| p.id.source == Source::Path)
        .map(|p| &p.id)
        .collect();
    while let Some(id) = queue.pop_front() {
        if !needed.insert(id.clone()) {
            continue;
        }
        let Some(package) = lock.get(id) else {
            continue;
        };
        let decls = declared.get(id);
        for dep in &package.dependencies {
            let keep = match decls {
                None => true,
                Some(decls) => {
                    let mut for_dep = decls.iter().filter(|d| d.package == dep.name).peekable();
                    // A lock edge with no matching declaration (renames cargo resolved
                    // differently) is kept.
                    for_dep.peek().is_none()
                        || for_dep.any(|d| match &d.platform {
                            None => true,
                            Some(p) => platforms.iter().any(|t| t.matches(p)),
                        })
                }
            };
            if keep && !needed.contains(dep) {
                queue.push_back(dep);
            }
        }
    }
    needed
}

/// The first line of every stub's `Cargo.toml`, so `verify` and people can tell stubs apart.
pub const STUB_MARKER: &str = "# airlock vendor --platform: stub";

/// The `Cargo.toml` of a stub for `id`, made from the package's own (normalized) manifest:
/// dependencies and features stay (so the lockfile still resolves), every target and the
/// build script go, and an empty library takes their place.
pub fn stub_manifest(id: &PackageId, original: &[u8], platforms: &[String]) -> Result<String> {
    let text =
        std::str::from_utf8(original).with_context(|| format!("{id}: Cargo.toml is not UTF-8"))?;
    let mut manifest: toml::Table = text
        .parse()
        .with_context(|| format!("{id}: cannot parse its Cargo.toml"))?;
    for key in ["bin", "example", "test", "bench"] {
        manifest.remove(key);
    }
    let mut lib = toml::Table::new();
    if let Some(name) = manifest
        .get("lib")
        .and_then(|l| l.get("name"))
        .and_then(|n| n.as_str())
    {
        lib.insert("name".into(), name.into());
    }
    lib.insert("path".into(), "src/lib.rs".into());
    manifest.insert("lib".into(), lib.into());
    if let Some(package) = manifest.get_mut("package").and_then(|p| p.as_table_mut()) {
        package.insert("build".into(), false.into());
        for key in ["readme", "license-file", "workspace", "include", "exclude"] {
            package.remove(key);
        }
    }
    let body = toml::to_string(&manifest).with_context(|| format!("{id}: cannot write stub"))?;
    Ok(format!(
        "{STUB_MARKER} of {} {}; no platform of [{}] needs its sources.\n{body}",
        id.name,
        id.version,
        platforms.join(", ")
    ))
}

/// Whether the package directory `dir` holds a stub.
pub fn is_stub(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|t| t.starts_with(STUB_MARKER))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut declared = BTreeMap::new();
        declared.insert(
            p[1].id.clone(),
            declarations(
                &"[target.'cfg(windows)'.dependencies]\nwinapi-util = \"0.1\""
                    .parse()
                    .unwrap(),
            ),
        );
        let linux = TargetPlatform::from_cfg_lines("x86_64-unknown-linux-gnu", LINUX).unwrap();
        let needed = needed_packages(&lock, &[linux], &declared);
        assert!(needed.contains(&p[1].id));
        assert!(!needed.contains(&p[2].id));
        let windows = TargetPlatform::from_cfg_lines(
            "x86_64-pc-windows-msvc",
            &["windows", "target_os=\"windows\""],
        )
        .unwrap();
        assert!(needed_packages(&lock, &[windows], &declared).contains(&p[2].id));
        // Unknown manifests keep everything.
        let linux = TargetPlatform::from_cfg_lines("x86_64-unknown-linux-gnu", LINUX).unwrap();
        assert_eq!(needed_packages(&lock, &[linux], &BTreeMap::new()).len(), 3);
    }

    #[test]
    fn stub_keeps_dependencies_and_drops_targets() {
        let id = crate::vendoring::archive::tests::id("winapi-util", "0.1.11");
        let stub = stub_manifest(
            &id,
            br#"[package]
name = "winapi-util"
version = "0.1.11"
build = "build.rs"
readme = "README.md"
links = "w"

[lib]
name = "winapi_util"
path = "src/other.rs"

[[bench]]
name = "b"

[target.'cfg(windows)'.dependencies.windows-sys]
version = "0.61"
"#,
            &["x86_64-unknown-linux-gnu".into()],
        )
        .unwrap();
        assert!(stub.starts_with(STUB_MARKER));
        let parsed: toml::Table = stub.parse().unwrap();
        assert_eq!(parsed["package"]["build"].as_bool(), Some(false));
        assert_eq!(parsed["package"]["links"].as_str(), Some("w"));
        assert!(parsed["package"].get("readme").is_none());
        assert_eq!(parsed["lib"]["path"].as_str(), Some("src/lib.rs"));
        assert_eq!(parsed["lib"]["name"].as_str(), Some("winapi_util"));
        assert!(parsed.get("bench").is_none());
        assert!(parsed["target"]["cfg(windows)"]["dependencies"]["windows-sys"].is_table());
    }
}
