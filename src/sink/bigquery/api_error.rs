//! What a Google REST answer means: the one classifier of failed requests that insertAll, load
//! jobs, table lookups and `--dedup merge` share.
//!
//! Google APIs fail in one shape: an HTTP status and `{"error": {"message", "errors":
//! [{"reason", …}]}}`. 5xx, 429, 408 and `rateLimitExceeded` are transient (tried again after
//! a pause), `quotaExceeded` too but after a longer one, and any other 4xx is permanent, with
//! Google's message. A request that got no answer (reset, timeout, refused connection) is
//! transient: whether it took effect is settled by the caller's idempotence (insertId,
//! deterministic job IDs). A failed token fetch is classified here too ([`token_error`]).
//! Row-level verdicts (insertAll's `insertErrors`) and job-level ones (a job's `errorResult`)
//! are their modules' own: they carry the same [`ErrorProto`] but other reasons.

use bytes::Bytes;
use serde::Deserialize;

use crate::error::{error_chain, Cause, Class, Error, Stage};

pub(crate) fn sink_error(class: Class, msg: String) -> Error {
    Error::new(Stage::Sink, class, Cause::Sink(msg))
}

/// One failed request, before it becomes an [`Error`] with the context of what was being done.
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) transient: bool,
    /// `quotaExceeded`: back off longer.
    pub(crate) quota: bool,
    pub(crate) why: String,
}

impl Fail {
    pub(crate) fn transient(why: String) -> Fail {
        Fail {
            transient: true,
            quota: false,
            why,
        }
    }

    pub(crate) fn permanent(why: String) -> Fail {
        Fail {
            transient: false,
            quota: false,
            why,
        }
    }

    /// An error from outside the HTTP exchange (a token fetch), keeping its class.
    pub(crate) fn from_error(e: Error) -> Fail {
        Fail {
            transient: e.is_transient(),
            quota: false,
            why: e.cause.to_string(),
        }
    }

    /// The error for a caller, `what` naming what was being done.
    pub(crate) fn into_error(self, what: &str) -> Error {
        let class = if self.transient {
            Class::Transient
        } else {
            Class::Permanent
        };
        sink_error(class, format!("{what}: {}", self.why))
    }
}

/// BigQuery's `ErrorProto`: one reason of a failed row, request or job.
#[derive(Deserialize, Default, Clone)]
pub(crate) struct ErrorProto {
    #[serde(default)]
    pub(crate) reason: String,
    #[serde(default)]
    pub(crate) location: String,
    #[serde(default)]
    pub(crate) message: String,
}

/// The body of a Google API error answer: `{"error": {"message", "errors": [...]}}`.
#[derive(Deserialize)]
struct ErrorResponse {
    error: ErrorBody,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    errors: Vec<ErrorProto>,
}

/// An HTTP answer, read whole (answers here are small JSON documents or empty).
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    /// `error.errors[0].reason` and `error.message` of a Google API error body; for bodies that
    /// are not one (proxies, the upload server), the start of the text.
    pub(crate) fn api_error(&self) -> (String, String) {
        match serde_json::from_slice::<ErrorResponse>(&self.body) {
            Ok(e) => (
                e.error
                    .errors
                    .first()
                    .map(|p| p.reason.clone())
                    .unwrap_or_default(),
                e.error.message,
            ),
            Err(_) => (
                String::new(),
                String::from_utf8_lossy(&self.body[..self.body.len().min(500)]).into_owned(),
            ),
        }
    }

    /// A success's body as `T`; one that does not parse is transient (a proxy's page, a cut
    /// answer), `what` naming it in the message.
    pub(crate) fn json<T: serde::de::DeserializeOwned>(&self, what: &str) -> Result<T, Fail> {
        serde_json::from_slice(&self.body)
            .map_err(|e| Fail::transient(format!("unreadable {what}: {e}")))
    }

    /// `409 duplicate`: the resource (a job ID) exists already.
    pub(crate) fn is_duplicate(&self) -> bool {
        self.status == 409 && self.api_error().0 == "duplicate"
    }

    /// The verdict on a whole request that did not succeed.
    pub(crate) fn fail(&self) -> Fail {
        let (reason, message) = self.api_error();
        let why = format!("HTTP {} {reason}: {message}", self.status);
        match (self.status, reason.as_str()) {
            (403, "quotaExceeded") => Fail {
                transient: true,
                quota: true,
                why,
            },
            (429, _) | (403, "rateLimitExceeded") | (500..=599, _) | (408, _) => {
                Fail::transient(why)
            }
            _ => Fail::permanent(why),
        }
    }
}

/// Sends and reads the whole answer. Failing to send or to read the answer is transient:
/// resets and timeouts are what it usually is.
pub(crate) async fn send(req: reqwest::RequestBuilder) -> Result<Reply, Fail> {
    let resp = req
        .send()
        .await
        .map_err(|e| Fail::transient(format!("request failed: {}", error_chain(&e))))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .bytes()
        .await
        .map_err(|e| Fail::transient(format!("reading the answer failed: {}", error_chain(&e))))?;
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// A token endpoint that answers with an OAuth error (`invalid_grant`: a revoked or wrong key)
/// will answer the same next time: permanent. Network trouble is transient.
pub fn token_error(e: gcp_bigquery_client::error::BQError) -> Error {
    use gcp_bigquery_client::error::BQError;
    use gcp_bigquery_client::yup_oauth2::Error as Yup;
    let class = match &e {
        BQError::YupAuthError(Yup::AuthError(_)) | BQError::AuthError(_) => Class::Permanent,
        _ => Class::Transient,
    };
    sink_error(class, format!("cannot get a Google access token: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: reqwest::header::HeaderMap::new(),
            body: Bytes::from(body.to_string()),
        }
    }

    fn api(reason: &str) -> String {
        format!(r#"{{"error":{{"message":"m","errors":[{{"reason":"{reason}"}}]}}}}"#)
    }

    #[test]
    fn google_api_errors_are_classified_by_status_and_reason() {
        let cases = [
            (500, api("backendError"), true, false),
            (503, "<html>proxy</html>".to_string(), true, false),
            (429, api(""), true, false),
            (408, api(""), true, false),
            (403, api("rateLimitExceeded"), true, false),
            (403, api("quotaExceeded"), true, true),
            (403, api("accessDenied"), false, false),
            (404, api("notFound"), false, false),
            (400, api("invalid"), false, false),
        ];
        for (status, body, transient, quota) in cases {
            let f = reply(status, &body).fail();
            assert_eq!(
                (f.transient, f.quota),
                (transient, quota),
                "{status} {body}"
            );
            assert!(f.why.starts_with(&format!("HTTP {status}")), "{}", f.why);
        }
        assert_eq!(
            reply(404, &api("notFound")).fail().why,
            "HTTP 404 notFound: m"
        );
        // Not a Google error body: the start of the text stands in for the message.
        let (reason, message) = reply(502, &"x".repeat(2000)).api_error();
        assert_eq!((reason.as_str(), message.len()), ("", 500));
    }

    #[test]
    fn only_a_409_duplicate_means_the_resource_exists() {
        assert!(reply(409, &api("duplicate")).is_duplicate());
        assert!(!reply(409, &api("conflict")).is_duplicate());
        assert!(!reply(400, &api("duplicate")).is_duplicate());
    }
}
