//! The store under test: the [`MemoryStore`] through [`TestStore`], a [`HookedStore`] with
//! [`Faults`].

use crate::hooked_store::{Answer, Call, CallResult, HookFuture, HookedStore, StoreHook};
use crate::*;
use tower_stepup::store::SessionInfo;

/// The [`MemoryStore`], yielding to the scheduler before each operation (so concurrent
/// verifies interleave between any two store calls), with optional [`Faults`].
pub(crate) type TestStore = HookedStore<TestHook>;

/// The hook of [`TestStore`].
pub(crate) struct TestHook {
    faults: Faults,
    /// With `no_reuse_detection`: each rotated refresh token → its successor.
    successors: Mutex<HashMap<TokenHash, TokenHash>>,
    /// Codes judged so far: attempts settled as failed, and as succeeded.
    judged: [AtomicUsize; 2],
    /// With `stale_session_list`: every session listed so far, per user.
    listed: Mutex<HashMap<String, Vec<SessionInfo>>>,
    /// With `unbound_sent_codes`: the code stored last, for any challenge.
    last_sent: Mutex<Option<Vec<u8>>>,
    /// With `uncounted_passkeys`: users whose verify read their passkey challenge and has
    /// not settled its attempt yet.
    judging_passkey: Mutex<HashSet<String>>,
}

/// Whether `key` is an attempt key of a user (not the key that counts their sends,
/// which starts with U+001F).
fn user_key(key: &str) -> bool {
    !key.starts_with('\u{1f}')
}

/// Whether `key` holds a code sent for a challenge (not its single-use mark).
fn sent_code_key(key: &str) -> bool {
    key.starts_with("sent:") && !key.ends_with(":used")
}

impl TestStore {
    pub(crate) fn new(faults: Faults) -> Self {
        let hook = TestHook {
            faults,
            successors: Mutex::new(HashMap::new()),
            judged: Default::default(),
            listed: Mutex::new(HashMap::new()),
            last_sent: Mutex::new(None),
            judging_passkey: Mutex::new(HashSet::new()),
        };
        HookedStore::with_hook(Arc::new(MemoryStore::new()), hook)
    }
}

impl TestHook {
    /// Codes judged so far: [failed, succeeded].
    pub(crate) fn judged(&self) -> [usize; 2] {
        self.judged.each_ref().map(|n| n.load(SeqCst))
    }

    fn newest(&self, mut token: TokenHash) -> TokenHash {
        let map = self.successors.lock().unwrap();
        while let Some(next) = map.get(&token) {
            token = *next;
        }
        token
    }

    /// Counts a judged code: a settlement as failed or succeeded.
    fn judge(&self, settlement: Settlement) {
        let slot = match settlement {
            Settlement::Failed => self.judged.first(),
            Settlement::Succeeded => self.judged.get(1),
            _ => None,
        };
        if let Some(n) = slot {
            n.fetch_add(1, SeqCst);
        }
    }

    /// With `no_reuse_detection`: any token ever rotated stands for its family's newest.
    async fn rotate_newest(
        &self,
        inner: &dyn Store,
        family: &FamilyRef,
        token: TokenHash,
        new_token: TokenHash,
        now: u64,
    ) -> CallResult {
        let newest = self.newest(token);
        let rotation = inner.refresh_rotate(family, newest, new_token, now).await?;
        if matches!(rotation, Rotation::Rotated(_)) {
            let mut map = self.successors.lock().unwrap();
            map.insert(token, new_token);
            map.insert(newest, new_token);
        }
        Ok(rotation.into())
    }

    /// With `stale_session_list`: the live sessions of `user` and every one listed before
    /// that is no longer live, oldest first.
    fn stale_list(&self, user: &str, mut live: Vec<SessionInfo>) -> Answer {
        let mut listed = self.listed.lock().unwrap();
        let known = listed.entry(user.to_owned()).or_default();
        for s in known.iter() {
            if !live.iter().any(|l| l.family == s.family) {
                live.push(s.clone());
            }
        }
        live.sort_by_key(|s| s.created_at);
        known.clone_from(&live);
        Answer::Sessions(live)
    }

    /// With `revivable_sessions`: a store that forgets the revocation, so the ended
    /// session lives again.
    async fn revive(
        &self,
        inner: &dyn Store,
        family: &str,
        new_token: TokenHash,
        session: &Claims,
        now: u64,
    ) -> CallResult {
        let record = RefreshRecord {
            family: family.to_owned(),
            sub: session.sub().to_owned(),
            session: session.clone(),
            expires_at: now + REFRESH_LIFETIME,
            idle_secs: None,
        };
        inner.refresh_create(new_token, record.clone(), now).await?;
        Ok(Elevation::Elevated(record).into())
    }
}

impl StoreHook for TestHook {
    fn before<'a>(
        &'a self,
        inner: &'a dyn Store,
        call: &'a Call<'a>,
    ) -> HookFuture<'a, Option<CallResult>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            let f = &self.faults;
            let answer: Answer = match *call {
                Call::Consume { key, .. } if f.reusable_challenges && key.starts_with("jti:") => {
                    true.into()
                }
                Call::IsConsumed { key, .. }
                    if f.reusable_challenges && key.starts_with("jti:") =>
                {
                    false.into()
                }
                Call::Attempts { .. } if f.no_lockout => Attempts::default().into(),
                Call::ReserveAttempt { key, .. } if f.no_lockout && user_key(key) => {
                    Reservation::Granted.into()
                }
                // Sends are counted apart (`reserve_send`): no code is judged.
                Call::SettleAttempt { key, .. } if !user_key(key) => return None,
                Call::SettleAttempt {
                    key,
                    settlement: Settlement::Failed,
                    policy,
                    now,
                } if f.uncounted_passkeys && self.judging_passkey.lock().unwrap().remove(key) => {
                    // The wrong assertion's attempt is given back instead.
                    let released = inner.settle_attempt(key, Settlement::Released, policy, now);
                    return Some(released.await.map(Into::into));
                }
                Call::SettleAttempt {
                    key, settlement, ..
                } => {
                    self.judging_passkey.lock().unwrap().remove(key);
                    self.judge(settlement);
                    if !f.no_lockout {
                        return None;
                    }
                    Attempts {
                        failures: 1,
                        locked_until: None,
                    }
                    .into()
                }
                Call::Get { key, .. } if f.uncounted_passkeys && key.starts_with("pkc:") => {
                    let user = key.trim_start_matches("pkc:").to_owned();
                    self.judging_passkey.lock().unwrap().insert(user);
                    return None;
                }
                Call::Put { key, ref value, .. } if f.unbound_sent_codes && sent_code_key(key) => {
                    *self.last_sent.lock().unwrap() = Some(value.clone());
                    return None;
                }
                Call::RefreshRotate {
                    family,
                    token,
                    new_token,
                    now,
                } if f.no_reuse_detection => {
                    let rotated = self.rotate_newest(inner, family, token, new_token, now);
                    return Some(rotated.await);
                }
                _ => return None,
            };
            Some(Ok(answer))
        })
    }

    fn after<'a>(
        &'a self,
        inner: &'a dyn Store,
        call: &'a Call<'a>,
        outcome: CallResult,
    ) -> HookFuture<'a, CallResult> {
        Box::pin(async move {
            let f = &self.faults;
            Ok(match (call, outcome?) {
                // Only recorded failures counted, not the attempts in flight.
                (Call::ReserveAttempt { .. }, Answer::Reservation(Reservation::Busy))
                    if f.unreserved_attempts =>
                {
                    Reservation::Granted.into()
                }
                (Call::AdvanceTotpStep { .. }, Answer::Bool(fresh)) => {
                    (fresh || f.replayable_steps).into()
                }
                (
                    Call::RevokeFamily { .. },
                    Answer::Revocation(FamilyRevocation::AlreadyRevoked),
                ) if f.revivable_sessions => FamilyRevocation::Revoked.into(),
                (
                    Call::RefreshElevate {
                        family,
                        new_token,
                        session,
                        now,
                        ..
                    },
                    Answer::Elevation(Elevation::Ended),
                ) if f.revivable_sessions => {
                    return self.revive(inner, family, *new_token, session, *now).await;
                }
                (Call::Get { key, .. }, Answer::Value(None))
                    if f.unbound_sent_codes && sent_code_key(key) =>
                {
                    Answer::Value(self.last_sent.lock().unwrap().clone())
                }
                (Call::Sessions { user, .. }, Answer::Sessions(live)) if f.stale_session_list => {
                    self.stale_list(user, live)
                }
                (_, answer) => answer,
            })
        })
    }
}
