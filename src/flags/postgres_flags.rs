//! Flags of `--sink postgres://…`.

use clap::Args;

use firehose_replay::run::setup::PostgresOptions;
use firehose_replay::sink::postgres;

use super::setup::given;

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
    postgres_batch_objects: u32,

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

    /// RDS IAM authentication: each connection's password is a fresh token signed with the AWS
    /// credentials (the SDK's default chain) for the URL's host, port and user.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_POSTGRES_IAM_AUTH")]
    postgres_iam_auth: bool,
}

impl PostgresOpts {
    /// These flags as the library's plain options.
    pub(crate) fn options(&self) -> PostgresOptions {
        PostgresOptions {
            secret_arn: given(&self.postgres_secret_arn),
            iam_auth: self.postgres_iam_auth,
            batch: (self.postgres_batch_objects > 1).then_some(postgres::batch::Bounds {
                objects: self.postgres_batch_objects as usize,
                bytes: self.postgres_batch_mib << 20,
            }),
        }
    }
}
