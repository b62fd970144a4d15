//! PostgreSQL: each object's rows and its ledger entry commit in one transaction.
//!
//! Per object, rows stream with `COPY … FROM STDIN` into a temporary staging table (memory stays
//! flat in the object's size: rows go out in 1 MiB chunks as they are built), then
//! `INSERT INTO target … SELECT … ON CONFLICT (row id) DO NOTHING` moves the ones the table
//! lacks, the object's entry is written into the ledger table beside the target, and `COMMIT`
//! makes both visible at once. The unique row ID is what keeps `--force`, `--ledger none` and
//! concurrent workers from adding a row twice; the ledger entry is what lets a run whose
//! `COMMIT` answer was lost find out whether it landed (see [`writer`]).
//!
//! The sink interface is synchronous (rows come from a blocking decode thread): calls bridge
//! to the runtime with `Handle::block_on`, as the BigQuery sinks do.

pub mod batch;
pub mod columns;
pub mod convert;
mod direct;
pub mod iam;
mod partition;
mod resolve;
mod stage;
pub mod target;
mod writer;

use std::sync::{Arc, Mutex};

use tokio::runtime::Handle;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{Cause, Class, Error, Stage};
use crate::object::ObjectRef;
use crate::sink::{ObjectWriter, Sink};

pub use target::Target;

use columns::{quote_ident, Table};

/// Everything the sink needs besides the target.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The row-ID column: the table's primary key (or a unique column), the conflict target.
    pub row_id_column: String,
    /// Password from Secrets Manager, used when the spec and `PGPASSWORD` have none.
    pub password: Option<String>,
    /// `--create-table auto`: a missing table is created from the first row.
    pub create_auto: Option<AutoCreate>,
    /// `--schema-evolution add-columns`: a field the table lacks becomes a column (its type
    /// inferred from the value, as `--create-table auto` does).
    pub add_columns: bool,
    /// `--payload-column`: rows wrap each record in it, so routing fields are looked up below.
    pub payload_column: Option<String>,
    /// `--route-default`: the table (in the target's schema) of rows whose routing field is
    /// missing, null or empty; without it they are record errors.
    pub route_default: Option<String>,
    /// `--postgres-iam-auth`: every connection's password is a fresh RDS IAM token ([`iam`]).
    pub iam: Option<iam::IamAuth>,
    /// `--postgres-batch-objects` above 1: objects commit in batches ([`batch`]).
    pub batch: Option<batch::Bounds>,
}

/// What `--create-table auto` needs to know beyond the first row.
#[derive(Debug, Clone, Default)]
pub struct AutoCreate {
    pub payload_column: Option<String>,
    /// `--partition-by`: a `timestamptz` column the table is range-partitioned on, a partition
    /// per day ([`partition`]).
    pub partition_by: Option<String>,
}

/// The sink; clones of its [`Shared`] state also back the PostgreSQL ledger.
pub struct Postgres {
    shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) target: Target,
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    pub(crate) handle: Handle,
    settings: Settings,
    /// Each target table's columns (one, or those routing reached), once it exists.
    tables: Mutex<std::collections::HashMap<String, Arc<Table>>>,
    /// `table=events_{type}`: the routing template (see [`Target::template`]).
    pub(crate) template: Option<crate::sink::bigquery::route::Template>,
    /// Connections between objects (each object's transaction takes one).
    idle: Mutex<Vec<Conn>>,
}

pub(crate) struct Conn {
    pub(crate) client: Client,
    /// The server process serving it: after a lost `COMMIT` answer, the next connection waits
    /// for this process to end before it reads whether the commit landed.
    pid: i32,
}

impl Postgres {
    /// Connects, creates the ledger table if needed and reads the target's columns (a missing
    /// target is an error unless `--create-table auto`).
    pub async fn connect(target: Target, settings: Settings) -> Result<Postgres, Error> {
        let config = target
            .config(settings.password.as_deref())
            .map_err(config_error)?;
        let tls = tls(&target).map_err(config_error)?;
        let template = target.template().map_err(config_error)?;
        if let Some(d) = &settings.route_default {
            if !template.as_ref().is_some_and(|t| t.has_fields()) {
                return Err(config_error(format!(
                    "--route-default {d}: the table `{}` routes on no record field, so no row \
                     can lack one",
                    target.table
                )));
            }
            if d.contains(['{', '}', '.'])
                || d.is_empty()
                || d.len() > columns::MAX_IDENTIFIER_BYTES
            {
                return Err(config_error(format!(
                    "--route-default {d}: give a table name in the target's schema, without \
                     placeholders, of at most {} bytes",
                    columns::MAX_IDENTIFIER_BYTES
                )));
            }
        }
        if settings.batch.is_some() && (template.is_some() || settings.add_columns) {
            return Err(config_error(
                "--postgres-batch-objects commits one fixed table's objects in batches: not with                  a routing template or --schema-evolution add-columns"
                    .into(),
            ));
        }
        let shared = Arc::new(Shared {
            template,
            target,
            config,
            tls,
            handle: Handle::current(),
            settings,
            tables: Mutex::new(Default::default()),
            idle: Mutex::new(Vec::new()),
        });
        let conn = shared.connect().await?;
        let ledger = shared.target.ledger_table();
        let ddl = format!(
            "CREATE TABLE IF NOT EXISTS {ledger} (\
               target text NOT NULL, bucket text NOT NULL, object_key text NOT NULL, \
               etag text NOT NULL, \
               attempt text NOT NULL, rows_sent bigint NOT NULL, rows_inserted bigint NOT NULL, \
               committed_at timestamptz NOT NULL DEFAULT now(), \
               records bigint, rows_new bigint, record_errors bigint, finished_at timestamptz, \
               worker text, PRIMARY KEY (target, bucket, object_key, etag))"
        );
        create_if_missing(&conn.client, &ddl).await?;
        // A routed sink meets its tables as records name them.
        let fixed = shared.template.is_none();
        if fixed
            && shared
                .load_table(&conn.client, &shared.target.table)
                .await?
                .is_none()
            && shared.settings.create_auto.is_none()
        {
            return Err(Error::permanent(
                Stage::Sink,
                Cause::Sink(format!(
                    "table {} does not exist: create it (with a PRIMARY KEY on {}), or pass \
                     --create-table auto",
                    shared.target.qualified(),
                    quote_ident(&shared.settings.row_id_column)
                )),
            ));
        }
        shared.put_back(conn);
        Ok(Postgres { shared })
    }

    pub(crate) fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }
}

impl Sink for Postgres {
    fn open(&self, object: &ObjectRef) -> Result<Box<dyn ObjectWriter>, Error> {
        Ok(Box::new(writer::PgWriter::new(self.shared.clone(), object)))
    }

    fn batching(&self) -> Option<Arc<dyn crate::sink::batch::BatchSink>> {
        let bounds = self.shared.settings.batch?;
        Some(Arc::new(batch::PgBatches {
            shared: self.shared.clone(),
            bounds,
        }))
    }
}

impl Shared {
    pub(crate) async fn connect(&self) -> Result<Conn, Error> {
        let mut config = self.config.clone();
        if let Some(iam) = &self.settings.iam {
            let host = match config.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                _ => {
                    return Err(config_error(
                        "--postgres-iam-auth needs a TCP host (RDS's endpoint), not a socket"
                            .into(),
                    ))
                }
            };
            let port = config.get_ports().first().copied().unwrap_or(5432);
            let user = config.get_user().unwrap_or_default().to_string();
            let token = iam
                .token(&host, port, &user)
                .await
                .map_err(|e| Error::new(Stage::Sink, Class::Transient, Cause::Sink(e)))?;
            config.password(token);
        }
        let (client, connection) = config
            .connect(self.tls.clone())
            .await
            .map_err(|e| pg_error("connecting", e))?;
        self.handle.spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "postgres connection ended");
            }
        });
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .map_err(|e| pg_error("connecting", e))?
            .get(0);
        Ok(Conn { client, pid })
    }

    /// An idle connection, or a new one.
    pub(crate) async fn conn(&self) -> Result<Conn, Error> {
        loop {
            let c = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            match c {
                Some(c) if !c.client.is_closed() => return Ok(c),
                Some(_) => continue,
                None => return self.connect().await,
            }
        }
    }

    /// Keeps a connection that is outside any transaction for the next object.
    pub(crate) fn put_back(&self, conn: Conn) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < 8 && !conn.client.is_closed() {
            idle.push(conn);
        }
    }

    /// Reads the target's columns into the cache (`None`: it does not exist), and checks that
    /// the row-ID column is unique (without that, nothing would keep a replay out).
    async fn load_table(&self, client: &Client, name: &str) -> Result<Option<Arc<Table>>, Error> {
        let qualified = self.target.qualified_table(name);
        let Some(table) = columns::load(client, &qualified)
            .await
            .map_err(|e| pg_error("reading the table's columns", e))?
        else {
            return Ok(None);
        };
        let id = &self.settings.row_id_column;
        let (unique, partition_key) = partition::keys(client, &qualified)
            .await
            .map_err(|e| pg_error("reading the table's indexes", e))?;
        let Some(conflict) = partition::conflict_key(&unique, &partition_key, id) else {
            return Err(Error::permanent(
                Stage::Sink,
                Cause::Sink(format!(
                    "table {qualified} needs a PRIMARY KEY or UNIQUE constraint on {} alone (on \
                     a partitioned table: on it and the partition key): it is what keeps a \
                     replay from adding rows twice",
                    quote_ident(id)
                )),
            ));
        };
        let mut table = table;
        table.conflict = conflict;
        table.partition_key = partition_key;
        let table = Arc::new(table);
        self.tables
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), table.clone());
        Ok(Some(table))
    }

    /// Table `name`'s columns; with `--create-table auto`, a missing table is created from
    /// this row first.
    pub(crate) fn table_for(
        &self,
        name: &str,
        row: &[u8],
    ) -> Result<Result<Arc<Table>, String>, Error> {
        let shared = self;
        if let Some(t) = shared.cached_table(name) {
            return Ok(Ok(t));
        }
        let qualified = shared.target.qualified_table(name);
        let ddl = match &shared.settings.create_auto {
            Some(auto) => match stage::create_table_ddl(shared, auto, name, row) {
                Ok(ddl) => Some(ddl),
                Err(refused) => return Ok(Err(refused)),
            },
            None => None,
        };
        shared.handle.block_on(async {
            let conn = shared.conn().await?;
            if let Some(t) = shared.load_table(&conn.client, name).await? {
                shared.put_back(conn);
                return Ok(Ok(t));
            }
            let Some(ddl) = ddl else {
                shared.put_back(conn);
                return Ok(Err(format!("table {qualified} does not exist")));
            };
            create_if_missing(&conn.client, &ddl).await?;
            let table = shared.load_table(&conn.client, name).await?;
            shared.put_back(conn);
            table.map(Ok).ok_or_else(|| {
                Error::permanent(
                    Stage::Sink,
                    Cause::Sink(format!("table {qualified} vanished")),
                )
            })
        })
    }

    fn cached_table(&self, name: &str) -> Option<Arc<Table>> {
        self.tables
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned()
    }
}

/// `CREATE … IF NOT EXISTS` run by two workers at once can still collide in the catalog; the
/// loser's error means the table is there. Depending on where the two meet, PostgreSQL names
/// the table (42P07), its row type (42710, "type … already exists") or the catalog's unique
/// index (23505).
pub(crate) async fn create_if_missing(client: &Client, ddl: &str) -> Result<(), Error> {
    match client.batch_execute(ddl).await {
        Ok(()) => Ok(()),
        Err(e)
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                || e.code() == Some(&SqlState::DUPLICATE_TABLE)
                || e.code() == Some(&SqlState::DUPLICATE_OBJECT) =>
        {
            Ok(())
        }
        Err(e) => Err(pg_error("creating a table", e)),
    }
}

/// rustls, verifying the server against `sslrootcert` (RDS's bundle) or the system's roots,
/// with the aws-lc-rs provider the AWS SDK already brings (no second crypto library).
fn tls(target: &Target) -> Result<MakeRustlsConnect, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    match target.root_cert() {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(&path)
                .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            for cert in certs {
                let cert = cert.map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("sslrootcert {}: {e}", path.display()))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn config_error(message: String) -> Error {
    Error::permanent(Stage::Sink, Cause::Sink(message))
}

/// A PostgreSQL error, classified by its SQLSTATE: connection failures, serialization failures
/// and deadlocks, lack of resources and shutdowns are worth retrying; everything else (syntax,
/// permissions, constraint and data errors) is not. No SQLSTATE means the connection failed.
pub(crate) fn pg_error(doing: &str, e: tokio_postgres::Error) -> Error {
    let class = match e.code() {
        None => Class::Transient,
        Some(code) => {
            let c = code.code();
            if ["08", "40", "53", "57", "58"]
                .iter()
                .any(|p| c.starts_with(p))
            {
                Class::Transient
            } else {
                Class::Permanent
            }
        }
    };
    let detail = match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => {
            // The cause (a TLS verification failure, a refused connection) is in the sources.
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            text
        }
    };
    Error::new(
        Stage::Sink,
        class,
        Cause::Sink(format!("postgres: {doing}: {detail}")),
    )
}
