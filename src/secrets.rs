//! Secrets Manager: the GCP credentials a Lambda should not carry in its environment. Read once
//! per container (at start), never logged.

use crate::error::{Cause, Class, Error, Stage};

/// A Secrets Manager client from the environment's configuration.
pub async fn client() -> aws_sdk_secretsmanager::Client {
    aws_sdk_secretsmanager::Client::new(&crate::aws::sdk_config().await)
}

/// The secret's string value (a secret stored as binary is read as UTF-8).
pub async fn secret_string(
    client: &aws_sdk_secretsmanager::Client,
    secret_id: &str,
) -> Result<String, Error> {
    let resp = client
        .get_secret_value()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| {
            // The error names the secret, never its value.
            Error::new(
                Stage::Sink,
                Class::Permanent,
                Cause::Remote(format!(
                    "GetSecretValue {secret_id}: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(e)
                )),
            )
        })?;
    if let Some(s) = resp.secret_string() {
        return Ok(s.to_string());
    }
    if let Some(b) = resp.secret_binary() {
        return String::from_utf8(b.as_ref().to_vec()).map_err(|_| {
            Error::permanent(
                Stage::Sink,
                Cause::Remote(format!("secret {secret_id} is binary and not UTF-8")),
            )
        });
    }
    Err(Error::permanent(
        Stage::Sink,
        Cause::Remote(format!("secret {secret_id} has no value")),
    ))
}
