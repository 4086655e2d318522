//! Error kinds that decide the exit code; `main` maps them in exactly one place.
//!
//! Most library code returns `anyhow::Result` with context naming the file, package or blob.
//! Where the kind of failure matters to the caller (a check that failed, a tool that is
//! missing), the chain carries one of these typed errors.

/// The exit codes of DESIGN.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExitKind {
    /// 0: everything passed.
    Ok,
    /// 1: a check failed (not static, checksum mismatch, over budget).
    CheckFailed,
    /// 2: usage or input error (bad flag, unreadable or malformed file).
    Input,
    /// 3: the environment lacks something (toolchain, target, external tool).
    Environment,
}

impl ExitKind {
    /// The process exit code for this kind.
    pub fn code(self) -> i32 {
        match self {
            ExitKind::Ok => 0,
            ExitKind::CheckFailed => 1,
            ExitKind::Input => 2,
            ExitKind::Environment => 3,
        }
    }
}

/// A failure whose kind a caller (and `main`) branches on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A check failed: the input was read fine but does not hold what it must.
    #[error("{0}")]
    CheckFailed(String),
    /// The user's input is wrong (flag, file contents, reference syntax).
    #[error("{0}")]
    Input(String),
    /// Something the machine needs is missing; the message says how to install it.
    #[error("{0}")]
    Environment(String),
}

impl Error {
    /// The exit kind of this error.
    pub fn kind(&self) -> ExitKind {
        match self {
            Error::CheckFailed(_) => ExitKind::CheckFailed,
            Error::Input(_) => ExitKind::Input,
            Error::Environment(_) => ExitKind::Environment,
        }
    }
}

/// The exit kind of any error chain: the first typed [`Error`] in it; else an environment
/// error when the machine could not take what airlock wrote (a full disk or quota, a
/// read-only file system: see [`is_out_of_room`]); else an input error.
///
/// Untyped errors come from reading or parsing what the user gave (a missing file, a broken
/// layout), so they count as input errors (exit 2). A failure to write an output is not the
/// input's fault: the helpers that write outputs (`atomic`) type theirs as environment errors.
pub fn exit_kind(err: &anyhow::Error) -> ExitKind {
    if let Some(typed) = err.chain().find_map(|cause| cause.downcast_ref::<Error>()) {
        return typed.kind();
    }
    let out_of_room = err
        .chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(is_out_of_room);
    if out_of_room {
        ExitKind::Environment
    } else {
        ExitKind::Input
    }
}

/// Whether an I/O error says the machine has no room or no permission to write: whatever
/// was being written, the fix is on the machine, not in the input.
pub fn is_out_of_room(err: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        err.kind(),
        ErrorKind::StorageFull
            | ErrorKind::QuotaExceeded
            | ErrorKind::ReadOnlyFilesystem
            | ErrorKind::FileTooLarge
    )
}

/// What to do about an error whose cause says it, beyond its message: today, a write the
/// machine refused for lack of room.
pub fn hint(err: &anyhow::Error) -> Option<&'static str> {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(is_out_of_room)
        .then_some(
            "the disk, a quota or a file-size limit refused the write; free some space or \
             write the output elsewhere",
        )
}

/// An error writing the output `path`: an environment error (exit 3) that keeps the cause and
/// says where to look.
pub fn write_failed(path: &std::path::Path, cause: impl std::fmt::Display) -> anyhow::Error {
    environment(format!(
        "cannot write {}: {cause}; check the free space and the permissions of its directory",
        path.display()
    ))
}

/// Shorthand: an [`Error::Input`] as an `anyhow::Error`.
pub fn input(message: impl Into<String>) -> anyhow::Error {
    Error::Input(message.into()).into()
}

/// Shorthand: an [`Error::CheckFailed`] as an `anyhow::Error`.
pub fn check_failed(message: impl Into<String>) -> anyhow::Error {
    Error::CheckFailed(message.into()).into()
}

/// Shorthand: an [`Error::Environment`] as an `anyhow::Error`.
pub fn environment(message: impl Into<String>) -> anyhow::Error {
    Error::Environment(message.into()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn typed_error_deep_in_chain_decides_exit_code() {
        let err = Err::<(), _>(environment("zig not found"))
            .context("building for aarch64")
            .unwrap_err();
        assert_eq!(exit_kind(&err), ExitKind::Environment);
        assert_eq!(exit_kind(&anyhow::anyhow!("plain")), ExitKind::Input);
        assert_eq!(exit_kind(&check_failed("differs")).code(), 1);
    }

    #[test]
    fn a_full_disk_is_the_environment_not_the_input() {
        let full = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::StorageFull))
            .context("cannot write out.tar");
        assert_eq!(exit_kind(&full), ExitKind::Environment);
        let missing = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::NotFound))
            .context("cannot read in.json");
        assert_eq!(exit_kind(&missing), ExitKind::Input);
        let typed = write_failed(std::path::Path::new("/x/out"), "Permission denied");
        assert_eq!(exit_kind(&typed), ExitKind::Environment);
        assert!(typed.to_string().contains("/x/out"), "{typed}");
    }
}
