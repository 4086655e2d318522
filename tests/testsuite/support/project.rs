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
    require_tool("git")?;
    let (temp, dir) = copy_fixture("vendoring");
    let git_repo = git_dependency(temp.path());
    let manifest = dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap().replace(
        "[dependencies]\n",
        &format!(
            "[dependencies]\nairlock-gitdep = {{ git = \"file://{}\" }}\n",
            git_repo.display()
        ),
    );
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
    let git = |args: &[&str]| {
        run_expect(
            Command::new("git")
                .args(args)
                .current_dir(&repo)
                .env("GIT_AUTHOR_DATE", "2024-01-01T00:00:00Z")
                .env("GIT_COMMITTER_DATE", "2024-01-01T00:00:00Z")
                .env("GIT_CONFIG_GLOBAL", "/dev/null"),
            0,
        )
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "-A"]);
    git(&[
        "-c",
        "user.name=airlock",
        "-c",
        "user.email=airlock@example.invalid",
        "-c",
        "commit.gpgsign=false",
        "commit",
        "-q",
        "-m",
        "gitdep",
    ]);
    repo
}
