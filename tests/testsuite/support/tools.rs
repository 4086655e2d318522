//! Tools the tests install from crates.io with `cargo install --locked`, once, into the test
//! target directory (`target/tmp/tools`), so later runs reuse them.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use super::skip_or_fail;

/// `bin` of the crates.io crate `krate` at `version`, installed on first use. A failed install
/// (no network, no crates.io) skips the test, or fails it under `AIRLOCK_REQUIRE_TOOLS=1`.
pub fn cargo_installed_tool(krate: &str, version: &str, bin: &str) -> Option<PathBuf> {
    static INSTALLING: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALLING.lock().unwrap_or_else(|e| e.into_inner());
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tools");
    let path = root.join("bin").join(bin);
    let stamp = root.join(format!("{krate}-{version}.installed"));
    if path.is_file() && stamp.is_file() {
        return Some(path);
    }
    let output = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "install",
            "--locked",
            "--quiet",
            "--version",
            version,
            "--root",
        ])
        .arg(&root)
        .arg(krate)
        // Its own target directory: never the one the test binary is being built in.
        .env(
            "CARGO_TARGET_DIR",
            PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("tools-build"),
        )
        .env_remove("RUSTFLAGS")
        .output()
        .unwrap();
    if !output.status.success() || !path.is_file() {
        skip_or_fail(&format!(
            "`cargo install {krate}@{version}` failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        ));
        return None;
    }
    std::fs::write(&stamp, b"").unwrap();
    Some(path)
}

/// An executable `dir/name` that appends its arguments to `log` (one line per call) and runs
/// `real` with them.
pub fn logging_shim(
    dir: &std::path::Path,
    name: &str,
    real: &str,
    log: &std::path::Path,
) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec {real} \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `PATH` with `dir` searched first (where shims stand in for tools).
pub fn path_with_first(dir: &std::path::Path) -> std::ffi::OsString {
    let mut paths = vec![dir.to_path_buf()];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

/// The lines of a shim's log (none when it never ran).
pub fn logged(log: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}
