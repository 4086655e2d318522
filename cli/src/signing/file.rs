//! Signatures of files (`SHA256SUMS.sig`), as `cosign sign-blob` writes them: the base64 of an
//! ASN.1 DER ECDSA-SHA256 signature of the file's bytes, in `FILE.sig` beside it. Plain
//! `openssl dgst -sha256 -verify cosign.pub -signature <(base64 -d FILE.sig) FILE` checks one.

use std::path::{Path, PathBuf};

use anyhow::Result;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use crate::atomic;
use crate::digest::Sha256Digest;
use crate::input::{self, Links};
use crate::signing::key::{PublicKey, SigningKey};

/// The largest file signed or verified: it is read whole (ring signs messages, not digests).
pub const MAX_SIGNED_FILE: u64 = 4 << 30;

/// The most bytes read of a `.sig` file: a base64 P-256 signature is under 100.
const MAX_SIGNATURE_FILE: u64 = 64 << 10;

/// A file signed.
#[derive(Debug, Clone, Serialize)]
pub struct SignedFile {
    /// The file.
    pub path: PathBuf,
    /// Its signature file (`path` + `.sig`).
    pub signature: PathBuf,
    /// The file's digest, what the signature covers.
    pub digest: Sha256Digest,
}

/// Where the signature of `path` goes: `path.sig`.
pub fn signature_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".sig");
    PathBuf::from(name)
}

/// Signs the file at `path` and writes `path.sig` (atomically).
pub fn sign_file(key: &SigningKey, path: &Path) -> Result<SignedFile> {
    let bytes = input::read_regular(path, Links::Follow, MAX_SIGNED_FILE)?;
    let signature = STANDARD.encode(key.sign(&bytes)?);
    let signature_file = signature_path(path);
    atomic::write_file(&signature_file, signature.as_bytes())?;
    Ok(SignedFile {
        path: path.to_path_buf(),
        signature: signature_file,
        digest: Sha256Digest::of(&bytes),
    })
}

/// Whether a file's signature holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// It is `key`'s signature of the file.
    Valid,
    /// It is not, and why (a finding, exit 1).
    Invalid(String),
}

/// Checks `signature_file` (base64 DER, as `cosign sign-blob` writes) against the file at
/// `path` and `key`. Files that cannot be read are errors (exit 2); a signature that is not
/// base64, or not `key`'s signature of these bytes, is [`Verdict::Invalid`].
pub fn verify_file(key: &PublicKey, path: &Path, signature_file: &Path) -> Result<Verdict> {
    let text = input::read_regular_to_string(signature_file, Links::Follow, MAX_SIGNATURE_FILE)?;
    let Ok(signature) = STANDARD.decode(text.trim()) else {
        return Ok(Verdict::Invalid(format!(
            "{} is not a base64 signature",
            signature_file.display()
        )));
    };
    let bytes = input::read_regular(path, Links::Follow, MAX_SIGNED_FILE)?;
    Ok(if key.verify(&bytes, &signature) {
        Verdict::Valid
    } else {
        Verdict::Invalid(format!(
            "{} is not a signature of {} (sha256 {}) by the key {}",
            signature_file.display(),
            path.display(),
            Sha256Digest::of(&bytes).hex(),
            key.key_id()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_beside_the_file_and_catches_a_changed_byte() {
        let dir = tempfile::tempdir().unwrap();
        let sums = dir.path().join("SHA256SUMS");
        std::fs::write(&sums, "abc  file\n").unwrap();
        let (key, _) = SigningKey::generate().unwrap();
        let signed = sign_file(&key, &sums).unwrap();
        assert_eq!(signed.signature, dir.path().join("SHA256SUMS.sig"));
        assert_eq!(
            verify_file(key.public_key(), &sums, &signed.signature).unwrap(),
            Verdict::Valid
        );
        std::fs::write(&sums, "abd  file\n").unwrap();
        let Verdict::Invalid(why) =
            verify_file(key.public_key(), &sums, &signed.signature).unwrap()
        else {
            panic!("a changed file still verifies");
        };
        assert!(why.contains("is not a signature of"), "{why}");
        std::fs::write(&signed.signature, "%%%").unwrap();
        assert!(matches!(
            verify_file(key.public_key(), &sums, &signed.signature).unwrap(),
            Verdict::Invalid(_)
        ));
    }
}
