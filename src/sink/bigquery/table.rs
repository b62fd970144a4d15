//! The table itself: reading a schema file, looking the table up, creating it when missing.
//!
//! Two lookups, for two callers: `get` through `gcp-bigquery-client`'s typed `Table` (its
//! schema feeds the row encoder, at start, not retried: a failure stops the run before any
//! object), and [`resource`] as JSON through the shared REST client, retried (`--dedup merge`
//! reads partitioning from it).

use std::sync::Arc;

use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::model::clustering::Clustering;
use gcp_bigquery_client::model::table::Table;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;
use gcp_bigquery_client::model::table_schema::TableSchema;
use gcp_bigquery_client::model::time_partitioning::TimePartitioning;
use gcp_bigquery_client::Client;
use serde_json::Value;

use super::api_error::{sink_error, Fail};
use super::load::LoadJobs;
use super::rest::segment;
use super::{Connected, CreateTable, TableRef};
use crate::error::{Class, Error};

/// `gcp-bigquery-client`'s client on the connection's base URL and HTTP client.
async fn client(
    base: &str,
    http: reqwest::Client,
    auth: Option<Arc<dyn Authenticator>>,
) -> Result<Client, Error> {
    let auth: Arc<dyn Authenticator> = match auth {
        Some(a) => a,
        None => Arc::new(Anonymous),
    };
    gcp_bigquery_client::client_builder::ClientBuilder::new()
        .with_v2_base_url(format!("{base}/bigquery/v2"))
        .with_client(http)
        .build_from_authenticator(auth)
        .await
        .map_err(|e| sink_error(Class::Permanent, format!("BigQuery client: {e}")))
}

/// `tables.get` of `t`; `None` when the table does not exist.
pub(crate) async fn get(c: &Connected, t: &TableRef) -> Result<Option<Table>, Error> {
    match client(&c.base, c.http.clone(), c.auth.clone())
        .await?
        .table()
        .get(&t.project, &t.dataset, &t.table, None)
        .await
    {
        Ok(table) => Ok(Some(table)),
        Err(gcp_bigquery_client::error::BQError::ResponseError { error })
            if error.error.code == 404 =>
        {
            Ok(None)
        }
        Err(e) => Err(sink_error(
            Class::Transient,
            format!("looking up table {t}: {e}"),
        )),
    }
}

/// No-auth stand-in for the crate's client when requests go out unauthenticated.
#[derive(Clone)]
struct Anonymous;

#[async_trait::async_trait]
impl Authenticator for Anonymous {
    async fn access_token(&self) -> Result<String, gcp_bigquery_client::error::BQError> {
        Ok(String::new())
    }
}

/// Reads a BigQuery JSON schema file (a list of fields, or `{"fields": [...]}`).
pub fn read_schema(path: &std::path::Path) -> Result<Vec<TableFieldSchema>, Error> {
    let bytes = std::fs::read(path)
        .map_err(|e| sink_error(Class::Permanent, format!("schema {}: {e}", path.display())))?;
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum SchemaFile {
        List(Vec<TableFieldSchema>),
        Wrapped { fields: Vec<TableFieldSchema> },
    }
    match serde_json::from_slice::<SchemaFile>(&bytes) {
        Ok(SchemaFile::List(f)) | Ok(SchemaFile::Wrapped { fields: f }) => Ok(f),
        Err(e) => Err(sink_error(
            Class::Permanent,
            format!(
                "schema {} is not a BigQuery JSON schema: {e}",
                path.display()
            ),
        )),
    }
}

/// Creates table `t` from `create`'s schema file unless it exists; a table a concurrent worker
/// created in the meantime counts as existing.
pub(crate) async fn create_if_missing(
    base: &str,
    http: reqwest::Client,
    auth: Option<Arc<dyn Authenticator>>,
    t: &TableRef,
    create: &CreateTable,
    schema_file: &std::path::Path,
) -> Result<(), Error> {
    let fields = read_schema(schema_file)?;
    let from = schema_file.display().to_string();
    let layout = Layout {
        partition_by: create.partition_by.as_deref(),
        cluster_by: &create.cluster_by,
    };
    create_with(base, http, auth, t, fields, layout, &from).await
}

/// How a created table is partitioned and clustered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layout<'a> {
    /// Day-partition on this TIMESTAMP/DATE column.
    pub partition_by: Option<&'a str>,
    pub cluster_by: &'a [String],
}

/// Creates table `t` with `fields` unless it exists (`from` says where the schema came from,
/// for the log); a table a concurrent worker created in the meantime (409) counts as existing.
pub(crate) async fn create_with(
    base: &str,
    http: reqwest::Client,
    auth: Option<Arc<dyn Authenticator>>,
    t: &TableRef,
    fields: Vec<TableFieldSchema>,
    layout: Layout<'_>,
    from: &str,
) -> Result<(), Error> {
    let client = client(base, http, auth).await?;
    match client
        .table()
        .get(&t.project, &t.dataset, &t.table, None)
        .await
    {
        Ok(_) => return Ok(()),
        Err(gcp_bigquery_client::error::BQError::ResponseError { error })
            if error.error.code == 404 => {}
        Err(e) => {
            return Err(sink_error(
                Class::Transient,
                format!("looking up table {t}: {e}"),
            ));
        }
    }
    let mut table = Table::new(&t.project, &t.dataset, &t.table, TableSchema::new(fields));
    if let Some(field) = layout.partition_by {
        table.time_partitioning = Some(TimePartitioning {
            r#type: "DAY".into(),
            field: Some(field.to_string()),
            expiration_ms: None,
            require_partition_filter: None,
        });
    }
    if !layout.cluster_by.is_empty() {
        table.clustering = Some(Clustering {
            fields: Some(layout.cluster_by.to_vec()),
        });
    }
    let created = client.table().create(table).await;
    if let Err(e) = &created {
        let conflict = matches!(e, gcp_bigquery_client::error::BQError::ResponseError { error }
            if error.error.code == 409);
        // A concurrent creator may have won in a way not answered 409 (the emulator reports
        // its storage's write conflict as a 400, and shows the winner's table a moment
        // later): the table existing now is what counts. Polled briefly, on failure only.
        if !conflict {
            for wait_ms in [0, 100, 300, 600] {
                tokio::time::sleep(std::time::Duration::from_millis(wait_ms)).await;
                let found = client
                    .table()
                    .get(&t.project, &t.dataset, &t.table, None)
                    .await;
                if found.is_ok() {
                    tracing::debug!(table = %t, "creating the table failed ({e}), but it exists now");
                    return Ok(());
                }
            }
        }
    }
    match created {
        Ok(_) => {
            tracing::info!(table = %t, "created the table from {from}");
            Ok(())
        }
        // Created by a concurrent worker in the meantime.
        Err(gcp_bigquery_client::error::BQError::ResponseError { error })
            if error.error.code == 409 =>
        {
            Ok(())
        }
        // Mid-run (a routed table, `--create-table auto`) an overloaded service must not
        // dead-letter the object: throttling and 5xx are worth another try.
        Err(gcp_bigquery_client::error::BQError::ResponseError { error })
            if error.error.code == 429 || error.error.code >= 500 =>
        {
            Err(sink_error(
                Class::Transient,
                format!("creating table {t}: {}", error.error.message),
            ))
        }
        Err(e) => Err(sink_error(
            Class::Permanent,
            format!("creating table {t}: {e}"),
        )),
    }
}

/// The REST URL of the load client's table (what `tables.get` and `tables.patch` address).
pub(crate) fn url(jobs: &LoadJobs) -> String {
    let t = jobs.table();
    format!(
        "{}/bigquery/v2/projects/{}/datasets/{}/tables/{}",
        jobs.rest().base,
        segment(&t.project),
        segment(&t.dataset),
        segment(&t.table)
    )
}

/// `tables.get` of the load client's table, as JSON (etag, schema, partitioning), retried per
/// the policy; `None` when the table does not exist. The one JSON lookup behind `--dedup
/// merge`'s check, load mode's per-batch schema and schema evolution's patches.
pub(crate) async fn lookup(jobs: &LoadJobs, what: &str) -> Result<Option<Value>, Error> {
    let url = url(jobs);
    jobs.rest()
        .with_retries(what, || async {
            let reply = jobs.rest().call(jobs.rest().http.get(&url)).await?;
            match reply.status {
                200..=299 => reply.json("table resource").map(Some),
                404 => Ok(None),
                _ => Err(reply.fail()),
            }
        })
        .await
}

/// [`lookup`] of a table that must exist: what `--dedup merge` checks the target against.
pub async fn resource(jobs: &LoadJobs) -> Result<Value, Error> {
    let t = jobs.table();
    let what = format!("looking up table {t}");
    lookup(jobs, &what).await?.ok_or_else(|| {
        Fail::permanent(format!(
            "table {t} does not exist (create it, or give --create-table-schema)"
        ))
        .into_error(&what)
    })
}
