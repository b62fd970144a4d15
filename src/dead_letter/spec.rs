//! `--dead-letter` (and `redrive`'s source): where dead letters go, parsed once into a type
//! every user matches on — the run's destination, the CLI's own-paths guard, `redrive`.

use std::path::PathBuf;
use std::str::FromStr;

use crate::aws::S3Uri;

/// Where dead letters are: `dir:PATH` (or a bare path), `s3://bucket/prefix/`, `sqs:QUEUE_URL`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetterSpec {
    Dir(PathBuf),
    /// The prefix as given (see [`DeadLetterSpec::s3_prefix`] for it as a folder).
    S3(S3Uri),
    Sqs(String),
}

/// Why a `--dead-letter` value is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    #[error("`sqs:` needs a queue URL")]
    NoQueue,
    #[error("{0}")]
    S3(String),
    #[error("use dir:PATH, s3://bucket/prefix/ or sqs:QUEUE_URL")]
    Unsupported,
}

impl FromStr for DeadLetterSpec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        if let Some(url) = spec.strip_prefix("sqs:") {
            if url.is_empty() {
                return Err(SpecError::NoQueue);
            }
            return Ok(DeadLetterSpec::Sqs(url.to_string()));
        }
        if spec.starts_with("s3://") {
            return spec
                .parse::<S3Uri>()
                .map(DeadLetterSpec::S3)
                .map_err(SpecError::S3);
        }
        let dir = spec.strip_prefix("dir:").unwrap_or(spec);
        if dir.is_empty() || spec.contains("://") {
            return Err(SpecError::Unsupported);
        }
        Ok(DeadLetterSpec::Dir(PathBuf::from(dir)))
    }
}

impl DeadLetterSpec {
    /// An S3 destination's prefix as a folder (`a` → `a/`; empty stays empty).
    pub fn s3_prefix(uri: &S3Uri) -> String {
        let mut prefix = uri.key.clone();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        prefix
    }

    /// The local directory, for a `dir:` destination.
    pub fn local_dir(&self) -> Option<&std::path::Path> {
        match self {
            DeadLetterSpec::Dir(d) => Some(d),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses_and_what_is_none_of_them_is_refused() {
        let p = |s: &str| s.parse::<DeadLetterSpec>();
        assert_eq!(p("dir:x/y"), Ok(DeadLetterSpec::Dir("x/y".into())));
        assert_eq!(p("./dl"), Ok(DeadLetterSpec::Dir("./dl".into())));
        assert_eq!(
            p("sqs:https://q"),
            Ok(DeadLetterSpec::Sqs("https://q".into()))
        );
        assert_eq!(p("sqs:"), Err(SpecError::NoQueue));
        let DeadLetterSpec::S3(uri) = p("s3://b/pre").unwrap() else {
            panic!("not s3")
        };
        assert_eq!((uri.bucket.as_str(), uri.key.as_str()), ("b", "pre"));
        assert_eq!(DeadLetterSpec::s3_prefix(&uri), "pre/");
        assert!(matches!(p("s3:///k"), Err(SpecError::S3(_))));
        assert_eq!(p("gs://b/x"), Err(SpecError::Unsupported));
        assert_eq!(p("dir:"), Err(SpecError::Unsupported));
        assert_eq!(p(""), Err(SpecError::Unsupported));
    }
}
