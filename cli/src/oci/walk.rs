//! The one walk over what descriptors reach in a layout: indexes (and Docker manifest lists)
//! to their manifests, manifests to their config and layers, and, when asked, both to their
//! `subject`. Every command that follows a layout's graph uses it: prune, verify, push, report
//! and image's update of an existing layout.
//!
//! Every manifest and index on the way is read through the verified reader
//! ([`BlobStore::read_document`]: size, digest, size cap) and parsed; every other blob is
//! checked to be a regular file in the layout with its descriptor's size, but not read (a
//! command that needs its bytes streams them through [`BlobStore::open_verified`]). A blob that
//! fails is recorded on its node, and what it would have reached is not walked; the walk itself
//! fails only when the graph is larger or deeper than [`Limits`] allow, so a hostile layout
//! cannot make it run without end.
//!
//! The walk never writes and never reads a layer's contents.

use std::collections::{BTreeSet, HashMap};

use anyhow::Result;
use oci_spec::image::{Descriptor, ImageIndex, ImageManifest};

use crate::digest::Sha256Digest;
use crate::error;
use crate::oci::blob::{BlobError, BlobStore, Fault};
use crate::oci::media::MediaKind;

/// How far a walk may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Indexes nested in indexes: a manifest or index deeper than this is refused. Real
    /// images use one or two levels.
    pub depth: usize,
    /// Distinct blobs reached.
    pub blobs: usize,
    /// Bytes of manifests and indexes read (each is also capped at
    /// [`MAX_DOCUMENT`](crate::oci::blob::MAX_DOCUMENT)).
    pub document_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            depth: 8,
            blobs: 100_000,
            document_bytes: 256 << 20,
        }
    }
}

/// What to follow.
#[derive(Debug, Clone, Copy, Default)]
pub struct WalkOptions {
    /// The limits.
    pub limits: Limits,
    /// Follow `subject` (an artifact to the image it describes).
    pub subjects: bool,
}

/// A manifest or index as read: its exact bytes and the parsed document.
#[derive(Debug, Clone)]
pub struct Document {
    /// The bytes in the layout, whose digest is the descriptor's.
    pub bytes: Vec<u8>,
    /// The parsed document.
    pub parsed: Parsed,
}

/// A parsed manifest or index.
#[derive(Debug, Clone)]
pub enum Parsed {
    /// An image manifest (OCI or Docker).
    Manifest(Box<ImageManifest>),
    /// An index (OCI or Docker manifest list).
    Index(Box<ImageIndex>),
}

impl Parsed {
    /// The `subject`, if the document names one.
    pub fn subject(&self) -> Option<&Descriptor> {
        match self {
            Parsed::Manifest(manifest) => manifest.subject().as_ref(),
            Parsed::Index(index) => index.subject().as_ref(),
        }
    }

    /// The descriptors it is made of, in document order: an index's manifests, or a
    /// manifest's config then layers (not the subject, which it only refers to).
    pub fn children(&self) -> Vec<Descriptor> {
        match self {
            Parsed::Manifest(manifest) => {
                let mut children = vec![manifest.config().clone()];
                children.extend(manifest.layers().iter().cloned());
                children
            }
            Parsed::Index(index) => index.manifests().clone(),
        }
    }
}

/// One blob reached.
#[derive(Debug)]
pub struct Node {
    /// The descriptor it was first reached by (an index's child keeps its platform).
    pub descriptor: Descriptor,
    /// Its digest; None when the descriptor's is not sha256 (then `problem` says so).
    pub digest: Option<Sha256Digest>,
    /// What its media type says it is.
    pub kind: MediaKind,
    /// 0 for the walk's roots.
    pub depth: usize,
    /// The document, for a manifest or index that was read.
    pub document: Option<Document>,
    /// Why the blob failed; what it names was not walked.
    pub problem: Option<BlobError>,
    /// Reached only as some manifest's `subject`, never as a root, child or layer.
    pub subject_only: bool,
}

impl Node {
    /// A `subject` that is not in the layout: image-spec `manifest.md` lets an artifact name a
    /// subject that is stored elsewhere (a registry, another layout), so its absence is no
    /// fault of this layout.
    pub fn is_dangling_subject(&self) -> bool {
        self.subject_only
            && matches!(
                self.problem.as_ref().map(|p| &p.fault),
                Some(Fault::Missing)
            )
    }
}

/// Everything a walk reached, children before the documents that name them (so pushing in
/// this order never names a manifest the registry lacks); each blob once.
#[derive(Debug, Default)]
pub struct Graph {
    /// The nodes in post-order.
    pub nodes: Vec<Node>,
    by_digest: HashMap<Sha256Digest, usize>,
}

impl Graph {
    /// The node of `digest`.
    pub fn get(&self, digest: &Sha256Digest) -> Option<&Node> {
        self.by_digest.get(digest).map(|&i| &self.nodes[i])
    }

    /// Every sha256 digest reached.
    pub fn digests(&self) -> BTreeSet<Sha256Digest> {
        self.by_digest.keys().copied().collect()
    }

    /// The graph, or the first blob that failed (as an error with its exit kind). A dangling
    /// subject is not a failure ([`Node::is_dangling_subject`]); its node keeps its problem.
    pub fn checked(mut self) -> Result<Graph> {
        let failed = self
            .nodes
            .iter_mut()
            .filter(|n| !n.is_dangling_subject())
            .find_map(|n| n.problem.take());
        match failed {
            Some(problem) => Err(problem.into()),
            None => Ok(self),
        }
    }

    /// The parsed manifest of `digest`, when the walk read one there.
    pub fn manifest(&self, digest: &Sha256Digest) -> Option<&ImageManifest> {
        match self.get(digest)?.document.as_ref()?.parsed {
            Parsed::Manifest(ref manifest) => Some(manifest),
            Parsed::Index(_) => None,
        }
    }
}

/// Walks everything `roots` reach in the layout whose blobs are `store`.
pub fn walk(store: BlobStore<'_>, roots: &[Descriptor], options: &WalkOptions) -> Result<Graph> {
    let mut walker = Walker {
        store,
        options,
        graph: Graph::default(),
        entered: BTreeSet::new(),
        required: BTreeSet::new(),
        document_bytes: 0,
    };
    for root in roots {
        walker.visit(root, 0, false)?;
    }
    let Walker {
        mut graph,
        required,
        ..
    } = walker;
    for node in &mut graph.nodes {
        node.subject_only = !required.contains(&node.descriptor.digest().to_string());
    }
    Ok(graph)
}

struct Walker<'a> {
    store: BlobStore<'a>,
    options: &'a WalkOptions,
    graph: Graph,
    /// Keys of the blobs entered (a digest as written), so each is walked once.
    entered: BTreeSet<String>,
    /// Keys of the blobs reached other than as a subject.
    required: BTreeSet<String>,
    document_bytes: u64,
}

impl Walker<'_> {
    fn visit(&mut self, descriptor: &Descriptor, depth: usize, as_subject: bool) -> Result<()> {
        let key = descriptor.digest().to_string();
        if !as_subject {
            self.required.insert(key.clone());
        }
        if !self.entered.insert(key) {
            return Ok(());
        }
        let limits = self.options.limits;
        if self.entered.len() > limits.blobs {
            return Err(self.too_much(format!("more than {} blobs", limits.blobs)));
        }
        let kind = MediaKind::of(descriptor.media_type());
        if kind.is_document() && depth > limits.depth {
            return Err(self.too_much(format!(
                "indexes nested more than {} deep (at {})",
                limits.depth,
                descriptor.digest()
            )));
        }
        let mut node = Node {
            descriptor: descriptor.clone(),
            digest: None,
            kind,
            depth,
            document: None,
            problem: None,
            subject_only: as_subject,
        };
        match self.read(descriptor, kind) {
            Ok((digest, document)) => {
                node.digest = Some(digest);
                if let Some(document) = &document {
                    for child in document.parsed.children() {
                        self.visit(&child, depth + 1, false)?;
                    }
                    if self.options.subjects
                        && let Some(subject) = document.parsed.subject()
                    {
                        self.visit(subject, depth + 1, true)?;
                    }
                }
                node.document = document;
            }
            Err(problem) => {
                node.digest = self.store.digest(descriptor).ok();
                node.problem = Some(problem);
            }
        }
        if let Some(digest) = node.digest {
            self.graph.by_digest.insert(digest, self.graph.nodes.len());
        }
        self.graph.nodes.push(node);
        Ok(())
    }

    /// Checks a blob and, for a manifest or index, reads and parses it.
    fn read(
        &mut self,
        descriptor: &Descriptor,
        kind: MediaKind,
    ) -> Result<(Sha256Digest, Option<Document>), BlobError> {
        let digest = self.store.digest(descriptor)?;
        if !kind.is_document() {
            self.store.stat(descriptor)?;
            return Ok((digest, None));
        }
        let bytes = self.store.read_document(descriptor)?;
        self.document_bytes += bytes.len() as u64;
        if self.document_bytes > self.options.limits.document_bytes {
            return Err(BlobError {
                path: self.store.path(&digest),
                digest: digest.to_string(),
                fault: Fault::Invalid(format!(
                    "past the {} bytes of manifests and indexes airlock reads in one layout",
                    self.options.limits.document_bytes
                )),
            });
        }
        let parsed = if kind.is_index() {
            serde_json::from_slice(&bytes).map(|i| Parsed::Index(Box::new(i)))
        } else {
            serde_json::from_slice(&bytes).map(|m| Parsed::Manifest(Box::new(m)))
        };
        let parsed = parsed.map_err(|e| BlobError {
            path: self.store.path(&digest),
            digest: digest.to_string(),
            fault: Fault::Invalid(format!("not a valid {}: {e}", descriptor.media_type())),
        })?;
        Ok((digest, Some(Document { bytes, parsed })))
    }

    fn too_much(&self, what: String) -> anyhow::Error {
        error::input(format!(
            "{}: the layout reaches {what}; airlock walks at most {} blobs and {} levels of \
             indexes, so it is not read further",
            self.store.root().display(),
            self.options.limits.blobs,
            self.options.limits.depth
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::json::canonical_json;
    use crate::oci::media::DOCKER_MANIFEST;
    use oci_spec::image::MediaType;
    use proptest::prelude::*;
    use std::path::Path;

    /// Writes `bytes` as a blob under `root` and returns its descriptor.
    fn put(root: &Path, media_type: MediaType, bytes: &[u8]) -> Descriptor {
        let blobs = root.join("blobs/sha256");
        std::fs::create_dir_all(&blobs).unwrap();
        let digest = Sha256Digest::of(bytes);
        std::fs::write(blobs.join(digest.hex()), bytes).unwrap();
        Descriptor::new(media_type, bytes.len() as u64, digest)
    }

    fn manifest_json(config: &Descriptor, layers: &[Descriptor]) -> Vec<u8> {
        canonical_json(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": layers,
        }))
        .unwrap()
    }

    fn index_json(manifests: &[Descriptor]) -> Vec<u8> {
        canonical_json(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }))
        .unwrap()
    }

    /// A two-platform index sharing one layer: (root descriptor, every blob's descriptor).
    fn two_platforms(root: &Path) -> (Descriptor, Vec<Descriptor>) {
        let shared = put(root, MediaType::ImageLayerGzip, b"shared layer");
        let mut all = vec![shared.clone()];
        let mut manifests = Vec::new();
        for arch in ["amd64", "arm64"] {
            let config = put(
                root,
                MediaType::ImageConfig,
                format!("{{\"architecture\":\"{arch}\"}}").as_bytes(),
            );
            let own = put(root, MediaType::ImageLayerGzip, arch.as_bytes());
            let bytes = manifest_json(&config, &[own.clone(), shared.clone()]);
            let manifest = put(root, MediaType::ImageManifest, &bytes);
            all.extend([config, own, manifest.clone()]);
            manifests.push(manifest);
        }
        let index = put(root, MediaType::ImageIndex, &index_json(&manifests));
        all.push(index.clone());
        (index, all)
    }

    #[test]
    fn walks_children_first_and_each_blob_once() {
        let dir = tempfile::tempdir().unwrap();
        let (index, all) = two_platforms(dir.path());
        let graph = walk(
            BlobStore::new(dir.path()),
            &[index.clone(), index.clone()],
            &WalkOptions::default(),
        )
        .unwrap();
        assert_eq!(graph.nodes.len(), all.len());
        assert!(graph.nodes.iter().all(|n| n.problem.is_none()));
        assert_eq!(
            graph.nodes.last().unwrap().descriptor.digest(),
            index.digest()
        );
        // Every document comes after everything it names.
        for (position, node) in graph.nodes.iter().enumerate() {
            let named = node.document.iter().flat_map(|d| {
                let subject = d.parsed.subject().cloned();
                d.parsed.children().into_iter().chain(subject)
            });
            for child in named {
                let child = Sha256Digest::try_from(child.digest()).unwrap();
                let at = graph.nodes.iter().position(|n| n.digest == Some(child));
                assert!(
                    at.is_some_and(|at| at < position),
                    "{child} after its parent"
                );
            }
        }
        let children = graph.get(&Sha256Digest::try_from(index.digest()).unwrap());
        assert_eq!(children.unwrap().depth, 0);
        assert!(graph.checked().is_ok());
    }

    #[test]
    fn docker_manifests_are_followed_and_failures_stay_on_their_node() {
        let dir = tempfile::tempdir().unwrap();
        let config = put(dir.path(), MediaType::Other("x".into()), b"{}");
        let missing = Descriptor::new(MediaType::ImageLayerGzip, 4, Sha256Digest::of(b"gone"));
        let manifest = put(
            dir.path(),
            MediaType::Other(DOCKER_MANIFEST.into()),
            &manifest_json(&config, std::slice::from_ref(&missing)),
        );
        let graph = walk(
            BlobStore::new(dir.path()),
            std::slice::from_ref(&manifest),
            &WalkOptions::default(),
        )
        .unwrap();
        let gone = graph.get(&Sha256Digest::of(b"gone")).unwrap();
        assert!(matches!(
            gone.problem.as_ref().map(|p| &p.fault),
            Some(Fault::Missing)
        ));
        let err = graph.checked().unwrap_err();
        assert!(err.to_string().contains("is missing"), "{err}");
    }

    #[test]
    fn a_subject_stored_elsewhere_is_no_fault_but_a_missing_layer_is() {
        let dir = tempfile::tempdir().unwrap();
        let config = put(dir.path(), MediaType::EmptyJSON, b"{}");
        let sbom = put(
            dir.path(),
            MediaType::Other("application/spdx+json".into()),
            b"{}",
        );
        let elsewhere = Descriptor::new(MediaType::ImageManifest, 9, Sha256Digest::of(b"away"));
        let artifact = canonical_json(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config,
            "layers": [sbom],
            "subject": elsewhere,
        }))
        .unwrap();
        let artifact = put(dir.path(), MediaType::ImageManifest, &artifact);
        let options = WalkOptions {
            subjects: true,
            ..WalkOptions::default()
        };
        let store = BlobStore::new(dir.path());
        let graph = walk(store, std::slice::from_ref(&artifact), &options).unwrap();
        let away = graph.get(&Sha256Digest::of(b"away")).unwrap();
        assert!(away.is_dangling_subject());
        assert!(graph.checked().is_ok());

        // The same manifest as a root (or a layer) must be there.
        let roots = [artifact, elsewhere];
        let graph = walk(store, &roots, &options).unwrap();
        assert!(
            !graph
                .get(&Sha256Digest::of(b"away"))
                .unwrap()
                .is_dangling_subject()
        );
        assert!(graph.checked().is_err());
    }

    #[test]
    fn depth_and_count_limits_stop_the_walk() {
        let dir = tempfile::tempdir().unwrap();
        let (mut top, _) = two_platforms(dir.path());
        for _ in 0..3 {
            top = put(dir.path(), MediaType::ImageIndex, &index_json(&[top]));
        }
        let store = BlobStore::new(dir.path());
        let limits = |depth, blobs| WalkOptions {
            limits: Limits {
                depth,
                blobs,
                ..Limits::default()
            },
            subjects: false,
        };
        assert!(walk(store, std::slice::from_ref(&top), &limits(4, 100)).is_ok());
        let err = walk(store, std::slice::from_ref(&top), &limits(3, 100)).unwrap_err();
        assert!(err.to_string().contains("nested more than 3 deep"), "{err}");
        let err = walk(store, std::slice::from_ref(&top), &limits(8, 5)).unwrap_err();
        assert!(err.to_string().contains("more than 5 blobs"), "{err}");
        assert_eq!(crate::error::exit_kind(&err), crate::error::ExitKind::Input);
    }

    /// Every node of a graph from a walk that did not fail: a document that was read had its
    /// children walked, and a node without a problem has a digest.
    fn assert_consistent(graph: &Graph) {
        for node in &graph.nodes {
            if node.problem.is_none() {
                assert!(node.digest.is_some());
            }
            for child in node.document.iter().flat_map(|d| d.parsed.children()) {
                let reached = graph
                    .nodes
                    .iter()
                    .any(|n| n.descriptor.digest() == child.digest());
                assert!(reached, "{} was not walked", child.digest());
            }
        }
    }

    /// Every place in a JSON document, as JSON pointers.
    fn pointers(value: &serde_json::Value, at: String, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, child) in map {
                    let key = key.replace('~', "~0").replace('/', "~1");
                    pointers(child, format!("{at}/{key}"), out);
                }
            }
            serde_json::Value::Array(items) => {
                for (i, child) in items.iter().enumerate() {
                    pointers(child, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
        out.push(at);
    }

    /// Values an attacker would put in a descriptor's place.
    fn hostile_value() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            Just(serde_json::Value::Null),
            any::<u64>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            Just(serde_json::json!(1u64 << 62)),
            ".{0,40}".prop_map(serde_json::Value::from),
            Just(serde_json::json!("sha256:../../../etc/passwd")),
            Just(serde_json::json!(format!("sha512:{}", "0".repeat(128)))),
            Just(serde_json::json!("application/vnd.oci.image.index.v1+json")),
            Just(serde_json::json!(DOCKER_MANIFEST)),
            Just(serde_json::json!([])),
            Just(serde_json::json!({})),
        ]
    }

    /// A byte-level edit: overwrite, insert or delete at a position.
    fn byte_edit() -> impl Strategy<Value = (prop::sample::Index, u8, u8)> {
        (any::<prop::sample::Index>(), any::<u8>(), 0u8..3)
    }

    fn apply_byte_edits(bytes: &mut Vec<u8>, edits: &[(prop::sample::Index, u8, u8)]) {
        for (at, byte, op) in edits {
            if bytes.is_empty() {
                bytes.push(*byte);
                continue;
            }
            let i = at.index(bytes.len());
            match op {
                0 => bytes[i] = *byte,
                1 => bytes.insert(i, *byte),
                _ => {
                    bytes.remove(i);
                }
            }
        }
    }

    /// Stores `document` under `root` as a blob of `media_type` and walks from it.
    fn walk_document(root: &Path, media_type: MediaType, document: &[u8]) -> Graph {
        let top = put(root, media_type, document);
        let options = WalkOptions {
            subjects: true,
            ..WalkOptions::default()
        };
        let graph = walk(BlobStore::new(root), std::slice::from_ref(&top), &options).unwrap();
        assert_consistent(&graph);
        graph
    }

    proptest! {
        #[test]
        fn prop_walk_survives_arbitrary_bytes(
            bytes in prop::collection::vec(any::<u8>(), 0..512),
            index in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let media_type = if index { MediaType::ImageIndex } else { MediaType::ImageManifest };
            let graph = walk_document(dir.path(), media_type, &bytes);
            let top = graph.nodes.last().unwrap();
            // Not JSON of its type: a clear error naming the blob, exit 2.
            if let Some(problem) = &top.problem {
                prop_assert!(matches!(problem.fault, Fault::Invalid(_)), "{problem}");
                prop_assert!(problem.to_string().contains(&Sha256Digest::of(&bytes).to_string()));
            }
        }

        #[test]
        fn prop_walk_survives_mutated_real_documents(
            edits in prop::collection::vec(byte_edit(), 0..6),
            replacements in prop::collection::vec((any::<prop::sample::Index>(), hostile_value()), 0..4),
            index in any::<bool>(),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (top, _) = two_platforms(dir.path());
            let (source, media_type) = if index {
                (top, MediaType::ImageIndex)
            } else {
                let graph = walk(BlobStore::new(dir.path()), &[top], &WalkOptions::default()).unwrap();
                let manifest = graph.nodes.iter().find(|n| n.kind.is_manifest()).unwrap();
                (manifest.descriptor.clone(), MediaType::ImageManifest)
            };
            let store = BlobStore::new(dir.path());
            let mut value: serde_json::Value = store.read_json(&source).unwrap();
            for (at, replacement) in replacements {
                let mut places = Vec::new();
                pointers(&value, String::new(), &mut places);
                let place = &places[at.index(places.len())];
                match value.pointer_mut(place) {
                    Some(slot) => *slot = replacement,
                    None => value = replacement,
                }
            }
            let mut bytes = serde_json::to_vec(&value).unwrap();
            apply_byte_edits(&mut bytes, &edits);
            let graph = walk_document(dir.path(), media_type, &bytes);
            // Whatever the walk reached is either checked or carries the reason it is not,
            // naming the blob.
            for node in &graph.nodes {
                if let Some(problem) = &node.problem {
                    let encoded = problem.digest.rsplit(':').next().unwrap_or_default();
                    prop_assert!(problem.to_string().contains(encoded), "{problem}");
                }
            }
        }
    }
}
