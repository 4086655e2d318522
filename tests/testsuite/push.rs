//! `cargo airlock push` against Debian's `docker-registry` (CNCF distribution 2.8) started by
//! each test on 127.0.0.1, read back with `skopeo`; faults come from a small HTTP proxy in
//! the test that sits between `push` and the registry.
//!
//! `AIRLOCK_RETRY_BASE_MS=10` keeps backoff short; `Retry-After` is still honoured in full.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock::Sha256Digest;
use airlock::oci::layout::{LayoutWriter, with_ref_name};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, Os, PlatformBuilder, RootFsBuilder,
};

use crate::support::*;

const USER: &str = "airlock";
const PASSWORD: &str = "s3cret-Pa55word";
/// The identity (OAuth2 refresh) token the test token server accepts.
const REFRESH_TOKEN: &str = "refresh-Tok3n-for-airlock";
/// Distribution 2.8 answers 404 for an OCI manifest unless the client accepts it.
const OCI_ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

// ---------------------------------------------------------------------------------------------
// The registry

/// `docker-registry serve` on 127.0.0.1 with storage in a temporary directory; killed on drop.
struct Registry {
    binary: PathBuf,
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Registry {
    /// Starts a registry, with htpasswd Basic auth when `auth`. None (test skipped) when
    /// `docker-registry` or, for auth, `htpasswd` is missing.
    fn start(auth: bool) -> Option<Registry> {
        Registry::start_with(auth, None)
    }

    /// Like [`Registry::start`], serving HTTPS with `tls` = (certificate, key) when given.
    fn start_with(auth: bool, tls: Option<(&Path, &Path)>) -> Option<Registry> {
        let binary = require_tool("docker-registry")?;
        let dir = tempfile::Builder::new()
            .prefix("airlock-registry-")
            .tempdir()
            .unwrap();
        let mut auth_section = String::new();
        if auth {
            let htpasswd = require_tool("htpasswd")?;
            let out = Command::new(htpasswd)
                .args(["-Bbn", USER, PASSWORD])
                .output()
                .unwrap();
            assert!(out.status.success(), "htpasswd failed");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, &out.stdout).unwrap();
            auth_section = format!(
                "auth:\n  htpasswd:\n    realm: airlock-test\n    path: {}\n",
                file.display()
            );
        }
        let tls_section = tls.map_or(String::new(), |(cert, key)| {
            format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            )
        });
        let port = free_port();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n{tls_section}{auth_section}",
                dir.path().join("storage").display()
            ),
        )
        .unwrap();
        let mut registry = Registry {
            binary,
            child: None,
            port,
            dir,
            config,
        };
        registry.restart();
        Some(registry)
    }

    /// (Re)starts the process on the same port and storage.
    fn restart(&mut self) {
        self.kill();
        let log = std::fs::File::create(self.dir.path().join("registry.log")).unwrap();
        let child = Command::new(&self.binary)
            .arg("serve")
            .arg(&self.config)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_status(self.port, "GET", "/v2/").is_none() {
            assert!(
                Instant::now() < deadline,
                "the registry did not start:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status of a plain HTTP request, None when nothing answers.
fn http_status(port: u16, method: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: {OCI_ACCEPT}\r\n\
         Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).ok()?;
    line.split(' ').nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------------------------
// Test layouts, written with airlock's LayoutWriter: real gzip'd tar layers, real configs

/// Deterministic incompressible bytes (xorshift), so big layers stay big after gzip.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A gzip'd tar layer holding `files`, and its diff ID (digest of the tar).
fn layer(files: &[(&str, Vec<u8>)]) -> (Vec<u8>, Sha256Digest) {
    let mut tar = airlock::tarball::TarBuilder::new();
    for (path, bytes) in files {
        tar.file(path, bytes.clone(), 0o755);
    }
    let tar = tar.to_bytes(0).unwrap();
    let diff_id = Sha256Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::none());
    gz.write_all(&tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

struct TestImage {
    /// The manifest's descriptor (with platform, for index children).
    descriptor: Descriptor,
    manifest_bytes: Vec<u8>,
}

/// Writes a config and manifest for `arch` with `layers` into `writer`.
fn image(writer: &LayoutWriter, arch: Arch, layers: &[&(Vec<u8>, Sha256Digest)]) -> TestImage {
    let mut layer_descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for (blob, diff_id) in layers {
        layer_descriptors.push(writer.put_blob(MediaType::ImageLayerGzip, blob).unwrap());
        diff_ids.push(diff_id.to_string());
    }
    let config = ImageConfigurationBuilder::default()
        .architecture(arch.clone())
        .os(Os::Linux)
        .config(
            ConfigBuilder::default()
                .entrypoint(vec!["/hello".to_owned()])
                .build()
                .unwrap(),
        )
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let (config_descriptor, _) = writer.put_json(MediaType::ImageConfig, &config).unwrap();
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config_descriptor)
        .layers(layer_descriptors)
        .build()
        .unwrap();
    let (mut descriptor, manifest_bytes) = writer
        .put_json(MediaType::ImageManifest, &manifest)
        .unwrap();
    descriptor.set_platform(Some(
        PlatformBuilder::default()
            .os(Os::Linux)
            .architecture(arch)
            .build()
            .unwrap(),
    ));
    TestImage {
        descriptor,
        manifest_bytes,
    }
}

/// What a test layout holds.
struct TestLayout {
    path: PathBuf,
    /// Tag `single`: one amd64 image with a 9 MiB layer (chunked) and a small one.
    single: TestImage,
    /// Tag `multi`: an index of amd64 and arm64 images sharing the small layer.
    multi_digest: Sha256Digest,
    multi_bytes: Vec<u8>,
    multi_children: Vec<TestImage>,
    /// Distinct blobs of each tag.
    single_blobs: usize,
    multi_blobs: usize,
}

fn test_layout(dir: &Path, seed: u64) -> TestLayout {
    let path = dir.join("layout");
    let writer = LayoutWriter::create(&path).unwrap();
    let shared = layer(&[("etc/shared", format!("shared {seed}").into_bytes())]);
    let big = layer(&[("hello", noise(9 << 20, seed))]);
    let amd64 = layer(&[("hello", noise(300 << 10, seed + 1))]);
    let arm64 = layer(&[("hello", noise(200 << 10, seed + 2))]);
    let single = image(&writer, Arch::Amd64, &[&big, &shared]);
    let children = vec![
        image(&writer, Arch::Amd64, &[&amd64, &shared]),
        image(&writer, Arch::ARM64, &[&arm64, &shared]),
    ];
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(
            children
                .iter()
                .map(|c| c.descriptor.clone())
                .collect::<Vec<_>>(),
        )
        .build()
        .unwrap();
    let (index_descriptor, multi_bytes) = writer.put_json(MediaType::ImageIndex, &index).unwrap();
    let mut single_entry = single.descriptor.clone();
    single_entry.set_platform(None);
    let top = ImageIndexBuilder::default()
        .schema_version(2u32)
        .manifests(vec![
            with_ref_name(single_entry, "single"),
            with_ref_name(index_descriptor.clone(), "multi"),
        ])
        .build()
        .unwrap();
    writer.finish(&top).unwrap();
    TestLayout {
        path,
        single,
        multi_digest: Sha256Digest::try_from(index_descriptor.digest()).unwrap(),
        multi_bytes,
        multi_children: children,
        // big, shared, config
        single_blobs: 3,
        // amd64 + arm64 layers, shared, two configs
        multi_blobs: 5,
    }
}

fn digest_of(image: &TestImage) -> Sha256Digest {
    Sha256Digest::try_from(image.descriptor.digest()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Running push and skopeo

/// `cargo-airlock push` with fast retries and no credentials from this machine.
fn push_cmd(home: &Path) -> Command {
    let mut cmd = airlock();
    cmd.arg("push")
        .env("AIRLOCK_RETRY_BASE_MS", "10")
        .env("HOME", home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env_remove("AIRLOCK_REGISTRY_USERNAME")
        .env_remove("AIRLOCK_REGISTRY_PASSWORD")
        .env_remove("SSL_CERT_FILE")
        .stdin(Stdio::null());
    for var in [
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `cmd` with `stdin` as its standard input.
fn output_with_stdin(cmd: &mut Command, stdin: &str) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[track_caller]
fn expect_code(out: &std::process::Output, code: i32) -> (String, String) {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

fn skopeo_inspect(reference: &str, raw: bool, creds: Option<&str>) -> Vec<u8> {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false"]);
    if raw {
        cmd.arg("--raw");
    }
    if let Some(creds) = creds {
        cmd.args(["--creds", creds]);
    }
    let out = cmd.arg(format!("docker://{reference}")).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {reference}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The digest of the manifest `skopeo inspect` reports.
fn skopeo_digest(reference: &str, creds: Option<&str>) -> Sha256Digest {
    let json: serde_json::Value =
        serde_json::from_slice(&skopeo_inspect(reference, false, creds)).unwrap();
    json["Digest"].as_str().unwrap().parse().unwrap()
}

/// `skopeo copy --all --preserve-digests docker://REFERENCE oci:DEST:back`, opened.
fn skopeo_pull(reference: &str, dest: &Path) -> airlock::oci::Layout {
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
        ])
        .arg(format!("docker://{reference}"))
        .arg(format!("oci:{}:back", dest.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    airlock::oci::Layout::open(dest).unwrap()
}

fn blob_counts(report: &serde_json::Value) -> (u64, u64) {
    (
        report["blobs_uploaded"].as_u64().unwrap(),
        report["blobs_skipped"].as_u64().unwrap(),
    )
}

// ---------------------------------------------------------------------------------------------
// The fault-injecting proxy

/// A request as the proxy saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    headers: HashMap<String, String>,
}

/// What the proxy does with a request that a rule matches.
enum Action {
    /// Answer this status (after reading the body) with extra headers; never forward.
    Respond(u16, Vec<(String, String)>),
    /// Read this many body bytes, then drop the connection without answering.
    Reset(usize),
    /// Forward, but rewrite the registry's status `from` to `to`.
    Rewrite(u16, u16),
    /// Call the hook, then forward.
    Hook(Box<dyn FnMut() + Send>),
    /// Wait, then forward; counted in [`ProxyState::max_in_flight`].
    Delay(Duration),
    /// Forward, then claim another `Docker-Content-Digest` in the answer.
    LieAboutDigest,
}

struct Rule {
    matches: Box<dyn Fn(&Seen) -> bool + Send>,
    action: Action,
    /// Times it still applies; None = forever.
    remaining: Option<usize>,
}

/// Bearer token auth in front of an auth-less registry: tokens come from `/token` for the
/// right Basic credentials, and each request must carry one for its repository.
struct TokenAuth {
    issued: HashMap<String, Vec<String>>,
}

#[derive(Default)]
struct ProxyState {
    rules: Vec<Rule>,
    log: Vec<(String, String, u16)>,
    token_auth: Option<TokenAuth>,
    /// Delayed requests being handled now, and the most there were at once.
    in_flight: usize,
    max_in_flight: usize,
}

/// Counts a delayed request in flight until dropped.
struct InFlight<'a>(&'a Mutex<ProxyState>);

impl<'a> InFlight<'a> {
    fn enter(state: &'a Mutex<ProxyState>) -> InFlight<'a> {
        let mut guard = state.lock().unwrap();
        guard.in_flight += 1;
        guard.max_in_flight = guard.max_in_flight.max(guard.in_flight);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.lock().unwrap().in_flight -= 1;
    }
}

struct Proxy {
    port: u16,
    state: Arc<Mutex<ProxyState>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_state, thread_stop) = (state.clone(), stop.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if thread_stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = thread_state.clone();
                std::thread::spawn(move || handle(stream, upstream, port, &state));
            }
        });
        Proxy { port, state, stop }
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn rule(
        &self,
        times: Option<usize>,
        matches: impl Fn(&Seen) -> bool + Send + 'static,
        action: Action,
    ) {
        self.state.lock().unwrap().rules.push(Rule {
            matches: Box::new(matches),
            action,
            remaining: times,
        });
    }

    fn clear_rules(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    fn with_token_auth(&self) {
        self.state.lock().unwrap().token_auth = Some(TokenAuth {
            issued: HashMap::new(),
        });
    }

    /// The most delayed requests handled at once.
    fn max_in_flight(&self) -> usize {
        self.state.lock().unwrap().max_in_flight
    }

    /// (method, path, status) of every request, in order.
    fn log(&self) -> Vec<(String, String, u16)> {
        self.state.lock().unwrap().log.clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn read_head(reader: &mut BufReader<TcpStream>) -> Option<(Seen, String)> {
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let mut parts = request_line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = HashMap::new();
    let mut raw = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            if name != "connection" && name != "authorization" {
                raw.push_str(&line);
            }
            headers.insert(name, value.trim().to_owned());
        }
    }
    Some((
        Seen {
            method: method.clone(),
            path: path.clone(),
            headers,
        },
        format!("{method} {path} HTTP/1.1\r\n{raw}Connection: close\r\n\r\n"),
    ))
}

fn respond(mut stream: &TcpStream, status: u16, headers: &[(String, String)], body: &str) {
    let mut head = format!(
        "HTTP/1.1 {status} Fault\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.flush();
}

fn handle(stream: TcpStream, upstream: u16, own_port: u16, state: &Mutex<ProxyState>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let Some((seen, head)) = read_head(&mut reader) else {
        return;
    };
    let length: usize = seen
        .headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let log = |status: u16| {
        state
            .lock()
            .unwrap()
            .log
            .push((seen.method.clone(), seen.path.clone(), status));
    };

    // Token auth first: the token endpoint, then a valid token on every /v2/ request.
    let mut token_form = Vec::new();
    if seen.path.starts_with("/token") {
        token_form = vec![0; length];
        let _ = reader.read_exact(&mut token_form);
    }
    if let Some(reply) = token_auth(state, &seen, &token_form, own_port) {
        if !seen.path.starts_with("/token") {
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
        }
        let (status, headers, text) = reply;
        log(status);
        respond(&stream, status, &headers, &text);
        return;
    }

    let action = {
        let mut state = state.lock().unwrap();
        let found = state
            .rules
            .iter_mut()
            .position(|rule| rule.remaining != Some(0) && (rule.matches)(&seen));
        found.map(|i| {
            let rule = &mut state.rules[i];
            if let Some(n) = rule.remaining.as_mut() {
                *n -= 1;
            }
            match &mut rule.action {
                Action::Respond(status, headers) => Action::Respond(*status, headers.clone()),
                Action::Reset(after) => Action::Reset(*after),
                Action::Rewrite(from, to) => Action::Rewrite(*from, *to),
                Action::Delay(delay) => Action::Delay(*delay),
                Action::LieAboutDigest => Action::LieAboutDigest,
                Action::Hook(hook) => {
                    hook();
                    Action::Rewrite(0, 0)
                }
            }
        })
    };
    let mut rewrite = None;
    let mut lie = false;
    let mut _in_flight = None;
    match action {
        Some(Action::Respond(status, headers)) => {
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            log(status);
            respond(&stream, status, &headers, "");
            return;
        }
        Some(Action::Reset(after)) => {
            let mut body = vec![0; after.min(length)];
            let _ = reader.read_exact(&mut body);
            log(0);
            // Unread data in the socket turns the close into a reset.
            std::thread::sleep(Duration::from_millis(20));
            drop(reader);
            drop(stream);
            return;
        }
        Some(Action::Rewrite(from, to)) => rewrite = Some((from, to)),
        Some(Action::LieAboutDigest) => lie = true,
        Some(Action::Delay(delay)) => {
            _in_flight = Some(InFlight::enter(state));
            std::thread::sleep(delay);
        }
        Some(Action::Hook(_)) | None => {}
    }

    let Ok(mut upstream_stream) = TcpStream::connect(("127.0.0.1", upstream)) else {
        log(0);
        let _ = stream.shutdown(Shutdown::Both);
        return;
    };
    let mut body = vec![0; length];
    if reader.read_exact(&mut body).is_err() {
        log(0);
        return;
    }
    if upstream_stream.write_all(head.as_bytes()).is_err()
        || upstream_stream.write_all(&body).is_err()
    {
        log(0);
        return;
    }
    let mut response = Vec::new();
    let _ = upstream_stream.read_to_end(&mut response);
    let status = String::from_utf8_lossy(&response[..response.len().min(12)])
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .unwrap_or(0);
    if lie {
        let text = String::from_utf8_lossy(&response).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let fake = Sha256Digest::of(b"not what was sent");
        let head: Vec<String> = head
            .split("\r\n")
            .map(|line| match line.split_once(':') {
                Some((name, _)) if name.eq_ignore_ascii_case("docker-content-digest") => {
                    format!("{name}: {fake}")
                }
                _ => line.to_owned(),
            })
            .collect();
        response = format!("{}\r\n\r\n{body}", head.join("\r\n")).into_bytes();
    }
    if let Some((from, to)) = rewrite
        && status == from
        && from != 0
    {
        let text = String::from_utf8_lossy(&response).into_owned();
        let (_, rest) = text.split_once("\r\n").unwrap();
        response = format!("HTTP/1.1 {to} Rewritten\r\n{rest}").into_bytes();
        log(to);
    } else {
        log(status);
    }
    let mut stream = stream;
    let _ = stream.write_all(&response);
}

/// A response the proxy makes up: status, extra headers, body.
type Reply = (u16, Vec<(String, String)>, String);

/// The token endpoint and the token check; None = forward the request.
fn token_auth(state: &Mutex<ProxyState>, seen: &Seen, form: &[u8], own_port: u16) -> Option<Reply> {
    let mut state = state.lock().unwrap();
    let auth = state.token_auth.as_mut()?;
    let decode = |s: &str| {
        s.replace("%3A", ":")
            .replace("%2F", "/")
            .replace("%2C", ",")
            .replace("%20", " ")
    };
    // OAuth2 (distribution `docs/spec/auth/oauth.md`): a refresh token for an access token.
    if seen.method == "POST" && seen.path == "/token" {
        let form = String::from_utf8_lossy(form).into_owned();
        let field = |name: &str| {
            form.split('&')
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
                .map(decode)
        };
        if field("grant_type").as_deref() != Some("refresh_token")
            || field("refresh_token").as_deref() != Some(REFRESH_TOKEN)
        {
            return Some((401, Vec::new(), r#"{"error":"invalid_grant"}"#.to_owned()));
        }
        let scopes: Vec<String> = field("scope")
            .unwrap_or_default()
            .split(' ')
            .map(str::to_owned)
            .collect();
        let token = format!("token-{}", auth.issued.len() + 1);
        auth.issued.insert(token.clone(), scopes);
        return Some((200, Vec::new(), format!(r#"{{"access_token":"{token}"}}"#)));
    }
    if let Some(query) = seen.path.strip_prefix("/token?") {
        let basic = format!(
            "Basic {}",
            base64_encode(format!("{USER}:{PASSWORD}").as_bytes())
        );
        if seen.headers.get("authorization") != Some(&basic) {
            return Some((
                401,
                Vec::new(),
                r#"{"details":"bad credentials"}"#.to_owned(),
            ));
        }
        let scopes: Vec<String> = query
            .split('&')
            .filter_map(|kv| kv.strip_prefix("scope="))
            .map(decode)
            .collect();
        let token = format!("token-{}", auth.issued.len() + 1);
        auth.issued.insert(token.clone(), scopes);
        return Some((200, Vec::new(), format!(r#"{{"token":"{token}"}}"#)));
    }
    let repository = seen.path.strip_prefix("/v2/").and_then(|rest| {
        ["/blobs/", "/manifests/"]
            .iter()
            .find_map(|marker| rest.split_once(marker).map(|(repo, _)| repo.to_owned()))
    });
    let wanted = repository
        .as_ref()
        .map(|repo| format!("repository:{repo}:pull,push"));
    let presented = seen
        .headers
        .get("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| auth.issued.get(token));
    let ok = match (&wanted, presented) {
        (_, None) => false,
        (None, Some(_)) => true,
        (Some(wanted), Some(scopes)) => scopes.contains(wanted),
    };
    if ok {
        return None;
    }
    let mut challenge =
        format!("Bearer realm=\"http://127.0.0.1:{own_port}/token\",service=\"airlock-test\"");
    if let Some(wanted) = wanted {
        challenge.push_str(&format!(",scope=\"{wanted}\""));
    }
    Some((
        401,
        vec![("WWW-Authenticate".to_owned(), challenge)],
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_owned(),
    ))
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A registry, the fault proxy in front of it, and a test layout in a temporary home.
fn faulty(seed: u64) -> Option<(Registry, Proxy, tempfile::TempDir, TestLayout)> {
    let registry = Registry::start(false)?;
    let proxy = Proxy::start(registry.port);
    let home = tempfile::tempdir().unwrap();
    let layout = test_layout(home.path(), seed);
    Some((registry, proxy, home, layout))
}

/// How each blob of a push report reached the registry.
fn methods(report: &serde_json::Value) -> Vec<String> {
    report["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["method"].as_str().unwrap().to_owned())
        .collect()
}

fn is_upload(seen: &Seen) -> bool {
    seen.path.contains("/blobs/uploads/")
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn pushes_an_image_and_an_index_that_skopeo_reads_back() {
    let Some(registry) = Registry::start(false) else {
        return;
    };
    let Some(_) = require_tool("skopeo") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let layout = test_layout(home.path(), 1);
    let addr = registry.addr();
    let single_ref = format!("{addr}/airlock/single:v1");

    // One image: its big layer goes in 4 MiB chunks.
    let report = run_json(
        push_cmd(home.path())
            .arg(format!("oci:{}:single", layout.path.display()))
            .arg(&single_ref)
            .args(["--format", "json"]),
    );
    let digest = digest_of(&layout.single);
    assert_eq!(report["digest"], digest.to_string());
    assert_eq!(
        report["reference"],
        format!("{addr}/airlock/single@{digest}")
    );
    assert_eq!(report["tag"], "v1");
    assert_eq!(blob_counts(&report), (layout.single_blobs as u64, 0));
    let methods = methods(&report);
    assert_eq!(
        methods.iter().filter(|m| **m == "chunked").count(),
        1,
        "{methods:?}"
    );
    assert_eq!(skopeo_digest(&single_ref, None), digest);
    assert_eq!(
        skopeo_inspect(&single_ref, true, None),
        layout.single.manifest_bytes
    );

    // A two-platform index, children first; the default output is the pinned reference.
    let multi_ref = format!("{addr}/airlock/multi:2.0");
    let out = push_cmd(home.path())
        .arg(format!("{}:multi", layout.path.display()))
        .arg(&multi_ref)
        .output()
        .unwrap();
    let (stdout, _) = expect_code(&out, 0);
    assert_eq!(
        stdout.lines().last().unwrap(),
        format!("{addr}/airlock/multi@{}", layout.multi_digest)
    );
    assert!(
        stdout.contains("linux/amd64") && stdout.contains("linux/arm64"),
        "{stdout}"
    );
    assert_eq!(skopeo_inspect(&multi_ref, true, None), layout.multi_bytes);
    for child in &layout.multi_children {
        let child_ref = format!("{addr}/airlock/multi@{}", digest_of(child));
        assert_eq!(skopeo_inspect(&child_ref, true, None), child.manifest_bytes);
    }

    // skopeo pulls the index back with every digest unchanged.
    let pulled_layout = skopeo_pull(&multi_ref, &home.path().join("pulled"));
    let pulled_top = pulled_layout.resolve(Some("back")).unwrap();
    assert_eq!(
        pulled_top.digest().to_string(),
        layout.multi_digest.to_string()
    );
    for child in &layout.multi_children {
        assert!(pulled_layout.blob_path(&digest_of(child)).is_file());
    }

    // Pushed again: the registry has every blob.
    for (tag, reference, blobs) in [
        ("single", &single_ref, layout.single_blobs),
        ("multi", &multi_ref, layout.multi_blobs),
    ] {
        let report = run_json(
            push_cmd(home.path())
                .arg(format!("oci:{}:{tag}", layout.path.display()))
                .arg(reference)
                .args(["--format", "json"]),
        );
        assert_eq!(blob_counts(&report), (0, blobs as u64), "{report:#}");
        assert_eq!(report["bytes_uploaded"], 0);
    }
}

#[test]
fn pins_by_digest_and_refuses_a_digest_that_differs() {
    let Some(registry) = Registry::start(false) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let layout = test_layout(home.path(), 2);
    let digest = digest_of(&layout.single);
    let source = format!("oci:{}:single", layout.path.display());
    let report = run_json(
        push_cmd(home.path())
            .arg(&source)
            .arg(format!("{}/pinned@{digest}", registry.addr()))
            .args(["--format", "json"]),
    );
    assert_eq!(report["tag"], serde_json::Value::Null);
    assert_eq!(
        http_status(
            registry.port,
            "GET",
            &format!("/v2/pinned/manifests/{digest}")
        ),
        Some(200)
    );
    assert_eq!(
        http_status(registry.port, "GET", "/v2/pinned/manifests/latest"),
        Some(404)
    );

    let other = Sha256Digest::of(b"other");
    let out = push_cmd(home.path())
        .arg(&source)
        .arg(format!("{}/pinned@{other}", registry.addr()))
        .output()
        .unwrap();
    let (_, stderr) = expect_code(&out, 2);
    assert!(stderr.contains(&format!("pins {other}")), "{stderr}");
}

#[test]
fn basic_auth_from_every_credential_source_and_secrets_stay_secret() {
    let Some(registry) = Registry::start(true) else {
        return;
    };
    let Some(_) = require_tool("skopeo") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let layout = test_layout(home.path(), 3);
    let source = format!("oci:{}:single", layout.path.display());
    let target = format!("{}/secure/app:v1", registry.addr());
    let mut outputs = Vec::new();

    // No credentials anywhere.
    let out = push_cmd(home.path())
        .arg(&source)
        .arg(&target)
        .output()
        .unwrap();
    let (_, stderr) = expect_code(&out, 2);
    assert!(stderr.contains("requires authentication"), "{stderr}");
    assert!(stderr.contains("docker login"), "{stderr}");

    // Wrong password from the environment, with -vv: refused, exit 2, never printed.
    let wrong = "wrong-Pa55-xyzzy";
    let out = push_cmd(home.path())
        .args(["-vv", &source, &target])
        .env("AIRLOCK_REGISTRY_USERNAME", USER)
        .env("AIRLOCK_REGISTRY_PASSWORD", wrong)
        .output()
        .unwrap();
    let (_, stderr) = expect_code(&out, 2);
    assert!(
        stderr.contains(
            "refused the credentials from AIRLOCK_REGISTRY_USERNAME/AIRLOCK_REGISTRY_PASSWORD"
        ),
        "{stderr}"
    );
    outputs.push(out);

    // --username + --password-stdin.
    let out = output_with_stdin(
        push_cmd(home.path()).args([
            "-v",
            &source,
            &target,
            "--username",
            USER,
            "--password-stdin",
        ]),
        &format!("{PASSWORD}\n"),
    );
    expect_code(&out, 0);
    outputs.push(out);
    let creds = format!("{USER}:{PASSWORD}");
    assert_eq!(
        skopeo_digest(&target, Some(&creds)),
        digest_of(&layout.single)
    );

    // The flags win over the environment.
    let out = output_with_stdin(
        push_cmd(home.path())
            .args([&source, &target, "--username", USER, "--password-stdin"])
            .env("AIRLOCK_REGISTRY_USERNAME", USER)
            .env("AIRLOCK_REGISTRY_PASSWORD", wrong),
        PASSWORD,
    );
    expect_code(&out, 0);
    outputs.push(out);

    // The environment, which wins over a Docker config with the wrong password.
    let docker = home.path().join(".docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"username": "{USER}", "password": "{wrong}"}}}}}}"#,
            registry.addr()
        ),
    )
    .unwrap();
    let out = push_cmd(home.path())
        .args(["-v", &source, &target, "--format", "json"])
        .env("AIRLOCK_REGISTRY_USERNAME", USER)
        .env("AIRLOCK_REGISTRY_PASSWORD", PASSWORD)
        .output()
        .unwrap();
    expect_code(&out, 0);
    outputs.push(out);

    // Docker config `auths`, under the http:// form of the key.
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths": {{"http://{}": {{"auth": "{}"}}}}}}"#,
            registry.addr(),
            base64_encode(creds.as_bytes())
        ),
    )
    .unwrap();
    let out = push_cmd(home.path())
        .args(["-v", &source, &target])
        .output()
        .unwrap();
    expect_code(&out, 0);
    outputs.push(out);

    // `credHelpers`: a helper on PATH that answers for exactly this registry.
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-airlocktest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread server\n\
             if [ \"$server\" = \"{}\" ]; then\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\"\n\
             else echo 'credentials not found in native keychain'; exit 1; fi\n",
            registry.addr()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"credHelpers": {{"{}": "airlocktest"}}}}"#,
            registry.addr()
        ),
    )
    .unwrap();
    let out = push_cmd(home.path())
        .args(["-vv", &source, &target])
        .env("PATH", &path)
        .output()
        .unwrap();
    expect_code(&out, 0);
    outputs.push(out);

    // `credsStore` naming a helper that is not installed: the environment lacks it.
    std::fs::write(docker.join("config.json"), r#"{"credsStore": "nowhere"}"#).unwrap();
    let out = push_cmd(home.path())
        .args([&source, &target])
        .output()
        .unwrap();
    let (_, stderr) = expect_code(&out, 3);
    assert!(
        stderr.contains("docker-credential-nowhere") && stderr.contains("not installed"),
        "{stderr}"
    );

    for out in &outputs {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        for secret in [PASSWORD, wrong] {
            assert!(!all.contains(secret), "a secret was printed:\n{all}");
        }
        assert!(!all.contains(&base64_encode(creds.as_bytes())), "{all}");
    }
}

#[test]
fn bearer_tokens_are_fetched_per_repository_from_the_challenge_realm() {
    let Some(registry) = Registry::start(false) else {
        return;
    };
    let proxy = Proxy::start(registry.port);
    proxy.with_token_auth();
    let home = tempfile::tempdir().unwrap();
    let layout = test_layout(home.path(), 4);
    let source = format!("oci:{}:multi", layout.path.display());
    let target = format!("{}/team/app:v2", proxy.addr());

    let out = output_with_stdin(
        push_cmd(home.path()).args([&source, &target, "--username", USER, "--password-stdin"]),
        "not-the-password",
    );
    let (_, stderr) = expect_code(&out, 2);
    assert!(stderr.contains("refused the credentials"), "{stderr}");

    let out = output_with_stdin(
        push_cmd(home.path()).args([
            &source,
            &target,
            "--username",
            USER,
            "--password-stdin",
            "--format",
            "json",
        ]),
        PASSWORD,
    );
    let (stdout, _) = expect_code(&out, 0);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["digest"], layout.multi_digest.to_string());
    // Every request past the token endpoint carried a token for team/app.
    let log = proxy.log();
    assert!(
        log.iter()
            .any(|(m, p, s)| m == "GET" && p.starts_with("/token?") && *s == 200),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|(m, p, s)| m == "PUT" && p == "/v2/team/app/manifests/v2" && *s == 201),
        "{log:?}"
    );
    assert_eq!(
        http_status(registry.port, "GET", "/v2/team/app/manifests/v2"),
        Some(200)
    );

    // An identity token from the Docker config is exchanged at the realm (OAuth2 POST).
    let docker = home.path().join(".docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"identitytoken": "{REFRESH_TOKEN}"}}}}}}"#,
            proxy.addr()
        ),
    )
    .unwrap();
    let out = push_cmd(home.path())
        .args(["-vv", &source, &format!("{}/team/other:v3", proxy.addr())])
        .output()
        .unwrap();
    let (stdout, stderr) = expect_code(&out, 0);
    assert!(
        proxy
            .log()
            .iter()
            .any(|(m, p, s)| m == "POST" && p == "/token" && *s == 200),
        "{:?}",
        proxy.log()
    );
    assert!(!format!("{stdout}{stderr}").contains(REFRESH_TOKEN));
}

#[test]
fn bad_references_unknown_hosts_and_broken_layouts_are_clear_errors() {
    let home = tempfile::tempdir().unwrap();
    let layout = test_layout(home.path(), 5);
    let source = format!("oci:{}:single", layout.path.display());

    for (target, says) in [
        ("127.0.0.1:5000/Bad_Name", "lowercase"),
        (
            "127.0.0.1:5000/a..b",
            "not allowed by the distribution spec",
        ),
        ("airlock/hello", "is not a registry host"),
        ("127.0.0.1:5000/app:bad!tag", "not a valid tag"),
    ] {
        let out = push_cmd(home.path())
            .arg(&source)
            .arg(target)
            .output()
            .unwrap();
        let (_, stderr) = expect_code(&out, 2);
        assert!(stderr.contains(says), "{target}: {stderr}");
    }

    // Nothing resolves under .invalid (RFC 6761): the environment's DNS says no.
    let out = push_cmd(home.path())
        .arg(&source)
        .arg("registry.airlock-test.invalid/app:v1")
        .output()
        .unwrap();
    let (_, stderr) = expect_code(&out, 3);
    assert!(stderr.contains("cannot resolve"), "{stderr}");

    // Nothing listens: retried, then a clear environment error.
    let port = free_port();
    let out = push_cmd(home.path())
        .arg(&source)
        .arg(format!("127.0.0.1:{port}/app"))
        .args(["--retries", "2"])
        .output()
        .unwrap();
    let (_, stderr) = expect_code(&out, 3);
    assert!(stderr.contains("gave up after 3 attempts"), "{stderr}");
    assert!(stderr.contains("refused the connection"), "{stderr}");

    // A missing tag, a missing layout, a missing --ca-cert file.
    let out = push_cmd(home.path())
        .arg(format!("oci:{}:nope", layout.path.display()))
        .arg("127.0.0.1:5000/app")
        .output()
        .unwrap();
    let (_, stderr) = expect_code(&out, 2);
    assert!(
        stderr.contains("no image tagged `nope`") && stderr.contains("single"),
        "{stderr}"
    );
    let out = push_cmd(home.path())
        .arg(home.path().join("absent").display().to_string())
        .arg("127.0.0.1:5000/app")
        .output()
        .unwrap();
    let (_, stderr) = expect_code(&out, 2);
    assert!(stderr.contains("is not an OCI image layout"), "{stderr}");
    let out = push_cmd(home.path())
        .args([&source, "127.0.0.1:5000/app", "--ca-cert"])
        .arg(home.path().join("absent.pem"))
        .output()
        .unwrap();
    let (_, stderr) = expect_code(&out, 2);
    assert!(stderr.contains("cannot read --ca-cert"), "{stderr}");
}

#[test]
fn a_tampered_layer_fails_the_check_and_is_never_uploaded() {
    let Some(registry) = Registry::start(false) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let layout = test_layout(home.path(), 6);
    // Same size, different bytes: only the digest check can notice.
    let manifest: serde_json::Value =
        serde_json::from_slice(&layout.single.manifest_bytes).unwrap();
    let layer: Sha256Digest = manifest["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let path = layout.path.join("blobs/sha256").join(layer.hex());
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let out = push_cmd(home.path())
        .arg(format!("oci:{}:single", layout.path.display()))
        .arg(format!("{}/tampered:v1", registry.addr()))
        .output()
        .unwrap();
    let (_, stderr) = expect_code(&out, 1);
    assert!(
        stderr.contains(&layer.hex()) && stderr.contains("sha256 differs"),
        "{stderr}"
    );
    assert_eq!(
        http_status(
            registry.port,
            "HEAD",
            &format!("/v2/tampered/blobs/{layer}")
        ),
        Some(404)
    );
    assert_eq!(
        http_status(registry.port, "GET", "/v2/tampered/manifests/v1"),
        Some(404)
    );

    // A blob missing from the layout: named, before any request.
    std::fs::remove_file(&path).unwrap();
    let out = push_cmd(home.path())
        .arg(format!("oci:{}:single", layout.path.display()))
        .arg("127.0.0.1:1/nowhere:v1")
        .output()
        .unwrap();
    let (_, stderr) = expect_code(&out, 2);
    assert!(
        stderr.contains(&format!("blob {layer} is missing")),
        "{stderr}"
    );
    assert!(!stderr.contains("Connecting"), "{stderr}");
}

#[test]
fn resets_503s_and_429s_are_retried_until_the_push_completes() {
    let Some((registry, proxy, home, layout)) = faulty(7) else {
        return;
    };
    let Some(_) = require_tool("skopeo") else {
        return;
    };
    // Reset the connection in the middle of the second chunk, twice.
    let chunks = Mutex::new(0usize);
    proxy.rule(
        Some(2),
        move |s| {
            if s.method != "PATCH" {
                return false;
            }
            let mut n = chunks.lock().unwrap();
            *n += 1;
            *n >= 2
        },
        Action::Reset(1 << 20),
    );
    // 503 for the first three upload starts, 502 for a manifest push.
    proxy.rule(
        Some(3),
        |s| s.method == "POST" && is_upload(s),
        Action::Respond(503, Vec::new()),
    );
    proxy.rule(
        Some(1),
        |s| s.method == "PUT" && s.path.contains("/manifests/"),
        Action::Respond(502, Vec::new()),
    );
    // 429 with Retry-After: 1 for the first blob check.
    proxy.rule(
        Some(1),
        |s| s.method == "HEAD",
        Action::Respond(429, vec![("Retry-After".into(), "1".into())]),
    );

    let target = format!("{}/faults/app:v1", proxy.addr());
    let started = Instant::now();
    let report = run_json(
        push_cmd(home.path())
            .arg(format!("oci:{}:single", layout.path.display()))
            .arg(&target)
            .args(["--format", "json", "--jobs", "2"]),
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    assert_eq!(report["digest"], digest_of(&layout.single).to_string());
    assert!(report["retries"].as_u64().unwrap() >= 7, "{report:#}");
    let log = proxy.log();
    assert_eq!(log.iter().filter(|(_, _, s)| *s == 0).count(), 2, "{log:?}");
    assert_eq!(
        log.iter().filter(|(_, _, s)| *s == 503).count(),
        3,
        "{log:?}"
    );
    assert_eq!(
        log.iter().filter(|(_, _, s)| *s == 429).count(),
        1,
        "{log:?}"
    );
    let direct = format!("{}/faults/app:v1", registry.addr());
    assert_eq!(skopeo_digest(&direct, None), digest_of(&layout.single));
}

#[test]
fn faults_that_never_stop_fail_with_the_number_of_attempts() {
    let Some((registry, proxy, home, layout)) = faulty(8) else {
        return;
    };
    proxy.rule(None, is_upload, Action::Respond(503, Vec::new()));
    let out = push_cmd(home.path())
        .arg(format!("oci:{}:single", layout.path.display()))
        .arg(format!("{}/never/app:v1", proxy.addr()))
        .args(["--retries", "3", "--jobs", "1"])
        .output()
        .unwrap();
    let (_, stderr) = expect_code(&out, 3);
    assert!(
        stderr.contains("gave up after 4 attempts") && stderr.contains("503 Service Unavailable"),
        "{stderr}"
    );
    assert!(stderr.contains("cannot push blob sha256:"), "{stderr}");
    assert_eq!(
        http_status(registry.port, "GET", "/v2/never/app/manifests/v1"),
        Some(404)
    );
}

#[test]
fn chunks_answered_201_and_refused_chunks_still_upload() {
    let Some((registry, proxy, home, layout)) = faulty(9) else {
        return;
    };
    let source = format!("oci:{}:single", layout.path.display());

    // ECR answers 201 to a chunk.
    proxy.rule(None, |s| s.method == "PATCH", Action::Rewrite(202, 201));
    let report = run_json(
        push_cmd(home.path())
            .arg(&source)
            .arg(format!("{}/ecr/app:v1", proxy.addr()))
            .args(["--format", "json"]),
    );
    assert_eq!(report["digest"], digest_of(&layout.single).to_string());
    assert!(
        proxy
            .log()
            .iter()
            .any(|(m, _, s)| m == "PATCH" && *s == 201)
    );

    // A registry that refuses PATCH gets the whole blob in one PUT.
    proxy.clear_rules();
    proxy.rule(
        None,
        |s| s.method == "PATCH",
        Action::Respond(405, Vec::new()),
    );
    let report = run_json(
        push_cmd(home.path())
            .arg(&source)
            .arg(format!("{}/nochunks/app:v1", proxy.addr()))
            .args(["--format", "json"]),
    );
    let methods = methods(&report);
    assert!(methods.iter().any(|m| m == "single-request"), "{methods:?}");
    assert_eq!(
        http_status(registry.port, "GET", "/v2/nochunks/app/manifests/v1"),
        Some(200)
    );
}

#[test]
fn an_interrupted_push_run_again_uploads_only_what_is_missing() {
    let Some((_registry, proxy, home, layout)) = faulty(10) else {
        return;
    };
    // After two blobs are in, every upload fails for good.
    let finished = Mutex::new(0usize);
    proxy.rule(
        None,
        move |s| {
            if !(is_upload(s) && s.method == "POST") {
                return false;
            }
            let mut n = finished.lock().unwrap();
            *n += 1;
            *n > 2
        },
        Action::Respond(500, Vec::new()),
    );
    let source = format!("oci:{}:multi", layout.path.display());
    let target = format!("{}/resume/app:v1", proxy.addr());
    let out = push_cmd(home.path())
        .args([&source, &target, "--jobs", "1", "--retries", "1"])
        .output()
        .unwrap();
    expect_code(&out, 3);

    proxy.clear_rules();
    let report = run_json(push_cmd(home.path()).args([&source, &target, "--format", "json"]));
    assert_eq!(
        blob_counts(&report),
        (layout.multi_blobs as u64 - 2, 2),
        "{report:#}"
    );
    assert_eq!(report["digest"], layout.multi_digest.to_string());
}

#[test]
fn a_registry_killed_mid_push_and_restarted_takes_the_next_push() {
    let Some(registry) = Registry::start(false) else {
        return;
    };
    let Some(_) = require_tool("skopeo") else {
        return;
    };
    let registry = Arc::new(Mutex::new(registry));
    let port = registry.lock().unwrap().port;
    let proxy = Proxy::start(port);
    let victim = registry.clone();
    proxy.rule(
        Some(1),
        |s| s.method == "PATCH",
        Action::Hook(Box::new(move || victim.lock().unwrap().kill())),
    );
    let home = tempfile::tempdir().unwrap();
    let layout = test_layout(home.path(), 11);
    let source = format!("oci:{}:single", layout.path.display());
    let target = format!("{}/killed/app:v1", proxy.addr());
    let out = push_cmd(home.path())
        .args([&source, &target, "--retries", "2"])
        .output()
        .unwrap();
    let (_, stderr) = expect_code(&out, 3);
    assert!(stderr.contains("gave up after 3 attempts"), "{stderr}");

    registry.lock().unwrap().restart();
    let report = run_json(push_cmd(home.path()).args([&source, &target, "--format", "json"]));
    assert_eq!(report["digest"], digest_of(&layout.single).to_string());
    let addr = registry.lock().unwrap().addr();
    assert_eq!(
        skopeo_digest(&format!("{addr}/killed/app:v1"), None),
        digest_of(&layout.single)
    );
}

/// A private CA and a server certificate it signed for 127.0.0.1, made with `openssl`:
/// (CA certificate, server certificate, server key).
fn private_ca(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let openssl = require_tool("openssl")?;
    let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
    let (cert, key, csr) = (
        dir.join("server.pem"),
        dir.join("server.key"),
        dir.join("server.csr"),
    );
    let ext = dir.join("server.ext");
    std::fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run_expect(
        Command::new(&openssl)
            .args(["req", "-x509", "-days", "2", "-subj", "/CN=airlock test CA"])
            .args(ec)
            .arg("-keyout")
            .arg(&ca_key)
            .arg("-out")
            .arg(&ca),
        0,
    );
    run_expect(
        Command::new(&openssl)
            .args(["req", "-subj", "/CN=127.0.0.1"])
            .args(ec)
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&csr),
        0,
    );
    run_expect(
        Command::new(&openssl)
            .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
            .arg("-in")
            .arg(&csr)
            .arg("-CA")
            .arg(&ca)
            .arg("-CAkey")
            .arg(&ca_key)
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(&cert),
        0,
    );
    Some((ca, cert, key))
}

#[test]
fn tls_registries_need_their_ca_unless_insecure() {
    let certs = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = private_ca(certs.path()) else {
        return;
    };
    let Some(registry) = Registry::start_with(false, Some((&cert, &key))) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let layout = test_layout(home.path(), 12);
    let source = format!("oci:{}:single", layout.path.display());
    let target = format!("{}/tls/app:v1", registry.addr());
    let digest = digest_of(&layout.single).to_string();

    // An unknown CA: refused at once, and loopback's plain-HTTP allowance does not hide it.
    let out = push_cmd(home.path())
        .args([&source, &target])
        .output()
        .unwrap();
    let (_, stderr) = expect_code(&out, 3);
    assert!(
        stderr.contains("TLS with")
            && stderr.contains("UnknownIssuer")
            && stderr.contains("--ca-cert"),
        "{stderr}"
    );
    assert!(!stderr.contains("Retrying"), "{stderr}");

    let report = run_json(
        push_cmd(home.path())
            .args([&source, &target, "--format", "json", "--ca-cert"])
            .arg(&ca),
    );
    assert_eq!(report["digest"], digest);
    let report = run_json(
        push_cmd(home.path())
            .args([&source, &target, "--format", "json"])
            .env("SSL_CERT_FILE", &ca),
    );
    assert_eq!(blob_counts(&report), (0, layout.single_blobs as u64));
    let report =
        run_json(push_cmd(home.path()).args([&source, &target, "--format", "json", "--insecure"]));
    assert_eq!(report["digest"], digest);
}

#[test]
fn pushes_a_two_platform_image_made_by_cargo_airlock_image() {
    let (Some(registry), Some(_)) = (Registry::start(false), require_tool("skopeo")) else {
        return;
    };
    let (guard, project) = copy_fixture("hello");
    let image = run_json(airlock().current_dir(&project).args([
        "image",
        "--target",
        "all",
        "--essentials",
        "--format",
        "json",
        "-q",
    ]));
    let index_digest = image["index"]["digest"].as_str().unwrap().to_owned();
    // No LAYOUT: the workspace's target/airlock/image, and its tag.
    let target = format!("{}/airlock/hello", registry.addr());
    let report = run_json(
        push_cmd(guard.path())
            .current_dir(&project)
            .arg(&target)
            .args(["--format", "json"]),
    );
    assert_eq!(report["digest"], index_digest);
    assert_eq!(report["tag"], "0.3.1");
    let platforms: Vec<&str> = report["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["platform"].as_str())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
    let tagged = format!("{target}:0.3.1");
    assert_eq!(skopeo_digest(&tagged, None).to_string(), index_digest);
    let arm = Command::new("skopeo")
        .args(["--override-arch", "arm64", "--override-variant", "v8"])
        .args(["inspect", "--tls-verify=false"])
        .arg(format!("docker://{tagged}"))
        .output()
        .unwrap();
    let arm: serde_json::Value = serde_json::from_slice(&arm.stdout).unwrap();
    assert_eq!(arm["Architecture"], "arm64");

    let back = skopeo_pull(&tagged, &guard.path().join("pulled"));
    assert_eq!(
        back.resolve(Some("back")).unwrap().digest().to_string(),
        index_digest
    );
    for image in image["images"].as_array().unwrap() {
        let digest: Sha256Digest = image["manifest"]["digest"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            back.blob_path(&digest).is_file(),
            "{digest} was not pulled back"
        );
    }
}

#[test]
fn an_attached_sbom_follows_its_image_into_the_referrers_tag() {
    let (Some(registry), Some(_)) = (Registry::start(false), require_tool("skopeo")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("layout");
    let writer = LayoutWriter::create(&path).unwrap();
    let small = layer(&[("hello", b"hello".to_vec())]);
    let mut app = image(&writer, Arch::Amd64, &[&small]);
    app.descriptor.set_platform(None);
    let tagged = with_ref_name(app.descriptor.clone(), "v1");
    let sbom_bytes = br#"{"bomFormat":"CycloneDX","specVersion":"1.5"}"#;
    let sbom = airlock::oci::artifact::attach(
        &writer,
        &tagged,
        "application/vnd.cyclonedx+json",
        &[airlock::oci::artifact::ArtifactFile {
            media_type: "application/vnd.cyclonedx+json",
            title: "sbom.cdx.json",
            bytes: sbom_bytes,
        }],
        "2024-01-02T03:04:05Z",
    )
    .unwrap();
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .manifests(vec![tagged, sbom.clone()])
        .build()
        .unwrap();
    writer.finish(&index).unwrap();
    let app_digest = digest_of(&app);
    let sbom_digest = Sha256Digest::try_from(sbom.digest()).unwrap();

    // No tag given: the image is the one entry that is not an artifact, and keeps its tag.
    let target = format!("{}/airlock/sbom", registry.addr());
    for round in 0..2 {
        let report = run_json(
            push_cmd(dir.path())
                .arg(path.display().to_string())
                .arg(&target)
                .args(["--format", "json"]),
        );
        assert_eq!(report["digest"], app_digest.to_string());
        assert_eq!(report["tag"], "v1");
        let referrer = &report["referrers"][0];
        assert_eq!(referrer["digest"], sbom_digest.to_string());
        assert_eq!(referrer["subject"], app_digest.to_string());
        assert_eq!(referrer["artifact_type"], "application/vnd.cyclonedx+json");
        assert_eq!(
            referrer["listed_by"],
            format!("sha256-{}", app_digest.hex())
        );
        if round == 1 {
            // The SBOM's empty config and its one layer were there too.
            assert_eq!(blob_counts(&report), (0, 4), "{report:#}");
        }
    }

    // Distribution 2.8 has no referrers API: the fallback tag lists the SBOM once.
    let listed = skopeo_inspect(&format!("{target}:sha256-{}", app_digest.hex()), true, None);
    let listed: serde_json::Value = serde_json::from_slice(&listed).unwrap();
    assert_eq!(
        listed["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    let entries = listed["manifests"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{listed:#}");
    assert_eq!(entries[0]["digest"], sbom_digest.to_string());
    assert_eq!(entries[0]["artifactType"], "application/vnd.cyclonedx+json");
    assert_eq!(
        entries[0]["annotations"]["org.opencontainers.image.created"],
        "2024-01-02T03:04:05Z"
    );
    let pushed_sbom = skopeo_inspect(&format!("{target}@{sbom_digest}"), true, None);
    let manifest: serde_json::Value = serde_json::from_slice(&pushed_sbom).unwrap();
    assert_eq!(manifest["subject"]["digest"], app_digest.to_string());
}

#[test]
fn blobs_upload_in_parallel_within_the_jobs_bound() {
    let Some((_registry, proxy, home, layout)) = faulty(13) else {
        return;
    };
    // Every blob upload takes a while, so uploads that can overlap do.
    proxy.rule(
        None,
        |s| s.method == "PUT" && is_upload(s),
        Action::Delay(Duration::from_millis(500)),
    );
    let source = format!("oci:{}:multi", layout.path.display());
    for (jobs, repository) in [(1, "one"), (3, "three")] {
        let report = run_json(
            push_cmd(home.path())
                .args([&source, &format!("{}/{repository}/app", proxy.addr())])
                .args(["--format", "json", "--jobs", &jobs.to_string()]),
        );
        assert_eq!(blob_counts(&report), (layout.multi_blobs as u64, 0));
        assert_eq!(proxy.max_in_flight(), jobs, "--jobs {jobs}");
    }
}

#[test]
fn a_registry_reporting_another_digest_fails_the_check() {
    let Some((_registry, proxy, home, layout)) = faulty(14) else {
        return;
    };
    proxy.rule(
        None,
        |s| s.method == "PUT" && s.path.contains("/manifests/"),
        Action::LieAboutDigest,
    );
    let out = push_cmd(home.path())
        .arg(format!("oci:{}:single", layout.path.display()))
        .arg(format!("{}/liar/app:v1", proxy.addr()))
        .output()
        .unwrap();
    let (_, stderr) = expect_code(&out, 1);
    assert!(
        stderr.contains("the registry reports digest")
            && stderr.contains(&format!("airlock sent as {}", digest_of(&layout.single))),
        "{stderr}"
    );
}
