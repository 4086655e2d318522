//! Where the airlock library that a generated xtask depends on comes from, and how CI installs
//! the `cargo airlock` command: a local checkout (`--airlock-path`), else the source cargo
//! recorded when it installed the running binary (`<install root>/.crates2.json`).
//!
//! Everything written is valid on another machine: paths relative to the workspace, git URLs
//! pinned to a commit, or registry versions. Never reads the network.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use toml_edit::Value;

use crate::error;
use crate::input::{self, Links};
use crate::workspace::relative_path;

/// The package name of airlock on every source.
const PACKAGE: &str = "cargo-airlock";

/// `.crates2.json` lists every binary cargo installed; a few kilobytes each.
const MAX_INSTALL_RECORD: u64 = 16 << 20;

/// Where airlock's source is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AirlockSource {
    /// crates.io, at this version.
    Registry {
        /// The version cargo installed.
        version: String,
    },
    /// A git repository at one commit.
    Git {
        /// The repository URL (without cargo's `?branch=` query).
        url: String,
        /// The commit cargo installed.
        rev: String,
    },
    /// The `cli/` package directory of a local checkout (absolute).
    Path {
        /// The package directory.
        cli_dir: PathBuf,
        /// Where it came from, for messages (`--airlock-path DIR`, the install record).
        origin: String,
    },
}

impl AirlockSource {
    /// The checkout given with `--airlock-path` (an airlock checkout or its `cli/` directory).
    pub fn checkout(path: &Path) -> Result<AirlockSource> {
        Ok(AirlockSource::Path {
            cli_dir: airlock_cli_dir(path)?,
            origin: format!("--airlock-path {}", path.display()),
        })
    }

    /// The source cargo recorded for the running binary in its install root's
    /// `.crates2.json` (`$CARGO_HOME` unless `--root` was given). Fails with the fix when the
    /// running binary was not installed by cargo (run from a `target/` directory).
    pub fn installed() -> Result<AirlockSource> {
        let exe = std::env::current_exe()
            .context("cannot tell where the running cargo-airlock is (current_exe)")?;
        let root = exe
            .parent()
            .filter(|bin| bin.file_name().is_some_and(|n| n == "bin"))
            .and_then(Path::parent);
        let record = root.map(|r| r.join(".crates2.json"));
        let bin_name = exe
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| PACKAGE.to_owned());
        let source = match &record {
            Some(record) if record.is_file() => recorded_source(record, &bin_name)?,
            _ => None,
        };
        match source {
            Some(source) => parse_source(&source, record.as_deref().unwrap_or(&exe)),
            None => Err(error::input(format!(
                "cannot tell which source this cargo-airlock was built from: {} is not a binary \
                 that `cargo install` recorded{}, and cargo-airlock is not published on \
                 crates.io, so the xtask cannot depend on it by version; install it with \
                 `cargo install --locked --git <airlock repository URL> cargo-airlock` and run \
                 init again, or pass --airlock-path DIR (an airlock checkout, inside this \
                 workspace when CI must build it, e.g. a git submodule)",
                exe.display(),
                record
                    .map(|r| format!(" in {}", r.display()))
                    .unwrap_or_default()
            ))),
        }
    }

    /// The xtask's dependency, as an inline TOML table; paths relative to `xtask/`.
    pub fn dependency(&self, workspace_root: &Path) -> String {
        let mut table = toml_edit::InlineTable::new();
        table.insert("package", Value::from(PACKAGE));
        match self {
            AirlockSource::Registry { version } => {
                table.insert("version", Value::from(version.as_str()));
            }
            AirlockSource::Git { url, rev } => {
                table.insert("git", Value::from(url.as_str()));
                table.insert("rev", Value::from(rev.as_str()));
            }
            AirlockSource::Path { cli_dir, .. } => {
                let relative = relative_path(&workspace_root.join("xtask"), cli_dir);
                table.insert("path", Value::from(relative));
            }
        }
        table.to_string().trim().to_owned()
    }

    /// The CI step that installs `cargo airlock` from a source a CI runner can reach. A local
    /// checkout outside the workspace is not one: that is an input error with the fix.
    pub fn ci_install(&self, workspace_root: &Path) -> Result<String> {
        Ok(match self {
            AirlockSource::Registry { version } => {
                format!("cargo install --locked {PACKAGE} --version {version}")
            }
            AirlockSource::Git { url, rev } => {
                format!("cargo install --locked --git {url} --rev {rev} {PACKAGE}")
            }
            AirlockSource::Path { cli_dir, origin } => {
                if !cli_dir.starts_with(workspace_root) {
                    return Err(error::input(format!(
                        "{origin}: {} is outside the workspace {}, so a CI runner cannot build \
                         airlock from it (and the xtask's path dependency would not resolve \
                         there); put the airlock checkout inside the workspace (e.g. `git \
                         submodule add <airlock repository URL> tools/airlock`) and pass that \
                         path, or install airlock with `cargo install --locked --git <URL> \
                         cargo-airlock` and run init without --airlock-path, or leave out --ci",
                        cli_dir.display(),
                        workspace_root.display()
                    )));
                }
                format!(
                    "cargo install --locked --path {}",
                    relative_path(workspace_root, cli_dir)
                )
            }
        })
    }
}

/// The source cargo recorded for the package that installed `bin_name`, if any.
fn recorded_source(record: &Path, bin_name: &str) -> Result<Option<String>> {
    let text = input::read_regular_to_string(record, Links::Follow, MAX_INSTALL_RECORD)?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
        error::input(format!(
            "{} is not cargo's install record (JSON): {e}; run `cargo install` again to \
             rewrite it, or pass --airlock-path DIR",
            record.display()
        ))
    })?;
    let Some(installs) = json.get("installs").and_then(|i| i.as_object()) else {
        return Ok(None);
    };
    // Keys are cargo's package ids: `NAME VERSION (SOURCE URL)`.
    for (key, install) in installs {
        let bins = install.get("bins").and_then(|b| b.as_array());
        if !bins.is_some_and(|b| b.iter().any(|n| n.as_str() == Some(bin_name))) {
            continue;
        }
        let Some((name_version, source)) = key.split_once(" (") else {
            continue;
        };
        if name_version.split(' ').next() != Some(PACKAGE) {
            continue;
        }
        let version = name_version.split(' ').nth(1).unwrap_or_default();
        let source = source.strip_suffix(')').unwrap_or(source);
        return Ok(Some(format!("{version} {source}")));
    }
    Ok(None)
}

/// `VERSION SOURCE-URL` as recorded (`registry+…`, `sparse+…`, `git+URL?branch=…#REV`,
/// `path+file:///…`).
fn parse_source(recorded: &str, record: &Path) -> Result<AirlockSource> {
    let (version, url) = recorded.split_once(' ').unwrap_or(("", recorded));
    let unsupported = |why: &str| {
        error::input(format!(
            "{}: cargo-airlock was installed from `{url}`, {why}; pass --airlock-path DIR (an \
             airlock checkout inside this workspace) or install it with `cargo install --locked \
             --git <airlock repository URL> cargo-airlock`",
            record.display()
        ))
    };
    if url == "registry+https://github.com/rust-lang/crates.io-index"
        || url == "sparse+https://index.crates.io/"
    {
        return Ok(AirlockSource::Registry {
            version: version.to_owned(),
        });
    }
    if let Some(git) = url.strip_prefix("git+") {
        let (location, rev) = git
            .split_once('#')
            .ok_or_else(|| unsupported("a git source with no commit"))?;
        let location = location.split_once('?').map_or(location, |(u, _)| u);
        if rev.is_empty() || !rev.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(unsupported("whose commit is not a hex id"));
        }
        return Ok(AirlockSource::Git {
            url: location.to_owned(),
            rev: rev.to_owned(),
        });
    }
    if let Some(path) = url.strip_prefix("path+file://") {
        return Ok(AirlockSource::Path {
            cli_dir: airlock_cli_dir(Path::new(path))?,
            origin: format!("the install record {}", record.display()),
        });
    }
    Err(unsupported("a source a CI runner cannot install from"))
}

/// The `cli/` package directory of an airlock checkout (or the package directory itself),
/// canonical.
fn airlock_cli_dir(path: &Path) -> Result<PathBuf> {
    let path = path
        .canonicalize()
        .map_err(|e| error::input(format!("--airlock-path {}: {e}", path.display())))?;
    for candidate in [path.join("cli"), path.clone()] {
        let manifest = candidate.join("Cargo.toml");
        let is_airlock = input::read_regular_to_string(&manifest, Links::Follow, 1 << 20)
            .is_ok_and(|t| t.contains("name = \"cargo-airlock\""));
        if is_airlock {
            return Ok(candidate);
        }
    }
    Err(error::input(format!(
        "--airlock-path {}: no cargo-airlock package there (expected an airlock checkout or its cli/ directory)",
        path.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_sources_parse() {
        let record = Path::new("/h/.crates2.json");
        assert_eq!(
            parse_source(
                "0.1.0 git+https://github.com/airlock-rs/airlock?branch=main#0123abcd",
                record
            )
            .unwrap(),
            AirlockSource::Git {
                url: "https://github.com/airlock-rs/airlock".into(),
                rev: "0123abcd".into()
            }
        );
        assert_eq!(
            parse_source(
                "0.1.0 registry+https://github.com/rust-lang/crates.io-index",
                record
            )
            .unwrap(),
            AirlockSource::Registry {
                version: "0.1.0".into()
            }
        );
        let err = parse_source("0.1.0 git+https://example.invalid/a", record).unwrap_err();
        assert_eq!(error::exit_kind(&err), crate::ExitKind::Input);
        assert!(format!("{err:#}").contains("--airlock-path"), "{err:#}");
    }

    #[test]
    fn paths_are_relative_to_the_workspace() {
        let inside = AirlockSource::Path {
            cli_dir: "/w/app/tools/airlock/cli".into(),
            origin: "--airlock-path tools/airlock".into(),
        };
        let root = Path::new("/w/app");
        assert_eq!(
            inside.dependency(root),
            r#"{ package = "cargo-airlock", path = "../tools/airlock/cli" }"#
        );
        assert_eq!(
            inside.ci_install(root).unwrap(),
            "cargo install --locked --path tools/airlock/cli"
        );
        let outside = AirlockSource::Path {
            cli_dir: "/src/airlock/cli".into(),
            origin: "--airlock-path /src/airlock".into(),
        };
        assert_eq!(
            outside.dependency(root),
            r#"{ package = "cargo-airlock", path = "../../../src/airlock/cli" }"#
        );
        let err = outside.ci_install(root).unwrap_err();
        assert!(format!("{err}").contains("submodule"), "{err}");
    }
}
