//! `cargo airlock verify`: what is on disk (vendor directories, bundles, `SHA256SUMS`, OCI
//! layouts) against what it claims to be, naming every file that differs. Reads only.
