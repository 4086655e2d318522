//! What a descriptor's media type says its blob is: the one classifier every command uses for
//! OCI and Docker v2 (schema 2) media types, so no command matches strings of its own.
//!
//! Docker's manifest and manifest list have the shapes of the OCI manifest and index
//! (image-spec `media-types.md`, "Compatibility Matrix"), so both parse with oci-spec's types.
//! Unknown media types are [`MediaKind::Other`]: image-spec `image-index.md` says an unknown
//! `mediaType` must be ignored, never treated as an error.

use oci_spec::image::MediaType;

/// Docker's image manifest (`application/vnd.docker.distribution.manifest.v2+json`).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker's manifest list, the counterpart of the OCI index.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker's image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// Docker's gzip'd layer.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// Docker's foreign (non-distributable) gzip'd layer, as Windows base images use.
pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// Which specification a media type comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// The OCI image spec.
    Oci,
    /// Docker's image manifest v2, schema 2.
    Docker,
}

/// How a layer's tar stream is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCodec {
    /// A plain tar.
    Tar,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// What a blob is, by its descriptor's media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// An image manifest (an artifact manifest is one too): config, layers, subject.
    Manifest(Schema),
    /// An index or manifest list: manifests, subject.
    Index(Schema),
    /// An image config.
    Config(Schema),
    /// A tar layer (distributable or not).
    Layer(LayerCodec),
    /// Anything else: artifact files, the empty JSON `{}`, unknown types.
    Other,
}

impl MediaKind {
    /// Classifies `media_type`.
    pub fn of(media_type: &MediaType) -> MediaKind {
        use LayerCodec::{Gzip, Tar, Zstd};
        match media_type {
            MediaType::ImageManifest => MediaKind::Manifest(Schema::Oci),
            MediaType::ImageIndex => MediaKind::Index(Schema::Oci),
            MediaType::ImageConfig => MediaKind::Config(Schema::Oci),
            MediaType::ImageLayer | MediaType::ImageLayerNonDistributable => MediaKind::Layer(Tar),
            MediaType::ImageLayerGzip | MediaType::ImageLayerNonDistributableGzip => {
                MediaKind::Layer(Gzip)
            }
            MediaType::ImageLayerZstd | MediaType::ImageLayerNonDistributableZstd => {
                MediaKind::Layer(Zstd)
            }
            MediaType::Other(other) => match other.as_str() {
                DOCKER_MANIFEST => MediaKind::Manifest(Schema::Docker),
                DOCKER_MANIFEST_LIST => MediaKind::Index(Schema::Docker),
                DOCKER_CONFIG => MediaKind::Config(Schema::Docker),
                DOCKER_LAYER_GZIP | DOCKER_FOREIGN_LAYER_GZIP => MediaKind::Layer(Gzip),
                _ => MediaKind::Other,
            },
            _ => MediaKind::Other,
        }
    }

    /// Classifies a media type given as text (a `Content-Type`, a `mediaType` field).
    pub fn of_str(media_type: &str) -> MediaKind {
        MediaKind::of(&MediaType::from(media_type))
    }

    /// An image manifest, OCI or Docker.
    pub fn is_manifest(self) -> bool {
        matches!(self, MediaKind::Manifest(_))
    }

    /// An index or manifest list.
    pub fn is_index(self) -> bool {
        matches!(self, MediaKind::Index(_))
    }

    /// A manifest or an index: a JSON document that names other blobs.
    pub fn is_document(self) -> bool {
        self.is_manifest() || self.is_index()
    }

    /// The codec of a layer; None for anything else.
    pub fn layer_codec(self) -> Option<LayerCodec> {
        match self {
            MediaKind::Layer(codec) => Some(codec),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_oci_and_docker_types() {
        let cases = [
            (
                "application/vnd.oci.image.manifest.v1+json",
                MediaKind::Manifest(Schema::Oci),
            ),
            (DOCKER_MANIFEST, MediaKind::Manifest(Schema::Docker)),
            (
                "application/vnd.oci.image.index.v1+json",
                MediaKind::Index(Schema::Oci),
            ),
            (DOCKER_MANIFEST_LIST, MediaKind::Index(Schema::Docker)),
            (
                "application/vnd.oci.image.config.v1+json",
                MediaKind::Config(Schema::Oci),
            ),
            (DOCKER_CONFIG, MediaKind::Config(Schema::Docker)),
            (
                "application/vnd.oci.image.layer.v1.tar",
                MediaKind::Layer(LayerCodec::Tar),
            ),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip",
                MediaKind::Layer(LayerCodec::Gzip),
            ),
            (
                "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
                MediaKind::Layer(LayerCodec::Zstd),
            ),
            (DOCKER_LAYER_GZIP, MediaKind::Layer(LayerCodec::Gzip)),
            (
                DOCKER_FOREIGN_LAYER_GZIP,
                MediaKind::Layer(LayerCodec::Gzip),
            ),
            ("application/vnd.oci.empty.v1+json", MediaKind::Other),
            ("application/vnd.cyclonedx+json", MediaKind::Other),
            (
                "application/vnd.oci.image.manifest.v1+json; x=y",
                MediaKind::Other,
            ),
        ];
        for (text, kind) in cases {
            assert_eq!(MediaKind::of_str(text), kind, "{text}");
        }
        assert!(MediaKind::of_str(DOCKER_MANIFEST_LIST).is_document());
        assert!(!MediaKind::of_str(DOCKER_CONFIG).is_document());
        assert_eq!(
            MediaKind::of_str(DOCKER_LAYER_GZIP).layer_codec(),
            Some(LayerCodec::Gzip)
        );
    }
}
