//! Tests that read the repository as rust-analyzer's tidy tests do: the layers stated in
//! `lib.rs` hold for every `use crate::…` edge, and the toolchain claims are true.

use std::collections::BTreeMap;
use std::path::Path;

/// The layer of each module, read from the table in this file's documentation.
fn layers() -> BTreeMap<String, usize> {
    let lib = include_str!("lib.rs");
    let mut layers = BTreeMap::new();
    for line in lib.lines().filter_map(|l| l.strip_prefix("//! | ")) {
        let mut cells = line.split(" | ");
        let Some(Ok(layer)) = cells.next().map(str::parse::<usize>) else {
            continue;
        };
        let modules = cells.next().unwrap_or_default();
        for module in modules.split_whitespace() {
            let name = module.trim_start_matches("[`").trim_end_matches("`]");
            layers.insert(name.to_owned(), layer);
        }
    }
    layers
}

/// The top-level modules a source file uses through `crate::…` paths (comments skipped).
fn used_modules(source: &str) -> Vec<String> {
    let mut used = Vec::new();
    for line in source.lines() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // `use crate::{a::B, c};`: the first segment of each item.
                let inner = group.split('}').next().unwrap_or_default();
                for item in inner.split(',') {
                    let head = item.trim().split("::").next().unwrap_or_default();
                    if !head.is_empty() {
                        used.push(head.to_owned());
                    }
                }
                continue;
            }
            let head: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            used.push(head);
        }
    }
    used
}

#[test]
fn layering() {
    let layers = layers();
    assert!(
        layers.len() > 10,
        "the layer table was not found: {layers:?}"
    );
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for entry in walkdir::WalkDir::new(&src) {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_string_lossy().trim_end_matches(".rs").to_owned();
        if matches!(module.as_str(), "lib" | "main" | "cli" | "tidy") {
            continue;
        }
        let Some(&own) = layers.get(&module) else {
            violations.push(format!(
                "{module} ({}) is missing from lib.rs's layer table",
                relative.display()
            ));
            continue;
        };
        let source = std::fs::read_to_string(path).unwrap();
        for used in used_modules(&source) {
            if used == module {
                continue;
            }
            // Crate-root items (the `assert_generated_file_is_fresh` test helper).
            let Some(&theirs) = layers.get(&used) else {
                continue;
            };
            let allowed = theirs < own || (own == 0 && theirs == 0);
            if !allowed {
                violations.push(format!(
                    "{}: `{module}` (layer {own}) uses `{used}` (layer {theirs})",
                    relative.display()
                ));
            }
        }
    }
    violations.sort();
    violations.dedup();
    assert!(
        violations.is_empty(),
        "edges against the layers stated in lib.rs:\n  {}",
        violations.join("\n  ")
    );
}

#[test]
fn used_modules_reads_paths_and_groups() {
    let source = "use crate::oci::Layout;\nuse crate::{lock::X, digest};\n// crate::report\nlet x = crate::elf::inspect();";
    assert_eq!(used_modules(source), ["oci", "lock", "digest", "elf"]);
}

/// `major.minor` of a version string.
fn major_minor(version: &str) -> (u64, u64) {
    let mut parts = version.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

#[test]
fn rust_version_is_the_pinned_toolchain_and_covers_every_dependency() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let manifest: toml::Table = std::fs::read_to_string(repo.join("Cargo.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let ours = manifest["workspace"]["package"]["rust-version"]
        .as_str()
        .unwrap()
        .to_owned();
    let toolchain: toml::Table = std::fs::read_to_string(repo.join("rust-toolchain.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let channel = toolchain["toolchain"]["channel"].as_str().unwrap();
    assert_eq!(
        major_minor(&ours),
        major_minor(channel),
        "rust-version {ours} must be the toolchain rust-toolchain.toml pins ({channel}): it is \
         the only one the tests run with"
    );
    let metadata = cargo_metadata::MetadataCommand::new()
        .manifest_path(repo.join("Cargo.toml"))
        .exec()
        .unwrap();
    let newer: Vec<String> = metadata
        .packages
        .iter()
        .filter_map(|p| {
            let theirs = p.rust_version.as_ref()?;
            let theirs = (theirs.major, theirs.minor);
            (theirs > major_minor(&ours))
                .then(|| format!("{} {} needs {theirs:?}", p.name, p.version))
        })
        .collect();
    assert!(
        newer.is_empty(),
        "dependencies need a newer Rust than {ours}: {newer:?}"
    );
}
