//! Signatures and attestations pushed beside an image, under cosign's tags
//! (`sha256-<digest>.sig` / `.att`, which cosign and containers/image with
//! `use-sigstore-attachments` read): those the layout holds for each pushed manifest, and with
//! `push --sign` a new signature for the destination, known only now. What the registry already
//! has under those tags is kept: the layers pushed are its layers plus the new ones.
//!
//! A new signature also goes up as a referrer (an artifact whose `subject` is the manifest),
//! listed by the registry or, where it has no referrers API, in the fallback tag.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use oci_spec::image::{Descriptor, ImageManifest, MediaType};
use serde::Serialize;
use ureq::http::Method;

use crate::digest::Sha256Digest;
use crate::error;
use crate::progress;
use crate::registry::client::{Failure, Request, Session};
use crate::registry::upload::{self, BlobSource};
use crate::signing::attach::{self, Attachment, AttachmentKind, AttachmentManifest};
use crate::signing::{Passphrase, SignedRepository, SigningKey};

/// The largest signature or attestation layer read back from a registry (containers/image
/// reads at most 4 MiB of a signature; the client caps bodies lower still).
const MAX_ATTACHMENT: u64 = 4 << 20;

/// How `push --sign` signs.
#[derive(Debug, Clone)]
pub struct SignWith {
    /// The cosign private key file.
    pub key: PathBuf,
    /// Its passphrase.
    pub passphrase: Passphrase,
    /// The repository the signatures name (default: the push destination's).
    pub signed_repository: Option<SignedRepository>,
}

/// A loaded key and the identity it signs for.
pub(crate) struct Signer {
    pub key: SigningKey,
    pub identity: SignedRepository,
}

impl Signer {
    /// Loads the key (before anything goes on the network: a wrong passphrase fails first).
    pub fn load(with: &SignWith, destination: &str) -> Result<Signer> {
        let key = SigningKey::load(&with.key, &with.passphrase)?;
        let identity = match &with.signed_repository {
            Some(identity) => identity.clone(),
            None => destination.parse().with_context(|| {
                format!("{destination} does not make a repository to sign for; give one with --signed-repository")
            })?,
        };
        Ok(Signer { key, identity })
    }
}

/// What was pushed under one attachment tag.
#[derive(Debug, Clone, Serialize)]
pub struct AttachmentReport {
    /// The manifest the attachments are for.
    pub subject: Sha256Digest,
    /// Signatures or attestations.
    pub kind: AttachmentKind,
    /// `sha256-<hex>.sig` / `.att`.
    pub tag: String,
    /// The tag's manifest digest now.
    pub digest: Sha256Digest,
    /// Layers under the tag now (the registry's, the layout's, the new signature).
    pub layers: usize,
    /// For a signature made by this push: the repository it names.
    pub signed_repository: Option<String>,
    /// For a signature made by this push: its referrer artifact and where the registry lists
    /// it (`referrers-api` or the fallback tag).
    pub referrer: Option<Sha256Digest>,
    /// See `referrer`.
    pub listed_by: Option<String>,
}

/// Pushes the attachments of every pushed manifest: the layout's (`from_layout`) and, with a
/// signer, a new signature each.
pub(crate) fn push_attachments(
    session: &Session,
    pushed: &[Descriptor],
    from_layout: &BTreeMap<(AttachmentKind, Sha256Digest), Vec<Attachment>>,
    signer: Option<&Signer>,
) -> Result<Vec<AttachmentReport>> {
    let mut reports = Vec::new();
    for subject in pushed {
        let digest =
            Sha256Digest::try_from(subject.digest()).map_err(|e| error::input(e.to_string()))?;
        for kind in [AttachmentKind::Signature, AttachmentKind::Attestation] {
            let mut added = from_layout
                .get(&(kind, digest))
                .cloned()
                .unwrap_or_default();
            let mut signed = None;
            if kind == AttachmentKind::Signature
                && let Some(signer) = signer
            {
                let layer = Attachment::signature(&signer.key, digest, &signer.identity)?;
                signed = Some(layer.clone());
                added.push(layer);
            }
            if added.is_empty() {
                continue;
            }
            let mut report = push_tag(session, kind, &digest, added, signer)?;
            if let (Some(layer), Some(signer)) = (signed, signer) {
                let (referrer, listed_by) = push_referrer(session, subject, &digest, layer)?;
                report.signed_repository = Some(signer.identity.to_string());
                report.referrer = Some(referrer);
                report.listed_by = Some(listed_by);
            }
            reports.push(report);
        }
    }
    Ok(reports)
}

/// Merges `added` into what the registry has under the kind's tag and pushes the result.
fn push_tag(
    session: &Session,
    kind: AttachmentKind,
    subject: &Sha256Digest,
    added: Vec<Attachment>,
    signer: Option<&Signer>,
) -> Result<AttachmentReport> {
    let tag = kind.tag(subject);
    let existing = fetch_layers(session, &tag)?;
    let had = existing.len();
    let layers = attach::merge_layers(existing, added, signer.map(|s| s.key.public_key()));
    let manifest = attach::tag_manifest(kind, &layers)?;
    let digest = Sha256Digest::of(&manifest.manifest);
    if layers.len() == had {
        progress::detail(format!(
            "{tag}: the registry has every {} already",
            kind_name(kind)
        ));
    } else {
        progress::status(
            "Attaching",
            format!(
                "{} {} to {subject} as {tag}",
                layers.len() - had,
                kind_name(kind)
            ),
        );
        upload_blobs(session, &manifest)?;
        upload::put_manifest(
            session,
            &tag,
            MediaType::ImageManifest.as_ref(),
            &manifest.manifest,
        )?;
    }
    Ok(AttachmentReport {
        subject: *subject,
        kind,
        tag,
        digest,
        layers: layers.len(),
        signed_repository: None,
        referrer: None,
        listed_by: None,
    })
}

/// Pushes the new signature as a referrer of `subject`; returns its digest and where it is
/// listed.
fn push_referrer(
    session: &Session,
    subject: &Descriptor,
    subject_digest: &Sha256Digest,
    layer: Attachment,
) -> Result<(Sha256Digest, String)> {
    let referrer = attach::referrer_manifest(AttachmentKind::Signature, &[layer], subject)?;
    upload_blobs(session, &referrer)?;
    let digest = Sha256Digest::of(&referrer.manifest);
    let indexed = upload::put_manifest(
        session,
        &digest.to_string(),
        MediaType::ImageManifest.as_ref(),
        &referrer.manifest,
    )?;
    let listed_by = if indexed {
        "referrers-api".to_owned()
    } else {
        super::add_to_referrers_tag(session, subject_digest, &referrer.descriptor)?
    };
    Ok((digest, listed_by))
}

fn kind_name(kind: AttachmentKind) -> &'static str {
    match kind {
        AttachmentKind::Signature => "signature(s)",
        AttachmentKind::Attestation => "attestation(s)",
    }
}

/// Uploads the config and layers of an attachment manifest that the registry lacks.
fn upload_blobs(session: &Session, manifest: &AttachmentManifest) -> Result<()> {
    for (descriptor, bytes) in &manifest.blobs {
        let digest = Sha256Digest::of(bytes);
        if upload::blob_exists(session, &digest)? {
            continue;
        }
        // The uploader streams from a file.
        let mut file = tempfile::NamedTempFile::new().context("cannot create a temporary file")?;
        file.write_all(bytes)
            .and_then(|()| file.flush())
            .context("cannot write a temporary file")?;
        upload::upload_blob(
            session,
            &BlobSource {
                digest,
                size: bytes.len() as u64,
                path: file.path(),
            },
        )
        .with_context(|| format!("cannot push blob {digest} ({})", descriptor.media_type()))?;
    }
    Ok(())
}

/// The layers the registry holds under `tag` (none when the tag does not exist), each checked
/// against its digest.
fn fetch_layers(session: &Session, tag: &str) -> Result<Vec<Attachment>> {
    let Some(bytes) = get(
        session,
        &format!("manifests/{tag}"),
        MediaType::ImageManifest.as_ref(),
    )?
    else {
        return Ok(Vec::new());
    };
    let manifest: ImageManifest = serde_json::from_slice(&bytes).map_err(|e| {
        error::environment(format!(
            "{}: tag {tag} should hold cosign attachments but is not an image manifest ({e}); \
             remove it or rename it",
            session.repository()
        ))
    })?;
    let mut layers = Vec::with_capacity(manifest.layers().len());
    for layer in manifest.layers() {
        let digest = Sha256Digest::try_from(layer.digest())
            .map_err(|e| error::environment(format!("{tag}: {e}")))?;
        if layer.size() > MAX_ATTACHMENT {
            return Err(error::environment(format!(
                "{}: layer {digest} of tag {tag} claims {} bytes, more than an attachment may \
                 have ({MAX_ATTACHMENT})",
                session.repository(),
                layer.size()
            )));
        }
        let bytes = get(session, &format!("blobs/{digest}"), "*/*")?.ok_or_else(|| {
            error::environment(format!(
                "{}: tag {tag} names blob {digest}, which the registry does not have",
                session.repository()
            ))
        })?;
        if Sha256Digest::of(&bytes) != digest {
            return Err(error::check_failed(format!(
                "{}: blob {digest} of tag {tag} came back with another digest ({})",
                session.repository(),
                Sha256Digest::of(&bytes)
            )));
        }
        layers.push(Attachment::from_layer(layer, bytes));
    }
    Ok(layers)
}

/// `GET /v2/<name>/<path>`: the body, or None for 404.
fn get(session: &Session, path: &str, accept: &str) -> Result<Option<Vec<u8>>> {
    let url = session.repo_url(path);
    session.retrying(&format!("read {path}"), |_| {
        let response = session
            .send(&Request::new(Method::GET, url.clone()).header("Accept", accept.to_owned()))?;
        match response.status {
            200 => Ok(Some(response.body)),
            404 => Ok(None),
            401 | 403 => Err(Failure::Fatal(session.refused(&response))),
            _ => Err(Failure::Fatal(error::input(format!(
                "the registry answered {}",
                response.describe()
            )))),
        }
    })
}
