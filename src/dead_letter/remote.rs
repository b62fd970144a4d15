//! Dead letters in S3 (`s3://bucket/prefix/`) and SQS (`sqs:QUEUE_URL`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::MessageAttributeValue;
use chrono::Utc;
use serde::Serialize;
use tokio::runtime::Handle;

use super::{HeaderInfo, Kind, ObjectInfo, VERSION};
use crate::error::{Cause, Class, Error, Stage};
use crate::object::ObjectRef;

/// SQS's message size limit is 256 KiB including attributes; leave room for those.
pub const SQS_MAX_BODY: u64 = 256 * 1024 - 2 * 1024;

/// An S3 prefix for dead letters.
#[derive(Clone)]
pub struct S3Target {
    pub client: aws_sdk_s3::Client,
    pub bucket: String,
    /// Empty or ending in `/`.
    pub prefix: String,
}

impl S3Target {
    /// `prefix/YYYY/MM/DD/<bucket>/<key>.<kind>.json`: listable by the day of failure.
    pub fn key_for(&self, object: &ObjectRef, kind: Kind) -> String {
        format!(
            "{}{}/{}/{}.{}.json",
            self.prefix,
            Utc::now().format("%Y/%m/%d"),
            object.bucket,
            object.key,
            kind.name()
        )
    }
}

/// A remote destination.
pub enum Remote {
    S3 {
        target: S3Target,
        handle: Handle,
    },
    Sqs {
        client: aws_sdk_sqs::Client,
        queue_url: String,
        /// Where documents too large for a message go.
        overflow: Option<S3Target>,
        handle: Handle,
    },
}

fn remote_error(what: impl std::fmt::Display) -> Error {
    // Network trouble with the destination is worth retrying; the object is not done meanwhile.
    Error::new(
        Stage::Sink,
        Class::Transient,
        Cause::DeadLetter(what.to_string()),
    )
}

/// Runs a future to completion from any thread (a decode thread, or an async task that must
/// not block its worker without saying so).
fn block_on<F: std::future::Future>(handle: &Handle, fut: F) -> F::Output {
    tokio::task::block_in_place(|| handle.block_on(fut))
}

#[derive(Serialize)]
struct Reference<'a> {
    version: u32,
    object: ObjectInfo<'a>,
    kind: &'static str,
    class: Class,
    stage: Stage,
    /// Where the document is.
    location: String,
}

/// The name of an open file as this process's own descriptor: opening it gives the very file
/// `file` is (even an anonymous one) and never what another user placed at some path, while
/// letting the SDK reopen the body from the start when it retries the upload.
fn own_descriptor_path(file: &File) -> String {
    use std::os::fd::AsRawFd;
    let dir = if cfg!(target_os = "linux") {
        "/proc/self/fd"
    } else {
        "/dev/fd"
    };
    format!("{dir}/{}", file.as_raw_fd())
}

async fn put_file(target: &S3Target, key: &str, file: &File) -> Result<String, Error> {
    // Where `/dev/fd/N` duplicates the descriptor rather than reopening the file (not Linux),
    // the body is read from the shared offset: start it at the beginning.
    let mut rewind = file;
    rewind
        .seek(SeekFrom::Start(0))
        .map_err(|e| remote_error(format!("the dead-letter spool file: {e}")))?;
    let body = ByteStream::from_path(own_descriptor_path(file))
        .await
        .map_err(|e| remote_error(format!("the dead-letter spool file: {e}")))?;
    target
        .client
        .put_object()
        .bucket(&target.bucket)
        .key(key)
        .content_type("application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| {
            remote_error(format!(
                "PutObject s3://{}/{key}: {}",
                target.bucket,
                crate::aws::classify(Stage::Sink, "PutObject", e).cause
            ))
        })?;
    Ok(format!("s3://{}/{key}", target.bucket))
}

impl Remote {
    pub(super) fn deliver(
        &self,
        object: &ObjectRef,
        kind: Kind,
        info: &HeaderInfo,
        mut file: File,
    ) -> Result<String, Error> {
        match self {
            Remote::S3 { target, handle } => {
                let key = target.key_for(object, kind);
                block_on(handle, put_file(target, &key, &file))
            }
            Remote::Sqs {
                client,
                queue_url,
                overflow,
                handle,
            } => block_on(handle, async {
                let spool_error = |e: std::io::Error| {
                    Error::permanent(
                        Stage::Sink,
                        Cause::DeadLetter(format!("the dead-letter spool file: {e}")),
                    )
                };
                let size = file.metadata().map_err(spool_error)?.len();
                let body = if size <= SQS_MAX_BODY {
                    // Read back from the open handle (a small document: under 256 KiB).
                    let mut text = String::new();
                    file.seek(SeekFrom::Start(0)).map_err(spool_error)?;
                    file.read_to_string(&mut text).map_err(spool_error)?;
                    text
                } else {
                    let Some(target) = overflow else {
                        return Err(Error::permanent(
                            Stage::Sink,
                            Cause::DeadLetter(format!(
                                "a {size}-byte dead letter is over SQS's 256 KiB limit and no \
                                 --dead-letter-overflow s3://… is configured"
                            )),
                        ));
                    };
                    let key = target.key_for(object, kind);
                    let location = put_file(target, &key, &file).await?;
                    serde_json::to_string(&Reference {
                        version: VERSION,
                        object: object.into(),
                        kind: kind.name(),
                        class: info.class,
                        stage: info.stage,
                        location,
                    })
                    .expect("serialisable")
                };
                let attr = |v: &str| {
                    MessageAttributeValue::builder()
                        .data_type("String")
                        .string_value(v)
                        .build()
                        .expect("data type and value are set")
                };
                let sent = client
                    .send_message()
                    .queue_url(queue_url)
                    .message_body(body)
                    .message_attributes("class", attr(&info.class.to_string()))
                    .message_attributes("stage", attr(&info.stage.to_string()))
                    .message_attributes("kind", attr(kind.name()))
                    .message_attributes("bucket", attr(&object.bucket))
                    .send()
                    .await
                    .map_err(|e| {
                        remote_error(format!(
                            "SendMessage {queue_url}: {}",
                            aws_sdk_sqs::error::DisplayErrorContext(e)
                        ))
                    })?;
                Ok(format!(
                    "{queue_url}#{}",
                    sent.message_id().unwrap_or_default()
                ))
            }),
        }
    }
}

/// An SQS client from the environment's configuration (`AWS_ENDPOINT_URL[_SQS]` included).
pub async fn sqs_client() -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(&crate::aws::sdk_config().await)
}
