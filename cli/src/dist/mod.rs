//! `cargo airlock dist`: the whole release chain from `[workspace.metadata.airlock]`, and the
//! `dist-manifest.json` that lists every artifact.

pub mod archive;
pub mod sbom;
