//! Extra files in an image (`--include SRC:DEST[:MODE]`, the `files` table of the image
//! settings), as ko's `kodata`: files and directory trees from the workspace, in a layer of
//! their own below the binary's, written deterministically (sorted, the source date as every
//! time, uid/gid 0, fixed modes).
//!
//! A destination must be an absolute path that stays inside the root, and no two things may
//! claim one path: an included file where the binary, an essential or another include goes is
//! refused, and so is a path that is a file for one and a directory for another. Only regular
//! files and directories are copied; a link, FIFO or device in an included tree is refused
//! (a link could lead out of it), so what goes in is exactly what the tree holds.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::error;
use crate::input::{self, Links};
use crate::tarball::{self, TarBuilder};

/// Where one include comes from: a file or directory, and the mode of the files it gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncludeSource {
    /// The file or directory on this machine.
    pub src: PathBuf,
    /// The mode of every file copied; default 0755 for files executable by their owner,
    /// else 0644. Directories are always 0755.
    pub mode: Option<u32>,
}

/// One `--include SRC:DEST[:MODE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    /// What is copied.
    pub source: IncludeSource,
    /// Where it goes in the image (absolute).
    pub dest: String,
}

impl FromStr for Include {
    type Err = anyhow::Error;

    /// `SRC:DEST[:MODE]`: the destination is the last `:`-separated part that starts with
    /// `/`, so a source path may hold `:`; a trailing all-octal part is the mode.
    fn from_str(text: &str) -> Result<Include> {
        let bad = || {
            error::input(format!(
                "`{text}` is not SRC:DEST[:MODE]: name a file or directory, then where it goes \
                 in the image as an absolute path, e.g. config/app.toml:/etc/app/app.toml:0640"
            ))
        };
        let (rest, mode) = match text.rsplit_once(':') {
            Some((rest, mode))
                if !mode.is_empty()
                    && mode.len() <= 4
                    && mode.bytes().all(|b| b.is_ascii_digit()) =>
            {
                (rest, Some(parse_mode(mode)?))
            }
            _ => (text, None),
        };
        let (src, dest) = rest.rsplit_once(":/").ok_or_else(bad)?;
        if src.is_empty() {
            return Err(bad());
        }
        Ok(Include {
            source: IncludeSource {
                src: PathBuf::from(src),
                mode,
            },
            dest: format!("/{dest}"),
        })
    }
}

/// An octal file mode (`644`, `0755`).
pub fn parse_mode(text: &str) -> Result<u32> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| {
            error::input(format!(
                "`{text}` is not a file mode: write it in octal, e.g. 0644 or 755"
            ))
        })
}

impl<'de> Deserialize<'de> for IncludeSource {
    /// `"config/app.toml"` or `{ src = "static", mode = "0644" }`.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Path(PathBuf),
            Table { src: PathBuf, mode: Option<String> },
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Strict {
            #[allow(dead_code)]
            src: PathBuf,
            #[allow(dead_code)]
            mode: Option<String>,
        }
        let value = serde_json::Value::deserialize(deserializer)?;
        if value.is_object() {
            Strict::deserialize(&value).map_err(serde::de::Error::custom)?;
        }
        match Raw::deserialize(&value).map_err(|_| {
            serde::de::Error::custom("a file is \"SRC\" or { src = \"SRC\", mode = \"0644\" }")
        })? {
            Raw::Path(src) => Ok(IncludeSource { src, mode: None }),
            Raw::Table { src, mode } => Ok(IncludeSource {
                src,
                mode: mode
                    .as_deref()
                    .map(parse_mode)
                    .transpose()
                    .map_err(|e| serde::de::Error::custom(format!("{e:#}")))?,
            }),
        }
    }
}

/// What is in the files layer, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct IncludedFiles {
    /// Each include: where it came from, where it went, how many files.
    pub includes: Vec<IncludedTree>,
    /// Regular files in the layer.
    pub files: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// One include as copied.
#[derive(Debug, Clone, Serialize)]
pub struct IncludedTree {
    /// The source on this machine.
    pub source: PathBuf,
    /// The destination in the image.
    pub dest: String,
    /// Regular files copied.
    pub files: usize,
}

/// What a path in the image is, to find two claims on one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// A regular file (or the binary).
    File,
    /// A directory.
    Dir,
}

/// Who writes what where: the binaries, the essentials and every include claim their paths,
/// and a second claim on a file, or a file where another needs a directory, is refused.
#[derive(Debug, Default)]
pub struct Claims {
    paths: BTreeMap<String, (Claim, String)>,
}

impl Claims {
    /// Claims `path` (relative, `usr/local/bin/app`) as `kind` for `owner` (for the error).
    pub fn claim(&mut self, path: &str, kind: Claim, owner: &str) -> Result<()> {
        let conflict = |other: &str, why: &str| {
            error::input(format!(
                "/{path} from {owner} collides with {other}: {why}; choose another destination"
            ))
        };
        if let Some((existing, other)) = self.paths.get(path)
            && (kind == Claim::File || *existing == Claim::File)
        {
            return Err(conflict(other, "both write that path"));
        }
        let mut parent = Path::new(path).parent();
        while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
            if let Some((Claim::File, other)) = self.paths.get(&*dir.to_string_lossy()) {
                return Err(conflict(
                    other,
                    &format!("/{} is a file there, not a directory", dir.display()),
                ));
            }
            parent = dir.parent();
        }
        if kind == Claim::File {
            let below = format!("{path}/");
            if let Some((inner, (_, other))) = self.paths.range(below.clone()..).next()
                && inner.starts_with(&below)
            {
                return Err(conflict(
                    other,
                    &format!("it needs /{path} to be a directory (for /{inner})"),
                ));
            }
        }
        self.paths
            .entry(path.to_owned())
            .or_insert_with(|| (kind, owner.to_owned()));
        Ok(())
    }
}

/// The files layer of `includes` (by destination), mtime left to the layer writer; None when
/// there are no includes. Every path is claimed in `claims` first.
pub fn files_tar(
    includes: &BTreeMap<String, IncludeSource>,
    claims: &mut Claims,
) -> Result<Option<(TarBuilder, IncludedFiles)>> {
    if includes.is_empty() {
        return Ok(None);
    }
    let mut tar = TarBuilder::new();
    let mut report = IncludedFiles {
        includes: Vec::new(),
        files: 0,
        bytes: 0,
    };
    for (dest, source) in includes {
        let relative = destination(dest)?;
        let owner = format!("the include {}:{dest}", source.src.display());
        let copied = add_include(&mut tar, claims, source, &relative, &owner)?;
        report.files += copied.0;
        report.bytes += copied.1;
        report.includes.push(IncludedTree {
            source: source.src.clone(),
            dest: dest.clone(),
            files: copied.0,
        });
    }
    Ok(Some((tar, report)))
}

/// The destination as a relative path, refusing one that is not absolute, climbs with `..`
/// or is the root itself.
fn destination(dest: &str) -> Result<String> {
    let refuse = |why: &str| {
        error::input(format!(
            "--include destination `{dest}` {why}; write an absolute path inside the image, \
             e.g. /etc/app/config.toml"
        ))
    };
    if !dest.starts_with('/') {
        return Err(refuse("is not absolute"));
    }
    let mut parts = Vec::new();
    for component in Path::new(dest).components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => parts.push(
                part.to_str()
                    .ok_or_else(|| refuse("is not UTF-8"))?
                    .to_owned(),
            ),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(refuse("leaves the root with `..`"));
            }
        }
    }
    if parts.is_empty() {
        return Err(refuse("is the root itself"));
    }
    Ok(parts.join("/"))
}

/// Copies one include into `tar`; returns (files, bytes).
fn add_include(
    tar: &mut TarBuilder,
    claims: &mut Claims,
    source: &IncludeSource,
    dest: &str,
    owner: &str,
) -> Result<(usize, u64)> {
    let src = &source.src;
    // The path the user named may be a link (followed); links inside a tree are refused.
    let meta = std::fs::metadata(src).map_err(|e| {
        error::input(format!(
            "--include {}: {e}; name an existing file or directory",
            src.display()
        ))
    })?;
    if meta.is_dir() {
        claims.claim(dest, Claim::Dir, owner)?;
        tar.dir(dest, tarball::EXEC_MODE);
        return add_tree(tar, claims, source, dest, owner);
    }
    let size = add_file(tar, src, dest, source.mode, Links::Follow)?;
    claims.claim(dest, Claim::File, owner)?;
    Ok((1, size))
}

fn add_tree(
    tar: &mut TarBuilder,
    claims: &mut Claims,
    source: &IncludeSource,
    dest: &str,
    owner: &str,
) -> Result<(usize, u64)> {
    let (mut files, mut bytes) = (0, 0);
    let walker = walkdir::WalkDir::new(&source.src)
        .min_depth(1)
        .sort_by_file_name();
    for entry in walker {
        let entry =
            entry.map_err(|e| error::input(format!("--include {}: {e}", source.src.display())))?;
        let relative = entry
            .path()
            .strip_prefix(&source.src)
            .ok()
            .and_then(Path::to_str)
            .ok_or_else(|| {
                error::input(format!(
                    "--include: {} is not a UTF-8 path; rename it",
                    entry.path().display()
                ))
            })?;
        let in_image = format!("{dest}/{relative}");
        let kind = entry.file_type();
        if kind.is_dir() {
            claims.claim(&in_image, Claim::Dir, owner)?;
            tar.dir(&in_image, tarball::EXEC_MODE);
        } else if kind.is_file() {
            bytes += add_file(tar, entry.path(), &in_image, source.mode, Links::Refuse)?;
            claims.claim(&in_image, Claim::File, owner)?;
            files += 1;
        } else {
            let what = if kind.is_symlink() {
                "a symbolic link (it could lead out of the tree)"
            } else {
                "not a regular file or directory"
            };
            return Err(error::input(format!(
                "--include {}: {} is {what}; airlock copies regular files and directories only: \
                 replace it with the file it stands for, or leave it out",
                source.src.display(),
                entry.path().display()
            )));
        }
    }
    Ok((files, bytes))
}

/// Adds one regular file, checked to be one (never a FIFO or device) before it is streamed.
fn add_file(
    tar: &mut TarBuilder,
    path: &Path,
    in_image: &str,
    mode: Option<u32>,
    links: Links,
) -> Result<u64> {
    let opened = input::open_regular(path, links)
        .with_context(|| format!("--include {}", path.display()))?;
    let executable = opened
        .file
        .metadata()
        .map(|m| m.permissions().mode() & 0o100 != 0)
        .unwrap_or(false);
    let mode = mode.unwrap_or(if executable {
        tarball::EXEC_MODE
    } else {
        tarball::FILE_MODE
    });
    tar.file_from_disk(in_image, path, mode);
    Ok(opened.size)
}

impl fmt::Display for Include {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source.src.display(), self.dest)?;
        match self.source.mode {
            Some(mode) => write!(f, ":{mode:04o}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_source_destination_and_mode() {
        let include: Include = "config/app.toml:/etc/app/app.toml:0640".parse().unwrap();
        assert_eq!(include.source.src, Path::new("config/app.toml"));
        assert_eq!(include.dest, "/etc/app/app.toml");
        assert_eq!(include.source.mode, Some(0o640));
        assert_eq!(
            include.to_string(),
            "config/app.toml:/etc/app/app.toml:0640"
        );
        let include: Include = "a:b/static:/srv/static".parse().unwrap();
        assert_eq!(include.source.src, Path::new("a:b/static"));
        assert_eq!(include.source.mode, None);
        for bad in [
            "config.toml",
            "config.toml:etc/x",
            ":/etc/x",
            "x:/etc/y:0999",
        ] {
            let err = bad.parse::<Include>().unwrap_err();
            assert_eq!(error::exit_kind(&err), error::ExitKind::Input, "{bad}");
        }
        assert_eq!(destination("/etc//app/./x").unwrap(), "etc/app/x");
        for bad in ["/", "/etc/../../x", "etc/x"] {
            assert!(destination(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn claims_refuse_a_path_twice_and_files_where_directories_go() {
        let mut claims = Claims::default();
        claims
            .claim("usr/local/bin/app", Claim::File, "the binary")
            .unwrap();
        claims.claim("usr/local", Claim::Dir, "an include").unwrap();
        claims.claim("etc/app", Claim::Dir, "a").unwrap();
        claims.claim("etc/app", Claim::Dir, "b").unwrap();
        let cases = [
            ("usr/local/bin/app", Claim::File, "both write"),
            ("usr/local/bin/app", Claim::Dir, "both write"),
            ("usr/local/bin/app/x", Claim::File, "is a file there"),
            ("usr/local/bin", Claim::File, "to be a directory"),
            ("etc/app", Claim::File, "both write"),
        ];
        for (path, kind, why) in cases {
            let err = claims.claim(path, kind, "--include x").unwrap_err();
            let text = format!("{err:#}");
            assert!(
                text.contains(why) && text.contains("collides"),
                "{path}: {text}"
            );
        }
    }
}
