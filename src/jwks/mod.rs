//! Keys from an identity provider's JWKS URL or OpenID Connect discovery document,
//! fetched and refreshed in the background (feature `jwks`).
//!
//! A [`JwksSource`] is a [`KeySource`](crate::token::KeySource): give it to the verifier
//! of that issuer. The request path only reads the current keys (one atomic load); all
//! fetching happens in a tokio task the source starts:
//!
//! - **Refresh**: every `Cache-Control: max-age` of the last response, kept within
//!   bounds (default 5 min ..= 24 h; 10 min without `max-age`; `no-store`/`no-cache`:
//!   the minimum).
//! - **Unknown `kid`**: a token signed by a key the set lacks (the provider rotated)
//!   triggers a fetch. Single-flight (concurrent callers wait for one fetch) and
//!   throttled (at most one such fetch per 5 s by default; callers in between get no
//!   wait and the token is refused).
//! - **Stale-if-error**: a failed fetch (network, TLS, timeout, status other than 200,
//!   body over the size cap, not a JWKS, or a set with no usable key) keeps the last good
//!   keys, logs a warning (the host and the kind of error), counts it
//!   ([`JwksSource::stats`]; with feature `metrics` also the counter
//!   [`FAILURE_METRIC`]) and retries after 1 s, doubling up to the minimum period.
//! - **Entries the verifier cannot use** (another `use`, `kty`, curve or algorithm,
//!   malformed, duplicate `kid`) are skipped, each with a `debug` event; the rest load.
//! - **Keys removed** from the set stop verifying after the next successful fetch.
//! - **Down at start-up** is not fatal: the source starts empty and the issuer's tokens
//!   get 401 until the keys arrive; [`JwksSource::wait_loaded`] waits for them.
//!
//! Fetching goes through a `tower::Service<http::Request<()>>` answering
//! `http::Response<Bytes>` ([`JwksSourceBuilder::fetcher`]); the default
//! [`HttpsFetcher`] is hyper with rustls: webpki roots, a 5 s timeout, a 256 KiB cap on
//! the body, 200 only, no redirects. URLs must be `https://`, or `http://` to a loopback
//! host, unless [`JwksSourceBuilder::allow_http`].
//!
//! ```no_run
//! use std::time::Duration;
//! use tower_stepup::jwks::JwksSource;
//! use tower_stepup::{Algorithm, TrustedIssuer, Verifier};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let algorithms = [Algorithm::RS256, Algorithm::ES256];
//! // Or JwksSource::builder("https://idp.example/.well-known/jwks.json").
//! let keys = JwksSource::discover("https://idp.example/")
//!     .algorithms(algorithms)
//!     .build()?;
//! let idp = TrustedIssuer::new("https://idp.example/")
//!     .audience("https://api.example")
//!     .algorithms(algorithms)
//!     .key_source(keys.clone());
//! let verifier = Verifier::builder().trust(idp).build()?;
//! # let _ = verifier;
//! // Optional: serve once the keys are there (until then the IdP's tokens get 401).
//! if let Err(error) = keys.wait_loaded(Duration::from_secs(10)).await {
//!     eprintln!("no keys from the identity provider yet: {error}");
//! }
//! let stats = keys.stats();
//! println!("{} keys, {} failed fetches", stats.keys_loaded, stats.failures);
//! # Ok(())
//! # }
//! ```

mod builder;
mod cache_control;
mod cycle;
mod discovery;
mod error;
mod fetch;
mod get;
mod refresh;
mod seam;
mod source;
mod state;
#[cfg(test)]
mod tests;
mod url;

pub use self::builder::{
    JwksSourceBuilder, DEFAULT_MAX_REFRESH, DEFAULT_MIN_REFRESH, DEFAULT_REFRESH,
    DEFAULT_UNKNOWN_KID_THROTTLE,
};
pub use self::cycle::FAILURE_METRIC;
pub use self::error::{BoxError, JwksError};
pub use self::fetch::{
    HttpsFetcher, HttpsFetcherBuilder, DEFAULT_MAX_RESPONSE_SIZE, DEFAULT_TIMEOUT,
};
pub use self::source::JwksSource;
pub use self::state::JwksStats;
/// rustls's root store and certificate type, for
/// [`HttpsFetcherBuilder::root_certificates`] without adding rustls (and matching its
/// version) yourself.
pub use rustls::{pki_types::CertificateDer, RootCertStore};
