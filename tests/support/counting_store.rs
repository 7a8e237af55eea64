//! A store decorator that counts, per key, how attempts were reserved
//! ([`Store::reserve_attempt`], [`Store::reserve_challenge`]: granted, busy, locked,
//! spent) and settled ([`Store::settle_attempt`], [`Store::settle_challenge`]: failed,
//! succeeded, released). Everything else is delegated untouched. A [`HookedStore`] with
//! the [`AttemptCounter`] hook, handing a verify's steps to the inner store whole (on
//! Redis, the scripts decide), so they are counted from their answers.
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

use tower_stepup::store::{ChallengeOutcome, ChallengeReservation, Reservation, Settlement, Store};

// The includer declares `#[path = "support/hooked_store.rs"] mod hooked_store;` beside
// this module.
use super::hooked_store::{Answer, Call, CallResult, HookFuture, HookedStore, StoreHook};

/// What one key's attempts came to. Store errors are not counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AttemptCounts {
    /// Reservations granted.
    pub granted: usize,
    /// Reservations refused because only reservations in flight filled the limit.
    pub busy: usize,
    /// Reservations refused by a lockout.
    pub locked: usize,
    /// Verify reservations refused because the challenge was spent (nothing reserved).
    pub spent: usize,
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

/// Counts attempt reservations and settlements per key, after the store answered them.
#[derive(Default)]
pub struct AttemptCounter {
    counts: Mutex<HashMap<String, AttemptCounts>>,
}

impl AttemptCounter {
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

impl StoreHook for AttemptCounter {
    fn after<'a>(
        &'a self,
        _: &'a dyn Store,
        call: &'a Call<'a>,
        outcome: CallResult,
    ) -> HookFuture<'a, CallResult> {
        match (call, &outcome) {
            (Call::ReserveAttempt { key, .. }, Ok(Answer::Reservation(reservation))) => {
                self.count(key, |c| match reservation {
                    Reservation::Granted => &mut c.granted,
                    Reservation::Busy => &mut c.busy,
                    Reservation::Locked { .. } => &mut c.locked,
                    other => panic!("a reservation the counts do not know: {other:?}"),
                })
            }
            (
                Call::SettleAttempt {
                    key, settlement, ..
                },
                Ok(_),
            ) => self.count(key, |c| match settlement {
                Settlement::Failed => &mut c.failed,
                Settlement::Succeeded => &mut c.succeeded,
                Settlement::Released => &mut c.released,
                other => panic!("a settlement the counts do not know: {other:?}"),
            }),
            (Call::ReserveChallenge { user, .. }, Ok(Answer::Challenge(reservation))) => self
                .count(user, |c| match reservation {
                    ChallengeReservation::Granted => &mut c.granted,
                    ChallengeReservation::Busy => &mut c.busy,
                    ChallengeReservation::Locked { .. } => &mut c.locked,
                    ChallengeReservation::Spent => &mut c.spent,
                    other => panic!("a reservation the counts do not know: {other:?}"),
                }),
            (Call::SettleChallenge { settlement, .. }, Ok(Answer::Settled(outcome))) => {
                self.count(&settlement.user, |c| match outcome {
                    ChallengeOutcome::Failed { .. } => &mut c.failed,
                    ChallengeOutcome::Succeeded(_) => &mut c.succeeded,
                    ChallengeOutcome::Spent => &mut c.released,
                    other => panic!("a settlement the counts do not know: {other:?}"),
                })
            }
            _ => {}
        }
        Box::pin(async move { outcome })
    }
}

/// Wraps a store and counts its attempt reservations and settlements per key.
pub type CountingStore = HookedStore<AttemptCounter>;

impl CountingStore {
    /// Counts the attempts of `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Arc<Self> {
        Arc::new(HookedStore::whole(inner, AttemptCounter::default()))
    }
}
