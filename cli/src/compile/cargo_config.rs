//! The parts of the user's cargo configuration that airlock's own settings would hide:
//! `build.rustflags` (cargo ignores it once `CARGO_TARGET_<T>_RUSTFLAGS` is set) and
//! `target.<triple>.linker` (the environment variable would override it).
//!
//! Files are found the way cargo finds them: `.cargo/config.toml` (or `.cargo/config`) in the
//! current directory and every parent, then `$CARGO_HOME/config.toml`
//! (<https://doc.rust-lang.org/cargo/reference/config.html#hierarchical-structure>).
//! Only reads.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::error;
use crate::target::TargetTriple;

/// One parsed config file.
#[derive(Debug, Clone)]
struct ConfigFile {
    path: PathBuf,
    table: toml::Table,
}

/// The user's cargo configuration files, highest precedence first.
#[derive(Debug, Clone, Default)]
pub struct CargoConfig {
    files: Vec<ConfigFile>,
}

impl CargoConfig {
    /// Reads every config file that applies to a cargo run in `cwd`. A file that is not valid
    /// TOML is an input error naming it (cargo would refuse it too).
    pub fn load(cwd: &Path) -> Result<CargoConfig> {
        let mut paths: Vec<PathBuf> = Vec::new();
        for dir in cwd.ancestors() {
            if let Some(path) = config_in(&dir.join(".cargo")) {
                paths.push(path);
            }
        }
        if let Some(home) = cargo_home()
            && let Some(path) = config_in(&home)
        {
            let canonical = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
            if !paths.iter().any(|p| canonical(p) == canonical(&path)) {
                paths.push(path);
            }
        }
        let mut files = Vec::new();
        for path in paths {
            let text = std::fs::read_to_string(&path)
                .map_err(|e| error::input(format!("cannot read {}: {e}", path.display())))?;
            let table: toml::Table = text.parse().map_err(|e| {
                error::input(format!(
                    "{} is not valid TOML: {e}; fix it (cargo cannot read it either)",
                    path.display()
                ))
            })?;
            files.push(ConfigFile { path, table });
        }
        Ok(CargoConfig { files })
    }

    /// The config files read, highest precedence first.
    pub fn paths(&self) -> Vec<&Path> {
        self.files.iter().map(|f| f.path.as_path()).collect()
    }

    /// `build.rustflags` as cargo would apply it: arrays from every file joined, lower
    /// precedence first, then `CARGO_BUILD_RUSTFLAGS`. None when no file or variable sets it.
    pub fn build_rustflags(&self) -> Option<Vec<String>> {
        let mut flags = Vec::new();
        let mut found = false;
        for file in self.files.iter().rev() {
            if let Some(value) = lookup(&file.table, &["build", "rustflags"]) {
                found = true;
                flags.extend(string_list(value));
            }
        }
        if let Ok(value) = std::env::var("CARGO_BUILD_RUSTFLAGS") {
            found = true;
            flags.extend(value.split_whitespace().map(str::to_owned));
        }
        found.then_some(flags)
    }

    /// Whether a file sets `target.<triple>.rustflags` or a `target.'cfg(…)'.rustflags`
    /// (assumed to match: airlock does not evaluate cfg expressions). Cargo then ignores
    /// `build.rustflags` on its own, and merges these with airlock's variable.
    pub fn has_target_rustflags(&self, target: &TargetTriple) -> bool {
        self.files.iter().any(|file| {
            let Some(targets) = file.table.get("target").and_then(toml::Value::as_table) else {
                return false;
            };
            targets.iter().any(|(key, value)| {
                (key == target.as_str() || key.starts_with("cfg("))
                    && value.get("rustflags").is_some()
            })
        })
    }

    /// `target.<triple>.linker`, from the file of highest precedence that sets it.
    pub fn target_linker(&self, target: &TargetTriple) -> Option<String> {
        self.files.iter().find_map(|file| {
            lookup(&file.table, &["target", target.as_str(), "linker"])
                .and_then(toml::Value::as_str)
                .map(str::to_owned)
        })
    }
}

/// `$CARGO_HOME`, or `~/.cargo`.
pub fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
}

fn config_in(dir: &Path) -> Option<PathBuf> {
    ["config.toml", "config"]
        .into_iter()
        .map(|name| dir.join(name))
        .find(|path| path.is_file())
}

fn lookup<'a>(table: &'a toml::Table, keys: &[&str]) -> Option<&'a toml::Value> {
    let (first, rest) = keys.split_first()?;
    let mut value = table.get(*first)?;
    for key in rest {
        value = value.as_table()?.get(*key)?;
    }
    Some(value)
}

/// A cargo string list: an array of strings, or one string split on whitespace.
fn string_list(value: &toml::Value) -> Vec<String> {
    match value {
        toml::Value::String(s) => s.split_whitespace().map(str::to_owned).collect(),
        toml::Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) {
        std::fs::create_dir_all(dir.join(".cargo")).unwrap();
        std::fs::write(dir.join(".cargo/config.toml"), text).unwrap();
    }

    #[test]
    fn reads_build_rustflags_and_linker_from_the_hierarchy() {
        let root = tempfile::tempdir().unwrap();
        let inner = root.path().join("ws");
        write(root.path(), "[build]\nrustflags = [\"--cfg\", \"outer\"]\n");
        write(
            &inner,
            "[build]\nrustflags = \"--cfg inner\"\n\
             [target.aarch64-unknown-linux-musl]\nlinker = \"my-ld\"\n",
        );
        let config = CargoConfig::load(&inner).unwrap();
        let flags = config.build_rustflags().unwrap();
        // Lower precedence (the outer directory) first, as cargo joins arrays.
        let outer_at = flags.iter().position(|f| f == "outer").unwrap();
        let inner_at = flags.iter().position(|f| f == "inner").unwrap();
        assert!(outer_at < inner_at, "{flags:?}");
        let arm: TargetTriple = "aarch64-unknown-linux-musl".parse().unwrap();
        let x86: TargetTriple = "x86_64-unknown-linux-musl".parse().unwrap();
        assert_eq!(config.target_linker(&arm).as_deref(), Some("my-ld"));
        assert_eq!(config.target_linker(&x86), None);
        assert!(!config.has_target_rustflags(&arm));
    }

    #[test]
    fn target_and_cfg_rustflags_are_seen() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "[target.'cfg(target_os = \"linux\")']\nrustflags = [\"-Cdebuginfo=1\"]\n",
        );
        let config = CargoConfig::load(root.path()).unwrap();
        let x86: TargetTriple = "x86_64-unknown-linux-musl".parse().unwrap();
        assert!(config.has_target_rustflags(&x86));
    }

    #[test]
    fn invalid_toml_names_the_file() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "[build\n");
        let err = CargoConfig::load(root.path()).unwrap_err();
        assert!(err.to_string().contains(".cargo/config.toml"), "{err}");
        assert_eq!(error::exit_kind(&err), error::ExitKind::Input);
    }
}
