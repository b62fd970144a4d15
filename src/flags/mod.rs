//! The flags of `replay`, `backfill`, `redrive`, `invoke` and `worker`, which the Lambda function
//! reads from the same `FIREHOSE_REPLAY_*` variables: their definitions (one struct per help
//! heading), value parsers, and their conversion into the library's plain-data
//! `run::Setup` (`setup`), which checks their combinations and builds the engine. Outside the
//! CLI so that the Lambda and the worker share them without importing it.

use clap::Args;

mod bigquery_flags;
mod groups;
pub(crate) mod parsers;
mod postgres_flags;
mod setup;

pub(crate) use self::bigquery_flags::{BigQueryOpts, CreateTableChoice};
pub(crate) use self::groups::*;
pub(crate) use self::postgres_flags::PostgresOpts;

#[derive(Args, Debug)]
pub(crate) struct Opts {
    #[command(flatten)]
    pub(crate) input: InputFlags,
    #[command(flatten)]
    pub(crate) output: SinkFlags,
    #[command(flatten)]
    pub(crate) bigquery: BigQueryOpts,
    #[command(flatten)]
    pub(crate) postgres: PostgresOpts,
    #[command(flatten)]
    pub(crate) exactly_once: LedgerFlags,
    #[command(flatten)]
    pub(crate) failures: FailureFlags,
    #[command(flatten)]
    pub(crate) limits: LimitFlags,
    #[command(flatten)]
    pub(crate) logging: LogFlags,
}
