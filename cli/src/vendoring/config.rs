//! The `.cargo/config.toml` source replacement that points cargo at a vendor directory, made
//! from `templates/vendor-config.toml` (embedded in the binary).
//!
//! Source names follow cargo's `ops/vendor.rs`: `crates-io` for crates.io, the index URL for
//! other registries, and `git+URL[?branch=…]` (no commit) for git repositories.
//!
//! `--write-config` merges those tables into the project's existing cargo configuration with
//! `toml_edit` (comments, formatting and every other table kept), and refuses, before anything
//! is vendored, a file that already replaces one of those sources differently. It never edits
//! any other file.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use toml_edit::{DocumentMut, Item, Table, TableLike};

use crate::input::{Links, MAX_TEXT_INPUT, read_regular_to_string};
use crate::lock::{GitReference, Source};

/// The template, with `{{sources}}` and `{{directory}}` to fill in.
pub const TEMPLATE: &str = include_str!("../../../templates/vendor-config.toml");
/// The template's first line: a config file that starts with it is airlock's to rewrite.
pub fn marker() -> &'static str {
    TEMPLATE.lines().next().unwrap_or("#")
}

fn quote(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// The configuration for `sources`, with `directory` as written in the file (relative to the
/// workspace root, where `.cargo/` is).
pub fn render(sources: &BTreeSet<Source>, directory: &str) -> String {
    let mut tables = String::new();
    for source in sources {
        let _ = match source {
            Source::Path => continue,
            s if s.is_crates_io() => writeln!(
                tables,
                "[source.crates-io]\nreplace-with = \"vendored-sources\"\n"
            ),
            Source::Registry { url } => writeln!(
                tables,
                "[source.{}]\nregistry = {}\nreplace-with = \"vendored-sources\"\n",
                quote(&format!("registry+{url}")),
                quote(url)
            ),
            Source::SparseRegistry { url } => writeln!(
                tables,
                "[source.{}]\nregistry = {}\nreplace-with = \"vendored-sources\"\n",
                quote(&format!("sparse+{url}")),
                quote(&format!("sparse+{url}"))
            ),
            Source::Git { url, reference, .. } => {
                let pin = match reference {
                    GitReference::Branch(b) => format!("branch = {}\n", quote(b)),
                    GitReference::Tag(t) => format!("tag = {}\n", quote(t)),
                    GitReference::Rev(r) => format!("rev = {}\n", quote(r)),
                    GitReference::DefaultBranch => String::new(),
                };
                writeln!(
                    tables,
                    "[source.{}]\ngit = {}\n{pin}replace-with = \"vendored-sources\"\n",
                    quote(&source.without_commit()),
                    quote(url)
                )
            }
        };
    }
    let tables = if tables.is_empty() {
        String::new()
    } else {
        format!("{}\n\n", tables.trim_end())
    };
    TEMPLATE
        .replace("{{sources}}\n\n", &tables)
        .replace("{{directory}}", &quote(directory))
}

/// `path` relative to `base` (both made absolute), with `..` where needed; `path` itself when
/// they share no root.
pub fn relative_path(base: &Path, path: &Path) -> PathBuf {
    let base = resolved(base);
    let path = resolved(path);
    let base_parts: Vec<Component<'_>> = base.components().collect();
    let path_parts: Vec<Component<'_>> = path.components().collect();
    let common = base_parts
        .iter()
        .zip(&path_parts)
        .take_while(|(a, b)| a == b)
        .count();
    if common == 0 {
        return path;
    }
    let mut relative = PathBuf::new();
    for _ in common..base_parts.len() {
        relative.push("..");
    }
    for part in &path_parts[common..] {
        relative.push(part.as_os_str());
    }
    if relative.as_os_str().is_empty() {
        relative.push(".");
    }
    relative
}

/// The project's cargo configuration file, as cargo picks it: `.cargo/config` when that exists
/// (cargo reads the legacy name first, and only warns when `config.toml` exists too), else
/// `.cargo/config.toml`. A `.cargo/config` that is a link (to `config.toml`, as projects do to
/// serve old and new cargo alike) resolves to the file it names, so the link stays a link.
pub fn config_path(root: &Path) -> PathBuf {
    let dir = root.join(".cargo");
    let legacy = dir.join("config");
    match std::fs::symlink_metadata(&legacy) {
        Ok(meta) if meta.file_type().is_symlink() => legacy.canonicalize().unwrap_or(legacy),
        Ok(_) => legacy,
        Err(_) => dir.join("config.toml"),
    }
}

/// What `--write-config` will write: the file, its new contents, and whether they differ from
/// what is there. Planned before anything is vendored, so a conflict writes nothing.
#[derive(Debug, Clone)]
pub struct ConfigPlan {
    /// The configuration file (see [`config_path`]).
    pub path: PathBuf,
    /// Its contents after the merge.
    pub contents: String,
    /// Whether the file changes (false: it already holds the same replacement).
    pub changed: bool,
}

impl ConfigPlan {
    /// Writes the planned contents (atomically; nothing when unchanged) and returns the path.
    pub fn write(&self) -> Result<PathBuf> {
        if self.changed {
            crate::atomic::write_file(&self.path, self.contents.as_bytes())?;
        }
        Ok(self.path.clone())
    }
}

/// Plans writing `config` (a rendered [`TEMPLATE`]) into the project at `root`: a new file when
/// there is none, the whole file when airlock wrote it (it starts with [`marker`]), otherwise
/// the `[source.…]` tables merged into the existing file with every comment, table and key
/// kept. A source the file already replaces differently is an input error naming each table,
/// and nothing is written.
pub fn plan(root: &Path, config: &str) -> Result<ConfigPlan> {
    let path = config_path(root);
    let existing = match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        _ => Some(read_regular_to_string(
            &path,
            Links::Follow,
            MAX_TEXT_INPUT,
        )?),
    };
    let contents = match &existing {
        None => config.to_owned(),
        // airlock wrote this file: its own tables are updated (a new vendor directory), what
        // the user added to it is kept.
        Some(text) => merge(text, config, &path, text.starts_with(marker()))?,
    };
    Ok(ConfigPlan {
        changed: existing.as_deref() != Some(contents.as_str()),
        path,
        contents,
    })
}

/// The project's cargo configuration (see [`config_path`]) without the sources that are
/// directories (a vendor directory) and the `replace-with` keys that lead to them, for
/// `cargo fetch` to run outside the project with the user's other settings (registries,
/// mirrors, `[net]`, `[http]`) still in effect. A relative `local-registry` is made absolute,
/// since cargo resolves it against the directory holding `.cargo/`. None when the project's
/// configuration replaces no source with a directory.
pub fn without_directory_sources(root: &Path) -> Result<Option<String>> {
    let path = config_path(root);
    if std::fs::symlink_metadata(&path).is_err() {
        return Ok(None);
    }
    let text = read_regular_to_string(&path, Links::Follow, MAX_TEXT_INPUT)?;
    let mut doc: DocumentMut = text.parse().map_err(|e| {
        crate::error::input(format!(
            "{} is not valid TOML ({e}); fix it, then run again",
            path.display()
        ))
    })?;
    let Some(sources) = doc.get_mut("source").and_then(Item::as_table_like_mut) else {
        return Ok(None);
    };
    let directories: Vec<String> = sources
        .iter()
        .filter(|(_, s)| s.get("directory").is_some())
        .map(|(name, _)| name.to_owned())
        .collect();
    if directories.is_empty() {
        return Ok(None);
    }
    for name in &directories {
        sources.remove(name);
    }
    let names: Vec<String> = sources.iter().map(|(name, _)| name.to_owned()).collect();
    for name in names {
        let Some(source) = sources.get_mut(&name).and_then(Item::as_table_like_mut) else {
            continue;
        };
        let leads_to_directory = source
            .get("replace-with")
            .and_then(Item::as_str)
            .is_some_and(|target| directories.iter().any(|d| d == target));
        if leads_to_directory {
            source.remove("replace-with");
        }
        let local = source.get("local-registry").and_then(Item::as_str);
        if let Some(local) = local.filter(|l| Path::new(l).is_relative()) {
            let absolute = root.join(local).to_string_lossy().into_owned();
            source.insert("local-registry", Item::Value(absolute.into()));
        }
        if source.is_empty() {
            sources.remove(&name);
        }
    }
    Ok(Some(doc.to_string()))
}

/// Keys that say where a source's packages come from: an existing table with another value
/// for one of them replaces the source differently.
const SOURCE_KEYS: [&str; 8] = [
    "replace-with",
    "directory",
    "registry",
    "local-registry",
    "git",
    "branch",
    "tag",
    "rev",
];

/// `existing` with the `[source.…]` tables of `config` added; `path` names the file in errors.
/// With `ours`, tables that differ are replaced instead of refused.
fn merge(existing: &str, config: &str, path: &Path, ours: bool) -> Result<String> {
    let mut doc: DocumentMut = existing.parse().map_err(|e| {
        crate::error::input(format!(
            "{} is not valid TOML ({e}); fix it, then run again",
            path.display()
        ))
    })?;
    let template: DocumentMut = config
        .parse()
        .context("the vendor source template is not valid TOML")?;
    let Some(our_sources) = template.get("source").and_then(Item::as_table_like) else {
        return Ok(existing.to_owned());
    };
    let sources = doc
        .entry("source")
        .or_insert_with(|| {
            let mut table = Table::new();
            table.set_implicit(true);
            Item::Table(table)
        })
        .as_table_like_mut()
        .ok_or_else(|| {
            crate::error::input(format!(
                "{}: `source` is not a table; cargo would reject this file too",
                path.display()
            ))
        })?;
    let mut conflicts = Vec::new();
    let mut added = Vec::new();
    let mut replaced = Vec::new();
    for (name, table) in our_sources.iter() {
        let Some(wanted) = table.as_table_like() else {
            continue;
        };
        match sources.get(name) {
            None => added.push((name.to_owned(), table.clone())),
            Some(present) => {
                let differs = match present.as_table_like() {
                    Some(present) => differences(name, present, wanted),
                    None => vec![format!("`source.{name}` is not a table")],
                };
                if ours && !differs.is_empty() {
                    replaced.push((name.to_owned(), table.clone()));
                } else {
                    conflicts.extend(differs);
                }
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(crate::error::input(format!(
            "{} already replaces sources differently, so airlock will not point them at the \
             vendor directory:\n  {}\nRemove or change those tables (or vendor into the \
             directory they name), then run again; nothing was vendored or written. The \
             replacement airlock would add:\n\n{config}",
            path.display(),
            conflicts.join("\n  ")
        )));
    }
    for (name, item) in replaced {
        if let (Some(slot), Some(new)) = (
            sources.get_mut(&name).and_then(Item::as_table_like_mut),
            item.as_table_like(),
        ) {
            slot.clear();
            for (key, value) in new.iter() {
                slot.insert(key, value.clone());
            }
        }
    }
    let header: String = TEMPLATE
        .lines()
        .take_while(|l| l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    for (index, (name, mut item)) in added.into_iter().enumerate() {
        if let Some(table) = item.as_table_mut() {
            // The template's explanation once, above the first table added.
            let prefix = if index == 0 {
                format!("\n{header}")
            } else {
                "\n".to_owned()
            };
            table.decor_mut().set_prefix(prefix);
            // Placed after every existing table, in the template's order.
            table.set_position(None);
        }
        sources.insert(&name, item);
    }
    let mut text = doc.to_string();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// How an existing `[source.<name>]` differs from the one airlock writes, one line per key.
fn differences(name: &str, present: &dyn TableLike, wanted: &dyn TableLike) -> Vec<String> {
    let shown = |item: Option<&Item>| {
        item.and_then(Item::as_value).map_or_else(
            || "(absent)".to_owned(),
            |v| v.to_string().trim().to_owned(),
        )
    };
    SOURCE_KEYS
        .iter()
        .filter(|key| {
            let (have, want) = (present.get(key), wanted.get(key));
            match (have.and_then(Item::as_str), want.and_then(Item::as_str)) {
                // `directory = "vendor"` and `"./vendor/"` name the same directory.
                (Some(a), Some(b)) if **key == "directory" => !same_path(a, b),
                (Some(a), Some(b)) => a != b,
                _ => have.is_some() || want.is_some(),
            }
        })
        .map(|key| {
            format!(
                "[source.{name}] {key} = {} (airlock writes {})",
                shown(present.get(key)),
                shown(wanted.get(key))
            )
        })
        .collect()
}

fn same_path(a: &str, b: &str) -> bool {
    let parts = |p: &str| -> Vec<String> {
        Path::new(p)
            .components()
            .filter(|c| !matches!(c, Component::CurDir))
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect()
    };
    parts(a) == parts(b)
}

/// `path` absolute and with links resolved, also when it does not exist yet (a vendor directory
/// planned before it is written): its nearest existing ancestor is resolved and the rest kept.
fn resolved(path: &Path) -> PathBuf {
    let absolute = std::env::current_dir()
        .map(|cwd| cwd.join(path))
        .unwrap_or_else(|_| path.to_path_buf());
    let mut missing = Vec::new();
    let mut existing = absolute.as_path();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return missing.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_owned());
                existing = parent;
            }
            _ => return absolute,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_nothing_twice() {
        let text = render(&BTreeSet::new(), "v");
        assert!(!text.contains("\n\n\n"), "{text}");
    }

    #[test]
    fn renders_cargo_source_replacement() {
        let mut sources = BTreeSet::new();
        sources.insert(
            Source::parse("registry+https://github.com/rust-lang/crates.io-index", 4).unwrap(),
        );
        sources.insert(Source::parse("git+file:///tmp/dep?branch=main#abc123", 4).unwrap());
        sources.insert(Source::parse("sparse+https://r.example/index/", 4).unwrap());
        let text = render(&sources, "vendor");
        let parsed: toml::Table = text.parse().unwrap();
        let source = parsed["source"].as_table().unwrap();
        assert_eq!(
            source["crates-io"]["replace-with"].as_str(),
            Some("vendored-sources")
        );
        let git = &source["git+file:///tmp/dep?branch=main"];
        assert_eq!(git["git"].as_str(), Some("file:///tmp/dep"));
        assert_eq!(git["branch"].as_str(), Some("main"));
        assert_eq!(
            source["sparse+https://r.example/index/"]["registry"].as_str(),
            Some("sparse+https://r.example/index/")
        );
        assert_eq!(
            source["vendored-sources"]["directory"].as_str(),
            Some("vendor")
        );
        assert!(text.starts_with(marker()));
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative_path(Path::new("/a/b"), Path::new("/a/b/vendor")),
            Path::new("vendor")
        );
        assert_eq!(
            relative_path(Path::new("/a/b"), Path::new("/a/c/vendor")),
            Path::new("../c/vendor")
        );
        // Planned before the vendor directory exists, through a link to the project.
        let temp = tempfile::tempdir().unwrap();
        std::fs::create_dir(temp.path().join("project")).unwrap();
        std::os::unix::fs::symlink(temp.path().join("project"), temp.path().join("link")).unwrap();
        assert_eq!(
            relative_path(
                &temp.path().join("project"),
                &temp.path().join("link/third-party/vendor")
            ),
            Path::new("third-party/vendor")
        );
    }

    fn crates_io_config(directory: &str) -> String {
        let mut sources = BTreeSet::new();
        sources.insert(
            Source::parse("registry+https://github.com/rust-lang/crates.io-index", 4).unwrap(),
        );
        sources.insert(Source::parse("git+file:///tmp/dep?branch=main#abc123", 4).unwrap());
        render(&sources, directory)
    }

    #[test]
    fn merges_into_a_file_without_final_newline_keeping_comments_and_tables() {
        let existing = "# team settings\n[alias]\nxtask = \"run --package xtask --\" # keep\n\n\
                        [build]\njobs = 2";
        let merged = merge(
            existing,
            &crates_io_config("vendor"),
            Path::new("c.toml"),
            false,
        )
        .unwrap();
        assert!(merged.starts_with(existing), "{merged}");
        assert!(
            merged.contains(marker()),
            "the explanation is kept: {merged}"
        );
        let parsed: toml::Table = merged.parse().unwrap();
        assert_eq!(parsed["build"]["jobs"].as_integer(), Some(2));
        assert_eq!(
            parsed["source"]["crates-io"]["replace-with"].as_str(),
            Some("vendored-sources")
        );
        assert_eq!(
            parsed["source"]["git+file:///tmp/dep?branch=main"]["branch"].as_str(),
            Some("main")
        );
        assert_eq!(
            parsed["source"]["vendored-sources"]["directory"].as_str(),
            Some("vendor")
        );
        // Merging again changes nothing.
        let again = merge(
            &merged,
            &crates_io_config("./vendor/"),
            Path::new("c.toml"),
            false,
        )
        .unwrap();
        assert_eq!(again, merged);
    }

    #[test]
    fn merges_into_existing_source_tables_and_dotted_keys() {
        let existing = "source.my-mirror.registry = \"sparse+https://mirror.example/\"\n";
        let merged = merge(
            existing,
            &crates_io_config("vendor"),
            Path::new("c.toml"),
            false,
        )
        .unwrap();
        let parsed: toml::Table = merged.parse().unwrap_or_else(|e| panic!("{e}\n{merged}"));
        assert!(parsed["source"]["my-mirror"]["registry"].is_str());
        assert_eq!(
            parsed["source"]["vendored-sources"]["directory"].as_str(),
            Some("vendor")
        );
    }

    #[test]
    fn refuses_a_conflicting_replacement_naming_each_table() {
        let existing = "[source.crates-io]\nreplace-with = \"mirror\"\n\n\
                        [source.vendored-sources]\ndirectory = \"third-party\"\n";
        let err = merge(
            existing,
            &crates_io_config("vendor"),
            Path::new("/p/.cargo/config"),
            false,
        )
        .unwrap_err();
        assert_eq!(crate::error::exit_kind(&err), crate::error::ExitKind::Input);
        let message = format!("{err:#}");
        assert!(message.contains("/p/.cargo/config"), "{message}");
        assert!(
            message.contains(
                "[source.crates-io] replace-with = \"mirror\" (airlock writes \"vendored-sources\")"
            ),
            "{message}"
        );
        assert!(
            message.contains("[source.vendored-sources] directory = \"third-party\""),
            "{message}"
        );
        let err = merge(
            "source = 1\n",
            &crates_io_config("v"),
            Path::new("c"),
            false,
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("`source` is not a table"),
            "{err:#}"
        );
        let err = merge("[source\n", &crates_io_config("v"), Path::new("c"), false).unwrap_err();
        assert!(
            format!("{err:#}").contains("c is not valid TOML"),
            "{err:#}"
        );
    }

    #[test]
    fn updates_its_own_file_keeping_what_the_user_added() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(".cargo")).unwrap();
        let path = root.path().join(".cargo/config.toml");
        let written = format!("{}[net]\noffline = true\n", crates_io_config("vendor"));
        std::fs::write(&path, &written).unwrap();
        let plan = plan(root.path(), &crates_io_config("third-party")).unwrap();
        let parsed: toml::Table = plan.contents.parse().unwrap();
        assert_eq!(
            parsed["source"]["vendored-sources"]["directory"].as_str(),
            Some("third-party")
        );
        assert_eq!(parsed["net"]["offline"].as_bool(), Some(true));
        assert!(plan.contents.starts_with(marker()), "{}", plan.contents);
        assert_eq!(
            plan.contents.matches(marker()).count(),
            1,
            "{}",
            plan.contents
        );
    }

    #[test]
    fn plans_the_legacy_config_name_and_follows_its_link() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join(".cargo");
        std::fs::create_dir(&dir).unwrap();
        assert_eq!(config_path(root.path()), dir.join("config.toml"));
        std::fs::write(dir.join("config.toml"), "[build]\njobs = 1\n").unwrap();
        std::os::unix::fs::symlink("config.toml", dir.join("config")).unwrap();
        let plan = plan(root.path(), &crates_io_config("vendor")).unwrap();
        assert_eq!(plan.path, dir.join("config.toml").canonicalize().unwrap());
        std::fs::remove_file(dir.join("config")).unwrap();
        std::fs::write(dir.join("config"), "[build]\njobs = 3\n").unwrap();
        let plan = super::plan(root.path(), &crates_io_config("vendor")).unwrap();
        assert_eq!(plan.path, dir.join("config"));
        assert!(plan.contents.starts_with("[build]\njobs = 3\n"));
        assert!(plan.changed);
    }

    #[test]
    fn drops_directory_sources_and_keeps_everything_else_for_fetching() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join(".cargo")).unwrap();
        let path = root.path().join(".cargo/config.toml");
        assert_eq!(without_directory_sources(root.path()).unwrap(), None);
        std::fs::write(&path, "[net]\ngit-fetch-with-cli = true\n").unwrap();
        assert_eq!(without_directory_sources(root.path()).unwrap(), None);
        let merged = format!(
            "[net]\ngit-fetch-with-cli = true\n\n[source.company]\nlocal-registry = \"reg\"\n\
             replace-with = \"vendored-sources\"\n\n{}",
            crates_io_config("vendor")
        );
        std::fs::write(&path, merged).unwrap();
        let text = without_directory_sources(root.path()).unwrap().unwrap();
        let parsed: toml::Table = text.parse().unwrap();
        assert_eq!(parsed["net"]["git-fetch-with-cli"].as_bool(), Some(true));
        let sources = parsed["source"].as_table().unwrap();
        assert_eq!(
            sources.keys().collect::<Vec<_>>(),
            ["company", "git+file:///tmp/dep?branch=main"],
            "the vendored directory and what only led to it are gone: {text}"
        );
        assert!(
            sources["git+file:///tmp/dep?branch=main"]
                .get("replace-with")
                .is_none()
        );
        assert_eq!(
            sources["company"]["local-registry"].as_str(),
            Some(root.path().join("reg").to_str().unwrap())
        );
        assert!(sources["company"].get("replace-with").is_none());
    }
}
