//! `cargo airlock image`: scratch OCI images from static binaries, without a container engine.
//!
//! The steps: read the settings (`Cargo.toml`, then flags), check the output, get the binaries
//! (from `build`, or prebuilt with `--binary`) and prove them static, write the essentials layer
//! once and one binary layer, config and manifest per platform, an index when there are several
//! platforms, then the layout (staged, swapped in) and/or the archive. Every byte written
//! depends only on the binaries and the settings, never on file times, the umask or the machine.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cargo_metadata::Package;
use oci_spec::image::{Descriptor, ImageIndex, MediaType};
use serde::Serialize;

use crate::build::{self, BuildOptions};
use crate::digest::Sha256Digest;
use crate::elf::{self, ElfInfo, Linkage};
use crate::error;
use crate::oci::archive::{self, ArchiveSummary, DockerManifestEntry};
use crate::oci::document::{self, ConfigLayer, RuntimeConfig};
use crate::oci::essentials::{self, Essential, Essentials, EssentialsOptions, NONROOT_UID};
use crate::oci::layer::{self, Compression, Layer};
use crate::oci::layout::{self, Layout, LayoutWriter, descriptor_digest, validate_tag};
use crate::oci::prune;
use crate::oci::settings::{ImageSettings, normalize_port};
use crate::progress;
use crate::render::{self, Align, CommandReport};
use crate::tarball::{self, TarBuilder};
use crate::target::{Arch, TargetTriple};
use crate::workspace::{self, Workspace};

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
    let tags = match &settings.tags {
        Some(tags) if !tags.is_empty() => tags.clone(),
        _ => vec![
            project
                .package
                .as_ref()
                .map_or_else(|| "latest".to_owned(), |p| p.version.to_string()),
        ],
    };
    let epoch = project.source_date_epoch()?;
    let created = workspace::rfc3339(epoch);
    let metadata = project.standard_annotations(&created);

    let writer = &output.writer;
    let essentials = match essentials::essentials_tar(&essentials_options)? {
        Some((tar, report)) => {
            progress::status("Packaging", format!("essentials ({})", list(&report.items)));
            let layer = layer::write_layer(writer, &tar, epoch, compression)?;
            Some((layer, report))
        }
        None => None,
    };

    let mut images = Vec::new();
    let mut platform_manifests = Vec::new();
    let mut docker_entries = Vec::new();
    let mut blobs = BTreeSet::new();
    for (arch, arch_binaries) in &binaries {
        let built = write_platform(&PlatformInput {
            writer,
            arch: *arch,
            binaries: arch_binaries,
            essentials: essentials.as_ref(),
            settings,
            metadata: &metadata,
            epoch,
            created: &created,
            compression,
        })?;
        blobs.extend(built.blobs.iter().copied());
        docker_entries.push(DockerManifestEntry::new(
            &built.image.config.digest,
            &built.layer_digests,
            if docker_entries.is_empty() {
                tags.iter().map(|t| format!("{repository}:{t}")).collect()
            } else {
                Vec::new()
            },
        ));
        platform_manifests.push(built.descriptor);
        images.push(built.image);
    }

    let (top, index) = if platform_manifests.len() == 1 {
        (platform_manifests.remove(0), None)
    } else {
        let index = document::image_index(platform_manifests, &metadata)?;
        let (descriptor, _) = writer.put_json(MediaType::ImageIndex, &index)?;
        let digest = descriptor_digest(&descriptor)?;
        blobs.insert(digest);
        let summary = BlobSummary {
            digest,
            size: descriptor.size(),
        };
        (descriptor, Some(summary))
    };
    let entries: Vec<Descriptor> = tags
        .iter()
        .map(|tag| tagged_entry(&top, &repository, tag))
        .collect();

    let archive = match &options.archive {
        Some(path) => {
            let index = layout_index(Vec::new(), entries.clone())?;
            Some(archive::write_archive(
                path,
                writer.path(),
                &index,
                &docker_entries,
                &blobs,
                epoch,
            )?)
        }
        None => None,
    };
    let layout = output.finish(entries)?;

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

/// The workspace, the package whose image this is, and the merged settings.
struct Project {
    workspace: Option<Workspace>,
    package: Option<Package>,
    settings: ImageSettings,
}

impl Project {
    fn load(options: &ImageOptions) -> Result<Project> {
        let manifest_path = options.build.manifest_path.as_deref();
        let prebuilt = !options.binaries.is_empty();
        let workspace = match Workspace::load(manifest_path) {
            Ok(ws) => Some(ws),
            // Prebuilt binaries need no workspace; its metadata is used when there is one.
            Err(_) if prebuilt && manifest_path.is_none() => None,
            Err(e) => return Err(e),
        };
        let package = match &workspace {
            Some(ws) => select_package(ws, &options.build.packages, prebuilt)?,
            None if !options.build.packages.is_empty() => {
                return Err(error::input(
                    "-p/--package needs a Cargo workspace: run in one or pass --manifest-path",
                ));
            }
            None => None,
        };
        let mut settings = ImageSettings::default();
        if let Some(ws) = &workspace {
            settings = ImageSettings::from_metadata(
                ws.airlock_metadata(),
                "workspace.metadata.airlock",
                ws.root(),
            )?;
        }
        if let Some(package) = &package {
            let base = package
                .manifest_path
                .parent()
                .map_or_else(|| PathBuf::from("."), |p| p.as_std_path().to_path_buf());
            let package_settings = ImageSettings::from_metadata(
                package
                    .metadata
                    .get("airlock")
                    .unwrap_or(&serde_json::Value::Null),
                "package.metadata.airlock",
                &base,
            )?;
            settings = settings.overridden_by(package_settings);
        }
        let mut flags = options.settings.clone();
        if !options.build.bins.is_empty() {
            flags.bins = Some(options.build.bins.clone());
        }
        if !options.build.targets.is_empty() {
            flags.targets = Some(options.build.targets.clone());
        }
        Ok(Project {
            workspace,
            package,
            settings: settings.overridden_by(flags),
        })
    }

    /// `SOURCE_DATE_EPOCH`, else the workspace's last commit, else 0.
    fn source_date_epoch(&self) -> Result<u64> {
        match &self.workspace {
            Some(ws) => ws.source_date_epoch(),
            None if std::env::var_os("SOURCE_DATE_EPOCH").is_some() => {
                workspace::source_date_epoch(Path::new("/nonexistent"))
            }
            None => Ok(0),
        }
    }

    /// The `org.opencontainers.image.*` annotations (image-spec `annotations.md`) from the
    /// package and git.
    fn standard_annotations(&self, created: &str) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        let mut put = |key: &str, value: Option<String>| {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                map.insert(format!("org.opencontainers.image.{key}"), value);
            }
        };
        put("created", Some(created.to_owned()));
        if let Some(p) = &self.package {
            put("title", Some(p.name.to_string()));
            put("description", p.description.clone());
            put("version", Some(p.version.to_string()));
            put("licenses", p.license.clone());
            put("source", p.repository.clone());
            put("url", p.homepage.clone());
            put("documentation", p.documentation.clone());
        }
        put(
            "revision",
            self.workspace.as_ref().and_then(Workspace::git_revision),
        );
        map
    }
}

/// The package an image is made from: `-p`, else the only member with binaries, else the root
/// package. With prebuilt binaries an ambiguous workspace just gives no package metadata.
fn select_package(ws: &Workspace, specs: &[String], prebuilt: bool) -> Result<Option<Package>> {
    let members = ws.members();
    let names = || {
        members
            .iter()
            .map(|p| p.name.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match specs {
        [] => {}
        [spec] => {
            let name = spec.split('@').next().unwrap_or(spec);
            return members
                .iter()
                .find(|p| p.name.as_str() == name)
                .map(|p| Some((*p).clone()))
                .ok_or_else(|| {
                    error::input(format!(
                        "the workspace has no package `{spec}`; its packages are: {}",
                        names()
                    ))
                });
        }
        _ => {
            return Err(error::input(
                "an image holds one package's binaries: pass -p/--package once \
                 (run `cargo airlock image` once per package)",
            ));
        }
    }
    let with_bins: Vec<&&Package> = members
        .iter()
        .filter(|p| p.targets.iter().any(|t| t.is_bin()))
        .collect();
    if let [only] = with_bins.as_slice() {
        return Ok(Some((**only).clone()));
    }
    if let Some(root) = ws.metadata.root_package() {
        return Ok(Some(root.clone()));
    }
    if prebuilt {
        return Ok(None);
    }
    Err(error::input(format!(
        "the workspace has {} packages with binaries; choose one with -p/--package (packages: {})",
        with_bins.len(),
        names()
    )))
}

/// The items asked for, with `ca-certs` implied by a CA bundle and `tzdata` by a zoneinfo dir.
fn essentials_options(settings: &ImageSettings) -> EssentialsOptions {
    let mut items: BTreeSet<Essential> = settings
        .essentials
        .as_ref()
        .map(|e| e.items().into_iter().collect())
        .unwrap_or_default();
    if settings.ca_bundle.is_some() {
        items.insert(Essential::CaCerts);
    }
    if settings.zoneinfo.is_some() {
        items.insert(Essential::Tzdata);
    }
    EssentialsOptions {
        items,
        ca_bundle: settings.ca_bundle.clone(),
        zoneinfo: settings.zoneinfo.clone(),
    }
}

/// Where the image goes: a writer on the layout (new, or a copy of the existing one), or on
/// a scratch layout that is dropped once the archive is written.
struct Output {
    writer: LayoutWriter,
    existing: Option<Layout>,
    /// The layout directory to swap in; None when only an archive was asked for.
    target: Option<PathBuf>,
}

impl Output {
    /// Checks the output before anything is built: an existing layout must open cleanly, and
    /// anything else at that path is refused rather than replaced.
    fn open(options: &ImageOptions, project: &Project) -> Result<Output> {
        let target = match (&options.output, &options.archive) {
            (Some(dir), _) => Some(dir.clone()),
            (None, Some(_)) => None,
            (None, None) => match &project.workspace {
                Some(ws) => Some(ws.airlock_dir().join("image")),
                None => {
                    return Err(error::input(
                        "no output: name a layout directory with --output DIR or an archive \
                         with --archive FILE.tar",
                    ));
                }
            },
        };
        let Some(dir) = target else {
            let archive = options
                .archive
                .as_deref()
                .context("an archive path is required without a layout")?;
            let scratch = archive.with_file_name(format!(
                "{}.layout",
                archive
                    .file_name()
                    .map_or_else(|| "image".into(), |n| n.to_string_lossy())
            ));
            return Ok(Output {
                writer: LayoutWriter::create(&scratch)?,
                existing: None,
                target: None,
            });
        };
        let existing = existing_layout(&dir)?;
        let writer = match &existing {
            Some(layout) => LayoutWriter::update(layout)
                .with_context(|| format!("cannot add to the existing layout {}", dir.display()))?,
            None => LayoutWriter::create(&dir)?,
        };
        Ok(Output {
            writer,
            existing,
            target: Some(dir),
        })
    }

    /// Writes `index.json` (the existing entries under other tags kept, `entries` added),
    /// prunes blobs nothing refers to any more, and swaps the layout into place.
    fn finish(self, entries: Vec<Descriptor>) -> Result<Option<PathBuf>> {
        let Some(target) = self.target else {
            return Ok(None);
        };
        let new_tags: BTreeSet<&str> = entries.iter().filter_map(layout::ref_name).collect();
        let kept: Vec<Descriptor> = self
            .existing
            .as_ref()
            .map(|layout| {
                layout
                    .index()
                    .manifests()
                    .iter()
                    .filter(|d| !layout::ref_name(d).is_some_and(|t| new_tags.contains(t)))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let index = layout_index(kept, entries)?;
        let pruned = prune::prune_unreachable(self.writer.path(), &index)?;
        if pruned > 0 {
            progress::detail(format!("removed {pruned} blobs no tag refers to any more"));
        }
        self.writer.finish(&index)?;
        Ok(Some(target))
    }
}

/// The layout at `dir` if there is one; None for a missing path or an empty directory;
/// an error for anything else, which is left as it is.
fn existing_layout(dir: &Path) -> Result<Option<Layout>> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(error::input(format!(
                "cannot use {} as output: {e}",
                dir.display()
            )));
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(error::input(format!(
                "{} exists and is not a directory; --output names an OCI layout directory",
                dir.display()
            )));
        }
        Ok(_) => {}
    }
    let empty = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .next()
        .is_none();
    if empty {
        return Ok(None);
    }
    if !dir.join("oci-layout").exists() {
        return Err(error::input(format!(
            "{} exists and is not an OCI image layout (it has no oci-layout file); remove it \
             or choose another --output",
            dir.display()
        )));
    }
    Layout::open(dir).map(Some).with_context(|| {
        format!(
            "cannot add to the existing layout {}; it was left as it is",
            dir.display()
        )
    })
}

/// An `index.json` holding `kept` then `entries`.
fn layout_index(kept: Vec<Descriptor>, entries: Vec<Descriptor>) -> Result<ImageIndex> {
    let mut manifests = kept;
    manifests.extend(entries);
    oci_spec::image::ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .context("cannot build the layout's index.json")
}

/// The `index.json` entry for `tag`: the image's descriptor with its tag and full name.
fn tagged_entry(top: &Descriptor, repository: &str, tag: &str) -> Descriptor {
    let mut entry = layout::with_ref_name(top.clone(), tag);
    let mut annotations = entry.annotations().clone().unwrap_or_default();
    annotations.insert(
        CONTAINERD_IMAGE_NAME.to_owned(),
        format!("{repository}:{tag}"),
    );
    entry.set_annotations(Some(annotations));
    entry
}

/// The binaries per architecture, the entrypoint first.
type Binaries = BTreeMap<Arch, Vec<ImageBinary>>;

fn collect_binaries(options: &ImageOptions, project: &Project) -> Result<Binaries> {
    let found = if options.binaries.is_empty() {
        built_binaries(options, project)?
    } else {
        if !options.build.targets.is_empty() || options.settings.targets.is_some() {
            return Err(error::input(
                "--target and --binary cannot be combined: the architecture of a --binary file \
                 is read from its ELF header",
            ));
        }
        prebuilt_binaries(&options.binaries)?
    };
    let mut binaries = Binaries::new();
    for (binary, info) in found {
        let arch = info.arch.ok_or_else(|| {
            error::input(format!(
                "{} is a {} binary; airlock builds images for x86_64 and aarch64",
                binary.source.display(),
                info.machine
            ))
        })?;
        let list = binaries.entry(arch).or_default();
        if list.iter().any(|b| b.name == binary.name) {
            return Err(error::input(format!(
                "two {} binaries are named `{}` ({} and {}); an image holds one file per name",
                arch,
                binary.name,
                list.iter()
                    .find(|b| b.name == binary.name)
                    .map_or_else(String::new, |b| b.source.display().to_string()),
                binary.source.display()
            )));
        }
        list.push(binary);
    }
    Ok(binaries)
}

fn prebuilt_binaries(files: &[PathBuf]) -> Result<Vec<(ImageBinary, ElfInfo)>> {
    files
        .iter()
        .map(|file| {
            if !file.is_file() {
                return Err(error::input(format!(
                    "{} does not exist or is not a file; --binary names a built executable",
                    file.display()
                )));
            }
            let info = elf::inspect_file(file)?;
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| error::input(format!("{} has no file name", file.display())))?;
            Ok((image_binary(name, file, &info, None), info))
        })
        .collect()
}

fn built_binaries(
    options: &ImageOptions,
    project: &Project,
) -> Result<Vec<(ImageBinary, ElfInfo)>> {
    let package = project.package.as_ref().ok_or_else(|| {
        error::input(
            "no package to build: run in a Cargo workspace with a binary, pass -p/--package, \
             or package prebuilt files with --binary FILE",
        )
    })?;
    let bins = match &project.settings.bins {
        Some(bins) if !bins.is_empty() => bins.clone(),
        _ => default_bins(package)?,
    };
    let targets = match &project.settings.targets {
        Some(targets) if !targets.is_empty() => targets.clone(),
        _ => vec![TargetTriple::host_musl()],
    };
    let mut arches = BTreeSet::new();
    for target in &targets {
        let arch = target.arch().ok_or_else(|| {
            error::input(format!(
                "airlock builds images for x86_64 and aarch64, not for `{target}`"
            ))
        })?;
        if !arches.insert(arch) {
            return Err(error::input(format!(
                "two targets build for {}; an image has one manifest per platform",
                document::platform_name(arch)
            )));
        }
    }
    let build_options = BuildOptions {
        packages: vec![package.name.to_string()],
        bins: bins.clone(),
        targets: targets.clone(),
        ..options.build.clone()
    };
    let report = build::build(&build_options).with_context(|| {
        format!(
            "cannot build the binaries of {} for the image",
            package.name
        )
    })?;
    let mut found = Vec::new();
    for target in &targets {
        for bin in &bins {
            let built = report
                .binaries
                .iter()
                .find(|b| &b.target == target && &b.name == bin)
                .ok_or_else(|| {
                    error::input(format!(
                        "the build produced no binary `{bin}` for {target}; check --bin"
                    ))
                })?;
            found.push((
                image_binary(bin.clone(), &built.path, &built.elf, Some(target.clone())),
                built.elf.clone(),
            ));
        }
    }
    Ok(found)
}

/// The package's only binary; several need `--bin` or `bins` in the settings.
fn default_bins(package: &Package) -> Result<Vec<String>> {
    let bins: Vec<String> = package
        .targets
        .iter()
        .filter(|t| t.is_bin())
        .map(|t| t.name.clone())
        .collect();
    match bins.as_slice() {
        [_] => Ok(bins),
        [] => Err(error::input(format!(
            "package {} has no binary to put in an image",
            package.name
        ))),
        _ => Err(error::input(format!(
            "package {} has several binaries ({}); choose the image's with --bin NAME or \
             `bins = [\"NAME\"]` in [package.metadata.airlock.image]",
            package.name,
            bins.join(", ")
        ))),
    }
}

fn image_binary(
    name: String,
    source: &Path,
    info: &ElfInfo,
    target: Option<TargetTriple>,
) -> ImageBinary {
    ImageBinary {
        path: format!("{BIN_DIR}/{name}"),
        name,
        source: source.to_path_buf(),
        size: info.size,
        linkage: info.linkage,
        target,
    }
}

/// A dynamic binary cannot run on an empty file system: refuse it (exit 1) unless allowed.
fn check_static(binaries: &Binaries, allow_dynamic: bool) -> Result<()> {
    let dynamic: Vec<&ImageBinary> = binaries
        .values()
        .flatten()
        .filter(|b| !b.linkage.is_static())
        .collect();
    if dynamic.is_empty() {
        return Ok(());
    }
    if allow_dynamic {
        for binary in dynamic {
            progress::warn(format!(
                "{} is dynamically linked; packaging it anyway (--allow-dynamic), but it will \
                 not start in a scratch image",
                binary.source.display()
            ));
        }
        return Ok(());
    }
    let problems = dynamic
        .iter()
        .map(|b| elf::inspect_file(&b.source).map(|info| elf::dynamic_problem(&info)))
        .collect::<Result<Vec<_>>>()?;
    Err(error::check_failed(format!(
        "{}\n  help: a scratch image has no dynamic loader or shared libraries; build static \
         binaries (`cargo airlock build`), or pass --allow-dynamic to package them anyway",
        problems.join("\n")
    )))
}

/// The repository name: the setting, else the package name, else the first binary's name.
fn repository(
    settings: &ImageSettings,
    package: Option<&Package>,
    binaries: &Binaries,
) -> Result<String> {
    let name = match (&settings.repository, package) {
        (Some(name), _) => name.clone(),
        (None, Some(p)) => p.name.to_lowercase().replace('_', "-"),
        (None, None) => binaries
            .values()
            .flatten()
            .next()
            .map(|b| b.name.to_lowercase())
            .unwrap_or_else(|| "image".to_owned()),
    };
    validate_repository(&name)?;
    Ok(name)
}

/// The distribution spec's repository grammar (`[a-z0-9]+([._-]|__)…` components separated by
/// `/`), with an optional `host[:port]/` first component.
pub fn validate_repository(name: &str) -> Result<()> {
    let mut components: Vec<&str> = name.split('/').collect();
    if components.len() > 1 && components[0].contains(['.', ':']) {
        components.remove(0);
    }
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.ends_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
    };
    if components.iter().all(|c| component_ok(c)) && name.len() <= 255 {
        Ok(())
    } else {
        Err(error::input(format!(
            "`{name}` is not a valid repository name: use lowercase letters, digits and `.`, \
             `_`, `-` between them, components separated by `/`"
        )))
    }
}

/// Everything one platform's image needs.
struct PlatformInput<'a> {
    writer: &'a LayoutWriter,
    arch: Arch,
    binaries: &'a [ImageBinary],
    essentials: Option<&'a (Layer, Essentials)>,
    settings: &'a ImageSettings,
    metadata: &'a BTreeMap<String, String>,
    epoch: u64,
    created: &'a str,
    compression: Compression,
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
    let names: Vec<&str> = input.binaries.iter().map(|b| b.name.as_str()).collect();
    progress::status(
        "Packaging",
        format!("{} for {platform_name}", names.join(", ")),
    );

    let mut tar = TarBuilder::new();
    for binary in input.binaries {
        tar.file_from_disk(
            binary.path.trim_start_matches('/'),
            &binary.source,
            tarball::EXEC_MODE,
        );
    }
    let binary_layer = layer::write_layer(input.writer, &tar, input.epoch, input.compression)?;

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
        layer: &binary_layer,
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
    layers.push((&binary_layer, "binary"));

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_the_distribution_grammar() {
        for good in [
            "app",
            "my-app",
            "org/app",
            "registry.local:5000/team/app",
            "a.b_c",
        ] {
            assert!(validate_repository(good).is_ok(), "{good}");
        }
        for bad in ["", "App", "-app", "app-", "a//b", "app:tag", "a b"] {
            assert!(validate_repository(bad).is_err(), "{bad}");
        }
    }
}
