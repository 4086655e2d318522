//! What this machine has for each target: the Rust toolchain and where each target's standard
//! library comes from (rustup's prebuilt one, or built from the toolchain's rust-src when
//! rustup has none), the linker, the C and C++ compilers (musl-gcc or a musl g++ natively,
//! zig across architectures and as fallback), and qemu for running foreign binaries. `build`
//! and `doctor` ask the same questions here, so they always agree.
//!
//! Only probes, each at most once and only when its answer is needed (zig when a chooser
//! picks it; rustc's answers kept between builds while the toolchain is the same, see
//! [`RustToolchain::probe_cached`]); never installs anything, and writes nothing but those
//! kept answers (in [`crate::rustc`]'s files), when `build` asks ([`KeptAnswers`]).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::error;
use crate::process;
use crate::target::{Arch, TargetTriple};

/// The Rust toolchain cargo will use in a directory (rust-toolchain.toml included).
#[derive(Debug, Clone)]
pub struct RustToolchain {
    /// The `rustc` to run (`$RUSTC` or `rustc`).
    pub rustc: OsString,
    /// `rustc --print sysroot`.
    pub sysroot: PathBuf,
    /// The host triple (`rustc -vV`).
    pub host: String,
    /// `rustc --version`.
    pub version: String,
    /// The commit rustc was built from (`commit-hash` of `rustc -vV`): its prebuilt standard
    /// library records its sources under `/rustc/<commit>`.
    pub commit_hash: Option<String>,
    /// Every target rustc knows (`rustc --print target-list`).
    pub known_targets: Vec<String>,
}

impl RustToolchain {
    /// Asks rustc, run in `dir` so rustup honours the project's toolchain file.
    pub fn probe(dir: &Path) -> Result<RustToolchain> {
        let rustc = crate::rustc::program();
        let answers = ask(&rustc, dir)?;
        Ok(RustToolchain::from_answers(rustc, &answers))
    }

    /// [`RustToolchain::probe`], reusing the answers kept in `cache_dir` ([`crate::rustc`])
    /// while the toolchain behind them is the same one ([`crate::rustc::Toolchain::identify`]
    /// says what says so). Without such a key (no rustup environment) rustc is asked every
    /// time. Fresh answers come back with what keeps them, for the caller to write once the
    /// build goes ahead (a build refused before cargo runs writes nothing).
    pub fn probe_cached(
        dir: &Path,
        cache_dir: &Path,
    ) -> Result<(RustToolchain, Option<KeptAnswers>)> {
        let rustc = crate::rustc::program();
        let toolchain = crate::rustc::Toolchain::identify(&rustc);
        if let Some(answers) = toolchain
            .as_ref()
            .and_then(|t| t.recall::<RustcAnswers>(cache_dir, PROBE))
        {
            return Ok((RustToolchain::from_answers(rustc, &answers), None));
        }
        let answers = ask(&rustc, dir)?;
        let kept = toolchain.and_then(|t| t.keep(cache_dir, PROBE, &answers).ok());
        Ok((RustToolchain::from_answers(rustc, &answers), kept))
    }

    /// Where `build` keeps rustc's answers ([`crate::rustc::answers_dir`]).
    pub fn answers_dir() -> Option<PathBuf> {
        crate::rustc::answers_dir()
    }

    fn from_answers(rustc: OsString, answers: &RustcAnswers) -> RustToolchain {
        let verbose = &answers.verbose;
        let host = verbose
            .lines()
            .find_map(|l| l.strip_prefix("host: "))
            .unwrap_or(std::env::consts::ARCH)
            .to_owned();
        let version = verbose.lines().next().unwrap_or("rustc").to_owned();
        let commit_hash = verbose
            .lines()
            .find_map(|l| l.strip_prefix("commit-hash: "))
            .filter(|hash| hash.chars().all(|c| c.is_ascii_hexdigit()) && !hash.is_empty())
            .map(str::to_owned);
        // rustc prints the kinds in the order asked: the sysroot's one line, then the list.
        let mut lines = answers.printed.lines();
        let sysroot = PathBuf::from(lines.next().unwrap_or_default());
        let known_targets = lines.map(str::to_owned).collect();
        RustToolchain {
            rustc,
            sysroot,
            host,
            version,
            commit_hash,
            known_targets,
        }
    }

    /// Fails with an input error when rustc does not know `target` at all.
    pub fn check_known(&self, target: &TargetTriple) -> Result<()> {
        if self.known_targets.iter().any(|t| t == target.as_str()) {
            return Ok(());
        }
        Err(error::input(format!(
            "unknown target triple `{target}`: {} does not know it (`rustc --print target-list` \
             lists the known ones; `--target all` is x86_64 and aarch64 musl, `--target \
             every` adds armv7, riscv64gc, powerpc64le and i686 musl)",
            self.version
        )))
    }

    /// The directory holding `target`'s prebuilt standard library, when rustup installed it.
    pub fn target_libdir(&self, target: &TargetTriple) -> Option<PathBuf> {
        let dir = self
            .sysroot
            .join("lib/rustlib")
            .join(target.as_str())
            .join("lib");
        let has_std = std::fs::read_dir(&dir).ok()?.flatten().any(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            name.starts_with("libstd-") || name.starts_with("libcore-")
        });
        has_std.then_some(dir)
    }

    /// The standard library's sources (`rustup component add rust-src`), when installed:
    /// what `-Zbuild-std` compiles.
    pub fn rust_src(&self) -> Option<PathBuf> {
        let src = self.sysroot.join("lib/rustlib/src/rust");
        src.join("library/std/Cargo.toml").is_file().then_some(src)
    }

    /// Where `target`'s standard library comes from: rustup's prebuilt one; else, for a musl
    /// target whose architecture airlock knows (so zig can supply its C runtime), the
    /// toolchain's own sources, built by cargo.
    pub fn std_lib(&self, target: &TargetTriple) -> Result<StdLib, Missing> {
        if let Some(dir) = self.target_libdir(target) {
            return Ok(StdLib::Prebuilt(dir));
        }
        let buildable = target.is_musl() && target.zig_target().is_some();
        match self.rust_src() {
            Some(src) if buildable => Ok(StdLib::FromSource(src)),
            _ if buildable => Err(Missing {
                what: format!(
                    "the {target} standard library (no rustup target, and no rust-src to build it \
                     from)"
                ),
                needed_for: format!("every build for {target}"),
                install: install::rust_target_or_src(target.as_str()),
            }),
            _ => Err(Missing {
                what: format!("the {target} standard library (rustup target)"),
                needed_for: format!("every build for {target}"),
                install: install::rust_target(target.as_str()),
            }),
        }
    }

    /// The `rust-lld` shipped with the toolchain.
    pub fn rust_lld(&self) -> Option<PathBuf> {
        let path = self
            .sysroot
            .join("lib/rustlib")
            .join(&self.host)
            .join("bin/rust-lld");
        path.is_file().then_some(path)
    }
}

/// What rustc said: `-vV`, and `--print sysroot --print target-list`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RustcAnswers {
    verbose: String,
    printed: String,
}

/// rustc's fresh answers, written where [`RustToolchain::probe_cached`] looks for them next
/// time by [`crate::rustc::Kept::write`].
pub type KeptAnswers = crate::rustc::Kept;

/// The question [`RustcAnswers`] answers, as kept.
const PROBE: &str = "-vV; --print sysroot --print target-list";

/// Runs the two rustc probes in `dir`: two runs instead of three (`--print` takes several
/// kinds at once, `-vV` takes none), side by side, as each goes through rustup's proxy
/// (10-20 ms apiece).
fn ask(rustc: &OsString, dir: &Path) -> Result<RustcAnswers> {
    let run = |args: &[&str]| -> Result<String> {
        let mut cmd = Command::new(rustc);
        cmd.args(args).current_dir(dir);
        let output = process::run_captured(&mut cmd).map_err(|e| {
            if error::exit_kind(&e) == error::ExitKind::Environment {
                error::environment(
                    "rustc is not installed or not on PATH; install Rust with rustup \
                     (https://rustup.rs): curl --proto '=https' -sSf https://sh.rustup.rs | sh",
                )
            } else {
                e
            }
        })?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    };
    let (verbose, printed) = std::thread::scope(|scope| {
        let printed = scope.spawn(|| run(&["--print", "sysroot", "--print", "target-list"]));
        let verbose = run(&["-vV"]);
        let printed = printed
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (verbose, printed)
    });
    Ok(RustcAnswers {
        verbose: verbose?,
        printed: printed?,
    })
}

/// How to run zig: a `zig` on PATH, or `python3 -m ziglang` from `pip install ziglang`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Zig {
    /// The program (`/usr/bin/zig` or `/usr/bin/python3`).
    pub program: PathBuf,
    /// Arguments before zig's own (`-m ziglang` for the Python package).
    pub prefix_args: Vec<String>,
    /// `zig version`.
    pub version: String,
}

impl Zig {
    /// Finds zig: `zig` on PATH first, then the `ziglang` Python package.
    pub fn find() -> Option<Zig> {
        let candidates = [
            process::find_on_path("zig").map(|p| (p, vec![])),
            process::find_on_path("python3").map(|p| (p, vec!["-m".into(), "ziglang".into()])),
        ];
        candidates
            .into_iter()
            .flatten()
            .find_map(|(program, prefix_args)| {
                let output =
                    process::run_captured(Command::new(&program).args(&prefix_args).arg("version"))
                        .ok()?;
                let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
                Some(Zig {
                    program,
                    prefix_args,
                    version,
                })
            })
    }

    /// The command as a user would type it (`zig` or `python3 -m ziglang`).
    pub fn display(&self) -> String {
        let mut parts = vec![self.program.display().to_string()];
        parts.extend(self.prefix_args.iter().cloned());
        parts.join(" ")
    }

    /// zig's `-target` for `target` (`arm-linux-musleabihf`); the Rust triple itself when
    /// airlock does not know it, which zig then refuses with its own message.
    pub fn target_for(target: &TargetTriple) -> String {
        target.zig_target().unwrap_or_else(|| target.to_string())
    }
}

/// zig, looked for at most once and only when something picks it: `python3 -m ziglang
/// version` alone costs 0.1 s through pyenv's shims, so a build whose C code musl-gcc compiles
/// never starts it.
#[derive(Debug, Default)]
pub struct ZigLookup {
    found: std::sync::OnceLock<Option<Zig>>,
}

impl ZigLookup {
    /// Nothing looked for yet.
    pub fn new() -> ZigLookup {
        ZigLookup::default()
    }

    /// Already looked for (`doctor` reports zig whether or not anything picks it).
    pub fn found(zig: Option<Zig>) -> ZigLookup {
        let lookup = ZigLookup::default();
        let _ = lookup.found.set(zig);
        lookup
    }

    /// zig, looking for it on the first call.
    pub fn get(&self) -> Option<&Zig> {
        self.found.get_or_init(Zig::find).as_ref()
    }

    /// What the lookup found, or `None` when nothing has asked yet.
    pub fn looked_up(&self) -> Option<Option<&Zig>> {
        self.found.get().map(Option::as_ref)
    }
}

/// Where a target's standard library comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StdLib {
    /// rustup's prebuilt one (`rustup target add`), in this directory, with its own
    /// self-contained musl C runtime, libc and libunwind.
    Prebuilt(PathBuf),
    /// None is installed: cargo builds it from the toolchain's rust-src (this directory) with
    /// `-Zbuild-std`, and zig supplies the musl C runtime, libc and libunwind rustup's
    /// package would have carried. For musl targets whose rust-std rustup cannot download.
    FromSource(PathBuf),
}

impl StdLib {
    /// Whether cargo must build it (`-Zbuild-std`).
    pub fn from_source(&self) -> bool {
        matches!(self, StdLib::FromSource(_))
    }
}

/// The linker airlock points cargo at for a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Linker {
    /// Rust's default for the target: the system `cc` driving the linker with the toolchain's
    /// self-contained musl objects.
    SystemCc(PathBuf),
    /// The toolchain's `rust-lld`, linking directly (cross targets, or when `cc` is missing).
    RustLld(PathBuf),
    /// `zig cc` (`zig c++` when the link needs a C++ standard library), with zig's own musl C
    /// runtime, libc and libunwind: for a standard library built from source, which has no
    /// self-contained objects, and for cross builds that compile C code with zig.
    Zig(Zig),
}

impl Linker {
    /// A short description for tables and `-v`.
    pub fn describe(&self) -> String {
        match self {
            Linker::SystemCc(path) => format!("cc ({}), self-contained musl", path.display()),
            Linker::RustLld(path) => format!("rust-lld ({})", path.display()),
            Linker::Zig(zig) => format!("zig cc {} ({}), zig's musl", zig.version, zig.display()),
        }
    }
}

/// How a target's binaries are linked once everything about the build is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkSetup {
    /// The linker for links without a C++ standard library.
    pub linker: Linker,
    /// What links when the link asks for a C++ standard library (`-lc++`, `-lstdc++`): the C++
    /// compiler as linker driver. `None` when the build compiles no C code, or none is found.
    pub cxx: Option<CxxCompiler>,
    /// Whether rustc links the toolchain's self-contained musl objects
    /// (`-Clink-self-contained=yes`); off when zig links, which brings its own.
    pub self_contained: bool,
}

impl LinkSetup {
    /// Whether cargo's linker must be airlock's wrapper script: zig links, or C++ links go to
    /// another driver than the rest.
    pub fn needs_wrapper(&self) -> bool {
        matches!(self.linker, Linker::Zig(_)) || self.cxx.is_some()
    }
}

/// The C compiler airlock gives `cc`-crate build scripts for a target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CCompiler {
    /// `musl-gcc` (Debian's musl-tools), for the host's own architecture.
    MuslGcc(PathBuf),
    /// `zig cc -target <arch>-linux-musl`, for any architecture.
    Zig(Zig),
}

impl CCompiler {
    /// A short description for tables.
    pub fn describe(&self) -> String {
        match self {
            CCompiler::MuslGcc(path) => format!("musl-gcc ({})", path.display()),
            CCompiler::Zig(zig) => format!("zig cc {} ({})", zig.version, zig.display()),
        }
    }
}

/// The C++ compiler airlock gives `cc`-crate build scripts (`cpp(true)`) for a target, which
/// also links the binaries whose link needs its C++ standard library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CxxCompiler {
    /// A g++ that targets musl (`x86_64-linux-musl-g++` from musl-cross-make, or `g++` on a
    /// musl host such as Alpine), for the host's own architecture: libstdc++, static.
    MuslGxx(PathBuf),
    /// `zig c++ -target <arch>-linux-musl`, for any architecture: LLVM's libc++, static.
    Zig(Zig),
    /// zig c++ as above, with zig looked for (`zig`, else `python3 -m ziglang`) by airlock's
    /// wrapper at the first C++ compile or link of a build, not before: nothing else in the
    /// build needed zig, and whether it compiles C++ is only known when its build scripts run.
    ZigAtFirstUse,
}

impl CxxCompiler {
    /// A short description for tables.
    pub fn describe(&self) -> String {
        match self {
            CxxCompiler::MuslGxx(path) => format!("musl g++ ({}), libstdc++", path.display()),
            CxxCompiler::Zig(zig) => format!("zig c++ {} ({}), libc++", zig.version, zig.display()),
            CxxCompiler::ZigAtFirstUse => "zig c++ (`zig`, else `python3 -m ziglang`, looked for \
                                           at the first C++ compile or link), libc++"
                .to_owned(),
        }
    }

    /// The C++ standard library it links, as cc-rs' `CXXSTDLIB` names it.
    pub fn stdlib(&self) -> &'static str {
        match self {
            CxxCompiler::MuslGxx(_) => "stdc++",
            CxxCompiler::Zig(_) | CxxCompiler::ZigAtFirstUse => "c++",
        }
    }
}

/// Something a target needs that this machine lacks, and the command that installs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    /// What is missing (`zig`, `the aarch64-unknown-linux-musl standard library`).
    pub what: String,
    /// What it is needed for.
    pub needed_for: String,
    /// The command that installs it.
    pub install: String,
}

impl Missing {
    /// One line: what, why, and the install command.
    pub fn sentence(&self) -> String {
        format!(
            "{} is missing (needed for {}); install it with `{}`",
            self.what, self.needed_for, self.install
        )
    }
}

/// Install commands, in one place so `doctor`, `build` and the README agree.
pub mod install {
    /// musl-gcc.
    pub const MUSL_GCC: &str = "apt-get install musl-tools";
    /// zig, as the Python package (no system package needed).
    pub const ZIG: &str = "python3 -m pip install ziglang";
    /// A system C compiler and linker driver.
    pub const CC: &str = "apt-get install gcc";
    /// rust-lld ships with every rustup toolchain.
    pub const RUST_LLD: &str = "rustup toolchain install stable (rustup toolchains ship rust-lld)";

    /// The rustup target.
    pub fn rust_target(target: &str) -> String {
        format!("rustup target add {target}")
    }

    /// The rustup target, or the sources airlock builds the standard library from when
    /// rustup's mirror has no prebuilt one for the target.
    pub fn rust_target_or_src(target: &str) -> String {
        format!(
            "{} (or, where rustup has no prebuilt std for it: {RUST_SRC})",
            rust_target(target)
        )
    }

    /// The standard library's sources.
    pub const RUST_SRC: &str = "rustup component add rust-src";

    /// qemu user-mode emulators.
    pub const QEMU: &str = "apt-get install qemu-user-static";
}

/// Everything airlock found (or did not find) for one target.
#[derive(Debug, Clone)]
pub struct TargetTools {
    /// The target.
    pub target: TargetTriple,
    /// Whether it is the toolchain host's architecture (its binaries run natively here).
    pub native: bool,
    /// Where the target's standard library comes from, or what to install.
    pub rust_target: Result<StdLib, Missing>,
    /// The linker airlock will set for builds without C code (musl targets), or what to
    /// install. [`TargetTools::link_setup`] says what links a build with C or C++ code.
    pub linker: Result<Linker, Missing>,
    /// The C compiler for `cc` build scripts (musl targets), or what to install.
    pub c_compiler: Result<CCompiler, Missing>,
    /// The C++ compiler for `cc` build scripts with `cpp(true)` (musl targets), or what to
    /// install. Not known to be needed before the build runs, so never required.
    pub cxx_compiler: Result<CxxCompiler, Missing>,
    /// `ar` for the C compiler's static archives.
    pub archiver: Option<PathBuf>,
    /// zig, when found (the C compiler for cross targets, the fallback natively).
    pub zig: Option<Zig>,
    /// `rust-lld`, when found.
    pub rust_lld: Option<PathBuf>,
    /// The qemu emulator for foreign targets (`None` when the target runs natively).
    pub qemu: Option<Result<PathBuf, Missing>>,
}

impl TargetTools {
    /// Looks for everything `target` needs; C and C++ compilers only when `compiles_c` (a
    /// build without C code has no use for them, and `doctor` asks for everything). zig is
    /// looked for through `zig`, shared by every target so it is probed at most once, and
    /// only when a chooser picks it: a C++ compiler that would be zig is left to the first
    /// C++ compile ([`CxxCompiler::ZigAtFirstUse`]) unless zig was needed before.
    pub fn probe(
        target: &TargetTriple,
        rust: &RustToolchain,
        zig: &ZigLookup,
        compiles_c: bool,
    ) -> TargetTools {
        // Native means "the toolchain's own architecture": what musl-gcc and `cc` produce,
        // and what runs here without qemu (also when airlock itself runs under emulation).
        let host_arch = rust
            .host
            .parse::<TargetTriple>()
            .ok()
            .and_then(|t| t.arch());
        let native = target.arch().is_some() && target.arch() == host_arch;
        let rust_target = rust.std_lib(target);
        let rust_lld = rust.rust_lld();
        let from_source = rust_target.as_ref().is_ok_and(StdLib::from_source);
        let linker = if from_source {
            zig_linker(target, zig.get())
        } else {
            choose_linker(target, native, rust_lld.as_deref())
        };
        let no_zig = ZigLookup::found(None);
        let c_zig = if compiles_c { zig } else { &no_zig };
        let c_compiler = choose_c_compiler(target, native, c_zig);
        let host_is_musl = rust.host.ends_with("-musl");
        let cxx_compiler = choose_cxx_compiler(target, native, host_is_musl, c_zig, &linker);
        let archiver = match &c_compiler {
            Ok(CCompiler::MuslGcc(_)) => process::find_on_path("ar"),
            _ => None,
        };
        let qemu = (!native).then(|| {
            let arch = target.arch();
            let binary = arch.map_or("qemu-<arch>-static", Arch::qemu_binary);
            process::find_on_path(binary).ok_or_else(|| Missing {
                what: binary.to_owned(),
                needed_for: format!("running {target} binaries on this machine (tests)"),
                install: install::QEMU.to_owned(),
            })
        });
        TargetTools {
            target: target.clone(),
            native,
            rust_target,
            linker,
            c_compiler,
            cxx_compiler,
            archiver,
            zig: zig.looked_up().flatten().cloned(),
            rust_lld,
            qemu,
        }
    }

    /// What stops a build of this target: the rustup target and the linker always, the C
    /// compiler when the build compiles C code. Empty when the build can go ahead.
    pub fn missing_for_build(&self, compiles_c: bool) -> Vec<&Missing> {
        let mut missing = Vec::new();
        if let Err(m) = &self.rust_target {
            missing.push(m);
        }
        if self.target.is_musl() {
            if let Err(m) = &self.linker {
                missing.push(m);
            }
            if compiles_c && let Err(m) = &self.c_compiler {
                missing.push(m);
            }
        }
        missing
    }

    /// Once every target is probed: when something needed zig after all, a C++ compiler left
    /// to the first C++ compile becomes what that lookup found, as if it had been chosen then.
    pub fn settle_zig(&mut self, zig: &ZigLookup) {
        if let (Ok(CxxCompiler::ZigAtFirstUse), Some(found)) = (&self.cxx_compiler, zig.looked_up())
        {
            self.cxx_compiler = zig_cxx(&self.target, found);
            self.zig = found.cloned();
        }
    }

    /// How a build of this target links, given whether it compiles C code (and so maybe
    /// C++: that is only known when the build scripts run, so it is decided per link by
    /// airlock's linker wrapper from the libraries the link asks for).
    ///
    /// - a standard library built from source: zig, always (it has no self-contained objects);
    /// - C code on a cross target: zig, which compiled it, also links, so that a C++ standard
    ///   library can be linked when asked for (rust-lld has none);
    /// - C code natively: `cc` as before, and the C++ compiler for links that need libc++ or
    ///   libstdc++;
    /// - no C code: `cc` natively, rust-lld across architectures.
    pub fn link_setup(&self, compiles_c: bool) -> Option<LinkSetup> {
        let linker = self.linker.as_ref().ok()?.clone();
        let cxx = compiles_c
            .then(|| self.cxx_compiler.as_ref().ok().cloned())
            .flatten();
        let linker = match (linker, &cxx) {
            (Linker::RustLld(_), Some(CxxCompiler::Zig(zig))) => Linker::Zig(zig.clone()),
            (linker, _) => linker,
        };
        let self_contained = !matches!(linker, Linker::Zig(_));
        Some(LinkSetup {
            linker,
            cxx,
            self_contained,
        })
    }
}

/// zig as the linker of a target whose standard library is built from source.
fn zig_linker(target: &TargetTriple, zig: Option<&Zig>) -> Result<Linker, Missing> {
    zig.cloned().map(Linker::Zig).ok_or_else(|| Missing {
        what: "zig".to_owned(),
        needed_for: format!(
            "linking {target}: its standard library is built from source, and zig supplies the \
             musl C runtime, libc and libunwind"
        ),
        install: install::ZIG.to_owned(),
    })
}

fn choose_linker(
    target: &TargetTriple,
    native: bool,
    rust_lld: Option<&Path>,
) -> Result<Linker, Missing> {
    let cc = native.then(|| process::find_on_path("cc")).flatten();
    match (cc, rust_lld) {
        (Some(cc), _) => Ok(Linker::SystemCc(cc)),
        (None, Some(lld)) => Ok(Linker::RustLld(lld.to_path_buf())),
        (None, None) => Err(Missing {
            what: "rust-lld".to_owned(),
            needed_for: format!("linking {target} binaries"),
            install: if native {
                format!("{} (or {})", install::RUST_LLD, install::CC)
            } else {
                install::RUST_LLD.to_owned()
            },
        }),
    }
}

fn choose_c_compiler(
    target: &TargetTriple,
    native: bool,
    zig: &ZigLookup,
) -> Result<CCompiler, Missing> {
    let musl_gcc = native.then(|| process::find_on_path("musl-gcc")).flatten();
    if let Some(path) = musl_gcc {
        return Ok(CCompiler::MuslGcc(path));
    }
    if target.zig_target().is_none() {
        return Err(Missing {
            what: format!("a C compiler for {target}"),
            needed_for: "crates that compile C code (the `cc` crate)".to_owned(),
            install: format!(
                "airlock sets up {} musl only; set CC_{} to a musl cross compiler",
                Arch::list(),
                target.as_str().replace('-', "_")
            ),
        });
    }
    match zig.get() {
        Some(zig) => Ok(CCompiler::Zig(zig.clone())),
        None => Err(Missing {
            what: if native {
                "musl-gcc (or zig)".to_owned()
            } else {
                "zig".to_owned()
            },
            needed_for: format!("crates that compile C code for {target} (the `cc` crate)"),
            install: if native {
                format!("{} (or {})", install::MUSL_GCC, install::ZIG)
            } else {
                install::ZIG.to_owned()
            },
        }),
    }
}

fn choose_cxx_compiler(
    target: &TargetTriple,
    native: bool,
    host_is_musl: bool,
    zig: &ZigLookup,
    linker: &Result<Linker, Missing>,
) -> Result<CxxCompiler, Missing> {
    if native {
        let cross_named = musl_cross_prefix(target).map(|prefix| format!("{prefix}-g++"));
        let found = cross_named
            .and_then(process::find_on_path)
            .or_else(|| host_is_musl.then(|| process::find_on_path("g++")).flatten());
        if let Some(path) = found {
            return Ok(CxxCompiler::MuslGxx(path));
        }
    }
    // Where `cc` links, only C++ links need zig: its wrapper looks for it then. Elsewhere
    // (rust-lld, zig) the choice changes every link, so it is made now.
    let links_with_cc = matches!(linker, Ok(Linker::SystemCc(_)));
    if links_with_cc && zig.looked_up().is_none() && target.zig_target().is_some() {
        return Ok(CxxCompiler::ZigAtFirstUse);
    }
    zig_cxx(target, zig.get())
}

/// zig c++ for `target`, or what to install.
fn zig_cxx(target: &TargetTriple, zig: Option<&Zig>) -> Result<CxxCompiler, Missing> {
    match zig {
        Some(zig) if target.zig_target().is_some() => Ok(CxxCompiler::Zig(zig.clone())),
        _ => Err(Missing {
            what: format!("a C++ compiler for {target} (zig)"),
            needed_for: "crates that compile C++ (`cc` with `cpp(true)`)".to_owned(),
            install: if target.zig_target().is_some() {
                install::ZIG.to_owned()
            } else {
                format!(
                    "set CXX_{} to a musl cross compiler",
                    target.as_str().replace('-', "_")
                )
            },
        }),
    }
}

/// musl-cross-make's prefix for `target` (`x86_64-linux-musl`, `arm-linux-musleabihf`).
fn musl_cross_prefix(target: &TargetTriple) -> Option<String> {
    let arch = match target.arch()? {
        Arch::Armv7 => "arm",
        Arch::Riscv64 => "riscv64",
        other => other.name(),
    };
    let env = target.as_str().rsplit('-').next()?;
    Some(format!("{arch}-linux-{env}"))
}

/// The environment error `build` returns when targets lack what their build needs.
pub fn environment_error(missing: &[(&TargetTriple, Vec<&Missing>)]) -> anyhow::Error {
    let mut text = String::from("this machine cannot build every requested target:");
    for (target, items) in missing {
        for item in items {
            text.push_str(&format!("\n  {target}: {}", item.sentence()));
        }
    }
    text.push_str("\n`cargo airlock doctor` shows everything each target needs");
    error::environment(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn triple(text: &str) -> TargetTriple {
        text.parse().unwrap()
    }

    /// A toolchain whose sysroot is `dir`: a prebuilt x86_64 musl std, and rust-src when
    /// `with_src`.
    fn toolchain(dir: &Path, with_src: bool) -> RustToolchain {
        let lib = dir.join("lib/rustlib/x86_64-unknown-linux-musl/lib");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("libstd-0123.rlib"), b"").unwrap();
        if with_src {
            let std = dir.join("lib/rustlib/src/rust/library/std");
            std::fs::create_dir_all(&std).unwrap();
            std::fs::write(std.join("Cargo.toml"), b"").unwrap();
        }
        RustToolchain {
            rustc: "rustc".into(),
            sysroot: dir.to_path_buf(),
            host: "x86_64-unknown-linux-gnu".into(),
            version: "rustc 1.95.0".into(),
            commit_hash: None,
            known_targets: Vec::new(),
        }
    }

    #[test]
    fn std_is_prebuilt_or_from_source_or_names_what_to_install() {
        let dir = tempfile::tempdir().unwrap();
        let rust = toolchain(dir.path(), true);
        assert!(matches!(
            rust.std_lib(&triple("x86_64-unknown-linux-musl")),
            Ok(StdLib::Prebuilt(_))
        ));
        assert_eq!(
            rust.std_lib(&triple("armv7-unknown-linux-musleabihf")),
            Ok(StdLib::FromSource(dir.path().join("lib/rustlib/src/rust")))
        );
        // zig cannot supply a C runtime airlock does not know how to ask for, nor glibc's.
        for unknown in ["s390x-unknown-linux-musl", "armv7-unknown-linux-gnueabihf"] {
            let missing = rust.std_lib(&triple(unknown)).unwrap_err();
            assert_eq!(missing.install, format!("rustup target add {unknown}"));
        }

        let bare = tempfile::tempdir().unwrap();
        let rust = toolchain(bare.path(), false);
        let missing = rust
            .std_lib(&triple("riscv64gc-unknown-linux-musl"))
            .unwrap_err();
        assert_eq!(
            missing.install,
            "rustup target add riscv64gc-unknown-linux-musl (or, where rustup has no prebuilt \
             std for it: rustup component add rust-src)"
        );
    }

    fn zig() -> Zig {
        Zig {
            program: PathBuf::from("/usr/bin/zig"),
            prefix_args: Vec::new(),
            version: "0.0.0".into(),
        }
    }

    fn tools(target: &str, std: StdLib, linker: Linker, cxx: Option<CxxCompiler>) -> TargetTools {
        TargetTools {
            target: triple(target),
            native: target.starts_with("x86_64"),
            rust_target: Ok(std),
            linker: Ok(linker),
            c_compiler: Ok(CCompiler::Zig(zig())),
            cxx_compiler: cxx.ok_or_else(|| Missing {
                what: "zig".into(),
                needed_for: "C++".into(),
                install: install::ZIG.into(),
            }),
            archiver: None,
            zig: Some(zig()),
            rust_lld: None,
            qemu: None,
        }
    }

    #[test]
    fn zig_links_when_it_must_and_cc_or_rust_lld_otherwise() {
        let prebuilt = StdLib::Prebuilt(PathBuf::from("/std"));
        let lld = Linker::RustLld(PathBuf::from("/rust-lld"));
        let cc = Linker::SystemCc(PathBuf::from("/usr/bin/cc"));
        let cxx = Some(CxxCompiler::Zig(zig()));

        // No C code: nothing changes, whatever compilers there are.
        let arm = tools(
            "aarch64-unknown-linux-musl",
            prebuilt.clone(),
            lld.clone(),
            cxx.clone(),
        );
        let pure = arm.link_setup(false).unwrap();
        assert_eq!(
            (&pure.linker, &pure.cxx, pure.self_contained),
            (&lld, &None, true)
        );
        assert!(!pure.needs_wrapper());

        // C code across architectures: zig links (rust-lld has no C++ library to offer).
        let with_c = arm.link_setup(true).unwrap();
        assert_eq!(with_c.linker, Linker::Zig(zig()));
        assert_eq!(with_c.cxx, cxx);
        assert!(!with_c.self_contained);

        // C code natively: cc stays, C++ links go to zig c++.
        let x86 = tools(
            "x86_64-unknown-linux-musl",
            prebuilt,
            cc.clone(),
            cxx.clone(),
        );
        let native = x86.link_setup(true).unwrap();
        assert_eq!((&native.linker, native.self_contained), (&cc, true));
        assert!(native.needs_wrapper());

        // A standard library built from source: zig links, without the toolchain's objects.
        let riscv = tools(
            "riscv64gc-unknown-linux-musl",
            StdLib::FromSource(PathBuf::from("/src")),
            Linker::Zig(zig()),
            None,
        );
        let from_source = riscv.link_setup(false).unwrap();
        assert_eq!(from_source.linker, Linker::Zig(zig()));
        assert!(!from_source.self_contained && from_source.needs_wrapper());
    }

    #[test]
    fn musl_cross_compilers_are_named_as_musl_cross_make_names_them() {
        assert_eq!(
            musl_cross_prefix(&triple("x86_64-unknown-linux-musl")).as_deref(),
            Some("x86_64-linux-musl")
        );
        assert_eq!(
            musl_cross_prefix(&triple("armv7-unknown-linux-musleabihf")).as_deref(),
            Some("arm-linux-musleabihf")
        );
        assert_eq!(
            musl_cross_prefix(&triple("i686-unknown-linux-musl")).as_deref(),
            Some("i686-linux-musl")
        );
    }
}
