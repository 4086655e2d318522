//! Running images for real: `umoci unpack` into a bundle, `runc run` of the bundle (no
//! terminal, no cgroup resources, as this sandbox allows).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use super::run_expect;

/// Unpacks `layout:tag` with umoci into `bundle`.
pub fn umoci_unpack(layout: &Path, tag: &str, bundle: &Path) {
    run_expect(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:{tag}", layout.display()))
            .arg(bundle),
        0,
    );
}

/// Runs the bundle umoci made with runc (no terminal, no cgroup limits) and returns stdout.
pub fn runc_run(bundle: &Path, args: &[&str]) -> String {
    runc_run_with(bundle, |argv| {
        if !args.is_empty() {
            argv.truncate(1);
            argv.extend(args.iter().map(|a| (*a).to_owned()));
        }
    })
}

/// Runs the bundle with `argv` in place of the image's entrypoint and command (a base's shell).
pub fn runc_run_argv(bundle: &Path, argv: &[&str]) -> String {
    runc_run_with(bundle, |args| {
        *args = argv.iter().map(|a| (*a).to_owned()).collect();
    })
}

fn runc_run_with(bundle: &Path, edit: impl FnOnce(&mut Vec<String>)) -> String {
    let config_path = bundle.join("config.json");
    let mut config: Value = serde_json::from_slice(&std::fs::read(&config_path).unwrap()).unwrap();
    config["process"]["terminal"] = Value::Bool(false);
    let mut argv: Vec<String> = config["process"]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    edit(&mut argv);
    config["process"]["args"] = Value::Array(argv.into_iter().map(Value::String).collect());
    if let Some(linux) = config["linux"].as_object_mut() {
        linux.remove("resources");
    }
    std::fs::write(&config_path, serde_json::to_vec(&config).unwrap()).unwrap();
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let id = format!(
        "airlock-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let (stdout, _) = run_expect(
        Command::new("runc")
            .args(["run", "--bundle"])
            .arg(bundle)
            .arg(id),
        0,
    );
    stdout
}
