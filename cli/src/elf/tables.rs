//! The header tables of a little-endian ELF file, read with seeks and checked as the streaming
//! rewriters need them ([`super::stream_strip`], [`super::append`]): the file header, the
//! program headers as raw bytes, every section header with every field and its name, and the
//! section name table. Files they cannot be sure of (big-endian, unusual header sizes,
//! extended section numbering, tables or sections outside the file) are an
//! [`Unsupported`] reason, for the in-memory path ([`super::rewrite`]), never an error.
//! [`super::headers`] reads the same tables from a stream (no seeks) for what a binary is.
//!
//! Reads only the tables, bounded by [`MAX_HEADER_BYTES`]; never writes.

use std::io::{self, Read, Seek, SeekFrom, Write};

use anyhow::{Context, Result};

use super::headers::MAX_HEADER_BYTES;
use super::headers::gabi::{
    SHF_ALLOC, SHF_INFO_LINK, SHN_LORESERVE, SHT_NOBITS, SHT_REL, SHT_RELA, SHT_STRTAB,
};

/// Why a file is not one the streaming rewriters handle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported(pub String);

/// One section header, every field, and its name.
#[derive(Debug, Clone)]
pub struct Section {
    /// The name, from the section name table.
    pub name: Vec<u8>,
    /// `sh_name`: where the name lies in the name table.
    pub sh_name: u64,
    pub sh_type: u32,
    pub sh_flags: u64,
    pub sh_addr: u64,
    pub sh_offset: u64,
    pub sh_size: u64,
    pub sh_link: u64,
    pub sh_info: u64,
    pub sh_addralign: u64,
    pub sh_entsize: u64,
}

impl Section {
    pub fn is_alloc(&self) -> bool {
        self.sh_flags & SHF_ALLOC != 0
    }

    pub fn has_bytes(&self) -> bool {
        self.sh_type != SHT_NOBITS && self.sh_size > 0
    }

    /// Whether `sh_info` is a section index (gABI, "sh_link and sh_info Interpretation").
    pub fn info_is_index(&self) -> bool {
        matches!(self.sh_type, SHT_REL | SHT_RELA) || self.sh_flags & SHF_INFO_LINK != 0
    }
}

/// The tables of one file.
#[derive(Debug)]
pub struct Tables {
    pub is_64: bool,
    /// The file's size.
    pub size: u64,
    /// The file header's bytes (`e_ehsize` of them).
    pub header: Vec<u8>,
    pub phoff: u64,
    /// The program headers as they are.
    pub phdrs: Vec<u8>,
    pub shoff: u64,
    pub sections: Vec<Section>,
    pub shstrndx: usize,
    /// The section name table's contents.
    pub names: Vec<u8>,
}

impl Tables {
    /// The size of the file header.
    pub fn ehsize(&self) -> u64 {
        self.header.len() as u64
    }

    /// The address size: 8 or 4.
    pub fn word(&self) -> u64 {
        if self.is_64 { 8 } else { 4 }
    }

    /// The size of one section header.
    pub fn shentsize(&self) -> u64 {
        if self.is_64 { 64 } else { 40 }
    }

    /// Whether `len` bytes at `offset` lie inside the file.
    pub fn inside(&self, offset: u64, len: u64) -> bool {
        offset.checked_add(len).is_some_and(|end| end <= self.size)
    }

    /// Each program header's file offset and size.
    pub fn segments(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let entry = if self.is_64 { 56 } else { 32 };
        self.phdrs.chunks_exact(entry).map(|p| {
            if self.is_64 {
                (uint(p, 8, 8), uint(p, 32, 8))
            } else {
                (uint(p, 4, 4), uint(p, 16, 4))
            }
        })
    }

    /// Writes one section header holding `values` (the fields in [`Section`]'s order, the
    /// name's offset first).
    pub fn write_section_header(&self, out: &mut dyn Write, values: [u64; 10]) -> io::Result<()> {
        let mut entry = vec![0u8; self.shentsize() as usize];
        for (value, (at, len)) in values.iter().zip(section_fields(self.is_64)) {
            put(&mut entry, at, len, *value);
        }
        out.write_all(&entry)
    }

    /// `section`'s header fields as they are, to write with [`Tables::write_section_header`].
    pub fn fields_of(section: &Section) -> [u64; 10] {
        [
            section.sh_name,
            u64::from(section.sh_type),
            section.sh_flags,
            section.sh_addr,
            section.sh_offset,
            section.sh_size,
            section.sh_link,
            section.sh_info,
            section.sh_addralign,
            section.sh_entsize,
        ]
    }

    /// The file header with `e_phoff`, `e_shoff`, `e_shnum` and `e_shstrndx` set.
    pub fn patched_header(&self, phoff: u64, shoff: u64, shnum: u64, shstrndx: u64) -> Vec<u8> {
        let mut header = self.header.clone();
        let (phoff_at, shoff_at, width, base) = if self.is_64 {
            (32, 40, 8, 52)
        } else {
            (28, 32, 4, 40)
        };
        put(&mut header, phoff_at, width, phoff);
        put(&mut header, shoff_at, width, shoff);
        put(&mut header, base + 8, 2, shnum);
        put(&mut header, base + 10, 2, shstrndx);
        header
    }
}

/// A little-endian unsigned field of `len` bytes at `at` (0 past the end).
pub fn uint(bytes: &[u8], at: usize, len: usize) -> u64 {
    bytes
        .get(at..at + len)
        .map(|raw| {
            raw.iter()
                .rev()
                .fold(0u64, |value, byte| (value << 8) | u64::from(*byte))
        })
        .unwrap_or(0)
}

/// Writes `value` as a little-endian field of `len` bytes at `at`.
pub fn put(bytes: &mut [u8], at: usize, len: usize, value: u64) {
    for (i, byte) in bytes[at..at + len].iter_mut().enumerate() {
        *byte = (value >> (8 * i)) as u8;
    }
}

/// `offset` rounded up to `alignment` (0 and 1 mean none).
pub fn align(offset: u64, alignment: u64) -> u64 {
    match alignment {
        0 | 1 => offset,
        a => offset.div_ceil(a) * a,
    }
}

/// Reads `len` bytes at `offset`, refusing more than [`MAX_HEADER_BYTES`].
pub fn read_at(reader: &mut (impl Read + Seek), offset: u64, len: u64) -> io::Result<Vec<u8>> {
    if len > MAX_HEADER_BYTES {
        return Err(io::Error::other("a header table is too large"));
    }
    reader.seek(SeekFrom::Start(offset))?;
    let mut bytes = vec![0u8; len as usize];
    reader.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Field offsets of a section header: (name, type, flags, addr, offset, size, link, info,
/// addralign, entsize), each with its width (gABI, "Sections").
fn section_fields(is_64: bool) -> [(usize, usize); 10] {
    if is_64 {
        [
            (0, 4),
            (4, 4),
            (8, 8),
            (16, 8),
            (24, 8),
            (32, 8),
            (40, 4),
            (44, 4),
            (48, 8),
            (56, 8),
        ]
    } else {
        [
            (0, 4),
            (4, 4),
            (8, 4),
            (12, 4),
            (16, 4),
            (20, 4),
            (24, 4),
            (28, 4),
            (32, 4),
            (36, 4),
        ]
    }
}

/// Reads and checks the tables of the ELF file in `reader`; `Ok(Err(_))` says why it is not a
/// file the streaming rewriters handle. Errors only when the reader fails.
pub fn read(reader: &mut (impl Read + Seek)) -> Result<std::result::Result<Tables, Unsupported>> {
    let unsupported = |why: &str| Ok(Err(Unsupported(why.to_owned())));
    let size = reader
        .seek(SeekFrom::End(0))
        .context("cannot read the binary")?;
    let header = read_at(reader, 0, size.min(64)).context("cannot read the binary")?;
    if header.len() < 52 || !header.starts_with(b"\x7fELF") {
        return unsupported("not an ELF file");
    }
    let is_64 = match header[4] {
        2 => true,
        1 => false,
        _ => return unsupported("unknown ELF class"),
    };
    if header[5] != 1 {
        return unsupported(
            "a big-endian ELF file (the streaming rewriters are tested on little-endian)",
        );
    }
    if is_64 && header.len() < 64 {
        return unsupported("truncated ELF header");
    }
    // gABI, "ELF Header": the offsets of each field in the two classes.
    let (phoff, shoff) = if is_64 {
        (uint(&header, 32, 8), uint(&header, 40, 8))
    } else {
        (uint(&header, 28, 4), uint(&header, 32, 4))
    };
    let base = if is_64 { 52 } else { 40 };
    let ehsize = uint(&header, base, 2);
    let phentsize = uint(&header, base + 2, 2);
    let phnum = uint(&header, base + 4, 2);
    let shentsize = uint(&header, base + 6, 2);
    let shnum = uint(&header, base + 8, 2);
    let shstrndx = uint(&header, base + 10, 2);
    let (want_eh, want_ph, want_sh) = if is_64 { (64, 56, 64) } else { (52, 32, 40) };
    if ehsize != want_eh || shentsize != want_sh || (phnum > 0 && phentsize != want_ph) {
        return unsupported("unusual ELF header sizes");
    }
    if shnum == 0 || shstrndx == 0 || shstrndx >= SHN_LORESERVE || shstrndx >= shnum {
        return unsupported("extended section numbering or no section name table");
    }
    let inside = |offset: u64, len: u64| offset.checked_add(len).is_some_and(|end| end <= size);
    if !inside(phoff, phnum * phentsize) || !inside(shoff, shnum * shentsize) {
        return unsupported("a header table lies outside the file");
    }
    let phdrs = read_at(reader, phoff, phnum * phentsize).context("cannot read the binary")?;
    let table = read_at(reader, shoff, shnum * shentsize).context("cannot read the binary")?;
    let fields = section_fields(is_64);
    let mut sections: Vec<Section> = table
        .chunks_exact(shentsize as usize)
        .map(|entry| {
            let f = |i: usize| uint(entry, fields[i].0, fields[i].1);
            Section {
                name: Vec::new(),
                sh_name: f(0),
                sh_type: f(1) as u32,
                sh_flags: f(2),
                sh_addr: f(3),
                sh_offset: f(4),
                sh_size: f(5),
                sh_link: f(6),
                sh_info: f(7),
                sh_addralign: f(8),
                sh_entsize: f(9),
            }
        })
        .collect();
    let shstrndx = shstrndx as usize;
    let names = &sections[shstrndx];
    if names.sh_type != SHT_STRTAB || !inside(names.sh_offset, names.sh_size) {
        return unsupported("an unusual section name table");
    }
    let names =
        read_at(reader, names.sh_offset, names.sh_size).context("cannot read the binary")?;
    for section in &mut sections {
        let Some(tail) = names.get(section.sh_name as usize..) else {
            return unsupported("a section name lies outside the name table");
        };
        section.name = tail.split(|b| *b == 0).next().unwrap_or_default().to_vec();
        if section.has_bytes() && !inside(section.sh_offset, section.sh_size) {
            return unsupported("a section lies outside the file");
        }
    }
    let header = header[..ehsize as usize].to_vec();
    Ok(Ok(Tables {
        is_64,
        size,
        header,
        phoff,
        phdrs,
        shoff,
        sections,
        shstrndx,
        names,
    }))
}
