//! Every architecture airlock knows, end to end: the C and C++ fixtures built static with
//! `--target every` (standard libraries built from rust-src where rustup has none installed,
//! linked by zig), each binary run under its qemu, and one image index with every platform.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::*;

/// Each target with the `std::env::consts::ARCH` its binaries report, airlock's name for the
/// architecture, and the image platform.
const EVERY: [(&str, &str, &str, &str); 6] = [
    (
        "x86_64-unknown-linux-musl",
        "x86_64",
        "x86_64",
        "linux/amd64",
    ),
    (
        "aarch64-unknown-linux-musl",
        "aarch64",
        "aarch64",
        "linux/arm64/v8",
    ),
    (
        "armv7-unknown-linux-musleabihf",
        "arm",
        "armv7",
        "linux/arm/v7",
    ),
    (
        "riscv64gc-unknown-linux-musl",
        "riscv64",
        "riscv64",
        "linux/riscv64",
    ),
    (
        "powerpc64le-unknown-linux-musl",
        "powerpc64",
        "powerpc64le",
        "linux/ppc64le",
    ),
    ("i686-unknown-linux-musl", "x86", "i686", "linux/386"),
];

/// zig links every cross target with C code and every standard library built from source.
fn have_zig() -> bool {
    let found = airlock::compile::toolchain::Zig::find().is_some();
    if !found {
        skip_or_fail("zig (python3 -m ziglang) is not installed");
    }
    found
}

/// The toolchain the fixture builds with, as airlock sees it.
fn toolchain(dir: &Path) -> airlock::compile::toolchain::RustToolchain {
    airlock::compile::toolchain::RustToolchain::probe(dir).unwrap()
}

/// The build's report entry for `target`, checked: static, no needed libraries, the target's
/// architecture, and `inspect --target` agreeing.
fn assert_static_for(build: &FixtureBuild, target: &str, bin: &str, arch: &str) {
    let entry = build.report["binaries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == bin && b["target"] == target)
        .unwrap_or_else(|| panic!("{bin} for {target} not in {:#}", build.report));
    let elf = &entry["elf"];
    assert!(
        elf["linkage"] == "static" || elf["linkage"] == "static-pie",
        "{target}: {elf:#}"
    );
    assert_eq!(elf["needed"], serde_json::json!([]), "{target}");
    assert_eq!(elf["interpreter"], Value::Null, "{target}");
    assert_eq!(elf["arch"], arch, "{target}");
    let inspected = run_json(
        airlock()
            .args(["inspect", "--format", "json", "--target", target])
            .arg(build.binary(target, bin)),
    );
    assert_eq!(inspected["files"][0]["linkage"], elf["linkage"], "{target}");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Adler-32 (RFC 1950), to check the C code's answer independently.
fn adler32(data: &[u8]) -> u32 {
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + u32::from(byte)) % 65521;
        b = (b + a) % 65521;
    }
    (b << 16) | a
}

#[test]
fn c_fixture_builds_static_for_every_target_and_runs_under_qemu() {
    if !have_zig() {
        return;
    }
    let build = fixture_build("with-c", "every");
    assert_eq!(build.report["problems"], serde_json::json!([]));
    let rust = toolchain(&build.dir);
    let sysroot = rust.sysroot.to_string_lossy().into_owned();
    for (target, consts_arch, arch, _) in EVERY {
        assert_static_for(build, target, "with-c", arch);
        let binary = build.binary(target, "with-c");
        let text = format!("static {target}");
        if let Some(out) = run_for_target(target, &binary, &[&text]) {
            assert_eq!(
                out,
                format!(
                    "with-c 0.2.0 on {consts_arch}: adler32({text})={:08x}\n",
                    adler32(text.as_bytes())
                )
            );
        }

        // Cargo built std exactly for the targets rustup has no prebuilt std for, and zig
        // linked those; a prebuilt std was never rebuilt.
        let triple: airlock::TargetTriple = target.parse().unwrap();
        let prebuilt = rust.target_libdir(&triple).is_some();
        let deps = build.dir.join("target").join(target).join("release/deps");
        let built_std = std::fs::read_dir(&deps)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"));
        assert_eq!(built_std, !prebuilt, "{target}: std built here?");
        let linker = build
            .dir
            .join("target/airlock/toolchain")
            .join(target)
            .join("linker");
        let linker = std::fs::read_to_string(&linker).unwrap_or_default();
        if !prebuilt {
            let zig_target = triple.zig_target().unwrap();
            assert!(
                linker.contains(&format!("'cc' '-target' '{zig_target}'")),
                "{target}: {linker}"
            );
            // The local rust-src path is remapped as rustup's prebuilt std records it.
            let bytes = std::fs::read(&binary).unwrap();
            assert!(!contains(&bytes, sysroot.as_bytes()), "{target}: {sysroot}");
            assert!(contains(&bytes, b"/rustc/"), "{target}");
        }
    }
}

#[test]
fn cpp_fixture_links_its_cpp_runtime_statically_for_every_target() {
    if !have_zig() {
        return;
    }
    let build = fixture_build("with-cpp", "every");
    assert_eq!(build.report["problems"], serde_json::json!([]));
    for (target, consts_arch, arch, _) in EVERY {
        assert_static_for(build, target, "with-cpp", arch);
        let binary = build.binary(target, "with-cpp");
        // std::string and std::vector, std::stoul throwing and its exception caught, and an
        // exception thrown through two C++ frames: libc++, libc++abi and the unwinder work.
        for (args, says) in [
            (&[][..], "words=2 first=airlock last-number=42"),
            (&["a b c"][..], "words=3 first=a last-number=not a number"),
            (&[" "][..], "caught: no words in \" \""),
        ] {
            if let Some(out) = run_for_target(target, &binary, args) {
                assert_eq!(out, format!("with-cpp 0.1.0 on {consts_arch}: {says}\n"));
            }
        }
        // The C++ compiler was zig c++ with libc++ (no musl g++ here), and the link that
        // asked for libc++ went to zig c++ whatever linked the rest.
        let toolchain = build.dir.join("target/airlock/toolchain").join(target);
        let triple: airlock::TargetTriple = target.parse().unwrap();
        let zig_cxx = format!("'c++' '-target' '{}'", triple.zig_target().unwrap());
        let cxx = std::fs::read_to_string(toolchain.join("c++")).unwrap();
        assert!(cxx.contains(&zig_cxx), "{target}: {cxx}");
        let linker = std::fs::read_to_string(toolchain.join("linker")).unwrap();
        assert!(linker.contains("-lc++|"), "{target}: {linker}");
        assert!(linker.contains(&zig_cxx), "{target}: {linker}");
    }
}

#[test]
fn image_for_every_target_lists_each_platform_and_each_binary_runs() {
    let (Some(_), Some(_)) = (require_tool("skopeo"), require_tool("umoci")) else {
        return;
    };
    if !have_zig() {
        return;
    }
    let build = fixture_build("with-c", "every");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let reference = format!("oci:{}:every", layout.display());
    let report = run_json(
        airlock()
            .current_dir(dir.path())
            .args(["image", "--format", "json", "-q", "--manifest-path"])
            .arg(build.dir.join("Cargo.toml"))
            .args(["--target", "every", "-o", &reference]),
    );
    let images = report["images"].as_array().unwrap();
    let platforms: Vec<&str> = images
        .iter()
        .map(|i| i["platform"].as_str().unwrap())
        .collect();
    let expected: Vec<&str> = EVERY.iter().map(|(_, _, _, p)| *p).collect();
    assert_eq!(platforms, expected);
    run_expect(airlock().args(["verify", "--layout"]).arg(&layout), 0);

    let raw = run_json(Command::new("skopeo").args(["inspect", "--raw", &reference]));
    assert_eq!(raw["mediaType"], "application/vnd.oci.image.index.v1+json");
    let listed = raw["manifests"].as_array().unwrap();
    assert_eq!(listed.len(), EVERY.len());
    for ((target, consts_arch, _, platform), (manifest, image)) in
        EVERY.iter().zip(listed.iter().zip(images))
    {
        let mut parts = platform.split('/').skip(1);
        let (oci_arch, variant) = (parts.next().unwrap(), parts.next());
        assert_eq!(manifest["platform"]["os"], "linux");
        assert_eq!(manifest["platform"]["architecture"], oci_arch);
        assert_eq!(
            manifest["platform"].get("variant").and_then(Value::as_str),
            variant
        );
        assert_eq!(manifest["digest"], image["manifest"]["digest"]);

        // That platform's image, copied out of the index as a runtime would pull it.
        let single = dir.path().join(oci_arch);
        let mut copy = Command::new("skopeo");
        copy.args(["--override-arch", oci_arch]);
        if let Some(variant) = variant {
            copy.args(["--override-variant", variant]);
        }
        copy.arg("copy")
            .arg(&reference)
            .arg(format!("oci:{}:one", single.display()));
        run_expect(&mut copy, 0);
        let bundle = dir.path().join(format!("bundle-{oci_arch}"));
        umoci_unpack(&single, "one", &bundle);
        let binary = bundle.join("rootfs/usr/local/bin/with-c");
        if let Some(out) = run_for_target(target, &binary, &["image"]) {
            assert_eq!(
                out,
                format!(
                    "with-c 0.2.0 on {consts_arch}: adler32(image)={:08x}\n",
                    adler32(b"image")
                ),
                "{platform}"
            );
        }
    }
}
