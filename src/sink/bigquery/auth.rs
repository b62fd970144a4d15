//! Which Google credentials to use, in the order users expect:
//! 1. `--gcp-credentials FILE`;
//! 2. `FIREHOSE_REPLAY_GCP_CREDENTIALS_JSON` — the key JSON itself (what a Lambda gets from
//!    Secrets Manager);
//! 3. `GOOGLE_APPLICATION_CREDENTIALS`;
//! 4. with `--bigquery-endpoint` and none of the above: no credentials (emulators);
//! 5. application default credentials (gcloud's user credentials, or the metadata server).
//!
//! A credentials document is recognised by its `type`: `service_account` (a key),
//! `authorized_user` (gcloud's user login) or `external_account` (workload identity
//! federation, e.g. from AWS).

use std::sync::Arc;

use async_trait::async_trait;
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::yup_oauth2;

use crate::error::{Cause, Error, Stage};

pub const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

/// Where credentials come from (secrets are never part of `Debug` or logs).
#[derive(Clone, Default)]
pub struct CredentialSource {
    pub file: Option<std::path::PathBuf>,
    pub json: Option<String>,
}

impl std::fmt::Debug for CredentialSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialSource")
            .field("file", &self.file)
            .field("json", &self.json.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn auth_error(msg: impl std::fmt::Display) -> Error {
    Error::permanent(
        Stage::Sink,
        Cause::Sink(format!("Google credentials: {msg}")),
    )
}

/// The authenticator to use; `None` sends requests without credentials.
pub async fn authenticator(
    source: &CredentialSource,
    endpoint_overridden: bool,
) -> Result<Option<Arc<dyn Authenticator>>, Error> {
    if let Some(path) = &source.file {
        let doc =
            std::fs::read(path).map_err(|e| auth_error(format!("{}: {e}", path.display())))?;
        return from_document(&doc, &path.display().to_string())
            .await
            .map(Some);
    }
    if let Some(json) = &source.json {
        return from_document(json.as_bytes(), "FIREHOSE_REPLAY_GCP_CREDENTIALS_JSON")
            .await
            .map(Some);
    }
    if let Some(path) = std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").filter(|p| !p.is_empty())
    {
        let path = std::path::PathBuf::from(path);
        let doc = std::fs::read(&path).map_err(|e| {
            auth_error(format!(
                "GOOGLE_APPLICATION_CREDENTIALS={}: {e}",
                path.display()
            ))
        })?;
        return from_document(&doc, &path.display().to_string())
            .await
            .map(Some);
    }
    if endpoint_overridden {
        tracing::info!("BigQuery endpoint overridden and no credentials configured: sending requests unauthenticated");
        return Ok(None);
    }
    let opts = yup_oauth2::ApplicationDefaultCredentialsFlowOpts::default();
    let auth = match yup_oauth2::ApplicationDefaultCredentialsAuthenticator::builder(opts).await {
        yup_oauth2::authenticator::ApplicationDefaultCredentialsTypes::ServiceAccount(b) => {
            b.build().await
        }
        yup_oauth2::authenticator::ApplicationDefaultCredentialsTypes::InstanceMetadata(b) => {
            b.build().await
        }
    }
    .map_err(|e| {
        auth_error(format!(
            "no credentials configured and application default credentials failed: {e}"
        ))
    })?;
    Ok(Some(Arc::new(Yup(auth))))
}

#[derive(serde::Deserialize)]
struct Kind {
    #[serde(rename = "type", default)]
    kind: String,
}

async fn from_document(doc: &[u8], origin: &str) -> Result<Arc<dyn Authenticator>, Error> {
    let kind: Kind = serde_json::from_slice(doc)
        .map_err(|e| auth_error(format!("{origin} is not a credentials JSON document: {e}")))?;
    match kind.kind.as_str() {
        "service_account" => {
            let key = yup_oauth2::parse_service_account_key(doc)
                .map_err(|e| auth_error(format!("{origin}: invalid service account key: {e}")))?;
            let auth = yup_oauth2::ServiceAccountAuthenticator::builder(key)
                .build()
                .await
                .map_err(|e| auth_error(format!("{origin}: {e}")))?;
            Ok(Arc::new(Yup(auth)))
        }
        "authorized_user" => {
            let secret: yup_oauth2::authorized_user::AuthorizedUserSecret = serde_json::from_slice(doc)
                .map_err(|e| auth_error(format!("{origin}: invalid authorized_user credentials: {e}")))?;
            let auth = yup_oauth2::AuthorizedUserAuthenticator::builder(secret)
                .build()
                .await
                .map_err(|e| auth_error(format!("{origin}: {e}")))?;
            Ok(Arc::new(Yup(auth)))
        }
        "external_account" => external_account(doc, origin).await,
        other => Err(auth_error(format!(
            "{origin}: unsupported credentials type `{other}` (expected service_account, authorized_user or external_account)"
        ))),
    }
}

/// Workload identity federation from AWS: the function's own AWS credentials are exchanged
/// for a Google token, so no long-lived Google key is needed.
async fn external_account(doc: &[u8], origin: &str) -> Result<Arc<dyn Authenticator>, Error> {
    let config = super::federation::load_external_account(doc)
        .map_err(|e| auth_error(format!("{origin}: {e}")))?;
    let auth = super::federation::AwsFederatedAuthenticator::new(config)
        .await
        .map_err(|e| auth_error(format!("{origin}: {e}")))?;
    Ok(auth.into_authenticator())
}

/// yup-oauth2's authenticators (service account, user, metadata server) as the crate's
/// `Authenticator`; they cache and refresh tokens themselves.
#[derive(Clone)]
struct Yup(
    yup_oauth2::authenticator::Authenticator<
        yup_oauth2::hyper_rustls::HttpsConnector<
            hyper_util::client::legacy::connect::HttpConnector,
        >,
    >,
);

#[async_trait]
impl Authenticator for Yup {
    async fn access_token(&self) -> Result<String, BQError> {
        let token = self.0.token(&[SCOPE]).await?;
        token.token().map(str::to_string).ok_or(BQError::NoToken)
    }
}
