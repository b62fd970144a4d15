//! `--map FILE`: make records fit the table. Real event records rarely match a warehouse table
//! exactly; this covers the common gaps and nothing more:
//!
//! ```json
//! {"rename": {"detail.id": "event_id", "ts": "event_time"},
//!  "drop":   ["debug", "detail.raw"],
//!  "json":   ["payload"]}
//! ```
//!
//! Applied in that order to every record that is a JSON object: `rename` moves the value at a
//! dotted path to a top-level column, `drop` removes dotted paths, and `json` turns the values
//! of top-level columns into JSON text — what BigQuery's streaming API expects for a `JSON`
//! column (an object sent as-is would be read as a RECORD). Unlike the rest of the row path,
//! this parses each record into a DOM, so it costs throughput; it is off unless configured.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::record::Shape;

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    #[serde(default)]
    pub rename: BTreeMap<String, String>,
    #[serde(default)]
    pub drop: Vec<String>,
    #[serde(default)]
    pub json: Vec<String>,
}

impl Mapping {
    pub fn load(path: &std::path::Path) -> Result<Mapping, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            format!(
                "{}: not a mapping ({{\"rename\":{{..}},\"drop\":[..],\"json\":[..]}}): {e}",
                path.display()
            )
        })
    }

    /// Writes the mapped record to `out` (cleared first) and says its shape. Records that are
    /// not objects pass through unchanged.
    pub fn apply(&self, json: &[u8], out: &mut Vec<u8>) -> Result<Shape, String> {
        out.clear();
        let mut value: Value =
            serde_json::from_slice(json).map_err(|e| format!("mapping: invalid JSON: {e}"))?;
        let Some(obj) = value.as_object_mut() else {
            out.extend_from_slice(json);
            return Ok(Shape::Other);
        };
        for (from, to) in &self.rename {
            if let Some(v) = take(obj, from) {
                obj.insert(to.clone(), v);
            }
        }
        for path in &self.drop {
            take(obj, path);
        }
        for col in &self.json {
            if let Some(v) = obj.get_mut(col) {
                if !v.is_string() && !v.is_null() {
                    *v = Value::String(v.to_string());
                }
            }
        }
        let empty = obj.is_empty();
        serde_json::to_writer(&mut *out, &value).map_err(|e| format!("mapping: {e}"))?;
        Ok(Shape::Object { empty })
    }
}

/// Removes and returns the value at a dotted path.
fn take(obj: &mut Map<String, Value>, path: &str) -> Option<Value> {
    match path.split_once('.') {
        None => obj.remove(path),
        Some((head, rest)) => take(obj.get_mut(head)?.as_object_mut()?, rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(m: Value, record: &str) -> Value {
        let m: Mapping = serde_json::from_value(m).unwrap();
        let mut out = Vec::new();
        m.apply(record.as_bytes(), &mut out).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn renames_drops_and_stringifies_json_columns() {
        let m = json!({
            "rename": {"detail.id": "event_id", "ts": "event_time"},
            "drop": ["debug", "detail.raw"],
            "json": ["detail", "tags", "absent"]
        });
        let got = map(
            m,
            r#"{"ts":"2026-11-25T13:00:00Z","debug":true,"tags":["a"],"detail":{"id":"e-1","raw":"x","k":1}}"#,
        );
        assert_eq!(
            got,
            json!({"event_time": "2026-11-25T13:00:00Z", "event_id": "e-1",
                   "tags": "[\"a\"]", "detail": "{\"k\":1}"})
        );
    }

    #[test]
    fn non_objects_pass_through_and_unknown_keys_are_refused() {
        assert_eq!(map(json!({"drop": ["a"]}), "[1,2]"), json!([1, 2]));
        assert!(serde_json::from_value::<Mapping>(json!({"renames": {}})).is_err());
    }
}
