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

    // `cargo install --path` of a checkout outside the workspace: fine locally (a relative
    // path), but no CI runner has it.
    let (guard, project) = copy_fixture("hello");
    let exe = installed_airlock(
        guard.path(),
        Some(&format!(
            "path+file://{}",
            repo_root().join("cli").display()
        )),
    );
    let (_, stderr) = run_expect(
        installed_cmd(&exe)
            .args(["init", "--ci", "gitlab", "--manifest-path"])
            .arg(project.join("Cargo.toml")),
        2,
    );
    assert!(
        stderr.contains("the install record") && stderr.contains("outside the workspace"),
        "{stderr}"
    );
    run_expect(
        installed_cmd(&exe)
            .args(["init", "--manifest-path"])
            .arg(project.join("Cargo.toml")),
        0,
    );
    let xtask: toml::Table = fs::read_to_string(project.join("xtask/Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let path = xtask["dependencies"]["airlock"]["path"].as_str().unwrap();
    assert!(path.starts_with("../"), "{path}");

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

/// The command that runs the real zig here: `python3 -m ziglang` or a `zig` on PATH.
fn real_zig() -> Option<Vec<String>> {
    let python = Command::new("python3")
        .args(["-c", "import sys, ziglang; print(sys.executable)"])
        .output()
        .ok()
        .filter(|o| o.status.success());
    if let Some(out) = python {
        let exe = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        return Some(vec![exe, "-m".into(), "ziglang".into()]);
    }
    airlock::process::find_on_path("zig").map(|z| vec![z.display().to_string()])
}

/// A directory holding a wheel of a stand-in `ziglang` package that runs `real_zig`, for
/// `pip install --no-index --find-links`: the workflows' pip steps run with no network.
fn ziglang_wheel(dir: &Path, real_zig: &[String]) -> PathBuf {
    let wheels = dir.join("wheels");
    fs::create_dir_all(&wheels).unwrap();
    let build = r#"
import base64, hashlib, sys, zipfile
out, real = sys.argv[1], sys.argv[2:]
info = "ziglang-0.0.1.dist-info/"
files = {
    "ziglang/__init__.py": "",
    "ziglang/__main__.py": "import os, sys\nreal = %r\nos.execvp(real[0], real + sys.argv[1:])\n" % (real,),
    info + "METADATA": "Metadata-Version: 2.1\nName: ziglang\nVersion: 0.0.1\n",
    info + "WHEEL": "Wheel-Version: 1.0\nGenerator: airlock-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
with zipfile.ZipFile(out + "/ziglang-0.0.1-py3-none-any.whl", "w") as wheel:
    for name, text in files.items():
        data = text.encode()
        wheel.writestr(name, data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append("%s,sha256=%s,%d" % (name, digest, len(data)))
    record.append(info + "RECORD,,")
    wheel.writestr(info + "RECORD", "\n".join(record) + "\n")
"#;
    run_expect(
        Command::new("python3")
            .args(["-c", build])
            .arg(&wheels)
            .args(real_zig),
        0,
    );
    wheels
}

/// A PATH for running workflow steps here: `sudo`, `apt-get`, `rustup` and `cargo install`
/// only log to `log` (they would change the machine or need the network); `python3` and `pip`
/// are Debian's, whose environment is externally managed (PEP 668) as on the CI runners; the
/// installed `cargo-airlock` is what `cargo airlock` finds.
fn workflow_path(dir: &Path, installed: &Path, log: &Path) -> std::ffi::OsString {
    let shims = dir.join("shims");
    fs::create_dir_all(&shims).unwrap();
    let logging = format!(
        "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> '{}'\n",
        log.display()
    );
    for tool in ["sudo", "apt-get", "rustup"] {
        fs::write(shims.join(tool), &logging).unwrap();
    }
    fs::write(
        shims.join("cargo"),
        format!(
            "#!/bin/sh\nif [ \"$1\" = install ]; then echo \"cargo $*\" >> '{}'; exit 0; fi\nexec '{}' \"$@\"\n",
            log.display(),
            env!("CARGO")
        ),
    )
    .unwrap();
    for (name, target) in [
        ("python3", "/usr/bin/python3"),
        ("pip", "/usr/bin/pip3"),
        ("pip3", "/usr/bin/pip3"),
    ] {
        std::os::unix::fs::symlink(target, shims.join(name)).unwrap();
    }
    for entry in fs::read_dir(&shims).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_symlink() {
            fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .unwrap();
        }
    }
    let mut paths = vec![shims, installed.parent().unwrap().to_path_buf()];
    paths.extend(std::env::split_paths(&std::env::var_os("PATH").unwrap()));
    std::env::join_paths(paths).unwrap()
}

/// Runs one shell step as a CI runner would (`bash -e`, pipefail) in `project`.
fn run_step(project: &Path, path: &std::ffi::OsString, env: &[(&str, &Path)], script: &str) {
    let mut cmd = Command::new("bash");
    cmd.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
        .current_dir(project)
        .env("PATH", path)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("CARGO_NET_GIT_FETCH_WITH_CLI", "true")
        .env("PIP_NO_INDEX", "1")
        .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_RUSTFLAGS")
        .env_remove("VIRTUAL_ENV");
    for (key, value) in env {
        cmd.env(key, value);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "step failed ({}):\n{script}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a platform team does: `init` with airlock installed from git, then the generated
/// workflows' steps, run here on the fixture: the GitHub job's steps in order (the image its
/// `cargo xtask dist` builds runs under runc), then the GitLab job's script, after which the
/// release still checks against its `SHA256SUMS`.
#[test]
fn init_then_the_generated_workflows_release_an_image_that_runs() {
    for tool in ["umoci", "runc", "skopeo", "git", "bash"] {
        if require_tool(tool).is_none() {
            return;
        }
    }
    let debian_venv = Command::new("/usr/bin/python3")
        .args(["-c", "import venv, ensurepip, pip"])
        .output();
    if !debian_venv.is_ok_and(|o| o.status.success()) {
        skip_or_fail("Debian's python3 with python3-venv and python3-pip is not installed");
        return;
    }
    let Some(zig) = real_zig() else {
        skip_or_fail("zig (`python3 -m ziglang` or `zig`) is not installed");
        return;
    };
    let (guard, project) = copy_fixture("hello");
    let tools = guard.path();
    // Installed from this repository's commit, as `cargo install --git` records it.
    let (head, _) = run_expect(
        Command::new("git")
            .arg("-C")
            .arg(repo_root())
            .args(["rev-parse", "HEAD"]),
        0,
    );
    let source = format!("git+file://{}#{}", repo_root().display(), head.trim());
    let installed = installed_airlock(tools, Some(&source));
    run_expect(
        installed_cmd(&installed)
            .args(["init", "--ci", "github", "--ci", "gitlab"])
            .current_dir(&project),
        0,
    );
    // The lockfile a user commits after the first local `cargo xtask dist`.
    run_expect(
        Command::new(env!("CARGO"))
            .args(["metadata", "--format-version", "1"])
            .current_dir(&project)
            .env("CARGO_NET_GIT_FETCH_WITH_CLI", "true"),
        0,
    );

    let github = fs::read_to_string(project.join(".github/workflows/airlock-release.yml")).unwrap();
    let github = &yaml_rust2::YamlLoader::load_from_str(&github).unwrap()[0];
    let steps = github["jobs"]["airlock-release"]["steps"].as_vec().unwrap();
    let gitlab = fs::read_to_string(project.join(".gitlab/airlock-release.yml")).unwrap();
    let gitlab = &yaml_rust2::YamlLoader::load_from_str(&gitlab).unwrap()[0];
    let script: Vec<&str> = gitlab["airlock-release"]["script"]
        .as_vec()
        .unwrap()
        .iter()
        .map(|line| line.as_str().unwrap())
        .collect();
    let include = fs::read_to_string(project.join(".gitlab-ci.yml")).unwrap();
    let include = &yaml_rust2::YamlLoader::load_from_str(&include).unwrap()[0];
    assert_eq!(
        include["include"][0]["local"].as_str(),
        Some(".gitlab/airlock-release.yml")
    );

    // Every shell step parses.
    let runs: Vec<&str> = steps.iter().filter_map(|s| s["run"].as_str()).collect();
    assert!(runs.len() >= 5, "{runs:?}");
    for script in runs.iter().copied().chain(script.iter().copied()) {
        run_expect(Command::new("bash").args(["-n", "-c", script]), 0);
    }

    // The GitHub job, step by step; `$GITHUB_PATH` carries PATH entries to later steps.
    let log = tools.join("stubbed.log");
    let wheels = ziglang_wheel(tools, &zig);
    let runner_temp = tools.join("runner-temp");
    fs::create_dir_all(&runner_temp).unwrap();
    let github_path = tools.join("github-path");
    let summary = tools.join("step-summary.md");
    fs::write(&github_path, "").unwrap();
    let base_path = workflow_path(tools, &installed, &log);
    for step in steps {
        let Some(run) = step["run"].as_str() else {
            continue;
        };
        if step["if"].as_str().is_some() {
            continue; // push: only on tags
        }
        let mut path: Vec<PathBuf> = fs::read_to_string(&github_path)
            .unwrap()
            .lines()
            .rev()
            .map(PathBuf::from)
            .collect();
        path.extend(std::env::split_paths(&base_path));
        let path = std::env::join_paths(path).unwrap();
        run_step(
            &project,
            &path,
            &[
                ("RUNNER_TEMP", &runner_temp),
                ("GITHUB_PATH", &github_path),
                ("GITHUB_STEP_SUMMARY", &summary),
                ("PIP_FIND_LINKS", &wheels),
            ],
            run,
        );
    }
    let stubbed = fs::read_to_string(&log).unwrap();
    assert!(
        stubbed.contains(&format!(
            "cargo install --locked --git file://{} --rev {} cargo-airlock",
            repo_root().display(),
            head.trim()
        )),
        "{stubbed}"
    );
    // zig came from the virtual environment, through the `zig` on PATH.
    let (version, _) = run_expect(Command::new(runner_temp.join("bin/zig")).arg("version"), 0);
    assert!(!version.trim().is_empty());
    assert!(runner_temp.join("ziglang/bin/python3").exists());
    assert!(
        fs::read_to_string(&summary).unwrap().contains('|'),
        "no size table in the step summary"
    );

    let dist = project.join("target/dist");
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
        ],
        "only the fixture's binary is released, not the xtask"
    );
    // umoci unpacks one platform: take the host's out of the index as skopeo would pull it.
    let single = tools.join("single");
    run_expect(
        Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci:{}:0.3.1", dist.join("image").display()))
            .arg(format!("oci:{}:amd64", single.display())),
        0,
    );
    let bundle = tools.join("bundle");
    crate::support::umoci_unpack(&single, "amd64", &bundle);
    let greeting = crate::support::runc_run(&bundle, &[]);
    assert_eq!(greeting, "hello from airlock-hello 0.3.1 on x86_64\n");

    // The GitLab job: its script lines share one shell.
    let gitlab_tools = tools.join("gitlab-tools");
    run_step(
        &project,
        &base_path,
        &[
            ("AIRLOCK_TOOLS", &gitlab_tools),
            ("CI_PROJECT_DIR", &project),
            ("PIP_FIND_LINKS", &wheels),
        ],
        &script.join("\n"),
    );
    let size_report = fs::read(dist.join("size-report.md")).unwrap();
    let sums = fs::read_to_string(dist.join("SHA256SUMS")).unwrap();
    let listed = sums
        .lines()
        .find(|l| l.ends_with("  size-report.md"))
        .unwrap();
    assert!(
        listed.starts_with(&airlock::Sha256Digest::of(&size_report).hex()),
        "size-report.md differs from SHA256SUMS"
    );
    run_expect(
        airlock()
            .args(["verify", "--sums"])
            .arg(dist.join("SHA256SUMS")),
        0,
    );
}
