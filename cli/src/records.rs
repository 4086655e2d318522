//! The records a release carries: `SHA256SUMS` (coreutils format) and `dist-manifest.json`.
//!
//! `dist` writes them and `verify` reads them, so they live below both. Formats only: this
//! module reads and writes text, it never hashes trees or builds anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::error;

/// The `SHA256SUMS` lines of a directory, sorted by file name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sha256Sums {
    /// File name (relative, `/`-separated) → digest.
    pub entries: BTreeMap<String, Sha256Digest>,
}

impl Sha256Sums {
    /// The text `sha256sum -c` accepts: `<hex>  <name>` per line (two spaces: text mode, which
    /// is byte-identical to binary mode on Linux), sorted by name.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for (name, digest) in &self.entries {
            let _ = writeln!(out, "{}  {name}", digest.hex());
        }
        out
    }

    /// Parses coreutils output (`<hex>  <name>` or `<hex> *<name>`); `origin` names the file in
    /// errors. Escaped names (a leading `\`) and BSD-style `SHA256 (name) = hex` lines are
    /// refused with the line number rather than misread.
    pub fn parse(text: &str, origin: &Path) -> Result<Sha256Sums> {
        let mut entries = BTreeMap::new();
        for (number, line) in text.lines().enumerate() {
            let number = number + 1;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |why: &str| {
                error::input(format!(
                    "{}:{number}: {why} (expected `<sha256 hex>  <file name>`)",
                    origin.display()
                ))
            };
            if line.starts_with('\\') {
                return Err(bad("escaped file names are not supported"));
            }
            let (hex, rest) = line.split_once(' ').ok_or_else(|| bad("no file name"))?;
            let name = rest.strip_prefix(' ').or_else(|| rest.strip_prefix('*'));
            let name = name
                .filter(|n| !n.is_empty())
                .ok_or_else(|| bad("no file name"))?;
            let digest = Sha256Digest::from_hex(hex).map_err(|e| bad(&e.to_string()))?;
            if entries.insert(name.to_owned(), digest).is_some() {
                return Err(bad(&format!("`{name}` is listed twice")));
            }
        }
        Ok(Sha256Sums { entries })
    }
}

/// What kind of file an artifact is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum ArtifactKind {
    /// A static executable.
    Binary,
    /// A `.tar.gz` or `.tar.zst` archive of a binary and its documents.
    Archive,
    /// `SHA256SUMS`.
    Checksums,
    /// A CycloneDX SBOM.
    SbomCyclonedx,
    /// An SPDX SBOM.
    SbomSpdx,
    /// An OCI image archive (`docker load`/`podman load`/`skopeo` accept it).
    ImageArchive,
    /// The size report (Markdown, JSON or SVG).
    Report,
    /// The debug information stripped from a binary (`<bin>-<version>-<target>.debug`), found
    /// by gdb and lldb through the shipped binary's build-id or `.gnu_debuglink`.
    DebugInfo,
    /// SLSA provenance in a DSSE envelope (`provenance.intoto.jsonl`).
    Provenance,
    /// A file's signature by the release key (`SHA256SUMS.sig`, as `cosign sign-blob` writes).
    Signature,
}

/// One file of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Artifact {
    /// Path relative to the dist directory, `/`-separated.
    pub path: String,
    /// What it is.
    pub kind: ArtifactKind,
    /// The target it was built for, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// Its digest.
    pub sha256: Sha256Digest,
}

/// An image written by the release, with its digests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ImageRecord {
    /// The layout directory, relative to the dist directory.
    pub layout: String,
    /// The tag in the layout.
    pub tag: String,
    /// The digest of what the tag points to (an index for several platforms).
    pub digest: Sha256Digest,
    /// Per-platform manifest digests (`linux/amd64` → digest).
    pub manifests: BTreeMap<String, Sha256Digest>,
    /// Digests of the SBOM artifacts attached to the image (their `subject` is the image).
    #[serde(default)]
    pub sboms: Vec<Sha256Digest>,
    /// Digests of the attestations attached to the image (the provenance, in cosign's form).
    #[serde(default)]
    pub attestations: Vec<Sha256Digest>,
}

/// `dist-manifest.json`: every artifact with its digest, the images, and what produced them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DistManifest {
    /// Version of this document's schema; bumped on incompatible changes.
    pub schema_version: u32,
    /// `cargo-airlock <version>` that wrote it.
    pub tool: String,
    /// The workspace's name (its root package, or the directory name).
    pub name: String,
    /// The released version.
    pub version: String,
    /// The git commit, when the workspace is a checkout.
    pub source_revision: Option<String>,
    /// The timestamp every artifact carries.
    pub source_date_epoch: u64,
    /// Every file, sorted by path.
    pub artifacts: Vec<Artifact>,
    /// The images.
    pub images: Vec<ImageRecord>,
}

impl DistManifest {
    /// The schema version this airlock writes.
    pub const SCHEMA_VERSION: u32 = 1;

    /// Parses a `dist-manifest.json`, refusing other schema versions.
    pub fn parse(bytes: &[u8], origin: &Path) -> Result<DistManifest> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| error::input(format!("{}: not valid JSON: {e}", origin.display())))?;
        let version = value.get("schema_version").and_then(|v| v.as_u64());
        if version != Some(u64::from(Self::SCHEMA_VERSION)) {
            return Err(error::input(format!(
                "{}: schema_version {} is not supported (this airlock reads {})",
                origin.display(),
                version.map_or("missing".to_owned(), |v| v.to_string()),
                Self::SCHEMA_VERSION
            )));
        }
        serde_json::from_value(value)
            .map_err(|e| error::input(format!("{}: not a dist manifest: {e}", origin.display())))
    }
}

/// The JSON Schema of `dist-manifest.json`, committed as `docs/dist-manifest.schema.json`.
pub fn dist_manifest_schema() -> String {
    let schema = schemars::schema_for!(DistManifest);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `AIRLOCK_BLESS=1 cargo test --lib release` rewrites the committed file.
    #[test]
    fn committed_dist_manifest_schema_is_fresh() {
        crate::assert_generated_file_is_fresh(
            "docs/dist-manifest.schema.json",
            &dist_manifest_schema(),
            "release",
        );
    }

    #[test]
    fn sums_round_trip_sorted() {
        let mut sums = Sha256Sums::default();
        sums.entries
            .insert("b.tar.gz".into(), Sha256Digest::of(b"b"));
        sums.entries
            .insert("a.tar.gz".into(), Sha256Digest::of(b"a"));
        let text = sums.to_text();
        assert!(text.starts_with(&format!("{}  a.tar.gz\n", Sha256Digest::of(b"a").hex())));
        assert_eq!(Sha256Sums::parse(&text, Path::new("S")).unwrap(), sums);
        let star = text.replace("  ", " *");
        assert_eq!(Sha256Sums::parse(&star, Path::new("S")).unwrap(), sums);
    }

    #[test]
    fn sums_errors_name_the_line() {
        for (text, says) in [
            ("abc  file\n", "SUMS:1"),
            ("\n\\x  y\n", "SUMS:2"),
            (
                &format!("{0}  a\n{0}  a\n", Sha256Digest::of(b"").hex()),
                "twice",
            ),
            (
                &format!("{}\n", Sha256Digest::of(b"").hex()),
                "no file name",
            ),
        ] {
            let err = Sha256Sums::parse(text, Path::new("SUMS"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(says), "{err}");
        }
    }
}
