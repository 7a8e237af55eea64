//! Publishing an issuer's public keys: a tower service answering `GET` with the JWKS.

use std::convert::Infallible;
use std::fmt;
use std::future::{ready, Ready};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{HeaderValue, ALLOW, CACHE_CONTROL, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use http::{Method, Request, Response, StatusCode};
use tower_service::Service;

use super::rotation::KeyRing;
use crate::clock::SharedClock;

/// Default `max-age` of the published JWKS: five minutes, well below the time a retired
/// key stays published (the longest token lifetime plus a margin).
pub const DEFAULT_JWKS_MAX_AGE: Duration = Duration::from_secs(300);

/// A tower service that publishes an [`Issuer`](crate::Issuer)'s public keys as a JWKS
/// document (RFC 7517 §5): mount it at `GET /.well-known/jwks.json`. From
/// [`Issuer::jwks_service`](crate::Issuer::jwks_service).
///
/// `GET` (and `HEAD`) answer 200 with `Content-Type: application/json` and
/// `Cache-Control: public, max-age=N` ([`DEFAULT_JWKS_MAX_AGE`] unless set with
/// [`max_age`](Self::max_age)); any other method 405 with `Allow`. The document lists the
/// signing key and the retired keys still verifying, public halves only; an HMAC issuer
/// publishes `{"keys":[]}`. It follows rotations with no further call. Never fails.
///
/// ```
/// # use tower_stepup::{Issuer, SigningKey};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let issuer = Issuer::builder().issuer("https://auth.example").audience("https://api.example")
/// #     .signing_key(SigningKey::ed25519_from_seed("k1", &[7; 32])?).build()?;
/// // axum: Router::new().route_service("/.well-known/jwks.json", issuer.jwks_service())
/// let service = issuer.jwks_service();
/// # let _ = service;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct JwksService {
    ring: Arc<KeyRing>,
    clock: SharedClock,
    cache_control: HeaderValue,
}

impl JwksService {
    pub(crate) fn new(ring: Arc<KeyRing>, clock: SharedClock) -> Self {
        Self {
            ring,
            clock,
            cache_control: cache_control(DEFAULT_JWKS_MAX_AGE),
        }
    }

    /// How long clients may cache the document (`Cache-Control: public, max-age`).
    /// Keep it well below the time a retired key stays published, so that a cache never
    /// outlives the overlap; a verifier that meets an unknown `kid` refetches anyway.
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.cache_control = cache_control(max_age);
        self
    }

    fn answer(&self, method: &Method) -> Response<String> {
        if method != Method::GET && method != Method::HEAD {
            let mut res = Response::new(String::new());
            *res.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            res.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return res;
        }
        let jwks = self.ring.jwks(self.clock.now());
        let Ok(body) = serde_json::to_string(&jwks) else {
            let mut res = Response::new(String::new());
            *res.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return res;
        };
        let mut res = Response::new(body);
        let headers = res.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CACHE_CONTROL, self.cache_control.clone());
        headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        res
    }
}

fn cache_control(max_age: Duration) -> HeaderValue {
    HeaderValue::from_str(&format!("public, max-age={}", max_age.as_secs()))
        .unwrap_or_else(|_| HeaderValue::from_static("no-cache"))
}

impl<B> Service<Request<B>> for JwksService {
    type Response = Response<String>;
    type Error = Infallible;
    type Future = Ready<Result<Response<String>, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ready(Ok(self.answer(req.method())))
    }
}

impl fmt::Debug for JwksService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksService")
            .field("ring", &self.ring)
            .field("cache_control", &self.cache_control)
            .finish_non_exhaustive()
    }
}
