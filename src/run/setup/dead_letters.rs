//! Where dead letters go (`--dead-letter`, `--dead-letter-overflow`), opened.

use std::path::PathBuf;

use crate::aws::Aws;
use crate::aws::S3Uri;
use crate::dead_letter::remote::{self, Remote, S3Target};
use crate::dead_letter::spec::DeadLetterSpec;
use crate::dead_letter::DeadLetters;

use super::Setup;

/// The dead-letter destination, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterSetup {
    pub spec: DeadLetterSpec,
    /// With `sqs:`, where letters over SQS's 256 KiB limit are stored.
    pub overflow: Option<S3Uri>,
}

impl Default for DeadLetterSetup {
    fn default() -> Self {
        DeadLetterSetup {
            spec: DeadLetterSpec::Dir(PathBuf::from("./dead-letter")),
            overflow: None,
        }
    }
}

impl Setup {
    /// The dead-letter destination, its clients built (S3's shared through `aws`).
    pub(super) async fn open_dead_letters(&self, aws: &mut Aws) -> DeadLetters {
        let s3_target = |uri: &S3Uri, client: aws_sdk_s3::Client| S3Target {
            client,
            bucket: uri.bucket.clone(),
            prefix: DeadLetterSpec::s3_prefix(uri),
        };
        match &self.dead_letter.spec {
            DeadLetterSpec::S3(uri) => DeadLetters::remote(Remote::S3 {
                target: s3_target(uri, aws.client().await),
                handle: tokio::runtime::Handle::current(),
            }),
            DeadLetterSpec::Sqs(queue_url) => {
                let overflow = match &self.dead_letter.overflow {
                    Some(uri) => Some(s3_target(uri, aws.client().await)),
                    None => None,
                };
                DeadLetters::remote(Remote::Sqs {
                    client: remote::sqs_client().await,
                    queue_url: queue_url.clone(),
                    overflow,
                    handle: tokio::runtime::Handle::current(),
                })
            }
            DeadLetterSpec::Dir(dir) => DeadLetters::new(dir),
        }
    }
}
