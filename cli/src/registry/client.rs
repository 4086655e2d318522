//! One authenticated HTTP session with a registry: TLS roots, the choice of scheme, the
//! `WWW-Authenticate` dance (Basic, or Bearer tokens scoped to one repository), and retries
//! with backoff on what passes: 5xx, 429 (honouring `Retry-After`) and dropped connections.
//!
//! Plain HTTP is used only for loopback registries or with `--insecure`, and only after HTTPS
//! failed once connected. Credentials go to the registry's own origin and to the token realm
//! that a challenge from that origin names, over TLS unless the registry itself is plain HTTP;
//! a challenge from any other host (an upload location elsewhere) is refused, never answered.
//!
//! Timeouts measure silence, not total time: connecting (TLS included) gets a few seconds, and
//! every read or write may wait as long as `--timeout` for progress, so a large blob that keeps
//! moving is never cut while a registry that stops answering is given up on in seconds.

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use ureq::http::{self, HeaderMap, Method};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::error;
use crate::input::{self, Links};
use crate::progress;
use crate::registry::auth::{self, Challenge, Credential, ResolvedCredential, Secret};
use crate::registry::reference::Reference;

/// Test and CI knob: the first retry's delay in milliseconds (default 500), so fault tests do
/// not wait for real backoff. `Retry-After` from the registry is honoured regardless.
pub const RETRY_BASE_ENV: &str = "AIRLOCK_RETRY_BASE_MS";

/// How long a registry may stay silent, in seconds, when `--timeout` is not given.
pub const TIMEOUT_ENV: &str = "AIRLOCK_REGISTRY_TIMEOUT";
/// The default of [`ClientOptions::timeout`]: a registry that sends or takes nothing for a
/// minute has stopped; a slow one still moves bytes within that.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// The most a TCP connect plus TLS handshake may take: a registry that is up answers in well
/// under a second, and a dropped SYN should not cost a minute.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeouts in a row, with no answer from the registry in between, after which a push stops
/// instead of retrying: the registry has stopped answering, and each further try costs a
/// whole `--timeout`.
const SILENT_LIMIT: u32 = 2;

/// Longest wait between attempts that airlock computes itself.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest `Retry-After` airlock waits for; a registry asking for more fails the push.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);
/// Error and token bodies are small; anything bigger is cut.
const MAX_SMALL_BODY: u64 = 1 << 20;

/// Where system CA bundles live (Debian/Ubuntu, Fedora/RHEL, openSUSE, Alpine/macOS).
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Allow plain HTTP and skip certificate verification for any registry.
    pub insecure: bool,
    /// Extra PEM CA certificates to trust (added to the system bundle).
    pub ca_certs: Vec<PathBuf>,
    /// Retries after the first attempt of each request.
    pub retries: u32,
    /// Delay before the first retry; doubled after each.
    pub retry_base: Duration,
    /// How long any read or write may make no progress (and the most a connection may take,
    /// up to 10 s) before the registry counts as not answering.
    pub timeout: Duration,
}

impl ClientOptions {
    /// What `push` uses without flags: TLS verified with the system's roots, 5 retries, and
    /// the timeout [`TIMEOUT_ENV`] says, else [`DEFAULT_TIMEOUT`].
    pub fn standard() -> ClientOptions {
        let timeout = std::env::var(TIMEOUT_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        ClientOptions {
            insecure: false,
            ca_certs: Vec::new(),
            retries: 5,
            retry_base: ClientOptions::default_retry_base(),
            timeout,
        }
    }

    /// The default first-retry delay: 500 ms, or [`RETRY_BASE_ENV`] when set.
    pub fn default_retry_base() -> Duration {
        std::env::var(RETRY_BASE_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(Duration::from_millis(500), Duration::from_millis)
    }
}

/// A request body that can be sent again on retry.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Body<'a> {
    Empty,
    Bytes(&'a [u8]),
    /// `len` bytes of a file from `offset`.
    File {
        path: &'a Path,
        offset: u64,
        len: u64,
    },
}

/// A request to the registry or to a location it gave.
pub(crate) struct Request<'a> {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body<'a>,
    /// The most bytes of the answer's body kept (default: [`MAX_SMALL_BODY`]).
    pub limit: u64,
}

impl<'a> Request<'a> {
    pub fn new(method: Method, url: impl Into<String>) -> Request<'a> {
        Request {
            method,
            url: url.into(),
            headers: Vec::new(),
            body: Body::Empty,
            limit: MAX_SMALL_BODY,
        }
    }

    /// Keeps up to `limit` bytes of the answer's body (a manifest is larger than an error).
    pub fn limit(mut self, limit: u64) -> Request<'a> {
        self.limit = limit;
        self
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Request<'a> {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: Body<'a>) -> Request<'a> {
        self.body = body;
        self
    }
}

/// A registry's answer: status, headers, and a small body (errors, tokens).
#[derive(Debug)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The registry's error, from its JSON body (`{"errors":[{"code","message"}]}`,
    /// distribution-spec "Error Codes") or the status line.
    pub fn describe(&self) -> String {
        let status = format!(
            "{} {}",
            self.status,
            http::StatusCode::from_u16(self.status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("")
        );
        #[derive(serde::Deserialize)]
        struct Errors {
            errors: Vec<ErrorEntry>,
        }
        #[derive(serde::Deserialize)]
        struct ErrorEntry {
            code: Option<String>,
            message: Option<String>,
        }
        if let Ok(parsed) = serde_json::from_slice::<Errors>(&self.body)
            && !parsed.errors.is_empty()
        {
            let details: Vec<String> = parsed
                .errors
                .iter()
                .map(|e| {
                    format!(
                        "{}: {}",
                        e.code.as_deref().unwrap_or("ERROR"),
                        e.message.as_deref().unwrap_or("")
                    )
                })
                .collect();
            return format!("{status} ({})", details.join("; "));
        }
        let text: String = String::from_utf8_lossy(&self.body)
            .chars()
            .filter(|c| !c.is_control() || *c == ' ')
            .take(200)
            .collect();
        if text.trim().is_empty() {
            status
        } else {
            format!("{status} ({})", text.trim())
        }
    }
}

/// Why an attempt failed: worth another try, or not.
#[derive(Debug)]
pub(crate) enum Failure {
    /// 5xx, 429, a dropped or refused connection: try again after a delay.
    Transient {
        message: String,
        retry_after: Option<Duration>,
    },
    /// The registry accepted the connection, or the request, and then sent nothing for a
    /// whole `--timeout`: tried again only while the registry still answers other requests.
    TimedOut(String),
    /// Anything else: give up now.
    Fatal(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Failure {
        Failure::Fatal(err)
    }
}

impl Failure {
    pub fn transient(message: impl Into<String>) -> Failure {
        Failure::Transient {
            message: message.into(),
            retry_after: None,
        }
    }
}

/// What a session may do with its repository: the scope of the tokens it asks for
/// (distribution `docs/spec/auth/scope.md`) and what its errors say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// `repository:<name>:pull`.
    Pull,
    /// `repository:<name>:pull,push`.
    Push,
}

impl Access {
    fn actions(self) -> &'static str {
        match self {
            Access::Pull => "pull",
            Access::Push => "pull,push",
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Access::Pull => "pull from",
            Access::Push => "push to",
        }
    }
}

/// Reads a successful answer's body as it streams in (a blob), instead of keeping it.
pub(crate) type Sink<'s> = dyn FnMut(&mut dyn Read) -> Result<(), Failure> + 's;

/// An authenticated session with one repository of one registry.
pub(crate) struct Session {
    agent: ureq::Agent,
    /// `https://host[:port]` or `http://host[:port]`.
    base: String,
    registry: String,
    repository: String,
    credential: Option<ResolvedCredential>,
    /// The `Authorization` value in use.
    authorization: Mutex<Option<Secret>>,
    retries: u32,
    retry_base: Duration,
    retried: AtomicU32,
    timeout: Duration,
    /// Requests that timed out since the registry last answered one.
    silent: AtomicU32,
    access: Access,
}

impl Session {
    /// Chooses the scheme, checks that the host serves the registry API (`GET /v2/`), and
    /// authenticates for pushing to `reference`'s repository.
    pub fn connect(
        reference: &Reference,
        credential: Option<ResolvedCredential>,
        options: &ClientOptions,
    ) -> Result<Session> {
        Session::connect_for(reference, credential, options, Access::Push)
    }

    /// [`Session::connect`] for `access` to the repository.
    pub fn connect_for(
        reference: &Reference,
        credential: Option<ResolvedCredential>,
        options: &ClientOptions,
        access: Access,
    ) -> Result<Session> {
        let agent = build_agent(options)?;
        let host = reference.api_host().to_owned();
        let plain_allowed = options.insecure || reference.is_loopback();
        let mut session = Session {
            agent,
            base: format!("https://{host}"),
            registry: reference.registry.clone(),
            repository: reference.repository.clone(),
            credential,
            authorization: Mutex::new(None),
            retries: options.retries,
            retry_base: options.retry_base,
            retried: AtomicU32::new(0),
            timeout: options.timeout,
            // A registry that never answered has no answer to fall back on: no retry of a
            // timeout before the first response.
            silent: AtomicU32::new(SILENT_LIMIT),
            access,
        };
        let scheme = session.retrying(&format!("connect to {}", reference.registry), |_| {
            session.choose_scheme(&host, plain_allowed)
        })?;
        session.base = format!("{scheme}://{host}");
        session.ping()?;
        Ok(session)
    }

    /// `https`, or `http` when plain HTTP is allowed and HTTPS fails once connected (a plain
    /// HTTP server answers a TLS handshake with garbage, by hanging up, or not at all) while
    /// HTTP works.
    fn choose_scheme(&self, host: &str, plain_allowed: bool) -> Result<&'static str, Failure> {
        // A registry answers `/v2/` with 200 or 401; a TLS server asked in plain HTTP says 400.
        let probe = |scheme: &str| {
            self.agent
                .get(format!("{scheme}://{host}/v2/"))
                .call()
                .map(|r| matches!(r.status().as_u16(), 200 | 401))
        };
        let https_error = match probe("https") {
            Ok(_) => return Ok("https"),
            Err(e) => e,
        };
        let connected = !matches!(
            &https_error,
            ureq::Error::HostNotFound | ureq::Error::ConnectionFailed
        ) && !matches!(&https_error, ureq::Error::Io(io)
            if io.kind() == std::io::ErrorKind::ConnectionRefused);
        if plain_allowed && connected {
            match probe("http") {
                Ok(true) => return Ok("http"),
                // The host took the connection and then said nothing: that is the answer,
                // whatever HTTPS said before (a TLS error there only shows it is not HTTPS).
                Err(e) if is_timeout(&e) => {
                    return Err(Failure::Fatal(error::environment(format!(
                        "{} did not answer: it accepted a connection but sent no reply to a \
                         plain HTTP request within {} s (and HTTPS {}); check that a registry \
                         is running there, or give it longer with --timeout SECS",
                        self.registry,
                        self.timeout.as_secs_f64(),
                        self.https_summary(&https_error)
                    ))));
                }
                _ => {}
            }
        }
        if is_timeout(&https_error) {
            return Err(Failure::Fatal(error::environment(format!(
                "{} did not answer: HTTPS {}; check that a registry is running there and \
                 that nothing in between drops the traffic, or give it longer with --timeout \
                 SECS",
                self.registry,
                self.https_summary(&https_error)
            ))));
        }
        match transport_failure(&https_error, &self.registry, self.timeout) {
            Failure::Fatal(err) if is_tls_error(&https_error) && !plain_allowed => {
                Err(Failure::Fatal(err.context(
                    "plain HTTP is allowed only for localhost, 127.0.0.0/8 and [::1], or with \
                     --insecure",
                )))
            }
            other => Err(other),
        }
    }

    /// What the HTTPS probe met, for an error that is about something else.
    fn https_summary(&self, err: &ureq::Error) -> String {
        match err {
            ureq::Error::Timeout(ureq::Timeout::Connect) => format!(
                "got no connection and TLS handshake within {} s",
                connect_timeout(self.timeout).as_secs_f64()
            ),
            ureq::Error::Timeout(_) => {
                format!("got no reply within {} s", self.timeout.as_secs_f64())
            }
            e => format!("failed: {e}"),
        }
    }

    /// `GET /v2/`: the registry API is there, and our credentials (if any) work.
    fn ping(&self) -> Result<()> {
        let url = format!("{}/v2/", self.base);
        let response = self.retrying(&format!("connect to {}", self.registry), |_| {
            self.send(&Request::new(Method::GET, url.clone()))
        })?;
        match response.status {
            200..=299 => Ok(()),
            404 => Err(error::input(format!(
                "{} does not serve the OCI distribution API (GET {url} answered {})",
                self.registry,
                response.describe()
            ))),
            _ => Err(error::environment(format!(
                "{}: GET {url} answered {}",
                self.registry,
                response.describe()
            ))),
        }
    }

    /// Retries of each request from now on (the connection may have been tried with fewer).
    pub fn set_retries(&mut self, retries: u32) {
        self.retries = retries;
    }

    /// The repository pushed to.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// `/v2/<repository>/<rest>`.
    pub fn repo_url(&self, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.base, self.repository)
    }

    /// Resolves a `Location` header, absolute or relative to the registry.
    pub fn resolve_location(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            format!("{}/{location}", self.base)
        }
    }

    /// How many attempts were retries, over the whole session.
    pub fn retried(&self) -> u32 {
        self.retried.load(Ordering::Relaxed)
    }

    /// Sends `request`, authenticating when the registry challenges (once per request).
    /// 5xx, 429 and transport errors are [`Failure::Transient`]; other statuses are returned.
    /// A challenge from another origin than the registry's is an error: answering it would
    /// hand our credentials to a host the user never named.
    pub fn send(&self, request: &Request<'_>) -> Result<Response, Failure> {
        self.send_to(request, None)
    }

    /// [`Session::send`], with a successful answer's body streamed into `sink` rather than
    /// kept (a blob being pulled).
    pub fn send_to(
        &self,
        request: &Request<'_>,
        mut sink: Option<&mut Sink<'_>>,
    ) -> Result<Response, Failure> {
        let response = self.send_raw(request, sink.as_deref_mut())?;
        if response.status != 401 {
            return classify(response);
        }
        if !self.is_registry_origin(&request.url) {
            return Err(Failure::Fatal(self.foreign_challenge(request, &response)));
        }
        let sent_authorization = self.current_authorization().is_some();
        self.authenticate(&response, sent_authorization)?;
        let response = self.send_raw(request, sink)?;
        if response.status == 401 {
            return Err(Failure::Fatal(self.refused(&response)));
        }
        classify(response)
    }

    /// Whether `url` is on the registry's own origin (scheme, host and port, RFC 6454).
    fn is_registry_origin(&self, url: &str) -> bool {
        match (origin(url), origin(&self.base)) {
            (Some(theirs), Some(ours)) => theirs == ours,
            _ => false,
        }
    }

    /// The error for a 401 from a host other than the registry (an upload location it gave).
    fn foreign_challenge(&self, request: &Request<'_>, response: &Response) -> anyhow::Error {
        let host = origin(&request.url)
            .map_or_else(|| strip_query(&request.url).to_owned(), |o| o.to_string());
        error::environment(format!(
            "{host} asked for credentials ({}) on {} {}, a location {} sent for {}; airlock \
             sends credentials only to {} and to the token realm it names, never to another \
             host, so nothing was sent to {host}: the registry's upload or storage location \
             must accept the upload without them (check its configured external URL)",
            response.describe(),
            request.method,
            strip_query(&request.url),
            self.registry,
            self.repository,
            self.registry
        ))
    }

    /// [`transport_failure`], counting timeouts since the registry last answered.
    fn transport_failure(&self, err: &ureq::Error, target: &str) -> Failure {
        if is_timeout(err) {
            self.silent.fetch_add(1, Ordering::Relaxed);
        }
        transport_failure(err, target, self.timeout)
    }

    fn current_authorization(&self) -> Option<Secret> {
        self.authorization
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn send_raw(
        &self,
        request: &Request<'_>,
        sink: Option<&mut Sink<'_>>,
    ) -> Result<Response, Failure> {
        let mut builder = http::Request::builder()
            .method(request.method.clone())
            .uri(&request.url);
        for (name, value) in &request.headers {
            builder = builder.header(*name, value);
        }
        // Credentials go to the registry's own origin only.
        if self.is_registry_origin(&request.url)
            && let Some(authorization) = self.current_authorization()
        {
            builder = builder.header("Authorization", authorization.expose());
        }
        let result = match request.body {
            Body::Empty => builder
                .header("Content-Length", "0")
                .body(())
                .map(|r| self.agent.run(r)),
            Body::Bytes(bytes) => builder.body(bytes).map(|r| self.agent.run(r)),
            Body::File { path, offset, len } => {
                let mut file = open_blob(path, offset, len)?;
                let mut reader = (&mut file).take(len);
                builder
                    .header("Content-Length", len.to_string())
                    .body(ureq::SendBody::from_reader(&mut reader))
                    .map(|r| self.agent.run(r))
            }
        };
        let mut response = result
            .with_context(|| format!("cannot build a request to {}", request.url))?
            .map_err(|e| self.transport_failure(&e, &self.registry))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = match sink {
            _ if request.method == Method::HEAD => Vec::new(),
            Some(sink) if (200..300).contains(&status) => {
                // The sink bounds what it takes (a blob's descriptor size).
                sink(&mut response.body_mut().with_config().reader())?;
                Vec::new()
            }
            _ => response
                .body_mut()
                .with_config()
                .limit(request.limit)
                .read_to_vec()
                .map_err(|e| self.transport_failure(&e, &self.registry))?,
        };
        self.silent.store(0, Ordering::Relaxed);
        Ok(Response {
            status,
            headers,
            body,
        })
    }

    /// Answers a 401: Basic with our credential, or a Bearer token from the challenge's realm
    /// scoped to pulling and pushing this repository.
    fn authenticate(&self, response: &Response, sent_authorization: bool) -> Result<(), Failure> {
        let challenges: Vec<Challenge> = response
            .headers
            .get_all("www-authenticate")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(auth::parse_challenges)
            .collect();
        let bearer = challenges.iter().find(|c| c.scheme == "bearer");
        let basic = challenges.iter().find(|c| c.scheme == "basic");
        let authorization = if let Some(challenge) = bearer {
            Secret::new(format!("Bearer {}", self.fetch_token(challenge)?.expose()))
        } else if basic.is_some() {
            if sent_authorization {
                return Err(Failure::Fatal(self.refused(response)));
            }
            match self
                .credential
                .as_ref()
                .and_then(|c| c.credential.basic_header())
            {
                Some(header) => header,
                None => return Err(Failure::Fatal(self.refused(response))),
            }
        } else {
            return Err(Failure::Fatal(error::environment(format!(
                "{} answered 401 without a Basic or Bearer challenge ({})",
                self.registry,
                response.describe()
            ))));
        };
        *self.authorization.lock().unwrap_or_else(|e| e.into_inner()) = Some(authorization);
        Ok(())
    }

    /// Distribution token auth (`docs/spec/auth/token.md`, `oauth.md`): GET the realm with
    /// Basic credentials, or POST a refresh token, for `repository:<name>:pull,push`.
    fn fetch_token(&self, challenge: &Challenge) -> Result<Secret, Failure> {
        let realm = challenge.param("realm").ok_or_else(|| {
            error::environment(format!(
                "{} sent a Bearer challenge without a realm",
                self.registry
            ))
        })?;
        if !realm.starts_with("https://") && !realm.starts_with("http://") {
            return Err(Failure::Fatal(error::environment(format!(
                "{}: token realm `{realm}` is not an http(s) URL",
                self.registry
            ))));
        }
        // Credentials travel over TLS unless the registry itself is plain HTTP (loopback or
        // --insecure): an HTTPS registry naming a plain-HTTP realm would have them sent in
        // clear, and the token come back unauthenticated.
        if realm.starts_with("http://") && self.base.starts_with("https://") {
            return Err(Failure::Fatal(error::environment(format!(
                "{} is served over HTTPS but its token realm {} is plain HTTP; airlock does \
                 not send credentials or fetch tokens in clear, so nothing was sent there: \
                 the registry's auth configuration should name an https:// realm",
                self.registry,
                strip_query(realm)
            ))));
        }
        let mut scopes = vec![format!(
            "repository:{}:{}",
            self.repository,
            self.access.actions()
        )];
        if let Some(scope) = challenge.param("scope")
            && !scopes.iter().any(|s| s == scope)
        {
            scopes.push(scope.to_owned());
        }
        let service = challenge.param("service");
        let result = match self.credential.as_ref().map(|c| &c.credential) {
            Some(Credential::IdentityToken(token)) => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_owned()),
                    ("client_id", "cargo-airlock".to_owned()),
                    ("refresh_token", token.expose().to_owned()),
                    ("scope", scopes.join(" ")),
                ];
                if let Some(service) = service {
                    form.push(("service", service.to_owned()));
                }
                let body = form_urlencode(&form);
                self.agent
                    .post(realm)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .send(body.as_bytes())
            }
            other => {
                let mut request = self.agent.get(realm);
                if let Some(service) = service {
                    request = request.query("service", service);
                }
                for scope in &scopes {
                    request = request.query("scope", scope);
                }
                if let Some(header) = other.and_then(Credential::basic_header) {
                    request = request.header("Authorization", header.expose());
                }
                request.call()
            }
        };
        let mut response = result.map_err(|e| self.transport_failure(&e, realm))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_SMALL_BODY)
            .read_to_vec()
            .map_err(|e| self.transport_failure(&e, realm))?;
        let response = classify(Response {
            status,
            headers: response.headers().clone(),
            body,
        })?;
        if response.status == 401 || response.status == 403 {
            return Err(Failure::Fatal(self.refused(&response)));
        }
        if !(200..300).contains(&response.status) {
            return Err(Failure::Fatal(error::environment(format!(
                "token endpoint {realm} answered {}",
                response.describe()
            ))));
        }
        serde_json::from_slice::<auth::TokenResponse>(&response.body)
            .ok()
            .and_then(auth::TokenResponse::into_secret)
            .ok_or_else(|| {
                Failure::Fatal(error::environment(format!(
                    "token endpoint {realm} answered without a token"
                )))
            })
    }

    /// The error for credentials the registry refused, or for missing ones.
    pub fn refused(&self, response: &Response) -> anyhow::Error {
        match &self.credential {
            Some(resolved) => error::input(format!(
                "{} refused the credentials from {} to {} {}: {}; check the user name and \
                 password or token, and that it may {} this repository",
                self.registry,
                resolved.source,
                self.access.verb(),
                self.repository,
                response.describe(),
                self.access.verb()
            )),
            None => error::input(format!(
                "{} requires authentication to {} {} ({}), and no credentials were \
                 found: {}set {}/{}, or run `docker login {}`",
                self.registry,
                self.access.verb(),
                self.repository,
                response.describe(),
                match self.access {
                    Access::Push => "pass --username with --password-stdin, ",
                    Access::Pull => "",
                },
                auth::USERNAME_ENV,
                auth::PASSWORD_ENV,
                self.registry
            )),
        }
    }

    /// Runs `attempt` until it succeeds, fails for good, or the retries run out. Waits
    /// `Retry-After` when the registry gave one, else an exponential backoff. A timeout is
    /// retried only while the registry still answers: after [`SILENT_LIMIT`] timeouts in a
    /// row (or one before it ever answered) the push stops, rather than wait `--timeout` per
    /// retry per blob.
    pub fn retrying<T>(
        &self,
        what: &str,
        mut attempt: impl FnMut(u32) -> Result<T, Failure>,
    ) -> Result<T> {
        let attempts = self.retries.saturating_add(1);
        let mut number = 0;
        loop {
            number += 1;
            let (message, retry_after) = match attempt(number) {
                Ok(value) => return Ok(value),
                Err(Failure::Fatal(err)) => return Err(err.context(what.to_owned())),
                Err(Failure::TimedOut(message)) => {
                    if self.silent.load(Ordering::Relaxed) >= SILENT_LIMIT {
                        return Err(error::environment(format!(
                            "{what}: {message}, and the registry has stopped answering; \
                             check that it is up, or give it longer with --timeout SECS \
                             ({TIMEOUT_ENV})"
                        )));
                    }
                    (message, None)
                }
                Err(Failure::Transient {
                    message,
                    retry_after,
                }) => (message, retry_after),
            };
            if number >= attempts {
                return Err(error::environment(format!(
                    "{what}: gave up after {number} attempts; the last one failed \
                             with: {message}"
                )));
            }
            let delay = match retry_after {
                Some(delay) if delay > MAX_RETRY_AFTER => {
                    return Err(error::environment(format!(
                        "{what}: {message}; the registry asks to retry after {} s, \
                                 longer than airlock waits ({} s); run the push again later",
                        delay.as_secs(),
                        MAX_RETRY_AFTER.as_secs()
                    )));
                }
                Some(delay) => delay,
                None => backoff(self.retry_base, number),
            };
            progress::status(
                "Retrying",
                format!(
                    "{what} in {:.1} s ({message}; attempt {} of {attempts})",
                    delay.as_secs_f64(),
                    number + 1
                ),
            );
            self.retried.fetch_add(1, Ordering::Relaxed);
            std::thread::sleep(delay);
        }
    }
}

/// `base × 2^(n-1)`, capped, with up to 25% jitter so parallel uploads do not retry in step.
fn backoff(base: Duration, attempt: u32) -> Duration {
    let exponential = base.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let capped = exponential.min(MAX_BACKOFF);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let jitter = capped.mul_f64(f64::from(nanos % 1000) / 4000.0);
    capped + jitter
}

/// Turns retryable statuses into [`Failure::Transient`].
fn classify(response: Response) -> Result<Response, Failure> {
    match response.status {
        408 | 429 | 500 | 502 | 503 | 504 => Err(Failure::Transient {
            message: response.describe(),
            retry_after: response.header("retry-after").and_then(parse_retry_after),
        }),
        _ => Ok(response),
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = parse_http_date(value)?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// IMF-fixdate, `Sun, 06 Nov 1994 08:49:37 GMT`, the form servers must send.
fn parse_http_date(value: &str) -> Option<SystemTime> {
    let (_, rest) = value.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: u64 = parts.next()?.parse().ok()?;
    let month = match parts.next()? {
        "Jan" => 1,
        "Feb" => 2,
        "Mar" => 3,
        "Apr" => 4,
        "May" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" => 10,
        "Nov" => 11,
        "Dec" => 12,
        _ => return None,
    };
    let year: i64 = parts.next()?.parse().ok()?;
    let mut clock = parts.next()?.split(':').map(|p| p.parse::<u64>().ok());
    let (h, m, s) = (clock.next()??, clock.next()??, clock.next()??);
    if parts.next()? != "GMT" || h > 23 || m > 59 || s > 60 || !(1..=31).contains(&day) {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let seconds = days * 86_400 + (h * 3600 + m * 60 + s) as i64;
    u64::try_from(seconds)
        .ok()
        .map(|s| SystemTime::UNIX_EPOCH + Duration::from_secs(s))
}

/// A TLS failure: ureq reports handshake errors as I/O errors carrying a `rustls::Error`.
fn is_tls_error(err: &ureq::Error) -> bool {
    match err {
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => true,
        ureq::Error::Io(io) => io.get_ref().is_some_and(|e| e.is::<rustls::Error>()),
        _ => false,
    }
}

/// Classifies a transport error: a dropped or refused connection is worth a retry, a timed-out
/// one maybe (see [`Session::retrying`]); an unknown host or a TLS failure is not.
fn transport_failure(err: &ureq::Error, target: &str, timeout: Duration) -> Failure {
    match err {
        ureq::Error::Timeout(ureq::Timeout::Connect) => Failure::TimedOut(format!(
            "{target} did not answer: no connection within {} s",
            connect_timeout(timeout).as_secs_f64()
        )),
        ureq::Error::Timeout(_) => Failure::TimedOut(format!(
            "{target} did not answer: no progress for {} s",
            timeout.as_secs_f64()
        )),
        ureq::Error::HostNotFound => Failure::Fatal(error::environment(format!(
            "cannot resolve the host of {target}: check the registry name, DNS and proxy \
             settings"
        ))),
        e if is_tls_error(e) => Failure::Fatal(error::environment(format!(
            "TLS with {target} failed: {e}; if the registry uses a private CA, pass \
             --ca-cert FILE (PEM); --insecure skips verification"
        ))),
        // std reports resolver failures as "failed to lookup address information: …".
        ureq::Error::Io(io)
            if io.to_string().contains("failed to lookup address")
                && !io.to_string().contains("Temporary failure") =>
        {
            Failure::Fatal(error::environment(format!(
                "cannot resolve the host of {target} ({io}): check the registry name, DNS \
                 and proxy settings"
            )))
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            Failure::transient(format!("{target} refused the connection"))
        }
        ureq::Error::Io(_)
        | ureq::Error::ConnectionFailed
        | ureq::Error::Protocol(_)
        | ureq::Error::BodyStalled => Failure::transient(format!("connection to {target}: {err}")),
        e => Failure::Fatal(error::environment(format!(
            "request to {target} failed: {e}"
        ))),
    }
}

/// Connecting (TCP and TLS) gets [`CONNECT_TIMEOUT`], or `--timeout` when that is shorter.
fn connect_timeout(timeout: Duration) -> Duration {
    timeout.min(CONNECT_TIMEOUT)
}

/// Opens `len` bytes of a layout blob from `offset`: a regular file (never a link, FIFO or
/// device put in its place) that still holds them.
fn open_blob(path: &Path, offset: u64, len: u64) -> Result<fs::File> {
    let opened = input::open_regular(path, Links::Refuse)?;
    if opened.size < offset.saturating_add(len) {
        return Err(error::input(format!(
            "{} is {} bytes, shorter than its descriptor says ({} needed); the layout changed \
             during the push",
            path.display(),
            opened.size,
            offset.saturating_add(len)
        )));
    }
    let mut file = opened.file;
    file.seek(SeekFrom::Start(offset))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(file)
}

/// `scheme://host:port` of a URL, with the port made explicit (RFC 6454 origins).
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

fn origin(url: &str) -> Option<Origin> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let port = uri.port_u16().or(match scheme.as_str() {
        "https" => Some(443),
        "http" => Some(80),
        _ => None,
    })?;
    Some(Origin {
        host: uri.host()?.to_ascii_lowercase(),
        scheme,
        port,
    })
}

/// A URL without its query, which may carry upload state or tokens, for error messages.
fn strip_query(url: &str) -> &str {
    url.split_once('?').map_or(url, |(before, _)| before)
}

/// Whether ureq gave up on silence (no connection, or no progress on a read or write).
fn is_timeout(err: &ureq::Error) -> bool {
    matches!(err, ureq::Error::Timeout(_))
}

fn build_agent(options: &ClientOptions) -> Result<ureq::Agent> {
    let tls = TlsConfig::builder()
        .root_certs(root_certs(&options.ca_certs)?)
        .disable_verification(options.insecure)
        .build();
    let config = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls)
        .user_agent(concat!("cargo-airlock/", env!("CARGO_PKG_VERSION")))
        // Silence is bounded, total time is not: a blob that takes an hour to send while it
        // keeps moving is fine, a socket that moves nothing for `timeout` is not.
        .timeout_resolve(Some(connect_timeout(options.timeout)))
        .timeout_connect(Some(connect_timeout(options.timeout)))
        .timeout_per_read(Some(options.timeout))
        .timeout_per_write(Some(options.timeout))
        .build();
    Ok(config.new_agent())
}

/// The system bundle (`$SSL_CERT_FILE` or the usual paths) plus `--ca-cert` files; Mozilla's
/// roots built into airlock when neither exists (a scratch container has no bundle).
fn root_certs(extra: &[PathBuf]) -> Result<RootCerts> {
    let mut certs = Vec::new();
    let system = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
        .find(|p| p.is_file());
    if let Some(bundle) = &system
        && let Ok(pem) = fs::read(bundle)
    {
        certs.extend(pem_certificates(&pem));
    }
    for path in extra {
        let pem = fs::read(path)
            .map_err(|e| error::input(format!("cannot read --ca-cert {}: {e}", path.display())))?;
        let found = pem_certificates(&pem);
        if found.is_empty() {
            return Err(error::input(format!(
                "--ca-cert {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            )));
        }
        certs.extend(found);
    }
    Ok(if certs.is_empty() {
        RootCerts::WebPki
    } else {
        RootCerts::new_with_certs(&certs)
    })
}

fn pem_certificates(pem: &[u8]) -> Vec<Certificate<'static>> {
    ureq::tls::parse_pem(pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect()
}

/// `application/x-www-form-urlencoded`.
fn form_urlencode(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(
            parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777))
        );
        assert_eq!(
            parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT"),
            Some(SystemTime::UNIX_EPOCH)
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_http_date("Sun, 06 Nov 1994 08:49:37 CET"), None);
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let base = Duration::from_millis(100);
        let first = backoff(base, 1);
        assert!(first >= base && first <= base.mul_f64(1.25), "{first:?}");
        let third = backoff(base, 3);
        assert!(
            third >= base * 4 && third <= (base * 4).mul_f64(1.25),
            "{third:?}"
        );
        assert!(backoff(base, 40) <= MAX_BACKOFF.mul_f64(1.25));
    }

    #[test]
    fn describes_registry_errors() {
        let response = Response {
            status: 400,
            headers: HeaderMap::new(),
            body: br#"{"errors":[{"code":"NAME_INVALID","message":"invalid repository name"}]}"#
                .to_vec(),
        };
        assert_eq!(
            response.describe(),
            "400 Bad Request (NAME_INVALID: invalid repository name)"
        );
        let response = Response {
            status: 503,
            headers: HeaderMap::new(),
            body: Vec::new(),
        };
        assert_eq!(response.describe(), "503 Service Unavailable");
        assert!(matches!(classify(response), Err(Failure::Transient { .. })));
    }

    #[test]
    fn origins_compare_scheme_host_and_port() {
        let same = |a: &str, b: &str| origin(a).is_some() && origin(a) == origin(b);
        assert!(same(
            "https://r.example/v2/",
            "https://R.example:443/v2/a/blobs/uploads/x"
        ));
        assert!(same(
            "http://127.0.0.1:5000",
            "http://127.0.0.1:5000/v2/?x=1"
        ));
        assert!(!same("http://127.0.0.1:5000", "http://127.0.0.2:5000/v2/"));
        assert!(!same("http://127.0.0.1:5000", "http://127.0.0.1:50001/v2/"));
        assert!(!same("https://r.example", "http://r.example:443/"));
        assert!(!same("https://r.example", "https://r.example.evil/"));
        assert_eq!(origin("/v2/relative"), None);
        assert_eq!(strip_query("http://h/u?_state=secret"), "http://h/u");
    }

    #[test]
    fn encodes_forms() {
        assert_eq!(
            form_urlencode(&[("scope", "repository:a/b:pull,push".into())]),
            "scope=repository%3Aa%2Fb%3Apull%2Cpush"
        );
    }

    #[test]
    fn ca_cert_without_certificates_is_an_input_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        let err = root_certs(&[path]).unwrap_err();
        assert_eq!(crate::error::exit_kind(&err), crate::error::ExitKind::Input);
        assert!(format!("{err:#}").contains("no PEM certificate"));
    }
}
