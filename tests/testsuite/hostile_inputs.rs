//! Hostile inputs end to end: FIFOs, devices, symbolic links out of a layout, descriptors that
//! lie about sizes, and blobs altered in place. Every command runs under a deadline
//! ([`run_bounded`]): a hang or an unbounded read fails the test instead of hanging CI.

use std::path::{Path, PathBuf};

use airlock::Sha256Digest;

use crate::support::*;

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

#[track_caller]
fn assert_says(text: &str, says: &[&str]) {
    for s in says {
        assert!(text.contains(s), "expected `{s}` in:\n{text}");
    }
}

#[test]
fn inspect_reads_only_regular_files_and_never_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let (_, stderr) = run_bounded(airlock().args(["inspect", "/dev/zero"]), 2);
    assert_says(&stderr, &["/dev/zero is a character device"]);
    let (_, stderr) = run_bounded(airlock().arg("inspect").arg(&fifo), 2);
    assert_says(&stderr, &[&format!("{} is a FIFO", fifo.display())]);
    // A link the user typed is followed, to what it names.
    let link = dir.path().join("zero");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let (_, stderr) = run_bounded(airlock().arg("inspect").arg(&link), 2);
    assert_says(&stderr, &["zero is a character device"]);
}

/// A workspace whose `Cargo.lock` locks `evil 1.0.0`, with `vendor/evil/` for verify to read.
fn vendor_workspace(dir: &Path) -> PathBuf {
    let root = dir.join("ws");
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::create_dir_all(root.join("vendor/evil")).unwrap();
    std::fs::write(
        root.join("Cargo.toml"),
        "[package]\nname = \"ws\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(root.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(
        root.join("Cargo.lock"),
        format!(
            "version = 4\n\n[[package]]\nname = \"evil\"\nversion = \"1.0.0\"\nsource = \
             \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{}\"\n\n\
             [[package]]\nname = \"ws\"\nversion = \"0.1.0\"\ndependencies = [\"evil\"]\n",
            Sha256Digest::of(b"evil").hex()
        ),
    )
    .unwrap();
    root
}

#[test]
fn verify_vendor_refuses_fifos_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let root = vendor_workspace(dir.path());
    let verify = || {
        let mut cmd = airlock();
        cmd.current_dir(&root).args([
            "verify",
            "--no-cache",
            "--format",
            "json",
            "--vendor",
            "vendor",
        ]);
        cmd
    };
    let findings = |stdout: &str| -> String {
        let report: serde_json::Value = serde_json::from_str(stdout).unwrap();
        report["findings"].to_string()
    };

    // A package's Cargo.toml is a FIFO.
    let manifest = root.join("vendor/evil/Cargo.toml");
    mkfifo(&manifest);
    let (stdout, _) = run_bounded(&mut verify(), 1);
    assert_says(&findings(&stdout), &["Cargo.toml is a FIFO"]);

    // Its .cargo-checksum.json is.
    std::fs::remove_file(&manifest).unwrap();
    std::fs::write(
        &manifest,
        "[package]\nname = \"evil\"\nversion = \"1.0.0\"\n",
    )
    .unwrap();
    mkfifo(&root.join("vendor/evil/.cargo-checksum.json"));
    let (stdout, _) = run_bounded(&mut verify(), 1);
    assert_says(&findings(&stdout), &[".cargo-checksum.json is a FIFO"]);
}
