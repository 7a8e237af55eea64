//! The verified-token cache of `Verifier`: one test per rule it promises.
//!
//! A hit is told from a full verification by `Verifier::cache_stats` (hits, misses,
//! entries), and by making a full verification impossible (rotating the keys) where the
//! rule says the cache must not answer. Time is an input: `verify` is given `now`.

use std::time::Duration;

use tower_stepup::token::{CacheStats, TokenError};
use tower_stepup::{
    Algorithm, Grant, Issuer, KeySet, ManualClock, SigningKey, Verifier, VerifyingKey,
};

const ISS: &str = "https://auth.example";
const AUD: &str = "https://api.example";
const NOW: u64 = 1_700_000_000;
const SECRET: &[u8; 32] = b"0123456789abcdef0123456789abcdef";
const OTHER_SECRET: &[u8; 32] = b"fedcba9876543210fedcba9876543210";

fn keys(kid: &str, secret: &[u8]) -> KeySet {
    KeySet::new().with(VerifyingKey::hmac(kid, Algorithm::HS256, secret).unwrap())
}

fn verifier_with(capacity: usize, max_age: Duration) -> Verifier {
    Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([Algorithm::HS256])
        .keys(keys("k1", SECRET))
        .cache(capacity)
        .cache_max_age(max_age)
        .build()
        .unwrap()
}

fn verifier() -> Verifier {
    verifier_with(1000, Duration::from_secs(300))
}

fn issuer_at(now: u64) -> Issuer {
    Issuer::builder()
        .issuer(ISS)
        .audience(AUD)
        .signing_key(SigningKey::hmac("k1", Algorithm::HS256, SECRET).unwrap())
        .access_ttl(Duration::from_secs(900))
        .clock(ManualClock::new(now))
        .build()
        .unwrap()
}

fn access(sub: &str) -> String {
    issuer_at(NOW)
        .issue_access(&Grant::new(sub).amr(["pwd"]))
        .unwrap()
        .token
}

fn stats(v: &Verifier) -> (u64, u64, usize) {
    let CacheStats {
        hits,
        misses,
        entries,
        ..
    } = v.cache_stats();
    (hits, misses, entries)
}

#[test]
fn a_second_verification_is_a_hit_with_the_same_claims() {
    let v = verifier();
    let token = access("alice");
    let first = v.verify(&token, NOW).unwrap();
    assert_eq!(stats(&v), (0, 1, 1));
    let second = v.verify(&token, NOW + 10).unwrap();
    assert_eq!(stats(&v), (1, 1, 1));
    assert_eq!(first, second);
    assert_eq!(second.claims.sub(), "alice");
}

#[test]
fn the_whole_token_is_the_key() {
    let v = verifier();
    let token = access("alice");
    v.verify(&token, NOW).unwrap();

    // The same header and payload with another signature: not the cached token.
    let (signed, sig) = token.rsplit_once('.').unwrap();
    let mut forged_sig = sig.as_bytes().to_vec();
    forged_sig[0] = if forged_sig[0] == b'A' { b'B' } else { b'A' };
    let forged = format!("{signed}.{}", String::from_utf8(forged_sig).unwrap());
    assert_eq!(v.verify(&forged, NOW), Err(TokenError::BadSignature));
    // A prefix or an extension of it neither.
    assert!(v.verify(&token[..token.len() - 1], NOW).is_err());
    assert!(v.verify(&format!("{token}A"), NOW).is_err());
    // Another genuine token is its own entry.
    let other = access("bob");
    assert_eq!(v.verify(&other, NOW).unwrap().claims.sub(), "bob");
    assert_eq!(stats(&v).2, 2);
    assert_eq!(v.verify(&token, NOW).unwrap().claims.sub(), "alice");
}

#[test]
fn a_cached_token_expires_at_its_exp() {
    let v = verifier_with(1000, Duration::from_secs(3600));
    let token = access("alice"); // exp = NOW + 900; leeway 5 s
    v.verify(&token, NOW).unwrap();
    assert!(v.verify(&token, NOW + 904).is_ok());
    assert_eq!(stats(&v).0, 1, "a hit");
    assert_eq!(
        v.verify(&token, NOW + 905),
        Err(TokenError::Expired {
            kind: tower_stepup::TokenKind::Access
        })
    );
    // Dropped, not kept for later.
    assert_eq!(stats(&v).2, 0);
    assert!(v.verify(&token, NOW + 906).is_err());
}

#[test]
fn a_cached_verification_is_reused_at_most_max_age() {
    let v = verifier_with(1000, Duration::from_secs(60));
    let token = access("alice");
    v.verify(&token, NOW).unwrap();
    v.verify(&token, NOW + 59).unwrap();
    assert_eq!(stats(&v), (1, 1, 1));
    // At max_age the token is verified in full again (a miss), then cached anew.
    v.verify(&token, NOW + 60).unwrap();
    assert_eq!(stats(&v), (1, 2, 1));
    v.verify(&token, NOW + 119).unwrap();
    assert_eq!(stats(&v), (2, 2, 1));
}

#[test]
fn the_time_checks_run_on_every_hit() {
    // A token cached at NOW and then looked up with a clock set before its nbf.
    let v = verifier();
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.typ = Some("at+jwt".to_owned());
    header.kid = Some("k1".to_owned());
    let claims = serde_json::json!({
        "sub": "alice", "iss": ISS, "aud": AUD, "iat": NOW, "nbf": NOW + 100, "exp": NOW + 900,
    });
    let token = jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    assert_eq!(v.verify(&token, NOW), Err(TokenError::NotYetValid));
    assert_eq!(stats(&v).2, 0, "a failure is not cached");
    v.verify(&token, NOW + 100).unwrap();
    assert_eq!(stats(&v).2, 1);
    // The clock moves back: the cached entry does not make it valid.
    assert_eq!(v.verify(&token, NOW + 50), Err(TokenError::NotYetValid));
}

#[test]
fn the_cache_is_bounded() {
    let v = verifier_with(50, Duration::from_secs(300));
    let issuer = issuer_at(NOW);
    for i in 0..500 {
        let t = issuer
            .issue_access(&Grant::new(format!("user-{i}")))
            .unwrap();
        v.verify(&t.token, NOW).unwrap();
    }
    let entries = stats(&v).2;
    assert!(entries <= 50, "{entries} entries for a capacity of 50");
    assert!(entries > 0);
}

#[test]
fn rotating_the_keys_empties_the_cache() {
    let v = verifier();
    let token = access("alice");
    v.verify(&token, NOW).unwrap();
    assert_eq!(stats(&v).2, 1);

    // k1 retired: the cached verification made with it must not answer.
    v.rotate_keys(keys("k2", OTHER_SECRET)).unwrap();
    assert_eq!(stats(&v).2, 0);
    assert_eq!(v.verify(&token, NOW + 1), Err(TokenError::UnknownKey));

    // k1 back (another generation): verified in full, then cached again.
    v.rotate_keys(keys("k1", SECRET)).unwrap();
    let misses = stats(&v).1;
    v.verify(&token, NOW + 2).unwrap();
    assert_eq!(stats(&v).1, misses + 1, "a full verification");
    v.verify(&token, NOW + 3).unwrap();
    assert_eq!(stats(&v).0, 1, "then a hit");
}

#[test]
fn clones_share_the_cache_and_its_clearing() {
    let v = verifier();
    let clone = v.clone();
    let token = access("alice");
    v.verify(&token, NOW).unwrap();
    clone.verify(&token, NOW).unwrap();
    assert_eq!(stats(&v), (1, 1, 1));
    clone.clear_cache();
    assert_eq!(stats(&v).2, 0);
}

#[test]
fn failures_are_never_cached() {
    let v = verifier();
    let issuer = issuer_at(NOW);
    let expired = issuer_at(NOW - 2000)
        .issue_access(&Grant::new("alice"))
        .unwrap()
        .token;
    let other_key = Issuer::builder()
        .issuer(ISS)
        .audience(AUD)
        .signing_key(SigningKey::hmac("k1", Algorithm::HS256, OTHER_SECRET).unwrap())
        .clock(ManualClock::new(NOW))
        .build()
        .unwrap()
        .issue_access(&Grant::new("alice"))
        .unwrap()
        .token;
    let wrong_audience = Issuer::builder()
        .issuer(ISS)
        .audience("https://elsewhere.example")
        .signing_key(SigningKey::hmac("k1", Algorithm::HS256, SECRET).unwrap())
        .clock(ManualClock::new(NOW))
        .build()
        .unwrap()
        .issue_access(&Grant::new("alice"))
        .unwrap()
        .token;
    for bad in [
        &expired,
        &other_key,
        &wrong_audience,
        &"not.a.token".to_owned(),
    ] {
        for _ in 0..3 {
            assert!(v.verify(bad, NOW).is_err());
        }
    }
    assert_eq!(stats(&v), (0, 12, 0));
    // And a good token afterwards is unaffected.
    let good = issuer.issue_access(&Grant::new("alice")).unwrap().token;
    assert!(v.verify(&good, NOW).is_ok());
}

#[test]
fn partial_tokens_are_never_cached() {
    let v = verifier();
    let partial = issuer_at(NOW)
        .issue_partial(&Grant::new("alice").amr(["pwd"]))
        .unwrap()
        .token;
    for _ in 0..3 {
        let verified = v.verify(&partial, NOW).unwrap();
        assert_eq!(verified.kind, tower_stepup::TokenKind::Partial);
    }
    assert_eq!(stats(&v), (0, 3, 0), "verified in full every time");
}

#[test]
fn a_zero_capacity_turns_the_cache_off() {
    let v = verifier_with(0, Duration::from_secs(300));
    let token = access("alice");
    v.verify(&token, NOW).unwrap();
    v.verify(&token, NOW).unwrap();
    assert_eq!(v.cache_stats(), CacheStats::default());
}

#[test]
fn max_age_must_be_at_least_a_second() {
    let built = Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([Algorithm::HS256])
        .keys(keys("k1", SECRET))
        .cache_max_age(Duration::from_millis(500))
        .build();
    assert!(built.is_err());
}
