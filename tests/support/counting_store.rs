//! A store decorator that counts, per key, how attempts were reserved
//! ([`Store::reserve_attempt`]: granted, busy, locked) and settled
//! ([`Store::settle_attempt`]: failed, succeeded, released). Everything else is delegated
//! untouched.
//!
//! The codes a burst got evaluated are the settlements `Failed` plus `Succeeded`: a
//! judged proof always ends in one of those; a `Released` attempt was never judged.
//!
//! ```ignore
//! let store = CountingStore::new(Arc::new(MemoryStore::new()));
//! let demo = app::build(&config, clock, store.clone())?;
//! // … a burst …
//! assert!(store.counts("alice").evaluated() <= 5);
//! ```
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tower_stepup::store::{
    AttemptPolicy, Attempts, Elevation, FamilyRevocation, LoginLimits, RefreshRecord, Reservation,
    Rotation, Settlement, Store, StoreFuture, TokenHash,
};

/// What one key's attempts came to. Store errors are not counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttemptCounts {
    /// Reservations granted.
    pub granted: usize,
    /// Reservations refused because only reservations in flight filled the limit.
    pub busy: usize,
    /// Reservations refused by a lockout.
    pub locked: usize,
    /// Settled as a wrong proof.
    pub failed: usize,
    /// Settled as a right proof.
    pub succeeded: usize,
    /// Given back unjudged.
    pub released: usize,
}

impl AttemptCounts {
    /// The proofs that were judged: failed plus succeeded.
    pub fn evaluated(&self) -> usize {
        self.failed + self.succeeded
    }
}

/// Wraps a store and counts its attempt reservations and settlements per key.
pub struct CountingStore {
    inner: Arc<dyn Store>,
    counts: Mutex<HashMap<String, AttemptCounts>>,
}

impl CountingStore {
    /// Counts the attempts of `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            counts: Mutex::new(HashMap::new()),
        })
    }

    /// The counts of `key` so far (all zero for a key never reserved).
    pub fn counts(&self, key: &str) -> AttemptCounts {
        self.counts
            .lock()
            .unwrap()
            .get(key)
            .copied()
            .unwrap_or_default()
    }

    fn count(&self, key: &str, what: impl FnOnce(&mut AttemptCounts) -> &mut usize) {
        let mut counts = self.counts.lock().unwrap();
        *what(counts.entry(key.to_owned()).or_default()) += 1;
    }
}

impl Store for CountingStore {
    fn reserve_attempt<'a>(
        &'a self,
        key: &'a str,
        policy: AttemptPolicy,
        now: u64,
    ) -> StoreFuture<'a, Reservation> {
        Box::pin(async move {
            let reservation = self.inner.reserve_attempt(key, policy, now).await?;
            self.count(key, |c| match reservation {
                Reservation::Granted => &mut c.granted,
                Reservation::Busy => &mut c.busy,
                Reservation::Locked { .. } => &mut c.locked,
                other => panic!("a reservation the counts do not know: {other:?}"),
            });
            Ok(reservation)
        })
    }

    fn settle_attempt<'a>(
        &'a self,
        key: &'a str,
        settlement: Settlement,
        policy: AttemptPolicy,
        now: u64,
    ) -> StoreFuture<'a, Attempts> {
        Box::pin(async move {
            let attempts = self
                .inner
                .settle_attempt(key, settlement, policy, now)
                .await?;
            self.count(key, |c| match settlement {
                Settlement::Failed => &mut c.failed,
                Settlement::Succeeded => &mut c.succeeded,
                Settlement::Released => &mut c.released,
                other => panic!("a settlement the counts do not know: {other:?}"),
            });
            Ok(attempts)
        })
    }

    fn reserve_login<'a>(
        &'a self,
        account: &'a str,
        client: &'a str,
        limits: LoginLimits,
        now: u64,
    ) -> StoreFuture<'a, Reservation> {
        self.inner.reserve_login(account, client, limits, now)
    }

    fn settle_login<'a>(
        &'a self,
        account: &'a str,
        client: &'a str,
        settlement: Settlement,
        limits: LoginLimits,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        self.inner
            .settle_login(account, client, settlement, limits, now)
    }

    fn consume<'a>(&'a self, key: &'a str, expires_at: u64, now: u64) -> StoreFuture<'a, bool> {
        self.inner.consume(key, expires_at, now)
    }
    fn is_consumed<'a>(&'a self, key: &'a str, now: u64) -> StoreFuture<'a, bool> {
        self.inner.is_consumed(key, now)
    }
    fn release<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        self.inner.release(key)
    }
    fn attempts<'a>(&'a self, user: &'a str, now: u64) -> StoreFuture<'a, Attempts> {
        self.inner.attempts(user, now)
    }
    fn advance_totp_step<'a>(
        &'a self,
        user: &'a str,
        step: u64,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, bool> {
        self.inner.advance_totp_step(user, step, expires_at, now)
    }
    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        self.inner.put(key, value, expires_at, now)
    }
    fn get<'a>(&'a self, key: &'a str, now: u64) -> StoreFuture<'a, Option<Vec<u8>>> {
        self.inner.get(key, now)
    }
    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        self.inner.delete(key)
    }
    fn refresh_create<'a>(
        &'a self,
        token: TokenHash,
        record: RefreshRecord,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        self.inner.refresh_create(token, record, now)
    }
    fn refresh_rotate<'a>(
        &'a self,
        token: TokenHash,
        new_token: TokenHash,
        now: u64,
    ) -> StoreFuture<'a, Rotation> {
        self.inner.refresh_rotate(token, new_token, now)
    }
    fn refresh_revoke<'a>(
        &'a self,
        token: TokenHash,
        sub: &'a str,
        now: u64,
    ) -> StoreFuture<'a, bool> {
        self.inner.refresh_revoke(token, sub, now)
    }
    fn revoke_family<'a>(&'a self, family: &'a str, now: u64) -> StoreFuture<'a, FamilyRevocation> {
        self.inner.revoke_family(family, now)
    }
    fn refresh_elevate<'a>(
        &'a self,
        family: &'a str,
        new_token: TokenHash,
        session: String,
        issued_at: u64,
        now: u64,
    ) -> StoreFuture<'a, Elevation> {
        self.inner
            .refresh_elevate(family, new_token, session, issued_at, now)
    }
}
