//! The one verified reader of a layout's blobs (`blobs/sha256/<hex>`, image-spec
//! `image-layout.md`), for every command that reads a layout: image (updating an existing
//! layout), verify, push, report and dist.
//!
//! A blob is opened only as a regular file reached through real directories inside the layout:
//! `blobs/`, `blobs/sha256/` and the blob itself are opened one component at a time relative
//! to the one before (`openat` with `O_NOFOLLOW`), so no symbolic link can lead a read out of
//! the layout, and with `O_NONBLOCK` so a FIFO cannot hang the open. The descriptor's size is
//! compared with the file's (`fstat` on the open file) before the first byte is read, a read
//! never goes past that size, and the digest is checked as the bytes stream by. Only JSON
//! documents are read whole, up to [`MAX_DOCUMENT`].
//!
//! It never writes.

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use oci_spec::image::Descriptor;
use rustix::fs::{Mode, OFlags};

use crate::digest::{COPY_BUFFER_SIZE, HashingReader, Sha256Digest};
use crate::error::{self, ExitKind};
use crate::input::{self, RegularFile};

/// The largest JSON document (manifest, index, config) read whole: 16 MiB, four times the
/// manifest size registries must accept (distribution-spec "Pushing Manifests": at least
/// 4 MiB) and thousands of times a real config.
pub const MAX_DOCUMENT: u64 = 16 << 20;

/// Why a blob could not be used.
#[derive(Debug)]
pub enum Fault {
    /// No file by that name.
    Missing,
    /// Not a regular file inside the layout (a link, FIFO, device or directory), or it could
    /// not be opened or read; the error says which.
    Unreadable(anyhow::Error),
    /// The file's size is not the descriptor's.
    Size {
        /// The descriptor's size.
        expected: u64,
        /// The file's.
        found: u64,
    },
    /// The file's sha256 is not the descriptor's.
    Digest {
        /// The descriptor's digest.
        expected: Sha256Digest,
        /// The file's.
        found: Sha256Digest,
    },
    /// Larger than a JSON document is read whole.
    TooLarge {
        /// The blob's size.
        size: u64,
    },
    /// Not what its descriptor says it is: not a sha256 digest, or not valid JSON of its type.
    Invalid(String),
}

/// A blob that could not be used, named by its path in the layout.
#[derive(Debug)]
pub struct BlobError {
    /// Where the blob is (or would be): `<layout>/blobs/<algorithm>/<encoded>`.
    pub path: PathBuf,
    /// The descriptor's digest as written.
    pub digest: String,
    /// What is wrong.
    pub fault: Fault,
}

impl BlobError {
    /// The layout directory.
    pub fn root(&self) -> &Path {
        self.path.ancestors().nth(3).unwrap_or(&self.path)
    }

    /// The exit kind: 1 when the blob was read and is not what its descriptor says, 2 when it
    /// cannot be read as a blob at all.
    pub fn exit_kind(&self) -> ExitKind {
        match self.fault {
            Fault::Size { .. } | Fault::Digest { .. } => ExitKind::CheckFailed,
            _ => ExitKind::Input,
        }
    }
}

impl fmt::Display for BlobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.fault {
            Fault::Missing => write!(
                f,
                "blob {} is missing from {}",
                self.digest,
                self.root().display()
            ),
            Fault::Unreadable(e) => write!(f, "{e:#}"),
            Fault::Size { expected, found } => write!(
                f,
                "{path}: size differs from its descriptor (expected {expected} bytes, found \
                 {found})"
            ),
            Fault::Digest { expected, found } => write!(
                f,
                "{path}: sha256 differs from its descriptor (expected {}, found {})",
                expected.hex(),
                found.hex()
            ),
            Fault::TooLarge { size } => write!(
                f,
                "{path} is {size} bytes, more than the {MAX_DOCUMENT} bytes airlock reads whole \
                 for a JSON document (manifest, index, config); is its descriptor right?"
            ),
            Fault::Invalid(what) => write!(
                f,
                "blob {} in {} is {what}",
                self.digest,
                self.root().display()
            ),
        }
    }
}

impl From<BlobError> for anyhow::Error {
    fn from(e: BlobError) -> Self {
        match e.exit_kind() {
            ExitKind::CheckFailed => error::check_failed(e.to_string()),
            _ => error::input(e.to_string()),
        }
    }
}

/// The blobs of the layout (or staged layout) at a root directory.
#[derive(Debug, Clone, Copy)]
pub struct BlobStore<'a> {
    root: &'a Path,
}

impl<'a> BlobStore<'a> {
    /// The blobs of the layout at `root`.
    pub fn new(root: &'a Path) -> BlobStore<'a> {
        BlobStore { root }
    }

    /// The layout directory.
    pub fn root(&self) -> &'a Path {
        self.root
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn path(&self, digest: &Sha256Digest) -> PathBuf {
        self.root.join("blobs").join("sha256").join(digest.hex())
    }

    /// `blobs/` and `blobs/sha256/`, where they exist, are real directories: a link there
    /// could lead every read out of the layout.
    pub fn check_directories(&self) -> anyhow::Result<()> {
        for dir in [
            self.root.join("blobs"),
            self.root.join("blobs").join("sha256"),
        ] {
            match std::fs::symlink_metadata(&dir) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                Err(e) => {
                    return Err(error::input(format!("cannot read {}: {e}", dir.display())));
                }
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(error::input(format!(
                        "{} is a symbolic link; a layout's blobs must be in a directory inside \
                         it (a link could lead out of it)",
                        dir.display()
                    )));
                }
                Ok(meta) if !meta.is_dir() => {
                    return Err(error::input(format!(
                        "{} is not a directory; a layout keeps its blobs in blobs/sha256/",
                        dir.display()
                    )));
                }
                Ok(_) => {}
            }
        }
        Ok(())
    }

    fn error(&self, digest: impl fmt::Display, path: PathBuf, fault: Fault) -> BlobError {
        BlobError {
            path,
            digest: digest.to_string(),
            fault,
        }
    }

    /// The descriptor's digest; another algorithm is an [`Fault::Invalid`] blob.
    pub fn digest(&self, descriptor: &Descriptor) -> Result<Sha256Digest, BlobError> {
        Sha256Digest::try_from(descriptor.digest()).map_err(|e| {
            let digest = descriptor.digest();
            let path = self
                .root
                .join("blobs")
                .join(digest.algorithm().as_ref())
                .join(digest.digest());
            self.error(digest, path, Fault::Invalid(format!("named by {e}")))
        })
    }

    /// Opens the blob file with `digest`, one directory at a time, refusing links, FIFOs,
    /// devices and directories.
    fn open(&self, digest: &Sha256Digest) -> Result<RegularFile, BlobError> {
        let path = self.path(digest);
        let fail = |fault| self.error(digest, path.clone(), fault);
        let directory = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
        // The root is the directory the user named: a link to it is fine.
        let root = rustix::fs::open(self.root, directory, Mode::empty())
            .map_err(|e| fail(open_fault(e, self.root)))?;
        let blobs_dir = self.root.join("blobs");
        let blobs = rustix::fs::openat(&root, "blobs", directory | OFlags::NOFOLLOW, Mode::empty())
            .map_err(|e| fail(open_fault(e, &blobs_dir)))?;
        let sha256_dir = blobs_dir.join("sha256");
        let sha256 = rustix::fs::openat(
            &blobs,
            "sha256",
            directory | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map_err(|e| fail(open_fault(e, &sha256_dir)))?;
        let flags =
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
        let file = rustix::fs::openat(&sha256, digest.hex(), flags, Mode::empty())
            .map_err(|e| fail(open_fault(e, &path)))?;
        input::regular(File::from(file), &path).map_err(|e| fail(Fault::Unreadable(e)))
    }

    /// Opens the blob `descriptor` names for streaming, after checking the file has the
    /// descriptor's size; [`VerifiedBlob::finish`] checks the digest.
    pub fn open_verified(&self, descriptor: &Descriptor) -> Result<VerifiedBlob, BlobError> {
        let digest = self.digest(descriptor)?;
        let RegularFile { file, size } = self.open(&digest)?;
        let path = self.path(&digest);
        if size != descriptor.size() {
            return Err(self.error(
                digest,
                path,
                Fault::Size {
                    expected: descriptor.size(),
                    found: size,
                },
            ));
        }
        Ok(VerifiedBlob {
            reader: HashingReader::new(BufReader::with_capacity(COPY_BUFFER_SIZE, file).take(size)),
            expected: digest,
            size,
            path,
        })
    }

    /// Checks the blob is a regular file in the layout with the descriptor's size, without
    /// reading it.
    pub fn stat(&self, descriptor: &Descriptor) -> Result<(), BlobError> {
        self.open_verified(descriptor).map(drop)
    }

    /// Reads the whole blob and checks its size and digest.
    pub fn verify(&self, descriptor: &Descriptor) -> Result<(), BlobError> {
        self.open_verified(descriptor)?.finish()
    }

    /// Reads a JSON document (manifest, index, config) whole, checked against its descriptor;
    /// one larger than [`MAX_DOCUMENT`] is refused before it is read.
    pub fn read_document(&self, descriptor: &Descriptor) -> Result<Vec<u8>, BlobError> {
        let mut blob = self.open_verified(descriptor)?;
        if blob.size > MAX_DOCUMENT {
            let VerifiedBlob { expected, path, .. } = blob;
            return Err(self.error(
                expected,
                path,
                Fault::TooLarge {
                    size: descriptor.size(),
                },
            ));
        }
        let mut bytes = Vec::with_capacity(blob.size as usize);
        if let Err(e) = blob.read_to_end(&mut bytes) {
            let path = blob.path.clone();
            return Err(self.error(blob.expected, path.clone(), unreadable(e, &path)));
        }
        blob.finish()?;
        Ok(bytes)
    }

    /// Reads a JSON document and parses it.
    pub fn read_json<T: serde::de::DeserializeOwned>(
        &self,
        descriptor: &Descriptor,
    ) -> Result<T, BlobError> {
        let bytes = self.read_document(descriptor)?;
        serde_json::from_slice(&bytes).map_err(|e| {
            let digest = self.digest(descriptor).map(|d| self.path(&d));
            self.error(
                descriptor.digest(),
                digest.unwrap_or_default(),
                Fault::Invalid(format!("not a valid {}: {e}", descriptor.media_type())),
            )
        })
    }

    /// The digest and size of the file named `digest`, whatever they are (for `verify`, which
    /// checks every file against its name).
    pub fn hash(&self, digest: &Sha256Digest) -> Result<(Sha256Digest, u64), BlobError> {
        let RegularFile { file, size } = self.open(digest)?;
        let path = self.path(digest);
        let mut reader =
            HashingReader::new(BufReader::with_capacity(COPY_BUFFER_SIZE, file).take(size));
        io::copy(&mut reader, &mut io::sink())
            .map_err(|e| self.error(digest, path.clone(), unreadable(e, &path)))?;
        let (found, read, _) = reader.finish();
        Ok((found, read))
    }
}

/// What an `openat` error means for the component at `path`.
fn open_fault(errno: rustix::io::Errno, path: &Path) -> Fault {
    if errno == rustix::io::Errno::NOENT {
        return Fault::Missing;
    }
    // With O_DIRECTORY, Linux answers ENOTDIR rather than ELOOP for a link.
    let is_link = || std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let message = if errno == rustix::io::Errno::LOOP || is_link() {
        format!(
            "{} is a symbolic link; a layout's blobs must be regular files inside it (a link \
             could lead out of it)",
            path.display()
        )
    } else if errno == rustix::io::Errno::NOTDIR {
        format!("{} is not a directory", path.display())
    } else {
        format!("cannot open {}: {}", path.display(), io::Error::from(errno))
    };
    Fault::Unreadable(error::input(message))
}

fn unreadable(e: io::Error, path: &Path) -> Fault {
    Fault::Unreadable(anyhow::Error::new(e).context(format!("cannot read {}", path.display())))
}

/// A blob being read: never more than its descriptor's size, hashed on the way.
pub struct VerifiedBlob {
    reader: HashingReader<io::Take<BufReader<File>>>,
    expected: Sha256Digest,
    size: u64,
    path: PathBuf,
}

impl VerifiedBlob {
    /// The blob's size (the descriptor's, which the file had when it was opened).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Where the blob is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads what the caller left unread and checks the size and digest of the whole blob.
    /// A caller that reads a blob must call this before trusting what it read.
    pub fn finish(mut self) -> Result<(), BlobError> {
        let error = |path: &Path, digest: Sha256Digest, fault| BlobError {
            path: path.to_path_buf(),
            digest: digest.to_string(),
            fault,
        };
        if let Err(e) = io::copy(&mut self.reader, &mut io::sink()) {
            return Err(error(&self.path, self.expected, unreadable(e, &self.path)));
        }
        let (found, read, _) = self.reader.finish();
        let fault = if read != self.size {
            // The file shrank after it was opened.
            Fault::Size {
                expected: self.size,
                found: read,
            }
        } else if found != self.expected {
            Fault::Digest {
                expected: self.expected,
                found,
            }
        } else {
            return Ok(());
        };
        Err(error(&self.path, self.expected, fault))
    }
}

impl Read for VerifiedBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.reader.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::MediaType;

    fn store_with(blob: &[u8]) -> (tempfile::TempDir, Descriptor) {
        let dir = tempfile::tempdir().unwrap();
        let blobs = dir.path().join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let digest = Sha256Digest::of(blob);
        std::fs::write(blobs.join(digest.hex()), blob).unwrap();
        let descriptor = Descriptor::new(MediaType::ImageConfig, blob.len() as u64, digest);
        (dir, descriptor)
    }

    #[test]
    fn reads_checks_and_names_every_fault() {
        let (dir, descriptor) = store_with(b"{\"a\":1}");
        let store = BlobStore::new(dir.path());
        assert_eq!(store.read_document(&descriptor).unwrap(), b"{\"a\":1}");
        let value: serde_json::Value = store.read_json(&descriptor).unwrap();
        assert_eq!(value["a"], 1);

        let path = store.path(&store.digest(&descriptor).unwrap());
        std::fs::write(&path, b"{\"a\":2}").unwrap();
        let err = store.read_document(&descriptor).unwrap_err();
        assert!(matches!(err.fault, Fault::Digest { .. }), "{err}");
        assert_eq!(err.exit_kind(), ExitKind::CheckFailed);
        let err = anyhow::Error::from(err);
        assert_eq!(error::exit_kind(&err), ExitKind::CheckFailed);
        assert!(err.to_string().contains("sha256 differs"), "{err}");

        std::fs::write(&path, b"{}").unwrap();
        let err = store.stat(&descriptor).unwrap_err();
        assert!(
            matches!(
                err.fault,
                Fault::Size {
                    expected: 7,
                    found: 2
                }
            ),
            "{err}"
        );

        std::fs::remove_file(&path).unwrap();
        let err = store.verify(&descriptor).unwrap_err();
        assert!(matches!(err.fault, Fault::Missing), "{err}");
        assert!(err.to_string().starts_with("blob sha256:"), "{err}");

        let mut wrong_algorithm = descriptor.clone();
        wrong_algorithm.set_digest(
            "sha512:cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e"
                .parse()
                .unwrap(),
        );
        let err = store.stat(&wrong_algorithm).unwrap_err();
        assert!(matches!(err.fault, Fault::Invalid(_)), "{err}");
    }

    #[test]
    fn refuses_links_fifos_and_large_documents_before_reading() {
        let (dir, descriptor) = store_with(b"{}");
        let store = BlobStore::new(dir.path());
        let path = store.path(&store.digest(&descriptor).unwrap());
        let outside = dir.path().join("outside");
        std::fs::rename(&path, &outside).unwrap();
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        let err = store.verify(&descriptor).unwrap_err();
        assert!(err.to_string().contains("is a symbolic link"), "{err}");

        std::fs::remove_file(&path).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &path,
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let err = store.verify(&descriptor).unwrap_err();
        assert!(err.to_string().contains("is a FIFO"), "{err}");
        assert_eq!(err.exit_kind(), ExitKind::Input);

        // blobs/sha256 a link to a directory holding the right bytes.
        std::fs::remove_file(&path).unwrap();
        std::fs::rename(&outside, &path).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::rename(dir.path().join("blobs/sha256"), &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join("blobs/sha256")).unwrap();
        let err = store.verify(&descriptor).unwrap_err();
        assert!(
            err.to_string().contains("sha256 is a symbolic link"),
            "{err}"
        );
        assert!(store.check_directories().is_err());

        // A document as large as its descriptor says, but too large to read whole.
        let big = vec![b' '; (MAX_DOCUMENT + 1) as usize];
        let (dir, descriptor) = store_with(&big);
        let err = BlobStore::new(dir.path())
            .read_document(&descriptor)
            .unwrap_err();
        assert!(matches!(err.fault, Fault::TooLarge { .. }), "{err}");
    }

    #[test]
    fn streams_never_past_the_descriptor_size() {
        let (dir, descriptor) = store_with(b"0123456789");
        let store = BlobStore::new(dir.path());
        let mut blob = store.open_verified(&descriptor).unwrap();
        let mut first = [0u8; 4];
        blob.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"0123");
        blob.finish().unwrap();
        // The file grows after it is opened: the read stops at the descriptor's size.
        let blob = store.open_verified(&descriptor).unwrap();
        let path = blob.path().to_path_buf();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"more")
            .unwrap();
        let mut all = Vec::new();
        let mut blob = blob;
        blob.read_to_end(&mut all).unwrap();
        assert_eq!(all, b"0123456789");
        blob.finish().unwrap();
    }

    use std::io::Write;
}
