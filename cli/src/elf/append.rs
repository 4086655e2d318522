//! One non-allocated section added to an ELF file as it streams from a seekable reader to a
//! writer, in bounded memory: what `build` does to embed the dependency list in a binary of
//! any size.
//!
//! The file is copied as it is (its header's `e_shoff` and `e_shnum` patched), then come the
//! section's contents, a new section name table (the old names and the new one) and a new
//! section header table (the old entries, the name table's pointing at the new one, and the
//! new section's). The loaded image is never touched: no segment, allocated section or
//! symbol moves. An old header table at the very end of the file, and an old name table just
//! before it, are left out rather than kept as dead bytes; anything else (data appended after
//! the ELF contents, say) stays where it is.
//!
//! Layouts it does not handle are an [`Appended::Fallback`] with the reason, before anything is
//! written, for the in-memory path ([`super::rewrite`]): what [`super::tables`] does not read
//! (big-endian files, extended section numbering, unusual header sizes), and a file that
//! already has a section of that name (which the in-memory path replaces). Never writes a file itself and never runs anything.

use std::io::{self, Read, Seek, SeekFrom, Write};

use anyhow::Result;

use super::headers::gabi::{SHN_LORESERVE, SHT_NOBITS, SHT_PROGBITS};
use super::tables::{self, Tables, Unsupported, align};

/// What [`append_section`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// The file with the section was written.
    Written,
    /// Nothing was written: the file must take the in-memory path, for this reason.
    Fallback(String),
}

/// Writes the ELF file in `reader` to `out` with one more non-allocated `SHT_PROGBITS`
/// section, `name`, holding `contents`.
pub fn append_section(
    reader: &mut (impl Read + Seek),
    name: &str,
    contents: &[u8],
    out: &mut dyn Write,
) -> Result<Appended> {
    let tables = match tables::read(reader)? {
        Ok(tables) => tables,
        Err(Unsupported(why)) => return Ok(Appended::Fallback(why)),
    };
    let fallback = |why: &str| Ok(Appended::Fallback(why.to_owned()));
    let shnum = tables.sections.len() as u64;
    if shnum + 1 >= SHN_LORESERVE {
        return fallback("one more section would need extended section numbering");
    }
    if tables.sections.iter().any(|s| s.name == name.as_bytes()) {
        return fallback("the section is there already");
    }
    let shstrndx = tables.shstrndx;
    let old_names = &tables.sections[shstrndx];
    // What must stay: every section's bytes but the name table's, every segment, the headers.
    let mut kept_end = (tables.phoff + tables.phdrs.len() as u64).max(tables.ehsize());
    for (index, section) in tables.sections.iter().enumerate() {
        if index != shstrndx && section.sh_type != SHT_NOBITS {
            kept_end = kept_end.max(section.sh_offset + section.sh_size);
        }
    }
    for (offset, filesz) in tables.segments() {
        kept_end = kept_end.max(offset.saturating_add(filesz));
    }
    // The old header table is left out when it ends the file; the old names too when they
    // come right before it (at most the table's alignment apart) and after everything kept.
    let word = tables.word();
    let mut cut = tables.size;
    if tables.shoff + shnum * tables.shentsize() == tables.size && tables.shoff >= kept_end {
        cut = tables.shoff;
        let names_end = old_names.sh_offset + old_names.sh_size;
        if old_names.sh_offset >= kept_end
            && names_end <= tables.shoff
            && tables.shoff - names_end < word
        {
            cut = old_names.sh_offset;
        }
    }
    let mut names = tables.names.clone();
    let name_at = names.len() as u64;
    names.extend_from_slice(name.as_bytes());
    names.push(0);
    let contents_at = cut;
    let names_at = contents_at + contents.len() as u64;
    let end = names_at + names.len() as u64;
    let shoff = align(end, word);

    let ehsize = tables.ehsize();
    out.write_all(&tables.patched_header(tables.phoff, shoff, shnum + 1, shstrndx as u64))?;
    reader.seek(SeekFrom::Start(ehsize))?;
    let copied = io::copy(&mut reader.by_ref().take(cut - ehsize), out)?;
    if copied != cut - ehsize {
        anyhow::bail!("the binary is shorter than its headers say");
    }
    out.write_all(contents)?;
    out.write_all(&names)?;
    out.write_all(&vec![0u8; (shoff - end) as usize])?;
    for (index, section) in tables.sections.iter().enumerate() {
        let mut fields = Tables::fields_of(section);
        if index == shstrndx {
            // sh_offset, sh_size.
            (fields[4], fields[5]) = (names_at, names.len() as u64);
        }
        tables.write_section_header(out, fields)?;
    }
    let added = [
        name_at,
        u64::from(SHT_PROGBITS),
        0,
        0,
        contents_at,
        contents.len() as u64,
        0,
        0,
        1,
        0,
    ];
    tables.write_section_header(out, added)?;
    Ok(Appended::Written)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use object::{Object, ObjectSection, ObjectSegment};

    use super::*;
    use crate::elf::tables::put;

    fn appended(data: &[u8], contents: &[u8]) -> (Appended, Vec<u8>) {
        let mut out = Vec::new();
        let outcome =
            append_section(&mut Cursor::new(data), ".dep-v0", contents, &mut out).unwrap();
        (outcome, out)
    }

    #[test]
    fn the_section_is_added_and_nothing_loaded_moves() {
        let data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let contents = b"the dependency list".repeat(100);
        let (outcome, out) = appended(&data, &contents);
        assert_eq!(outcome, Appended::Written);
        let before = object::File::parse(data.as_slice()).unwrap();
        let after = object::File::parse(out.as_slice()).unwrap();
        let added = after.section_by_name(".dep-v0").unwrap();
        assert_eq!(added.data().unwrap(), contents.as_slice());
        // Every other section and segment is where it was, with the same bytes.
        let sections = |file: &object::File<'_>| {
            file.sections()
                .filter(|s| s.name() != Ok(".dep-v0") && s.name() != Ok(".shstrtab"))
                .map(|s| {
                    (
                        s.name().unwrap().to_owned(),
                        s.address(),
                        s.file_range(),
                        s.data().map(crc32fast::hash).unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(sections(&after), sections(&before));
        let segments = |file: &object::File<'_>| {
            file.segments()
                .map(|s| (s.address(), s.file_range()))
                .collect::<Vec<_>>()
        };
        assert_eq!(segments(&after), segments(&before));
        // The old header table (at the end, as linkers leave it) is gone: the file grows by
        // the section, one header, alignment and the names (the old ones stay where they are
        // unless they come right before the table, as GNU ld leaves them; lld puts `.strtab`
        // after them).
        let grown = (out.len() - data.len()) as u64;
        let names = before.section_by_name(".shstrtab").unwrap().size();
        assert!(
            grown <= contents.len() as u64 + 64 + 8 + 2 * names + 8,
            "{grown} bytes more"
        );
        // Reproducible, and a second section of that name is the in-memory path's to replace.
        assert_eq!(appended(&data, &contents), (outcome, out.clone()));
        assert_eq!(
            appended(&out, b"x").0,
            Appended::Fallback("the section is there already".to_owned())
        );
        // The names now come right before the table, as GNU ld lays them out: another section
        // leaves both out, so the file grows by exactly its contents, name and header.
        let mut again = Vec::new();
        let outcome = append_section(&mut Cursor::new(&out), ".other", b"12345", &mut again);
        assert_eq!(outcome.unwrap(), Appended::Written);
        let third = object::File::parse(again.as_slice()).unwrap();
        assert_eq!(
            third.section_by_name(".other").unwrap().data().unwrap(),
            b"12345"
        );
        assert_eq!(
            third.section_by_name(".dep-v0").unwrap().data().unwrap(),
            contents.as_slice()
        );
        let grown = again.len() - out.len();
        assert!(grown <= 5 + ".other\0".len() + 64 + 7, "{grown} bytes more");
    }

    #[test]
    fn data_after_the_header_table_is_kept_in_place() {
        let mut data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let tail = b"appended payload";
        data.extend_from_slice(tail);
        let (outcome, out) = appended(&data, b"deps");
        assert_eq!(outcome, Appended::Written);
        assert_eq!(&out[data.len() - tail.len()..data.len()], tail);
        let after = object::File::parse(out.as_slice()).unwrap();
        assert_eq!(
            after.section_by_name(".dep-v0").unwrap().data().unwrap(),
            b"deps"
        );
    }

    #[test]
    fn what_it_does_not_handle_falls_back_and_writes_nothing() {
        let data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let mut big_endian = data.clone();
        big_endian[5] = 2;
        let mut no_names = data.clone();
        put(&mut no_names, 62, 2, 0);
        for (input, why) in [
            (
                big_endian,
                "a big-endian ELF file (the streaming rewriters are tested on little-endian)",
            ),
            (
                no_names,
                "extended section numbering or no section name table",
            ),
            (b"#!/bin/sh\n".repeat(10), "not an ELF file"),
        ] {
            let (outcome, out) = appended(&input, b"deps");
            assert_eq!(outcome, Appended::Fallback(why.to_owned()));
            assert!(out.is_empty(), "{why}");
        }
    }
}
