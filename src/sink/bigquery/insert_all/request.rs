//! insertAll request bodies, built as bytes: each row's JSON is copied in as it is, never parsed
//! into a DOM and serialised again (the hot path, see the benchmark).
//!
//! A body is `{"kind":…,"skipInvalidRows":…,"ignoreUnknownValues":…,"rows":[E,E,…]}` with one
//! entry `E = {"insertId":"<row id>","json":<row>}` per row. The byte ranges of every entry and
//! row are kept, so a retry can send just the rows that still need it and a refused row can be
//! dead-lettered as it was sent.

use std::ops::Range;

use bytes::Bytes;

use crate::row::Row;

/// Fixed per-request flags.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub skip_invalid_rows: bool,
    pub ignore_unknown_values: bool,
}

impl Flags {
    fn header(&self) -> Vec<u8> {
        format!(
            r#"{{"kind":"bigquery#tableDataInsertAllRequest","skipInvalidRows":{},"ignoreUnknownValues":{},"rows":["#,
            self.skip_invalid_rows, self.ignore_unknown_values
        )
        .into_bytes()
    }

    /// The size of a request with no rows (header and closing bytes), without building one.
    pub fn empty_request_len(&self) -> usize {
        const BASE: usize = r#"{"kind":"bigquery#tableDataInsertAllRequest","skipInvalidRows":,"ignoreUnknownValues":,"rows":["#.len();
        let word = |b: bool| if b { 4 } else { 5 };
        BASE + word(self.skip_invalid_rows) + word(self.ignore_unknown_values) + FOOTER.len()
    }
}

const FOOTER: &[u8] = b"]}";
const ENTRY_HEAD: &[u8] = b"{\"insertId\":\"";
const ENTRY_MID: &[u8] = b"\",\"json\":";

/// Bytes an entry adds to a body besides the row itself and its ID: its framing, its closing
/// brace and the comma before it.
pub const ENTRY_OVERHEAD: usize = ENTRY_HEAD.len() + ENTRY_MID.len() + 2;

/// Where one row is in a batch's body.
#[derive(Debug, Clone)]
pub struct RowSlot {
    pub ordinal: u64,
    pub byte_offset: u64,
    entry: Range<usize>,
    json: Range<usize>,
}

/// Rows for one request.
#[derive(Debug)]
pub struct Batch {
    flags: Flags,
    body: Vec<u8>,
    header_len: usize,
    pub rows: Vec<RowSlot>,
}

impl Batch {
    pub fn new(flags: Flags, capacity: usize) -> Batch {
        let mut body = Vec::with_capacity(capacity);
        body.extend_from_slice(&flags.header());
        Batch {
            flags,
            header_len: body.len(),
            body,
            rows: Vec::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The request's size so far, closing bytes included.
    pub fn encoded_len(&self) -> usize {
        self.body.len() + FOOTER.len()
    }

    /// Bytes `row` would add.
    pub fn entry_len(row: &Row<'_>) -> usize {
        ENTRY_OVERHEAD + row.id.as_bytes().len() + row.len()
    }

    pub fn push(&mut self, row: &Row<'_>) {
        if !self.rows.is_empty() {
            self.body.push(b',');
        }
        let start = self.body.len();
        self.body.extend_from_slice(ENTRY_HEAD);
        // Row IDs are hex digests or plain tokens ([A-Za-z0-9._:-]): nothing to escape.
        self.body.extend_from_slice(row.id.as_bytes());
        self.body.extend_from_slice(ENTRY_MID);
        let json_start = self.body.len();
        row.append_to(&mut self.body);
        let json_end = self.body.len();
        self.body.push(b'}');
        self.rows.push(RowSlot {
            ordinal: row.ordinal,
            byte_offset: row.byte_offset,
            entry: start..self.body.len(),
            json: json_start..json_end,
        });
    }

    /// The complete request body.
    pub fn finish(mut self) -> Sent {
        self.body.extend_from_slice(FOOTER);
        Sent {
            flags: self.flags,
            header_len: self.header_len,
            body: Bytes::from(self.body),
            rows: self.rows,
        }
    }
}

/// A finished body and its rows; cheap to clone for a retry.
#[derive(Debug, Clone)]
pub struct Sent {
    flags: Flags,
    header_len: usize,
    pub body: Bytes,
    pub rows: Vec<RowSlot>,
}

impl Sent {
    /// The row JSON of `rows[i]` as it was sent.
    pub fn row_json(&self, i: usize) -> &[u8] {
        &self.body[self.rows[i].json.clone()]
    }

    /// A new request with only the rows at `keep` (indices into `rows`), in order.
    pub fn subset(&self, keep: &[usize]) -> Sent {
        self.subset_with(keep, &std::collections::HashMap::new())
    }

    /// Like [`Sent::subset`], with the JSON of some rows replaced (`--schema-evolution` resends
    /// a row without the keys no column will hold); their `insertId`s stay the same.
    pub fn subset_with(
        &self,
        keep: &[usize],
        replaced: &std::collections::HashMap<usize, Vec<u8>>,
    ) -> Sent {
        let mut body = Vec::with_capacity(self.body.len());
        body.extend_from_slice(&self.body[..self.header_len]);
        let mut rows = Vec::with_capacity(keep.len());
        for (n, &i) in keep.iter().enumerate() {
            if n > 0 {
                body.push(b',');
            }
            let slot = &self.rows[i];
            let start = body.len();
            let json = match replaced.get(&i) {
                None => {
                    body.extend_from_slice(&self.body[slot.entry.clone()]);
                    (slot.json.start - slot.entry.start + start)
                        ..(slot.json.end - slot.entry.start + start)
                }
                Some(new) => {
                    body.extend_from_slice(&self.body[slot.entry.start..slot.json.start]);
                    let json_start = body.len();
                    body.extend_from_slice(new);
                    let json_end = body.len();
                    body.extend_from_slice(&self.body[slot.json.end..slot.entry.end]);
                    json_start..json_end
                }
            };
            rows.push(RowSlot {
                ordinal: slot.ordinal,
                byte_offset: slot.byte_offset,
                entry: start..body.len(),
                json,
            });
        }
        body.extend_from_slice(FOOTER);
        Sent {
            flags: self.flags,
            header_len: self.header_len,
            body: Bytes::from(body),
            rows,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::ObjectRef;
    use crate::record::{validate, Payload};
    use crate::row::{ObjectSeed, RowBuilder, RowIdSource};

    fn batch_of(records: &[&str]) -> Sent {
        let mut rb = RowBuilder::new(
            ObjectSeed::new(&ObjectRef::new("b", "k")),
            RowIdSource::Position,
            Some("_row_id"),
        );
        let mut batch = Batch::new(
            Flags {
                skip_invalid_rows: false,
                ignore_unknown_values: true,
            },
            1024,
        );
        for (i, r) in records.iter().enumerate() {
            let payload = Payload {
                json: r.as_bytes(),
                shape: validate(r.as_bytes()).unwrap(),
                sub: &[],
                verdicts: Default::default(),
            };
            let row = rb.build(&payload, i as u64, i as u64 * 100).unwrap();
            let before = batch.encoded_len();
            let expected = Batch::entry_len(&row) - usize::from(batch.is_empty());
            batch.push(&row);
            assert_eq!(batch.encoded_len() - before, expected);
        }
        batch.finish()
    }

    #[test]
    fn a_body_is_the_insert_all_request_bigquery_documents() {
        let sent = batch_of(&[r#"{"a":1}"#, r#"{"b":"x\"y"}"#]);
        let v: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
        assert_eq!(v["kind"], "bigquery#tableDataInsertAllRequest");
        assert_eq!(v["skipInvalidRows"], false);
        assert_eq!(v["ignoreUnknownValues"], true);
        let rows = v["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["json"]["a"], 1);
        assert_eq!(rows[1]["json"]["b"], "x\"y");
        // insertId is the row ID, which is also the column.
        assert_eq!(rows[0]["insertId"], rows[0]["json"]["_row_id"]);
        assert_ne!(rows[0]["insertId"], rows[1]["insertId"]);
        let row1: serde_json::Value = serde_json::from_slice(sent.row_json(1)).unwrap();
        assert_eq!(row1, rows[1]["json"]);
    }

    #[test]
    fn the_empty_request_size_matches_a_built_empty_request() {
        for (skip, ignore) in [(false, false), (true, false), (false, true), (true, true)] {
            let flags = Flags {
                skip_invalid_rows: skip,
                ignore_unknown_values: ignore,
            };
            assert_eq!(
                flags.empty_request_len(),
                Batch::new(flags, 0).encoded_len()
            );
        }
    }

    #[test]
    fn a_subset_resends_exactly_the_chosen_rows() {
        let sent = batch_of(&[r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#]);
        let sub = sent.subset(&[1, 3]);
        let v: serde_json::Value = serde_json::from_slice(&sub.body).unwrap();
        let ns: Vec<i64> = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["json"]["n"].as_i64().unwrap())
            .collect();
        assert_eq!(ns, vec![1, 3]);
        assert_eq!(sub.rows[1].ordinal, 3);
        assert_eq!(sub.row_json(0), sent.row_json(1));
        let again = sub.subset(&[1]);
        assert_eq!(again.row_json(0), sent.row_json(3));
        let replaced = std::collections::HashMap::from([(2, br#"{"n":20}"#.to_vec())]);
        let changed = sent.subset_with(&[0, 2], &replaced);
        let v: serde_json::Value = serde_json::from_slice(&changed.body).unwrap();
        assert_eq!(v["rows"][1]["json"], serde_json::json!({"n": 20}));
        let ids: Vec<&serde_json::Value> = v["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["insertId"])
            .collect();
        let original: serde_json::Value = serde_json::from_slice(&sent.body).unwrap();
        assert_eq!(
            ids,
            [
                &original["rows"][0]["insertId"],
                &original["rows"][2]["insertId"]
            ]
        );
        assert_eq!(changed.row_json(1), br#"{"n":20}"#);
        assert_eq!(changed.rows[1].ordinal, 2);
    }
}
