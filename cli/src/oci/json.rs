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
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Any JSON value without floats (OCI documents have none, and a float need not survive a
    /// round trip through text bit for bit).
    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(".{0,8}", inner, 0..6)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    fn keys_sorted(value: &Value) -> bool {
        match value {
            Value::Object(map) => {
                let keys: Vec<&String> = map.keys().collect();
                keys.windows(2).all(|w| w[0] < w[1]) && map.values().all(keys_sorted)
            }
            Value::Array(items) => items.iter().all(keys_sorted),
            _ => true,
        }
    }

    fn descriptor() -> impl Strategy<Value = oci_spec::image::Descriptor> {
        let media_type = prop_oneof![
            Just(oci_spec::image::MediaType::ImageManifest),
            Just(oci_spec::image::MediaType::ImageIndex),
            Just(oci_spec::image::MediaType::ImageLayerZstd),
            "[a-z]{1,8}/[a-z.+-]{1,20}".prop_map(oci_spec::image::MediaType::Other),
        ];
        (
            media_type,
            any::<u64>(),
            any::<[u8; 8]>(),
            prop::collection::hash_map(".{0,10}", ".{0,10}", 0..5),
            proptest::option::of("[a-z]{1,8}/[a-z.+-]{1,20}"),
        )
            .prop_map(|(media_type, size, seed, annotations, artifact_type)| {
                let digest = crate::digest::Sha256Digest::of(&seed);
                let mut d = oci_spec::image::Descriptor::new(media_type, size, digest);
                if !annotations.is_empty() {
                    d.set_annotations(Some(annotations));
                }
                d.set_artifact_type(artifact_type.map(oci_spec::image::MediaType::Other));
                d
            })
    }

    proptest! {
        #[test]
        fn prop_canonical_json_round_trips_and_is_a_fixed_point(value in json_value()) {
            let canonical = canonical_json(&value).unwrap();
            let parsed: Value = serde_json::from_slice(&canonical).unwrap();
            prop_assert_eq!(&parsed, &value);
            prop_assert!(keys_sorted(&parsed));
            prop_assert!(!canonical.contains(&b'\n'));
            prop_assert_eq!(canonical_json(&parsed).unwrap(), canonical);
        }

        #[test]
        fn prop_descriptors_round_trip_to_the_same_bytes(d in descriptor()) {
            // Annotations live in a HashMap: the bytes must not depend on its order.
            let canonical = canonical_json(&d).unwrap();
            let parsed: oci_spec::image::Descriptor = serde_json::from_slice(&canonical).unwrap();
            prop_assert_eq!(&parsed, &d);
            prop_assert_eq!(canonical_json(&parsed).unwrap(), canonical);
        }
    }

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
