//! End-to-end tests: the built `cargo-airlock` against fixture projects and real tools.
//! One test binary with a module per command (one link step, as cargo and ripgrep do).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod arches;
mod base;
mod build;
mod bundle;
mod dist;
mod doctor;
mod embedded_deps;
mod hostile_inputs;
mod image;
mod include;
mod init;
mod inspect;
mod load;
mod provenance;
mod push;
mod report;
mod signing;
mod strip;
mod vendor;
mod verify;
