//! `oci-archive:FILE`: an OCI layout in a tar, unpacked into a temporary directory to be read
//! as a layout. Only what a layout holds is taken (`oci-layout`, `index.json` and
//! `blobs/sha256/<64 hex>`, regular files); Docker's `manifest.json` and directories are
//! skipped, and anything else (a link, a device, a path that leaves the layout, a name twice)
//! refuses the archive. What is written never exceeds the archive's own size.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::path::Path;

use anyhow::{Context, Result};

use crate::error;
use crate::input::{self, Links, RegularFile};
use crate::tarball::safe_entry_path;

/// Unpacks the archive at `path` into a new temporary directory.
pub(super) fn unpack(path: &Path) -> Result<tempfile::TempDir> {
    unpack_in(path, &std::env::temp_dir())
}

/// Unpacks the archive at `path` into a new directory in `parent`.
fn unpack_in(path: &Path, parent: &Path) -> Result<tempfile::TempDir> {
    let shown = path.display();
    let RegularFile { file, size } = input::open_regular(path, Links::Follow)
        .with_context(|| format!("cannot read the base archive {shown}"))?;
    let dir = tempfile::Builder::new()
        .prefix("airlock-base-")
        .tempdir_in(parent)
        .context("cannot create a temporary directory for the base archive")?;
    fs::create_dir_all(dir.path().join("blobs").join("sha256"))
        .context("cannot create a temporary directory for the base archive")?;
    let refuse = |entry: &str, why: &str| {
        error::input(format!(
            "{shown}: entry `{entry}` {why}; an oci-archive holds an OCI layout (oci-layout, \
             index.json, blobs/sha256/<digest>) and nothing else"
        ))
    };
    let mut archive = tar::Archive::new(file.take(size));
    let mut seen = BTreeSet::new();
    let mut budget = size;
    let entries = archive
        .entries()
        .with_context(|| format!("{shown} is not a tar archive"))?;
    for entry in entries {
        let mut entry = entry.with_context(|| format!("{shown} is truncated or not a tar"))?;
        let raw = entry
            .path()
            .with_context(|| format!("{shown} has an entry with an unreadable path"))?
            .into_owned();
        let shown_entry = raw.display().to_string();
        let relative = safe_entry_path(&raw, None)
            .map_err(|e| refuse(&shown_entry, &format!("is refused: {e}")))?;
        let name = relative
            .to_str()
            .ok_or_else(|| refuse(&shown_entry, "is not a UTF-8 path"))?
            .to_owned();
        match entry.header().entry_type() {
            tar::EntryType::Directory | tar::EntryType::XGlobalHeader => continue,
            tar::EntryType::Regular | tar::EntryType::Continuous => {}
            _ => return Err(refuse(&shown_entry, "is not a regular file")),
        }
        if !wanted(&name) {
            continue;
        }
        if !seen.insert(name.clone()) {
            return Err(refuse(&shown_entry, "appears twice"));
        }
        let length = entry.header().size().unwrap_or(u64::MAX);
        if length > budget {
            return Err(refuse(&shown_entry, "is larger than the archive itself"));
        }
        budget -= length;
        let target = dir.path().join(&name);
        let mut out = fs::File::create(&target)
            .with_context(|| format!("cannot write {}", target.display()))?;
        let copied = io::copy(&mut (&mut entry).take(length), &mut out)
            .with_context(|| format!("{shown}: cannot read entry `{shown_entry}`"))?;
        if copied != length {
            return Err(refuse(&shown_entry, "is truncated"));
        }
    }
    if !seen.contains("index.json") {
        return Err(error::input(format!(
            "{shown} is not an oci-archive: it has no index.json"
        )));
    }
    Ok(dir)
}

/// `oci-layout`, `index.json`, or a blob named by a sha256 digest.
fn wanted(name: &str) -> bool {
    match name {
        "oci-layout" | "index.json" => true,
        _ => name.strip_prefix("blobs/sha256/").is_some_and(|hex| {
            hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Paths as a hostile archive would name them: layout names, `..`, absolute paths, dots.
    fn hostile_name() -> impl Strategy<Value = String> {
        let part = prop_oneof![
            Just("..".to_owned()),
            Just(".".to_owned()),
            Just("".to_owned()),
            Just("blobs".to_owned()),
            Just("sha256".to_owned()),
            Just("index.json".to_owned()),
            Just("oci-layout".to_owned()),
            Just(crate::digest::Sha256Digest::of(b"x").hex()),
            "[a-z.]{1,6}",
        ];
        (proptest::bool::ANY, prop::collection::vec(part, 1..5))
            .prop_map(|(absolute, parts)| {
                let joined = parts.join("/");
                if absolute {
                    format!("/{joined}")
                } else {
                    joined
                }
            })
            .prop_filter("fits a ustar name", |n| !n.is_empty() && n.len() < 100)
    }

    proptest! {
        #[test]
        fn prop_unpack_writes_only_layout_files_inside_its_directory(
            entries in prop::collection::vec((hostile_name(), 0u8..4), 1..6),
        ) {
            let kinds = [
                tar::EntryType::Regular,
                tar::EntryType::Directory,
                tar::EntryType::Symlink,
                tar::EntryType::Link,
            ];
            let with_kinds: Vec<(&str, tar::EntryType, &[u8])> = entries
                .iter()
                .map(|(name, kind)| (name.as_str(), kinds[*kind as usize], &b"x"[..]))
                .collect();
            let file = archive(&with_kinds);
            // Deep enough that no `..` chain of a name can climb out of `work`.
            let work = tempfile::tempdir().unwrap();
            let parent = work.path().join("1/2/3/4/5");
            fs::create_dir_all(&parent).unwrap();
            let unpacked = unpack_in(file.path(), &parent);
            for entry in walkdir::WalkDir::new(work.path()).min_depth(1) {
                let entry = entry.unwrap();
                if entry.file_type().is_dir() {
                    continue;
                }
                let inside = unpacked
                    .as_ref()
                    .ok()
                    .and_then(|dir| entry.path().strip_prefix(dir.path()).ok());
                let name = inside.and_then(Path::to_str);
                prop_assert!(
                    name.is_some_and(wanted),
                    "{} was written",
                    entry.path().display()
                );
                prop_assert!(entry.file_type().is_file());
            }
        }
    }

    fn archive(entries: &[(&str, tar::EntryType, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut builder = tar::Builder::new(file.reopen().unwrap());
        for (path, kind, bytes) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            let name = header.as_old_mut().name.as_mut();
            name[..path.len()].copy_from_slice(path.as_bytes());
            header.set_cksum();
            builder.append(&header, *bytes).unwrap();
        }
        builder.finish().unwrap();
        file
    }

    #[test]
    fn takes_a_layout_and_refuses_anything_else() {
        let hex = crate::digest::Sha256Digest::of(b"x").hex();
        let blob = format!("blobs/sha256/{hex}");
        let good = archive(&[
            ("oci-layout", tar::EntryType::Regular, b"{}"),
            ("index.json", tar::EntryType::Regular, b"{}"),
            ("manifest.json", tar::EntryType::Regular, b"[]"),
            (&blob, tar::EntryType::Regular, b"x"),
        ]);
        let dir = unpack(good.path()).unwrap();
        assert_eq!(fs::read(dir.path().join(&blob)).unwrap(), b"x");
        assert!(!dir.path().join("manifest.json").exists());

        for (path, kind) in [
            ("../escape", tar::EntryType::Regular),
            ("/etc/passwd", tar::EntryType::Regular),
            ("index.json", tar::EntryType::Symlink),
            ("blobs/sha256/dev", tar::EntryType::Char),
        ] {
            let bad = archive(&[
                ("index.json", tar::EntryType::Regular, b"{}"),
                (path, kind, b""),
            ]);
            let err = unpack(bad.path()).unwrap_err();
            assert_eq!(error::exit_kind(&err), error::ExitKind::Input, "{path}");
            assert!(
                format!("{err:#}").contains(path.trim_start_matches('/')),
                "{err:#}"
            );
        }
        let twice = archive(&[
            ("index.json", tar::EntryType::Regular, b"{}"),
            ("index.json", tar::EntryType::Regular, b"{}"),
        ]);
        assert!(format!("{:#}", unpack(twice.path()).unwrap_err()).contains("twice"));
    }
}
