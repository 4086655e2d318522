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
