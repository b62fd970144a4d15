//! `--sink bigquery:…`: its options as plain data, the sink's [`Config`] built from them, and
//! load mode's batch driver side ([`LoadBatches`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::sink::bigquery::auth::CredentialSource;
use crate::sink::bigquery::insert_all::request::Flags;
use crate::sink::bigquery::load::batch::LoadBatches;
use crate::sink::bigquery::{self, merge::Dedup, CreateSchema, CreateTable, Mode, TableRef};
use crate::sink::bigquery::{Config, SchemaEvolution};
use crate::sink::SinkSpec;

use super::validate::{from_preflight, Refusal, SetupError};
use super::Setup;
use crate::run::Shared;

/// The BigQuery sink's options (`--bigquery-*`, `--dedup`, `--route-default`, …).
#[derive(Debug, Clone)]
pub struct BigQueryOptions {
    pub mode: Mode,
    /// REST base URL (an emulator's); `None` for Google's.
    pub endpoint: Option<String>,
    /// Storage Write API endpoint; `None` for Google's.
    pub storage_endpoint: Option<String>,
    pub credentials_file: Option<PathBuf>,
    pub credentials_json: Option<String>,
    /// A Secrets Manager secret holding the credentials JSON, read once when building.
    pub credentials_secret_arn: Option<String>,
    pub batch_rows: usize,
    pub max_request_bytes: usize,
    pub max_in_flight: usize,
    pub skip_invalid_rows: bool,
    pub ignore_unknown_values: bool,
    pub schema_evolution_wait: Duration,
    pub insert_max_attempts: usize,
    pub retry_min_delay: Duration,
    pub timeout: Duration,
    pub dedup: Dedup,
    pub merge_partition_filter: bool,
    pub merge_staging_ttl: Duration,
    pub location: Option<String>,
    /// Load mode: the bounds of one load job.
    pub load_bounds: bigquery::load::plan::Bounds,
    pub load_poll: Duration,
    pub create_table_schema: Option<PathBuf>,
    pub route_default: Option<String>,
    pub max_tables_per_object: usize,
    pub partition_by: Option<String>,
    pub cluster_by: Vec<String>,
}

impl Default for BigQueryOptions {
    fn default() -> Self {
        let c = Config::new(TableRef {
            project: String::new(),
            dataset: String::new(),
            table: String::new(),
        });
        BigQueryOptions {
            mode: Mode::default(),
            endpoint: None,
            storage_endpoint: None,
            credentials_file: None,
            credentials_json: None,
            credentials_secret_arn: None,
            batch_rows: c.limits.batch_rows,
            max_request_bytes: c.limits.max_request_bytes,
            max_in_flight: c.limits.max_in_flight,
            skip_invalid_rows: false,
            ignore_unknown_values: false,
            schema_evolution_wait: Duration::from_secs(600),
            insert_max_attempts: 5,
            retry_min_delay: Duration::from_millis(500),
            timeout: c.timeout,
            dedup: Dedup::Off,
            merge_partition_filter: false,
            merge_staging_ttl: Duration::from_secs(24 * 3600),
            location: None,
            load_bounds: bigquery::load::plan::Bounds {
                max_objects: 500,
                max_bytes: 1024 * 1024 * 1024,
                jobs_per_day: 1000,
            },
            load_poll: Duration::from_secs(1),
            create_table_schema: None,
            route_default: None,
            max_tables_per_object: bigquery::route::DEFAULT_MAX_TABLES_PER_OBJECT,
            partition_by: None,
            cluster_by: Vec::new(),
        }
    }
}

impl Setup {
    /// The BigQuery sink's configuration for `table`, with credentials from Secrets Manager
    /// when named.
    pub async fn bigquery_config(&self, table: &TableRef) -> Result<Config, SetupError> {
        let b = &self.bigquery;
        let s = &self.settings;
        let evolution = self.tables.schema_evolution;
        let mut c = Config::new(table.clone());
        c.endpoint = b.endpoint.clone();
        c.credentials = CredentialSource {
            file: b.credentials_file.clone(),
            json: b.credentials_json.clone(),
        };
        c.flags = Flags {
            skip_invalid_rows: b.skip_invalid_rows,
            // Schema evolution wins: a field the table lacks gets a column, not dropped.
            ignore_unknown_values: b.ignore_unknown_values && evolution == SchemaEvolution::Off,
        };
        c.schema_evolution = evolution;
        c.schema_wait = b.schema_evolution_wait.max(Duration::from_secs(1));
        c.limits.batch_rows = b.batch_rows.max(1);
        c.limits.max_request_bytes = b.max_request_bytes;
        c.limits.max_in_flight = b.max_in_flight.max(1);
        c.retry.max_attempts = b.insert_max_attempts.max(1);
        c.retry.min_delay = b.retry_min_delay;
        c.timeout = b.timeout.max(Duration::from_secs(1));
        c.mode = b.mode;
        c.storage_endpoint = b.storage_endpoint.clone();
        c.location = b.location.clone();
        let schema = match (&b.create_table_schema, self.tables.create_auto) {
            (Some(file), _) => Some(CreateSchema::File(file.clone())),
            (None, true) => Some(CreateSchema::Auto),
            (None, false) => None,
        };
        c.create_table = schema.map(|schema| CreateTable {
            schema,
            partition_by: b.partition_by.clone(),
            cluster_by: b.cluster_by.clone(),
        });
        c.route = bigquery::route::Settings {
            default: b.route_default.clone(),
            max_tables_per_object: b.max_tables_per_object,
            payload_column: s.payload_column.clone(),
        };
        if self.tables.create_auto {
            c.create_auto = Some(bigquery::autocreate::AutoCreate {
                row_id_column: s.row_id_column.clone(),
                metadata: s.metadata,
                payload_column: s.payload_column.clone(),
                partition_by: b.partition_by.clone(),
                cluster_by: b.cluster_by.clone(),
            });
        }
        if self.merging() {
            c.merge = Some(bigquery::merge::Settings {
                row_id_column: s.row_id_column.clone().unwrap_or_default(),
                // Asked for, and with a position-derived ID (a field-derived one may come with
                // another partition value in another record).
                prune_partitions: b.merge_partition_filter
                    && matches!(s.row_id, crate::row::RowIdSource::Position),
                staging_ttl: b.merge_staging_ttl,
            });
        }
        if let Some(arn) = &b.credentials_secret_arn {
            let client = crate::secrets::client().await;
            c.credentials.json = Some(crate::secrets::secret_string(&client, arn).await?);
        }
        Ok(c)
    }

    /// The per-object BigQuery sink (storage-write or insert-all), its table checked once.
    pub(super) async fn bigquery_sink(
        &self,
        table: &TableRef,
    ) -> Result<Arc<dyn crate::sink::Sink>, SetupError> {
        let config = self.bigquery_config(table).await?;
        bigquery::connect_checked(config)
            .await
            .map_err(from_preflight)
    }

    /// Load mode's side of the batch driver (`run::batch`): the load client, the row encoder,
    /// the merger and routing; `None` outside load mode.
    pub async fn load_batches(&self, shared: &Shared) -> Result<Option<LoadBatches>, SetupError> {
        let SinkSpec::BigQuery(table) = &self.sink else {
            return Ok(None);
        };
        if !self.load_mode() {
            return Ok(None);
        }
        let config = self.bigquery_config(table).await?;
        let (loads, encoder) = bigquery::connect_load(
            &config,
            self.bigquery.load_poll.max(Duration::from_millis(10)),
        )
        .await
        .map_err(from_preflight)?;
        let merger = match &config.merge {
            // The load client just made serves the merges too: no second connection.
            Some(settings) => Some(bigquery::connect_merger(loads.clone(), settings).await?),
            None => None,
        };
        Ok(Some(LoadBatches {
            loads,
            encoder,
            merger,
            bounds: self.bigquery.load_bounds.clone(),
            settings: shared.settings.clone(),
            spool_dir: None,
            routing: self.load_routing(table)?,
            growth: bigquery::load::schema::Growth {
                add_columns: config.schema_evolution == SchemaEvolution::AddColumns,
                create: match &config.create_table {
                    Some(CreateTable {
                        schema: CreateSchema::Auto,
                        partition_by,
                        cluster_by,
                    }) => Some(bigquery::load::schema::CreateLayout {
                        partition_by: partition_by.clone(),
                        cluster_by: cluster_by.clone(),
                    }),
                    _ => None,
                },
                options: bigquery::encode::Options {
                    ignore_unknown_values: config.flags.ignore_unknown_values,
                    ..Default::default()
                },
            },
        }))
    }

    /// Load mode's routing, when the sink's table has placeholders.
    fn load_routing(
        &self,
        table: &TableRef,
    ) -> Result<Option<Arc<bigquery::load::route::Routing>>, Refusal> {
        let template = bigquery::route::Template::new(table).map_err(Refusal::Template)?;
        if !template.is_routed() {
            return Ok(None);
        }
        let default = match &self.bigquery.route_default {
            Some(d) => Some(template.sibling(d).map_err(Refusal::Template)?),
            None => None,
        };
        Ok(Some(Arc::new(bigquery::load::route::Routing {
            template,
            default,
            max_tables: self.bigquery.max_tables_per_object,
            prefix: self.settings.payload_column.iter().cloned().collect(),
        })))
    }
}
