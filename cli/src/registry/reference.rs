//! Registry references: `REGISTRY/REPOSITORY[:TAG][@DIGEST]`, checked against the
//! distribution spec's grammar (distribution-spec `spec.md`, "Pulling manifests": `<name>` and
//! `<reference>`), so a name the registry would refuse is an input error before any request.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use anyhow::Result;

use crate::digest::Sha256Digest;
use crate::error;
use crate::oci::layout::validate_tag;

/// Docker Hub's name in references, and the host its API is served from.
const DOCKER_HUB: &str = "docker.io";
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Clients limit `host[:port]/name` to 255 characters (distribution-spec, implementer note
/// under "Pulling manifests").
const MAX_NAME_LENGTH: usize = 255;

/// Where to push: a registry host, a repository in it, and a tag and/or digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `host[:port]`, lowercase (`docker.io` for Docker Hub).
    pub registry: String,
    /// The repository (`<name>` in the spec), e.g. `owner/app`.
    pub repository: String,
    /// The tag, if given.
    pub tag: Option<String>,
    /// The digest, if given (`@sha256:…`).
    pub digest: Option<Sha256Digest>,
}

impl Reference {
    /// The host the API is served from (Docker Hub's differs from its name).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// `registry/repository@digest`: the reference that pins what was pushed.
    pub fn pinned(&self, digest: &Sha256Digest) -> String {
        format!("{}@{digest}", self.name())
    }

    /// Whether the registry is on this machine (`localhost`, `127.0.0.0/8`, `[::1]`), where
    /// plain HTTP is allowed without `--insecure`.
    pub fn is_loopback(&self) -> bool {
        is_loopback_host(host_without_port(&self.registry))
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        let bad =
            |why: String| error::input(format!("`{s}` is not a valid registry reference: {why}"));
        let (rest, digest) = match s.rsplit_once('@') {
            Some((rest, digest)) => {
                let digest: Sha256Digest = digest
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("the digest must be sha256:<64 hex digits>".to_owned()))
                    .and_then(|_| digest.parse().map_err(|e| bad(format!("{e}"))))?;
                (rest, Some(digest))
            }
            None => (s, None),
        };
        let Some((registry, path)) = rest.split_once('/') else {
            return Err(bad(format!(
                "it names no registry; write REGISTRY/REPOSITORY, e.g. ghcr.io/{rest} or \
                 docker.io/library/{rest}"
            )));
        };
        if !looks_like_registry(registry) {
            return Err(bad(format!(
                "`{registry}` is not a registry host; write REGISTRY/REPOSITORY, e.g. \
                 ghcr.io/{rest} or docker.io/{rest}"
            )));
        }
        check_registry(registry).map_err(bad)?;
        let last_slash = path.rfind('/').map_or(0, |i| i + 1);
        let (repository, tag) = match path[last_slash..].rfind(':') {
            Some(i) => (&path[..last_slash + i], Some(&path[last_slash + i + 1..])),
            None => (path, None),
        };
        check_repository(repository).map_err(bad)?;
        if let Some(tag) = tag {
            validate_tag(tag)?;
        }
        let registry = registry.to_ascii_lowercase();
        if registry.len() + 1 + repository.len() > MAX_NAME_LENGTH {
            return Err(bad(format!(
                "`{registry}/{repository}` is longer than {MAX_NAME_LENGTH} characters"
            )));
        }
        Ok(Reference {
            registry,
            repository: repository.to_owned(),
            tag: tag.map(str::to_owned),
            digest,
        })
    }
}

/// Docker's rule for the first path component: a registry if it has a dot or a port, or is
/// `localhost` (otherwise `owner/app` would silently mean Docker Hub).
fn looks_like_registry(component: &str) -> bool {
    component.contains('.')
        || component.contains(':')
        || component.eq_ignore_ascii_case("localhost")
}

/// `host[:port]`: DNS labels or an IPv4 address, or a bracketed IPv6 address.
fn check_registry(registry: &str) -> Result<(), String> {
    let (host, port) = if let Some(bracketed) = registry.strip_prefix('[') {
        let Some((v6, after)) = bracketed.split_once(']') else {
            return Err(format!("`{registry}`: unclosed `[` in the registry host"));
        };
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`[{v6}]` is not an IPv6 address"));
        }
        match after {
            "" => (registry, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (&registry[..registry.len() - after.len()], Some(port)),
                None => return Err(format!("`{registry}`: expected `:PORT` after `]`")),
            },
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || port.len() > 5 || port.parse::<u16>().is_err())
    {
        return Err(format!("`{port}` is not a port number"));
    }
    if host.starts_with('[') {
        return Ok(());
    }
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.is_empty() || !host.split('.').all(label_ok) {
        return Err(format!(
            "`{host}` is not a host name: use letters, digits, `-` and `.`"
        ));
    }
    Ok(())
}

/// `<name>`: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
fn check_repository(repository: &str) -> Result<(), String> {
    const RULE: &str = "each `/`-separated part must be lowercase letters and digits, \
                        joined by `.`, `_`, `__` or dashes";
    if repository.is_empty() {
        return Err("the repository name is empty".to_owned());
    }
    if repository.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!(
            "repository `{repository}` has uppercase letters; repository names must be \
             lowercase"
        ));
    }
    for component in repository.split('/') {
        if !is_path_component(component) {
            return Err(format!(
                "repository `{repository}` is not allowed by the distribution spec: part \
                 `{component}` breaks the rule ({RULE})"
            ));
        }
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let mut i = 0;
    while i < bytes.len() {
        if !alnum(bytes[i]) {
            return false;
        }
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == bytes.len() {
            return true;
        }
        let separator_start = i;
        match bytes[i] {
            b'.' => i += 1,
            b'_' => {
                i += 1;
                if i < bytes.len() && bytes[i] == b'_' {
                    i += 1;
                }
            }
            b'-' => {
                while i < bytes.len() && bytes[i] == b'-' {
                    i += 1;
                }
            }
            _ => return false,
        }
        // A separator must be followed by an alphanumeric run.
        if i == bytes.len() || i == separator_start {
            return false;
        }
    }
    !bytes.is_empty()
}

/// The host of `host[:port]` (brackets kept for IPv6).
pub(crate) fn host_without_port(registry: &str) -> &str {
    if registry.starts_with('[') {
        registry
            .split_once(']')
            .map_or(registry, |(h, _)| &registry[..h.len() + 1])
    } else {
        registry.split_once(':').map_or(registry, |(h, _)| h)
    }
}

fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host == "[::1]"
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Reference {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e:#}"))
    }

    #[test]
    fn parses_registry_repository_tag_and_digest() {
        let r = parse("ghcr.io/owner/app:v1.2");
        assert_eq!(r.registry, "ghcr.io");
        assert_eq!(r.repository, "owner/app");
        assert_eq!(r.tag.as_deref(), Some("v1.2"));
        assert_eq!(r.digest, None);
        assert_eq!(r.to_string(), "ghcr.io/owner/app:v1.2");

        let r = parse("127.0.0.1:5000/a/b/c");
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "a/b/c");
        assert_eq!(r.tag, None);
        assert!(r.is_loopback());

        let digest = Sha256Digest::of(b"x");
        let r = parse(&format!("localhost:5000/app:latest@{digest}"));
        assert_eq!(r.tag.as_deref(), Some("latest"));
        assert_eq!(r.digest, Some(digest));
        assert_eq!(r.pinned(&digest), format!("localhost:5000/app@{digest}"));
        assert!(r.is_loopback());

        let r = parse("[::1]:5000/app");
        assert_eq!(r.registry, "[::1]:5000");
        assert!(r.is_loopback());
        assert!(!parse("registry.example.com/x").is_loopback());
        assert!(!parse("127.example.com/x").is_loopback());
        assert_eq!(parse("127.1.2.3/x").api_host(), "127.1.2.3");
        assert_eq!(
            parse("docker.io/library/alpine").api_host(),
            "registry-1.docker.io"
        );
        assert_eq!(
            parse("Registry.Example.COM/x").registry,
            "registry.example.com"
        );
    }

    #[test]
    fn accepts_every_separator_the_grammar_allows() {
        for ok in [
            "a", "a.b", "a_b", "a__b", "a-b", "a---b", "a0/b1.c2", "x/y/z",
        ] {
            assert!(
                format!("r.io/{ok}").parse::<Reference>().is_ok(),
                "{ok} should be accepted"
            );
        }
    }

    #[test]
    fn rejects_names_the_spec_forbids() {
        for (bad, says) in [
            ("app", "names no registry"),
            ("owner/app", "is not a registry host"),
            ("r.io/", "empty"),
            ("r.io/App", "lowercase"),
            ("r.io/a..b", "breaks the rule"),
            ("r.io/a___b", "breaks the rule"),
            ("r.io/-a", "breaks the rule"),
            ("r.io/a-", "breaks the rule"),
            ("r.io/a//b", "breaks the rule"),
            ("r.io/a/", "breaks the rule"),
            ("r.io/a b", "breaks the rule"),
            ("r.io/a:bad tag", "not a valid tag"),
            ("r.io/a:", "not a valid tag"),
            ("r.io/a@sha256:00", "sha256"),
            ("r.io/a@md5:00", "sha256"),
            ("r.io:99999/a", "port"),
            ("r_x.io/a", "host name"),
            ("[::g]:5000/a", "IPv6"),
        ] {
            let err = bad.parse::<Reference>().unwrap_err();
            assert_eq!(
                crate::error::exit_kind(&err),
                crate::error::ExitKind::Input,
                "{bad}"
            );
            assert!(format!("{err:#}").contains(says), "{bad}: {err:#}");
        }
        let long = format!("r.io/{}", "a".repeat(251));
        assert!(long.parse::<Reference>().is_err());
        assert!(
            format!("r.io/{}", "a".repeat(250))
                .parse::<Reference>()
                .is_ok()
        );
    }
}
