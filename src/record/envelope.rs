//! Which envelope wraps an object's records.

use std::str::FromStr;

use serde::de::IgnoredAny;
use serde::Deserialize;

/// `--envelope`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Envelope {
    /// Recognise the envelope from the object's first valid record.
    #[default]
    Auto,
    /// Records are the rows.
    None,
    /// CloudWatch Logs subscription payloads: one row per log event.
    CloudWatchLogs,
    /// Firehose error output (`processing-failed/` and friends): the decoded `rawData`.
    FirehoseError,
}

impl Envelope {
    pub fn name(self) -> &'static str {
        match self {
            Envelope::Auto => "auto",
            Envelope::None => "none",
            Envelope::CloudWatchLogs => "cloudwatch-logs",
            Envelope::FirehoseError => "firehose-error",
        }
    }
}

impl FromStr for Envelope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => Envelope::Auto,
            "none" => Envelope::None,
            "cloudwatch-logs" => Envelope::CloudWatchLogs,
            "firehose-error" => Envelope::FirehoseError,
            other => {
                return Err(format!(
                    "unknown envelope `{other}` (expected auto, none, cloudwatch-logs or firehose-error)"
                ))
            }
        })
    }
}

/// Recognises the envelope from one record known to be a valid JSON object. Only the keys are
/// looked at; values are skipped without being built.
pub fn detect(record: &[u8]) -> Envelope {
    #[derive(Deserialize)]
    struct Keys(std::collections::HashMap<String, IgnoredAny>);
    let Ok(Keys(keys)) = serde_json::from_slice::<Keys>(record) else {
        return Envelope::None;
    };
    let has = |k: &str| keys.keys().any(|key| key.eq_ignore_ascii_case(k));
    if keys.contains_key("messageType") && keys.contains_key("logEvents") {
        Envelope::CloudWatchLogs
    } else if has("rawData") && (has("errorCode") || has("lastErrorCode") || has("attemptsMade")) {
        Envelope::FirehoseError
    } else {
        Envelope::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_each_envelope_from_its_keys() {
        assert_eq!(
            detect(br#"{"messageType":"DATA_MESSAGE","logEvents":[]}"#),
            Envelope::CloudWatchLogs
        );
        assert_eq!(
            detect(br#"{"attemptsMade":1,"errorCode":"x","rawData":"e30="}"#),
            Envelope::FirehoseError
        );
        assert_eq!(
            detect(br#"{"ErrorCode":"x","RawData":"e30="}"#),
            Envelope::FirehoseError
        );
        assert_eq!(detect(br#"{"rawData":"e30="}"#), Envelope::None);
        assert_eq!(detect(br#"{"event":"x"}"#), Envelope::None);
    }
}
