//! The cache of pulled base images: one OCI layout (`$XDG_CACHE_HOME/airlock/bases`, else
//! `~/.cache/airlock/bases`) that every build shares. A blob enters it only after its digest
//! and size are checked; `index.json` names each pulled reference (`registry/repository:tag`
//! or `@sha256:…`, in `org.opencontainers.image.ref.name`) with the digest it resolved to, so
//! a tag pulled once resolves offline to the digest it had then.
//!
//! A multi-platform base is kept with its index and only the platforms pulled, so the cache is
//! a layout whose indexes may name manifests it does not hold. Nothing is ever removed: blobs
//! are content-addressed and shared between tags.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, MediaType};

use crate::atomic;
use crate::digest::{HashingWriter, Sha256Digest};
use crate::error;
use crate::oci::blob::{BlobStore, Fault};
use crate::oci::json::canonical_json;
use crate::oci::layout::{self, Layout, OCI_LAYOUT_FILE};
use crate::oci::walk::{self, WalkOptions};
use crate::target::Arch;

/// A base image cache, opened (and created when missing).
#[derive(Debug)]
pub struct BaseCache {
    root: PathBuf,
}

impl BaseCache {
    /// `$XDG_CACHE_HOME/airlock/bases`, else `$HOME/.cache/airlock/bases` (the XDG base
    /// directory spec's default).
    pub fn default_dir() -> Result<PathBuf> {
        if let Some(cache) = crate::workspace::user_cache_dir() {
            return Ok(cache.join("bases"));
        }
        Err(error::environment(
            "no cache directory for base images: neither XDG_CACHE_HOME nor HOME is set; \
             name one with --base-cache DIR (or AIRLOCK_BASE_CACHE)",
        ))
    }

    /// Opens the cache at `root`, creating an empty layout there when nothing is there yet; a
    /// directory that holds something else is refused, never written into.
    pub fn open(root: &Path) -> Result<BaseCache> {
        let marker = root.join("oci-layout");
        let occupied = std::fs::read_dir(root).is_ok_and(|mut entries| entries.next().is_some());
        if occupied && !marker.exists() {
            return Err(error::input(format!(
                "{} is not a base image cache (it holds files but no oci-layout); name an empty \
                 or new directory with --base-cache DIR",
                root.display()
            )));
        }
        if !marker.exists() {
            fs::create_dir_all(root.join("blobs").join("sha256")).with_context(|| {
                format!("cannot create the base image cache {}", root.display())
            })?;
            atomic::write_file(&marker, OCI_LAYOUT_FILE.as_bytes())?;
        }
        let index = root.join("index.json");
        if !index.exists() {
            atomic::write_file(&index, &canonical_json(&empty_index(Vec::new())?)?)?;
        }
        // Checks oci-layout, index.json and blobs/ as any layout's.
        Layout::open(root)
            .with_context(|| format!("{} is not a usable base image cache", root.display()))?;
        Ok(BaseCache {
            root: root.to_path_buf(),
        })
    }

    /// The cache directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cache's blobs, read through the verified reader.
    pub fn blobs(&self) -> BlobStore<'_> {
        BlobStore::new(&self.root)
    }

    fn layout(&self) -> Result<Layout> {
        Layout::open(&self.root)
    }

    /// The descriptor recorded for `key` (`registry/repository:tag`).
    pub fn find(&self, key: &str) -> Option<Descriptor> {
        let layout = self.layout().ok()?;
        layout
            .index()
            .manifests()
            .iter()
            .find(|d| layout::ref_name(d) == Some(key))
            .cloned()
    }

    /// The descriptor of any recorded reference that resolved to `digest`.
    pub fn find_digest(&self, digest: &Sha256Digest) -> Option<Descriptor> {
        let layout = self.layout().ok()?;
        layout
            .index()
            .manifests()
            .iter()
            .find(|d| layout::descriptor_digest(d).ok().as_ref() == Some(digest))
            .cloned()
    }

    /// Whether the cache holds everything an image on `top` needs for `arches`: the top
    /// document, each platform's manifest, config and layers (present with their sizes;
    /// their digests are checked when they are read). A blob that is there but is not what
    /// its digest says is an error, never a reason to pull silently.
    pub fn holds(&self, top: &Descriptor, arches: &[Arch]) -> Result<bool> {
        let store = self.blobs();
        let fault = |problem: crate::oci::blob::BlobError| {
            explain_fault(&self.root, anyhow::Error::from(problem))
        };
        match store.stat(top) {
            Err(problem) if matches!(problem.fault, Fault::Missing) => return Ok(false),
            Err(problem) => return Err(fault(problem)),
            Ok(()) => {}
        }
        let manifests = super::platform_manifests(store, top, arches, "the cached base")
            .map_err(|e| explain_fault(&self.root, e))?;
        let roots: Vec<Descriptor> = manifests.into_values().collect();
        let graph = walk::walk(store, &roots, &WalkOptions::default())?;
        let mut missing = false;
        for node in graph.nodes {
            match node.problem {
                None => {}
                Some(problem) if matches!(problem.fault, Fault::Missing) => missing = true,
                Some(problem) => return Err(fault(problem)),
            }
        }
        Ok(!missing)
    }

    /// Whether the blob `descriptor` names is in the cache and what its digest says. A blob
    /// that is not is left to be replaced by the next write.
    pub fn has_blob(&self, descriptor: &Descriptor) -> bool {
        self.blobs().verify(descriptor).is_ok()
    }

    /// Writes a blob streamed by `fetch` (called again, on a fresh file, when it returns an
    /// error it wants retried is the caller's business) and keeps it only when its digest and
    /// size are `expected`'s; more bytes than `expected` says stop the write.
    pub fn put_blob(
        &self,
        expected: &Descriptor,
        fetch: impl FnOnce(&mut dyn Write) -> Result<()>,
    ) -> Result<()> {
        let digest = layout::descriptor_digest(expected)?;
        let blobs = self.root.join("blobs").join("sha256");
        let temp = tempfile::Builder::new()
            .prefix(".pull-")
            .tempfile_in(&blobs)
            .with_context(|| format!("cannot write to the base image cache {}", blobs.display()))?;
        let (found, size) = {
            let mut writer = HashingWriter::new(Bounded {
                inner: io::BufWriter::new(temp.as_file()),
                left: expected.size(),
            });
            fetch(&mut writer)?;
            let (found, size, mut bounded) = writer.finish();
            bounded
                .flush()
                .context("cannot write to the base image cache")?;
            (found, size)
        };
        if size != expected.size() || found != digest {
            return Err(error::check_failed(format!(
                "blob {digest} arrived as {size} bytes with sha256 {}, not the {} bytes its \
                 descriptor names; it was not kept",
                found.hex(),
                expected.size()
            )));
        }
        let path = self.blobs().path(&digest);
        temp.persist(&path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(())
    }

    /// Writes a manifest or index whose digest was checked by the caller.
    pub fn put_document(&self, bytes: &[u8]) -> Result<Sha256Digest> {
        let digest = Sha256Digest::of(bytes);
        let path = self.blobs().path(&digest);
        atomic::write_file(&path, bytes)?;
        Ok(digest)
    }

    /// Records that `key` resolved to `top`, replacing what it resolved to before. Writers
    /// hold a lock on the cache so two builds pulling at once both keep their entry.
    pub fn record(&self, key: &str, top: &Descriptor) -> Result<()> {
        let lock_path = self.root.join(".lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .with_context(|| format!("cannot lock {}", lock_path.display()))?;
        let layout = self.layout()?;
        let mut entries: Vec<Descriptor> = layout
            .index()
            .manifests()
            .iter()
            .filter(|d| layout::ref_name(d) != Some(key))
            .cloned()
            .collect();
        entries.push(layout::with_ref_name(
            Descriptor::new(top.media_type().clone(), top.size(), top.digest().clone()),
            key,
        ));
        entries.sort_by(|a, b| layout::ref_name(a).cmp(&layout::ref_name(b)));
        atomic::write_file(
            &self.root.join("index.json"),
            &canonical_json(&empty_index(entries)?)?,
        )
    }
}

/// A blob of the cache at `root` that is not what its digest says is named as the cache's,
/// with the way out. (Every fault of the verified reader says "differs from its descriptor".)
pub(super) fn explain_fault(root: &Path, e: anyhow::Error) -> anyhow::Error {
    if !format!("{e:#}").contains("differs from its descriptor") {
        return e;
    }
    e.context(format!(
        "the base image cache {} holds a blob that is not what its digest says; remove the \
         blob named above (or the whole cache) and build again to pull it anew",
        root.display()
    ))
}

fn empty_index(manifests: Vec<Descriptor>) -> Result<ImageIndex> {
    ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .context("cannot build the cache's index.json")
}

/// A writer that refuses more bytes than a descriptor said a blob has: a registry that keeps
/// sending never fills the disk.
struct Bounded<W> {
    inner: W,
    left: u64,
}

impl<W: Write> Write for Bounded<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(io::Error::other(
                "the blob is larger than its descriptor says",
            ));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_blobs_that_match_and_records_references() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BaseCache::open(&dir.path().join("bases")).unwrap();
        let good = Descriptor::new(MediaType::ImageLayerGzip, 5, Sha256Digest::of(b"layer"));
        cache
            .put_blob(&good, |w| Ok(w.write_all(b"layer")?))
            .unwrap();
        assert!(cache.has_blob(&good));

        let other = Descriptor::new(MediaType::ImageLayerGzip, 5, Sha256Digest::of(b"other"));
        let err = cache
            .put_blob(&other, |w| Ok(w.write_all(b"layer")?))
            .unwrap_err();
        assert_eq!(error::exit_kind(&err), error::ExitKind::CheckFailed);
        assert!(!cache.has_blob(&other));
        let err = cache
            .put_blob(&other, |w| Ok(w.write_all(b"other and more")?))
            .unwrap_err();
        assert!(
            format!("{err:#}").contains("larger than its descriptor"),
            "{err:#}"
        );
        let leftovers = fs::read_dir(dir.path().join("bases/blobs/sha256"))
            .unwrap()
            .count();
        assert_eq!(leftovers, 1, "failed writes leave nothing behind");

        let top = Descriptor::new(MediaType::ImageManifest, 5, Sha256Digest::of(b"layer"));
        cache.record("r.example/base:v1", &top).unwrap();
        let moved = Descriptor::new(MediaType::ImageManifest, 5, Sha256Digest::of(b"other"));
        cache.record("r.example/base:v1", &moved).unwrap();
        cache.record("r.example/base:v2", &top).unwrap();
        let reopened = BaseCache::open(&dir.path().join("bases")).unwrap();
        assert_eq!(
            reopened.find("r.example/base:v1").unwrap().digest(),
            moved.digest()
        );
        assert!(reopened.find("r.example/base:v3").is_none());
        assert!(reopened.find_digest(&Sha256Digest::of(b"layer")).is_some());
    }
}
