//! One answer as the tests read it, whatever sent the request (reqwest over a socket, or
//! a router or service called in process): status, headers, the raw body and the body
//! parsed as JSON (`Value::Null` when it is not JSON), with the assertions the suites
//! share.
//!
//! ```ignore
//! let r = Reply::read(router.oneshot(req).await.unwrap()).await;
//! r.expect(401, "invalid_token");
//! let token = r.expect_ok().str("access_token");
//! ```
#![allow(dead_code)]

use http::header::{CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, SET_COOKIE, WWW_AUTHENTICATE};
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;

/// What came back.
#[derive(Debug)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// Every header.
    pub headers: HeaderMap,
    /// The body as sent.
    pub raw: Vec<u8>,
    /// The body as JSON, `Value::Null` if it is not JSON.
    pub body: Value,
}

impl Reply {
    /// An answer from its parts.
    pub fn new(status: StatusCode, headers: HeaderMap, raw: Vec<u8>) -> Self {
        let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            raw,
            body,
        }
    }

    /// Reads a whole `http` response (a router's or a service's).
    pub async fn read<B>(res: http::Response<B>) -> Self
    where
        B: http_body::Body,
        B::Error: std::fmt::Debug,
    {
        let (parts, body) = res.into_parts();
        let raw = body.collect().await.expect("read the body").to_bytes();
        Reply::new(parts.status, parts.headers, raw.to_vec())
    }

    /// Reads a whole reqwest response.
    pub async fn from_reqwest(res: reqwest::Response) -> Self {
        let status = res.status();
        let headers = res.headers().clone();
        let raw = res.bytes().await.expect("read the body").to_vec();
        Reply::new(status, headers, raw)
    }

    /// Sends a reqwest request and reads the whole answer; panics on a transport error.
    pub async fn sent(req: reqwest::RequestBuilder) -> Self {
        Reply::from_reqwest(req.send().await.expect("an answer")).await
    }

    /// The body's `error`, or `<no error field>`.
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("<no error field>")
    }

    /// The body's string `field`; panics if there is none.
    #[track_caller]
    pub fn str(&self, field: &str) -> String {
        self.body[field]
            .as_str()
            .unwrap_or_else(|| panic!("no string `{field}` in {}", self.body))
            .to_owned()
    }

    /// The header `name` as text, if present (and text).
    pub fn header(&self, name: impl http::header::AsHeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `WWW-Authenticate`, or `<missing>`.
    pub fn www_authenticate(&self) -> &str {
        self.header(WWW_AUTHENTICATE).unwrap_or("<missing>")
    }

    /// Every `WWW-Authenticate` value, in order (a DPoP guard may send two).
    pub fn challenges(&self) -> Vec<&str> {
        self.headers
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .map(|v| v.to_str().expect("a challenge is text"))
            .collect()
    }

    /// `Retry-After`, in seconds, if present.
    #[track_caller]
    pub fn retry_after(&self) -> Option<u64> {
        self.header(RETRY_AFTER)
            .map(|v| v.parse().expect("Retry-After in seconds"))
    }

    /// `200 OK`.
    #[track_caller]
    pub fn expect_ok(&self) -> &Self {
        assert_eq!(self.status, StatusCode::OK, "body: {}", self.body);
        self
    }

    /// A password login that asks for the second factor (`200`, `status`
    /// `mfa_required`): its partial token.
    #[track_caller]
    pub fn expect_partial(&self) -> String {
        self.expect_ok();
        assert_eq!(self.body["status"], "mfa_required", "{}", self.body);
        self.str("partial_token")
    }

    /// A refusal: `status`, the body's `error`, and a JSON body.
    #[track_caller]
    pub fn expect(&self, status: u16, error: &str) -> &Self {
        assert_eq!(
            (self.status.as_u16(), self.error()),
            (status, error),
            "body: {}",
            self.body
        );
        assert_eq!(
            self.header(CONTENT_TYPE),
            Some("application/json"),
            "errors are JSON"
        );
        self
    }

    /// `200 OK`, naming `what` was asked if not.
    #[track_caller]
    pub fn expect_ok_for(&self, what: &str) -> &Self {
        assert_eq!(self.status, StatusCode::OK, "{what}: {}", self.body);
        self
    }

    /// A refusal as [`Reply::expect`], naming `what` was asked if not.
    #[track_caller]
    pub fn expect_for(&self, status: u16, error: &str, what: &str) -> &Self {
        assert_eq!(
            (self.status.as_u16(), self.error()),
            (status, error),
            "{what}: {}",
            self.body
        );
        assert_eq!(
            self.header(CONTENT_TYPE),
            Some("application/json"),
            "{what}: errors are JSON"
        );
        self
    }

    /// A refusal as [`Reply::expect`], and not to be cached (`Cache-Control: no-store`).
    #[track_caller]
    pub fn expect_uncached(&self, status: u16, error: &str) -> &Self {
        self.expect(status, error);
        assert_eq!(self.header(CACHE_CONTROL), Some("no-store"));
        self
    }

    /// Every `Set-Cookie`.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("a text cookie").to_owned())
            .collect()
    }

    /// The value of the cookie `name` this answer sets; panics if it sets none.
    #[track_caller]
    pub fn cookie(&self, name: &str) -> String {
        let prefix = format!("{name}=");
        let set = self
            .set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no {name} cookie in {:?}", self.set_cookies()));
        set[prefix.len()..]
            .split(';')
            .next()
            .unwrap_or_default()
            .to_owned()
    }
}
