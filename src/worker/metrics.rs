//! The worker's Prometheus metrics: what a container platform scrapes (`/metrics`) to see what
//! the worker did and to alarm on it. Counters only go up for the process's life; labels have a
//! fixed, small set of values (no bucket or key), so cardinality stays flat.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

use crate::pipeline::Counts;

/// Every metric the worker keeps, registered in its own registry.
pub struct Metrics {
    registry: Registry,
    /// Objects settled, by outcome: done, already_done, dead_lettered, retry, interrupted.
    pub objects: IntCounterVec,
    pub records: IntCounter,
    pub rows: IntCounter,
    pub record_errors: IntCounter,
    /// Dead letters written, by kind: object (a whole failed object), records (its bad records).
    pub dead_letters: IntCounterVec,
    pub bytes_read: IntCounter,
    pub bytes_decompressed: IntCounter,
    pub in_flight: IntGauge,
    /// Now − the time Firehose wrote the last finished object (from its name).
    pub object_lag: Gauge,
    pub object_duration: Histogram,
    /// SQS API calls made, by call: receive, delete, change_visibility.
    pub sqs_requests: IntCounterVec,
    pub messages_received: IntCounter,
    /// Messages settled, by action: deleted, backoff, released, left (malformed: for the
    /// queue's redrive policy).
    pub messages: IntCounterVec,
    pub receive_errors: IntCounter,
    /// Messages whose delete failed (the call, or its entry in a batch).
    pub delete_errors: IntCounter,
    /// Visibility changes that failed (heartbeat, backoff or release).
    pub visibility_errors: IntCounter,
    /// Visibility extensions of messages whose objects are in progress.
    pub heartbeat_extensions: IntCounter,
}

/// The outcomes of `firehose_replay_objects_total`.
pub const OUTCOMES: [&str; 5] = [
    "done",
    "already_done",
    "dead_lettered",
    "retry",
    "interrupted",
];

const PREFIX: &str = "firehose_replay_";

fn opts(name: &str, help: &str) -> Opts {
    Opts::new(format!("{PREFIX}{name}"), help)
}

impl Metrics {
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        macro_rules! reg {
            ($m:expr) => {{
                let m = $m;
                registry.register(Box::new(m.clone()))?;
                m
            }};
        }
        let counter = |name: &str, help: &str| IntCounter::with_opts(opts(name, help));
        let counter_vec =
            |name: &str, help: &str, label: &str| IntCounterVec::new(opts(name, help), &[label]);
        let m = Metrics {
            objects: reg!(counter_vec(
                "objects_total",
                "Objects settled, by outcome",
                "outcome"
            )?),
            records: reg!(counter("records_total", "Records read from objects")?),
            rows: reg!(counter("rows_total", "Rows written to the sink")?),
            record_errors: reg!(counter(
                "record_errors_total",
                "Records that could not become rows"
            )?),
            dead_letters: reg!(counter_vec(
                "dead_letters_total",
                "Dead letters written, by kind (object, records)",
                "kind"
            )?),
            bytes_read: reg!(counter(
                "bytes_read_total",
                "Object bytes read from S3 (compressed)"
            )?),
            bytes_decompressed: reg!(counter(
                "bytes_decompressed_total",
                "Object bytes after decompression"
            )?),
            in_flight: reg!(IntGauge::with_opts(opts(
                "objects_in_flight",
                "Objects being processed now"
            ))?),
            object_lag: reg!(Gauge::with_opts(opts(
                "object_lag_seconds",
                "Now minus the time Firehose wrote the last finished object (from its name)"
            ))?),
            object_duration: reg!(Histogram::with_opts(
                HistogramOpts::new(
                    format!("{PREFIX}object_duration_seconds"),
                    "Time to process one object"
                )
                .buckets(vec![0.05, 0.25, 1.0, 5.0, 30.0, 120.0, 600.0, 3600.0])
            )?),
            sqs_requests: reg!(counter_vec(
                "sqs_requests_total",
                "SQS API calls, by call (receive, delete, change_visibility)",
                "call"
            )?),
            messages_received: reg!(counter(
                "sqs_messages_received_total",
                "SQS messages received"
            )?),
            messages: reg!(counter_vec(
                "sqs_messages_total",
                "SQS messages settled, by action (deleted, backoff, released, left)",
                "action"
            )?),
            receive_errors: reg!(counter(
                "sqs_receive_errors_total",
                "ReceiveMessage calls that failed"
            )?),
            delete_errors: reg!(counter(
                "sqs_delete_errors_total",
                "Messages whose delete failed"
            )?),
            visibility_errors: reg!(counter(
                "sqs_visibility_errors_total",
                "Visibility changes that failed"
            )?),
            heartbeat_extensions: reg!(counter(
                "heartbeat_extensions_total",
                "Visibility extensions of messages whose objects are in progress"
            )?),
            registry,
        };
        // Every label value shows from the start (at 0), so a rate or an alarm on it has a
        // series before the first event.
        for o in OUTCOMES {
            m.objects.with_label_values(&[o]);
        }
        for c in ["receive", "delete", "change_visibility"] {
            m.sqs_requests.with_label_values(&[c]);
        }
        for a in ["deleted", "backoff", "released", "left"] {
            m.messages.with_label_values(&[a]);
        }
        for k in ["object", "records"] {
            m.dead_letters.with_label_values(&[k]);
        }
        Ok(m)
    }

    /// One settled object: its outcome and, when it ran, its counts.
    pub fn object(&self, outcome: &str, counts: &Counts) {
        self.objects.with_label_values(&[outcome]).inc();
        self.records.inc_by(counts.records);
        self.rows.inc_by(counts.rows);
        self.record_errors.inc_by(counts.record_errors);
        self.bytes_read.inc_by(counts.bytes_in);
        self.bytes_decompressed.inc_by(counts.bytes_out);
    }

    /// The registry in Prometheus' text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding our own well-formed metrics into a Vec cannot fail.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_their_labels() {
        let m = Metrics::new().unwrap();
        let counts = Counts {
            records: 5,
            rows: 4,
            record_errors: 1,
            ..Counts::default()
        };
        m.object("done", &counts);
        m.sqs_requests.with_label_values(&["receive"]).inc_by(2);
        let text = m.render();
        assert!(text.contains("firehose_replay_objects_total{outcome=\"done\"} 1"));
        assert!(text.contains("firehose_replay_rows_total 4"));
        assert!(text.contains("firehose_replay_record_errors_total 1"));
        assert!(text.contains("firehose_replay_sqs_requests_total{call=\"receive\"} 2"));
        assert!(text.contains("# TYPE firehose_replay_objects_in_flight gauge"));
    }
}
