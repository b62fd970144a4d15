//! A load batch's schema as it grows: `--schema-evolution add-columns` and `--create-table
//! auto` in load mode.
//!
//! A load job carries its schema and adds the columns in it that the table lacks
//! (`schemaUpdateOptions: ALLOW_FIELD_ADDITION`), or creates the table from it
//! (`CREATE_IF_NEEDED`). So load mode never patches the table: the spool checks each row
//! against the batch's schema, and a row refused for fields the schema lacks widens the batch's
//! schema instead (types inferred by [`infer`]), unless a value conflicts with an existing
//! column (a record error naming the path and both types). Only the refused rows pay for this:
//! the fast path is the unchanged encoder check, with the encoder each writer holds.
//!
//! Before the job is submitted the table is read again and the batch's additions are merged
//! into what it holds *now*, so columns another run added meanwhile are kept in the job's
//! schema (a load job whose schema lacks a column of the table fails), and two runs adding the
//! same column both succeed: the second job's schema simply has it already.
//!
//! The schema is not part of the job ID (see [`super::job_id`]): the ID must follow from the
//! rows alone, so that a retry, a concurrent worker and a rerun after a crash meet at one job
//! even when the table's schema changed between them.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use crate::error::{Class, Error};
use crate::settings::Settings;
use crate::sink::bigquery::api_error::sink_error;
use crate::sink::bigquery::encode::{self, Encoder, Options};
use crate::sink::bigquery::schema::infer::{self, Addition};
use crate::sink::bigquery::table;

use super::LoadJobs;

/// `--partition-by` and `--cluster-by` for a table a load job creates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateLayout {
    pub partition_by: Option<String>,
    pub cluster_by: Vec<String>,
}

/// How a load run's schema may grow.
#[derive(Debug, Clone, Default)]
pub struct Growth {
    /// `--schema-evolution add-columns`.
    pub add_columns: bool,
    /// `--create-table auto`: a missing table is created by the batch's job.
    pub create: Option<CreateLayout>,
    pub options: Options,
}

impl Growth {
    /// Whether batches look at the table themselves (else the schema read at start is used).
    pub fn active(&self) -> bool {
        self.add_columns || self.create.is_some()
    }
}

/// An encoder for REST `schema.fields`.
pub fn encoder_for(fields: &[Value], options: Options) -> Result<Encoder, String> {
    // An encoder needs a column; a seed without any (no row-ID column, no metadata) gets one
    // no record can name (a reserved prefix), so every key is a field to add.
    let placeholder = [json!({"name": "_TABLE_no_columns_yet", "type": "STRING"})];
    let fields = if fields.is_empty() {
        &placeholder[..]
    } else {
        fields
    };
    let rest: Vec<gcp_bigquery_client::model::table_field_schema::TableFieldSchema> =
        serde_json::from_value(Value::Array(fields.to_vec())).map_err(|e| e.to_string())?;
    let fields = rest
        .iter()
        .map(encode::Field::from_rest)
        .collect::<Result<Vec<_>, _>>()?;
    Encoder::new(fields, options)
}

/// The columns a table created from the rows starts with: the row ID (REQUIRED STRING), the
/// metadata columns, the payload column (JSON) and the partitioning column (TIMESTAMP: a string
/// would not partition) — the columns whose types the rows' values cannot be trusted to tell.
pub fn seed_fields(settings: &Settings, partition_by: Option<&str>) -> Vec<Value> {
    let mut fields = Vec::new();
    if let Some(id) = &settings.row_id_column {
        fields.push(json!({"name": id, "type": "STRING", "mode": "REQUIRED"}));
    }
    let m = settings.metadata;
    if m.source_uri {
        fields.push(json!({"name": "_source_uri", "type": "STRING", "mode": "NULLABLE"}));
    }
    if m.record_ordinal {
        fields.push(json!({"name": "_record_ordinal", "type": "INTEGER", "mode": "NULLABLE"}));
    }
    if m.ingested_at {
        fields.push(json!({"name": "_ingested_at", "type": "TIMESTAMP", "mode": "NULLABLE"}));
    }
    if let Some(p) = &settings.payload_column {
        fields.push(json!({"name": p, "type": "JSON", "mode": "NULLABLE"}));
    }
    if let Some(p) = partition_by {
        let taken = fields.iter().any(|f| {
            f["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(p))
        });
        if !taken {
            fields.push(json!({"name": p, "type": "TIMESTAMP", "mode": "NULLABLE"}));
        }
    }
    fields
}

/// Whether every key of `value` that `fields` lacks carries no type yet (null, `[]`, `{}`, or
/// only such values inside): such a record is written without them, as if they were null.
fn only_untyped_unknowns(fields: &[Value], value: &Value) -> bool {
    fn untyped(v: &Value) -> bool {
        match v {
            Value::Null => true,
            Value::Array(items) => items.iter().all(|i| i.is_null()),
            Value::Object(m) => m.values().all(untyped),
            _ => false,
        }
    }
    let Value::Object(m) = value else {
        return true;
    };
    m.iter().all(|(k, v)| {
        let field = fields.iter().find(|f| {
            f["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(k))
        });
        match field {
            None => untyped(v),
            Some(f) if f["type"] == "RECORD" || f["type"] == "STRUCT" => {
                let sub = f["fields"].as_array().map(Vec::as_slice).unwrap_or(&[]);
                match v {
                    Value::Array(items) => items.iter().all(|i| only_untyped_unknowns(sub, i)),
                    v => only_untyped_unknowns(sub, v),
                }
            }
            Some(_) => true,
        }
    })
}

/// The encoder a writer checks rows with, and which schema generation it belongs to.
#[derive(Clone)]
pub struct Current {
    pub encoder: Arc<Encoder>,
    generation: u64,
}

struct State {
    fields: Vec<Value>,
    current: Current,
    /// With `ignore_unknown_values`: for records whose only unknown keys carry no type yet.
    lenient: Option<Arc<Encoder>>,
    added: Vec<Addition>,
}

/// One batch's schema: the table's (or a created table's seed), widened by the records.
pub struct BatchSchema {
    grows: bool,
    options: Options,
    state: Mutex<State>,
}

impl BatchSchema {
    /// A schema that never grows: `encoder` for every row.
    pub fn fixed(encoder: Arc<Encoder>) -> BatchSchema {
        BatchSchema {
            grows: false,
            options: Options::default(),
            state: Mutex::new(State {
                fields: Vec::new(),
                current: Current {
                    encoder,
                    generation: 0,
                },
                lenient: None,
                added: Vec::new(),
            }),
        }
    }

    /// Starting from `fields`; `grows` lets refused records add columns.
    pub fn new(fields: Vec<Value>, grows: bool, options: Options) -> Result<BatchSchema, String> {
        let encoder = Arc::new(encoder_for(&fields, options)?);
        Ok(BatchSchema {
            grows,
            options,
            state: Mutex::new(State {
                fields,
                current: Current {
                    encoder,
                    generation: 0,
                },
                lenient: None,
                added: Vec::new(),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn current(&self) -> Current {
        self.lock().current.clone()
    }

    /// Whether records may add columns (and so the job ignores the untyped unknown keys the
    /// spool lets through).
    pub fn grows(&self) -> bool {
        self.grows
    }

    /// The columns the batch's records added, in the order they were added.
    pub fn added(&self) -> Vec<Addition> {
        self.lock().added.clone()
    }

    /// The batch's schema fields now.
    pub fn fields(&self) -> Vec<Value> {
        self.lock().fields.clone()
    }

    /// A row `seen`'s encoder refused with `why`: `Ok` when it fits the batch's schema after
    /// all — one another writer widened meanwhile, or one widened now by the columns the row
    /// asks for — with `seen` brought up to date; else the record error.
    pub fn refused(&self, json: &[u8], why: String, seen: &mut Current) -> Result<(), String> {
        if !self.grows {
            return Err(why);
        }
        let mut st = self.lock();
        let mut scratch = Vec::new();
        let mut why = why;
        if st.current.generation != seen.generation {
            *seen = st.current.clone();
            match seen.encoder.encode(json, &mut scratch) {
                Ok(()) => return Ok(()),
                Err(w) => why = w,
            }
        }
        let Ok(value) = serde_json::from_slice::<Value>(json) else {
            return Err(why);
        };
        let additions = infer::additions(&st.fields, &value).map_err(|c| c.to_string())?;
        for a in &additions {
            infer::check_names(a)?;
        }
        let fields = infer::merged(&st.fields, &additions);
        let strict = if additions.is_empty() {
            st.current.encoder.clone()
        } else {
            Arc::new(encoder_for(&fields, self.options)?)
        };
        scratch.clear();
        if let Err(e) = strict.encode(json, &mut scratch) {
            // Keys without a type yet (`null`, `[]`) wait for a record with a value; the row
            // goes in without them (the job ignores unknown values; nothing typed is lost,
            // as every typed key was just checked to have its column).
            if !only_untyped_unknowns(&fields, &value) {
                return Err(e);
            }
            let lenient = match (&st.lenient, additions.is_empty()) {
                (Some(l), true) => l.clone(),
                _ => Arc::new(encoder_for(
                    &fields,
                    Options {
                        ignore_unknown_values: true,
                        skip_unknown_empty: false,
                    },
                )?),
            };
            scratch.clear();
            lenient.encode(json, &mut scratch).map_err(|_| e)?;
            st.lenient = Some(lenient);
        } else if !additions.is_empty() {
            st.lenient = None;
        }
        if !additions.is_empty() {
            let names: Vec<String> = additions.iter().map(Addition::dotted).collect();
            tracing::debug!(columns = %names.join(", "), "load batch schema widened");
            st.fields = fields;
            st.current = Current {
                encoder: strict,
                generation: st.current.generation + 1,
            };
            st.added.extend(additions);
            *seen = st.current.clone();
        }
        Ok(())
    }
}

/// The table's schema fields now, or `None` when the table does not exist.
pub async fn table_fields(loads: &LoadJobs) -> Result<Option<Vec<Value>>, Error> {
    let what = format!("reading the schema of {}", loads.table());
    Ok(table::lookup(loads, &what).await?.map(|v| {
        v["schema"]["fields"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }))
}

/// The schema a batch starts from: the table's now, or (missing, `--create-table auto`) the
/// seed columns; a missing table without auto is the batch's error.
pub async fn for_batch(
    loads: &LoadJobs,
    growth: &Growth,
    settings: &Settings,
) -> Result<BatchSchema, Error> {
    let t = loads.table();
    let (fields, grows) = match (table_fields(loads).await?, &growth.create) {
        (Some(fields), _) => (fields, growth.add_columns),
        (None, Some(create)) => (seed_fields(settings, create.partition_by.as_deref()), true),
        (None, None) => {
            return Err(sink_error(
                Class::Permanent,
                format!("table {t} does not exist (create it, or give --create-table auto)"),
            ))
        }
    };
    BatchSchema::new(fields, grows, growth.options)
        .map_err(|e| sink_error(Class::Permanent, format!("table {t} schema: {e}")))
}

/// The load client for a grown batch's job: the table's schema as it is *now* with the
/// batch's additions merged in (`ALLOW_FIELD_ADDITION` when that adds any), or, when the table
/// is still missing, the batch's schema with `CREATE_IF_NEEDED` and the layout. One log line
/// names the columns the job adds.
pub async fn job_client(
    loads: &LoadJobs,
    batch: &BatchSchema,
    growth: &Growth,
) -> Result<LoadJobs, Error> {
    let t = loads.table();
    let added = batch.added();
    let (fields, create, adding) = match table_fields(loads).await? {
        Some(now) => {
            let fields = infer::merged(&now, &added);
            let new: Vec<String> = added
                .iter()
                .filter(|a| infer::merged(&now, std::slice::from_ref(a)) != now)
                .map(Addition::dotted)
                .collect();
            (fields, None, new)
        }
        None => {
            let Some(layout) = &growth.create else {
                return Err(sink_error(
                    Class::Permanent,
                    format!("table {t} does not exist (create it, or give --create-table auto)"),
                ));
            };
            let fields = batch.fields();
            let mut layout = layout.clone();
            let names: Vec<&str> = fields.iter().filter_map(|f| f["name"].as_str()).collect();
            layout.cluster_by.retain(|c| {
                let there = names.iter().any(|n| n.eq_ignore_ascii_case(c));
                if !there {
                    tracing::warn!(table = %t, column = %c, "no record of the batch has this --cluster-by column: the table is created without clustering on it");
                }
                there
            });
            let all: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            tracing::info!(table = %t, columns = %all.join(", "), "schema: the load job creates the table");
            (fields, Some(layout), Vec::new())
        }
    };
    if !adding.is_empty() {
        tracing::info!(table = %t, columns = %adding.join(", "), "schema: the load job adds columns");
    }
    Ok(loads.for_batch(
        fields,
        !adding.is_empty(),
        batch.grows() || loads.ignores_unknown_values(),
        create,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(fields: Value) -> BatchSchema {
        BatchSchema::new(fields.as_array().unwrap().clone(), true, Options::default()).unwrap()
    }

    fn admit(b: &BatchSchema, seen: &mut Current, row: &str) -> Result<(), String> {
        let mut out = Vec::new();
        match seen.encoder.encode(row.as_bytes(), &mut out) {
            Ok(()) => Ok(()),
            Err(why) => b.refused(row.as_bytes(), why, seen),
        }
    }

    #[test]
    fn refused_rows_widen_the_batch_schema_nested_fields_too() {
        let b = batch(json!([
            {"name": "_row_id", "type": "STRING", "mode": "REQUIRED"},
            {"name": "user", "type": "RECORD", "fields": [{"name": "id", "type": "STRING"}]}
        ]));
        let mut seen = b.current();
        admit(&b, &mut seen, r#"{"_row_id":"a","user":{"id":"u"}}"#).unwrap();
        admit(&b, &mut seen, r#"{"_row_id":"b","s":"x"}"#).unwrap();
        admit(
            &b,
            &mut seen,
            r#"{"_row_id":"c","user":{"id":"u","plan":{"tier":2}},"geo":{"n":1}}"#,
        )
        .unwrap();
        let added: Vec<String> = b.added().iter().map(Addition::dotted).collect();
        assert_eq!(added, vec!["s", "geo", "user.plan"]);
        let f = b.fields();
        assert_eq!(f[1]["fields"][1]["fields"][0]["type"], "INTEGER");
        // Another writer still on the first encoder catches up without adding anything.
        let mut stale = Current {
            encoder: Arc::new(encoder_for(&f[..2], Options::default()).unwrap()),
            generation: 0,
        };
        admit(&b, &mut stale, r#"{"_row_id":"d","s":"y"}"#).unwrap();
        assert_eq!(b.added().len(), 3);
    }

    #[test]
    fn conflicts_untyped_keys_and_bad_names() {
        let b = batch(json!([{"name": "n", "type": "INTEGER"}]));
        let mut seen = b.current();
        let e = admit(&b, &mut seen, r#"{"n":"many"}"#).unwrap_err();
        assert_eq!(e, "column `n` is INTEGER, but the record has STRING there");
        // A key with no type yet neither adds a column nor refuses the record.
        admit(&b, &mut seen, r#"{"n":1,"later":null,"e":[]}"#).unwrap();
        assert!(b.added().is_empty());
        let e = admit(&b, &mut seen, r#"{"n":1,"bad-name":1}"#).unwrap_err();
        assert!(e.contains("`bad-name` cannot become a column"), "{e}");
        let e = admit(&b, &mut seen, r#"{"n":1,"a":{"_PARTITIONTIME":1}}"#).unwrap_err();
        assert!(e.contains("`a._PARTITIONTIME`"), "{e}");
        // A row whose additions fit but that fails for another reason adds nothing.
        let e = admit(&b, &mut seen, r#"{"n":1.5,"x":1}"#).unwrap_err();
        assert!(e.contains("FLOAT"), "{e}");
        assert!(b.added().is_empty());
        // Arrays of arrays have no column type: a record error, not data silently dropped.
        assert!(admit(&b, &mut seen, r#"{"n":1,"m":[[1]]}"#).is_err());
    }

    #[test]
    fn a_fixed_schema_refuses_what_its_encoder_refuses() {
        let b = BatchSchema::fixed(Arc::new(
            encoder_for(
                &[json!({"name": "n", "type": "INTEGER"})],
                Options::default(),
            )
            .unwrap(),
        ));
        let mut seen = b.current();
        assert_eq!(
            admit(&b, &mut seen, r#"{"x":1}"#).unwrap_err(),
            "no such field: x"
        );
    }

    #[test]
    fn a_created_table_starts_with_the_generated_columns_and_a_timestamp_partition() {
        let mut s = Settings::default();
        s.metadata.ingested_at = true;
        s.payload_column = Some("raw".into());
        let f = seed_fields(&s, Some("event_time"));
        let names: Vec<(&str, &str)> = f
            .iter()
            .map(|f| (f["name"].as_str().unwrap(), f["type"].as_str().unwrap()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("_row_id", "STRING"),
                ("_ingested_at", "TIMESTAMP"),
                ("raw", "JSON"),
                ("event_time", "TIMESTAMP")
            ]
        );
        assert_eq!(f[0]["mode"], "REQUIRED");
        assert_eq!(seed_fields(&s, Some("_ingested_at")).len(), 3);
    }
}
