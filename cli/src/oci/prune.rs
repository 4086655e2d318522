//! Which blobs of a layout are still used: everything reachable from `index.json` through
//! indexes, manifests (config, layers, subject), found by the one walker. Adding an image under
//! an existing tag leaves the old image's blobs unreferenced; they are removed before the
//! layout is swapped in.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use anyhow::{Context, Result};
use oci_spec::image::ImageIndex;

use crate::digest::Sha256Digest;
use crate::oci::blob::BlobStore;
use crate::oci::walk::{self, WalkOptions};

/// Every blob reachable from `index` in the layout at `root`. A blob that is missing or fails
/// its check is an error: nothing may be pruned from a layout whose graph is not whole.
pub fn reachable_blobs(root: &Path, index: &ImageIndex) -> Result<BTreeSet<Sha256Digest>> {
    let options = WalkOptions {
        subjects: true,
        ..WalkOptions::default()
    };
    let graph = walk::walk(BlobStore::new(root), index.manifests(), &options)?.checked()?;
    Ok(graph.digests())
}

/// Removes the blobs of the layout at `root` that `index` no longer reaches; returns how many.
pub fn prune_unreachable(root: &Path, index: &ImageIndex) -> Result<usize> {
    let keep = reachable_blobs(root, index)?;
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
