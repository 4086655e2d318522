//! The reference base images: published sizes from `templates/report/base-images.toml`,
//! embedded in the binary so the report works offline.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Deserialize;

use crate::digest::Sha256Digest;

const BASE_IMAGES: &str = include_str!("../../../templates/report/base-images.toml");

/// One reference base image.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaseImage {
    /// What people call it (`alpine`, `gcr.io/distroless/static`).
    pub name: String,
    /// The exact tag the figure is for.
    pub tag: String,
    /// What it carries that a scratch image does not.
    pub needs: String,
    /// The date of the image the figure is for.
    pub date: String,
    /// Where the figure was published.
    pub source: String,
    /// Whether the figure is rounded (from prose, not a byte count).
    pub approximate: bool,
    /// The multi-platform index digest, when published.
    pub digest: Option<Sha256Digest>,
    /// Figures per OCI architecture (`amd64`, `arm64`).
    pub platforms: BTreeMap<String, BasePlatform>,
}

/// A base image's figure for one architecture.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasePlatform {
    /// The platform manifest's digest, when published.
    pub digest: Option<Sha256Digest>,
    /// Its layers' compressed size.
    pub compressed: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BaseFile {
    base: Vec<BaseImage>,
}

/// The embedded reference bases, in file order.
pub fn reference_bases() -> Result<Vec<BaseImage>> {
    let file: BaseFile = toml::from_str(BASE_IMAGES)
        .context("templates/report/base-images.toml (embedded) is malformed")?;
    Ok(file.base)
}

impl BaseImage {
    /// The figure for `architecture`, else for amd64 (the most published one).
    pub fn for_architecture(&self, architecture: &str) -> Option<(&str, &BasePlatform)> {
        self.platforms
            .get_key_value(architecture)
            .or_else(|| self.platforms.get_key_value("amd64"))
            .map(|(k, v)| (k.as_str(), v))
    }

    /// The digest to show: the platform's, else the index's.
    pub fn digest_for(&self, platform: &BasePlatform) -> Option<String> {
        platform
            .digest
            .as_ref()
            .or(self.digest.as_ref())
            .map(ToString::to_string)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_data_is_complete() {
        let bases = reference_bases().unwrap();
        let names: Vec<&str> = bases.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "gcr.io/distroless/static",
                "gcr.io/distroless/cc",
                "alpine",
                "debian:bookworm-slim",
                "ubuntu:24.04"
            ]
        );
        for base in &bases {
            assert!(base.source.starts_with("https://"), "{}", base.name);
            assert!(base.date.len() == 10, "{}: date {}", base.name, base.date);
            for arch in ["amd64", "arm64"] {
                let (_, figure) = base.for_architecture(arch).unwrap();
                assert!(figure.compressed > 1_000_000, "{}", base.name);
                // An exact figure always comes with the digest it belongs to.
                if !base.approximate {
                    assert!(
                        figure.digest.is_some() && base.digest.is_some(),
                        "{}",
                        base.name
                    );
                }
            }
        }
    }
}
