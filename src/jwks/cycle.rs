//! One fetch of the keys: (discovery when needed,) the JWKS, its usable keys swapped in;
//! on any failure the last good keys stay, and the failure is logged and counted.

use std::time::SystemTime;

use http::Uri;
use serde::Deserialize;

use super::cache_control::{freshness, Freshness};
use super::discovery;
use super::error::JwksError;
use super::get::get;
use super::state::{lock, State, Target};
use super::url::host_of;
use crate::token::{Jwk, JwkSet, JwkSkip, KeySet, SkippedJwk};

/// The name of the `metrics` counter of failed fetches (feature `metrics`).
pub const FAILURE_METRIC: &str = "tower_stepup_jwks_fetch_failures_total";

/// Fetches the keys once and swaps them in; what the response said about its freshness.
pub(crate) async fn fetch_once(state: &State) -> Result<Freshness, JwksError> {
    state.progress.send_modify(|p| p.started += 1);
    let result = load(state).await;
    match result {
        Ok(_) => record_success(state),
        Err(error) => record_failure(state, error),
    }
    let loaded = !state.keys.keys().keys().is_empty();
    state.progress.send_modify(|p| {
        p.finished += 1;
        p.loaded = loaded;
    });
    result
}

/// The JWKS fetched, read and swapped in: what the response said about its freshness.
async fn load(state: &State) -> Result<Freshness, JwksError> {
    let uri = jwks_uri(state).await?;
    let result = fetch_keys(state, &uri).await;
    if result.is_err() {
        // The provider may have moved its keys: read the discovery document again.
        *lock(&state.discovered) = None;
    }
    let (keys, skipped, freshness) = result?;
    state.keys.replace(keys);
    lock(&state.stats).entries_skipped = skipped;
    Ok(freshness)
}

/// The JWKS URL: the configured one, or the one discovery named (read once, and again
/// after a failure).
async fn jwks_uri(state: &State) -> Result<Uri, JwksError> {
    let (issuer, document) = match &state.config.target {
        Target::Jwks(uri) => return Ok(uri.clone()),
        Target::Discovery { issuer, document } => (issuer, document),
    };
    if let Some(uri) = lock(&state.discovered).clone() {
        return Ok(uri);
    }
    let uri = discovery::jwks_uri(state, issuer, document).await?;
    *lock(&state.discovered) = Some(uri.clone());
    Ok(uri)
}

/// The usable keys at `uri`, the number of entries skipped, and the response's freshness.
async fn fetch_keys(state: &State, uri: &Uri) -> Result<(KeySet, usize, Freshness), JwksError> {
    let response = get(state, uri).await?;
    let (keys, skipped) = parse(response.body(), &state.config.algorithms)?;
    for entry in &skipped {
        tracing::debug!(
            host = host_of(uri),
            kid = entry.kid.as_deref().unwrap_or("-"),
            reason = %entry.reason,
            "JWKS entry skipped"
        );
    }
    if keys.keys().is_empty() {
        return Err(JwksError::NoUsableKey);
    }
    Ok((keys, skipped.len(), freshness(response.headers())))
}

/// A set whose entries are read one by one: an entry that is not a JWK at all (an
/// unknown shape, bad base64 that fails to parse) is skipped as malformed.
#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// The usable keys of a JWKS body, and the entries skipped.
pub(crate) fn parse(
    body: &[u8],
    allowed: &[jsonwebtoken::Algorithm],
) -> Result<(KeySet, Vec<SkippedJwk>), JwksError> {
    let raw: RawSet = serde_json::from_slice(body).map_err(|_| JwksError::Json)?;
    let mut jwks = Vec::with_capacity(raw.keys.len());
    let mut malformed = Vec::new();
    for entry in raw.keys {
        let kid = entry.get("kid").and_then(|k| k.as_str()).map(str::to_owned);
        match serde_json::from_value::<Jwk>(entry) {
            Ok(jwk) => jwks.push(jwk),
            Err(_) => malformed.push(SkippedJwk {
                kid,
                reason: JwkSkip::Malformed,
            }),
        }
    }
    let (keys, mut skipped) = KeySet::from_jwks(&JwkSet { keys: jwks }, allowed);
    skipped.append(&mut malformed);
    Ok((keys, skipped))
}

fn record_success(state: &State) {
    let mut stats = lock(&state.stats);
    stats.fetches += 1;
    stats.last_success = Some(SystemTime::now());
    stats.keys_loaded = state.keys.keys().keys().len();
}

/// Counts and logs a failure: the host and the kind, never a body or a key.
fn record_failure(state: &State, error: JwksError) {
    {
        let mut stats = lock(&state.stats);
        stats.fetches += 1;
        stats.failures += 1;
        stats.last_error = Some(error);
    }
    let host = match &state.config.target {
        Target::Jwks(uri) | Target::Discovery { document: uri, .. } => host_of(uri),
    };
    tracing::warn!(
        host,
        error = error.kind(),
        detail = %error,
        "fetching the JWKS failed; the last good keys stay in use"
    );
    #[cfg(feature = "metrics")]
    metrics::counter!(FAILURE_METRIC, "error" => error.kind()).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::Algorithm;
    use serde_json::json;

    fn body(keys: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({ "keys": keys })).unwrap()
    }

    #[test]
    fn entries_that_are_not_jwks_are_skipped_the_rest_load() {
        let good =
            crate::SigningKey::ed_pem("good", include_bytes!("../../tests/keys/ed_private.pem"))
                .unwrap()
                .public_jwk()
                .unwrap();
        let text = body(json!([
            good,
            {"kid": "no-kty", "x": "abc"},
            "a string",
            {"kid": 7, "kty": ["not", "a", "string"]},
            {"kid": "oct", "kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"},
        ]));
        let (keys, skipped) = parse(&text, &[Algorithm::EdDSA]).unwrap();
        assert_eq!(keys.keys().len(), 1);
        assert_eq!(keys.keys()[0].kid(), "good");
        let reasons: Vec<_> = skipped
            .iter()
            .map(|s| (s.kid.as_deref(), s.reason.clone()))
            .collect();
        assert!(
            reasons.contains(&(Some("no-kty"), JwkSkip::Unsupported)),
            "{reasons:?}"
        );
        let unnamed = reasons.iter().filter(|r| **r == (None, JwkSkip::Malformed));
        assert_eq!(unnamed.count(), 2, "{reasons:?}");
        assert!(
            reasons.contains(&(Some("oct"), JwkSkip::SymmetricKey)),
            "{reasons:?}"
        );
        assert_eq!(skipped.len(), 4);
    }

    #[test]
    fn a_body_that_is_not_a_set_is_json_error() {
        for bad in [&b"<html>"[..], b"{}", b"{\"keys\": 1}", b"[]", b""] {
            assert_eq!(
                parse(bad, &[Algorithm::EdDSA]).err(),
                Some(JwksError::Json),
                "{bad:?}"
            );
        }
        let (keys, skipped) = parse(b"{\"keys\": []}", &[Algorithm::EdDSA]).unwrap();
        assert!(keys.keys().is_empty() && skipped.is_empty());
    }
}
