//! CloudWatch Logs subscription payloads.
//!
//! Each record is one subscription delivery: `messageType`, `owner`, `logGroup`, `logStream`,
//! `logEvents[]`. `DATA_MESSAGE` records expand to one row per log event; `CONTROL_MESSAGE`
//! records (health checks CloudWatch sends when a subscription is created) carry no data and are
//! counted, not written.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Payload<'a> {
    message_type: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    log_group: String,
    #[serde(default)]
    log_stream: String,
    #[serde(borrow)]
    log_events: Vec<&'a RawValue>,
}

#[derive(Deserialize)]
struct LogEvent {
    #[serde(default)]
    id: String,
    timestamp: i64,
    message: String,
}

/// The row written for one log event.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Row<'a> {
    id: &'a str,
    timestamp: i64,
    message: &'a str,
    #[serde(rename = "message_json", skip_serializing_if = "Option::is_none")]
    message_json: Option<&'a RawValue>,
    log_group: &'a str,
    log_stream: &'a str,
    owner: &'a str,
}

/// What a CloudWatch Logs record turned into.
#[derive(Debug)]
pub enum Expanded {
    Control,
    /// One JSON object per log event, in order; an event that is not a log event (say, its
    /// `message` is not a string) is an error of its own.
    Rows(Vec<Result<Vec<u8>, String>>),
}

/// Expands one CloudWatch Logs record. The message is parsed into `message_json` when it is a
/// JSON object or array (structured logging); plain text stays in `message` only.
pub fn expand(record: &[u8]) -> Result<Expanded, String> {
    let payload: Payload = serde_json::from_slice(record)
        .map_err(|e| format!("not a CloudWatch Logs subscription record: {e}"))?;
    match payload.message_type.as_str() {
        "CONTROL_MESSAGE" => return Ok(Expanded::Control),
        "DATA_MESSAGE" => {}
        other => return Err(format!("unknown CloudWatch Logs messageType `{other}`")),
    }
    let mut rows = Vec::with_capacity(payload.log_events.len());
    for (i, raw) in payload.log_events.iter().enumerate() {
        let event: LogEvent = match serde_json::from_str(raw.get()) {
            Ok(e) => e,
            Err(e) => {
                rows.push(Err(format!(
                    "CloudWatch Logs event {i} is not a log event: {e}"
                )));
                continue;
            }
        };
        let trimmed = event.message.trim();
        let message_json = if trimmed.starts_with('{') || trimmed.starts_with('[') {
            serde_json::from_str::<&RawValue>(trimmed).ok()
        } else {
            None
        };
        let row = Row {
            id: &event.id,
            timestamp: event.timestamp,
            message: &event.message,
            message_json,
            log_group: &payload.log_group,
            log_stream: &payload.log_stream,
            owner: &payload.owner,
        };
        rows.push(Ok(
            serde_json::to_vec(&row).expect("serialising owned strings cannot fail")
        ));
    }
    Ok(Expanded::Rows(rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_log_events_and_parses_json_messages() {
        let rec = br#"{"messageType":"DATA_MESSAGE","owner":"123","logGroup":"/g","logStream":"s","subscriptionFilters":["f"],"logEvents":[{"id":"1","timestamp":5,"message":"{\"level\":\"INFO\"}"},{"id":"2","timestamp":6,"message":"plain text"}]}"#;
        let Expanded::Rows(rows) = expand(rec).unwrap() else {
            panic!("expected rows")
        };
        let rows: Vec<String> = rows
            .into_iter()
            .map(|r| String::from_utf8(r.unwrap()).unwrap())
            .collect();
        assert_eq!(
            rows,
            vec![
                r#"{"id":"1","timestamp":5,"message":"{\"level\":\"INFO\"}","message_json":{"level":"INFO"},"logGroup":"/g","logStream":"s","owner":"123"}"#,
                r#"{"id":"2","timestamp":6,"message":"plain text","logGroup":"/g","logStream":"s","owner":"123"}"#
            ]
        );
    }

    #[test]
    fn a_bad_log_event_fails_alone() {
        let rec = br#"{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"/g","logStream":"s","logEvents":[{"id":"1","timestamp":5,"message":"ok"},{"id":"2","timestamp":6,"message":42},{"id":"3","timestamp":7,"message":"also ok"}]}"#;
        let Expanded::Rows(rows) = expand(rec).unwrap() else {
            panic!("expected rows")
        };
        assert_eq!(rows.len(), 3);
        assert!(rows[0].is_ok() && rows[2].is_ok());
        let err = rows[1].as_ref().unwrap_err();
        assert!(
            err.contains("event 1") && err.contains("invalid type"),
            "{err}"
        );
    }

    #[test]
    fn control_messages_yield_no_rows() {
        let rec = br#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1,"message":"CWL CONTROL MESSAGE: Checking health of destination Firehose."}]}"#;
        assert!(matches!(expand(rec), Ok(Expanded::Control)));
    }

    #[test]
    fn a_record_without_log_events_is_an_error() {
        assert!(expand(br#"{"messageType":"DATA_MESSAGE"}"#)
            .unwrap_err()
            .contains("logEvents"));
    }
}
