//! DSSE, the Dead Simple Signing Envelope (secure-systems-lab/dsse `envelope.md` and
//! `protocol.md`), media type `application/vnd.dsse.envelope.v1+json`: what in-toto
//! statements (SLSA provenance) travel in, and what cosign attaches as attestations.
//!
//! The signature covers the pre-authentication encoding (PAE) of the payload type and the
//! payload, never the JSON around them.

use anyhow::Result;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use serde::{Deserialize, Serialize};

use crate::error;
use crate::signing::key::{PublicKey, SigningKey};

/// The media type of an envelope (as a blob, a layer or a file).
pub const ENVELOPE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";

/// The payload type of in-toto statements (in-toto attestation spec, `envelope.md`).
pub const IN_TOTO_PAYLOAD_TYPE: &str = "application/vnd.in-toto+json";

/// A signed envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The payload, base64 (standard; URL-safe is accepted when reading, as the spec allows).
    pub payload: String,
    /// How to read the payload (`application/vnd.in-toto+json`).
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The signatures of `PAE(payloadType, payload)`.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature in an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// A hint of which key signed (airlock: the hex SHA-256 of the public key's DER); unset
    /// and empty are the same (`envelope.md`, parsing rules).
    #[serde(default)]
    pub keyid: String,
    /// The signature, base64 of ASN.1 DER ECDSA-SHA256.
    pub sig: String,
}

/// `PAE(type, body) = "DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII
/// decimal (`protocol.md`).
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {payload_type} {} ",
        payload_type.len(),
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// Signs `payload` into a new envelope with one signature by `key`.
pub fn sign(key: &SigningKey, payload_type: &str, payload: &[u8]) -> Result<Envelope> {
    let signature = key.sign(&pae(payload_type, payload))?;
    Ok(Envelope {
        payload: STANDARD.encode(payload),
        payload_type: payload_type.to_owned(),
        signatures: vec![EnvelopeSignature {
            keyid: key.public_key().key_id(),
            sig: STANDARD.encode(signature),
        }],
    })
}

/// base64 in either alphabet, as `envelope.md` allows.
fn decode_base64(text: &str) -> Option<Vec<u8>> {
    STANDARD
        .decode(text)
        .or_else(|_| URL_SAFE.decode(text))
        .ok()
}

impl Envelope {
    /// Parses an envelope; `origin` names where it came from in errors.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<Envelope> {
        serde_json::from_slice(bytes)
            .map_err(|e| error::input(format!("{origin}: not a DSSE envelope: {e}")))
    }

    /// The payload bytes, when the payload is valid base64.
    pub fn payload_bytes(&self) -> Option<Vec<u8>> {
        decode_base64(&self.payload)
    }

    /// The payload, if one of the envelope's signatures is `key`'s (whatever its `keyid`:
    /// the spec makes it a hint only). None when no signature verifies.
    pub fn verify(&self, key: &PublicKey) -> Option<Vec<u8>> {
        let payload = self.payload_bytes()?;
        let message = pae(&self.payload_type, &payload);
        self.signatures
            .iter()
            .filter_map(|s| decode_base64(&s.sig))
            .any(|sig| key.verify(&message, &sig))
            .then_some(payload)
    }

    /// The envelope as JSON (field order fixed by the struct).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        Ok(serde_json::to_vec(self)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_is_the_spec_example() {
        // protocol.md's test vector.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
    }

    #[test]
    fn signs_and_verifies_and_binds_the_payload_type() {
        let (key, _) = SigningKey::generate().unwrap();
        let (other, _) = SigningKey::generate().unwrap();
        let statement = br#"{"_type":"https://in-toto.io/Statement/v1"}"#;
        let envelope = sign(&key, IN_TOTO_PAYLOAD_TYPE, statement).unwrap();
        assert_eq!(envelope.signatures[0].keyid, key.public_key().key_id());
        let parsed = Envelope::parse(&envelope.to_json().unwrap(), "test").unwrap();
        assert_eq!(parsed.verify(key.public_key()).unwrap(), statement);
        assert!(parsed.verify(other.public_key()).is_none());

        let mut retyped = parsed.clone();
        retyped.payload_type = "application/json".into();
        assert!(retyped.verify(key.public_key()).is_none());
        let mut altered = parsed;
        altered.payload = STANDARD.encode(br#"{"_type":"other"}"#);
        assert!(altered.verify(key.public_key()).is_none());
    }
}
