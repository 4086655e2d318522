//! `cargo airlock inspect` on real binaries.

use crate::support::*;

#[test]
fn host_binary_is_dynamic_with_needed_libraries() {
    let out = airlock()
        .args(["inspect", "--format", "json"])
        .arg(airlock_bin())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let file = &report["files"][0];
    assert_eq!(file["linkage"], "dynamic");
    assert!(
        file["needed"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().starts_with("libc.so"))
    );
    assert!(
        report["problems"][0]
            .as_str()
            .unwrap()
            .contains("dynamically linked")
    );
}

#[test]
fn allow_dynamic_only_reports() {
    let out = airlock()
        .args(["inspect", "--allow-dynamic"])
        .arg(airlock_bin())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("dynamic"));
}

#[test]
fn non_elf_empty_and_truncated_files_are_input_errors() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let script = dir.path().join("script.sh");
    std::fs::write(&script, b"#!/bin/sh\necho hi\n").unwrap();
    let truncated = dir.path().join("truncated");
    std::fs::write(&truncated, &std::fs::read(airlock_bin()).unwrap()[..200]).unwrap();
    for (file, says) in [
        (&empty, "is empty"),
        (&script, "a script"),
        (&truncated, "truncated or corrupt"),
    ] {
        let out = airlock().arg("inspect").arg(file).output().unwrap();
        assert_eq!(out.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(says) && stderr.contains(&*file.to_string_lossy()),
            "{stderr}"
        );
    }
}
