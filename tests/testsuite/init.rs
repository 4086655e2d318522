//! `cargo airlock init` on a fixture workspace.

use std::fs;

use crate::support::*;

fn init_cmd(project: &std::path::Path) -> std::process::Command {
    let mut cmd = airlock();
    cmd.arg("init")
        .arg("--manifest-path")
        .arg(project.join("Cargo.toml"))
        .args(["--ci", "github", "--ci", "gitlab", "--airlock-path"])
        .arg(repo_root());
    cmd
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
        (".github/workflows/release.yml", "created"),
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
    assert!(dep["path"].as_str().unwrap().ends_with("/cli"));

    for workflow in [".github/workflows/release.yml", ".gitlab-ci.yml"] {
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
            doc["jobs"]["release"]["steps"].as_vec().unwrap().len()
        } else {
            doc["release"]["script"].as_vec().unwrap().len()
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
        names.contains(&"xtask") && names.contains(&"airlock-hello"),
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

/// What a platform team does: `init`, then the generated `cargo xtask dist`, whose image runs.
#[test]
fn init_then_cargo_xtask_dist_releases_an_image_that_runs() {
    for tool in ["umoci", "runc", "skopeo"] {
        if require_tool(tool).is_none() {
            return;
        }
    }
    let (_guard, project) = copy_fixture("hello");
    run_expect(&mut init_cmd(&project), 0);
    let (stdout, stderr) = run_expect(
        std::process::Command::new("cargo")
            .args(["xtask", "dist"])
            .current_dir(&project)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS"),
        0,
    );
    assert!(
        stdout.contains("hello-0.3.1-aarch64-unknown-linux-musl.tar.gz"),
        "{stdout}\n{stderr}"
    );
    let dist = project.join("target/dist");
    for file in [
        "SHA256SUMS",
        "dist-manifest.json",
        "sbom.cdx.json",
        "image.tar",
        "size-report.md",
    ] {
        assert!(dist.join(file).is_file(), "{file} missing");
    }
    run_expect(
        airlock()
            .args(["verify", "--manifest"])
            .arg(dist.join("dist-manifest.json")),
        0,
    );

    // Only the fixture's binary is released, not the xtask.
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(dist.join("dist-manifest.json")).unwrap()).unwrap();
    let archives: Vec<&str> = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "archive")
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        archives,
        [
            "hello-0.3.1-aarch64-unknown-linux-musl.tar.gz",
            "hello-0.3.1-x86_64-unknown-linux-musl.tar.gz"
        ]
    );

    // umoci unpacks one platform: take the host's out of the index as skopeo would pull it.
    let single = project.join("single");
    run_expect(
        std::process::Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci:{}:0.3.1", dist.join("image").display()))
            .arg(format!("oci:{}:amd64", single.display())),
        0,
    );
    let bundle = project.join("bundle");
    crate::support::umoci_unpack(&single, "amd64", &bundle);
    let greeting = crate::support::runc_run(&bundle, &[]);
    assert_eq!(greeting, "hello from airlock-hello 0.3.1 on x86_64\n");
}
