//! `cargo airlock report` on layouts nobody here wrote (umoci), on layouts made with
//! airlock's `LayoutWriter` in the test, with budgets, baselines, SVG, Markdown and bad input.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use airlock::oci::LayoutWriter;
use airlock::oci::layout::with_ref_name;
use airlock::tarball::TarBuilder;
use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, ImageConfigurationBuilder, ImageIndexBuilder,
    ImageManifestBuilder, MediaType, Os, PlatformBuilder, RootFsBuilder,
};
use serde_json::Value;

use crate::support::*;

/// The hello fixture built static for `triple` (rust's self-contained musl; rust-lld links
/// the cross target), once per test run, cached in the test's tmp dir.
fn hello_for(triple: &str) -> PathBuf {
    static X86_64: OnceLock<PathBuf> = OnceLock::new();
    static AARCH64: OnceLock<PathBuf> = OnceLock::new();
    let cell = if triple.starts_with("x86_64") {
        &X86_64
    } else {
        &AARCH64
    };
    cell.get_or_init(|| {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("report-hello");
        let project = root.join("hello");
        if !project.exists() {
            copy_dir(&fixture_path("hello"), &project);
        }
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--release",
            "--locked",
            "--quiet",
            "--target",
            triple,
        ])
        .current_dir(&project)
        .env("CARGO_TARGET_DIR", root.join("target"))
        .env_remove("RUSTFLAGS");
        if !triple.starts_with(std::env::consts::ARCH) {
            let linker = format!(
                "CARGO_TARGET_{}_LINKER",
                triple.to_uppercase().replace('-', "_")
            );
            cmd.env(linker, "rust-lld");
        }
        run_expect(&mut cmd, 0);
        root.join("target")
            .join(triple)
            .join("release")
            .join("hello")
    })
    .clone()
}

/// The hello fixture for this machine's architecture.
fn hello_binary() -> PathBuf {
    hello_for(&format!("{}-unknown-linux-musl", std::env::consts::ARCH))
}

fn report_json(args: &[&str]) -> Value {
    run_json(
        airlock()
            .arg("report")
            .args(args)
            .args(["--format", "json", "-q"]),
    )
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

fn blob_size(layout: &Path, digest: &str) -> u64 {
    std::fs::metadata(blob(layout, digest)).unwrap().len()
}

fn u(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("not a number: {value}"))
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A layout made by umoci: an empty image, then the binary added by unpack + repack, then
/// the entrypoint set.
fn umoci_layout(dir: &Path, binary: &Path) -> Option<PathBuf> {
    let umoci = require_tool("umoci")?;
    let layout = dir.join("umoci-layout");
    let bundle = dir.join("bundle");
    let image = format!("{}:v1", layout.display());
    let run = |args: &[&str]| {
        let mut cmd = Command::new(&umoci);
        cmd.args(args);
        run_expect(&mut cmd, 0);
    };
    run(&["init", "--layout", &layout.to_string_lossy()]);
    run(&["new", "--image", &image]);
    let mut unpack = vec!["unpack"];
    if !is_root() {
        unpack.push("--rootless");
    }
    unpack.extend(["--image", &image]);
    let bundle_arg = bundle.to_string_lossy().into_owned();
    unpack.push(&bundle_arg);
    run(&unpack);
    let bin_dir = bundle.join("rootfs/usr/local/bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    std::fs::copy(binary, bin_dir.join("hello")).unwrap();
    run(&["repack", "--image", &image, &bundle_arg]);
    run(&[
        "config",
        "--image",
        &image,
        "--config.entrypoint",
        "/usr/local/bin/hello",
    ]);
    Some(layout)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// `gzip -9` of `bytes` as airlock writes it (and the report measures): libdeflate, 1 MiB pieces.
fn airlock_gzip9(bytes: &[u8]) -> u64 {
    let mut e = airlock::oci::gzip::ParallelGzEncoder::new(Vec::new(), 9);
    e.write_all(bytes).unwrap();
    e.finish().unwrap().len() as u64
}

/// `zstd -19` of `bytes` as airlock writes it (and the report measures): on worker threads.
fn airlock_zstd19(bytes: &[u8]) -> u64 {
    let mut e = airlock::oci::layer::zstd_encoder(Vec::new(), 19, 1, bytes.len() as u64).unwrap();
    e.write_all(bytes).unwrap();
    e.finish().unwrap().len() as u64
}

fn zstd_stream(bytes: &[u8], level: i32) -> Vec<u8> {
    let mut e = zstd::stream::write::Encoder::new(Vec::new(), level).unwrap();
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// What a layout made with `LayoutWriter` holds, for the assertions.
struct Written {
    layout: PathBuf,
    /// The two layers' uncompressed tar streams.
    tars: [Vec<u8>; 2],
}

/// A layout written with airlock's `LayoutWriter`: a gzip layer with `/etc` files and a
/// zstd layer with the binary, for each architecture in `arches`, in an index tagged `v1`
/// (or, for one architecture, a manifest tagged `v1`). `padding` bytes of incompressible
/// data go into `/data/blob` to make the image grow.
fn written_layout(
    dir: &Path,
    binary: &Path,
    arches: &[Arch],
    padding: usize,
    entrypoint: bool,
) -> Written {
    let layout = dir.join("written-layout");
    let writer = LayoutWriter::create(&layout).unwrap();
    let mut etc = TarBuilder::new();
    etc.file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/sbin/nologin\n".to_vec(),
        0o644,
    );
    etc.file("etc/group", b"root:x:0:\n".to_vec(), 0o644);
    // Pseudo-random, incompressible padding (xorshift), so growth shows in compressed bytes.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let noise: Vec<u8> = (0..padding)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    if padding > 0 {
        etc.file("data/blob", noise, 0o644);
    }
    let etc_tar = etc.to_bytes(0).unwrap();
    let mut app = TarBuilder::new();
    app.file_from_disk("app/hello", binary, 0o755);
    let app_tar = app.to_bytes(0).unwrap();
    let layer1 = writer
        .put_blob(MediaType::ImageLayerGzip, &gzip(&etc_tar))
        .unwrap();
    let layer2 = writer
        .put_blob(MediaType::ImageLayerZstd, &zstd_stream(&app_tar, 3))
        .unwrap();
    let diff_ids = vec![
        airlock::Sha256Digest::of(&etc_tar).to_string(),
        airlock::Sha256Digest::of(&app_tar).to_string(),
    ];
    let mut manifests = Vec::new();
    for arch in arches {
        let mut config = ConfigBuilder::default();
        if entrypoint {
            config = config.entrypoint(vec!["/app/hello".to_owned()]);
        }
        let config = ImageConfigurationBuilder::default()
            .architecture(arch.clone())
            .os(Os::Linux)
            .config(config.build().unwrap())
            .rootfs(
                RootFsBuilder::default()
                    .typ("layers")
                    .diff_ids(diff_ids.clone())
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let (config_desc, _) = writer.put_json(MediaType::ImageConfig, &config).unwrap();
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_desc)
            .layers(vec![layer1.clone(), layer2.clone()])
            .build()
            .unwrap();
        let (mut desc, _) = writer
            .put_json(MediaType::ImageManifest, &manifest)
            .unwrap();
        desc.set_platform(Some(
            PlatformBuilder::default()
                .architecture(arch.clone())
                .os(Os::Linux)
                .build()
                .unwrap(),
        ));
        manifests.push(desc);
    }
    let top: Descriptor = if manifests.len() == 1 {
        manifests.remove(0)
    } else {
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests)
            .build()
            .unwrap();
        writer.put_json(MediaType::ImageIndex, &index).unwrap().0
    };
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .manifests(vec![with_ref_name(top, "v1")])
        .build()
        .unwrap();
    writer.finish(&index).unwrap();
    Written {
        layout,
        tars: [etc_tar, app_tar],
    }
}

/// Checks one platform's figures against the blobs on disk.
fn assert_matches_disk(layout: &Path, platform: &Value) {
    let manifest_digest = platform["manifest_digest"].as_str().unwrap();
    let config_digest = platform["config_digest"].as_str().unwrap();
    assert_eq!(
        u(&platform["manifest_size"]),
        blob_size(layout, manifest_digest)
    );
    assert_eq!(
        u(&platform["config_size"]),
        blob_size(layout, config_digest)
    );
    let mut total = blob_size(layout, manifest_digest) + blob_size(layout, config_digest);
    for layer in platform["layers"].as_array().unwrap() {
        let size = blob_size(layout, layer["digest"].as_str().unwrap());
        assert_eq!(u(&layer["compressed"]), size);
        total += size;
    }
    assert_eq!(u(&platform["compressed"]), total);
    let layers_uncompressed: u64 = platform["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| u(&l["uncompressed"]))
        .sum();
    assert_eq!(u(&platform["uncompressed"]), layers_uncompressed);
}

#[test]
fn umoci_layout_figures_match_the_disk_and_skopeo() {
    let dir = tempfile::tempdir().unwrap();
    let binary = hello_binary();
    let Some(layout) = umoci_layout(dir.path(), &binary) else {
        return;
    };
    let image = format!("oci:{}:v1", layout.display());
    let report = report_json(&[&image]);
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["image"], image);
    let platforms = report["platforms"].as_array().unwrap();
    assert_eq!(platforms.len(), 1);
    let platform = &platforms[0];
    assert_eq!(
        platform["platform"],
        format!(
            "linux/{}",
            if cfg!(target_arch = "x86_64") {
                "amd64"
            } else {
                "arm64"
            }
        )
    );
    assert_matches_disk(&layout, platform);

    // The uncompressed size is the gzip stream decompressed.
    let layer = &platform["layers"][0];
    assert_eq!(layer["codec"], "gzip");
    let compressed = std::fs::read(blob(&layout, layer["digest"].as_str().unwrap())).unwrap();
    let mut tar = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&compressed[..]), &mut tar)
        .unwrap();
    assert_eq!(u(&layer["uncompressed"]), tar.len() as u64);
    assert_eq!(u(&layer["gzip"]), compressed.len() as u64);
    assert_eq!(u(&layer["zstd"]), airlock_zstd19(&tar));
    assert_eq!(layer["largest"][0]["path"], "/usr/local/bin/hello");

    // The binary: the entrypoint, measured like strip, gzip -9 and zstd -19 would.
    let b = &platform["binary"];
    let on_disk = std::fs::read(&binary).unwrap();
    assert_eq!(b["path"], "/usr/local/bin/hello");
    assert_eq!(b["source"], "entrypoint");
    assert_eq!(u(&b["size"]), on_disk.len() as u64);
    assert_eq!(b["linkage"], "static-pie");
    // Alone in its gzip layer: its zstd figure is the layer's, compressed once, and its gzip
    // figure the layer as stored, never compressed again.
    assert_eq!(u(&b["zstd"]), u(&layer["zstd"]));
    assert_eq!(u(&b["gzip"]), u(&layer["compressed"]));
    if let Some(strip) = require_tool("strip") {
        let stripped = dir.path().join("stripped");
        let mut cmd = Command::new(strip);
        cmd.arg("--strip-all").arg("-o").arg(&stripped).arg(&binary);
        run_expect(&mut cmd, 0);
        assert_eq!(
            u(&b["stripped"]),
            std::fs::metadata(&stripped).unwrap().len()
        );
    }

    // skopeo reads the same layout and gives the same figures.
    let Some(skopeo) = require_tool("skopeo") else {
        return;
    };
    let mut inspect = Command::new(&skopeo);
    inspect.args(["inspect", &image]);
    let (out, _) = run_expect(&mut inspect, 0);
    let inspected: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspected["Digest"], platform["manifest_digest"]);
    assert_eq!(inspected["Layers"], serde_json::json!([layer["digest"]]));
    // `LayersData` (skopeo 1.6 and later) carries the sizes; older ones only have the raw
    // manifest, checked below.
    if let Some(layers_data) = inspected["LayersData"].as_array() {
        assert_eq!(layers_data.len(), 1);
        assert_eq!(u(&layers_data[0]["Size"]), u(&layer["compressed"]));
        assert_eq!(layers_data[0]["Digest"], layer["digest"]);
    }
    let mut raw = Command::new(&skopeo);
    raw.args(["inspect", "--raw", &image]);
    let (manifest, _) = run_expect(&mut raw, 0);
    assert_eq!(manifest.len() as u64, u(&platform["manifest_size"]));
    let manifest: Value = serde_json::from_str(&manifest).unwrap();
    assert_eq!(u(&manifest["config"]["size"]), u(&platform["config_size"]));
    assert_eq!(u(&manifest["layers"][0]["size"]), u(&layer["compressed"]));
    assert_eq!(manifest["layers"][0]["digest"], layer["digest"]);

    // The table shows the same numbers.
    let (human, _) = run_expect(airlock().args(["report", "-q", &image]), 0);
    assert!(
        human.contains(&format!("{} bytes", platform["compressed"])),
        "{human}"
    );
    assert!(
        human.contains("same layers on gcr.io/distroless/static"),
        "{human}"
    );
    assert!(human.contains("stripped"), "{human}");
}

#[test]
fn two_platform_index_with_gzip_and_zstd_layers() {
    let dir = tempfile::tempdir().unwrap();
    let written = written_layout(
        dir.path(),
        &hello_binary(),
        &[Arch::Amd64, Arch::ARM64],
        0,
        false,
    );
    let image = format!("oci:{}:v1", written.layout.display());
    let report = report_json(&[&image]);
    assert_eq!(
        report["media_type"],
        "application/vnd.oci.image.index.v1+json"
    );
    let index_digest = report["digest"].as_str().unwrap();
    assert_eq!(
        u(&report["index_size"]),
        blob_size(&written.layout, index_digest)
    );
    let platforms = report["platforms"].as_array().unwrap();
    let names: Vec<&str> = platforms
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["linux/amd64", "linux/arm64"]);
    for platform in platforms {
        assert_matches_disk(&written.layout, platform);
        let layers = platform["layers"].as_array().unwrap();
        assert_eq!(layers[0]["codec"], "gzip");
        assert_eq!(layers[1]["codec"], "zstd");
        for (layer, tar) in layers.iter().zip(&written.tars) {
            assert_eq!(u(&layer["uncompressed"]), tar.len() as u64);
        }
        // Each layer recompressed to the other codec, at -9 / -19.
        assert_eq!(u(&layers[1]["gzip"]), airlock_gzip9(&written.tars[1]));
        assert_eq!(u(&layers[0]["zstd"]), airlock_zstd19(&written.tars[0]));
        assert_eq!(u(&layers[0]["entries"]), 3, "etc/, etc/group, etc/passwd");
        assert_eq!(u(&layers[0]["files"]), 2);
        assert_eq!(layers[0]["largest"][0]["path"], "/etc/passwd");
        // No entrypoint: the largest executable is the binary.
        assert_eq!(platform["binary"]["path"], "/app/hello");
        assert_eq!(platform["binary"]["source"], "largest-executable");
        // Mixed codecs: both recompressed totals are compared.
        let kinds: Vec<&str> = platform["comparisons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["label"].as_str().unwrap())
            .collect();
        assert!(kinds.contains(&"this image (mixed layers)"), "{kinds:?}");
        assert!(kinds.contains(&"same layers, all gzip"), "{kinds:?}");
        assert!(kinds.contains(&"same layers, all zstd"), "{kinds:?}");
        let documents = u(&platform["manifest_size"]) + u(&platform["config_size"]);
        let zstd_row = platform["comparisons"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["label"] == "same layers, all zstd")
            .unwrap();
        assert_eq!(
            u(&zstd_row["compressed"]),
            documents + u(&layers[0]["zstd"]) + u(&layers[1]["zstd"])
        );
    }
    // The arm64 platform is compared with the arm64 figures of the reference bases.
    let alpine_arm = platforms[1]["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["label"] == "same layers on alpine")
        .unwrap();
    assert_eq!(
        u(&alpine_arm["compressed"]),
        4187659 + u(&platforms[1]["compressed"])
    );
    assert_eq!(alpine_arm["approximate"], false);
    assert!(
        alpine_arm["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:260479a1")
    );
}

#[test]
fn binary_flag_and_compare_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let binary = hello_binary();
    let written = written_layout(dir.path(), &binary, &[Arch::Amd64], 0, true);
    let other_dir = tempfile::tempdir().unwrap();
    let other = written_layout(other_dir.path(), &binary, &[Arch::Amd64], 50_000, true);
    let image = format!("oci:{}", written.layout.display());
    let compare = format!("oci:{}:v1", other.layout.display());
    let report = report_json(&[
        &image,
        "--compare",
        &compare,
        "--binary",
        binary.to_str().unwrap(),
    ]);
    let platform = &report["platforms"][0];
    assert_eq!(platform["binary"]["source"], "file");
    assert_eq!(platform["binary"]["path"], binary.to_str().unwrap());
    let other_report = report_json(&[&compare]);
    let row = platform["comparisons"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "layout")
        .unwrap();
    assert_eq!(
        row["compressed"],
        other_report["platforms"][0]["compressed"]
    );
    assert_eq!(
        row["uncompressed"],
        other_report["platforms"][0]["uncompressed"]
    );
    assert_eq!(
        row["digest"],
        other_report["platforms"][0]["manifest_digest"]
    );
}

#[test]
fn json_round_trips_into_budgets_and_baselines_to_the_byte() {
    let dir = tempfile::tempdir().unwrap();
    let binary = hello_binary();
    let written = written_layout(dir.path(), &binary, &[Arch::Amd64], 10_000, true);
    let image = format!("oci:{}:v1", written.layout.display());
    let (baseline_text, _) = run_expect(
        airlock().args(["report", "-q", "--format", "json", &image]),
        0,
    );
    let baseline_path = dir.path().join("baseline.json");
    std::fs::write(&baseline_path, &baseline_text).unwrap();
    let baseline: Value = serde_json::from_str(&baseline_text).unwrap();
    let compressed = u(&baseline["platforms"][0]["compressed"]);

    // The budget passes at exactly the compressed size and fails one byte below.
    let at = report_json(&[&image, "--budget", &compressed.to_string()]);
    assert_eq!(at["budgets"][0]["passed"], true);
    assert_eq!(at["budgets"][0]["margin"], 0);
    let below = (compressed - 1).to_string();
    let (out, _) = run_expect(
        airlock().args([
            "report", "-q", "--format", "json", &image, "--budget", &below,
        ]),
        1,
    );
    let over: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(over["budgets"][0]["passed"], false);
    assert_eq!(over["budgets"][0]["margin"], -1);
    assert!(
        over["problems"][0]
            .as_str()
            .unwrap()
            .contains("by 1 B (1 bytes)"),
        "{over}"
    );
    let (human, _) = run_expect(
        airlock().args(["report", "-q", &image, "--budget", &below]),
        1,
    );
    assert!(human.contains("FAILED: over by 1 B (1 bytes)"), "{human}");
    let (human, _) = run_expect(
        airlock().args(["report", "-q", &image, "--budget", "1GiB"]),
        0,
    );
    assert!(
        human.contains(&format!("{} bytes) to spare", (1u64 << 30) - compressed)),
        "{human}"
    );

    // The same image against its own report: no growth.
    let same = report_json(&[
        &image,
        "--baseline",
        baseline_path.to_str().unwrap(),
        "--max-growth",
        "0%",
    ]);
    assert_eq!(same["growth"][0]["delta"], 0);
    assert_eq!(same["growth"][0]["passed"], true);

    // A bigger image: the growth is the difference of the compressed sizes, found in layer 1.
    let grown_dir = tempfile::tempdir().unwrap();
    let grown = written_layout(grown_dir.path(), &binary, &[Arch::Amd64], 30_000, true);
    let grown_image = format!("oci:{}:v1", grown.layout.display());
    let grown_size = u(&report_json(&[&grown_image])["platforms"][0]["compressed"]);
    let delta = grown_size - compressed;
    assert!(
        delta > 19_000,
        "incompressible padding grows the layer: {delta}"
    );
    let base = baseline_path.to_str().unwrap();
    let exact = report_json(&[
        &grown_image,
        "--baseline",
        base,
        "--max-growth",
        &delta.to_string(),
    ]);
    let g = &exact["growth"][0];
    assert_eq!(u(&g["delta"]), delta);
    assert_eq!(g["passed"], true);
    assert_eq!(u(&g["allowed"]), delta);
    let pct = g["percent"].as_f64().unwrap();
    assert!((pct - delta as f64 * 100.0 / compressed as f64).abs() < 1e-9);
    assert_eq!(g["layers"][0]["position"], 1);
    assert_eq!(g["layers"][0]["holds"], "/data/blob");

    let (out, _) = run_expect(
        airlock().args([
            "report",
            "-q",
            "--format",
            "json",
            &grown_image,
            "--baseline",
            base,
            "--max-growth",
            &(delta - 1).to_string(),
        ]),
        1,
    );
    let failed: Value = serde_json::from_str(&out).unwrap();
    let problem = failed["problems"][0].as_str().unwrap();
    let layer1 = failed["platforms"][0]["layers"][0]["digest"]
        .as_str()
        .unwrap();
    let layer_delta = u(&failed["platforms"][0]["layers"][0]["compressed"])
        - u(&baseline["platforms"][0]["layers"][0]["compressed"]);
    assert!(
        problem.contains(&format!(
            "layer 1 ({layer1}, holds /data/blob) grew by {layer_delta} bytes"
        )),
        "{problem}"
    );
    assert!(problem.contains(&format!("({delta} bytes)")), "{problem}");
    // A percentage: 1% of the baseline is less than the growth here.
    let (human, _) = run_expect(
        airlock().args([
            "report",
            "-q",
            &grown_image,
            "--baseline",
            base,
            "--max-growth",
            "1%",
        ]),
        1,
    );
    assert!(
        human.contains("growth against") && human.contains("FAILED"),
        "{human}"
    );
    // Without --max-growth the growth is reported, never failed.
    let reported = report_json(&[&grown_image, "--baseline", base]);
    assert_eq!(reported["growth"][0]["passed"], true);
    assert!(reported["growth"][0]["allowed"].is_null());
}

#[test]
fn svg_parses_and_renders_with_content() {
    let dir = tempfile::tempdir().unwrap();
    let written = written_layout(
        dir.path(),
        &hello_binary(),
        &[Arch::Amd64, Arch::ARM64],
        0,
        true,
    );
    // A tag and a path with characters that need escaping in XML.
    let image = format!("oci:{}:v1", written.layout.display());
    let (svg, _) = run_expect(
        airlock().args(["report", "-q", "--format", "svg", &image]),
        0,
    );
    let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("not XML: {e}\n{svg}"));
    let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).collect();
    assert!(texts.iter().any(|t| t.contains("linux/arm64")), "{texts:?}");
    assert!(
        texts
            .iter()
            .any(|t| t.contains("same layers on ubuntu:24.04")),
        "{texts:?}"
    );
    let bars = doc.descendants().filter(|n| n.has_tag_name("rect")).count();
    assert!(bars >= 2 * 7, "{bars} bars");
    let file = dir.path().join("chart.svg");
    run_expect(
        airlock().args(["report", "-q", &image, "--svg", file.to_str().unwrap()]),
        0,
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), svg);

    let Some(rsvg) = require_tool("rsvg-convert") else {
        return;
    };
    let png = dir.path().join("chart.png");
    let mut convert = Command::new(rsvg);
    convert.arg(&file).arg("-o").arg(&png);
    run_expect(&mut convert, 0);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    assert!(
        info.width >= 800 && info.height >= 300,
        "{}x{}",
        info.width,
        info.height
    );
    let channels = info.color_type.samples();
    let mut dark = 0;
    let mut green = 0;
    for px in pixels[..info.buffer_size()].chunks(channels) {
        let (r, g, b) = (px[0], px[1], px[2]);
        if r < 100 && g < 100 && b < 100 {
            dark += 1;
        }
        // The bar of the image itself (#2f855a).
        if r < 80 && g > 110 && b < 110 && g > r + 40 {
            green += 1;
        }
    }
    assert!(dark > 2_000, "text is drawn: {dark} dark pixels");
    assert!(
        green > 20,
        "the image's own bar is drawn: {green} green pixels"
    );
    if let Ok(keep) = std::env::var("AIRLOCK_KEEP_PNG") {
        std::fs::copy(&png, keep).unwrap();
    }
}

#[test]
fn markdown_and_step_summary() {
    let dir = tempfile::tempdir().unwrap();
    let written = written_layout(dir.path(), &hello_binary(), &[Arch::Amd64], 0, true);
    let image = format!("oci:{}:v1", written.layout.display());
    let (markdown, _) = run_expect(
        airlock().args(["report", "-q", "--format", "markdown", &image]),
        0,
    );
    assert!(
        markdown.starts_with(&format!("## Image size: `{image}`")),
        "{markdown}"
    );
    assert!(
        markdown.contains("| compared | compressed | bytes | uncompressed | × this |"),
        "{markdown}"
    );
    assert!(markdown.contains("| ---: |"), "{markdown}");

    let summary = dir.path().join("summary.md");
    std::fs::write(&summary, "previous step\n").unwrap();
    let (human, _) = run_expect(
        airlock()
            .args(["report", "-q", &image, "--summary"])
            .env("GITHUB_STEP_SUMMARY", &summary),
        0,
    );
    assert!(human.contains("linux/amd64"));
    let text = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(text, format!("previous step\n{markdown}"));
    // Without $GITHUB_STEP_SUMMARY, --summary writes nothing anywhere.
    run_expect(
        airlock()
            .args(["report", "-q", &image, "--summary"])
            .env_remove("GITHUB_STEP_SUMMARY")
            .current_dir(dir.path()),
        0,
    );
    assert_eq!(std::fs::read_to_string(&summary).unwrap(), text);
}

#[test]
fn default_layout_is_the_one_image_writes() {
    let (_guard, project) = copy_fixture("hello");
    let layout = project.join("target/airlock/image");
    let err = run_expect(airlock().arg("report").current_dir(&project), 2).1;
    assert!(
        err.contains("target/airlock/image") && err.contains("not an OCI image layout"),
        "{err}"
    );
    std::fs::create_dir_all(project.join("target/airlock")).unwrap();
    let written = written_layout(
        &project.join("target/airlock"),
        &hello_binary(),
        &[Arch::Amd64],
        0,
        true,
    );
    std::fs::rename(&written.layout, &layout).unwrap();
    let report = run_json(
        airlock()
            .args(["report", "-q", "--format", "json"])
            .current_dir(&project),
    );
    assert_eq!(report["platforms"][0]["binary"]["path"], "/app/hello");
    let manifest = project.join("Cargo.toml");
    let elsewhere = run_json(
        airlock()
            .args(["report", "-q", "--format", "json", "--manifest-path"])
            .arg(&manifest)
            .current_dir(std::env::temp_dir()),
    );
    assert_eq!(elsewhere["digest"], report["digest"]);
}

#[test]
fn bad_input_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let written = written_layout(dir.path(), &hello_binary(), &[Arch::Amd64], 0, true);
    let layout = &written.layout;
    let image = format!("oci:{}:v1", layout.display());
    let fail = |args: &[&str], code: i32, says: &[&str]| {
        let (_, err) = run_expect(airlock().arg("report").arg("-q").args(args), code);
        for s in says {
            assert!(err.contains(s), "expected `{s}` in:\n{err}");
        }
    };
    let missing = dir.path().join("nope");
    fail(
        &[missing.to_str().unwrap()],
        2,
        &["nope is not an OCI image layout"],
    );
    fail(
        &[&format!("oci:{}:v2", layout.display())],
        2,
        &["has no image tagged `v2`", "its tags are: v1"],
    );
    fail(
        &[&format!("oci:{}:bad tag", layout.display())],
        2,
        &["not a valid tag"],
    );
    fail(
        &[&image, "--budget", "5 parsecs"],
        2,
        &["unknown size unit"],
    );
    fail(&[&image, "--max-growth", "5%"], 2, &["--baseline"]);

    // Baselines: another schema version, not JSON, not a report.
    let v2 = dir.path().join("v2.json");
    std::fs::write(&v2, r#"{"schema_version": 2, "platforms": []}"#).unwrap();
    fail(
        &[&image, "--baseline", v2.to_str().unwrap()],
        2,
        &["schema_version 2", "v2.json"],
    );
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "<html>").unwrap();
    fail(
        &[&image, "--baseline", junk.to_str().unwrap()],
        2,
        &["junk.json is not JSON"],
    );
    let other = dir.path().join("other.json");
    std::fs::write(&other, r#"{"files": []}"#).unwrap();
    fail(
        &[&image, "--baseline", other.to_str().unwrap()],
        2,
        &["has no schema_version"],
    );

    // A layer blob that was tampered with, then one that is gone, then a broken index.json.
    let report = report_json(&[&image]);
    let layer = report["platforms"][0]["layers"][1]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = blob(layout, &layer);
    let original = std::fs::read(&path).unwrap();
    let mut tampered = original.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    std::fs::write(&path, &tampered).unwrap();
    fail(
        &[&image],
        1,
        &[
            &path.display().to_string(),
            "sha256 differs from its descriptor",
        ],
    );
    // Truncated: the size differs.
    std::fs::write(&path, &original[..original.len() / 2]).unwrap();
    fail(
        &[&image],
        1,
        &[
            &path.display().to_string(),
            "size differs from its descriptor",
        ],
    );
    std::fs::remove_file(&path).unwrap();
    fail(&[&image], 2, &[&format!("blob {layer} is missing")]);
    std::fs::write(&path, &original).unwrap();
    std::fs::write(layout.join("index.json"), "{ not json").unwrap();
    fail(&[&image], 2, &["index.json: not a valid OCI image index"]);
}

#[test]
fn images_made_by_cargo_airlock_image() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let x86 = hello_for("x86_64-unknown-linux-musl");
    let arm = hello_for("aarch64-unknown-linux-musl");
    let image_json = |args: &[&str]| {
        run_json(
            airlock()
                .current_dir(dir.path())
                .args(["image", "--format", "json", "-q"])
                .args(args),
        )
    };
    // One platform with the essentials layer, tagged twice (one digest, two names).
    image_json(&[
        "--binary",
        x86.to_str().unwrap(),
        "-o",
        &format!("oci:{}:single", layout.display()),
        "-t",
        "single",
        "-t",
        "also-single",
        "--essential",
        "passwd,tmp",
    ]);
    let single = report_json(&[&format!("oci:{}:single", layout.display())]);
    let platform = &single["platforms"][0];
    assert_eq!(platform["platform"], "linux/amd64");
    assert_matches_disk(&layout, platform);
    assert_eq!(platform["binary"]["source"], "entrypoint");
    assert_eq!(platform["binary"]["path"], "/usr/local/bin/hello");
    assert_eq!(
        u(&platform["binary"]["size"]),
        std::fs::metadata(&x86).unwrap().len()
    );
    let holds: Vec<&str> = platform["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l["largest"][0]["path"].as_str())
        .collect();
    assert!(
        holds.contains(&"/usr/local/bin/hello") && holds.contains(&"/etc/passwd"),
        "{holds:?}"
    );
    // Both tags name the same image, so no tag is needed.
    let untagged = report_json(&[layout.to_str().unwrap()]);
    assert_eq!(untagged["digest"], single["digest"]);

    // Two platforms in an index.
    let multi_layout = dir.path().join("multi");
    image_json(&[
        "--binary",
        x86.to_str().unwrap(),
        "--binary",
        arm.to_str().unwrap(),
        "-o",
        &format!("oci:{}:multi", multi_layout.display()),
        "-t",
        "multi",
    ]);
    let multi = report_json(&[&format!("oci:{}:multi", multi_layout.display())]);
    assert_eq!(
        multi["media_type"],
        "application/vnd.oci.image.index.v1+json"
    );
    let platforms = multi["platforms"].as_array().unwrap();
    let names: Vec<&str> = platforms
        .iter()
        .map(|p| p["platform"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"linux/amd64") && names.iter().any(|n| n.starts_with("linux/arm64")),
        "{names:?}"
    );
    for p in platforms {
        assert_matches_disk(&multi_layout, p);
        let machine = p["binary"]["machine"].as_str().unwrap();
        let expected = if p["platform"] == "linux/amd64" {
            "x86_64"
        } else {
            "aarch64"
        };
        assert_eq!(machine, expected);
    }
    let Some(skopeo) = require_tool("skopeo") else {
        return;
    };
    for p in platforms {
        let arch = if p["platform"] == "linux/amd64" {
            "amd64"
        } else {
            "arm64"
        };
        let mut raw = Command::new(&skopeo);
        raw.args(["--override-arch", arch, "inspect", "--raw"])
            .arg(format!("oci:{}:multi", multi_layout.display()));
        let (index, _) = run_expect(&mut raw, 0);
        assert_eq!(index.len() as u64, u(&multi["index_size"]));
    }
}

/// The binary alone in its layer is never compressed a second time: in the layer's codec its
/// figure is the layer as stored, in the other the layer's recompression (the binary plus its
/// tar headers, both), not the binary's own, which only another compression could give.
#[test]
fn a_binary_alone_in_its_layer_is_compressed_once() {
    let dir = tempfile::tempdir().unwrap();
    let hello = hello_binary();
    let bytes = std::fs::read(&hello).unwrap();
    for (compression, other) in [("gzip", "zstd"), ("zstd", "gzip")] {
        let layout = dir.path().join(compression);
        run_expect(
            airlock()
                .current_dir(dir.path())
                .args([
                    "image",
                    "-q",
                    "--strip",
                    "none",
                    "--compression",
                    compression,
                ])
                .arg("--binary")
                .arg(&hello)
                .arg("-o")
                .arg(format!("oci:{}:t", layout.display())),
            0,
        );
        let report = report_json(&[&format!("oci:{}:t", layout.display())]);
        let platform = &report["platforms"][0];
        let layers = platform["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1, "{platform}");
        let binary = &platform["binary"];
        assert_eq!(u(&binary["size"]), bytes.len() as u64);
        // The other codec: the layer's recompression, taken as it is.
        assert_eq!(
            u(&binary[other]),
            u(&layers[0][other]),
            "{compression}: {platform}"
        );
        let alone = match other {
            "zstd" => airlock_zstd19(&bytes),
            _ => airlock_gzip9(&bytes),
        };
        assert_ne!(
            u(&binary[other]),
            alone,
            "{compression}: compressed a second time"
        );
        // The layer's own codec: the layer as stored (the binary and its tar headers at the
        // level `image` chose), not the binary compressed a second time.
        assert_eq!(
            u(&binary[compression]),
            u(&layers[0]["compressed"]),
            "{platform}"
        );
    }
}

#[test]
fn with_gnu_compares_a_glibc_dynamic_build() {
    let dir = tempfile::tempdir().unwrap();
    let (_guard, project) = copy_fixture("hello");
    let host = format!("{}-unknown-linux-musl", std::env::consts::ARCH);
    let layout = dir.path().join("layout");
    run_json(
        airlock()
            .current_dir(dir.path())
            .args(["image", "--format", "json", "-q", "--binary"])
            .arg(hello_for(&host))
            .arg("--binary")
            .arg(hello_for(if host.starts_with("x86_64") {
                "aarch64-unknown-linux-musl"
            } else {
                "x86_64-unknown-linux-musl"
            }))
            .args(["-o", &format!("oci:{}:v1", layout.display())]),
    );
    let image = format!("oci:{}:v1", layout.display());
    let manifest = project.join("Cargo.toml");
    let report = run_json(
        airlock()
            .args([
                "report",
                "-q",
                "--format",
                "json",
                "--with-gnu",
                &image,
                "--manifest-path",
            ])
            .arg(&manifest),
    );
    let host_arch = if host.starts_with("x86_64") {
        "amd64"
    } else {
        "arm64"
    };
    let mut checked = 0;
    for platform in report["platforms"].as_array().unwrap() {
        if !platform["platform"]
            .as_str()
            .unwrap()
            .starts_with(&format!("linux/{host_arch}"))
        {
            assert!(platform["gnu_binary"].is_null());
            continue;
        }
        checked += 1;
        let gnu = &platform["gnu_binary"];
        assert_eq!(gnu["source"], "glibc-build");
        assert_eq!(gnu["linkage"], "dynamic");
        let path = PathBuf::from(gnu["path"].as_str().unwrap());
        assert!(
            path.to_string_lossy().contains("-unknown-linux-gnu"),
            "{path:?}"
        );
        assert_eq!(u(&gnu["size"]), std::fs::metadata(&path).unwrap().len());
        let row = platform["comparisons"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["kind"] == "glibc-dynamic")
            .unwrap();
        assert_eq!(row["label"], "glibc-dynamic build on gcr.io/distroless/cc");
        // The glibc base alone is ~20 MB, far above the scratch image.
        assert!(u(&row["compressed"]) > 19_000_000 + u(&platform["compressed"]) / 2);
    }
    assert_eq!(checked, 1);
    let notes = report["notes"].as_array().unwrap();
    assert!(
        notes.iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("--with-gnu builds for this machine's architecture")),
        "{notes:?}"
    );
}

/// `zstd -19` of a large layer takes minutes: a layer over 16 MiB (as stored) is recompressed
/// with the other codec only with `--recompress`; without it that figure is left out (`null`)
/// and a note names the layer, while the small layer beside it is still recompressed.
#[test]
fn a_large_layer_is_recompressed_only_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let written = written_layout(dir.path(), &hello_binary(), &[Arch::Amd64], 17 << 20, true);
    let image = format!("oci:{}:v1", written.layout.display());
    let report = report_json(&[&image]);
    let platform = &report["platforms"][0];
    let layers = platform["layers"].as_array().unwrap();
    assert!(u(&layers[0]["compressed"]) > 16 << 20, "{platform}");
    assert_eq!(layers[0]["zstd"], Value::Null, "{platform}");
    assert_eq!(u(&layers[0]["gzip"]), u(&layers[0]["compressed"]));
    assert_eq!(u(&layers[1]["gzip"]), airlock_gzip9(&written.tars[1]));
    let notes = report["notes"].to_string();
    assert!(
        notes.contains(layers[0]["digest"].as_str().unwrap()) && notes.contains("--recompress"),
        "{notes}"
    );
    // No "all zstd" total without every layer's zstd figure.
    let rows = platform["comparisons"].to_string();
    assert!(!rows.contains("all zstd"), "{rows}");

    let report = report_json(&[&image, "--recompress"]);
    let layers = report["platforms"][0]["layers"].as_array().unwrap();
    // Noise does not compress: zstd -19 of it is about its size.
    let zstd = u(&layers[0]["zstd"]);
    assert!(zstd > 17 << 20, "{zstd}");
    assert!(!report["notes"].to_string().contains("--recompress"));
}

/// The binary is streamed out of its layer, never held: `report` on the image `image --strip
/// none` makes of an 80 MiB binary peaks well under that (the old reader held the whole binary,
/// then compressed it with zstd -19).
#[test]
fn report_streams_a_large_binary_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    // The hello binary with 80 MiB of noise after its section headers: still the same ELF.
    let big = dir.path().join("big");
    let mut bytes = std::fs::read(hello_binary()).unwrap();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    bytes.extend((0..80 << 20).map(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state as u8
    }));
    std::fs::write(&big, &bytes).unwrap();
    let stripped = airlock::elf::strip::strip_in_process(&bytes).unwrap().len() as u64;
    drop(bytes);
    let layout = dir.path().join("layout");
    let image = format!("oci:{}:v1", layout.display());
    run_expect(
        airlock()
            .current_dir(dir.path())
            .args(["image", "-q", "--strip", "none", "--binary"])
            .arg(&big)
            .args(["-o", &image]),
        0,
    );
    let (code, err, peak_kib) = run_measuring_peak(airlock().args(["report", "-q", &image]));
    assert_eq!(code, 0, "{err}");
    assert!(peak_kib < 48 << 10, "peak {peak_kib} KiB");
    let report = report_json(&[&image]);
    let binary = &report["platforms"][0]["binary"];
    assert_eq!(u(&binary["size"]), std::fs::metadata(&big).unwrap().len());
    assert_eq!(u(&binary["stripped"]), stripped);
    assert_eq!(binary["strip_method"], "headers");
    // Alone in its gzip layer: that layer is its gzip figure; over 16 MiB, zstd is left out.
    let layers = report["platforms"][0]["layers"].as_array().unwrap();
    let layer = layers.last().unwrap();
    assert_eq!(u(&binary["gzip"]), u(&layer["compressed"]));
    assert_eq!(binary["zstd"], Value::Null);
}

/// Inside a workspace, `report` keeps what it measured by layer digest under
/// `target/airlock/report-cache`: run again, it reads each layer only to check its digest
/// (`-v` names each figure taken from the cache) and gives the same report; a layer that
/// changed (a new digest) is measured afresh, and a tampered blob is still caught.
#[test]
fn report_measures_a_layer_once_and_a_changed_layer_afresh() {
    let (_guard, project) = copy_fixture("hello");
    let manifest = project.join("Cargo.toml");
    let dir = tempfile::tempdir().unwrap();
    let report = |layout: &Path| {
        let image = format!("oci:{}:v1", layout.display());
        let (out, err) = run_expect(
            airlock()
                .args(["report", "-v", "--format", "json", "--manifest-path"])
                .arg(&manifest)
                .arg(&image),
            0,
        );
        let report: Value = serde_json::from_str(&out).unwrap();
        (report, err)
    };
    let first = written_layout(dir.path(), &hello_binary(), &[Arch::Amd64], 0, true);
    let (measured, err) = report(&first.layout);
    assert!(!err.contains("measured earlier"), "{err}");
    let cache = project.join("target/airlock/report-cache");
    let mut files: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(files[0].starts_with("binary-") && files[1].starts_with("layer-"));

    let (again, err) = report(&first.layout);
    let layers = measured["platforms"][0]["layers"].as_array().unwrap();
    for layer in layers {
        let digest = layer["digest"].as_str().unwrap();
        assert!(
            err.contains(&format!("report cache: layer {digest}")),
            "{digest}:\n{err}"
        );
    }
    assert!(err.contains("report cache: binary "), "{err}");
    assert_eq!(again, measured);

    // The `/etc` layer changes (padding), the binary's does not.
    std::fs::remove_dir_all(&first.layout).unwrap();
    let second = written_layout(dir.path(), &hello_binary(), &[Arch::Amd64], 4096, true);
    let (changed, err) = report(&second.layout);
    let new_layers = changed["platforms"][0]["layers"].as_array().unwrap();
    assert_ne!(new_layers[0]["digest"], layers[0]["digest"]);
    assert!(
        !err.contains(&format!(
            "report cache: layer {}",
            new_layers[0]["digest"].as_str().unwrap()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "report cache: layer {}",
            new_layers[1]["digest"].as_str().unwrap()
        )),
        "{err}"
    );
    assert_eq!(
        u(&new_layers[0]["uncompressed"]),
        second.tars[0].len() as u64
    );

    // A hit still reads the blob: a tampered one fails as without the cache.
    let path = blob(&second.layout, new_layers[1]["digest"].as_str().unwrap());
    let mut tampered = std::fs::read(&path).unwrap();
    let last = tampered.len() - 1;
    tampered[last] ^= 0xff;
    std::fs::write(&path, &tampered).unwrap();
    let image = format!("oci:{}:v1", second.layout.display());
    let (_, err) = run_expect(
        airlock()
            .args(["report", "-q", "--manifest-path"])
            .arg(&manifest)
            .arg(&image),
        1,
    );
    assert!(err.contains("sha256 differs from its descriptor"), "{err}");
}
