//! `cargo airlock build` on the fixtures, for real: x86_64 and aarch64 musl, run natively and
//! under qemu, inspected, rebuilt for byte-identity, and fed bad input.

use std::path::Path;
use std::process::Command;

use crate::support::*;

const X86: &str = "x86_64-unknown-linux-musl";
const ARM: &str = "aarch64-unknown-linux-musl";

/// Runs `binary` (under qemu for aarch64) with `args` and returns its stdout.
fn run_binary(target: &str, binary: &Path, args: &[&str]) -> Option<String> {
    let mut cmd = if target == ARM && !cfg!(target_arch = "aarch64") {
        let qemu = require_tool("qemu-aarch64-static")?;
        let mut cmd = Command::new(qemu);
        cmd.arg(binary);
        cmd
    } else {
        Command::new(binary)
    };
    let (stdout, _) = run_expect(cmd.args(args), 0);
    Some(stdout)
}

/// `cargo airlock inspect` on `binary`: exit 0 and a static linkage for the right machine.
fn assert_inspected_static(binary: &Path, target: &str) {
    let report = run_json(
        airlock()
            .args(["inspect", "--format", "json", "--target", target])
            .arg(binary),
    );
    let linkage = report["files"][0]["linkage"].as_str().unwrap();
    assert!(
        linkage == "static" || linkage == "static-pie",
        "{}: {linkage}",
        binary.display()
    );
    assert_eq!(report["files"][0]["needed"], serde_json::json!([]));
}

/// The report's entry for `bin`, asserting the fields every build must have.
fn reported<'a>(build: &'a FixtureBuild, target: &str, bin: &str) -> &'a serde_json::Value {
    let entry = build.report["binaries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == bin && b["target"] == target)
        .unwrap_or_else(|| panic!("{bin} for {target} not in {:#}", build.report));
    let path = Path::new(entry["path"].as_str().unwrap());
    assert_eq!(path, build.binary(target, bin));
    assert_eq!(entry["elf"]["size"], std::fs::metadata(path).unwrap().len());
    assert_ne!(entry["elf"]["linkage"], "dynamic");
    assert_eq!(build.report["problems"], serde_json::json!([]));
    entry
}

fn arch_of(target: &str) -> &'static str {
    if target == ARM { "aarch64" } else { "x86_64" }
}

#[test]
fn hello_is_static_and_runs_on_both_targets() {
    for target in [X86, ARM] {
        let binary = static_fixture_binary("hello", "hello", target);
        let entry = reported(fixture_build("hello", target), target, "hello");
        assert_eq!(entry["package"], "airlock-hello");
        assert_eq!(entry["version"], "0.3.1");
        assert_eq!(entry["elf"]["arch"], arch_of(target));
        assert_inspected_static(&binary, target);
        if let Some(out) = run_binary(target, &binary, &[]) {
            assert_eq!(
                out,
                format!("hello from airlock-hello 0.3.1 on {}\n", arch_of(target))
            );
        }
    }
}

/// Adler-32 (RFC 1950), to check the C code's answer independently.
fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

#[test]
fn c_dependency_is_compiled_for_each_target_and_linked_statically() {
    for target in [X86, ARM] {
        let binary = static_fixture_binary("with-c", "with-c", target);
        reported(fixture_build("with-c", target), target, "with-c");
        assert_inspected_static(&binary, target);
        let text = format!("static {target}");
        if let Some(out) = run_binary(target, &binary, &[&text]) {
            assert_eq!(
                out,
                format!(
                    "with-c 0.2.0 on {}: adler32({text})={:08x}\n",
                    arch_of(target),
                    adler32(text.as_bytes())
                )
            );
        }
    }
    // The zig wrapper is what compiled the aarch64 C code, and it drops cc-rs' --target=.
    let dir = &fixture_build("with-c", ARM).dir;
    let wrapper =
        std::fs::read_to_string(dir.join("target/airlock/toolchain").join(ARM).join("cc")).unwrap();
    assert!(
        wrapper.contains("'cc' '-target' 'aarch64-linux-musl'"),
        "{wrapper}"
    );
    assert!(wrapper.contains("--target=*) ;;"), "{wrapper}");
}

#[test]
fn workspace_with_two_binaries_builds_both() {
    for target in [X86, ARM] {
        let build = fixture_build("multi-bin", target);
        let names: Vec<&str> = build.report["binaries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["alpha", "beta"]);
        for (bin, package, version) in [
            ("alpha", "multi-alpha", "1.0.0"),
            ("beta", "multi-beta", "2.1.0"),
        ] {
            let entry = reported(build, target, bin);
            assert_eq!(entry["package"], package);
            let binary = static_fixture_binary("multi-bin", bin, target);
            assert_inspected_static(&binary, target);
            if let Some(out) = run_binary(target, &binary, &[]) {
                assert_eq!(out, format!("{bin} {version} on {}\n", arch_of(target)));
            }
        }
    }
}

#[test]
fn one_bin_of_a_workspace_and_the_human_table() {
    let (_guard, dir) = copy_fixture("multi-bin");
    let (stdout, _) = run_expect(
        airlock()
            .current_dir(&dir)
            .args(["build", "--bin", "beta", "--target", X86]),
        0,
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["binary", "target", "size", "stripped", "linkage", "path"]
    );
    assert!(lines[1].starts_with(&format!("beta    {X86}")), "{stdout}");
    assert!(
        lines[1].ends_with(&format!("target/airlock/{X86}/beta")),
        "{stdout}"
    );
    assert!(stdout.contains("SOURCE_DATE_EPOCH"), "{stdout}");
    assert!(dir.join("target/airlock").join(X86).join("beta").is_file());
    assert!(!dir.join("target/airlock").join(X86).join("alpha").exists());
}

#[test]
fn gnu_build_is_reported_dynamic_and_fails() {
    let (_guard, dir) = copy_fixture("hello");
    let gnu = "x86_64-unknown-linux-gnu";
    let mut build = airlock();
    build
        .current_dir(&dir)
        .args(["build", "--format", "json", "--target", gnu]);
    let (stdout, _) = run_expect(&mut build, 1);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let elf = &report["binaries"][0]["elf"];
    assert_eq!(elf["linkage"], "dynamic");
    let needed: Vec<&str> = elf["needed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    assert!(needed.contains(&"libc.so.6"), "{needed:?}");
    let problem = report["problems"][0].as_str().unwrap();
    assert!(problem.contains("is dynamically linked"), "{problem}");
    assert!(problem.contains("libc.so.6"), "{problem}");
    assert!(problem.contains("build for a musl target"), "{problem}");

    // --allow-dynamic reports the same binary without failing (the report's glibc baseline).
    let report = run_json(build.arg("--allow-dynamic"));
    assert_eq!(report["binaries"][0]["elf"]["linkage"], "dynamic");
    assert_eq!(report["problems"], serde_json::json!([]));
}

/// Builds a fresh copy of `fixture` under a directory named `parent` and returns the bytes
/// of each binary, by target.
fn fresh_build(fixture: &str, parent: &str, bin: &str) -> (tempfile::TempDir, Vec<Vec<u8>>) {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join(parent).join(fixture);
    copy_dir(&fixture_path(fixture), &dir);
    run_expect(
        airlock()
            .current_dir(&dir)
            .args(["build", "-q", "--target", "all"]),
        0,
    );
    let bytes = [X86, ARM]
        .iter()
        .map(|t| std::fs::read(dir.join("target/airlock").join(t).join(bin)).unwrap())
        .collect();
    (temp, bytes)
}

#[test]
fn two_builds_in_different_directories_are_byte_identical() {
    // with-c: Rust and C code (musl-gcc for x86_64, zig for aarch64), in directories whose
    // paths differ in length and name.
    if require_tool("musl-gcc").is_none() {
        return;
    }
    let (_a, first) = fresh_build("with-c", "a", "with-c");
    let (_b, second) = fresh_build("with-c", "second-checkout", "with-c");
    for (target, (one, two)) in [X86, ARM].iter().zip(first.iter().zip(&second)) {
        assert!(one == two, "{target}: the two builds differ");
    }
}

#[test]
fn a_linker_of_your_own_keeps_the_toolchains_musl_objects() {
    // C code on a cross target would link with zig (without the toolchain's self-contained
    // musl objects); your own linker is kept, and so are those objects it needs.
    let (_guard, dir) = copy_fixture("with-c");
    let rust = airlock::compile::toolchain::RustToolchain::probe(&dir).unwrap();
    let Some(lld) = rust.rust_lld() else {
        skip_or_fail("the toolchain has no rust-lld");
        return;
    };
    let (stdout, stderr) = run_expect(
        airlock()
            .current_dir(&dir)
            .env("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER", &lld)
            .args(["build", "-v", "--format", "json", "--target", ARM]),
        0,
    );
    assert!(
        stderr.contains(&format!("keeping your linker for {ARM}")),
        "{stderr}"
    );
    assert!(
        stderr.contains("AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS=-Ctarget-feature=+crt-static -Clink-self-contained=yes"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER="),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["binaries"][0]["elf"]["linkage"], "static");
    let binary = dir.join("target/airlock").join(ARM).join("with-c");
    if let Some(out) = run_binary(ARM, &binary, &["own"]) {
        assert_eq!(
            out,
            format!(
                "with-c 0.2.0 on aarch64: adler32(own)={:08x}\n",
                adler32(b"own")
            )
        );
    }
}

#[test]
fn user_rustflags_survive_and_still_build_static() {
    // RUSTFLAGS would make cargo ignore airlock's per-target flags: airlock folds it into
    // CARGO_TARGET_<T>_RUSTFLAGS. -Cstrip=symbols is visible in the result.
    let (_guard, dir) = copy_fixture("hello");
    let report = run_json(
        airlock()
            .current_dir(&dir)
            .env("RUSTFLAGS", "-Cstrip=symbols")
            .args(["build", "--format", "json", "--target", X86]),
    );
    assert_eq!(report["binaries"][0]["elf"]["stripped"], true);
    assert_ne!(report["binaries"][0]["elf"]["linkage"], "dynamic");

    // build.rustflags from the project's cargo config: cargo ignores it once a target
    // variable is set, so airlock carries it over.
    let (_guard, dir) = copy_fixture("hello");
    std::fs::create_dir_all(dir.join(".cargo")).unwrap();
    std::fs::write(
        dir.join(".cargo/config.toml"),
        "[build]\nrustflags = [\"-C\", \"strip=symbols\"]\n",
    )
    .unwrap();
    let (stdout, stderr) = run_expect(
        airlock()
            .current_dir(&dir)
            .args(["build", "-v", "--format", "json", "--target", X86]),
        0,
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["binaries"][0]["elf"]["stripped"], true);
    assert!(
        stderr.contains(
            "CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS=-C strip=symbols -Ctarget-feature=+crt-static"
        ),
        "{stderr}"
    );
}

#[test]
fn bad_input_gets_clear_errors_and_exit_2() {
    let (_guard, dir) = copy_fixture("multi-bin");
    let cases: [(&[&str], &str); 4] = [
        (&["--bin", "gamma"], "no binary `gamma` in the workspace"),
        (
            &["-p", "multi-delta"],
            "package `multi-delta` is not a member",
        ),
        (
            &["-p", "multi-common"],
            "package `multi-common` has no binary targets",
        ),
        (
            &["--target", "sparc-unknown-plan9"],
            "unknown target triple `sparc-unknown-plan9`",
        ),
    ];
    for (args, says) in cases {
        let (_, stderr) = run_expect(airlock().current_dir(&dir).arg("build").args(args), 2);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let (_, stderr) = run_expect(
        airlock()
            .current_dir(&dir)
            .args(["build", "--bin", "gamma"]),
        2,
    );
    assert!(stderr.contains("binaries: alpha, beta"), "{stderr}");

    // A workspace with only a library.
    let lib = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(lib.path().join("src")).unwrap();
    std::fs::write(
        lib.path().join("Cargo.toml"),
        "[package]\nname = \"only-lib\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(lib.path().join("src/lib.rs"), "").unwrap();
    let (_, stderr) = run_expect(airlock().current_dir(lib.path()).arg("build"), 2);
    assert!(stderr.contains("has no binary targets"), "{stderr}");
    assert!(!lib.path().join("target/airlock").exists());
}

#[test]
fn missing_toolchain_pieces_are_exit_3_with_the_install_command() {
    let (_guard, dir) = copy_fixture("with-c");
    let (_bin, path) = path_without_zig();
    let (stdout, stderr) = run_expect(
        airlock()
            .current_dir(&dir)
            .env("PATH", &path)
            .args(["build", "--target", ARM]),
        3,
    );
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!("{ARM}: zig is missing")),
        "{stderr}"
    );
    assert!(
        stderr.contains("python3 -m pip install ziglang"),
        "{stderr}"
    );
    assert!(!stderr.contains("linking with"), "cargo ran: {stderr}");
    assert!(!dir.join("target").exists(), "cargo ran");

    // Without C code, zig is not needed: pure Rust cross-links with rust-lld alone.
    let (_guard, hello) = copy_fixture("hello");
    let report = run_json(
        airlock()
            .current_dir(&hello)
            .env("PATH", &path)
            .args(["build", "--format", "json", "--target", ARM]),
    );
    assert_eq!(report["binaries"][0]["elf"]["arch"], "aarch64");
    assert_ne!(report["binaries"][0]["elf"]["linkage"], "dynamic");

    // A target rustc knows but that is not installed, on an architecture airlock cannot
    // build a standard library for.
    let (_, stderr) = run_expect(
        airlock()
            .current_dir(&dir)
            .args(["build", "--target", "s390x-unknown-linux-musl"]),
        3,
    );
    assert!(
        stderr.contains("s390x-unknown-linux-musl: the s390x-unknown-linux-musl standard library (rustup target) is missing"),
        "{stderr}"
    );
    assert!(
        stderr.contains("install it with `rustup target add s390x-unknown-linux-musl`"),
        "{stderr}"
    );
    assert!(!dir.join("target").exists(), "cargo ran");

    // One airlock could build from rust-src, on a toolchain without rust-src either: both
    // ways out are named, and cargo never runs.
    let (_rustc_guard, rustc) = rustc_with_bare_sysroot(false);
    let (_, stderr) = run_expect(
        airlock().current_dir(&dir).env("RUSTC", &rustc).args([
            "build",
            "--target",
            "riscv64gc-unknown-linux-musl",
        ]),
        3,
    );
    assert!(
        stderr.contains(
            "riscv64gc-unknown-linux-musl: the riscv64gc-unknown-linux-musl standard library \
             (no rustup target, and no rust-src to build it from) is missing"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "`rustup target add riscv64gc-unknown-linux-musl (or, where rustup has no prebuilt \
             std for it: rustup component add rust-src)`"
        ),
        "{stderr}"
    );
    assert!(!dir.join("target").exists(), "cargo ran");

    // With rust-src, std is built from it, and zig must link even pure Rust.
    let (_rustc_guard, rustc) = rustc_with_bare_sysroot(true);
    let (_, stderr) = run_expect(
        airlock()
            .current_dir(&hello)
            .env("RUSTC", &rustc)
            .env("PATH", &path)
            .args(["build", "--target", "riscv64gc-unknown-linux-musl"]),
        3,
    );
    assert!(
        stderr.contains(
            "riscv64gc-unknown-linux-musl: zig is missing (needed for linking \
             riscv64gc-unknown-linux-musl: its standard library is built from source, and zig \
             supplies the musl C runtime, libc and libunwind)"
        ),
        "{stderr}"
    );
    assert!(
        !hello.join("target/riscv64gc-unknown-linux-musl").exists(),
        "cargo ran"
    );
}

#[test]
fn zig_is_looked_for_only_when_the_build_compiles_cpp_and_again_each_build() {
    let (Some(_), Some(python3)) = (require_tool("musl-gcc"), require_tool("python3")) else {
        return;
    };
    if airlock::compile::toolchain::Zig::find().is_none() {
        skip_or_fail("zig (python3 -m ziglang) is not installed");
        return;
    }
    if airlock::process::find_on_path("zig").is_some() {
        // The shims below stand for `python3 -m ziglang`; a zig on PATH would come first.
        skip_or_fail("a `zig` on PATH hides `python3 -m ziglang` from this test");
        return;
    }
    let shims = tempfile::tempdir().unwrap();
    let python_log = shims.path().join("python3.log");
    logging_shim(
        shims.path(),
        "python3",
        &format!("'{}'", python3.display()),
        &python_log,
    );
    let path = path_with_first(shims.path());

    // C code that musl-gcc compiles: zig is never started (it used to cost a
    // `python3 -m ziglang version` per build, 0.1 s through pyenv).
    let (_guard, with_c) = copy_fixture("with-c");
    let report = run_json(
        airlock()
            .current_dir(&with_c)
            .env("PATH", &path)
            .args(["build", "--format", "json", "--target", X86]),
    );
    assert_eq!(report["problems"], serde_json::json!([]));
    assert_eq!(logged(&python_log), Vec::<String>::new());
    // Its C++ compiler and C++ links are zig's launcher, which looks for zig when run.
    let toolchain = with_c.join("target/airlock/toolchain").join(X86);
    let cxx = std::fs::read_to_string(toolchain.join("c++")).unwrap();
    assert!(
        cxx.contains("exec \"${0%/*}/zig\" 'c++' '-target' 'x86_64-linux-musl'"),
        "{cxx}"
    );
    assert!(!toolchain.join("zig.found").exists());

    // C++: the first C++ compile looks for zig once for the whole build, then every compile
    // and the link that asks for libc++ run it.
    let (_guard, with_cpp) = copy_fixture("with-cpp");
    let build_cpp = || {
        run_json(
            airlock()
                .current_dir(&with_cpp)
                .env("PATH", &path)
                .args(["build", "--format", "json", "--target", X86]),
        )
    };
    let report = build_cpp();
    assert_eq!(report["problems"], serde_json::json!([]));
    let calls = logged(&python_log);
    let lookups = calls.iter().filter(|c| *c == "-m ziglang version").count();
    assert_eq!(lookups, 1, "{calls:?}");
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("-m ziglang c++ -target x86_64-linux-musl")),
        "{calls:?}"
    );
    let toolchain = with_cpp.join("target/airlock/toolchain").join(X86);
    assert_eq!(
        std::fs::read_to_string(toolchain.join("zig.found")).unwrap(),
        "python3\n"
    );
    let binary = Path::new(report["binaries"][0]["path"].as_str().unwrap());
    assert!(
        run_binary(X86, binary, &[])
            .unwrap()
            .starts_with("with-cpp 0.1.0")
    );

    // What one build found never outlives it: a zig that appears before the next build is
    // the one that build uses.
    let zig_log = shims.path().join("zig.log");
    logging_shim(
        shims.path(),
        "zig",
        &format!("'{}' -m ziglang", python3.display()),
        &zig_log,
    );
    let source = with_cpp.join("cppsrc/words.cpp");
    let mut text = std::fs::read_to_string(&source).unwrap();
    text.push_str("// changed\n");
    std::fs::write(&source, text).unwrap();
    assert_eq!(build_cpp()["problems"], serde_json::json!([]));
    let calls = logged(&zig_log);
    assert!(calls.iter().any(|c| c == "version"), "{calls:?}");
    assert!(
        calls.iter().any(|c| c.starts_with("c++ -target")),
        "{calls:?}"
    );
    assert_eq!(
        std::fs::read_to_string(toolchain.join("zig.found")).unwrap(),
        "zig\n"
    );
}

#[test]
fn one_resolve_and_rustcs_answers_for_host_and_target_kept_for_the_build() {
    let shims = tempfile::tempdir().unwrap();
    let cargo_log = shims.path().join("cargo.log");
    let rustc_log = shims.path().join("rustc.log");
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let real_rustc = airlock::process::find_on_path("rustc").unwrap();
    let cargo = logging_shim(shims.path(), "cargo", &format!("'{cargo_bin}'"), &cargo_log);
    let rustc = logging_shim(
        shims.path(),
        "rustc",
        &format!("'{}'", real_rustc.display()),
        &rustc_log,
    );
    let (_guard, hello) = copy_fixture("hello");
    let build = |args: &[&str]| {
        std::fs::remove_file(&cargo_log).ok();
        std::fs::remove_file(&rustc_log).ok();
        let report = run_json(
            airlock()
                .current_dir(&hello)
                .env("CARGO", &cargo)
                .env("RUSTC", &rustc)
                .args(["build", "--format", "json", "--target", X86])
                .args(args),
        );
        assert_eq!(report["problems"], serde_json::json!([]));
        let metadata = logged(&cargo_log)
            .into_iter()
            .filter(|c| c.starts_with("metadata"))
            .collect::<Vec<_>>();
        (metadata, logged(&rustc_log))
    };

    // The resolve for the target also says where the workspace is: one resolve. Beside it,
    // `--no-deps` finds the target directory and creates it, so cargo keeps rustc's answers
    // there: on this cold target directory, `cargo build` asks rustc about the host no
    // more (it did, a second time, when only the build created the directory).
    let (metadata, rustc_calls) = build(&[]);
    let resolves: Vec<&String> = metadata
        .iter()
        .filter(|c| !c.contains("--no-deps"))
        .collect();
    assert_eq!(resolves.len(), 1, "{metadata:?}");
    assert!(
        resolves[0].contains(&format!("--filter-platform {X86}")),
        "{metadata:?}"
    );
    let host_probes = rustc_calls
        .iter()
        .filter(|c| c.starts_with("- --crate-name ___") && !c.contains("--target"))
        .count();
    assert_eq!(host_probes, 1, "{rustc_calls:?}");
    // The resolve ran with the build's target flags, so the build finds cargo's answer for the
    // target kept under the same key: asked once (it was asked twice when the resolve ran
    // without them).
    let target_probes = rustc_calls
        .iter()
        .filter(|c| c.starts_with("- --crate-name ___") && c.contains(&format!("--target {X86}")))
        .collect::<Vec<_>>();
    assert_eq!(target_probes.len(), 1, "{rustc_calls:?}");
    assert!(
        target_probes[0].contains("-Ctarget-feature=+crt-static"),
        "{target_probes:?}"
    );
    assert!(hello.join("target/.rustc_info.json").is_file());
    assert_eq!(metadata.len(), 2, "{metadata:?}");
    // Warm, the target directory is there: the resolve alone.
    let (metadata, _) = build(&[]);
    assert_eq!(metadata.len(), 1, "{metadata:?}");
    assert!(
        metadata[0].contains(&format!("--filter-platform {X86}")),
        "{metadata:?}"
    );
    // The sysroot and the target list in one run (cargo's own probes follow in the log).
    let printed = rustc_calls
        .iter()
        .filter(|c| c.starts_with("--print"))
        .collect::<Vec<_>>();
    assert_eq!(
        printed,
        ["--print sysroot --print target-list"],
        "{rustc_calls:?}"
    );

    // Feature flags resolve differently from a member's manifest than from the root's: the
    // workspace is found first, as before.
    let (metadata, _) = build(&["--no-default-features"]);
    assert_eq!(metadata.len(), 2, "{metadata:?}");
    assert!(metadata[0].contains("--no-deps"), "{metadata:?}");
}

#[test]
fn musl_gcc_runs_without_a_shell_in_front_with_the_prefix_maps_first() {
    let Some(musl_gcc) = require_tool("musl-gcc") else {
        return;
    };
    let shims = tempfile::tempdir().unwrap();
    let log = shims.path().join("musl-gcc.log");
    let shim = logging_shim(
        shims.path(),
        "musl-gcc",
        &format!("'{}'", musl_gcc.display()),
        &log,
    );
    let path = path_with_first(shims.path());
    let (_guard, with_c) = copy_fixture("with-c");
    let (stdout, stderr) = run_expect(
        airlock()
            .current_dir(&with_c)
            .env("PATH", &path)
            .args(["build", "-v", "--format", "json", "--target", X86]),
        0,
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["problems"], serde_json::json!([]));
    // cc-rs gets musl-gcc itself, the maps as its first words: no `sh` script in between,
    // and none written.
    let root_map = format!("-ffile-prefix-map={}=/build", with_c.display());
    let cc = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("CC_x86_64_unknown_linux_musl="))
        .unwrap_or_else(|| panic!("{stderr}"));
    assert!(
        cc.starts_with(&format!("{} {root_map} ", shim.display())),
        "{cc}"
    );
    let toolchain = with_c.join("target/airlock/toolchain").join(X86);
    assert!(!toolchain.join("cc").exists());
    // cc-rs split the value: every call has the maps first but its compiler-family probe
    // (`-E` of a file of its own), which it runs with no flags at all.
    let calls = logged(&log);
    assert!(
        calls.iter().any(|c| c.contains("csrc/checksum.c")),
        "{calls:?}"
    );
    for call in calls
        .iter()
        .filter(|c| !c.contains("detect_compiler_family"))
    {
        assert!(call.starts_with(&format!("{root_map} ")), "{calls:?}");
    }
}

#[test]
fn rustcs_answers_are_kept_until_the_toolchain_or_rustc_changes() {
    let real_rustc = {
        let out = Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()
            .unwrap();
        let sysroot = String::from_utf8(out.stdout).unwrap();
        Path::new(sysroot.trim()).join("bin/rustc")
    };
    // A rustup home of two toolchains (only their `bin/rustc` files matter to the key) and a
    // RUSTC that logs airlock's and cargo's calls, as rustup's environment would have it.
    let home = tempfile::tempdir().unwrap();
    for toolchain in ["one", "two"] {
        let bin = home.path().join("toolchains").join(toolchain).join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("rustc"), "a toolchain's rustc\n").unwrap();
    }
    let log = home.path().join("rustc.log");
    let real = format!("'{}'", real_rustc.display());
    let rustc = logging_shim(home.path(), "rustc", &real, &log);
    let (_guard, hello) = copy_fixture("hello");
    let cache = tempfile::tempdir().unwrap();
    let probes = |toolchain: &str, rustc: &Path| {
        std::fs::remove_file(&log).ok();
        let report = run_json(
            airlock()
                .current_dir(&hello)
                .env("XDG_CACHE_HOME", cache.path())
                .env("CARGO", env!("CARGO"))
                .env("RUSTUP_HOME", home.path())
                .env("RUSTUP_TOOLCHAIN", toolchain)
                .env("RUSTC", rustc)
                .args(["build", "--format", "json", "--target", X86]),
        );
        assert_eq!(report["problems"], serde_json::json!([]));
        logged(&log)
            .into_iter()
            .filter(|c| c == "--print sysroot --print target-list")
            .count()
    };
    // airlock's second question (cargo asks `rustc -vV` too, never this).
    assert_eq!(probes("one", &rustc), 1);
    assert_eq!(
        probes("one", &rustc),
        0,
        "asked again for the same toolchain"
    );
    // Kept outside the target directory: a removed one does not cost the probes again.
    let answers = cache.path().join("airlock/rustc");
    let kept: Vec<_> = std::fs::read_dir(&answers)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    std::fs::remove_dir_all(hello.join("target")).unwrap();
    assert_eq!(
        probes("one", &rustc),
        0,
        "asked again after the target directory went"
    );

    // The toolchain updated in place: asked again, then kept.
    std::fs::write(
        home.path().join("toolchains/one/bin/rustc"),
        "an updated rustc\n",
    )
    .unwrap();
    assert_eq!(probes("one", &rustc), 1);
    assert_eq!(probes("one", &rustc), 0);
    // Another toolchain, another RUSTC: asked again each.
    assert_eq!(probes("two", &rustc), 1);
    let other = logging_shim(&hello, "rustc-too", &real, &log);
    assert_eq!(probes("two", &other), 1);
    // A RUSTC that is gone: its answers go when the next ones are written.
    let gone = logging_shim(home.path(), "rustc-gone", &real, &log);
    assert_eq!(probes("two", &gone), 1);
    let files = || std::fs::read_dir(&answers).unwrap().count();
    let before = files();
    std::fs::remove_file(&gone).unwrap();
    std::fs::write(
        home.path().join("toolchains/two/bin/rustc"),
        "an updated rustc\n",
    )
    .unwrap();
    assert_eq!(probes("two", &other), 1);
    assert_eq!(files(), before, "one written, the gone RUSTC's removed");
    let gone_named = std::fs::read_dir(&answers).unwrap().any(|entry| {
        std::fs::read_to_string(entry.unwrap().path())
            .unwrap()
            .contains("rustc-gone")
    });
    assert!(!gone_named);
    // A cache that is not airlock's JSON is asked past, and rewritten.
    for entry in std::fs::read_dir(&answers).unwrap() {
        std::fs::write(entry.unwrap().path(), "not json").unwrap();
    }
    assert_eq!(probes("two", &other), 1);
    assert_eq!(probes("two", &other), 0);
}

#[test]
fn source_date_is_the_workspace_roots_last_commit_from_a_member_in_its_own_repository() {
    let Some(git) = require_tool("git") else {
        return;
    };
    let (_guard, root) = copy_fixture("multi-bin");
    let commit = |dir: &Path, epoch: u64| {
        let date = format!("@{epoch} +0000");
        for args in [
            &["init", "-q"][..],
            &[
                "-c",
                "user.name=airlock",
                "-c",
                "user.email=airlock@example.invalid",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                "test",
            ][..],
        ] {
            let status = Command::new(&git)
                .current_dir(dir)
                .args(args)
                .env("GIT_AUTHOR_DATE", &date)
                .env("GIT_COMMITTER_DATE", &date)
                .status()
                .unwrap();
            assert!(status.success());
        }
    };
    commit(&root, 1_000_000_000);
    // A member that is its own git repository (a submodule, say): git asked in its directory
    // (where the build guesses the root is, to ask while cargo resolves) names another date.
    commit(&root.join("alpha"), 2_000_000_000);
    for (cwd, manifest) in [
        (&root, Some("alpha/Cargo.toml")),
        (&root.join("alpha"), None),
    ] {
        let mut cmd = airlock();
        cmd.current_dir(cwd).env_remove("SOURCE_DATE_EPOCH").args([
            "build",
            "--format",
            "json",
            "-p",
            "multi-alpha",
            "--target",
            X86,
        ]);
        if let Some(manifest) = manifest {
            cmd.args(["--manifest-path", manifest]);
        }
        let report = run_json(&mut cmd);
        assert_eq!(report["source_date_epoch"], 1_000_000_000, "{manifest:?}");
    }
}

#[test]
fn a_standard_library_from_source_finds_zig_without_c_code() {
    if airlock::compile::toolchain::Zig::find().is_none() {
        skip_or_fail("zig (python3 -m ziglang) is not installed");
        return;
    }
    // rustup has no riscv64 std here, rust-src has: zig must link even pure Rust. zig used
    // to be looked for only when the build compiled C code, so this was refused as "zig is
    // missing" (exit 3) with zig installed. cargo itself is a stand-in that stops at `build`
    // (building std takes minutes): what matters is that airlock got that far, with zig.
    let (_rustc_guard, rustc) = rustc_with_bare_sysroot(true);
    let shims = tempfile::tempdir().unwrap();
    let log = shims.path().join("cargo.log");
    let cargo = shims.path().join("cargo");
    std::fs::write(
        &cargo,
        format!(
            "#!/bin/sh\nif [ \"$1\" = build ]; then\n  echo \"$*\" >> '{}'\n  exit 101\nfi\n\
             exec '{}' \"$@\"\n",
            log.display(),
            env!("CARGO")
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (_guard, hello) = copy_fixture("hello");
    let (_, stderr) = run_expect(
        airlock()
            .current_dir(&hello)
            .env("RUSTC", &rustc)
            .env("CARGO", &cargo)
            .args(["build", "--target", "riscv64gc-unknown-linux-musl"]),
        2,
    );
    assert!(!stderr.contains("zig is missing"), "{stderr}");
    assert!(stderr.contains("`cargo build` failed"), "{stderr}");
    let builds = logged(&log);
    assert_eq!(builds.len(), 1, "{builds:?}");
    assert!(builds[0].contains("-Zbuild-std"), "{builds:?}");
    let linker = std::fs::read_to_string(
        hello.join("target/airlock/toolchain/riscv64gc-unknown-linux-musl/linker"),
    )
    .unwrap();
    assert!(
        linker.contains("'cc' '-target' 'riscv64-linux-musl'"),
        "{linker}"
    );
}

/// A large binary is copied, given its dependency list and checked without being held in
/// memory: the list is appended as the file streams and the check reads its ELF headers. The
/// rebuild (cargo has nothing to do) peaks under 48 MiB for a 96 MiB binary; airlock read it
/// whole and rewrote it in memory before (201 MiB here, 419 MiB for a 201 MiB binary).
#[test]
fn a_large_binary_is_embedded_and_checked_in_bounded_memory() {
    let Some(time) = require_tool("time") else {
        return;
    };
    const BLOB: usize = 96 << 20;
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("big");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(
        project.join("Cargo.toml"),
        "[package]\nname = \"big\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
    )
    .unwrap();
    // Bytes that differ (rustc stores them as they are; the loader maps them).
    let blob: Vec<u8> = (0..BLOB as u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(project.join("blob.bin"), &blob).unwrap();
    std::fs::write(
        project.join("src/main.rs"),
        "static BLOB: &[u8] = include_bytes!(\"../blob.bin\");\n\
         fn main() { println!(\"{} {}\", BLOB.len(), BLOB[std::env::args().count() << 20]); }\n",
    )
    .unwrap();
    let build = || {
        let mut cmd = airlock();
        cmd.args([
            "build",
            "--format",
            "json",
            "--target",
            X86,
            "--manifest-path",
        ])
        .arg(project.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", dir.path().join("target"));
        cmd
    };
    run_json(&mut build());
    let (out, _, peak_kib) = run_under_gnu_time(&time, &build(), 0);
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let elf = &report["binaries"][0]["elf"];
    assert_eq!(elf["linkage"], "static-pie", "{elf}");
    assert_eq!(elf["dependencies"]["status"], "present", "{elf}");
    let path = report["binaries"][0]["path"].as_str().unwrap();
    let size = std::fs::metadata(path).unwrap().len();
    assert!(size > BLOB as u64, "{size}");
    assert_eq!(elf["size"], size);
    // The appended binary still runs, and reads its data where the loader mapped it.
    let ran = run_binary(X86, Path::new(path), &[]).unwrap();
    assert_eq!(ran, format!("{BLOB} {}\n", blob[1 << 20]));
    assert!(
        peak_kib < 48 << 10,
        "peak {peak_kib} KiB for a {} MiB binary",
        size >> 20
    );
}
