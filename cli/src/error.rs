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

/// The exit kind of any error chain: the first typed [`Error`] in it, else an input error.
///
/// Untyped errors come from reading or parsing what the user gave (a missing file, a broken
/// layout), so they count as input errors (exit 2).
pub fn exit_kind(err: &anyhow::Error) -> ExitKind {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<Error>())
        .map_or(ExitKind::Input, Error::kind)
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
}
