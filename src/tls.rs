//! One TLS crypto provider for the whole process: aws-lc-rs, which the AWS SDK's HTTPS client
//! and Google's auth crate use already. The BigQuery REST client (reqwest 0.12, shared with
//! gcp-bigquery-client) is built without a provider of its own, so `ring` — a second
//! provider, compiled and linked beside aws-lc-rs — stays out of the build; reqwest then takes
//! the process default, which this installs. Call it before building an HTTP client; the
//! binary calls it first thing.

/// Installs aws-lc-rs as the process's default rustls provider, once; a provider installed
/// earlier (by an embedding program) is kept.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// A plain HTTP client on that provider (tests and tools; the sink builds its own with timeouts).
pub fn http_client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::new()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_client_builds_with_the_one_provider() {
        let client = super::http_client();
        drop(client);
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
