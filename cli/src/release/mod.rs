//! `cargo airlock dist`: the whole release chain from `[workspace.metadata.airlock]`, each
//! step overridable by flags: build for every target → prove static → strip (the debug files
//! ship beside) → archives → SBOMs → image (with the SBOMs attached) → size report → SLSA
//! provenance (attached to the image) → `SHA256SUMS` → `dist-manifest.json`.
//!
//! Everything is written into a staged directory and swapped into place at the end: a failed
//! step leaves the previous release directory as it was.

pub mod archive;
pub mod provenance;
pub mod sbom;

mod settings;
mod steps;

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::elf::strip::StripMode;
use crate::error::ExitKind;
use crate::records::{Artifact, DistManifest};
use crate::render::{self, Align, CommandReport};
use crate::target::TargetTriple;

pub use archive::ArchiveFormat;
pub use settings::DistSettings;
pub use steps::dist;

/// Options of `cargo airlock dist`; every field left empty or `None` comes from
/// `[workspace.metadata.airlock]`, then from the defaults.
#[derive(Debug, Clone, Default)]
pub struct DistOptions {
    /// The workspace's `Cargo.toml` (default: the current directory's workspace).
    pub manifest_path: Option<PathBuf>,
    /// Where to write the release (default `target/dist`).
    pub out_dir: Option<PathBuf>,
    /// Targets (default: the settings', else x86_64 and aarch64 musl).
    pub targets: Vec<TargetTriple>,
    /// Packages whose binaries are released (default: all members with binaries).
    pub packages: Vec<String>,
    /// Binaries to release (default: all of those packages').
    pub bins: Vec<String>,
    /// Archive formats (default: the settings', else tar.gz).
    pub archives: Vec<ArchiveFormat>,
    /// Skip the image (and its report).
    pub no_image: bool,
    /// Fail when the compressed image is larger than this many bytes.
    pub budget: Option<u64>,
    /// What to strip from the binaries in archives and the image (default: the settings',
    /// else debuginfo); the debug files ship beside.
    pub strip: Option<StripMode>,
    /// Passed to cargo.
    pub locked: bool,
    /// Passed to cargo.
    pub offline: bool,
    /// Sign the release with the release key (also `sign = true` in the settings):
    /// `SHA256SUMS.sig`, every image of the layout and the provenance envelope.
    pub sign: bool,
    /// Never sign, whatever `sign` and the settings say: `verify --rebuild` compares subjects,
    /// which no signature changes, in a checkout that has no key.
    pub no_sign: bool,
    /// The cosign private key (default: the settings' `key`).
    pub key: Option<PathBuf>,
    /// The key's passphrase (default: `AIRLOCK_KEY_PASSWORD`, else empty).
    pub passphrase: Option<crate::signing::Passphrase>,
    /// The repository the image signatures name (default: the image's name in the layout,
    /// from `[workspace.metadata.airlock.image]`).
    pub signed_repository: Option<crate::signing::SignedRepository>,
    /// Load the image into this local engine (`--load podman|docker`).
    pub load: Option<crate::oci::load::Runtime>,
}

/// How long one step took.
#[derive(Debug, Clone, Serialize)]
pub struct StepTiming {
    /// The step's name.
    pub step: String,
    /// Seconds it took.
    pub seconds: f64,
}

/// The result of `dist`.
#[derive(Debug, Clone, Serialize)]
pub struct DistReport {
    /// The release directory.
    pub out_dir: PathBuf,
    /// What was written (also in `dist-manifest.json`).
    pub manifest: DistManifest,
    /// The time of each step.
    pub steps: Vec<StepTiming>,
    /// Checks that failed (budget).
    pub problems: Vec<String>,
}

impl CommandReport for DistReport {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .manifest
            .artifacts
            .iter()
            .map(|a: &Artifact| {
                vec![
                    a.path.clone(),
                    serde_json::to_value(a.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_default(),
                    a.target.clone().unwrap_or_default(),
                    render::human_bytes(a.size),
                    a.sha256.short(),
                ]
            })
            .collect();
        let mut out = render::table(
            &[
                ("artifact", Align::Left),
                ("kind", Align::Left),
                ("target", Align::Left),
                ("size", Align::Right),
                ("sha256", Align::Left),
            ],
            &rows,
        );
        for image in &self.manifest.images {
            out.push_str(&format!(
                "\nimage {}:{} {}\n",
                image.layout, image.tag, image.digest
            ));
            for (platform, digest) in &image.manifests {
                out.push_str(&format!("  {platform}: {digest}\n"));
            }
        }
        let times: Vec<String> = self
            .steps
            .iter()
            .map(|s| {
                format!(
                    "{} {}",
                    s.step,
                    format_duration(Duration::from_secs_f64(s.seconds))
                )
            })
            .collect();
        out.push_str(&format!("\nsteps: {}\n", times.join(", ")));
        let total: f64 = self.steps.iter().map(|s| s.seconds).sum();
        out.push_str(&format!(
            "\nwrote {} in {}\n",
            self.out_dir.display(),
            format_duration(Duration::from_secs_f64(total))
        ));
        for problem in &self.problems {
            out.push_str(&format!("error: {problem}\n"));
        }
        out
    }

    fn exit_kind(&self) -> ExitKind {
        if self.problems.is_empty() {
            ExitKind::Ok
        } else {
            ExitKind::CheckFailed
        }
    }
}

/// `1.2s`, `3m04s`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
}
