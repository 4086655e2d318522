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

/// Also: each `.crate` is read from cargo's cache once (`-v` counts the reads), though which
/// packages get a stub depends on the manifests inside them (the read that decided, then the
/// read that extracted, were two until the decision was made while extracting).
#[test]
fn platform_filter_leaves_windows_crates_out_and_still_builds() {
    let Some(p) = project() else { return };
    let host = host_triple();
    let (stdout, stderr) = run_expect(
        p.airlock().args([
            "vendor",
            "--platform",
            &host,
            "--write-config",
            "--format",
            "json",
            "-v",
        ]),
        0,
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let from_cache = report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] != "git")
        .count();
    assert!(from_cache >= 8, "{report:#}");
    assert!(
        stderr.contains(&format!(
            "read ({from_cache} .crate files from cargo's cache)"
        )),
        "{stderr}"
    );
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
    // What a stub leaves out is its `.crate` archive, counted without inflating it: the size
    // of the file in cargo's cache with the package's checksum.
    let cache = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"))
        .join("registry/cache");
    let crate_size = |package: &serde_json::Value| -> u64 {
        let file = format!(
            "{}-{}.crate",
            package["name"].as_str().unwrap(),
            package["version"].as_str().unwrap()
        );
        std::fs::read_dir(&cache)
            .unwrap()
            .map(|dir| dir.unwrap().path().join(&file))
            .filter_map(|path| std::fs::read(path).ok())
            .find(|bytes| format!("sha256:{}", sha256_hex(bytes)) == package["crate_sha256"])
            .map(|bytes| bytes.len() as u64)
            .unwrap()
    };
    let mut left_out = 0;
    for package in report["packages"].as_array().unwrap() {
        let expected = if package["stub"] == true {
            crate_size(package)
        } else {
            0
        };
        assert_eq!(package["bytes_left_out"], expected, "{package:#}");
        left_out += expected;
    }
    assert_eq!(report["bytes_left_out"], left_out, "{report:#}");
    assert!(left_out > 1 << 20, "{report:#}");
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

impl<'a> CraftedCrate<'a> {
    /// `bytes` as `name`, with `Cargo.lock` recording their own checksum.
    fn locked(name: &'a str, bytes: Vec<u8>) -> Self {
        CraftedCrate {
            name,
            lock_checksum: Some(sha256_hex(&bytes)),
            bytes,
        }
    }
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
        CraftedCrate::locked("aaa-good", good.clone()),
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

/// A bundle is written as a stream, each `.crate` proven as it is read: `.crate` files that
/// differ from `Cargo.lock` found half-way through are all named (exit 1), and an existing
/// bundle at the path is left as it was (the partial one is discarded).
#[test]
fn bundle_of_tampered_crates_names_each_and_keeps_the_old_bundle() {
    let good = good_crate("aaa-good");
    let evil = good_crate("zzz-evil");
    let mut tampered = evil.clone();
    let n = tampered.len();
    tampered[n - 10] ^= 0xff;
    let h = hostile_project(&[
        CraftedCrate::locked("aaa-good", good.clone()),
        CraftedCrate {
            name: "mmm-truncated",
            lock_checksum: Some(sha256_hex(&good_crate("mmm-truncated"))),
            bytes: good_crate("mmm-truncated")[..100].to_vec(),
        },
        CraftedCrate {
            name: "zzz-evil",
            lock_checksum: Some(sha256_hex(&evil)),
            bytes: tampered.clone(),
        },
    ]);
    let bundle = h.dir.join("deps.tar.zst");
    std::fs::write(&bundle, b"the previous bundle").unwrap();
    let (_, stderr) = run_expect(
        airlock()
            .current_dir(&h.dir)
            .env("CARGO_HOME", &h.cargo_home)
            .args(["vendor", "--offline", "--bundle", "deps.tar.zst"]),
        1,
    );
    assert!(stderr.contains("2 .crate file(s) failed"), "{stderr}");
    assert!(stderr.contains("mmm-truncated v1.0.0"), "{stderr}");
    assert!(
        stderr.contains(&format!("found sha256:{}", sha256_hex(&tampered))),
        "{stderr}"
    );
    assert!(!stderr.contains("aaa-good"), "{stderr}");
    assert_eq!(std::fs::read(&bundle).unwrap(), b"the previous bundle");
    let leftovers: Vec<_> = std::fs::read_dir(&h.dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains("deps.tar.zst") && name != "deps.tar.zst")
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Memory must not grow with the lockfile. 48 packages of 2 MiB of incompressible bytes each
/// (96 MiB of `.crate` files) go through `vendor`, `verify --vendor` (pristine `.crate` files
/// from the cache), `vendor --bundle`, `verify --bundle`, `vendor --from-bundle` and
/// `verify --vendor --bundle` (pristine `.crate` files from the bundle): no command's peak
/// resident set reaches half of what the `.crate` files add up to, so none held them all at
/// once (each reads a `.crate` when its package's turn comes, or as its pass over the bundle
/// reaches it, and drops it after).
#[test]
fn memory_stays_flat_whatever_the_number_of_crates() {
    // Enough that half of them is well above what a debug build maps and the few `.crate`
    // files each command holds at once (a worker's each, and the one a bundle pass is reading).
    const CRATES: usize = 48;
    const PAYLOAD: usize = 2 << 20;
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let names: Vec<String> = (0..CRATES).map(|i| format!("blob{i:02}")).collect();
    let crafted: Vec<CraftedCrate<'_>> = names
        .iter()
        .map(|name| {
            let mut noise = vec![0u8; PAYLOAD];
            for chunk in noise.chunks_mut(8) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
            }
            let manifest =
                format!("[package]\nname = \"{name}\"\nversion = \"1.0.0\"\nedition = \"2021\"\n");
            let bytes = crate_file(&[
                (
                    &format!("{name}-1.0.0/Cargo.toml"),
                    tar::EntryType::Regular,
                    manifest.as_bytes(),
                ),
                (
                    &format!("{name}-1.0.0/src/lib.rs"),
                    tar::EntryType::Regular,
                    b"",
                ),
                (
                    &format!("{name}-1.0.0/data.bin"),
                    tar::EntryType::Regular,
                    &noise,
                ),
            ]);
            CraftedCrate {
                name,
                lock_checksum: Some(sha256_hex(&bytes)),
                bytes,
            }
        })
        .collect();
    let total_kib: u64 = crafted.iter().map(|c| c.bytes.len() as u64).sum::<u64>() >> 10;
    let h = hostile_project(&crafted);
    drop(crafted);
    for args in [
        &["vendor", "--offline", "vendor"][..],
        &["verify", "--vendor", "vendor"][..],
        &["vendor", "--offline", "--bundle", "deps.tar.zst"][..],
        &["verify", "--bundle", "deps.tar.zst"][..],
        &["vendor", "--from-bundle", "deps.tar.zst", "from-bundle"][..],
        &[
            "verify",
            "--vendor",
            "from-bundle",
            "--bundle",
            "deps.tar.zst",
            "--no-cache",
        ][..],
    ] {
        let (code, stderr, peak_kib) = run_measuring_peak(
            airlock()
                .current_dir(&h.dir)
                .env("CARGO_HOME", &h.cargo_home)
                // Each worker holds one `.crate`: the bound assumes two, whatever the machine.
                .env("RAYON_NUM_THREADS", "2")
                .args(args),
        );
        eprintln!("{args:?}: {total_kib} KiB of .crate files, peak RSS {peak_kib} KiB");
        assert_eq!(code, 0, "{args:?}: {stderr}");
        assert!(
            peak_kib < total_kib / 2,
            "{args:?}: peak RSS {peak_kib} KiB with {total_kib} KiB of .crate files"
        );
    }
    // The pristine comparison did happen, one .crate at a time.
    let (stdout, _) = run_expect(
        airlock()
            .current_dir(&h.dir)
            .env("CARGO_HOME", &h.cargo_home)
            .args(["verify", "--vendor", "vendor", "--format", "json"]),
        0,
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["checks"][0]["compared_with_crate"], CRATES);
    assert_eq!(report["checks"][0]["items"], CRATES);
    // And from the bundle, which is all `--no-cache` leaves.
    let (stdout, _) = run_expect(
        airlock().current_dir(&h.dir).args([
            "verify",
            "--vendor",
            "from-bundle",
            "--bundle",
            "deps.tar.zst",
            "--no-cache",
            "--format",
            "json",
        ]),
        0,
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let vendor = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "vendor")
        .unwrap();
    assert_eq!(vendor["compared_with_crate"], CRATES, "{report:#}");
    assert_eq!(vendor["items"], CRATES, "{report:#}");
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
            CraftedCrate::locked("aaa-good", good),
            CraftedCrate::locked("zzz-evil", evil),
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

/// A `.crate` whose gzip trailer lies about its inflated size (ISIZE), with a `Cargo.lock`
/// checksum that matches it: the size the whole-buffer inflate is sized from is refused as
/// corrupt (exit 2), naming the crate and both sizes, and the old vendor directory stays.
#[test]
fn crate_with_a_lying_gzip_size_is_refused_and_leaves_the_old_vendor_dir() {
    let good = good_crate("aaa-good");
    let honest = good_crate("zzz-liar");
    let at = honest.len() - 4;
    let real = u32::from_le_bytes(honest[at..].try_into().unwrap());
    for claimed in [real / 2, real * 2] {
        let mut liar = honest.clone();
        liar[at..].copy_from_slice(&claimed.to_le_bytes());
        let h = hostile_project(&[
            CraftedCrate::locked("aaa-good", good.clone()),
            CraftedCrate::locked("zzz-liar", liar),
        ]);
        let stderr = h.vendor(2);
        assert!(stderr.contains("zzz-liar v1.0.0"), "{stderr}");
        assert!(stderr.contains("corrupt"), "{stderr}");
        assert!(
            stderr.contains(&format!("records {claimed} bytes")),
            "{stderr}"
        );
        h.assert_previous_vendor_untouched();
    }
}

/// `verify --vendor DIR --no-cache` in a project whose manifest is its workspace root finds
/// `Cargo.lock` beside it without starting cargo: `$CARGO` is a script that leaves a mark and
/// fails, and the check passes without a mark; then it fails on a tampered file (exit 1).
#[test]
fn verify_of_a_workspace_root_finds_the_lockfile_without_cargo() {
    let good = good_crate("aaa-good");
    let h = hostile_project(&[CraftedCrate::locked("aaa-good", good)]);
    run_expect(
        airlock()
            .current_dir(&h.dir)
            .env("CARGO_HOME", &h.cargo_home)
            .args(["vendor", "--offline", "-q", "vendored"]),
        0,
    );
    let mark = h.dir.join("cargo-ran");
    let fake_cargo = h.dir.join("fake-cargo");
    std::fs::write(
        &fake_cargo,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\nexit 101\n", mark.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &fake_cargo,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let verify = |code: i32| {
        run_expect(
            airlock()
                .current_dir(&h.dir)
                .env("CARGO", &fake_cargo)
                .args(["verify", "--vendor", "vendored", "--no-cache"]),
            code,
        )
    };
    verify(0);
    assert!(
        !mark.exists(),
        "cargo ran: {:?}",
        std::fs::read_to_string(&mark)
    );
    std::fs::write(h.dir.join("vendored/aaa-good/src/lib.rs"), "// changed\n").unwrap();
    let (stdout, _) = verify(1);
    assert!(stdout.contains("src/lib.rs"), "{stdout}");
    assert!(!mark.exists());
}

/// A `cargo` for airlock's `CARGO` variable whose `cargo metadata` first waits (long enough
/// for `vendor` to read and prove every `.crate` of a small lockfile ahead) and then replaces
/// each `(file, bytes)` in `swaps`, then runs the real cargo.
fn swapping_cargo(dir: &Path, swaps: &[(PathBuf, Vec<u8>)]) -> PathBuf {
    let mut script = "#!/bin/sh\ncase \" $* \" in\n*\" metadata \"*) sleep 2\n".to_owned();
    for (i, (file, bytes)) in swaps.iter().enumerate() {
        let replacement = dir.join(format!("replacement-{i}"));
        std::fs::write(&replacement, bytes).unwrap();
        script += &format!(
            "  cp '{}' '{}.new' && mv '{}.new' '{}'\n",
            replacement.display(),
            file.display(),
            file.display(),
            file.display()
        );
    }
    script += &format!(";;\nesac\nexec '{}' \"$@\"\n", env!("CARGO"));
    let path = dir.join("swapping-cargo");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// While `cargo metadata` runs, `vendor --offline` reads and proves the `.crate` files of the
/// `Cargo.lock` beside the workspace root's manifest, and extracts each from those very bytes:
/// `.crate` files swapped for others once they were proven (by the `cargo metadata` shim) are
/// never read again (`-v` counts one read per crate), and what is vendored is what was proven.
/// (Reading each file only at its turn, the old code met the swapped files and failed, exit 1.)
#[test]
fn crates_proven_while_cargo_metadata_runs_are_extracted_from_the_bytes_proven() {
    let one = good_crate("aaa-one");
    let two = good_crate("bbb-two");
    let h = hostile_project(&[
        CraftedCrate::locked("aaa-one", one.clone()),
        CraftedCrate::locked("bbb-two", two),
    ]);
    let cache = h
        .cargo_home
        .join("registry/cache/index.crates.io-0123456789abcdef");
    let evil = crate_file(&[
        (
            "aaa-one-1.0.0/Cargo.toml",
            tar::EntryType::Regular,
            b"[package]\nname = \"aaa-one\"\nversion = \"1.0.0\"\n",
        ),
        (
            "aaa-one-1.0.0/src/lib.rs",
            tar::EntryType::Regular,
            b"pub fn pwned() {}\n",
        ),
    ]);
    let cargo = swapping_cargo(
        h._temp.path(),
        &[
            (cache.join("aaa-one-1.0.0.crate"), evil),
            (cache.join("bbb-two-1.0.0.crate"), Vec::new()),
        ],
    );
    let (_, stderr) = run_expect(
        airlock()
            .current_dir(&h.dir)
            .env("CARGO_HOME", &h.cargo_home)
            .env("CARGO", &cargo)
            .args(["vendor", "--offline", "-v"]),
        0,
    );
    assert!(
        stderr.contains("2 .crate files read and proven while cargo metadata ran"),
        "{stderr}"
    );
    assert!(
        stderr.contains("read (2 .crate files from cargo's cache)"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(h.dir.join("vendor/aaa-one/src/lib.rs")).unwrap(),
        "pub fn f() {}\n"
    );
    assert_eq!(
        std::fs::read(cache.join("bbb-two-1.0.0.crate")).unwrap(),
        b""
    );
}

/// Run from a member that has a stale `Cargo.lock` of its own, `vendor` reads that lockfile
/// ahead (a package's manifest without `[workspace]`: most often its own root) but cargo names
/// the workspace root's: what was read ahead is thrown away (`-v` says so) and the root's
/// lockfile is vendored; the stale one, whose checksum no `.crate` has, would fail (exit 1).
#[test]
fn a_lockfile_read_ahead_that_is_not_the_workspaces_is_thrown_away() {
    let good = good_crate("aaa-one");
    let temp = tempfile::tempdir().unwrap();
    let root = temp.path().join("ws");
    let member = root.join("member");
    let cargo_home = temp.path().join("cargo-home");
    let cache = cargo_home.join("registry/cache/index.crates.io-0123456789abcdef");
    std::fs::create_dir_all(member.join("src")).unwrap();
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(cache.join("aaa-one-1.0.0.crate"), &good).unwrap();
    std::fs::write(
        root.join("Cargo.toml"),
        "[workspace]\nmembers = [\"member\"]\nresolver = \"2\"\n",
    )
    .unwrap();
    std::fs::write(
        member.join("Cargo.toml"),
        "[package]\nname = \"member\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\naaa-one = \"=1.0.0\"\n",
    )
    .unwrap();
    std::fs::write(member.join("src/main.rs"), "fn main() {}\n").unwrap();
    let lockfile = |checksum: &str| {
        format!(
            "version = 4\n\n[[package]]\nname = \"aaa-one\"\nversion = \"1.0.0\"\n\
             source = \"registry+https://github.com/rust-lang/crates.io-index\"\n\
             checksum = \"{checksum}\"\n\n[[package]]\nname = \"member\"\nversion = \"0.1.0\"\n\
             dependencies = [\n \"aaa-one\",\n]\n"
        )
    };
    std::fs::write(root.join("Cargo.lock"), lockfile(&sha256_hex(&good))).unwrap();
    std::fs::write(member.join("Cargo.lock"), lockfile(&sha256_hex(b"stale"))).unwrap();
    let (_, stderr) = run_expect(
        airlock()
            .current_dir(&member)
            .env("CARGO_HOME", &cargo_home)
            .args(["vendor", "--offline", "-v"]),
        0,
    );
    assert!(
        stderr.contains(&format!(
            "discarded: the workspace's lockfile is {}",
            root.join("Cargo.lock").display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("read (1 .crate files from cargo's cache)"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(member.join("vendor/aaa-one/src/lib.rs")).unwrap(),
        "pub fn f() {}\n"
    );
}

/// The names of the stubs in a `vendor --format json` report.
fn stub_names(report: &serde_json::Value) -> Vec<String> {
    report["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["stub"] == true)
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

/// `cargo ARGS` in `dir` with a new empty `CARGO_HOME` (nothing cached, nothing fetched) and
/// the test's environment's rustflags removed.
fn cargo_with_empty_home(dir: &Path, home: &Path) -> Command {
    std::fs::create_dir_all(home).unwrap();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(dir)
        .env("CARGO_HOME", home)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR");
    cmd
}

/// Replaces every package directory of `vendor` that is not a stub yet by the stub airlock
/// makes of its manifest, with a checksum file as `vendor --platform` writes it.
fn stub_every_package(vendor: &Path) -> usize {
    let mut stubbed = 0;
    for entry in std::fs::read_dir(vendor).unwrap() {
        let dir = entry.unwrap().path();
        let manifest = std::fs::read(dir.join("Cargo.toml")).unwrap();
        if manifest.starts_with(airlock::vendoring::platform::STUB_MARKER.as_bytes()) {
            continue;
        }
        let table: toml::Table = String::from_utf8_lossy(&manifest).parse().unwrap();
        let id = airlock::lock::PackageId {
            name: table["package"]["name"].as_str().unwrap().to_owned(),
            version: table["package"]["version"]
                .as_str()
                .unwrap()
                .parse()
                .unwrap(),
            source: airlock::lock::Source::Path,
        };
        let stub = airlock::vendoring::platform::stub_manifest(&id, &manifest, &[])
            .unwrap_or_else(|e| panic!("{}: {e:#}", dir.display()));
        let checksums: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join(".cargo-checksum.json")).unwrap())
                .unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("Cargo.toml"), &stub).unwrap();
        std::fs::write(dir.join("src/lib.rs"), "").unwrap();
        let files = serde_json::json!({
            "Cargo.toml": sha256_hex(stub.as_bytes()),
            "src/lib.rs": sha256_hex(b""),
        });
        std::fs::write(
            dir.join(".cargo-checksum.json"),
            serde_json::json!({ "files": files, "package": checksums["package"] }).to_string(),
        )
        .unwrap();
        stubbed += 1;
    }
    stubbed
}

/// Regression: on a real lockfile, `--platform x86_64-unknown-linux-musl` stubbed
/// `wasm-bindgen-shared` keeping `links` but no build script, and cargo refused to parse the
/// stub, so nothing built. Here every crate of this repository's own `Cargo.lock` (about 200:
/// `windows-sys`, wasm-only crates, `links` with build scripts, proc-macros) gets a stub that
/// cargo parses, and the kept platform checks offline: manifests parse, build scripts (C code
/// included) run and every kept source compiles, with an empty `CARGO_HOME`.
#[test]
fn stubs_of_a_real_lockfile_parse_and_the_kept_platform_checks_offline() {
    let musl = "x86_64-unknown-linux-musl";
    if require_tool("musl-gcc").is_none() {
        return;
    }
    let (temp, dir) = this_workspace_skeleton();
    let report = run_json(
        airlock()
            .current_dir(&dir)
            .args(["vendor", "--platform", musl, "--write-config"])
            .args(["--format", "json"]),
    );
    let stubs = stub_names(&report);
    for (name, why) in [
        ("wasm-bindgen-shared", "links without its build script"),
        ("wasm-bindgen-macro", "a proc-macro"),
        ("windows-sys", "Windows only"),
    ] {
        assert!(stubs.iter().any(|s| s == name), "{name} ({why}): {stubs:?}");
    }
    assert!(
        !stubs.iter().any(|s| s == "ring"),
        "ring is needed: {stubs:?}"
    );
    let locked = report["crates"].as_u64().unwrap();
    assert!(locked > 150, "{report:#}");

    // Every stub parses: cargo resolves the whole lockfile from vendor/ and lists each package.
    let home = temp.path().join("empty-cargo-home");
    let metadata = |dir: &Path| -> serde_json::Value {
        let (stdout, _) = run_expect(
            cargo_with_empty_home(dir, &home).args([
                "metadata",
                "--offline",
                "--frozen",
                "--format-version",
                "1",
            ]),
            0,
        );
        serde_json::from_str(&stdout).unwrap()
    };
    let listed = metadata(&dir);
    let packages = listed["packages"].as_array().unwrap();
    assert_eq!(
        packages.len() as u64,
        locked + 2,
        "every locked package and the members"
    );
    let shared = packages
        .iter()
        .find(|p| p["name"] == "wasm-bindgen-shared")
        .unwrap();
    assert_eq!(shared["links"], serde_json::Value::Null);
    assert_eq!(shared["targets"].as_array().unwrap().len(), 1, "{shared:#}");
    let proc_macro = packages
        .iter()
        .find(|p| p["name"] == "wasm-bindgen-macro")
        .unwrap();
    assert_eq!(proc_macro["targets"][0]["kind"][0], "proc-macro");

    // The stub of every other crate too (ring: links, a build script and C code; serde_derive
    // and clap_derive: proc-macros; crates with [[bin]], [[example]], autobins...).
    let all_stubs = temp.path().join("all-stubs");
    copy_dir(&dir, &all_stubs);
    let stubbed = stub_every_package(&all_stubs.join("vendor"));
    assert_eq!(stubbed as u64 + stubs.len() as u64, locked);
    let listed = metadata(&all_stubs);
    assert_eq!(
        listed["packages"].as_array().unwrap().len() as u64,
        locked + 2
    );

    // The kept platform builds offline from vendor/ (`cargo check`: build scripts run and C
    // code compiles, every kept crate is compiled to metadata; codegen would add nothing
    // about the sources).
    let target_dir = temp.path().join("target");
    run_expect(
        cargo_with_empty_home(&dir, &home)
            .args(["check", "--offline", "--frozen", "--workspace", "--quiet"])
            .args(["--target", musl])
            .env("CARGO_TARGET_DIR", &target_dir),
        0,
    );
    assert!(
        target_dir
            .join(musl)
            .join("debug/.fingerprint")
            .read_dir()
            .unwrap()
            .any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("ring-")),
        "ring was not compiled"
    );
    let verified = run_json(
        airlock()
            .current_dir(&dir)
            .args(["verify", "--vendor", "vendor", "--format", "json"]),
    );
    assert_eq!(verified["ok"], true, "{verified:#}");
}

/// Regression: `vendor --write-config` refused (exit 2, after vendoring) a project that already
/// had a `.cargo/config.toml`, as most do. The replacement is merged into the file now, its
/// comments and tables kept, also when it lacks a final newline; running again changes nothing.
#[test]
fn write_config_merges_into_an_existing_config() {
    let Some(p) = project() else { return };
    let path = p.dir.join(".cargo/config.toml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let existing = "# team settings\n[alias]\nxt = \"run --package xtask --\" # keep me\n\n\
                    [build]\njobs = 2";
    std::fs::write(&path, existing).unwrap();
    let report = run_json(
        p.airlock()
            .args(["vendor", "--write-config", "--format", "json"]),
    );
    assert_eq!(
        report["config_written"].as_str().map(PathBuf::from),
        Some(path.canonicalize().unwrap())
    );
    let merged = std::fs::read_to_string(&path).unwrap();
    assert!(merged.starts_with(existing), "{merged}");
    assert!(merged.contains("# keep me"), "{merged}");
    let parsed: toml::Table = merged.parse().unwrap();
    assert_eq!(parsed["build"]["jobs"].as_integer(), Some(2));
    assert_eq!(
        parsed["source"]["crates-io"]["replace-with"].as_str(),
        Some("vendored-sources")
    );
    assert_eq!(
        parsed["source"]["vendored-sources"]["directory"].as_str(),
        Some("vendor")
    );
    let git_sources = parsed["source"]
        .as_table()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("git+file://"))
        .count();
    assert_eq!(git_sources, 1, "{merged}");
    // cargo reads the merged file: the build is offline, from vendor/, without the git repo.
    std::fs::remove_dir_all(&p.git_repo).unwrap();
    offline_build_and_run(&p, "merged");

    run_expect(
        p.airlock()
            .args(["vendor", "--offline", "--write-config", "-q"]),
        0,
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), merged);
}

/// cargo reads `.cargo/config` (the legacy name) when it exists: `--write-config` merges into
/// it and creates no `config.toml` beside it, which cargo would ignore.
#[test]
fn write_config_merges_into_the_legacy_config_name() {
    let Some(p) = project() else { return };
    let legacy = p.dir.join(".cargo/config");
    std::fs::create_dir_all(legacy.parent().unwrap()).unwrap();
    std::fs::write(&legacy, "[build]\njobs = 2").unwrap();
    let report =
        run_json(
            p.airlock()
                .args(["vendor", "--offline", "--write-config", "--format", "json"]),
        );
    assert_eq!(
        report["config_written"].as_str().map(PathBuf::from),
        Some(legacy.clone())
    );
    assert!(!p.dir.join(".cargo/config.toml").exists());
    let text = std::fs::read_to_string(&legacy).unwrap();
    assert!(text.starts_with("[build]\njobs = 2\n"), "{text}");
    let home = p.empty_dir("empty-cargo-home-legacy");
    run_expect(
        cargo_with_empty_home(&p.dir, &home).args([
            "metadata",
            "--offline",
            "--frozen",
            "--format-version",
            "1",
        ]),
        0,
    );
}

/// A project whose config already replaces crates-io (a company mirror) is refused before
/// anything is vendored: exit 2, the table named, the config and the vendor directory as they
/// were.
#[test]
fn write_config_refuses_a_conflicting_replacement_before_vendoring() {
    let Some(p) = project() else { return };
    let path = p.dir.join(".cargo/config.toml");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let existing = "[source.crates-io]\nreplace-with = \"company-mirror\"\n\n\
                    [source.company-mirror]\nregistry = \"sparse+https://mirror.example.invalid/\"\n";
    std::fs::write(&path, existing).unwrap();
    std::fs::create_dir_all(p.dir.join("vendor/previous")).unwrap();
    std::fs::write(p.dir.join("vendor/previous/marker"), "keep me").unwrap();
    let (_, stderr) = run_expect(
        p.airlock().args(["vendor", "--offline", "--write-config"]),
        2,
    );
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(
        stderr.contains(
            "[source.crates-io] replace-with = \"company-mirror\" (airlock writes \"vendored-sources\")"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("nothing was vendored or written"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), existing);
    assert_eq!(
        tree(&p.dir.join("vendor")).into_keys().collect::<Vec<_>>(),
        ["previous/marker"]
    );
}

/// `--platform` for a Windows triple keeps the Windows crates with their full sources and
/// stubs what only Unix needs; two `--platform` flags keep the union of what each needs.
#[test]
fn platform_windows_keeps_windows_crates_and_two_platforms_give_the_union() {
    // A Unix-only dependency, so each platform leaves something out. The version airlock
    // itself locks is in cargo's cache already.
    let libc = repo_locked_version("libc");
    let extra = format!("\n[target.'cfg(unix)'.dependencies]\nlibc = \"={libc}\"\n");
    let Some(p) = project_with(&extra) else {
        return;
    };
    run_expect(p.airlock().args(["vendor", "full", "-q"]), 0);
    let full = tree(&p.dir.join("full"));
    let vendor = |platforms: &[&str]| -> (Vec<String>, std::collections::BTreeMap<String, String>) {
        let mut cmd = p.airlock();
        cmd.args(["vendor", "--offline", "--format", "json"]);
        for platform in platforms {
            cmd.args(["--platform", platform]);
        }
        let report = run_json(&mut cmd);
        (stub_names(&report), tree(&p.dir.join("vendor")))
    };
    let package = |files: &std::collections::BTreeMap<String, String>, name: &str| {
        let prefix = format!("{name}/");
        files
            .iter()
            .filter(|(path, _)| path.starts_with(&prefix))
            .map(|(path, digest)| (path.clone(), digest.clone()))
            .collect::<Vec<_>>()
    };
    let (linux, windows) = ("x86_64-unknown-linux-gnu", "x86_64-pc-windows-msvc");

    let (stubs, files) = vendor(&[linux]);
    assert_eq!(stubs, ["winapi-util", "windows-link", "windows-sys"]);
    assert_eq!(package(&files, "libc"), package(&full, "libc"));

    let (stubs, files) = vendor(&[windows]);
    assert_eq!(stubs, ["libc"]);
    for name in ["winapi-util", "windows-sys", "windows-link", "same-file"] {
        let kept = package(&files, name);
        assert!(kept.len() > 3, "{name} is a stub: {kept:?}");
        assert_eq!(
            kept,
            package(&full, name),
            "{name} differs from a full vendor"
        );
    }
    assert_eq!(
        package(&files, "libc")
            .into_iter()
            .map(|(path, _)| path)
            .collect::<Vec<_>>(),
        [
            "libc/.cargo-checksum.json",
            "libc/Cargo.toml",
            "libc/src/lib.rs"
        ]
    );
    let verified = run_json(
        p.airlock()
            .args(["verify", "--vendor", "vendor", "--format", "json"]),
    );
    assert_eq!(verified["ok"], true, "{verified:#}");

    let (stubs, files) = vendor(&[linux, windows]);
    assert_eq!(stubs, Vec::<String>::new());
    assert_eq!(
        files, full,
        "the union of both platforms is every crate, in full"
    );
}

/// `--platform aarch64-unknown-linux-musl` on an x86_64 machine: the stubs are the Windows
/// crates, and `cargo airlock build --offline --frozen` (rust-lld links aarch64 with no cross
/// toolchain) builds the fixture for aarch64 from the vendor directory alone, with an empty
/// `CARGO_HOME` and the git repository gone; the binary runs under qemu.
#[test]
fn platform_aarch64_builds_offline_for_aarch64() {
    let aarch64 = "aarch64-unknown-linux-musl";
    let Some(qemu) = require_tool("qemu-aarch64-static") else {
        return;
    };
    let Some(p) = project() else { return };
    let report = run_json(p.airlock().args([
        "vendor",
        "--platform",
        aarch64,
        "--write-config",
        "--format",
        "json",
    ]));
    assert_eq!(
        stub_names(&report),
        ["winapi-util", "windows-link", "windows-sys"]
    );
    std::fs::remove_dir_all(&p.git_repo).unwrap();
    let home = p.empty_dir("empty-cargo-home-aarch64");
    run_expect(
        p.airlock().env("CARGO_HOME", &home).args([
            "build",
            "--offline",
            "--frozen",
            "--target",
            aarch64,
            "-q",
        ]),
        0,
    );
    let binary = p.dir.join("target/airlock").join(aarch64).join("vendoring");
    let (stdout, _) = run_expect(Command::new(qemu).arg(&binary), 0);
    assert_eq!(
        stdout,
        "vendoring ok: hello from git same_file=true family=unix width=64\n"
    );
}

/// The git repository moves past the locked commit (and cargo's git cache holds the new
/// commit): the vendored source is still the locked commit's, byte for byte.
#[test]
fn git_dependency_is_vendored_at_the_locked_commit_after_the_repository_moved() {
    let Some(p) = project() else { return };
    let locked = git(&p.git_repo, &["rev-parse", "HEAD"]).trim().to_owned();
    let lockfile = std::fs::read_to_string(p.dir.join("Cargo.lock")).unwrap();
    assert!(lockfile.contains(&format!("#{locked}\"")), "{lockfile}");
    let locked_lib = git(&p.git_repo, &["show", &format!("{locked}:src/lib.rs")]);

    std::fs::write(
        p.git_repo.join("src/lib.rs"),
        "/// What the fixture prints.\npub fn greeting() -> &'static str {\n    \"moved past the lock\"\n}\n",
    )
    .unwrap();
    std::fs::write(p.git_repo.join("src/added.rs"), "pub fn added() {}\n").unwrap();
    let moved = git_commit_all(&p.git_repo, "moved past the lock");
    assert_ne!(moved, locked);
    // Another checkout of the project updates to the new commit, so cargo's git database
    // (shared through CARGO_HOME) holds it: only the lockfile tells the two apart.
    let other = p.temp.path().join("other");
    copy_dir(&p.dir, &other);
    run_expect(
        Command::new(env!("CARGO"))
            .args(["update", "--quiet", "-p", "airlock-gitdep"])
            .current_dir(&other),
        0,
    );
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let has_moved = std::fs::read_dir(cargo_home.join("git/db"))
        .unwrap()
        .any(|db| {
            Command::new("git")
                .arg("--git-dir")
                .arg(db.unwrap().path())
                .args(["cat-file", "-e", &format!("{moved}^{{commit}}")])
                .output()
                .unwrap()
                .status
                .success()
        });
    assert!(has_moved, "cargo's git database does not hold {moved}");

    run_expect(p.airlock().args(["vendor", "--write-config", "-q"]), 0);
    assert_eq!(
        std::fs::read_to_string(p.dir.join("Cargo.lock")).unwrap(),
        lockfile
    );
    let vendored = p.dir.join("vendor/airlock-gitdep");
    assert_eq!(
        std::fs::read_to_string(vendored.join("src/lib.rs")).unwrap(),
        locked_lib
    );
    assert!(!vendored.join("src/added.rs").exists());
    offline_build_and_run(&p, "locked-commit");
}

/// A crafted registry package for [`host_side_project`]: name, manifest body after
/// `[package]`, and files.
struct HostSideCrate {
    name: &'static str,
    manifest: &'static str,
    files: &'static [(&'static str, &'static str)],
    dependencies: &'static [&'static str],
}

/// A project whose proc-macro and build script need, on a glibc host, dependencies that a
/// musl target never does: `app` → `pm` (proc-macro) → `pm-helper` under
/// `cfg(target_env = "gnu")`, and `app` → `sysish`, whose build script has `build-helper`
/// under the same table. Crafted `.crate` files in a fake `CARGO_HOME`; returns (project,
/// cargo home).
fn host_side_project(temp: &Path) -> (PathBuf, PathBuf) {
    let crates = [
        HostSideCrate {
            name: "pm",
            manifest: "[lib]\nproc-macro = true\n\n\
                       [target.'cfg(target_env = \"gnu\")'.dependencies]\npm-helper = \"=1.0.0\"\n",
            files: &[(
                "src/lib.rs",
                "extern crate proc_macro;\n\
                 #[proc_macro]\n\
                 pub fn helper_name(_: proc_macro::TokenStream) -> proc_macro::TokenStream {\n\
                 \x20   format!(\"{:?}\", pm_helper::NAME).parse().unwrap()\n}\n",
            )],
            dependencies: &["pm-helper"],
        },
        HostSideCrate {
            name: "pm-helper",
            manifest: "",
            files: &[("src/lib.rs", "pub const NAME: &str = \"pm-helper\";\n")],
            dependencies: &[],
        },
        HostSideCrate {
            name: "sysish",
            manifest: "build = \"build.rs\"\n\n\
                       [target.'cfg(target_env = \"gnu\")'.build-dependencies]\n\
                       build-helper = \"=1.0.0\"\n",
            files: &[
                ("src/lib.rs", "pub const OK: bool = true;\n"),
                ("build.rs", "fn main() {\n    build_helper::run();\n}\n"),
            ],
            dependencies: &["build-helper"],
        },
        HostSideCrate {
            name: "build-helper",
            manifest: "",
            files: &[("src/lib.rs", "pub fn run() {}\n")],
            dependencies: &[],
        },
    ];

    let dir = temp.join("host-side");
    let cargo_home = temp.join("cargo-home");
    let cache = cargo_home.join("registry/cache/index.crates.io-0123456789abcdef");
    std::fs::create_dir_all(dir.join("src")).unwrap();
    std::fs::create_dir_all(&cache).unwrap();
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n\n\
         [dependencies]\npm = \"=1.0.0\"\nsysish = \"=1.0.0\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("src/lib.rs"),
        "pub const HELPER: &str = pm::helper_name!();\npub const OK: bool = sysish::OK;\n",
    )
    .unwrap();
    let mut lock = "version = 4\n\n[[package]]\nname = \"app\"\nversion = \"0.1.0\"\n\
                    dependencies = [\"pm\", \"sysish\"]\n"
        .to_owned();
    for c in &crates {
        let manifest = format!(
            "[package]\nname = \"{}\"\nversion = \"1.0.0\"\nedition = \"2021\"\n{}",
            c.name, c.manifest
        );
        let mut entries = vec![(
            format!("{}-1.0.0/Cargo.toml", c.name),
            manifest.into_bytes(),
        )];
        for (path, body) in c.files {
            entries.push((format!("{}-1.0.0/{path}", c.name), body.as_bytes().to_vec()));
        }
        let entries: Vec<(&str, tar::EntryType, &[u8])> = entries
            .iter()
            .map(|(p, b)| (p.as_str(), tar::EntryType::Regular, b.as_slice()))
            .collect();
        let bytes = crate_file(&entries);
        std::fs::write(cache.join(format!("{}-1.0.0.crate", c.name)), &bytes).unwrap();
        lock.push_str(&format!(
            "\n[[package]]\nname = \"{}\"\nversion = \"1.0.0\"\n\
             source = \"registry+https://github.com/rust-lang/crates.io-index\"\n\
             checksum = \"{}\"\n",
            c.name,
            sha256_hex(&bytes)
        ));
        if !c.dependencies.is_empty() {
            let deps: Vec<String> = c.dependencies.iter().map(|d| format!("\"{d}\"")).collect();
            lock.push_str(&format!("dependencies = [{}]\n", deps.join(", ")));
        }
    }
    std::fs::write(dir.join("Cargo.lock"), lock).unwrap();
    (dir, cargo_home)
}

/// Regression: cargo evaluates the `cfg` of a build-dependency, and of every dependency of a
/// proc-macro, for the host that runs them, but `--platform` evaluated them for the kept
/// platform, so a musl platform on a glibc host stubbed what the proc-macro and the build
/// script need there, and the build failed. Both helpers keep their sources now.
#[test]
fn platform_keeps_what_build_scripts_and_proc_macros_need_on_the_host() {
    let musl = "x86_64-unknown-linux-musl";
    if !host_triple().ends_with("-linux-gnu") {
        eprintln!("skipped: the host is not a glibc Linux, whose `target_env` differs from musl's");
        return;
    }
    let temp = tempfile::tempdir().unwrap();
    let (dir, cargo_home) = host_side_project(temp.path());
    let report = run_json(
        airlock()
            .current_dir(&dir)
            .env("CARGO_HOME", &cargo_home)
            .args(["vendor", "--offline", "--platform", musl, "--write-config"])
            .args(["--format", "json"]),
    );
    run_expect(
        cargo_with_empty_home(&dir, &temp.path().join("empty-cargo-home"))
            .args([
                "check",
                "--offline",
                "--frozen",
                "--quiet",
                "--target",
                musl,
            ])
            .env("CARGO_TARGET_DIR", temp.path().join("target")),
        0,
    );
    assert_eq!(stub_names(&report), Vec::<String>::new(), "{report:#}");
    assert!(dir.join("vendor/pm-helper/src/lib.rs").is_file());
    assert!(dir.join("vendor/build-helper/src/lib.rs").is_file());
}

/// `--platform` asked rustc for the `cfg` of the kept platform and of the host on every run
/// (two rustc starts, most of a warm run's own time). The answers are kept now, as `build`
/// keeps its probe's, while the toolchain is the same one: a second run starts no rustc (the
/// log of a logging `RUSTC` stays empty); a toolchain updated in place, another toolchain or
/// another `RUSTC` is asked again.
#[test]
fn platform_keeps_rustcs_answers_until_the_toolchain_changes() {
    let musl = "x86_64-unknown-linux-musl";
    let temp = tempfile::tempdir().unwrap();
    let (dir, cargo_home) = host_side_project(temp.path());
    let real_rustc = {
        let (sysroot, _) = run_expect(Command::new("rustc").args(["--print", "sysroot"]), 0);
        Path::new(sysroot.trim()).join("bin/rustc")
    };
    // A rustup home of two toolchains (only their `bin/rustc` files matter to the key) and a
    // RUSTC that logs every run, as rustup's environment would have it.
    let home = temp.path().join("rustup");
    for toolchain in ["one", "two"] {
        let bin = home.join("toolchains").join(toolchain).join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("rustc"), "a toolchain's rustc\n").unwrap();
    }
    let log = temp.path().join("rustc.log");
    let real = format!("'{}'", real_rustc.display());
    let rustc = logging_shim(&home, "rustc", &real, &log);
    let cache = temp.path().join("cache");
    let mut stubs = None;
    let mut runs = |toolchain: &str, rustc: &Path| -> Vec<String> {
        std::fs::remove_file(&log).ok();
        let report = run_json(
            airlock()
                .current_dir(&dir)
                .env("CARGO_HOME", &cargo_home)
                .env("CARGO", env!("CARGO"))
                .env("XDG_CACHE_HOME", &cache)
                .env("RUSTUP_HOME", &home)
                .env("RUSTUP_TOOLCHAIN", toolchain)
                .env("RUSTC", rustc)
                .args([
                    "vendor",
                    "--offline",
                    "--platform",
                    musl,
                    "--format",
                    "json",
                ]),
        );
        // Recalled answers decide exactly as fresh ones.
        let these = stub_names(&report);
        assert_eq!(stubs.get_or_insert_with(|| these.clone()), &these);
        let mut logged = logged(&log);
        logged.sort();
        logged
    };
    let asked = [
        "--print cfg --target x86_64-unknown-linux-musl",
        "--print host-tuple --print cfg",
    ];
    assert_eq!(runs("one", &rustc), asked);
    assert_eq!(
        runs("one", &rustc),
        Vec::<String>::new(),
        "rustc started again"
    );
    let kept = std::fs::read_dir(cache.join("airlock/rustc"))
        .unwrap()
        .count();
    assert_eq!(kept, 2, "one file per question");

    // The toolchain updated in place: asked again, then kept.
    std::fs::write(home.join("toolchains/one/bin/rustc"), "an updated rustc\n").unwrap();
    assert_eq!(runs("one", &rustc), asked);
    assert_eq!(runs("one", &rustc), Vec::<String>::new());
    // Another toolchain, another RUSTC: asked again each.
    assert_eq!(runs("two", &rustc), asked);
    let other = logging_shim(temp.path(), "rustc-too", &real, &log);
    assert_eq!(runs("two", &other), asked);
    assert_eq!(runs("two", &other), Vec::<String>::new());
}

/// A project switched to vendored sources is fetched from outside it (else cargo would fetch
/// from vendor/); the rest of its cargo configuration still applies there. Mechanism: with
/// `[net] git-fetch-with-cli = true` in the project's config, cargo fetches the (never fetched)
/// git dependency with the `git` program, which logs its calls; before, the fetch from outside
/// lost that setting and cargo used libgit2.
#[test]
fn fetching_outside_a_vendored_project_keeps_its_other_cargo_settings() {
    let Some(p) = project() else { return };
    let Some(real_git) = require_tool("git") else {
        return;
    };
    // A clone at a path cargo has never fetched, at the same commit as the lockfile's.
    let clone = p.temp.path().join("gitdep-clone");
    run_expect(
        Command::new(&real_git)
            .args(["clone", "-q"])
            .arg(&p.git_repo)
            .arg(&clone),
        0,
    );
    for file in ["Cargo.toml", "Cargo.lock"] {
        let path = p.dir.join(file);
        let text = std::fs::read_to_string(&path).unwrap().replace(
            &format!("file://{}", p.git_repo.display()),
            &format!("file://{}", clone.display()),
        );
        std::fs::write(&path, text).unwrap();
    }
    std::fs::create_dir_all(p.dir.join(".cargo")).unwrap();
    std::fs::write(
        p.dir.join(".cargo/config.toml"),
        "[net]\ngit-fetch-with-cli = true\n\n[source.crates-io]\n\
         replace-with = \"vendored-sources\"\n\n[source.vendored-sources]\ndirectory = \"vendor\"\n",
    )
    .unwrap();
    let bin = p.empty_dir("logging-git");
    let log = p.temp.path().join("git.log");
    let wrapper = bin.join("git");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real_git.display()
        ),
    )
    .unwrap();
    let mut permissions = std::fs::metadata(&wrapper).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&wrapper, permissions).unwrap();
    let path = path_with_first(&bin);
    run_expect(
        p.airlock()
            .env("PATH", path)
            .args(["vendor", "-q", "--format", "json"]),
        0,
    );
    let calls = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        calls
            .lines()
            .any(|l| l.starts_with("fetch") && l.contains(&clone.display().to_string())),
        "cargo did not fetch the git dependency with the git program:\n{calls}"
    );
    assert!(p.dir.join("vendor/airlock-gitdep/src/lib.rs").is_file());
}
