//! Integration tests: one binary so the dependency graph links once.

mod adversarial18;
mod bad_input;
mod bigquery_auth;
mod bigquery_emulator;
mod bigquery_faults;
mod bigquery_modes;
mod bq_emulator;
mod claims;
mod cli;
mod concurrency;
mod conformance;
mod decoding;
mod destination;
mod distributed_map;
mod docs;
mod envelopes;
mod failures;
mod framing;
mod front_door;
mod h2_proxy;
mod harness;
#[cfg(feature = "iceberg")]
mod iceberg;
#[cfg(feature = "iceberg")]
mod iceberg_catalogs;
#[cfg(feature = "iceberg")]
mod iceberg_evolution;
#[cfg(feature = "iceberg")]
mod iceberg_faults;
#[cfg(feature = "iceberg")]
mod iceberg_lambda;
#[cfg(feature = "iceberg")]
mod iceberg_orphans;
#[cfg(feature = "iceberg")]
mod iceberg_partitions;
// Without the sink only the conformance entry reads tables (and is refused at start).
#[cfg_attr(not(feature = "iceberg"), allow(dead_code))]
mod iceberg_tables;
mod invoke;
mod lambda;
mod lambda_runtime;
mod load_evolution;
mod load_routing;
mod merge;
mod moto;
mod paths;
mod payload_column;
mod pg_server;
mod plan_map;
mod postgres;
mod postgres_auth;
mod postgres_faults;
mod postgres_partitions;
mod postgres_routing;
mod routing;
mod row_contract;
mod s3;
mod schema_evolution;
mod secrets;
mod security;
mod support;
mod worker;
