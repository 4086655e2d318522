//! Git dependencies at their locked commit, turned into a `.crate` as `cargo vendor` would see
//! them.
//!
//! `cargo vendor` copies a git package's files (those `cargo package` would list) and writes
//! its `Cargo.toml` normalized, as for publishing (cargo's `ops/vendor.rs`,
//! `prepare_for_vendor`). airlock gets the same files by asking cargo itself: the tree at the
//! locked commit comes out of cargo's git database with `git archive`, and
//! `cargo package --no-verify --exclude-lockfile` turns the package into a `.crate`, which is
//! then handled like a registry one (and travels in bundles as one). The proof of a git
//! dependency is its commit id: the tree is read from the commit `Cargo.lock` pins, and for a
//! bundle the objects that prove each file of the `.crate` against that commit are gathered
//! from the same database ([`super::git_proof`]).

use std::fs;
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::lock::{PackageId, Source};
use crate::process;
use crate::tarball::safe_entry_path;

use super::archive::{ArchiveKind, CrateArchive};
use super::git_proof;

/// Packages the git dependency `id` at its locked commit, using cargo's git database in
/// `cargo_home` (filled by `cargo fetch`) and `scratch` as a work directory. With `prove`, also
/// gathers the git objects that prove the `.crate`'s files against the commit, for a bundle
/// (see [`super::git_proof`]); a package that cannot be proven is then an error.
pub fn package_git_dependency(
    id: &PackageId,
    cargo_home: &Path,
    scratch: &Path,
    prove: bool,
) -> Result<CrateArchive> {
    let Source::Git { url, commit, .. } = &id.source else {
        anyhow::bail!("{id} is not a git dependency");
    };
    let db = find_database(cargo_home, commit)?.ok_or_else(|| {
        crate::error::input(format!(
            "{id}: commit {commit} of {url} is not in cargo's git cache ({}); run \
             `cargo fetch --locked` (or `cargo airlock vendor` without --offline)",
            cargo_home.join("git").join("db").display()
        ))
    })?;
    let tree = scratch.join("tree");
    let tar = process::run_captured(Command::new("git").arg("--git-dir").arg(&db).args([
        "archive",
        "--format=tar",
        commit,
    ]))
    .with_context(|| format!("{id}: cannot read commit {commit} from {}", db.display()))?
    .stdout;
    unpack_tree(&tar, &tree).with_context(|| format!("{id}: the tree of commit {commit}"))?;
    let manifest = find_package_manifest(&tree, &id.name)?.ok_or_else(|| {
        crate::error::input(format!(
            "{id}: no Cargo.toml with `name = \"{}\"` at commit {commit} of {url}",
            id.name
        ))
    })?;
    let target_dir = scratch.join("target");
    process::run_captured(
        process::cargo()
            .args(["package", "--no-verify", "--allow-dirty", "--offline"])
            .arg("--exclude-lockfile")
            .arg("--target-dir")
            .arg(&target_dir)
            .arg("--manifest-path")
            .arg(&manifest)
            .current_dir(&tree),
    )
    .with_context(|| format!("{id}: `cargo package` of the locked commit failed"))?;
    let crate_path = target_dir
        .join("package")
        .join(format!("{}.crate", id.dir_name()));
    let bytes = fs::read(&crate_path).with_context(|| {
        format!(
            "{id}: `cargo package` did not write {} (is the version at commit {commit} {}?)",
            crate_path.display(),
            id.version
        )
    })?;
    let mut archive = CrateArchive::new(
        id.clone(),
        ArchiveKind::Git,
        bytes,
        format!("{url}#{commit}"),
    );
    if prove {
        let path_in_vcs = git_proof::path_in_vcs(&tree, &manifest)?;
        let evidence = git_proof::gather(&archive, &db, commit, &path_in_vcs)?;
        archive.git_evidence = Some(Box::new(evidence));
    }
    Ok(archive)
}

/// The bare repository under `cargo_home/git/db/` that holds `commit`.
fn find_database(cargo_home: &Path, commit: &str) -> Result<Option<PathBuf>> {
    let root = cargo_home.join("git").join("db");
    let Ok(entries) = fs::read_dir(&root) else {
        return Ok(None);
    };
    let mut dbs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    dbs.sort();
    for db in dbs {
        let found = Command::new("git")
            .arg("--git-dir")
            .arg(&db)
            .args(["cat-file", "-e", &format!("{commit}^{{commit}}")])
            .stderr(std::process::Stdio::null())
            .status()
            .map_err(|e| {
                crate::error::environment(format!(
                    "cannot run `git` ({e}); git is needed to vendor git dependencies"
                ))
            })?;
        if found.success() {
            return Ok(Some(db));
        }
    }
    Ok(None)
}

/// Unpacks a `git archive` tar into `dest`: regular files, directories, and symbolic links
/// whose target stays inside the tree (git repositories use those for shared license files).
fn unpack_tree(tar_bytes: &[u8], dest: &Path) -> Result<()> {
    fs::create_dir_all(dest)?;
    let mut archive = tar::Archive::new(tar_bytes);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let relative = safe_entry_path(&raw, None).map_err(|e| {
            crate::error::check_failed(format!("refusing entry `{}`: {e}", raw.display()))
        })?;
        let path = dest.join(&relative);
        match entry.header().entry_type() {
            tar::EntryType::Directory => fs::create_dir_all(&path)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)?;
                }
                let mut file = fs::File::create(&path)?;
                std::io::copy(&mut entry, &mut file)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()?
                    .ok_or_else(|| anyhow::anyhow!("link `{}` has no target", raw.display()))?
                    .into_owned();
                if !link_stays_inside(&relative, &target) {
                    return Err(crate::error::check_failed(format!(
                        "refusing link `{}` -> `{}`: it points outside the repository",
                        raw.display(),
                        target.display()
                    )));
                }
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent)?;
                }
                std::os::unix::fs::symlink(&target, &path)?;
            }
            tar::EntryType::XGlobalHeader => {}
            _ => {
                return Err(crate::error::check_failed(format!(
                    "refusing entry `{}`: not a file, directory or link",
                    raw.display()
                )));
            }
        }
    }
    Ok(())
}

/// Whether the link at `link` (relative to the tree root) pointing at `target` resolves inside
/// the tree, judged lexically.
fn link_stays_inside(link: &Path, target: &Path) -> bool {
    let mut depth: Vec<&std::ffi::OsStr> = link
        .parent()
        .map(|p| p.components().map(|c| c.as_os_str()).collect())
        .unwrap_or_default();
    for component in target.components() {
        match component {
            Component::Normal(part) => depth.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if depth.pop().is_none() {
                    return false;
                }
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

/// The `Cargo.toml` in `tree` whose `[package] name` is `name` (skipping `target/` and `.git`).
fn find_package_manifest(tree: &Path, name: &str) -> Result<Option<PathBuf>> {
    let walker = walkdir::WalkDir::new(tree)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            let n = e.file_name();
            !(e.file_type().is_dir() && (n == "target" || n == ".git"))
        });
    for entry in walker {
        let entry = entry?;
        if entry.file_name() != "Cargo.toml" || !entry.file_type().is_file() {
            continue;
        }
        let Ok(text) = fs::read_to_string(entry.path()) else {
            continue;
        };
        let Ok(table) = text.parse::<toml::Table>() else {
            continue;
        };
        let package_name = table
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str());
        if package_name == Some(name) {
            return Ok(Some(entry.path().to_path_buf()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_must_stay_inside() {
        assert!(link_stays_inside(
            Path::new("crates/a/LICENSE"),
            Path::new("../../LICENSE")
        ));
        assert!(!link_stays_inside(
            Path::new("crates/a/LICENSE"),
            Path::new("../../../etc/passwd")
        ));
        assert!(!link_stays_inside(Path::new("x"), Path::new("/etc/passwd")));
    }
}
