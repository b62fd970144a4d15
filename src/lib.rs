//! firehose-replay: Kinesis Data Firehose S3 archives → analytics sinks.
//!
//! The data flow, one module per stage:
//! `source` (object bytes) → `decode` (decompress) → `frame` (records) → `record` (validate,
//! unwrap envelopes) → `row` (row ID, row bytes) → `sink`. `pipeline` runs them for one object;
//! `run` drives many objects (the run loop, batches for sinks that commit many at once) for
//! every entry point — the CLI, the Lambda handler (`trigger`), the SQS `worker` — and
//! `backfill` lists a date range for it. Sinks are destinations only: they never import `run`
//! or `pipeline`. Every entry point builds the engine from a plain-data [`run::Setup`].
//!
//! The binary (`src/main.rs`) adds what only a command line or a Lambda needs: `cli` (the
//! command tree, dispatch, printing), `flags` (clap definitions → `run::Setup`), `lambda` (the
//! runtime loop), `worker_cli`, `plan_map`, `cli_docs` (completions, man pages, the
//! reference), `hints`, `exposure` and `stdio`.

/// AWS as everything here uses it: SDK configuration, the shared S3 client, error classes,
/// `s3://` URIs, keys as events encode them.
pub mod aws;
/// A UTC date/hour range → the objects Firehose wrote in it.
pub mod backfill;
/// Failed objects and records, kept with their reason (directory, S3 or SQS).
pub mod dead_letter;
/// Bytes of an object → decompressed bytes, streaming.
pub mod decode;
/// One error taxonomy for every stage, classified transient or permanent.
pub mod error;
/// Local file trees the tool writes: an object's path below a directory, temp files renamed
/// into place.
pub mod files;
/// Decompressed bytes → records.
pub mod frame;
/// JSON lexing and validation, shared by frame, record, row and the BigQuery encoder (a leaf).
pub mod json;
/// Which objects are done (and claimed, and staged), so reruns do no work twice.
pub mod ledger;
/// Log filtering every entry point shares (secrets-logging libraries held at `warn`).
pub mod logging;
/// Planning a Step Functions Distributed Map run over a date range.
pub mod map_plan;
/// What an object is, independent of where it is stored.
pub mod object;
/// One object, end to end: source → decompress → frame → record → row → sink.
pub mod pipeline;
/// Framed bytes → validated records, with envelopes unwrapped.
pub mod record;
/// Reading dead letters back (letters, their sources) and rebuilding their records into rows;
/// `run::redrive` drives it.
pub mod redrive;
/// Records → rows: a row ID, and the record bytes with the generated columns spliced in.
pub mod row;
/// The run wing: the setup every entry point builds the engine from, the engine handle, the run
/// loop, batching, redrive, progress, retries.
pub mod run;
/// The local disk a run spends on work in progress, and its bound.
pub mod scratch;
/// Secrets Manager: credentials read once at start.
pub mod secrets;
/// How objects are decoded and turned into rows (plain data).
pub mod settings;
/// Rows → a destination; the sink contract.
pub mod sink;
/// Where objects come from: open an object as a byte stream, list a prefix.
pub mod source;
/// One TLS crypto provider (aws-lc-rs) for every client: AWS, BigQuery, PostgreSQL.
pub mod tls;
/// Lambda payloads → the objects to process, and the responses triggers expect.
pub mod trigger;
/// The long-running SQS worker.
pub mod worker;

/// The run loop's old path (now [`run`]), kept for code written against it.
pub mod runner {
    pub use crate::run::*;
}

/// Object retries' old path (now [`run::retry`]), kept for code written against it.
pub mod retry {
    pub use crate::run::retry::*;
}
