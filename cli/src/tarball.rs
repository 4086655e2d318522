//! Deterministic tar writing and safe tar reading, shared by layers, bundles and archives.
//!
//! Determinism lives here: one function builds every header (fixed mtime, uid/gid 0, no user
//! or group names, fixed modes) and entries are always written sorted by path, with their
//! parent directories implied. Safety lives here too: no entry path read from a tar may be
//! absolute, contain `..`, or leave its destination.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::digest::{HashingReader, Sha256Digest};
use crate::error;
use crate::input::{self, Links, RegularFile};

/// Mode of regular files in every archive airlock writes.
pub const FILE_MODE: u32 = 0o644;
/// Mode of executables and directories.
pub const EXEC_MODE: u32 = 0o755;

/// Where an entry's bytes come from.
#[derive(Debug, Clone)]
pub enum Contents {
    /// Bytes in memory.
    Bytes(Vec<u8>),
    /// A file on disk, streamed when written; its own mode and mtime are ignored.
    File(PathBuf),
    /// A file on disk whose bytes were checked (and hashed) before: streamed when written, so
    /// a large binary is never held in memory, and refused unless the bytes streamed still
    /// have that digest (what ships is what was checked).
    Checked(PathBuf, Sha256Digest),
    /// A file on disk judged from some of its bytes (an ELF file's headers): streamed when
    /// written, and refused unless it still has the size and, at each offset, the bytes it
    /// was judged by (what ships is what was judged; the rest was never read, so never judged,
    /// and is not hashed twice).
    Pinned(PathBuf, Arc<Pinned>),
}

/// A file's size and the bytes at some of its offsets, as they were when it was judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// The size.
    pub size: u64,
    /// Offsets and the bytes there (ranges may overlap).
    pub ranges: Vec<(u64, Vec<u8>)>,
}

/// One entry of a [`TarBuilder`].
#[derive(Debug, Clone)]
pub enum Entry {
    /// A regular file.
    File {
        /// Its contents.
        contents: Contents,
        /// Its permission bits.
        mode: u32,
    },
    /// A directory.
    Dir {
        /// Its permission bits (0o1777 for `/tmp`).
        mode: u32,
    },
    /// A symbolic link.
    Symlink {
        /// The link target, written as is.
        target: String,
    },
}

/// Collects entries, then writes them sorted, with a header from [`header`] each.
///
/// Paths are relative (`etc/passwd`, `bin/app`); missing parent directories are added with
/// mode 0755 so every extractor sees the same tree.
#[derive(Debug, Default, Clone)]
pub struct TarBuilder {
    entries: BTreeMap<String, Entry>,
    /// Numeric owners other than root (a home directory owned by its user); no names, so the
    /// host's user database never enters the archive.
    owners: BTreeMap<String, (u64, u64)>,
}

impl TarBuilder {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) an entry at `path`.
    pub fn insert(&mut self, path: &str, entry: Entry) -> &mut Self {
        let path = path.trim_start_matches("./").trim_matches('/').to_owned();
        self.entries.insert(path, entry);
        self
    }

    /// Adds a regular file from memory.
    pub fn file(&mut self, path: &str, bytes: impl Into<Vec<u8>>, mode: u32) -> &mut Self {
        self.insert(
            path,
            Entry::File {
                contents: Contents::Bytes(bytes.into()),
                mode,
            },
        )
    }

    /// Adds a regular file streamed from `source` when written.
    pub fn file_from_disk(&mut self, path: &str, source: &Path, mode: u32) -> &mut Self {
        self.insert(
            path,
            Entry::File {
                contents: Contents::File(source.to_path_buf()),
                mode,
            },
        )
    }

    /// Adds a regular file streamed from `source` when written, whose bytes must still hash to
    /// `digest` then (see [`Contents::Checked`]).
    pub fn file_checked(
        &mut self,
        path: &str,
        source: &Path,
        digest: Sha256Digest,
        mode: u32,
    ) -> &mut Self {
        self.insert(
            path,
            Entry::File {
                contents: Contents::Checked(source.to_path_buf(), digest),
                mode,
            },
        )
    }

    /// Adds a regular file streamed from `source` when written, which must then still have the
    /// size and bytes `pinned` holds (see [`Contents::Pinned`]).
    pub fn file_pinned(
        &mut self,
        path: &str,
        source: &Path,
        pinned: Arc<Pinned>,
        mode: u32,
    ) -> &mut Self {
        self.insert(
            path,
            Entry::File {
                contents: Contents::Pinned(source.to_path_buf(), pinned),
                mode,
            },
        )
    }

    /// Adds a directory.
    pub fn dir(&mut self, path: &str, mode: u32) -> &mut Self {
        self.insert(path, Entry::Dir { mode })
    }

    /// Gives the entry at `path` the numeric owner `uid:gid` instead of `0:0`.
    pub fn owner(&mut self, path: &str, uid: u64, gid: u64) -> &mut Self {
        let path = path.trim_start_matches("./").trim_matches('/').to_owned();
        self.owners.insert(path, (uid, gid));
        self
    }

    /// Whether nothing was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The bytes of its files, those on disk as the file system gives their size now (one
    /// that cannot be read counts nothing: writing it fails; a pinned one its pinned size):
    /// a compressor's hint of how much is coming, the headers aside.
    pub fn file_bytes(&self) -> u64 {
        self.entries
            .values()
            .map(|entry| match entry {
                Entry::File {
                    contents: Contents::Bytes(bytes),
                    ..
                } => bytes.len() as u64,
                Entry::File {
                    contents: Contents::File(path) | Contents::Checked(path, _),
                    ..
                } => std::fs::metadata(path).map_or(0, |m| m.len()),
                Entry::File {
                    contents: Contents::Pinned(_, pinned),
                    ..
                } => pinned.size,
                Entry::Dir { .. } | Entry::Symlink { .. } => 0,
            })
            .sum()
    }

    /// The entries with implied parent directories, in the order they are written.
    fn complete_entries(&self) -> BTreeMap<String, Entry> {
        let mut all = self.entries.clone();
        for path in self.entries.keys() {
            let mut parent = Path::new(path).parent();
            while let Some(dir) = parent.filter(|d| !d.as_os_str().is_empty()) {
                all.entry(dir.to_string_lossy().into_owned())
                    .or_insert(Entry::Dir { mode: EXEC_MODE });
                parent = dir.parent();
            }
        }
        all
    }

    /// Writes the archive (with its end-of-archive blocks) to `out`; every header's mtime is
    /// `mtime`.
    pub fn write_to<W: Write>(&self, out: W, mtime: u64) -> Result<W> {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Deterministic);
        for (path, entry) in self.complete_entries() {
            let owned = |mut h: tar::Header| {
                if let Some(&(uid, gid)) = self.owners.get(&path) {
                    h.set_uid(uid);
                    h.set_gid(gid);
                }
                h
            };
            match entry {
                Entry::Dir { mode } => {
                    let mut h = owned(header(tar::EntryType::Directory, 0, mode, mtime));
                    builder
                        .append_data(&mut h, format!("{path}/"), io::empty())
                        .with_context(|| format!("cannot add directory {path} to the archive"))?;
                }
                Entry::File { contents, mode } => {
                    let (source, expected) = match contents {
                        Contents::Bytes(bytes) => {
                            let mut h = owned(header(
                                tar::EntryType::Regular,
                                bytes.len() as u64,
                                mode,
                                mtime,
                            ));
                            builder
                                .append_data(&mut h, &path, bytes.as_slice())
                                .with_context(|| format!("cannot add {path} to the archive"))?;
                            continue;
                        }
                        Contents::File(source) => (source, Check::None),
                        Contents::Checked(source, digest) => (source, Check::Digest(digest)),
                        Contents::Pinned(source, pinned) => (source, Check::Pinned(pinned)),
                    };
                    // Checked when it was added, opened again now: a FIFO or device put in its
                    // place since must not hang the write or never end it.
                    let RegularFile { file, size: len } =
                        input::open_regular(&source, Links::Follow)?;
                    if let Check::Pinned(pinned) = &expected
                        && pinned.size != len
                    {
                        return Err(changed(
                            &source,
                            &format!("it is now {len} bytes, not {}", pinned.size),
                        ));
                    }
                    let mut h = owned(header(tar::EntryType::Regular, len, mode, mtime));
                    // Large reads: `tar` copies through an 8 KiB buffer, a read call each.
                    let file = io::BufReader::with_capacity(COPY_BUFFER, file.take(len));
                    let added = |e: io::Error| {
                        anyhow::Error::new(e)
                            .context(format!("cannot add {} to the archive", source.display()))
                    };
                    match expected {
                        Check::None => builder.append_data(&mut h, &path, file).map_err(added)?,
                        Check::Digest(expected) => {
                            let mut reader = HashingReader::new(file);
                            builder
                                .append_data(&mut h, &path, &mut reader)
                                .map_err(added)?;
                            let (digest, _, _) = reader.finish();
                            if digest != expected {
                                return Err(changed(
                                    &source,
                                    &format!("its bytes now hash to {digest}, not {expected}"),
                                ));
                            }
                        }
                        Check::Pinned(pinned) => {
                            let mut reader = PinnedReader::new(file, &pinned);
                            builder
                                .append_data(&mut h, &path, &mut reader)
                                .map_err(added)?;
                            if let Some(why) = reader.finish() {
                                return Err(changed(&source, &why));
                            }
                        }
                    }
                }
                Entry::Symlink { target } => {
                    let mut h = header(tar::EntryType::Symlink, 0, 0o777, mtime);
                    builder
                        .append_link(&mut h, &path, &target)
                        .with_context(|| format!("cannot add link {path} to the archive"))?;
                }
            }
        }
        builder.into_inner().context("cannot finish the archive")
    }

    /// The archive as bytes.
    pub fn to_bytes(&self, mtime: u64) -> Result<Vec<u8>> {
        self.write_to(Vec::new(), mtime)
    }
}

/// How much of a file on disk one read takes while it is added.
const COPY_BUFFER: usize = 256 << 10;

/// What a file streamed from disk is checked against.
enum Check {
    None,
    Digest(Sha256Digest),
    Pinned(Arc<Pinned>),
}

/// The error for a file that is not as it was when airlock checked it.
fn changed(source: &Path, why: &str) -> anyhow::Error {
    error::input(format!(
        "{} changed after airlock checked it ({why}); run again once nothing writes to it",
        source.display()
    ))
}

/// Passes a file's bytes through, comparing those at each pinned offset with the pinned ones
/// as they go by (no second read, no hash).
struct PinnedReader<'p, R> {
    inner: R,
    size: u64,
    /// The pinned ranges by offset.
    ranges: Vec<(u64, &'p [u8])>,
    /// The ranges before this one lie wholly before `position`: never looked at again, so a
    /// file with many pinned ranges costs each read only those it may touch.
    next: usize,
    position: u64,
    /// The first offset whose byte differs.
    differs: Option<u64>,
}

impl<'p, R: Read> PinnedReader<'p, R> {
    fn new(inner: R, pinned: &'p Pinned) -> Self {
        let mut ranges: Vec<(u64, &[u8])> = pinned
            .ranges
            .iter()
            .map(|(offset, bytes)| (*offset, bytes.as_slice()))
            .collect();
        ranges.sort_by_key(|(offset, _)| *offset);
        PinnedReader {
            inner,
            size: pinned.size,
            ranges,
            next: 0,
            position: 0,
            differs: None,
        }
    }

    /// Why the bytes read are not the pinned ones, if they are not.
    fn finish(self) -> Option<String> {
        if let Some(offset) = self.differs {
            return Some(format!(
                "its bytes at offset {offset} are not those it was judged by"
            ));
        }
        (self.position != self.size)
            .then(|| format!("{} bytes were read, not {}", self.position, self.size))
    }
}

impl<R: Read> Read for PinnedReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let (start, end) = (self.position, self.position + n as u64);
        while let Some((offset, bytes)) = self.ranges.get(self.next)
            && offset + bytes.len() as u64 <= start
        {
            self.next += 1;
        }
        for &(offset, bytes) in &self.ranges[self.next..] {
            if offset >= end || self.differs.is_some() {
                break;
            }
            let (from, to) = (offset.max(start), (offset + bytes.len() as u64).min(end));
            if from >= to {
                continue;
            }
            let read = &buf[(from - start) as usize..(to - start) as usize];
            let kept = &bytes[(from - offset) as usize..(to - offset) as usize];
            if let Some(i) = read.iter().zip(kept).position(|(a, b)| a != b) {
                self.differs = Some(from + i as u64);
            }
        }
        self.position = end;
        Ok(n)
    }
}

/// The one header every entry airlock writes starts from: ustar, uid/gid 0, empty user and
/// group names, the given mode and mtime.
pub fn header(kind: tar::EntryType, size: u64, mode: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    // Empty names keep the host's user database out of the archive.
    let _ = h.set_username("");
    let _ = h.set_groupname("");
    h
}

/// Why an entry path from an archive was refused.
#[derive(Debug, thiserror::Error)]
pub enum UnsafePath {
    /// The path is absolute.
    #[error("`{0}` is an absolute path")]
    Absolute(String),
    /// The path climbs with `..`.
    #[error("`{0}` contains `..`")]
    ParentDir(String),
    /// The path is empty or only `.`.
    #[error("an entry has an empty path")]
    Empty,
    /// The path is outside the prefix every entry must start with.
    #[error("`{path}` is not under `{prefix}/`")]
    OutsidePrefix {
        /// The entry path.
        path: String,
        /// The required prefix.
        prefix: String,
    },
}

/// Checks an entry path read from an archive and returns it as a plain relative path, with
/// `prefix` (if any) required as its first component and removed.
///
/// Refuses absolute paths, `..` anywhere, and paths outside `prefix`, so that joining the
/// result to a destination directory cannot leave it.
pub fn safe_entry_path(raw: &Path, prefix: Option<&str>) -> Result<PathBuf, UnsafePath> {
    let shown = raw.to_string_lossy().into_owned();
    let mut clean = PathBuf::new();
    for component in raw.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            Component::ParentDir => return Err(UnsafePath::ParentDir(shown)),
            Component::RootDir | Component::Prefix(_) => return Err(UnsafePath::Absolute(shown)),
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(UnsafePath::Empty);
    }
    match prefix {
        None => Ok(clean),
        Some(prefix) => match clean.strip_prefix(prefix) {
            Ok(rest) => Ok(rest.to_path_buf()),
            Err(_) => Err(UnsafePath::OutsidePrefix {
                path: shown,
                prefix: prefix.to_owned(),
            }),
        },
    }
}

/// A reader that fails once more than `limit` bytes have been read from it: bounds the
/// expansion of compressed input (a decompression bomb stops with an error, not a full disk).
pub struct LimitedReader<R> {
    inner: R,
    remaining: u64,
    limit: u64,
}

impl<R: Read> LimitedReader<R> {
    /// Wraps `inner`, allowing at most `limit` bytes.
    pub fn new(inner: R, limit: u64) -> Self {
        LimitedReader {
            inner,
            remaining: limit,
            limit,
        }
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            // One more byte tells a stream that ends exactly at the limit from a longer one.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(io::Error::other(format!(
                    "expands beyond the limit of {} bytes",
                    self.limit
                ))),
            };
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..max])?;
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(bytes: &[u8]) -> Vec<(String, u32, u64, u64)> {
        let mut archive = tar::Archive::new(bytes);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                    h.uid().unwrap(),
                )
            })
            .collect()
    }

    /// A pinned file is compared with the pinned bytes as it streams: a change there (or in
    /// its size) is refused naming the file and the offset; a change elsewhere was never part
    /// of what was judged, and it is read only once, never hashed.
    #[test]
    fn pinned_files_stream_and_refuse_other_pinned_bytes_or_size() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app");
        let contents: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&file, &contents).unwrap();
        // Overlapping ranges, one across the 256 KiB reads, not in order.
        let ranges = [(599_990, 10), (40, 100), (0, 64), ((256 << 10) - 10, 30)]
            .map(|(at, len)| (at as u64, contents[at..at + len].to_vec()));
        let pinned = Arc::new(Pinned {
            size: contents.len() as u64,
            ranges: ranges.to_vec(),
        });
        let mut tar = TarBuilder::new();
        tar.file_pinned("bin/app", &file, pinned, EXEC_MODE);
        let mut in_memory = TarBuilder::new();
        in_memory.file("bin/app", contents.clone(), EXEC_MODE);
        assert_eq!(tar.to_bytes(7).unwrap(), in_memory.to_bytes(7).unwrap());

        let refused = |at: usize, byte: u8| {
            let mut changed = contents.clone();
            changed[at] = byte;
            std::fs::write(&file, &changed).unwrap();
            tar.to_bytes(7)
        };
        for at in [50, (256 << 10) + 5, 599_999] {
            let err = refused(at, 0xff).unwrap_err();
            assert_eq!(crate::error::exit_kind(&err).code(), 2);
            let message = format!("{err:#}");
            assert!(
                message.contains(&file.display().to_string())
                    && message.contains(&format!("offset {at} ")),
                "{message}"
            );
        }
        // Outside every range: not what the file was judged by.
        assert!(refused(300_000, 0xff).is_ok());
        // Another size: refused before a byte of it is read.
        std::fs::write(&file, &contents[..599_999]).unwrap();
        let message = format!("{:#}", tar.to_bytes(7).unwrap_err());
        assert!(message.contains("599999 bytes, not 600000"), "{message}");
    }

    #[test]
    fn checked_files_stream_and_refuse_changed_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("app");
        std::fs::write(&file, b"as checked").unwrap();
        let digest = Sha256Digest::of(b"as checked");
        let mut checked = TarBuilder::new();
        checked.file_checked("bin/app", &file, digest, EXEC_MODE);
        let mut in_memory = TarBuilder::new();
        in_memory.file("bin/app", b"as checked".to_vec(), EXEC_MODE);
        assert_eq!(checked.to_bytes(7).unwrap(), in_memory.to_bytes(7).unwrap());
        // Changed on disk after it was checked: refused, naming the file.
        std::fs::write(&file, b"swapped!!!").unwrap();
        let err = checked.to_bytes(7).unwrap_err();
        assert_eq!(crate::error::exit_kind(&err).code(), 2);
        let message = format!("{err:#}");
        assert!(
            message.contains(&file.display().to_string()) && message.contains("changed"),
            "{message}"
        );
    }

    #[test]
    fn writes_sorted_with_parents_and_fixed_metadata() {
        let mut b = TarBuilder::new();
        b.file("usr/bin/app", b"bin".to_vec(), EXEC_MODE);
        b.file("etc/passwd", b"root".to_vec(), FILE_MODE);
        b.dir("tmp", 0o1777);
        let bytes = b.to_bytes(1_700_000_000).unwrap();
        let entries = listing(&bytes);
        let paths: Vec<_> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "etc/",
                "etc/passwd",
                "tmp/",
                "usr/",
                "usr/bin/",
                "usr/bin/app"
            ]
        );
        assert!(entries.iter().all(|e| e.2 == 1_700_000_000 && e.3 == 0));
        assert_eq!(entries[2].1, 0o1777);
        let mut owned = b.clone();
        owned
            .dir("home/nonroot", 0o700)
            .owner("home/nonroot", 65532, 65532);
        let entries = listing(&owned.to_bytes(1_700_000_000).unwrap());
        let home = entries.iter().find(|e| e.0 == "home/nonroot/").unwrap();
        assert_eq!((home.1, home.3), (0o700, 65532));
        assert!(entries.iter().any(|e| e.0 == "home/" && e.3 == 0));
        // Insertion order does not matter.
        let mut c = TarBuilder::new();
        c.dir("tmp", 0o1777);
        c.file("etc/passwd", b"root".to_vec(), FILE_MODE);
        c.file("usr/bin/app", b"bin".to_vec(), EXEC_MODE);
        assert_eq!(c.to_bytes(1_700_000_000).unwrap(), bytes);
    }

    #[test]
    fn a_file_turned_fifo_before_writing_fails_instead_of_hanging() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("swapped");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let mut b = TarBuilder::new();
        b.file_from_disk("etc/ca.pem", &fifo, FILE_MODE);
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = done.send(b.to_bytes(0).map(drop).map_err(|e| format!("{e:#}")));
        });
        let written = result
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("writing an archive with a FIFO in it hung");
        let err = written.unwrap_err();
        assert!(err.contains("is a FIFO"), "{err}");
    }

    #[test]
    fn refuses_escaping_paths() {
        assert!(matches!(
            safe_entry_path(Path::new("/etc/passwd"), None),
            Err(UnsafePath::Absolute(_))
        ));
        assert!(matches!(
            safe_entry_path(Path::new("a/../../b"), None),
            Err(UnsafePath::ParentDir(_))
        ));
        assert!(matches!(
            safe_entry_path(Path::new("other-1.0/src/lib.rs"), Some("serde-1.0")),
            Err(UnsafePath::OutsidePrefix { .. })
        ));
        assert_eq!(
            safe_entry_path(Path::new("./serde-1.0/src/lib.rs"), Some("serde-1.0")).unwrap(),
            Path::new("src/lib.rs")
        );
    }

    #[test]
    fn limited_reader_stops_bombs() {
        let mut ok = LimitedReader::new(&[0u8; 10][..], 10);
        assert_eq!(io::copy(&mut ok, &mut io::sink()).unwrap(), 10);
        let mut bomb = LimitedReader::new(&[0u8; 11][..], 10);
        assert!(io::copy(&mut bomb, &mut io::sink()).is_err());
    }
}
