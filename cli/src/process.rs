//! Running cargo and external tools: explicit arguments, never a shell; stderr captured and
//! shown when the tool fails.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result};

use crate::error;

/// The command line of `cmd` as a user could retype it (for messages).
pub fn display(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| {
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains(|c: char| c.is_whitespace() || c == '\'' || c == '"') {
            format!("'{}'", a.replace('\'', r"'\''"))
        } else {
            a.into_owned()
        }
    }));
    parts.join(" ")
}

/// Runs `cmd` with stdout and stderr captured; fails with the command line, exit status and
/// the end of stderr when it does not succeed. A program that cannot be found is an
/// environment error (exit 3).
pub fn run_captured(cmd: &mut Command) -> Result<Output> {
    let output = spawn_output(cmd)?;
    if !output.status.success() {
        anyhow::bail!(
            "`{}` failed ({}):\n{}",
            display(cmd),
            output.status,
            tail(&output.stderr, 40)
        );
    }
    Ok(output)
}

/// Runs `cmd` with its stderr passed through to ours (progress of long tools such as cargo
/// stays visible) and stdout captured.
pub fn run_inherit_stderr(cmd: &mut Command) -> Result<Output> {
    cmd.stderr(Stdio::inherit());
    let output = spawn_output(cmd)?;
    if !output.status.success() {
        anyhow::bail!("`{}` failed ({})", display(cmd), output.status);
    }
    Ok(output)
}

fn spawn_output(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null());
    match cmd.output() {
        Ok(output) => Ok(output),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(error::environment(format!(
            "`{}` is not installed or not on PATH",
            cmd.get_program().to_string_lossy()
        ))),
        Err(e) => Err(e).with_context(|| format!("cannot run `{}`", display(cmd))),
    }
}

/// The last `lines` lines of a tool's output, as text.
pub fn tail(bytes: &[u8], lines: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    let all: Vec<&str> = text.trim_end().lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The full path of `program` found on `PATH`, if it is there and executable.
pub fn find_on_path(program: impl AsRef<OsStr>) -> Option<PathBuf> {
    let program = program.as_ref();
    if Path::new(program).components().count() > 1 {
        return is_executable(Path::new(program)).then(|| PathBuf::from(program));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// The `cargo` to run: `$CARGO` when cargo started us (`cargo airlock`), else `cargo`.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_names_command_and_stderr() {
        let err = run_captured(Command::new("sh").args(["-c", "echo oops >&2; exit 3"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sh -c 'echo oops >&2; exit 3'"), "{err}");
        assert!(err.contains("oops"), "{err}");
    }

    #[test]
    fn missing_program_is_environment_error() {
        let err = run_captured(&mut Command::new("airlock-no-such-tool")).unwrap_err();
        assert_eq!(
            crate::error::exit_kind(&err),
            crate::error::ExitKind::Environment
        );
    }
}
