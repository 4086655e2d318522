//! Where an image goes: a new layout, a copy of an existing one that keeps its other tags, or
//! a scratch layout that only feeds the archive.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use oci_spec::image::{Descriptor, ImageIndex, MediaType};

use super::project::Project;
use super::{CONTAINERD_IMAGE_NAME, ImageOptions};
use crate::error;
use crate::oci::layout::{self, Layout, LayoutWriter};
use crate::oci::prune;
use crate::progress;

/// Where the image goes: a writer on the layout (new, or a copy of the existing one), or on
/// a scratch layout that is dropped once the archive is written.
pub(super) struct Output {
    pub(super) writer: LayoutWriter,
    pub(super) existing: Option<Layout>,
    /// The layout directory to swap in; None when only an archive was asked for.
    pub(super) target: Option<PathBuf>,
}

impl Output {
    /// Checks the output before anything is built: an existing layout must open cleanly, and
    /// anything else at that path is refused rather than replaced.
    pub(super) fn open(options: &ImageOptions, project: &Project) -> Result<Output> {
        if let Some(archive) = &options.archive {
            check_parents(archive, "--archive names a file in a directory")?;
        }
        let target = match (&options.output, &options.archive) {
            (Some(dir), _) => Some(dir.clone()),
            (None, Some(_)) => None,
            (None, None) => match &project.workspace {
                Some(ws) => Some(super::default_layout_of(ws)),
                None => {
                    return Err(error::input(
                        "no output: name a layout directory with --output DIR or an archive \
                         with --archive FILE.tar",
                    ));
                }
            },
        };
        let Some(dir) = target else {
            let archive = options
                .archive
                .as_deref()
                .context("an archive path is required without a layout")?;
            let scratch = archive.with_file_name(format!(
                "{}.layout",
                archive
                    .file_name()
                    .map_or_else(|| "image".into(), |n| n.to_string_lossy())
            ));
            return Ok(Output {
                writer: LayoutWriter::create(&scratch)?,
                existing: None,
                target: None,
            });
        };
        let existing = existing_layout(&dir)?;
        let writer = match &existing {
            Some(layout) => LayoutWriter::update(layout).with_context(|| {
                format!(
                    "cannot add to the existing layout {}; it was left as it is",
                    dir.display()
                )
            })?,
            None => LayoutWriter::create(&dir)?,
        };
        Ok(Output {
            writer,
            existing,
            target: Some(dir),
        })
    }

    /// Writes `index.json` (the existing entries under other tags kept, `entries` added),
    /// prunes blobs nothing refers to any more, and swaps the layout into place.
    pub(super) fn finish(self, entries: Vec<Descriptor>) -> Result<Option<PathBuf>> {
        let Some(target) = self.target else {
            return Ok(None);
        };
        let new_tags: BTreeSet<&str> = entries.iter().filter_map(layout::ref_name).collect();
        let kept: Vec<Descriptor> = self
            .existing
            .as_ref()
            .map(|layout| {
                layout
                    .index()
                    .manifests()
                    .iter()
                    .filter(|d| !layout::ref_name(d).is_some_and(|t| new_tags.contains(t)))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let index = layout_index(kept, entries)?;
        let pruned = prune::prune_unreachable(self.writer.path(), &index)?;
        if pruned > 0 {
            progress::detail(format!("removed {pruned} blobs no tag refers to any more"));
        }
        self.writer.finish(&index)?;
        Ok(Some(target))
    }
}

/// A path whose nearest existing ancestor is not a directory (a file where a directory must
/// go) is the user's to fix (exit 2), before anything is built; a disk that refuses a write
/// later is the machine's (exit 3).
fn check_parents(path: &Path, what: &str) -> Result<()> {
    for ancestor in path.ancestors().skip(1) {
        if ancestor.as_os_str().is_empty() {
            break;
        }
        match std::fs::metadata(ancestor) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(error::input(format!(
                    "cannot write {}: {} exists and is not a directory; {what}",
                    path.display(),
                    ancestor.display()
                )));
            }
            Err(_) => continue,
        }
    }
    Ok(())
}

/// The layout at `dir` if there is one; None for a missing path or an empty directory;
/// an error for anything else, which is left as it is.
pub(super) fn existing_layout(dir: &Path) -> Result<Option<Layout>> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(error::input(format!(
                "cannot use {} as output: {e}",
                dir.display()
            )));
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(error::input(format!(
                "{} exists and is not a directory; --output names an OCI layout directory",
                dir.display()
            )));
        }
        Ok(_) => {}
    }
    let empty = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .next()
        .is_none();
    if empty {
        return Ok(None);
    }
    if !dir.join("oci-layout").exists() {
        return Err(error::input(format!(
            "{} exists and is not an OCI image layout (it has no oci-layout file); remove it \
             or choose another --output",
            dir.display()
        )));
    }
    Layout::open(dir).map(Some).with_context(|| {
        format!(
            "cannot add to the existing layout {}; it was left as it is",
            dir.display()
        )
    })
}

/// An `index.json` holding `kept` then `entries`.
pub(super) fn layout_index(kept: Vec<Descriptor>, entries: Vec<Descriptor>) -> Result<ImageIndex> {
    let mut manifests = kept;
    manifests.extend(entries);
    oci_spec::image::ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .context("cannot build the layout's index.json")
}

/// The `index.json` entry for `tag`: the image's descriptor with its tag and full name.
pub(super) fn tagged_entry(top: &Descriptor, repository: &str, tag: &str) -> Descriptor {
    let mut entry = layout::with_ref_name(top.clone(), tag);
    let mut annotations = entry.annotations().clone().unwrap_or_default();
    annotations.insert(
        CONTAINERD_IMAGE_NAME.to_owned(),
        format!("{repository}:{tag}"),
    );
    entry.set_annotations(Some(annotations));
    entry
}
