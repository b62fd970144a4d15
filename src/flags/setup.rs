//! Flags → the engine: settings, sink, dead letters, ledger (`Opts::shared`).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::bail;

use firehose_replay::aws::Aws;
use firehose_replay::dead_letter::remote::{self, Remote, S3Target};
use firehose_replay::dead_letter::spec::{DeadLetterSpec, SpecError};
use firehose_replay::dead_letter::DeadLetters;
use firehose_replay::ledger::file::FileLedger;
use firehose_replay::ledger::s3::S3Ledger;
use firehose_replay::ledger::{worker_id, Ledger, LedgerSpec, NoLedger};
use firehose_replay::pipeline::Settings;
use firehose_replay::row::RowIdSource;
use firehose_replay::run::retry::ObjectRetry;
use firehose_replay::run::Shared;
use firehose_replay::sink::bigquery::{self, TableRef};
use firehose_replay::sink::SinkSpec;
use firehose_replay::source::s3::S3Uri;

use super::guards::*;
use super::{CreateTableChoice, Opts};

impl Opts {
    pub(crate) fn settings(&self) -> anyhow::Result<Settings> {
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
            row_id_column: Some(self.output.row_id_column.clone()).filter(|c| !c.is_empty()),
            metadata: self.output.metadata_columns,
            payload_column: self.output.payload_column.clone().filter(|c| !c.is_empty()),
            mapping,
            max_record_error_ratio: Some(self.failures.max_record_error_ratio),
        })
    }

    /// The parts every object shares: settings, sink, dead letters, ledger.
    pub(crate) async fn shared(&self, aws: &mut Aws) -> anyhow::Result<Shared> {
        firehose_replay::scratch::set_limit(self.limits.max_scratch_bytes);
        refuse_duplicating_runs(self)?;
        refuse_colliding_columns(self)?;
        refuse_routing_conflicts(self)?;
        let postgres = match &self.output.sink {
            SinkSpec::Postgres(target) => {
                Some(Arc::new(self.postgres.connect(self, target).await?))
            }
            _ => None,
        };
        let ledger: Arc<dyn Ledger> = match self
            .exactly_once
            .ledger
            .clone()
            .unwrap_or_else(|| default_ledger(&self.output.sink))
        {
            LedgerSpec::Postgres => match &postgres {
                Some(pg) => Arc::new(firehose_replay::ledger::postgres::PostgresLedger::new(pg)),
                None => bail!(
                    "--ledger postgres keeps the ledger beside a PostgreSQL sink's table \
                     (--sink postgres://…)"
                ),
            },
            LedgerSpec::None => Arc::new(NoLedger::default()),
            LedgerSpec::File(path) => Arc::new(FileLedger::open(path)?),
            LedgerSpec::S3 { bucket, prefix } => Arc::new(S3Ledger::new(
                aws.client().await,
                bucket,
                prefix,
                worker_id(),
                std::time::Duration::from_secs(self.exactly_once.claim_ttl_secs),
            )),
        };
        Ok(Shared {
            settings: Arc::new(self.settings()?),
            sink: match (&self.output.sink, self.output.sink.build_local()) {
                (_, Some(local)) => Arc::from(local),
                (SinkSpec::Postgres(_), None) => postgres.clone().expect("connected above"),
                // The load runner connects on its own and swaps in its spool sink.
                (SinkSpec::BigQuery(_), None) if self.load_mode() => {
                    Arc::new(bigquery::load::batch::LoadOnly)
                }
                (SinkSpec::BigQuery(table), None) => {
                    let config = self.bigquery_config(table).await?;
                    match bigquery::connect_checked(config).await {
                        Ok(sink) => sink,
                        // A usage error (exit 2): no library error in the chain.
                        Err(r @ bigquery::preflight::Refusal::MissingTable(_)) => bail!("{r}"),
                        Err(bigquery::preflight::Refusal::Service(e)) => return Err(e.into()),
                    }
                }
                (spec, None) => bail!("sink {spec:?} cannot be built"),
            },
            dead_letters: Arc::new(self.dead_letters(aws).await?),
            ledger,
            force: self.exactly_once.force,
            worker: Arc::from(worker_id()),
            retry: ObjectRetry {
                max_attempts: self.failures.max_attempts.max(1),
                min_delay: std::time::Duration::from_millis(self.bigquery.retry_min_delay_ms),
                ..ObjectRetry::default()
            },
            object_timeout: self
                .failures
                .object_timeout
                .map(std::time::Duration::from_secs),
        })
    }

    /// The BigQuery sink's configuration, with credentials from Secrets Manager when named.
    pub(crate) async fn bigquery_config(
        &self,
        table: &TableRef,
    ) -> anyhow::Result<bigquery::Config> {
        let mut config = self.bigquery.config(table);
        config.route = bigquery::route::Settings {
            default: self
                .bigquery
                .route_default
                .clone()
                .filter(|d| !d.is_empty()),
            max_tables_per_object: self.bigquery.max_tables_per_object,
            payload_column: self.output.payload_column.clone().filter(|c| !c.is_empty()),
        };
        if self.bigquery.create_table == CreateTableChoice::Auto {
            config.create_auto = Some(bigquery::autocreate::AutoCreate {
                row_id_column: Some(self.output.row_id_column.clone()).filter(|c| !c.is_empty()),
                metadata: self.output.metadata_columns,
                payload_column: self.output.payload_column.clone().filter(|c| !c.is_empty()),
                partition_by: self.bigquery.partition_by.clone(),
                cluster_by: self.bigquery.cluster_by.clone(),
            });
        }
        if self.bigquery.dedup == bigquery::merge::Dedup::Merge {
            config.merge = Some(bigquery::merge::Settings {
                row_id_column: self.output.row_id_column.clone(),
                // Asked for, and with a position-derived ID (a field-derived one may come with
                // another partition value in another record).
                prune_partitions: self.bigquery.merge_partition_filter
                    && self.output.row_id_field.is_none(),
                staging_ttl: std::time::Duration::from_secs(
                    self.bigquery.merge_staging_ttl_hours.saturating_mul(3600),
                ),
            });
        }
        if let Some(arn) = self
            .bigquery
            .gcp_credentials_secret_arn
            .as_deref()
            .filter(|a| !a.is_empty())
        {
            let client = firehose_replay::secrets::client().await;
            config.credentials.json =
                Some(firehose_replay::secrets::secret_string(&client, arn).await?);
        }
        Ok(config)
    }

    /// Load mode's routing, when the sink's table has placeholders.
    pub(crate) fn load_routing(
        &self,
        table: &TableRef,
    ) -> anyhow::Result<Option<Arc<bigquery::load::route::Routing>>> {
        let template = bigquery::route::Template::new(table).map_err(anyhow::Error::msg)?;
        if !template.is_routed() {
            return Ok(None);
        }
        let default = match self
            .bigquery
            .route_default
            .as_deref()
            .filter(|d| !d.is_empty())
        {
            Some(d) => Some(template.sibling(d).map_err(anyhow::Error::msg)?),
            None => None,
        };
        Ok(Some(Arc::new(bigquery::load::route::Routing {
            template,
            default,
            max_tables: self.bigquery.max_tables_per_object,
            prefix: self
                .output
                .payload_column
                .iter()
                .filter(|c| !c.is_empty())
                .cloned()
                .collect(),
        })))
    }

    /// `--sink bigquery:… --bigquery-mode load`.
    pub(crate) fn load_mode(&self) -> bool {
        matches!(self.output.sink, SinkSpec::BigQuery(_))
            && self.bigquery.bigquery_mode == bigquery::Mode::Load
    }

    /// Objects commit in batches (load mode, `--postgres-batch-objects`): listed up front.
    pub(crate) fn batched(&self) -> bool {
        self.load_mode()
            || (matches!(self.output.sink, SinkSpec::Postgres(_))
                && self.postgres.postgres_batch_objects > 1)
    }

    /// `--concurrency`, defaulting to cores × 2.
    pub(crate) fn concurrency(&self) -> usize {
        self.limits
            .concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()) * 2)
    }

    pub(crate) async fn dead_letters(&self, aws: &mut Aws) -> anyhow::Result<DeadLetters> {
        let spec = self.failures.dead_letter.as_str();
        let s3_target = |uri: &S3Uri, client: aws_sdk_s3::Client| S3Target {
            client,
            bucket: uri.bucket.clone(),
            prefix: DeadLetterSpec::s3_prefix(uri),
        };
        let parsed = spec.parse::<DeadLetterSpec>().map_err(|e| match e {
            SpecError::Unsupported => anyhow::anyhow!("unsupported --dead-letter `{spec}`: {e}"),
            e => anyhow::Error::msg(e.to_string()),
        })?;
        Ok(match parsed {
            DeadLetterSpec::S3(uri) => DeadLetters::remote(Remote::S3 {
                target: s3_target(&uri, aws.client().await),
                handle: tokio::runtime::Handle::current(),
            }),
            DeadLetterSpec::Sqs(queue_url) => {
                let overflow = match &self.failures.dead_letter_overflow {
                    Some(uri) => {
                        let uri: S3Uri = uri.parse().map_err(anyhow::Error::msg)?;
                        Some(s3_target(&uri, aws.client().await))
                    }
                    None => None,
                };
                DeadLetters::remote(Remote::Sqs {
                    client: remote::sqs_client().await,
                    queue_url,
                    overflow,
                    handle: tokio::runtime::Handle::current(),
                })
            }
            DeadLetterSpec::Dir(dir) => DeadLetters::new(dir),
        })
    }
}

/// The CLI's default ledger: a file inside the NDJSON output directory (deleting the output
/// resets it); none for stdout.
pub(crate) fn default_ledger(sink: &SinkSpec) -> LedgerSpec {
    match sink {
        SinkSpec::Ndjson(dir) => LedgerSpec::File(dir.join(".ledger.jsonl")),
        SinkSpec::Stdout => LedgerSpec::None,
        SinkSpec::Postgres(_) => LedgerSpec::Postgres,
        // (A routing template's field path may hold a `/`: not a directory.)
        SinkSpec::BigQuery(t) => LedgerSpec::File(PathBuf::from(format!(
            ".firehose-replay/ledger-{}.jsonl",
            t.to_string().replace('/', "_")
        ))),
    }
}
