//! `image --load podman|docker`: into podman with `podman load` (vfs storage made by the test),
//! and into "Docker" through the Engine API on a unix socket, served here by `podman system
//! service`; podman then finds the image, with airlock's config digest as its id.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::image::{aarch64_hello, x86_64_hello};
use crate::support::*;

fn load_cmd(dir: &Path, podman: &Podman) -> Command {
    let mut cmd = airlock();
    cmd.current_dir(dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .env("CONTAINERS_STORAGE_CONF", &podman.storage_conf)
        .env_remove("DOCKER_HOST")
        .args(["image", "--format", "json", "--binary"])
        .arg(x86_64_hello());
    cmd
}

/// `podman image inspect NAME`'s id, or None when podman does not have it.
fn podman_image_id(podman: &Podman, name: &str) -> Option<String> {
    let out = podman
        .cmd()
        .args(["image", "inspect", "--format", "{{.Id}}", name])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn config_hex(report: &Value, n: usize) -> String {
    report["images"][n]["config"]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned()
}

#[test]
fn load_podman_puts_the_image_in_podmans_storage() {
    let dir = tempfile::tempdir().unwrap();
    let Some(podman) = Podman::new(dir.path()) else {
        return;
    };
    let report = run_json(
        load_cmd(dir.path(), &podman)
            .args([
                "--load",
                "podman",
                "--repository",
                "airlock-load",
                "-t",
                "v1",
                "-o",
            ])
            .arg(dir.path().join("out")),
    );
    assert_eq!(report["load"]["runtime"], "podman");
    assert_eq!(report["load"]["platform"], "linux/amd64");
    assert_eq!(report["load"]["loaded"][0], "localhost/airlock-load:v1");
    assert_eq!(
        podman_image_id(&podman, "localhost/airlock-load:v1"),
        Some(config_hex(&report, 0)),
        "the image podman holds is airlock's (its id is the config digest)"
    );
    assert!(dir.path().join("out/index.json").exists());
    let leftovers: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(
        leftovers.is_empty(),
        "the load archive is removed: {leftovers:?}"
    );
}

#[test]
fn load_docker_talks_to_the_engine_api_on_docker_host() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut podman) = Podman::new(dir.path()) else {
        return;
    };
    let socket = podman.serve(dir.path());
    let docker_host = format!("unix://{}", socket.display());
    // Two platforms: the engine gets this machine's.
    let report = run_json(
        load_cmd(dir.path(), &podman)
            .env("DOCKER_HOST", &docker_host)
            .arg("--binary")
            .arg(aarch64_hello())
            .args([
                "--load",
                "docker",
                "--repository",
                "airlock-docker",
                "-t",
                "v2",
                "-o",
            ])
            .arg(dir.path().join("out")),
    );
    assert_eq!(report["load"]["runtime"], "docker");
    assert_eq!(report["load"]["via"], docker_host);
    assert_eq!(report["load"]["platform"], "linux/amd64");
    let loaded = report["load"]["loaded"][0].as_str().unwrap();
    assert!(loaded.ends_with("airlock-docker:v2"), "{loaded}");
    let amd64 = report["images"]
        .as_array()
        .unwrap()
        .iter()
        .position(|i| i["platform"] == "linux/amd64")
        .unwrap();
    assert_eq!(
        podman_image_id(&podman, loaded),
        Some(config_hex(&report, amd64)),
        "podman image inspect finds what the Engine API loaded"
    );
}

#[test]
fn load_failures_name_the_engine_and_exit_3() {
    let dir = tempfile::tempdir().unwrap();
    let Some(podman) = Podman::new(dir.path()) else {
        return;
    };
    let missing = dir.path().join("no-such.sock");
    for (host, says) in [
        (
            format!("unix://{}", missing.display()),
            "no Docker engine answers at",
        ),
        ("tcp://127.0.0.1:2375".to_owned(), "unix socket only"),
    ] {
        let (_, stderr) = run_expect(
            load_cmd(dir.path(), &podman)
                .env("DOCKER_HOST", &host)
                .args(["--load", "docker", "-o"])
                .arg(dir.path().join("out")),
            3,
        );
        assert!(stderr.contains(says), "{host}: {stderr}");
        assert!(stderr.contains("the image is written to"), "{stderr}");
    }
    // A socket that answers something that is not the Engine API.
    let socket = dir.path().join("wrong.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut head = [0u8; 256];
        let _ = std::io::Read::read(&mut stream, &mut head);
        let body = r#"{"message":"page not found"}"#;
        let _ = std::io::Write::write_all(
            &mut stream,
            format!(
                "HTTP/1.1 404 Not Found\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
    });
    let (_, stderr) = run_expect(
        load_cmd(dir.path(), &podman)
            .env("DOCKER_HOST", format!("unix://{}", socket.display()))
            .args(["--load", "docker", "-o"])
            .arg(dir.path().join("out")),
        3,
    );
    server.join().unwrap();
    assert!(stderr.contains("404 Not Found: page not found"), "{stderr}");
    let (_, stderr) = run_expect(
        load_cmd(dir.path(), &podman)
            .env("PATH", dir.path())
            .args(["--load", "podman", "-o"])
            .arg(dir.path().join("out")),
        3,
    );
    assert!(stderr.contains("`podman` is not installed"), "{stderr}");
}
