//! Base images: the image an airlock image is built on (`--base REF`), instead of nothing.
//!
//! A base comes from an OCI layout (`oci:DIR[:TAG]`), an archive (`oci-archive:FILE[:TAG]`) or
//! a registry (`docker://REGISTRY/REPOSITORY:TAG` or `@sha256:…`). Registry bases are pulled
//! by `registry::pull` through the [`RegistrySource`] this module defines (`oci` never touches
//! the network) into a [`BaseCache`], a layout keyed by the pinned digest, and read from there,
//! so the next build works offline. For each target the matching platform's manifest is
//! chosen; its layers are checked (the digest of every blob, each layer's `diff_id`, and no
//! entry that leaves the root) and later copied byte for byte; its config is what the image's
//! config is merged onto.
//!
//! Every blob is read through the verified reader and every manifest through the one walker.
//! A base never runs, and nothing of it is extracted to disk.

mod archive;
pub mod cache;
mod scan;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result};
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, MediaType, Platform};
use serde::Serialize;

use crate::digest::Sha256Digest;
use crate::error::{self, ExitKind};
use crate::oci::blob::BlobStore;
use crate::oci::document;
use crate::oci::layer::Layer;
use crate::oci::layout::{self, ImageRef, Layout, validate_tag};
use crate::oci::media::{self, MediaKind};
use crate::oci::walk::{self, WalkOptions};
use crate::progress;
use crate::target::Arch;

pub use cache::BaseCache;

/// The image this one is built on, by name (image-spec `annotations.md`).
pub const BASE_NAME: &str = "org.opencontainers.image.base.name";
/// The digest of what [`BASE_NAME`] names: for a multi-platform base, its index (the spec
/// asks for the digest of the manifest the name refers to, so a rebuild tool can compare the
/// two).
pub const BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
/// How many of the manifest's layers, from the bottom, are the base's: `report` counts base
/// and own layers apart with it. Reverse-domain name of airlock's repository, as image-spec
/// `annotations.md` asks of keys outside `org.opencontainers`.
pub const BASE_LAYERS: &str = "io.github.airlock-rs.image.base.layers";

/// Where a base image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseRef {
    /// `oci:DIR[:TAG]`: an image in an OCI layout.
    Layout(ImageRef),
    /// `oci-archive:FILE[:TAG]`: an OCI layout in a tar file.
    Archive {
        /// The tar file.
        path: PathBuf,
        /// The tag in its `index.json`.
        tag: Option<String>,
    },
    /// `docker://REGISTRY/REPOSITORY[:TAG][@DIGEST]`: an image in a registry (the text after
    /// the transport, parsed by the [`RegistrySource`]).
    Registry(String),
}

impl BaseRef {
    /// The reference with relative layout and archive paths taken from `base` (the directory
    /// of the `Cargo.toml` that named it).
    pub fn relative_to(self, base: &Path) -> BaseRef {
        match self {
            BaseRef::Layout(ImageRef { path, tag }) if path.is_relative() => {
                BaseRef::Layout(ImageRef {
                    path: base.join(path),
                    tag,
                })
            }
            BaseRef::Archive { path, tag } if path.is_relative() => BaseRef::Archive {
                path: base.join(path),
                tag,
            },
            other => other,
        }
    }
}

impl FromStr for BaseRef {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<BaseRef> {
        if let Some(rest) = text.strip_prefix("docker://") {
            if rest.is_empty() {
                return Err(error::input(format!("`{text}` names no image")));
            }
            return Ok(BaseRef::Registry(rest.to_owned()));
        }
        if let Some(rest) = text.strip_prefix("oci-archive:") {
            let (path, tag) = split_tag(rest);
            if path.is_empty() {
                return Err(error::input(format!("`{text}` names no archive file")));
            }
            if let Some(tag) = tag {
                validate_tag(tag)?;
            }
            return Ok(BaseRef::Archive {
                path: PathBuf::from(path),
                tag: tag.map(str::to_owned),
            });
        }
        if text.starts_with("oci:") {
            return Ok(BaseRef::Layout(text.parse()?));
        }
        Err(error::input(format!(
            "`{text}` is not a base image reference: write oci:DIR[:TAG] (an OCI layout), \
             oci-archive:FILE[:TAG] (an archive) or docker://REGISTRY/REPOSITORY:TAG (a \
             registry; `@sha256:…` pins a digest)"
        )))
    }
}

impl fmt::Display for BaseRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BaseRef::Layout(image) => write!(f, "{image}"),
            BaseRef::Archive { path, tag } => {
                write!(f, "oci-archive:{}", path.display())?;
                match tag {
                    Some(tag) => write!(f, ":{tag}"),
                    None => Ok(()),
                }
            }
            BaseRef::Registry(reference) => write!(f, "docker://{reference}"),
        }
    }
}

impl<'de> serde::Deserialize<'de> for BaseRef {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|e: anyhow::Error| {
            serde::de::Error::custom(format!("base: {}", error_text(&e)))
        })
    }
}

fn error_text(e: &anyhow::Error) -> String {
    format!("{e:#}")
}

/// `PATH[:TAG]`: a tag never contains `/`, so a `:` after the last `/` starts it.
fn split_tag(text: &str) -> (&str, Option<&str>) {
    let last_slash = text.rfind('/').map_or(0, |i| i + 1);
    match text[last_slash..].rfind(':') {
        Some(i) => (&text[..last_slash + i], Some(&text[last_slash + i + 1..])),
        None => (text, None),
    }
}

/// A registry image as the registry client parsed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteName {
    /// `registry/repository`, fully qualified (`docker.io/library/debian`).
    pub name: String,
    /// The tag, if given.
    pub tag: Option<String>,
    /// The digest, if given: the pull checks what it gets against it.
    pub digest: Option<Sha256Digest>,
}

impl RemoteName {
    /// `name:tag`, else `name@digest`: the key of this image in the cache's `index.json`.
    pub fn key(&self) -> String {
        match (&self.tag, &self.digest) {
            (Some(tag), _) => format!("{}:{tag}", self.name),
            (None, Some(digest)) => format!("{}@{digest}", self.name),
            (None, None) => format!("{}:latest", self.name),
        }
    }
}

impl fmt::Display for RemoteName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Pulls base images from registries: `registry::pull` implements it, and whoever calls
/// [`image`](crate::oci::image::image) hands one in (the CLI, `dist`), since `oci` may not use
/// the layers above it.
pub trait RegistrySource: Send + Sync + fmt::Debug {
    /// Parses the text after `docker://`.
    fn parse(&self, reference: &str) -> Result<RemoteName>;

    /// Resolves `name` online (a tag to the digest it has now), and writes into `cache` the
    /// top manifest or index, the manifest of each of `arches`, and their configs and layers,
    /// each checked against its digest before it is kept; records the top descriptor under
    /// [`RemoteName::key`] and returns it.
    fn pull(&self, name: &RemoteName, arches: &[Arch], cache: &BaseCache) -> Result<Descriptor>;
}

/// What [`resolve`] needs.
#[derive(Debug, Clone, Copy)]
pub struct BaseOptions<'a> {
    /// The base.
    pub reference: &'a BaseRef,
    /// The architectures of the image: one manifest of the base each.
    pub arches: &'a [Arch],
    /// The cache of pulled bases (default: [`BaseCache::default_dir`]).
    pub cache_dir: Option<&'a Path>,
    /// How to pull from registries; without one a `docker://` base is refused.
    pub registry: Option<&'a dyn RegistrySource>,
}

/// One base layer, as it goes into the image: the base's blob, its descriptor (Docker media
/// types given as their OCI equivalents), and its `diff_id` checked.
#[derive(Debug, Clone)]
pub struct BaseLayer {
    /// The layer as the image's manifest and config name it.
    pub layer: Layer,
    /// Where the blob is read from.
    pub source: Descriptor,
}

/// The base of one platform.
#[derive(Debug, Clone)]
pub struct BasePlatform {
    /// The platform manifest's digest.
    pub manifest: Sha256Digest,
    /// Its config.
    pub config: ImageConfiguration,
    /// Its layers, bottom first.
    pub layers: Vec<BaseLayer>,
    /// Every path its layers hold (`etc/passwd`), to tell what airlock's layers replace.
    pub paths: BTreeSet<String>,
}

/// A base, resolved, pinned and checked for every architecture of the image.
#[derive(Debug)]
pub struct Base {
    /// The reference as given.
    pub reference: String,
    /// The image name for [`BASE_NAME`]: the registry reference, or the name a layout gives
    /// its image (`io.containerd.image.name`); None when there is none (a path is not a name,
    /// and would make the digest depend on where the layout is).
    pub name: Option<String>,
    /// The digest of the manifest or index the reference resolved to.
    pub digest: Sha256Digest,
    /// Whether a registry base came from the cache because the registry could not be reached.
    pub offline: bool,
    /// Where the blobs are: the layout, the unpacked archive, or the cache.
    root: PathBuf,
    /// Keeps an unpacked archive alive while the image is written.
    _unpacked: Option<tempfile::TempDir>,
    /// One entry per architecture.
    pub platforms: BTreeMap<Arch, BasePlatform>,
}

/// What the report says about the base.
#[derive(Debug, Clone, Serialize)]
pub struct BaseSummary {
    /// The reference as given.
    pub reference: String,
    /// The name recorded in [`BASE_NAME`].
    pub name: Option<String>,
    /// The pinned digest ([`BASE_DIGEST`]).
    pub digest: Sha256Digest,
    /// Whether it came from the cache because the registry could not be reached.
    pub offline: bool,
}

impl Base {
    /// The blobs of the base.
    pub fn blobs(&self) -> BlobStore<'_> {
        BlobStore::new(&self.root)
    }

    /// The report's view.
    pub fn summary(&self) -> BaseSummary {
        BaseSummary {
            reference: self.reference.clone(),
            name: self.name.clone(),
            digest: self.digest,
            offline: self.offline,
        }
    }

    /// The manifest annotations of an image built on this base.
    pub fn annotations(&self, platform: &BasePlatform) -> BTreeMap<String, String> {
        let mut annotations = BTreeMap::new();
        if let Some(name) = &self.name {
            annotations.insert(BASE_NAME.to_owned(), name.clone());
        }
        annotations.insert(BASE_DIGEST.to_owned(), self.digest.to_string());
        annotations.insert(BASE_LAYERS.to_owned(), platform.layers.len().to_string());
        annotations
    }
}

/// Finds, pins and checks the base for every architecture.
pub fn resolve(options: &BaseOptions<'_>) -> Result<Base> {
    let shown = options.reference.to_string();
    progress::status("Resolving", format!("base {shown}"));
    let (source, unpacked) = match options.reference {
        BaseRef::Layout(image) => (local(&image.path, image.tag.as_deref(), &shown)?, None),
        BaseRef::Archive { path, tag } => {
            let unpacked = archive::unpack(path)?;
            let source = local(unpacked.path(), tag.as_deref(), &shown)?;
            (source, Some(unpacked))
        }
        BaseRef::Registry(text) => (remote(text, options)?, None),
    };
    let store = BlobStore::new(&source.root);
    let platforms = load_platforms(store, &source.top, options.arches, &shown)
        .map_err(|e| source.explain(e))?;
    Ok(Base {
        reference: shown,
        name: source.name,
        digest: layout::descriptor_digest(&source.top)?,
        offline: source.offline,
        root: source.root,
        _unpacked: unpacked,
        platforms,
    })
}

/// Where a reference led: the layout holding it and its top descriptor.
struct Source {
    root: PathBuf,
    top: Descriptor,
    name: Option<String>,
    offline: bool,
    cached: bool,
}

impl Source {
    /// A fault of a blob in the cache is named as the cache's, with the way out.
    fn explain(&self, e: anyhow::Error) -> anyhow::Error {
        if self.cached {
            cache::explain_fault(&self.root, e)
        } else {
            e
        }
    }
}

fn local(root: &Path, tag: Option<&str>, shown: &str) -> Result<Source> {
    let layout = Layout::open(root).with_context(|| format!("cannot read the base {shown}"))?;
    let top = layout
        .resolve(tag)
        .with_context(|| format!("cannot read the base {shown}"))?
        .clone();
    let name = top
        .annotations()
        .as_ref()
        .and_then(|a| a.get(crate::oci::image::CONTAINERD_IMAGE_NAME))
        .cloned();
    Ok(Source {
        root: root.to_path_buf(),
        top,
        name,
        offline: false,
        cached: false,
    })
}

/// A registry base: from the cache when it is pinned by digest and whole there; else pulled;
/// else, when the registry cannot be reached, the cached copy of that tag.
fn remote(text: &str, options: &BaseOptions<'_>) -> Result<Source> {
    let registry = options.registry.ok_or_else(|| {
        error::input(format!(
            "docker://{text}: pulling a base image needs the registry client; call \
             airlock::oci::image::image with `registry` set (the CLI and dist do)"
        ))
    })?;
    let name = registry.parse(text)?;
    let cache_dir = match options.cache_dir {
        Some(dir) => dir.to_path_buf(),
        None => BaseCache::default_dir()?,
    };
    let cache = BaseCache::open(&cache_dir)?;
    let source = |top: Descriptor, offline: bool| Source {
        root: cache.root().to_path_buf(),
        top,
        name: Some(name.to_string()),
        offline,
        cached: true,
    };
    if let Some(digest) = name.digest
        && let Some(top) = cache.find_digest(&digest)
        && cache.holds(&top, options.arches)?
    {
        progress::detail(format!(
            "base {name}: in the cache {}",
            cache.root().display()
        ));
        return Ok(source(top, false));
    }
    match registry.pull(&name, options.arches, &cache) {
        Ok(top) => Ok(source(top, false)),
        Err(e) if error::exit_kind(&e) == ExitKind::Environment => {
            let cached = cache.find(&name.key());
            match cached {
                Some(top) if cache.holds(&top, options.arches)? => {
                    let digest = layout::descriptor_digest(&top)?;
                    progress::warn(format!(
                        "cannot reach the registry of {name} ({}); building on the cached \
                         {digest} that {} had when it was last pulled",
                        error_text(&e),
                        name.key()
                    ));
                    Ok(source(top, true))
                }
                _ => Err(e.context(format!(
                    "cannot pull the base {name}, and the cache {} holds no copy of it for \
                     every platform",
                    cache.root().display()
                ))),
            }
        }
        Err(e) => Err(e),
    }
}

/// The manifests for `arches` that `top` names (itself, when it is a manifest), each walked
/// with the one walker, and their configs and layers checked.
fn load_platforms(
    store: BlobStore<'_>,
    top: &Descriptor,
    arches: &[Arch],
    shown: &str,
) -> Result<BTreeMap<Arch, BasePlatform>> {
    let manifests = platform_manifests(store, top, arches, shown)?;
    let graph = walk::walk(
        store,
        &manifests.values().cloned().collect::<Vec<_>>(),
        &WalkOptions::default(),
    )?
    .checked()
    .with_context(|| format!("cannot read the base {shown}"))?;
    let mut scanned: BTreeMap<Sha256Digest, scan::LayerScan> = BTreeMap::new();
    let mut platforms = BTreeMap::new();
    for (arch, descriptor) in manifests {
        let digest = layout::descriptor_digest(&descriptor)?;
        let manifest = graph.manifest(&digest).ok_or_else(|| {
            error::input(format!(
                "{shown}: {digest} for {} is an index inside an index; name the platform's \
                 manifest or index directly",
                document::platform_name(arch)
            ))
        })?;
        let config = read_config(store, manifest.config(), arch, shown)?;
        let diff_ids = config.rootfs().diff_ids();
        if diff_ids.len() != manifest.layers().len() {
            return Err(error::check_failed(format!(
                "{shown}: the manifest {digest} has {} layers but its config lists {} diff_ids; \
                 the base is damaged",
                manifest.layers().len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::with_capacity(diff_ids.len());
        let mut paths = BTreeSet::new();
        for (source, diff_id) in manifest.layers().iter().zip(diff_ids) {
            let blob = layout::descriptor_digest(source)?;
            let scan = match scanned.get(&blob) {
                Some(scan) => scan.clone(),
                None => {
                    let scan = scan::scan_layer(store, source)
                        .with_context(|| format!("checking the base {shown}"))?;
                    scanned.insert(blob, scan.clone());
                    scan
                }
            };
            if scan.diff_id.to_string() != *diff_id {
                return Err(error::check_failed(format!(
                    "{shown}: layer {blob} decompresses to {}, but the config's diff_id is \
                     {diff_id}; the base is damaged",
                    scan.diff_id
                )));
            }
            paths.extend(scan.paths.iter().cloned());
            layers.push(BaseLayer {
                layer: Layer {
                    descriptor: oci_layer_descriptor(source),
                    diff_id: scan.diff_id,
                    uncompressed_size: scan.size,
                },
                source: source.clone(),
            });
        }
        platforms.insert(
            arch,
            BasePlatform {
                manifest: digest,
                config,
                layers,
                paths,
            },
        );
    }
    Ok(platforms)
}

/// The manifest descriptor for each architecture: the platform's entry of an index, or the
/// one manifest (whose config must then be for every architecture asked).
fn platform_manifests(
    store: BlobStore<'_>,
    top: &Descriptor,
    arches: &[Arch],
    shown: &str,
) -> Result<BTreeMap<Arch, Descriptor>> {
    let kind = MediaKind::of(top.media_type());
    if kind.is_manifest() {
        return Ok(arches.iter().map(|a| (*a, top.clone())).collect());
    }
    if !kind.is_index() {
        return Err(error::input(format!(
            "{shown} is a {}, not an image manifest or index",
            top.media_type()
        )));
    }
    let index: ImageIndex = store
        .read_json(top)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot read the base {shown}"))?;
    let mut found = BTreeMap::new();
    for arch in arches {
        let Some(manifest) = select_platform(index.manifests(), *arch)? else {
            let offered: Vec<String> = index
                .manifests()
                .iter()
                .filter_map(|d| d.platform().as_ref().map(platform_text))
                .collect();
            return Err(error::input(format!(
                "the base {shown} has no image for {} (it has: {}); choose a base built for \
                 every --target",
                document::platform_name(*arch),
                if offered.is_empty() {
                    "no platforms".to_owned()
                } else {
                    offered.join(", ")
                }
            )));
        };
        found.insert(*arch, manifest.clone());
    }
    Ok(found)
}

/// The first entry of an index for `arch` (as containerd chooses): the OS and architecture
/// equal, and the variant equal where both name one, arm64 without a variant being `v8` and
/// arm without one `v7` (containerd's `platforms.Normalize`).
pub fn select_platform(manifests: &[Descriptor], arch: Arch) -> Result<Option<&Descriptor>> {
    let wanted = document::platform(arch)?;
    Ok(manifests
        .iter()
        .filter(|d| MediaKind::of(d.media_type()).is_document())
        .find(|d| {
            d.platform()
                .as_ref()
                .is_some_and(|p| same_platform(p, &wanted))
        }))
}

fn same_platform(found: &Platform, wanted: &Platform) -> bool {
    let architecture = wanted.architecture().to_string();
    found.os().to_string() == wanted.os().to_string()
        && found.architecture().to_string() == architecture
        && same_variant(
            &architecture,
            found.variant().as_deref(),
            wanted.variant().as_deref(),
        )
}

fn same_variant(architecture: &str, found: Option<&str>, wanted: Option<&str>) -> bool {
    fn normal<'a>(architecture: &str, variant: Option<&'a str>) -> Option<&'a str> {
        match (architecture, variant) {
            ("arm64", None) => Some("v8"),
            ("arm", None) => Some("v7"),
            (_, variant) => variant,
        }
    }
    let normal = |variant| normal(architecture, variant);
    match (normal(found), normal(wanted)) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

fn platform_text(platform: &Platform) -> String {
    match platform.variant() {
        Some(variant) => format!("{}/{}/{variant}", platform.os(), platform.architecture()),
        None => format!("{}/{}", platform.os(), platform.architecture()),
    }
}

/// The config of a platform's manifest, which must be for that platform.
fn read_config(
    store: BlobStore<'_>,
    descriptor: &Descriptor,
    arch: Arch,
    shown: &str,
) -> Result<ImageConfiguration> {
    if !matches!(MediaKind::of(descriptor.media_type()), MediaKind::Config(_)) {
        return Err(error::input(format!(
            "{shown}: the manifest's config {} has media type {}, not an image config",
            descriptor.digest(),
            descriptor.media_type()
        )));
    }
    let config: ImageConfiguration = store
        .read_json(descriptor)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot read the base {shown}"))?;
    let wanted = document::platform(arch)?;
    let mut found = Platform::default();
    found.set_os(config.os().clone());
    found.set_architecture(config.architecture().clone());
    found.set_variant(config.variant().clone());
    if !same_platform(&found, &wanted) {
        return Err(error::input(format!(
            "the base {shown} is for {}, not {}; choose a base built for every --target",
            platform_text(&found),
            document::platform_name(arch)
        )));
    }
    Ok(config)
}

/// The layer's descriptor for an OCI manifest: the same blob, digest and size, with a Docker
/// media type given as its OCI equivalent (image-spec `media-types.md`, "Compatibility
/// Matrix": the same bytes), because OCI tools such as umoci refuse Docker types in an OCI
/// manifest. Annotations and URLs are kept; OCI types are kept as they are.
fn oci_layer_descriptor(source: &Descriptor) -> Descriptor {
    let media_type = match source.media_type() {
        MediaType::Other(text) if text == media::DOCKER_LAYER_GZIP => MediaType::ImageLayerGzip,
        MediaType::Other(text) if text == media::DOCKER_FOREIGN_LAYER_GZIP => {
            MediaType::ImageLayerNonDistributableGzip
        }
        other => other.clone(),
    };
    let mut descriptor = source.clone();
    descriptor.set_media_type(media_type);
    descriptor
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_transport_and_refuses_others() {
        let base: BaseRef = "oci:bases/static:v1".parse().unwrap();
        assert_eq!(
            base,
            BaseRef::Layout(ImageRef {
                path: "bases/static".into(),
                tag: Some("v1".into())
            })
        );
        assert_eq!(base.to_string(), "oci:bases/static:v1");
        let base: BaseRef = "oci-archive:./a:b/base.tar:latest".parse().unwrap();
        assert_eq!(
            base,
            BaseRef::Archive {
                path: "./a:b/base.tar".into(),
                tag: Some("latest".into())
            }
        );
        let base: BaseRef = "docker://ghcr.io/acme/base@sha256:0123".parse().unwrap();
        assert_eq!(
            base,
            BaseRef::Registry("ghcr.io/acme/base@sha256:0123".into())
        );
        for bad in [
            "debian:bookworm",
            "docker://",
            "oci-archive:",
            "oci:",
            "file:x",
        ] {
            let err = bad.parse::<BaseRef>().unwrap_err();
            assert_eq!(error::exit_kind(&err), ExitKind::Input, "{bad}");
        }
        let relative = "oci:bases/static"
            .parse::<BaseRef>()
            .unwrap()
            .relative_to(Path::new("/ws"));
        assert_eq!(relative.to_string(), "oci:/ws/bases/static");
    }

    #[test]
    fn chooses_the_platform_as_containerd_does() {
        let entry = |arch: &str, variant: Option<&str>| {
            let mut platform = Platform::default();
            platform.set_architecture(oci_spec::image::Arch::from(arch));
            platform.set_variant(variant.map(str::to_owned));
            let mut d = Descriptor::new(
                MediaType::ImageManifest,
                1,
                Sha256Digest::of(arch.as_bytes()),
            );
            d.set_platform(Some(platform));
            d
        };
        let index = [entry("amd64", None), entry("arm64", None)];
        let chosen = select_platform(&index, Arch::Aarch64).unwrap().unwrap();
        assert_eq!(
            chosen.digest(),
            index[1].digest(),
            "arm64 without a variant is v8"
        );
        let index = [entry("arm64", Some("v9")), entry("amd64", Some("v3"))];
        assert!(select_platform(&index, Arch::Aarch64).unwrap().is_none());
        assert!(select_platform(&index, Arch::X86_64).unwrap().is_some());
        assert!(select_platform(&[], Arch::X86_64).unwrap().is_none());
    }

    #[test]
    fn docker_layers_keep_their_bytes_under_oci_media_types() {
        let digest = Sha256Digest::of(b"layer");
        let docker = Descriptor::new(MediaType::Other(media::DOCKER_LAYER_GZIP.into()), 5, digest);
        let oci = oci_layer_descriptor(&docker);
        assert_eq!(oci.media_type(), &MediaType::ImageLayerGzip);
        assert_eq!((oci.digest(), oci.size()), (docker.digest(), docker.size()));
        let zstd = Descriptor::new(MediaType::ImageLayerZstd, 5, digest);
        assert_eq!(oci_layer_descriptor(&zstd), zstd);
    }
}
