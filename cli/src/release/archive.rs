//! Release archives: `<bin>-<version>-<target>.tar.gz` / `.tar.zst`, deterministic, holding
//! the binary and the package's README, LICENSE and CHANGELOG files under one top directory.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::atomic;
use crate::digest::Sha256Digest;
use crate::oci::layer::{Compression, CompressionKind};
use crate::tarball::{self, TarBuilder};

/// An archive format for release archives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ArchiveFormat {
    /// gzip-compressed tar (libdeflate level 7, as image layers), readable everywhere.
    #[serde(rename = "tar.gz")]
    TarGz,
    /// zstd-compressed tar (level 19), smaller and faster to unpack.
    #[serde(rename = "tar.zst")]
    TarZst,
}

impl ArchiveFormat {
    /// The file extension, without the leading dot.
    pub fn extension(self) -> &'static str {
        match self {
            ArchiveFormat::TarGz => "tar.gz",
            ArchiveFormat::TarZst => "tar.zst",
        }
    }
}

impl fmt::Display for ArchiveFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

impl FromStr for ArchiveFormat {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim_start_matches('.') {
            "tar.gz" | "tgz" | "gz" | "gzip" => Ok(ArchiveFormat::TarGz),
            "tar.zst" | "zst" | "zstd" => Ok(ArchiveFormat::TarZst),
            "zip" => Err(crate::error::input(
                "zip archives are not supported: airlock releases Linux binaries; use tar.gz or tar.zst",
            )),
            other => Err(crate::error::input(format!(
                "unknown archive format `{other}`; use tar.gz or tar.zst"
            ))),
        }
    }
}

/// The documents that travel with a binary: files named `README*`, `LICENSE*`, `LICENCE*`,
/// `COPYING*` or `CHANGELOG*` in the package directory, else in the workspace root, sorted.
pub fn release_documents(package_dir: &Path, workspace_root: &Path) -> Result<Vec<PathBuf>> {
    let mut found: Vec<PathBuf> = Vec::new();
    for dir in [package_dir, workspace_root] {
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
        let mut here: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .filter(|p| is_release_document(p))
            .collect();
        here.sort();
        for path in here {
            let name = path.file_name().map(|n| n.to_owned());
            if !found
                .iter()
                .any(|f| f.file_name().map(|n| n.to_owned()) == name)
            {
                found.push(path);
            }
        }
    }
    found.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(found)
}

fn is_release_document(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    let upper = name.to_ascii_uppercase();
    ["README", "LICENSE", "LICENCE", "COPYING", "CHANGELOG"]
        .iter()
        .any(|prefix| upper.starts_with(prefix))
}

/// What goes into one archive.
#[derive(Debug, Clone)]
pub struct ArchiveSpec<'a> {
    /// The top directory inside the archive (`<bin>-<version>-<target>`).
    pub top_dir: String,
    /// The binary as it ships (stripped), stored as `<top>/<bin name>` with mode 0755:
    /// streamed from this file (a release binary may be hundreds of MB), whose bytes must
    /// still have this digest.
    pub binary: (&'a Path, Sha256Digest),
    /// The binary's name inside the archive.
    pub binary_name: String,
    /// Documents stored as `<top>/<file name>` with mode 0644.
    pub documents: Vec<PathBuf>,
    /// The mtime of every entry.
    pub mtime: u64,
}

/// Writes `spec` as an archive at `dest` in `format`, atomically.
pub fn write_archive(dest: &Path, format: ArchiveFormat, spec: &ArchiveSpec<'_>) -> Result<()> {
    let mut tar = TarBuilder::new();
    tar.dir(&spec.top_dir, tarball::EXEC_MODE);
    let (binary, digest) = spec.binary;
    tar.file_checked(
        &format!("{}/{}", spec.top_dir, spec.binary_name),
        binary,
        digest,
        tarball::EXEC_MODE,
    );
    for doc in &spec.documents {
        let name = doc
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no usable file name", doc.display()))?;
        tar.file_from_disk(&format!("{}/{name}", spec.top_dir), doc, tarball::FILE_MODE);
    }
    // The layers' compressors at their default levels, on every core: the bytes depend on the
    // contents only (no file name or mtime in the gzip header), never on the machine.
    let kind = match format {
        ArchiveFormat::TarGz => CompressionKind::Gzip,
        ArchiveFormat::TarZst => CompressionKind::Zstd,
    };
    atomic::write_file_with(dest, atomic::FILE_MODE, |out| {
        Compression::new(kind, None)?.compress(out, tar.file_bytes(), |w| {
            tar.write_to(w, spec.mtime)?;
            Ok(())
        })?;
        out.flush()?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn list(bytes: &[u8], format: ArchiveFormat) -> Vec<(String, u32, Vec<u8>)> {
        let reader: Box<dyn Read> = match format {
            ArchiveFormat::TarGz => Box::new(flate2::read::GzDecoder::new(bytes)),
            ArchiveFormat::TarZst => Box::new(zstd::Decoder::new(bytes).unwrap()),
        };
        let mut archive = tar::Archive::new(reader);
        archive
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let mut data = Vec::new();
                e.read_to_end(&mut data).unwrap();
                (
                    e.path().unwrap().display().to_string(),
                    e.header().mode().unwrap(),
                    data,
                )
            })
            .collect()
    }

    #[test]
    fn archives_are_real_and_deterministic() {
        let dir = tempfile::tempdir().unwrap();
        let readme = dir.path().join("README.md");
        std::fs::write(&readme, b"# app").unwrap();
        let binary = dir.path().join("app");
        std::fs::write(&binary, b"\x7fELF fake").unwrap();
        let spec = ArchiveSpec {
            top_dir: "app-1.0.0-x86_64-unknown-linux-musl".into(),
            binary: (&binary, Sha256Digest::of(b"\x7fELF fake")),
            binary_name: "app".into(),
            documents: vec![readme],
            mtime: 1_700_000_000,
        };
        for format in [ArchiveFormat::TarGz, ArchiveFormat::TarZst] {
            let a = dir.path().join(format!("a.{format}"));
            let b = dir.path().join(format!("b.{format}"));
            write_archive(&a, format, &spec).unwrap();
            write_archive(&b, format, &spec).unwrap();
            let bytes = std::fs::read(&a).unwrap();
            assert_eq!(bytes, std::fs::read(&b).unwrap());
            let entries = list(&bytes, format);
            assert_eq!(entries.len(), 3);
            assert_eq!(entries[0].0, "app-1.0.0-x86_64-unknown-linux-musl/");
            assert_eq!(entries[2].0, "app-1.0.0-x86_64-unknown-linux-musl/app");
            assert_eq!(entries[2].1, 0o755);
            assert_eq!(entries[1].2, b"# app");
            assert_eq!(entries[2].2, b"\x7fELF fake");
        }
        // A binary changed after it was judged is refused, and no archive is left behind.
        std::fs::write(&binary, b"\x7fELF evil").unwrap();
        let dest = dir.path().join("changed.tar.gz");
        let err = write_archive(&dest, ArchiveFormat::TarGz, &spec).unwrap_err();
        assert!(format!("{err:#}").contains("app"), "{err:#}");
        assert!(!dest.exists());
    }

    #[test]
    fn formats_parse() {
        assert_eq!(
            "tar.zst".parse::<ArchiveFormat>().unwrap(),
            ArchiveFormat::TarZst
        );
        assert!(
            "zip"
                .parse::<ArchiveFormat>()
                .unwrap_err()
                .to_string()
                .contains("Linux")
        );
    }
}
