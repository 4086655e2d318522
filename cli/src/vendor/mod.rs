//! `cargo airlock vendor`: every locked dependency's sources, each `.crate` proven against its
//! `Cargo.lock` checksum before extraction, in the layout of cargo's `directory` source; and
//! single-file bundles to carry across an air gap.
