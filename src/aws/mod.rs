//! AWS as every part of the house uses it: the SDK configuration and the S3 client
//! ([`config`]), the lazily built client a run shares ([`Aws`]), error classes ([`errors`]),
//! `s3://` URIs ([`S3Uri`]), keys as AWS encodes them in events and manifests ([`keys`]) and
//! the listing of a prefix ([`listing`]).
//! The source, the ledger and dead letters all borrow these from here, not from each other.

pub mod config;
pub mod errors;
pub mod keys;
pub mod listing;
mod uri;

pub use self::config::{client, sdk_config};
pub use self::errors::{classify, unquote};
pub use self::uri::S3Uri;

/// Lazily built S3 client (one per run, shared by source, ledger and dead letters): only runs that touch S3 load AWS configuration.
pub struct Aws {
    pub path_style: bool,
    pub client: Option<aws_sdk_s3::Client>,
}

impl Aws {
    pub async fn client(&mut self) -> aws_sdk_s3::Client {
        if let Some(client) = &self.client {
            return client.clone();
        }
        let client = client(self.path_style).await;
        self.client = Some(client.clone());
        client
    }
}
