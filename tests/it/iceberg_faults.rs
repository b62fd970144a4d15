//! The Iceberg sink under commit faults: a commit that lands but whose answer is lost (the
//! catalog answers with an error), a commit the catalog answers as done but never ran (the
//! connection to a PostgreSQL catalog cut right before its `COMMIT`: iceberg-catalog-sql drops
//! that error), and a process killed after its commit landed but before the ledger's "done"
//! (held on the `COMMIT`'s answer, then SIGKILL): each time every row once, read back by DuckDB
//! and pyiceberg.

use std::fmt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::harness::archive;
use crate::iceberg_tables::{duckdb_scan, pyiceberg_scan, IcebergTable};
use crate::pg_server::PgServer;
use crate::postgres_faults::{Cut, Proxy};
use crate::support::bin;

/// A catalog that passes everything to the SQL catalog, except that the first commit's answer
/// is lost: the commit lands, then the caller gets a connection error.
struct LosesAnswer {
    inner: Arc<dyn iceberg::Catalog>,
    commits: AtomicU32,
}

impl fmt::Debug for LosesAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LosesAnswer")
    }
}

#[async_trait::async_trait]
impl iceberg::Catalog for LosesAnswer {
    async fn list_namespaces(
        &self,
        parent: Option<&iceberg::NamespaceIdent>,
    ) -> iceberg::Result<Vec<iceberg::NamespaceIdent>> {
        self.inner.list_namespaces(parent).await
    }
    async fn create_namespace(
        &self,
        namespace: &iceberg::NamespaceIdent,
        properties: std::collections::HashMap<String, String>,
    ) -> iceberg::Result<iceberg::Namespace> {
        self.inner.create_namespace(namespace, properties).await
    }
    async fn get_namespace(
        &self,
        namespace: &iceberg::NamespaceIdent,
    ) -> iceberg::Result<iceberg::Namespace> {
        self.inner.get_namespace(namespace).await
    }
    async fn namespace_exists(&self, namespace: &iceberg::NamespaceIdent) -> iceberg::Result<bool> {
        self.inner.namespace_exists(namespace).await
    }
    async fn update_namespace(
        &self,
        namespace: &iceberg::NamespaceIdent,
        properties: std::collections::HashMap<String, String>,
    ) -> iceberg::Result<()> {
        self.inner.update_namespace(namespace, properties).await
    }
    async fn drop_namespace(&self, namespace: &iceberg::NamespaceIdent) -> iceberg::Result<()> {
        self.inner.drop_namespace(namespace).await
    }
    async fn list_tables(
        &self,
        namespace: &iceberg::NamespaceIdent,
    ) -> iceberg::Result<Vec<iceberg::TableIdent>> {
        self.inner.list_tables(namespace).await
    }
    async fn create_table(
        &self,
        namespace: &iceberg::NamespaceIdent,
        creation: iceberg::TableCreation,
    ) -> iceberg::Result<iceberg::table::Table> {
        self.inner.create_table(namespace, creation).await
    }
    async fn load_table(
        &self,
        table: &iceberg::TableIdent,
    ) -> iceberg::Result<iceberg::table::Table> {
        self.inner.load_table(table).await
    }
    async fn drop_table(&self, table: &iceberg::TableIdent) -> iceberg::Result<()> {
        self.inner.drop_table(table).await
    }
    async fn purge_table(&self, table: &iceberg::TableIdent) -> iceberg::Result<()> {
        self.inner.purge_table(table).await
    }
    async fn table_exists(&self, table: &iceberg::TableIdent) -> iceberg::Result<bool> {
        self.inner.table_exists(table).await
    }
    async fn rename_table(
        &self,
        src: &iceberg::TableIdent,
        dest: &iceberg::TableIdent,
    ) -> iceberg::Result<()> {
        self.inner.rename_table(src, dest).await
    }
    async fn register_table(
        &self,
        table: &iceberg::TableIdent,
        metadata_location: String,
    ) -> iceberg::Result<iceberg::table::Table> {
        self.inner.register_table(table, metadata_location).await
    }
    async fn update_table(
        &self,
        commit: iceberg::TableCommit,
    ) -> iceberg::Result<iceberg::table::Table> {
        let landed = self.inner.update_table(commit).await?;
        if self.commits.fetch_add(1, Ordering::SeqCst) == 0 {
            drop(landed);
            return Err(iceberg::Error::new(
                iceberg::ErrorKind::Unexpected,
                "connection reset by peer (the answer was lost)",
            ));
        }
        Ok(landed)
    }
}

/// Through the library: the batch's commit lands, its answer is an error; the retry finds the
/// batch ID in the table's snapshots and does not commit again (one call to the catalog's
/// commit), and the rows are there once.
#[test]
fn iceberg_a_commit_whose_answer_is_lost_is_found_by_its_token_and_not_made_twice() {
    use firehose_replay::object::ObjectRef;
    use firehose_replay::row::id::ObjectSeed;
    use firehose_replay::row::Row;
    use firehose_replay::sink::iceberg::{
        commit, open_catalog, spool::ObjectSpool, Iceberg, Settings, Target,
    };

    let tmp = tempfile::tempdir().unwrap();
    let table = IcebergTable::keyed(tmp.path());
    let spec = table.sink();
    let target = Target::parse(spec.strip_prefix("iceberg:").unwrap(), tmp.path()).unwrap();
    let mut object = ObjectRef::new("b", "k");
    object.etag = Some("e".into());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let catalog = rt.block_on(async {
        let catalog = Arc::new(LosesAnswer {
            inner: open_catalog(&target).await.unwrap(),
            commits: AtomicU32::new(0),
        });
        let sink = Iceberg::with_catalog(target, Settings::default(), catalog.clone())
            .await
            .unwrap();
        let shared = &sink.shared;
        let mut spool = ObjectSpool::new(shared.clone(), tmp.path().join("object.arrows"));
        let id = ObjectSeed::new(&object).id(0, &[]);
        for n in 0..3u64 {
            let text = format!(r#"{{"_replay_row_id":"r{n}","k":"ours{n}"}}"#);
            spool
                .write_row(&Row::whole(&id, n, text.as_bytes()))
                .unwrap();
        }
        let spooled = spool.finish().unwrap();
        let objects = [("b".to_string(), "k".to_string(), "e".to_string())];
        let batch = commit::batch_id(&objects);
        let files = commit::write_files(shared, &spooled.paths, &batch)
            .await
            .unwrap();
        commit::append(shared, files, &batch, &objects)
            .await
            .unwrap();
        assert!(commit::committed(shared, &batch).await.unwrap());
        catalog
    });
    assert_eq!(
        catalog.commits.load(Ordering::SeqCst),
        1,
        "the landed commit was not made again"
    );
    assert_eq!(table.snapshots().len(), 1);
    let mut ks: Vec<String> = table
        .rows()
        .iter()
        .map(|r| r["k"].as_str().unwrap().to_string())
        .collect();
    ks.sort();
    assert_eq!(ks, ["ours0", "ours1", "ours2"], "pyiceberg");
    assert_eq!(table.duckdb().0.len(), 3, "DuckDB");
}

fn key(n: u32) -> String {
    format!("2026/12/07/11/s-1-2026-12-07-11-00-00-6a1f0c1e-2b3c-4d5e-8f90-{n:012}")
}

/// `objects` objects of `per` records each under `root`, `k` numbering them all from `first`.
fn numbered(root: &Path, objects: u32, per: u32, first: u32) {
    let list: Vec<(String, Vec<Value>)> = (0..objects)
        .map(|o| {
            (
                key(first + o),
                (0..per)
                    .map(|r| json!({"k": first * per + o * per + r}))
                    .collect(),
            )
        })
        .collect();
    archive(root, &list);
}

/// A PostgreSQL catalog (through `port`: the server's or a proxy's) and a local warehouse.
fn pg_sink(port: u16, warehouse: &Path) -> String {
    format!(
        "iceberg:postgres://postgres@127.0.0.1:{port}/postgres?warehouse={}#pgns.events",
        warehouse.display()
    )
}

fn replay(work: &Path, src: &Path, sink: &str) -> Command {
    let mut cmd = bin();
    cmd.current_dir(work)
        .args(["replay", src.to_str().unwrap(), "--sink", sink])
        .args(["--ledger", "file:ledger.jsonl", "--create-table", "auto"]);
    cmd
}

fn metadata_location(pg: &PgServer) -> String {
    pg.psql(
        "SELECT metadata_location FROM iceberg_tables WHERE catalog_name = 'default' \
         AND table_namespace = 'pgns' AND table_name = 'events'",
    )
    .trim()
    .to_string()
}

/// The `k` of every row, sorted, as DuckDB and as pyiceberg read them (asserted equal).
fn ks(pg: &PgServer) -> Vec<u64> {
    let metadata = metadata_location(pg);
    let read = |rows: Vec<Value>| {
        let mut ks: Vec<u64> = rows.iter().map(|r| r["k"].as_u64().unwrap()).collect();
        ks.sort();
        ks
    };
    let duck = read(duckdb_scan(&metadata));
    let py = read(pyiceberg_scan(&metadata));
    assert_eq!(duck, py, "DuckDB and pyiceberg disagree");
    duck
}

/// The table made by a first run straight to the server (its commits are not the ones cut),
/// holding objects 0..2 (`k` 0..20); then objects 2..5 (`k` 20..50) under `src`.
fn seeded(pg: &PgServer, tmp: &Path) -> std::path::PathBuf {
    let (seed, src) = (tmp.join("seed"), tmp.join("src"));
    numbered(&seed, 2, 10, 0);
    numbered(&src, 3, 10, 2);
    let work = tmp.join("seed-work");
    std::fs::create_dir_all(&work).unwrap();
    let out = replay(&work, &seed, &pg_sink(pg.port, &tmp.join("wh")))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    src
}

/// The connection cut right before the commit's `COMMIT` reaches the server: the catalog crate
/// drops that error and answers the commit as done, though nothing landed. The sink reads the
/// table again after every commit, finds no snapshot with its batch, and commits again.
#[test]
fn iceberg_a_commit_the_catalog_answered_but_never_ran_is_made_again() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = PgServer::start();
    let src = seeded(&pg, tmp.path());
    let proxy = Proxy::start(pg.port, Cut::BeforeCommit);
    let out = replay(
        tmp.path(),
        &src,
        &pg_sink(proxy.port, &tmp.path().join("wh")),
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(proxy.fired.load(Ordering::SeqCst), "never cut: {stderr}");
    assert_eq!(ks(&pg), (0..50).collect::<Vec<u64>>(), "{stderr}");
    assert!(
        stderr.contains("its snapshot is not in the table; committing again"),
        "{stderr}"
    );
}

/// Killed after its commit landed, before the ledger's "done" (held on the `COMMIT`'s answer,
/// then SIGKILL): the rerun finds the batch ID of the staged objects in the table's snapshots
/// and records them done without reading them again; every row once.
#[test]
fn iceberg_a_run_killed_after_its_commit_landed_is_not_read_again() {
    let tmp = tempfile::tempdir().unwrap();
    let pg = PgServer::start();
    let src = seeded(&pg, tmp.path());
    let before = metadata_location(&pg);
    let proxy = Proxy::start(pg.port, Cut::HoldAfterCommit);
    let mut child = replay(
        tmp.path(),
        &src,
        &pg_sink(proxy.port, &tmp.path().join("wh")),
    )
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    // The COMMIT went through and the server ran it; the process waits for the answer.
    while !proxy.fired.load(Ordering::SeqCst) || metadata_location(&pg) == before {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before its commit was held"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_eq!(ks(&pg), (0..50).collect::<Vec<u64>>(), "the commit landed");
    let ledger = std::fs::read_to_string(tmp.path().join("ledger.jsonl")).unwrap();
    assert!(ledger.contains("\"staged\""), "{ledger}");

    let out = replay(tmp.path(), &src, &pg_sink(pg.port, &tmp.path().join("wh")))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("were committed; recording the object as done"),
        "{stderr}"
    );
    assert!(stderr.contains("objects:  3 (3 ok"), "{stderr}");
    assert!(stderr.contains("0 rows written"), "{stderr}");
    assert!(
        stderr.contains("30 rows recovered: committed by an earlier run"),
        "{stderr}"
    );
    assert!(
        stderr.contains("0.00 MiB in"),
        "nothing read again: {stderr}"
    );
    assert_eq!(ks(&pg), (0..50).collect::<Vec<u64>>());
}
