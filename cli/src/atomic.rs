//! Outputs are never half-written: every file and directory is built at a temporary sibling
//! and renamed into place, so a failure or an interrupt leaves the previous output as it was.
//!
//! Every command writes through these helpers; nothing else in the crate creates outputs.
//!
//! Staging siblings are named `.<name>.airlock-<pid>-<random>`, after the process that owns
//! them. SIGINT and SIGTERM remove the process's own staging paths before it exits with 130 or
//! 143; a staging path whose owner no longer runs (a run killed with SIGKILL) is removed by the
//! next run that writes an output in the same directory. One owned by a live process is never
//! touched, nor is anything that does not carry a pid in its name. Pids are this pid
//! namespace's: two containers sharing a directory do not see each other's processes.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, Once};

use anyhow::{Context, Result};
use rayon::prelude::*;

use crate::{error, progress};

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
        .map_err(|e| error::write_failed(&parent, format!("cannot create the directory: {e}")))?;
    Ok(parent)
}

/// `.<name>.airlock-<pid>-`: this process's staging siblings of `target`.
fn staging_prefix(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".to_owned());
    format!(".{name}.airlock-{}-", std::process::id())
}

/// The pid in the name of a staging path (`.<name>.airlock-<pid>-<random>[.old]`), for any
/// output: every staging path in a directory is looked at once.
fn staging_owner(file_name: &str) -> Option<u32> {
    let rest = file_name.strip_prefix('.')?;
    let at = rest.find(".airlock-")?;
    if at == 0 {
        return None;
    }
    let (pid, _) = rest[at + ".airlock-".len()..].split_once('-')?;
    if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// Whether a process with this pid exists. `kill(pid, 0)` answers ESRCH only when there is
/// none; EPERM means it exists under another user, so it counts as alive.
fn process_is_alive(pid: u32) -> bool {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return true;
    };
    !matches!(
        rustix::process::test_kill_process(pid),
        Err(rustix::io::Errno::SRCH)
    )
}

/// Removes the staging paths beside `target` (of any output in that directory) whose owning
/// process no longer runs: left by a run that was killed before it could clean up. Returns how
/// many were removed; one that cannot be removed is reported and left. Each directory is
/// looked at once per process (a layout's blobs are written one by one into one directory).
pub fn remove_stale_staging(target: &Path) -> usize {
    let parent = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    static SCANNED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    {
        let mut scanned = SCANNED.lock().unwrap_or_else(|e| e.into_inner());
        if scanned.iter().any(|dir| dir == parent) {
            return 0;
        }
        scanned.push(parent.to_path_buf());
    }
    let Ok(entries) = fs::read_dir(parent) else {
        return 0;
    };
    let own = std::process::id();
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(staging_owner) else {
            continue;
        };
        if pid == own || process_is_alive(pid) {
            continue;
        }
        let path = entry.path();
        match remove_path(&path) {
            Ok(()) => {
                removed += 1;
                progress::detail(format!(
                    "removed {} (left by airlock process {pid}, which no longer runs)",
                    path.display()
                ));
            }
            Err(e) => progress::warn(format!(
                "cannot remove {} (left by airlock process {pid}): {e}",
                path.display()
            )),
        }
    }
    removed
}

/// Removes a file, a link or a directory tree (never following links).
fn remove_path(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => remove_tree(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// The staging paths this process has not yet moved into place or removed.
static LIVE_STAGING: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
/// Set once SIGINT or SIGTERM arrived: the process is cleaning up and about to exit.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn live_staging() -> MutexGuard<'static, Vec<PathBuf>> {
    LIVE_STAGING.lock().unwrap_or_else(|e| e.into_inner())
}

fn register(path: &Path) {
    install_signal_cleanup();
    live_staging().push(path.to_path_buf());
}

fn unregister(live: &mut Vec<PathBuf>, path: &Path) {
    live.retain(|p| p != path);
}

/// Installs, once per process, the SIGINT/SIGTERM handling that removes this process's
/// staging paths and exits with 128 + the signal number (130, 143), as a shell reports a
/// process the signal ended. Installed when the first output is staged, so commands that write
/// nothing keep the default disposition.
fn install_signal_cleanup() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
            Ok(signals) => signals,
            Err(e) => {
                progress::warn(format!(
                    "cannot handle SIGINT/SIGTERM ({e}); an interrupt may leave staging directories"
                ));
                return;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("airlock-signals".to_owned())
            .spawn(move || {
                if let Some(signal) = signals.forever().next() {
                    clean_up_and_exit(signal);
                }
            });
        if let Err(e) = spawned {
            progress::warn(format!("cannot start the signal thread: {e}"));
        }
    });
}

fn clean_up_and_exit(signal: i32) -> ! {
    INTERRUPTED.store(true, Ordering::SeqCst);
    // Held until exit: a commit waiting for it never starts its rename, and one under way
    // finishes first, so the target is either the old output or the whole new one.
    let live = live_staging();
    for path in live.iter() {
        // Other threads may still be writing into the tree: a few passes catch what they add.
        for _ in 0..5 {
            if remove_path(path).is_ok() && fs::symlink_metadata(path).is_err() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    std::process::exit(128 + signal)
}

/// Called by `main` before it returns: while an interrupt is being cleaned up, waits for the
/// signal thread to exit the process (with 130 or 143), so an error the interrupt caused in
/// the main thread (a child killed, a file removed) does not exit first with its own code.
pub fn wait_if_interrupted() {
    if INTERRUPTED.load(Ordering::SeqCst) {
        let _live = live_staging();
        loop {
            std::thread::park();
        }
    }
}

/// Writes a file through `write` into a temporary sibling of `path`, then renames it over
/// `path` with `mode`. On error nothing at `path` changes.
pub fn write_file_with(
    path: &Path,
    mode: u32,
    write: impl FnOnce(&mut BufWriter<&File>) -> Result<()>,
) -> Result<()> {
    let parent = parent_of(path)?;
    remove_stale_staging(path);
    let temp = tempfile::Builder::new()
        .prefix(&staging_prefix(path))
        .tempfile_in(&parent)
        .map_err(|e| {
            error::write_failed(
                path,
                format!("cannot create a file in {}: {e}", parent.display()),
            )
        })?;
    let staged = temp.path().to_path_buf();
    let _registration = Registration::new(&staged);
    {
        let mut writer = BufWriter::with_capacity(256 * 1024, temp.as_file());
        write(&mut writer).with_context(|| format!("cannot write {}", path.display()))?;
        writer.flush().map_err(|e| error::write_failed(path, e))?;
    }
    temp.as_file()
        .set_permissions(fs::Permissions::from_mode(mode))
        .map_err(|e| error::write_failed(path, format!("cannot set its mode: {e}")))?;
    let mut live = live_staging();
    let persisted = temp.persist(path);
    unregister(&mut live, &staged);
    drop(live);
    persisted.map_err(|e| {
        error::write_failed(path, format!("cannot move it into place: {}", e.error))
    })?;
    Ok(())
}

/// A staging path known to the interrupt cleanup until this is dropped.
#[derive(Debug)]
struct Registration(PathBuf);

impl Registration {
    fn new(path: &Path) -> Registration {
        register(path);
        Registration(path.to_path_buf())
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        unregister(&mut live_staging(), &self.0);
    }
}

/// Writes `bytes` to `path` atomically with mode 0644.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    write_file_with(path, FILE_MODE, |w| Ok(w.write_all(bytes)?))
}

/// A file written now at a temporary sibling of its final place and moved there later
/// ([`StagedFile::commit`]), or never: dropped uncommitted, it is removed and the target
/// stays as it was. A file that is never committed (a scratch copy) names a target only to
/// be staged, and cleaned up, as outputs are.
#[derive(Debug)]
pub struct StagedFile {
    temp: tempfile::NamedTempFile,
    target: PathBuf,
    _registration: Registration,
}

impl StagedFile {
    /// Starts an empty file that will replace `target`: beside it when its directory
    /// exists, else in the temporary directory (nothing is created where the output goes
    /// until it is committed).
    pub fn new(target: &Path) -> Result<StagedFile> {
        let parent = match target.parent() {
            Some(p) if p.as_os_str().is_empty() => PathBuf::from("."),
            Some(p) if p.is_dir() => p.to_path_buf(),
            _ => std::env::temp_dir(),
        };
        if parent == target.parent().unwrap_or(Path::new("")) {
            remove_stale_staging(target);
        }
        let temp = tempfile::Builder::new()
            .prefix(&staging_prefix(target))
            .tempfile_in(&parent)
            .map_err(|e| {
                error::write_failed(
                    target,
                    format!("cannot create a file in {}: {e}", parent.display()),
                )
            })?;
        Ok(StagedFile {
            _registration: Registration::new(temp.path()),
            temp,
            target: target.to_path_buf(),
        })
    }

    /// The staged file, to write (or read back).
    pub fn file(&self) -> &File {
        self.temp.as_file()
    }

    /// Where the staged file is.
    pub fn path(&self) -> &Path {
        self.temp.path()
    }

    /// Moves the staged file into place with `mode`, replacing whatever was there.
    pub fn commit(self, mode: u32) -> Result<()> {
        let target = self.target.clone();
        self.temp
            .as_file()
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| error::write_failed(&target, format!("cannot set its mode: {e}")))?;
        let staged = self.temp.path().to_path_buf();
        let same_directory = staged.parent() == target.parent();
        if !same_directory {
            // Staged elsewhere (perhaps on another file system): copied into place.
            let mut file = self
                .temp
                .reopen()
                .map_err(|e| error::write_failed(&staged, e))?;
            return write_file_with(&target, mode, |w| {
                std::io::copy(&mut file, w)?;
                Ok(())
            });
        }
        let mut live = live_staging();
        let persisted = self.temp.persist(&target);
        unregister(&mut live, &staged);
        drop(live);
        persisted.map_err(|e| {
            error::write_failed(&target, format!("cannot move it into place: {}", e.error))
        })?;
        Ok(())
    }
}

/// A directory being built beside its final place. [`StagedDir::commit`] swaps it in;
/// dropping it uncommitted removes it and leaves the target untouched.
pub struct StagedDir {
    staging: Option<tempfile::TempDir>,
    target: PathBuf,
    _registration: Registration,
}

impl StagedDir {
    /// Starts an empty directory that will replace `target`, first removing staging
    /// directories of `target` that earlier, killed runs left.
    pub fn new(target: &Path) -> Result<StagedDir> {
        let parent = parent_of(target)?;
        remove_stale_staging(target);
        let staging = tempfile::Builder::new()
            .prefix(&staging_prefix(target))
            .tempdir_in(&parent)
            .map_err(|e| {
                error::write_failed(
                    target,
                    format!("cannot create a directory in {}: {e}", parent.display()),
                )
            })?;
        Ok(StagedDir {
            _registration: Registration::new(staging.path()),
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
///
/// The renames happen under the staging lock, so an interrupt either finds the new tree still
/// staged (and removes it) or already in place (and removes only the old one).
fn swap_into_place(staged: &Path, target: &Path) -> Result<()> {
    fs::set_permissions(staged, fs::Permissions::from_mode(EXEC_MODE))
        .map_err(|e| error::write_failed(staged, format!("cannot set its mode: {e}")))?;
    let context = |e: std::io::Error| {
        error::write_failed(target, format!("cannot move the new one into place: {e}"))
    };
    let mut live = live_staging();
    match fs::symlink_metadata(target) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::rename(staged, target).map_err(context)?;
            unregister(&mut live, staged);
            return Ok(());
        }
        Err(e) => return Err(context(e)),
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
    // What is left to remove: the old output, still registered so an interrupt removes it.
    let old = match exchanged {
        Ok(()) => staged.to_path_buf(),
        Err(_) => {
            let backup = staged.with_extension("old");
            fs::rename(target, &backup).map_err(context)?;
            live.push(backup.clone());
            if let Err(e) = fs::rename(staged, target) {
                let _ = fs::rename(&backup, target);
                unregister(&mut live, &backup);
                return Err(context(e));
            }
            unregister(&mut live, staged);
            backup
        }
    };
    drop(live);
    let removed = remove_tree(&old);
    unregister(&mut live_staging(), &old);
    removed.with_context(|| format!("cannot remove the old {}", old.display()))
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

    /// A pid that no process has: a child that ran and was reaped.
    fn dead_pid() -> u32 {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        pid
    }

    #[test]
    fn staging_names_carry_the_owner_pid() {
        let dir = tempfile::tempdir().unwrap();
        let staged = StagedDir::new(&dir.path().join("dist")).unwrap();
        let name = staged.path().file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with(&format!(".dist.airlock-{}-", std::process::id())),
            "{name}"
        );
        assert_eq!(staging_owner(".dist.airlock-42-Ab3x"), Some(42));
        assert_eq!(staging_owner(".dist.airlock-42-Ab3x.old"), Some(42));
        assert_eq!(staging_owner(".deps.tar.zst.airlock-7-Ab3x"), Some(7));
        assert_eq!(staging_owner(".dist.airlock-Ab3x"), None, "no pid");
        assert_eq!(staging_owner(".dist.airlock--x"), None);
        assert_eq!(staging_owner("..airlock-42-x"), None);
        assert_eq!(staging_owner("dist.airlock-42-x"), None);
        assert_eq!(staging_owner("dist"), None);
    }

    #[test]
    fn stale_staging_of_dead_owners_is_removed_and_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("vendor");
        let dead = dead_pid();
        let mut sleeper = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let live = sleeper.id();
        let own = std::process::id();
        for name in [
            format!(".vendor.airlock-{dead}-a1"),
            format!(".vendor.airlock-{live}-b2"),
            format!(".vendor.airlock-{own}-c3"),
            ".vendor.airlock-d4".to_owned(),
            format!(".image.airlock-{dead}-e5"),
        ] {
            fs::create_dir_all(dir.path().join(&name).join("pkg/src")).unwrap();
            fs::write(dir.path().join(&name).join("pkg/src/lib.rs"), b"x").unwrap();
        }
        fs::write(
            dir.path().join(format!(".vendor.airlock-{dead}-f6")),
            b"half",
        )
        .unwrap();

        assert_eq!(remove_stale_staging(&target), 3);
        assert_eq!(remove_stale_staging(&target), 0, "looked at once");
        sleeper.kill().unwrap();
        sleeper.wait().unwrap();
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected = vec![
            format!(".vendor.airlock-{live}-b2"),
            format!(".vendor.airlock-{own}-c3"),
            ".vendor.airlock-d4".to_owned(),
        ];
        expected.sort();
        assert_eq!(left, expected);
    }
}
