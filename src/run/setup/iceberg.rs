//! `--sink iceberg:…`: its options as plain data, its refusals, and the sink connected from them
//! (whose `batching` is what `replay` and `backfill` drive).

use crate::ledger::LedgerSpec;
use crate::sink::iceberg;
use crate::sink::SinkSpec;

use super::validate::Refusal;
use super::Setup;

/// The Iceberg sink's own options (row ID, payload column, tables: the setup's shared ones).
#[derive(Debug, Clone)]
pub struct IcebergOptions {
    /// A data file is closed once past this size.
    pub target_file_bytes: u64,
    /// A row group is flushed once its encoded size is past this.
    pub row_group_bytes: u64,
    /// Objects, and listed bytes, per commit at most (`replay`, `backfill`).
    pub batch_objects: usize,
    pub batch_bytes: u64,
}

impl Default for IcebergOptions {
    fn default() -> Self {
        let s = iceberg::Settings::default();
        IcebergOptions {
            target_file_bytes: s.target_file_bytes,
            row_group_bytes: s.row_group_bytes,
            batch_objects: s.batch_objects,
            batch_bytes: s.batch_bytes,
        }
    }
}

/// The row-ID column with an Iceberg sink: `_row_id` (the other sinks' default) becomes
/// [`iceberg::ROW_ID_COLUMN`], since `_row_id` is a reserved Iceberg v3 field name.
pub fn iceberg_row_id_column(sink: &SinkSpec, column: &str) -> String {
    if matches!(sink, SinkSpec::Iceberg(_)) && column == "_row_id" {
        iceberg::ROW_ID_COLUMN.to_string()
    } else {
        column.to_string()
    }
}

/// The default ledger of an Iceberg sink: a file under `.firehose-replay/`, per catalog and
/// table.
pub(super) fn default_ledger(target: &iceberg::Target) -> LedgerSpec {
    LedgerSpec::File(std::path::PathBuf::from(format!(
        ".firehose-replay/ledger-iceberg-{}-{}.jsonl",
        target.ledger_label(),
        target.table_name()
    )))
}

impl Setup {
    /// An Iceberg append has no unique key: `--force` and `--ledger none` would add the rows
    /// again, so both are refused unless `--allow-duplicates`.
    pub(super) fn refuse_iceberg_duplicates(&self) -> Result<(), Refusal> {
        if !matches!(self.sink, SinkSpec::Iceberg(_)) || self.ledger.allow_duplicates {
            return Ok(());
        }
        if self.ledger.force {
            return Err(Refusal::IcebergForce);
        }
        if self.ledger.spec == Some(LedgerSpec::None) {
            return Err(Refusal::IcebergWithoutLedger);
        }
        Ok(())
    }
}

#[cfg(feature = "iceberg")]
mod connect {
    use std::sync::Arc;

    use super::super::validate::SetupError;
    use super::Setup;
    use crate::sink::iceberg::{self, Iceberg, Target};

    impl Setup {
        fn iceberg_settings(&self) -> iceberg::Settings {
            let o = &self.iceberg;
            iceberg::Settings {
                target_file_bytes: o.target_file_bytes,
                row_group_bytes: o.row_group_bytes,
                batch_objects: o.batch_objects.max(1),
                batch_bytes: o.batch_bytes.max(1),
                spool_dir: None,
                add_columns: self.tables.schema_evolution
                    == crate::sink::bigquery::SchemaEvolution::AddColumns,
                create_auto: self
                    .tables
                    .create_auto
                    .then(|| iceberg::create::AutoCreate {
                        row_id_column: self.settings.row_id_column.clone(),
                        metadata: self.settings.metadata,
                        payload_column: self.settings.payload_column.clone(),
                        // (Parsed and refused when bad at start, by validate.)
                        partition_by: self
                            .bigquery
                            .partition_by
                            .as_deref()
                            .and_then(|p| iceberg::partition_by::parse(p).ok())
                            .unwrap_or_default(),
                    }),
            }
        }

        /// The per-object Iceberg sink (`redrive`, Lambda, `invoke`, worker).
        pub(in crate::run::setup) async fn iceberg_sink(
            &self,
            target: &Target,
        ) -> Result<Arc<Iceberg>, SetupError> {
            match Iceberg::connect(target.clone(), self.iceberg_settings()).await {
                Ok(s) => Ok(Arc::new(s)),
                Err(iceberg::Refusal::Usage(why)) => Err(super::Refusal::IcebergTable(why).into()),
                Err(iceberg::Refusal::Service(e)) => Err(e.into()),
            }
        }
    }
}
