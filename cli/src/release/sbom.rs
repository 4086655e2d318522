//! Software bills of materials for a release: every package that goes into the shipped
//! binaries (normal and build dependencies, not dev-only ones; when the binaries carry their
//! embedded dependency lists, exactly the packages those name), with version, source, license
//! and the `.crate` checksum where `Cargo.lock` has one; as CycloneDX 1.5 JSON (through
//! `cyclonedx-bom`) and SPDX 2.3 JSON.
//!
//! Deterministic: no wall-clock time, no random serial numbers: the timestamp is the source
//! date and the document identifiers are derived from the contents. Location-free: a path
//! package (a workspace member) is identified by its directory relative to the workspace root,
//! never by cargo's `path+file:///…` id, so checkouts in two directories give the same bytes
//! and the build machine's paths are not published.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use anyhow::{Context, Result};
use cargo_metadata::{DependencyKind, Metadata, Package, PackageId};
use cyclonedx_bom::external_models::normalized_string::NormalizedString;
use cyclonedx_bom::external_models::uri::{Purl, Uri};
use cyclonedx_bom::models::bom::{Bom, UrnUuid};
use cyclonedx_bom::models::component::{Classification, Component, Components};
use cyclonedx_bom::models::dependency::{Dependencies, Dependency};
use cyclonedx_bom::models::external_reference::{
    ExternalReference, ExternalReferenceType, ExternalReferences,
};
use cyclonedx_bom::models::hash::{Hash, HashAlgorithm, HashValue, Hashes};
use cyclonedx_bom::models::license::{LicenseChoice, Licenses};
use cyclonedx_bom::models::metadata::Metadata as BomMetadata;
use cyclonedx_bom::models::tool::{Tool, Tools};
use cyclonedx_bom::prelude::{DateTime, SpdxExpression};
use serde::Serialize;

use crate::digest::Sha256Digest;
use crate::elf::DepList;
use crate::workspace::rfc3339;

/// Whether cargo's source `source` (None for path packages) is of the kind an embedded list
/// names (`local`, `crates.io`, `git`, `registry`, `sparse`).
fn source_kind_matches(source: Option<&str>, kind: &str) -> bool {
    match (source, kind) {
        (None, "local") => true,
        (None, _) | (Some(_), "local") => false,
        (Some(s), "crates.io") => {
            s == "registry+https://github.com/rust-lang/crates.io-index"
                || s == "sparse+https://index.crates.io/"
        }
        (Some(s), kind) => s.split('+').next() == Some(kind),
    }
}

/// The media type of CycloneDX JSON documents.
pub const CYCLONEDX_MEDIA_TYPE: &str = "application/vnd.cyclonedx+json";
/// The media type of SPDX JSON documents.
pub const SPDX_MEDIA_TYPE: &str = "application/spdx+json";

/// One package in the bill of materials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbomPackage {
    /// The package's unique id (the CycloneDX `bom-ref`): cargo's package id for registry
    /// and git packages, `path+<dir relative to the workspace root>#name@version` for path
    /// packages.
    pub id: String,
    /// Package name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Cargo source (`registry+https://…`, `git+https://…#commit`); None for path packages.
    pub source: Option<String>,
    /// The SPDX license expression, normalised (`MIT/Apache-2.0` → `MIT OR Apache-2.0`).
    pub license: Option<String>,
    /// The `.crate` checksum from `Cargo.lock`.
    pub checksum: Option<Sha256Digest>,
    /// The package's repository URL.
    pub repository: Option<String>,
    /// The ids of the packages it depends on (normal and build), sorted.
    pub depends_on: Vec<String>,
    /// Whether this is one of the released packages (not a dependency).
    pub is_root: bool,
}

impl SbomPackage {
    /// The package URL (`pkg:cargo/name@version`).
    pub fn purl(&self) -> String {
        format!("pkg:cargo/{}@{}", self.name, self.version)
    }

    /// Where the package can be downloaded, for registry packages on crates.io.
    pub fn download_location(&self) -> Option<String> {
        let source = self.source.as_deref()?;
        if source == "registry+https://github.com/rust-lang/crates.io-index"
            || source == "sparse+https://index.crates.io/"
        {
            return Some(format!(
                "https://crates.io/api/v1/crates/{}/{}/download",
                self.name, self.version
            ));
        }
        source.strip_prefix("git+").map(|git| format!("git+{git}"))
    }
}

/// The released product and the packages behind it.
#[derive(Debug, Clone)]
pub struct Sbom {
    /// The product's name.
    pub name: String,
    /// The product's version.
    pub version: String,
    /// The source date (the documents' creation time).
    pub source_date_epoch: u64,
    /// Every package, roots first, then sorted by name, version and id.
    pub packages: Vec<SbomPackage>,
}

impl Sbom {
    /// Collects the packages reachable from `roots` through normal and build dependencies in
    /// `metadata` (which must include the resolve graph: `cargo metadata` without
    /// `--no-deps`, with `--filter-platform` for the released targets). `checksum` gives the
    /// `Cargo.lock` checksum of a package.
    pub fn collect(
        metadata: &Metadata,
        roots: &[PackageId],
        name: &str,
        version: &str,
        source_date_epoch: u64,
        checksum: &dyn Fn(&Package) -> Option<Sha256Digest>,
    ) -> Result<Sbom> {
        let resolve = metadata
            .resolve
            .as_ref()
            .context("cargo metadata returned no dependency graph (was --no-deps used?)")?;
        let nodes: BTreeMap<&PackageId, _> = resolve.nodes.iter().map(|n| (&n.id, n)).collect();
        let packages: BTreeMap<&PackageId, &Package> =
            metadata.packages.iter().map(|p| (&p.id, p)).collect();
        let root = metadata.workspace_root.as_std_path();
        let ids: BTreeMap<&PackageId, String> = metadata
            .packages
            .iter()
            .map(|p| (&p.id, location_free_id(p, root)))
            .collect();
        let id_of = |id: &PackageId| ids.get(id).cloned().unwrap_or_else(|| id.repr.clone());

        let mut seen: BTreeSet<&PackageId> = BTreeSet::new();
        let mut queue: VecDeque<&PackageId> = roots.iter().collect();
        let mut out = Vec::new();
        while let Some(id) = queue.pop_front() {
            if !seen.insert(id) {
                continue;
            }
            let package = packages
                .get(id)
                .with_context(|| format!("package {id} is in the graph but not in the metadata"))?;
            let mut depends_on = BTreeSet::new();
            if let Some(node) = nodes.get(id) {
                for dep in &node.deps {
                    let shipped = dep.dep_kinds.is_empty()
                        || dep.dep_kinds.iter().any(|k| {
                            matches!(k.kind, DependencyKind::Normal | DependencyKind::Build)
                        });
                    if shipped {
                        depends_on.insert(id_of(&dep.pkg));
                        queue.push_back(&dep.pkg);
                    }
                }
            }
            out.push(SbomPackage {
                id: id_of(id),
                name: package.name.to_string(),
                version: package.version.to_string(),
                source: package.source.as_ref().map(|s| s.repr.clone()),
                license: package.license.as_deref().and_then(normalise_license),
                checksum: checksum(package),
                repository: package.repository.clone(),
                depends_on: depends_on.into_iter().collect(),
                is_root: roots.contains(id),
            });
        }
        out.sort_by(|a, b| {
            (!a.is_root, &a.name, &a.version, &a.id).cmp(&(!b.is_root, &b.name, &b.version, &b.id))
        });
        Ok(Sbom {
            name: name.to_owned(),
            version: version.to_owned(),
            source_date_epoch,
            packages: out,
        })
    }

    /// Keeps the packages that `shipped` names by (name, version): the dependency lists
    /// embedded in the released binaries, so the bill of materials says what is really in
    /// them. Edges to dropped packages go too; roots always stay.
    pub fn retain_shipped(&mut self, shipped: &BTreeSet<(String, String)>) {
        self.packages
            .retain(|p| p.is_root || shipped.contains(&(p.name.clone(), p.version.clone())));
        let kept: BTreeSet<String> = self.packages.iter().map(|p| p.id.clone()).collect();
        for package in &mut self.packages {
            package.depends_on.retain(|id| kept.contains(id));
        }
    }

    /// The bill of materials of one binary, from the dependency list embedded in it: exactly
    /// its packages and edges, each described as in `release` (the release's SBOM before
    /// [`Sbom::retain_shipped`], which knows licenses, checksums and repositories). A package
    /// the release does not know is a failed check naming it: the binary was not built from
    /// this workspace's lockfile.
    pub fn for_binary(release: &Sbom, list: &DepList, name: &str, version: &str) -> Result<Sbom> {
        let mut described = Vec::with_capacity(list.packages.len());
        for embedded in &list.packages {
            let found = release.packages.iter().find(|p| {
                p.name == embedded.name
                    && p.version == embedded.version
                    && source_kind_matches(p.source.as_deref(), &embedded.source)
            });
            let Some(found) = found else {
                return Err(crate::error::check_failed(format!(
                    "{name} {version}: its embedded dependency list names {} {} ({}), which the \
                     workspace's Cargo.lock does not lock",
                    embedded.name, embedded.version, embedded.source
                )));
            };
            described.push(found);
        }
        let packages = list
            .packages
            .iter()
            .zip(&described)
            .map(|(embedded, found)| {
                let mut depends_on: Vec<String> = embedded
                    .dependencies
                    .iter()
                    .filter_map(|&i| described.get(i).map(|d| d.id.clone()))
                    .collect();
                depends_on.sort();
                depends_on.dedup();
                SbomPackage {
                    depends_on,
                    is_root: embedded.root,
                    ..(*found).clone()
                }
            })
            .collect::<Vec<_>>();
        let mut packages = packages;
        packages.sort_by(|a, b| {
            (!a.is_root, &a.name, &a.version, &a.id).cmp(&(!b.is_root, &b.name, &b.version, &b.id))
        });
        Ok(Sbom {
            name: name.to_owned(),
            version: version.to_owned(),
            source_date_epoch: release.source_date_epoch,
            packages,
        })
    }

    /// A stable identifier of this bill of materials: a UUID (version 5 layout) from the
    /// hash of its contents.
    pub fn uuid(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.name, self.version, self.source_date_epoch
        );
        for p in &self.packages {
            text.push_str(&p.id);
            text.push('\n');
        }
        let digest = Sha256Digest::of(text.as_bytes());
        let mut b: [u8; 16] = digest.as_bytes()[..16].try_into().unwrap_or([0; 16]);
        b[6] = (b[6] & 0x0f) | 0x50;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h = hex::encode(b);
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }

    /// The CycloneDX 1.5 JSON document.
    pub fn cyclonedx_json(&self) -> Result<Vec<u8>> {
        let components: Vec<Component> = self
            .packages
            .iter()
            .map(cyclonedx_component)
            .collect::<Result<_>>()?;
        let dependencies = self
            .packages
            .iter()
            .map(|p| Dependency {
                dependency_ref: p.id.clone(),
                dependencies: p.depends_on.clone(),
            })
            .collect();
        let mut main = Component::new(Classification::Application, &self.name, &self.version, None);
        main.bom_ref = Some(format!("{}@{}", self.name, self.version));
        let metadata = BomMetadata {
            timestamp: Some(
                DateTime::try_from(rfc3339(self.source_date_epoch))
                    .map_err(|e| anyhow::anyhow!("invalid SBOM timestamp: {e}"))?,
            ),
            tools: Some(Tools::List(vec![Tool {
                vendor: None,
                name: Some(NormalizedString::new("cargo-airlock")),
                version: Some(NormalizedString::new(env!("CARGO_PKG_VERSION"))),
                hashes: None,
                external_references: None,
            }])),
            authors: None,
            component: Some(main),
            manufacture: None,
            supplier: None,
            licenses: None,
            properties: None,
            lifecycles: None,
        };
        let bom = Bom {
            serial_number: Some(
                UrnUuid::new(format!("urn:uuid:{}", self.uuid()))
                    .map_err(|e| anyhow::anyhow!("invalid SBOM serial number: {e:?}"))?,
            ),
            metadata: Some(metadata),
            components: Some(Components(components)),
            dependencies: Some(Dependencies(dependencies)),
            ..Bom::default()
        };
        let mut out = Vec::new();
        bom.output_as_json_v1_5(&mut out)
            .map_err(|e| anyhow::anyhow!("cannot write the CycloneDX SBOM: {e}"))?;
        out.push(b'\n');
        Ok(out)
    }

    /// The SPDX 2.3 JSON document.
    pub fn spdx_json(&self) -> Result<Vec<u8>> {
        let spdx_id = |index: usize| format!("SPDXRef-Package-{index}");
        let ids: BTreeMap<&str, String> = self
            .packages
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.as_str(), spdx_id(i)))
            .collect();
        let packages = self
            .packages
            .iter()
            .enumerate()
            .map(|(i, p)| SpdxPackage {
                name: p.name.clone(),
                spdx_id: spdx_id(i),
                version_info: p.version.clone(),
                download_location: p
                    .download_location()
                    .unwrap_or_else(|| "NOASSERTION".into()),
                files_analyzed: false,
                license_concluded: "NOASSERTION".into(),
                license_declared: p.license.clone().unwrap_or_else(|| "NOASSERTION".into()),
                copyright_text: "NOASSERTION".into(),
                checksums: p
                    .checksum
                    .iter()
                    .map(|c| SpdxChecksum {
                        algorithm: "SHA256",
                        checksum_value: c.hex(),
                    })
                    .collect(),
                external_refs: vec![SpdxExternalRef {
                    reference_category: "PACKAGE-MANAGER",
                    reference_type: "purl",
                    reference_locator: p.purl(),
                }],
                primary_package_purpose: if p.is_root { "APPLICATION" } else { "LIBRARY" },
            })
            .collect();
        let mut relationships = Vec::new();
        for p in self.packages.iter().filter(|p| p.is_root) {
            relationships.push(SpdxRelationship {
                spdx_element_id: "SPDXRef-DOCUMENT".into(),
                relationship_type: "DESCRIBES",
                related_spdx_element: ids[p.id.as_str()].clone(),
            });
        }
        for p in &self.packages {
            for dep in &p.depends_on {
                if let Some(dep_id) = ids.get(dep.as_str()) {
                    relationships.push(SpdxRelationship {
                        spdx_element_id: ids[p.id.as_str()].clone(),
                        relationship_type: "DEPENDS_ON",
                        related_spdx_element: dep_id.clone(),
                    });
                }
            }
        }
        let document = SpdxDocument {
            spdx_version: "SPDX-2.3",
            data_license: "CC0-1.0",
            spdx_id: "SPDXRef-DOCUMENT",
            name: format!("{}-{}", self.name, self.version),
            document_namespace: format!(
                "https://spdx.org/spdxdocs/{}-{}-{}",
                self.name,
                self.version,
                self.uuid()
            ),
            creation_info: SpdxCreationInfo {
                created: rfc3339(self.source_date_epoch),
                creators: vec![format!("Tool: cargo-airlock-{}", env!("CARGO_PKG_VERSION"))],
            },
            packages,
            relationships,
        };
        let mut out = serde_json::to_vec_pretty(&document).context("cannot write the SPDX SBOM")?;
        out.push(b'\n');
        Ok(out)
    }
}

/// The SBOM id of a package: cargo's id for registry and git packages; for path packages
/// (source `None`), `path+<directory relative to the workspace root>#name@version`, because
/// cargo's `path+file:///…` id is the checkout's absolute path.
fn location_free_id(package: &Package, workspace_root: &std::path::Path) -> String {
    if package.source.is_some() {
        return package.id.repr.clone();
    }
    let dir = package
        .manifest_path
        .parent()
        .map(|d| d.as_std_path())
        .unwrap_or(workspace_root);
    format!(
        "path+{}#{}@{}",
        crate::workspace::relative_path(workspace_root, dir),
        package.name,
        package.version
    )
}

/// Normalises a Cargo `license` field into an SPDX expression; None when it is not one.
fn normalise_license(license: &str) -> Option<String> {
    SpdxExpression::parse_lax(license.to_owned())
        .ok()
        .map(|e| e.to_string())
}

fn cyclonedx_component(p: &SbomPackage) -> Result<Component> {
    let mut component = Component::new(
        Classification::Library,
        &p.name,
        &p.version,
        Some(p.id.clone()),
    );
    if p.is_root {
        component.component_type = Classification::Application;
    }
    component.purl = Some(
        Purl::new("cargo", &p.name, &p.version)
            .map_err(|e| anyhow::anyhow!("package {}: invalid package URL: {e}", p.name))?,
    );
    if let Some(checksum) = p.checksum {
        component.hashes = Some(Hashes(vec![Hash {
            alg: HashAlgorithm::SHA_256,
            content: HashValue(checksum.hex()),
        }]));
    }
    if let Some(license) = &p.license {
        component.licenses = Some(Licenses(vec![LicenseChoice::Expression(
            SpdxExpression::new(license),
        )]));
    }
    let mut references = Vec::new();
    if let Some(repo) = &p.repository {
        references.push(ExternalReference::new(
            ExternalReferenceType::Vcs,
            Uri::new(repo),
        ));
    }
    if let Some(location) = p.download_location() {
        references.push(ExternalReference::new(
            ExternalReferenceType::Distribution,
            Uri::new(&location),
        ));
    }
    if !references.is_empty() {
        component.external_references = Some(ExternalReferences(references));
    }
    Ok(component)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxDocument {
    spdx_version: &'static str,
    data_license: &'static str,
    #[serde(rename = "SPDXID")]
    spdx_id: &'static str,
    name: String,
    document_namespace: String,
    creation_info: SpdxCreationInfo,
    packages: Vec<SpdxPackage>,
    relationships: Vec<SpdxRelationship>,
}

#[derive(Serialize)]
struct SpdxCreationInfo {
    created: String,
    creators: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxPackage {
    name: String,
    #[serde(rename = "SPDXID")]
    spdx_id: String,
    version_info: String,
    download_location: String,
    files_analyzed: bool,
    license_concluded: String,
    license_declared: String,
    copyright_text: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    checksums: Vec<SpdxChecksum>,
    external_refs: Vec<SpdxExternalRef>,
    primary_package_purpose: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxChecksum {
    algorithm: &'static str,
    checksum_value: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxExternalRef {
    reference_category: &'static str,
    reference_type: &'static str,
    reference_locator: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SpdxRelationship {
    spdx_element_id: String,
    relationship_type: &'static str,
    related_spdx_element: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Sbom {
        Sbom {
            name: "app".into(),
            version: "1.2.3".into(),
            source_date_epoch: 1_700_000_000,
            packages: vec![
                SbomPackage {
                    id: "path+.#app@1.2.3".into(),
                    name: "app".into(),
                    version: "1.2.3".into(),
                    source: None,
                    license: normalise_license("MIT/Apache-2.0"),
                    checksum: None,
                    repository: None,
                    depends_on: vec![
                        "registry+https://github.com/rust-lang/crates.io-index#itoa@1.0.11".into(),
                    ],
                    is_root: true,
                },
                SbomPackage {
                    id: "registry+https://github.com/rust-lang/crates.io-index#itoa@1.0.11".into(),
                    name: "itoa".into(),
                    version: "1.0.11".into(),
                    source: Some("registry+https://github.com/rust-lang/crates.io-index".into()),
                    license: Some("MIT OR Apache-2.0".into()),
                    checksum: Some(Sha256Digest::of(b"itoa")),
                    repository: Some("https://github.com/dtolnay/itoa".into()),
                    depends_on: vec![],
                    is_root: false,
                },
            ],
        }
    }

    #[test]
    fn cyclonedx_has_components_hashes_and_graph() {
        let doc: serde_json::Value =
            serde_json::from_slice(&sample().cyclonedx_json().unwrap()).unwrap();
        assert_eq!(doc["bomFormat"], "CycloneDX");
        assert_eq!(doc["specVersion"], "1.5");
        assert_eq!(doc["metadata"]["timestamp"], "2023-11-14T22:13:20Z");
        let itoa = &doc["components"][1];
        assert_eq!(itoa["purl"], "pkg:cargo/itoa@1.0.11");
        assert_eq!(
            itoa["hashes"][0]["content"],
            Sha256Digest::of(b"itoa").hex()
        );
        assert_eq!(
            doc["components"][0]["licenses"][0]["expression"],
            "MIT OR Apache-2.0"
        );
        assert_eq!(doc["dependencies"][0]["dependsOn"][0], itoa["bom-ref"]);
        assert_eq!(
            sample().cyclonedx_json().unwrap(),
            sample().cyclonedx_json().unwrap()
        );
    }

    #[test]
    fn only_what_the_binaries_hold_is_kept() {
        let mut sbom = sample();
        sbom.retain_shipped(&BTreeSet::from([("app".into(), "1.2.3".into())]));
        assert_eq!(sbom.packages.len(), 1);
        assert!(sbom.packages[0].depends_on.is_empty());
        let mut sbom = sample();
        sbom.retain_shipped(&BTreeSet::from([("itoa".into(), "1.0.11".into())]));
        assert_eq!(sbom.packages.len(), 2);
        assert_eq!(sbom.packages[0].depends_on.len(), 1);
    }

    #[test]
    fn a_binarys_sbom_is_its_embedded_list_described_as_the_release_describes_it() {
        use crate::elf::{DepKind, DepPackage};
        let package =
            |name: &str, version: &str, source: &str, dependencies: Vec<usize>| DepPackage {
                name: name.into(),
                version: version.into(),
                source: source.into(),
                kind: DepKind::Runtime,
                dependencies,
                root: name == "app",
            };
        let list = DepList {
            packages: vec![
                package("app", "1.2.3", "local", vec![1]),
                package("itoa", "1.0.11", "crates.io", vec![]),
            ],
            format: 1,
        };
        let sbom = Sbom::for_binary(&sample(), &list, "app-bin", "1.2.3").unwrap();
        assert_eq!(sbom.name, "app-bin");
        assert_eq!(sbom.packages, sample().packages);

        let mut only_root = list.clone();
        only_root.packages.truncate(1);
        only_root.packages[0].dependencies.clear();
        let sbom = Sbom::for_binary(&sample(), &only_root, "app-bin", "1.2.3").unwrap();
        assert_eq!(sbom.packages.len(), 1);
        assert!(sbom.packages[0].depends_on.is_empty());

        let mut stranger = list.clone();
        stranger.packages[1].version = "9.9.9".into();
        let err = Sbom::for_binary(&sample(), &stranger, "app-bin", "1.2.3").unwrap_err();
        assert_eq!(
            crate::error::exit_kind(&err),
            crate::error::ExitKind::CheckFailed
        );
        assert!(err.to_string().contains("itoa 9.9.9 (crates.io)"), "{err}");
        let mut other_source = list;
        other_source.packages[1].source = "git".into();
        assert!(Sbom::for_binary(&sample(), &other_source, "app-bin", "1.2.3").is_err());
    }

    #[test]
    fn spdx_describes_roots_and_dependencies() {
        let doc: serde_json::Value =
            serde_json::from_slice(&sample().spdx_json().unwrap()).unwrap();
        assert_eq!(doc["spdxVersion"], "SPDX-2.3");
        assert_eq!(doc["packages"][1]["checksums"][0]["algorithm"], "SHA256");
        assert_eq!(
            doc["packages"][1]["downloadLocation"],
            "https://crates.io/api/v1/crates/itoa/1.0.11/download"
        );
        let rels = doc["relationships"].as_array().unwrap();
        assert_eq!(rels[0]["relationshipType"], "DESCRIBES");
        assert_eq!(rels[1]["relationshipType"], "DEPENDS_ON");
        assert_eq!(rels[1]["relatedSpdxElement"], "SPDXRef-Package-1");
    }

    /// `cargo metadata` of a two-member workspace checked out at `root`.
    fn metadata_at(root: &str) -> Metadata {
        let json = serde_json::json!({
            "packages": [
                {"name": "app", "version": "1.0.0", "id": format!("path+file://{root}#app@1.0.0"),
                 "source": null, "manifest_path": format!("{root}/Cargo.toml"),
                 "dependencies": [], "targets": [], "features": {}, "license": "MIT"},
                {"name": "lib", "version": "0.1.0", "id": format!("path+file://{root}/crates/lib#0.1.0"),
                 "source": null, "manifest_path": format!("{root}/crates/lib/Cargo.toml"),
                 "dependencies": [], "targets": [], "features": {}}
            ],
            "workspace_members": [format!("path+file://{root}#app@1.0.0"), format!("path+file://{root}/crates/lib#0.1.0")],
            "resolve": {"nodes": [
                {"id": format!("path+file://{root}#app@1.0.0"), "dependencies": [], "features": [],
                 "deps": [{"name": "lib", "pkg": format!("path+file://{root}/crates/lib#0.1.0"),
                           "dep_kinds": [{"kind": null, "target": null}]}]},
                {"id": format!("path+file://{root}/crates/lib#0.1.0"), "dependencies": [], "features": [], "deps": []}
            ], "root": null},
            "target_directory": format!("{root}/target"),
            "workspace_root": root,
            "version": 1
        });
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn sboms_of_two_checkouts_are_identical_and_name_no_checkout_path() {
        let documents: Vec<(Vec<u8>, Vec<u8>)> = ["/home/ci/a", "/srv/builds/second-checkout"]
            .iter()
            .map(|root| {
                let metadata = metadata_at(root);
                let roots = vec![metadata.packages[0].id.clone()];
                let sbom = Sbom::collect(&metadata, &roots, "app", "1.0.0", 0, &|_| None).unwrap();
                assert_eq!(
                    sbom.packages
                        .iter()
                        .map(|p| p.id.as_str())
                        .collect::<Vec<_>>(),
                    ["path+.#app@1.0.0", "path+crates/lib#lib@0.1.0"]
                );
                assert_eq!(sbom.packages[0].depends_on, ["path+crates/lib#lib@0.1.0"]);
                (sbom.cyclonedx_json().unwrap(), sbom.spdx_json().unwrap())
            })
            .collect();
        assert!(documents[0] == documents[1], "the SBOMs differ");
        for document in [&documents[0].0, &documents[0].1] {
            let text = String::from_utf8_lossy(document);
            assert!(!text.contains("/home/ci"), "{text}");
            assert!(!text.contains("file://"), "{text}");
        }
    }
}
