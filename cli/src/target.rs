//! Target triples and what each means for linking, ELF checks and OCI platforms.

use std::fmt;
use std::str::FromStr;

/// The CPU architectures airlock builds for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// x86-64.
    X86_64,
    /// 64-bit ARM.
    Aarch64,
}

impl Arch {
    /// The architecture of the machine running airlock, if it is one airlock targets.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Aarch64),
            _ => None,
        }
    }

    /// The OCI / Go name (`amd64`, `arm64`) used in image platforms.
    pub fn oci_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The OCI platform variant (`v8` for arm64, none for amd64).
    pub fn oci_variant(self) -> Option<&'static str> {
        match self {
            Arch::X86_64 => None,
            Arch::Aarch64 => Some("v8"),
        }
    }

    /// The name in target triples (`x86_64`, `aarch64`).
    pub fn triple_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The static musl triple for this architecture.
    pub fn musl_triple(self) -> TargetTriple {
        TargetTriple(format!("{}-unknown-linux-musl", self.triple_name()))
    }

    /// The qemu user-mode emulator that runs this architecture's binaries elsewhere.
    pub fn qemu_binary(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-x86_64-static",
            Arch::Aarch64 => "qemu-aarch64-static",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.triple_name())
    }
}

/// A Rust target triple such as `x86_64-unknown-linux-musl`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TargetTriple(String);

/// Why a string is not a usable target triple.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is not a target triple (expected e.g. x86_64-unknown-linux-musl)")]
pub struct ParseTargetError(String);

impl TargetTriple {
    /// The static musl triple of the host's architecture (x86_64 when the host is neither).
    pub fn host_musl() -> TargetTriple {
        Arch::host().unwrap_or(Arch::X86_64).musl_triple()
    }

    /// The triples `all` stands for: every architecture airlock ships, musl.
    pub fn all_musl() -> Vec<TargetTriple> {
        [Arch::X86_64, Arch::Aarch64]
            .into_iter()
            .map(Arch::musl_triple)
            .collect()
    }

    /// The triple as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The architecture, when airlock knows it.
    pub fn arch(&self) -> Option<Arch> {
        match self.0.split('-').next() {
            Some("x86_64") => Some(Arch::X86_64),
            Some("aarch64") => Some(Arch::Aarch64),
            _ => None,
        }
    }

    /// Whether this is a musl target (static by default with airlock's flags).
    pub fn is_musl(&self) -> bool {
        self.0.ends_with("-musl")
    }

    /// Whether binaries for this target run natively here.
    pub fn is_host_arch(&self) -> bool {
        self.arch().is_some() && self.arch() == Arch::host()
    }

    /// The triple as cargo spells it in environment variable names
    /// (`CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS`).
    pub fn env_key(&self) -> String {
        self.0.to_uppercase().replace(['-', '.'], "_")
    }
}

impl FromStr for TargetTriple {
    type Err = ParseTargetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = s.split('-').count() >= 3
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if valid {
            Ok(TargetTriple(s.to_owned()))
        } else {
            Err(ParseTargetError(s.to_owned()))
        }
    }
}

impl fmt::Display for TargetTriple {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for TargetTriple {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TargetTriple {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_describes_triples() {
        let t: TargetTriple = "aarch64-unknown-linux-musl".parse().unwrap();
        assert_eq!(t.arch(), Some(Arch::Aarch64));
        assert!(t.is_musl());
        assert_eq!(t.env_key(), "AARCH64_UNKNOWN_LINUX_MUSL");
        assert_eq!(t.arch().unwrap().oci_name(), "arm64");
        assert!("linux".parse::<TargetTriple>().is_err());
        assert!(
            "x86_64-unknown-linux-gnu; rm"
                .parse::<TargetTriple>()
                .is_err()
        );
    }
}
