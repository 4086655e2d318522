//! `cargo xtask bench large`: large static binaries with real debug info through `image`
//! (as built and with the default strip), `report`, `verify --layout` and `push`, against
//! what users would use instead (the umoci pipeline, `skopeo copy` to the same registry), to
//! show that time grows with the bytes and peak memory stays under [`PEAK_GOAL`]; and the
//! default image's zstd layer against `zstd -19` on one thread ([`zstd_size_goal`]).
//!
//! The input is `cargo-airlock` itself built for `x86_64-unknown-linux-musl` in the dev
//! profile (static, full debug info of every crate it links), made once and kept under
//! `$AIRLOCK_BENCH_CACHE/large` (default `target/bench-cache`); `--quick` uses the small
//! `hello` fixture instead. The larger inputs are that binary grown by a section of
//! deterministic keystream ([`padded_binary`]): [`BIG_BINARY`] bytes for `image`, and
//! as much as makes its `--strip none` image's layer [`HUGE_LAYER`] bytes, which `report`,
//! `verify` and `push` read; both are made in the tmpfs work directory and removed with it. The registry is
//! Debian's `docker-registry` on 127.0.0.1, as the tests start it.

use std::cell::Cell;
use std::fmt::Write as _;
use std::fs;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock::render::human_bytes;
use anyhow::{Context, Result};

use super::{Contender, Measured, Place, interleave, method, mib, run_ok, table, work_dir};

const TARGET: &str = "x86_64-unknown-linux-musl";
const TAG: &str = "bench";
/// The most memory `image`, `report` and `push` may use, whatever the binary's size.
const PEAK_GOAL: u64 = 64 << 20;
/// The grown binary `image` is measured on (issue 11: "`image` of a 500 MB binary").
const BIG_BINARY: u64 = 500_000_000;
/// The layer `report`, `verify` and `push` are measured on: the `--strip none` image of the
/// binary grown to make it this large (issue 11: "a 2 GiB blob").
const HUGE_LAYER: u64 = 2 << 30;
/// The section the larger inputs are grown by: named as debug info, so the default strip
/// removes it as it removes the binary's own.
const PAD_SECTION: &str = ".debug_airlock_bench";

/// Measures and returns the Markdown section.
pub fn run(root: &Path) -> Result<String> {
    let work = work_dir(Place::Tmpfs, "large")?;
    let result = run_in(root, &work);
    super::remove_work_dir(&work);
    result
}

fn run_in(root: &Path, work: &Path) -> Result<String> {
    let load_before = super::load_average();
    let (input, how) = if super::quick() {
        (
            super::image::input_binary(root, work)?,
            "the `hello` fixture (dev profile; `--quick`)".to_owned(),
        )
    } else {
        (
            input_binary(root)?,
            format!(
                "`cargo-airlock` from this repository built once with `cargo build -p \
                 cargo-airlock --target {TARGET}` in the dev profile (static-pie, full debug \
                 info of every crate it links) and kept under `$AIRLOCK_BENCH_CACHE/large`"
            ),
        )
    };
    let airlock = super::airlock_binary()?;
    // On tmpfs like every file of the runs: the figures are airlock's work, not the disk's.
    let binary = work.join("app");
    fs::copy(&input, &binary).with_context(|| format!("cannot copy {}", input.display()))?;
    let size = fs::metadata(&binary)?.len();
    let debug = debug_bytes(&binary)?;
    // The larger inputs: the same binary with a section of keystream added (`--quick`: a few
    // MiB more than the fixture).
    let big_size = if super::quick() {
        size + (1 << 20)
    } else {
        BIG_BINARY
    };
    let big = work.join("app-big");
    padded_binary(&binary, &big, big_size, work)?;
    let big_size = fs::metadata(&big)?.len();
    let umoci_script = work.join("umoci.sh");
    fs::write(&umoci_script, super::image::UMOCI_PIPELINE)?;

    let mut out = String::new();
    // image: the binary as built and the grown one.
    let mut image_rows = Vec::new();
    for (name, bin) in [
        ("as built".to_owned(), &binary),
        (format!("grown to {}", human_bytes(big_size)), &big),
    ] {
        let outs = ["umoci", "none", "default"].map(|name| work.join(name));
        let rows = [
            Contender::new("umoci pipeline (pgzip, its default)", Place::Tmpfs, || {
                let mut cmd = Command::new("sh");
                cmd.arg(&umoci_script).arg(bin).arg(&outs[0]);
                cmd
            })
            .removing(&outs[0]),
            Contender::new("`cargo airlock image --strip none`", Place::Tmpfs, || {
                image_cmd(&airlock, bin, work, &outs[1], &["--strip", "none"])
            })
            .removing(&outs[1]),
            Contender::new(
                "`cargo airlock image` (default `--strip debuginfo`)",
                Place::Tmpfs,
                || image_cmd(&airlock, bin, work, &outs[2], &[]),
            )
            .removing(&outs[2]),
        ];
        let rows = interleave(&rows)?;
        for dir in &outs {
            let _ = fs::remove_dir_all(dir);
        }
        let bytes = fs::metadata(bin)?.len();
        let _ = write!(
            out,
            "\n\n### image of the binary {name} ({}; one layer holding it)\n\n{}",
            human_bytes(bytes),
            table(&rows)
        );
        image_rows.push((bytes, rows));
    }

    out += &zstd_size_goal(&airlock, &binary, work)?;

    // The layouts every later row reads: each binary (`--strip none`) in one layer.
    let (layout, layout_big, layout_huge) = (
        work.join("layout"),
        work.join("layout-big"),
        work.join("layout-huge"),
    );
    for (bin, layout) in [(&binary, &layout), (&big, &layout_big)] {
        run_ok(&mut image_cmd(
            &airlock,
            bin,
            work,
            layout,
            &["--strip", "none"],
        ))?;
    }
    // The largest: grown so that its layer (the binary's own part gzipped, the keystream
    // stored) is [`HUGE_LAYER`] bytes (`--quick`: 4 MiB more than the fixture).
    let huge_size = if super::quick() {
        size + (4 << 20)
    } else {
        HUGE_LAYER + size.saturating_sub(largest_blob(&layout)?)
    };
    let huge = work.join("app-huge");
    padded_binary(&binary, &huge, huge_size, work)?;
    let huge_size = fs::metadata(&huge)?.len();
    run_ok(&mut image_cmd(
        &airlock,
        &huge,
        work,
        &layout_huge,
        &["--strip", "none"],
    ))?;
    fs::remove_file(&huge)?;
    fs::remove_file(&big)?;
    let layouts = [
        ("as built".to_owned(), layout),
        (format!("grown to {}", human_bytes(big_size)), layout_big),
        (format!("grown to {}", human_bytes(huge_size)), layout_huge),
    ];
    let header = format!(
        "## large\n\n`cargo xtask bench large`: one static binary of {} ({size} bytes, of which \
         {debug} bytes in `.debug_*` sections), {how}; and the same binary grown to {} \
         ({big_size} bytes) and to {} by `objcopy --add-section {PAD_SECTION}=FILE` (a \
         section outside every segment, which the default strip removes as debug info), FILE \
         being the AES-128-CTR keystream of an all-zero key and IV (`openssl enc -aes-128-ctr \
         -K 0… -iv 0… -nosalt` of zeros): the same bytes on every machine, and no compressor \
         shrinks them, so a grown binary's layer is the first one's plus the section, byte \
         for byte (the largest binary is grown to make that layer {}). Files on tmpfs (the \
         largest inputs are removed at the end), release `cargo-airlock`. {} 1-minute load \
         average {load_before:.2} before these runs",
        human_bytes(size),
        human_bytes(big_size),
        human_bytes(huge_size),
        human_bytes(HUGE_LAYER),
        method(),
    );

    let registry = Registry::start(work)?;
    let docker_config = work.join("docker-config");
    fs::create_dir_all(&docker_config)?;
    let mut read_rows = Vec::new();
    let mut push_rows = Vec::new();
    for (name, layout) in &layouts {
        let layer = largest_blob(layout)?;
        let reference = format!("oci:{}:{TAG}", layout.display());
        let reads = [
            Contender::new(
                "`cargo airlock verify --layout DIR` (every blob read and hashed: the floor)",
                Place::Tmpfs,
                || {
                    let mut cmd = Command::new(&airlock);
                    cmd.args(["verify", "-q", "--layout"])
                        .arg(layout)
                        .current_dir(work);
                    cmd
                },
            ),
            Contender::new("`cargo airlock report oci:DIR:TAG`", Place::Tmpfs, || {
                let mut cmd = Command::new(&airlock);
                cmd.args(["report", "-q", &reference]).current_dir(work);
                cmd
            }),
        ];
        let reads = interleave(&reads)?;

        // A repository of its own for every run, and the storage emptied before it (untimed):
        // each push uploads every blob.
        let pushes = Cell::new(0u32);
        let next_repository = |tool: &str| {
            pushes.set(pushes.get() + 1);
            format!("{}/{tool}{}:{TAG}", registry.addr(), pushes.get())
        };
        let pushed = [
            Contender {
                reset: Box::new(|| registry.empty()),
                ..Contender::new(
                    "`skopeo copy --dest-tls-verify=false oci:DIR:TAG docker://…`",
                    Place::Tmpfs,
                    || {
                        let mut cmd = Command::new("skopeo");
                        cmd.args(["--insecure-policy", "copy", "-q", "--dest-tls-verify=false"])
                            .arg(&reference)
                            .arg(format!("docker://{}", next_repository("skopeo")));
                        cmd
                    },
                )
            },
            Contender {
                reset: Box::new(|| registry.empty()),
                ..Contender::new("`cargo airlock push oci:DIR:TAG …`", Place::Tmpfs, || {
                    let mut cmd = Command::new(&airlock);
                    cmd.args(["push", "-q", &reference, &next_repository("airlock")])
                        .env("DOCKER_CONFIG", &docker_config)
                        .env_remove("AIRLOCK_REGISTRY_USERNAME")
                        .env_remove("AIRLOCK_REGISTRY_PASSWORD")
                        .current_dir(work);
                    cmd
                })
            },
        ];
        let pushed = interleave(&pushed)?;
        registry.empty()?;
        let _ = write!(
            out,
            "\n\n### report and verify of the `--strip none` image of the binary {name} (its \
             layer: {} gzip)\n\n{}",
            human_bytes(layer),
            table(&reads)
        );
        let _ = write!(
            out,
            "\n### push of that image to `docker-registry` on 127.0.0.1 (plain HTTP; storage \
             emptied before each run)\n\n{}",
            table(&pushed)
        );
        read_rows.push((layer, reads));
        push_rows.push((layer, pushed));
    }
    drop(registry);
    let mut out = format!(
        "{header} and {:.2} after them (2 cores: above 2, other work shared the machine).{out}",
        super::load_average()
    );

    out += &linearity(size, &image_rows, &read_rows, &push_rows);
    let sized: Vec<(u64, &Measured)> = image_rows
        .iter()
        .flat_map(|(bytes, rows)| [(*bytes, &rows[1]), (*bytes, &rows[2])])
        .chain(
            read_rows
                .iter()
                .chain(&push_rows)
                .map(|(bytes, rows)| (*bytes, &rows[1])),
        )
        .collect();
    out += &peak_goals(&sized);
    Ok(out)
}

/// Seconds per GiB of input for each airlock command at every size: equal figures are time
/// linear in bytes.
fn linearity(
    binary: u64,
    image_rows: &[(u64, Vec<Measured>)],
    read_rows: &[(u64, Vec<Measured>)],
    push_rows: &[(u64, Vec<Measured>)],
) -> String {
    let ratio = read_rows
        .first()
        .map_or(0.0, |(layer, _)| binary as f64 / (*layer).max(1) as f64);
    let mut out = format!(
        "\n\n### time per GiB (linear in bytes when a command's figures agree)\n\n\
         `image`: per GiB of the binary; `verify`, `report` and `push`: per GiB of the layer \
         blob. The layer of the binary as built is its code and debug info gzipped \
         ({ratio:.1}:1), the grown ones' mostly keystream, which gzip stores: `report` \
         inflates and reads every byte of the layer, so a blob byte of the first costs it \
         more. The default `image` leaves the added section out, so its time follows the \
         bytes it keeps, not the binary's size.\n\n\
         | command | input | bytes | wall (median) | s per GiB | CPU s per GiB |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let gib = f64::from(1 << 30);
    let mut rows: Vec<(&str, u64, &Measured)> = Vec::new();
    for (bytes, measured) in image_rows {
        rows.push(("binary", *bytes, &measured[1]));
        rows.push(("binary", *bytes, &measured[2]));
    }
    for (bytes, measured) in read_rows.iter().chain(push_rows) {
        rows.push(("layer", *bytes, &measured[0]));
        rows.push(("layer", *bytes, &measured[1]));
    }
    // Grouped by command, smallest input first.
    let mut labels: Vec<&str> = Vec::new();
    for (_, _, m) in &rows {
        if !labels.contains(&m.label.as_str()) {
            labels.push(&m.label);
        }
    }
    for label in labels {
        for (what, bytes, m) in rows.iter().filter(|(_, _, m)| m.label == label) {
            let _ = writeln!(
                out,
                "| {} | {what} | {} | {} | {:.2} | {:.2} |",
                label.replace('|', "\\|"),
                human_bytes(*bytes),
                super::seconds(m.wall()),
                m.wall() / (*bytes as f64 / gib),
                m.cpu() / (*bytes as f64 / gib),
            );
        }
    }
    out
}

/// Each airlock row's peak memory against [`PEAK_GOAL`], with the size of its input.
fn peak_goals(rows: &[(u64, &Measured)]) -> String {
    let mut out = format!(
        "\nPeak memory goal: under {} whatever the input's size.\n\n\
         | command | input | peak memory | met |\n| --- | ---: | ---: | --- |\n",
        mib(PEAK_GOAL)
    );
    for (bytes, row) in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            row.label.replace('|', "\\|"),
            human_bytes(*bytes),
            mib(row.peak()),
            if row.peak() < PEAK_GOAL {
                "met"
            } else {
                "**not met**"
            }
        );
    }
    out
}

/// The size goal of `--compression zstd` (issue 11: within 1 % of `zstd -19`) on a layer
/// larger than the image bench's: the default image's (the binary stripped of its debug info)
/// against `zstd -19` on one thread of the same tar, where every match within the 8 MiB
/// window is found.
fn zstd_size_goal(airlock: &Path, binary: &Path, work: &Path) -> Result<String> {
    let dir = work.join("zstd");
    run_ok(&mut image_cmd(
        airlock,
        binary,
        work,
        &dir,
        &["--compression", "zstd"],
    ))?;
    let layer_path = largest_blob_path(&dir)?;
    let layer = fs::metadata(&layer_path)?.len();
    let tar = run_ok(Command::new("zstd").args(["-dc", "-q"]).arg(&layer_path))?.stdout;
    let mut one_thread = Command::new("zstd")
        .args(["-19", "--single-thread", "-c", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start zstd")?;
    let mut stdin = one_thread.stdin.take().context("zstd has no stdin")?;
    let feeder = std::thread::spawn(move || stdin.write_all(&tar).map(|()| tar.len()));
    let reference = one_thread.wait_with_output()?;
    let tar_len = feeder
        .join()
        .map_err(|_| anyhow::anyhow!("the thread feeding zstd panicked"))??;
    anyhow::ensure!(reference.status.success(), "zstd -19 failed");
    let reference = reference.stdout.len() as u64;
    let _ = fs::remove_dir_all(&dir);
    let over = (layer as f64 / reference as f64 - 1.0) * 100.0;
    Ok(format!(
        "\n\n### zstd of the default image's layer ({} of tar)\n\n\
         | size goal | airlock layer | `zstd -19 --single-thread` of its tar | difference | goal \
         | met |\n| --- | ---: | ---: | ---: | --- | --- |\n\
         | `cargo airlock image --compression zstd` (-19, every core) | {layer} B | {reference} B \
         | {over:+.2}% | ≤ +1% | {} |\n",
        human_bytes(tar_len as u64),
        if over <= 1.0 { "yes" } else { "**no**" },
    ))
}

fn image_cmd(airlock: &Path, binary: &Path, work: &Path, out: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(airlock);
    // Outside any workspace, so no `[workspace.metadata.airlock]` applies.
    cmd.current_dir(work)
        .args(["image", "-q", "--binary"])
        .arg(binary)
        .arg("-o")
        .arg(out)
        .args(["--tag", TAG])
        .args(args);
    cmd
}

/// `cargo-airlock` built for musl in the dev profile, made on the first run and kept (a
/// copy, so later changes to the sources never change the input between runs).
fn input_binary(root: &Path) -> Result<PathBuf> {
    let cache = std::env::var_os("AIRLOCK_BENCH_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target").join("bench-cache"))
        .join("large");
    let kept = cache.join("cargo-airlock-musl-dev");
    if kept.is_file() {
        return Ok(kept);
    }
    let target_dir = cache.join("target");
    eprintln!(
        "bench large: building the input into {}",
        target_dir.display()
    );
    run_ok(
        airlock::process::cargo()
            .args([
                "build",
                "--locked",
                "--quiet",
                "-p",
                "cargo-airlock",
                "--bin",
                "cargo-airlock",
                "--target",
                TARGET,
            ])
            .current_dir(root)
            .env("CARGO_TARGET_DIR", &target_dir)
            .env_remove("RUSTFLAGS"),
    )?;
    let built = target_dir.join(TARGET).join("debug").join("cargo-airlock");
    fs::copy(&built, &kept).with_context(|| format!("cannot copy {}", built.display()))?;
    Ok(kept)
}

/// Writes `binary` grown to about `total` bytes into `out`: a section [`PAD_SECTION`] of
/// AES-128-CTR keystream (all-zero key and IV; incompressible and the same on every machine)
/// added by `objcopy`, outside every segment, so the binary runs as before.
fn padded_binary(binary: &Path, out: &Path, total: u64, work: &Path) -> Result<()> {
    let pad_bytes = total.saturating_sub(fs::metadata(binary)?.len()).max(1);
    let pad = work.join("pad.bin");
    run_ok(
        Command::new("sh")
            .arg("-c")
            .arg(
                "head -c \"$1\" /dev/zero | openssl enc -aes-128-ctr -nosalt -K \"$2\" -iv \"$2\" \
                 -out \"$0\"",
            )
            .arg(&pad)
            .arg(pad_bytes.to_string())
            .arg("0".repeat(32)),
    )?;
    anyhow::ensure!(
        fs::metadata(&pad)?.len() == pad_bytes,
        "openssl wrote {} bytes of keystream, not {pad_bytes}",
        fs::metadata(&pad)?.len()
    );
    let result = run_ok(
        Command::new("objcopy")
            .arg("--add-section")
            .arg(format!("{PAD_SECTION}={}", pad.display()))
            .arg("--set-section-flags")
            .arg(format!("{PAD_SECTION}=readonly"))
            .arg(binary)
            .arg(out),
    );
    let _ = fs::remove_file(&pad);
    result.map(|_| ())
}

/// The bytes of the binary's `.debug_*` sections, from `readelf -S -W`.
fn debug_bytes(binary: &Path) -> Result<u64> {
    let output = run_ok(Command::new("readelf").args(["-S", "-W"]).arg(binary))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut total = 0;
    for line in text.lines() {
        // `  [Nr] Name Type Address Off Size …`: the fields after the `]`.
        let Some((_, rest)) = line.split_once(']') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields
            .first()
            .is_some_and(|name| name.starts_with(".debug_"))
            && let Some(size) = fields.get(4)
        {
            total += u64::from_str_radix(size, 16)
                .with_context(|| format!("unexpected readelf line {line:?}"))?;
        }
    }
    Ok(total)
}

/// The largest blob of a layout: its one layer.
fn largest_blob(layout: &Path) -> Result<u64> {
    Ok(fs::metadata(largest_blob_path(layout)?)?.len())
}

fn largest_blob_path(layout: &Path) -> Result<PathBuf> {
    let blobs = layout.join("blobs").join("sha256");
    let mut largest = (0, None);
    for entry in fs::read_dir(&blobs).with_context(|| format!("cannot read {}", blobs.display()))? {
        let entry = entry?;
        let len = entry.metadata()?.len();
        if largest.1.is_none() || len > largest.0 {
            largest = (len, Some(entry.path()));
        }
    }
    largest
        .1
        .with_context(|| format!("{} holds no blob", blobs.display()))
}

/// `docker-registry serve` on 127.0.0.1 with its storage in the work directory; killed on
/// drop.
struct Registry {
    child: Child,
    port: u16,
    storage: PathBuf,
}

impl Registry {
    fn start(work: &Path) -> Result<Registry> {
        let dir = work.join("registry");
        let storage = dir.join("storage");
        fs::create_dir_all(&storage)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = dir.join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                storage.display()
            ),
        )?;
        let log = fs::File::create(dir.join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                airlock::error::environment(format!(
                    "cannot run docker-registry ({e}); install it (`apt-get install \
                     docker-registry`)"
                ))
            })?;
        let registry = Registry {
            child,
            port,
            storage,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !registry.answers() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "docker-registry did not start; see {}",
                dir.join("registry.log").display()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(registry)
    }

    fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        if write!(
            stream,
            "GET /v2/ HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr()
        )
        .is_err()
        {
            return false;
        }
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).is_ok() && line.contains(" 200 ")
    }

    /// Removes every blob and repository pushed so far.
    fn empty(&self) -> Result<()> {
        for entry in fs::read_dir(&self.storage)? {
            fs::remove_dir_all(entry?.path())?;
        }
        Ok(())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
