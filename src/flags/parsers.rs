//! Value parsers of flags and their environment variables.

/// `--max-record-error-ratio`: a share, 0.0 to 1.0, or `off` (never: the record policy alone
/// decides).
pub(crate) fn ratio(s: &str) -> Result<f64, String> {
    if s.trim().eq_ignore_ascii_case("off") {
        return Ok(f64::INFINITY);
    }
    match s.trim().parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err("expected a share from 0.0 to 1.0 (e.g. 0.5), or off".into()),
    }
}

/// Boolean flags and their environment variables: `--force`, or `FIREHOSE_REPLAY_FORCE` set to
/// 1/0, true/false, yes/no or on/off in any case (empty: not set).
pub(crate) fn env_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err("expected one of 1, 0, true, false, yes, no, on, off (any case)".into()),
    }
}

/// `--bigquery-endpoint`, `--bigquery-storage-endpoint`: an `http(s)://host[:port]` URL, so a
/// mistyped one is a usage error (exit 2) rather than a failed run; empty means not set (an
/// empty variable in a container's environment), but see [`refuse_empty_flags`].
pub(crate) fn endpoint_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(String::new());
    }
    match s.parse::<http::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
            Ok(s.to_string())
        }
        _ => Err(format!("`{s}` is not an http:// or https:// URL")),
    }
}

/// `--min-age`: a whole number and a unit, `s`, `m`, `h` or `d` (`90s`, `30m`, `1h`, `2d`).
pub(crate) fn duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let unit = match s.chars().last() {
        Some('s') => 1,
        Some('m') => 60,
        Some('h') => 3600,
        Some('d') => 86_400,
        _ => return Err("expected a number and a unit: s, m, h or d (e.g. 30m, 1h)".into()),
    };
    match s[..s.len() - 1].parse::<u64>() {
        Ok(n) => Ok(std::time::Duration::from_secs(n.saturating_mul(unit))),
        Err(_) => Err("expected a whole number and a unit: s, m, h or d (e.g. 30m, 1h)".into()),
    }
}

/// Counts that must be at least 1 (`--concurrency`, `--max-attempts`, `--batch-rows`).
pub(crate) fn at_least_one<T>(s: &str) -> Result<T, String>
where
    T: std::str::FromStr<Err = std::num::ParseIntError> + Default + PartialEq,
{
    match s.trim().parse::<T>() {
        Ok(n) if n == T::default() => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("not a whole number: {e}")),
    }
}

/// `--log-level`: a level, or a tracing filter whose directives each name a level
/// (`info,firehose_replay=debug`). A bare word that is no level (`verbose`, `warning`) is
/// refused instead of being taken as a target name, which would silently log at `info`.
pub(crate) fn log_level(s: &str) -> Result<String, String> {
    const HINT: &str =
        "expected off, error, warn, info, debug, trace or a tracing filter like info,h2=debug";
    for directive in s.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        if !directive.contains(['=', '['])
            && directive
                .parse::<tracing_subscriber::filter::LevelFilter>()
                .is_err()
        {
            return Err(format!("`{directive}` is not a log level ({HINT})"));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(s)
        .map_err(|e| format!("not a tracing filter: {e}"))?;
    Ok(s.to_string())
}

/// `--sink` (and `FIREHOSE_REPLAY_SINK`): a [`SinkSpec`], refused without echoing the value. A
/// PostgreSQL URL may carry a password (`postgres://app:secret@db/…`), and clap's own message
/// for a refused value quotes it whole, into a terminal or a Lambda's log; this one quotes it
/// with every password masked.
#[derive(Clone, Debug)]
pub(crate) struct SinkParser;

impl clap::builder::TypedValueParser for SinkParser {
    type Value = firehose_replay::sink::SinkSpec;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let refuse = |why: String| {
            let flag = arg.and_then(|a| a.get_long()).unwrap_or("sink");
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for '--{flag}': {}\n", mask_passwords(&why)),
            )
        };
        let text = value
            .to_str()
            .ok_or_else(|| refuse("not valid UTF-8".into()))?;
        text.parse()
            .map_err(|e: String| refuse(format!("`{text}`: {e}")))
    }
}

/// `text` with the password of every `scheme://user:password@` and every `password=…` masked.
pub(crate) fn mask_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    // URLs: the userinfo's password, up to the last `@` of the authority.
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail
            .find(['/', '?', '#', '`', '\'', ' '])
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match (authority.rfind('@'), authority.find(':')) {
            (Some(a), Some(c)) if c < a => {
                out.push_str(&authority[..=c]);
                out.push_str("***");
                out.push_str(&authority[a..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    // Key/value strings and URL parameters: `password=…`, quoted or up to a separator.
    let mut masked = String::with_capacity(out.len());
    let mut rest = out.as_str();
    while let Some(at) = rest.to_ascii_lowercase().find("password=") {
        let (head, tail) = rest.split_at(at + "password=".len());
        masked.push_str(head);
        masked.push_str("***");
        let end = match tail.strip_prefix('\'') {
            Some(quoted) => quoted.find('\'').map_or(tail.len(), |q| q + 2),
            None => tail
                .find(|c: char| c.is_whitespace() || matches!(c, '&' | '`'))
                .unwrap_or(tail.len()),
        };
        rest = &tail[end..];
    }
    masked.push_str(rest);
    masked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_sink_values_are_masked() {
        assert_eq!(
            mask_passwords("`postgres://app:s3cr@t!@db:5432/x?table=t`: bad"),
            "`postgres://app:***@db:5432/x?table=t`: bad"
        );
        assert_eq!(
            mask_passwords("`postgres:host=db password='a b' table=t`"),
            "`postgres:host=db password=*** table=t`"
        );
        assert_eq!(
            mask_passwords("postgres://db/x?password=hunter2&table=t"),
            "postgres://db/x?password=***&table=t"
        );
        assert_eq!(mask_passwords("ndjson:./out"), "ndjson:./out");
    }
}
