//! S3 through the real AWS SDK: streaming GetObject, paginated ListObjectsV2.
//!
//! The SDK's default chain finds credentials and region; `AWS_ENDPOINT_URL` /
//! `AWS_ENDPOINT_URL_S3` point it elsewhere (an S3-compatible store, a local test server), in
//! which case path-style addressing is used. The SDK retries throttling and transient network
//! errors itself (standard mode, with backoff); what reaches us is classified here.

use std::fmt;
use std::str::FromStr;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::Client;
use futures::future::BoxFuture;
use tokio::runtime::Handle;
use tokio_util::io::SyncIoBridge;

use super::{Etag, ObjectStore, Opened};
use crate::error::{Cause, Class, Error, Stage};
use crate::object::ObjectRef;

/// `s3://bucket/key-or-prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Uri {
    pub bucket: String,
    pub key: String,
}

impl FromStr for S3Uri {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix("s3://")
            .ok_or_else(|| format!("`{s}` is not an s3:// URI"))?;
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("`{s}` has no bucket name"));
        }
        Ok(S3Uri {
            bucket: bucket.to_string(),
            key: key.to_string(),
        })
    }
}

impl fmt::Display for S3Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.key)
    }
}

/// An S3 client from the environment's configuration. Path-style addressing when asked for or
/// when the endpoint is overridden (local servers rarely resolve virtual-host bucket names).
pub async fn client(force_path_style: bool) -> Client {
    let sdk = sdk_config().await;
    let endpoint_overridden = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
    let conf = aws_sdk_s3::config::Builder::from(&sdk)
        .force_path_style(force_path_style || endpoint_overridden);
    Client::from_conf(conf.build())
}

/// The AWS SDK configuration from the environment (credentials chain, region, endpoint
/// overrides), shared by every AWS client here; us-east-1 when no region is configured.
pub async fn sdk_config() -> aws_config::SdkConfig {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .load()
        .await;
    if sdk.region().is_some() {
        return sdk;
    }
    tracing::warn!("no AWS region configured; using us-east-1 (set AWS_REGION)");
    sdk.into_builder()
        .region(aws_config::Region::new("us-east-1"))
        .build()
}

/// One bucket as an [`ObjectStore`].
pub struct S3Store {
    client: Client,
    bucket: String,
    handle: Handle,
}

impl S3Store {
    /// Must be called within a Tokio runtime (the store blocks on it from decode threads).
    pub fn new(client: Client, bucket: impl Into<String>) -> S3Store {
        S3Store {
            client,
            bucket: bucket.into(),
            handle: Handle::current(),
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// S3 ETags come quoted.
pub fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

/// Classifies an SDK error: throttling, 5xx, timeouts and connection failures are transient;
/// missing objects, denied access, archived objects and other 4xx are permanent.
pub fn classify<E>(
    stage: Stage,
    what: &str,
    err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("").to_string();
            let message = se.err().message().unwrap_or("").to_string();
            let detail = if message.is_empty() {
                format!("{what}: {code} (HTTP {status})")
            } else {
                format!("{what}: {code}: {message} (HTTP {status})")
            };
            match (code.as_str(), status) {
                ("NoSuchKey" | "NotFound", _) | (_, 404) if code != "NoSuchBucket" => {
                    Error::permanent(stage, Cause::NotFound)
                }
                (
                    "AccessDenied"
                    | "AllAccessDisabled"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch",
                    _,
                )
                | (_, 403) => Error::permanent(stage, Cause::AccessDenied(detail)),
                ("InvalidObjectState", _) => Error::permanent(
                    stage,
                    Cause::Remote(format!(
                        "{detail}; the object is archived: restore it first"
                    )),
                ),
                (
                    "SlowDown" | "Throttling" | "RequestTimeout" | "InternalError"
                    | "ServiceUnavailable",
                    _,
                )
                | (_, 429 | 500..=599) => {
                    Error::new(stage, Class::Transient, Cause::Remote(detail))
                }
                // The object changed between listing and reading: list again later.
                ("PreconditionFailed", _) | (_, 412) => Error::new(
                    stage,
                    Class::Transient,
                    Cause::Remote(format!("{detail}; the object changed since it was listed")),
                ),
                _ => Error::permanent(stage, Cause::Remote(detail)),
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Error::new(
                stage,
                Class::Transient,
                Cause::Remote(format!("{what}: {}", crate::error::error_chain(&err))),
            )
        }
        _ => Error::permanent(
            stage,
            Cause::Remote(format!("{what}: {}", crate::error::error_chain(&err))),
        ),
    }
}

/// The object no longer has the ETag it was listed (or dead-lettered) with: it was overwritten.
/// Reading it again cannot help, so this is permanent; the current version is a different
/// object to the ledger and to row IDs, which `replay` reads (a redrive never swaps versions:
/// rows of the old one may already be in the sink under the old one's IDs).
fn changed(bucket: &str, object: &ObjectRef) -> Error {
    Error::permanent(
        Stage::Fetch,
        Cause::Remote(format!(
            "the object changed: it no longer has ETag {} (overwritten since it was listed or \
             dead-lettered); to read its current version, replay s3://{bucket}/{}",
            object.etag.as_deref().unwrap_or("?"),
            object.key
        )),
    )
}

impl ObjectStore for S3Store {
    fn open(&self, object: &mut ObjectRef) -> Result<Opened, Error> {
        object.origin = Some(crate::object::Origin::S3);
        let mut req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&object.key);
        if let Some(v) = &object.version_id {
            req = req.version_id(v);
        } else if let Some(etag) = &object.etag {
            // Read exactly what was listed (and claimed in the ledger), not a newer write.
            req = req.if_match(format!("\"{etag}\""));
        }
        let resp = self.handle.block_on(req.send()).map_err(|e| {
            if e.raw_response().is_some_and(|r| r.status().as_u16() == 412) {
                return changed(&self.bucket, object);
            }
            classify(Stage::Fetch, "GetObject", e)
        })?;
        let etag = resp.e_tag().map(unquote);
        object.version_id = resp
            .version_id()
            .map(str::to_string)
            .or(object.version_id.take());
        object.size = resp.content_length().map(|n| n as u64).or(object.size);
        let content_encoding = resp.content_encoding().map(str::to_string);
        let body = resp.body.into_async_read();
        Ok(Opened {
            reader: Box::new(SyncIoBridge::new_with_handle(body, self.handle.clone())),
            etag: Etag::Known(etag),
            content_encoding,
        })
    }

    fn list<'a>(&'a self, prefix: &'a str) -> BoxFuture<'a, Result<Vec<ObjectRef>, Error>> {
        Box::pin(async move {
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .into_paginator()
                .send();
            let mut out = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| classify(Stage::Fetch, "ListObjectsV2", e))?;
                for o in page.contents() {
                    let Some(key) = o.key() else { continue };
                    let mut r = ObjectRef::new(&self.bucket, key);
                    r.etag = o.e_tag().map(unquote);
                    r.size = o.size().map(|n| n as u64);
                    r.origin = Some(crate::object::Origin::S3);
                    out.push(r);
                }
            }
            Ok(out)
        })
    }

    fn bucket(&self) -> &str {
        &self.bucket
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_s3_uris() {
        assert_eq!(
            "s3://b/a/b c".parse::<S3Uri>().unwrap(),
            S3Uri {
                bucket: "b".into(),
                key: "a/b c".into()
            }
        );
        assert_eq!("s3://b".parse::<S3Uri>().unwrap().key, "");
        assert!("s3:///k".parse::<S3Uri>().is_err());
        assert!("/tmp/x".parse::<S3Uri>().is_err());
    }
}
