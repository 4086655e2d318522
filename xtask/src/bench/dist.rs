//! `cargo xtask bench dist`: `cargo xtask dist` (the dev-profile xtask that links the airlock
//! library, its hot crates at `opt-level = 3` through `[profile.dev.package.*]`) against the
//! release `cargo airlock dist` with the same settings, in this repository and in a workspace
//! `cargo airlock init` sets up (the `hello` fixture), to check issue 11's goal: the xtask's
//! non-build steps within [`GOAL_PERCENT`] of the release binary's.
//!
//! Both run warm: one untimed run of each first builds every target, so each timed run's build
//! step is cargo finding nothing to do, and the rest is the work measured. Each run's stdout is
//! kept for the `steps:` line `dist` prints (each step's time, to 0.1 s), from which the
//! per-step medians and the non-build total come.
//!
//! The init workspace is remade on every run of the benchmark under
//! `$AIRLOCK_BENCH_CACHE/dist` (default `target/bench-cache`) with its own target directory
//! kept there, so the airlock library its xtask links is compiled once. `--quick` measures only
//! that workspace, for `x86_64-unknown-linux-musl` alone, reusing the repository's target
//! directory (the test run has compiled the library already); this repository's own dist
//! builds airlock for two targets with fat LTO, which is too slow for a smoke run.

use std::cell::Cell;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::{Contender, Measured, Place, interleave, method, run_ok, seconds, table, work_dir};

/// Issue 11's goal: the xtask's non-build steps at most this much slower than the release
/// binary's, percent.
const GOAL_PERCENT: f64 = 10.0;
/// The passphrase of the key both contenders sign with.
const PASSPHRASE: &str = "bench";

/// Measures and returns the Markdown section.
pub fn run(root: &Path) -> Result<String> {
    // On the disk: the release reads the binaries cargo wrote into the target directory there.
    let work = work_dir(Place::Disk, "dist")?;
    let result = run_in(root, &work);
    let _ = fs::remove_dir_all(&work);
    result
}

fn run_in(root: &Path, work: &Path) -> Result<String> {
    let airlock = super::airlock_binary()?;
    let load_before = super::load_average();
    let mut out = format!(
        "## dist\n\n`cargo xtask bench dist`: `cargo xtask dist` (the xtask `cargo run` builds in \
         the dev profile, linking the airlock library; the crates in \
         `[profile.dev.package.*]` at `opt-level = 3`) against `cargo airlock dist` built in \
         release, with the same settings, files on the working disk ({}). Both warm: one \
         untimed run of each first, so every timed run's build step is cargo finding nothing \
         to do, and `report`'s cache (`target/airlock/report-cache`) emptied before each run \
         (untimed), so the report step measures its work. The per-step times are the `steps:` line `dist` prints (0.1 s steps); \
         \"non-build\" is the sum of every step but `building`. Goal (issue 11): the xtask's \
         non-build steps within {GOAL_PERCENT:.0} % of the release binary's. {}\n",
        Place::Disk.label(),
        method(),
    );

    if !super::quick() {
        // This repository: `cargo xtask dist` always signs; both sign with one key.
        let key_prefix = work.join("release");
        run_ok(
            Command::new(&airlock)
                .args(["keygen", "-q", "--force", "--output"])
                .arg(&key_prefix)
                .env("AIRLOCK_KEY_PASSWORD", PASSPHRASE),
        )?;
        let key = key_prefix.with_extension("key");
        let xtask = || {
            let mut cmd = airlock::process::cargo();
            cmd.args(["xtask", "dist"])
                .current_dir(root)
                .env("AIRLOCK_KEY", &key)
                .env("AIRLOCK_KEY_PASSWORD", PASSPHRASE);
            cmd
        };
        let release = || {
            let mut cmd = Command::new(&airlock);
            cmd.args(["dist", "--sign", "--key"])
                .arg(&key)
                .current_dir(root)
                .env("AIRLOCK_KEY_PASSWORD", PASSPHRASE);
            cmd
        };
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let rows = compare(
            work,
            &report_cache(&target_dir),
            "repo",
            "`cargo xtask dist` (this repository)",
            &xtask,
            "`cargo airlock dist --sign --key KEY` (release, in this repository)",
            &release,
        )?;
        let _ = write!(
            out,
            "\n### this repository (`cargo-airlock` for every target of its settings, signed)\n\n{rows}"
        );
    }

    let (workspace, target_dir) = init_workspace(root, &airlock)?;
    let xtask = || {
        let mut cmd = airlock::process::cargo();
        cmd.args(["xtask", "dist"])
            .current_dir(&workspace)
            .env("CARGO_TARGET_DIR", &target_dir);
        cmd
    };
    let release = || {
        let mut cmd = Command::new(&airlock);
        cmd.arg("dist")
            .current_dir(&workspace)
            .env("CARGO_TARGET_DIR", &target_dir);
        cmd
    };
    let rows = compare(
        work,
        &report_cache(&target_dir),
        "init",
        "`cargo xtask dist` (the `init` workspace)",
        &xtask,
        "`cargo airlock dist` (release, in the `init` workspace)",
        &release,
    )?;
    let targets = if super::quick() {
        "`x86_64-unknown-linux-musl` (`--quick`)"
    } else {
        "both musl targets"
    };
    let _ = write!(
        out,
        "\n### a workspace set up by `cargo airlock init --airlock-path` (the `hello` fixture; \
         {targets}, the settings `init` writes)\n\n{rows}"
    );
    let _ = write!(
        out,
        "\n1-minute load average {load_before:.2} before these runs and {:.2} after them (2 \
         cores: above 2, other work shared the machine).\n",
        super::load_average()
    );
    Ok(out)
}

/// Where `report` keeps its cache in a workspace whose target directory is `target_dir`.
fn report_cache(target_dir: &Path) -> PathBuf {
    target_dir.join("airlock").join("report-cache")
}

/// The `hello` fixture copied under the bench cache and set up by `cargo airlock init
/// --airlock-path` this checkout's `cli/`, with this repository's `Cargo.lock` (so the xtask
/// resolves to the versions this repository locks, without the network); returns it and the
/// target directory both contenders build into.
fn init_workspace(root: &Path, airlock: &Path) -> Result<(PathBuf, PathBuf)> {
    let cache = std::env::var_os("AIRLOCK_BENCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("bench-cache"))
        .join("dist");
    let workspace = cache.join("hello");
    if workspace.exists() {
        fs::remove_dir_all(&workspace)
            .with_context(|| format!("cannot remove {}", workspace.display()))?;
    }
    fs::create_dir_all(&cache).with_context(|| format!("cannot create {}", cache.display()))?;
    run_ok(
        Command::new("cp")
            .arg("-r")
            .arg(root.join("fixtures").join("hello"))
            .arg(&workspace),
    )?;
    let _ = fs::remove_dir_all(workspace.join("target"));
    fs::copy(root.join("Cargo.lock"), workspace.join("Cargo.lock"))?;
    run_ok(
        Command::new(airlock)
            .args(["init", "-q", "--airlock-path"])
            .arg(root.join("cli"))
            .current_dir(&workspace),
    )?;
    let target_dir = if super::quick() {
        let manifest = workspace.join("Cargo.toml");
        let text = fs::read_to_string(&manifest)?;
        let one = text.replace(
            "targets = [\"x86_64-unknown-linux-musl\", \"aarch64-unknown-linux-musl\"]",
            "targets = [\"x86_64-unknown-linux-musl\"]",
        );
        anyhow::ensure!(one != text, "init wrote no `targets` line to narrow");
        fs::write(&manifest, one)?;
        std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"))
    } else {
        cache.join("target")
    };
    Ok((workspace, target_dir))
}

/// One untimed run of each (the builds), then the interleaved runs, each one's stdout kept
/// under `work/NAME-*`; returns the run table and the per-step table.
fn compare(
    work: &Path,
    report_cache: &Path,
    name: &str,
    xtask_label: &str,
    xtask: &dyn Fn() -> Command,
    release_label: &str,
    release: &dyn Fn() -> Command,
) -> Result<String> {
    eprintln!("bench dist: {name}: one untimed run of each (builds every target)");
    for cmd in [xtask, release] {
        run_ok(&mut cmd()).context("the untimed first run of dist")?;
    }
    let counters = [Cell::new(0usize), Cell::new(0usize)];
    let stdout_of = |which: usize, n: usize| work.join(format!("{name}-{which}-{n}.txt"));
    let kept = |which: usize, make: &dyn Fn() -> Command| {
        let n = counters[which].get();
        counters[which].set(n + 1);
        keeping_stdout(&make(), &stdout_of(which, n))
    };
    // `report` keeps what it measured by layer digest: emptied before each run (untimed), the
    // report step does its work every time instead of reading the cache of the run before.
    let forget = || {
        if report_cache.exists() {
            fs::remove_dir_all(report_cache)
                .with_context(|| format!("cannot remove {}", report_cache.display()))?;
        }
        Ok(())
    };
    let contenders = [
        Contender {
            reset: Box::new(forget),
            ..Contender::new(xtask_label, Place::Disk, || kept(0, xtask))
        },
        Contender {
            reset: Box::new(forget),
            ..Contender::new(release_label, Place::Disk, || kept(1, release))
        },
    ];
    let measured = interleave(&contenders)?;
    let steps: Vec<Vec<Vec<(String, f64)>>> = (0..2)
        .map(|which| {
            (0..counters[which].get())
                .map(|n| {
                    let path = stdout_of(which, n);
                    let text = fs::read_to_string(&path)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    parse_steps(&text).with_context(|| format!("in {}", path.display()))
                })
                .collect::<Result<_>>()
        })
        .collect::<Result<_>>()?;
    Ok(format!(
        "{}\n{}",
        table(&measured),
        step_table(&measured, &steps)
    ))
}

/// `cmd` with its stdout written to `path` (through `sh`, which `exec`s it: GNU time then
/// measures the command itself).
fn keeping_stdout(cmd: &Command, path: &Path) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg("exec \"$@\" > \"$0\"")
        .arg(path)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => sh.env(key, value),
            None => sh.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        sh.current_dir(dir);
    }
    sh
}

/// The steps of `dist`'s `steps: building 1.2s, stripping 0.3s, …` line, in seconds.
fn parse_steps(stdout: &str) -> Result<Vec<(String, f64)>> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("steps: "))
        .context("dist printed no `steps:` line")?;
    line.split(", ")
        .map(|step| {
            let (name, time) = step
                .rsplit_once(' ')
                .with_context(|| format!("unexpected step {step:?}"))?;
            Ok((name.to_owned(), parse_duration(time)?))
        })
        .collect()
}

/// `1.2s` or `3m04s` (airlock's `format_duration`), in seconds.
fn parse_duration(text: &str) -> Result<f64> {
    let bad = || anyhow::anyhow!("unexpected duration {text:?}");
    let text = text.strip_suffix('s').ok_or_else(bad)?;
    match text.split_once('m') {
        Some((minutes, secs)) => {
            let minutes: f64 = minutes.parse().map_err(|_| bad())?;
            let secs: f64 = secs.parse().map_err(|_| bad())?;
            Ok(minutes * 60.0 + secs)
        }
        None => text.parse().map_err(|_| bad()),
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Each step's median time for the xtask and the release binary, the non-build total and
/// whether the goal is met. `steps[which][run]` holds one run's steps.
fn step_table(measured: &[Measured], steps: &[Vec<Vec<(String, f64)>>]) -> String {
    let mut names: Vec<String> = Vec::new();
    for run in steps.iter().flatten() {
        for (name, _) in run {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    let step_median = |which: usize, name: &str| {
        median(
            steps[which]
                .iter()
                .map(|run| run.iter().filter(|(n, _)| n == name).map(|(_, s)| s).sum())
                .collect(),
        )
    };
    let non_build = |which: usize| {
        median(
            steps[which]
                .iter()
                .map(|run| {
                    run.iter()
                        .filter(|(n, _)| n != "building")
                        .map(|(_, s)| s)
                        .sum()
                })
                .collect(),
        )
    };
    let mut out = format!(
        "| step | {} | {} | xtask ÷ release |\n| --- | ---: | ---: | ---: |\n",
        measured[0].label.replace('|', "\\|"),
        measured[1].label.replace('|', "\\|"),
    );
    let ratio = |x: f64, r: f64| {
        if r > 0.0 {
            format!("{:.2}", x / r)
        } else {
            "–".to_owned()
        }
    };
    for name in &names {
        let (x, r) = (step_median(0, name), step_median(1, name));
        let _ = writeln!(
            out,
            "| {name} | {} | {} | {} |",
            seconds(x),
            seconds(r),
            ratio(x, r)
        );
    }
    let (x, r) = (non_build(0), non_build(1));
    let _ = writeln!(
        out,
        "| **non-build** (every step but `building`) | **{}** | **{}** | **{}** |",
        seconds(x),
        seconds(r),
        ratio(x, r)
    );
    let met = x <= r * (1.0 + GOAL_PERCENT / 100.0);
    let _ = writeln!(
        out,
        "\nGoal, the xtask's non-build steps within {GOAL_PERCENT:.0} % of the release \
         binary's: {} ({:+.0} %).",
        if met { "met" } else { "**not met**" },
        if r > 0.0 { (x / r - 1.0) * 100.0 } else { 0.0 }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_line_parses() {
        let steps = parse_steps("x\n\nsteps: building 1.2s, report 3m04s\n\nwrote y\n").unwrap();
        assert_eq!(
            steps,
            vec![("building".to_owned(), 1.2), ("report".to_owned(), 184.0)]
        );
    }
}
