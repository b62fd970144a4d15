//! Apache Iceberg tables through a SQL (SQLite or PostgreSQL, pyiceberg's catalog tables), Glue,
//! S3 Tables or REST catalog ([`catalog`]), data files in a local or S3 warehouse ([`storage`]):
//! many objects' rows → Parquet data files (zstd) →
//! one `fast_append` snapshot per batch, exactly once by ledger and snapshot token.
//!
//! Rows are checked against the table's schema as they come ([`convert`]: a value a column
//! cannot hold is a record error naming it) and spooled per object to a local Arrow IPC file
//! ([`spool`]), so memory stays flat whatever the object's size. A batch's commit ([`commit`])
//! writes the spooled rows into Parquet data files of a target size (row groups flushed at a
//! byte size), stages one token per object in the ledger (`iceberg:<batch ID>`), then appends
//! the files in one snapshot whose summary carries the batch ID. A run that meets a staged
//! token looks the batch ID up in the table's snapshots: there, the object is done; not there,
//! it is written again (new files, a new batch ID: the old batch can no longer commit, its
//! process is gone and a SQL catalog's commit is one atomic UPDATE). Commit conflicts (another
//! writer committed meanwhile) are retried here with the files already written.
//!
//! The sink works per batch ([`batch::IcebergBatches`], `replay` and `backfill`) and per object
//! ([`Iceberg`], a batch of one: `redrive`, `invoke`, the Lambda function and the worker).
//!
//! Why the row-ID column is not `_row_id` here: that is the name of an Iceberg v3 row-lineage
//! field, and iceberg-rust's own scan fails on a table with a user column so named (see
//! [`ROW_ID_COLUMN`]).

pub mod target;

#[cfg(feature = "iceberg")]
pub mod batch;
#[cfg(feature = "iceberg")]
pub mod catalog;
#[cfg(feature = "iceberg")]
pub mod commit;
#[cfg(feature = "iceberg")]
pub mod convert;
#[cfg(feature = "iceberg")]
pub mod create;
#[cfg(feature = "iceberg")]
mod evolve;
#[cfg(feature = "iceberg")]
mod listing;
#[cfg(feature = "iceberg")]
pub mod orphans;
#[cfg(feature = "iceberg")]
pub mod partition_by;
#[cfg(feature = "iceberg")]
mod partitioned;
#[cfg(feature = "iceberg")]
mod schema;
#[cfg(feature = "iceberg")]
pub mod spool;
#[cfg(feature = "iceberg")]
pub mod storage;

pub use target::Target;

/// The row-ID column this sink uses when `--row-id-column` is left at `_row_id` (the other
/// sinks' default): `_row_id` is a reserved Iceberg v3 row-lineage field name.
pub const ROW_ID_COLUMN: &str = "_replay_row_id";

/// The snapshot summary property holding the batch ID (the token's body).
pub const BATCH_PROPERTY: &str = "firehose-replay.batch";

/// What the sink needs besides the target.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `--iceberg-target-file-mib`: a data file is closed once it is past this size.
    pub target_file_bytes: u64,
    /// `--iceberg-row-group-mib`: a row group is flushed once its encoded size is past this.
    pub row_group_bytes: u64,
    /// `--iceberg-batch-objects`, `--iceberg-batch-mib`: objects (and listed bytes) per commit.
    pub batch_objects: usize,
    pub batch_bytes: u64,
    /// Spool files go under here (the system's temporary directory when `None`).
    pub spool_dir: Option<std::path::PathBuf>,
    /// `--schema-evolution add-columns`: a field the table lacks becomes a new column.
    pub add_columns: bool,
    /// `--create-table auto`: a missing table is created from the first row.
    #[cfg(feature = "iceberg")]
    pub create_auto: Option<create::AutoCreate>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            target_file_bytes: 256 << 20,
            row_group_bytes: 64 << 20,
            batch_objects: 500,
            batch_bytes: 4 << 30,
            spool_dir: None,
            add_columns: false,
            #[cfg(feature = "iceberg")]
            create_auto: None,
        }
    }
}

#[cfg(feature = "iceberg")]
pub use connected::*;

#[cfg(feature = "iceberg")]
mod connected {
    use std::sync::{Arc, Mutex, RwLock};

    use iceberg::{Catalog, NamespaceIdent, TableIdent};
    use tokio::runtime::Handle;

    use super::convert::Field;
    use super::{Settings, Target};
    use crate::error::{Cause, Class, Error, Stage};

    /// Why the sink could not start: `Usage` is the user's to fix (the CLI exits 2).
    #[derive(Debug, thiserror::Error)]
    pub enum Refusal {
        #[error("{0}")]
        Usage(String),
        #[error(transparent)]
        Service(#[from] Error),
    }

    /// The table and everything the writers share.
    pub struct Shared {
        pub target: Target,
        pub catalog: Arc<dyn Catalog>,
        pub ident: TableIdent,
        /// The table's schema, once the table exists (with `--create-table auto`, once the
        /// first row created it); replaced when `--schema-evolution add-columns` widens it.
        shape: RwLock<Option<Arc<Shape>>>,
        /// Held while the table is being created or widened.
        creating: Mutex<()>,
        pub settings: Settings,
        pub handle: Handle,
    }

    /// The schema rows are checked and written with (the table's at start).
    pub struct Shape {
        /// The columns as [`super::convert`] checks them.
        pub columns: Vec<Field>,
        /// The Iceberg schema the data files are written with.
        pub schema: iceberg::spec::SchemaRef,
        /// Its Arrow form (with field IDs), what the spools hold.
        pub arrow: arrow_schema::SchemaRef,
    }

    impl Shape {
        pub(super) fn of(target: &Target, table: &iceberg::table::Table) -> Result<Shape, Refusal> {
            let metadata = table.metadata();
            let schema = metadata.current_schema().clone();
            let columns = super::schema::columns(&schema)
                .map_err(|e| Refusal::Usage(format!("{target}: {e}")))?;
            let arrow = Arc::new(
                iceberg::arrow::schema_to_arrow_schema(&schema)
                    .map_err(|e| sink_error("the table's schema in Arrow", e))?,
            );
            Ok(Shape {
                columns,
                schema,
                arrow,
            })
        }
    }

    impl Shared {
        /// The table's schema, if the table exists yet.
        pub fn shape(&self) -> Option<Arc<Shape>> {
            self.shape.read().unwrap_or_else(|p| p.into_inner()).clone()
        }

        /// The table's schema with the fields of `row` that `seen` lacks added as columns
        /// (`--schema-evolution add-columns`, see [`super::evolve`]); `seen` itself when the row
        /// brings none, or when its failure was of another kind. Blocking: called from a decode
        /// thread.
        pub fn grow(&self, seen: &Arc<Shape>, row: &[u8]) -> Result<Arc<Shape>, Error> {
            let _growing = self.creating.lock().unwrap_or_else(|p| p.into_inner());
            let latest = self.shape().unwrap_or_else(|| seen.clone());
            let grown = super::evolve::grow(self, &latest, row)?;
            if !Arc::ptr_eq(&grown, &latest) {
                *self.shape.write().unwrap_or_else(|p| p.into_inner()) = Some(grown.clone());
            }
            Ok(grown)
        }

        /// The table's schema; a missing table (`--create-table auto`) is created from `row`
        /// first. Blocking: called from a decode thread.
        pub fn shape_for(&self, row: &[u8]) -> Result<Arc<Shape>, Error> {
            if let Some(s) = self.shape() {
                return Ok(s);
            }
            let _creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = self.shape() {
                return Ok(s);
            }
            let Some(auto) = &self.settings.create_auto else {
                return Err(Error::new(
                    Stage::Sink,
                    Class::Permanent,
                    Cause::Sink(format!("{}: no such table", self.target)),
                ));
            };
            let refused = |e| Error::new(Stage::Sink, Class::Permanent, Cause::Sink(e));
            let schema = super::create::schema(auto, row).map_err(refused)?;
            let partition = if auto.partition_by.is_empty() {
                None
            } else {
                Some(super::partition_by::spec(&auto.partition_by, &schema).map_err(refused)?)
            };
            let table = self.handle.block_on(async {
                super::create::create(self.catalog.as_ref(), &self.ident, schema, partition)
                    .await?;
                self.catalog
                    .load_table(&self.ident)
                    .await
                    .map_err(|e| sink_error("loading the table", e))
            })?;
            let shape = Arc::new(Shape::of(&self.target, &table).map_err(|r| match r {
                Refusal::Service(e) => e,
                Refusal::Usage(why) => Error::new(Stage::Sink, Class::Permanent, Cause::Sink(why)),
            })?);
            *self.shape.write().unwrap_or_else(|p| p.into_inner()) = Some(shape.clone());
            Ok(shape)
        }
    }

    /// The per-object sink: each object a batch of its own (see the module docs).
    pub struct Iceberg {
        pub shared: Arc<Shared>,
    }

    /// An Iceberg error as this project's, classified: conflicts and I/O may pass, a refused
    /// request, a missing bucket or table will not.
    pub fn sink_error(what: &str, e: iceberg::Error) -> Error {
        use iceberg::ErrorKind as K;
        let class = match e.kind() {
            K::DataInvalid
            | K::FeatureUnsupported
            | K::TableNotFound
            | K::NamespaceNotFound
            | K::PreconditionFailed => Class::Permanent,
            _ => super::storage::failure_class(&e).unwrap_or(Class::Transient),
        };
        Error::new(
            Stage::Sink,
            class,
            Cause::Sink(format!("iceberg: {what}: {e}")),
        )
    }

    impl Iceberg {
        /// Opens the catalog and reads the table's schema (the table must exist, unless
        /// `--create-table auto`).
        pub async fn connect(target: Target, settings: Settings) -> Result<Iceberg, Refusal> {
            let catalog = open_catalog(&target).await?;
            Self::with_catalog(target, settings, catalog).await
        }

        /// As [`Iceberg::connect`], through a catalog opened already: the catalog of `target`
        /// as another layer sees it (a test's catalog that loses answers, a wrapper that logs).
        pub async fn with_catalog(
            target: Target,
            settings: Settings,
            catalog: Arc<dyn Catalog>,
        ) -> Result<Iceberg, Refusal> {
            let ident = TableIdent::new(
                NamespaceIdent::from_vec(target.namespace.clone())
                    .map_err(|e| Refusal::Usage(format!("{target}: {e}")))?,
                target.table.clone(),
            );
            let shape = RwLock::new(None);
            if catalog
                .table_exists(&ident)
                .await
                .map_err(|e| sink_error("reading the catalog", e))?
            {
                let table = catalog
                    .load_table(&ident)
                    .await
                    .map_err(|e| sink_error("loading the table", e))?;
                *shape.write().unwrap_or_else(|p| p.into_inner()) =
                    Some(Arc::new(Shape::of(&target, &table)?));
            } else if settings.create_auto.is_none() {
                return Err(Refusal::Usage(format!(
                    "{target}: no such table in the catalog (create it first, e.g. with pyiceberg \
                     or Spark, or pass --create-table auto; a reader must use the same catalog \
                     name)"
                )));
            }
            Ok(Iceberg {
                shared: Arc::new(Shared {
                    target,
                    catalog,
                    ident,
                    shape,
                    creating: Mutex::new(()),
                    settings,
                    handle: Handle::current(),
                }),
            })
        }
    }

    pub use super::catalog::open_catalog;
}
