//! `cargo airlock keygen` and `cargo airlock sign`: cosign-compatible keys, and signatures of
//! images (sigstore simple signing, in the `.sig` tag scheme and as referrers) and of files
//! (`SHA256SUMS.sig`), plus the DSSE envelopes and attestations that provenance travels in.
//!
//! Everything is key-based and offline: no Fulcio certificate, no Rekor entry, no network.
//! `signing` never pushes (that is `registry`, which signs for its destination with this
//! module) and never prints, logs or reports a private key or a passphrase.

pub mod attach;
pub mod dsse;
pub mod file;
pub mod key;
pub mod layout;
pub mod payload;

use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Serialize;

use crate::error;
use crate::oci::layout::ImageRef;
use crate::progress;
use crate::render::{self, CommandReport};

pub use attach::{Attachment, AttachmentKind};
pub use dsse::Envelope;
pub use file::SignedFile;
pub use key::{Passphrase, PassphraseSource, PublicKey, SigningKey};
pub use layout::{ImageVerdict, SignedImage};
pub use payload::SignedRepository;

/// What `keygen` needs.
#[derive(Debug, Clone)]
pub struct KeygenOptions {
    /// Where to write: `PREFIX.key` and `PREFIX.pub`.
    pub prefix: PathBuf,
    /// The passphrase that seals the private key.
    pub passphrase: Passphrase,
    /// Allow an empty passphrase.
    pub empty_password: bool,
    /// Replace existing key files.
    pub force: bool,
}

/// What `keygen` wrote.
#[derive(Debug, Clone, Serialize)]
pub struct KeygenReport {
    /// The private key (`ENCRYPTED SIGSTORE PRIVATE KEY`, mode 0600).
    pub private_key: PathBuf,
    /// The public key (`PUBLIC KEY`).
    pub public_key: PathBuf,
    /// The hex SHA-256 of the public key's DER (the `keyid` of DSSE envelopes).
    pub key_id: String,
    /// Whether the private key is sealed with an empty passphrase.
    pub empty_password: bool,
}

impl CommandReport for KeygenReport {
    fn human(&self) -> String {
        format!(
            "private key {} ({})\npublic key  {}\nkey id      {}\n",
            self.private_key.display(),
            if self.empty_password {
                "empty passphrase"
            } else {
                "encrypted"
            },
            self.public_key.display(),
            self.key_id
        )
    }
}

/// Writes a new key pair in cosign's formats.
pub fn keygen(options: &KeygenOptions) -> Result<KeygenReport> {
    let private_key = with_extension(&options.prefix, "key");
    let public_key = with_extension(&options.prefix, "pub");
    if options.passphrase.is_empty() && !options.empty_password {
        return Err(error::input(format!(
            "no passphrase for the private key: set {} or pass --password-stdin (or \
             --empty-password to seal it with an empty one, as `COSIGN_PASSWORD=` does)",
            key::PASSWORD_ENV
        )));
    }
    if !options.force {
        let existing: Vec<String> = [&private_key, &public_key]
            .iter()
            .filter(|p| p.symlink_metadata().is_ok())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(error::input(format!(
                "{} already exist(s); use another --output PREFIX, or --force to replace",
                existing.join(" and ")
            )));
        }
    }
    progress::status("Generating", "an ECDSA P-256 key pair");
    let pair = key::generate_key_pair(&options.passphrase)?;
    crate::atomic::write_file(&public_key, pair.public.to_pem().as_bytes())?;
    key::write_private_key(&private_key, &pair.private_pem)?;
    Ok(KeygenReport {
        private_key,
        public_key,
        key_id: pair.public.key_id(),
        empty_password: options.passphrase.is_empty(),
    })
}

fn with_extension(prefix: &Path, extension: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(".");
    name.push(extension);
    PathBuf::from(name)
}

/// What to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignTarget {
    /// An image (or all images) of a layout.
    Layout(ImageRef),
    /// A release directory: its `SHA256SUMS` and its `image/` layout.
    Release(PathBuf),
    /// One file: `FILE.sig` beside it.
    File(PathBuf),
}

impl SignTarget {
    /// Reads what the user named: `oci:DIR[:TAG]` is a layout; an existing directory is a
    /// layout when it has `oci-layout`, a release when it has `SHA256SUMS`; an existing file
    /// is a file; `DIR:TAG` of a layout directory is that image.
    pub fn parse(text: &str) -> Result<SignTarget> {
        if text.starts_with("oci:") {
            return Ok(SignTarget::Layout(text.parse()?));
        }
        let path = Path::new(text);
        if let Ok(metadata) = std::fs::metadata(path) {
            if metadata.is_file() {
                return Ok(SignTarget::File(path.to_path_buf()));
            }
            if metadata.is_dir() {
                if path.join("oci-layout").exists() {
                    return Ok(SignTarget::Layout(ImageRef {
                        path: path.to_path_buf(),
                        tag: None,
                    }));
                }
                if path.join("SHA256SUMS").exists() {
                    return Ok(SignTarget::Release(path.to_path_buf()));
                }
                return Err(error::input(format!(
                    "{text} is neither an OCI image layout (no oci-layout) nor a release \
                     directory (no SHA256SUMS); name a layout, a release directory or a file"
                )));
            }
        }
        if let Ok(image) = text.parse::<ImageRef>()
            && image.tag.is_some()
            && image.path.join("oci-layout").exists()
        {
            return Ok(SignTarget::Layout(image));
        }
        Err(error::input(format!(
            "{text}: no such file, directory or layout image"
        )))
    }
}

/// What `sign` needs.
#[derive(Debug)]
pub struct SignOptions {
    /// The workspace's `Cargo.toml`, for the default target.
    pub manifest_path: Option<PathBuf>,
    /// What to sign (default: the layout `cargo airlock image` writes).
    pub target: Option<SignTarget>,
    /// The cosign private key file.
    pub key: PathBuf,
    /// Its passphrase.
    pub passphrase: Passphrase,
    /// The repository image signatures name (default: each image's name in the layout).
    pub signed_repository: Option<SignedRepository>,
}

/// What `sign` did.
#[derive(Debug, Clone, Serialize)]
pub struct SignReport {
    /// The key id (hex SHA-256 of the public key's DER) that signed.
    pub key_id: String,
    /// Files signed.
    pub files: Vec<SignedFile>,
    /// The layout whose images were signed, if any.
    pub layout: Option<PathBuf>,
    /// Manifests signed.
    pub images: Vec<SignedImage>,
}

impl CommandReport for SignReport {
    fn human(&self) -> String {
        let mut out = String::new();
        for file in &self.files {
            out.push_str(&format!(
                "signed {} -> {}\n",
                file.path.display(),
                file.signature.display()
            ));
        }
        if !self.images.is_empty() {
            let rows: Vec<Vec<String>> = self
                .images
                .iter()
                .map(|i| {
                    vec![
                        i.tag.clone().unwrap_or_else(|| "-".to_owned()),
                        i.platform.clone().unwrap_or_else(|| "-".to_owned()),
                        i.digest.to_string(),
                        i.signed_repository.to_string(),
                        i.signatures.to_string(),
                    ]
                })
                .collect();
            out.push_str(&render::table(
                &[
                    ("tag", render::Align::Left),
                    ("platform", render::Align::Left),
                    ("manifest", render::Align::Left),
                    ("signed for", render::Align::Left),
                    ("signatures", render::Align::Right),
                ],
                &rows,
            ));
            if let Some(layout) = &self.layout {
                out.push_str(&format!(
                    "signatures in {} (tags sha256-<digest>.sig and referrers)\n",
                    layout.display()
                ));
            }
        }
        out.push_str(&format!("key {}\n", self.key_id));
        out
    }
}

/// Signs what `options.target` names with the key at `options.key`.
pub fn sign(options: &SignOptions) -> Result<SignReport> {
    let key = SigningKey::load(&options.key, &options.passphrase)?;
    let identity = options.signed_repository.as_ref();
    let target = match &options.target {
        Some(target) => target.clone(),
        None => SignTarget::Layout(ImageRef {
            path: crate::oci::image::default_layout(options.manifest_path.as_deref())?,
            tag: None,
        }),
    };
    match &target {
        SignTarget::File(path) => Ok(SignReport {
            key_id: key.public_key().key_id(),
            files: vec![file::sign_file(&key, path)?],
            layout: None,
            images: Vec::new(),
        }),
        SignTarget::Layout(image) => Ok(SignReport {
            key_id: key.public_key().key_id(),
            files: Vec::new(),
            layout: Some(image.path.clone()),
            images: layout::sign_layout(&image.path, image.tag.as_deref(), &key, identity)?,
        }),
        SignTarget::Release(dir) => sign_release(dir, &key, identity),
    }
}

/// Signs a release directory as `dist` writes it: `SHA256SUMS` (to `SHA256SUMS.sig`) and,
/// when there is one, every image of the `image/` layout. The library function `dist --sign`
/// calls.
pub fn sign_release(
    dir: &Path,
    key: &SigningKey,
    identity: Option<&SignedRepository>,
) -> Result<SignReport> {
    let sums = dir.join("SHA256SUMS");
    let files = vec![file::sign_file(key, &sums)?];
    let image_dir = dir.join("image");
    let (layout, images) = if image_dir.join("oci-layout").exists() {
        (
            Some(image_dir.clone()),
            layout::sign_layout(&image_dir, None, key, identity)?,
        )
    } else {
        (None, Vec::new())
    };
    Ok(SignReport {
        key_id: key.public_key().key_id(),
        files,
        layout,
        images,
    })
}
