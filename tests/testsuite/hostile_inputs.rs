//! Hostile inputs end to end: FIFOs, devices, symbolic links out of a layout, descriptors that
//! lie about sizes, and blobs altered in place. Every command runs under a deadline
//! ([`run_bounded`]): a hang or an unbounded read fails the test instead of hanging CI.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};

use airlock::Sha256Digest;
use airlock::oci::layout::{LayoutWriter, with_ref_name};
use oci_spec::image::{Arch, Descriptor, ImageIndexBuilder, ImageManifest, MediaType};

use crate::support::*;

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Replaces the file at `path` with a FIFO.
fn replace_with_fifo(path: &Path) {
    std::fs::remove_file(path).unwrap();
    mkfifo(path);
}

/// Replaces the file at `path` with a symbolic link to `target`.
fn replace_with_link(path: &Path, target: &Path) {
    std::fs::remove_file(path).unwrap();
    std::os::unix::fs::symlink(target, path).unwrap();
}

/// Moves the file at `path` to `outside` and leaves a link to it in its place.
fn move_out_and_link(path: &Path, outside: &Path) {
    std::fs::rename(path, outside).unwrap();
    std::os::unix::fs::symlink(outside, path).unwrap();
}

fn hex(descriptor: &Descriptor) -> String {
    Sha256Digest::try_from(descriptor.digest()).unwrap().hex()
}

/// One small amd64 image tagged `v1`.
struct Small {
    path: PathBuf,
    manifest: Descriptor,
    config: Descriptor,
    layer: Descriptor,
}

impl Small {
    fn blob(&self, descriptor: &Descriptor) -> PathBuf {
        self.path.join("blobs/sha256").join(hex(descriptor))
    }

    fn reference(&self) -> String {
        format!("oci:{}:v1", self.path.display())
    }
}

fn small_layout(dir: &Path, name: &str) -> Small {
    let path = dir.join(name);
    let writer = LayoutWriter::create(&path).unwrap();
    let layer = layer(&[("hello", b"#!/bin/true\n".to_vec())]);
    let image = image(&writer, Arch::Amd64, &[&layer]);
    let manifest: ImageManifest = serde_json::from_slice(&image.manifest_bytes).unwrap();
    let mut entry = image.descriptor.clone();
    entry.set_platform(None);
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .manifests(vec![with_ref_name(entry.clone(), "v1")])
        .build()
        .unwrap();
    writer.finish(&index).unwrap();
    Small {
        path,
        manifest: entry,
        config: manifest.config().clone(),
        layer: manifest.layers()[0].clone(),
    }
}

/// Every entry under `dir` with its kind and, for regular files, its bytes; never opens
/// anything else (a FIFO in the layout must not hang the test itself).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for entry in walkdir(dir) {
        let meta = std::fs::symlink_metadata(&entry).unwrap();
        let what = if meta.file_type().is_symlink() {
            format!("link to {}", std::fs::read_link(&entry).unwrap().display())
        } else if meta.is_file() {
            Sha256Digest::of(&std::fs::read(&entry).unwrap()).to_string()
        } else if meta.is_dir() {
            "dir".to_owned()
        } else {
            "special".to_owned()
        };
        out.insert(entry.strip_prefix(dir).unwrap().to_path_buf(), what);
    }
    out
}

fn walkdir(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        found.push(entry.path());
        if entry.file_type().unwrap().is_dir() {
            found.extend(walkdir(&entry.path()));
        }
    }
    found
}

#[track_caller]
fn assert_says(text: &str, says: &[&str]) {
    for s in says {
        assert!(text.contains(s), "expected `{s}` in:\n{text}");
    }
}

/// `verify --layout DIR --format json`: the findings as (kind, path, message).
fn layout_findings(layout: &Path, code: i32) -> Vec<(String, String, String)> {
    let (stdout, _) = run_bounded(
        airlock()
            .args(["verify", "--format", "json", "--layout"])
            .arg(layout),
        code,
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let text = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
            (text("kind"), text("path"), text("message"))
        })
        .collect()
}

#[test]
fn inspect_reads_only_regular_files_and_never_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    mkfifo(&fifo);
    let (_, stderr) = run_bounded(airlock().args(["inspect", "/dev/zero"]), 2);
    assert_says(&stderr, &["/dev/zero is a character device"]);
    let (_, stderr) = run_bounded(airlock().arg("inspect").arg(&fifo), 2);
    assert_says(&stderr, &[&format!("{} is a FIFO", fifo.display())]);
    // A link the user typed is followed, to what it names.
    let link = dir.path().join("zero");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let (_, stderr) = run_bounded(airlock().arg("inspect").arg(&link), 2);
    assert_says(&stderr, &["zero is a character device"]);
}

#[test]
fn verify_layout_refuses_special_files_and_links_out_of_the_layout() {
    let dir = tempfile::tempdir().unwrap();

    // index.json a FIFO: the layout cannot be read at all (exit 2), and nothing hangs.
    let small = small_layout(dir.path(), "fifo-index");
    replace_with_fifo(&small.path.join("index.json"));
    let (_, stderr) = run_bounded(airlock().args(["verify", "--layout"]).arg(&small.path), 2);
    assert_says(&stderr, &["index.json is a FIFO"]);

    // A manifest blob that is a FIFO, a layer blob linked to /dev/zero.
    let small = small_layout(dir.path(), "special-blobs");
    let manifest = small.blob(&small.manifest);
    replace_with_fifo(&manifest);
    let layer = small.blob(&small.layer);
    replace_with_link(&layer, Path::new("/dev/zero"));
    let findings = layout_findings(&small.path, 1);
    for (blob, says) in [(&manifest, "is a FIFO"), (&layer, "symbolic link")] {
        assert!(
            findings
                .iter()
                .any(|(_, path, message)| path == &blob.display().to_string()
                    && message.contains(says)),
            "{findings:#?}"
        );
    }

    // A layer blob linked to a copy outside the layout with exactly the right bytes: only the
    // link is wrong, so a finding proves the link was refused rather than followed.
    let small = small_layout(dir.path(), "link-out");
    let layer = small.blob(&small.layer);
    move_out_and_link(&layer, &dir.path().join("outside-layer"));
    let findings = layout_findings(&small.path, 1);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].1, layer.display().to_string());
    assert_says(&findings[0].2, &["symbolic link"]);

    // blobs/sha256 itself a link to a complete copy outside: refused as a whole (exit 2).
    let small = small_layout(dir.path(), "blobs-link");
    let blobs = small.path.join("blobs/sha256");
    move_out_and_link(&blobs, &dir.path().join("outside-blobs"));
    let (_, stderr) = run_bounded(airlock().args(["verify", "--layout"]).arg(&small.path), 2);
    assert_says(
        &stderr,
        &[&format!("{} is a symbolic link", blobs.display())],
    );
}

#[test]
fn verify_layout_follows_docker_v2_manifests() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker");
    let writer = LayoutWriter::create(&path).unwrap();
    let config = writer
        .put_blob(
            MediaType::Other("application/vnd.docker.container.image.v1+json".into()),
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
    let missing_layer = Descriptor::new(
        MediaType::Other("application/vnd.docker.image.rootfs.diff.tar.gzip".into()),
        3,
        Sha256Digest::of(b"gone"),
    );
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": config,
        "layers": [missing_layer],
    });
    let (descriptor, _) = writer
        .put_json(
            MediaType::Other("application/vnd.docker.distribution.manifest.v2+json".into()),
            &manifest,
        )
        .unwrap();
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .manifests(vec![with_ref_name(descriptor, "v1")])
        .build()
        .unwrap();
    writer.finish(&index).unwrap();
    let findings = layout_findings(&path, 1);
    assert_eq!(findings.len(), 1, "{findings:#?}");
    assert_eq!(findings[0].0, "file-missing");
    assert!(
        findings[0].1.ends_with(&Sha256Digest::of(b"gone").hex()),
        "{findings:#?}"
    );
}

#[test]
fn report_refuses_devices_links_and_sizes_the_file_does_not_have() {
    let dir = tempfile::tempdir().unwrap();

    // A layer linked to /dev/zero.
    let small = small_layout(dir.path(), "zero-layer");
    let layer = small.blob(&small.layer);
    replace_with_link(&layer, Path::new("/dev/zero"));
    let (_, stderr) = run_bounded(airlock().args(["report", "-q", &small.reference()]), 2);
    assert_says(&stderr, &[&layer.display().to_string(), "symbolic link"]);

    // A config whose descriptor claims 2^62 bytes: refused from the file's metadata.
    let small = small_layout(dir.path(), "huge-descriptor");
    rewrite_config_size(&small, 1 << 62);
    let (_, stderr) = run_bounded(airlock().args(["report", "-q", &small.reference()]), 1);
    assert_says(
        &stderr,
        &[
            &small.blob(&small.config).display().to_string(),
            "size differs from its descriptor (expected 4611686018427387904 bytes",
        ],
    );

    // A config of 64 GiB (sparse) whose descriptor agrees: too large to be a JSON document,
    // refused before a byte of it is read.
    let small = small_layout(dir.path(), "huge-config");
    let huge = 64u64 << 30;
    let config = small.blob(&small.config);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&config)
        .unwrap()
        .set_len(huge)
        .unwrap();
    rewrite_config_size(&small, huge);
    let (_, stderr) = run_bounded(airlock().args(["report", "-q", &small.reference()]), 2);
    assert_says(
        &stderr,
        &[&config.display().to_string(), "68719476736 bytes"],
    );
}

/// Rewrites the manifest of `small` so its config descriptor claims `size` bytes, and points
/// `index.json` at the new manifest.
fn rewrite_config_size(small: &Small, size: u64) {
    let path = small.blob(&small.manifest);
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    manifest["config"]["size"] = size.into();
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = Sha256Digest::of(&bytes);
    std::fs::write(small.path.join("blobs/sha256").join(digest.hex()), &bytes).unwrap();
    let index_path = small.path.join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    index["manifests"][0]["digest"] = digest.to_string().into();
    index["manifests"][0]["size"] = bytes.len().into();
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
}

/// A small dynamically linked system binary, packaged with `--allow-dynamic` (these tests are
/// about the layout, not the binary, and need no fixture build).
fn system_binary() -> PathBuf {
    airlock::process::find_on_path("true").unwrap()
}

/// `image --binary true --allow-dynamic -o LAYOUT -t TAG` under the deadline.
fn image_into(layout: &Path, tag: &str, code: i32) -> (String, String) {
    run_bounded(
        airlock()
            .args(["image", "-q", "--allow-dynamic", "--binary"])
            .arg(system_binary())
            .arg("-o")
            .arg(layout)
            .args(["-t", tag]),
        code,
    )
}

#[test]
fn image_never_reuses_an_altered_blob_and_leaves_the_layout_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let (stdout, _) = run_bounded(
        airlock()
            .args(["image", "--format", "json", "-q", "--allow-dynamic"])
            .arg("--binary")
            .arg(system_binary())
            .arg("-o")
            .arg(&layout)
            .args(["-t", "v1"]),
        0,
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let config = report["images"][0]["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();
    // The same binary and settings under another tag would reuse this config blob: alter it
    // without changing its size, so only its digest can tell.
    let path = layout.join("blobs/sha256").join(&config);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replace("65532:65532", "00000:00000")).unwrap();
    let before = snapshot(&layout);
    let (_, stderr) = image_into(&layout, "v2", 1);
    assert_says(
        &stderr,
        &[
            "cannot add to the existing layout",
            "left as it is",
            &path.display().to_string(),
            "sha256 differs from its descriptor",
        ],
    );
    assert_eq!(snapshot(&layout), before);
    let siblings: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(siblings, ["layout"], "no staging directory is left behind");
}

#[test]
fn image_refuses_fifos_and_special_blobs_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("binary");
    mkfifo(&fifo);
    let (_, stderr) = run_bounded(
        airlock()
            .args(["image", "-q", "--binary"])
            .arg(&fifo)
            .arg("-o")
            .arg(dir.path().join("new")),
        2,
    );
    assert_says(&stderr, &[&format!("{} is a FIFO", fifo.display())]);
    assert!(!dir.path().join("new").exists());

    // An existing layout whose manifest blob is a FIFO, another whose layer is /dev/zero.
    let small = small_layout(dir.path(), "fifo-manifest");
    let manifest = small.blob(&small.manifest);
    replace_with_fifo(&manifest);
    let before = snapshot(&small.path);
    let (_, stderr) = image_into(&small.path, "v2", 2);
    assert_says(&stderr, &[&manifest.display().to_string(), "is a FIFO"]);
    assert_eq!(snapshot(&small.path), before);

    let small = small_layout(dir.path(), "zero-layer");
    let layer = small.blob(&small.layer);
    replace_with_link(&layer, Path::new("/dev/zero"));
    let before = snapshot(&small.path);
    let (_, stderr) = image_into(&small.path, "v2", 2);
    assert_says(&stderr, &[&layer.display().to_string(), "symbolic link"]);
    assert_eq!(snapshot(&small.path), before);
}

#[test]
fn push_checks_the_layout_before_it_connects() {
    let dir = tempfile::tempdir().unwrap();
    let small = small_layout(dir.path(), "link-out");
    let layer = small.blob(&small.layer);
    move_out_and_link(&layer, &dir.path().join("outside-layer"));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let registry = format!("{}/hostile/image:v1", listener.local_addr().unwrap());
    let (_, stderr) = run_bounded(
        airlock()
            .env("HOME", dir.path())
            .env_remove("DOCKER_CONFIG")
            .args(["push", "-q", "--insecure", &small.reference(), &registry]),
        2,
    );
    assert_says(&stderr, &[&layer.display().to_string(), "symbolic link"]);
    assert!(
        listener.accept().is_err(),
        "push connected to the registry before refusing the layout"
    );
}

/// A workspace whose `Cargo.lock` locks `evil 1.0.0`, with `vendor/evil/` for verify to read.
fn vendor_workspace(dir: &Path) -> PathBuf {
    let root = dir.join("ws");
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::create_dir_all(root.join("vendor/evil")).unwrap();
    std::fs::write(
        root.join("Cargo.toml"),
        "[package]\nname = \"ws\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
    )
    .unwrap();
    std::fs::write(root.join("src/main.rs"), "fn main() {}\n").unwrap();
    std::fs::write(
        root.join("Cargo.lock"),
        format!(
            "version = 4\n\n[[package]]\nname = \"evil\"\nversion = \"1.0.0\"\nsource = \
             \"registry+https://github.com/rust-lang/crates.io-index\"\nchecksum = \"{}\"\n\n\
             [[package]]\nname = \"ws\"\nversion = \"0.1.0\"\ndependencies = [\"evil\"]\n",
            Sha256Digest::of(b"evil").hex()
        ),
    )
    .unwrap();
    root
}

#[test]
fn verify_vendor_refuses_fifos_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let root = vendor_workspace(dir.path());
    let verify = || {
        let mut cmd = airlock();
        cmd.current_dir(&root).args([
            "verify",
            "--no-cache",
            "--format",
            "json",
            "--vendor",
            "vendor",
        ]);
        cmd
    };
    let findings = |stdout: &str| -> String {
        let report: serde_json::Value = serde_json::from_str(stdout).unwrap();
        report["findings"].to_string()
    };

    // A package's Cargo.toml is a FIFO.
    let manifest = root.join("vendor/evil/Cargo.toml");
    mkfifo(&manifest);
    let (stdout, _) = run_bounded(&mut verify(), 1);
    assert_says(&findings(&stdout), &["Cargo.toml is a FIFO"]);

    // Its .cargo-checksum.json is.
    std::fs::remove_file(&manifest).unwrap();
    std::fs::write(
        &manifest,
        "[package]\nname = \"evil\"\nversion = \"1.0.0\"\n",
    )
    .unwrap();
    mkfifo(&root.join("vendor/evil/.cargo-checksum.json"));
    let (stdout, _) = run_bounded(&mut verify(), 1);
    assert_says(&findings(&stdout), &[".cargo-checksum.json is a FIFO"]);
}
