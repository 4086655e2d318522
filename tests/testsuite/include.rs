//! `image --include SRC:DEST[:MODE]` and the `files` table: extra files in a deterministic
//! layer of their own, read back from the blob, run by runc; escapes and collisions refused.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::image::{report_map, x86_64_hello};
use crate::support::*;

fn image_cmd(dir: &Path) -> Command {
    let mut cmd = airlock();
    cmd.current_dir(dir)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .args(["image", "--format", "json", "--binary"])
        .arg(x86_64_hello());
    cmd
}

/// A tree to include: `static/` with a nested file and an executable, and `app.toml`.
fn sources(dir: &Path) -> PathBuf {
    let root = dir.join("src");
    std::fs::create_dir_all(root.join("static/css")).unwrap();
    std::fs::write(root.join("static/css/site.css"), "body {}\n").unwrap();
    std::fs::write(root.join("static/index.html"), "<p>hi</p>\n").unwrap();
    std::fs::write(root.join("static/run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(
        root.join("static/run.sh"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::write(root.join("app.toml"), "port = 8080\n").unwrap();
    root
}

/// Every entry of a gzip'd layer blob: path → (mode, uid, gid, mtime, bytes).
type Entries = BTreeMap<String, (u32, u64, u64, u64, Vec<u8>)>;

fn layer_entries(layout: &Path, digest: &str) -> Entries {
    let bytes = std::fs::read(
        layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:")),
    )
    .unwrap();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()));
    let mut entries = BTreeMap::new();
    let mut order = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let header = entry.header().clone();
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).unwrap();
        order.push(path.clone());
        entries.insert(
            path,
            (
                header.mode().unwrap(),
                header.uid().unwrap(),
                header.gid().unwrap(),
                header.mtime().unwrap(),
                contents,
            ),
        );
    }
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted, "entries are written sorted");
    entries
}

#[test]
fn included_files_go_in_a_deterministic_layer_of_their_own_and_run() {
    let dir = tempfile::tempdir().unwrap();
    let src = sources(dir.path());
    let layout = dir.path().join("out");
    let includes = [
        format!("{}:/srv/static", src.join("static").display()),
        format!("{}:/etc/app/app.toml:0600", src.join("app.toml").display()),
    ];
    let report = run_json(
        image_cmd(dir.path())
            .args([
                "--include",
                &includes[0],
                "--include",
                &includes[1],
                "-t",
                "v1",
                "-o",
            ])
            .arg(&layout),
    );
    let layers = report["images"][0]["layers"].as_array().unwrap();
    let contents: Vec<&str> = layers
        .iter()
        .map(|l| l["contents"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["files", "binary"]);
    assert_eq!(report["files"]["files"], 4);
    let entries = layer_entries(&layout, layers[0]["digest"].as_str().unwrap());
    let mode_of = |path: &str| entries[path].0;
    assert_eq!(mode_of("etc/app/app.toml"), 0o600);
    assert_eq!(entries["etc/app/app.toml"].4, b"port = 8080\n");
    assert_eq!(
        mode_of("srv/static/run.sh"),
        0o755,
        "executable by its owner"
    );
    assert_eq!(mode_of("srv/static/index.html"), 0o644);
    assert_eq!(mode_of("srv/static/css/"), 0o755);
    assert!(
        entries
            .values()
            .all(|(_, uid, gid, mtime, _)| (*uid, *gid, *mtime) == (0, 0, 1_700_000_000)),
        "{entries:?}"
    );
    assert_eq!(
        entries.keys().filter(|p| !p.ends_with('/')).count(),
        4,
        "{entries:?}"
    );

    // The same sources with other times and another umask give the same layer.
    for file in ["static/index.html", "app.toml"] {
        let path = src.join(file);
        let text = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&path, text).unwrap();
    }
    std::fs::set_permissions(
        src.join("static/css"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let again = run_json(
        image_cmd(dir.path())
            .args(["--include", &includes[1], "--include", &includes[0], "-o"])
            .arg(dir.path().join("again")),
    );
    assert_eq!(
        again["images"][0]["layers"][0]["digest"],
        layers[0]["digest"]
    );

    if let (Some(_), Some(_)) = (require_tool("umoci"), require_tool("runc")) {
        let bundle = dir.path().join("bundle");
        umoci_unpack(&layout, "v1", &bundle);
        let seen = report_map(&runc_run(&bundle, &["--report"]));
        assert_eq!(seen["root_entries"], "dev,etc,proc,srv,sys,usr", "{seen:?}");
    }
}

#[test]
fn the_files_table_in_cargo_toml_is_read_relative_to_it() {
    let (_guard, project) = copy_fixture("hello");
    sources(&project);
    let manifest = project.join("Cargo.toml");
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str(
        "\n[package.metadata.airlock.image.files]\n\"/srv/static\" = \"src/static\"\n\
         \"/etc/app/app.toml\" = { src = \"src/app.toml\", mode = \"0640\" }\n",
    );
    std::fs::write(&manifest, text).unwrap();
    let layout = project.join("out");
    let report = run_json(
        image_cmd(&project)
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("-o")
            .arg(&layout),
    );
    let layer = &report["images"][0]["layers"][0];
    assert_eq!(layer["contents"], "files");
    let entries = layer_entries(&layout, layer["digest"].as_str().unwrap());
    assert_eq!(entries["etc/app/app.toml"].0, 0o640);
    assert!(entries.contains_key("srv/static/css/site.css"));

    // An unknown key in a file's table is named.
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text = text.replace("mode = \"0640\"", "mod = \"0640\"");
    std::fs::write(&manifest, text).unwrap();
    let (_, stderr) = run_expect(
        image_cmd(&project)
            .arg("--manifest-path")
            .arg(&manifest)
            .arg("-o")
            .arg(&layout),
        2,
    );
    assert!(
        stderr.contains("package.metadata.airlock.image") && stderr.contains("mod"),
        "{stderr}"
    );
}

#[test]
fn includes_that_escape_or_collide_are_refused_and_the_layout_kept() {
    let dir = tempfile::tempdir().unwrap();
    let src = sources(dir.path());
    let layout = dir.path().join("out");
    run_json(
        image_cmd(dir.path())
            .args(["-t", "kept", "-o"])
            .arg(&layout),
    );
    let before = std::fs::read(layout.join("index.json")).unwrap();
    let file = src.join("app.toml");
    let file = file.to_str().unwrap();
    let linked = dir.path().join("linked");
    std::fs::create_dir_all(&linked).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", linked.join("shadow")).unwrap();
    let piped = dir.path().join("piped");
    std::fs::create_dir_all(&piped).unwrap();
    let made = Command::new("mkfifo")
        .arg(piped.join("fifo"))
        .status()
        .unwrap();
    assert!(made.success());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![format!("{file}:/usr/local/bin/hello")],
            "collides with the binary: both write that path",
        ),
        (
            vec![format!("{file}:/usr/local/bin")],
            "it needs /usr/local/bin to be a directory",
        ),
        (
            vec![format!("{file}:/usr/local/bin/hello/x")],
            "/usr/local/bin/hello is a file there",
        ),
        (
            vec![format!("{file}:/../etc/x")],
            "leaves the root with `..`",
        ),
        (vec![format!("{file}:/")], "is the root itself"),
        (vec![format!("{file}:etc/x")], "is not SRC:DEST[:MODE]"),
        (vec![format!("{file}:/etc/x:0999")], "is not a file mode"),
        (
            vec![format!("{file}:/etc/x"), format!("{file}:/etc/x")],
            "--include names /etc/x twice",
        ),
        (
            vec![
                format!("{}:/etc", src.join("static").display()),
                format!("{file}:/etc/css"),
            ],
            "collides with the include",
        ),
        (
            vec![
                format!("{file}:/etc/passwd"),
                "--essential=passwd".to_owned(),
            ],
            "collides with the essential passwd",
        ),
        (
            vec![format!("{}:/srv", linked.display())],
            "is a symbolic link (it could lead out of the tree)",
        ),
        (
            vec![format!("{}:/srv", piped.display())],
            "is not a regular file or directory",
        ),
        (
            vec![format!("{}:/srv", dir.path().join("missing").display())],
            "name an existing file or directory",
        ),
    ];
    for (includes, says) in cases {
        let mut cmd = image_cmd(dir.path());
        for include in &includes {
            if include.starts_with("--") {
                cmd.arg(include);
            } else {
                cmd.args(["--include", include]);
            }
        }
        let (_, stderr) = run_bounded(cmd.args(["-t", "new", "-o"]).arg(&layout), 2);
        assert!(
            stderr.contains(says),
            "{includes:?}: expected `{says}` in\n{stderr}"
        );
        assert_eq!(std::fs::read(layout.join("index.json")).unwrap(), before);
    }
}
