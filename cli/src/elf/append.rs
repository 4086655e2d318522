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
//! written, for the in-memory path ([`super::rewrite`]): big-endian files, extended section
//! numbering, unusual header sizes, and a file that already has a section of that name
//! (which the in-memory path replaces). Never writes a file itself and never runs anything.

use std::io::{self, Read, Seek, SeekFrom, Write};

use anyhow::{Context, Result};

use super::headers::MAX_HEADER_BYTES;
use super::headers::gabi::{SHN_LORESERVE, SHT_NOBITS, SHT_PROGBITS};

/// What [`append_section`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// The file with the section was written.
    Written,
    /// Nothing was written: the file must take the in-memory path, for this reason.
    Fallback(String),
}

fn uint(bytes: &[u8], at: usize, len: usize) -> u64 {
    bytes[at..at + len]
        .iter()
        .rev()
        .fold(0u64, |value, byte| (value << 8) | u64::from(*byte))
}

fn put(bytes: &mut [u8], at: usize, len: usize, value: u64) {
    for (i, byte) in bytes[at..at + len].iter_mut().enumerate() {
        *byte = (value >> (8 * i)) as u8;
    }
}

/// Reads `len` bytes at `offset`, refusing more than [`MAX_HEADER_BYTES`].
fn read_at(reader: &mut (impl Read + Seek), offset: u64, len: u64) -> io::Result<Vec<u8>> {
    if len > MAX_HEADER_BYTES {
        return Err(io::Error::other("a header table is too large"));
    }
    reader.seek(SeekFrom::Start(offset))?;
    let mut bytes = vec![0u8; len as usize];
    reader.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Writes the ELF file in `reader` to `out` with one more non-allocated `SHT_PROGBITS`
/// section, `name`, holding `contents`.
pub fn append_section(
    reader: &mut (impl Read + Seek),
    name: &str,
    contents: &[u8],
    out: &mut dyn Write,
) -> Result<Appended> {
    let fallback = |why: &str| Ok(Appended::Fallback(why.to_owned()));
    let size = reader
        .seek(SeekFrom::End(0))
        .context("cannot read the binary")?;
    let mut header = read_at(reader, 0, size.min(64)).context("cannot read the binary")?;
    if header.len() < 52 || !header.starts_with(b"\x7fELF") {
        return fallback("not an ELF file");
    }
    let is_64 = match header[4] {
        2 => true,
        1 => false,
        _ => return fallback("unknown ELF class"),
    };
    if header[5] != 1 {
        return fallback("a big-endian ELF file");
    }
    if is_64 && header.len() < 64 {
        return fallback("truncated ELF header");
    }
    // gABI, "ELF Header" and "Sections".
    let (shoff_at, base, word) = if is_64 { (40, 52, 8) } else { (32, 40, 4) };
    let ehsize = uint(&header, base, 2);
    let phoff = uint(&header, if is_64 { 32 } else { 28 }, word);
    let phentsize = uint(&header, base + 2, 2);
    let phnum = uint(&header, base + 4, 2);
    let shoff = uint(&header, shoff_at, word);
    let shentsize = uint(&header, base + 6, 2);
    let shnum = uint(&header, base + 8, 2);
    let shstrndx = uint(&header, base + 10, 2);
    let (want_eh, want_ph, want_sh) = if is_64 { (64, 56, 64) } else { (52, 32, 40) };
    if ehsize != want_eh || shentsize != want_sh || (phnum > 0 && phentsize != want_ph) {
        return fallback("unusual ELF header sizes");
    }
    if shnum == 0 || shnum + 1 >= SHN_LORESERVE || shstrndx == 0 || shstrndx >= shnum {
        return fallback("extended section numbering or no section name table");
    }
    let inside = |offset: u64, len: u64| offset.checked_add(len).is_some_and(|end| end <= size);
    let table_len = shnum * shentsize;
    if !inside(shoff, table_len) || !inside(phoff, phnum * phentsize) {
        return fallback("a header table lies outside the file");
    }
    let mut table = read_at(reader, shoff, table_len).context("cannot read the binary")?;
    // Field offsets in a section header: name, type, offset, size, then the entry's width.
    let (type_at, offset_at, size_at) = if is_64 { (4, 24, 32) } else { (4, 16, 20) };
    let field = |table: &[u8], index: u64, at: usize, len: usize| {
        uint(table, (index * shentsize) as usize + at, len)
    };
    let names_offset = field(&table, shstrndx, offset_at, word);
    let names_len = field(&table, shstrndx, size_at, word);
    if field(&table, shstrndx, type_at, 4) == u64::from(SHT_NOBITS)
        || !inside(names_offset, names_len)
    {
        return fallback("an unusual section name table");
    }
    let mut names = read_at(reader, names_offset, names_len).context("cannot read the binary")?;
    let taken = (0..shnum).any(|index| {
        let at = field(&table, index, 0, 4) as usize;
        names
            .get(at..)
            .is_some_and(|rest| rest.split(|b| *b == 0).next() == Some(name.as_bytes()))
    });
    if taken {
        return fallback("the section is there already");
    }
    // What must stay: every section's bytes but the name table's, every segment, the headers.
    let mut kept_end = phoff + phnum * phentsize;
    kept_end = kept_end.max(ehsize);
    for index in (1..shnum).filter(|&i| i != shstrndx) {
        if field(&table, index, type_at, 4) != u64::from(SHT_NOBITS) {
            let (offset, len) = (
                field(&table, index, offset_at, word),
                field(&table, index, size_at, word),
            );
            if !inside(offset, len) {
                return fallback("a section lies outside the file");
            }
            kept_end = kept_end.max(offset + len);
        }
    }
    let phdrs = read_at(reader, phoff, phnum * phentsize).context("cannot read the binary")?;
    for entry in phdrs.chunks_exact(phentsize.max(1) as usize) {
        let (offset, filesz) = if is_64 {
            (uint(entry, 8, 8), uint(entry, 32, 8))
        } else {
            (uint(entry, 4, 4), uint(entry, 16, 4))
        };
        kept_end = kept_end.max(offset.saturating_add(filesz));
    }
    // The old header table is left out when it ends the file; the old names too when they
    // come right before it (at most the table's alignment apart) and after everything kept.
    let mut cut = size;
    if shoff + table_len == size && shoff >= kept_end {
        cut = shoff;
        let names_end = names_offset + names_len;
        if names_offset >= kept_end && names_end <= shoff && shoff - names_end < word as u64 {
            cut = names_offset;
        }
    }
    let name_at = names.len() as u64;
    names.extend_from_slice(name.as_bytes());
    names.push(0);
    let contents_at = cut;
    let new_names_at = contents_at + contents.len() as u64;
    let end = new_names_at + names.len() as u64;
    let new_shoff = end.next_multiple_of(word as u64);
    put(&mut header, shoff_at, word, new_shoff);
    put(&mut header, base + 8, 2, shnum + 1);
    let entry = (shstrndx * shentsize) as usize;
    put(&mut table, entry + offset_at, word, new_names_at);
    put(&mut table, entry + size_at, word, names.len() as u64);
    let mut added = vec![0u8; shentsize as usize];
    put(&mut added, 0, 4, name_at);
    put(&mut added, type_at, 4, u64::from(SHT_PROGBITS));
    put(&mut added, offset_at, word, contents_at);
    put(&mut added, size_at, word, contents.len() as u64);
    // sh_addralign: 1 (after sh_link and sh_info).
    put(&mut added, if is_64 { 48 } else { 32 }, word, 1);

    let header_len = header.len() as u64;
    out.write_all(&header)?;
    reader.seek(SeekFrom::Start(header_len))?;
    let copied = io::copy(&mut reader.by_ref().take(cut - header_len), out)?;
    if copied != cut - header_len {
        anyhow::bail!("the binary is shorter than its headers say");
    }
    out.write_all(contents)?;
    out.write_all(&names)?;
    let padding = new_shoff - end;
    out.write_all(&vec![0u8; padding as usize])?;
    out.write_all(&table)?;
    out.write_all(&added)?;
    Ok(Appended::Written)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use object::{Object, ObjectSection, ObjectSegment};

    use super::*;

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
            (big_endian, "a big-endian ELF file"),
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
