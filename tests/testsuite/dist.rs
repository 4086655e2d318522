//! `cargo airlock dist`: the whole chain on a fixture, checked with the tools users trust
//! (sha256sum, tar, zstd, skopeo, umoci, runc, the CycloneDX and SPDX validators), run twice
//! for reproducibility, and tampered with for `verify`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// A copy of the hello fixture in a git repository with one commit at a fixed date.
fn hello_in_git() -> (tempfile::TempDir, PathBuf) {
    let (guard, project) = copy_fixture("hello");
    std::fs::write(project.join("README.md"), "# hello\n").unwrap();
    std::fs::write(project.join("LICENSE"), "MIT\n").unwrap();
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "commit",
            "-q",
            "-m",
            "release",
        ],
    ] {
        run_expect(
            Command::new("git")
                .arg("-C")
                .arg(&project)
                .args(args)
                .env("GIT_AUTHOR_DATE", "2024-03-01T12:00:00Z")
                .env("GIT_COMMITTER_DATE", "2024-03-01T12:00:00Z"),
            0,
        );
    }
    (guard, project)
}

fn dist(project: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut cmd = airlock();
    cmd.arg("dist")
        .arg("--manifest-path")
        .arg(project.join("Cargo.toml"))
        .arg("--out-dir")
        .arg(out)
        .args(extra)
        .env_remove("SOURCE_DATE_EPOCH");
    cmd
}

fn artifacts(report: &Value) -> BTreeMap<String, Value> {
    report["manifest"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["path"].as_str().unwrap().to_owned(), a.clone()))
        .collect()
}

#[test]
fn dist_writes_a_complete_reproducible_verifiable_release() {
    for tool in ["sha256sum", "tar", "zstd", "skopeo", "qemu-aarch64-static"] {
        if require_tool(tool).is_none() {
            return;
        }
    }
    let (_guard, project) = hello_in_git();
    let out = project.join("target/dist");
    let args = [
        "--target",
        "all",
        "--archive",
        "tar.gz",
        "--archive",
        "tar.zst",
        "--format",
        "json",
    ];
    let report = run_json(&mut dist(&project, &out, &args));

    // Every artifact is where the manifest says, with its digest; SHA256SUMS agrees with coreutils.
    let listed = artifacts(&report);
    for target in ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"] {
        for ext in ["tar.gz", "tar.zst"] {
            let name = format!("hello-0.3.1-{target}.{ext}");
            assert_eq!(listed[&name]["kind"], "archive", "{name}");
            assert_eq!(listed[&name]["target"], target);
        }
    }
    for name in [
        "sbom.cdx.json",
        "sbom.spdx.json",
        "image.tar",
        "size-report.md",
        "size-report.json",
        "size-report.svg",
        "SHA256SUMS",
    ] {
        assert!(listed.contains_key(name), "{name} missing from {listed:?}");
    }
    let (stdout, _) = run_expect(
        Command::new("sha256sum")
            .arg("-c")
            .arg("SHA256SUMS")
            .current_dir(&out),
        0,
    );
    // Every artifact but SHA256SUMS itself and the provenance (which records when it ran).
    assert_eq!(
        stdout.lines().filter(|l| l.ends_with(": OK")).count(),
        listed.len() - 2,
        "{stdout}"
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("dist-manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest, report["manifest"]);
    assert_eq!(manifest["source_date_epoch"], 1_709_294_400);
    assert_eq!(manifest["source_revision"].as_str().unwrap().len(), 40);

    // The archives are what their names say, hold the binary and the documents, and run.
    let (listing, _) = run_expect(
        Command::new("tar")
            .arg("-tzf")
            .arg(out.join("hello-0.3.1-x86_64-unknown-linux-musl.tar.gz")),
        0,
    );
    let top = "hello-0.3.1-x86_64-unknown-linux-musl";
    assert_eq!(
        listing.lines().collect::<Vec<_>>(),
        [
            format!("{top}/"),
            format!("{top}/LICENSE"),
            format!("{top}/README.md"),
            format!("{top}/hello")
        ]
    );
    let unpacked = project.join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    run_expect(
        Command::new("sh")
            .arg("-c")
            .arg("zstd -dc \"$1\" | tar -x -C \"$2\"")
            .arg("sh")
            .arg(out.join("hello-0.3.1-aarch64-unknown-linux-musl.tar.zst"))
            .arg(&unpacked),
        0,
    );
    let (greeting, _) = run_expect(
        Command::new("qemu-aarch64-static")
            .arg(unpacked.join("hello-0.3.1-aarch64-unknown-linux-musl/hello")),
        0,
    );
    assert_eq!(greeting, "hello from airlock-hello 0.3.1 on aarch64\n");

    // The image: a two-platform index, readable by skopeo, with both SBOMs attached.
    let image = &manifest["images"][0];
    assert_eq!(image["tag"], "0.3.1");
    assert_eq!(image["manifests"].as_object().unwrap().len(), 2);
    assert_eq!(image["sboms"].as_array().unwrap().len(), 2);
    let layout = out.join("image");
    let raw = run_expect(
        Command::new("skopeo")
            .arg("inspect")
            .arg("--raw")
            .arg(format!("oci:{}:0.3.1", layout.display())),
        0,
    )
    .0;
    let index: Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(
        index["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let index_json: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let sbom_entries: Vec<&Value> = index_json["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| {
            d["artifactType"]
                .as_str()
                .is_some_and(|t| t != "application/vnd.dev.cosign.artifact.att.v1+json")
        })
        .collect();
    assert_eq!(sbom_entries.len(), 2);
    for entry in sbom_entries {
        let hex = entry["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        let artifact: Value =
            serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap())
                .unwrap();
        assert_eq!(artifact["subject"]["digest"], image["digest"]);
    }

    // verify agrees with everything, then names every tampered file.
    for flag in ["--sums", "--manifest"] {
        let file = if flag == "--sums" {
            "SHA256SUMS"
        } else {
            "dist-manifest.json"
        };
        run_expect(airlock().args(["verify", flag]).arg(out.join(file)), 0);
    }
    run_expect(airlock().args(["verify", "--layout"]).arg(&layout), 0);
    // The release's layout needs no tag: the attached SBOMs are not images (the CI templates
    // rely on this for `report` and `push`).
    let (size, _) = run_expect(
        airlock().args(["report", "--format", "json"]).arg(&layout),
        0,
    );
    let size: Value = serde_json::from_str(&size).unwrap();
    assert_eq!(size["digest"], image["digest"]);

    // Same commit, another directory and time: the same bytes.
    let again = project.join("target/dist-again");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let report2 = run_json(&mut dist(&project, &again, &args));
    assert_eq!(
        std::fs::read_to_string(out.join("SHA256SUMS")).unwrap(),
        std::fs::read_to_string(again.join("SHA256SUMS")).unwrap()
    );
    // The images are the same; only the attached provenance (its run times) differs.
    let images = |r: &Value| {
        let mut images = r["manifest"]["images"].clone();
        images[0]["attestations"] = Value::Null;
        images
    };
    assert_eq!(images(&report2), images(&report));

    let archive = out.join("hello-0.3.1-x86_64-unknown-linux-musl.tar.gz");
    let mut bytes = std::fs::read(&archive).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&archive, bytes).unwrap();
    std::fs::remove_file(out.join("sbom.spdx.json")).unwrap();
    std::fs::write(out.join("stray.txt"), "not released").unwrap();
    let (stdout, _) = run_expect(
        airlock()
            .args(["verify", "--format", "json", "--manifest"])
            .arg(out.join("dist-manifest.json")),
        1,
    );
    let verdict: Value = serde_json::from_str(&stdout).unwrap();
    let findings: Vec<(String, String)> = verdict["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                Path::new(f["path"].as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            )
        })
        .collect();
    for expected in [
        (
            "file-modified",
            "hello-0.3.1-x86_64-unknown-linux-musl.tar.gz",
        ),
        ("file-missing", "sbom.spdx.json"),
        ("file-added", "stray.txt"),
    ] {
        assert!(
            findings.contains(&(expected.0.to_owned(), expected.1.to_owned())),
            "{expected:?} not in {findings:?}"
        );
    }
    run_expect(
        airlock()
            .args(["verify", "--sums"])
            .arg(out.join("SHA256SUMS")),
        1,
    );
}

#[test]
fn dist_sboms_pass_the_cyclonedx_and_spdx_validators() {
    let Some(_) = require_tool("pyspdxtools") else {
        return;
    };
    let cyclonedx_lib = Command::new("python3")
        .args(["-c", "import cyclonedx.validation.json"])
        .output();
    if !cyclonedx_lib.is_ok_and(|o| o.status.success()) {
        skip_or_fail("the python package cyclonedx-python-lib is not installed");
        return;
    }
    let (_guard, project) = copy_fixture("hello");
    let out = project.join("dist");
    run_expect(
        dist(
            &project,
            &out,
            &["--target", "x86_64-unknown-linux-musl", "--no-image"],
        )
        .env("SOURCE_DATE_EPOCH", "1700000000"),
        0,
    );
    let check = "import sys\nfrom cyclonedx.validation.json import JsonStrictValidator\nfrom cyclonedx.schema import SchemaVersion\n\
                 err = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\n\
                 sys.exit(f'invalid: {err}' if err else 0)";
    run_expect(
        Command::new("python3")
            .args(["-c", check])
            .arg(out.join("sbom.cdx.json")),
        0,
    );
    run_expect(
        Command::new("pyspdxtools")
            .arg("-i")
            .arg(out.join("sbom.spdx.json")),
        0,
    );
    // dist-manifest.json matches its committed JSON Schema (jsonschema comes with the
    // CycloneDX validator).
    let schema_check = "import json, sys, jsonschema\n\
                        jsonschema.validate(json.load(open(sys.argv[1])), json.load(open(sys.argv[2])))";
    run_expect(
        Command::new("python3")
            .args(["-c", schema_check])
            .arg(out.join("dist-manifest.json"))
            .arg(repo_root().join("docs/dist-manifest.schema.json")),
        0,
    );
    let cdx: Value =
        serde_json::from_slice(&std::fs::read(out.join("sbom.cdx.json")).unwrap()).unwrap();
    assert_eq!(cdx["metadata"]["timestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(cdx["components"][0]["name"], "airlock-hello");
    assert_eq!(cdx["components"][0]["type"], "application");
}

#[test]
fn a_failed_dist_leaves_the_previous_release_untouched() {
    let (_guard, project) = copy_fixture("hello");
    let out = project.join("dist");
    let args = ["--target", "x86_64-unknown-linux-musl", "--no-image"];
    run_expect(
        dist(&project, &out, &args).env("SOURCE_DATE_EPOCH", "1700000000"),
        0,
    );
    let before = std::fs::read(out.join("SHA256SUMS")).unwrap();

    // A compile error half-way: exit code of a failed build, old release intact.
    std::fs::write(
        project.join("src/main.rs"),
        "fn main() { this is not rust }\n",
    )
    .unwrap();
    let failed = dist(&project, &out, &args).output().unwrap();
    // A compile error is the input's fault: exit 2, as for any `cargo build` that fails.
    assert_eq!(failed.status.code(), Some(2));
    assert_eq!(std::fs::read(out.join("SHA256SUMS")).unwrap(), before);
    let siblings: Vec<_> = std::fs::read_dir(&project)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !siblings.iter().any(|n| n.contains("airlock-")),
        "staging left behind: {siblings:?}"
    );

    // Bad flags are input errors before any work.
    let (_, stderr) = run_expect(&mut dist(&project, &out, &["--archive", "zip"]), 2);
    assert!(
        stderr.contains("zip") && stderr.contains("tar.gz"),
        "{stderr}"
    );
}

/// The image of airlock itself (built statically from this repository, x86_64) runs under
/// runc and answers `--version`.
#[test]
fn airlocks_own_image_runs_in_runc() {
    for tool in ["umoci", "runc"] {
        if require_tool(tool).is_none() {
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("image");
    // A separate target directory: the test must not wait for (or disturb) the one this test
    // binary was built in.
    let target_dir = repo_root().join("target").join("selftest");
    run_expect(
        airlock()
            .args(["image", "-q", "--manifest-path"])
            .arg(repo_root().join("Cargo.toml"))
            .args([
                "-p",
                "cargo-airlock",
                "--bin",
                "cargo-airlock",
                "--target",
                "x86_64-unknown-linux-musl",
            ])
            .args(["--profile", "selftest", "--tag", "selftest", "--output"])
            .arg(&layout)
            .env("CARGO_TARGET_DIR", &target_dir),
        0,
    );
    let bundle = dir.path().join("bundle");
    crate::support::umoci_unpack(&layout, "selftest", &bundle);
    let version = crate::support::runc_run(&bundle, &["--version"]);
    assert_eq!(
        version.trim(),
        format!("cargo-airlock {}", env!("CARGO_PKG_VERSION"))
    );
}

/// A `cargo` for airlock's `CARGO` variable that runs the real one, except `cargo build`: that
/// writes its pid to `$AIRLOCK_TEST_MARKER` and sleeps, so a test can signal a `dist` that is
/// deterministically in the middle of its build, its staging directory already made.
fn blocking_cargo(dir: &Path) -> PathBuf {
    let script = dir.join("blocking-cargo");
    std::fs::write(
        &script,
        "#!/bin/sh\n\
         case \" $* \" in\n\
         *\" build \"*) echo $$ > \"$AIRLOCK_TEST_MARKER.tmp\"; mv \"$AIRLOCK_TEST_MARKER.tmp\" \"$AIRLOCK_TEST_MARKER\"; exec sleep 120;;\n\
         esac\n\
         exec \"$AIRLOCK_TEST_REAL_CARGO\" \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

/// A `dist` blocked in its build step: the airlock child and the blocked cargo's pid.
struct BlockedDist {
    child: std::process::Child,
    cargo_pid: String,
}

impl BlockedDist {
    fn start(project: &Path, out: &Path, cargo: &Path, label: &str) -> BlockedDist {
        let marker = project.join(format!("build-started-{label}"));
        let mut child = dist(project, out, &["--target", "x86_64-unknown-linux-musl"])
            .env("CARGO", cargo)
            .env("AIRLOCK_TEST_REAL_CARGO", env!("CARGO"))
            .env("AIRLOCK_TEST_MARKER", &marker)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
        while !marker.exists() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("dist exited with {status} before its build started");
            }
            assert!(std::time::Instant::now() < deadline, "build never started");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let cargo_pid = std::fs::read_to_string(&marker).unwrap().trim().to_owned();
        BlockedDist { child, cargo_pid }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (`TERM`, `INT`, `KILL`) and returns how the process ended.
    fn signal(mut self, signal: &str) -> std::process::ExitStatus {
        run_expect(
            Command::new("kill")
                .args(["-s", signal])
                .arg(self.pid().to_string()),
            0,
        );
        let status = self.child.wait().unwrap();
        let _ = Command::new("kill").arg(&self.cargo_pid).status();
        status
    }
}

/// Names in `dir` that are staging directories of `dist` (`.dist.airlock-<pid>-…`).
fn dist_staging(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".dist.airlock-"))
        .collect();
    names.sort();
    names
}

#[test]
fn an_interrupted_dist_removes_its_staging_and_keeps_the_old_release() {
    let (guard, project) = copy_fixture("hello");
    let cargo = blocking_cargo(guard.path());
    let target = project.join("target");
    let out = target.join("dist");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("SHA256SUMS"), "the previous release\n").unwrap();

    for (signal, code) in [("TERM", 143), ("INT", 130)] {
        let blocked = BlockedDist::start(&project, &out, &cargo, signal);
        let pid = blocked.pid();
        let staging = dist_staging(&target);
        assert_eq!(staging.len(), 1, "{staging:?}");
        assert!(
            staging[0].starts_with(&format!(".dist.airlock-{pid}-")),
            "the owner's pid is in the name: {staging:?}"
        );
        let status = blocked.signal(signal);
        assert_eq!(status.code(), Some(code), "SIG{signal}: {status}");
        assert_eq!(dist_staging(&target), Vec::<String>::new(), "SIG{signal}");
        assert_eq!(
            std::fs::read_to_string(out.join("SHA256SUMS")).unwrap(),
            "the previous release\n"
        );
    }
}

#[test]
fn dist_removes_what_a_killed_run_left_but_never_a_running_ones_staging() {
    let (guard, project) = copy_fixture("hello");
    let cargo = blocking_cargo(guard.path());
    let target = project.join("target");
    let out = target.join("dist");

    // SIGKILL leaves no chance to clean up: the staging directory stays, named for its owner.
    let killed = BlockedDist::start(&project, &out, &cargo, "killed");
    let killed_pid = killed.pid();
    let status = killed.signal("KILL");
    assert_eq!(status.code(), None);
    let left = dist_staging(&target);
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].starts_with(&format!(".dist.airlock-{killed_pid}-")));

    // The next run removes it; a third run, started while the second still runs, keeps the
    // second's.
    let second = BlockedDist::start(&project, &out, &cargo, "second");
    let third = BlockedDist::start(&project, &out, &cargo, "third");
    let owners: Vec<String> = dist_staging(&target)
        .iter()
        .map(|n| n.split('-').nth(1).unwrap().to_owned())
        .collect();
    let mut expected = vec![second.pid().to_string(), third.pid().to_string()];
    expected.sort();
    let mut owners_sorted = owners.clone();
    owners_sorted.sort();
    assert_eq!(owners_sorted, expected, "{owners:?}");

    assert_eq!(second.signal("TERM").code(), Some(143));
    assert_eq!(third.signal("TERM").code(), Some(143));
    assert_eq!(dist_staging(&target), Vec::<String>::new());
    assert!(!out.exists(), "no release was ever written");
}

/// A git repository holding `fixtures/<fixture>`, committed once at a fixed date.
fn fixture_in_git(fixture: &str) -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().unwrap();
    let origin = temp.path().join("origin");
    copy_dir(&fixture_path(fixture), &origin);
    for args in [
        &["init", "-q", "-b", "main"][..],
        &["add", "-A"],
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.invalid",
            "commit",
            "-q",
            "-m",
            "release",
        ],
    ] {
        run_expect(
            Command::new("git")
                .arg("-C")
                .arg(&origin)
                .args(args)
                .env("GIT_AUTHOR_DATE", "2024-03-01T12:00:00Z")
                .env("GIT_COMMITTER_DATE", "2024-03-01T12:00:00Z"),
            0,
        );
    }
    (temp, origin)
}

/// The bytes of `path`, decompressed when gzip or zstd (archives, layers), so a path inside a
/// compressed binary is found too.
fn readable_bytes(path: &Path) -> Vec<u8> {
    use std::io::Read;
    let bytes = std::fs::read(path).unwrap();
    let mut out = Vec::new();
    if bytes.starts_with(&[0x1f, 0x8b]) {
        flate2::read::MultiGzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .unwrap();
        out
    } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::stream::read::Decoder::new(&bytes[..])
            .unwrap()
            .read_to_end(&mut out)
            .unwrap();
        out
    } else {
        bytes
    }
}

#[test]
fn releases_of_two_clones_are_identical_and_name_neither_checkout() {
    for tool in ["git", "musl-gcc"] {
        if require_tool(tool).is_none() {
            return;
        }
    }
    let (temp, origin) = fixture_in_git("with-c");
    let clones = [
        temp.path().join("c1"),
        temp.path().join("a-second-clone-at-a-longer-path"),
    ];
    let mut releases = Vec::new();
    for clone in &clones {
        run_expect(
            Command::new("git")
                .args(["clone", "-q"])
                .arg(&origin)
                .arg(clone),
            0,
        );
        let out = clone.join("target/dist");
        // A fresh target directory in each clone (the helper removes CARGO_TARGET_DIR).
        let report = run_json(&mut dist(
            clone,
            &out,
            &["--target", "all", "--format", "json"],
        ));
        releases.push((out, report));
    }
    let (first, second) = (&releases[0], &releases[1]);
    assert_eq!(
        std::fs::read_to_string(first.0.join("SHA256SUMS")).unwrap(),
        std::fs::read_to_string(second.0.join("SHA256SUMS")).unwrap()
    );
    // The same images; only the attached provenance (its run times) differs.
    let images = |r: &Value| {
        let mut images = r["manifest"]["images"].clone();
        images[0]["attestations"] = Value::Null;
        images
    };
    assert_eq!(images(&first.1), images(&second.1));
    for name in ["sbom.cdx.json", "sbom.spdx.json"] {
        assert_eq!(
            std::fs::read(first.0.join(name)).unwrap(),
            std::fs::read(second.0.join(name)).unwrap(),
            "{name}"
        );
    }

    let needles: Vec<String> = clones
        .iter()
        .flat_map(|c| [c.clone(), c.canonicalize().unwrap()])
        .map(|c| c.to_string_lossy().into_owned())
        .collect();
    for (out, _) in &releases {
        for entry in walkdir::WalkDir::new(out) {
            let entry = entry.unwrap();
            if !entry.file_type().is_file() {
                continue;
            }
            let bytes = readable_bytes(entry.path());
            for needle in &needles {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                    "{} contains the checkout path {needle}",
                    entry.path().display()
                );
            }
        }
    }
}

#[test]
fn dist_report_step_says_what_it_measures() {
    let (_guard, project) = copy_fixture("hello");
    let out = project.join("target/dist");
    let shims = tempfile::tempdir().unwrap();
    let cargo_log = shims.path().join("cargo.log");
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let cargo = logging_shim(shims.path(), "cargo", &format!("'{cargo_bin}'"), &cargo_log);
    let (_, stderr) = run_expect(
        dist(
            &project,
            &out,
            &["-v", "--target", "x86_64-unknown-linux-musl"],
        )
        .env("CARGO", &cargo)
        .env("SOURCE_DATE_EPOCH", "1700000000"),
        0,
    );
    // After cargo builds: the SBOMs' resolve and the image step's workspace; the report step
    // is given the workspace dist loaded and runs none (it ran a third).
    let calls = logged(&cargo_log);
    let after_build: Vec<&String> = calls
        .iter()
        .skip_while(|c| !c.starts_with("build "))
        .filter(|c| c.starts_with("metadata "))
        .collect();
    assert_eq!(after_build.len(), 2, "{calls:#?}");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("dist-manifest.json")).unwrap()).unwrap();
    let manifest_digest = manifest["images"][0]["manifests"]["linux/amd64"]
        .as_str()
        .unwrap();
    let hex = manifest_digest.trim_start_matches("sha256:");
    let image: Value =
        serde_json::from_slice(&std::fs::read(out.join("image/blobs/sha256").join(hex)).unwrap())
            .unwrap();
    let layer = image["layers"][0]["digest"].as_str().unwrap();
    // Each layer, named with its platform, size and the work done on it, then the binary.
    assert!(
        stderr.contains(&format!("measuring layer 1/1 of linux/amd64 ({layer}, "))
            && stderr.contains("): recompressing with zstd -19"),
        "{stderr}"
    );
    assert!(
        stderr.contains("measuring linux/amd64: /usr/local/bin/hello (")
            && stderr.contains("stripped, with gzip -9 and zstd -19"),
        "{stderr}"
    );
}

/// `--strip none`: the archive holds the built binary byte for byte, streamed from it (no
/// stripped copy is made beside it, none is left), and no debug file is released.
#[test]
fn dist_strip_none_archives_the_binary_as_built() {
    let (_guard, project) = copy_fixture("hello");
    let out = project.join("target/dist");
    let report = run_json(
        dist(
            &project,
            &out,
            &[
                "--format",
                "json",
                "--target",
                "x86_64-unknown-linux-musl",
                "--strip",
                "none",
                "--archive",
                "tar.gz",
            ],
        )
        .env("SOURCE_DATE_EPOCH", "1700000000"),
    );
    let artifacts = artifacts(&report);
    assert!(
        artifacts.values().all(|a| a["kind"] != "debug-info"),
        "{artifacts:?}"
    );
    let built_dir = project.join("target/airlock/x86_64-unknown-linux-musl");
    let built = std::fs::read(built_dir.join("hello")).unwrap();
    let left: Vec<String> = std::fs::read_dir(&built_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name != "hello")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let archive = artifacts
        .keys()
        .find(|p| p.ends_with(".tar.gz"))
        .unwrap_or_else(|| panic!("no archive in {artifacts:?}"));
    let tar = readable_bytes(&out.join(archive));
    let mut entries = tar::Archive::new(tar.as_slice());
    let mut found = None;
    for entry in entries.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().ends_with("hello") {
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut bytes).unwrap();
            found = Some(bytes);
        }
    }
    assert!(
        found == Some(built),
        "the archived binary is not the one built"
    );
}
