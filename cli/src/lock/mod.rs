//! `Cargo.lock`: what the workspace wants, package by package (name, version, source,
//! checksum). Reads files only; never fetches, builds or writes.
//!
//! All four lockfile versions are read into one model:
//! - v1 (`[metadata]` holds the checksums as `"checksum NAME VERSION (SOURCE)" = "HEX"`),
//! - v2 (checksums inline in each `[[package]]`, no `version` key),
//! - v3 (`version = 3`),
//! - v4 (`version = 4`; the query of a git source URL is percent-encoded).
//!
//! Format reference: cargo's `core/resolver/encode.rs` (the `EncodableResolve` types).
//!
//! A lockfile is hostile input: its names and versions become directory names (`NAME`,
//! `NAME-VERSION`) in vendor directories and bundles. Every name is checked with cargo's own
//! rule for package names and every version is a semver version, so a [`PackageId`] that comes
//! out of [`Lockfile::parse`] always gives one plain path component, never `/`, `..` or an
//! absolute path.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cargo_metadata::semver::Version;
use serde::Serialize;

use crate::digest::Sha256Digest;

/// The source URL of crates.io's index as `Cargo.lock` records it (whatever protocol is used).
pub const CRATES_IO_INDEX: &str = "https://github.com/rust-lang/crates.io-index";
/// crates.io's sparse index URL.
pub const CRATES_IO_SPARSE: &str = "https://index.crates.io/";

/// A loaded `Cargo.lock`.
#[derive(Debug, Clone)]
pub struct Lockfile {
    path: PathBuf,
    version: u32,
    packages: Vec<LockedPackage>,
}

/// One `[[package]]` of the lockfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockedPackage {
    /// Name, version and source.
    #[serde(flatten)]
    pub id: PackageId,
    /// The sha256 of the `.crate` file (registry packages; None for git and path packages,
    /// and for registry packages whose checksum is missing).
    pub checksum: Option<Sha256Digest>,
    /// The packages this one depends on (every kind, every platform, as locked).
    #[serde(skip)]
    pub dependencies: Vec<PackageId>,
}

/// A package as the lockfile names it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct PackageId {
    /// The package name.
    pub name: String,
    /// The exact version.
    #[serde(serialize_with = "serialize_display")]
    pub version: Version,
    /// Where it comes from.
    pub source: Source,
}

/// Where a locked package comes from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// A registry with a git index (`registry+URL`), crates.io among them.
    Registry {
        /// The index URL.
        url: String,
    },
    /// A registry with a sparse index (`sparse+URL`).
    SparseRegistry {
        /// The index URL.
        url: String,
    },
    /// A git repository at a locked commit (`git+URL?branch=…#COMMIT`).
    Git {
        /// The repository URL, without query or fragment.
        url: String,
        /// What the manifest asked for.
        reference: GitReference,
        /// The full commit id the lockfile pins.
        commit: String,
    },
    /// A path dependency or a workspace member (no `source` in the lockfile).
    Path,
}

/// The kind of a [`Source`], for tables and JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// `registry+`.
    Registry,
    /// `sparse+`.
    SparseRegistry,
    /// `git+`.
    Git,
    /// No source.
    Path,
}

/// The branch, tag or revision a git dependency names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GitReference {
    /// `?branch=NAME`.
    Branch(String),
    /// `?tag=NAME`.
    Tag(String),
    /// `?rev=REV`.
    Rev(String),
    /// No query: the repository's default branch.
    DefaultBranch,
}

impl Source {
    /// Parses a lockfile `source` string; `version` is the lockfile's version (v4 encodes the
    /// git query).
    pub fn parse(text: &str, lock_version: u32) -> Result<Source> {
        let bad = |why: &str| crate::error::input(format!("unsupported source `{text}`: {why}"));
        let (kind, rest) = text
            .split_once('+')
            .ok_or_else(|| bad("expected KIND+URL"))?;
        match kind {
            "registry" => Ok(Source::Registry {
                url: rest.to_owned(),
            }),
            "sparse" => Ok(Source::SparseRegistry {
                url: rest.to_owned(),
            }),
            "git" => {
                let (url_and_query, commit) = rest
                    .split_once('#')
                    .ok_or_else(|| bad("a git source needs #COMMIT"))?;
                // cargo locks the full object id (40 hex digits for SHA-1, 64 for SHA-256).
                if commit.is_empty()
                    || commit.len() > 64
                    || !commit.chars().all(|c| c.is_ascii_hexdigit())
                {
                    return Err(bad("the commit after # is not a hex commit id"));
                }
                let (url, query) = match url_and_query.split_once('?') {
                    Some((u, q)) => (u, Some(q)),
                    None => (url_and_query, None),
                };
                let reference = match query {
                    None => GitReference::DefaultBranch,
                    Some(q) => {
                        let (key, value) = q.split_once('=').ok_or_else(|| bad("bad query"))?;
                        let value = if lock_version >= 4 {
                            percent_decode(value)
                        } else {
                            value.to_owned()
                        };
                        match key {
                            "branch" => GitReference::Branch(value),
                            "tag" => GitReference::Tag(value),
                            "rev" => GitReference::Rev(value),
                            _ => return Err(bad("unknown git query key")),
                        }
                    }
                };
                Ok(Source::Git {
                    url: url.to_owned(),
                    reference,
                    commit: commit.to_ascii_lowercase(),
                })
            }
            _ => Err(bad("unknown source kind")),
        }
    }

    /// The kind of source.
    pub fn kind(&self) -> SourceKind {
        match self {
            Source::Registry { .. } => SourceKind::Registry,
            Source::SparseRegistry { .. } => SourceKind::SparseRegistry,
            Source::Git { .. } => SourceKind::Git,
            Source::Path => SourceKind::Path,
        }
    }

    /// Whether this is crates.io (either index protocol).
    pub fn is_crates_io(&self) -> bool {
        match self {
            Source::Registry { url } => url.trim_end_matches('/') == CRATES_IO_INDEX,
            Source::SparseRegistry { url } => url == CRATES_IO_SPARSE,
            _ => false,
        }
    }

    /// Whether packages from here come as `.crate` files with a checksum.
    pub fn is_registry(&self) -> bool {
        matches!(
            self,
            Source::Registry { .. } | Source::SparseRegistry { .. }
        )
    }

    /// The source without the pinned commit, as cargo names it in `[source]` configuration
    /// (`git+URL?branch=…`).
    pub fn without_commit(&self) -> String {
        match self {
            Source::Git { url, reference, .. } => match reference {
                GitReference::Branch(b) => format!("git+{url}?branch={b}"),
                GitReference::Tag(t) => format!("git+{url}?tag={t}"),
                GitReference::Rev(r) => format!("git+{url}?rev={r}"),
                GitReference::DefaultBranch => format!("git+{url}"),
            },
            other => other.to_string(),
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Registry { url } => write!(f, "registry+{url}"),
            Source::SparseRegistry { url } => write!(f, "sparse+{url}"),
            Source::Git { commit, .. } => write!(f, "{}#{commit}", self.without_commit()),
            Source::Path => f.write_str("path"),
        }
    }
}

impl Serialize for Source {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl fmt::Display for PackageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} v{}", self.name, self.version)?;
        match &self.source {
            Source::Path => Ok(()),
            s if s.is_crates_io() => Ok(()),
            s => write!(f, " ({s})"),
        }
    }
}

/// Checks `name` with cargo's rule for package names (`validate_package_name` in cargo's
/// `util/restricted_names.rs`): not empty, a first character that is a Unicode XID start
/// character or `_` (not a digit), then only Unicode XID continue characters and `-`.
///
/// A name that passes is one plain path component: no `/`, `\`, `.`, NUL or space can be in it.
pub fn validate_package_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return Err("the name is empty".to_owned());
    };
    if first.is_ascii_digit() {
        return Err("a package name cannot start with a digit".to_owned());
    }
    if !(unicode_ident::is_xid_start(first) || first == '_') {
        return Err(format!(
            "invalid character {first:?}: the first character must be a letter or `_`"
        ));
    }
    if let Some(bad) = chars.find(|&c| !(unicode_ident::is_xid_continue(c) || c == '-')) {
        return Err(format!(
            "invalid character {bad:?}: a package name holds only letters, digits, `-` and `_`"
        ));
    }
    Ok(())
}

/// Parses a package version as cargo does (semver), requiring the text to be exactly what the
/// parsed version displays, so the directory names made from it match the `.crate`'s.
pub fn parse_package_version(text: &str) -> Result<Version, String> {
    let version = Version::parse(text).map_err(|e| e.to_string())?;
    if version.to_string() != text {
        return Err(format!("it is not written canonically (`{version}`)"));
    }
    Ok(version)
}

impl PackageId {
    /// `NAME-VERSION`, the top directory of a `.crate` and its file stem.
    pub fn dir_name(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }
}

fn serialize_display<T: fmt::Display, S: serde::Serializer>(
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_str(value)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(pair) = bytes.get(i + 1..i + 3)
            && let Ok(pair) = std::str::from_utf8(pair)
            && let Ok(b) = u8::from_str_radix(pair, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The raw TOML shape of every lockfile version.
#[derive(serde::Deserialize)]
struct RawLock {
    version: Option<u32>,
    #[serde(default)]
    package: Vec<RawPackage>,
    #[serde(default)]
    metadata: BTreeMap<String, toml::Value>,
}

#[derive(serde::Deserialize)]
struct RawPackage {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
    #[serde(default)]
    dependencies: Vec<String>,
}

impl Lockfile {
    /// Reads and parses the lockfile at `path`.
    pub fn load(path: &Path) -> Result<Lockfile> {
        let text = crate::input::read_regular_to_string(
            path,
            crate::input::Links::Follow,
            crate::input::MAX_TEXT_INPUT,
        )
        .with_context(|| {
            format!(
                "cannot read {}; run `cargo generate-lockfile` to create it",
                path.display()
            )
        })?;
        Lockfile::parse(&text, path)
    }

    /// Parses lockfile `text`; `path` is only used in messages.
    pub fn parse(text: &str, path: &Path) -> Result<Lockfile> {
        let shown = path.display();
        let raw: RawLock = toml::from_str(text)
            .map_err(|e| crate::error::input(format!("{shown} is not a valid Cargo.lock: {e}")))?;
        let v1_checksums: Vec<(&String, &toml::Value)> = raw
            .metadata
            .iter()
            .filter(|(k, _)| k.starts_with("checksum "))
            .collect();
        let version = match raw.version {
            Some(v @ 3..=4) => v,
            Some(v) => {
                return Err(crate::error::input(format!(
                    "{shown} has lockfile version {v}, which airlock does not know (1 to 4)"
                )));
            }
            None if !v1_checksums.is_empty() => 1,
            None if raw.package.iter().any(|p| p.checksum.is_some()) => 2,
            None => 1,
        };

        let mut packages = Vec::with_capacity(raw.package.len());
        for p in &raw.package {
            validate_package_name(&p.name).map_err(|why| {
                crate::error::input(format!(
                    "{shown}: package name {:?} is not a valid cargo package name ({why}); \
                     this is not a lockfile cargo wrote: regenerate it with \
                     `cargo generate-lockfile` and check where it came from",
                    p.name
                ))
            })?;
            let source = match &p.source {
                None => Source::Path,
                Some(s) => Source::parse(s, version)
                    .with_context(|| format!("{shown}: package `{} {}`", p.name, p.version))?,
            };
            let version_parsed = parse_package_version(&p.version).map_err(|e| {
                crate::error::input(format!(
                    "{shown}: package `{}` has an invalid version {:?}: {e}",
                    p.name, p.version
                ))
            })?;
            let checksum = match &p.checksum {
                None => None,
                Some(hex) => Some(parse_checksum(hex, &p.name, &p.version, &shown)?),
            };
            packages.push(LockedPackage {
                id: PackageId {
                    name: p.name.clone(),
                    version: version_parsed,
                    source,
                },
                checksum,
                dependencies: Vec::new(),
            });
        }

        // cargo refuses a lockfile that locks one package twice; airlock would vendor both
        // into one directory.
        let mut ids = std::collections::BTreeSet::new();
        for p in &packages {
            if !ids.insert(&p.id) {
                return Err(crate::error::input(format!(
                    "{shown}: package `{} {}` from {} is locked twice; regenerate the lockfile \
                     with `cargo generate-lockfile`",
                    p.id.name, p.id.version, p.id.source
                )));
            }
        }

        // v1: `"checksum NAME VERSION (SOURCE)" = "HEX"` (or "<none>") in [metadata].
        for (key, value) in v1_checksums {
            let spec = &key["checksum ".len()..];
            let hex = value.as_str().ok_or_else(|| {
                crate::error::input(format!("{shown}: [metadata] `{key}` is not a string"))
            })?;
            if hex == "<none>" {
                continue;
            }
            let index = find_package(&packages, spec, version).ok_or_else(|| {
                crate::error::input(format!(
                    "{shown}: [metadata] `{key}` names no [[package]] of the lockfile"
                ))
            })?;
            let (name, ver) = (
                packages[index].id.name.clone(),
                packages[index].id.version.to_string(),
            );
            packages[index].checksum = Some(parse_checksum(hex, &name, &ver, &shown)?);
        }

        for (i, p) in raw.package.iter().enumerate() {
            let mut deps = Vec::with_capacity(p.dependencies.len());
            for spec in &p.dependencies {
                let index = find_package(&packages, spec, version).ok_or_else(|| {
                    crate::error::input(format!(
                        "{shown}: package `{} {}` depends on `{spec}`, which is not locked",
                        p.name, p.version
                    ))
                })?;
                deps.push(packages[index].id.clone());
            }
            packages[i].dependencies = deps;
        }
        Ok(Lockfile {
            path: path.to_path_buf(),
            version,
            packages,
        })
    }

    /// Where the lockfile was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lockfile format version (1 to 4).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Every locked package, in lockfile order (sorted by name, version, source).
    pub fn packages(&self) -> &[LockedPackage] {
        &self.packages
    }

    /// The locked packages that are not path packages (what a vendor directory holds).
    pub fn remote_packages(&self) -> impl Iterator<Item = &LockedPackage> {
        self.packages
            .iter()
            .filter(|p| !matches!(p.id.source, Source::Path))
    }

    /// The package with this id.
    pub fn get(&self, id: &PackageId) -> Option<&LockedPackage> {
        self.packages.iter().find(|p| &p.id == id)
    }
}

fn parse_checksum(
    hex: &str,
    name: &str,
    version: &str,
    shown: &impl fmt::Display,
) -> Result<Sha256Digest> {
    Sha256Digest::from_hex(hex).map_err(|e| {
        crate::error::input(format!(
            "{shown}: the checksum of `{name} {version}` is malformed: {e}"
        ))
    })
}

/// Finds the package a dependency entry names: `NAME`, `NAME VERSION` or
/// `NAME VERSION (SOURCE)` (v1 always writes the source).
fn find_package(packages: &[LockedPackage], spec: &str, lock_version: u32) -> Option<usize> {
    let mut parts = spec.splitn(3, ' ');
    let name = parts.next()?;
    let version = parts.next();
    let source = parts
        .next()
        .map(|s| s.trim_start_matches('(').trim_end_matches(')'));
    let source = match source {
        Some(s) => Some(Source::parse(s, lock_version).ok()?),
        None => None,
    };
    let mut found = packages.iter().enumerate().filter(|(_, p)| {
        p.id.name == name
            && version.is_none_or(|v| p.id.version.to_string() == v)
            && source.as_ref().is_none_or(|s| s == &p.id.source)
    });
    let first = found.next()?;
    // Ambiguous references are invalid lockfiles.
    found.next().is_none().then_some(first.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CFG_IF_SUM: &str = "4785bdd1c96b2a846b2bd7cc02e86b6b3dbf14e7e53446c4f54c92a361040822";
    const SAME_FILE_SUM: &str = "93fc1dc3aaa9bfed95e02e6eadabb4baf7e3078b0bd1b4d7b6b0b68378900502";
    const COMMIT: &str = "b50abfc77993031e17bb25274fcc0e3deae57702";

    fn v4() -> String {
        format!(
            r#"# This file is automatically @generated by Cargo.
version = 4

[[package]]
name = "app"
version = "0.1.0"
dependencies = [
 "cfg-if",
 "gitdep",
 "same-file",
]

[[package]]
name = "cfg-if"
version = "0.1.10"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "{CFG_IF_SUM}"

[[package]]
name = "gitdep"
version = "0.1.0"
source = "git+https://example.com/git/dep?branch=feat%2Fx#{COMMIT}"

[[package]]
name = "same-file"
version = "1.0.6"
source = "sparse+https://index.example.com/"
checksum = "{SAME_FILE_SUM}"
"#
        )
    }

    fn v1() -> String {
        format!(
            r#"[[package]]
name = "app"
version = "0.1.0"
dependencies = [
 "cfg-if 0.1.10 (registry+https://github.com/rust-lang/crates.io-index)",
 "gitdep 0.1.0 (git+https://example.com/git/dep?branch=feat/x#{COMMIT})",
 "same-file 1.0.6 (sparse+https://index.example.com/)",
]

[[package]]
name = "cfg-if"
version = "0.1.10"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "gitdep"
version = "0.1.0"
source = "git+https://example.com/git/dep?branch=feat/x#{COMMIT}"

[[package]]
name = "same-file"
version = "1.0.6"
source = "sparse+https://index.example.com/"

[metadata]
"checksum cfg-if 0.1.10 (registry+https://github.com/rust-lang/crates.io-index)" = "{CFG_IF_SUM}"
"checksum gitdep 0.1.0 (git+https://example.com/git/dep?branch=feat/x#{COMMIT})" = "<none>"
"checksum same-file 1.0.6 (sparse+https://index.example.com/)" = "{SAME_FILE_SUM}"
"#
        )
    }

    fn check_model(lock: &Lockfile) {
        let p = lock.packages();
        assert_eq!(p.len(), 4);
        assert_eq!(p[0].id.source, Source::Path);
        assert_eq!(p[0].dependencies.len(), 3);
        assert_eq!(p[0].dependencies[1].name, "gitdep");
        assert!(p[1].id.source.is_crates_io());
        assert_eq!(p[1].checksum.unwrap().hex(), CFG_IF_SUM);
        assert_eq!(
            p[2].id.source,
            Source::Git {
                url: "https://example.com/git/dep".into(),
                reference: GitReference::Branch("feat/x".into()),
                commit: COMMIT.into()
            }
        );
        assert_eq!(p[2].checksum, None);
        assert_eq!(p[3].id.source.kind(), SourceKind::SparseRegistry);
        assert_eq!(p[3].checksum.unwrap().hex(), SAME_FILE_SUM);
        assert_eq!(lock.remote_packages().count(), 3);
    }

    #[test]
    fn reads_v4_and_v3_and_v2() {
        let lock = Lockfile::parse(&v4(), Path::new("Cargo.lock")).unwrap();
        assert_eq!(lock.version(), 4);
        check_model(&lock);

        let v3 = v4()
            .replace("version = 4", "version = 3")
            .replace("feat%2Fx", "feat/x");
        let lock = Lockfile::parse(&v3, Path::new("Cargo.lock")).unwrap();
        assert_eq!(lock.version(), 3);
        check_model(&lock);

        let v2 = v3.replace("version = 3\n", "");
        let lock = Lockfile::parse(&v2, Path::new("Cargo.lock")).unwrap();
        assert_eq!(lock.version(), 2);
        check_model(&lock);
    }

    #[test]
    fn reads_v1_metadata_checksums() {
        let lock = Lockfile::parse(&v1(), Path::new("Cargo.lock")).unwrap();
        assert_eq!(lock.version(), 1);
        check_model(&lock);
    }

    #[test]
    fn refuses_broken_lockfiles() {
        let cases = [
            v4().replace(CFG_IF_SUM, "abc"),
            v4().replace("version = 4", "version = 9"),
            v4().replace(" \"same-file\",\n", " \"nothere\",\n"),
            v4().replace("registry+https", "svn+https"),
            v4().replace(&format!("#{COMMIT}"), ""),
            "[[package]]\nname = 1".to_owned(),
            format!(
                "{}\n[[package]]\nname = \"cfg-if\"\nversion = \"0.1.10\"\nsource = \"registry+https://github.com/rust-lang/crates.io-index\"\n",
                v4()
            ),
        ];
        for text in cases {
            let err = Lockfile::parse(&text, Path::new("x/Cargo.lock")).unwrap_err();
            assert!(format!("{err:#}").contains("x/Cargo.lock"), "{err:#}");
        }
    }

    #[test]
    fn refuses_names_and_versions_that_are_not_cargo_s() {
        for name in [
            "../../outside",
            "/abs/path",
            "a/b",
            "a\\b",
            "",
            ".",
            "..",
            "1abc",
            "a b",
            "a.b",
            "-lead",
            "a\u{0}b",
        ] {
            let quoted = toml::Value::String(name.to_owned()).to_string();
            let text = v4().replace("name = \"cfg-if\"", &format!("name = {quoted}"));
            let text = text.replace(" \"cfg-if\",\n", &format!(" {quoted},\n"));
            let err = Lockfile::parse(&text, Path::new("x/Cargo.lock")).unwrap_err();
            let shown = format!("{err:#}");
            assert!(shown.contains("x/Cargo.lock"), "{name:?}: {shown}");
            assert!(
                shown.contains("not a valid cargo package name"),
                "{name:?}: {shown}"
            );
            assert_eq!(
                crate::error::exit_kind(&err),
                crate::error::ExitKind::Input,
                "{name:?}"
            );
        }
        for name in [
            "cfg-if",
            "_private",
            "serde_json",
            "windows-sys",
            "ünïcode",
            "A1",
        ] {
            assert_eq!(validate_package_name(name), Ok(()), "{name}");
        }
        for version in ["1.0", "v1.0.0", "1.0.0/../x", "01.0.0", " 1.0.0"] {
            let text = v4().replace("version = \"0.1.10\"", &format!("version = {version:?}"));
            let err = Lockfile::parse(&text, Path::new("x/Cargo.lock")).unwrap_err();
            assert!(
                format!("{err:#}").contains("invalid version"),
                "{version}: {err:#}"
            );
        }
        let not_hex = v4().replace(COMMIT, "../../etc");
        let err = Lockfile::parse(&not_hex, Path::new("x/Cargo.lock")).unwrap_err();
        assert!(
            format!("{err:#}").contains("not a hex commit id"),
            "{err:#}"
        );
    }

    /// Whether `text` is exactly one plain path component (what a vendor directory name must be).
    fn is_one_component(text: &str) -> bool {
        let mut components = Path::new(text).components();
        matches!(
            (components.next(), components.next()),
            (Some(std::path::Component::Normal(c)), None) if c == text
        ) && !text.contains('/')
            && !text.contains('\0')
    }

    /// Every package of a parsed lockfile names safe directories.
    fn assert_safe_names(lock: &Lockfile) {
        for p in lock.packages() {
            assert!(is_one_component(&p.id.name), "{:?}", p.id.name);
            assert!(is_one_component(&p.id.dir_name()), "{:?}", p.id.dir_name());
            assert_eq!(validate_package_name(&p.id.name), Ok(()));
        }
    }

    proptest::proptest! {
        #[test]
        fn prop_arbitrary_text_never_panics(text in ".{0,400}") {
            if let Ok(lock) = Lockfile::parse(&text, Path::new("Cargo.lock")) {
                assert_safe_names(&lock);
            }
        }

        #[test]
        fn prop_mutated_lockfiles_never_panic_and_name_safe_paths(
            edits in proptest::collection::vec((0usize..2000, 0usize..8, ".{0,12}"), 1..6)
        ) {
            let mut text = v4();
            for (at, cut, insert) in edits {
                let mut at = at % (text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                let mut end = (at + cut).min(text.len());
                while !text.is_char_boundary(end) {
                    end += 1;
                }
                text.replace_range(at..end, &insert);
            }
            if let Ok(lock) = Lockfile::parse(&text, Path::new("Cargo.lock")) {
                assert_safe_names(&lock);
            }
        }

        #[test]
        fn prop_names_and_versions_that_pass_are_one_path_component(
            name in proptest::prop_oneof![
                ".{0,20}",
                "[a-z_./\\\\-]{0,12}",
                "(\\.\\./)*[a-z]{1,5}",
            ],
            version in proptest::prop_oneof![
                ".{0,16}",
                "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}(-[a-z0-9./+-]{1,8})?",
            ],
        ) {
            let quoted = |s: &str| toml::Value::String(s.to_owned()).to_string();
            let text = format!(
                "version = 4\n\n[[package]]\nname = {}\nversion = {}\n",
                quoted(&name),
                quoted(&version)
            );
            if let Ok(lock) = Lockfile::parse(&text, Path::new("Cargo.lock")) {
                assert_safe_names(&lock);
                proptest::prop_assert_eq!(&lock.packages()[0].id.name, &name);
            }
        }
    }

    #[test]
    fn displays_ids_and_sources() {
        let lock = Lockfile::parse(&v4(), Path::new("Cargo.lock")).unwrap();
        let p = lock.packages();
        assert_eq!(p[1].id.to_string(), "cfg-if v0.1.10");
        assert_eq!(
            p[2].id.source.to_string(),
            format!("git+https://example.com/git/dep?branch=feat/x#{COMMIT}")
        );
        assert_eq!(
            p[2].id.source.without_commit(),
            "git+https://example.com/git/dep?branch=feat/x"
        );
        assert_eq!(p[3].id.dir_name(), "same-file-1.0.6");
        let json = serde_json::to_value(&p[1]).unwrap();
        assert_eq!(json["version"], "0.1.10");
        assert_eq!(
            json["source"],
            "registry+https://github.com/rust-lang/crates.io-index"
        );
        assert_eq!(json["checksum"], format!("sha256:{CFG_IF_SUM}"));
    }
}
