//! `cargo airlock doctor`: for each target, what this machine has and lacks (the standard
//! library, prebuilt or from source; linker, C and C++ compilers, zig, rust-lld, qemu), with
//! the command that installs each missing piece. Asks [`super::toolchain`] exactly what
//! `build` asks, so the two agree.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::cargo::BUILD_STD;
use super::toolchain::{
    self, CCompiler, CxxCompiler, Linker, Missing, RustToolchain, StdLib, TargetTools, Zig,
    ZigLookup,
};
use crate::error::ExitKind;
use crate::render::{self, Align, CommandReport};
use crate::target::TargetTriple;

/// Options of `cargo airlock doctor`.
#[derive(Debug, Clone, Default)]
pub struct DoctorOptions {
    /// A workspace's `Cargo.toml`: rustc is asked from its directory, so a
    /// `rust-toolchain.toml` there counts. Default: the current directory.
    pub manifest_path: Option<PathBuf>,
    /// Targets to check; empty: every musl target airlock ships.
    pub targets: Vec<TargetTriple>,
}

/// Whether a piece is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckStatus {
    /// Found.
    Ok,
    /// Missing, and a build of the target needs it (exit 3).
    Missing,
    /// Missing, but only needed for something optional (running foreign binaries, a
    /// fallback).
    Optional,
}

impl CheckStatus {
    fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Ok => "ok",
            CheckStatus::Missing => "MISSING",
            CheckStatus::Optional => "optional",
        }
    }
}

/// One row of the doctor's table.
#[derive(Debug, Clone, Serialize)]
pub struct ToolCheck {
    /// The piece (`rustup target`, `linker`, `C compiler`, `zig`, `rust-lld`, `qemu`).
    pub name: String,
    /// Found, missing or optional.
    pub status: CheckStatus,
    /// What was found, in a few words, when found.
    pub found: Option<String>,
    /// Where it was found.
    pub path: Option<PathBuf>,
    /// What airlock uses it for.
    pub purpose: String,
    /// The command that installs it, when missing.
    pub install: Option<String>,
}

/// All checks for one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// The target.
    pub target: TargetTriple,
    /// Whether its binaries run natively here.
    pub native: bool,
    /// Whether every needed piece is there.
    pub ready: bool,
    /// The rows.
    pub checks: Vec<ToolCheck>,
    /// What airlock does differently for this target, and why (a standard library built from
    /// source, zig linking C or C++ code).
    pub notes: Vec<String>,
}

/// The result of `doctor`.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// `rustc --version`.
    pub rustc: String,
    /// The host triple.
    pub host: String,
    /// One entry per target.
    pub targets: Vec<TargetReport>,
}

/// `cargo airlock doctor`.
pub fn doctor(options: &DoctorOptions) -> Result<DoctorReport> {
    let dir = match options.manifest_path.as_deref().and_then(|p| p.parent()) {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => std::env::current_dir()?,
    };
    let rust = RustToolchain::probe(&dir)?;
    let targets = if options.targets.is_empty() {
        TargetTriple::all_musl()
    } else {
        options.targets.clone()
    };
    for target in &targets {
        rust.check_known(target)?;
    }
    // doctor reports zig whether or not a target's choice falls on it.
    let zig = ZigLookup::found(Zig::find());
    let targets = targets
        .iter()
        .map(|target| target_report(&TargetTools::probe(target, &rust, &zig, true)))
        .collect();
    Ok(DoctorReport {
        rustc: rust.version,
        host: rust.host,
        targets,
    })
}

fn target_report(tools: &TargetTools) -> TargetReport {
    let target = &tools.target;
    let from_source = matches!(tools.rust_target, Ok(StdLib::FromSource(_)));
    let mut checks = vec![check(
        "rustup target",
        &tools.rust_target,
        |std| match std {
            StdLib::Prebuilt(dir) => ("installed".to_owned(), dir.clone()),
            StdLib::FromSource(src) => ("none; std built from rust-src".to_owned(), src.clone()),
        },
        format!("the standard library for {target}"),
        true,
    )];
    if target.is_musl() {
        checks.extend(musl_checks(tools, from_source));
    }
    if let Some(qemu) = &tools.qemu {
        checks.push(check(
            "qemu",
            qemu,
            |path| ("installed".to_owned(), path.clone()),
            format!("running {target} binaries here (tests, smoke tests)"),
            false,
        ));
    }
    // rust-lld is required exactly when it is the linker; the linker row says so.
    let ready = checks.iter().all(|c| c.status != CheckStatus::Missing);
    TargetReport {
        target: target.clone(),
        native: tools.native,
        ready,
        checks,
        notes: notes(tools, from_source),
    }
}

fn musl_checks(tools: &TargetTools, from_source: bool) -> Vec<ToolCheck> {
    let mut checks = vec![
        check(
            "linker",
            &tools.linker,
            |linker| match linker {
                Linker::SystemCc(path) => ("cc, self-contained musl".to_owned(), path.clone()),
                Linker::RustLld(path) => ("rust-lld".to_owned(), path.clone()),
                Linker::Zig(zig) => (format!("zig cc {}", zig.version), zig.program.clone()),
            },
            "linking static binaries".to_owned(),
            true,
        ),
        check(
            "C compiler",
            &tools.c_compiler,
            |compiler| match compiler {
                CCompiler::MuslGcc(path) => ("musl-gcc".to_owned(), path.clone()),
                CCompiler::Zig(zig) => (format!("zig cc {}", zig.version), zig.program.clone()),
            },
            "C code of `cc`-crate build scripts (ring, zstd-sys, …)".to_owned(),
            true,
        ),
        // Whether a build compiles C++ is known only when its build scripts run: never
        // required here; `build` fails at the C++ compile when it is missing (cc-rs' own
        // message, or airlock's wrapper naming the install command where zig is looked for
        // only then).
        check(
            "C++ compiler",
            &tools.cxx_compiler,
            |compiler| match compiler {
                CxxCompiler::MuslGxx(path) => ("musl g++, libstdc++".to_owned(), path.clone()),
                CxxCompiler::Zig(zig) => (
                    format!("zig c++ {}, libc++", zig.version),
                    zig.program.clone(),
                ),
                // Never here: zig was looked for before any target was probed.
                CxxCompiler::ZigAtFirstUse => ("zig c++, libc++".to_owned(), "zig".into()),
            },
            "C++ code of `cc`-crate build scripts (`cpp(true)`: cxx, …) and its static link"
                .to_owned(),
            false,
        ),
    ];
    if tools.native {
        checks.push(optional(
            "zig",
            tools
                .zig
                .as_ref()
                .map(|z| (format!("zig {}", z.version), z.program.clone())),
            "fallback C compiler when musl-gcc is missing; C++ compiler",
            toolchain::install::ZIG,
        ));
    }
    if !from_source {
        checks.push(optional(
            "rust-lld",
            tools
                .rust_lld
                .as_ref()
                .map(|p| ("in the toolchain".to_owned(), p.clone())),
            if tools.native {
                "the linker when `cc` is missing"
            } else {
                "cross linking"
            },
            toolchain::install::RUST_LLD,
        ));
    }
    checks
}

/// What airlock does for this target that a reader would not guess from the rows.
fn notes(tools: &TargetTools, from_source: bool) -> Vec<String> {
    let target = &tools.target;
    let mut notes = Vec::new();
    if from_source {
        notes.push(format!(
            "rustup has no standard library installed for {target}, so `build` has cargo build \
             it from the toolchain's rust-src ({BUILD_STD}, with RUSTC_BOOTSTRAP=1 on a stable \
             toolchain) and zig link it with its own musl C runtime, libc and libunwind; the \
             first build takes minutes. `{}` gives a prebuilt one, where rustup's mirror has it",
            toolchain::install::rust_target(target.as_str())
        ));
    }
    if let Some(link) = tools.link_setup(true)
        && target.is_musl()
    {
        match (&link.linker, &link.cxx, &tools.linker) {
            (Linker::Zig(_), _, Ok(Linker::RustLld(_))) => notes.push(
                "builds that compile C code link with zig cc instead of rust-lld (zig c++ when \
                 the link needs a C++ standard library)"
                    .to_owned(),
            ),
            (Linker::SystemCc(_), Some(cxx), _) => notes.push(format!(
                "links that need a C++ standard library go to {}",
                match cxx {
                    CxxCompiler::MuslGxx(_) => "musl g++ (libstdc++)",
                    CxxCompiler::Zig(_) | CxxCompiler::ZigAtFirstUse => "zig c++ (libc++)",
                }
            )),
            _ => {}
        }
    }
    notes
}

fn check<T>(
    name: &str,
    result: &Result<T, Missing>,
    describe: impl Fn(&T) -> (String, PathBuf),
    purpose: String,
    required: bool,
) -> ToolCheck {
    match result {
        Ok(found) => {
            let (found, path) = describe(found);
            ToolCheck {
                name: name.to_owned(),
                status: CheckStatus::Ok,
                found: Some(found),
                path: Some(path),
                purpose,
                install: None,
            }
        }
        Err(missing) => ToolCheck {
            name: name.to_owned(),
            status: if required {
                CheckStatus::Missing
            } else {
                CheckStatus::Optional
            },
            found: None,
            path: None,
            purpose: format!("{purpose}: {} not found", missing.what),
            install: Some(missing.install.clone()),
        },
    }
}

fn optional(
    name: &str,
    found: Option<(String, PathBuf)>,
    purpose: &str,
    install: &str,
) -> ToolCheck {
    let (found, path) = found.unzip();
    ToolCheck {
        name: name.to_owned(),
        status: if found.is_some() {
            CheckStatus::Ok
        } else {
            CheckStatus::Optional
        },
        install: found.is_none().then(|| install.to_owned()),
        found,
        path,
        purpose: purpose.to_owned(),
    }
}

impl CommandReport for DoctorReport {
    fn human(&self) -> String {
        let mut out = format!("{} on {}\n", self.rustc, self.host);
        for target in &self.targets {
            out.push_str(&format!(
                "\n{} ({}): {}\n",
                target.target,
                if target.native { "native" } else { "cross" },
                if target.ready { "ready" } else { "NOT READY" }
            ));
            let rows: Vec<Vec<String>> = target
                .checks
                .iter()
                .map(|c| {
                    vec![
                        c.status.as_str().to_owned(),
                        c.name.clone(),
                        match (&c.found, &c.install) {
                            (Some(found), _) => found.clone(),
                            (None, Some(install)) => format!("install: {install}"),
                            (None, None) => String::new(),
                        },
                        c.purpose.clone(),
                    ]
                })
                .collect();
            let table = render::table(
                &[
                    ("status", Align::Left),
                    ("piece", Align::Left),
                    ("found", Align::Left),
                    ("for", Align::Left),
                ],
                &rows,
            );
            for line in table.lines() {
                out.push_str("  ");
                out.push_str(line);
                out.push('\n');
            }
            for note in &target.notes {
                out.push_str(&format!("  note: {note}\n"));
            }
        }
        let missing: Vec<String> = self
            .targets
            .iter()
            .flat_map(|t| {
                t.checks
                    .iter()
                    .filter(|c| c.status == CheckStatus::Missing)
                    .map(move |c| {
                        format!(
                            "{}: {} missing; install with `{}`",
                            t.target,
                            c.name,
                            c.install.as_deref().unwrap_or("?")
                        )
                    })
            })
            .collect();
        for line in &missing {
            out.push_str(&format!("\nerror: {line}"));
        }
        if !missing.is_empty() {
            out.push('\n');
        }
        out
    }

    fn exit_kind(&self) -> ExitKind {
        if self.targets.iter().all(|t| t.ready) {
            ExitKind::Ok
        } else {
            ExitKind::Environment
        }
    }
}
