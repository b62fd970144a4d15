//! CloudWatch Logs subscription objects and Firehose error output become the rows they carry.

use base64::Engine;
use serde_json::{json, Value};

use crate::support::*;

fn cwl(message_type: &str, events: &[(&str, i64, &str)]) -> Vec<u8> {
    let events: Vec<Value> = events
        .iter()
        .map(|(id, ts, msg)| json!({"id": id, "timestamp": ts, "message": msg}))
        .collect();
    serde_json::to_vec(&json!({
        "messageType": message_type,
        "owner": "123456789012",
        "logGroup": "/aws/lambda/checkout",
        "logStream": "2026/11/25/[$LATEST]abc",
        "subscriptionFilters": ["to-firehose"],
        "logEvents": events,
    }))
    .unwrap()
}

/// What a CloudWatch Logs → Firehose object looks like: one gzip member per delivery.
fn cwl_object() -> Vec<u8> {
    let mut obj = gzip(&cwl(
        "CONTROL_MESSAGE",
        &[(
            "",
            1,
            "CWL CONTROL MESSAGE: Checking health of destination Firehose.",
        )],
    ));
    obj.extend(gzip(&cwl(
        "DATA_MESSAGE",
        &[
            (
                "e1",
                1764108313123,
                "{\"level\":\"INFO\",\"msg\":\"order placed\"}",
            ),
            ("e2", 1764108313124, "START RequestId: 42"),
        ],
    )));
    obj.extend(gzip(&cwl(
        "DATA_MESSAGE",
        &[("e3", 1764108313200, "[1,2]")],
    )));
    obj
}

fn expected_log_rows() -> Vec<Value> {
    let base = |id: &str, ts: i64, msg: &str| {
        json!({"id": id, "timestamp": ts, "message": msg, "logGroup": "/aws/lambda/checkout",
               "logStream": "2026/11/25/[$LATEST]abc", "owner": "123456789012"})
    };
    let mut e1 = base(
        "e1",
        1764108313123,
        "{\"level\":\"INFO\",\"msg\":\"order placed\"}",
    );
    e1["message_json"] = json!({"level":"INFO","msg":"order placed"});
    let mut e3 = base("e3", 1764108313200, "[1,2]");
    e3["message_json"] = json!([1, 2]);
    vec![e1, base("e2", 1764108313124, "START RequestId: 42"), e3]
}

#[test]
fn cloudwatch_logs_members_become_one_row_per_log_event() {
    let r = Bucket::new().replay_bytes(
        "app-logs-1-2026-11-25-22-00-00-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        &cwl_object(),
    );
    assert_eq!(r.bodies(), expected_log_rows());
    let c = r.report().counts;
    assert_eq!(
        (c.records, c.rows, c.control_messages, c.record_errors),
        (3, 3, 1, 0)
    );
    assert_eq!(r.report().envelope.unwrap().name(), "cloudwatch-logs");
}

#[test]
fn cloudwatch_logs_gzipped_again_by_the_stream_are_unwrapped_twice() {
    let r = Bucket::new().replay_bytes("logs.gz", &gzip(&cwl_object()));
    assert_eq!(r.bodies(), expected_log_rows());
    let layers: Vec<&str> = r.report().compression.iter().map(|c| c.name()).collect();
    assert_eq!(layers, ["gzip", "gzip"]);
}

fn error_record(raw: &[u8], key_case_upper: bool) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    if key_case_upper {
        json!({"attemptsMade":1,"arrivalTimestamp":1764115200123u64,"ErrorCode":"DataFormatConversion.MalformedData",
               "ErrorMessage":"bad","RawData":b64}).to_string()
    } else {
        json!({"attemptsMade":4,"arrivalTimestamp":1764115200123u64,"errorCode":"Lambda.FunctionError",
               "errorMessage":"The Lambda function was successfully invoked but it returned an error result.",
               "attemptEndingTimestamp":1764115260123u64,"rawData":b64,
               "lambdaArn":"arn:aws:lambda:eu-west-1:123456789012:function:enrich:$LATEST"}).to_string()
    }
}

#[test]
fn processing_failed_records_replay_their_original_data() {
    let body = format!(
        "{}\n{}\n{}\n",
        error_record(b"{\"n\":0}\n", false),
        error_record(b"{\"n\":1}", true),
        error_record(b"{\"n\":2}{\"n\":3}", false),
    );
    let r = Bucket::new().replay_bytes(
        "processing-failed/2026/11/26/00/x.gz",
        &gzip(body.as_bytes()),
    );
    assert_eq!(r.report().envelope.unwrap().name(), "firehose-error");
    assert_eq!(r.bodies(), numbered(4));
    assert_eq!(r.report().counts.records, 3);
}

#[test]
fn an_error_record_with_undecodable_raw_data_is_a_record_error() {
    let body = format!(
        "{}\n{}\n",
        error_record(b"{\"n\":0}", false),
        json!({"attemptsMade":4,"errorCode":"x","rawData":"***"})
    );
    let r = Bucket::new().replay_bytes("pf", body.as_bytes());
    assert_eq!(r.bodies(), numbered(1));
    let dead = r.dead_records();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0, 1);
    assert!(
        dead[0]
            .1
            .starts_with("Firehose error record's rawData is not base64"),
        "{}",
        dead[0].1
    );
}

#[test]
fn envelope_none_keeps_envelopes_as_rows() {
    let b = Bucket::new();
    b.put(
        "pf",
        format!("{}\n", error_record(b"{\"n\":0}", false)).as_bytes(),
    );
    let s = firehose_replay::pipeline::Settings {
        envelope: "none".parse().unwrap(),
        ..Default::default()
    };
    let r = b.replay("pf", &s);
    assert_eq!(r.bodies()[0]["errorCode"], "Lambda.FunctionError");
}

/// Settings as the CLI's defaults have them: an object whose every record is refused fails.
fn cli_defaults() -> firehose_replay::pipeline::Settings {
    firehose_replay::pipeline::Settings {
        max_record_error_ratio: Some(firehose_replay::pipeline::DEFAULT_MAX_RECORD_ERROR_RATIO),
        ..Default::default()
    }
}

#[test]
fn an_error_record_with_empty_raw_data_is_a_record_letter_not_a_failed_object() {
    // What format conversion writes for "The record was empty or contained only whitespace".
    let rec = |raw: &[u8]| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        json!({"attemptsMade":1,"arrivalTimestamp":1764115200123u64,
               "lastErrorCode":"DataFormatConversion.MalformedData",
               "lastErrorMessage":"The record was empty or contained only whitespace.",
               "rawData":b64})
        .to_string()
    };
    let b = Bucket::new();
    let key = "format-conversion-failed/2026/11/26/00/x.gz";
    b.put(
        key,
        &gzip(format!("{}\n{}\n", rec(b""), rec(b" \n")).as_bytes()),
    );
    let r = b.replay(key, &cli_defaults());
    assert_eq!(r.report().counts.rows, 0);
    assert_eq!(r.report().counts.record_errors, 2);
    let dead = r.dead_records();
    assert_eq!(dead.len(), 2);
    assert!(dead[0].1.contains("rawData is empty"), "{}", dead[0].1);
}

#[test]
fn error_output_whose_payloads_are_not_json_gives_each_its_own_letter() {
    // processing-failed records hold what the Lambda could not take: non-JSON payloads are
    // expected there, and each reaches its own record letter (the spelling `lambdaARN` of real
    // captures is an error record too).
    let rec = |raw: &[u8], arn: &str| {
        let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
        let mut v = json!({"attemptsMade":4,"arrivalTimestamp":1764115200123u64,
               "errorCode":"Lambda.FunctionError","errorMessage":"bad",
               "attemptEndingTimestamp":1764115260123u64,"rawData":b64});
        v[arn] = json!("arn:aws:lambda:eu-west-1:123456789012:function:enrich:$LATEST");
        v.to_string()
    };
    let body = format!(
        "{}\n{}\n{}\n",
        rec(b"plain text, not json", "lambdaARN"),
        rec(b"{\"cut\":", "lambdaArn"),
        rec(b"\x00\x01binary", "lambdaARN"),
    );
    let b = Bucket::new();
    let key = "processing-failed/2026/11/26/00/y.gz";
    b.put(key, &gzip(body.as_bytes()));
    let r = b.replay(key, &cli_defaults());
    assert_eq!(r.report().envelope.unwrap().name(), "firehose-error");
    assert_eq!(r.report().counts.record_errors, 3);
    let dead = r.dead_records();
    assert_eq!(
        dead.iter().map(|d| d.0).collect::<Vec<_>>(),
        [0, 1, 2],
        "{dead:?}"
    );
    // A mix replays the good payloads and letters the rest.
    let body = format!(
        "{}\n{}\n",
        rec(b"{\"n\":0}", "lambdaARN"),
        rec(b"nope", "lambdaArn")
    );
    b.put("pf2", body.as_bytes());
    let r = b.replay("pf2", &cli_defaults());
    assert_eq!(r.bodies(), numbered(1));
    assert_eq!(r.dead_records().len(), 1);
}

#[test]
fn broken_error_records_still_count_toward_the_ratio() {
    let body = format!(
        "{}\n{}\n",
        json!({"attemptsMade":4,"errorCode":"x","rawData":"***"}),
        json!({"attemptsMade":4,"errorCode":"x","rawData":"%%%"})
    );
    let b = Bucket::new();
    b.put("pf3", body.as_bytes());
    let r = b.replay("pf3", &cli_defaults());
    assert!(
        r.failure()
            .error
            .to_string()
            .contains("records were refused"),
        "{}",
        r.failure().error
    );
}
