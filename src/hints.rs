//! One line of advice under an error whose words do not say what to do. The AWS SDK reports a
//! missing credential as a chain of provider failures ending at the instance metadata service
//! ("failed to load IMDS session token"), which is what a laptop without AWS configuration
//! gets: true, but it points at EC2, not at the fix.

/// The advice for an error (or object failure) message, if there is one.
pub(crate) fn for_message(text: &str) -> Option<&'static str> {
    let text = text.to_ascii_lowercase();
    if text.contains("loading credentials")
        || text.contains("no credentials")
        || text.contains("credentialsnotloaded")
    {
        return Some(NO_AWS_CREDENTIALS);
    }
    None
}

const NO_AWS_CREDENTIALS: &str = "hint: no AWS credentials were found. Set AWS_PROFILE (after \
`aws configure` or `aws sso login`), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and \
AWS_REGION; for a local S3 server (moto, MinIO) also AWS_ENDPOINT_URL. A local directory needs \
no credentials: `firehose-replay replay DIR`.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_aws_credential_gets_the_hint_and_other_errors_none() {
        let sdk = "fetch failed: ListObjectsV2: dispatch failure: other: an error occurred while \
                   loading credentials: failed to load IMDS session token";
        assert_eq!(for_message(sdk), Some(NO_AWS_CREDENTIALS));
        assert_eq!(
            for_message("the credential provider was not enabled: CredentialsNotLoaded"),
            Some(NO_AWS_CREDENTIALS)
        );
        assert_eq!(for_message("NoSuchBucket: the bucket does not exist"), None);
    }
}
