//! `cargo airlock doctor`: what this machine has for each target, and exit 3 with install
//! commands when something needed is missing.

use crate::support::path_without_zig;
use crate::support::*;

const ARM: &str = "aarch64-unknown-linux-musl";

fn check<'a>(target: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    target["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no `{name}` check in {target:#}"))
}

#[test]
fn this_machine_is_ready_for_both_musl_targets() {
    for tool in ["musl-gcc", "qemu-aarch64-static"] {
        if require_tool(tool).is_none() {
            return;
        }
    }
    if airlock::compile::toolchain::Zig::find().is_none() {
        skip_or_fail("zig (python3 -m ziglang) is not installed");
        return;
    }
    let report = run_json(airlock().args(["doctor", "--format", "json"]));
    let targets = report["targets"].as_array().unwrap();
    let names: Vec<&str> = targets
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["x86_64-unknown-linux-musl", ARM]);
    for target in targets {
        assert_eq!(target["ready"], true, "{target:#}");
        for name in ["rustup target", "linker", "C compiler", "rust-lld"] {
            assert_eq!(check(target, name)["status"], "ok", "{name}: {target:#}");
        }
    }
    let arm = &targets[1];
    assert!(
        check(arm, "linker")["found"]
            .as_str()
            .unwrap()
            .starts_with("rust-lld")
    );
    assert!(
        check(arm, "C compiler")["found"]
            .as_str()
            .unwrap()
            .starts_with("zig cc")
    );
    assert_eq!(check(arm, "qemu")["status"], "ok");

    let (stdout, _) = run_expect(airlock().arg("doctor"), 0);
    assert!(
        stdout.contains(&format!("{ARM} (cross): ready")),
        "{stdout}"
    );
}

#[test]
fn missing_zig_is_exit_3_with_its_install_command() {
    let (_bin, path) = path_without_zig();
    let mut cmd = airlock();
    cmd.env("PATH", &path).args(["doctor", "--target", ARM]);
    let (stdout, _) = run_expect(&mut cmd, 3);
    assert!(
        stdout.contains(&format!("{ARM} (cross): NOT READY")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "error: {ARM}: C compiler missing; install with `python3 -m pip install ziglang`"
        )),
        "{stdout}"
    );

    let (stdout, _) = run_expect(cmd.args(["--format", "json"]), 3);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let arm = &report["targets"][0];
    assert_eq!(arm["ready"], false);
    let compiler = check(arm, "C compiler");
    assert_eq!(compiler["status"], "missing");
    assert_eq!(compiler["install"], "python3 -m pip install ziglang");
    // qemu only runs binaries: missing, but not needed to build.
    let qemu = check(arm, "qemu");
    assert_eq!(qemu["status"], "optional");
    assert_eq!(qemu["install"], "apt-get install qemu-user-static");
    // The rust toolchain itself is still found through cargo's PATH entry.
    assert_eq!(check(arm, "rustup target")["status"], "ok");
    assert_eq!(check(arm, "linker")["status"], "ok");
}

#[test]
fn uninstalled_and_unknown_targets() {
    let (stdout, _) = run_expect(
        airlock().args(["doctor", "--target", "s390x-unknown-linux-musl"]),
        3,
    );
    assert!(
        stdout.contains(
            "error: s390x-unknown-linux-musl: rustup target missing; install with `rustup target \
             add s390x-unknown-linux-musl`"
        ),
        "{stdout}"
    );
    // Without a prebuilt std and without rust-src, both fixes are named.
    let (_guard, rustc) = rustc_with_bare_sysroot(false);
    let (stdout, _) = run_expect(
        airlock()
            .env("RUSTC", &rustc)
            .args(["doctor", "--format", "json"])
            .args(["--target", "riscv64gc-unknown-linux-musl"]),
        3,
    );
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let std = check(&report["targets"][0], "rustup target");
    assert_eq!(std["status"], "missing");
    assert_eq!(
        std["install"],
        "rustup target add riscv64gc-unknown-linux-musl (or, where rustup has no prebuilt std \
         for it: rustup component add rust-src)"
    );
    let (_, stderr) = run_expect(airlock().args(["doctor", "--target", "nope-nope-nope"]), 2);
    assert!(
        stderr.contains("unknown target triple `nope-nope-nope`"),
        "{stderr}"
    );
}

#[test]
fn every_target_is_ready_and_says_where_its_standard_library_comes_from() {
    if airlock::compile::toolchain::Zig::find().is_none() {
        skip_or_fail("zig (python3 -m ziglang) is not installed");
        return;
    }
    let report = run_json(airlock().args(["doctor", "--format", "json", "--target", "every"]));
    let targets = report["targets"].as_array().unwrap();
    let names: Vec<&str> = targets
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "x86_64-unknown-linux-musl",
            ARM,
            "armv7-unknown-linux-musleabihf",
            "riscv64gc-unknown-linux-musl",
            "powerpc64le-unknown-linux-musl",
            "i686-unknown-linux-musl",
        ]
    );
    let rust = airlock::compile::toolchain::RustToolchain::probe(&std::env::current_dir().unwrap())
        .unwrap();
    for target in targets {
        assert_eq!(target["ready"], true, "{target:#}");
        let triple: airlock::TargetTriple = target["target"].as_str().unwrap().parse().unwrap();
        let std = check(target, "rustup target");
        let linker = check(target, "linker")["found"].as_str().unwrap();
        let notes = target["notes"].as_array().unwrap();
        if rust.target_libdir(&triple).is_some() {
            assert_eq!(std["found"], "installed", "{target:#}");
        } else {
            assert_eq!(std["found"], "none; std built from rust-src", "{target:#}");
            assert!(linker.starts_with("zig cc"), "{target:#}");
            assert!(
                notes[0]
                    .as_str()
                    .unwrap()
                    .contains("-Zbuild-std=std,panic_abort, with RUSTC_BOOTSTRAP=1"),
                "{target:#}"
            );
        }
        let qemu = triple.arch().unwrap().qemu_binary();
        if !target["native"].as_bool().unwrap() && require_tool(qemu).is_some() {
            assert_eq!(check(target, "qemu")["status"], "ok", "{target:#}");
        }
        assert_eq!(check(target, "C++ compiler")["status"], "ok", "{target:#}");
    }
}
