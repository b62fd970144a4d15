//! Routing rows to several tables (`--sink 'bigquery:P.D.events_{detail.type}'`).
//!
//! [`template`] turns the sink's table into a name per record; [`Router`] is the [`Sink`] that
//! sends each row to its table's writer. Per object it opens one inner writer per table, lazily,
//! when the first row for that table arrives — so Storage Write keeps one `PENDING` stream per
//! (object, table) and exactly-once holds per (object, table). Every inner writer is prepared
//! (finalized) before any is committed, and the ledger records one token naming all of them
//! (a JSON object: table → inner token), so a run killed between two tables' commits is
//! finished by the next one ([`Router::committed`], [`Router::commit_staged`]).
//!
//! Inner sinks are built by a factory, one per table for the life of the process (a table's
//! creation, `--create-table`, happens there, with the row that first needed it). The number
//! of writers one object may open is bounded (`--max-tables-per-object`): a record routed
//! beyond that is a record error, so a field with unbounded values cannot open unbounded
//! streams.

pub mod template;

pub use self::template::{ObjectTemplate, RouteError, Template};

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use super::api_error::sink_error;
use super::TableRef;
use crate::error::{Class, Error};
use crate::ledger::Staged;
use crate::object::ObjectRef;
use crate::row::Row;
use crate::sink::{Committed, ObjectWriter, Prepared, Rejected, Sink};

/// Builds the sink of one table. `first_row` is the row that needs the table (what
/// `--create-table auto` creates it from); `None` when only staged rows are resolved, which
/// needs the table to exist already.
pub type Factory =
    Arc<dyn Fn(&TableRef, Option<&[u8]>) -> Result<Arc<dyn Sink>, Error> + Send + Sync>;

/// `--max-tables-per-object`'s default.
pub const DEFAULT_MAX_TABLES_PER_OBJECT: usize = 100;

/// How records are routed, besides the template.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--route-default TABLE`: where records missing a routing field go (else: record error).
    pub default: Option<String>,
    /// `--max-tables-per-object`.
    pub max_tables_per_object: usize,
    /// `--payload-column`: fields are looked up inside it (the row is `{"NAME": record, …}`).
    pub payload_column: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            default: None,
            max_tables_per_object: DEFAULT_MAX_TABLES_PER_OBJECT,
            payload_column: None,
        }
    }
}

/// The sink of a templated table: rows to their tables' sinks.
pub struct Router {
    shared: Arc<Shared>,
}

/// What the router and its writers share (writers are `'static` boxes, so they hold an `Arc`).
struct Shared {
    template: Template,
    default: Option<Template>,
    /// The path fields are looked up below (the payload column), or empty.
    prefix: Vec<String>,
    max_tables: usize,
    factory: Factory,
    /// Each table's sink, by `P.D.T`, built once.
    sinks: Mutex<HashMap<String, Arc<dyn Sink>>>,
}

impl Router {
    pub fn new(template: Template, settings: &Settings, factory: Factory) -> Result<Router, Error> {
        let default =
            match &settings.default {
                Some(d) => Some(template.sibling(d).map_err(|e| {
                    sink_error(Class::Permanent, format!("--route-default {d}: {e}"))
                })?),
                None => None,
            };
        Ok(Router {
            shared: Arc::new(Shared {
                template,
                default,
                prefix: settings.payload_column.iter().cloned().collect(),
                max_tables: settings.max_tables_per_object.max(1),
                factory,
                sinks: Mutex::default(),
            }),
        })
    }
}

impl Shared {
    fn sink_for(&self, table: &TableRef, first_row: Option<&[u8]>) -> Result<Arc<dyn Sink>, Error> {
        let key = table.to_string();
        if let Some(s) = self.lock().get(&key) {
            return Ok(s.clone());
        }
        // Built outside the lock: creating a table takes requests, and other objects' tables
        // should not wait for them. Two builders of one table both succeed (a create answered
        // 409 counts as done); the first one kept wins.
        let built = (self.factory)(table, first_row)?;
        Ok(self.lock().entry(key).or_insert(built).clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<dyn Sink>>> {
        self.sinks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The staged token's parts: table → the inner sink's staged rows. A fixed table's token
    /// is the inner sink's own.
    fn parts(&self, staged: &Staged) -> Result<Vec<(TableRef, Staged)>, Error> {
        if let Some(table) = self.template.fixed_table() {
            return Ok(vec![(table, staged.clone())]);
        }
        let map: BTreeMap<String, String> = serde_json::from_str(&staged.token).map_err(|_| {
            sink_error(
                Class::Permanent,
                format!(
                    "an earlier run staged this object ({}) without routing (another --sink \
                     table or --bigquery-mode) and stopped before recording it done: rerun it \
                     with that configuration",
                    staged.token
                ),
            )
        })?;
        map.into_iter()
            .map(|(table, token)| {
                let t = table.parse::<TableRef>().map_err(|e| {
                    sink_error(Class::Permanent, format!("staged token names {table}: {e}"))
                })?;
                Ok((
                    t,
                    Staged {
                        token,
                        ..staged.clone()
                    },
                ))
            })
            .collect()
    }
}

impl Sink for Router {
    fn open(&self, object: &ObjectRef) -> Result<Box<dyn ObjectWriter>, Error> {
        let object_error = |e: RouteError| sink_error(Class::Permanent, e.to_string());
        let shared = &self.shared;
        let template = shared.template.for_object(object).map_err(object_error)?;
        let default = match &shared.default {
            // No field placeholders (checked when parsed): any record gives its table.
            Some(d) => Some(
                d.for_object(object)
                    .and_then(|t| t.table_for(b"{}"))
                    .map_err(object_error)?,
            ),
            None => None,
        };
        Ok(Box::new(Writer {
            shared: shared.clone(),
            object: object.clone(),
            template,
            default,
            writers: Vec::new(),
            index: HashMap::new(),
            default_index: None,
            row: Vec::new(),
            name: String::new(),
            rejected: Vec::new(),
            prepared: false,
        }))
    }

    /// Every table's staged rows are committed.
    fn committed(&self, staged: &Staged) -> Result<bool, Error> {
        for (table, part) in self.shared.parts(staged)? {
            if !self.shared.sink_for(&table, None)?.committed(&part)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Commits each table's staged rows that are not committed yet. When some tables are
    /// committed and another's sink cannot commit its part, writing the object again would
    /// double the committed tables' rows: that is a permanent error, not `false`.
    fn commit_staged(&self, staged: &Staged) -> Result<bool, Error> {
        let parts = self.shared.parts(staged)?;
        let mut done = 0;
        let mut refused = Vec::new();
        for (table, part) in &parts {
            let sink = self.shared.sink_for(table, None)?;
            if sink.committed(part)? || sink.commit_staged(part)? {
                done += 1;
            } else {
                refused.push(table.to_string());
            }
        }
        match (done, refused.is_empty()) {
            (_, true) => Ok(true),
            (0, false) => Ok(false),
            _ => Err(sink_error(
                Class::Permanent,
                format!(
                    "an earlier run's rows of this object are committed in some tables but \
                     cannot be committed in {}: writing it again would double the others",
                    refused.join(", ")
                ),
            )),
        }
    }
}

/// One object's rows, to one inner writer per table.
struct Writer {
    shared: Arc<Shared>,
    object: ObjectRef,
    template: ObjectTemplate,
    /// `--route-default`, for this object.
    default: Option<TableRef>,
    /// In the order the tables were first routed to.
    writers: Vec<(TableRef, Box<dyn ObjectWriter>)>,
    /// Table name (in the template's dataset) → index into `writers`.
    index: HashMap<String, usize>,
    /// The `--route-default` table's index into `writers`, once opened.
    default_index: Option<usize>,
    /// The current row, whole (the lookup reads one JSON text).
    row: Vec<u8>,
    /// The current row's table name.
    name: String,
    /// Rows no table took.
    rejected: Vec<Rejected>,
    prepared: bool,
}

impl Writer {
    fn refuse(&mut self, row: &Row<'_>, error: String) {
        self.rejected.push(Rejected {
            ordinal: row.ordinal,
            byte_offset: row.byte_offset,
            row: self.row.clone(),
            error,
        });
    }

    /// The index of the writer for `table`, opened now if this is its first row (`self.row`
    /// holds the row).
    fn open_writer(&mut self, table: TableRef) -> Result<Result<usize, String>, Error> {
        // A routed name may be the default table's (`{type}` = `other` with --route-default
        // ev_other): one table, one writer — two streams of one table would be two tokens
        // under one ledger key.
        if let Some(i) = self.writers.iter().position(|(t, _)| *t == table) {
            return Ok(Ok(i));
        }
        if self.writers.len() >= self.shared.max_tables {
            return Ok(Err(format!(
                "routed to table {table}, but the object already writes to {} tables, \
                 --max-tables-per-object's bound",
                self.shared.max_tables
            )));
        }
        let sink = self.shared.sink_for(&table, Some(&self.row))?;
        let writer = sink.open(&self.object)?;
        tracing::debug!(object = %self.object, table = %table, "routing to a new table");
        self.writers.push((table, writer));
        Ok(Ok(self.writers.len() - 1))
    }
}

impl ObjectWriter for Writer {
    /// Per row, once its tables are open: the name is filled into a reused buffer and found in
    /// the index, so routing allocates nothing (and copies the row only when a field is
    /// looked up in it).
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), Error> {
        let fields = self.template.has_fields();
        self.row.clear();
        if fields {
            row.append_to(&mut self.row);
        }
        let routed = self
            .template
            .name_with(&self.row, &self.shared.prefix, &mut self.name);
        let found = match &routed {
            Ok(()) => self.index.get(self.name.as_str()).copied(),
            Err(RouteError::Missing { .. }) if self.default.is_some() => self.default_index,
            Err(_) => None,
        };
        let i = match found {
            Some(i) => i,
            None => {
                if !fields {
                    row.append_to(&mut self.row);
                }
                let is_default = matches!(routed, Err(RouteError::Missing { .. }));
                let table = match routed {
                    Ok(()) => Ok(self.template.table(self.name.clone())),
                    Err(RouteError::Missing { .. }) if self.default.is_some() => {
                        Ok(self.default.clone().expect("checked"))
                    }
                    Err(e @ RouteError::Missing { .. }) => Err(format!(
                        "{e}: the row has no table (give --route-default TABLE for such rows)"
                    )),
                    Err(e) => Err(e.to_string()),
                };
                match table.map(|t| self.open_writer(t)) {
                    Ok(Ok(Ok(i))) => {
                        if is_default {
                            self.default_index = Some(i);
                        } else {
                            self.index.insert(self.name.clone(), i);
                        }
                        i
                    }
                    Ok(Err(e)) => return Err(e),
                    Ok(Ok(Err(why))) | Err(why) => {
                        self.refuse(row, why);
                        return Ok(());
                    }
                }
            }
        };
        self.writers[i].1.write_row(row)
    }

    fn prepare(&mut self) -> Result<Prepared, Error> {
        if std::mem::replace(&mut self.prepared, true) {
            return Err(sink_error(
                Class::Permanent,
                "prepare called twice for one object".into(),
            ));
        }
        let mut rejected = std::mem::take(&mut self.rejected);
        let mut tokens = BTreeMap::new();
        for (table, writer) in &mut self.writers {
            let p = writer.prepare()?;
            rejected.extend(p.rejected);
            if let Some(token) = p.token {
                if tokens.insert(table.to_string(), token).is_some() {
                    // Never drop a staged stream from the ledger: its rows would be lost.
                    return Err(sink_error(
                        Class::Permanent,
                        format!("two writers staged rows for table {table} in one object"),
                    ));
                }
            }
        }
        rejected.sort_by_key(|r| r.ordinal);
        let token = if tokens.is_empty() {
            None
        } else if self.shared.template.fixed_table().is_some() {
            // One table: its own token, as the sink without the router records it.
            tokens.into_values().next()
        } else {
            Some(serde_json::to_string(&tokens).expect("strings serialise"))
        };
        Ok(Prepared { rejected, token })
    }

    fn commit(mut self: Box<Self>) -> Result<Committed, Error> {
        let mut rejected = if self.prepared {
            Vec::new()
        } else {
            self.prepare()?.rejected
        };
        let mut inserted: Option<u64> = None;
        for (_, writer) in std::mem::take(&mut self.writers) {
            let c = writer.commit()?;
            rejected.extend(c.rejected);
            if let Some(n) = c.inserted {
                *inserted.get_or_insert(0) += n;
            }
        }
        rejected.sort_by_key(|r| r.ordinal);
        Ok(Committed { rejected, inserted })
    }
}

#[cfg(test)]
mod tests;
