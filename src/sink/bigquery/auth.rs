//! Which Google credentials to use, in the order users expect:
//! 1. `--gcp-credentials FILE`;
//! 2. `FIREHOSE_REPLAY_GCP_CREDENTIALS_JSON` — the document itself (what a Lambda gets from
//!    Secrets Manager or SSM);
//! 3. `GOOGLE_APPLICATION_CREDENTIALS`;
//! 4. with `--bigquery-endpoint` and none of the above: no credentials (emulators);
//! 5. application default credentials: gcloud's well-known file under `$HOME`, else the GCE
//!    metadata server (`GCE_METADATA_HOST` overrides its address).
//!
//! Tokens come from Google's own `google-cloud-auth` crate, which reads the document by its
//! `type`: `service_account` (a key; signed into a self-signed JWT that Google APIs take as the
//! bearer token, AIP-4111 — no token endpoint round trip), `authorized_user` (gcloud's user
//! login: a refresh-token grant at `token_uri`), `impersonated_service_account`, and
//! `external_account` (workload identity federation: for AWS it signs an STS
//! `GetCallerIdentity` request with SigV4 as the subject token, exchanges it at `token_url`,
//! then impersonates `service_account_impersonation_url` when set). The crate caches each token
//! and refreshes it in the background before it expires; [`Official`] adapts it to the
//! `Authenticator` trait the REST and gRPC callers use.
//!
//! What the official crate does differently from the hand-written federation this replaced,
//! checked against its 1.19 source (`external_account_sources/aws_sourced.rs`,
//! `external_account.rs`):
//! * AWS credentials come from `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` /
//!   `AWS_SESSION_TOKEN` (what Lambda sets), else from the metadata server at the file's
//!   `credential_source.url` (EC2). The AWS SDK's wider provider chain (profiles, SSO, ECS task
//!   roles, EKS web identity) is not consulted: export the credentials into the environment
//!   there (`aws configure export-credentials --format env`).
//! * The crate asks for an IMDSv2 session token whenever the file has
//!   `imdsv2_session_token_url`, even when the environment already gives both the region and
//!   the credentials — on Lambda, which has no metadata server, that request cannot succeed.
//!   Google's other libraries (google-auth-library-python's `aws.py`) skip it in that case; so
//!   does [`prepare_external_account`], which drops the URL before the crate sees the file. This
//!   is the only part of the federation still ours.
//! * `service_account_impersonation.token_lifetime_seconds` is not read: impersonated tokens
//!   live one hour (the crate refreshes them).
//!
//! The file decides where the signed AWS request is sent (`token_url`): like any credential
//! configuration, only use files from a trusted source.

use std::sync::Arc;

use async_trait::async_trait;
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::yup_oauth2;
use google_cloud_auth::credentials::{
    self as gauth, external_account, impersonated, service_account, user_account,
    AccessTokenCredentials,
};
use google_cloud_auth::errors::CredentialsError;
use serde_json::Value;

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
///
/// Must be called inside the Tokio runtime that will use the authenticator: the official
/// crate's token cache runs as a task on it.
pub async fn authenticator(
    source: &CredentialSource,
    endpoint_overridden: bool,
) -> Result<Option<Arc<dyn Authenticator>>, Error> {
    if let Some(path) = &source.file {
        let doc =
            std::fs::read(path).map_err(|e| auth_error(format!("{}: {e}", path.display())))?;
        return from_document(&doc, &path.display().to_string()).map(Some);
    }
    if let Some(json) = &source.json {
        return from_document(json.as_bytes(), "FIREHOSE_REPLAY_GCP_CREDENTIALS_JSON").map(Some);
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
        return from_document(&doc, &path.display().to_string()).map(Some);
    }
    if endpoint_overridden {
        tracing::info!("BigQuery endpoint overridden and no credentials configured: sending requests unauthenticated");
        return Ok(None);
    }
    let credentials = gauth::Builder::default()
        .with_scopes([SCOPE])
        .build_access_token_credentials()
        .map_err(|e| {
            auth_error(format!(
                "no credentials configured and application default credentials failed: {}",
                error_chain(&e)
            ))
        })?;
    Ok(Some(Arc::new(Official(credentials))))
}

fn from_document(doc: &[u8], origin: &str) -> Result<Arc<dyn Authenticator>, Error> {
    let doc: Value = serde_json::from_slice(doc)
        .map_err(|e| auth_error(format!("{origin} is not a credentials JSON document: {e}")))?;
    let kind = doc.get("type").and_then(Value::as_str).unwrap_or_default();
    let built = match kind {
        "service_account" => service_account::Builder::new(doc.clone())
            .with_access_specifier(service_account::AccessSpecifier::from_scopes([SCOPE]))
            .build_access_token_credentials(),
        "authorized_user" => user_account::Builder::new(doc.clone())
            .with_scopes([SCOPE])
            .build_access_token_credentials(),
        "impersonated_service_account" => impersonated::Builder::new(doc.clone())
            .with_scopes([SCOPE])
            .build_access_token_credentials(),
        "external_account" => {
            external_account::Builder::new(prepare_external_account(doc.clone(), &ProcessEnv))
                .with_scopes([SCOPE])
                .build_access_token_credentials()
        }
        other => {
            return Err(auth_error(format!(
                "{origin}: unsupported credentials type `{other}` (expected service_account, \
                 authorized_user, impersonated_service_account or external_account)"
            )))
        }
    };
    // The builders' messages name fields, never their values.
    let credentials = built.map_err(|e| auth_error(format!("{origin}: {}", error_chain(&e))))?;
    Ok(Arc::new(Official(credentials)))
}

/// What [`prepare_external_account`] needs to know about the process environment.
pub trait Env {
    fn has(&self, name: &str) -> bool;
}

/// The real process environment (a set, non-empty variable counts).
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn has(&self, name: &str) -> bool {
        std::env::var_os(name).is_some_and(|v| !v.is_empty())
    }
}

/// An AWS `external_account` whose region and credentials all come from the environment needs
/// no metadata server, so its IMDSv2 session token URL is dropped: the official crate would
/// otherwise request a session token first, and fail where there is no metadata server
/// (Lambda). Anything else is passed through untouched.
pub fn prepare_external_account(mut doc: Value, env: &dyn Env) -> Value {
    let env_has_everything = (env.has("AWS_REGION") || env.has("AWS_DEFAULT_REGION"))
        && env.has("AWS_ACCESS_KEY_ID")
        && env.has("AWS_SECRET_ACCESS_KEY");
    if !env_has_everything {
        return doc;
    }
    if let Some(source) = doc
        .get_mut("credential_source")
        .and_then(Value::as_object_mut)
    {
        let aws = source
            .get("environment_id")
            .and_then(Value::as_str)
            .is_some_and(|id| id.starts_with("aws"));
        if aws && source.remove("imdsv2_session_token_url").is_some() {
            tracing::debug!(
                "AWS region and credentials are in the environment: no IMDSv2 session token needed"
            );
        }
    }
    doc
}

/// The message of an error and all its sources (the official crate's `Display` names only the
/// outermost step, e.g. "failed to fetch token", and keeps the HTTP answer in a source).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        source = e.source();
    }
    out
}

/// `google-cloud-auth` credentials as `gcp-bigquery-client`'s `Authenticator`, so the REST and
/// Storage Write callers stay as they are. The crate caches and refreshes the token itself.
#[derive(Clone)]
pub struct Official(pub AccessTokenCredentials);

#[async_trait]
impl Authenticator for Official {
    async fn access_token(&self) -> Result<String, BQError> {
        self.0
            .access_token()
            .await
            .map(|t| t.token)
            .map_err(bq_error)
    }
}

/// `BQError` has no variant for foreign authenticators. `api_error::token_error` classifies
/// yup-oauth2's OAuth error as permanent and everything else as transient, so the official
/// crate's own verdict (`is_transient`) is carried in the variant chosen.
fn bq_error(e: CredentialsError) -> BQError {
    let msg = error_chain(&e);
    if e.is_transient() {
        BQError::YupAuthError(yup_oauth2::Error::LowLevelError(std::io::Error::other(msg)))
    } else {
        BQError::AuthError(yup_oauth2::error::AuthError {
            error: yup_oauth2::error::AuthErrorCode::Other(msg),
            error_description: None,
            error_uri: None,
        })
    }
}

#[cfg(test)]
mod tests;
