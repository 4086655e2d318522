//! `cargo xtask bench vendor`: `cargo airlock vendor` against `cargo vendor` on this
//! repository's own lockfile (warm cache, offline), and `cargo airlock verify --vendor`
//! against `sha256sum` over the same tree.
//!
//! Both sides run the release binaries as users run them, one after the other, on the same
//! input; each figure is the median of [`RUNS`] runs. Wall time and peak memory come from GNU
//! `time`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};

const RUNS: usize = 3;
/// The platform the filtered run keeps.
const PLATFORM: &str = "x86_64-unknown-linux-musl";

/// One measured command: median wall seconds and the peak RSS of that run, in KiB.
struct Measure {
    seconds: f64,
    max_rss_kib: u64,
}

/// Runs `make()` [`RUNS`] times under `/usr/bin/time`, calling `reset` before each run (not
/// timed), and returns the median run.
fn measure(reset: &dyn Fn() -> Result<()>, make: &dyn Fn() -> Command) -> Result<Measure> {
    let mut runs = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        reset()?;
        let stats = tempfile::NamedTempFile::new()?;
        let cmd = make();
        let mut timed = Command::new("/usr/bin/time");
        timed
            .arg("-f")
            .arg("%e %M")
            .arg("-o")
            .arg(stats.path())
            .arg(cmd.get_program())
            .args(cmd.get_args())
            .stdout(Stdio::null());
        if let Some(dir) = cmd.get_current_dir() {
            timed.current_dir(dir);
        }
        let status = timed
            .status()
            .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
        anyhow::ensure!(
            status.success(),
            "{:?} failed ({status})",
            cmd.get_program()
        );
        let text = std::fs::read_to_string(stats.path())?;
        let mut parts = text.split_whitespace();
        let seconds: f64 = parts.next().unwrap_or("0").parse()?;
        let max_rss_kib: u64 = parts.next().unwrap_or("0").parse()?;
        runs.push(Measure {
            seconds,
            max_rss_kib,
        });
    }
    runs.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
    Ok(runs.swap_remove(RUNS / 2))
}

fn run_ok(cmd: &mut Command) -> Result<std::process::Output> {
    let output = cmd
        .output()
        .with_context(|| format!("cannot run {:?}", cmd.get_program()))?;
    anyhow::ensure!(
        output.status.success(),
        "{:?} failed: {}",
        cmd,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(output)
}

/// Measures and returns the Markdown section.
pub fn run(root: &Path) -> Result<String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("bench vendor: building the release binary");
    run_ok(
        Command::new(&cargo)
            .args(["build", "--release", "--quiet", "-p", "cargo-airlock"])
            .current_dir(root),
    )?;
    let airlock = root.join("target/release/cargo-airlock");
    let manifest = root.join("Cargo.toml");
    run_ok(
        Command::new(&cargo)
            .args(["fetch", "--locked", "--quiet", "--manifest-path"])
            .arg(&manifest),
    )?;
    let lock = airlock::lock::Lockfile::load(&root.join("Cargo.lock"))?;
    let crates = lock.remote_packages().count();

    let work = tempfile::tempdir()?;
    let ours = work.path().join("airlock-vendor");
    let theirs = work.path().join("cargo-vendor");
    let filtered = work.path().join("airlock-vendor-platform");
    let clear = |dir: &PathBuf| {
        let dir = dir.clone();
        move || -> Result<()> {
            if dir.exists() {
                std::fs::remove_dir_all(&dir)?;
            }
            Ok(())
        }
    };
    let airlock_vendor = |dir: &Path, platform: bool| {
        let mut cmd = Command::new(&airlock);
        cmd.args(["vendor", "--offline", "-q", "--manifest-path"])
            .arg(&manifest)
            .arg(dir);
        if platform {
            cmd.args(["--platform", PLATFORM]);
        }
        cmd
    };
    eprintln!("bench vendor: cargo vendor");
    let cargo_vendor = measure(&clear(&theirs), &|| {
        let mut cmd = Command::new(&cargo);
        cmd.args(["vendor", "--offline", "--locked", "-q", "--manifest-path"])
            .arg(&manifest)
            .arg(&theirs);
        cmd
    })?;
    eprintln!("bench vendor: cargo airlock vendor");
    let airlock_full = measure(&clear(&ours), &|| airlock_vendor(&ours, false))?;
    eprintln!("bench vendor: cargo airlock vendor --platform");
    let airlock_platform = measure(&clear(&filtered), &|| airlock_vendor(&filtered, true))?;

    // The tree both verifiers hash.
    let report = run_ok(
        Command::new(&airlock)
            .args([
                "verify",
                "--no-cache",
                "--format",
                "json",
                "--manifest-path",
            ])
            .arg(&manifest)
            .arg("--vendor")
            .arg(&ours),
    )?;
    let report: serde_json::Value = serde_json::from_slice(&report.stdout)?;
    let bytes = report["checks"][0]["bytes"].as_u64().unwrap_or(0);
    let files = report["checks"][0]["files"].as_u64().unwrap_or(0);
    let nothing = || Ok(());
    eprintln!("bench vendor: verify");
    let verify = measure(&nothing, &|| {
        let mut cmd = Command::new(&airlock);
        cmd.args(["verify", "-q", "--no-cache", "--manifest-path"])
            .arg(&manifest)
            .arg("--vendor")
            .arg(&ours);
        cmd
    })?;
    let verify_pristine = measure(&nothing, &|| {
        let mut cmd = Command::new(&airlock);
        cmd.args(["verify", "-q", "--manifest-path"])
            .arg(&manifest)
            .arg("--vendor")
            .arg(&ours);
        cmd
    })?;
    let script = "find . -type f -print0 | xargs -0 sha256sum > /dev/null";
    let sha256sum = measure(&nothing, &|| {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]).current_dir(&ours);
        cmd
    })?;

    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let gbps = |m: &Measure| bytes as f64 / m.seconds.max(1e-6) / 1e9;
    let mib = |m: &Measure| m.max_rss_kib as f64 / 1024.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "## vendor\n\n`cargo xtask bench vendor`: this repository's own `Cargo.lock` ({crates} \
         crates from crates.io), cargo's cache warm, offline. Median of {RUNS} runs, release \
         binaries, the output directory removed before each run.\n"
    );
    let _ = writeln!(
        out,
        "| command | time | peak memory | vs `cargo vendor` |\n| --- | ---: | ---: | ---: |"
    );
    for (label, m) in [
        ("`cargo vendor --offline --locked`", &cargo_vendor),
        ("`cargo airlock vendor --offline`", &airlock_full),
        (
            "`cargo airlock vendor --offline --platform x86_64-unknown-linux-musl`",
            &airlock_platform,
        ),
    ] {
        let _ = writeln!(
            out,
            "| {label} | {:.2} s | {:.0} MiB | {:.2}x |",
            m.seconds,
            mib(m),
            cargo_vendor.seconds / m.seconds.max(1e-6)
        );
    }
    let _ = writeln!(
        out,
        "\nVerifying the vendored tree ({files} files, {:.1} MiB), {cores} cores:\n",
        bytes as f64 / (1 << 20) as f64
    );
    let _ = writeln!(
        out,
        "| command | time | throughput | peak memory | vs `sha256sum` |\n| --- | ---: | ---: | ---: | ---: |"
    );
    for (label, m) in [
        (format!("`{script}`"), &sha256sum),
        (
            "`cargo airlock verify --vendor DIR --no-cache` (every file against `.cargo-checksum.json`, package checksums against `Cargo.lock`)".to_owned(),
            &verify,
        ),
        (
            "`cargo airlock verify --vendor DIR` (also every file against its pristine `.crate` from the cache)".to_owned(),
            &verify_pristine,
        ),
    ] {
        let _ = writeln!(
            out,
            "| {label} | {:.3} s | {:.2} GB/s | {:.0} MiB | {:.2}x |",
            m.seconds,
            gbps(m),
            mib(m),
            sha256sum.seconds / m.seconds.max(1e-6)
        );
    }
    let _ = writeln!(
        out,
        "\nThroughput is the vendored bytes over wall time; `sha256sum` hashes on one core, \
         `verify` on all {cores}. Small files dominate a vendor tree, so opening and reading \
         files costs as much as hashing them."
    );
    Ok(out)
}
