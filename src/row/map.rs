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
//! dotted path to another dotted path (intermediate objects are created as needed), `drop`
//! removes dotted paths, and `json` turns the values of top-level columns into JSON text — what
//! BigQuery's streaming API expects for a `JSON` column (an object sent as-is would be read as a
//! RECORD). A rename onto a field the record already has is a record error: a map never
//! overwrites a field.
//!
//! A map accepts exactly the records the plain path accepts (docs/src/rows.md, "Row contract"): it never
//! parses a whole record into a DOM. Only the objects on a mapped path are split into their
//! members, one level at a time; every other value stays its original text, so any depth, any
//! number (`1e400`, 40-digit integers) and any string escape (`"\ud800"`) pass through as they
//! came. With duplicate keys, paths follow the last occurrence, as the row does.

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::Deserialize;

use crate::json::lex::{decode, skip_ws, string_end, value_end};
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
    /// `--map`'s value: the mapping itself when it starts with `{` (blanks aside), so it fits
    /// in an environment variable (a Lambda function has no file of its own to point at), or
    /// else the path of a file holding it. A file whose name starts with `{` is reached as
    /// `./{…`.
    pub fn from_arg(arg: &std::path::Path) -> Result<Mapping, String> {
        match arg.to_str() {
            Some(text) if text.trim_start().starts_with('{') => {
                Mapping::parse(text.as_bytes(), "--map")
            }
            _ => Mapping::load(arg),
        }
    }

    pub fn load(path: &std::path::Path) -> Result<Mapping, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Mapping::parse(&bytes, &path.display().to_string())
    }

    /// A mapping from its JSON text; `origin` (a file, or `--map`) names it in the error.
    fn parse(bytes: &[u8], origin: &str) -> Result<Mapping, String> {
        serde_json::from_slice(bytes).map_err(|e| {
            format!(
                "{origin}: not a mapping ({{\"rename\":{{..}},\"drop\":[..],\"json\":[..]}}): {e}"
            )
        })
    }

    /// Writes the mapped record to `out` (cleared first) and says its shape. `json` must be
    /// valid JSON (records are validated before they are mapped). Records that are not objects
    /// pass through unchanged.
    pub fn apply(&self, json: &[u8], out: &mut Vec<u8>) -> Result<Shape, String> {
        out.clear();
        let start = skip_ws(json, 0);
        let end = json
            .iter()
            .rposition(|c| !c.is_ascii_whitespace())
            .map_or(start, |p| p + 1);
        let text = &json[start..end.max(start)];
        if text.first() != Some(&b'{') {
            out.extend_from_slice(json);
            return Ok(Shape::Other);
        }
        let mut root = members(text)?;
        for (from, to) in &self.rename {
            let from_path: Vec<&str> = from.split('.').collect();
            if let Some(v) = take(&mut root, &from_path)? {
                let to_path: Vec<&str> = to.split('.').collect();
                put(&mut root, &to_path, v).map_err(|why| {
                    format!("mapping: `{from}` cannot be renamed to `{to}`: {why}")
                })?;
            }
        }
        for path in &self.drop {
            let path: Vec<&str> = path.split('.').collect();
            take(&mut root, &path)?;
        }
        for col in &self.json {
            let Some(e) = root.iter_mut().rev().find(|e| *e.key == *col.as_bytes()) else {
                continue;
            };
            let mut text = Vec::new();
            e.value.write(&mut text);
            if text.first() == Some(&b'"') || text == b"null" {
                continue;
            }
            e.value = Node::Owned(json_text(&text));
        }
        let empty = root.is_empty();
        write_members(&root, out);
        Ok(Shape::Object { empty })
    }
}

/// A value on the way through a map: its original text until a path goes into it.
enum Node<'a> {
    Raw(&'a [u8]),
    Owned(Vec<u8>),
    Object(Vec<Entry<'a>>),
}

struct Entry<'a> {
    /// The key as written, quotes and escapes included.
    raw_key: Cow<'a, [u8]>,
    /// The key's content, escapes decoded (see [`decode`]).
    key: Cow<'a, [u8]>,
    value: Node<'a>,
}

impl<'a> Node<'a> {
    /// The members of this value if it is an object, split out of its text on first use.
    fn members(&mut self) -> Result<Option<&mut Vec<Entry<'a>>>, String> {
        if let Node::Raw(text) = self {
            if text.first() != Some(&b'{') {
                return Ok(None);
            }
            *self = Node::Object(members(text)?);
        }
        Ok(match self {
            Node::Object(m) => Some(m),
            _ => None,
        })
    }

    fn write(&self, out: &mut Vec<u8>) {
        match self {
            Node::Raw(t) => out.extend_from_slice(t),
            Node::Owned(t) => out.extend_from_slice(t),
            Node::Object(m) => write_members(m, out),
        }
    }
}

fn write_members(members: &[Entry<'_>], out: &mut Vec<u8>) {
    out.push(b'{');
    for (i, e) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(&e.raw_key);
        out.push(b':');
        e.value.write(out);
    }
    out.push(b'}');
}

/// The members of the object `text` (valid JSON, starting with `{`), values left as text.
fn members(text: &[u8]) -> Result<Vec<Entry<'_>>, String> {
    let bad = || "mapping: internal error: the record is not valid JSON".to_string();
    let mut out = Vec::new();
    let mut i = skip_ws(text, 1);
    if text.get(i) == Some(&b'}') {
        return Ok(out);
    }
    loop {
        if text.get(i) != Some(&b'"') {
            return Err(bad());
        }
        let end = string_end(text, i).ok_or_else(bad)?;
        let colon = skip_ws(text, end);
        if text.get(colon) != Some(&b':') {
            return Err(bad());
        }
        let v = skip_ws(text, colon + 1);
        let ve = value_end(text, v).ok_or_else(bad)?;
        out.push(Entry {
            raw_key: Cow::Borrowed(&text[i..end]),
            key: decode(&text[i + 1..end - 1]),
            value: Node::Raw(&text[v..ve]),
        });
        i = skip_ws(text, ve);
        match text.get(i) {
            Some(b',') => i = skip_ws(text, i + 1),
            Some(b'}') => return Ok(out),
            _ => return Err(bad()),
        }
    }
}

/// Removes every occurrence of the dotted path and returns the value of the last one (the one
/// the row would keep); nested paths follow the last occurrence of each step.
fn take<'a>(members: &mut Vec<Entry<'a>>, path: &[&str]) -> Result<Option<Node<'a>>, String> {
    let Some((head, rest)) = path.split_first() else {
        return Ok(None);
    };
    let head = head.as_bytes();
    if rest.is_empty() {
        let mut last = None;
        let mut i = 0;
        while i < members.len() {
            if *members[i].key == *head {
                last = Some(members.remove(i).value);
            } else {
                i += 1;
            }
        }
        return Ok(last);
    }
    match members.iter_mut().rev().find(|e| *e.key == *head) {
        Some(e) => match e.value.members()? {
            Some(inner) => take(inner, rest),
            None => Ok(None),
        },
        None => Ok(None),
    }
}

/// Puts `value` at the dotted path, creating objects on the way; never overwrites.
fn put<'a>(members: &mut Vec<Entry<'a>>, path: &[&str], value: Node<'a>) -> Result<(), String> {
    let Some((head, rest)) = path.split_first() else {
        return Err("the target is empty".into());
    };
    let pos = members.iter().rposition(|e| *e.key == *head.as_bytes());
    if rest.is_empty() {
        if pos.is_some() {
            return Err(format!(
                "the record already has `{head}` (a rename never overwrites a field)"
            ));
        }
        members.push(Entry {
            raw_key: Cow::Owned(serde_json::to_vec(head).expect("a string serialises")),
            key: Cow::Owned(head.as_bytes().to_vec()),
            value,
        });
        return Ok(());
    }
    let i = match pos {
        Some(i) => i,
        None => {
            members.push(Entry {
                raw_key: Cow::Owned(serde_json::to_vec(head).expect("a string serialises")),
                key: Cow::Owned(head.as_bytes().to_vec()),
                value: Node::Object(Vec::new()),
            });
            members.len() - 1
        }
    };
    match members[i].value.members()? {
        Some(inner) => put(inner, rest, value),
        None => Err(format!("the record's `{head}` is not an object")),
    }
}

/// `text` (valid JSON) as a JSON string of its compact form: whitespace between tokens
/// removed, everything else (key order, number text, escapes) as it was.
fn json_text(text: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len() + 8);
    out.push(b'"');
    let mut in_string = false;
    let mut escaped = false;
    for &c in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_string = false;
            }
        } else if c == b'"' {
            in_string = true;
        } else if matches!(c, b' ' | b'\t' | b'\n' | b'\r') {
            continue;
        }
        if c == b'"' || c == b'\\' {
            out.push(b'\\');
        }
        out.push(c);
    }
    out.push(b'"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn try_map(m: Value, record: &str) -> Result<String, String> {
        let m: Mapping = serde_json::from_value(m).unwrap();
        let mut out = Vec::new();
        m.apply(record.as_bytes(), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

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

    #[test]
    fn a_rename_never_overwrites_and_dotted_targets_nest() {
        let err = try_map(json!({"rename": {"id": "a"}}), r#"{"id":1,"a":2}"#).unwrap_err();
        assert!(err.contains("already has `a`"), "{err}");
        assert_eq!(
            map(json!({"rename": {"id": "a.x"}}), r#"{"id":1,"a":{"y":2}}"#),
            json!({"a": {"y": 2, "x": 1}})
        );
        assert_eq!(
            map(json!({"rename": {"id": "b.c.d"}}), r#"{"id":1}"#),
            json!({"b": {"c": {"d": 1}}})
        );
        let err = try_map(json!({"rename": {"id": "a.x"}}), r#"{"id":1,"a":3}"#).unwrap_err();
        assert!(err.contains("not an object"), "{err}");
        // Absent sources leave the record alone.
        assert_eq!(
            map(json!({"rename": {"zzz": "a"}}), r#"{"a":1}"#),
            json!({"a": 1})
        );
    }

    #[test]
    fn values_the_map_does_not_touch_keep_their_text() {
        let deep = format!("{}{}", "[".repeat(3000), "]".repeat(3000));
        let rec = format!(
            r#"{{"n":1e400,"s":"\ud800","d":{deep},"big":123456789012345678901234567890,"k":1}}"#
        );
        let got = try_map(json!({"drop": ["k"]}), &rec).unwrap();
        assert_eq!(
            got,
            format!(
                r#"{{"n":1e400,"s":"\ud800","d":{deep},"big":123456789012345678901234567890}}"#
            )
        );
        // The empty mapping gives the record back (whitespace around it aside).
        let rec = " {\"a\" : [1, {\"b\":2}] ,\"a\":3}\n";
        assert_eq!(
            try_map(json!({}), rec).unwrap(),
            r#"{"a":[1, {"b":2}],"a":3}"#
        );
        // With duplicates, paths follow the last occurrence.
        assert_eq!(
            try_map(
                json!({"rename": {"a.x": "y"}}),
                r#"{"a":{"x":1},"a":{"x":2}}"#
            )
            .unwrap(),
            r#"{"a":{"x":1},"a":{},"y":2}"#
        );
        assert_eq!(
            map(
                json!({"json": ["p"]}),
                r#"{"p":{"k" : "a b\"c", "n":1e400}}"#
            ),
            json!({"p": "{\"k\":\"a b\\\"c\",\"n\":1e400}"})
        );
    }
}
