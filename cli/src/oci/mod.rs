//! OCI image layouts: canonical JSON, reading and writing layouts, and building scratch
//! images from static binaries.
//!
//! `oci` never touches the network (that is `registry`) and never runs a container engine.

pub mod json;
pub mod layout;

pub use json::canonical_json;
pub use layout::{ImageRef, Layout, LayoutWriter};
