//! `cargo airlock image` end to end: layouts and archives read by skopeo, unpacked by umoci,
//! run by runc (and the aarch64 binary under qemu), loaded by podman; reproducibility; bad input.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// The hello fixture built static by `cargo airlock build` (shared by every test module).
pub(crate) fn x86_64_hello() -> PathBuf {
    static_fixture_binary("hello", "hello", "x86_64-unknown-linux-musl")
}

pub(crate) fn aarch64_hello() -> PathBuf {
    static_fixture_binary("hello", "hello", "aarch64-unknown-linux-musl")
}

/// `cargo airlock image --format json -q` with `args`, in `dir`, expecting success.
fn image_json(dir: &Path, args: &[&str]) -> Value {
    run_json(
        airlock()
            .current_dir(dir)
            .env_remove("SOURCE_DATE_EPOCH")
            .args(["image", "--format", "json", "-q"])
            .args(args),
    )
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Every file under `dir` with its bytes (to prove a failed run left it as it was).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(dir)
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p.strip_prefix(dir).unwrap().to_path_buf(), bytes)
        })
        .collect()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

fn sibling_names(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn skopeo_json(args: &[&str]) -> Value {
    run_json(Command::new("skopeo").args(args))
}

pub(crate) fn report_map(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[test]
fn x86_64_image_reads_in_skopeo_unpacks_with_umoci_and_runs_in_runc() {
    let (Some(_), Some(_), Some(_)) = (
        require_tool("skopeo"),
        require_tool("umoci"),
        require_tool("runc"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let report = image_json(
        dir.path(),
        &[
            "--binary",
            path_str(&x86_64_hello()),
            "--output",
            path_str(&layout),
            "--tag",
            "v1",
            "--essentials",
        ],
    );
    let image = &report["images"][0];
    assert_eq!(image["platform"], "linux/amd64");
    assert_eq!(report["tags"], serde_json::json!(["v1"]));
    let manifest_digest = image["manifest"]["digest"].as_str().unwrap();
    assert_eq!(report["digest"], manifest_digest);
    let layers = image["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["contents"], "essentials");
    assert_eq!(
        layers[1]["media_type"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );

    let reference = format!("oci:{}:v1", layout.display());
    let inspect = skopeo_json(&["inspect", &reference]);
    assert_eq!(inspect["Digest"], manifest_digest);
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Os"], "linux");
    assert!(inspect["Env"].as_array().unwrap().contains(&Value::from(
        "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"
    )));
    let raw = skopeo_json(&["inspect", "--raw", &reference]);
    assert_eq!(
        raw["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(raw["layers"][1]["digest"], layers[1]["digest"]);
    let config = skopeo_json(&["inspect", "--config", &reference]);
    assert_eq!(config["config"]["User"], "65532:65532");
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/hello"])
    );
    assert_eq!(
        config["rootfs"]["diff_ids"][1], layers[1]["diff_id"],
        "the config's diff_id is the uncompressed layer's digest"
    );

    let bundle = dir.path().join("bundle");
    umoci_unpack(&layout, "v1", &bundle);
    let greeting = runc_run(&bundle, &[]);
    assert_eq!(greeting.trim(), "hello from airlock-hello 0.3.1 on x86_64");
    let seen = report_map(&runc_run(&bundle, &["--report"]));
    assert_eq!(seen["uid"], "65532");
    assert_eq!(seen["gid"], "65532");
    assert_eq!(seen["passwd"], "root,nobody,nonroot");
    assert_eq!(seen["tmp_writable"], "true");
    assert_eq!(seen["ssl_cert_file"], "/etc/ssl/certs/ca-certificates.crt");
    let bundle_size = report["essentials"]["ca_bundle"]["size"].as_u64().unwrap();
    assert_eq!(seen["ssl_cert_size"], bundle_size.to_string());
    assert_eq!(seen["cwd"], "/");
}

#[test]
fn without_essentials_the_image_holds_only_the_binary_and_still_runs_as_nonroot() {
    let (Some(_), Some(_)) = (require_tool("umoci"), require_tool("runc")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let report = image_json(
        dir.path(),
        &[
            "--binary",
            path_str(&x86_64_hello()),
            "-o",
            path_str(&layout),
        ],
    );
    assert_eq!(report["tags"], serde_json::json!(["latest"]));
    assert_eq!(report["images"][0]["layers"].as_array().unwrap().len(), 1);
    let bundle = dir.path().join("bundle");
    umoci_unpack(&layout, "latest", &bundle);
    let mut rootfs: Vec<String> = std::fs::read_dir(bundle.join("rootfs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    rootfs.sort();
    assert_eq!(rootfs, ["usr"]);
    let seen = report_map(&runc_run(&bundle, &["--report"]));
    assert_eq!(seen["uid"], "65532");
    assert_eq!(seen["passwd"], "missing");
    assert_eq!(seen["ssl_cert_file"], "unset");
    assert_eq!(seen["tmp_writable"], "false");
}

#[test]
fn two_targets_make_an_index_and_the_aarch64_binary_runs_under_qemu() {
    let (Some(_), Some(_), Some(qemu)) = (
        require_tool("skopeo"),
        require_tool("umoci"),
        require_tool("qemu-aarch64-static"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let report = image_json(
        dir.path(),
        &[
            "--binary",
            path_str(&x86_64_hello()),
            "--binary",
            path_str(&aarch64_hello()),
            "-o",
            &format!("oci:{}:multi", layout.display()),
            "--essential",
            "passwd,tmp",
            "--essential",
            "tzdata",
        ],
    );
    assert_eq!(
        report["essentials"]["zoneinfo"]["path"],
        "/usr/share/zoneinfo"
    );
    let images = report["images"].as_array().unwrap();
    let platforms: Vec<&str> = images
        .iter()
        .map(|i| i["platform"].as_str().unwrap())
        .collect();
    assert_eq!(platforms, ["linux/amd64", "linux/arm64/v8"]);
    assert_eq!(
        images[0]["layers"][0]["digest"], images[1]["layers"][0]["digest"],
        "both platforms share the essentials layer"
    );
    let index_digest = report["index"]["digest"].as_str().unwrap();
    assert_eq!(report["digest"], index_digest);

    // airlock's own verifier agrees: every blob present and matching its digest.
    run_expect(airlock().args(["verify", "--layout"]).arg(&layout), 0);

    let reference = format!("oci:{}:multi", layout.display());
    let raw = skopeo_json(&["inspect", "--raw", &reference]);
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json");
    let arm = &raw["manifests"][1];
    assert_eq!(arm["platform"]["architecture"], "arm64");
    assert_eq!(arm["platform"]["variant"], "v8");
    assert_eq!(arm["digest"], images[1]["manifest"]["digest"]);
    let arm_inspect = skopeo_json(&["--override-arch", "arm64", "inspect", &reference]);
    assert_eq!(arm_inspect["Architecture"], "arm64");
    assert_eq!(
        arm_inspect["Digest"], index_digest,
        "skopeo names the index it started from"
    );
    assert_eq!(arm_inspect["Layers"][1], images[1]["layers"][1]["digest"]);

    // umoci unpacks one platform: copy the arm64 image out of the index first.
    let arm_layout = dir.path().join("arm64");
    run_expect(
        Command::new("skopeo")
            .args([
                "--override-arch",
                "arm64",
                "--override-variant",
                "v8",
                "copy",
            ])
            .arg(&reference)
            .arg(format!("oci:{}:arm", arm_layout.display())),
        0,
    );
    let bundle = dir.path().join("bundle");
    umoci_unpack(&arm_layout, "arm", &bundle);
    let binary = bundle.join("rootfs/usr/local/bin/hello");
    let (stdout, _) = run_expect(Command::new(qemu).arg(&binary), 0);
    assert_eq!(stdout.trim(), "hello from airlock-hello 0.3.1 on aarch64");
    assert!(bundle.join("rootfs/etc/passwd").exists());
    let paris = bundle.join("rootfs/usr/share/zoneinfo/Europe/Paris");
    assert!(
        std::fs::read(&paris).unwrap().starts_with(b"TZif"),
        "{}",
        paris.display()
    );
}

#[test]
fn archive_round_trips_through_skopeo_and_loads_in_podman() {
    let (Some(_), Some(podman)) = (require_tool("skopeo"), require_tool("podman")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("hello.tar");
    let report = image_json(
        dir.path(),
        &[
            "--binary",
            path_str(&x86_64_hello()),
            "--archive",
            path_str(&archive),
            "--repository",
            "airlock-hello",
            "--tag",
            "0.3.1",
        ],
    );
    assert!(
        report["layout"].is_null(),
        "an archive alone writes no layout"
    );
    assert_eq!(
        sibling_names(&archive),
        ["hello.tar"],
        "no scratch layout is left beside the archive"
    );
    assert_eq!(
        report["archive"]["size"].as_u64().unwrap(),
        std::fs::metadata(&archive).unwrap().len()
    );
    let manifest_digest = report["images"][0]["manifest"]["digest"].as_str().unwrap();

    let copied = dir.path().join("copied");
    run_expect(
        Command::new("skopeo")
            .arg("copy")
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("oci:{}:copied", copied.display())),
        0,
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(copied.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], manifest_digest);
    for layer in report["images"][0]["layers"].as_array().unwrap() {
        let hex = layer["digest"]
            .as_str()
            .unwrap()
            .trim_start_matches("sha256:");
        assert!(copied.join("blobs/sha256").join(hex).exists());
    }

    // Docker's manifest.json, as `docker load` on the classic store reads it: skopeo's
    // docker-archive transport finds the image by its RepoTags, with our config, and each
    // layer decompresses to its diff_id.
    let docker_ref = format!("docker-archive:{}:airlock-hello:0.3.1", archive.display());
    let docker = skopeo_json(&["inspect", "--raw", &docker_ref]);
    assert_eq!(
        docker["config"]["digest"],
        report["images"][0]["config"]["digest"]
    );
    assert_eq!(
        docker["layers"][0]["digest"],
        report["images"][0]["layers"][0]["diff_id"]
    );

    // podman in its own throwaway storage: the archive loads and is tagged.
    let storage = dir.path().join("podman");
    let podman_cmd = || {
        let mut cmd = Command::new(&podman);
        cmd.args(["--storage-driver", "vfs", "--root"])
            .arg(storage.join("root"))
            .arg("--runroot")
            .arg(storage.join("run"));
        cmd
    };
    let (stdout, stderr) = run_expect(podman_cmd().arg("load").arg("-i").arg(&archive), 0);
    assert!(
        format!("{stdout}{stderr}").contains("airlock-hello:0.3.1"),
        "{stdout}\n{stderr}"
    );
    let (images, _) = run_expect(
        podman_cmd().args(["images", "--format", "{{.Repository}}:{{.Tag}} {{.Digest}}"]),
        0,
    );
    assert!(images.contains("localhost/airlock-hello:0.3.1"), "{images}");
    let _ = podman_cmd().args(["rmi", "--all", "--force"]).output();
}

#[test]
fn multi_platform_archive_copies_with_all_platforms_and_unchanged_index_digest() {
    let Some(_) = require_tool("skopeo") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("multi.tar");
    let report = image_json(
        dir.path(),
        &[
            "--binary",
            path_str(&x86_64_hello()),
            "--binary",
            path_str(&aarch64_hello()),
            "--archive",
            path_str(&archive),
        ],
    );
    let copied = dir.path().join("copied");
    run_expect(
        Command::new("skopeo")
            .args(["copy", "--all"])
            .arg(format!("oci-archive:{}", archive.display()))
            .arg(format!("oci:{}:all", copied.display())),
        0,
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(copied.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], report["index"]["digest"]);
    // Docker's manifest.json lists every platform, the tags on the first.
    let (listing, _) = run_expect(
        Command::new("tar")
            .arg("-xOf")
            .arg(&archive)
            .arg("manifest.json"),
        0,
    );
    let docker: Value = serde_json::from_str(&listing).unwrap();
    assert_eq!(docker.as_array().unwrap().len(), 2);
    assert_eq!(docker[0]["RepoTags"], serde_json::json!(["hello:latest"]));
}

#[test]
fn builds_in_different_directories_times_and_umasks_give_identical_digests() {
    let hello = x86_64_hello();
    let mut reports = Vec::new();
    let mut archives = Vec::new();
    for (umask, mtime) in [("022", "2001-01-01 00:00"), ("077", "2030-06-15 12:34")] {
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("bin").join("hello");
        std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
        std::fs::copy(&hello, &copy).unwrap();
        run_expect(Command::new("touch").args(["-d", mtime]).arg(&copy), 0);
        let archive = dir.path().join("out.tar");
        // A shell only to set the umask of the child.
        let script = format!(
            "umask {umask} && exec \"$0\" image -q --format json --essentials --binary {} \
             -o {} --archive {}",
            copy.display(),
            dir.path().join("layout").display(),
            archive.display()
        );
        let report = run_json(
            Command::new("sh")
                .arg("-c")
                .arg(script)
                .arg(airlock_bin())
                .current_dir(dir.path()),
        );
        archives.push(std::fs::read(&archive).unwrap());
        reports.push((report, dir));
        std::thread::sleep(std::time::Duration::from_millis(1100));
    }
    let (a, b) = (&reports[0].0, &reports[1].0);
    assert_ne!(
        a["images"][0]["binaries"][0]["source"], b["images"][0]["binaries"][0]["source"],
        "the binaries were read from different directories"
    );
    let without_sources = |report: &Value| {
        let mut images = report["images"].clone();
        for image in images.as_array_mut().unwrap() {
            image["binaries"][0]["source"] = Value::Null;
        }
        images
    };
    assert_eq!(a["digest"], b["digest"]);
    assert_eq!(without_sources(a), without_sources(b));
    assert_eq!(archives[0], archives[1], "archives are byte-identical");
    let index = |dir: &Path| std::fs::read(dir.join("layout/index.json")).unwrap();
    assert_eq!(index(reports[0].1.path()), index(reports[1].1.path()));
}

#[test]
fn gzip_and_zstd_layers_decompress_to_their_diff_ids() {
    let (Some(_), Some(_)) = (require_tool("skopeo"), require_tool("zstd")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    for (compression, media_type, tool) in [
        (
            "gzip",
            "application/vnd.oci.image.layer.v1.tar+gzip",
            "gzip",
        ),
        (
            "zstd",
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "zstd",
        ),
    ] {
        let layout = dir.path().join(compression);
        let report = image_json(
            dir.path(),
            &[
                "--binary",
                path_str(&x86_64_hello()),
                "-o",
                path_str(&layout),
                "--compression",
                compression,
                "--essential",
                "tmp",
            ],
        );
        // skopeo checks every blob against its digest while copying.
        run_expect(
            Command::new("skopeo")
                .arg("copy")
                .arg(format!("oci:{}:latest", layout.display()))
                .arg(format!(
                    "dir:{}",
                    dir.path().join(format!("{compression}-dir")).display()
                )),
            0,
        );
        for layer in report["images"][0]["layers"].as_array().unwrap() {
            assert_eq!(layer["media_type"], media_type);
            let hex = layer["digest"]
                .as_str()
                .unwrap()
                .trim_start_matches("sha256:");
            let blob = layout.join("blobs/sha256").join(hex);
            let out = Command::new(tool)
                .args(["-dc"])
                .arg(&blob)
                .output()
                .unwrap();
            assert!(out.status.success(), "{tool} -dc {}", blob.display());
            assert_eq!(
                format!("sha256:{}", sha256_hex(&out.stdout)),
                layer["diff_id"].as_str().unwrap()
            );
            assert_eq!(
                out.stdout.len() as u64,
                layer["uncompressed_size"].as_u64().unwrap()
            );
        }
    }
}

/// A binary that ships as built is judged from its headers and streamed into its layer, never
/// held whole in memory (it was held three times: read, copied, and copied into the tar
/// builder; then once, read whole to judge it, and read whole again for `--binary`): the peak
/// stays under 48 MiB for a 96 MiB binary, and what was judged (linkage, build-id) is what a
/// whole read finds.
#[test]
fn a_binary_shipped_as_built_is_streamed_into_its_layer() {
    // GNU time, for the peak resident set of the command.
    let Some(time) = require_tool("time") else {
        return;
    };
    const PAD: usize = 96 << 20;
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    let mut bytes = std::fs::read(x86_64_hello()).unwrap();
    // Bytes past the end of the ELF: the loader never maps them, the layer still carries them.
    bytes.extend((0..PAD).map(|i| (i % 251) as u8));
    std::fs::write(&big, &bytes).unwrap();
    std::fs::set_permissions(&big, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let mut cmd = airlock();
    cmd.args([
        "image", "-q", "--format", "json", "--strip", "none", "--level", "1",
    ])
    .arg("--binary")
    .arg(&big)
    .arg("-o")
    .arg(dir.path().join("layout"))
    .current_dir(dir.path());
    let (out, _, peak_kib) = run_under_gnu_time(&time, &cmd, 0);
    let report: Value = serde_json::from_str(&out).unwrap();
    let shipped = &report["images"][0]["binaries"][0];
    let judged = airlock::elf::parse_elf(&big, &bytes).unwrap().linkage;
    assert_eq!(shipped["linkage"], judged.as_str(), "{shipped}");
    assert_eq!(
        u64::try_from(bytes.len()).unwrap(),
        shipped["size"].as_u64().unwrap()
    );
    let build_id = airlock::elf::strip::build_id(&bytes).unwrap().unwrap();
    assert_eq!(shipped["build_id"], build_id.as_str(), "{shipped}");
    assert!(
        peak_kib < 48 << 10,
        "peak {peak_kib} KiB for a {} MiB binary",
        bytes.len() >> 20
    );
}

/// The default strip of a binary with a large debug section streams: the debug file and the
/// stripped binary are written from disk in bounded memory (the binary was read whole, rebuilt
/// twice in memory, and the stripped copy held until the layer was written): the peak stays
/// under 48 MiB for 96 MiB of debug information, the debug file holds it all, and what ships
/// has none of it.
#[test]
fn the_default_strip_of_a_large_binary_streams() {
    let Some(time) = require_tool("time") else {
        return;
    };
    const DEBUG: usize = 96 << 20;
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big");
    let hello = std::fs::read(x86_64_hello()).unwrap();
    let bytes = airlock::elf::rewrite::rewrite(&hello, hello.len() + DEBUG, |builder| {
        let section = builder.sections.add();
        section.name = b".debug_airlock".as_slice().into();
        section.sh_type = object::elf::SHT_PROGBITS;
        section.sh_addralign = 1;
        let noise: Vec<u8> = (0..DEBUG).map(|i| (i % 251) as u8).collect();
        section.data = object::build::elf::SectionData::Data(noise.into());
        Ok(())
    })
    .unwrap();
    std::fs::write(&big, &bytes).unwrap();
    std::fs::set_permissions(&big, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let debug_dir = dir.path().join("debug");
    let mut cmd = airlock();
    cmd.args([
        "image", "-v", "--format", "json", "--level", "1", "--binary",
    ])
    .arg(&big)
    .arg("--debug-dir")
    .arg(&debug_dir)
    .arg("-o")
    .arg(dir.path().join("layout"))
    .current_dir(dir.path());
    let (out, err, peak_kib) = run_under_gnu_time(&time, &cmd, 0);
    assert!(!err.contains("not streamed"), "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let shipped = &report["images"][0]["binaries"][0];
    let size = shipped["size"].as_u64().unwrap();
    assert!(size < (hello.len() as u64) + (1 << 16), "{shipped}");
    let build_id = airlock::elf::strip::build_id(&bytes).unwrap().unwrap();
    assert_eq!(shipped["build_id"], build_id.as_str(), "{shipped}");
    // One file in the debug directory, the debug file: no staged file is left beside it.
    let left: Vec<PathBuf> = std::fs::read_dir(&debug_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(left.len(), 1, "{left:?}");
    assert!(left[0].to_string_lossy().ends_with(".debug"), "{left:?}");
    let debug = std::fs::read(&left[0]).unwrap();
    assert!(debug.len() > DEBUG, "{}", debug.len());
    assert!(
        peak_kib < 48 << 10,
        "peak {peak_kib} KiB for a {} MiB binary",
        bytes.len() >> 20
    );
}

/// A layout the streamed strip cannot prove safe takes the in-memory path, and `-v` says why:
/// here a debug section whose bytes lie inside the loaded image (copied byte for byte, so it
/// could not be left out). The same binary with the section after the image streams.
#[test]
fn a_layout_the_streamed_strip_cannot_prove_is_stripped_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let hello = std::fs::read(x86_64_hello()).unwrap();
    let plain = airlock::elf::rewrite::rewrite(&hello, hello.len() + 64, |builder| {
        let section = builder.sections.add();
        section.name = b".debug_airlock".as_slice().into();
        section.sh_type = object::elf::SHT_PROGBITS;
        section.sh_addralign = 1;
        section.data = object::build::elf::SectionData::Data(vec![7u8; 16].into());
        Ok(())
    })
    .unwrap();
    // The section's `sh_offset` (Elf64_Shdr + 24) moved onto the program headers (offset 64).
    let index = {
        use object::{Object, ObjectSection};
        let file = object::File::parse(plain.as_slice()).unwrap();
        file.section_by_name(".debug_airlock").unwrap().index().0
    };
    let shoff = u64::from_le_bytes(plain[40..48].try_into().unwrap()) as usize;
    let mut inside = plain.clone();
    let at = shoff + index * 64 + 24;
    inside[at..at + 8].copy_from_slice(&64u64.to_le_bytes());
    for (name, bytes, streamed) in [("plain", &plain, true), ("inside", &inside, false)] {
        let binary = dir.path().join(name);
        std::fs::write(&binary, bytes).unwrap();
        let debug_dir = dir.path().join(format!("{name}-debug"));
        let (_, err) = run_expect(
            airlock()
                .args(["image", "-v", "--binary"])
                .arg(&binary)
                .arg("--debug-dir")
                .arg(&debug_dir)
                .arg("-o")
                .arg(dir.path().join(format!("{name}-layout"))),
            0,
        );
        let note = "stripped in memory, not streamed: a removed section lies inside the loaded \
                    image";
        assert_eq!(err.contains(note), !streamed, "{name}: {err}");
        let debug: Vec<_> = std::fs::read_dir(&debug_dir).unwrap().collect();
        assert_eq!(debug.len(), 1, "{name}: {debug:?}");
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    airlock::Sha256Digest::of(bytes).hex()
}

#[test]
fn a_new_tag_keeps_the_other_images_and_a_replaced_tag_drops_its_old_blobs() {
    let Some(_) = require_tool("skopeo") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let hello = x86_64_hello();
    let build = |tag: &str, env: &str| {
        image_json(
            dir.path(),
            &[
                "--binary",
                path_str(&hello),
                "-o",
                path_str(&layout),
                "-t",
                tag,
                "--env",
                env,
            ],
        )
    };
    let v1 = build("v1", "MODE=one");
    let v2 = build("v2", "MODE=two");
    for (tag, report) in [("v1", &v1), ("v2", &v2)] {
        let inspect = skopeo_json(&["inspect", &format!("oci:{}:{tag}", layout.display())]);
        assert_eq!(inspect["Digest"], report["digest"], "{tag}");
    }
    let blobs = || walk(&layout.join("blobs")).len();
    // v1 and v2 share the binary layer; each has its config and manifest.
    assert_eq!(blobs(), 5);
    let v1_again = build("v1", "MODE=three");
    assert_ne!(v1_again["digest"], v1["digest"]);
    assert_eq!(blobs(), 5, "v1's old config and manifest are gone");
    let index: Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let tags: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(tags, ["v2", "v1"]);
    let inspect = skopeo_json(&["inspect", &format!("oci:{}:v2", layout.display())]);
    assert_eq!(inspect["Digest"], v2["digest"]);
}

#[test]
fn settings_come_from_cargo_toml_and_flags_override_them() {
    let Some(_) = require_tool("skopeo") else {
        return;
    };
    let (_guard, project) = copy_fixture("hello");
    let manifest = project.join("Cargo.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text = text.replace(
        "[[bin]]",
        "[package.metadata.airlock.image]\n\
         repository = \"example/hello\"\n\
         env = { RUST_LOG = \"info\", MODE = \"toml\" }\n\
         ports = [\"8080\", \"53/udp\"]\n\
         labels = { team = \"platform\" }\n\
         workdir = \"/srv\"\n\
         cmd = [\"--report\"]\n\
         essentials = [\"tmp\"]\n\
         compression = \"zstd\"\n\n[[bin]]",
    );
    std::fs::write(&manifest, text).unwrap();
    let layout = project.join("layout");
    let report = image_json(
        &project,
        &[
            "--binary",
            path_str(&x86_64_hello()),
            "-o",
            path_str(&layout),
            "--env",
            "MODE=flag",
            "--user",
            "1000:1000",
        ],
    );
    assert_eq!(report["repository"], "example/hello");
    assert_eq!(
        report["tags"],
        serde_json::json!(["0.3.1"]),
        "the package version"
    );
    assert_eq!(report["compression"]["kind"], "zstd");
    assert_eq!(report["compression"]["level"], 19);
    let reference = format!("oci:{}:0.3.1", layout.display());
    let config = skopeo_json(&["inspect", "--config", &reference]);
    let c = &config["config"];
    assert_eq!(
        c["Env"],
        serde_json::json!([
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "MODE=flag",
            "RUST_LOG=info"
        ])
    );
    assert_eq!(c["User"], "1000:1000");
    assert_eq!(c["WorkingDir"], "/srv");
    assert_eq!(c["Cmd"], serde_json::json!(["--report"]));
    assert_eq!(
        c["ExposedPorts"],
        serde_json::json!({"53/udp": {}, "8080/tcp": {}})
    );
    assert_eq!(c["Labels"]["team"], "platform");
    for labels in [
        &c["Labels"],
        &skopeo_json(&["inspect", "--raw", &reference])["annotations"],
    ] {
        assert_eq!(labels["org.opencontainers.image.title"], "airlock-hello");
        assert_eq!(labels["org.opencontainers.image.version"], "0.3.1");
        assert_eq!(labels["org.opencontainers.image.licenses"], "MIT");
        assert_eq!(
            labels["org.opencontainers.image.source"],
            "https://example.invalid/airlock-hello"
        );
        assert_eq!(
            labels["org.opencontainers.image.description"],
            "airlock test fixture: a pure-Rust binary that reports what it sees"
        );
        assert_eq!(
            labels["org.opencontainers.image.created"],
            "1970-01-01T00:00:00Z"
        );
    }
}

#[test]
fn revision_and_created_come_from_git() {
    let Some(git) = require_tool("git") else {
        return;
    };
    let (_guard, project) = copy_fixture("hello");
    let git_cmd = |args: &[&str]| {
        let mut cmd = Command::new(&git);
        cmd.current_dir(&project)
            .args(args)
            .env("GIT_AUTHOR_DATE", "2024-01-02T03:04:05Z")
            .env("GIT_COMMITTER_DATE", "2024-01-02T03:04:05Z")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.invalid");
        run_expect(&mut cmd, 0).0
    };
    git_cmd(&["init", "-q"]);
    git_cmd(&["add", "."]);
    git_cmd(&["commit", "-q", "-m", "fixture"]);
    let revision = git_cmd(&["rev-parse", "HEAD"]).trim().to_owned();
    let layout = project.join("layout");
    let report = run_json(
        airlock()
            .current_dir(&project)
            .env_remove("SOURCE_DATE_EPOCH")
            .args(["image", "--format", "json", "-q", "--binary"])
            .arg(x86_64_hello())
            .arg("-o")
            .arg(&layout),
    );
    assert_eq!(report["created"], "2024-01-02T03:04:05Z");
    let manifest = read_manifest(&layout, &report);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.revision"],
        revision
    );
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.created"],
        "2024-01-02T03:04:05Z"
    );
}

fn read_manifest(layout: &Path, report: &Value) -> Value {
    let hex = report["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
}

/// A layout with one image, for the bad-input tests to leave untouched.
fn existing_layout(dir: &Path) -> PathBuf {
    let layout = dir.join("layout");
    image_json(
        dir,
        &[
            "--binary",
            path_str(&x86_64_hello()),
            "-o",
            path_str(&layout),
            "-t",
            "kept",
        ],
    );
    layout
}

/// Runs `image` with `args` on the existing layout, expects `code` and `message` on stderr,
/// and checks the layout and its directory are exactly as before.
fn fails_and_leaves_layout(dir: &Path, layout: &Path, args: &[&str], code: i32, message: &str) {
    let before = snapshot(layout);
    let siblings = sibling_names(layout);
    let (_, stderr) = run_expect(
        airlock()
            .current_dir(dir)
            .arg("image")
            .args(args)
            .arg("-o")
            .arg(layout),
        code,
    );
    assert!(
        stderr.contains(message),
        "expected `{message}` in:\n{stderr}"
    );
    assert_eq!(snapshot(layout), before, "{args:?} changed the layout");
    assert_eq!(
        sibling_names(layout),
        siblings,
        "{args:?} left files beside the layout"
    );
}

#[test]
fn a_dynamic_binary_is_refused_with_exit_1_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let layout = existing_layout(dir.path());
    // A small dynamically linked system binary (packaging the debug airlock would be slow).
    let dynamic = airlock::process::find_on_path("true").unwrap();
    fails_and_leaves_layout(
        dir.path(),
        &layout,
        &["--binary", path_str(&dynamic), "-t", "dyn"],
        1,
        "is dynamically linked",
    );
    let report = image_json(
        dir.path(),
        &[
            "--binary",
            path_str(&dynamic),
            "-o",
            path_str(&layout),
            "-t",
            "dyn",
            "--allow-dynamic",
        ],
    );
    assert_eq!(report["images"][0]["binaries"][0]["linkage"], "dynamic");
    let index = std::fs::read_to_string(layout.join("index.json")).unwrap();
    assert!(index.contains("\"kept\"") && index.contains("\"dyn\""));
}

#[test]
fn bad_input_gets_a_clear_error_and_leaves_the_layout_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let layout = existing_layout(dir.path());
    let hello = x86_64_hello();
    let hello = path_str(&hello);
    let missing = dir.path().join("no-such-binary");
    let not_elf = dir.path().join("script.sh");
    std::fs::write(&not_elf, "#!/bin/sh\necho hi\n").unwrap();
    let not_pem = dir.path().join("bundle.pem");
    std::fs::write(&not_pem, "no certificates here").unwrap();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["--binary", path_str(&missing)],
            2,
            "no-such-binary does not exist",
        ),
        (&["--binary", path_str(&not_elf)], 2, "script.sh"),
        (
            &["--binary", hello, "-t", "bad tag!"],
            2,
            "is not a valid tag",
        ),
        (
            &["--binary", hello, "--compression", "zstd", "--level", "30"],
            2,
            "out of range for zstd",
        ),
        (
            &["--binary", hello, "--compression", "brotli"],
            2,
            "unknown compression",
        ),
        (
            &["--binary", hello, "--ca-bundle", path_str(&not_pem)],
            2,
            "is not a PEM CA bundle",
        ),
        (&["--binary", hello, "--port", "http"], 2, "is not a port"),
        (
            &["--binary", hello, "--env", "NOVALUE"],
            2,
            "is not KEY=VALUE",
        ),
        (
            &["--binary", hello, "--repository", "Bad/Name"],
            2,
            "not a valid repository name",
        ),
        (
            &["--binary", hello, "--essential", "shell"],
            2,
            "unknown essential",
        ),
    ];
    for (args, code, message) in cases {
        fails_and_leaves_layout(dir.path(), &layout, args, *code, message);
    }
}

#[test]
fn a_broken_or_foreign_output_directory_is_refused_and_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let layout = existing_layout(dir.path());
    let hello = x86_64_hello();
    std::fs::write(layout.join("index.json"), b"{\"manifests\": [").unwrap();
    fails_and_leaves_layout(
        dir.path(),
        &layout,
        &["--binary", path_str(&hello)],
        2,
        "index.json: not a valid OCI image index",
    );

    let foreign = dir.path().join("photos");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("cat.jpg"), b"meow").unwrap();
    fails_and_leaves_layout(
        dir.path(),
        &foreign,
        &["--binary", path_str(&hello)],
        2,
        "is not an OCI image layout",
    );

    // A file where a directory must go: the output cannot be written.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"").unwrap();
    let (_, stderr) = run_expect(
        airlock()
            .current_dir(dir.path())
            .args(["image", "--binary"])
            .arg(&hello)
            .arg("-o")
            .arg(&blocker),
        2,
    );
    assert!(stderr.contains("exists and is not a directory"), "{stderr}");
    let (_, stderr) = run_expect(
        airlock()
            .current_dir(dir.path())
            .args(["image", "--binary"])
            .arg(&hello)
            .arg("-o")
            .arg(blocker.join("layout")),
        2,
    );
    assert!(stderr.contains("blocker"), "{stderr}");
    let (_, stderr) = run_expect(
        airlock()
            .current_dir(dir.path())
            .args(["image", "--binary"])
            .arg(&hello)
            .arg("--archive")
            .arg(blocker.join("image.tar")),
        2,
    );
    assert!(stderr.contains("blocker"), "{stderr}");
    assert_eq!(std::fs::read(&blocker).unwrap(), b"");
}

#[test]
fn human_output_names_every_digest_and_size() {
    let dir = tempfile::tempdir().unwrap();
    let (stdout, _) = run_expect(
        airlock()
            .current_dir(dir.path())
            .args(["image", "-q", "--binary"])
            .arg(x86_64_hello())
            .arg("--binary")
            .arg(aarch64_hello())
            .args(["-o", "layout"]),
        0,
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(
        lines[0].starts_with("image hello:latest (gzip -7"),
        "{stdout}"
    );
    assert!(
        lines[1].contains("platform") && lines[1].contains("compressed"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("linux/amd64") && lines[2].contains("sha256:"),
        "{stdout}"
    );
    assert!(lines[3].starts_with("linux/arm64/v8"), "{stdout}");
    assert!(
        lines[4].starts_with("index") && lines[4].contains("sha256:"),
        "{stdout}"
    );
    assert!(stdout.contains("layout: oci:layout:latest"), "{stdout}");
}

#[test]
fn image_builds_the_package_for_each_target_and_matches_prebuilt_binaries() {
    let Some(_) = require_tool("skopeo") else {
        return;
    };
    let fixture = fixture_build("hello", "x86_64-unknown-linux-musl");
    let manifest = fixture.dir.join("Cargo.toml");
    let dir = tempfile::tempdir().unwrap();
    let built = image_json(
        dir.path(),
        &[
            "--manifest-path",
            path_str(&manifest),
            "--target",
            "all",
            "-o",
            path_str(&dir.path().join("built")),
            "--essentials",
        ],
    );
    assert_eq!(built["repository"], "airlock-hello");
    assert_eq!(built["tags"], serde_json::json!(["0.3.1"]));
    let images = built["images"].as_array().unwrap();
    assert_eq!(images.len(), 2);
    assert_eq!(
        images[0]["binaries"][0]["target"],
        "x86_64-unknown-linux-musl"
    );
    assert_eq!(
        images[1]["binaries"][0]["target"],
        "aarch64-unknown-linux-musl"
    );
    let x86_64 = Path::new(images[0]["binaries"][0]["source"].as_str().unwrap());
    assert!(x86_64.ends_with("target/airlock/x86_64-unknown-linux-musl/hello"));

    // The same binaries given with --binary (same workspace metadata): the same image.
    let aarch64 = images[1]["binaries"][0]["source"].as_str().unwrap();
    let prebuilt = image_json(
        dir.path(),
        &[
            "--manifest-path",
            path_str(&manifest),
            "--binary",
            path_str(x86_64),
            "--binary",
            aarch64,
            "-o",
            path_str(&dir.path().join("prebuilt")),
            "--essentials",
        ],
    );
    assert_eq!(prebuilt["digest"], built["digest"]);
    let inspect = skopeo_json(&[
        "inspect",
        &format!("oci:{}:0.3.1", dir.path().join("built").display()),
    ]);
    assert_eq!(
        inspect["Labels"]["org.opencontainers.image.title"],
        "airlock-hello"
    );
}

#[test]
fn a_workspace_with_several_binary_packages_needs_a_package() {
    let fixture = fixture_build("multi-bin", "x86_64-unknown-linux-musl");
    let manifest = fixture.dir.join("Cargo.toml");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let (_, stderr) = run_expect(
        airlock()
            .current_dir(dir.path())
            .args(["image", "--manifest-path"])
            .arg(&manifest)
            .arg("-o")
            .arg(&layout),
        2,
    );
    assert!(
        stderr.contains("choose one with -p/--package") && stderr.contains("multi-beta"),
        "{stderr}"
    );
    assert!(!layout.exists());
    let (_, stderr) = run_expect(
        airlock()
            .current_dir(dir.path())
            .args(["image", "--manifest-path"])
            .arg(&manifest)
            .args(["-p", "multi-gamma", "-o"])
            .arg(&layout),
        2,
    );
    assert!(stderr.contains("has no package `multi-gamma`"), "{stderr}");

    let report = image_json(
        dir.path(),
        &[
            "--manifest-path",
            path_str(&manifest),
            "-p",
            "multi-beta",
            "-o",
            path_str(&layout),
        ],
    );
    assert_eq!(report["repository"], "multi-beta");
    assert_eq!(report["tags"], serde_json::json!(["2.1.0"]));
    assert_eq!(
        report["images"][0]["binaries"][0]["path"],
        "/usr/local/bin/beta"
    );
    let manifest_json = read_manifest(&layout, &report);
    assert_eq!(
        manifest_json["annotations"]["org.opencontainers.image.version"],
        "2.1.0"
    );
}

#[test]
fn a_ca_bundle_that_is_a_fifo_is_refused_without_hanging() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("ca.pem");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let layout = dir.path().join("layout");
    let (_, stderr) = run_bounded(
        airlock()
            .current_dir(dir.path())
            .args(["image", "-q", "--binary"])
            .arg(x86_64_hello())
            .arg("--ca-bundle")
            .arg(&fifo)
            .arg("-o")
            .arg(&layout),
        2,
    );
    assert!(
        stderr.contains(&format!("{} is a FIFO", fifo.display())),
        "{stderr}"
    );
    assert!(!layout.exists(), "nothing is written");
}

/// A disk that cannot take the output is the machine's problem (exit 3), not the input's, and
/// the message names the file: a file-size limit (`ulimit -f`, with SIGXFSZ ignored so the
/// write fails with EFBIG instead of killing the process) stands in for a full disk.
#[test]
fn a_write_that_the_disk_refuses_is_exit_3_naming_the_output() {
    let dir = tempfile::tempdir().unwrap();
    let binary = x86_64_hello();
    let script = format!(
        "trap '' XFSZ; ulimit -f 64; exec '{}' image -q --binary '{}' --archive out.tar",
        airlock_bin().display(),
        binary.display()
    );
    let (_, stderr) = run_expect(
        Command::new("bash")
            .arg("-c")
            .arg(&script)
            .current_dir(dir.path()),
        3,
    );
    assert!(stderr.contains("out.tar"), "{stderr}");
    assert!(stderr.contains("hint: the disk"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "a failed write left {left:?}");
}

/// `--binary` outside any workspace (no `Cargo.toml` in the directory or above it): cargo is
/// never started, since `cargo metadata` could only fail there (its start was a good part of
/// a small image's time). Under a `Cargo.toml` it is asked, and its failure still ignored.
#[test]
fn prebuilt_binaries_outside_a_workspace_never_start_cargo() {
    let dir = tempfile::tempdir().unwrap();
    assert!(
        !dir.path()
            .ancestors()
            .any(|d| d.join("Cargo.toml").exists()),
        "the temporary directory {} is inside a Cargo project",
        dir.path().display()
    );
    let log = dir.path().join("cargo.log");
    let cargo = dir.path().join("cargo");
    std::fs::write(
        &cargo,
        format!("#!/bin/sh\necho \"$@\" >> '{}'\nexit 101\n", log.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cargo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let image = |layout: &str| {
        run_expect(
            airlock()
                .current_dir(&work)
                .env("CARGO", &cargo)
                .args(["image", "-q", "--binary"])
                .arg(x86_64_hello())
                .arg("-o")
                .arg(dir.path().join(layout)),
            0,
        )
    };
    image("outside");
    assert!(
        !log.exists(),
        "cargo was started: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    assert!(dir.path().join("outside/index.json").is_file());

    std::fs::write(dir.path().join("Cargo.toml"), "[workspace]\n").unwrap();
    image("inside");
    let asked = std::fs::read_to_string(&log).unwrap();
    assert!(asked.starts_with("metadata "), "{asked}");
    assert!(dir.path().join("inside/index.json").is_file());
}
