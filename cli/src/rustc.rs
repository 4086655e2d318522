//! rustc's answers kept between runs: one small JSON file per toolchain and question in
//! `$XDG_CACHE_HOME/airlock/rustc` (else `~/.cache/airlock/rustc`), reused while the toolchain
//! that gave it is the same one, as cargo reuses its `target/.rustc_info.json`. `build`'s
//! toolchain probe and `vendor --platform`'s `--print cfg` queries keep theirs here.
//!
//! Only reads and writes those files: never runs rustc (the caller asks it and hands the
//! answer over), and keeps nothing when no cheap key can say an answer still holds
//! ([`Toolchain::identify`]). A kept answer that is missing, unreadable, not airlock's JSON or
//! under another key is no answer: rustc is asked again and the file rewritten.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Kept files are read whole; none is nearly this large (a target list is 20 KB).
const MAX_KEPT: u64 = 1 << 20;

/// Where rustc's answers are kept: `$XDG_CACHE_HOME/airlock/rustc`, else
/// `$HOME/.cache/airlock/rustc` (the XDG base directory spec's default), beside the base image
/// cache; outside every target directory, so a removed one (`cargo clean`, a fresh checkout)
/// costs nothing. `None` when neither variable names an absolute directory.
pub fn answers_dir() -> Option<PathBuf> {
    crate::workspace::user_cache_dir().map(|cache| cache.join("rustc"))
}

/// The `rustc` cargo runs: `$RUSTC`, else `rustc` (found on `PATH`).
pub fn program() -> OsString {
    std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into())
}

/// Which rustc gives the answers: what says answers kept under it still hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    key: String,
    /// The `rustc` run (`$RUSTC`, or `rustc` found on PATH).
    program: PathBuf,
}

impl Toolchain {
    /// The toolchain `rustc` (the name [`program`] returns) stands for, or `None` when nothing
    /// cheap can say which: cargo's own rule for its `.rustc_info.json`. Under rustup's
    /// environment (`cargo airlock …` runs through rustup's cargo proxy, which sets
    /// `RUSTUP_HOME` and `RUSTUP_TOOLCHAIN`, and the toolchain variable outranks every
    /// toolchain file, so the directory does not matter) the key is `RUSTUP_TOOLCHAIN`,
    /// `rustc` found on PATH (or `$RUSTC`) and the toolchain's own `bin/rustc`: path, size,
    /// inode, change and modification times of both. A toolchain updated, switched or
    /// reinstalled, or another `RUSTC`, gives another key. Without those variables `rustc` may
    /// be a proxy whose choice depends on files airlock does not read: no key, rustc is asked.
    pub fn identify(rustc: &OsStr) -> Option<Toolchain> {
        Toolchain::identify_in(rustc, |name| std::env::var_os(name))
    }

    /// [`Toolchain::identify`] with the environment `var`.
    fn identify_in(rustc: &OsStr, var: impl Fn(&str) -> Option<OsString>) -> Option<Toolchain> {
        use std::os::unix::fs::MetadataExt;
        let home = var("RUSTUP_HOME")?;
        let toolchain = var("RUSTUP_TOOLCHAIN")?;
        let real = Path::new(&home)
            .join("toolchains")
            .join(&toolchain)
            .join("bin/rustc");
        let program = crate::process::find_on_path(rustc)?;
        let stamp = |path: &Path| -> Option<String> {
            let meta = std::fs::metadata(path).ok()?;
            Some(format!(
                "{} {} {} {}.{} {}.{}",
                path.display(),
                meta.len(),
                meta.ino(),
                meta.ctime(),
                meta.ctime_nsec(),
                meta.mtime(),
                meta.mtime_nsec()
            ))
        };
        let key = format!(
            "airlock rustc probe 1\nRUSTUP_TOOLCHAIN={}\n{}\n{}",
            toolchain.to_string_lossy(),
            stamp(&program)?,
            stamp(&real)?
        );
        Some(Toolchain { key, program })
    }

    /// The answer to `question` kept in `dir` under this toolchain, if any.
    pub fn recall<T: DeserializeOwned>(&self, dir: &Path, question: &str) -> Option<T> {
        let (path, key) = self.file(dir, question);
        let text =
            crate::input::read_regular_to_string(&path, crate::input::Links::Refuse, MAX_KEPT)
                .ok()?;
        let kept: KeptFile<T> = serde_json::from_str(&text).ok()?;
        (kept.key == key).then_some(kept.answers)
    }

    /// `answers` to `question`, ready to be kept in `dir` ([`Kept::write`]).
    pub fn keep<T: Serialize>(&self, dir: &Path, question: &str, answers: &T) -> Result<Kept> {
        let (path, key) = self.file(dir, question);
        let bytes = serde_json::to_vec(&KeptFile {
            key,
            rustc: self.program.clone(),
            answers,
        })?;
        Ok(Kept { path, bytes })
    }

    /// The file that keeps the answer to `question`, named by a hash of its key, and that key.
    fn file(&self, dir: &Path, question: &str) -> (PathBuf, String) {
        let key = format!("{}\n{question}", self.key);
        let name = crate::digest::Sha256Digest::of(key.as_bytes()).hex();
        (dir.join(format!("rustc-{}.json", &name[..16])), key)
    }
}

/// What one file keeps.
#[derive(Serialize, Deserialize)]
struct KeptFile<T> {
    key: String,
    /// The `rustc` asked: the file goes when it does ([`Kept::write`]).
    #[serde(default)]
    rustc: PathBuf,
    answers: T,
}

/// The part of any kept file that says whose answers it holds.
#[derive(Deserialize)]
struct Whose {
    #[serde(default)]
    rustc: PathBuf,
}

/// A fresh answer and where [`Toolchain::recall`] looks for it next time.
#[derive(Debug)]
pub struct Kept {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl Kept {
    /// Writes it. One that cannot be written costs the next run a rustc start, nothing else:
    /// said with `-v`, never an error.
    pub fn write(&self) {
        if let Err(e) = crate::atomic::write_file(&self.path, &self.bytes) {
            crate::progress::detail(format!("rustc's answers not kept: {e:#}"));
        }
        // Answers of a rustc that is gone (a test's temporary wrapper, a removed compiler)
        // are never asked for again: removed, so the directory does not grow with them.
        let Some(Ok(entries)) = self.path.parent().map(std::fs::read_dir) else {
            return;
        };
        for path in entries.flatten().map(|entry| entry.path()) {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if path == self.path || !name.starts_with("rustc-") || !name.ends_with(".json") {
                continue;
            }
            let gone =
                crate::input::read_regular_to_string(&path, crate::input::Links::Refuse, MAX_KEPT)
                    .ok()
                    .and_then(|text| serde_json::from_str::<Whose>(&text).ok())
                    .is_some_and(|kept| !kept.rustc.as_os_str().is_empty() && !kept.rustc.exists());
            if gone {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rustup home holding the toolchains `one` and `two`, and a `rustc` beside it.
    fn rustup_home() -> (tempfile::TempDir, PathBuf) {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        for toolchain in ["one", "two"] {
            let bin = home.path().join("toolchains").join(toolchain).join("bin");
            std::fs::create_dir_all(&bin).unwrap();
            std::fs::write(bin.join("rustc"), format!("{toolchain}'s rustc\n")).unwrap();
        }
        let rustc = home.path().join("rustc");
        std::fs::write(&rustc, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&rustc, std::fs::Permissions::from_mode(0o755)).unwrap();
        (home, rustc)
    }

    fn identify(home: &Path, toolchain: &str, rustc: &Path) -> Option<Toolchain> {
        let home = home.as_os_str().to_owned();
        let toolchain = OsString::from(toolchain);
        Toolchain::identify_in(rustc.as_os_str(), |name| match name {
            "RUSTUP_HOME" => Some(home.clone()),
            "RUSTUP_TOOLCHAIN" => Some(toolchain.clone()),
            _ => None,
        })
    }

    #[test]
    fn an_answer_is_recalled_only_for_the_toolchain_and_question_that_gave_it() {
        let (home, rustc) = rustup_home();
        let dir = home.path().join("answers");
        let one = identify(home.path(), "one", &rustc).unwrap();
        assert_eq!(one.recall::<String>(&dir, "cfg"), None, "nothing kept yet");
        one.keep(&dir, "cfg", &"unix".to_owned()).unwrap().write();
        assert_eq!(one.recall::<String>(&dir, "cfg").as_deref(), Some("unix"));
        assert_eq!(
            identify(home.path(), "one", &rustc).unwrap(),
            one,
            "the same toolchain, the same key"
        );
        assert_eq!(one.recall::<String>(&dir, "cfg --target x"), None);

        // Another toolchain, another RUSTC: never the kept answer.
        let two = identify(home.path(), "two", &rustc).unwrap();
        assert_eq!(two.recall::<String>(&dir, "cfg"), None);
        let other = home.path().join("toolchains/two/bin/rustc");
        let via_other = identify(home.path(), "one", &other);
        // Not executable, so not a rustc at all.
        assert_eq!(via_other, None);

        // The toolchain updated in place (another size and times): asked again.
        std::fs::write(
            home.path().join("toolchains/one/bin/rustc"),
            "one's updated rustc\n",
        )
        .unwrap();
        let updated = identify(home.path(), "one", &rustc).unwrap();
        assert_ne!(updated, one);
        assert_eq!(updated.recall::<String>(&dir, "cfg"), None);

        // A toolchain rustup does not have, or no rustup environment: no key at all.
        assert_eq!(identify(home.path(), "three", &rustc), None);
        assert_eq!(
            Toolchain::identify_in(rustc.as_os_str(), |_| None),
            None,
            "without RUSTUP_HOME and RUSTUP_TOOLCHAIN"
        );
    }

    #[test]
    fn a_kept_file_that_is_not_airlocks_json_or_of_another_type_is_no_answer() {
        let (home, rustc) = rustup_home();
        let dir = home.path().join("answers");
        let one = identify(home.path(), "one", &rustc).unwrap();
        one.keep(&dir, "cfg", &vec!["unix".to_owned()])
            .unwrap()
            .write();
        assert_eq!(one.recall::<String>(&dir, "cfg"), None, "another type");
        let (path, _) = one.file(&dir, "cfg");
        std::fs::write(&path, "not json").unwrap();
        assert_eq!(one.recall::<Vec<String>>(&dir, "cfg"), None);
    }

    #[test]
    fn writing_removes_the_answers_of_a_rustc_that_is_gone() {
        let (home, rustc) = rustup_home();
        let dir = home.path().join("answers");
        let gone = home.path().join("rustc-gone");
        std::fs::copy(&rustc, &gone).unwrap();
        let by_gone = identify(home.path(), "one", &gone).unwrap();
        by_gone.keep(&dir, "cfg", &1).unwrap().write();
        std::fs::write(dir.join("rustc-unrelated.txt"), "kept").unwrap();
        std::fs::remove_file(&gone).unwrap();
        let one = identify(home.path(), "one", &rustc).unwrap();
        one.keep(&dir, "cfg", &2).unwrap().write();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        let (kept, _) = one.file(&dir, "cfg");
        let kept = kept.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(names, [kept, "rustc-unrelated.txt".to_owned()]);
    }
}
