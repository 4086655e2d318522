//! `cargo airlock report`: image and binary sizes side by side, and size budgets for CI.
//!
//! For each platform of an image in a layout: what a pull transfers (manifest, config,
//! layers), the layers decompressed and what they hold, the binary before and after
//! stripping and compressed, and a comparison with the same binary on reference base images
//! (published figures), other layouts (measured), the other layer codec, and a glibc build.
//! Rendered as a table, JSON (a versioned schema), Markdown or an SVG bar chart.
//!
//! `report` reads layouts and binaries; it never pulls or pushes, and builds only for
//! `--with-gnu`.

pub mod bases;
pub mod binary;
pub mod cache;
pub mod checks;
pub mod gnu;
pub mod measure;
pub mod model;
mod render;
pub mod schema;
mod svg;

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result};

pub use checks::MaxGrowth;
pub use model::*;

use crate::error::{self, ExitKind};
use crate::oci::layout::ImageRef;
use crate::workspace::Workspace;
use measure::{Depth, MeasuredImage, MeasuredPlatform, Recompress, measure_image};

/// Options of `cargo airlock report`.
#[derive(Debug, Clone, Default)]
pub struct ReportOptions {
    /// The workspace's `Cargo.toml` (finds the default layout and, for `--with-gnu`, what to
    /// build).
    pub manifest_path: Option<PathBuf>,
    /// That workspace, when the caller has loaded it already (`dist`): used instead of a
    /// second `cargo metadata`.
    pub workspace: Option<Workspace>,
    /// The image; default: the layout `cargo airlock image` writes.
    pub image: Option<ImageRef>,
    /// Measure this binary instead of the one found in the image.
    pub binary: Option<PathBuf>,
    /// Other layouts to measure and compare with.
    pub compare: Vec<ImageRef>,
    /// Build the binary for the host's `*-linux-gnu` target too and compare (needs the
    /// workspace that builds the image's binary).
    pub with_gnu: bool,
    /// Fail when a platform's compressed size is larger.
    pub budget: Option<u64>,
    /// An earlier `--format json` report to compare with.
    pub baseline: Option<PathBuf>,
    /// Fail when the compressed size grew more than this against the baseline.
    pub max_growth: Option<MaxGrowth>,
    /// Also write the SVG chart here.
    pub svg_file: Option<PathBuf>,
    /// Append the Markdown rendering to this file (`$GITHUB_STEP_SUMMARY`).
    pub summary_file: Option<PathBuf>,
    /// Recompress every layer, and the binary, with the codecs they are not stored in,
    /// whatever their size (else only those up to [`measure::RECOMPRESS_LIMIT`]).
    pub recompress: bool,
}

/// `cargo airlock report`.
pub fn report(options: &ReportOptions) -> Result<SizeReport> {
    if options.max_growth.is_some() && options.baseline.is_none() {
        return Err(error::input(
            "--max-growth needs --baseline OLD.json (an earlier `cargo airlock report --format json`)",
        ));
    }
    // Read the baseline first: a wrong one should fail before minutes of measuring.
    let baseline = options
        .baseline
        .as_deref()
        .map(checks::load_baseline)
        .transpose()?;
    // The workspace, loaded once: its default layout is the image when none is named, and
    // its target directory keeps the cache (a named image outside a named workspace is
    // measured without one).
    let loaded = options.workspace.clone();
    let (image, workspace) = match &options.image {
        Some(image) => (
            image.clone(),
            loaded.or_else(|| {
                options
                    .manifest_path
                    .as_deref()
                    .and_then(|path| Workspace::load(Some(path)).ok())
            }),
        ),
        None => {
            let workspace = match loaded {
                Some(workspace) => workspace,
                None => Workspace::load(options.manifest_path.as_deref())?,
            };
            let path = crate::oci::image::default_layout_of(&workspace);
            (ImageRef { path, tag: None }, Some(workspace))
        }
    };
    crate::progress::status("Measuring", &image);
    let recompress = if options.recompress {
        Recompress::Always
    } else {
        Recompress::Bounded
    };
    let cache = workspace.as_ref().map(cache::Cache::of_workspace);
    let measured = measure_image(
        &image,
        Depth {
            recompress,
            binary: options.binary.is_none(),
        },
        cache.as_ref(),
    )?;
    let given_binary = options
        .binary
        .as_deref()
        .map(|path| -> Result<_> {
            let size = crate::input::open_regular(path, crate::input::Links::Follow)?.size;
            binary::measure_binary_file(path, recompress.applies(size))
        })
        .transpose()?;
    let mut compared = Vec::with_capacity(options.compare.len());
    for other in &options.compare {
        crate::progress::status("Measuring", other);
        compared.push(measure_image(
            other,
            Depth {
                recompress: Recompress::Never,
                binary: false,
            },
            cache.as_ref(),
        )?);
    }
    let bases = bases::reference_bases()?;

    let mut platforms = Vec::with_capacity(measured.platforms.len());
    for platform in &measured.platforms {
        let mut report = platform.report.clone();
        report.binary = match (&given_binary, &platform.binary) {
            (Some(given), _) => Some(given.clone()),
            (None, Some(found)) => Some(found.report.clone()),
            (None, None) => None,
        };
        report.comparisons = comparisons(&measured, platform, &bases, &compared);
        platforms.push(report);
    }
    let mut notes: Vec<String> = measured
        .platforms
        .iter()
        .flat_map(|p| p.notes.iter().cloned())
        .collect();
    if options.with_gnu {
        let architectures: Vec<String> = measured
            .platforms
            .iter()
            .map(|p| p.architecture.clone())
            .collect();
        let gnu = gnu::build_gnu(options.manifest_path.as_deref(), &platforms, &architectures)?;
        for (platform, arch) in platforms.iter_mut().zip(&architectures) {
            if *arch != gnu.architecture {
                notes.push(format!(
                    "{}: --with-gnu builds for this machine's architecture ({}) only",
                    platform.platform, gnu.architecture
                ));
                continue;
            }
            if let Some(row) = gnu::glibc_row(platform, &gnu, &bases) {
                platform.comparisons.push(row);
            }
            platform.gnu_binary = Some(gnu.binary.clone());
        }
    }

    let mut problems = Vec::new();
    let budgets = match options.budget {
        Some(limit) => checks::check_budget(&platforms, limit, &mut problems),
        None => Vec::new(),
    };
    let growth = match (&baseline, &options.baseline) {
        (Some(old), Some(path)) => checks::check_growth(
            &platforms,
            old,
            &path.display().to_string(),
            options.max_growth,
            &mut problems,
            &mut notes,
        ),
        _ => Vec::new(),
    };
    for platform in &platforms {
        if platform.binary.is_none() {
            notes.push(format!(
                "{}: no executable ELF file in the layers; name one with --binary FILE",
                platform.platform
            ));
        }
    }

    let report = SizeReport {
        schema_version: SCHEMA_VERSION,
        image: measured.reference.clone(),
        digest: measured.digest.to_string(),
        media_type: measured.media_type.clone(),
        index_size: measured.index_size,
        platforms,
        budgets,
        growth,
        baseline: options.baseline.as_ref().map(|p| p.display().to_string()),
        notes,
        problems,
    };
    write_outputs(&report, options)?;
    Ok(report)
}

/// `--svg FILE` and `--summary`.
fn write_outputs(report: &SizeReport, options: &ReportOptions) -> Result<()> {
    if let Some(path) = &options.svg_file {
        crate::atomic::write_file(path, svg::chart(report).as_bytes())?;
        crate::progress::status("Wrote", path.display());
    }
    if let Some(path) = &options.summary_file {
        // The step summary is appended to by every step of a job, so append, never replace.
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open the step summary {}", path.display()))?;
        file.write_all(render::markdown(report).as_bytes())
            .with_context(|| format!("cannot append to {}", path.display()))?;
        crate::progress::status(
            "Appended",
            format!("the Markdown report to {}", path.display()),
        );
    }
    Ok(())
}

/// The comparison rows of one platform.
fn comparisons(
    image: &MeasuredImage,
    platform: &MeasuredPlatform,
    bases: &[bases::BaseImage],
    compared: &[MeasuredImage],
) -> Vec<Comparison> {
    let p = &platform.report;
    let mut rows = Vec::new();
    let codecs: Vec<Codec> = p.layers.iter().map(|l| l.codec).collect();
    let uniform = codecs
        .first()
        .copied()
        .filter(|c| codecs.iter().all(|x| x == c));
    let codec_name = match uniform {
        Some(Codec::Gzip) => "gzip layers",
        Some(Codec::Zstd) => "zstd layers",
        Some(Codec::None) => "uncompressed layers",
        None if codecs.is_empty() => "no layers",
        None => "mixed layers",
    };
    rows.push(Comparison {
        label: format!("this image ({codec_name})"),
        kind: ComparisonKind::Image,
        compressed: p.compressed,
        uncompressed: Some(p.uncompressed),
        approximate: false,
        digest: Some(p.manifest_digest.clone()),
        source: Some(image.reference.clone()),
    });
    let documents = p.manifest_size + p.config_size;
    for (codec, label, pick) in [
        (
            Codec::Gzip,
            "same layers, all gzip",
            (|l: &LayerReport| l.gzip) as fn(&LayerReport) -> Option<u64>,
        ),
        (Codec::Zstd, "same layers, all zstd", |l: &LayerReport| {
            l.zstd
        }),
    ] {
        if uniform == Some(codec) || p.layers.is_empty() {
            continue;
        }
        if let Some(total) = p.layers.iter().map(pick).sum::<Option<u64>>() {
            rows.push(Comparison {
                label: label.to_owned(),
                kind: ComparisonKind::Codec,
                compressed: documents + total,
                uncompressed: Some(p.uncompressed),
                approximate: false,
                digest: None,
                source: Some(format!(
                    "layers of the other codec recompressed in process (gzip -{} / zstd -{})",
                    measure::GZIP_LEVEL,
                    measure::ZSTD_LEVEL
                )),
            });
        }
    }
    // An image on a base image is compared by its own layers: the base is what is swapped.
    let own = p
        .base
        .as_ref()
        .map_or(p.compressed, |split| documents + split.own_compressed);
    for base in bases {
        let Some((arch, figure)) = base.for_architecture(&platform.architecture) else {
            continue;
        };
        let on = if arch == platform.architecture {
            String::new()
        } else {
            format!(", {arch} figure")
        };
        rows.push(Comparison {
            label: format!(
                "{} on {}{on}",
                if p.base.is_some() {
                    "own layers"
                } else {
                    "same layers"
                },
                base.name
            ),
            kind: ComparisonKind::ReferenceBase,
            compressed: figure.compressed + own,
            uncompressed: None,
            approximate: base.approximate,
            digest: base.digest_for(figure),
            source: Some(format!("{}: {} ({})", base.tag, base.source, base.date)),
        });
    }
    for other in compared {
        let chosen = other
            .platforms
            .iter()
            .find(|o| o.architecture == platform.architecture)
            .or_else(|| other.platforms.first());
        if let Some(o) = chosen {
            rows.push(Comparison {
                label: format!("{} ({})", other.reference, o.report.platform),
                kind: ComparisonKind::Layout,
                compressed: o.report.compressed,
                uncompressed: Some(o.report.uncompressed),
                approximate: false,
                digest: Some(o.report.manifest_digest.clone()),
                source: Some("measured".to_owned()),
            });
        }
    }
    rows
}

impl crate::render::CommandReport for SizeReport {
    fn human(&self) -> String {
        render::human(self)
    }

    fn markdown(&self) -> Option<String> {
        Some(render::markdown(self))
    }

    fn svg(&self) -> Option<String> {
        Some(svg::chart(self))
    }

    fn exit_kind(&self) -> ExitKind {
        if self.problems.is_empty() {
            ExitKind::Ok
        } else {
            ExitKind::CheckFailed
        }
    }
}
