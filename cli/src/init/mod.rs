//! `cargo airlock init`: adds an xtask crate, the `cargo xtask` alias and CI workflows from
//! `templates/` to another workspace. Never overwrites a file without `--force`.
