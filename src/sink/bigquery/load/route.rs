//! Routing in load mode: `--sink 'bigquery:P.D.events_{type}'` makes one load job per table per
//! batch, and the ledger token that names every job an object's rows went into.
//!
//! A batch's objects are staged with *all* of the batch's job IDs (each object with those of the
//! tables its rows went to) before any job is submitted, so a run that dies anywhere leaves
//! each object naming every job that may hold its rows. The next run resolves each: all loaded
//! → the object is done; none → it is written again; some → it is written again *without* the
//! rows of the tables whose job loaded (those entries are carried into its next token, so a
//! second crash still knows them). Exactly once therefore holds per (object, table), even when
//! the rerun cuts its batches differently (another `--load-batch-objects`, new objects listed).
//!
//! Token format: a single-table run keeps the old `bigquery-load:<first job id>`; a routed run
//! writes `bigquery-load:<id>@<project.dataset.table>|<id>@…`. Job IDs hold only
//! `[A-Za-z0-9_]` and table references no `@` or `|`, so an old token reads as one entry with
//! no table.

use crate::error::{Cause, Class, Error, Stage};
use crate::object::ObjectRef;
use crate::sink::bigquery::route::{ObjectTemplate, RouteError, Template};
use crate::sink::bigquery::TableRef;

/// The staged token's prefix (every load-mode token starts with it).
pub const TOKEN_PREFIX: &str = "bigquery-load:";

/// One job an object's rows went into: its first job ID and (routed runs) the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub first: String,
    pub table: Option<String>,
}

/// The token for `entries`; a single entry without a table is the old format.
pub fn token(entries: &[Entry]) -> String {
    if let [Entry { first, table: None }] = entries {
        return format!("{TOKEN_PREFIX}{first}");
    }
    let parts: Vec<String> = entries
        .iter()
        .map(|e| match &e.table {
            Some(t) => format!("{}@{t}", e.first),
            None => e.first.clone(),
        })
        .collect();
    format!("{TOKEN_PREFIX}{}", parts.join("|"))
}

/// The entries of a load-mode token (without its prefix), old or new format.
pub fn entries(rest: &str) -> Vec<Entry> {
    rest.split('|')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('@') {
            Some((first, table)) => Entry {
                first: first.to_string(),
                table: Some(table.to_string()),
            },
            None => Entry {
                first: p.to_string(),
                table: None,
            },
        })
        .collect()
}

/// `--sink` with placeholders, `--route-default`, `--max-tables-per-object`.
#[derive(Debug, Clone)]
pub struct Routing {
    pub template: Template,
    pub default: Option<Template>,
    pub max_tables: usize,
    /// With `--payload-column NAME`, record fields are looked up under `NAME`.
    pub prefix: Vec<String>,
}

fn object_error(object: &ObjectRef, why: String) -> Error {
    Error::new(
        Stage::Sink,
        Class::Permanent,
        Cause::Sink(format!("{object}: {why}")),
    )
}

impl Routing {
    /// The tables of one object's records.
    pub fn for_object(&self, object: &ObjectRef) -> Result<ObjectRouting, Error> {
        let template = self
            .template
            .for_object(object)
            .map_err(|e| object_error(object, e.to_string()))?;
        let default = match &self.default {
            Some(d) => Some(
                d.for_object(object)
                    .and_then(|t| t.table_for(b"{}"))
                    .map_err(|e| object_error(object, e.to_string()))?,
            ),
            None => None,
        };
        Ok(ObjectRouting {
            template,
            default,
            prefix: self.prefix.clone(),
            name: String::new(),
        })
    }
}

/// One object's routing: its placeholders filled in, the default table resolved.
pub struct ObjectRouting {
    template: ObjectTemplate,
    default: Option<TableRef>,
    prefix: Vec<String>,
    name: String,
}

impl ObjectRouting {
    /// The table for a row: `Ok(Err(why))` is a record error (the field is missing and there
    /// is no `--route-default`, or it cannot name a table).
    pub fn table_for(&mut self, row: &[u8]) -> Result<TableRef, String> {
        match self.template.name_with(row, &self.prefix, &mut self.name) {
            Ok(()) => Ok(self.template.table(self.name.clone())),
            Err(RouteError::Missing { .. }) if self.default.is_some() => {
                Ok(self.default.clone().expect("checked"))
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_keep_the_old_single_job_format_readable() {
        let old = "firehose_replay_ab_0";
        assert_eq!(
            entries(old),
            vec![Entry {
                first: old.into(),
                table: None
            }]
        );
        assert_eq!(
            token(&entries(old)),
            format!("{TOKEN_PREFIX}{old}"),
            "a single-table run writes what older runs read"
        );
        let routed = vec![
            Entry {
                first: "firehose_replay_aa_0".into(),
                table: Some("p.d.events_view".into()),
            },
            Entry {
                first: "firehose_replay_bb_0".into(),
                table: Some("example.com:p.d.events_click".into()),
            },
        ];
        let t = token(&routed);
        assert_eq!(
            t,
            "bigquery-load:firehose_replay_aa_0@p.d.events_view|firehose_replay_bb_0@example.com:p.d.events_click"
        );
        assert_eq!(entries(t.strip_prefix(TOKEN_PREFIX).unwrap()), routed);
    }

    #[test]
    fn records_without_the_field_go_to_the_default_or_are_refused() {
        let sink: TableRef = "p.d.events_{type}".parse().unwrap();
        let object = ObjectRef::new(
            "b",
            "s-1-2026-11-25-13-00-00-0f8fad5b-d9cb-469f-a165-70867728950e",
        );
        let mut routing = Routing {
            template: Template::new(&sink).unwrap(),
            default: None,
            max_tables: 100,
            prefix: Vec::new(),
        };
        let mut r = routing.for_object(&object).unwrap();
        assert_eq!(
            r.table_for(br#"{"type":"yubl-posted"}"#).unwrap().table,
            "events_yubl_posted"
        );
        assert!(r.table_for(br#"{"x":1}"#).unwrap_err().contains("type"));
        routing.default = Some(routing.template.sibling("events_other").unwrap());
        let mut r = routing.for_object(&object).unwrap();
        assert_eq!(r.table_for(br#"{"x":1}"#).unwrap().table, "events_other");
        assert!(
            r.table_for(br#"{"type":{"a":1}}"#).is_err(),
            "objects name no table"
        );
    }
}
