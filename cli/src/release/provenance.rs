//! SLSA v1 provenance of a release: an in-toto Statement v1 whose predicate
//! (`https://slsa.dev/provenance/v1`) says what was built (every archive, binary and image
//! manifest, by sha256), from what (the git revision, `Cargo.lock` and every locked package),
//! how (targets, profile, features, `SOURCE_DATE_EPOCH`, the toolchain's versions) and by
//! whom (airlock, with start and finish times); wrapped in a DSSE envelope and written as one
//! line of `provenance.intoto.jsonl` (signed, when the release is, by [`crate::signing::dsse`]).
//!
//! Field names and meanings follow the SLSA v1.0 provenance spec
//! (<https://slsa.dev/spec/v1.0/provenance>) and the in-toto attestation framework's
//! Statement v1 and ResourceDescriptor. This module builds and parses the documents; it never
//! builds binaries and never reads the network. `verify --rebuild` reads it back.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::compile::toolchain::Zig;
use crate::digest::Sha256Digest;
use crate::elf::strip::StripMode;
use crate::error;
use crate::lock::{Lockfile, Source};
use crate::process;
use crate::signing::dsse::{self, Envelope};
use crate::signing::key::SigningKey;

/// in-toto Statement v1's `_type`.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// SLSA provenance v1's predicate type.
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The file `dist` writes.
pub const FILE_NAME: &str = "provenance.intoto.jsonl";
/// What `buildDefinition.externalParameters` means: a `cargo airlock dist` run, documented in
/// the README's "Provenance" section.
pub const BUILD_TYPE: &str = "https://github.com/airlock-rs/airlock/blob/main/README.md#provenance";
/// The builder: airlock run on the machine that signs the release. The version goes into
/// `builder.version`.
pub const BUILDER_ID: &str = "https://github.com/airlock-rs/airlock#cargo-airlock-dist";
/// The largest provenance file airlock reads (64 MiB; a release of 2,000 packages and a few
/// dozen artifacts is well under 1 MiB).
pub const MAX_FILE_SIZE: u64 = 64 << 20;

/// An in-toto ResourceDescriptor: something by name or URI, with its digests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceDescriptor {
    /// A URI (`git+https://…@<rev>`, `pkg:cargo/name@version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// A name (a subject's file name, relative to the release directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Algorithm (`sha256`, `gitCommit`) → lowercase hex.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
    /// Anything else (a git checkout's `dirty` state, a package's cargo source).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, serde_json::Value>,
}

impl ResourceDescriptor {
    /// The sha256 digest, when it has one.
    pub fn sha256(&self) -> Option<&str> {
        self.digest.get("sha256").map(String::as_str)
    }
}

/// The in-toto Statement v1 of a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    /// [`STATEMENT_TYPE`].
    #[serde(rename = "_type")]
    pub statement_type: String,
    /// What was built: every archive, binary and image manifest.
    pub subject: Vec<ResourceDescriptor>,
    /// [`PREDICATE_TYPE`].
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    /// The SLSA provenance.
    pub predicate: Provenance,
}

/// SLSA provenance v1.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Provenance {
    /// The inputs.
    pub build_definition: BuildDefinition,
    /// The run.
    pub run_details: RunDetails,
}

/// SLSA's BuildDefinition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildDefinition {
    /// [`BUILD_TYPE`].
    pub build_type: String,
    /// What the person releasing chose.
    pub external_parameters: ExternalParameters,
    /// What airlock and the machine chose.
    pub internal_parameters: InternalParameters,
    /// The source checkout, `Cargo.lock` and every locked package.
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// The source a release was built from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceParameters {
    /// The repository (`package.repository` of the workspace, else git's `origin`).
    pub repository: Option<String>,
    /// The git commit.
    pub revision: Option<String>,
    /// Whether the checkout had uncommitted changes (then the revision alone does not
    /// reproduce the release).
    pub dirty: bool,
    /// The workspace's directory inside the repository, `/`-separated (`.` at the top).
    pub workspace: String,
}

/// The parameters of the `dist` run that a rebuild must repeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalParameters {
    /// The source.
    pub source: SourceParameters,
    /// Target triples.
    pub targets: Vec<String>,
    /// Cargo profile.
    pub profile: String,
    /// Released packages.
    pub packages: Vec<String>,
    /// Released binaries (empty: all of the packages').
    pub bins: Vec<String>,
    /// Cargo features (`--features`).
    pub features: Vec<String>,
    /// Archive formats.
    pub archives: Vec<String>,
    /// Whether an image was built.
    pub image: bool,
    /// What was stripped from the shipped binaries (`none`, `debuginfo`, `symbols`).
    pub strip: StripMode,
}

/// The versions of what built the release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Toolchain {
    /// `rustc -vV`.
    pub rustc: String,
    /// `cargo -V`.
    pub cargo: String,
    /// `zig version`, when zig is installed.
    pub zig: Option<String>,
    /// The first line of `musl-gcc --version`, when musl-gcc is installed.
    pub musl_gcc: Option<String>,
}

/// What the build machine contributed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InternalParameters {
    /// The timestamp every artifact carries.
    #[serde(rename = "SOURCE_DATE_EPOCH")]
    pub source_date_epoch: u64,
    /// The toolchain.
    pub toolchain: Toolchain,
    /// `cargo-airlock <version>`.
    pub airlock: String,
}

/// SLSA's RunDetails.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDetails {
    /// Who built it.
    pub builder: Builder,
    /// When.
    pub metadata: RunMetadata,
}

/// SLSA's Builder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Builder {
    /// [`BUILDER_ID`].
    pub id: String,
    /// `cargo-airlock` → its version.
    pub version: BTreeMap<String, String>,
}

/// SLSA's BuildMetadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunMetadata {
    /// RFC 3339, when `dist` started.
    pub started_on: String,
    /// RFC 3339, when the last artifact was written.
    pub finished_on: String,
}

/// The statement as the envelope's payload: compact JSON.
pub fn payload(statement: &Statement) -> Result<Vec<u8>> {
    serde_json::to_vec(statement).context("cannot serialise the provenance")
}

/// The statement in a DSSE envelope: signed by `key`, or with no signature (`signatures: []`)
/// when the release is not signed.
pub fn envelope(statement: &Statement, key: Option<&SigningKey>) -> Result<Envelope> {
    let payload = payload(statement)?;
    match key {
        Some(key) => dsse::sign(key, dsse::IN_TOTO_PAYLOAD_TYPE, &payload),
        None => Ok(Envelope {
            payload: base64::engine::general_purpose::STANDARD.encode(payload),
            payload_type: dsse::IN_TOTO_PAYLOAD_TYPE.to_owned(),
            signatures: Vec::new(),
        }),
    }
}

/// The line `provenance.intoto.jsonl` holds (the envelope's JSON and a newline).
pub fn to_line(envelope: &Envelope) -> Result<Vec<u8>> {
    let mut line = envelope.to_json()?;
    line.push(b'\n');
    Ok(line)
}

/// The statement inside `envelope`, checked to be an in-toto v1 statement of SLSA v1
/// provenance. Reads the payload only: whether a signature verifies is the caller's question.
pub fn statement(envelope: &Envelope) -> Result<Statement> {
    if envelope.payload_type != dsse::IN_TOTO_PAYLOAD_TYPE {
        anyhow::bail!(
            "payloadType is `{}`, expected `{}`",
            envelope.payload_type,
            dsse::IN_TOTO_PAYLOAD_TYPE
        );
    }
    let payload = envelope
        .payload_bytes()
        .context("the payload is not base64")?;
    let statement: Statement = serde_json::from_slice(&payload)
        .context("the payload is not an in-toto statement of SLSA provenance")?;
    if statement.statement_type != STATEMENT_TYPE || statement.predicate_type != PREDICATE_TYPE {
        anyhow::bail!(
            "the statement is `{}` of `{}`, expected `{STATEMENT_TYPE}` of `{PREDICATE_TYPE}`",
            statement.statement_type,
            statement.predicate_type
        );
    }
    Ok(statement)
}

/// Reads the envelope of `provenance.intoto.jsonl` (a regular file, bounded) and the statement
/// in it; anything else is an input error naming the file.
pub fn read(path: &Path) -> Result<(Envelope, Statement)> {
    let bytes = crate::input::read_regular(path, crate::input::Links::Follow, MAX_FILE_SIZE)?;
    let shown = path.display();
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| error::input(format!("{shown} is not UTF-8 text")))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let first = lines
        .next()
        .ok_or_else(|| error::input(format!("{shown} holds no envelope")))?;
    let envelope = Envelope::parse(first.as_bytes(), &shown.to_string())?;
    let statement = statement(&envelope).map_err(|e| error::input(format!("{shown}: {e:#}")))?;
    Ok((envelope, statement))
}

/// The resolved dependencies of a release: the source checkout, `Cargo.lock` itself, and every
/// package it locks (a purl, and the `.crate` checksum or the git commit).
pub fn resolved_dependencies(
    source: &SourceParameters,
    lockfile: &Path,
) -> Result<Vec<ResourceDescriptor>> {
    let mut out = Vec::new();
    if let Some(revision) = &source.revision {
        let mut descriptor = ResourceDescriptor {
            uri: source
                .repository
                .as_ref()
                .map(|r| format!("git+{r}@{revision}")),
            name: Some("source".to_owned()),
            ..ResourceDescriptor::default()
        };
        descriptor
            .digest
            .insert("gitCommit".to_owned(), revision.clone());
        descriptor
            .annotations
            .insert("dirty".to_owned(), source.dirty.into());
        out.push(descriptor);
    }
    let lock_bytes = crate::input::read_regular(
        lockfile,
        crate::input::Links::Follow,
        crate::input::MAX_TEXT_INPUT,
    )?;
    out.push(ResourceDescriptor {
        name: Some("Cargo.lock".to_owned()),
        digest: BTreeMap::from([("sha256".to_owned(), Sha256Digest::of(&lock_bytes).hex())]),
        ..ResourceDescriptor::default()
    });
    let lock = Lockfile::load(lockfile)?;
    for package in lock.packages() {
        let mut descriptor = ResourceDescriptor {
            uri: Some(format!(
                "pkg:cargo/{}@{}",
                package.id.name, package.id.version
            )),
            name: Some(package.id.name.clone()),
            ..ResourceDescriptor::default()
        };
        if let Some(checksum) = package.checksum {
            descriptor
                .digest
                .insert("sha256".to_owned(), checksum.hex());
        }
        match &package.id.source {
            Source::Path => {}
            source if source.is_crates_io() => {}
            source => {
                if let Source::Git { commit, .. } = source {
                    descriptor
                        .digest
                        .insert("gitCommit".to_owned(), commit.clone());
                }
                descriptor
                    .annotations
                    .insert("source".to_owned(), source.to_string().into());
            }
        }
        out.push(descriptor);
    }
    Ok(out)
}

/// The source of the workspace at `root`: its repository, the commit and whether the checkout
/// has uncommitted changes (untracked files outside `.gitignore` count).
pub fn source_of(root: &Path, repository: Option<String>) -> SourceParameters {
    let revision = crate::workspace::git_output(root, &["rev-parse", "HEAD"]);
    let dirty = revision.is_some()
        && process::run_captured(Command::new("git").arg("-C").arg(root).args([
            "status",
            "--porcelain",
            "--untracked-files=normal",
        ]))
        .map(|o| !o.stdout.trim_ascii().is_empty())
        .unwrap_or(true);
    // A remote on this machine (a path, `file://`) would publish a local path: left out.
    let repository = repository.or_else(|| {
        crate::workspace::git_output(root, &["config", "--get", "remote.origin.url"])
            .filter(|url| is_remote_url(url))
    });
    let workspace = crate::workspace::git_output(root, &["rev-parse", "--show-prefix"])
        .map(|p| p.trim_end_matches('/').to_owned())
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| ".".to_owned());
    SourceParameters {
        repository,
        revision,
        dirty,
        workspace,
    }
}

/// Whether a git remote URL names another machine: `scheme://…` other than `file://`, or
/// scp-like `user@host:path`.
fn is_remote_url(url: &str) -> bool {
    match url.split_once("://") {
        Some((scheme, _)) => scheme != "file",
        None => url
            .split_once(':')
            .is_some_and(|(host, _)| host.contains('@') && !host.contains('/')),
    }
}

/// The versions of rustc (`-vV`, run in `root` so rustup honours the toolchain file), cargo,
/// zig and musl-gcc.
pub fn toolchain(root: &Path) -> Result<Toolchain> {
    let first_line_or_all = |cmd: &mut Command, all: bool| -> Option<String> {
        let output = process::run_captured(cmd).ok()?;
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        if all {
            Some(text)
        } else {
            text.lines().next().map(str::to_owned)
        }
    };
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let rustc = first_line_or_all(Command::new(rustc).arg("-vV").current_dir(root), true)
        .context("cannot run `rustc -vV` for the provenance")?;
    let cargo = first_line_or_all(process::cargo().arg("-V").current_dir(root), false)
        .context("cannot run `cargo -V` for the provenance")?;
    let musl_gcc = process::find_on_path("musl-gcc")
        .and_then(|p| first_line_or_all(Command::new(p).arg("--version"), false));
    Ok(Toolchain {
        rustc,
        cargo,
        zig: Zig::find().map(|z| z.version),
        musl_gcc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statement() -> Statement {
        Statement {
            statement_type: STATEMENT_TYPE.to_owned(),
            subject: vec![ResourceDescriptor {
                name: Some("app.tar.gz".into()),
                digest: BTreeMap::from([("sha256".into(), Sha256Digest::of(b"a").hex())]),
                ..ResourceDescriptor::default()
            }],
            predicate_type: PREDICATE_TYPE.to_owned(),
            predicate: Provenance {
                build_definition: BuildDefinition {
                    build_type: BUILD_TYPE.to_owned(),
                    external_parameters: ExternalParameters {
                        source: SourceParameters {
                            repository: None,
                            revision: Some("abc".into()),
                            dirty: false,
                            workspace: ".".into(),
                        },
                        targets: vec!["x86_64-unknown-linux-musl".into()],
                        profile: "release".into(),
                        packages: vec!["app".into()],
                        bins: vec![],
                        features: vec![],
                        archives: vec!["tar.gz".into()],
                        image: false,
                        strip: StripMode::Debuginfo,
                    },
                    internal_parameters: InternalParameters {
                        source_date_epoch: 1,
                        toolchain: Toolchain {
                            rustc: "rustc 1.95.0".into(),
                            cargo: "cargo 1.95.0".into(),
                            zig: None,
                            musl_gcc: None,
                        },
                        airlock: "cargo-airlock 0.1.0".into(),
                    },
                    resolved_dependencies: vec![],
                },
                run_details: RunDetails {
                    builder: Builder {
                        id: BUILDER_ID.to_owned(),
                        version: BTreeMap::new(),
                    },
                    metadata: RunMetadata {
                        started_on: "1970-01-01T00:00:01Z".into(),
                        finished_on: "1970-01-01T00:00:02Z".into(),
                    },
                },
            },
        }
    }

    #[test]
    fn only_remote_urls_are_published() {
        for (url, remote) in [
            ("https://github.com/o/r.git", true),
            ("ssh://git@host/o/r", true),
            ("git@github.com:o/r.git", true),
            ("file:///srv/repo", false),
            ("/home/me/repo", false),
            ("../repo", false),
        ] {
            assert_eq!(is_remote_url(url), remote, "{url}");
        }
    }

    #[test]
    fn envelopes_round_trip_signed_or_not() {
        let (key, _) = SigningKey::generate().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        for key in [None, Some(&key)] {
            let envelope = envelope(&statement(), key).unwrap();
            assert_eq!(super::statement(&envelope).unwrap(), statement());
            assert_eq!(envelope.signatures.len(), usize::from(key.is_some()));
            std::fs::write(&path, to_line(&envelope).unwrap()).unwrap();
            let (read_back, statement_read) = read(&path).unwrap();
            assert_eq!(statement_read, statement());
            if let Some(key) = key {
                assert_eq!(
                    read_back.verify(key.public_key()).unwrap(),
                    payload(&statement()).unwrap()
                );
            }
        }
    }

    #[test]
    fn other_statements_are_input_errors_naming_the_file() {
        let mut other = envelope(&statement(), None).unwrap();
        other.payload_type = "text/plain".into();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(&path, to_line(&other).unwrap()).unwrap();
        let err = read(&path).unwrap_err();
        assert_eq!(error::exit_kind(&err), error::ExitKind::Input);
        assert!(err.to_string().contains(FILE_NAME), "{err}");
        std::fs::write(&path, b"{}").unwrap();
        assert!(read(&path).is_err());
    }
}
