//! Data and metadata files on S3 (and `file://`): the official OpenDAL storage of iceberg-rust
//! (`iceberg-storage-opendal`, rustls through reqwest), configured the way every other AWS user
//! here is — credentials from the AWS SDK's chain (profiles, SSO, web identity, the Lambda
//! role: [`SdkCredentials`]), the SDK's region, and `AWS_ENDPOINT_URL_S3` / `AWS_ENDPOINT_URL`
//! overrides with path-style addressing (as [`crate::aws::client`] does).
//!
//! OpenDAL's S3 writer sends each `write` as one multipart part, and the Parquet writer writes
//! once per row group: a row group smaller than S3's 5 MiB part minimum would fail the upload
//! (`EntityTooSmall`). [`PartSized`] therefore gathers writes into parts of at least
//! [`PART_BYTES`] before they reach OpenDAL, so a data file of any size is a multipart upload
//! holding at most about one part plus one row group in memory.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use bytes::{Bytes, BytesMut};
use futures::stream::BoxStream;
use iceberg::io::{
    FileMetadata, FileRead, FileWrite, InputFile, OutputFile, Storage, StorageConfig,
    StorageFactory, S3_ENDPOINT, S3_PATH_STYLE_ACCESS, S3_REGION,
};
use iceberg_storage_opendal::{
    AwsCredential, CustomAwsCredentialLoader, OpenDalResolvingStorageFactory,
};
use serde::{Deserialize, Serialize};

use crate::error::Class;

/// The smallest part sent to S3 (its minimum is 5 MiB for every part but the last).
pub const PART_BYTES: usize = 8 << 20;

/// The storage factory for catalogs whose files may be on S3 (OpenDAL's, by URL scheme, with
/// the SDK's credentials, behind [`PartSized`]) and the FileIO properties: the SDK's region and,
/// when the endpoint is overridden (a local S3), that endpoint with path-style addressing. No
/// credentials among the properties: those come from [`SdkCredentials`].
pub async fn s3_io() -> (Arc<dyn StorageFactory>, HashMap<String, String>) {
    let sdk = crate::aws::sdk_config().await;
    let mut inner = OpenDalResolvingStorageFactory::new();
    if let Some(provider) = sdk.credentials_provider() {
        inner = inner
            .with_s3_credential_loader(CustomAwsCredentialLoader::new(SdkCredentials(provider)));
    }
    let mut props = HashMap::new();
    if let Some(region) = sdk.region() {
        props.insert(S3_REGION.to_string(), region.to_string());
    }
    let endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|x| !x.is_empty()));
    if let Some(endpoint) = endpoint {
        props.insert(S3_ENDPOINT.to_string(), endpoint);
        props.insert(S3_PATH_STYLE_ACCESS.to_string(), "true".to_string());
    }
    (Arc::new(PartSizedFactory(inner)), props)
}

/// The AWS SDK's credentials chain as OpenDAL's credential provider, so the warehouse is
/// reached with the same identity as the archive (OpenDAL's own chain lacks SSO and
/// `credential_process`, and would read the environment a second way).
#[derive(Debug)]
struct SdkCredentials(SharedCredentialsProvider);

impl reqsign_core::ProvideCredential for SdkCredentials {
    type Credential = AwsCredential;

    async fn provide_credential(
        &self,
        _: &reqsign_core::Context,
    ) -> reqsign_core::Result<Option<AwsCredential>> {
        let c = self.0.provide_credentials().await.map_err(|e| {
            reqsign_core::Error::credential_invalid("AWS credentials").with_source(e)
        })?;
        let expires_in = c
            .expiry()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| reqsign_core::time::Timestamp::from_second(d.as_secs() as i64).ok());
        Ok(Some(AwsCredential {
            access_key_id: c.access_key_id().to_string(),
            secret_access_key: c.secret_access_key().to_string(),
            session_token: c.session_token().map(str::to_string),
            expires_in,
        }))
    }
}

/// [`OpenDalResolvingStorageFactory`] whose storages write in parts of [`PART_BYTES`].
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PartSizedFactory(OpenDalResolvingStorageFactory);

#[typetag::serde]
impl StorageFactory for PartSizedFactory {
    fn build(&self, config: &StorageConfig) -> iceberg::Result<Arc<dyn Storage>> {
        Ok(Arc::new(PartSized(self.0.build(config)?)))
    }
}

/// A storage whose writers hand on parts of at least [`PART_BYTES`] (see the module docs).
#[derive(Debug, Serialize, Deserialize)]
struct PartSized(Arc<dyn Storage>);

#[async_trait]
#[typetag::serde]
impl Storage for PartSized {
    async fn exists(&self, path: &str) -> iceberg::Result<bool> {
        self.0.exists(path).await
    }
    async fn metadata(&self, path: &str) -> iceberg::Result<FileMetadata> {
        self.0.metadata(path).await
    }
    async fn read(&self, path: &str) -> iceberg::Result<Bytes> {
        self.0.read(path).await
    }
    async fn reader(&self, path: &str) -> iceberg::Result<Box<dyn FileRead>> {
        self.0.reader(path).await
    }
    async fn write(&self, path: &str, bs: Bytes) -> iceberg::Result<()> {
        self.0.write(path, bs).await
    }
    async fn writer(&self, path: &str) -> iceberg::Result<Box<dyn FileWrite>> {
        Ok(Box::new(PartWriter {
            inner: self.0.writer(path).await?,
            pending: BytesMut::new(),
        }))
    }
    async fn delete(&self, path: &str) -> iceberg::Result<()> {
        self.0.delete(path).await
    }
    async fn delete_prefix(&self, path: &str) -> iceberg::Result<()> {
        self.0.delete_prefix(path).await
    }
    async fn delete_stream(&self, paths: BoxStream<'static, String>) -> iceberg::Result<()> {
        self.0.delete_stream(paths).await
    }
    fn new_input(&self, path: &str) -> iceberg::Result<InputFile> {
        Ok(InputFile::new(Arc::new(self.clone()), path.to_string()))
    }
    fn new_output(&self, path: &str) -> iceberg::Result<OutputFile> {
        Ok(OutputFile::new(Arc::new(self.clone()), path.to_string()))
    }
}

impl Clone for PartSized {
    fn clone(&self) -> Self {
        PartSized(self.0.clone())
    }
}

/// Gathers writes until a part is at least [`PART_BYTES`]; the last part may be smaller.
struct PartWriter {
    inner: Box<dyn FileWrite>,
    pending: BytesMut,
}

#[async_trait]
impl FileWrite for PartWriter {
    async fn write(&mut self, bs: Bytes) -> iceberg::Result<()> {
        if self.pending.is_empty() && bs.len() >= PART_BYTES {
            return self.inner.write(bs).await;
        }
        self.pending.extend_from_slice(&bs);
        if self.pending.len() >= PART_BYTES {
            let part = self.pending.split().freeze();
            self.pending = BytesMut::new(); // give the part's memory back once it is sent
            self.inner.write(part).await?;
        }
        Ok(())
    }

    async fn close(&mut self) -> iceberg::Result<()> {
        if !self.pending.is_empty() {
            let part = std::mem::take(&mut self.pending).freeze();
            self.inner.write(part).await?;
        }
        self.inner.close().await
    }
}

/// The class of a storage or AWS API failure found in `e`'s sources, if it is one: a missing
/// bucket, object or table, a refused request, bad credentials or a bad configuration will not
/// pass by retrying; throttling, timeouts and other I/O failures may.
///
/// OpenDAL's errors keep their kind. The Glue and S3 Tables catalogs keep only the AWS SDK
/// error's `Debug` text (an `anyhow!` source of kind `Unexpected`), so those are told by the
/// error codes that text names.
pub fn failure_class(e: &iceberg::Error) -> Option<Class> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(o) = s.downcast_ref::<opendal::Error>() {
            use opendal::ErrorKind as K;
            return Some(match o.kind() {
                K::NotFound | K::PermissionDenied | K::ConfigInvalid | K::Unsupported => {
                    Class::Permanent
                }
                _ => Class::Transient,
            });
        }
        let text = s.to_string();
        if text.starts_with("aws sdk error") {
            return Some(aws_sdk_class(&text));
        }
        source = s.source();
    }
    None
}

/// The class of an AWS SDK error by its `Debug` text (see [`failure_class`]).
fn aws_sdk_class(text: &str) -> Class {
    const PERMANENT: [&str; 9] = [
        "AccessDenied",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "EntityNotFoundException",
        "NotFoundException",
        "ForbiddenException",
        "ValidationException",
    ];
    if PERMANENT.iter().any(|code| text.contains(code)) {
        Class::Permanent
    } else {
        Class::Transient
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the sizes of the parts it is handed.
    struct Parts(Arc<std::sync::Mutex<Vec<usize>>>);

    #[async_trait]
    impl FileWrite for Parts {
        async fn write(&mut self, bs: Bytes) -> iceberg::Result<()> {
            self.0.lock().unwrap().push(bs.len());
            Ok(())
        }
        async fn close(&mut self) -> iceberg::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn small_writes_become_parts_of_at_least_the_minimum_and_nothing_is_lost() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut w = PartWriter {
            inner: Box::new(Parts(seen.clone())),
            pending: BytesMut::new(),
        };
        let mut total = 0;
        for i in 0..40 {
            let n = (1 << 20) + i * 1000; // ~1 MiB row groups
            total += n;
            w.write(Bytes::from(vec![0u8; n])).await.unwrap();
        }
        w.write(Bytes::from(vec![0u8; 3 * PART_BYTES]))
            .await
            .unwrap(); // a big one passes whole
        total += 3 * PART_BYTES;
        w.write(Bytes::from_static(b"PAR1")).await.unwrap();
        total += 4;
        w.close().await.unwrap();
        let parts = seen.lock().unwrap().clone();
        assert_eq!(parts.iter().sum::<usize>(), total);
        let (last, rest) = parts.split_last().unwrap();
        assert!(rest.iter().all(|&p| p >= PART_BYTES), "{parts:?}");
        assert!(*last > 0);
    }

    #[test]
    fn opendal_failures_are_classified_by_kind() {
        let wrap = |k| {
            iceberg::Error::new(iceberg::ErrorKind::Unexpected, "io")
                .with_source(opendal::Error::new(k, "s3"))
        };
        use opendal::ErrorKind as K;
        assert_eq!(failure_class(&wrap(K::NotFound)), Some(Class::Permanent));
        assert_eq!(
            failure_class(&wrap(K::PermissionDenied)),
            Some(Class::Permanent)
        );
        assert_eq!(failure_class(&wrap(K::RateLimited)), Some(Class::Transient));
        assert_eq!(failure_class(&wrap(K::Unexpected)), Some(Class::Transient));
        let plain = iceberg::Error::new(iceberg::ErrorKind::DataInvalid, "no source");
        assert_eq!(failure_class(&plain), None);
    }

    #[test]
    fn aws_api_failures_are_classified_by_their_error_code() {
        // What iceberg-catalog-glue and -s3tables make of an SDK error.
        let sdk = |debug: &str| {
            iceberg::Error::new(iceberg::ErrorKind::Unexpected, "aws")
                .with_source(anyhow::anyhow!("aws sdk error: {debug}"))
        };
        for (debug, class) in [
            (
                "ServiceError(ServiceError { source: AccessDeniedException(..) })",
                Class::Permanent,
            ),
            (
                "ServiceError(ServiceError { source: EntityNotFoundException(..) })",
                Class::Permanent,
            ),
            (
                "ServiceError(ServiceError { source: UnrecognizedClientException })",
                Class::Permanent,
            ),
            (
                "ServiceError(ServiceError { source: ThrottlingException(..) })",
                Class::Transient,
            ),
            (
                "DispatchFailure(DispatchFailure { source: ConnectorError { .. } })",
                Class::Transient,
            ),
            ("TimeoutError(TimeoutError { .. })", Class::Transient),
        ] {
            assert_eq!(failure_class(&sdk(debug)), Some(class), "{debug}");
        }
    }
}
