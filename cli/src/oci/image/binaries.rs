//! The binaries an image holds: built by `airlock::compile` or given with `--binary`, grouped
//! by architecture, and proven static.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cargo_metadata::Package;

use super::project::Project;
use super::{BIN_DIR, ImageBinary, ImageOptions};
use crate::compile::{self, BuildOptions};
use crate::elf::{self, ElfInfo};
use crate::error;
use crate::oci::document;
use crate::progress;
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
    for (binary, info) in found {
        let arch = info.arch.ok_or_else(|| {
            error::input(format!(
                "{} is a {} binary; airlock builds images for {}",
                binary.source.display(),
                info.machine,
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

pub(super) fn prebuilt_binaries(files: &[PathBuf]) -> Result<Vec<(ImageBinary, ElfInfo)>> {
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

pub(super) fn built_binaries(
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
                image_binary(bin.clone(), &built.path, &built.elf, Some(target.clone())),
                built.elf.clone(),
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
