//! The split [`super::strip::split_debug`] makes, written from a seekable reader in bounded
//! memory: a plan from the ELF headers, then the debug file (written first: the shipped
//! file's `.gnu_debuglink` carries its CRC32), then the shipped file. The removed sections are
//! never read into memory; only the header tables, the section name table and a buffer are
//! held, whatever the binary's size.
//!
//! The shipped file is the loaded image byte for byte (from offset 0 to the end of the last
//! segment or allocated section), then the kept non-allocated sections each at its
//! alignment, the new `.gnu_debuglink`, a new section name table and new section headers. The
//! debug file keeps every section header (the old `.gnu_debuglink` aside), with contents only
//! for the debug sections, the symbol table and its strings, the notes and the name table, as
//! [`super::strip::split_debug`]'s debug file does.
//!
//! Symbols defined in a section an output removes are left out of that output's symbol table
//! (its `sh_info` counting the locals kept), as `object`'s builder leaves such orphans out.
//!
//! Only layouts whose renumbering is proven safe from the headers are planned: anything else
//! (extended section numbering, `SHT_SYMTAB_SHNDX`, a removed section inside the loaded image
//! or numbered before an allocated one, a link to a removed section, kept relocations or
//! groups numbering symbols that are left out, big-endian files, no program headers) is a
//! [`Planned::Fallback`] with the reason, for the in-memory path. Never writes a file itself
//! and never runs anything.

use std::io::{self, Read, Seek, SeekFrom, Write};

use anyhow::{Context, Result};

use super::headers::gabi::{
    SHN_LORESERVE, SHT_GROUP, SHT_NOBITS, SHT_NOTE, SHT_PROGBITS, SHT_REL, SHT_RELA, SHT_STRTAB,
    SHT_SYMTAB, SHT_SYMTAB_SHNDX,
};
use super::strip::StripMode;
use super::tables::{self, Section, Tables, Unsupported, align, put, uint};

/// How the split of one file is to be written.
#[derive(Debug)]
pub enum Planned {
    /// The file has nothing `mode` removes: it ships as it is.
    Unchanged,
    /// The layout is proven safe to stream.
    Stream(Box<Plan>),
    /// Why the file must take the in-memory path.
    Fallback(String),
}

/// A proven layout: the headers of the input and what each output keeps.
#[derive(Debug)]
pub struct Plan {
    tables: Tables,
    /// Removed from the shipped file (the old `.gnu_debuglink` included).
    shipped_removed: Vec<bool>,
    /// Removed from the debug file (the old `.gnu_debuglink`).
    debug_removed: Vec<bool>,
    /// Contents kept in the debug file (the rest becomes `SHT_NOBITS`).
    debug_contents: Vec<bool>,
    /// The bytes of the input copied as they are to the start of the shipped file.
    prefix: u64,
    /// For each symbol table, the symbols the shipped file leaves out: those defined in a
    /// section it removes (`object`'s builder drops such orphans too).
    shipped_dropped: Vec<Dropped>,
    /// The same for the debug file.
    debug_dropped: Vec<Dropped>,
}

/// The symbols one output leaves out of one symbol table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Dropped {
    symbols: u64,
    /// Of them, those before the first global (`sh_info` counts the locals).
    locals: u64,
}

/// Plans the split of the ELF file in `reader` in `mode`. Malformed files are fallbacks too:
/// the in-memory path reports them.
pub fn plan(reader: &mut (impl Read + Seek), mode: StripMode) -> Result<Planned> {
    let fallback = |why: &str| -> Result<Planned> { Ok(Planned::Fallback(why.to_owned())) };
    if mode == StripMode::None {
        return Ok(Planned::Unchanged);
    }
    let tables = match tables::read(reader)? {
        Ok(tables) => tables,
        Err(Unsupported(why)) => return Ok(Planned::Fallback(why)),
    };
    if tables.phdrs.is_empty() {
        return fallback("no program headers");
    }
    let (is_64, ehsize, shstrndx) = (tables.is_64, tables.ehsize(), tables.shstrndx);
    let shnum = tables.sections.len() as u64;
    let sections = &tables.sections;
    let inside = |offset: u64, len: u64| tables.inside(offset, len);
    for section in sections {
        if section.sh_type == SHT_SYMTAB_SHNDX {
            return fallback("extended symbol section indices (SHT_SYMTAB_SHNDX)");
        }
        if section.sh_addralign > 1 && !section.sh_addralign.is_power_of_two() {
            return fallback("an alignment that is not a power of two");
        }
    }
    // As `strip::is_removed` decides: `object` reads the string table `.symtab` links to
    // (when it is not the name table) as the symbol strings.
    let symbol_strings: Vec<u64> = sections
        .iter()
        .filter(|s| s.sh_type == SHT_SYMTAB)
        .map(|s| s.sh_link)
        .collect();
    let removed_by = |index: usize, section: &Section, mode: StripMode| {
        if section.is_alloc() || index == 0 {
            return false;
        }
        let debug = section.name.starts_with(b".debug") || section.name.starts_with(b".zdebug");
        let symbols = section.sh_type == SHT_SYMTAB
            || (section.sh_type == SHT_STRTAB
                && index != shstrndx
                && symbol_strings.contains(&(index as u64)));
        match mode {
            StripMode::None => false,
            StripMode::Debuginfo => debug,
            StripMode::Symbols => debug || symbols,
        }
    };
    if !sections
        .iter()
        .enumerate()
        .any(|(i, s)| removed_by(i, s, mode))
    {
        return Ok(Planned::Unchanged);
    }
    let old_link = |s: &Section| !s.is_alloc() && s.name == b".gnu_debuglink";
    let shipped_removed: Vec<bool> = sections
        .iter()
        .enumerate()
        .map(|(i, s)| removed_by(i, s, mode) || old_link(s))
        .collect();
    let debug_removed: Vec<bool> = sections.iter().map(old_link).collect();
    let debug_contents: Vec<bool> = sections
        .iter()
        .enumerate()
        .map(|(i, s)| {
            removed_by(i, s, StripMode::Symbols) || s.sh_type == SHT_NOTE || i == shstrndx
        })
        .collect();
    // The loaded image: every segment and allocated section, copied byte for byte.
    let mut prefix = (tables.phoff + tables.phdrs.len() as u64).max(ehsize);
    for (offset, filesz) in tables.segments() {
        if !inside(offset, filesz) {
            return fallback("a segment lies outside the file");
        }
        prefix = prefix.max(offset + filesz);
    }
    for section in sections.iter().filter(|s| s.is_alloc() && s.has_bytes()) {
        prefix = prefix.max(section.sh_offset + section.sh_size);
    }
    let last_alloc = sections.iter().rposition(Section::is_alloc).unwrap_or(0);
    for removed in [&shipped_removed, &debug_removed] {
        for (index, section) in sections.iter().enumerate() {
            if !removed[index] {
                continue;
            }
            if section.has_bytes() && section.sh_offset < prefix {
                return fallback("a removed section lies inside the loaded image");
            }
            // Allocated sections keep their numbers, so `.dynsym` and the loaded image
            // need no renumbering.
            if index < last_alloc {
                return fallback("a removed section is numbered before an allocated one");
            }
        }
        for (index, section) in sections.iter().enumerate() {
            if removed[index] {
                continue;
            }
            let dangling =
                |target: u64| target != 0 && (target >= shnum || removed[target as usize]);
            if dangling(section.sh_link) || (section.info_is_index() && dangling(section.sh_info)) {
                return fallback("a kept section links to a removed one");
            }
        }
    }
    let mut plan = Plan {
        tables,
        shipped_removed,
        debug_removed,
        debug_contents,
        prefix,
        shipped_dropped: Vec::new(),
        debug_dropped: Vec::new(),
    };
    let count = plan.tables.sections.len();
    let (mut shipped_dropped, mut debug_dropped) = (
        vec![Dropped::default(); count],
        vec![Dropped::default(); count],
    );
    for (index, section) in plan.tables.sections.iter().enumerate() {
        if section.sh_type != SHT_SYMTAB || !section.has_bytes() {
            continue;
        }
        let entry = if is_64 { 24 } else { 16 };
        if section.sh_entsize != entry || section.sh_size % entry != 0 {
            return fallback("a symbol table of unusual entries");
        }
        // A symbol defined in a section an output removes is left out of that output, as
        // `object`'s builder leaves it out (AArch64 linkers put `$d` mapping symbols in
        // debug sections). Symbols then move down the table, which is safe only while no
        // kept section numbers them: relocations and groups name symbols by index.
        let mut invalid = false;
        plan.symbols(
            reader,
            section,
            |number, shndx| {
                invalid |= shndx >= shnum;
                let local = number < section.sh_info;
                for (removed, dropped) in [
                    (&plan.shipped_removed, &mut shipped_dropped[index]),
                    (&plan.debug_removed, &mut debug_dropped[index]),
                ] {
                    if removed.get(shndx as usize).copied().unwrap_or(true) {
                        dropped.symbols += 1;
                        dropped.locals += u64::from(local);
                    }
                }
                Some(shndx)
            },
            &mut io::sink(),
        )?;
        if invalid {
            return fallback("a symbol refers to a section that does not exist");
        }
        for (removed, dropped) in [
            (&plan.shipped_removed, shipped_dropped[index]),
            (&plan.debug_removed, debug_dropped[index]),
        ] {
            let numbered_by = |s: &Section| {
                matches!(s.sh_type, SHT_REL | SHT_RELA | SHT_GROUP) && s.sh_link == index as u64
            };
            let kept = |i: usize| !removed[i];
            if dropped.symbols > 0
                && kept(index)
                && plan
                    .tables
                    .sections
                    .iter()
                    .enumerate()
                    .any(|(i, s)| kept(i) && numbered_by(s))
            {
                return fallback(
                    "a symbol refers to a removed section and kept relocations or groups \
                     number the symbols",
                );
            }
        }
    }
    plan.shipped_dropped = shipped_dropped;
    plan.debug_dropped = debug_dropped;
    Ok(Planned::Stream(Box::new(plan)))
}

impl Plan {
    /// Copies the symbol table `section` from `reader` to `out`, each symbol's section index
    /// through `map`, given the symbol's number and its section index (indices below
    /// `SHN_LORESERVE` other than `SHN_UNDEF`; every other symbol is kept as it is): the new
    /// index, or `None` to leave the symbol out.
    fn symbols(
        &self,
        reader: &mut (impl Read + Seek),
        section: &Section,
        mut map: impl FnMut(u64, u64) -> Option<u64>,
        out: &mut dyn Write,
    ) -> Result<()> {
        let entry = if self.tables.is_64 { 24 } else { 16 };
        let at = if self.tables.is_64 { 6 } else { 14 };
        reader.seek(SeekFrom::Start(section.sh_offset))?;
        let mut buffer = vec![0u8; entry * 4096];
        let mut kept = Vec::with_capacity(buffer.len());
        let mut left = section.sh_size;
        let mut number = 0u64;
        while left > 0 {
            let len = buffer.len().min(left as usize);
            reader
                .read_exact(&mut buffer[..len])
                .context("cannot read the symbol table")?;
            kept.clear();
            for symbol in buffer[..len].chunks_exact_mut(entry) {
                let shndx = uint(symbol, at, 2);
                number += 1;
                if shndx != 0 && shndx < SHN_LORESERVE {
                    let Some(new) = map(number - 1, shndx) else {
                        continue;
                    };
                    put(symbol, at, 2, new);
                }
                kept.extend_from_slice(symbol);
            }
            out.write_all(&kept)?;
            left -= len as u64;
        }
        Ok(())
    }

    /// Section `index`'s size and `sh_info` in an output that leaves out `dropped` symbols.
    fn size_and_info(&self, index: usize, dropped: &[Dropped]) -> (u64, u64) {
        let section = &self.tables.sections[index];
        let dropped = dropped.get(index).copied().unwrap_or_default();
        let entry = if self.tables.is_64 { 24 } else { 16 };
        (
            section.sh_size - dropped.symbols * entry,
            section.sh_info.saturating_sub(dropped.locals),
        )
    }

    /// The new numbering for the sections `removed` leaves.
    fn renumbered(&self, removed: &[bool]) -> Vec<Option<u64>> {
        let mut next = 0;
        removed
            .iter()
            .map(|gone| {
                (!gone).then(|| {
                    next += 1;
                    next - 1
                })
            })
            .collect()
    }

    /// A name table for the kept sections, and each one's offset in it.
    fn name_table(&self, removed: &[bool], extra: Option<&[u8]>) -> (Vec<u8>, Vec<u64>, u64) {
        let mut names = vec![0u8];
        let mut offsets = Vec::new();
        let add = |name: &[u8], names: &mut Vec<u8>| {
            if name.is_empty() {
                return 0;
            }
            let at = names.len() as u64;
            names.extend_from_slice(name);
            names.push(0);
            at
        };
        for (index, section) in self.tables.sections.iter().enumerate() {
            offsets.push(if removed[index] {
                0
            } else {
                add(&section.name, &mut names)
            });
        }
        let extra = extra.map(|n| add(n, &mut names)).unwrap_or(0);
        (names, offsets, extra)
    }

    /// Writes the header of a kept `section` as an output places it — `(sh_name, sh_type,
    /// sh_offset, sh_size, sh_info)` — its section links renumbered by `numbers`.
    fn kept_header(
        &self,
        out: &mut dyn Write,
        section: &Section,
        numbers: &[Option<u64>],
        (name, sh_type, offset, size, info): (u64, u32, u64, u64, u64),
    ) -> io::Result<()> {
        let link = |target: u64| numbers.get(target as usize).copied().flatten().unwrap_or(0);
        let info = if section.info_is_index() {
            link(section.sh_info)
        } else {
            info
        };
        self.tables.write_section_header(
            out,
            [
                name,
                u64::from(sh_type),
                section.sh_flags,
                section.sh_addr,
                offset,
                size,
                link(section.sh_link),
                info,
                section.sh_addralign,
                section.sh_entsize,
            ],
        )
    }

    /// Writes the debug file to `out` and returns its CRC32.
    pub fn write_debug(&self, reader: &mut (impl Read + Seek), out: &mut dyn Write) -> Result<u32> {
        let mut out = Counting::new(out);
        let numbers = self.renumbered(&self.debug_removed);
        let (names, name_offsets, _) = self.name_table(&self.debug_removed, None);
        // Layout: the file header, the program headers as they are, then the kept contents.
        let phoff = self.tables.ehsize();
        let mut offset = phoff + self.tables.phdrs.len() as u64;
        let mut placed = vec![None; self.tables.sections.len()];
        for (index, section) in self.tables.sections.iter().enumerate() {
            if self.debug_removed[index] || index == 0 {
                continue;
            }
            if self.debug_contents[index] && index != self.tables.shstrndx && section.has_bytes() {
                offset = align(offset, section.sh_addralign);
                placed[index] = Some(offset);
                offset += self.size_and_info(index, &self.debug_dropped).0;
            }
        }
        let names_at = offset;
        offset += names.len() as u64;
        let shoff = align(offset, self.tables.word());
        let shnum = numbers.iter().flatten().count() as u64;
        let shstrndx = numbers[self.tables.shstrndx].unwrap_or(0);
        let header = self.tables.patched_header(phoff, shoff, shnum, shstrndx);
        out.write_all(&header)?;
        out.write_all(&self.tables.phdrs)?;
        for (index, section) in self.tables.sections.iter().enumerate() {
            let Some(at) = placed[index] else { continue };
            out.pad_to(at)?;
            if section.sh_type == SHT_SYMTAB {
                self.symbols(reader, section, |_, i| numbers[i as usize], &mut out)?;
            } else {
                copy(reader, section.sh_offset, section.sh_size, &mut out)?;
            }
        }
        out.pad_to(names_at)?;
        out.write_all(&names)?;
        out.pad_to(shoff)?;
        let end_of_contents = names_at + names.len() as u64;
        for (index, section) in self.tables.sections.iter().enumerate() {
            if self.debug_removed[index] {
                continue;
            }
            if index == 0 {
                self.tables.write_section_header(&mut out, [0; 10])?;
                continue;
            }
            let (size, info) = self.size_and_info(index, &self.debug_dropped);
            let (sh_type, sh_offset, sh_size) = if index == self.tables.shstrndx {
                (section.sh_type, names_at, names.len() as u64)
            } else if let Some(at) = placed[index] {
                (section.sh_type, at, size)
            } else {
                (SHT_NOBITS, end_of_contents, section.sh_size)
            };
            let fields = (name_offsets[index], sh_type, sh_offset, sh_size, info);
            self.kept_header(&mut out, section, &numbers, fields)?;
        }
        Ok(out.crc.finalize())
    }

    /// Writes the shipped file to `out`: the loaded image as it is, the kept non-allocated
    /// sections, `debuglink` as the new `.gnu_debuglink`, a new name table and new headers.
    pub fn write_shipped(
        &self,
        reader: &mut (impl Read + Seek),
        debuglink: &[u8],
        out: &mut dyn Write,
    ) -> Result<()> {
        let mut out = Counting::new(out);
        let numbers = self.renumbered(&self.shipped_removed);
        let (names, name_offsets, link_name) =
            self.name_table(&self.shipped_removed, Some(b".gnu_debuglink"));
        let mut offset = self.prefix;
        let mut placed = vec![None; self.tables.sections.len()];
        for (index, section) in self.tables.sections.iter().enumerate() {
            if self.shipped_removed[index] || index == 0 || index == self.tables.shstrndx {
                continue;
            }
            if section.is_alloc() {
                placed[index] = Some(section.sh_offset);
            } else if section.has_bytes() {
                offset = align(offset, section.sh_addralign);
                placed[index] = Some(offset);
                offset += self.size_and_info(index, &self.shipped_dropped).0;
            } else {
                placed[index] = Some(offset);
            }
        }
        let link_at = align(offset, 4);
        let names_at = link_at + debuglink.len() as u64;
        let shoff = align(names_at + names.len() as u64, self.tables.word());
        let kept = numbers.iter().flatten().count() as u64;
        let shstrndx = numbers[self.tables.shstrndx].unwrap_or(0);
        let header = self
            .tables
            .patched_header(self.tables.phoff, shoff, kept + 1, shstrndx);
        out.write_all(&header)?;
        copy(
            reader,
            self.tables.ehsize(),
            self.prefix - self.tables.ehsize(),
            &mut out,
        )?;
        for (index, section) in self.tables.sections.iter().enumerate() {
            let Some(at) = placed[index] else { continue };
            if section.is_alloc() || !section.has_bytes() {
                continue;
            }
            out.pad_to(at)?;
            if section.sh_type == SHT_SYMTAB {
                self.symbols(reader, section, |_, i| numbers[i as usize], &mut out)?;
            } else {
                copy(reader, section.sh_offset, section.sh_size, &mut out)?;
            }
        }
        out.pad_to(link_at)?;
        out.write_all(debuglink)?;
        out.write_all(&names)?;
        out.pad_to(shoff)?;
        for (index, section) in self.tables.sections.iter().enumerate() {
            if self.shipped_removed[index] {
                continue;
            }
            if index == 0 {
                self.tables.write_section_header(&mut out, [0; 10])?;
                continue;
            }
            let (size, info) = self.size_and_info(index, &self.shipped_dropped);
            let (sh_offset, sh_size) = if index == self.tables.shstrndx {
                (names_at, names.len() as u64)
            } else {
                (placed[index].unwrap_or(section.sh_offset), size)
            };
            let fields = (
                name_offsets[index],
                section.sh_type,
                sh_offset,
                sh_size,
                info,
            );
            self.kept_header(&mut out, section, &numbers, fields)?;
        }
        self.tables.write_section_header(
            &mut out,
            [
                link_name,
                u64::from(SHT_PROGBITS),
                0,
                0,
                link_at,
                debuglink.len() as u64,
                0,
                0,
                4,
                0,
            ],
        )?;
        Ok(())
    }
}

/// What [`split`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Streamed {
    /// Nothing to remove: nothing was written, the input ships as it is.
    Unchanged,
    /// Both files were written; the debug file's CRC32.
    Split {
        /// The CRC32 of the debug file, as `.gnu_debuglink` carries it.
        crc: u32,
    },
    /// Nothing was written: the file must take the in-memory path, for this reason.
    Fallback(String),
}

/// Splits the ELF file in `reader` as [`super::strip::split_debug`] does, writing the debug
/// file to `debug` first, then the shipped file (its `.gnu_debuglink` naming
/// `debug_file_name`) to `shipped`. Writes nothing unless the plan is proven.
pub fn split(
    reader: &mut (impl Read + Seek),
    mode: StripMode,
    debug_file_name: &str,
    debug: &mut dyn Write,
    shipped: &mut dyn Write,
) -> Result<Streamed> {
    let plan = match plan(reader, mode)? {
        Planned::Unchanged => return Ok(Streamed::Unchanged),
        Planned::Fallback(why) => return Ok(Streamed::Fallback(why)),
        Planned::Stream(plan) => plan,
    };
    let crc = plan.write_debug(reader, debug)?;
    let link = super::strip::gnu_debuglink(debug_file_name, crc, object::Endianness::Little);
    plan.write_shipped(reader, &link, shipped)?;
    Ok(Streamed::Split { crc })
}

/// Copies `len` bytes at `offset` of `reader` to `out`.
fn copy(reader: &mut (impl Read + Seek), offset: u64, len: u64, out: &mut dyn Write) -> Result<()> {
    reader.seek(SeekFrom::Start(offset))?;
    let copied = io::copy(&mut reader.by_ref().take(len), out)?;
    if copied != len {
        return Err(anyhow::anyhow!(
            "the binary is shorter than its headers say"
        ));
    }
    Ok(())
}

/// A writer that knows its position (to pad to the next placed offset) and the CRC32 of what
/// it wrote.
struct Counting<'w> {
    inner: &'w mut dyn Write,
    position: u64,
    crc: crc32fast::Hasher,
}

impl<'w> Counting<'w> {
    fn new(inner: &'w mut dyn Write) -> Self {
        Counting {
            inner,
            position: 0,
            crc: crc32fast::Hasher::new(),
        }
    }

    fn pad_to(&mut self, offset: u64) -> io::Result<()> {
        debug_assert!(offset >= self.position);
        let zeros = [0u8; 4096];
        while self.position < offset {
            let n = (offset - self.position).min(zeros.len() as u64) as usize;
            self.write_all(&zeros[..n])?;
        }
        Ok(())
    }
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.position += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::path::{Path, PathBuf};

    use object::{Object, ObjectSection, ObjectSegment, ObjectSymbol};

    use super::*;
    use crate::elf::strip::split_debug;

    /// The test binary itself (a PIE with symbols and, in dev builds, DWARF), then any cross
    /// binary the target directory holds, then the files `AIRLOCK_TEST_ELF_FILES` names
    /// (`:`-separated), to check others by hand.
    fn binaries() -> Vec<PathBuf> {
        let own = std::env::current_exe().unwrap();
        let mut found = vec![own.clone()];
        // target/<profile>/deps/<test> → target
        if let Some(target) = own.ancestors().nth(3) {
            for triple in [
                "aarch64-unknown-linux-musl",
                "powerpc64le-unknown-linux-musl",
            ] {
                for profile in ["debug", "release"] {
                    let path = target.join(triple).join(profile).join("cargo-airlock");
                    if path.is_file() {
                        found.push(path);
                    }
                }
            }
        }
        if let Ok(list) = std::env::var("AIRLOCK_TEST_ELF_FILES") {
            found.extend(list.split(':').filter(|p| !p.is_empty()).map(PathBuf::from));
        }
        found
    }

    /// Each section's name, kind, flags, address, size and contents; not the size and
    /// contents of the tables `object`'s builder lays out its own way (names, symbols and
    /// their strings, the dynamic tables it rebuilds with a merged `.dynstr`; the streamed
    /// file keeps the loaded ones byte for byte, checked by [`segments`]), nor the
    /// debuglink's (checked apart).
    fn sections(data: &[u8]) -> Vec<String> {
        let file = object::File::parse(data).unwrap();
        file.sections()
            .map(|s| {
                let name = s.name().unwrap();
                let laid_out_freely = matches!(
                    name,
                    ".shstrtab"
                        | ".symtab"
                        | ".strtab"
                        | ".gnu_debuglink"
                        | ".dynsym"
                        | ".dynstr"
                        | ".dynamic"
                        | ".hash"
                        | ".gnu.hash"
                        | ".gnu.version"
                        | ".gnu.version_r"
                        | ".gnu.version_d"
                );
                let contents = if laid_out_freely || s.file_range().is_none() {
                    String::new()
                } else {
                    format!("{} {:x}", s.size(), crc32fast::hash(s.data().unwrap()))
                };
                format!(
                    "{name} {:?} {:?} {:#x} {contents}",
                    s.kind(),
                    s.flags(),
                    s.address(),
                )
            })
            .collect()
    }

    /// Each symbol, static then dynamic: name, address, size, kind and its section's name.
    fn symbols(data: &[u8]) -> Vec<String> {
        let file = object::File::parse(data).unwrap();
        file.symbols()
            .chain(file.dynamic_symbols())
            .map(|s| {
                let section = s
                    .section_index()
                    .map(|i| file.section_by_index(i).unwrap().name().unwrap().to_owned());
                format!(
                    "{} {:#x} {} {:?} {section:?}",
                    s.name().unwrap(),
                    s.address(),
                    s.size(),
                    s.kind()
                )
            })
            .collect()
    }

    /// Each segment's address, size and bytes, the ELF header's section table fields
    /// (`e_shoff`, `e_shnum`, `e_shstrndx`, which locate the new headers) aside.
    fn segments(data: &[u8]) -> Vec<(u64, u64, u32)> {
        let file = object::File::parse(data).unwrap();
        let is_64 = file.is_64();
        file.segments()
            .map(|s| {
                let mut bytes = s.data().unwrap().to_vec();
                if s.file_range().0 == 0 {
                    let (shoff, width, counts) = if is_64 { (40, 8, 60) } else { (32, 4, 48) };
                    bytes[shoff..shoff + width].fill(0);
                    bytes[counts..counts + 4].fill(0);
                }
                (s.address(), s.size(), crc32fast::hash(&bytes))
            })
            .collect()
    }

    fn streamed(data: &[u8], mode: StripMode) -> (Streamed, Vec<u8>, Vec<u8>) {
        let (mut debug, mut shipped) = (Vec::new(), Vec::new());
        let outcome = split(
            &mut Cursor::new(data),
            mode,
            "app.debug",
            &mut debug,
            &mut shipped,
        )
        .unwrap();
        (outcome, debug, shipped)
    }

    /// Checks that `data` streams, and that the streamed split is the in-memory one section by
    /// section and symbol by symbol; `None` when the file has nothing to strip or falls back
    /// (with the reason) and `may_fall_back`.
    fn assert_streams_as_in_memory(
        data: &[u8],
        mode: StripMode,
        may_fall_back: bool,
        context: &str,
    ) -> Option<(Vec<u8>, Vec<u8>)> {
        let expected = split_debug(data.to_vec(), mode, "app.debug").unwrap();
        let (outcome, debug, shipped) = streamed(data, mode);
        let Some(expected_debug) = expected.debug else {
            assert_eq!(outcome, Streamed::Unchanged, "{context}");
            return None;
        };
        let crc = match outcome {
            Streamed::Split { crc } => crc,
            Streamed::Fallback(ref why) if may_fall_back => {
                eprintln!("{context}: falls back: {why}");
                assert!(debug.is_empty() && shipped.is_empty(), "{context}");
                return None;
            }
            other => panic!("{context}: {other:?}"),
        };
        eprintln!("{context}: streamed");
        assert_eq!(crc, crc32fast::hash(&debug), "{context}");
        assert_eq!(sections(&shipped), sections(&expected.shipped), "{context}");
        assert_eq!(symbols(&shipped), symbols(&expected.shipped), "{context}");
        assert_eq!(segments(&shipped), segments(data), "{context}");
        assert_eq!(sections(&debug), sections(&expected_debug), "{context}");
        assert_eq!(symbols(&debug), symbols(&expected_debug), "{context}");
        // The debuglink names the debug file and carries the CRC of the one written.
        let file = object::File::parse(shipped.as_slice()).unwrap();
        let (name, link_crc) = file.gnu_debuglink().unwrap().unwrap();
        assert_eq!(
            (name, link_crc),
            (b"app.debug".as_slice(), crc),
            "{context}"
        );
        // Both parse as airlock reads binaries, and the build-id is the input's.
        let info = crate::elf::parse_elf(Path::new(context), &shipped).unwrap();
        assert!(!info.debug_info, "{context}");
        assert_eq!(info.stripped, mode == StripMode::Symbols, "{context}");
        let id = crate::elf::strip::build_id(data).unwrap();
        assert_eq!(crate::elf::strip::build_id(&shipped).unwrap(), id);
        assert_eq!(crate::elf::strip::build_id(&debug).unwrap(), id);
        // Reproducible.
        assert_eq!(
            streamed(data, mode),
            (outcome.clone(), debug.clone(), shipped.clone())
        );
        Some((debug, shipped))
    }

    #[test]
    fn the_streamed_split_is_the_in_memory_one_section_by_section() {
        for path in binaries() {
            let data = std::fs::read(&path).unwrap();
            for mode in [StripMode::Debuginfo, StripMode::Symbols] {
                let context = format!("{} in {mode} mode", path.display());
                // Others may need what the plan does not do: they take the in-memory path.
                // The test binary itself must stream.
                assert_streams_as_in_memory(&data, mode, path != binaries()[0], &context);
            }
        }
    }

    /// Symbol `number` of `data`'s `.symtab` (a 64-bit little-endian file): where its entry
    /// lies.
    fn symbol_at(data: &[u8], number: usize) -> usize {
        let (symtab, _) = header_of(data, ".symtab");
        uint(data, symtab + 24, 8) as usize + 24 * number
    }

    #[test]
    fn symbols_in_removed_sections_are_left_out_as_in_memory() {
        // AArch64 linkers leave `$d` mapping symbols (local) in debug sections; a global
        // there is odd but just as orphaned. The in-memory path (`object`) drops both.
        let data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let (symtab, _) = header_of(&data, ".symtab");
        let (_, debug_info) = header_of(&data, ".debug_info");
        let (_, debug_line) = header_of(&data, ".debug_line");
        let locals = uint(&data, symtab + 44, 4) as usize;
        let count = uint(&data, symtab + 32, 8) as usize / 24;
        assert!(locals > 3 && count > locals + 3, "{locals} of {count}");
        let mut crafted = data.clone();
        put(&mut crafted, symbol_at(&data, 1) + 6, 2, debug_info as u64);
        put(
            &mut crafted,
            symbol_at(&data, locals - 1) + 6,
            2,
            debug_line as u64,
        );
        put(
            &mut crafted,
            symbol_at(&data, count - 1) + 6,
            2,
            debug_info as u64,
        );
        for mode in [StripMode::Debuginfo, StripMode::Symbols] {
            let (debug, shipped) =
                assert_streams_as_in_memory(&crafted, mode, false, &format!("{mode} mode"))
                    .unwrap();
            // The debug file keeps the debug sections, so every symbol; the shipped file in
            // debuginfo mode keeps the table without the three, its locals counted anew.
            let table = |file: &[u8]| {
                let (at, _) = header_of(file, ".symtab");
                (uint(file, at + 32, 8) / 24, uint(file, at + 44, 4))
            };
            assert_eq!(table(&debug), (count as u64, locals as u64));
            if mode == StripMode::Debuginfo {
                assert_eq!(table(&shipped), (count as u64 - 3, locals as u64 - 2));
            }
        }
    }

    /// A reader that records the longest single read it was asked for.
    struct Watched<'a> {
        inner: Cursor<&'a [u8]>,
        longest: usize,
        total: u64,
    }

    impl Read for Watched<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.longest = self.longest.max(n);
            self.total += n as u64;
            Ok(n)
        }
    }

    impl Seek for Watched<'_> {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.inner.seek(to)
        }
    }

    #[test]
    fn the_plan_reads_only_headers_and_symbols_and_writing_holds_no_section_whole() {
        let data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let file = object::File::parse(data.as_slice()).unwrap();
        let debug_info = file.section_by_name(".debug_info").unwrap().size();
        let symtab = file.section_by_name(".symtab").unwrap().size();
        let mut reader = Watched {
            inner: Cursor::new(&data),
            longest: 0,
            total: 0,
        };
        let Planned::Stream(plan) = plan(&mut reader, StripMode::Debuginfo).unwrap() else {
            panic!("the test binary streams");
        };
        // Header tables and names are a few KiB; the symbol table is read once, to prove
        // no symbol points at a removed section.
        assert!(
            reader.total < symtab + (1 << 20),
            "{} bytes read",
            reader.total
        );
        plan.write_debug(&mut reader, &mut io::sink()).unwrap();
        plan.write_shipped(&mut reader, b"x.debug\0", &mut io::sink())
            .unwrap();
        assert!(debug_info > 1 << 20, "{debug_info}");
        assert!(
            reader.longest <= 1 << 17,
            "a read of {} bytes",
            reader.longest
        );
    }

    /// Where section `name`'s header lies in `data` (a 64-bit little-endian file), and its
    /// index.
    fn header_of(data: &[u8], name: &str) -> (usize, usize) {
        let file = object::File::parse(data).unwrap();
        let index = file.section_by_name(name).unwrap().index().0;
        let shoff = uint(data, 40, 8) as usize;
        (shoff + index * 64, index)
    }

    #[test]
    fn what_the_plan_cannot_prove_falls_back_and_writes_nothing() {
        let data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let (_, debug_info) = header_of(&data, ".debug_info");
        // A kept section linked to a removed one.
        let mut linked = data.clone();
        let (comment, _) = header_of(&linked, ".comment");
        put(&mut linked, comment + 40, 4, debug_info as u64);
        // A symbol defined in a removed section, while a kept section (made a relocation
        // section here) numbers the symbols.
        let mut symbol = data.clone();
        let (_, symtab) = header_of(&symbol, ".symtab");
        put(&mut symbol, symbol_at(&data, 1) + 6, 2, debug_info as u64);
        put(&mut symbol, comment + 4, 4, u64::from(SHT_RELA));
        put(&mut symbol, comment + 40, 4, symtab as u64);
        // Extended symbol indices.
        let mut extended = data.clone();
        put(&mut extended, comment + 4, 4, u64::from(SHT_SYMTAB_SHNDX));
        for (crafted, why) in [
            (linked, "a kept section links to a removed one"),
            (
                symbol,
                "a symbol refers to a removed section and kept relocations or groups number the \
                 symbols",
            ),
            (
                extended,
                "extended symbol section indices (SHT_SYMTAB_SHNDX)",
            ),
        ] {
            let (outcome, debug, shipped) = streamed(&crafted, StripMode::Debuginfo);
            assert_eq!(outcome, Streamed::Fallback(why.to_owned()));
            assert!(debug.is_empty() && shipped.is_empty(), "{why}");
        }
        // The untouched file streams.
        assert!(matches!(
            streamed(&data, StripMode::Debuginfo).0,
            Streamed::Split { .. }
        ));
    }

    #[test]
    fn nothing_to_remove_writes_nothing() {
        let stripped = crate::elf::strip::strip_in_process(
            &std::fs::read(std::env::current_exe().unwrap()).unwrap(),
        )
        .unwrap();
        for mode in [StripMode::None, StripMode::Debuginfo, StripMode::Symbols] {
            assert_eq!(
                streamed(&stripped, mode),
                (Streamed::Unchanged, Vec::new(), Vec::new())
            );
        }
    }
}
