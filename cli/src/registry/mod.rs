//! `cargo airlock push`: uploads an image or an index from an OCI layout to a registry over
//! the OCI distribution API; and [`pull`], which pulls base images for `image --base` into the
//! base image cache. With `vendor`, the only module that touches the network; it never writes
//! to an image layout and never runs a container engine.
//!
//! Steps: read and verify what the layout holds for the tag, authenticate, upload the blobs the
//! registry lacks (`--jobs` at a time), push each manifest's exact bytes (an index's children
//! first, the index last), then tag.
//!
//! # Why a thin client on `ureq` rather than `oci-client`
//! `oci-client` 0.18 meets too little of what `push` must do: no Docker config or credential
//! helpers, no retries (nor `Retry-After`), a `push()` that uploads every layer without asking
//! the registry first, a chunk upload that accepts only 202 (ECR answers 201) with no fallback
//! to one request, and it is async on tokio + reqwest. It also costs more than twice the size.
//! Measured as static release probes with airlock's profile (`opt-level = "s"`, fat LTO,
//! stripped), each parsing a manifest with `oci-spec`, `x86_64-unknown-linux-musl`:
//! 487,992 bytes without an HTTP client; 1,811,208 with `ureq` 3.5 (rustls + ring, webpki
//! roots), +1.26 MiB; 3,535,688 with `oci-client` 0.18 (reqwest 0.13, rustls + ring, tokio
//! current-thread), +2.91 MiB. `aarch64-unknown-linux-musl`: 1,524,600 and 2,890,696 bytes.
//! Both build for both musl targets (ring's C through zig cc for aarch64). The whole static
//! x86_64 `cargo-airlock` went from 3,245,000 bytes (ee98fd2) to 4,674,632 with `push`
//! (fc99dd6), +1.36 MiB. What is left to write is small and ours to test: [`auth`],
//! [`client`] and [`upload`].

pub mod attached;
pub mod auth;
pub mod client;
pub mod pull;
pub mod reference;
pub mod upload;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use anyhow::{Context, Result};
use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType};
use serde::Serialize;

use crate::digest::Sha256Digest;
use crate::error;
use crate::oci::blob::BlobStore;
use crate::oci::layout::{self, ImageRef, Layout};
use crate::oci::media::MediaKind;
use crate::oci::walk::{self, Parsed, WalkOptions};
use crate::progress;
use crate::render::{self, CommandReport};
use crate::signing;

pub use attached::{AttachmentReport, SignWith};
pub use auth::{Credential, Secret};
pub use client::ClientOptions;
pub use reference::Reference;
pub use upload::UploadMethod;

use client::Session;
use upload::BlobSource;

/// What `push` needs.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// The workspace's `Cargo.toml`, for the default layout (default: the current
    /// directory's workspace).
    pub manifest_path: Option<PathBuf>,
    /// The layout and, optionally, the tag of the image in it; None: the layout `image`
    /// writes by default (`target/airlock/image`) and its one image.
    pub source: Option<ImageRef>,
    /// Where to push.
    pub destination: Reference,
    /// Credentials given explicitly (`--username` + `--password-stdin`); otherwise the
    /// environment and the Docker config are searched (see [`auth`]).
    pub credential: Option<Credential>,
    /// TLS, plain-HTTP and retry settings.
    pub client: ClientOptions,
    /// Blobs uploaded at once.
    pub jobs: usize,
    /// Sign what is pushed for its destination (`push --sign`).
    pub sign: Option<SignWith>,
}

/// What `push` did.
#[derive(Debug, Clone, Serialize)]
pub struct PushReport {
    /// `registry/repository@sha256:…`: what was pushed, pinned.
    pub reference: String,
    /// The registry host.
    pub registry: String,
    /// The repository.
    pub repository: String,
    /// The tag set, if any.
    pub tag: Option<String>,
    /// The digest of the top-level manifest or index.
    pub digest: Sha256Digest,
    /// Its media type.
    pub media_type: String,
    /// Every manifest pushed, in push order (an index's children first, the index last).
    pub manifests: Vec<ManifestReport>,
    /// Artifacts from the layout attached to what was pushed (SBOMs), pushed after it.
    pub referrers: Vec<ReferrerReport>,
    /// Signatures and attestations under cosign's `sha256-<digest>.sig`/`.att` tags: the
    /// layout's, and with `--sign` the new ones.
    pub attachments: Vec<AttachmentReport>,
    /// Every blob, uploaded or skipped.
    pub blobs: Vec<BlobReport>,
    /// Blobs uploaded.
    pub blobs_uploaded: usize,
    /// Blobs the registry already had.
    pub blobs_skipped: usize,
    /// Bytes uploaded.
    pub bytes_uploaded: u64,
    /// Bytes not uploaded because the registry had them.
    pub bytes_skipped: u64,
    /// Attempts that were retries (5xx, 429, dropped connections).
    pub retries: u32,
}

/// One manifest pushed.
#[derive(Debug, Clone, Serialize)]
pub struct ManifestReport {
    /// Its digest.
    pub digest: Sha256Digest,
    /// Its media type.
    pub media_type: String,
    /// Its size in bytes.
    pub size: u64,
    /// `os/architecture[/variant]` from the index, for an index's children.
    pub platform: Option<String>,
}

/// One artifact pushed with its subject.
#[derive(Debug, Clone, Serialize)]
pub struct ReferrerReport {
    /// The artifact manifest's digest.
    pub digest: Sha256Digest,
    /// What it holds (`application/vnd.cyclonedx+json`).
    pub artifact_type: String,
    /// The manifest it describes.
    pub subject: Sha256Digest,
    /// Where the registry lists it: `referrers-api` when it indexed the subject itself
    /// (`OCI-Subject`), else the fallback tag `sha256-<hex>` airlock updated.
    pub listed_by: String,
}

/// One blob, uploaded or skipped.
#[derive(Debug, Clone, Serialize)]
pub struct BlobReport {
    /// Its digest.
    pub digest: Sha256Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Its media type (from the first manifest naming it).
    pub media_type: String,
    /// How it reached the registry.
    pub method: UploadMethod,
}

impl CommandReport for PushReport {
    fn human(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .manifests
            .iter()
            .map(|m| {
                vec![
                    m.platform.clone().unwrap_or_else(|| "-".to_owned()),
                    m.digest.to_string(),
                    m.media_type.clone(),
                ]
            })
            .collect();
        let mut out = render::table(
            &[
                ("platform", render::Align::Left),
                ("manifest", render::Align::Left),
                ("media type", render::Align::Left),
            ],
            &rows,
        );
        for referrer in &self.referrers {
            out.push_str(&format!(
                "attached {} {} to {}\n",
                referrer.artifact_type, referrer.digest, referrer.subject
            ));
        }
        for attachment in &self.attachments {
            match &attachment.signed_repository {
                Some(repository) => out.push_str(&format!(
                    "signed {} for {repository} ({}, {} signature(s))\n",
                    attachment.subject, attachment.tag, attachment.layers
                )),
                None => out.push_str(&format!(
                    "{} {} ({} layer(s))\n",
                    match attachment.kind {
                        signing::AttachmentKind::Signature => "signatures",
                        signing::AttachmentKind::Attestation => "attestations",
                    },
                    attachment.tag,
                    attachment.layers
                )),
            }
        }
        out.push_str(&format!(
            "blobs: {} uploaded ({}), {} already there ({}){}\n",
            self.blobs_uploaded,
            render::human_bytes(self.bytes_uploaded),
            self.blobs_skipped,
            render::human_bytes(self.bytes_skipped),
            if self.retries > 0 {
                format!("; {} retries", self.retries)
            } else {
                String::new()
            }
        ));
        if let Some(tag) = &self.tag {
            out.push_str(&format!(
                "tagged {}/{}:{tag}\n",
                self.registry, self.repository
            ));
        }
        out.push_str(&self.reference);
        out.push('\n');
        out
    }
}

/// A manifest or index to push, with the exact bytes from the layout.
struct PlannedManifest {
    descriptor: Descriptor,
    bytes: Vec<u8>,
    platform: Option<String>,
}

/// A blob to push.
struct PlannedBlob {
    descriptor: Descriptor,
    size: u64,
    media_type: String,
    path: PathBuf,
}

/// Everything to push, read and checked from the layout before any request.
struct Plan {
    /// Children before parents; the last is the top-level manifest or index.
    manifests: Vec<PlannedManifest>,
    blobs: BTreeMap<Sha256Digest, PlannedBlob>,
    /// Artifacts in the layout (SBOMs) whose `subject` is one of `manifests`.
    referrers: Vec<PlannedReferrer>,
}

/// An artifact manifest to push after its subject.
struct PlannedReferrer {
    manifest: PlannedManifest,
    subject: Sha256Digest,
    /// Its entry in the subject's referrers list (distribution-spec "Listing Referrers").
    entry: Descriptor,
}

/// Pushes `options.source` to `options.destination`.
pub fn push(options: &PushOptions) -> Result<PushReport> {
    let source = match &options.source {
        Some(source) => source.clone(),
        None => ImageRef {
            path: crate::oci::image::default_layout(options.manifest_path.as_deref())?,
            tag: None,
        },
    };
    let layout = Layout::open(&source.path)?;
    let top = layout.resolve(source.tag.as_deref())?.clone();
    let top_digest = layout::descriptor_digest(&top)?;
    let destination = &options.destination;
    if let Some(pinned) = &destination.digest
        && *pinned != top_digest
    {
        return Err(error::input(format!(
            "{destination} pins {pinned}, but {source} is {top_digest}"
        )));
    }
    // The tag: the destination's, else the source's, else `latest` (as docker push does);
    // a destination pinned by digest alone sets no tag.
    let tag = destination.tag.clone().or_else(|| {
        if destination.digest.is_some() {
            None
        } else {
            Some(
                layout::ref_name(&top)
                    .map(str::to_owned)
                    .unwrap_or_else(|| "latest".to_owned()),
            )
        }
    });

    let mut plan = Plan {
        manifests: Vec::new(),
        blobs: BTreeMap::new(),
        referrers: Vec::new(),
    };
    plan_image(&layout, &top, &mut plan)?;
    plan_referrers(&layout, &mut plan)?;

    let attachments_in_layout = signing::layout::all_attachments(&layout)?;
    let signer = options
        .sign
        .as_ref()
        .map(|with| attached::Signer::load(with, &destination.name()))
        .transpose()?;

    let credential = auth::resolve_credential(destination, options.credential.clone())?;
    progress::status("Connecting", format!("to {}", destination.registry));
    let session = Session::connect(destination, credential, &options.client)?;

    let blobs = push_blobs(&session, layout.blobs(), &plan, options.jobs.max(1))?;

    let count = plan.manifests.len();
    let mut manifests = Vec::with_capacity(count);
    for (i, manifest) in plan.manifests.iter().enumerate() {
        let digest = layout::descriptor_digest(&manifest.descriptor)?;
        let is_top = i + 1 == count;
        let reference = match (&tag, is_top) {
            (Some(tag), true) => tag.clone(),
            _ => digest.to_string(),
        };
        let media_type = content_type(manifest);
        progress::status(
            "Pushing",
            format!(
                "{} {digest}{}",
                if MediaKind::of_str(&media_type).is_index() {
                    "index"
                } else {
                    "manifest"
                },
                manifest
                    .platform
                    .as_deref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default()
            ),
        );
        upload::put_manifest(&session, &reference, &media_type, &manifest.bytes)?;
        manifests.push(ManifestReport {
            digest,
            media_type,
            size: manifest.bytes.len() as u64,
            platform: manifest.platform.clone(),
        });
    }

    let mut referrers = Vec::with_capacity(plan.referrers.len());
    for referrer in &plan.referrers {
        referrers.push(push_referrer(&session, referrer)?);
    }
    let pushed: Vec<Descriptor> = plan
        .manifests
        .iter()
        .map(|m| m.descriptor.clone())
        .collect();
    let attachments =
        attached::push_attachments(&session, &pushed, &attachments_in_layout, signer.as_ref())?;

    let uploaded = blobs.iter().filter(|b| b.method != UploadMethod::Skipped);
    let skipped = blobs.iter().filter(|b| b.method == UploadMethod::Skipped);
    Ok(PushReport {
        reference: destination.pinned(&top_digest),
        registry: destination.registry.clone(),
        repository: destination.repository.clone(),
        tag,
        digest: top_digest,
        media_type: top.media_type().to_string(),
        blobs_uploaded: uploaded.clone().count(),
        bytes_uploaded: uploaded.map(|b| b.size).sum(),
        blobs_skipped: skipped.clone().count(),
        bytes_skipped: skipped.map(|b| b.size).sum(),
        manifests,
        referrers,
        attachments,
        blobs,
        retries: session.retried(),
    })
}

/// Queues the artifacts of `index.json` whose `subject` is a manifest being pushed.
fn plan_referrers(layout: &Layout, plan: &mut Plan) -> Result<()> {
    let pushed: Vec<Sha256Digest> = plan
        .manifests
        .iter()
        .map(|m| layout::descriptor_digest(&m.descriptor))
        .collect::<Result<_>>()?;
    for entry in layout.index().manifests() {
        let Some(artifact_type) = entry.artifact_type() else {
            continue;
        };
        let digest = layout::descriptor_digest(entry)?;
        if !MediaKind::of(entry.media_type()).is_manifest() || pushed.contains(&digest) {
            continue;
        }
        let manifest: ImageManifest = layout.read_json(entry)?;
        let Some(subject) = manifest.subject() else {
            continue;
        };
        let subject = layout::descriptor_digest(subject)?;
        if !pushed.contains(&subject)
            || plan
                .referrers
                .iter()
                .any(|r| layout::descriptor_digest(&r.manifest.descriptor).ok() == Some(digest))
        {
            continue;
        }
        let graph = walk::walk(
            layout.blobs(),
            std::slice::from_ref(entry),
            &WalkOptions::default(),
        )?
        .checked()?;
        let mut bytes = Vec::new();
        for node in graph.nodes {
            match node.document {
                Some(document) => bytes = document.bytes,
                None => plan_blob(layout, &node.descriptor, plan)?,
            }
        }
        // The referrers list entry: the manifest's own artifactType and annotations.
        let mut listed = Descriptor::new(entry.media_type().clone(), entry.size(), digest);
        listed.set_artifact_type(Some(
            manifest
                .artifact_type()
                .clone()
                .unwrap_or_else(|| artifact_type.clone()),
        ));
        listed.set_annotations(manifest.annotations().clone());
        plan.referrers.push(PlannedReferrer {
            manifest: PlannedManifest {
                descriptor: entry.clone(),
                bytes,
                platform: None,
            },
            subject,
            entry: listed,
        });
    }
    Ok(())
}

/// Pushes an artifact manifest; when the registry does not index its subject itself (no
/// `OCI-Subject` answer), adds it to the referrers tag schema's index, `sha256-<hex>` of the
/// subject, as the distribution spec requires of clients ("Pushing Manifests with Subject").
fn push_referrer(session: &Session, referrer: &PlannedReferrer) -> Result<ReferrerReport> {
    let digest = layout::descriptor_digest(&referrer.manifest.descriptor)?;
    let artifact_type = referrer
        .entry
        .artifact_type()
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    progress::status(
        "Attaching",
        format!("{artifact_type} {digest} to {}", referrer.subject),
    );
    let media_type = content_type(&referrer.manifest);
    let indexed = upload::put_manifest(
        session,
        &digest.to_string(),
        &media_type,
        &referrer.manifest.bytes,
    )?;
    let listed_by = if indexed {
        "referrers-api".to_owned()
    } else {
        add_to_referrers_tag(session, &referrer.subject, &referrer.entry)?
    };
    Ok(ReferrerReport {
        digest,
        artifact_type,
        subject: referrer.subject,
        listed_by,
    })
}

/// Adds `entry` to the referrers tag schema's index of `subject`, `sha256-<hex>`, as the
/// distribution spec requires of clients when the registry does not index subjects itself
/// ("Pushing Manifests with Subject"); returns the tag.
pub(crate) fn add_to_referrers_tag(
    session: &Session,
    subject: &Sha256Digest,
    entry: &Descriptor,
) -> Result<String> {
    let tag = format!("sha256-{}", subject.hex());
    let mut entries: Vec<Descriptor> = match upload::get_index(session, &tag)? {
        None => Vec::new(),
        Some(bytes) => serde_json::from_slice::<ImageIndex>(&bytes)
            .map_err(|e| {
                error::environment(format!(
                    "{}: tag {tag} should hold the referrers of {subject} but is not an image \
                     index ({e}); remove it or push the artifact by hand",
                    session.repository(),
                ))
            })?
            .manifests()
            .clone(),
    };
    if !entries.iter().any(|d| d.digest() == entry.digest()) {
        entries.push(entry.clone());
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(entries)
            .build()
            .context("cannot build the referrers index")?;
        let bytes = crate::oci::json::canonical_json(&index)?;
        upload::put_manifest(session, &tag, MediaType::ImageIndex.as_ref(), &bytes)?;
    }
    Ok(tag)
}

/// Walks the image `top` names with the one walker: every manifest and index read and
/// verified, every other blob checked to be in the layout with its descriptor's size (its
/// digest is checked before upload, so a blob the registry has is not read at all). Queues
/// the documents children first, the top last.
fn plan_image(layout: &Layout, top: &Descriptor, plan: &mut Plan) -> Result<()> {
    let not_an_image = |descriptor: &Descriptor| {
        error::input(format!(
            "{}: {} has media type {}, which is neither an image manifest nor an index",
            layout.root().display(),
            descriptor.digest(),
            descriptor.media_type()
        ))
    };
    if !MediaKind::of(top.media_type()).is_document() {
        return Err(not_an_image(top));
    }
    let graph = walk::walk(
        layout.blobs(),
        std::slice::from_ref(top),
        &WalkOptions::default(),
    )?
    .checked()?;
    for node in graph.nodes {
        let Some(document) = node.document else {
            plan_blob(layout, &node.descriptor, plan)?;
            continue;
        };
        if let Parsed::Index(index) = &document.parsed
            && let Some(child) = index
                .manifests()
                .iter()
                .find(|c| !MediaKind::of(c.media_type()).is_document())
        {
            return Err(not_an_image(child));
        }
        // An index's children are pushed with their platform; the top entry is what was asked.
        let platform = (node.depth > 0)
            .then(|| node.descriptor.platform().as_ref().map(platform_name))
            .flatten();
        plan.manifests.push(PlannedManifest {
            descriptor: node.descriptor,
            bytes: document.bytes,
            platform,
        });
    }
    Ok(())
}

/// `os/architecture[/variant]`.
fn platform_name(platform: &oci_spec::image::Platform) -> String {
    let mut name = format!("{}/{}", platform.os(), platform.architecture());
    if let Some(variant) = platform.variant() {
        name.push('/');
        name.push_str(variant);
    }
    name
}

/// Queues a blob the walk found in the layout with its descriptor's size.
fn plan_blob(layout: &Layout, descriptor: &Descriptor, plan: &mut Plan) -> Result<()> {
    let digest = layout::descriptor_digest(descriptor)?;
    plan.blobs.entry(digest).or_insert_with(|| PlannedBlob {
        descriptor: descriptor.clone(),
        size: descriptor.size(),
        media_type: descriptor.media_type().to_string(),
        path: layout.blob_path(&digest),
    });
    Ok(())
}

/// Uploads the blobs the registry lacks, `jobs` at a time; stops taking new ones after the
/// first failure and reports it.
fn push_blobs(
    session: &Session,
    store: BlobStore<'_>,
    plan: &Plan,
    jobs: usize,
) -> Result<Vec<BlobReport>> {
    let blobs: Vec<(&Sha256Digest, &PlannedBlob)> = plan.blobs.iter().collect();
    let total: u64 = blobs.iter().map(|(_, b)| b.size).sum();
    let bar = progress::bytes_bar(total, "Uploading");
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<(usize, Result<UploadMethod>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(blobs.len()) {
            scope.spawn(|| {
                loop {
                    if failed.load(Ordering::Relaxed) {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((digest, blob)) = blobs.get(i) else {
                        break;
                    };
                    let result = push_blob(session, store, digest, blob, &bar);
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    bar.inc(blob.size);
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((i, result));
                }
            });
        }
    });
    bar.finish_and_clear();
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    let mut reports = Vec::with_capacity(results.len());
    for (i, result) in results {
        let (digest, blob) = blobs[i];
        reports.push(BlobReport {
            digest: *digest,
            size: blob.size,
            media_type: blob.media_type.clone(),
            method: result?,
        });
    }
    Ok(reports)
}

fn push_blob(
    session: &Session,
    store: BlobStore<'_>,
    digest: &Sha256Digest,
    blob: &PlannedBlob,
    bar: &indicatif::ProgressBar,
) -> Result<UploadMethod> {
    if upload::blob_exists(session, digest)? {
        progress::detail(format!("{digest}: already in the registry"));
        return Ok(UploadMethod::Skipped);
    }
    // What goes to the registry must be what the manifest names: a tampered layout fails here.
    store.verify(&blob.descriptor)?;
    // Printed around the bar, not through it, when the bar is on a terminal.
    bar.suspend(|| {
        progress::status(
            "Uploading",
            format!("{digest} ({})", render::human_bytes(blob.size)),
        )
    });
    upload::upload_blob(
        session,
        &BlobSource {
            digest: *digest,
            size: blob.size,
            path: &blob.path,
        },
    )
    .with_context(|| format!("cannot push blob {digest} ({})", blob.media_type))
}

/// The `Content-Type` of a manifest: its own `mediaType` field when it has one (the spec says
/// the two must match), else its descriptor's.
fn content_type(manifest: &PlannedManifest) -> String {
    serde_json::from_slice::<serde_json::Value>(&manifest.bytes)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_owned))
        .unwrap_or_else(|| manifest.descriptor.media_type().to_string())
}
