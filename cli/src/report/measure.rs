//! Measures images in OCI layouts: each platform's manifest, config and layers as stored
//! (what a pull transfers), each layer decompressed and read as a tar stream (uncompressed
//! size, entries, largest files, optionally recompressed with the other codec), and the
//! binary the image runs.
//!
//! Every blob is read through `oci`'s verified reader (regular files inside the layout only,
//! the descriptor's size checked against the file before reading) and its one walker, and
//! streamed with its digest checked as it is read, so the figures are those of the bytes on
//! disk and a tampered layout is an error.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};

use anyhow::{Context, Result};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use sha2::{Digest as _, Sha256};

use super::cache::Cache;
use super::model::{BaseSplit, BinaryReport, Codec, FileEntry, LayerReport, PlatformReport};
use crate::digest::Sha256Digest;
use crate::error;
use crate::oci::base;
use crate::oci::gzip::ParallelGzEncoder;
use crate::oci::layer;
use crate::oci::layout::{self, ImageRef, Layout};
use crate::oci::media::{LayerCodec, MediaKind};
use crate::oci::walk::{self, Graph, WalkOptions};

/// `gzip -9`, the level the report's gzip figures use: airlock's gzip (libdeflate) at level 9,
/// as `image --level 9` writes it, a little smaller than GNU `gzip -9`.
pub const GZIP_LEVEL: u32 = 9;
/// `zstd -19`, the level the report's zstd figures use.
pub const ZSTD_LEVEL: i32 = 19;
/// How many of a layer's largest files the report lists.
const LARGEST_FILES: usize = 5;
/// The largest layer (as stored) or binary the report recompresses unless asked to
/// (`--recompress`): `zstd -19` of it takes seconds on two cores, of a 400 MB layer minutes.
pub const RECOMPRESS_LIMIT: u64 = 16 << 20;

/// Which layers (and binaries) to compress with a codec they are not stored in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recompress {
    /// None.
    Never,
    /// Those up to [`RECOMPRESS_LIMIT`] bytes.
    Bounded,
    /// All (`--recompress`).
    Always,
}

impl Recompress {
    /// Whether something of `size` bytes is recompressed.
    pub fn applies(self, size: u64) -> bool {
        match self {
            Recompress::Never => false,
            Recompress::Bounded => size <= RECOMPRESS_LIMIT,
            Recompress::Always => true,
        }
    }
}

/// How much to measure.
#[derive(Debug, Clone, Copy)]
pub struct Depth {
    /// Which layers to recompress with the other codec (gzip -9 / zstd -19).
    pub recompress: Recompress,
    /// Find the binary the image runs and measure it.
    pub binary: bool,
}

/// An image measured in a layout.
#[derive(Debug)]
pub struct MeasuredImage {
    /// `oci:PATH[:TAG]`.
    pub reference: String,
    /// The digest of its `index.json` entry.
    pub digest: Sha256Digest,
    /// The entry's media type.
    pub media_type: String,
    /// The index document's size, for a multi-platform image.
    pub index_size: Option<u64>,
    /// The platforms, in index order.
    pub platforms: Vec<MeasuredPlatform>,
}

/// One platform of a measured image.
#[derive(Debug)]
pub struct MeasuredPlatform {
    /// The figures (binary and comparisons not filled in).
    pub report: PlatformReport,
    /// The OCI architecture (`amd64`, `arm64`).
    pub architecture: String,
    /// The binary found in the layers, measured.
    pub binary: Option<FoundBinary>,
    /// What was left unmeasured, and how to measure it.
    pub notes: Vec<String>,
}

/// Opens `image` and measures every platform in it.
pub fn measure_image(
    image: &ImageRef,
    depth: Depth,
    cache: Option<&Cache>,
) -> Result<MeasuredImage> {
    let layout = Layout::open(&image.path)?;
    let top = layout.resolve(image.tag.as_deref())?.clone();
    let digest = layout::descriptor_digest(&top)?;
    let media_type = top.media_type().to_string();
    let reference = image.to_string();
    let kind = MediaKind::of(top.media_type());
    let (index_size, manifests) = if kind.is_index() {
        let index: ImageIndex = layout.read_json(&top)?;
        let manifests: Vec<Descriptor> = index
            .manifests()
            .iter()
            .filter(|d| !is_attestation(d))
            .cloned()
            .collect();
        if manifests.is_empty() {
            return Err(error::input(format!(
                "{reference}: the index {digest} lists no image manifest"
            )));
        }
        if let Some(nested) = manifests
            .iter()
            .find(|d| MediaKind::of(d.media_type()).is_index())
        {
            return Err(error::input(format!(
                "{} is an index inside an index; airlock reports on one level of platforms",
                nested.digest()
            )));
        }
        (Some(top.size()), manifests)
    } else if kind.is_manifest() {
        (None, vec![top.clone()])
    } else {
        return Err(error::input(format!(
            "{reference}: `index.json` points at a {media_type}, not an image manifest or index"
        )));
    };
    // Every manifest read and verified, every config and layer there with its size, before
    // anything is measured.
    let graph = walk::walk(layout.blobs(), &manifests, &WalkOptions::default())?
        .checked()
        .with_context(|| format!("measuring {reference}"))?;
    let mut platforms = Vec::with_capacity(manifests.len());
    // Platforms often share layers (an essentials layer): read each blob once.
    let mut scanned = HashMap::new();
    for descriptor in &manifests {
        platforms.push(
            measure_platform(&layout, &graph, descriptor, depth, cache, &mut scanned)
                .with_context(|| format!("measuring {reference}"))?,
        );
    }
    Ok(MeasuredImage {
        reference,
        digest,
        media_type,
        index_size,
        platforms,
    })
}

/// BuildKit's provenance and SBOM manifests ride in the index as `unknown/unknown`
/// platforms; they are not images anyone pulls to run.
fn is_attestation(descriptor: &Descriptor) -> bool {
    let annotated = descriptor
        .annotations()
        .as_ref()
        .and_then(|a| a.get("vnd.docker.reference.type"))
        .is_some_and(|t| t == "attestation-manifest");
    let unknown = descriptor
        .platform()
        .as_ref()
        .is_some_and(|p| p.os().to_string() == "unknown");
    annotated || unknown
}

fn measure_platform(
    layout: &Layout,
    graph: &Graph,
    descriptor: &Descriptor,
    depth: Depth,
    cache: Option<&Cache>,
    scanned: &mut HashMap<String, LayerScan>,
) -> Result<MeasuredPlatform> {
    let manifest: &ImageManifest = graph
        .manifest(&layout::descriptor_digest(descriptor)?)
        .with_context(|| format!("{} is not an image manifest", descriptor.digest()))?;
    let config: ImageConfiguration = layout.read_json(manifest.config())?;
    let platform = platform_name(descriptor, &config);
    let diff_ids = config.rootfs().diff_ids();
    let mut layers = Vec::with_capacity(manifest.layers().len());
    let mut scans = Vec::with_capacity(manifest.layers().len());
    let mut notes = Vec::new();
    for (position, layer) in manifest.layers().iter().enumerate() {
        let key = format!("{}|{}", layer.digest(), layer.media_type());
        let scan = match scanned.get(&key) {
            Some(scan) => scan.clone(),
            None => {
                let label = LayerLabel {
                    platform: &platform,
                    position,
                    count: manifest.layers().len(),
                };
                let recompress = depth.recompress.applies(layer.size());
                if depth.recompress == Recompress::Bounded && !recompress {
                    notes.push(format!(
                        "{platform}: layer {} ({}, {}) not recompressed with the other codec: \
                         larger than {}; `--recompress` measures it",
                        position + 1,
                        layer.digest(),
                        crate::render::human_bytes(layer.size()),
                        crate::render::human_bytes(RECOMPRESS_LIMIT)
                    ));
                }
                let cache_key = format!("{key}|recompressed={recompress}");
                let scan = match cache.and_then(|c| c.get::<LayerScan>("layer", &cache_key)) {
                    Some(scan) => {
                        // The figures are known; the blob is still the one named, or an error.
                        layout.blobs().verify(layer)?;
                        scan
                    }
                    None => {
                        let scan = scan_layer(layout, layer, recompress, &label)?;
                        if let Some(cache) = cache {
                            cache.put("layer", &cache_key, &scan);
                        }
                        scan
                    }
                };
                scanned.insert(key, scan.clone());
                scan
            }
        };
        if let Some(expected) = diff_ids.get(position)
            && *expected != scan.diff_id.to_string()
        {
            crate::progress::warn(format!(
                "{platform}: layer {} ({}) decompresses to {}, but the config's diff_id is {expected}",
                position + 1,
                layer.digest(),
                scan.diff_id
            ));
        }
        layers.push(LayerReport {
            digest: layer.digest().to_string(),
            media_type: layer.media_type().to_string(),
            codec: scan.codec,
            compressed: layer.size(),
            uncompressed: scan.uncompressed,
            gzip: scan.gzip,
            zstd: scan.zstd,
            entries: scan.entries,
            files: scan.files,
            largest: scan.largest.clone(),
            from_base: false,
        });
        scans.push(scan);
    }
    let base = base_split(manifest, &mut layers);
    let compressed = descriptor.size()
        + manifest.config().size()
        + manifest.layers().iter().map(|l| l.size()).sum::<u64>();
    let uncompressed = layers.iter().map(|l| l.uncompressed).sum();
    let binary = if depth.binary {
        find_binary(
            layout,
            manifest.layers(),
            &scans,
            &config,
            depth.recompress,
            &platform,
            cache,
        )?
    } else {
        None
    };
    Ok(MeasuredPlatform {
        report: PlatformReport {
            platform,
            manifest_digest: descriptor.digest().to_string(),
            manifest_size: descriptor.size(),
            config_digest: manifest.config().digest().to_string(),
            config_size: manifest.config().size(),
            compressed,
            uncompressed,
            layers,
            base,
            binary: None,
            gnu_binary: None,
            comparisons: Vec::new(),
        },
        architecture: config.architecture().to_string(),
        binary,
        notes,
    })
}

/// The split the manifest's annotations give, with the base's layers marked; None when it
/// does not say how many layers are the base's (or says more than it has).
fn base_split(manifest: &ImageManifest, layers: &mut [LayerReport]) -> Option<BaseSplit> {
    let annotations = manifest.annotations().as_ref()?;
    let count: usize = annotations.get(base::BASE_LAYERS)?.parse().ok()?;
    if count > layers.len() {
        return None;
    }
    for layer in &mut layers[..count] {
        layer.from_base = true;
    }
    let (base, own) = layers.split_at(count);
    let sum = |layers: &[LayerReport], pick: fn(&LayerReport) -> u64| -> u64 {
        layers.iter().map(pick).sum()
    };
    Some(BaseSplit {
        name: annotations.get(base::BASE_NAME).cloned(),
        digest: annotations.get(base::BASE_DIGEST).cloned(),
        base_layers: base.len() as u64,
        base_compressed: sum(base, |l| l.compressed),
        base_uncompressed: sum(base, |l| l.uncompressed),
        own_layers: own.len() as u64,
        own_compressed: sum(own, |l| l.compressed),
        own_uncompressed: sum(own, |l| l.uncompressed),
    })
}

fn platform_name(descriptor: &Descriptor, config: &ImageConfiguration) -> String {
    let (os, arch, variant) = match descriptor.platform() {
        Some(p) => (
            p.os().to_string(),
            p.architecture().to_string(),
            p.variant().clone(),
        ),
        None => (
            config.os().to_string(),
            config.architecture().to_string(),
            config.variant().clone(),
        ),
    };
    match variant {
        Some(v) if !v.is_empty() => format!("{os}/{arch}/{v}"),
        _ => format!("{os}/{arch}"),
    }
}

/// The report's codec of a layer media type (OCI and Docker names), from `oci`'s classifier.
pub fn codec_of(media_type: &str) -> Option<Codec> {
    MediaKind::of_str(media_type)
        .layer_codec()
        .map(|codec| match codec {
            LayerCodec::Gzip => Codec::Gzip,
            LayerCodec::Zstd => Codec::Zstd,
            LayerCodec::Tar => Codec::None,
        })
}

/// What a layer holds, read in one pass.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct LayerScan {
    codec: Codec,
    uncompressed: u64,
    diff_id: Sha256Digest,
    gzip: Option<u64>,
    zstd: Option<u64>,
    entries: u64,
    files: u64,
    largest: Vec<FileEntry>,
    nodes: Vec<(String, Node)>,
}

/// A tar entry, as far as finding the binary is concerned.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum Node {
    File {
        size: u64,
        elf_executable: bool,
    },
    Symlink(String),
    /// `.wh.NAME`: deletes NAME from the layers below.
    Whiteout,
    /// `.wh..wh..opq`: deletes the directory's contents from the layers below.
    Opaque,
    Other,
}

/// Counts the bytes written into it.
#[derive(Default)]
struct Counter(u64);

impl Write for Counter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A compressor whose output is only counted: the layer's size in the other codec as `image`
/// writes it, on every core (gzip in parallel chunks, zstd on its worker threads), so a large
/// layer takes the time `image` would, not one core's.
enum Recompressor {
    Gzip(ParallelGzEncoder<Counter>),
    Zstd(zstd::stream::write::Encoder<'static, Counter>),
}

impl Recompressor {
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Recompressor::Gzip(w) => w.write_all(bytes),
            Recompressor::Zstd(w) => w.write_all(bytes),
        }
    }
    fn finish(self) -> io::Result<(Codec, u64)> {
        Ok(match self {
            Recompressor::Gzip(w) => (Codec::Gzip, w.finish()?.0),
            Recompressor::Zstd(w) => (Codec::Zstd, w.finish()?.0),
        })
    }
}

/// Counts and hashes the decompressed stream, and feeds it to the recompressors.
struct Tee<R> {
    inner: R,
    read: u64,
    hasher: Sha256,
    recompressors: Vec<Recompressor>,
}

impl<R: Read> Read for Tee<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.read += n as u64;
        for r in &mut self.recompressors {
            r.write_all(&buf[..n])?;
        }
        Ok(n)
    }
}

/// The decompressed stream of a layer blob.
fn decompress<'a>(codec: Codec, blob: impl Read + 'a) -> Result<Box<dyn Read + 'a>> {
    Ok(match codec {
        Codec::Gzip => Box::new(flate2::read::MultiGzDecoder::new(blob)),
        Codec::Zstd => {
            Box::new(zstd::stream::read::Decoder::new(blob).context("cannot start zstd")?)
        }
        Codec::None => Box::new(blob),
    })
}

/// About how many bytes the layer at `path` (`size` bytes as stored) decompresses to, for
/// zstd's plan ([`layer::ZstdPlan::for_input`]): a gzip member's trailer says it modulo 4 GiB
/// (RFC 1952 `ISIZE`), never less than the stored size is taken.
fn uncompressed_hint(path: &std::path::Path, codec: Codec, size: u64) -> u64 {
    let isize = || -> Result<u64> {
        use std::io::{Seek, SeekFrom};
        let mut file = crate::input::open_regular(path, crate::input::Links::Refuse)?.file;
        file.seek(SeekFrom::End(-4))?;
        let mut trailer = [0u8; 4];
        file.read_exact(&mut trailer)?;
        Ok(u32::from_le_bytes(trailer).into())
    };
    match codec {
        Codec::Gzip => isize().map_or(size, |isize| isize.max(size)),
        Codec::Zstd | Codec::None => size,
    }
}

/// Which layer of which platform a scan is, for progress: `layer 1/2 of linux/amd64`.
struct LayerLabel<'a> {
    platform: &'a str,
    position: usize,
    count: usize,
}

fn scan_layer(
    layout: &Layout,
    descriptor: &Descriptor,
    recompress: bool,
    label: &LayerLabel<'_>,
) -> Result<LayerScan> {
    let media_type = descriptor.media_type().to_string();
    let codec = codec_of(&media_type).ok_or_else(|| {
        error::input(format!(
            "layer {} has media type {media_type}, which is not a tar layer (plain, gzip or zstd)",
            descriptor.digest()
        ))
    })?;
    let mut blob = layout.blobs().open_verified(descriptor)?;
    let path = blob.path().to_path_buf();
    // Recompressing with gzip -9 and zstd -19 takes minutes on a large layer: say which
    // layer, and how far it is.
    let work = match (recompress, codec) {
        (false, _) => "reading",
        (true, Codec::Gzip) => "recompressing with zstd -19",
        (true, Codec::Zstd) => "recompressing with gzip -9",
        (true, Codec::None) => "recompressing with gzip -9 and zstd -19",
    };
    let what = format!(
        "layer {}/{} of {} ({}, {}): {work}",
        label.position + 1,
        label.count,
        label.platform,
        descriptor.digest(),
        crate::render::human_bytes(descriptor.size())
    );
    crate::progress::detail(format!("measuring {what}"));
    let progress = crate::progress::bytes_bar_for(descriptor.size(), "Measuring", what);
    let scan = {
        let mut recompressors = Vec::new();
        if recompress {
            if codec != Codec::Gzip {
                recompressors.push(Recompressor::Gzip(ParallelGzEncoder::new(
                    Counter::default(),
                    GZIP_LEVEL,
                )));
            }
            if codec != Codec::Zstd {
                recompressors.push(Recompressor::Zstd(layer::zstd_encoder(
                    Counter::default(),
                    ZSTD_LEVEL,
                    layer::zstd_workers(),
                    uncompressed_hint(&path, codec, descriptor.size()),
                )?));
            }
        }
        let tee = Tee {
            inner: decompress(codec, progress.wrap_read(&mut blob))?,
            read: 0,
            hasher: Sha256::new(),
            recompressors,
        };
        read_tar(tee, codec, descriptor.size())
    };
    progress.finish_and_clear();
    match scan {
        Ok(scan) => {
            blob.finish()?;
            Ok(scan)
        }
        // A blob that does not decompress is most often a blob that changed: say so when
        // its digest no longer matches.
        Err(e) => {
            blob.finish()?;
            Err(e.context(format!(
                "layer {} in {} is not a readable {media_type}",
                descriptor.digest(),
                path.display()
            )))
        }
    }
}

fn read_tar<R: Read>(tee: Tee<R>, codec: Codec, compressed: u64) -> Result<LayerScan> {
    let mut archive = tar::Archive::new(tee);
    let mut entries = 0u64;
    let mut files = 0u64;
    let mut largest: Vec<FileEntry> = Vec::new();
    let mut nodes = Vec::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        entries += 1;
        let path = image_path(&entry.path_bytes());
        let kind = entry.header().entry_type();
        let name = path.rsplit('/').next().unwrap_or("");
        let node = if let Some(hidden) = name.strip_prefix(".wh.") {
            let parent = &path[..path.len() - name.len()];
            if hidden == ".wh..opq" {
                nodes.push((parent.trim_end_matches('/').to_owned(), Node::Opaque));
            } else {
                nodes.push((format!("{parent}{hidden}"), Node::Whiteout));
            }
            continue;
        } else if kind.is_file() {
            files += 1;
            let size = entry.header().size()?;
            let mode = entry.header().mode()?;
            let mut magic = [0u8; 4];
            let elf_executable = mode & 0o111 != 0
                && size >= 4
                && entry.read_exact(&mut magic).is_ok()
                && magic == *b"\x7fELF";
            note_largest(&mut largest, &path, size);
            Node::File {
                size,
                elf_executable,
            }
        } else if kind.is_symlink() {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned())
                .unwrap_or_default();
            Node::Symlink(target)
        } else {
            Node::Other
        };
        nodes.push((path, node));
    }
    let mut tee = archive.into_inner();
    // The end-of-archive blocks and any padding count too: they are in the layer.
    io::copy(&mut tee, &mut io::sink())?;
    let uncompressed = tee.read;
    let diff_id = Sha256Digest::from_hex(&hex::encode(tee.hasher.finalize()))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let (mut gzip, mut zstd) = match codec {
        Codec::Gzip => (Some(compressed), None),
        Codec::Zstd => (None, Some(compressed)),
        Codec::None => (None, None),
    };
    for r in tee.recompressors {
        match r.finish()? {
            (Codec::Gzip, n) => gzip = Some(n),
            (Codec::Zstd, n) => zstd = Some(n),
            (Codec::None, _) => {}
        }
    }
    Ok(LayerScan {
        codec,
        uncompressed,
        diff_id,
        gzip,
        zstd,
        entries,
        files,
        largest,
        nodes,
    })
}

/// A tar entry path as an absolute path in the image (`./bin/app`, `bin/app` → `/bin/app`).
fn image_path(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let parts: Vec<&str> = text
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

fn note_largest(largest: &mut Vec<FileEntry>, path: &str, size: u64) {
    if largest.len() == LARGEST_FILES && largest.last().is_some_and(|l| l.size >= size) {
        return;
    }
    largest.push(FileEntry {
        path: path.to_owned(),
        size,
    });
    largest.sort_by(|a, b| b.size.cmp(&a.size).then_with(|| a.path.cmp(&b.path)));
    largest.truncate(LARGEST_FILES);
}

/// The file system the layers make together: path → (layer, node), with whiteouts applied
/// (image-spec `layer.md`, "Whiteouts").
fn merged_view(scans: &[LayerScan]) -> BTreeMap<String, (usize, Node)> {
    let mut view: BTreeMap<String, (usize, Node)> = BTreeMap::new();
    for (layer, scan) in scans.iter().enumerate() {
        for (path, node) in &scan.nodes {
            match node {
                Node::Whiteout => {
                    let below = format!("{path}/");
                    view.retain(|p, (l, _)| *l == layer || (p != path && !p.starts_with(&below)));
                }
                Node::Opaque => {
                    let below = format!("{}/", path.trim_end_matches('/'));
                    view.retain(|p, (l, _)| *l == layer || !p.starts_with(&below));
                }
                _ => {}
            }
        }
        for (path, node) in &scan.nodes {
            if !matches!(node, Node::Whiteout | Node::Opaque) {
                view.insert(path.clone(), (layer, node.clone()));
            }
        }
    }
    view
}

/// Follows symlinks (at most 16) from `path` to a regular file in `view`.
fn resolve<'v>(
    view: &'v BTreeMap<String, (usize, Node)>,
    path: &str,
) -> Option<(String, &'v (usize, Node))> {
    let mut current = image_path(path.as_bytes());
    for _ in 0..16 {
        let found = view.get(&current)?;
        match &found.1 {
            Node::File { .. } => return Some((current, found)),
            Node::Symlink(target) => {
                current = if target.starts_with('/') {
                    image_path(target.as_bytes())
                } else {
                    let parent = current.rsplit_once('/').map_or("", |(p, _)| p);
                    normalize(&format!("{parent}/{target}"))
                };
            }
            _ => return None,
        }
    }
    None
}

/// Resolves `.` and `..` in an absolute path.
fn normalize(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// The binary an image runs, measured as it streams out of its layer.
#[derive(Debug, Clone)]
pub struct FoundBinary {
    /// Its figures (`built` filled in from the layer's annotation).
    pub report: BinaryReport,
}

/// The compressed sizes a layer gives for the binary alone in it: its size as stored in its
/// own codec, and its recompression in the other; each None when not known.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerRecompressed {
    /// The gzip layer's size, or `gzip -9` of the layer's tar.
    pub gzip: Option<u64>,
    /// The zstd layer's size, or `zstd -19` of the layer's tar.
    pub zstd: Option<u64>,
}

/// The size as built that `annotations` (a binary layer's) record for `path`. A layout is
/// hostile input: a malformed value means no figure, never an error.
fn built_size(annotations: Option<&HashMap<String, String>>, path: &str) -> Option<u64> {
    let value = annotations?.get(crate::oci::image::BUILT_SIZES_ANNOTATION)?;
    value.split(',').find_map(|entry| {
        let (p, size) = entry.rsplit_once('=')?;
        (p == path).then(|| size.parse().ok()).flatten()
    })
}

/// The binary the image runs: its entrypoint (or command) when the layers hold it, else the
/// largest executable ELF file.
fn find_binary(
    layout: &Layout,
    layers: &[Descriptor],
    scans: &[LayerScan],
    config: &ImageConfiguration,
    recompress: Recompress,
    platform: &str,
    cache: Option<&Cache>,
) -> Result<Option<FoundBinary>> {
    use super::model::BinarySource;
    let view = merged_view(scans);
    let runs = config.config().as_ref().and_then(|c| {
        c.entrypoint()
            .as_ref()
            .and_then(|e| e.first().cloned())
            .or_else(|| c.cmd().as_ref().and_then(|c| c.first().cloned()))
    });
    let search_path = config
        .config()
        .as_ref()
        .and_then(|c| c.env().as_ref())
        .and_then(|env| {
            env.iter()
                .find_map(|e| e.strip_prefix("PATH=").map(str::to_owned))
        })
        .unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".to_owned());
    let from_entrypoint = runs.and_then(|program| {
        let candidates: Vec<String> = if program.contains('/') {
            vec![program]
        } else {
            search_path
                .split(':')
                .map(|dir| format!("{}/{program}", dir.trim_end_matches('/')))
                .collect()
        };
        candidates.iter().find_map(|c| resolve(&view, c))
    });
    let chosen = match from_entrypoint {
        Some((path, (layer, _))) => Some((path, *layer, BinarySource::Entrypoint)),
        None => view
            .iter()
            .filter_map(|(path, (layer, node))| match node {
                Node::File {
                    size,
                    elf_executable: true,
                } => Some((path, *layer, *size)),
                _ => None,
            })
            .max_by(|a, b| a.2.cmp(&b.2).then_with(|| b.0.cmp(a.0)))
            .map(|(path, layer, _)| (path.clone(), layer, BinarySource::LargestExecutable)),
    };
    let Some((path, layer, source)) = chosen else {
        return Ok(None);
    };
    let Some((_, Node::File { size, .. })) = view.get(&path) else {
        return Ok(None);
    };
    let descriptor = &layers[layer];
    let built = built_size(descriptor.annotations().as_ref(), &path);
    let known = match scans.get(layer) {
        // Alone in its layer: the layer's size as stored is the binary compressed (with its
        // tar headers) in the layer's codec, and its recompression the other codec's figure.
        Some(scan) if scan.files == 1 => LayerRecompressed {
            gzip: scan.gzip,
            zstd: scan.zstd,
        },
        _ => LayerRecompressed::default(),
    };
    let compress = recompress.applies(*size);
    let cache_key = format!(
        "{}|{path}|compressed={compress}|known={:?}/{:?}",
        descriptor.digest(),
        known.gzip,
        known.zstd
    );
    if let Some(mut report) = cache.and_then(|c| c.get::<BinaryReport>("binary", &cache_key)) {
        report.built = built;
        return Ok(Some(FoundBinary { report }));
    }
    let what = format!(
        "{platform}: {path} ({}) stripped, with gzip -9 and zstd -19",
        crate::render::human_bytes(*size)
    );
    crate::progress::detail(format!("measuring {what}"));
    let spinner = crate::progress::spinner("Measuring", what);
    let measured =
        super::binary::measure_streamed(&path, source, *size, known, compress, &mut |visit| {
            with_file_in_layer(layout, descriptor, &path, visit)
        });
    spinner.finish_and_clear();
    let mut report = measured?;
    if let Some(cache) = cache {
        cache.put("binary", &cache_key, &report);
    }
    report.built = built;
    Ok(Some(FoundBinary { report }))
}

/// Streams one regular file out of a layer into `visit`, then checks the layer's digest: what
/// was read counts only if it is still the blob the manifest names.
fn with_file_in_layer(
    layout: &Layout,
    descriptor: &Descriptor,
    wanted: &str,
    visit: &mut dyn FnMut(&mut dyn Read) -> Result<()>,
) -> Result<()> {
    let codec = codec_of(descriptor.media_type().as_ref()).unwrap_or(Codec::None);
    let mut blob = layout.blobs().open_verified(descriptor)?;
    let path = blob.path().to_path_buf();
    let mut found = false;
    {
        let mut archive = tar::Archive::new(decompress(codec, &mut blob)?);
        for entry in archive.entries()? {
            let mut entry = entry?;
            if image_path(&entry.path_bytes()) != wanted || !entry.header().entry_type().is_file() {
                continue;
            }
            visit(&mut entry)
                .with_context(|| format!("cannot read {wanted} from {}", path.display()))?;
            found = true;
            break;
        }
    }
    blob.finish()?;
    if !found {
        return Err(anyhow::anyhow!(
            "{wanted} vanished from layer {} between two reads",
            descriptor.digest()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_codecs() {
        assert_eq!(image_path(b"./bin/app"), "/bin/app");
        assert_eq!(image_path(b"bin//app/"), "/bin/app");
        assert_eq!(normalize("/usr/bin/../lib/./x"), "/usr/lib/x");
        assert_eq!(
            codec_of("application/vnd.oci.image.layer.v1.tar+gzip"),
            Some(Codec::Gzip)
        );
        assert_eq!(
            codec_of("application/vnd.docker.image.rootfs.diff.tar.gzip"),
            Some(Codec::Gzip)
        );
        assert_eq!(
            codec_of("application/vnd.oci.image.layer.v1.tar+zstd"),
            Some(Codec::Zstd)
        );
        assert_eq!(
            codec_of("application/vnd.oci.image.layer.v1.tar"),
            Some(Codec::None)
        );
        assert_eq!(codec_of("application/vnd.in-toto+json"), None);
    }

    #[test]
    fn largest_keeps_five_in_order() {
        let mut largest = Vec::new();
        for (i, size) in [3u64, 9, 1, 7, 5, 8, 2].iter().enumerate() {
            note_largest(&mut largest, &format!("/f{i}"), *size);
        }
        let sizes: Vec<u64> = largest.iter().map(|f| f.size).collect();
        assert_eq!(sizes, [9, 8, 7, 5, 3]);
    }

    #[test]
    fn whiteouts_hide_lower_layers() {
        let file = |size| Node::File {
            size,
            elf_executable: true,
        };
        let scan = |nodes: Vec<(&str, Node)>| LayerScan {
            codec: Codec::None,
            uncompressed: 0,
            diff_id: Sha256Digest::of(b""),
            gzip: None,
            zstd: None,
            entries: 0,
            files: 0,
            largest: Vec::new(),
            nodes: nodes.into_iter().map(|(p, n)| (p.to_owned(), n)).collect(),
        };
        let scans = vec![
            scan(vec![
                ("/a", file(1)),
                ("/d/x", file(2)),
                ("/d/y", file(3)),
                ("/link", Node::Symlink("d/y".into())),
            ]),
            scan(vec![
                ("/a", Node::Whiteout),
                ("/d", Node::Opaque),
                ("/d/z", file(4)),
            ]),
        ];
        let view = merged_view(&scans);
        let paths: Vec<&str> = view.keys().map(String::as_str).collect();
        assert_eq!(paths, ["/d/z", "/link"]);
        assert!(resolve(&view, "/link").is_none());
        let view = merged_view(&scans[..1]);
        assert_eq!(resolve(&view, "/link").unwrap().0, "/d/y");
    }
}
