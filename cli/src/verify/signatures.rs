//! `verify --layout DIR --key KEY.pub`: every image of a layout carries a signature by the key
//! that names its digest (cosign's `.sig` tag or a signature referrer), as `sign` and
//! `push --sign` write them and cosign and containers/image read them.

use std::path::Path;

use anyhow::Result;

use super::{CheckKind, CheckSummary};
use crate::finding::{Finding, FindingKind};
use crate::oci::layout::Layout;
use crate::signing::PublicKey;
use crate::signing::layout::{ImageVerdict, verify_layout};

/// Checks the images of the layout at `root` against the public key at `key_path`.
pub fn check_signatures(
    root: &Path,
    key_path: &Path,
) -> Result<(CheckSummary, Vec<Finding>, Vec<ImageVerdict>)> {
    let key = PublicKey::load(key_path)?;
    let layout = Layout::open(root)?;
    let verdict = verify_layout(&layout, &key)?;
    let mut findings = Vec::new();
    for (entry, error) in &verdict.unreadable {
        findings.push(Finding::new(
            FindingKind::SignatureInvalid,
            format!("{}: {entry}", root.display()),
            format!("this signature or attestation cannot be read: {error:#}"),
        ));
    }
    for image in &verdict.images {
        if image.ok() {
            continue;
        }
        let shown = match image.tags.as_slice() {
            [] => format!("oci:{}@{}", root.display(), image.digest),
            tags => format!("oci:{}:{}", root.display(), tags.join(",")),
        };
        let finding = if image.rejected.is_empty() {
            Finding::new(
                FindingKind::SignatureMissing,
                shown,
                format!(
                    "image {} has no signature (no tag sha256-{}.sig, no signature referrer); \
                     sign it with `cargo airlock sign --key KEY`",
                    image.digest,
                    image.digest.hex()
                ),
            )
        } else {
            Finding::new(
                FindingKind::SignatureInvalid,
                shown,
                format!(
                    "no signature by the key {} ({}) vouches for image {}: {}",
                    key.key_id(),
                    key_path.display(),
                    image.digest,
                    image.rejected.join("; ")
                ),
            )
        };
        findings.push(finding);
    }
    let summary = CheckSummary {
        check: CheckKind::Signatures,
        target: root.to_path_buf(),
        against: key_path.to_path_buf(),
        items: verdict.images.len(),
        files: verdict
            .images
            .iter()
            .map(|i| i.signed_repositories.len() + i.rejected.len())
            .sum(),
        bytes: 0,
        compared_with_crate: 0,
    };
    Ok((summary, findings, verdict.images))
}
