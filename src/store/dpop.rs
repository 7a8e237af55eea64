//! Single use of DPoP proofs (RFC 9449 §11.1): each proof's `jti` is used once per key,
//! remembered while the proof's `iat` is accepted, and bounded per key
//! ([`Store::use_dpop_proof`](super::Store::use_dpop_proof)).
//!
//! What a client chooses (the `jti`; the thumbprint `jkt` is computed, but the store takes
//! any string) is kept only as its SHA-256: every key and member has a fixed size.

use sha2::{Digest, Sha256};

use super::{Store, StoreError};
pub use crate::dpop::{DpopUse, MAX_DPOP_PROOFS_PER_KEY};
use crate::dpop::{JtiFuture, JtiStore, JtiStoreError};
use crate::factor::recovery::hex;

/// The SHA-256 of `s`: what the client chose, in a fixed size.
pub(crate) fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// The [`Store::consume`] key of proof `jti` of key `jkt`: `dpop:` and the hex SHA-256
/// of both (the length of `jkt` first, so that no other pair of strings makes the same
/// input): 69 characters, whatever the client sent.
pub(crate) fn consume_key(jkt: &str, jti: &str) -> String {
    let mut h = Sha256::new();
    h.update((jkt.len() as u64).to_be_bytes());
    h.update(jkt.as_bytes());
    h.update(jti.as_bytes());
    format!("dpop:{}", hex(&h.finalize()))
}

/// The provided [`Store::use_dpop_proof`]: one [`Store::consume`] of
/// [`consume_key`]. Bounded by the store's own bound and by the expiry only: never
/// [`DpopUse::TooMany`].
pub(crate) async fn consume_once<S: Store + ?Sized>(
    store: &S,
    jkt: &str,
    jti: &str,
    expires_at: u64,
    now: u64,
) -> Result<DpopUse, StoreError> {
    let fresh = store
        .consume(&consume_key(jkt, jti), expires_at, now)
        .await?;
    Ok(if fresh {
        DpopUse::Fresh
    } else {
        DpopUse::Replayed
    })
}

/// Every store remembers DPoP proofs for the layer, through
/// [`Store::use_dpop_proof`]: the layer and the completion endpoints share one store.
impl<S: Store + ?Sized> JtiStore for S {
    fn use_proof<'a>(
        &'a self,
        jkt: &'a str,
        jti: &'a str,
        expires_at: u64,
        now: u64,
    ) -> JtiFuture<'a> {
        Box::pin(async move {
            self.use_dpop_proof(jkt, jti, expires_at, now)
                .await
                .map_err(|e| JtiStoreError(e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    const T0: u64 = 1_700_000_000;

    #[test]
    fn consume_keys_have_one_size_and_keep_the_pair_apart() {
        let long = "j".repeat(10_000);
        let keys = [
            consume_key("ab", "c"),
            consume_key("a", "bc"),
            consume_key("", "abc"),
            consume_key("abc", ""),
            consume_key(&long, &long),
        ];
        for key in &keys {
            assert_eq!(key.len(), 69, "{key}");
            assert!(key.starts_with("dpop:"), "{key}");
            assert!(!key.contains('j'), "{key}");
        }
        let mut distinct = keys.to_vec();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), keys.len());
        assert_eq!(consume_key("ab", "c"), keys[0]);
    }

    /// The provided method, on a store's `consume`: fresh once, replayed until the
    /// expiry, fresh again from it; per key; never too many.
    #[tokio::test]
    async fn the_provided_use_is_one_consume_and_never_too_many() {
        let store = MemoryStore::new();
        let use_ = |jkt: &'static str, jti: String, exp: u64, now: u64| {
            let store = &store;
            async move { consume_once(store, jkt, &jti, exp, now).await }
        };
        assert_eq!(
            use_("k1", "j".into(), T0 + 60, T0).await,
            Ok(DpopUse::Fresh)
        );
        assert_eq!(
            use_("k1", "j".into(), T0 + 60, T0 + 59).await,
            Ok(DpopUse::Replayed)
        );
        assert_eq!(
            use_("k2", "j".into(), T0 + 60, T0).await,
            Ok(DpopUse::Fresh)
        );
        assert_eq!(
            use_("k1", "j".into(), T0 + 120, T0 + 60).await,
            Ok(DpopUse::Fresh)
        );
        assert_eq!(
            store.is_consumed(&consume_key("k1", "j"), T0 + 61).await,
            Ok(true)
        );
        for i in 0..MAX_DPOP_PROOFS_PER_KEY + 5 {
            let got = use_("k3", format!("j-{i}"), T0 + 60, T0).await;
            assert_eq!(got, Ok(DpopUse::Fresh), "{i}");
        }
        // k1's jti (its expired mark replaced), k2's, and every one of k3's.
        assert_eq!(store.len(), 2 + MAX_DPOP_PROOFS_PER_KEY + 5);
    }
}
