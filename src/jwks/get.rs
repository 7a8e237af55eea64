//! One GET through the source's fetcher: bounded by the timeout, 200 only.

use bytes::Bytes;
use http::header::{ACCEPT, USER_AGENT};
use http::{Request, Response, StatusCode, Uri};

use super::error::JwksError;
use super::state::State;

/// What the source sends as `Accept`.
const ACCEPTED: &str = "application/jwk-set+json, application/json";
/// What the source sends as `User-Agent` (some providers' firewalls refuse none).
const AGENT: &str = concat!("tower-stepup/", env!("CARGO_PKG_VERSION"));

/// GETs `uri`: the response if it came within the timeout with status 200.
pub(crate) async fn get(state: &State, uri: &Uri) -> Result<Response<Bytes>, JwksError> {
    let request = Request::get(uri.clone())
        .header(ACCEPT, ACCEPTED)
        .header(USER_AGENT, AGENT)
        .body(())
        .map_err(|_| JwksError::BadJwksUri)?;
    let fetch = state.fetcher.fetch(request);
    let response = tokio::time::timeout(state.config.timeout, fetch)
        .await
        .map_err(|_| JwksError::Timeout)?
        .map_err(|error| JwksError::of(&error))?;
    match response.status() {
        StatusCode::OK => Ok(response),
        status => Err(JwksError::Status(status.as_u16())),
    }
}
