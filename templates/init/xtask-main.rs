//! `cargo xtask`: this workspace's own tasks (added by `cargo airlock init`).
//!
//! `cargo xtask dist` builds fully static binaries for every target in
//! `[workspace.metadata.airlock]`, with archives, SHA256SUMS, SBOMs, a scratch OCI image and a
//! size report under target/dist. Add your own tasks beside it.

use std::process::ExitCode;

fn main() -> ExitCode {
    let task = std::env::args().nth(1);
    let code = match task.as_deref() {
        Some("dist") => dist(),
        _ => {
            eprintln!("usage: cargo xtask dist");
            ExitCode::from(2)
        }
    };
    // On Ctrl-C airlock removes its staging directories, then exits with 130 itself.
    airlock::atomic::wait_if_interrupted();
    code
}

fn dist() -> ExitCode {
    let options = airlock::release::DistOptions::default();
    match airlock::release::dist(&options) {
        Ok(report) => {
            print!("{}", airlock::render::CommandReport::human(&report));
            ExitCode::from(airlock::render::CommandReport::exit_kind(&report).code() as u8)
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(airlock::error::exit_kind(&err).code() as u8)
        }
    }
}
