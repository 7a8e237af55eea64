//! The demo app as the tests wire it: `examples/axum_app/app.rs` (included by the test
//! crate as `mod app`) with the tests' configuration (`support/demo_config.rs` as
//! `mod demo_config`) on a [`ManualClock`], called in process
//! (`tower::ServiceExt::oneshot`, answers read as `support/reply.rs`'s `Reply`, included
//! as `mod reply`) or served on a loopback port and called over HTTP ([`Http`]).
//!
//! ```ignore
//! let demo = Demo::build(&demo_config::demo_config(5), ManualClock::new(T0), store);
//! demo.post("/auth/login", json!({…}), None).await.expect_ok();
//! let served = serve(demo.router.clone(), "127.0.0.1:0").await;
//! Http::to(&served).get("/api/me", Some(&access)).await.expect_ok();
//! ```
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use http::{Method, Request};
use serde_json::{json, Value};
use tower::ServiceExt;
use tower_stepup::complete::{LogSender, MemoryFactors};
use tower_stepup::factor::totp::TotpSecret;
use tower_stepup::store::{MemoryStore, Store};
use tower_stepup::{Issuer, ManualClock};

use crate::reply::Reply;

#[path = "served.rs"]
mod served;
#[allow(unused_imports)]
pub use served::{serve, serve_on, Served};

/// The demo, built on its own clock.
#[derive(Clone)]
pub struct Demo {
    /// The app.
    pub router: axum::Router,
    /// Its clock.
    pub clock: ManualClock,
    /// Its token issuer.
    pub issuer: Issuer,
    /// Its users' factors.
    pub factors: Arc<MemoryFactors>,
    /// Its completion endpoints' configuration.
    pub completion: tower_stepup::Completion,
    /// alice's TOTP secret.
    pub alice: TotpSecret,
    /// Its guard (e.g. to feed its revocations from a store).
    pub guard: tower_stepup::Guard,
    /// Where its one-time codes go.
    pub sender: Arc<LogSender>,
}

impl Demo {
    /// The demo with `config`, `clock` and `store`.
    pub fn build(
        config: &crate::app::DemoConfig,
        clock: ManualClock,
        store: Arc<dyn Store>,
    ) -> Self {
        let built = crate::app::build(config, clock.clone(), store).expect("build the demo");
        Demo {
            router: built.router,
            clock,
            issuer: built.issuer,
            factors: built.factors,
            completion: built.completion,
            alice: config.alice_totp_secret.clone(),
            guard: built.guard,
            sender: built.sender,
        }
    }

    /// The server's time.
    pub fn now(&self) -> u64 {
        tower_stepup::Clock::now(&self.clock)
    }

    /// One request, in process.
    pub async fn send(&self, req: Request<Body>) -> Reply {
        Reply::read(self.router.clone().oneshot(req).await.expect("infallible")).await
    }

    /// A JSON `POST`, with `Authorization: Bearer` when given.
    pub async fn post(&self, path: &str, body: Value, bearer: Option<&str>) -> Reply {
        let mut req = Request::post(path).header("content-type", "application/json");
        if let Some(token) = bearer {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        self.send(req.body(Body::from(body.to_string())).expect("a request"))
            .await
    }

    /// A `GET`, with `Authorization: Bearer` when given.
    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Reply {
        let mut req = Request::get(path);
        if let Some(token) = bearer {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        self.send(req.body(Body::empty()).expect("a request")).await
    }
}

/// The demo served for a browser: its pages at `base`, `http://localhost:<port>`
/// (browsers accept `Secure` cookies over plain http there, and WebAuthn wants a domain,
/// not an IP), its passkeys for that origin, on a [`MemoryStore`]. Its clock starts at
/// the real time (the pages show it), 5 s into a TOTP step so that codes are where a
/// test expects them, and then moves only when the test says.
pub struct Site {
    /// The demo.
    pub demo: Demo,
    /// Where its pages are.
    pub base: String,
    _served: Served,
}

/// Binds a loopback port, then builds `config`'s demo for that origin and serves it.
pub async fn site(mut config: crate::app::DemoConfig) -> Site {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the demo");
    let port = listener.local_addr().expect("the demo's address").port();
    let base = format!("http://localhost:{port}");
    config.webauthn_rp_id = "localhost".to_owned();
    config.webauthn_origin = base.clone();
    config.public_url = base.clone();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    let clock = ManualClock::new(now - now % 30 + 5);
    let demo = Demo::build(&config, clock, Arc::new(MemoryStore::new()));
    let served = serve_on(listener, demo.router.clone());
    Site {
        demo,
        base,
        _served: served,
    }
}

/// A reqwest client as the tests use one: no proxy, 30 s at most per request.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("a client")
}

/// A client of a demo served on a socket (or of a demo process): JSON requests, with
/// `Authorization: Bearer` when given, the answers read as `Reply`.
#[derive(Clone)]
pub struct Http {
    /// `http://host:port`.
    pub base: String,
    /// The client (see [`client`]).
    pub client: reqwest::Client,
}

impl Http {
    /// A client of the server at `base` (`http://host:port`).
    pub fn new(base: impl Into<String>) -> Self {
        Http {
            base: base.into(),
            client: client(),
        }
    }

    /// A client of `served`.
    pub fn to(served: &Served) -> Self {
        Http::new(format!("http://127.0.0.1:{}", served.addr.port()))
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// One request: a JSON body (as `application/json`) when given, then `headers`.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Reply {
        let mut req = self.client.request(method, self.url(path));
        if let Some(body) = body {
            req = req.json(body);
        }
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        Reply::sent(req).await
    }

    /// One request as an API client sends it: `Content-Type: application/json` (with
    /// `body`, if any; also without one, as a write needs), and the bearer token, if any.
    pub async fn api(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        bearer: Option<&str>,
    ) -> Reply {
        let mut req = self
            .client
            .request(method, self.url(path))
            .header("content-type", "application/json");
        if let Some(body) = body {
            req = req.body(body.to_string());
        }
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        Reply::sent(req).await
    }

    /// A JSON `POST`, with the bearer token when given.
    pub async fn post(&self, path: &str, body: &Value, bearer: Option<&str>) -> Reply {
        self.api(Method::POST, path, Some(body), bearer).await
    }

    /// A `GET`, with the bearer token when given.
    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Reply {
        let mut req = self.client.get(self.url(path));
        if let Some(token) = bearer {
            req = req.bearer_auth(token);
        }
        Reply::sent(req).await
    }

    /// The password login of the demo's `user` (whose password is `{user}-password`).
    pub async fn login(&self, user: &str) -> Reply {
        let body = json!({"username": user, "password": format!("{user}-password")});
        self.post("/auth/login", &body, None).await
    }
}
