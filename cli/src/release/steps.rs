//! The steps of `dist`, in order, each timed and announced on stderr.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};
use cargo_metadata::{MetadataCommand, PackageId};

use super::archive::{self, ArchiveFormat, ArchiveSpec};
use super::provenance::{self, ResourceDescriptor, Statement};
use super::sbom::{self, Sbom};
use super::settings::DistSettings;
use super::{DistOptions, DistReport, StepTiming, format_duration};
use crate::atomic::{self, StagedDir};
use crate::compile::{self, BuildOptions, BuildReport};
use crate::digest;
use crate::elf::{self, strip::StripMode};
use crate::error;
use crate::lock::Lockfile;
use crate::oci::artifact::{self, ArtifactFile};
use crate::oci::image::{self, ImageOptions};
use crate::oci::layout::{self, ImageRef, Layout, LayoutWriter};
use crate::oci::settings::ImageSettings;
use crate::progress;
use crate::records::{Artifact, ArtifactKind, DistManifest, ImageRecord, Sha256Sums};
use crate::render::CommandReport;
use crate::report::{self, ReportOptions};
use crate::signing::{self, Attachment, AttachmentKind, Envelope, SigningKey};
use crate::target::TargetTriple;
use crate::workspace::{self, Workspace};

/// Everything `dist` decided before starting: options merged over settings over defaults.
struct Plan {
    workspace: Workspace,
    out_dir: PathBuf,
    targets: Vec<TargetTriple>,
    packages: Vec<String>,
    bins: Vec<String>,
    archives: Vec<ArchiveFormat>,
    image: bool,
    budget: Option<u64>,
    strip: StripMode,
    source_date_epoch: u64,
    /// The release key, when the release is signed.
    signing_key: Option<SigningKey>,
}

fn plan(options: &DistOptions) -> Result<Plan> {
    let workspace = Workspace::load(options.manifest_path.as_deref())?;
    let settings: DistSettings = workspace::parse_settings(
        Some(workspace.airlock_metadata()),
        "workspace.metadata.airlock",
    )?;
    let pick = |flag: &[String], setting: &[String]| {
        if flag.is_empty() {
            setting.to_vec()
        } else {
            flag.to_vec()
        }
    };
    let targets = match (&options.targets[..], &settings.targets[..]) {
        ([], []) => TargetTriple::all_musl(),
        ([], from_settings) => from_settings.to_vec(),
        (from_flags, _) => from_flags.to_vec(),
    };
    let archives = match (&options.archives[..], &settings.dist.archives[..]) {
        ([], []) => vec![ArchiveFormat::TarGz],
        ([], from_settings) => from_settings.to_vec(),
        (from_flags, _) => from_flags.to_vec(),
    };
    let out_dir = options
        .out_dir
        .clone()
        .or_else(|| {
            settings
                .dist
                .out_dir
                .as_ref()
                .map(|d| workspace.root().join(d))
        })
        .unwrap_or_else(|| workspace.target_dir().join("dist"));
    let budget = match (options.budget, &settings.report.budget) {
        (Some(b), _) => Some(b),
        (None, Some(text)) => Some(crate::render::parse_bytes(text).map_err(|e| {
            error::input(format!("[workspace.metadata.airlock.report] budget: {e}"))
        })?),
        (None, None) => None,
    };
    let source_date_epoch = workspace.source_date_epoch()?;
    let signing_key = release_key(options, &settings, &workspace)?;
    let mut packages = pick(&options.packages, &settings.packages);
    if packages.is_empty() {
        packages = released_members(&workspace);
    }
    Ok(Plan {
        packages,
        bins: pick(&options.bins, &settings.bins),
        image: settings.dist.image && !options.no_image,
        strip: options.strip.or(settings.dist.strip).unwrap_or_default(),
        workspace,
        out_dir,
        targets,
        archives,
        budget,
        source_date_epoch,
        signing_key,
    })
}

/// The release key, loaded before anything is built (a wrong passphrase fails at once):
/// `--key` (or the settings' `key`, relative to the workspace root) when `--sign` or the
/// settings' `sign = true` asks for a signed release.
fn release_key(
    options: &DistOptions,
    settings: &DistSettings,
    workspace: &Workspace,
) -> Result<Option<SigningKey>> {
    if options.no_sign || !(options.sign || settings.dist.sign) {
        return Ok(None);
    }
    let path = match (&options.key, &settings.dist.key) {
        (Some(key), _) => key.clone(),
        (None, Some(key)) => workspace.root().join(key),
        (None, None) => {
            return Err(error::input(
                "a signed release needs the release key: give --key FILE or set `key` in \
                 [workspace.metadata.airlock.dist] (make one with `cargo airlock keygen`)",
            ));
        }
    };
    let passphrase = match &options.passphrase {
        Some(passphrase) => passphrase.clone(),
        None => signing::key::read_passphrase(signing::PassphraseSource::Environment)?,
    };
    Ok(Some(SigningKey::load(&path, &passphrase)?))
}

/// The members whose binaries a release ships by default: every member with a binary but the
/// `xtask` package (a workspace's own automation, by the cargo-xtask convention).
fn released_members(workspace: &Workspace) -> Vec<String> {
    workspace
        .members()
        .into_iter()
        .filter(|p| p.name.as_str() != "xtask" && p.targets.iter().any(|t| t.is_bin()))
        .map(|p| p.name.to_string())
        .collect()
}

/// Announces and times one step.
struct Steps(Vec<StepTiming>);

impl Steps {
    fn run<T>(&mut self, name: &str, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        progress::status(name, what);
        let start = Instant::now();
        let value = f().with_context(|| format!("dist step `{}` failed", name.to_lowercase()))?;
        let elapsed = start.elapsed();
        progress::status(
            "Done",
            format!("{} in {}", name.to_lowercase(), format_duration(elapsed)),
        );
        self.0.push(StepTiming {
            step: name.to_lowercase(),
            seconds: elapsed.as_secs_f64(),
        });
        Ok(value)
    }
}

/// `cargo airlock dist`.
pub fn dist(options: &DistOptions) -> Result<DistReport> {
    let started = SystemTime::now();
    let plan = plan(options)?;
    let staged = StagedDir::new(&plan.out_dir)?;
    let out = staged.path().to_path_buf();
    let mut steps = Steps(Vec::new());
    let mut problems: Vec<String> = Vec::new();

    let built = steps.run(
        "Building",
        &format!("{} target(s)", plan.targets.len()),
        || build_binaries(&plan, options),
    )?;
    let (shipped, mut artifacts) = steps.run(
        "Stripping",
        &format!("{} (debug files beside)", plan.strip),
        || strip_binaries(&plan, &built, &out),
    )?;
    artifacts.extend(steps.run("Archiving", "binaries with their documents", || {
        write_archives(&plan, &built, &shipped, &out)
    })?);
    artifacts.extend(steps.run("SBOM", "CycloneDX and SPDX", || {
        write_sboms(&plan, &built, &out, options)
    })?);

    let mut images = Vec::new();
    if plan.image {
        let (record, archive) =
            steps.run("Image", "scratch OCI image with the SBOMs attached", || {
                write_image(&plan, &built, &shipped, &out, &artifacts, options.load)
            })?;
        artifacts.push(archive);
        let (report_artifacts, report_problems) =
            steps.run("Report", "image and binary sizes", || {
                write_report(&plan, &record, &out)
            })?;
        artifacts.extend(report_artifacts);
        problems.extend(report_problems);
        images.push(record);
    }

    let (provenance_artifact, attestation) =
        steps.run("Provenance", "SLSA v1 statement in a DSSE envelope", || {
            write_provenance(&plan, &built, &out, &artifacts, images.first(), started)
        })?;
    if let (Some(image), Some(attestation)) = (images.first_mut(), attestation) {
        image.attestations.push(attestation);
    }

    // The provenance records when the run happened, so it differs from run to run: SHA256SUMS
    // covers exactly the reproducible files (the provenance's own subjects and the records).
    let sums_artifact = steps.run("Checksums", "SHA256SUMS", || write_sums(&out, &artifacts))?;
    artifacts.push(sums_artifact);
    if let Some(key) = &plan.signing_key {
        let signature = steps.run(
            "Signing",
            "SHA256SUMS and every image with the release key",
            || sign_release(&out, key, options.signed_repository.as_ref()),
        )?;
        artifacts.push(signature);
    }
    artifacts.push(provenance_artifact);
    artifacts.sort_by(|a, b| a.path.cmp(&b.path));

    let manifest = DistManifest {
        schema_version: DistManifest::SCHEMA_VERSION,
        tool: format!("cargo-airlock {}", env!("CARGO_PKG_VERSION")),
        name: release_name(&plan),
        version: release_version(&plan, &built),
        source_revision: plan.workspace.git_revision(),
        source_date_epoch: plan.source_date_epoch,
        artifacts,
        images,
    };
    let mut manifest_json =
        serde_json::to_vec_pretty(&manifest).context("cannot serialise dist-manifest.json")?;
    manifest_json.push(b'\n');
    atomic::write_file(&out.join("dist-manifest.json"), &manifest_json)?;
    problems.retain(|p: &String| !p.is_empty());
    staged.commit()?;
    Ok(DistReport {
        out_dir: plan.out_dir,
        manifest,
        steps: steps.0,
        problems,
    })
}

fn build_binaries(plan: &Plan, options: &DistOptions) -> Result<BuildReport> {
    let report = compile::build(&BuildOptions {
        manifest_path: options.manifest_path.clone(),
        packages: plan.packages.clone(),
        bins: plan.bins.clone(),
        targets: plan.targets.clone(),
        locked: options.locked,
        offline: options.offline,
        ..BuildOptions::default()
    })?;
    if !report.problems.is_empty() {
        return Err(error::check_failed(report.problems.join("\n")));
    }
    if report.binaries.is_empty() {
        return Err(error::input("the workspace has no binaries to release"));
    }
    Ok(report)
}

fn artifact(
    out: &Path,
    path: &Path,
    kind: ArtifactKind,
    target: Option<&TargetTriple>,
) -> Result<Artifact> {
    let (sha256, size) = digest::hash_file(path)?;
    let relative = path
        .strip_prefix(out)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/");
    Ok(Artifact {
        path: relative,
        kind,
        target: target.map(|t| t.to_string()),
        size,
        sha256,
    })
}

/// One released binary as it ships.
struct Shipped {
    /// The file the archives stream (they hold these bytes, and the image the same bytes):
    /// the built binary itself when stripping leaves it as it is, else a stripped copy in
    /// `scratch`, so a binary of hundreds of MB is never held in memory.
    path: PathBuf,
    /// The stripped copy beside the built binary, removed when dropped.
    _scratch: Option<atomic::StagedFile>,
    /// The digest of those bytes, checked as the archives read them back.
    digest: digest::Sha256Digest,
    /// The name of its debug file, which its `.gnu_debuglink` names.
    debug_name: String,
}

impl Shipped {
    /// A scratch file beside `binary` for its stripped copy, filled by `write`.
    fn write(
        binary: &Path,
        debug_name: String,
        write: impl FnOnce(&mut dyn std::io::Write) -> Result<()>,
    ) -> Result<Shipped> {
        use std::io::Write;
        let mut name = binary.file_name().unwrap_or_default().to_os_string();
        name.push(".stripped");
        let file = atomic::StagedFile::new(&binary.with_file_name(name))?;
        let mut hashed = digest::HashingWriter::new(std::io::BufWriter::new(file.file()));
        write(&mut hashed)?;
        hashed.flush()?;
        let (digest, _, _) = hashed.finish();
        Ok(Shipped {
            path: file.path().to_path_buf(),
            _scratch: Some(file),
            digest,
            debug_name,
        })
    }

    /// `binary` as built, when stripping leaves nothing to remove: hashed, not copied.
    fn as_built(binary: &Path, debug_name: String) -> Result<Shipped> {
        let (digest, _) = digest::hash_file(binary)?;
        Ok(Shipped {
            path: binary.to_path_buf(),
            _scratch: None,
            digest,
            debug_name,
        })
    }
}

/// Strips every built binary in the plan's mode and writes the debug files into the release.
fn strip_binaries(
    plan: &Plan,
    built: &BuildReport,
    out: &Path,
) -> Result<(Vec<Shipped>, Vec<Artifact>)> {
    let mut shipped = Vec::new();
    let mut artifacts = Vec::new();
    for binary in &built.binaries {
        let debug_name = elf::strip::debug_file_name(&binary.name, &binary.version, &binary.target);
        let cannot = |e: anyhow::Error| {
            error::input(format!(
                "{}: cannot strip it in process ({e:#}); pass --strip none to release it as built",
                binary.path.display()
            ))
        };
        // The image strips the same way (streamed where the plan is proven), so the debug file
        // written here is the one the image's binary links to, byte for byte.
        let input = crate::input::open_regular(&binary.path, crate::input::Links::Follow)?;
        let mut reader = std::io::BufReader::with_capacity(1 << 16, input.file);
        let planned = elf::stream_strip::plan(&mut reader, plan.strip).map_err(cannot)?;
        if let elf::stream_strip::Planned::Stream(split) = planned {
            let path = out.join(&debug_name);
            let mut crc = 0;
            atomic::write_file_with(&path, atomic::FILE_MODE, |w| {
                crc = split.write_debug(&mut reader, w).map_err(cannot)?;
                Ok(())
            })?;
            let link = elf::strip::gnu_debuglink(&debug_name, crc, object::Endianness::Little);
            let stripped = Shipped::write(&binary.path, debug_name, |w| {
                split.write_shipped(&mut reader, &link, w).map_err(cannot)
            })?;
            artifacts.push(artifact(
                out,
                &path,
                ArtifactKind::DebugInfo,
                Some(&binary.target),
            )?);
            shipped.push(stripped);
            continue;
        }
        if let elf::stream_strip::Planned::Unchanged = planned {
            shipped.push(Shipped::as_built(&binary.path, debug_name)?);
            continue;
        }
        if let elf::stream_strip::Planned::Fallback(why) = planned {
            progress::detail(format!(
                "{}: stripped in memory, not streamed: {why}",
                binary.path.display()
            ));
        }
        let bytes = elf::read_binary(&binary.path)?;
        let split = elf::strip::split_debug(bytes, plan.strip, &debug_name).map_err(cannot)?;
        if let Some(debug) = &split.debug {
            let path = out.join(&debug_name);
            atomic::write_file(&path, debug)?;
            artifacts.push(artifact(
                out,
                &path,
                ArtifactKind::DebugInfo,
                Some(&binary.target),
            )?);
        }
        shipped.push(Shipped::write(&binary.path, debug_name, |w| {
            Ok(w.write_all(&split.shipped)?)
        })?);
    }
    Ok((shipped, artifacts))
}

fn write_archives(
    plan: &Plan,
    built: &BuildReport,
    shipped: &[Shipped],
    out: &Path,
) -> Result<Vec<Artifact>> {
    let packages: BTreeMap<&str, &cargo_metadata::Package> = plan
        .workspace
        .members()
        .into_iter()
        .map(|p| (p.name.as_str(), p))
        .collect();
    let mut artifacts = Vec::new();
    for (binary, shipped) in built.binaries.iter().zip(shipped) {
        let package_dir = packages
            .get(binary.package.as_str())
            .and_then(|p| p.manifest_path.parent())
            .map(|d| d.as_std_path().to_path_buf())
            .unwrap_or_else(|| plan.workspace.root().to_path_buf());
        let spec = ArchiveSpec {
            top_dir: format!("{}-{}-{}", binary.name, binary.version, binary.target),
            binary: (&shipped.path, shipped.digest),
            binary_name: binary.name.clone(),
            documents: archive::release_documents(&package_dir, plan.workspace.root())?,
            mtime: plan.source_date_epoch,
        };
        for format in &plan.archives {
            let dest = out.join(format!("{}.{}", spec.top_dir, format.extension()));
            archive::write_archive(&dest, *format, &spec)?;
            artifacts.push(artifact(
                out,
                &dest,
                ArtifactKind::Archive,
                Some(&binary.target),
            )?);
        }
    }
    Ok(artifacts)
}

fn write_sboms(
    plan: &Plan,
    built: &BuildReport,
    out: &Path,
    options: &DistOptions,
) -> Result<Vec<Artifact>> {
    let mut cmd = MetadataCommand::new();
    cmd.manifest_path(plan.workspace.root().join("Cargo.toml"));
    let mut extra = Vec::new();
    for target in &plan.targets {
        extra.push("--filter-platform".to_owned());
        extra.push(target.to_string());
    }
    if options.locked {
        extra.push("--locked".to_owned());
    }
    if options.offline {
        extra.push("--offline".to_owned());
    }
    cmd.other_options(extra);
    let metadata = cmd.exec().map_err(|e| {
        anyhow::anyhow!("cannot read the dependency graph with cargo metadata: {e}")
    })?;
    let roots: Vec<PackageId> = metadata
        .workspace_packages()
        .into_iter()
        .filter(|p| built.binaries.iter().any(|b| b.package == p.name.as_str()))
        .map(|p| p.id.clone())
        .collect();
    let checksums = lock_checksums(&plan.workspace.lockfile())?;
    let sbom = Sbom::collect(
        &metadata,
        &roots,
        &release_name(plan),
        &release_version(plan, built),
        plan.source_date_epoch,
        &|p| {
            let source = p
                .source
                .as_ref()
                .map(|s| s.repr.clone())
                .unwrap_or_default();
            checksums
                .get(&(p.name.to_string(), p.version.to_string(), source))
                .copied()
        },
    )?;
    let mut sbom = sbom;
    let mut artifacts = Vec::new();
    // Each binary's own SBOM, from the list read back from the binary itself.
    for binary in &built.binaries {
        if let Some(list) = binary.elf.dependencies.list() {
            let own = Sbom::for_binary(&sbom, list, &binary.name, &binary.version)?;
            let path = out.join(format!(
                "{}-{}-{}.cdx.json",
                binary.name, binary.version, binary.target
            ));
            atomic::write_file(&path, &own.cyclonedx_json()?)?;
            artifacts.push(artifact(
                out,
                &path,
                ArtifactKind::SbomCyclonedx,
                Some(&binary.target),
            )?);
        }
    }
    // What the binaries say they hold, read back from the files: the SBOM lists that, not
    // what the metadata of all targets together could reach.
    let mut shipped = BTreeSet::new();
    for binary in &built.binaries {
        if let Some(list) = binary.elf.dependencies.list() {
            shipped.extend(
                list.packages
                    .iter()
                    .map(|p| (p.name.clone(), p.version.clone())),
            );
        }
    }
    if built
        .binaries
        .iter()
        .all(|b| b.elf.dependencies.list().is_some())
    {
        sbom.retain_shipped(&shipped);
    }
    let cdx = out.join("sbom.cdx.json");
    atomic::write_file(&cdx, &sbom.cyclonedx_json()?)?;
    let spdx = out.join("sbom.spdx.json");
    atomic::write_file(&spdx, &sbom.spdx_json()?)?;
    artifacts.push(artifact(out, &cdx, ArtifactKind::SbomCyclonedx, None)?);
    artifacts.push(artifact(out, &spdx, ArtifactKind::SbomSpdx, None)?);
    Ok(artifacts)
}

/// Checksums of `Cargo.lock`, by (name, version, source as cargo metadata spells it).
fn lock_checksums(path: &Path) -> Result<BTreeMap<(String, String, String), digest::Sha256Digest>> {
    let lock = Lockfile::load(path)?;
    Ok(lock
        .packages()
        .iter()
        .filter_map(|p| {
            let checksum = p.checksum?;
            let key = (
                p.id.name.clone(),
                p.id.version.to_string(),
                p.id.source.to_string(),
            );
            Some((key, checksum))
        })
        .collect())
}

/// The image of every released binary (an index over the targets), in `image/` and as
/// `image.tar`, with the SBOMs attached as artifacts whose subject is the image.
fn write_image(
    plan: &Plan,
    built: &BuildReport,
    shipped: &[Shipped],
    out: &Path,
    artifacts: &[Artifact],
    load: Option<crate::oci::load::Runtime>,
) -> Result<(ImageRecord, Artifact)> {
    let layout_dir = out.join("image");
    let archive_path = out.join("image.tar");
    let report = image::image(&ImageOptions {
        build: BuildOptions {
            manifest_path: Some(plan.workspace.root().join("Cargo.toml")),
            ..BuildOptions::default()
        },
        binaries: built.binaries.iter().map(|b| b.path.clone()).collect(),
        allow_dynamic: false,
        output: Some(layout_dir.clone()),
        archive: Some(archive_path.clone()),
        settings: ImageSettings {
            tags: image_tags(plan, built),
            ..ImageSettings::default()
        },
        base_cache: None,
        registry: Some(std::sync::Arc::new(
            crate::registry::pull::RegistryPuller::new(crate::registry::ClientOptions::standard()),
        )),
        load,
        // The image strips the same bytes the same way, so its layers hold exactly what the
        // archives hold, and rewrites the same debug files.
        strip: plan.strip,
        debug_dir: Some(out.to_path_buf()),
        debug_names: built
            .binaries
            .iter()
            .zip(shipped)
            .map(|(b, s)| (b.path.clone(), s.debug_name.clone()))
            .collect(),
    })?;
    let tag = report
        .tags
        .first()
        .cloned()
        .context("the image step wrote no tag")?;

    let layout = Layout::open(&layout_dir)?;
    let subject = layout.resolve(Some(&tag))?.clone();
    let writer = LayoutWriter::update(&layout)?;
    let created = workspace::rfc3339(plan.source_date_epoch);
    let mut entries = layout.index().manifests().clone();
    let mut sboms = Vec::new();
    // The release's SBOMs describe the whole image; each binary's own stays a file.
    for sbom in artifacts.iter().filter(|a| {
        matches!(a.kind, ArtifactKind::SbomCyclonedx | ArtifactKind::SbomSpdx) && a.target.is_none()
    }) {
        let media_type = match sbom.kind {
            ArtifactKind::SbomCyclonedx => sbom::CYCLONEDX_MEDIA_TYPE,
            _ => sbom::SPDX_MEDIA_TYPE,
        };
        let bytes = std::fs::read(out.join(&sbom.path))
            .with_context(|| format!("cannot read {}", sbom.path))?;
        let descriptor = artifact::attach(
            &writer,
            &subject,
            media_type,
            &[ArtifactFile {
                media_type,
                title: &sbom.path,
                bytes: &bytes,
            }],
            &created,
        )?;
        sboms.push(layout::descriptor_digest(&descriptor)?);
        entries.push(descriptor);
    }
    let mut index = layout.index().clone();
    index.set_manifests(entries);
    writer.finish(&index)?;

    let record = ImageRecord {
        layout: "image".to_owned(),
        tag,
        digest: report.digest,
        manifests: report
            .images
            .iter()
            .map(|i| (i.platform.clone(), i.manifest.digest))
            .collect(),
        sboms,
        attestations: Vec::new(),
    };
    Ok((
        record,
        artifact(out, &archive_path, ArtifactKind::ImageArchive, None)?,
    ))
}

/// The release version as the image tag, unless `[…metadata.airlock.image] tags` says otherwise
/// (then the image step reads them itself).
fn image_tags(plan: &Plan, built: &BuildReport) -> Option<Vec<String>> {
    let configured = plan
        .workspace
        .airlock_metadata()
        .get("image")
        .and_then(|i| i.get("tags"));
    match configured {
        Some(_) => None,
        None => Some(vec![release_version(plan, built)]),
    }
}

/// The size report of the image: Markdown, JSON and SVG, and the budget's verdict.
fn write_report(
    plan: &Plan,
    image: &ImageRecord,
    out: &Path,
) -> Result<(Vec<Artifact>, Vec<String>)> {
    let mut report = report::report(&ReportOptions {
        manifest_path: Some(plan.workspace.root().join("Cargo.toml")),
        workspace: Some(plan.workspace.clone()),
        image: Some(ImageRef {
            path: out.join(&image.layout),
            tag: Some(image.tag.clone()),
        }),
        budget: plan.budget,
        ..ReportOptions::default()
    })?;
    // Name the image relative to the release directory: the report must not depend on where
    // the release was written (or staged), or two runs would differ.
    let measured = report.image.clone();
    let relative = format!("oci:{}:{}", image.layout, image.tag);
    for platform in &mut report.platforms {
        for row in &mut platform.comparisons {
            if row.source.as_deref() == Some(measured.as_str()) {
                row.source = Some(relative.clone());
            }
        }
    }
    report.image = relative;
    let json = serde_json::to_vec_pretty(&report).context("cannot serialise the size report")?;
    let renderings = [
        (
            "size-report.md",
            CommandReport::markdown(&report)
                .unwrap_or_default()
                .into_bytes(),
        ),
        ("size-report.json", [json, b"\n".to_vec()].concat()),
        (
            "size-report.svg",
            CommandReport::svg(&report).unwrap_or_default().into_bytes(),
        ),
    ];
    let mut artifacts = Vec::new();
    for (name, bytes) in renderings {
        let path = out.join(name);
        atomic::write_file(&path, &bytes)?;
        artifacts.push(artifact(out, &path, ArtifactKind::Report, None)?);
    }
    Ok((artifacts, report.problems.clone()))
}

/// `provenance.intoto.jsonl`: the SLSA v1 provenance of everything written so far, in a DSSE
/// envelope; attached to the image (when there is one) as a referrer in cosign's attestation
/// form, whose digest is returned.
fn write_provenance(
    plan: &Plan,
    built: &BuildReport,
    out: &Path,
    artifacts: &[Artifact],
    image: Option<&ImageRecord>,
    started: SystemTime,
) -> Result<(Artifact, Option<digest::Sha256Digest>)> {
    let statement = provenance_statement(plan, built, artifacts, image, started)?;
    let envelope = provenance::envelope(&statement, plan.signing_key.as_ref())?;
    let path = out.join(provenance::FILE_NAME);
    atomic::write_file(&path, &provenance::to_line(&envelope)?)?;
    let attestation = match image {
        Some(image) => Some(attach_attestation(out, image, &envelope)?),
        None => None,
    };
    Ok((
        artifact(out, &path, ArtifactKind::Provenance, None)?,
        attestation,
    ))
}

fn sha256_subject(name: String, digest: &digest::Sha256Digest) -> ResourceDescriptor {
    ResourceDescriptor {
        name: Some(name),
        digest: BTreeMap::from([("sha256".to_owned(), digest.hex())]),
        ..ResourceDescriptor::default()
    }
}

/// The subjects of a release: every archive (the image archive too), every binary as
/// `<triple>/<bin>`, and the image (`image:<tag>`, and `image:<tag>:<platform>` per manifest).
pub(crate) fn provenance_subjects(
    built: &BuildReport,
    artifacts: &[Artifact],
    image: Option<&ImageRecord>,
) -> Result<Vec<ResourceDescriptor>> {
    let mut subjects = Vec::new();
    for a in artifacts
        .iter()
        .filter(|a| matches!(a.kind, ArtifactKind::Archive | ArtifactKind::ImageArchive))
    {
        subjects.push(sha256_subject(a.path.clone(), &a.sha256));
    }
    for binary in &built.binaries {
        let (sha256, _) = digest::hash_file(&binary.path)?;
        subjects.push(sha256_subject(
            format!("{}/{}", binary.target, binary.name),
            &sha256,
        ));
    }
    if let Some(image) = image {
        subjects.push(sha256_subject(
            format!("image:{}", image.tag),
            &image.digest,
        ));
        for (platform, digest) in &image.manifests {
            if *digest != image.digest {
                subjects.push(sha256_subject(
                    format!("image:{}:{platform}", image.tag),
                    digest,
                ));
            }
        }
    }
    subjects.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(subjects)
}

fn provenance_statement(
    plan: &Plan,
    built: &BuildReport,
    artifacts: &[Artifact],
    image: Option<&ImageRecord>,
    started: SystemTime,
) -> Result<Statement> {
    let repository = plan
        .workspace
        .members()
        .into_iter()
        .filter(|p| plan.packages.iter().any(|n| n == p.name.as_str()))
        .find_map(|p| p.repository.clone());
    let source = provenance::source_of(plan.workspace.root(), repository);
    if source.dirty {
        progress::warn(
            "the checkout has uncommitted changes: the provenance says so, and a rebuild from \
             its revision will not give the same artifacts",
        );
    }
    let epoch = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    };
    let version = env!("CARGO_PKG_VERSION");
    Ok(Statement {
        statement_type: provenance::STATEMENT_TYPE.to_owned(),
        subject: provenance_subjects(built, artifacts, image)?,
        predicate_type: provenance::PREDICATE_TYPE.to_owned(),
        predicate: provenance::Provenance {
            build_definition: provenance::BuildDefinition {
                build_type: provenance::BUILD_TYPE.to_owned(),
                resolved_dependencies: provenance::resolved_dependencies(
                    &source,
                    &plan.workspace.lockfile(),
                )?,
                external_parameters: provenance::ExternalParameters {
                    source,
                    targets: plan.targets.iter().map(|t| t.to_string()).collect(),
                    profile: built.profile.clone(),
                    packages: plan.packages.clone(),
                    bins: plan.bins.clone(),
                    features: Vec::new(),
                    archives: plan
                        .archives
                        .iter()
                        .map(|a| a.extension().to_owned())
                        .collect(),
                    image: plan.image,
                    strip: plan.strip,
                },
                internal_parameters: provenance::InternalParameters {
                    source_date_epoch: plan.source_date_epoch,
                    toolchain: provenance::toolchain(plan.workspace.root())?,
                    airlock: format!("cargo-airlock {version}"),
                },
            },
            run_details: provenance::RunDetails {
                builder: provenance::Builder {
                    id: provenance::BUILDER_ID.to_owned(),
                    version: BTreeMap::from([("cargo-airlock".to_owned(), version.to_owned())]),
                },
                metadata: provenance::RunMetadata {
                    started_on: workspace::rfc3339(epoch(started)),
                    finished_on: workspace::rfc3339(epoch(SystemTime::now())),
                },
            },
        },
    })
}

/// Attaches the envelope to the image as cosign stores attestations: a layer holding the
/// envelope (`application/vnd.dsse.envelope.v1+json`, annotated with the predicate type) in a
/// manifest under the image's `sha256-<hex>.att` tag and in a referrer whose `subject` is the
/// image, so `push` carries it both ways. Returns the referrer's digest.
fn attach_attestation(
    out: &Path,
    image: &ImageRecord,
    envelope: &Envelope,
) -> Result<digest::Sha256Digest> {
    let layout = Layout::open(&out.join(&image.layout))?;
    let subject = layout.resolve(Some(&image.tag))?.clone();
    let writer = LayoutWriter::update(&layout)?;
    let mut entries = layout.index().manifests().clone();
    let attached = signing::layout::write_attachments(
        &writer,
        &mut entries,
        AttachmentKind::Attestation,
        &subject,
        &[Attachment::attestation(
            envelope,
            provenance::PREDICATE_TYPE,
        )?],
        &BTreeSet::new(),
    )?;
    let mut index = layout.index().clone();
    index.set_manifests(entries);
    writer.finish(&index)?;
    Ok(attached.referrer)
}

/// Signs `SHA256SUMS` (into `SHA256SUMS.sig`) and every image of the layout (simple signing,
/// for `identity` or the image's configured name), after the provenance is attached so the
/// layout holds its final images. The image archive keeps no signatures: it was written
/// before, and the layout is what `push` and `verify --release` read.
fn sign_release(
    out: &Path,
    key: &SigningKey,
    identity: Option<&signing::SignedRepository>,
) -> Result<Artifact> {
    let report = signing::sign_release(out, key, identity)?;
    let signed = report
        .files
        .first()
        .context("signing the release signed no file")?;
    artifact(out, &signed.signature, ArtifactKind::Signature, None)
}

fn write_sums(out: &Path, artifacts: &[Artifact]) -> Result<Artifact> {
    let mut sums = Sha256Sums::default();
    for a in artifacts {
        sums.entries.insert(a.path.clone(), a.sha256);
    }
    let path = out.join("SHA256SUMS");
    atomic::write_file(&path, sums.to_text().as_bytes())?;
    artifact(out, &path, ArtifactKind::Checksums, None)
}

/// The release's name: the single released package's, else the workspace directory's.
fn release_name(plan: &Plan) -> String {
    match plan.packages.as_slice() {
        [only] => only.clone(),
        _ => plan
            .workspace
            .root()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "release".to_owned()),
    }
}

/// The release's version: the released binaries' package version when they agree.
fn release_version(_plan: &Plan, built: &BuildReport) -> String {
    let mut versions: Vec<&str> = built.binaries.iter().map(|b| b.version.as_str()).collect();
    versions.sort_unstable();
    versions.dedup();
    match versions.as_slice() {
        [one] => (*one).to_owned(),
        _ => "0.0.0".to_owned(),
    }
}
