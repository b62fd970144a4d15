//! The ledger a setup names, opened.

use std::path::PathBuf;
use std::sync::Arc;

use crate::aws::Aws;
use crate::ledger::file::FileLedger;
use crate::ledger::postgres::PostgresLedger;
use crate::ledger::s3::S3Ledger;
use crate::ledger::{worker_id, Ledger, LedgerSpec, NoLedger};
use crate::sink::postgres::Postgres;
use crate::sink::SinkSpec;

use super::validate::{Refusal, SetupError};
use super::Setup;

/// The default ledger of a sink: a file inside the NDJSON output directory (deleting the output
/// resets it); none for stdout; the PostgreSQL sink's table's neighbour; a file under
/// `.firehose-replay/` for BigQuery.
pub fn default_ledger(sink: &SinkSpec) -> LedgerSpec {
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

impl Setup {
    /// Opens the ledger; `postgres` is the PostgreSQL sink when there is one.
    pub(super) async fn open_ledger(
        &self,
        aws: &mut Aws,
        postgres: Option<&Arc<Postgres>>,
    ) -> Result<Arc<dyn Ledger>, SetupError> {
        Ok(match self.ledger_spec() {
            LedgerSpec::Postgres => match postgres {
                Some(pg) => Arc::new(PostgresLedger::new(pg)),
                None => return Err(Refusal::PostgresLedgerElsewhere.into()),
            },
            LedgerSpec::None => Arc::new(NoLedger::default()),
            LedgerSpec::File(path) => Arc::new(FileLedger::open(path)?),
            LedgerSpec::S3 { bucket, prefix } => Arc::new(S3Ledger::new(
                aws.client().await,
                bucket,
                prefix,
                worker_id(),
                self.ledger.claim_ttl,
            )),
        })
    }
}
