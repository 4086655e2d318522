//! Stripped images and archives from a release profile that keeps debug info (`debug = 1`):
//! the layer and the archives hold the stripped binary, which runs; the debug file sits beside,
//! and gdb finds it by build-id and by `.gnu_debuglink`; GNU strip is the yardstick.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::*;

const DEBUG_X86: &str = "traced-0.2.0-x86_64-unknown-linux-musl.debug";

fn elf_info(bytes: &[u8]) -> airlock::elf::ElfInfo {
    airlock::elf::parse_elf(Path::new("binary"), bytes).unwrap()
}

/// Writes `bytes` as an executable `dir/name`.
fn executable(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// `gdb -batch` on `binary`: where `traced::answer_for` is, and its source line.
fn gdb_info_line(binary: &Path, debug_file_directory: Option<&Path>) -> String {
    let mut cmd = Command::new("gdb");
    cmd.args(["-batch", "-nx"]);
    // `-iex`: gdb looks for the debug file when it loads the binary, before any `-ex`.
    if let Some(dir) = debug_file_directory {
        cmd.arg("-iex")
            .arg(format!("set debug-file-directory {}", dir.display()));
    }
    cmd.args(["-ex", "info line traced::answer_for"])
        .arg(binary);
    let out = cmd.output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The size GNU `strip FLAG` leaves of `bytes`.
fn gnu_strip(bytes: &[u8], flag: &str, scratch: &Path) -> u64 {
    let copy = executable(scratch, "gnu-stripped", bytes);
    run_expect(Command::new("strip").arg(flag).arg(&copy), 0);
    std::fs::metadata(&copy).unwrap().len()
}

/// `readelf` and `objdump` read `binary` whole, without a warning.
fn binutils_accept(binary: &Path) {
    for (tool, args) in [
        ("readelf", &["-W", "-a"][..]),
        ("objdump", &["-h", "-d"][..]),
    ] {
        let out = Command::new(tool).args(args).arg(binary).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{tool} {}", binary.display());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.trim().is_empty(), "{tool} warns: {stderr}");
    }
}

/// Whether `bytes` differ from `expected` by at most 1 %.
fn within_one_percent(ours: u64, theirs: u64) -> bool {
    ours.abs_diff(theirs) * 100 <= theirs
}

fn image(project: &Path, layout: &Path, debug_dir: &Path, extra: &[&str]) -> Value {
    run_json(
        airlock()
            .args(["image", "--format", "json", "--manifest-path"])
            .arg(project.join("Cargo.toml"))
            .arg("--output")
            .arg(layout)
            .arg("--debug-dir")
            .arg(debug_dir)
            .args(extra),
    )
}

#[test]
fn image_ships_the_stripped_binary_and_gdb_finds_its_debug_file() {
    for tool in ["gdb", "readelf", "objdump", "strip"] {
        if require_tool(tool).is_none() {
            return;
        }
    }
    let (_guard, project) = copy_fixture("debuginfo");
    let layout = project.join("layout");
    let debug_dir = project.join("debug");
    let report = image(&project, &layout, &debug_dir, &[]);
    let binary = &report["images"][0]["binaries"][0];
    assert_eq!(binary["strip"], "debuginfo");
    let built_size = binary["built_size"].as_u64().unwrap();
    let shipped_size = binary["size"].as_u64().unwrap();
    let build_id = binary["build_id"].as_str().unwrap().to_owned();
    assert_eq!(build_id.len(), 40, "a sha1 build-id: {build_id}");
    let debug_path = debug_dir.join(DEBUG_X86);
    assert_eq!(binary["debug_file"], debug_path.to_str().unwrap());

    // The binary cargo built keeps its debug info (the profile is the user's); the layer holds
    // the stripped one, symbols kept, annotated with the size as built.
    let built = std::fs::read(binary["source"].as_str().unwrap()).unwrap();
    assert_eq!(built.len() as u64, built_size);
    assert!(elf_info(&built).debug_info);
    let (shipped, layer) = file_in_top_layer(&layout, "0.2.0", "usr/local/bin/traced");
    assert_eq!(shipped.len() as u64, shipped_size);
    let info = elf_info(&shipped);
    assert!(!info.debug_info && !info.stripped, "{info:?}");
    assert!(
        shipped_size * 2 < built_size,
        "{shipped_size} of {built_size}"
    );
    assert_eq!(
        layer["annotations"]["com.github.airlock-rs.airlock.built-sizes"],
        format!("/usr/local/bin/traced={built_size}")
    );
    let scratch = project.join("scratch");
    let gnu = gnu_strip(&built, "--strip-debug", &scratch);
    assert!(
        within_one_percent(shipped_size, gnu),
        "ours {shipped_size}, GNU strip {gnu}"
    );

    // It runs, and binutils read it and the debug file whole.
    let alone = executable(&project.join("alone"), "traced", &shipped);
    let (out, _) = run_expect(Command::new(&alone).arg("x"), 0);
    assert_eq!(out, "traced: the answer is 36\n");
    binutils_accept(&alone);
    binutils_accept(&debug_path);
    let (notes, _) = run_expect(Command::new("readelf").arg("-n").arg(&alone), 0);
    assert!(notes.contains(&format!("Build ID: {build_id}")), "{notes}");

    // gdb: no source lines from the binary alone; found by debuglink beside it, and by
    // build-id in a debug-file-directory.
    let without = gdb_info_line(&alone, Some(&project.join("empty")));
    assert!(!without.contains("Line 6 of"), "{without}");
    let beside = project.join("beside");
    let linked = executable(&beside, "traced", &shipped);
    std::fs::copy(&debug_path, beside.join(DEBUG_X86)).unwrap();
    let by_link = gdb_info_line(&linked, Some(&project.join("empty")));
    assert!(
        by_link.contains("Line 6 of \"src/main.rs\""),
        "by debuglink: {by_link}"
    );
    let tree = project.join("debug-tree");
    let by_id_path = tree.join(airlock::elf::strip::build_id_path(&build_id));
    std::fs::create_dir_all(by_id_path.parent().unwrap()).unwrap();
    std::fs::copy(&debug_path, &by_id_path).unwrap();
    let by_id = gdb_info_line(&alone, Some(&tree));
    assert!(
        by_id.contains("Line 6 of \"src/main.rs\""),
        "by build-id: {by_id}"
    );

    // Reproducible: built again from scratch, the same layer and the same debug file.
    std::fs::remove_dir_all(project.join("target")).unwrap();
    let again = image(
        &project,
        &project.join("again"),
        &project.join("debug2"),
        &[],
    );
    assert_eq!(again["images"][0]["layers"], report["images"][0]["layers"]);
    assert_eq!(
        std::fs::read(project.join("debug2").join(DEBUG_X86)).unwrap(),
        std::fs::read(&debug_path).unwrap()
    );

    // The size report shows the binary as built and as shipped.
    let (size, _) = run_expect(
        airlock().args(["report", "--format", "json"]).arg(&layout),
        0,
    );
    let size: Value = serde_json::from_str(&size).unwrap();
    assert_eq!(size["platforms"][0]["binary"]["built"], built_size);
    assert_eq!(size["platforms"][0]["binary"]["size"], shipped_size);
    let (human, _) = run_expect(airlock().arg("report").arg(&layout), 0);
    assert!(human.contains("stripping saved"), "{human}");
}

#[test]
fn image_of_a_debug_profile_ships_it_stripped_by_default() {
    // The case, with no flag at all: `debug = 1` in the release profile.
    let (_guard, project) = copy_fixture("debuginfo");
    let layout = project.join("layout");
    run_expect(
        airlock()
            .args(["image", "--manifest-path"])
            .arg(project.join("Cargo.toml"))
            .arg("--output")
            .arg(&layout),
        0,
    );
    let (shipped, _) = file_in_top_layer(&layout, "0.2.0", "usr/local/bin/traced");
    let info = elf_info(&shipped);
    assert!(
        !info.debug_info,
        "the layer's binary carries its debug info"
    );
    let debug = project.join("target/airlock/debug").join(DEBUG_X86);
    let debug = std::fs::read(&debug).unwrap_or_else(|e| panic!("{}: {e}", debug.display()));
    assert!(elf_info(&debug).debug_info);
}

#[test]
fn strip_none_ships_the_binary_as_built() {
    let (_guard, project) = copy_fixture("debuginfo");
    let layout = project.join("layout");
    let report = image(
        &project,
        &layout,
        &project.join("debug"),
        &["--strip", "none"],
    );
    let binary = &report["images"][0]["binaries"][0];
    assert_eq!(binary["strip"], "none");
    assert_eq!(binary["debug_file"], Value::Null);
    let built = std::fs::read(binary["source"].as_str().unwrap()).unwrap();
    let (shipped, layer) = file_in_top_layer(&layout, "0.2.0", "usr/local/bin/traced");
    assert_eq!(shipped, built);
    assert_eq!(layer["annotations"], Value::Null);
    assert!(!project.join("debug").exists());
}

#[test]
fn an_unknown_strip_mode_is_a_usage_error() {
    let (_guard, project) = copy_fixture("debuginfo");
    for command in ["image", "dist"] {
        let (_, stderr) = run_expect(
            airlock()
                .arg(command)
                .arg("--manifest-path")
                .arg(project.join("Cargo.toml"))
                .args(["--strip", "everything"]),
            2,
        );
        assert!(
            stderr.contains("use none, debuginfo or symbols"),
            "{command}: {stderr}"
        );
    }
    assert!(!project.join("target").exists(), "nothing was built");
}

#[test]
fn aarch64_image_stripped_of_symbols_runs_under_qemu() {
    for tool in ["qemu-aarch64-static", "readelf"] {
        if require_tool(tool).is_none() {
            return;
        }
    }
    let (_guard, project) = copy_fixture("debuginfo");
    let layout = project.join("layout");
    let debug_dir = project.join("debug");
    let report = image(
        &project,
        &layout,
        &debug_dir,
        &[
            "--target",
            "aarch64-unknown-linux-musl",
            "--strip",
            "symbols",
        ],
    );
    let binary = &report["images"][0]["binaries"][0];
    assert_eq!(binary["strip"], "symbols");
    // rust-lld links this target: it writes a build-id only when asked.
    assert_eq!(
        binary["build_id"].as_str().map(str::len),
        Some(40),
        "{binary}"
    );
    let (shipped, _) = file_in_top_layer(&layout, "0.2.0", "usr/local/bin/traced");
    let info = elf_info(&shipped);
    assert!(info.stripped && !info.debug_info, "{info:?}");
    assert_eq!(info.machine, "aarch64");
    let alone = executable(&project.join("alone"), "traced", &shipped);
    let (out, _) = run_expect(Command::new("qemu-aarch64-static").arg(&alone).arg("xy"), 0);
    assert_eq!(out, "traced: the answer is 42\n");
    // The debug file holds what was removed: the DWARF and the symbol table.
    let debug = debug_dir.join("traced-0.2.0-aarch64-unknown-linux-musl.debug");
    let (sections, stderr) = run_expect(Command::new("readelf").arg("-W").arg("-S").arg(&debug), 0);
    assert!(stderr.is_empty(), "{stderr}");
    for name in [
        ".debug_info",
        ".debug_line",
        ".symtab",
        ".note.gnu.build-id",
    ] {
        assert!(sections.contains(name), "{name} missing:\n{sections}");
    }
}

#[test]
fn dist_releases_stripped_archives_with_the_debug_files_beside() {
    for tool in ["gdb", "strip", "tar"] {
        if require_tool(tool).is_none() {
            return;
        }
    }
    let (_guard, project) = copy_fixture("debuginfo");
    let out = project.join("release");
    let report = run_json(
        airlock()
            .args(["dist", "--format", "json", "--manifest-path"])
            .arg(project.join("Cargo.toml"))
            .arg("--out-dir")
            .arg(&out)
            .args([
                "--target",
                "x86_64-unknown-linux-musl",
                "--strip",
                "symbols",
            ])
            .env("SOURCE_DATE_EPOCH", "1700000000"),
    );
    let artifacts = report["manifest"]["artifacts"].as_array().unwrap();
    let debug = artifacts
        .iter()
        .find(|a| a["path"] == DEBUG_X86)
        .unwrap_or_else(|| panic!("no debug file in {artifacts:?}"));
    assert_eq!(debug["kind"], "debug-info");
    assert_eq!(debug["target"], "x86_64-unknown-linux-musl");
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    assert!(sums.contains(&format!("  {DEBUG_X86}\n")), "{sums}");
    run_expect(
        airlock()
            .args(["verify", "--sums"])
            .arg(out.join("SHA256SUMS")),
        0,
    );

    // The archive and the image hold the same stripped bytes, which name the debug file.
    let archive = std::fs::read(out.join("traced-0.2.0-x86_64-unknown-linux-musl.tar.gz")).unwrap();
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(archive.as_slice()));
    let mut in_archive = Vec::new();
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().ends_with("traced") {
            entry.read_to_end(&mut in_archive).unwrap();
        }
    }
    let (in_image, _) = file_in_top_layer(&out.join("image"), "0.2.0", "usr/local/bin/traced");
    assert_eq!(in_archive, in_image);
    assert!(elf_info(&in_archive).stripped);
    let debug_bytes = std::fs::read(out.join(DEBUG_X86)).unwrap();
    let link = airlock::elf::strip::gnu_debuglink(
        DEBUG_X86,
        crc32fast::hash(&debug_bytes),
        object::Endianness::Little,
    );
    assert!(
        in_archive.windows(link.len()).any(|w| w == link.as_slice()),
        "the binary's .gnu_debuglink names {DEBUG_X86} with its CRC32"
    );
    let built =
        std::fs::read(project.join("target/x86_64-unknown-linux-musl/release/traced")).unwrap();
    let gnu = gnu_strip(&built, "--strip-all", &project.join("scratch"));
    let ours = in_archive.len() as u64;
    assert!(
        within_one_percent(ours, gnu),
        "ours {ours}, GNU strip {gnu}"
    );

    // Unpacked beside its debug file, gdb names the function and its line.
    let unpacked = executable(&project.join("unpacked"), "traced", &in_archive);
    std::fs::copy(
        out.join(DEBUG_X86),
        project.join("unpacked").join(DEBUG_X86),
    )
    .unwrap();
    let found = gdb_info_line(&unpacked, Some(&project.join("empty")));
    assert!(found.contains("Line 6 of \"src/main.rs\""), "{found}");

    // The size report in the release shows the binary as airlock built it (cargo's output
    // with its dependency list embedded), before stripping.
    let airlock_built =
        std::fs::metadata(project.join("target/airlock/x86_64-unknown-linux-musl/traced"))
            .unwrap()
            .len();
    assert!(
        airlock_built > built.len() as u64,
        "the .dep-v0 section is in it"
    );
    let size: Value =
        serde_json::from_slice(&std::fs::read(out.join("size-report.json")).unwrap()).unwrap();
    assert_eq!(size["platforms"][0]["binary"]["built"], airlock_built);
}

#[test]
fn a_refused_binary_leaves_no_debug_file() {
    if require_tool("cc").is_none() {
        return;
    }
    // A dynamic binary with debug info: stripping happens in memory, the refusal before any
    // debug file is written.
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("main.c");
    std::fs::write(&source, "int main(void) { return 0; }\n").unwrap();
    let binary = dir.path().join("dynamic");
    run_expect(
        Command::new("cc")
            .arg("-g")
            .arg("-o")
            .arg(&binary)
            .arg(&source),
        0,
    );
    let debug_dir = dir.path().join("debug");
    let (_, stderr) = run_expect(
        airlock()
            .arg("image")
            .arg("--binary")
            .arg(&binary)
            .arg("--output")
            .arg(dir.path().join("layout"))
            .arg("--debug-dir")
            .arg(&debug_dir),
        1,
    );
    assert!(stderr.contains("dynamically linked"), "{stderr}");
    assert!(
        !debug_dir.exists(),
        "a debug file was written for a refused binary"
    );
    assert!(!dir.path().join("layout").exists());
    // Allowed, it ships stripped, with its debug file beside.
    run_expect(
        airlock()
            .arg("image")
            .arg("--binary")
            .arg(&binary)
            .arg("--allow-dynamic")
            .arg("--output")
            .arg(dir.path().join("layout"))
            .arg("--debug-dir")
            .arg(&debug_dir),
        0,
    );
    let arch = std::env::consts::ARCH;
    assert!(debug_dir.join(format!("dynamic-{arch}.debug")).is_file());
}
