//! The demo app as `support/demo_app.rs` wires it (included by the test crate as
//! `mod demo_app`, with what it needs, and `support/burst.rs` as `mod burst`) served on
//! `127.0.0.1:0` with a given store, on a [`ManualClock`]; it stops when dropped.
//! Requests go out raw, one connection each, so that a single request and a synchronized
//! burst take the same path.
//!
//! ```ignore
//! let server = DemoServer::start(store, 5, T0).await;
//! let login = server.post("/auth/login", &json!({…}), None).await;
//! let replies = server.burst(vec![server.request("/auth/mfa/verify", &body, None); 20]).await;
//! ```
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use serde_json::Value;
use tower_stepup::complete::{LogSender, MemoryFactors};
use tower_stepup::store::Store;
use tower_stepup::ManualClock;

use crate::burst::{self, RawResponse};
use crate::demo_app::{serve, Demo, Served};

/// The demo on its own port and clock.
pub struct DemoServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its clock.
    pub clock: ManualClock,
    /// Its users' factors.
    pub factors: Arc<MemoryFactors>,
    /// Its completion endpoints' configuration.
    pub completion: tower_stepup::Completion,
    /// Where its one-time codes go.
    pub sender: Arc<LogSender>,
    _served: Served,
}

impl DemoServer {
    /// Serves the demo with `store`, `max_attempts` and a clock at `now`.
    pub async fn start(store: Arc<dyn Store>, max_attempts: u32, now: u64) -> Self {
        let config = crate::demo_config::demo_config(max_attempts);
        Self::start_with(&config, store, now).await
    }

    /// Serves the demo with `config` and `store`, on a clock at `now`.
    pub async fn start_with(
        config: &crate::app::DemoConfig,
        store: Arc<dyn Store>,
        now: u64,
    ) -> Self {
        let demo = Demo::build(config, ManualClock::new(now), store);
        let served = serve(demo.router.clone(), "127.0.0.1:0").await;
        Self {
            addr: served.addr,
            clock: demo.clock,
            factors: demo.factors,
            completion: demo.completion,
            sender: demo.sender,
            _served: served,
        }
    }

    /// The server's time.
    pub fn now(&self) -> u64 {
        tower_stepup::Clock::now(&self.clock)
    }

    /// A raw JSON `POST` to this server, with `Authorization: Bearer` when given.
    pub fn request(&self, path: &str, body: &Value, bearer: Option<&str>) -> Vec<u8> {
        let authorization = bearer.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = authorization
            .iter()
            .map(|a| ("Authorization", a.as_str()))
            .collect();
        burst::post_json(path, &self.addr.to_string(), body, &headers)
    }

    /// One JSON `POST`, on its own connection.
    pub async fn post(&self, path: &str, body: &Value, bearer: Option<&str>) -> RawResponse {
        self.send(self.request(path, body, bearer)).await
    }

    /// One raw request, on its own connection.
    pub async fn send(&self, request: Vec<u8>) -> RawResponse {
        let mut replies = burst::burst(self.addr, vec![request]).await;
        replies.pop().expect("one reply")
    }

    /// `requests` as one synchronized burst (see `support/burst.rs`).
    pub async fn burst(&self, requests: Vec<Vec<u8>>) -> Vec<RawResponse> {
        burst::burst(self.addr, requests).await
    }
}
