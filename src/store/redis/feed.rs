//! A replica follows the revocations of every other: Redis pub/sub for news at once, a
//! catch-up read of the log every second and on every (re)connect so nothing missed
//! stays missed (see [`crate::revocation`]).

use std::time::{Duration, Instant};

use futures_util::StreamExt;

use super::{redis_error, revoked, RedisStore};
use crate::clock::SharedClock;
use crate::revocation::WeakRevocations;
use crate::store::{Store, StoreError};
use crate::Guard;

/// How often a replica reads the log even when messages arrive: the heartbeat that
/// keeps its set fresh (and bounds how late a lost message is noticed).
const CATCH_UP_EVERY: Duration = Duration::from_secs(1);

/// The longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

impl RedisStore {
    /// Feeds `guard`'s [revocations](crate::revocation) from this store: every session
    /// another replica ends is refused here within about a second.
    ///
    /// Spawns a task on the current tokio runtime (call it from within one). The task
    /// subscribes to the store's revocation channel, reads the log of changes on every
    /// connect and every second after, and reconnects with backoff (up to 1 s) when
    /// Redis goes away. It marks the set fresh after each full read, so a guard built
    /// with [`Revocations::fed`](crate::revocation::Revocations::fed) answers 503 on authenticated routes from the moment its
    /// staleness bound passes without one. The task ends when the guard (every clone of
    /// its revocation set) is dropped.
    pub fn follow_revocations(&self, guard: &Guard) {
        let follower = Follower {
            store: self.clone(),
            set: guard.revocations().downgrade(),
            clock: guard.shared_clock(),
            cursor: 0,
            synced_count: 0,
        };
        tokio::spawn(follower.run());
    }
}

struct Follower {
    store: RedisStore,
    set: WeakRevocations,
    clock: SharedClock,
    cursor: u64,
    /// Full reads so far (to tell a new outage from a long one in the logs).
    synced_count: u64,
}

impl Follower {
    async fn run(mut self) {
        let mut backoff = Duration::from_millis(100);
        let mut failures = 0u64;
        while self.set.upgrade().is_some() {
            let synced = self.synced_count;
            match self.follow().await {
                Ok(()) => return,
                Err(e) if self.synced_count > synced || failures == 0 => {
                    // Once per outage: the first failure after a good read.
                    tracing::warn!(error = %e, "revocation feed interrupted; reconnecting");
                    failures = 1;
                    backoff = Duration::from_millis(100);
                }
                Err(e) => {
                    failures += 1;
                    tracing::debug!(error = %e, failures, "revocation feed still down");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One connection: subscribe, catch up, then apply messages and catch up every
    /// second. `Ok` when the set is gone; an error when Redis is.
    async fn follow(&mut self) -> Result<(), StoreError> {
        let store = &self.store;
        let mut pubsub = store.run(store.subscribers.pubsub()).await?;
        let channel = store.revocation_channel();
        store.run(pubsub.subscribe(channel.as_str())).await?;
        // Subscribed first: whatever is published from now on arrives; whatever was
        // before, the catch-up reads.
        self.catch_up().await?;
        let mut last = Instant::now();
        let mut messages = pubsub.into_on_message();
        loop {
            let wait = CATCH_UP_EVERY.saturating_sub(last.elapsed());
            match tokio::time::timeout(wait, messages.next()).await {
                Ok(Some(message)) => self.apply(message.get_payload_bytes()),
                Ok(None) => return Err(redis_error(&closed())),
                Err(_) => {}
            }
            if self.set.upgrade().is_none() {
                return Ok(());
            }
            if last.elapsed() >= CATCH_UP_EVERY {
                self.catch_up().await?;
                last = Instant::now();
            }
        }
    }

    fn apply(&self, payload: &[u8]) {
        let (Some(set), Some(user)) = (self.set.upgrade(), revoked::message(payload)) else {
            return;
        };
        set.apply(&[user], self.clock.now());
    }

    async fn catch_up(&mut self) -> Result<(), StoreError> {
        let now = self.clock.now();
        let batch = self.store.revocations_since(self.cursor, now).await?;
        let Some(set) = self.set.upgrade() else {
            return Ok(());
        };
        set.apply(&batch.users, now);
        set.mark_synced(now);
        self.cursor = batch.cursor;
        self.synced_count += 1;
        Ok(())
    }
}

fn closed() -> redis::RedisError {
    redis::RedisError::from((redis::ErrorKind::Io, "pub/sub connection closed"))
}
