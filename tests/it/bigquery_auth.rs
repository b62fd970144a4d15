//! The BigQuery sink's service-account credentials end to end through the real binary: a key
//! generated at test time (RSA, PKCS#8 PEM, by the `cryptography` package in .venv), a key JSON
//! whose `token_uri` points at a local fake OAuth server, and the same server answering
//! insertAll. The server checks the JWT assertion (claims and RS256 signature against the
//! generated public key) before handing out a token, and records each insertAll request's
//! `Authorization` header.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{json, Value};

use crate::support::bin;

const TOKEN: &str = "ya29.test-token";
const TOKEN_PATH: &str = "/oauth2/v4/token";
const CLIENT_EMAIL: &str = "replayer@test-proj.iam.gserviceaccount.com";
const SCOPE: &str = "https://www.googleapis.com/auth/bigquery";

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

/// One token request as the server saw it.
#[derive(Debug, Clone)]
struct TokenRequest {
    /// Why the assertion is not what Google would accept; empty when it is.
    problems: Vec<String>,
}

#[derive(Clone, Copy)]
enum TokenReply {
    Grant,
    /// 400 `invalid_grant`, as Google answers a key it does not know.
    InvalidGrant,
    /// 503, as an overloaded or unreachable token endpoint answers: worth trying again later.
    Unavailable,
}

/// `(Authorization header, rows in the request)` per insertAll request.
type Inserts = Arc<Mutex<Vec<(Option<String>, usize)>>>;

/// A fake Google: the OAuth token endpoint and insertAll on one port.
struct FakeGoogle {
    endpoint: String,
    token_requests: Arc<Mutex<Vec<TokenRequest>>>,
    inserts: Inserts,
    /// Any other request (method and URL): there should be none.
    unexpected: Arc<Mutex<Vec<String>>>,
    server: Arc<tiny_http::Server>,
}

impl FakeGoogle {
    fn start(public_der: Vec<u8>, reply: TokenReply) -> FakeGoogle {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let endpoint = format!("http://{}", server.server_addr().to_ip().unwrap());
        let token_uri = format!("{endpoint}{TOKEN_PATH}");
        let token_requests: Arc<Mutex<Vec<TokenRequest>>> = Arc::default();
        let inserts: Inserts = Arc::default();
        let unexpected: Arc<Mutex<Vec<String>>> = Arc::default();
        let public_der = Arc::new(public_der);
        let (srv, tokens, ins, other) = (
            server.clone(),
            token_requests.clone(),
            inserts.clone(),
            unexpected.clone(),
        );
        std::thread::spawn(move || {
            for mut req in srv.incoming_requests() {
                let (tokens, ins, other, public_der, token_uri) = (
                    tokens.clone(),
                    ins.clone(),
                    other.clone(),
                    public_der.clone(),
                    token_uri.clone(),
                );
                std::thread::spawn(move || {
                    let mut body = Vec::new();
                    req.as_reader().read_to_end(&mut body).unwrap();
                    let json_response = |code: u16, v: Value| {
                        tiny_http::Response::from_string(v.to_string())
                            .with_status_code(code)
                            .with_header(
                                tiny_http::Header::from_bytes(
                                    &b"Content-Type"[..],
                                    &b"application/json"[..],
                                )
                                .unwrap(),
                            )
                    };
                    let url = req.url().to_string();
                    let post = *req.method() == tiny_http::Method::Post;
                    if post && url == TOKEN_PATH {
                        let problems = check_token_request(&req, &body, &token_uri, &public_der);
                        tokens.lock().unwrap().push(TokenRequest {
                            problems: problems.clone(),
                        });
                        let answer = match reply {
                            TokenReply::Grant if problems.is_empty() => json_response(
                                200,
                                json!({"access_token": TOKEN, "expires_in": 3600, "token_type": "Bearer"}),
                            ),
                            TokenReply::Grant => json_response(
                                400,
                                json!({"error": "invalid_grant", "error_description": problems.join("; ")}),
                            ),
                            TokenReply::InvalidGrant => json_response(
                                400,
                                json!({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}),
                            ),
                            TokenReply::Unavailable => {
                                json_response(503, json!({"error": "temporarily_unavailable"}))
                            }
                        };
                        let _ = req.respond(answer);
                    } else if post && url.ends_with("/insertAll") {
                        let authorization = req
                            .headers()
                            .iter()
                            .find(|h| h.field.equiv("Authorization"))
                            .map(|h| h.value.to_string());
                        let v: Value =
                            serde_json::from_slice(&body).expect("insertAll bodies are JSON");
                        let rows = v["rows"].as_array().map_or(0, Vec::len);
                        ins.lock().unwrap().push((authorization.clone(), rows));
                        if authorization.as_deref() == Some(&format!("Bearer {TOKEN}")) {
                            let _ = req.respond(json_response(
                                200,
                                json!({"kind": "bigquery#tableDataInsertAllResponse"}),
                            ));
                        } else {
                            let _ = req.respond(json_response(
                                401,
                                json!({"error": {"code": 401, "message": "Request is missing required authentication credential.",
                                       "errors": [{"message": "Login Required.", "domain": "global", "reason": "required"}],
                                       "status": "UNAUTHENTICATED"}}),
                            ));
                        }
                    } else {
                        other
                            .lock()
                            .unwrap()
                            .push(format!("{} {url}", req.method()));
                        let _ = req.respond(json_response(404, json!({})));
                    }
                });
            }
        });
        FakeGoogle {
            endpoint,
            token_requests,
            inserts,
            unexpected,
            server,
        }
    }

    fn token_uri(&self) -> String {
        format!("{}{TOKEN_PATH}", self.endpoint)
    }

    fn token_requests(&self) -> Vec<TokenRequest> {
        self.token_requests.lock().unwrap().clone()
    }

    fn inserts(&self) -> Vec<(Option<String>, usize)> {
        self.inserts.lock().unwrap().clone()
    }

    fn unexpected(&self) -> Vec<String> {
        self.unexpected.lock().unwrap().clone()
    }

    /// The service-account key JSON for `key`, pointing at this server.
    fn key_json(&self, key: &Key) -> String {
        json!({
            "type": "service_account",
            "project_id": "test-proj",
            "private_key_id": "0123456789abcdef0123456789abcdef01234567",
            "private_key": key.pem,
            "client_email": CLIENT_EMAIL,
            "client_id": "104242424242424242424",
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri(),
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": "https://www.googleapis.com/robot/v1/metadata/x509/replayer%40test-proj.iam.gserviceaccount.com",
            "universe_domain": "googleapis.com"
        })
        .to_string()
    }
}

impl Drop for FakeGoogle {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

/// What is wrong with a token request (the JWT-bearer grant of RFC 7523 as Google takes it).
fn check_token_request(
    req: &tiny_http::Request,
    body: &[u8],
    token_uri: &str,
    public_der: &[u8],
) -> Vec<String> {
    let mut problems = Vec::new();
    let content_type = req
        .headers()
        .iter()
        .find(|h| h.field.equiv("Content-Type"))
        .map(|h| h.value.to_string())
        .unwrap_or_default();
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        problems.push(format!("content type {content_type:?}"));
    }
    let form: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    if field("grant_type") != Some("urn:ietf:params:oauth:grant-type:jwt-bearer") {
        problems.push(format!("grant_type {:?}", field("grant_type")));
    }
    let Some(assertion) = field("assertion") else {
        problems.push("no assertion".into());
        return problems;
    };
    let parts: Vec<&str> = assertion.split('.').collect();
    let [header, claims, signature] = parts[..] else {
        problems.push(format!("assertion has {} parts, not 3", parts.len()));
        return problems;
    };
    // yup-oauth2 pads its base64url; JWTs (RFC 7515) should not, but Google accepts both.
    let b64 =
        |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('='));
    let json_part = |s: &str| -> Result<Value, String> {
        let bytes = b64(s).map_err(|e| format!("not base64url: {e}"))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))
    };
    match json_part(header) {
        Ok(h) if h["alg"] == "RS256" => {}
        other => problems.push(format!("JWT header {other:?}")),
    }
    match json_part(claims) {
        Ok(c) => {
            if c["iss"] != CLIENT_EMAIL {
                problems.push(format!("iss {}", c["iss"]));
            }
            if c["aud"] != token_uri {
                problems.push(format!("aud {} (token_uri {token_uri})", c["aud"]));
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
                    if (iat - now).abs() <= 300 && exp > now && exp - iat <= 3600 => {}
                _ => problems.push(format!("iat {} exp {} (now {now})", c["iat"], c["exp"])),
            }
        }
        Err(e) => problems.push(format!("JWT claims {e}")),
    }
    match b64(signature) {
        Ok(sig) => {
            let signed = format!("{header}.{claims}");
            let key = ring::signature::UnparsedPublicKey::new(
                &ring::signature::RSA_PKCS1_2048_8192_SHA256,
                public_der,
            );
            if key.verify(signed.as_bytes(), &sig).is_err() {
                problems.push("RS256 signature does not verify with the key's public key".into());
            }
        }
        Err(e) => problems.push(format!("signature not base64url: {e}")),
    }
    problems
}

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

/// `firehose-replay replay arch --sink bigquery:… --bigquery-endpoint …`, nothing inherited
/// that could pick credentials other than the ones the test gives. Small batches and one
/// request in flight, so one object makes several insertAll requests in a row.
fn replay(google: &FakeGoogle, work: &Path) -> Command {
    let mut c = bin();
    c.env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("CLOUDSDK_CONFIG")
        .env("HOME", work)
        .current_dir(work)
        .args(["replay", "arch", "--sink", "bigquery:test-proj.bi.events"])
        .args([
            "--bigquery-endpoint",
            &google.endpoint,
            "--bigquery-mode",
            "insert-all",
        ])
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
        ]);
    c
}

fn write_key_file(google: &FakeGoogle, key: &Key, dir: &Path) -> PathBuf {
    let path = dir.join("key.json");
    std::fs::write(&path, google.key_json(key)).unwrap();
    path
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Exit 0, the token fetched once with a valid assertion, and every insertAll request (all
/// 10 rows, 4 requests of at most 3) carrying it.
fn assert_authenticated(google: &FakeGoogle, out: &Output) {
    assert!(out.status.success(), "{}", stderr(out));
    let tokens = google.token_requests();
    assert_eq!(
        tokens.len(),
        1,
        "one token request, then the cached token: {tokens:?}"
    );
    assert!(
        tokens[0].problems.is_empty(),
        "the JWT assertion: {:?}",
        tokens[0].problems
    );
    let inserts = google.inserts();
    assert_eq!(inserts.len(), 4, "{inserts:?}");
    assert_eq!(inserts.iter().map(|(_, rows)| rows).sum::<usize>(), 10);
    for (authorization, _) in &inserts {
        assert_eq!(authorization.as_deref(), Some("Bearer ya29.test-token"));
    }
    assert_eq!(google.unexpected(), Vec::<String>::new());
}

#[test]
fn a_service_account_key_file_authenticates_every_insert_all_request() {
    let key = generate_key();
    let google = FakeGoogle::start(key.public_der.clone(), TokenReply::Grant);
    let work = archive(10);
    let key_file = write_key_file(&google, &key, work.path());
    let out = replay(&google, work.path())
        .arg("--gcp-credentials")
        .arg(&key_file)
        .output()
        .unwrap();
    assert_authenticated(&google, &out);
}

#[test]
fn the_key_json_in_an_environment_variable_works_and_is_never_logged() {
    let key = generate_key();
    let google = FakeGoogle::start(key.public_der.clone(), TokenReply::Grant);
    let work = archive(10);
    let out = replay(&google, work.path())
        .env(
            "FIREHOSE_REPLAY_GCP_CREDENTIALS_JSON",
            google.key_json(&key),
        )
        .args(["--log-level", "debug"])
        .output()
        .unwrap();
    assert_authenticated(&google, &out);
    let logs = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert!(
        logs.contains("DEBUG"),
        "debug logging is on, so the check below means something: {logs}"
    );
    for line in key_material(&key.pem) {
        assert!(!logs.contains(line), "private key material logged: {logs}");
    }
    assert!(!logs.contains("PRIVATE KEY"), "private key logged: {logs}");
    assert!(!logs.contains(TOKEN), "access token logged: {logs}");
    assert!(
        !logs.contains("assertion="),
        "signed JWT assertion (exchangeable for tokens) logged: {logs}"
    );
}

#[test]
fn google_application_credentials_is_used_when_no_flag_is_given() {
    let key = generate_key();
    let google = FakeGoogle::start(key.public_der.clone(), TokenReply::Grant);
    let work = archive(10);
    let key_dir = tempfile::tempdir().unwrap();
    let key_file = write_key_file(&google, &key, key_dir.path());
    let out = replay(&google, work.path())
        .env("GOOGLE_APPLICATION_CREDENTIALS", &key_file)
        .output()
        .unwrap();
    assert_authenticated(&google, &out);
}

#[test]
fn a_token_endpoint_refusal_fails_the_object_with_a_clear_message() {
    let key = generate_key();
    let google = FakeGoogle::start(key.public_der.clone(), TokenReply::InvalidGrant);
    let work = archive(10);
    let key_file = write_key_file(&google, &key, work.path());
    let out = replay(&google, work.path())
        .arg("--gcp-credentials")
        .arg(&key_file)
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
    assert!(!google.token_requests().is_empty());
    assert_eq!(google.inserts(), Vec::new(), "no insertAll without a token");
    assert_eq!(google.unexpected(), Vec::<String>::new());
}

#[test]
fn a_transient_token_failure_is_not_a_usage_error() {
    let key = generate_key();
    let google = FakeGoogle::start(key.public_der.clone(), TokenReply::Unavailable);
    let work = archive(10);
    let key_file = write_key_file(&google, &key, work.path());
    let out = replay(&google, work.path())
        .arg("--gcp-credentials")
        .arg(&key_file)
        .output()
        .unwrap();
    let err = stderr(&out);
    // 2 is for usage errors; this may pass by itself.
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("token"), "{err}");
    assert_eq!(google.inserts(), Vec::new(), "no insertAll without a token");
}
