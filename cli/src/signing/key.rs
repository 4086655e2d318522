//! Key pairs in cosign's file formats: ECDSA P-256, the private key as an
//! `ENCRYPTED SIGSTORE PRIVATE KEY` PEM (PKCS#8 sealed with scrypt + NaCl secretbox, the
//! format of go-securesystemslib's `encrypted` package that cosign and containers/image read)
//! and the public key as a PKIX `PUBLIC KEY` PEM.
//!
//! Private keys and passphrases live in types whose `Debug` prints nothing of them and which
//! have no `Display`; error messages name the key file, never its contents.

use std::fmt;
use std::path::Path;

use anyhow::{Context, Result};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::{Nonce, XSalsa20Poly1305};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{self as ring_signature, EcdsaKeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::atomic;
use crate::digest::Sha256Digest;
use crate::error;
use crate::input::{self, Links};

/// The variable `keygen`, `sign` and `push --sign` read the key's passphrase from.
pub const PASSWORD_ENV: &str = "AIRLOCK_KEY_PASSWORD";

/// The PEM type cosign writes since 2.0 (and airlock writes).
const SIGSTORE_PRIVATE_KEY: &str = "ENCRYPTED SIGSTORE PRIVATE KEY";
/// The PEM type of keys made by cosign before 2.0; still read.
const COSIGN_PRIVATE_KEY: &str = "ENCRYPTED COSIGN PRIVATE KEY";
const PUBLIC_KEY: &str = "PUBLIC KEY";

/// The most bytes read of a key file: real ones are under 1 KiB.
const MAX_KEY_FILE: u64 = 64 << 10;

/// SubjectPublicKeyInfo of an uncompressed P-256 point, up to the point itself (RFC 5480:
/// `id-ecPublicKey` with the `prime256v1` named curve), as Go's `MarshalPKIXPublicKey` writes.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// scrypt's cost for new keys: go-securesystemslib's "standard" level (N = 2^16, r = 8, p = 1),
/// what cosign writes today.
const SCRYPT_LOG_N: u8 = 16;
/// The parameter sets go-securesystemslib accepts ("legacy" 2^15, "standard" 2^16, "OWASP"
/// 2^17, each with r = 8, p = 1). Anything else is refused before deriving: a key file must
/// not be able to ask for gigabytes of memory.
const ACCEPTED_LOG_N: [u8; 3] = [15, 16, 17];

/// A key's passphrase: never printed, wiped from memory when dropped.
#[derive(Clone)]
pub struct Passphrase(Zeroizing<Vec<u8>>);

impl Passphrase {
    /// Wraps a passphrase.
    pub fn new(value: impl Into<Vec<u8>>) -> Passphrase {
        Passphrase(Zeroizing::new(value.into()))
    }

    /// The empty passphrase (the key is still sealed, with an empty one, as cosign does).
    pub fn empty() -> Passphrase {
        Passphrase::new(Vec::new())
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passphrase(<redacted>)")
    }
}

/// Where a passphrase comes from, as the commands take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassphraseSource {
    /// Standard input, up to its end (one trailing newline removed).
    Stdin,
    /// [`PASSWORD_ENV`], else empty.
    Environment,
}

/// Reads the passphrase from `source`. `what` names the file it is for in errors.
pub fn read_passphrase(source: PassphraseSource) -> Result<Passphrase> {
    match source {
        PassphraseSource::Stdin => {
            let mut text = Zeroizing::new(Vec::new());
            std::io::Read::read_to_end(&mut std::io::stdin(), &mut text)
                .map_err(|e| error::input(format!("cannot read the passphrase from stdin: {e}")))?;
            let mut end = text.len();
            if text[..end].ends_with(b"\n") {
                end -= 1;
                if text[..end].ends_with(b"\r") {
                    end -= 1;
                }
            }
            Ok(Passphrase::new(text[..end].to_vec()))
        }
        PassphraseSource::Environment => Ok(std::env::var_os(PASSWORD_ENV)
            .map(|v| Passphrase::new(std::os::unix::ffi::OsStringExt::into_vec(v)))
            .unwrap_or_else(Passphrase::empty)),
    }
}

/// An ECDSA P-256 public key (PKIX).
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    /// The uncompressed point, `04 || X || Y`.
    point: [u8; 65],
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl PublicKey {
    fn from_point(point: &[u8]) -> Option<PublicKey> {
        let point: [u8; 65] = point.try_into().ok()?;
        (point[0] == 0x04).then_some(PublicKey { point })
    }

    /// Parses a SubjectPublicKeyInfo (DER) holding a P-256 key.
    pub fn from_spki_der(der: &[u8]) -> Option<PublicKey> {
        PublicKey::from_point(der.strip_prefix(&P256_SPKI_PREFIX[..])?)
    }

    /// The SubjectPublicKeyInfo, DER.
    pub fn spki_der(&self) -> Vec<u8> {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&self.point);
        der
    }

    /// The `PUBLIC KEY` PEM that cosign writes as `cosign.pub`.
    pub fn to_pem(&self) -> String {
        pem_encode(PUBLIC_KEY, &self.spki_der())
    }

    /// Parses a `PUBLIC KEY` PEM; `origin` names the file in errors.
    pub fn from_pem(text: &str, origin: &Path) -> Result<PublicKey> {
        let der = pem_decode(text, &[PUBLIC_KEY], origin)?.1;
        PublicKey::from_spki_der(&der).ok_or_else(|| {
            error::input(format!(
                "{}: not an ECDSA P-256 public key; airlock signs and verifies with P-256 \
                 (cosign's default, `cosign generate-key-pair` or `cargo airlock keygen`)",
                origin.display()
            ))
        })
    }

    /// Reads a `PUBLIC KEY` PEM file.
    pub fn load(path: &Path) -> Result<PublicKey> {
        let text = input::read_regular_to_string(path, Links::Follow, MAX_KEY_FILE)
            .with_context(|| format!("cannot read the public key {}", path.display()))?;
        PublicKey::from_pem(&text, path)
    }

    /// Whether `signature` (ASN.1 DER) is this key's ECDSA-SHA256 signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        ring_signature::UnparsedPublicKey::new(&ring_signature::ECDSA_P256_SHA256_ASN1, self.point)
            .verify(message, signature)
            .is_ok()
    }

    /// The key's id: the hex SHA-256 of its SubjectPublicKeyInfo (DER), the `keyid` of the
    /// DSSE envelopes airlock writes.
    pub fn key_id(&self) -> String {
        Sha256Digest::of(&self.spki_der()).hex()
    }
}

/// An ECDSA P-256 private key, ready to sign.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    public: PublicKey,
    rng: SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey(<redacted>, public {})", self.public.key_id())
    }
}

impl SigningKey {
    /// A new random key and its PKCS#8 document (to seal into a key file).
    pub fn generate() -> Result<(SigningKey, Zeroizing<Vec<u8>>)> {
        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ring_signature::ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
                .map_err(|_| error::environment("the system's random source failed"))?;
        let pkcs8 = Zeroizing::new(pkcs8.as_ref().to_vec());
        let key = SigningKey::from_pkcs8(&pkcs8)
            .ok_or_else(|| anyhow::anyhow!("a freshly generated key does not load"))?;
        Ok((key, pkcs8))
    }

    /// Loads a PKCS#8 P-256 private key (as Go's `x509.MarshalPKCS8PrivateKey`, OpenSSL and
    /// ring write it). None when it is not one.
    pub fn from_pkcs8(der: &[u8]) -> Option<SigningKey> {
        let rng = SystemRandom::new();
        let pair =
            EcdsaKeyPair::from_pkcs8(&ring_signature::ECDSA_P256_SHA256_ASN1_SIGNING, der, &rng)
                .ok()?;
        let public = PublicKey::from_point(pair.public_key().as_ref())?;
        Some(SigningKey { pair, public, rng })
    }

    /// Reads and decrypts a cosign private key file (`ENCRYPTED SIGSTORE PRIVATE KEY`, or
    /// `ENCRYPTED COSIGN PRIVATE KEY` from cosign 1.x).
    pub fn load(path: &Path, passphrase: &Passphrase) -> Result<SigningKey> {
        let text = input::read_regular_to_string(path, Links::Follow, MAX_KEY_FILE)
            .with_context(|| format!("cannot read the private key {}", path.display()))?;
        let (_, sealed) = pem_decode(&text, &[SIGSTORE_PRIVATE_KEY, COSIGN_PRIVATE_KEY], path)?;
        let pkcs8 = open(&sealed, passphrase, path)?;
        SigningKey::from_pkcs8(&pkcs8).ok_or_else(|| {
            error::input(format!(
                "{}: the decrypted key is not an ECDSA P-256 private key; airlock signs with \
                 P-256 keys (cosign's default)",
                path.display()
            ))
        })
    }

    /// The public half.
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    /// The ECDSA-SHA256 signature of `message`, ASN.1 DER (what cosign and openssl produce).
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        self.pair
            .sign(&self.rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| error::environment("signing failed: the system's random source failed"))
    }
}

/// The JSON inside an encrypted key PEM (go-securesystemslib `encrypted.data`: Go encodes
/// `[]byte` fields as standard base64 with padding, and fields in this order).
#[derive(Serialize, Deserialize)]
struct SealedKey {
    kdf: Kdf,
    cipher: Cipher,
    #[serde(with = "base64_bytes")]
    ciphertext: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Kdf {
    name: String,
    params: ScryptParams,
    #[serde(with = "base64_bytes")]
    salt: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct ScryptParams {
    #[serde(rename = "N")]
    n: u64,
    r: u32,
    p: u32,
}

#[derive(Serialize, Deserialize)]
struct Cipher {
    name: String,
    #[serde(with = "base64_bytes")]
    nonce: Vec<u8>,
}

mod base64_bytes {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        STANDARD.decode(text).map_err(serde::de::Error::custom)
    }
}

fn derive_key(passphrase: &Passphrase, salt: &[u8], log_n: u8) -> Result<Zeroizing<[u8; 32]>> {
    let params = scrypt::Params::new(log_n, 8, 1).context("invalid scrypt parameters")?;
    let mut key = Zeroizing::new([0u8; 32]);
    scrypt::scrypt(passphrase.bytes(), salt, &params, key.as_mut())
        .context("scrypt key derivation failed")?;
    Ok(key)
}

/// Seals `plaintext` (a PKCS#8 key) as go-securesystemslib's `encrypted.Encrypt` does: a
/// random 32-byte salt, scrypt to a 32-byte key, a random 24-byte nonce, secretbox.
fn seal(plaintext: &[u8], passphrase: &Passphrase) -> Result<Vec<u8>> {
    let rng = SystemRandom::new();
    let mut salt = [0u8; 32];
    let mut nonce = [0u8; 24];
    rng.fill(&mut salt)
        .and_then(|()| rng.fill(&mut nonce))
        .map_err(|_| error::environment("the system's random source failed"))?;
    let key = derive_key(passphrase, &salt, SCRYPT_LOG_N)?;
    let ciphertext = XSalsa20Poly1305::new(key.as_ref().into())
        .encrypt(Nonce::from_slice(&nonce), plaintext)
        .map_err(|_| anyhow::anyhow!("secretbox encryption failed"))?;
    let sealed = SealedKey {
        kdf: Kdf {
            name: "scrypt".into(),
            params: ScryptParams {
                n: 1 << SCRYPT_LOG_N,
                r: 8,
                p: 1,
            },
            salt: salt.to_vec(),
        },
        cipher: Cipher {
            name: "nacl/secretbox".into(),
            nonce: nonce.to_vec(),
        },
        ciphertext,
    };
    Ok(serde_json::to_vec(&sealed)?)
}

/// Opens what [`seal`] (or cosign) sealed; `origin` names the key file in errors.
fn open(sealed: &[u8], passphrase: &Passphrase, origin: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let shown = origin.display();
    let sealed: SealedKey = serde_json::from_slice(sealed).map_err(|e| {
        error::input(format!(
            "{shown}: not a cosign encrypted private key (its contents are not the expected \
             JSON: {e})"
        ))
    })?;
    if sealed.kdf.name != "scrypt" || sealed.cipher.name != "nacl/secretbox" {
        return Err(error::input(format!(
            "{shown}: unsupported key encryption `{}` + `{}`; cosign keys use scrypt + \
             nacl/secretbox",
            sealed.kdf.name, sealed.cipher.name
        )));
    }
    let params = &sealed.kdf.params;
    let log_n = ACCEPTED_LOG_N
        .into_iter()
        .find(|&log_n| params.n == 1 << log_n && params.r == 8 && params.p == 1)
        .ok_or_else(|| {
            error::input(format!(
                "{shown}: unsupported scrypt parameters N={} r={} p={} (accepted: N = 2^15, \
                 2^16 or 2^17 with r = 8, p = 1, as cosign writes)",
                params.n, params.r, params.p
            ))
        })?;
    if sealed.cipher.nonce.len() != 24 {
        return Err(error::input(format!(
            "{shown}: the secretbox nonce must be 24 bytes, not {}",
            sealed.cipher.nonce.len()
        )));
    }
    let key = derive_key(passphrase, &sealed.kdf.salt, log_n)?;
    let plaintext = XSalsa20Poly1305::new(key.as_ref().into())
        .decrypt(
            Nonce::from_slice(&sealed.cipher.nonce),
            sealed.ciphertext.as_slice(),
        )
        .map_err(|_| {
            error::input(format!(
                "{shown}: cannot decrypt the private key: wrong passphrase (airlock reads it \
                 from {PASSWORD_ENV}, or from stdin with --password-stdin)"
            ))
        })?;
    Ok(Zeroizing::new(plaintext))
}

/// A new key pair in cosign's formats: the sealed private key PEM and the public key PEM.
pub struct GeneratedKeyPair {
    /// `ENCRYPTED SIGSTORE PRIVATE KEY` PEM.
    pub private_pem: Zeroizing<String>,
    /// `PUBLIC KEY` PEM.
    pub public: PublicKey,
}

impl fmt::Debug for GeneratedKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GeneratedKeyPair(<redacted>, public {:?})", self.public)
    }
}

/// Generates a key pair, the private key sealed with `passphrase`.
pub fn generate_key_pair(passphrase: &Passphrase) -> Result<GeneratedKeyPair> {
    let (key, pkcs8) = SigningKey::generate()?;
    let sealed = Zeroizing::new(seal(&pkcs8, passphrase)?);
    Ok(GeneratedKeyPair {
        private_pem: Zeroizing::new(pem_encode(SIGSTORE_PRIVATE_KEY, &sealed)),
        public: key.public_key().clone(),
    })
}

/// Writes `pem` as a private key file: mode 0600, atomically.
pub fn write_private_key(path: &Path, pem: &str) -> Result<()> {
    atomic::write_file_with(path, 0o600, |w| {
        std::io::Write::write_all(w, pem.as_bytes())?;
        Ok(())
    })
}

/// PEM as Go's `pem.EncodeToMemory` writes it: 64 base64 characters a line.
fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The first PEM block of `text` whose label is one of `labels`: (label, bytes).
fn pem_decode(text: &str, labels: &[&str], origin: &Path) -> Result<(String, Vec<u8>)> {
    let wanted = labels.join("` or `");
    let not_found = || {
        error::input(format!(
            "{}: no `{wanted}` PEM block found; is it the right file?",
            origin.display()
        ))
    };
    let mut lines = text.lines();
    let label = loop {
        let line = lines.next().ok_or_else(not_found)?.trim();
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
            && labels.contains(&label)
        {
            break label.to_owned();
        }
    };
    let end = format!("-----END {label}-----");
    let mut body = String::new();
    let mut closed = false;
    for line in lines {
        let line = line.trim();
        if line == end {
            closed = true;
            break;
        }
        body.push_str(line);
    }
    if !closed {
        return Err(error::input(format!(
            "{}: the `{label}` PEM block has no END line",
            origin.display()
        )));
    }
    let bytes = STANDARD.decode(body.as_bytes()).map_err(|e| {
        error::input(format!(
            "{}: the `{label}` PEM block is not valid base64: {e}",
            origin.display()
        ))
    })?;
    Ok((label, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ExitKind, exit_kind};

    /// A P-256 PKCS#8 key laid out byte for byte as Go's `x509.MarshalPKCS8PrivateKey` writes
    /// it (what cosign and skopeo seal): the curve OID in the AlgorithmIdentifier, and in
    /// the ECPrivateKey the version, the 32-byte scalar and the `[1]` public key, with no `[0]`
    /// parameters. Private scalar 1: its public key is the curve's generator.
    fn go_pkcs8_scalar_one() -> Vec<u8> {
        let mut der =
            hex::decode("308187020100301306072a8648ce3d020106082a8648ce3d030107046d306b0201010420")
                .unwrap();
        let mut scalar = [0u8; 32];
        scalar[31] = 1;
        der.extend_from_slice(&scalar);
        der.extend_from_slice(&hex::decode("a144034200").unwrap());
        der.extend_from_slice(
            &hex::decode(concat!(
                "04",
                "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296",
                "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
            ))
            .unwrap(),
        );
        der
    }

    #[test]
    fn loads_pkcs8_as_go_writes_it() {
        let key = SigningKey::from_pkcs8(&go_pkcs8_scalar_one()).expect("Go's PKCS#8 loads");
        let signature = key.sign(b"message").unwrap();
        assert!(key.public_key().verify(b"message", &signature));
        assert!(!key.public_key().verify(b"other", &signature));
        assert_eq!(
            key.public_key().spki_der()[26..27],
            [0x04],
            "uncompressed point"
        );
    }

    #[test]
    fn sealed_key_round_trips_and_refuses_a_wrong_passphrase() {
        let passphrase = Passphrase::new("correct horse");
        let pair = generate_key_pair(&passphrase).unwrap();
        assert!(
            pair.private_pem
                .starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cosign.key");
        write_private_key(&path, &pair.private_pem).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let key = SigningKey::load(&path, &passphrase).unwrap();
        assert_eq!(key.public_key(), &pair.public);

        let err = SigningKey::load(&path, &Passphrase::new("wrong")).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("wrong passphrase"), "{message}");
        assert!(message.contains("cosign.key"), "{message}");
        assert!(!message.contains("correct horse"), "{message}");
        assert_eq!(exit_kind(&err), ExitKind::Input);
        assert_eq!(format!("{passphrase:?}"), "Passphrase(<redacted>)");
        assert!(!format!("{key:?}").contains("BEGIN"));
    }

    #[test]
    fn the_sealed_json_has_go_securesystemslib_fields() {
        let sealed = seal(b"pkcs8", &Passphrase::empty()).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        assert_eq!(value["kdf"]["name"], "scrypt");
        assert_eq!(
            value["kdf"]["params"],
            serde_json::json!({"N": 65536, "r": 8, "p": 1})
        );
        assert_eq!(
            STANDARD
                .decode(value["kdf"]["salt"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert_eq!(value["cipher"]["name"], "nacl/secretbox");
        assert_eq!(
            STANDARD
                .decode(value["cipher"]["nonce"].as_str().unwrap())
                .unwrap()
                .len(),
            24
        );
        // secretbox: a 16-byte Poly1305 tag before the ciphertext.
        assert_eq!(
            STANDARD
                .decode(value["ciphertext"].as_str().unwrap())
                .unwrap()
                .len(),
            16 + 5
        );
        let opened = open(&sealed, &Passphrase::empty(), Path::new("k")).unwrap();
        assert_eq!(opened.as_slice(), b"pkcs8");
    }

    #[test]
    fn refuses_scrypt_parameters_that_cost_too_much() {
        let sealed = seal(b"pkcs8", &Passphrase::empty()).unwrap();
        let mut value: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        value["kdf"]["params"]["N"] = serde_json::json!(1u64 << 30);
        let err = open(
            &serde_json::to_vec(&value).unwrap(),
            &Passphrase::empty(),
            Path::new("evil.key"),
        )
        .unwrap_err();
        assert!(format!("{err}").contains("unsupported scrypt parameters N=1073741824"));
    }

    #[test]
    fn public_key_pem_round_trips_and_other_keys_are_refused() {
        let (key, _) = SigningKey::generate().unwrap();
        let pem = key.public_key().to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let parsed = PublicKey::from_pem(&pem, Path::new("cosign.pub")).unwrap();
        assert_eq!(&parsed, key.public_key());
        // An Ed25519 SubjectPublicKeyInfo (RFC 8410).
        let ed25519 = pem_encode(
            "PUBLIC KEY",
            &hex::decode(format!("302a300506032b6570032100{}", "11".repeat(32))).unwrap(),
        );
        let err = PublicKey::from_pem(&ed25519, Path::new("ed.pub")).unwrap_err();
        assert!(format!("{err}").contains("ed.pub: not an ECDSA P-256 public key"));
        let err = PublicKey::from_pem("garbage", Path::new("x.pub")).unwrap_err();
        assert!(format!("{err}").contains("no `PUBLIC KEY` PEM block"));
    }
}
