//! The BigQuery sink's Google credentials end to end through the real binary, offline: every
//! URL a credentials document names (`token_uri`, `token_url`, the impersonation URL, the AWS
//! `credential_source` URLs) and the GCE metadata server point at one local fake Google, which
//! also answers insertAll. The fake checks what Google would check before it hands out a
//! token — a service account's self-signed JWT (claims and RS256 signature against a key
//! generated at test time), a refresh-token grant, an AWS subject token whose SigV4 signature
//! it recomputes independently — and insertAll accepts only the token the flow should end with.
//! Debug logs are searched for every secret involved.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{json, Value};

use crate::support::bin;

const CLIENT_EMAIL: &str = "replayer@test-proj.iam.gserviceaccount.com";
const PRIVATE_KEY_ID: &str = "0123456789abcdef0123456789abcdef01234567";
const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

const OAUTH_PATH: &str = "/oauth2/v4/token";
const STS_PATH: &str = "/v1/token";
const IMPERSONATE_PATH: &str =
    "/v1/projects/-/serviceAccounts/bq-loader@test-proj.iam.gserviceaccount.com:generateAccessToken";
const IMDS_TOKEN_PATH: &str = "/latest/api/token";
const AZ_PATH: &str = "/latest/meta-data/placement/availability-zone";
const ROLE_PATH: &str = "/latest/meta-data/iam/security-credentials";
const MDS_TOKEN_PATH: &str = "/computeMetadata/v1/instance/service-accounts/default/token";

const AUDIENCE: &str = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/firehose-replay/providers/aws-lambda";
const VERIFY_URL_TEMPLATE: &str =
    "https://sts.{region}.amazonaws.com?Action=GetCallerIdentity&Version=2011-06-15";
const AKID: &str = "AKIAIOSFODNN7EXAMPLE";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const AWS_SESSION: &str = "FwoGZXIvYXdzEXAMPLE-session-token-0123456789";
const IMDS_SESSION: &str = "imds-session-token-abc";

const REFRESH_TOKEN: &str = "1//0g-refresh-token-secret";
const CLIENT_SECRET: &str = "d-FL95Q19q7MQmFpd7hHD0Ty";
const USER_TOKEN: &str = "ya29.user-token";
const FEDERATED_TOKEN: &str = "ya29.federated-sts-token";
const IMPERSONATED_TOKEN: &str = "ya29.impersonated-sa-token";
const MDS_TOKEN: &str = "ya29.metadata-server-token";

// ---------------------------------------------------------------------------------------------
// The fake Google
// ---------------------------------------------------------------------------------------------

/// One request as the fake saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Seen {
    fn path(&self) -> &str {
        self.url.split('?').next().unwrap_or("")
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A field of a JSON object body (`Content-Type: application/json`, how the official crate
    /// sends a refresh-token grant; Google's token endpoint takes both) or of a form body.
    fn form(&self, name: &str) -> Option<String> {
        if self
            .header("Content-Type")
            .is_some_and(|t| t.starts_with("application/json"))
        {
            let v: Value = serde_json::from_slice(&self.body).ok()?;
            return v.get(name)?.as_str().map(str::to_string);
        }
        form_urlencoded::parse(&self.body)
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    fn query(&self, name: &str) -> Option<String> {
        let q = self.url.split_once('?')?.1;
        form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    fn is(&self, method: &str, path: &str) -> bool {
        self.method == method && self.path() == path
    }
}

type Responder = Box<dyn Fn(&Seen) -> (u16, String) + Send + Sync>;

/// A local HTTP server that records every request and answers with `respond`; insertAll
/// requests are answered by [`FakeGoogle::start`]'s `accept` check.
struct FakeGoogle {
    endpoint: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    server: Arc<tiny_http::Server>,
}

impl FakeGoogle {
    /// `accept(bearer)` says whether insertAll takes an `Authorization: Bearer` value;
    /// `respond` answers everything else (404 for what it does not know).
    fn start(
        accept: impl Fn(&str) -> bool + Send + Sync + 'static,
        respond: impl Fn(&Seen) -> Option<(u16, String)> + Send + Sync + 'static,
    ) -> FakeGoogle {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let endpoint = format!("http://{}", server.server_addr().to_ip().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let responder: Arc<Responder> = Arc::new(Box::new(move |s: &Seen| {
            // The run checks the table exists before the first object (`tables.get`): it is
            // there. (What the tests check about tokens is on insertAll.)
            if s.method == "GET" && s.path().contains("/tables/") {
                return (200, json!({"kind": "bigquery#table"}).to_string());
            }
            if s.method == "POST" && s.path().ends_with("/insertAll") {
                let bearer = s
                    .header("Authorization")
                    .and_then(|a| a.strip_prefix("Bearer "));
                return if bearer.is_some_and(&accept) {
                    (
                        200,
                        json!({"kind": "bigquery#tableDataInsertAllResponse"}).to_string(),
                    )
                } else {
                    (401, json!({"error": {"code": 401, "message": "Request had invalid authentication credentials.",
                           "errors": [{"message": "Invalid Credentials", "domain": "global", "reason": "authError"}],
                           "status": "UNAUTHENTICATED"}}).to_string())
                };
            }
            respond(s).unwrap_or((404, json!({"error": "not_found"}).to_string()))
        }));
        let (srv, log) = (server.clone(), seen.clone());
        std::thread::spawn(move || {
            for mut req in srv.incoming_requests() {
                let (log, responder) = (log.clone(), responder.clone());
                std::thread::spawn(move || {
                    let mut body = Vec::new();
                    let _ = req.as_reader().read_to_end(&mut body);
                    let s = Seen {
                        method: req.method().to_string(),
                        url: req.url().to_string(),
                        headers: req
                            .headers()
                            .iter()
                            .map(|h| (h.field.to_string(), h.value.to_string()))
                            .collect(),
                        body,
                    };
                    log.lock().unwrap().push(s.clone());
                    let (code, text) = responder(&s);
                    let kind = if text.starts_with('{') {
                        "application/json"
                    } else {
                        "text/plain"
                    };
                    let _ = req.respond(
                        tiny_http::Response::from_string(text)
                            .with_status_code(code)
                            .with_header(
                                tiny_http::Header::from_bytes(&b"Content-Type"[..], kind).unwrap(),
                            ),
                    );
                });
            }
        });
        FakeGoogle {
            endpoint,
            seen,
            server,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn requests(&self, method: &str, path: &str) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.is(method, path))
            .collect()
    }

    fn inserts(&self) -> Vec<Seen> {
        self.seen()
            .into_iter()
            .filter(|s| s.method == "POST" && s.path().ends_with("/insertAll"))
            .collect()
    }
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

fn ok_json(v: Value) -> Option<(u16, String)> {
    Some((200, v.to_string()))
}

// ---------------------------------------------------------------------------------------------
// Running the binary
// ---------------------------------------------------------------------------------------------

/// A working directory with one Firehose object of `n` records under `arch/`.
fn archive(n: usize) -> tempfile::TempDir {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("arch/2026/11/25/13");
    std::fs::create_dir_all(&dir).unwrap();
    let body: String = (0..n)
        .map(|i| format!("{{\"n\":{i},\"amount\":{i}}}\n"))
        .collect();
    std::fs::write(
        dir.join("s-1-2026-11-25-13-00-00-0f8fad5b-d9cb-469f-a165-70867728950e"),
        body,
    )
    .unwrap();
    work
}

/// `firehose-replay replay arch --sink bigquery:…`, nothing inherited that could pick other
/// credentials or reach another server than the test's. Small batches and one request in
/// flight, so one object makes several insertAll requests in a row (each one authenticated).
fn replay(endpoint: Option<&str>, work: &Path) -> Command {
    let mut c = bin();
    for var in [
        "GOOGLE_APPLICATION_CREDENTIALS",
        "CLOUDSDK_CONFIG",
        "GCE_METADATA_HOST",
        "GOOGLE_CLOUD_QUOTA_PROJECT",
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        c.env_remove(var);
    }
    c.env("HOME", work)
        .current_dir(work)
        .args(["replay", "arch", "--sink", "bigquery:test-proj.bi.events"])
        .args(["--bigquery-mode", "insert-all"])
        .args([
            "--batch-rows",
            "3",
            "--max-in-flight",
            "1",
            "--concurrency",
            "1",
        ])
        .args([
            "--retry-min-delay-ms",
            "10",
            "--bigquery-timeout-secs",
            "10",
            "--log-level",
            "debug",
        ]);
    if let Some(endpoint) = endpoint {
        c.args(["--bigquery-endpoint", endpoint]);
    }
    c
}

fn logs(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit 0 and every insertAll request (all 10 rows, 4 requests of at most 3) accepted.
fn assert_all_rows_inserted(google: &FakeGoogle, out: &Output) {
    assert!(out.status.success(), "{}", stderr(out));
    let inserts = google.inserts();
    assert_eq!(inserts.len(), 4, "{inserts:?}");
    let rows: usize = inserts
        .iter()
        .map(|s| {
            let v: Value = serde_json::from_slice(&s.body).unwrap();
            v["rows"].as_array().map_or(0, Vec::len)
        })
        .sum();
    assert_eq!(rows, 10);
}

/// Debug logging was on, and none of `secrets` appears in the output.
fn assert_never_logged(out: &Output, secrets: &[&str]) {
    let logs = logs(out);
    assert!(
        logs.contains("DEBUG"),
        "debug logging is on, so the check means something: {logs}"
    );
    for secret in secrets {
        assert!(!logs.contains(secret), "secret {secret:?} logged: {logs}");
    }
}

// ---------------------------------------------------------------------------------------------
// Service account keys: self-signed JWTs
// ---------------------------------------------------------------------------------------------

/// A freshly generated service-account key.
struct Key {
    /// PKCS#8 PEM.
    pem: String,
    /// RSAPublicKey (PKCS#1) DER, what `ring` verifies with.
    public_der: Vec<u8>,
}

fn generate_key() -> Key {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    assert!(
        python.exists(),
        "{} not found: run scripts/test.sh (it installs moto, and with it `cryptography`, into .venv)",
        python.display()
    );
    let code = r#"
import json
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
pem = k.private_bytes(
    serialization.Encoding.PEM,
    serialization.PrivateFormat.PKCS8,
    serialization.NoEncryption(),
).decode()
pub = k.public_key().public_bytes(
    serialization.Encoding.DER, serialization.PublicFormat.PKCS1
).hex()
print(json.dumps({"pem": pem, "public_der": pub}))
"#;
    let out = Command::new(python)
        .arg("-c")
        .arg(code)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("python prints JSON");
    Key {
        pem: v["pem"].as_str().unwrap().to_string(),
        public_der: hex::decode(v["public_der"].as_str().unwrap()).unwrap(),
    }
}

/// The PEM's base64 body lines: any of them in the output would be key material leaking.
fn key_material(pem: &str) -> Vec<&str> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && l.len() >= 40)
        .collect()
}

/// The service-account key JSON for `key`. Its `token_uri` points at the fake so that a token
/// request, were one made, would be seen (the official crate signs its own JWTs instead).
fn key_json(google: &FakeGoogle, key: &Key) -> String {
    json!({
        "type": "service_account",
        "project_id": "test-proj",
        "private_key_id": PRIVATE_KEY_ID,
        "private_key": key.pem,
        "client_email": CLIENT_EMAIL,
        "client_id": "104242424242424242424",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": google.url(OAUTH_PATH),
        "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
        "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/replayer%40test-proj.iam.gserviceaccount.com",
        "universe_domain": "googleapis.com"
    })
    .to_string()
}

/// What is wrong with a self-signed JWT used as a bearer token (AIP-4111, scope form): Google
/// checks the RS256 signature against the key named by `kid`, `iss` = `sub` = the account,
/// the scope, and the validity window.
fn jwt_problems(jwt: &str, public_der: &[u8]) -> Vec<String> {
    let mut problems = Vec::new();
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        return vec![format!("JWT has {} parts, not 3", parts.len())];
    };
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s);
    let json_part = |s: &str| -> Result<Value, String> {
        let bytes = b64(s).map_err(|e| format!("not unpadded base64url: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))
    };
    match json_part(header) {
        Ok(h) if h["alg"] == "RS256" && h["typ"] == "JWT" && h["kid"] == PRIVATE_KEY_ID => {}
        other => problems.push(format!("JWT header {other:?}")),
    }
    match json_part(claims) {
        Ok(c) => {
            if c["iss"] != CLIENT_EMAIL || c["sub"] != CLIENT_EMAIL {
                problems.push(format!("iss {} sub {}", c["iss"], c["sub"]));
            }
            let scopes: Vec<&str> = c["scope"].as_str().unwrap_or("").split(' ').collect();
            if !scopes.contains(&SCOPE) {
                problems.push(format!("scope {}", c["scope"]));
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            match (c["iat"].as_i64(), c["exp"].as_i64()) {
                (Some(iat), Some(exp))
                    if iat <= now + 60 && now - iat <= 300 && exp > now && exp - iat <= 3700 => {}
                _ => problems.push(format!("iat {} exp {} (now {now})", c["iat"], c["exp"])),
            }
        }
        Err(e) => problems.push(format!("JWT claims {e}")),
    }
    match b64(signature) {
        Ok(sig) => {
            let key = ring::signature::UnparsedPublicKey::new(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                public_der,
            );
            if key
                .verify(format!("{header}.{claims}").as_bytes(), &sig)
                .is_err()
            {
                problems.push("RS256 signature does not verify with the key's public key".into());
            }
        }
        Err(e) => problems.push(format!("signature not base64url: {e}")),
    }
    problems
}

/// A fake Google that accepts exactly the JWTs `key` signs as the service account.
fn service_account_google(key: &Key) -> FakeGoogle {
    let public_der = key.public_der.clone();
    FakeGoogle::start(
        move |jwt| jwt_problems(jwt, &public_der).is_empty(),
        |_| None,
    )
}

/// All rows inserted with valid self-signed JWTs, and no other request (no token endpoint).
fn assert_service_account_worked(google: &FakeGoogle, key: &Key, out: &Output) {
    assert_all_rows_inserted(google, out);
    for s in google.inserts() {
        let jwt = s
            .header("Authorization")
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap();
        assert_eq!(jwt_problems(jwt, &key.public_der), Vec::<String>::new());
    }
    let other: Vec<_> = google
        .seen()
        .into_iter()
        .filter(|s| !s.path().ends_with("/insertAll") && !s.path().contains("/tables/"))
        .map(|s| format!("{} {}", s.method, s.url))
        .collect();
    assert_eq!(other, Vec::<String>::new(), "no token endpoint round trip");
}

fn write_file(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

#[test]
fn a_service_account_key_file_authenticates_every_insert_all_request() {
    let key = generate_key();
    let google = service_account_google(&key);
    let work = archive(10);
    let key_file = write_file(work.path(), "key.json", &key_json(&google, &key));
    let out = replay(Some(&google.endpoint), work.path())
        .arg("--gcp-credentials")
        .arg(&key_file)
        .output()
        .unwrap();
    assert_service_account_worked(&google, &key, &out);
}

#[test]
fn the_key_json_in_an_environment_variable_works_and_is_never_logged() {
    let key = generate_key();
    let google = service_account_google(&key);
    let work = archive(10);
    let out = replay(Some(&google.endpoint), work.path())
        .env(
            "FIREHOSE_REPLAY_GCP_CREDENTIALS_JSON",
            key_json(&google, &key),
        )
        .output()
        .unwrap();
    assert_service_account_worked(&google, &key, &out);
    let signatures: Vec<String> = google
        .inserts()
        .iter()
        .map(|s| {
            s.header("Authorization")
                .unwrap()
                .rsplit('.')
                .next()
                .unwrap()
                .to_string()
        })
        .collect();
    let mut secrets: Vec<&str> = key_material(&key.pem);
    secrets.push("PRIVATE KEY");
    secrets.extend(signatures.iter().map(String::as_str));
    assert_never_logged(&out, &secrets);
}

#[test]
fn google_application_credentials_is_used_when_no_flag_is_given() {
    let key = generate_key();
    let google = service_account_google(&key);
    let work = archive(10);
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = write_file(key_dir.path(), "key.json", &key_json(&google, &key));
    let out = replay(Some(&google.endpoint), work.path())
        .env("GOOGLE_APPLICATION_CREDENTIALS", &key_file)
        .output()
        .unwrap();
    assert_service_account_worked(&google, &key, &out);
}

#[test]
fn a_key_in_secrets_manager_is_read_once_and_used() {
    let key = generate_key();
    let google = service_account_google(&key);
    let moto = crate::moto::Moto::start();
    let arn = moto
        .python(&format!(
            r#"
import boto3
print(boto3.client("secretsmanager").create_secret(Name="firehose-replay/gcp", SecretString={:?})["ARN"])
"#,
            key_json(&google, &key)
        ))
        .trim()
        .to_string();
    let work = archive(10);
    let out = replay(Some(&google.endpoint), work.path())
        .envs(moto.env())
        .args(["--gcp-credentials-secret-arn", &arn])
        .output()
        .unwrap();
    assert_service_account_worked(&google, &key, &out);
    let mut secrets: Vec<&str> = key_material(&key.pem);
    secrets.push("PRIVATE KEY");
    assert_never_logged(&out, &secrets);
}

#[test]
fn a_key_that_is_not_a_key_fails_at_start_with_a_clear_message() {
    let key = generate_key();
    let google = service_account_google(&key);
    let work = archive(10);
    let mut doc: Value = serde_json::from_str(&key_json(&google, &key)).unwrap();
    doc["private_key"] =
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n".into();
    let key_file = write_file(work.path(), "key.json", &doc.to_string());
    let out = replay(Some(&google.endpoint), work.path())
        .arg("--gcp-credentials")
        .arg(&key_file)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot get a Google access token"),
        "names the credentials problem: {err}"
    );
    assert!(err.contains("private key"), "says what is wrong: {err}");
    assert!(google.seen().is_empty(), "nothing sent without a token");
}

// ---------------------------------------------------------------------------------------------
// authorized_user: a refresh-token grant at token_uri
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum TokenReply {
    Grant,
    /// 400 `invalid_grant`, as Google answers a revoked refresh token.
    InvalidGrant,
    /// 503, as an overloaded token endpoint answers: worth trying again later.
    Unavailable,
}

fn user_google(reply: TokenReply) -> FakeGoogle {
    FakeGoogle::start(
        |t| t == USER_TOKEN,
        move |s| {
            if !s.is("POST", OAUTH_PATH) {
                return None;
            }
            let grant_ok = s.form("grant_type").as_deref() == Some("refresh_token")
                && s.form("refresh_token").as_deref() == Some(REFRESH_TOKEN)
                && s.form("client_id").as_deref()
                    == Some("764086051850-test.apps.googleusercontent.com")
                && s.form("client_secret").as_deref() == Some(CLIENT_SECRET);
            match reply {
                TokenReply::Grant if grant_ok => ok_json(
                    json!({"access_token": USER_TOKEN, "expires_in": 3599, "token_type": "Bearer", "scope": SCOPE}),
                ),
                TokenReply::Grant | TokenReply::InvalidGrant => Some((
                    400,
                    json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."})
                        .to_string(),
                )),
                TokenReply::Unavailable => Some((
                    503,
                    json!({"error": "temporarily_unavailable"}).to_string(),
                )),
            }
        },
    )
}

fn user_json(google: &FakeGoogle) -> String {
    json!({
        "type": "authorized_user",
        "client_id": "764086051850-test.apps.googleusercontent.com",
        "client_secret": CLIENT_SECRET,
        "refresh_token": REFRESH_TOKEN,
        "token_uri": google.url(OAUTH_PATH),
        "universe_domain": "googleapis.com"
    })
    .to_string()
}

#[test]
fn gcloud_user_credentials_refresh_once_and_authenticate_every_request() {
    let google = user_google(TokenReply::Grant);
    let work = archive(10);
    let file = write_file(work.path(), "adc.json", &user_json(&google));
    let out = replay(Some(&google.endpoint), work.path())
        .arg("--gcp-credentials")
        .arg(&file)
        .output()
        .unwrap();
    assert_all_rows_inserted(&google, &out);
    let grants = google.requests("POST", OAUTH_PATH);
    assert_eq!(
        grants.len(),
        1,
        "one grant, then the cached token: {grants:?}"
    );
    assert_eq!(grants[0].form("scope").as_deref(), Some(SCOPE));
    assert_never_logged(&out, &[REFRESH_TOKEN, CLIENT_SECRET, USER_TOKEN]);
}

#[test]
fn a_token_endpoint_refusal_fails_the_run_with_googles_answer() {
    let google = user_google(TokenReply::InvalidGrant);
    let work = archive(10);
    let out = replay(Some(&google.endpoint), work.path())
        .env("FIREHOSE_REPLAY_GCP_CREDENTIALS_JSON", user_json(&google))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("cannot get a Google access token"),
        "names the credentials problem: {err}"
    );
    assert!(
        err.contains("invalid_grant"),
        "passes on Google's answer: {err}"
    );
    assert!(!google.requests("POST", OAUTH_PATH).is_empty());
    assert!(google.inserts().is_empty(), "no insertAll without a token");
}

#[test]
fn a_transient_token_failure_is_not_a_usage_error() {
    let google = user_google(TokenReply::Unavailable);
    let work = archive(10);
    let out = replay(Some(&google.endpoint), work.path())
        .env("FIREHOSE_REPLAY_GCP_CREDENTIALS_JSON", user_json(&google))
        .output()
        .unwrap();
    let err = stderr(&out);
    // 2 is for usage errors; this may pass by itself.
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot get a Google access token"), "{err}");
    assert!(
        err.contains("503"),
        "says what the endpoint answered: {err}"
    );
    assert!(google.inserts().is_empty(), "no insertAll without a token");
}

// ---------------------------------------------------------------------------------------------
// external_account: workload identity federation from AWS
// ---------------------------------------------------------------------------------------------

/// The signed GetCallerIdentity request inside an STS subject token.
struct SubjectToken {
    url: String,
    method: String,
    headers: Vec<(String, String)>,
}

impl SubjectToken {
    fn parse(token: &str) -> Result<SubjectToken, String> {
        // The token is the JSON request, URL-encoded (and form-encoded again in the body, which
        // `Seen::form` already undid).
        let json: String = form_urlencoded::parse(format!("t={token}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .ok_or("empty subject token")?;
        let v: Value = serde_json::from_str(&json).map_err(|e| format!("not JSON: {e}"))?;
        Ok(SubjectToken {
            url: v["url"].as_str().ok_or("no url")?.to_string(),
            method: v["method"].as_str().ok_or("no method")?.to_string(),
            headers: v["headers"]
                .as_array()
                .ok_or("no headers")?
                .iter()
                .map(|h| {
                    (
                        h["key"].as_str().unwrap_or("").to_string(),
                        h["value"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect(),
        })
    }

    fn header(&self, key: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, data))
}

fn hmac(key: &[u8], data: &str) -> Vec<u8> {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    ring::hmac::sign(&key, data.as_bytes()).as_ref().to_vec()
}

/// What Google (replaying the request against AWS) and AWS (checking SigV4) would find wrong
/// with a subject token, for credentials `AKID`/`AWS_SECRET` (+ `session`) in `region`. The
/// signature is recomputed from scratch, the algorithm of AWS's documentation.
fn subject_token_problems(token: &str, region: &str, session: Option<&str>) -> Vec<String> {
    let st = match SubjectToken::parse(token) {
        Ok(st) => st,
        Err(e) => return vec![e],
    };
    let mut problems = Vec::new();
    let host = format!("sts.{region}.amazonaws.com");
    let url = match reqwest::Url::parse(&st.url) {
        Ok(u) => u,
        Err(e) => return vec![format!("url {}: {e}", st.url)],
    };
    if url.scheme() != "https" || url.host_str() != Some(host.as_str()) {
        problems.push(format!("url {}", st.url));
    }
    let mut query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    query.sort();
    if query
        != [
            ("Action".to_string(), "GetCallerIdentity".to_string()),
            ("Version".to_string(), "2011-06-15".to_string()),
        ]
    {
        problems.push(format!("query {query:?}"));
    }
    if st.method != "POST" {
        problems.push(format!("method {}", st.method));
    }
    if st.header("host") != Some(host.as_str()) {
        problems.push(format!("host header {:?}", st.header("host")));
    }
    if st.header("x-goog-cloud-target-resource") != Some(AUDIENCE) {
        problems.push("x-goog-cloud-target-resource is not the audience".into());
    }
    if st.header("x-amz-security-token") != session {
        problems.push(format!(
            "x-amz-security-token {:?}",
            st.header("x-amz-security-token")
        ));
    }
    let Some(auth) = st
        .header("Authorization")
        .and_then(|a| a.strip_prefix("AWS4-HMAC-SHA256 "))
    else {
        problems.push("no SigV4 Authorization header".into());
        return problems;
    };
    let field = |name: &str| {
        auth.split(", ")
            .find_map(|p| p.strip_prefix(name).and_then(|p| p.strip_prefix('=')))
            .unwrap_or("")
    };
    let (credential, signed_headers, signature) = (
        field("Credential"),
        field("SignedHeaders"),
        field("Signature"),
    );
    let Some(amz_date) = st.header("x-amz-date") else {
        problems.push("no x-amz-date".into());
        return problems;
    };
    let scope = format!(
        "{}/{region}/sts/aws4_request",
        amz_date.get(..8).unwrap_or("")
    );
    if credential != format!("{AKID}/{scope}") {
        problems.push(format!("credential {credential}"));
    }
    let expected_signed = match session {
        Some(_) => "host;x-amz-date;x-amz-security-token;x-goog-cloud-target-resource",
        None => "host;x-amz-date;x-goog-cloud-target-resource",
    };
    if signed_headers != expected_signed {
        problems.push(format!("signed headers {signed_headers}"));
    }
    let canonical_headers: String = signed_headers
        .split(';')
        .map(|name| format!("{name}:{}\n", st.header(name).unwrap_or("").trim()))
        .collect();
    let canonical_query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let canonical_request = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        st.method,
        url.path(),
        canonical_query.join("&"),
        sha256_hex(b"")
    );
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let mut key = hmac(
        format!("AWS4{AWS_SECRET}").as_bytes(),
        amz_date.get(..8).unwrap_or(""),
    );
    for part in [region, "sts", "aws4_request"] {
        key = hmac(&key, part);
    }
    if signature != hex::encode(hmac(&key, &string_to_sign)) {
        problems.push("SigV4 signature differs from an independent computation".into());
    }
    problems
}

/// What the AWS side of a test provides: credentials in the environment, or a metadata server.
#[derive(Clone, Copy, PartialEq)]
enum Aws {
    /// `AWS_REGION=eu-west-3`, keys and session token in the environment (as on Lambda).
    Env,
    /// Nothing in the environment: IMDSv2 on the fake, zone eu-west-3b, role `replay-role`.
    Imds,
}

/// Google STS (checks the token exchange and the subject token), IAM Credentials (checks the
/// federated token) and, for [`Aws::Imds`], an EC2 metadata server (IMDSv2 only).
fn federation_google(aws: Aws, impersonate: bool) -> FakeGoogle {
    let final_token = if impersonate {
        IMPERSONATED_TOKEN
    } else {
        FEDERATED_TOKEN
    };
    FakeGoogle::start(
        move |t| t == final_token,
        move |s| {
            let imds_ok = s.header("x-aws-ec2-metadata-token") == Some(IMDS_SESSION);
            if s.is("POST", STS_PATH) {
                let mut problems = Vec::new();
                let field = |n: &str| s.form(n).unwrap_or_default();
                if field("grant_type") != "urn:ietf:params:oauth:grant-type:token-exchange" {
                    problems.push(format!("grant_type {}", field("grant_type")));
                }
                if field("audience") != AUDIENCE {
                    problems.push(format!("audience {}", field("audience")));
                }
                if field("subject_token_type") != "urn:ietf:params:aws:token-type:aws4_request" {
                    problems.push(format!(
                        "subject_token_type {}",
                        field("subject_token_type")
                    ));
                }
                if field("requested_token_type") != "urn:ietf:params:oauth:token-type:access_token"
                {
                    problems.push(format!(
                        "requested_token_type {}",
                        field("requested_token_type")
                    ));
                }
                // With impersonation, the STS token only needs to call IAM Credentials.
                let scope_ok = if impersonate {
                    [
                        "https://www.googleapis.com/auth/iam",
                        "https://www.googleapis.com/auth/cloud-platform",
                    ]
                    .contains(&field("scope").as_str())
                } else {
                    field("scope").split(' ').any(|s| s == SCOPE)
                };
                if !scope_ok {
                    problems.push(format!("scope {}", field("scope")));
                }
                let session = match aws {
                    Aws::Env => AWS_SESSION,
                    Aws::Imds => "imds-role-session-token",
                };
                problems.extend(subject_token_problems(
                    &field("subject_token"),
                    "eu-west-3",
                    Some(session),
                ));
                return Some(if problems.is_empty() {
                    (200, json!({"access_token": FEDERATED_TOKEN, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token",
                                 "token_type": "Bearer", "expires_in": 3600}).to_string())
                } else {
                    (
                        400,
                        json!({"error": "invalid_grant", "error_description": problems.join("; ")})
                            .to_string(),
                    )
                });
            }
            if s.is("POST", IMPERSONATE_PATH) {
                let body: Value = serde_json::from_slice(&s.body).unwrap_or_default();
                let scopes: Vec<&str> = body["scope"]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let bearer_ok =
                    s.header("Authorization") == Some(&format!("Bearer {FEDERATED_TOKEN}"));
                return Some(if bearer_ok && scopes.contains(&SCOPE) {
                    let expire = chrono::Utc::now() + chrono::Duration::hours(1);
                    (200, json!({"accessToken": IMPERSONATED_TOKEN,
                                 "expireTime": expire.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}).to_string())
                } else {
                    (
                        403,
                        json!({"error": {"code": 403, "status": "PERMISSION_DENIED",
                                 "message": format!("bearer ok {bearer_ok}, scopes {scopes:?}")}})
                        .to_string(),
                    )
                });
            }
            if aws == Aws::Imds {
                if s.is("PUT", IMDS_TOKEN_PATH) {
                    return Some(
                        if s.header("x-aws-ec2-metadata-token-ttl-seconds").is_some() {
                            (200, IMDS_SESSION.to_string())
                        } else {
                            (400, String::new())
                        },
                    );
                }
                if s.method == "GET" && s.path().starts_with("/latest/") {
                    if !imds_ok {
                        return Some((401, String::new()));
                    }
                    return match s.path() {
                        AZ_PATH => Some((200, "eu-west-3b".into())),
                        ROLE_PATH | "/latest/meta-data/iam/security-credentials/" => {
                            Some((200, "replay-role".into()))
                        }
                        "/latest/meta-data/iam/security-credentials/replay-role" => {
                            ok_json(json!({
                                "Code": "Success", "Type": "AWS-HMAC",
                                "AccessKeyId": AKID, "SecretAccessKey": AWS_SECRET,
                                "Token": "imds-role-session-token",
                                "Expiration": (chrono::Utc::now() + chrono::Duration::hours(6)).to_rfc3339(),
                            }))
                        }
                        _ => None,
                    };
                }
            }
            None
        },
    )
}

/// The configuration `gcloud iam workload-identity-pools create-cred-config --aws
/// --enable-imdsv2 [--service-account …]` writes, with every URL on the fake.
fn external_account_json(google: &FakeGoogle, impersonate: bool) -> String {
    let mut doc = json!({
        "universe_domain": "googleapis.com",
        "type": "external_account",
        "audience": AUDIENCE,
        "subject_token_type": "urn:ietf:params:aws:token-type:aws4_request",
        "token_url": google.url(STS_PATH),
        "credential_source": {
            "environment_id": "aws1",
            "region_url": google.url(AZ_PATH),
            "url": google.url(ROLE_PATH),
            "regional_cred_verification_url": VERIFY_URL_TEMPLATE,
            "imdsv2_session_token_url": google.url(IMDS_TOKEN_PATH),
        },
    });
    if impersonate {
        doc["service_account_impersonation_url"] = google.url(IMPERSONATE_PATH).into();
    }
    doc.to_string()
}

fn with_aws_env(c: &mut Command) -> &mut Command {
    c.env("AWS_REGION", "eu-west-3")
        .env("AWS_ACCESS_KEY_ID", AKID)
        .env("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
        .env("AWS_SESSION_TOKEN", AWS_SESSION)
}

#[test]
fn federation_from_lambda_credentials_exchanges_impersonates_and_never_logs_a_secret() {
    let google = federation_google(Aws::Env, true);
    let work = archive(10);
    let mut c = replay(Some(&google.endpoint), work.path());
    let out = with_aws_env(&mut c)
        .env(
            "FIREHOSE_REPLAY_GCP_CREDENTIALS_JSON",
            external_account_json(&google, true),
        )
        .output()
        .unwrap();
    assert_all_rows_inserted(&google, &out);
    assert_eq!(
        google.requests("POST", STS_PATH).len(),
        1,
        "one exchange, then cached"
    );
    assert_eq!(google.requests("POST", IMPERSONATE_PATH).len(), 1);
    let imds: Vec<_> = google
        .seen()
        .into_iter()
        .filter(|s| s.path().starts_with("/latest/"))
        .map(|s| format!("{} {}", s.method, s.url))
        .collect();
    assert_eq!(
        imds,
        Vec::<String>::new(),
        "region and credentials are in the environment: no metadata server (Lambda has none)"
    );
    assert_never_logged(
        &out,
        &[
            AWS_SECRET,
            AWS_SESSION,
            FEDERATED_TOKEN,
            IMPERSONATED_TOKEN,
            "AWS4-HMAC-SHA256",
        ],
    );
}

#[test]
fn federation_from_the_ec2_metadata_server_uses_imdsv2_and_the_federated_token() {
    let google = federation_google(Aws::Imds, false);
    let work = archive(10);
    let config = write_file(
        work.path(),
        "wif.json",
        &external_account_json(&google, false),
    );
    let out = replay(Some(&google.endpoint), work.path())
        .arg("--gcp-credentials")
        .arg(&config)
        .output()
        .unwrap();
    assert_all_rows_inserted(&google, &out);
    assert_eq!(google.requests("POST", STS_PATH).len(), 1);
    assert!(google.requests("POST", IMPERSONATE_PATH).is_empty());
    assert!(
        !google.requests("PUT", IMDS_TOKEN_PATH).is_empty(),
        "IMDSv2 session token"
    );
    assert!(
        !google.requests("GET", AZ_PATH).is_empty(),
        "region from the zone"
    );
    assert!(
        !google
            .requests(
                "GET",
                "/latest/meta-data/iam/security-credentials/replay-role"
            )
            .is_empty(),
        "role credentials"
    );
    assert_never_logged(
        &out,
        &[
            AWS_SECRET,
            "imds-role-session-token",
            FEDERATED_TOKEN,
            IMDS_SESSION,
        ],
    );
}

#[test]
fn a_refused_token_exchange_fails_with_the_sts_answer() {
    // The subject token is signed for other credentials than STS expects: STS refuses it.
    let google = federation_google(Aws::Env, true);
    let work = archive(10);
    let mut c = replay(Some(&google.endpoint), work.path());
    let out = with_aws_env(&mut c)
        .env("AWS_SECRET_ACCESS_KEY", "not-the-secret-aws-knows")
        .env(
            "FIREHOSE_REPLAY_GCP_CREDENTIALS_JSON",
            external_account_json(&google, true),
        )
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot get a Google access token"), "{err}");
    assert!(err.contains("invalid_grant"), "STS's answer: {err}");
    assert!(err.contains("SigV4 signature"), "STS's description: {err}");
    assert!(google.requests("POST", IMPERSONATE_PATH).is_empty());
    assert!(google.inserts().is_empty());
    assert_never_logged(&out, &["not-the-secret-aws-knows", AWS_SESSION]);
}

// ---------------------------------------------------------------------------------------------
// Application default credentials (no endpoint override, so the real BigQuery URL)
// ---------------------------------------------------------------------------------------------

/// A local HTTPS proxy that refuses every CONNECT and records its target: with `HTTPS_PROXY`
/// pointing at it, a run without `--bigquery-endpoint` shows where it would send BigQuery
/// requests, and sends nothing off this machine.
struct RefusingProxy {
    addr: String,
    targets: Arc<Mutex<Vec<String>>>,
    server: Arc<tiny_http::Server>,
}

impl RefusingProxy {
    fn start() -> RefusingProxy {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let addr = format!("http://{}", server.server_addr().to_ip().unwrap());
        let targets: Arc<Mutex<Vec<String>>> = Arc::default();
        let (srv, t) = (server.clone(), targets.clone());
        std::thread::spawn(move || {
            for req in srv.incoming_requests() {
                t.lock()
                    .unwrap()
                    .push(format!("{} {}", req.method(), req.url()));
                let _ = req.respond(tiny_http::Response::empty(403));
            }
        });
        RefusingProxy {
            addr,
            targets,
            server,
        }
    }
}

impl Drop for RefusingProxy {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

/// ADC's token obtained, then BigQuery tried at its real address (through the refusing proxy).
fn assert_adc_token_then_bigquery(proxy: &RefusingProxy, out: &Output) {
    let err = stderr(out);
    assert!(
        err.contains("Google access token obtained"),
        "the up-front token: {err}"
    );
    let targets = proxy.targets.lock().unwrap().clone();
    assert!(
        targets
            .iter()
            .any(|t| t.contains("bigquery.googleapis.com:443")),
        "BigQuery tried after the token: {targets:?}\n{err}"
    );
}

fn adc_replay(work: &Path, proxy: &RefusingProxy) -> Command {
    let mut c = replay(None, work);
    c.env("HTTPS_PROXY", &proxy.addr)
        .env("NO_PROXY", "127.0.0.1,localhost")
        .args(["--insert-max-attempts", "1"]);
    c
}

#[test]
fn without_credentials_the_metadata_server_gives_the_token() {
    let google = FakeGoogle::start(
        |_| false,
        |s| {
            (s.is("GET", MDS_TOKEN_PATH) && s.header("Metadata-Flavor") == Some("Google")).then(
                || {
                    (
                        200,
                        json!({"access_token": MDS_TOKEN, "expires_in": 3599, "token_type": "Bearer"})
                            .to_string(),
                    )
                },
            )
        },
    );
    let proxy = RefusingProxy::start();
    let work = archive(10);
    let host = google.endpoint.trim_start_matches("http://").to_string();
    let out = adc_replay(work.path(), &proxy)
        .env("GCE_METADATA_HOST", &host)
        .output()
        .unwrap();
    let tokens = google.requests("GET", MDS_TOKEN_PATH);
    assert_eq!(tokens.len(), 1, "{}", stderr(&out));
    assert_eq!(tokens[0].query("scopes").as_deref(), Some(SCOPE));
    assert_adc_token_then_bigquery(&proxy, &out);
    assert_never_logged(&out, &[MDS_TOKEN]);
}

#[test]
fn without_credentials_gclouds_well_known_file_is_used() {
    let google = user_google(TokenReply::Grant);
    let proxy = RefusingProxy::start();
    let work = archive(10);
    let gcloud = work.path().join(".config/gcloud");
    std::fs::create_dir_all(&gcloud).unwrap();
    write_file(
        &gcloud,
        "application_default_credentials.json",
        &user_json(&google),
    );
    let out = adc_replay(work.path(), &proxy).output().unwrap();
    assert_eq!(
        google.requests("POST", OAUTH_PATH).len(),
        1,
        "{}",
        stderr(&out)
    );
    assert_adc_token_then_bigquery(&proxy, &out);
    assert_never_logged(&out, &[REFRESH_TOKEN, CLIENT_SECRET, USER_TOKEN]);
}

#[test]
fn with_an_endpoint_and_no_credentials_requests_go_unauthenticated() {
    let google = FakeGoogle::start(|_| false, |_| None);
    let work = archive(10);
    let out = replay(Some(&google.endpoint), work.path())
        .output()
        .unwrap();
    let inserts = google.inserts();
    assert!(!inserts.is_empty(), "{}", stderr(&out));
    for s in inserts {
        assert_eq!(s.header("Authorization"), None);
    }
    assert!(stderr(&out).contains("sending requests unauthenticated"));
}
