//! After cargo: each binary copied (atomically) to `target/airlock/<triple>/<bin>`, read back
//! with [`crate::elf`], and judged: the right architecture, and static unless dynamic
//! binaries are allowed. A dynamic binary's problem names the `-sys` crate behind each
//! needed library.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::BuiltBinary;
use super::cargo::CargoBinary;
use super::plan::{DependencyGraph, Plan};
use crate::atomic;
use crate::elf;
use crate::target::TargetTriple;

/// Copies and checks every planned binary; returns them sorted by target then name, and the
/// problems found.
pub fn collect(
    plan: &Plan,
    produced: &[CargoBinary],
    targets: &[TargetTriple],
    airlock_dir: &Path,
    graphs: &HashMap<TargetTriple, DependencyGraph>,
    allow_dynamic: bool,
) -> Result<(Vec<BuiltBinary>, Vec<String>)> {
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
            copy_executable(&built.path, &dest)?;
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
/// half-written binary and a failed copy keeps the previous one.
fn copy_executable(from: &Path, to: &Path) -> Result<()> {
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
