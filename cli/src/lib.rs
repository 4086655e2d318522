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
