use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::*;
use crate::error::Class;
use crate::sink::bigquery::api_error::token_error;

struct FakeEnv(HashSet<&'static str>);

impl Env for FakeEnv {
    fn has(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}

fn env(vars: &[&'static str]) -> FakeEnv {
    FakeEnv(vars.iter().copied().collect())
}

fn aws_doc() -> Value {
    json!({
        "type": "external_account",
        "audience": "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/a",
        "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
        "token_url": "https://sts.googleapis.com/v1/token",
        "credential_source": {
            "environment_id": "aws1",
            "region_url": "http://169.254.169.254/latest/meta-data/placement/availability-zone",
            "url": "http://169.254.169.254/latest/meta-data/iam/security-credentials",
            "regional_cred_verification_url": "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15",
            "imdsv2_session_token_url": "http://169.254.169.254/latest/api/token"
        }
    })
}

const ALL: &[&str] = &["AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"];

#[test]
fn the_imdsv2_url_goes_only_when_the_environment_has_region_and_keys() {
    let prepared = prepare_external_account(aws_doc(), &env(ALL));
    assert_eq!(
        prepared["credential_source"].get("imdsv2_session_token_url"),
        None
    );
    let mut expected = aws_doc();
    expected["credential_source"]
        .as_object_mut()
        .unwrap()
        .remove("imdsv2_session_token_url");
    assert_eq!(prepared, expected, "nothing else changes");

    let default_region = prepare_external_account(
        aws_doc(),
        &env(&[
            "AWS_DEFAULT_REGION",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
        ]),
    );
    assert_eq!(
        default_region["credential_source"].get("imdsv2_session_token_url"),
        None
    );

    // Whatever is missing from the environment comes from the metadata server, which needs
    // the session token.
    for missing in ALL {
        let partial: Vec<&'static str> = ALL.iter().copied().filter(|v| v != missing).collect();
        assert_eq!(
            prepare_external_account(aws_doc(), &env(&partial)),
            aws_doc(),
            "without {missing}"
        );
    }
}

#[test]
fn non_aws_sources_pass_through_untouched() {
    let doc = json!({
        "type": "external_account",
        "audience": "//iam.googleapis.com/x",
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": "https://sts.googleapis.com/v1/token",
        "credential_source": {"file": "/var/run/token", "imdsv2_session_token_url": "kept"}
    });
    assert_eq!(prepare_external_account(doc.clone(), &env(ALL)), doc);
    let no_source = json!({"type": "external_account"});
    assert_eq!(
        prepare_external_account(no_source.clone(), &env(ALL)),
        no_source
    );
}

#[test]
fn the_document_is_never_in_debug_output() {
    let source = CredentialSource {
        file: None,
        json: Some(r#"{"private_key":"SECRET-KEY"}"#.into()),
    };
    let debug = format!("{source:?}");
    assert!(!debug.contains("SECRET-KEY"), "{debug}");
    assert!(debug.contains("<redacted>"), "{debug}");
}

fn message(e: Error) -> String {
    e.to_string()
}

#[tokio::test]
async fn documents_that_are_not_credentials_are_refused_by_name() {
    let err = |doc: &str| {
        from_document(doc.as_bytes(), "ORIGIN")
            .err()
            .map(message)
            .expect("refused")
    };
    let e = err("not json");
    assert!(
        e.contains("ORIGIN is not a credentials JSON document"),
        "{e}"
    );
    let e = err(r#"{"type":"gdch_service_account"}"#);
    assert!(
        e.contains("unsupported credentials type `gdch_service_account`"),
        "{e}"
    );
    let e = err(r#"{"no":"type"}"#);
    assert!(e.contains("unsupported credentials type ``"), "{e}");
    // The official builder names the missing field; the secret it was given is not echoed.
    let e = err(r#"{"type":"authorized_user","client_secret":"S3CR3T"}"#);
    assert!(e.contains("ORIGIN"), "{e}");
    assert!(!e.contains("S3CR3T"), "{e}");
}

#[tokio::test]
async fn a_file_that_cannot_be_read_is_a_permanent_setup_error() {
    let source = CredentialSource {
        file: Some("/nonexistent/key.json".into()),
        json: None,
    };
    let e = authenticator(&source, true).await.err().expect("refused");
    assert_eq!(e.class, Class::Permanent);
    assert!(e.to_string().contains("/nonexistent/key.json"), "{e}");
}

#[tokio::test]
async fn an_overridden_endpoint_without_credentials_sends_none() {
    if std::env::var_os("GOOGLE_APPLICATION_CREDENTIALS").is_some() {
        // The developer's own credentials win, as they should; nothing to check here.
        return;
    }
    let auth = authenticator(&CredentialSource::default(), true)
        .await
        .unwrap();
    assert!(auth.is_none());
}

/// A token endpoint answering each request with the next of `replies`, counting requests.
fn token_endpoint(replies: Vec<(u16, &'static str)>) -> (String, Arc<Mutex<usize>>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let url = format!("http://{}/token", server.server_addr().to_ip().unwrap());
    let count = Arc::new(Mutex::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for req in server.incoming_requests() {
            let n = {
                let mut c = seen.lock().unwrap();
                *c += 1;
                *c - 1
            };
            let (code, body) = replies[n.min(replies.len() - 1)];
            let _ = req.respond(
                tiny_http::Response::from_string(body)
                    .with_status_code(code)
                    .with_header(
                        tiny_http::Header::from_bytes(
                            &b"Content-Type"[..],
                            &b"application/json"[..],
                        )
                        .unwrap(),
                    ),
            );
        }
    });
    (url, count)
}

fn user_doc(token_uri: &str) -> String {
    json!({
        "type": "authorized_user",
        "client_id": "id.apps.googleusercontent.com",
        "client_secret": "secret",
        "refresh_token": "refresh",
        "token_uri": token_uri,
    })
    .to_string()
}

#[tokio::test]
async fn the_adapter_returns_the_token_and_classifies_failures_as_the_crate_does() {
    let (url, count) = token_endpoint(vec![(
        200,
        r#"{"access_token":"ya29.ok","expires_in":3600,"token_type":"Bearer"}"#,
    )]);
    let auth = from_document(user_doc(&url).as_bytes(), "test").unwrap();
    assert_eq!(auth.access_token().await.unwrap(), "ya29.ok");
    assert_eq!(auth.access_token().await.unwrap(), "ya29.ok");
    assert_eq!(
        *count.lock().unwrap(),
        1,
        "the second call is served from the cache"
    );

    let (url, _) = token_endpoint(vec![(
        400,
        r#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#,
    )]);
    let auth = from_document(user_doc(&url).as_bytes(), "test").unwrap();
    let e = token_error(auth.access_token().await.unwrap_err());
    assert_eq!(e.class, Class::Permanent, "{e}");
    assert!(e.to_string().contains("invalid_grant"), "{e}");

    let (url, _) = token_endpoint(vec![(503, r#"{"error":"backendError"}"#)]);
    let auth = from_document(user_doc(&url).as_bytes(), "test").unwrap();
    let e = token_error(auth.access_token().await.unwrap_err());
    assert_eq!(e.class, Class::Transient, "{e}");
    assert!(e.to_string().contains("503"), "{e}");
}

#[test]
fn error_chains_keep_every_distinct_message_once() {
    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("failed to fetch token")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    let e = Outer(std::io::Error::other("body=<invalid_grant>"));
    assert_eq!(
        error_chain(&e),
        "failed to fetch token: body=<invalid_grant>"
    );
}
