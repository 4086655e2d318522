//! ELF linkage, read from the file itself (no `ldd`, which runs the binary's loader): static,
//! static-pie or dynamic, interpreter, needed libraries, search paths, symbol versions,
//! machine, stripped or not; and the dependency list embedded in the binary ([`deps`]).
//!
//! `elf` only reads files, each a regular file read within a bound known before reading; it
//! never runs them.

pub mod append;
pub mod deps;
pub mod headers;
mod parse;
pub mod rewrite;
pub mod stream_strip;
pub mod strip;
mod tables;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::error::{self, ExitKind};
use crate::input::{self, Links};
use crate::render::{self, Align, CommandReport};
use crate::target::Arch;

pub use deps::{DepKind, DepList, DepPackage, EmbeddedDeps};
pub use parse::parse_elf;

/// How a binary is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Linkage {
    /// A fixed-address executable with no interpreter and no needed libraries.
    Static,
    /// A position-independent executable with no interpreter and no needed libraries
    /// (it relocates itself).
    StaticPie,
    /// Needs the dynamic loader (`PT_INTERP`) or shared libraries (`DT_NEEDED`).
    Dynamic,
}

impl Linkage {
    /// Whether the binary runs on an empty file system (`FROM scratch`).
    pub fn is_static(self) -> bool {
        !matches!(self, Linkage::Dynamic)
    }

    /// The name shown in tables and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Linkage::Static => "static",
            Linkage::StaticPie => "static-pie",
            Linkage::Dynamic => "dynamic",
        }
    }
}

/// Symbol versions needed from one library (`DT_VERNEED`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VersionNeed {
    /// The library, e.g. `libc.so.6`.
    pub file: String,
    /// The versions, e.g. `GLIBC_2.34`.
    pub versions: Vec<String>,
}

/// What an ELF file says about its linkage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ElfInfo {
    /// The file's path as given.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Static, static-pie or dynamic.
    pub linkage: Linkage,
    /// `PT_INTERP`, the dynamic loader it asks for.
    pub interpreter: Option<String>,
    /// `DT_NEEDED` libraries.
    pub needed: Vec<String>,
    /// `DT_RPATH` entries.
    pub rpath: Vec<String>,
    /// `DT_RUNPATH` entries.
    pub runpath: Vec<String>,
    /// `DT_VERNEED` symbol versions.
    pub version_needs: Vec<VersionNeed>,
    /// The machine (`x86_64`, `aarch64`, or `e_machine N` for others).
    pub machine: String,
    /// The architecture when airlock knows it.
    pub arch: Option<Arch>,
    /// 32 or 64.
    pub class: u8,
    /// Whether the static symbol table (`.symtab`) is gone.
    pub stripped: bool,
    /// Whether DWARF debug info (`.debug_info`) is present.
    pub debug_info: bool,
    /// The dependency list embedded in the `.dep-v0` section (cargo-auditable's format).
    pub dependencies: EmbeddedDeps,
}

impl ElfInfo {
    /// What to do about a dynamic binary: a hint per needed library that has a known cause.
    pub fn hints(&self) -> Vec<String> {
        let mut hints: Vec<String> = self.needed.iter().filter_map(|lib| hint_for(lib)).collect();
        if self
            .interpreter
            .as_deref()
            .is_some_and(|i| i.contains("ld-linux"))
        {
            hints.push(
                "it was linked against glibc: build for a musl target \
                 (`cargo airlock build --target x86_64-unknown-linux-musl`)"
                    .to_owned(),
            );
        }
        hints.dedup();
        hints
    }
}

/// The likely cause of a needed library and the fix, for well-known `-sys` crates.
pub fn hint_for(library: &str) -> Option<String> {
    let stem = library.split(".so").next().unwrap_or(library);
    let hint = match stem {
        "libssl" | "libcrypto" => {
            "openssl-sys links the system OpenSSL: enable the `vendored` feature of `openssl` \
             (or switch to rustls)"
        }
        "libz" => {
            "libz-sys links the system zlib: enable its `static` feature (or use flate2's rust backend)"
        }
        "libsqlite3" => {
            "libsqlite3-sys links the system SQLite: enable rusqlite's `bundled` feature"
        }
        "libpq" => "pq-sys links the system libpq: enable its `bundled` feature",
        "libc" | "libm" | "libdl" | "libpthread" | "librt" | "libgcc_s" => {
            return None;
        }
        // The dynamic loader itself (glibc's or musl's): the interpreter hint covers it.
        loader if loader.starts_with("ld-linux") || loader.starts_with("ld-musl") => {
            return None;
        }
        _ => {
            return Some(format!(
                "{library}: a `-sys` crate links this system shared library; look for a \
                 `static`, `vendored` or `bundled` feature on it"
            ));
        }
    };
    Some(hint.to_owned())
}

/// The largest binary airlock reads (2 GiB): far above any release binary, and a bound on what
/// a file handed to `inspect`, `image --binary` or `report --binary` can make airlock hold in
/// memory.
pub const MAX_BINARY_SIZE: u64 = 2 << 30;

/// Reads a binary the user named: a regular file (a FIFO or device is an input error, never a
/// read that hangs or does not end) of at most [`MAX_BINARY_SIZE`] bytes, refused before any
/// of it is read when larger.
pub fn read_binary(path: &Path) -> Result<Vec<u8>> {
    input::read_regular(path, Links::Follow, MAX_BINARY_SIZE)
}

/// Analyses the ELF headers of `path`, as [`parse_elf`] does, without holding the file: a
/// static binary's headers, and its `.dep-v0` section, say all of it, read with seeks (a
/// 500 MB binary costs a few kilobytes). A dynamic binary (whose libraries, search paths and
/// symbol versions only the whole file says), or anything the headers alone cannot read, is
/// read whole (see [`read_binary`]). Empty, non-ELF and truncated files are input errors
/// naming the file.
pub fn inspect_file(path: &Path) -> Result<ElfInfo> {
    if let Some(info) = inspect_from_headers(path)? {
        return Ok(info);
    }
    let data = read_binary(path)?;
    parse_elf(path, &data)
}

/// [`inspect_file`] from the headers, or `None` when they do not say everything.
fn inspect_from_headers(path: &Path) -> Result<Option<ElfInfo>> {
    let file = input::open_regular(path, Links::Follow)?;
    let size = file.size;
    from_headers(path, &mut std::io::BufReader::new(file.file), size)
}

/// [`inspect_from_headers`] of the file of `size` bytes in `reader`.
fn from_headers(
    path: &Path,
    reader: &mut (impl std::io::Read + std::io::Seek),
    size: u64,
) -> Result<Option<ElfInfo>> {
    use std::io::SeekFrom;
    let Ok(headers) = headers::read_seekable(reader, size) else {
        return Ok(None);
    };
    if !headers.linkage.is_static() || headers.dynamic_details {
        return Ok(None);
    }
    let dependencies = match headers.dep_section {
        None => EmbeddedDeps::Absent,
        Some((offset, len)) => {
            if len > deps::MAX_JSON_SIZE || offset.checked_add(len).is_none_or(|end| end > size) {
                return Ok(None);
            }
            let mut section = vec![0u8; len as usize];
            reader.seek(SeekFrom::Start(offset))?;
            reader
                .read_exact(&mut section)
                .with_context(|| format!("cannot read {}", path.display()))?;
            EmbeddedDeps::from_section(Some(&section))
        }
    };
    Ok(Some(ElfInfo {
        path: path.to_path_buf(),
        size,
        linkage: headers.linkage,
        interpreter: None,
        needed: Vec::new(),
        rpath: Vec::new(),
        runpath: Vec::new(),
        version_needs: Vec::new(),
        machine: headers.machine,
        arch: headers.arch,
        class: headers.class,
        stripped: headers.stripped,
        debug_info: headers.debug_info,
        dependencies,
    }))
}

/// Options of `cargo airlock inspect`.
#[derive(Debug, Clone, Default)]
pub struct InspectOptions {
    /// The files to inspect.
    pub files: Vec<PathBuf>,
    /// Report dynamic binaries without failing.
    pub allow_dynamic: bool,
    /// Fail when a file is for another architecture.
    pub expect_arch: Option<Arch>,
}

/// The result of `inspect`.
#[derive(Debug, Clone, Serialize)]
pub struct InspectReport {
    /// One entry per file, in the order given.
    pub files: Vec<ElfInfo>,
    /// Whether dynamic files were allowed.
    pub allow_dynamic: bool,
    /// The architecture every file must have, if one was asked for.
    pub expect_arch: Option<Arch>,
    /// Every failed check, one sentence each.
    pub problems: Vec<String>,
}

/// `cargo airlock inspect`: the linkage of every file; a problem for each dynamic file (unless
/// allowed) and each file of the wrong architecture.
pub fn inspect(options: &InspectOptions) -> Result<InspectReport> {
    if options.files.is_empty() {
        return Err(error::input(
            "no files to inspect; name at least one binary",
        ));
    }
    let files = options
        .files
        .iter()
        .map(|p| inspect_file(p))
        .collect::<Result<Vec<_>>>()?;
    let mut problems = Vec::new();
    for info in &files {
        if !options.allow_dynamic && !info.linkage.is_static() {
            problems.push(dynamic_problem(info));
        }
        if let EmbeddedDeps::Unreadable { reason } = &info.dependencies {
            problems.push(format!(
                "{}: its embedded dependency list ({}) cannot be read: {reason}; rebuild it \
                 with `cargo airlock build`",
                info.path.display(),
                deps::SECTION_NAME
            ));
        }
        if let Some(expected) = options.expect_arch
            && info.arch != Some(expected)
        {
            problems.push(format!(
                "{}: built for {}, expected {expected}",
                info.path.display(),
                info.machine
            ));
        }
    }
    Ok(InspectReport {
        files,
        allow_dynamic: options.allow_dynamic,
        expect_arch: options.expect_arch,
        problems,
    })
}

/// The embedded dependencies of `path`, one row per package, the binary's own first.
fn dependency_table(path: &Path, list: &DepList) -> String {
    let mut packages: Vec<&DepPackage> = list.packages.iter().collect();
    packages.sort_by_key(|p| !p.root);
    let rows: Vec<Vec<String>> = packages
        .iter()
        .map(|p| {
            let kind = match (p.root, p.kind) {
                (true, _) => "root",
                (false, DepKind::Runtime) => "runtime",
                (false, DepKind::Build) => "build",
            };
            vec![
                p.name.clone(),
                p.version.clone(),
                p.source.clone(),
                kind.to_owned(),
            ]
        })
        .collect();
    format!(
        "\n{}: {} packages embedded ({})\n{}",
        path.display(),
        list.packages.len(),
        deps::SECTION_NAME,
        render::table(
            &[
                ("package", Align::Left),
                ("version", Align::Left),
                ("source", Align::Left),
                ("kind", Align::Left),
            ],
            &rows,
        )
    )
}

/// The sentence that says a binary is dynamic, what it needs and what to do.
pub fn dynamic_problem(info: &ElfInfo) -> String {
    let mut needs = Vec::new();
    if let Some(interp) = &info.interpreter {
        needs.push(format!("interpreter {interp}"));
    }
    if !info.needed.is_empty() {
        needs.push(format!("libraries {}", info.needed.join(", ")));
    }
    let mut text = format!(
        "{} is dynamically linked (needs {})",
        info.path.display(),
        needs.join("; ")
    );
    for hint in info.hints() {
        text.push_str("\n  help: ");
        text.push_str(&hint);
    }
    text
}

impl CommandReport for InspectReport {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .files
            .iter()
            .map(|f| {
                vec![
                    f.path.display().to_string(),
                    f.linkage.as_str().to_owned(),
                    f.machine.clone(),
                    if f.stripped { "yes" } else { "no" }.to_owned(),
                    render::human_bytes(f.size),
                    f.needed.join(" "),
                ]
            })
            .collect();
        let mut out = render::table(
            &[
                ("file", Align::Left),
                ("linkage", Align::Left),
                ("machine", Align::Left),
                ("stripped", Align::Left),
                ("size", Align::Right),
                ("needed", Align::Left),
            ],
            &rows,
        );
        for f in self.files.iter().filter(|f| {
            f.interpreter.is_some()
                || !f.rpath.is_empty()
                || !f.runpath.is_empty()
                || !f.version_needs.is_empty()
        }) {
            out.push_str(&format!("\n{}:\n", f.path.display()));
            if let Some(interp) = &f.interpreter {
                out.push_str(&format!("  interpreter: {interp}\n"));
            }
            if !f.rpath.is_empty() {
                out.push_str(&format!("  rpath: {}\n", f.rpath.join(":")));
            }
            if !f.runpath.is_empty() {
                out.push_str(&format!("  runpath: {}\n", f.runpath.join(":")));
            }
            for need in &f.version_needs {
                out.push_str(&format!(
                    "  versions from {}: {}\n",
                    need.file,
                    need.versions.join(", ")
                ));
            }
        }
        for f in &self.files {
            if let EmbeddedDeps::Present(list) = &f.dependencies {
                out.push_str(&dependency_table(&f.path, list));
            }
        }
        for problem in &self.problems {
            out.push_str(&format!("\nerror: {problem}\n"));
        }
        out
    }

    fn exit_kind(&self) -> ExitKind {
        if self.problems.is_empty() {
            ExitKind::Ok
        } else {
            ExitKind::CheckFailed
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Cursor, Read, Seek, SeekFrom};

    use super::*;

    /// A reader that counts the bytes read.
    struct Counted<'a> {
        inner: Cursor<&'a [u8]>,
        total: u64,
    }

    impl Read for Counted<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.total += n as u64;
            Ok(n)
        }
    }

    impl Seek for Counted<'_> {
        fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
            self.inner.seek(to)
        }
    }

    /// The test binary (a dynamic PIE) made to look static-pie: its `PT_INTERP` a `PT_NULL`,
    /// its `DT_NEEDED` entries `DT_DEBUG`, its version needs plain bytes; then a dependency
    /// list embedded.
    fn static_looking(data: &[u8]) -> Vec<u8> {
        use object::{Object, ObjectSection};
        let mut data = data.to_vec();
        let file = object::File::parse(data.as_slice()).unwrap();
        let phoff = u64::from_le_bytes(data[32..40].try_into().unwrap()) as usize;
        let phnum = u16::from_le_bytes(data[56..58].try_into().unwrap()) as usize;
        let dynamic = file
            .section_by_name(".dynamic")
            .unwrap()
            .file_range()
            .unwrap();
        let verneed = file.section_by_name(".gnu.version_r").unwrap().index().0;
        drop(file);
        for i in 0..phnum {
            let at = phoff + i * 56;
            if data[at..at + 4] == [3, 0, 0, 0] {
                data[at..at + 4].copy_from_slice(&[0; 4]);
            }
        }
        for at in (dynamic.0 as usize..(dynamic.0 + dynamic.1) as usize).step_by(16) {
            if data[at..at + 8] == 1u64.to_le_bytes() {
                data[at..at + 8].copy_from_slice(&21u64.to_le_bytes());
            }
        }
        let shoff = u64::from_le_bytes(data[40..48].try_into().unwrap()) as usize;
        let type_at = shoff + verneed * 64 + 4;
        data[type_at..type_at + 4].copy_from_slice(&1u32.to_le_bytes());
        let list = DepList {
            format: deps::FORMAT,
            packages: Vec::new(),
        };
        let mut out = Vec::new();
        let outcome = append::append_section(
            &mut Cursor::new(&data),
            deps::SECTION_NAME,
            &list.encode().unwrap(),
            &mut out,
        )
        .unwrap();
        assert_eq!(outcome, append::Appended::Written);
        out
    }

    #[test]
    fn a_static_binary_is_inspected_from_its_headers_as_parse_elf_reads_it_whole() {
        let own = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let data = static_looking(&own);
        let path = Path::new("app");
        let whole = parse_elf(path, &data).unwrap();
        assert_eq!(whole.linkage, Linkage::StaticPie);
        assert!(whole.dependencies.list().is_some(), "{whole:?}");
        let mut reader = Counted {
            inner: Cursor::new(&data),
            total: 0,
        };
        let headers = from_headers(path, &mut reader, data.len() as u64)
            .unwrap()
            .expect("a static binary is read from its headers");
        assert_eq!(headers, whole);
        // Header tables, names, notes and the section: a few KiB of a file of megabytes.
        assert!(data.len() > 4 << 20, "{}", data.len());
        assert!(reader.total < 256 << 10, "{} bytes read", reader.total);
        // Through the file, as `build` inspects what it copied.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app");
        std::fs::write(&file, &data).unwrap();
        assert_eq!(
            inspect_file(&file).unwrap(),
            ElfInfo {
                path: file.clone(),
                ..whole
            }
        );
    }

    #[test]
    fn a_dynamic_binary_is_read_whole_for_its_libraries() {
        let exe = std::env::current_exe().unwrap();
        let data = std::fs::read(&exe).unwrap();
        let mut reader = Counted {
            inner: Cursor::new(&data),
            total: 0,
        };
        assert_eq!(
            from_headers(&exe, &mut reader, data.len() as u64).unwrap(),
            None
        );
        let info = inspect_file(&exe).unwrap();
        assert_eq!(info, parse_elf(&exe, &data).unwrap());
        assert!(!info.needed.is_empty(), "{info:?}");
    }
}
