//! Per-object metrics as CloudWatch Embedded Metric Format log lines: CloudWatch turns them into
//! metrics with no API calls from the function. One line per object; the only dimension is the
//! function name, so cardinality stays flat however many objects there are. Object details
//! (bucket, key, outcome) ride along as plain properties, searchable in Logs Insights.
//!
//! `ObjectLagSeconds` = now − the time Firehose wrote the object (from its name): how far the
//! subscriber is behind, the archive's equivalent of a Kinesis iterator age.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::object::ObjectRef;
use crate::pipeline::Counts;

pub const NAMESPACE: &str = "FirehoseReplay";

/// One object's metrics.
pub struct ObjectMetrics<'a> {
    pub function: &'a str,
    pub object: &'a ObjectRef,
    pub outcome: &'a str,
    pub counts: Counts,
    pub elapsed: Duration,
    pub now: DateTime<Utc>,
}

impl ObjectMetrics<'_> {
    /// The EMF document (one line when serialised).
    pub fn emf(&self) -> Value {
        let c = &self.counts;
        let failed = u64::from(self.outcome == "dead_lettered");
        let retried = u64::from(self.outcome == "retry");
        let mut metrics: Vec<(&str, &str, Value)> = vec![
            ("Objects", "Count", json!(1)),
            ("ObjectsDeadLettered", "Count", json!(failed)),
            ("ObjectsToRetry", "Count", json!(retried)),
            ("RecordsIn", "Count", json!(c.records)),
            ("RowsWritten", "Count", json!(c.rows)),
            ("RowsDeadLettered", "Count", json!(c.record_errors)),
            ("BytesCompressed", "Bytes", json!(c.bytes_in)),
            ("BytesDecompressed", "Bytes", json!(c.bytes_out)),
            (
                "DurationMs",
                "Milliseconds",
                json!(self.elapsed.as_millis() as u64),
            ),
        ];
        if let Some(name) = self.object.firehose_name() {
            let lag = (self.now - name.written_at).num_milliseconds() as f64 / 1000.0;
            metrics.push(("ObjectLagSeconds", "Seconds", json!(lag.max(0.0))));
        }
        let mut root = Map::new();
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": self.now.timestamp_millis(),
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [["Function"]],
                    "Metrics": metrics.iter().map(|(n, u, _)| json!({"Name": n, "Unit": u})).collect::<Vec<_>>(),
                }],
            }),
        );
        root.insert("Function".into(), json!(self.function));
        for (name, _, value) in metrics {
            root.insert(name.into(), value);
        }
        root.insert("bucket".into(), json!(self.object.bucket));
        root.insert("key".into(), json!(self.object.key));
        root.insert("outcome".into(), json!(self.outcome));
        Value::Object(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_comes_from_the_firehose_name_and_is_left_out_when_unknown() {
        let o = ObjectRef::new(
            "b",
            "2026/11/25/13/s-1-2026-11-25-13-00-00-0f8fad5b-d9cb-469f-a165-70867728950e.gz",
        );
        let now = DateTime::parse_from_rfc3339("2026-11-25T14:00:30Z")
            .unwrap()
            .with_timezone(&Utc);
        let m = ObjectMetrics {
            function: "f",
            object: &o,
            outcome: "done",
            counts: Counts::default(),
            elapsed: Duration::from_millis(5),
            now,
        };
        let v = m.emf();
        assert_eq!(v["ObjectLagSeconds"], 3630.0);
        let names: Vec<&str> = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["Name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"ObjectLagSeconds"));
        let plain = ObjectRef::new("b", "not-a-firehose-name.json");
        let v = ObjectMetrics {
            object: &plain,
            ..m
        }
        .emf();
        assert!(v.get("ObjectLagSeconds").is_none());
        assert!(!v["_aws"].to_string().contains("ObjectLagSeconds"));
    }
}
