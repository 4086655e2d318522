//! `--with-gnu`: the image's binary built again for the `*-linux-gnu` target of this
//! machine's architecture (dynamically linked against glibc), to show what static musl on
//! scratch saves against the usual glibc build on a base that carries glibc.

use std::path::Path;

use anyhow::{Context, Result};

use super::bases::BaseImage;
use super::binary::{gzip_size, measure_binary};
use super::model::{BinaryReport, BinarySource, Comparison, ComparisonKind, PlatformReport};
use crate::compile::{BuildOptions, build};
use crate::error;
use crate::tarball::{EXEC_MODE, TarBuilder};
use crate::target::{Arch, TargetTriple};

/// The base a glibc-dynamic binary is put on: the smallest reference base with glibc.
const GLIBC_BASE: &str = "gcr.io/distroless/cc";

/// A glibc build of the binary.
pub struct GnuBuild {
    /// The OCI architecture it was built for.
    pub architecture: String,
    /// Its sizes.
    pub binary: BinaryReport,
    /// A gzip -9 layer holding it at the image binary's path.
    pub layer: u64,
}

/// Builds the binary named like the image's (`/usr/local/bin/app` → `app`) for the host's
/// gnu target, with dynamic linkage allowed, and measures it.
pub fn build_gnu(
    manifest_path: Option<&Path>,
    platforms: &[PlatformReport],
    architectures: &[String],
) -> Result<GnuBuild> {
    let host = Arch::host().ok_or_else(|| {
        error::input(
            "--with-gnu builds for this machine's architecture, and airlock does not target it",
        )
    })?;
    let position = architectures
        .iter()
        .zip(platforms)
        .position(|(arch, p)| arch == host.oci_name() && p.binary.is_some())
        .ok_or_else(|| {
            error::input(format!(
                "--with-gnu builds for this machine's architecture ({}), and the image has no \
                 {} platform with a binary to compare with",
                host.oci_name(),
                host.oci_name()
            ))
        })?;
    let image_binary = platforms[position]
        .binary
        .as_ref()
        .context("the platform has a binary")?;
    let name = image_binary
        .path
        .rsplit('/')
        .next()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| error::input(format!("{} names no binary", image_binary.path)))?
        .to_owned();
    let triple: TargetTriple = format!("{}-unknown-linux-gnu", host.triple_name())
        .parse()
        .map_err(|e: crate::target::ParseTargetError| error::input(e.to_string()))?;
    crate::progress::status("Building", format!("{name} for {triple} (--with-gnu)"));
    let report = build(&BuildOptions {
        manifest_path: manifest_path.map(Path::to_path_buf),
        bins: vec![name.clone()],
        targets: vec![triple.clone()],
        allow_dynamic: true,
        ..BuildOptions::default()
    })
    .with_context(|| format!("--with-gnu: building `{name}` for {triple}"))?;
    let built = report.binary(&name, &triple).ok_or_else(|| {
        error::input(format!(
            "--with-gnu: the build of {triple} made no binary `{name}`; the image's binary must \
             be a binary target of the workspace (--manifest-path)"
        ))
    })?;
    let bytes = std::fs::read(&built.path)
        .with_context(|| format!("cannot read {}", built.path.display()))?;
    let binary = measure_binary(
        &built.path.display().to_string(),
        BinarySource::GlibcBuild,
        &bytes,
    )?;
    let mut layer = TarBuilder::new();
    layer.file(image_binary.path.trim_start_matches('/'), bytes, EXEC_MODE);
    let layer = gzip_size(&layer.to_bytes(0)?)?;
    Ok(GnuBuild {
        architecture: host.oci_name().to_owned(),
        binary,
        layer,
    })
}

/// The comparison row: the image with its binary's layer swapped for the glibc build's, on
/// the glibc base.
pub fn glibc_row(
    platform: &PlatformReport,
    gnu: &GnuBuild,
    bases: &[BaseImage],
) -> Option<Comparison> {
    let base = bases.iter().find(|b| b.name == GLIBC_BASE)?;
    let (_, figure) = base.for_architecture(&gnu.architecture)?;
    let binary_path = platform.binary.as_ref().map(|b| b.path.as_str());
    let binary_layer = platform
        .layers
        .iter()
        .rev()
        .find(|l| binary_path.is_some_and(|p| l.largest.iter().any(|f| f.path == p)))
        .map_or(0, |l| l.compressed);
    Some(Comparison {
        label: format!("glibc-dynamic build on {}", base.name),
        kind: ComparisonKind::GlibcDynamic,
        compressed: figure.compressed + platform.compressed - binary_layer + gnu.layer,
        uncompressed: None,
        approximate: base.approximate,
        digest: base.digest_for(figure),
        source: Some(format!(
            "{} ({} bytes, gzip -9 layer {} bytes) on {}: {} ({})",
            gnu.binary.path, gnu.binary.size, gnu.layer, base.tag, base.source, base.date
        )),
    })
}
