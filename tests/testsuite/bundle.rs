//! Bundles made by hand to attack `verify --bundle` and `vendor --from-bundle`: hostile
//! lockfile names, duplicate entries, decompression bombs, `.crate` files naming another
//! package, and git packages whose files are not their locked commit's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::*;

const CRATES_IO: &str = "registry+https://github.com/rust-lang/crates.io-index";

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A project made by hand in `temp/project`: a package with no dependencies (so `cargo
/// metadata --no-deps` accepts it whatever the lockfile says) and the given `Cargo.lock`.
struct Crafted {
    temp: tempfile::TempDir,
    dir: PathBuf,
}

impl Crafted {
    fn new(lock: &str) -> Crafted {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("project");
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            "[package]\nname = \"crafted\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n",
        )
        .unwrap();
        std::fs::write(dir.join("Cargo.lock"), lock).unwrap();
        std::fs::create_dir_all(temp.path().join("empty-cargo-home")).unwrap();
        Crafted { temp, dir }
    }

    /// `cargo-airlock ARGS` in the project with an empty `CARGO_HOME`; returns (exit code,
    /// stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        let home = self.temp.path().join("empty-cargo-home");
        let out = airlock()
            .current_dir(&self.dir)
            .env("CARGO_HOME", &home)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// A lockfile (v4) with the root package `crafted` depending on `packages` (name, version,
/// source, checksum).
fn lockfile(packages: &[(&str, &str, &str, Option<&str>)]) -> String {
    let quoted = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut lock =
        "version = 4\n\n[[package]]\nname = \"crafted\"\nversion = \"0.1.0\"\ndependencies = [\n"
            .to_owned();
    for (name, version, _, _) in packages {
        lock.push_str(&format!(" {},\n", quoted(&format!("{name} {version}"))));
    }
    lock.push_str("]\n");
    for (name, version, source, checksum) in packages {
        lock.push_str(&format!(
            "\n[[package]]\nname = {}\nversion = {}\nsource = {}\n",
            quoted(name),
            quoted(version),
            quoted(source)
        ));
        if let Some(sum) = checksum {
            lock.push_str(&format!("checksum = \"{sum}\"\n"));
        }
    }
    lock
}

/// A `.crate` (gzipped tar) whose entries are written exactly as given: (path, contents).
fn crate_file(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut builder = tar::Builder::new(gz);
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        builder.append(&h, *data).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// A registry `.crate` of `name version` with a manifest naming `manifest_name manifest_version`.
fn crate_naming(name: &str, version: &str, manifest_name: &str, manifest_version: &str) -> Vec<u8> {
    let manifest = format!(
        "[package]\nname = \"{manifest_name}\"\nversion = \"{manifest_version}\"\nedition = \"2021\"\n"
    );
    crate_file(&[
        (&format!("{name}-{version}/Cargo.toml"), manifest.as_bytes()),
        (&format!("{name}-{version}/src/lib.rs"), b"pub fn f() {}\n"),
    ])
}

/// The tar of a bundle with entries written exactly as given (raw paths, duplicates kept), in
/// order: (path, contents).
fn bundle_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        builder.append(&h, *data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn write_bundle(path: &Path, entries: &[(&str, &[u8])]) {
    std::fs::write(
        path,
        zstd::encode_all(bundle_tar(entries).as_slice(), 3).unwrap(),
    )
    .unwrap();
}

/// One package of a bundle manifest.
struct Listed<'a> {
    name: &'a str,
    version: &'a str,
    source: &'a str,
    kind: &'a str,
    /// The `.crate`'s path under `airlock-bundle/`.
    file: &'a str,
    bytes: &'a [u8],
}

/// A bundle manifest (format 1, as airlock wrote before git proofs) for `lock` and `packages`.
fn manifest(lock: &str, packages: &[Listed<'_>]) -> Vec<u8> {
    let entries: Vec<Value> = packages
        .iter()
        .map(
            |Listed {
                 name,
                 version,
                 source,
                 kind,
                 file,
                 bytes,
             }| {
                json!({
                    "name": name,
                    "version": version,
                    "source": source,
                    "kind": kind,
                    "sha256": format!("sha256:{}", sha256_hex(bytes)),
                    "file": file,
                })
            },
        )
        .collect();
    let manifest = json!({
        "format": 1,
        "lockfile_sha256": format!("sha256:{}", sha256_hex(lock.as_bytes())),
        "packages": entries,
    });
    serde_json::to_vec_pretty(&manifest).unwrap()
}

/// Every entry under `dir` (files with their digest, directories, links), recursively.
fn snapshot(dir: &Path) -> BTreeMap<String, String> {
    let mut all = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.unwrap();
        let relative = entry
            .path()
            .strip_prefix(dir)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let what = if entry.file_type().is_file() {
            sha256_hex(&std::fs::read(entry.path()).unwrap())
        } else if entry.file_type().is_dir() {
            "dir".to_owned()
        } else {
            "other".to_owned()
        };
        all.insert(relative, what);
    }
    all
}

#[test]
fn lockfile_names_never_become_paths_outside_the_vendor_directory() {
    // The `.crate` holds no file, so only the directory made from the name, and the
    // `.cargo-checksum.json` written into it, could land anywhere.
    let empty_crate = {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        tar::Builder::new(gz)
            .into_inner()
            .unwrap()
            .finish()
            .unwrap()
    };
    let outside_root = tempfile::tempdir().unwrap();
    let absolute = outside_root.path().join("absolute-target");
    for name in ["../../outside", absolute.to_str().unwrap()] {
        let sum = sha256_hex(&empty_crate);
        let lock = lockfile(&[(name, "1.0.0", CRATES_IO, Some(&sum))]);
        let p = Crafted::new(&lock);
        // Sentinels where the hostile names point: `temp/outside` and an absolute path.
        for sentinel in [p.temp.path().join("outside"), absolute.clone()] {
            std::fs::create_dir_all(&sentinel).unwrap();
            std::fs::write(sentinel.join(".cargo-checksum.json"), "sentinel").unwrap();
        }
        let manifest = manifest(
            &lock,
            &[Listed {
                name,
                version: "1.0.0",
                source: CRATES_IO,
                kind: "registry",
                file: "crates/x-1.0.0.crate",
                bytes: &empty_crate,
            }],
        );
        write_bundle(
            &p.dir.join("deps.tar.zst"),
            &[
                ("airlock-bundle/Cargo.lock", lock.as_bytes()),
                ("airlock-bundle/crates/x-1.0.0.crate", &empty_crate),
                ("airlock-bundle/manifest.json", &manifest),
            ],
        );
        // Everything beside and inside the project, and around the absolute target.
        let before = (snapshot(p.temp.path()), snapshot(outside_root.path()));

        let (vendor_code, _, vendor_err) =
            p.run(&["vendor", "--from-bundle", "deps.tar.zst", "vendor"]);
        let (verify_code, _, verify_err) = p.run(&["verify", "--bundle", "deps.tar.zst"]);

        // Nothing was written anywhere: not beside the project, not at the absolute path,
        // not in the project (no vendor directory, no staging left behind).
        assert_eq!(
            (snapshot(p.temp.path()), snapshot(outside_root.path())),
            before,
            "{name}: something was written outside the vendor directory\n{vendor_err}"
        );
        assert_eq!(
            std::fs::read_to_string(p.temp.path().join("outside/.cargo-checksum.json")).unwrap(),
            "sentinel"
        );
        assert_eq!(
            std::fs::read_to_string(absolute.join(".cargo-checksum.json")).unwrap(),
            "sentinel"
        );
        for (code, stderr) in [(vendor_code, &vendor_err), (verify_code, &verify_err)] {
            assert_eq!(code, 2, "{name}: {stderr}");
            assert!(stderr.contains("Cargo.lock"), "{name}: {stderr}");
            assert!(
                stderr.contains("is not a valid cargo package name"),
                "{name}: {stderr}"
            );
            assert!(stderr.contains(&format!("{name:?}")), "{name}: {stderr}");
        }
    }
}

/// A crafted project locking one registry package `good 1.0.0` whose `.crate` is `crate_bytes`
/// (Cargo.lock's checksum is its sha256), and a bundle `deps.tar.zst` of it whose tar entries
/// after `Cargo.lock` are `crates` (path under `airlock-bundle/`, contents) and whose manifest
/// lists `listed` (each a copy of `good`'s entry).
fn good_package_bundle(crate_bytes: &[u8], crates: &[(&str, &[u8])], listed: usize) -> Crafted {
    let sum = sha256_hex(crate_bytes);
    let lock = lockfile(&[("good", "1.0.0", CRATES_IO, Some(&sum))]);
    let p = Crafted::new(&lock);
    let entry = Listed {
        name: "good",
        version: "1.0.0",
        source: CRATES_IO,
        kind: "registry",
        file: "crates/good-1.0.0.crate",
        bytes: crate_bytes,
    };
    let entries: Vec<Listed<'_>> = (0..listed).map(|_| Listed { ..entry }).collect();
    let manifest = manifest(&lock, &entries);
    let mut tar: Vec<(String, &[u8])> = vec![("airlock-bundle/Cargo.lock".into(), lock.as_bytes())];
    for (path, bytes) in crates {
        tar.push((format!("airlock-bundle/{path}"), bytes));
    }
    tar.push(("airlock-bundle/manifest.json".into(), &manifest));
    let tar: Vec<(&str, &[u8])> = tar.iter().map(|(p, b)| (p.as_str(), *b)).collect();
    write_bundle(&p.dir.join("deps.tar.zst"), &tar);
    p
}

impl Crafted {
    /// `verify --bundle deps.tar.zst` and `vendor --from-bundle deps.tar.zst vendor`; asserts
    /// both exit with `code` and that no vendor directory (or staging) was written; returns
    /// their stderr.
    fn refused(&self, code: i32) -> (String, String) {
        let before = snapshot(&self.dir);
        let (verify_code, verify_out, verify_err) =
            self.run(&["verify", "--bundle", "deps.tar.zst"]);
        let (vendor_code, _, vendor_err) =
            self.run(&["vendor", "--from-bundle", "deps.tar.zst", "vendor"]);
        assert_eq!(
            snapshot(&self.dir),
            before,
            "vendor wrote something\n{vendor_err}"
        );
        assert_eq!(verify_code, code, "verify:\n{verify_out}\n{verify_err}");
        assert_eq!(vendor_code, code, "vendor:\n{vendor_err}");
        (format!("{verify_out}{verify_err}"), vendor_err)
    }
}

#[test]
fn a_duplicate_tar_entry_cannot_hide_content() {
    let good = crate_naming("good", "1.0.0", "good", "1.0.0");
    let hidden = crate_naming("good", "1.0.0", "good", "1.0.0")
        .into_iter()
        .rev()
        .collect::<Vec<u8>>();
    // The first copy is the one a careless reader would check or keep, the second replaces it.
    for crates in [
        [
            ("crates/good-1.0.0.crate", &hidden),
            ("crates/good-1.0.0.crate", &good),
        ],
        [
            ("crates/good-1.0.0.crate", &good),
            ("./crates/good-1.0.0.crate", &hidden),
        ],
    ] {
        let crates: Vec<(&str, &[u8])> = crates.iter().map(|(p, b)| (*p, b.as_slice())).collect();
        let p = good_package_bundle(&good, &crates, 1);
        let (verify, vendor) = p.refused(1);
        for stderr in [&verify, &vendor] {
            assert!(
                stderr.contains("entry `airlock-bundle/") && stderr.contains("appears twice"),
                "{stderr}"
            );
        }
    }
}

#[test]
fn a_package_listed_twice_is_refused_at_verify() {
    let good = crate_naming("good", "1.0.0", "good", "1.0.0");
    let p = good_package_bundle(&good, &[("crates/good-1.0.0.crate", &good)], 2);
    let (verify, vendor) = p.refused(1);
    for stderr in [&verify, &vendor] {
        assert!(
            stderr.contains("is listed twice in the bundle manifest"),
            "{stderr}"
        );
        assert!(stderr.contains("good v1.0.0"), "{stderr}");
    }
    // JSON names the manifest as the place of the difference.
    let (code, json, _) = p.run(&["verify", "--bundle", "deps.tar.zst", "--format", "json"]);
    assert_eq!(code, 1);
    let report: Value = serde_json::from_str(&json).unwrap();
    let findings = report["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{report:#}");
    assert!(
        findings[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("airlock-bundle/manifest.json"),
        "{report:#}"
    );
}

#[test]
fn a_crate_whose_manifest_names_another_package_is_refused() {
    // Its sha256 is the one Cargo.lock records: only its own Cargo.toml tells.
    let evil = crate_naming("good", "1.0.0", "evil", "9.9.9");
    let p = good_package_bundle(&evil, &[("crates/good-1.0.0.crate", &evil)], 1);
    let (verify, vendor) = p.refused(1);
    for stderr in [&verify, &vendor] {
        assert!(
            stderr.contains("names package evil 9.9.9, not the locked good 1.0.0"),
            "{stderr}"
        );
    }
    // The same with a version only: the name is right, the version is not.
    let other = crate_naming("good", "1.0.0", "good", "1.0.1");
    let p = good_package_bundle(&other, &[("crates/good-1.0.0.crate", &other)], 1);
    let (verify, _) = p.refused(1);
    assert!(verify.contains("names package good 1.0.1"), "{verify}");
}

/// A 512-byte tar header for a regular file at `path` declaring `size` bytes.
fn tar_header(path: &str, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
    h.set_cksum();
    h.as_bytes().to_vec()
}

#[test]
fn a_decompression_bomb_is_refused_with_bounded_memory() {
    let good = crate_naming("good", "1.0.0", "good", "1.0.0");
    let p = good_package_bundle(&good, &[("crates/good-1.0.0.crate", &good)], 1);
    let lock = std::fs::read(p.dir.join("Cargo.lock")).unwrap();
    // One entry declaring 640 MiB of zeros: 40 frames of 16 MiB, each a few hundred bytes.
    let size = 640u64 << 20;
    let mut head = tar_header("airlock-bundle/Cargo.lock", lock.len() as u64);
    head.extend(&lock);
    head.resize(head.len().next_multiple_of(512), 0);
    head.extend(tar_header("airlock-bundle/crates/good-1.0.0.crate", size));
    // A zstd stream may hold any number of frames, decoded one after the other.
    let mut bomb = zstd::encode_all(head.as_slice(), 19).unwrap();
    let zeros = zstd::encode_all(vec![0u8; 16 << 20].as_slice(), 19).unwrap();
    for _ in 0..size >> 24 {
        bomb.extend(&zeros);
    }
    assert!(bomb.len() < 40_000, "{}", bomb.len());
    std::fs::write(p.dir.join("bomb.tar.zst"), &bomb).unwrap();
    let limit = 16 * bomb.len() as u64 + (4 << 20);

    for args in [
        &["verify", "--bundle", "bomb.tar.zst"][..],
        &["vendor", "--from-bundle", "bomb.tar.zst", "vendor"][..],
    ] {
        let (code, stderr, peak_kib) = run_measuring_peak(
            airlock()
                .current_dir(&p.dir)
                .env("CARGO_HOME", p.temp.path().join("empty-cargo-home"))
                .args(args),
        );
        eprintln!(
            "{args:?}: {} byte bundle, peak RSS {peak_kib} KiB",
            bomb.len()
        );
        // Refused at the entry's header, before a byte of it was read or allocated.
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stderr.contains(&format!(
                "entry `airlock-bundle/crates/good-1.0.0.crate` declares {size} bytes"
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!(
                "more than the {limit} bytes a bundle of {} bytes may expand to",
                bomb.len()
            )),
            "{stderr}"
        );
        assert!(peak_kib < 64 << 10, "peak RSS {peak_kib} KiB");
        assert!(!p.dir.join("vendor").exists());
    }
}

#[test]
fn a_bundle_is_bounded_in_total_not_only_per_entry() {
    let good = crate_naming("good", "1.0.0", "good", "1.0.0");
    let p = good_package_bundle(&good, &[("crates/good-1.0.0.crate", &good)], 1);
    // Three 2 MiB entries of zeros: each fits the bound alone, the third not with the others.
    let zeros = vec![0u8; 2 << 20];
    let entries: Vec<(&str, &[u8])> = vec![
        ("airlock-bundle/crates/a-1.0.0.crate", &zeros),
        ("airlock-bundle/crates/b-1.0.0.crate", &zeros),
        ("airlock-bundle/crates/c-1.0.0.crate", &zeros),
    ];
    write_bundle(&p.dir.join("three.tar.zst"), &entries);
    let size = std::fs::metadata(p.dir.join("three.tar.zst"))
        .unwrap()
        .len();
    let limit = 16 * size + (4 << 20);
    let left = limit - 2 * (2 << 20);
    let (verify, _) = {
        std::fs::rename(p.dir.join("three.tar.zst"), p.dir.join("deps.tar.zst")).unwrap();
        p.refused(1)
    };
    assert!(
        verify.contains(&format!(
            "entry `airlock-bundle/crates/c-1.0.0.crate` declares {} bytes, with {left} bytes \
             left, more than the {limit} bytes a bundle of {size} bytes may expand to",
            2 << 20
        )),
        "{verify}"
    );
}

/// Every entry of a bundle, in order: (path, contents).
fn bundle_entries(path: &Path) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut tar_bytes = Vec::new();
    zstd::Decoder::new(std::fs::File::open(path).unwrap())
        .unwrap()
        .read_to_end(&mut tar_bytes)
        .unwrap();
    let mut archive = tar::Archive::new(tar_bytes.as_slice());
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        entries.push((name, data));
    }
    entries
}

/// Writes `entries` as a bundle, first recomputing the manifest's sha256 of every `.crate`
/// (an attacker who edits a `.crate` keeps the manifest consistent).
fn write_consistent_bundle(path: &Path, mut entries: Vec<(String, Vec<u8>)>) {
    let digests: BTreeMap<String, String> = entries
        .iter()
        .filter(|(p, _)| p.ends_with(".crate"))
        .map(|(p, b)| {
            (
                p.trim_start_matches("airlock-bundle/").to_owned(),
                sha256_hex(b),
            )
        })
        .collect();
    for (name, data) in &mut entries {
        if name == "airlock-bundle/manifest.json" {
            let mut manifest: Value = serde_json::from_slice(data).unwrap();
            for package in manifest["packages"].as_array_mut().unwrap() {
                let file = package["file"].as_str().unwrap().to_owned();
                package["sha256"] = json!(format!("sha256:{}", digests[&file]));
            }
            *data = serde_json::to_vec_pretty(&manifest).unwrap();
        }
    }
    let borrowed: Vec<(&str, &[u8])> = entries
        .iter()
        .map(|(p, b)| (p.as_str(), b.as_slice()))
        .collect();
    write_bundle(path, &borrowed);
}

/// The files of a `.crate` (gzipped tar), in order: (path, contents).
fn crate_entries(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    use std::io::Read;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut entries = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        entries.push((name, data));
    }
    entries
}

/// `git hash-object` of `bytes`: the blob id git gives that content.
fn git_blob_id(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("git")
        .args(["hash-object", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A copy of the bundle at `from` written to `to` with the git package's `.crate` files
/// changed by `edit` (the manifest kept consistent).
fn with_git_crate_edited(from: &Path, to: &Path, edit: impl Fn(&mut Vec<(String, Vec<u8>)>)) {
    let mut entries = bundle_entries(from);
    for (name, data) in &mut entries {
        if name.contains("crates/airlock-gitdep-") {
            let mut files = crate_entries(data);
            edit(&mut files);
            let refs: Vec<(&str, &[u8])> = files
                .iter()
                .map(|(p, b)| (p.as_str(), b.as_slice()))
                .collect();
            *data = crate_file(&refs);
        }
    }
    write_consistent_bundle(to, entries);
}

#[test]
fn git_packages_in_a_bundle_are_proven_against_the_locked_commit() {
    let Some(p) = project() else { return };
    run_expect(
        p.airlock()
            .args(["vendor", "-q", "--bundle", "deps.tar.zst"]),
        0,
    );
    let git = |args: &[&str]| {
        let (out, _) = run_expect(
            std::process::Command::new("git")
                .arg("-C")
                .arg(&p.git_repo)
                .args(args),
            0,
        );
        out.trim().to_owned()
    };
    let commit = git(&["rev-parse", "HEAD"]);
    let lib_blob = git(&["rev-parse", "HEAD:src/lib.rs"]);

    let verify = |bundle: &str| {
        let (code, stdout, stderr) = {
            let out = p
                .airlock()
                .args(["verify", "--bundle", bundle, "--format", "json"])
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        };
        assert_eq!(code, Some(1), "{bundle}: {stdout}\n{stderr}");
        let report: Value = serde_json::from_str(&stdout).unwrap();
        let findings = report["findings"].as_array().unwrap().clone();
        // Refused before anything is extracted, too.
        let target = format!("v-{bundle}");
        let (_, stderr) = run_expect(
            p.airlock()
                .args(["vendor", "--from-bundle", bundle, &target]),
            1,
        );
        assert!(stderr.contains("airlock-gitdep"), "{stderr}");
        assert!(!p.dir.join(&target).exists());
        findings
    };

    // A changed source file: its git blob id is not the one the commit's tree names.
    let evil = b"pub fn greeting() -> &'static str {\n    \"pwned\"\n}\n";
    with_git_crate_edited(
        &p.dir.join("deps.tar.zst"),
        &p.dir.join("modified.tar.zst"),
        |files| {
            for (name, data) in files.iter_mut() {
                if name.ends_with("/src/lib.rs") {
                    *data = evil.to_vec();
                }
            }
        },
    );
    let findings = verify("modified.tar.zst");
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0]["kind"], "file-modified");
    assert!(
        findings[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("crates/airlock-gitdep-0.2.0.crate/src/lib.rs"),
        "{findings:#?}"
    );
    assert_eq!(findings[0]["expected"], format!("blob {lib_blob}"));
    assert_eq!(findings[0]["actual"], format!("blob {}", git_blob_id(evil)));

    // What the bundle carries: the proof in the manifest and exactly the objects of the chain
    // (the commit and the trees down to the package's files; blob contents are in the .crate).
    let entries = bundle_entries(&p.dir.join("deps.tar.zst"));
    let manifest: Value = serde_json::from_slice(
        &entries
            .iter()
            .find(|(n, _)| n == "airlock-bundle/manifest.json")
            .unwrap()
            .1,
    )
    .unwrap();
    assert_eq!(manifest["format"], 2);
    let entry = manifest["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "airlock-gitdep")
        .unwrap();
    assert_eq!(entry["git"]["commit"], commit.as_str(), "{entry:#}");
    assert_eq!(entry["git"]["path_in_vcs"], "", "{entry:#}");
    let objects: Vec<String> = entries
        .iter()
        .filter_map(|(n, _)| n.strip_prefix("airlock-bundle/git/").map(str::to_owned))
        .collect();
    let mut expected = vec![
        commit.clone(),
        git(&["rev-parse", "HEAD^{tree}"]),
        git(&["rev-parse", "HEAD:src"]),
    ];
    expected.sort();
    assert_eq!(objects, expected);
    let clean =
        run_json(
            p.airlock()
                .args(["verify", "--bundle", "deps.tar.zst", "--format", "json"]),
        );
    assert_eq!(clean["ok"], true, "{clean:#}");

    // A file the commit does not have.
    with_git_crate_edited(
        &p.dir.join("deps.tar.zst"),
        &p.dir.join("added.tar.zst"),
        |files| {
            files.push((
                "airlock-gitdep-0.2.0/src/evil.rs".into(),
                b"pub fn evil() {}\n".to_vec(),
            ))
        },
    );
    let findings = verify("added.tar.zst");
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0]["kind"], "file-added");
    assert!(
        findings[0]["message"]
            .as_str()
            .unwrap()
            .contains(&format!("not a file of commit {commit}")),
        "{findings:#?}"
    );

    // The normalized Cargo.toml pointing the build script at a proven file.
    with_git_crate_edited(
        &p.dir.join("deps.tar.zst"),
        &p.dir.join("build.tar.zst"),
        |files| {
            for (name, data) in files.iter_mut() {
                if name.ends_with("/Cargo.toml") {
                    let text = String::from_utf8(data.clone()).unwrap();
                    assert!(text.contains("build = false"), "{text}");
                    *data = text
                        .replace("build = false", "build = \"src/lib.rs\"")
                        .into_bytes();
                }
            }
        },
    );
    let findings = verify("build.tar.zst");
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert!(
        findings[0]["message"]
            .as_str()
            .unwrap()
            .contains("compiles build from `src/lib.rs`"),
        "{findings:#?}"
    );

    // A tree object rewritten to name the changed file's blob: it no longer hashes to the id
    // its parent names.
    let src_tree = git(&["rev-parse", "HEAD:src"]);
    let mut entries = bundle_entries(&p.dir.join("modified.tar.zst"));
    for (name, data) in &mut entries {
        if name.ends_with(&src_tree) {
            let old = hex::decode(&lib_blob).unwrap();
            let new = hex::decode(git_blob_id(evil)).unwrap();
            let at = data.windows(20).position(|w| w == old.as_slice()).unwrap();
            data[at..at + 20].copy_from_slice(&new);
        }
    }
    write_consistent_bundle(&p.dir.join("forged.tar.zst"), entries);
    let findings = verify("forged.tar.zst");
    assert!(
        findings.iter().any(|f| f["message"]
            .as_str()
            .unwrap()
            .contains(&format!("git/{src_tree} does not hash to its name"))),
        "{findings:#?}"
    );

    // A bundle without the proof (as airlock wrote them before): the git package is unproven.
    let mut entries = bundle_entries(&p.dir.join("deps.tar.zst"));
    entries.retain(|(n, _)| !n.starts_with("airlock-bundle/git/"));
    for (name, data) in &mut entries {
        if name == "airlock-bundle/manifest.json" {
            let mut manifest: Value = serde_json::from_slice(data).unwrap();
            manifest["format"] = json!(1);
            for package in manifest["packages"].as_array_mut().unwrap() {
                package.as_object_mut().unwrap().remove("git");
            }
            *data = serde_json::to_vec_pretty(&manifest).unwrap();
        }
    }
    write_consistent_bundle(&p.dir.join("unproven.tar.zst"), entries);
    let findings = verify("unproven.tar.zst");
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0]["kind"], "source-mismatch");
    assert!(
        findings[0]["message"]
            .as_str()
            .unwrap()
            .contains("carries no proof"),
        "{findings:#?}"
    );
}
