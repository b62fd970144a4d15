//! `--bigquery-mode insert-all`: legacy streaming inserts (`tabledata.insertAll`), with each
//! row's ID as its `insertId`.
//!
//! Request bodies are built as bytes from the rows the pipeline produces (`request`), several
//! requests per object are in flight while the next batch is decoded (`writer`), and `insert`
//! sends one request until each of its rows is written or refused for good. The sink here
//! holds what every object's writer shares: the endpoint, the policy, and the batches already
//! delivered (so a retried object does not send them again).

pub mod insert;
pub mod request;
pub mod writer;

use std::sync::Arc;

use self::insert::Endpoint;
use self::request::Flags;
use self::writer::Writer;
use super::retry::RetryPolicy;
use super::{connect_rest, Config, Connected, Limits, TableRef};
use crate::error::Error;
use crate::object::ObjectRef;
use crate::sink::{ObjectWriter, Sink};

/// `--sink bigquery:…`.
pub struct BigQuery {
    endpoint: Arc<Endpoint>,
    policy: Arc<RetryPolicy>,
    flags: Flags,
    limits: Limits,
    handle: tokio::runtime::Handle,
    delivered: Arc<writer::Delivered>,
}

impl BigQuery {
    /// Builds the client (no network call unless the table must be created). Call within a
    /// Tokio runtime: requests run on it.
    pub async fn connect(config: Config) -> Result<BigQuery, Error> {
        let c = connect_rest(&config).await?;
        Ok(BigQuery::on(&c, &config.table, &config))
    }

    /// The sink of `t` on an existing connection (one of the tables a router writes to).
    /// Call within a Tokio runtime.
    pub(crate) fn on(c: &Connected, t: &TableRef, config: &Config) -> BigQuery {
        let evolver = super::evolver(config, c, t);
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let url = format!(
            "{}/bigquery/v2/projects/{}/datasets/{}/tables/{}/insertAll",
            c.base,
            enc(&t.project),
            enc(&t.dataset),
            enc(&t.table)
        );
        BigQuery {
            endpoint: Arc::new(Endpoint {
                http: c.http.clone(),
                url,
                auth: c.auth.clone(),
                table: t.to_string(),
                evolver,
            }),
            policy: Arc::new(config.retry.clone()),
            flags: config.flags,
            limits: config.limits.clone(),
            handle: tokio::runtime::Handle::current(),
            delivered: Arc::default(),
        }
    }
}

impl Sink for BigQuery {
    fn open(&self, object: &ObjectRef) -> Result<Box<dyn ObjectWriter>, Error> {
        Ok(Box::new(Writer {
            object_id: format!(
                "{}/{}#{}",
                object.bucket,
                object.key,
                object.etag.as_deref().unwrap_or("")
            ),
            delivered: self.delivered.clone(),
            endpoint: self.endpoint.clone(),
            policy: self.policy.clone(),
            flags: self.flags,
            limits: self.limits.clone(),
            handle: self.handle.clone(),
            batch: None,
            in_flight: Vec::new(),
            slots: Arc::new(tokio::sync::Semaphore::new(
                self.limits.max_in_flight.max(1),
            )),
            rejected: Vec::new(),
        }))
    }
}
