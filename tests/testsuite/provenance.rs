//! SLSA v1 provenance of `dist`: the envelope read by an independent DSSE implementation
//! (securesystemslib), the statement and predicate parsed strictly by the in-toto attestation
//! framework's own Python bindings (Statement v1, SLSA Provenance v1), subjects against the
//! files, tampering named by `verify`, and `verify --rebuild` rebuilding a release from it.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use serde_json::Value;

use crate::support::*;

const X86: &str = "x86_64-unknown-linux-musl";
/// cosign's `artifactType` of attestations (a `.att` tag's entry and a referrer).
const ATTESTATION: &str = "application/vnd.dev.cosign.artifact.att.v1+json";
const ARCHIVE: &str = "hello-0.3.1-x86_64-unknown-linux-musl.tar.gz";

fn git(dir: &Path, args: &[&str]) -> String {
    run_expect(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .env("GIT_AUTHOR_DATE", "2024-03-01T12:00:00Z")
            .env("GIT_COMMITTER_DATE", "2024-03-01T12:00:00Z"),
        0,
    )
    .0
    .trim()
    .to_owned()
}

/// The hello fixture committed once in a new git repository, with an ignored `target/`.
fn hello_in_git() -> (tempfile::TempDir, PathBuf) {
    hello_in_git_with("/target\n")
}

/// [`hello_in_git`] with this `.gitignore` (another one gives another commit id).
fn hello_in_git_with(gitignore: &str) -> (tempfile::TempDir, PathBuf) {
    let (guard, project) = copy_fixture("hello");
    std::fs::write(project.join(".gitignore"), gitignore).unwrap();
    git(&project, &["init", "-q", "-b", "main"]);
    git(&project, &["add", "-A"]);
    git(&project, &["commit", "-q", "-m", "release"]);
    (guard, project)
}

fn dist(project: &Path, out: &Path) -> Value {
    run_json(
        airlock()
            .args([
                "dist",
                "--format",
                "json",
                "--target",
                X86,
                "--archive",
                "tar.gz",
            ])
            .arg("--manifest-path")
            .arg(project.join("Cargo.toml"))
            .arg("--out-dir")
            .arg(out)
            .env_remove("SOURCE_DATE_EPOCH"),
    )
}

fn envelope(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("provenance.intoto.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.ends_with('\n'));
    serde_json::from_str(&text).unwrap()
}

fn statement(envelope: &Value) -> Value {
    let payload = base64::engine::general_purpose::STANDARD
        .decode(envelope["payload"].as_str().unwrap())
        .unwrap();
    serde_json::from_slice(&payload).unwrap()
}

fn subject<'a>(statement: &'a Value, name: &str) -> &'a Value {
    statement["subject"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no subject {name} in {statement}"))
}

fn sha256_hex(bytes: &[u8]) -> String {
    airlock::Sha256Digest::of(bytes).hex()
}

/// Reads the envelope with securesystemslib's DSSE implementation (and, given a public key
/// PEM as `argv[2]`, verifies its signature with it), then parses the statement and its
/// predicate with the in-toto attestation framework's protobuf bindings, strictly (an unknown
/// or misspelt field, or a wrong type, fails), and checks the fields SLSA v1 requires. Prints
/// the subject names.
const VALIDATOR: &str = r#"
import base64, hashlib, json, sys
from securesystemslib.dsse import Envelope
from google.protobuf import json_format
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2

with open(sys.argv[1]) as f:
    lines = [l for l in f.read().splitlines() if l.strip()]
assert len(lines) == 1, lines
envelope = Envelope.from_dict(json.loads(lines[0]))
assert envelope.payload_type == "application/vnd.in-toto+json", envelope.payload_type
pae = envelope.pae()
assert pae.startswith(b"DSSEv1 28 application/vnd.in-toto+json "), pae[:60]
if len(sys.argv) > 2:
    from cryptography.hazmat.primitives import serialization
    from securesystemslib.signer import SSlibKey
    public = serialization.load_pem_public_key(open(sys.argv[2], "rb").read())
    der = public.public_bytes(serialization.Encoding.DER,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    keyid = hashlib.sha256(der).hexdigest()
    key = SSlibKey.from_crypto(public, keyid=keyid, scheme="ecdsa-sha2-nistp256")
    envelope.verify([key], 1)
else:
    assert envelope.signatures == {}, envelope.signatures
document = json.loads(envelope.payload)
statement = Statement.copy_from_pb(json_format.ParseDict(document, statement_pb2.Statement()))
statement.validate()
assert statement.pb.predicate_type == "https://slsa.dev/provenance/v1"
provenance = json_format.ParseDict(document["predicate"], provenance_pb2.Provenance())
definition = provenance.build_definition
assert definition.build_type, "buildDefinition.buildType is required"
assert definition.external_parameters.fields, "buildDefinition.externalParameters is required"
assert provenance.run_details.builder.id, "runDetails.builder.id is required"
for dependency in definition.resolved_dependencies:
    assert dependency.uri or dependency.digest or dependency.name, dependency
metadata = provenance.run_details.metadata
assert metadata.started_on.seconds <= metadata.finished_on.seconds
for subject in statement.pb.subject:
    print(subject.name)
"#;

#[test]
fn dist_provenance_is_slsa_v1_in_dsse_and_names_what_was_built() {
    let Some(python) = require_tool("python3") else {
        return;
    };
    let (_guard, project) = hello_in_git();
    let out = project.join("target/dist");
    let report = dist(&project, &out);
    let manifest = &report["manifest"];
    let provenance = manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == "provenance.intoto.jsonl")
        .unwrap();
    assert_eq!(provenance["kind"], "provenance");
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert!(!sums.contains("provenance"), "{sums}");

    let check = Command::new(&python)
        .arg("-c")
        .arg(VALIDATOR)
        .arg(out.join("provenance.intoto.jsonl"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    if stderr.contains("ModuleNotFoundError") {
        skip_or_fail(&format!(
            "the in-toto-attestation or securesystemslib Python package is missing: {stderr}"
        ));
        return;
    }
    assert!(check.status.success(), "{stderr}");
    let names: Vec<&str> = std::str::from_utf8(&check.stdout)
        .unwrap()
        .lines()
        .collect();
    assert_eq!(
        names,
        [
            ARCHIVE,
            "image.tar",
            "image:0.3.1",
            "x86_64-unknown-linux-musl/hello",
        ]
    );

    let envelope = envelope(&out);
    assert_eq!(envelope["payloadType"], "application/vnd.in-toto+json");
    let statement = statement(&envelope);
    assert_eq!(statement["_type"], "https://in-toto.io/Statement/v1");
    for name in [ARCHIVE, "image.tar"] {
        assert_eq!(
            subject(&statement, name)["digest"]["sha256"],
            sha256_hex(&std::fs::read(out.join(name)).unwrap())
        );
    }
    let binary = project.join("target/airlock").join(X86).join("hello");
    assert_eq!(
        subject(&statement, "x86_64-unknown-linux-musl/hello")["digest"]["sha256"],
        sha256_hex(&std::fs::read(&binary).unwrap())
    );
    let image = &manifest["images"][0];
    assert_eq!(
        format!(
            "sha256:{}",
            subject(&statement, "image:0.3.1")["digest"]["sha256"]
                .as_str()
                .unwrap()
        ),
        image["digest"].as_str().unwrap()
    );

    let definition = &statement["predicate"]["buildDefinition"];
    let external = &definition["externalParameters"];
    let revision = git(&project, &["rev-parse", "HEAD"]);
    assert_eq!(external["source"]["revision"], revision.as_str());
    assert_eq!(external["source"]["dirty"], false);
    assert_eq!(external["source"]["workspace"], ".");
    assert_eq!(
        external["source"]["repository"],
        "https://example.invalid/airlock-hello"
    );
    assert_eq!(external["targets"], serde_json::json!([X86]));
    assert_eq!(external["profile"], "release");
    assert_eq!(external["archives"], serde_json::json!(["tar.gz"]));
    let internal = &definition["internalParameters"];
    assert_eq!(internal["SOURCE_DATE_EPOCH"], 1_709_294_400);
    assert!(
        internal["toolchain"]["rustc"]
            .as_str()
            .unwrap()
            .contains("\nhost: "),
        "rustc -vV: {internal}"
    );
    assert!(
        internal["toolchain"]["cargo"]
            .as_str()
            .unwrap()
            .starts_with("cargo ")
    );
    assert_eq!(
        internal["airlock"],
        format!("cargo-airlock {}", env!("CARGO_PKG_VERSION"))
    );
    let dependencies = definition["resolvedDependencies"].as_array().unwrap();
    let lock = std::fs::read(project.join("Cargo.lock")).unwrap();
    let lock_entry = dependencies
        .iter()
        .find(|d| d["name"] == "Cargo.lock")
        .unwrap();
    assert_eq!(lock_entry["digest"]["sha256"], sha256_hex(&lock));
    let source = dependencies.iter().find(|d| d["name"] == "source").unwrap();
    assert_eq!(source["digest"]["gitCommit"], revision.as_str());
    assert!(
        dependencies
            .iter()
            .any(|d| d["uri"] == "pkg:cargo/airlock-hello@0.3.1"),
        "{dependencies:?}"
    );
    let run = &statement["predicate"]["runDetails"];
    assert_eq!(
        run["builder"]["version"]["cargo-airlock"],
        env!("CARGO_PKG_VERSION")
    );

    // Attached to the image as cosign stores an attestation: under the image's
    // `sha256-<hex>.att` tag and as a referrer whose subject is the image, one layer holding
    // the envelope itself.
    let layout = out.join("image");
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let attestations: Vec<&Value> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["artifactType"] == ATTESTATION)
        .collect();
    assert_eq!(attestations.len(), 2, "{index:#}");
    let image_hex = image["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let tagged = attestations
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"].is_string())
        .unwrap();
    assert_eq!(
        tagged["annotations"]["org.opencontainers.image.ref.name"],
        format!("sha256-{image_hex}.att")
    );
    let attestation = attestations
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"].is_null())
        .unwrap();
    assert_eq!(image["attestations"][0], attestation["digest"]);
    let blob = |digest: &Value| {
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(digest.as_str().unwrap().trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let attached: Value = serde_json::from_slice(&blob(&attestation["digest"])).unwrap();
    assert_eq!(attached["subject"]["digest"], image["digest"]);
    let layer_descriptor = &attached["layers"][0];
    assert_eq!(
        layer_descriptor["mediaType"],
        "application/vnd.dsse.envelope.v1+json"
    );
    assert_eq!(
        layer_descriptor["annotations"]["predicateType"],
        "https://slsa.dev/provenance/v1"
    );
    let cosign_form: Value = serde_json::from_slice(&blob(&tagged["digest"])).unwrap();
    assert_eq!(
        cosign_form["layers"][0]["digest"],
        layer_descriptor["digest"]
    );
    let layer: Value = serde_json::from_slice(&blob(&layer_descriptor["digest"])).unwrap();
    assert_eq!(layer, envelope);

    run_expect(
        airlock()
            .args(["verify", "--manifest"])
            .arg(out.join("dist-manifest.json")),
        0,
    );
}

#[test]
fn a_provenance_subject_edited_is_named_by_verify() {
    let (_guard, project) = hello_in_git();
    let out = project.join("target/dist");
    dist(&project, &out);
    let path = out.join("provenance.intoto.jsonl");
    let mut envelope = envelope(&out);
    let mut statement = statement(&envelope);
    let forged = sha256_hex(b"a binary the attacker built");
    for subject in statement["subject"].as_array_mut().unwrap() {
        if subject["name"] == ARCHIVE {
            subject["digest"]["sha256"] = forged.clone().into();
        }
    }
    envelope["payload"] = base64::engine::general_purpose::STANDARD
        .encode(serde_json::to_vec(&statement).unwrap())
        .into();
    let line = format!("{}\n", serde_json::to_string(&envelope).unwrap());
    std::fs::write(&path, &line).unwrap();
    // The attacker updates the records too, so only the subject gives it away.
    let manifest_path = out.join("dist-manifest.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    for artifact in manifest["artifacts"].as_array_mut().unwrap() {
        if artifact["path"] == "provenance.intoto.jsonl" {
            artifact["sha256"] = format!("sha256:{}", sha256_hex(line.as_bytes())).into();
            artifact["size"] = line.len().into();
        }
    }
    std::fs::write(
        &manifest_path,
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();

    let (stdout, _) = run_expect(
        airlock()
            .args(["verify", "--format", "json", "--manifest"])
            .arg(&manifest_path),
        1,
    );
    let verdict: Value = serde_json::from_str(&stdout).unwrap();
    let findings = verdict["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{findings:?}");
    assert_eq!(findings[0]["kind"], "file-modified");
    assert_eq!(
        findings[0]["path"],
        out.join(ARCHIVE).display().to_string().as_str()
    );
    assert_eq!(findings[0]["expected"], forged.as_str());
    assert_eq!(
        findings[0]["actual"],
        sha256_hex(&std::fs::read(out.join(ARCHIVE)).unwrap()).as_str()
    );
    assert!(
        findings[0]["message"]
            .as_str()
            .unwrap()
            .contains("its subject in provenance.intoto.jsonl"),
        "{findings:?}"
    );
}

#[test]
fn verify_rebuild_reproduces_a_release_and_names_what_differs() {
    let Some(_) = require_tool("git") else {
        return;
    };
    let (_guard, project) = hello_in_git();
    let out = project.join("target/dist");
    dist(&project, &out);
    let main_rs = project.join("src/main.rs");
    let original = std::fs::read_to_string(&main_rs).unwrap();
    // An uncommitted edit after the release: the rebuild uses a clean checkout of the
    // recorded revision, so it does not see it and reproduces every subject.
    std::fs::write(&main_rs, original.replace("hello from", "HELLO FROM")).unwrap();
    let verdict = run_json(
        airlock()
            .args(["verify", "--format", "json", "--rebuild"])
            .arg(&out)
            .arg("--manifest-path")
            .arg(project.join("Cargo.toml"))
            .env_remove("SOURCE_DATE_EPOCH"),
    );
    assert_eq!(verdict["ok"], true, "{verdict}");
    assert_eq!(verdict["checks"][0]["check"], "rebuild");
    assert_eq!(verdict["checks"][0]["items"], 4);
    assert_eq!(verdict["checks"][0]["files"], 4);

    // The source changed after the commit the release names: released from that edit, not
    // from the commit, so the revision does not rebuild it.
    let edited = project.join("target/dist-edited");
    let report = dist(&project, &edited);
    let envelope = envelope(&edited);
    let released_line = std::fs::read(edited.join("provenance.intoto.jsonl")).unwrap();
    assert_eq!(
        statement(&envelope)["predicate"]["buildDefinition"]["externalParameters"]["source"]["dirty"],
        true
    );
    assert!(report["manifest"]["source_revision"].is_string());
    let (stdout, stderr) = run_expect(
        airlock()
            .args(["verify", "--format", "json", "--rebuild"])
            .arg(&edited)
            .arg("--manifest-path")
            .arg(project.join("Cargo.toml"))
            .env_remove("SOURCE_DATE_EPOCH"),
        1,
    );
    assert!(stderr.contains("uncommitted changes"), "{stderr}");
    let verdict: Value = serde_json::from_str(&stdout).unwrap();
    let named: Vec<(&str, String)> = verdict["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap(),
                f["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for name in [
        ARCHIVE,
        "x86_64-unknown-linux-musl/hello",
        "image.tar",
        "image:0.3.1",
    ] {
        let path = edited.join(name).display().to_string();
        assert!(
            named.contains(&("file-modified", path.clone())),
            "{path} not in {named:?}"
        );
    }
    // The release directory itself was only read.
    assert_eq!(
        std::fs::read(edited.join("provenance.intoto.jsonl")).unwrap(),
        released_line
    );
}

#[test]
fn verify_rebuild_needs_the_recorded_revision() {
    let (_guard, project) = hello_in_git();
    let out = project.join("target/dist");
    dist(&project, &out);
    let (_other_guard, other) = hello_in_git_with("/target\n*.orig\n");
    let (_, stderr) = run_expect(
        airlock()
            .args(["verify", "--rebuild"])
            .arg(&out)
            .arg("--manifest-path")
            .arg(other.join("Cargo.toml")),
        2,
    );
    let revision = git(&project, &["rev-parse", "HEAD"]);
    assert!(
        stderr.contains(&format!(
            "built from commit {revision}, which the repository at"
        )),
        "{stderr}"
    );
}

#[test]
fn push_carries_the_provenance_as_a_referrer_of_the_image() {
    let (Some(registry), Some(_)) = (Registry::start(false), require_tool("skopeo")) else {
        return;
    };
    let (_guard, project) = hello_in_git();
    let out = project.join("target/dist");
    let report = dist(&project, &out);
    let image = &report["manifest"]["images"][0];
    let attestation = image["attestations"][0].as_str().unwrap().to_owned();
    let target = format!("{}/airlock/provenance", registry.addr());
    let pushed = run_json(
        push_cmd(&project)
            .arg(format!("{}:0.3.1", out.join("image").display()))
            .arg(&target)
            .args(["--format", "json"]),
    );
    let referrer = pushed["referrers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["digest"] == attestation.as_str())
        .unwrap_or_else(|| panic!("{attestation} not pushed: {pushed:#}"));
    assert_eq!(referrer["artifact_type"], ATTESTATION);
    assert_eq!(referrer["subject"], image["digest"]);
    // What the registry serves is the attestation, its one layer the envelope of the file.
    let manifest: Value = serde_json::from_slice(&skopeo_inspect(
        &format!("{target}@{attestation}"),
        true,
        None,
    ))
    .unwrap();
    assert_eq!(manifest["subject"]["digest"], image["digest"]);
    let line = std::fs::read(out.join("provenance.intoto.jsonl")).unwrap();
    assert_eq!(
        manifest["layers"][0]["digest"],
        format!("sha256:{}", sha256_hex(line.strip_suffix(b"\n").unwrap()))
    );
}

const PASSPHRASE: &str = "provenance-Test-passphrase-3";

/// `dist` as [`dist`] runs it, signing with `key` (the passphrase from the environment).
fn signed_dist(project: &Path, out: &Path, key: &Path, passphrase: &str) -> Command {
    let mut cmd = airlock();
    cmd.args([
        "dist",
        "--format",
        "json",
        "--target",
        X86,
        "--archive",
        "tar.gz",
    ])
    .args(["--sign", "--key"])
    .arg(key)
    .arg("--manifest-path")
    .arg(project.join("Cargo.toml"))
    .arg("--out-dir")
    .arg(out)
    .env("AIRLOCK_KEY_PASSWORD", passphrase)
    .env_remove("SOURCE_DATE_EPOCH");
    cmd
}

#[test]
fn a_signed_release_carries_provenance_signed_with_the_release_key() {
    let Some(python) = require_tool("python3") else {
        return;
    };
    let (_guard, project) = hello_in_git();
    let keys = project.join("target/keys");
    std::fs::create_dir_all(&keys).unwrap();
    run_expect(
        airlock()
            .env("AIRLOCK_KEY_PASSWORD", PASSPHRASE)
            .arg("keygen")
            .arg("--output")
            .arg(keys.join("release")),
        0,
    );
    let (key, public) = (keys.join("release.key"), keys.join("release.pub"));
    let out = project.join("target/dist");

    // A wrong passphrase stops the release before anything is built or written.
    let (_, stderr) = run_expect(&mut signed_dist(&project, &out, &key, "wrong"), 2);
    assert!(stderr.contains("wrong passphrase"), "{stderr}");
    assert!(!out.exists());
    assert!(!project.join("target/airlock").exists());
    // --sign without a key says where one comes from.
    let (_, stderr) = run_expect(
        airlock()
            .args(["dist", "--sign", "--manifest-path"])
            .arg(project.join("Cargo.toml")),
        2,
    );
    assert!(stderr.contains("give --key FILE"), "{stderr}");

    let report = run_json(&mut signed_dist(&project, &out, &key, PASSPHRASE));
    let envelope = envelope(&out);
    let signatures = envelope["signatures"].as_array().unwrap();
    assert_eq!(signatures.len(), 1);
    let keygen_id = {
        let pem = std::fs::read_to_string(&public).unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        sha256_hex(
            &base64::engine::general_purpose::STANDARD
                .decode(body)
                .unwrap(),
        )
    };
    assert_eq!(signatures[0]["keyid"], keygen_id.as_str());

    // securesystemslib verifies the signature with the public key, and the statement parses.
    let check = Command::new(&python)
        .arg("-c")
        .arg(VALIDATOR)
        .arg(out.join("provenance.intoto.jsonl"))
        .arg(&public)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&check.stderr);
    if stderr.contains("ModuleNotFoundError") {
        skip_or_fail(&format!(
            "a Python package the check needs is missing: {stderr}"
        ));
        return;
    }
    assert!(check.status.success(), "{stderr}");

    // A statement edited after signing no longer verifies.
    let mut forged = envelope.clone();
    let mut statement = statement(&envelope);
    statement["subject"][0]["digest"]["sha256"] = sha256_hex(b"forged").into();
    forged["payload"] = base64::engine::general_purpose::STANDARD
        .encode(serde_json::to_vec(&statement).unwrap())
        .into();
    let forged_path = project.join("target/forged.intoto.jsonl");
    std::fs::write(&forged_path, format!("{forged}\n")).unwrap();
    let check = Command::new(&python)
        .arg("-c")
        .arg(VALIDATOR)
        .arg(&forged_path)
        .arg(&public)
        .output()
        .unwrap();
    assert!(!check.status.success());
    assert!(
        String::from_utf8_lossy(&check.stderr).contains("Verification"),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );

    // SHA256SUMS and every image are signed too, and the records list the signature.
    let sums_signature = report["manifest"]["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["path"] == "SHA256SUMS.sig")
        .unwrap_or_else(|| panic!("no SHA256SUMS.sig in {report}"));
    assert_eq!(sums_signature["kind"], "signature");
    let verified = run_json(
        airlock()
            .args(["verify", "--format", "json", "--layout"])
            .arg(out.join("image"))
            .arg("--key")
            .arg(&public)
            .arg("--manifest")
            .arg(out.join("dist-manifest.json")),
    );
    assert_eq!(
        verified["signatures"][0]["signed_repositories"][0],
        "airlock-hello"
    );

    // The attestation in the image is the same signed envelope.
    let image = &report["manifest"]["images"][0];
    let layout = out.join("image");
    let blob = |digest: &str| {
        std::fs::read(
            layout
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap()
    };
    let referrer: Value =
        serde_json::from_slice(&blob(image["attestations"][0].as_str().unwrap())).unwrap();
    let layer: Value =
        serde_json::from_slice(&blob(referrer["layers"][0]["digest"].as_str().unwrap())).unwrap();
    assert_eq!(layer, envelope);
}

/// The repository the shared signed release's images are signed for (outside the air gap).
const SIGNED_FOR: &str = "registry.example.com/team/hello";

/// A release of the hello fixture signed with a fresh key, made once per test process (a dist
/// run costs minutes on a cold cache) and kept under cargo's `target/tmp`; each tampering case
/// works on its own copy (see [`release_copy`]).
struct SignedRelease {
    /// The release directory as `dist --sign` wrote it; never modified.
    out: PathBuf,
    /// The release key pair (`release.key`, `release.pub`) and another (`other.*`).
    keys: PathBuf,
}

fn signed_release() -> &'static SignedRelease {
    static RELEASE: std::sync::OnceLock<SignedRelease> = std::sync::OnceLock::new();
    RELEASE.get_or_init(|| {
        let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("airlock-signed-release");
        let _ = std::fs::remove_dir_all(&kept);
        let keys = kept.join("keys");
        std::fs::create_dir_all(&keys).unwrap();
        for name in ["release", "other"] {
            run_expect(
                airlock()
                    .env("AIRLOCK_KEY_PASSWORD", PASSPHRASE)
                    .arg("keygen")
                    .arg("--output")
                    .arg(keys.join(name)),
                0,
            );
        }
        let (_guard, project) = hello_in_git();
        let built = project.join("target/dist");
        run_json(
            signed_dist(&project, &built, &keys.join("release.key"), PASSPHRASE)
                .args(["--signed-repository", SIGNED_FOR]),
        );
        let out = kept.join("dist");
        copy_dir(&built, &out);
        SignedRelease { out, keys }
    })
}

/// A copy of the shared signed release to tamper with, in `guard`.
fn release_copy(guard: &tempfile::TempDir) -> PathBuf {
    let dir = guard.path().join("dist");
    copy_dir(&signed_release().out, &dir);
    dir
}

/// `verify --release DIR --key KEY --format json`, expecting `code`.
fn verify_release(dir: &Path, key: &Path, code: i32) -> Value {
    let (stdout, _) = run_expect(
        airlock()
            .args(["verify", "--format", "json", "--release"])
            .arg(dir)
            .arg("--key")
            .arg(key),
        code,
    );
    serde_json::from_str(&stdout).unwrap()
}

/// The (kind, path) of every finding.
fn finding_kinds(report: &Value) -> Vec<(String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["kind"].as_str().unwrap().to_owned(),
                f["path"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[track_caller]
fn assert_finding(report: &Value, kind: &str, path: &str) {
    let found = finding_kinds(report);
    assert!(
        found.iter().any(|(k, p)| k == kind && p == path),
        "no {kind} finding for {path} in {:#}",
        report["findings"]
    );
}

fn release_public_key() -> PathBuf {
    signed_release().keys.join("release.pub")
}

/// Writes `statement` into the envelope of `dir`'s provenance as its payload, keeping the
/// signatures (or re-signing with `key`).
fn rewrite_provenance(dir: &Path, statement: &Value, key: Option<&Path>) {
    let payload = serde_json::to_vec(statement).unwrap();
    let mut envelope = envelope(dir);
    envelope["payload"] = base64::engine::general_purpose::STANDARD
        .encode(&payload)
        .into();
    if let Some(key) = key {
        let key =
            airlock::signing::SigningKey::load(key, &airlock::signing::Passphrase::new(PASSPHRASE))
                .unwrap();
        let signed = airlock::signing::dsse::sign(
            &key,
            airlock::signing::dsse::IN_TOTO_PAYLOAD_TYPE,
            &payload,
        )
        .unwrap();
        envelope = serde_json::to_value(&signed).unwrap();
    }
    std::fs::write(
        dir.join("provenance.intoto.jsonl"),
        format!("{}\n", serde_json::to_string(&envelope).unwrap()),
    )
    .unwrap();
}

/// Rewrites `SHA256SUMS` with the current digest of `name`, as an attacker who swapped it
/// would.
fn recompute_sums(dir: &Path, name: &str) {
    let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
    let digest = sha256_hex(&std::fs::read(dir.join(name)).unwrap());
    let rewritten: String = sums
        .lines()
        .map(|line| match line.split_once("  ") {
            Some((_, file)) if file == name => format!("{digest}  {file}\n"),
            _ => format!("{line}\n"),
        })
        .collect();
    assert_ne!(rewritten, sums, "{name} is not in SHA256SUMS");
    std::fs::write(dir.join("SHA256SUMS"), rewritten).unwrap();
}

fn index_entries(layout: &Path) -> Vec<Value> {
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"].as_array().unwrap().clone()
}

fn write_index_entries(layout: &Path, entries: Vec<Value>) {
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"] = Value::Array(entries);
    std::fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}

/// Replaces the image tagged 0.3.1 in `layout` with another manifest (the same one with an
/// annotation added), written as a blob; returns its digest (`sha256:<hex>`).
fn replace_image_manifest(layout: &Path) -> String {
    let mut entries = index_entries(layout);
    let entry = entries
        .iter_mut()
        .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == "0.3.1")
        .unwrap();
    let old = entry["digest"].as_str().unwrap().to_owned();
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let mut manifest: Value = serde_json::from_slice(&std::fs::read(blob(&old)).unwrap()).unwrap();
    manifest["annotations"]["org.example.injected"] = "yes".into();
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let new = format!("sha256:{}", sha256_hex(&bytes));
    std::fs::write(blob(&new), &bytes).unwrap();
    entry["digest"] = new.clone().into();
    entry["size"] = bytes.len().into();
    write_index_entries(layout, entries);
    new
}

/// Removes every signature (`.sig` tags and signature referrers) from `layout`.
fn drop_signatures(layout: &Path) {
    let entries = index_entries(layout)
        .into_iter()
        .filter(|e| e["artifactType"] != "application/vnd.dev.cosign.artifact.sig.v1+json")
        .collect();
    write_index_entries(layout, entries);
}

#[test]
fn verify_release_accepts_the_signed_release_offline() {
    let guard = tempfile::tempdir().unwrap();
    let dir = release_copy(&guard);
    let report = verify_release(&dir, &release_public_key(), 0);
    assert_eq!(report["findings"], serde_json::json!([]));
    let checks: Vec<&str> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(checks, ["release", "sums", "manifest", "signatures"]);
    // SHA256SUMS.sig and the envelope, both SBOMs attached, the attested provenance, one
    // binary's dependency list.
    assert_eq!(report["checks"][0]["items"], 6);
    assert_eq!(report["checks"][0]["files"], 1);
    assert_eq!(
        report["signatures"][0]["signed_repositories"][0],
        SIGNED_FOR
    );

    // Without --key there is nothing to check the release against: a usage error.
    let (_, stderr) = run_expect(airlock().args(["verify", "--release"]).arg(&dir), 2);
    assert!(stderr.contains("--key"), "{stderr}");
}

#[test]
fn verify_release_names_missing_signature_files() {
    let guard = tempfile::tempdir().unwrap();
    let dir = release_copy(&guard);
    std::fs::remove_file(dir.join("SHA256SUMS.sig")).unwrap();
    let mut unsigned = envelope(&dir);
    unsigned["signatures"] = serde_json::json!([]);
    std::fs::write(dir.join("provenance.intoto.jsonl"), format!("{unsigned}\n")).unwrap();
    drop_signatures(&dir.join("image"));
    let report = verify_release(&dir, &release_public_key(), 1);
    let sig = dir.join("SHA256SUMS.sig").display().to_string();
    let provenance = dir.join("provenance.intoto.jsonl").display().to_string();
    let image = format!("oci:{}:0.3.1", dir.join("image").display());
    for path in [&sig, &provenance, &image] {
        assert_finding(&report, "signature-missing", path);
    }
    // The dist manifest lists SHA256SUMS.sig and records the provenance as it was signed, so
    // both are named there too (missing; size and sha256).
    assert_finding(&report, "file-missing", &sig);
    assert_finding(&report, "file-modified", &provenance);
    assert_eq!(finding_kinds(&report).len(), 6, "{:#}", report["findings"]);
}

#[test]
fn verify_release_catches_a_swapped_archive_with_recomputed_sums() {
    let guard = tempfile::tempdir().unwrap();
    let dir = release_copy(&guard);
    std::fs::write(dir.join(ARCHIVE), b"an archive the attacker built").unwrap();
    recompute_sums(&dir, ARCHIVE);
    // `sha256sum -c` and `--sums` alone are satisfied now: only the signature gives it away.
    run_expect(
        airlock()
            .args(["verify", "--sums"])
            .arg(dir.join("SHA256SUMS")),
        0,
    );
    let report = verify_release(&dir, &release_public_key(), 1);
    assert_finding(
        &report,
        "signature-invalid",
        &dir.join("SHA256SUMS.sig").display().to_string(),
    );
    // The signed provenance names the archive, whatever SHA256SUMS now says.
    assert_finding(
        &report,
        "file-modified",
        &dir.join(ARCHIVE).display().to_string(),
    );
}

#[test]
fn verify_release_rejects_a_release_re_signed_with_another_key() {
    let guard = tempfile::tempdir().unwrap();
    let dir = release_copy(&guard);
    let other = signed_release().keys.join("other.key");
    // The attacker swaps the archive and signs everything again with their own key.
    std::fs::write(dir.join(ARCHIVE), b"an archive the attacker built").unwrap();
    recompute_sums(&dir, ARCHIVE);
    let mut statement = statement(&envelope(&dir));
    let forged = sha256_hex(b"an archive the attacker built");
    for subject in statement["subject"].as_array_mut().unwrap() {
        if subject["name"] == ARCHIVE {
            subject["digest"]["sha256"] = forged.clone().into();
        }
    }
    rewrite_provenance(&dir, &statement, Some(&other));
    drop_signatures(&dir.join("image"));
    run_expect(
        airlock()
            .env("AIRLOCK_KEY_PASSWORD", PASSPHRASE)
            .args(["sign", "--key"])
            .arg(&other)
            .arg(&dir),
        0,
    );
    // Everything holds under the attacker's key...
    run_expect(
        airlock()
            .args(["verify", "--release"])
            .arg(&dir)
            .arg("--key")
            .arg(signed_release().keys.join("other.pub")),
        1, // ...but for dist-manifest.json, which still records the old archive.
    );
    let report = verify_release(&dir, &release_public_key(), 1);
    for path in [
        dir.join("SHA256SUMS.sig").display().to_string(),
        dir.join("provenance.intoto.jsonl").display().to_string(),
        format!("oci:{}:0.3.1", dir.join("image").display()),
    ] {
        assert_finding(&report, "signature-invalid", &path);
    }
}

#[test]
fn verify_release_catches_an_edited_provenance_subject() {
    let guard = tempfile::tempdir().unwrap();
    let dir = release_copy(&guard);
    let mut statement = statement(&envelope(&dir));
    let forged = sha256_hex(b"a binary the attacker built");
    for subject in statement["subject"].as_array_mut().unwrap() {
        if subject["name"] == ARCHIVE {
            subject["digest"]["sha256"] = forged.clone().into();
        }
    }
    rewrite_provenance(&dir, &statement, None);
    // The attacker updates the records too (the provenance is not in SHA256SUMS).
    let manifest_path = dir.join("dist-manifest.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let line = std::fs::read(dir.join("provenance.intoto.jsonl")).unwrap();
    for artifact in manifest["artifacts"].as_array_mut().unwrap() {
        if artifact["path"] == "provenance.intoto.jsonl" {
            artifact["sha256"] = format!("sha256:{}", sha256_hex(&line)).into();
            artifact["size"] = line.len().into();
        }
    }
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();

    let report = verify_release(&dir, &release_public_key(), 1);
    assert_finding(
        &report,
        "signature-invalid",
        &dir.join("provenance.intoto.jsonl").display().to_string(),
    );
    assert_finding(
        &report,
        "file-modified",
        &dir.join(ARCHIVE).display().to_string(),
    );
    assert_eq!(finding_kinds(&report).len(), 2, "{:#}", report["findings"]);
}

#[test]
fn verify_release_catches_an_image_manifest_replaced_in_the_layout() {
    let guard = tempfile::tempdir().unwrap();
    let dir = release_copy(&guard);
    let layout = dir.join("image");
    let replaced = replace_image_manifest(&layout);
    // The attacker points the records at the new image too.
    let manifest_path = dir.join("dist-manifest.json");
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    let manifest: Value = serde_json::from_str(&text).unwrap();
    let original = manifest["images"][0]["digest"].as_str().unwrap();
    std::fs::write(&manifest_path, text.replace(original, &replaced)).unwrap();

    let report = verify_release(&dir, &release_public_key(), 1);
    let image = format!("oci:{}:0.3.1", layout.display());
    assert_finding(&report, "signature-missing", &image);
    // The signed provenance still names the original image.
    assert_finding(
        &report,
        "file-modified",
        &dir.join("image:0.3.1").display().to_string(),
    );
    // And the SBOMs are attached to the original image, not to the new one.
    let prefix = format!("{}@", layout.display());
    let sboms = finding_kinds(&report)
        .into_iter()
        .filter(|(k, p)| k == "file-modified" && p.starts_with(&prefix))
        .count();
    assert_eq!(sboms, 2, "{:#}", report["findings"]);
}

#[test]
fn verify_release_catches_a_signature_of_another_image_copied_over() {
    let guard = tempfile::tempdir().unwrap();
    let dir = release_copy(&guard);
    let layout = dir.join("image");
    let original = index_entries(&layout)
        .into_iter()
        .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == "0.3.1")
        .unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    // Another image, signed with the release key itself (in another copy)...
    let elsewhere = guard.path().join("elsewhere");
    copy_dir(&layout, &elsewhere);
    let other_image = replace_image_manifest(&elsewhere);
    run_expect(
        airlock()
            .env("AIRLOCK_KEY_PASSWORD", PASSPHRASE)
            .args(["sign", "--key"])
            .arg(signed_release().keys.join("release.key"))
            .arg(format!("oci:{}:0.3.1", elsewhere.display())),
        0,
    );
    // ...and its signature copied over the release image's own.
    let tag = |digest: &str| format!("sha256-{}.sig", digest.trim_start_matches("sha256:"));
    let signature = index_entries(&elsewhere)
        .into_iter()
        .find(|e| {
            e["annotations"]["org.opencontainers.image.ref.name"] == tag(&other_image).as_str()
        })
        .unwrap();
    for entry in std::fs::read_dir(elsewhere.join("blobs/sha256")).unwrap() {
        let entry = entry.unwrap();
        let to = layout.join("blobs/sha256").join(entry.file_name());
        if !to.exists() {
            std::fs::copy(entry.path(), to).unwrap();
        }
    }
    drop_signatures(&layout);
    let mut copied = signature.clone();
    copied["annotations"]["org.opencontainers.image.ref.name"] = tag(&original).into();
    let mut entries = index_entries(&layout);
    entries.push(copied);
    write_index_entries(&layout, entries);

    let report = verify_release(&dir, &release_public_key(), 1);
    let image = format!("oci:{}:0.3.1", layout.display());
    assert_finding(&report, "signature-invalid", &image);
    let message = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == image.as_str())
        .unwrap()["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains(other_image.trim_start_matches("sha256:")) || message.contains("another"),
        "{message}"
    );
}

#[test]
fn verify_release_catches_an_attested_provenance_signed_by_another_key() {
    let guard = tempfile::tempdir().unwrap();
    let dir = release_copy(&guard);
    let layout = dir.join("image");
    let blob = |digest: &str| {
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"))
    };
    let put = |bytes: &[u8]| {
        let digest = format!("sha256:{}", sha256_hex(bytes));
        std::fs::write(blob(&digest), bytes).unwrap();
        digest
    };
    let manifest_path = dir.join("dist-manifest.json");
    let records = std::fs::read_to_string(&manifest_path).unwrap();
    let attested = serde_json::from_str::<Value>(&records).unwrap()["images"][0]["attestations"][0]
        .as_str()
        .unwrap()
        .to_owned();
    // The attacker attaches their own provenance, signed with their key, in place of the
    // release's, and points the records at it.
    let other = airlock::signing::SigningKey::load(
        &signed_release().keys.join("other.key"),
        &airlock::signing::Passphrase::new(PASSPHRASE),
    )
    .unwrap();
    let payload = serde_json::to_vec(&statement(&envelope(&dir))).unwrap();
    let forged = airlock::signing::dsse::sign(
        &other,
        airlock::signing::dsse::IN_TOTO_PAYLOAD_TYPE,
        &payload,
    )
    .unwrap()
    .to_json()
    .unwrap();
    let mut referrer: Value =
        serde_json::from_slice(&std::fs::read(blob(&attested)).unwrap()).unwrap();
    referrer["layers"][0]["digest"] = put(&forged).into();
    referrer["layers"][0]["size"] = forged.len().into();
    let referrer_bytes = serde_json::to_vec(&referrer).unwrap();
    let replaced = put(&referrer_bytes);
    let entries = index_entries(&layout)
        .into_iter()
        .map(|mut e| {
            if e["digest"] == attested.as_str() {
                e["digest"] = replaced.clone().into();
                e["size"] = referrer_bytes.len().into();
            }
            e
        })
        .collect();
    write_index_entries(&layout, entries);
    std::fs::write(&manifest_path, records.replace(&attested, &replaced)).unwrap();

    let report = verify_release(&dir, &release_public_key(), 1);
    assert_finding(
        &report,
        "signature-invalid",
        &format!("{}@{replaced}", layout.display()),
    );
    assert_eq!(finding_kinds(&report).len(), 1, "{:#}", report["findings"]);
}

#[test]
fn verify_release_names_an_embedded_package_the_provenance_does_not_resolve() {
    let guard = tempfile::tempdir().unwrap();
    let dir = release_copy(&guard);
    // A provenance, signed with the release key itself, whose resolved dependencies lack a
    // package the binary was built from: only the embedded list gives it away.
    let mut statement = statement(&envelope(&dir));
    let resolved = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        .as_array_mut()
        .unwrap();
    let before = resolved.len();
    resolved.retain(|d| d["uri"] != "pkg:cargo/airlock-hello@0.3.1");
    assert_eq!(resolved.len(), before - 1);
    rewrite_provenance(
        &dir,
        &statement,
        Some(&signed_release().keys.join("release.key")),
    );
    let line = std::fs::read(dir.join("provenance.intoto.jsonl")).unwrap();
    let manifest_path = dir.join("dist-manifest.json");
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    for artifact in manifest["artifacts"].as_array_mut().unwrap() {
        if artifact["path"] == "provenance.intoto.jsonl" {
            artifact["sha256"] = format!("sha256:{}", sha256_hex(&line)).into();
            artifact["size"] = line.len().into();
        }
    }
    std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();

    let report = verify_release(&dir, &release_public_key(), 1);
    let binary = format!("{} (hello)", dir.join(ARCHIVE).display());
    assert_finding(&report, "unlocked-package", &binary);
    assert_eq!(finding_kinds(&report).len(), 1, "{:#}", report["findings"]);
    assert_eq!(report["findings"][0]["package"], "airlock-hello v0.3.1");
}

/// The end of the walkthrough: the release's image pushed inside under another name keeps the
/// signature `dist --sign --signed-repository` made outside, and containers/image's
/// `sigstoreSigned` policy with `exactRepository` (the outside name) accepts it with the
/// release key, and rejects it with another.
#[test]
fn a_signed_release_pushed_inside_meets_an_exact_repository_policy() {
    let Some(registry) = Registry::start(false) else {
        return;
    };
    let host = registry.addr();
    let Some(skopeo) = SkopeoSigstore::require(&host) else {
        return;
    };
    let guard = tempfile::tempdir().unwrap();
    let dir = release_copy(&guard);
    verify_release(&dir, &release_public_key(), 0);
    let inside = format!("{host}/mirror/hello:0.3.1");
    run_expect(
        push_cmd(&guard.path().join("home"))
            .arg(format!("oci:{}:0.3.1", dir.join("image").display()))
            .arg(&inside),
        0,
    );
    let exact = serde_json::json!({"type": "exactRepository", "dockerRepository": SIGNED_FOR});
    assert_eq!(
        skopeo.policy_allows(&inside, &release_public_key(), exact.clone()),
        Ok(())
    );
    let other = skopeo.policy_allows(&inside, &signed_release().keys.join("other.pub"), exact);
    assert!(
        other
            .as_ref()
            .is_err_and(|m| m.contains("cryptographic signature verification failed")),
        "{other:?}"
    );
    // The inside name is not the one signed: the default identity refuses it.
    let default = skopeo.policy_allows(
        &inside,
        &release_public_key(),
        serde_json::json!({"type": "matchRepoDigestOrExact"}),
    );
    assert!(default.is_err(), "{default:?}");
}

/// A release the settings sign (`sign = true` and a `key` kept out of git, as the README
/// advises) rebuilds without the key: the rebuild compares subjects, which no signature
/// changes, and never signs, whatever the settings of the checked-out revision say.
#[test]
fn verify_rebuild_of_a_release_signed_by_its_settings_needs_no_key() {
    let Some(_) = require_tool("git") else {
        return;
    };
    let (_guard, project) = copy_fixture("hello");
    let manifest = project.join("Cargo.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str("\n[workspace.metadata.airlock.dist]\nsign = true\nkey = \"keys/release.key\"\n");
    std::fs::write(&manifest, text).unwrap();
    std::fs::write(project.join(".gitignore"), "/target\n/keys\n").unwrap();
    git(&project, &["init", "-q", "-b", "main"]);
    git(&project, &["add", "-A"]);
    git(&project, &["commit", "-q", "-m", "release"]);
    run_expect(
        airlock()
            .env("AIRLOCK_KEY_PASSWORD", PASSPHRASE)
            .arg("keygen")
            .arg("--output")
            .arg(project.join("keys/release")),
        0,
    );
    let out = project.join("target/dist");
    run_json(
        airlock()
            .args([
                "dist",
                "--format",
                "json",
                "--target",
                X86,
                "--archive",
                "tar.gz",
            ])
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("--out-dir")
            .arg(&out)
            .env("AIRLOCK_KEY_PASSWORD", PASSPHRASE)
            .env_remove("SOURCE_DATE_EPOCH"),
    );
    assert!(out.join("SHA256SUMS.sig").is_file());
    let verdict = run_json(
        airlock()
            .args(["verify", "--format", "json", "--rebuild"])
            .arg(&out)
            .arg("--manifest-path")
            .arg(&manifest)
            .env_remove("AIRLOCK_KEY_PASSWORD")
            .env_remove("SOURCE_DATE_EPOCH"),
    );
    assert_eq!(verdict["ok"], true, "{verdict}");
    // And the signed release holds up against its key.
    verify_release(&out, &project.join("keys/release.pub"), 0);
}
