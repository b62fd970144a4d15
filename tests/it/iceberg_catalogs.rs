//! The Iceberg sink's catalogs beyond SQL-on-a-local-directory (issue 29): an S3 warehouse
//! (moto), the Glue catalog and S3 Tables (moto implements both), and a REST catalog
//! (tests/iceberg_rest_server.py: pyiceberg's SqlCatalog behind the REST routes). Every table is
//! read back by pyiceberg and DuckDB (httpfs for S3), never through this project's code.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

use crate::harness::archive;
use crate::iceberg_tables::{lines, tool};
use crate::moto::{create_bucket, rt, Moto};
use crate::support::bin;

fn key(hour: u32, n: u32) -> String {
    format!("2026/12/07/{hour:02}/s-1-2026-12-07-{hour:02}-00-00-6a1f0c1e-2b3c-4d5e-8f90-{n:012}")
}

/// A replay of `src` into `sink` with `env`, its exit code and stderr.
fn replay(
    work: &Path,
    src: &Path,
    sink: &str,
    env: &[(String, String)],
    extra: &[&str],
) -> (Option<i32>, String) {
    let out = bin()
        .current_dir(work)
        .args(["replay", src.to_str().unwrap(), "--sink", sink])
        .args(["--ledger", "file:ledger.jsonl"])
        .args(extra)
        .envs(env.iter().cloned())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Three small objects of 4 rows each: `{"k": "o<object>r<row>", "n": row}`.
fn small_archive(src: &Path) {
    let objects: Vec<(String, Vec<Value>)> = (0..3)
        .map(|o| {
            (
                key(10 + o, o),
                (0..4)
                    .map(|r| json!({"k": format!("o{o}r{r}"), "n": r}))
                    .collect(),
            )
        })
        .collect();
    archive(src, &objects);
}

/// The `k` values of `rows`, sorted.
fn keys(rows: &[Value]) -> Vec<String> {
    let mut k: Vec<String> = rows
        .iter()
        .map(|r| r["k"].as_str().unwrap().to_string())
        .collect();
    k.sort();
    k
}

fn want_keys() -> Vec<String> {
    let mut k: Vec<String> = (0..3)
        .flat_map(|o| (0..4).map(move |r| format!("o{o}r{r}")))
        .collect();
    k.sort();
    k
}

/// pyiceberg's and DuckDB's rows of the table whose metadata file is `metadata` on moto's S3.
fn read_s3_table(moto: &Moto, metadata: &str) -> (Vec<Value>, Vec<Value>) {
    let cfg = json!({"metadata": metadata, "s3": {"endpoint": moto.endpoint}});
    let py = lines(&tool(&cfg, &["static-rows"]));
    let mut duck = lines(&tool(&cfg, &["scan"]));
    duck.pop(); // the types
    (py, duck)
}

/// Deterministic, poorly compressible text (xorshift over printable ASCII), so that a few
/// hundred thousand rows make Parquet data files of several MiB.
fn noise(seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'#' + (x % 90) as u8)
        })
        .collect()
}

#[test]
fn iceberg_an_s3_warehouse_takes_big_files_in_parts_and_a_rerun_adds_nothing() {
    let moto = Moto::start();
    let s3 = moto.s3();
    rt().block_on(create_bucket(&s3, "lake"));
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("catalog.db");
    let cfg = json!({"db": db, "warehouse": "s3://lake/wh", "table": "analytics.events",
                     "s3": {"endpoint": moto.endpoint}});
    let schema = json!([
        ["_replay_row_id", "string", true],
        ["k", "string", false],
        ["n", "long", false],
        ["pad", "string", false]
    ]);
    tool(&cfg, &["create", &schema.to_string()]);
    // 4 objects × 5,000 rows of 640 noisy characters: one data file of ~10 MiB, written with
    // 1 MiB row groups (writes S3 would refuse as parts of their own).
    let src = tmp.path().join("src");
    let objects: Vec<(String, Vec<Value>)> = (0..4u32)
        .map(|o| {
            let rows = (0..5_000u64)
                .map(|r| json!({"k": format!("o{o}r{r}"), "n": r, "pad": noise(u64::from(o) << 32 | r, 640)}))
                .collect();
            (key(10 + o, o), rows)
        })
        .collect();
    archive(&src, &objects);
    let sink = format!(
        "iceberg:sqlite://{}?warehouse=s3://lake/wh#analytics.events",
        db.display()
    );
    let env = moto.env();
    let (code, stderr) = replay(
        tmp.path(),
        &src,
        &sink,
        &env,
        &["--iceberg-row-group-mib", "1"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("20000 rows written"), "{stderr}");

    // The data files are on S3 (none under the working directory), the big one uploaded in
    // parts (a multipart ETag is `"<md5>-<parts>"`).
    let listed = rt().block_on(async {
        s3.list_objects_v2()
            .bucket("lake")
            .prefix("wh/analytics/events/data/")
            .send()
            .await
            .unwrap()
    });
    let files: Vec<(String, i64)> = listed
        .contents()
        .iter()
        .map(|o| (o.key().unwrap().to_string(), o.size().unwrap()))
        .collect();
    assert!(
        !files.is_empty()
            && files
                .iter()
                .all(|(k, _)| k.contains("/fr-") && k.ends_with(".parquet")),
        "{files:?}"
    );
    let (big, size) = files.iter().max_by_key(|(_, s)| *s).unwrap();
    assert!(*size > 8 << 20, "{files:?}");
    let head = rt().block_on(async {
        s3.head_object()
            .bucket("lake")
            .key(big)
            .send()
            .await
            .unwrap()
    });
    let etag = head.e_tag().unwrap().trim_matches('"').to_string();
    let parts: u32 = etag
        .rsplit_once('-')
        .map(|(_, n)| n.parse().unwrap())
        .unwrap_or(1);
    assert!(parts >= 2, "{big}: ETag {etag} is not a multipart upload's");

    let rows = lines(&tool(&cfg, &["rows"]));
    assert_eq!(rows.len(), 20_000);
    let one = rows.iter().find(|r| r["k"] == json!("o3r4999")).unwrap();
    assert_eq!(
        (&one["n"], &one["pad"]),
        (&json!(4_999), &json!(noise(3 << 32 | 4_999, 640)))
    );
    let mut duck = lines(&tool(&cfg, &["duckdb"]));
    duck.pop();
    assert_eq!(duck.len(), 20_000);

    // A rerun finds every object done: no snapshot, no row more.
    let snapshots = lines(&tool(&cfg, &["snapshots"])).len();
    let (code, stderr) = replay(tmp.path(), &src, &sink, &env, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(lines(&tool(&cfg, &["snapshots"])).len(), snapshots);
    assert_eq!(lines(&tool(&cfg, &["rows"])).len(), 20_000);
}

#[test]
fn iceberg_glue_catalog_creates_and_appends_to_a_table_on_s3() {
    let moto = Moto::start();
    rt().block_on(create_bucket(&moto.s3(), "lake"));
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_archive(&src);
    let sink = "iceberg:glue://?warehouse=s3://lake/wh#analytics.events";
    let env = moto.env();
    let (code, stderr) = replay(tmp.path(), &src, sink, &env, &["--create-table", "auto"]);
    assert_eq!(code, Some(0), "{stderr}");
    // Glue holds the table (as Athena and Spark find it) and its current metadata file.
    let glue = "import boto3; t = boto3.client('glue').get_table(DatabaseName='analytics', \
                Name='events')['Table']; print(t['Parameters']['table_type'], \
                t['Parameters']['metadata_location'])";
    let out = moto.python(glue);
    let (kind, metadata) = out.trim().split_once(' ').unwrap();
    assert_eq!(kind.to_uppercase(), "ICEBERG");
    assert!(metadata.starts_with("s3://lake/wh/analytics"), "{metadata}");
    let (py, duck) = read_s3_table(&moto, metadata);
    assert_eq!((keys(&py), keys(&duck)), (want_keys(), want_keys()));

    let (code, stderr) = replay(tmp.path(), &src, sink, &env, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let out = moto.python(glue);
    let metadata = out.trim().split_once(' ').unwrap().1.to_string();
    assert_eq!(
        keys(&read_s3_table(&moto, &metadata).0),
        want_keys(),
        "a rerun adds nothing"
    );
}

#[test]
fn iceberg_s3_tables_catalog_appends_to_a_table_in_its_table_bucket() {
    let moto = Moto::start();
    let arn = moto.python(
        "import boto3; c = boto3.client('s3tables'); \
         arn = c.create_table_bucket(name='lake')['arn']; \
         c.create_namespace(tableBucketARN=arn, namespace=['analytics']); print(arn)",
    );
    let arn = arn.trim();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_archive(&src);
    let sink = format!("iceberg:s3tables:{arn}#analytics.events");
    let (code, stderr) = replay(
        tmp.path(),
        &src,
        &sink,
        &moto.env(),
        &["--create-table", "auto"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let metadata = moto.python(&format!(
        "import boto3; print(boto3.client('s3tables').get_table_metadata_location(\
         tableBucketARN='{arn}', namespace='analytics', name='events')['metadataLocation'])"
    ));
    let (py, duck) = read_s3_table(&moto, metadata.trim());
    assert_eq!((keys(&py), keys(&duck)), (want_keys(), want_keys()));
}

/// tests/iceberg_rest_server.py on a free port, killed when dropped.
struct RestServer {
    child: Child,
    url: String,
}

impl RestServer {
    fn start(cfg: &Value) -> RestServer {
        let python = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-iceberg/bin/python");
        let mut child = Command::new(python)
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/iceberg_rest_server.py"))
            .arg(cfg.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // The server prints its port once it listens.
        let mut port = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut port)
            .unwrap();
        let port: u16 = port.trim().parse().expect("the REST server's port");
        RestServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for RestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn iceberg_rest_catalog_with_a_bearer_token_from_the_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("rest.db");
    let wh = tmp.path().join("wh");
    std::fs::create_dir_all(&wh).unwrap();
    let server = RestServer::start(&json!({"db": db, "warehouse": wh, "token": "s3cr3t"}));
    let src = tmp.path().join("src");
    small_archive(&src);
    let sink = format!("iceberg:rest+{}#analytics.events", server.url);

    // Without the token the server refuses: the run fails and says so, the token never shows.
    let (code, stderr) = replay(tmp.path(), &src, &sink, &[], &["--create-table", "auto"]);
    assert_ne!(code, Some(0), "{stderr}");
    let token = [(
        "FIREHOSE_REPLAY_ICEBERG_REST_TOKEN".to_string(),
        "s3cr3t".to_string(),
    )];
    let (code, stderr) = replay(tmp.path(), &src, &sink, &token, &["--create-table", "auto"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("s3cr3t"), "{stderr}");

    // The server's own catalog tables, read by pyiceberg and DuckDB directly.
    let cfg = json!({"db": db, "warehouse": wh, "table": "analytics.events"});
    let py = lines(&tool(&cfg, &["rows"]));
    let mut duck = lines(&tool(&cfg, &["duckdb"]));
    duck.pop();
    assert_eq!((keys(&py), keys(&duck)), (want_keys(), want_keys()));
    let (code, stderr) = replay(tmp.path(), &src, &sink, &token, &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        lines(&tool(&cfg, &["rows"])).len(),
        12,
        "a rerun adds nothing"
    );
}

#[test]
fn iceberg_a_missing_warehouse_bucket_or_a_signed_rest_catalog_is_refused_at_start() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_archive(&src);
    let sink = format!(
        "iceberg:sqlite://{}?warehouse=s3://no-such-bucket/wh#ns.t",
        tmp.path().join("c.db").display()
    );
    let (code, stderr) = replay(
        tmp.path(),
        &src,
        &sink,
        &moto.env(),
        &["--create-table", "auto"],
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("the warehouse bucket `no-such-bucket` does not exist"),
        "{stderr}"
    );

    let sink = "iceberg:rest+https://glue.us-east-1.amazonaws.com/iceberg?warehouse=123456789012&sigv4=glue#ns.t";
    let (code, stderr) = replay(tmp.path(), &src, sink, &moto.env(), &[]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("iceberg-catalog-rest 0.10 sends bearer tokens only"),
        "{stderr}"
    );
    assert!(stderr.contains("iceberg:glue://"), "{stderr}");
}

#[test]
fn iceberg_an_s3_warehouse_refusing_the_credentials_fails_permanently_at_start() {
    // moto answers the first request (creating the bucket) unauthenticated, then checks every
    // request's keys: the test keys are unknown to its IAM (InvalidAccessKeyId, 403).
    let moto = Moto::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "1")]);
    rt().block_on(create_bucket(&moto.s3(), "lake"));
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    small_archive(&src);
    let sink = format!(
        "iceberg:sqlite://{}?warehouse=s3://lake/wh#ns.t",
        tmp.path().join("c.db").display()
    );
    let (code, stderr) = replay(
        tmp.path(),
        &src,
        &sink,
        &moto.env(),
        &["--create-table", "auto"],
    );
    assert_ne!(code, Some(0), "{stderr}");
    assert!(stderr.contains("the warehouse bucket `lake`"), "{stderr}");
    assert!(stderr.contains("InvalidAccessKeyId"), "{stderr}");
    assert!(stderr.contains("permanent"), "{stderr}");
    assert!(
        !stderr.contains("transient"),
        "not retried as transient: {stderr}"
    );
}
