//! Test doubles: the user directory and the factor directory (with faults that the
//! `the_properties_catch_*` tests switch on). The store is in `store.rs`.

use crate::*;

/// Deliberate bugs, to show that the properties can fail.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Faults {
    /// `advance_totp_step` accepts every step: TOTP codes can be replayed.
    pub(crate) replayable_steps: bool,
    /// Challenge ids (`jti:` keys) are never remembered as used.
    pub(crate) reusable_challenges: bool,
    /// Failures are never counted, so nobody is ever locked out.
    pub(crate) no_lockout: bool,
    /// Attempts in flight are not counted: concurrent codes are judged before the limit
    /// is known (the race of issue 14, finding 1).
    pub(crate) unreserved_attempts: bool,
    /// A rotated refresh token stands for its family's current one: no reuse detection.
    pub(crate) no_reuse_detection: bool,
    /// The factor directory has lost carol's factor (while the model knows she has one).
    pub(crate) lost_factor: bool,
    /// `revoke_family` reports every family live: a step-up revives an ended session.
    pub(crate) revivable_sessions: bool,
    /// The layer runs a guard of its own (built apart from the completion's): it never
    /// learns which sessions ended, so their access tokens work on.
    pub(crate) unrevoked_layer: bool,
    /// The session list comes from a cache that never forgets a session it listed: an
    /// ended one stays listed.
    pub(crate) stale_session_list: bool,
    /// Sent codes are kept in one slot, not per challenge: a challenge with no code of
    /// its own reads the code sent last (for any challenge), so a code completes a
    /// challenge it was not sent for, or is accepted a second time there.
    pub(crate) unbound_sent_codes: bool,
    /// A wrong passkey assertion is not counted as a failure (the attempt is given back),
    /// as if only wrong codes counted towards the lockout.
    pub(crate) uncounted_passkeys: bool,
}

/// The application's email gateway: it keeps every code it was given, in order, for
/// the test to type.
#[derive(Default)]
pub(crate) struct CapturingSender {
    sent: Mutex<Vec<(String, String)>>,
}

impl CapturingSender {
    /// The last code sent to `user`, if any.
    pub(crate) fn last(&self, user: &str) -> Option<String> {
        let sent = self.sent.lock().unwrap();
        sent.iter()
            .rev()
            .find(|(u, _)| u == user)
            .map(|(_, c)| c.clone())
    }

    /// How many codes it was given.
    pub(crate) fn count(&self) -> usize {
        self.sent.lock().unwrap().len()
    }
}

impl CodeSender for CapturingSender {
    fn send<'a>(&'a self, message: &'a SentMessage<'a>) -> BackendFuture<'a, ()> {
        let entry = (message.user.to_owned(), message.code.to_owned());
        self.sent.lock().unwrap().push(entry);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// [`MemoryFactors`], yielding to the scheduler before each call (a database is a round
/// trip away), except with [`Faults::lost_factor`]: carol has no factor.
pub(crate) struct TestFactors {
    pub(crate) inner: Arc<MemoryFactors>,
    pub(crate) lose_carol: bool,
    /// Only for the lost-update tests.
    pub(crate) save_gate: Option<SaveGate>,
}

/// Makes concurrent saves of factors meet (each waits, at most 5 s, until all parties
/// are there), and optionally puts the save of one secret last: a chosen interleaving
/// of a real race, made certain.
#[derive(Clone)]
pub(crate) struct SaveGate {
    pub(crate) meet: Arc<tokio::sync::Barrier>,
    pub(crate) last: Option<Vec<u8>>,
    pub(crate) others_saved: Arc<tokio::sync::Notify>,
}

impl SaveGate {
    pub(crate) fn new(parties: usize, last: Option<&TotpSecret>) -> Self {
        SaveGate {
            meet: Arc::new(tokio::sync::Barrier::new(parties)),
            last: last.map(|s| s.as_bytes().to_vec()),
            others_saved: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

impl TestFactors {
    /// Waits at the save gate, if any: every party meets, and the save of the gate's
    /// `last` secret waits for the others.
    async fn gate<T>(&self, data: &[u8], save: impl Future<Output = T>) -> T {
        let Some(gate) = &self.save_gate else {
            return save.await;
        };
        // Not a clock: a bound on how long a missing party is waited for.
        let bound = Duration::from_secs(5);
        let _ = tokio::time::timeout(bound, gate.meet.wait()).await;
        if gate.last.as_deref() == Some(data) {
            let _ = tokio::time::timeout(bound, gate.others_saved.notified()).await;
            return save.await;
        }
        let saved = save.await;
        gate.others_saved.notify_one();
        saved
    }
}

impl Factors for TestFactors {
    fn factors<'a>(&'a self, user: &'a str) -> BackendFuture<'a, Vec<StoredFactor>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            if self.lose_carol && user == "carol" {
                return Ok(Vec::new());
            }
            self.inner.factors(user).await
        })
    }

    fn add_factor<'a>(&'a self, user: &'a str, factor: StoredFactor) -> BackendFuture<'a, ()> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            if factor.kind != kind::TOTP {
                return self.inner.add_factor(user, factor).await;
            }
            let data = factor.data.as_bytes().to_vec();
            self.gate(&data, self.inner.add_factor(user, factor)).await
        })
    }

    fn update_factor<'a>(
        &'a self,
        user: &'a str,
        factor: &'a StoredFactor,
        previous: &'a FactorData,
    ) -> BackendFuture<'a, bool> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            let save = self.inner.update_factor(user, factor, previous);
            self.gate(factor.data.as_bytes(), save).await
        })
    }

    fn remove_factor<'a>(&'a self, user: &'a str, id: &'a str) -> BackendFuture<'a, bool> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.inner.remove_factor(user, id).await
        })
    }
}
