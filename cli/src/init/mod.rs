//! `cargo airlock init`: adds an xtask crate, the `cargo xtask` alias, a
//! `[workspace.metadata.airlock]` section and CI workflows from `templates/` to another
//! workspace. Never overwrites a file without `--force`; edits `Cargo.toml` and
//! `.cargo/config.toml` in place, keeping their formatting and comments (`toml_edit`).
//!
//! Checks everything before writing anything: a conflict leaves the workspace untouched.
//! Workflows get names of their own (`airlock-release.yml`) so they sit beside a project's
//! existing CI; an existing `.gitlab-ci.yml` is never edited (the report says what to add).
//! Nothing written names this machine: see [`source`].

mod source;

pub use source::AirlockSource;

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use toml_edit::{Array, DocumentMut, Item, Table, Value};

use crate::atomic;
use crate::error;
use crate::input::{self, Links};
use crate::render::{self, Align, CommandReport};
use crate::workspace::Workspace;

const XTASK_CARGO_TOML: &str = include_str!("../../../templates/init/xtask-Cargo.toml");
const XTASK_MAIN_RS: &str = include_str!("../../../templates/init/xtask-main.rs");
const CARGO_CONFIG: &str = include_str!("../../../templates/init/cargo-config.toml");
const AIRLOCK_METADATA: &str = include_str!("../../../templates/init/airlock-metadata.toml");
const XTASK_PROFILE: &str = include_str!("../../../templates/init/xtask-profile.toml");
const GITHUB_RELEASE: &str = include_str!("../../../templates/ci/github-release.yml");
const GITLAB_CI: &str = include_str!("../../../templates/ci/gitlab-ci.yml");
const GITLAB_CI_INCLUDE: &str = include_str!("../../../templates/ci/gitlab-ci-include.yml");

/// Where the GitLab job goes: a file of its own that `.gitlab-ci.yml` includes.
const GITLAB_JOB_FILE: &str = ".gitlab/airlock-release.yml";

/// Manifests, cargo configs and workflows are a few kilobytes; this bounds the read.
const MAX_PROJECT_FILE: u64 = 16 << 20;

/// The `cargo xtask` alias cargo needs to find the xtask package.
const XTASK_ALIAS: &str = "run --package xtask --";

/// CI systems `init` writes workflows for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ci {
    /// `.github/workflows/airlock-release.yml`.
    Github,
    /// `.gitlab/airlock-release.yml`, included from `.gitlab-ci.yml`.
    Gitlab,
}

impl Ci {
    fn path(self) -> &'static str {
        match self {
            Ci::Github => ".github/workflows/airlock-release.yml",
            Ci::Gitlab => GITLAB_JOB_FILE,
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
    /// A local airlock checkout for the xtask's dependency, instead of the source the running
    /// binary was installed from.
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
    /// The file is the project's own and was left alone; a note says what to add to it.
    Kept,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Created => "created",
            Action::Updated => "updated",
            Action::Overwritten => "overwritten",
            Action::Unchanged => "unchanged",
            Action::Kept => "kept",
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
    /// What the user still has to do by hand (a line to add to a file init does not edit).
    pub notes: Vec<String>,
}

impl CommandReport for InitReport {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .files
            .iter()
            .map(|f| vec![f.action.to_string(), f.path.clone()])
            .collect();
        let mut out = render::table(&[("action", Align::Left), ("file", Align::Left)], &rows);
        for note in &self.notes {
            out.push_str(&format!("\nnote: {note}\n"));
        }
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
    // Canonical, as the airlock checkout's path is, so one can be made relative to the other.
    let canonical_root = root
        .canonicalize()
        .with_context(|| format!("cannot resolve the workspace root {}", root.display()))?;
    let source = match &options.airlock_path {
        Some(path) => AirlockSource::checkout(path)?,
        None => AirlockSource::installed()?,
    };
    let dependency = source.dependency(&canonical_root);
    let install = if options.ci.is_empty() {
        String::new()
    } else {
        source.ci_install(&canonical_root)?
    };
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
        let action = match read_existing(&path)? {
            Some(existing) if existing == contents => Action::Unchanged,
            Some(_) if options.force => Action::Overwritten,
            Some(_) => {
                conflicts.push(relative.to_owned());
                Action::Unchanged
            }
            None => Action::Created,
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

    let mut notes = Vec::new();
    if options.ci.contains(&Ci::Gitlab) {
        let (file, note) = plan_gitlab_include(&root)?;
        planned.push(file);
        notes.extend(note);
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
        if !matches!(file.action, Action::Unchanged | Action::Kept) {
            let path = root.join(&file.relative);
            atomic::write_file(&path, file.contents.as_bytes())?;
        }
        files.push(InitFile {
            path: file.relative,
            action: file.action,
        });
    }
    Ok(InitReport { root, files, notes })
}

/// `.gitlab-ci.yml` including the job file: created when missing, kept when it already
/// includes it. A project's own `.gitlab-ci.yml` is never edited (YAML has no comment-keeping
/// editor here, and a project's pipeline is its own): the note says what to add.
fn plan_gitlab_include(root: &Path) -> Result<(Planned, Option<String>)> {
    let relative = ".gitlab-ci.yml".to_owned();
    let path = root.join(&relative);
    let Some(existing) = read_existing(&path)? else {
        let created = Planned {
            relative,
            contents: GITLAB_CI_INCLUDE.to_owned(),
            action: Action::Created,
        };
        return Ok((created, None));
    };
    if existing.contains(GITLAB_JOB_FILE) {
        let unchanged = Planned {
            relative,
            contents: existing,
            action: Action::Unchanged,
        };
        return Ok((unchanged, None));
    }
    let kept = Planned {
        relative,
        contents: existing,
        action: Action::Kept,
    };
    let note = format!(
        ".gitlab-ci.yml is your own and was left as it is: to run the release job, add \
         `include: [{{ local: {GITLAB_JOB_FILE} }}]` to it (the job runs in the `deploy` stage)"
    );
    Ok((kept, Some(note)))
}

/// Appends `value` laid out as the array's last element is (one per line stays one per line).
fn push_keeping_layout(array: &mut Array, value: &str) {
    let decor = array.iter().last().map(|v| v.decor().clone());
    array.push(value);
    if let (Some(decor), Some(last)) = (decor, array.iter_mut().last()) {
        *last.decor_mut() = decor;
    }
}

/// The text of a project file init may replace or edit, None when there is none. Read as
/// hostile input: a FIFO or device in its place is an input error, not a hang.
fn read_existing(path: &Path) -> Result<Option<String>> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        Ok(_) => input::read_regular_to_string(path, Links::Follow, MAX_PROJECT_FILE).map(Some),
    }
}

fn read_toml(path: &Path) -> Result<Option<DocumentMut>> {
    let Some(text) = read_existing(path)? else {
        return Ok(None);
    };
    text.parse::<DocumentMut>()
        .map(Some)
        .map_err(|e| error::input(format!("{} is not valid TOML: {e}", path.display())))
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
        push_keeping_layout(members, "xtask");
        changed = true;
    }
    let has_settings = workspace
        .get("metadata")
        .and_then(|m| m.get("airlock"))
        .is_some();
    changed |= add_xtask_profile(&mut doc)?;

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

/// Adds the `[profile.dev.package.*]` settings of [`XTASK_PROFILE`] the manifest lacks: the
/// xtask runs airlock's compression and hashing, unoptimised by default in `cargo run`'s dev
/// profile (a `report` took minutes; nearly all of it in zstd's C code, so airlock's own crate
/// is left in the dev profile, cheap to compile). A crate the user already set is left as it is; a
/// `profile` written inline (`profile = { … }`) is left alone too.
fn add_xtask_profile(doc: &mut DocumentMut) -> Result<bool> {
    let template: DocumentMut = XTASK_PROFILE
        .parse()
        .map_err(|e| anyhow::anyhow!("internal error: the xtask profile does not parse: {e}"))?;
    let wanted = template
        .get("profile")
        .and_then(|p| p.get("dev"))
        .and_then(|d| d.get("package"))
        .and_then(Item::as_table)
        .context("internal error: the xtask profile has no [profile.dev.package]")?;
    let mut packages = doc.as_table_mut();
    for key in ["profile", "dev", "package"] {
        let mut implicit = Table::new();
        implicit.set_implicit(true);
        let Some(table) = packages
            .entry(key)
            .or_insert(Item::Table(implicit))
            .as_table_mut()
        else {
            return Ok(false);
        };
        packages = table;
    }
    let mut changed = false;
    for (name, settings) in wanted.iter() {
        if packages.contains_key(name) {
            continue;
        }
        let mut settings = settings.clone();
        if let Some(table) = settings.as_table_mut() {
            // After everything already in the manifest, not at the template's positions.
            table.set_position(None);
        }
        packages.insert(name, settings);
        changed = true;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_xtask_gets_the_hot_crates_optimised_but_not_the_users_crates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("Cargo.toml"),
            "[workspace]\nmembers = [\"app\"]\n\n[profile.dev.package.sha2]\nopt-level = 1\n\n\
             [workspace.metadata.airlock]\n",
        )
        .unwrap();
        let planned = plan_root_manifest(dir.path(), "app").unwrap();
        let doc: DocumentMut = planned.contents.parse().unwrap();
        let dev = &doc["profile"]["dev"];
        // The user's own crates keep the dev profile: no opt-level for the profile or "*".
        assert!(dev.get("opt-level").is_none(), "{}", planned.contents);
        assert!(dev["package"].get("*").is_none());
        for name in [
            "zstd-sys",
            "zlib-rs",
            "libdeflate-sys",
            "flate2",
            "crc32fast",
            "sha2",
            "object",
            "scrypt",
            "salsa20",
        ] {
            assert!(
                dev["package"].get(name).is_some(),
                "{name}: {}",
                planned.contents
            );
        }
        assert_eq!(dev["package"]["zlib-rs"]["opt-level"].as_integer(), Some(3));
        // A setting of the user's own is kept.
        assert_eq!(dev["package"]["sha2"]["opt-level"].as_integer(), Some(1));
        // Added below what was there, and only once.
        assert!(
            planned.contents.find("[workspace]").unwrap()
                < planned
                    .contents
                    .find("[profile.dev.package.zlib-rs]")
                    .unwrap()
        );
        std::fs::write(dir.path().join("Cargo.toml"), &planned.contents).unwrap();
        let again = plan_root_manifest(dir.path(), "app").unwrap();
        assert_eq!(again.action, Action::Unchanged);
        assert_eq!(again.contents, planned.contents);
    }

    #[test]
    fn xtask_joins_the_members_in_their_own_layout() {
        let dir = tempfile::tempdir().unwrap();
        for (members, expected) in [
            (
                "members = [\n    \"alpha\",\n    \"beta\",\n]\n",
                "members = [\n    \"alpha\",\n    \"beta\",\n    \"xtask\",\n]\n",
            ),
            (
                "members = [\"alpha\", \"beta\"]\n",
                "members = [\"alpha\", \"beta\", \"xtask\"]\n",
            ),
            ("members = []\n", "members = [\"xtask\"]\n"),
        ] {
            std::fs::write(
                dir.path().join("Cargo.toml"),
                format!("[workspace]\n{members}\n[workspace.metadata.airlock]\n"),
            )
            .unwrap();
            let planned = plan_root_manifest(dir.path(), "app").unwrap();
            assert!(
                planned.contents.contains(expected),
                "{members:?} became:\n{}",
                planned.contents
            );
        }
    }
}
