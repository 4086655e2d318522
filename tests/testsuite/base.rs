//! `image --base`: images built on a base made by umoci in the test (a layout, an archive) or
//! pulled from the test registry (OCI and Docker v2, with credentials), run by runc; the base
//! cache used offline; multi-platform bases; hostile bases refused with their exit codes.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::image::{aarch64_hello, report_map, x86_64_hello};
use crate::support::*;

/// `cargo airlock image` in `dir` with no credentials or cache from this machine.
fn image_cmd(dir: &Path) -> Command {
    let mut cmd = airlock();
    cmd.current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .env("HOME", dir)
        .env("DOCKER_CONFIG", dir.join(".docker"))
        .env_remove("XDG_CACHE_HOME")
        .env_remove("AIRLOCK_BASE_CACHE")
        .env_remove("AIRLOCK_REGISTRY_USERNAME")
        .env_remove("AIRLOCK_REGISTRY_PASSWORD")
        .env("AIRLOCK_RETRY_BASE_MS", "10")
        .arg("image");
    cmd
}

fn image_json(dir: &Path, args: &[&str]) -> (Value, String) {
    let (stdout, stderr) = run_expect(
        image_cmd(dir)
            .args(["--format", "json", "--binary"])
            .arg(x86_64_hello())
            .args(args),
        0,
    );
    let report = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}:\n{stdout}"));
    (report, stderr)
}

fn blob(layout: &Path, digest: &str) -> Vec<u8> {
    let hex = digest.trim_start_matches("sha256:");
    std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
}

fn json_blob(layout: &Path, digest: &str) -> Value {
    serde_json::from_slice(&blob(layout, digest)).unwrap()
}

/// The manifest and config of platform `n` of an `image --format json` report.
fn manifest_and_config(layout: &Path, report: &Value, n: usize) -> (Value, Value) {
    let image = &report["images"][n];
    let manifest = json_blob(layout, image["manifest"]["digest"].as_str().unwrap());
    let config = json_blob(layout, image["config"]["digest"].as_str().unwrap());
    (manifest, config)
}

fn unpack_and_report(
    layout: &Path,
    tag: &str,
    bundle: &Path,
) -> std::collections::BTreeMap<String, String> {
    umoci_unpack(layout, tag, bundle);
    report_map(&runc_run(bundle, &["--report"]))
}

/// What the base's own shell sees in the container: its marker file and variable.
fn base_shell_sees(bundle: &Path) -> String {
    runc_run_argv(
        bundle,
        &[
            "/bin/sh",
            "-c",
            "read line < /etc/base-release; echo \"$line\"; echo \"marker=$BASE_MARKER\"",
        ],
    )
}

#[test]
fn an_image_on_a_distroless_like_base_made_by_umoci_runs_under_runc() {
    let (Some(_), Some(_)) = (require_tool("umoci"), require_tool("runc")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(base) = umoci_base(dir.path()) else {
        return;
    };
    let layout = dir.path().join("out");
    let (report, _) = image_json(
        dir.path(),
        &[
            "--base",
            &base.reference(),
            "-o",
            layout.to_str().unwrap(),
            "-t",
            "v1",
        ],
    );
    assert_eq!(report["base"]["digest"], base.digest.to_string());
    assert!(report["base"]["name"].is_null(), "a path is not a name");
    let image = &report["images"][0];
    assert_eq!(image["base_layers"], 1);
    assert_eq!(image["base_manifest"], base.digest.to_string());
    let contents: Vec<&str> = image["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["contents"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["base", "binary"]);
    // The base's layer is reused byte for byte: same digest, same bytes.
    assert_eq!(image["layers"][0]["digest"], base.layer.to_string());
    assert_eq!(
        blob(&layout, &base.layer.to_string()),
        blob(&base.layout, &base.layer.to_string())
    );

    let (manifest, config) = manifest_and_config(&layout, &report, 0);
    let annotations = &manifest["annotations"];
    assert_eq!(
        annotations["org.opencontainers.image.base.digest"],
        base.digest.to_string()
    );
    assert!(
        annotations
            .get("org.opencontainers.image.base.name")
            .is_none()
    );
    assert_eq!(annotations["io.github.airlock-rs.image.base.layers"], "1");
    let base_config = json_blob(
        &base.layout,
        json_blob(&base.layout, &base.digest.to_string())["config"]["digest"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        base_config["rootfs"]["diff_ids"][0]
    );
    assert_eq!(config["config"]["User"], "65532", "the base's user");
    assert_eq!(config["config"]["WorkingDir"], "/home/nonroot");
    let env = config["config"]["Env"].as_array().unwrap();
    assert!(env.contains(&Value::from("BASE_MARKER=1")), "{env:?}");
    assert!(
        env.contains(&Value::from("PATH=/usr/local/bin:/bin")),
        "{env:?}"
    );
    assert_eq!(
        config["config"]["Entrypoint"],
        serde_json::json!(["/usr/local/bin/hello"])
    );
    let history = config["history"].as_array().unwrap();
    assert_eq!(
        history.len(),
        base_config["history"].as_array().unwrap().len() + 1,
        "the base's history, then the binary's line"
    );

    let bundle = dir.path().join("bundle");
    let seen = unpack_and_report(&layout, "v1", &bundle);
    assert_eq!(seen["uid"], "65532");
    assert_eq!(seen["passwd"], "root,nonroot", "the base's user database");
    assert_eq!(seen["cwd"], "/home/nonroot");
    assert_eq!(seen["tmp_writable"], "true");
    for entry in ["bin", "etc", "home", "lib", "tmp", "usr"] {
        assert!(
            seen["root_entries"].split(',').any(|e| e == entry),
            "{seen:?}"
        );
    }
    assert_eq!(
        base_shell_sees(&bundle).trim(),
        format!("{BASE_RELEASE}\nmarker=1")
    );

    // Flags override the base's config key by key; the rest stays the base's.
    let overridden = dir.path().join("overridden");
    let (report, _) = image_json(
        dir.path(),
        &[
            "--base",
            &base.reference(),
            "-o",
            overridden.to_str().unwrap(),
            "--user",
            "1000:1000",
            "--workdir",
            "/tmp",
            "--env",
            "BASE_MARKER=2",
        ],
    );
    let (_, config) = manifest_and_config(&overridden, &report, 0);
    assert_eq!(config["config"]["User"], "1000:1000");
    assert_eq!(config["config"]["WorkingDir"], "/tmp");
    let env = config["config"]["Env"].as_array().unwrap();
    assert!(env.contains(&Value::from("BASE_MARKER=2")), "{env:?}");
    assert!(
        env.contains(&Value::from("PATH=/usr/local/bin:/bin")),
        "{env:?}"
    );

    // The same base as an oci-archive gives the very same image.
    let archive = dir.path().join("base.tar");
    if require_tool("skopeo").is_some() {
        run_expect(
            Command::new("skopeo")
                .arg("copy")
                .arg(format!("oci:{}:base", base.layout.display()))
                .arg(format!("oci-archive:{}:base", archive.display())),
            0,
        );
        let from_archive = dir.path().join("from-archive");
        let (archived, _) = image_json(
            dir.path(),
            &[
                "--base",
                &format!("oci-archive:{}:base", archive.display()),
                "-o",
                from_archive.to_str().unwrap(),
                "-t",
                "v1",
            ],
        );
        let first = image_json(
            dir.path(),
            &[
                "--base",
                &base.reference(),
                "-o",
                dir.path().join("again").to_str().unwrap(),
                "-t",
                "v1",
            ],
        )
        .0;
        assert_eq!(archived["digest"], first["digest"]);
    }
}

#[test]
fn essentials_on_a_base_replace_its_files_and_say_so() {
    let (Some(_), Some(_)) = (require_tool("umoci"), require_tool("runc")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(base) = umoci_base(dir.path()) else {
        return;
    };
    let layout = dir.path().join("out");
    let (report, stderr) = image_json(
        dir.path(),
        &[
            "--base",
            &base.reference(),
            "--essential",
            "passwd,tmp",
            "-o",
            layout.to_str().unwrap(),
            "-t",
            "v1",
        ],
    );
    assert!(
        stderr.contains("the essentials replace the base's /etc/group, /etc/passwd"),
        "{stderr}"
    );
    let contents: Vec<&str> = report["images"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["contents"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["base", "essentials", "binary"]);
    let seen = unpack_and_report(&layout, "v1", &dir.path().join("bundle"));
    assert_eq!(
        seen["passwd"], "root,nobody,nonroot",
        "airlock's layer wins"
    );
}

#[test]
fn a_base_pulled_from_the_registry_is_cached_and_builds_offline_with_the_same_digest() {
    let (Some(_), Some(_)) = (require_tool("umoci"), require_tool("runc")) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(base) = umoci_base(dir.path()) else {
        return;
    };
    let Some(mut registry) = Registry::start(true) else {
        return;
    };
    let name = format!("{}/bases/static:v1", registry.addr());
    run_expect(
        push_cmd(dir.path())
            .env("AIRLOCK_REGISTRY_USERNAME", USER)
            .env("AIRLOCK_REGISTRY_PASSWORD", PASSWORD)
            .args(["-q", &base.reference(), &name]),
        0,
    );
    let cache = dir.path().join("cache");
    let build = |out: &str, reference: &str, code: i32, creds: bool| {
        let mut cmd = image_cmd(dir.path());
        if creds {
            cmd.env("AIRLOCK_REGISTRY_USERNAME", USER)
                .env("AIRLOCK_REGISTRY_PASSWORD", PASSWORD);
        }
        let (stdout, stderr) = run_expect(
            cmd.args(["--format", "json", "--binary"])
                .arg(x86_64_hello())
                .args(["--base", reference, "--base-cache"])
                .arg(&cache)
                .args(["-t", "v1", "-o"])
                .arg(dir.path().join(out)),
            code,
        );
        let report: Value = serde_json::from_str(&stdout).unwrap_or(Value::Null);
        (report, stderr)
    };
    let tagged = format!("docker://{name}");

    // The registry wants credentials: without them, the pull says how to give them.
    let (_, stderr) = build("denied", &tagged, 2, false);
    assert!(
        stderr.contains("requires authentication to pull from bases/static")
            && stderr.contains("AIRLOCK_REGISTRY_USERNAME"),
        "{stderr}"
    );
    assert!(!dir.path().join("denied").exists());

    let (first, stderr) = build("online", &tagged, 0, true);
    assert_eq!(first["base"]["digest"], base.digest.to_string());
    assert_eq!(first["base"]["name"], name);
    assert_eq!(first["base"]["offline"], false);
    assert!(
        stderr.contains(&format!("Pulling {}", base.layer)),
        "{stderr}"
    );
    let (manifest, _) = manifest_and_config(&dir.path().join("online"), &first, 0);
    assert_eq!(
        manifest["annotations"]["org.opencontainers.image.base.name"],
        name
    );
    // The cache is a layout: the tag recorded with the digest it resolved to.
    let cached: Value =
        serde_json::from_slice(&std::fs::read(cache.join("index.json")).unwrap()).unwrap();
    assert_eq!(cached["manifests"][0]["digest"], base.digest.to_string());
    assert_eq!(
        cached["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
        name
    );
    let cached_layer = cache.join("blobs/sha256").join(base.layer.hex());
    assert_eq!(
        std::fs::read(&cached_layer).unwrap(),
        blob(&base.layout, &base.layer.to_string())
    );
    let seen = unpack_and_report(&dir.path().join("online"), "v1", &dir.path().join("bundle"));
    assert_eq!(seen["passwd"], "root,nonroot");
    assert_eq!(
        base_shell_sees(&dir.path().join("bundle")).lines().next(),
        Some(BASE_RELEASE)
    );

    // Online again: the tag is resolved anew, but no blob is pulled twice.
    let (again, stderr) = build("again", &tagged, 0, true);
    assert_eq!(again["digest"], first["digest"]);
    assert!(!stderr.contains("Pulling sha256:"), "{stderr}");

    // The registry stopped: the tag builds from the cache, to the same digest, and says so.
    registry.kill();
    let (offline, stderr) = build("offline", &tagged, 0, true);
    assert_eq!(offline["digest"], first["digest"]);
    assert_eq!(offline["base"]["offline"], true);
    assert!(
        stderr.contains(&format!("building on the cached {}", base.digest)),
        "{stderr}"
    );
    // Pinned by digest and in the cache: no registry is asked at all.
    let pinned = format!("docker://{}/bases/static@{}", registry.addr(), base.digest);
    let (report, stderr) = build("pinned", &pinned, 0, false);
    assert_eq!(report["base"]["digest"], base.digest.to_string());
    assert_eq!(report["base"]["offline"], false);
    assert!(!stderr.contains("cannot reach"), "{stderr}");
    // A tag the cache never saw cannot be built offline (exit 3, the environment).
    let (_, stderr) = build(
        "unknown",
        &format!("docker://{}/bases/other:v1", registry.addr()),
        3,
        true,
    );
    assert!(stderr.contains("holds no copy of it"), "{stderr}");

    // A cached blob that changed is named, with the way out (exit 1), and nothing is written.
    let mut bytes = std::fs::read(&cached_layer).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&cached_layer, &bytes).unwrap();
    let (_, stderr) = build("corrupt", &pinned, 1, false);
    assert!(
        stderr.contains(&cached_layer.display().to_string())
            && stderr.contains("sha256 differs")
            && stderr.contains("remove the blob named above"),
        "{stderr}"
    );
    assert!(!dir.path().join("corrupt").exists());
    // Online, the pull finds it altered and pulls it anew.
    registry.restart();
    let (healed, stderr) = build("healed", &tagged, 0, true);
    assert_eq!(healed["digest"], first["digest"]);
    assert!(
        stderr.contains(&format!("Pulling {}", base.layer)),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&cached_layer).unwrap(),
        blob(&base.layout, &base.layer.to_string())
    );
    // A cached manifest that changed is named the same way, pinned or offline.
    registry.kill();
    let cached_manifest = cache.join("blobs/sha256").join(base.digest.hex());
    let mut bytes = std::fs::read(&cached_manifest).unwrap();
    bytes[0] = b' ';
    std::fs::write(&cached_manifest, &bytes).unwrap();
    for reference in [&pinned, &tagged] {
        let (_, stderr) = build("corrupt", reference, 1, true);
        assert!(
            stderr.contains(&cached_manifest.display().to_string())
                && stderr.contains("remove the blob named above"),
            "{reference}: {stderr}"
        );
    }

    // `report` counts the base's layers and the image's own apart.
    let out = run_json(
        airlock()
            .args(["report", "--format", "json"])
            .arg(format!("oci:{}:v1", dir.path().join("online").display())),
    );
    let split = &out["platforms"][0]["base"];
    assert_eq!(split["name"], name);
    assert_eq!(split["digest"], base.digest.to_string());
    assert_eq!(
        (split["base_layers"].as_u64(), split["own_layers"].as_u64()),
        (Some(1), Some(1))
    );
    let layers = out["platforms"][0]["layers"].as_array().unwrap();
    assert_eq!(split["base_compressed"], layers[0]["compressed"]);
    assert_eq!(split["own_compressed"], layers[1]["compressed"]);
    assert_eq!(
        (
            layers[0]["from_base"].as_bool(),
            layers[1]["from_base"].as_bool()
        ),
        (Some(true), Some(false))
    );
    // On reference bases, the image is compared by its own layers: the base is what is swapped.
    let scratch = dir.path().join("scratch");
    run_expect(
        image_cmd(dir.path())
            .arg("--binary")
            .arg(x86_64_hello())
            .args(["-t", "v1", "-o"])
            .arg(&scratch),
        0,
    );
    let alone = run_json(
        airlock()
            .args(["report", "--format", "json"])
            .arg(format!("oci:{}:v1", scratch.display())),
    );
    let reference_row = |report: &Value| {
        report["platforms"][0]["comparisons"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["kind"] == "reference-base")
            .unwrap()
            .clone()
    };
    let size = |v: &Value| v.as_u64().unwrap();
    let figure =
        size(&reference_row(&alone)["compressed"]) - size(&alone["platforms"][0]["compressed"]);
    let row = reference_row(&out);
    assert!(
        row["label"].as_str().unwrap().starts_with("own layers on "),
        "{row}"
    );
    let platform = &out["platforms"][0];
    assert_eq!(
        size(&row["compressed"]),
        figure
            + size(&platform["manifest_size"])
            + size(&platform["config_size"])
            + size(&split["own_compressed"])
    );
    let (human, _) = run_expect(
        airlock()
            .arg("report")
            .arg(format!("oci:{}:v1", dir.path().join("online").display())),
        0,
    );
    assert!(human.contains(&format!("base {name} sha256:")), "{human}");
    assert!(
        human.contains("1 layer,") && human.contains("own: 1 layer"),
        "{human}"
    );
}

#[test]
fn a_docker_v2_base_keeps_its_layer_bytes_under_oci_media_types_and_runs() {
    let (Some(_), Some(_), Some(_)) = (
        require_tool("umoci"),
        require_tool("runc"),
        require_tool("skopeo"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(base) = umoci_base(dir.path()) else {
        return;
    };
    let Some(registry) = Registry::start(false) else {
        return;
    };
    let name = format!("{}/bases/docker:v1", registry.addr());
    run_expect(
        Command::new("skopeo")
            .args(["copy", "--format", "v2s2", "--dest-tls-verify=false"])
            .arg(base.reference())
            .arg(format!("docker://{name}")),
        0,
    );
    let docker: Value = serde_json::from_slice(&skopeo_inspect(&name, true, None)).unwrap();
    assert_eq!(
        docker["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    let layout = dir.path().join("out");
    let (report, _) = image_json(
        dir.path(),
        &[
            "--base",
            &format!("docker://{name}"),
            "--base-cache",
            dir.path().join("cache").to_str().unwrap(),
            "-o",
            layout.to_str().unwrap(),
            "-t",
            "v1",
        ],
    );
    let layer = &report["images"][0]["layers"][0];
    assert_eq!(layer["digest"], docker["layers"][0]["digest"]);
    assert_eq!(layer["size"], docker["layers"][0]["size"]);
    assert_eq!(
        layer["media_type"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let (manifest, _) = manifest_and_config(&layout, &report, 0);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        blob(&layout, layer["digest"].as_str().unwrap()),
        blob(&base.layout, &base.layer.to_string()),
        "the same bytes as the base's layer"
    );
    let bundle = dir.path().join("bundle");
    let seen = unpack_and_report(&layout, "v1", &bundle);
    assert_eq!(seen["uid"], "65532");
    assert_eq!(base_shell_sees(&bundle).lines().next(), Some(BASE_RELEASE));
}

/// A two-platform base: amd64 and arm64 (`v8`), each with a layer of its own.
fn two_platform_base(dir: &Path) -> (PathBuf, String, [String; 2]) {
    let path = dir.join("multi");
    let writer = airlock::oci::layout::LayoutWriter::create(&path).unwrap();
    let amd64 = raw_layer(&[("etc/base-arch", tar::EntryType::Regular, None, b"amd64\n")]);
    let arm64 = raw_layer(&[("etc/base-arch", tar::EntryType::Regular, None, b"arm64\n")]);
    let children = vec![
        manifest_for(&writer, oci_spec::image::Arch::Amd64, None, &[amd64]),
        manifest_for(&writer, oci_spec::image::Arch::ARM64, Some("v8"), &[arm64]),
    ];
    let digests = [
        children[0].digest().to_string(),
        children[1].digest().to_string(),
    ];
    let index = finish_layout(writer, "multi", children);
    (path, index.to_string(), digests)
}

#[test]
fn a_multi_platform_base_gives_each_target_its_own_platform() {
    let dir = tempfile::tempdir().unwrap();
    let (base, index, children) = two_platform_base(dir.path());
    let layout = dir.path().join("out");
    let (stdout, _) = run_expect(
        image_cmd(dir.path())
            .args(["--format", "json", "--binary"])
            .arg(x86_64_hello())
            .arg("--binary")
            .arg(aarch64_hello())
            .arg("--base")
            .arg(format!("oci:{}:multi", base.display()))
            .arg("-o")
            .arg(&layout),
        0,
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["base"]["digest"], index);
    for (n, platform) in ["linux/amd64", "linux/arm64/v8"].iter().enumerate() {
        let image = &report["images"][n];
        assert_eq!(image["platform"], *platform);
        assert_eq!(image["base_manifest"], children[n]);
        let base_manifest = json_blob(&base, &children[n]);
        assert_eq!(
            image["layers"][0]["digest"],
            base_manifest["layers"][0]["digest"]
        );
        let (manifest, _) = manifest_and_config(&layout, &report, n);
        assert_eq!(
            manifest["annotations"]["org.opencontainers.image.base.digest"], index,
            "the digest of what the base reference names: its index"
        );
    }
}

#[test]
fn a_base_without_the_platform_or_of_another_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    // Only amd64 in the index.
    let path = dir.path().join("amd64-only");
    let writer = airlock::oci::layout::LayoutWriter::create(&path).unwrap();
    let layer = raw_layer(&[("etc/x", tar::EntryType::Regular, None, b"x")]);
    let amd64 = manifest_for(&writer, oci_spec::image::Arch::Amd64, None, &[layer]);
    let only_child = amd64.clone();
    let writer_index = {
        let index = oci_spec::image::ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(oci_spec::image::MediaType::ImageIndex)
            .manifests(vec![only_child])
            .build()
            .unwrap();
        writer
            .put_json(oci_spec::image::MediaType::ImageIndex, &index)
            .unwrap()
            .0
    };
    let top = oci_spec::image::ImageIndexBuilder::default()
        .schema_version(2u32)
        .manifests(vec![
            airlock::oci::layout::with_ref_name(writer_index, "index"),
            airlock::oci::layout::with_ref_name(amd64, "single"),
        ])
        .build()
        .unwrap();
    writer.finish(&top).unwrap();
    let out = dir.path().join("out");
    for (tag, says) in [
        (
            "index",
            "has no image for linux/arm64/v8 (it has: linux/amd64)",
        ),
        ("single", "is for linux/amd64, not linux/arm64/v8"),
    ] {
        let (_, stderr) = run_expect(
            image_cmd(dir.path())
                .arg("--binary")
                .arg(aarch64_hello())
                .arg("--base")
                .arg(format!("oci:{}:{tag}", path.display()))
                .arg("-o")
                .arg(&out),
            2,
        );
        assert!(stderr.contains(says), "{tag}: {stderr}");
        assert!(!out.exists());
    }
    for (reference, says) in [
        ("debian:bookworm", "is not a base image reference"),
        ("oci:/nonexistent/layout", "is not an OCI image layout"),
        ("docker://debian:bookworm", "names no registry"),
    ] {
        let (_, stderr) = run_expect(
            image_cmd(dir.path())
                .arg("--binary")
                .arg(x86_64_hello())
                .args(["--base", reference, "-o"])
                .arg(&out),
            2,
        );
        assert!(stderr.contains(says), "{reference}: {stderr}");
    }
}

/// A base (tag `base`) whose one layer is `layer`: its blob, and the diff ID its config names.
fn hostile_base(dir: &Path, name: &str, layer: (Vec<u8>, airlock::Sha256Digest)) -> PathBuf {
    let path = dir.join(name);
    let writer = airlock::oci::layout::LayoutWriter::create(&path).unwrap();
    let manifest = manifest_for(&writer, oci_spec::image::Arch::Amd64, None, &[layer]);
    finish_layout(writer, "base", vec![manifest]);
    path
}

#[test]
fn hostile_bases_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let existing = work.join("out");
    run_expect(
        image_cmd(&work)
            .arg("--binary")
            .arg(x86_64_hello())
            .args(["-t", "kept", "-o"])
            .arg(&existing),
        0,
    );
    let before = std::fs::read(existing.join("index.json")).unwrap();
    let escaping = raw_layer(&[
        ("etc/ok", tar::EntryType::Regular, None, b"ok"),
        ("../../evil", tar::EntryType::Regular, None, b"evil"),
    ]);
    let escaping_digest = airlock::Sha256Digest::of(&escaping.0);
    let hard_link = raw_layer(&[(
        "etc/shadow-copy",
        tar::EntryType::Link,
        Some("../../../etc/shadow"),
        b"",
    )]);
    let good = raw_layer(&[("etc/ok", tar::EntryType::Regular, None, b"ok")]);
    let wrong_diff_id = (good.0.clone(), airlock::Sha256Digest::of(b"another tar"));
    let cases = [
        (
            hostile_base(dir.path(), "escaping", escaping),
            1,
            vec![
                format!("layer {escaping_digest}"),
                "leaves the root".to_owned(),
                "../../evil".to_owned(),
            ],
        ),
        (
            hostile_base(dir.path(), "hard-link", hard_link),
            1,
            vec!["hard link target leaves the root".to_owned()],
        ),
        (
            hostile_base(dir.path(), "diff-id", wrong_diff_id),
            1,
            vec!["but the config's diff_id is".to_owned()],
        ),
    ];
    for (base, code, says) in &cases {
        let (_, stderr) = run_expect(
            image_cmd(&work)
                .arg("--binary")
                .arg(x86_64_hello())
                .arg("--base")
                .arg(format!("oci:{}:base", base.display()))
                .args(["-t", "new", "-o"])
                .arg(&existing),
            *code,
        );
        for text in says {
            assert!(
                stderr.contains(text.as_str()),
                "{}: {text}\n{stderr}",
                base.display()
            );
        }
        assert_eq!(std::fs::read(existing.join("index.json")).unwrap(), before);
    }
    // Nothing of the base is ever extracted: no `evil` above any directory of the test.
    for place in [dir.path(), &work, dir.path().parent().unwrap()] {
        assert!(!place.join("evil").exists(), "{}", place.display());
    }

    // A layer blob altered in the base's layout: named, exit 1.
    let altered = hostile_base(dir.path(), "altered", good);
    let manifest_digest = {
        let index: Value =
            serde_json::from_slice(&std::fs::read(altered.join("index.json")).unwrap()).unwrap();
        index["manifests"][0]["digest"].as_str().unwrap().to_owned()
    };
    let layer_digest = json_blob(&altered, &manifest_digest)["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let layer_path = altered
        .join("blobs/sha256")
        .join(layer_digest.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&layer_path).unwrap();
    bytes[20] ^= 1;
    std::fs::write(&layer_path, bytes).unwrap();
    let (_, stderr) = run_expect(
        image_cmd(&work)
            .arg("--binary")
            .arg(x86_64_hello())
            .arg("--base")
            .arg(format!("oci:{}:base", altered.display()))
            .args(["-t", "new", "-o"])
            .arg(&existing),
        1,
    );
    assert!(
        stderr.contains(&layer_path.display().to_string()) && stderr.contains("sha256 differs"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(existing.join("index.json")).unwrap(), before);
}

#[test]
fn an_archive_base_with_an_entry_outside_the_layout_is_refused_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("base.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&archive).unwrap());
    for (path, bytes) in [
        ("oci-layout", &br#"{"imageLayoutVersion":"1.0.0"}"#[..]),
        ("../outside", b"x"),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        let name = header.as_old_mut().name.as_mut();
        name[..path.len()].copy_from_slice(path.as_bytes());
        header.set_cksum();
        builder.append(&header, bytes).unwrap();
    }
    builder.finish().unwrap();
    let (_, stderr) = run_expect(
        image_cmd(dir.path())
            .arg("--binary")
            .arg(x86_64_hello())
            .arg("--base")
            .arg(format!("oci-archive:{}", archive.display()))
            .arg("-o")
            .arg(dir.path().join("out")),
        2,
    );
    assert!(stderr.contains("entry `../outside`"), "{stderr}");
    assert!(!dir.path().join("outside").exists());
}

#[test]
fn a_pull_keeps_nothing_the_registry_sends_unchecked_and_retries_a_cut_blob() {
    let (Some(_), Some(registry)) = (require_tool("umoci"), Registry::start(false)) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let Some(base) = umoci_base(dir.path()) else {
        return;
    };
    run_expect(
        push_cmd(dir.path()).args([
            "-q",
            &base.reference(),
            &format!("{}/bases/static:v1", registry.addr()),
        ]),
        0,
    );
    let proxy = Proxy::start(registry.port);
    let reference = format!("docker://{}/bases/static:v1", proxy.addr());
    let cache = dir.path().join("cache");
    let build = |code: i32| {
        run_expect(
            image_cmd(dir.path())
                .arg("--binary")
                .arg(x86_64_hello())
                .args(["--base", &reference, "--base-cache"])
                .arg(&cache)
                .arg("-o")
                .arg(dir.path().join("out")),
            code,
        )
    };
    let layer_path = format!("/v2/bases/static/blobs/{}", base.layer);
    let cached_layer = cache.join("blobs/sha256").join(base.layer.hex());

    // A manifest whose Docker-Content-Digest is another: refused, nothing recorded.
    proxy.rule(
        Some(1),
        |s| s.method == "GET" && s.path.ends_with("/manifests/v1"),
        Action::LieAboutDigest,
    );
    let (_, stderr) = build(1);
    assert!(
        stderr.contains("as Docker-Content-Digest says; nothing was kept"),
        "{stderr}"
    );
    let index = std::fs::read_to_string(cache.join("index.json")).unwrap();
    assert!(!index.contains("bases/static"), "{index}");
    assert!(!cache.join("blobs/sha256").join(base.digest.hex()).exists());

    // A layer that arrives short: refused (exit 1) and never in the cache.
    let wanted = layer_path.clone();
    proxy.rule(
        Some(1),
        move |s| s.method == "GET" && s.path == wanted,
        Action::Respond(200, Vec::new()),
    );
    let (_, stderr) = build(1);
    assert!(
        stderr.contains(&format!("blob {} arrived as 0 bytes", base.layer))
            && stderr.contains("it was not kept"),
        "{stderr}"
    );
    assert!(!cached_layer.exists());
    assert!(!dir.path().join("out").exists());

    // A layer whose connection drops: pulled again, and kept once it is whole.
    let wanted = layer_path.clone();
    proxy.rule(
        Some(1),
        move |s| s.method == "GET" && s.path == wanted,
        Action::Reset(0),
    );
    build(0);
    let layer_gets: Vec<u16> = proxy
        .log()
        .into_iter()
        .filter(|(method, path, _)| method == "GET" && *path == layer_path)
        .map(|(_, _, status)| status)
        .collect();
    assert_eq!(layer_gets, [200, 0, 200], "short, dropped, whole");
    assert_eq!(
        std::fs::read(&cached_layer).unwrap(),
        blob(&base.layout, &base.layer.to_string())
    );
}

#[test]
fn a_zstd_base_layer_is_kept_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zstd");
    let writer = airlock::oci::layout::LayoutWriter::create(&path).unwrap();
    let mut tar = airlock::tarball::TarBuilder::new();
    tar.file("etc/base-release", b"zstd base\n".to_vec(), 0o644);
    let tar = tar.to_bytes(0).unwrap();
    let compressed = zstd::encode_all(tar.as_slice(), 3).unwrap();
    let layer = writer
        .put_blob(oci_spec::image::MediaType::ImageLayerZstd, &compressed)
        .unwrap();
    let diff_id = airlock::Sha256Digest::of(&tar);
    let config = oci_spec::image::ImageConfigurationBuilder::default()
        .architecture(oci_spec::image::Arch::Amd64)
        .os(oci_spec::image::Os::Linux)
        .rootfs(
            oci_spec::image::RootFsBuilder::default()
                .typ("layers")
                .diff_ids(vec![diff_id.to_string()])
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let (config, _) = writer
        .put_json(oci_spec::image::MediaType::ImageConfig, &config)
        .unwrap();
    let manifest = oci_spec::image::ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(oci_spec::image::MediaType::ImageManifest)
        .config(config)
        .layers(vec![layer.clone()])
        .build()
        .unwrap();
    let (manifest, _) = writer
        .put_json(oci_spec::image::MediaType::ImageManifest, &manifest)
        .unwrap();
    finish_layout(writer, "base", vec![manifest]);
    let out = dir.path().join("out");
    let (report, _) = image_json(
        dir.path(),
        &[
            "--base",
            &format!("oci:{}:base", path.display()),
            "-o",
            out.to_str().unwrap(),
        ],
    );
    let first = &report["images"][0]["layers"][0];
    assert_eq!(
        first["media_type"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(first["digest"], layer.digest().to_string());
    assert_eq!(first["diff_id"], diff_id.to_string());
    assert_eq!(blob(&out, first["digest"].as_str().unwrap()), compressed);
}
