//! `--bigquery-mode load`'s side of the batch contract (`sink::batch`): many objects → one
//! BigQuery load job, exactly once.
//!
//! Objects are planned into batches (key order, bounded by object count and listed bytes, and
//! widened so the whole run fits the table's daily load-job quota). Each batch's objects run
//! through the normal pipeline into a spool sink that checks every row against the table schema
//! (a row BigQuery would refuse would fail the whole job, so it takes the record-level policy
//! here instead) and writes NDJSON to a local file. At commit each spooled object is *staged*
//! in the ledger with the batch's job ID, the job is loaded (`LoadJobs::load`: deterministic job
//! IDs, GET before submit, 409 = already submitted), and only then does the driver finish the
//! objects. A run that dies anywhere in between finds the staged job ID in the ledger next time
//! and asks BigQuery whether that job loaded the rows, instead of loading them again.
//!
//! A routed sink ([`super::route`]) makes one job per table per batch: every object is staged
//! with the jobs of all its tables before any job is submitted, and finished once they all
//! loaded.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;

use super::plan::{plan, Bounds};
use super::route::{self as routes, Entry, Routing};
use super::schema::{self as batch_schema, BatchSchema, Growth};
use super::spool::{spool_error, Spool, SpoolSink, Spooled, TableSpool};
use super::{job_id, LoadJobs, ObjectKey};
use crate::error::{Cause, Class, Error, Stage};
use crate::ledger::{identity, Claim, Ledger, Staged};
use crate::object::ObjectRef;
use crate::settings::Settings;
use crate::sink::batch::{BatchOutcome, BatchSink, Held, Identity, StagedBatch, StagedTokens};
use crate::sink::bigquery::encode::Encoder;
use crate::sink::bigquery::merge::Merger;
use crate::sink::{ObjectWriter, Sink};

/// The sink a load run's engine is built with before the batch driver puts each batch's spool
/// in: objects in load mode never go to a per-object sink.
pub struct LoadOnly;

impl Sink for LoadOnly {
    fn open(&self, _: &ObjectRef) -> Result<Box<dyn ObjectWriter>, Error> {
        Err(Error::new(
            Stage::Sink,
            Class::Permanent,
            Cause::Sink(
                "--bigquery-mode load runs in `replay` and `backfill` only (batches of objects)"
                    .into(),
            ),
        ))
    }
}

/// Everything load mode needs besides the objects and the engine (cheap to clone: each
/// prepared batch holds a copy).
#[derive(Clone)]
pub struct LoadBatches {
    pub loads: Arc<LoadJobs>,
    pub encoder: Arc<Encoder>,
    pub bounds: Bounds,
    /// The run's settings (generated columns, for tables the batch creates or widens).
    pub settings: Arc<Settings>,
    /// Spool files go under here (a temporary directory per batch).
    pub spool_dir: Option<PathBuf>,
    /// `--dedup merge`: each batch is loaded into a staging table and merged from there.
    pub merger: Option<Arc<Merger>>,
    /// `--schema-evolution add-columns`, `--create-table auto`: each batch reads the table's
    /// schema and its records may widen it (else `encoder` checks every row).
    pub growth: Growth,
    /// `--sink` with placeholders: a table per record, a job per table per batch.
    pub routing: Option<Arc<Routing>>,
}

/// One prepared batch: its spool folder and what its objects spooled.
pub struct LoadBatch {
    run: LoadBatches,
    dir: tempfile::TempDir,
    spool: Arc<Spool>,
    /// What `take_staged` took out of the spool, for `commit`.
    taken: Mutex<HashMap<Identity, Spooled>>,
}

#[async_trait::async_trait]
impl BatchSink for LoadBatches {
    fn plan(&self, objects: &[ObjectRef]) -> Vec<Vec<usize>> {
        let plan = plan(objects, &self.bounds);
        tracing::info!("{}", plan.describe(objects.len(), &self.bounds));
        plan.batches
    }

    async fn prepare(&self, staged_tokens: StagedTokens) -> Result<Box<dyn StagedBatch>, Error> {
        let dir = match &self.spool_dir {
            Some(d) => tempfile::Builder::new().prefix("load-batch-").tempdir_in(d),
            None => {
                sweep_stale_spools();
                tempfile::Builder::new()
                    .prefix(&format!("firehose-replay-load-{}-", std::process::id()))
                    .tempdir()
            }
        };
        let dir = dir.map_err(|e| {
            Error::new(
                Stage::Sink,
                Class::Transient,
                Cause::Sink(format!("spool directory: {e}")),
            )
        })?;
        // An unrouted run's one table, its schema read now when it may grow.
        let mut tables = HashMap::new();
        if self.routing.is_none() {
            let schema = if self.growth.active() {
                batch_schema::for_batch(&self.loads, &self.growth, &self.settings).await?
            } else {
                BatchSchema::fixed(self.encoder.clone())
            };
            let t = self.loads.table().clone();
            tables.insert(
                t.to_string(),
                Arc::new(TableSpool {
                    table: t,
                    loads: self.loads.clone(),
                    schema: Arc::new(schema),
                }),
            );
        }
        let spool = Arc::new(Spool {
            dir: dir.path().to_path_buf(),
            loads: self.loads.clone(),
            handle: Handle::current(),
            spooled: Mutex::default(),
            next: Default::default(),
            tables: Mutex::new(tables),
            routing: self.routing.clone(),
            growth: self.growth.clone(),
            settings: self.settings.clone(),
            staged_tokens,
            partial: Mutex::default(),
        });
        Ok(Box::new(LoadBatch {
            run: self.clone(),
            dir,
            spool,
            taken: Mutex::default(),
        }))
    }
}

#[async_trait::async_trait]
impl StagedBatch for LoadBatch {
    fn sink(&self) -> Arc<dyn Sink> {
        Arc::new(SpoolSink(self.spool.clone()))
    }

    fn take_staged(&self) -> HashMap<Identity, u64> {
        let spooled =
            std::mem::take(&mut *self.spool.spooled.lock().unwrap_or_else(|p| p.into_inner()));
        let rows = spooled.iter().map(|(id, s)| (id.clone(), s.rows)).collect();
        *self.taken.lock().unwrap_or_else(|p| p.into_inner()) = spooled;
        rows
    }

    async fn commit(&self, held: &[Held], ledger: &Arc<dyn Ledger>) -> Result<BatchOutcome, Error> {
        let mut taken = std::mem::take(&mut *self.taken.lock().unwrap_or_else(|p| p.into_inner()));
        let to_load: Vec<(&Held, Spooled)> = held
            .iter()
            .map(|h| {
                let s = taken.remove(&identity(&h.object)).unwrap_or(Spooled {
                    files: Vec::new(),
                    rows: 0,
                    carried: Vec::new(),
                });
                (h, s)
            })
            .collect();
        let run = &self.run;
        let groups = group_by_table(&to_load);
        let rows: u64 = to_load.iter().map(|(_, s)| s.rows).sum();
        let (results, inserted) = match &run.merger {
            Some(merger) => {
                let Some(g) = groups.values().next() else {
                    return Ok(BatchOutcome {
                        failed: to_load.iter().map(|_| None).collect(),
                        inserted: 0,
                        ids: Vec::new(),
                    });
                };
                let (job, inserted) =
                    merge_batch(run, ledger, merger, self.dir.path(), &to_load, g).await?;
                (vec![Ok(job)], inserted)
            }
            None => (
                load_batch(run, ledger, self.dir.path(), &to_load, &groups).await?,
                rows,
            ),
        };
        // Each object fails with the first of its tables' jobs that failed.
        let mut failed: Vec<Option<Error>> = (0..to_load.len()).map(|_| None).collect();
        let mut ids = Vec::new();
        for (g, result) in groups.values().zip(results) {
            match result {
                Ok(id) => ids.push(id),
                Err(e) => {
                    for &(i, _, _) in &g.members {
                        failed[i].get_or_insert_with(|| copy_error(&e));
                    }
                }
            }
        }
        Ok(BatchOutcome {
            failed,
            inserted,
            ids,
        })
    }
}

/// The same error again (for each object of a failed job).
fn copy_error(error: &Error) -> Error {
    Error::new(
        error.stage,
        error.class,
        Cause::Sink(error.cause.to_string()),
    )
}

/// Removes load-batch spool folders that killed runs left in the temporary directory: a folder
/// is `firehose-replay-load-<pid>-…`, and is stale once no process has that pid.
fn sweep_stale_spools() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix("firehose-replay-load-") else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
                match std::fs::remove_dir_all(e.path()) {
                    Ok(()) => tracing::info!(dir = %e.path().display(), "removed a load spool folder left by a run that did not finish"),
                    Err(err) => tracing::warn!(dir = %e.path().display(), "could not remove a stale load spool folder: {err}"),
                }
            }
        }
    });
}

/// The rows of one table in a batch: its spool, and which objects' files hold them.
struct Group {
    spool: Arc<TableSpool>,
    /// (index into `to_load`, spool file, rows), in key order.
    members: Vec<(usize, PathBuf, u64)>,
    keys: Vec<ObjectKey>,
    first: String,
}

fn object_key(o: &ObjectRef) -> ObjectKey {
    ObjectKey {
        bucket: o.bucket.clone(),
        key: o.key.clone(),
        etag: o.etag.clone().unwrap_or_default(),
    }
}

/// The batch's tables in name order, each with its job's first ID: the table and the exact
/// objects whose rows it holds (so a retry of the same rows meets the same job).
fn group_by_table(to_load: &[(&Held, Spooled)]) -> BTreeMap<String, Group> {
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for (i, (h, s)) in to_load.iter().enumerate() {
        for (t, path, rows) in &s.files {
            if *rows == 0 {
                continue;
            }
            let g = groups.entry(t.table.to_string()).or_insert_with(|| Group {
                spool: t.clone(),
                members: Vec::new(),
                keys: Vec::new(),
                first: String::new(),
            });
            g.members.push((i, path.clone(), *rows));
            g.keys.push(object_key(&h.object));
        }
    }
    for g in groups.values_mut() {
        g.first = job_id(&g.spool.table, &g.keys, 0);
    }
    groups
}

/// Stages every object with all the batch's jobs its rows are in (before any is submitted),
/// then loads table by table. `Err` when staging failed (nothing submitted); else one result
/// per table, in `groups` order.
async fn load_batch(
    run: &LoadBatches,
    ledger: &Arc<dyn Ledger>,
    dir: &Path,
    to_load: &[(&Held, Spooled)],
    groups: &BTreeMap<String, Group>,
) -> Result<Vec<Result<String, Error>>, Error> {
    let routed = run.routing.is_some();
    for (i, (h, s)) in to_load.iter().enumerate() {
        let mut entries: Vec<Entry> = groups
            .iter()
            .filter(|(_, g)| g.members.iter().any(|m| m.0 == i))
            .map(|(name, g)| Entry {
                first: g.first.clone(),
                table: routed.then(|| name.clone()),
            })
            .collect();
        entries.extend(s.carried.iter().cloned());
        let staged = Staged {
            token: routes::token(&entries),
            records: h.summary.records,
            rows: h.summary.rows,
            record_errors: h.summary.record_errors,
        };
        let (ledger, object) = (ledger.clone(), h.object.clone());
        // The same lease: this conditional write is the fence before any job is submitted.
        let claim = Claim {
            lease: h.claim.lease.clone(),
            staged: None,
        };
        ledger_blocking(move || ledger.stage(&object, &claim, &staged)).await?;
    }
    let mut results = Vec::with_capacity(groups.len());
    for (n, g) in groups.values().enumerate() {
        let result = async {
            let upload = concat_spools(dir, n, &g.members).await?;
            let loaded = if run.growth.active() || routed {
                // The table as it is now, plus what the batch's records added (or the batch's
                // schema for a table the job creates); the job ID stays the batch's.
                let loads =
                    batch_schema::job_client(&g.spool.loads, &g.spool.schema, &run.growth).await?;
                loads.load(&g.keys, &upload).await
            } else {
                run.loads.load(&g.keys, &upload).await
            };
            let _ = std::fs::remove_file(&upload);
            Ok::<_, Error>(loaded?.job_id)
        }
        .await;
        results.push(result);
    }
    Ok(results)
}

/// A ledger write on a blocking thread (ledgers do their I/O synchronously).
async fn ledger_blocking(
    f: impl FnOnce() -> Result<(), Error> + Send + 'static,
) -> Result<(), Error> {
    tokio::task::spawn_blocking(f).await.map_err(|e| {
        Error::new(
            Stage::Sink,
            Class::Transient,
            Cause::Sink(format!("ledger: {e}")),
        )
    })?
}

/// `--dedup merge`: the batch goes into a staging table of its own (a load job there), then
/// one MERGE adds the rows the target lacks; nothing is staged in the ledger, because a batch
/// redone from the start adds nothing twice. Returns the load job and the rows inserted.
async fn merge_batch(
    run: &LoadBatches,
    ledger: &Arc<dyn Ledger>,
    merger: &Merger,
    dir: &Path,
    to_load: &[(&Held, Spooled)],
    group: &Group,
) -> Result<(String, u64), Error> {
    for (h, _) in to_load {
        let (ledger, object) = (ledger.clone(), h.object.clone());
        let claim = Claim {
            lease: h.claim.lease.clone(),
            staged: None,
        };
        // The fence before anything becomes visible: the claims are still ours.
        ledger_blocking(move || ledger.renew(&object, &claim)).await?;
    }
    let upload = concat_spools(dir, 0, &group.members).await?;
    let staging = merger.staging_for(&group.first);
    merger.create(&staging).await?;
    let loads = run.loads.with_table(staging.table.clone());
    let outcome = async {
        let loaded = loads.load(&group.keys, &upload).await?;
        let inserted = merger.merge(&staging).await?;
        Ok((loaded.job_id, inserted))
    }
    .await;
    merger.drop_staging(&staging).await;
    outcome
}

/// One upload file for a table: its objects' spool files in key order, each removed once
/// copied.
async fn concat_spools(
    dir: &Path,
    n: usize,
    members: &[(usize, PathBuf, u64)],
) -> Result<PathBuf, Error> {
    let upload = dir.join(format!("upload-{n}.ndjson"));
    let files: Vec<PathBuf> = members.iter().map(|(_, p, _)| p.clone()).collect();
    let upload_path = upload.clone();
    tokio::task::spawn_blocking(move || -> Result<(), Error> {
        let mut out = File::create(&upload_path).map_err(|e| spool_error(&upload_path, e))?;
        for f in files {
            let mut input = File::open(&f).map_err(|e| spool_error(&f, e))?;
            std::io::copy(&mut input, &mut out).map_err(|e| spool_error(&upload_path, e))?;
            let _ = std::fs::remove_file(&f);
        }
        out.sync_all().map_err(|e| spool_error(&upload_path, e))
    })
    .await
    .map_err(|e| {
        Error::new(
            Stage::Sink,
            Class::Transient,
            Cause::Sink(format!("spool: {e}")),
        )
    })??;
    Ok(upload)
}
