//! The one way airlock rebuilds an ELF file (stripping, embedding the dependency list):
//! `object`'s builder, reading sections it never changes as opaque bytes where parsing them
//! would refuse a binary the loader runs.
//!
//! The case: `ld.lld` (zig's linker) concatenates the `.gnu.attributes` sections of its inputs
//! instead of merging them, so a powerpc64le binary linking zig's libc++ holds several
//! `"A" … "gnu"` records one after the other. `readelf -A` complains; `object` refuses the
//! whole file ("Invalid ELF attributes subsection length"). airlock never edits attributes, so
//! such a section is read as `SHT_PROGBITS` (its bytes kept as they are) and written back
//! with its own type. Nothing here reads or writes files.

use anyhow::{Context, Result};
use object::build::elf::Builder;
use object::elf;
use object::read::elf::{FileHeader, SectionHeader};
use object::{Endian, Endianness, FileKind};

/// Reads `data` into a builder and hands it to `f`. A file whose attribute sections `object`
/// cannot parse is read with those sections as opaque bytes (their type restored in the
/// builder, so a rewrite keeps them as they were).
pub fn with_builder<R>(data: &[u8], f: impl FnOnce(Builder<'_>) -> Result<R>) -> Result<R> {
    let first = match Builder::read(data) {
        Ok(builder) => return f(checked_alignments(builder)?),
        Err(e) => e,
    };
    let Some((patched, names)) = attributes_as_progbits(data) else {
        return Err(first).context("cannot parse the ELF file");
    };
    let mut builder = match Builder::read(patched.as_slice()) {
        Ok(builder) => builder,
        Err(_) => return Err(first).context("cannot parse the ELF file"),
    };
    for section in builder.sections.iter_mut() {
        if section.sh_type == elf::SHT_PROGBITS
            && names
                .iter()
                .any(|n| n.as_slice() == section.name.as_slice())
        {
            section.sh_type = elf::SHT_GNU_ATTRIBUTES;
        }
    }
    f(checked_alignments(builder)?)
}

/// `builder` with every section alignment one `object`'s writer can lay out: 0 means "none"
/// (ELF gABI), as 1 does; anything else must be a power of two, or the writer's rounding
/// (`(offset + align - 1) & !(align - 1)`) misplaces sections or overflows.
fn checked_alignments(mut builder: Builder<'_>) -> Result<Builder<'_>> {
    for section in builder.sections.iter_mut() {
        match section.sh_addralign {
            0 => section.sh_addralign = 1,
            align if align.is_power_of_two() => {}
            align => {
                return Err(crate::error::input(format!(
                    "cannot parse the ELF file: section {} has alignment {align}, which is \
                     not a power of two",
                    String::from_utf8_lossy(section.name.as_slice())
                )));
            }
        }
    }
    Ok(builder)
}

/// Rebuilds `data` after `edit` changed the builder; `capacity` is the expected output size.
pub fn rewrite(
    data: &[u8],
    capacity: usize,
    edit: impl FnOnce(&mut Builder<'_>) -> Result<()>,
) -> Result<Vec<u8>> {
    with_builder(data, |mut builder| {
        edit(&mut builder)?;
        let mut out = Vec::with_capacity(capacity);
        builder
            .write(&mut out)
            .context("cannot rewrite the ELF file")?;
        Ok(out)
    })
}

/// A copy of `data` whose `SHT_GNU_ATTRIBUTES` section headers say `SHT_PROGBITS`, with the
/// names of those sections; `None` when there are none (or the headers cannot be read).
fn attributes_as_progbits(data: &[u8]) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    match FileKind::parse(data).ok()? {
        FileKind::Elf64 => patch::<elf::FileHeader64<Endianness>>(data),
        FileKind::Elf32 => patch::<elf::FileHeader32<Endianness>>(data),
        _ => None,
    }
}

fn patch<Elf: FileHeader<Endian = Endianness>>(data: &[u8]) -> Option<(Vec<u8>, Vec<Vec<u8>>)> {
    let header = Elf::parse(data).ok()?;
    let endian = header.endian().ok()?;
    let sections = header.sections(endian, data).ok()?;
    let table: u64 = header.e_shoff(endian).into();
    let table = usize::try_from(table).ok()?;
    let entry = usize::from(header.e_shentsize(endian));
    let mut patched = None::<Vec<u8>>;
    let mut names = Vec::new();
    for (index, section) in sections.enumerate() {
        if section.sh_type(endian) != elf::SHT_GNU_ATTRIBUTES {
            continue;
        }
        names.push(sections.section_name(endian, section).ok()?.to_vec());
        // `sh_type` follows the 4-byte `sh_name` in both ELF classes.
        let at = table
            .checked_add(index.0.checked_mul(entry)?)?
            .checked_add(4)?;
        let bytes = patched.get_or_insert_with(|| data.to_vec());
        bytes
            .get_mut(at..at + 4)?
            .copy_from_slice(&endian.write_u32(elf::SHT_PROGBITS.0));
    }
    patched.map(|bytes| (bytes, names))
}

#[cfg(test)]
mod tests {
    use super::*;
    use object::build::elf::SectionData;

    /// One well-formed GNU attributes record (`Tag_GNU_Power_ABI_FP`), as one object file
    /// carries it.
    const RECORD: &[u8] = b"A\x0f\x00\x00\x00gnu\x00\x01\x07\x00\x00\x00\x04\x09";

    /// The test binary with a `.gnu.attributes` section of `records` copies of [`RECORD`]
    /// laid end to end, as `ld.lld` leaves them.
    fn with_attributes(records: usize) -> Vec<u8> {
        let data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let mut builder = Builder::read(data.as_slice()).unwrap();
        let section = builder.sections.add();
        section.name = b".gnu.attributes".as_slice().into();
        section.sh_type = elf::SHT_GNU_ATTRIBUTES;
        section.sh_addralign = 1;
        section.data = SectionData::Data(RECORD.repeat(records).into());
        let mut out = Vec::new();
        builder.write(&mut out).unwrap();
        out
    }

    /// The type and bytes of `.gnu.attributes`, read without parsing its records.
    fn attributes_of(data: &[u8]) -> (elf::SectionType, Vec<u8>) {
        let header = elf::FileHeader64::<Endianness>::parse(data).unwrap();
        let endian = header.endian().unwrap();
        let sections = header.sections(endian, data).unwrap();
        let section = sections
            .iter()
            .find(|s| sections.section_name(endian, s).unwrap() == b".gnu.attributes")
            .unwrap();
        (
            section.sh_type(endian),
            section.data(endian, data).unwrap().to_vec(),
        )
    }

    #[test]
    fn concatenated_attribute_records_are_kept_byte_for_byte() {
        let data = with_attributes(3);
        // The mechanism: object itself refuses this file.
        assert!(Builder::read(data.as_slice()).is_err());
        let rebuilt = rewrite(&data, data.len(), |builder| {
            let section = builder.sections.add();
            section.name = b".extra".as_slice().into();
            section.sh_type = elf::SHT_PROGBITS;
            section.sh_addralign = 1;
            section.data = SectionData::Data(b"x".to_vec().into());
            Ok(())
        })
        .unwrap();
        assert_eq!(
            attributes_of(&rebuilt),
            (elf::SHT_GNU_ATTRIBUTES, RECORD.repeat(3))
        );
    }

    #[test]
    fn a_well_formed_file_is_read_directly() {
        let data = with_attributes(1);
        assert!(Builder::read(data.as_slice()).is_ok());
        let rebuilt = rewrite(&data, data.len(), |_| Ok(())).unwrap();
        assert_eq!(
            attributes_of(&rebuilt),
            (elf::SHT_GNU_ATTRIBUTES, RECORD.to_vec())
        );
    }

    #[test]
    fn an_alignment_that_is_not_a_power_of_two_is_refused_not_laid_out() {
        let data = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let mut builder = Builder::read(data.as_slice()).unwrap();
        let section = builder.sections.add();
        section.name = b".odd".as_slice().into();
        section.sh_type = elf::SHT_PROGBITS;
        section.sh_addralign = 1;
        section.data = SectionData::Data(b"x".to_vec().into());
        let mut odd = Vec::new();
        builder.write(&mut odd).unwrap();
        // The alignment field of `.odd`'s header, set to 3 after the fact.
        let header = elf::FileHeader64::<Endianness>::parse(odd.as_slice()).unwrap();
        let endian = header.endian().unwrap();
        let sections = header.sections(endian, odd.as_slice()).unwrap();
        let (index, _) = sections
            .enumerate()
            .find(|(_, s)| sections.section_name(endian, s).unwrap() == b".odd")
            .unwrap();
        let at = header.e_shoff(endian) as usize
            + index.0 * usize::from(header.e_shentsize(endian))
            + 48; // sh_addralign in Elf64_Shdr
        odd[at..at + 8].copy_from_slice(&3u64.to_le_bytes());
        let err = rewrite(&odd, odd.len(), |_| Ok(())).unwrap_err();
        assert!(
            format!("{err:#}").contains("section .odd has alignment 3"),
            "{err:#}"
        );
        assert_eq!(crate::error::exit_kind(&err), crate::error::ExitKind::Input);
    }

    #[test]
    fn what_is_not_elf_is_still_refused() {
        let err = rewrite(b"not an ELF file", 0, |_| Ok(())).unwrap_err();
        assert!(
            format!("{err:#}").contains("cannot parse the ELF file"),
            "{err:#}"
        );
    }
}
