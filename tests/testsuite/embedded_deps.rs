//! The dependency list `build` embeds in every binary (`.dep-v0`, cargo-auditable's format):
//! read back by `rust-audit-info` from crates.io and by `inspect`, compared with what cargo
//! itself says it compiles for the target (`cargo tree`).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::*;

const X86: &str = "x86_64-unknown-linux-musl";
const ARM: &str = "aarch64-unknown-linux-musl";

/// (name, version) of every package in a cargo-auditable list.
fn listed(list: &Value) -> BTreeSet<(String, String)> {
    list["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// What cargo compiles for the workspace's binary on `target`: `cargo tree` over normal and
/// build edges (its own resolver, feature- and platform-aware), as (name, version).
fn compiled_for(dir: &Path, target: &str) -> BTreeSet<(String, String)> {
    let (stdout, _) = run_expect(
        Command::new("cargo")
            .args(["tree", "--offline", "--locked", "--edges", "normal,build"])
            .args(["--prefix", "none", "--format", "{p}", "--target", target])
            .arg("--manifest-path")
            .arg(dir.join("Cargo.toml")),
        0,
    );
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next().unwrap().to_owned();
            let version = words.next().unwrap().trim_start_matches('v').to_owned();
            (name, version)
        })
        .collect()
}

#[test]
fn rust_audit_info_reads_exactly_what_is_compiled_for_each_target() {
    let Some(audit_info) = cargo_installed_tool("rust-audit-info", "0.5.4", "rust-audit-info")
    else {
        return;
    };
    // The vendoring fixture with a git dependency: registry, git and path packages.
    let Some(project) = project() else {
        return;
    };
    run_expect(
        project
            .airlock()
            .args(["build", "--target", X86, "--target", ARM, "--manifest-path"])
            .arg(project.dir.join("Cargo.toml")),
        0,
    );
    for target in [X86, ARM] {
        let binary = project
            .dir
            .join("target/airlock")
            .join(target)
            .join("vendoring");
        let (stdout, _) = run_expect(Command::new(&audit_info).arg(&binary), 0);
        let list: Value = serde_json::from_str(&stdout).unwrap();
        let packages = listed(&list);
        assert_eq!(packages, compiled_for(&project.dir, target), "{target}");
        let gitdep = list["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "airlock-gitdep")
            .unwrap();
        assert_eq!(gitdep["source"], "git");
        // same-file's Windows-only chain is locked but never compiled for Linux.
        let lock = std::fs::read_to_string(project.dir.join("Cargo.lock")).unwrap();
        assert!(lock.contains("name = \"winapi-util\""));
        assert!(
            !packages.iter().any(|(n, _)| n.starts_with("win")),
            "{packages:?}"
        );
        let roots: Vec<&Value> = list["packages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["root"] == true)
            .collect();
        assert_eq!(roots.len(), 1);
        assert_eq!(roots[0]["name"], "airlock-vendoring");
        assert_eq!(roots[0]["source"], "local");
        assert_eq!(list["format"], 1);

        // inspect reads the same list; cargo's own output was left as cargo wrote it.
        let report = run_json(airlock().args(["inspect", "--format", "json"]).arg(&binary));
        let deps = &report["files"][0]["dependencies"];
        assert_eq!(deps["status"], "present");
        assert_eq!(deps["packages"], list["packages"]);
        let cargo_output = project
            .dir
            .join("target")
            .join(target)
            .join("release/vendoring");
        let untouched = run_json(
            airlock()
                .args(["inspect", "--format", "json"])
                .arg(&cargo_output),
        );
        assert_eq!(untouched["files"][0]["dependencies"]["status"], "absent");
    }
}

#[test]
fn build_dependencies_are_marked_build_and_inspect_shows_them() {
    let build = fixture_build("with-c", X86);
    let binary = build.binary(X86, "with-c");
    let report = run_json(airlock().args(["inspect", "--format", "json"]).arg(&binary));
    let packages = report["files"][0]["dependencies"]["packages"]
        .as_array()
        .unwrap();
    let cc = packages.iter().find(|p| p["name"] == "cc").unwrap();
    assert_eq!(cc["kind"], "build");
    assert_eq!(cc["source"], "crates.io");
    let root = packages.iter().find(|p| p["root"] == true).unwrap();
    assert_eq!(root["name"], "airlock-with-c");
    assert!(root.get("kind").is_none(), "runtime is the default: {root}");
    // Everything but the root is reached only through the build-dependency.
    assert!(
        packages
            .iter()
            .filter(|p| p["root"] != true)
            .all(|p| p["kind"] == "build"),
        "{packages:?}"
    );

    let (human, _) = run_expect(airlock().arg("inspect").arg(&binary), 0);
    assert!(human.contains("packages embedded (.dep-v0)"), "{human}");
    let cc_row = human
        .lines()
        .find(|l| l.split_whitespace().next() == Some("cc"))
        .unwrap();
    assert!(
        cc_row.contains("crates.io") && cc_row.ends_with("build"),
        "{cc_row}"
    );
}

#[test]
fn no_embed_deps_leaves_the_section_out() {
    let (_guard, project) = copy_fixture("hello");
    run_expect(
        airlock()
            .args([
                "build",
                "--no-embed-deps",
                "--target",
                X86,
                "--manifest-path",
            ])
            .arg(project.join("Cargo.toml")),
        0,
    );
    let binary = project.join("target/airlock").join(X86).join("hello");
    let report = run_json(airlock().args(["inspect", "--format", "json"]).arg(&binary));
    assert_eq!(report["files"][0]["dependencies"]["status"], "absent");
    // The default build of the same fixture embeds it.
    let embedded = fixture_build("hello", X86).binary(X86, "hello");
    let report = run_json(
        airlock()
            .args(["inspect", "--format", "json"])
            .arg(&embedded),
    );
    assert_eq!(report["files"][0]["dependencies"]["status"], "present");
}

#[test]
fn an_undecodable_section_is_a_failed_check_naming_the_file() {
    let Some(objcopy) = require_tool("objcopy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("hello");
    std::fs::copy(fixture_build("hello", X86).binary(X86, "hello"), &binary).unwrap();
    let garbage = dir.path().join("garbage");
    std::fs::write(&garbage, b"this is not zlib").unwrap();
    run_expect(
        Command::new(objcopy)
            .arg(format!("--update-section=.dep-v0={}", garbage.display()))
            .arg(&binary),
        0,
    );
    let (stdout, _) = run_expect(airlock().arg("inspect").arg(&binary), 1);
    assert!(
        stdout.contains(&format!(
            "{}: its embedded dependency list (.dep-v0) cannot be read: not zlib data",
            binary.display()
        )),
        "{stdout}"
    );
}

#[test]
fn each_binarys_sbom_is_what_the_binary_holds() {
    let Some(project) = project() else {
        return;
    };
    let out = project.temp.path().join("dist");
    run_expect(
        project
            .airlock()
            .args(["dist", "--target", X86, "--no-image", "--out-dir"])
            .arg(&out)
            .arg("--manifest-path")
            .arg(project.dir.join("Cargo.toml")),
        0,
    );
    let binary = project
        .dir
        .join("target/airlock")
        .join(X86)
        .join("vendoring");
    let report = run_json(airlock().args(["inspect", "--format", "json"]).arg(&binary));
    let embedded = listed(&report["files"][0]["dependencies"]);
    let sbom_path = out.join(format!("vendoring-0.1.0-{X86}.cdx.json"));
    let sbom: Value = serde_json::from_slice(&std::fs::read(&sbom_path).unwrap()).unwrap();
    let components: BTreeSet<(String, String)> = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["version"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(components, embedded);
    assert!(!components.iter().any(|(n, _)| n.starts_with("win")));
    assert_eq!(sbom["metadata"]["component"]["name"], "vendoring");
    let anyhow = sbom["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "anyhow")
        .unwrap();
    assert_eq!(
        anyhow["purl"],
        format!("pkg:cargo/anyhow@{}", anyhow["version"].as_str().unwrap())
    );
    assert_eq!(anyhow["hashes"][0]["alg"], "SHA-256");
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(out.join("dist-manifest.json")).unwrap()).unwrap();
    let listed_sbom = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == format!("vendoring-0.1.0-{X86}.cdx.json"))
        .unwrap();
    assert_eq!(listed_sbom["kind"], "sbom-cyclonedx");
    assert_eq!(listed_sbom["target"], X86);

    let validator = Command::new("python3")
        .args(["-c", "import cyclonedx.validation.json"])
        .output();
    if !validator.is_ok_and(|o| o.status.success()) {
        skip_or_fail("the python package cyclonedx-python-lib is not installed");
        return;
    }
    let check = "import sys\nfrom cyclonedx.validation.json import JsonStrictValidator\nfrom cyclonedx.schema import SchemaVersion\n\
                 err = JsonStrictValidator(SchemaVersion.V1_5).validate_str(open(sys.argv[1]).read())\n\
                 sys.exit(f'invalid: {err}' if err else 0)";
    run_expect(
        Command::new("python3").args(["-c", check]).arg(&sbom_path),
        0,
    );
}
