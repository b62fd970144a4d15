//! The AWS SDK's configuration and the S3 client, as every AWS user here builds them.

use aws_sdk_s3::Client;

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
