//! A batch's commit: spooled rows → Parquet data files → one `fast_append` snapshot carrying
//! the batch ID in its summary; and the look-up that tells whether a batch ID was committed.
//!
//! Data files are named `fr-<batch ID>-NNNNN.parquet`: deterministic for a batch, and unique
//! across batches and attempts (the batch ID ends in a per-attempt nonce), so a file is never
//! overwritten, and a file of a killed attempt is never part of any snapshot (an orphan, listed
//! by its name). Before every commit attempt the table's snapshots are searched for the batch
//! ID: an attempt whose answer was lost, but which landed, is not committed twice (and
//! iceberg-rust's duplicate-file check refuses it besides).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use iceberg::spec::{DataFile, DataFileFormat};
use iceberg::table::Table;
use iceberg::transaction::{ApplyTransactionAction, Transaction};
use iceberg::writer::base_writer::data_file_writer::DataFileWriterBuilder;
use iceberg::writer::file_writer::location_generator::{
    DefaultFileNameGenerator, DefaultLocationGenerator,
};
use iceberg::writer::file_writer::rolling_writer::RollingFileWriterBuilder;
use iceberg::writer::file_writer::ParquetWriterBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::{partitioned, sink_error, spool, Shared, BATCH_PROPERTY};
use crate::error::{Cause, Class, Error, Stage};
use crate::sink::batch::Identity;

/// What a ledger token of this sink starts with; the batch ID follows.
pub const TOKEN_PREFIX: &str = "iceberg:";

/// Commit attempts per batch (each reloads the table; iceberg-rust retries conflicts within an
/// attempt too, yet a tight race between writers still loses some attempts).
const COMMIT_ATTEMPTS: u32 = 12;

/// A new batch's ID: a hash of the objects it covers, then a nonce of this attempt.
pub fn batch_id(objects: &[Identity]) -> String {
    let mut h = blake3::Hasher::new();
    for (bucket, key, etag) in objects {
        for part in [bucket, key, etag] {
            h.update(part.as_bytes());
            h.update(&[0]);
        }
    }
    let keys = h.finalize().to_hex();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nonce = blake3::hash(format!("{now}/{}/{n}", std::process::id()).as_bytes()).to_hex();
    format!("{}-{}", &keys[..16], &nonce[..8])
}

/// The batch ID of a token this sink staged.
pub fn batch_of(token: &str) -> Option<&str> {
    token.strip_prefix(TOKEN_PREFIX).filter(|b| !b.is_empty())
}

/// Whether a snapshot the table still has carries `batch` in its summary.
pub fn has_batch(table: &Table, batch: &str) -> bool {
    table.metadata().snapshots().any(|s| {
        s.summary()
            .additional_properties
            .get(BATCH_PROPERTY)
            .map(String::as_str)
            == Some(batch)
    })
}

/// Whether `batch` was committed (blocking callers go through the shared runtime handle).
pub async fn committed(shared: &Shared, batch: &str) -> Result<bool, Error> {
    let table = shared
        .catalog
        .load_table(&shared.ident)
        .await
        .map_err(|e| sink_error("loading the table", e))?;
    Ok(has_batch(&table, batch))
}

/// The table property a rerun's fence sets (to the batch ID it looked for).
const FENCE_PROPERTY: &str = "firehose-replay.fence";

/// Whether `batch`, staged by an earlier run that stopped before recording it done, was
/// committed. Not found, the table is first moved on by a commit of this run's own (a table
/// property naming the batch) and then searched again: the earlier process's commit, should it
/// still be on its way to a catalog server (a PostgreSQL catalog runs a `COMMIT` it received
/// from a process killed since), either landed before the fence and is found, or can no longer
/// land — a SQL catalog updates the table's row only while it names the metadata file the
/// commit started from.
pub async fn committed_fenced(shared: &Shared, batch: &str) -> Result<bool, Error> {
    let table = shared
        .catalog
        .load_table(&shared.ident)
        .await
        .map_err(|e| sink_error("loading the table", e))?;
    if has_batch(&table, batch) {
        return Ok(true);
    }
    let tx = Transaction::new(&table);
    let tx = tx
        .update_table_properties()
        .set(FENCE_PROPERTY.to_string(), batch.to_string())
        .apply(tx)
        .map_err(|e| sink_error("fencing the table", e))?;
    tx.commit(shared.catalog.as_ref())
        .await
        .map_err(|e| sink_error("fencing the table", e))?;
    committed(shared, batch).await
}

/// The spools' rows (in order) into data files of the target size.
pub async fn write_files(
    shared: &Shared,
    spools: &[PathBuf],
    batch: &str,
) -> Result<Vec<DataFile>, Error> {
    let Some(shape) = shared.shape() else {
        return Ok(Vec::new()); // no row ever reached the sink: nothing to write
    };
    let table = shared
        .catalog
        .load_table(&shared.ident)
        .await
        .map_err(|e| sink_error("loading the table", e))?;
    let location = DefaultLocationGenerator::new(table.metadata())
        .map_err(|e| sink_error("the table's data location", e))?;
    let names = DefaultFileNameGenerator::new(format!("fr-{batch}"), None, DataFileFormat::Parquet);
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .set_max_row_group_bytes(Some(shared.settings.row_group_bytes.max(1 << 20) as usize))
        .build();
    let parquet = ParquetWriterBuilder::new(props, shape.schema.clone());
    let rolling = RollingFileWriterBuilder::new(
        parquet,
        shared.settings.target_file_bytes.max(1 << 20) as usize,
        table.file_io().clone(),
        location,
        names,
    );
    let mut writer = partitioned::Files::open(
        DataFileWriterBuilder::new(rolling),
        shape.schema.clone(),
        table.metadata().default_partition_spec().clone(),
    )
    .await
    .map_err(|e| sink_error("opening a data file", e))?;
    for path in spools {
        for batch in spool::reader(path)? {
            writer
                .write(widen(batch?, &shape.arrow)?)
                .await
                .map_err(|e| sink_error("writing a data file", e))?;
        }
    }
    writer
        .close()
        .await
        .map_err(|e| sink_error("closing a data file", e))
}

/// A spooled batch in the schema the data files are written with: a spool written before
/// `--schema-evolution add-columns` widened the table lacks the new columns, null in its rows.
fn widen(
    batch: arrow_array::RecordBatch,
    schema: &arrow_schema::SchemaRef,
) -> Result<arrow_array::RecordBatch, Error> {
    if batch.schema() == *schema {
        return Ok(batch);
    }
    let columns = schema
        .fields()
        .iter()
        .map(|f| match batch.column_by_name(f.name()) {
            Some(c) => c.clone(),
            None => arrow_array::new_null_array(f.data_type(), batch.num_rows()),
        })
        .collect();
    arrow_array::RecordBatch::try_new(schema.clone(), columns).map_err(|e| {
        Error::new(
            Stage::Sink,
            Class::Permanent,
            Cause::Sink(format!(
                "iceberg: a spooled batch in the table's schema: {e}"
            )),
        )
    })
}

/// The snapshot summary of a batch: its ID, how many objects it covers, the first and last
/// (the ledger holds each object's token; a summary stays small in every snapshot kept).
fn summary(batch: &str, objects: &[Identity]) -> HashMap<String, String> {
    let mut props = HashMap::new();
    props.insert(BATCH_PROPERTY.to_string(), batch.to_string());
    props.insert("firehose-replay.objects".into(), objects.len().to_string());
    let name = |o: &Identity| format!("{}/{}", o.0, o.1);
    if let (Some(first), Some(last)) = (objects.first(), objects.last()) {
        props.insert("firehose-replay.first-object".into(), name(first));
        props.insert("firehose-replay.last-object".into(), name(last));
    }
    props
}

/// Appends `files` in one snapshot carrying `batch`, retrying conflicts and transient failures
/// with the same files; done at once when a snapshot with `batch` exists already.
pub async fn append(
    shared: &Shared,
    files: Vec<DataFile>,
    batch: &str,
    objects: &[Identity],
) -> Result<(), Error> {
    let props = summary(batch, objects);
    let mut delay = Duration::from_millis(20);
    let mut last = None;
    for attempt in 0..COMMIT_ATTEMPTS {
        if attempt > 0 {
            tokio::time::sleep(jitter(delay)).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        let table = match shared.catalog.load_table(&shared.ident).await {
            Ok(t) => t,
            Err(e) => {
                last = Some(sink_error("loading the table", e));
                continue;
            }
        };
        if has_batch(&table, batch) {
            return Ok(());
        }
        let tx = Transaction::new(&table);
        let action = tx
            .fast_append()
            .add_data_files(files.clone())
            .set_snapshot_properties(props.clone());
        let result = match action.apply(tx) {
            Ok(tx) => tx.commit(shared.catalog.as_ref()).await,
            Err(e) => Err(e),
        };
        match result {
            // Confirmed by reading the table again: a SQL catalog's commit can fail unseen (the
            // catalog crate drops the database's answer to COMMIT), and then nothing landed.
            Ok(_) => match committed(shared, batch).await {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    tracing::warn!(
                        batch,
                        attempt,
                        "iceberg commit answered but its snapshot is not in the table; committing \
                         again"
                    );
                    last = Some(Error::new(
                        Stage::Sink,
                        Class::Transient,
                        Cause::Sink("iceberg: the commit answered but did not land".into()),
                    ));
                }
                Err(e) => last = Some(e),
            },
            // Our files are in the table: an earlier attempt whose answer was lost landed.
            Err(e) if e.to_string().contains("already referenced by table") => return Ok(()),
            Err(e) => {
                let e = sink_error("committing the snapshot", e);
                if e.class == Class::Permanent {
                    return Err(e);
                }
                tracing::debug!(batch, attempt, "iceberg commit attempt failed: {e}");
                last = Some(e);
            }
        }
    }
    // The last answer may have been lost after all.
    if committed(shared, batch).await.unwrap_or(false) {
        return Ok(());
    }
    Err(last.unwrap_or_else(|| {
        Error::new(
            Stage::Sink,
            Class::Transient,
            Cause::Sink("iceberg: the commit did not land".into()),
        )
    }))
}

/// `d` ± up to half of it, so that racing writers do not retry in step.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos() as u64;
    let half = d.as_millis() as u64 / 2;
    Duration::from_millis(half + nanos % (d.as_millis() as u64).max(1))
}
