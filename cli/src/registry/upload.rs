//! Blob and manifest uploads (distribution-spec "Push"): `HEAD` to skip what the registry has,
//! `POST` + `PUT` for small blobs, `POST` + `PATCH` chunks of at most 4 MiB + `PUT` for large
//! ones (GHCR caps a single request), and one streamed `PUT` when a registry refuses chunks.
//!
//! An upload interrupted mid-chunk resumes from the offset the registry reports (`GET` on the
//! upload location); a lost upload session starts again. Every finished upload is checked
//! against the `Docker-Content-Digest` the registry answers.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;
use ureq::http::Method;

use crate::digest::Sha256Digest;
use crate::error;
use crate::registry::client::{Body, Failure, Request, Response, Session, percent_encode};

/// The largest request body for a blob: blobs up to this size go in one `PUT`, larger ones in
/// `PATCH` chunks of this size.
pub const CHUNK_SIZE: u64 = 4 << 20;

/// A blob to push, read from a layout.
#[derive(Debug, Clone)]
pub struct BlobSource<'a> {
    /// Its digest (already checked against the file by the caller).
    pub digest: Sha256Digest,
    /// Its size in bytes.
    pub size: u64,
    /// The file holding it.
    pub path: &'a Path,
}

/// How a blob reached the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum UploadMethod {
    /// The registry had it (`HEAD` answered 200).
    Skipped,
    /// `POST` then one `PUT` with the whole blob.
    Monolithic,
    /// `POST`, `PATCH` chunks, then `PUT`.
    Chunked,
    /// Chunks were refused: one streamed `PUT` with the whole blob.
    SingleRequest,
}

/// Whether the repository already has the blob (`HEAD /v2/<name>/blobs/<digest>`).
pub(crate) fn blob_exists(session: &Session, digest: &Sha256Digest) -> Result<bool> {
    let url = session.repo_url(&format!("blobs/{digest}"));
    session.retrying(&format!("check blob {digest}"), |_| {
        let response = session.send(&Request::new(Method::HEAD, url.clone()))?;
        match response.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(unexpected(session, &response)),
        }
    })
}

/// Uploads a blob the registry lacks; small ones in one request, large ones in chunks.
pub(crate) fn upload_blob(session: &Session, blob: &BlobSource<'_>) -> Result<UploadMethod> {
    if blob.size <= CHUNK_SIZE {
        if upload_whole(session, blob)?.is_some() {
            return Ok(UploadMethod::Monolithic);
        }
        // 413: the registry caps requests below our chunk size; chunks may still fit.
        crate::progress::detail(format!(
            "{}: registry refused {} bytes in one request; uploading in chunks",
            blob.digest, blob.size
        ));
    }
    if upload_chunked(session, blob)?.is_some() {
        return Ok(UploadMethod::Chunked);
    }
    crate::progress::detail(format!(
        "{}: registry refused chunked upload; sending it in one request",
        blob.digest
    ));
    match upload_whole(session, blob)? {
        Some(()) => Ok(UploadMethod::SingleRequest),
        None => Err(error::environment(format!(
            "the registry refused blob {} ({} bytes) both in chunks and in one request (413)",
            blob.digest, blob.size
        ))),
    }
}

/// `POST` + `PUT ?digest=` with the whole blob, streamed from its file; `None` when the
/// registry answers 413 (too large for one request).
fn upload_whole(session: &Session, blob: &BlobSource<'_>) -> Result<Option<()>> {
    session.retrying(&format!("upload blob {}", blob.digest), |_| {
        // A failed PUT may leave part of the blob in its session: each attempt starts anew.
        let (location, _) = start_upload(session)?;
        let response = session.send(
            &Request::new(Method::PUT, with_digest(&location, &blob.digest))
                .header("Content-Type", "application/octet-stream")
                .body(Body::File {
                    path: blob.path,
                    offset: 0,
                    len: blob.size,
                }),
        )?;
        match response.status {
            201 => check_digest(&response, &blob.digest).map(Some),
            413 => {
                cancel(session, &location);
                Ok(None)
            }
            _ => Err(unexpected(session, &response)),
        }
    })
}

/// Where a chunked upload stands between attempts.
struct ChunkedState {
    location: Option<String>,
    offset: u64,
    /// The last attempt failed mid-chunk: ask the registry where it stands.
    resync: bool,
    chunk: u64,
}

/// `POST`, `PATCH` chunks, `PUT ?digest=`; `None` when the registry refuses the first chunk.
fn upload_chunked(session: &Session, blob: &BlobSource<'_>) -> Result<Option<()>> {
    let mut state = ChunkedState {
        location: None,
        offset: 0,
        resync: false,
        chunk: CHUNK_SIZE,
    };
    session.retrying(&format!("upload blob {}", blob.digest), |_| {
        chunked_attempt(session, blob, &mut state)
    })
}

fn chunked_attempt(
    session: &Session,
    blob: &BlobSource<'_>,
    state: &mut ChunkedState,
) -> Result<Option<()>, Failure> {
    if state.resync {
        state.resync = false;
        resync(session, state)?;
    }
    if state.location.is_none() {
        let (location, min_chunk) = start_upload(session)?;
        state.location = Some(location);
        state.offset = 0;
        // A registry that names a minimum chunk size gets at least that (spec: SHOULD).
        state.chunk = min_chunk.map_or(CHUNK_SIZE, |min| min.max(CHUNK_SIZE));
    }
    while state.offset < blob.size {
        let Some(location) = state.location.clone() else {
            break;
        };
        let len = state.chunk.min(blob.size - state.offset);
        let end = state.offset + len - 1;
        let sent = session.send(
            &Request::new(Method::PATCH, location.clone())
                .header("Content-Type", "application/octet-stream")
                .header("Content-Range", format!("{}-{end}", state.offset))
                .body(Body::File {
                    path: blob.path,
                    offset: state.offset,
                    len,
                }),
        );
        let response = match sent {
            Ok(response) => response,
            Err(failure) => {
                // The chunk may have arrived in part: learn the offset before going on.
                state.resync = true;
                return Err(failure);
            }
        };
        match response.status {
            // ECR answers 201 to a chunk where the spec says 202.
            201 | 202 => {
                if let Some(next) = response.header("location") {
                    state.location = Some(session.resolve_location(next));
                }
                state.offset = match response.header("range").and_then(parse_range_end) {
                    Some(reported) => reported,
                    None => end + 1,
                };
            }
            416 => {
                state.resync = true;
                return Err(Failure::transient(format!(
                    "registry refused the chunk at offset {} (416); asking where the upload \
                     stands",
                    state.offset
                )));
            }
            400 | 404 | 405 | 413 | 415 | 501 if state.offset == 0 => {
                cancel(session, &location);
                return Ok(None);
            }
            404 => {
                // The upload session expired or was lost with a restarted registry.
                state.location = None;
                return Err(Failure::transient(format!(
                    "upload session lost ({})",
                    response.describe()
                )));
            }
            _ => return Err(unexpected(session, &response)),
        }
    }
    let Some(location) = state.location.clone() else {
        return Err(Failure::transient("upload session lost"));
    };
    let response = session.send(&Request::new(
        Method::PUT,
        with_digest(&location, &blob.digest),
    ))?;
    match response.status {
        201 => check_digest(&response, &blob.digest).map(Some),
        404 | 416 => {
            state.resync = true;
            Err(Failure::transient(format!(
                "registry refused to close the upload ({})",
                response.describe()
            )))
        }
        _ => Err(unexpected(session, &response)),
    }
}

/// `GET` on the upload location: where the registry's copy ends (`Range: 0-<last>`). A lost
/// session means starting again from a new one.
fn resync(session: &Session, state: &mut ChunkedState) -> Result<(), Failure> {
    let Some(location) = state.location.clone() else {
        return Ok(());
    };
    let response = session.send(&Request::new(Method::GET, location))?;
    match response.status {
        200 | 204 => {
            if let Some(next) = response.header("location") {
                state.location = Some(session.resolve_location(next));
            }
            state.offset = response
                .header("range")
                .and_then(parse_range_end)
                .unwrap_or(0);
            Ok(())
        }
        _ => {
            state.location = None;
            state.offset = 0;
            Ok(())
        }
    }
}

/// `POST /v2/<name>/blobs/uploads/`: the upload location and `OCI-Chunk-Min-Length`.
fn start_upload(session: &Session) -> Result<(String, Option<u64>), Failure> {
    let response = session.send(&Request::new(
        Method::POST,
        session.repo_url("blobs/uploads/"),
    ))?;
    if response.status != 202 {
        return Err(unexpected(session, &response));
    }
    let location = response.header("location").ok_or_else(|| {
        Failure::Fatal(error::environment(
            "the registry started an upload without a Location header",
        ))
    })?;
    let min_chunk = response
        .header("oci-chunk-min-length")
        .and_then(|v| v.trim().parse().ok());
    Ok((session.resolve_location(location), min_chunk))
}

/// `DELETE` on an abandoned upload; failures are ignored (the spec says to).
fn cancel(session: &Session, location: &str) {
    let _ = session.send(&Request::new(Method::DELETE, location));
}

/// `PUT /v2/<name>/manifests/<reference>` with the exact bytes from the layout. Returns
/// whether the registry answered `OCI-Subject`, i.e. indexed the manifest's `subject` itself.
pub(crate) fn put_manifest(
    session: &Session,
    reference: &str,
    media_type: &str,
    bytes: &[u8],
) -> Result<bool> {
    let digest = Sha256Digest::of(bytes);
    let url = session.repo_url(&format!("manifests/{reference}"));
    session.retrying(&format!("push manifest {digest} as {reference}"), |_| {
        let response = session.send(
            &Request::new(Method::PUT, url.clone())
                .header("Content-Type", media_type)
                .body(Body::Bytes(bytes)),
        )?;
        match response.status {
            200..=202 => {
                check_digest(&response, &digest).map(|()| response.header("oci-subject").is_some())
            }
            _ => Err(unexpected(session, &response)),
        }
    })
}

/// `GET /v2/<name>/manifests/<reference>` for an image index: its bytes, or `None` (404).
pub(crate) fn get_index(session: &Session, reference: &str) -> Result<Option<Vec<u8>>> {
    let url = session.repo_url(&format!("manifests/{reference}"));
    session.retrying(&format!("read manifest {reference}"), |_| {
        let response = session.send(
            &Request::new(Method::GET, url.clone())
                .header("Accept", "application/vnd.oci.image.index.v1+json"),
        )?;
        match response.status {
            200 => Ok(Some(response.body)),
            404 => Ok(None),
            _ => Err(unexpected(session, &response)),
        }
    })
}

/// The upload location with `digest=` added (it may carry query parameters of its own).
fn with_digest(location: &str, digest: &Sha256Digest) -> String {
    let separator = if location.contains('?') { '&' } else { '?' };
    format!(
        "{location}{separator}digest={}",
        percent_encode(&digest.to_string())
    )
}

/// The registry must store exactly what we sent: its `Docker-Content-Digest`, when it sends
/// one, must be ours.
fn check_digest(response: &Response, expected: &Sha256Digest) -> Result<(), Failure> {
    match response.header("docker-content-digest") {
        Some(reported) if reported.trim() != expected.to_string() => {
            Err(Failure::Fatal(error::check_failed(format!(
                "the registry reports digest {} for what airlock sent as {expected}",
                reported.trim()
            ))))
        }
        _ => Ok(()),
    }
}

/// `Range: 0-<last>` → the offset after `<last>`. Distribution answers `0--1` for nothing.
fn parse_range_end(range: &str) -> Option<u64> {
    let range = range.trim().strip_prefix("bytes=").unwrap_or(range.trim());
    let (start, end) = range.split_once('-')?;
    if start != "0" {
        return None;
    }
    match end.parse::<i64>() {
        Ok(end) if end >= 0 => Some(end as u64 + 1),
        Ok(_) => Some(0),
        Err(_) if end == "-1" => Some(0),
        Err(_) => None,
    }
}

/// An answer no step expects: a refusal of our credentials, or the registry's error.
fn unexpected(session: &Session, response: &Response) -> Failure {
    Failure::Fatal(match response.status {
        401 | 403 => session.refused(response),
        _ => error::input(format!("the registry answered {}", response.describe())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_range_ends() {
        assert_eq!(parse_range_end("0-1023"), Some(1024));
        assert_eq!(parse_range_end("bytes=0-0"), Some(1));
        assert_eq!(parse_range_end("0--1"), Some(0));
        assert_eq!(parse_range_end("5-9"), None);
        assert_eq!(parse_range_end("junk"), None);
    }

    #[test]
    fn adds_the_digest_to_locations() {
        let d = Sha256Digest::of(b"");
        assert_eq!(
            with_digest("http://r/v2/a/blobs/uploads/u?_state=x", &d),
            format!(
                "http://r/v2/a/blobs/uploads/u?_state=x&digest=sha256%3A{}",
                d.hex()
            )
        );
        assert!(with_digest("/v2/a/blobs/uploads/u", &d).contains("/u?digest=sha256%3A"));
    }
}
