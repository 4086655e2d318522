//! Canonical JSON for OCI documents.
//!
//! A descriptor's digest is the hash of the exact bytes written, so those bytes must not
//! depend on hash-map iteration order (oci-spec keeps annotations, labels, ports and volumes
//! in `HashMap`s). Every document airlock writes goes through [`canonical_json`]: object keys
//! sorted at every depth, no insignificant whitespace.

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::Value;

/// Serialises `value` with object keys sorted recursively and no whitespace.
pub fn canonical_json<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    let value = serde_json::to_value(value).context("cannot serialise an OCI document")?;
    let mut out = Vec::new();
    write_sorted(&value, &mut out)?;
    Ok(out)
}

fn write_sorted(value: &Value, out: &mut Vec<u8>) -> Result<()> {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, key)?;
                out.push(b':');
                write_sorted(&map[key], out)?;
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_sorted(item, out)?;
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn sorts_keys_at_every_depth() {
        let mut labels = HashMap::new();
        for k in ["zeta", "alpha", "mid", "beta", "omega", "gamma"] {
            labels.insert(k.to_owned(), k.to_owned());
        }
        let doc = serde_json::json!({"b": {"z": 1, "a": [ {"y": 1, "x": 2} ]}, "a": labels});
        let text = String::from_utf8(canonical_json(&doc).unwrap()).unwrap();
        assert_eq!(
            text,
            r#"{"a":{"alpha":"alpha","beta":"beta","gamma":"gamma","mid":"mid","omega":"omega","zeta":"zeta"},"b":{"a":[{"x":2,"y":1}],"z":1}}"#
        );
    }
}
