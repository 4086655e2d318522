//! An ELF file's headers read from a stream, without holding the file: the file header, the
//! program headers, the section headers, the section name table and the dynamic section, in
//! as few sequential passes as their order in the file needs (usually two: the section name
//! table tends to lie before the section headers that locate it). From them: linkage,
//! machine, whether a symbol table is there, the GNU build-id (from the notes, read with the
//! tables), and the size `strip --strip-all` leaves, as [`super::strip::strip_in_process`] lays
//! the stripped file out.
//!
//! Never reads a section's contents other than those tables and the notes, and never more than
//! [`MAX_HEADER_BYTES`] in all: a 500 MB binary costs a few kilobytes of memory.

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{Context, Result, anyhow};

use super::Linkage;
use crate::error;
use crate::input::{self, Links};
use crate::target::Arch;

/// The gABI values the streamed readers use ("ELF Header", "Sections", "Program Header",
/// "Dynamic Section"), as the plain integers the headers hold; [`super::stream_strip`] reads
/// them from here too.
pub(super) mod gabi {
    pub const EI_CLASS: usize = 4;
    pub const EI_DATA: usize = 5;
    pub const ELFCLASS32: u8 = 1;
    pub const ELFCLASS64: u8 = 2;
    pub const ELFDATA2LSB: u8 = 1;
    pub const ELFDATA2MSB: u8 = 2;
    pub const ET_DYN: u16 = 3;
    pub const PT_DYNAMIC: u32 = 2;
    pub const PT_INTERP: u32 = 3;
    pub const PT_NOTE: u32 = 4;
    pub const SHT_PROGBITS: u32 = 1;
    pub const SHT_SYMTAB: u32 = 2;
    pub const SHT_STRTAB: u32 = 3;
    pub const SHT_RELA: u32 = 4;
    pub const SHT_NOTE: u32 = 7;
    pub const SHT_NOBITS: u32 = 8;
    pub const SHT_REL: u32 = 9;
    pub const SHT_GROUP: u32 = 17;
    pub const SHT_SYMTAB_SHNDX: u32 = 18;
    pub const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
    pub const SHF_ALLOC: u64 = 2;
    /// "Sections": `sh_info` holds a section index.
    pub const SHF_INFO_LINK: u64 = 0x40;
    pub const SHN_LORESERVE: u64 = 0xff00;
    pub const DT_NULL: u64 = 0;
    pub const DT_NEEDED: u64 = 1;
    pub const DT_RPATH: u64 = 15;
    pub const DT_RUNPATH: u64 = 29;
    pub const NT_GNU_BUILD_ID: u64 = 3;
}
use gabi as elf;

/// The most header bytes one file may make the reader keep (65,535 section headers of 64
/// bytes are 4 MiB).
pub const MAX_HEADER_BYTES: u64 = 16 << 20;

/// The most passes over a file: the tables can only point at one another so many times.
const MAX_PASSES: usize = 4;

/// Byte ranges of one file, by offset.
#[derive(Debug, Default)]
pub struct Ranges {
    read: BTreeMap<u64, Vec<u8>>,
    size: u64,
}

impl Ranges {
    fn get(&self, offset: u64, len: u64) -> Option<&[u8]> {
        let (start, bytes) = self.read.range(..=offset).next_back()?;
        let from = usize::try_from(offset - start).ok()?;
        let to = from.checked_add(usize::try_from(len).ok()?)?;
        bytes.get(from..to)
    }

    fn total(&self) -> u64 {
        self.read.values().map(|b| b.len() as u64).sum()
    }
}

/// An ELF file header's fields that matter here.
#[derive(Debug, Clone, Copy)]
struct FileHeader {
    is_64: bool,
    little: bool,
    e_type: u16,
    e_machine: u16,
    e_phoff: u64,
    e_phentsize: u64,
    e_phnum: u64,
    e_shoff: u64,
    e_shentsize: u64,
    e_shnum: u64,
    e_shstrndx: u64,
}

/// A program header's fields that matter here.
#[derive(Debug, Clone, Copy)]
struct ProgramHeader {
    p_type: u32,
    p_offset: u64,
    p_filesz: u64,
    p_align: u64,
}

/// A section header's fields that matter here.
#[derive(Debug, Clone, Copy)]
struct SectionHeader {
    sh_name: u64,
    sh_type: u32,
    sh_flags: u64,
    sh_offset: u64,
    sh_size: u64,
    sh_link: u64,
    sh_addralign: u64,
}

/// Reads fixed-size fields of either byte order.
struct Fields<'a> {
    bytes: &'a [u8],
    little: bool,
}

impl Fields<'_> {
    fn uint(&self, at: usize, len: usize) -> u64 {
        let Some(raw) = self.bytes.get(at..at + len) else {
            return 0;
        };
        let mut value = 0u64;
        for i in 0..len {
            let byte = if self.little {
                raw[len - 1 - i]
            } else {
                raw[i]
            };
            value = (value << 8) | u64::from(byte);
        }
        value
    }
    fn u16(&self, at: usize) -> u64 {
        self.uint(at, 2)
    }
    fn u32(&self, at: usize) -> u64 {
        self.uint(at, 4)
    }
    /// A 64-bit field in ELF64, a 32-bit one in ELF32.
    fn word(&self, is_64: bool, at64: usize, at32: usize) -> u64 {
        if is_64 {
            self.uint(at64, 8)
        } else {
            self.uint(at32, 4)
        }
    }
}

const IDENT_AND_HEADER_64: u64 = 64;

fn file_header(ranges: &Ranges) -> Result<Option<FileHeader>> {
    let Some(bytes) = ranges.get(0, IDENT_AND_HEADER_64.min(ranges.size)) else {
        return Ok(None);
    };
    if bytes.len() < 52 || !bytes.starts_with(b"\x7fELF") {
        return Err(anyhow!("not an ELF file"));
    }
    let is_64 = match bytes[elf::EI_CLASS] {
        elf::ELFCLASS64 => true,
        elf::ELFCLASS32 => false,
        other => return Err(anyhow!("unknown ELF class {other}")),
    };
    let little = match bytes[elf::EI_DATA] {
        elf::ELFDATA2LSB => true,
        elf::ELFDATA2MSB => false,
        other => return Err(anyhow!("unknown ELF byte order {other}")),
    };
    if is_64 && bytes.len() < 64 {
        return Err(anyhow!("the ELF header is truncated"));
    }
    let f = Fields { bytes, little };
    // gABI, "ELF Header": the offsets of each field in the two classes.
    let (phentsize, phnum, shentsize, shnum, shstrndx) = if is_64 {
        (54, 56, 58, 60, 62)
    } else {
        (42, 44, 46, 48, 50)
    };
    Ok(Some(FileHeader {
        is_64,
        little,
        e_type: f.u16(16) as u16,
        e_machine: f.u16(18) as u16,
        e_phoff: f.word(is_64, 32, 28),
        e_phentsize: f.u16(phentsize),
        e_phnum: f.u16(phnum),
        e_shoff: f.word(is_64, 40, 32),
        e_shentsize: f.u16(shentsize),
        e_shnum: f.u16(shnum),
        e_shstrndx: f.u16(shstrndx),
    }))
}

fn program_headers(header: &FileHeader, ranges: &Ranges) -> Option<Vec<ProgramHeader>> {
    let table = ranges.get(header.e_phoff, header.e_phnum * header.e_phentsize)?;
    let entry = usize::try_from(header.e_phentsize).ok()?;
    Some(
        table
            .chunks_exact(entry.max(1))
            .map(|bytes| {
                let f = Fields {
                    bytes,
                    little: header.little,
                };
                ProgramHeader {
                    p_type: f.u32(0) as u32,
                    p_offset: f.word(header.is_64, 8, 4),
                    p_filesz: f.word(header.is_64, 32, 16),
                    p_align: f.word(header.is_64, 48, 28),
                }
            })
            .collect(),
    )
}

fn section_headers(header: &FileHeader, ranges: &Ranges) -> Option<Vec<SectionHeader>> {
    let table = ranges.get(header.e_shoff, header.e_shnum * header.e_shentsize)?;
    let entry = usize::try_from(header.e_shentsize).ok()?;
    Some(
        table
            .chunks_exact(entry.max(1))
            .map(|bytes| {
                let f = Fields {
                    bytes,
                    little: header.little,
                };
                let is_64 = header.is_64;
                SectionHeader {
                    sh_name: f.u32(0),
                    sh_type: f.u32(4) as u32,
                    sh_flags: f.word(is_64, 8, 8),
                    sh_offset: f.word(is_64, 24, 16),
                    sh_size: f.word(is_64, 32, 20),
                    sh_link: f.u32(if is_64 { 40 } else { 24 }),
                    sh_addralign: f.word(is_64, 48, 32),
                }
            })
            .collect(),
    )
}

/// The ranges still to read, given what has been read: the file header first, then the
/// tables it locates, then the name table, the dynamic section and the notes they locate.
fn wanted(ranges: &Ranges) -> Result<Vec<(u64, u64)>> {
    let Some(header) = file_header(ranges)? else {
        return Ok(vec![(0, IDENT_AND_HEADER_64.min(ranges.size))]);
    };
    let mut wanted = Vec::new();
    let phdrs = (header.e_phoff, header.e_phnum * header.e_phentsize);
    let shdrs = (header.e_shoff, header.e_shnum * header.e_shentsize);
    for table in [phdrs, shdrs] {
        if table.1 > 0 && ranges.get(table.0, table.1).is_none() {
            wanted.push(table);
        }
    }
    if let Some(sections) = section_headers(&header, ranges)
        && let Some(names) = usize::try_from(header.e_shstrndx)
            .ok()
            .and_then(|i| sections.get(i))
        && names.sh_type != elf::SHT_NOBITS
        && ranges.get(names.sh_offset, names.sh_size).is_none()
    {
        wanted.push((names.sh_offset, names.sh_size));
    }
    if let Some(sections) = section_headers(&header, ranges) {
        for note in sections.iter().filter(|s| s.sh_type == elf::SHT_NOTE) {
            if ranges.get(note.sh_offset, note.sh_size).is_none() {
                wanted.push((note.sh_offset, note.sh_size));
            }
        }
    }
    if let Some(segments) = program_headers(&header, ranges) {
        // The notes segments too: they lie next to the program headers, so the build-id is
        // read in the first pass, from the bytes that pass hashes.
        for segment in segments
            .iter()
            .filter(|p| matches!(p.p_type, elf::PT_DYNAMIC | elf::PT_NOTE))
        {
            if ranges.get(segment.p_offset, segment.p_filesz).is_none() {
                wanted.push((segment.p_offset, segment.p_filesz));
            }
        }
    }
    for &(offset, len) in &wanted {
        if offset.checked_add(len).is_none_or(|end| end > ranges.size) {
            return Err(anyhow!(
                "a header table ({len} bytes at offset {offset}) lies outside the file"
            ));
        }
    }
    Ok(wanted)
}

/// Reads one pass of the file from `reader` (all of it when `sink` is given, which receives
/// every byte; else up to the last range wanted), keeping the ranges [`wanted`] asks for
/// that lie ahead. Returns whether nothing more is wanted.
fn pass<'w>(
    reader: &mut dyn Read,
    ranges: &mut Ranges,
    mut sink: Option<&mut (dyn Write + 'w)>,
) -> Result<bool> {
    let mut position = 0u64;
    let mut buffer = vec![0u8; 1 << 16];
    loop {
        let ahead = wanted(ranges)?
            .into_iter()
            .filter(|&(offset, _)| offset >= position)
            .min();
        let Some((offset, len)) = ahead else {
            break;
        };
        if ranges.total() + len > MAX_HEADER_BYTES {
            return Err(anyhow!(
                "its header tables are larger than {MAX_HEADER_BYTES} bytes"
            ));
        }
        copy_exactly(reader, offset - position, sink.as_deref_mut(), &mut buffer)?;
        let mut bytes = vec![0u8; usize::try_from(len)?];
        reader.read_exact(&mut bytes)?;
        if let Some(sink) = sink.as_deref_mut() {
            sink.write_all(&bytes)?;
        }
        position = offset + len;
        ranges.read.insert(offset, bytes);
    }
    if let Some(sink) = sink {
        copy_exactly(reader, ranges.size - position, Some(sink), &mut buffer)?;
    }
    Ok(wanted(ranges)?.is_empty())
}

/// Reads `len` bytes of `reader` into `sink` (or nowhere).
fn copy_exactly<'w>(
    reader: &mut dyn Read,
    mut len: u64,
    mut sink: Option<&mut (dyn Write + 'w)>,
    buffer: &mut [u8],
) -> io::Result<()> {
    while len > 0 {
        let want = buffer.len().min(usize::try_from(len).unwrap_or(usize::MAX));
        let n = reader.read(&mut buffer[..want])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(sink) = sink.as_deref_mut() {
            sink.write_all(&buffer[..n])?;
        }
        len -= n as u64;
    }
    Ok(())
}

/// What the headers of an ELF file say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headers {
    /// How it is linked.
    pub linkage: Linkage,
    /// The ELF machine, named as [`super::ElfInfo::machine`] names it.
    pub machine: String,
    /// The architecture when airlock knows it, as [`super::ElfInfo::arch`].
    pub arch: Option<Arch>,
    /// Whether it has no static symbol table.
    pub stripped: bool,
    /// Its size after `strip --strip-all` as airlock strips it in process.
    pub stripped_size: u64,
    /// Its GNU build-id in hex, as [`super::strip::build_id`] reads it: from the notes
    /// segments, else the notes sections.
    pub build_id: Option<String>,
    /// 32 or 64.
    pub class: u8,
    /// Whether a `.debug_info` section is there.
    pub debug_info: bool,
    /// Where the first `.dep-v0` section's contents lie (offset, length; empty for
    /// `SHT_NOBITS`), not read: see [`super::inspect_file`].
    pub dep_section: Option<(u64, u64)>,
    /// Whether the dynamic table names search paths (`DT_RPATH`, `DT_RUNPATH`) or a section
    /// needs symbol versions: what [`super::parse_elf`] reads and the headers do not.
    pub dynamic_details: bool,
}

/// Reads an ELF file's headers over one or more sequential passes of the file: give each pass
/// a reader at the file's start until [`HeaderReader::pass`] says it has all it needs.
#[derive(Debug)]
pub struct HeaderReader {
    ranges: Ranges,
    passes: usize,
}

impl HeaderReader {
    /// A reader for a file of `size` bytes.
    pub fn new(size: u64) -> Self {
        HeaderReader {
            ranges: Ranges {
                read: BTreeMap::new(),
                size,
            },
            passes: 0,
        }
    }

    /// Reads one pass of the file from `reader`; with `sink` (compressors, say), every byte of
    /// the file, copied into it, so a caller that reads the whole file anyway pays for no
    /// extra pass unless the tables point backwards. Returns whether the headers are complete.
    /// Errors (exit 2) when it is not an ELF file, its tables lie outside it, or they need more
    /// passes than an ELF file's do.
    pub fn pass(&mut self, reader: &mut dyn Read, sink: Option<&mut dyn Write>) -> Result<bool> {
        self.passes += 1;
        if self.passes > MAX_PASSES {
            return Err(error::input(
                "its header tables point at one another more often than an ELF file's do",
            ));
        }
        pass(reader, &mut self.ranges, sink).map_err(|e| error::input(format!("{e:#}")))
    }

    /// What the headers say, once [`HeaderReader::pass`] returned true.
    pub fn finish(self) -> Result<Headers> {
        interpret(&self.ranges).map_err(|e| error::input(format!("{e:#}")))
    }
}

/// Reads the headers of a file of `size` bytes: `open` gives the file from its start, once per
/// pass; the first pass also copies every byte into `sink`.
pub fn read<'a>(
    size: u64,
    mut open: impl FnMut() -> Result<Box<dyn Read + 'a>>,
    mut sink: Option<&mut dyn Write>,
) -> Result<Headers> {
    let mut reader = HeaderReader::new(size);
    while !reader.pass(&mut open()?, sink.take())? {}
    reader.finish()
}

/// The headers of the file at `path` and the bytes they were read from (its size, and each
/// header table by offset), read with seeks from one open of the file: a few KiB of a file of
/// any size. A caller that ships the file checks the copy it streams later against those
/// bytes ([`HeaderBytes`]), so what ships has the headers judged here. Not an ELF file, or
/// tables outside it: an input error naming `path`.
pub fn read_file(path: &Path) -> Result<(Headers, HeaderBytes)> {
    let file = input::open_regular(path, Links::Follow)?;
    let size = file.size;
    // Small reads: each range is a seek and a read of a few hundred bytes to a few KiB.
    let mut reader = io::BufReader::with_capacity(16 << 10, file.file);
    let (headers, ranges) = read_seekable_ranges(&mut reader, size)
        .with_context(|| format!("cannot read the ELF headers of {}", path.display()))?;
    Ok((
        headers,
        HeaderBytes {
            size,
            ranges: ranges.read.into_iter().collect(),
        },
    ))
}

/// The bytes of a file that [`read_file`] judged it by: its size and the header tables read,
/// by offset. Nothing else of the file was read, so nothing else was judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderBytes {
    /// The file's size.
    pub size: u64,
    /// Each range read: its offset and its bytes, sorted by offset.
    pub ranges: Vec<(u64, Vec<u8>)>,
}

/// Reads the headers of a file of `size` bytes from a reader that can seek: only the ranges
/// they need, each once, in as many rounds as the tables point at one another.
pub fn read_seekable(reader: &mut (impl Read + Seek), size: u64) -> Result<Headers> {
    read_seekable_ranges(reader, size).map(|(headers, _)| headers)
}

/// [`read_seekable`], with the ranges read.
fn read_seekable_ranges(reader: &mut (impl Read + Seek), size: u64) -> Result<(Headers, Ranges)> {
    let mut ranges = Ranges {
        read: BTreeMap::new(),
        size,
    };
    for _ in 0..MAX_PASSES {
        let wanted = wanted(&ranges).map_err(|e| error::input(format!("{e:#}")))?;
        if wanted.is_empty() {
            let headers = interpret(&ranges).map_err(|e| error::input(format!("{e:#}")))?;
            return Ok((headers, ranges));
        }
        for (offset, len) in wanted {
            if ranges.total() + len > MAX_HEADER_BYTES {
                return Err(error::input(format!(
                    "its header tables are larger than {MAX_HEADER_BYTES} bytes"
                )));
            }
            reader.seek(SeekFrom::Start(offset))?;
            let mut bytes = vec![0u8; usize::try_from(len)?];
            reader.read_exact(&mut bytes)?;
            ranges.read.insert(offset, bytes);
        }
    }
    Err(error::input(
        "its header tables point at one another more often than an ELF file's do",
    ))
}

/// Reads the headers of `data`, a whole file in memory (tests, small files).
pub fn read_bytes(data: &[u8]) -> Result<Headers> {
    read(data.len() as u64, || Ok(Box::new(data)), None)
}

fn interpret(ranges: &Ranges) -> Result<Headers> {
    let header = file_header(ranges)?.ok_or_else(|| anyhow!("no ELF header"))?;
    let segments = program_headers(&header, ranges).unwrap_or_default();
    let sections = section_headers(&header, ranges).unwrap_or_default();
    let names = usize::try_from(header.e_shstrndx)
        .ok()
        .and_then(|i| sections.get(i))
        .and_then(|s| ranges.get(s.sh_offset, s.sh_size))
        .unwrap_or_default();
    let needed = segments
        .iter()
        .filter(|p| p.p_type == elf::PT_DYNAMIC)
        .filter_map(|p| ranges.get(p.p_offset, p.p_filesz))
        .map(|table| dynamic_needed(&header, table))
        .sum::<usize>();
    let paths = segments
        .iter()
        .filter(|p| p.p_type == elf::PT_DYNAMIC)
        .filter_map(|p| ranges.get(p.p_offset, p.p_filesz))
        .any(|table| {
            dynamic_tags(&header, table).any(|t| matches!(t, elf::DT_RPATH | elf::DT_RUNPATH))
        });
    let interpreter = segments.iter().any(|p| p.p_type == elf::PT_INTERP);
    let has_dynamic = segments.iter().any(|p| p.p_type == elf::PT_DYNAMIC);
    // As `parse_elf` decides it.
    let linkage = if interpreter || needed > 0 {
        Linkage::Dynamic
    } else if header.e_type == elf::ET_DYN && has_dynamic {
        Linkage::StaticPie
    } else {
        Linkage::Static
    };
    Ok(Headers {
        linkage,
        machine: super::parse::machine_name(header.e_machine, header.is_64, header.little),
        arch: super::parse::machine_arch(header.e_machine, header.is_64, header.little),
        stripped: !sections.iter().any(|s| s.sh_type == elf::SHT_SYMTAB),
        stripped_size: stripped_size(&header, &segments, &sections, names),
        build_id: build_id(&header, &segments, &sections, ranges),
        class: if header.is_64 { 64 } else { 32 },
        debug_info: sections.iter().any(|s| name_of(names, s) == b".debug_info"),
        dep_section: sections
            .iter()
            .find(|s| name_of(names, s) == super::deps::SECTION_NAME.as_bytes())
            .map(|s| {
                let len = if s.sh_type == elf::SHT_NOBITS {
                    0
                } else {
                    s.sh_size
                };
                (s.sh_offset, len)
            }),
        dynamic_details: paths || sections.iter().any(|s| s.sh_type == elf::SHT_GNU_VERNEED),
    })
}

/// The `NT_GNU_BUILD_ID` note of owner `GNU` in the notes segments or sections, in hex.
fn build_id(
    header: &FileHeader,
    segments: &[ProgramHeader],
    sections: &[SectionHeader],
    ranges: &Ranges,
) -> Option<String> {
    let in_segments = segments
        .iter()
        .filter(|p| p.p_type == elf::PT_NOTE)
        .map(|p| (p.p_offset, p.p_filesz, p.p_align));
    let in_sections = sections
        .iter()
        .filter(|s| s.sh_type == elf::SHT_NOTE)
        .map(|s| (s.sh_offset, s.sh_size, s.sh_addralign));
    in_segments
        .chain(in_sections)
        .filter_map(|(offset, len, alignment)| Some((ranges.get(offset, len)?, alignment)))
        .find_map(|(notes, alignment)| gnu_build_id(header.little, notes, alignment))
}

/// The build-id in one table of notes (gABI, "Note Section": name and descriptor each padded
/// to the table's alignment, 4 or 8, as `object` reads them).
fn gnu_build_id(little: bool, notes: &[u8], alignment: u64) -> Option<String> {
    let pad = if alignment == 8 { 8 } else { 4 };
    let f = Fields {
        bytes: notes,
        little,
    };
    let mut at = 0usize;
    while at.checked_add(12)? <= notes.len() {
        let name_len = usize::try_from(f.u32(at)).ok()?;
        let desc_len = usize::try_from(f.u32(at + 4)).ok()?;
        let kind = f.u32(at + 8);
        let name_at = at + 12;
        let desc_at = name_at.checked_add(name_len.checked_next_multiple_of(pad)?)?;
        let next = desc_at.checked_add(desc_len.checked_next_multiple_of(pad)?)?;
        let name = notes.get(name_at..name_at.checked_add(name_len)?)?;
        let desc = notes.get(desc_at..desc_at.checked_add(desc_len)?)?;
        if name.strip_suffix(b"\0").unwrap_or(name) == b"GNU" && kind == elf::NT_GNU_BUILD_ID {
            return Some(hex::encode(desc));
        }
        at = next;
    }
    None
}

/// The name of `section` in the section name table `names`.
fn name_of<'n>(names: &'n [u8], section: &SectionHeader) -> &'n [u8] {
    let start = usize::try_from(section.sh_name).unwrap_or(usize::MAX);
    let rest = names.get(start..).unwrap_or_default();
    &rest[..rest.iter().position(|b| *b == 0).unwrap_or(rest.len())]
}

/// How many `DT_NEEDED` entries a dynamic section holds, up to its `DT_NULL`.
fn dynamic_needed(header: &FileHeader, table: &[u8]) -> usize {
    dynamic_tags(header, table)
        .filter(|tag| *tag == elf::DT_NEEDED)
        .count()
}

/// The tags of a dynamic section's entries, up to its `DT_NULL`.
fn dynamic_tags<'t>(header: &FileHeader, table: &'t [u8]) -> impl Iterator<Item = u64> + 't {
    let entry = if header.is_64 { 16 } else { 8 };
    let (is_64, little) = (header.is_64, header.little);
    (0..table.len() / entry)
        .map(move |i| {
            Fields {
                bytes: table,
                little,
            }
            .word(is_64, i * entry, i * entry)
        })
        .take_while(|tag| *tag != elf::DT_NULL)
}

fn align(offset: u64, alignment: u64) -> u64 {
    match alignment {
        0 | 1 => offset,
        a => offset.div_ceil(a).saturating_mul(a),
    }
}

/// The size of the file [`super::strip::strip_in_process`] writes, from the headers alone:
/// `object`'s ELF writer keeps every allocated section at its offset (the segments point
/// there), then lays out the non-allocated sections that stay in header order, each at its
/// alignment, then the non-allocated relocations, the section name table (its names
/// tail-merged) and the section headers, both at the address size.
fn stripped_size(
    header: &FileHeader,
    segments: &[ProgramHeader],
    sections: &[SectionHeader],
    names: &[u8],
) -> u64 {
    let name_of = |section: &SectionHeader| name_of(names, section);
    let address = if header.is_64 { 8 } else { 4 };
    let symtab_strings = sections
        .iter()
        .find(|s| s.sh_type == elf::SHT_SYMTAB)
        .map(|s| s.sh_link);
    let alloc = |s: &SectionHeader| s.sh_flags & elf::SHF_ALLOC != 0;
    let removed = |index: usize, s: &SectionHeader| {
        let name = name_of(s);
        !alloc(s)
            && (name.starts_with(b".debug")
                || name.starts_with(b".zdebug")
                || name == b".gnu_debuglink"
                || s.sh_type == elf::SHT_SYMTAB
                || s.sh_type == elf::SHT_SYMTAB_SHNDX
                || (s.sh_type == elf::SHT_STRTAB
                    && symtab_strings == Some(index as u64)
                    && index as u64 != header.e_shstrndx))
    };
    let kept: Vec<(usize, &SectionHeader)> = sections
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, s)| !removed(*i, s))
        .collect();
    let mut offset = header.e_phoff.max(if header.is_64 { 64 } else { 52 })
        + header.e_phnum * header.e_phentsize;
    let in_place = !segments.is_empty();
    if in_place {
        let mut placed: Vec<&SectionHeader> = kept
            .iter()
            .map(|(_, s)| *s)
            .filter(|s| alloc(s) && s.sh_type != elf::SHT_NOBITS)
            .collect();
        placed.sort_by_key(|s| (s.sh_offset, s.sh_size));
        for section in placed {
            offset = section.sh_offset + section.sh_size;
        }
    }
    let is_relocation = |s: &SectionHeader| s.sh_type == elf::SHT_REL || s.sh_type == elf::SHT_RELA;
    for (index, section) in &kept {
        if (in_place && alloc(section))
            || section.sh_type == elf::SHT_NOBITS
            || is_relocation(section)
            || *index as u64 == header.e_shstrndx
        {
            continue;
        }
        offset = align(offset, section.sh_addralign) + section.sh_size;
    }
    for (_, section) in &kept {
        if !(in_place && alloc(section)) && is_relocation(section) {
            offset = align(offset, address) + section.sh_size;
        }
    }
    // `object`'s string table: a leading NUL, then each name once, a name that ends another
    // sharing that one's bytes.
    let names: std::collections::BTreeSet<&[u8]> = kept
        .iter()
        .map(|(_, s)| name_of(s))
        .filter(|n| !n.is_empty())
        .collect();
    let name_table = 1 + names
        .iter()
        .filter(|n| {
            !names
                .iter()
                .any(|other| other.len() > n.len() && other.ends_with(n))
        })
        .map(|n| n.len() as u64 + 1)
        .sum::<u64>();
    offset += name_table;
    align(offset, address) + (kept.len() as u64 + 1) * header.e_shentsize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own_binary() -> Vec<u8> {
        std::fs::read(std::env::current_exe().unwrap()).unwrap()
    }

    #[test]
    fn the_stripped_size_from_headers_is_the_size_of_the_stripped_file() {
        let data = own_binary();
        let headers = read_bytes(&data).unwrap();
        let built = super::super::strip::strip_in_process(&data).unwrap();
        assert_eq!(headers.stripped_size, built.len() as u64);
        // A stripped file's headers give its own size back.
        assert_eq!(
            read_bytes(&built).unwrap().stripped_size,
            built.len() as u64
        );
        assert!(read_bytes(&built).unwrap().stripped);
        assert!(!headers.stripped);
    }

    #[test]
    fn linkage_and_machine_are_those_parse_elf_reads() {
        let data = own_binary();
        let headers = read_bytes(&data).unwrap();
        let info = super::super::parse_elf(std::path::Path::new("self"), &data).unwrap();
        assert_eq!(headers.linkage, info.linkage);
        assert_eq!(headers.machine, info.machine);
        assert_eq!(headers.arch, info.arch);
        assert_eq!(
            headers.build_id,
            super::super::strip::build_id(&data).unwrap()
        );
        assert!(headers.build_id.is_some());
        assert_eq!(headers.stripped, info.stripped);
    }

    #[test]
    fn the_first_pass_feeds_the_sink_every_byte_and_later_passes_nothing() {
        let data = own_binary();
        let mut passes = 0;
        let mut sink = Vec::new();
        let headers = read(
            data.len() as u64,
            || {
                passes += 1;
                Ok(Box::new(data.as_slice()))
            },
            Some(&mut sink),
        )
        .unwrap();
        assert_eq!(sink, data);
        assert!(passes <= 2, "{passes} passes");
        assert_eq!(headers, read_bytes(&data).unwrap());
    }

    #[test]
    fn what_is_not_elf_or_is_cut_short_is_an_input_error() {
        let err = read_bytes(b"#!/bin/sh\necho hello, this is long enough to be read\n\n\n\n\n")
            .unwrap_err();
        assert_eq!(crate::error::exit_kind(&err), crate::error::ExitKind::Input);
        let data = own_binary();
        let err = read_bytes(&data[..data.len() / 2]).unwrap_err();
        assert!(format!("{err:#}").contains("outside the file"), "{err:#}");
        assert_eq!(crate::error::exit_kind(&err), crate::error::ExitKind::Input);
    }
}
