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
struct Payload {
    message_type: String,
    #[serde(default)]
    owner: String,
    #[serde(default)]
    log_group: String,
    #[serde(default)]
    log_stream: String,
    log_events: Vec<LogEvent>,
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
    /// One JSON object per log event, in order.
    Rows(Vec<Vec<u8>>),
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
    for event in &payload.log_events {
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
        rows.push(serde_json::to_vec(&row).expect("serialising owned strings cannot fail"));
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
            .map(|r| String::from_utf8(r).unwrap())
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
