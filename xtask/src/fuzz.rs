//! `cargo xtask fuzz [CASES]`: the property tests (every `prop_…` test of the library) with
//! many more cases than CI runs. CI runs proptest's default 256 cases per property inside
//! `cargo test`; this runs `CASES` (default 100,000) with optimisations on, so the parsers
//! of hostile input (lockfiles, tar entries, OCI documents, ELF files) see millions of inputs.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};

/// Runs the property tests with `cases` cases each; fails when any finds a counterexample
/// (proptest prints it, shrunk, and saves it under `proptest-regressions/`).
pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let cases: u64 = match args.first() {
        Some(text) => text
            .parse()
            .with_context(|| format!("`{text}` is not a number of cases"))?,
        None => 100_000,
    };
    airlock::progress::status(
        "Fuzzing",
        format!("every prop_ test of the library with {cases} cases each"),
    );
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args(["test", "--release", "-p", "cargo-airlock", "--lib", "prop_"])
        .current_dir(root)
        .env("PROPTEST_CASES", cases.to_string())
        .status()
        .context("cannot run cargo test")?;
    anyhow::ensure!(status.success(), "a property test failed (see above)");
    Ok(())
}
