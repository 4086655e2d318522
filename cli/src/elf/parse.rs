//! The ELF reading behind `inspect`, with `object`'s low-level ELF types (gABI: program
//! headers for the loader's view, the dynamic section for needs, section headers for
//! symbols).

use std::path::Path;

use anyhow::Result;
use object::elf;
use object::read::elf::{Dyn, FileHeader, ProgramHeader, SectionHeader, SectionTable};
use object::{Endianness, FileKind};

use super::deps::{EmbeddedDeps, SECTION_NAME};
use super::{ElfInfo, Linkage, VersionNeed};
use crate::error;
use crate::target::Arch;

/// Analyses the ELF file `data` read from `path`.
pub fn parse_elf(path: &Path, data: &[u8]) -> Result<ElfInfo> {
    let shown = path.display();
    if data.is_empty() {
        return Err(error::input(format!("{shown} is empty, not an ELF binary")));
    }
    if !data.starts_with(b"\x7fELF") {
        let what = match data.get(..4) {
            Some(b"PK\x03\x04") => "a zip archive",
            Some(b"#!/b") | Some(b"#!/u") => "a script",
            Some([0x1f, 0x8b, ..]) => "a gzip file",
            Some([0x28, 0xb5, 0x2f, 0xfd]) => "a zstd file",
            _ => "not an ELF binary",
        };
        return Err(error::input(format!(
            "{shown} is {what}; inspect reads Linux ELF executables"
        )));
    }
    let parsed = match FileKind::parse(data) {
        Ok(FileKind::Elf64) => analyse::<elf::FileHeader64<Endianness>>(data),
        Ok(FileKind::Elf32) => analyse::<elf::FileHeader32<Endianness>>(data),
        Ok(_) | Err(_) => Err(anyhow::anyhow!("unknown ELF class")),
    };
    let mut info =
        parsed.map_err(|e| error::input(format!("{shown} is truncated or corrupt: {e:#}")))?;
    info.path = path.to_path_buf();
    Ok(info)
}

type ParseResult<T> = anyhow::Result<T>;

fn analyse<Elf: FileHeader<Endian = Endianness>>(data: &[u8]) -> ParseResult<ElfInfo> {
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    let segments = header.program_headers(endian, data)?;
    let sections = header.sections(endian, data)?;

    let mut interpreter = None;
    let mut has_dynamic_segment = false;
    for segment in segments {
        match segment.p_type(endian) {
            elf::PT_INTERP => {
                let bytes = segment
                    .interpreter(endian, data)?
                    .ok_or_else(|| anyhow::anyhow!("PT_INTERP without a path"))?;
                interpreter = Some(String::from_utf8_lossy(bytes).into_owned());
            }
            elf::PT_DYNAMIC => has_dynamic_segment = true,
            _ => {}
        }
    }

    let dynamic = read_dynamic(endian, data, &sections)?;
    let version_needs = read_version_needs(endian, data, &sections)?;
    let e_type = header.e_type(endian);
    let linkage = if interpreter.is_some() || !dynamic.needed.is_empty() {
        Linkage::Dynamic
    } else if e_type == elf::ET_DYN && has_dynamic_segment {
        Linkage::StaticPie
    } else {
        Linkage::Static
    };

    let mut stripped = true;
    let mut debug_info = false;
    let mut dep_section = None;
    for section in sections.iter() {
        if section.sh_type(endian) == elf::SHT_SYMTAB {
            stripped = false;
        }
        let name = sections.section_name(endian, section)?;
        if name == b".debug_info" {
            debug_info = true;
        }
        if name == SECTION_NAME.as_bytes() && dep_section.is_none() {
            dep_section = Some(section.data(endian, data).map_err(|_| {
                anyhow::anyhow!("the {SECTION_NAME} section lies outside the file")
            })?);
        }
    }

    let e_machine = header.e_machine(endian).0;
    let is_64 = header.is_type_64();
    let little = endian == Endianness::Little;
    let machine = machine_name(e_machine, is_64, little);
    let arch = machine_arch(e_machine, is_64, little);

    Ok(ElfInfo {
        path: Default::default(),
        size: data.len() as u64,
        linkage,
        interpreter,
        needed: dynamic.needed,
        rpath: dynamic.rpath,
        runpath: dynamic.runpath,
        version_needs,
        machine,
        arch,
        class: if header.is_type_64() { 64 } else { 32 },
        stripped,
        debug_info,
        dependencies: EmbeddedDeps::from_section(dep_section),
    })
}

#[derive(Default)]
struct DynamicEntries {
    needed: Vec<String>,
    rpath: Vec<String>,
    runpath: Vec<String>,
}

fn read_dynamic<Elf: FileHeader<Endian = Endianness>>(
    endian: Endianness,
    data: &[u8],
    sections: &SectionTable<'_, Elf>,
) -> ParseResult<DynamicEntries> {
    let mut out = DynamicEntries::default();
    for section in sections.iter() {
        let Some((entries, link)) = section.dynamic(endian, data)? else {
            continue;
        };
        let strings = sections.strings(endian, data, link)?;
        for entry in entries {
            let tag = entry.d_tag(endian);
            if tag == elf::DT_NULL {
                break;
            }
            let target = match tag {
                elf::DT_NEEDED => &mut out.needed,
                elf::DT_RPATH => &mut out.rpath,
                elf::DT_RUNPATH => &mut out.runpath,
                _ => continue,
            };
            let value = entry.string(endian, strings)?;
            let value = String::from_utf8_lossy(value);
            if tag == elf::DT_NEEDED {
                target.push(value.into_owned());
            } else {
                target.extend(value.split(':').map(str::to_owned));
            }
        }
    }
    Ok(out)
}

fn read_version_needs<Elf: FileHeader<Endian = Endianness>>(
    endian: Endianness,
    data: &[u8],
    sections: &SectionTable<'_, Elf>,
) -> ParseResult<Vec<VersionNeed>> {
    let mut needs = Vec::new();
    for section in sections.iter() {
        let Some((mut verneeds, link)) = section.gnu_verneed(endian, data)? else {
            continue;
        };
        let strings = sections.strings(endian, data, link)?;
        while let Some((verneed, mut auxes)) = verneeds.next()? {
            let file = String::from_utf8_lossy(verneed.file(endian, strings)?).into_owned();
            let mut versions = Vec::new();
            while let Some(aux) = auxes.next()? {
                versions.push(String::from_utf8_lossy(aux.name(endian, strings)?).into_owned());
            }
            needs.push(VersionNeed { file, versions });
        }
    }
    Ok(needs)
}

/// The name of an ELF machine. The machine alone does not say the word size or byte order:
/// RISC-V and POWER share one e_machine between 32/64-bit and big/little-endian builds (gABI,
/// EI_CLASS and EI_DATA).
pub(super) fn machine_name(e_machine: u16, is_64: bool, little: bool) -> String {
    match elf::Machine(e_machine) {
        elf::EM_X86_64 => "x86_64".to_owned(),
        elf::EM_AARCH64 => "aarch64".to_owned(),
        elf::EM_386 => "i386".to_owned(),
        elf::EM_ARM => "arm".to_owned(),
        elf::EM_RISCV if is_64 => "riscv64".to_owned(),
        elf::EM_RISCV => "riscv32".to_owned(),
        elf::EM_PPC64 if little => "ppc64le".to_owned(),
        elf::EM_PPC64 => "ppc64".to_owned(),
        other => format!("e_machine {other}"),
    }
}

/// The architecture airlock builds for an ELF machine, if any. 32-bit ARM is taken as ARMv7
/// (`linux/arm/v7`), the only 32-bit ARM airlock builds.
pub(super) fn machine_arch(e_machine: u16, is_64: bool, little: bool) -> Option<Arch> {
    match elf::Machine(e_machine) {
        elf::EM_X86_64 => Some(Arch::X86_64),
        elf::EM_AARCH64 => Some(Arch::Aarch64),
        elf::EM_386 => Some(Arch::I686),
        elf::EM_ARM => Some(Arch::Armv7),
        elf::EM_RISCV if is_64 => Some(Arch::Riscv64),
        elf::EM_PPC64 if little => Some(Arch::Powerpc64le),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ExitKind, exit_kind};
    use proptest::prelude::*;

    /// A small real ELF executable: the system's `true` (dynamic, so the dynamic section and
    /// symbol versions are parsed too), else this test binary.
    fn real_elf() -> &'static [u8] {
        static ELF: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
        ELF.get_or_init(|| {
            let path = crate::process::find_on_path("true")
                .unwrap_or_else(|| std::env::current_exe().unwrap());
            std::fs::read(path).unwrap()
        })
    }

    proptest! {
        #[test]
        fn prop_mutated_elf_files_never_panic(
            edits in prop::collection::vec((0u8..3, any::<prop::sample::Index>(), any::<u8>()), 1..16),
            cut in proptest::option::of(any::<prop::sample::Index>()),
        ) {
            let mut data = real_elf().to_vec();
            let len = data.len();
            for (region, at, byte) in edits {
                // Headers first (ELF and program headers), section headers at the end, or anywhere.
                let i = match region {
                    0 => at.index(len.min(512)),
                    1 => len - 1 - at.index(len.min(4096)),
                    _ => at.index(len),
                };
                data[i] = byte;
            }
            if let Some(cut) = cut {
                data.truncate(cut.index(len));
            }
            match parse_elf(Path::new("mutated"), &data) {
                Ok(info) => prop_assert_eq!(info.size, data.len() as u64),
                Err(e) => {
                    prop_assert_eq!(exit_kind(&e), ExitKind::Input);
                    prop_assert!(e.to_string().contains("mutated"), "{e}");
                }
            }
        }
    }

    #[test]
    fn host_tools_are_dynamic_and_named() {
        // The test binary itself is a dynamically linked glibc executable.
        let exe = std::env::current_exe().unwrap();
        let info = crate::elf::inspect_file(&exe).unwrap();
        assert_eq!(info.linkage, Linkage::Dynamic);
        assert!(
            info.needed.iter().any(|n| n.starts_with("libc.so")),
            "{info:?}"
        );
        assert!(info.interpreter.is_some());
        assert!(
            info.version_needs
                .iter()
                .any(|v| v.versions.iter().any(|s| s.starts_with("GLIBC_")))
        );
        assert_eq!(info.arch, Arch::host());
    }

    #[test]
    fn rejects_non_elf_and_truncated() {
        let p = Path::new("x");
        for (bytes, says) in [
            (&b""[..], "is empty"),
            (b"#!/bin/sh\necho", "a script"),
            (b"hello world", "not an ELF"),
        ] {
            let err = parse_elf(p, bytes).unwrap_err();
            assert!(err.to_string().contains(says), "{err}");
            assert_eq!(exit_kind(&err), ExitKind::Input);
        }
        let exe = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let err = parse_elf(p, &exe[..100]).unwrap_err();
        assert!(err.to_string().contains("truncated or corrupt"), "{err}");
    }
}
