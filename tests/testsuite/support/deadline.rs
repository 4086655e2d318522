//! Running the binary under a deadline: a command that hangs on a FIFO or reads `/dev/zero`
//! without end fails its test after [`HANG_LIMIT`] instead of hanging CI.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a command on hostile input may run before the test calls it hung and kills it.
pub const HANG_LIMIT: Duration = Duration::from_secs(20);

/// Runs `cmd` (stdin closed), kills it if it has not exited within [`HANG_LIMIT`], asserts it
/// exited with `code`, and returns (stdout, stderr).
#[track_caller]
pub fn run_bounded(cmd: &mut Command, code: i32) -> (String, String) {
    let started = Instant::now();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > HANG_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let Some(status) = status else {
        panic!(
            "{cmd:?} was still running after {HANG_LIMIT:?} and was killed: it hangs or reads \
             without bound\n--- stderr\n{stderr}"
        );
    };
    assert_eq!(
        status.code(),
        Some(code),
        "{cmd:?} exited with {status:?} after {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        started.elapsed()
    );
    (stdout, stderr)
}
