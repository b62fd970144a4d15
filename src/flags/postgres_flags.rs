//! Flags of `--sink postgres://…`, and how they become the sink.

use clap::Args;

use super::{CreateTableChoice, Opts};
use firehose_replay::sink::postgres::{self, Postgres, Target};

#[derive(Args, Debug, Default)]
#[command(next_help_heading = "PostgreSQL")]
pub(crate) struct PostgresOpts {
    /// Secrets Manager secret (ARN or name) holding the database password: a plain string, or
    /// RDS's JSON secret ({"username", "password", …}). Used when the URL and PGPASSWORD have
    /// none.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_POSTGRES_SECRET_ARN")]
    postgres_secret_arn: Option<String>,

    /// Objects per transaction: above 1, `replay` and `backfill` commit this many objects'
    /// rows and ledger entries in one transaction (fewer commits for many small objects; one
    /// fixed table). 1: a transaction per object.
    #[arg(
        long,
        global = true,
        default_value_t = 1,
        value_parser = clap::value_parser!(u32).range(1..=10_000),
        env = "FIREHOSE_REPLAY_POSTGRES_BATCH_OBJECTS"
    )]
    pub(crate) postgres_batch_objects: u32,

    /// With --postgres-batch-objects: a batch's listed (compressed) MiB at most; a larger object
    /// is a batch alone.
    #[arg(
        long,
        global = true,
        default_value_t = 64,
        value_parser = clap::value_parser!(u64).range(1..),
        env = "FIREHOSE_REPLAY_POSTGRES_BATCH_MIB"
    )]
    postgres_batch_mib: u64,
}

impl PostgresOpts {
    pub(crate) async fn connect(&self, opts: &Opts, target: &Target) -> anyhow::Result<Postgres> {
        if opts.output.row_id_column.is_empty() {
            anyhow::bail!(
                "the postgres sink keys rows by their row ID: --row-id-column cannot be empty"
            );
        }
        let mut target = target.clone();
        let mut password = None;
        if let Some(arn) = self
            .postgres_secret_arn
            .as_deref()
            .filter(|a| !a.is_empty())
        {
            let client = firehose_replay::secrets::client().await;
            let secret = firehose_replay::secrets::secret_string(&client, arn).await?;
            match serde_json::from_str::<serde_json::Value>(&secret) {
                Ok(serde_json::Value::Object(o)) => {
                    password = o.get("password").and_then(|p| p.as_str()).map(String::from);
                    if let Some(user) = o.get("username").and_then(|u| u.as_str()) {
                        target.default_user = Some(user.to_string());
                    }
                }
                _ => password = Some(secret.trim_end_matches(['\n', '\r']).to_string()),
            }
        }
        let settings = postgres::Settings {
            row_id_column: opts.output.row_id_column.clone(),
            password,
            payload_column: opts.output.payload_column.clone().filter(|c| !c.is_empty()),
            add_columns: opts.bigquery.schema_evolution
                == firehose_replay::sink::bigquery::SchemaEvolution::AddColumns,
            route_default: opts
                .bigquery
                .route_default
                .clone()
                .filter(|d| !d.is_empty()),
            batch: (self.postgres_batch_objects > 1).then_some(postgres::batch::Bounds {
                objects: self.postgres_batch_objects as usize,
                bytes: self.postgres_batch_mib << 20,
            }),
            create_auto: (opts.bigquery.create_table == CreateTableChoice::Auto).then(|| {
                postgres::AutoCreate {
                    partition_by: opts.bigquery.partition_by.clone().filter(|c| !c.is_empty()),
                    payload_column: opts.output.payload_column.clone().filter(|c| !c.is_empty()),
                }
            }),
        };
        Ok(Postgres::connect(target, settings).await?)
    }
}
