//! The binaries an image holds: built by `airlock::compile` or given with `--binary`, grouped
//! by architecture, proven static, and stripped as they go into the layer (the debug file
//! written beside, never into the image).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use cargo_metadata::Package;

use super::project::Project;
use super::{BIN_DIR, ImageBinary, ImageOptions};
use crate::atomic;
use crate::compile::{self, BuildOptions};
use crate::digest::Sha256Digest;
use crate::elf::stream_strip;
use crate::elf::strip::{self, StripMode};
use crate::elf::{self, ElfInfo, Linkage, headers};
use crate::error;
use crate::oci::document;
use crate::progress;
use crate::tarball;
use crate::target::{Arch, TargetTriple};

/// The binaries per architecture, the entrypoint first.
pub(super) type Binaries = BTreeMap<Arch, Vec<ImageBinary>>;

pub(super) fn collect_binaries(options: &ImageOptions, project: &Project) -> Result<Binaries> {
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
    for (binary, machine) in found {
        let arch = machine.arch.ok_or_else(|| {
            error::input(format!(
                "{} is a {} binary; airlock builds images for {}",
                binary.source.display(),
                machine.name,
                Arch::list()
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

/// The machine a binary's ELF header names, and airlock's architecture for it.
pub(super) struct Machine {
    name: String,
    arch: Option<Arch>,
}

impl Machine {
    fn of(info: &ElfInfo) -> Self {
        Machine {
            name: info.machine.clone(),
            arch: info.arch,
        }
    }
}

/// Each `--binary` file judged from its headers, read with seeks (a few KiB of a binary that
/// may be hundreds of MB), which the layer checks the copy it streams against unless
/// stripping changes the binary.
pub(super) fn prebuilt_binaries(files: &[PathBuf]) -> Result<Vec<(ImageBinary, Machine)>> {
    files
        .iter()
        .map(|file| {
            if !file.exists() {
                return Err(error::input(format!(
                    "{} does not exist; --binary names a built executable",
                    file.display()
                )));
            }
            // A FIFO, device or directory is refused by the open itself, before it can block.
            let (headers, judged) = headers::read_file(file)?;
            let size = judged.size;
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .ok_or_else(|| error::input(format!("{} has no file name", file.display())))?;
            let mut binary = image_binary(name, file, size, headers.linkage, None);
            binary.build_id = headers.build_id;
            binary.pinned = Some(pinned(judged));
            let machine = Machine {
                name: headers.machine,
                arch: headers.arch,
            };
            Ok((binary, machine))
        })
        .collect()
}

/// A debug file to write once the binaries are accepted.
pub(super) enum DebugContents {
    /// Made in memory (the fallback path).
    Bytes(Vec<u8>),
    /// Already written beside its place, by the streamed split.
    Staged(atomic::StagedFile),
}

/// Debug files to write once the binaries are accepted: (path, contents).
pub(super) type DebugFiles = Vec<(PathBuf, DebugContents)>;

/// Strips every binary in `mode` (the bytes that go into the layer), streamed from disk where
/// the plan is proven (else in memory), and returns each debug file with its path in
/// `debug_dir`, named `<bin>-<version>-<target>.debug` for built binaries (the name `dist`
/// releases it under), `debug_names`' name or `<file name>-<arch>.debug` for `--binary` files.
pub(super) fn strip_binaries(
    binaries: &mut Binaries,
    options: &ImageOptions,
    project: &Project,
) -> Result<DebugFiles> {
    let version = project.package.as_ref().map(|p| p.version.to_string());
    let mut debug_files = DebugFiles::new();
    for (arch, list) in binaries.iter_mut() {
        for binary in list.iter_mut() {
            let debug_name = match (&binary.target, &version) {
                (Some(target), Some(version)) => {
                    strip::debug_file_name(&binary.name, version, target)
                }
                _ => options
                    .debug_names
                    .get(&binary.source)
                    .cloned()
                    .unwrap_or_else(|| format!("{}-{arch}.debug", binary.name)),
            };
            debug_files.extend(strip_binary(binary, options, project, &debug_name)?);
        }
    }
    Ok(debug_files)
}

/// Writes the debug files [`strip_binaries`] made.
pub(super) fn write_debug_files(debug_files: DebugFiles) -> Result<()> {
    for (path, contents) in debug_files {
        match contents {
            DebugContents::Bytes(bytes) => atomic::write_file(&path, &bytes)?,
            DebugContents::Staged(staged) => staged.commit(atomic::FILE_MODE)?,
        }
    }
    Ok(())
}

fn strip_binary(
    binary: &mut ImageBinary,
    options: &ImageOptions,
    project: &Project,
    debug_name: &str,
) -> Result<Option<(PathBuf, DebugContents)>> {
    if debug_name.contains('/')
        || debug_name.contains('\0')
        || matches!(debug_name, "" | "." | "..")
    {
        return Err(error::input(format!(
            "`{debug_name}` is not a file name; the debug file of {} needs one",
            binary.source.display()
        )));
    }
    if options.strip == StripMode::None {
        // Shipped as built: judged from its headers (a `--binary` file was already, by
        // `prebuilt_binaries`), never held, and streamed into the layer, checked against the
        // header bytes judged.
        if binary.pinned.is_none() {
            let source = binary.source.clone();
            ship_from_disk(binary, &source, StripMode::None, None)?;
        }
        binary.strip = StripMode::None;
        binary.shipped = None;
        return Ok(None);
    }
    let dir = match (&options.debug_dir, &project.workspace) {
        (Some(dir), _) => dir.clone(),
        (None, Some(ws)) => ws.airlock_dir().join("debug"),
        (None, None) => binary
            .source
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    };
    let path = dir.join(debug_name);
    match streamed_split(binary, options.strip, &path, debug_name)? {
        Streamed::Done(debug) => return Ok(debug),
        Streamed::Fallback(why) => progress::detail(format!(
            "{}: stripped in memory, not streamed: {why}",
            binary.source.display()
        )),
    }
    let built = elf::read_binary(&binary.source)?;
    let built_size = built.len() as u64;
    let split = strip::split_debug(built, options.strip, debug_name).map_err(|e| {
        error::input(format!(
            "{}: cannot strip it in process ({e:#}); pass --strip none to ship it as built",
            binary.source.display()
        ))
    })?;
    // What ships is what is judged: the linkage of the bytes read here, not of an earlier read.
    binary.linkage = elf::parse_elf(&binary.source, &split.shipped)?.linkage;
    binary.built_size = built_size;
    binary.size = split.shipped.len() as u64;
    binary.strip = options.strip;
    binary.build_id = split.build_id;
    let Some(debug) = split.debug else {
        // Nothing removed: the layer streams the file from disk, checked against the digest
        // of the bytes judged here, rather than holding a copy of a binary that may be
        // hundreds of MB for as long as the compression takes.
        binary.checked = Some(Sha256Digest::of(&split.shipped));
        binary.pinned = None;
        binary.shipped = None;
        return Ok(None);
    };
    binary.shipped = Some(Arc::new(split.shipped));
    binary.checked = None;
    binary.pinned = None;
    binary.debug_file = Some(path.clone());
    Ok(Some((path, DebugContents::Bytes(debug))))
}

/// Judges `binary` by `file`, the file the layer will stream: its headers, read with seeks
/// (`headers::read_file`), which the layer checks the bytes it streams against, so what ships
/// is what was judged and a file changed since is refused. `built_size` is the size before
/// stripping, when `file` is not the file as built.
fn ship_from_disk(
    binary: &mut ImageBinary,
    file: &Path,
    strip: StripMode,
    built_size: Option<u64>,
) -> Result<()> {
    let (headers, judged) = headers::read_file(file)?;
    let size = judged.size;
    binary.linkage = headers.linkage;
    binary.built_size = built_size.unwrap_or(size);
    binary.size = size;
    binary.strip = strip;
    binary.build_id = headers.build_id;
    binary.pinned = Some(pinned(judged));
    binary.checked = None;
    binary.shipped = None;
    Ok(())
}

/// What the layer checks a binary judged from its headers against.
fn pinned(judged: headers::HeaderBytes) -> Arc<tarball::Pinned> {
    Arc::new(tarball::Pinned {
        size: judged.size,
        ranges: judged.ranges,
    })
}

/// What [`streamed_split`] did.
enum Streamed {
    /// The binary is judged and ready for the layer, with its debug file if any.
    Done(Option<(PathBuf, DebugContents)>),
    /// Why it must be stripped in memory.
    Fallback(String),
}

/// Strips `binary` in `mode` from disk in bounded memory (a binary may be hundreds of MB):
/// the debug file staged beside `debug_path`, the stripped binary staged beside it too, then
/// judged from its headers, which the layer checks the bytes it streams against.
fn streamed_split(
    binary: &mut ImageBinary,
    mode: StripMode,
    debug_path: &Path,
    debug_name: &str,
) -> Result<Streamed> {
    let input = crate::input::open_regular(&binary.source, crate::input::Links::Follow)?;
    let built_size = input.size;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, input.file);
    let cannot = |e: anyhow::Error| {
        error::input(format!(
            "{}: cannot strip it in process ({e:#}); pass --strip none to ship it as built",
            binary.source.display()
        ))
    };
    let planned = stream_strip::plan(&mut reader, mode).map_err(cannot)?;
    let plan = match planned {
        stream_strip::Planned::Fallback(why) => return Ok(Streamed::Fallback(why)),
        stream_strip::Planned::Unchanged => {
            // Nothing removed: shipped as built, streamed from disk like `--strip none`.
            let source = binary.source.clone();
            ship_from_disk(binary, &source, mode, None)?;
            return Ok(Streamed::Done(None));
        }
        stream_strip::Planned::Stream(plan) => plan,
    };
    let debug = atomic::StagedFile::new(debug_path)?;
    let mut shipped_name = debug_path.as_os_str().to_owned();
    shipped_name.push(".shipped");
    let shipped = atomic::StagedFile::new(Path::new(&shipped_name))?;
    let written = (|| -> Result<()> {
        let mut out = std::io::BufWriter::with_capacity(1 << 16, debug.file());
        let crc = plan.write_debug(&mut reader, &mut out)?;
        out.flush()?;
        let link = strip::gnu_debuglink(debug_name, crc, object::Endianness::Little);
        let mut out = std::io::BufWriter::with_capacity(1 << 16, shipped.file());
        plan.write_shipped(&mut reader, &link, &mut out)?;
        out.flush()?;
        Ok(())
    })();
    written.map_err(cannot)?;
    // What ships is what is judged: the staged file's headers, which the layer checks.
    ship_from_disk(binary, shipped.path(), mode, Some(built_size))?;
    binary.staged = Some(Arc::new(shipped));
    binary.debug_file = Some(debug_path.to_path_buf());
    Ok(Streamed::Done(Some((
        debug_path.to_path_buf(),
        DebugContents::Staged(debug),
    ))))
}

pub(super) fn built_binaries(
    options: &ImageOptions,
    project: &Project,
) -> Result<Vec<(ImageBinary, Machine)>> {
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
                "airlock builds images for {}, not for `{target}`",
                Arch::list()
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
        allow_dynamic: options.allow_dynamic,
        ..options.build.clone()
    };
    let report = compile::build(&build_options).with_context(|| {
        format!(
            "cannot build the binaries of {} for the image",
            package.name
        )
    })?;
    let mut found = Vec::new();
    for target in &targets {
        for bin in &bins {
            let built = report.binary(bin, target).ok_or_else(|| {
                error::input(format!(
                    "the build produced no binary `{bin}` for {target}; check --bin"
                ))
            })?;
            found.push((
                image_binary(
                    bin.clone(),
                    &built.path,
                    built.elf.size,
                    built.elf.linkage,
                    Some(target.clone()),
                ),
                Machine::of(&built.elf),
            ));
        }
    }
    Ok(found)
}

/// The package's only binary; several need `--bin` or `bins` in the settings.
pub(super) fn default_bins(package: &Package) -> Result<Vec<String>> {
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

pub(super) fn image_binary(
    name: String,
    source: &Path,
    size: u64,
    linkage: Linkage,
    target: Option<TargetTriple>,
) -> ImageBinary {
    ImageBinary {
        path: format!("{BIN_DIR}/{name}"),
        name,
        source: source.to_path_buf(),
        size,
        built_size: size,
        strip: StripMode::None,
        debug_file: None,
        build_id: None,
        linkage,
        target,
        shipped: None,
        staged: None,
        checked: None,
        pinned: None,
    }
}

/// A dynamic binary cannot run on an empty file system: refuse it (exit 1) unless allowed.
pub(super) fn check_static(binaries: &Binaries, allow_dynamic: bool) -> Result<()> {
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
