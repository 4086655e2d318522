//! Every command's arguments, declared with clap's derive API, and their conversion into the
//! library's plain options structs (clap types never enter the library).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand, ValueEnum};

use airlock::render::Format;
use airlock::target::TargetTriple;

/// Fully static Rust binaries, scratch OCI images and air-gap-proven dependencies.
///
/// Exit codes: 0 ok, 1 a check failed, 2 usage or input error, 3 environment missing.
#[derive(Debug, Parser)]
#[command(
    name = "cargo-airlock",
    bin_name = "cargo airlock",
    version,
    propagate_version = true
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Path to the workspace's Cargo.toml.
    #[arg(long, global = true, value_name = "PATH")]
    pub manifest_path: Option<PathBuf>,
    /// Output format of the result on stdout.
    #[arg(long, global = true, value_enum, default_value_t = FormatArg::Human)]
    pub format: FormatArg,
    /// Print only results and errors.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more detail on stderr (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

impl GlobalArgs {
    /// -1 quiet, 0 normal, 1+ verbose.
    pub fn verbosity(&self) -> i8 {
        if self.quiet {
            -1
        } else {
            self.verbose.min(3) as i8
        }
    }
}

/// `--format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Tables for people.
    Human,
    /// JSON for CI and scripts.
    Json,
    /// Markdown (report).
    Markdown,
    /// SVG chart (report).
    Svg,
}

impl From<FormatArg> for Format {
    fn from(value: FormatArg) -> Format {
        match value {
            FormatArg::Human => Format::Human,
            FormatArg::Json => Format::Json,
            FormatArg::Markdown => Format::Markdown,
            FormatArg::Svg => Format::Svg,
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Build fully static musl binaries and prove them static.
    Build(BuildCommandArgs),
    /// Show the ELF linkage of binaries: static, static-pie or dynamic.
    Inspect(InspectArgs),
    /// Check this machine for what each target needs, with the command that installs it.
    Doctor(DoctorArgs),
    /// Vendor every locked dependency, proven against Cargo.lock.
    Vendor(VendorArgs),
    /// Verify vendored sources, bundles, SHA256SUMS or OCI layouts.
    Verify(VerifyArgs),
    /// Package static binaries as a scratch OCI image, without a container engine.
    Image(Box<ImageArgs>),
    /// Push an image or index from a layout to a registry.
    Push(PushArgs),
    /// Report image and binary sizes side by side; enforce size budgets.
    Report(ReportArgs),
    /// Run the whole release chain: build, archives, sums, SBOM, image, report.
    Dist(DistArgs),
    /// Add an xtask crate, the cargo xtask alias and CI workflows to a workspace.
    Init(InitArgs),
    /// Write a cosign-compatible key pair (ECDSA P-256, encrypted private key).
    Keygen(KeygenArgs),
    /// Sign a layout's images, a release directory or a file, with a cosign key.
    Sign(SignArgs),
}

/// Targets: repeatable `--target`, where `all` and `every` name sets of musl targets.
#[derive(Debug, Args, Clone, Default)]
pub struct TargetArgs {
    /// Target triple to build for (repeatable; `all` = x86_64 and aarch64 musl; `every` = those
    /// and armv7, riscv64gc, powerpc64le and i686 musl; default: the host's musl triple).
    #[arg(long = "target", value_name = "TRIPLE")]
    pub targets: Vec<String>,
}

impl TargetArgs {
    /// The triples, with `all` and `every` expanded and duplicates removed, in the order given.
    pub fn triples(&self) -> Result<Vec<TargetTriple>> {
        let mut triples: Vec<TargetTriple> = Vec::new();
        for value in &self.targets {
            let expanded =
                TargetTriple::expand(value).map_err(|e: airlock::target::ParseTargetError| {
                    airlock::error::input(e.to_string())
                })?;
            for t in expanded {
                if !triples.contains(&t) {
                    triples.push(t);
                }
            }
        }
        Ok(triples)
    }
}

/// How to build: the flags of `cargo airlock build` that `image` and `dist` share.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Package to build (repeatable; default: every member with a binary).
    #[arg(short, long = "package", value_name = "SPEC")]
    pub packages: Vec<String>,
    /// Binary to build (repeatable; default: all).
    #[arg(long = "bin", value_name = "NAME")]
    pub bins: Vec<String>,
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Cargo profile.
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// Features to activate (space or comma separated, repeatable).
    #[arg(short = 'F', long, value_name = "FEATURES")]
    pub features: Vec<String>,
    /// Activate all features.
    #[arg(long)]
    pub all_features: bool,
    /// Do not activate the default feature.
    #[arg(long)]
    pub no_default_features: bool,
    /// Require Cargo.lock to be up to date (passed to cargo).
    #[arg(long)]
    pub locked: bool,
    /// Require Cargo.lock and the cache to be up to date (passed to cargo).
    #[arg(long)]
    pub frozen: bool,
    /// Run without accessing the network (passed to cargo).
    #[arg(long)]
    pub offline: bool,
    /// Do not embed each binary's dependency list (a `.dep-v0` section in cargo-auditable's
    /// format, which rust-audit-info, cargo audit bin, syft and trivy read).
    #[arg(long)]
    pub no_embed_deps: bool,
}

/// `cargo airlock build`: the build flags other commands share, and its own.
#[derive(Debug, Args)]
pub struct BuildCommandArgs {
    #[command(flatten)]
    pub build: BuildArgs,
    /// Report dynamically linked binaries without failing (e.g. a `*-linux-gnu` build to
    /// compare with).
    #[arg(long)]
    pub allow_dynamic: bool,
}

impl BuildCommandArgs {
    /// The library's options.
    pub fn to_options(&self, global: &GlobalArgs) -> Result<airlock::compile::BuildOptions> {
        Ok(airlock::compile::BuildOptions {
            allow_dynamic: self.allow_dynamic,
            ..self.build.to_options(global)?
        })
    }
}

impl BuildArgs {
    /// The library's options.
    pub fn to_options(&self, global: &GlobalArgs) -> Result<airlock::compile::BuildOptions> {
        Ok(airlock::compile::BuildOptions {
            manifest_path: global.manifest_path.clone(),
            packages: self.packages.clone(),
            bins: self.bins.clone(),
            targets: self.targets.triples()?,
            profile: self.profile.clone(),
            features: self.features.clone(),
            all_features: self.all_features,
            no_default_features: self.no_default_features,
            locked: self.locked,
            frozen: self.frozen,
            offline: self.offline,
            allow_dynamic: false,
            no_embed_deps: self.no_embed_deps,
        })
    }
}

/// `cargo airlock inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// ELF files to inspect.
    #[arg(value_name = "FILE", required = true)]
    pub files: Vec<PathBuf>,
    /// Report dynamic binaries without failing.
    #[arg(long)]
    pub allow_dynamic: bool,
    /// Fail when a file is not for this target's architecture.
    #[arg(long, value_name = "TRIPLE")]
    pub target: Option<String>,
}

impl InspectArgs {
    /// The library's options.
    pub fn to_options(&self) -> Result<airlock::elf::InspectOptions> {
        let expect_arch = match &self.target {
            None => None,
            Some(t) => {
                let triple: TargetTriple =
                    t.parse().map_err(|e: airlock::target::ParseTargetError| {
                        airlock::error::input(e.to_string())
                    })?;
                Some(triple.arch().ok_or_else(|| {
                    airlock::error::input(format!(
                        "airlock does not know the architecture of `{t}`"
                    ))
                })?)
            }
        };
        Ok(airlock::elf::InspectOptions {
            files: self.files.clone(),
            allow_dynamic: self.allow_dynamic,
            expect_arch,
        })
    }
}

/// `cargo airlock doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Targets to check (default: `all`; `every` for every musl target airlock knows).
    #[command(flatten)]
    pub targets: TargetArgs,
}

impl DoctorArgs {
    /// The library's options.
    pub fn to_options(&self, global: &GlobalArgs) -> Result<airlock::compile::DoctorOptions> {
        Ok(airlock::compile::DoctorOptions {
            manifest_path: global.manifest_path.clone(),
            targets: self.targets.triples()?,
        })
    }
}

/// `cargo airlock vendor`.
#[derive(Debug, Args)]
pub struct VendorArgs {
    /// Where to write the vendored sources (with --from-bundle too).
    #[arg(value_name = "DIR", default_value = "vendor")]
    pub dir: PathBuf,
    /// Use only what cargo's cache already holds: do not run `cargo fetch --locked`.
    #[arg(long)]
    pub offline: bool,
    /// Name every directory NAME-VERSION (default: only when two versions exist).
    #[arg(long)]
    pub versioned_dirs: bool,
    /// Keep sources only for crates this target needs; stubs for the others (repeatable).
    #[arg(long = "platform", value_name = "TRIPLE")]
    pub platforms: Vec<String>,
    /// Merge the source replacement into the project's .cargo/config.toml (or the legacy
    /// .cargo/config) instead of only printing it; a conflicting replacement is refused first.
    #[arg(long)]
    pub write_config: bool,
    /// Write an air-gap bundle (pristine .crate files, Cargo.lock, manifest) instead of a
    /// directory.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["from_bundle", "platforms", "write_config"])]
    pub bundle: Option<PathBuf>,
    /// Vendor from a bundle: no network, no CARGO_HOME; every .crate checked first.
    #[arg(long, value_name = "FILE", conflicts_with = "offline")]
    pub from_bundle: Option<PathBuf>,
}

impl VendorArgs {
    /// The library's options.
    pub fn to_options(&self, global: &GlobalArgs) -> airlock::vendoring::VendorOptions {
        airlock::vendoring::VendorOptions {
            manifest_path: global.manifest_path.clone(),
            dir: self.dir.clone(),
            offline: self.offline,
            versioned_dirs: self.versioned_dirs,
            platforms: self.platforms.clone(),
            write_config: self.write_config,
            bundle: self.bundle.clone(),
            from_bundle: self.from_bundle.clone(),
            cargo_home: None,
        }
    }
}

/// `cargo airlock verify`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).multiple(true))]
pub struct VerifyArgs {
    /// A vendor directory to check against Cargo.lock, file by file.
    #[arg(long, value_name = "DIR", group = "what")]
    pub vendor: Option<PathBuf>,
    /// A bundle to check against Cargo.lock; with --vendor, also the pristine .crate files to
    /// compare the vendored files with.
    #[arg(long, value_name = "FILE", group = "what")]
    pub bundle: Option<PathBuf>,
    /// A SHA256SUMS file: every file it lists (beside it) must have its digest.
    #[arg(long, value_name = "FILE", group = "what")]
    pub sums: Option<PathBuf>,
    /// A dist-manifest.json: every artifact, image and SBOM of the release directory beside it.
    #[arg(long, value_name = "FILE", group = "what")]
    pub manifest: Option<PathBuf>,
    /// An OCI image layout: every blob against its digest, every referenced blob present.
    #[arg(long, value_name = "DIR", group = "what")]
    pub layout: Option<PathBuf>,
    /// A release directory (`dist`'s output): rebuild it from its provenance in a clean
    /// checkout of the recorded revision and compare every artifact byte for byte.
    #[arg(long, value_name = "DIR", group = "what")]
    pub rebuild: Option<PathBuf>,
    /// A release directory (`dist`'s output), whole and offline, against the release key
    /// (--key): SHA256SUMS.sig and every file it lists, dist-manifest.json, every image
    /// signature in DIR/image, the provenance's signature and subjects, the SBOM attachments,
    /// and every binary's embedded dependencies against the provenance's.
    #[arg(long, value_name = "DIR", group = "what", requires = "key")]
    pub release: Option<PathBuf>,
    /// With --layout: every image must carry a signature by this cosign public key (the
    /// `sha256-<digest>.sig` tag or a signature referrer) naming its digest. With --release:
    /// the release's public key.
    #[arg(long, value_name = "KEY.pub")]
    pub key: Option<PathBuf>,
    /// The Cargo.lock to check against (default: the workspace's).
    #[arg(long, value_name = "PATH")]
    pub lockfile: Option<PathBuf>,
    /// Do not use cargo's cache for pristine .crate files.
    #[arg(long)]
    pub no_cache: bool,
}

impl VerifyArgs {
    /// The library's options.
    pub fn to_options(&self, global: &GlobalArgs) -> airlock::verify::VerifyOptions {
        airlock::verify::VerifyOptions {
            manifest_path: global.manifest_path.clone(),
            lockfile: self.lockfile.clone(),
            vendor: self.vendor.clone(),
            bundle: self.bundle.clone(),
            no_cache: self.no_cache,
            cargo_home: None,
            sums: self.sums.clone(),
            manifest: self.manifest.clone(),
            layout: self.layout.clone(),
            rebuild: self.rebuild.clone(),
            release: self.release.clone(),
            key: self.key.clone(),
        }
    }
}

/// `cargo airlock image`.
#[derive(Debug, Args)]
pub struct ImageArgs {
    /// How to build the binaries (`--bin` chooses the image's binaries, the first is the
    /// entrypoint).
    #[command(flatten)]
    pub build: BuildArgs,
    /// Package this prebuilt binary instead of building (repeatable; the architecture is read
    /// from the ELF header, one image per architecture).
    #[arg(long = "binary", value_name = "FILE", conflicts_with_all = ["packages", "bins"])]
    pub binaries: Vec<PathBuf>,
    /// Package dynamically linked binaries anyway (they will not start in a scratch image).
    #[arg(long)]
    pub allow_dynamic: bool,
    /// The OCI layout directory to write or add to, `DIR` or `oci:DIR:TAG` [default:
    /// target/airlock/image, or none when only --archive is given].
    #[arg(short, long, value_name = "DIR")]
    pub output: Option<String>,
    /// Also write the image as one tar (`oci-archive`, with a manifest.json for `docker load`).
    #[arg(long, value_name = "FILE.tar")]
    pub archive: Option<PathBuf>,
    /// Tag of the image in the layout (repeatable) [default: the package version].
    #[arg(short, long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Repository name the archive loads as [default: the package name].
    #[arg(long, value_name = "NAME")]
    pub repository: Option<String>,
    /// Layer compression [default: gzip].
    #[arg(long, value_name = "gzip|zstd", value_parser = parse_compression)]
    pub compression: Option<airlock::oci::layer::CompressionKind>,
    /// Compression level [default: 7 for gzip (libdeflate's levels, 0 to 12), 19 for zstd].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub level: Option<i32>,
    /// Add the essentials layer: /etc/passwd and /etc/group (nonroot 65532), CA certificates,
    /// /tmp (tzdata only with --essential tzdata).
    #[arg(long)]
    pub essentials: bool,
    /// Add one essential: passwd, ca-certs, tmp, tzdata (repeatable or comma separated).
    #[arg(long = "essential", value_name = "ITEM", value_delimiter = ',', value_parser = parse_essential)]
    pub essential: Vec<airlock::oci::essentials::Essential>,
    /// CA bundle to put at /etc/ssl/certs/ca-certificates.crt [default: the host's].
    #[arg(long, value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,
    /// Time zone directory to copy to /usr/share/zoneinfo [default: the host's].
    #[arg(long, value_name = "DIR")]
    pub zoneinfo: Option<PathBuf>,
    /// Entrypoint (repeat for arguments) [default: /usr/local/bin/<binary>].
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub entrypoint: Vec<String>,
    /// Default arguments, `Cmd` (repeatable).
    #[arg(long, value_name = "ARG", allow_hyphen_values = true)]
    pub cmd: Vec<String>,
    /// Environment variable KEY=VALUE (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Working directory of the process.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// Exposed port, PORT or PORT/tcp|udp|sctp (repeatable).
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<String>,
    /// Label KEY=VALUE in the config (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,
    /// Annotation KEY=VALUE on the manifest (repeatable).
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// User the process runs as [default: the base's, else 65532:65532].
    #[arg(long, value_name = "USER[:GROUP]")]
    pub user: Option<String>,
    /// Build on this image instead of nothing: `oci:DIR[:TAG]`, `oci-archive:FILE[:TAG]` or
    /// `docker://REGISTRY/REPOSITORY:TAG` (or `@sha256:…`), pulled and cached [default: none].
    #[arg(long, value_name = "REF")]
    pub base: Option<String>,
    /// Where pulled base images are cached [default: $XDG_CACHE_HOME/airlock/bases, else
    /// ~/.cache/airlock/bases].
    #[arg(long, value_name = "DIR", env = "AIRLOCK_BASE_CACHE")]
    pub base_cache: Option<PathBuf>,
    /// Trust this PEM CA certificate too when pulling the base (repeatable).
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
    /// Allow plain HTTP and skip TLS verification when pulling the base (plain HTTP is always
    /// allowed for localhost, 127.0.0.0/8 and `[::1]`).
    #[arg(long)]
    pub insecure: bool,
    /// Add a file or directory to the image, in a layer of its own (repeatable): SRC:DEST with
    /// DEST absolute, and optionally :MODE (octal) for every file.
    #[arg(long = "include", value_name = "SRC:DEST[:MODE]")]
    pub includes: Vec<String>,
    /// Load the finished image into podman (`podman load`) or Docker (the Engine API on
    /// DOCKER_HOST's unix socket).
    #[arg(long, value_name = "podman|docker", value_parser = parse_runtime)]
    pub load: Option<airlock::oci::load::Runtime>,
    /// What to strip from each binary as it goes into the layer: none, debuginfo (DWARF; the
    /// symbol table stays, so panics still name functions) or symbols (DWARF and the symbol
    /// table). The binary on disk and your cargo profile are left as they are; what is removed
    /// goes into a debug file beside (see --debug-dir) [default: debuginfo].
    #[arg(long, value_name = "MODE", value_parser = parse_strip, default_value = "debuginfo")]
    pub strip: airlock::elf::strip::StripMode,
    /// Where the debug files go (`<bin>-<version>-<target>.debug`, found by gdb and lldb
    /// through the binary's build-id or `.gnu_debuglink`) [default: target/airlock/debug, or
    /// beside each --binary file outside a workspace].
    #[arg(long, value_name = "DIR")]
    pub debug_dir: Option<PathBuf>,
}

fn parse_runtime(text: &str) -> Result<airlock::oci::load::Runtime, String> {
    text.parse().map_err(|e: anyhow::Error| e.to_string())
}

fn parse_strip(text: &str) -> Result<airlock::elf::strip::StripMode, String> {
    text.parse().map_err(|e: anyhow::Error| e.to_string())
}

fn parse_compression(text: &str) -> Result<airlock::oci::layer::CompressionKind, String> {
    text.parse().map_err(|e: anyhow::Error| e.to_string())
}

fn parse_essential(text: &str) -> Result<airlock::oci::essentials::Essential, String> {
    text.parse().map_err(|e: anyhow::Error| e.to_string())
}

impl ImageArgs {
    /// The library's options.
    pub fn to_options(&self, global: &GlobalArgs) -> Result<airlock::oci::image::ImageOptions> {
        use airlock::oci::settings::{EssentialsSetting, ImageSettings, parse_key_value};
        use std::collections::BTreeMap;

        let pairs = |values: &[String]| -> Result<Option<BTreeMap<String, String>>> {
            if values.is_empty() {
                return Ok(None);
            }
            values
                .iter()
                .map(|v| parse_key_value(v))
                .collect::<Result<_>>()
                .map(Some)
        };
        let non_empty = |values: &[String]| (!values.is_empty()).then(|| values.to_vec());
        let mut tags = self.tags.clone();
        let output = match &self.output {
            Some(text) => {
                let reference: airlock::oci::ImageRef = text.parse()?;
                tags.extend(reference.tag);
                Some(reference.path)
            }
            None => None,
        };
        let files = if self.includes.is_empty() {
            None
        } else {
            let mut files = BTreeMap::new();
            for text in &self.includes {
                let include: airlock::oci::files::Include = text.parse()?;
                if files.insert(include.dest.clone(), include.source).is_some() {
                    return Err(airlock::error::input(format!(
                        "--include names {} twice",
                        include.dest
                    )));
                }
            }
            Some(files)
        };
        let mut essentials = self.essential.clone();
        if self.essentials {
            essentials.extend(airlock::oci::essentials::Essential::DEFAULT_SET);
        }
        let settings = ImageSettings {
            bins: non_empty(&self.build.bins),
            targets: None,
            repository: self.repository.clone(),
            tags: non_empty(&tags),
            entrypoint: non_empty(&self.entrypoint),
            cmd: non_empty(&self.cmd),
            env: pairs(&self.env)?,
            workdir: self.workdir.clone(),
            ports: non_empty(&self.ports),
            labels: pairs(&self.labels)?,
            annotations: pairs(&self.annotations)?,
            user: self.user.clone(),
            essentials: (!essentials.is_empty()).then_some(EssentialsSetting::Items(essentials)),
            ca_bundle: self.ca_bundle.clone(),
            zoneinfo: self.zoneinfo.clone(),
            compression: self.compression,
            level: self.level,
            base: self.base.as_deref().map(str::parse).transpose()?,
            files,
        };
        let mut client = airlock::registry::ClientOptions::standard();
        client.insecure = self.insecure;
        client.ca_certs = self.ca_certs.clone();
        Ok(airlock::oci::image::ImageOptions {
            build: self.build.to_options(global)?,
            binaries: self.binaries.clone(),
            allow_dynamic: self.allow_dynamic,
            output,
            archive: self.archive.clone(),
            settings,
            base_cache: self.base_cache.clone(),
            registry: Some(std::sync::Arc::new(
                airlock::registry::pull::RegistryPuller::new(client),
            )),
            load: self.load,
            strip: self.strip,
            debug_dir: self.debug_dir.clone(),
            debug_names: BTreeMap::new(),
        })
    }
}

/// `cargo airlock push`.
///
/// Pushes an image or a multi-platform index from an OCI layout to a registry, skipping blobs
/// it already has, and prints `registry/repository@sha256:…`.
#[derive(Debug, Args)]
#[command(
    override_usage = "cargo airlock push [OPTIONS] [LAYOUT[:TAG]] REGISTRY/REPOSITORY[:TAG|@DIGEST]"
)]
pub struct PushArgs {
    /// The layout, `[oci:]DIR[:TAG]` (default: target/airlock/image and its one image), then
    /// where to push, `REGISTRY/REPOSITORY[:TAG|@DIGEST]`. The tag defaults to the layout's,
    /// else `latest`.
    #[arg(value_name = "ARG", num_args = 1..=2, required = true)]
    pub args: Vec<String>,
    /// User name for the registry; the password or token is read from stdin
    /// (--password-stdin). Default: AIRLOCK_REGISTRY_USERNAME/PASSWORD, then the Docker
    /// config (credHelpers, credsStore, auths).
    #[arg(long, value_name = "NAME", requires = "password_stdin")]
    pub username: Option<String>,
    /// Read the password or token for --username from stdin.
    #[arg(long, requires = "username")]
    pub password_stdin: bool,
    /// Trust this PEM CA certificate too (repeatable), for registries with a private CA.
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
    /// Allow plain HTTP and skip TLS verification (plain HTTP is always allowed for
    /// localhost, 127.0.0.0/8 and [::1]).
    #[arg(long)]
    pub insecure: bool,
    /// Blobs to upload at once.
    #[arg(short, long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Retries of each request on 5xx, 429 and dropped connections, with exponential backoff.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub retries: u32,
    /// Seconds a registry may send or take nothing before it counts as not answering
    /// (connecting, TLS included, gets at most 10 of them). An upload that keeps moving is
    /// never cut, however long it takes.
    #[arg(long, value_name = "SECS", env = airlock::registry::client::TIMEOUT_ENV,
          default_value_t = airlock::registry::client::DEFAULT_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub timeout: u64,
    /// Sign each pushed manifest for the destination (or --signed-repository) with --key,
    /// under cosign's `sha256-<digest>.sig` tag and as a referrer. The key's passphrase comes
    /// from AIRLOCK_KEY_PASSWORD.
    #[arg(long, requires = "key")]
    pub sign: bool,
    /// The cosign private key for --sign.
    #[arg(long, value_name = "FILE", requires = "sign")]
    pub key: Option<PathBuf>,
    /// The repository the signatures name (`docker-reference`) [default: the destination's
    /// REGISTRY/REPOSITORY]. Across an air gap, the name the image was signed for outside.
    #[arg(long, value_name = "REGISTRY/REPOSITORY", requires = "sign")]
    pub signed_repository: Option<String>,
}

impl PushArgs {
    /// The library's options.
    pub fn to_options(&self, global: &GlobalArgs) -> Result<airlock::registry::PushOptions> {
        use airlock::registry::{ClientOptions, Credential, PushOptions, Secret};
        let (source, destination) = match self.args.as_slice() {
            [destination] => (None, destination),
            [source, destination] => (Some(source.parse()?), destination),
            _ => return Err(airlock::error::input("expected [LAYOUT[:TAG]] DESTINATION")),
        };
        let credential = match &self.username {
            Some(username) => {
                let mut password = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut password).map_err(
                    |e| airlock::error::input(format!("cannot read the password from stdin: {e}")),
                )?;
                let password = password.trim_end_matches(['\r', '\n']);
                if password.is_empty() {
                    return Err(airlock::error::input(
                        "--password-stdin read an empty password",
                    ));
                }
                Some(Credential::Basic {
                    username: username.clone(),
                    password: Secret::new(password),
                })
            }
            None => None,
        };
        Ok(PushOptions {
            manifest_path: global.manifest_path.clone(),
            source,
            destination: destination.parse()?,
            credential,
            client: ClientOptions {
                insecure: self.insecure,
                ca_certs: self.ca_certs.clone(),
                retries: self.retries,
                retry_base: ClientOptions::default_retry_base(),
                timeout: std::time::Duration::from_secs(self.timeout),
            },
            jobs: usize::from(self.jobs),
            sign: match (&self.key, self.sign) {
                (Some(key), true) => Some(airlock::registry::SignWith {
                    key: key.clone(),
                    passphrase: passphrase(false)?,
                    signed_repository: self
                        .signed_repository
                        .as_deref()
                        .map(str::parse)
                        .transpose()?,
                }),
                _ => None,
            },
        })
    }
}

/// `cargo airlock report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The image to report on: `oci:PATH[:TAG]` or a layout directory (default: the layout
    /// `cargo airlock image` writes, target/airlock/image).
    #[arg(value_name = "LAYOUT")]
    pub layout: Option<String>,
    /// Measure this binary instead of the image's entrypoint (or largest executable).
    #[arg(long, value_name = "FILE")]
    pub binary: Option<PathBuf>,
    /// Also measure this image layout and compare (repeatable): `oci:PATH[:TAG]`.
    #[arg(long, value_name = "LAYOUT")]
    pub compare: Vec<String>,
    /// Also build the image's binary for this machine's `*-linux-gnu` target (glibc,
    /// dynamic) with the workspace of --manifest-path, and compare.
    #[arg(long)]
    pub with_gnu: bool,
    /// Fail (exit 1) when a platform's compressed image is larger, e.g. `5MiB`, `800KB`.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub budget: Option<u64>,
    /// An earlier `report --format json` to compare with.
    #[arg(long, value_name = "OLD.json")]
    pub baseline: Option<PathBuf>,
    /// With --baseline: fail (exit 1) when the compressed image grew more, e.g. `5%` or
    /// `100KiB`.
    #[arg(long, value_name = "LIMIT", requires = "baseline", value_parser = parse_growth)]
    pub max_growth: Option<airlock::report::MaxGrowth>,
    /// Also write the comparison as an SVG bar chart to FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Append the Markdown report to $GITHUB_STEP_SUMMARY when it is set.
    #[arg(long)]
    pub summary: bool,
    /// Recompress every layer with the other codec (gzip -9 / zstd -19), and the binary with
    /// any codec its layer does not give, whatever their size: without it, only layers and
    /// binaries up to 16 MiB are (zstd -19 of a 400 MB layer takes minutes).
    #[arg(long)]
    pub recompress: bool,
}

fn parse_size(text: &str) -> std::result::Result<u64, String> {
    airlock::render::parse_bytes(text)
}

fn parse_growth(text: &str) -> std::result::Result<airlock::report::MaxGrowth, String> {
    text.parse()
}

impl ReportArgs {
    /// The library's options.
    pub fn to_options(&self, global: &GlobalArgs) -> Result<airlock::report::ReportOptions> {
        let image = |text: &str| -> Result<airlock::oci::ImageRef> { text.parse() };
        Ok(airlock::report::ReportOptions {
            manifest_path: global.manifest_path.clone(),
            workspace: None,
            image: self.layout.as_deref().map(image).transpose()?,
            binary: self.binary.clone(),
            compare: self
                .compare
                .iter()
                .map(|c| image(c))
                .collect::<Result<_>>()?,
            with_gnu: self.with_gnu,
            budget: self.budget,
            baseline: self.baseline.clone(),
            max_growth: self.max_growth,
            svg_file: self.svg.clone(),
            summary_file: if self.summary {
                let file = std::env::var_os("GITHUB_STEP_SUMMARY")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from);
                if file.is_none() {
                    airlock::progress::detail(
                        "--summary: $GITHUB_STEP_SUMMARY is not set (not in GitHub Actions); \
                         no summary written",
                    );
                }
                file
            } else {
                None
            },
            recompress: self.recompress,
        })
    }
}

/// `cargo airlock dist`.
#[derive(Debug, Args)]
pub struct DistArgs {
    #[command(flatten)]
    pub targets: TargetArgs,
    /// Package whose binaries to release (repeatable; default: the settings', else all).
    #[arg(short, long = "package", value_name = "SPEC")]
    pub packages: Vec<String>,
    /// Binary to release (repeatable; default: the settings', else all).
    #[arg(long = "bin", value_name = "NAME")]
    pub bins: Vec<String>,
    /// Where to write the release (default: the settings' out-dir, else target/dist).
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
    /// Archive format per target (repeatable): tar.gz, tar.zst (default: the settings', else
    /// tar.gz).
    #[arg(long = "archive", value_name = "FORMAT")]
    pub archives: Vec<String>,
    /// Skip the image and its size report.
    #[arg(long)]
    pub no_image: bool,
    /// Fail when the compressed image is larger than this (e.g. 20MiB).
    #[arg(long, value_name = "SIZE")]
    pub budget: Option<String>,
    /// What to strip from the binaries in archives and the image: none, debuginfo or symbols;
    /// what is removed ships beside as `<bin>-<version>-<target>.debug` [default: the
    /// settings' `strip`, else debuginfo].
    #[arg(long, value_name = "MODE", value_parser = parse_strip)]
    pub strip: Option<airlock::elf::strip::StripMode>,
    /// Require Cargo.lock to be up to date (passed to cargo).
    #[arg(long)]
    pub locked: bool,
    /// Run without accessing the network (passed to cargo).
    #[arg(long)]
    pub offline: bool,
    /// Sign the release with the release key (also `sign = true` in
    /// [workspace.metadata.airlock.dist]): SHA256SUMS (SHA256SUMS.sig), every image of the
    /// layout and the provenance envelope; the passphrase comes from AIRLOCK_KEY_PASSWORD or
    /// --password-stdin.
    #[arg(long)]
    pub sign: bool,
    /// The cosign private key that signs [default: the settings' `key`].
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Read the key's passphrase from stdin [default: the AIRLOCK_KEY_PASSWORD variable].
    #[arg(long)]
    pub password_stdin: bool,
    /// The repository the image signatures name (`docker-reference`) [default: the image's
    /// `repository`, else the package name]. An image pushed inside the air gap under
    /// another name keeps this name: accept it with an `exactRepository` policy.
    #[arg(long, value_name = "REGISTRY/REPOSITORY")]
    pub signed_repository: Option<String>,
    /// Load the image into podman or Docker, as `image --load` does.
    #[arg(long, value_name = "podman|docker", value_parser = parse_runtime)]
    pub load: Option<airlock::oci::load::Runtime>,
}

impl DistArgs {
    /// The library's options.
    pub fn to_options(&self, global: &GlobalArgs) -> Result<airlock::release::DistOptions> {
        let archives = self
            .archives
            .iter()
            .map(|a| a.parse())
            .collect::<Result<Vec<airlock::release::ArchiveFormat>>>()?;
        let budget = self
            .budget
            .as_deref()
            .map(|b| airlock::render::parse_bytes(b).map_err(airlock::error::input))
            .transpose()?;
        Ok(airlock::release::DistOptions {
            manifest_path: global.manifest_path.clone(),
            out_dir: self.out_dir.clone(),
            targets: self.targets.triples()?,
            packages: self.packages.clone(),
            bins: self.bins.clone(),
            archives,
            no_image: self.no_image,
            budget,
            strip: self.strip,
            locked: self.locked,
            offline: self.offline,
            sign: self.sign,
            no_sign: false,
            key: self.key.clone(),
            passphrase: if self.password_stdin {
                Some(passphrase(true)?)
            } else {
                None
            },
            signed_repository: self
                .signed_repository
                .as_deref()
                .map(str::parse)
                .transpose()?,
            load: self.load,
        })
    }
}

/// `cargo airlock init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Add a CI workflow (repeatable): github writes .github/workflows/airlock-release.yml,
    /// gitlab writes .gitlab/airlock-release.yml and includes it from a new .gitlab-ci.yml (an
    /// existing one is left alone; the output says what to add).
    #[arg(long, value_enum, value_name = "SYSTEM")]
    pub ci: Vec<CiArg>,
    /// Depend on a local airlock checkout (written as a path relative to the workspace; with
    /// --ci it must lie inside the workspace, e.g. a git submodule) instead of the source this
    /// cargo-airlock was installed from.
    #[arg(long, value_name = "DIR")]
    pub airlock_path: Option<PathBuf>,
    /// Overwrite files that exist with other contents.
    #[arg(long)]
    pub force: bool,
}

/// `--ci` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CiArg {
    /// GitHub Actions.
    Github,
    /// GitLab CI.
    Gitlab,
}

impl InitArgs {
    /// The library's options.
    pub fn to_options(&self, global: &GlobalArgs) -> airlock::init::InitOptions {
        let mut ci: Vec<airlock::init::Ci> = Vec::new();
        for value in &self.ci {
            let system = match value {
                CiArg::Github => airlock::init::Ci::Github,
                CiArg::Gitlab => airlock::init::Ci::Gitlab,
            };
            if !ci.contains(&system) {
                ci.push(system);
            }
        }
        airlock::init::InitOptions {
            manifest_path: global.manifest_path.clone(),
            ci,
            airlock_path: self.airlock_path.clone(),
            force: self.force,
        }
    }
}

/// `cargo airlock keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Write PREFIX.key (the encrypted private key, mode 0600) and PREFIX.pub.
    #[arg(long, value_name = "PREFIX", default_value = "cosign")]
    pub output: PathBuf,
    /// Read the passphrase from stdin [default: the AIRLOCK_KEY_PASSWORD variable].
    #[arg(long)]
    pub password_stdin: bool,
    /// Seal the private key with an empty passphrase (cosign's `COSIGN_PASSWORD=`).
    #[arg(long)]
    pub empty_password: bool,
    /// Replace key files that exist.
    #[arg(long)]
    pub force: bool,
}

impl KeygenArgs {
    /// The library's options.
    pub fn to_options(&self) -> Result<airlock::signing::KeygenOptions> {
        Ok(airlock::signing::KeygenOptions {
            prefix: self.output.clone(),
            passphrase: passphrase(self.password_stdin)?,
            empty_password: self.empty_password,
            force: self.force,
        })
    }
}

/// The key's passphrase: stdin with --password-stdin, else AIRLOCK_KEY_PASSWORD, else empty.
fn passphrase(stdin: bool) -> Result<airlock::signing::Passphrase> {
    use airlock::signing::PassphraseSource;
    airlock::signing::key::read_passphrase(if stdin {
        PassphraseSource::Stdin
    } else {
        PassphraseSource::Environment
    })
}

/// `cargo airlock sign`.
#[derive(Debug, Args)]
#[command(
    override_usage = "cargo airlock sign [OPTIONS] --key FILE [LAYOUT[:TAG]|RELEASE-DIR|FILE]"
)]
pub struct SignArgs {
    /// What to sign: a layout (`[oci:]DIR[:TAG]`, every image without a tag), a release
    /// directory (its SHA256SUMS and image/ layout) or any file (FILE.sig beside it)
    /// [default: target/airlock/image].
    #[arg(value_name = "TARGET")]
    pub target: Option<String>,
    /// The cosign private key (`ENCRYPTED SIGSTORE PRIVATE KEY`, from `keygen` or `cosign
    /// generate-key-pair`).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// Read the key's passphrase from stdin [default: the AIRLOCK_KEY_PASSWORD variable].
    #[arg(long)]
    pub password_stdin: bool,
    /// The repository image signatures name (`docker-reference`) [default: each image's name
    /// in the layout, as `image --repository` set it].
    #[arg(long, value_name = "REGISTRY/REPOSITORY")]
    pub signed_repository: Option<String>,
}

impl SignArgs {
    /// The library's options.
    pub fn to_options(&self, global: &GlobalArgs) -> Result<airlock::signing::SignOptions> {
        Ok(airlock::signing::SignOptions {
            manifest_path: global.manifest_path.clone(),
            target: self
                .target
                .as_deref()
                .map(airlock::signing::SignTarget::parse)
                .transpose()?,
            key: self.key.clone(),
            passphrase: passphrase(self.password_stdin)?,
            signed_repository: self
                .signed_repository
                .as_deref()
                .map(str::parse)
                .transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn base_include_and_load_reach_the_library_options() {
        use airlock::oci::load::Runtime;
        let cli = Cli::try_parse_from(["cargo-airlock", "dist", "--load", "podman"]).unwrap();
        let Command::Dist(args) = &cli.command else {
            panic!("not dist")
        };
        assert_eq!(
            args.to_options(&cli.global).unwrap().load,
            Some(Runtime::Podman)
        );

        let cli = Cli::try_parse_from([
            "cargo-airlock",
            "image",
            "--binary",
            "app",
            "--base",
            "oci:bases/static:v1",
            "--include",
            "config/app.toml:/etc/app.toml:0600",
            "--load",
            "docker",
            "--base-cache",
            "/cache",
        ])
        .unwrap();
        let Command::Image(args) = &cli.command else {
            panic!("not image")
        };
        let options = args.to_options(&cli.global).unwrap();
        assert_eq!(options.load, Some(Runtime::Docker));
        assert_eq!(
            options.base_cache.as_deref(),
            Some(std::path::Path::new("/cache"))
        );
        assert!(options.registry.is_some());
        let settings = options.settings;
        assert_eq!(settings.base.unwrap().to_string(), "oci:bases/static:v1");
        let files = settings.files.unwrap();
        assert_eq!(files["/etc/app.toml"].mode, Some(0o600));
        assert!(Cli::try_parse_from(["cargo-airlock", "image", "--load", "containerd"]).is_err());
    }
}

#[cfg(test)]
mod readme_tests {
    use super::*;
    use clap::CommandFactory;

    /// Every command and every long flag is documented in the README (its `--help` text comes
    /// from the same doc comments, so this keeps the two from drifting apart).
    #[test]
    fn readme_documents_every_command_and_flag() {
        let readme = include_str!("../../README.md");
        let cli = Cli::command();
        let mut missing = Vec::new();
        for sub in cli.get_subcommands() {
            let name = sub.get_name();
            if !readme.contains(&format!("cargo airlock {name}")) {
                missing.push(format!("command `{name}`"));
            }
            for arg in sub.get_arguments() {
                if let Some(long) = arg.get_long()
                    && !readme.contains(&format!("--{long}"))
                {
                    missing.push(format!("`{name} --{long}`"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "not in README.md: {}",
            missing.join(", ")
        );
    }

    /// Every `cargo airlock` command of the "Across the air gap" walkthrough parses with the
    /// flags that exist, so the walkthrough cannot drift from the CLI.
    #[test]
    fn air_gap_walkthrough_commands_are_real() {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("### Across the air gap")
            .expect("README has a section \"Across the air gap\"");
        let section = &readme[start..];
        let section = &section[..section[4..].find("\n### ").map_or(section.len(), |i| i + 4)];
        let mut commands = 0;
        let mut in_block = false;
        for line in section.lines() {
            if line.trim_start().starts_with("```") {
                in_block = !in_block;
                continue;
            }
            let line = line.split("  #").next().unwrap_or_default().trim();
            let Some(rest) = line.strip_prefix("cargo airlock ").filter(|_| in_block) else {
                continue;
            };
            let args = std::iter::once("cargo-airlock").chain(rest.split_whitespace());
            if let Err(e) = Cli::try_parse_from(args) {
                panic!("README's `{line}` does not parse: {e}");
            }
            commands += 1;
        }
        assert!(
            commands >= 8,
            "only {commands} commands found in the walkthrough"
        );
    }
}
