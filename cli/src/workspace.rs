//! The user's Cargo workspace as airlock sees it: `cargo metadata`, the source date and
//! revision from git, and the `[workspace.metadata.airlock]` settings.
//!
//! Never builds, fetches or writes anything.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use cargo_metadata::{Metadata, MetadataCommand, Package};

use crate::process;

/// A loaded workspace.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// What `cargo metadata --no-deps` said.
    pub metadata: Metadata,
}

impl Workspace {
    /// Loads the workspace containing `manifest_path` (or the current directory's).
    ///
    /// Uses `--no-deps`, which needs no network and no lockfile resolution.
    pub fn load(manifest_path: Option<&Path>) -> Result<Workspace> {
        let mut cmd = MetadataCommand::new();
        cmd.no_deps();
        if let Some(path) = manifest_path {
            cmd.manifest_path(path);
        }
        let metadata = cmd.exec().map_err(|e| {
            let place = manifest_path
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "the current directory".to_owned());
            anyhow::anyhow!("cannot read the Cargo workspace at {place}: {e}")
        })?;
        Ok(Workspace { metadata })
    }

    /// A workspace from metadata already loaded (with or without `--no-deps`: the workspace's
    /// own fields are the same either way), so `build` asks cargo once.
    pub fn from_metadata(metadata: Metadata) -> Workspace {
        Workspace { metadata }
    }

    /// The workspace root directory.
    pub fn root(&self) -> &Path {
        self.metadata.workspace_root.as_std_path()
    }

    /// The target directory (honours `CARGO_TARGET_DIR` and `build.target-dir`).
    pub fn target_dir(&self) -> &Path {
        self.metadata.target_directory.as_std_path()
    }

    /// airlock's own scratch and output directory, `target/airlock`.
    pub fn airlock_dir(&self) -> PathBuf {
        self.target_dir().join("airlock")
    }

    /// The workspace's `Cargo.lock`.
    pub fn lockfile(&self) -> PathBuf {
        self.root().join("Cargo.lock")
    }

    /// The workspace's member packages, sorted by name.
    pub fn members(&self) -> Vec<&Package> {
        let mut members = self.metadata.workspace_packages();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        members
    }

    /// The `[workspace.metadata.airlock]` table, or the default settings when absent.
    pub fn airlock_metadata(&self) -> &serde_json::Value {
        self.metadata
            .workspace_metadata
            .get("airlock")
            .unwrap_or(&serde_json::Value::Null)
    }

    /// The source date: `SOURCE_DATE_EPOCH` if set, else the last commit's time, else 0.
    pub fn source_date_epoch(&self) -> Result<u64> {
        source_date_epoch(self.root())
    }

    /// The commit the workspace is at, when it is a git checkout.
    pub fn git_revision(&self) -> Option<String> {
        git_output(self.root(), &["rev-parse", "HEAD"])
    }
}

/// airlock's directory in the user's cache: `$XDG_CACHE_HOME/airlock`, else
/// `$HOME/.cache/airlock` (the XDG base directory spec's default); shared by every workspace,
/// and outside every target directory. `None` when neither variable names an absolute path.
pub fn user_cache_dir() -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
        .map(|cache| cache.join("airlock"))
}

/// `SOURCE_DATE_EPOCH` (reproducible-builds.org) if set, else the time of the last commit of
/// the git checkout at `dir`, else 0 (outside git, every build gets the same timestamp).
pub fn source_date_epoch(dir: &Path) -> Result<u64> {
    if let Ok(value) = std::env::var("SOURCE_DATE_EPOCH") {
        return value.trim().parse().map_err(|_| {
            crate::error::input(format!(
                "SOURCE_DATE_EPOCH is `{value}`, expected a whole number of seconds since 1970"
            ))
        });
    }
    Ok(git_output(dir, &["log", "-1", "--format=%ct"])
        .and_then(|s| s.parse().ok())
        .unwrap_or(0))
}

/// Runs git in `dir` and returns its trimmed stdout, or None when git or the repo is missing.
pub fn git_output(dir: &Path, args: &[&str]) -> Option<String> {
    let output = process::run_captured(Command::new("git").arg("-C").arg(dir).args(args)).ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// A `Cargo.lock` found without running cargo (see [`find_lockfile`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundLockfile {
    /// Where it is (it may not exist).
    pub path: PathBuf,
    /// Whether it is beside a workspace root's manifest, so cargo uses it; otherwise only the
    /// likely one, to be confirmed by `cargo metadata`.
    pub certain: bool,
}

/// `Cargo.lock` beside the manifest cargo starts from (`manifest_path`, else the first
/// `Cargo.toml` in the current directory or above it, cargo's `find_root_manifest_for_wd`),
/// found without `cargo metadata`, a process that takes longer to start than hashing a small
/// vendor directory.
///
/// Certain when that manifest is a workspace root: a `[workspace]` table, and no
/// `package.workspace` pointing elsewhere; cargo never looks further for the root of such a
/// manifest. Only likely for a package's manifest with neither, when a `Cargo.lock` is beside
/// it: cargo uses it unless a workspace further up claims the package as a member, which only
/// cargo knows. None for anything else (a member pointing elsewhere, an unreadable or invalid
/// manifest): then cargo answers, and reports what is wrong.
pub fn find_lockfile(manifest_path: Option<&Path>) -> Option<FoundLockfile> {
    let (manifest, certain) = start_manifest(manifest_path)?;
    let path = manifest.with_file_name("Cargo.lock");
    (certain || path.is_file()).then_some(FoundLockfile { path, certain })
}

/// The workspace root cargo most likely reports, without cargo: the directory of the manifest
/// [`find_lockfile`] starts from, when that is a workspace root or a package that names no
/// other root (with or without a `Cargo.lock` yet). A guess for work that a wrong answer only
/// makes slower; cargo's `workspace_root` is the answer.
pub fn likely_root(manifest_path: Option<&Path>) -> Option<PathBuf> {
    let (manifest, _) = start_manifest(manifest_path)?;
    manifest.parent().map(Path::to_path_buf)
}

/// The manifest cargo starts from, with whether it is certainly the workspace root (a
/// `[workspace]` table) rather than a package that may still be a member of one further up.
/// None for a member naming its root (`package.workspace`), and for a manifest that is
/// neither, unreadable or invalid.
fn start_manifest(manifest_path: Option<&Path>) -> Option<(PathBuf, bool)> {
    let cwd = std::env::current_dir().ok()?;
    let manifest = match manifest_path {
        // cargo's own check ("the manifest-path must be a path to a Cargo.toml file").
        Some(path) if path.file_name()? == "Cargo.toml" => normalized(&cwd.join(path)),
        Some(_) => return None,
        None => cwd
            .ancestors()
            .map(|dir| dir.join("Cargo.toml"))
            .find(|candidate| candidate.is_file())?,
    };
    let text = crate::input::read_regular_to_string(
        &manifest,
        crate::input::Links::Follow,
        crate::input::MAX_TEXT_INPUT,
    )
    .ok()?;
    let table: toml::Table = text.parse().ok()?;
    if table
        .get("package")
        .and_then(|package| package.get("workspace"))
        .is_some()
    {
        return None;
    }
    if table.get("workspace").is_some_and(toml::Value::is_table) {
        return Some((manifest, true));
    }
    (table.get("workspace").is_none() && table.get("package").is_some_and(toml::Value::is_table))
        .then_some((manifest, false))
}

/// `path` with `.` and `..` components resolved without reading the file system, as cargo
/// normalizes a `--manifest-path` (so the lockfile's path reads as `cargo metadata` gives it).
fn normalized(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `to` relative to the directory `from` (both absolute and free of `..`, as cargo metadata or
/// `canonicalize` give them), with `/` separators: `.`, `crates/app`, `../shared`. Written into
/// files that travel (SBOMs, a generated `Cargo.toml`) instead of this machine's paths.
pub fn relative_path(from: &Path, to: &Path) -> String {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_owned(); from.len() - common];
    parts.extend(
        to[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    }
}

/// Formats a Unix timestamp as RFC 3339 UTC (`2024-01-02T03:04:05Z`), as OCI `created`
/// fields want it.
pub fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Reads a JSON value's sub-table into a settings type, naming the table on error.
pub fn parse_settings<T: serde::de::DeserializeOwned + Default>(
    value: Option<&serde_json::Value>,
    table: &str,
) -> Result<T> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(T::default()),
        Some(v) => serde_json::from_value(v.clone())
            .with_context(|| format!("invalid `{table}` settings in Cargo.toml")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_name_no_absolute_location() {
        assert_eq!(relative_path(Path::new("/w/p"), Path::new("/w/p")), ".");
        assert_eq!(
            relative_path(Path::new("/w/p"), Path::new("/w/p/crates/app")),
            "crates/app"
        );
        assert_eq!(
            relative_path(Path::new("/w/p/xtask"), Path::new("/w/shared/lib")),
            "../../shared/lib"
        );
    }

    /// The lockfile is certain only beside a workspace root's manifest; beside a package's
    /// manifest it is a guess for cargo to confirm; for anything else cargo is asked.
    #[test]
    fn find_lockfile_certain_only_for_a_workspace_root() {
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path().join("ws");
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let manifest = dir.join("Cargo.toml");
        let lockfile = |text: &str| {
            std::fs::write(&manifest, text).unwrap();
            find_lockfile(Some(&manifest))
        };
        let found = |certain| {
            Some(FoundLockfile {
                path: dir.join("Cargo.lock"),
                certain,
            })
        };
        let package = "[package]\nname = \"a\"\nversion = \"0.1.0\"\n";
        assert_eq!(lockfile(&format!("{package}\n[workspace]\n")), found(true));
        assert_eq!(lockfile("[workspace]\nmembers = [\"sub\"]\n"), found(true));
        // A package whose root is elsewhere, or may be: cargo finds it.
        assert_eq!(lockfile(package), None);
        // Its directory is still the likely root, with or without a lockfile yet.
        assert_eq!(likely_root(Some(&manifest)), Some(dir.clone()));
        std::fs::write(dir.join("Cargo.lock"), "version = 4\n").unwrap();
        assert_eq!(lockfile(package), found(false));
        assert_eq!(
            lockfile(&format!("{package}workspace = \"..\"\n\n[workspace]\n")),
            None
        );
        assert_eq!(lockfile(&format!("{package}workspace = \"..\"\n")), None);
        assert_eq!(likely_root(Some(&manifest)), None);
        assert_eq!(lockfile("workspace = 1\n"), None);
        assert_eq!(lockfile("[workspace\n"), None);
        // The path as cargo normalizes it; a manifest not named Cargo.toml is cargo's to refuse.
        std::fs::write(&manifest, "[workspace]\n").unwrap();
        assert_eq!(
            find_lockfile(Some(&dir.join("sub/../Cargo.toml"))),
            found(true)
        );
        std::fs::write(dir.join("other.toml"), "[workspace]\n").unwrap();
        assert_eq!(find_lockfile(Some(&dir.join("other.toml"))), None);
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
