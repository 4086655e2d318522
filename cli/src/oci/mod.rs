//! OCI image layouts: canonical JSON, reading and writing layouts, and building images from
//! static binaries, on nothing (scratch) or on a base image.
//!
//! Every command that reads a layout goes through one core: [`media`] says what a media type
//! is (OCI or Docker), [`blob`] is the one verified reader (regular files inside the layout
//! only, sizes checked before reading, digests as the bytes stream by), [`walk`] the one walk
//! over indexes and manifests (with depth and count limits), and [`Layout::resolve`] the one tag
//! resolver.
//!
//! `oci` never touches the network: a base image in a registry is pulled by `registry` through
//! the [`base::RegistrySource`] a caller hands in. It never runs containers; the one engine it
//! talks to is the local podman or Docker that `image --load` hands a finished image to
//! ([`load`]).

pub mod archive;
pub mod artifact;
pub mod base;
pub mod blob;
pub mod deflate;
pub mod document;
pub mod essentials;
pub mod files;
pub mod gzip;
pub mod image;
pub mod json;
pub mod layer;
pub mod layout;
pub mod load;
pub mod media;
pub mod prune;
pub mod settings;
pub mod walk;

pub use json::canonical_json;
pub use layout::{ImageRef, Layout, LayoutWriter};
