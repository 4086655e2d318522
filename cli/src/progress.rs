//! Progress and diagnostics on stderr: bars on a terminal only, quiet with `-q`, extra detail
//! with `-v`. Results never go here; they go to stdout.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicI8, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

static VERBOSITY: AtomicI8 = AtomicI8::new(0);

/// Sets the verbosity for the whole process: -1 quiet, 0 normal, 1 and up verbose.
pub fn set_verbosity(level: i8) {
    VERBOSITY.store(level, Ordering::Relaxed);
}

/// The current verbosity.
pub fn verbosity() -> i8 {
    VERBOSITY.load(Ordering::Relaxed)
}

/// Prints a status line to stderr unless quiet (cargo's `Compiling`-style messages).
pub fn status(verb: &str, message: impl std::fmt::Display) {
    if verbosity() >= 0 {
        eprintln!("{verb:>12} {message}");
    }
}

/// Prints a detail line to stderr with `-v`.
pub fn detail(message: impl std::fmt::Display) {
    if verbosity() > 0 {
        eprintln!("{:>12} {message}", "");
    }
}

/// Prints a warning to stderr (even when quiet: warnings matter).
pub fn warn(message: impl std::fmt::Display) {
    eprintln!("warning: {message}");
}

/// A progress bar of `len` steps on stderr, hidden when stderr is not a terminal or when
/// quiet, so CI logs and pipes stay clean.
pub fn bar(len: u64, message: impl Into<String>) -> ProgressBar {
    if verbosity() < 0 || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>12.cyan.bold} [{bar:30}] {pos}/{len} {wide_msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(message.into());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A byte-counting progress bar (downloads, uploads, compression).
pub fn bytes_bar(len: u64, message: impl Into<String>) -> ProgressBar {
    let bar = bar(len, message);
    if let Ok(style) = ProgressStyle::with_template(
        "{msg:>12.cyan.bold} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// A byte-counting progress bar for one piece of long work, saying what it works on:
/// `   Measuring [=====>    ] 12.0 MiB/40.0 MiB layer 1/2 of linux/amd64 (…)`.
pub fn bytes_bar_for(len: u64, verb: &str, what: impl Into<String>) -> ProgressBar {
    styled(
        Some(len),
        "{prefix:>12.cyan.bold} [{bar:30}] {bytes}/{total_bytes} {wide_msg}",
        verb,
        what.into(),
    )
}

/// A spinner with the time spent, for long work whose progress cannot be counted:
/// `   Measuring ⠙ 1m02s linux/amd64: the binary stripped, with gzip -9 and zstd -19`.
pub fn spinner(verb: &str, what: impl Into<String>) -> ProgressBar {
    styled(
        None,
        "{prefix:>12.cyan.bold} {spinner} {elapsed} {wide_msg}",
        verb,
        what.into(),
    )
}

/// A bar with its style set before the first frame is drawn; hidden off a terminal or quiet.
fn styled(len: Option<u64>, template: &str, verb: &str, what: String) -> ProgressBar {
    if verbosity() < 0 || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(len, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(verb.to_owned());
    bar.set_message(what);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}
