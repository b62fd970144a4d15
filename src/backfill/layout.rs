//! Firehose's custom S3 prefixes as templates: `events/dt=!{timestamp:yyyy-MM-dd}/h=!{timestamp:HH}/`.
//!
//! Firehose expands `!{timestamp:<Java DateTimeFormatter pattern>}` with the UTC time of the
//! records, and `!{partitionKeyFromQuery:…}`, `!{partitionKeyFromLambda:…}` and `!{firehose:…}`
//! with values we cannot know in advance. So for each hour the template is rendered up to its
//! first unknown part — that is the prefix to list — and every listed key is matched against the
//! whole rendered template, unknown parts matching any text within one path segment.

use chrono::{DateTime, Utc};

/// The layout Firehose uses when no custom prefix is configured: `YYYY/MM/DD/HH/`.
pub const DEFAULT: &str = "!{timestamp:yyyy/MM/dd/HH}/";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// Formatted from the hour (chrono format string).
    Time(String),
    /// Unknown in advance: matches `[^/]*`.
    Any,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    parts: Vec<Part>,
}

impl std::str::FromStr for Layout {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("!{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let end = rest[start..]
                .find('}')
                .ok_or_else(|| format!("unclosed `!{{` in layout `{s}`"))?
                + start;
            let expr = &rest[start + 2..end];
            let (ns, arg) = expr.split_once(':').unwrap_or((expr, ""));
            match ns {
                "timestamp" => parts.push(java_time(arg, s)?),
                "partitionKeyFromQuery" | "partitionKeyFromLambda" | "firehose" => {
                    parts.push(Part::Any)
                }
                other => return Err(format!("unknown namespace `{other}` in layout `{s}`")),
            }
            rest = &rest[end + 1..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Layout { parts })
    }
}

/// Translates a Java DateTimeFormatter pattern (what Firehose accepts) to chrono's syntax.
/// Minutes and seconds cannot be rendered for an hour, so they become unknown parts.
fn java_time(pattern: &str, whole: &str) -> Result<Part, String> {
    let mut out = String::new();
    let b = pattern.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let run = b[i..].iter().take_while(|&&x| x == c).count();
        let token = &pattern[i..i + run];
        match token {
            "yyyy" | "uuuu" => out.push_str("%Y"),
            "yy" => out.push_str("%y"),
            "MM" => out.push_str("%m"),
            "dd" => out.push_str("%d"),
            "HH" => out.push_str("%H"),
            "mm" | "ss" => return Ok(Part::Any),
            _ if c.is_ascii_alphabetic() => {
                return Err(format!(
                    "unsupported timestamp pattern `{token}` in layout `{whole}`"
                ))
            }
            _ => {
                for ch in token.chars() {
                    if ch == '%' {
                        out.push_str("%%");
                    } else {
                        out.push(ch);
                    }
                }
            }
        }
        i += run;
    }
    Ok(Part::Time(out))
}

impl Layout {
    /// Whether the layout puts the hour in the key (year, month, day and hour all rendered). One
    /// that does not — only `!{partitionKeyFromQuery:…}` fields, or days without hours — cannot
    /// tell one hour's objects from another's by their prefix; the backfill then takes each
    /// object's hour from its name (see [`crate::object::name_written_at`]).
    pub fn pins_hour(&self) -> bool {
        let formats: String = self
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Time(f) => Some(f.as_str()),
                _ => None,
            })
            .collect();
        ["%m", "%d", "%H"].iter().all(|t| formats.contains(t))
            && (formats.contains("%Y") || formats.contains("%y"))
    }

    /// The listing prefix for `hour` (the template rendered up to its first unknown part).
    pub fn prefix(&self, hour: DateTime<Utc>) -> String {
        let mut s = String::new();
        for p in &self.parts {
            match p {
                Part::Text(t) => s.push_str(t),
                Part::Time(f) => s.push_str(&hour.format(f).to_string()),
                Part::Any => break,
            }
        }
        s
    }

    /// Whether `key` (relative to the base prefix) lies under the template rendered for `hour`.
    pub fn matches(&self, hour: DateTime<Utc>, key: &str) -> bool {
        let rendered: Vec<Option<String>> = self
            .parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => Some(t.clone()),
                Part::Time(f) => Some(hour.format(f).to_string()),
                Part::Any => None,
            })
            .collect();
        glob_prefix(&rendered, key)
    }
}

/// Matches `key` against literal pieces and `None` wildcards (`[^/]*`); the template is a
/// prefix, so anything may follow the last piece.
fn glob_prefix(pieces: &[Option<String>], key: &str) -> bool {
    match pieces.split_first() {
        None => true,
        Some((Some(lit), rest)) => key
            .strip_prefix(lit.as_str())
            .is_some_and(|k| glob_prefix(rest, k)),
        Some((None, rest)) => {
            let segment_end = key.find('/').unwrap_or(key.len());
            (0..=segment_end).any(|i| glob_prefix(rest, &key[i..]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn hour(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    #[test]
    fn the_default_layout_is_firehoses() {
        let l: Layout = DEFAULT.parse().unwrap();
        assert_eq!(l.prefix(hour(2026, 1, 2, 3)), "2026/01/02/03/");
        assert!(l.matches(hour(2026, 1, 2, 3), "2026/01/02/03/s-1-x.gz"));
        assert!(!l.matches(hour(2026, 1, 2, 3), "2026/01/02/04/s-1-x.gz"));
    }

    #[test]
    fn custom_templates_render_and_match() {
        let l: Layout = "events/dt=!{timestamp:yyyy-MM-dd}/h=!{timestamp:HH}/"
            .parse()
            .unwrap();
        assert_eq!(
            l.prefix(hour(2026, 11, 25, 13)),
            "events/dt=2026-11-25/h=13/"
        );
        let l: Layout = "t=!{partitionKeyFromQuery:tenant}/!{timestamp:yyyy/MM/dd/HH}/"
            .parse()
            .unwrap();
        assert_eq!(l.prefix(hour(2026, 11, 25, 13)), "t=");
        assert!(l.matches(hour(2026, 11, 25, 13), "t=acme/2026/11/25/13/x.gz"));
        assert!(!l.matches(hour(2026, 11, 25, 13), "t=acme/2026/11/25/14/x.gz"));
        assert!(
            !l.matches(hour(2026, 11, 25, 13), "t=a/b/2026/11/25/13/x.gz"),
            "one segment only"
        );
    }

    #[test]
    fn only_layouts_rendering_the_whole_hour_pin_it() {
        let pins = |s: &str| s.parse::<Layout>().unwrap().pins_hour();
        assert!(pins(DEFAULT));
        assert!(pins("dt=!{timestamp:yyyy-MM-dd}/h=!{timestamp:HH}/"));
        assert!(!pins("t=!{partitionKeyFromQuery:tenant}/"));
        assert!(!pins("dt=!{timestamp:yyyy-MM-dd}/"));
        assert!(!pins(""));
    }

    #[test]
    fn rejects_what_firehose_would_not_accept() {
        assert!("x/!{timestamp:yyyy".parse::<Layout>().is_err());
        assert!("x/!{nope:a}/".parse::<Layout>().is_err());
        assert!("x/!{timestamp:EEE}/".parse::<Layout>().is_err());
    }
}
