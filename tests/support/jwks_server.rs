//! An identity provider's key endpoint on `127.0.0.1` (hyper, plain or TLS) whose
//! answers the test sets per path (status, body, `Cache-Control`, a delay before the
//! head, an endless body) and which records when each path was hit. Dropping it closes
//! the listener and every connection, as an IdP going down would.
//!
//! ```ignore
//! let server = JwksServer::start().await;
//! server.answer("/jwks", Answer::json(set).cache_control("max-age=60"));
//! let source = JwksSource::builder(server.url("/jwks")).algorithms(algs).build()?;
//! assert_eq!(server.hits("/jwks"), 1);
//! ```
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// What one path answers.
#[derive(Clone, Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
    pub cache_control: Option<String>,
    /// Waited before the response head is sent.
    pub delay: Duration,
    /// A body that never ends (whitespace, 16 KiB a frame), instead of `body`.
    pub endless: bool,
}

impl Answer {
    /// 200 with this JSON body.
    pub fn json(body: impl Into<Bytes>) -> Self {
        Self {
            status: 200,
            body: body.into(),
            cache_control: None,
            delay: Duration::ZERO,
            endless: false,
        }
    }

    /// This status, empty body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            ..Self::json(Bytes::new())
        }
    }

    /// 200 with a body that never ends.
    pub fn endless() -> Self {
        Self {
            endless: true,
            ..Self::json(Bytes::new())
        }
    }

    pub fn cache_control(mut self, value: &str) -> Self {
        self.cache_control = Some(value.to_owned());
        self
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// What the server shares with its connections.
#[derive(Default)]
struct Shared {
    answers: Mutex<HashMap<String, Answer>>,
    hits: Mutex<Vec<(String, Instant)>>,
}

/// A running server; dropping it closes everything.
pub struct JwksServer {
    addr: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
    tasks: Arc<Mutex<JoinSet<()>>>,
}

impl JwksServer {
    /// Plain HTTP on a free port.
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), None).await
    }

    /// Plain HTTP on `addr` (e.g. a port reserved while the "IdP" was down).
    pub async fn start_at(addr: SocketAddr) -> Self {
        Self::start_on(addr, None).await
    }

    /// HTTPS with this configuration, on a free port.
    pub async fn start_tls(config: ServerConfig) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), Some(config)).await
    }

    async fn start_on(addr: SocketAddr, tls: Option<ServerConfig>) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let tasks = Arc::new(Mutex::new(JoinSet::new()));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let acceptor = tls.map(|config| TlsAcceptor::from(Arc::new(config)));
        let accept = accept_loop(listener, acceptor, shared.clone(), tasks.clone());
        tasks.lock().unwrap().spawn(accept);
        Self {
            addr,
            scheme,
            shared,
            tasks,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http(s)://127.0.0.1:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    /// What `path` answers from now on (a path without an answer: 404).
    pub fn answer(&self, path: &str, answer: Answer) {
        let mut answers = self.shared.answers.lock().unwrap();
        answers.insert(path.to_owned(), answer);
    }

    /// How many requests `path` received.
    pub fn hits(&self, path: &str) -> usize {
        self.hit_times(path).len()
    }

    /// When `path` was hit, in order.
    pub fn hit_times(&self, path: &str) -> Vec<Instant> {
        let hits = self.shared.hits.lock().unwrap();
        hits.iter()
            .filter(|(p, _)| p == path)
            .map(|(_, t)| *t)
            .collect()
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.tasks.lock().unwrap().abort_all();
    }
}

/// A port that was free a moment ago, for a server started later.
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shared: Arc<Shared>,
    tasks: Arc<Mutex<JoinSet<()>>>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let connection = serve(stream, tls.clone(), shared.clone());
        tasks.lock().unwrap().spawn(connection);
    }
}

/// Serves one connection (after the TLS handshake, if any; a failed one just closes).
async fn serve(stream: TcpStream, tls: Option<TlsAcceptor>, shared: Arc<Shared>) {
    let service = hyper::service::service_fn(move |request| {
        let shared = shared.clone();
        async move { Ok::<_, Infallible>(respond(&shared, request).await) }
    });
    let http = hyper::server::conn::http1::Builder::new();
    let _ = match tls {
        None => http.serve_connection(TokioIo::new(stream), service).await,
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(stream) => http.serve_connection(TokioIo::new(stream), service).await,
            Err(_) => return,
        },
    };
}

async fn respond(
    shared: &Shared,
    request: Request<Incoming>,
) -> Response<BoxBody<Bytes, Infallible>> {
    let path = request.uri().path().to_owned();
    shared
        .hits
        .lock()
        .unwrap()
        .push((path.clone(), Instant::now()));
    let answer = shared.answers.lock().unwrap().get(&path).cloned();
    let answer = answer.unwrap_or_else(|| Answer::status(404));
    tokio::time::sleep(answer.delay).await;
    let mut response = Response::builder().status(answer.status);
    if let Some(value) = &answer.cache_control {
        response = response.header("cache-control", value);
    }
    let body = match answer.endless {
        true => Endless.boxed(),
        false => Full::new(answer.body).boxed(),
    };
    response.body(body).unwrap()
}

/// A body that never ends: JSON whitespace, 16 KiB a frame.
struct Endless;

impl Body for Endless {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        static SPACES: [u8; 16 * 1024] = [b' '; 16 * 1024];
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(&SPACES)))))
    }
}

/// A test CA (rcgen) and a server configuration whose certificate it signed, for
/// `127.0.0.1` and `localhost`: the CA's certificate is what a client must trust.
pub fn test_tls() -> (ServerConfig, CertificateDer<'static>) {
    let (ca, leaf, key) = crate::test_ca::ca_and_leaf();
    let config = ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.into()], PrivateKeyDer::Pkcs8(key.into()))
        .unwrap();
    (config, ca.into())
}

/// The server's crypto provider, by the crate's signature backend.
fn provider() -> rustls::crypto::CryptoProvider {
    #[cfg(feature = "aws-lc-rs")]
    return rustls::crypto::aws_lc_rs::default_provider();
    #[cfg(not(feature = "aws-lc-rs"))]
    #[allow(deprecated)]
    return rustls::crypto::ring::default_provider();
}
