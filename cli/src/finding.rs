//! One difference found by a check: what kind, where, and the expected and actual values.
//!
//! Every check of `verify` (vendor directories, bundles, and later `SHA256SUMS`, dist
//! manifests and OCI layouts) reports into one list of these, so the human table, the JSON and
//! the exit code come from one place.

use std::fmt;

use serde::Serialize;

/// What kind of difference a [`Finding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// A locked package has no directory (or no `.crate` in the bundle).
    MissingPackage,
    /// A directory or `.crate` that no locked package owns.
    UnlockedPackage,
    /// `Cargo.lock` has no checksum for a registry package.
    MissingChecksum,
    /// A `.crate`'s sha256 differs from `Cargo.lock` or the bundle manifest.
    CrateChecksum,
    /// `.cargo-checksum.json`'s `package` differs from `Cargo.lock`.
    PackageChecksum,
    /// A git package's source or commit differs from `Cargo.lock`.
    SourceMismatch,
    /// A file's content differs from what it must be.
    FileModified,
    /// A file that must not be there.
    FileAdded,
    /// A file that must be there is not.
    FileMissing,
    /// `.cargo-checksum.json` lists a file with a hash that is not the pristine `.crate`'s
    /// (the checksum file was rewritten to match a change).
    ChecksumFileAltered,
    /// A file that cannot be read or parsed.
    Unreadable,
    /// An image that must be signed has no signature.
    SignatureMissing,
    /// A signature that does not hold: another key's, another image's, altered.
    SignatureInvalid,
}

impl FindingKind {
    /// The kebab-case name used in JSON and tables.
    pub fn name(self) -> &'static str {
        match self {
            FindingKind::MissingPackage => "missing-package",
            FindingKind::UnlockedPackage => "unlocked-package",
            FindingKind::MissingChecksum => "missing-checksum",
            FindingKind::CrateChecksum => "crate-checksum",
            FindingKind::PackageChecksum => "package-checksum",
            FindingKind::SourceMismatch => "source-mismatch",
            FindingKind::FileModified => "file-modified",
            FindingKind::FileAdded => "file-added",
            FindingKind::FileMissing => "file-missing",
            FindingKind::ChecksumFileAltered => "checksum-file-altered",
            FindingKind::Unreadable => "unreadable",
            FindingKind::SignatureMissing => "signature-missing",
            FindingKind::SignatureInvalid => "signature-invalid",
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    /// The file or directory concerned (as given or found on disk, or a path in a bundle).
    pub path: String,
    /// What kind of difference.
    pub kind: FindingKind,
    /// The package concerned (`name vVERSION`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub package: Option<String>,
    /// What it must be (a digest, a commit), when there is one value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected: Option<String>,
    /// What it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual: Option<String>,
    /// One sentence for people, saying what to do where it helps.
    pub message: String,
}

impl Finding {
    /// A finding with no expected/actual values.
    pub fn new(kind: FindingKind, path: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            path: path.into(),
            kind,
            package: None,
            expected: None,
            actual: None,
            message: message.into(),
        }
    }

    /// Names the package concerned.
    pub fn package(mut self, package: impl fmt::Display) -> Self {
        self.package = Some(package.to_string());
        self
    }

    /// Adds the expected and actual values.
    pub fn values(mut self, expected: impl fmt::Display, actual: impl fmt::Display) -> Self {
        self.expected = Some(expected.to_string());
        self.actual = Some(actual.to_string());
        self
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)?;
        if let Some(package) = &self.package {
            write!(f, " [{package}]")?;
        }
        if let (Some(e), Some(a)) = (&self.expected, &self.actual) {
            write!(f, " (expected {e}, found {a})")?;
        }
        write!(f, " ({})", self.kind)
    }
}
