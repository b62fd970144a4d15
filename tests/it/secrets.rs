//! GCP credentials from Secrets Manager (what the Lambda reads once per container), against
//! moto through the real SDK.

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};

use crate::moto::{rt, Moto};

fn client(moto: &Moto) -> aws_sdk_secretsmanager::Client {
    let conf = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .build();
    aws_sdk_secretsmanager::Client::from_conf(conf)
}

#[test]
fn the_credentials_secret_is_read_by_arn_and_a_missing_one_is_a_clear_error() {
    let moto = Moto::start();
    let value = r#"{"type":"service_account","project_id":"p","private_key":"-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"}"#;
    let arn = moto
        .python(&format!(
            r#"
import boto3
print(boto3.client("secretsmanager").create_secret(Name="firehose-replay/gcp", SecretString={value:?})["ARN"])
"#
        ))
        .trim()
        .to_string();
    assert!(arn.starts_with("arn:aws:secretsmanager:"), "{arn}");
    let c = client(&moto);
    let got = rt()
        .block_on(firehose_replay::secrets::secret_string(&c, &arn))
        .unwrap();
    assert_eq!(got, value);
    let err = rt()
        .block_on(firehose_replay::secrets::secret_string(
            &c,
            "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf",
        ))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("GetSecretValue") && err.contains("nope"),
        "{err}"
    );
    assert!(!err.contains("PRIVATE KEY"));
}
