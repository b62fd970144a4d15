//! The batch contract: a destination that commits many objects at once (BigQuery load jobs
//! today; the next sinks — PostgreSQL `COPY` in one transaction, an Iceberg snapshot — fit the
//! same shape). The driver is `run::batch`; this file is what a destination implements, so
//! that no sink imports the driver.
//!
//! A batch goes: [`BatchSink::prepare`] (a staging area, e.g. a spool folder) → every object
//! of the batch through the normal pipeline into [`StagedBatch::sink`] (its rows *staged*, its
//! ledger finish held back by the driver) → [`StagedBatch::take_staged`] (what each object
//! staged) → [`StagedBatch::commit`] (one commit for the batch; before anything becomes
//! visible it writes each object's *token* with [`Ledger::stage`] under the object's claim,
//! the fence against a worker that took the object over) → the driver finishes the committed
//! objects in the ledger and dead-letters the others. A run killed between stage and finish
//! meets the token in [`crate::ledger::Begin`] next time: the sink's per-object writer must
//! then resolve it (did that commit happen?) instead of writing the rows again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Sink;
use crate::error::Error;
use crate::ledger::{Claim, Finished, Ledger};
use crate::object::ObjectRef;

/// An object as the ledger keys it (`ledger::identity`).
pub type Identity = (String, String, String);

/// The tokens the objects' earlier attempts staged, as `begin` found them (filled by the
/// driver, read by the batch's writers to resolve them).
pub type StagedTokens = Arc<Mutex<HashMap<Identity, String>>>;

/// An object of the batch that staged rows: its ledger finish, held until the commit.
pub struct Held {
    pub object: ObjectRef,
    pub claim: Claim,
    pub summary: Finished,
}

/// What a batch's commit did.
pub struct BatchOutcome {
    /// Per held object (in the order given to `commit`): the error its commit failed with.
    pub failed: Vec<Option<Error>>,
    /// Rows the destination added (fewer than staged when it already held some).
    pub inserted: u64,
    /// What the commit is known by (job IDs), for the log.
    pub ids: Vec<String>,
}

/// A destination that commits objects in batches.
#[async_trait::async_trait]
pub trait BatchSink: Send + Sync {
    /// The run's objects as batches (indices into `objects`), in commit order.
    fn plan(&self, objects: &[ObjectRef]) -> Vec<Vec<usize>>;
    /// A staging area for the next batch; an error fails the batch's objects (none started).
    async fn prepare(&self, staged_tokens: StagedTokens) -> Result<Box<dyn StagedBatch>, Error>;
}

/// One prepared batch.
#[async_trait::async_trait]
pub trait StagedBatch: Send + Sync {
    /// The per-object sink the batch's objects write (stage) their rows into.
    fn sink(&self) -> Arc<dyn Sink>;
    /// Rows each object staged (called once, after the objects ran); an object with none has
    /// nothing to commit and is finished at once.
    fn take_staged(&self) -> HashMap<Identity, u64>;
    /// Commits `held` (each staged rows; in key order) as one: tokens staged in `ledger`
    /// first, then the destination written. `Err`: nothing was committed.
    async fn commit(&self, held: &[Held], ledger: &Arc<dyn Ledger>) -> Result<BatchOutcome, Error>;
}
