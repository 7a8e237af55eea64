//! The store under test: the [`MemoryStore`] through [`TestStore`], with [`Faults`].

use crate::*;

/// The [`MemoryStore`], yielding to the scheduler before each operation (so concurrent
/// verifies interleave between any two store calls), with optional [`Faults`].
pub(crate) struct TestStore {
    inner: MemoryStore,
    faults: Faults,
    /// With `no_reuse_detection`: each rotated refresh token → its successor.
    successors: Mutex<HashMap<TokenHash, TokenHash>>,
    /// Codes judged so far: attempts settled as failed, and as succeeded.
    judged: [AtomicUsize; 2],
}

impl TestStore {
    /// Codes judged so far: [failed, succeeded].
    pub(crate) fn judged(&self) -> [usize; 2] {
        self.judged.each_ref().map(|n| n.load(SeqCst))
    }

    pub(crate) fn new(faults: Faults) -> Self {
        Self {
            inner: MemoryStore::new(),
            faults,
            successors: Mutex::new(HashMap::new()),
            judged: Default::default(),
        }
    }

    fn newest(&self, mut token: TokenHash) -> TokenHash {
        let map = self.successors.lock().unwrap();
        while let Some(next) = map.get(&token) {
            token = *next;
        }
        token
    }
}

impl Store for TestStore {
    fn consume<'a>(&'a self, key: &'a str, expires_at: u64, now: u64) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            if self.faults.reusable_challenges && key.starts_with("jti:") {
                return Ok(true);
            }
            self.inner.consume(key, expires_at, now).await
        })
    }

    fn is_consumed<'a>(&'a self, key: &'a str, now: u64) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            if self.faults.reusable_challenges && key.starts_with("jti:") {
                return Ok(false);
            }
            self.inner.is_consumed(key, now).await
        })
    }

    fn release<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.inner.release(key).await
        })
    }

    fn attempts<'a>(&'a self, user: &'a str, now: u64) -> StoreFuture<'a, Attempts> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            if self.faults.no_lockout {
                return Ok(Attempts::default());
            }
            self.inner.attempts(user, now).await
        })
    }

    fn reserve_attempt<'a>(
        &'a self,
        key: &'a str,
        policy: AttemptPolicy,
        now: u64,
    ) -> StoreFuture<'a, Reservation> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            if self.faults.no_lockout {
                return Ok(Reservation::Granted);
            }
            match self.inner.reserve_attempt(key, policy, now).await? {
                // Only recorded failures counted, not the attempts in flight.
                Reservation::Busy if self.faults.unreserved_attempts => Ok(Reservation::Granted),
                other => Ok(other),
            }
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
            tokio::task::yield_now().await;
            let slot = match settlement {
                Settlement::Failed => self.judged.first(),
                Settlement::Succeeded => self.judged.get(1),
                _ => None,
            };
            if let Some(n) = slot {
                n.fetch_add(1, SeqCst);
            }
            if self.faults.no_lockout {
                return Ok(Attempts {
                    failures: 1,
                    locked_until: None,
                });
            }
            self.inner
                .settle_attempt(key, settlement, policy, now)
                .await
        })
    }
    fn reserve_login<'a>(
        &'a self,
        account: &'a str,
        client: &'a str,
        limits: LoginLimits,
        now: u64,
    ) -> StoreFuture<'a, Reservation> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.inner.reserve_login(account, client, limits, now).await
        })
    }

    fn settle_login<'a>(
        &'a self,
        account: &'a str,
        client: &'a str,
        settlement: Settlement,
        limits: LoginLimits,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.inner
                .settle_login(account, client, settlement, limits, now)
                .await
        })
    }

    fn advance_totp_step<'a>(
        &'a self,
        user: &'a str,
        step: u64,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            let fresh = self
                .inner
                .advance_totp_step(user, step, expires_at, now)
                .await?;
            Ok(fresh || self.faults.replayable_steps)
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.inner.put(key, value, expires_at, now).await
        })
    }

    fn get<'a>(&'a self, key: &'a str, now: u64) -> StoreFuture<'a, Option<Vec<u8>>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.inner.get(key, now).await
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.inner.delete(key).await
        })
    }

    fn refresh_create<'a>(
        &'a self,
        token: TokenHash,
        record: RefreshRecord,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.inner.refresh_create(token, record, now).await
        })
    }

    fn refresh_rotate<'a>(
        &'a self,
        token: TokenHash,
        new_token: TokenHash,
        now: u64,
    ) -> StoreFuture<'a, Rotation> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            if !self.faults.no_reuse_detection {
                return self.inner.refresh_rotate(token, new_token, now).await;
            }
            let newest = self.newest(token);
            let rotation = self.inner.refresh_rotate(newest, new_token, now).await?;
            if matches!(rotation, Rotation::Rotated(_)) {
                let mut map = self.successors.lock().unwrap();
                map.insert(token, new_token);
                map.insert(newest, new_token);
            }
            Ok(rotation)
        })
    }

    fn refresh_revoke<'a>(
        &'a self,
        token: TokenHash,
        sub: &'a str,
        now: u64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.inner.refresh_revoke(token, sub, now).await
        })
    }

    fn revoke_family<'a>(&'a self, family: &'a str, now: u64) -> StoreFuture<'a, FamilyRevocation> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            let found = self.inner.revoke_family(family, now).await?;
            if self.faults.revivable_sessions && found == FamilyRevocation::AlreadyRevoked {
                return Ok(FamilyRevocation::Revoked);
            }
            Ok(found)
        })
    }
    fn refresh_elevate<'a>(
        &'a self,
        family: &'a str,
        new_token: TokenHash,
        session: String,
        issued_at: u64,
        now: u64,
    ) -> StoreFuture<'a, Elevation> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            let found = self
                .inner
                .refresh_elevate(family, new_token, session.clone(), issued_at, now)
                .await?;
            if self.faults.revivable_sessions && found == Elevation::Ended {
                // A store that forgets the revocation: the ended session lives again.
                let sub = serde_json::from_str::<serde_json::Value>(&session)
                    .ok()
                    .and_then(|v| v["sub"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                let record = RefreshRecord {
                    family: family.to_owned(),
                    sub,
                    session,
                    expires_at: now + REFRESH_LIFETIME,
                };
                self.inner
                    .refresh_create(new_token, record.clone(), now)
                    .await?;
                return Ok(Elevation::Elevated(record));
            }
            Ok(found)
        })
    }
}
