//! A local BigQuery Storage Write API endpoint for the benchmark (`--bigquery-mode storage-write`
//! against `--bigquery-storage-endpoint`): plaintext gRPC (h2c), no latency, no faults, so
//! `scripts/bench.sh` measures what encoding and appending rows costs firehose-replay. Prints its
//! address, then serves until killed.
//!
//! Write streams live in memory (row count, finalized, commit time). Appends honour their offsets
//! as BigQuery does (`ALREADY_EXISTS` below the end of the stream, `OUT_OF_RANGE` past it, both
//! inside the AppendRows answer), but rows are counted, never decoded (that would be BigQuery's
//! CPU, not ours). `CreateWriteStream` answers with the table schema read from the BigQuery JSON
//! schema file given as the argument (the client builds its protobuf encoder from it); every
//! table has that schema.
//!
//!     cargo run --release --example storage_write_server -- sample-data/bigquery/events.schema.json
//!
//! The service is written by hand with tonic's server building blocks (gcp-bigquery-client ships
//! only the generated client), the way tonic-build's generated servers are.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use gcp_bigquery_client::google::cloud::bigquery::storage::v1::{
    append_rows_request, append_rows_response, storage_error, table_field_schema, write_stream,
    AppendRowsRequest, AppendRowsResponse, BatchCommitWriteStreamsRequest,
    BatchCommitWriteStreamsResponse, CreateWriteStreamRequest, FinalizeWriteStreamRequest,
    FinalizeWriteStreamResponse, GetWriteStreamRequest, StorageError, TableFieldSchema,
    TableSchema, WriteStream, WriteStreamView,
};
use gcp_bigquery_client::google::rpc::Status as RpcStatus;
use prost_types::Timestamp;
use tonic::codegen::{http, BoxFuture, BoxStream, Service, StdError};
use tonic::server::{Grpc, NamedService, StreamingService, UnaryService};
use tonic::{Code, Request, Response, Status, Streaming};

const SERVICE: &str = "google.cloud.bigquery.storage.v1.BigQueryWrite";
/// The client keeps appends under BigQuery's 10 MB; tonic's default limit is 4 MiB.
const MAX_MESSAGE: usize = 32 * 1024 * 1024;

// ---- the table schema --------------------------------------------------------------------------

#[derive(serde::Deserialize)]
struct JsonField {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    fields: Vec<JsonField>,
    #[serde(default)]
    description: Option<String>,
}

fn storage_field(f: &JsonField) -> Result<TableFieldSchema, String> {
    use table_field_schema::{Mode, Type};
    let kind = match f.kind.to_ascii_uppercase().as_str() {
        "STRING" => Type::String,
        "BYTES" => Type::Bytes,
        "INTEGER" | "INT64" => Type::Int64,
        "FLOAT" | "FLOAT64" => Type::Double,
        "NUMERIC" | "DECIMAL" => Type::Numeric,
        "BIGNUMERIC" | "BIGDECIMAL" => Type::Bignumeric,
        "BOOLEAN" | "BOOL" => Type::Bool,
        "TIMESTAMP" => Type::Timestamp,
        "DATE" => Type::Date,
        "TIME" => Type::Time,
        "DATETIME" => Type::Datetime,
        "GEOGRAPHY" => Type::Geography,
        "JSON" => Type::Json,
        "INTERVAL" => Type::Interval,
        "RANGE" => Type::Range,
        "RECORD" | "STRUCT" => Type::Struct,
        other => return Err(format!("column `{}`: unknown type `{other}`", f.name)),
    };
    let mode = match f.mode.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("") | Some("NULLABLE") => Mode::Nullable,
        Some("REQUIRED") => Mode::Required,
        Some("REPEATED") => Mode::Repeated,
        Some(other) => return Err(format!("column `{}`: unknown mode `{other}`", f.name)),
    };
    Ok(TableFieldSchema {
        name: f.name.clone(),
        r#type: kind as i32,
        mode: mode as i32,
        fields: f
            .fields
            .iter()
            .map(storage_field)
            .collect::<Result<_, _>>()?,
        description: f.description.clone().unwrap_or_default(),
        ..Default::default()
    })
}

fn read_schema(path: &str) -> Result<TableSchema, String> {
    let text = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let fields: Vec<JsonField> =
        serde_json::from_slice(&text).map_err(|e| format!("{path}: {e}"))?;
    Ok(TableSchema {
        fields: fields.iter().map(storage_field).collect::<Result<_, _>>()?,
    })
}

// ---- write streams -----------------------------------------------------------------------------

struct Stream {
    kind: write_stream::Type,
    rows: i64,
    created: Timestamp,
    finalized: bool,
    committed: Option<Timestamp>,
}

struct Backend {
    schema: TableSchema,
    streams: Mutex<HashMap<String, Stream>>,
    next: AtomicU64,
}

fn now() -> Timestamp {
    Timestamp::from(SystemTime::now())
}

fn rpc_status(code: Code, message: String) -> RpcStatus {
    RpcStatus {
        code: code as i32,
        message,
        details: vec![],
    }
}

impl Backend {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Stream>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn view(&self, name: &str, s: &Stream) -> WriteStream {
        WriteStream {
            name: name.to_string(),
            r#type: s.kind as i32,
            create_time: Some(s.created),
            commit_time: s.committed,
            table_schema: Some(self.schema.clone()),
            write_mode: write_stream::WriteMode::Insert as i32,
            location: "US".into(),
        }
    }

    fn create(&self, req: CreateWriteStreamRequest) -> Result<WriteStream, Status> {
        if !req.parent.starts_with("projects/") || req.parent.split('/').count() != 6 {
            return Err(Status::invalid_argument(format!(
                "parent `{}` is not projects/P/datasets/D/tables/T",
                req.parent
            )));
        }
        let kind = req
            .write_stream
            .map(|w| w.r#type)
            .and_then(|t| write_stream::Type::try_from(t).ok())
            .unwrap_or(write_stream::Type::Unspecified);
        if kind == write_stream::Type::Unspecified {
            return Err(Status::invalid_argument("write stream type is unspecified"));
        }
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}/streams/local-{n:08}", req.parent);
        let stream = Stream {
            kind,
            rows: 0,
            created: now(),
            // A COMMITTED stream's rows are visible at once (none of ours are).
            finalized: false,
            committed: (kind == write_stream::Type::Committed).then(now),
        };
        let view = self.view(&name, &stream);
        self.lock().insert(name, stream);
        Ok(view)
    }

    /// One append: counted at its offset, or refused inside the answer as BigQuery does.
    fn append(&self, stream: &str, req: &AppendRowsRequest, first: bool) -> AppendRowsResponse {
        let answer = |response| AppendRowsResponse {
            response: Some(response),
            write_stream: stream.to_string(),
            ..Default::default()
        };
        let refuse = |code, msg: String| {
            answer(append_rows_response::Response::Error(rpc_status(code, msg)))
        };
        let rows = match &req.rows {
            Some(append_rows_request::Rows::ProtoRows(data)) => {
                if first && data.writer_schema.is_none() {
                    return refuse(
                        Code::InvalidArgument,
                        "the first request of a connection must carry writer_schema".into(),
                    );
                }
                data.rows.as_ref().map_or(0, |r| r.serialized_rows.len()) as i64
            }
            None => return refuse(Code::InvalidArgument, "append without rows".into()),
        };
        let mut streams = self.lock();
        let Some(s) = streams.get_mut(stream) else {
            return refuse(Code::NotFound, format!("write stream {stream} not found"));
        };
        if s.finalized {
            return refuse(
                Code::InvalidArgument,
                format!("write stream {stream} is finalized"),
            );
        }
        let offset = req.offset.unwrap_or(s.rows);
        if offset < s.rows {
            return refuse(
                Code::AlreadyExists,
                format!(
                    "offset {offset} already exists in {stream} ({} rows)",
                    s.rows
                ),
            );
        }
        if offset > s.rows {
            return refuse(
                Code::OutOfRange,
                format!(
                    "offset {offset} is past the end of {stream} ({} rows)",
                    s.rows
                ),
            );
        }
        s.rows += rows;
        answer(append_rows_response::Response::AppendResult(
            append_rows_response::AppendResult {
                offset: Some(offset),
            },
        ))
    }

    fn finalize(&self, req: FinalizeWriteStreamRequest) -> Result<i64, Status> {
        let mut streams = self.lock();
        let s = streams
            .get_mut(&req.name)
            .ok_or_else(|| Status::not_found(format!("write stream {} not found", req.name)))?;
        s.finalized = true;
        Ok(s.rows)
    }

    fn commit(&self, req: BatchCommitWriteStreamsRequest) -> BatchCommitWriteStreamsResponse {
        use storage_error::StorageErrorCode as E;
        let mut streams = self.lock();
        let mut errors = Vec::new();
        for name in &req.write_streams {
            let error = match streams.get(name) {
                None => Some((E::StreamNotFound, "stream not found")),
                Some(_) if !name.starts_with(&format!("{}/streams/", req.parent)) => {
                    Some((E::StreamNotFound, "stream not in this table"))
                }
                Some(s) if s.kind != write_stream::Type::Pending => {
                    Some((E::InvalidStreamType, "not a PENDING stream"))
                }
                Some(s) if s.committed.is_some() => {
                    Some((E::StreamAlreadyCommitted, "stream already committed"))
                }
                Some(s) if !s.finalized => Some((E::InvalidStreamState, "stream not finalized")),
                Some(_) => None,
            };
            if let Some((code, msg)) = error {
                errors.push(StorageError {
                    code: code as i32,
                    entity: name.clone(),
                    error_message: msg.into(),
                });
            }
        }
        if !errors.is_empty() {
            // All or nothing, like BigQuery.
            return BatchCommitWriteStreamsResponse {
                commit_time: None,
                stream_errors: errors,
            };
        }
        let at = now();
        for name in &req.write_streams {
            if let Some(s) = streams.get_mut(name) {
                s.committed = Some(at);
            }
        }
        BatchCommitWriteStreamsResponse {
            commit_time: Some(at),
            stream_errors: vec![],
        }
    }

    fn get(&self, req: GetWriteStreamRequest) -> Result<WriteStream, Status> {
        let streams = self.lock();
        let s = streams
            .get(&req.name)
            .ok_or_else(|| Status::not_found(format!("write stream {} not found", req.name)))?;
        let mut view = self.view(&req.name, s);
        // The BASIC view (the default) leaves out the schema.
        if req.view != WriteStreamView::Full as i32 {
            view.table_schema = None;
        }
        Ok(view)
    }
}

// ---- gRPC plumbing, as tonic-build would generate it -------------------------------------------

/// A unary method: a closure over the backend.
struct Unary<F>(Arc<Backend>, F);

impl<Req, Resp, F> UnaryService<Req> for Unary<F>
where
    F: Fn(&Backend, Req) -> Result<Resp, Status>,
{
    type Response = Resp;
    type Future = std::future::Ready<Result<Response<Resp>, Status>>;

    fn call(&mut self, request: Request<Req>) -> Self::Future {
        std::future::ready((self.1)(&self.0, request.into_inner()).map(Response::new))
    }
}

/// AppendRows: one answer per request, in order, until the client closes its side.
struct AppendRows(Arc<Backend>);

impl StreamingService<AppendRowsRequest> for AppendRows {
    type Response = AppendRowsResponse;
    type ResponseStream = BoxStream<AppendRowsResponse>;
    type Future = BoxFuture<Response<Self::ResponseStream>, Status>;

    fn call(&mut self, request: Request<Streaming<AppendRowsRequest>>) -> Self::Future {
        let backend = self.0.clone();
        let requests = request.into_inner();
        // The stream is named in the first request; later ones may leave it out.
        let mut current = String::new();
        let answers = requests.map(move |req| {
            let req = req?;
            let first = current.is_empty();
            if !req.write_stream.is_empty() {
                current = req.write_stream.clone();
            }
            if current.is_empty() {
                return Err(Status::invalid_argument(
                    "the first AppendRows request must name write_stream",
                ));
            }
            Ok(backend.append(&current, &req, first))
        });
        Box::pin(std::future::ready(Ok(Response::new(
            Box::pin(answers) as Self::ResponseStream
        ))))
    }
}

#[derive(Clone)]
struct BigQueryWrite(Arc<Backend>);

impl NamedService for BigQueryWrite {
    const NAME: &'static str = SERVICE;
}

fn grpc<Enc, Dec>() -> Grpc<tonic_prost::ProstCodec<Enc, Dec>>
where
    Enc: prost::Message + Send + 'static,
    Dec: prost::Message + Default + Send + 'static,
{
    Grpc::new(tonic_prost::ProstCodec::default())
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

impl<B> Service<http::Request<B>> for BigQueryWrite
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let backend = self.0.clone();
        let method = req
            .uri()
            .path()
            .strip_prefix(&format!("/{SERVICE}/"))
            .unwrap_or("")
            .to_string();
        Box::pin(async move {
            let res = match method.as_str() {
                "CreateWriteStream" => {
                    let svc = Unary(backend, |b: &Backend, r| b.create(r));
                    grpc::<WriteStream, CreateWriteStreamRequest>()
                        .unary(svc, req)
                        .await
                }
                "AppendRows" => {
                    grpc::<AppendRowsResponse, AppendRowsRequest>()
                        .streaming(AppendRows(backend), req)
                        .await
                }
                "FinalizeWriteStream" => {
                    let svc = Unary(backend, |b: &Backend, r| {
                        b.finalize(r)
                            .map(|row_count| FinalizeWriteStreamResponse { row_count })
                    });
                    grpc::<FinalizeWriteStreamResponse, FinalizeWriteStreamRequest>()
                        .unary(svc, req)
                        .await
                }
                "BatchCommitWriteStreams" => {
                    let svc = Unary(backend, |b: &Backend, r| Ok(b.commit(r)));
                    grpc::<BatchCommitWriteStreamsResponse, BatchCommitWriteStreamsRequest>()
                        .unary(svc, req)
                        .await
                }
                "GetWriteStream" => {
                    let svc = Unary(backend, |b: &Backend, r| b.get(r));
                    grpc::<WriteStream, GetWriteStreamRequest>()
                        .unary(svc, req)
                        .await
                }
                // FlushRows (BUFFERED streams) and anything else.
                other => Status::unimplemented(format!(
                    "{} is not implemented by this local server",
                    if other.is_empty() {
                        req.uri().path()
                    } else {
                        other
                    }
                ))
                .into_http(),
            };
            Ok(res)
        })
    }
}

#[tokio::main]
async fn main() {
    let path = match std::env::args().nth(1) {
        Some(p) => p,
        None => {
            eprintln!("usage: storage_write_server SCHEMA.json (a BigQuery JSON table schema)");
            std::process::exit(2);
        }
    };
    let schema = match read_schema(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("storage_write_server: {e}");
            std::process::exit(2);
        }
    };
    let backend = Arc::new(Backend {
        schema,
        streams: Mutex::new(HashMap::new()),
        next: AtomicU64::new(1),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("a local address");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "http://{addr}").expect("stdout");
        out.flush().expect("stdout");
    }
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tonic::transport::Server::builder()
        // Appends are up to 10 MB: windows like a real frontend's, not h2's 64 KiB default.
        .initial_stream_window_size(16 * 1024 * 1024)
        .initial_connection_window_size(32 * 1024 * 1024)
        .http2_keepalive_interval(Some(Duration::from_secs(60)))
        .serve_with_incoming(BigQueryWrite(backend), incoming)
        .await
        .expect("serve");
}
