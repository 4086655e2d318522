//! The report's data, exactly as `--format json` writes it (schema version
//! [`SCHEMA_VERSION`], described by `docs/report.schema.json`). Every size is in bytes.
//!
//! Changing a field's name, type or meaning means a new schema version; adding an optional
//! field does not.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::elf::strip::StripMethod;

/// The version of this JSON shape; a baseline written by another version is refused.
pub const SCHEMA_VERSION: u32 = 1;

/// The result of `cargo airlock report`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct SizeReport {
    /// The version of this shape: 1. A new version changes or removes fields; new optional
    /// fields keep the version.
    pub schema_version: u32,
    /// The image measured, as `oci:PATH[:TAG]`.
    pub image: String,
    /// The digest of the image's entry in `index.json` (an index or a manifest).
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// The size of that index document when the image is multi-platform (pulled once, on top
    /// of one platform's manifest, config and layers).
    pub index_size: Option<u64>,
    /// One entry per platform (one for a single-platform image), in index order.
    pub platforms: Vec<PlatformReport>,
    /// `--budget` results, one per platform; empty without `--budget`.
    pub budgets: Vec<BudgetResult>,
    /// `--baseline` results, one per platform found in both reports; empty without it.
    pub growth: Vec<GrowthResult>,
    /// The baseline file compared against.
    pub baseline: Option<String>,
    /// Things worth knowing that are not failures (a platform missing from the baseline).
    pub notes: Vec<String>,
    /// Every failed check, one sentence each (exit code 1 when not empty).
    pub problems: Vec<String>,
}

/// One platform's image.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct PlatformReport {
    /// `os/architecture[/variant]`, e.g. `linux/arm64/v8`.
    pub platform: String,
    /// The manifest's digest.
    pub manifest_digest: String,
    /// The manifest's size.
    pub manifest_size: u64,
    /// The config blob's digest.
    pub config_digest: String,
    /// The config blob's size.
    pub config_size: u64,
    /// What pulling this platform transfers: manifest + config + every layer as stored.
    pub compressed: u64,
    /// The layers' tar streams after decompression, added up.
    pub uncompressed: u64,
    /// The layers, bottom first.
    pub layers: Vec<LayerReport>,
    /// The layers split between the base image and the image's own, when the manifest says
    /// how many are the base's (as airlock's images on a base do).
    pub base: Option<BaseSplit>,
    /// The binary measured (the entrypoint, else the largest executable; or `--binary`).
    pub binary: Option<BinaryReport>,
    /// With `--with-gnu`: the same binary built for the `*-linux-gnu` target of this
    /// platform's architecture, dynamically linked against glibc.
    pub gnu_binary: Option<BinaryReport>,
    /// Side-by-side sizes: this image, other codecs, reference bases, `--compare` layouts,
    /// `--with-gnu`.
    pub comparisons: Vec<Comparison>,
}

/// An image's layers split between its base image and its own: the base's are the bottom
/// `base_layers`, as the manifest's annotations say (`org.opencontainers.image.base.name` and
/// `.digest`, and airlock's `io.github.airlock-rs.image.base.layers`).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BaseSplit {
    /// The base's name, from `org.opencontainers.image.base.name`.
    pub name: Option<String>,
    /// The base's digest, from `org.opencontainers.image.base.digest`.
    pub digest: Option<String>,
    /// How many layers, from the bottom, are the base's.
    pub base_layers: u64,
    /// Their sizes as stored.
    pub base_compressed: u64,
    /// Their tar streams' sizes.
    pub base_uncompressed: u64,
    /// The layers above them, the image's own.
    pub own_layers: u64,
    /// Their sizes as stored.
    pub own_compressed: u64,
    /// Their tar streams' sizes.
    pub own_uncompressed: u64,
}

/// Layer compression, from the media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// `+gzip` / `.tar.gzip`.
    Gzip,
    /// `+zstd`.
    Zstd,
    /// A plain tar.
    None,
}

/// One layer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LayerReport {
    /// The blob's digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// How it is compressed.
    pub codec: Codec,
    /// The blob's size (its descriptor's, checked against the file).
    pub compressed: u64,
    /// The tar stream's size after decompression.
    pub uncompressed: u64,
    /// The layer recompressed with gzip at level 9 (the blob's own size for gzip layers).
    pub gzip: Option<u64>,
    /// The layer recompressed with zstd at level 19 (the blob's own size for zstd layers).
    pub zstd: Option<u64>,
    /// Tar entries of every kind.
    pub entries: u64,
    /// Regular files among them.
    pub files: u64,
    /// The largest regular files, largest first (at most five).
    pub largest: Vec<FileEntry>,
    /// Whether it is one of the base image's layers (see [`BaseSplit`]).
    #[serde(default)]
    pub from_base: bool,
}

/// A file in a layer.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct FileEntry {
    /// Its path in the image, starting with `/`.
    pub path: String,
    /// Its size.
    pub size: u64,
}

/// Where the measured binary came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BinarySource {
    /// The config's entrypoint (or command), found in the layers.
    Entrypoint,
    /// The largest executable ELF file in the layers.
    LargestExecutable,
    /// A file given with `--binary`.
    File,
    /// Built by `--with-gnu` for the `*-linux-gnu` target.
    GlibcBuild,
}

/// The binary's sizes.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BinaryReport {
    /// Its path in the image (or on disk with `--binary`).
    pub path: String,
    /// How it was chosen.
    pub source: BinarySource,
    /// Its size as shipped.
    pub size: u64,
    /// Its size as built, before `image` stripped it (recorded on the layer); none when the
    /// image does not say (not stripped, or not made by airlock).
    #[serde(default)]
    pub built: Option<u64>,
    /// Its size with symbols and debug info removed (`strip --strip-all`).
    pub stripped: Option<u64>,
    /// How `stripped` was measured.
    pub strip_method: Option<StripMethod>,
    /// Whether it ships without a symbol table already.
    pub already_stripped: bool,
    /// `gzip -9` of the binary as shipped (when it is alone in a gzip layer: that layer's
    /// size); none when it was not measured (`report --recompress` measures it).
    #[serde(default)]
    pub gzip: Option<u64>,
    /// `zstd -19` of the binary as shipped (when it is alone in a zstd layer: that layer's
    /// size); none when it was not measured (`report --recompress` measures it).
    #[serde(default)]
    pub zstd: Option<u64>,
    /// `static`, `static-pie` or `dynamic`; none when it is not an ELF file.
    pub linkage: Option<String>,
    /// The ELF machine (`x86_64`, `aarch64`, …).
    pub machine: Option<String>,
}

/// What a comparison row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ComparisonKind {
    /// The image reported on, as it is.
    Image,
    /// The same layers recompressed with the other codec.
    Codec,
    /// The image's layers on a reference base image (published figure + this image's layers).
    ReferenceBase,
    /// An image layout given with `--compare`, measured.
    Layout,
    /// A glibc-dynamic build of the same binary on a base that has glibc (`--with-gnu`).
    GlibcDynamic,
}

/// One row of the comparison.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Comparison {
    /// What the row shows, for people.
    pub label: String,
    /// What kind of row it is.
    pub kind: ComparisonKind,
    /// What a pull transfers (for reference bases: the published base figure plus this
    /// image's layers, config and manifest).
    pub compressed: u64,
    /// The uncompressed size, where known.
    pub uncompressed: Option<u64>,
    /// Whether `compressed` rests on a rounded published figure.
    pub approximate: bool,
    /// The digest of the image compared with, where known.
    pub digest: Option<String>,
    /// Where a published figure comes from (URL) and its date, or the layout measured.
    pub source: Option<String>,
}

/// `--budget` for one platform.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct BudgetResult {
    /// The platform.
    pub platform: String,
    /// The budget.
    pub limit: u64,
    /// The compressed size measured.
    pub compressed: u64,
    /// `limit - compressed`: what is left (negative: by how much it is over).
    pub margin: i64,
    /// Whether `compressed <= limit`.
    pub passed: bool,
}

/// `--baseline` for one platform.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GrowthResult {
    /// The platform.
    pub platform: String,
    /// The baseline's compressed size.
    pub baseline: u64,
    /// The compressed size now.
    pub compressed: u64,
    /// `compressed - baseline` (negative: it shrank).
    pub delta: i64,
    /// `delta` as a percentage of `baseline`.
    pub percent: f64,
    /// The growth allowed by `--max-growth` in bytes; none without it (report only).
    pub allowed: Option<u64>,
    /// Whether `delta <= allowed` (always true without `--max-growth`).
    pub passed: bool,
    /// Layers whose size changed, by position (a layer only in one report has size 0 in the
    /// other).
    pub layers: Vec<LayerGrowth>,
}

/// One layer's change against the baseline.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LayerGrowth {
    /// Position, 1 = bottom layer.
    pub position: usize,
    /// The layer's digest now (or in the baseline when it is gone).
    pub digest: String,
    /// The largest file it holds now, if any (what most likely grew).
    pub holds: Option<String>,
    /// Its compressed size in the baseline.
    pub baseline: u64,
    /// Its compressed size now.
    pub compressed: u64,
    /// `compressed - baseline`.
    pub delta: i64,
}
