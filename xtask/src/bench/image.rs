//! `cargo xtask bench image`: packaging the same static binary as a scratch image with
//! `cargo airlock image` and with the umoci pipeline users would script instead
//! (`umoci init/new/unpack`, copy, `umoci repack/config/gc`), side by side in one run; and the
//! layer sizes against `gzip -9` and `zstd -19` of the binary itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use airlock::process::{cargo, run_captured};
use airlock::render::human_bytes;
use anyhow::{Context, Result};

const RUNS: usize = 7;
const ZSTD_RUNS: usize = 3;
const TAG: &str = "bench";

pub fn run(root: &Path) -> Result<String> {
    let work = root.join("target").join("bench").join("image");
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let binary = input_binary(root, &work)?;
    let airlock = super::airlock_binary()?;
    let binary_size = fs::metadata(&binary)?.len();

    // The pipelines take turns run by run, so load from elsewhere on the machine falls on
    // all of them alike.
    let airlock_dir = work.join("airlock");
    let umoci_dir = work.join("umoci");
    let mut times = [Vec::new(), Vec::new(), Vec::new()];
    let mut cpu = [Vec::new(), Vec::new(), Vec::new()];
    let (runs, zstd_runs) = if super::quick() {
        (1, 1)
    } else {
        (RUNS, ZSTD_RUNS)
    };
    for _ in 0..runs {
        let runs: [&dyn Fn() -> Result<()>; 3] = [
            &|| airlock_image(&airlock, &binary, &airlock_dir, &[]).map(drop),
            &|| airlock_image(&airlock, &binary, &airlock_dir, &["--level", "6"]).map(drop),
            &|| umoci_pipeline(&binary, &umoci_dir),
        ];
        for (i, run) in runs.iter().enumerate() {
            let cpu_before = children_cpu_seconds()?;
            times[i].push(time(run)?);
            cpu[i].push(children_cpu_seconds()? - cpu_before);
        }
    }
    let [gzip9_time, gzip6_time, umoci_time] = times.map(median);
    let [gzip9_cpu, gzip6_cpu, umoci_cpu] = cpu.map(median);
    let gzip9 = airlock_image(&airlock, &binary, &airlock_dir, &[])?;
    let gzip6 = airlock_image(&airlock, &binary, &airlock_dir, &["--level", "6"])?;
    let zstd_args = ["--compression", "zstd"];
    let (mut zstd_times, mut zstd_cpus) = (Vec::new(), Vec::new());
    for _ in 0..zstd_runs {
        let cpu_before = children_cpu_seconds()?;
        zstd_times.push(time(|| {
            airlock_image(&airlock, &binary, &airlock_dir, &zstd_args).map(drop)
        })?);
        zstd_cpus.push(children_cpu_seconds()? - cpu_before);
    }
    let (zstd_time, zstd_cpu) = (median(zstd_times), median(zstd_cpus));
    let zstd = airlock_image(&airlock, &binary, &airlock_dir, &zstd_args)?;
    let umoci_blobs = dir_bytes(&umoci_dir.join("layout").join("blobs"))?;
    let umoci_layer = umoci_layer_size(&umoci_dir.join("layout"))?;

    let gzip_reference = compressed_len(Command::new("gzip").args(["-9", "-c"]).arg(&binary))?;
    let zstd_reference =
        compressed_len(Command::new("zstd").args(["-19", "-c", "-q"]).arg(&binary))?;
    let gzip_layer = binary_layer_size(&gzip9)?;
    let zstd_layer = binary_layer_size(&zstd)?;
    let gzip_over = gzip_layer as i64 - gzip_reference as i64;
    let zstd_over = (zstd_layer as f64 / zstd_reference as f64 - 1.0) * 100.0;

    let row = |name: &str, seconds: f64, cpu: f64, blobs: u64, layer: u64| {
        format!(
            "| {name} | {seconds:.3} s | {:.2}× | {cpu:.2} s | {:.2}× | {blobs} | {:.1}% | {} |\n",
            seconds / umoci_time,
            cpu / umoci_cpu,
            blobs as f64 / umoci_blobs as f64 * 100.0,
            human_bytes(layer)
        )
    };
    let met = |ok: bool| if ok { "yes" } else { "**no**" };
    let mut out = format!(
        "## image: packaging one static binary\n\n\
         Input: the `hello` fixture built for `x86_64-unknown-linux-musl` with the dev profile \
         (static-pie with debug info, {size}), packaged as a single-layer scratch image with \
         entrypoint and user set. airlock: `cargo airlock image --binary hello -o DIR` (release \
         build). umoci: `umoci init`, `umoci new`, `umoci unpack`, copy the binary into the \
         rootfs, `umoci repack`, `umoci config --config.entrypoint … --config.user 65532:65532`, \
         `umoci gc` (umoci compresses with Go's pgzip at its default level). Median of {RUNS} \
         runs, the pipelines taking turns (zstd: {ZSTD_RUNS} runs).\n\n\
         Wall time depends on what else the machine runs; CPU time (user + system, of the \
         processes each pipeline starts) does not, so both are given.\n\n\
         | pipeline | wall time | vs umoci | CPU time | vs umoci | total blob bytes | vs umoci | layer |\n\
         | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
        size = human_bytes(binary_size),
    );
    out += &row(
        "`cargo airlock image` (gzip -9, the default)",
        gzip9_time,
        gzip9_cpu,
        blob_bytes(&gzip9),
        gzip_layer,
    );
    out += &row(
        "`cargo airlock image --level 6`",
        gzip6_time,
        gzip6_cpu,
        blob_bytes(&gzip6),
        binary_layer_size(&gzip6)?,
    );
    out += &row(
        "`cargo airlock image --compression zstd` (-19)",
        zstd_time,
        zstd_cpu,
        blob_bytes(&zstd),
        zstd_layer,
    );
    out += &row(
        "umoci pipeline",
        umoci_time,
        umoci_cpu,
        umoci_blobs,
        umoci_layer,
    );
    out += &format!(
        "\n| size goal | airlock layer | reference | difference | goal | met |\n\
         | --- | ---: | ---: | ---: | --- | --- |\n\
         | gzip layer vs `gzip -9` of the binary | {gzip_layer} B | {gzip_reference} B | \
         {gzip_over:+} B | ≤ +1024 B | {} |\n\
         | zstd layer vs `zstd -19` of the binary | {zstd_layer} B | {zstd_reference} B | \
         {zstd_over:+.2}% | ≤ +1% | {} |\n",
        met(gzip_over <= 1024),
        met(zstd_over <= 1.0),
    );
    Ok(out)
}

/// CPU time used by this process's finished children (`cutime` + `cstime` of
/// `/proc/self/stat`, in clock ticks of 1/100 s).
fn children_cpu_seconds() -> Result<f64> {
    let stat = fs::read_to_string("/proc/self/stat").context("cannot read /proc/self/stat")?;
    // Fields after the command name `(…)`: state is field 3, cutime 16, cstime 17.
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .context("unexpected /proc/self/stat format")
    };
    Ok((ticks(13)? + ticks(14)?) / 100.0)
}

fn time(f: impl FnOnce() -> Result<()>) -> Result<f64> {
    let start = std::time::Instant::now();
    f()?;
    Ok(start.elapsed().as_secs_f64())
}

fn blob_bytes(report: &serde_json::Value) -> u64 {
    report["blob_bytes"].as_u64().unwrap_or(0)
}

/// Builds the hello fixture (a copy, so the repository stays clean) and returns the binary.
fn input_binary(root: &Path, work: &Path) -> Result<PathBuf> {
    let project = work.join("hello");
    copy_tree(&root.join("fixtures").join("hello"), &project)?;
    let target_dir = root.join("target").join("bench").join("hello-target");
    run_captured(
        cargo()
            .args([
                "build",
                "--locked",
                "--quiet",
                "--target",
                "x86_64-unknown-linux-musl",
            ])
            .current_dir(&project)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env_remove("RUSTFLAGS"),
    )?;
    Ok(target_dir.join("x86_64-unknown-linux-musl/debug/hello"))
}

fn airlock_image(
    airlock: &Path,
    binary: &Path,
    dir: &Path,
    args: &[&str],
) -> Result<serde_json::Value> {
    let _ = fs::remove_dir_all(dir);
    let output = run_captured(
        Command::new(airlock)
            .args(["image", "-q", "--format", "json", "--binary"])
            .arg(binary)
            .arg("-o")
            .arg(dir.join("layout"))
            .args(["--tag", TAG])
            .args(args)
            .current_dir(dir.parent().unwrap_or(Path::new("."))),
    )?;
    serde_json::from_slice(&output.stdout).context("cargo airlock image printed no JSON report")
}

fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

fn binary_layer_size(report: &serde_json::Value) -> Result<u64> {
    report["images"][0]["layers"]
        .as_array()
        .and_then(|layers| layers.last())
        .and_then(|layer| layer["size"].as_u64())
        .context("the report has no layer")
}

fn umoci_pipeline(binary: &Path, dir: &Path) -> Result<()> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir)?;
    let layout = dir.join("layout");
    let image = format!("{}:{TAG}", layout.display());
    let bundle = dir.join("bundle");
    let umoci = |args: &[&str]| -> Result<()> {
        run_captured(Command::new("umoci").args(args))?;
        Ok(())
    };
    umoci(&["init", "--layout", &layout.to_string_lossy()])?;
    umoci(&["new", "--image", &image])?;
    umoci(&["unpack", "--image", &image, &bundle.to_string_lossy()])?;
    let bin_dir = bundle.join("rootfs/usr/local/bin");
    fs::create_dir_all(&bin_dir)?;
    fs::copy(binary, bin_dir.join("hello"))?;
    umoci(&["repack", "--image", &image, &bundle.to_string_lossy()])?;
    umoci(&[
        "config",
        "--image",
        &image,
        "--config.entrypoint",
        "/usr/local/bin/hello",
        "--config.user",
        "65532:65532",
    ])?;
    umoci(&["gc", "--layout", &layout.to_string_lossy()])
}

/// The largest blob umoci wrote: its one layer.
fn umoci_layer_size(layout: &Path) -> Result<u64> {
    let blobs = layout.join("blobs").join("sha256");
    let mut largest = 0;
    for entry in fs::read_dir(&blobs).with_context(|| format!("cannot read {}", blobs.display()))? {
        largest = largest.max(entry?.metadata()?.len());
    }
    Ok(largest)
}

fn compressed_len(cmd: &mut Command) -> Result<u64> {
    Ok(run_captured(cmd)?.stdout.len() as u64)
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_bytes(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to)?;
    for entry in fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            if entry.file_name() != "target" {
                copy_tree(&entry.path(), &dest)?;
            }
        } else {
            fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}
