//! The environment `cargo build` runs in: static linking forced per target through
//! `CARGO_TARGET_<TRIPLE>_RUSTFLAGS` (merged with the user's own flags), the linker and C
//! compiler per target (wrapper scripts under `target/airlock/toolchain/`), and the
//! reproducibility settings (`SOURCE_DATE_EPOCH`, path remapping).
//!
//! Never sets `RUSTFLAGS` or touches the environment of anything but the cargo it prepares.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::Result;

use super::cargo_config::{self, CargoConfig};
use super::toolchain::{CCompiler, LinkSetup, Linker, StdLib, TargetTools, Zig};
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
    let remaps = remap_flags(inputs);
    let inherited = inherited_rustflags();
    if let Some(source) = &inherited.folded_from {
        // Cargo reads RUSTFLAGS before any target-specific flags and would ignore ours; with
        // `--target` both apply to exactly the same crates, so the user's flags move over.
        env.remove.push(source.clone());
        progress::detail(format!(
            "{source} moved into CARGO_TARGET_<TRIPLE>_RUSTFLAGS (cargo would otherwise ignore \
             airlock's per-target flags)"
        ));
    }
    for (tools, compiles_c) in &inputs.targets {
        let target = &tools.target;
        let link = tools.link_setup();
        let self_contained = link.as_ref().is_none_or(|l| l.self_contained);
        let key = format!("CARGO_TARGET_{}_RUSTFLAGS", target.env_key());
        let mut flags = user_rustflags(&key, target, inputs.config, &inherited);
        flags.extend(static_flags(target, self_contained));
        flags.extend(remaps.iter().cloned());
        if matches!(tools.rust_target, Ok(StdLib::FromSource(_)))
            && let Some((src, to)) = &inputs.rust_src_remap
        {
            // std built here would record the local rust-src path; rustup's prebuilt std
            // records `/rustc/<commit>`, so the binary says the same either way.
            flags.push(format!("--remap-path-prefix={}={to}", src.display()));
        }
        env.set(key, flags.join(" "));
        if target.is_musl() {
            if let Some(link) = &link {
                set_linker(&mut env, tools, link, inputs)?;
            }
            if *compiles_c {
                set_c_toolchain(&mut env, tools, inputs)?;
            }
        }
    }
    Ok(env)
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
/// most specific last (rustc applies the last mapping that matches).
fn remap_flags(inputs: &EnvInputs<'_>) -> Vec<String> {
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
    expanded
        .into_iter()
        .filter_map(|(path, to)| {
            let from = path.to_string_lossy();
            if from.contains(char::is_whitespace) {
                // CARGO_TARGET_<T>_RUSTFLAGS is split on whitespace: such a path cannot be
                // passed, and may then appear in the binary.
                progress::warn(format!(
                    "{from} contains whitespace and cannot be remapped through \
                     CARGO_TARGET_<TRIPLE>_RUSTFLAGS; builds there may not be reproducible \
                     across directories"
                ));
                return None;
            }
            Some(format!("--remap-path-prefix={from}={to}"))
        })
        .collect()
}

/// `CARGO_TARGET_<T>_LINKER`, unless the user chose a linker (variable or config file).
fn set_linker(
    env: &mut CargoEnv,
    tools: &TargetTools,
    link: &LinkSetup,
    inputs: &EnvInputs<'_>,
) -> Result<()> {
    let key = format!("CARGO_TARGET_{}_LINKER", tools.target.env_key());
    if std::env::var_os(&key).is_some() || inputs.config.target_linker(&tools.target).is_some() {
        progress::detail(format!("keeping your linker for {}", tools.target));
        return Ok(());
    }
    if link.needs_wrapper() {
        let path = toolchain_dir(inputs, &tools.target).join("linker");
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

fn toolchain_dir(inputs: &EnvInputs<'_>, target: &TargetTriple) -> PathBuf {
    inputs.airlock_dir.join("toolchain").join(target.as_str())
}

/// `CC_<triple>` and `AR_<triple>` for the `cc` crate, unless the user set their own.
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
        let script = cc_wrapper(target, compiler, &prefix_maps);
        let path = dir.join("cc");
        write_script(&path, &script)?;
        env.set(format!("CC_{underscored}"), path.as_os_str());
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
    let mut command: Vec<String> = Vec::new();
    match compiler {
        CCompiler::MuslGcc(path) => command.push(path.display().to_string()),
        CCompiler::Zig(zig) => {
            script.push_str(DROP_TARGET_FLAG);
            command = zig_command(zig, "cc", target);
        }
    }
    command.extend(prefix_maps.iter().cloned());
    script.push_str(&format!("exec {} \"$@\"\n", shell_words(&command)));
    script
}

/// `zig cc -target <arch>-linux-musl…`, with the UBSan zig turns on for unoptimised C off
/// (its runtime is not in the Rust link).
fn zig_command(zig: &Zig, mode: &str, target: &TargetTriple) -> Vec<String> {
    let mut command = vec![zig.program.display().to_string()];
    command.extend(zig.prefix_args.iter().cloned());
    command.extend([
        mode.to_owned(),
        "-target".to_owned(),
        Zig::target_for(target),
        "-fno-sanitize=undefined".to_owned(),
    ]);
    command
}

/// The linker wrapper (`CARGO_TARGET_<T>_LINKER`) for targets zig links: rustc calls it as a
/// `cc`-style driver. rustc's self-contained musl objects are dropped (zig brings its own C
/// runtime, libc and libunwind; both would define `_start`), and so is the linker emulation
/// rustc names for some targets (`-Wl,-melf_i386`, which zig refuses: its `-target` already
/// says it).
pub fn link_wrapper(target: &TargetTriple, link: &LinkSetup) -> String {
    let mut script = format!(
        "#!/bin/sh\n# Written by cargo-airlock: the linker for {target}: {}.\n",
        describe_driver(&link.linker)
    );
    match &link.linker {
        Linker::Zig(zig) => script.push_str(&zig_link(zig, "cc", target, "")),
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
fn zig_link(zig: &Zig, mode: &str, target: &TargetTriple, indent: &str) -> String {
    let mut command = vec![zig.program.display().to_string()];
    command.extend(zig.prefix_args.iter().cloned());
    command.extend([
        mode.to_owned(),
        "-target".to_owned(),
        Zig::target_for(target),
    ]);
    format!(
        "{indent}for arg do\n\
         {indent}  shift\n\
         {indent}  case \"$arg\" in\n\
         {indent}    */self-contained/*.o|-Wl,-melf_*) ;;\n\
         {indent}    *) set -- \"$@\" \"$arg\" ;;\n\
         {indent}  esac\n\
         {indent}done\n\
         {indent}exec {} \"$@\"{}\n",
        shell_words(&command),
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
    fn link_wrapper_links_with_zig_cc_without_rusts_c_runtime() {
        let dir = tempfile::tempdir().unwrap();
        let zig = Zig {
            program: fake_driver(dir.path(), "zig"),
            prefix_args: vec![],
            ..zig()
        };
        let i686: TargetTriple = "i686-unknown-linux-musl".parse().unwrap();
        let link = LinkSetup {
            linker: Linker::Zig(zig),
            self_contained: false,
        };
        let script = link_wrapper(&i686, &link);
        let crt = "/sysroot/lib/rustlib/i686-unknown-linux-musl/lib/self-contained/crt1.o";
        assert_eq!(
            run_script(
                dir.path(),
                &script,
                &[
                    "-m32",
                    "-Wl,-melf_i386",
                    crt,
                    "main.o",
                    "-lunwind",
                    "-lc",
                    "-o",
                    "out b"
                ]
            ),
            [
                "[zig]",
                "cc",
                "-target",
                "x86-linux-musl",
                "-m32",
                "main.o",
                "-lunwind",
                "-lc",
                "-o",
                "out b"
            ]
        );
    }

    #[test]
    fn quotes_for_sh() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }
}
