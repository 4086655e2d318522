//! Which blobs of a layout are still used: everything reachable from `index.json` through
//! indexes, manifests (config, layers, subject). Adding an image under an existing tag leaves
//! the old image's blobs unreferenced; they are removed before the layout is swapped in.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};

use crate::digest::Sha256Digest;
use crate::oci::layout::{blob_path, descriptor_digest};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Every blob reachable from `index` in the layout at `root`; None when a document on the way
/// cannot be read or parsed (then nothing may be pruned).
pub fn reachable_blobs(root: &Path, index: &ImageIndex) -> Option<BTreeSet<Sha256Digest>> {
    let mut seen = BTreeSet::new();
    let mut pending: Vec<Descriptor> = index.manifests().clone();
    while let Some(descriptor) = pending.pop() {
        let digest = descriptor_digest(&descriptor).ok()?;
        if !seen.insert(digest) {
            continue;
        }
        match descriptor.media_type() {
            MediaType::ImageManifest => pending.extend(manifest_children(root, &digest)?),
            MediaType::ImageIndex => pending.extend(index_children(root, &digest)?),
            MediaType::Other(other) if other == DOCKER_MANIFEST => {
                pending.extend(manifest_children(root, &digest)?);
            }
            MediaType::Other(other) if other == DOCKER_MANIFEST_LIST => {
                pending.extend(index_children(root, &digest)?);
            }
            _ => {}
        }
    }
    Some(seen)
}

fn manifest_children(root: &Path, digest: &Sha256Digest) -> Option<Vec<Descriptor>> {
    let bytes = fs::read(blob_path(root, digest)).ok()?;
    let manifest: ImageManifest = serde_json::from_slice(&bytes).ok()?;
    let mut children = vec![manifest.config().clone()];
    children.extend(manifest.layers().iter().cloned());
    children.extend(manifest.subject().clone());
    Some(children)
}

fn index_children(root: &Path, digest: &Sha256Digest) -> Option<Vec<Descriptor>> {
    let bytes = fs::read(blob_path(root, digest)).ok()?;
    let index: ImageIndex = serde_json::from_slice(&bytes).ok()?;
    let mut children = index.manifests().clone();
    children.extend(index.subject().clone());
    Some(children)
}

/// Removes the blobs of the layout at `root` that `index` no longer reaches; returns how many.
/// Removes nothing when the reachable set cannot be worked out.
pub fn prune_unreachable(root: &Path, index: &ImageIndex) -> Result<usize> {
    let Some(keep) = reachable_blobs(root, index) else {
        return Ok(0);
    };
    let blobs = root.join("blobs").join("sha256");
    let mut removed = 0;
    for entry in fs::read_dir(&blobs).with_context(|| format!("cannot read {}", blobs.display()))? {
        let entry = entry.with_context(|| format!("cannot read {}", blobs.display()))?;
        let name = entry.file_name();
        let Ok(digest) = Sha256Digest::from_hex(&name.to_string_lossy()) else {
            continue;
        };
        if !keep.contains(&digest) {
            fs::remove_file(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
            removed += 1;
        }
    }
    Ok(removed)
}
