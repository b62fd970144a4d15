//! S3 through the real AWS SDK: streaming GetObject, paginated ListObjectsV2.
//!
//! The SDK's default chain finds credentials and region; `AWS_ENDPOINT_URL` /
//! `AWS_ENDPOINT_URL_S3` point it elsewhere (an S3-compatible store, a local test server), in
//! which case path-style addressing is used. The SDK retries throttling and transient network
//! errors itself (standard mode, with backoff); what reaches us is classified by
//! [`crate::aws::classify`].

use aws_sdk_s3::Client;
use futures::future::BoxFuture;
use tokio::runtime::Handle;
use tokio_util::io::SyncIoBridge;

use super::{Etag, ObjectStore, Opened};
use crate::aws::{classify, unquote};
use crate::error::{Cause, Error, Stage};
use crate::object::ObjectRef;

/// The S3 URI's old path (now [`crate::aws::S3Uri`]), kept for code written against it.
pub use crate::aws::S3Uri;

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
            let listed = crate::aws::listing::objects(
                &self.client,
                &self.bucket,
                prefix,
                Stage::Fetch,
                "ListObjectsV2",
            )
            .await?;
            Ok(listed
                .iter()
                .filter_map(|o| {
                    let mut r = ObjectRef::new(&self.bucket, o.key()?);
                    r.etag = o.e_tag().map(unquote);
                    r.size = o.size().map(|n| n as u64);
                    r.origin = Some(crate::object::Origin::S3);
                    Some(r)
                })
                .collect())
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
