//! `cargo airlock vendor`: against `cargo vendor`, offline builds from the result with an
//! empty `CARGO_HOME`, platform stubs, bundles, and hostile `.crate` files built here.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::support::*;

#[test]
fn vendors_like_cargo_vendor_and_builds_offline() {
    let Some(p) = project() else { return };
    let report = run_json(
        p.airlock()
            .args(["vendor", "--write-config", "--format", "json"]),
    );
    assert_eq!(report["crates"], 9, "{report:#}");
    assert_eq!(report["stubs"], 0);
    assert!(report["files"].as_u64().unwrap() > 100);
    let gitdep = report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "airlock-gitdep")
        .unwrap();
    assert_eq!(gitdep["kind"], "git");
    assert!(p.dir.join("vendor/cfg-if/src/lib.rs").is_file());
    assert!(p.dir.join("vendor/cfg-if-0.1.10/src/lib.rs").is_file());
    assert!(p.dir.join("vendor/anyhow/build.rs").is_file());
    assert!(p.dir.join("vendor/airlock-gitdep/src/lib.rs").is_file());
    assert!(
        p.dir
            .join("vendor/unicode-ident/tests/fst/mod.rs")
            .is_file()
    );
    assert!(
        !p.dir
            .join("vendor/unicode-ident/tests/fst/.gitignore")
            .exists()
    );
    let config = std::fs::read_to_string(p.dir.join(".cargo/config.toml")).unwrap();
    assert!(config.contains("directory = \"vendor\""), "{config}");

    // The same files, byte for byte, as `cargo vendor` (it ignores our source replacement).
    let theirs = p.temp.path().join("cargo-vendor");
    run_expect(
        Command::new(env!("CARGO"))
            .args(["vendor", "--locked", "--quiet"])
            .arg(&theirs)
            .current_dir(&p.dir),
        0,
    );
    let (ours, theirs) = (tree(&p.dir.join("vendor")), tree(&theirs));
    assert_eq!(
        ours.keys().collect::<Vec<_>>(),
        theirs.keys().collect::<Vec<_>>()
    );
    assert_eq!(ours, theirs, "file contents differ from cargo vendor's");

    // The git repository is not needed any more: the build is offline and from vendor/.
    std::fs::remove_dir_all(&p.git_repo).unwrap();
    offline_build_and_run(&p, "full");

    let verified = run_json(
        p.airlock()
            .args(["verify", "--vendor", "vendor", "--format", "json"]),
    );
    assert_eq!(verified["ok"], true, "{verified:#}");
    assert_eq!(verified["checks"][0]["items"], 9);
    assert_eq!(verified["checks"][0]["compared_with_crate"], 8);
}

fn host_triple() -> String {
    let (out, _) = run_expect(Command::new("rustc").arg("-vV"), 0);
    out.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .unwrap()
        .to_owned()
}

#[test]
fn platform_filter_leaves_windows_crates_out_and_still_builds() {
    let Some(p) = project() else { return };
    let host = host_triple();
    let report = run_json(p.airlock().args([
        "vendor",
        "--platform",
        &host,
        "--write-config",
        "--format",
        "json",
    ]));
    let stubs: Vec<&str> = report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["stub"] == true)
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        stubs,
        ["winapi-util", "windows-link", "windows-sys"],
        "{report:#}"
    );
    assert!(
        report["bytes_left_out"].as_u64().unwrap() > 1 << 20,
        "{report:#}"
    );
    let windows_sys: Vec<String> = tree(&p.dir.join("vendor/windows-sys"))
        .into_keys()
        .collect();
    assert_eq!(
        windows_sys,
        [".cargo-checksum.json", "Cargo.toml", "src/lib.rs"]
    );
    offline_build_and_run(&p, "linux");
    let verified = run_json(
        p.airlock()
            .args(["verify", "--vendor", "vendor", "--format", "json"]),
    );
    assert_eq!(verified["ok"], true, "{verified:#}");
}

#[test]
fn bundle_is_deterministic_and_vendors_with_no_network_and_no_cargo_home() {
    let Some(p) = project() else { return };
    let report =
        run_json(
            p.airlock()
                .args(["vendor", "--bundle", "deps.tar.zst", "--format", "json"]),
        );
    assert_eq!(report["crates"], 9, "{report:#}");
    run_expect(
        p.airlock()
            .args(["vendor", "--bundle", "again.tar.zst", "-q"]),
        0,
    );
    let first = std::fs::read(p.dir.join("deps.tar.zst")).unwrap();
    assert_eq!(first, std::fs::read(p.dir.join("again.tar.zst")).unwrap());
    assert_eq!(
        report["bundle"]["sha256"],
        format!("sha256:{}", hex::encode(Sha256::digest(&first)))
    );

    // Inside the air gap: a fresh copy of the project, no cargo cache, no git repository.
    let inside = Project {
        dir: p.temp.path().join("inside/vendoring"),
        temp: tempfile::tempdir().unwrap(),
        git_repo: p.git_repo.clone(),
    };
    copy_dir(&p.dir, &inside.dir);
    std::fs::remove_dir_all(&p.git_repo).unwrap();
    let empty_home = inside.empty_dir("cargo-home");
    let vendored = run_json(
        inside
            .airlock()
            .env("CARGO_HOME", &empty_home)
            .args(["vendor", "--from-bundle", "deps.tar.zst", "--write-config"])
            .args(["--format", "json"]),
    );
    assert_eq!(vendored["crates"], 9, "{vendored:#}");
    assert_eq!(
        std::fs::read_dir(&empty_home).unwrap().count(),
        0,
        "vendoring from a bundle used CARGO_HOME"
    );
    offline_build_and_run(&inside, "bundle");
    let verified = run_json(
        inside
            .airlock()
            .env("CARGO_HOME", &empty_home)
            .args(["verify", "--vendor", "vendor", "--bundle", "deps.tar.zst"])
            .args(["--format", "json"]),
    );
    assert_eq!(verified["ok"], true, "{verified:#}");
    assert_eq!(
        verified["checks"][1]["compared_with_crate"], 9,
        "{verified:#}"
    );
}

/// A project depending on crafted crates, with a hand-written Cargo.lock and a fake
/// `CARGO_HOME` whose cache holds the `.crate` files.
struct Hostile {
    _temp: tempfile::TempDir,
    dir: PathBuf,
    cargo_home: PathBuf,
}

struct CraftedCrate<'a> {
    name: &'a str,
    bytes: Vec<u8>,
    /// The checksum Cargo.lock records (None: no checksum line).
    lock_checksum: Option<String>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A `.crate` (gzipped tar) with raw entries: (path, kind, contents); paths are written
/// unchecked so hostile ones survive.
fn crate_file(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (path, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(*kind);
        h.set_size(if *kind == tar::EntryType::Regular {
            data.len() as u64
        } else {
            0
        });
        h.set_mode(0o644);
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        if *kind == tar::EntryType::Symlink {
            h.set_link_name("/etc/passwd").unwrap();
        }
        h.set_cksum();
        builder.append(&h, *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

fn good_crate(name: &str) -> Vec<u8> {
    let manifest =
        format!("[package]\nname = \"{name}\"\nversion = \"1.0.0\"\nedition = \"2021\"\n");
    crate_file(&[
        (
            &format!("{name}-1.0.0/Cargo.toml"),
            tar::EntryType::Regular,
            manifest.as_bytes(),
        ),
        (
            &format!("{name}-1.0.0/src/lib.rs"),
            tar::EntryType::Regular,
            b"pub fn f() {}\n",
        ),
    ])
}

fn hostile_project(crates: &[CraftedCrate<'_>]) -> Hostile {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("hostile");
    let cargo_home = temp.path().join("cargo-home");
    let cache = cargo_home.join("registry/cache/index.crates.io-0123456789abcdef");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
    let mut manifest =
        "[package]\nname = \"hostile\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n\n[dependencies]\n"
            .to_owned();
    let mut lock =
        "version = 4\n\n[[package]]\nname = \"hostile\"\nversion = \"0.1.0\"\ndependencies = [\n"
            .to_owned();
    for c in crates {
        manifest.push_str(&format!("{} = \"=1.0.0\"\n", c.name));
        lock.push_str(&format!(" \"{}\",\n", c.name));
    }
    lock.push_str("]\n");
    for c in crates {
        lock.push_str(&format!(
            "\n[[package]]\nname = \"{}\"\nversion = \"1.0.0\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
            c.name
        ));
        if let Some(sum) = &c.lock_checksum {
            lock.push_str(&format!("checksum = \"{sum}\"\n"));
        }
        std::fs::write(cache.join(format!("{}-1.0.0.crate", c.name)), &c.bytes).unwrap();
    }
    std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
    std::fs::write(dir.join("Cargo.lock"), lock).unwrap();
    // A previous vendor directory that a failed run must leave exactly as it is.
    std::fs::create_dir_all(dir.join("vendor/previous")).unwrap();
    std::fs::write(dir.join("vendor/previous/marker"), "keep me").unwrap();
    Hostile {
        _temp: temp,
        dir,
        cargo_home,
    }
}

impl Hostile {
    fn vendor(&self, code: i32) -> String {
        let (_, stderr) = run_expect(
            airlock()
                .current_dir(&self.dir)
                .env("CARGO_HOME", &self.cargo_home)
                .args(["vendor", "--offline"]),
            code,
        );
        stderr
    }

    fn assert_previous_vendor_untouched(&self) {
        assert_eq!(
            tree(&self.dir.join("vendor"))
                .into_keys()
                .collect::<Vec<_>>(),
            ["previous/marker"]
        );
        let leftovers: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
    }
}

#[test]
fn checksum_mismatch_and_missing_checksum_fail_before_extraction() {
    let good = good_crate("aaa-good");
    let evil = good_crate("zzz-evil");
    let tampered = {
        let mut t = evil.clone();
        let n = t.len();
        t[n - 10] ^= 0xff;
        t
    };
    let truncated = evil[..evil.len() / 2].to_vec();
    let h = hostile_project(&[
        CraftedCrate {
            name: "aaa-good",
            lock_checksum: Some(sha256_hex(&good)),
            bytes: good.clone(),
        },
        CraftedCrate {
            name: "mmm-truncated",
            lock_checksum: Some(sha256_hex(&good_crate("mmm-truncated"))),
            bytes: truncated.clone(),
        },
        CraftedCrate {
            name: "zzz-evil",
            lock_checksum: Some(sha256_hex(&evil)),
            bytes: tampered.clone(),
        },
    ]);
    let stderr = h.vendor(1);
    assert!(stderr.contains("zzz-evil v1.0.0"), "{stderr}");
    assert!(
        stderr.contains(&format!("expected sha256:{}", sha256_hex(&evil))),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("found sha256:{}", sha256_hex(&tampered))),
        "{stderr}"
    );
    assert!(stderr.contains("mmm-truncated v1.0.0"), "{stderr}");
    assert!(stderr.contains("nothing was extracted"), "{stderr}");
    h.assert_previous_vendor_untouched();

    let h = hostile_project(&[CraftedCrate {
        name: "nosum",
        lock_checksum: None,
        bytes: good_crate("nosum"),
    }]);
    let stderr = h.vendor(1);
    assert!(stderr.contains("nosum v1.0.0"), "{stderr}");
    assert!(stderr.contains("no checksum"), "{stderr}");
    h.assert_previous_vendor_untouched();
}

#[test]
fn escaping_entries_are_refused_and_leave_the_old_vendor_dir() {
    let cases: [(&str, tar::EntryType, &str); 3] = [
        (
            "zzz-evil-1.0.0/../../escaped.rs",
            tar::EntryType::Regular,
            "contains `..`",
        ),
        (
            "/tmp/airlock-absolute.rs",
            tar::EntryType::Regular,
            "absolute",
        ),
        (
            "zzz-evil-1.0.0/src/link.rs",
            tar::EntryType::Symlink,
            "is a link",
        ),
    ];
    for (path, kind, why) in cases {
        let evil = crate_file(&[
            (
                "zzz-evil-1.0.0/Cargo.toml",
                tar::EntryType::Regular,
                b"[package]",
            ),
            (path, kind, b"pub fn pwned() {}"),
        ]);
        let good = good_crate("aaa-good");
        // The checksums match: only the extraction itself can catch these.
        let h = hostile_project(&[
            CraftedCrate {
                name: "aaa-good",
                lock_checksum: Some(sha256_hex(&good)),
                bytes: good,
            },
            CraftedCrate {
                name: "zzz-evil",
                lock_checksum: Some(sha256_hex(&evil)),
                bytes: evil,
            },
        ]);
        let stderr = h.vendor(1);
        assert!(stderr.contains("zzz-evil v1.0.0"), "{path}: {stderr}");
        assert!(
            stderr.contains(path.trim_start_matches('/')),
            "{path}: {stderr}"
        );
        assert!(stderr.contains(why), "{path}: {stderr}");
        h.assert_previous_vendor_untouched();
        assert!(!h.dir.join("escaped.rs").exists());
        assert!(!Path::new("/tmp/airlock-absolute.rs").exists());
    }
}
