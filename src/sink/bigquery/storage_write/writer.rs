//! One object's rows into its `PENDING` stream(s): batching appends up to the request limit,
//! the append task, schema evolution moving the object to a new stream, finalize (`prepare`)
//! and the atomic commit.

use super::*;

/// A stream being appended to.
struct Open {
    name: String,
    /// The stream's schema, as CreateWriteStream gave it (what the encoder writes).
    fields: Vec<Field>,
    encoder: Arc<Encoder>,
    tx: Option<mpsc::Sender<Append>>,
    task: JoinHandle<Result<Appended, Error>>,
}

pub(super) struct Writer {
    inner: Arc<Inner>,
    object: String,
    /// Created with the first row: an object without rows needs no stream.
    open: Option<Open>,
    /// Earlier streams of this object, finalized, holding rows: schema evolution moved the
    /// object on to `open`. Committed together with it.
    closed: Vec<String>,
    batch: Batch,
    rejected: Vec<Rejected>,
    /// `prepare` ran (it runs once).
    prepared: bool,
    /// Set by `prepare`: the finalized streams to commit.
    staged: Option<Vec<String>>,
}

/// The append being filled: rows encoded straight into its `ProtoRows` bytes, their JSON into
/// one buffer (for the dead letter of a row BigQuery might refuse). No allocation per row; the
/// buffers become the [`Append`]'s shared `Bytes` when it is handed over.
#[derive(Default)]
struct Batch {
    rows: Vec<u8>,
    json: Vec<u8>,
    sources: Vec<RowSource>,
    /// What the rows count against the request limit (the encoded rows and a margin each for
    /// their framing, as the request will carry them).
    bytes: usize,
}

impl Batch {
    fn take(&mut self) -> Append {
        // The next batch will be about as large: allocate once, not while growing.
        let rows = Vec::with_capacity(self.rows.capacity());
        let json = Vec::with_capacity(self.json.capacity());
        let append = Append {
            rows: std::mem::replace(&mut self.rows, rows).into(),
            json: std::mem::replace(&mut self.json, json).into(),
            sources: std::mem::take(&mut self.sources),
        };
        self.bytes = 0;
        append
    }
}

impl Writer {
    /// A writer for `object`; its stream is created with the first row.
    pub(super) fn new(inner: Arc<Inner>, object: String) -> Writer {
        Writer {
            inner,
            object,
            open: None,
            closed: Vec::new(),
            batch: Batch::default(),
            rejected: Vec::new(),
            prepared: false,
            staged: None,
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Abandoned (or done): stop appending. An uncommitted stream is never visible.
        if let Some(open) = &self.open {
            open.task.abort();
        }
    }
}

impl Writer {
    fn ensure_open(&mut self) -> Result<&mut Open, Error> {
        if self.open.is_none() {
            let inner = self.inner.clone();
            let stream = inner
                .handle
                .block_on(inner.rpc.create_pending(&inner.table_path))?;
            let fields = stream_fields(&stream)?;
            self.open = Some(self.start(stream, fields)?);
        }
        Ok(self.open.as_mut().expect("opened above"))
    }

    /// Starts the append task on a stream just created.
    fn start(&self, stream: WriteStream, fields: Vec<Field>) -> Result<Open, Error> {
        let inner = &self.inner;
        {
            let encoder = inner.encoder_for_fields(fields.clone())?;
            let window = inner.limits.max_in_flight.max(1);
            // Two appends may wait for the task: the decode thread seldom blocks on a handover,
            // and memory stays bounded (window + 2 appends per object).
            let (tx, rx) = mpsc::channel(2);
            let session = Session {
                rpc: inner.rpc.clone(),
                stream: stream.name.clone(),
                schema: proto_schema(encoder.descriptor()),
                window,
            };
            tracing::debug!(object = %self.object, stream = %stream.name, "pending write stream created");
            let task = inner.handle.spawn(session.run(rx));
            Ok(Open {
                name: stream.name,
                fields,
                encoder,
                tx: Some(tx),
                task,
            })
        }
    }

    /// Hands the current batch to the append task (waiting while its window is full).
    fn submit(&mut self) -> Result<(), Error> {
        if self.batch.sources.is_empty() {
            return Ok(());
        }
        let batch = self.batch.take();
        let open = self.open.as_mut().expect("rows imply a stream");
        let sent = match &open.tx {
            Some(tx) => tx.blocking_send(batch).is_ok(),
            None => false,
        };
        if !sent {
            // The task ended early: its error says why.
            return Err(self.join().err().unwrap_or_else(|| {
                sink_error(Class::Transient, "the append task ended early".into())
            }));
        }
        Ok(())
    }

    /// Waits for the append task to settle every append.
    fn join(&mut self) -> Result<Appended, Error> {
        let open = self.open.as_mut().expect("rows imply a stream");
        open.tx = None;
        let handle = self.inner.handle.clone();
        match handle.block_on(&mut open.task) {
            Ok(r) => r,
            Err(join) => Err(sink_error(
                Class::Transient,
                format!("the append task failed: {join}"),
            )),
        }
    }
}

impl Writer {
    /// Encodes `row` into the batch, or records it as refused. `evolve`: a row refused only
    /// for an unknown field may add columns (once: the second try writes or refuses it).
    fn write(&mut self, row: &Row<'_>, evolve: bool) -> Result<(), Error> {
        if self.batch.sources.len() >= self.inner.limits.batch_rows {
            self.submit()?;
        }
        self.ensure_open()?;
        let Writer {
            open, batch, inner, ..
        } = self;
        let encoder = &open.as_ref().expect("opened above").encoder;
        // The row's JSON goes into the batch's buffer once, and is encoded from there.
        let (json_start, rows_start) = (batch.json.len(), batch.rows.len());
        row.append_to(&mut batch.json);
        let json = &batch.json[json_start..];
        let encoded = if row.json_valid {
            encoder.try_encode_delimited_valid(json, &mut batch.rows)
        } else {
            encoder.try_encode_delimited(json, &mut batch.rows)
        };
        let refused = match encoded {
            Err(why @ EncodeError::UnknownField { .. }) if evolve && inner.evolver.is_some() => {
                // The slow path: only rows the table lacks a column for get here.
                let json = batch.json[json_start..].to_vec();
                batch.json.truncate(json_start);
                batch.rows.truncate(rows_start);
                return self.evolve(row, json, why);
            }
            Err(why) => Some(format!("does not fit the table schema: {why}")),
            Ok(len)
                if len + 16 > MAX_APPEND_BYTES.min(inner.limits.max_request_bytes.max(1024)) =>
            {
                Some(format!(
                    "row is {len} bytes as protobuf: over what one append may carry"
                ))
            }
            Ok(_) => None,
        };
        if let Some(error) = refused {
            let json = batch.json[json_start..].to_vec();
            batch.json.truncate(json_start);
            batch.rows.truncate(rows_start);
            self.rejected.push(Rejected {
                ordinal: row.ordinal,
                byte_offset: row.byte_offset,
                row: json,
                error,
            });
            return Ok(());
        }
        let size = batch.rows.len() - rows_start + 16;
        let limit = MAX_APPEND_BYTES.min(inner.limits.max_request_bytes);
        let source = RowSource {
            ordinal: row.ordinal,
            byte_offset: row.byte_offset,
            rows_end: 0,
            json_end: 0,
        };
        if !batch.sources.is_empty() && batch.bytes + size > limit {
            // The row does not fit this append: it starts the next one (moved, rarely).
            let row_bytes = batch.rows.split_off(rows_start);
            let json = batch.json.split_off(json_start);
            self.submit()?;
            self.batch.rows.extend_from_slice(&row_bytes);
            self.batch.json.extend_from_slice(&json);
        }
        let batch = &mut self.batch;
        batch.bytes += size;
        batch.sources.push(RowSource {
            rows_end: batch.rows.len(),
            json_end: batch.json.len(),
            ..source
        });
        Ok(())
    }

    /// `row` (its JSON `json`) names fields the stream's schema lacks (`why`). Adds the
    /// columns they need to the table, waits for a new stream that has them, moves the object
    /// on to it (the rows so far stay in the old stream, finalized, to be committed with the
    /// new one), then writes the row. A value an existing column cannot take, or a field no
    /// column type fits (an array of arrays), makes the row a record error instead.
    fn evolve(&mut self, row: &Row<'_>, json: Vec<u8>, why: EncodeError) -> Result<(), Error> {
        let evolver = self.inner.evolver.clone().expect("evolution is on");
        let reject = |this: &mut Writer, error: String| {
            this.rejected.push(Rejected {
                ordinal: row.ordinal,
                byte_offset: row.byte_offset,
                row: json.clone(),
                error: format!("does not fit the table schema: {error}"),
            });
            Ok(())
        };
        let Ok(record) = serde_json::from_slice::<serde_json::Value>(&json) else {
            return reject(self, why.to_string());
        };
        let current = rest_fields(&self.open.as_ref().expect("open").fields);
        let additions = match evolver.plan(&current, &record) {
            Ok(a) if a.is_empty() => return reject(self, why.to_string()),
            Ok(a) => a,
            Err(refused) => return reject(self, refused),
        };
        let inner = self.inner.clone();
        inner.handle.block_on(evolver.add(&additions))?;
        // BigQuery's new streams may see the old schema for a while (minutes): keep creating
        // streams until one has every column the row needs, abandoning the stale ones (an
        // uncommitted stream is never visible), up to the evolver's bound.
        let mut patience = evolver.patience();
        let (stream, fields) = loop {
            let stream = inner
                .handle
                .block_on(inner.rpc.create_pending(&inner.table_path))?;
            let fields = stream_fields(&stream)?;
            match infer::additions(&rest_fields(&fields), &record) {
                Ok(missing) if !missing.is_empty() => {
                    tracing::debug!(object = %self.object, stream = %stream.name, "new write stream does not see the added columns yet");
                    if !inner.handle.block_on(patience.next()) {
                        let names: Vec<String> = missing.iter().map(|a| a.dotted()).collect();
                        return Err(sink_error(
                            Class::Transient,
                            format!(
                                "columns {} were added to {}, but new write streams still \
                                 lacked them after {} s: the object will be tried again",
                                names.join(", "),
                                evolver.table(),
                                evolver.wait.as_secs()
                            ),
                        ));
                    }
                }
                // Fits, or another worker added a column of the same name with another type
                // (the re-encode below refuses the row with the encoder's message).
                _ => break (stream, fields),
            }
        };
        self.close_open()?;
        self.open = Some(self.start(stream, fields)?);
        self.write(row, false)
    }

    /// Finishes the open stream before the object moves to a new one: its appends settled and
    /// it finalized; kept for the commit when it holds rows.
    fn close_open(&mut self) -> Result<(), Error> {
        if self.open.is_none() {
            return Ok(());
        }
        self.submit()?;
        let appended = self.join()?;
        self.rejected.extend(appended.rejected);
        let open = self.open.take().expect("open");
        if appended.rows == 0 {
            // Nothing in it: abandoned, never visible.
            return Ok(());
        }
        let inner = self.inner.clone();
        let rows = inner.handle.block_on(inner.rpc.finalize(&open.name))?;
        if rows != appended.rows {
            return Err(sink_error(
                Class::Transient,
                format!(
                    "write stream {} holds {rows} rows after finalizing, {} were appended",
                    open.name, appended.rows
                ),
            ));
        }
        tracing::debug!(object = %self.object, stream = %open.name, rows, "write stream finalized (the schema changed)");
        self.closed.push(open.name);
        Ok(())
    }
}

impl ObjectWriter for Writer {
    fn write_row(&mut self, row: &Row<'_>) -> Result<(), Error> {
        if let Some(rejected) = super::super::unstorable(row) {
            self.rejected.push(rejected);
            return Ok(());
        }
        self.write(row, true)
    }

    fn prepare(&mut self) -> Result<Prepared, Error> {
        if std::mem::replace(&mut self.prepared, true) {
            return Err(sink_error(
                Class::Permanent,
                "prepare called twice for one object".into(),
            ));
        }
        if self.open.is_none() {
            let mut rejected = std::mem::take(&mut self.rejected);
            rejected.sort_by_key(|r| r.ordinal);
            return Ok(Prepared {
                rejected,
                token: None,
            });
        }
        self.close_open()?;
        let mut rejected = std::mem::take(&mut self.rejected);
        rejected.sort_by_key(|r| r.ordinal);
        let streams = std::mem::take(&mut self.closed);
        if streams.is_empty() {
            // Every row was refused: nothing to commit.
            return Ok(Prepared {
                rejected,
                token: None,
            });
        }
        let token = Token::encode(&streams);
        self.staged = Some(streams);
        Ok(Prepared {
            rejected,
            token: Some(token),
        })
    }

    fn commit(mut self: Box<Self>) -> Result<Committed, Error> {
        let rejected = if self.prepared {
            Vec::new()
        } else {
            // Called without `prepare` (nothing to record first): stage now.
            self.prepare()?.rejected
        };
        if let Some(streams) = self.staged.take() {
            let inner = self.inner.clone();
            inner
                .handle
                .block_on(inner.rpc.commit(&inner.table_path, &streams))?;
            tracing::debug!(object = %self.object, streams = %streams.join(", "), "write streams committed");
        }
        Ok(Committed {
            rejected,
            inserted: None,
        })
    }
}
