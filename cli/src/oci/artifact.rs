//! Artifacts attached to an image (image-spec `manifest.md`, "Guidelines for Artifact
//! Usage"): a manifest whose `artifactType` says what it holds, whose config is the empty
//! descriptor, whose layers are the files, and whose `subject` is the image it describes, so
//! registries list it through the referrers API.

use std::collections::HashMap;

use anyhow::{Context, Result};
use oci_spec::image::{Descriptor, ImageManifestBuilder, MediaType};

use crate::oci::layout::LayoutWriter;

/// The empty JSON blob `{}` every artifact manifest uses as its config.
const EMPTY_JSON: &[u8] = b"{}";

/// One file carried by an artifact.
#[derive(Debug, Clone)]
pub struct ArtifactFile<'a> {
    /// Its media type (`application/vnd.cyclonedx+json`).
    pub media_type: &'a str,
    /// Its file name (`org.opencontainers.image.title`).
    pub title: &'a str,
    /// Its bytes.
    pub bytes: &'a [u8],
}

/// Writes an artifact manifest holding `files` with `subject` into the layout and returns its
/// descriptor (with `artifactType` set, ready for `index.json`).
pub fn attach(
    writer: &LayoutWriter,
    subject: &Descriptor,
    artifact_type: &str,
    files: &[ArtifactFile<'_>],
    created: &str,
) -> Result<Descriptor> {
    let config = writer.put_blob(MediaType::EmptyJSON, EMPTY_JSON)?;
    let mut layers = Vec::with_capacity(files.len());
    for file in files {
        let mut layer =
            writer.put_blob(MediaType::Other(file.media_type.to_owned()), file.bytes)?;
        layer.set_annotations(Some(HashMap::from([(
            "org.opencontainers.image.title".to_owned(),
            file.title.to_owned(),
        )])));
        layers.push(layer);
    }
    let mut subject = subject.clone();
    // The subject identifies the image by digest; its tag belongs to index.json only.
    subject.set_annotations(None);
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::Other(artifact_type.to_owned()))
        .config(config)
        .layers(layers)
        .subject(subject)
        .annotations(HashMap::from([(
            "org.opencontainers.image.created".to_owned(),
            created.to_owned(),
        )]))
        .build()
        .context("cannot build the artifact manifest")?;
    let (mut descriptor, _) = writer.put_json(MediaType::ImageManifest, &manifest)?;
    descriptor.set_artifact_type(Some(MediaType::Other(artifact_type.to_owned())));
    Ok(descriptor)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::layout::{Layout, with_ref_name};
    use oci_spec::image::{ImageIndexBuilder, ImageManifest};

    #[test]
    fn artifact_points_at_its_subject() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("layout");
        let writer = LayoutWriter::create(&target).unwrap();
        let image = with_ref_name(
            writer
                .put_blob(MediaType::ImageManifest, b"{\"x\":1}")
                .unwrap(),
            "v1",
        );
        let sbom = attach(
            &writer,
            &image,
            "application/vnd.cyclonedx+json",
            &[ArtifactFile {
                media_type: "application/vnd.cyclonedx+json",
                title: "sbom.cdx.json",
                bytes: b"{\"bomFormat\":\"CycloneDX\"}",
            }],
            "2023-11-14T22:13:20Z",
        )
        .unwrap();
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .manifests(vec![image.clone(), sbom.clone()])
            .build()
            .unwrap();
        writer.finish(&index).unwrap();
        let layout = Layout::open(&target).unwrap();
        let manifest: ImageManifest = layout.read_json(&sbom).unwrap();
        assert_eq!(
            manifest.subject().as_ref().unwrap().digest(),
            image.digest()
        );
        assert_eq!(manifest.config().media_type(), &MediaType::EmptyJSON);
        assert_eq!(
            layout.read_document(&manifest.layers()[0]).unwrap(),
            b"{\"bomFormat\":\"CycloneDX\"}"
        );
        assert_eq!(layout.tags(), ["v1"]);
    }
}
