//! Rows of a partitioned table into data files per partition, with a cap on the files open at
//! once.
//!
//! Why not iceberg's `FanoutWriter`: it keeps one open writer per partition until the end, and
//! an open Parquet writer holds up to a row group in memory (`--iceberg-row-group-mib`, and on
//! S3 up to one 8 MiB part more): a batch spanning many partitions would hold as many. Here at
//! most [`OPEN_PARTITIONS`] are open; a new partition beyond that closes the one written least
//! recently (its data files are finished, and a later row of it starts a new file). Memory is
//! then bounded by `OPEN_PARTITIONS × (row group + part)` whatever the batch spans. Rows in
//! Firehose key order come roughly in time order, so a time-partitioned table seldom reopens.
//!
//! The rows of each Arrow batch are split by partition with iceberg's
//! `RecordBatchPartitionSplitter` (the table's transforms computed from the source columns).

use std::collections::HashMap;

use arrow_array::RecordBatch;
use iceberg::arrow::RecordBatchPartitionSplitter;
use iceberg::spec::{DataFile, PartitionSpecRef, SchemaRef, Struct};
use iceberg::writer::{IcebergWriter, IcebergWriterBuilder};

/// The data files of one batch: one writer for an unpartitioned table, writers per partition
/// for a partitioned one.
pub enum Files<B: IcebergWriterBuilder> {
    One(B::R),
    PerPartition(Box<CappedFanout<B>>),
}

impl<B: IcebergWriterBuilder> Files<B> {
    /// The writer for a table of `spec` over `schema`.
    pub async fn open(
        builder: B,
        schema: SchemaRef,
        spec: PartitionSpecRef,
    ) -> iceberg::Result<Self> {
        Ok(if spec.is_unpartitioned() {
            Files::One(builder.build(None).await?)
        } else {
            Files::PerPartition(Box::new(CappedFanout::new(
                builder,
                schema,
                spec,
                OPEN_PARTITIONS,
            )?))
        })
    }

    pub async fn write(&mut self, batch: RecordBatch) -> iceberg::Result<()> {
        match self {
            Files::One(w) => w.write(batch).await,
            Files::PerPartition(w) => w.write(batch).await,
        }
    }

    /// Every data file written.
    pub async fn close(self) -> iceberg::Result<Vec<DataFile>> {
        match self {
            Files::One(mut w) => w.close().await,
            Files::PerPartition(w) => w.close().await,
        }
    }
}

/// The most partitions with a data file open at once.
pub const OPEN_PARTITIONS: usize = 8;

/// Writers per partition, at most `cap` open (see the module docs).
pub struct CappedFanout<B: IcebergWriterBuilder> {
    builder: B,
    splitter: RecordBatchPartitionSplitter,
    cap: usize,
    /// Open writers and when each was last written (a counter of writes).
    open: HashMap<Struct, (B::R, u64)>,
    writes: u64,
    done: Vec<DataFile>,
}

impl<B: IcebergWriterBuilder> CappedFanout<B> {
    pub fn new(
        builder: B,
        schema: SchemaRef,
        spec: PartitionSpecRef,
        cap: usize,
    ) -> iceberg::Result<Self> {
        Ok(CappedFanout {
            builder,
            splitter: RecordBatchPartitionSplitter::try_new_with_computed_values(schema, spec)?,
            cap: cap.max(1),
            open: HashMap::new(),
            writes: 0,
            done: Vec::new(),
        })
    }

    /// How many partitions have a data file open (at most the cap).
    #[cfg(test)]
    fn open(&self) -> usize {
        self.open.len()
    }

    pub async fn write(&mut self, batch: RecordBatch) -> iceberg::Result<()> {
        for (key, rows) in self.splitter.split(&batch)? {
            self.writes += 1;
            let now = self.writes;
            if let Some((w, last)) = self.open.get_mut(key.data()) {
                *last = now;
                w.write(rows).await?;
                continue;
            }
            if self.open.len() >= self.cap {
                self.close_least_recent().await?;
            }
            let mut w = self.builder.build(Some(key.clone())).await?;
            w.write(rows).await?;
            self.open.insert(key.data().clone(), (w, now));
        }
        Ok(())
    }

    async fn close_least_recent(&mut self) -> iceberg::Result<()> {
        let Some(oldest) = self
            .open
            .iter()
            .min_by_key(|(_, (_, last))| *last)
            .map(|(k, _)| k.clone())
        else {
            return Ok(());
        };
        if let Some((mut w, _)) = self.open.remove(&oldest) {
            self.done.extend(w.close().await?);
        }
        Ok(())
    }

    /// Closes every open writer: every data file written.
    pub async fn close(mut self) -> iceberg::Result<Vec<DataFile>> {
        for (_, (mut w, _)) in self.open.drain() {
            self.done.extend(w.close().await?);
        }
        Ok(self.done)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use arrow_array::Int64Array;
    use iceberg::spec::{
        NestedField, PartitionKey, PartitionSpec, PrimitiveType, Schema, Transform, Type,
    };

    use super::*;

    /// Counts the writers open at once (the most ever) and the rows each is handed.
    #[derive(Clone, Default)]
    struct Counting {
        open: Arc<AtomicUsize>,
        most: Arc<AtomicUsize>,
        rows: Arc<AtomicUsize>,
    }

    struct CountingWriter(Counting);

    #[async_trait::async_trait]
    impl IcebergWriterBuilder for Counting {
        type R = CountingWriter;
        async fn build(&self, _: Option<PartitionKey>) -> iceberg::Result<CountingWriter> {
            let n = self.open.fetch_add(1, Ordering::SeqCst) + 1;
            self.most.fetch_max(n, Ordering::SeqCst);
            Ok(CountingWriter(self.clone()))
        }
    }

    #[async_trait::async_trait]
    impl IcebergWriter for CountingWriter {
        async fn write(&mut self, input: RecordBatch) -> iceberg::Result<()> {
            self.0.rows.fetch_add(input.num_rows(), Ordering::SeqCst);
            Ok(())
        }
        async fn close(&mut self) -> iceberg::Result<Vec<DataFile>> {
            self.0.open.fetch_sub(1, Ordering::SeqCst);
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn no_more_partitions_than_the_cap_are_open_and_every_row_is_written() {
        let schema = Arc::new(
            Schema::builder()
                .with_fields(vec![NestedField::required(
                    1,
                    "k",
                    Type::Primitive(PrimitiveType::Long),
                )
                .into()])
                .build()
                .unwrap(),
        );
        let spec = Arc::new(
            PartitionSpec::builder(schema.clone())
                .add_partition_field("k", "k", Transform::Identity)
                .unwrap()
                .build()
                .unwrap(),
        );
        let arrow = Arc::new(iceberg::arrow::schema_to_arrow_schema(&schema).unwrap());
        let counting = Counting::default();
        let mut w = CappedFanout::new(counting.clone(), schema, spec, 3).unwrap();
        // 10 partitions, each batch touching all of them, in a different order each time.
        for b in 0..5i64 {
            let ks: Vec<i64> = (0..40).map(|i| (i * 7 + b) % 10).collect();
            let batch =
                RecordBatch::try_new(arrow.clone(), vec![Arc::new(Int64Array::from(ks))]).unwrap();
            w.write(batch).await.unwrap();
            assert!(w.open() <= 3);
        }
        w.close().await.unwrap();
        assert_eq!(counting.most.load(Ordering::SeqCst), 3);
        assert_eq!(counting.open.load(Ordering::SeqCst), 0, "all closed");
        assert_eq!(counting.rows.load(Ordering::SeqCst), 200);
    }
}
