//! Why a fetch of keys failed.

use std::fmt;

/// The error type of a fetcher: any error, boxed. The default
/// [`HttpsFetcher`](super::HttpsFetcher) boxes a [`JwksError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a fetch of keys (or of the discovery document) failed. It names the kind of
/// failure only: never a response body, a key or a URL path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwksError {
    /// No connection, a TLS failure (e.g. a certificate no trusted root vouches for),
    /// or the connection broke. A custom fetcher's errors count as this kind unless
    /// they are a boxed `JwksError`.
    Network,
    /// No complete response within the timeout.
    Timeout,
    /// The body was larger than the size cap (the read stopped there).
    TooLarge,
    /// A status other than 200 (redirects are not followed).
    Status(u16),
    /// The body is not a JSON Web Key Set (or not a discovery document).
    Json,
    /// The set holds no key the verifier can use.
    NoUsableKey,
    /// The discovery document's `issuer` is not exactly the expected issuer.
    IssuerMismatch,
    /// The discovery document has no `jwks_uri`, or one the URL rules refuse (`https://`,
    /// or `http://` only to a loopback host unless allowed).
    BadJwksUri,
    /// No keys yet: [`JwksSource::wait_loaded`](super::JwksSource::wait_loaded) gave up
    /// before the first fetch had finished.
    NotLoaded,
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Network => f.write_str("network or TLS error"),
            Self::Timeout => f.write_str("timed out"),
            Self::TooLarge => f.write_str("response larger than the size cap"),
            Self::Status(status) => write!(f, "HTTP status {status}"),
            Self::Json => f.write_str("not a valid JSON document of the expected kind"),
            Self::NoUsableKey => f.write_str("no usable key in the set"),
            Self::IssuerMismatch => f.write_str("discovery document names another issuer"),
            Self::BadJwksUri => f.write_str("discovery document has no acceptable jwks_uri"),
            Self::NotLoaded => f.write_str("no keys loaded yet"),
        }
    }
}

impl std::error::Error for JwksError {}

impl JwksError {
    /// The kind of a fetcher's error: a boxed `JwksError` keeps its kind, anything else
    /// is [`JwksError::Network`].
    pub(crate) fn of(error: &BoxError) -> Self {
        error
            .downcast_ref::<JwksError>()
            .copied()
            .unwrap_or(JwksError::Network)
    }

    /// A short, stable name for logs and metrics labels.
    pub(crate) fn kind(self) -> &'static str {
        match self {
            Self::Network => "network",
            Self::Timeout => "timeout",
            Self::TooLarge => "too_large",
            Self::Status(_) => "status",
            Self::Json => "json",
            Self::NoUsableKey => "no_usable_key",
            Self::IssuerMismatch => "issuer_mismatch",
            Self::BadJwksUri => "bad_jwks_uri",
            Self::NotLoaded => "not_loaded",
        }
    }
}
