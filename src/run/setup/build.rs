//! A validated setup → the engine handle ([`Shared`]).

use std::sync::Arc;

use crate::aws::Aws;
use crate::error::{Cause, Error, Stage};
use crate::ledger::worker_id;
use crate::sink::bigquery::load::batch::LoadOnly;
use crate::sink::{Sink, SinkSpec};

use super::validate::SetupError;
use super::Setup;
use crate::run::Shared;

impl Setup {
    /// Validates, then builds the engine: settings, sink, dead letters, ledger, retries. The
    /// sink's destination is checked once here (a missing BigQuery table nothing would create
    /// is refused), so no object is read when the run cannot deliver it.
    pub async fn build(&self, aws: &mut Aws) -> Result<Shared, SetupError> {
        self.validate()?;
        crate::scratch::set_limit(self.max_scratch_bytes);
        let postgres = match &self.sink {
            SinkSpec::Postgres(target) => Some(Arc::new(self.postgres_sink(target).await?)),
            _ => None,
        };
        let ledger = self.open_ledger(aws, postgres.as_ref()).await?;
        let sink: Arc<dyn Sink> = match (&self.sink, self.sink.build_local(), postgres) {
            (_, Some(local), _) => Arc::from(local),
            (_, None, Some(postgres)) => postgres,
            // Load mode's batch driver connects on its own (`load_batches`) and swaps in its
            // spool sink.
            (SinkSpec::BigQuery(_), None, None) if self.load_mode() => Arc::new(LoadOnly),
            (SinkSpec::BigQuery(table), None, None) => self.bigquery_sink(table).await?,
            (spec, None, None) => {
                return Err(Error::permanent(
                    Stage::Sink,
                    Cause::Sink(format!("sink {spec:?} cannot be built")),
                )
                .into())
            }
        };
        Ok(Shared {
            settings: Arc::new(self.settings.clone()),
            sink,
            dead_letters: Arc::new(self.open_dead_letters(aws).await),
            ledger,
            force: self.ledger.force,
            worker: Arc::from(worker_id()),
            retry: self.retry.clone(),
            object_timeout: self.object_timeout,
        })
    }
}
