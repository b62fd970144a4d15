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

/// A finished spool: its files (none when every row was refused; one more each time
/// `--schema-evolution add-columns` widened the table mid-object, each file in the schema of its
/// time) and its row count.
#[derive(Debug)]
pub struct Spooled {
    pub paths: Vec<PathBuf>,
    pub rows: u64,
}

/// An object's spool in the making.
pub struct ObjectSpool {
    shared: Arc<Shared>,
    /// The table's schema, from the first row on.
    shape: Option<Arc<Shape>>,
    path: PathBuf,
    out: Option<StreamWriter<BufWriter<File>>>,
    /// Files finished because the schema changed, and the one being written.
    paths: Vec<PathBuf>,
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
            paths: Vec::new(),
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
        let mut checked = super::convert::row(&shape.columns, &text);
        if checked.is_err() && self.shared.settings.add_columns {
            // Perhaps a field the table lacks: the table grows, this spool moves to a new file.
            let grown = self.shared.grow(&shape, &text)?;
            if !Arc::ptr_eq(&grown, &shape) {
                self.flush()?;
                self.close_file()?;
                self.shape = Some(grown.clone());
                checked = super::convert::row(&grown.columns, &text);
            }
        }
        match checked {
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
            let path = match self.paths.len() {
                0 => self.path.clone(),
                n => self.path.with_extension(format!("{n}.arrows")),
            };
            let file = File::create(&path).map_err(|e| spool_error(&path, e))?;
            let w = StreamWriter::try_new(BufWriter::new(file), &shape.arrow)
                .map_err(|e| spool_error(&path, e))?;
            self.out = Some(w);
            self.paths.push(path);
        }
        if let Some(w) = self.out.as_mut() {
            w.write(&batch).map_err(|e| spool_error(&self.path, e))?;
        }
        Ok(())
    }

    /// Ends the file being written (the next row kept starts another).
    fn close_file(&mut self) -> Result<(), Error> {
        if let Some(mut w) = self.out.take() {
            w.finish().map_err(|e| spool_error(&self.path, e))?;
        }
        Ok(())
    }

    /// Writes what is pending and closes the file.
    pub fn finish(mut self) -> Result<Spooled, Error> {
        self.flush()?;
        self.close_file()?;
        Ok(Spooled {
            paths: std::mem::take(&mut self.paths),
            rows: self.rows,
        })
    }
}

impl Drop for ObjectSpool {
    /// An object that failed leaves no file behind here (a finished spool's files were handed
    /// on).
    fn drop(&mut self) {
        for path in &self.paths {
            let _ = std::fs::remove_file(path);
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
