//! `Cargo.lock`: what the workspace wants, package by package (name, version, source,
//! checksum). Reads files only; never fetches, builds or writes.
