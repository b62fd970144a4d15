//! `--create-table auto`: a missing table is created from the first row that needs it.
//!
//! The schema is the row-ID column (a required `string`), the metadata columns asked for
//! (`_source_uri` string, `_record_ordinal` long, `_ingested_at` timestamptz), then the row's
//! fields in name order, typed by their JSON value: strings `string`, integers `long`, other
//! numbers `double`, booleans `boolean`, objects, arrays and nulls `string` (their JSON text).
//! With `--payload-column NAME` the record's column is `NAME string`. Only that first row shapes
//! the table: a field a later row adds is a record error (`has no column`) unless
//! `--schema-evolution add-columns` adds it ([`super::evolve`]). The table is partitioned as
//! `--partition-by` says ([`super::partition_by`]; a column a time transform takes is created
//! `timestamptz`), else unpartitioned, in the catalog's warehouse; a worker that loses the race to create it uses
//! the table the winner created.

use std::collections::BTreeMap;

use iceberg::spec::{NestedField, PrimitiveType, Schema, Type, UnboundPartitionSpec};
use iceberg::{Catalog, NamespaceIdent, TableCreation, TableIdent};
use serde_json::value::RawValue;

use super::sink_error;
use crate::error::Error;
use crate::row::Metadata;

/// What `--create-table auto` builds a table from, besides the row.
#[derive(Debug, Clone, Default)]
pub struct AutoCreate {
    /// `--row-id-column` (`None`: left out of the rows).
    pub row_id_column: Option<String>,
    pub metadata: Metadata,
    pub payload_column: Option<String>,
    /// `--partition-by`: the created table's partition fields (none: unpartitioned).
    pub partition_by: Vec<super::partition_by::PartitionBy>,
}

/// The Iceberg schema for a table created from `row` (a row as the pipeline built it).
pub fn schema(auto: &AutoCreate, row: &[u8]) -> Result<Schema, String> {
    let fields: BTreeMap<&str, &RawValue> =
        serde_json::from_slice(row).map_err(|e| format!("the row is not a JSON object: {e}"))?;
    let mut columns: Vec<(String, bool, PrimitiveType)> = Vec::new();
    if let Some(c) = &auto.row_id_column {
        columns.push((c.clone(), true, PrimitiveType::String));
    }
    let m = auto.metadata;
    for (on, name, kind) in [
        (m.source_uri, "_source_uri", PrimitiveType::String),
        (m.record_ordinal, "_record_ordinal", PrimitiveType::Long),
        (m.ingested_at, "_ingested_at", PrimitiveType::Timestamptz),
    ] {
        if on {
            columns.push((name.to_string(), false, kind));
        }
    }
    for (name, raw) in fields {
        if columns.iter().any(|(c, _, _)| c == name) {
            continue;
        }
        let time = auto
            .partition_by
            .iter()
            .any(|f| f.wants_time() && f.column == name);
        let kind = if time {
            PrimitiveType::Timestamptz
        } else {
            infer(raw)
        };
        columns.push((name.to_string(), false, kind));
    }
    let fields = columns
        .into_iter()
        .enumerate()
        .map(|(i, (name, required, kind))| {
            let id = i as i32 + 1;
            let t = Type::Primitive(kind);
            std::sync::Arc::new(if required {
                NestedField::required(id, name, t)
            } else {
                NestedField::optional(id, name, t)
            })
        })
        .collect::<Vec<_>>();
    Schema::builder()
        .with_fields(fields)
        .build()
        .map_err(|e| format!("the inferred schema: {e}"))
}

/// A column's type for a JSON value: strings `string`, integers `long`, other numbers
/// `double`, booleans `boolean`; objects, arrays and nulls `string` (their JSON text).
pub fn infer(raw: &RawValue) -> PrimitiveType {
    let text = raw.get();
    match text.as_bytes().first() {
        Some(b't' | b'f') => PrimitiveType::Boolean,
        Some(b'-' | b'0'..=b'9') if !text.contains(['.', 'e', 'E']) => {
            if text.parse::<i64>().is_ok() {
                PrimitiveType::Long
            } else {
                PrimitiveType::Double
            }
        }
        Some(b'-' | b'0'..=b'9') => PrimitiveType::Double,
        _ => PrimitiveType::String,
    }
}

/// Creates the table (and its namespace) with `schema` and `partition` (none: unpartitioned);
/// a table created meanwhile by another writer is taken as it is.
pub async fn create(
    catalog: &dyn Catalog,
    ident: &TableIdent,
    schema: Schema,
    partition: Option<UnboundPartitionSpec>,
) -> Result<(), Error> {
    let namespace: &NamespaceIdent = ident.namespace();
    if !catalog
        .namespace_exists(namespace)
        .await
        .map_err(|e| sink_error("reading the catalog", e))?
    {
        if let Err(e) = catalog
            .create_namespace(namespace, Default::default())
            .await
        {
            if e.kind() != iceberg::ErrorKind::NamespaceAlreadyExists {
                return Err(sink_error("creating the namespace", e));
            }
        }
    }
    let creation = TableCreation::builder()
        .name(ident.name().to_string())
        .schema(schema)
        .partition_spec_opt(partition)
        .build();
    match catalog.create_table(namespace, creation).await {
        Ok(_) => {
            tracing::info!(table = %ident, "created the table (--create-table auto)");
            Ok(())
        }
        Err(e) if e.kind() == iceberg::ErrorKind::TableAlreadyExists => Ok(()),
        Err(e) => Err(sink_error("creating the table", e)),
    }
}
