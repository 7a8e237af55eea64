//! Synchronized bursts of raw HTTP/1.1 requests, to provoke the races that sequential
//! requests never hit (two uses of one code, two rotations of one refresh token).
//!
//! Each request gets its own connection and is sent but its last byte; only when every
//! connection has its request but one byte in flight do the last bytes go out, one after
//! the other in a tight loop (microseconds apart), so the server sees all the requests
//! complete at once. Then every response is read, in parallel.
//!
//! ```ignore
//! let host = addr.to_string();
//! let requests = (0..50).map(|_| post_json("/auth/verify", &host, &body, &[])).collect();
//! let responses = burst(addr, requests).await;
//! assert_eq!(responses.iter().filter(|r| r.status == 200).count(), 1);
//! ```
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// How long reading one response may take before the burst fails.
const TIMEOUT: Duration = Duration::from_secs(30);

/// An HTTP/1.1 response as read off the wire.
#[derive(Debug, Clone)]
pub struct RawResponse {
    /// The status code.
    pub status: u16,
    /// The headers in order, names as sent, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The value of the first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON; panics, showing the body, when it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Requests sent but their last byte, one connection each: [`Primed::fire`] completes them.
pub struct Primed {
    /// Each connection with the last byte of its request.
    held: Vec<(TcpStream, u8)>,
}

/// Sends `requests` to `addr` as one synchronized burst and returns the responses in the
/// order of `requests`: [`prime`], then [`Primed::fire`].
pub async fn burst(addr: SocketAddr, requests: Vec<Vec<u8>>) -> Vec<RawResponse> {
    prime(addr, requests).await.fire().await
}

/// Opens one connection per request and sends each request but its last byte; returns
/// once every connection has done so.
pub async fn prime(addr: SocketAddr, requests: Vec<Vec<u8>>) -> Primed {
    let mut held = Vec::with_capacity(requests.len());
    for mut request in requests {
        let last = request.pop().expect("an empty request cannot be held back");
        let mut stream = TcpStream::connect(addr).await.expect("connect for a burst");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        stream
            .write_all(&request)
            .await
            .expect("send all but the last byte");
        held.push((stream, last));
    }
    Primed { held }
}

impl Primed {
    /// Sends every last byte in one tight loop, then reads every response (in parallel);
    /// the responses come in the order of the requests.
    pub async fn fire(self) -> Vec<RawResponse> {
        let mut streams = Vec::with_capacity(self.held.len());
        for (mut stream, last) in self.held {
            stream.write_all(&[last]).await.expect("send the last byte");
            streams.push(stream);
        }
        read_all(streams).await
    }
}

/// Reads one response from each stream in parallel, in the order of `streams`.
async fn read_all(streams: Vec<TcpStream>) -> Vec<RawResponse> {
    let mut readers = JoinSet::new();
    for (i, stream) in streams.into_iter().enumerate() {
        readers.spawn(async move {
            let mut stream = BufReader::new(stream);
            let response = tokio::time::timeout(TIMEOUT, read_response(&mut stream)).await;
            (
                i,
                response.unwrap_or_else(|_| panic!("no response {i} within {TIMEOUT:?}")),
            )
        });
    }
    let mut responses: Vec<_> = readers.join_all().await;
    responses.sort_by_key(|(i, _)| *i);
    responses.into_iter().map(|(_, r)| r).collect()
}

/// Reads one HTTP/1.1 response: status line, headers, and a body framed by
/// `Transfer-Encoding: chunked`, `Content-Length`, or the end of the stream.
pub async fn read_response<R: AsyncBufRead + Unpin>(r: &mut R) -> RawResponse {
    let status_line = read_line(r).await;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP status line: {status_line:?}"));
    let headers = read_headers(r).await;
    let mut response = RawResponse {
        status,
        headers,
        body: Vec::new(),
    };
    response.body = read_body(r, &response).await;
    response
}

/// Header lines up to the empty line.
async fn read_headers<R: AsyncBufRead + Unpin>(r: &mut R) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    loop {
        let line = read_line(r).await;
        if line.is_empty() {
            return headers;
        }
        let (name, value) = line
            .split_once(':')
            .unwrap_or_else(|| panic!("not a header line: {line:?}"));
        headers.push((name.to_owned(), value.trim().to_owned()));
    }
}

/// The body as the headers frame it.
async fn read_body<R: AsyncBufRead + Unpin>(r: &mut R, head: &RawResponse) -> Vec<u8> {
    let chunked = head
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let length = head.header("content-length").map(|l| {
        l.parse::<usize>()
            .unwrap_or_else(|_| panic!("bad Content-Length {l:?}"))
    });
    match (chunked, length) {
        (true, _) => read_chunked(r).await,
        (false, Some(n)) => read_exact(r, n).await,
        (false, None) => {
            let mut body = Vec::new();
            r.read_to_end(&mut body).await.expect("read body to close");
            body
        }
    }
}

/// A chunked body, trailers skipped.
async fn read_chunked<R: AsyncBufRead + Unpin>(r: &mut R) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r).await;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
        if size == 0 {
            while !read_line(r).await.is_empty() {}
            return body;
        }
        body.extend(read_exact(r, size).await);
        assert!(read_line(r).await.is_empty(), "chunk not followed by CRLF");
    }
}

/// Exactly `n` bytes.
async fn read_exact<R: AsyncBufRead + Unpin>(r: &mut R, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf).await.expect("a truncated body");
    buf
}

/// One line without its CRLF; panics at the end of the stream.
async fn read_line<R: AsyncBufRead + Unpin>(r: &mut R) -> String {
    let mut line = String::new();
    let n = r.read_line(&mut line).await.expect("read a line");
    assert!(
        n > 0,
        "the connection closed before the response was complete"
    );
    line.trim_end_matches(['\r', '\n']).to_owned()
}

/// A raw `POST` of `body` as JSON, with `Content-Length`, `Connection: close` and
/// `extra_headers`.
pub fn post_json(
    path: &str,
    host: &str,
    body: &serde_json::Value,
    extra_headers: &[(&str, &str)],
) -> Vec<u8> {
    let body = serde_json::to_vec(body).expect("serialize the body");
    let mut headers = vec![("Content-Type", "application/json")];
    headers.extend_from_slice(extra_headers);
    raw_request("POST", path, host, &headers, &body)
}

/// A raw `GET` with `Connection: close` and `extra_headers`.
pub fn get(path: &str, host: &str, extra_headers: &[(&str, &str)]) -> Vec<u8> {
    raw_request("GET", path, host, extra_headers, &[])
}

/// A raw HTTP/1.1 request: `Host`, `headers`, `Content-Length` (when there is a body or
/// the method is not `GET`), `Connection: close`, then `body`.
pub fn raw_request(
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("Connection: close\r\n\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    request
}
