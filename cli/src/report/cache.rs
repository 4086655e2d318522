//! The report's cache: what reading a layer found (sizes, entries, recompressed sizes) and the
//! figures of the binary read from it, one small JSON file per layer digest and per binary
//! under `target/airlock/report-cache`, keyed also by airlock's version and by what was
//! measured (whether the layer and the binary were recompressed), so `dist` and a `report`
//! run again on the same image measure each layer once.
//!
//! The cache never vouches for a blob: on a hit the blob is still read and its digest checked
//! (what `verify --layout` does, a fraction of decompressing it). A cache file that cannot be
//! read or parsed is a miss, never an error; one that cannot be written is skipped.

use std::path::PathBuf;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};

use crate::input::{self, Links};

/// The largest cache file read (a layer of a large base image lists every file's path).
const MAX_ENTRY: u64 = 64 << 20;

/// A cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// The cache of `workspace`, in its target directory.
    pub fn of_workspace(workspace: &crate::workspace::Workspace) -> Cache {
        Cache::at(workspace.airlock_dir().join("report-cache"))
    }

    /// A cache in `dir`.
    pub fn at(dir: PathBuf) -> Cache {
        Cache { dir }
    }

    /// The file of `key` (a layer digest and what was measured), named by a hash of it with
    /// airlock's version: another version never reads it.
    fn path(&self, kind: &str, key: &str) -> PathBuf {
        let mut hasher = Sha256::new();
        for part in [env!("CARGO_PKG_VERSION"), kind, key] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        self.dir
            .join(format!("{kind}-{}.json", hex::encode(hasher.finalize())))
    }

    /// The value stored under `key`, if any.
    pub fn get<T: DeserializeOwned>(&self, kind: &str, key: &str) -> Option<T> {
        let path = self.path(kind, key);
        let bytes = input::read_regular(&path, Links::Refuse, MAX_ENTRY).ok()?;
        let value = serde_json::from_slice(&bytes).ok()?;
        crate::progress::detail(format!(
            "report cache: {kind} {key} measured earlier ({})",
            path.display()
        ));
        Some(value)
    }

    /// Stores `value` under `key`.
    pub fn put<T: Serialize>(&self, kind: &str, key: &str, value: &T) {
        let path = self.path(kind, key);
        let written = std::fs::create_dir_all(&self.dir)
            .map_err(anyhow::Error::from)
            .and_then(|()| Ok(serde_json::to_vec(value)?))
            .and_then(|bytes| crate::atomic::write_file(&path, &bytes));
        if let Err(e) = written {
            crate::progress::detail(format!(
                "report cache: cannot write {} ({e:#}); measuring again next time",
                path.display()
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_by_key_and_garbage_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::at(dir.path().join("c"));
        assert_eq!(cache.get::<u64>("layer", "a"), None);
        cache.put("layer", "a", &7u64);
        assert_eq!(cache.get::<u64>("layer", "a"), Some(7));
        assert_eq!(cache.get::<u64>("layer", "b"), None);
        assert_eq!(cache.get::<u64>("binary", "a"), None);
        std::fs::write(cache.path("layer", "a"), b"{not json").unwrap();
        assert_eq!(cache.get::<u64>("layer", "a"), None);
    }
}
