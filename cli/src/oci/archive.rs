//! An image layout as one deterministic tar (`oci-archive:`), with Docker's `manifest.json`
//! beside `index.json` so that every loader accepts it: `docker load` on the classic image store
//! reads only `manifest.json`, the containerd store, `podman load` and `skopeo` read the layout.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Result;
use oci_spec::image::ImageIndex;
use serde::Serialize;

use crate::atomic;
use crate::digest::{HashingWriter, Sha256Digest};
use crate::error;
use crate::oci::json::canonical_json;
use crate::oci::layout::{OCI_LAYOUT_FILE, blob_path};
use crate::tarball::{self, TarBuilder};

/// One image in Docker's `manifest.json` (moby `image/tarexport`): paths inside the archive.
/// Not an OCI document, so not an oci-spec type.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerManifestEntry {
    /// `blobs/sha256/<hex>` of the config.
    pub config: String,
    /// `repository:tag` names the loaded image gets.
    pub repo_tags: Vec<String>,
    /// `blobs/sha256/<hex>` of each layer, bottom first.
    pub layers: Vec<String>,
}

impl DockerManifestEntry {
    /// The entry for an image with `config` and `layers`, tagged `repo_tags`.
    pub fn new(
        config: &Sha256Digest,
        layers: &[Sha256Digest],
        repo_tags: Vec<String>,
    ) -> DockerManifestEntry {
        DockerManifestEntry {
            config: archive_blob_path(config),
            repo_tags,
            layers: layers.iter().map(archive_blob_path).collect(),
        }
    }
}

fn archive_blob_path(digest: &Sha256Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// What went into an archive.
#[derive(Debug, Clone, Serialize)]
pub struct ArchiveSummary {
    /// Where it was written.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its digest (the same for the same image, whatever the machine).
    pub sha256: Sha256Digest,
}

/// Writes `index` and `docker` with the `blobs` (read from the layout at `layout_root`) as a tar
/// at `path`, every entry with mtime `mtime`; the file appears complete or not at all.
pub fn write_archive(
    path: &Path,
    layout_root: &Path,
    index: &ImageIndex,
    docker: &[DockerManifestEntry],
    blobs: &BTreeSet<Sha256Digest>,
    mtime: u64,
) -> Result<ArchiveSummary> {
    if path.is_dir() {
        return Err(error::input(format!(
            "{} is a directory; --archive names the tar file to write",
            path.display()
        )));
    }
    let mut tar = TarBuilder::new();
    tar.file("oci-layout", OCI_LAYOUT_FILE, tarball::FILE_MODE);
    tar.file("index.json", canonical_json(index)?, tarball::FILE_MODE);
    tar.file("manifest.json", canonical_json(docker)?, tarball::FILE_MODE);
    for digest in blobs {
        tar.file_from_disk(
            &archive_blob_path(digest),
            &blob_path(layout_root, digest),
            tarball::FILE_MODE,
        );
    }
    let mut summary = None;
    atomic::write_file_with(path, atomic::FILE_MODE, |out| {
        let hashing = tar.write_to(HashingWriter::new(&mut *out), mtime)?;
        let (sha256, size, _) = hashing.finish();
        summary = Some((sha256, size));
        Ok(out.flush()?)
    })?;
    let (sha256, size) =
        summary.ok_or_else(|| anyhow::anyhow!("{}: nothing was written", path.display()))?;
    Ok(ArchiveSummary {
        path: path.to_path_buf(),
        size,
        sha256,
    })
}
