//! `image` settings: the `image` table of `[workspace.metadata.airlock]` and of
//! `[package.metadata.airlock]`, overridden by flags (flags build the same type).
//!
//! Later layers override earlier ones field by field; the maps (`env`, `labels`,
//! `annotations`) are merged key by key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use serde::Deserialize;

use crate::error;
use crate::oci::base::BaseRef;
use crate::oci::essentials::Essential;
use crate::oci::files::IncludeSource;
use crate::oci::layer::CompressionKind;
use crate::target::TargetTriple;

/// Everything `cargo airlock image` can be told, from `Cargo.toml` or flags. Every field is
/// optional: unset means "the next layer down decides" (ending at the defaults).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ImageSettings {
    /// The binaries to put in the image (`--bin`); the first is the entrypoint.
    pub bins: Option<Vec<String>>,
    /// Targets to build images for (`--target`).
    pub targets: Option<Vec<TargetTriple>>,
    /// The repository name (`airlock-hello`) used when the archive is loaded.
    pub repository: Option<String>,
    /// Tags (`org.opencontainers.image.ref.name`); default: the package version.
    pub tags: Option<Vec<String>>,
    /// `Entrypoint`; default: the first binary.
    pub entrypoint: Option<Vec<String>>,
    /// `Cmd`.
    pub cmd: Option<Vec<String>>,
    /// Environment variables added to `Env`.
    pub env: Option<BTreeMap<String, String>>,
    /// `WorkingDir`.
    pub workdir: Option<String>,
    /// `ExposedPorts`: `8080`, `8080/tcp`, `53/udp`.
    pub ports: Option<Vec<String>>,
    /// `Labels` added to the standard ones.
    pub labels: Option<BTreeMap<String, String>>,
    /// Manifest annotations added to the standard ones.
    pub annotations: Option<BTreeMap<String, String>>,
    /// `User`; default `65532:65532`.
    pub user: Option<String>,
    /// The essentials layer: `true` for passwd, ca-certs and tmp, or a list of items.
    pub essentials: Option<EssentialsSetting>,
    /// The CA bundle to copy (implies `ca-certs`).
    pub ca_bundle: Option<PathBuf>,
    /// The zoneinfo directory to copy (implies `tzdata`).
    pub zoneinfo: Option<PathBuf>,
    /// `gzip` or `zstd`.
    pub compression: Option<CompressionKind>,
    /// The compression level.
    pub level: Option<i32>,
    /// The image to build on (`--base`): `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]` or
    /// `docker://REGISTRY/REPOSITORY:TAG`; default: none (a scratch image).
    pub base: Option<BaseRef>,
    /// Extra files by destination in the image (`--include SRC:DEST[:MODE]`).
    pub files: Option<BTreeMap<String, IncludeSource>>,
}

/// `essentials = true` or `essentials = ["passwd", "tmp"]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum EssentialsSetting {
    /// true: the default set; false: none.
    All(bool),
    /// These items.
    Items(Vec<Essential>),
}

impl EssentialsSetting {
    /// The items this setting stands for.
    pub fn items(&self) -> Vec<Essential> {
        match self {
            EssentialsSetting::All(true) => Essential::DEFAULT_SET.to_vec(),
            EssentialsSetting::All(false) => Vec::new(),
            EssentialsSetting::Items(items) => items.clone(),
        }
    }
}

impl ImageSettings {
    /// Reads the `image` table of an `airlock` metadata value (`Null` when absent). Relative
    /// paths are resolved against `base`, the directory of the `Cargo.toml` it came from.
    pub fn from_metadata(airlock: &serde_json::Value, table: &str, base: &Path) -> Result<Self> {
        let value = airlock.get("image");
        let mut settings: ImageSettings = match value {
            None | Some(serde_json::Value::Null) => ImageSettings::default(),
            Some(v) => serde_json::from_value(v.clone()).map_err(|e| {
                error::input(format!(
                    "invalid `{table}.image` settings in Cargo.toml: {e}"
                ))
            })?,
        };
        let files = settings.files.iter_mut().flat_map(|f| f.values_mut());
        for path in [&mut settings.ca_bundle, &mut settings.zoneinfo]
            .into_iter()
            .flatten()
            .chain(files.map(|f| &mut f.src))
        {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        settings.base = settings.base.map(|r| r.relative_to(base));
        Ok(settings)
    }

    /// `self` with every field `over` sets replaced (maps merged key by key).
    pub fn overridden_by(self, over: ImageSettings) -> ImageSettings {
        fn merge<V>(
            base: Option<BTreeMap<String, V>>,
            over: Option<BTreeMap<String, V>>,
        ) -> Option<BTreeMap<String, V>> {
            match (base, over) {
                (Some(mut base), Some(over)) => {
                    base.extend(over);
                    Some(base)
                }
                (base, over) => over.or(base),
            }
        }
        ImageSettings {
            bins: over.bins.or(self.bins),
            targets: over.targets.or(self.targets),
            repository: over.repository.or(self.repository),
            tags: over.tags.or(self.tags),
            entrypoint: over.entrypoint.or(self.entrypoint),
            cmd: over.cmd.or(self.cmd),
            env: merge(self.env, over.env),
            workdir: over.workdir.or(self.workdir),
            ports: over.ports.or(self.ports),
            labels: merge(self.labels, over.labels),
            annotations: merge(self.annotations, over.annotations),
            user: over.user.or(self.user),
            essentials: over.essentials.or(self.essentials),
            ca_bundle: over.ca_bundle.or(self.ca_bundle),
            zoneinfo: over.zoneinfo.or(self.zoneinfo),
            compression: over.compression.or(self.compression),
            level: over.level.or(self.level),
            base: over.base.or(self.base),
            files: merge(self.files, over.files),
        }
    }
}

/// Parses `KEY=VALUE` (for `--env`, `--label`, `--annotation`).
pub fn parse_key_value(text: &str) -> Result<(String, String)> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(error::input(format!(
            "`{text}` is not KEY=VALUE (the key must not be empty)"
        ))),
    }
}

/// Normalises an exposed port: `8080` → `8080/tcp`; the protocol must be tcp, udp or sctp
/// (image-spec `config.md`, `ExposedPorts`).
pub fn normalize_port(text: &str) -> Result<String> {
    let (port, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
    let valid_port = port.parse::<u16>().is_ok_and(|p| p > 0);
    if !valid_port || !matches!(protocol, "tcp" | "udp" | "sctp") {
        return Err(error::input(format!(
            "`{text}` is not a port: use PORT or PORT/PROTOCOL with a port from 1 to 65535 \
             and tcp, udp or sctp"
        )));
    }
    Ok(format!("{port}/{protocol}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_overrides_workspace_and_maps_merge() {
        let base = Path::new("/ws");
        let workspace = ImageSettings::from_metadata(
            &serde_json::json!({"image": {"user": "1000", "env": {"A": "1", "B": "2"},
                "essentials": true, "ca-bundle": "certs/ca.pem"}}),
            "workspace.metadata.airlock",
            base,
        )
        .unwrap();
        assert_eq!(
            workspace.ca_bundle.as_deref(),
            Some(Path::new("/ws/certs/ca.pem"))
        );
        let package = ImageSettings::from_metadata(
            &serde_json::json!({"image": {"env": {"B": "3"}, "essentials": ["tmp"],
                "compression": "zstd"}}),
            "package.metadata.airlock",
            base,
        )
        .unwrap();
        let merged = workspace.overridden_by(package);
        assert_eq!(merged.user.as_deref(), Some("1000"));
        let env = merged.env.unwrap();
        assert_eq!((env["A"].as_str(), env["B"].as_str()), ("1", "3"));
        assert_eq!(merged.essentials.unwrap().items(), [Essential::Tmp]);
        assert_eq!(merged.compression, Some(CompressionKind::Zstd));
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let err = ImageSettings::from_metadata(
            &serde_json::json!({"image": {"entry-point": ["/app"]}}),
            "package.metadata.airlock",
            Path::new("/"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("package.metadata.airlock.image") && err.contains("entry-point"),
            "{err}"
        );
        assert!(normalize_port("8080").unwrap() == "8080/tcp");
        assert!(normalize_port("53/udp").is_ok());
        assert!(normalize_port("0").is_err());
        assert!(normalize_port("80/http").is_err());
        assert!(parse_key_value("=x").is_err());
        assert_eq!(
            parse_key_value("A=b=c").unwrap(),
            ("A".into(), "b=c".into())
        );
    }
}
