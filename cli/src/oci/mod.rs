//! OCI image layouts: canonical JSON, reading and writing layouts, and building scratch
//! images from static binaries.
//!
//! `oci` never touches the network (that is `registry`) and never runs a container engine.

pub mod archive;
pub mod artifact;
pub mod document;
pub mod essentials;
pub mod gzip;
pub mod image;
pub mod json;
pub mod layer;
pub mod layout;
pub mod prune;
pub mod settings;

pub use json::canonical_json;
pub use layout::{ImageRef, Layout, LayoutWriter};
