//! Flags → the library's plain-data [`Setup`] (`Opts::setup`), which validates every mode
//! combination and builds the engine. Nothing here refuses a combination: that is
//! `Setup::validate`'s, once for every entry point.

use std::time::Duration;

use firehose_replay::aws::S3Uri;
use firehose_replay::dead_letter::spec::{DeadLetterSpec, SpecError};
use firehose_replay::row::RowIdSource;
use firehose_replay::run::retry::ObjectRetry;
use firehose_replay::run::setup::{
    iceberg_row_id_column, DeadLetterSetup, LedgerSetup, TableOptions,
};
use firehose_replay::run::{Entry, Setup};
use firehose_replay::settings::Settings;

use super::{CreateTableChoice, Opts};

/// A value given empty (an empty variable in a container's environment) means "not set".
pub(crate) fn given(value: &Option<String>) -> Option<String> {
    value.clone().filter(|v| !v.is_empty())
}

impl Opts {
    /// The setup these flags describe, for `entry`. Fails only on a value that is not one (a
    /// `--map` that is no mapping, a `--dead-letter` of no known form): usage errors.
    pub(crate) fn setup(&self, entry: Entry) -> anyhow::Result<Setup> {
        Ok(Setup {
            entry,
            settings: self.settings()?,
            sink: self.output.sink.clone(),
            tables: TableOptions {
                schema_evolution: self.bigquery.schema_evolution,
                create_auto: self.bigquery.create_table == CreateTableChoice::Auto,
            },
            bigquery: self.bigquery.options(),
            postgres: self.postgres.options(),
            iceberg: self.iceberg.options(),
            ledger: LedgerSetup {
                spec: self.exactly_once.ledger.clone(),
                force: self.exactly_once.force,
                allow_duplicates: self.exactly_once.allow_duplicates,
                claim_ttl: Duration::from_secs(self.exactly_once.claim_ttl_secs),
            },
            dead_letter: self.dead_letter_setup()?,
            retry: ObjectRetry {
                max_attempts: self.failures.max_attempts.max(1),
                min_delay: Duration::from_millis(self.bigquery.retry_min_delay_ms),
                ..ObjectRetry::default()
            },
            object_timeout: self.failures.object_timeout.map(Duration::from_secs),
            concurrency: self
                .limits
                .concurrency
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()) * 2),
            max_scratch_bytes: self.limits.max_scratch_bytes,
        })
    }

    fn settings(&self) -> anyhow::Result<Settings> {
        let mapping = match &self.output.map {
            Some(path) => Some(
                firehose_replay::row::map::Mapping::from_arg(path).map_err(anyhow::Error::msg)?,
            ),
            None => None,
        };
        Ok(Settings {
            compression: self.input.compression,
            framing: self.input.framing,
            envelope: self.input.envelope,
            max_record_bytes: self.limits.max_record_bytes,
            max_decompressed_bytes: self.limits.max_decompressed_bytes,
            on_record_error: self.failures.on_record_error,
            row_id: match &self.output.row_id_field {
                Some(f) => RowIdSource::field(f),
                None => RowIdSource::Position,
            },
            row_id_column: Some(iceberg_row_id_column(
                &self.output.sink,
                &self.output.row_id_column,
            ))
            .filter(|c| !c.is_empty()),
            metadata: self.output.metadata_columns,
            payload_column: given(&self.output.payload_column),
            mapping,
            max_record_error_ratio: Some(self.failures.max_record_error_ratio),
        })
    }

    fn dead_letter_setup(&self) -> anyhow::Result<DeadLetterSetup> {
        let spec = self.failures.dead_letter.as_str();
        let parsed = spec.parse::<DeadLetterSpec>().map_err(|e| match e {
            SpecError::Unsupported => anyhow::anyhow!("unsupported --dead-letter `{spec}`: {e}"),
            e => anyhow::Error::msg(e.to_string()),
        })?;
        let overflow = match &self.failures.dead_letter_overflow {
            Some(uri) => Some(uri.parse::<S3Uri>().map_err(anyhow::Error::msg)?),
            None => None,
        };
        Ok(DeadLetterSetup {
            spec: parsed,
            overflow,
        })
    }
}
