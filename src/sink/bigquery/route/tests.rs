//! The router over in-memory sinks that stage and commit like Storage Write: one staged unit
//! per (object, table), committed at most once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use super::*;
use crate::row::{ObjectSeed, Row};

#[derive(Default)]
struct Store {
    /// Visible rows per table.
    visible: Mutex<BTreeMap<String, Vec<String>>>,
    /// Staged rows per token.
    staged: Mutex<HashMap<String, (String, Vec<String>)>>,
    committed: Mutex<HashSet<String>>,
    /// Tables the factory built a sink for, and whether with a first row.
    built: Mutex<Vec<(String, bool)>>,
    /// A table whose next commit fails (the process "dies" there).
    fail_commit: Mutex<Option<String>>,
}

impl Store {
    fn commit(&self, token: &str) {
        if self.committed.lock().unwrap().insert(token.to_string()) {
            let (table, rows) = self.staged.lock().unwrap()[token].clone();
            self.visible
                .lock()
                .unwrap()
                .entry(table)
                .or_default()
                .extend(rows);
        }
    }
    fn counts(&self) -> BTreeMap<String, usize> {
        let v = self.visible.lock().unwrap();
        v.iter().map(|(t, r)| (t.clone(), r.len())).collect()
    }
}

struct Fake {
    table: String,
    store: Arc<Store>,
}

impl Sink for Fake {
    fn open(&self, object: &ObjectRef) -> Result<Box<dyn ObjectWriter>, Error> {
        Ok(Box::new(FakeWriter {
            table: self.table.clone(),
            token: format!("{}#{}", self.table, object.key),
            store: self.store.clone(),
            rows: Vec::new(),
            rejected: Vec::new(),
        }))
    }
    fn committed(&self, staged: &Staged) -> Result<bool, Error> {
        Ok(self.store.committed.lock().unwrap().contains(&staged.token))
    }
    fn commit_staged(&self, staged: &Staged) -> Result<bool, Error> {
        if !self
            .store
            .staged
            .lock()
            .unwrap()
            .contains_key(&staged.token)
        {
            return Ok(false);
        }
        self.store.commit(&staged.token);
        Ok(true)
    }
}

struct FakeWriter {
    table: String,
    token: String,
    store: Arc<Store>,
    rows: Vec<String>,
    rejected: Vec<Rejected>,
}

impl ObjectWriter for FakeWriter {
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), Error> {
        let json = String::from_utf8(row.to_vec()).unwrap();
        if json.contains("\"bad\"") {
            self.rejected.push(Rejected {
                ordinal: row.ordinal,
                byte_offset: row.byte_offset,
                row: json.into_bytes(),
                error: "refused by the table".into(),
            });
        } else {
            self.rows.push(json);
        }
        Ok(())
    }
    fn prepare(&mut self) -> Result<Prepared, Error> {
        self.store.staged.lock().unwrap().insert(
            self.token.clone(),
            (self.table.clone(), std::mem::take(&mut self.rows)),
        );
        Ok(Prepared {
            rejected: std::mem::take(&mut self.rejected),
            token: Some(self.token.clone()),
        })
    }
    fn commit(self: Box<Self>) -> Result<Committed, Error> {
        {
            let mut fail = self.store.fail_commit.lock().unwrap();
            if fail.as_ref() == Some(&self.table) {
                *fail = None;
                return Err(sink_error(Class::Transient, "killed".into()));
            }
        }
        self.store.commit(&self.token);
        Ok(Committed::default())
    }
}

fn router(table: &str, settings: Settings) -> (Router, Arc<Store>) {
    let store = Arc::new(Store::default());
    let s = store.clone();
    let factory: Factory = Arc::new(move |t: &TableRef, first: Option<&[u8]>| {
        s.built
            .lock()
            .unwrap()
            .push((t.to_string(), first.is_some()));
        Ok(Arc::new(Fake {
            table: t.to_string(),
            store: s.clone(),
        }) as Arc<dyn Sink>)
    });
    let template = Template::new(&table.parse().unwrap()).unwrap();
    (Router::new(template, &settings, factory).unwrap(), store)
}

const KEY: &str =
    "2026/11/25/22/yubl-1-2026-11-25-22-05-13-0b4c2c6e-5a1f-4f3e-9b7e-0d9f1c2a3b4c.gz";

/// Writes `records` as rows of object `KEY` and prepares: the writer (to commit) and what
/// prepare returned.
fn write(router: &Router, records: &[&str]) -> (Box<dyn ObjectWriter>, Prepared) {
    let object = ObjectRef::new("b", KEY);
    let id = ObjectSeed::new(&object).id(0, &[]);
    let mut w = router.open(&object).unwrap();
    for (i, r) in records.iter().enumerate() {
        w.write_row(&Row::whole(&id, i as u64, r.as_bytes()))
            .unwrap();
    }
    let prepared = w.prepare().unwrap();
    (w, prepared)
}

fn staged(token: String) -> Staged {
    Staged {
        token,
        records: 0,
        rows: 0,
        record_errors: 0,
    }
}

#[test]
fn rows_go_to_their_tables_and_refusals_come_back_in_order() {
    let (r, store) = router(
        "p.d.ev_{type}",
        Settings {
            default: Some("ev_other".into()),
            ..Settings::default()
        },
    );
    let (w, prepared) = write(
        &r,
        &[
            r#"{"type":"yubl-posted","n":1}"#,
            r#"{"type":"user-followed","n":2}"#,
            r#"{"n":3}"#,
            r#"{"type":"yubl-posted","n":4,"x":"bad"}"#,
            r#"{"type":{"nested":1}}"#,
            r#"{"type":"yubl-posted","n":6}"#,
        ],
    );
    let why: Vec<(u64, &str)> = prepared
        .rejected
        .iter()
        .map(|r| (r.ordinal, r.error.as_str()))
        .collect();
    assert_eq!(why.len(), 2);
    assert_eq!(why[0], (3, "refused by the table"));
    assert_eq!(why[1].0, 4);
    assert!(why[1].1.contains("an object"), "{}", why[1].1);
    // One token naming every table's staged part, before anything is visible.
    let token: BTreeMap<String, String> =
        serde_json::from_str(prepared.token.as_deref().unwrap()).unwrap();
    assert_eq!(
        token.keys().collect::<Vec<_>>(),
        ["p.d.ev_other", "p.d.ev_user_followed", "p.d.ev_yubl_posted"]
    );
    assert!(store.counts().is_empty());
    w.commit().unwrap();
    assert_eq!(
        store.counts(),
        BTreeMap::from([
            ("p.d.ev_other".to_string(), 1),
            ("p.d.ev_user_followed".to_string(), 1),
            ("p.d.ev_yubl_posted".to_string(), 2),
        ])
    );
    // Each table's sink was built once, with the row that first needed it.
    assert!(store.built.lock().unwrap().iter().all(|(_, first)| *first));
    assert_eq!(store.built.lock().unwrap().len(), 3);
}

#[test]
fn without_a_default_a_row_missing_the_field_is_a_record_error() {
    let (r, store) = router("p.d.ev_{detail.type}", Settings::default());
    let (w, prepared) = write(&r, &[r#"{"detail":{"type":"a"}}"#, r#"{"detail":{}}"#]);
    assert_eq!(prepared.rejected.len(), 1);
    let e = &prepared.rejected[0];
    assert_eq!(e.ordinal, 1);
    assert!(e.error.contains("--route-default"), "{}", e.error);
    assert_eq!(e.row, br#"{"detail":{}}"#);
    w.commit().unwrap();
    assert_eq!(
        store.counts(),
        BTreeMap::from([("p.d.ev_a".to_string(), 1)])
    );
}

#[test]
fn an_object_opens_at_most_max_tables_writers() {
    let (r, store) = router(
        "p.d.t_{n}",
        Settings {
            max_tables_per_object: 2,
            ..Settings::default()
        },
    );
    let (w, prepared) = write(
        &r,
        &[r#"{"n":1}"#, r#"{"n":2}"#, r#"{"n":3}"#, r#"{"n":1}"#],
    );
    assert_eq!(prepared.rejected.len(), 1);
    assert_eq!(prepared.rejected[0].ordinal, 2);
    assert!(prepared.rejected[0]
        .error
        .contains("--max-tables-per-object"));
    w.commit().unwrap();
    assert_eq!(
        store.counts(),
        BTreeMap::from([("p.d.t_1".to_string(), 2), ("p.d.t_2".to_string(), 1)])
    );
}

#[test]
fn a_run_killed_between_two_tables_commits_is_finished_by_the_next() {
    let (r, store) = router("p.d.ev_{type}", Settings::default());
    let (w, prepared) = write(
        &r,
        &[r#"{"type":"a"}"#, r#"{"type":"b"}"#, r#"{"type":"b"}"#],
    );
    let token = prepared.token.unwrap();
    // The second table's commit dies (tables commit in the order they were routed to).
    *store.fail_commit.lock().unwrap() = Some("p.d.ev_b".into());
    assert!(w.commit().is_err());
    assert_eq!(
        store.counts(),
        BTreeMap::from([("p.d.ev_a".to_string(), 1)])
    );
    // The next run (a new router: a new process) reads the ledger's token.
    let (next, _) = router("p.d.ev_{type}", Settings::default());
    let next = Router {
        shared: Arc::new(Shared {
            factory: {
                let s = store.clone();
                Arc::new(move |t: &TableRef, first: Option<&[u8]>| {
                    assert!(first.is_none(), "resolving builds sinks without rows");
                    Ok(Arc::new(Fake {
                        table: t.to_string(),
                        store: s.clone(),
                    }) as Arc<dyn Sink>)
                })
            },
            ..Arc::try_unwrap(next.shared).ok().unwrap()
        }),
    };
    let s = staged(token);
    assert!(!next.committed(&s).unwrap());
    assert!(next.commit_staged(&s).unwrap());
    assert!(next.committed(&s).unwrap());
    // Committing again changes nothing: each part at most once.
    assert!(next.commit_staged(&s).unwrap());
    assert_eq!(
        store.counts(),
        BTreeMap::from([("p.d.ev_a".to_string(), 1), ("p.d.ev_b".to_string(), 2)])
    );
}

#[test]
fn a_partly_committed_object_whose_rest_cannot_be_committed_is_an_error_not_a_rewrite() {
    let (r, store) = router("p.d.ev_{type}", Settings::default());
    let (w, prepared) = write(&r, &[r#"{"type":"a"}"#, r#"{"type":"b"}"#]);
    let token = prepared.token.unwrap();
    *store.fail_commit.lock().unwrap() = Some("p.d.ev_b".into());
    assert!(w.commit().is_err());
    // The staged part of `b` is gone (say, the stream expired).
    store
        .staged
        .lock()
        .unwrap()
        .retain(|t, _| !t.starts_with("p.d.ev_b"));
    let e = r.commit_staged(&staged(token)).unwrap_err();
    assert!(e.to_string().contains("p.d.ev_b"), "{e}");
    // Nothing committed at all: writing the object again is safe.
    let (r, store) = router("p.d.ev_{type}", Settings::default());
    let (_, prepared) = write(&r, &[r#"{"type":"a"}"#]);
    store.staged.lock().unwrap().clear();
    assert!(!r.commit_staged(&staged(prepared.token.unwrap())).unwrap());
}

#[test]
fn one_fixed_table_keeps_the_inner_sinks_token() {
    let (r, store) = router("p.d.events", Settings::default());
    let (w, prepared) = write(&r, &[r#"{"a":1}"#]);
    let token = prepared.token.unwrap();
    assert_eq!(token, format!("p.d.events#{KEY}"));
    w.commit().unwrap();
    assert!(r.committed(&staged(token)).unwrap());
    assert_eq!(
        store.counts(),
        BTreeMap::from([("p.d.events".to_string(), 1)])
    );
}

#[test]
fn a_stream_placeholder_on_a_key_without_one_fails_the_object() {
    let (r, _) = router("p.d.{stream}_{yyyy}", Settings::default());
    let e = r
        .open(&ObjectRef::new("b", "plain/data.json"))
        .err()
        .unwrap();
    assert_eq!(e.class, Class::Permanent);
    assert!(e.to_string().contains("{stream}"), "{e}");
    let (w, prepared) = write(&r, &[r#"{"a":1}"#]);
    let token: BTreeMap<String, String> =
        serde_json::from_str(prepared.token.as_deref().unwrap()).unwrap();
    assert_eq!(token.keys().collect::<Vec<_>>(), ["p.d.yubl_2026"]);
    w.commit().unwrap();
}
