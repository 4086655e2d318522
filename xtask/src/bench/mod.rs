//! `cargo xtask bench`: every benchmark compares airlock side by side, in one run, with what
//! users would use instead, and rewrites its section of `docs/BENCHMARKS.md`.

mod image;
mod vendor;

use std::path::{Path, PathBuf};

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
        name: "image",
        run: image::run,
    },
];

/// Runs the benchmarks named in `filter` (all when empty) and updates docs/BENCHMARKS.md,
/// keeping the sections of the others.
pub fn run(filter: &[String]) -> Result<()> {
    for name in filter {
        if !BENCHMARKS.iter().any(|b| b.name == name) {
            let known: Vec<&str> = BENCHMARKS.iter().map(|b| b.name).collect();
            anyhow::bail!("unknown benchmark `{name}`; known: {}", known.join(", "));
        }
    }
    let root = repo_root();
    let doc_path = root.join("docs").join("BENCHMARKS.md");
    let mut doc = std::fs::read_to_string(&doc_path).unwrap_or_default();
    for bench in BENCHMARKS {
        if !filter.is_empty() && !filter.iter().any(|f| f == bench.name) {
            continue;
        }
        eprintln!("bench: {}", bench.name);
        let section = (bench.run)(&root).with_context(|| format!("benchmark `{}`", bench.name))?;
        doc = replace_section(&doc, bench.name, &section);
    }
    doc = replace_section(&doc, "machine", &machine_section());
    airlock::atomic::write_file(&doc_path, doc.as_bytes())?;
    eprintln!("wrote {}", doc_path.display());
    Ok(())
}

/// The repository root (the parent of `xtask/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
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

fn machine_section() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("Last run on: {cpu}, {cores} cores.")
}

/// Times `f` `runs` times and returns the median in seconds.
#[allow(dead_code)]
pub fn median_seconds(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = std::time::Instant::now();
        f()?;
        times.push(start.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
