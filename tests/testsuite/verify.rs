//! `cargo airlock verify`: tampered vendor directories and bundles, every difference named,
//! exit codes 0 / 1 / 2.

use std::io::Read;
use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::support::{Project, project};
use crate::support::{copy_dir, run_expect};

/// `verify` in the project with `args`, expecting `code`; returns the JSON report (or stderr
/// as a JSON string for failures without a report).
fn verify(p: &Project, args: &[&str], code: i32) -> Value {
    let (stdout, stderr) = run_expect(
        p.airlock()
            .arg("verify")
            .args(args)
            .args(["--format", "json"]),
        code,
    );
    serde_json::from_str(&stdout).unwrap_or(Value::String(stderr))
}

/// (kind, path suffix) of every finding.
fn findings(report: &Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("no findings in {report:#}"))
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                f["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn has(report: &Value, kind: &str, path_end: &str) -> bool {
    findings(report)
        .iter()
        .any(|(k, p)| k == kind && p.ends_with(path_end))
}

/// A copy of `vendor/` named `name` to tamper with.
fn copy_vendor(p: &Project, name: &str) -> String {
    copy_dir(&p.dir.join("vendor"), &p.dir.join(name));
    name.to_owned()
}

fn rewrite_checksum_entry(dir: &Path, file: &str) {
    let path = dir.join(".cargo-checksum.json");
    let mut sum: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let bytes = std::fs::read(dir.join(file)).unwrap();
    sum["files"][file] = Value::String(hex::encode(Sha256::digest(&bytes)));
    std::fs::write(&path, serde_json::to_vec(&sum).unwrap()).unwrap();
}

#[test]
fn tampered_vendor_directories_are_named_file_by_file() {
    let Some(p) = project() else { return };
    run_expect(p.airlock().args(["vendor", "-q"]), 0);
    run_expect(
        p.airlock()
            .args(["vendor", "-q", "--bundle", "deps.tar.zst"]),
        0,
    );
    let clean = verify(&p, &["--vendor", "vendor", "--no-cache"], 0);
    assert_eq!(clean["ok"], true);

    // Every kind of change at once: each is reported, not just the first.
    let v = copy_vendor(&p, "v-mixed");
    let dir = p.dir.join(&v);
    std::fs::write(dir.join("anyhow/src/lib.rs"), "// changed\n").unwrap();
    std::fs::write(dir.join("same-file/build.rs"), "fn main() {}\n").unwrap();
    std::fs::remove_file(dir.join("cfg-if/README.md")).unwrap();
    std::fs::remove_dir_all(dir.join("cfg-if-0.1.10")).unwrap();
    std::fs::create_dir_all(dir.join("rogue/src")).unwrap();
    std::fs::write(
        dir.join("rogue/Cargo.toml"),
        "[package]\nname = \"rogue\"\nversion = \"6.6.6\"\n",
    )
    .unwrap();
    let report = verify(&p, &["--vendor", &v, "--no-cache"], 1);
    assert!(
        has(&report, "file-modified", "anyhow/src/lib.rs"),
        "{report:#}"
    );
    assert!(
        has(&report, "file-added", "same-file/build.rs"),
        "{report:#}"
    );
    assert!(
        has(&report, "file-missing", "cfg-if/README.md"),
        "{report:#}"
    );
    assert!(has(&report, "missing-package", "cfg-if"), "{report:#}");
    assert!(has(&report, "unlocked-package", "rogue"), "{report:#}");
    let modified = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["kind"] == "file-modified")
        .unwrap();
    assert_eq!(
        modified["actual"],
        hex::encode(Sha256::digest(b"// changed\n"))
    );
    assert_eq!(modified["package"], "anyhow v1.0.105");
    let (human, _) = run_expect(
        p.airlock().args(["verify", "--vendor", &v, "--no-cache"]),
        1,
    );
    assert!(human.contains("5 difference(s)"), "{human}");
    assert!(
        human.contains("anyhow/src/lib.rs: sha256 differs"),
        "{human}"
    );

    // A change with a consistently recomputed .cargo-checksum.json passes cargo's own check;
    // only the pristine .crate (bundle or cargo cache) catches it.
    let v = copy_vendor(&p, "v-recomputed");
    let dir = p.dir.join(&v);
    std::fs::write(dir.join("same-file/src/lib.rs"), "pub fn pwned() {}\n").unwrap();
    rewrite_checksum_entry(&dir.join("same-file"), "src/lib.rs");
    let blind = verify(&p, &["--vendor", &v, "--no-cache"], 0);
    assert_eq!(
        blind["ok"], true,
        "without a pristine .crate nothing can tell"
    );
    let original = std::fs::read(p.dir.join("vendor/same-file/src/lib.rs")).unwrap();
    for pristine in [vec!["--bundle", "deps.tar.zst", "--no-cache"], vec![]] {
        let mut args = vec!["--vendor", v.as_str()];
        args.extend(pristine);
        let report = verify(&p, &args, 1);
        assert!(
            has(&report, "file-modified", "same-file/src/lib.rs"),
            "{report:#}"
        );
        // Both digests exact: the .crate's file and the file on disk.
        let modified = report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["kind"] == "file-modified")
            .unwrap();
        assert_eq!(modified["expected"], hex::encode(Sha256::digest(&original)));
        assert_eq!(
            modified["actual"],
            hex::encode(Sha256::digest(b"pub fn pwned() {}\n"))
        );
        assert!(
            has(
                &report,
                "checksum-file-altered",
                "same-file/.cargo-checksum.json"
            ),
            "{report:#}"
        );
    }

    // An edited Cargo.lock checksum: the vendored package no longer matches the lockfile.
    let lock_path = p.dir.join("Cargo.lock");
    let lock = std::fs::read_to_string(&lock_path).unwrap();
    let anyhow_sum = lock
        .split("name = \"anyhow\"")
        .nth(1)
        .and_then(|rest| rest.split("checksum = \"").nth(1))
        .map(|rest| rest[..64].to_owned())
        .unwrap();
    let edited = "0".repeat(64);
    std::fs::write(&lock_path, lock.replace(&anyhow_sum, &edited)).unwrap();
    let report = verify(&p, &["--vendor", "vendor"], 1);
    assert!(
        has(&report, "package-checksum", "anyhow/.cargo-checksum.json"),
        "{report:#}"
    );
    let report = verify(&p, &["--bundle", "deps.tar.zst"], 1);
    assert!(
        has(&report, "crate-checksum", "crates/anyhow-1.0.105.crate"),
        "{report:#}"
    );
    let (_, stderr) = run_expect(
        p.airlock()
            .args(["vendor", "--from-bundle", "deps.tar.zst", "v-from-bad-lock"]),
        1,
    );
    assert!(stderr.contains("anyhow v1.0.105"), "{stderr}");
    assert!(stderr.contains(&edited), "{stderr}");
    assert!(!p.dir.join("v-from-bad-lock").exists());
    std::fs::write(&lock_path, lock).unwrap();
}

/// Rewrites a bundle with `change` applied to its (path, bytes) entries.
fn rewrite_bundle(from: &Path, to: &Path, change: impl Fn(&str, &mut Vec<u8>)) {
    let mut decoder = zstd::Decoder::new(std::fs::File::open(from).unwrap()).unwrap();
    let mut tar_bytes = Vec::new();
    decoder.read_to_end(&mut tar_bytes).unwrap();
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut builder = tar::Builder::new(Vec::new());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        change(&path, &mut data);
        let mut header = entry.header().clone();
        header.set_size(data.len() as u64);
        header.set_cksum();
        builder.append(&header, data.as_slice()).unwrap();
    }
    let tar_bytes = builder.into_inner().unwrap();
    std::fs::write(to, zstd::encode_all(tar_bytes.as_slice(), 3).unwrap()).unwrap();
}

#[test]
fn tampered_and_truncated_bundles_are_refused() {
    let Some(p) = project() else { return };
    run_expect(
        p.airlock()
            .args(["vendor", "-q", "--bundle", "deps.tar.zst"]),
        0,
    );
    let clean = verify(&p, &["--bundle", "deps.tar.zst"], 0);
    assert_eq!(clean["checks"][0]["items"], 9, "{clean:#}");

    // A .crate swapped inside the bundle, manifest left as it was.
    rewrite_bundle(
        &p.dir.join("deps.tar.zst"),
        &p.dir.join("swapped.tar.zst"),
        |path, data| {
            if path.ends_with("crates/same-file-1.0.6.crate") {
                let n = data.len();
                data[n / 2] ^= 0x55;
            }
        },
    );
    let report = verify(&p, &["--bundle", "swapped.tar.zst"], 1);
    assert!(
        has(&report, "crate-checksum", "crates/same-file-1.0.6.crate"),
        "{report:#}"
    );
    let (_, stderr) = run_expect(
        p.airlock()
            .args(["vendor", "--from-bundle", "swapped.tar.zst", "v-swapped"]),
        1,
    );
    assert!(stderr.contains("same-file"), "{stderr}");
    assert!(!p.dir.join("v-swapped").exists());

    // Truncated in transit: unreadable input, exit 2, and nothing written.
    let bytes = std::fs::read(p.dir.join("deps.tar.zst")).unwrap();
    std::fs::write(p.dir.join("short.tar.zst"), &bytes[..bytes.len() * 2 / 3]).unwrap();
    let (_, stderr) = run_expect(p.airlock().args(["verify", "--bundle", "short.tar.zst"]), 2);
    assert!(
        stderr.contains("short.tar.zst is truncated or corrupt"),
        "{stderr}"
    );
    let (_, stderr) = run_expect(
        p.airlock()
            .args(["vendor", "--from-bundle", "short.tar.zst", "v-short"]),
        2,
    );
    assert!(stderr.contains("truncated or corrupt"), "{stderr}");
    assert!(!p.dir.join("v-short").exists());

    // An entry that escapes the bundle's directory.
    rewrite_bundle(
        &p.dir.join("deps.tar.zst"),
        &p.dir.join("escape.tar.zst"),
        |_, _| {},
    );
    let mut tar_bytes = Vec::new();
    zstd::Decoder::new(std::fs::File::open(p.dir.join("escape.tar.zst")).unwrap())
        .unwrap()
        .read_to_end(&mut tar_bytes)
        .unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    let name = b"airlock-bundle/../../evil.rs";
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_cksum();
    builder.append(&h, &b"evil"[..]).unwrap();
    let mut evil = builder.into_inner().unwrap();
    // Put the evil entry first, then the real archive.
    evil.truncate(512 + 512);
    evil.extend_from_slice(&tar_bytes);
    std::fs::write(
        p.dir.join("escape.tar.zst"),
        zstd::encode_all(evil.as_slice(), 3).unwrap(),
    )
    .unwrap();
    let (_, stderr) = run_expect(
        p.airlock().args(["verify", "--bundle", "escape.tar.zst"]),
        1,
    );
    assert!(stderr.contains("contains `..`"), "{stderr}");
}
