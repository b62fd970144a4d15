//! The PostgreSQL sink's connection: TLS verified against the given CA (and refused without
//! it), and the password from `PGPASSWORD` or from Secrets Manager (moto).

use crate::moto::Moto;
use crate::pg_server::{Options, PgServer};
use crate::postgres::{archive, events_table, ns, numbered_objects, replay, run, run_ok};

#[test]
fn tls_verifies_the_server_against_sslrootcert_and_refuses_an_unknown_issuer() {
    let pg = PgServer::start_with(Options {
        tls: true,
        password_user: Some(("app", "tls-pw")),
        cleartext: false,
    });
    events_table(&pg, "events");
    pg.psql("GRANT ALL ON events TO app");
    let work = tempfile::tempdir().unwrap();
    archive(work.path(), &numbered_objects(1, 4));
    let ca = pg.ca.as_ref().unwrap().display().to_string();
    let url = |extra: &str| {
        format!(
            "postgres://app@localhost:{}/postgres?table=events{extra}",
            pg.port
        )
    };
    // The system's roots do not know the test CA: refused, nothing written.
    let mut cmd = replay(work.path(), &url("&sslmode=verify-full"));
    cmd.env("PGPASSWORD", "tls-pw");
    let (code, err) = run(cmd);
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
    assert_eq!(pg.count("events"), 0);
    // With the CA (the URL's sslrootcert, or PGSSLROOTCERT) and the password from PGPASSWORD.
    let mut cmd = replay(
        work.path(),
        &url(&format!("&sslmode=require&sslrootcert={ca}")),
    );
    cmd.env("PGPASSWORD", "tls-pw");
    run_ok(cmd);
    assert_eq!(ns(&pg, "events"), vec![0, 1, 2, 3]);
    // A wrong password is refused (the role really needs one).
    let mut cmd = replay(work.path(), &url(&format!("&sslrootcert={ca}")));
    cmd.env("PGPASSWORD", "wrong").arg("--force");
    let (code, err) = run(cmd);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("password"), "{err}");
}

#[test]
fn sslmode_require_refuses_a_server_without_tls() {
    let pg = PgServer::start();
    events_table(&pg, "events");
    let work = tempfile::tempdir().unwrap();
    archive(work.path(), &numbered_objects(1, 2));
    let (code, err) = run(replay(
        work.path(),
        &format!("{}&sslmode=require", pg.sink("events")),
    ));
    assert_ne!(code, Some(0), "{err}");
    assert_eq!(pg.count("events"), 0);
}

#[test]
fn the_password_comes_from_an_rds_style_secret() {
    let pg = PgServer::start_with(Options {
        tls: false,
        password_user: Some(("app", "s3cr3t-from-sm")),
        cleartext: false,
    });
    events_table(&pg, "events");
    pg.psql("GRANT ALL ON events TO app");
    let moto = Moto::start();
    let arn = moto
        .python(
            r#"
import boto3, json
print(boto3.client("secretsmanager").create_secret(Name="rds/app", SecretString=json.dumps({"username": "app", "password": "s3cr3t-from-sm", "engine": "postgres"}))["ARN"])
"#,
        )
        .trim()
        .to_string();
    let work = tempfile::tempdir().unwrap();
    archive(work.path(), &numbered_objects(2, 3));
    // No user in the URL: the secret's username is used, with its password.
    let url = format!(
        "postgres://127.0.0.1:{}/postgres?table=events&sslmode=disable",
        pg.port
    );
    // Without the secret: no password, refused.
    let mut cmd = replay(work.path(), &url);
    cmd.env("PGUSER", "app");
    let (code, err) = run(cmd);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("password"), "{err}");
    let mut cmd = replay(work.path(), &url);
    cmd.envs(moto.env())
        .env_remove("PGUSER")
        .env("FIREHOSE_REPLAY_POSTGRES_SECRET_ARN", &arn);
    run_ok(cmd);
    assert_eq!(ns(&pg, "events"), (0..6).collect::<Vec<u64>>());
}

/// `--postgres-iam-auth`: the password sent is an RDS IAM token for the URL's host, port and
/// user, signed with the environment's AWS credentials. The local server cannot check SigV4 (only
/// RDS can), so it refuses the token; a proxy in between reads the cleartext password message.
#[test]
fn iam_auth_sends_a_fresh_rds_token_as_the_password() {
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::sync::{Arc, Mutex};

    let pg = PgServer::start_with(Options {
        tls: false,
        password_user: Some(("iam_app", "not-the-token")),
        cleartext: true,
    });
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(Mutex::new(Vec::<u8>::new()));
    let seen = sent.clone();
    let upstream = pg.port;
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let mut server = TcpStream::connect(("127.0.0.1", upstream)).unwrap();
            let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut s2, &mut c2);
            });
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = client.read(&mut buf) {
                    if n == 0 || server.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                }
                let _ = server.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    let work = tempfile::tempdir().unwrap();
    archive(work.path(), &numbered_objects(1, 3));
    let url = format!("postgres://iam_app@127.0.0.1:{port}/postgres?table=events&sslmode=disable");
    let mut cmd = replay(work.path(), &url);
    cmd.arg("--postgres-iam-auth")
        .env("AWS_ACCESS_KEY_ID", "AKIDIAMTEST")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_REGION", "eu-west-1")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE");
    let (code, err) = run(cmd);
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("password authentication failed"), "{err}");
    let sent = String::from_utf8_lossy(&sent.lock().unwrap()).into_owned();
    let token_start = format!(
        "127.0.0.1:{port}/?Action=connect&DBUser=iam_app&X-Amz-Algorithm=AWS4-HMAC-SHA256&\
         X-Amz-Credential=AKIDIAMTEST%2F"
    );
    let at = sent
        .find(&token_start)
        .unwrap_or_else(|| panic!("no token in {sent:?}"));
    let token = &sent[at..];
    assert!(
        token.contains("%2Feu-west-1%2Frds-db%2Faws4_request&X-Amz-Date="),
        "{token}"
    );
    assert!(
        token.contains("&X-Amz-Expires=900&X-Amz-SignedHeaders=host&X-Amz-Signature="),
        "{token}"
    );
}
