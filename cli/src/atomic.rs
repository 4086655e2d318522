//! Outputs are never half-written: every file and directory is built at a temporary sibling
//! and renamed into place, so a failure or an interrupt leaves the previous output as it was.
//!
//! Every command writes through these helpers; nothing else in the crate creates outputs.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rayon::prelude::*;

/// Mode of ordinary output files.
pub const FILE_MODE: u32 = 0o644;
/// Mode of executable outputs and of output directories.
pub const EXEC_MODE: u32 = 0o755;

/// The directory a new sibling of `target` goes in, created if missing.
fn parent_of(target: &Path) -> Result<PathBuf> {
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent)
        .with_context(|| format!("cannot create directory {}", parent.display()))?;
    Ok(parent)
}

fn staging_prefix(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".to_owned());
    format!(".{name}.airlock-")
}

/// Writes a file through `write` into a temporary sibling of `path`, then renames it over
/// `path` with `mode`. On error nothing at `path` changes.
pub fn write_file_with(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut BufWriter<&File>) -> Result<()>,
) -> Result<()> {
    let parent = parent_of(path)?;
    let temp = tempfile::Builder::new()
        .prefix(&staging_prefix(path))
        .tempfile_in(&parent)
        .with_context(|| {
            format!(
                "cannot write {}: cannot create a file in {}",
                path.display(),
                parent.display()
            )
        })?;
    {
        let mut writer = BufWriter::with_capacity(256 * 1024, temp.as_file());
        write(&mut writer).with_context(|| format!("cannot write {}", path.display()))?;
        writer
            .flush()
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))?;
    temp.persist(path)
        .with_context(|| format!("cannot move the new {} into place", path.display()))?;
    Ok(())
}

/// Writes `bytes` to `path` atomically with mode 0644.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file_with(path, FILE_MODE, |w| Ok(w.write_all(bytes)?))
}

/// A directory being built beside its final place. [`StagedDir::commit`] swaps it in;
/// dropping it uncommitted removes it and leaves the target untouched.
pub struct StagedDir {
    staging: Option<tempfile::TempDir>,
    target: PathBuf,
}

impl StagedDir {
    /// Starts an empty directory that will replace `target`.
    pub fn new(target: &Path) -> Result<StagedDir> {
        let parent = parent_of(target)?;
        let staging = tempfile::Builder::new()
            .prefix(&staging_prefix(target))
            .tempdir_in(&parent)
            .with_context(|| {
                format!(
                    "cannot write {}: cannot create a directory in {}",
                    target.display(),
                    parent.display()
                )
            })?;
        Ok(StagedDir {
            staging: Some(staging),
            target: target.to_path_buf(),
        })
    }

    /// Where to write the new contents.
    pub fn path(&self) -> &Path {
        self.staging
            .as_ref()
            .map(|s| s.path())
            .unwrap_or(&self.target)
    }

    /// The final path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Moves the staged directory into place, replacing whatever was there.
    pub fn commit(mut self) -> Result<()> {
        let Some(staging) = self.staging.take() else {
            return Ok(());
        };
        let staged = staging.keep();
        let target = self.target.clone();
        let result = swap_into_place(&staged, &target);
        if result.is_err() {
            let _ = fs::remove_dir_all(&staged);
        }
        result
    }
}

/// Renames `staged` to `target`. An existing `target` is exchanged atomically
/// (`renameat2(RENAME_EXCHANGE)`) where the file system allows, then removed.
fn swap_into_place(staged: &Path, target: &Path) -> Result<()> {
    fs::set_permissions(staged, fs::Permissions::from_mode(EXEC_MODE))
        .with_context(|| format!("cannot set the mode of {}", staged.display()))?;
    let context = || format!("cannot move the new {} into place", target.display());
    match fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fs::rename(staged, target).with_context(context);
        }
        Err(e) => return Err(e).with_context(context),
        Ok(meta) if !meta.is_dir() => {
            anyhow::bail!(
                "{} exists and is not a directory; remove it or choose another output path",
                target.display()
            )
        }
        Ok(_) => {}
    }
    let exchanged = rustix::fs::renameat_with(
        rustix::fs::CWD,
        staged,
        rustix::fs::CWD,
        target,
        rustix::fs::RenameFlags::EXCHANGE,
    );
    match exchanged {
        Ok(()) => {
            // `staged` now holds the old output.
            remove_tree(staged)
                .with_context(|| format!("cannot remove the old {}", staged.display()))?;
        }
        Err(_) => {
            let backup = staged.with_extension("old");
            fs::rename(target, &backup).with_context(context)?;
            if let Err(e) = fs::rename(staged, target) {
                let _ = fs::rename(&backup, target);
                return Err(e).with_context(context);
            }
            let _ = remove_tree(&backup);
        }
    }
    Ok(())
}

/// Removes the directory tree at `dir` (never following links), its top-level entries in
/// parallel: a replaced vendor directory holds ten thousand files in a few hundred packages,
/// and unlinking them one after another was a quarter of a re-vendor.
fn remove_tree(dir: &Path) -> std::io::Result<()> {
    let entries: Vec<PathBuf> = fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    entries.par_iter().try_for_each(|entry| {
        if fs::symlink_metadata(entry)?.is_dir() {
            fs::remove_dir_all(entry)
        } else {
            fs::remove_file(entry)
        }
    })?;
    fs::remove_dir(dir)
}

impl Drop for StagedDir {
    fn drop(&mut self) {
        // TempDir's own Drop removes an uncommitted staging directory.
        self.staging.take();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_file(&path, b"old").unwrap();
        let err = write_file_with(&path, FILE_MODE, |w| {
            w.write_all(b"partial")?;
            anyhow::bail!("boom")
        });
        assert!(err.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temp file left"
        );
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, FILE_MODE);
    }

    #[test]
    fn staged_dir_replaces_or_leaves_target() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("layout");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("old"), b"1").unwrap();

        let staged = StagedDir::new(&target).unwrap();
        fs::write(staged.path().join("new"), b"2").unwrap();
        drop(staged);
        assert!(target.join("old").exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

        let staged = StagedDir::new(&target).unwrap();
        fs::write(staged.path().join("new"), b"2").unwrap();
        staged.commit().unwrap();
        assert!(!target.join("old").exists());
        assert!(target.join("new").exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn replaced_tree_is_removed_without_following_links() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"k").unwrap();
        let target = dir.path().join("vendor");
        for package in ["a", "b", "c"] {
            fs::create_dir_all(target.join(package).join("src/deep")).unwrap();
            fs::write(target.join(package).join("src/deep/lib.rs"), b"x").unwrap();
        }
        fs::write(target.join("top-level-file"), b"t").unwrap();
        std::os::unix::fs::symlink(&outside, target.join("link-to-dir")).unwrap();
        std::os::unix::fs::symlink(&outside, target.join("a/src/link")).unwrap();

        let staged = StagedDir::new(&target).unwrap();
        fs::write(staged.path().join("new"), b"2").unwrap();
        staged.commit().unwrap();
        let names: Vec<_> = fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["new"]);
        assert_eq!(fs::read(outside.join("keep")).unwrap(), b"k");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            2,
            "old tree left behind"
        );
    }
}
