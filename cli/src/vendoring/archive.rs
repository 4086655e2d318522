//! `.crate` archives: read once into memory, proven against a digest, then read or extracted
//! entry by entry with every path checked, no links or devices, and a bound on the size.
//!
//! The same bytes that were hashed are the bytes extracted: nothing is read twice from disk.
//! Extraction inflates a `.crate` in one piece when its gzip trailer's size fits a budget all
//! threads share, never trusting that size beyond sizing the buffer; it never holds more.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result};
use rustix::fs::{Mode, OFlags};
use serde::{Deserialize, Serialize};

use crate::digest::{COPY_BUFFER_SIZE, Sha256Digest, copy_hashed};
use crate::lock::PackageId;
use crate::tarball::{LimitedReader, safe_entry_path};

/// The name of cargo's per-package checksum file in a `directory` source.
pub const CHECKSUM_FILE: &str = ".cargo-checksum.json";

/// The least a `.crate` may expand to before it counts as a decompression bomb.
pub const MIN_EXPANSION_LIMIT: u64 = 512 << 20;
/// How many times its compressed size a `.crate` may expand to, when that is more.
pub const EXPANSION_FACTOR: u64 = 20;
/// The most bytes of one file [`CrateArchive::read_file`] reads into memory.
pub const MAX_READ_FILE: u64 = 16 << 20;

/// The most bytes a `.crate` of `compressed` bytes may expand to.
pub fn expansion_limit(compressed: u64) -> u64 {
    MIN_EXPANSION_LIMIT.max(compressed.saturating_mul(EXPANSION_FACTOR))
}

/// How a package reached airlock, which decides the files cargo vendor would keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ArchiveKind {
    /// A registry `.crate`, byte for byte what the registry serves.
    Registry,
    /// A `.crate` that `cargo package` made from a git dependency at its locked commit.
    Git,
}

/// A `.crate` file in memory with its digest.
#[derive(Debug, Clone)]
pub struct CrateArchive {
    /// The package it holds.
    pub id: PackageId,
    /// Registry or git.
    pub kind: ArchiveKind,
    /// The gzipped tar.
    pub bytes: Vec<u8>,
    /// sha256 of `bytes`.
    pub digest: Sha256Digest,
    /// Where it was read from (for messages).
    pub origin: String,
    /// For a git package packaged here: what proves its files against the locked commit, to
    /// carry in a bundle.
    pub git_evidence: Option<Box<super::git_proof::GitEvidence>>,
}

impl CrateArchive {
    /// Wraps bytes read from `origin`, hashing them.
    pub fn new(id: PackageId, kind: ArchiveKind, bytes: Vec<u8>, origin: String) -> Self {
        let digest = Sha256Digest::of(&bytes);
        CrateArchive {
            id,
            kind,
            bytes,
            digest,
            origin,
            git_evidence: None,
        }
    }

    /// Whether cargo vendor keeps the file at `relative` (a path inside the package, with `/`).
    ///
    /// cargo's `vendor_this` (`ops/cargo_vendor.rs`) drops anything under a `.git` directory
    /// and every `.gitattributes` and `.gitignore`, at any depth (since "recursively filter git
    /// files in subdirectories", cargo 1.94), and `.cargo-ok` at the root; for git packages the
    /// files `cargo package` adds (`Cargo.toml.orig`, `.cargo_vcs_info.json`) are not part of
    /// the vendored sources either. The checksum file is always ours to write.
    pub fn keeps(&self, relative: &str) -> bool {
        Self::kept_as(self.kind, relative)
    }

    /// [`CrateArchive::keeps`] for an archive of `kind`.
    fn kept_as(kind: ArchiveKind, relative: &str) -> bool {
        if relative.split('/').any(|c| c == ".git") {
            return false;
        }
        let file_name = relative.rsplit('/').next().unwrap_or(relative);
        if matches!(file_name, ".gitattributes" | ".gitignore") {
            return false;
        }
        match relative {
            ".cargo-ok" | CHECKSUM_FILE => false,
            "Cargo.toml.orig" | ".cargo_vcs_info.json" => kind == ArchiveKind::Registry,
            _ => true,
        }
    }

    /// Visits every regular file the archive holds (those [`CrateArchive::keeps`] keeps), in
    /// archive order, with its path relative to the package root, whether it is executable,
    /// and a reader of its contents.
    ///
    /// Fails, naming the crate and the entry, on a path outside `NAME-VERSION/`, an absolute
    /// path or `..`, a link, a device or other special file, a duplicate path, a corrupt or
    /// truncated archive, or more expanded bytes than [`expansion_limit`].
    pub fn for_each_file(
        &self,
        mut visit: impl FnMut(&str, bool, &mut dyn Read) -> Result<()>,
    ) -> Result<()> {
        self.visit_files(self.kind, |path, executable, _, reader| {
            visit(path, executable, reader).map(|()| true)
        })
    }

    /// Visits every regular file `cargo package` put in the archive, as a registry package's
    /// are kept (so `Cargo.toml.orig` and `.cargo_vcs_info.json` too, whatever this archive's
    /// kind), with its size from the tar header and a reader of exactly that many bytes.
    pub fn for_each_packaged_file(
        &self,
        mut visit: impl FnMut(&str, u64, &mut dyn Read) -> Result<()>,
    ) -> Result<()> {
        self.visit_files(ArchiveKind::Registry, |path, _, size, reader| {
            visit(path, size, reader).map(|()| true)
        })
    }

    /// [`CrateArchive::for_each_file`] keeping what an archive of `keep_as` keeps, stopping
    /// early when `visit` returns false.
    fn visit_files(
        &self,
        keep_as: ArchiveKind,
        visit: impl FnMut(&str, bool, u64, &mut dyn Read) -> Result<bool>,
    ) -> Result<()> {
        let what = || format!("{} ({})", self.id, self.origin);
        visit_crate_files(&self.bytes, &self.id.dir_name(), &what, keep_as, visit)
    }
    /// The digest and size of every kept file, without writing anything.
    pub fn file_digests(&self) -> Result<PackageFiles> {
        let mut files = PackageFiles::default();
        self.for_each_file(|path, _, reader| {
            let (digest, len) = crate::digest::hash_reader(reader)?;
            files.insert(path, digest, len);
            Ok(())
        })?;
        Ok(files)
    }

    /// The contents of one file of the package (`Cargo.toml`), if the archive holds it; at most
    /// [`MAX_READ_FILE`] bytes.
    pub fn read_file(&self, wanted: &str) -> Result<Option<Vec<u8>>> {
        self.read_file_bounded(wanted, MAX_READ_FILE)
    }

    /// [`CrateArchive::read_file`] refusing a file larger than `max` bytes (reading at most one
    /// byte more).
    pub fn read_file_bounded(&self, wanted: &str, max: u64) -> Result<Option<Vec<u8>>> {
        let mut found = None;
        self.visit_files(self.kind, |path, _, _, reader| {
            if path != wanted {
                return Ok(true);
            }
            found = Some(read_bounded(reader, wanted, max)?);
            Ok(false)
        })?;
        Ok(found)
    }

    /// Extracts the package's files into `dest` (which must not exist yet), hashing each file
    /// as it is written.
    ///
    /// Each file costs three system calls (create with its final mode, one write, close) and
    /// each directory one `mkdir`, both relative to `dest`, opened once. A `.crate` whose gzip
    /// trailer's size fits its thread's share of [`WHOLE_INFLATE_BUDGET`] is inflated in one
    /// piece into the thread's buffer (one call into the inflater, no reads through the tar
    /// reader), and each file is hashed and written straight from there; a larger one is
    /// decompressed through one [`COPY_BUFFER_SIZE`] buffer, one write per buffer.
    pub fn extract_to(&self, dest: &Path) -> Result<PackageFiles> {
        Ok(self.extract_keeping_manifest(dest, false)?.0)
    }

    /// [`CrateArchive::extract_to`], also returning the package's `Cargo.toml` when `manifest`
    /// (at most [`MAX_READ_FILE`] bytes; None when it has none), read as it is extracted: the
    /// platform filter needs it, and reading it from the archive again would inflate it twice.
    pub fn extract_keeping_manifest(
        &self,
        dest: &Path,
        manifest: bool,
    ) -> Result<(PackageFiles, Option<Vec<u8>>)> {
        fs::create_dir_all(dest).with_context(|| format!("cannot create {}", dest.display()))?;
        // Files and directories are created relative to the package directory: the kernel
        // walks the entry's own components, not `dest`'s again for each file.
        let root = rustix::fs::open(
            dest,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(std::io::Error::from)
        .with_context(|| format!("cannot open {}", dest.display()))?;
        let mut files = PackageFiles::default();
        let mut created = HashSet::new();
        let mut kept = None;
        let written = |relative: &str| format!("cannot write {}", dest.join(relative).display());
        let mut create = |relative: &str, executable: bool| -> Result<File> {
            if let Some((parent, _)) = relative.rsplit_once('/') {
                create_dir_once(&root, dest, parent, &mut created)?;
            }
            // EXCL: an existing file, or a link in its place, is never written through.
            let flags =
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            let mode = Mode::from_raw_mode(if executable { 0o755 } else { 0o644 });
            let fd = rustix::fs::openat(&root, relative, flags, mode)
                .map_err(std::io::Error::from)
                .with_context(|| format!("cannot create {}", dest.join(relative).display()))?;
            Ok(File::from(fd))
        };
        let what = || format!("{} ({})", self.id, self.origin);
        let whole = INFLATE_BUFFER.with_borrow_mut(|buffer| -> Result<bool> {
            let Some(inflated) = inflate_whole(&self.bytes, buffer, &what)? else {
                return Ok(false);
            };
            let prefix = self.id.dir_name();
            visit_inflated_files(
                inflated,
                &prefix,
                &what,
                self.kind,
                |relative, executable, contents| {
                    if manifest && relative == "Cargo.toml" {
                        kept = Some(read_bounded(&mut &contents[..], relative, MAX_READ_FILE)?);
                    }
                    let mut file = create(relative, executable)?;
                    file.write_all(contents)
                        .with_context(|| written(relative))?;
                    files.insert(relative, Sha256Digest::of(contents), contents.len() as u64);
                    Ok(())
                },
            )?;
            Ok(true)
        })?;
        if whole {
            return Ok((files, kept));
        }
        let mut buffer = vec![0; COPY_BUFFER_SIZE];
        self.for_each_file(|relative, executable, reader| {
            let mut file = create(relative, executable)?;
            if manifest && relative == "Cargo.toml" {
                let bytes = read_bounded(reader, relative, MAX_READ_FILE)?;
                file.write_all(&bytes).with_context(|| written(relative))?;
                files.insert(relative, Sha256Digest::of(&bytes), bytes.len() as u64);
                kept = Some(bytes);
                return Ok(());
            }
            let (digest, len) =
                copy_hashed(reader, &mut file, &mut buffer).with_context(|| written(relative))?;
            files.insert(relative, digest, len);
            Ok(())
        })?;
        Ok((files, kept))
    }
}

/// The most bytes the buffers of whole-`.crate` inflates hold together, over every thread: a
/// `.crate` that would need more is inflated as a stream, so the memory this takes does not
/// grow with the number of cores or with what a gzip trailer claims.
pub const WHOLE_INFLATE_BUDGET: usize = 16 << 20;

/// Bytes the [`InflateBuffer`]s of every thread hold now (at most [`WHOLE_INFLATE_BUDGET`]).
static WHOLE_INFLATE_HELD: AtomicUsize = AtomicUsize::new(0);

/// A thread's buffer for whole-`.crate` inflates: its share of [`WHOLE_INFLATE_BUDGET`],
/// allocated zeroed the first time the thread inflates (by `calloc`: fresh pages from the
/// kernel, zero already, so nothing writes them here and a page becomes resident when an
/// inflate writes it) and kept, never grown or freed, until the thread ends. A fresh
/// buffer per `.crate` would cost a page fault per 4 KiB written, most of what inflating in
/// one piece saves; and freeing buffers of several MiB makes glibc's `malloc` raise its mmap
/// threshold, after which the `.crate` files read stay resident in its heap (the peak memory
/// of `cargo xtask bench scale` grew by more than the budget that way). Beside it, the
/// thread's libdeflate decompressor: about 32 KiB of tables, costly to set up per `.crate`.
struct InflateBuffer {
    /// The share, zeroed (libdeflate writes into an initialised slice).
    bytes: Vec<u8>,
    /// What it counts against [`WHOLE_INFLATE_BUDGET`].
    held: usize,
    inflater: Option<libdeflater::Decompressor>,
}

impl InflateBuffer {
    /// Whether the buffer can take `len` bytes, allocating this thread's share of the budget
    /// the first time (none is left for a thread beyond the budget's shares: it streams).
    fn fits(&mut self, len: usize) -> bool {
        if self.held == 0 {
            let share = WHOLE_INFLATE_BUDGET / rayon::current_num_threads().max(1);
            let reserved =
                WHOLE_INFLATE_HELD.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |held| {
                    held.checked_add(share)
                        .filter(|&total| total <= WHOLE_INFLATE_BUDGET)
                });
            if share == 0 || reserved.is_err() {
                return false;
            }
            self.held = share;
            self.bytes = vec![0; share];
        }
        len <= self.held
    }
}

impl Drop for InflateBuffer {
    fn drop(&mut self) {
        WHOLE_INFLATE_HELD.fetch_sub(self.held, Ordering::Relaxed);
    }
}

thread_local! {
    static INFLATE_BUFFER: RefCell<InflateBuffer> = const {
        RefCell::new(InflateBuffer {
            bytes: Vec::new(),
            held: 0,
            inflater: None,
        })
    };
}

/// Inflates the gzipped `.crate` `gz` in one piece into `buffer` with libdeflate when it can,
/// returning the tar; None when it is to be read as a stream instead: its trailer's size
/// (ISIZE, RFC 1952 section 2.3.1) is more than the thread's buffer holds, a header this does
/// not parse, data after the gzip member, or corrupt deflate data (the stream reads the first
/// two as it always did, and reports the last).
///
/// ISIZE is only what the archive claims: libdeflate writes into a slice of exactly that many
/// bytes and stops at its end. It checks the member's own trailer (CRC-32 and ISIZE) as the
/// stream decoder does, so what is inflated here is what the stream would read; an archive
/// that inflates to another size than claimed, or whose trailer does not match, is refused
/// as corrupt, naming it (`what`), before anything is written. libdeflate reports neither
/// where the member ended nor why it failed: a `.crate` it refuses (only a damaged or hostile
/// one, or one with data after its member) is inflated once more to tell those apart.
fn inflate_whole<'b>(
    gz: &[u8],
    buffer: &'b mut InflateBuffer,
    what: &dyn Fn() -> String,
) -> Result<Option<&'b [u8]>> {
    use libdeflater::DecompressionError;
    let Some(header) = gzip_header_len(gz) else {
        return Ok(None);
    };
    let Some(trailer) = gz.len().checked_sub(8).filter(|&t| t >= header) else {
        return Ok(None);
    };
    let mut claimed = [0; 4];
    claimed.copy_from_slice(&gz[gz.len() - 4..]);
    let claimed = u32::from_le_bytes(claimed) as usize;
    if !buffer.fits(claimed) {
        return Ok(None);
    }
    let inflater = buffer
        .inflater
        .get_or_insert_with(libdeflater::Decompressor::new);
    match inflater.gzip_decompress(gz, &mut buffer.bytes[..claimed]) {
        Ok(len) if len == claimed => return Ok(Some(&buffer.bytes[..len])),
        // The member's own trailer matched `len`, and the last four bytes do not: they are
        // not its trailer, so data follow the member.
        Ok(_) => return Ok(None),
        Err(_) => {}
    }
    // More than ISIZE, a trailer that does not match, corrupt deflate data, or data after the
    // member: inflating again with the whole buffer as room, then the deflate data alone
    // without the trailer, tells which.
    let out = &mut buffer.bytes[..];
    match inflater.gzip_decompress(gz, out) {
        // More than ISIZE, and the member's own trailer matches it: data follow the member.
        Ok(_) => Ok(None),
        Err(DecompressionError::InsufficientSpace) => Err(corrupt_size(
            what,
            claimed,
            format_args!("more than {}", buffer.held),
        )),
        Err(DecompressionError::BadData) => {
            match inflater.deflate_decompress(&gz[header..trailer], out) {
                Ok(len) if len != claimed => Err(corrupt_size(what, claimed, len)),
                // Whole deflate data of the claimed size, and a member's trailer (its CRC-32,
                // or its ISIZE when data follow it) that does not match them: the stream
                // refuses it too, after writing what came before.
                Ok(_) => Err(crate::error::input(format!(
                    "{} is corrupt: its gzip trailer does not match its contents; refusing to \
                     extract it (the archive is damaged or hostile)",
                    what()
                ))),
                Err(_) => Ok(None),
            }
        }
    }
}

fn corrupt_size(
    what: &dyn Fn() -> String,
    claimed: usize,
    found: impl std::fmt::Display,
) -> anyhow::Error {
    crate::error::input(format!(
        "{} is corrupt: its gzip trailer records {claimed} bytes inflated, its contents inflate \
         to {found}; refusing to extract it (the archive is damaged or hostile)",
        what()
    ))
}

/// The length of the gzip member header at the start of `gz` (RFC 1952 section 2.3), or None
/// when it is not one this reads (then the stream decoder judges it).
fn gzip_header_len(gz: &[u8]) -> Option<usize> {
    const FHCRC: u8 = 0x02;
    const FEXTRA: u8 = 0x04;
    const FNAME: u8 = 0x08;
    const FCOMMENT: u8 = 0x10;
    let [0x1f, 0x8b, 8, flags, ..] = *gz else {
        return None;
    };
    if flags & 0xe0 != 0 {
        return None;
    }
    let mut at = 10;
    if flags & FEXTRA != 0 {
        let len = gz.get(at..at + 2)?;
        at += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
    }
    for field in [FNAME, FCOMMENT] {
        if flags & field != 0 {
            at += gz.get(at..)?.iter().position(|&b| b == 0)? + 1;
        }
    }
    if flags & FHCRC != 0 {
        at += 2;
    }
    (at <= gz.len()).then_some(at)
}

/// Visits the regular files of the `.crate` `bytes` whose entries sit under `prefix/`
/// (`NAME-VERSION`), keeping what an archive of `keep_as` keeps; `what` names the archive in
/// errors. See [`CrateArchive::for_each_file`] for what is refused.
fn visit_crate_files(
    bytes: &[u8],
    prefix: &str,
    what: &dyn Fn() -> String,
    keep_as: ArchiveKind,
    mut visit: impl FnMut(&str, bool, u64, &mut dyn Read) -> Result<bool>,
) -> Result<()> {
    let limit = expansion_limit(bytes.len() as u64);
    let gz = flate2::read::GzDecoder::new(bytes);
    let mut tar = tar::Archive::new(LimitedReader::new(gz, limit));
    let mut seen = BTreeSet::new();
    let entries = tar
        .entries()
        .with_context(|| format!("{} is not a valid .crate archive", what()))?;
    for entry in entries {
        let mut entry = entry.with_context(|| format!("{} is corrupt or truncated", what()))?;
        let Some((relative, executable)) = kept_entry(&entry, prefix, what, keep_as, &mut seen)?
        else {
            continue;
        };
        let size = entry.size();
        let more = visit(&relative, executable, size, &mut entry)
            .with_context(|| format!("{}: cannot read `{relative}`", what()))?;
        if !more {
            return Ok(());
        }
    }
    // The tar ends before the gzip member does: read on to its trailer, which the decoder
    // checks (CRC-32 and ISIZE), so a lying trailer is refused here as in
    // [`inflate_whole`].
    std::io::copy(&mut tar.into_inner(), &mut std::io::sink()).map_err(|e| {
        crate::error::input(format!(
            "{} is corrupt: its gzip trailer does not match its contents ({e}); refusing to \
             extract it (the archive is damaged or hostile)",
            what()
        ))
    })?;
    Ok(())
}

/// [`visit_crate_files`] over the tar `inflated` already in memory, handing each kept file's
/// contents as the slice of `inflated` that holds them: nothing is copied before it is hashed
/// and written.
fn visit_inflated_files(
    inflated: &[u8],
    prefix: &str,
    what: &dyn Fn() -> String,
    keep_as: ArchiveKind,
    mut visit: impl FnMut(&str, bool, &[u8]) -> Result<()>,
) -> Result<()> {
    let mut tar = tar::Archive::new(std::io::Cursor::new(inflated));
    let mut seen = BTreeSet::new();
    // With seeking, the entries' data are skipped, not read: only the headers are parsed.
    let entries = tar
        .entries_with_seek()
        .with_context(|| format!("{} is not a valid .crate archive", what()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("{} is corrupt or truncated", what()))?;
        let Some((relative, executable)) = kept_entry(&entry, prefix, what, keep_as, &mut seen)?
        else {
            continue;
        };
        // A regular (or contiguous) entry's data follow its headers in one piece.
        let contents = usize::try_from(entry.raw_file_position())
            .ok()
            .zip(usize::try_from(entry.size()).ok())
            .and_then(|(start, len)| inflated.get(start..start.checked_add(len)?))
            .ok_or_else(|| {
                crate::error::input(format!(
                    "{} is corrupt or truncated: the archive ends inside `{relative}`",
                    what()
                ))
            })?;
        visit(&relative, executable, contents)
            .with_context(|| format!("{}: cannot read `{relative}`", what()))?;
    }
    Ok(())
}

/// The path (relative to the package root) of `entry` and whether it is executable, when it
/// is a regular file an archive of `keep_as` keeps; None for what is skipped (directories,
/// global headers, files cargo vendor drops). Refuses what [`CrateArchive::for_each_file`]
/// refuses, and a path `seen` holds already.
fn kept_entry<R: Read>(
    entry: &tar::Entry<'_, R>,
    prefix: &str,
    what: &dyn Fn() -> String,
    keep_as: ArchiveKind,
    seen: &mut BTreeSet<String>,
) -> Result<Option<(String, bool)>> {
    let raw_path = entry
        .path()
        .with_context(|| format!("{} has an entry with an unreadable path", what()))?
        .into_owned();
    let relative = safe_entry_path(&raw_path, Some(prefix))
        .map_err(|e| refuse(&what(), &raw_path, &e.to_string()))?;
    match entry.header().entry_type() {
        tar::EntryType::Directory | tar::EntryType::XGlobalHeader => return Ok(None),
        tar::EntryType::Regular | tar::EntryType::Continuous => {}
        tar::EntryType::Symlink | tar::EntryType::Link => {
            return Err(refuse(&what(), &raw_path, "is a link"));
        }
        _ => return Err(refuse(&what(), &raw_path, "is not a regular file")),
    }
    let relative = relative_string(&relative)
        .ok_or_else(|| refuse(&what(), &raw_path, "is not a UTF-8 path"))?;
    if relative.is_empty() || !CrateArchive::kept_as(keep_as, &relative) {
        return Ok(None);
    }
    if !seen.insert(relative.clone()) {
        return Err(refuse(&what(), &raw_path, "appears twice"));
    }
    let executable = entry
        .header()
        .mode()
        .map(|m| m & 0o111 != 0)
        .unwrap_or(false);
    Ok(Some((relative, executable)))
}

/// The `Cargo.toml` of the package in the `.crate` `bytes` (entries under `dir_name/`), if it
/// has one; at most `max` bytes. For a `.crate` whose package is not known yet (a bundle's).
pub fn packaged_manifest(
    bytes: &[u8],
    dir_name: &str,
    origin: &str,
    max: u64,
) -> Result<Option<Vec<u8>>> {
    let mut found = None;
    let what = || origin.to_owned();
    visit_crate_files(
        bytes,
        dir_name,
        &what,
        ArchiveKind::Registry,
        |path, _, _, reader| {
            if path != "Cargo.toml" {
                return Ok(true);
            }
            found = Some(read_bounded(reader, "Cargo.toml", max)?);
            Ok(false)
        },
    )?;
    Ok(found)
}

fn read_bounded(reader: &mut dyn Read, wanted: &str, max: u64) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    reader.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(crate::error::check_failed(format!(
            "`{wanted}` is larger than the {max} bytes airlock reads of it"
        )));
    }
    Ok(bytes)
}

/// Creates `dest/relative_dir` and its missing parents, each only the first time it is
/// needed (`created` remembers them), relative to `root`, `dest` opened. Each must not exist
/// yet: one that does, or a link in its place, fails.
fn create_dir_once(
    root: &OwnedFd,
    dest: &Path,
    relative_dir: &str,
    created: &mut HashSet<String>,
) -> Result<()> {
    if created.contains(relative_dir) {
        return Ok(());
    }
    if let Some((parent, _)) = relative_dir.rsplit_once('/') {
        create_dir_once(root, dest, parent, created)?;
    }
    rustix::fs::mkdirat(root, relative_dir, Mode::from_raw_mode(0o777))
        .map_err(std::io::Error::from)
        .with_context(|| format!("cannot create {}", dest.join(relative_dir).display()))?;
    created.insert(relative_dir.to_owned());
    Ok(())
}

fn refuse(what: &str, raw_path: &Path, why: &str) -> anyhow::Error {
    crate::error::check_failed(format!(
        "{what}: entry `{}` {why}; refusing to extract it (the archive is damaged or hostile)",
        raw_path.display()
    ))
}

fn relative_string(path: &Path) -> Option<String> {
    let parts: Option<Vec<&str>> = path.components().map(|c| c.as_os_str().to_str()).collect();
    Some(parts?.join("/"))
}

/// The files of one package: relative path (with `/`) → digest, and their total size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackageFiles {
    /// Digest of each file.
    pub files: BTreeMap<String, Sha256Digest>,
    /// Total bytes.
    pub bytes: u64,
}

impl PackageFiles {
    /// Records one file.
    pub fn insert(&mut self, path: &str, digest: Sha256Digest, len: u64) {
        self.files.insert(path.to_owned(), digest);
        self.bytes += len;
    }
}

/// cargo's `.cargo-checksum.json`: the digest of every file, and the package's `.crate`
/// checksum (null for git packages). Serialised exactly as cargo writes it (compact, keys
/// sorted) so a vendored directory matches `cargo vendor`'s byte for byte.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CargoChecksum {
    /// Relative path → bare hex sha256.
    pub files: BTreeMap<String, String>,
    /// The `.crate` sha256 as bare hex, or null.
    pub package: Option<String>,
}

impl CargoChecksum {
    /// The checksum file for `files` with package checksum `package`.
    pub fn new(files: &PackageFiles, package: Option<Sha256Digest>) -> Self {
        CargoChecksum {
            files: files
                .files
                .iter()
                .map(|(path, digest)| (path.clone(), digest.hex()))
                .collect(),
            package: package.map(|d| d.hex()),
        }
    }

    /// Writes it as `dir/.cargo-checksum.json`.
    pub fn write_to(&self, dir: &Path) -> Result<()> {
        let path = dir.join(CHECKSUM_FILE);
        let json = serde_json::to_vec(self).context("cannot serialise the checksum file")?;
        fs::write(&path, json).with_context(|| format!("cannot write {}", path.display()))
    }

    /// Reads `dir/.cargo-checksum.json`.
    pub fn read_from(dir: &Path) -> Result<CargoChecksum> {
        let path = dir.join(CHECKSUM_FILE);
        let bytes = crate::input::read_regular(
            &path,
            crate::input::Links::Refuse,
            crate::input::MAX_TEXT_INPUT,
        )?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a cargo checksum file", path.display()))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::lock::Source;

    pub fn id(name: &str, version: &str) -> PackageId {
        PackageId {
            name: name.into(),
            version: version.parse().unwrap(),
            source: Source::Registry {
                url: crate::lock::CRATES_IO_INDEX.into(),
            },
        }
    }

    /// A gzipped tar with raw entries (path, type, contents), paths written unchecked.
    pub fn crate_bytes(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(gz);
        for (path, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(if *kind == tar::EntryType::Regular {
                data.len() as u64
            } else {
                0
            });
            h.set_mode(0o644);
            // Write the name bytes directly so hostile paths survive.
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            if *kind == tar::EntryType::Symlink {
                h.set_link_name("../../etc/passwd").unwrap();
            }
            h.set_cksum();
            builder.append(&h, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn archive(entries: &[(&str, tar::EntryType, &[u8])]) -> CrateArchive {
        CrateArchive::new(
            id("demo", "1.0.0"),
            ArchiveKind::Registry,
            crate_bytes(entries),
            "demo-1.0.0.crate".into(),
        )
    }

    #[test]
    fn extracts_and_hashes_kept_files() {
        let a = archive(&[
            (
                "demo-1.0.0/Cargo.toml",
                tar::EntryType::Regular,
                b"[package]",
            ),
            (
                "demo-1.0.0/src/lib.rs",
                tar::EntryType::Regular,
                b"fn x() {}",
            ),
            ("demo-1.0.0/.gitignore", tar::EntryType::Regular, b"target"),
            ("demo-1.0.0/Cargo.toml.orig", tar::EntryType::Regular, b"o"),
            // cargo vendor drops git files at any depth, `.cargo-ok` only at the root.
            ("demo-1.0.0/tests/.gitignore", tar::EntryType::Regular, b"x"),
            (
                "demo-1.0.0/tests/a/.gitattributes",
                tar::EntryType::Regular,
                b"x",
            ),
            (
                "demo-1.0.0/tests/a/.git/config",
                tar::EntryType::Regular,
                b"x",
            ),
            ("demo-1.0.0/tests/a/b/c.rs", tar::EntryType::Regular, b"c"),
            ("demo-1.0.0/tests/a/d.rs", tar::EntryType::Regular, b"d"),
            ("demo-1.0.0/tests/.cargo-ok", tar::EntryType::Regular, b"k"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let files = a.extract_to(&dir.path().join("demo")).unwrap();
        let names: Vec<_> = files.files.keys().cloned().collect();
        assert_eq!(
            names,
            [
                "Cargo.toml",
                "Cargo.toml.orig",
                "src/lib.rs",
                "tests/.cargo-ok",
                "tests/a/b/c.rs",
                "tests/a/d.rs"
            ]
        );
        assert_eq!(files.bytes, 9 + 9 + 1 + 1 + 1 + 1);
        assert_eq!(
            fs::read(dir.path().join("demo/tests/a/b/c.rs")).unwrap(),
            b"c"
        );
        assert!(!dir.path().join("demo/tests/.gitignore").exists());
        assert!(!dir.path().join("demo/tests/a/.git").exists());
        assert_eq!(files.files["src/lib.rs"], Sha256Digest::of(b"fn x() {}"));
        assert_eq!(
            fs::read(dir.path().join("demo/src/lib.rs")).unwrap(),
            b"fn x() {}"
        );
        assert!(!dir.path().join("demo/.gitignore").exists());
        assert_eq!(a.file_digests().unwrap(), files);
        assert_eq!(a.read_file("Cargo.toml").unwrap().unwrap(), b"[package]");

        let git = CrateArchive {
            kind: ArchiveKind::Git,
            ..a
        };
        assert!(
            !git.file_digests()
                .unwrap()
                .files
                .contains_key("Cargo.toml.orig")
        );
    }

    #[test]
    fn refuses_hostile_entries() {
        let cases: [(&str, tar::EntryType); 5] = [
            ("demo-1.0.0/../../evil", tar::EntryType::Regular),
            ("/etc/evil", tar::EntryType::Regular),
            ("other-1.0.0/src/lib.rs", tar::EntryType::Regular),
            ("demo-1.0.0/link", tar::EntryType::Symlink),
            ("demo-1.0.0/dev", tar::EntryType::Char),
        ];
        for (path, kind) in cases {
            let a = archive(&[(path, kind, b"x")]);
            let dir = tempfile::tempdir().unwrap();
            let err = a.extract_to(&dir.path().join("demo")).unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains("demo v1.0.0"), "{text}");
            assert!(text.contains("refusing"), "{path}: {text}");
            assert_eq!(
                crate::error::exit_kind(&err),
                crate::error::ExitKind::CheckFailed
            );
        }
        let dup = archive(&[
            ("demo-1.0.0/a", tar::EntryType::Regular, b"1"),
            ("demo-1.0.0/a", tar::EntryType::Regular, b"2"),
        ]);
        assert!(format!("{:#}", dup.file_digests().unwrap_err()).contains("twice"));
    }

    #[test]
    fn extracts_files_larger_than_the_copy_buffer() {
        let big: Vec<u8> = (0..COPY_BUFFER_SIZE * 2 + 123)
            .map(|i| (i % 251) as u8)
            .collect();
        let a = archive(&[
            ("demo-1.0.0/data/big.bin", tar::EntryType::Regular, &big),
            ("demo-1.0.0/data/empty", tar::EntryType::Regular, b""),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let files = a.extract_to(&dir.path().join("demo")).unwrap();
        assert_eq!(files.files["data/big.bin"], Sha256Digest::of(&big));
        assert_eq!(files.files["data/empty"], Sha256Digest::of(b""));
        assert_eq!(files.bytes, big.len() as u64);
        assert_eq!(fs::read(dir.path().join("demo/data/big.bin")).unwrap(), big);
        assert_eq!(a.file_digests().unwrap(), files);
    }

    #[test]
    fn truncated_archive_is_an_error() {
        let mut a = archive(&[(
            "demo-1.0.0/src/lib.rs",
            tar::EntryType::Regular,
            &[7u8; 5000],
        )]);
        a.bytes.truncate(a.bytes.len() / 2);
        let err = a.file_digests().unwrap_err();
        assert!(format!("{err:#}").contains("demo v1.0.0"), "{err:#}");
    }

    /// The gzip trailer's size (ISIZE) sizes the whole-buffer inflate, and the archive alone
    /// claims it: one smaller or larger than what the deflate data hold is refused as corrupt,
    /// naming the crate, before any file is written; one beyond the budget is streamed, and the
    /// stream's own trailer check refuses it.
    #[test]
    fn lying_gzip_size_is_refused_before_anything_is_written() {
        let a = archive(&[(
            "demo-1.0.0/src/lib.rs",
            tar::EntryType::Regular,
            &[7u8; 5000],
        )]);
        let at = a.bytes.len() - 4;
        let real = u32::from_le_bytes(a.bytes[at..].try_into().unwrap());
        for (claimed, streamed) in [
            (real - 512, false),
            (real + 512, false),
            (0, false),
            (u32::MAX, true),
        ] {
            let mut lying = a.clone();
            lying.bytes[at..].copy_from_slice(&claimed.to_le_bytes());
            let dir = tempfile::tempdir().unwrap();
            let dest = dir.path().join("demo");
            let err = lying.extract_to(&dest).unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains("demo v1.0.0 (demo-1.0.0.crate)"), "{text}");
            assert!(text.contains("corrupt"), "{claimed}: {text}");
            assert_eq!(crate::error::exit_kind(&err), crate::error::ExitKind::Input);
            if !streamed {
                assert!(text.contains(&format!("records {claimed} bytes")), "{text}");
                assert!(!dest.join("src").exists(), "{claimed}: a file was written");
            }
        }
        // The same archive with its true size extracts.
        let dir = tempfile::tempdir().unwrap();
        let files = a.extract_to(&dir.path().join("demo")).unwrap();
        assert_eq!(files.files["src/lib.rs"], Sha256Digest::of(&[7u8; 5000]));
    }

    /// A gzip stream that is whole around a tar cut off inside a file's contents: the
    /// whole-buffer inflate succeeds, and the entry that runs past the end is refused, naming
    /// the crate and the file, never read out of bounds.
    #[test]
    fn tar_cut_short_inside_a_whole_gzip_is_an_error() {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in [
            ("demo-1.0.0/Cargo.toml", &b"[package]"[..]),
            ("demo-1.0.0/src/lib.rs", &[7u8; 5000][..]),
        ] {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            builder.append_data(&mut h, path, data).unwrap();
        }
        let mut tar = builder.into_inner().unwrap();
        // Past Cargo.toml's header and block and lib.rs's header, inside its contents.
        tar.truncate(512 * 3 + 1000);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        let a = CrateArchive::new(
            id("demo", "1.0.0"),
            ArchiveKind::Registry,
            gz.finish().unwrap(),
            "demo-1.0.0.crate".into(),
        );
        let dir = tempfile::tempdir().unwrap();
        let err = a.extract_to(&dir.path().join("demo")).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("demo v1.0.0 (demo-1.0.0.crate)"), "{text}");
        assert!(text.contains("truncated"), "{text}");
        assert!(text.contains("src/lib.rs"), "{text}");
        assert_eq!(crate::error::exit_kind(&err), crate::error::ExitKind::Input);
        // The stream reader refuses it too.
        assert!(a.file_digests().is_err());
    }

    /// A buffer for [`inflate_whole`] outside [`WHOLE_INFLATE_BUDGET`], so what a test sees does
    /// not hang on what other tests hold: never counted, so never given back (nor freed).
    fn unbudgeted(len: usize) -> std::mem::ManuallyDrop<InflateBuffer> {
        std::mem::ManuallyDrop::new(InflateBuffer {
            bytes: vec![0; len],
            held: len,
            inflater: None,
        })
    }

    /// The tar inside the gzip member of `gz`, as the stream decoder reads it.
    fn stream_inflated(gz: &[u8]) -> Vec<u8> {
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(gz)
            .read_to_end(&mut tar)
            .unwrap();
        tar
    }

    /// Data after the gzip member, which the stream decoder (one member, as cargo reads a
    /// `.crate`) never reads: the last four bytes are then not the member's ISIZE. libdeflate
    /// does not say where the member ended; its own trailer matching while those four bytes do
    /// not tells, and the `.crate` is streamed. When they happen to equal the member's size it
    /// is inflated in one piece, and what it yields is what the stream reads.
    #[test]
    fn data_after_the_gzip_member_is_read_as_the_stream_reads_it() {
        let a = archive(&[
            (
                "demo-1.0.0/Cargo.toml",
                tar::EntryType::Regular,
                b"[package]",
            ),
            (
                "demo-1.0.0/src/lib.rs",
                tar::EntryType::Regular,
                &[7u8; 5000],
            ),
        ]);
        let size = a.bytes[a.bytes.len() - 4..].to_vec();
        let tar = stream_inflated(&a.bytes);
        let what = || "demo-1.0.0.crate".to_owned();
        for (tail, whole) in [
            (b"trailing garbage".to_vec(), false),
            ([b"more".to_vec(), size].concat(), true),
        ] {
            let mut b = a.clone();
            b.bytes.extend(&tail);
            let mut buffer = unbudgeted(1 << 20);
            let inflated = inflate_whole(&b.bytes, &mut buffer, &what).unwrap();
            assert_eq!(inflated, whole.then_some(&tar[..]), "{tail:?}");
            let dir = tempfile::tempdir().unwrap();
            let files = b.extract_to(&dir.path().join("demo")).unwrap();
            assert_eq!(files, a.file_digests().unwrap());
        }
    }

    /// A member whose trailer's CRC-32 does not match its contents, its size right: refused
    /// in one piece, naming the crate, before any file is written (the stream refuses it after
    /// writing what comes before its end).
    #[test]
    fn gzip_crc_mismatch_is_refused_before_anything_is_written() {
        let mut a = archive(&[(
            "demo-1.0.0/src/lib.rs",
            tar::EntryType::Regular,
            &[7u8; 5000],
        )]);
        let crc = a.bytes.len() - 8;
        a.bytes[crc] ^= 1;
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("demo");
        let err = a.extract_to(&dest).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("demo v1.0.0 (demo-1.0.0.crate)"), "{text}");
        assert!(text.contains("trailer does not match"), "{text}");
        assert_eq!(crate::error::exit_kind(&err), crate::error::ExitKind::Input);
        assert!(!dest.join("src").exists(), "a file was written");
        assert!(a.file_digests().is_err(), "the stream refuses it too");
    }

    /// Deflate data cut short inside a member whose trailer is whole and claims the full size:
    /// libdeflate refuses it, and so does the stream, naming the crate.
    #[test]
    fn deflate_data_cut_short_under_a_whole_trailer_is_an_error() {
        let a = archive(&[(
            "demo-1.0.0/src/lib.rs",
            tar::EntryType::Regular,
            &(0..20_000u32)
                .map(|i| (i * i % 251) as u8)
                .collect::<Vec<_>>(),
        )]);
        let header = gzip_header_len(&a.bytes).unwrap();
        let trailer = a.bytes.len() - 8;
        let mut cut = a.clone();
        cut.bytes = [
            &a.bytes[..header + (trailer - header) / 2],
            &a.bytes[trailer..],
        ]
        .concat();
        let what = || "demo-1.0.0.crate".to_owned();
        let mut buffer = unbudgeted(1 << 20);
        assert_eq!(inflate_whole(&cut.bytes, &mut buffer, &what).unwrap(), None);
        let dir = tempfile::tempdir().unwrap();
        let err = cut.extract_to(&dir.path().join("demo")).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("demo v1.0.0 (demo-1.0.0.crate)"), "{text}");
        assert_eq!(crate::error::exit_kind(&err), crate::error::ExitKind::Input);
    }

    /// Optional gzip header fields (RFC 1952 section 2.3) are skipped by the whole-buffer
    /// inflate, and it extracts what the stream reader reads.
    #[test]
    fn whole_buffer_inflate_reads_optional_gzip_header_fields() {
        let plain = archive(&[
            (
                "demo-1.0.0/Cargo.toml",
                tar::EntryType::Regular,
                b"[package]",
            ),
            (
                "demo-1.0.0/src/lib.rs",
                tar::EntryType::Regular,
                &[3u8; 70_000],
            ),
        ]);
        let tar = stream_inflated(&plain.bytes);
        let mut gz = flate2::GzBuilder::new()
            .filename("demo-1.0.0.tar")
            .comment("made here")
            .extra(vec![1, 2, 3])
            .write(Vec::new(), flate2::Compression::best());
        gz.write_all(&tar).unwrap();
        let bytes = gz.finish().unwrap();
        assert_eq!(bytes[3] & 0x1c, 0x1c, "FEXTRA, FNAME and FCOMMENT set");
        assert_eq!(gzip_header_len(&bytes), Some(10 + 2 + 3 + 15 + 10));
        let a = CrateArchive::new(plain.id.clone(), plain.kind, bytes, plain.origin.clone());
        let dir = tempfile::tempdir().unwrap();
        let files = a.extract_to(&dir.path().join("demo")).unwrap();
        assert_eq!(files, plain.file_digests().unwrap());
        assert_eq!(
            fs::read(dir.path().join("demo/src/lib.rs")).unwrap(),
            [3u8; 70_000]
        );
    }

    #[test]
    fn checksum_file_matches_cargo_format() {
        let mut files = PackageFiles::default();
        files.insert("src/lib.rs", Sha256Digest::of(b""), 0);
        files.insert("Cargo.toml", Sha256Digest::of(b"x"), 1);
        let sum = CargoChecksum::new(&files, Some(Sha256Digest::of(b"crate")));
        let json = String::from_utf8(serde_json::to_vec(&sum).unwrap()).unwrap();
        assert!(json.starts_with("{\"files\":{\"Cargo.toml\":\""), "{json}");
        assert!(json.ends_with(&format!(
            "\"package\":\"{}\"}}",
            Sha256Digest::of(b"crate").hex()
        )));
        let git = CargoChecksum::new(&files, None);
        assert!(
            serde_json::to_string(&git)
                .unwrap()
                .ends_with("\"package\":null}")
        );
    }

    /// An entry path made of pieces that attack extraction: `..`, `.`, empty components,
    /// absolute roots, the package prefix, backslashes.
    fn hostile_path() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let component = prop_oneof![
            Just("demo-1.0.0".to_owned()),
            Just("..".to_owned()),
            Just(".".to_owned()),
            Just(String::new()),
            Just("src".to_owned()),
            Just("..\\x".to_owned()),
            Just(".git".to_owned()),
            "[a-z.]{1,6}",
        ];
        (
            prop_oneof![Just(""), Just("/"), Just("./"), Just("//")],
            proptest::collection::vec(component, 1..6),
        )
            .prop_map(|(lead, parts)| format!("{lead}{}", parts.join("/")))
            .prop_filter("fits a tar name field", |p| p.len() <= 100)
    }

    fn entry_type() -> impl proptest::strategy::Strategy<Value = tar::EntryType> {
        use proptest::prelude::*;
        prop_oneof![
            Just(tar::EntryType::Regular),
            Just(tar::EntryType::Directory),
            Just(tar::EntryType::Symlink),
            Just(tar::EntryType::Link),
            Just(tar::EntryType::Char),
            Just(tar::EntryType::Block),
            Just(tar::EntryType::Fifo),
            Just(tar::EntryType::Continuous),
        ]
    }

    proptest::proptest! {
        #[test]
        fn prop_safe_entry_paths_stay_inside(raw in hostile_path(), prefixed in proptest::bool::ANY) {
            let prefix = prefixed.then_some("demo-1.0.0");
            if let Ok(relative) = crate::tarball::safe_entry_path(Path::new(&raw), prefix) {
                proptest::prop_assert!(relative.is_relative());
                proptest::prop_assert!(relative
                    .components()
                    .all(|c| matches!(c, std::path::Component::Normal(_))));
                let dest = Path::new("/dest/demo");
                proptest::prop_assert!(dest.join(&relative).starts_with(dest));
            }
        }

        #[test]
        fn prop_crate_extraction_never_writes_outside(
            entries in proptest::collection::vec((hostile_path(), entry_type()), 1..8)
        ) {
            let temp = tempfile::tempdir().unwrap();
            let outside = temp.path().join("outside");
            fs::create_dir_all(&outside).unwrap();
            fs::write(outside.join("sentinel"), b"keep").unwrap();
            let dest = temp.path().join("root/demo");
            let raw: Vec<(&str, tar::EntryType, &[u8])> = entries
                .iter()
                .map(|(p, k)| (p.as_str(), *k, &b"pwned"[..]))
                .collect();
            let a = archive(&raw);
            let result = a.extract_to(&dest);
            // Whatever happened, nothing exists outside `root/demo` but what was there, and
            // nothing extracted is a link, a device or a FIFO.
            for entry in walkdir::WalkDir::new(temp.path()) {
                let entry = entry.unwrap();
                let path = entry.path();
                let allowed = path == temp.path()
                    || path == temp.path().join("root")
                    || path.starts_with(&dest)
                    || path.starts_with(&outside);
                proptest::prop_assert!(allowed, "{} written for {entries:?}", path.display());
                let kind = entry.file_type();
                proptest::prop_assert!(kind.is_dir() || kind.is_file(), "{}", path.display());
            }
            proptest::prop_assert_eq!(fs::read(outside.join("sentinel")).unwrap(), b"keep");
            proptest::prop_assert_eq!(fs::read_dir(&outside).unwrap().count(), 1);
            if let Err(err) = result {
                let kind = crate::error::exit_kind(&err);
                proptest::prop_assert!(
                    kind == crate::error::ExitKind::CheckFailed || kind == crate::error::ExitKind::Input,
                    "{err:#}"
                );
            }
        }
    }
}
