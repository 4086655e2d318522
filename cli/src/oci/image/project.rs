//! What an image is made from: the workspace, the package, the settings merged from
//! `Cargo.toml` and flags, and the repository name.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Result;
use cargo_metadata::Package;

use super::ImageOptions;
use super::binaries::Binaries;
use crate::error;
use crate::oci::essentials::{Essential, EssentialsOptions};
use crate::oci::settings::ImageSettings;
use crate::workspace::{self, Workspace};

/// The workspace, the package whose image this is, and the merged settings.
pub(super) struct Project {
    pub(super) workspace: Option<Workspace>,
    pub(super) package: Option<Package>,
    pub(super) settings: ImageSettings,
}

impl Project {
    pub(super) fn load(options: &ImageOptions) -> Result<Project> {
        let manifest_path = options.build.manifest_path.as_deref();
        let prebuilt = !options.binaries.is_empty();
        let optional = prebuilt && manifest_path.is_none();
        // Without a `Cargo.toml` here or above, `cargo metadata` can only fail: not started,
        // it saves a process start, a good part of a small image's time.
        let loaded = if optional && !manifest_above_cwd() {
            Ok(None)
        } else {
            Workspace::load(manifest_path).map(Some)
        };
        let workspace = match loaded {
            Ok(ws) => ws,
            // Prebuilt binaries need no workspace; its metadata is used when there is one.
            Err(_) if optional => None,
            Err(e) => return Err(e),
        };
        let package = match &workspace {
            Some(ws) => select_package(ws, &options.build.packages, prebuilt)?,
            None if !options.build.packages.is_empty() => {
                return Err(error::input(
                    "-p/--package needs a Cargo workspace: run in one or pass --manifest-path",
                ));
            }
            None => None,
        };
        let mut settings = ImageSettings::default();
        if let Some(ws) = &workspace {
            settings = ImageSettings::from_metadata(
                ws.airlock_metadata(),
                "workspace.metadata.airlock",
                ws.root(),
            )?;
        }
        if let Some(package) = &package {
            let base = package
                .manifest_path
                .parent()
                .map_or_else(|| PathBuf::from("."), |p| p.as_std_path().to_path_buf());
            let package_settings = ImageSettings::from_metadata(
                package
                    .metadata
                    .get("airlock")
                    .unwrap_or(&serde_json::Value::Null),
                "package.metadata.airlock",
                &base,
            )?;
            settings = settings.overridden_by(package_settings);
        }
        let mut flags = options.settings.clone();
        if !options.build.bins.is_empty() {
            flags.bins = Some(options.build.bins.clone());
        }
        if !options.build.targets.is_empty() {
            flags.targets = Some(options.build.targets.clone());
        }
        Ok(Project {
            workspace,
            package,
            settings: settings.overridden_by(flags),
        })
    }

    /// `SOURCE_DATE_EPOCH`, else the workspace's last commit, else 0.
    pub(super) fn source_date_epoch(&self) -> Result<u64> {
        match &self.workspace {
            Some(ws) => ws.source_date_epoch(),
            None if std::env::var_os("SOURCE_DATE_EPOCH").is_some() => {
                workspace::source_date_epoch(Path::new("/nonexistent"))
            }
            None => Ok(0),
        }
    }

    /// The `org.opencontainers.image.*` annotations (image-spec `annotations.md`) from the
    /// package and git.
    pub(super) fn standard_annotations(&self, created: &str) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        let mut put = |key: &str, value: Option<String>| {
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                map.insert(format!("org.opencontainers.image.{key}"), value);
            }
        };
        put("created", Some(created.to_owned()));
        if let Some(p) = &self.package {
            put("title", Some(p.name.to_string()));
            put("description", p.description.clone());
            put("version", Some(p.version.to_string()));
            put("licenses", p.license.clone());
            put("source", p.repository.clone());
            put("url", p.homepage.clone());
            put("documentation", p.documentation.clone());
        }
        put(
            "revision",
            self.workspace.as_ref().and_then(Workspace::git_revision),
        );
        map
    }
}

/// Whether cargo would find a manifest for the current directory: a `Cargo.toml` in it or in
/// one of its parents, where cargo looks for one (cargo's `find_root_manifest_for_wd`). When
/// the directory cannot be read, cargo decides.
fn manifest_above_cwd() -> bool {
    std::env::current_dir().map_or(true, |cwd| {
        cwd.ancestors().any(|dir| dir.join("Cargo.toml").exists())
    })
}

/// The package an image is made from: `-p`, else the only member with binaries, else the root
/// package. With prebuilt binaries an ambiguous workspace just gives no package metadata.
pub(super) fn select_package(
    ws: &Workspace,
    specs: &[String],
    prebuilt: bool,
) -> Result<Option<Package>> {
    let members = ws.members();
    let names = || {
        members
            .iter()
            .map(|p| p.name.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match specs {
        [] => {}
        [spec] => {
            let name = spec.split('@').next().unwrap_or(spec);
            return members
                .iter()
                .find(|p| p.name.as_str() == name)
                .map(|p| Some((*p).clone()))
                .ok_or_else(|| {
                    error::input(format!(
                        "the workspace has no package `{spec}`; its packages are: {}",
                        names()
                    ))
                });
        }
        _ => {
            return Err(error::input(
                "an image holds one package's binaries: pass -p/--package once \
                 (run `cargo airlock image` once per package)",
            ));
        }
    }
    let with_bins: Vec<&&Package> = members
        .iter()
        .filter(|p| p.targets.iter().any(|t| t.is_bin()))
        .collect();
    if let [only] = with_bins.as_slice() {
        return Ok(Some((**only).clone()));
    }
    if let Some(root) = ws.metadata.root_package() {
        return Ok(Some(root.clone()));
    }
    if prebuilt {
        return Ok(None);
    }
    Err(error::input(format!(
        "the workspace has {} packages with binaries; choose one with -p/--package (packages: {})",
        with_bins.len(),
        names()
    )))
}

/// The items asked for, with `ca-certs` implied by a CA bundle and `tzdata` by a zoneinfo dir.
pub(super) fn essentials_options(settings: &ImageSettings) -> EssentialsOptions {
    let mut items: BTreeSet<Essential> = settings
        .essentials
        .as_ref()
        .map(|e| e.items().into_iter().collect())
        .unwrap_or_default();
    if settings.ca_bundle.is_some() {
        items.insert(Essential::CaCerts);
    }
    if settings.zoneinfo.is_some() {
        items.insert(Essential::Tzdata);
    }
    EssentialsOptions {
        items,
        ca_bundle: settings.ca_bundle.clone(),
        zoneinfo: settings.zoneinfo.clone(),
    }
}

/// The repository name: the setting, else the package name, else the first binary's name.
pub(super) fn repository(
    settings: &ImageSettings,
    package: Option<&Package>,
    binaries: &Binaries,
) -> Result<String> {
    let name = match (&settings.repository, package) {
        (Some(name), _) => name.clone(),
        (None, Some(p)) => p.name.to_lowercase().replace('_', "-"),
        (None, None) => binaries
            .values()
            .flatten()
            .next()
            .map(|b| b.name.to_lowercase())
            .unwrap_or_else(|| "image".to_owned()),
    };
    validate_repository(&name)?;
    Ok(name)
}

/// The distribution spec's repository grammar (`[a-z0-9]+([._-]|__)…` components separated by
/// `/`), with an optional `host[:port]/` first component.
pub fn validate_repository(name: &str) -> Result<()> {
    let mut components: Vec<&str> = name.split('/').collect();
    if components.len() > 1 && components[0].contains(['.', ':']) {
        components.remove(0);
    }
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.starts_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.ends_with(|ch: char| ch.is_ascii_lowercase() || ch.is_ascii_digit())
            && c.chars()
                .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "._-".contains(ch))
    };
    if components.iter().all(|c| component_ok(c)) && name.len() <= 255 {
        Ok(())
    } else {
        Err(error::input(format!(
            "`{name}` is not a valid repository name: use lowercase letters, digits and `.`, \
             `_`, `-` between them, components separated by `/`"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_the_distribution_grammar() {
        for good in [
            "app",
            "my-app",
            "org/app",
            "registry.local:5000/team/app",
            "a.b_c",
        ] {
            assert!(validate_repository(good).is_ok(), "{good}");
        }
        for bad in ["", "App", "-app", "app-", "a//b", "app:tag", "a b"] {
            assert!(validate_repository(bad).is_err(), "{bad}");
        }
    }
}
