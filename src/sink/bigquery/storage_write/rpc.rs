//! The Storage Write API's unary calls, over our own tonic channel.
//!
//! The generated client of `gcp-bigquery-client` is used with a channel we build, so the
//! endpoint is configurable (`--bigquery-storage-endpoint`: an emulator speaks plaintext h2c)
//! and every call carries the bearer token and the `x-goog-request-params` routing header
//! BigQuery expects. Unary calls are retried on transient status codes; the commit is the one
//! call whose failure is ambiguous, so it asks the stream's state before trying again.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes};
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::google::cloud::bigquery::storage::v1::big_query_write_client::BigQueryWriteClient;
use gcp_bigquery_client::google::cloud::bigquery::storage::v1::{
    write_stream, AppendRowsResponse, BatchCommitWriteStreamsRequest, CreateWriteStreamRequest,
    FinalizeWriteStreamRequest, GetWriteStreamRequest, WriteStream, WriteStreamView,
};
use http::uri::PathAndQuery;
use prost::Message as _;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::Code;

use crate::error::{Cause, Class, Error, Stage};
use crate::sink::bigquery::api_error::token_error;
use crate::sink::bigquery::retry::RetryPolicy;

pub const DEFAULT_STORAGE_ENDPOINT: &str = "https://bigquerystorage.googleapis.com";

const APPEND_ROWS: &str = "/google.cloud.bigquery.storage.v1.BigQueryWrite/AppendRows";

/// One `AppendRowsRequest`, already in wire format: a header of a few dozen bytes (stream name,
/// offset, on the first request of a call the writer schema) and the append's `ProtoRows`,
/// shared with every other send of the same append. A resend costs the header, not a copy of
/// the rows, and no row is ever encoded twice.
///
/// The header is the request's fields before its rows, as protobuf lays them out:
/// `write_stream` (1), `offset` (2, an `Int64Value`), and `proto_rows` (4) whose `ProtoData`
/// holds `writer_schema` (1) and `rows` (2) — the field numbers of Google's
/// `google.cloud.bigquery.storage.v1.AppendRowsRequest`.
#[derive(Debug, Clone)]
pub(crate) struct EncodedAppend {
    head: Vec<u8>,
    rows: Bytes,
}

impl EncodedAppend {
    pub fn new(stream: &str, offset: i64, schema: Option<&[u8]>, rows: Bytes) -> EncodedAppend {
        use prost::encoding::{encode_varint, encoded_len_varint};
        let mut head = Vec::with_capacity(stream.len() + 40 + schema.map_or(0, |s| s.len() + 4));
        head.push(0x0a);
        encode_varint(stream.len() as u64, &mut head);
        head.extend_from_slice(stream.as_bytes());
        // Int64Value { value = 1 }: an offset of 0 is the default, written as an empty message.
        head.push(0x12);
        if offset == 0 {
            head.push(0);
        } else {
            head.push(1 + encoded_len_varint(offset as u64) as u8);
            head.push(0x08);
            encode_varint(offset as u64, &mut head);
        }
        let schema_len = schema.map_or(0, |s| {
            1 + encoded_len_varint(s.len() as u64) as usize + s.len()
        });
        let data_len = schema_len + 1 + encoded_len_varint(rows.len() as u64) as usize + rows.len();
        head.push(0x22);
        encode_varint(data_len as u64, &mut head);
        if let Some(s) = schema {
            head.push(0x0a);
            encode_varint(s.len() as u64, &mut head);
            head.extend_from_slice(s);
        }
        head.push(0x12);
        encode_varint(rows.len() as u64, &mut head);
        EncodedAppend { head, rows }
    }

    #[cfg(test)]
    pub fn to_vec(&self) -> Vec<u8> {
        [&self.head[..], &self.rows[..]].concat()
    }
}

/// tonic's codec for AppendRows: requests go out as they are, answers are decoded with prost.
struct AppendCodec;

struct AppendEncoder;

struct AnswerDecoder;

impl tonic::codec::Codec for AppendCodec {
    type Encode = EncodedAppend;
    type Decode = AppendRowsResponse;
    type Encoder = AppendEncoder;
    type Decoder = AnswerDecoder;

    fn encoder(&mut self) -> AppendEncoder {
        AppendEncoder
    }

    fn decoder(&mut self) -> AnswerDecoder {
        AnswerDecoder
    }
}

impl tonic::codec::Encoder for AppendEncoder {
    type Item = EncodedAppend;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: EncodedAppend,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        dst.put_slice(&item.head);
        dst.put_slice(&item.rows);
        Ok(())
    }
}

impl tonic::codec::Decoder for AnswerDecoder {
    type Item = AppendRowsResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<AppendRowsResponse>, tonic::Status> {
        AppendRowsResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("AppendRows answer: {e}")))
    }
}

/// A connected Storage Write client. Cheap to clone: clones share the HTTP/2 connection.
#[derive(Clone)]
pub struct Rpc {
    client: BigQueryWriteClient<Channel>,
    /// The same channel, for AppendRows with our own codec ([`EncodedAppend`]).
    channel: Channel,
    auth: Option<Arc<dyn Authenticator>>,
    pub(super) timeout: Duration,
    pub(super) policy: Arc<RetryPolicy>,
}

pub(super) fn sink_error(class: Class, msg: String) -> Error {
    Error::new(Stage::Sink, class, Cause::Sink(msg))
}

/// Status codes worth another try: the service or the connection had trouble, not the request.
pub(super) fn transient(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Internal
            | Code::Aborted
            | Code::ResourceExhausted
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
    )
}

pub(super) fn status_error(what: &str, s: &tonic::Status) -> Error {
    let class = if transient(s.code()) {
        Class::Transient
    } else {
        Class::Permanent
    };
    sink_error(
        class,
        format!(
            "BigQuery Storage Write {what}: {:?}: {}",
            s.code(),
            s.message()
        ),
    )
}

/// BigQuery routes requests by this header; values are URL-encoded like Google's clients do.
fn routing(key: &str, value: &str) -> String {
    let value = percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC);
    format!("{key}={value}")
}

impl Rpc {
    /// Connects lazily: no network traffic until the first call.
    pub fn connect(
        endpoint: &str,
        auth: Option<Arc<dyn Authenticator>>,
        timeout: Duration,
        policy: Arc<RetryPolicy>,
    ) -> Result<Rpc, Error> {
        let bad = |e: tonic::transport::Error| {
            sink_error(
                Class::Permanent,
                format!("Storage Write endpoint {endpoint}: {e}"),
            )
        };
        let mut ep = Endpoint::from_shared(endpoint.to_string())
            .map_err(bad)?
            .connect_timeout(Duration::from_secs(10))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(true);
        if endpoint.starts_with("https://") {
            ep = ep
                .tls_config(ClientTlsConfig::new().with_native_roots())
                .map_err(bad)?;
        }
        let channel = ep.connect_lazy();
        let client = BigQueryWriteClient::new(channel.clone());
        Ok(Rpc {
            client,
            channel,
            auth,
            timeout,
            policy,
        })
    }

    /// Wraps `msg` with the bearer token and the routing header.
    pub(super) async fn request<T>(
        &self,
        msg: T,
        key: &str,
        value: &str,
    ) -> Result<tonic::Request<T>, Error> {
        let mut req = tonic::Request::new(msg);
        let md = req.metadata_mut();
        if let Some(auth) = &self.auth {
            let token = auth.access_token().await.map_err(token_error)?;
            let bearer = format!("Bearer {token}")
                .parse()
                .map_err(|_| sink_error(Class::Permanent, "unusable access token".into()))?;
            md.insert("authorization", bearer);
        }
        if let Ok(v) = routing(key, value).parse() {
            md.insert("x-goog-request-params", v);
        }
        Ok(req)
    }

    /// Retries `call` on transient errors with the policy's backoff.
    async fn retrying<T, F, Fut>(&self, what: &str, mut call: F) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let mut delays = self.policy.delays();
        loop {
            match call().await {
                Err(e) if e.is_transient() => match delays.next() {
                    Some(d) => {
                        tracing::debug!(
                            delay_ms = d.as_millis() as u64,
                            "Storage Write {what} retry: {e}"
                        );
                        tokio::time::sleep(d).await;
                    }
                    None => return Err(e),
                },
                other => return other,
            }
        }
    }

    /// A `PENDING` stream on `table` (`projects/P/datasets/D/tables/T`): rows appended to it
    /// stay invisible until it is finalized and committed.
    pub async fn create_pending(&self, table: &str) -> Result<WriteStream, Error> {
        self.retrying("CreateWriteStream", || async {
            let req = self
                .request(
                    CreateWriteStreamRequest {
                        parent: table.to_string(),
                        write_stream: Some(WriteStream {
                            r#type: write_stream::Type::Pending as i32,
                            ..Default::default()
                        }),
                    },
                    "parent",
                    table,
                )
                .await?;
            let mut client = self.client.clone();
            match tokio::time::timeout(self.timeout, client.create_write_stream(req)).await {
                Ok(Ok(r)) => Ok(r.into_inner()),
                Ok(Err(s)) => Err(status_error("CreateWriteStream", &s)),
                Err(_) => Err(sink_error(
                    Class::Transient,
                    "BigQuery Storage Write CreateWriteStream: no answer in time".into(),
                )),
            }
        })
        .await
    }

    /// Opens the bidirectional AppendRows call; `requests` must already hold the first request
    /// (some servers answer the call's headers only after it).
    pub(super) async fn append_rows(
        &self,
        stream: &str,
        requests: impl futures::Stream<Item = EncodedAppend> + Send + 'static,
    ) -> Result<tonic::Streaming<AppendRowsResponse>, Error> {
        let req = self.request(requests, "write_stream", stream).await?;
        // Appends are bounded by BigQuery at 10 MB; answers are small.
        let mut grpc =
            tonic::client::Grpc::new(self.channel.clone()).max_encoding_message_size(16 << 20);
        let call = async {
            grpc.ready().await.map_err(|e| {
                tonic::Status::unavailable(format!("Storage Write channel not ready: {e}"))
            })?;
            grpc.streaming(req, PathAndQuery::from_static(APPEND_ROWS), AppendCodec)
                .await
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(s)) => Err(status_error("AppendRows", &s)),
            Err(_) => Err(sink_error(
                Class::Transient,
                "BigQuery Storage Write AppendRows: no answer in time".into(),
            )),
        }
    }

    /// Ends the stream (no more appends); returns how many rows it holds.
    pub async fn finalize(&self, stream: &str) -> Result<i64, Error> {
        self.retrying("FinalizeWriteStream", || async {
            let req = self
                .request(
                    FinalizeWriteStreamRequest {
                        name: stream.to_string(),
                    },
                    "name",
                    stream,
                )
                .await?;
            let mut client = self.client.clone();
            match tokio::time::timeout(self.timeout, client.finalize_write_stream(req)).await {
                Ok(Ok(r)) => Ok(r.into_inner().row_count),
                Ok(Err(s)) => Err(status_error("FinalizeWriteStream", &s)),
                Err(_) => Err(sink_error(
                    Class::Transient,
                    "BigQuery Storage Write FinalizeWriteStream: no answer in time".into(),
                )),
            }
        })
        .await
    }

    /// The stream's state, `None` when BigQuery no longer knows it.
    pub async fn get(&self, stream: &str) -> Result<Option<WriteStream>, Error> {
        self.retrying("GetWriteStream", || async {
            let req = self
                .request(
                    GetWriteStreamRequest {
                        name: stream.to_string(),
                        view: WriteStreamView::Basic as i32,
                    },
                    "name",
                    stream,
                )
                .await?;
            let mut client = self.client.clone();
            match tokio::time::timeout(self.timeout, client.get_write_stream(req)).await {
                Ok(Ok(r)) => Ok(Some(r.into_inner())),
                Ok(Err(s)) if s.code() == Code::NotFound => Ok(None),
                Ok(Err(s))
                    if s.code() == Code::InvalidArgument && s.message().contains("stream name") =>
                {
                    Ok(None)
                }
                Ok(Err(s)) => Err(status_error("GetWriteStream", &s)),
                Err(_) => Err(sink_error(
                    Class::Transient,
                    "BigQuery Storage Write GetWriteStream: no answer in time".into(),
                )),
            }
        })
        .await
    }

    /// Whether the stream's rows were committed (`commit_time` set).
    pub async fn is_committed(&self, stream: &str) -> Result<bool, Error> {
        match self.get(stream).await? {
            Some(ws) => Ok(ws.commit_time.is_some()),
            None => Err(sink_error(
                Class::Permanent,
                format!(
                    "BigQuery no longer knows write stream {stream}, so whether its rows were \
                     committed cannot be told: check the table for this object's _row_id values, \
                     then redrive it with --force if they are missing"
                ),
            )),
        }
    }

    /// Makes finalized streams' rows visible, atomically: all `streams` (of one `table`) in
    /// one BatchCommitWriteStreams, which commits all or none. A commit whose answer was lost
    /// may have happened, so before every retry the streams' state is asked; streams that are
    /// all committed already count as success.
    pub async fn commit(&self, table: &str, streams: &[String]) -> Result<(), Error> {
        let mut delays = self.policy.delays();
        let stream = streams.join(", ");
        let stream = stream.as_str();
        loop {
            let outcome = self.commit_once(table, streams).await;
            let e = match outcome {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            // Refused or ambiguous: was it committed after all (an earlier try, lost answer)?
            match self.all_committed(streams).await {
                Ok(true) => {
                    tracing::info!(stream, "commit answer lost, but the stream is committed");
                    return Ok(());
                }
                Ok(_) | Err(_) if !e.is_transient() => return Err(e),
                _ => {}
            }
            match delays.next() {
                Some(d) => {
                    tracing::debug!(
                        stream,
                        delay_ms = d.as_millis() as u64,
                        "BatchCommitWriteStreams retry: {e}"
                    );
                    tokio::time::sleep(d).await;
                }
                None => return Err(e),
            }
        }
    }

    /// Whether every one of `streams` has a commit time.
    async fn all_committed(&self, streams: &[String]) -> Result<bool, Error> {
        for s in streams {
            match self.get(s).await? {
                Some(ws) if ws.commit_time.is_some() => {}
                _ => return Ok(false),
            }
        }
        Ok(true)
    }

    async fn commit_once(&self, table: &str, streams: &[String]) -> Result<(), Error> {
        let req = self
            .request(
                BatchCommitWriteStreamsRequest {
                    parent: table.to_string(),
                    write_streams: streams.to_vec(),
                },
                "parent",
                table,
            )
            .await?;
        let mut client = self.client.clone();
        let answer = match tokio::time::timeout(
            self.timeout,
            client.batch_commit_write_streams(req),
        )
        .await
        {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(s)) => return Err(status_error("BatchCommitWriteStreams", &s)),
            Err(_) => {
                return Err(sink_error(
                    Class::Transient,
                    "BigQuery Storage Write BatchCommitWriteStreams: no answer in time".into(),
                ))
            }
        };
        if answer.stream_errors.is_empty() && answer.commit_time.is_some() {
            return Ok(());
        }
        let why: Vec<String> = answer
            .stream_errors
            .iter()
            .map(|e| format!("{}: {}", e.entity, e.error_message))
            .collect();
        Err(sink_error(
            Class::Permanent,
            format!(
                "BigQuery Storage Write BatchCommitWriteStreams refused: {}",
                if why.is_empty() {
                    "no commit time in the answer".to_string()
                } else {
                    why.join("; ")
                }
            ),
        ))
    }
}
