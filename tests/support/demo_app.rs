//! The demo app as the tests wire it: `examples/axum_app/app.rs` (included by the test
//! crate as `mod app`) with the tests' configuration (`support/demo_config.rs` as
//! `mod demo_config`) on a [`ManualClock`], called in process
//! (`tower::ServiceExt::oneshot`, answers read as `support/reply.rs`'s `Reply`, included
//! as `mod reply`) or served on a loopback port.
//!
//! ```ignore
//! let demo = Demo::build(&demo_config::demo_config(5), ManualClock::new(T0), store);
//! demo.post("/auth/login", json!({…}), None).await.expect_ok();
//! let served = serve(demo.router.clone(), "127.0.0.1:0").await;
//! ```
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use http::Request;
use serde_json::Value;
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
