//! Login throttling (issue 14, finding 5; DESIGN §8.2), against the demo's router: the
//! attempt is reserved before the password is hashed, per (account, client) and per
//! account; 429 `too_many_attempts` with `Retry-After` even for the right password;
//! canonical usernames; unknown names counted and answered like known ones; the client
//! from the socket (IPv6 per /64), `X-Forwarded-For` only behind trusted proxies.
//!
//! Requests carry axum's `ConnectInfo`, as `into_make_service_with_connect_info` sets it,
//! so the demo's own middleware turns it into the crate's `PeerAddr`.

#[allow(dead_code)]
#[path = "../examples/axum_app/app.rs"]
mod app;
#[path = "support/demo_app.rs"]
mod demo_app;
#[path = "support/demo_config.rs"]
mod demo_config;
#[path = "support/reply.rs"]
mod reply;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{Request, StatusCode};
use serde_json::json;
use tower_stepup::complete::TrustedProxies;
use tower_stepup::store::{MemoryStore, Store};
use tower_stepup::ManualClock;

use demo_app::Demo;
use reply::Reply;

const T0: u64 = 1_800_000_000;

/// Signed in: tokens, or (alice) a partial token.
trait SignedIn {
    fn signed_in(&self);
}

impl SignedIn for Reply {
    #[track_caller]
    fn signed_in(&self) {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        assert!(
            self.body.get("access_token").is_some() || self.body.get("partial_token").is_some(),
            "{}",
            self.body
        );
    }
}

fn demo_with(config: app::DemoConfig, store: Arc<dyn Store>) -> Demo {
    Demo::build(&config, ManualClock::new(T0), store)
}

fn demo() -> Demo {
    demo_with(demo_config::demo_config(5), Arc::new(MemoryStore::new()))
}

impl Demo {
    /// `POST /auth/login` from socket peer `peer`, with extra headers.
    async fn login_from(&self, peer: &str, user: &str, password: &str, xff: &[&str]) -> Reply {
        let mut req = Request::post("/auth/login").header("content-type", "application/json");
        for hop in xff {
            req = req.header("x-forwarded-for", *hop);
        }
        let mut req = req
            .body(Body::from(
                json!({"username": user, "password": password}).to_string(),
            ))
            .unwrap();
        let peer: SocketAddr = peer.parse().unwrap();
        req.extensions_mut().insert(ConnectInfo(peer));
        self.send(req).await
    }

    async fn login(&self, peer: &str, user: &str, password: &str) -> Reply {
        self.login_from(peer, user, password, &[]).await
    }

    /// `n` wrong passwords for `user` from `peer`, each answered 401.
    async fn fail(&self, peer: &str, user: &str, n: usize) {
        for _ in 0..n {
            self.login(peer, user, "not-the-password")
                .await
                .expect(401, "invalid_credentials");
        }
    }
}

const A: &str = "192.0.2.10:40000";
const B: &str = "198.51.100.7:40000";

#[tokio::test]
async fn ten_failures_lock_the_account_out_for_that_client_even_for_the_right_password() {
    let d = demo();
    d.fail(A, "bob", 10).await;
    let r = d.login(A, "bob", "bob-password").await;
    r.expect(429, "too_many_attempts");
    assert_eq!(r.retry_after(), Some(15 * 60));
    assert_eq!(r.body["retry_after"], 15 * 60);
    // Another client is not locked out by this one.
    d.login(B, "bob", "bob-password").await.signed_in();
    // Nor is another account from this client.
    d.login(A, "alice", "alice-password").await.signed_in();
    // The lockout ends after 15 minutes.
    d.clock.advance(15 * 60 - 1);
    d.login(A, "bob", "bob-password")
        .await
        .expect(429, "too_many_attempts");
    d.clock.advance(1);
    d.login(A, "bob", "bob-password").await.signed_in();
}

#[tokio::test]
async fn a_success_clears_the_count() {
    let d = demo();
    d.fail(A, "bob", 9).await;
    d.login(A, "bob", "bob-password").await.signed_in();
    d.fail(A, "bob", 9).await;
    d.login(A, "bob", "bob-password").await.signed_in();
}

#[tokio::test]
async fn the_account_wide_limit_bounds_guessing_from_many_clients() {
    let mut config = demo_config::demo_config(5);
    config.login_account_max_failures = 30;
    let d = demo_with(config, Arc::new(MemoryStore::new()));
    // 30 failures from three clients (10 each, at their own limit)...
    for peer in ["192.0.2.1:1", "192.0.2.2:1", "192.0.2.3:1"] {
        d.fail(peer, "bob", 10).await;
    }
    // ...lock bob out everywhere, for an hour, right password or not.
    let r = d.login("192.0.2.4:1", "bob", "bob-password").await;
    r.expect(429, "too_many_attempts");
    assert_eq!(r.retry_after(), Some(3600));
    d.login("192.0.2.4:1", "alice", "alice-password")
        .await
        .signed_in();
    d.clock.advance(3600);
    d.login("192.0.2.4:1", "bob", "bob-password")
        .await
        .signed_in();
}

#[tokio::test]
async fn unknown_names_are_counted_and_refused_like_known_ones() {
    let d = demo();
    d.fail(A, "bob", 10).await;
    d.fail(A, "nobody", 10).await;
    let known = d.login(A, "bob", "x").await;
    let unknown = d.login(A, "nobody", "x").await;
    known.expect(429, "too_many_attempts");
    assert_eq!(
        (known.status, known.retry_after(), &known.raw),
        (unknown.status, unknown.retry_after(), &unknown.raw),
        "byte-identical refusals"
    );
}

#[tokio::test]
async fn usernames_are_canonical_for_sign_in_and_for_counting() {
    let d = demo();
    // Case, surrounding space and full-width letters name the same account.
    d.login(A, " BOB ", "bob-password").await.signed_in();
    d.login(A, "ｂｏｂ", "bob-password").await.signed_in();
    d.fail(A, "Bob", 4).await;
    d.fail(A, "ＢＯＢ", 3).await;
    d.fail(A, "  bob", 3).await;
    d.login(A, "bob", "bob-password")
        .await
        .expect(429, "too_many_attempts");
}

#[tokio::test]
async fn ipv6_clients_count_per_slash_64() {
    let d = demo();
    // Five addresses of one /64: one client.
    for i in 1..=10 {
        let peer = format!("[2001:db8:1:2::{:x}]:443", i % 5 + 1);
        d.login(&peer, "bob", "wrong")
            .await
            .expect(401, "invalid_credentials");
    }
    d.login("[2001:db8:1:2:ffff::1]:443", "bob", "bob-password")
        .await
        .expect(429, "too_many_attempts");
    // Another /64 is another client.
    d.login("[2001:db8:1:3::1]:443", "bob", "bob-password")
        .await
        .signed_in();
}

#[tokio::test]
async fn x_forwarded_for_is_ignored_from_an_untrusted_peer() {
    let d = demo();
    // Rotating spoofed addresses change nothing: the socket's peer is the client.
    for i in 0..10 {
        let spoofed = format!("203.0.113.{i}");
        d.login_from(A, "bob", "wrong", &[&spoofed])
            .await
            .expect(401, "invalid_credentials");
    }
    d.login_from(A, "bob", "bob-password", &["203.0.113.99"])
        .await
        .expect(429, "too_many_attempts");
}

#[tokio::test]
async fn behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client() {
    let mut config = demo_config::demo_config(5);
    config.trusted_proxies = TrustedProxies::parse("10.0.0.0/8, 192.0.2.254").unwrap();
    let d = demo_with(config, Arc::new(MemoryStore::new()));
    let proxy = "10.1.2.3:8080";
    // The client forged a left-hand hop; the proxies appended the real client and
    // themselves.
    for i in 0..10 {
        let forged = format!("198.18.0.{i}, 203.0.113.5, 192.0.2.254");
        d.login_from(proxy, "bob", "wrong", &[&forged])
            .await
            .expect(401, "invalid_credentials");
    }
    d.login_from(proxy, "bob", "bob-password", &["203.0.113.5"])
        .await
        .expect(429, "too_many_attempts");
    // Another client behind the same proxy is another client.
    d.login_from(proxy, "bob", "bob-password", &["203.0.113.6"])
        .await
        .signed_in();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_guesses_check_at_most_the_limit_of_passwords() {
    let d = Arc::new(demo());
    let barrier = Arc::new(tokio::sync::Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (d, barrier) = (d.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                d.login(A, "bob", &format!("guess-{i}")).await
            })
        })
        .collect();
    let mut checked = 0;
    for task in tasks {
        let r = task.await.unwrap();
        match r.status.as_u16() {
            401 => checked += 1,
            429 => assert!(r.retry_after().is_some(), "{r:?}"),
            _ => panic!("{r:?}"),
        }
    }
    // A wrong password is answered 401 only after it was checked: at most 10 were.
    assert!(checked <= 10, "{checked} passwords checked");
    assert!(checked >= 1);
    d.login(A, "bob", "bob-password")
        .await
        .expect(429, "too_many_attempts");
}
