//! `cargo airlock report`: image and binary sizes side by side, and size budgets for CI.
//! Reads layouts and binaries; never builds or pushes.
