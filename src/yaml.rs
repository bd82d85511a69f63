//! Every YAML call ccci makes goes through here: `serde_yaml` is deprecated by its author, and
//! keeping it behind this module makes a move to a maintained fork one edit.

pub use serde_yaml::{Mapping, Value};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Parses YAML text into `T`; the error names the line and column.
pub fn from_str<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    serde_yaml::from_str(text).map_err(|e| e.to_string())
}

pub fn to_string<T: Serialize>(value: &T) -> Result<String, String> {
    serde_yaml::to_string(value).map_err(|e| e.to_string())
}

/// Resolves YAML merge keys (`<<: *anchor`, `<<: [*a, *b]`) into their mappings, keys already
/// in a mapping winning over merged ones, as <https://yaml.org/type/merge.html> specifies.
/// Anchors and aliases themselves are resolved by the parser.
pub fn apply_merge(value: &mut Value) -> Result<(), String> {
    value.apply_merge().map_err(|e| e.to_string())
}

/// Recursively merges `overlay` into `base`: mappings merge key by key, anything else in the
/// overlay replaces what the base had. This is how compose files layer.
pub fn merge(base: &mut Value, overlay: Value) {
    match (base, overlay) {
        (Value::Mapping(base), Value::Mapping(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keys_resolve_with_local_keys_winning() {
        let mut value: Value = from_str(
            "x-a: &a {image: a, retries: 1}\nx-b: &b {retries: 2, timeout: 5s}\ns:\n  <<: [*a, *b]\n  image: local\n",
        )
        .unwrap();
        apply_merge(&mut value).unwrap();
        let want: Value = from_str("{image: local, retries: 1, timeout: 5s}").unwrap();
        assert_eq!(value.get("s"), Some(&want));
        let mut scalar: Value = from_str("s:\n  <<: 3\n").unwrap();
        assert!(apply_merge(&mut scalar).is_err());
    }

    #[test]
    fn merge_layers_mappings_and_replaces_leaves() {
        let mut base: Value = from_str("a: {b: 1, c: [1]}\nd: x").unwrap();
        merge(&mut base, from_str("a: {c: [2], e: 3}").unwrap());
        let want: Value = from_str("a: {b: 1, c: [2], e: 3}\nd: x").unwrap();
        assert_eq!(base, want);
    }
}
