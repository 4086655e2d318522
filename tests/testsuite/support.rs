//! Helpers every test module uses: the binary under test, fixtures copied to throwaway
//! directories, and the guard for tests that need external tools.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The `cargo-airlock` binary built for this test run.
pub fn airlock_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cargo-airlock"))
}

/// A `Command` running `cargo-airlock` with a clean, quiet environment.
pub fn airlock() -> Command {
    let mut cmd = Command::new(airlock_bin());
    cmd.env_remove("RUSTFLAGS").env_remove("CARGO_TARGET_DIR");
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
