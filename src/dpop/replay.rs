//! Where used proofs are remembered (RFC 9449 §11.1): the one thing a DPoP check needs
//! beyond the request. The layer holds a [`JtiStore`]; every
//! [`Store`](crate::store::Store) is one (feature `server`), so the completion
//! endpoints' store serves the layer too, across replicas when it is shared.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// How many live proof `jti`s one key (one `jkt`) can have: a [`JtiStore`] answers
/// [`DpopUse::TooMany`] past it.
///
/// A client signs a fresh proof for every request, and each `jti` is remembered while the
/// proof's `iat` is accepted (the window, [`DpopConfig::max_age`](super::DpopConfig::max_age),
/// at most 5 minutes). 1,000 live proofs a key leave an honest client about 16 requests a
/// second over the default one-minute window (3 over five minutes), far more than one
/// user's client sends, while what one key makes the store keep stays bounded: about
/// 100 KB in `MemoryStore` (a `jti` is its 32-byte digest and its expiry), about 100 KB
/// in one Redis sorted set. A flood of proofs from one key is refused instead of filling
/// the store: the key's other proofs, and other keys, are untouched.
pub const MAX_DPOP_PROOFS_PER_KEY: usize = 1_000;

/// What [`JtiStore::use_proof`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DpopUse {
    /// The first use of this `jti` with this key: it is remembered now, until its expiry.
    Fresh,
    /// This `jti` was used with this key before and is still remembered: a replayed proof.
    Replayed,
    /// The key has [`MAX_DPOP_PROOFS_PER_KEY`] live `jti`s already: this one is neither
    /// accepted nor remembered (the request is refused; a new proof is accepted once
    /// some of the key's expire).
    TooMany,
}

/// The store behind a [`JtiStore`] failed: the request is refused with `503` (fail
/// closed), never let through. The message is the store's, for the operator's log.
#[derive(Debug, thiserror::Error)]
#[error("the DPoP proof store failed: {0}")]
pub struct JtiStoreError(pub String);

/// The future of [`JtiStore::use_proof`].
pub type JtiFuture<'a> = Pin<Box<dyn Future<Output = Result<DpopUse, JtiStoreError>> + Send + 'a>>;

/// Remembers used DPoP proofs, per key: the `jti` single use of RFC 9449 §4.3 step 11.
///
/// Implemented by every [`Store`](crate::store::Store) (feature `server`:
/// `MemoryStore`, `RedisStore`, a shared `Arc<dyn Store>`) through
/// [`Store::use_dpop_proof`](crate::store::Store::use_dpop_proof); several replicas
/// must share one, or a proof used at one replica can be replayed at another.
pub trait JtiStore: Send + Sync + 'static {
    /// Uses proof `jti` of the key whose RFC 7638 thumbprint is `jkt`:
    /// [`Fresh`](DpopUse::Fresh) the first time, then remembered until `expires_at`;
    /// [`Replayed`](DpopUse::Replayed) while remembered; [`TooMany`](DpopUse::TooMany)
    /// while the key has [`MAX_DPOP_PROOFS_PER_KEY`] live `jti`s.
    fn use_proof<'a>(
        &'a self,
        jkt: &'a str,
        jti: &'a str,
        expires_at: u64,
        now: u64,
    ) -> JtiFuture<'a>;
}

impl<T: JtiStore + ?Sized> JtiStore for Arc<T> {
    fn use_proof<'a>(
        &'a self,
        jkt: &'a str,
        jti: &'a str,
        expires_at: u64,
        now: u64,
    ) -> JtiFuture<'a> {
        (**self).use_proof(jkt, jti, expires_at, now)
    }
}
