//! `cargo airlock init` on a fixture workspace.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::*;

/// A fake airlock checkout inside the project (`tools/airlock/cli`), as a git submodule would
/// be: a valid package named `cargo-airlock`, enough for init and `cargo metadata`.
fn airlock_submodule(project: &Path) -> PathBuf {
    let checkout = project.join("tools/airlock");
    fs::create_dir_all(checkout.join("cli/src")).unwrap();
    fs::write(
        checkout.join("cli/Cargo.toml"),
        "[package]\nname = \"cargo-airlock\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [lib]\nname = \"airlock\"\npath = \"src/lib.rs\"\n",
    )
    .unwrap();
    fs::write(checkout.join("cli/src/lib.rs"), "").unwrap();
    checkout
}

fn init_cmd(project: &Path) -> Command {
    let checkout = airlock_submodule(project);
    let mut cmd = airlock();
    cmd.arg("init")
        .arg("--manifest-path")
        .arg(project.join("Cargo.toml"))
        .args(["--ci", "github", "--ci", "gitlab", "--airlock-path"])
        .arg(checkout);
    cmd
}

/// `cargo-airlock` as `cargo install` leaves it: the binary in `<root>/bin/` and, when
/// `source` is given, cargo's install record `<root>/.crates2.json` naming that source (as
/// `cargo install --git URL` writes `git+URL#REV`).
fn installed_airlock(dir: &Path, source: Option<&str>) -> PathBuf {
    let bin = dir.join("install-root/bin");
    fs::create_dir_all(&bin).unwrap();
    let exe = bin.join("cargo-airlock");
    if fs::hard_link(airlock_bin(), &exe).is_err() {
        fs::copy(airlock_bin(), &exe).unwrap();
    }
    if let Some(source) = source {
        let info = |bin: &str| {
            serde_json::json!({
                "version_req": null, "bins": [bin], "features": [], "all_features": false,
                "no_default_features": false, "profile": "release",
                "target": "x86_64-unknown-linux-gnu", "rustc": "rustc 1.95.0"
            })
        };
        let record = serde_json::json!({ "installs": {
            "ripgrep 14.1.1 (registry+https://github.com/rust-lang/crates.io-index)": info("rg"),
            format!("cargo-airlock 0.1.0 ({source})"): info("cargo-airlock"),
        }});
        fs::write(dir.join("install-root/.crates2.json"), record.to_string()).unwrap();
    }
    exe
}

/// The installed binary run like [`airlock`]: a clean environment.
fn installed_cmd(exe: &Path) -> Command {
    let mut cmd = Command::new(exe);
    cmd.env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR");
    cmd
}

/// Every file under `dir` (but `target/`) with its contents.
fn snapshot(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_entry(|e| e.file_name() != "target")
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                e.path().strip_prefix(dir).unwrap().display().to_string(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn init_adds_xtask_alias_settings_and_workflows() {
    let (_guard, project) = copy_fixture("hello");
    let report = run_json(init_cmd(&project).args(["--format", "json"]));
    let actions: Vec<(String, String)> = report["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_owned(),
                f["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for (path, action) in [
        ("xtask/Cargo.toml", "created"),
        ("xtask/src/main.rs", "created"),
        (".github/workflows/airlock-release.yml", "created"),
        (".gitlab/airlock-release.yml", "created"),
        (".gitlab-ci.yml", "created"),
        (".cargo/config.toml", "created"),
        ("Cargo.toml", "updated"),
    ] {
        assert!(
            actions.contains(&(path.to_owned(), action.to_owned())),
            "{path} {action}: {actions:?}"
        );
    }

    let manifest: toml::Table = fs::read_to_string(project.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        manifest["workspace"]["members"].as_array().unwrap()[0].as_str(),
        Some("xtask")
    );
    let settings = &manifest["workspace"]["metadata"]["airlock"];
    assert_eq!(settings["targets"].as_array().unwrap().len(), 2);
    let config: toml::Table = fs::read_to_string(project.join(".cargo/config.toml"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        config["alias"]["xtask"].as_str(),
        Some("run --package xtask --")
    );
    let xtask: toml::Table = fs::read_to_string(project.join("xtask/Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let dep = &xtask["dependencies"]["airlock"];
    assert_eq!(dep["package"].as_str(), Some("cargo-airlock"));
    assert_eq!(dep["path"].as_str(), Some("../tools/airlock/cli"));

    for workflow in [
        ".github/workflows/airlock-release.yml",
        ".gitlab/airlock-release.yml",
    ] {
        let text = fs::read_to_string(project.join(workflow)).unwrap();
        // `${{ … }}` is GitHub's expression syntax; a bare `{{` is an unfilled template placeholder.
        assert!(
            !text.replace("${{", "").contains("{{"),
            "unfilled placeholder in {workflow}"
        );
        let docs = yaml_rust2::YamlLoader::load_from_str(&text)
            .unwrap_or_else(|e| panic!("{workflow} is not valid YAML: {e}"));
        let doc = &docs[0];
        let steps = if workflow.contains("github") {
            doc["jobs"]["airlock-release"]["steps"]
                .as_vec()
                .unwrap()
                .len()
        } else {
            doc["airlock-release"]["script"].as_vec().unwrap().len()
        };
        assert!(steps >= 5, "{workflow}: {steps} steps");
        assert!(text.contains("cargo xtask dist") && text.contains("cargo airlock verify"));
    }

    // cargo accepts the edited workspace: the xtask package is a member.
    let out = std::process::Command::new("cargo")
        .args([
            "metadata",
            "--no-deps",
            "--format-version",
            "1",
            "--manifest-path",
        ])
        .arg(project.join("Cargo.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"xtask")
            && names.contains(&"airlock-hello")
            && names.contains(&"cargo-airlock"),
        "{names:?}"
    );

    // Running it again changes nothing.
    let again = run_json(init_cmd(&project).args(["--format", "json"]));
    assert!(
        again["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["action"] == "unchanged"),
        "{again}"
    );
}

#[test]
fn init_never_overwrites_without_force() {
    let (_guard, project) = copy_fixture("hello");
    fs::create_dir_all(project.join("xtask/src")).unwrap();
    fs::write(
        project.join("xtask/src/main.rs"),
        "fn main() { /* mine */ }\n",
    )
    .unwrap();
    let before = fs::read_to_string(project.join("Cargo.toml")).unwrap();

    let (_, stderr) = run_expect(&mut init_cmd(&project), 2);
    assert!(
        stderr.contains("xtask/src/main.rs") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(
        fs::read_to_string(project.join("Cargo.toml")).unwrap(),
        before,
        "nothing written"
    );
    assert!(!project.join(".gitlab-ci.yml").exists());
    assert!(!project.join(".gitlab").exists());
    assert!(
        fs::read_to_string(project.join("xtask/src/main.rs"))
            .unwrap()
            .contains("mine")
    );

    let (stdout, _) = run_expect(init_cmd(&project).arg("--force"), 0);
    assert!(
        stdout.contains("overwritten") && stdout.contains("xtask/src/main.rs"),
        "{stdout}"
    );
    assert!(
        fs::read_to_string(project.join("xtask/src/main.rs"))
            .unwrap()
            .contains("airlock::release::dist")
    );
}

#[test]
fn init_keeps_an_existing_config_and_refuses_a_foreign_alias() {
    let (_guard, project) = copy_fixture("hello");
    fs::create_dir_all(project.join(".cargo")).unwrap();
    fs::write(
        project.join(".cargo/config.toml"),
        "# mine\n[alias]\nxtask = \"run -p tools --\"\nb = \"build\"\n",
    )
    .unwrap();
    let (_, stderr) = run_expect(&mut init_cmd(&project), 2);
    assert!(stderr.contains("alias `xtask`"), "{stderr}");

    fs::write(
        project.join(".cargo/config.toml"),
        "# mine\n[alias]\nb = \"build\"\n",
    )
    .unwrap();
    run_expect(&mut init_cmd(&project), 0);
    let text = fs::read_to_string(project.join(".cargo/config.toml")).unwrap();
    assert!(
        text.starts_with("# mine\n") && text.contains("b = \"build\""),
        "{text}"
    );
    assert!(
        text.contains("xtask = \"run --package xtask --\""),
        "{text}"
    );
}

#[test]
fn init_writes_its_workflows_beside_the_projects_own() {
    let (guard, project) = copy_fixture("hello");
    let exe = installed_airlock(
        guard.path(),
        Some(
            "git+https://example.invalid/airlock-rs/airlock?branch=main#0123456789abcdef0123456789abcdef01234567",
        ),
    );
    fs::create_dir_all(project.join(".github/workflows")).unwrap();
    let own_github = "name: release\non: push\njobs: {}\n";
    let own_gitlab = "stages: [test]\nunit:\n  stage: test\n  script: [cargo test]\n";
    fs::write(project.join(".github/workflows/release.yml"), own_github).unwrap();
    fs::write(project.join(".gitlab-ci.yml"), own_gitlab).unwrap();

    let (stdout, stderr) = run_expect(
        installed_cmd(&exe)
            .args([
                "init",
                "--ci",
                "github",
                "--ci",
                "gitlab",
                "--manifest-path",
            ])
            .arg(project.join("Cargo.toml")),
        0,
    );
    assert_eq!(
        fs::read_to_string(project.join(".github/workflows/release.yml")).unwrap(),
        own_github
    );
    assert_eq!(
        fs::read_to_string(project.join(".gitlab-ci.yml")).unwrap(),
        own_gitlab
    );
    assert!(
        project
            .join(".github/workflows/airlock-release.yml")
            .is_file()
    );
    assert!(project.join(".gitlab/airlock-release.yml").is_file());
    assert!(
        stdout.contains("kept") && stdout.contains("local: .gitlab/airlock-release.yml"),
        "{stdout}\n{stderr}"
    );
    let workflow: Vec<yaml_rust2::Yaml> = yaml_rust2::YamlLoader::load_from_str(
        &fs::read_to_string(project.join(".github/workflows/airlock-release.yml")).unwrap(),
    )
    .unwrap();
    assert_eq!(workflow[0]["name"].as_str(), Some("airlock release"));
}

#[test]
fn init_depends_on_the_source_airlock_was_installed_from() {
    let rev = "0123456789abcdef0123456789abcdef01234567";
    let cases = [
        (
            format!("git+https://example.invalid/airlock-rs/airlock?branch=main#{rev}"),
            format!(
                r#"airlock = {{ package = "cargo-airlock", git = "https://example.invalid/airlock-rs/airlock", rev = "{rev}" }}"#
            ),
            format!(
                "cargo install --locked --git https://example.invalid/airlock-rs/airlock --rev {rev} cargo-airlock"
            ),
        ),
        (
            "registry+https://github.com/rust-lang/crates.io-index".to_owned(),
            r#"airlock = { package = "cargo-airlock", version = "0.1.0" }"#.to_owned(),
            "cargo install --locked cargo-airlock --version 0.1.0".to_owned(),
        ),
    ];
    for (source, dependency, install) in cases {
        let (guard, project) = copy_fixture("hello");
        let exe = installed_airlock(guard.path(), Some(&source));
        run_expect(
            installed_cmd(&exe)
                .args([
                    "init",
                    "--ci",
                    "github",
                    "--ci",
                    "gitlab",
                    "--manifest-path",
                ])
                .arg(project.join("Cargo.toml")),
            0,
        );
        let xtask = fs::read_to_string(project.join("xtask/Cargo.toml")).unwrap();
        assert!(xtask.contains(&dependency), "{source}:\n{xtask}");
        for workflow in [
            ".github/workflows/airlock-release.yml",
            ".gitlab/airlock-release.yml",
        ] {
            let text = fs::read_to_string(project.join(workflow)).unwrap();
            assert!(text.contains(&install), "{source}: {workflow}:\n{text}");
        }
    }

    // Not installed by cargo (no record, or run from a target directory): the fix, nothing
    // written.
    let (guard, project) = copy_fixture("hello");
    let unrecorded = installed_airlock(guard.path(), None);
    let before = snapshot(&project);
    for exe in [unrecorded, airlock_bin()] {
        let (_, stderr) = run_expect(
            installed_cmd(&exe)
                .args(["init", "--ci", "github", "--manifest-path"])
                .arg(project.join("Cargo.toml")),
            2,
        );
        assert!(
            stderr.contains("not published on crates.io")
                && stderr.contains("--airlock-path")
                && stderr.contains("cargo install --locked --git"),
            "{stderr}"
        );
        assert!(snapshot(&project) == before, "init wrote something");
    }
}

#[test]
fn init_with_airlock_path_writes_paths_relative_to_the_workspace() {
    let (guard, project) = copy_fixture("multi-bin");
    let manifest = fs::read_to_string(project.join("Cargo.toml"))
        .unwrap()
        .replace(
            r#"members = ["alpha", "beta", "common"]"#,
            "members = [\n    \"alpha\",\n    \"beta\",\n    \"common\",\n]",
        );
    fs::write(project.join("Cargo.toml"), manifest).unwrap();
    run_expect(&mut init_cmd(&project), 0);

    let manifest = fs::read_to_string(project.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains(
            "members = [\n    \"alpha\",\n    \"beta\",\n    \"common\",\n    \"xtask\",\n]"
        ),
        "{manifest}"
    );
    let xtask: toml::Table = fs::read_to_string(project.join("xtask/Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        xtask["dependencies"]["airlock"]["path"].as_str(),
        Some("../tools/airlock/cli")
    );
    for workflow in [
        ".github/workflows/airlock-release.yml",
        ".gitlab/airlock-release.yml",
    ] {
        let text = fs::read_to_string(project.join(workflow)).unwrap();
        assert!(
            text.contains("cargo install --locked --path tools/airlock/cli\n"),
            "{workflow}:\n{text}"
        );
    }
    let here = project.canonicalize().unwrap();
    for (file, bytes) in snapshot(&project) {
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(&*here.to_string_lossy()) && !text.contains(&*project.to_string_lossy()),
            "{file} names this machine's path"
        );
    }

    // What a colleague's checkout sees: the same files at another path resolve.
    let moved = guard.path().join("a-colleagues-checkout-elsewhere");
    fs::rename(&project, &moved).unwrap();
    let (stdout, stderr) = run_expect(
        Command::new(env!("CARGO"))
            .args([
                "metadata",
                "--no-deps",
                "--format-version",
                "1",
                "--manifest-path",
            ])
            .arg(moved.join("Cargo.toml")),
        0,
    );
    assert!(
        stdout.contains("\"name\":\"xtask\"") && stdout.contains("\"name\":\"cargo-airlock\""),
        "{stdout}\n{stderr}"
    );
}

#[test]
fn init_refuses_a_checkout_outside_the_workspace_for_ci() {
    let (_guard, project) = copy_fixture("hello");
    let before = snapshot(&project);
    let (_, stderr) = run_expect(
        airlock()
            .args(["init", "--ci", "github", "--manifest-path"])
            .arg(project.join("Cargo.toml"))
            .arg("--airlock-path")
            .arg(repo_root()),
        2,
    );
    assert!(
        stderr.contains("outside the workspace") && stderr.contains("submodule"),
        "{stderr}"
    );
    assert!(snapshot(&project) == before, "init wrote something");

    // Without CI, a checkout elsewhere is a relative path too.
    run_expect(
        airlock()
            .args(["init", "--manifest-path"])
            .arg(project.join("Cargo.toml"))
            .arg("--airlock-path")
            .arg(repo_root()),
        0,
    );
    let xtask: toml::Table = fs::read_to_string(project.join("xtask/Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let path = xtask["dependencies"]["airlock"]["path"].as_str().unwrap();
    assert!(path.starts_with("../") && path.ends_with("/cli"), "{path}");
    assert_eq!(
        project.join("xtask").join(path).canonicalize().unwrap(),
        repo_root().join("cli").canonicalize().unwrap()
    );
}
