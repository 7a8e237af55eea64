//! A rotating issuer's keys: the one that signs, and the retired ones that keep verifying
//! until the last token they signed has expired.
//!
//! The signing path reads the current keys with one atomic load (arc-swap); rotating and
//! pruning take a small mutex between themselves only. Every change is published at once
//! to a [`SharedKeys`] that verifiers read ([`IssuerKeys`]), and to the JWKS document
//! ([`Issuer::jwks`](crate::Issuer::jwks)).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::{ArcSwap, Guard};
use jsonwebtoken::jwk::{Jwk, JwkSet};

use super::keys::{KeySet, SigningKey, VerifyingKey};
use super::source::{KeySource, SharedKeys};
use crate::clock::SharedClock;
use crate::error::ConfigError;

/// No retired key is waiting to be dropped.
const NEVER: u64 = u64::MAX;

/// One signing key with what is published of it.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) signing: SigningKey,
    verifying: VerifyingKey,
    jwk: Option<Jwk>,
}

impl Entry {
    fn new(signing: SigningKey) -> Result<Self, ConfigError> {
        Ok(Self {
            verifying: signing.verifying_key()?,
            jwk: signing.public_jwk(),
            signing,
        })
    }
}

/// A key that no longer signs, kept for verifying until `drop_at`.
#[derive(Clone)]
struct Retired {
    entry: Entry,
    drop_at: u64,
}

/// The keys at one time.
pub(crate) struct RingState {
    /// The key that signs.
    pub(crate) current: Entry,
    /// Keys that only verify, oldest first.
    retired: Vec<Retired>,
}

impl RingState {
    fn entries(&self) -> impl Iterator<Item = &Entry> {
        std::iter::once(&self.current).chain(self.retired.iter().map(|r| &r.entry))
    }

    fn key_set(&self) -> KeySet {
        self.entries()
            .fold(KeySet::new(), |set, e| set.with(e.verifying.clone()))
    }

    fn next_drop(&self) -> u64 {
        self.retired
            .iter()
            .map(|r| r.drop_at)
            .min()
            .unwrap_or(NEVER)
    }
}

/// The signing key, the retired keys, and their published form; shared by every clone
/// of an [`Issuer`](crate::Issuer).
pub(crate) struct KeyRing {
    state: ArcSwap<RingState>,
    published: SharedKeys,
    /// Held while rotating or pruning; never on the signing or verifying path.
    changing: Mutex<()>,
    /// When the first retired key is due to be dropped ([`NEVER`] when none is).
    next_drop: AtomicU64,
    /// How long a retired key keeps verifying: the longest token lifetime plus a margin.
    retain: u64,
}

impl KeyRing {
    /// A ring whose only key is `key`; a key retired later verifies for `retain` seconds.
    pub(crate) fn new(key: SigningKey, retain: u64) -> Result<Self, ConfigError> {
        let state = RingState {
            current: Entry::new(key)?,
            retired: Vec::new(),
        };
        Ok(Self {
            published: SharedKeys::new(state.key_set()),
            state: ArcSwap::from_pointee(state),
            changing: Mutex::new(()),
            next_drop: AtomicU64::new(NEVER),
            retain,
        })
    }

    /// The keys at `now`, retired keys past their time dropped first.
    pub(crate) fn at(&self, now: u64) -> Guard<Arc<RingState>> {
        self.prune_if_due(|| now);
        self.state.load()
    }

    /// `key` signs from now on; the key that signed until now is retired: it verifies
    /// (and is published) until `now` + the retention time, then is dropped.
    pub(crate) fn rotate(&self, key: SigningKey, now: u64) -> Result<(), ConfigError> {
        let entry = Entry::new(key)?;
        let _changing = self.changing.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.state.load_full();
        let mut retired: Vec<Retired> = old
            .retired
            .iter()
            .filter(|r| r.drop_at > now)
            .cloned()
            .collect();
        retired.push(Retired {
            entry: old.current.clone(),
            drop_at: now.saturating_add(self.retain),
        });
        let kid = entry.signing.kid();
        if retired.iter().any(|r| r.entry.signing.kid() == kid) {
            return Err(ConfigError::DuplicateKid(kid.to_owned()));
        }
        let state = RingState {
            current: entry,
            retired,
        };
        // Verifiers know the new key before anything is signed with it.
        self.published.replace(state.key_set());
        self.next_drop.store(state.next_drop(), Ordering::Release);
        self.state.store(Arc::new(state));
        Ok(())
    }

    /// Drops the retired keys due at `now()`, if any are (one atomic load when none is);
    /// skipped when a rotation or another prune holds the lock, which prunes itself.
    fn prune_if_due(&self, now: impl FnOnce() -> u64) {
        let due = self.next_drop.load(Ordering::Acquire);
        if due == NEVER {
            return;
        }
        let now = now();
        if now < due {
            return;
        }
        let Ok(_changing) = self.changing.try_lock() else {
            return;
        };
        let old = self.state.load_full();
        let state = Arc::new(RingState {
            current: old.current.clone(),
            retired: old
                .retired
                .iter()
                .filter(|r| r.drop_at > now)
                .cloned()
                .collect(),
        });
        self.state.store(state.clone());
        self.published.replace(state.key_set());
        self.next_drop.store(state.next_drop(), Ordering::Release);
    }

    /// The public keys in force at `now`, as a JWKS document: the signing key first.
    pub(crate) fn jwks(&self, now: u64) -> JwkSet {
        let state = self.at(now);
        JwkSet {
            keys: state.entries().filter_map(|e| e.jwk.clone()).collect(),
        }
    }

    /// The `kid`s of the retired keys still kept at `now`, oldest first.
    pub(crate) fn retired_kids(&self, now: u64) -> Vec<String> {
        let state = self.at(now);
        let kids = state
            .retired
            .iter()
            .map(|r| r.entry.signing.kid().to_owned());
        kids.collect()
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.state.load();
        let retired: Vec<&str> = state
            .retired
            .iter()
            .map(|r| r.entry.signing.kid())
            .collect();
        f.debug_struct("KeyRing")
            .field("current", &state.current.signing.kid())
            .field("retired", &retired)
            .field("retain", &self.retain)
            .finish()
    }
}

/// The verifying keys of a rotating [`Issuer`](crate::Issuer): its signing key and the
/// retired keys whose tokens may still be alive (for an HMAC issuer, the secrets
/// themselves). From [`Issuer::verifying_keys`](crate::Issuer::verifying_keys).
///
/// A [`KeySource`]: a [`Verifier`](crate::Verifier) built with
/// [`key_source`](crate::token::VerifierBuilder::key_source) follows every rotation with
/// no further call, and stops accepting a retired key once it is due to be dropped (read
/// on the issuer's clock), even while the issuer signs nothing. Cheap to clone.
#[derive(Clone)]
pub struct IssuerKeys {
    ring: Arc<KeyRing>,
    clock: SharedClock,
}

impl IssuerKeys {
    pub(crate) fn new(ring: Arc<KeyRing>, clock: SharedClock) -> Self {
        Self { ring, clock }
    }

    /// The keys now.
    pub fn keys(&self) -> KeySet {
        self.shared_keys().keys()
    }
}

impl KeySource for IssuerKeys {
    fn shared_keys(&self) -> &SharedKeys {
        // Lock-free: one atomic load, and a clock read only while a retired key waits.
        self.ring.prune_if_due(|| self.clock.now());
        &self.ring.published
    }
}

impl fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerKeys")
            .field("ring", &self.ring)
            .finish_non_exhaustive()
    }
}
