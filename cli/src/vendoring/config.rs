//! The `.cargo/config.toml` source replacement that points cargo at a vendor directory, made
//! from `templates/vendor-config.toml` (embedded in the binary).
//!
//! Source names follow cargo's `ops/vendor.rs`: `crates-io` for crates.io, the index URL for
//! other registries, and `git+URL[?branch=…]` (no commit) for git repositories.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};

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
    let base = base.canonicalize().unwrap_or_else(|_| base.to_path_buf());
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
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

/// Writes `config` to `root/.cargo/config.toml` unless that file exists and was not written
/// by airlock (then nothing is touched and the error shows what to add by hand).
pub fn write(root: &Path, config: &str) -> Result<PathBuf> {
    let path = root.join(".cargo").join("config.toml");
    match std::fs::read_to_string(&path) {
        Ok(existing) if !existing.starts_with(marker()) => {
            return Err(crate::error::input(format!(
                "{} exists and was not written by airlock; add this to it by hand:\n\n{config}",
                path.display()
            )));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
    crate::atomic::write_file(&path, config.as_bytes())?;
    Ok(path)
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
    }
}
