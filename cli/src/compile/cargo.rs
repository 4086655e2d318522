//! The `cargo build` call: every target at once (`--target` repeated, so cargo schedules all
//! of them on its own jobserver), `--message-format=json-render-diagnostics` so the binaries'
//! paths come from cargo itself, diagnostics passed through to stderr. Targets whose standard
//! library is built from source get a second call with `-Zbuild-std`, which would otherwise
//! rebuild std for every target of the call.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use cargo_metadata::{Message, PackageId};

use super::BuildOptions;
use super::env::CargoEnv;
use super::plan::Plan;
use crate::process;
use crate::progress;
use crate::target::TargetTriple;

/// An executable cargo produced.
#[derive(Debug, Clone)]
pub struct CargoBinary {
    /// Its package.
    pub package_id: PackageId,
    /// The `[[bin]]` name.
    pub name: String,
    /// The target it was built for.
    pub target: TargetTriple,
    /// Where cargo put it (`target/<triple>/<profile>/<name>`).
    pub path: PathBuf,
}

/// One `cargo build` run: `plan` on `targets`.
pub struct CargoRun<'a> {
    /// The workspace's `Cargo.toml`.
    pub manifest_path: &'a Path,
    /// The binaries.
    pub plan: &'a Plan,
    /// The targets of this run.
    pub targets: &'a [TargetTriple],
    /// The build's options.
    pub options: &'a BuildOptions,
    /// The environment.
    pub env: &'a CargoEnv,
    /// Build the standard library from rust-src (`-Zbuild-std`).
    pub std_from_source: bool,
}

/// The standard-library crates `-Zbuild-std` builds: `std` and both panic runtimes' needs
/// (`panic_abort` for profiles with `panic = "abort"`; `panic_unwind` comes with `std`).
pub const BUILD_STD: &str = "-Zbuild-std=std,panic_abort";

/// The `cargo build` command line for one run.
pub fn command(run: &CargoRun<'_>) -> Command {
    let CargoRun {
        manifest_path,
        plan,
        targets,
        options,
        env,
        std_from_source,
    } = *run;
    let mut cmd = process::cargo();
    cmd.arg("build")
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(manifest_path)
        .arg("--profile")
        .arg(options.profile.as_deref().unwrap_or("release"));
    for target in targets {
        cmd.arg("--target").arg(target.as_str());
    }
    if std_from_source {
        cmd.arg(BUILD_STD);
    }
    for package in plan.packages() {
        cmd.arg("--package").arg(package);
    }
    if plan.all_bins {
        cmd.arg("--bins");
    } else {
        for binary in &plan.binaries {
            cmd.arg("--bin").arg(&binary.name);
        }
    }
    if !options.features.is_empty() {
        cmd.arg("--features").arg(options.features.join(","));
    }
    for (flag, on) in [
        ("--all-features", options.all_features),
        ("--no-default-features", options.no_default_features),
        ("--locked", options.locked),
        ("--frozen", options.frozen),
        ("--offline", options.offline),
    ] {
        if on {
            cmd.arg(flag);
        }
    }
    match progress::verbosity() {
        v if v < 0 => {
            cmd.arg("--quiet");
        }
        v if v > 1 => {
            cmd.arg("--verbose");
        }
        _ => {}
    }
    env.apply(&mut cmd);
    if std_from_source {
        // `-Z` flags on a stable toolchain: the std sources are the compiler's own (rust-src
        // of the same toolchain), which is what RUSTC_BOOTSTRAP is for.
        cmd.env("RUSTC_BOOTSTRAP", "1");
    }
    cmd
}

/// Runs `cmd` and returns the executables it reports, in the order cargo finished them.
/// `target_dir` tells which target each one belongs to (`<target_dir>/<triple>/…`).
pub fn run(mut cmd: Command, target_dir: &Path) -> Result<Vec<CargoBinary>> {
    let bootstrap = cmd
        .get_envs()
        .any(|(key, value)| key == "RUSTC_BOOTSTRAP" && value.is_some());
    let shown = format!(
        "{}{}",
        if bootstrap { "RUSTC_BOOTSTRAP=1 " } else { "" },
        process::display(&cmd)
    );
    progress::detail(&shown);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot run `{shown}`"))?;
    let stdout = child
        .stdout
        .take()
        .context("cargo's standard output is not captured")?;
    let mut binaries = Vec::new();
    for message in Message::parse_stream(BufReader::new(stdout)) {
        let message = message.context("cannot read cargo's JSON messages")?;
        if let Message::CompilerArtifact(artifact) = message {
            let Some(exe) = artifact.executable else {
                continue;
            };
            if !artifact.target.is_bin() {
                continue;
            }
            let path = exe.into_std_path_buf();
            let Some(target) = target_of(&path, target_dir) else {
                continue;
            };
            binaries.push(CargoBinary {
                package_id: artifact.package_id,
                name: artifact.target.name,
                target,
                path,
            });
        }
    }
    let status = child.wait().context("cannot wait for cargo")?;
    if !status.success() {
        anyhow::bail!(
            "`cargo build` failed ({status}); cargo's errors are above\n  command: {shown}"
        );
    }
    Ok(binaries)
}

/// The triple directory an artifact sits in: `<target_dir>/<triple>/<profile>/<bin>`.
fn target_of(path: &Path, target_dir: &Path) -> Option<TargetTriple> {
    let relative = path.strip_prefix(target_dir).ok()?;
    let first = relative.components().next()?;
    first.as_os_str().to_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_paths_name_their_target() {
        let target = target_of(
            Path::new("/ws/target/aarch64-unknown-linux-musl/release/app"),
            Path::new("/ws/target"),
        );
        assert_eq!(target.unwrap().as_str(), "aarch64-unknown-linux-musl");
        assert!(target_of(Path::new("/ws/target/release/app"), Path::new("/ws/target")).is_none());
    }
}
