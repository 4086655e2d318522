//! The few files a real service needs on an otherwise empty file system, each opt-in: a user
//! database with a non-root user, CA certificates, a writable `/tmp`, time zone data.
//!
//! They go in a layer of their own, below the binary's, so every image built with the same
//! essentials shares that blob. The layout follows distroless/static: `root` (0), `nobody`
//! (65534) and `nonroot` (65532) with `/sbin/nologin`, `/home/nonroot` 0700 owned by nonroot,
//! `/tmp` 01777, the bundle at `/etc/ssl/certs/ca-certificates.crt`.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::error;
use crate::input::{self, Links};
use crate::tarball::{self, TarBuilder};

/// The non-root user every image runs as by default (distroless's `nonroot`).
pub const NONROOT_UID: u32 = 65532;

/// Where the CA bundle goes in the image (the Debian path, which OpenSSL, rustls-native-certs
/// and Go all look at).
pub const CA_BUNDLE_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Where time zone data goes in the image.
pub const ZONEINFO_PATH: &str = "/usr/share/zoneinfo";

/// Host CA bundles, in the order they are looked for (Debian/Ubuntu/Alpine, Fedora/RHEL,
/// openSUSE, BSD-style).
pub const HOST_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// One optional part of the essentials layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Essential {
    /// `/etc/passwd`, `/etc/group` and `/home/nonroot`.
    Passwd,
    /// The CA bundle at [`CA_BUNDLE_PATH`], with `SSL_CERT_FILE` set.
    CaCerts,
    /// `/tmp` with mode 01777.
    Tmp,
    /// `/usr/share/zoneinfo` from the host (only when asked: it is about 1 MiB compressed).
    Tzdata,
}

impl Essential {
    /// What `--essentials` turns on: everything but tzdata.
    pub const DEFAULT_SET: [Essential; 3] = [Essential::Passwd, Essential::CaCerts, Essential::Tmp];

    /// The name used in flags and `Cargo.toml`.
    pub fn as_str(self) -> &'static str {
        match self {
            Essential::Passwd => "passwd",
            Essential::CaCerts => "ca-certs",
            Essential::Tmp => "tmp",
            Essential::Tzdata => "tzdata",
        }
    }
}

impl fmt::Display for Essential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Essential {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "passwd" => Ok(Essential::Passwd),
            "ca-certs" | "ca-certificates" => Ok(Essential::CaCerts),
            "tmp" => Ok(Essential::Tmp),
            "tzdata" => Ok(Essential::Tzdata),
            other => Err(error::input(format!(
                "unknown essential `{other}`: use passwd, ca-certs, tmp or tzdata"
            ))),
        }
    }
}

/// What to put in the essentials layer.
#[derive(Debug, Clone, Default)]
pub struct EssentialsOptions {
    /// The parts wanted.
    pub items: BTreeSet<Essential>,
    /// The CA bundle to copy (default: the first of [`HOST_CA_BUNDLES`] that exists).
    pub ca_bundle: Option<PathBuf>,
    /// The zoneinfo directory to copy (default: the host's `/usr/share/zoneinfo`).
    pub zoneinfo: Option<PathBuf>,
}

/// What went into the essentials layer, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Essentials {
    /// The parts included.
    pub items: Vec<Essential>,
    /// The CA bundle copied, where it came from and its digest.
    pub ca_bundle: Option<CopiedFile>,
    /// The zoneinfo directory copied and how many zones it holds.
    pub zoneinfo: Option<CopiedTree>,
    /// Environment variables the config must set (`SSL_CERT_FILE`).
    pub env: Vec<(String, String)>,
}

/// A host file copied into the image.
#[derive(Debug, Clone, Serialize)]
pub struct CopiedFile {
    /// Where it was read from.
    pub source: PathBuf,
    /// Where it is in the image.
    pub path: String,
    /// Its digest, so a changed host bundle explains a changed layer.
    pub sha256: Sha256Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// A host directory copied into the image.
#[derive(Debug, Clone, Serialize)]
pub struct CopiedTree {
    /// Where it was read from.
    pub source: PathBuf,
    /// Where it is in the image.
    pub path: String,
    /// Regular files copied.
    pub files: usize,
    /// Symbolic links kept (relative ones that stay inside the tree).
    pub links: usize,
}

/// The distroless user database: `root`, `nobody` and `nonroot`, none with a login shell.
pub fn passwd() -> String {
    format!(
        "root:x:0:0:root:/root:/sbin/nologin\n\
         nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
         nonroot:x:{NONROOT_UID}:{NONROOT_UID}:nonroot:/home/nonroot:/sbin/nologin\n"
    )
}

/// The groups matching [`passwd`].
pub fn group() -> String {
    format!("root:x:0:\nnobody:x:65534:\nnonroot:x:{NONROOT_UID}:\n")
}

impl Essential {
    /// The paths this item writes, relative, each with whether it is a directory (the files
    /// of `tzdata` are everything under its directory).
    pub fn paths(self) -> Vec<(String, bool)> {
        let relative = |path: &str| path.trim_start_matches('/').to_owned();
        match self {
            Essential::Passwd => vec![
                ("etc/passwd".to_owned(), false),
                ("etc/group".to_owned(), false),
                ("root".to_owned(), true),
                ("home/nonroot".to_owned(), true),
            ],
            Essential::CaCerts => vec![(relative(CA_BUNDLE_PATH), false)],
            Essential::Tmp => vec![("tmp".to_owned(), true)],
            Essential::Tzdata => vec![(relative(ZONEINFO_PATH), true)],
        }
    }
}

/// Builds the essentials layer's tree; None when no essential was asked for.
pub fn essentials_tar(options: &EssentialsOptions) -> Result<Option<(TarBuilder, Essentials)>> {
    if options.items.is_empty() {
        return Ok(None);
    }
    let mut tar = TarBuilder::new();
    let mut report = Essentials {
        items: options.items.iter().copied().collect(),
        ca_bundle: None,
        zoneinfo: None,
        env: Vec::new(),
    };
    for item in &options.items {
        match item {
            Essential::Passwd => {
                tar.file("etc/passwd", passwd(), tarball::FILE_MODE);
                tar.file("etc/group", group(), tarball::FILE_MODE);
                tar.dir("root", 0o700);
                tar.dir("home/nonroot", 0o700).owner(
                    "home/nonroot",
                    NONROOT_UID.into(),
                    NONROOT_UID.into(),
                );
            }
            Essential::CaCerts => {
                let (copied, bytes) = ca_bundle(options.ca_bundle.as_deref())?;
                // The bytes checked and hashed are the bytes shipped.
                tar.file(
                    CA_BUNDLE_PATH.trim_start_matches('/'),
                    bytes,
                    tarball::FILE_MODE,
                );
                report
                    .env
                    .push(("SSL_CERT_FILE".to_owned(), CA_BUNDLE_PATH.to_owned()));
                report.ca_bundle = Some(copied);
            }
            Essential::Tmp => {
                tar.dir("tmp", 0o1777);
            }
            Essential::Tzdata => {
                let source = options
                    .zoneinfo
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(ZONEINFO_PATH));
                report.zoneinfo = Some(add_zoneinfo(&mut tar, &source)?);
            }
        }
    }
    Ok(Some((tar, report)))
}

/// Finds, reads and checks the CA bundle: the one given, else the host's. Read as any hostile
/// input (a FIFO or device named by mistake is refused, never waited on), up to 64 MiB.
fn ca_bundle(given: Option<&Path>) -> Result<(CopiedFile, Vec<u8>)> {
    let source = match given {
        Some(path) => path.to_path_buf(),
        None => HOST_CA_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| {
                error::environment(format!(
                    "no CA bundle found on this machine (looked for {}); install the \
                     ca-certificates package or name a bundle with --ca-bundle FILE",
                    HOST_CA_BUNDLES.join(", ")
                ))
            })?,
    };
    let text = input::read_regular(&source, Links::Follow, input::MAX_TEXT_INPUT)
        .map_err(|e| error::input(format!("cannot read the CA bundle: {e:#}")))?;
    if !text
        .windows(b"-----BEGIN CERTIFICATE-----".len())
        .any(|w| w == b"-----BEGIN CERTIFICATE-----")
    {
        return Err(error::input(format!(
            "{} is not a PEM CA bundle (it holds no `-----BEGIN CERTIFICATE-----`); name a \
             bundle of PEM certificates with --ca-bundle FILE",
            source.display()
        )));
    }
    let copied = CopiedFile {
        source,
        path: CA_BUNDLE_PATH.to_owned(),
        sha256: Sha256Digest::of(&text),
        size: text.len() as u64,
    };
    Ok((copied, text))
}

/// Adds the zoneinfo tree under `source` to `tar`. The `posix/` and `right/` copies are left
/// out (the same zones again, or with leap seconds no service wants), and so are links that are
/// absolute or leave the tree.
fn add_zoneinfo(tar: &mut TarBuilder, source: &Path) -> Result<CopiedTree> {
    if !source.is_dir() {
        return Err(error::environment(format!(
            "no time zone data at {}: install the tzdata package or name a zoneinfo directory \
             with --zoneinfo DIR",
            source.display()
        )));
    }
    let prefix = ZONEINFO_PATH.trim_start_matches('/');
    let mut tree = CopiedTree {
        source: source.to_path_buf(),
        path: ZONEINFO_PATH.to_owned(),
        files: 0,
        links: 0,
    };
    let walker = walkdir::WalkDir::new(source)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            !(e.depth() == 1 && matches!(e.file_name().to_str(), Some("posix" | "right")))
        });
    for entry in walker {
        let entry = entry.map_err(|e| {
            error::input(format!(
                "cannot read time zone data in {}: {e}",
                source.display()
            ))
        })?;
        let relative = entry
            .path()
            .strip_prefix(source)
            .map_err(|e| anyhow::anyhow!("{}: {e}", entry.path().display()))?;
        let Some(relative) = relative.to_str() else {
            continue;
        };
        let in_image = format!("{prefix}/{relative}");
        let kind = entry.file_type();
        if kind.is_dir() {
            tar.dir(&in_image, tarball::EXEC_MODE);
        } else if kind.is_file() {
            tar.file_from_disk(&in_image, entry.path(), tarball::FILE_MODE);
            tree.files += 1;
        } else if kind.is_symlink() {
            let target = std::fs::read_link(entry.path()).map_err(|e| {
                error::input(format!("cannot read {}: {e}", entry.path().display()))
            })?;
            let Some(resolved) = Path::new(relative).parent().map(|p| p.join(&target)) else {
                continue;
            };
            if target.is_relative() && tarball::safe_entry_path(&normalize(&resolved), None).is_ok()
            {
                tar.insert(
                    &in_image,
                    tarball::Entry::Symlink {
                        target: target.to_string_lossy().into_owned(),
                    },
                );
                tree.links += 1;
            }
        }
    }
    if tree.files == 0 {
        return Err(error::input(format!(
            "{} holds no time zone files; name a zoneinfo directory with --zoneinfo DIR",
            source.display()
        )));
    }
    Ok(tree)
}

/// Resolves `.` and `..` lexically (a leading `..` is kept, so an escaping link stays visible).
fn normalize(path: &Path) -> PathBuf {
    let mut out: Vec<std::path::Component<'_>> = Vec::new();
    for component in path.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir
                if matches!(out.last(), Some(std::path::Component::Normal(_))) =>
            {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out.iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(tar: &TarBuilder) -> Vec<(String, u32, u64)> {
        let bytes = tar.to_bytes(0).unwrap();
        tar::Archive::new(bytes.as_slice())
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().mode().unwrap(),
                    e.header().uid().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn passwd_and_tmp_match_distroless() {
        let options = EssentialsOptions {
            items: [Essential::Passwd, Essential::Tmp].into(),
            ..Default::default()
        };
        let (tar, report) = essentials_tar(&options).unwrap().unwrap();
        assert!(report.env.is_empty());
        let entries = listing(&tar);
        assert!(entries.contains(&("tmp/".into(), 0o1777, 0)));
        assert!(entries.contains(&("home/nonroot/".into(), 0o700, 65532)));
        assert!(entries.contains(&("etc/passwd".into(), 0o644, 0)));
        assert!(passwd().contains("nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin"));
        assert!(group().contains("nonroot:x:65532:"));
        assert!(
            essentials_tar(&EssentialsOptions::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn ca_bundle_must_be_pem() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bundle.pem");
        std::fs::write(&bad, "not a certificate").unwrap();
        let options = EssentialsOptions {
            items: [Essential::CaCerts].into(),
            ca_bundle: Some(bad.clone()),
            ..Default::default()
        };
        let err = essentials_tar(&options).unwrap_err().to_string();
        assert!(
            err.contains("not a PEM CA bundle") && err.contains("bundle.pem"),
            "{err}"
        );

        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let (tar, report) = essentials_tar(&options).unwrap().unwrap();
        assert_eq!(
            report.env,
            [("SSL_CERT_FILE".to_owned(), CA_BUNDLE_PATH.to_owned())]
        );
        assert_eq!(report.ca_bundle.unwrap().source, bad);
        assert!(
            listing(&tar)
                .iter()
                .any(|e| e.0 == "etc/ssl/certs/ca-certificates.crt")
        );
    }

    #[test]
    fn zoneinfo_keeps_inner_links_only() {
        let dir = tempfile::tempdir().unwrap();
        let zi = dir.path().join("zoneinfo");
        std::fs::create_dir_all(zi.join("Europe")).unwrap();
        std::fs::create_dir_all(zi.join("right")).unwrap();
        std::fs::write(zi.join("Europe/Paris"), b"TZif").unwrap();
        std::fs::write(zi.join("right/UTC"), b"TZif").unwrap();
        std::os::unix::fs::symlink("Europe/Paris", zi.join("CET")).unwrap();
        std::os::unix::fs::symlink("/etc/localtime", zi.join("localtime")).unwrap();
        std::os::unix::fs::symlink("../../etc/shadow", zi.join("Europe/Evil")).unwrap();
        let options = EssentialsOptions {
            items: [Essential::Tzdata].into(),
            zoneinfo: Some(zi),
            ..Default::default()
        };
        let (tar, report) = essentials_tar(&options).unwrap().unwrap();
        let zoneinfo = report.zoneinfo.unwrap();
        assert_eq!((zoneinfo.files, zoneinfo.links), (1, 1));
        let paths: Vec<String> = listing(&tar).into_iter().map(|e| e.0).collect();
        assert!(paths.contains(&"usr/share/zoneinfo/CET".to_owned()));
        assert!(paths.contains(&"usr/share/zoneinfo/Europe/Paris".to_owned()));
        assert!(
            !paths
                .iter()
                .any(|p| p.contains("right") || p.contains("Evil") || p.contains("localtime"))
        );
    }
}
