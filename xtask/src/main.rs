//! This repository's `cargo xtask`: wires the airlock library to airlock itself. Each task
//! lives in its own file; this file only reads the flags and calls it.

mod bench;
mod dist;
mod fuzz;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  dist            airlock's own release: static binaries, archives, sums, SBOM, image, report,
                  provenance; signed (a throwaway key unless one is configured)
  bench [--quick] [--runs N] [NAME…]
                  run the benchmarks (all, or those named) and rewrite docs/BENCHMARKS.md;
                  --quick: once each on small inputs, printed, nothing written (CI's smoke run);
                  NAME: vendor, build, scale, image, large, dist; `scale`, `large` and
                  `dist` keep their inputs in $AIRLOCK_BENCH_CACHE (default
                  target/bench-cache)
  fuzz [CASES]    the property tests with CASES cases each (default 100000; CI runs 256)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("bench") => bench::run(&args[1..]),
        Some("dist") => match dist::run(&bench::repo_root()) {
            Ok(0) => Ok(()),
            Ok(code) => return ExitCode::from(code as u8),
            Err(err) => Err(err),
        },
        Some("fuzz") => fuzz::run(&bench::repo_root(), &args[1..]),
        Some("-h" | "--help") | None => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(anyhow::anyhow!("unknown task `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(airlock::error::exit_kind(&err).code() as u8)
        }
    }
}
