//! RDS IAM authentication: the password is a token, a SigV4-presigned
//! `https://HOST:PORT/?Action=connect&DBUser=USER` (service `rds-db`) without its scheme, valid
//! 15 minutes. A new one is made for every connection (tokens expire; a connection, once
//! made, stays authenticated). Signed with aws-sigv4, which the AWS SDK already brings, instead
//! of the RDS SDK crate (large to build for one function).

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;

/// Where credentials and the region come from (the AWS SDK's default chain, as for S3).
#[derive(Debug, Clone)]
pub struct IamAuth {
    pub credentials: SharedCredentialsProvider,
    pub region: String,
}

impl IamAuth {
    /// A fresh token for `user` at `host:port`.
    pub async fn token(&self, host: &str, port: u16, user: &str) -> Result<String, String> {
        let credentials = self
            .credentials
            .provide_credentials()
            .await
            .map_err(|e| format!("RDS IAM authentication: AWS credentials: {e}"))?;
        token(
            &credentials,
            &self.region,
            host,
            port,
            user,
            SystemTime::now(),
        )
    }
}

/// The token for `user` at `host:port`, signed at `time`.
pub fn token(
    credentials: &Credentials,
    region: &str,
    host: &str,
    port: u16,
    user: &str,
    time: SystemTime,
) -> Result<String, String> {
    let identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(Duration::from_secs(900));
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("rds-db")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| format!("RDS IAM authentication: {e}"))?
        .into();
    let user = encode(user);
    let url = format!("https://{host}:{port}/?Action=connect&DBUser={user}");
    let request = SignableRequest::new("GET", &url, std::iter::empty(), SignableBody::Bytes(&[]))
        .map_err(|e| format!("RDS IAM authentication: {e}"))?;
    let (instructions, _) = sign(request, &params)
        .map_err(|e| format!("RDS IAM authentication: {e}"))?
        .into_parts();
    let mut token = format!("{host}:{port}/?Action=connect&DBUser={user}");
    for (name, value) in instructions.params() {
        token.push_str(&format!("&{name}={}", encode(value)));
    }
    Ok(token)
}

/// SigV4's URI encoding: everything but `A-Za-z0-9-_.~` percent-encoded.
fn encode(value: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const SET: &AsciiSet = &NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    utf8_percent_encode(value, SET).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape AWS documents for `aws rds generate-db-auth-token` (and its SDKs' token
    /// generators): host:port/?Action=connect&DBUser=…&X-Amz-Algorithm=AWS4-HMAC-SHA256&
    /// X-Amz-Credential=KEY/DATE/REGION/rds-db/aws4_request&X-Amz-Date=…&X-Amz-Expires=900&
    /// X-Amz-SignedHeaders=host&X-Amz-Signature=64 hex digits; a session token when the
    /// credentials have one.
    #[test]
    fn the_token_is_a_presigned_rds_db_connect_url_without_its_scheme() {
        let creds = Credentials::new("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", None, None, "t");
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_644_800); // 2026-12-07T12:00:00Z
        let t = token(
            &creds,
            "us-east-1",
            "db.abc.us-east-1.rds.amazonaws.com",
            5432,
            "app",
            at,
        )
        .unwrap();
        let prefix = "db.abc.us-east-1.rds.amazonaws.com:5432/?Action=connect&DBUser=app&\
                      X-Amz-Algorithm=AWS4-HMAC-SHA256&\
                      X-Amz-Credential=AKIDEXAMPLE%2F20261207%2Fus-east-1%2Frds-db%2Faws4_request&\
                      X-Amz-Date=20261207T120000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host&\
                      X-Amz-Signature=";
        assert!(t.starts_with(prefix), "{t}");
        let signature = &t[prefix.len()..];
        assert_eq!(signature.len(), 64, "{t}");
        assert!(signature.bytes().all(|b| b.is_ascii_hexdigit()), "{t}");
        // Deterministic for the same inputs; another user, another signature.
        let again = token(
            &creds,
            "us-east-1",
            "db.abc.us-east-1.rds.amazonaws.com",
            5432,
            "app",
            at,
        );
        assert_eq!(again.unwrap(), t);
        let other = token(
            &creds,
            "us-east-1",
            "db.abc.us-east-1.rds.amazonaws.com",
            5432,
            "bob",
            at,
        );
        assert_ne!(other.unwrap()[prefix.len()..], t[prefix.len()..]);

        let session = Credentials::new("ASIAEX", "secret", Some("tok/en+".into()), None, "t");
        let t = token(&session, "eu-west-1", "h", 5432, "app", at).unwrap();
        assert!(t.starts_with("h:5432/?Action=connect&DBUser=app&"), "{t}");
        assert!(t.contains("&X-Amz-Security-Token=tok%2Fen%2B"), "{t}");
    }
}
