//! `cargo xtask bench`: every benchmark compares airlock side by side, in one run, with what
//! users would use instead, and rewrites its section of `docs/BENCHMARKS.md`.
//!
//! # The API a benchmark uses
//!
//! A benchmark is a function `fn(&Path) -> Result<String>` listed in [`BENCHMARKS`]: it gets
//! the repository root and returns its Markdown section. To measure, it
//!
//! 1. makes its inputs in a [`work_dir`] on [`Place::Tmpfs`] (CPU-bound figures) or
//!    [`Place::Disk`] (the working disk, where creating files costs the kernel more), and counts
//!    what it will report (files, bytes, crates) from those inputs, never typing a number;
//! 2. describes each command as a [`Contender`]: a label, where its files are, how to make the
//!    [`Command`], and what to undo before each run (not timed);
//! 3. calls [`interleave`], which runs the contenders in turns (A, B, A, B, …) [`runs`] times
//!    each, so load from elsewhere on the machine falls on all of them alike, and returns each
//!    one's [`Measured`] runs (wall time, CPU time of its whole process tree, peak memory);
//! 4. renders them with [`table`], the first one being the baseline: every ratio is "times
//!    faster than the baseline", so above 1 airlock is faster, below 1 slower.
//!
//! `--quick` (CI's smoke test) runs each contender once on small inputs ([`quick`] tells a
//! benchmark to shrink them), with the dev-profile `cargo-airlock`, and prints the sections
//! instead of writing `docs/BENCHMARKS.md`: its figures mean nothing and are never kept.
//!
//! CPU time and peak memory come from GNU `time` (`/usr/bin/time`), which reads them from
//! `wait4` for the measured process and every descendant it waited for; peak memory is the
//! largest resident set of any one of them.

mod build;
mod dist;
mod image;
mod large;
mod scale;
mod vendor;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{Context, Result};

/// One benchmark: a name for `cargo xtask bench NAME` and the function that measures and
/// returns its Markdown section (a table with the ratio, and how it was measured).
struct Benchmark {
    name: &'static str,
    run: fn(&Path) -> Result<String>,
}

/// Every benchmark, in the order of docs/BENCHMARKS.md.
const BENCHMARKS: &[Benchmark] = &[
    Benchmark {
        name: "vendor",
        run: vendor::run,
    },
    Benchmark {
        name: "build",
        run: build::run,
    },
    Benchmark {
        name: "scale",
        run: scale::run,
    },
    Benchmark {
        name: "image",
        run: image::run,
    },
    Benchmark {
        name: "large",
        run: large::run,
    },
    Benchmark {
        name: "dist",
        run: dist::run,
    },
];

/// The fewest runs a figure in docs/BENCHMARKS.md may be the median of.
pub const MIN_RUNS: usize = 5;

/// How the benchmarks were asked to run.
#[derive(Debug, Clone, Copy)]
struct Settings {
    runs: usize,
    quick: bool,
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

fn settings() -> Settings {
    *SETTINGS.get_or_init(|| Settings {
        runs: MIN_RUNS,
        quick: false,
    })
}

/// How many times [`interleave`] runs each contender (1 with `--quick`).
pub fn runs() -> usize {
    settings().runs
}

/// Whether this is the `--quick` smoke run: inputs as small as still exercise the code.
pub fn quick() -> bool {
    settings().quick
}

/// Runs the benchmarks: `cargo xtask bench [--quick] [--runs N] [NAME…]` (all when no name is
/// given). Updates docs/BENCHMARKS.md, keeping the sections of the others; with `--quick`
/// prints the sections instead.
pub fn run(args: &[String]) -> Result<()> {
    let mut filter = Vec::new();
    let mut requested = Settings {
        runs: MIN_RUNS,
        quick: false,
    };
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => requested.quick = true,
            "--runs" => {
                let n = args.next().context("--runs needs a number")?;
                requested.runs =
                    n.parse().ok().filter(|&n| n >= MIN_RUNS).with_context(|| {
                        format!("--runs {n}: give a number of at least {MIN_RUNS}")
                    })?;
            }
            name if !name.starts_with('-') => filter.push(name.to_owned()),
            other => anyhow::bail!("unknown flag `{other}`; bench takes --quick and --runs N"),
        }
    }
    if requested.quick {
        requested.runs = 1;
    }
    let _ = SETTINGS.set(requested);
    let _lock = lock(&Path::new("/dev/shm").join(format!("airlock-bench-{}.lock", uid())))?;
    for name in &filter {
        if !BENCHMARKS.iter().any(|b| b.name == name) {
            let known: Vec<&str> = BENCHMARKS.iter().map(|b| b.name).collect();
            anyhow::bail!("unknown benchmark `{name}`; known: {}", known.join(", "));
        }
    }
    let root = repo_root();
    let doc_path = root.join("docs").join("BENCHMARKS.md");
    let mut doc = std::fs::read_to_string(&doc_path).unwrap_or_default();
    let load_before = load_average();
    for bench in BENCHMARKS {
        if !filter.is_empty() && !filter.iter().any(|f| f == bench.name) {
            continue;
        }
        eprintln!("bench: {}", bench.name);
        let section = (bench.run)(&root).with_context(|| format!("benchmark `{}`", bench.name))?;
        if quick() {
            println!("{section}");
        }
        doc = replace_section(&doc, bench.name, &section);
    }
    if quick() {
        eprintln!("bench --quick: smoke run done; docs/BENCHMARKS.md left as it was");
        return Ok(());
    }
    doc = replace_section(&doc, "machine", &machine_section(load_before));
    airlock::atomic::write_file(&doc_path, doc.as_bytes())?;
    eprintln!("wrote {}", doc_path.display());
    Ok(())
}

/// This process's user id (`USER` may be unset, or the same name on every container).
fn uid() -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
}

/// Holds `path` locked for as long as the returned file lives: one benchmark run at a time
/// per user on this machine. Two at once share the cores and the tmpfs work directory, so
/// each would disturb the other's figures (and remove its files).
fn lock(path: &Path) -> Result<std::fs::File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => anyhow::bail!(
            "another `cargo xtask bench` is running on this machine ({} is locked); two at \
             once share the cores and the work directories, so wait for it to end",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// The repository root (the parent of `xtask/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The binary users run: `cargo-airlock` as `cargo xtask dist` releases it for this machine's
/// architecture (the release profile, static, `<arch>-unknown-linux-musl`, with the allocator
/// that binary links), built on first use; with `--quick`, which measures nothing, the host's
/// dev build, which the test run has built already.
pub fn airlock_binary() -> Result<PathBuf> {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    if let Some(path) = BUILT.get() {
        return Ok(path.clone());
    }
    let target = (!quick()).then(|| format!("{}-unknown-linux-musl", std::env::consts::ARCH));
    let path = build_airlock(target.as_deref())?;
    Ok(BUILT.get_or_init(|| path).clone())
}

/// What [`airlock_binary`] is, for the sections' text.
pub fn binary_description() -> String {
    format!(
        "the static release binary `cargo xtask dist` releases for this machine \
         (`{}-unknown-linux-musl`, mimalloc as its allocator)",
        std::env::consts::ARCH
    )
}

/// Builds `cargo-airlock` for `target` (the host when None) in the release profile, or the
/// dev profile with `--quick`, and returns the binary's path.
fn build_airlock(target: Option<&str>) -> Result<PathBuf> {
    let root = repo_root();
    let profile = if quick() { "debug" } else { "release" };
    eprintln!(
        "bench: building cargo-airlock ({profile}, {})",
        target.unwrap_or("host")
    );
    let mut cmd = airlock::process::cargo();
    cmd.args(["build", "--quiet", "-p", "cargo-airlock"])
        .args(["--bin", "cargo-airlock"])
        .current_dir(&root);
    if !quick() {
        cmd.arg("--release");
    }
    if let Some(target) = target {
        cmd.args(["--target", target]);
    }
    airlock::process::run_captured(&mut cmd)?;
    let mut dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    if let Some(target) = target {
        dir.push(target);
    }
    Ok(dir.join(profile).join("cargo-airlock"))
}

/// Where a benchmark's files are, which decides what its figures measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// `/dev/shm`: no disk, so the figures are the CPU's work (and the kernel's page cache).
    Tmpfs,
    /// Under `target/bench` on the working disk: every file created costs the file system.
    Disk,
}

impl Place {
    /// How a table names it.
    pub fn label(self) -> &'static str {
        match self {
            Place::Tmpfs => "tmpfs",
            Place::Disk => "disk",
        }
    }
}

/// A fresh, empty directory `name` for a benchmark's files on `place` (whatever an earlier
/// run left there is removed first).
pub fn work_dir(place: Place, name: &str) -> Result<PathBuf> {
    let base = match place {
        Place::Tmpfs => PathBuf::from("/dev/shm").join(format!("airlock-bench-{}", uid())),
        Place::Disk => repo_root().join("target").join("bench"),
    };
    let dir = base.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)
            .with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Removes a tmpfs work directory made by [`work_dir`] (tmpfs is memory).
pub fn remove_work_dir(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// One command to measure.
pub struct Contender<'a> {
    /// What the table calls it (Markdown; usually the command in backticks).
    pub label: String,
    /// Where the files it reads and writes are.
    pub place: Place,
    /// Makes the command (its stdout is discarded, its stderr shown when it fails).
    pub command: Box<dyn Fn() -> Command + 'a>,
    /// Runs before each run, untimed: removes the previous run's output.
    pub reset: Box<dyn Fn() -> Result<()> + 'a>,
}

impl<'a> Contender<'a> {
    /// A contender with nothing to undo between runs.
    pub fn new(label: impl Into<String>, place: Place, command: impl Fn() -> Command + 'a) -> Self {
        Contender {
            label: label.into(),
            place,
            command: Box::new(command),
            reset: Box::new(|| Ok(())),
        }
    }

    /// Removes `dir` before each run (the command creates it anew).
    pub fn removing(mut self, dir: &'a Path) -> Self {
        self.reset = Box::new(move || {
            if dir.exists() {
                std::fs::remove_dir_all(dir)
                    .with_context(|| format!("cannot remove {}", dir.display()))?;
            }
            Ok(())
        });
        self
    }

    /// Makes `dir` empty before each run (the command writes into it).
    pub fn recreating(mut self, dir: &'a Path) -> Self {
        self.reset = Box::new(move || {
            if dir.exists() {
                std::fs::remove_dir_all(dir)
                    .with_context(|| format!("cannot remove {}", dir.display()))?;
            }
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))
        });
        self
    }
}

/// One run of one command.
#[derive(Debug, Clone, Copy)]
pub struct RunFigures {
    /// Wall time, seconds.
    pub wall: f64,
    /// User + system CPU time of the process and its descendants, seconds (1/100 s steps).
    pub cpu: f64,
    /// The largest resident set of any one process of the run, bytes.
    pub peak: u64,
}

/// Every run of one contender.
#[derive(Debug, Clone)]
pub struct Measured {
    /// The contender's label.
    pub label: String,
    /// Where its files were.
    pub place: Place,
    /// Its runs, in the order they ran.
    pub runs: Vec<RunFigures>,
}

fn median_of(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

impl Measured {
    /// Median wall time, seconds.
    pub fn wall(&self) -> f64 {
        median_of(self.runs.iter().map(|r| r.wall).collect())
    }

    /// Median CPU time, seconds.
    pub fn cpu(&self) -> f64 {
        median_of(self.runs.iter().map(|r| r.cpu).collect())
    }

    /// The highest peak memory of all runs, bytes.
    pub fn peak(&self) -> u64 {
        self.runs.iter().map(|r| r.peak).max().unwrap_or(0)
    }

    /// Fastest and slowest wall time, seconds.
    pub fn spread(&self) -> (f64, f64) {
        let walls = self.runs.iter().map(|r| r.wall);
        (
            walls.clone().fold(f64::INFINITY, f64::min),
            walls.fold(0.0, f64::max),
        )
    }

    /// How many times faster than `baseline` (wall time; above 1 is faster).
    pub fn speedup(&self, baseline: &Measured) -> f64 {
        baseline.wall() / self.wall().max(1e-9)
    }
}

/// Runs every contender [`runs`] times, in turns (A, B, C, A, B, C, …), each run preceded by
/// its untimed reset; fails when a run fails.
pub fn interleave(contenders: &[Contender<'_>]) -> Result<Vec<Measured>> {
    let mut measured: Vec<Measured> = contenders
        .iter()
        .map(|c| Measured {
            label: c.label.clone(),
            place: c.place,
            runs: Vec::new(),
        })
        .collect();
    for round in 0..runs() {
        for (contender, out) in contenders.iter().zip(&mut measured) {
            (contender.reset)()
                .with_context(|| format!("cannot prepare a run of {}", contender.label))?;
            let figures = measure_once(&(contender.command)())
                .with_context(|| format!("run {} of {}", round + 1, contender.label))?;
            out.runs.push(figures);
        }
    }
    Ok(measured)
}

/// Runs `cmd` once under GNU time.
pub fn measure_once(cmd: &Command) -> Result<RunFigures> {
    let stats = tempfile::NamedTempFile::new().context("cannot create a temporary file")?;
    let mut timed = Command::new("/usr/bin/time");
    timed
        .args(["-f", "%U %S %M", "-o"])
        .arg(stats.path())
        .arg(cmd.get_program())
        .args(cmd.get_args())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => timed.env(key, value),
            None => timed.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        timed.current_dir(dir);
    }
    let started = Instant::now();
    let output = timed.output().map_err(|e| {
        airlock::error::environment(format!(
            "cannot run /usr/bin/time ({e}); install GNU time (`apt-get install time`)"
        ))
    })?;
    let wall = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        output.status.success(),
        "{cmd:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(stats.path())?;
    // GNU time prints "Command exited with non-zero status" first when it failed; the figures
    // are the last line.
    let line = text.lines().last().unwrap_or("");
    let fields: Vec<f64> = line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .with_context(|| format!("unexpected output of /usr/bin/time: {text:?}"))?;
    let [user, system, peak_kib] = fields[..] else {
        anyhow::bail!("unexpected output of /usr/bin/time: {text:?}");
    };
    Ok(RunFigures {
        wall,
        cpu: user + system,
        peak: (peak_kib * 1024.0) as u64,
    })
}

/// A Markdown table of `measured`, the first being the baseline: median wall time, the
/// fastest and slowest run, median CPU time, peak memory, and how many times faster than the
/// baseline each is, in wall and in CPU time.
pub fn table(measured: &[Measured]) -> String {
    let mut out = String::from(
        "| command | files on | wall (median) | fastest–slowest | CPU (median) | peak memory | × faster than baseline (wall) | × (CPU) |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let Some(baseline) = measured.first() else {
        return out;
    };
    for m in measured {
        let (fastest, slowest) = m.spread();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {}–{} | {} | {} | {:.2}× | {} |",
            // A `|` in a command would end the cell, even inside backticks (GFM tables).
            m.label.replace('|', "\\|"),
            m.place.label(),
            seconds(m.wall()),
            seconds(fastest),
            seconds(slowest),
            seconds(m.cpu()),
            mib(m.peak()),
            m.speedup(baseline),
            cpu_ratio(baseline.cpu(), m.cpu()),
        );
    }
    out
}

/// Whether a CPU time is long enough for a ratio: GNU `time` counts CPU in 10 ms steps, so
/// below 50 ms one step is 20 % or more of the figure (a no-op build reads 0.000 or 0.010 s).
pub fn cpu_resolved(seconds: f64) -> bool {
    seconds >= 0.05
}

/// The CPU-time ratio, or `–` when either time is too short for one ([`cpu_resolved`]).
fn cpu_ratio(baseline: f64, measured: f64) -> String {
    if cpu_resolved(baseline) && cpu_resolved(measured) {
        format!("{:.2}×", baseline / measured)
    } else {
        "–".to_owned()
    }
}

/// Seconds with three significant figures' worth of decimals.
pub fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{s:.3} s")
    } else if s < 10.0 {
        format!("{s:.2} s")
    } else {
        format!("{s:.1} s")
    }
}

/// Bytes as MiB.
pub fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / f64::from(1 << 20))
}

/// The text of a sentence saying how the figures were taken, for every section.
pub fn method() -> String {
    format!(
        "Median of {} runs per command, the commands taking turns run by run; CPU time is user + \
         system of the command and every process it started; peak memory is the largest \
         resident set of one process (GNU `time`).",
        runs()
    )
}

/// Runs `cmd` and returns its output; fails with its stderr when it fails.
pub fn run_ok(cmd: &mut Command) -> Result<std::process::Output> {
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

/// Replaces the text between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`, or appends it.
fn replace_section(doc: &str, name: &str, body: &str) -> String {
    let start = format!("<!-- bench:{name} -->");
    let end = format!("<!-- /bench:{name} -->");
    let block = format!("{start}\n{}\n{end}", body.trim_end());
    match (doc.find(&start), doc.find(&end)) {
        (Some(s), Some(e)) if e > s => format!("{}{block}{}", &doc[..s], &doc[e + end.len()..]),
        _ if doc.is_empty() => format!(
            "# Benchmarks\n\nWritten by `cargo xtask bench` (rerun it to refresh; `cargo xtask bench NAME` \
             refreshes one section). Each benchmark runs airlock and the tool users would use \
             instead side by side, in the same run, on the same input.\n\n{block}\n"
        ),
        _ => format!("{}\n{block}\n", doc.trim_end()),
    }
}

/// The 1-minute load average, which says whether other work shared the machine.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn machine_section(load_before: f64) -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU", str::trim)
        .to_owned();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let memory = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or_else(
            || "unknown".to_owned(),
            |kib| format!("{:.0} GiB", kib as f64 / 1048576.0),
        );
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |k| k.trim().to_owned());
    let disk = filesystem_of(&repo_root().join("target"));
    let load_after = load_average();
    format!(
        "## Machine\n\nLast full run on: {cpu}, {cores} cores, {memory} of memory, Linux {kernel}. \
         \"tmpfs\" rows work in `/dev/shm` (memory); \"disk\" rows under `target/bench` on the \
         working disk ({disk}). Every `cargo airlock` row runs {binary}. 1-minute load average {load_before:.2} before the run and \
         {load_after:.2} after it: a load near or above {cores} means other work shared the \
         machine, and wall times are then less telling than CPU times.",
        binary = binary_description(),
    )
}

/// The file system type of the mount holding `path`, from `/proc/self/mounts`.
fn filesystem_of(path: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    mounts
        .lines()
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let _device = fields.next()?;
            let mount = fields.next()?;
            let kind = fields.next()?;
            path.starts_with(mount)
                .then(|| (mount.len(), kind.to_owned()))
        })
        .max()
        .map_or_else(|| "unknown file system".to_owned(), |(_, kind)| kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bench_run_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bench.lock");
        let held = lock(&path).unwrap();
        let err = lock(&path).unwrap_err().to_string();
        assert!(
            err.contains("another `cargo xtask bench` is running"),
            "{err}"
        );
        drop(held);
        lock(&path).unwrap();
    }
}
