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
    /// The descriptors it names, in document order: an index's manifests, or a manifest's
    /// config then layers; the subject last when `subjects`.
    pub fn children(&self, subjects: bool) -> Vec<Descriptor> {
        let (mut children, subject) = match self {
            Parsed::Manifest(manifest) => {
                let mut children = vec![manifest.config().clone()];
                children.extend(manifest.layers().iter().cloned());
                (children, manifest.subject())
            }
            Parsed::Index(index) => (index.manifests().clone(), index.subject()),
        };
        if subjects {
            children.extend(subject.clone());
        }
        children
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

    /// The graph, or the first blob that failed (as an error with its exit kind).
    pub fn checked(mut self) -> Result<Graph> {
        match self.nodes.iter_mut().find_map(|n| n.problem.take()) {
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
        document_bytes: 0,
    };
    for root in roots {
        walker.visit(root, 0)?;
    }
    Ok(walker.graph)
}

struct Walker<'a> {
    store: BlobStore<'a>,
    options: &'a WalkOptions,
    graph: Graph,
    /// Keys of the blobs entered (a digest as written), so each is walked once.
    entered: BTreeSet<String>,
    document_bytes: u64,
}

impl Walker<'_> {
    fn visit(&mut self, descriptor: &Descriptor, depth: usize) -> Result<()> {
        if !self.entered.insert(descriptor.digest().to_string()) {
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
        };
        match self.read(descriptor, kind) {
            Ok((digest, document)) => {
                node.digest = Some(digest);
                if let Some(document) = &document {
                    for child in document.parsed.children(self.options.subjects) {
                        self.visit(&child, depth + 1)?;
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
