//! Lambda payloads → the objects to process, and the response each trigger expects.
//!
//! Every way an S3 `ObjectCreated` notification reaches a function is recognised from the payload
//! itself: direct S3 notifications, S3 → SQS, S3 → SNS, SNS → SQS, EventBridge `Object Created`,
//! S3 Batch Operations (schemas 1.0 and 2.0), and the `s3:TestEvent` S3 sends when a notification
//! is configured, and Step Functions Distributed Map items (alone or in ItemBatcher batches, see
//! [`distributed_map`]). Inside SQS messages, S3 notifications, SNS envelopes (with or without raw
//! delivery) and EventBridge events (EventBridge rule → SQS) are all recognised.
//!
//! Two kinds of unusable input are told apart, because the platform treats them differently:
//! [`TriggerError::Malformed`] (a payload that claims to be one of ours but does not parse: worth
//! redelivering, a person should look at it in the queue's DLQ) and [`TriggerError::Unknown`]
//! (a well-formed envelope carrying something that is not an S3 event, e.g. another publisher
//! on the same SNS topic: redelivery cannot change it).

pub mod distributed_map;
pub mod handler;
pub mod keys;
pub mod map_result;
pub mod metrics;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::s3::S3Event;
use aws_lambda_events::event::sns::SnsEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use serde::Deserialize;
use serde_json::Value;

use crate::aws::keys::url_decode_key;
use crate::object::ObjectRef;

/// An S3 Batch Operations task. Our own type: `aws_lambda_events`' lacks schema 2.0's `s3Bucket`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BatchTask {
    pub task_id: String,
    pub s3_key: String,
    #[serde(default)]
    pub s3_version_id: Option<String>,
    #[serde(default)]
    pub s3_bucket_arn: Option<String>,
    #[serde(default)]
    pub s3_bucket: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchEvent {
    invocation_schema_version: String,
    invocation_id: String,
    /// Read one by one: a task that cannot be read fails alone.
    tasks: Vec<Value>,
}

/// `detail` of an EventBridge `Object Created` event.
#[derive(Debug, Clone, Deserialize)]
struct ObjectCreatedDetail {
    bucket: NameOnly,
    object: EventBridgeObject,
}

#[derive(Debug, Clone, Deserialize)]
struct NameOnly {
    name: String,
}

#[derive(Debug, Clone, Deserialize)]
struct EventBridgeObject {
    key: String,
    #[serde(default, rename = "version-id")]
    version_id: Option<String>,
    #[serde(default)]
    size: Option<u64>,
}

/// One SQS message and the objects its body names — or why it names none we can use (one bad
/// message must not fail the whole batch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: String,
    pub objects: Result<Vec<ObjectRef>, TriggerError>,
}

/// A task of an S3 Batch Operations job and its object — or why it cannot be read (it is then
/// answered `PermanentFailure` on its own; the other tasks go on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    pub object: Result<ObjectRef, TriggerError>,
}

/// What a payload asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// S3 notification, direct or via SNS, or EventBridge: the platform retries the whole
    /// invocation on error.
    Objects {
        source: &'static str,
        objects: Vec<ObjectRef>,
    },
    /// SQS: answered per message (`batchItemFailures`).
    Sqs { messages: Vec<Message> },
    /// S3 Batch Operations: answered per task.
    Batch {
        schema: String,
        invocation_id: String,
        tasks: Vec<Task>,
    },
    /// `s3:TestEvent`: acknowledged, nothing to do.
    Test,
    /// Step Functions Distributed Map: answered with each object's outcome.
    Map(distributed_map::MapBatch),
}

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum TriggerError {
    #[error("unrecognised event payload: {0}")]
    Unknown(String),
    #[error("malformed {what} event: {detail}")]
    Malformed { what: &'static str, detail: String },
}

fn malformed(what: &'static str, e: impl std::fmt::Display) -> TriggerError {
    TriggerError::Malformed {
        what,
        detail: e.to_string(),
    }
}

/// `name` if it is a bucket's name (see [`crate::object::bucket_name_problem`]): a name that
/// could step out of a directory the tool writes below is a malformed event, not a bucket.
fn bucket_name(what: &'static str, name: String) -> Result<String, TriggerError> {
    crate::object::check_bucket_name(&name).map_err(|e| malformed(what, e))?;
    Ok(name)
}

/// Objects named by an S3 notification document (`{"Records":[...]}`); ignores non-created
/// events. `s3:TestEvent` documents name none.
fn s3_notification(v: &Value) -> Result<Vec<ObjectRef>, TriggerError> {
    if v.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Ok(Vec::new());
    }
    let records = match serde_json::from_value::<S3Event>(v.clone()) {
        Ok(event) => event
            .records
            .into_iter()
            .map(|r| LeanS3Record {
                event_name: r.event_name,
                s3: LeanS3 {
                    bucket: LeanBucket {
                        name: r.s3.bucket.name,
                    },
                    object: LeanObject {
                        key: r.s3.object.key,
                        version_id: r.s3.object.version_id,
                        size: r.s3.object.size.map(|s| s as u64),
                    },
                },
            })
            .collect(),
        // S3-compatible stores and emulators (MinIO, moto, LocalStack) send leaner records
        // than S3 itself; what we need from them is the same.
        Err(strict) => {
            serde_json::from_value::<LeanS3Event>(v.clone())
                .map_err(|_| malformed("S3", strict))?
                .records
        }
    };
    let mut out = Vec::new();
    for r in records {
        let created = r
            .event_name
            .as_deref()
            .is_none_or(|n| n.starts_with("ObjectCreated"));
        if !created {
            tracing::debug!(event = ?r.event_name, "ignoring a non-ObjectCreated S3 event");
            continue;
        }
        let bucket =
            r.s3.bucket
                .name
                .ok_or_else(|| malformed("S3", "record without bucket name"))?;
        let bucket = bucket_name("S3", bucket)?;
        let key =
            r.s3.object
                .key
                .ok_or_else(|| malformed("S3", "record without object key"))?;
        let mut o = ObjectRef::new(bucket, url_decode_key(&key));
        o.version_id =
            r.s3.object
                .version_id
                .filter(|v| !v.is_empty() && v != "null");
        o.size = r.s3.object.size;
        out.push(o);
    }
    Ok(out)
}

/// The parts of an S3 notification record we use, for producers that omit the rest.
#[derive(Debug, Deserialize)]
struct LeanS3Event {
    #[serde(rename = "Records")]
    records: Vec<LeanS3Record>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanS3Record {
    #[serde(default)]
    event_name: Option<String>,
    s3: LeanS3,
}

#[derive(Debug, Deserialize)]
struct LeanS3 {
    bucket: LeanBucket,
    object: LeanObject,
}

#[derive(Debug, Deserialize)]
struct LeanBucket {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LeanObject {
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    version_id: Option<String>,
    #[serde(default)]
    size: Option<u64>,
}

/// The objects an SQS message body names, in every shape a queue fed by S3 carries: an S3
/// notification, an SNS envelope around one (SNS → SQS without raw delivery; with raw delivery
/// the body is the notification itself), an EventBridge event, or `s3:TestEvent` (none). What
/// the Lambda reads from each message of an SQS event, for the long-running worker.
pub fn objects_in_body(body: &str) -> Result<Vec<ObjectRef>, TriggerError> {
    s3_in_text(body)
}

/// An SNS message or SQS body that carries an S3 notification, directly, inside an SNS envelope
/// (SNS → SQS without raw delivery) or as an EventBridge event (EventBridge rule → SQS).
fn s3_in_text(text: &str) -> Result<Vec<ObjectRef>, TriggerError> {
    let v: Value = serde_json::from_str(text).map_err(|e| malformed("S3 notification", e))?;
    // SNS → SQS without raw delivery: the body is the SNS envelope.
    match v.get("Type").and_then(Value::as_str) {
        Some("Notification") if v.get("TopicArn").is_some() || v.get("Message").is_some() => {
            let inner = v
                .get("Message")
                .and_then(Value::as_str)
                .ok_or_else(|| malformed("SNS", "notification without Message"))?;
            return s3_in_sns_message(inner, &v);
        }
        Some(t @ ("SubscriptionConfirmation" | "UnsubscribeConfirmation")) => {
            return Err(TriggerError::Unknown(format!(
                "SNS {t} for {} (not an S3 event)",
                v.get("TopicArn").and_then(Value::as_str).unwrap_or("?")
            )));
        }
        _ => {}
    }
    if is_eventbridge(&v) {
        return eventbridge_objects(&v, Unexpected::Ignore);
    }
    s3_notification(&v)
}

/// The `Message` of an SNS notification: an S3 event (or an EventBridge event), or — anything
/// else published to the topic — [`TriggerError::Unknown`].
fn s3_in_sns_message(message: &str, envelope: &Value) -> Result<Vec<ObjectRef>, TriggerError> {
    let not_s3 = |why: &str| {
        let mut snippet: String = message.chars().take(120).collect();
        if snippet.len() < message.len() {
            snippet.push('…');
        }
        TriggerError::Unknown(format!(
            "SNS message {} from {} is not an S3 event ({why}): {snippet:?}",
            envelope
                .get("MessageId")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            envelope
                .get("TopicArn")
                .and_then(Value::as_str)
                .unwrap_or("?"),
        ))
    };
    let Ok(v) = serde_json::from_str::<Value>(message) else {
        return Err(not_s3("not JSON"));
    };
    if is_eventbridge(&v) {
        return eventbridge_objects(&v, Unexpected::Ignore);
    }
    let looks_like_s3 = v.get("Event").and_then(Value::as_str) == Some("s3:TestEvent")
        || v.get("Records").is_some_and(Value::is_array);
    if !looks_like_s3 {
        return Err(not_s3("no `Records`"));
    }
    s3_notification(&v)
}

fn is_eventbridge(v: &Value) -> bool {
    v.get("detail-type").is_some() && v.get("source").is_some() && v.get("detail").is_some()
}

/// What to do with an EventBridge event from S3 that is not `Object Created`.
#[derive(Clone, Copy)]
enum Unexpected {
    /// A direct invocation: the rule is wrong, say so.
    Refuse,
    /// Inside a queue message: skipped like the non-created events of an S3 notification.
    Ignore,
}

/// Objects named by an EventBridge `Object Created` event.
fn eventbridge_objects(payload: &Value, other: Unexpected) -> Result<Vec<ObjectRef>, TriggerError> {
    let e: EventBridgeEvent<Value> =
        serde_json::from_value(payload.clone()).map_err(|e| malformed("EventBridge", e))?;
    if e.source != "aws.s3" || e.detail_type != "Object Created" {
        if e.source == "aws.s3" && matches!(other, Unexpected::Ignore) {
            tracing::debug!(event = %e.detail_type, "ignoring a non-`Object Created` EventBridge event");
            return Ok(Vec::new());
        }
        return Err(TriggerError::Unknown(format!(
            "EventBridge event `{}` from `{}` (expected `Object Created` from `aws.s3`)",
            e.detail_type, e.source
        )));
    }
    let d: ObjectCreatedDetail =
        serde_json::from_value(e.detail).map_err(|e| malformed("EventBridge", e))?;
    // EventBridge URL-encodes keys like S3 notifications do (a space arrives as `+`).
    let bucket = bucket_name("EventBridge", d.bucket.name)?;
    let mut o = ObjectRef::new(bucket, url_decode_key(&d.object.key));
    o.version_id = d.object.version_id;
    o.size = d.object.size;
    Ok(vec![o])
}

/// The bucket of an S3 bucket ARN: `arn:aws:s3:::bucket`, and the forms that carry a region
/// and account (`arn:aws:s3:us-east-1:0123456788:bucket`, as aws-lambda-go's sample task has)
/// or another partition (`arn:aws-cn:s3:::bucket`): whatever follows the last `:`.
fn bucket_of_arn(arn: &str) -> Option<&str> {
    let (_, bucket) = arn.rsplit_once(':')?;
    Some(bucket).filter(|b| !b.is_empty() && !b.contains('/'))
}

/// One task of an S3 Batch Operations event.
fn batch_task(v: Value) -> Task {
    let what = "S3 Batch Operations task";
    let id = v
        .get("taskId")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let object = serde_json::from_value::<BatchTask>(v)
        .map_err(|e| malformed(what, e))
        .and_then(|t| {
            let bucket = t
                .s3_bucket
                .clone()
                .filter(|b| !b.is_empty())
                .or_else(|| {
                    t.s3_bucket_arn
                        .as_deref()
                        .and_then(bucket_of_arn)
                        .map(str::to_string)
                })
                .ok_or_else(|| match &t.s3_bucket_arn {
                    Some(arn) => malformed(what, format!("no bucket in s3BucketArn `{arn}`")),
                    None => malformed(what, "neither s3Bucket nor s3BucketArn"),
                })?;
            let bucket = bucket_name(what, bucket)?;
            if t.s3_key.is_empty() {
                return Err(malformed(what, "empty s3Key"));
            }
            let mut o = ObjectRef::new(bucket, url_decode_key(&t.s3_key));
            o.version_id = t.s3_version_id.filter(|v| !v.is_empty());
            Ok(o)
        });
    Task { id, object }
}

impl Invocation {
    pub fn parse(payload: &Value) -> Result<Invocation, TriggerError> {
        if payload.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
            return Ok(Invocation::Test);
        }
        if payload.get("invocationSchemaVersion").is_some() && payload.get("tasks").is_some() {
            let b: BatchEvent = serde_json::from_value(payload.clone())
                .map_err(|e| malformed("S3 Batch Operations", e))?;
            let tasks = b.tasks.into_iter().map(batch_task).collect();
            return Ok(Invocation::Batch {
                schema: b.invocation_schema_version,
                invocation_id: b.invocation_id,
                tasks,
            });
        }
        if distributed_map::is_map_event(payload) {
            return Ok(Invocation::Map(distributed_map::parse(payload)?));
        }
        if payload.get("detail-type").is_some() && payload.get("source").is_some() {
            return Ok(Invocation::Objects {
                source: "eventbridge",
                objects: eventbridge_objects(payload, Unexpected::Refuse)?,
            });
        }
        let first_source = payload
            .get("Records")
            .and_then(Value::as_array)
            .and_then(|r| r.first())
            .and_then(|r| r.get("eventSource").or_else(|| r.get("EventSource")))
            .and_then(Value::as_str);
        match first_source {
            Some("aws:s3") => Ok(Invocation::Objects {
                source: "s3",
                objects: s3_notification(payload)?,
            }),
            Some("aws:sqs") => {
                let e: SqsEvent =
                    serde_json::from_value(payload.clone()).map_err(|e| malformed("SQS", e))?;
                let messages = e
                    .records
                    .into_iter()
                    .map(|m| Message {
                        id: m.message_id.unwrap_or_default(),
                        objects: s3_in_text(m.body.as_deref().unwrap_or("")),
                    })
                    .collect();
                Ok(Invocation::Sqs { messages })
            }
            Some("aws:sns") => {
                let e: SnsEvent =
                    serde_json::from_value(payload.clone()).map_err(|e| malformed("SNS", e))?;
                let mut objects = Vec::new();
                for r in e.records {
                    let envelope = serde_json::json!({
                        "MessageId": r.sns.message_id,
                        "TopicArn": r.sns.topic_arn,
                    });
                    objects.extend(s3_in_sns_message(&r.sns.message, &envelope)?);
                }
                Ok(Invocation::Objects {
                    source: "sns",
                    objects,
                })
            }
            _ => {
                let mut shape: Vec<String> = payload
                    .as_object()
                    .map(|o| o.keys().cloned().collect())
                    .unwrap_or_default();
                shape.truncate(8);
                Err(TriggerError::Unknown(format!(
                    "top-level keys [{}]; expected an S3, SQS, SNS, EventBridge, S3 Batch Operations or Step Functions Distributed Map event",
                    shape.join(", ")
                )))
            }
        }
    }
}
