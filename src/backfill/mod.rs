//! A UTC date/hour range → the objects Firehose wrote in it.
//!
//! Firehose's default layout puts each object under `prefix/YYYY/MM/DD/HH/` by the UTC hour it
//! was written in, so a range is listed hour by hour instead of listing the whole bucket.

pub mod layout;

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};

pub use layout::Layout;

use crate::error::Error;
use crate::object::ObjectRef;
use crate::source::ObjectStore;

/// Firehose's default error-output folders (one per failure kind), each with the same
/// `YYYY/MM/DD/HH/` layout below it.
pub const ERROR_OUTPUT_PREFIXES: &[&str] = &[
    "processing-failed/",
    "format-conversion-failed/",
    "elasticsearch-failed/",
    "opensearch-failed/",
    "splunk-failed/",
    "http-endpoint-failed/",
];

/// An inclusive range of UTC hours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HourRange {
    pub first: DateTime<Utc>,
    pub last: DateTime<Utc>,
}

/// Parses `YYYY-MM-DD`, `YYYY-MM-DDTHH` or an RFC 3339 time on the hour
/// (`2026-11-25T22:00:00Z`, `2026-11-25T23:00:00+01:00`; the seconds and the offset may be left
/// out, which means UTC) as a UTC hour. A date alone means its first hour for `--from` and its
/// last hour for `--to` (so `--to` is inclusive either way). The range is made of whole hours: a
/// time with minutes or seconds is refused rather than silently truncated.
pub fn parse_bound(s: &str, is_end: bool) -> Result<DateTime<Utc>, String> {
    let t = s.trim();
    let naive = t.strip_suffix(['Z', 'z']).unwrap_or(t);
    if let Ok(d) = NaiveDate::parse_from_str(naive, "%Y-%m-%d") {
        let h = if is_end { 23 } else { 0 };
        return Ok(Utc.from_utc_datetime(&d.and_hms_opt(h, 0, 0).expect("valid hour")));
    }
    // chrono needs minutes to build a time; an hour alone gets them added.
    let with_minutes = format!("{naive}:00");
    let parsed = ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(&with_minutes, f).ok())
        .map(|dt| Utc.from_utc_datetime(&dt))
        .or_else(|| {
            DateTime::parse_from_rfc3339(t)
                .ok()
                .map(|dt| dt.with_timezone(&Utc))
        })
        .or_else(|| {
            ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S%.f"]
                .iter()
                .find_map(|f| NaiveDateTime::parse_from_str(naive, f).ok())
                .map(|dt| Utc.from_utc_datetime(&dt))
        });
    let Some(dt) = parsed else {
        return Err(format!(
            "`{s}` is not a UTC date or hour (use YYYY-MM-DD, YYYY-MM-DDTHH or an RFC 3339 time \
             on the hour)"
        ));
    };
    if dt.minute() != 0 || dt.second() != 0 || dt.nanosecond() != 0 {
        return Err(format!(
            "`{s}` is not on the hour: --from and --to name whole UTC hours (use {})",
            dt.format("%Y-%m-%dT%H")
        ));
    }
    Ok(dt)
}

impl HourRange {
    pub fn parse(from: &str, to: &str) -> Result<HourRange, String> {
        let first = parse_bound(from, false)?;
        let last = parse_bound(to, true)?;
        if last < first {
            return Err(format!("--to ({to}) is before --from ({from})"));
        }
        Ok(HourRange { first, last })
    }

    pub fn hours(&self) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let n = (self.last - self.first).num_hours();
        (0..=n).map(move |i| self.first + Duration::hours(i))
    }

    /// `base` + `YYYY/MM/DD/HH/` for each hour.
    pub fn prefixes(&self, base: &str) -> Vec<String> {
        self.hours()
            .map(|h| format!("{base}{}", h.format("%Y/%m/%d/%H/")))
            .collect()
    }
}

/// Lists every object of the range under `base` laid out as `layout`, hour by hour and in key
/// order within each hour. Keys inside Firehose's error-output folders are left out unless
/// `include_error_output`, in which case those folders' objects for the same hours are added.
pub async fn plan(
    store: &dyn ObjectStore,
    base: &str,
    layout: &Layout,
    range: &HourRange,
    include_error_output: bool,
) -> Result<Vec<ObjectRef>, Error> {
    let mut bases = vec![base.to_string()];
    if include_error_output {
        bases.extend(ERROR_OUTPUT_PREFIXES.iter().map(|e| format!("{base}{e}")));
    }
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, b) in bases.iter().enumerate() {
        let mut listed: Vec<String> = Vec::new();
        for hour in range.hours() {
            let prefix = format!("{b}{}", layout.prefix(hour));
            // Templates coarser than an hour give the same prefix for several hours.
            if !listed.contains(&prefix) {
                listed.push(prefix.clone());
                let objects = store.list(&prefix).await?;
                for o in objects {
                    let rel = &o.key[b.len()..];
                    let in_error_output = i == 0 && is_error_output(rel);
                    if !in_error_output
                        && range.hours().any(|h| layout.matches(h, rel))
                        && seen.insert(o.key.clone())
                    {
                        out.push(o);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// Whether a key lies in one of Firehose's error-output folders.
fn is_error_output(rel_key: &str) -> bool {
    ERROR_OUTPUT_PREFIXES.iter().any(|p| rel_key.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_alone_covers_the_whole_day_and_to_is_inclusive() {
        let r = HourRange::parse("2026-11-25", "2026-11-26").unwrap();
        assert_eq!(r.hours().count(), 48);
        let p = r.prefixes("x/");
        assert_eq!(p.first().unwrap(), "x/2026/11/25/00/");
        assert_eq!(p.last().unwrap(), "x/2026/11/26/23/");
    }

    #[test]
    fn hour_bounds_cross_midnight_month_and_year() {
        let r = HourRange::parse("2026-12-31T22", "2027-01-01T01").unwrap();
        assert_eq!(
            r.prefixes(""),
            vec![
                "2026/12/31/22/",
                "2026/12/31/23/",
                "2027/01/01/00/",
                "2027/01/01/01/"
            ]
        );
        let r = HourRange::parse("2026-11-25T13:00", "2026-11-25T13").unwrap();
        assert_eq!(r.prefixes(""), vec!["2026/11/25/13/"]);
    }

    #[test]
    fn rfc3339_times_on_the_hour_are_hours_in_utc() {
        for (s, hour) in [
            ("2026-11-25T22:00:00Z", "2026-11-25T22"),
            ("2026-11-25T22:00:00.000Z", "2026-11-25T22"),
            ("2026-11-25T22:00:00", "2026-11-25T22"),
            ("2026-11-25T22:00Z", "2026-11-25T22"),
            ("2026-11-25T23:00:00+01:00", "2026-11-25T22"),
            ("2026-11-25t22:00:00z", "2026-11-25T22"),
            ("2026-11-25T22Z", "2026-11-25T22"),
        ] {
            let b = parse_bound(s, false).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(b.format("%Y-%m-%dT%H").to_string(), hour, "{s}");
        }
    }

    #[test]
    fn times_off_the_hour_are_refused_not_truncated() {
        for s in [
            "2026-11-25T22:30:00Z",
            "2026-11-25T22:00:01Z",
            "2026-11-25T22:00:00.5Z",
            "2026-11-25T13:45",
            "2026-11-25T22:00:00+05:30",
        ] {
            let e = parse_bound(s, false).unwrap_err();
            assert!(e.contains("not on the hour"), "{s}: {e}");
        }
        let e = HourRange::parse("2026-11-25T22:15:00Z", "2026-11-25T23").unwrap_err();
        assert!(e.contains("use 2026-11-25T22"), "{e}");
    }

    #[test]
    fn rejects_reversed_and_malformed_ranges() {
        assert!(HourRange::parse("2026-11-26", "2026-11-25T23").is_err());
        assert!(HourRange::parse("yesterday", "2026-11-25")
            .unwrap_err()
            .contains("yesterday"));
        assert!(HourRange::parse("2026-02-30", "2026-03-01").is_err());
    }
}
