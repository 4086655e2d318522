//! Base images made in the test: a distroless-like base built with umoci (a user database with
//! nonroot, `/tmp`, `/home/nonroot`, a marker file, and a shell: dash with the glibc it needs,
//! so a test can look inside a running container), crafted hostile bases, and podman in
//! throwaway storage (the vfs driver), also serving the Docker Engine API on a unix socket.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use airlock::Sha256Digest;
use airlock::oci::layout::{LayoutWriter, with_ref_name};
use oci_spec::image::{
    Arch, Descriptor, ImageConfigurationBuilder, ImageIndexBuilder, ImageManifestBuilder,
    MediaType, Os, PlatformBuilder, RootFsBuilder,
};

use super::{require_tool, run_expect};

/// What the distroless-like base's `/etc/base-release` says.
pub const BASE_RELEASE: &str = "distroless-like test base 1";

/// A distroless-like base made by umoci: `oci:<dir>/base:base`.
pub struct UmociBase {
    pub layout: PathBuf,
    pub tag: &'static str,
    /// The manifest's digest.
    pub digest: Sha256Digest,
    /// Its one layer's digest.
    pub layer: Sha256Digest,
}

impl UmociBase {
    pub fn reference(&self) -> String {
        format!("oci:{}:{}", self.layout.display(), self.tag)
    }
}

/// Builds the base in `dir` with umoci; None (skipped) when umoci is missing. The config says
/// `User 65532`, `WorkingDir /home/nonroot`, `PATH=/usr/local/bin:/bin` and `BASE_MARKER=1`.
pub fn umoci_base(dir: &Path) -> Option<UmociBase> {
    let umoci = require_tool("umoci")?;
    let layout = dir.join("base");
    let bundle = dir.join("base-bundle");
    let image = format!("{}:base", layout.display());
    let run = |args: &[&str]| {
        run_expect(Command::new(&umoci).args(args), 0);
    };
    run(&["init", "--layout", layout.to_str().unwrap()]);
    run(&["new", "--image", &image]);
    run(&["unpack", "--image", &image, bundle.to_str().unwrap()]);
    let rootfs = bundle.join("rootfs");
    let write = |path: &str, text: &str| {
        let path = rootfs.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("etc/base-release", &format!("{BASE_RELEASE}\n"));
    write(
        "etc/passwd",
        "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n",
    );
    write("etc/group", "root:x:0:\nnonroot:x:65532:\n");
    for (dir, mode) in [("tmp", 0o1777), ("home/nonroot", 0o700)] {
        let path = rootfs.join(dir);
        std::fs::create_dir_all(&path).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::os::unix::fs::chown(rootfs.join("home/nonroot"), Some(65532), Some(65532)).unwrap();
    add_shell(&rootfs);
    run(&["repack", "--image", &image, bundle.to_str().unwrap()]);
    run(&[
        "config",
        "--image",
        &image,
        "--config.user",
        "65532",
        "--config.workingdir",
        "/home/nonroot",
        "--config.env",
        "PATH=/usr/local/bin:/bin",
        "--config.env",
        "BASE_MARKER=1",
    ]);
    let layout_index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest: Sha256Digest = layout_index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(layout.join("blobs/sha256").join(digest.hex())).unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    Some(UmociBase {
        layout,
        tag: "base",
        digest,
        layer,
    })
}

/// `/bin/sh`: the host's dash and the shared libraries `ldd` says it needs, at their paths.
fn add_shell(rootfs: &Path) {
    let dash = airlock::process::find_on_path("dash").expect("dash");
    let bin = rootfs.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(&dash, bin.join("sh")).unwrap();
    let ldd = Command::new("ldd").arg(&dash).output().unwrap();
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        let path = line
            .split_whitespace()
            .find(|word| word.starts_with('/'))
            .map(PathBuf::from);
        let Some(path) = path else { continue };
        let target = rootfs.join(path.strip_prefix("/").unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&path, &target).unwrap();
    }
}

/// A gzip'd tar layer from raw entries `(path, type, link target, bytes)`, written with the
/// `tar` crate's raw headers so hostile names survive; and its diff ID.
pub fn raw_layer(
    entries: &[(&str, tar::EntryType, Option<&str>, &[u8])],
) -> (Vec<u8>, Sha256Digest) {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind, link, bytes) in entries {
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(*kind);
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        let name = header.as_old_mut().name.as_mut();
        name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(link) = link {
            let field = header.as_old_mut().linkname.as_mut();
            field[..link.len()].copy_from_slice(link.as_bytes());
        }
        header.set_cksum();
        builder.append(&header, *bytes).unwrap();
    }
    let tar = builder.into_inner().unwrap();
    let diff_id = Sha256Digest::of(&tar);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, &tar).unwrap();
    (gz.finish().unwrap(), diff_id)
}

/// Writes a manifest for `arch` with `layers` (blob, diff ID as the config names it) into
/// `writer`; returns its descriptor with the platform set.
pub fn manifest_for(
    writer: &LayoutWriter,
    arch: Arch,
    variant: Option<&str>,
    layers: &[(Vec<u8>, Sha256Digest)],
) -> Descriptor {
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    for (blob, diff_id) in layers {
        descriptors.push(writer.put_blob(MediaType::ImageLayerGzip, blob).unwrap());
        diff_ids.push(diff_id.to_string());
    }
    let mut config = ImageConfigurationBuilder::default()
        .architecture(arch.clone())
        .os(Os::Linux)
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(diff_ids)
                .build()
                .unwrap(),
        );
    if let Some(variant) = variant {
        config = config.variant(variant);
    }
    let (config, _) = writer
        .put_json(MediaType::ImageConfig, &config.build().unwrap())
        .unwrap();
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .config(config)
        .layers(descriptors)
        .build()
        .unwrap();
    let (mut descriptor, _) = writer
        .put_json(MediaType::ImageManifest, &manifest)
        .unwrap();
    let mut platform = PlatformBuilder::default().os(Os::Linux).architecture(arch);
    if let Some(variant) = variant {
        platform = platform.variant(variant);
    }
    descriptor.set_platform(Some(platform.build().unwrap()));
    descriptor
}

/// A layout at `path` whose `tag` is `top` (a manifest, or an index over `manifests`).
pub fn finish_layout(writer: LayoutWriter, tag: &str, manifests: Vec<Descriptor>) -> Sha256Digest {
    let top = if let [only] = manifests.as_slice() {
        let mut only = only.clone();
        only.set_platform(None);
        only
    } else {
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageIndex)
            .manifests(manifests)
            .build()
            .unwrap();
        writer.put_json(MediaType::ImageIndex, &index).unwrap().0
    };
    let digest = Sha256Digest::try_from(top.digest()).unwrap();
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .manifests(vec![with_ref_name(top, tag)])
        .build()
        .unwrap();
    writer.finish(&index).unwrap();
    digest
}

/// podman with its storage in `dir` (vfs driver, as this sandbox needs), for the commands of
/// the test and, through `CONTAINERS_STORAGE_CONF`, for the ones airlock runs.
pub struct Podman {
    pub binary: PathBuf,
    pub root: PathBuf,
    pub runroot: PathBuf,
    pub storage_conf: PathBuf,
    service: Option<Child>,
}

impl Podman {
    /// None (skipped) when podman is missing.
    pub fn new(dir: &Path) -> Option<Podman> {
        let binary = require_tool("podman")?;
        let root = dir.join("podman-root");
        let runroot = dir.join("podman-run");
        let storage_conf = dir.join("storage.conf");
        std::fs::write(
            &storage_conf,
            format!(
                "[storage]\ndriver = \"vfs\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                root.display(),
                runroot.display()
            ),
        )
        .unwrap();
        Some(Podman {
            binary,
            root,
            runroot,
            storage_conf,
            service: None,
        })
    }

    /// `podman --storage-driver vfs --root … --runroot …`.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.args(["--storage-driver", "vfs", "--root"])
            .arg(&self.root)
            .arg("--runroot")
            .arg(&self.runroot);
        cmd
    }

    /// `podman system service` on a unix socket in `dir`, serving the Docker-compatible API
    /// from this storage; returns the socket once it answers.
    pub fn serve(&mut self, dir: &Path) -> PathBuf {
        let socket = dir.join("docker.sock");
        let log = std::fs::File::create(dir.join("podman-service.log")).unwrap();
        let child = self
            .cmd()
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.service = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "podman system service did not start:\n{}",
                std::fs::read_to_string(dir.join("podman-service.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        socket
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        if let Some(mut child) = self.service.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.cmd().args(["rmi", "--all", "--force"]).output();
    }
}
