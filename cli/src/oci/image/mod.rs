//! `cargo airlock image`: scratch OCI images from static binaries, without a container engine.
//!
//! The steps: read the settings (`Cargo.toml`, then flags), check the output, get the binaries
//! (from `build`, or prebuilt with `--binary`) and prove them static, resolve and check the
//! base image when there is one, copy its layers and write the essentials and files layers
//! once and one binary layer, config and manifest per platform, an index when there are
//! several platforms, then the layout (staged, swapped in) and/or the archive, and load the
//! image into a local engine when asked. Every byte written depends only on the binaries, the
//! base and the settings, never on file times, the umask or the machine.

mod binaries;
mod layers;
mod output;
mod project;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use oci_spec::image::{Descriptor, MediaType};
use serde::Serialize;

use crate::compile::BuildOptions;
use crate::digest::Sha256Digest;
use crate::elf::Linkage;
use crate::elf::strip::StripMode;
use crate::oci::archive::{self, ArchiveSummary, DockerManifestEntry};
use crate::oci::base::{self, Base, BaseOptions, BasePlatform, BaseSummary, RegistrySource};
use crate::oci::document::{self, ConfigLayer, RuntimeConfig};
use crate::oci::essentials::{Essentials, NONROOT_UID};
use crate::oci::files::IncludedFiles;
use crate::oci::layer::{Compression, Layer};
use crate::oci::layout::{LayoutWriter, descriptor_digest, validate_tag};
use crate::oci::load::{self, LoadReport, Runtime};
use crate::oci::settings::{ImageSettings, normalize_port};
use crate::progress;
use crate::render::{self, Align, CommandReport};
use crate::target::{Arch, TargetTriple};
use crate::workspace;
use binaries::{check_static, collect_binaries, strip_binaries, write_debug_files};
use layers::{LayerInputs, OwnLayers, list, write_layers};
use output::{Output, layout_index, tagged_entry};
pub use project::validate_repository;

/// Where `image` writes its layout when no `--output` is given, and so where `push` and
/// `report` look when no layout is named: `target/airlock/image` of the workspace at
/// `manifest_path` (default: the current directory's).
pub fn default_layout(manifest_path: Option<&std::path::Path>) -> Result<PathBuf> {
    let workspace = crate::workspace::Workspace::load(manifest_path)?;
    Ok(default_layout_of(&workspace))
}

/// [`default_layout`] of a loaded workspace.
pub fn default_layout_of(workspace: &crate::workspace::Workspace) -> PathBuf {
    workspace.airlock_dir().join("image")
}
use project::{Project, essentials_options, repository};

/// Where binaries go in the image.
pub const BIN_DIR: &str = "/usr/local/bin";

/// `PATH` in every image (distroless's, minus the directories a scratch image never has).
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The annotation on a binary layer's descriptor that records each binary's size as built,
/// before stripping (`/usr/local/bin/app=33012345`, comma separated, sorted by path), so
/// `report` can show what stripping saved. Written only when stripping changed a binary.
pub const BUILT_SIZES_ANNOTATION: &str = "com.github.airlock-rs.airlock.built-sizes";

/// The annotation containerd (and `docker load` on the containerd store) names a loaded image
/// by; `org.opencontainers.image.ref.name` holds the tag only.
pub const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";

/// Options of `cargo airlock image`.
#[derive(Debug, Clone, Default)]
pub struct ImageOptions {
    /// How to build the binaries (manifest path, package, profile, features). `bins` and
    /// `targets` given here count like the flags `--bin` and `--target`.
    pub build: BuildOptions,
    /// Prebuilt binaries to package instead of building (architecture read from each ELF).
    pub binaries: Vec<PathBuf>,
    /// Package binaries that are dynamically linked (they will not run on an empty image).
    pub allow_dynamic: bool,
    /// The layout directory to write or add to (default `target/airlock/image`, unless only
    /// an archive is asked for).
    pub output: Option<PathBuf>,
    /// Also (or only) write the image as an `oci-archive` tar here.
    pub archive: Option<PathBuf>,
    /// Settings from flags; they override `Cargo.toml`'s.
    pub settings: ImageSettings,
    /// Where pulled base images are cached (default: [`base::BaseCache::default_dir`]).
    pub base_cache: Option<PathBuf>,
    /// How to pull a base from a registry (`registry::pull::RegistryPuller`); without one a
    /// `docker://` base is refused.
    pub registry: Option<Arc<dyn RegistrySource>>,
    /// Load the finished image into this engine.
    pub load: Option<Runtime>,
    /// What stripping removes from each binary before it goes into the layer (the binary on
    /// disk and the cargo profile stay as they are).
    pub strip: StripMode,
    /// Where the debug files go [default: `target/airlock/debug`, or beside each `--binary`
    /// file outside a workspace].
    pub debug_dir: Option<PathBuf>,
    /// The debug file name of a `binaries` entry (what its `.gnu_debuglink` names), by path
    /// [default: `<file name>-<arch>.debug`].
    pub debug_names: BTreeMap<PathBuf, String>,
}

/// A binary going into the image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageBinary {
    /// Its name in the image.
    pub name: String,
    /// The file it was read from.
    pub source: PathBuf,
    /// Its path in the image.
    pub path: String,
    /// Its size in bytes as shipped (in the layer).
    pub size: u64,
    /// Its size as built (on disk, before stripping).
    pub built_size: u64,
    /// What stripping removed.
    pub strip: StripMode,
    /// The debug file written beside, when stripping removed anything.
    pub debug_file: Option<PathBuf>,
    /// Its GNU build-id (hex), which names the debug file for gdb and lldb.
    pub build_id: Option<String>,
    /// Its linkage.
    pub linkage: Linkage,
    /// The target it was built for (None for `--binary` files).
    pub target: Option<TargetTriple>,
    /// The bytes that go into the layer, when stripping changed them.
    #[serde(skip)]
    pub(crate) shipped: Option<Arc<Vec<u8>>>,
    /// The stripped file, staged on disk when stripping streamed it: the layer streams it
    /// instead of `source`, checked against `pinned`.
    #[serde(skip)]
    pub(crate) staged: Option<Arc<crate::atomic::StagedFile>>,
    /// The digest of the file as checked, when it ships from disk after a judgement of all its
    /// bytes (stripping that removed nothing, in memory): the layer streams it and refuses
    /// bytes that no longer have this digest.
    #[serde(skip)]
    pub(crate) checked: Option<crate::digest::Sha256Digest>,
    /// The size and header bytes the file was judged by, when it ships from disk after a
    /// judgement of its headers (`source` as it is, or `staged`): the layer streams it and
    /// refuses a file whose size or header bytes are no longer those.
    #[serde(skip)]
    pub(crate) pinned: Option<Arc<crate::tarball::Pinned>>,
}

/// A blob's digest and size.
#[derive(Debug, Clone, Serialize)]
pub struct BlobSummary {
    /// `sha256:<hex>`.
    pub digest: Sha256Digest,
    /// Size in bytes.
    pub size: u64,
}

/// One layer of an image.
#[derive(Debug, Clone, Serialize)]
pub struct LayerSummary {
    /// `base` (a layer of the base image, copied as it is), `essentials`, `files` or `binary`.
    pub contents: String,
    /// The layer media type.
    pub media_type: String,
    /// The compressed blob's digest.
    pub digest: Sha256Digest,
    /// The compressed size.
    pub size: u64,
    /// The uncompressed tar's digest (`rootfs.diff_ids`).
    pub diff_id: Sha256Digest,
    /// The uncompressed size.
    pub uncompressed_size: u64,
}

/// The image of one platform.
#[derive(Debug, Clone, Serialize)]
pub struct PlatformImage {
    /// `linux/amd64`, `linux/arm64/v8`.
    pub platform: String,
    /// The binaries in it; the first is the entrypoint unless one was set.
    pub binaries: Vec<ImageBinary>,
    /// The manifest.
    pub manifest: BlobSummary,
    /// The config.
    pub config: BlobSummary,
    /// The layers, bottom first.
    pub layers: Vec<LayerSummary>,
    /// How many of them, from the bottom, are the base's.
    pub base_layers: usize,
    /// The base's manifest for this platform.
    pub base_manifest: Option<Sha256Digest>,
    /// The layers' compressed sizes added up (what a pull downloads).
    pub compressed_size: u64,
    /// The layers' uncompressed sizes added up (what it takes on disk).
    pub uncompressed_size: u64,
}

/// The result of `image`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    /// The repository name the archive loads as.
    pub repository: String,
    /// The tags written.
    pub tags: Vec<String>,
    /// The layout directory written, if any.
    pub layout: Option<PathBuf>,
    /// The archive written, if any.
    pub archive: Option<ArchiveSummary>,
    /// The layer compression.
    pub compression: Compression,
    /// The timestamp of every file and of `created`.
    pub source_date_epoch: u64,
    /// `created`, RFC 3339.
    pub created: String,
    /// The base image, if any.
    pub base: Option<BaseSummary>,
    /// The essentials layer, if any.
    pub essentials: Option<Essentials>,
    /// The extra files layer, if any.
    pub files: Option<IncludedFiles>,
    /// One image per platform.
    pub images: Vec<PlatformImage>,
    /// The index over the platforms, when there are several.
    pub index: Option<BlobSummary>,
    /// The digest `index.json` points to for the tags: the index, or the only manifest.
    pub digest: Sha256Digest,
    /// Every blob of the image added up (layers, configs, manifests, index).
    pub blob_bytes: u64,
    /// What was loaded into a local engine, if asked.
    pub load: Option<LoadReport>,
}

/// `cargo airlock image`.
pub fn image(options: &ImageOptions) -> Result<ImageReport> {
    let project = Project::load(options)?;
    let settings = &project.settings;
    let compression = Compression::new(settings.compression.unwrap_or_default(), settings.level)?;
    if let Some(tags) = &settings.tags {
        tags.iter().try_for_each(|t| validate_tag(t))?;
    }
    let essentials_options = essentials_options(settings);
    let output = Output::open(options, &project)?;
    let mut binaries = collect_binaries(options, &project)?;
    let debug_files = strip_binaries(&mut binaries, options, &project)?;
    check_static(&binaries, options.allow_dynamic)?;
    write_debug_files(debug_files)?;

    let repository = repository(settings, project.package.as_ref(), &binaries)?;
    let tags = tags(settings, &project);
    let epoch = project.source_date_epoch()?;
    let created = workspace::rfc3339(epoch);
    let metadata = project.standard_annotations(&created);
    let arches: Vec<Arch> = binaries.keys().copied().collect();
    let base = settings
        .base
        .as_ref()
        .map(|reference| {
            base::resolve(&BaseOptions {
                reference,
                arches: &arches,
                cache_dir: options.base_cache.as_deref(),
                registry: options.registry.as_deref(),
            })
        })
        .transpose()?;

    let writer = &output.writer;
    let own = write_layers(
        writer,
        &LayerInputs {
            essentials: &essentials_options,
            files: &settings.files.clone().unwrap_or_default(),
            binaries: &binaries,
            base: base.as_ref(),
            epoch,
            compression,
        },
    )?;
    let mut written = Vec::new();
    for ((arch, arch_binaries), binary_layer) in binaries.iter().zip(&own.binaries) {
        written.push(write_platform(&PlatformInput {
            writer,
            arch: *arch,
            binaries: arch_binaries,
            binary_layer,
            own: &own,
            base: base
                .as_ref()
                .and_then(|b| b.platforms.get(arch).map(|p| (b, p))),
            settings,
            metadata: &metadata,
            created: &created,
        })?);
    }
    let (top, index) = write_top(writer, &written, &metadata)?;
    let entries: Vec<Descriptor> = tags
        .iter()
        .map(|tag| tagged_entry(&top, &repository, tag))
        .collect();

    let archive = match &options.archive {
        Some(path) => Some(archive::write_archive(
            path,
            writer.path(),
            &layout_index(Vec::new(), entries.clone())?,
            &docker_manifest(&written, &repository, &tags),
            &image_blobs(&written, index.as_ref()),
            epoch,
        )?),
        None => None,
    };
    let to_load = options
        .load
        .map(|runtime| {
            load_archive(writer, &written, &repository, &tags, epoch).map(|a| (runtime, a))
        })
        .transpose()?;
    let layout = output.finish(entries)?;
    let load = to_load
        .map(|(runtime, (_dir, path, platform))| {
            load::load(runtime, &path, &platform).with_context(|| {
                let written: Vec<String> = layout
                    .iter()
                    .map(|l| format!("oci:{}", l.display()))
                    .chain(archive.iter().map(|a| a.path.display().to_string()))
                    .collect();
                format!(
                    "the image is written to {}, but loading it into {runtime} failed",
                    if written.is_empty() {
                        "nowhere else".to_owned()
                    } else {
                        written.join(" and ")
                    }
                )
            })
        })
        .transpose()?;

    let images: Vec<PlatformImage> = written.into_iter().map(|w| w.image).collect();
    let blob_bytes = blob_bytes(&images, index.as_ref());
    Ok(ImageReport {
        repository,
        tags,
        layout,
        archive,
        compression,
        source_date_epoch: epoch,
        created,
        base: base.as_ref().map(Base::summary),
        essentials: own.essentials.map(|(_, report)| report),
        files: own.files.map(|(_, report)| report),
        images,
        index,
        digest: descriptor_digest(&top)?,
        blob_bytes,
        load,
    })
}

/// An archive of the one platform a local engine should get (this machine's, else the
/// first), tagged with every tag, in a temporary directory beside the layout.
fn load_archive(
    writer: &LayoutWriter,
    written: &[PlatformOutput],
    repository: &str,
    tags: &[String],
    epoch: u64,
) -> Result<(tempfile::TempDir, PathBuf, String)> {
    let host = Arch::host().map(document::platform_name);
    let chosen = written
        .iter()
        .find(|w| Some(&w.image.platform) == host.as_ref())
        .or_else(|| written.first())
        .context("the image has no platform to load")?;
    if Some(&chosen.image.platform) != host.as_ref() {
        progress::warn(format!(
            "loading {}: the image has no platform of this machine's, so it will not run here",
            chosen.image.platform
        ));
    }
    let parent = writer.path().parent().unwrap_or(Path::new("."));
    let dir = tempfile::Builder::new()
        .prefix(".airlock-load-")
        .tempdir_in(parent)
        .with_context(|| {
            format!(
                "cannot create a temporary directory in {}",
                parent.display()
            )
        })?;
    let path = dir.path().join("image.tar");
    let entries = tags
        .iter()
        .map(|tag| tagged_entry(&chosen.descriptor, repository, tag))
        .collect();
    let repo_tags = tags.iter().map(|t| format!("{repository}:{t}")).collect();
    archive::write_archive(
        &path,
        writer.path(),
        &layout_index(Vec::new(), entries)?,
        &[DockerManifestEntry::new(
            &chosen.image.config.digest,
            &chosen.layer_digests,
            repo_tags,
        )],
        &chosen.blobs.iter().copied().collect(),
        epoch,
    )?;
    progress::status(
        "Loading",
        format!("{} into the engine", chosen.image.platform),
    );
    Ok((dir, path, chosen.image.platform.clone()))
}

/// The tags: the settings', else the package version, else `latest`.
fn tags(settings: &ImageSettings, project: &Project) -> Vec<String> {
    match &settings.tags {
        Some(tags) if !tags.is_empty() => tags.clone(),
        _ => vec![
            project
                .package
                .as_ref()
                .map_or_else(|| "latest".to_owned(), |p| p.version.to_string()),
        ],
    }
}

/// What the tags point to: the only manifest, or an index over the platforms' manifests
/// (written as a blob).
fn write_top(
    writer: &LayoutWriter,
    written: &[PlatformOutput],
    annotations: &BTreeMap<String, String>,
) -> Result<(Descriptor, Option<BlobSummary>)> {
    if let [only] = written {
        return Ok((only.descriptor.clone(), None));
    }
    let manifests = written.iter().map(|w| w.descriptor.clone()).collect();
    let index = document::image_index(manifests, annotations)?;
    let (descriptor, _) = writer.put_json(MediaType::ImageIndex, &index)?;
    let summary = BlobSummary {
        digest: descriptor_digest(&descriptor)?,
        size: descriptor.size(),
    };
    Ok((descriptor, Some(summary)))
}

/// Every blob of this image (an archive holds these only, not the layout's other images).
fn image_blobs(written: &[PlatformOutput], index: Option<&BlobSummary>) -> BTreeSet<Sha256Digest> {
    let mut blobs: BTreeSet<Sha256Digest> = written.iter().flat_map(|w| w.blobs.clone()).collect();
    blobs.extend(index.map(|i| i.digest));
    blobs
}

/// Docker's `manifest.json` entries, one per platform.
///
/// Docker's classic store loads every entry and gives each its RepoTags, so the tags go on the
/// first platform only (linux/amd64 when built) and one image ends up tagged; podman and the
/// containerd store choose the platform from the index instead.
fn docker_manifest(
    written: &[PlatformOutput],
    repository: &str,
    tags: &[String],
) -> Vec<DockerManifestEntry> {
    written
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let repo_tags = if i == 0 {
                tags.iter().map(|t| format!("{repository}:{t}")).collect()
            } else {
                Vec::new()
            };
            DockerManifestEntry::new(&w.image.config.digest, &w.layer_digests, repo_tags)
        })
        .collect()
}

/// Every distinct blob of the image added up: layers (the essentials layer once), configs,
/// manifests and the index.
fn blob_bytes(images: &[PlatformImage], index: Option<&BlobSummary>) -> u64 {
    let mut seen = BTreeSet::new();
    let mut total = index.map_or(0, |i| i.size);
    for image in images {
        let blobs = [&image.manifest, &image.config]
            .into_iter()
            .map(|b| (b.digest, b.size));
        for (digest, size) in blobs.chain(image.layers.iter().map(|l| (l.digest, l.size))) {
            if seen.insert(digest) {
                total += size;
            }
        }
    }
    total
}

/// Everything one platform's image needs.
struct PlatformInput<'a> {
    writer: &'a LayoutWriter,
    arch: Arch,
    binaries: &'a [ImageBinary],
    binary_layer: &'a Layer,
    own: &'a OwnLayers,
    base: Option<(&'a Base, &'a BasePlatform)>,
    settings: &'a ImageSettings,
    metadata: &'a BTreeMap<String, String>,
    created: &'a str,
}

/// The [`BUILT_SIZES_ANNOTATION`] value of a layer holding `binaries`, when stripping changed
/// any of them.
pub(super) fn built_sizes(binaries: &[ImageBinary]) -> Option<String> {
    if binaries.iter().all(|b| b.built_size == b.size) {
        return None;
    }
    let sizes: BTreeMap<&str, u64> = binaries
        .iter()
        .map(|b| (b.path.as_str(), b.built_size))
        .collect();
    let entries: Vec<String> = sizes.iter().map(|(p, s)| format!("{p}={s}")).collect();
    Some(entries.join(","))
}

/// One platform's image as written.
struct PlatformOutput {
    image: PlatformImage,
    /// The manifest descriptor with its platform (for the index or `index.json`).
    descriptor: Descriptor,
    layer_digests: Vec<Sha256Digest>,
    blobs: Vec<Sha256Digest>,
}

fn write_platform(input: &PlatformInput<'_>) -> Result<PlatformOutput> {
    let platform_name = document::platform_name(input.arch);
    let binary_layer = input.binary_layer;

    let mut config_layers = Vec::new();
    let mut layers: Vec<(&Layer, &str)> = input
        .base
        .map(|(_, platform)| platform.layers.iter().map(|l| (&l.layer, "base")).collect())
        .unwrap_or_default();
    let base_layers = layers.len();
    if let Some((layer, report)) = &input.own.essentials {
        config_layers.push(ConfigLayer {
            layer,
            created_by: format!("airlock image: essentials ({})", list(&report.items)),
        });
        layers.push((layer, "essentials"));
    }
    if let Some((layer, report)) = &input.own.files {
        let dests: Vec<&str> = report.includes.iter().map(|i| i.dest.as_str()).collect();
        config_layers.push(ConfigLayer {
            layer,
            created_by: format!("airlock image: files {}", dests.join(" ")),
        });
        layers.push((layer, "files"));
    }
    config_layers.push(ConfigLayer {
        layer: binary_layer,
        created_by: format!(
            "airlock image: {}",
            input
                .binaries
                .iter()
                .map(|b| b.path.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        ),
    });
    layers.push((binary_layer, "binary"));

    let runtime = runtime_config(input)?;
    let config = document::image_config_on(
        input.arch,
        &runtime,
        input.base.map(|(_, platform)| &platform.config),
        &config_layers,
        input.created,
    )?;
    let (config_descriptor, _) = input.writer.put_json(MediaType::ImageConfig, &config)?;
    let layer_refs: Vec<&Layer> = layers.iter().map(|(l, _)| *l).collect();
    let mut annotations = input.metadata.clone();
    if let Some((base, platform)) = input.base {
        annotations.extend(base.annotations(platform));
    }
    annotations.extend(input.settings.annotations.clone().unwrap_or_default());
    let manifest = document::image_manifest(config_descriptor.clone(), &layer_refs, &annotations)?;
    let (mut descriptor, _) = input.writer.put_json(MediaType::ImageManifest, &manifest)?;
    descriptor.set_platform(Some(document::platform(input.arch)?));

    let layer_summaries = layers
        .iter()
        .map(|(layer, contents)| {
            Ok(LayerSummary {
                contents: (*contents).to_owned(),
                media_type: layer.descriptor.media_type().to_string(),
                digest: layer.digest()?,
                size: layer.descriptor.size(),
                diff_id: layer.diff_id,
                uncompressed_size: layer.uncompressed_size,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let layer_digests: Vec<Sha256Digest> = layer_summaries.iter().map(|l| l.digest).collect();
    let manifest_summary = BlobSummary {
        digest: descriptor_digest(&descriptor)?,
        size: descriptor.size(),
    };
    let config_summary = BlobSummary {
        digest: descriptor_digest(&config_descriptor)?,
        size: config_descriptor.size(),
    };
    let mut blobs = layer_digests.clone();
    blobs.extend([manifest_summary.digest, config_summary.digest]);
    Ok(PlatformOutput {
        image: PlatformImage {
            platform: platform_name,
            binaries: input.binaries.to_vec(),
            compressed_size: layer_summaries.iter().map(|l| l.size).sum(),
            uncompressed_size: layer_summaries.iter().map(|l| l.uncompressed_size).sum(),
            manifest: manifest_summary,
            config: config_summary,
            layers: layer_summaries,
            base_layers,
            base_manifest: input.base.map(|(_, platform)| platform.manifest),
        },
        descriptor,
        layer_digests,
        blobs,
    })
}

/// The config's runtime part. `Env`: the base's (else `PATH`), then the essentials'
/// variables, then the settings', key by key. `User` and `WorkingDir`: the settings', else
/// the base's, else `65532:65532` and none. `Entrypoint` and `Cmd` are the image's own (a
/// base's `Cmd` belongs to its entrypoint, as with a Dockerfile's `ENTRYPOINT`); exposed ports
/// and labels add to the base's; volumes and the stop signal are the base's.
fn runtime_config(input: &PlatformInput<'_>) -> Result<RuntimeConfig> {
    let settings = input.settings;
    let base = input
        .base
        .and_then(|(_, platform)| platform.config.config().as_ref());
    // A base's `KEY` without `=` stays as it is.
    let mut env: Vec<(String, Option<String>)> = match base.and_then(|c| c.env().as_ref()) {
        Some(base_env) => base_env
            .iter()
            .map(|pair| match pair.split_once('=') {
                Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                None => (pair.clone(), None),
            })
            .collect(),
        None => vec![("PATH".to_owned(), Some(DEFAULT_PATH.to_owned()))],
    };
    let extra = input
        .own
        .essentials
        .as_ref()
        .map(|(_, report)| report.env.clone())
        .unwrap_or_default()
        .into_iter()
        .chain(settings.env.clone().unwrap_or_default());
    for (key, value) in extra {
        match env.iter_mut().find(|(k, _)| *k == key) {
            Some(existing) => existing.1 = Some(value),
            None => env.push((key, Some(value))),
        }
    }
    let entrypoint = match &settings.entrypoint {
        Some(entrypoint) => entrypoint.clone(),
        None => vec![
            input
                .binaries
                .first()
                .map(|b| b.path.clone())
                .context("an image needs at least one binary")?,
        ],
    };
    let base_text =
        |value: Option<&Option<String>>| value.and_then(|v| v.clone()).filter(|v| !v.is_empty());
    let mut ports = base
        .and_then(|c| c.exposed_ports().clone())
        .unwrap_or_default()
        .into_iter()
        .collect::<BTreeSet<_>>();
    for port in settings.ports.iter().flatten() {
        ports.insert(normalize_port(port)?);
    }
    let mut labels: BTreeMap<String, String> = base
        .and_then(|c| c.labels().clone())
        .unwrap_or_default()
        .into_iter()
        .collect();
    labels.extend(input.metadata.clone());
    labels.extend(settings.labels.clone().unwrap_or_default());
    Ok(RuntimeConfig {
        user: settings
            .user
            .clone()
            .or_else(|| base_text(base.map(|c| c.user())))
            .unwrap_or_else(|| format!("{NONROOT_UID}:{NONROOT_UID}")),
        env: env
            .into_iter()
            .map(|(k, v)| match v {
                Some(v) => format!("{k}={v}"),
                None => k,
            })
            .collect(),
        entrypoint,
        cmd: settings.cmd.clone().unwrap_or_default(),
        workdir: settings
            .workdir
            .clone()
            .or_else(|| base_text(base.map(|c| c.working_dir()))),
        ports: ports.into_iter().collect(),
        labels,
        volumes: base.and_then(|c| c.volumes().clone()).unwrap_or_default(),
        stop_signal: base_text(base.map(|c| c.stop_signal())),
    })
}

/// Each binary as built and as shipped, what stripping saved, and where its debug file went.
fn binaries_table(images: &[PlatformImage]) -> String {
    let rows: Vec<Vec<String>> = images
        .iter()
        .flat_map(|image| {
            image.binaries.iter().map(|b| {
                vec![
                    image.platform.clone(),
                    b.path.clone(),
                    render::human_bytes(b.built_size),
                    render::human_bytes(b.size),
                    format!(
                        "{} ({})",
                        render::human_bytes(b.built_size.saturating_sub(b.size)),
                        b.strip
                    ),
                    b.debug_file
                        .as_ref()
                        .map_or_else(|| "-".to_owned(), |p| p.display().to_string()),
                ]
            })
        })
        .collect();
    render::table(
        &[
            ("platform", Align::Left),
            ("binary", Align::Left),
            ("built", Align::Right),
            ("shipped", Align::Right),
            ("stripping saved", Align::Right),
            ("debug file", Align::Left),
        ],
        &rows,
    )
}

impl CommandReport for ImageReport {
    fn human(&self) -> String {
        let mut out = String::new();
        let names: Vec<String> = self
            .tags
            .iter()
            .map(|t| format!("{}:{t}", self.repository))
            .collect();
        out.push_str(&format!(
            "image {} ({}, created {})\n",
            names.join(", "),
            self.compression,
            self.created
        ));
        let rows: Vec<Vec<String>> = self
            .images
            .iter()
            .map(|image| {
                vec![
                    image.platform.clone(),
                    image.manifest.digest.to_string(),
                    render::human_bytes(image.compressed_size),
                    render::human_bytes(image.uncompressed_size),
                ]
            })
            .collect();
        out.push_str(&render::table(
            &[
                ("platform", Align::Left),
                ("manifest", Align::Left),
                ("compressed", Align::Right),
                ("uncompressed", Align::Right),
            ],
            &rows,
        ));
        if let Some(index) = &self.index {
            out.push_str(&format!("index     {}\n", index.digest));
        }
        out.push_str(&binaries_table(&self.images));
        if let Some(base) = &self.base {
            let layers: Vec<String> = self
                .images
                .iter()
                .map(|i| {
                    let bytes: u64 = i.layers[..i.base_layers].iter().map(|l| l.size).sum();
                    format!(
                        "{} {} layer{} ({})",
                        i.platform,
                        i.base_layers,
                        if i.base_layers == 1 { "" } else { "s" },
                        render::human_bytes(bytes)
                    )
                })
                .collect();
            out.push_str(&format!(
                "base: {} {}{}: {}\n",
                base.name.as_deref().unwrap_or(&base.reference),
                base.digest,
                if base.offline {
                    " (from the cache: the registry could not be reached)"
                } else {
                    ""
                },
                layers.join(", ")
            ));
        }
        if let Some(essentials) = &self.essentials {
            out.push_str(&format!("essentials: {}", list(&essentials.items)));
            if let Some(ca) = &essentials.ca_bundle {
                out.push_str(&format!(" (CA bundle from {})", ca.source.display()));
            }
            out.push('\n');
        }
        if let Some(files) = &self.files {
            let dests: Vec<&str> = files.includes.iter().map(|i| i.dest.as_str()).collect();
            out.push_str(&format!(
                "files: {} ({} files, {})\n",
                dests.join(", "),
                files.files,
                render::human_bytes(files.bytes)
            ));
        }
        if let Some(layout) = &self.layout {
            let tag = self.tags.first().map(String::as_str).unwrap_or("latest");
            out.push_str(&format!("layout: oci:{}:{tag}\n", layout.display()));
        }
        if let Some(archive) = &self.archive {
            out.push_str(&format!(
                "archive: {} ({})\n",
                archive.path.display(),
                render::human_bytes(archive.size)
            ));
        }
        if let Some(load) = &self.load {
            out.push_str(&format!(
                "loaded into {} ({}, {}): {}\n",
                load.runtime,
                load.via,
                load.platform,
                load.loaded.join(", ")
            ));
        }
        out
    }
}
