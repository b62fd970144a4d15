//! firehose-replay: Kinesis Data Firehose S3 archives → analytics sinks.
//!
//! The data flow, one module per stage:
//! `source` (object bytes) → `decode` (decompress) → `frame` (records) → `record` (validate,
//! unwrap envelopes) → `row` (row ID, row bytes) → `sink`. `pipeline` runs them for one object;
//! `backfill` runs the pipeline over a date range.

pub mod backfill;
pub mod dead_letter;
pub mod decode;
pub mod error;
pub mod frame;
pub mod ledger;
pub mod map_plan;
pub mod object;
pub mod pipeline;
pub mod record;
pub mod redrive;
pub mod retry;
pub mod row;
pub mod runner;
pub mod scratch;
pub mod secrets;
pub mod sink;
pub mod source;
pub mod tls;
pub mod trigger;
pub mod worker;
