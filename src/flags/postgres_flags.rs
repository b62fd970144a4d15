//! Flags of `--sink postgres://…`.

use clap::Args;

use firehose_replay::run::setup::PostgresOptions;

use super::setup::given;

#[derive(Args, Debug, Default)]
#[command(next_help_heading = "PostgreSQL")]
pub(crate) struct PostgresOpts {
    /// Secrets Manager secret (ARN or name) holding the database password: a plain string, or
    /// RDS's JSON secret ({"username", "password", …}). Used when the URL and PGPASSWORD have
    /// none.
    #[arg(long, global = true, env = "FIREHOSE_REPLAY_POSTGRES_SECRET_ARN")]
    postgres_secret_arn: Option<String>,
}

impl PostgresOpts {
    /// These flags as the library's plain options.
    pub(crate) fn options(&self) -> PostgresOptions {
        PostgresOptions {
            secret_arn: given(&self.postgres_secret_arn),
        }
    }
}
