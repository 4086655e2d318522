//! `cargo xtask bench vendor`: `cargo airlock vendor` against `cargo vendor` and against `tar -x`
//! of the very tree it writes, on this repository's own lockfile (cargo's cache warm, offline),
//! on tmpfs and on the working disk; and `cargo airlock verify --vendor` against `sha256sum` on
//! every core over the same tree.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::Result;

use super::{Contender, Place, interleave, method, run_ok, table, work_dir};

/// The platform the filtered run keeps.
const PLATFORM: &str = "x86_64-unknown-linux-musl";

/// Measures and returns the Markdown section.
pub fn run(root: &Path) -> Result<String> {
    let airlock = super::airlock_binary()?;
    // `--quick` only smoke-tests the benchmark: the small fixture's lockfile is enough.
    let (manifest, input) = if super::quick() {
        (
            root.join("fixtures").join("vendoring").join("Cargo.toml"),
            "the `fixtures/vendoring` `Cargo.lock`",
        )
    } else {
        (
            root.join("Cargo.toml"),
            "this repository's own `Cargo.lock`",
        )
    };
    run_ok(
        airlock::process::cargo()
            .args(["fetch", "--locked", "--quiet", "--manifest-path"])
            .arg(&manifest),
    )?;
    let lock = airlock::lock::Lockfile::load(&manifest.with_file_name("Cargo.lock"))?;
    let crates = lock.remote_packages().count();

    let mut out = format!(
        "## vendor\n\n`cargo xtask bench vendor`: {input} ({crates} \
         crates from crates.io), cargo's cache warm, offline, {}; each output \
         directory is removed before each run (untimed). `tar -x` unpacks a tar of the tree \
         `cargo airlock vendor` writes: the least any tool can spend creating those files. \
         {}\n",
        super::binary_description(),
        method()
    );
    let places: &[Place] = if super::quick() {
        &[Place::Tmpfs]
    } else {
        &[Place::Tmpfs, Place::Disk]
    };
    for &place in places {
        out += &vendor_rows(&airlock, &manifest, place)?;
    }
    out += &verify_rows(&airlock, &manifest)?;
    Ok(out)
}

/// The vendor table on `place`.
fn vendor_rows(airlock: &Path, manifest: &Path, place: Place) -> Result<String> {
    let work = work_dir(place, "vendor")?;
    let ours = work.join("airlock");
    let theirs = work.join("cargo");
    let filtered = work.join("airlock-platform");
    let untarred = work.join("untarred");
    let tarball = work.join("tree.tar");
    // The tree tar unpacks: airlock's own output.
    run_ok(airlock_vendor(airlock, manifest, &ours, false).arg("-q"))?;
    let (files, bytes) = tree_size(&ours)?;
    run_ok(
        Command::new("tar")
            .arg("-cf")
            .arg(&tarball)
            .arg("-C")
            .arg(&ours)
            .arg("."),
    )?;
    let contenders = [
        Contender::new("`cargo vendor --offline --locked`", place, || {
            let mut cmd = airlock::process::cargo();
            cmd.args(["vendor", "--offline", "--locked", "-q", "--manifest-path"])
                .arg(manifest)
                .arg(&theirs);
            cmd
        })
        .removing(&theirs),
        Contender::new("`tar -xf tree.tar` (the same tree)", place, || {
            let mut cmd = Command::new("tar");
            cmd.arg("-xf").arg(&tarball).arg("-C").arg(&untarred);
            cmd
        })
        .recreating(&untarred),
        Contender::new("`cargo airlock vendor --offline`", place, || {
            airlock_vendor(airlock, manifest, &ours, false)
        })
        .removing(&ours),
        Contender::new(
            format!("`cargo airlock vendor --offline --platform {PLATFORM}`"),
            place,
            || airlock_vendor(airlock, manifest, &filtered, true),
        )
        .removing(&filtered),
    ];
    let measured = interleave(&contenders)?;
    let mut out = format!(
        "\n### vendor on {} ({files} files, {:.1} MiB written)\n\n",
        place.label(),
        bytes as f64 / f64::from(1 << 20)
    );
    out += &table(&measured);
    let _ = writeln!(
        out,
        "\n`cargo airlock vendor` is {:.2}× as fast as `tar -x` of its own output here.",
        measured[2].speedup(&measured[1])
    );
    super::remove_work_dir(&work);
    Ok(out)
}

/// The verify table (on tmpfs: hashing is CPU work).
fn verify_rows(airlock: &Path, manifest: &Path) -> Result<String> {
    let work = work_dir(Place::Tmpfs, "verify")?;
    let tree = work.join("vendor");
    run_ok(airlock_vendor(airlock, manifest, &tree, false).arg("-q"))?;
    let (files, bytes) = tree_size(&tree)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let script =
        format!("find . -type f -print0 | xargs -0 -P {cores} -n 64 sha256sum > /dev/null");
    let verify = |extra: &'static [&'static str]| {
        let tree = tree.clone();
        move || {
            let mut cmd = Command::new(airlock);
            cmd.args(["verify", "-q", "--manifest-path"])
                .arg(manifest)
                .arg("--vendor")
                .arg(&tree)
                .args(extra);
            cmd
        }
    };
    let contenders = [
        Contender::new(format!("`{script}`"), Place::Tmpfs, || {
            let mut cmd = Command::new("sh");
            cmd.args(["-c", &script]).current_dir(&tree);
            cmd
        }),
        Contender::new(
            "`cargo airlock verify --vendor DIR --no-cache` (every file against \
             `.cargo-checksum.json`, package checksums against `Cargo.lock`)",
            Place::Tmpfs,
            verify(&["--no-cache"]),
        ),
        Contender::new(
            "`cargo airlock verify --vendor DIR` (also every file against its pristine `.crate` \
             from cargo's cache)",
            Place::Tmpfs,
            verify(&[]),
        ),
    ];
    let measured = interleave(&contenders)?;
    let mut out = format!(
        "\n### verify --vendor on tmpfs ({files} files, {:.1} MiB), {cores} cores\n\n",
        bytes as f64 / f64::from(1 << 20)
    );
    out += &table(&measured);
    super::remove_work_dir(&work);
    Ok(out)
}

pub(super) fn airlock_vendor(
    airlock: &Path,
    manifest: &Path,
    dir: &Path,
    platform: bool,
) -> Command {
    let mut cmd = Command::new(airlock);
    cmd.args(["vendor", "--offline", "--manifest-path"])
        .arg(manifest)
        .arg(dir);
    if platform {
        cmd.args(["--platform", PLATFORM]);
    }
    cmd
}

/// Regular files under `dir` and their total size.
pub fn tree_size(dir: &Path) -> Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files += 1;
                bytes += entry.metadata()?.len();
            }
        }
    }
    Ok((files, bytes))
}
