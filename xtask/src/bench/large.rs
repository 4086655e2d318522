//! `cargo xtask bench large`: one large static binary with real debug info through `image`
//! (as built and with the default strip), `report`, `verify --layout` and `push`, against
//! what users would use instead (the umoci pipeline, `skopeo copy` to the same registry), to
//! show that time grows with the bytes and peak memory stays under [`PEAK_GOAL`].
//!
//! The input is `cargo-airlock` itself built for `x86_64-unknown-linux-musl` in the dev
//! profile (static, full debug info of every crate it links), made once and kept under
//! `$AIRLOCK_BENCH_CACHE/large` (default `target/bench-cache`); `--quick` uses the small
//! `hello` fixture instead. The registry is Debian's `docker-registry` on 127.0.0.1, as the
//! tests start it.

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
    let umoci_script = work.join("umoci.sh");
    fs::write(&umoci_script, super::image::UMOCI_PIPELINE)?;

    // The image every later row reads: the binary as built, one layer.
    let layout = work.join("layout");
    run_ok(&mut image_cmd(
        &airlock,
        &binary,
        work,
        &layout,
        &["--strip", "none"],
    ))?;
    let layer = largest_blob(&layout)?;

    let outs = ["umoci", "none", "default"].map(|name| work.join(name));
    let image_rows = [
        Contender::new("umoci pipeline (pgzip, its default)", Place::Tmpfs, || {
            let mut cmd = Command::new("sh");
            cmd.arg(&umoci_script).arg(&binary).arg(&outs[0]);
            cmd
        })
        .removing(&outs[0]),
        Contender::new("`cargo airlock image --strip none`", Place::Tmpfs, || {
            image_cmd(&airlock, &binary, work, &outs[1], &["--strip", "none"])
        })
        .removing(&outs[1]),
        Contender::new(
            "`cargo airlock image` (default `--strip debuginfo`)",
            Place::Tmpfs,
            || image_cmd(&airlock, &binary, work, &outs[2], &[]),
        )
        .removing(&outs[2]),
    ];
    let image_rows = interleave(&image_rows)?;
    for dir in &outs {
        let _ = fs::remove_dir_all(dir);
    }

    let reference = format!("oci:{}:{TAG}", layout.display());
    let read_rows = [
        Contender::new(
            "`cargo airlock verify --layout DIR` (every blob read and hashed: the floor)",
            Place::Tmpfs,
            || {
                let mut cmd = Command::new(&airlock);
                cmd.args(["verify", "-q", "--layout"])
                    .arg(&layout)
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
    let read_rows = interleave(&read_rows)?;

    let registry = Registry::start(work)?;
    let docker_config = work.join("docker-config");
    fs::create_dir_all(&docker_config)?;
    // A repository of its own for every run, and the storage emptied before it (untimed):
    // each push uploads every blob.
    let pushes = Cell::new(0u32);
    let next_repository = |tool: &str| {
        pushes.set(pushes.get() + 1);
        format!("{}/{tool}{}:{TAG}", registry.addr(), pushes.get())
    };
    let push_rows = [
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
    let push_rows = interleave(&push_rows)?;

    let mut out = format!(
        "## large\n\n`cargo xtask bench large`: one static binary of {} ({size} bytes, of which \
         {debug} bytes in `.debug_*` sections), {how}; files on tmpfs, release \
         `cargo-airlock`. {} 1-minute load average {load_before:.2} before these runs and \
         {:.2} after them (2 cores: above 2, other work shared the machine).\n",
        human_bytes(size),
        method(),
        super::load_average(),
    );
    let _ = write!(
        out,
        "\n### image (one layer holding the binary)\n\n{}",
        table(&image_rows)
    );
    let _ = write!(
        out,
        "\n### report and verify of the `--strip none` image (its layer: {} gzip)\n\n{}",
        human_bytes(layer),
        table(&read_rows)
    );
    let _ = write!(
        out,
        "\n### push to `docker-registry` on 127.0.0.1 (plain HTTP; storage emptied before each \
         run)\n\n{}",
        table(&push_rows)
    );
    out += &peak_goals(&[&image_rows[1], &image_rows[2], &read_rows[1], &push_rows[1]]);
    Ok(out)
}

/// Each airlock row's peak memory against [`PEAK_GOAL`].
fn peak_goals(rows: &[&Measured]) -> String {
    let mut out = format!(
        "\nPeak memory goal: under {} whatever the binary's size.\n\n\
         | command | peak memory | met |\n| --- | ---: | --- |\n",
        mib(PEAK_GOAL)
    );
    for row in rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            row.label.replace('|', "\\|"),
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
    let blobs = layout.join("blobs").join("sha256");
    let mut largest = 0;
    for entry in fs::read_dir(&blobs).with_context(|| format!("cannot read {}", blobs.display()))? {
        largest = largest.max(entry?.metadata()?.len());
    }
    Ok(largest)
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
