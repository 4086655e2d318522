//! Peak memory of a command under test, read from `/proc` while it runs.

/// Runs `cmd` and returns its exit code, stderr and the highest `VmHWM` (peak resident set, in
/// KiB) read from `/proc/<pid>/status` while it ran (polled every millisecond; the kernel keeps
/// the high-water mark until the process exits, so a late read still sees the peak).
pub fn run_measuring_peak(cmd: &mut std::process::Command) -> (i32, String, u64) {
    use std::io::Read;
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr_pipe = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stderr_pipe.read_to_string(&mut text).unwrap();
        text
    });
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    let status = loop {
        if let Ok(text) = std::fs::read_to_string(&status_path)
            && let Some(kib) = text
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    (status.code().unwrap_or(-1), reader.join().unwrap(), peak)
}

/// Runs `cmd` under GNU `time` (`time`, the path [`super::require_tool`] found), expecting
/// exit `code`, and returns its stdout, stderr and peak resident set in KiB as GNU time counts
/// it (file-backed pages included, as `cargo xtask bench` reports it). `cmd`'s program,
/// arguments, environment and directory are carried over.
pub fn run_under_gnu_time(
    time: &std::path::Path,
    cmd: &std::process::Command,
    code: i32,
) -> (String, String, u64) {
    let stats = tempfile::NamedTempFile::new().unwrap();
    let mut timed = std::process::Command::new(time);
    timed
        .arg("-f")
        .arg("%M")
        .arg("-o")
        .arg(stats.path())
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => timed.env(key, value),
            None => timed.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        timed.current_dir(dir);
    }
    let (stdout, stderr) = super::run_expect(&mut timed, code);
    let peak_kib = std::fs::read_to_string(stats.path())
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (stdout, stderr, peak_kib)
}
