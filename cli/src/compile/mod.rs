//! `cargo airlock build` and `doctor`: fully static musl binaries for each target, with C
//! compilers and linkers set up per target, reproducible settings, and every binary proven
//! static from its ELF afterwards.
//!
//! `build` runs cargo and never touches the user's `RUSTFLAGS`: static linking is forced per
//! target through `CARGO_TARGET_<TRIPLE>_RUSTFLAGS`. The steps, one file each: [`plan`]
//! (which binaries, which dependencies), [`toolchain`] (what the machine has), `env` (what
//! cargo runs with), `cargo` (the build: one run for the targets with rustup's prebuilt
//! standard library, one with `-Zbuild-std` for those whose std is built from source),
//! [`embed`] (each binary's dependency list, in a `.dep-v0` section), `collect` (copy, embed,
//! inspect, judge).

mod cargo;
pub mod cargo_config;
mod collect;
pub mod doctor;
pub mod embed;
mod env;
pub mod plan;
pub mod toolchain;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::elf::ElfInfo;
use crate::error::{self, ExitKind};
use crate::progress;
use crate::render::{self, Align, CommandReport};
use crate::target::TargetTriple;
use crate::workspace::{self, Workspace};

pub use collect::output_path;
pub use doctor::{DoctorOptions, DoctorReport, doctor};
pub use env::{CARGO_HOME_PREFIX, TARGET_DIR_PREFIX, WORKSPACE_PREFIX, static_flags};

/// Options of `cargo airlock build` (and of the build step of `image` and `dist`).
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The workspace's `Cargo.toml` (default: the current directory's workspace).
    pub manifest_path: Option<PathBuf>,
    /// Packages to build (`-p`); empty: every member with a binary.
    pub packages: Vec<String>,
    /// Binaries to build (`--bin`); empty: all of the chosen packages'.
    pub bins: Vec<String>,
    /// Targets; empty: the host's musl triple.
    pub targets: Vec<TargetTriple>,
    /// Cargo profile (default `release`).
    pub profile: Option<String>,
    /// `--features`.
    pub features: Vec<String>,
    /// `--all-features`.
    pub all_features: bool,
    /// `--no-default-features`.
    pub no_default_features: bool,
    /// `--locked`.
    pub locked: bool,
    /// `--frozen`.
    pub frozen: bool,
    /// `--offline`.
    pub offline: bool,
    /// Report dynamically linked binaries without failing (e.g. a glibc build to compare
    /// sizes with). Static flags are still set for musl targets; other targets (`*-gnu`)
    /// keep their default, dynamic, linkage either way.
    pub allow_dynamic: bool,
    /// Do not embed each binary's dependency list (`.dep-v0`, cargo-auditable's format).
    pub no_embed_deps: bool,
}

/// One binary built for one target.
#[derive(Debug, Clone, Serialize)]
pub struct BuiltBinary {
    /// The binary target's name.
    pub name: String,
    /// Its package.
    pub package: String,
    /// The package version.
    pub version: String,
    /// The target it was built for.
    pub target: TargetTriple,
    /// `target/airlock/<triple>/<bin>`.
    pub path: PathBuf,
    /// Its ELF analysis.
    pub elf: ElfInfo,
}

/// The result of `build`.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// Every binary, sorted by target then name.
    pub binaries: Vec<BuiltBinary>,
    /// The `SOURCE_DATE_EPOCH` the build used.
    pub source_date_epoch: u64,
    /// Every failed check (a dynamic binary, with its cause and fix).
    pub problems: Vec<String>,
    /// The cargo profile.
    pub profile: String,
    /// Whether dynamic binaries were allowed.
    pub allow_dynamic: bool,
}

impl BuildReport {
    /// The binary `name` built for `target`.
    pub fn binary(&self, name: &str, target: &TargetTriple) -> Option<&BuiltBinary> {
        self.binaries
            .iter()
            .find(|b| b.name == name && &b.target == target)
    }

    /// Fails with a check error (exit 1) listing the problems, for callers that go on to
    /// package the binaries (`image`, `dist`).
    pub fn ensure_static(&self) -> Result<()> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(error::check_failed(self.problems.join("\n")))
        }
    }
}

/// `cargo airlock build`: plans, checks the machine, runs cargo once for every target,
/// copies each binary to `target/airlock/<triple>/<bin>` and inspects it.
///
/// Returns the report even when a binary is not static (its `problems` say why, and
/// [`BuildReport::ensure_static`] turns them into an error). Missing toolchain pieces are an
/// environment error (exit 3) naming the install commands, before cargo runs.
pub fn build(options: &BuildOptions) -> Result<BuildReport> {
    let targets = if options.targets.is_empty() {
        vec![TargetTriple::host_musl()]
    } else {
        options.targets.clone()
    };
    // `git log` for the source date while cargo resolves, in the directory most likely to be
    // the workspace root (the manifest's, else the current one); asked again in the root
    // when the guess was wrong (a member's directory may be another git repository).
    let guess = options
        .manifest_path
        .as_deref()
        .and_then(Path::parent)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .or_else(|| std::env::current_dir().ok());
    // rustc's answers (kept between runs) come before the resolve: with them the build's
    // target flags are known well enough to give the resolve too ([`likely_target_flags`]).
    let answers_dir = toolchain::RustToolchain::answers_dir();
    let config = cargo_config::CargoConfig::load(&std::env::current_dir()?);
    let (loaded, guessed_date, early_rust, resolved_with) = std::thread::scope(|scope| {
        let date = guess
            .as_deref()
            .map(|dir| scope.spawn(move || (dir, workspace::source_date_epoch(dir))));
        let early_rust = answers_dir.as_deref().map(|answers| {
            let dir = guess.as_deref().unwrap_or(Path::new("."));
            toolchain::RustToolchain::probe_cached(dir, answers)
        });
        let resolved_with = match (&early_rust, &config) {
            (Some(Ok((rust, _))), Ok(config)) => {
                likely_target_flags(rust, config, &targets, options.manifest_path.as_deref())
            }
            _ => env::CargoEnv::default(),
        };
        let loaded = load_workspace(options, &targets, guess.as_deref(), &resolved_with);
        let date = date.map(|date| {
            date.join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        });
        (loaded, date, early_rust, resolved_with)
    });
    let (workspace, mut first_graph, created_target_dir) = loaded?;
    let manifest_path = workspace.root().join("Cargo.toml");
    let plan = plan::select(&workspace, &options.packages, &options.bins)?;

    let rust = early_rust.unwrap_or_else(|| {
        toolchain::RustToolchain::probe_cached(workspace.root(), &workspace.airlock_dir())
    });
    let source_date_epoch = match guessed_date {
        Some((dir, date)) if same_dir(dir, workspace.root()) => date,
        _ => workspace.source_date_epoch(),
    };
    let (rust, kept_answers) = rust?;
    for target in &targets {
        rust.check_known(target)?;
    }
    let mut graphs = HashMap::new();
    let mut c_code = HashMap::new();
    for target in &targets {
        let graph = match first_graph.take() {
            Some(graph) => graph,
            None => {
                plan::DependencyGraph::load(Some(&manifest_path), target, options, &resolved_with)?
            }
        };
        let c_crates = graph.c_build_crates(&plan.package_ids());
        if !c_crates.is_empty() {
            progress::detail(format!("{target}: C code through {}", c_crates.join(", ")));
        }
        c_code.insert(target.clone(), !c_crates.is_empty());
        graphs.insert(target.clone(), graph);
    }
    let zig = toolchain::ZigLookup::new();
    let mut tools: Vec<toolchain::TargetTools> = targets
        .iter()
        .map(|t| toolchain::TargetTools::probe(t, &rust, &zig, c_code[t]))
        .collect();
    for tools in &mut tools {
        tools.settle_zig(&zig);
    }
    let missing: Vec<_> = tools
        .iter()
        .map(|t| (&t.target, t.missing_for_build(c_code[&t.target])))
        .filter(|(_, m)| !m.is_empty())
        .collect();
    if !missing.is_empty() {
        return Err(toolchain::environment_error(&missing));
    }
    for tools in tools.iter().filter(|t| c_code[&t.target]) {
        if let Ok(compiler) = &tools.c_compiler {
            progress::detail(format!(
                "C compiler for {}: {}",
                tools.target,
                compiler.describe()
            ));
        }
    }
    for target in targets.iter().filter(|t| !t.is_musl()) {
        progress::warn(format!(
            "{target} is not a musl target: airlock leaves its linkage to the target's default \
             (usually dynamic glibc)"
        ));
    }

    let from_source: Vec<TargetTriple> = tools
        .iter()
        .filter(|t| matches!(t.rust_target, Ok(toolchain::StdLib::FromSource(_))))
        .map(|t| t.target.clone())
        .collect();
    for target in &from_source {
        progress::status(
            "Note",
            format!(
                "{target}: rustup has no standard library installed for it, so cargo builds std \
                 from the toolchain's rust-src ({}, with RUSTC_BOOTSTRAP=1 on a stable \
                 toolchain) and zig links it (musl C runtime, libc, libunwind); the first build \
                 takes minutes. `rustup target add {target}` gives a prebuilt one, where \
                 rustup's mirror has it",
                cargo::BUILD_STD
            ),
        );
    }

    let source_date_epoch = source_date_epoch?;
    let config = config?;
    let airlock_dir = workspace.airlock_dir();
    let cargo_env = env::prepare(&env::EnvInputs {
        rust_src_remap: rust_src_remap(&rust),
        workspace_root: workspace.root(),
        target_dir: workspace.target_dir(),
        airlock_dir: &airlock_dir,
        source_date_epoch,
        config: &config,
        targets: tools.iter().map(|t| (t, c_code[&t.target])).collect(),
    })?;
    let flags_differ = cargo_env
        .set
        .iter()
        .filter(|(key, _)| key.ends_with("_RUSTFLAGS"))
        .any(|pair| !resolved_with.set.contains(pair))
        || cargo_env.remove != resolved_with.remove;
    if flags_differ {
        progress::detail(
            "the resolve ran with other target flags than the build's: cargo asks rustc about \
             the target again",
        );
    }
    for (key, value) in &cargo_env.set {
        progress::detail(format!("{key}={}", value.to_string_lossy()));
    }
    for tools in &tools {
        if let Some(link) = tools.link_setup(c_code[&tools.target]) {
            progress::detail(format!(
                "linker for {}: {}{}",
                tools.target,
                link.linker.describe(),
                link.cxx
                    .as_ref()
                    .map(|cxx| format!("; links needing a C++ library: {}", cxx.describe()))
                    .unwrap_or_default()
            ));
        }
    }

    if let Some(kept) = kept_answers {
        kept.write();
    }

    let names: Vec<&str> = plan.binaries.iter().map(|b| b.name.as_str()).collect();
    let prebuilt: Vec<TargetTriple> = targets
        .iter()
        .filter(|t| !from_source.contains(t))
        .cloned()
        .collect();
    created_target_dir.keep();
    let mut produced = Vec::new();
    // -Zbuild-std applies to every target of a cargo run: targets with a prebuilt std get
    // their own run, so their std is never rebuilt.
    for (group, std_from_source) in [(&prebuilt, false), (&from_source, true)] {
        if group.is_empty() {
            continue;
        }
        let target_names: Vec<&str> = group.iter().map(TargetTriple::as_str).collect();
        progress::status(
            "Building",
            format!(
                "{} for {}{}",
                names.join(", "),
                target_names.join(", "),
                if std_from_source {
                    " (std from source)"
                } else {
                    ""
                }
            ),
        );
        let cmd = cargo::command(&cargo::CargoRun {
            manifest_path: &manifest_path,
            plan: &plan,
            targets: group,
            options,
            env: &cargo_env,
            std_from_source,
        });
        produced.extend(cargo::run(cmd, workspace.target_dir())?);
    }
    let (binaries, problems) = collect::collect(
        &plan,
        &produced,
        &targets,
        &airlock_dir,
        &graphs,
        &collect::Checks {
            allow_dynamic: options.allow_dynamic,
            embed_deps: !options.no_embed_deps,
        },
    )?;
    Ok(BuildReport {
        binaries,
        source_date_epoch,
        problems,
        profile: options
            .profile
            .clone()
            .unwrap_or_else(|| "release".to_owned()),
        allow_dynamic: options.allow_dynamic,
    })
}

/// Whether two paths name the same directory (symbolic links resolved).
fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Where a standard library built from source is remapped to: `/rustc/<commit>`, as rustup's
/// prebuilt one records.
fn rust_src_remap(rust: &toolchain::RustToolchain) -> Option<(PathBuf, String)> {
    rust.rust_src().map(|src| {
        let commit = rust.commit_hash.as_deref().unwrap_or("unknown");
        (src, format!("/rustc/{commit}"))
    })
}

/// The `CARGO_TARGET_<TRIPLE>_RUSTFLAGS` the build will most likely give cargo, known before
/// cargo says where the workspace is: from its likely root ([`workspace::likely_root`]) and
/// target directory, and as if no C code were compiled. The resolve runs with them, so that
/// cargo's probe of the target (`rustc - --print=cfg …` with the target's flags, kept in
/// `.rustc_info.json` under a key that has the flags in it) is the one `cargo build` finds
/// kept. They differ from the build's only in rare setups (a root cargo finds elsewhere, a
/// `build.target-dir` outside the workspace, zig linking C++ where no `cc` links); then the
/// build asks rustc once more, as it always did. Empty (nothing set) when no root is likely.
fn likely_target_flags(
    rust: &toolchain::RustToolchain,
    config: &cargo_config::CargoConfig,
    targets: &[TargetTriple],
    manifest_path: Option<&Path>,
) -> env::CargoEnv {
    let Some(root) = workspace::likely_root(manifest_path) else {
        return env::CargoEnv::default();
    };
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR")
        .or_else(|| std::env::var_os("CARGO_BUILD_TARGET_DIR"))
    {
        Some(dir) => std::env::current_dir()
            .map(|cwd| cwd.join(dir))
            .unwrap_or_default(),
        None => root.join("target"),
    };
    let no_zig = toolchain::ZigLookup::found(None);
    let tools: Vec<toolchain::TargetTools> = targets
        .iter()
        .map(|target| toolchain::TargetTools::probe(target, rust, &no_zig, false))
        .collect();
    env::rustflags(&env::EnvInputs {
        rust_src_remap: rust_src_remap(rust),
        workspace_root: &root,
        target_dir: &target_dir,
        airlock_dir: &target_dir.join("airlock"),
        source_date_epoch: 0,
        config,
        targets: tools.iter().map(|tools| (tools, false)).collect(),
    })
}

/// The workspace and, when one `cargo metadata` can say both, the first target's dependency
/// graph: without feature flags the resolve is the same whichever member's manifest cargo
/// starts from, so the graph says where the workspace is. When that call fails, the errors
/// come in the order the separate calls give them: the manifest, the packages asked for, the
/// targets, then the resolve.
///
/// Beside the resolve, `cargo metadata --no-deps` (which asks rustc nothing) finds the target
/// directory first and creates it: cargo keeps what rustc told it (`rustc -vV`, the host's
/// `--print cfg`) in `<target dir>/.rustc_info.json`, but only when that directory exists, so
/// on a cold target directory the build would otherwise start rustc twice more (10 ms each).
/// The target's answer is kept too, and the build reuses it when the resolve ran with the
/// build's flags (`env`, [`likely_target_flags`]): they are part of its key. A warm build, whose target directory is likely there already
/// ([`target_dir_likely_exists`]), skips the call.
fn load_workspace(
    options: &BuildOptions,
    targets: &[TargetTriple],
    guess: Option<&Path>,
    env: &env::CargoEnv,
) -> Result<(Workspace, Option<plan::DependencyGraph>, CreatedDir)> {
    let manifest_path = options.manifest_path.as_deref();
    let feature_flags =
        !options.features.is_empty() || options.all_features || options.no_default_features;
    let Some(first) = targets.first().filter(|_| !feature_flags) else {
        let workspace = Workspace::load(manifest_path)?;
        let created = CreatedDir::create(workspace.target_dir());
        return Ok((workspace, None, created));
    };
    let find = || {
        Workspace::load(manifest_path).map(|workspace| {
            let created = CreatedDir::create(workspace.target_dir());
            (workspace, created)
        })
    };
    let (graph, found) = if target_dir_likely_exists(guess) {
        (
            plan::DependencyGraph::load(manifest_path, first, options, env),
            None,
        )
    } else {
        std::thread::scope(|scope| {
            let found = scope.spawn(find);
            let graph = plan::DependencyGraph::load(manifest_path, first, options, env);
            let found = found
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (graph, Some(found))
        })
    };
    match graph {
        Ok(graph) => {
            // Without `--no-deps`' answer (it failed where the resolve did not) the
            // directory is cargo's to create.
            let created = found
                .and_then(Result::ok)
                .map(|(_, created)| created)
                .unwrap_or_default();
            Ok((
                Workspace::from_metadata(graph.metadata().clone()),
                Some(graph),
                created,
            ))
        }
        Err(resolve_error) => {
            let (workspace, _created) = match found {
                Some(found) => found?,
                None => find()?,
            };
            plan::select(&workspace, &options.packages, &options.bins)?;
            let rust = toolchain::RustToolchain::probe(workspace.root())?;
            for target in targets {
                rust.check_known(target)?;
            }
            Err(resolve_error)
        }
    }
}

/// Whether the target directory is there already, as far as a few `stat`s can tell before cargo
/// says where it is: `$CARGO_TARGET_DIR`, else a `target/` with cargo's rustc answers in the
/// directory guessed to be the workspace root or one above it. A warm build then skips the
/// `--no-deps` call (it would only compete with the resolve for the cores); a wrong guess only
/// costs cargo's keeping rustc's answers, or that call.
fn target_dir_likely_exists(guess: Option<&Path>) -> bool {
    const ANSWERS: &str = ".rustc_info.json";
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Path::new(&dir).join(ANSWERS).is_file();
    }
    guess.is_some_and(|dir| {
        dir.ancestors()
            .any(|dir| dir.join("target").join(ANSWERS).is_file())
    })
}

/// The target directory [`load_workspace`] created for cargo's rustc answers, removed again
/// with them when the build stops before cargo builds: a refused build leaves no `target/`
/// behind. Only a directory whose parent exists is created; one that cannot be is cargo's to
/// create, and to report, at the build.
#[derive(Debug, Default)]
struct CreatedDir(Option<PathBuf>);

impl CreatedDir {
    fn create(dir: &Path) -> CreatedDir {
        match std::fs::create_dir(dir) {
            Ok(()) => CreatedDir(Some(dir.to_path_buf())),
            Err(_) => CreatedDir(None),
        }
    }

    /// Cargo builds: the directory is its.
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for CreatedDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_file(dir.join(".rustc_info.json"));
            // Only if nothing else is in it.
            let _ = std::fs::remove_dir(&dir);
        }
    }
}

impl CommandReport for BuildReport {
    fn human(&self) -> String {
        let cwd = std::env::current_dir().unwrap_or_default();
        let rows: Vec<Vec<String>> = self
            .binaries
            .iter()
            .map(|b| {
                let shown = b.path.strip_prefix(&cwd).unwrap_or(&b.path);
                vec![
                    b.name.clone(),
                    b.target.to_string(),
                    render::human_bytes(b.elf.size),
                    if b.elf.stripped { "yes" } else { "no" }.to_owned(),
                    b.elf.linkage.as_str().to_owned(),
                    shown.display().to_string(),
                ]
            })
            .collect();
        let mut out = render::table(
            &[
                ("binary", Align::Left),
                ("target", Align::Left),
                ("size", Align::Right),
                ("stripped", Align::Left),
                ("linkage", Align::Left),
                ("path", Align::Left),
            ],
            &rows,
        );
        out.push_str(&format!(
            "\nprofile {}, SOURCE_DATE_EPOCH {} ({})\n",
            self.profile,
            self.source_date_epoch,
            workspace::rfc3339(self.source_date_epoch)
        ));
        for problem in &self.problems {
            out.push_str(&format!("\nerror: {problem}\n"));
        }
        out
    }

    fn exit_kind(&self) -> ExitKind {
        if self.problems.is_empty() {
            ExitKind::Ok
        } else {
            ExitKind::CheckFailed
        }
    }
}
