//! Keys that change while the verifier runs: a lock-free snapshot ([`SharedKeys`]) and
//! where it comes from ([`KeySource`]).
//!
//! The request path reads the current [`KeySet`] with one atomic load (arc-swap), never a
//! lock; a source (a JWKS fetched in the background, a rotating [`Issuer`]) swaps in a
//! new set whenever it has one.
//!
//! [`Issuer`]: crate::Issuer

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::keys::KeySet;

/// What a [`KeySource`] hands back when a token names a key it does not have yet: a
/// future that completes once the refetch it started (or joined) has finished, whatever
/// its outcome. The verifier then looks again, once.
pub type KeyWait = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The verifying keys of one issuer, replaceable while the verifier runs.
///
/// Cheap to clone: clones share the keys. Reading ([`SharedKeys::keys`]) takes no lock;
/// [`SharedKeys::replace`] swaps the whole set at once, so a verification sees either
/// the old set or the new one, never a mix.
#[derive(Clone)]
pub struct SharedKeys {
    inner: Arc<Shared>,
}

struct Shared {
    current: ArcSwap<Snapshot>,
    /// The epoch of `current`, readable with one atomic load (a cache hit needs only it).
    epoch: AtomicU64,
}

/// One set of keys, and the epoch it belongs to.
pub(crate) struct Snapshot {
    pub(crate) keys: KeySet,
    /// Changes when a key that was in the set leaves it (or changes under the same
    /// `kid`): a verification made in an earlier epoch is never reused.
    pub(crate) epoch: u64,
}

impl SharedKeys {
    /// Keys that start as `keys`.
    pub fn new(keys: KeySet) -> Self {
        Self {
            inner: Arc::new(Shared {
                current: ArcSwap::from_pointee(Snapshot { keys, epoch: 0 }),
                epoch: AtomicU64::new(0),
            }),
        }
    }

    /// No keys yet (e.g. an identity provider that was down at start-up): every token of
    /// this issuer is refused until keys arrive.
    pub fn empty() -> Self {
        Self::new(KeySet::new())
    }

    /// The keys now.
    pub fn keys(&self) -> KeySet {
        self.inner.current.load().keys.clone()
    }

    /// Replaces the keys. Tokens signed by a key that is no longer in `keys` are refused
    /// from the next verification on; keys only added keep every earlier verification
    /// valid (the verifier's cache is not emptied).
    pub fn replace(&self, keys: KeySet) {
        self.inner.current.rcu(|old| {
            let removed = old.keys.keys().iter().any(|k| !keys.contains(k));
            Snapshot {
                keys: keys.clone(),
                epoch: old.epoch.wrapping_add(u64::from(removed)),
            }
        });
        self.publish_epoch();
    }

    /// Replaces the keys and forgets every verification made with the old ones, even if
    /// all of them stay.
    pub(crate) fn replace_forgetting(&self, keys: KeySet) {
        self.inner.current.rcu(|old| Snapshot {
            keys: keys.clone(),
            epoch: old.epoch.wrapping_add(1),
        });
        self.publish_epoch();
    }

    /// Makes the epoch of the snapshot now in place readable by [`epoch`](Self::epoch).
    /// Epochs only grow, so of two racing replacements the later epoch stays.
    fn publish_epoch(&self) {
        let epoch = self.inner.current.load().epoch;
        self.inner.epoch.fetch_max(epoch, Ordering::AcqRel);
    }

    /// The current snapshot: one atomic load.
    pub(crate) fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.inner.current.load()
    }

    /// The current epoch: one atomic load. A verification made in an earlier epoch is
    /// not reused; one made with a snapshot whose epoch is not yet published here is
    /// merely not reused until it is.
    pub(crate) fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for SharedKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let snapshot = self.inner.current.load();
        f.debug_struct("SharedKeys")
            .field("keys", &snapshot.keys)
            .field("epoch", &snapshot.epoch)
            .finish()
    }
}

impl From<KeySet> for SharedKeys {
    fn from(keys: KeySet) -> Self {
        Self::new(keys)
    }
}

/// Where an issuer's keys come from: fixed ([`SharedKeys`] itself), a JWKS fetched and
/// refreshed in the background (`jwks::JwksSource`, feature `jwks`), or your own.
///
/// A source owns its [`SharedKeys`] and replaces them when it has new ones; the verifier
/// reads them on every request.
pub trait KeySource: Send + Sync + 'static {
    /// The keys, as they are now and as they will be replaced.
    fn shared_keys(&self) -> &SharedKeys;

    /// A token named `kid` (or no `kid`), which the current keys lack. A source that can
    /// fetch new keys starts a fetch (or joins the one running) and returns a wait for
    /// it; `None` when it will not fetch now (a fixed source, or throttled: a flood of
    /// unknown `kid`s must not become a flood of fetches). The default: `None`.
    fn unknown_kid(&self, kid: Option<&str>) -> Option<KeyWait> {
        let _ = kid;
        None
    }
}

impl KeySource for SharedKeys {
    fn shared_keys(&self) -> &SharedKeys {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::VerifyingKey;
    use jsonwebtoken::Algorithm;

    fn key(kid: &str, secret: u8) -> VerifyingKey {
        VerifyingKey::hmac(kid, Algorithm::HS256, &[secret; 32]).unwrap()
    }

    #[test]
    fn adding_keys_keeps_the_epoch_removing_or_changing_one_moves_it() {
        let shared = SharedKeys::new(KeySet::new().with(key("a", 1)));
        shared.replace(KeySet::new().with(key("a", 1)).with(key("b", 2)));
        assert_eq!(shared.epoch(), 0, "a key added");
        shared.replace(KeySet::new().with(key("a", 1)).with(key("b", 2)));
        assert_eq!(shared.epoch(), 0, "the same keys");
        shared.replace(KeySet::new().with(key("a", 1)).with(key("b", 3)));
        assert_eq!(shared.epoch(), 1, "b changed under the same kid");
        shared.replace(KeySet::new().with(key("b", 3)));
        assert_eq!(shared.epoch(), 2, "a removed");
        assert_eq!(shared.keys().keys().len(), 1);
        shared.replace_forgetting(KeySet::new().with(key("b", 3)));
        assert_eq!(shared.epoch(), 3, "forgetting always moves it");
    }

    #[test]
    fn clones_see_one_set() {
        let shared = SharedKeys::empty();
        let clone = shared.clone();
        shared.replace(KeySet::new().with(key("a", 1)));
        assert_eq!(clone.keys().keys()[0].kid(), "a");
        assert!(
            clone.unknown_kid(Some("x")).is_none(),
            "a fixed source never fetches"
        );
    }
}
