//! `RedisStore` over `rediss://` (feature `redis-tls`) against a real `redis-server`
//! that speaks TLS only, with a certificate from a test CA (rcgen) and an ACL user
//! (the default user is off): the whole store contract over TLS as that user, then the
//! refusals (wrong password, no credentials, an untrusted server, bad roots), none of
//! which may quote the password, and the crypto provider the connection leaves behind.

#[path = "support/redis_server.rs"]
mod redis_server;
mod store_contract;
#[path = "support/test_ca.rs"]
mod test_ca;

use std::sync::OnceLock;
use std::time::Duration;

use redis_server::RedisServer;
use store_contract::T0;
use test_ca::TestCa;
use tower_stepup::store::{RedisStore, Store, StoreError};

const USER: &str = "alice";
const PASSWORD: &str = "pw-Zq8rT4";

/// The TLS server of this test process and its CA, started on first use.
fn tls_server() -> &'static (RedisServer, TestCa) {
    static SERVER: OnceLock<(RedisServer, TestCa)> = OnceLock::new();
    SERVER.get_or_init(|| {
        let ca = TestCa::new();
        let acl = format!(">{PASSWORD}");
        let server = RedisServer::start_tls(
            ca.dir(),
            &[
                "--user", USER, "on", &acl, "~*", "&*", "+@all", "--user", "default", "off",
            ],
        );
        (server, ca)
    })
}

/// `rediss://` with `credentials` (`user:password@`, or empty) to the TLS server.
fn url(credentials: &str) -> String {
    format!("rediss://{credentials}127.0.0.1:{}", tls_server().0.port())
}

/// A store that trusts the test CA, as the ACL user.
async fn trusted_store() -> RedisStore {
    RedisStore::builder()
        .root_certificates(tls_server().1.ca_pem.clone())
        .connect(&url(&format!("{USER}:{PASSWORD}@")))
        .await
        .expect("connect over TLS with the test CA and the ACL user")
}

contract_tests!(trusted_store);

/// Connects with `builder` to `url` and expects a refusal within a bound: its texts.
async fn refused(builder: tower_stepup::store::RedisStoreBuilder, url: &str) -> Vec<String> {
    let connecting = builder.timeout(Duration::from_millis(800)).connect(url);
    let result = tokio::time::timeout(Duration::from_secs(5), connecting)
        .await
        .expect("a refusal within 5 s");
    let e = result.expect_err("the connection must be refused");
    assert!(
        matches!(e, StoreError::Unavailable(_) | StoreError::Timeout),
        "{e:?}"
    );
    eprintln!("refused: {e:?}");
    vec![e.to_string(), format!("{e:?}")]
}

/// Asserts that no text quotes the password (nor the URL that holds it).
fn assert_no_password(texts: &[String], password: &str) {
    for text in texts {
        assert!(!text.contains(password), "{text:?} quotes the password");
        assert!(!text.contains("rediss://"), "{text:?} quotes the URL");
    }
}

fn with_ca() -> tower_stepup::store::RedisStoreBuilder {
    RedisStore::builder().root_certificates(tls_server().1.ca_pem.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_acl_user_over_tls_reads_what_it_wrote() {
    let store = trusted_store().await;
    let key = format!("tls-{}", std::process::id());
    assert_eq!(store.consume(&key, T0 + 60, T0).await, Ok(true));
    assert_eq!(store.consume(&key, T0 + 60, T0).await, Ok(false));
    // A second connection sees the same state: both reached the same server.
    let other = trusted_store().await;
    assert_eq!(other.is_consumed(&key, T0).await, Ok(true));
    let debug = format!("{store:?}");
    assert_no_password(&[debug], PASSWORD);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_password_is_a_clean_error_that_does_not_quote_it() {
    let wrong = "wrong-Kx93pw";
    let texts = refused(with_ca(), &url(&format!("{USER}:{wrong}@"))).await;
    assert!(texts[0].contains("AuthenticationFailed"), "{texts:?}");
    assert_no_password(&texts, wrong);
    assert_no_password(&texts, PASSWORD);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_credentials_the_server_refuses() {
    // The default user is off: a TLS connection alone is not enough.
    let store = with_ca()
        .timeout(Duration::from_millis(800))
        .connect(&url(""))
        .await;
    match store {
        Err(e) => assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}"),
        // Connected (the redis crate may defer the first command): nothing is served.
        Ok(store) => {
            let e = store.consume("no-auth", T0 + 60, T0).await.unwrap_err();
            assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_the_roots_do_not_vouch_for_is_refused() {
    // The system's roots: the test CA is not among them.
    let creds = format!("{USER}:{PASSWORD}@");
    let texts = refused(RedisStore::builder(), &url(&creds)).await;
    // The handshake fails (an I/O error to the redis crate), before any AUTH.
    assert!(texts[0].contains("Io"), "{texts:?}");
    assert_no_password(&texts, PASSWORD);
    // Another CA as the only root.
    let stranger = TestCa::new();
    let builder = RedisStore::builder().root_certificates(stranger.ca_pem.clone());
    let texts = refused(builder, &url(&creds)).await;
    assert_no_password(&texts, PASSWORD);
}

#[tokio::test(flavor = "multi_thread")]
async fn root_certificates_need_pem_and_a_rediss_url() {
    let creds = format!("{USER}:{PASSWORD}@");
    let garbage = RedisStore::builder().root_certificates(b"not a certificate".to_vec());
    let texts = refused(garbage, &url(&creds)).await;
    assert!(texts[0].contains("PEM"), "{texts:?}");
    // Roots with a plain URL: refused, not silently ignored.
    let port = tls_server().0.port();
    let plain = format!("redis://{creds}127.0.0.1:{port}");
    let texts = refused(with_ca(), &plain).await;
    assert_no_password(&texts, PASSWORD);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connection_uses_the_crates_provider() {
    // With both backends compiled in (--all-features), rustls has no process default of
    // its own and the redis crate's TLS setup would panic without one: connecting works
    // and leaves the crate's choice (aws-lc-rs, or ring with rust-crypto alone) installed.
    let store = trusted_store().await;
    assert_eq!(store.is_consumed("provider", T0).await, Ok(false));
    let provider = rustls::crypto::CryptoProvider::get_default().expect("a process default");
    let pq = provider
        .kx_groups
        .iter()
        .any(|g| format!("{:?}", g.name()).contains("MLKEM"));
    assert_eq!(
        pq,
        cfg!(feature = "aws-lc-rs"),
        "aws-lc-rs offers ML-KEM, ring does not"
    );
}
