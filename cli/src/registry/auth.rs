//! Registry credentials and the `WWW-Authenticate` challenge.
//!
//! Where credentials come from, first match wins:
//! 1. `--username` with `--password-stdin` (given to [`resolve_credential`] as `explicit`);
//! 2. `AIRLOCK_REGISTRY_USERNAME` and `AIRLOCK_REGISTRY_PASSWORD`;
//! 3. the Docker config file (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`):
//!    `credHelpers[registry]`, else `credsStore`, by running `docker-credential-<name> get`
//!    as Docker does; then an `auths[registry]` entry (`auth`, `username`/`password`,
//!    `identitytoken`).
//!
//! Secrets live in [`Secret`], whose `Debug` prints nothing of them and which has no
//! `Display`: no error, log line or report can carry one by accident.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use base64::Engine;
use serde::Deserialize;

use crate::error;
use crate::registry::reference::Reference;

/// Environment variables for credentials (source 2).
pub const USERNAME_ENV: &str = "AIRLOCK_REGISTRY_USERNAME";
/// See [`USERNAME_ENV`].
pub const PASSWORD_ENV: &str = "AIRLOCK_REGISTRY_PASSWORD";

/// The key Docker uses for Docker Hub in `auths` and with credential helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A password, token or helper secret: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// What authenticates us to a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A user name and password (or a registry token used as a password).
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// An OAuth2 refresh token (Docker's `identitytoken`, or a helper's `<token>` user),
    /// exchanged at the token endpoint.
    IdentityToken(Secret),
}

impl Credential {
    /// `Authorization: Basic …` for this credential (an identity token has none).
    pub fn basic_header(&self) -> Option<Secret> {
        match self {
            Credential::Basic { username, password } => Some(Secret(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose()))
            ))),
            Credential::IdentityToken(_) => None,
        }
    }
}

/// A credential and where it was found (named in errors, never the secret).
#[derive(Debug, Clone)]
pub struct ResolvedCredential {
    /// The credential.
    pub credential: Credential,
    /// Where it came from, e.g. `AIRLOCK_REGISTRY_USERNAME/PASSWORD` or
    /// `docker-credential-pass (credsStore in ~/.docker/config.json)`.
    pub source: String,
}

/// Finds the credential for `reference`'s registry (see the module doc for the order).
/// `None` means anonymous.
pub fn resolve_credential(
    reference: &Reference,
    explicit: Option<Credential>,
) -> Result<Option<ResolvedCredential>> {
    if let Some(credential) = explicit {
        return Ok(Some(ResolvedCredential {
            credential,
            source: "--username and --password-stdin".to_owned(),
        }));
    }
    if let Some(resolved) = from_environment()? {
        return Ok(Some(resolved));
    }
    let Some(path) = docker_config_path() else {
        return Ok(None);
    };
    from_docker_config(&path, reference)
}

fn from_environment() -> Result<Option<ResolvedCredential>> {
    let username = std::env::var(USERNAME_ENV).ok().filter(|v| !v.is_empty());
    let password = std::env::var(PASSWORD_ENV).ok().filter(|v| !v.is_empty());
    match (username, password) {
        (Some(username), Some(password)) => Ok(Some(ResolvedCredential {
            credential: Credential::Basic {
                username,
                password: Secret(password),
            },
            source: format!("{USERNAME_ENV}/{PASSWORD_ENV}"),
        })),
        (None, None) => Ok(None),
        (Some(_), None) => Err(error::input(format!(
            "{USERNAME_ENV} is set but {PASSWORD_ENV} is not; set both or neither"
        ))),
        (None, Some(_)) => Err(error::input(format!(
            "{PASSWORD_ENV} is set but {USERNAME_ENV} is not; set both or neither"
        ))),
    }
}

/// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
pub fn docker_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".docker").join("config.json"))
}

/// The parts of Docker's `config.json` that hold credentials.
#[derive(Deserialize, Default)]
struct DockerConfig {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(Deserialize, Default)]
struct AuthEntry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
    identitytoken: Option<String>,
}

fn from_docker_config(path: &Path, reference: &Reference) -> Result<Option<ResolvedCredential>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(error::input(format!("cannot read {}: {e}", path.display()))),
    };
    // serde_json's messages can quote values; name only the position, never the content.
    let config: DockerConfig = serde_json::from_str(&text).map_err(|e| {
        error::input(format!(
            "{}: not a valid Docker config file ({:?} error at line {}, column {})",
            path.display(),
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let keys = registry_keys(reference);
    let helper = keys
        .iter()
        .find_map(|key| {
            config
                .cred_helpers
                .iter()
                .find(|(k, _)| normalize_key(k) == *key)
                .map(|(_, helper)| (helper.clone(), "credHelpers"))
        })
        .or_else(|| {
            config
                .creds_store
                .clone()
                .filter(|s| !s.is_empty())
                .map(|s| (s, "credsStore"))
        });
    if let Some((helper, field)) = helper {
        let server = helper_server_url(reference);
        let source = format!("docker-credential-{helper} ({field} in {})", path.display());
        if let Some(credential) = run_credential_helper(&helper, &server, &source)? {
            return Ok(Some(ResolvedCredential { credential, source }));
        }
    }
    for key in &keys {
        let entry = config
            .auths
            .iter()
            .find(|(k, _)| normalize_key(k) == *key)
            .map(|(_, entry)| entry);
        if let Some(entry) = entry {
            let source = format!("auths[\"{key}\"] in {}", path.display());
            if let Some(credential) = auth_entry_credential(entry, &source)? {
                return Ok(Some(ResolvedCredential { credential, source }));
            }
        }
    }
    Ok(None)
}

/// The `auths`/`credHelpers` keys that name this registry, normalized by [`normalize_key`].
fn registry_keys(reference: &Reference) -> Vec<String> {
    if reference.registry == "docker.io" {
        ["index.docker.io", "docker.io", "registry-1.docker.io"]
            .map(str::to_owned)
            .to_vec()
    } else {
        vec![reference.registry.clone()]
    }
}

/// `https://host:port/v1/` and `host:port` name the same registry.
fn normalize_key(key: &str) -> String {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    rest.split('/').next().unwrap_or(rest).to_ascii_lowercase()
}

/// The server URL Docker gives credential helpers: the registry host, or Docker Hub's key.
fn helper_server_url(reference: &Reference) -> String {
    if reference.registry == "docker.io" {
        DOCKER_HUB_KEY.to_owned()
    } else {
        reference.registry.clone()
    }
}

fn auth_entry_credential(entry: &AuthEntry, source: &str) -> Result<Option<Credential>> {
    if let Some(token) = entry.identitytoken.as_deref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credential::IdentityToken(Secret::new(token))));
    }
    if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                error::input(format!("{source}: `auth` is not base64 of user:password"))
            })?;
        let (username, password) = decoded.split_once(':').ok_or_else(|| {
            error::input(format!("{source}: `auth` is not base64 of user:password"))
        })?;
        return Ok(Some(Credential::Basic {
            username: username.to_owned(),
            password: Secret::new(password),
        }));
    }
    match (&entry.username, &entry.password) {
        (Some(username), Some(password)) if !username.is_empty() => Ok(Some(Credential::Basic {
            username: username.clone(),
            password: Secret::new(password.clone()),
        })),
        _ => Ok(None),
    }
}

#[derive(Deserialize)]
struct HelperOutput {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Runs `docker-credential-<helper> get` with the server URL on stdin (the protocol of
/// docker/docker-credential-helpers). `None` when the helper has no credentials for it.
fn run_credential_helper(helper: &str, server: &str, source: &str) -> Result<Option<Credential>> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                error::environment(format!(
                    "credential helper `{program}` is not installed (named by {source}); \
                     install it or remove it from the Docker config, or pass --username \
                     with --password-stdin"
                ))
            } else {
                error::environment(format!("cannot run `{program}`: {e}"))
            }
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is reported by its exit status below.
        let _ = stdin.write_all(server.as_bytes());
    }
    let output = child
        .wait_with_output()
        .with_context(|| format!("cannot run `{program}`"))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stdout).to_string()
            + &String::from_utf8_lossy(&output.stderr);
        if said.to_ascii_lowercase().contains("credentials not found") {
            return Ok(None);
        }
        let said: String = said.trim().chars().take(300).collect();
        return Err(error::environment(format!(
            "`{program} get` failed for {server} ({}): {said}",
            output.status
        )));
    }
    let parsed: HelperOutput = serde_json::from_slice(&output.stdout).map_err(|_| {
        error::environment(format!(
            "`{program} get` printed something that is not the credential helper JSON \
             ({{\"Username\": …, \"Secret\": …}})"
        ))
    })?;
    if parsed.secret.is_empty() {
        return Ok(None);
    }
    // Helpers return the user `<token>` for an identity (refresh) token.
    Ok(Some(if parsed.username == "<token>" {
        Credential::IdentityToken(Secret(parsed.secret))
    } else {
        Credential::Basic {
            username: parsed.username,
            password: Secret(parsed.secret),
        }
    }))
}

/// One challenge of a `WWW-Authenticate` header (RFC 9110 §11.6.1): a scheme and its
/// parameters, e.g. `Bearer realm="https://auth.example/token",service="registry"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lowercase: `basic` or `bearer`.
    pub scheme: String,
    /// The parameters, names lowercase.
    pub params: BTreeMap<String, String>,
}

impl Challenge {
    /// A parameter by (lowercase) name.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }
}

/// Parses every challenge in a `WWW-Authenticate` value. Commas separate both parameters and
/// challenges; a token not followed by `=` starts a new challenge.
pub fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut challenges: Vec<Challenge> = Vec::new();
    let mut chars = header.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
            chars.next();
        }
        let token: String =
            std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace() && *c != ',' && *c != '='))
                .collect();
        if token.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() == Some(&'=') {
            chars.next();
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            let value = if chars.peek() == Some(&'"') {
                chars.next();
                let mut value = String::new();
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => value.extend(chars.next()),
                        c => value.push(c),
                    }
                }
                value
            } else {
                std::iter::from_fn(|| chars.next_if(|c| *c != ',' && !c.is_whitespace())).collect()
            };
            if let Some(current) = challenges.last_mut() {
                current.params.insert(token.to_ascii_lowercase(), value);
            }
        } else {
            challenges.push(Challenge {
                scheme: token.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
        }
    }
    challenges
}

/// The token endpoint's answer (distribution `docs/spec/auth/token.md`): `token`, or the
/// OAuth2 `access_token`.
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    token: Option<String>,
    access_token: Option<String>,
}

impl TokenResponse {
    pub(crate) fn into_secret(self) -> Option<Secret> {
        self.token
            .or(self.access_token)
            .filter(|t| !t.is_empty())
            .map(Secret)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_and_basic_challenges() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:samalba/my-app:pull,push",error="insufficient_scope""#,
        );
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.docker.io/token"));
        assert_eq!(c[0].param("service"), Some("registry.docker.io"));
        assert_eq!(
            c[0].param("scope"),
            Some("repository:samalba/my-app:pull,push")
        );
        assert_eq!(c[0].param("error"), Some("insufficient_scope"));

        let c = parse_challenges(r#"Basic realm="basic-realm", Bearer realm=x, service = "a\"b""#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].scheme, "basic");
        assert_eq!(c[0].param("realm"), Some("basic-realm"));
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].param("realm"), Some("x"));
        assert_eq!(c[1].param("service"), Some("a\"b"));
        assert!(parse_challenges("").is_empty());
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let credential = Credential::Basic {
            username: "alice".into(),
            password: Secret::new("hunter2"),
        };
        let shown = format!("{credential:?} {:?}", credential.basic_header());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("aHVudGVy"), "{shown}");
        assert_eq!(
            credential.basic_header().unwrap().expose(),
            "Basic YWxpY2U6aHVudGVyMg=="
        );
    }

    #[test]
    fn reads_docker_config_auths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths": {
                "https://index.docker.io/v1/": {"auth": "dTE6cDE="},
                "https://ghcr.io": {"username": "u2", "password": "p2"},
                "registry.example.com:5000": {"identitytoken": "refresh"},
                "empty.example.com": {}
            }}"#,
        )
        .unwrap();
        let find = |r: &str| from_docker_config(&path, &r.parse().unwrap()).unwrap();
        let hub = find("docker.io/library/x").unwrap();
        assert_eq!(
            hub.credential,
            Credential::Basic {
                username: "u1".into(),
                password: Secret::new("p1")
            }
        );
        assert!(hub.source.contains("index.docker.io"), "{}", hub.source);
        assert!(matches!(
            find("ghcr.io/o/x").unwrap().credential,
            Credential::Basic { username, .. } if username == "u2"
        ));
        assert_eq!(
            find("registry.example.com:5000/x").unwrap().credential,
            Credential::IdentityToken(Secret::new("refresh"))
        );
        assert!(find("empty.example.com/x").is_none());
        assert!(find("other.example.com/x").is_none());

        std::fs::write(
            &path,
            r#"{"auths": {"r.io": {"auth": "secret-not-base64!"}}}"#,
        )
        .unwrap();
        let err = from_docker_config(&path, &"r.io/x".parse().unwrap()).unwrap_err();
        assert!(!format!("{err:#}").contains("secret-not"), "{err:#}");
        std::fs::write(&path, r#"{"auths": "hunter2"}"#).unwrap();
        let err = from_docker_config(&path, &"r.io/x".parse().unwrap()).unwrap_err();
        assert!(!format!("{err:#}").contains("hunter2"), "{err:#}");
    }

    #[test]
    fn normalizes_config_keys() {
        assert_eq!(
            normalize_key("https://Index.Docker.io/v1/"),
            "index.docker.io"
        );
        assert_eq!(normalize_key("http://localhost:5000"), "localhost:5000");
        assert_eq!(normalize_key("ghcr.io"), "ghcr.io");
    }
}
