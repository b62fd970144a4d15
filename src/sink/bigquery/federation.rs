//! Google Cloud workload identity federation from AWS, as a `gcp-bigquery-client` authenticator.
//!
//! A Lambda (or any AWS workload) proves who it is to Google without a long-lived key: it signs an
//! AWS STS `GetCallerIdentity` request with its own AWS credentials (SigV4) but does not send it;
//! the serialized signed request is the *subject token* that Google's Security Token Service
//! exchanges for a federated access token (Google replays it against AWS to learn the caller's
//! ARN). Optionally that token is then exchanged for a service account's access token through the
//! IAM Credentials `generateAccessToken` API ("service account impersonation").
//!
//! The credential configuration file is the `external_account` JSON that
//! `gcloud iam workload-identity-pools create-cred-config ... --aws` writes. The behaviour follows
//! Google's AIP-4117 and its reference implementations (google-auth-library-python
//! `google/auth/aws.py` + `external_account.py`, golang.org/x/oauth2 `google/externalaccount/aws.go`):
//!
//! * region: `AWS_REGION`, else `AWS_DEFAULT_REGION`, else the availability zone served at
//!   `credential_source.region_url` minus its last letter (with an IMDSv2 session token from
//!   `imdsv2_session_token_url` when the file has one);
//! * subject token: `POST` to `regional_cred_verification_url` with `{region}` substituted,
//!   headers `host`, `x-amz-date`, `x-goog-cloud-target-resource` (= `audience`) and, for
//!   temporary credentials, `x-amz-security-token`, all of them signed (SigV4, service `sts`);
//!   serialized as `{"url","method","headers":[{"key","value"},...]}` and URL-encoded;
//! * exchange: RFC 8693 token exchange at `token_url`, then impersonation when
//!   `service_account_impersonation_url` is set.
//!
//! Unlike Google's libraries, AWS credentials come from the AWS SDK's default provider chain
//! (environment — which is what Lambda provides, session token included — then profile files,
//! web identity, ECS/EKS container credentials and EC2 IMDS) rather than from the file's `url`.
//!
//! The file decides where the signed AWS request is sent (`token_url`): like any credential
//! configuration, only use files from a trusted source.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings};
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::error::BQError;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

/// `subject_token_type` of AWS credential configurations.
pub const AWS_SUBJECT_TOKEN_TYPE: &str = "urn:ietf:params:aws:token-type:aws4_request";
/// Scope requested from Google STS (federated tokens carry `cloud-platform`).
pub const CLOUD_PLATFORM_SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
/// Default scope of the impersonated service account's token.
pub const BIGQUERY_SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

const TOKEN_EXCHANGE_GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// A token is replaced this long before it expires.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// Lifetime asked of `generateAccessToken` unless the file says otherwise.
const DEFAULT_IMPERSONATION_LIFETIME_SECS: u64 = 3600;
/// Assumed lifetime of an STS token whose response has no `expires_in` (Google's is one hour).
const DEFAULT_STS_LIFETIME_SECS: u64 = 3600;
/// IMDSv2 session token lifetime requested for the region lookup, as Google's libraries do.
const IMDS_SESSION_TTL_SECS: &str = "300";
/// Error bodies quoted in messages are cut to this many characters.
const MAX_QUOTED_BODY: usize = 512;

/// RFC 3986 unreserved characters stay as they are; everything else is percent-encoded.
const SUBJECT_TOKEN_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Wall clock used for SigV4 signing times and token expiry. Injectable for tests.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

// ---------------------------------------------------------------------------------------------
// Configuration file
// ---------------------------------------------------------------------------------------------

/// Google's `external_account` credential configuration, restricted to AWS credential sources.
///
/// Fields Google's libraries accept but this authenticator does not use (`quota_project_id`,
/// `client_id`/`client_secret`, `workforce_pool_user_project`, `token_info_url`, ...) are
/// ignored when present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalAccountConfig {
    /// Always `external_account`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Full resource name of the workload identity pool provider,
    /// `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/V`.
    pub audience: String,
    /// `urn:ietf:params:aws:token-type:aws4_request`.
    pub subject_token_type: String,
    /// Google STS token endpoint, normally `https://sts.googleapis.com/v1/token`.
    pub token_url: String,
    /// IAM Credentials `generateAccessToken` URL of the service account to impersonate, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_impersonation_url: Option<String>,
    /// `--service-account-token-lifetime-seconds` of `create-cred-config`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_impersonation: Option<ServiceAccountImpersonation>,
    /// Where and how to obtain the AWS identity.
    pub credential_source: AwsCredentialSource,
    /// Written by recent gcloud releases (`googleapis.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub universe_domain: Option<String>,
}

/// `service_account_impersonation` options of the configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceAccountImpersonation {
    /// Lifetime requested for the impersonated token (600–43200; over 3600 needs an org policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_lifetime_seconds: Option<u64>,
}

/// The AWS `credential_source` of an `external_account` configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AwsCredentialSource {
    /// `aws1` — the only version Google defines.
    pub environment_id: String,
    /// EC2 metadata URL serving the availability zone (used only when no region env var is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region_url: Option<String>,
    /// EC2 metadata security-credentials URL. Not used here: the AWS SDK's default provider
    /// chain (which includes IMDS) supplies the credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// GetCallerIdentity URL template, `https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15`.
    pub regional_cred_verification_url: String,
    /// IMDSv2 session token URL, present when the file was created with `--enable-imdsv2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub imdsv2_session_token_url: Option<String>,
}

impl ExternalAccountConfig {
    /// Checks what Google's libraries check before using an AWS configuration.
    pub fn validate(&self) -> Result<(), FederationError> {
        if self.kind != "external_account" {
            return Err(FederationError::Config(format!(
                "`type` is `{}`, expected `external_account`",
                self.kind
            )));
        }
        if self.audience.trim().is_empty() {
            return Err(FederationError::Config("`audience` is empty".into()));
        }
        if self.subject_token_type != AWS_SUBJECT_TOKEN_TYPE {
            return Err(FederationError::Config(format!(
                "`subject_token_type` is `{}`, expected `{AWS_SUBJECT_TOKEN_TYPE}` for an AWS \
                 credential source",
                self.subject_token_type
            )));
        }
        check_url("token_url", &self.token_url)?;
        if let Some(url) = &self.service_account_impersonation_url {
            check_url("service_account_impersonation_url", url)?;
        }
        let cs = &self.credential_source;
        match cs.environment_id.strip_prefix("aws") {
            Some("1") => {}
            Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(FederationError::Config(format!(
                    "aws version `{v}` (credential_source.environment_id `{}`) is not supported; \
                     only `aws1` is",
                    cs.environment_id
                )))
            }
            _ => {
                return Err(FederationError::Config(format!(
                    "credential_source.environment_id is `{}`, expected `aws1`",
                    cs.environment_id
                )))
            }
        }
        let template = &cs.regional_cred_verification_url;
        let sample =
            reqwest::Url::parse(&template.replace("{region}", "us-east-1")).map_err(|e| {
                FederationError::Config(format!(
                "credential_source.regional_cred_verification_url `{template}` is not a URL: {e}"
            ))
            })?;
        if sample.scheme() != "https" || sample.host_str().is_none() {
            return Err(FederationError::Config(format!(
                "credential_source.regional_cred_verification_url `{template}` must be an https \
                 URL with a host"
            )));
        }
        for (field, url) in [
            ("region_url", &cs.region_url),
            ("imdsv2_session_token_url", &cs.imdsv2_session_token_url),
        ] {
            if let Some(url) = url {
                check_url(&format!("credential_source.{field}"), url)?;
            }
        }
        Ok(())
    }

    fn impersonation_lifetime_secs(&self) -> u64 {
        self.service_account_impersonation
            .as_ref()
            .and_then(|i| i.token_lifetime_seconds)
            .unwrap_or(DEFAULT_IMPERSONATION_LIFETIME_SECS)
    }
}

fn check_url(field: &str, url: &str) -> Result<(), FederationError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| FederationError::Config(format!("`{field}` `{url}` is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "https" | "http") || parsed.host_str().is_none() {
        return Err(FederationError::Config(format!(
            "`{field}` `{url}` must be an http(s) URL with a host"
        )));
    }
    Ok(())
}

/// Parses and validates an `external_account` credential configuration with an AWS credential
/// source. Anything else — service account keys, file-, URL- or executable-sourced (OIDC/SAML)
/// external accounts, X.509 sources — is rejected with a message saying what was found.
pub fn load_external_account(json: &[u8]) -> Result<ExternalAccountConfig, FederationError> {
    let value: serde_json::Value = serde_json::from_slice(json).map_err(|e| {
        FederationError::Config(format!("credential configuration is not valid JSON: {e}"))
    })?;
    let Some(object) = value.as_object() else {
        return Err(FederationError::Config(
            "credential configuration is not a JSON object".into(),
        ));
    };
    match object.get("type").and_then(|t| t.as_str()) {
        Some("external_account") => {}
        Some(other) => {
            return Err(FederationError::Config(format!(
                "`type` is `{other}`, expected `external_account` (this file is not a workload \
                 identity federation configuration; service account keys and user credentials \
                 have their own gcp-bigquery-client authenticators)"
            )))
        }
        None => {
            return Err(FederationError::Config(
                "`type` is missing, expected `external_account`".into(),
            ))
        }
    }
    let Some(source) = object.get("credential_source").and_then(|s| s.as_object()) else {
        return Err(FederationError::Config(
            "`credential_source` is missing (or not an object)".into(),
        ));
    };
    if !source.contains_key("environment_id") {
        let kind = if source.contains_key("executable") {
            "an executable-sourced"
        } else if source.contains_key("file") {
            "a file-sourced"
        } else if source.contains_key("url") {
            "a URL-sourced"
        } else if source.contains_key("certificate") {
            "an X.509 certificate"
        } else {
            "an unrecognised"
        };
        return Err(FederationError::UnsupportedSource(format!(
            "{kind} credential_source (OIDC/SAML or other non-AWS federation) was found; only AWS \
             credential sources (`environment_id: \"aws1\"`, as written by `gcloud iam \
             workload-identity-pools create-cred-config --aws`) are supported — file-, URL- and \
             executable-sourced configurations are out of scope"
        )));
    }
    let config: ExternalAccountConfig = serde_json::from_value(value)
        .map_err(|e| FederationError::Config(format!("AWS external_account configuration: {e}")))?;
    config.validate()?;
    Ok(config)
}

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Why a Google access token could not be obtained. No variant carries a secret or a token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederationError {
    #[error("invalid external_account credential configuration: {0}")]
    Config(String),
    #[error("unsupported credential configuration: {0}")]
    UnsupportedSource(String),
    #[error("cannot read credential configuration {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot load AWS credentials for workload identity federation: {0}")]
    AwsCredentials(String),
    #[error("cannot determine the AWS region: {0}")]
    Region(String),
    #[error("cannot sign the AWS GetCallerIdentity request: {0}")]
    Signing(String),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
    #[error("HTTP request to {url} failed: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "Google STS token exchange at {url} failed (HTTP {status}): {error}{}",
        description.as_deref().map(|d| format!(": {d}")).unwrap_or_default()
    )]
    Sts {
        url: String,
        status: u16,
        /// OAuth error code (`invalid_grant`, ...), or the raw body when it was not OAuth JSON.
        error: String,
        /// Google's `error_description`.
        description: Option<String>,
    },
    #[error("service account impersonation at {url} failed (HTTP {status}): {message}")]
    Impersonation {
        url: String,
        status: u16,
        message: String,
    },
    #[error("unexpected response from {url}: {detail}")]
    BadResponse { url: String, detail: String },
}

impl FederationError {
    /// The federation error inside a [`BQError`] produced by [`AwsFederatedAuthenticator`].
    pub fn from_bq_error(error: &BQError) -> Option<&FederationError> {
        match error {
            BQError::YupAuthError(gcp_bigquery_client::yup_oauth2::Error::LowLevelError(io)) => {
                io.get_ref()?.downcast_ref::<FederationError>()
            }
            _ => None,
        }
    }
}

/// `BQError` has no variant for foreign authenticators; the closest is yup-oauth2's
/// authentication error. The typed error stays reachable through
/// [`FederationError::from_bq_error`] (or `std::io::Error::get_ref`).
impl From<FederationError> for BQError {
    fn from(error: FederationError) -> Self {
        BQError::YupAuthError(gcp_bigquery_client::yup_oauth2::Error::LowLevelError(
            std::io::Error::other(error),
        ))
    }
}

fn quote_body(body: &str) -> String {
    let body = body.trim();
    match body.char_indices().nth(MAX_QUOTED_BODY) {
        Some((cut, _)) => format!("{}…", &body[..cut]),
        None => body.to_string(),
    }
}

/// The message of an error and all its sources, for errors whose `Display` is terse.
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

// ---------------------------------------------------------------------------------------------
// Subject token: the signed GetCallerIdentity request
// ---------------------------------------------------------------------------------------------

/// A request header in the serialized form Google STS expects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHeader {
    pub key: String,
    pub value: String,
}

/// The signed GetCallerIdentity request, before URL-encoding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedCallerIdentityRequest {
    pub url: String,
    pub method: String,
    pub headers: Vec<SignedHeader>,
}

impl SignedCallerIdentityRequest {
    /// The subject token: the request as compact JSON, URL-encoded.
    pub fn to_subject_token(&self) -> String {
        let json = serde_json::to_string(self).expect("strings always serialize");
        utf8_percent_encode(&json, SUBJECT_TOKEN_ENCODE_SET).to_string()
    }
}

/// Signs `POST {url}` (the regional GetCallerIdentity URL) for Google STS, as of `time`.
///
/// Signed headers: `host`, `x-amz-date`, `x-amz-security-token` (temporary credentials only) and
/// `x-goog-cloud-target-resource` = `audience`; the body is empty. Header keys are lower case
/// except `Authorization`, sorted, as google-auth-library-python serializes them.
pub fn sign_caller_identity_request(
    url: &str,
    audience: &str,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
) -> Result<SignedCallerIdentityRequest, FederationError> {
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| FederationError::Signing(format!("`{url}` is not a URL: {e}")))?;
    let host = match (parsed.host_str(), parsed.port()) {
        (Some(h), Some(port)) => format!("{h}:{port}"),
        (Some(h), None) => h.to_string(),
        (None, _) => return Err(FederationError::Signing(format!("`{url}` has no host"))),
    };
    let identity = credentials.clone().into();
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("sts")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| FederationError::Signing(e.to_string()))?
        .into();
    let unsigned = [
        ("host", host.as_str()),
        ("x-goog-cloud-target-resource", audience),
    ];
    // `Url` normalises the empty path to `/`, the canonical URI SigV4 uses for it anyway; the
    // subject token keeps the URL exactly as configured.
    let signable = SignableRequest::new(
        "POST",
        parsed.as_str(),
        unsigned.iter().copied(),
        SignableBody::Bytes(&[]),
    )
    .map_err(|e| FederationError::Signing(error_chain(&e)))?;
    let (instructions, _signature) = aws_sigv4::http_request::sign(signable, &params)
        .map_err(|e| FederationError::Signing(error_chain(&e)))?
        .into_parts();
    let mut headers: Vec<SignedHeader> = unsigned
        .iter()
        .map(|(k, v)| SignedHeader {
            key: (*k).to_string(),
            value: (*v).to_string(),
        })
        .collect();
    for (name, value) in instructions.headers() {
        let key = if name.eq_ignore_ascii_case("authorization") {
            "Authorization".to_string()
        } else {
            name.to_ascii_lowercase()
        };
        headers.push(SignedHeader {
            key,
            value: value.to_string(),
        });
    }
    headers.sort_by(|a, b| a.key.cmp(&b.key).then_with(|| a.value.cmp(&b.value)));
    Ok(SignedCallerIdentityRequest {
        url: url.to_string(),
        method: "POST".to_string(),
        headers,
    })
}

// ---------------------------------------------------------------------------------------------
// The authenticator
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum RegionSource {
    Fixed(String),
    /// `credential_source.region_url` (environment variables were checked at construction).
    Metadata,
}

struct CachedToken {
    token: String,
    expires_at: SystemTime,
}

struct Inner {
    config: ExternalAccountConfig,
    credentials: SharedCredentialsProvider,
    region_source: RegionSource,
    region: tokio::sync::OnceCell<String>,
    scopes: Vec<String>,
    http: reqwest::Client,
    clock: Clock,
    /// Held across a refresh, so concurrent callers wait for one refresh instead of each doing one.
    cache: tokio::sync::Mutex<Option<CachedToken>>,
}

/// A `gcp_bigquery_client` [`Authenticator`] that obtains Google access tokens through workload
/// identity federation from AWS, caching each token until 5 minutes before it expires.
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use firehose_replay::sink::bigquery::federation::AwsFederatedAuthenticator;
/// let auth = AwsFederatedAuthenticator::from_file("/var/task/gcp-wif.json").await?;
/// let client = gcp_bigquery_client::client_builder::ClientBuilder::new()
///     .build_from_authenticator(auth.into_authenticator())
///     .await?;
/// # let _ = client; Ok(()) }
/// ```
#[derive(Clone)]
pub struct AwsFederatedAuthenticator {
    inner: Arc<Inner>,
}

impl fmt::Debug for AwsFederatedAuthenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsFederatedAuthenticator")
            .field("audience", &self.inner.config.audience)
            .field("token_url", &self.inner.config.token_url)
            .field(
                "service_account_impersonation_url",
                &self.inner.config.service_account_impersonation_url,
            )
            .field("region", &self.inner.region_source)
            .field("scopes", &self.inner.scopes)
            .finish_non_exhaustive()
    }
}

/// `AWS_REGION`, else `AWS_DEFAULT_REGION` (empty values ignored), as Google's libraries read them.
fn region_from_env() -> Option<String> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .filter_map(|v| std::env::var(v).ok())
        .map(|v| v.trim().to_string())
        .find(|v| !v.is_empty())
}

fn default_http_client() -> Result<reqwest::Client, FederationError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(FederationError::HttpClient)
}

impl AwsFederatedAuthenticator {
    /// AWS credentials from the AWS SDK's default provider chain; region from `AWS_REGION` /
    /// `AWS_DEFAULT_REGION`, else from `credential_source.region_url` at the first token request.
    pub async fn new(config: ExternalAccountConfig) -> Result<Self, FederationError> {
        let chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
            .build()
            .await;
        let region = match region_from_env() {
            Some(r) => RegionSource::Fixed(r),
            None => RegionSource::Metadata,
        };
        Self::build(config, SharedCredentialsProvider::new(chain), region)
    }

    /// [`load_external_account`] on the file at `path`, then [`AwsFederatedAuthenticator::new`].
    pub async fn from_file(path: impl AsRef<Path>) -> Result<Self, FederationError> {
        let path = path.as_ref();
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|source| FederationError::ReadConfig {
                path: path.to_path_buf(),
                source,
            })?;
        Self::new(load_external_account(&bytes)?).await
    }

    /// Explicit AWS credentials and region (no environment or metadata lookups).
    pub fn with_credentials_provider(
        config: ExternalAccountConfig,
        credentials: SharedCredentialsProvider,
        region: impl Into<String>,
    ) -> Result<Self, FederationError> {
        let region = region.into();
        if region.trim().is_empty() {
            return Err(FederationError::Region("the given region is empty".into()));
        }
        Self::build(config, credentials, RegionSource::Fixed(region))
    }

    fn build(
        config: ExternalAccountConfig,
        credentials: SharedCredentialsProvider,
        region_source: RegionSource,
    ) -> Result<Self, FederationError> {
        config.validate()?;
        Ok(AwsFederatedAuthenticator {
            inner: Arc::new(Inner {
                config,
                credentials,
                region_source,
                region: tokio::sync::OnceCell::new(),
                scopes: vec![BIGQUERY_SCOPE.to_string()],
                http: default_http_client()?,
                clock: Arc::new(SystemTime::now),
                cache: tokio::sync::Mutex::new(None),
            }),
        })
    }

    fn map_inner(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            config: shared.config.clone(),
            credentials: shared.credentials.clone(),
            region_source: shared.region_source.clone(),
            region: tokio::sync::OnceCell::new(),
            scopes: shared.scopes.clone(),
            http: shared.http.clone(),
            clock: shared.clock.clone(),
            cache: tokio::sync::Mutex::new(None),
        });
        f(&mut inner);
        AwsFederatedAuthenticator {
            inner: Arc::new(inner),
        }
    }

    /// Scopes of the impersonated service account's token (default: BigQuery). Without
    /// impersonation the federated token always has `cloud-platform`.
    pub fn with_scopes<I, S>(self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let scopes: Vec<String> = scopes.into_iter().map(Into::into).collect();
        self.map_inner(|inner| inner.scopes = scopes)
    }

    /// Replaces the clock used for SigV4 signing times and token expiry (tests).
    pub fn with_clock(self, clock: Clock) -> Self {
        self.map_inner(|inner| inner.clock = clock)
    }

    /// Replaces the HTTP client (proxies, timeouts).
    pub fn with_http_client(self, http: reqwest::Client) -> Self {
        self.map_inner(|inner| inner.http = http)
    }

    /// For `ClientBuilder::build_from_authenticator`.
    pub fn into_authenticator(self) -> Arc<dyn Authenticator> {
        Arc::new(self)
    }

    /// The configuration in use.
    pub fn config(&self) -> &ExternalAccountConfig {
        &self.inner.config
    }

    /// A valid access token: the cached one unless it expires within [`REFRESH_MARGIN`].
    pub async fn token(&self) -> Result<String, FederationError> {
        let inner = &self.inner;
        let mut cache = inner.cache.lock().await;
        let now = (inner.clock)();
        if let Some(cached) = cache.as_ref() {
            if now + REFRESH_MARGIN < cached.expires_at {
                return Ok(cached.token.clone());
            }
        }
        match inner.fetch(now).await {
            Ok(fresh) => {
                let token = fresh.token.clone();
                *cache = Some(fresh);
                Ok(token)
            }
            Err(error) => match cache.as_ref() {
                // Refreshing early failed but the old token still works: use it, try again
                // on the next call.
                Some(cached) if now < cached.expires_at => {
                    tracing::warn!(%error, "refreshing the Google access token failed; using the cached one until it expires");
                    Ok(cached.token.clone())
                }
                _ => Err(error),
            },
        }
    }
}

#[async_trait]
impl Authenticator for AwsFederatedAuthenticator {
    async fn access_token(&self) -> Result<String, BQError> {
        self.token().await.map_err(BQError::from)
    }
}

#[derive(Deserialize)]
struct StsResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Deserialize)]
struct OAuthErrorBody {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateAccessTokenResponse {
    access_token: String,
    expire_time: String,
}

#[derive(Deserialize)]
struct GoogleApiErrorBody {
    error: GoogleApiError,
}

#[derive(Deserialize)]
struct GoogleApiError {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    status: Option<String>,
}

impl Inner {
    async fn fetch(&self, now: SystemTime) -> Result<CachedToken, FederationError> {
        let region = self.region().await?;
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| FederationError::AwsCredentials(error_chain(&e)))?;
        let url = self
            .config
            .credential_source
            .regional_cred_verification_url
            .replace("{region}", &region);
        let subject_token =
            sign_caller_identity_request(&url, &self.config.audience, &credentials, &region, now)?
                .to_subject_token();
        let sts = self.exchange(&subject_token, now).await?;
        let token = match &self.config.service_account_impersonation_url {
            Some(url) => self.impersonate(url, &sts.token).await?,
            None => sts,
        };
        tracing::debug!(
            audience = %self.config.audience,
            region = %region,
            impersonated = self.config.service_account_impersonation_url.is_some(),
            expires_at = %chrono::DateTime::<chrono::Utc>::from(token.expires_at).to_rfc3339(),
            "obtained a Google access token through workload identity federation"
        );
        Ok(token)
    }

    async fn region(&self) -> Result<String, FederationError> {
        match &self.region_source {
            RegionSource::Fixed(region) => Ok(region.clone()),
            RegionSource::Metadata => self
                .region
                .get_or_try_init(|| self.region_from_metadata())
                .await
                .cloned(),
        }
    }

    async fn region_from_metadata(&self) -> Result<String, FederationError> {
        let source = &self.config.credential_source;
        let Some(region_url) = source.region_url.as_deref() else {
            return Err(FederationError::Region(
                "AWS_REGION and AWS_DEFAULT_REGION are unset and the credential configuration has \
                 no credential_source.region_url"
                    .into(),
            ));
        };
        let session_token = match source.imdsv2_session_token_url.as_deref() {
            Some(url) => {
                let request = self.http.put(url).header(
                    "X-aws-ec2-metadata-token-ttl-seconds",
                    IMDS_SESSION_TTL_SECS,
                );
                let (status, body) = send(url, request).await?;
                if status != 200 {
                    return Err(FederationError::Region(format!(
                        "IMDSv2 session token request to {url} answered HTTP {status}: {}",
                        quote_body(&body)
                    )));
                }
                Some(body)
            }
            None => None,
        };
        let mut request = self.http.get(region_url);
        if let Some(token) = &session_token {
            request = request.header("X-aws-ec2-metadata-token", token.trim());
        }
        let (status, body) = send(region_url, request).await?;
        if status != 200 {
            return Err(FederationError::Region(format!(
                "{region_url} answered HTTP {status}: {}",
                quote_body(&body)
            )));
        }
        // An availability zone (`us-east-2b`): the region is all but the last letter.
        let zone = body.trim();
        let mut chars = zone.chars();
        match chars.next_back() {
            Some(last) if last.is_ascii_alphabetic() && !chars.as_str().is_empty() => {
                Ok(chars.as_str().to_string())
            }
            _ => Err(FederationError::Region(format!(
                "{region_url} answered `{}`, not an availability zone",
                quote_body(zone)
            ))),
        }
    }

    async fn exchange(
        &self,
        subject_token: &str,
        now: SystemTime,
    ) -> Result<CachedToken, FederationError> {
        let url = &self.config.token_url;
        let form = [
            ("grant_type", TOKEN_EXCHANGE_GRANT_TYPE),
            ("audience", self.config.audience.as_str()),
            ("scope", CLOUD_PLATFORM_SCOPE),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            (
                "subject_token_type",
                self.config.subject_token_type.as_str(),
            ),
            ("subject_token", subject_token),
        ];
        let (status, body) = send(url, self.http.post(url).form(&form)).await?;
        if !(200..300).contains(&status) {
            let (error, description) = match serde_json::from_str::<OAuthErrorBody>(&body) {
                Ok(e) => (e.error, e.error_description),
                Err(_) => (quote_body(&body), None),
            };
            return Err(FederationError::Sts {
                url: url.clone(),
                status,
                error,
                description,
            });
        }
        let response: StsResponse =
            serde_json::from_str(&body).map_err(|e| FederationError::BadResponse {
                url: url.clone(),
                detail: format!("not a token exchange response: {e}"),
            })?;
        let lifetime = response.expires_in.unwrap_or(DEFAULT_STS_LIFETIME_SECS);
        Ok(CachedToken {
            token: response.access_token,
            expires_at: now + Duration::from_secs(lifetime),
        })
    }

    async fn impersonate(
        &self,
        url: &str,
        federated_token: &str,
    ) -> Result<CachedToken, FederationError> {
        let body = serde_json::json!({
            "scope": self.scopes,
            "lifetime": format!("{}s", self.config.impersonation_lifetime_secs()),
        });
        let request = self.http.post(url).bearer_auth(federated_token).json(&body);
        let (status, body) = send(url, request).await?;
        if !(200..300).contains(&status) {
            let message = match serde_json::from_str::<GoogleApiErrorBody>(&body) {
                Ok(GoogleApiErrorBody { error }) => match (error.status, error.message) {
                    (Some(s), Some(m)) => format!("{s}: {m}"),
                    (None, Some(m)) => m,
                    (Some(s), None) => s,
                    (None, None) => quote_body(&body),
                },
                Err(_) => quote_body(&body),
            };
            return Err(FederationError::Impersonation {
                url: url.to_string(),
                status,
                message,
            });
        }
        let response: GenerateAccessTokenResponse =
            serde_json::from_str(&body).map_err(|e| FederationError::BadResponse {
                url: url.to_string(),
                detail: format!("not a generateAccessToken response: {e}"),
            })?;
        let expires_at =
            chrono::DateTime::parse_from_rfc3339(&response.expire_time).map_err(|e| {
                FederationError::BadResponse {
                    url: url.to_string(),
                    detail: format!("expireTime `{}`: {e}", response.expire_time),
                }
            })?;
        Ok(CachedToken {
            token: response.access_token,
            expires_at: expires_at.with_timezone(&chrono::Utc).into(),
        })
    }
}

/// Sends `request`, returning the status and the body as text.
async fn send(
    url: &str,
    request: reqwest::RequestBuilder,
) -> Result<(u16, String), FederationError> {
    let http_error = |source: reqwest::Error| FederationError::Http {
        url: url.to_string(),
        source: source.without_url(),
    };
    let response = request.send().await.map_err(http_error)?;
    let status = response.status().as_u16();
    let body = response.text().await.map_err(http_error)?;
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
    use std::sync::Mutex;
    use std::time::UNIX_EPOCH;

    const AUDIENCE: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/pool/providers/aws";
    const AKID: &str = "AKIDEXAMPLE";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const SESSION: &str = "FQoGZXIvYXdzEXAMPLE+session/token==";
    /// 2030-01-01T00:00:00Z
    const T0: u64 = 1_893_456_000;
    const VERIFY_URL_TEMPLATE: &str =
        "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15";
    const SA_PATH: &str = "/v1/projects/-/serviceAccounts/bq@example-project.iam.gserviceaccount.com:generateAccessToken";
    const TOKEN_PATH: &str = "/v1/token";
    const IMDS_TOKEN_PATH: &str = "/latest/api/token";
    const AZ_PATH: &str = "/latest/meta-data/placement/availability-zone";

    // ---- a local fake of Google STS, IAM Credentials and the EC2 metadata server ----

    #[derive(Debug, Clone)]
    struct Recorded {
        method: String,
        path: String,
        headers: Vec<(String, String)>,
        body: String,
    }

    impl Recorded {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }

        fn form(&self) -> Vec<(String, String)> {
            form_urlencoded::parse(self.body.as_bytes())
                .into_owned()
                .collect()
        }

        fn form_field(&self, name: &str) -> String {
            self.form()
                .into_iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("form field {name} missing in {:?}", self.body))
        }
    }

    struct FakeGoogle {
        server: Arc<tiny_http::Server>,
        base: String,
        requests: Arc<Mutex<Vec<Recorded>>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl FakeGoogle {
        fn start(respond: impl Fn(&Recorded) -> (u16, String) + Send + Sync + 'static) -> Self {
            let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
            let base = format!("http://{}", server.server_addr().to_ip().unwrap());
            let requests = Arc::new(Mutex::new(Vec::new()));
            let (srv, log) = (server.clone(), requests.clone());
            let respond = Arc::new(respond);
            let thread = std::thread::spawn(move || {
                for mut req in srv.incoming_requests() {
                    let mut body = String::new();
                    let _ = req.as_reader().read_to_string(&mut body);
                    let recorded = Recorded {
                        method: req.method().to_string(),
                        path: req.url().to_string(),
                        headers: req
                            .headers()
                            .iter()
                            .map(|h| (h.field.as_str().as_str().to_string(), h.value.to_string()))
                            .collect(),
                        body,
                    };
                    // Answer from a thread of its own so that slow answers overlap.
                    let respond = respond.clone();
                    let log = log.clone();
                    std::thread::spawn(move || {
                        let (status, text) = respond(&recorded);
                        log.lock().unwrap().push(recorded);
                        let header = tiny_http::Header::from_bytes(
                            &b"Content-Type"[..],
                            &b"application/json"[..],
                        )
                        .unwrap();
                        let _ = req.respond(
                            tiny_http::Response::from_string(text)
                                .with_status_code(status)
                                .with_header(header),
                        );
                    });
                }
            });
            FakeGoogle {
                server,
                base,
                requests,
                thread: Some(thread),
            }
        }

        fn requests(&self) -> Vec<Recorded> {
            self.requests.lock().unwrap().clone()
        }

        fn count(&self, path: &str) -> usize {
            self.requests().iter().filter(|r| r.path == path).count()
        }

        fn only(&self, path: &str) -> Vec<Recorded> {
            self.requests()
                .into_iter()
                .filter(|r| r.path == path)
                .collect()
        }
    }

    impl Drop for FakeGoogle {
        fn drop(&mut self) {
            self.server.unblock();
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn rfc3339(secs: u64) -> String {
        chrono::DateTime::<chrono::Utc>::from(UNIX_EPOCH + Duration::from_secs(secs))
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    /// Google's happy path: STS tokens `sts-token-N` (one hour), impersonated tokens `sa-token-N`
    /// expiring an hour after the test clock's now, and an IMDSv2 metadata server in eu-west-3b.
    fn happy_google(now: Arc<AtomicU64>, sts_delay: Duration) -> FakeGoogle {
        let sts = AtomicUsize::new(0);
        let sa = AtomicUsize::new(0);
        FakeGoogle::start(move |r| match (r.method.as_str(), r.path.as_str()) {
            ("POST", TOKEN_PATH) => {
                std::thread::sleep(sts_delay);
                let n = sts.fetch_add(1, Ordering::SeqCst) + 1;
                let body = serde_json::json!({
                    "access_token": format!("sts-token-{n}"),
                    "issued_token_type": ACCESS_TOKEN_TYPE,
                    "token_type": "Bearer",
                    "expires_in": 3600,
                });
                (200, body.to_string())
            }
            ("POST", SA_PATH) => {
                let n = sa.fetch_add(1, Ordering::SeqCst) + 1;
                let body = serde_json::json!({
                    "accessToken": format!("sa-token-{n}"),
                    "expireTime": rfc3339(now.load(Ordering::SeqCst) + 3600),
                });
                (200, body.to_string())
            }
            ("PUT", IMDS_TOKEN_PATH) => (200, "imds-session-token".into()),
            ("GET", AZ_PATH) => {
                if r.header("x-aws-ec2-metadata-token") == Some("imds-session-token") {
                    (200, "eu-west-3b".into())
                } else {
                    (401, String::new())
                }
            }
            _ => (404, r#"{"error":"not_found"}"#.into()),
        })
    }

    fn config_json(base: &str, impersonate: bool) -> serde_json::Value {
        let mut config = serde_json::json!({
            "type": "external_account",
            "audience": AUDIENCE,
            "subject_token_type": AWS_SUBJECT_TOKEN_TYPE,
            "token_url": format!("{base}{TOKEN_PATH}"),
            "credential_source": {
                "environment_id": "aws1",
                "region_url": format!("{base}{AZ_PATH}"),
                "url": format!("{base}/latest/meta-data/iam/security-credentials"),
                "regional_cred_verification_url": VERIFY_URL_TEMPLATE,
                "imdsv2_session_token_url": format!("{base}{IMDS_TOKEN_PATH}"),
            },
        });
        if impersonate {
            config["service_account_impersonation_url"] = format!("{base}{SA_PATH}").into();
        }
        config
    }

    fn config(base: &str, impersonate: bool) -> ExternalAccountConfig {
        load_external_account(config_json(base, impersonate).to_string().as_bytes()).unwrap()
    }

    fn credentials(session: Option<&str>) -> Credentials {
        Credentials::new(AKID, SECRET, session.map(str::to_string), None, "test")
    }

    fn clock_at(now: &Arc<AtomicU64>) -> Clock {
        let now = now.clone();
        Arc::new(move || UNIX_EPOCH + Duration::from_secs(now.load(Ordering::SeqCst)))
    }

    fn authenticator(
        base: &str,
        impersonate: bool,
        session: Option<&str>,
        now: &Arc<AtomicU64>,
    ) -> AwsFederatedAuthenticator {
        AwsFederatedAuthenticator::with_credentials_provider(
            config(base, impersonate),
            SharedCredentialsProvider::new(credentials(session)),
            "us-east-2",
        )
        .unwrap()
        .with_clock(clock_at(now))
        .with_http_client(reqwest::Client::builder().no_proxy().build().unwrap())
    }

    fn decode_subject_token(token: &str) -> SignedCallerIdentityRequest {
        let json = percent_encoding::percent_decode_str(token)
            .decode_utf8()
            .expect("subject token decodes to UTF-8");
        serde_json::from_str(&json).expect("subject token is the signed request as JSON")
    }

    fn header<'a>(req: &'a SignedCallerIdentityRequest, key: &str) -> Option<&'a str> {
        req.headers
            .iter()
            .find(|h| h.key == key)
            .map(|h| h.value.as_str())
    }

    struct Authorization {
        credential: String,
        signed_headers: String,
        signature: String,
    }

    fn parse_authorization(value: &str) -> Authorization {
        let rest = value
            .strip_prefix("AWS4-HMAC-SHA256 ")
            .unwrap_or_else(|| panic!("not a SigV4 Authorization header: {value}"));
        let mut parts = rest.split(", ");
        let mut field = |name: &str| {
            parts
                .next()
                .and_then(|p| p.strip_prefix(name))
                .and_then(|p| p.strip_prefix('='))
                .unwrap_or_else(|| panic!("{name} missing in {value}"))
                .to_string()
        };
        Authorization {
            credential: field("Credential"),
            signed_headers: field("SignedHeaders"),
            signature: field("Signature"),
        }
    }

    fn sha256_hex(data: &[u8]) -> String {
        hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
    }

    fn hmac(key: &[u8], data: &str) -> Vec<u8> {
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
        ring::hmac::sign(&key, data.as_bytes()).as_ref().to_vec()
    }

    /// Recomputes the SigV4 signature of the serialized request from scratch (the algorithm of
    /// AWS's documentation, as google-auth-library-python implements it) — independent of
    /// aws-sigv4 — and returns it.
    fn recompute_signature(req: &SignedCallerIdentityRequest, secret: &str) -> String {
        let auth = parse_authorization(header(req, "Authorization").expect("Authorization"));
        let scope: Vec<&str> = auth.credential.splitn(2, '/').collect();
        let scope = scope[1];
        let [date, region, service, terminator] =
            scope.split('/').collect::<Vec<_>>()[..].try_into().unwrap();
        assert_eq!(terminator, "aws4_request");
        let url = reqwest::Url::parse(&req.url).unwrap();
        let path = if url.path().is_empty() {
            "/"
        } else {
            url.path()
        };
        let mut query: Vec<&str> = url.query().unwrap_or("").split('&').collect();
        query.sort();
        let mut canonical_headers = String::new();
        for name in auth.signed_headers.split(';') {
            let value = req
                .headers
                .iter()
                .find(|h| h.key.eq_ignore_ascii_case(name))
                .unwrap_or_else(|| panic!("signed header {name} not in the request"))
                .value
                .trim();
            canonical_headers.push_str(&format!("{name}:{value}\n"));
        }
        let canonical_request = format!(
            "{}\n{path}\n{}\n{canonical_headers}\n{}\n{}",
            req.method,
            query.join("&"),
            auth.signed_headers,
            sha256_hex(b"")
        );
        let amz_date = header(req, "x-amz-date").expect("x-amz-date");
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            sha256_hex(canonical_request.as_bytes())
        );
        let mut key = hmac(format!("AWS4{secret}").as_bytes(), date);
        for part in [region, service, "aws4_request"] {
            key = hmac(&key, part);
        }
        hex::encode(hmac(&key, &string_to_sign))
    }

    fn assert_valid_subject_token(
        req: &SignedCallerIdentityRequest,
        region: &str,
        amz_date: &str,
        session: Option<&str>,
    ) {
        assert_eq!(
            req.url,
            format!(
                "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
            )
        );
        assert_eq!(req.method, "POST");
        assert_eq!(
            header(req, "host"),
            Some(format!("sts.{region}.amazonaws.com").as_str())
        );
        assert_eq!(header(req, "x-goog-cloud-target-resource"), Some(AUDIENCE));
        assert_eq!(header(req, "x-amz-date"), Some(amz_date));
        assert_eq!(header(req, "x-amz-security-token"), session);
        let auth = parse_authorization(header(req, "Authorization").unwrap());
        assert_eq!(
            auth.credential,
            format!("{AKID}/{}/{region}/sts/aws4_request", &amz_date[..8])
        );
        let expected_signed = match session {
            Some(_) => "host;x-amz-date;x-amz-security-token;x-goog-cloud-target-resource",
            None => "host;x-amz-date;x-goog-cloud-target-resource",
        };
        assert_eq!(auth.signed_headers, expected_signed);
        assert_eq!(auth.signature.len(), 64);
        assert!(auth
            .signature
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(
            auth.signature,
            recompute_signature(req, SECRET),
            "signature differs from an independent SigV4 computation"
        );
        let mut keys: Vec<&str> = req.headers.iter().map(|h| h.key.as_str()).collect();
        let sorted = {
            let mut k = keys.clone();
            k.sort();
            k
        };
        assert_eq!(keys, sorted, "headers are serialized sorted by key");
        keys.dedup();
        assert_eq!(keys.len(), req.headers.len(), "no duplicate headers");
    }

    // ---- configuration ----

    #[test]
    fn parses_the_config_gcloud_writes() {
        let bytes = include_bytes!("../../../tests/fixtures/gcp/external-account-aws.json");
        let config = load_external_account(bytes).unwrap();
        assert_eq!(config.kind, "external_account");
        assert_eq!(
            config.audience,
            "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/firehose-replay/providers/aws-lambda"
        );
        assert_eq!(config.subject_token_type, AWS_SUBJECT_TOKEN_TYPE);
        assert_eq!(config.token_url, "https://sts.googleapis.com/v1/token");
        assert_eq!(
            config.service_account_impersonation_url.as_deref(),
            Some("https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/bq-loader@example-project.iam.gserviceaccount.com:generateAccessToken")
        );
        assert_eq!(config.universe_domain.as_deref(), Some("googleapis.com"));
        assert_eq!(config.impersonation_lifetime_secs(), 3600);
        let cs = &config.credential_source;
        assert_eq!(cs.environment_id, "aws1");
        assert_eq!(
            cs.region_url.as_deref(),
            Some("http://169.254.169.254/latest/meta-data/placement/availability-zone")
        );
        assert_eq!(
            cs.url.as_deref(),
            Some("http://169.254.169.254/latest/meta-data/iam/security-credentials")
        );
        assert_eq!(cs.regional_cred_verification_url, VERIFY_URL_TEMPLATE);
        assert_eq!(
            cs.imdsv2_session_token_url.as_deref(),
            Some("http://169.254.169.254/latest/api/token")
        );
        // Serializing gives back an equivalent configuration.
        let again = serde_json::to_vec(&config).unwrap();
        assert_eq!(load_external_account(&again).unwrap(), config);
    }

    #[test]
    fn parses_the_older_gcloud_shape_and_the_lifetime_option() {
        // Without IMDSv2, impersonation or universe_domain, with a token lifetime and fields
        // this authenticator ignores.
        let json = br#"{
          "type": "external_account",
          "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/a",
          "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
          "token_url": "https://sts.googleapis.com/v1/token",
          "quota_project_id": "billing-project",
          "service_account_impersonation": { "token_lifetime_seconds": 1800 },
          "credential_source": {
            "environment_id": "aws1",
            "region_url": "http://169.254.169.254/latest/meta-data/placement/availability-zone",
            "url": "http://169.254.169.254/latest/meta-data/iam/security-credentials",
            "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15"
          }
        }"#;
        let config = load_external_account(json).unwrap();
        assert_eq!(config.service_account_impersonation_url, None);
        assert_eq!(config.credential_source.imdsv2_session_token_url, None);
        assert_eq!(config.impersonation_lifetime_secs(), 1800);
    }

    #[test]
    fn rejects_what_is_not_an_aws_external_account() {
        let base = config_json("https://sts.googleapis.com", true);
        let with_source = |source: serde_json::Value| {
            let mut c = base.clone();
            c["credential_source"] = source;
            c.to_string()
        };
        let with = |key: &str, value: serde_json::Value| {
            let mut c = base.clone();
            c[key] = value;
            c.to_string()
        };
        let without_verification_url = {
            let mut c = base.clone();
            c["credential_source"]
                .as_object_mut()
                .unwrap()
                .remove("regional_cred_verification_url");
            c.to_string()
        };
        let cases: Vec<(String, &[&str])> = vec![
            (
                with_source(serde_json::json!({"file": "/var/run/secrets/token"})),
                &["file-sourced", "out of scope", "aws1"],
            ),
            (
                with_source(serde_json::json!({
                    "url": "http://localhost:5000/token",
                    "headers": {"Metadata": "True"},
                    "format": {"type": "json", "subject_token_field_name": "access_token"}
                })),
                &["URL-sourced", "out of scope"],
            ),
            (
                with_source(serde_json::json!({"executable": {"command": "/bin/token"}})),
                &["executable-sourced", "out of scope"],
            ),
            (
                with("type", "service_account".into()),
                &["`service_account`", "external_account"],
            ),
            (
                with_source(serde_json::json!({
                    "environment_id": "aws2",
                    "regional_cred_verification_url": VERIFY_URL_TEMPLATE
                })),
                &["aws version `2`"],
            ),
            (
                with_source(serde_json::json!({
                    "environment_id": "azure1",
                    "regional_cred_verification_url": VERIFY_URL_TEMPLATE
                })),
                &["`azure1`", "aws1"],
            ),
            (
                with(
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:jwt".into(),
                ),
                &["subject_token_type", AWS_SUBJECT_TOKEN_TYPE],
            ),
            (
                without_verification_url,
                &["regional_cred_verification_url"],
            ),
            (
                with_source(serde_json::json!({
                    "environment_id": "aws1",
                    "regional_cred_verification_url": "http://sts.{region}.amazonaws.com"
                })),
                &["must be an https URL"],
            ),
            (with("token_url", "not a url".into()), &["token_url"]),
            ("[]".to_string(), &["not a JSON object"]),
            ("{".to_string(), &["not valid JSON"]),
        ];
        for (json, expected) in cases {
            let error = load_external_account(json.as_bytes())
                .expect_err(&format!("accepted {json}"))
                .to_string();
            for needle in expected {
                assert!(
                    error.contains(needle),
                    "`{error}` does not mention `{needle}` (input {json})"
                );
            }
        }
    }

    // ---- the subject token ----

    #[test]
    fn subject_token_is_a_signed_get_caller_identity_request() {
        let time = UNIX_EPOCH + Duration::from_secs(T0 + 3723); // 2030-01-01T01:02:03Z
        let url = VERIFY_URL_TEMPLATE.replace("{region}", "us-east-2");
        let creds = credentials(Some(SESSION));
        let signed =
            sign_caller_identity_request(&url, AUDIENCE, &creds, "us-east-2", time).unwrap();
        assert_valid_subject_token(&signed, "us-east-2", "20300101T010203Z", Some(SESSION));
        // The token is the URL-encoded JSON, and decodes back to the same request.
        let token = signed.to_subject_token();
        assert!(token.starts_with("%7B%22url%22%3A%22https%3A%2F%2Fsts.us-east-2"));
        assert!(!token.contains(['{', '"', ' ', '/', '+', '=', '&']));
        assert_eq!(decode_subject_token(&token), signed);
        // Deterministic for a fixed time; a different time or audience signs differently.
        let again =
            sign_caller_identity_request(&url, AUDIENCE, &creds, "us-east-2", time).unwrap();
        assert_eq!(again.to_subject_token(), token);
        let later = sign_caller_identity_request(
            &url,
            AUDIENCE,
            &creds,
            "us-east-2",
            time + Duration::from_secs(1),
        )
        .unwrap();
        assert_ne!(
            header(&later, "Authorization"),
            header(&signed, "Authorization")
        );
        let other =
            sign_caller_identity_request(&url, "//other", &creds, "us-east-2", time).unwrap();
        let sig = |r: &SignedCallerIdentityRequest| {
            parse_authorization(header(r, "Authorization").unwrap()).signature
        };
        assert_ne!(sig(&other), sig(&signed));
        // The verifier notices tampering with any signed header, the target resource included.
        for key in [
            "x-goog-cloud-target-resource",
            "x-amz-security-token",
            "host",
        ] {
            let mut tampered = signed.clone();
            let h = tampered.headers.iter_mut().find(|h| h.key == key).unwrap();
            h.value.push('x');
            assert_ne!(
                recompute_signature(&tampered, SECRET),
                sig(&signed),
                "{key}"
            );
        }
        assert_ne!(recompute_signature(&signed, "wrong-secret"), sig(&signed));
    }

    #[test]
    fn long_term_credentials_sign_without_a_security_token() {
        let time = UNIX_EPOCH + Duration::from_secs(T0);
        let url = VERIFY_URL_TEMPLATE.replace("{region}", "ap-southeast-2");
        let signed = sign_caller_identity_request(
            &url,
            AUDIENCE,
            &credentials(None),
            "ap-southeast-2",
            time,
        )
        .unwrap();
        assert_valid_subject_token(&signed, "ap-southeast-2", "20300101T000000Z", None);
        assert_eq!(signed.headers.len(), 4);
    }

    // ---- the whole flow against the fake ----

    #[tokio::test]
    async fn exchanges_impersonates_caches_and_refreshes() {
        let now = Arc::new(AtomicU64::new(T0));
        let google = happy_google(now.clone(), Duration::ZERO);
        let auth = authenticator(&google.base, true, Some(SESSION), &now);

        let token = Authenticator::access_token(&auth).await.unwrap();
        assert_eq!(token, "sa-token-1");
        let requests = google.requests();
        assert_eq!(
            requests
                .iter()
                .map(|r| (r.method.as_str(), r.path.as_str()))
                .collect::<Vec<_>>(),
            [("POST", TOKEN_PATH), ("POST", SA_PATH)]
        );

        // The STS token exchange.
        let sts = &requests[0];
        assert_eq!(
            sts.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(sts.form_field("grant_type"), TOKEN_EXCHANGE_GRANT_TYPE);
        assert_eq!(sts.form_field("audience"), AUDIENCE);
        assert_eq!(sts.form_field("scope"), CLOUD_PLATFORM_SCOPE);
        assert_eq!(sts.form_field("requested_token_type"), ACCESS_TOKEN_TYPE);
        assert_eq!(sts.form_field("subject_token_type"), AWS_SUBJECT_TOKEN_TYPE);
        assert_eq!(sts.form().len(), 6);
        let subject = decode_subject_token(&sts.form_field("subject_token"));
        assert_valid_subject_token(&subject, "us-east-2", "20300101T000000Z", Some(SESSION));
        assert!(sts.header("authorization").is_none());

        // The impersonation call, with the STS token as bearer.
        let sa = &requests[1];
        assert_eq!(sa.header("authorization"), Some("Bearer sts-token-1"));
        assert_eq!(sa.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_str(&sa.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"scope": [BIGQUERY_SCOPE], "lifetime": "3600s"})
        );

        // Within the lifetime (expiry 01:00, refreshed from 00:55 on): cached, no requests.
        for minutes in [10, 54] {
            now.store(T0 + minutes * 60, Ordering::SeqCst);
            assert_eq!(auth.token().await.unwrap(), "sa-token-1");
            // Clones share the cache.
            assert_eq!(auth.clone().token().await.unwrap(), "sa-token-1");
        }
        assert_eq!(google.requests().len(), 2);

        // Inside the 5-minute margin: a refresh, signed at the new time.
        now.store(T0 + 56 * 60, Ordering::SeqCst);
        assert_eq!(auth.token().await.unwrap(), "sa-token-2");
        assert_eq!(google.requests().len(), 4);
        let sts2 = &google.only(TOKEN_PATH)[1];
        let subject2 = decode_subject_token(&sts2.form_field("subject_token"));
        assert_valid_subject_token(&subject2, "us-east-2", "20300101T005600Z", Some(SESSION));
        assert_eq!(
            google.only(SA_PATH)[1].header("authorization"),
            Some("Bearer sts-token-2")
        );
        // And that token is cached in turn.
        now.store(T0 + 90 * 60, Ordering::SeqCst);
        assert_eq!(auth.token().await.unwrap(), "sa-token-2");
        assert_eq!(google.requests().len(), 4);
    }

    #[tokio::test]
    async fn without_impersonation_the_federated_token_is_used() {
        let now = Arc::new(AtomicU64::new(T0));
        let google = happy_google(now.clone(), Duration::ZERO);
        let auth = authenticator(&google.base, false, None, &now);
        assert_eq!(auth.token().await.unwrap(), "sts-token-1");
        let sts = &google.only(TOKEN_PATH)[0];
        let subject = decode_subject_token(&sts.form_field("subject_token"));
        assert_valid_subject_token(&subject, "us-east-2", "20300101T000000Z", None);
        // expires_in 3600: cached until 00:55.
        now.store(T0 + 50 * 60, Ordering::SeqCst);
        assert_eq!(auth.token().await.unwrap(), "sts-token-1");
        now.store(T0 + 55 * 60 + 1, Ordering::SeqCst);
        assert_eq!(auth.token().await.unwrap(), "sts-token-2");
        assert_eq!(google.count(TOKEN_PATH), 2);
        assert_eq!(google.count(SA_PATH), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_share_one_refresh() {
        let now = Arc::new(AtomicU64::new(T0));
        let google = happy_google(now.clone(), Duration::from_millis(200));
        let auth = authenticator(&google.base, true, Some(SESSION), &now);
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let auth = auth.clone();
                tokio::spawn(async move { auth.token().await })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().unwrap(), "sa-token-1");
        }
        assert_eq!(google.count(TOKEN_PATH), 1);
        assert_eq!(google.count(SA_PATH), 1);
    }

    #[tokio::test]
    async fn region_comes_from_the_metadata_server_without_env() {
        let now = Arc::new(AtomicU64::new(T0));
        let google = happy_google(now.clone(), Duration::ZERO);
        let auth = AwsFederatedAuthenticator::build(
            config(&google.base, false),
            SharedCredentialsProvider::new(credentials(Some(SESSION))),
            RegionSource::Metadata,
        )
        .unwrap()
        .with_clock(clock_at(&now))
        .with_http_client(reqwest::Client::builder().no_proxy().build().unwrap());
        assert_eq!(auth.token().await.unwrap(), "sts-token-1");
        let put = &google.only(IMDS_TOKEN_PATH)[0];
        assert_eq!(put.method, "PUT");
        assert_eq!(
            put.header("x-aws-ec2-metadata-token-ttl-seconds"),
            Some("300")
        );
        assert_eq!(google.count(AZ_PATH), 1);
        let subject = decode_subject_token(&google.only(TOKEN_PATH)[0].form_field("subject_token"));
        assert_valid_subject_token(&subject, "eu-west-3", "20300101T000000Z", Some(SESSION));
        // The region is looked up once.
        now.store(T0 + 2 * 3600, Ordering::SeqCst);
        assert_eq!(auth.token().await.unwrap(), "sts-token-2");
        assert_eq!(google.count(AZ_PATH), 1);
    }

    // ---- failures ----

    #[tokio::test]
    async fn sts_errors_name_the_token_url_and_googles_description() {
        for (status, code, description) in [
            (
                400,
                "invalid_grant",
                "The audience in ID Token [x] does not match the expected audience.",
            ),
            (
                401,
                "invalid_client",
                "The caller does not have permission to use the provider.",
            ),
        ] {
            let google = FakeGoogle::start(move |_| {
                let body = serde_json::json!({"error": code, "error_description": description});
                (status, body.to_string())
            });
            let now = Arc::new(AtomicU64::new(T0));
            let auth = authenticator(&google.base, true, Some(SESSION), &now);
            let error = Authenticator::access_token(&auth).await.unwrap_err();
            let message = error.to_string();
            let token_url = format!("{}{TOKEN_PATH}", google.base);
            for needle in [
                token_url.as_str(),
                &format!("HTTP {status}"),
                code,
                description,
            ] {
                assert!(message.contains(needle), "`{message}` lacks `{needle}`");
            }
            for secret in [SECRET, SESSION] {
                assert!(!message.contains(secret), "`{message}` leaks a secret");
            }
            match FederationError::from_bq_error(&error) {
                Some(FederationError::Sts {
                    url,
                    status: s,
                    error,
                    description: d,
                }) => {
                    assert_eq!(url, &token_url);
                    assert_eq!(*s, status);
                    assert_eq!(error, code);
                    assert_eq!(d.as_deref(), Some(description));
                }
                other => panic!("not an STS error: {other:?} from {error:?}"),
            }
            // No impersonation was attempted.
            assert_eq!(google.count(SA_PATH), 0);
        }
    }

    #[tokio::test]
    async fn sts_errors_without_oauth_json_quote_the_body() {
        let google = FakeGoogle::start(|_| (502, "<html>Bad Gateway</html>".into()));
        let now = Arc::new(AtomicU64::new(T0));
        let auth = authenticator(&google.base, false, None, &now);
        let message = auth.token().await.unwrap_err().to_string();
        assert!(message.contains("HTTP 502"), "{message}");
        assert!(message.contains("<html>Bad Gateway</html>"), "{message}");
    }

    #[tokio::test]
    async fn impersonation_errors_name_the_url_and_googles_message() {
        let google = FakeGoogle::start(|r| {
            if r.path == TOKEN_PATH {
                (
                    200,
                    r#"{"access_token":"sts-token","token_type":"Bearer","expires_in":3600}"#
                        .into(),
                )
            } else {
                (
                    403,
                    r#"{"error":{"code":403,"message":"Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).","status":"PERMISSION_DENIED"}}"#
                        .into(),
                )
            }
        });
        let now = Arc::new(AtomicU64::new(T0));
        let auth = authenticator(&google.base, true, Some(SESSION), &now);
        let message = Authenticator::access_token(&auth)
            .await
            .unwrap_err()
            .to_string();
        for needle in [
            format!("{}{SA_PATH}", google.base),
            "HTTP 403".into(),
            "PERMISSION_DENIED".into(),
            "iam.serviceAccounts.getAccessToken".into(),
        ] {
            assert!(message.contains(&needle), "`{message}` lacks `{needle}`");
        }
        assert!(
            !message.contains("sts-token"),
            "`{message}` leaks the STS token"
        );
    }

    #[tokio::test]
    async fn a_failed_early_refresh_keeps_the_still_valid_token() {
        let now = Arc::new(AtomicU64::new(T0));
        let failing = Arc::new(AtomicBool::new(false));
        let google = {
            let failing = failing.clone();
            let sts = AtomicUsize::new(0);
            FakeGoogle::start(move |_| {
                if failing.load(Ordering::SeqCst) {
                    return (503, r#"{"error":"temporarily_unavailable"}"#.into());
                }
                let n = sts.fetch_add(1, Ordering::SeqCst) + 1;
                let body = serde_json::json!({
                    "access_token": format!("sts-token-{n}"),
                    "expires_in": 3600,
                });
                (200, body.to_string())
            })
        };
        let auth = authenticator(&google.base, false, None, &now);
        assert_eq!(auth.token().await.unwrap(), "sts-token-1");
        failing.store(true, Ordering::SeqCst);
        // In the margin but not expired: the old token, and the refresh is retried next call.
        now.store(T0 + 57 * 60, Ordering::SeqCst);
        assert_eq!(auth.token().await.unwrap(), "sts-token-1");
        assert_eq!(auth.token().await.unwrap(), "sts-token-1");
        assert_eq!(google.count(TOKEN_PATH), 3);
        // Expired: the error.
        now.store(T0 + 3600, Ordering::SeqCst);
        let message = auth.token().await.unwrap_err().to_string();
        assert!(message.contains("temporarily_unavailable"), "{message}");
    }

    #[tokio::test]
    async fn region_lookup_failure_is_explained() {
        let mut json = config_json("https://sts.googleapis.com", false);
        json["credential_source"]
            .as_object_mut()
            .unwrap()
            .remove("region_url");
        let auth = AwsFederatedAuthenticator::build(
            load_external_account(json.to_string().as_bytes()).unwrap(),
            SharedCredentialsProvider::new(credentials(None)),
            RegionSource::Metadata,
        )
        .unwrap();
        let message = auth.token().await.unwrap_err().to_string();
        assert!(message.contains("AWS_REGION"), "{message}");
        assert!(message.contains("region_url"), "{message}");
    }
}
