//! Records → rows: a row ID, and the record's bytes with the ID column spliced in.
//!
//! The row bytes are built by copying the record and splicing `,"_row_id":"…"` before its
//! closing brace, never by re-serialising: this is the hot path. Every row has unique keys
//! (docs/src/rows.md, "Row contract"): duplicate keys in a record are resolved last-wins by cutting the
//! earlier occurrences out, and a record field named like a generated column is a record error
//! unless it holds the very value that column would get ([`scan`]).

pub mod id;
pub mod map;
pub mod scan;
pub mod storable;

pub use id::{ObjectSeed, RowId};

use crate::record::{Payload, RecordErrorKind, Shape};

/// Every column name a row builder may generate (the row-ID column, the metadata columns),
/// whichever are enabled: what the framer's key check treats as reserved (a superset only
/// sends more records through the row stage's own scan).
pub fn generated_columns(row_id_column: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = ["_source_uri", "_record_ordinal", "_ingested_at"]
        .into_iter()
        .map(String::from)
        .collect();
    names.extend(row_id_column.map(String::from));
    names
}

/// Where row IDs come from.
#[derive(Debug, Clone, Default)]
pub enum RowIdSource {
    /// Source position: bucket, key, ETag, the record's byte offset in the decompressed
    /// object (and its position inside an envelope).
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

/// One row, ready for a sink: a single-line JSON object, given as up to three pieces to be
/// written back to back (no trailing newline). Pieces avoid copying the record once more just
/// to splice a column in; sinks append them to their own buffers.
#[derive(Debug, Clone, Copy)]
pub struct Row<'a> {
    pub id: &'a RowId,
    pub ordinal: u64,
    /// Where the record starts in the decompressed object (for dead letters of rows a sink
    /// refuses); set by the caller, which knows the framing.
    pub byte_offset: u64,
    parts: [&'a [u8]; 3],
    /// The record's values are plain ([`Payload::verdicts`]): nothing a BigQuery sink's
    /// storability look would refuse. `false` when unknown.
    pub plain_values: bool,
    /// The row is known to be one valid JSON value in UTF-8: built from a [`Payload`], which
    /// the record stage validated. A sink may then skip what only guards against broken text.
    pub json_valid: bool,
}

impl<'a> Row<'a> {
    /// A row that is already complete (a row a sink refused earlier, being redriven).
    pub fn whole(id: &'a RowId, ordinal: u64, bytes: &'a [u8]) -> Row<'a> {
        Row {
            id,
            ordinal,
            byte_offset: 0,
            parts: [b"", bytes, b""],
            plain_values: false,
            json_valid: false,
        }
    }

    pub fn parts(&self) -> &[&'a [u8]; 3] {
        &self.parts
    }

    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn append_to(&self, out: &mut Vec<u8>) {
        for p in &self.parts {
            out.extend_from_slice(p);
        }
    }

    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len());
        self.append_to(&mut v);
        v
    }
}

/// Optional columns describing where a row came from (`--metadata-columns`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Metadata {
    /// `_source_uri`: `s3://bucket/key` (for a local tree, its directory name plays the bucket).
    pub source_uri: bool,
    /// `_record_ordinal`: the record's 0-based position in the object.
    pub record_ordinal: bool,
    /// `_ingested_at`: when this run started the object (RFC 3339, UTC, milliseconds).
    pub ingested_at: bool,
}

impl std::str::FromStr for Metadata {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut m = Metadata::default();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name.trim_start_matches('_') {
                "source_uri" => m.source_uri = true,
                "record_ordinal" => m.record_ordinal = true,
                "ingested_at" => m.ingested_at = true,
                "none" => {}
                other => {
                    return Err(format!(
                        "unknown metadata column `{other}` (expected source_uri, record_ordinal, ingested_at)"
                    ))
                }
            }
        }
        Ok(m)
    }
}

/// Builds rows; its buffers are reused from row to row.
pub struct RowBuilder {
    seed: ObjectSeed,
    source: RowIdSource,
    /// `"<column>":"` with the column name JSON-escaped, or `None` when the column is disabled.
    column_prefix: Option<Vec<u8>>,
    /// Per-object metadata columns: name and JSON value (`_source_uri`, `_ingested_at`).
    object_columns: Vec<(String, Vec<u8>)>,
    record_ordinal: bool,
    /// Every generated column's name, in the order `extra_columns` writes them: the row-ID
    /// column, the object columns, `_record_ordinal`.
    reserved: Vec<String>,
    /// Duplicate-key and collision scanning (docs/src/rows.md, "Row contract").
    keys: scan::Keys,
    /// The record made single-line, when it had raw line breaks (rare).
    body: Vec<u8>,
    /// What follows the body: the ID column and the closing brace.
    tail: Vec<u8>,
    id: RowId,
    /// `--payload-column`: `{"NAME":`, and the record goes whole into that column.
    payload_prefix: Option<Vec<u8>>,
}

impl RowBuilder {
    pub fn new(seed: ObjectSeed, source: RowIdSource, column: Option<&str>) -> RowBuilder {
        let column = column.filter(|c| !c.is_empty());
        let column_prefix = column.map(|c| {
            let mut p = serde_json::to_vec(c).expect("a string serialises");
            p.extend_from_slice(b":\"");
            p
        });
        let id = seed.id(0, &[]);
        RowBuilder {
            seed,
            source,
            column_prefix,
            object_columns: Vec::new(),
            record_ordinal: false,
            reserved: column.map(str::to_string).into_iter().collect(),
            keys: scan::Keys::default(),
            body: Vec::new(),
            tail: Vec::with_capacity(256),
            id,
            payload_prefix: None,
        }
    }

    /// `--payload-column NAME`: each row is `{"NAME": <the record, whole>, <generated
    /// columns>}`, so no table schema ever refuses a record for its fields ("land raw, model
    /// later"). Keys are still made unique (last wins), so the column holds the row the other
    /// modes would have written.
    pub fn with_payload_column(mut self, name: Option<&str>) -> RowBuilder {
        self.payload_prefix = name.filter(|n| !n.is_empty()).map(|n| {
            let mut p = b"{".to_vec();
            p.extend(serde_json::to_vec(n).expect("a string serialises"));
            p.push(b':');
            p
        });
        self
    }

    /// Adds the chosen metadata columns to every row of `object`.
    pub fn with_metadata(
        mut self,
        metadata: Metadata,
        object: &crate::object::ObjectRef,
        ingested_at: &str,
    ) -> RowBuilder {
        let mut cols = Vec::new();
        let mut add = |name: &str, value: &str| {
            cols.push((
                name.to_string(),
                serde_json::to_vec(value).expect("a string serialises"),
            ));
        };
        if metadata.source_uri {
            add(
                "_source_uri",
                &format!("s3://{}/{}", object.bucket, object.key),
            );
        }
        if metadata.ingested_at {
            add("_ingested_at", ingested_at);
        }
        self.reserved
            .truncate(usize::from(self.column_prefix.is_some()));
        self.reserved
            .extend(cols.iter().map(|(name, _)| name.clone()));
        if metadata.record_ordinal {
            self.reserved.push("_record_ordinal".into());
        }
        self.object_columns = cols;
        self.record_ordinal = metadata.record_ordinal;
        self
    }

    /// Everything spliced after the record's own fields, without the leading comma and the
    /// closing brace; empty when nothing is. Columns whose bit is set in `skip` (indices into
    /// `reserved`) are left out: the record already carries them with the same value.
    fn extra_columns(&mut self, ordinal: u64, skip: u32) {
        let tail = &mut self.tail;
        let mut r = 0;
        let sep = |tail: &mut Vec<u8>| {
            if !tail.is_empty() {
                tail.push(b',');
            }
        };
        if let Some(prefix) = &self.column_prefix {
            if skip & 1 == 0 {
                tail.extend_from_slice(prefix);
                tail.extend_from_slice(self.id.as_bytes());
                tail.push(b'"');
            }
            r += 1;
        }
        for (name, value) in &self.object_columns {
            if skip & (1 << r) == 0 {
                sep(tail);
                tail.push(b'"');
                tail.extend_from_slice(name.as_bytes());
                tail.extend_from_slice(b"\":");
                tail.extend_from_slice(value);
            }
            r += 1;
        }
        if self.record_ordinal && skip & (1 << r) == 0 {
            sep(tail);
            tail.extend_from_slice(b"\"_record_ordinal\":");
            tail.extend_from_slice(ordinal.to_string().as_bytes());
        }
    }

    /// The value generated column `reserved[r]` has in this row, as JSON.
    fn generated_value(&self, r: usize, ordinal: u64) -> Vec<u8> {
        let mut r = r;
        if self.column_prefix.is_some() {
            if r == 0 {
                return format!("\"{}\"", self.id.as_str()).into_bytes();
            }
            r -= 1;
        }
        match self.object_columns.get(r) {
            Some((_, value)) => value.clone(),
            None => ordinal.to_string().into_bytes(),
        }
    }

    /// Builds the row for one payload of the record at `offset` (the `ordinal`-th of its
    /// object).
    pub fn build<'a>(
        &'a mut self,
        payload: &Payload<'a>,
        ordinal: u64,
        offset: u64,
    ) -> Result<Row<'a>, RecordErrorKind> {
        self.id = match &self.source {
            RowIdSource::Position => self.seed.id(offset, payload.sub),
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
        if self.payload_prefix.is_some() {
            return self.build_payload(payload, ordinal, offset);
        }
        // The framer's key check (`Payload::verdicts`) stands in for the scan when it found
        // nothing: the scan would find nothing either.
        let found = if payload.verdicts.keys_clean {
            scan::Found::default()
        } else {
            self.keys
                .scan(payload.json, &self.reserved)
                .map_err(RecordErrorKind::Row)?
        };
        let mut skip = 0u32;
        for &(r, (a, z)) in &found.collisions {
            let own = &payload.json[a..z];
            if own == self.generated_value(r, ordinal).as_slice() {
                skip |= 1 << r;
                continue;
            }
            let name = &self.reserved[r];
            let flag = if self.column_prefix.is_some() && r == 0 {
                "--row-id-column"
            } else {
                "--metadata-columns"
            };
            return Err(RecordErrorKind::Row(format!(
                "the record has its own `{name}` field ({}), and `{name}` is a generated column: \
                 rename or drop the field with --map, or change {flag}",
                shorten(own)
            )));
        }
        if matches!(payload.shape, Shape::Other) && self.reserved.iter().any(|r| r == "value") {
            return Err(RecordErrorKind::Row(
                "the record is not a JSON object, so it becomes `{\"value\": …}`, and `value` \
                 is also a generated column"
                    .into(),
            ));
        }
        self.tail.clear();
        self.extra_columns(ordinal, skip);
        let json: &[u8] = if found.rewritten {
            &self.keys.out
        } else {
            payload.json
        };
        let extras = !self.tail.is_empty();
        let (head, body): (&'static [u8], &[u8]) = match payload.shape {
            Shape::Object { empty } if extras => {
                let close = json
                    .iter()
                    .rposition(|&b| b == b'}')
                    .expect("a valid JSON object ends with `}`");
                if !empty {
                    self.tail.insert(0, b',');
                }
                self.tail.push(b'}');
                (b"", &json[..close])
            }
            Shape::Object { .. } => (b"", trim_end(json)),
            Shape::Other => {
                if extras {
                    self.tail.insert(0, b',');
                }
                self.tail.push(b'}');
                (b"{\"value\":", trim_end(json))
            }
        };
        let body = one_line(&mut self.body, body);
        Ok(Row {
            id: &self.id,
            ordinal,
            byte_offset: offset,
            parts: [head, body, &self.tail],
            plain_values: payload.verdicts.plain_values,
            json_valid: true,
        })
    }
}

impl RowBuilder {
    /// The row of `--payload-column`: the record (keys made unique) as one column's value;
    /// generated columns beside it never collide with the record's own fields.
    fn build_payload<'a>(
        &'a mut self,
        payload: &Payload<'a>,
        ordinal: u64,
        offset: u64,
    ) -> Result<Row<'a>, RecordErrorKind> {
        let rewritten = if payload.verdicts.keys_clean {
            false
        } else {
            // No generated column can collide: the record sits one level down.
            self.keys
                .scan(payload.json, &[] as &[String])
                .map_err(RecordErrorKind::Row)?
                .rewritten
        };
        self.tail.clear();
        self.extra_columns(ordinal, 0);
        if !self.tail.is_empty() {
            self.tail.insert(0, b',');
        }
        self.tail.push(b'}');
        let json: &[u8] = if rewritten {
            &self.keys.out
        } else {
            payload.json
        };
        let body = trim_end(json);
        let body = one_line(&mut self.body, body);
        Ok(Row {
            id: &self.id,
            ordinal,
            byte_offset: offset,
            parts: [
                self.payload_prefix.as_deref().expect("payload column set"),
                body,
                &self.tail,
            ],
            plain_values: payload.verdicts.plain_values,
            json_valid: true,
        })
    }
}

/// A record's value for a message: its JSON text, shortened.
fn shorten(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(b);
    match s.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.into_owned(),
    }
}

fn trim_end(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(0, |p| p + 1);
    &b[..end]
}

/// `src`, or, when it has raw line breaks, `src` with them turned into spaces, in `dst`. In
/// valid JSON they can only be whitespace between tokens (strings escape them), so this keeps
/// the value and makes the row one NDJSON line even when the record was pretty-printed.
fn one_line<'a>(dst: &'a mut Vec<u8>, src: &'a [u8]) -> &'a [u8] {
    if memchr::memchr2(b'\n', b'\r', src).is_none() {
        return src;
    }
    dst.clear();
    dst.extend(
        src.iter()
            .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b }),
    );
    dst
}

#[cfg(test)]
mod tests;
