//! The Amazon States Language definition of a Distributed Map that replays a manifest through
//! the function: `ItemReader` on the manifest, `ItemBatcher`, the Lambda task with `Retry` on
//! [`MAP_TRANSIENT_ERROR`], `MaxConcurrency`, `ToleratedFailurePercentage`, `ResultWriter`.
//!
//! What differs between runs (the manifest, the batch size, where results go) is either written
//! in, or read from the execution's input (`$.manifest.bucket`, `$.manifest.key`,
//! `$.max_items_per_batch`, `$.results.bucket`, `$.results.prefix`) — the form template.yaml's
//! state machine uses, so one deployed machine runs every plan.

use serde_json::{json, Map, Value};

use super::{ManifestFormat, MAX_BATCH_INPUT_BYTES};
use crate::trigger::map_result::MAP_TRANSIENT_ERROR;

/// An S3 location: written in, or read from the execution input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    Fixed { bucket: String, key: String },
    FromInput,
}

#[derive(Debug, Clone)]
pub struct Definition {
    /// The function's name or ARN (`${ReplayFunctionArn}` in a template's substitutions).
    pub function: String,
    pub manifest: Place,
    pub format: ManifestFormat,
    /// `None`: `$.max_items_per_batch` of the execution input.
    pub items_per_batch: Option<u64>,
    pub max_concurrency: u64,
    pub tolerated_failure_percentage: f64,
    /// Prefix (the `key`) the Map Run's results go under.
    pub results: Place,
}

/// Lambda's own transient failures, which AWS recommends retrying on every Lambda task.
pub const LAMBDA_SERVICE_ERRORS: &[&str] = &[
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
];

impl Definition {
    /// The state machine's definition.
    pub fn to_json(&self) -> Value {
        let mut reader_config = json!({ "InputType": self.format.input_type() });
        if self.format == ManifestFormat::Csv {
            reader_config["CSVHeaderLocation"] = json!("FIRST_ROW");
        }
        let reader_params = match &self.manifest {
            Place::Fixed { bucket, key } => json!({ "Bucket": bucket, "Key": key }),
            Place::FromInput => {
                json!({ "Bucket.$": "$.manifest.bucket", "Key.$": "$.manifest.key" })
            }
        };
        let mut batcher = Map::new();
        match self.items_per_batch {
            Some(n) => batcher.insert("MaxItemsPerBatch".into(), json!(n.max(1))),
            None => batcher.insert(
                "MaxItemsPerBatchPath".into(),
                json!("$.max_items_per_batch"),
            ),
        };
        batcher.insert("MaxInputBytesPerBatch".into(), json!(MAX_BATCH_INPUT_BYTES));
        let writer_params = match &self.results {
            Place::Fixed { bucket, key } => json!({ "Bucket": bucket, "Prefix": key }),
            Place::FromInput => {
                json!({ "Bucket.$": "$.results.bucket", "Prefix.$": "$.results.prefix" })
            }
        };
        json!({
            "Comment": "firehose-replay: replay a manifest of Firehose objects through the function, a batch per child execution",
            "StartAt": "Replay",
            "States": {
                "Replay": {
                    "Type": "Map",
                    "Label": "Replay",
                    "ItemReader": {
                        "Resource": "arn:aws:states:::s3:getObject",
                        "ReaderConfig": reader_config,
                        "Parameters": reader_params,
                    },
                    "ItemBatcher": Value::Object(batcher),
                    "ItemProcessor": {
                        "ProcessorConfig": { "Mode": "DISTRIBUTED", "ExecutionType": "STANDARD" },
                        "StartAt": "ReplayBatch",
                        "States": {
                            "ReplayBatch": {
                                "Type": "Task",
                                "Resource": "arn:aws:states:::lambda:invoke",
                                "Parameters": { "FunctionName": self.function, "Payload.$": "$" },
                                "OutputPath": "$.Payload",
                                "Retry": [
                                    {
                                        // Cheap: the ledger skips what the failed attempt finished.
                                        "ErrorEquals": [MAP_TRANSIENT_ERROR],
                                        "IntervalSeconds": 10,
                                        "BackoffRate": 2,
                                        "MaxAttempts": 8,
                                        "MaxDelaySeconds": 300,
                                        "JitterStrategy": "FULL",
                                    },
                                    {
                                        "ErrorEquals": LAMBDA_SERVICE_ERRORS,
                                        "IntervalSeconds": 2,
                                        "BackoffRate": 2,
                                        "MaxAttempts": 6,
                                        "JitterStrategy": "FULL",
                                    },
                                ],
                                "End": true,
                            }
                        },
                    },
                    "MaxConcurrency": self.max_concurrency,
                    "ToleratedFailurePercentage": self.tolerated_failure_percentage,
                    "ResultWriter": {
                        "Resource": "arn:aws:states:::s3:putObject",
                        "Parameters": writer_params,
                    },
                    "End": true,
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_and_input_driven_forms() {
        let d = Definition {
            function: "arn:aws:lambda:us-east-1:123456789012:function:replay".into(),
            manifest: Place::Fixed {
                bucket: "m".into(),
                key: "plans/x.csv".into(),
            },
            format: ManifestFormat::Csv,
            items_per_batch: Some(40),
            max_concurrency: 50,
            tolerated_failure_percentage: 1.0,
            results: Place::FromInput,
        };
        let v = d.to_json();
        let map = &v["States"]["Replay"];
        assert_eq!(
            map["ItemReader"]["ReaderConfig"]["CSVHeaderLocation"],
            "FIRST_ROW"
        );
        assert_eq!(map["ItemReader"]["Parameters"]["Key"], "plans/x.csv");
        assert_eq!(map["ItemBatcher"]["MaxItemsPerBatch"], 40);
        assert_eq!(
            map["ResultWriter"]["Parameters"]["Prefix.$"],
            "$.results.prefix"
        );
        let v = Definition {
            manifest: Place::FromInput,
            format: ManifestFormat::Jsonl,
            items_per_batch: None,
            ..d
        }
        .to_json();
        let map = &v["States"]["Replay"];
        assert_eq!(
            map["ItemReader"]["ReaderConfig"],
            json!({"InputType": "JSONL"})
        );
        assert_eq!(
            map["ItemReader"]["Parameters"]["Bucket.$"],
            "$.manifest.bucket"
        );
        assert_eq!(
            map["ItemBatcher"]["MaxItemsPerBatchPath"],
            "$.max_items_per_batch"
        );
        assert!(map["ItemBatcher"].get("MaxItemsPerBatch").is_none());
    }
}
