//! Helpers every test module uses: the binary under test, fixtures copied to throwaway
//! directories, and the guard for tests that need external tools.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

pub mod bases;
pub mod deadline;
pub mod layouts;
pub mod memory;
pub mod project;
pub mod proxy;
pub mod registry;
pub mod runtime;
pub mod skopeo;
pub mod tools;

pub use bases::*;
pub use deadline::*;
pub use layouts::*;
pub use memory::*;
pub use project::*;
pub use proxy::*;
pub use registry::*;
pub use runtime::*;
pub use skopeo::*;
pub use tools::*;

/// The `cargo-airlock` binary built for this test run.
pub fn airlock_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cargo-airlock"))
}

/// A `Command` running `cargo-airlock` with a clean, quiet environment.
pub fn airlock() -> Command {
    let mut cmd = Command::new(airlock_bin());
    cmd.env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR");
    cmd
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// `fixtures/<name>`.
pub fn fixture_path(name: &str) -> PathBuf {
    repo_root().join("fixtures").join(name)
}

/// A copy of `fixtures/<name>` in a new temporary directory (kept alive by the returned
/// guard), so tests never write into the repository.
pub fn copy_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::Builder::new()
        .prefix(&format!("airlock-{name}-"))
        .tempdir()
        .unwrap();
    let dest = temp.path().join(name);
    copy_dir(&fixture_path(name), &dest);
    (temp, dest)
}

/// Copies a directory tree (files, directories, symlinks), skipping `target/`.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        let dest = to.join(entry.file_name());
        if kind.is_dir() {
            if entry.file_name() != "target" {
                copy_dir(&entry.path(), &dest);
            }
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).unwrap(), &dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Whether tools must be present (`AIRLOCK_REQUIRE_TOOLS=1`, set by `.ci/run`).
pub fn tools_required() -> bool {
    std::env::var_os("AIRLOCK_REQUIRE_TOOLS").is_some_and(|v| v != "0" && !v.is_empty())
}

/// Returns the path of `tool` if it is installed. When it is missing the test is skipped with
/// a printed reason, or fails when `AIRLOCK_REQUIRE_TOOLS=1` (cargo's
/// `CARGO_TEST_REQUIRE_EXTERNAL_TOOLS` is the model).
///
/// Use as `let Some(runc) = require_tool("runc") else { return };`.
pub fn require_tool(tool: &str) -> Option<PathBuf> {
    match airlock::process::find_on_path(tool) {
        Some(path) => Some(path),
        None => {
            skip_or_fail(&format!("`{tool}` is not installed"));
            None
        }
    }
}

/// Skips the current test with `reason`, or panics when tools are required.
pub fn skip_or_fail(reason: &str) {
    if tools_required() {
        panic!("AIRLOCK_REQUIRE_TOOLS is set but {reason}; run .ci/setup");
    }
    eprintln!(
        "skipped: {reason} (install it or run .ci/setup; AIRLOCK_REQUIRE_TOOLS=1 makes this fail)"
    );
}

/// Runs `cmd`, asserts it exits with `code`, and returns (stdout, stderr).
#[track_caller]
pub fn run_expect(cmd: &mut Command, code: i32) -> (String, String) {
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{cmd:?} exited with {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// Runs `cmd` expecting success and parses its stdout as JSON.
#[track_caller]
pub fn run_json(cmd: &mut Command) -> serde_json::Value {
    let (stdout, _) = run_expect(cmd, 0);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

/// A fixture built by `cargo airlock build` for one target, shared by every test of this
/// process (see [`fixture_build`]).
#[derive(Debug)]
pub struct FixtureBuild {
    /// The fixture's copy (`<dir>/Cargo.toml`); read it, never modify it.
    pub dir: PathBuf,
    /// The build's `--format json` report.
    pub report: serde_json::Value,
}

impl FixtureBuild {
    /// `target/airlock/<target>/<bin>` in the copy.
    pub fn binary(&self, target: &str, bin: &str) -> PathBuf {
        self.dir.join("target/airlock").join(target).join(bin)
    }
}

/// The shared copy of `fixtures/<name>` for this test process: refreshed from the repository
/// once per process, kept under cargo's `target/tmp` so its `target/` (and compiled
/// dependencies) carries over from one test run to the next.
pub fn shared_fixture_dir(name: &str) -> PathBuf {
    static COPIES: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("airlock-fixtures")
        .join(name);
    let mut copied = COPIES.lock().unwrap_or_else(|e| e.into_inner());
    if !copied.iter().any(|c| c == name) {
        if dir.exists() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                if entry.file_name() == "target" {
                    continue;
                }
                if entry.file_type().unwrap().is_dir() {
                    std::fs::remove_dir_all(entry.path()).unwrap();
                } else {
                    std::fs::remove_file(entry.path()).unwrap();
                }
            }
        }
        copy_dir(&fixture_path(name), &dir);
        copied.push(name.to_owned());
    }
    dir
}

/// `cargo airlock build --target <target>` on the shared copy of `fixtures/<fixture>`, run
/// once per (fixture, target) per test process; later callers wait for and reuse it.
/// Panics (failing the test) when the build fails.
pub fn fixture_build(fixture: &str, target: &str) -> &'static FixtureBuild {
    type Cell = &'static OnceLock<FixtureBuild>;
    static BUILDS: OnceLock<Mutex<HashMap<(String, String), Cell>>> = OnceLock::new();
    let cell: Cell = {
        let mut builds = BUILDS
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        *builds
            .entry((fixture.to_owned(), target.to_owned()))
            .or_insert_with(|| Box::leak(Box::new(OnceLock::new())))
    };
    cell.get_or_init(|| {
        let dir = shared_fixture_dir(fixture);
        let report = run_json(
            airlock()
                .args(["build", "--format", "json", "--manifest-path"])
                .arg(dir.join("Cargo.toml"))
                .args(["--target", target]),
        );
        FixtureBuild { dir, report }
    })
}

/// The static binary `bin` of `fixtures/<fixture>` built by `cargo airlock build` for
/// `target` (`target/airlock/<target>/<bin>` in a shared copy; see [`fixture_build`]).
pub fn static_fixture_binary(fixture: &str, bin: &str, target: &str) -> PathBuf {
    let path = fixture_build(fixture, target).binary(target, bin);
    assert!(path.is_file(), "{} was not built", path.display());
    path
}

/// A PATH with cargo and rustc (and git) but no zig, python3, musl-gcc or qemu.
pub fn path_without_zig() -> (tempfile::TempDir, std::ffi::OsString) {
    let bin = tempfile::tempdir().unwrap();
    for tool in ["cargo", "rustc", "rustup", "git"] {
        if let Some(path) = airlock::process::find_on_path(tool) {
            std::os::unix::fs::symlink(path, bin.path().join(tool)).unwrap();
        }
    }
    let path = bin.path().as_os_str().to_owned();
    (bin, path)
}

/// A `RUSTC` for airlock's own probes: the real rustc, except that `--print sysroot` (also
/// when followed by more `--print`s) names a directory with no target's standard library in
/// it, and rust-src only when `with_src`.
/// Returns the guard and the script's path.
pub fn rustc_with_bare_sysroot(with_src: bool) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let rustc = airlock::process::find_on_path("rustc").unwrap();
    let sysroot = dir.path().join("sysroot");
    std::fs::create_dir_all(&sysroot).unwrap();
    if with_src {
        let std = sysroot.join("lib/rustlib/src/rust/library/std");
        std::fs::create_dir_all(&std).unwrap();
        std::fs::write(std.join("Cargo.toml"), "[package]\nname = \"std\"\n").unwrap();
    }
    let script = dir.path().join("rustc");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --print ] && [ \"$2\" = sysroot ]; then\n  echo '{0}'\n  \
             shift 2\n  [ $# -eq 0 ] && exit 0\nfi\nexec '{1}' \"$@\"\n",
            sysroot.display(),
            rustc.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, script)
}
