//! OCI image layouts on disk (image-spec `image-layout.md`): `oci-layout`, `index.json` and
//! content-addressed `blobs/sha256/<hex>`.
//!
//! Reading verifies every blob it returns against its descriptor; writing goes through a
//! staged directory so an existing layout is never left half-updated.

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result};
use oci_spec::image::{Descriptor, ImageIndex, MediaType};
use serde::Serialize;

use crate::atomic::{self, StagedDir};
use crate::digest::{HashingWriter, Sha256Digest};
use crate::error;
use crate::input::{self, Links};
use crate::oci::blob::{BlobStore, MAX_DOCUMENT};
use crate::oci::json::canonical_json;
use crate::oci::walk::{self, WalkOptions};

/// The annotation that names an image in a layout's `index.json` (image-spec
/// `annotations.md`): the tag in `oci:DIR:TAG`.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The `oci-layout` file's contents (image-spec `image-layout.md`).
pub const OCI_LAYOUT_FILE: &str = r#"{"imageLayoutVersion":"1.0.0"}"#;

/// A reference to an image in a layout: `oci:PATH[:TAG]` or `PATH[:TAG]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// The layout directory.
    pub path: PathBuf,
    /// The tag (`org.opencontainers.image.ref.name`), if given.
    pub tag: Option<String>,
}

impl FromStr for ImageRef {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let rest = s.strip_prefix("oci:").unwrap_or(s);
        if rest.is_empty() {
            return Err(error::input(format!("`{s}` names no layout directory")));
        }
        // A tag never contains '/', so a ':' after the last '/' separates it.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let split = last_slash + i;
                (&rest[..split], Some(&rest[split + 1..]))
            }
            None => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag)?;
        }
        Ok(ImageRef {
            path: PathBuf::from(path),
            tag: tag.map(str::to_owned),
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci:{}", self.path.display())?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        Ok(())
    }
}

/// Checks a tag against the distribution spec's grammar: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`.
pub fn validate_tag(tag: &str) -> Result<()> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if first_ok && rest_ok && tag.len() <= 128 {
        Ok(())
    } else {
        Err(error::input(format!(
            "`{tag}` is not a valid tag: use letters, digits, `_`, `.` and `-`, \
             starting with a letter, digit or `_`, at most 128 characters"
        )))
    }
}

/// An OCI layout opened for reading.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    index: ImageIndex,
}

/// The most bytes read of `oci-layout`, a one-line JSON object.
const MAX_LAYOUT_MARKER: u64 = 64 << 10;

impl Layout {
    /// Opens the layout at `root`: checks `oci-layout`, parses `index.json` (both regular files
    /// of bounded size, not links) and checks that `blobs/sha256/`, if there, is a real
    /// directory inside the layout.
    pub fn open(root: &Path) -> Result<Layout> {
        let marker = root.join("oci-layout");
        let text = input::read_regular_to_string(&marker, Links::Refuse, MAX_LAYOUT_MARKER)
            .map_err(|e| {
                if e.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::NotFound)
                {
                    error::input(format!(
                        "{} is not an OCI image layout: it has no {}",
                        root.display(),
                        marker.display()
                    ))
                } else {
                    e.context(format!(
                        "{} is not a readable OCI image layout",
                        root.display()
                    ))
                }
            })?;
        let version: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| error::input(format!("{}: invalid JSON: {e}", marker.display())))?;
        if version.get("imageLayoutVersion").and_then(|v| v.as_str()) != Some("1.0.0") {
            return Err(error::input(format!(
                "{}: unsupported imageLayoutVersion (expected \"1.0.0\")",
                marker.display()
            )));
        }
        let index_path = root.join("index.json");
        let bytes = input::read_regular(&index_path, Links::Refuse, MAX_DOCUMENT)?;
        let index: ImageIndex = serde_json::from_slice(&bytes).map_err(|e| {
            error::input(format!(
                "{}: not a valid OCI image index: {e}",
                index_path.display()
            ))
        })?;
        BlobStore::new(root).check_directories()?;
        Ok(Layout {
            root: root.to_path_buf(),
            index,
        })
    }

    /// The layout directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The parsed `index.json`.
    pub fn index(&self) -> &ImageIndex {
        &self.index
    }

    /// The entry of `index.json` whose digest is `digest`, when there is one.
    pub fn entry(&self, digest: &Sha256Digest) -> Option<&Descriptor> {
        self.index()
            .manifests()
            .iter()
            .find(|d| descriptor_digest(d).is_ok_and(|d| d == *digest))
    }

    /// The layout's blobs, read only through the verified reader.
    pub fn blobs(&self) -> BlobStore<'_> {
        BlobStore::new(&self.root)
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn blob_path(&self, digest: &Sha256Digest) -> PathBuf {
        self.blobs().path(digest)
    }

    /// The tags of `index.json`'s entries, in order.
    pub fn tags(&self) -> Vec<String> {
        self.index
            .manifests()
            .iter()
            .filter_map(|d| ref_name(d).map(str::to_owned))
            .collect()
    }

    /// The one tag resolver: the `index.json` entry for `tag`; without a tag, the only image.
    ///
    /// What is attached to an image (SBOMs, signatures, attestations: [`is_attachment`]) is
    /// not an image, and one image under several tags (`1.2.0` and `latest`) is still one
    /// image; a layout holding nothing but attachments of one digest resolves to it. A tag on two
    /// entries that name different digests is ambiguous. The error lists the tags there are.
    pub fn resolve(&self, tag: Option<&str>) -> Result<&Descriptor> {
        let manifests = self.index.manifests();
        let candidates: Vec<&Descriptor> = match tag {
            Some(tag) => manifests
                .iter()
                .filter(|d| ref_name(d) == Some(tag))
                .collect(),
            None => {
                let images: Vec<&Descriptor> =
                    manifests.iter().filter(|d| !is_attachment(d)).collect();
                if images.is_empty() {
                    manifests.iter().collect()
                } else {
                    images
                }
            }
        };
        if let Some(first) = candidates.first()
            && candidates.iter().all(|d| d.digest() == first.digest())
        {
            return Ok(first);
        }
        let tags = self.tags();
        let known = if tags.is_empty() {
            "it has no tagged images".to_owned()
        } else {
            format!("its tags are: {}", tags.join(", "))
        };
        let what = match tag {
            Some(tag) if !candidates.is_empty() => {
                format!(
                    "tags {} images `{tag}`; remove one of them",
                    candidates.len()
                )
            }
            Some(tag) => format!("has no image tagged `{tag}`"),
            None if manifests.is_empty() => "holds no image".to_owned(),
            None => "holds several images; name one with oci:DIR:TAG".to_owned(),
        };
        Err(error::input(format!(
            "{} {what}; {known}",
            self.root.display()
        )))
    }

    /// Reads a JSON document (manifest, index, config) whole, checked against `descriptor`.
    pub fn read_document(&self, descriptor: &Descriptor) -> Result<Vec<u8>> {
        Ok(self.blobs().read_document(descriptor)?)
    }

    /// Reads a JSON document (manifest, index, config) and parses it.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, descriptor: &Descriptor) -> Result<T> {
        Ok(self.blobs().read_json(descriptor)?)
    }
}

/// The tag of an `index.json` entry.
pub fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor
        .annotations()
        .as_ref()
        .and_then(|a| a.get(REF_NAME))
        .map(String::as_str)
}

/// The suffixes of cosign's tags for what it attaches to an image, `sha256-<hex>.<suffix>`:
/// signatures, attestations and SBOMs (cosign `pkg/oci/remote`'s `SignatureTagSuffix`,
/// `AttestationTagSuffix`, `SBOMTagSuffix`).
pub const ATTACHMENT_TAG_SUFFIXES: [&str; 3] = ["sig", "att", "sbom"];

/// The image digest and suffix an attachment tag names: cosign's `sha256-<hex>.sig`, `.att`
/// and `.sbom`, or the distribution spec's referrers tag `sha256-<hex>` ("Referrers Tag
/// Schema"), whose suffix is empty. None for any other tag.
pub fn attachment_tag(tag: &str) -> Option<(Sha256Digest, &str)> {
    let rest = tag.strip_prefix("sha256-")?;
    let (hex, suffix) = rest.split_once('.').unwrap_or((rest, ""));
    if !suffix.is_empty() && !ATTACHMENT_TAG_SUFFIXES.contains(&suffix) {
        return None;
    }
    Some((Sha256Digest::from_hex(hex).ok()?, suffix))
}

/// Whether an `index.json` entry is attached to an image rather than an image itself: the one
/// classification every command uses. An entry with an `artifactType` is an artifact (SBOMs,
/// signature and attestation referrers); so is an entry under an attachment tag
/// ([`attachment_tag`]), since tools that copy cosign's tags into a layout (skopeo) write
/// them as plain image manifests with no `artifactType`.
pub fn is_attachment(entry: &Descriptor) -> bool {
    entry.artifact_type().is_some() || ref_name(entry).is_some_and(|t| attachment_tag(t).is_some())
}

/// The descriptor's digest as a [`Sha256Digest`]; other algorithms are refused.
pub fn descriptor_digest(descriptor: &Descriptor) -> Result<Sha256Digest> {
    Sha256Digest::try_from(descriptor.digest()).map_err(|e| error::input(e.to_string()))
}

/// Where the blob with `digest` lives under a layout at `root`.
pub fn blob_path(root: &Path, digest: &Sha256Digest) -> PathBuf {
    BlobStore::new(root).path(digest)
}

/// A layout being written in a staging directory beside its final place.
///
/// Blobs are content-addressed, so writing one that exists is a no-op. [`LayoutWriter::finish`]
/// writes `oci-layout` and `index.json` and swaps the directory into place.
pub struct LayoutWriter {
    staged: StagedDir,
}

impl LayoutWriter {
    /// Starts a new, empty layout that will replace `target`.
    pub fn create(target: &Path) -> Result<LayoutWriter> {
        let staged = StagedDir::new(target)?;
        let blobs = staged.path().join("blobs").join("sha256");
        fs::create_dir_all(&blobs).with_context(|| format!("cannot create {}", blobs.display()))?;
        Ok(LayoutWriter { staged })
    }

    /// Starts from a copy of the existing layout `existing`, to add images while keeping the
    /// others. Only the blobs `index.json` reaches are carried over (hard-linked where
    /// possible), and each only after it is read whole and found to match its descriptor, so
    /// an image written next can never reuse a blob that was altered: any blob that is
    /// missing, altered, or not a regular file inside the layout fails the update, naming it.
    pub fn update(existing: &Layout) -> Result<LayoutWriter> {
        let graph = walk::walk(
            existing.blobs(),
            existing.index().manifests(),
            &WalkOptions {
                subjects: true,
                ..WalkOptions::default()
            },
        )?
        .checked()?;
        let writer = LayoutWriter::create(existing.root())?;
        let blobs = writer.blobs_dir();
        let store = existing.blobs();
        for node in &graph.nodes {
            if node.is_dangling_subject() {
                continue;
            }
            // Manifests and indexes were verified when the walk read them.
            if node.document.is_none() {
                store.verify(&node.descriptor)?;
            }
            let Some(digest) = node.digest else { continue };
            let (from, to) = (store.path(&digest), blobs.join(digest.hex()));
            if fs::hard_link(&from, &to).is_err() {
                let mut blob = store.open_verified(&node.descriptor)?;
                let mut file = fs::File::create(&to)
                    .with_context(|| format!("cannot write {}", to.display()))?;
                std::io::copy(&mut blob, &mut file)
                    .with_context(|| format!("cannot copy {}", from.display()))?;
                blob.finish()?;
            }
        }
        Ok(writer)
    }

    fn blobs_dir(&self) -> PathBuf {
        self.staged.path().join("blobs").join("sha256")
    }

    /// The staging directory (for tools that want to read the layout before it is final).
    pub fn path(&self) -> &Path {
        self.staged.path()
    }

    /// Writes `bytes` as a blob and returns its descriptor.
    pub fn put_blob(&self, media_type: MediaType, bytes: &[u8]) -> Result<Descriptor> {
        let digest = Sha256Digest::of(bytes);
        let path = blob_path(self.staged.path(), &digest);
        if !path.exists() {
            atomic::write_file(&path, bytes)?;
        }
        Ok(Descriptor::new(media_type, bytes.len() as u64, digest))
    }

    /// Streams a blob through `write` (hashing as it goes) and returns its descriptor.
    pub fn put_blob_with(
        &self,
        media_type: MediaType,
        write: impl FnOnce(&mut dyn std::io::Write) -> Result<()>,
    ) -> Result<Descriptor> {
        let target = self.staged.target();
        let temp = tempfile::NamedTempFile::new_in(self.blobs_dir()).map_err(|e| {
            crate::error::write_failed(target, format!("cannot create a blob: {e}"))
        })?;
        let mut writer = HashingWriter::new(std::io::BufWriter::new(temp.as_file()));
        write(&mut writer)
            .with_context(|| format!("cannot write a blob of {}", target.display()))?;
        let (digest, size, buffered) = writer.finish();
        buffered
            .into_inner()
            .map_err(|e| crate::error::write_failed(target, e.into_error()))?;
        let path = blob_path(self.staged.path(), &digest);
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(fs::Permissions::from_mode(atomic::FILE_MODE))
            .map_err(|e| crate::error::write_failed(&path, e))?;
        temp.persist(&path)
            .map_err(|e| crate::error::write_failed(&path, e.error))?;
        Ok(Descriptor::new(media_type, size, digest))
    }

    /// Writes a JSON document canonically as a blob; returns its descriptor and the bytes.
    pub fn put_json<T: Serialize + ?Sized>(
        &self,
        media_type: MediaType,
        document: &T,
    ) -> Result<(Descriptor, Vec<u8>)> {
        let bytes = canonical_json(document)?;
        let descriptor = self.put_blob(media_type, &bytes)?;
        Ok((descriptor, bytes))
    }

    /// Writes `oci-layout` and `index.json` and moves the layout into place.
    pub fn finish(self, index: &ImageIndex) -> Result<()> {
        let root = self.staged.path();
        atomic::write_file(&root.join("oci-layout"), OCI_LAYOUT_FILE.as_bytes())?;
        atomic::write_file(&root.join("index.json"), &canonical_json(index)?)?;
        remove_unreferenced_tempfiles(&self.blobs_dir());
        self.staged.commit()
    }
}

fn remove_unreferenced_tempfiles(blobs: &Path) {
    if let Ok(entries) = fs::read_dir(blobs) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with('.') {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Adds the `org.opencontainers.image.ref.name` annotation to a descriptor.
pub fn with_ref_name(mut descriptor: Descriptor, tag: &str) -> Descriptor {
    let mut annotations: HashMap<String, String> =
        descriptor.annotations().clone().unwrap_or_default();
    annotations.insert(REF_NAME.to_owned(), tag.to_owned());
    descriptor.set_annotations(Some(annotations));
    descriptor
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::ImageIndexBuilder;
    use proptest::prelude::*;

    /// A real `index.json` with three entries: two tags of one image and an attached artifact.
    fn real_index() -> Vec<u8> {
        let image = Descriptor::new(MediaType::ImageManifest, 10, Sha256Digest::of(b"i"));
        let mut artifact = Descriptor::new(MediaType::ImageManifest, 5, Sha256Digest::of(b"a"));
        artifact.set_artifact_type(Some(MediaType::Other("application/spdx+json".into())));
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .manifests(vec![
                with_ref_name(image.clone(), "1.0"),
                with_ref_name(image, "latest"),
                artifact,
            ])
            .build()
            .unwrap();
        canonical_json(&index).unwrap()
    }

    proptest! {
        #[test]
        fn prop_open_and_resolve_never_panic(
            edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
            tag in proptest::option::of("[a-z0-9.]{0,6}"),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let mut bytes = real_index();
            for (at, byte) in &edits {
                let i = at.index(bytes.len());
                bytes[i] = *byte;
            }
            if truncate {
                bytes.truncate(cut.index(bytes.len()));
            }
            std::fs::write(dir.path().join("oci-layout"), OCI_LAYOUT_FILE).unwrap();
            std::fs::write(dir.path().join("index.json"), &bytes).unwrap();
            match Layout::open(dir.path()) {
                Ok(layout) => {
                    if let Ok(found) = layout.resolve(tag.as_deref())
                        && let Some(tag) = &tag
                    {
                        prop_assert_eq!(ref_name(found), Some(tag.as_str()));
                    }
                }
                Err(e) => {
                    prop_assert_eq!(crate::error::exit_kind(&e), crate::error::ExitKind::Input);
                    prop_assert!(format!("{e:#}").contains("index.json"), "{e:#}");
                }
            }
        }
    }

    #[test]
    fn resolves_the_one_image_past_artifacts_and_second_tags() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("oci-layout"), OCI_LAYOUT_FILE).unwrap();
        std::fs::write(dir.path().join("index.json"), real_index()).unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        let image = Sha256Digest::of(b"i");
        let found = |tag| descriptor_digest(layout.resolve(tag).unwrap()).unwrap();
        assert_eq!(found(None), image);
        assert_eq!(found(Some("latest")), image);

        // One tag on two different images is ambiguous.
        let twice = ImageIndexBuilder::default()
            .schema_version(2u32)
            .manifests(vec![
                with_ref_name(
                    Descriptor::new(MediaType::ImageManifest, 1, Sha256Digest::of(b"x")),
                    "v1",
                ),
                with_ref_name(
                    Descriptor::new(MediaType::ImageManifest, 1, Sha256Digest::of(b"y")),
                    "v1",
                ),
            ])
            .build()
            .unwrap();
        std::fs::write(
            dir.path().join("index.json"),
            canonical_json(&twice).unwrap(),
        )
        .unwrap();
        let layout = Layout::open(dir.path()).unwrap();
        let err = layout.resolve(Some("v1")).unwrap_err();
        assert!(err.to_string().contains("tags 2 images `v1`"), "{err}");
        assert!(layout.resolve(None).is_err());
    }

    /// What skopeo writes when a cosign signature tag is copied into a layout
    /// (`skopeo copy docker://R:sha256-<hex>.sig oci:DIR:sha256-<hex>.sig`): a plain image
    /// manifest entry, no `artifactType`, only the tag says what it is.
    #[test]
    fn resolves_the_one_image_past_attachments_known_only_by_their_tag() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("oci-layout"), OCI_LAYOUT_FILE).unwrap();
        let image = Sha256Digest::of(b"i");
        let entry = |content: &[u8], tag: String| {
            with_ref_name(
                Descriptor::new(MediaType::ImageManifest, 1, Sha256Digest::of(content)),
                &tag,
            )
        };
        let write = |entries: Vec<Descriptor>| {
            let index = ImageIndexBuilder::default()
                .schema_version(2u32)
                .manifests(entries)
                .build()
                .unwrap();
            std::fs::write(
                dir.path().join("index.json"),
                canonical_json(&index).unwrap(),
            )
            .unwrap();
            Layout::open(dir.path()).unwrap()
        };
        let hex = image.hex();
        let mut referrers_tag = entry(b"r", format!("sha256-{hex}"));
        referrers_tag.set_media_type(MediaType::ImageIndex);
        let attached = vec![
            entry(b"s", format!("sha256-{hex}.sig")),
            entry(b"a", format!("sha256-{hex}.att")),
            entry(b"b", format!("sha256-{hex}.sbom")),
            referrers_tag,
        ];
        let mut entries = vec![entry(b"i", "1.0".to_owned())];
        entries.extend(attached.iter().cloned());
        let layout = write(entries);
        assert_eq!(
            descriptor_digest(layout.resolve(None).unwrap()).unwrap(),
            image
        );
        for entry in &attached {
            assert!(is_attachment(entry), "{entry:?}");
        }

        // Tags that only look like cosign's name images: two of them are ambiguous.
        for tag in [
            format!("sha256-{hex}.exe"),
            format!("sha256-{}.sig", &hex[..63]),
            format!("sha512-{hex}.sig"),
            "sig".to_owned(),
        ] {
            let other = entry(tag.as_bytes(), tag.clone());
            assert!(!is_attachment(&other), "{tag}");
            let layout = write(vec![entry(b"i", "1.0".to_owned()), other]);
            let err = layout.resolve(None).unwrap_err();
            assert!(err.to_string().contains("several images"), "{tag}: {err}");
        }
    }

    #[test]
    fn parses_image_refs() {
        let r: ImageRef = "oci:out/layout:v1".parse().unwrap();
        assert_eq!(r.path, Path::new("out/layout"));
        assert_eq!(r.tag.as_deref(), Some("v1"));
        let r: ImageRef = "./a:b/layout".parse().unwrap();
        assert_eq!(r.path, Path::new("./a:b/layout"));
        assert_eq!(r.tag, None);
        assert!("oci:dir:bad tag!".parse::<ImageRef>().is_err());
        assert!("oci:".parse::<ImageRef>().is_err());
    }

    #[test]
    fn writes_then_reads_and_detects_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("layout");
        let writer = LayoutWriter::create(&target).unwrap();
        let blob = writer.put_blob(MediaType::ImageConfig, b"{}").unwrap();
        let streamed = writer
            .put_blob_with(MediaType::ImageLayerGzip, |w| Ok(w.write_all(b"layer")?))
            .unwrap();
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .manifests(vec![with_ref_name(blob.clone(), "latest")])
            .build()
            .unwrap();
        writer.finish(&index).unwrap();

        let layout = Layout::open(&target).unwrap();
        assert_eq!(layout.tags(), ["latest"]);
        let d = layout.resolve(Some("latest")).unwrap();
        assert_eq!(layout.read_document(d).unwrap(), b"{}");
        assert!(
            layout
                .resolve(Some("nope"))
                .unwrap_err()
                .to_string()
                .contains("latest")
        );
        assert_eq!(
            Sha256Digest::try_from(streamed.digest()).unwrap(),
            Sha256Digest::of(b"layer")
        );

        fs::write(layout.blob_path(&descriptor_digest(d).unwrap()), b"[]").unwrap();
        let err = layout.read_document(d).unwrap_err();
        assert_eq!(
            crate::error::exit_kind(&err),
            crate::error::ExitKind::CheckFailed
        );
    }
}
