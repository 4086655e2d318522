//! Test layouts written with airlock's `LayoutWriter`: real gzip'd tar layers, real configs,
//! an image and a two-platform index.

use std::io::Write;
use std::path::{Path, PathBuf};

use airlock::Sha256Digest;
use airlock::oci::layout::{LayoutWriter, with_ref_name};
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, Os, PlatformBuilder, RootFsBuilder,
};

/// Deterministic incompressible bytes (xorshift), so big layers stay big after gzip.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
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
pub fn layer(files: &[(&str, Vec<u8>)]) -> (Vec<u8>, Sha256Digest) {
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

pub struct TestImage {
    /// The manifest's descriptor (with platform, for index children).
    pub descriptor: Descriptor,
    pub manifest_bytes: Vec<u8>,
}

/// Writes a config and manifest for `arch` with `layers` into `writer`.
pub fn image(writer: &LayoutWriter, arch: Arch, layers: &[&(Vec<u8>, Sha256Digest)]) -> TestImage {
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
pub struct TestLayout {
    pub path: PathBuf,
    /// Tag `single`: one amd64 image with a 9 MiB layer (chunked) and a small one.
    pub single: TestImage,
    /// Tag `multi`: an index of amd64 and arm64 images sharing the small layer.
    pub multi_digest: Sha256Digest,
    pub multi_bytes: Vec<u8>,
    pub multi_children: Vec<TestImage>,
    /// Distinct blobs of each tag.
    pub single_blobs: usize,
    pub multi_blobs: usize,
}

pub fn test_layout(dir: &Path, seed: u64) -> TestLayout {
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

pub fn digest_of(image: &TestImage) -> Sha256Digest {
    Sha256Digest::try_from(image.descriptor.digest()).unwrap()
}

/// The bytes of `path` (no leading `/`) in the last layer of the image `tag` of an airlock
/// layout with one platform, and that layer's descriptor.
pub fn file_in_top_layer(layout: &Path, tag: &str, path: &str) -> (Vec<u8>, serde_json::Value) {
    use std::io::Read;
    let blob = |digest: &serde_json::Value| {
        let hex = digest.as_str().unwrap().trim_start_matches("sha256:");
        std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let entry = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .unwrap_or_else(|| panic!("no tag {tag} in {index}"));
    let manifest: serde_json::Value = serde_json::from_slice(&blob(&entry["digest"])).unwrap();
    let layer = manifest["layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    let bytes = blob(&layer["digest"]);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some(path) {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            return (data, layer);
        }
    }
    panic!("{path} is not in the top layer of {}", layout.display())
}
