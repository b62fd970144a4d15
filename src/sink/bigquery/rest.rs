//! The REST client that load jobs, table lookups and `--dedup merge` share: base URL, HTTP
//! client, bearer token, and requests retried per the policy.
//!
//! (insertAll keeps its own [`Endpoint`](super::insert_all::insert::Endpoint): its token and
//! retry semantics differ, see [`super::retry`].)

use std::future::Future;
use std::sync::Arc;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC};

use super::api_error::{self, token_error, Fail, Reply};
use super::retry::{self, RetryPolicy};
use crate::error::Error;

/// Path segments: everything but unreserved characters is escaped, so a project like
/// `example.com:proj` stays one segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.');

/// `s` as one URL path segment (or query value).
pub(crate) fn segment(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// One BigQuery REST API root and how to talk to it.
#[derive(Clone)]
pub(crate) struct Rest {
    pub(crate) http: reqwest::Client,
    /// Without a trailing slash or `/bigquery/v2`.
    pub(crate) base: String,
    /// `None` sends no `Authorization` header (emulators).
    pub(crate) auth: Option<Arc<dyn gcp_bigquery_client::auth::Authenticator>>,
    pub(crate) policy: RetryPolicy,
}

impl Rest {
    /// Adds the bearer token, when there is an authenticator. The token goes into the header
    /// only; nothing here logs requests or their headers.
    pub(crate) async fn authorized(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::RequestBuilder, Fail> {
        match &self.auth {
            Some(a) => {
                let token = a
                    .access_token()
                    .await
                    .map_err(|e| Fail::from_error(token_error(e)))?;
                Ok(req.bearer_auth(token))
            }
            None => Ok(req),
        }
    }

    /// Authorizes, sends and reads the whole answer.
    pub(crate) async fn call(&self, req: reqwest::RequestBuilder) -> Result<Reply, Fail> {
        api_error::send(self.authorized(req).await?).await
    }

    /// [`retry::with_retries`] with this client's policy.
    pub(crate) async fn with_retries<T, Fut>(
        &self,
        what: &str,
        op: impl FnMut() -> Fut,
    ) -> Result<T, Error>
    where
        Fut: Future<Output = Result<T, Fail>>,
    {
        retry::with_retries(&self.policy, what, op).await
    }
}
