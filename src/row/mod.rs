//! Records → rows: a row ID, and the record's bytes with the ID column spliced in.
//!
//! The row bytes are built by copying the record and splicing `,"_row_id":"…"` before its
//! closing brace, never by re-serialising: this is the hot path. The column goes last so that,
//! should a record already carry a field of the same name, readers that keep the last duplicate
//! (BigQuery's JSON loader, serde_json, jq) see ours.

pub mod id;

pub use id::{ObjectSeed, RowId};

use crate::record::{Payload, RecordErrorKind, Shape};

/// Where row IDs come from.
#[derive(Debug, Clone, Default)]
pub enum RowIdSource {
    /// Source position: bucket, key, ETag, record ordinal.
    #[default]
    Position,
    /// A field of the row (dotted path), e.g. `eventId` or `detail.id`.
    Field(Vec<String>),
}

impl RowIdSource {
    pub fn field(path: &str) -> RowIdSource {
        RowIdSource::Field(path.split('.').map(str::to_string).collect())
    }
}

/// One row, ready for a sink. `json` is a single-line JSON object without a trailing newline.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub id: &'a RowId,
    pub json: &'a [u8],
    pub ordinal: u64,
}

/// Builds rows into a reusable buffer.
pub struct RowBuilder {
    seed: ObjectSeed,
    source: RowIdSource,
    /// `"<column>":"` with the column name JSON-escaped, or `None` when the column is disabled.
    column_prefix: Option<Vec<u8>>,
    buf: Vec<u8>,
    id: RowId,
}

impl RowBuilder {
    pub fn new(seed: ObjectSeed, source: RowIdSource, column: Option<&str>) -> RowBuilder {
        let column_prefix = column.filter(|c| !c.is_empty()).map(|c| {
            let mut p = serde_json::to_vec(c).expect("a string serialises");
            p.extend_from_slice(b":\"");
            p
        });
        let id = seed.id(0, &[]);
        RowBuilder {
            seed,
            source,
            column_prefix,
            buf: Vec::with_capacity(64 * 1024),
            id,
        }
    }

    /// Builds the row for one payload of record `ordinal`.
    pub fn build(
        &mut self,
        payload: &Payload<'_>,
        ordinal: u64,
    ) -> Result<Row<'_>, RecordErrorKind> {
        self.id = match &self.source {
            RowIdSource::Position => self.seed.id(ordinal, payload.sub),
            RowIdSource::Field(path) => {
                let value = id::lookup(payload.json, path)
                    .map_err(RecordErrorKind::RowId)?
                    .ok_or_else(|| {
                        RecordErrorKind::RowId(format!(
                            "row-id field `{}` is missing",
                            path.join(".")
                        ))
                    })?;
                id::from_field(value)
            }
        };
        self.buf.clear();
        let json = payload.json;
        match (payload.shape, &self.column_prefix) {
            (Shape::Object { empty }, Some(prefix)) => {
                let close = json
                    .iter()
                    .rposition(|&b| b == b'}')
                    .expect("a valid JSON object ends with `}`");
                push_single_line(&mut self.buf, &json[..close]);
                if !empty {
                    self.buf.push(b',');
                }
                self.buf.extend_from_slice(prefix);
                self.buf.extend_from_slice(self.id.as_str().as_bytes());
                self.buf.extend_from_slice(b"\"}");
            }
            (Shape::Object { .. }, None) => push_single_line(&mut self.buf, trim_end(json)),
            (Shape::Other, prefix) => {
                self.buf.extend_from_slice(b"{\"value\":");
                push_single_line(&mut self.buf, trim_end(json));
                if let Some(prefix) = prefix {
                    self.buf.push(b',');
                    self.buf.extend_from_slice(prefix);
                    self.buf.extend_from_slice(self.id.as_str().as_bytes());
                    self.buf.push(b'"');
                }
                self.buf.push(b'}');
            }
        }
        Ok(Row {
            id: &self.id,
            json: &self.buf,
            ordinal,
        })
    }
}

fn trim_end(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    &b[..end]
}

/// Appends `src` with raw line breaks turned into spaces. In valid JSON they can only be
/// whitespace between tokens (strings escape them), so this keeps the value and makes the row
/// one NDJSON line even when the record was pretty-printed.
fn push_single_line(dst: &mut Vec<u8>, src: &[u8]) {
    let start = dst.len();
    dst.extend_from_slice(src);
    if memchr::memchr2(b'\n', b'\r', src).is_some() {
        for b in &mut dst[start..] {
            if *b == b'\n' || *b == b'\r' {
                *b = b' ';
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::ObjectRef;
    use crate::record::validate;

    fn build(
        json: &str,
        column: Option<&str>,
        source: RowIdSource,
    ) -> Result<String, RecordErrorKind> {
        let seed = ObjectSeed::new(&ObjectRef::new("b", "k"));
        let positional = matches!(source, RowIdSource::Position);
        let mut rb = RowBuilder::new(seed.clone(), source, column);
        let shape = validate(json.as_bytes()).unwrap();
        let payload = Payload {
            json: json.as_bytes(),
            shape,
            sub: &[],
        };
        let row = rb.build(&payload, 7)?;
        let expected_id = seed.id(7, &[]);
        if positional {
            assert_eq!(row.id, &expected_id);
        }
        Ok(String::from_utf8(row.json.to_vec())
            .unwrap()
            .replace(seed.id(7, &[]).as_str(), "ID"))
    }

    #[test]
    fn splices_the_id_column_before_the_closing_brace() {
        let p = RowIdSource::Position;
        assert_eq!(
            build(r#"{"a":1} "#, Some("_row_id"), p.clone()).unwrap(),
            r#"{"a":1,"_row_id":"ID"}"#
        );
        assert_eq!(
            build(r#"{ }"#, Some("_row_id"), p.clone()).unwrap(),
            r#"{ "_row_id":"ID"}"#
        );
        assert_eq!(
            build("{\n\"a\":\r\n1}", Some("id\"x"), p.clone()).unwrap(),
            r#"{ "a":  1,"id\"x":"ID"}"#
        );
    }

    #[test]
    fn wraps_non_objects_as_value() {
        let p = RowIdSource::Position;
        assert_eq!(
            build("[1,2]", Some("_row_id"), p.clone()).unwrap(),
            r#"{"value":[1,2],"_row_id":"ID"}"#
        );
        assert_eq!(build("\"s\"", None, p).unwrap(), r#"{"value":"s"}"#);
    }

    #[test]
    fn passes_objects_through_when_the_column_is_disabled() {
        assert_eq!(
            build(r#"{"a":1}"#, None, RowIdSource::Position).unwrap(),
            r#"{"a":1}"#
        );
    }

    #[test]
    fn takes_ids_from_a_field_or_explains_why_not() {
        let f = RowIdSource::field("meta.id");
        assert_eq!(
            build(r#"{"meta":{"id":"e-1"}}"#, Some("_row_id"), f.clone()).unwrap(),
            r#"{"meta":{"id":"e-1"},"_row_id":"e-1"}"#
        );
        assert_eq!(
            build(r#"{"meta":{}}"#, Some("_row_id"), f).unwrap_err(),
            RecordErrorKind::RowId("row-id field `meta.id` is missing".into())
        );
    }
}
