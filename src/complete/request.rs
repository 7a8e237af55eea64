//! Reading requests: the JSON body within a size limit, read and checked once by the
//! endpoint before it dispatches. (Credentials are found by the one parser of the layer,
//! [`crate::layer::credential`].)

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::HeaderMap;
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

/// Reads a body of at most `limit` bytes, in this order: `Content-Type:
/// application/json` (`400`), a declared `Content-Length` within the limit (`413`,
/// before anything is read), the bytes themselves within the limit (`413`).
pub(crate) async fn read_body<B>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
) -> Result<Bytes, Failure>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    require_json(headers)?;
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Failure::new(ErrorKind::PayloadTooLarge));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(Failure::new(ErrorKind::PayloadTooLarge))
        }
        Err(_) => Err(Failure::invalid_request("the body could not be read")),
    }
}

/// The body read by [`read_body`] as the JSON of a `T`.
///
/// Parse errors are never echoed: serde's messages can quote the input (a code).
pub(crate) fn json<T: DeserializeOwned>(read: Result<Bytes, Failure>) -> Result<T, Failure> {
    serde_json::from_slice(&read?).map_err(|e| {
        Failure::invalid_request(match e.classify() {
            serde_json::error::Category::Data => "a field is missing or has the wrong type",
            _ => "the body is not valid JSON",
        })
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;
    use http_body_util::Full;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct CodeBody {
        #[allow(dead_code)]
        code: String,
    }

    fn headers(content_type: Option<&'static str>, length: Option<&'static str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = content_type {
            h.insert(CONTENT_TYPE, HeaderValue::from_static(v));
        }
        if let Some(v) = length {
            h.insert(CONTENT_LENGTH, HeaderValue::from_static(v));
        }
        h
    }

    async fn read(h: &HeaderMap, body: &'static str, limit: usize) -> Result<Bytes, Failure> {
        read_body(h, Full::new(Bytes::from_static(body.as_bytes())), limit).await
    }

    fn kind(r: Result<impl Sized, Failure>) -> Option<ErrorKind> {
        r.err().map(|f| f.kind)
    }

    #[tokio::test]
    async fn the_content_type_is_checked_first_then_the_length_then_the_json() {
        let ct = Some("application/json; charset=utf-8");
        let body = r#"{"code":"1"}"#;
        assert!(json::<CodeBody>(read(&headers(ct, None), body, 64).await).is_ok());
        // Not JSON, even with a declared length over the limit: 400.
        for other in [None, Some("text/plain"), Some("application/jsonx")] {
            let r = read(&headers(other, Some("1000000")), body, 64).await;
            assert_eq!(kind(r), Some(ErrorKind::InvalidRequest), "{other:?}");
        }
        // A declared length over the limit, whatever the body: 413.
        let r = read(&headers(ct, Some("65")), body, 64).await;
        assert_eq!(kind(r), Some(ErrorKind::PayloadTooLarge));
        // A body over the limit without a declared length: 413.
        let r = read(&headers(ct, None), body, 4).await;
        assert_eq!(kind(r), Some(ErrorKind::PayloadTooLarge));
        // Then the JSON.
        for bad in ["{", "[]", r#"{"code":1}"#, ""] {
            let r = json::<CodeBody>(read(&headers(ct, None), bad, 64).await);
            assert_eq!(kind(r), Some(ErrorKind::InvalidRequest), "{bad}");
        }
    }
}
