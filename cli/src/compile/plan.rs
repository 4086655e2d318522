//! What to build: the workspace's binary targets chosen by `--package` / `--bin`, and, per
//! target, the resolved dependency graph (`cargo metadata --filter-platform`) that says
//! whether C code gets compiled and which `-sys` crate links a given system library.
//!
//! Reads metadata only; never builds.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::path::Path;

use anyhow::Result;
use cargo_metadata::{CargoOpt, DependencyKind, Metadata, MetadataCommand, Package, PackageId};

use super::BuildOptions;
use super::env::CargoEnv;
use crate::error;
use crate::target::TargetTriple;
use crate::workspace::Workspace;

/// One binary target to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedBinary {
    /// The `[[bin]]` name.
    pub name: String,
    /// Its package's name.
    pub package: String,
    /// Its package's version.
    pub version: String,
    /// Its package's id.
    pub package_id: PackageId,
}

/// The binaries to build, and how to ask cargo for them.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Sorted by package, then name.
    pub binaries: Vec<PlannedBinary>,
    /// Whether every binary of the chosen packages is wanted (`--bins`), or only those named.
    pub all_bins: bool,
}

impl Plan {
    /// The chosen packages' names, sorted, without duplicates.
    pub fn packages(&self) -> Vec<&str> {
        let set: BTreeSet<&str> = self.binaries.iter().map(|b| b.package.as_str()).collect();
        set.into_iter().collect()
    }

    /// The chosen packages' ids.
    pub fn package_ids(&self) -> Vec<&PackageId> {
        let mut ids: Vec<&PackageId> = self.binaries.iter().map(|b| &b.package_id).collect();
        ids.sort();
        ids.dedup();
        ids
    }
}

/// Chooses the binaries: every member's `[[bin]]` targets, narrowed by `packages` (names or
/// `name@version`) and `bins`. Unknown names and an empty result are input errors that list
/// what exists.
pub fn select(workspace: &Workspace, packages: &[String], bins: &[String]) -> Result<Plan> {
    let members = workspace.members();
    let root = workspace.root().display();
    let chosen: Vec<&Package> = if packages.is_empty() {
        members.clone()
    } else {
        let mut chosen = Vec::new();
        for spec in packages {
            let (name, version) = match spec.split_once('@') {
                Some((name, version)) => (name, Some(version)),
                None => (spec.as_str(), None),
            };
            let found = members.iter().find(|p| {
                p.name.as_str() == name && version.is_none_or(|v| p.version.to_string() == v)
            });
            let Some(package) = found else {
                let names: Vec<&str> = members.iter().map(|p| p.name.as_str()).collect();
                return Err(error::input(format!(
                    "package `{spec}` is not a member of the workspace at {root} (members: {})",
                    names.join(", ")
                )));
            };
            if !package.targets.iter().any(|t| t.is_bin()) {
                return Err(error::input(format!(
                    "package `{}` has no binary targets; airlock builds `[[bin]]` targets",
                    package.name
                )));
            }
            chosen.push(*package);
        }
        chosen
    };

    let mut binaries: Vec<PlannedBinary> = Vec::new();
    for package in &chosen {
        for target in package.targets.iter().filter(|t| t.is_bin()) {
            if bins.is_empty() || bins.contains(&target.name) {
                binaries.push(PlannedBinary {
                    name: target.name.clone(),
                    package: package.name.to_string(),
                    version: package.version.to_string(),
                    package_id: package.id.clone(),
                });
            }
        }
    }
    let available = || {
        let names: Vec<String> = chosen
            .iter()
            .flat_map(|p| p.targets.iter().filter(|t| t.is_bin()))
            .map(|t| t.name.clone())
            .collect();
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    for bin in bins {
        if !binaries.iter().any(|b| &b.name == bin) {
            return Err(error::input(format!(
                "no binary `{bin}` in the workspace at {root} (binaries: {})",
                available()
            )));
        }
    }
    if binaries.is_empty() {
        return Err(error::input(format!(
            "the workspace at {root} has no binary targets; airlock builds `[[bin]]` targets \
             (add src/main.rs or a [[bin]] section)"
        )));
    }
    binaries.sort_by(|a, b| (&a.package, &a.name).cmp(&(&b.package, &b.name)));
    binaries.dedup();
    Ok(Plan {
        binaries,
        all_bins: bins.is_empty(),
    })
}

/// The resolved dependency graph for one target, with the features of the build.
#[derive(Debug, Clone)]
pub struct DependencyGraph {
    metadata: Metadata,
    by_id: HashMap<PackageId, usize>,
}

/// Crates that compile C code in their build scripts.
const C_BUILD_CRATES: &[&str] = &["cc", "cmake"];

impl DependencyGraph {
    /// Runs `cargo metadata --filter-platform <target>` with the build's features and
    /// `--locked/--frozen/--offline`, on `manifest_path` or the current directory's package,
    /// in `env` (the build's target flags, [`super::env::rustflags`], so that cargo's probe of
    /// the target is the one the build reuses).
    pub fn load(
        manifest_path: Option<&Path>,
        target: &TargetTriple,
        options: &BuildOptions,
        env: &CargoEnv,
    ) -> Result<DependencyGraph> {
        let mut cmd = MetadataCommand::new();
        env.apply_to_metadata(&mut cmd);
        if let Some(path) = manifest_path {
            cmd.manifest_path(path);
        }
        if !options.features.is_empty() {
            cmd.features(CargoOpt::SomeFeatures(options.features.clone()));
        }
        if options.all_features {
            cmd.features(CargoOpt::AllFeatures);
        }
        if options.no_default_features {
            cmd.features(CargoOpt::NoDefaultFeatures);
        }
        let mut other = vec!["--filter-platform".to_owned(), target.to_string()];
        for (flag, on) in [
            ("--locked", options.locked),
            ("--frozen", options.frozen),
            ("--offline", options.offline),
        ] {
            if on {
                other.push(flag.to_owned());
            }
        }
        cmd.other_options(other);
        let metadata = cmd.exec().map_err(|e| {
            let place = manifest_path.map_or_else(
                || "the current directory's workspace".to_owned(),
                |p| p.display().to_string(),
            );
            anyhow::anyhow!("cannot resolve the dependencies of {place} for {target}: {e}")
        })?;
        Ok(DependencyGraph::new(metadata))
    }

    /// Wraps already loaded metadata (with its `resolve` graph).
    pub fn new(metadata: Metadata) -> DependencyGraph {
        let by_id = metadata
            .packages
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i))
            .collect();
        DependencyGraph { metadata, by_id }
    }

    /// The metadata behind the graph.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    fn package(&self, id: &PackageId) -> Option<&Package> {
        self.by_id.get(id).map(|&i| &self.metadata.packages[i])
    }

    /// Every package reachable from `roots` through normal and build dependencies (what
    /// building them compiles), with the path from a root.
    fn reachable(
        &self,
        roots: &[&PackageId],
        build_deps: bool,
    ) -> HashMap<PackageId, Vec<PackageId>> {
        let mut paths: HashMap<PackageId, Vec<PackageId>> = HashMap::new();
        let Some(resolve) = &self.metadata.resolve else {
            return paths;
        };
        let nodes: HashMap<&PackageId, &cargo_metadata::Node> =
            resolve.nodes.iter().map(|n| (&n.id, n)).collect();
        let mut queue: VecDeque<PackageId> = VecDeque::new();
        for root in roots {
            paths.insert((*root).clone(), vec![(*root).clone()]);
            queue.push_back((*root).clone());
        }
        while let Some(id) = queue.pop_front() {
            let Some(node) = nodes.get(&id) else { continue };
            let path = paths.get(&id).cloned().unwrap_or_default();
            for dep in &node.deps {
                let followed = dep.dep_kinds.iter().any(|k| match k.kind {
                    DependencyKind::Normal => true,
                    DependencyKind::Build => build_deps,
                    _ => false,
                }) || dep.dep_kinds.is_empty();
                if followed && !paths.contains_key(&dep.pkg) {
                    let mut next = path.clone();
                    next.push(dep.pkg.clone());
                    paths.insert(dep.pkg.clone(), next);
                    queue.push_back(dep.pkg.clone());
                }
            }
        }
        paths
    }

    /// The crates among the dependencies of `roots` that compile C code (`cc`, `cmake`),
    /// by name and version, sorted.
    pub fn c_build_crates(&self, roots: &[&PackageId]) -> Vec<String> {
        let mut found: Vec<String> = self
            .reachable(roots, true)
            .keys()
            .filter_map(|id| self.package(id))
            .filter(|p| C_BUILD_CRATES.contains(&p.name.as_str()))
            .map(|p| format!("{} {}", p.name, p.version))
            .collect();
        found.sort();
        found
    }

    /// Which crates linked into `root` declare `links` for the system library `library`
    /// (`libssl.so.3` → openssl-sys's `links = "openssl"`), each with the dependency path
    /// that pulls it in (`app → reqwest → native-tls → openssl-sys`).
    pub fn culprits(&self, root: &PackageId, library: &str) -> Vec<String> {
        let wanted = links_names(library);
        let reachable = self.reachable(&[root], false);
        let mut found: Vec<String> = reachable
            .iter()
            .filter_map(|(id, path)| {
                let package = self.package(id)?;
                let links = package.links.as_deref()?;
                wanted.iter().any(|w| w == links).then(|| {
                    let chain: Vec<String> = path
                        .iter()
                        .filter_map(|p| self.package(p).map(|p| p.name.to_string()))
                        .collect();
                    format!(
                        "{library} comes from {} {} (links = \"{links}\"), pulled in by {}",
                        package.name,
                        package.version,
                        chain.join(" → ")
                    )
                })
            })
            .collect();
        found.sort();
        found
    }
}

/// The `links` values that stand for a shared library: `libz.so.1` → `z`, and the names
/// well-known `-sys` crates use (`libssl` / `libcrypto` → `openssl`).
pub fn links_names(library: &str) -> Vec<String> {
    let stem = library.split(".so").next().unwrap_or(library);
    let bare = stem.strip_prefix("lib").unwrap_or(stem);
    let mut names = vec![bare.to_owned()];
    let aliases: &[(&str, &str)] = &[
        ("ssl", "openssl"),
        ("crypto", "openssl"),
        ("sqlite3", "sqlite3"),
        ("dbus-1", "dbus"),
        ("pq", "pq"),
        ("curl", "curl"),
        ("git2", "git2"),
        ("ssh2", "ssh2"),
        ("zstd", "zstd"),
        ("lzma", "lzma"),
        ("bz2", "bzip2"),
        ("udev", "udev"),
        ("systemd", "systemd"),
        ("asound", "alsa"),
    ];
    names.extend(
        aliases
            .iter()
            .filter(|(lib, _)| *lib == bare)
            .map(|(_, links)| (*links).to_owned()),
    );
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A three-package graph: app → tls → openssl-sys (links = "openssl"), app builds with cc.
    fn graph() -> DependencyGraph {
        let pkg = |name: &str, links: Option<&str>| {
            serde_json::json!({
                "name": name, "version": "1.0.0", "id": format!("{name} 1.0.0"),
                "source": null, "dependencies": [], "targets": [], "features": {},
                "manifest_path": format!("/ws/{name}/Cargo.toml"), "links": links,
                "authors": [], "categories": [], "keywords": [], "edition": "2021",
            })
        };
        let dep = |name: &str, kind: Option<&str>| {
            serde_json::json!({
                "name": name, "pkg": format!("{name} 1.0.0"),
                "dep_kinds": [{"kind": kind, "target": null}],
            })
        };
        let node = |name: &str, deps: Vec<serde_json::Value>| {
            let ids: Vec<String> = deps
                .iter()
                .map(|d| d["pkg"].as_str().unwrap().to_owned())
                .collect();
            serde_json::json!({"id": format!("{name} 1.0.0"), "deps": deps, "dependencies": ids, "features": []})
        };
        let metadata = serde_json::json!({
            "packages": [pkg("app", None), pkg("tls", None), pkg("openssl-sys", Some("openssl")), pkg("cc", None)],
            "workspace_members": ["app 1.0.0"],
            "workspace_default_members": ["app 1.0.0"],
            "resolve": {"nodes": [
                node("app", vec![dep("tls", None), dep("cc", Some("build"))]),
                node("tls", vec![dep("openssl-sys", None)]),
                node("openssl-sys", vec![]),
                node("cc", vec![]),
            ], "root": "app 1.0.0"},
            "target_directory": "/ws/target",
            "build_directory": "/ws/target",
            "version": 1,
            "workspace_root": "/ws",
            "metadata": null,
        });
        DependencyGraph::new(serde_json::from_value(metadata).unwrap())
    }

    #[test]
    fn names_the_sys_crate_and_its_path() {
        let graph = graph();
        let app = PackageId {
            repr: "app 1.0.0".into(),
        };
        let culprits = graph.culprits(&app, "libssl.so.3");
        assert_eq!(
            culprits,
            [
                "libssl.so.3 comes from openssl-sys 1.0.0 (links = \"openssl\"), pulled in by app → tls → openssl-sys"
            ]
        );
        assert!(graph.culprits(&app, "libz.so.1").is_empty());
        assert_eq!(graph.c_build_crates(&[&app]), ["cc 1.0.0"]);
        let tls = PackageId {
            repr: "tls 1.0.0".into(),
        };
        assert!(graph.c_build_crates(&[&tls]).is_empty());
    }

    #[test]
    fn library_names_map_to_links_keys() {
        assert_eq!(links_names("libz.so.1"), ["z"]);
        assert_eq!(links_names("libcrypto.so.3"), ["crypto", "openssl"]);
        assert_eq!(links_names("libdbus-1.so.3"), ["dbus-1", "dbus"]);
    }
}
