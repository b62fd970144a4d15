//! AWS answers classified transient or permanent, once for the source, the ledger and dead
//! letters.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::error::{Cause, Class, Error, Stage};

/// S3 ETags come quoted.
pub fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

/// Classifies an SDK error: throttling, 5xx, timeouts and connection failures are transient;
/// missing objects, denied access, archived objects and other 4xx are permanent.
pub fn classify<E>(
    stage: Stage,
    what: &str,
    err: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(se) => {
            let status = se.raw().status().as_u16();
            let code = se.err().code().unwrap_or("").to_string();
            let message = se.err().message().unwrap_or("").to_string();
            let detail = if message.is_empty() {
                format!("{what}: {code} (HTTP {status})")
            } else {
                format!("{what}: {code}: {message} (HTTP {status})")
            };
            match (code.as_str(), status) {
                ("NoSuchKey" | "NotFound", _) | (_, 404) if code != "NoSuchBucket" => {
                    Error::permanent(stage, Cause::NotFound)
                }
                (
                    "AccessDenied"
                    | "AllAccessDisabled"
                    | "InvalidAccessKeyId"
                    | "SignatureDoesNotMatch",
                    _,
                )
                | (_, 403) => Error::permanent(stage, Cause::AccessDenied(detail)),
                ("InvalidObjectState", _) => Error::permanent(
                    stage,
                    Cause::Remote(format!(
                        "{detail}; the object is archived: restore it first"
                    )),
                ),
                (
                    "SlowDown" | "Throttling" | "RequestTimeout" | "InternalError"
                    | "ServiceUnavailable",
                    _,
                )
                | (_, 429 | 500..=599) => {
                    Error::new(stage, Class::Transient, Cause::Remote(detail))
                }
                // The object changed between listing and reading: list again later.
                ("PreconditionFailed", _) | (_, 412) => Error::new(
                    stage,
                    Class::Transient,
                    Cause::Remote(format!("{detail}; the object changed since it was listed")),
                ),
                _ => Error::permanent(stage, Cause::Remote(detail)),
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Error::new(
                stage,
                Class::Transient,
                Cause::Remote(format!("{what}: {}", crate::error::error_chain(&err))),
            )
        }
        _ => Error::permanent(
            stage,
            Cause::Remote(format!("{what}: {}", crate::error::error_chain(&err))),
        ),
    }
}
