//! The environment `cargo build` runs in: static linking forced per target through
//! `CARGO_TARGET_<TRIPLE>_RUSTFLAGS` (merged with the user's own flags), the linker and the C
//! and C++ compilers per target (musl-gcc named directly, the others through wrapper scripts
//! under `target/airlock/toolchain/`), and the reproducibility settings (`SOURCE_DATE_EPOCH`,
//! path remapping).
//!
//! Never sets `RUSTFLAGS` or touches the environment of anything but the cargo it prepares.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::cargo_config::{self, CargoConfig};
use super::toolchain::{CCompiler, CxxCompiler, LinkSetup, Linker, StdLib, TargetTools, Zig};
use crate::atomic;
use crate::progress;
use crate::target::TargetTriple;

/// Where remapped paths point in the binary (`--remap-path-prefix FROM=TO`).
pub const WORKSPACE_PREFIX: &str = "/build";
/// The remapped `CARGO_HOME` (registry sources, git checkouts).
pub const CARGO_HOME_PREFIX: &str = "/cargo";
/// The remapped target directory when it lies outside the workspace.
pub const TARGET_DIR_PREFIX: &str = "/target";

/// Variables to set and to remove for the cargo child.
#[derive(Debug, Clone, Default)]
pub struct CargoEnv {
    /// Set, in this order.
    pub set: Vec<(String, OsString)>,
    /// Removed from cargo's environment.
    pub remove: Vec<String>,
}

impl CargoEnv {
    fn set(&mut self, key: impl Into<String>, value: impl Into<OsString>) {
        self.set.push((key.into(), value.into()));
    }

    /// Applies the variables to `cmd`.
    pub fn apply(&self, cmd: &mut std::process::Command) {
        for key in &self.remove {
            cmd.env_remove(key);
        }
        for (key, value) in &self.set {
            cmd.env(key, value);
        }
    }

    /// Applies the variables to a `cargo metadata` command, as [`CargoEnv::apply`] does.
    pub fn apply_to_metadata(&self, cmd: &mut cargo_metadata::MetadataCommand) {
        for key in &self.remove {
            cmd.env_remove(key);
        }
        for (key, value) in &self.set {
            cmd.env(key, value);
        }
    }
}

/// What the environment is built from.
pub struct EnvInputs<'a> {
    /// `rust-src` of the toolchain, remapped for standard libraries built from source.
    pub rust_src_remap: Option<(PathBuf, String)>,
    /// The workspace root (remapped to [`WORKSPACE_PREFIX`]).
    pub workspace_root: &'a Path,
    /// The target directory.
    pub target_dir: &'a Path,
    /// `target/airlock`, where the wrapper scripts go.
    pub airlock_dir: &'a Path,
    /// The source date.
    pub source_date_epoch: u64,
    /// The user's cargo configuration.
    pub config: &'a CargoConfig,
    /// Per target: what was found, and whether its build compiles C code.
    pub targets: Vec<(&'a TargetTools, bool)>,
}

/// Builds cargo's environment and writes the compiler wrapper scripts it names.
pub fn prepare(inputs: &EnvInputs<'_>) -> Result<CargoEnv> {
    let mut env = CargoEnv::default();
    env.set("SOURCE_DATE_EPOCH", inputs.source_date_epoch.to_string());
    let (flags, unmapped) = target_flags(inputs);
    for path in unmapped {
        // CARGO_TARGET_<T>_RUSTFLAGS is split on whitespace: such a path cannot be passed,
        // and may then appear in the binary.
        progress::warn(format!(
            "{path} contains whitespace and cannot be remapped through \
             CARGO_TARGET_<TRIPLE>_RUSTFLAGS; builds there may not be reproducible across \
             directories"
        ));
    }
    if let Some(source) = flags.remove.first() {
        // Cargo reads RUSTFLAGS before any target-specific flags and would ignore ours; with
        // `--target` both apply to exactly the same crates, so the user's flags move over.
        progress::detail(format!(
            "{source} moved into CARGO_TARGET_<TRIPLE>_RUSTFLAGS (cargo would otherwise ignore \
             airlock's per-target flags)"
        ));
    }
    env.remove = flags.remove;
    env.set.extend(flags.set);
    for (tools, compiles_c) in &inputs.targets {
        if tools.target.is_musl() {
            if let Some(link) = &tools.link_setup(*compiles_c) {
                set_linker(&mut env, tools, link, inputs)?;
            }
            if *compiles_c {
                set_c_toolchain(&mut env, tools, inputs)?;
            }
        }
    }
    Ok(env)
}

/// Only the `CARGO_TARGET_<TRIPLE>_RUSTFLAGS` part of [`prepare`], and the user's `RUSTFLAGS`
/// removed, with nothing written and nothing reported: what `cargo metadata --filter-platform`
/// gets so that its probe of the target (`rustc --print cfg` with these flags) is the one
/// `cargo build` finds kept in `.rustc_info.json`, whose key has the flags in it.
pub fn rustflags(inputs: &EnvInputs<'_>) -> CargoEnv {
    target_flags(inputs).0
}

/// [`rustflags`], and the paths that could not be remapped (see [`remap_flags`]).
fn target_flags(inputs: &EnvInputs<'_>) -> (CargoEnv, Vec<String>) {
    let mut env = CargoEnv::default();
    let (remaps, unmapped) = remap_flags(inputs);
    let inherited = inherited_rustflags();
    env.remove.extend(inherited.folded_from.clone());
    for (tools, compiles_c) in &inputs.targets {
        let target = &tools.target;
        let link = tools.link_setup(*compiles_c);
        let from_source = matches!(tools.rust_target, Ok(StdLib::FromSource(_)));
        // A linker of your own gets the toolchain's musl objects as before, unless there are
        // none (a standard library built from source).
        let self_contained = if user_linker(tools, inputs.config) {
            !from_source
        } else {
            link.as_ref().is_none_or(|l| l.self_contained)
        };
        let key = format!("CARGO_TARGET_{}_RUSTFLAGS", target.env_key());
        let mut flags = user_rustflags(&key, target, inputs.config, &inherited);
        flags.extend(static_flags(target, self_contained));
        if target.is_musl() {
            flags.push(build_id_flag(tools, link.as_ref(), inputs.config));
        }
        flags.extend(remaps.iter().cloned());
        if from_source && let Some((src, to)) = &inputs.rust_src_remap {
            // std built here would record the local rust-src path; rustup's prebuilt std
            // records `/rustc/<commit>`, so the binary says the same either way.
            flags.push(format!("--remap-path-prefix={}={to}", src.display()));
        }
        env.set(key, flags.join(" "));
    }
    (env, unmapped)
}

/// The flags that make a musl binary fully static: the C runtime linked in (`+crt-static`)
/// from the toolchain's own musl objects (`link-self-contained=yes`), so no system musl is
/// needed; or, when zig links (`self_contained` false), from zig's, so rustc must not add the
/// toolchain's too (`_start` would be defined twice). Other targets keep their default
/// linkage, which the ELF check then judges.
pub fn static_flags(target: &TargetTriple, self_contained: bool) -> Vec<String> {
    if target.is_musl() {
        vec![
            "-Ctarget-feature=+crt-static".to_owned(),
            format!(
                "-Clink-self-contained={}",
                if self_contained { "yes" } else { "no" }
            ),
        ]
    } else {
        Vec::new()
    }
}

/// `RUSTFLAGS` or `CARGO_ENCODED_RUSTFLAGS` as the user set them.
#[derive(Debug, Clone, Default)]
struct InheritedFlags {
    flags: Vec<String>,
    folded_from: Option<String>,
}

fn inherited_rustflags() -> InheritedFlags {
    // Cargo's order: CARGO_ENCODED_RUSTFLAGS, then RUSTFLAGS, then target flags, then
    // build.rustflags; the first one present wins.
    if let Some(encoded) = std::env::var_os("CARGO_ENCODED_RUSTFLAGS") {
        let encoded = encoded.to_string_lossy().into_owned();
        return InheritedFlags {
            flags: encoded
                .split('\x1f')
                .filter(|f| !f.is_empty())
                .map(str::to_owned)
                .collect(),
            folded_from: Some("CARGO_ENCODED_RUSTFLAGS".to_owned()),
        };
    }
    if let Some(flags) = std::env::var_os("RUSTFLAGS") {
        return InheritedFlags {
            flags: flags
                .to_string_lossy()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            folded_from: Some("RUSTFLAGS".to_owned()),
        };
    }
    InheritedFlags::default()
}

/// The linker flag that writes a GNU build-id (`.note.gnu.build-id`), which links a stripped
/// binary to its debug file for gdb and lldb. `sha1` hashes the output, so it is as
/// reproducible as the binary; rust-lld writes none unless asked, and musl-gcc and zig cc pass
/// the flag through. An `ld`-like linker takes it directly; a compiler driver needs `-Wl,`.
pub fn build_id_flag(
    tools: &TargetTools,
    link: Option<&LinkSetup>,
    config: &CargoConfig,
) -> String {
    let key = format!("CARGO_TARGET_{}_LINKER", tools.target.env_key());
    let chosen = std::env::var_os(&key)
        .map(PathBuf::from)
        .or_else(|| config.target_linker(&tools.target).map(PathBuf::from));
    // The linker that really links: airlock's link setup turns rust-lld into zig when the
    // build compiles C++ with zig, and zig is a compiler driver.
    let direct = match (&chosen, link.map(|l| &l.linker)) {
        (Some(linker), _) => is_direct_linker(linker),
        (None, Some(Linker::RustLld(_))) => true,
        (None, _) => false,
    };
    if direct {
        "-Clink-arg=--build-id=sha1".to_owned()
    } else {
        "-Clink-arg=-Wl,--build-id=sha1".to_owned()
    }
}

/// Whether rustc drives `linker` as `ld` itself rather than as a C compiler: rustc infers the
/// flavour from the file name the same way (`ld`, `ld.lld`, `rust-lld`, `ld.bfd`, `ld.gold`).
fn is_direct_linker(linker: &Path) -> bool {
    let stem = linker
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    stem == "ld" || stem.starts_with("ld.") || stem.ends_with("-ld") || stem.contains("lld")
}

/// The user's flags for `target`, before airlock's: their `CARGO_TARGET_<T>_RUSTFLAGS`, or
/// the `RUSTFLAGS` cargo would have used, or `build.rustflags` when nothing target-specific
/// would have replaced it. Config files' `target.<triple>.rustflags` need no copying: cargo
/// merges them with the variable itself.
fn user_rustflags(
    key: &str,
    target: &TargetTriple,
    config: &CargoConfig,
    inherited: &InheritedFlags,
) -> Vec<String> {
    let from_env: Vec<String> = std::env::var(key)
        .map(|v| v.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    if inherited.folded_from.is_some() {
        return inherited.flags.clone();
    }
    let target_specific = std::env::var_os(key).is_some() || config.has_target_rustflags(target);
    if target_specific {
        return from_env;
    }
    config.build_rustflags().unwrap_or_default()
}

/// `--remap-path-prefix` for the workspace, `CARGO_HOME` and an outside target directory,
/// most specific last (rustc applies the last mapping that matches); and the paths left out because
/// they contain whitespace.
fn remap_flags(inputs: &EnvInputs<'_>) -> (Vec<String>, Vec<String>) {
    let mut maps: Vec<(PathBuf, &str)> =
        vec![(inputs.workspace_root.to_path_buf(), WORKSPACE_PREFIX)];
    if let Some(home) = cargo_config::cargo_home() {
        maps.push((home, CARGO_HOME_PREFIX));
    }
    if !inputs.target_dir.starts_with(inputs.workspace_root) {
        maps.push((inputs.target_dir.to_path_buf(), TARGET_DIR_PREFIX));
    }
    let mut expanded = Vec::new();
    for (path, to) in maps {
        if let Ok(canonical) = path.canonicalize()
            && canonical != path
        {
            expanded.push((canonical, to));
        }
        expanded.push((path, to));
    }
    expanded.sort_by_key(|(path, _)| path.as_os_str().len());
    let (mut flags, mut unmapped) = (Vec::new(), Vec::new());
    for (path, to) in expanded {
        let from = path.to_string_lossy();
        if from.contains(char::is_whitespace) {
            unmapped.push(from.into_owned());
        } else {
            flags.push(format!("--remap-path-prefix={from}={to}"));
        }
    }
    (flags, unmapped)
}

/// `CARGO_TARGET_<T>_LINKER`, unless the user chose a linker (variable or config file).
fn set_linker(
    env: &mut CargoEnv,
    tools: &TargetTools,
    link: &LinkSetup,
    inputs: &EnvInputs<'_>,
) -> Result<()> {
    let key = format!("CARGO_TARGET_{}_LINKER", tools.target.env_key());
    if user_linker(tools, inputs.config) {
        progress::detail(format!("keeping your linker for {}", tools.target));
        return Ok(());
    }
    if link.needs_wrapper() {
        let dir = toolchain_dir(inputs, &tools.target);
        if link.cxx == Some(CxxCompiler::ZigAtFirstUse) {
            write_zig_launcher(&dir, &tools.target)?;
        }
        let path = dir.join("linker");
        write_script(&path, &link_wrapper(&tools.target, link))?;
        env.set(key, path.as_os_str());
        return Ok(());
    }
    match &link.linker {
        Linker::RustLld(path) => env.set(key, path.as_os_str()),
        // Rust's default for musl targets: `cc` with the self-contained objects.
        Linker::SystemCc(_) | Linker::Zig(_) => {}
    }
    Ok(())
}

/// Whether you chose the target's linker (`CARGO_TARGET_<T>_LINKER` or `target.<triple>.linker`).
fn user_linker(tools: &TargetTools, config: &CargoConfig) -> bool {
    let key = format!("CARGO_TARGET_{}_LINKER", tools.target.env_key());
    std::env::var_os(key).is_some() || config.target_linker(&tools.target).is_some()
}

fn toolchain_dir(inputs: &EnvInputs<'_>, target: &TargetTriple) -> PathBuf {
    inputs.airlock_dir.join("toolchain").join(target.as_str())
}

/// `CC_<triple>`, `CXX_<triple>`, `CXXSTDLIB_<triple>` and `AR_<triple>` for the `cc` crate,
/// unless the user set their own.
fn set_c_toolchain(env: &mut CargoEnv, tools: &TargetTools, inputs: &EnvInputs<'_>) -> Result<()> {
    let target = &tools.target;
    let underscored = target.as_str().replace('-', "_");
    let user_set = |tool: &str| {
        [
            format!("{tool}_{}", target.as_str()),
            format!("{tool}_{underscored}"),
        ]
        .iter()
        .any(|k| std::env::var_os(k).is_some())
    };
    let dir = toolchain_dir(inputs, target);
    let prefix_maps = file_prefix_maps(inputs);
    if !user_set("CC")
        && let Ok(compiler) = &tools.c_compiler
    {
        if let Some(command) = cc_command(compiler, &prefix_maps) {
            env.set(format!("CC_{underscored}"), command);
        } else {
            let script = cc_wrapper(target, compiler, &prefix_maps);
            let path = dir.join("cc");
            write_script(&path, &script)?;
            env.set(format!("CC_{underscored}"), path.as_os_str());
        }
    }
    if !user_set("CXX")
        && let Ok(compiler) = &tools.cxx_compiler
    {
        if compiler == &CxxCompiler::ZigAtFirstUse {
            write_zig_launcher(&dir, target)?;
        }
        let path = dir.join("c++");
        write_script(&path, &cxx_wrapper(target, compiler, &prefix_maps))?;
        env.set(format!("CXX_{underscored}"), path.as_os_str());
        if !user_set("CXXSTDLIB") {
            // cc-rs links libstdc++ by default; zig c++ has LLVM's libc++ instead.
            env.set(format!("CXXSTDLIB_{underscored}"), compiler.stdlib());
        }
    }
    if !user_set("AR") {
        let archiver = match (&tools.c_compiler, &tools.archiver) {
            (Ok(CCompiler::MuslGcc(_)), Some(ar)) => Some(ar.clone()),
            (Ok(CCompiler::Zig(zig)), _) => {
                let path = dir.join("ar");
                write_script(&path, &ar_wrapper(zig))?;
                Some(path)
            }
            _ => None,
        };
        if let Some(ar) = archiver {
            env.set(format!("AR_{underscored}"), ar.as_os_str());
        }
    }
    Ok(())
}

fn file_prefix_maps(inputs: &EnvInputs<'_>) -> Vec<String> {
    let mut maps = vec![format!(
        "-ffile-prefix-map={}={WORKSPACE_PREFIX}",
        inputs.workspace_root.display()
    )];
    if let Some(home) = cargo_config::cargo_home() {
        maps.push(format!(
            "-ffile-prefix-map={}={CARGO_HOME_PREFIX}",
            home.display()
        ));
    }
    if !inputs.target_dir.starts_with(inputs.workspace_root) {
        maps.push(format!(
            "-ffile-prefix-map={}={TARGET_DIR_PREFIX}",
            inputs.target_dir.display()
        ));
    }
    maps
}

/// cc-rs passes `--target=<rust triple>` to clang-like compilers, which zig rejects (it parses
/// `aarch64-unknown-linux-musl` as an unknown OS): the wrappers drop it.
const DROP_TARGET_FLAG: &str = "# cc-rs passes --target=<rust triple>, which zig rejects: drop it.\n\
     for arg do\n  shift\n  case \"$arg\" in\n    --target=*) ;;\n    \
     *) set -- \"$@\" \"$arg\" ;;\n  esac\ndone\n";

/// musl-gcc with the prefix maps as one `CC_<triple>` value, `<musl-gcc> <flag>…`, when no word
/// has whitespace: cc-rs (and cmake-rs, autotools-rs, which ask it) splits such a value into
/// the program and arguments it puts first on every command line, exactly where the wrapper
/// script put them, so each compile and each of cc-rs's compiler probes runs musl-gcc without
/// a shell in front, on the build script's critical path. zig needs the script: it drops
/// cc-rs's `--target=`.
fn cc_command(compiler: &CCompiler, prefix_maps: &[String]) -> Option<String> {
    let CCompiler::MuslGcc(path) = compiler else {
        return None;
    };
    let program = path.to_str()?;
    let mut words = vec![program];
    words.extend(prefix_maps.iter().map(String::as_str));
    if words
        .iter()
        .any(|w| w.is_empty() || w.contains(char::is_whitespace))
    {
        return None;
    }
    Some(words.join(" "))
}

/// The C compiler wrapper: musl-gcc, or zig cc for the target's architecture with the
/// `--target=` flags cc-rs adds for clang-like compilers removed.
pub fn cc_wrapper(target: &TargetTriple, compiler: &CCompiler, prefix_maps: &[String]) -> String {
    let mut script = format!(
        "#!/bin/sh\n# Written by cargo-airlock: the C compiler for {target} ({}).\n",
        match compiler {
            CCompiler::MuslGcc(_) => "musl-gcc",
            CCompiler::Zig(_) => "zig cc",
        }
    );
    let program = match compiler {
        CCompiler::MuslGcc(path) => shell_quote(&path.display().to_string()),
        CCompiler::Zig(zig) => {
            script.push_str(DROP_TARGET_FLAG);
            zig_command(&zig_program(Some(zig)), "cc", target)
        }
    };
    script.push_str(&format!(
        "exec {program} {}\"$@\"\n",
        shell_words_then_space(prefix_maps)
    ));
    script
}

/// The C++ compiler wrapper: a musl g++, or zig c++ (libc++) for the target's architecture.
pub fn cxx_wrapper(
    target: &TargetTriple,
    compiler: &CxxCompiler,
    prefix_maps: &[String],
) -> String {
    let mut script = format!(
        "#!/bin/sh\n# Written by cargo-airlock: the C++ compiler for {target} ({}).\n",
        match compiler {
            CxxCompiler::MuslGxx(_) => "musl g++, libstdc++",
            CxxCompiler::Zig(_) => "zig c++, libc++",
            CxxCompiler::ZigAtFirstUse => "zig c++, libc++, zig looked for at the first use",
        }
    );
    let program = match compiler {
        CxxCompiler::MuslGxx(path) => shell_quote(&path.display().to_string()),
        CxxCompiler::Zig(zig) => {
            script.push_str(DROP_TARGET_FLAG);
            zig_command(&zig_program(Some(zig)), "c++", target)
        }
        CxxCompiler::ZigAtFirstUse => {
            script.push_str(DROP_TARGET_FLAG);
            zig_command(&zig_program(None), "c++", target)
        }
    };
    script.push_str(&format!(
        "exec {program} {}\"$@\"\n",
        shell_words_then_space(prefix_maps)
    ));
    script
}

/// `zig cc|c++ -target <arch>-linux-musl…` as shell words, with the UBSan zig turns on for
/// unoptimised C off (its runtime is not in the Rust link).
fn zig_command(program: &str, mode: &str, target: &TargetTriple) -> String {
    format!(
        "{program} {}",
        shell_words(&[
            mode.to_owned(),
            "-target".to_owned(),
            Zig::target_for(target),
            "-fno-sanitize=undefined".to_owned(),
        ])
    )
}

/// zig as shell words: the one found (`'/usr/bin/python3' '-m' 'ziglang'`), or, for a C++
/// compiler left to its first use, the launcher next to the wrapper that looks for it then.
fn zig_program(zig: Option<&Zig>) -> String {
    match zig {
        Some(zig) => {
            let mut command = vec![zig.program.display().to_string()];
            command.extend(zig.prefix_args.iter().cloned());
            shell_words(&command)
        }
        None => format!("\"${{0%/*}}/{ZIG_LAUNCHER}\""),
    }
}

/// The launcher of a C++ compiler left to its first use ([`CxxCompiler::ZigAtFirstUse`]),
/// next to the C++ and linker wrappers that run it.
const ZIG_LAUNCHER: &str = "zig";
/// What the launcher found, kept for the rest of the build (one zig lookup per build, not one
/// per C++ file); every `prepare` removes it, so a zig installed, removed or swapped between
/// builds is noticed by the next one.
const ZIG_FOUND: &str = "zig.found";

/// Writes the zig launcher for `target` into `dir` and forgets what an earlier build found.
fn write_zig_launcher(dir: &Path, target: &TargetTriple) -> Result<()> {
    write_script(&dir.join(ZIG_LAUNCHER), &zig_launcher(target))?;
    let found = dir.join(ZIG_FOUND);
    match std::fs::remove_file(&found) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(anyhow::Error::new(e).context(format!("cannot remove {}", found.display())))
        }
        _ => Ok(()),
    }
}

/// The zig launcher: looks for zig as [`super::toolchain::Zig::find`] does (`zig`, else
/// `python3 -m ziglang`) at the first C++ compile or link of a build, keeps the answer in
/// [`ZIG_FOUND`] (written whole, then renamed: compiles run in parallel), and fails with the
/// install command when there is none.
pub fn zig_launcher(target: &TargetTriple) -> String {
    format!(
        "#!/bin/sh\n\
         # Written by cargo-airlock: zig for the C++ compiles and links of {target}, looked for\n\
         # at the first one of each build, so that builds without C++ never start it.\n\
         found=\"${{0%/*}}/{ZIG_FOUND}\"\n\
         if [ -s \"$found\" ]; then\n\
         \x20 read -r how < \"$found\"\n\
         else\n\
         \x20 if zig version >/dev/null 2>&1; then\n\
         \x20   how=zig\n\
         \x20 elif python3 -m ziglang version >/dev/null 2>&1; then\n\
         \x20   how=python3\n\
         \x20 else\n\
         \x20   echo \"cargo-airlock: zig is missing (needed for C++ code for {target}); install it \
         with \\`{install}\\`\" >&2\n\
         \x20   exit 1\n\
         \x20 fi\n\
         \x20 echo \"$how\" > \"$found.$$\" && mv -f \"$found.$$\" \"$found\"\n\
         fi\n\
         case \"$how\" in\n\
         \x20 zig) exec zig \"$@\" ;;\n\
         \x20 *) exec python3 -m ziglang \"$@\" ;;\n\
         esac\n",
        install = super::toolchain::install::ZIG,
    )
}

/// Arguments that ask the linker for a C++ standard library: what cc-rs emits for
/// `cpp(true)` (`cargo:rustc-link-lib=c++` or `stdc++`), also as verbatim archive names.
const CXX_LIBRARY_ARGS: &str = "-lc++|-lc++abi|-lstdc++|-l:libc++.a|-l:libstdc++.a";

/// The linker wrapper (`CARGO_TARGET_<T>_LINKER`): rustc calls it as a `cc`-style driver; it
/// sends links that ask for a C++ standard library to the C++ compiler, the others to the
/// target's linker. When zig links, rustc's self-contained musl objects are dropped (zig
/// brings its own C runtime, libc and libunwind; both would define `_start`), and so are
/// `-lstdc++` (zig c++ links libc++) and the linker emulation rustc names for some targets
/// (`-Wl,-melf_i386`, which zig refuses: its `-target` already says it).
///
/// rustc passes arguments in a response file (`@file`) only when the command line is over
/// the system's limit; such a link is not inspected and goes to the target's linker.
pub fn link_wrapper(target: &TargetTriple, link: &LinkSetup) -> String {
    let mut script = format!(
        "#!/bin/sh\n# Written by cargo-airlock: the linker for {target}: {}{}.\n",
        describe_driver(&link.linker),
        match &link.cxx {
            Some(cxx) => format!(
                ", or {} when the link needs a C++ standard library",
                match cxx {
                    CxxCompiler::MuslGxx(_) => "musl g++",
                    CxxCompiler::Zig(_) | CxxCompiler::ZigAtFirstUse => "zig c++",
                }
            ),
            None => String::new(),
        }
    );
    if let Some(cxx) = &link.cxx {
        script.push_str(&format!(
            "for arg do\n  case \"$arg\" in\n    {CXX_LIBRARY_ARGS})\n"
        ));
        match cxx {
            CxxCompiler::Zig(zig) => {
                script.push_str(&zig_link(&zig_program(Some(zig)), "c++", target, "      "));
            }
            CxxCompiler::ZigAtFirstUse => {
                script.push_str(&zig_link(&zig_program(None), "c++", target, "      "));
            }
            CxxCompiler::MuslGxx(path) => script.push_str(&format!(
                "      exec {} \"$@\" ;;\n",
                shell_quote(&path.display().to_string())
            )),
        }
        script.push_str("  esac\ndone\n");
    }
    match &link.linker {
        Linker::Zig(zig) => script.push_str(&zig_link(&zig_program(Some(zig)), "cc", target, "")),
        Linker::SystemCc(path) | Linker::RustLld(path) => script.push_str(&format!(
            "exec {} \"$@\"\n",
            shell_quote(&path.display().to_string())
        )),
    }
    script
}

fn describe_driver(linker: &Linker) -> &'static str {
    match linker {
        Linker::SystemCc(_) => "cc",
        Linker::RustLld(_) => "rust-lld",
        Linker::Zig(_) => "zig cc",
    }
}

/// The lines that link with `zig <mode>`: drop what zig supplies itself, then exec.
fn zig_link(program: &str, mode: &str, target: &TargetTriple, indent: &str) -> String {
    let command = format!(
        "{program} {}",
        shell_words(&[
            mode.to_owned(),
            "-target".to_owned(),
            Zig::target_for(target),
        ])
    );
    format!(
        "{indent}for arg do\n\
         {indent}  shift\n\
         {indent}  case \"$arg\" in\n\
         {indent}    */self-contained/*.o|-lstdc++|-l:libstdc++.a|-Wl,-melf_*) ;;\n\
         {indent}    *) set -- \"$@\" \"$arg\" ;;\n\
         {indent}  esac\n\
         {indent}done\n\
         {indent}exec {command} \"$@\"{}\n",
        if indent.is_empty() { "" } else { " ;;" }
    )
}

fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `words` shell-quoted, each followed by a space (nothing when there are none).
fn shell_words_then_space(words: &[String]) -> String {
    words
        .iter()
        .map(|w| format!("{} ", shell_quote(w)))
        .collect()
}

fn ar_wrapper(zig: &Zig) -> String {
    let mut command = vec![zig.program.display().to_string()];
    command.extend(zig.prefix_args.iter().cloned());
    command.push("ar".to_owned());
    format!(
        "#!/bin/sh\n# Written by cargo-airlock: zig's ar (llvm-ar), which reads every architecture.\nexec {} \"$@\"\n",
        shell_words(&command)
    )
}

/// Single-quotes `text` for POSIX sh.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Writes an executable script, leaving an identical one untouched.
fn write_script(path: &Path, script: &str) -> Result<()> {
    if std::fs::read_to_string(path).is_ok_and(|existing| existing == script) {
        return Ok(());
    }
    atomic::write_file_with(path, atomic::EXEC_MODE, |w| {
        use std::io::Write;
        Ok(w.write_all(script.as_bytes())?)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zig() -> Zig {
        Zig {
            program: PathBuf::from("/usr/bin/python3"),
            prefix_args: vec!["-m".into(), "ziglang".into()],
            version: "0.0.0".into(),
        }
    }

    #[test]
    fn build_id_goes_to_ld_directly_and_through_a_compiler_driver_with_wl() {
        for direct in [
            "rust-lld",
            "/usr/bin/ld.lld",
            "ld",
            "ld.bfd",
            "x86_64-linux-musl-ld",
        ] {
            assert!(is_direct_linker(Path::new(direct)), "{direct}");
        }
        for driver in [
            "cc",
            "musl-gcc",
            "/opt/zig-cc",
            "clang",
            "aarch64-linux-gnu-gcc",
        ] {
            assert!(!is_direct_linker(Path::new(driver)), "{driver}");
        }
    }

    #[test]
    fn zig_wrapper_drops_target_flags_and_passes_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        // A fake zig that prints its arguments, one per line.
        let fake = dir.path().join("fake zig");
        std::fs::write(&fake, "#!/bin/sh\nfor a do echo \"$a\"; done\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let compiler = CCompiler::Zig(Zig {
            program: fake,
            prefix_args: vec![],
            ..zig()
        });
        let target: TargetTriple = "aarch64-unknown-linux-musl".parse().unwrap();
        let script = cc_wrapper(
            &target,
            &compiler,
            &["-ffile-prefix-map=/it's=/build".into()],
        );
        let path = dir.path().join("cc");
        write_script(&path, &script).unwrap();
        let out = std::process::Command::new(&path)
            .args(["-O2", "--target=aarch64-unknown-linux-musl", "-c", "a b.c"])
            .output()
            .unwrap();
        let args: Vec<String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        assert_eq!(
            args,
            [
                "cc",
                "-target",
                "aarch64-linux-musl",
                "-fno-sanitize=undefined",
                "-ffile-prefix-map=/it's=/build",
                "-O2",
                "-c",
                "a b.c"
            ]
        );
    }

    #[test]
    fn static_flags_only_for_musl() {
        let musl: TargetTriple = "x86_64-unknown-linux-musl".parse().unwrap();
        let gnu: TargetTriple = "x86_64-unknown-linux-gnu".parse().unwrap();
        assert_eq!(
            static_flags(&musl, true),
            ["-Ctarget-feature=+crt-static", "-Clink-self-contained=yes"]
        );
        // zig links: its own C runtime, so none of the toolchain's.
        let armv7: TargetTriple = "armv7-unknown-linux-musleabihf".parse().unwrap();
        assert_eq!(
            static_flags(&armv7, false),
            ["-Ctarget-feature=+crt-static", "-Clink-self-contained=no"]
        );
        assert!(static_flags(&gnu, true).is_empty());
    }

    /// An executable that prints its name's tag and its arguments, one per line.
    fn fake_driver(dir: &Path, name: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(
            &path,
            format!("#!/bin/sh\necho '[{name}]'\nfor a do echo \"$a\"; done\n"),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// Runs the script `text` (written to `dir/linker`) with `args`; returns what it ran.
    fn run_script(dir: &Path, text: &str, args: &[&str]) -> Vec<String> {
        let path = dir.join("linker");
        write_script(&path, text).unwrap();
        let out = std::process::Command::new(&path)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn link_wrapper_sends_cxx_links_to_zig_cxx_without_rusts_c_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let cc = fake_driver(dir.path(), "cc");
        let zig = Zig {
            program: fake_driver(dir.path(), "zig"),
            prefix_args: vec![],
            ..zig()
        };
        let target: TargetTriple = "x86_64-unknown-linux-musl".parse().unwrap();
        let native = LinkSetup {
            linker: Linker::SystemCc(cc),
            cxx: Some(CxxCompiler::Zig(zig.clone())),
            self_contained: true,
        };
        let script = link_wrapper(&target, &native);
        let crt = "/sysroot/lib/rustlib/x86_64-unknown-linux-musl/lib/self-contained/rcrt1.o";
        // Without a C++ library, cc gets exactly what rustc passed, C runtime included.
        assert_eq!(
            run_script(dir.path(), &script, &[crt, "main.o", "-lc", "-o", "out"]),
            ["[cc]", crt, "main.o", "-lc", "-o", "out"]
        );
        // With one, zig c++ links: rustc's C runtime objects and -lstdc++ are left to zig.
        assert_eq!(
            run_script(
                dir.path(),
                &script,
                &[crt, "main.o", "-lstdc++", "-lc", "-o", "out b"]
            ),
            [
                "[zig]",
                "c++",
                "-target",
                "x86_64-linux-musl",
                "main.o",
                "-lc",
                "-o",
                "out b"
            ]
        );

        // A cross target whose C code zig compiles: zig cc for the rest, zig c++ for C++.
        let armv7: TargetTriple = "armv7-unknown-linux-musleabihf".parse().unwrap();
        let cross = LinkSetup {
            linker: Linker::Zig(zig.clone()),
            cxx: Some(CxxCompiler::Zig(zig)),
            self_contained: false,
        };
        let script = link_wrapper(&armv7, &cross);
        assert_eq!(
            run_script(
                dir.path(),
                &script,
                &["-Wl,-melf_i386", "main.o", "-lunwind", "-lc"]
            ),
            [
                "[zig]",
                "cc",
                "-target",
                "arm-linux-musleabihf",
                "main.o",
                "-lunwind",
                "-lc"
            ]
        );
        assert_eq!(
            run_script(dir.path(), &script, &["main.o", "-lc++", "-lc"]),
            [
                "[zig]",
                "c++",
                "-target",
                "arm-linux-musleabihf",
                "main.o",
                "-lc++",
                "-lc"
            ]
        );
    }

    #[test]
    fn cxx_wrapper_is_zig_cxx_for_the_target_without_cc_rs_target_flag() {
        let dir = tempfile::tempdir().unwrap();
        let zig = Zig {
            program: fake_driver(dir.path(), "zig"),
            prefix_args: vec![],
            ..zig()
        };
        let riscv: TargetTriple = "riscv64gc-unknown-linux-musl".parse().unwrap();
        let script = cxx_wrapper(
            &riscv,
            &CxxCompiler::Zig(zig),
            &["-ffile-prefix-map=/w=/build".into()],
        );
        assert_eq!(
            run_script(
                dir.path(),
                &script,
                &["--target=riscv64gc-unknown-linux-musl", "-c", "a.cpp"]
            ),
            [
                "[zig]",
                "c++",
                "-target",
                "riscv64-linux-musl",
                "-fno-sanitize=undefined",
                "-ffile-prefix-map=/w=/build",
                "-c",
                "a.cpp"
            ]
        );
        let gxx = fake_driver(dir.path(), "x86_64-linux-musl-g++");
        let x86: TargetTriple = "x86_64-unknown-linux-musl".parse().unwrap();
        let script = cxx_wrapper(&x86, &CxxCompiler::MuslGxx(gxx), &[]);
        assert_eq!(
            run_script(dir.path(), &script, &["-c", "a.cpp"]),
            ["[x86_64-linux-musl-g++]", "-c", "a.cpp"]
        );
    }

    #[test]
    fn zig_launcher_looks_once_per_build_and_names_the_install_without_zig() {
        let dir = tempfile::tempdir().unwrap();
        let target: TargetTriple = "x86_64-unknown-linux-musl".parse().unwrap();
        let launcher = dir.path().join(ZIG_LAUNCHER);
        write_script(&launcher, &zig_launcher(&target)).unwrap();
        let run = |path: &Path| {
            std::process::Command::new(&launcher)
                .args(["c++", "-c", "a.cpp"])
                .env("PATH", path)
                .output()
                .unwrap()
        };
        // Neither `zig` nor `python3`: exit 1 with the install command, nothing kept.
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        let out = run(&empty);
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "cargo-airlock: zig is missing (needed for C++ code for x86_64-unknown-linux-musl); \
             install it with `python3 -m pip install ziglang`\n"
        );
        assert!(!dir.path().join(ZIG_FOUND).exists());

        // A zig: found, kept, and run with the arguments.
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        fake_driver(&bin, "zig");
        let mut path = bin.into_os_string();
        path.push(":/usr/bin:/bin");
        let out = run(Path::new(&path));
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "[zig]\nc++\n-c\na.cpp\n"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join(ZIG_FOUND)).unwrap(),
            "zig\n"
        );
        // The next build forgets it.
        write_zig_launcher(dir.path(), &target).unwrap();
        assert!(!dir.path().join(ZIG_FOUND).exists());
    }

    #[test]
    fn musl_gcc_is_named_directly_unless_a_word_has_whitespace() {
        let maps = ["-ffile-prefix-map=/w=/build".to_owned()];
        let gcc = CCompiler::MuslGcc(PathBuf::from("/usr/bin/musl-gcc"));
        assert_eq!(
            cc_command(&gcc, &maps).as_deref(),
            Some("/usr/bin/musl-gcc -ffile-prefix-map=/w=/build")
        );
        // cc-rs would split these at the space: the wrapper script quotes them instead.
        let spaced = ["-ffile-prefix-map=/my work=/build".to_owned()];
        assert_eq!(cc_command(&gcc, &spaced), None);
        let gcc_spaced = CCompiler::MuslGcc(PathBuf::from("/opt/musl tools/musl-gcc"));
        assert_eq!(cc_command(&gcc_spaced, &maps), None);
        assert_eq!(cc_command(&CCompiler::Zig(zig()), &maps), None);
    }

    #[test]
    fn quotes_for_sh() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
