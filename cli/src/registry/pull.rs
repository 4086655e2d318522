//! Pulling base images (`image --base docker://…`) beside `push`, with the same session: the
//! same TLS, credentials (token scope `repository:<name>:pull`), retries and timeouts.
//!
//! A tag is resolved online to the digest of what the registry serves now; every manifest is
//! checked against the digest it was asked by (or, for a tag, against the
//! `Docker-Content-Digest` the registry sends), every blob against its descriptor's digest and
//! size while it streams into the cache, and nothing enters the cache unchecked. Only the
//! manifests of the platforms asked for are pulled, with their configs and layers; blobs the
//! cache already holds, checked, are not pulled again.
//!
//! It writes only into the [`BaseCache`], never into an image layout.

use std::io::Read;

use anyhow::Result;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest, MediaType};
use ureq::http::Method;

use crate::digest::Sha256Digest;
use crate::error;
use crate::oci::base::{self, BaseCache, RegistrySource, RemoteName};
use crate::oci::blob::MAX_DOCUMENT;
use crate::oci::layout;
use crate::oci::media::MediaKind;
use crate::progress;
use crate::render;
use crate::target::Arch;

use super::auth;
use super::client::{Access, ClientOptions, Failure, Request, Session};
use super::reference::Reference;

/// Every manifest and index type airlock reads, OCI and Docker v2 (distribution 2.x answers 404
/// for an OCI manifest to a client that does not accept its type).
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
                      application/vnd.oci.image.manifest.v1+json, \
                      application/vnd.docker.distribution.manifest.list.v2+json, \
                      application/vnd.docker.distribution.manifest.v2+json";

/// The bytes read from a blob's body at a time.
const CHUNK: usize = 256 * 1024;

/// Pulls base images with airlock's registry client.
#[derive(Debug, Clone)]
pub struct RegistryPuller {
    client: ClientOptions,
}

impl RegistryPuller {
    /// A puller that reaches registries as `client` says (TLS, plain HTTP, retries).
    pub fn new(client: ClientOptions) -> RegistryPuller {
        RegistryPuller { client }
    }
}

impl RegistrySource for RegistryPuller {
    fn parse(&self, reference: &str) -> Result<RemoteName> {
        let parsed: Reference = reference.parse()?;
        Ok(RemoteName {
            name: parsed.name(),
            tag: parsed.tag,
            digest: parsed.digest,
        })
    }

    fn pull(&self, name: &RemoteName, arches: &[Arch], cache: &BaseCache) -> Result<Descriptor> {
        let reference: Reference = name.to_string().parse()?;
        progress::status("Pulling", format!("base {name}"));
        let credential = auth::resolve_credential(&reference, None)?;
        // With a copy of this tag in the cache, a registry that does not answer at once is
        // not waited for: the build goes on offline with that copy (and says so).
        let mut connect = self.client.clone();
        if cache.find(&name.key()).is_some() {
            connect.retries = 0;
        }
        let mut session = Session::connect_for(&reference, credential, &connect, Access::Pull)?;
        session.set_retries(self.client.retries);
        let wanted = match (&name.digest, &name.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => "latest".to_owned(),
        };
        let (top, bytes) = fetch_manifest(&session, &wanted, name.digest, cache)?;
        let mut manifests = Vec::new();
        if MediaKind::of(top.media_type()).is_index() {
            let index: ImageIndex = parse(&bytes, &top, name)?;
            for arch in arches {
                // A platform the index lacks is for `resolve` to name, with what it offers.
                let Some(child) = base::select_platform(index.manifests(), *arch)? else {
                    continue;
                };
                let child_digest = layout::descriptor_digest(child)?;
                let (descriptor, bytes) = fetch_manifest(
                    &session,
                    &child_digest.to_string(),
                    Some(child_digest),
                    cache,
                )?;
                if descriptor.size() != child.size() {
                    return Err(error::check_failed(format!(
                        "{name}: the index names {child_digest} with {} bytes, but it has {}",
                        child.size(),
                        descriptor.size()
                    )));
                }
                manifests.push((descriptor, bytes));
            }
        } else {
            manifests.push((top.clone(), bytes));
        }
        for (descriptor, bytes) in &manifests {
            if !MediaKind::of(descriptor.media_type()).is_manifest() {
                continue;
            }
            let manifest: ImageManifest = parse(bytes, descriptor, name)?;
            let mut blobs = vec![manifest.config().clone()];
            blobs.extend(manifest.layers().iter().cloned());
            for blob in &blobs {
                fetch_blob(&session, blob, cache)?;
            }
        }
        cache.record(&name.key(), &top)?;
        let digest = layout::descriptor_digest(&top)?;
        progress::detail(format!("base {name} is {digest}"));
        Ok(top)
    }
}

fn parse<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    descriptor: &Descriptor,
    name: &RemoteName,
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| {
        error::input(format!(
            "{name}: {} is not a valid {}: {e}",
            descriptor.digest(),
            descriptor.media_type()
        ))
    })
}

/// `GET /v2/<name>/manifests/<reference>`: the document, checked against `expected` (or the
/// registry's `Docker-Content-Digest` for a tag) and written to the cache.
fn fetch_manifest(
    session: &Session,
    reference: &str,
    expected: Option<Sha256Digest>,
    cache: &BaseCache,
) -> Result<(Descriptor, Vec<u8>)> {
    let url = session.repo_url(&format!("manifests/{reference}"));
    let what = format!("pull {}:{reference}", session.repository());
    let response = session.retrying(&what, |_| {
        session.send(
            &Request::new(Method::GET, url.clone())
                .header("Accept", ACCEPT)
                .limit(MAX_DOCUMENT),
        )
    })?;
    match response.status {
        200 => {}
        404 => {
            return Err(error::input(format!(
                "{} has no image {reference} in {} ({})",
                url_host(&url),
                session.repository(),
                response.describe()
            )));
        }
        _ => {
            return Err(error::environment(format!(
                "{what}: the registry answered {}",
                response.describe()
            )));
        }
    }
    let bytes = response.body.clone();
    let digest = Sha256Digest::of(&bytes);
    let claimed = response
        .header("docker-content-digest")
        .and_then(|d| d.parse::<Sha256Digest>().ok());
    for (source, wanted) in [
        ("the reference", expected),
        ("Docker-Content-Digest", claimed),
    ] {
        if let Some(wanted) = wanted
            && wanted != digest
        {
            return Err(error::check_failed(format!(
                "{what}: the registry sent a manifest whose sha256 is {}, not {} as {source} \
                 says; nothing was kept",
                digest.hex(),
                wanted.hex()
            )));
        }
    }
    let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("mediaType")?.as_str().map(str::to_owned))
        .or_else(|| {
            response
                .header("content-type")
                .map(|t| t.split(';').next().unwrap_or(t).trim().to_owned())
        })
        .unwrap_or_default();
    if !MediaKind::of_str(&media_type).is_document() {
        return Err(error::input(format!(
            "{what}: the registry sent a {media_type}, not an OCI or Docker v2 manifest or \
             index (airlock does not read Docker schema 1)"
        )));
    }
    cache.put_document(&bytes)?;
    let descriptor = Descriptor::new(
        MediaType::from(media_type.as_str()),
        bytes.len() as u64,
        digest,
    );
    Ok((descriptor, bytes))
}

/// `GET /v2/<name>/blobs/<digest>` into the cache, unless the cache holds it already. A body
/// cut off is pulled again (retries as for any request); a blob that is not what its digest
/// says is refused at once.
fn fetch_blob(session: &Session, descriptor: &Descriptor, cache: &BaseCache) -> Result<()> {
    if cache.has_blob(descriptor) {
        return Ok(());
    }
    let digest = layout::descriptor_digest(descriptor)?;
    if !matches!(
        MediaKind::of(descriptor.media_type()),
        MediaKind::Config(_) | MediaKind::Layer(_)
    ) {
        return Err(error::input(format!(
            "blob {digest} has media type {}, not an image config or layer",
            descriptor.media_type()
        )));
    }
    progress::status(
        "Pulling",
        format!("{digest} ({})", render::human_bytes(descriptor.size())),
    );
    let url = session.repo_url(&format!("blobs/{digest}"));
    session.retrying(&format!("pull blob {digest}"), |_| {
        let mut failure = None;
        let written = cache.put_blob(descriptor, |out| {
            let mut copy = |body: &mut dyn Read| -> Result<(), Failure> {
                let mut buffer = vec![0u8; CHUNK];
                loop {
                    let n = body.read(&mut buffer).map_err(|e| {
                        Failure::transient(format!("the body of blob {digest} was cut off: {e}"))
                    })?;
                    if n == 0 {
                        return Ok(());
                    }
                    out.write_all(&buffer[..n]).map_err(|e| {
                        Failure::Fatal(error::check_failed(format!(
                            "blob {digest}: {e} ({} bytes); nothing was kept",
                            descriptor.size()
                        )))
                    })?;
                }
            };
            let request = Request::new(Method::GET, url.clone());
            match session.send_to(&request, Some(&mut copy)) {
                Ok(response) if response.status == 200 => Ok(()),
                Ok(response) => {
                    let message = format!("GET blob {digest} answered {}", response.describe());
                    failure = Some(Failure::Fatal(if response.status == 404 {
                        error::input(format!(
                            "{message}: the registry lacks a blob its manifest names"
                        ))
                    } else {
                        error::environment(message)
                    }));
                    Err(anyhow::anyhow!("not pulled"))
                }
                Err(f) => {
                    failure = Some(f);
                    Err(anyhow::anyhow!("not pulled"))
                }
            }
        });
        match (written, failure) {
            (Ok(()), _) => Ok(()),
            (Err(_), Some(failure)) => Err(failure),
            (Err(e), None) => Err(Failure::Fatal(e)),
        }
    })
}

fn url_host(url: &str) -> &str {
    url.split("/v2/").next().unwrap_or(url)
}
