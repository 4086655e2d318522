//! The `vendoring` fixture with a git dependency on a repository made by the test, and what
//! the vendor and verify tests do with it: offline builds with an empty `CARGO_HOME`, trees
//! of file digests.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use super::{airlock, copy_fixture, require_tool, run_expect};

/// The fixture with a git dependency on a repository made here, its lockfile extended.
pub struct Project {
    /// Holds everything.
    pub temp: tempfile::TempDir,
    /// The project directory.
    pub dir: PathBuf,
    /// The git repository the project depends on.
    pub git_repo: PathBuf,
}

impl Project {
    /// `cargo-airlock` run in the project directory.
    pub fn airlock(&self) -> Command {
        let mut cmd = airlock();
        cmd.current_dir(&self.dir);
        cmd
    }

    /// A new empty directory inside the project's temporary directory.
    pub fn empty_dir(&self, name: &str) -> PathBuf {
        let dir = self.temp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}

/// The `vendoring` fixture plus a git dependency (None when git is missing and tools are not
/// required).
pub fn project() -> Option<Project> {
    project_with("")
}

/// [`project`] with `extra` appended to its `Cargo.toml` (more dependency tables), locked too.
pub fn project_with(extra: &str) -> Option<Project> {
    require_tool("git")?;
    let (temp, dir) = copy_fixture("vendoring");
    let git_repo = git_dependency(temp.path());
    let manifest = dir.join("Cargo.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap().replace(
        "[dependencies]\n",
        &format!(
            "[dependencies]\nairlock-gitdep = {{ git = \"file://{}\" }}\n",
            git_repo.display()
        ),
    );
    text.push_str(extra);
    std::fs::write(&manifest, text).unwrap();
    // Adds the git dependency to the committed Cargo.lock, keeping every other locked version.
    run_expect(
        Command::new(env!("CARGO"))
            .args(["fetch", "--quiet"])
            .current_dir(&dir),
        0,
    );
    Some(Project {
        temp,
        dir,
        git_repo,
    })
}

/// `cargo build --offline --frozen` with `CARGO_HOME` a new empty directory, then runs the
/// binary and returns its output.
pub fn offline_build_and_run(project: &Project, label: &str) -> String {
    let home = project.empty_dir(&format!("empty-cargo-home-{label}"));
    let target = project.temp.path().join(format!("target-{label}"));
    run_expect(
        Command::new(env!("CARGO"))
            .args(["build", "--offline", "--frozen", "--quiet"])
            .current_dir(&project.dir)
            .env("CARGO_HOME", &home)
            .env("CARGO_TARGET_DIR", &target)
            .env_remove("RUSTFLAGS"),
        0,
    );
    let (stdout, _) = run_expect(&mut Command::new(target.join("debug/vendoring")), 0);
    assert!(
        stdout.contains("vendoring ok: hello from git same_file=true family=unix"),
        "{stdout}"
    );
    stdout
}

/// Every file under `dir` with its contents' sha256.
pub fn tree(dir: &Path) -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.unwrap();
        if entry.file_type().is_file() {
            let relative = entry.path().strip_prefix(dir).unwrap();
            let bytes = std::fs::read(entry.path()).unwrap();
            files.insert(
                relative.to_string_lossy().into_owned(),
                hex::encode(Sha256::digest(&bytes)),
            );
        }
    }
    files
}

/// A git repository holding the crate `airlock-gitdep`, committed with fixed dates.
pub fn git_dependency(root: &Path) -> PathBuf {
    let repo = root.join("gitdep");
    std::fs::create_dir_all(repo.join("src")).unwrap();
    std::fs::write(
        repo.join("Cargo.toml"),
        "[package]\nname = \"airlock-gitdep\"\nversion = \"0.2.0\"\nedition = \"2021\"\n\
         license = \"MIT\"\ndescription = \"a git dependency made by airlock's tests\"\n\n\
         [dependencies]\n",
    )
    .unwrap();
    std::fs::write(
        repo.join("src/lib.rs"),
        "/// What the fixture prints.\npub fn greeting() -> &'static str {\n    \"hello from git\"\n}\n",
    )
    .unwrap();
    std::fs::write(repo.join(".gitignore"), "target\n").unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git_commit_all(&repo, "gitdep");
    repo
}

/// `git ARGS` in `repo` with no user configuration and fixed dates; returns stdout.
pub fn git(repo: &Path, args: &[&str]) -> String {
    run_expect(
        Command::new("git")
            .args(args)
            .current_dir(repo)
            .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
            .env("GIT_CONFIG_GLOBAL", "/dev/null"),
        0,
    )
    .0
}

/// Commits every change in `repo` and returns the new commit's id.
pub fn git_commit_all(repo: &Path, message: &str) -> String {
    git(repo, &["add", "-A"]);
    git(
        repo,
        &[
            "-c",
            "user.name=airlock",
            "-c",
            "user.email=airlock@example.invalid",
            "-c",
            "commit.gpgsign=false",
            "commit",
            "-q",
            "-m",
            message,
        ],
    );
    git(repo, &["rev-parse", "HEAD"]).trim().to_owned()
}

/// The version of `name` locked in this repository's own `Cargo.lock` (so a test that adds it
/// to a fixture finds it in cargo's cache, where building airlock put it).
pub fn repo_locked_version(name: &str) -> String {
    let lock: toml::Table = std::fs::read_to_string(super::repo_root().join("Cargo.lock"))
        .unwrap()
        .parse()
        .unwrap();
    lock["package"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some(name))
        .and_then(|p| p["version"].as_str())
        .unwrap_or_else(|| panic!("this repository's Cargo.lock does not lock {name}"))
        .to_owned()
}

/// This repository's own workspace with empty sources, in a new temporary directory: its real
/// `Cargo.lock` (about 200 crates: `windows-sys`, wasm-only crates, crates with `links`, build
/// scripts and C code, proc-macros) and its members' manifests, each target an empty file.
pub fn this_workspace_skeleton() -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::Builder::new()
        .prefix("airlock-skeleton-")
        .tempdir()
        .unwrap();
    let dir = temp.path().join("skeleton");
    let root = super::repo_root();
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["Cargo.toml", "Cargo.lock"] {
        std::fs::copy(root.join(file), dir.join(file)).unwrap();
    }
    let workspace: toml::Table = std::fs::read_to_string(root.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    for member in workspace["workspace"]["members"].as_array().unwrap() {
        let member = member.as_str().unwrap();
        let manifest_text = std::fs::read_to_string(root.join(member).join("Cargo.toml")).unwrap();
        let manifest: toml::Table = manifest_text.parse().unwrap();
        let member_dir = dir.join(member);
        std::fs::create_dir_all(member_dir.join("src")).unwrap();
        std::fs::write(member_dir.join("Cargo.toml"), &manifest_text).unwrap();
        // Every target an empty program or library, where the manifest puts it.
        let mut targets = vec![
            ("src/lib.rs".to_owned(), ""),
            ("src/main.rs".to_owned(), "fn main() {}\n"),
        ];
        for (kind, body) in [("lib", ""), ("bin", "fn main() {}\n"), ("test", "")] {
            let declared = match manifest.get(kind) {
                Some(toml::Value::Array(list)) => list.clone(),
                Some(one) => vec![one.clone()],
                None => Vec::new(),
            };
            for target in declared {
                if let Some(path) = target.get("path").and_then(|p| p.as_str()) {
                    targets.push((path.to_owned(), body));
                }
            }
        }
        for (path, body) in targets {
            let path = member_dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
    }
    (temp, dir)
}
