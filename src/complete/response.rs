//! The success answers of the completion endpoints (their refusals are `error.rs`'s):
//! every one `Cache-Control: no-store`, since they carry tokens or end sessions.

use bytes::Bytes;
use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, SET_COOKIE};
use http::{Response, StatusCode};

/// A `200` JSON answer that must not be cached (it carries tokens).
pub(crate) fn json_ok(body: &serde_json::Value) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(body.to_string()));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `204 No Content`.
pub(crate) fn no_content() -> Response<Bytes> {
    let mut response = Response::new(Bytes::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `204 No Content` that signs the browser out: the session and refresh cookies cleared
/// (cookie mode).
pub(crate) fn signed_out(cookies: Option<&super::CookieConfig>) -> Response<Bytes> {
    let mut response = no_content();
    if let Some(c) = cookies {
        for v in [c.clear_session(), c.clear_refresh()].into_iter().flatten() {
            response.headers_mut().append(SET_COOKIE, v);
        }
    }
    response
}
