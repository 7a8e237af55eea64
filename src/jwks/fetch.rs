//! The default fetcher: HTTPS with rustls over hyper, a timeout and a size cap.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::{ClientConfig, RootCertStore};

use super::error::{BoxError, JwksError};
use crate::error::ConfigError;
use crate::tls::provider;

/// Default bound on one fetch: connecting, the TLS handshake and the whole response.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default cap on a response body (256 KiB): a JWKS is a few KiB.
pub const DEFAULT_MAX_RESPONSE_SIZE: usize = 256 * 1024;

/// How long an idle connection to the identity provider is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The default fetcher of a [`JwksSource`](super::JwksSource): an HTTPS client (hyper,
/// rustls) that sends the request, reads the answer within a timeout and refuses a body
/// over a size cap while reading it.
///
/// - TLS trusts the webpki roots (Mozilla's) unless you give your own
///   ([`HttpsFetcherBuilder::root_certificates`]). rustls's crypto provider follows the
///   crate's signature backend: aws-lc-rs with feature `aws-lc-rs` (also when both are
///   on), ring with `rust-crypto` alone. It is passed explicitly, so the process-wide
///   default provider is neither needed nor installed.
/// - Only a 200 answer's body is read (others come back with an empty body); redirects
///   are not followed; `Content-Type` is not checked.
/// - It speaks `http://` too: the [`JwksSource`](super::JwksSource) decides which URLs
///   may be fetched (plain HTTP only to loopback hosts, or when allowed).
///
/// Errors are boxed [`JwksError`]s: [`Timeout`](JwksError::Timeout),
/// [`TooLarge`](JwksError::TooLarge) or [`Network`](JwksError::Network).
#[derive(Clone)]
pub struct HttpsFetcher {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
    max_size: usize,
}

impl std::fmt::Debug for HttpsFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpsFetcher")
            .field("timeout", &self.timeout)
            .field("max_response_size", &self.max_size)
            .finish_non_exhaustive()
    }
}

impl HttpsFetcher {
    /// A fetcher with the defaults: webpki roots, [`DEFAULT_TIMEOUT`],
    /// [`DEFAULT_MAX_RESPONSE_SIZE`].
    pub fn new() -> Result<Self, ConfigError> {
        Self::builder().build()
    }

    /// A fetcher to configure.
    pub fn builder() -> HttpsFetcherBuilder {
        HttpsFetcherBuilder::default()
    }
}

/// Configuration of an [`HttpsFetcher`].
#[derive(Debug, Default)]
#[must_use]
pub struct HttpsFetcherBuilder {
    roots: Option<RootCertStore>,
    timeout: Option<Duration>,
    max_size: Option<usize>,
}

impl HttpsFetcherBuilder {
    /// Trust these roots instead of the webpki roots (e.g. a company CA in front of the
    /// identity provider).
    pub fn root_certificates(mut self, roots: RootCertStore) -> Self {
        self.roots = Some(roots);
        self
    }

    /// The bound on one fetch: connect, handshake and the whole response. Default
    /// [`DEFAULT_TIMEOUT`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// The largest body read, in bytes; a longer one fails with
    /// [`JwksError::TooLarge`] as soon as the cap is passed. Default
    /// [`DEFAULT_MAX_RESPONSE_SIZE`].
    pub fn max_response_size(mut self, bytes: usize) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// Checks the configuration and builds the fetcher. Needs no runtime; fetching does.
    pub fn build(self) -> Result<HttpsFetcher, ConfigError> {
        let timeout = self.timeout.unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() {
            return Err(ConfigError::invalid("timeout", "must be more than zero"));
        }
        let max_size = self.max_size.unwrap_or(DEFAULT_MAX_RESPONSE_SIZE);
        if max_size == 0 {
            return Err(ConfigError::invalid("max_response_size", "at least 1 byte"));
        }
        let roots = self.roots.unwrap_or_else(webpki_roots);
        let tls = tls_config(roots)?;
        Ok(HttpsFetcher {
            client: client(tls, timeout),
            timeout,
            max_size,
        })
    }
}

/// Mozilla's roots, as the webpki-roots crate ships them.
fn webpki_roots() -> RootCertStore {
    RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    }
}

/// A client TLS configuration with an explicit provider (never the process default).
fn tls_config(roots: RootCertStore) -> Result<ClientConfig, ConfigError> {
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError::invalid("tls", e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// The hyper client: HTTP/1.1 over TCP, TLS for `https://`.
fn client(
    tls: ClientConfig,
    timeout: Duration,
) -> Client<HttpsConnector<HttpConnector>, Empty<Bytes>> {
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_connect_timeout(Some(timeout));
    let https = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(POOL_IDLE_TIMEOUT)
        .pool_timer(TokioTimer::new())
        .build(https)
}

impl tower_service::Service<Request<()>> for HttpsFetcher {
    type Response = Response<Bytes>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Bytes>, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<()>) -> Self::Future {
        let (client, timeout, max_size) = (self.client.clone(), self.timeout, self.max_size);
        Box::pin(async move {
            match tokio::time::timeout(timeout, fetch(client, request, max_size)).await {
                Ok(result) => result.map_err(BoxError::from),
                Err(_) => Err(JwksError::Timeout.into()),
            }
        })
    }
}

/// Sends `request` and reads a 200 answer's body, at most `max_size` bytes of it.
async fn fetch(
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    request: Request<()>,
    max_size: usize,
) -> Result<Response<Bytes>, JwksError> {
    let (head, ()) = request.into_parts();
    let host = head.uri.host().unwrap_or("?").to_owned();
    let response = client
        .request(Request::from_parts(head, Empty::new()))
        .await
        .map_err(|error| {
            // The error chain names the cause (refused, a certificate no root vouches
            // for, …); it holds no body and no key.
            tracing::debug!(host, error = %error_chain(&error), "JWKS request failed");
            JwksError::Network
        })?;
    let (head, body) = response.into_parts();
    if head.status != StatusCode::OK {
        return Ok(Response::from_parts(head, Bytes::new()));
    }
    let body = Limited::new(body, max_size)
        .collect()
        .await
        .map_err(|error| match error.is::<LengthLimitError>() {
            true => JwksError::TooLarge,
            false => JwksError::Network,
        })?
        .to_bytes();
    Ok(Response::from_parts(head, body))
}

/// An error and its sources, one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_settings_are_refused() {
        let zero = HttpsFetcher::builder().timeout(Duration::ZERO).build();
        assert!(matches!(
            zero,
            Err(ConfigError::Invalid {
                setting: "timeout",
                ..
            })
        ));
        let empty = HttpsFetcher::builder().max_response_size(0).build();
        assert!(matches!(
            empty,
            Err(ConfigError::Invalid {
                setting: "max_response_size",
                ..
            })
        ));
        let fetcher = HttpsFetcher::builder()
            .timeout(Duration::from_secs(2))
            .max_response_size(1024)
            .build()
            .unwrap();
        assert_eq!(fetcher.timeout, Duration::from_secs(2));
        assert_eq!(fetcher.max_size, 1024);
        assert!(!webpki_roots().is_empty());
    }

    // With both backends, rustls has two providers compiled in and no default: asking it
    // for the process default would panic. The fetcher names its provider itself.
    #[cfg(all(feature = "aws-lc-rs", feature = "rust-crypto"))]
    #[test]
    fn with_both_backends_a_fetcher_builds_without_a_process_default() {
        assert!(rustls::crypto::CryptoProvider::get_default().is_none());
        HttpsFetcher::new().unwrap();
        assert!(
            rustls::crypto::CryptoProvider::get_default().is_none(),
            "no default installed"
        );
        let suites = &tls_config(webpki_roots()).unwrap();
        assert!(!suites.crypto_provider().cipher_suites.is_empty());
    }
}
