//! `[workspace.metadata.airlock]` keys that `dist` reads. Other tables (`image`, `report`)
//! belong to their commands and are read there.

use std::path::PathBuf;

use serde::Deserialize;

use super::archive::ArchiveFormat;
use crate::elf::strip::StripMode;
use crate::target::TargetTriple;

/// The workspace-level release settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct DistSettings {
    /// Targets to build.
    pub targets: Vec<TargetTriple>,
    /// Packages to release.
    pub packages: Vec<String>,
    /// Binaries to release.
    pub bins: Vec<String>,
    /// The `dist` table.
    pub dist: DistTable,
    /// The `report` table (only `budget` is read here).
    pub report: ReportTable,
}

/// `[workspace.metadata.airlock.dist]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "kebab-case", default, deny_unknown_fields)]
pub struct DistTable {
    /// Where to write the release, relative to the workspace root.
    pub out_dir: Option<PathBuf>,
    /// Archive formats.
    pub archives: Vec<ArchiveFormat>,
    /// Whether to sign the release (its provenance) with `key`.
    pub sign: bool,
    /// The cosign private key that signs, relative to the workspace root.
    pub key: Option<PathBuf>,
    /// Whether to build an image.
    pub image: bool,
    /// What to strip from the binaries that ship (`none`, `debuginfo`, `symbols`).
    pub strip: Option<StripMode>,
}

impl Default for DistTable {
    fn default() -> Self {
        DistTable {
            out_dir: None,
            archives: Vec::new(),
            sign: false,
            key: None,
            image: true,
            strip: None,
        }
    }
}

/// The part of `[workspace.metadata.airlock.report]` that `dist` uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct ReportTable {
    /// The size budget of the compressed image (`20MiB`).
    pub budget: Option<String>,
}
