//! The JSON documents of an image, each built with oci-spec's builders: the image config
//! (image-spec `config.md`), the manifest (`manifest.md`) and the multi-platform index
//! (`image-index.md`). Serialised with [`canonical_json`](crate::oci::json::canonical_json) by
//! the caller, so their digests never depend on hash-map order.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use oci_spec::image::{
    ConfigBuilder, Descriptor, History, HistoryBuilder, ImageConfiguration,
    ImageConfigurationBuilder, ImageIndex, ImageIndexBuilder, ImageManifest, ImageManifestBuilder,
    MediaType, Os, Platform, PlatformBuilder, RootFsBuilder,
};

use crate::oci::layer::Layer;
use crate::target::Arch;

/// The `linux/<arch>[/<variant>]` platform of an architecture.
pub fn platform(arch: Arch) -> Result<Platform> {
    let mut builder = PlatformBuilder::default()
        .architecture(oci_spec::image::Arch::from(arch.oci_name()))
        .os(Os::Linux);
    if let Some(variant) = arch.oci_variant() {
        builder = builder.variant(variant);
    }
    builder
        .build()
        .with_context(|| format!("cannot describe the platform linux/{}", arch.oci_name()))
}

/// `linux/amd64`, `linux/arm64/v8`.
pub fn platform_name(arch: Arch) -> String {
    match arch.oci_variant() {
        Some(variant) => format!("linux/{}/{variant}", arch.oci_name()),
        None => format!("linux/{}", arch.oci_name()),
    }
}

/// The runtime settings of the config (`config.config`), resolved.
#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    /// `User`.
    pub user: String,
    /// `Env`, in order.
    pub env: Vec<String>,
    /// `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// `Cmd` (omitted when empty).
    pub cmd: Vec<String>,
    /// `WorkingDir`.
    pub workdir: Option<String>,
    /// `ExposedPorts`, normalised (`8080/tcp`).
    pub ports: Vec<String>,
    /// `Labels`.
    pub labels: BTreeMap<String, String>,
    /// `Volumes` (a base's).
    pub volumes: Vec<String>,
    /// `StopSignal` (a base's).
    pub stop_signal: Option<String>,
}

/// One layer and the history line that says what made it.
pub struct ConfigLayer<'a> {
    /// The layer.
    pub layer: &'a Layer,
    /// What it holds, for `history[].created_by`.
    pub created_by: String,
}

/// The image config for `arch`.
pub fn image_config(
    arch: Arch,
    runtime: &RuntimeConfig,
    layers: &[ConfigLayer<'_>],
    created: &str,
) -> Result<ImageConfiguration> {
    image_config_on(arch, runtime, None, layers, created)
}

/// The image config for `arch` with `layers` on top of `base`'s: the base's `diff_ids` and
/// history come first (image-spec `config.md`: `rootfs.diff_ids` in layer order, bottom first,
/// and one `history` entry per layer that is not `empty_layer`).
pub fn image_config_on(
    arch: Arch,
    runtime: &RuntimeConfig,
    base: Option<&ImageConfiguration>,
    layers: &[ConfigLayer<'_>],
    created: &str,
) -> Result<ImageConfiguration> {
    let context = || format!("cannot build the image config for {}", platform_name(arch));
    let mut config = ConfigBuilder::default()
        .user(runtime.user.clone())
        .env(runtime.env.clone())
        .entrypoint(runtime.entrypoint.clone());
    if !runtime.cmd.is_empty() {
        config = config.cmd(runtime.cmd.clone());
    }
    if let Some(workdir) = &runtime.workdir {
        config = config.working_dir(workdir.clone());
    }
    if !runtime.ports.is_empty() {
        config = config.exposed_ports(runtime.ports.clone());
    }
    if !runtime.labels.is_empty() {
        config = config.labels(to_hash_map(&runtime.labels));
    }
    if !runtime.volumes.is_empty() {
        config = config.volumes(runtime.volumes.clone());
    }
    if let Some(signal) = &runtime.stop_signal {
        config = config.stop_signal(signal.clone());
    }
    let config = config.build().with_context(context)?;

    let mut diff_ids: Vec<String> = base.map_or_else(Vec::new, |b| b.rootfs().diff_ids().clone());
    diff_ids.extend(layers.iter().map(|l| l.layer.diff_id.to_string()));
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(diff_ids)
        .build()
        .with_context(context)?;
    let mut history = base.map_or_else(Vec::new, base_history);
    for layer in layers {
        history.push(
            HistoryBuilder::default()
                .created(created)
                .created_by(layer.created_by.clone())
                .build()
                .with_context(context)?,
        );
    }

    let mut builder = ImageConfigurationBuilder::default()
        .created(created)
        .architecture(oci_spec::image::Arch::from(arch.oci_name()))
        .os(Os::Linux)
        .config(config)
        .rootfs(rootfs)
        .history(history);
    if let Some(variant) = arch.oci_variant() {
        builder = builder.variant(variant);
    }
    builder.build().with_context(context)
}

/// The base's history when it has one entry per layer (as it must); otherwise one entry per
/// base layer saying so, so every layer of the image keeps its history line.
fn base_history(base: &ImageConfiguration) -> Vec<History> {
    let layers = base.rootfs().diff_ids().len();
    let history = base.history().clone().unwrap_or_default();
    let with_layer = history
        .iter()
        .filter(|h| h.empty_layer() != Some(true))
        .count();
    if with_layer == layers {
        return history;
    }
    (1..=layers)
        .map(|n| {
            let mut entry = History::default();
            entry.set_created_by(Some(format!("base layer {n} of {layers}")));
            entry
        })
        .collect()
}

/// The manifest of one platform's image.
pub fn image_manifest(
    config: Descriptor,
    layers: &[&Layer],
    annotations: &BTreeMap<String, String>,
) -> Result<ImageManifest> {
    let mut builder = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(
            layers
                .iter()
                .map(|l| l.descriptor.clone())
                .collect::<Vec<_>>(),
        );
    if !annotations.is_empty() {
        builder = builder.annotations(to_hash_map(annotations));
    }
    builder.build().context("cannot build the image manifest")
}

/// The index that lists one manifest per platform.
pub fn image_index(
    manifests: Vec<Descriptor>,
    annotations: &BTreeMap<String, String>,
) -> Result<ImageIndex> {
    let mut builder = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests);
    if !annotations.is_empty() {
        builder = builder.annotations(to_hash_map(annotations));
    }
    builder.build().context("cannot build the image index")
}

/// oci-spec wants `HashMap`s; the order is restored by canonical serialisation.
fn to_hash_map(map: &BTreeMap<String, String>) -> HashMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Sha256Digest;
    use crate::oci::json::canonical_json;

    fn layer() -> Layer {
        Layer {
            descriptor: Descriptor::new(MediaType::ImageLayerGzip, 3, Sha256Digest::of(b"abc")),
            diff_id: Sha256Digest::of(b"tar"),
            uncompressed_size: 1024,
        }
    }

    #[test]
    fn config_is_canonical_and_complete() {
        let layer = layer();
        let mut labels = BTreeMap::new();
        for key in ["z", "a", "m", "org.opencontainers.image.title"] {
            labels.insert(key.to_owned(), "v".to_owned());
        }
        let runtime = RuntimeConfig {
            user: "65532:65532".into(),
            env: vec!["PATH=/usr/local/bin".into()],
            entrypoint: vec!["/usr/local/bin/app".into()],
            ports: vec!["8080/tcp".into(), "53/udp".into(), "443/tcp".into()],
            labels,
            ..Default::default()
        };
        let layers = [ConfigLayer {
            layer: &layer,
            created_by: "airlock".into(),
        }];
        let config =
            image_config(Arch::Aarch64, &runtime, &layers, "2023-11-14T22:13:20Z").unwrap();
        let first = canonical_json(&config).unwrap();
        for _ in 0..5 {
            let again =
                image_config(Arch::Aarch64, &runtime, &layers, "2023-11-14T22:13:20Z").unwrap();
            assert_eq!(canonical_json(&again).unwrap(), first);
        }
        let value: serde_json::Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(value["architecture"], "arm64");
        assert_eq!(value["variant"], "v8");
        assert_eq!(value["os"], "linux");
        assert_eq!(value["config"]["User"], "65532:65532");
        assert_eq!(
            value["config"]["ExposedPorts"]["53/udp"],
            serde_json::json!({})
        );
        assert_eq!(
            value["rootfs"]["diff_ids"][0],
            Sha256Digest::of(b"tar").to_string()
        );
        assert!(value["config"].get("Cmd").is_none());
    }

    #[test]
    fn manifest_and_index_carry_their_media_types() {
        let layer = layer();
        let config = Descriptor::new(MediaType::ImageConfig, 2, Sha256Digest::of(b"{}"));
        let manifest = image_manifest(config, &[&layer], &BTreeMap::new()).unwrap();
        let value: serde_json::Value =
            serde_json::from_slice(&canonical_json(&manifest).unwrap()).unwrap();
        assert_eq!(
            value["mediaType"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(value["schemaVersion"], 2);
        assert!(value.get("annotations").is_none());
        let index = image_index(vec![], &BTreeMap::new()).unwrap();
        assert_eq!(index.media_type(), &Some(MediaType::ImageIndex));
        assert_eq!(platform_name(Arch::Aarch64), "linux/arm64/v8");
        assert_eq!(platform(Arch::X86_64).unwrap().variant(), &None);
    }
}
