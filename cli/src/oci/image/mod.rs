//! `cargo airlock image`: scratch OCI images from static binaries, without a container engine.
//!
//! The steps: read the settings (`Cargo.toml`, then flags), check the output, get the binaries
//! (from `build`, or prebuilt with `--binary`) and prove them static, write the essentials layer
//! once and one binary layer, config and manifest per platform, an index when there are several
//! platforms, then the layout (staged, swapped in) and/or the archive. Every byte written
//! depends only on the binaries and the settings, never on file times, the umask or the machine.

mod binaries;
mod output;
mod project;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{Context, Result};
use oci_spec::image::{Descriptor, MediaType};
use rayon::prelude::*;
use serde::Serialize;

use crate::compile::BuildOptions;
use crate::digest::Sha256Digest;
use crate::elf::Linkage;
use crate::oci::archive::{self, ArchiveSummary, DockerManifestEntry};
use crate::oci::document::{self, ConfigLayer, RuntimeConfig};
use crate::oci::essentials::{self, Essential, Essentials, EssentialsOptions, NONROOT_UID};
use crate::oci::layer::{self, Compression, Layer};
use crate::oci::layout::{LayoutWriter, descriptor_digest, validate_tag};
use crate::oci::settings::{ImageSettings, normalize_port};
use crate::progress;
use crate::render::{self, Align, CommandReport};
use crate::tarball::{self, TarBuilder};
use crate::target::{Arch, TargetTriple};
use crate::workspace;
use binaries::{Binaries, check_static, collect_binaries};
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
    /// Its size in bytes.
    pub size: u64,
    /// Its linkage.
    pub linkage: Linkage,
    /// The target it was built for (None for `--binary` files).
    pub target: Option<TargetTriple>,
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
    /// `essentials` or `binary`.
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
    /// The essentials layer, if any.
    pub essentials: Option<Essentials>,
    /// One image per platform.
    pub images: Vec<PlatformImage>,
    /// The index over the platforms, when there are several.
    pub index: Option<BlobSummary>,
    /// The digest `index.json` points to for the tags: the index, or the only manifest.
    pub digest: Sha256Digest,
    /// Every blob of the image added up (layers, configs, manifests, index).
    pub blob_bytes: u64,
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
    let binaries = collect_binaries(options, &project)?;
    check_static(&binaries, options.allow_dynamic)?;

    let repository = repository(settings, project.package.as_ref(), &binaries)?;
    let tags = tags(settings, &project);
    let epoch = project.source_date_epoch()?;
    let created = workspace::rfc3339(epoch);
    let metadata = project.standard_annotations(&created);

    let writer = &output.writer;
    let (essentials, binary_layers) =
        write_layers(writer, &essentials_options, &binaries, epoch, compression)?;
    let mut written = Vec::new();
    for ((arch, arch_binaries), binary_layer) in binaries.iter().zip(&binary_layers) {
        written.push(write_platform(&PlatformInput {
            writer,
            arch: *arch,
            binaries: arch_binaries,
            binary_layer,
            essentials: essentials.as_ref(),
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
    let layout = output.finish(entries)?;

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
        essentials: essentials.map(|(_, report)| report),
        images,
        index,
        digest: descriptor_digest(&top)?,
        blob_bytes,
    })
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

/// The essentials layer and what went into it.
type EssentialsLayer = (Layer, Essentials);

/// Everything one platform's image needs.
struct PlatformInput<'a> {
    writer: &'a LayoutWriter,
    arch: Arch,
    binaries: &'a [ImageBinary],
    binary_layer: &'a Layer,
    essentials: Option<&'a EssentialsLayer>,
    settings: &'a ImageSettings,
    metadata: &'a BTreeMap<String, String>,
    created: &'a str,
}

/// Compresses the essentials layer and every platform's binary layer at the same time (the
/// slow part; one core each), in the order of `binaries`.
fn write_layers(
    writer: &LayoutWriter,
    essentials_options: &EssentialsOptions,
    binaries: &Binaries,
    epoch: u64,
    compression: Compression,
) -> Result<(Option<EssentialsLayer>, Vec<Layer>)> {
    let essentials_tar = essentials::essentials_tar(essentials_options)?;
    if let Some((_, report)) = &essentials_tar {
        progress::status("Packaging", format!("essentials ({})", list(&report.items)));
    }
    for (arch, list) in binaries {
        let names: Vec<&str> = list.iter().map(|b| b.name.as_str()).collect();
        let platform = document::platform_name(*arch);
        progress::status("Packaging", format!("{} for {platform}", names.join(", ")));
    }
    let (essentials, binary_layers) = rayon::join(
        || {
            essentials_tar
                .map(|(tar, report)| {
                    layer::write_layer(writer, &tar, epoch, compression).map(|l| (l, report))
                })
                .transpose()
        },
        || {
            binaries
                .par_iter()
                .map(|(_, list)| {
                    let mut tar = TarBuilder::new();
                    for binary in list {
                        tar.file_from_disk(
                            binary.path.trim_start_matches('/'),
                            &binary.source,
                            tarball::EXEC_MODE,
                        );
                    }
                    layer::write_layer(writer, &tar, epoch, compression)
                })
                .collect::<Result<Vec<_>>>()
        },
    );
    Ok((essentials?, binary_layers?))
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
    let mut layers: Vec<(&Layer, &str)> = Vec::new();
    if let Some((layer, report)) = input.essentials {
        config_layers.push(ConfigLayer {
            layer,
            created_by: format!("airlock image: essentials ({})", list(&report.items)),
        });
        layers.push((layer, "essentials"));
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
    let config = document::image_config(input.arch, &runtime, &config_layers, input.created)?;
    let (config_descriptor, _) = input.writer.put_json(MediaType::ImageConfig, &config)?;
    let layer_refs: Vec<&Layer> = layers.iter().map(|(l, _)| *l).collect();
    let mut annotations = input.metadata.clone();
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
        },
        descriptor,
        layer_digests,
        blobs,
    })
}

/// The config's runtime part: defaults, then the essentials' variables, then the settings.
fn runtime_config(input: &PlatformInput<'_>) -> Result<RuntimeConfig> {
    let settings = input.settings;
    let mut env: Vec<(String, String)> = vec![("PATH".to_owned(), DEFAULT_PATH.to_owned())];
    let extra = input
        .essentials
        .map(|(_, report)| report.env.clone())
        .unwrap_or_default()
        .into_iter()
        .chain(settings.env.clone().unwrap_or_default());
    for (key, value) in extra {
        match env.iter_mut().find(|(k, _)| *k == key) {
            Some(existing) => existing.1 = value,
            None => env.push((key, value)),
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
    let ports = settings
        .ports
        .iter()
        .flatten()
        .map(|p| normalize_port(p))
        .collect::<Result<BTreeSet<_>>>()?;
    let mut labels = input.metadata.clone();
    labels.extend(settings.labels.clone().unwrap_or_default());
    Ok(RuntimeConfig {
        user: settings
            .user
            .clone()
            .unwrap_or_else(|| format!("{NONROOT_UID}:{NONROOT_UID}")),
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        entrypoint,
        cmd: settings.cmd.clone().unwrap_or_default(),
        workdir: settings.workdir.clone(),
        ports: ports.into_iter().collect(),
        labels,
    })
}

fn list(items: &[Essential]) -> String {
    items
        .iter()
        .map(|i| i.as_str())
        .collect::<Vec<_>>()
        .join(", ")
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
        if let Some(essentials) = &self.essentials {
            out.push_str(&format!("essentials: {}", list(&essentials.items)));
            if let Some(ca) = &essentials.ca_bundle {
                out.push_str(&format!(" (CA bundle from {})", ca.source.display()));
            }
            out.push('\n');
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
        out
    }
}
