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

use super::{Contender, Place};

const TAG: &str = "bench";
/// The binary as built, as umoci ships it and as `gzip -9`/`zstd -19` of it are measured:
/// stripping would make airlock's layer smaller for another reason than its compression.
const STRIP_NONE: [&str; 2] = ["--strip", "none"];

pub fn run(root: &Path) -> Result<String> {
    // tmpfs: the figures are the compression's work, not the disk's.
    let work = super::work_dir(Place::Tmpfs, "image")?;
    let result = run_in(root, &work);
    super::remove_work_dir(&work);
    result
}

fn run_in(root: &Path, work: &Path) -> Result<String> {
    let binary = input_binary(root, work)?;
    let airlock = super::airlock_binary()?;
    let binary_size = fs::metadata(&binary)?.len();
    let umoci_script = work.join("umoci.sh");
    fs::write(&umoci_script, UMOCI_PIPELINE)
        .with_context(|| format!("cannot write {}", umoci_script.display()))?;

    let dirs = ["umoci", "gzip9", "gzip6", "zstd"].map(|name| work.join(name));
    let image = |dir: &Path, args: &'static [&'static str]| {
        let (airlock, binary, dir) = (airlock.clone(), binary.clone(), dir.to_path_buf());
        let outside = work.to_path_buf();
        move || {
            let mut cmd = Command::new(&airlock);
            // Outside any workspace, so no `[workspace.metadata.airlock]` applies.
            cmd.current_dir(&outside)
                .args(["image", "-q", "--binary"])
                .arg(&binary)
                .arg("-o")
                .arg(dir.join("layout"))
                .args(["--tag", TAG])
                .args(STRIP_NONE)
                .args(args);
            cmd
        }
    };
    let umoci = {
        let (script, binary, dir) = (umoci_script.clone(), binary.clone(), dirs[0].clone());
        move || {
            let mut cmd = Command::new("sh");
            cmd.arg(&script).arg(&binary).arg(&dir);
            cmd
        }
    };
    // umoci first: the baseline every ratio is against.
    let contenders = [
        Contender::new("umoci pipeline (pgzip, its default)", Place::Tmpfs, umoci)
            .removing(&dirs[0]),
        Contender::new(
            "`cargo airlock image` (gzip -7: libdeflate, the default)",
            Place::Tmpfs,
            image(&dirs[1], &[]),
        )
        .removing(&dirs[1]),
        Contender::new(
            "`cargo airlock image --level 6`",
            Place::Tmpfs,
            image(&dirs[2], &["--level", "6"]),
        )
        .removing(&dirs[2]),
        Contender::new(
            "`cargo airlock image --compression zstd` (-19, every core)",
            Place::Tmpfs,
            image(&dirs[3], &["--compression", "zstd"]),
        )
        .removing(&dirs[3]),
    ];
    let measured = super::interleave(&contenders)?;

    // The sizes, from one more run of each (the layouts are deterministic).
    let gzip9 = airlock_image(&airlock, &binary, &dirs[1], &[])?;
    let gzip6 = airlock_image(&airlock, &binary, &dirs[2], &["--level", "6"])?;
    let zstd = airlock_image(&airlock, &binary, &dirs[3], &["--compression", "zstd"])?;
    let umoci_blobs = dir_bytes(&dirs[0].join("layout").join("blobs"))?;
    let umoci_layer = umoci_layer_size(&dirs[0].join("layout"))?;
    let gzip_reference = compressed_len(Command::new("gzip").args(["-9", "-c"]).arg(&binary))?;
    let zstd_reference =
        compressed_len(Command::new("zstd").args(["-19", "-c", "-q"]).arg(&binary))?;
    let gzip_layer = binary_layer_size(&gzip9)?;
    let zstd_layer = binary_layer_size(&zstd)?;
    let gzip_over = gzip_layer as i64 - gzip_reference as i64;
    let zstd_over = (zstd_layer as f64 / zstd_reference as f64 - 1.0) * 100.0;

    let mut out = format!(
        "## image: packaging one static binary\n\n\
         Input: the `hello` fixture built for `x86_64-unknown-linux-musl` with the dev profile \
         (static-pie with debug info, {size}), packaged as a single-layer scratch image, files on \
         tmpfs. airlock: `cargo airlock image --binary hello --strip none -o DIR` (the static \
         release binary; `--strip none` ships the binary as built, as umoci does). umoci: \
         `umoci init`, `umoci new`, `umoci unpack`, copy the binary into the rootfs, `umoci \
         repack`, `umoci config --config.entrypoint … --config.user 65532:65532`, `umoci gc` \
         (Go's pgzip at its default level), as one shell script. {method}\n\n",
        size = human_bytes(binary_size),
        method = super::method(),
    );
    out += &super::table(&measured);
    let row = |name: &str, blobs: u64, layer: u64| {
        format!(
            "| {name} | {blobs} | {:.1}% | {} |\n",
            blobs as f64 / umoci_blobs as f64 * 100.0,
            human_bytes(layer)
        )
    };
    out += "\n| pipeline | total blob bytes | vs umoci | layer |\n| --- | ---: | ---: | ---: |\n";
    out += &row(
        "`cargo airlock image` (gzip -7, the default)",
        blob_bytes(&gzip9),
        gzip_layer,
    );
    out += &row(
        "`cargo airlock image --level 6`",
        blob_bytes(&gzip6),
        binary_layer_size(&gzip6)?,
    );
    out += &row(
        "`cargo airlock image --compression zstd`",
        blob_bytes(&zstd),
        zstd_layer,
    );
    out += &row("umoci pipeline", umoci_blobs, umoci_layer);
    let met = |ok: bool| if ok { "yes" } else { "**no**" };
    out += &format!(
        "\n| size goal | airlock layer | reference | difference | goal | met |\n\
         | --- | ---: | ---: | ---: | --- | --- |\n\
         | gzip layer vs `gzip -9` of the binary | {gzip_layer} B | {gzip_reference} B | \
         {gzip_over:+} B | ≤ 0 B | {} |\n\
         | zstd layer vs `zstd -19` of the binary | {zstd_layer} B | {zstd_reference} B | \
         {zstd_over:+.2}% | ≤ +1% | {} |\n",
        met(gzip_over <= 0),
        met(zstd_over <= 1.0),
    );
    // Issue 11's time goals, on the machine described above.
    let (umoci_run, gzip_run, zstd_run) = (&measured[0], &measured[1], &measured[3]);
    out += &format!(
        "\n| time goal | airlock | goal | met |\n| --- | ---: | --- | --- |\n\
         | default gzip against the umoci pipeline | {:.2}× | faster (above 1×) | {} |\n\
         | `--compression zstd`, median wall | {:.3} s | ≤ 0.5 s | {} |\n",
        gzip_run.speedup(umoci_run),
        met(gzip_run.speedup(umoci_run) > 1.0),
        zstd_run.wall(),
        met(zstd_run.wall() <= 0.5),
    );
    Ok(out)
}

/// The umoci pipeline a user would script: `sh umoci.sh BINARY DIR`.
pub(super) const UMOCI_PIPELINE: &str = r#"set -eu
binary=$1 dir=$2
mkdir -p "$dir"
layout=$dir/layout image=$dir/layout:bench bundle=$dir/bundle
umoci init --layout "$layout"
umoci new --image "$image"
umoci unpack --image "$image" "$bundle" >/dev/null
mkdir -p "$bundle/rootfs/usr/local/bin"
cp "$binary" "$bundle/rootfs/usr/local/bin/hello"
umoci repack --image "$image" "$bundle" >/dev/null
umoci config --image "$image" --config.entrypoint /usr/local/bin/hello --config.user 65532:65532
umoci gc --layout "$layout"
"#;

fn blob_bytes(report: &serde_json::Value) -> u64 {
    report["blob_bytes"].as_u64().unwrap_or(0)
}

/// Builds the hello fixture (a copy, so the repository stays clean) and returns the binary.
pub(super) fn input_binary(root: &Path, work: &Path) -> Result<PathBuf> {
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
            .args(STRIP_NONE)
            .args(args)
            .current_dir(dir.parent().unwrap_or(Path::new("."))),
    )?;
    serde_json::from_slice(&output.stdout).context("cargo airlock image printed no JSON report")
}

fn binary_layer_size(report: &serde_json::Value) -> Result<u64> {
    report["images"][0]["layers"]
        .as_array()
        .and_then(|layers| layers.last())
        .and_then(|layer| layer["size"].as_u64())
        .context("the report has no layer")
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
