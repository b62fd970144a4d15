//! `--create-table auto`: a missing table is created from the row that first needs it.
//!
//! The schema is the row's fields, typed by the same inference as schema evolution
//! ([`super::schema::infer`]), plus the generated columns with their own types (`_row_id`
//! REQUIRED STRING, `_source_uri` STRING, `_record_ordinal` INT64, `_ingested_at` TIMESTAMP);
//! with `--payload-column NAME` it is `NAME JSON` and the generated columns. Creation is lazy —
//! the schema comes from a row, so it happens when the first row for a table arrives, once per
//! table per process (the router's factory). Only that first row shapes the table: fields later
//! rows add are ordinary schema misses, which `--schema-evolution add-columns` adds (use both
//! together). Fields with a null, an empty array or an empty object give no type and are left
//! out the same way.
//!
//! `--partition-by COLUMN` makes that column a TIMESTAMP (created NULLABLE when the first row
//! lacks it: BigQuery partitions only on a time column, and a row's RFC 3339 string or epoch
//! seconds go into one); `--cluster-by` columns the first row lacks are created as STRING.

use serde_json::{json, Value};

use super::api_error::sink_error;
use super::schema::infer;
use super::table::{create_with, Layout};
use super::{Connected, TableRef};
use crate::error::{Class, Error};
use crate::row::Metadata;

/// What `--create-table auto` builds a table from, besides the row.
#[derive(Debug, Clone, Default)]
pub struct AutoCreate {
    /// `--row-id-column` (`None`: left out of the rows).
    pub row_id_column: Option<String>,
    pub metadata: Metadata,
    pub payload_column: Option<String>,
    pub partition_by: Option<String>,
    pub cluster_by: Vec<String>,
}

/// The REST `schema.fields` for a table created from `row` (a row as the pipeline built it:
/// one JSON object with the generated columns in it).
pub fn schema(auto: &AutoCreate, row: &[u8]) -> Result<Vec<Value>, String> {
    let row: Value =
        serde_json::from_slice(row).map_err(|e| format!("the row is not JSON: {e}"))?;
    let mut generated = Vec::new();
    if let Some(c) = &auto.row_id_column {
        generated.push(json!({"name": c, "type": "STRING", "mode": "REQUIRED"}));
    }
    let m = auto.metadata;
    for (on, name, kind) in [
        (m.source_uri, "_source_uri", "STRING"),
        (m.record_ordinal, "_record_ordinal", "INTEGER"),
        (m.ingested_at, "_ingested_at", "TIMESTAMP"),
    ] {
        if on {
            generated.push(json!({"name": name, "type": kind, "mode": "NULLABLE"}));
        }
    }
    let mut fields: Vec<Value> = auto
        .payload_column
        .iter()
        .map(|p| json!({"name": p, "type": "JSON", "mode": "NULLABLE"}))
        .collect();
    let known: Vec<Value> = fields.iter().chain(&generated).cloned().collect();
    let additions = infer::additions(&known, &row).map_err(|c| c.to_string())?;
    for a in additions {
        match valid_column(a.column) {
            Some(c) => fields.push(c.to_json()),
            None => tracing::warn!("--create-table auto: a field name BigQuery cannot hold as a column was left out of the table"),
        }
    }
    fields.extend(generated);
    if let Some(p) = &auto.partition_by {
        match find(&mut fields, p) {
            Some(f) if f["mode"] == "REPEATED" || f["type"] == "RECORD" => {
                return Err(format!(
                    "--partition-by {p}: the first row has a {} there, and BigQuery partitions on \
                     a TIMESTAMP or DATE column",
                    if f["mode"] == "REPEATED" {
                        "list"
                    } else {
                        "record"
                    }
                ))
            }
            Some(f) => {
                if !matches!(f["type"].as_str(), Some("TIMESTAMP" | "DATE" | "DATETIME")) {
                    f["type"] = json!("TIMESTAMP");
                }
            }
            None => fields.push(json!({"name": p, "type": "TIMESTAMP", "mode": "NULLABLE"})),
        }
    }
    for c in &auto.cluster_by {
        if find(&mut fields, c).is_none() {
            fields.push(json!({"name": c, "type": "STRING", "mode": "NULLABLE"}));
        }
    }
    Ok(fields)
}

fn find<'a>(fields: &'a mut [Value], name: &str) -> Option<&'a mut Value> {
    fields.iter_mut().find(|f| {
        f["name"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case(name))
    })
}

/// `column` without the fields BigQuery cannot name (such fields are then schema misses, as
/// in any table); `None` when the column itself cannot be named, or is a RECORD left empty.
fn valid_column(mut column: infer::Column) -> Option<infer::Column> {
    if infer::column_name_problem(&column.name).is_some() {
        return None;
    }
    if column.kind == "RECORD" {
        column.fields = std::mem::take(&mut column.fields)
            .into_iter()
            .filter_map(valid_column)
            .collect();
        if column.fields.is_empty() {
            return None;
        }
    }
    Some(column)
}

/// Creates `t` from `row` unless it exists. Two workers creating it at once both succeed (the
/// later create's 409 counts as done); the table then has the first creator's schema, which
/// the writers read as they open their streams.
pub(crate) async fn ensure(
    c: &Connected,
    t: &TableRef,
    auto: &AutoCreate,
    row: &[u8],
) -> Result<(), Error> {
    let fields = schema(auto, row)
        .map_err(|e| sink_error(Class::Permanent, format!("creating table {t}: {e}")))?;
    let fields = serde_json::from_value(Value::Array(fields))
        .map_err(|e| sink_error(Class::Permanent, format!("creating table {t}: {e}")))?;
    let layout = Layout {
        partition_by: auto.partition_by.as_deref(),
        cluster_by: &auto.cluster_by,
    };
    create_with(
        &c.base,
        c.http.clone(),
        c.auth.clone(),
        t,
        fields,
        layout,
        "the first row's fields (--create-table auto)",
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auto() -> AutoCreate {
        AutoCreate {
            row_id_column: Some("_row_id".into()),
            metadata: "source_uri,record_ordinal,ingested_at".parse().unwrap(),
            ..AutoCreate::default()
        }
    }

    fn shape(fields: &[Value]) -> Vec<String> {
        fields
            .iter()
            .map(|f| {
                format!(
                    "{} {} {}",
                    f["name"].as_str().unwrap(),
                    f["type"].as_str().unwrap(),
                    f["mode"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn the_rows_fields_then_the_generated_columns_with_their_own_types() {
        // (Fields in key order as serde_json's map holds them: sorted.)
        let row = br#"{"type":"yubl-posted","n":3,"at":"2026-11-25T22:00:00Z","user":{"id":"u1"},
            "tags":["a"],"gone":null,"bad-name":1,
            "_row_id":"abc","_source_uri":"s3://b/k","_record_ordinal":0,
            "_ingested_at":"2026-12-01T00:00:00.000Z"}"#;
        let f = schema(&auto(), row).unwrap();
        assert_eq!(
            shape(&f),
            [
                "at STRING NULLABLE",
                "n INTEGER NULLABLE",
                "tags STRING REPEATED",
                "type STRING NULLABLE",
                "user RECORD NULLABLE",
                "_row_id STRING REQUIRED",
                "_source_uri STRING NULLABLE",
                "_record_ordinal INTEGER NULLABLE",
                "_ingested_at TIMESTAMP NULLABLE",
            ]
        );
        assert_eq!(f[4]["fields"][0]["name"], "id");
    }

    #[test]
    fn a_payload_column_table_is_json_and_the_generated_columns() {
        let a = AutoCreate {
            payload_column: Some("raw".into()),
            metadata: Metadata::default(),
            ..auto()
        };
        let f = schema(&a, br#"{"raw":{"x":1,"y":[1]},"_row_id":"abc"}"#).unwrap();
        assert_eq!(shape(&f), ["raw JSON NULLABLE", "_row_id STRING REQUIRED"]);
    }

    #[test]
    fn partition_and_cluster_columns_are_made_to_fit() {
        let a = AutoCreate {
            partition_by: Some("at".into()),
            cluster_by: vec!["type".into(), "region".into()],
            row_id_column: None,
            metadata: Metadata::default(),
            ..AutoCreate::default()
        };
        let f = schema(&a, br#"{"type":"x","at":"2026-11-25T22:00:00Z"}"#).unwrap();
        assert_eq!(
            shape(&f),
            [
                "at TIMESTAMP NULLABLE",
                "type STRING NULLABLE",
                "region STRING NULLABLE"
            ]
        );
        // Missing from the first row: created as a TIMESTAMP.
        let f = schema(&a, br#"{"type":"x"}"#).unwrap();
        assert!(shape(&f).contains(&"at TIMESTAMP NULLABLE".to_string()));
        let e = schema(&a, br#"{"at":{"t":1}}"#).unwrap_err();
        assert!(e.contains("--partition-by at"), "{e}");
    }
}
