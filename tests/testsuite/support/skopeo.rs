//! containers/image itself, as the authority on sigstore signatures: `skopeo-sigstore`
//! (Debian trixie's skopeo 1.18, which `.ci/setup` installs because bookworm's skopeo is built
//! with sigstore disabled) checks images in a test registry against a `sigstoreSigned` policy,
//! signs images with `--sign-by-sigstore-private-key`, makes keys, and copies an image and its
//! cosign signature tag into a layout.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use airlock::Sha256Digest;

use super::require_tool;

/// `skopeo-sigstore` with a configuration of its own: a `registries.d` that reads and writes
/// signatures as cosign's `sha256-<hex>.sig` tags (`use-sigstore-attachments`) for the test
/// registry, and policies written per call.
pub struct SkopeoSigstore {
    binary: PathBuf,
    config: tempfile::TempDir,
}

/// What skopeo's policy said about an image: Ok, or the reason it gave (`Source image
/// rejected: …`).
pub type PolicyVerdict = Result<(), String>;

impl SkopeoSigstore {
    /// The installed `skopeo-sigstore`, set up to use sigstore attachments with the registry
    /// at `registry` (`host:port`). None (test skipped) when it is missing; under
    /// `AIRLOCK_REQUIRE_TOOLS=1` the test fails instead.
    pub fn require(registry: &str) -> Option<SkopeoSigstore> {
        let binary = require_tool("skopeo-sigstore")?;
        let config = tempfile::Builder::new()
            .prefix("airlock-skopeo-")
            .tempdir()
            .unwrap();
        let registries_d = config.path().join("registries.d");
        std::fs::create_dir(&registries_d).unwrap();
        std::fs::write(
            registries_d.join("airlock-test.yaml"),
            format!("docker:\n  {registry}:\n    use-sigstore-attachments: true\n"),
        )
        .unwrap();
        std::fs::write(
            config.path().join("accept-anything.json"),
            r#"{"default": [{"type": "insecureAcceptAnything"}]}"#,
        )
        .unwrap();
        Some(SkopeoSigstore { binary, config })
    }

    /// `skopeo-sigstore --policy POLICY [--registries.d …] ARGS`. Without `attachments`, no
    /// `registries.d` is given, so signatures are neither read nor written.
    fn run(&self, policy: &Path, attachments: bool, args: &[&str]) -> Output {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--policy").arg(policy);
        if attachments {
            cmd.arg("--registries.d")
                .arg(self.config.path().join("registries.d"));
        }
        cmd.args(args).output().unwrap()
    }

    fn accept_anything(&self) -> PathBuf {
        self.config.path().join("accept-anything.json")
    }

    fn passphrase_file(&self, passphrase: &str) -> PathBuf {
        let file = self.config.path().join("passphrase");
        std::fs::write(&file, passphrase).unwrap();
        file
    }

    /// Whether `skopeo copy docker://IMAGE` is allowed by a policy that requires, for every
    /// image of the image's registry, a sigstore signature by `key` whose identity
    /// `signed_identity` accepts (`containers-policy.json(5)`), the signatures read from
    /// cosign's `.sig` tags. A failure for any other reason than the policy panics.
    pub fn policy_allows(
        &self,
        image: &str,
        key: &Path,
        signed_identity: serde_json::Value,
    ) -> PolicyVerdict {
        let registry = image.split('/').next().unwrap();
        let policy = self.config.path().join("policy.json");
        std::fs::write(
            &policy,
            serde_json::json!({
                "default": [{"type": "reject"}],
                "transports": {
                    "docker": {registry: [{
                        "type": "sigstoreSigned",
                        "keyPath": key,
                        "signedIdentity": signed_identity,
                    }]},
                    "dir": {"": [{"type": "insecureAcceptAnything"}]},
                },
            })
            .to_string(),
        )
        .unwrap();
        let dest = tempfile::tempdir().unwrap();
        let out = self.run(
            &policy,
            true,
            &[
                "copy",
                "--quiet",
                "--src-tls-verify=false",
                &format!("docker://{image}"),
                &format!("dir:{}", dest.path().join("image").display()),
            ],
        );
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let Some(at) = stderr.find("Source image rejected: ") else {
            panic!("skopeo-sigstore copy docker://{image} failed, not by its policy:\n{stderr}");
        };
        // logrus quotes the message: `msg="Source image rejected: … \"name\" …"`.
        Err(stderr[at..]
            .trim_end()
            .trim_end_matches('"')
            .replace("\\\"", "\""))
    }

    /// `skopeo copy --sign-by-sigstore-private-key KEY SOURCE docker://DEST`: containers/image
    /// signs the manifest for `DEST` (name and tag) and stores the signature under cosign's
    /// `.sig` tag.
    pub fn copy_and_sign(&self, source: &str, dest: &str, key: &Path, passphrase: &str) {
        let passphrase = self.passphrase_file(passphrase);
        let out = self.run(
            &self.accept_anything(),
            true,
            &[
                "copy",
                "--quiet",
                "--preserve-digests",
                "--dest-tls-verify=false",
                "--sign-by-sigstore-private-key",
                &key.display().to_string(),
                "--sign-passphrase-file",
                &passphrase.display().to_string(),
                source,
                &format!("docker://{dest}"),
            ],
        );
        assert!(out.status.success(), "skopeo-sigstore copy: {out:?}");
    }

    /// The image `repository:tag` (of manifest `digest`) and its cosign signature tag
    /// `sha256-<hex>.sig`, copied into the layout `layout` under those two tags. containers/image
    /// cannot write signatures to an `oci:` destination ("Pushing signatures for OCI images is
    /// not supported"), so the signature tag is copied as an image of its own, as any tool
    /// that mirrors cosign's tags does: an `index.json` entry with no `artifactType`.
    pub fn pull_with_signature(
        &self,
        repository: &str,
        tag: &str,
        digest: &Sha256Digest,
        layout: &Path,
    ) {
        let signature_tag = format!("sha256-{}.sig", digest.hex());
        for tag in [tag, &signature_tag] {
            let out = self.run(
                &self.accept_anything(),
                false,
                &[
                    "copy",
                    "--quiet",
                    "--preserve-digests",
                    "--src-tls-verify=false",
                    &format!("docker://{repository}:{tag}"),
                    &format!("oci:{}:{tag}", layout.display()),
                ],
            );
            assert!(out.status.success(), "skopeo-sigstore copy {tag}: {out:?}");
        }
    }

    /// `skopeo generate-sigstore-key`: (private key, public key) at `PREFIX.private`/`.pub`.
    pub fn generate_key(&self, prefix: &Path, passphrase: &str) -> (PathBuf, PathBuf) {
        let passphrase = self.passphrase_file(passphrase);
        let out = Command::new(&self.binary)
            .args(["generate-sigstore-key", "--output-prefix"])
            .arg(prefix)
            .arg("--passphrase-file")
            .arg(passphrase)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        (
            prefix.with_extension("private"),
            prefix.with_extension("pub"),
        )
    }
}
