//! Where letters are read from ([`Source`]): listing them (files, S3 objects, SQS messages
//! with their S3 overflow) and removing one once it was delivered.

use std::path::PathBuf;

use serde_json::Value;

use crate::error::{Cause, Error, Stage};

use super::*;

/// Where dead letters are read from (the same URIs as `--dead-letter`).
#[derive(Clone)]
pub enum Source {
    Dir(PathBuf),
    S3 {
        client: aws_sdk_s3::Client,
        bucket: String,
        prefix: String,
    },
    Sqs {
        sqs: aws_sdk_sqs::Client,
        s3: aws_sdk_s3::Client,
        queue_url: String,
    },
}

/// Downloads an S3 object into an anonymous temporary file, streaming: a letter may be larger
/// than memory.
async fn get_s3(client: &aws_sdk_s3::Client, bucket: &str, key: &str) -> Result<Body, Error> {
    use std::io::Write;
    let resp = client
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| crate::aws::classify(Stage::Fetch, "GetObject", e))?;
    let local = |e: std::io::Error| redrive_error(format!("s3://{bucket}/{key}: {e}"));
    let mut file = tempfile::tempfile().map_err(local)?;
    let mut body = resp.body;
    while let Some(chunk) = body
        .try_next()
        .await
        .map_err(|e| redrive_error(format!("s3://{bucket}/{key}: {e}")))?
    {
        file.write_all(&chunk).map_err(local)?;
    }
    Ok(Body::Temp(std::sync::Arc::new(file)))
}

impl Source {
    /// Whether a letter from here may say which local directory its object is read from.
    ///
    /// Letters in a local `dir:` were written by a local run of someone who can write there
    /// anyway; letters in S3 or SQS can be planted by anyone who may write to the bucket or
    /// send to the queue, and must not make `redrive` read (and forward to the sink and to new
    /// letters) a file of their choosing on this host.
    pub fn trusts_local_roots(&self) -> bool {
        matches!(self, Source::Dir(_))
    }

    /// Every dead letter at the source. SQS messages are received (and hidden for
    /// `visibility_secs`) until the queue answers empty.
    pub async fn list(&self, visibility_secs: i32) -> Result<Vec<Letter>, Error> {
        let mut out = Vec::new();
        match self {
            Source::Dir(dir) => {
                let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
                    .into_iter()
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_file())
                    .map(|e| e.into_path())
                    .filter(|p| {
                        let name = p
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        !name.starts_with('.')
                            && (name.ends_with(".object.json") || name.ends_with(".records.json"))
                    })
                    .collect();
                files.sort();
                for p in files {
                    let origin = p.display().to_string();
                    let doc = Document::read(Body::File(p.clone()), &origin)?;
                    out.push(Letter {
                        location: Location::File(p),
                        doc,
                    });
                }
            }
            Source::S3 {
                client,
                bucket,
                prefix,
            } => {
                let listed = crate::aws::listing::objects(
                    client,
                    bucket,
                    prefix,
                    Stage::Fetch,
                    "ListObjectsV2",
                )
                .await?;
                for key in listed.iter().filter_map(|o| o.key()) {
                    if !key.ends_with(".json") {
                        continue;
                    }
                    let body = get_s3(client, bucket, key).await?;
                    let doc = Document::read(body, &format!("s3://{bucket}/{key}"))?;
                    out.push(Letter {
                        location: Location::S3 {
                            bucket: bucket.clone(),
                            key: key.to_string(),
                        },
                        doc,
                    });
                }
            }
            Source::Sqs { sqs, s3, queue_url } => loop {
                let resp = sqs
                    .receive_message()
                    .queue_url(queue_url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .visibility_timeout(visibility_secs)
                    .send()
                    .await
                    .map_err(|e| {
                        redrive_error(format!(
                            "ReceiveMessage {queue_url}: {}",
                            aws_sdk_sqs::error::DisplayErrorContext(e)
                        ))
                    })?;
                let messages = resp.messages();
                if messages.is_empty() {
                    break;
                }
                for m in messages {
                    let body = m.body().unwrap_or_default();
                    let receipt_handle = m.receipt_handle().unwrap_or_default().to_string();
                    let v: Value = serde_json::from_str(body).map_err(|e| {
                        Error::permanent(
                            Stage::Parse,
                            Cause::Redrive(format!(
                                "SQS message {}: {e}",
                                m.message_id().unwrap_or("?")
                            )),
                        )
                    })?;
                    let (doc, s3_ref) = match v.get("location").and_then(Value::as_str) {
                        Some(loc) => {
                            let uri: crate::aws::S3Uri = loc.parse().map_err(redrive_error)?;
                            let letter = get_s3(s3, &uri.bucket, &uri.key).await?;
                            (Document::read(letter, loc)?, Some((uri.bucket, uri.key)))
                        }
                        None => (
                            Document::from_bytes(body.as_bytes().to_vec(), "SQS message")?,
                            None,
                        ),
                    };
                    out.push(Letter {
                        location: Location::Sqs {
                            queue_url: queue_url.clone(),
                            receipt_handle,
                            s3: s3_ref,
                        },
                        doc,
                    });
                }
            },
        }
        Ok(out)
    }

    /// Removes a letter that was delivered.
    pub async fn remove(&self, location: &Location) -> Result<(), Error> {
        match (self, location) {
            (_, Location::File(p)) => {
                std::fs::remove_file(p).map_err(|e| redrive_error(format!("{}: {e}", p.display())))
            }
            (Source::S3 { client, .. }, Location::S3 { bucket, key }) => {
                client
                    .delete_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| crate::aws::classify(Stage::Sink, "DeleteObject", e))?;
                Ok(())
            }
            (
                Source::Sqs { sqs, s3, .. },
                Location::Sqs {
                    queue_url,
                    receipt_handle,
                    s3: doc,
                },
            ) => {
                if let Some((bucket, key)) = doc {
                    s3.delete_object()
                        .bucket(bucket)
                        .key(key)
                        .send()
                        .await
                        .map_err(|e| crate::aws::classify(Stage::Sink, "DeleteObject", e))?;
                }
                sqs.delete_message()
                    .queue_url(queue_url)
                    .receipt_handle(receipt_handle)
                    .send()
                    .await
                    .map_err(|e| {
                        redrive_error(format!(
                            "DeleteMessage {queue_url}: {}",
                            aws_sdk_sqs::error::DisplayErrorContext(e)
                        ))
                    })?;
                Ok(())
            }
            _ => Err(redrive_error(format!(
                "cannot remove {location} from this source"
            ))),
        }
    }
}
