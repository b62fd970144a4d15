//! Integration tests: one binary so the dependency graph links once.

mod bad_input;
mod bigquery_auth;
mod bigquery_emulator;
mod bigquery_faults;
mod bigquery_modes;
mod bq_emulator;
mod claims;
mod cli;
mod decoding;
mod envelopes;
mod failures;
mod framing;
mod h2_proxy;
mod invoke;
mod lambda;
mod lambda_runtime;
mod merge;
mod moto;
mod paths;
mod payload_column;
mod row_contract;
mod s3;
mod schema_evolution;
mod secrets;
mod support;
mod worker;
