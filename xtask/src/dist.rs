//! `cargo xtask dist`: airlock releasing itself with its own library, driven by
//! `[workspace.metadata.airlock]` in the root `Cargo.toml`, and always signed: with the key
//! the settings (`[workspace.metadata.airlock.dist] key`) or `AIRLOCK_KEY` name, else with a
//! throwaway key made for this run (said so loudly). The public key goes to
//! `target/dist-key/release.pub`, beside the release and never inside it.

use std::path::{Path, PathBuf};
use std::process::Command;

use airlock::render::CommandReport;
use airlock::signing::{self, KeygenOptions, Passphrase, PassphraseSource, SigningKey};
use airlock::workspace::Workspace;
use anyhow::{Context, Result};

/// The variable naming a release key (a cosign private key file) when the settings name none.
const KEY_ENV: &str = "AIRLOCK_KEY";

/// Runs the release chain on this repository and prints the summary; the exit code is
/// airlock's (1 when a check such as the size budget fails).
pub fn run(root: &Path) -> Result<i32> {
    add_rustup_targets()?;
    let manifest_path = root.join("Cargo.toml");
    let workspace = Workspace::load(Some(&manifest_path))?;
    let key_dir = workspace.target_dir().join("dist-key");
    let (key, passphrase) = release_key(&workspace, &key_dir)?;
    let report = airlock::release::dist(&airlock::release::DistOptions {
        manifest_path: Some(manifest_path),
        sign: true,
        key: Some(key),
        passphrase: Some(passphrase),
        ..airlock::release::DistOptions::default()
    })?;
    print!("{}", report.human());
    println!(
        "\nsigned; check it with: cargo airlock verify --release {} --key {}",
        report.out_dir.display(),
        key_dir.join("release.pub").display()
    );
    Ok(report.exit_kind().code())
}

/// The key that signs the release and its passphrase: the settings' `key`, else the file
/// `AIRLOCK_KEY` names (passphrase from `AIRLOCK_KEY_PASSWORD`), else a new key pair with an
/// empty passphrase in `key_dir`. Its public key is written to `key_dir/release.pub` either
/// way, so the release can be verified as it is.
fn release_key(workspace: &Workspace, key_dir: &Path) -> Result<(PathBuf, Passphrase)> {
    let configured = workspace
        .airlock_metadata()
        .pointer("/dist/key")
        .and_then(|k| k.as_str())
        .map(|k| workspace.root().join(k))
        .or_else(|| std::env::var_os(KEY_ENV).map(PathBuf::from));
    let (key, passphrase) = match configured {
        Some(key) => {
            let passphrase = signing::key::read_passphrase(PassphraseSource::Environment)?;
            (key, passphrase)
        }
        None => {
            std::fs::create_dir_all(key_dir)
                .with_context(|| format!("cannot create {}", key_dir.display()))?;
            let passphrase = Passphrase::empty();
            let made = signing::keygen(&KeygenOptions {
                prefix: key_dir.join("throwaway"),
                passphrase: passphrase.clone(),
                empty_password: true,
                force: true,
            })?;
            airlock::progress::warn(format!(
                "THIS RELEASE IS SIGNED WITH A THROWAWAY KEY ({}), made for this run with an \
                 empty passphrase: its signatures prove only that the files did not change \
                 since this run. Sign with a real key: make one with `cargo airlock keygen \
                 --output keys/release`, keep keys/release.key secret, and set `key = \
                 \"keys/release.key\"` in [workspace.metadata.airlock.dist] (or {KEY_ENV}=FILE) \
                 with its passphrase in AIRLOCK_KEY_PASSWORD",
                made.private_key.display()
            ));
            (made.private_key, passphrase)
        }
    };
    let public = SigningKey::load(&key, &passphrase)
        .with_context(|| format!("cannot load the release key {}", key.display()))?
        .public_key()
        .to_pem();
    airlock::atomic::write_file(&key_dir.join("release.pub"), public.as_bytes())?;
    Ok((key, passphrase))
}

/// Adds the musl targets the release needs when rustup lacks them, so a fresh machine
/// only needs `.ci/setup` for the C tools.
fn add_rustup_targets() -> Result<()> {
    let wanted = ["x86_64-unknown-linux-musl", "aarch64-unknown-linux-musl"];
    let Ok(output) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
    else {
        return Ok(()); // no rustup: `build` says what is missing.
    };
    let installed = String::from_utf8_lossy(&output.stdout).into_owned();
    let missing: Vec<&str> = wanted
        .into_iter()
        .filter(|t| !installed.lines().any(|l| l.trim() == *t))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    airlock::progress::status(
        "Installing",
        format!("rustup targets {}", missing.join(" ")),
    );
    let status = Command::new("rustup")
        .args(["target", "add"])
        .args(&missing)
        .status()
        .context("cannot run rustup")?;
    anyhow::ensure!(
        status.success(),
        "`rustup target add {}` failed",
        missing.join(" ")
    );
    Ok(())
}
