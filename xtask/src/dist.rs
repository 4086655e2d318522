//! `cargo xtask dist`: airlock releasing itself with its own library, driven by
//! `[workspace.metadata.airlock]` in the root `Cargo.toml`.

use std::path::Path;
use std::process::Command;

use airlock::render::CommandReport;
use anyhow::{Context, Result};

/// Runs the release chain on this repository and prints the summary; the exit code is
/// airlock's (1 when a check such as the size budget fails).
pub fn run(root: &Path) -> Result<i32> {
    add_rustup_targets()?;
    let report = airlock::release::dist(&airlock::release::DistOptions {
        manifest_path: Some(root.join("Cargo.toml")),
        ..airlock::release::DistOptions::default()
    })?;
    print!("{}", report.human());
    Ok(report.exit_kind().code())
}

/// Adds the musl targets the release needs when rustup lacks them, so a fresh machine
/// only needs `.ci/setup` for the C tools.
fn add_rustup_targets() -> Result<()> {
    let wanted = ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"];
    let Ok(output) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return Ok(()); // no rustup: `build` says what is missing.
    };
    let installed = String::from_utf8_lossy(&output.stdout).into_owned();
    let missing: Vec<&str> = wanted
        .into_iter()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    airlock::progress::status(
        "Installing",
        format!("rustup targets {}", missing.join(" ")),
    );
    let status = Command::new("rustup")
        .args(["target", "add"])
        .args(&missing)
        .status()
        .context("cannot run rustup")?;
    anyhow::ensure!(
        status.success(),
        "`rustup target add {}` failed",
        missing.join(" ")
    );
    Ok(())
}
