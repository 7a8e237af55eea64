//! The rejection hook: how the layer's HTTP denials are rendered, if not by default.

use bytes::Bytes;
use http::header::CACHE_CONTROL;
use http::request::Parts;
use http::{HeaderValue, Response};

use crate::challenge::Denial;

/// Renders a [`Denial`] as your own HTTP response, instead of the default JSON body and
/// `WWW-Authenticate` challenge; set with
/// [`GuardBuilder::rejection`](super::GuardBuilder::rejection). Any
/// `Fn(&Denial, &Parts) -> Option<Response<Bytes>>` closure is one.
///
/// ```
/// # use tower_stepup::*;
/// use bytes::Bytes;
/// use http::{header, Response, StatusCode};
///
/// /// Browsers that are not signed in go to the login page; everything else gets the
/// /// default rendering.
/// fn login_redirect(denial: &Denial, req: &http::request::Parts) -> Option<Response<Bytes>> {
///     let browser = req
///         .headers
///         .get(header::ACCEPT)
///         .and_then(|v| v.to_str().ok())
///         .is_some_and(|v| v.contains("text/html"));
///     if !browser || denial.kind() != DenialKind::MissingCredential {
///         return None;
///     }
///     Response::builder()
///         .status(StatusCode::SEE_OTHER)
///         .header(header::LOCATION, "/login")
///         .body(Bytes::new())
///         .ok()
/// }
/// # fn build(verifier: Verifier, sealer: Sealer) -> Result<Guard, ConfigError> {
/// let guard = Guard::builder()
///     .verifier(verifier)
///     .sealer(sealer)
///     .rejection(login_redirect)
///     .build()?;
/// # Ok(guard) }
/// ```
pub trait Rejection: Send + Sync + 'static {
    /// The response for `denial` of the request `request`, or `None` for the default
    /// rendering. The inner service is not called either way.
    fn reject(&self, denial: &Denial, request: &Parts) -> Option<Response<Bytes>>;
}

impl<F> Rejection for F
where
    F: Fn(&Denial, &Parts) -> Option<Response<Bytes>> + Send + Sync + 'static,
{
    fn reject(&self, denial: &Denial, request: &Parts) -> Option<Response<Bytes>> {
        self(denial, request)
    }
}

/// A hook's response as it leaves the layer: the `Denial` in its extensions, and
/// `Cache-Control: no-store` unless the hook chose a `Cache-Control` (a denial may carry
/// an mfa_token, and is about one client's credentials).
pub(super) fn finish(mut response: Response<Bytes>, denial: Denial) -> Response<Bytes> {
    response
        .headers_mut()
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response.extensions_mut().insert(denial);
    response
}

/// Put by the axum extractor in the extensions of its rejection (the default rendering):
/// the head of the request it refused. The layer whose pass let that request through
/// renders the denial again on the way out, its way (realm, [`Rejection`] hook). So
/// nothing is added to the requests the layer passes; only a rejection carries this.
#[cfg(feature = "axum")]
#[derive(Clone)]
pub(crate) struct PendingRejection(std::sync::Arc<Parts>);

#[cfg(feature = "axum")]
impl PendingRejection {
    /// A copy of the request head `parts` (its method, URI, version and headers; not its
    /// extensions), for the hook.
    pub(crate) fn of(parts: &Parts) -> Self {
        let (mut head, ()) = http::Request::new(()).into_parts();
        head.method = parts.method.clone();
        head.uri = parts.uri.clone();
        head.version = parts.version;
        head.headers = parts.headers.clone();
        Self(std::sync::Arc::new(head))
    }
}

/// The response the inner service gave to a request this guard let through without
/// claims: an axum `Claims` rejection in it is rendered again by `guard`.
#[cfg(feature = "axum")]
pub(super) fn render_pending<B>(
    guard: &super::Guard,
    mut response: Response<B>,
) -> Result<Response<Bytes>, Response<B>> {
    let Some(PendingRejection(parts)) = response.extensions_mut().remove::<PendingRejection>()
    else {
        return Err(response);
    };
    match response.extensions_mut().remove::<Denial>() {
        Some(denial) => Ok(guard.render(denial, &parts)),
        None => Err(response),
    }
}
