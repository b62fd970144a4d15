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
