//! The dependency list of each binary, embedded after linking: the packages compiled into it
//! for its target, from the same resolved, feature-aware graph the build used (`cargo metadata
//! --filter-platform` with the build's features), written as a `.dep-v0` section in
//! cargo-auditable's format (see [`crate::elf::deps`]).
//!
//! cargo-auditable gets the section in by wrapping rustc and linking an extra object file;
//! airlock adds it to the linked ELF instead, in process: streamed from cargo's output with
//! the section appended ([`crate::elf::append`]), in bounded memory whatever the binary's
//! size, else (a layout that cannot stream, a section already there) with `object`'s builder.
//! No wrapper, no second `cargo metadata` per crate, nothing changed in cargo's own output,
//! and the same binary and list always give the same bytes. It never runs cargo and never
//! reads the network.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use anyhow::{Context, Result};
use cargo_metadata::{DependencyKind, Node, PackageId, TargetKind};
use object::build::elf::SectionData;

use super::plan::DependencyGraph;
use crate::elf;
use crate::elf::deps::{self, DepKind, DepList, DepPackage};

/// cargo metadata's spelling of crates.io, whichever protocol fetched it.
const CRATES_IO: &[&str] = &[
    "registry+https://github.com/rust-lang/crates.io-index",
    "sparse+https://index.crates.io/",
];

/// The strongest way an edge is followed when building the binary: `None` for an edge that is
/// only a dev-dependency (never compiled into a binary). An edge without kinds comes from a
/// cargo older than 1.41, which only listed normal edges that way.
fn edge_kind(dep: &cargo_metadata::NodeDep) -> Option<DepKind> {
    if dep.dep_kinds.is_empty() {
        return Some(DepKind::Runtime);
    }
    dep.dep_kinds
        .iter()
        .filter_map(|k| match k.kind {
            DependencyKind::Normal => Some(DepKind::Runtime),
            DependencyKind::Build => Some(DepKind::Build),
            _ => None,
        })
        .max()
}

/// The list cargo-auditable would embed in a binary of package `root`: every package reachable
/// through normal and build edges, a package marked `build` when every path to it goes through
/// a build-dependency or a proc-macro (which run at build time, whatever the edge says).
pub fn dep_list(graph: &DependencyGraph, root: &PackageId) -> Result<DepList> {
    let metadata = graph.metadata();
    let resolve = metadata
        .resolve
        .as_ref()
        .context("cargo metadata returned no dependency graph")?;
    let nodes: HashMap<&PackageId, &Node> = resolve.nodes.iter().map(|n| (&n.id, n)).collect();
    let proc_macros: HashSet<&PackageId> = metadata
        .packages
        .iter()
        .filter(|p| {
            p.targets
                .iter()
                .any(|t| t.kind.contains(&TargetKind::ProcMacro))
        })
        .map(|p| &p.id)
        .collect();

    // Breadth first; a package seen again through a stronger path is visited again so the
    // strength reaches its own dependencies.
    let mut kinds: HashMap<&PackageId, DepKind> = HashMap::from([(root, DepKind::Runtime)]);
    let mut queue: VecDeque<&PackageId> = VecDeque::from([root]);
    while let Some(id) = queue.pop_front() {
        let parent = kinds[id];
        let Some(node) = nodes.get(id) else { continue };
        for dep in &node.deps {
            let Some(mut kind) = edge_kind(dep) else {
                continue;
            };
            kind = kind.min(parent);
            if proc_macros.contains(&dep.pkg) {
                kind = DepKind::Build;
            }
            if kinds.get(&dep.pkg).is_none_or(|seen| kind > *seen) {
                kinds.insert(&dep.pkg, kind);
                queue.push_back(&dep.pkg);
            }
        }
    }

    let mut packages: Vec<&cargo_metadata::Package> = metadata
        .packages
        .iter()
        .filter(|p| kinds.contains_key(&p.id))
        .collect();
    packages.sort_by(|a, b| {
        (a.name.as_str(), &a.version, &a.id.repr).cmp(&(b.name.as_str(), &b.version, &b.id.repr))
    });
    let index: BTreeMap<&PackageId, usize> = packages
        .iter()
        .enumerate()
        .map(|(i, p)| (&p.id, i))
        .collect();
    let list = packages
        .iter()
        .map(|p| {
            let mut dependencies: Vec<usize> = nodes
                .get(&p.id)
                .map(|node| {
                    node.deps
                        .iter()
                        .filter(|d| edge_kind(d).is_some())
                        .filter_map(|d| index.get(&d.pkg).copied())
                        .collect()
                })
                .unwrap_or_default();
            dependencies.sort_unstable();
            dependencies.dedup();
            DepPackage {
                name: p.name.to_string(),
                version: p.version.to_string(),
                source: source_kind(p.source.as_ref().map(|s| s.repr.as_str())),
                kind: kinds[&p.id],
                dependencies,
                root: &p.id == root,
            }
        })
        .collect();
    Ok(DepList {
        packages: list,
        format: deps::FORMAT,
    })
}

/// cargo-auditable's source names: `crates.io`, `local` for path packages, else the kind
/// before the `+` of cargo's source id (`git`, `registry`, `sparse`).
fn source_kind(source: Option<&str>) -> String {
    match source {
        None => "local".to_owned(),
        Some(s) if CRATES_IO.contains(&s) => "crates.io".to_owned(),
        Some(s) => s.split('+').next().unwrap_or(s).to_owned(),
    }
}

/// Writes the ELF file at `from` to `out` with `list` in its `.dep-v0` section: streamed where
/// [`elf::append::append_section`] can, else read whole and rewritten by [`embed`] (with a
/// `-v` note saying why).
pub fn embed_file(
    from: &std::path::Path,
    list: &DepList,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let compressed = list.encode()?;
    let file = crate::input::open_regular(from, crate::input::Links::Follow)?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file.file);
    match elf::append::append_section(&mut reader, deps::SECTION_NAME, &compressed, out)
        .with_context(|| format!("cannot read {}", from.display()))?
    {
        elf::append::Appended::Written => Ok(()),
        elf::append::Appended::Fallback(why) => {
            crate::progress::detail(format!(
                "{}: dependency list embedded in memory, not streamed: {why}",
                from.display()
            ));
            let embedded = embed(&elf::read_binary(from)?, list)?;
            out.write_all(&embedded)?;
            Ok(())
        }
    }
}

/// The ELF `binary` with `list` in its `.dep-v0` section (replacing one already there): a
/// section that is not loaded (no `SHF_ALLOC`), as a linker makes of cargo-auditable's
/// object file, so the program's memory image is unchanged.
pub fn embed(binary: &[u8], list: &DepList) -> Result<Vec<u8>> {
    let compressed = list.encode()?;
    elf::rewrite::rewrite(binary, binary.len() + 4096, |builder| {
        for section in builder.sections.iter_mut() {
            if section.name.as_slice() == deps::SECTION_NAME.as_bytes() {
                section.delete = true;
            }
        }
        let section = builder.sections.add();
        section.name = deps::SECTION_NAME.as_bytes().into();
        section.sh_type = object::elf::SHT_PROGBITS;
        section.sh_addralign = 1;
        section.data = SectionData::Data(compressed.into());
        Ok(())
    })
    .with_context(|| format!("cannot write the {} section", deps::SECTION_NAME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::EmbeddedDeps;
    use std::path::Path;

    /// app → (build) helper-macro (proc-macro) → syn; app → serde → syn; app → (dev) tester;
    /// build-dependency cc → (normal) shlex.
    fn graph() -> DependencyGraph {
        let pkg = |name: &str, kind: &str, source: Option<&str>| {
            serde_json::json!({
                "name": name, "version": "1.0.0", "id": format!("{name} 1.0.0"),
                "source": source, "dependencies": [], "features": {},
                "targets": [{"name": name, "kind": [kind], "crate_types": [kind], "src_path": "/x/src/lib.rs", "edition": "2021", "doctest": false, "test": false, "doc": false}],
                "manifest_path": format!("/ws/{name}/Cargo.toml"), "links": null,
                "authors": [], "categories": [], "keywords": [], "edition": "2021",
            })
        };
        let dep = |name: &str, kind: Option<&str>| {
            serde_json::json!({
                "name": name, "pkg": format!("{name} 1.0.0"),
                "dep_kinds": [{"kind": kind, "target": null}],
            })
        };
        let node = |name: &str, deps: Vec<serde_json::Value>| serde_json::json!({"id": format!("{name} 1.0.0"), "deps": deps, "dependencies": [], "features": []});
        let crates_io = Some("registry+https://github.com/rust-lang/crates.io-index");
        let metadata = serde_json::json!({
            "packages": [
                pkg("app", "bin", None),
                pkg("helper-macro", "proc-macro", Some("git+https://example.invalid/m#abc")),
                pkg("syn", "lib", crates_io),
                pkg("serde", "lib", crates_io),
                pkg("tester", "lib", crates_io),
                pkg("cc", "lib", crates_io),
                pkg("shlex", "lib", crates_io),
            ],
            "workspace_members": ["app 1.0.0"],
            "workspace_default_members": ["app 1.0.0"],
            "resolve": {"nodes": [
                node("app", vec![dep("helper-macro", None), dep("serde", None), dep("tester", Some("dev")), dep("cc", Some("build"))]),
                node("helper-macro", vec![dep("syn", None)]),
                node("serde", vec![dep("syn", None)]),
                node("syn", vec![]),
                node("tester", vec![]),
                node("cc", vec![dep("shlex", None)]),
                node("shlex", vec![]),
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
    fn lists_what_is_compiled_with_kinds_and_sources() {
        let list = dep_list(
            &graph(),
            &PackageId {
                repr: "app 1.0.0".into(),
            },
        )
        .unwrap();
        let rows: Vec<(&str, &str, DepKind, bool)> = list
            .packages
            .iter()
            .map(|p| (p.name.as_str(), p.source.as_str(), p.kind, p.root))
            .collect();
        assert_eq!(
            rows,
            [
                ("app", "local", DepKind::Runtime, true),
                ("cc", "crates.io", DepKind::Build, false),
                ("helper-macro", "git", DepKind::Build, false),
                ("serde", "crates.io", DepKind::Runtime, false),
                ("shlex", "crates.io", DepKind::Build, false),
                // Reached at build time through the proc-macro, and linked in through serde.
                ("syn", "crates.io", DepKind::Runtime, false),
            ]
        );
        // The dev-dependency is neither listed nor an edge.
        assert_eq!(list.packages[0].dependencies, [1, 2, 3]);
        assert_eq!(list.packages[3].dependencies, [5]);
    }

    #[test]
    fn embedding_adds_a_readable_section_and_replaces_an_old_one() {
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let list = dep_list(
            &graph(),
            &PackageId {
                repr: "app 1.0.0".into(),
            },
        )
        .unwrap();
        let once = embed(&exe, &list).unwrap();
        let info = crate::elf::parse_elf(Path::new("embedded"), &once).unwrap();
        assert_eq!(info.dependencies, EmbeddedDeps::Present(list.clone()));
        let original = crate::elf::parse_elf(Path::new("original"), &exe).unwrap();
        assert_eq!(info.linkage, original.linkage);
        assert_eq!(info.needed, original.needed);

        let mut other = list.clone();
        other.packages.truncate(1);
        other.packages[0].dependencies.clear();
        let twice = embed(&once, &other).unwrap();
        let info = crate::elf::parse_elf(Path::new("twice"), &twice).unwrap();
        assert_eq!(info.dependencies, EmbeddedDeps::Present(other));
        assert_eq!(embed(&once, &list).unwrap(), once, "not deterministic");
    }
}
