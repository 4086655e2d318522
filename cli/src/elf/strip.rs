//! Stripping in process (airlock ships static and needs no binutils): the ELF is rebuilt in
//! memory with `object`'s builder. [`split_debug`] makes what ships (debug information, and
//! with [`StripMode::Symbols`] the symbol table, removed; a `.gnu_debuglink` added) and the
//! separate debug file beside it (what `objcopy --only-keep-debug` keeps), linked to the
//! shipped binary by its GNU build-id and by the debuglink's CRC32, so `gdb` and `lldb` find
//! it. [`strip_in_process`] measures what `strip --strip-all` would save, for the report.
//!
//! Only non-allocated sections that are known to be debug information or the static symbol
//! table are ever removed: allocated sections (what the loader maps) and sections airlock does
//! not know (`.comment`, `.dep-v0`, notes) ship unchanged. Nothing here runs a binary or writes
//! a file, except [`strip_with_tool`], which runs `strip` on a temporary copy.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anyhow::{Context, Result};
use object::build::elf::{Section, SectionData};
use object::{Endianness, elf};
use serde::{Deserialize, Serialize};

use super::rewrite;
use crate::error;
use crate::process;

/// What stripping removes from a binary before it ships.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum StripMode {
    /// Nothing: the binary ships as built.
    None,
    /// The DWARF debug information (`strip --strip-debug`, cargo's `strip = "debuginfo"`):
    /// panics still name functions in backtraces, from the symbol table.
    #[default]
    Debuginfo,
    /// The debug information and the static symbol table (`strip --strip-all`, cargo's
    /// `strip = "symbols"`): smallest, backtraces show addresses only.
    Symbols,
}

impl StripMode {
    /// The name used by flags, settings and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            StripMode::None => "none",
            StripMode::Debuginfo => "debuginfo",
            StripMode::Symbols => "symbols",
        }
    }
}

impl fmt::Display for StripMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StripMode {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        match text {
            "none" | "false" => Ok(StripMode::None),
            "debuginfo" => Ok(StripMode::Debuginfo),
            "symbols" | "true" => Ok(StripMode::Symbols),
            other => Err(error::input(format!(
                "unknown strip mode `{other}`; use none, debuginfo or symbols"
            ))),
        }
    }
}

/// A binary split into what ships and its debug file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    /// The binary that ships: the input itself when nothing was removed.
    pub shipped: Vec<u8>,
    /// The separate debug file, when stripping removed anything.
    pub debug: Option<Vec<u8>>,
    /// The GNU build-id (`.note.gnu.build-id`), lowercase hex, when the linker wrote one.
    pub build_id: Option<String>,
}

/// Whether stripping in `mode` removes the non-allocated section `section`.
fn is_removed(section: &Section<'_>, mode: StripMode) -> bool {
    if section.is_alloc() {
        return false;
    }
    let name = section.name.as_slice();
    let debug = name.starts_with(b".debug") || name.starts_with(b".zdebug");
    let symbols = matches!(
        section.data,
        SectionData::Symbol | SectionData::SymbolSectionIndex | SectionData::String
    );
    match mode {
        StripMode::None => false,
        StripMode::Debuginfo => debug,
        StripMode::Symbols => debug || symbols,
    }
}

/// Splits the ELF `data` into the binary that ships (stripped in `mode`, with a
/// `.gnu_debuglink` naming `debug_file_name`) and its debug file. A binary with nothing to
/// remove ships byte for byte as it is, with no debug file: `data` itself, never a copy (a
/// binary may be hundreds of MB).
pub fn split_debug(data: Vec<u8>, mode: StripMode, debug_file_name: &str) -> Result<Split> {
    let build_id = build_id(&data)?;
    let unchanged = |data: Vec<u8>, build_id: Option<String>| Split {
        shipped: data,
        debug: None,
        build_id,
    };
    if mode == StripMode::None {
        return Ok(unchanged(data, build_id));
    }
    let (removes, endian) = rewrite::with_builder(&data, |builder| {
        Ok((
            builder.sections.iter().any(|s| is_removed(s, mode)),
            builder.endian,
        ))
    })?;
    if !removes {
        return Ok(unchanged(data, build_id));
    }
    let debug = debug_file(&data)?;
    let crc = crc32fast::hash(&debug);
    let shipped = shipped_binary(&data, mode, &gnu_debuglink(debug_file_name, crc, endian))?;
    Ok(Split {
        shipped,
        debug: Some(debug),
        build_id,
    })
}

/// The binary without what `mode` removes, with `debuglink` as its `.gnu_debuglink`.
fn shipped_binary(data: &[u8], mode: StripMode, debuglink: &[u8]) -> Result<Vec<u8>> {
    rewrite::rewrite(data, data.len(), |builder| {
        for section in builder.sections.iter_mut() {
            if is_removed(section, mode) || section.name.as_slice() == b".gnu_debuglink" {
                section.delete = true;
            }
        }
        if mode == StripMode::Symbols {
            for symbol in builder.symbols.iter_mut() {
                symbol.delete = true;
            }
        }
        let link = builder.sections.add();
        link.name = b".gnu_debuglink".as_slice().into();
        link.sh_type = elf::SHT_PROGBITS;
        link.sh_addralign = 4;
        link.data = SectionData::Data(debuglink.to_vec().into());
        Ok(())
    })
}

/// The separate debug file: every section header kept (so addresses match the binary's), the
/// DWARF sections, the symbol table and the notes (gdb checks the build-id of a debug file
/// found by it) with their contents, every other section as `SHT_NOBITS`, as
/// `objcopy --only-keep-debug` writes it.
fn debug_file(data: &[u8]) -> Result<Vec<u8>> {
    rewrite::rewrite(data, 0, |builder| {
        for section in builder.sections.iter_mut() {
            if section.name.as_slice() == b".gnu_debuglink" {
                section.delete = true;
                continue;
            }
            let kept = is_removed(section, StripMode::Symbols)
                || section.sh_type == elf::SHT_NOTE
                || matches!(section.data, SectionData::SectionString);
            if !kept && section.sh_type != elf::SHT_NOBITS {
                section.sh_type = elf::SHT_NOBITS;
                section.data = SectionData::UninitializedData(section.sh_size);
            } else if !kept {
                section.data = SectionData::UninitializedData(section.sh_size);
            }
        }
        // The dynamic tables are NOBITS now: nothing may still need their contents.
        for symbol in builder.dynamic_symbols.iter_mut() {
            symbol.delete = true;
        }
        for version in builder.versions.iter_mut() {
            version.delete = true;
        }
        for file in builder.version_files.iter_mut() {
            file.delete = true;
        }
        builder.version_base = None;
        Ok(())
    })
}

/// The contents of a `.gnu_debuglink` section: the debug file's name, NUL-terminated and
/// padded with NULs to a multiple of 4, then the CRC32 of the debug file in the ELF's byte
/// order (gdb manual, "Debugging Information in Separate Files").
pub fn gnu_debuglink(debug_file_name: &str, crc: u32, endian: Endianness) -> Vec<u8> {
    let mut contents = debug_file_name.as_bytes().to_vec();
    contents.push(0);
    contents.resize(contents.len().next_multiple_of(4), 0);
    contents.extend(match endian {
        Endianness::Little => crc.to_le_bytes(),
        Endianness::Big => crc.to_be_bytes(),
    });
    contents
}

/// The name a built binary's debug file ships under, beside its archive
/// (`<bin>-<version>-<target>.debug`): `image` and `dist` name it alike, so the
/// `.gnu_debuglink` in the image's binary names the file the release carries.
pub fn debug_file_name(bin: &str, version: &str, target: &impl fmt::Display) -> String {
    format!("{bin}-{version}-{target}.debug")
}

/// Where gdb and lldb look for the debug file of a binary with this build-id (hex), below a
/// `debug-file-directory`: `.build-id/<first two digits>/<the rest>.debug`.
pub fn build_id_path(build_id: &str) -> String {
    let (head, rest) = build_id.split_at(build_id.len().min(2));
    format!(".build-id/{head}/{rest}.debug")
}

/// The GNU build-id of the ELF `data` (the `NT_GNU_BUILD_ID` note of owner `GNU`), in hex.
pub fn build_id(data: &[u8]) -> Result<Option<String>> {
    use object::read::elf::{FileHeader, SectionHeader};
    fn find<Elf: FileHeader<Endian = Endianness>>(data: &[u8]) -> object::Result<Option<String>> {
        let header = Elf::parse(data)?;
        let endian = header.endian()?;
        for section in header.sections(endian, data)?.iter() {
            let Some(mut notes) = section.notes(endian, data)? else {
                continue;
            };
            while let Some(note) = notes.next()? {
                if note.name() == elf::ELF_NOTE_GNU && note.n_type(endian) == elf::NT_GNU_BUILD_ID {
                    let hex = hex::encode(note.desc());
                    return Ok(Some(hex));
                }
            }
        }
        Ok(None)
    }
    let found = match object::FileKind::parse(data) {
        Ok(object::FileKind::Elf64) => find::<elf::FileHeader64<Endianness>>(data),
        Ok(object::FileKind::Elf32) => find::<elf::FileHeader32<Endianness>>(data),
        _ => return Err(anyhow::anyhow!("not an ELF file")),
    };
    found.map_err(|e| anyhow::anyhow!("cannot read the ELF notes: {e}"))
}

/// How the stripped size was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StripMethod {
    /// Rewritten in process with the `object` crate's ELF builder.
    Object,
    /// Computed from the ELF headers: the size the in-process rewrite writes, without
    /// writing it.
    Headers,
    /// `llvm-strip` on a temporary copy.
    LlvmStrip,
    /// GNU `strip` on a temporary copy.
    Strip,
}

/// The ELF `data` with symbols and debug information removed, as `strip --strip-all` leaves
/// an executable (no debuglink: this measures, it makes nothing that ships).
pub fn strip_in_process(data: &[u8]) -> Result<Vec<u8>> {
    rewrite::rewrite(data, data.len(), |builder| {
        for section in builder.sections.iter_mut() {
            if is_removed(section, StripMode::Symbols)
                || section.name.as_slice() == b".gnu_debuglink"
            {
                section.delete = true;
            }
        }
        // Every static symbol goes with `.symtab`; relocations against them (object files
        // only) go with them.
        for symbol in builder.symbols.iter_mut() {
            symbol.delete = true;
        }
        Ok(())
    })
    .context("cannot rewrite the ELF file without its symbols")
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
                    return strip_with_tool(tool, "--strip-all", data).map(|size| (size, method));
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

/// Runs `tool flag` on a temporary copy of `data` and returns the size of the result.
pub fn strip_with_tool(tool: &str, flag: &str, data: &[u8]) -> Result<u64> {
    let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
    let copy = dir.path().join("binary");
    std::fs::write(&copy, data).with_context(|| format!("cannot write {}", copy.display()))?;
    process::run_captured(std::process::Command::new(tool).arg(flag).arg(&copy))?;
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

    fn section_names(data: &[u8]) -> Vec<String> {
        use object::{Object, ObjectSection};
        let file = object::File::parse(data).unwrap();
        file.sections()
            .map(|s| s.name().unwrap().to_owned())
            .collect()
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
        let theirs = strip_with_tool("strip", "--strip-all", &data).unwrap();
        let diff = ours.abs_diff(theirs);
        assert!(diff * 100 <= theirs, "ours {ours}, strip {theirs}");
    }

    #[test]
    fn split_keeps_symbols_in_debuginfo_mode_and_links_the_debug_file() {
        let data = own_binary();
        let split = split_debug(data.clone(), StripMode::Debuginfo, "app.debug").unwrap();
        let debug = split
            .debug
            .as_ref()
            .expect("the test binary has debug info");
        let shipped = crate::elf::parse_elf(Path::new("shipped"), &split.shipped).unwrap();
        assert!(!shipped.debug_info && !shipped.stripped, "{shipped:?}");
        // The debuglink names the file and carries its CRC32 (little-endian on these hosts).
        let expected = gnu_debuglink("app.debug", crc32fast::hash(debug), Endianness::Little);
        use object::{Object, ObjectSection};
        let file = object::File::parse(split.shipped.as_slice()).unwrap();
        let link = file.section_by_name(".gnu_debuglink").unwrap();
        assert_eq!(link.data().unwrap(), expected.as_slice());
        assert_eq!(&expected[..10], b"app.debug\0");
        assert_eq!(expected.len(), 16);
        // The debug file has the DWARF and the symbols, and no code.
        let names = section_names(debug);
        assert!(names.iter().any(|n| n == ".debug_info"), "{names:?}");
        assert!(names.iter().any(|n| n == ".symtab"), "{names:?}");
        let parsed = object::File::parse(debug.as_slice()).unwrap();
        let text = parsed.section_by_name(".text").unwrap();
        assert_eq!(text.file_range(), None, "code is NOBITS in the debug file");
        assert!(debug.len() < data.len());
        // Symbols mode removes the symbol table too.
        let all = split_debug(data.clone(), StripMode::Symbols, "app.debug").unwrap();
        let info = crate::elf::parse_elf(Path::new("all"), &all.shipped).unwrap();
        assert!(info.stripped);
        assert!(all.shipped.len() < split.shipped.len());
        // Reproducible.
        assert_eq!(
            split_debug(data.clone(), StripMode::Debuginfo, "app.debug").unwrap(),
            split
        );
    }

    #[test]
    fn unknown_and_allocated_sections_ship_unchanged() {
        // An embedded dependency list (`.dep-v0`, non-allocated here, as a linker may leave
        // it) and `.comment` are not airlock's to remove, whatever the mode.
        let data = own_binary();
        let with_deps = rewrite::rewrite(&data, data.len(), |builder| {
            let deps = builder.sections.add();
            deps.name = b".dep-v0".as_slice().into();
            deps.sh_type = elf::SHT_PROGBITS;
            deps.sh_addralign = 1;
            deps.data = SectionData::Data(b"compressed dependency list".to_vec().into());
            Ok(())
        })
        .unwrap();
        use object::{Object, ObjectSection};
        let contents = |bytes: &[u8], name: &str| {
            let file = object::File::parse(bytes).unwrap();
            file.section_by_name(name)
                .map(|s| s.data().unwrap().to_vec())
        };
        let alloc = |bytes: &[u8]| {
            let file = object::File::parse(bytes).unwrap();
            file.sections()
                .filter(|s| {
                    matches!(s.flags(), object::SectionFlags::Elf { sh_flags, .. }
                        if sh_flags.contains(elf::SHF_ALLOC))
                })
                .map(|s| (s.name().unwrap().to_owned(), s.data().unwrap().to_vec()))
                .collect::<Vec<_>>()
        };
        for mode in [StripMode::Debuginfo, StripMode::Symbols] {
            let split = split_debug(with_deps.clone(), mode, "x.debug").unwrap();
            for name in [".dep-v0", ".comment"] {
                assert_eq!(
                    contents(&split.shipped, name),
                    contents(&with_deps, name),
                    "{name} in {mode} mode"
                );
            }
            assert!(contents(&with_deps, ".dep-v0").is_some());
            assert_eq!(contents(&split.shipped, ".debug_info"), None);
            assert_eq!(alloc(&split.shipped), alloc(&with_deps), "{mode} mode");
        }
    }

    proptest::proptest! {
        #[test]
        fn prop_debuglink_is_the_name_padded_then_the_crc(
            name in "[a-zA-Z0-9._-]{1,40}",
            crc in proptest::prelude::any::<u32>(),
        ) {
            let link = gnu_debuglink(&name, crc, Endianness::Little);
            proptest::prop_assert_eq!(link.len() % 4, 0);
            proptest::prop_assert!(link.starts_with(name.as_bytes()));
            let padding = &link[name.len()..link.len() - 4];
            proptest::prop_assert!(!padding.is_empty() && padding.len() <= 4);
            proptest::prop_assert!(padding.iter().all(|b| *b == 0));
            proptest::prop_assert_eq!(&link[link.len() - 4..], &crc.to_le_bytes()[..]);
            let big = gnu_debuglink(&name, crc, Endianness::Big);
            proptest::prop_assert_eq!(&big[big.len() - 4..], &crc.to_be_bytes()[..]);
        }
    }

    #[test]
    fn nothing_to_strip_ships_the_input_unchanged() {
        let stripped = strip_in_process(&own_binary()).unwrap();
        let split = split_debug(stripped.clone(), StripMode::Symbols, "x.debug").unwrap();
        assert_eq!(split.shipped, stripped);
        assert_eq!(split.debug, None);
        let none = split_debug(own_binary(), StripMode::None, "x.debug").unwrap();
        assert_eq!(none.shipped, own_binary());
        assert_eq!(none.debug, None);
    }

    #[test]
    fn nothing_to_strip_is_never_copied() {
        // The bytes that ship are the very buffer read (a binary may be hundreds of MB).
        for (data, mode) in [
            (strip_in_process(&own_binary()).unwrap(), StripMode::Symbols),
            (own_binary(), StripMode::None),
        ] {
            let read = data.as_ptr();
            let split = split_debug(data, mode, "x.debug").unwrap();
            assert_eq!(split.shipped.as_ptr(), read, "{mode} mode");
        }
    }

    #[test]
    fn modes_parse_and_print() {
        for mode in [StripMode::None, StripMode::Debuginfo, StripMode::Symbols] {
            assert_eq!(mode.as_str().parse::<StripMode>().unwrap(), mode);
        }
        let err = "all".parse::<StripMode>().unwrap_err().to_string();
        assert!(err.contains("none, debuginfo or symbols"), "{err}");
        assert_eq!(build_id_path("abcdef"), ".build-id/ab/cdef.debug");
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(strip_in_process(b"not an elf").is_err());
        assert!(split_debug(b"not an elf".to_vec(), StripMode::Debuginfo, "x").is_err());
    }
}
