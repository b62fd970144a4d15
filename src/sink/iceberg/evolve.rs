//! `--schema-evolution add-columns`: a top-level field the table has no column for becomes a new
//! optional column, typed as `--create-table auto` types a value ([`super::create::infer`]),
//! through an `update_schema` commit.
//!
//! Why this is safe beside other writers: the commit requires the table's current schema to be
//! the one it was derived from (iceberg's `CurrentSchemaIdMatch`); another writer's schema
//! change makes it fail, and it is derived again from the table as it is then (a column someone
//! else added meanwhile is taken as it is, whatever its type). Data files already written keep
//! the schema of their time: Iceberg reads a column a file lacks as null, by field ID. A field
//! whose value does not fit its column (existing or just added) stays a record error.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use iceberg::spec::{PrimitiveType, Type};
use iceberg::transaction::{AddColumn, ApplyTransactionAction, Transaction};
use serde_json::value::RawValue;

use super::{sink_error, Refusal, Shape, Shared};
use crate::error::{Cause, Class, Error, Stage};

/// Attempts at the schema commit (each derives it again from the table as it is).
const ATTEMPTS: u32 = 8;

/// The top-level fields of `row` that `shape` has no column for, typed.
fn missing(shape: &Shape, row: &[u8]) -> Vec<(String, PrimitiveType)> {
    let Ok(fields) = serde_json::from_slice::<BTreeMap<&str, &RawValue>>(row) else {
        return Vec::new();
    };
    fields
        .into_iter()
        .filter(|(name, _)| !shape.columns.iter().any(|c| c.name == *name))
        .map(|(name, raw)| (name.to_string(), super::create::infer(raw)))
        .collect()
}

/// The table's schema once it has a column for every field of `row`: `shape` itself when it
/// has them already. Blocking (the caller holds the sink's creation lock).
pub(super) fn grow(shared: &Shared, shape: &Arc<Shape>, row: &[u8]) -> Result<Arc<Shape>, Error> {
    let wanted = missing(shape, row);
    if wanted.is_empty() {
        return Ok(shape.clone());
    }
    shared.handle.block_on(async {
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(20 << attempt.min(6))).await;
            }
            let table = shared
                .catalog
                .load_table(&shared.ident)
                .await
                .map_err(|e| sink_error("loading the table", e))?;
            let schema = table.metadata().current_schema().clone();
            let add: Vec<&(String, PrimitiveType)> = wanted
                .iter()
                .filter(|(name, _)| schema.field_by_name(name).is_none())
                .collect();
            if !add.is_empty() {
                let tx = Transaction::new(&table);
                let mut action = tx.update_schema();
                for (name, kind) in &add {
                    action =
                        action.add_column(AddColumn::optional(name, Type::Primitive(kind.clone())));
                }
                let result = match action.apply(tx) {
                    Ok(tx) => tx.commit(shared.catalog.as_ref()).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    // Most likely another writer changed the schema: derive it again.
                    tracing::debug!(attempt, "iceberg schema commit failed: {e}");
                    last = Some(sink_error("adding columns", e));
                    continue;
                }
                let names: Vec<&str> = add.iter().map(|(n, _)| n.as_str()).collect();
                tracing::info!(table = %shared.target, columns = ?names, "added columns (--schema-evolution add-columns)");
            }
            let table = shared
                .catalog
                .load_table(&shared.ident)
                .await
                .map_err(|e| sink_error("loading the table", e))?;
            let shape = Shape::of(&shared.target, &table).map_err(|r| match r {
                Refusal::Service(e) => e,
                Refusal::Usage(why) => Error::new(Stage::Sink, Class::Permanent, Cause::Sink(why)),
            })?;
            return Ok(Arc::new(shape));
        }
        Err(last.unwrap_or_else(|| {
            Error::new(
                Stage::Sink,
                Class::Transient,
                Cause::Sink("iceberg: adding columns did not land".into()),
            )
        }))
    })
}
