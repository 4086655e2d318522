//! `cargo airlock build` and `doctor`: fully static musl binaries for each target, with C
//! compilers and linkers set up per target, reproducible settings, and every binary proven
//! static from its ELF afterwards.
//!
//! `build` runs cargo and never touches the user's `RUSTFLAGS`: static linking is forced per
//! target through `CARGO_TARGET_<TRIPLE>_RUSTFLAGS`.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use crate::elf::ElfInfo;
use crate::target::TargetTriple;

/// Options of `cargo airlock build` (and of the build step of `image` and `dist`).
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The workspace's `Cargo.toml` (default: the current directory's workspace).
    pub manifest_path: Option<PathBuf>,
    /// Packages to build (`-p`); empty: every member with a binary.
    pub packages: Vec<String>,
    /// Binaries to build (`--bin`); empty: all of the chosen packages'.
    pub bins: Vec<String>,
    /// Targets; empty: the host's musl triple.
    pub targets: Vec<TargetTriple>,
    /// Cargo profile (default `release`).
    pub profile: Option<String>,
    /// `--features`.
    pub features: Vec<String>,
    /// `--all-features`.
    pub all_features: bool,
    /// `--no-default-features`.
    pub no_default_features: bool,
    /// `--locked`.
    pub locked: bool,
    /// `--frozen`.
    pub frozen: bool,
    /// `--offline`.
    pub offline: bool,
}

/// One binary built for one target.
#[derive(Debug, Clone, Serialize)]
pub struct BuiltBinary {
    /// The binary target's name.
    pub name: String,
    /// Its package.
    pub package: String,
    /// The package version.
    pub version: String,
    /// The target it was built for.
    pub target: TargetTriple,
    /// `target/airlock/<triple>/<bin>`.
    pub path: PathBuf,
    /// Its ELF analysis.
    pub elf: ElfInfo,
}

/// The result of `build`.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// Every binary, sorted by target then name.
    pub binaries: Vec<BuiltBinary>,
    /// The `SOURCE_DATE_EPOCH` the build used.
    pub source_date_epoch: u64,
    /// Every failed check (a dynamic binary, with its cause and fix).
    pub problems: Vec<String>,
}

/// `cargo airlock build`.
pub fn build(options: &BuildOptions) -> Result<BuildReport> {
    let _ = options;
    anyhow::bail!("`cargo airlock build` is not implemented yet")
}

impl crate::render::CommandReport for BuildReport {
    fn human(&self) -> String {
        String::new()
    }
}
