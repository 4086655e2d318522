//! `cargo airlock push` against Debian's `docker-registry` (CNCF distribution 2.8) started by
//! each test on 127.0.0.1, read back with `skopeo`; faults come from a small HTTP proxy in
//! the test that sits between `push` and the registry.
//!
//! `AIRLOCK_RETRY_BASE_MS=10` keeps backoff short; `Retry-After` is still honoured in full.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use airlock::Sha256Digest;
use airlock::oci::layout::{LayoutWriter, with_ref_name};
use oci_spec::image::{Arch, ImageIndexBuilder};

use crate::support::*;

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
    is_upload_path(&seen.path)
}

fn is_upload_path(path: &str) -> bool {
    path.contains("/blobs/uploads/")
}

/// The path of a request, without its query.
fn path_only(path: &str) -> &str {
    path.split_once('?').map_or(path, |(p, _)| p)
}

/// The size of the single image's big (chunked) layer.
fn big_layer(layout: &TestLayout) -> (Sha256Digest, u64) {
    let manifest: serde_json::Value =
        serde_json::from_slice(&layout.single.manifest_bytes).unwrap();
    (
        manifest["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap(),
        manifest["layers"][0]["size"].as_u64().unwrap(),
    )
}

/// 4 MiB, airlock's `CHUNK_SIZE`.
const CHUNK: u64 = 4 << 20;

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
    let path = path_with_first(&bin);
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
    let report = run_json(
        push_cmd(home.path())
            .arg(format!("oci:{}:single", layout.path.display()))
            .arg(&target)
            .args(["--format", "json", "--jobs", "2"]),
    );
    assert_eq!(report["digest"], digest_of(&layout.single).to_string());
    // The refused HEAD was asked again no sooner than `Retry-After` said, though the backoff
    // of this run is 10 ms.
    let requests = proxy.requests();
    let refused = requests.iter().find(|r| r.status == 429).unwrap();
    let retry = requests
        .iter()
        .filter(|r| r.method == "HEAD" && r.path == refused.path && r.status != 429)
        .map(|r| r.arrived)
        .min()
        .unwrap();
    let gap = retry.duration_since(refused.answered);
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    // Each reset chunk was followed by a GET of the upload's status before the next PATCH.
    let upload_requests: Vec<&Logged> = requests
        .iter()
        .filter(|r| is_upload_path(&r.path))
        .collect();
    for (i, reset) in upload_requests.iter().enumerate() {
        if reset.method == "PATCH" && reset.status == 0 {
            let next = upload_requests[i + 1..]
                .iter()
                .find(|r| r.method != "POST")
                .unwrap();
            assert_eq!(
                (next.method.as_str(), next.status),
                ("GET", 204),
                "{requests:#?}"
            );
        }
    }
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
    // A blob upload's answer lies: caught on the blob, before any manifest goes up.
    proxy.rule(
        None,
        |s| s.method == "PUT" && is_upload(s),
        Action::LieAboutDigest,
    );
    let out = push_cmd(home.path())
        .arg(format!("oci:{}:single", layout.path.display()))
        .arg(format!("{}/blobliar/app:v1", proxy.addr()))
        .args(["--jobs", "1"])
        .output()
        .unwrap();
    let (_, stderr) = expect_code(&out, 1);
    let lied = proxy
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT" && is_upload_path(&r.path))
        .unwrap();
    let blob = lied
        .path
        .split("digest=")
        .nth(1)
        .unwrap()
        .replace("%3A", ":");
    assert!(
        stderr.contains(&format!("upload blob {blob}"))
            && stderr.contains(&format!("airlock sent as {blob}")),
        "{stderr}"
    );
    assert!(
        !proxy
            .log()
            .iter()
            .any(|(m, p, _)| m == "PUT" && p.contains("/manifests/")),
        "{:?}",
        proxy.log()
    );

    proxy.clear_rules();
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

#[test]
fn chunks_are_4_mib_contiguous_and_closed_by_an_empty_put() {
    let Some((_registry, proxy, home, layout)) = faulty(15) else {
        return;
    };
    let report = run_json(
        push_cmd(home.path())
            .arg(format!("oci:{}:single", layout.path.display()))
            .arg(format!("{}/chunks/app:v1", proxy.addr()))
            .args(["--format", "json"]),
    );
    assert_eq!(report["retries"], 0, "{report:#}");
    let (_, size) = big_layer(&layout);
    let requests = proxy.requests();
    let patches: Vec<&Logged> = requests.iter().filter(|r| r.method == "PATCH").collect();
    let mut next = 0;
    for (i, patch) in patches.iter().enumerate() {
        let (start, end) = patch.range().unwrap();
        let expected_len = CHUNK.min(size - start);
        assert_eq!(
            (start, end + 1 - start, patch.content_length, patch.status),
            (next, expected_len, Some(expected_len), 202),
            "chunk {i}: {patches:#?}"
        );
        next = end + 1;
    }
    assert_eq!((next, patches.len() as u64), (size, size.div_ceil(CHUNK)));
    let close = requests
        .iter()
        .find(|r| r.method == "PUT" && path_only(&r.path) == path_only(&patches[0].path))
        .unwrap();
    assert_eq!((close.content_length, close.status), (Some(0), 201));
}

#[test]
fn a_chunk_cut_off_mid_way_resumes_at_the_offset_the_registry_reports() {
    let Some((_registry, proxy, home, layout)) = faulty(16) else {
        return;
    };
    // Stable upload locations (as zot and most registries give), so the registry keeps the
    // part of the chunk it got and says so when asked.
    proxy.with_stable_upload_locations();
    let part = (1 << 20) + 12_345;
    let patches = Mutex::new(0usize);
    proxy.rule(
        Some(1),
        move |s| {
            let mut n = patches.lock().unwrap();
            *n += usize::from(s.method == "PATCH");
            s.method == "PATCH" && *n == 2
        },
        Action::ForwardPartThenReset(part),
    );
    let report = run_json(
        push_cmd(home.path())
            .arg(format!("oci:{}:single", layout.path.display()))
            .arg(format!("{}/resumed/app:v1", proxy.addr()))
            .args(["--format", "json", "--jobs", "1"]),
    );
    assert_eq!(report["digest"], digest_of(&layout.single).to_string());
    assert_eq!(report["retries"], 1, "{report:#}");

    let requests = proxy.requests();
    let cut = requests
        .iter()
        .position(|r| r.method == "PATCH" && r.status == 0)
        .unwrap();
    let upload = path_only(&requests[cut].path);
    let after: Vec<&Logged> = requests[cut + 1..]
        .iter()
        .filter(|r| path_only(&r.path) == upload)
        .collect();
    assert_eq!(requests[cut].range().unwrap().0, CHUNK, "{requests:#?}");
    // Asked where the upload stands, then went on from the registry's offset: past the
    // chunk boundary it had acknowledged, and not from byte 0.
    assert_eq!((after[0].method.as_str(), after[0].status), ("GET", 204));
    assert_eq!(after[1].method, "PATCH");
    assert_eq!(
        after[1].range().unwrap().0,
        CHUNK + part as u64,
        "{after:#?}"
    );
    // One upload started per blob: the cut one was never started again.
    let started = requests
        .iter()
        .filter(|r| r.method == "POST" && is_upload_path(&r.path))
        .count();
    assert_eq!(started, layout.single_blobs, "{requests:#?}");
}

#[test]
fn retry_after_sets_the_gap_before_the_retry() {
    let Some((_registry, proxy, home, layout)) = faulty(17) else {
        return;
    };
    proxy.rule(
        Some(1),
        |s| s.method == "HEAD",
        Action::Respond(429, vec![("Retry-After".into(), "2".into())]),
    );
    let report = run_json(
        push_cmd(home.path())
            .arg(format!("oci:{}:single", layout.path.display()))
            .arg(format!("{}/patient/app:v1", proxy.addr()))
            .args(["--format", "json", "--jobs", "1"]),
    );
    assert_eq!(report["retries"], 1, "{report:#}");
    let requests = proxy.requests();
    let refused = requests.iter().position(|r| r.status == 429).unwrap();
    let retry = requests[refused + 1..]
        .iter()
        .find(|r| r.path == requests[refused].path)
        .unwrap();
    assert_eq!((retry.method.as_str(), retry.status), ("HEAD", 404));
    // The backoff of this run is 10 ms: only Retry-After explains two seconds.
    let gap = retry.arrived.duration_since(requests[refused].answered);
    assert!(
        gap >= Duration::from_secs(2) && gap < Duration::from_secs(10),
        "retried after {gap:?}"
    );
}

#[test]
fn credentials_never_reach_a_host_an_upload_location_names() {
    let Some(registry) = Registry::start(false) else {
        return;
    };
    // The registry, behind token auth on 127.0.0.1, hands out upload locations on
    // 127.0.0.2: another host, which challenges with a realm of its own.
    let proxy = Proxy::start(registry.port);
    proxy.with_token_auth();
    let foreign = Proxy::start_on("127.0.0.2", registry.port);
    foreign.with_token_auth();
    let location = format!(
        "http://{}/v2/team/app/blobs/uploads/elsewhere",
        foreign.addr()
    );
    proxy.rule(
        None,
        |s| s.method == "POST" && is_upload(s),
        Action::Respond(202, vec![("Location".into(), location)]),
    );
    let home = tempfile::tempdir().unwrap();
    let layout = test_layout(home.path(), 18);
    let out = output_with_stdin(
        push_cmd(home.path()).args([
            &format!("oci:{}:single", layout.path.display()),
            &format!("{}/team/app:v1", proxy.addr()),
            "--username",
            USER,
            "--password-stdin",
            "--jobs",
            "1",
        ]),
        PASSWORD,
    );
    let (stdout, stderr) = expect_code(&out, 3);
    assert!(
        stderr.contains(&format!("http://{}", foreign.addr()))
            && stderr.contains("never to another host"),
        "{stderr}"
    );
    assert!(!format!("{stdout}{stderr}").contains(PASSWORD));

    // The foreign host got the upload request, but never an Authorization header, and its
    // token endpoint was never asked.
    let seen = foreign.requests();
    assert!(!seen.is_empty());
    assert!(
        seen.iter()
            .all(|r| !r.authorization && !r.path.starts_with("/token")),
        "{seen:#?}"
    );
    // The registry's own token was fetched once and never replaced.
    let tokens = proxy
        .log()
        .into_iter()
        .filter(|(_, p, _)| p.starts_with("/token"))
        .count();
    assert_eq!(tokens, 1, "{:?}", proxy.log());
}

#[test]
fn an_https_registry_naming_a_plain_http_realm_gets_no_credentials() {
    let certs = tempfile::tempdir().unwrap();
    let Some((ca, cert, key)) = private_ca(certs.path()) else {
        return;
    };
    // The token endpoint: a listener that logs whatever reaches it.
    let realm = Proxy::start(free_port());
    realm.with_token_auth();
    let Some(registry) = Registry::start_with_token_realm(
        &format!("http://{}/token", realm.addr()),
        &ca,
        (&cert, &key),
    ) else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let layout = test_layout(home.path(), 19);
    let source = format!("oci:{}:single", layout.path.display());
    let target = format!("{}/tls/app:v1", registry.addr());

    let out = output_with_stdin(
        push_cmd(home.path())
            .args([&source, &target, "--username", USER, "--password-stdin"])
            .arg("--ca-cert")
            .arg(&ca),
        PASSWORD,
    );
    let (_, stderr) = expect_code(&out, 3);
    assert!(
        stderr.contains("served over HTTPS")
            && stderr.contains(&format!("http://{}/token", realm.addr())),
        "{stderr}"
    );

    // An identity token from the Docker config is held back the same way.
    let docker = home.path().join(".docker");
    std::fs::create_dir_all(&docker).unwrap();
    std::fs::write(
        docker.join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"identitytoken": "{REFRESH_TOKEN}"}}}}}}"#,
            registry.addr()
        ),
    )
    .unwrap();
    let out = push_cmd(home.path())
        .args([&source, &target, "--ca-cert"])
        .arg(&ca)
        .output()
        .unwrap();
    let (_, stderr) = expect_code(&out, 3);
    assert!(stderr.contains("served over HTTPS"), "{stderr}");
    assert!(realm.requests().is_empty(), "{:#?}", realm.requests());
}

#[test]
fn a_registry_that_never_answers_is_given_up_on_in_seconds() {
    let home = tempfile::tempdir().unwrap();
    let layout = test_layout(home.path(), 20);
    let source = format!("oci:{}:single", layout.path.display());

    // Accepts, then silence: HTTPS gets no handshake, plain HTTP no reply. Through the flag
    // and through the environment.
    for by_env in [false, true] {
        let hung = Hung::start(false);
        let mut cmd = push_cmd(home.path());
        cmd.arg(&source).arg(format!("{}/app:v1", hung.addr()));
        if by_env {
            cmd.env("AIRLOCK_REGISTRY_TIMEOUT", "1");
        } else {
            cmd.args(["--timeout", "1"]);
        }
        let started = Instant::now();
        let out = cmd.output().unwrap();
        let took = started.elapsed();
        let (_, stderr) = expect_code(&out, 3);
        assert!(
            stderr.contains(&format!("{} did not answer", hung.addr()))
                && stderr.contains("within 1 s")
                && stderr.contains("--timeout"),
            "{stderr}"
        );
        assert!(!stderr.contains("Retrying"), "{stderr}");
        // One HTTPS and one plain HTTP probe, each given up on after a second; no retries.
        assert_eq!(hung.connections(), 2);
        assert!(took < Duration::from_secs(10), "took {took:?}");
    }

    // A plain HTTP server that answers a TLS handshake in clear and then never answers
    // HTTP: reported as not answering, not as a TLS failure.
    let hung = Hung::start(true);
    let out = push_cmd(home.path())
        .arg(&source)
        .arg(format!("{}/app:v1", hung.addr()))
        .args(["--timeout", "1"])
        .output()
        .unwrap();
    let (_, stderr) = expect_code(&out, 3);
    assert!(
        stderr.contains("did not answer") && stderr.contains("plain HTTP request"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("TLS with") && !stderr.contains("--ca-cert"),
        "{stderr}"
    );

    // Out of range or not a number: a usage error naming the flag.
    let out = push_cmd(home.path())
        .arg(&source)
        .arg(format!("{}/app:v1", hung.addr()))
        .env("AIRLOCK_REGISTRY_TIMEOUT", "soon")
        .output()
        .unwrap();
    let (_, stderr) = expect_code(&out, 2);
    assert!(stderr.contains("--timeout"), "{stderr}");
}

#[test]
fn an_upload_that_keeps_moving_outlasts_the_timeout() {
    let Some((_registry, proxy, home, layout)) = faulty(21) else {
        return;
    };
    // Chunks refused, so the 9 MiB layer goes in one streamed PUT, whose first 6 MiB crawl in
    // at 64 KiB every 30 ms: about 3 s in all, longer than --timeout 2, and never more than
    // a few tens of milliseconds without progress.
    proxy.rule(
        None,
        |s| s.method == "PATCH",
        Action::Respond(405, Vec::new()),
    );
    proxy.rule(
        Some(1),
        |s| s.method == "PUT" && s.headers.get("content-length").is_some_and(|l| l.len() > 6),
        Action::Throttle {
            bytes: 64 << 10,
            pause: Duration::from_millis(30),
            slow: 6 << 20,
        },
    );
    let report = run_json(
        push_cmd(home.path())
            .arg(format!("oci:{}:single", layout.path.display()))
            .arg(format!("{}/slow/app:v1", proxy.addr()))
            .args(["--format", "json", "--timeout", "2"]),
    );
    assert_eq!(report["digest"], digest_of(&layout.single).to_string());
    assert_eq!(report["retries"], 0, "{report:#}");
    assert!(methods(&report).iter().any(|m| m == "single-request"));
    let requests = proxy.requests();
    let (_, size) = big_layer(&layout);
    let slow = requests
        .iter()
        .find(|r| r.method == "PUT" && r.content_length == Some(size))
        .unwrap();
    let took = slow.answered.duration_since(slow.arrived);
    assert_eq!(slow.status, 201);
    assert!(took > Duration::from_secs(2), "{took:?}");
}
