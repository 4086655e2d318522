//! Measures what `strip` would save, without running `strip`: the ELF is rebuilt in memory
//! with `object`'s builder, minus the static symbol table, its strings and the debug
//! sections (what `strip --strip-all` removes from an executable). When the builder cannot
//! rewrite a file, `llvm-strip` or `strip` from `PATH` does it on a temporary copy.

use std::path::Path;

use anyhow::{Context, Result};
use object::build::elf::{Builder, SectionData};
use serde::{Deserialize, Serialize};

use crate::process;

/// How the stripped size was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StripMethod {
    /// Rewritten in process with the `object` crate's ELF builder.
    Object,
    /// `llvm-strip` on a temporary copy.
    LlvmStrip,
    /// GNU `strip` on a temporary copy.
    Strip,
}

/// Whether a non-allocated section is one `strip --strip-all` removes: the static symbol
/// table and its string table, and debug information (DWARF, compressed or not).
fn is_strippable(name: &[u8], data: &SectionData<'_>) -> bool {
    matches!(
        data,
        SectionData::Symbol | SectionData::SymbolSectionIndex | SectionData::String
    ) || name.starts_with(b".debug")
        || name.starts_with(b".zdebug")
        || name == b".gnu_debuglink"
}

/// The ELF `data` with symbols and debug information removed.
pub fn strip_in_process(data: &[u8]) -> Result<Vec<u8>> {
    let mut builder = Builder::read(data).context("cannot parse the ELF file")?;
    for section in builder.sections.iter_mut() {
        if !section.is_alloc() && is_strippable(&section.name, &section.data) {
            section.delete = true;
        }
    }
    // Every static symbol goes with `.symtab`; relocations against them (object files
    // only) go with them.
    for symbol in builder.symbols.iter_mut() {
        symbol.delete = true;
    }
    let mut out = Vec::with_capacity(data.len());
    builder
        .write(&mut out)
        .context("cannot rewrite the ELF file without its symbols")?;
    Ok(out)
}

/// The stripped size of the ELF file `data` (read from `path`), and how it was measured.
pub fn stripped_size(path: &Path, data: &[u8]) -> Result<(u64, StripMethod)> {
    match strip_in_process(data) {
        Ok(stripped) => Ok((stripped.len() as u64, StripMethod::Object)),
        Err(in_process) => {
            for (tool, method) in [
                ("llvm-strip", StripMethod::LlvmStrip),
                ("strip", StripMethod::Strip),
            ] {
                if process::find_on_path(tool).is_some() {
                    return strip_with_tool(tool, data).map(|size| (size, method));
                }
            }
            Err(in_process.context(format!(
                "{}: cannot measure its stripped size, and neither llvm-strip nor strip is \
                 installed to do it instead",
                path.display()
            )))
        }
    }
}

/// Runs `tool` on a temporary copy of `data` and returns the size of the result.
pub fn strip_with_tool(tool: &str, data: &[u8]) -> Result<u64> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let copy = dir.path().join("binary");
    std::fs::write(&copy, data).with_context(|| format!("cannot write {}", copy.display()))?;
    process::run_captured(
        std::process::Command::new(tool)
            .arg("--strip-all")
            .arg(&copy),
    )?;
    Ok(std::fs::metadata(&copy)
        .with_context(|| format!("cannot read {}", copy.display()))?
        .len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test binary itself: a dynamic PIE with symbols (and debug info in dev builds).
    fn own_binary() -> Vec<u8> {
        std::fs::read(std::env::current_exe().unwrap()).unwrap()
    }

    #[test]
    fn stripping_removes_symbols_and_keeps_a_valid_elf() {
        let data = own_binary();
        let stripped = strip_in_process(&data).unwrap();
        assert!(stripped.len() < data.len());
        let info = crate::elf::parse_elf(Path::new("stripped"), &stripped).unwrap();
        assert!(info.stripped, "{info:?}");
        assert!(!info.debug_info);
        let original = crate::elf::parse_elf(Path::new("original"), &data).unwrap();
        assert_eq!(info.needed, original.needed);
        assert_eq!(info.interpreter, original.interpreter);
        // Stripping a stripped file changes nothing more.
        assert_eq!(strip_in_process(&stripped).unwrap().len(), stripped.len());
    }

    #[test]
    fn in_process_size_is_close_to_gnu_strip() {
        if process::find_on_path("strip").is_none() {
            eprintln!("skipped: strip is not installed");
            return;
        }
        let data = own_binary();
        let ours = strip_in_process(&data).unwrap().len() as u64;
        let theirs = strip_with_tool("strip", &data).unwrap();
        let diff = ours.abs_diff(theirs);
        assert!(diff * 100 <= theirs, "ours {ours}, strip {theirs}");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(strip_in_process(b"not an elf").is_err());
    }
}
