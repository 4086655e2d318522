//! `keygen`, `sign`, `verify --layout --key` and `push --sign`, checked by independent
//! verifiers: openssl for file signatures, Python's `cryptography` + PyNaCl for the key
//! format, `securesystemslib` for DSSE, skopeo (containers/image) for image signatures.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::support::*;

const PASSPHRASE: &str = "airlock-Test-passphrase-7";

/// `cargo airlock keygen --output DIR/NAME` with the test passphrase; returns (key, pub).
fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let prefix = dir.join(name);
    run_expect(
        airlock()
            .env("AIRLOCK_KEY_PASSWORD", PASSPHRASE)
            .arg("keygen")
            .arg("--output")
            .arg(&prefix),
        0,
    );
    (prefix.with_extension("key"), prefix.with_extension("pub"))
}

/// `cargo airlock sign …` with the test passphrase.
fn sign() -> Command {
    let mut cmd = airlock();
    cmd.env("AIRLOCK_KEY_PASSWORD", PASSPHRASE).arg("sign");
    cmd
}

/// Python 3 with `modules` importable, or None (test skipped) with the reason.
fn python_with(modules: &[&str]) -> Option<PathBuf> {
    let python = require_tool("python3")?;
    for module in modules {
        let ok = Command::new(&python)
            .args(["-c", &format!("import {module}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            skip_or_fail(&format!("the Python module `{module}` is not installed"));
            return None;
        }
    }
    Some(python)
}

#[test]
fn keygen_writes_cosign_formats_and_never_shows_secrets() {
    let Some(openssl) = require_tool("openssl") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("release");
    let (stdout, stderr) = run_expect(
        airlock()
            .env("AIRLOCK_KEY_PASSWORD", PASSPHRASE)
            .args(["-vvv", "keygen", "--format", "json", "--output"])
            .arg(&prefix),
        0,
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let key = dir.path().join("release.key");
    let public = dir.path().join("release.pub");
    assert_eq!(report["private_key"], key.display().to_string());
    assert_eq!(report["public_key"], public.display().to_string());

    let private_pem = std::fs::read_to_string(&key).unwrap();
    assert!(private_pem.starts_with("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\n"));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // The secrets are nowhere in what the command printed, even at -vvv.
    let body_line = private_pem.lines().nth(1).unwrap();
    for shown in [&stdout, &stderr] {
        assert!(!shown.contains(PASSPHRASE), "{shown}");
        assert!(!shown.contains(body_line), "{shown}");
        assert!(!shown.contains("PRIVATE KEY-----"), "{shown}");
    }

    // openssl reads the public key as a P-256 PKIX key, and its DER hash is the key id.
    let out = Command::new(&openssl)
        .args(["pkey", "-pubin", "-outform", "DER", "-in"])
        .arg(&public)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        report["key_id"],
        airlock::Sha256Digest::of(&out.stdout).hex()
    );
    let text = Command::new(&openssl)
        .args(["pkey", "-pubin", "-noout", "-text", "-in"])
        .arg(&public)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("prime256v1"),
        "{text:?}"
    );

    // A second keygen onto the same files is refused and changes nothing.
    let (_, stderr) = run_expect(
        airlock()
            .env("AIRLOCK_KEY_PASSWORD", "other")
            .arg("keygen")
            .arg("--output")
            .arg(&prefix),
        2,
    );
    assert!(stderr.contains("already exist"), "{stderr}");
    assert_eq!(std::fs::read_to_string(&key).unwrap(), private_pem);

    // No passphrase is an error unless an empty one is asked for.
    let (_, stderr) = run_expect(
        airlock()
            .env_remove("AIRLOCK_KEY_PASSWORD")
            .arg("keygen")
            .arg("--output")
            .arg(dir.path().join("none")),
        2,
    );
    assert!(stderr.contains("--empty-password"), "{stderr}");
    assert!(!dir.path().join("none.key").exists());
    run_expect(
        airlock()
            .env_remove("AIRLOCK_KEY_PASSWORD")
            .args(["keygen", "--empty-password", "--output"])
            .arg(dir.path().join("empty")),
        0,
    );
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    run_expect(
        airlock()
            .env_remove("AIRLOCK_KEY_PASSWORD")
            .args(["sign", "--key"])
            .arg(dir.path().join("empty.key"))
            .arg(&file),
        0,
    );
}

#[test]
fn sha256sums_signature_verifies_with_plain_openssl() {
    let Some(openssl) = require_tool("openssl") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "cosign");
    let release = dir.path().join("release");
    std::fs::create_dir(&release).unwrap();
    std::fs::write(release.join("app.tar.gz"), b"archive bytes").unwrap();
    let sums = release.join("SHA256SUMS");
    std::fs::write(
        &sums,
        format!(
            "{}  app.tar.gz\n",
            airlock::Sha256Digest::of(b"archive bytes").hex()
        ),
    )
    .unwrap();
    let report = run_json(
        sign()
            .args(["--format", "json", "--key"])
            .arg(&key)
            .arg(&release),
    );
    assert_eq!(
        report["files"][0]["signature"],
        release.join("SHA256SUMS.sig").display().to_string()
    );
    assert_eq!(report["images"], serde_json::json!([]));

    // `cosign sign-blob`'s format: one base64 line of an ASN.1 DER signature.
    let encoded = std::fs::read_to_string(release.join("SHA256SUMS.sig")).unwrap();
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .unwrap();
    assert_eq!(der[0], 0x30, "an ASN.1 SEQUENCE");
    let sig_file = dir.path().join("sig.der");
    std::fs::write(&sig_file, &der).unwrap();
    let verify = |file: &Path| {
        Command::new(&openssl)
            .args(["dgst", "-sha256", "-verify"])
            .arg(&public)
            .arg("-signature")
            .arg(&sig_file)
            .arg(file)
            .output()
            .unwrap()
    };
    let out = verify(&sums);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Verified OK");

    let tampered = dir.path().join("SHA256SUMS.tampered");
    let mut bytes = std::fs::read(&sums).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&tampered, bytes).unwrap();
    assert!(!verify(&tampered).status.success());
}

#[test]
fn wrong_passphrase_is_an_input_error_naming_the_key_never_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "cosign");
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "x").unwrap();
    let (stdout, stderr) = run_expect(
        airlock()
            .env("AIRLOCK_KEY_PASSWORD", "not-the-passphrase")
            .args(["-vvv", "sign", "--key"])
            .arg(&key)
            .arg(&file),
        2,
    );
    assert!(stderr.contains("cosign.key"), "{stderr}");
    assert!(stderr.contains("wrong passphrase"), "{stderr}");
    for shown in [&stdout, &stderr] {
        assert!(!shown.contains("not-the-passphrase"), "{shown}");
        assert!(!shown.contains(PASSPHRASE), "{shown}");
    }
    assert!(!dir.path().join("notes.txt.sig").exists());

    // The passphrase from stdin works too.
    let out = output_with_stdin(
        airlock()
            .env_remove("AIRLOCK_KEY_PASSWORD")
            .args(["sign", "--password-stdin", "--key"])
            .arg(&key)
            .arg(&file),
        &format!("{PASSPHRASE}\n"),
    );
    expect_code(&out, 0);
    assert!(dir.path().join("notes.txt.sig").exists());
}

/// A key sealed by another implementation: a PKCS#8 key from OpenSSL (Python's
/// `cryptography`, laid out as Go's `x509.MarshalPKCS8PrivateKey` lays it out), sealed with
/// Python's scrypt and PyNaCl's secretbox under cosign 1.x's PEM label and scrypt cost.
const PYTHON_COSIGN_KEY: &str = r#"
import base64, hashlib, json, os, sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
import nacl.secret

key = ec.generate_private_key(ec.SECP256R1())
pkcs8 = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
salt, nonce = os.urandom(32), os.urandom(24)
box_key = hashlib.scrypt(sys.argv[2].encode(), salt=salt, n=32768, r=8, p=1, dklen=32,
                         maxmem=64 << 20)
sealed = nacl.secret.SecretBox(box_key).encrypt(pkcs8, nonce).ciphertext
document = json.dumps({
    "kdf": {"name": "scrypt", "params": {"N": 32768, "r": 8, "p": 1},
            "salt": base64.b64encode(salt).decode()},
    "cipher": {"name": "nacl/secretbox", "nonce": base64.b64encode(nonce).decode()},
    "ciphertext": base64.b64encode(sealed).decode(),
}).encode()
body = base64.b64encode(document).decode()
lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
with open(sys.argv[1] + ".key", "w") as f:
    f.write("-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\n" + lines
            + "\n-----END ENCRYPTED COSIGN PRIVATE KEY-----\n")
with open(sys.argv[1] + ".pub", "wb") as f:
    f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo))
"#;

#[test]
fn a_key_sealed_by_another_implementation_signs() {
    let Some(python) = python_with(&["cryptography", "nacl"]) else {
        return;
    };
    let Some(openssl) = require_tool("openssl") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("foreign");
    let out = Command::new(python)
        .args(["-c", PYTHON_COSIGN_KEY])
        .arg(&prefix)
        .arg(PASSPHRASE)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let file = dir.path().join("SHA256SUMS");
    std::fs::write(&file, "0  x\n").unwrap();
    run_expect(
        sign()
            .arg("--key")
            .arg(prefix.with_extension("key"))
            .arg(&file),
        0,
    );
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD
        .decode(
            std::fs::read_to_string(dir.path().join("SHA256SUMS.sig"))
                .unwrap()
                .trim(),
        )
        .unwrap();
    std::fs::write(dir.path().join("sig.der"), der).unwrap();
    let out = Command::new(openssl)
        .args(["dgst", "-sha256", "-verify"])
        .arg(prefix.with_extension("pub"))
        .arg("-signature")
        .arg(dir.path().join("sig.der"))
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// `verify --layout DIR --key KEY --format json`, expecting `code`.
fn verify_layout(layout: &Path, key: &Path, code: i32) -> serde_json::Value {
    let (stdout, _) = run_expect(
        airlock()
            .args(["verify", "--format", "json", "--layout"])
            .arg(layout)
            .arg("--key")
            .arg(key),
        code,
    );
    serde_json::from_str(&stdout).unwrap()
}

/// The `index.json` of a layout, to edit as an attacker would.
fn read_index(layout: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap()
}

fn write_index(layout: &Path, index: &serde_json::Value) {
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(index).unwrap(),
    )
    .unwrap();
}

fn ref_name(entry: &serde_json::Value) -> Option<&str> {
    entry["annotations"]["org.opencontainers.image.ref.name"].as_str()
}

/// Findings of a `verify` report as (kind, path, message).
fn findings(report: &serde_json::Value) -> Vec<(String, String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                f["path"].as_str().unwrap().to_owned(),
                f["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn verify_layout_key_accepts_signed_images_and_names_each_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "cosign");
    let (other_key, other_public) = keygen(dir.path(), "other");
    let test = test_layout(dir.path(), 7);
    let single = digest_of(&test.single);
    let multi = test.multi_digest;

    // An image without a name in the layout needs --signed-repository.
    let (_, stderr) = run_expect(sign().arg("--key").arg(&key).arg(&test.path), 2);
    assert!(stderr.contains("--signed-repository"), "{stderr}");
    let report = run_json(
        sign()
            .args([
                "--format",
                "json",
                "--signed-repository",
                "registry.example.com/team/hello",
            ])
            .arg("--key")
            .arg(&key)
            .arg(&test.path),
    );
    // single, the index and its two platform manifests.
    assert_eq!(report["images"].as_array().unwrap().len(), 4);

    let report = verify_layout(&test.path, &public, 0);
    let signatures = report["signatures"].as_array().unwrap();
    assert_eq!(
        signatures.len(),
        2,
        "the two images of the layout: {report:#}"
    );
    for image in signatures {
        assert_eq!(
            image["signed_repositories"],
            serde_json::json!(["registry.example.com/team/hello"])
        );
    }
    let original = read_index(&test.path);

    // Another key's public key: every image is named, exit 1.
    let report = verify_layout(&test.path, &other_public, 1);
    let found = findings(&report);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found
            .iter()
            .all(|(kind, _, message)| kind == "signature-invalid"
                && message.contains("is not by the key"))
    );

    // 1. An image manifest replaced: `single` now points at another manifest.
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&test.single.manifest_bytes).unwrap();
    manifest["annotations"] = serde_json::json!({"evil": "yes"});
    let replaced = serde_json::to_vec(&manifest).unwrap();
    let replaced_digest = airlock::Sha256Digest::of(&replaced);
    std::fs::write(
        test.path.join("blobs/sha256").join(replaced_digest.hex()),
        &replaced,
    )
    .unwrap();
    let mut index = original.clone();
    for entry in index["manifests"].as_array_mut().unwrap() {
        if ref_name(entry) == Some("single") {
            entry["digest"] = serde_json::json!(replaced_digest.to_string());
            entry["size"] = serde_json::json!(replaced.len());
        }
    }
    write_index(&test.path, &index);
    let report = verify_layout(&test.path, &public, 1);
    let found = findings(&report);
    assert_eq!(found.len(), 1, "{found:?}");
    let (kind, path, message) = &found[0];
    assert_eq!(kind, "signature-missing");
    assert_eq!(path, &format!("oci:{}:single", test.path.display()));
    assert!(message.contains(&replaced_digest.to_string()), "{message}");

    // 2. The signature of another image copied over `single`'s (its referrer removed too).
    let mut index = original.clone();
    let entries = index["manifests"].as_array_mut().unwrap();
    let multi_sig = entries
        .iter()
        .find(|e| ref_name(e) == Some(&format!("sha256-{}.sig", multi.hex())))
        .unwrap()
        .clone();
    let single_referrer = {
        let layout = airlock::oci::Layout::open(&test.path).unwrap();
        entries
            .iter()
            .find(|e| {
                ref_name(e).is_none()
                    && e["artifactType"] == airlock::signing::attach::SIGNATURE_ARTIFACT_TYPE
                    && {
                        let descriptor: oci_spec::image::Descriptor =
                            serde_json::from_value((*e).clone()).unwrap();
                        let manifest: oci_spec::image::ImageManifest =
                            layout.read_json(&descriptor).unwrap();
                        manifest.subject().as_ref().unwrap().digest().to_string()
                            == single.to_string()
                    }
            })
            .unwrap()["digest"]
            .clone()
    };
    entries.retain(|e| e["digest"] != single_referrer);
    for entry in entries.iter_mut() {
        if ref_name(entry) == Some(&format!("sha256-{}.sig", single.hex())) {
            let tag = entry["annotations"].clone();
            *entry = multi_sig.clone();
            entry["annotations"] = tag;
        }
    }
    write_index(&test.path, &index);
    let report = verify_layout(&test.path, &public, 1);
    let found = findings(&report);
    assert_eq!(found.len(), 1, "{found:?}");
    let (kind, path, message) = &found[0];
    assert_eq!(kind, "signature-invalid");
    assert_eq!(path, &format!("oci:{}:single", test.path.display()));
    assert!(
        message.contains(&format!("is for another image, {multi}")),
        "{message}"
    );

    // 3. The layout signed anew with another key, its own signatures gone.
    let fresh = tempfile::tempdir().unwrap();
    let resigned = test_layout(fresh.path(), 7);
    run_expect(
        sign()
            .args([
                "--signed-repository",
                "registry.example.com/team/hello",
                "--key",
            ])
            .arg(&other_key)
            .arg(&resigned.path),
        0,
    );
    let report = verify_layout(&resigned.path, &public, 1);
    let found = findings(&report);
    assert_eq!(found.len(), 2, "{found:?}");
    for (kind, _, message) in &found {
        assert_eq!(kind, "signature-invalid");
        assert!(message.contains("is not by the key"), "{message}");
    }
    verify_layout(&resigned.path, &other_public, 0);
}

/// An independent reader of cosign signatures in a registry, written from containers/image's
/// documented rules (`containers-policy.json(5)`, `sigstoreSigned` with `signedIdentity`), as
/// skopeo would apply them with `use-sigstore-attachments: true`: resolve the image's manifest
/// digest, read the `sha256-<hex>.sig` manifest and its layers, verify each signature over its
/// payload with the public key (Python's `cryptography`), parse the payload strictly, and
/// match `docker-manifest-digest` and `docker-reference`. Exits 0 when a signature is accepted,
/// 1 with the reasons when none is.
const POLICY_CHECK: &str = r#"
import base64, hashlib, json, sys, urllib.request, urllib.error
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

registry, image, key_path, identity = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
OCI = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"

def get(path, accept):
    request = urllib.request.Request(f"http://{registry}/v2/{path}", headers={"Accept": accept})
    try:
        return urllib.request.urlopen(request).read()
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise

name, _, rest = image.partition("/")[2], None, None
repository_ref = image.split("/", 1)[1]
if "@" in repository_ref:
    repository, digest_ref = repository_ref.split("@")
    tag, reference = None, digest_ref
else:
    repository, tag = repository_ref.rsplit(":", 1)
    reference = tag
full_name = f"{registry}/{repository}"
manifest = get(f"{repository}/manifests/{reference}", OCI)
digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
sig_manifest = get(f"{repository}/manifests/sha256-{digest[7:]}.sig", "application/vnd.oci.image.manifest.v1+json")
if sig_manifest is None:
    sys.exit(f"rejected: no signatures for {digest}")
key = serialization.load_pem_public_key(open(key_path, "rb").read())

def identity_ok(signed):
    if ":" in signed.rsplit("/", 1)[-1] or "@" in signed:
        signed_name, signed_is_name_only = signed, False
    else:
        signed_name, signed_is_name_only = signed, True
    kind = identity.get("type", "matchRepoDigestOrExact")
    if kind == "matchRepository":
        return signed_name == full_name
    if kind == "exactRepository":
        return signed_name == identity["dockerRepository"]
    intended_name = full_name
    if kind == "remapIdentity":
        prefix = identity["prefix"]
        if intended_name == prefix or intended_name.startswith(prefix + "/"):
            intended_name = identity["signedPrefix"] + intended_name[len(prefix):]
    elif kind != "matchRepoDigestOrExact":
        sys.exit(f"unknown signedIdentity {kind}")
    # matchRepoDigestOrExact: a tagged image needs exactly name:tag; a digest reference the
    # same repository. A signature naming only a repository never matches a tag.
    if signed_is_name_only and tag is not None:
        return False
    if tag is not None:
        return signed == f"{intended_name}:{tag}"
    return signed_name == intended_name

reasons = []
for layer in json.loads(sig_manifest)["layers"]:
    if layer["mediaType"] != "application/vnd.dev.cosign.simplesigning.v1+json":
        continue
    payload = get(f"{repository}/blobs/{layer['digest']}", "*/*")
    assert "sha256:" + hashlib.sha256(payload).hexdigest() == layer["digest"]
    signature = base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"])
    try:
        key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
    except Exception:
        reasons.append("signature by another key")
        continue
    document = json.loads(payload)
    critical = document["critical"]
    assert set(document) == {"critical", "optional"}
    assert set(critical) == {"identity", "image", "type"}
    assert critical["type"] == "cosign container image signature"
    if critical["image"]["docker-manifest-digest"] != digest:
        reasons.append("signature of another image")
        continue
    signed = critical["identity"]["docker-reference"]
    if not identity_ok(signed):
        reasons.append(f"identity {signed} not accepted by {identity}")
        continue
    print(f"accepted: {digest} signed for {signed}")
    sys.exit(0)
sys.exit("rejected: " + "; ".join(reasons))
"#;

/// Whether the policy checker accepts `image` (`registry/repository:tag` or `@digest`).
fn policy_accepts(
    python: &Path,
    registry: &Registry,
    image: &str,
    key: &Path,
    identity: serde_json::Value,
) -> (bool, String) {
    let out = Command::new(python)
        .args(["-c", POLICY_CHECK, &registry.addr(), image])
        .arg(key)
        .arg(identity.to_string())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("accepted:") || text.contains("rejected:"),
        "the checker failed: {text}"
    );
    (out.status.success(), text)
}

/// skopeo copy under a `policy.json` requiring `sigstoreSigned` with `key` and `identity`,
/// `use-sigstore-attachments: true` for the registry. None when this skopeo cannot check
/// sigstore signatures at all (Debian builds it with sigstore disabled), with the reason.
fn skopeo_accepts(
    dir: &Path,
    registry: &Registry,
    image: &str,
    key: &Path,
    identity: serde_json::Value,
) -> Option<bool> {
    let skopeo = airlock::process::find_on_path("skopeo")?;
    let registries_d = dir.join("registries.d");
    std::fs::create_dir_all(&registries_d).unwrap();
    std::fs::write(
        registries_d.join("airlock-test.yaml"),
        format!(
            "docker:\n  {}:\n    use-sigstore-attachments: true\n",
            registry.addr()
        ),
    )
    .unwrap();
    let policy = dir.join("policy.json");
    std::fs::write(
        &policy,
        serde_json::json!({
            "default": [{"type": "reject"}],
            "transports": {
                "docker": {registry.addr(): [{
                    "type": "sigstoreSigned",
                    "keyPath": key,
                    "signedIdentity": identity,
                }]},
                "dir": {"": [{"type": "insecureAcceptAnything"}]},
            },
        })
        .to_string(),
    )
    .unwrap();
    let dest = tempfile::tempdir().unwrap();
    let out = Command::new(skopeo)
        .arg("--policy")
        .arg(&policy)
        .arg("--registries.d")
        .arg(&registries_d)
        .args(["copy", "--src-tls-verify=false"])
        .arg(format!("docker://{image}"))
        .arg(format!("dir:{}", dest.path().join("image").display()))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("sigstore disabled") {
        eprintln!(
            "skopeo check skipped: this skopeo is built with sigstore disabled (Debian's \
             \"Debian-local change\"), so it can neither sign nor verify sigstore signatures; \
             the independent Python reader checked the same rules"
        );
        return None;
    }
    Some(out.status.success())
}

#[test]
fn push_sign_and_moved_images_meet_signed_identity_policies() {
    let Some(python) = python_with(&["cryptography"]) else {
        return;
    };
    let Some(registry) = Registry::start(false) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "cosign");
    let (_, other_public) = keygen(dir.path(), "other");
    let test = test_layout(dir.path(), 11);
    let home = dir.path().join("home");
    let host = registry.addr();

    // Exact: signed at push time for the destination itself.
    let (stdout, stderr) = run_expect(
        push_cmd(&home)
            .env("AIRLOCK_KEY_PASSWORD", PASSPHRASE)
            .args(["-vvv", "--format", "json", "--sign", "--key"])
            .arg(&key)
            .arg(format!("oci:{}:single", test.path.display()))
            .arg(format!("{host}/team/hello:1.0")),
        0,
    );
    assert!(!stdout.contains(PASSPHRASE) && !stderr.contains(PASSPHRASE));
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let single = digest_of(&test.single);
    let attachment = &report["attachments"][0];
    assert_eq!(attachment["tag"], format!("sha256-{}.sig", single.hex()));
    assert_eq!(
        attachment["signed_repository"],
        format!("{host}/team/hello")
    );
    assert_eq!(attachment["listed_by"], format!("sha256-{}", single.hex()));
    // The mechanism: the registry holds cosign's tag, whose payload names the destination.
    let sig_manifest: serde_json::Value = serde_json::from_slice(&skopeo_inspect(
        &format!("{host}/team/hello:sha256-{}.sig", single.hex()),
        true,
        None,
    ))
    .unwrap();
    assert_eq!(
        sig_manifest["layers"][0]["mediaType"],
        "application/vnd.dev.cosign.simplesigning.v1+json"
    );

    let exact = format!("{host}/team/hello:1.0");
    let by_digest = format!("{host}/team/hello@{single}");
    for (image, key, identity, accepted) in [
        (
            &exact,
            &public,
            serde_json::json!({"type": "matchRepository"}),
            true,
        ),
        (
            &exact,
            &public,
            serde_json::json!({"type": "exactRepository", "dockerRepository": format!("{host}/team/hello")}),
            true,
        ),
        (
            &exact,
            &other_public,
            serde_json::json!({"type": "matchRepository"}),
            false,
        ),
        // The default rule wants `name:tag` in the signature; cosign-style signatures name
        // the repository only, so a tag pull needs matchRepository, a digest pull does not.
        (
            &exact,
            &public,
            serde_json::json!({"type": "matchRepoDigestOrExact"}),
            false,
        ),
        (
            &by_digest,
            &public,
            serde_json::json!({"type": "matchRepoDigestOrExact"}),
            true,
        ),
    ] {
        let (ok, text) = policy_accepts(&python, &registry, image, key, identity.clone());
        assert_eq!(ok, accepted, "{image} with {identity}: {text}");
        if let Some(ok) = skopeo_accepts(dir.path(), &registry, image, key, identity.clone()) {
            assert_eq!(ok, accepted, "skopeo: {image} with {identity}");
        }
    }

    // Moved: signed outside the air gap for its outside name, pushed inside under another.
    run_expect(
        sign()
            .args([
                "--signed-repository",
                "registry.example.com/team/hello",
                "--key",
            ])
            .arg(&key)
            .arg(format!("oci:{}:single", test.path.display())),
        0,
    );
    let report = run_json(
        push_cmd(&home)
            .args(["--format", "json"])
            .arg(format!("oci:{}:single", test.path.display()))
            .arg(format!("{host}/mirror/hello:1.0")),
    );
    assert_eq!(report["attachments"][0]["layers"], 1);
    assert_eq!(
        report["attachments"][0]["signed_repository"],
        serde_json::Value::Null
    );
    let moved = format!("{host}/mirror/hello:1.0");
    let moved_digest = format!("{host}/mirror/hello@{single}");
    let remap = serde_json::json!({
        "type": "remapIdentity",
        "prefix": format!("{host}/mirror"),
        "signedPrefix": "registry.example.com/team",
    });
    for (image, identity, accepted) in [
        (
            &moved,
            serde_json::json!({"type": "matchRepository"}),
            false,
        ),
        (
            &moved,
            serde_json::json!({"type": "exactRepository", "dockerRepository": "registry.example.com/team/hello"}),
            true,
        ),
        (&moved_digest, remap.clone(), true),
        (&moved, remap.clone(), false),
    ] {
        let (ok, text) = policy_accepts(&python, &registry, image, &public, identity.clone());
        assert_eq!(ok, accepted, "{image} with {identity}: {text}");
        if let Some(ok) = skopeo_accepts(dir.path(), &registry, image, &public, identity.clone()) {
            assert_eq!(ok, accepted, "skopeo: {image} with {identity}");
        }
    }

    // Signing again at push time adds the destination's signature beside the outside one.
    let report = run_json(
        push_cmd(&home)
            .env("AIRLOCK_KEY_PASSWORD", PASSPHRASE)
            .args(["--format", "json", "--sign", "--key"])
            .arg(&key)
            .arg(format!("oci:{}:single", test.path.display()))
            .arg(format!("{host}/mirror/hello:1.0")),
    );
    assert_eq!(report["attachments"][0]["layers"], 2);
    let (ok, text) = policy_accepts(
        &python,
        &registry,
        &moved,
        &public,
        serde_json::json!({"type": "matchRepository"}),
    );
    assert!(ok, "{text}");

    // An index: the index and each platform's manifest are signed, children first.
    let report = run_json(
        push_cmd(&home)
            .env("AIRLOCK_KEY_PASSWORD", PASSPHRASE)
            .args(["--format", "json", "--sign", "--key"])
            .arg(&key)
            .arg(format!("oci:{}:multi", test.path.display()))
            .arg(format!("{host}/team/multi:1.0")),
    );
    let subjects: Vec<String> = report["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["subject"].as_str().unwrap().to_owned())
        .collect();
    let mut expected: Vec<String> = test
        .multi_children
        .iter()
        .map(|c| digest_of(c).to_string())
        .collect();
    expected.push(test.multi_digest.to_string());
    assert_eq!(subjects, expected);
    let (ok, text) = policy_accepts(
        &python,
        &registry,
        &format!("{host}/team/multi:1.0"),
        &public,
        serde_json::json!({"type": "matchRepository"}),
    );
    assert!(ok, "{text}");

    // A wrong passphrase stops the push before anything reaches the registry.
    let (_, stderr) = run_expect(
        push_cmd(&home)
            .env("AIRLOCK_KEY_PASSWORD", "wrong")
            .args(["--sign", "--key"])
            .arg(&key)
            .arg(format!("oci:{}:single", test.path.display()))
            .arg(format!("{host}/never/hello:1.0")),
        2,
    );
    assert!(stderr.contains("wrong passphrase"), "{stderr}");
    assert_eq!(
        http_status(registry.port, "GET", "/v2/never/hello/manifests/1.0"),
        Some(404)
    );
}

/// securesystemslib (the reference DSSE implementation in Python) both ways: it verifies
/// airlock's envelope with airlock's public key (`argv[1]` envelope, `argv[2]` key PEM,
/// `argv[3]` the keyid airlock wrote, which must be the SHA-256 of the key's DER), then signs
/// its own envelope with a key of its own (written to `argv[4]`, public key to `argv[5]`).
const SECURESYSTEMSLIB_DSSE: &str = r#"
import hashlib, json, sys
from cryptography.hazmat.primitives import serialization
from securesystemslib.dsse import Envelope
from securesystemslib.signer import CryptoSigner, SSlibKey

public = serialization.load_pem_public_key(open(sys.argv[2], "rb").read())
der = public.public_bytes(serialization.Encoding.DER,
                          serialization.PublicFormat.SubjectPublicKeyInfo)
assert sys.argv[3] == hashlib.sha256(der).hexdigest(), "keyid is not the key's DER hash"
envelope = Envelope.from_dict(json.load(open(sys.argv[1])))
assert envelope.payload_type == "application/vnd.in-toto+json"
key = SSlibKey.from_crypto(public, keyid=sys.argv[3], scheme="ecdsa-sha2-nistp256")
envelope.verify([key], 1)
statement = json.loads(envelope.payload)
print("verified", statement["predicateType"])

signer = CryptoSigner.generate_ecdsa()
theirs = Envelope(b'{"_type":"https://in-toto.io/Statement/v1","subject":[]}',
                  "application/vnd.in-toto+json", {})
theirs.sign(signer)
json.dump(theirs.to_dict(), open(sys.argv[4], "w"))
open(sys.argv[5], "wb").write(signer.public_key.to_dict()["keyval"]["public"].encode())
"#;

#[test]
fn dsse_envelopes_interoperate_with_securesystemslib() {
    use airlock::signing::{PublicKey, SigningKey, dsse};
    let Some(python) = python_with(&["securesystemslib.dsse", "cryptography"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "cosign");
    let signing_key =
        SigningKey::load(&key, &airlock::signing::Passphrase::new(PASSPHRASE)).unwrap();
    let statement = serde_json::json!({
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "app", "digest": {"sha256": "ab".repeat(32)}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {"buildDefinition": {"buildType": "https://airlock.example/dist@v1"}},
    });
    let envelope = dsse::sign(
        &signing_key,
        dsse::IN_TOTO_PAYLOAD_TYPE,
        statement.to_string().as_bytes(),
    )
    .unwrap();
    let envelope_file = dir.path().join("provenance.dsse.json");
    std::fs::write(&envelope_file, envelope.to_json().unwrap()).unwrap();
    let theirs_file = dir.path().join("theirs.dsse.json");
    let theirs_key = dir.path().join("theirs.pub");
    let out = Command::new(python)
        .args(["-c", SECURESYSTEMSLIB_DSSE])
        .arg(&envelope_file)
        .arg(&public)
        .arg(signing_key.public_key().key_id())
        .arg(&theirs_file)
        .arg(&theirs_key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("verified https://slsa.dev/provenance/v1"),
        "{out:?}"
    );

    // Their envelope verifies with their key here, and not with ours.
    let theirs = dsse::Envelope::parse(&std::fs::read(&theirs_file).unwrap(), "theirs").unwrap();
    let their_key = PublicKey::load(&theirs_key).unwrap();
    assert!(theirs.verify(&their_key).is_some());
    assert!(theirs.verify(signing_key.public_key()).is_none());
    // A changed payload type breaks the signature (PAE binds it).
    let mut retyped = theirs.clone();
    retyped.payload_type = "application/json".into();
    assert!(retyped.verify(&their_key).is_none());

    // The envelope attached to an image in a layout as cosign attests: the `.att` tag and a
    // referrer, each layer the envelope with its predicate type.
    let test = test_layout(dir.path(), 3);
    let attached = airlock::signing::layout::attest_layout(
        &test.path,
        Some("single"),
        &envelope,
        "https://slsa.dev/provenance/v1",
        signing_key.public_key(),
    )
    .unwrap();
    let single = digest_of(&test.single);
    assert_eq!(attached.tag, format!("sha256-{}.att", single.hex()));
    let layout = airlock::oci::Layout::open(&test.path).unwrap();
    let entry = layout.resolve(Some(&attached.tag)).unwrap();
    let manifest: oci_spec::image::ImageManifest = layout.read_json(entry).unwrap();
    let layer = &manifest.layers()[0];
    assert_eq!(
        layer.media_type().to_string(),
        "application/vnd.dsse.envelope.v1+json"
    );
    assert_eq!(
        layer.annotations().as_ref().unwrap()["predicateType"],
        "https://slsa.dev/provenance/v1"
    );
    assert_eq!(
        layout.blobs().read_document(layer).unwrap(),
        envelope.to_json().unwrap()
    );
    let referrer = layout
        .index()
        .manifests()
        .iter()
        .find(|d| d.digest().to_string() == attached.referrer.to_string())
        .unwrap();
    let referrer: oci_spec::image::ImageManifest = layout.read_json(referrer).unwrap();
    assert_eq!(
        referrer.subject().as_ref().unwrap().digest().to_string(),
        single.to_string()
    );
    // The layout is still whole, and its image still resolves by tag.
    run_expect(airlock().arg("verify").arg("--layout").arg(&test.path), 0);
}

/// Another signer, in Python's `cryptography`: signs the image tagged `argv[2]` in the layout
/// `argv[1]` as containers/image signs (its payload, with `optional.creator` and
/// `optional.timestamp`, for the identity `argv[3]`), stores the signature as cosign's
/// `sha256-<hex>.sig` image manifest, and writes its public key to `argv[4]`.
const PYTHON_SIGNER: &str = r#"
import base64, hashlib, json, os, sys, time
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

layout, tag, identity, public_out = sys.argv[1:5]
index = json.load(open(os.path.join(layout, "index.json")))
entry = next(m for m in index["manifests"]
             if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag)
digest = entry["digest"]

def put(data):
    d = "sha256:" + hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", d[7:]), "wb") as f:
        f.write(data)
    return {"digest": d, "size": len(data)}

key = ec.generate_private_key(ec.SECP256R1())
payload = json.dumps({
    "critical": {"identity": {"docker-reference": identity},
                 "image": {"docker-manifest-digest": digest},
                 "type": "cosign container image signature"},
    "optional": {"creator": "containers/image 5.23.1", "timestamp": int(time.time())},
}).encode()
signature = base64.b64encode(key.sign(payload, ec.ECDSA(hashes.SHA256()))).decode()
layer = dict(put(payload), mediaType="application/vnd.dev.cosign.simplesigning.v1+json",
             annotations={"dev.cosignproject.cosign/signature": signature})
config = dict(put(json.dumps({"architecture": "", "os": "", "config": {},
                               "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}}).encode()),
              mediaType="application/vnd.oci.image.config.v1+json")
manifest = dict(put(json.dumps({"schemaVersion": 2,
                                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                "config": config, "layers": [layer]}).encode()),
                mediaType="application/vnd.oci.image.manifest.v1+json",
                annotations={"org.opencontainers.image.ref.name": f"sha256-{digest[7:]}.sig"})
index["manifests"].append(manifest)
json.dump(index, open(os.path.join(layout, "index.json"), "w"))
open(public_out, "wb").write(key.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
"#;

#[test]
fn a_signature_made_by_another_signer_verifies() {
    let Some(python) = python_with(&["cryptography"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (_, ours) = keygen(dir.path(), "cosign");
    let test = test_layout(dir.path(), 5);
    let theirs = dir.path().join("theirs.pub");
    let out = Command::new(python)
        .args(["-c", PYTHON_SIGNER])
        .arg(&test.path)
        .args(["single", "registry.example.com/team/hello"])
        .arg(&theirs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // Only `single` is signed: `multi` is named as unsigned.
    let report = verify_layout(&test.path, &theirs, 1);
    let found = findings(&report);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "signature-missing");
    assert_eq!(found[0].1, format!("oci:{}:multi", test.path.display()));
    let signed = report["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["tags"] == serde_json::json!(["single"]))
        .unwrap();
    assert_eq!(
        signed["signed_repositories"],
        serde_json::json!(["registry.example.com/team/hello"])
    );
    // Our key did not sign it.
    let report = verify_layout(&test.path, &ours, 1);
    assert!(
        findings(&report)
            .iter()
            .any(|(kind, path, _)| kind == "signature-invalid"
                && path == &format!("oci:{}:single", test.path.display()))
    );
}

#[test]
fn a_corrupt_layout_is_never_signed_and_stays_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "cosign");
    let test = test_layout(dir.path(), 13);
    // The config of `single` altered in place.
    let manifest: serde_json::Value = serde_json::from_slice(&test.single.manifest_bytes).unwrap();
    let config = manifest["config"]["digest"].as_str().unwrap();
    let config_path = test.path.join("blobs/sha256").join(&config[7..]);
    let mut bytes = std::fs::read(&config_path).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&config_path, bytes).unwrap();
    let index_before = std::fs::read(test.path.join("index.json")).unwrap();
    let (_, stderr) = run_expect(
        sign()
            .args([
                "--signed-repository",
                "registry.example.com/team/hello",
                "--key",
            ])
            .arg(&key)
            .arg(format!("oci:{}:single", test.path.display())),
        1,
    );
    assert!(stderr.contains(&config[7..]), "{stderr}");
    assert_eq!(
        std::fs::read(test.path.join("index.json")).unwrap(),
        index_before
    );
    let staged: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(staged.is_empty(), "staging left behind: {staged:?}");
}
