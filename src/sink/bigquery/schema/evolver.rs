//! What a writer needs to evolve its table while it writes (`--schema-evolution add-columns`):
//! the REST client for the table's patches, the schema as this process last saw it, and the
//! bound on waiting for BigQuery's write paths to see columns just added.
//!
//! Shared by every object's writer of one sink, so an object that added a column tells the next
//! ones, and the table is re-read only when a row needs a column the cached schema lacks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::evolve::add_columns;
use super::infer::{self, Addition};
use crate::error::Error;
use crate::sink::bigquery::encode::Field;
use crate::sink::bigquery::load::LoadJobs;
use crate::sink::bigquery::table;

/// How long a writer waits, at most, for new write streams (storage-write) or the streaming
/// buffer (insert-all) to see columns it added, unless configured otherwise. BigQuery documents
/// schema changes reaching writers "in the order of minutes"; past the bound the object fails
/// as transient and is tried again, so nothing is lost by giving up.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(600);

pub struct Evolver {
    loads: Arc<LoadJobs>,
    /// The bound on waiting for a patched schema to be seen.
    pub wait: Duration,
    /// The table's REST `schema.fields` as last read or patched here.
    fields: Mutex<Option<Vec<Value>>>,
    /// `--payload-column`: added as JSON, not typed from the first record's shape.
    payload_column: Option<String>,
}

impl Evolver {
    pub fn new(loads: Arc<LoadJobs>, wait: Duration) -> Evolver {
        Evolver {
            loads,
            wait,
            fields: Mutex::new(None),
            payload_column: None,
        }
    }

    /// `--payload-column NAME`: when the table lacks it, it is added as JSON (what takes every
    /// record), not as a RECORD typed from whichever record came first.
    pub fn with_payload_column(mut self, name: Option<String>) -> Evolver {
        self.payload_column = name;
        self
    }

    /// The columns `record` needs added to a table of `fields`, or the record error that
    /// refuses it: a value an existing column cannot take, or a field BigQuery (or the Storage
    /// Write encoder) cannot name as a column (`a.b`, `a-b`; see
    /// [`infer::column_name_problem`]). Generated columns get their own types rather than
    /// their values' (`_ingested_at` TIMESTAMP, the payload column JSON), as
    /// `--create-table auto` gives them: a column's type can never be changed afterwards.
    pub fn plan(&self, fields: &[Value], record: &Value) -> Result<Vec<Addition>, String> {
        let mut additions = infer::additions(fields, record).map_err(|c| c.to_string())?;
        for a in &mut additions {
            infer::check_names(a)?;
            if !a.path.is_empty() {
                continue;
            }
            let name = a.column.name.as_str();
            let kind = match name {
                "_ingested_at" => Some("TIMESTAMP"),
                "_record_ordinal" => Some("INTEGER"),
                "_source_uri" => Some("STRING"),
                _ if self.payload_column.as_deref() == Some(name) => Some("JSON"),
                _ => None,
            };
            if let Some(kind) = kind {
                a.column.kind = kind;
                a.column.repeated = false;
                a.column.fields.clear();
            }
        }
        Ok(additions)
    }

    pub fn table(&self) -> &crate::sink::bigquery::TableRef {
        self.loads.table()
    }

    /// Adds the columns (merging with what concurrent writers added: see [`add_columns`]) and
    /// returns the table's fields afterwards.
    pub async fn add(&self, additions: &[Addition]) -> Result<Vec<Value>, Error> {
        let fields = add_columns(&self.loads, additions).await?;
        *self.fields.lock().unwrap_or_else(|p| p.into_inner()) = Some(fields.clone());
        Ok(fields)
    }

    /// The table's fields: cached, or read with `tables.get` (`refresh` forces the read).
    pub async fn fields(&self, refresh: bool) -> Result<Vec<Value>, Error> {
        if !refresh {
            if let Some(f) = self
                .fields
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                return Ok(f);
            }
        }
        let resource = table::resource(&self.loads).await?;
        let fields = resource["schema"]["fields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        *self.fields.lock().unwrap_or_else(|p| p.into_inner()) = Some(fields.clone());
        Ok(fields)
    }

    /// A timer for one wait for a patched schema: backoff from 250 ms doubling to 10 s, until
    /// [`Evolver::wait`] has passed.
    pub fn patience(&self) -> Patience {
        Patience {
            deadline: Instant::now() + self.wait,
            delay: Duration::from_millis(250),
        }
    }
}

pub struct Patience {
    deadline: Instant,
    delay: Duration,
}

impl Patience {
    /// Sleeps before the next look; `false` (without sleeping) once the bound is reached.
    pub async fn next(&mut self) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        let d = self.delay.min(self.deadline - now);
        tokio::time::sleep(d).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(10));
        true
    }
}

/// The encoder's schema in REST `TableFieldSchema` form, for [`super::infer::additions`]
/// (which takes REST and standard SQL type names alike).
pub fn rest_fields(fields: &[Field]) -> Vec<Value> {
    fields.iter().map(rest_field).collect()
}

fn rest_field(f: &Field) -> Value {
    use crate::sink::bigquery::encode::Mode;
    let mut v = serde_json::json!({
        "name": f.name,
        "type": f.kind.bigquery_name(),
        "mode": match f.mode {
            Mode::Nullable => "NULLABLE",
            Mode::Required => "REQUIRED",
            Mode::Repeated => "REPEATED",
        },
    });
    if !f.fields.is_empty() {
        v["fields"] = Value::Array(rest_fields(&f.fields));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::bigquery::encode::{Kind, Mode};
    use crate::sink::bigquery::schema::infer;
    use serde_json::json;

    #[test]
    fn encoder_fields_in_rest_form_drive_the_inference() {
        let fields = vec![
            Field::new("_row_id", Kind::String).with_mode(Mode::Required),
            Field::new("n", Kind::Int64),
            Field::new("tags", Kind::String).with_mode(Mode::Repeated),
            Field::record("user", vec![Field::new("id", Kind::String)]),
        ];
        let rest = rest_fields(&fields);
        assert_eq!(rest[1]["type"], "INT64");
        assert_eq!(rest[3]["fields"][0]["name"], "id");
        let a = infer::additions(
            &rest,
            &json!({"n": 3, "tags": ["a"], "user": {"id": "u", "plan": {"tier": 1}}, "s": "x"}),
        )
        .unwrap();
        let names: Vec<String> = a.iter().map(|a| a.dotted()).collect();
        assert_eq!(names, vec!["s".to_string(), "user.plan".into()]);
        let c = infer::additions(&rest, &json!({"n": "many"})).unwrap_err();
        assert_eq!(
            c.to_string(),
            "column `n` is INT64, but the record has STRING there"
        );
    }
}
