//! The sigstore "simple signing" payload that cosign signs and containers/image checks
//! (`cosign container image signature`): the manifest digest it vouches for and the repository
//! it was signed for (`docker-reference`, which containers/image policies match with
//! `signedIdentity`).

use std::fmt;
use std::str::FromStr;

use anyhow::Result;
use serde::Serialize;

use crate::digest::Sha256Digest;
use crate::error;

/// `critical.type` of every simple-signing payload.
pub const SIGNATURE_TYPE: &str = "cosign container image signature";

/// Image names are at most 255 characters (distribution's `reference` grammar).
const MAX_NAME: usize = 255;

/// The repository a signature names: `[host[:port]/]path`, no tag, no digest (cosign signs
/// repositories, as `docker-reference`; containers/image expands a name without a host to
/// `docker.io/…`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SignedRepository(String);

impl SignedRepository {
    /// The name as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SignedRepository {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for SignedRepository {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<SignedRepository> {
        let bad = |why: &str| {
            error::input(format!(
                "`{s}` is not a repository to sign for ({why}); give `host[:port]/path`, e.g. \
                 `registry.example.com/team/app`, with no tag or digest"
            ))
        };
        if s.is_empty() || s.len() > MAX_NAME {
            return Err(bad("it must have 1 to 255 characters"));
        }
        if s.contains('@') {
            return Err(bad("a signature names a repository, not a digest"));
        }
        let mut components: Vec<&str> = s.split('/').collect();
        // distribution/reference: the first component is a host when it has a `.` or a `:`,
        // or is `localhost`.
        let first = components[0];
        if components.len() > 1
            && (first.contains('.') || first.contains(':') || first == "localhost")
        {
            let (host, port) = match first.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (first, None),
            };
            let host_ok = !host.is_empty()
                && host.split('.').all(|label| {
                    !label.is_empty()
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        && !label.starts_with('-')
                        && !label.ends_with('-')
                });
            let port_ok =
                port.is_none_or(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
            if !host_ok || !port_ok {
                return Err(bad("its registry host is not a valid host[:port]"));
            }
            components.remove(0);
        }
        for component in &components {
            if component.contains(':') {
                return Err(bad("a signature names a repository, not a tag"));
            }
            if !path_component_ok(component) {
                return Err(bad(
                    "each path component is lowercase letters and digits, separated by `.`, \
                     `_`, `__` or dashes",
                ));
            }
        }
        Ok(SignedRepository(s.to_owned()))
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*` (distribution/reference `path-component`).
fn path_component_ok(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

/// What a simple-signing payload says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleSigning {
    /// `critical.image.docker-manifest-digest`.
    pub manifest_digest: Sha256Digest,
    /// `critical.identity.docker-reference`.
    pub docker_reference: String,
}

impl SimpleSigning {
    /// The payload bytes, in the field order cosign (Go's `encoding/json` over its structs)
    /// writes; `optional.creator` names airlock as containers/image names itself.
    pub fn to_json(&self) -> Vec<u8> {
        let payload = serde_json::json!({
            "critical": {
                "identity": {"docker-reference": self.docker_reference},
                "image": {"docker-manifest-digest": self.manifest_digest.to_string()},
                "type": SIGNATURE_TYPE,
            },
            "optional": {"creator": format!("airlock {}", env!("CARGO_PKG_VERSION"))},
        });
        // serde_json's map is ordered by key here (no preserve_order), which is cosign's
        // order: critical{identity, image, type}, optional.
        payload.to_string().into_bytes()
    }

    /// Parses a payload as strictly as containers/image does (`critical` with exactly
    /// `type`, `image` and `identity`; the type checked; `optional` anything or null).
    /// The error says what is wrong, for a finding.
    pub fn parse(bytes: &[u8]) -> Result<SimpleSigning, String> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
        let object = |v: &serde_json::Value, what: &str, keys: &[&str]| {
            let map = v
                .as_object()
                .ok_or_else(|| format!("`{what}` is not an object"))?;
            let mut found: Vec<&str> = map.keys().map(String::as_str).collect();
            found.sort_unstable();
            let mut wanted = keys.to_vec();
            wanted.sort_unstable();
            if found != wanted {
                return Err(format!(
                    "`{what}` has the fields {found:?}, expected exactly {wanted:?}"
                ));
            }
            Ok(map.clone())
        };
        let top = value
            .as_object()
            .ok_or_else(|| "the payload is not a JSON object".to_owned())?;
        let critical = top
            .get("critical")
            .ok_or_else(|| "the payload has no `critical`".to_owned())?;
        let critical = object(critical, "critical", &["identity", "image", "type"])?;
        if critical["type"].as_str() != Some(SIGNATURE_TYPE) {
            return Err(format!(
                "`critical.type` is {}, not `{SIGNATURE_TYPE}`",
                critical["type"]
            ));
        }
        let image = object(
            &critical["image"],
            "critical.image",
            &["docker-manifest-digest"],
        )?;
        let digest_text = image["docker-manifest-digest"]
            .as_str()
            .ok_or_else(|| "`docker-manifest-digest` is not a string".to_owned())?;
        let manifest_digest = digest_text
            .strip_prefix("sha256:")
            .ok_or_else(|| format!("`docker-manifest-digest` {digest_text} is not sha256:<hex>"))
            .and_then(|hex| {
                Sha256Digest::from_hex(hex).map_err(|e| format!("`docker-manifest-digest`: {e}"))
            })?;
        let identity = object(
            &critical["identity"],
            "critical.identity",
            &["docker-reference"],
        )?;
        let docker_reference = identity["docker-reference"]
            .as_str()
            .ok_or_else(|| "`docker-reference` is not a string".to_owned())?
            .to_owned();
        Ok(SimpleSigning {
            manifest_digest,
            docker_reference,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_cosigns_shape_and_parses_back() {
        let payload = SimpleSigning {
            manifest_digest: Sha256Digest::of(b"manifest"),
            docker_reference: "registry.example.com/team/app".into(),
        };
        let text = String::from_utf8(payload.to_json()).unwrap();
        assert!(
            text.starts_with(&format!(
                r#"{{"critical":{{"identity":{{"docker-reference":"registry.example.com/team/app"}},"image":{{"docker-manifest-digest":"{}"}},"type":"cosign container image signature"}},"optional":{{"creator":"airlock "#,
                Sha256Digest::of(b"manifest")
            )),
            "{text}"
        );
        assert_eq!(SimpleSigning::parse(text.as_bytes()).unwrap(), payload);
        // cosign writes `"optional": null`.
        let cosign =
            text.split(r#","optional""#).next().unwrap().to_owned() + r#","optional":null}"#;
        assert_eq!(SimpleSigning::parse(cosign.as_bytes()).unwrap(), payload);
    }

    #[test]
    fn payload_parsing_is_strict() {
        let digest = Sha256Digest::of(b"m");
        let with = |critical: serde_json::Value| {
            SimpleSigning::parse(
                serde_json::json!({"critical": critical, "optional": null})
                    .to_string()
                    .as_bytes(),
            )
        };
        let err = with(serde_json::json!({"identity": {"docker-reference": "a"}, "image": {"docker-manifest-digest": digest.to_string()}, "type": "other"})).unwrap_err();
        assert!(err.contains("critical.type"), "{err}");
        let err = with(serde_json::json!({"identity": {"docker-reference": "a"}, "image": {"docker-manifest-digest": digest.to_string()}, "type": SIGNATURE_TYPE, "extra": 1})).unwrap_err();
        assert!(err.contains("expected exactly"), "{err}");
        let err = with(serde_json::json!({"identity": {"docker-reference": "a"}, "image": {"docker-manifest-digest": "sha256:00"}, "type": SIGNATURE_TYPE})).unwrap_err();
        assert!(err.contains("docker-manifest-digest"), "{err}");
        assert!(SimpleSigning::parse(b"[]").is_err());
    }

    #[test]
    fn signed_repositories_follow_the_reference_grammar() {
        for good in [
            "app",
            "team/app",
            "localhost:5000/team/app",
            "registry.example.com/a.b/c__d/e---f",
            "127.0.0.1:5000/app",
        ] {
            assert_eq!(good.parse::<SignedRepository>().unwrap().as_str(), good);
        }
        for (bad, why) in [
            ("", "1 to 255"),
            ("app:1.0", "not a tag"),
            ("localhost:5000/app:1.0", "not a tag"),
            ("app@sha256:00", "not a digest"),
            ("Team/app", "lowercase"),
            ("team//app", "lowercase"),
            ("host:port/app", "host[:port]"),
            ("team/app-", "lowercase"),
        ] {
            let err = bad.parse::<SignedRepository>().unwrap_err().to_string();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
