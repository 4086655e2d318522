//! airlock: Rust binaries that deploy like Go's.
//!
//! One fully static binary per target, proven static from its ELF; a `FROM scratch` OCI image
//! holding nothing but that binary, built without a container engine and reproducibly; and
//! dependencies vendored and bundled so they can be carried into an air-gapped network and
//! proven unchanged there against `Cargo.lock`.
//!
//! This library is everything `cargo airlock` does: each command is a function taking a
//! plain options struct and returning a report that serialises to JSON, so a project's own
//! `cargo xtask dist` calls exactly what the CLI calls.
//!
//! Data flows one way: [`lock`] → [`vendor`] / [`verify`] → [`build`] + [`elf`] → [`oci`] →
//! [`registry`] / [`report`] / [`dist`]. Lower modules never call higher ones.
#![deny(missing_docs)]

pub mod atomic;
pub mod digest;
pub mod error;
pub mod process;
pub mod progress;
pub mod release;
pub mod render;
pub mod tarball;
pub mod target;
pub mod workspace;

pub mod build;
pub mod dist;
pub mod elf;
pub mod init;
pub mod lock;
pub mod oci;
pub mod registry;
pub mod report;
pub mod vendor;
pub mod verify;

pub use digest::Sha256Digest;
pub use error::{Error, ExitKind};
pub use target::{Arch, TargetTriple};
