//! `--sink postgres://…`: its options as plain data, and the sink connected from them.

use crate::sink::bigquery::SchemaEvolution;
use crate::sink::postgres::{self, Postgres, Target};

use super::validate::SetupError;
use super::Setup;

/// The PostgreSQL sink's own options (the rest — row ID, payload column, tables — are the
/// setup's shared ones).
#[derive(Debug, Clone, Default)]
pub struct PostgresOptions {
    /// Secrets Manager secret (ARN or name) holding the database password: a plain string, or
    /// RDS's JSON secret ({"username", "password", …}). Used when the URL and PGPASSWORD have
    /// none.
    pub secret_arn: Option<String>,
    /// `--postgres-batch-objects` above 1 (and `--postgres-batch-mib`): objects commit in
    /// batches in `replay` and `backfill`.
    pub batch: Option<postgres::batch::Bounds>,
    /// `--postgres-iam-auth`: RDS IAM authentication tokens as the password.
    pub iam_auth: bool,
}

impl Setup {
    /// The PostgreSQL sink for `target` (its ledger, by default, lives beside it).
    pub(super) async fn postgres_sink(&self, target: &Target) -> Result<Postgres, SetupError> {
        let mut target = target.clone();
        let mut password = None;
        if let Some(arn) = &self.postgres.secret_arn {
            let client = crate::secrets::client().await;
            let secret = crate::secrets::secret_string(&client, arn).await?;
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
        let payload_column = self.settings.payload_column.clone();
        let settings = postgres::Settings {
            // (Refused empty by `validate`.)
            row_id_column: self.settings.row_id_column.clone().unwrap_or_default(),
            password,
            payload_column: payload_column.clone(),
            add_columns: self.tables.schema_evolution == SchemaEvolution::AddColumns,
            route_default: self.bigquery.route_default.clone(),
            iam: match self.postgres.iam_auth {
                true => {
                    let sdk = crate::aws::sdk_config().await;
                    Some(postgres::iam::IamAuth {
                        credentials: sdk.credentials_provider().ok_or_else(|| {
                            crate::error::Error::permanent(
                                crate::error::Stage::Sink,
                                crate::error::Cause::Sink(
                                    "--postgres-iam-auth: no AWS credentials are configured".into(),
                                ),
                            )
                        })?,
                        region: sdk
                            .region()
                            .map_or_else(|| "us-east-1".to_string(), |r| r.to_string()),
                    })
                }
                false => None,
            },
            batch: self.postgres.batch,
            create_auto: self.tables.create_auto.then_some(postgres::AutoCreate {
                payload_column,
                partition_by: self.bigquery.partition_by.clone(),
            }),
        };
        Ok(Postgres::connect(target, settings).await?)
    }
}
