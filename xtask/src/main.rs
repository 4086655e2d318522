//! This repository's `cargo xtask`: wires the airlock library to airlock itself. No logic.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("usage: cargo xtask dist|bench (not wired yet)")
}
