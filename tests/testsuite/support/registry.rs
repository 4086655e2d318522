//! A CNCF distribution registry (Debian's `docker-registry`) started by a test on
//! 127.0.0.1, and the commands that talk to it: `cargo-airlock push` set up for tests and
//! `skopeo` reading back what was pushed.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock::Sha256Digest;

use super::{airlock, require_tool};

pub const USER: &str = "airlock";
pub const PASSWORD: &str = "s3cret-Pa55word";
/// The identity (OAuth2 refresh) token the test token server accepts.
pub const REFRESH_TOKEN: &str = "refresh-Tok3n-for-airlock";
/// Distribution 2.8 answers 404 for an OCI manifest unless the client accepts it.
pub const OCI_ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json";

/// `docker-registry serve` on 127.0.0.1 with storage in a temporary directory; killed on drop.
pub struct Registry {
    pub binary: PathBuf,
    pub child: Option<Child>,
    pub port: u16,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Registry {
    /// Starts a registry, with htpasswd Basic auth when `auth`. None (test skipped) when
    /// `docker-registry` or, for auth, `htpasswd` is missing.
    pub fn start(auth: bool) -> Option<Registry> {
        Registry::start_with(auth, None)
    }

    /// Like [`Registry::start`], serving HTTPS with `tls` = (certificate, key) when given.
    pub fn start_with(auth: bool, tls: Option<(&Path, &Path)>) -> Option<Registry> {
        Registry::launch(auth, None, tls)
    }

    /// A registry that wants Bearer tokens from `realm` (distribution's `auth.token`, which
    /// checks tokens against the certificates in `bundle`), serving HTTPS with `tls`.
    pub fn start_with_token_realm(
        realm: &str,
        bundle: &Path,
        tls: (&Path, &Path),
    ) -> Option<Registry> {
        Registry::launch(false, Some((realm, bundle)), Some(tls))
    }

    fn launch(
        auth: bool,
        token: Option<(&str, &Path)>,
        tls: Option<(&Path, &Path)>,
    ) -> Option<Registry> {
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
        if let Some((realm, bundle)) = token {
            auth_section = format!(
                "auth:\n  token:\n    realm: {realm}\n    service: airlock-test\n    \
                 issuer: airlock-test\n    rootcertbundle: {}\n",
                bundle.display()
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
    pub fn restart(&mut self) {
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

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The status of a plain HTTP request, None when nothing answers.
pub fn http_status(port: u16, method: &str, path: &str) -> Option<u16> {
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

/// `cargo-airlock push` with fast retries and no credentials from this machine.
pub fn push_cmd(home: &Path) -> Command {
    let mut cmd = airlock();
    cmd.arg("push")
        .env("AIRLOCK_RETRY_BASE_MS", "10")
        .env("HOME", home)
        .env("DOCKER_CONFIG", home.join(".docker"))
        .env_remove("AIRLOCK_REGISTRY_USERNAME")
        .env_remove("AIRLOCK_REGISTRY_PASSWORD")
        .env_remove("AIRLOCK_REGISTRY_TIMEOUT")
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
pub fn output_with_stdin(cmd: &mut Command, stdin: &str) -> std::process::Output {
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
pub fn expect_code(out: &std::process::Output, code: i32) -> (String, String) {
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

pub fn skopeo_inspect(reference: &str, raw: bool, creds: Option<&str>) -> Vec<u8> {
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
pub fn skopeo_digest(reference: &str, creds: Option<&str>) -> Sha256Digest {
    let json: serde_json::Value =
        serde_json::from_slice(&skopeo_inspect(reference, false, creds)).unwrap();
    json["Digest"].as_str().unwrap().parse().unwrap()
}

/// `skopeo copy --all --preserve-digests docker://REFERENCE oci:DEST:back`, opened.
pub fn skopeo_pull(reference: &str, dest: &Path) -> airlock::oci::Layout {
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

pub fn blob_counts(report: &serde_json::Value) -> (u64, u64) {
    (
        report["blobs_uploaded"].as_u64().unwrap(),
        report["blobs_skipped"].as_u64().unwrap(),
    )
}
