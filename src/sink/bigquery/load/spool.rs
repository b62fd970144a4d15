//! The pipeline's sink in load mode: each object's rows checked against their table's schema
//! and written to a local NDJSON file per (object, table), for the batch's load jobs.
//!
//! A row BigQuery would refuse would fail the whole job, so each is checked here (the table's
//! [`BatchSchema`], which may grow) and a refused one takes the record policy instead. Routed
//! runs ([`super::route`]) pick each row's table from the record; the batch learns its tables
//! (and reads their schemas) as records name them.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;

use super::route::{self, Entry, ObjectRouting, Routing, TOKEN_PREFIX};
use super::schema::{self as batch_schema, BatchSchema, Current, Growth};
use super::{JobState, LoadJobs, MAX_JOB_ATTEMPTS};
use crate::error::{Cause, Class, Error, Stage};
use crate::ledger::{identity, Staged};
use crate::object::ObjectRef;
use crate::row::Row;
use crate::settings::Settings;
use crate::sink::bigquery::TableRef;
use crate::sink::{Committed, ObjectWriter, Prepared, Rejected, Sink};

pub(super) type Identity = (String, String, String);

fn attempt_id(first: &str, attempt: u32) -> Option<String> {
    let base = first.strip_suffix("_0")?;
    Some(format!("{base}_{attempt}"))
}

/// Whether any attempt of the job chain starting at `first` loaded its rows (waiting for one
/// that still runs).
pub(super) async fn chain_loaded(loads: &LoadJobs, first: &str) -> Result<bool, Error> {
    for attempt in 0..MAX_JOB_ATTEMPTS {
        let Some(id) = attempt_id(first, attempt) else {
            return Ok(false);
        };
        let mut state = loads.state_of(&id).await?;
        if state == JobState::Running {
            state = loads.wait(&id).await?;
        }
        match state {
            JobState::Succeeded { .. } => return Ok(true),
            JobState::Missing => return Ok(false),
            JobState::Failed { .. } | JobState::Running => continue,
        }
    }
    Ok(false)
}

pub(super) fn spool_error(path: &Path, e: std::io::Error) -> Error {
    Error::new(
        Stage::Sink,
        Class::Transient,
        Cause::Sink(format!("spool file {}: {e}", path.display())),
    )
}

/// One table of the batch: where its job goes and the schema its rows are checked against.
pub(super) struct TableSpool {
    pub table: TableRef,
    pub loads: Arc<LoadJobs>,
    pub schema: Arc<BatchSchema>,
}

/// What one spooled object left behind: a file per table its rows went to.
pub(super) struct Spooled {
    pub files: Vec<(Arc<TableSpool>, PathBuf, u64)>,
    pub rows: u64,
    /// Jobs an earlier run loaded this object's rows with (tables skipped this time): carried
    /// into its next token.
    pub carried: Vec<Entry>,
}

/// The batch's spool.
pub(super) struct Spool {
    pub dir: PathBuf,
    /// The run's load client (its table is the sink's, or the template's for routed runs).
    pub loads: Arc<LoadJobs>,
    pub handle: Handle,
    pub spooled: Mutex<HashMap<Identity, Spooled>>,
    pub next: AtomicU64,
    /// The batch's tables by `TableRef` text; an unrouted run's one table is put in up front.
    pub tables: Mutex<HashMap<String, Arc<TableSpool>>>,
    pub routing: Option<Arc<Routing>>,
    pub growth: Growth,
    pub settings: Arc<Settings>,
    /// The token each object's earlier attempt staged (from `begin`).
    pub staged_tokens: Arc<Mutex<HashMap<Identity, String>>>,
    /// Tokens found partly loaded: the entries whose job loaded.
    pub partial: Mutex<HashMap<String, Vec<Entry>>>,
}

impl Spool {
    /// The batch's spool for table `t`, its schema read the first time a record names it.
    fn table(&self, t: &TableRef) -> Result<Arc<TableSpool>, Error> {
        let key = t.to_string();
        let mut tables = self.tables.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = tables.get(&key) {
            return Ok(s.clone());
        }
        let loads = Arc::new(self.loads.with_table(t.clone()));
        let schema = self.handle.block_on(batch_schema::for_batch(
            &loads,
            &self.growth,
            &self.settings,
        ))?;
        let s = Arc::new(TableSpool {
            table: t.clone(),
            loads,
            schema: Arc::new(schema),
        });
        tables.insert(key, s.clone());
        Ok(s)
    }
}

struct TableOut {
    key: String,
    table: Arc<TableSpool>,
    path: PathBuf,
    out: BufWriter<File>,
    rows: u64,
    /// The encoder this writer checks the table's rows with (as of its last refusal).
    seen: Current,
}

struct SpoolWriter {
    spool: Arc<Spool>,
    object: ObjectRef,
    route: Option<ObjectRouting>,
    outs: Vec<TableOut>,
    rejected: Vec<Rejected>,
    scratch: Vec<u8>,
    /// Tables whose job loaded this object's rows in an earlier run.
    skip: HashSet<String>,
    carried: Vec<Entry>,
    /// Rows left out because their table's job loaded them in an earlier run.
    skipped: u64,
}

pub(super) struct SpoolSink(pub Arc<Spool>);

impl Sink for SpoolSink {
    fn open(&self, object: &ObjectRef) -> Result<Box<dyn ObjectWriter>, Error> {
        let route = match &self.0.routing {
            Some(r) => Some(r.for_object(object)?),
            None => None,
        };
        let token = self
            .0
            .staged_tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&identity(object))
            .cloned();
        let carried = token
            .and_then(|t| {
                self.0
                    .partial
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&t)
                    .cloned()
            })
            .unwrap_or_default();
        let skip = carried.iter().filter_map(|e| e.table.clone()).collect();
        Ok(Box::new(SpoolWriter {
            spool: self.0.clone(),
            object: object.clone(),
            route,
            outs: Vec::new(),
            rejected: Vec::new(),
            scratch: Vec::new(),
            skip,
            carried,
            skipped: 0,
        }))
    }

    fn committed(&self, staged: &Staged) -> Result<bool, Error> {
        let Some(rest) = staged.token.strip_prefix(TOKEN_PREFIX) else {
            // Staged by another mode: only that mode can tell whether it was committed, and
            // guessing "no" could write the object twice.
            return Err(Error::new(
                Stage::Sink,
                Class::Permanent,
                Cause::Sink(format!(
                    "an earlier run in another --bigquery-mode staged this object ({}) and \
                     stopped before recording it done: rerun it in that mode",
                    staged.token
                )),
            ));
        };
        let entries = route::entries(rest);
        let loads = self.0.loads.clone();
        let check = entries.clone();
        let loaded: Vec<bool> = self.0.handle.block_on(async move {
            let mut out = Vec::with_capacity(check.len());
            for e in &check {
                out.push(chain_loaded(&loads, &e.first).await?);
            }
            Ok::<_, Error>(out)
        })?;
        if loaded.iter().all(|l| *l) {
            return Ok(true);
        }
        let done: Vec<Entry> = entries
            .into_iter()
            .zip(&loaded)
            .filter(|(_, l)| **l)
            .map(|(e, _)| e)
            .collect();
        if !done.is_empty() {
            // Written again without the rows those jobs loaded (see `route`).
            let tables: Vec<&str> = done.iter().filter_map(|e| e.table.as_deref()).collect();
            tracing::info!(staged = %staged.token, loaded = %tables.join(", "), "some of the tables of an earlier attempt were loaded; their rows are left out this time");
            self.0
                .partial
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(staged.token.clone(), done);
        }
        Ok(false)
    }
}

impl SpoolWriter {
    /// The output for table `t`, opened the first time the object's records name it.
    fn out_for(&mut self, t: &TableRef) -> Result<usize, Error> {
        let key = t.to_string();
        if let Some(i) = self.outs.iter().position(|o| o.key == key) {
            return Ok(i);
        }
        let max = self.spool.routing.as_ref().map_or(1, |r| r.max_tables);
        if self.outs.len() >= max {
            return Err(Error::new(
                Stage::Sink,
                Class::Permanent,
                Cause::Sink(format!(
                    "the records of {} name more than {max} tables \
                     (--max-tables-per-object); the next was {key}",
                    self.object
                )),
            ));
        }
        let table = self.spool.table(t)?;
        let n = self.spool.next.fetch_add(1, Ordering::Relaxed);
        let path = self.spool.dir.join(format!("{n}.ndjson"));
        let file = File::create(&path).map_err(|e| spool_error(&path, e))?;
        self.outs.push(TableOut {
            key,
            seen: table.schema.current(),
            table,
            path,
            out: BufWriter::with_capacity(256 * 1024, file),
            rows: 0,
        });
        Ok(self.outs.len() - 1)
    }
}

impl ObjectWriter for SpoolWriter {
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), Error> {
        if let Some(rejected) = crate::sink::bigquery::unstorable(row) {
            self.rejected.push(rejected);
            return Ok(());
        }
        let json = row.to_vec();
        let i = match &mut self.route {
            // One table: the first output, once open.
            None if !self.outs.is_empty() => 0,
            None => {
                let t = self.spool.loads.table().clone();
                self.out_for(&t)?
            }
            Some(r) => match r.table_for(&json) {
                Ok(t) => {
                    if !self.skip.is_empty() && self.skip.contains(&t.to_string()) {
                        self.skipped += 1;
                        return Ok(());
                    }
                    self.out_for(&t)?
                }
                Err(why) => {
                    self.rejected.push(Rejected {
                        ordinal: row.ordinal,
                        byte_offset: row.byte_offset,
                        row: json,
                        error: format!("no table for this record: {why}"),
                    });
                    return Ok(());
                }
            },
        };
        let out = &mut self.outs[i];
        self.scratch.clear();
        let checked = match out.seen.encoder.encode(&json, &mut self.scratch) {
            Ok(()) => Ok(()),
            // Only refused rows take the lock (and, growing, are parsed).
            Err(why) => out.table.schema.refused(&json, why, &mut out.seen),
        };
        if let Err(why) = checked {
            self.rejected.push(Rejected {
                ordinal: row.ordinal,
                byte_offset: row.byte_offset,
                row: json,
                error: format!("does not fit the table schema: {why}"),
            });
            return Ok(());
        }
        out.out
            .write_all(&json)
            .and_then(|_| out.out.write_all(b"\n"))
            .map_err(|e| spool_error(&out.path, e))?;
        out.rows += 1;
        Ok(())
    }

    fn prepare(&mut self) -> Result<Prepared, Error> {
        Ok(Prepared {
            rejected: std::mem::take(&mut self.rejected),
            token: None,
        })
    }

    fn commit(mut self: Box<Self>) -> Result<Committed, Error> {
        let mut files = Vec::with_capacity(self.outs.len());
        let mut rows = 0;
        for mut o in std::mem::take(&mut self.outs) {
            o.out.flush().map_err(|e| spool_error(&o.path, e))?;
            rows += o.rows;
            files.push((o.table, o.path, o.rows));
        }
        let rejected = std::mem::take(&mut self.rejected);
        self.spool
            .spooled
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                identity(&self.object),
                Spooled {
                    files,
                    rows,
                    carried: std::mem::take(&mut self.carried),
                },
            );
        Ok(Committed {
            rejected,
            // Rows an earlier run's job loaded count as already in the table, not as written.
            inserted: (self.skipped > 0).then_some(rows),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempt_ids_follow_from_the_first() {
        assert_eq!(
            attempt_id("firehose_replay_ab_0", 3).as_deref(),
            Some("firehose_replay_ab_3")
        );
        assert_eq!(attempt_id("firehose_replay_ab_1", 3), None);
    }
}
