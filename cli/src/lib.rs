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
//! # Layers
//!
//! Data flows one way, from what is wanted to what is shipped and checked. Each line below is
//! a layer; a module may use the modules of lower lines (and of its own line only in the
//! foundation), never those of higher ones. `tidy::layering` reads every `use crate::…` edge
//! and holds this table true.
//!
//! | layer | modules | what |
//! | --- | --- | --- |
//! | 0 | [`atomic`] [`digest`] [`error`] [`finding`] [`input`] [`process`] [`progress`] [`records`] [`render`] [`rustc`] [`tarball`] [`target`] [`workspace`] | the foundation: outputs, hashes, errors, tools, formats |
//! | 1 | [`lock`] | what the workspace wants: `Cargo.lock` |
//! | 2 | [`vendoring`] | what is on disk: sources proven against the lockfile, bundles |
//! | 3 | [`elf`] | what a binary is: linkage, architecture |
//! | 4 | [`compile`] | static binaries, built and proven |
//! | 5 | [`oci`] | images: layers, configs, manifests, layouts (one walker, one verified reader) |
//! | 6 | [`signing`] | keys, image and file signatures, DSSE attestations (cosign-compatible, offline) |
//! | 7 | [`registry`] [`report`] | images pushed (and signed for their destination); sizes compared |
//! | 8 | [`release`] | the whole chain in one call (`dist`) |
//! | 9 | [`verify`] [`init`] | checks of everything below; scaffolding for other workspaces |
#![deny(missing_docs)]

pub mod atomic;
pub mod digest;
pub mod error;
pub mod finding;
pub mod input;
pub mod process;
pub mod progress;
pub mod records;
pub mod render;
pub mod rustc;
pub mod tarball;
pub mod target;
pub mod workspace;

pub mod lock;

pub mod vendoring;

pub mod elf;

pub mod compile;

pub mod oci;

pub mod signing;

pub mod registry;
pub mod report;

pub mod release;

pub mod init;
pub mod verify;

pub use digest::Sha256Digest;
pub use error::{Error, ExitKind};
pub use target::{Arch, TargetTriple};

/// Checks that a committed generated file (a JSON Schema) equals what the code generates now;
/// `AIRLOCK_BLESS=1` rewrites it. Used by the tests of every generated document.
#[cfg(test)]
pub(crate) fn assert_generated_file_is_fresh(
    relative_to_repo: &str,
    generated: &str,
    test_filter: &str,
) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative_to_repo);
    if std::env::var_os("AIRLOCK_BLESS").is_some() {
        std::fs::write(&path, generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: run `AIRLOCK_BLESS=1 cargo test --lib {test_filter}` and commit it",
        path.display()
    );
}

#[cfg(test)]
mod tidy;
