//! rustls's crypto provider, chosen in one place for every TLS client of the crate (the
//! JWKS fetcher, `rediss://` for the Redis store).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

/// rustls's crypto provider for the crate's signature backend: aws-lc-rs when feature
/// `aws-lc-rs` is on (alone or with `rust-crypto`), ring with `rust-crypto` alone.
///
/// Always named explicitly: with both backends compiled in, rustls has no process
/// default of its own, and asking for it would panic.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    #[cfg(feature = "aws-lc-rs")]
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    // rustls 0.23.48 deprecates ring's provider for lacking post-quantum key exchange;
    // it is the one pure-Rust-leaning choice rustls ships besides aws-lc-rs (C).
    #[cfg(not(feature = "aws-lc-rs"))]
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(provider)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_follows_the_signature_backend() {
        let provider = provider();
        let name = format!("{:?}", provider.cipher_suites[0].suite());
        assert!(name.starts_with("TLS"), "{name}");
        // aws-lc-rs and ring differ in their key-exchange groups: aws-lc-rs offers the
        // post-quantum X25519MLKEM768 hybrid, ring does not.
        let groups: Vec<String> = provider
            .kx_groups
            .iter()
            .map(|g| format!("{:?}", g.name()))
            .collect();
        let pq = groups.iter().any(|g| g.contains("MLKEM"));
        assert_eq!(pq, cfg!(feature = "aws-lc-rs"), "{groups:?}");
    }
}
