//! `cargo xtask bench scale`: `vendor`, `verify --vendor`, `vendor --bundle`, `verify --bundle`,
//! `verify --vendor --bundle` and `vendor --from-bundle` on a workspace of about a thousand real crates.io packages, on tmpfs, to
//! show that time grows with the bytes and peak memory does not grow with the lockfile.
//!
//! The workspace is made once from [`DEPENDENCIES`] (a few crates with large dependency trees;
//! `cargo generate-lockfile` resolves them) and kept, with its own `CARGO_HOME` holding only
//! the `.crate` files, under `$AIRLOCK_BENCH_CACHE/scale` (default `target/bench-cache`): a
//! later run resolves and downloads nothing. Never touches the user's `CARGO_HOME`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use super::vendor::{airlock_vendor, tree_size};
use super::{Contender, Place, interleave, method, mib, run_ok, table, work_dir};

/// The dependencies of the synthetic workspace, pinned so the lockfile is the same on every
/// machine that resolves it on the same day (their own dependencies are not pinned: the
/// counts below are computed from the lockfile, never typed).
const DEPENDENCIES: &str = r#"bevy = "=0.14.2"
aws-sdk-s3 = "=1.60.0"
datafusion = "=42.0.0"
wasmtime = "=25.0.0"
gix = "=0.66.0"
sqlx = { version = "=0.8.2", features = ["runtime-tokio", "postgres", "mysql", "sqlite"] }
actix-web = "=4.9.0"
polars = { version = "=0.43.1", features = ["lazy", "parquet"] }
reqwest = { version = "=0.12.8", features = ["blocking", "json", "rustls-tls"] }
clap = "=4.5.20"
"#;

/// The most memory any of the commands may use at this scale.
const PEAK_GOAL: u64 = 100 << 20;

/// Measures and returns the Markdown section.
pub fn run(root: &Path) -> Result<String> {
    let airlock = super::airlock_binary()?;
    // `--quick` exercises the code on the small fixture: no download.
    let (manifest, cargo_home) = if super::quick() {
        (
            root.join("fixtures").join("vendoring").join("Cargo.toml"),
            None,
        )
    } else {
        let (manifest, home) = workspace(root)?;
        (manifest, Some(home))
    };
    let with_home = |mut cmd: Command| {
        if let Some(home) = &cargo_home {
            cmd.env("CARGO_HOME", home);
        }
        cmd
    };
    if cargo_home.is_none() {
        run_ok(
            airlock::process::cargo()
                .args(["fetch", "--locked", "--quiet", "--manifest-path"])
                .arg(&manifest),
        )?;
    }
    let lock = airlock::lock::Lockfile::load(&manifest.with_file_name("Cargo.lock"))?;
    let crates = lock.remote_packages().count();

    let work = work_dir(Place::Tmpfs, "scale")?;
    let tree = work.join("vendor");
    let bundle = work.join("deps.tar.zst");
    let untarred = work.join("untarred");
    let tarball = work.join("tree.tar");
    run_ok(&mut with_home(airlock_vendor(
        &airlock, &manifest, &tree, false,
    )))?;
    let (files, bytes) = tree_size(&tree)?;
    run_ok(
        Command::new("tar")
            .arg("-cf")
            .arg(&tarball)
            .arg("-C")
            .arg(&tree)
            .arg("."),
    )?;
    let crate_bytes: u64 = match &cargo_home {
        Some(home) => tree_size(&home.join("registry").join("cache"))?.1,
        None => 0,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let airlock_cmd = |args: &[&str]| {
        let mut cmd = Command::new(&airlock);
        cmd.args(args).arg("--manifest-path").arg(&manifest);
        with_home(cmd)
    };
    let script =
        format!("find . -type f -print0 | xargs -0 -P {cores} -n 64 sha256sum > /dev/null");

    let vendor = [
        Contender::new("`tar -xf tree.tar` (the same tree)", Place::Tmpfs, || {
            let mut cmd = Command::new("tar");
            cmd.arg("-xf").arg(&tarball).arg("-C").arg(&untarred);
            cmd
        })
        .recreating(&untarred),
        Contender::new("`cargo airlock vendor --offline`", Place::Tmpfs, || {
            with_home(airlock_vendor(&airlock, &manifest, &tree, false))
        })
        .removing(&tree),
    ];
    let vendor = interleave(&vendor)?;
    let _ = std::fs::remove_dir_all(&untarred);
    let _ = std::fs::remove_file(&tarball);
    let verify = [
        Contender::new(format!("`{script}`"), Place::Tmpfs, || {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", &script]).current_dir(&tree);
            cmd
        }),
        Contender::new(
            "`cargo airlock verify --vendor DIR --no-cache`",
            Place::Tmpfs,
            || {
                let mut cmd = airlock_cmd(&["verify", "-q"]);
                cmd.arg("--vendor").arg(&tree).arg("--no-cache");
                cmd
            },
        ),
        Contender::new(
            "`cargo airlock verify --vendor DIR` (with the pristine `.crate` comparison)",
            Place::Tmpfs,
            || {
                let mut cmd = airlock_cmd(&["verify", "-q"]);
                cmd.arg("--vendor").arg(&tree);
                cmd
            },
        ),
    ];
    let verify = interleave(&verify)?;
    // The baselines do what a bundle's writer and reader do, with the usual tools: the
    // `.crate` files into one zstd-compressed tar (airlock's level, 3), and the tar hashed
    // back out of it.
    let crate_dir = cargo_home
        .as_ref()
        .map_or_else(|| tree.clone(), |home| home.join("registry").join("cache"));
    let plain = work.join("plain.tar.zst");
    let pack = format!(
        "tar -cf - -C '{}' . | zstd -q -3 -c > '{}'",
        crate_dir.display(),
        plain.display()
    );
    let unpack = format!("zstd -dc '{}' | sha256sum > /dev/null", plain.display());
    let shell = |script: &str| {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    };
    let write = [
        Contender::new(
            "`tar -c` of the `.crate` files `| zstd -3`",
            Place::Tmpfs,
            || shell(&pack),
        ),
        Contender::new(
            "`cargo airlock vendor --offline --bundle FILE`",
            Place::Tmpfs,
            || {
                let mut cmd = airlock_cmd(&["vendor", "--offline", "-q"]);
                cmd.arg("--bundle").arg(&bundle);
                cmd
            },
        ),
    ];
    let write = interleave(&write)?;
    let read = [
        Contender::new("`zstd -dc` of that tar `| sha256sum`", Place::Tmpfs, || {
            shell(&unpack)
        }),
        Contender::new("`cargo airlock verify --bundle FILE`", Place::Tmpfs, || {
            let mut cmd = airlock_cmd(&["verify", "-q"]);
            cmd.arg("--bundle").arg(&bundle);
            cmd
        }),
        Contender::new(
            "`cargo airlock verify --vendor DIR --bundle FILE --no-cache` (also every vendored \
             file against its `.crate` from the bundle)",
            Place::Tmpfs,
            || {
                let mut cmd = airlock_cmd(&["verify", "-q", "--no-cache"]);
                cmd.arg("--vendor").arg(&tree).arg("--bundle").arg(&bundle);
                cmd
            },
        ),
    ];
    let read = interleave(&read)?;
    // From the bundle instead of cargo's cache: the same tree, the `.crate` files read in a
    // second pass over the bundle once it is checked.
    let from_bundle = work.join("from-bundle");
    let unbundle = [
        Contender::new(
            "`cargo airlock vendor --offline` (from cargo's cache)",
            Place::Tmpfs,
            || with_home(airlock_vendor(&airlock, &manifest, &tree, false)),
        )
        .removing(&tree),
        Contender::new(
            "`cargo airlock vendor --from-bundle FILE`",
            Place::Tmpfs,
            || {
                let mut cmd = airlock_cmd(&["vendor", "-q"]);
                cmd.arg("--from-bundle").arg(&bundle).arg(&from_bundle);
                cmd
            },
        )
        .removing(&from_bundle),
    ];
    let unbundle = interleave(&unbundle)?;
    let bundle_bytes = std::fs::metadata(&bundle).map_or(0, |m| m.len());
    super::remove_work_dir(&work);

    let mut out = format!(
        "## scale\n\n`cargo xtask bench scale`: a workspace of {crates} locked crates.io packages \
         ({:.0} MiB of `.crate` files; the dependency trees of {}), made once and cached; \
         cargo's cache warm, offline, on tmpfs, release binaries. {}\n",
        crate_bytes as f64 / f64::from(1 << 20),
        DEPENDENCIES
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect::<Vec<_>>()
            .join(", "),
        method()
    );
    let _ = write!(
        out,
        "\n### vendor ({files} files, {:.0} MiB written)\n\n{}",
        bytes as f64 / f64::from(1 << 20),
        table(&vendor)
    );
    let _ = write!(
        out,
        "\n### verify --vendor ({files} files), {cores} cores\n\n{}",
        table(&verify)
    );
    let _ = write!(
        out,
        "\n### vendor --bundle ({:.0} MiB written)\n\n{}",
        bundle_bytes as f64 / f64::from(1 << 20),
        table(&write)
    );
    let _ = write!(out, "\n### verify --bundle\n\n{}", table(&read));
    let _ = write!(
        out,
        "\n### vendor --from-bundle ({files} files)\n\n{}",
        table(&unbundle)
    );
    let worst = [
        &vendor[1],
        &verify[1],
        &verify[2],
        &write[1],
        &read[1],
        &read[2],
        &unbundle[1],
    ]
    .into_iter()
    .max_by_key(|m| m.peak())
    .context("no airlock row")?;
    let _ = writeln!(
        out,
        "\nPeak memory goal at this scale: under {} for every command. Highest: {} ({}): {}.",
        mib(PEAK_GOAL),
        mib(worst.peak()),
        worst.label,
        if worst.peak() < PEAK_GOAL {
            "met"
        } else {
            "**not met**"
        }
    );
    Ok(out)
}

/// The cached workspace (its manifest) and its own `CARGO_HOME`, made and filled on the first
/// run.
fn workspace(root: &Path) -> Result<(PathBuf, PathBuf)> {
    let cache = std::env::var_os("AIRLOCK_BENCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("bench-cache"))
        .join("scale");
    let ws = cache.join("workspace");
    let home = cache.join("cargo-home");
    let manifest = ws.join("Cargo.toml");
    let wanted = format!(
        "[package]\nname = \"airlock-bench-scale\"\nversion = \"0.0.0\"\nedition = \"2021\"\n\
         publish = false\n\n[dependencies]\n{DEPENDENCIES}\n[workspace]\n"
    );
    let current = std::fs::read_to_string(&manifest).unwrap_or_default();
    std::fs::create_dir_all(ws.join("src"))
        .with_context(|| format!("cannot create {}", ws.display()))?;
    if current != wanted {
        std::fs::write(&manifest, &wanted)?;
        std::fs::write(ws.join("src").join("main.rs"), "fn main() {}\n")?;
        let _ = std::fs::remove_file(ws.join("Cargo.lock"));
    }
    if !ws.join("Cargo.lock").exists() {
        eprintln!("bench scale: resolving {}", manifest.display());
        run_ok(
            airlock::process::cargo()
                .args(["generate-lockfile", "--quiet", "--manifest-path"])
                .arg(&manifest)
                .env("CARGO_HOME", &home),
        )?;
    }
    eprintln!("bench scale: fetching into {}", home.display());
    run_ok(
        airlock::process::cargo()
            .args(["fetch", "--locked", "--quiet", "--manifest-path"])
            .arg(&manifest)
            .env("CARGO_HOME", &home),
    )?;
    // cargo unpacks what it downloads; only the `.crate` files are read here.
    let _ = std::fs::remove_dir_all(home.join("registry").join("src"));
    Ok((manifest, home))
}
