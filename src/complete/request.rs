//! Reading requests: JSON bodies within a size limit, and credentials.

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, COOKIE};
use http::request::Parts;
use http::{HeaderMap, Request};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::de::DeserializeOwned;

use super::error::{ErrorKind, Failure};

/// Largest JSON body the completion endpoints read by default.
pub const DEFAULT_BODY_LIMIT: usize = 64 * 1024;

/// Refuses a request without `Content-Type: application/json`: a cross-site form cannot
/// send one without a CORS preflight, so with `SameSite` cookies this is the CSRF
/// defence of every completion endpoint (also those that read no body).
pub(crate) fn require_json(headers: &HeaderMap) -> Result<(), Failure> {
    let is_json = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if is_json {
        Ok(())
    } else {
        Err(Failure::invalid_request(
            "Content-Type must be application/json",
        ))
    }
}

/// Reads a JSON body of at most `limit` bytes with `Content-Type: application/json`.
///
/// Parse errors are never echoed: serde's messages can quote the input (a code).
pub(crate) async fn read_json<T, B>(req: Request<B>, limit: usize) -> Result<(Parts, T), Failure>
where
    T: DeserializeOwned,
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    require_json(&parts.headers)?;
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Failure::new(ErrorKind::PayloadTooLarge));
    }
    let bytes: Bytes = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(Failure::new(ErrorKind::PayloadTooLarge))
        }
        Err(_) => return Err(Failure::invalid_request("the body could not be read")),
    };
    let value = serde_json::from_slice(&bytes).map_err(|e| {
        Failure::invalid_request(match e.classify() {
            serde_json::error::Category::Data => "a field is missing or has the wrong type",
            _ => "the body is not valid JSON",
        })
    })?;
    Ok((parts, value))
}

/// The bearer token of `Authorization`, if it is one.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let (scheme, token) = value.to_str().ok()?.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The value of cookie `name`, if sent exactly once.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut found = None;
    for header in headers.get_all(COOKIE) {
        let Ok(header) = header.to_str() else {
            continue;
        };
        for pair in header.split(';') {
            if let Some((k, v)) = pair.trim().split_once('=') {
                if k == name {
                    if found.is_some() {
                        return None;
                    }
                    found = Some(v.trim_matches('"'));
                }
            }
        }
    }
    found.filter(|v| !v.is_empty())
}
