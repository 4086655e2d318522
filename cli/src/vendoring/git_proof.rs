//! Proof that a git package's `.crate` holds its locked commit's files, carried in a bundle and
//! checked on the other side of the air gap with nothing but the bundle and `Cargo.lock`.
//!
//! The receiver trusts one thing: their own `Cargo.lock`, which pins the commit id of every git
//! dependency. A digest written into the bundle manifest would prove only that the bundle is
//! consistent with itself, since the manifest travels inside the bundle. So the bundle carries
//! git objects instead, and every link of the chain is recomputed here:
//!
//! - the raw commit object, whose SHA-1 must be the commit id `Cargo.lock` locks;
//! - the tree objects from the commit's root tree down to every directory a file of the package
//!   comes from (each tree's SHA-1 is the id its parent names), and the blobs of symbolic links
//!   on the way (their content is the link target, followed inside the repository);
//! - each file of the `.crate` that comes from the repository is hashed as a git blob
//!   (`blob LEN\0CONTENT`) and must be the blob id the tree names at that path. The blob itself
//!   is not carried: the `.crate` holds its content, and its id is all the tree records.
//!
//! Object ids use SHA-1 with the collision detection git itself uses (sha1dc), so a crafted
//! colliding object is refused rather than taken for the one the tree names.
//!
//! Which path each file comes from is decided here, not by the manifest: `FILE` of the `.crate`
//! is `PACKAGE_DIR/FILE` of the commit (the manifest only names `PACKAGE_DIR`, and that
//! directory's proven `Cargo.toml` must name the locked package). The one exception is what
//! `cargo package` copies from outside the package directory into its root, the `readme` and
//! `license-file` of the proven original manifest: the manifest names their repository paths,
//! and they are accepted only at the package root, where the package directory has no such file.
//!
//! The files `cargo package` generates are named and checked as far as they can be:
//! - `Cargo.toml.orig` is the original manifest: it must be the blob at `PACKAGE_DIR/Cargo.toml`,
//!   and name the locked package.
//! - `Cargo.toml` is cargo's normalized manifest (workspace inheritance resolved, targets made
//!   explicit). It cannot be recomputed here (that needs the workspace root and depends on the
//!   cargo version), so it is checked, not proven: its package name and version must be the
//!   locked ones, and the paths of its library, binaries and build script must be the original
//!   manifest's or cargo's defaults, so it cannot point the build at another proven file.
//!   Its dependencies and features are not compared: a dependency that is not locked fails
//!   `cargo build --frozen` anyway.
//! - `.cargo_vcs_info.json`, when present, must name the locked commit and the package
//!   directory.
//! - `Cargo.lock`, when present, must be the repository's (a lockfile `cargo package`
//!   generates cannot be proven, and a dependency's lockfile does not steer the build).
//!
//! Not proven: that the `.crate` holds *every* file `cargo package` would take (its include and
//! exclude rules are cargo's); a file left out can only make the build fail. Files in git
//! submodules cannot be proven yet: bundling such a package fails and says so.
//!
//! Nothing here touches the network or writes files; at bundle time objects are read from
//! cargo's git database with `git cat-file`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha1_checked::Digest;

use crate::process;

use super::archive::CrateArchive;

/// The directory of git objects in a bundle, under `airlock-bundle/`.
pub const OBJECTS_DIR: &str = "git";
/// The most bytes of one generated or manifest file read into memory to be checked.
const MAX_SMALL_FILE: u64 = 4 << 20;
/// The most symbolic links followed while resolving one path (Linux's `MAXSYMLINKS`).
const MAX_LINK_HOPS: usize = 40;

/// A git object id (SHA-1).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId(pub [u8; 20]);

impl ObjectId {
    /// Parses 40 lowercase or uppercase hex digits.
    pub fn parse(hex_text: &str) -> Option<ObjectId> {
        let mut id = [0u8; 20];
        hex::decode_to_slice(hex_text, &mut id).ok()?;
        Some(ObjectId(id))
    }

    /// 40 lowercase hex digits.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectId({})", self.hex())
    }
}

/// The id of data fed to `hasher`, refusing input that shows signs of a SHA-1 collision attack.
fn finish(hasher: sha1_checked::Sha1) -> Result<ObjectId, String> {
    let result = hasher.try_finalize();
    if result.has_collision() {
        return Err("its SHA-1 shows a collision attack (sha1dc); refusing it".to_owned());
    }
    let mut id = [0u8; 20];
    id.copy_from_slice(result.hash().as_ref());
    Ok(ObjectId(id))
}

/// The id of a raw object (`KIND LEN\0CONTENT`).
pub fn object_id(raw: &[u8]) -> Result<ObjectId, String> {
    let mut hasher = sha1_checked::Sha1::new();
    hasher.update(raw);
    finish(hasher)
}

/// The blob id of `len` bytes read from `reader` (which must give exactly that many).
pub fn blob_id(len: u64, reader: &mut dyn Read) -> Result<ObjectId> {
    let mut hasher = sha1_checked::Sha1::new();
    hasher.update(format!("blob {len}\0").as_bytes());
    let mut buffer = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
    if total != len {
        anyhow::bail!("read {total} bytes, the archive said {len}");
    }
    finish(hasher).map_err(anyhow::Error::msg)
}

/// A raw object: `KIND LEN\0CONTENT`.
pub fn raw_object(kind: &str, content: &[u8]) -> Vec<u8> {
    let mut raw = format!("{kind} {}\0", content.len()).into_bytes();
    raw.extend_from_slice(content);
    raw
}

/// The kind and content of a raw object, with its header checked.
pub fn split_object(raw: &[u8]) -> Result<(&str, &[u8]), String> {
    let nul = raw.iter().position(|&b| b == 0).ok_or("no object header")?;
    let header = std::str::from_utf8(&raw[..nul]).map_err(|_| "a header that is not text")?;
    let (kind, len) = header.split_once(' ').ok_or("a malformed object header")?;
    let content = &raw[nul + 1..];
    if len.parse::<usize>().ok() != Some(content.len()) || (len.len() > 1 && len.starts_with('0')) {
        return Err(format!(
            "a header that says {len} bytes for {}",
            content.len()
        ));
    }
    if !matches!(kind, "commit" | "tree" | "blob" | "tag") {
        return Err(format!("an unknown object kind `{kind}`"));
    }
    Ok((kind, content))
}

/// One entry of a tree object.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TreeEntry {
    mode: u32,
    name: Vec<u8>,
    id: ObjectId,
}

/// Git's modes of tree entries.
const MODE_TREE: u32 = 0o40000;
const MODE_FILE: u32 = 0o100644;
const MODE_EXECUTABLE: u32 = 0o100755;
const MODE_LINK: u32 = 0o120000;
const MODE_GITLINK: u32 = 0o160000;

/// Parses a tree object's content: `MODE NAME\0<20-byte id>` repeated.
fn tree_entries(content: &[u8]) -> Result<Vec<TreeEntry>, String> {
    let mut entries = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        let space = rest
            .iter()
            .position(|&b| b == b' ')
            .ok_or("a tree entry without a mode")?;
        let mode = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|m| u32::from_str_radix(m, 8).ok())
            .ok_or("a tree entry with a malformed mode")?;
        rest = &rest[space + 1..];
        let nul = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or("a tree entry without a name")?;
        let name = rest[..nul].to_vec();
        rest = &rest[nul + 1..];
        let id: [u8; 20] = rest
            .get(..20)
            .and_then(|id| id.try_into().ok())
            .ok_or("a tree entry cut short")?;
        rest = &rest[20..];
        entries.push(TreeEntry {
            mode,
            name,
            id: ObjectId(id),
        });
    }
    Ok(entries)
}

/// The root tree a commit object's content names (its first line, `tree HEX`).
fn commit_tree(content: &[u8]) -> Result<ObjectId, String> {
    content
        .strip_prefix(b"tree ")
        .and_then(|rest| rest.get(..40))
        .and_then(|hex_text| std::str::from_utf8(hex_text).ok())
        .and_then(ObjectId::parse)
        .ok_or_else(|| "the commit object does not start with `tree ID`".to_owned())
}

/// Where objects come from while resolving paths: cargo's git database when a bundle is made,
/// the bundle when it is checked. Returns the raw object.
pub trait ObjectSource {
    /// The raw object `id` (`KIND LEN\0CONTENT`), its id already checked.
    fn raw(&mut self, id: ObjectId) -> Result<Vec<u8>, String>;
}

/// The content of object `id`, which must be of `kind`.
fn load(objects: &mut dyn ObjectSource, id: ObjectId, kind: &str) -> Result<Vec<u8>, String> {
    let raw = objects.raw(id)?;
    let (found, content) = split_object(&raw).map_err(|e| format!("object {id} has {e}"))?;
    if found != kind {
        return Err(format!("object {id} is a {found}, not a {kind}"));
    }
    Ok(content.to_vec())
}

/// A file resolved in a commit: its blob id and the path it was found at after links.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The blob id the tree names.
    pub blob: ObjectId,
    /// Its path in the repository.
    pub path: String,
}

/// Why a path could not be resolved: it is absent (or not a regular file), or resolving it
/// failed (a damaged object, a link leaving the repository, a submodule).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unresolved {
    /// The commit has no regular file there.
    Absent(String),
    /// Resolving failed.
    Failed(String),
}

impl fmt::Display for Unresolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unresolved::Absent(why) | Unresolved::Failed(why) => f.write_str(why),
        }
    }
}

/// Resolves `path` (with `/`) in the tree `root`, following symbolic links inside the
/// repository as `cargo package` does (it packages a link's target), to a regular file.
pub fn resolve(
    objects: &mut dyn ObjectSource,
    root: ObjectId,
    path: &str,
) -> Result<Resolved, Unresolved> {
    let failed = Unresolved::Failed;
    let mut pending: std::collections::VecDeque<String> =
        path.split('/').map(str::to_owned).collect();
    // The directories walked so far, from the root: (name, tree id).
    let mut dirs: Vec<(String, ObjectId)> = Vec::new();
    let mut hops = 0;
    while let Some(component) = pending.pop_front() {
        match component.as_str() {
            "" | "." => continue,
            ".." => {
                if dirs.pop().is_none() {
                    return Err(failed(format!("`{path}` leads out of the repository")));
                }
                continue;
            }
            _ => {}
        }
        let tree = dirs.last().map_or(root, |d| d.1);
        let content = load(objects, tree, "tree").map_err(failed)?;
        let entries = tree_entries(&content).map_err(|e| failed(format!("tree {tree} has {e}")))?;
        let here = || {
            let mut shown: Vec<&str> = dirs.iter().map(|d| d.0.as_str()).collect();
            shown.push(&component);
            shown.join("/")
        };
        let Some(entry) = entries.iter().find(|e| e.name == component.as_bytes()) else {
            return Err(Unresolved::Absent(format!(
                "the commit has no `{}`",
                here()
            )));
        };
        match entry.mode {
            MODE_TREE => {
                if pending.iter().all(|c| c.is_empty() || c == ".") {
                    return Err(Unresolved::Absent(format!("`{}` is a directory", here())));
                }
                dirs.push((component.clone(), entry.id));
            }
            MODE_FILE | MODE_EXECUTABLE => {
                if pending.iter().any(|c| !c.is_empty() && c != ".") {
                    return Err(Unresolved::Absent(format!(
                        "`{}` is not a directory",
                        here()
                    )));
                }
                return Ok(Resolved {
                    blob: entry.id,
                    path: here(),
                });
            }
            MODE_LINK => {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(failed(format!("too many links resolving `{path}`")));
                }
                let target = load(objects, entry.id, "blob").map_err(failed)?;
                let target = String::from_utf8(target)
                    .map_err(|_| failed(format!("link `{}` is not UTF-8", here())))?;
                if target.starts_with('/') {
                    return Err(failed(format!(
                        "link `{}` -> `{target}` leads out of the repository",
                        here()
                    )));
                }
                for part in target.split('/').rev() {
                    pending.push_front(part.to_owned());
                }
            }
            MODE_GITLINK => {
                return Err(failed(format!(
                    "`{}` is a git submodule, whose files a bundle cannot prove yet",
                    here()
                )));
            }
            mode => {
                return Err(failed(format!(
                    "`{}` has the unknown mode {mode:o}",
                    here()
                )));
            }
        }
    }
    Err(Unresolved::Absent(format!("`{path}` names no file")))
}

/// What a bundle manifest records of a git package.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct GitProof {
    /// The commit the files come from (the one `Cargo.lock` locks).
    pub commit: String,
    /// The package's directory in the repository, with `/` (empty at the root).
    pub path_in_vcs: String,
    /// Files `cargo package` copied from outside the package directory into its root (the
    /// original manifest's `readme` and `license-file`): path in the `.crate` → path in the
    /// repository.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub outside: BTreeMap<String, String>,
}

/// A git package's proof and the objects it needs, gathered when the bundle is made.
#[derive(Debug, Clone)]
pub struct GitEvidence {
    /// What the manifest records.
    pub proof: GitProof,
    /// The raw objects to carry, by id.
    pub objects: BTreeMap<ObjectId, Vec<u8>>,
}

/// One thing that does not hold, by file of the `.crate` (empty for the package as a whole).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file inside the package, or empty.
    pub file: String,
    /// What kind of difference.
    pub kind: ProblemKind,
    /// What is wrong and what was expected.
    pub message: String,
    /// The expected and actual values (object ids), when there are.
    pub values: Option<(String, String)>,
}

/// The kinds of [`Problem`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The file is not the commit's.
    Modified,
    /// The commit has no such file.
    NotInCommit,
    /// A file that must be in the `.crate` is not.
    Missing,
    /// The proof names another commit than `Cargo.lock`.
    WrongCommit,
    /// An object or the proof itself is damaged.
    Broken,
}

impl Problem {
    fn new(file: &str, kind: ProblemKind, message: impl Into<String>) -> Problem {
        Problem {
            file: file.to_owned(),
            kind,
            message: message.into(),
            values: None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.file.is_empty() {
            write!(f, "{}: ", self.file)?;
        }
        f.write_str(&self.message)?;
        if let Some((expected, actual)) = &self.values {
            write!(f, " (expected {expected}, found {actual})")?;
        }
        Ok(())
    }
}

/// `dir/file` with `/`, `file` alone when `dir` is empty.
fn join(dir: &str, file: &str) -> String {
    if dir.is_empty() {
        file.to_owned()
    } else {
        format!("{dir}/{file}")
    }
}

/// Whether `path` is a plain relative path (no empty, `.` or `..` component, no leading `/`);
/// empty is the root.
fn is_plain_relative(path: &str) -> bool {
    path.is_empty()
        || path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'))
}

/// Lexically normalizes `path` (resolving `.` and `..`); None when it leaves the root.
fn normalize(path: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

/// The `.crate` files that matter to the proof, read once.
#[derive(Default)]
struct CrateFiles {
    /// Every file `cargo package` put in the archive, with its blob id.
    blobs: BTreeMap<String, ObjectId>,
    /// `Cargo.toml`, `Cargo.toml.orig` and `.cargo_vcs_info.json`, when present.
    small: BTreeMap<String, Vec<u8>>,
}

fn read_crate(archive: &CrateArchive) -> Result<CrateFiles> {
    let mut files = CrateFiles::default();
    archive.for_each_packaged_file(|path, size, reader| {
        let id = if matches!(
            path,
            "Cargo.toml" | "Cargo.toml.orig" | ".cargo_vcs_info.json"
        ) {
            if size > MAX_SMALL_FILE {
                anyhow::bail!("`{path}` is {size} bytes, more than airlock reads of it");
            }
            let mut bytes = Vec::with_capacity(size as usize);
            reader.read_to_end(&mut bytes)?;
            let id = blob_id(bytes.len() as u64, &mut bytes.as_slice())?;
            files.small.insert(path.to_owned(), bytes);
            id
        } else {
            blob_id(size, reader)?
        };
        files.blobs.insert(path.to_owned(), id);
        Ok(())
    })?;
    Ok(files)
}

/// What the original manifest's `readme` and `license-file` may bring in from outside the
/// package directory.
#[derive(Debug, Default)]
struct Outside {
    /// File name in the package root → repository path, for the keys given as paths.
    named: BTreeMap<String, String>,
    /// Whether a key is inherited (`workspace = true`): the workspace root decides its path,
    /// and only the file name can be checked.
    inherited: bool,
}

impl Outside {
    fn of(orig: Option<&toml::Table>, path_in_vcs: &str) -> Outside {
        let mut outside = Outside::default();
        let Some(package) = orig
            .and_then(|o| o.get("package"))
            .and_then(|p| p.as_table())
        else {
            return outside;
        };
        for key in ["readme", "license-file"] {
            match package.get(key) {
                Some(toml::Value::String(relative)) => {
                    if let Some(path) = normalize(&join(path_in_vcs, relative))
                        && let Some(name) = path.rsplit('/').next().filter(|n| !n.is_empty())
                    {
                        outside.named.insert(name.to_owned(), path);
                    }
                }
                Some(toml::Value::Table(t))
                    if t.get("workspace").and_then(|w| w.as_bool()) == Some(true) =>
                {
                    outside.inherited = true;
                }
                _ => {}
            }
        }
        outside
    }

    /// Whether the package root's `file` may come from `repo_path`.
    fn allows(&self, file: &str, repo_path: &str) -> bool {
        match self.named.get(file) {
            Some(path) => path == repo_path,
            None => self.inherited && repo_path.rsplit('/').next() == Some(file),
        }
    }
}

/// The original manifest of a `.crate`, parsed, when it has one that parses.
fn original_manifest(files: &CrateFiles) -> Option<toml::Table> {
    files
        .small
        .get("Cargo.toml.orig")
        .and_then(|bytes| std::str::from_utf8(bytes).ok())
        .and_then(|text| text.parse().ok())
}

/// Checks `archive` (a git package locked at `locked_commit`) against `proof`, reading objects
/// from `objects`. Returns every problem found; none means every file is proven (or, for the
/// generated ones, checked) as the module documentation says.
pub fn check_package(
    archive: &CrateArchive,
    locked_commit: &str,
    proof: &GitProof,
    objects: &mut dyn ObjectSource,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let package = |kind, message: String| Problem::new("", kind, message);
    if !proof.commit.eq_ignore_ascii_case(locked_commit) {
        let mut p = package(
            ProblemKind::WrongCommit,
            "the bundle proves another commit than Cargo.lock locks".to_owned(),
        );
        p.values = Some((locked_commit.to_owned(), proof.commit.clone()));
        return vec![p];
    }
    if !is_plain_relative(&proof.path_in_vcs) {
        return vec![package(
            ProblemKind::Broken,
            format!(
                "the package directory `{}` is not a plain relative path",
                proof.path_in_vcs
            ),
        )];
    }
    let Some(commit) = ObjectId::parse(locked_commit) else {
        return vec![package(
            ProblemKind::Broken,
            format!("`{locked_commit}` is not a SHA-1 commit id"),
        )];
    };
    let root = match load(objects, commit, "commit").and_then(|c| commit_tree(&c)) {
        Ok(root) => root,
        Err(e) => {
            return vec![package(
                ProblemKind::Broken,
                format!("the locked commit cannot be read from the bundle: {e}"),
            )];
        }
    };
    let files = match read_crate(archive) {
        Ok(files) => files,
        Err(e) => return vec![package(ProblemKind::Broken, format!("{e:#}"))],
    };

    // The original manifest first: it decides the package directory and what may come from
    // outside it.
    let orig = original_manifest(&files);
    let candidates = Outside::of(orig.as_ref(), &proof.path_in_vcs);
    match &orig {
        None if files.small.contains_key("Cargo.toml.orig") => problems.push(Problem::new(
            "Cargo.toml.orig",
            ProblemKind::Broken,
            "cannot be parsed as a manifest",
        )),
        None => problems.push(Problem::new(
            "Cargo.toml.orig",
            ProblemKind::Missing,
            "the original manifest `cargo package` keeps is missing, so the package directory \
             cannot be proven",
        )),
        Some(orig) => {
            let name = orig
                .get("package")
                .and_then(|p| p.get("name"))
                .and_then(|n| n.as_str());
            if name != Some(archive.id.name.as_str()) {
                problems.push(Problem::new(
                    "Cargo.toml.orig",
                    ProblemKind::Modified,
                    format!(
                        "`{}/Cargo.toml` of the commit names package {}, not {}",
                        proof.path_in_vcs,
                        name.unwrap_or("(none)"),
                        archive.id.name
                    ),
                ));
            }
        }
    }

    for (file, id) in &files.blobs {
        let repo_path = match file.as_str() {
            "Cargo.toml" | ".cargo_vcs_info.json" => continue,
            "Cargo.toml.orig" => join(&proof.path_in_vcs, "Cargo.toml"),
            _ => match proof.outside.get(file) {
                Some(outside) => {
                    if let Some(why) =
                        outside_refused(objects, root, proof, file, outside, &candidates)
                    {
                        problems.push(Problem::new(file, ProblemKind::Modified, why));
                        continue;
                    }
                    outside.clone()
                }
                None => join(&proof.path_in_vcs, file),
            },
        };
        match resolve(objects, root, &repo_path) {
            Ok(found) if found.blob == *id => {}
            Ok(found) => {
                let mut p = Problem::new(
                    file,
                    ProblemKind::Modified,
                    format!("differs from `{}` of commit {locked_commit}", found.path),
                );
                p.values = Some((format!("blob {}", found.blob), format!("blob {id}")));
                problems.push(p);
            }
            Err(Unresolved::Absent(why)) => problems.push(Problem::new(
                file,
                ProblemKind::NotInCommit,
                format!("not a file of commit {locked_commit}: {why}"),
            )),
            Err(Unresolved::Failed(why)) => {
                problems.push(Problem::new(file, ProblemKind::Broken, why));
            }
        }
    }
    for file in proof.outside.keys() {
        if !files.blobs.contains_key(file) {
            problems.push(Problem::new(
                file,
                ProblemKind::Missing,
                "the bundle manifest names it but the .crate does not hold it",
            ));
        }
    }

    if let Some(bytes) = files.small.get(".cargo_vcs_info.json")
        && let Some(why) = vcs_info_differs(bytes, locked_commit, &proof.path_in_vcs)
    {
        problems.push(Problem::new(
            ".cargo_vcs_info.json",
            ProblemKind::Modified,
            why,
        ));
    }
    match (files.small.get("Cargo.toml"), &orig) {
        (None, _) => problems.push(Problem::new(
            "Cargo.toml",
            ProblemKind::Missing,
            "the .crate has no Cargo.toml",
        )),
        (Some(normalized), Some(orig)) => {
            for why in normalized_differs(normalized, orig, archive) {
                problems.push(Problem::new("Cargo.toml", ProblemKind::Modified, why));
            }
        }
        (Some(_), None) => {}
    }
    problems
}

/// Why a file taken from outside the package directory is not allowed, if it is not.
fn outside_refused(
    objects: &mut dyn ObjectSource,
    root: ObjectId,
    proof: &GitProof,
    file: &str,
    outside: &str,
    candidates: &Outside,
) -> Option<String> {
    if file.contains('/') {
        return Some(format!(
            "the bundle manifest takes it from `{outside}`, but only the package root can hold \
             files from outside the package directory"
        ));
    }
    if !is_plain_relative(outside) {
        return Some(format!("`{outside}` is not a plain repository path"));
    }
    if !candidates.allows(file, outside) {
        return Some(format!(
            "the bundle manifest takes it from `{outside}`, which the original manifest's \
             `readme` and `license-file` do not name"
        ));
    }
    if resolve(objects, root, &join(&proof.path_in_vcs, file)).is_ok() {
        return Some(format!(
            "the package directory has its own `{file}`; the bundle manifest takes it from \
             `{outside}` instead"
        ));
    }
    None
}

/// Why `.cargo_vcs_info.json` does not describe `commit` and `path_in_vcs`, if it does not.
fn vcs_info_differs(bytes: &[u8], commit: &str, path_in_vcs: &str) -> Option<String> {
    let Ok(info) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Some("is not JSON".to_owned());
    };
    let sha1 = info["git"]["sha1"].as_str().unwrap_or("");
    let path = info["path_in_vcs"].as_str().unwrap_or("");
    if !sha1.eq_ignore_ascii_case(commit) || path != path_in_vcs {
        return Some(format!(
            "names commit `{sha1}` and directory `{path}`, not the locked {commit} and `{path_in_vcs}`"
        ));
    }
    None
}

/// The target paths a manifest gives: (what, path) for the library, each binary and the build
/// script.
fn target_paths(manifest: &toml::Table) -> Vec<(String, Option<String>)> {
    let clean = |p: &str| p.trim_start_matches("./").replace('\\', "/");
    let mut paths = Vec::new();
    let path_of = |t: &toml::Value| t.get("path").and_then(|p| p.as_str()).map(clean);
    if let Some(lib) = manifest.get("lib") {
        paths.push(("lib".to_owned(), path_of(lib)));
    }
    for bin in manifest
        .get("bin")
        .and_then(|b| b.as_array())
        .into_iter()
        .flatten()
    {
        let name = bin.get("name").and_then(|n| n.as_str()).unwrap_or("");
        paths.push((format!("bin {name}"), path_of(bin)));
    }
    if let Some(toml::Value::String(build)) = manifest.get("package").and_then(|p| p.get("build")) {
        paths.push(("build".to_owned(), Some(clean(build))));
    }
    paths
}

/// Why the normalized `Cargo.toml` does not agree with the original manifest on the paths of
/// what is compiled, if it does not: each path must be the original's for that target or
/// cargo's default location.
fn normalized_differs(
    normalized: &[u8],
    orig: &toml::Table,
    archive: &CrateArchive,
) -> Vec<String> {
    let Some(normalized) = std::str::from_utf8(normalized)
        .ok()
        .and_then(|t| t.parse::<toml::Table>().ok())
    else {
        return vec!["cannot be parsed as a manifest".to_owned()];
    };
    let mut problems = Vec::new();
    let package = normalized.get("package");
    let name = package.and_then(|p| p.get("name")).and_then(|n| n.as_str());
    let version = package
        .and_then(|p| p.get("version"))
        .and_then(|v| v.as_str());
    let locked_version = archive.id.version.to_string();
    if name != Some(archive.id.name.as_str()) || version != Some(locked_version.as_str()) {
        problems.push(format!(
            "names package {} {}, not the locked {} {locked_version}",
            name.unwrap_or("(none)"),
            version.unwrap_or("(none)"),
            archive.id.name
        ));
    }
    let original: BTreeMap<String, Option<String>> = target_paths(orig).into_iter().collect();
    for (what, path) in target_paths(&normalized) {
        let Some(path) = path else { continue };
        if original.get(&what).and_then(|p| p.as_deref()) == Some(path.as_str()) {
            continue;
        }
        let default = match what.as_str() {
            "lib" => path == "src/lib.rs",
            "build" => path == "build.rs",
            _ => {
                let bin = what.trim_start_matches("bin ");
                path == "src/main.rs"
                    || path == format!("src/bin/{bin}.rs")
                    || path == format!("src/bin/{bin}/main.rs")
            }
        };
        if !default {
            problems.push(format!(
                "compiles {what} from `{path}`, which is neither the original manifest's path \
                 nor cargo's default"
            ));
        }
    }
    problems
}

/// Objects read from cargo's git database with `git cat-file`, each checked against its id;
/// remembers what was read.
struct Database<'a> {
    db: &'a Path,
    read: BTreeMap<ObjectId, Vec<u8>>,
    /// What the last check touched, to carry in the bundle.
    touched: BTreeSet<ObjectId>,
}

impl ObjectSource for Database<'_> {
    fn raw(&mut self, id: ObjectId) -> Result<Vec<u8>, String> {
        self.touched.insert(id);
        if let Some(raw) = self.read.get(&id) {
            return Ok(raw.clone());
        }
        let git = |args: &[&str]| {
            process::run_captured(Command::new("git").arg("--git-dir").arg(self.db).args(args))
                .map(|out| out.stdout)
                .map_err(|e| format!("cannot read object {id} from {}: {e:#}", self.db.display()))
        };
        let hex_id = id.hex();
        let kind = String::from_utf8_lossy(&git(&["cat-file", "-t", &hex_id])?)
            .trim()
            .to_owned();
        let content = git(&["cat-file", &kind, &hex_id])?;
        let raw = raw_object(&kind, &content);
        if object_id(&raw)? != id {
            return Err(format!(
                "object {id} in {} does not hash to its id",
                self.db.display()
            ));
        }
        self.read.insert(id, raw.clone());
        Ok(raw)
    }
}

/// Gathers what proves `archive` (packaged from the package at `path_in_vcs` of `commit` in
/// the git database `db`): finds where files from outside the package directory came from,
/// checks the whole package exactly as the receiver will, and keeps the objects that check
/// read. Fails, naming every file, when the package cannot be proven.
pub fn gather(
    archive: &CrateArchive,
    db: &Path,
    commit: &str,
    path_in_vcs: &str,
) -> Result<GitEvidence> {
    let mut database = Database {
        db,
        read: BTreeMap::new(),
        touched: BTreeSet::new(),
    };
    let mut proof = GitProof {
        commit: commit.to_ascii_lowercase(),
        path_in_vcs: path_in_vcs.to_owned(),
        outside: BTreeMap::new(),
    };
    let first = check_package(archive, commit, &proof, &mut database);
    // Root-level files that are not the package directory's: look for them where the original
    // manifest's `readme` and `license-file` point (or, for `workspace = true`, in the
    // directories above the package, where the workspace root is).
    let files = read_crate(archive)?;
    let candidates = Outside::of(original_manifest(&files).as_ref(), path_in_vcs);
    if let Some(root) = ObjectId::parse(commit)
        .and_then(|c| load(&mut database, c, "commit").ok())
        .and_then(|c| commit_tree(&c).ok())
    {
        for problem in &first {
            let file = problem.file.as_str();
            if problem.kind != ProblemKind::NotInCommit || file.contains('/') {
                continue;
            }
            let Some(id) = files.blobs.get(file) else {
                continue;
            };
            let mut places: Vec<String> = candidates.named.get(file).cloned().into_iter().collect();
            if candidates.inherited {
                let mut dir = path_in_vcs.to_owned();
                while let Some((parent, _)) = dir.rsplit_once('/') {
                    dir = parent.to_owned();
                    places.push(join(&dir, file));
                }
                if !path_in_vcs.is_empty() {
                    places.push(file.to_owned());
                }
            }
            if let Some(place) = places
                .into_iter()
                .find(|p| resolve(&mut database, root, p).is_ok_and(|r| r.blob == *id))
            {
                proof.outside.insert(file.to_owned(), place);
            }
        }
    }
    database.touched.clear();
    let problems = check_package(archive, commit, &proof, &mut database);
    if !problems.is_empty() {
        let lines: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        return Err(crate::error::check_failed(format!(
            "{}: the .crate `cargo package` made cannot be proven against commit {commit} \
             ({} problem(s)); a bundle would not prove it either:\n  {}",
            archive.id,
            problems.len(),
            lines.join("\n  ")
        )));
    }
    let objects = database
        .touched
        .iter()
        .filter_map(|id| database.read.get(id).map(|raw| (*id, raw.clone())))
        .collect();
    Ok(GitEvidence { proof, objects })
}

/// The git objects of a bundle (`git/HEX` files), each checked against its name when it is
/// read; remembers which were used.
pub struct BundleObjects<'a> {
    files: &'a BTreeMap<String, Vec<u8>>,
    /// Ids that were read.
    pub used: BTreeSet<ObjectId>,
}

impl<'a> BundleObjects<'a> {
    /// The objects among a bundle's `files` (keyed by path under `airlock-bundle/`).
    pub fn new(files: &'a BTreeMap<String, Vec<u8>>) -> Self {
        BundleObjects {
            files,
            used: BTreeSet::new(),
        }
    }

    /// The bundle path of object `id`.
    pub fn file_of(id: ObjectId) -> String {
        format!("{OBJECTS_DIR}/{}", id.hex())
    }
}

impl ObjectSource for BundleObjects<'_> {
    fn raw(&mut self, id: ObjectId) -> Result<Vec<u8>, String> {
        let file = Self::file_of(id);
        let raw = self
            .files
            .get(&file)
            .ok_or_else(|| format!("the bundle lacks git object {id} ({file})"))?;
        let actual = object_id(raw).map_err(|e| format!("{file}: {e}"))?;
        if actual != id {
            return Err(format!(
                "{file} does not hash to its name (it hashes to {actual})"
            ));
        }
        self.used.insert(id);
        Ok(raw.clone())
    }
}

/// The package directory of `manifest` (a `Cargo.toml` inside `tree`), relative to `tree`,
/// with `/`.
pub fn path_in_vcs(tree: &Path, manifest: &Path) -> Result<String> {
    let dir = manifest
        .parent()
        .and_then(|d| d.strip_prefix(tree).ok())
        .with_context(|| format!("{} is not inside {}", manifest.display(), tree.display()))?;
    let parts: Option<Vec<&str>> = dir.components().map(|c| c.as_os_str().to_str()).collect();
    parts
        .map(|p| p.join("/"))
        .with_context(|| format!("{} is not a UTF-8 path", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory object store.
    #[derive(Default)]
    pub(crate) struct Memory(pub BTreeMap<ObjectId, Vec<u8>>);

    impl Memory {
        pub(crate) fn add(&mut self, kind: &str, content: &[u8]) -> ObjectId {
            let raw = raw_object(kind, content);
            let id = object_id(&raw).unwrap();
            self.0.insert(id, raw);
            id
        }

        /// A tree of (mode, name, id).
        pub(crate) fn tree(&mut self, entries: &[(u32, &str, ObjectId)]) -> ObjectId {
            let mut sorted = entries.to_vec();
            sorted.sort_by(|a, b| a.1.cmp(b.1));
            let mut content = Vec::new();
            for (mode, name, id) in sorted {
                content.extend(format!("{mode:o} {name}\0").as_bytes());
                content.extend(id.0);
            }
            self.add("tree", &content)
        }
    }

    impl ObjectSource for Memory {
        fn raw(&mut self, id: ObjectId) -> Result<Vec<u8>, String> {
            self.0.get(&id).cloned().ok_or_else(|| format!("no {id}"))
        }
    }

    #[test]
    fn object_ids_are_git_s() {
        // `printf hello | git hash-object --stdin`
        let raw = raw_object("blob", b"hello");
        assert_eq!(
            object_id(&raw).unwrap().hex(),
            "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"
        );
        assert_eq!(
            blob_id(5, &mut &b"hello"[..]).unwrap().hex(),
            "b6fc4c620b67d95f953a5c1c1230aaab5db5a1b0"
        );
        assert!(blob_id(6, &mut &b"hello"[..]).is_err());
        assert_eq!(split_object(&raw).unwrap(), ("blob", &b"hello"[..]));
        for bad in [
            &b"blob 6\0hello"[..],
            b"blob 05\0hello",
            b"blob5\0hello",
            b"weird 5\0hello",
            b"blob 5",
        ] {
            assert!(split_object(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn resolves_paths_through_trees_and_links_never_out() {
        let mut m = Memory::default();
        let lib = m.add("blob", b"pub fn f() {}\n");
        let readme = m.add("blob", b"# readme\n");
        let link = m.add("blob", b"../../README.md");
        let escape = m.add("blob", b"../../../etc/passwd");
        let src = m.tree(&[(MODE_FILE, "lib.rs", lib)]);
        let pkg = m.tree(&[
            (MODE_TREE, "src", src),
            (MODE_LINK, "README.md", link),
            (MODE_LINK, "evil", escape),
            (MODE_GITLINK, "sub", lib),
        ]);
        let crates = m.tree(&[(MODE_TREE, "pkg", pkg)]);
        let root = m.tree(&[
            (MODE_TREE, "crates", crates),
            (MODE_FILE, "README.md", readme),
        ]);
        let found = resolve(&mut m, root, "crates/pkg/src/lib.rs").unwrap();
        assert_eq!(
            (found.blob, found.path.as_str()),
            (lib, "crates/pkg/src/lib.rs")
        );
        let found = resolve(&mut m, root, "crates/pkg/README.md").unwrap();
        assert_eq!((found.blob, found.path.as_str()), (readme, "README.md"));
        assert!(matches!(
            resolve(&mut m, root, "crates/pkg/evil"),
            Err(Unresolved::Failed(why)) if why.contains("out of the repository")
        ));
        assert!(matches!(
            resolve(&mut m, root, "crates/pkg/nope"),
            Err(Unresolved::Absent(_))
        ));
        assert!(matches!(
            resolve(&mut m, root, "crates/pkg/src"),
            Err(Unresolved::Absent(_))
        ));
        assert!(matches!(
            resolve(&mut m, root, "crates/pkg/sub/x"),
            Err(Unresolved::Failed(why)) if why.contains("submodule")
        ));
        assert!(matches!(
            resolve(&mut m, root, "../x"),
            Err(Unresolved::Failed(_))
        ));
    }

    /// A repository with `crates/demo/{Cargo.toml,src/lib.rs}` and `README.md`, `LICENSE` and
    /// `examples/evil.rs` elsewhere; returns the store, the commit and the package's manifest.
    fn repository(manifest: &str) -> (Memory, ObjectId) {
        let mut m = Memory::default();
        let toml = m.add("blob", manifest.as_bytes());
        let lib = m.add("blob", b"pub fn f() {}\n");
        let readme = m.add("blob", b"# demo\n");
        let evil = m.add("blob", b"pub fn evil() {}\n");
        let src = m.tree(&[(MODE_FILE, "lib.rs", lib)]);
        let demo = m.tree(&[(MODE_FILE, "Cargo.toml", toml), (MODE_TREE, "src", src)]);
        let crates = m.tree(&[(MODE_TREE, "demo", demo)]);
        let examples = m.tree(&[(MODE_FILE, "evil.rs", evil)]);
        let root = m.tree(&[
            (MODE_TREE, "crates", crates),
            (MODE_TREE, "examples", examples),
            (MODE_FILE, "README.md", readme),
        ]);
        let commit = m.add(
            "commit",
            format!("tree {root}\nauthor a <a> 0 +0000\ncommitter a <a> 0 +0000\n\nx\n").as_bytes(),
        );
        (m, commit)
    }

    /// A git `.crate` of demo 1.0.0 with `files` (path in the package, contents).
    fn demo_crate(files: &[(&str, &[u8])]) -> CrateArchive {
        let entries: Vec<(String, tar::EntryType, &[u8])> = files
            .iter()
            .map(|(p, b)| (format!("demo-1.0.0/{p}"), tar::EntryType::Regular, *b))
            .collect();
        let entries: Vec<(&str, tar::EntryType, &[u8])> = entries
            .iter()
            .map(|(p, k, b)| (p.as_str(), *k, *b))
            .collect();
        let mut id = crate::vendoring::archive::tests::id("demo", "1.0.0");
        id.source = crate::lock::Source::Git {
            url: "https://example.com/r".into(),
            reference: crate::lock::GitReference::DefaultBranch,
            commit: "0".repeat(40),
        };
        CrateArchive::new(
            id,
            super::super::archive::ArchiveKind::Git,
            crate::vendoring::archive::tests::crate_bytes(&entries),
            "demo.crate".into(),
        )
    }

    const ORIG: &str =
        "[package]\nname = \"demo\"\nversion = \"1.0.0\"\nreadme = \"../../README.md\"\n";
    const NORMALIZED: &[u8] =
        b"[package]\nname = \"demo\"\nversion = \"1.0.0\"\nreadme = \"README.md\"\n\n[lib]\npath = \"src/lib.rs\"\n";

    fn proof(commit: ObjectId, outside: &[(&str, &str)]) -> GitProof {
        GitProof {
            commit: commit.hex(),
            path_in_vcs: "crates/demo".into(),
            outside: outside
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        }
    }

    #[test]
    fn proves_a_package_in_a_subdirectory_with_its_readme_from_above() {
        let (mut m, commit) = repository(ORIG);
        let good = demo_crate(&[
            ("Cargo.toml", NORMALIZED),
            ("Cargo.toml.orig", ORIG.as_bytes()),
            ("src/lib.rs", b"pub fn f() {}\n"),
            ("README.md", b"# demo\n"),
        ]);
        let with_readme = proof(commit, &[("README.md", "README.md")]);
        assert_eq!(
            check_package(&good, &commit.hex(), &with_readme, &mut m),
            []
        );

        // The readme's path is the original manifest's, never another file of the commit.
        let elsewhere = proof(commit, &[("README.md", "examples/evil.rs")]);
        let problems = check_package(&good, &commit.hex(), &elsewhere, &mut m);
        assert!(problems[0].message.contains("do not name"), "{problems:?}");
        // Nothing but the readme and license may come from outside.
        let evil = demo_crate(&[
            ("Cargo.toml", NORMALIZED),
            ("Cargo.toml.orig", ORIG.as_bytes()),
            ("src/lib.rs", b"pub fn evil() {}\n"),
            ("README.md", b"# demo\n"),
        ]);
        let swapped = proof(
            commit,
            &[
                ("README.md", "README.md"),
                ("src/lib.rs", "examples/evil.rs"),
            ],
        );
        let problems = check_package(&evil, &commit.hex(), &swapped, &mut m);
        assert!(
            problems
                .iter()
                .any(|p| p.file == "src/lib.rs" && p.message.contains("only the package root")),
            "{problems:?}"
        );
        // Without an outside entry the readme is not the package directory's.
        let problems = check_package(&good, &commit.hex(), &proof(commit, &[]), &mut m);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(
            (problems[0].file.as_str(), problems[0].kind),
            ("README.md", ProblemKind::NotInCommit)
        );
    }

    #[test]
    fn generated_files_are_checked() {
        let (mut m, commit) = repository(ORIG);
        let with_readme = proof(commit, &[("README.md", "README.md")]);
        let check = |files: &[(&str, &[u8])], m: &mut Memory| {
            check_package(&demo_crate(files), &commit.hex(), &with_readme, m)
        };
        // The original manifest must be the commit's.
        let problems = check(
            &[
                ("Cargo.toml", NORMALIZED),
                (
                    "Cargo.toml.orig",
                    b"[package]\nname = \"demo\"\nversion = \"1.0.0\"\nbuild = \"x.rs\"\n",
                ),
                ("src/lib.rs", b"pub fn f() {}\n"),
                ("README.md", b"# demo\n"),
            ],
            &mut m,
        );
        assert!(
            problems
                .iter()
                .any(|p| p.file == "Cargo.toml.orig" && p.kind == ProblemKind::Modified),
            "{problems:?}"
        );
        // The normalized manifest may not compile the library from another file.
        let moved =
            b"[package]\nname = \"demo\"\nversion = \"1.0.0\"\n\n[lib]\npath = \"README.md\"\n";
        let problems = check(
            &[
                ("Cargo.toml", moved),
                ("Cargo.toml.orig", ORIG.as_bytes()),
                ("src/lib.rs", b"pub fn f() {}\n"),
                ("README.md", b"# demo\n"),
            ],
            &mut m,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0]
                .message
                .contains("compiles lib from `README.md`"),
            "{problems:?}"
        );
        // .cargo_vcs_info.json must name the locked commit and directory.
        let info = format!(
            "{{\"git\":{{\"sha1\":\"{}\"}},\"path_in_vcs\":\"crates/other\"}}",
            commit.hex()
        );
        let problems = check(
            &[
                ("Cargo.toml", NORMALIZED),
                ("Cargo.toml.orig", ORIG.as_bytes()),
                ("src/lib.rs", b"pub fn f() {}\n"),
                ("README.md", b"# demo\n"),
                (".cargo_vcs_info.json", info.as_bytes()),
            ],
            &mut m,
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].file, ".cargo_vcs_info.json");
        // Another commit than the locked one is refused before anything is read.
        let other = check_package(
            &demo_crate(&[("Cargo.toml", NORMALIZED)]),
            &"1".repeat(40),
            &with_readme,
            &mut m,
        );
        assert_eq!(other[0].kind, ProblemKind::WrongCommit);
    }
}
