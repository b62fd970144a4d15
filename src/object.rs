//! What an object *is*, independent of where it is stored: its identity (bucket/root, key,
//! ETag, version) and what Firehose encoded into its key (stream name, write time).

use std::fmt;

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Serialize};

/// Where an object was read from, as its dead letters record it (`"source"`), so `redrive`
/// reads it from there again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Origin {
    /// An S3 bucket (`bucket` is its name).
    S3,
    /// A local directory playing the bucket: `root` is its absolute path (its name is `bucket`).
    Local { root: std::path::PathBuf },
}

/// Identity of one archived object. For local files `bucket` is the root directory's name and
/// `key` the path below it with `/` separators, so a local tree and the same tree in S3 differ
/// only by the bucket name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ObjectRef {
    pub bucket: String,
    pub key: String,
    /// S3's ETag without quotes; for local files the MD5 hex of the content (what S3 reports for
    /// single-part uploads), filled in when the object is opened.
    pub etag: Option<String>,
    pub version_id: Option<String>,
    pub size: Option<u64>,
    /// Where it was read from, once a store listed or opened it (`None`: not known, which
    /// readers of dead letters take as S3).
    #[serde(skip)]
    pub origin: Option<Origin>,
}

impl ObjectRef {
    pub fn new(bucket: impl Into<String>, key: impl Into<String>) -> Self {
        ObjectRef {
            bucket: bucket.into(),
            key: key.into(),
            etag: None,
            version_id: None,
            size: None,
            origin: None,
        }
    }

    /// The key's last path segment.
    pub fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }

    /// What Firehose encoded in the object's name, if it follows Firehose's naming.
    pub fn firehose_name(&self) -> Option<FirehoseName<'_>> {
        FirehoseName::parse(self.file_name())
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.bucket, self.key)?;
        if let Some(etag) = &self.etag {
            write!(f, " (etag {etag})")?;
        }
        Ok(())
    }
}

/// Why `name` cannot be an S3 bucket's name (`None`: it can).
///
/// Bucket names from notifications and dead letters become directory names (the NDJSON output
/// and dead-letter trees, `invoke --buckets DIR/<bucket>`) and parts of remote dead letters'
/// keys, so a name such as `b/../../x` or `..` must be refused where it is parsed rather than
/// step out of those directories. The rules are S3's (3 to 63 letters, digits, `.` and `-`,
/// starting and ending with a letter or digit, no `..`), widened only as far as names that
/// older us-east-1 buckets may still carry (up to 255 characters, capitals and `_`) — none of
/// which can name a directory other than one below the parent.
pub fn bucket_name_problem(name: &str) -> Option<&'static str> {
    let b = name.as_bytes();
    if b.len() < 3 || b.len() > 255 {
        return Some("a bucket name has 3 to 63 characters (255 for legacy buckets)");
    }
    if !b
        .iter()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_'))
    {
        return Some("a bucket name holds only letters, digits, `.`, `-` and `_`");
    }
    if !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return Some("a bucket name starts and ends with a letter or digit");
    }
    if name.contains("..") {
        return Some("a bucket name has no two adjacent periods");
    }
    None
}

/// [`bucket_name_problem`] as an error message naming the bucket.
pub fn check_bucket_name(name: &str) -> Result<(), String> {
    match bucket_name_problem(name) {
        None => Ok(()),
        Some(why) => Err(format!(
            "bucket name `{}` refused: {why}",
            name.escape_debug()
        )),
    }
}

/// The parts of a Firehose object name:
/// `<stream>-<version>-YYYY-MM-DD-HH-MM-SS-<uuid>[.<ext>]`.
///
/// Stream names may contain `-` and `.`, so the name is parsed from the right, anchored on the
/// timestamp and the 36-character UUID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirehoseName<'a> {
    pub stream: &'a str,
    pub version: u32,
    pub written_at: DateTime<Utc>,
    pub uuid: &'a str,
    /// Everything after the UUID, including the leading dot (`.gz`), or empty.
    pub extension: &'a str,
}

impl<'a> FirehoseName<'a> {
    pub fn parse(name: &'a str) -> Option<Self> {
        // "-YYYY-MM-DD-HH-MM-SS-" is 21 bytes, the UUID 36: find the rightmost position where both fit.
        let b = name.as_bytes();
        let tail = 21 + 36;
        if b.len() < tail + 3 {
            return None;
        }
        (0..=b.len() - tail).rev().find_map(|i| {
            let ts = &name[i..i + 21];
            let uuid = &name[i + 21..i + 21 + 36];
            let rest = &name[i + tail..];
            if !(rest.is_empty() || rest.starts_with('.')) || !is_uuid(uuid) {
                return None;
            }
            let written_at = parse_dash_timestamp(ts)?;
            let (stream, version) = name[..i].rsplit_once('-')?;
            let version = version.parse().ok()?;
            if stream.is_empty() {
                return None;
            }
            Some(FirehoseName {
                stream,
                version,
                written_at,
                uuid,
                extension: rest,
            })
        })
    }
}

/// The write time a Firehose object name carries: its rightmost `-YYYY-MM-DD-HH-MM-SS-`. Looser
/// than [`FirehoseName::parse`] on purpose: dynamic partitioning's documented object name
/// (`<stream>-YYYY-MM-DD-HH-MM-SS-<random>`) has no `-<version>-` segment, and the random part
/// need not be a UUID; only the time is wanted here (for backfills whose layout has no hour).
pub fn name_written_at(file_name: &str) -> Option<DateTime<Utc>> {
    let b = file_name.as_bytes();
    if b.len() < 21 {
        return None;
    }
    (0..=b.len() - 21)
        .rev()
        .filter(|&i| b[i] == b'-' && b[i + 20] == b'-')
        .find_map(|i| parse_dash_timestamp(&file_name[i..i + 21]))
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Parses `-YYYY-MM-DD-HH-MM-SS-`.
fn parse_dash_timestamp(s: &str) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    if b.len() != 21 || b[0] != b'-' || b[20] != b'-' {
        return None;
    }
    let fields: Vec<&str> = s[1..20].split('-').collect();
    if fields.len() != 6
        || fields
            .iter()
            .any(|f| !f.bytes().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    if fields[0].len() != 4 || fields[1..].iter().any(|f| f.len() != 2) {
        return None;
    }
    let n: Vec<u32> = fields
        .iter()
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let date = NaiveDate::from_ymd_opt(n[0] as i32, n[1], n[2])?;
    let t = date.and_hms_opt(n[3], n[4], n[5])?;
    Some(Utc.from_utc_datetime(&t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_that_could_leave_a_directory_are_refused() {
        for ok in [
            "firehose-archive",
            "my.bucket.2026",
            "abc",
            "Legacy_Bucket",
            "ap-alias-abc123-s3alias",
            "b--usw2-az1--x-s3",
        ] {
            assert_eq!(bucket_name_problem(ok), None, "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "srcb/../../../ESCAPED-DL",
            "a/b",
            "a..b",
            ".abc",
            "abc.",
            "a\\b",
            "a b",
            "ab",
            "a\0bc",
            "bücket",
        ] {
            assert!(bucket_name_problem(bad).is_some(), "{bad:?}");
        }
        assert!(bucket_name_problem(&"a".repeat(256)).is_some());
        assert!(check_bucket_name("..").unwrap_err().contains("`..`"));
    }

    #[test]
    fn parses_stream_names_with_dashes_and_dots_from_the_right() {
        let n = FirehoseName::parse(
            "shop-events.v2-1-2026-11-25-22-05-13-0b4c2c6e-5a1f-4f3e-9b7e-0d9f1c2a3b4c.gz",
        )
        .unwrap();
        assert_eq!(n.stream, "shop-events.v2");
        assert_eq!(n.version, 1);
        assert_eq!(n.uuid, "0b4c2c6e-5a1f-4f3e-9b7e-0d9f1c2a3b4c");
        assert_eq!(n.extension, ".gz");
        assert_eq!(n.written_at.to_rfc3339(), "2026-11-25T22:05:13+00:00");
    }

    #[test]
    fn parses_names_without_extension() {
        let n = FirehoseName::parse(
            "orders-3-2026-01-01-00-00-59-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        )
        .unwrap();
        assert_eq!((n.stream, n.version, n.extension), ("orders", 3, ""));
    }

    #[test]
    fn write_times_come_from_any_firehose_shaped_name() {
        let t = |n: &str| name_written_at(n).map(|t| t.to_rfc3339());
        assert_eq!(
            t("orders-2026-01-01-13-00-59-0b4c2c6e-5a1f-4f3e-9b7e-0d9f1c2a3b4c.gz"),
            Some("2026-01-01T13:00:59+00:00".into()),
            "dynamic partitioning: no version segment"
        );
        assert_eq!(
            t("my-stream-2-2026-12-31-23-59-59-abcdef"),
            Some("2026-12-31T23:59:59+00:00".into())
        );
        assert_eq!(t("data.json.gz"), None);
        assert_eq!(t("x-2026-13-01-00-00-00-y"), None);
    }

    #[test]
    fn rejects_names_that_are_not_firehose_names() {
        assert!(FirehoseName::parse("data.json.gz").is_none());
        assert!(FirehoseName::parse(
            "orders-x-2026-01-01-00-00-59-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
        )
        .is_none());
        assert!(FirehoseName::parse(
            "orders-1-2026-13-01-00-00-59-aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
        )
        .is_none());
    }
}
