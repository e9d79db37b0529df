//! Azure document keys for normal windows.
//!
//! Azure keys may only hold letters, digits, `_`, `-` and `=`, but window ids ("pump 3/clip-w00012")
//! and machine names may hold anything. The key is therefore the hex of the machine name, a dash,
//! and the hex of the window id: reversible, collision-free across machines (a dash is not a hex
//! digit), and deterministic, so that re-running an interrupted upload with `mergeOrUpload`
//! rewrites the same documents instead of duplicating them. The readable id is stored beside it.

/// The document key for window `id` of `machine`.
pub fn doc_key(machine: &str, id: &str) -> String {
    format!(
        "{}-{}",
        hex::encode(machine.as_bytes()),
        hex::encode(id.as_bytes())
    )
}

/// Inverse of [`doc_key`]: `(machine, id)`, or `None` if `key` was not made by it.
pub fn parse_doc_key(key: &str) -> Option<(String, String)> {
    let (m, i) = key.split_once('-')?;
    let m = String::from_utf8(hex::decode(m).ok()?).ok()?;
    let i = String::from_utf8(hex::decode(i).ok()?).ok()?;
    Some((m, i))
}

/// Whether `key` satisfies Azure's document key rules (letters, digits, `_ - =`, not starting
/// with `_`, at most 1024 characters).
pub fn is_valid_azure_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 1024
        && !key.starts_with('_')
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '=')
}

/// Quotes a string literal for an OData `$filter` (single quotes doubled).
pub fn odata_string(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_are_valid_for_awkward_ids() {
        for (m, id) in [
            ("pump-3", "clip-w00012"),
            ("Pumpe Größe/2", "a b/c?d'e\"f-w1"),
            ("", "x"),
            ("m", "日本語-w00001"),
        ] {
            let k = doc_key(m, id);
            assert!(is_valid_azure_key(&k), "{k}");
            assert_eq!(parse_doc_key(&k), Some((m.to_string(), id.to_string())));
        }
    }

    #[test]
    fn same_id_on_two_machines_gives_two_keys() {
        assert_ne!(doc_key("a", "w1"), doc_key("b", "w1"));
        // No ambiguity from concatenation either.
        assert_ne!(doc_key("ab", "c"), doc_key("a", "bc"));
    }

    #[test]
    fn odata_quotes_are_doubled() {
        assert_eq!(odata_string("o'brien"), "'o''brien'");
    }
}
