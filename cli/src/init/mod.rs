//! `cargo airlock init`: adds an xtask crate, the `cargo xtask` alias, a
//! `[workspace.metadata.airlock]` section and CI workflows from `templates/` to another
//! workspace. Never overwrites a file without `--force`; edits `Cargo.toml` and
//! `.cargo/config.toml` in place, keeping their formatting and comments (`toml_edit`).
//!
//! Checks everything before writing anything: a conflict leaves the workspace untouched.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use toml_edit::{Array, DocumentMut, Item, Table, Value};

use crate::atomic;
use crate::error;
use crate::render::{self, Align, CommandReport};
use crate::workspace::Workspace;

const XTASK_CARGO_TOML: &str = include_str!("../../../templates/init/xtask-Cargo.toml");
const XTASK_MAIN_RS: &str = include_str!("../../../templates/init/xtask-main.rs");
const CARGO_CONFIG: &str = include_str!("../../../templates/init/cargo-config.toml");
const AIRLOCK_METADATA: &str = include_str!("../../../templates/init/airlock-metadata.toml");
const GITHUB_RELEASE: &str = include_str!("../../../templates/ci/github-release.yml");
const GITLAB_CI: &str = include_str!("../../../templates/ci/gitlab-ci.yml");

/// The `cargo xtask` alias cargo needs to find the xtask package.
const XTASK_ALIAS: &str = "run --package xtask --";

/// CI systems `init` writes workflows for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ci {
    /// `.github/workflows/release.yml`.
    Github,
    /// `.gitlab-ci.yml`.
    Gitlab,
}

impl Ci {
    fn path(self) -> &'static str {
        match self {
            Ci::Github => ".github/workflows/release.yml",
            Ci::Gitlab => ".gitlab-ci.yml",
        }
    }

    fn template(self) -> &'static str {
        match self {
            Ci::Github => GITHUB_RELEASE,
            Ci::Gitlab => GITLAB_CI,
        }
    }
}

/// Options of `cargo airlock init`.
#[derive(Debug, Clone, Default)]
pub struct InitOptions {
    /// The workspace's `Cargo.toml` (default: the current directory's workspace).
    pub manifest_path: Option<PathBuf>,
    /// CI workflows to add.
    pub ci: Vec<Ci>,
    /// A local airlock checkout for the xtask's dependency (instead of the crates.io version).
    pub airlock_path: Option<PathBuf>,
    /// Overwrite files that exist with other contents.
    pub force: bool,
}

/// What `init` did to one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// The file did not exist.
    Created,
    /// The file was edited in place (a member, an alias or a section added).
    Updated,
    /// The file was replaced (`--force`).
    Overwritten,
    /// The file already had what init would write.
    Unchanged,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Overwritten => "overwritten",
            Action::Unchanged => "unchanged",
        })
    }
}

/// One file `init` wrote or checked.
#[derive(Debug, Clone, Serialize)]
pub struct InitFile {
    /// Path relative to the workspace root.
    pub path: String,
    /// What happened to it.
    pub action: Action,
}

/// The result of `init`.
#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    /// The workspace root.
    pub root: PathBuf,
    /// Every file, in the order written.
    pub files: Vec<InitFile>,
}

impl CommandReport for InitReport {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .files
            .iter()
            .map(|f| vec![f.action.to_string(), f.path.clone()])
            .collect();
        let mut out = render::table(&[("action", Align::Left), ("file", Align::Left)], &rows);
        out.push_str("\nnext: `cargo xtask dist` builds the release into target/dist\n");
        out
    }
}

/// A file init plans to write, with what was there before.
struct Planned {
    relative: String,
    contents: String,
    action: Action,
}

/// `cargo airlock init`.
pub fn init(options: &InitOptions) -> Result<InitReport> {
    let workspace = Workspace::load(options.manifest_path.as_deref())?;
    let root = workspace.root().to_path_buf();
    let dependency = airlock_dependency(options.airlock_path.as_deref())?;
    let install = install_command(options.airlock_path.as_deref())?;
    let first_bin = workspace
        .members()
        .iter()
        .flat_map(|p| p.targets.iter())
        .find(|t| t.is_bin())
        .map(|t| t.name.clone())
        .unwrap_or_else(|| "app".to_owned());

    let mut planned = Vec::new();
    let mut conflicts = Vec::new();
    let mut plan_file = |relative: &str, contents: String| -> Result<()> {
        let path = root.join(relative);
        let action = match std::fs::read_to_string(&path) {
            Ok(existing) if existing == contents => Action::Unchanged,
            Ok(_) if options.force => Action::Overwritten,
            Ok(_) => {
                conflicts.push(relative.to_owned());
                Action::Unchanged
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Action::Created,
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        planned.push(Planned {
            relative: relative.to_owned(),
            contents,
            action,
        });
        Ok(())
    };

    plan_file(
        "xtask/Cargo.toml",
        XTASK_CARGO_TOML.replace("{{airlock_dependency}}", &dependency),
    )?;
    plan_file("xtask/src/main.rs", XTASK_MAIN_RS.to_owned())?;
    for ci in &options.ci {
        let text = ci
            .template()
            .replace("{{install_airlock}}", &install)
            .replace("{{budget}}", "20MiB");
        plan_file(ci.path(), text)?;
    }

    planned.push(plan_cargo_config(&root, options.force, &mut conflicts)?);
    planned.push(plan_root_manifest(&root, &first_bin)?);

    if !conflicts.is_empty() {
        return Err(error::input(format!(
            "these files exist with other contents in {}: {}; nothing was written \
             (rerun with --force to overwrite them)",
            root.display(),
            conflicts.join(", ")
        )));
    }

    let mut files = Vec::new();
    for file in planned {
        if file.action != Action::Unchanged {
            let path = root.join(&file.relative);
            atomic::write_file(&path, file.contents.as_bytes())?;
        }
        files.push(InitFile {
            path: file.relative,
            action: file.action,
        });
    }
    Ok(InitReport { root, files })
}

/// The xtask's dependency on the airlock library, as an inline TOML table.
fn airlock_dependency(airlock_path: Option<&Path>) -> Result<String> {
    let mut table = toml_edit::InlineTable::new();
    table.insert("package", Value::from("cargo-airlock"));
    match airlock_path {
        Some(path) => {
            let cli = airlock_cli_dir(path)?;
            table.insert("path", Value::from(cli.display().to_string()));
        }
        None => {
            table.insert("version", Value::from(env!("CARGO_PKG_VERSION")));
        }
    }
    Ok(table.to_string().trim().to_owned())
}

/// The `cli/` package directory of an airlock checkout (or the package directory itself).
fn airlock_cli_dir(path: &Path) -> Result<PathBuf> {
    let path = path
        .canonicalize()
        .map_err(|e| error::input(format!("--airlock-path {}: {e}", path.display())))?;
    for candidate in [path.join("cli"), path.clone()] {
        let manifest = candidate.join("Cargo.toml");
        if std::fs::read_to_string(&manifest).is_ok_and(|t| t.contains("name = \"cargo-airlock\""))
        {
            return Ok(candidate);
        }
    }
    Err(error::input(format!(
        "--airlock-path {}: no cargo-airlock package there (expected an airlock checkout or its cli/ directory)",
        path.display()
    )))
}

/// The CI step that installs the `cargo airlock` command.
fn install_command(airlock_path: Option<&Path>) -> Result<String> {
    Ok(match airlock_path {
        Some(path) => format!(
            "cargo install --locked --path {}",
            airlock_cli_dir(path)?.display()
        ),
        None => format!(
            "cargo install --locked cargo-airlock --version {}",
            env!("CARGO_PKG_VERSION")
        ),
    })
}

fn read_toml(path: &Path) -> Result<Option<DocumentMut>> {
    match std::fs::read_to_string(path) {
        Ok(text) => text
            .parse::<DocumentMut>()
            .map(Some)
            .map_err(|e| error::input(format!("{} is not valid TOML: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// `.cargo/config.toml` with the `xtask` alias added (an existing different alias is a
/// conflict unless forced).
fn plan_cargo_config(root: &Path, force: bool, conflicts: &mut Vec<String>) -> Result<Planned> {
    let relative = ".cargo/config.toml".to_owned();
    let path = root.join(&relative);
    let Some(mut doc) = read_toml(&path)? else {
        return Ok(Planned {
            relative,
            contents: CARGO_CONFIG.to_owned(),
            action: Action::Created,
        });
    };
    let existing = doc.get("alias").and_then(|a| a.get("xtask")).map(|v| {
        v.as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| v.to_string())
    });
    let action = match existing.as_deref() {
        Some(alias) if alias.trim() == XTASK_ALIAS => Action::Unchanged,
        Some(_) if !force => {
            conflicts.push(format!("{relative} (alias `xtask`)"));
            Action::Unchanged
        }
        _ => Action::Updated,
    };
    if action == Action::Updated {
        let alias = doc
            .entry("alias")
            .or_insert_with(|| Item::Table(Table::new()))
            .as_table_like_mut()
            .with_context(|| format!("{}: `alias` is not a table", path.display()))?;
        alias.insert("xtask", Item::Value(Value::from(XTASK_ALIAS)));
    }
    Ok(Planned {
        relative,
        contents: doc.to_string(),
        action,
    })
}

/// The root `Cargo.toml` with `xtask` in the workspace members and a
/// `[workspace.metadata.airlock]` section (kept as is when there is one).
fn plan_root_manifest(root: &Path, first_bin: &str) -> Result<Planned> {
    let relative = "Cargo.toml".to_owned();
    let path = root.join(&relative);
    let mut doc = read_toml(&path)?
        .ok_or_else(|| error::input(format!("{} does not exist", path.display())))?;
    let mut changed = false;

    let workspace = doc
        .entry("workspace")
        .or_insert_with(|| Item::Table(Table::new()))
        .as_table_mut()
        .with_context(|| format!("{}: `workspace` is not a table", path.display()))?;
    let members = workspace
        .entry("members")
        .or_insert_with(|| Item::Value(Value::Array(Array::new())))
        .as_array_mut()
        .with_context(|| format!("{}: `workspace.members` is not an array", path.display()))?;
    if !members.iter().any(|m| m.as_str() == Some("xtask")) {
        members.push("xtask");
        changed = true;
    }
    let has_settings = workspace
        .get("metadata")
        .and_then(|m| m.get("airlock"))
        .is_some();

    let mut contents = doc.to_string();
    if !has_settings {
        contents.push_str(&AIRLOCK_METADATA.replace("{{bin}}", first_bin));
        changed = true;
    }
    contents.parse::<DocumentMut>().map_err(|e| {
        anyhow::anyhow!("internal error: the edited Cargo.toml does not parse: {e}")
    })?;
    Ok(Planned {
        relative,
        contents,
        action: if changed {
            Action::Updated
        } else {
            Action::Unchanged
        },
    })
}
