//! Appending one object's rows to its `PENDING` stream, with explicit offsets.
//!
//! Every append names the offset its first row must land at, which makes resending safe: an
//! append BigQuery already took answers `ALREADY_EXISTS` (counted as done), one past the end
//! answers `OUT_OF_RANGE`. So whenever the connection breaks, an answer is lost or an append is
//! refused, the task opens a new AppendRows call and resends every unacknowledged append from
//! the last acknowledged offset, in order. Up to `window` appends are in flight at once; the
//! decode thread waits when the window is full (bounded memory).

use std::collections::VecDeque;

use bytes::Bytes;
use gcp_bigquery_client::google::cloud::bigquery::storage::v1::{
    append_rows_response, AppendRowsResponse, ProtoSchema,
};
use prost::Message as _;
use prost_types::DescriptorProto;
use tokio::sync::mpsc;
use tonic::Code;

use super::rpc::{sink_error, status_error, transient, EncodedAppend, Rpc};
use crate::error::{Class, Error};
use crate::sink::Rejected;

/// Where a row came from, to report it if BigQuery refuses it.
#[derive(Debug, Clone, Copy)]
pub(super) struct RowSource {
    pub ordinal: u64,
    pub byte_offset: u64,
    /// Where the row's entry ends in [`Append::rows`] and its JSON in [`Append::json`] (each
    /// starts where the one before ends).
    pub rows_end: usize,
    pub json_end: usize,
}

/// One append: protobuf rows and where each came from.
///
/// The rows are kept as the `ProtoRows` message itself (each row one `serialized_rows` entry,
/// back to back, as [`crate::sink::bigquery::encode::Encoder::encode_delimited`] writes them),
/// in shared [`Bytes`]: every send and resend of the append refers to the same buffer, and only
/// a small header is built per request. The rows' JSON, which only a refused row needs (for its
/// dead letter), is one buffer too, cut into rows by [`RowSource`]'s ranges.
#[derive(Debug, Default, Clone)]
pub(super) struct Append {
    pub rows: Bytes,
    pub json: Bytes,
    pub sources: Vec<RowSource>,
}

impl Append {
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Row `i`'s `serialized_rows` entry and its JSON.
    fn row(&self, i: usize) -> Option<(&[u8], &[u8])> {
        let (rows_start, json_start) = match i.checked_sub(1) {
            Some(p) => {
                let p = self.sources.get(p)?;
                (p.rows_end, p.json_end)
            }
            None => (0, 0),
        };
        let s = self.sources.get(i)?;
        Some((
            self.rows.get(rows_start..s.rows_end)?,
            self.json.get(json_start..s.json_end)?,
        ))
    }

    /// The append without the rows at `drop` (sorted, distinct): BigQuery refused them. Their
    /// sources and JSON come back. Rare (rows the encoder passed and BigQuery did not), so the
    /// kept rows are simply copied.
    fn without(&self, drop: &[usize]) -> (Append, Vec<(RowSource, Vec<u8>)>) {
        let mut kept = Append::default();
        let (mut rows, mut json) = (Vec::new(), Vec::new());
        let mut dropped = Vec::new();
        for (i, source) in self.sources.iter().enumerate() {
            let Some((r, j)) = self.row(i) else { continue };
            if drop.binary_search(&i).is_ok() {
                dropped.push((*source, j.to_vec()));
                continue;
            }
            rows.extend_from_slice(r);
            json.extend_from_slice(j);
            kept.sources.push(RowSource {
                rows_end: rows.len(),
                json_end: json.len(),
                ..*source
            });
        }
        kept.rows = rows.into();
        kept.json = json.into();
        (kept, dropped)
    }
}

/// What the appends came to.
#[derive(Debug, Default)]
pub(super) struct Appended {
    /// Rows in the stream.
    pub rows: i64,
    /// Rows BigQuery refused one by one.
    pub rejected: Vec<Rejected>,
}

struct Connection {
    tx: mpsc::UnboundedSender<EncodedAppend>,
    answers: tonic::Streaming<AppendRowsResponse>,
}

pub(super) struct Session {
    pub rpc: Rpc,
    pub stream: String,
    /// The writer schema as an encoded `ProtoSchema`, sent with the first request of each call.
    pub schema: Bytes,
    pub window: usize,
}

/// The `ProtoSchema` message for a row descriptor, encoded once per stream.
pub(super) fn proto_schema(descriptor: DescriptorProto) -> Bytes {
    ProtoSchema {
        proto_descriptor: Some(descriptor),
    }
    .encode_to_vec()
    .into()
}

enum Answer {
    /// The front append is in the stream.
    Acked,
    /// Open a new connection and resend everything unacknowledged.
    Reconnect(Error),
}

impl Session {
    /// Runs until `input` is closed and every append is acknowledged.
    pub async fn run(self, mut input: mpsc::Receiver<Append>) -> Result<Appended, Error> {
        let mut pending: VecDeque<Append> = VecDeque::new();
        let mut acked: i64 = 0;
        let mut rejected = Vec::new();
        let mut conn: Option<Connection> = None;
        let mut closed = false;
        let mut delays = self.rpc.policy.delays();
        let mut failures = 0usize;
        loop {
            if closed && pending.is_empty() {
                return Ok(Appended {
                    rows: acked,
                    rejected,
                });
            }
            if conn.is_none() && !pending.is_empty() {
                match self.connect(&pending, acked).await {
                    Ok(c) => conn = Some(c),
                    Err(e) => {
                        failures += 1;
                        self.back_off(&mut delays, failures, e).await?;
                        continue;
                    }
                }
            }
            let window_open = !closed && pending.len() < self.window.max(1);
            tokio::select! {
                biased;
                answer = next_answer(&mut conn, self.rpc.timeout), if conn.is_some() => {
                    let verdict = match answer {
                        Ok(a) => self.settle(a, &mut pending, &mut acked, &mut rejected),
                        Err(e) => Answer::Reconnect(e),
                    };
                    match verdict {
                        Answer::Acked => {
                            failures = 0;
                            delays = self.rpc.policy.delays();
                        }
                        Answer::Reconnect(e) => {
                            conn = None;
                            if !e.is_transient() {
                                return Err(e);
                            }
                            failures += 1;
                            self.back_off(&mut delays, failures, e).await?;
                        }
                    }
                }
                next = input.recv(), if window_open => match next {
                    None => closed = true,
                    Some(append) => {
                        let offset = acked + pending.iter().map(|a| a.len() as i64).sum::<i64>();
                        if let Some(c) = &conn {
                            // A send error means the call ended; the answer loop sees it.
                            let _ = c.tx.send(self.request(&append, offset, false));
                        }
                        pending.push_back(append);
                    }
                },
            }
        }
    }

    async fn back_off(
        &self,
        delays: &mut impl Iterator<Item = std::time::Duration>,
        failures: usize,
        e: Error,
    ) -> Result<(), Error> {
        match delays.next() {
            Some(d) => {
                tracing::debug!(stream = %self.stream, failures, delay_ms = d.as_millis() as u64, "AppendRows: resending unacknowledged appends: {e}");
                tokio::time::sleep(d).await;
                Ok(())
            }
            None => Err(sink_error(
                Class::Transient,
                format!(
                    "BigQuery Storage Write AppendRows still failing after {failures} tries: {e}"
                ),
            )),
        }
    }

    /// The AppendRows request for `append` at `offset`: a header built here, the rows shared.
    fn request(&self, append: &Append, offset: i64, first: bool) -> EncodedAppend {
        EncodedAppend::new(
            &self.stream,
            offset,
            first.then_some(&self.schema[..]),
            append.rows.clone(),
        )
    }

    /// A new AppendRows call with every unacknowledged append queued on it, offsets counted
    /// from `acked`.
    async fn connect(&self, pending: &VecDeque<Append>, acked: i64) -> Result<Connection, Error> {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut offset = acked;
        for (i, append) in pending.iter().enumerate() {
            let _ = tx.send(self.request(append, offset, i == 0));
            offset += append.len() as i64;
        }
        let requests = futures::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let answers = self.rpc.append_rows(&self.stream, requests).await?;
        Ok(Connection { tx, answers })
    }

    /// Applies one answer to the front append.
    fn settle(
        &self,
        answer: AppendRowsResponse,
        pending: &mut VecDeque<Append>,
        acked: &mut i64,
        rejected: &mut Vec<Rejected>,
    ) -> Answer {
        let Some(front) = pending.front_mut() else {
            return Answer::Reconnect(sink_error(
                Class::Transient,
                "AppendRows answered an append that was not sent".into(),
            ));
        };
        if !answer.row_errors.is_empty() {
            // The whole append was refused because of these rows: drop them (record-level
            // policy) and resend the rest, at offsets counted again.
            let mut bad: Vec<(usize, String)> = answer
                .row_errors
                .iter()
                .filter_map(|e| {
                    usize::try_from(e.index)
                        .ok()
                        .filter(|&i| i < front.len())
                        .map(|i| (i, e.message.clone()))
                })
                .collect();
            if bad.is_empty() {
                return Answer::Reconnect(sink_error(
                    Class::Permanent,
                    "AppendRows refused rows it did not name".into(),
                ));
            }
            bad.sort_by_key(|(i, _)| *i);
            bad.dedup_by_key(|(i, _)| *i);
            let drop: Vec<usize> = bad.iter().map(|(i, _)| *i).collect();
            let (kept, dropped) = front.without(&drop);
            for ((source, json), (_, message)) in dropped.into_iter().zip(bad) {
                rejected.push(Rejected {
                    ordinal: source.ordinal,
                    byte_offset: source.byte_offset,
                    row: json,
                    error: message,
                });
            }
            *front = kept;
            if front.sources.is_empty() {
                pending.pop_front();
            }
            return Answer::Reconnect(sink_error(
                Class::Transient,
                "resending an append without the rows BigQuery refused".into(),
            ));
        }
        match answer.response {
            Some(append_rows_response::Response::AppendResult(_)) => {
                *acked += front.len() as i64;
                pending.pop_front();
                Answer::Acked
            }
            Some(append_rows_response::Response::Error(status)) => {
                let code = Code::from_i32(status.code);
                match code {
                    Code::AlreadyExists => {
                        // Landed in an earlier try whose answer was lost.
                        tracing::info!(stream = %self.stream, offset = *acked, rows = front.len(), "append already in the stream (answer lost earlier)");
                        *acked += front.len() as i64;
                        pending.pop_front();
                        Answer::Acked
                    }
                    Code::OutOfRange => Answer::Reconnect(sink_error(
                        Class::Transient,
                        format!("offset past the end of the stream: {}", status.message),
                    )),
                    _ => {
                        let s = tonic::Status::new(code, status.message);
                        let e = status_error("AppendRows", &s);
                        if transient(code) {
                            Answer::Reconnect(e)
                        } else {
                            Answer::Reconnect(Error::new(e.stage, Class::Permanent, e.cause))
                        }
                    }
                }
            }
            None => Answer::Reconnect(sink_error(
                Class::Transient,
                "AppendRows answer without a result".into(),
            )),
        }
    }
}

async fn next_answer(
    conn: &mut Option<Connection>,
    timeout: std::time::Duration,
) -> Result<AppendRowsResponse, Error> {
    let Some(c) = conn.as_mut() else {
        return Err(sink_error(Class::Transient, "no connection".into()));
    };
    match tokio::time::timeout(timeout, c.answers.message()).await {
        Ok(Ok(Some(a))) => Ok(a),
        Ok(Ok(None)) => Err(sink_error(
            Class::Transient,
            "AppendRows call ended with appends unanswered".into(),
        )),
        // A broken connection is transient (resending is safe: offsets); a refused call
        // (table gone, permission) is not.
        Ok(Err(s)) => Err(status_error("AppendRows", &s)),
        Err(_) => Err(sink_error(
            Class::Transient,
            "AppendRows: no answer in time".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gcp_bigquery_client::google::cloud::bigquery::storage::v1::{
        append_rows_request, AppendRowsRequest, ProtoRows, RowError,
    };
    use gcp_bigquery_client::google::rpc::Status;

    fn session() -> Session {
        // Connects lazily: no server is needed to settle answers.
        let rpc = Rpc::connect(
            "http://127.0.0.1:9",
            None,
            std::time::Duration::from_secs(1),
            std::sync::Arc::new(crate::sink::bigquery::retry::RetryPolicy::default()),
        )
        .unwrap();
        Session {
            rpc,
            stream: "projects/p/datasets/d/tables/t/streams/s".into(),
            schema: Bytes::new(),
            window: 4,
        }
    }

    /// Rows `first..first + n`; row `i` is the one-byte message `[i]` (framed as a
    /// `serialized_rows` entry) with the JSON `{"i":i}`.
    fn append(first: u64, n: u64) -> Append {
        let (mut rows, mut json, mut sources) = (Vec::new(), Vec::new(), Vec::new());
        for i in first..first + n {
            rows.extend_from_slice(&[0x0a, 1, i as u8]);
            json.extend_from_slice(format!("{{\"i\":{i}}}").as_bytes());
            sources.push(RowSource {
                ordinal: i,
                byte_offset: i * 10,
                rows_end: rows.len(),
                json_end: json.len(),
            });
        }
        Append {
            rows: rows.into(),
            json: json.into(),
            sources,
        }
    }

    /// The rows of an append as Google's generated `ProtoRows` decodes them.
    fn decoded_rows(a: &Append) -> Vec<Vec<u8>> {
        ProtoRows::decode(&a.rows[..]).unwrap().serialized_rows
    }

    #[test]
    fn requests_are_what_googles_types_decode() {
        let a = append(5, 3);
        let descriptor = DescriptorProto {
            name: Some("Row".into()),
            ..Default::default()
        };
        for (offset, schema) in [
            (0, None),
            (5, Some(proto_schema(descriptor.clone()))),
            (1 << 40, None),
        ] {
            let req = EncodedAppend::new(
                "projects/p/streams/s",
                offset,
                schema.as_deref(),
                a.rows.clone(),
            );
            let got = AppendRowsRequest::decode(&req.to_vec()[..]).unwrap();
            let want = AppendRowsRequest {
                write_stream: "projects/p/streams/s".into(),
                offset: Some(offset),
                rows: Some(append_rows_request::Rows::ProtoRows(
                    append_rows_request::ProtoData {
                        writer_schema: schema.map(|_| ProtoSchema {
                            proto_descriptor: Some(descriptor.clone()),
                        }),
                        rows: Some(ProtoRows {
                            serialized_rows: vec![vec![5], vec![6], vec![7]],
                        }),
                    },
                )),
                ..Default::default()
            };
            assert_eq!(got, want);
        }
    }

    fn error(code: Code) -> AppendRowsResponse {
        AppendRowsResponse {
            response: Some(append_rows_response::Response::Error(Status {
                code: code as i32,
                message: "m".into(),
                details: vec![],
            })),
            ..Default::default()
        }
    }

    #[test]
    fn an_append_that_already_landed_counts_as_acknowledged() {
        let s = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async { session() });
        let mut pending: VecDeque<Append> = [append(0, 3), append(3, 2)].into();
        let (mut acked, mut rejected) = (0, Vec::new());
        let a = s.settle(
            error(Code::AlreadyExists),
            &mut pending,
            &mut acked,
            &mut rejected,
        );
        assert!(matches!(a, Answer::Acked));
        assert_eq!((acked, pending.len()), (3, 1));
        let ok = AppendRowsResponse {
            response: Some(append_rows_response::Response::AppendResult(
                append_rows_response::AppendResult { offset: Some(3) },
            )),
            ..Default::default()
        };
        assert!(matches!(
            s.settle(ok, &mut pending, &mut acked, &mut rejected),
            Answer::Acked
        ));
        assert_eq!((acked, pending.len()), (5, 0));
    }

    #[test]
    fn out_of_range_resends_and_other_refusals_are_classified() {
        let s = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async { session() });
        let mut pending: VecDeque<Append> = [append(0, 3)].into();
        let (mut acked, mut rejected) = (0, Vec::new());
        let Answer::Reconnect(e) = s.settle(
            error(Code::OutOfRange),
            &mut pending,
            &mut acked,
            &mut rejected,
        ) else {
            panic!("OUT_OF_RANGE resends")
        };
        assert!(e.is_transient());
        assert_eq!((acked, pending.len()), (0, 1), "nothing counted");
        let Answer::Reconnect(e) = s.settle(
            error(Code::PermissionDenied),
            &mut pending,
            &mut acked,
            &mut rejected,
        ) else {
            panic!()
        };
        assert!(!e.is_transient(), "permission is not a passing problem");
        let Answer::Reconnect(e) = s.settle(
            error(Code::Unavailable),
            &mut pending,
            &mut acked,
            &mut rejected,
        ) else {
            panic!()
        };
        assert!(e.is_transient());
    }

    #[test]
    fn rows_bigquery_refuses_leave_the_append_and_are_reported_with_their_source() {
        let s = tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async { session() });
        let mut pending: VecDeque<Append> = [append(10, 4), append(14, 1)].into();
        let (mut acked, mut rejected) = (0, Vec::new());
        let mut answer = error(Code::InvalidArgument);
        answer.row_errors = vec![
            RowError {
                index: 2,
                code: 1,
                message: "bad value for n".into(),
            },
            RowError {
                index: 0,
                code: 1,
                message: "missing x".into(),
            },
            RowError {
                index: 99,
                code: 1,
                message: "out of this append: ignored".into(),
            },
        ];
        let Answer::Reconnect(e) = s.settle(answer, &mut pending, &mut acked, &mut rejected) else {
            panic!("the rest of the append is resent")
        };
        assert!(e.is_transient());
        assert_eq!(acked, 0, "a refused append wrote nothing");
        let left: Vec<u64> = pending[0].sources.iter().map(|r| r.ordinal).collect();
        assert_eq!(left, vec![11, 13]);
        assert_eq!(decoded_rows(&pending[0]), vec![vec![11u8], vec![13u8]]);
        let json: Vec<&[u8]> = (0..2).map(|i| pending[0].row(i).unwrap().1).collect();
        assert_eq!(json, [&b"{\"i\":11}"[..], b"{\"i\":13}"]);
        let mut got: Vec<(u64, u64, String, String)> = rejected
            .iter()
            .map(|r| {
                (
                    r.ordinal,
                    r.byte_offset,
                    String::from_utf8(r.row.clone()).unwrap(),
                    r.error.clone(),
                )
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                (10, 100, "{\"i\":10}".into(), "missing x".into()),
                (12, 120, "{\"i\":12}".into(), "bad value for n".into()),
            ]
        );
    }
}
