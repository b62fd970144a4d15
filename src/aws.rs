//! AWS clients as entry points build them.

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
        let client = crate::source::s3::client(self.path_style).await;
        self.client = Some(client.clone());
        client
    }
}
