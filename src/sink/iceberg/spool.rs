//! One object's rows, checked ([`super::convert`]) and spooled to a local Arrow IPC file until
//! its batch commits: memory holds one chunk of rows at a time, whatever the object's size, and
//! an object that fails leaves nothing in any data file (its spool is dropped with it).

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_ipc::writer::StreamWriter;
use serde_json::Value;

use super::{Shape, Shared};
use crate::error::{Cause, Class, Error, Stage};
use crate::row::Row;
use crate::sink::Rejected;

/// Rows decoded into one Arrow record batch at a time.
const CHUNK_ROWS: usize = 4096;

/// A finished spool: its file (`None` when every row was refused) and its row count.
#[derive(Debug)]
pub struct Spooled {
    pub path: Option<PathBuf>,
    pub rows: u64,
}

/// An object's spool in the making.
pub struct ObjectSpool {
    shared: Arc<Shared>,
    /// The table's schema, from the first row on.
    shape: Option<Arc<Shape>>,
    path: PathBuf,
    out: Option<StreamWriter<BufWriter<File>>>,
    pending: Vec<Value>,
    rows: u64,
    pub rejected: Vec<Rejected>,
}

pub fn spool_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::new(
        Stage::Sink,
        Class::Transient,
        Cause::Sink(format!("iceberg spool file {}: {e}", path.display())),
    )
}

impl ObjectSpool {
    /// A spool that will write `path` (created on the first row kept).
    pub fn new(shared: Arc<Shared>, path: PathBuf) -> ObjectSpool {
        ObjectSpool {
            shared,
            shape: None,
            path,
            out: None,
            pending: Vec::new(),
            rows: 0,
            rejected: Vec::new(),
        }
    }

    /// Checks a row: kept for the data files, or refused (a record error naming the column).
    pub fn write_row(&mut self, row: &Row<'_>) -> Result<(), Error> {
        let text = row.to_vec();
        let shape = match &self.shape {
            Some(s) => s.clone(),
            None => {
                let s = self.shared.shape_for(&text)?;
                self.shape = Some(s.clone());
                s
            }
        };
        match super::convert::row(&shape.columns, &text) {
            Ok(v) => {
                self.pending.push(v);
                if self.pending.len() >= CHUNK_ROWS {
                    self.flush()?;
                }
            }
            Err(error) => self.rejected.push(Rejected {
                ordinal: row.ordinal,
                byte_offset: row.byte_offset,
                row: text,
                error,
            }),
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Error> {
        let Some(shape) = self.shape.clone().filter(|_| !self.pending.is_empty()) else {
            return Ok(());
        };
        let batch = decode(&shape.arrow, &self.pending)?;
        self.rows += self.pending.len() as u64;
        self.pending.clear();
        if self.out.is_none() {
            let file = File::create(&self.path).map_err(|e| spool_error(&self.path, e))?;
            let w = StreamWriter::try_new(BufWriter::new(file), &shape.arrow)
                .map_err(|e| spool_error(&self.path, e))?;
            self.out = Some(w);
        }
        if let Some(w) = self.out.as_mut() {
            w.write(&batch).map_err(|e| spool_error(&self.path, e))?;
        }
        Ok(())
    }

    /// Writes what is pending and closes the file.
    pub fn finish(mut self) -> Result<Spooled, Error> {
        self.flush()?;
        match self.out.take() {
            Some(mut w) => {
                w.finish().map_err(|e| spool_error(&self.path, e))?;
                Ok(Spooled {
                    path: Some(self.path.clone()),
                    rows: self.rows,
                })
            }
            None => Ok(Spooled {
                path: None,
                rows: 0,
            }),
        }
    }
}

impl Drop for ObjectSpool {
    /// An object that failed (or whose spool was handed on) leaves no file behind here.
    fn drop(&mut self) {
        if self.out.is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Checked rows → one Arrow record batch in the table's schema. The rows were checked against
/// the same schema, so a failure here is this sink's bug, not the record's: the object fails.
fn decode(schema: &arrow_schema::SchemaRef, rows: &[Value]) -> Result<RecordBatch, Error> {
    let failed = |e: arrow_schema::ArrowError| {
        Error::new(
            Stage::Sink,
            Class::Permanent,
            Cause::Sink(format!("iceberg: rows into Arrow: {e}")),
        )
    };
    let mut decoder = arrow_json::ReaderBuilder::new(schema.clone())
        .with_batch_size(rows.len().max(1))
        .build_decoder()
        .map_err(failed)?;
    decoder.serialize(rows).map_err(failed)?;
    Ok(decoder
        .flush()
        .map_err(failed)?
        .unwrap_or_else(|| RecordBatch::new_empty(schema.clone())))
}

/// A spool file's record batches, read back one at a time (on the calling thread: a local
/// file).
pub fn reader(path: &Path) -> Result<impl Iterator<Item = Result<RecordBatch, Error>>, Error> {
    let file = File::open(path).map_err(|e| spool_error(path, e))?;
    let reader = arrow_ipc::reader::StreamReader::try_new(std::io::BufReader::new(file), None)
        .map_err(|e| spool_error(path, e))?;
    let path = path.to_path_buf();
    Ok(reader.map(move |b| b.map_err(|e| spool_error(&path, e))))
}
