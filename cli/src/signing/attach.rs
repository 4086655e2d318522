//! Signatures and attestations attached to an image, in the two forms registries and tools
//! read:
//!
//! - cosign's tag scheme, which cosign and containers/image (`use-sigstore-attachments`) read:
//!   an image manifest tagged `sha256-<image hex>.sig` (or `.att`) whose layers are the
//!   signatures (`application/vnd.dev.cosign.simplesigning.v1+json`, the signature in the
//!   `dev.cosignproject.cosign/signature` annotation) or the attestations (DSSE envelopes,
//!   `application/vnd.dsse.envelope.v1+json`, with a `predicateType` annotation);
//! - the OCI referrers form (image-spec `manifest.md`, artifacts): the same layers in an
//!   artifact manifest whose `subject` is the image, which registries list through the
//!   referrers API (`push` keeps the fallback tag for those that do not).
//!
//! This module builds and reads the documents as bytes; where they are stored (a layout, a
//! registry) is the caller's business.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use oci_spec::image::{Descriptor, ImageManifest, ImageManifestBuilder, MediaType};

use crate::digest::Sha256Digest;
use crate::oci::json::canonical_json;
use crate::signing::dsse::{self, Envelope};
use crate::signing::key::{PublicKey, SigningKey};
use crate::signing::payload::{SignedRepository, SimpleSigning};

/// The layer media type of a simple-signing signature (cosign `types.SimpleSigningMediaType`).
pub const SIMPLE_SIGNING_MEDIA_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding the base64 signature (cosign `static.SignatureAnnotationKey`).
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The layer annotation naming an attestation's predicate (`https://slsa.dev/provenance/v1`).
pub const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// `artifactType` of a signature referrer, and of a `.sig` entry in a layout's `index.json`.
pub const SIGNATURE_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.sig.v1+json";
/// `artifactType` of an attestation referrer, and of a `.att` entry in `index.json`.
pub const ATTESTATION_ARTIFACT_TYPE: &str = "application/vnd.dev.cosign.artifact.att.v1+json";

/// The empty JSON config of artifact manifests (image-spec `manifest.md`, "Guidelines for
/// Artifact Usage").
const EMPTY_JSON: &[u8] = b"{}";

/// Signatures or attestations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttachmentKind {
    /// Simple-signing signatures (`.sig`).
    Signature,
    /// DSSE attestations (`.att`).
    Attestation,
}

impl AttachmentKind {
    /// The tag of `digest`'s attachments of this kind: `sha256-<hex>.sig` / `.att`.
    pub fn tag(self, digest: &Sha256Digest) -> String {
        format!("sha256-{}.{}", digest.hex(), self.suffix())
    }

    fn suffix(self) -> &'static str {
        match self {
            AttachmentKind::Signature => "sig",
            AttachmentKind::Attestation => "att",
        }
    }

    /// The `artifactType` of this kind's referrers.
    pub fn artifact_type(self) -> &'static str {
        match self {
            AttachmentKind::Signature => SIGNATURE_ARTIFACT_TYPE,
            AttachmentKind::Attestation => ATTESTATION_ARTIFACT_TYPE,
        }
    }

    /// The kind an `artifactType` names, if it is one of these.
    pub fn from_artifact_type(artifact_type: &str) -> Option<AttachmentKind> {
        [AttachmentKind::Signature, AttachmentKind::Attestation]
            .into_iter()
            .find(|k| k.artifact_type() == artifact_type)
    }

    /// The kind and image digest a tag names, when it is `sha256-<hex>.sig` or `.att`.
    pub fn parse_tag(tag: &str) -> Option<(AttachmentKind, Sha256Digest)> {
        let rest = tag.strip_prefix("sha256-")?;
        let (hex, suffix) = rest.split_once('.')?;
        let kind = [AttachmentKind::Signature, AttachmentKind::Attestation]
            .into_iter()
            .find(|k| k.suffix() == suffix)?;
        Some((kind, Sha256Digest::from_hex(hex).ok()?))
    }
}

/// One attached layer: a signature or an attestation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    /// Its media type.
    pub media_type: String,
    /// Its bytes (the simple-signing payload, or the DSSE envelope).
    pub bytes: Vec<u8>,
    /// Its annotations (the signature, the predicate type).
    pub annotations: BTreeMap<String, String>,
}

impl Attachment {
    /// `key`'s signature that the image with `manifest_digest` is `identity`'s.
    pub fn signature(
        key: &SigningKey,
        manifest_digest: Sha256Digest,
        identity: &SignedRepository,
    ) -> Result<Attachment> {
        let payload = SimpleSigning {
            manifest_digest,
            docker_reference: identity.to_string(),
        }
        .to_json();
        let signature = STANDARD.encode(key.sign(&payload)?);
        Ok(Attachment {
            media_type: SIMPLE_SIGNING_MEDIA_TYPE.to_owned(),
            bytes: payload,
            annotations: BTreeMap::from([(SIGNATURE_ANNOTATION.to_owned(), signature)]),
        })
    }

    /// An attestation: a signed DSSE envelope of an in-toto statement whose predicate is of
    /// `predicate_type`. cosign gives attestation layers an empty signature annotation (the
    /// signature is inside the envelope); so does airlock.
    pub fn attestation(envelope: &Envelope, predicate_type: &str) -> Result<Attachment> {
        Ok(Attachment {
            media_type: dsse::ENVELOPE_MEDIA_TYPE.to_owned(),
            bytes: envelope.to_json()?,
            annotations: BTreeMap::from([
                (
                    PREDICATE_TYPE_ANNOTATION.to_owned(),
                    predicate_type.to_owned(),
                ),
                (SIGNATURE_ANNOTATION.to_owned(), String::new()),
            ]),
        })
    }

    /// The layer's descriptor.
    pub fn descriptor(&self) -> Descriptor {
        let mut descriptor = Descriptor::new(
            MediaType::Other(self.media_type.clone()),
            self.bytes.len() as u64,
            Sha256Digest::of(&self.bytes),
        );
        if !self.annotations.is_empty() {
            descriptor.set_annotations(Some(to_hash_map(&self.annotations)));
        }
        descriptor
    }

    /// Whether this layer is a signature by `key` (whatever it names).
    pub fn signed_by(&self, key: &PublicKey) -> bool {
        matches!(self.check_signature(key), SignatureCheck::Valid(_))
    }

    /// What this layer is worth as `key`'s signature.
    pub fn check_signature(&self, key: &PublicKey) -> SignatureCheck {
        if self.media_type != SIMPLE_SIGNING_MEDIA_TYPE {
            return SignatureCheck::NotASignature;
        }
        let Some(encoded) = self.annotations.get(SIGNATURE_ANNOTATION) else {
            return SignatureCheck::Malformed(format!(
                "it has no {SIGNATURE_ANNOTATION} annotation"
            ));
        };
        let Ok(signature) = STANDARD.decode(encoded) else {
            return SignatureCheck::Malformed("its signature is not base64".to_owned());
        };
        if !key.verify(&self.bytes, &signature) {
            return SignatureCheck::OtherKey;
        }
        // Only a payload the key signed is worth parsing (containers/image's order too).
        match SimpleSigning::parse(&self.bytes) {
            Ok(payload) => SignatureCheck::Valid(payload),
            Err(why) => SignatureCheck::Malformed(format!("its signed payload is invalid: {why}")),
        }
    }

    /// Builds the layer of `descriptor` from its verified bytes.
    pub fn from_layer(descriptor: &Descriptor, bytes: Vec<u8>) -> Attachment {
        Attachment {
            media_type: descriptor.media_type().to_string(),
            bytes,
            annotations: descriptor
                .annotations()
                .as_ref()
                .map(|a| a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        }
    }
}

/// What a layer is worth as a given key's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignatureCheck {
    /// The key signed this payload.
    Valid(SimpleSigning),
    /// A signature, but not by this key (or of other bytes).
    OtherKey,
    /// Not a simple-signing layer (an attestation, say).
    NotASignature,
    /// A simple-signing layer that cannot be checked, and why.
    Malformed(String),
}

/// A manifest holding attachments, serialised, with every blob it names.
#[derive(Debug, Clone)]
pub struct AttachmentManifest {
    /// The manifest's descriptor (for `index.json`, with `artifactType` set).
    pub descriptor: Descriptor,
    /// The manifest's exact bytes.
    pub manifest: Vec<u8>,
    /// The config and layers: descriptor and bytes.
    pub blobs: Vec<(Descriptor, Vec<u8>)>,
}

/// The manifest for cosign's tag (`sha256-<hex>.sig`): an image manifest whose config is an
/// image config listing the layers as its `diff_ids` (the layers are stored uncompressed), as
/// cosign writes it.
pub fn tag_manifest(kind: AttachmentKind, layers: &[Attachment]) -> Result<AttachmentManifest> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| Sha256Digest::of(&l.bytes).to_string())
        .collect();
    let config_bytes = canonical_json(&serde_json::json!({
        "architecture": "",
        "config": {},
        "os": "",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))?;
    let config = Descriptor::new(
        MediaType::ImageConfig,
        config_bytes.len() as u64,
        Sha256Digest::of(&config_bytes),
    );
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config.clone())
        .layers(
            layers
                .iter()
                .map(Attachment::descriptor)
                .collect::<Vec<_>>(),
        )
        .build()
        .with_context(|| format!("cannot build the {} manifest", kind.suffix()))?;
    finish(kind, &manifest, (config, config_bytes), layers)
}

/// The referrers form: an artifact manifest (`artifactType`, the empty config) whose
/// `subject` is the image.
pub fn referrer_manifest(
    kind: AttachmentKind,
    layers: &[Attachment],
    subject: &Descriptor,
) -> Result<AttachmentManifest> {
    let config = Descriptor::new(
        MediaType::EmptyJSON,
        EMPTY_JSON.len() as u64,
        Sha256Digest::of(EMPTY_JSON),
    );
    // The subject names the image by digest; its tag belongs to index.json only.
    let subject = Descriptor::new(
        subject.media_type().clone(),
        subject.size(),
        subject.digest().clone(),
    );
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::Other(kind.artifact_type().to_owned()))
        .config(config.clone())
        .layers(
            layers
                .iter()
                .map(Attachment::descriptor)
                .collect::<Vec<_>>(),
        )
        .subject(subject)
        .build()
        .with_context(|| format!("cannot build the {} referrer manifest", kind.suffix()))?;
    finish(kind, &manifest, (config, EMPTY_JSON.to_vec()), layers)
}

fn finish(
    kind: AttachmentKind,
    manifest: &ImageManifest,
    config: (Descriptor, Vec<u8>),
    layers: &[Attachment],
) -> Result<AttachmentManifest> {
    let bytes = canonical_json(manifest)?;
    let mut descriptor = Descriptor::new(
        MediaType::ImageManifest,
        bytes.len() as u64,
        Sha256Digest::of(&bytes),
    );
    descriptor.set_artifact_type(Some(MediaType::Other(kind.artifact_type().to_owned())));
    let mut blobs = vec![config];
    blobs.extend(layers.iter().map(|l| (l.descriptor(), l.bytes.clone())));
    Ok(AttachmentManifest {
        descriptor,
        manifest: bytes,
        blobs,
    })
}

/// `layers` followed by the `added` ones that are not already there; with `key`, an added
/// layer is also left out when an existing one already is `key`'s signature of the same
/// payload (signing twice adds nothing, as cosign's duplicate detection does).
pub fn merge_layers(
    existing: Vec<Attachment>,
    added: Vec<Attachment>,
    key: Option<&PublicKey>,
) -> Vec<Attachment> {
    let mut merged = existing;
    for layer in added {
        let duplicate = merged.iter().any(|old| {
            old == &layer
                || (old.media_type == layer.media_type
                    && old.bytes == layer.bytes
                    && key.is_some_and(|key| old.signed_by(key)))
        });
        if !duplicate {
            merged.push(layer);
        }
    }
    merged
}

fn to_hash_map(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> SignedRepository {
        "registry.example.com/team/app".parse().unwrap()
    }

    #[test]
    fn tags_name_the_digest_and_the_kind() {
        let digest = Sha256Digest::of(b"image");
        let tag = AttachmentKind::Signature.tag(&digest);
        assert_eq!(tag, format!("sha256-{}.sig", digest.hex()));
        assert_eq!(
            AttachmentKind::parse_tag(&tag),
            Some((AttachmentKind::Signature, digest))
        );
        assert_eq!(
            AttachmentKind::parse_tag(&AttachmentKind::Attestation.tag(&digest)),
            Some((AttachmentKind::Attestation, digest))
        );
        assert_eq!(AttachmentKind::parse_tag("sha256-abc.sig"), None);
        assert_eq!(AttachmentKind::parse_tag("1.0.0"), None);
    }

    #[test]
    fn a_signature_layer_checks_key_and_payload() {
        let (key, _) = SigningKey::generate().unwrap();
        let (other, _) = SigningKey::generate().unwrap();
        let digest = Sha256Digest::of(b"image");
        let layer = Attachment::signature(&key, digest, &identity()).unwrap();
        assert_eq!(layer.media_type, SIMPLE_SIGNING_MEDIA_TYPE);
        let SignatureCheck::Valid(payload) = layer.check_signature(key.public_key()) else {
            panic!("own signature does not verify");
        };
        assert_eq!(payload.manifest_digest, digest);
        assert_eq!(payload.docker_reference, "registry.example.com/team/app");
        assert_eq!(
            layer.check_signature(other.public_key()),
            SignatureCheck::OtherKey
        );
        let mut altered = layer.clone();
        altered.bytes = altered.bytes.replace_first(b"team", b"evil");
        assert_eq!(
            altered.check_signature(key.public_key()),
            SignatureCheck::OtherKey
        );
    }

    trait ReplaceFirst {
        fn replace_first(&self, from: &[u8], to: &[u8]) -> Vec<u8>;
    }
    impl ReplaceFirst for Vec<u8> {
        fn replace_first(&self, from: &[u8], to: &[u8]) -> Vec<u8> {
            let at = self.windows(from.len()).position(|w| w == from).unwrap();
            [&self[..at], to, &self[at + from.len()..]].concat()
        }
    }

    #[test]
    fn manifests_in_both_forms() {
        let (key, _) = SigningKey::generate().unwrap();
        let image = Descriptor::new(MediaType::ImageManifest, 10, Sha256Digest::of(b"image"));
        let layer = Attachment::signature(&key, Sha256Digest::of(b"image"), &identity()).unwrap();

        let tagged = tag_manifest(AttachmentKind::Signature, std::slice::from_ref(&layer)).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&tagged.manifest).unwrap();
        assert_eq!(
            value["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(
            value["config"]["mediaType"],
            "application/vnd.oci.image.config.v1+json"
        );
        assert_eq!(value["layers"][0]["mediaType"], SIMPLE_SIGNING_MEDIA_TYPE);
        assert!(value["layers"][0]["annotations"][SIGNATURE_ANNOTATION].is_string());
        assert!(value.get("subject").is_none());
        assert_eq!(tagged.blobs.len(), 2);

        let referrer = referrer_manifest(
            AttachmentKind::Signature,
            std::slice::from_ref(&layer),
            &image,
        )
        .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&referrer.manifest).unwrap();
        assert_eq!(value["artifactType"], SIGNATURE_ARTIFACT_TYPE);
        assert_eq!(
            value["config"]["mediaType"],
            "application/vnd.oci.empty.v1+json"
        );
        assert_eq!(
            value["subject"]["digest"],
            Sha256Digest::of(b"image").to_string()
        );
        assert_eq!(
            referrer
                .descriptor
                .artifact_type()
                .as_ref()
                .unwrap()
                .to_string(),
            SIGNATURE_ARTIFACT_TYPE
        );
    }

    #[test]
    fn merging_keeps_others_and_drops_a_repeated_signature() {
        let (key, _) = SigningKey::generate().unwrap();
        let (other, _) = SigningKey::generate().unwrap();
        let digest = Sha256Digest::of(b"image");
        let theirs = Attachment::signature(&other, digest, &identity()).unwrap();
        let first = Attachment::signature(&key, digest, &identity()).unwrap();
        let again = Attachment::signature(&key, digest, &identity()).unwrap();
        assert_ne!(first, again, "ECDSA signatures are randomised");
        let merged = merge_layers(
            vec![theirs.clone(), first.clone()],
            vec![again],
            Some(key.public_key()),
        );
        assert_eq!(merged, vec![theirs, first]);
    }
}
