//! The source with a fetcher double (no sockets): configuration, failure kinds, the
//! task's end. The real-socket tests are in tests/jwks_source.rs.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use serde_json::json;

use super::*;
use crate::error::ConfigError;
use crate::token::KeySource;
use crate::Algorithm;

const ED: &[u8] = include_bytes!("../../tests/keys/ed_private.pem");

/// What the double answers.
#[derive(Clone)]
enum Reply {
    Body(Bytes),
    Status(u16),
    Error(JwksError),
    Io,
}

/// A fetcher double: answers the current reply and counts the requests.
#[derive(Clone)]
struct Double {
    reply: Arc<Mutex<Reply>>,
    hits: Arc<AtomicUsize>,
}

impl Double {
    fn new(reply: Reply) -> Self {
        Self {
            reply: Arc::new(Mutex::new(reply)),
            hits: Arc::default(),
        }
    }

    fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    fn service(
        &self,
    ) -> impl tower_service::Service<
        Request<()>,
        Response = Response<Bytes>,
        Error = BoxError,
        Future = impl Send + 'static,
    > + Clone
           + Send
           + 'static {
        let double = self.clone();
        tower::service_fn(move |_request: Request<()>| {
            double.hits.fetch_add(1, Ordering::SeqCst);
            let reply = double.reply.lock().unwrap().clone();
            async move {
                match reply {
                    Reply::Body(body) => Ok(Response::new(body)),
                    Reply::Status(status) => Ok(Response::builder()
                        .status(status)
                        .body(Bytes::new())
                        .unwrap()),
                    Reply::Error(error) => Err(BoxError::from(error)),
                    Reply::Io => Err(BoxError::from(std::io::Error::other("reset"))),
                }
            }
        })
    }
}

fn jwks(kid: &str) -> Reply {
    let jwk = crate::SigningKey::ed_pem(kid, ED)
        .unwrap()
        .public_jwk()
        .unwrap();
    Reply::Body(
        serde_json::to_vec(&json!({ "keys": [jwk] }))
            .unwrap()
            .into(),
    )
}

fn source(double: &Double) -> JwksSourceBuilder {
    JwksSource::builder("https://idp.test/jwks")
        .algorithms([Algorithm::EdDSA])
        .unknown_kid_throttle(Duration::ZERO)
        .fetcher(double.service())
}

/// Waits (at most 5 s) until `n` fetches have finished.
async fn fetched(source: &JwksSource, n: u64) {
    let mut progress = source.state.progress.subscribe();
    let done = progress.wait_for(|p| p.finished >= n);
    tokio::time::timeout(Duration::from_secs(5), done)
        .await
        .expect("fetched in time")
        .unwrap();
}

fn kids(source: &JwksSource) -> Vec<String> {
    let keys = source.shared_keys().keys();
    keys.keys().iter().map(|k| k.kid().to_owned()).collect()
}

#[test]
fn a_source_needs_a_runtime() {
    let double = Double::new(jwks("k1"));
    let error = source(&double).build().unwrap_err();
    assert!(
        matches!(error, ConfigError::Missing(what) if what.contains("tokio runtime")),
        "{error}"
    );
    assert_eq!(double.hits.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn bad_configurations_are_refused_at_build() {
    let double = Double::new(jwks("k1"));
    let setting = |result: Result<JwksSource, ConfigError>| match result {
        Err(ConfigError::Invalid { setting, .. }) => setting,
        Err(ConfigError::Missing(what)) => what,
        other => panic!("{other:?}"),
    };
    let algs = [Algorithm::EdDSA];
    let build = |b: JwksSourceBuilder| setting(b.algorithms(algs).build());
    assert_eq!(
        setting(JwksSource::builder("https://idp.test/jwks").build()),
        "algorithm allow-list"
    );
    assert_eq!(
        build(JwksSource::builder("http://idp.test/jwks")),
        "jwks url"
    );
    assert_eq!(build(JwksSource::builder("idp.test/jwks")), "jwks url");
    assert_eq!(build(JwksSource::discover("http://idp.test")), "issuer");
    let bounds = |min, max| JwksSource::builder("https://idp.test/jwks").refresh_bounds(min, max);
    assert_eq!(
        build(bounds(Duration::from_secs(2), Duration::from_secs(1))),
        "refresh_bounds"
    );
    assert_eq!(
        build(bounds(Duration::ZERO, Duration::from_secs(1))),
        "refresh_bounds"
    );
    let no_time = JwksSource::builder("https://idp.test/jwks").timeout(Duration::ZERO);
    assert_eq!(build(no_time), "timeout");
    // Plain HTTP to another host only when chosen; loopback always.
    for allowed in [
        JwksSource::builder("http://idp.test/jwks").allow_http(true),
        JwksSource::discover("http://idp.test").allow_http(true),
        JwksSource::builder("http://127.0.0.1:1/jwks"),
        JwksSource::discover("http://localhost:1/"),
    ] {
        allowed
            .algorithms(algs)
            .fetcher(double.service())
            .build()
            .unwrap();
    }
}

#[tokio::test]
async fn the_task_ends_when_the_last_handle_is_dropped() {
    let double = Double::new(jwks("k1"));
    // The default refresh period (10 min): the task must not sleep through it.
    let (source, task) = source(&double).start().unwrap();
    source.wait_loaded(Duration::from_secs(5)).await.unwrap();
    let verifier_copy = source.clone();
    drop(source);
    assert!(!task.is_finished(), "a handle is left");
    drop(verifier_copy);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the task ended")
        .unwrap();
    assert_eq!(double.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_failed_fetch_keeps_the_last_keys_and_its_kind() {
    let double = Double::new(jwks("k1"));
    let source = source(&double).build().unwrap();
    source.wait_loaded(Duration::from_secs(5)).await.unwrap();
    for (reply, kind) in [
        (Reply::Status(404), JwksError::Status(404)),
        (Reply::Status(302), JwksError::Status(302)),
        (Reply::Error(JwksError::TooLarge), JwksError::TooLarge),
        (Reply::Io, JwksError::Network),
        (Reply::Body(Bytes::from_static(b"<html>")), JwksError::Json),
        (
            Reply::Body(Bytes::from_static(
                br#"{"keys":[{"kty":"oct","kid":"s","k":"AAAA"}]}"#,
            )),
            JwksError::NoUsableKey,
        ),
    ] {
        double.set(reply);
        let failures = source.stats().failures;
        source.unknown_kid(Some("k2")).expect("not throttled").await;
        let stats = source.stats();
        assert_eq!(stats.failures, failures + 1, "{kind:?}");
        assert_eq!(stats.last_error, Some(kind));
        assert_eq!(kids(&source), ["k1"], "stale-if-error after {kind:?}");
        assert_eq!(stats.keys_loaded, 1);
    }
    double.set(jwks("k2"));
    source.unknown_kid(Some("k2")).unwrap().await;
    assert_eq!(kids(&source), ["k2"], "k1 removed, k2 in");
    let stats = source.stats();
    assert_eq!((stats.fetches, stats.failures), (8, 6));
    assert!(stats.last_success.is_some());
}

#[tokio::test]
async fn wait_loaded_reports_why_there_are_no_keys() {
    let double = Double::new(Reply::Status(503));
    let source = source(&double)
        .refresh_bounds(Duration::from_secs(60), Duration::from_secs(60))
        .build()
        .unwrap();
    fetched(&source, 1).await;
    assert_eq!(
        source.wait_loaded(Duration::from_millis(1)).await,
        Err(JwksError::Status(503))
    );
    assert!(kids(&source).is_empty());
}
