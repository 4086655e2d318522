//! Opening what the user, a layout, a bundle or a vendor directory hands airlock, as hostile
//! until checked: only regular files are opened (a FIFO would hang the read, `/dev/zero` would
//! never end), the open itself cannot block, and whole-file reads are bounded by a size known
//! before the first byte is read.
//!
//! Every command reads its inputs through these helpers; they never write.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{Context, Result};

use crate::error;

/// Whether the last component of a path may be a symbolic link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// Follow it (a path the user typed).
    Follow,
    /// Refuse it (a file inside a layout or vendor directory, where a link could lead out).
    Refuse,
}

/// A regular file opened for reading, and its size when it was opened.
#[derive(Debug)]
pub struct RegularFile {
    /// The open file.
    pub file: File,
    /// Its size from `fstat` on the open descriptor.
    pub size: u64,
}

/// Opens `path` if it is a regular file.
///
/// The open uses `O_NONBLOCK` (a FIFO with no writer would otherwise block in `open`) and
/// `O_NOCTTY`; the type is then checked on the open descriptor (`fstat`), so nothing can be
/// swapped in between the check and the read. Anything but a regular file is an input error
/// (exit 2) that names the path and what it is; with [`Links::Refuse`] a symbolic link is too.
pub fn open_regular(path: &Path, links: Links) -> Result<RegularFile> {
    let mut flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOCTTY;
    if links == Links::Refuse {
        flags |= rustix::fs::OFlags::NOFOLLOW;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
        .map_err(|e| {
            // ELOOP from O_NOFOLLOW: the last component is a link.
            if links == Links::Refuse
                && e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
            {
                error::input(format!(
                    "{} is a symbolic link; refusing to follow it (it could lead out of its \
                     directory)",
                    path.display()
                ))
            } else {
                anyhow::Error::new(e).context(format!("cannot open {}", path.display()))
            }
        })?;
    regular(file, path)
}

/// The type check of [`open_regular`] for a file opened another way (relative to a directory
/// descriptor, as a layout's blobs are): `file` must be a regular file, else an input error
/// naming `path` and what it is. `file` must have been opened with `O_NONBLOCK`.
pub fn regular(file: File, path: &Path) -> Result<RegularFile> {
    let metadata = file
        .metadata()
        .with_context(|| format!("cannot read the metadata of {}", path.display()))?;
    let kind = metadata.file_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_fifo() {
            "a FIFO (named pipe)"
        } else if kind.is_char_device() {
            "a character device"
        } else if kind.is_block_device() {
            "a block device"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        return Err(error::input(format!(
            "{} is {what}; airlock reads only regular files",
            path.display()
        )));
    }
    // Regular files ignore O_NONBLOCK; nothing to clear.
    Ok(RegularFile {
        size: metadata.len(),
        file,
    })
}

/// Reads the whole regular file at `path`, refusing one larger than `max` bytes before reading
/// any of it. The error names the file, its size and the limit.
pub fn read_regular(path: &Path, links: Links, max: u64) -> Result<Vec<u8>> {
    let RegularFile { file, size } = open_regular(path, links)?;
    if size > max {
        return Err(error::input(format!(
            "{} is {size} bytes, more than the {max} bytes airlock reads for it; is it the \
             right file?",
            path.display()
        )));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // One more byte than the limit tells a file that grew while being read.
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > max {
        return Err(error::input(format!(
            "{} grew past {max} bytes while being read",
            path.display()
        )));
    }
    Ok(bytes)
}

/// [`read_regular`] as UTF-8 text.
pub fn read_regular_to_string(path: &Path, links: Links, max: u64) -> Result<String> {
    let bytes = read_regular(path, links, max)?;
    String::from_utf8(bytes)
        .map_err(|_| error::input(format!("{} is not UTF-8 text", path.display())))
}

/// The most bytes read of a small text input (a lockfile, a manifest, `index.json`, a config):
/// 64 MiB, far above any real one (the largest `Cargo.lock` seen has 1,035 packages in 250 KB).
pub const MAX_TEXT_INPUT: u64 = 64 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ExitKind, exit_kind};

    #[test]
    fn refuses_fifos_devices_directories_and_links_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let err = open_regular(&fifo, Links::Follow).unwrap_err();
        assert!(format!("{err:#}").contains("FIFO"), "{err:#}");
        assert_eq!(exit_kind(&err), ExitKind::Input);

        let err = read_regular(Path::new("/dev/zero"), Links::Follow, 10).unwrap_err();
        assert!(format!("{err:#}").contains("character device"), "{err:#}");
        let err = open_regular(dir.path(), Links::Follow).unwrap_err();
        assert!(format!("{err:#}").contains("a directory"), "{err:#}");

        let file = dir.path().join("file");
        std::fs::write(&file, b"12345").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert_eq!(read_regular(&link, Links::Follow, 5).unwrap(), b"12345");
        let err = read_regular(&link, Links::Refuse, 5).unwrap_err();
        assert!(format!("{err:#}").contains("symbolic link"), "{err:#}");
        let err = read_regular(&file, Links::Follow, 4).unwrap_err();
        assert!(
            format!("{err:#}").contains("5 bytes, more than the 4"),
            "{err:#}"
        );
        assert_eq!(exit_kind(&err), ExitKind::Input);
    }
}
