//! The dependency list embedded in a binary, in the format cargo-auditable defined and that
//! `rust-audit-info`, `cargo audit bin`, syft and trivy read: a `.dep-v0` section holding
//! zlib-compressed JSON (`{"packages": [{"name", "version", "source", "kind", "dependencies",
//! "root"}], "format": 1}`, the schema published as `cargo-auditable.schema.json`).
//!
//! This module holds the format (encoding and decoding) and reads the section back from an
//! ELF file; it never writes a binary (`compile` adds the section after linking).

use std::io::{Read, Write};

use anyhow::{Context, Result};
use flate2::Compression;
use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use serde::{Deserialize, Serialize};

/// The section name cargo-auditable uses and every reader looks for.
pub const SECTION_NAME: &str = ".dep-v0";

/// The largest decompressed list airlock reads (16 MiB; a list of 2,000 packages is about
/// 200 KiB): a compressed section cannot make airlock hold more than this.
pub const MAX_JSON_SIZE: u64 = 16 << 20;

/// The format revision airlock writes. Revision 1 says the list comes from cargo's resolved
/// dependency graph for the binary's target and features (cargo-auditable's
/// `VersionInfo::format` docs); 0 was the earlier, unversioned form.
pub const FORMAT: u32 = 1;

/// How a package takes part in a binary: compiled into it, or only run while building it
/// (build scripts, proc-macros and everything they pull in).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Hash,
)]
#[serde(rename_all = "lowercase")]
pub enum DepKind {
    /// Only used at build time.
    Build,
    /// Linked into the binary.
    #[default]
    Runtime,
}

impl DepKind {
    fn is_runtime(&self) -> bool {
        *self == DepKind::Runtime
    }
}

fn is_false(value: &bool) -> bool {
    !*value
}

/// One package of an embedded list. Fields left at their defaults are omitted, as
/// cargo-auditable writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepPackage {
    /// The package name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// `crates.io`, `git`, `local`, `registry`, or another source kind.
    pub source: String,
    /// Build-time only, or linked in.
    #[serde(default, skip_serializing_if = "DepKind::is_runtime")]
    pub kind: DepKind,
    /// Indices (into the list's `packages`) of the packages this one depends on, sorted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependencies: Vec<usize>,
    /// Whether this is the binary's own package.
    #[serde(default, skip_serializing_if = "is_false")]
    pub root: bool,
}

impl DepPackage {
    /// The package URL (`pkg:cargo/name@version`).
    pub fn purl(&self) -> String {
        format!("pkg:cargo/{}@{}", self.name, self.version)
    }
}

/// A binary's dependency list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DepList {
    /// Every package, sorted by name, version and cargo's id.
    pub packages: Vec<DepPackage>,
    /// The format revision.
    #[serde(default)]
    pub format: u32,
}

impl DepList {
    /// The list as the section holds it: compact JSON, zlib-compressed at level 7 (what
    /// cargo-auditable uses). The same list always gives the same bytes.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let json = serde_json::to_vec(self).context("cannot serialise the dependency list")?;
        let mut encoder = ZlibEncoder::new(Vec::new(), Compression::new(7));
        encoder.write_all(&json)?;
        Ok(encoder.finish()?)
    }

    /// Decodes a section's bytes: zlib, at most [`MAX_JSON_SIZE`] bytes of JSON, and every
    /// dependency index inside the list.
    pub fn decode(compressed: &[u8]) -> Result<DepList> {
        let mut json = Vec::new();
        ZlibDecoder::new(compressed)
            .take(MAX_JSON_SIZE + 1)
            .read_to_end(&mut json)
            .context("not zlib data")?;
        if json.len() as u64 > MAX_JSON_SIZE {
            anyhow::bail!("more than {MAX_JSON_SIZE} bytes once decompressed");
        }
        let list: DepList = serde_json::from_slice(&json).context("not a dependency list")?;
        let count = list.packages.len();
        for package in &list.packages {
            if let Some(bad) = package.dependencies.iter().find(|&&i| i >= count) {
                anyhow::bail!(
                    "package `{}` depends on entry {bad}, but the list has {count}",
                    package.name
                );
            }
        }
        Ok(list)
    }

    /// The binary's own package.
    pub fn root(&self) -> Option<&DepPackage> {
        self.packages.iter().find(|p| p.root)
    }
}

/// What a binary says about its dependencies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "kebab-case")]
pub enum EmbeddedDeps {
    /// No `.dep-v0` section.
    Absent,
    /// The decoded list.
    Present(DepList),
    /// A `.dep-v0` section that cannot be decoded, and why.
    Unreadable {
        /// Why it cannot be read.
        reason: String,
    },
}

impl EmbeddedDeps {
    /// Decodes the section's bytes, if there is a section.
    pub fn from_section(section: Option<&[u8]>) -> EmbeddedDeps {
        match section {
            None => EmbeddedDeps::Absent,
            Some(bytes) => match DepList::decode(bytes) {
                Ok(list) => EmbeddedDeps::Present(list),
                Err(e) => EmbeddedDeps::Unreadable {
                    reason: format!("{e:#}"),
                },
            },
        }
    }

    /// The list, when there is a readable one.
    pub fn list(&self) -> Option<&DepList> {
        match self {
            EmbeddedDeps::Present(list) => Some(list),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DepList {
        DepList {
            packages: vec![
                DepPackage {
                    name: "app".into(),
                    version: "0.1.0".into(),
                    source: "local".into(),
                    kind: DepKind::Runtime,
                    dependencies: vec![1, 2],
                    root: true,
                },
                DepPackage {
                    name: "cc".into(),
                    version: "1.2.0".into(),
                    source: "crates.io".into(),
                    kind: DepKind::Build,
                    dependencies: vec![],
                    root: false,
                },
                DepPackage {
                    name: "memchr".into(),
                    version: "2.7.4".into(),
                    source: "crates.io".into(),
                    kind: DepKind::Runtime,
                    dependencies: vec![],
                    root: false,
                },
            ],
            format: FORMAT,
        }
    }

    #[test]
    fn json_is_cargo_auditables() {
        let json = serde_json::to_string(&sample()).unwrap();
        assert_eq!(
            json,
            r#"{"packages":[{"name":"app","version":"0.1.0","source":"local","dependencies":[1,2],"root":true},{"name":"cc","version":"1.2.0","source":"crates.io","kind":"build"},{"name":"memchr","version":"2.7.4","source":"crates.io"}],"format":1}"#
        );
    }

    #[test]
    fn round_trips_and_is_deterministic() {
        let encoded = sample().encode().unwrap();
        assert_eq!(encoded, sample().encode().unwrap());
        assert_eq!(DepList::decode(&encoded).unwrap(), sample());
        assert_eq!(
            EmbeddedDeps::from_section(Some(&encoded)).list(),
            Some(&sample())
        );
        assert_eq!(EmbeddedDeps::from_section(None), EmbeddedDeps::Absent);
    }

    #[test]
    fn hostile_sections_are_unreadable_never_a_panic() {
        let mut bad_index = sample();
        bad_index.packages[0].dependencies.push(7);
        let bomb = {
            let mut e = ZlibEncoder::new(Vec::new(), Compression::best());
            e.write_all(&vec![b' '; (MAX_JSON_SIZE + 10) as usize])
                .unwrap();
            e.finish().unwrap()
        };
        for (bytes, says) in [
            (b"not zlib".to_vec(), "not zlib data"),
            (bad_index.encode().unwrap(), "depends on entry 7"),
            (bomb, "decompressed"),
        ] {
            match EmbeddedDeps::from_section(Some(&bytes)) {
                EmbeddedDeps::Unreadable { reason } => assert!(reason.contains(says), "{reason}"),
                other => panic!("{other:?}"),
            }
        }
    }
}
