//! Target triples and what each means for linking, ELF checks and OCI platforms.

use std::fmt;
use std::str::FromStr;

/// The CPU architectures airlock builds for: every Linux architecture rustup ships a musl
/// standard library for that qemu can run and zig can link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    /// x86-64.
    X86_64,
    /// 64-bit ARM.
    Aarch64,
    /// 32-bit ARMv7-A, hard float.
    Armv7,
    /// 64-bit RISC-V with the G and C extensions.
    Riscv64,
    /// 64-bit POWER, little-endian.
    Powerpc64le,
    /// 32-bit x86 (SSE2).
    I686,
}

impl Arch {
    /// Every architecture, in the order images list their platforms.
    pub const ALL: [Arch; 6] = [
        Arch::X86_64,
        Arch::Aarch64,
        Arch::Armv7,
        Arch::Riscv64,
        Arch::Powerpc64le,
        Arch::I686,
    ];

    /// The names of every architecture, for messages (`x86_64, aarch64, … and i686`).
    pub fn list() -> String {
        let names: Vec<&str> = Arch::ALL.iter().map(|a| a.name()).collect();
        match names.split_last() {
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        }
    }

    /// The architecture of the machine running airlock, if it is one airlock targets.
    pub fn host() -> Option<Arch> {
        match std::env::consts::ARCH {
            "x86_64" => Some(Arch::X86_64),
            "aarch64" => Some(Arch::Aarch64),
            "arm" => Some(Arch::Armv7),
            "riscv64" => Some(Arch::Riscv64),
            "powerpc64" if cfg!(target_endian = "little") => Some(Arch::Powerpc64le),
            "x86" => Some(Arch::I686),
            _ => None,
        }
    }

    /// The name airlock reports (`x86_64`, `armv7`, `riscv64`; the JSON `arch` field).
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Armv7 => "armv7",
            Arch::Riscv64 => "riscv64",
            Arch::Powerpc64le => "powerpc64le",
            Arch::I686 => "i686",
        }
    }

    /// The OCI / Go name (`amd64`, `arm64`, `arm`, `riscv64`, `ppc64le`, `386`) used in image
    /// platforms (image-spec `image-index.md`, `platform.architecture`: Go's `GOARCH`).
    pub fn oci_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
            Arch::Armv7 => "arm",
            Arch::Riscv64 => "riscv64",
            Arch::Powerpc64le => "ppc64le",
            Arch::I686 => "386",
        }
    }

    /// The OCI platform variant (`v8` for arm64, `v7` for arm, none for the others), as the
    /// image spec's platform variants list them.
    pub fn oci_variant(self) -> Option<&'static str> {
        match self {
            Arch::Aarch64 => Some("v8"),
            Arch::Armv7 => Some("v7"),
            Arch::X86_64 | Arch::Riscv64 | Arch::Powerpc64le | Arch::I686 => None,
        }
    }

    /// The architecture part of its Rust triples (`x86_64`, `armv7`, `riscv64gc`).
    pub fn triple_name(self) -> &'static str {
        match self {
            Arch::Riscv64 => "riscv64gc",
            other => other.name(),
        }
    }

    /// The static musl triple for this architecture.
    pub fn musl_triple(self) -> TargetTriple {
        let env = match self {
            Arch::Armv7 => "musleabihf",
            _ => "musl",
        };
        TargetTriple(format!("{}-unknown-linux-{env}", self.triple_name()))
    }

    /// zig's name for the architecture (`-target <name>-linux-musl`).
    pub fn zig_name(self) -> &'static str {
        match self {
            Arch::Armv7 => "arm",
            Arch::Riscv64 => "riscv64",
            Arch::I686 => "x86",
            other => other.name(),
        }
    }

    /// The qemu user-mode emulator that runs this architecture's binaries elsewhere.
    pub fn qemu_binary(self) -> &'static str {
        match self {
            Arch::X86_64 => "qemu-x86_64-static",
            Arch::Aarch64 => "qemu-aarch64-static",
            Arch::Armv7 => "qemu-arm-static",
            Arch::Riscv64 => "qemu-riscv64-static",
            Arch::Powerpc64le => "qemu-ppc64le-static",
            Arch::I686 => "qemu-i386-static",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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

    /// The triples `all` stands for: the two architectures most servers run, musl.
    pub fn all_musl() -> Vec<TargetTriple> {
        [Arch::X86_64, Arch::Aarch64]
            .into_iter()
            .map(Arch::musl_triple)
            .collect()
    }

    /// The triples `every` stands for: every architecture airlock knows, musl.
    pub fn every_musl() -> Vec<TargetTriple> {
        Arch::ALL.into_iter().map(Arch::musl_triple).collect()
    }

    /// Expands `all` and `every`, or parses one triple.
    pub fn expand(value: &str) -> Result<Vec<TargetTriple>, ParseTargetError> {
        match value {
            "all" => Ok(TargetTriple::all_musl()),
            "every" => Ok(TargetTriple::every_musl()),
            triple => Ok(vec![triple.parse()?]),
        }
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
            Some("armv7") => Some(Arch::Armv7),
            Some("riscv64gc") => Some(Arch::Riscv64),
            Some("powerpc64le") => Some(Arch::Powerpc64le),
            Some("i686") => Some(Arch::I686),
            _ => None,
        }
    }

    /// zig's `-target` for this triple (`arm-linux-musleabihf`), when airlock knows the
    /// architecture and the triple is a Linux musl one.
    pub fn zig_target(&self) -> Option<String> {
        let env = self.0.rsplit('-').next().filter(|_| self.is_musl())?;
        Some(format!("{}-linux-{env}", self.arch()?.zig_name()))
    }

    /// Whether this is a musl target (static by default with airlock's flags): its
    /// environment is `musl`, or an ARM ABI of it (`musleabihf`, `musleabi`).
    pub fn is_musl(&self) -> bool {
        self.0
            .rsplit('-')
            .next()
            .is_some_and(|env| env.starts_with("musl"))
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
        assert_eq!(t.zig_target().as_deref(), Some("aarch64-linux-musl"));
        let gnu: TargetTriple = "x86_64-unknown-linux-gnu".parse().unwrap();
        assert_eq!(gnu.zig_target(), None);
        assert!(
            "x86_64-unknown-linux-gnu; rm"
                .parse::<TargetTriple>()
                .is_err()
        );
    }

    #[test]
    fn every_arch_round_trips_through_its_musl_triple() {
        let every: Vec<String> = TargetTriple::every_musl()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            every,
            [
                "x86_64-unknown-linux-musl",
                "aarch64-unknown-linux-musl",
                "armv7-unknown-linux-musleabihf",
                "riscv64gc-unknown-linux-musl",
                "powerpc64le-unknown-linux-musl",
                "i686-unknown-linux-musl",
            ]
        );
        for arch in Arch::ALL {
            assert_eq!(arch.musl_triple().arch(), Some(arch));
            assert!(arch.musl_triple().is_musl(), "{arch}");
        }
        let zig: Vec<String> = TargetTriple::every_musl()
            .iter()
            .filter_map(TargetTriple::zig_target)
            .collect();
        assert_eq!(
            zig,
            [
                "x86_64-linux-musl",
                "aarch64-linux-musl",
                "arm-linux-musleabihf",
                "riscv64-linux-musl",
                "powerpc64le-linux-musl",
                "x86-linux-musl",
            ]
        );
        assert_eq!(
            TargetTriple::expand("all").unwrap(),
            TargetTriple::all_musl()
        );
        assert_eq!(TargetTriple::expand("every").unwrap().len(), 6);
        assert!(TargetTriple::expand("every thing").is_err());
    }
}
