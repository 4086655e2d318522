//! After cargo: each binary copied (atomically) to `target/airlock/<triple>/<bin>` with its
//! dependency list embedded ([`super::embed`]), read back with [`crate::elf`] (from its
//! headers: neither step holds the binary), and judged: the right architecture, and static
//! unless dynamic binaries are allowed. A dynamic binary's problem names the `-sys` crate behind each
//! needed library.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::BuiltBinary;
use super::cargo::CargoBinary;
use super::embed;
use super::plan::{DependencyGraph, Plan};
use crate::atomic;
use crate::elf::{self, DepList};
use crate::target::TargetTriple;

/// What `collect` does besides copying.
pub struct Checks {
    /// Report dynamic binaries without a problem.
    pub allow_dynamic: bool,
    /// Embed each binary's dependency list.
    pub embed_deps: bool,
}

/// Copies and checks every planned binary; returns them sorted by target then name, and the
/// problems found.
pub fn collect(
    plan: &Plan,
    produced: &[CargoBinary],
    targets: &[TargetTriple],
    airlock_dir: &Path,
    graphs: &HashMap<TargetTriple, DependencyGraph>,
    checks: &Checks,
) -> Result<(Vec<BuiltBinary>, Vec<String>)> {
    let allow_dynamic = checks.allow_dynamic;
    let mut binaries = Vec::new();
    let mut problems = Vec::new();
    for target in targets {
        for planned in &plan.binaries {
            let Some(built) = produced.iter().rev().find(|b| {
                &b.target == target && b.name == planned.name && b.package_id == planned.package_id
            }) else {
                anyhow::bail!(
                    "cargo did not build binary `{}` of package `{}` for {target}; check its \
                     `required-features` in Cargo.toml",
                    planned.name,
                    planned.package
                );
            };
            let dest = output_path(airlock_dir, target, &planned.name);
            let list = match graphs.get(target) {
                Some(graph) if checks.embed_deps => Some(
                    embed::dep_list(graph, &planned.package_id).with_context(|| {
                        format!("cannot list the dependencies of `{}`", planned.name)
                    })?,
                ),
                _ => None,
            };
            copy_executable(&built.path, &dest, list.as_ref())?;
            let info = elf::inspect_file(&dest)?;
            if let Some(arch) = target.arch()
                && info.arch != Some(arch)
            {
                problems.push(format!(
                    "{}: built for {}, expected {arch} for {target}",
                    dest.display(),
                    info.machine
                ));
            }
            if !allow_dynamic && !info.linkage.is_static() {
                problems.push(dynamic_problem(
                    &info,
                    graphs.get(target),
                    &planned.package_id,
                ));
            }
            binaries.push(BuiltBinary {
                name: planned.name.clone(),
                package: planned.package.clone(),
                version: planned.version.clone(),
                target: target.clone(),
                path: dest,
                elf: info,
            });
        }
    }
    binaries.sort_by(|a, b| (&a.target, &a.name).cmp(&(&b.target, &b.name)));
    Ok((binaries, problems))
}

/// `elf::dynamic_problem`, with the crates that link each needed library.
fn dynamic_problem(
    info: &elf::ElfInfo,
    graph: Option<&DependencyGraph>,
    package_id: &cargo_metadata::PackageId,
) -> String {
    let mut text = elf::dynamic_problem(info);
    if let Some(graph) = graph {
        for library in &info.needed {
            for culprit in graph.culprits(package_id, library) {
                text.push_str("\n  cause: ");
                text.push_str(&culprit);
            }
        }
    }
    text
}

/// Copies `from` to `to` through a temporary sibling, executable, so a reader never sees a
/// half-written binary and a failed copy keeps the previous one; with `deps`, the copy gets
/// them embedded (cargo's own output is left as cargo wrote it).
fn copy_executable(from: &Path, to: &Path, deps: Option<&DepList>) -> Result<()> {
    if let Some(deps) = deps {
        return atomic::write_file_with(to, atomic::EXEC_MODE, |w| {
            embed::embed_file(from, deps, w).with_context(|| {
                format!(
                    "{}: cannot embed its dependency list; build with --no-embed-deps to skip \
                     it",
                    from.display()
                )
            })?;
            w.flush()?;
            Ok(())
        });
    }
    let mut source = std::fs::File::open(from)
        .with_context(|| format!("cannot open cargo's output {}", from.display()))?;
    atomic::write_file_with(to, atomic::EXEC_MODE, |w| {
        std::io::copy(&mut source, w).with_context(|| format!("cannot copy {}", from.display()))?;
        w.flush()?;
        Ok(())
    })
}

/// `target/airlock/<triple>/<bin>`.
pub fn output_path(airlock_dir: &Path, target: &TargetTriple, bin: &str) -> PathBuf {
    airlock_dir.join(target.as_str()).join(bin)
}
