//! Signatures and attestations in an OCI image layout, so `push` carries them: for each signed
//! manifest, a `sha256-<hex>.sig` (or `.att`) entry in `index.json` and a referrer artifact
//! whose `subject` is the manifest (see [`attach`](crate::signing::attach)). Both `index.json`
//! entries carry an `artifactType`, so they are never taken for images.
//!
//! Signing rewrites the layout through a staged copy (an interrupted signing leaves it as it
//! was); verifying reads only, each blob checked against its descriptor.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType};
use serde::Serialize;

use crate::digest::Sha256Digest;
use crate::error;
use crate::oci::layout::{self, Layout, LayoutWriter, descriptor_digest, ref_name};
use crate::oci::prune;
use crate::oci::walk::{self, WalkOptions};
use crate::signing::attach::{
    self, Attachment, AttachmentKind, AttachmentManifest, SignatureCheck,
};
use crate::signing::dsse::Envelope;
use crate::signing::key::{PublicKey, SigningKey};
use crate::signing::payload::SignedRepository;

/// containerd's annotation naming an image, `repository:tag`, which `image` writes on each
/// `index.json` entry: the default repository a signature names.
const CONTAINERD_IMAGE_NAME: &str = "io.containerd.image.name";

/// One manifest signed.
#[derive(Debug, Clone, Serialize)]
pub struct SignedImage {
    /// Its digest.
    pub digest: Sha256Digest,
    /// Its tag in the layout (for an index's children: the parent's).
    pub tag: Option<String>,
    /// `os/arch[/variant]` for an index's children.
    pub platform: Option<String>,
    /// The repository the signature names (`docker-reference`).
    pub signed_repository: SignedRepository,
    /// The tag cosign and containers/image read the signatures from.
    pub signature_tag: String,
    /// The referrer artifact holding the same signatures.
    pub referrer: Sha256Digest,
    /// Signatures now attached to it (by any key).
    pub signatures: usize,
}

/// A manifest to sign: its descriptor, where it came from, and the identity to sign it for.
struct Subject {
    descriptor: Descriptor,
    tag: Option<String>,
    platform: Option<String>,
    identity: SignedRepository,
}

/// Signs the image tagged `tag` in the layout at `root` (every image, without a tag) and, for
/// an index, each of its manifests, for `identity` (default: the repository of the entry's
/// `io.containerd.image.name`, which `cargo airlock image` writes).
pub fn sign_layout(
    root: &Path,
    tag: Option<&str>,
    key: &SigningKey,
    identity: Option<&SignedRepository>,
) -> Result<Vec<SignedImage>> {
    let layout = Layout::open(root)?;
    let mut subjects = Vec::new();
    for entry in image_entries(&layout, tag)? {
        let identity = match identity {
            Some(identity) => identity.clone(),
            None => default_identity(&layout, entry)?,
        };
        let tag = ref_name(entry).map(str::to_owned);
        // The whole image is read and checked first: a corrupt image is never signed. Its
        // manifests and indexes are signed, children first, the entry itself last.
        let graph = walk::walk(
            layout.blobs(),
            std::slice::from_ref(entry),
            &WalkOptions::default(),
        )?
        .checked()?;
        for node in graph.nodes.iter().filter(|n| n.document.is_some()) {
            let top = node.depth == 0;
            subjects.push(Subject {
                descriptor: if top {
                    entry.clone()
                } else {
                    node.descriptor.clone()
                },
                tag: tag.clone(),
                platform: node
                    .descriptor
                    .platform()
                    .as_ref()
                    .filter(|_| !top)
                    .map(|p| {
                        let mut s = format!("{}/{}", p.os(), p.architecture());
                        if let Some(variant) = p.variant() {
                            s.push('/');
                            s.push_str(variant);
                        }
                        s
                    }),
                identity: identity.clone(),
            });
        }
    }
    let mut additions = Vec::new();
    for subject in &subjects {
        let digest = descriptor_digest(&subject.descriptor)?;
        additions.push((
            subject.descriptor.clone(),
            vec![Attachment::signature(key, digest, &subject.identity)?],
        ));
    }
    let written = attach_to_layout(
        &layout,
        AttachmentKind::Signature,
        additions,
        key.public_key(),
    )?;
    subjects
        .into_iter()
        .zip(written)
        .map(|(subject, written)| {
            Ok(SignedImage {
                digest: descriptor_digest(&subject.descriptor)?,
                tag: subject.tag,
                platform: subject.platform,
                signed_repository: subject.identity,
                signature_tag: written.tag,
                referrer: written.referrer,
                signatures: written.layers,
            })
        })
        .collect()
}

/// Attaches a signed DSSE attestation (an in-toto statement whose predicate is of
/// `predicate_type`, e.g. `https://slsa.dev/provenance/v1`) to the image tagged `tag` in the
/// layout at `root` (its only image, without a tag), in cosign's `.att` form and as a
/// referrer. Attestations already attached stay; the same envelope is not added twice.
pub fn attest_layout(
    root: &Path,
    tag: Option<&str>,
    envelope: &Envelope,
    predicate_type: &str,
    key: &PublicKey,
) -> Result<AttachedTo> {
    let layout = Layout::open(root)?;
    let subject = layout.resolve(tag)?.clone();
    let layer = Attachment::attestation(envelope, predicate_type)?;
    let mut written = attach_to_layout(
        &layout,
        AttachmentKind::Attestation,
        vec![(subject, vec![layer])],
        key,
    )?;
    written
        .pop()
        .ok_or_else(|| anyhow::anyhow!("nothing was attached"))
}

/// Where attachments were written for one subject.
#[derive(Debug, Clone, Serialize)]
pub struct AttachedTo {
    /// The subject's digest.
    pub subject: Sha256Digest,
    /// The `sha256-<hex>.sig`/`.att` tag.
    pub tag: String,
    /// The referrer artifact's digest.
    pub referrer: Sha256Digest,
    /// How many layers the tag's manifest now holds.
    pub layers: usize,
}

/// Writes `kind` attachments for each subject into `writer`, in both forms, and updates
/// `entries` (the new `index.json`'s): the subject's `.sig`/`.att` entry is replaced, and so is
/// any referrer entry of this kind whose digest is in `replaced_referrers`. `layers` is the
/// full set for each subject.
pub fn write_attachments(
    writer: &LayoutWriter,
    entries: &mut Vec<Descriptor>,
    kind: AttachmentKind,
    subject: &Descriptor,
    layers: &[Attachment],
    replaced_referrers: &BTreeSet<Sha256Digest>,
) -> Result<AttachedTo> {
    let subject_digest = descriptor_digest(subject)?;
    let tag = kind.tag(&subject_digest);
    let tagged = attach::tag_manifest(kind, layers)?;
    let referrer = attach::referrer_manifest(kind, layers, subject)?;
    for manifest in [&tagged, &referrer] {
        store(writer, manifest)?;
    }
    entries.retain(|entry| {
        let replaced_tag = ref_name(entry) == Some(tag.as_str());
        let replaced_referrer = is_kind(entry, kind)
            && ref_name(entry).is_none()
            && descriptor_digest(entry).is_ok_and(|d| replaced_referrers.contains(&d));
        !(replaced_tag || replaced_referrer)
    });
    entries.push(layout::with_ref_name(tagged.descriptor.clone(), &tag));
    entries.push(referrer.descriptor.clone());
    Ok(AttachedTo {
        subject: subject_digest,
        tag,
        referrer: descriptor_digest(&referrer.descriptor)?,
        layers: layers.len(),
    })
}

fn store(writer: &LayoutWriter, manifest: &AttachmentManifest) -> Result<()> {
    for (descriptor, bytes) in &manifest.blobs {
        writer.put_blob(descriptor.media_type().clone(), bytes)?;
    }
    writer.put_blob(MediaType::ImageManifest, &manifest.manifest)?;
    Ok(())
}

/// Adds `kind` layers to each subject, merged with what the layout already attaches to it,
/// and swaps the layout in; returns what was written, in the order of `additions`.
fn attach_to_layout(
    layout: &Layout,
    kind: AttachmentKind,
    additions: Vec<(Descriptor, Vec<Attachment>)>,
    key: &PublicKey,
) -> Result<Vec<AttachedTo>> {
    let existing = Attachments::read(layout)?;
    let writer = LayoutWriter::update(layout)?;
    let mut entries = layout.index().manifests().clone();
    let mut written = Vec::with_capacity(additions.len());
    for (subject, added) in additions {
        let digest = descriptor_digest(&subject)?;
        let found = existing.of(kind, &digest);
        let old_layers = found.map(|f| f.layers.clone()).unwrap_or_default();
        let replaced: BTreeSet<Sha256Digest> = found
            .map(|f| f.referrers.iter().copied().collect())
            .unwrap_or_default();
        let layers = attach::merge_layers(old_layers, added, Some(key));
        written.push(write_attachments(
            &writer,
            &mut entries,
            kind,
            &subject,
            &layers,
            &replaced,
        )?);
    }
    let index = rebuild_index(layout.index(), entries)?;
    prune::prune_unreachable(writer.path(), &index)?;
    writer.finish(&index)?;
    Ok(written)
}

fn rebuild_index(old: &ImageIndex, entries: Vec<Descriptor>) -> Result<ImageIndex> {
    let mut builder = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(entries);
    if let Some(annotations) = old.annotations() {
        builder = builder.annotations(annotations.clone());
    }
    builder
        .build()
        .context("cannot build the layout's index.json")
}

/// The `index.json` entries to sign: the one tagged `tag`, else every image (entries without
/// an `artifactType`), one per digest.
fn image_entries<'a>(layout: &'a Layout, tag: Option<&str>) -> Result<Vec<&'a Descriptor>> {
    if let Some(tag) = tag {
        return Ok(vec![layout.resolve(Some(tag))?]);
    }
    let mut seen = BTreeSet::new();
    let mut images = Vec::new();
    for entry in layout.index().manifests() {
        if is_attachment(entry) {
            continue;
        }
        if seen.insert(descriptor_digest(entry)?) {
            images.push(entry);
        }
    }
    if images.is_empty() {
        return Err(error::input(format!(
            "{} holds no image to sign",
            layout.root().display()
        )));
    }
    Ok(images)
}

/// The repository of the entry's `io.containerd.image.name` (`repository:tag`).
fn default_identity(layout: &Layout, entry: &Descriptor) -> Result<SignedRepository> {
    let name = entry
        .annotations()
        .as_ref()
        .and_then(|a| a.get(CONTAINERD_IMAGE_NAME));
    let shown = || {
        ref_name(entry)
            .map(|t| format!("`{t}`"))
            .unwrap_or_else(|| entry.digest().to_string())
    };
    let Some(name) = name else {
        return Err(error::input(format!(
            "{}: image {} has no {CONTAINERD_IMAGE_NAME} annotation to name the repository \
             the signature is for; give it with --signed-repository REGISTRY/REPOSITORY",
            layout.root().display(),
            shown()
        )));
    };
    // `repository:tag`: a tag never holds `/`, so a `:` after the last `/` starts it.
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    let repository = match name[last_slash..].rfind(':') {
        Some(i) => &name[..last_slash + i],
        None => name.as_str(),
    };
    repository.parse().with_context(|| {
        format!(
            "{}: the name of image {} does not make a repository to sign for; give one with \
             --signed-repository",
            layout.root().display(),
            shown()
        )
    })
}

/// Whether an `index.json` entry is attached to an image rather than one: it has an
/// `artifactType` (SBOMs, airlock's signatures), or its tag is cosign's `sha256-<hex>.sig` /
/// `.att` (signatures copied into a layout by other tools carry no `artifactType`).
fn is_attachment(entry: &Descriptor) -> bool {
    entry.artifact_type().is_some()
        || ref_name(entry).is_some_and(|tag| AttachmentKind::parse_tag(tag).is_some())
}

fn is_kind(entry: &Descriptor, kind: AttachmentKind) -> bool {
    entry
        .artifact_type()
        .as_ref()
        .is_some_and(|t| t.to_string() == kind.artifact_type())
}

/// What a layout attaches to each manifest, by kind, read and checked.
struct Attachments {
    by_subject: BTreeMap<(AttachmentKind, Sha256Digest), Found>,
}

/// The attachments of one kind for one manifest.
#[derive(Default)]
struct Found {
    /// Layers from the tag's manifest, then those of referrers not already seen.
    layers: Vec<Attachment>,
    /// Where they were found, for messages: `tag sha256-….sig`, `referrer sha256:…`.
    sources: Vec<String>,
    /// The referrer manifests of this kind naming the subject.
    referrers: Vec<Sha256Digest>,
}

impl Attachments {
    /// Reads every attachment; the first that cannot be read or checked is an error.
    fn read(layout: &Layout) -> Result<Attachments> {
        let (attachments, mut problems) = Attachments::read_all(layout, true)?;
        match problems.pop() {
            Some((_, e)) => Err(e),
            None => Ok(attachments),
        }
    }

    /// Reads every attachment. Unless `strict`, one that cannot be read or checked is set
    /// aside with the error (the index.json entry it came from, why), for `verify` to name.
    fn read_all(
        layout: &Layout,
        strict: bool,
    ) -> Result<(Attachments, Vec<(String, anyhow::Error)>)> {
        let mut attachments = Attachments {
            by_subject: BTreeMap::new(),
        };
        let mut problems = Vec::new();
        for entry in layout.index().manifests() {
            if let Err(e) = attachments.add(layout, entry) {
                if strict {
                    return Err(e);
                }
                let shown = ref_name(entry)
                    .map(|t| format!("tag {t}"))
                    .unwrap_or_else(|| format!("referrer {}", entry.digest()));
                problems.push((shown, e));
            }
        }
        Ok((attachments, problems))
    }

    fn add(&mut self, layout: &Layout, entry: &Descriptor) -> Result<()> {
        let tagged = ref_name(entry).and_then(AttachmentKind::parse_tag);
        let referrer_kind = entry
            .artifact_type()
            .as_ref()
            .and_then(|t| AttachmentKind::from_artifact_type(t.as_ref()))
            .filter(|_| ref_name(entry).is_none());
        if tagged.is_none() && referrer_kind.is_none() {
            return Ok(());
        }
        let manifest: ImageManifest = layout.read_json(entry)?;
        let (kind, subject, source) = match (tagged, referrer_kind) {
            (Some((kind, subject)), _) => (kind, subject, format!("tag {}", kind.tag(&subject))),
            (None, Some(kind)) => {
                let Some(subject) = manifest.subject() else {
                    return Ok(());
                };
                (
                    kind,
                    descriptor_digest(subject)?,
                    format!("referrer {}", entry.digest()),
                )
            }
            (None, None) => return Ok(()),
        };
        let mut layers = Vec::with_capacity(manifest.layers().len());
        for layer in manifest.layers() {
            layers.push(Attachment::from_layer(
                layer,
                layout.blobs().read_document(layer)?,
            ));
        }
        let found = self.by_subject.entry((kind, subject)).or_default();
        if tagged.is_none() {
            found.referrers.push(descriptor_digest(entry)?);
        }
        found.sources.push(source);
        for attachment in layers {
            if !found.layers.contains(&attachment) {
                found.layers.push(attachment);
            }
        }
        Ok(())
    }

    fn of(&self, kind: AttachmentKind, subject: &Sha256Digest) -> Option<&Found> {
        self.by_subject.get(&(kind, *subject))
    }
}

/// Every attachment of the layout by kind and subject (each layer once, from the
/// `.sig`/`.att` tags and the referrers), every blob checked against its descriptor.
pub fn all_attachments(
    layout: &Layout,
) -> Result<BTreeMap<(AttachmentKind, Sha256Digest), Vec<Attachment>>> {
    Ok(Attachments::read(layout)?
        .by_subject
        .into_iter()
        .map(|(key, found)| (key, found.layers))
        .collect())
}

/// How one image of a layout stands against a key.
#[derive(Debug, Clone, Serialize)]
pub struct ImageVerdict {
    /// The image's digest.
    pub digest: Sha256Digest,
    /// Its tags in the layout.
    pub tags: Vec<String>,
    /// The repositories that valid signatures by the key name (empty: not signed by it).
    pub signed_repositories: Vec<String>,
    /// Why each signature that is not a valid one by the key for this image fails.
    pub rejected: Vec<String>,
}

impl ImageVerdict {
    /// Whether a signature by the key vouches for this image.
    pub fn ok(&self) -> bool {
        !self.signed_repositories.is_empty()
    }
}

/// What [`verify_layout`] found.
#[derive(Debug)]
pub struct LayoutVerdict {
    /// One verdict per image.
    pub images: Vec<ImageVerdict>,
    /// Attachments that could not be read or checked: the `index.json` entry and why.
    pub unreadable: Vec<(String, anyhow::Error)>,
}

/// Checks every image of the layout (each `index.json` entry that is not an attachment: no
/// `artifactType`, no cosign `.sig`/`.att` tag) for a
/// signature by `key` naming its digest, in the `.sig` tag or a signature referrer. An
/// attachment that cannot be read (a blob altered, missing) is set aside in the verdict.
pub fn verify_layout(layout: &Layout, key: &PublicKey) -> Result<LayoutVerdict> {
    let (attachments, unreadable) = Attachments::read_all(layout, false)?;
    let mut images: BTreeMap<Sha256Digest, Vec<String>> = BTreeMap::new();
    for entry in layout.index().manifests() {
        if is_attachment(entry) {
            continue;
        }
        let tags = images.entry(descriptor_digest(entry)?).or_default();
        tags.extend(ref_name(entry).map(str::to_owned));
    }
    let mut verdicts = Vec::with_capacity(images.len());
    for (digest, tags) in images {
        let mut verdict = ImageVerdict {
            digest,
            tags,
            signed_repositories: Vec::new(),
            rejected: Vec::new(),
        };
        let Some(found) = attachments.of(AttachmentKind::Signature, &digest) else {
            verdicts.push(verdict);
            continue;
        };
        let sources = found.sources.join(", ");
        for layer in &found.layers {
            let layer_digest = Sha256Digest::of(&layer.bytes);
            match layer.check_signature(key) {
                SignatureCheck::Valid(payload) if payload.manifest_digest == digest => {
                    if !verdict
                        .signed_repositories
                        .contains(&payload.docker_reference)
                    {
                        verdict.signed_repositories.push(payload.docker_reference);
                    }
                }
                SignatureCheck::Valid(payload) => verdict.rejected.push(format!(
                    "signature {layer_digest} ({sources}) is for another image, {}",
                    payload.manifest_digest
                )),
                SignatureCheck::OtherKey => verdict.rejected.push(format!(
                    "signature {layer_digest} ({sources}) is not by the key {}",
                    key.key_id()
                )),
                SignatureCheck::Malformed(why) => verdict
                    .rejected
                    .push(format!("signature {layer_digest} ({sources}): {why}")),
                SignatureCheck::NotASignature => {}
            }
        }
        verdicts.push(verdict);
    }
    Ok(LayoutVerdict {
        images: verdicts,
        unreadable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layout with one image manifest tagged `1.0` and named `hello:1.0`.
    fn layout_with_image(dir: &Path) -> Descriptor {
        let root = dir.join("layout");
        let writer = LayoutWriter::create(&root).unwrap();
        let config = writer.put_blob(MediaType::EmptyJSON, b"{}").unwrap();
        let manifest = oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config)
            .layers(vec![])
            .build()
            .unwrap();
        let (image, _) = writer
            .put_json(MediaType::ImageManifest, &manifest)
            .unwrap();
        let mut entry = layout::with_ref_name(image.clone(), "1.0");
        let mut annotations = entry.annotations().clone().unwrap();
        annotations.insert(
            CONTAINERD_IMAGE_NAME.into(),
            "localhost:5000/hello:1.0".into(),
        );
        entry.set_annotations(Some(annotations));
        let index = rebuild_index(
            &ImageIndexBuilder::default()
                .schema_version(2u32)
                .manifests(vec![])
                .build()
                .unwrap(),
            vec![entry],
        )
        .unwrap();
        writer.finish(&index).unwrap();
        image
    }

    #[test]
    fn signs_in_both_forms_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let image = layout_with_image(dir.path());
        let root = dir.path().join("layout");
        let (key, _) = SigningKey::generate().unwrap();
        let (other, _) = SigningKey::generate().unwrap();

        let signed = sign_layout(&root, None, &key, None).unwrap();
        assert_eq!(signed.len(), 1);
        assert_eq!(signed[0].signed_repository.as_str(), "localhost:5000/hello");
        let digest = descriptor_digest(&image).unwrap();
        assert_eq!(
            signed[0].signature_tag,
            format!("sha256-{}.sig", digest.hex())
        );

        let layout = Layout::open(&root).unwrap();
        // Still one image: the attachments are not taken for images.
        assert_eq!(layout.resolve(None).unwrap().digest(), image.digest());
        let verdicts = verify_layout(&layout, key.public_key()).unwrap().images;
        assert!(verdicts[0].ok(), "{verdicts:?}");
        assert_eq!(verdicts[0].signed_repositories, ["localhost:5000/hello"]);
        assert!(verdicts[0].rejected.is_empty());
        let verdicts = verify_layout(&layout, other.public_key()).unwrap().images;
        assert!(!verdicts[0].ok());
        assert!(
            verdicts[0].rejected[0].contains("is not by the key"),
            "{verdicts:?}"
        );

        // Signing again with the same key adds nothing; another key adds its signature.
        let again = sign_layout(&root, Some("1.0"), &key, None).unwrap();
        assert_eq!(again[0].signatures, 1);
        let both = sign_layout(&root, None, &other, None).unwrap();
        assert_eq!(both[0].signatures, 2);
        let layout = Layout::open(&root).unwrap();
        let attachments = Attachments::read(&layout).unwrap();
        let found = attachments.of(AttachmentKind::Signature, &digest).unwrap();
        assert_eq!(found.referrers.len(), 1, "the old referrer was replaced");
        assert_eq!(layout.index().manifests().len(), 3);
        assert!(verify_layout(&layout, key.public_key()).unwrap().images[0].ok());
    }

    #[test]
    fn attestations_go_beside_signatures() {
        let dir = tempfile::tempdir().unwrap();
        let image = layout_with_image(dir.path());
        let root = dir.path().join("layout");
        let (key, _) = SigningKey::generate().unwrap();
        let statement = br#"{"_type":"https://in-toto.io/Statement/v1"}"#;
        let envelope =
            crate::signing::dsse::sign(&key, crate::signing::dsse::IN_TOTO_PAYLOAD_TYPE, statement)
                .unwrap();
        let attached = attest_layout(
            &root,
            None,
            &envelope,
            "https://slsa.dev/provenance/v1",
            key.public_key(),
        )
        .unwrap();
        let digest = descriptor_digest(&image).unwrap();
        assert_eq!(attached.tag, format!("sha256-{}.att", digest.hex()));
        let layout = Layout::open(&root).unwrap();
        let entry = layout.resolve(Some(&attached.tag)).unwrap();
        let manifest: ImageManifest = layout.read_json(entry).unwrap();
        let layer = &manifest.layers()[0];
        assert_eq!(
            layer.media_type().to_string(),
            "application/vnd.dsse.envelope.v1+json"
        );
        assert_eq!(
            layer.annotations().as_ref().unwrap()["predicateType"],
            "https://slsa.dev/provenance/v1"
        );
        let parsed =
            Envelope::parse(&layout.blobs().read_document(layer).unwrap(), "layer").unwrap();
        assert_eq!(parsed.verify(key.public_key()).unwrap(), statement);
        // Not a signature: the image is still unsigned.
        assert!(!verify_layout(&layout, key.public_key()).unwrap().images[0].ok());
    }
}
