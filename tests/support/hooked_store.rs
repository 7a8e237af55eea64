//! The one [`Store`] decorator of the tests: [`HookedStore`] delegates every operation to
//! an inner store, and asks a [`StoreHook`] before (it may wait, inject a fault or answer
//! in the store's place) and after (it may observe or alter the result). A test store is
//! a hook: it names the calls it cares about ([`Call`]) and lets the rest through.
//!
//! Adding a method to `Store` touches this file: one `Call` variant, one method below
//! (and any hook that matches every `Call`, as `tests/security.rs`'s `Record` does).
//!
//! A verify's two steps (`reserve_challenge`, `settle_challenge`) come two ways:
//! [`HookedStore::with_hook`] runs them as `tower_stepup::store::stepwise` does, through
//! this store, so the hook sees the single calls they are made of (`reserve_attempt`,
//! `is_consumed`, `consume`, …) and can fault any of them; [`HookedStore::whole`] hands
//! each to the inner store as one call (on Redis: one script), which the hook sees as
//! [`Call::ReserveChallenge`] and [`Call::SettleChallenge`].
//!
//! ```ignore
//! struct Down;
//! impl StoreHook for Down {
//!     fn before<'a>(&'a self, _: &'a dyn Store, _: &'a Call<'a>) -> HookFuture<'a, Option<CallResult>> {
//!         Box::pin(async { Some(Err(StoreError::Unavailable("down".into()))) })
//!     }
//! }
//! let store = HookedStore::with_hook(Arc::new(MemoryStore::new()), Down);
//! ```
#![allow(dead_code)]

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;

use tower_stepup::revocation::UserRevocations;
use tower_stepup::store::{
    stepwise, AttemptPolicy, Attempts, ChallengeOutcome, ChallengeReservation, ChallengeSettlement,
    DeviceInfo, DpopUse, Elevation, FamilyRef, FamilyRevocation, LoginLimits, RefreshRecord,
    Reservation, RevocationBatch, Rotation, SessionInfo, Settlement, Store, StoreError,
    StoreFuture, TokenHash,
};
use tower_stepup::Claims;

/// One store operation with its arguments, as the hook sees it.
#[derive(Clone, Debug)]
pub enum Call<'a> {
    /// [`Store::consume`].
    Consume {
        key: &'a str,
        expires_at: u64,
        now: u64,
    },
    /// [`Store::is_consumed`].
    IsConsumed { key: &'a str, now: u64 },
    /// [`Store::release`].
    Release { key: &'a str },
    /// [`Store::use_dpop_proof`].
    UseDpopProof {
        jkt: &'a str,
        jti: &'a str,
        expires_at: u64,
        now: u64,
    },
    /// [`Store::attempts`].
    Attempts { user: &'a str, now: u64 },
    /// [`Store::reserve_attempt`].
    ReserveAttempt {
        key: &'a str,
        policy: AttemptPolicy,
        now: u64,
    },
    /// [`Store::settle_attempt`].
    SettleAttempt {
        key: &'a str,
        settlement: Settlement,
        policy: AttemptPolicy,
        now: u64,
    },
    /// [`Store::reserve_challenge`] (with [`HookedStore::whole`] only).
    ReserveChallenge {
        user: &'a str,
        challenge: &'a str,
        policy: AttemptPolicy,
        now: u64,
    },
    /// [`Store::settle_challenge`] (with [`HookedStore::whole`] only).
    SettleChallenge {
        settlement: &'a ChallengeSettlement,
        now: u64,
    },
    /// [`Store::reserve_login`].
    ReserveLogin {
        account: &'a str,
        client: &'a str,
        limits: LoginLimits,
        now: u64,
    },
    /// [`Store::settle_login`].
    SettleLogin {
        account: &'a str,
        client: &'a str,
        settlement: Settlement,
        limits: LoginLimits,
        now: u64,
    },
    /// [`Store::advance_totp_step`].
    AdvanceTotpStep {
        user: &'a str,
        step: u64,
        expires_at: u64,
        now: u64,
    },
    /// [`Store::put`].
    Put {
        key: &'a str,
        value: Vec<u8>,
        expires_at: u64,
        now: u64,
    },
    /// [`Store::get`].
    Get { key: &'a str, now: u64 },
    /// [`Store::delete`].
    Delete { key: &'a str },
    /// [`Store::refresh_create`].
    RefreshCreate {
        token: TokenHash,
        record: RefreshRecord,
        now: u64,
    },
    /// [`Store::refresh_rotate`].
    RefreshRotate {
        family: &'a FamilyRef,
        token: TokenHash,
        new_token: TokenHash,
        now: u64,
    },
    /// [`Store::refresh_revoke`].
    RefreshRevoke {
        family: &'a FamilyRef,
        token: TokenHash,
        sub: &'a str,
        now: u64,
    },
    /// [`Store::revoke_family`].
    RevokeFamily {
        user: &'a str,
        family: &'a str,
        now: u64,
    },
    /// [`Store::refresh_elevate`].
    RefreshElevate {
        family: &'a str,
        new_token: TokenHash,
        session: Claims,
        issued_at: u64,
        now: u64,
    },
    /// [`Store::revoke_sessions`].
    RevokeSessions {
        revoked: &'a UserRevocations,
        now: u64,
    },
    /// [`Store::revocations_since`].
    RevocationsSince { cursor: u64, now: u64 },
    /// [`Store::sessions`].
    Sessions { user: &'a str, now: u64 },
    /// [`Store::end_session`].
    EndSession {
        user: &'a str,
        family: &'a str,
        now: u64,
    },
    /// [`Store::device_add`].
    DeviceAdd {
        user: &'a str,
        id: &'a str,
        expires_at: u64,
        now: u64,
    },
    /// [`Store::device_use`].
    DeviceUse {
        user: &'a str,
        id: &'a str,
        now: u64,
    },
    /// [`Store::devices`].
    Devices { user: &'a str, now: u64 },
    /// [`Store::device_remove`].
    DeviceRemove {
        user: &'a str,
        id: &'a str,
        now: u64,
    },
    /// [`Store::devices_clear`].
    DevicesClear { user: &'a str, now: u64 },
}

impl Call<'_> {
    /// The name of the `Store` method.
    pub fn name(&self) -> &'static str {
        match self {
            Call::Consume { .. } => "consume",
            Call::IsConsumed { .. } => "is_consumed",
            Call::Release { .. } => "release",
            Call::UseDpopProof { .. } => "use_dpop_proof",
            Call::Attempts { .. } => "attempts",
            Call::ReserveAttempt { .. } => "reserve_attempt",
            Call::SettleAttempt { .. } => "settle_attempt",
            Call::ReserveChallenge { .. } => "reserve_challenge",
            Call::SettleChallenge { .. } => "settle_challenge",
            Call::ReserveLogin { .. } => "reserve_login",
            Call::SettleLogin { .. } => "settle_login",
            Call::AdvanceTotpStep { .. } => "advance_totp_step",
            Call::Put { .. } => "put",
            Call::Get { .. } => "get",
            Call::Delete { .. } => "delete",
            Call::RefreshCreate { .. } => "refresh_create",
            Call::RefreshRotate { .. } => "refresh_rotate",
            Call::RefreshRevoke { .. } => "refresh_revoke",
            Call::RevokeFamily { .. } => "revoke_family",
            Call::RefreshElevate { .. } => "refresh_elevate",
            Call::RevokeSessions { .. } => "revoke_sessions",
            Call::RevocationsSince { .. } => "revocations_since",
            Call::Sessions { .. } => "sessions",
            Call::EndSession { .. } => "end_session",
            Call::DeviceAdd { .. } => "device_add",
            Call::DeviceUse { .. } => "device_use",
            Call::Devices { .. } => "devices",
            Call::DeviceRemove { .. } => "device_remove",
            Call::DevicesClear { .. } => "devices_clear",
        }
    }
}

/// What a store operation answered, whichever it was.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// `release`, `settle_login`, `put`, `delete`, `refresh_create`, `device_add`,
    /// `devices_clear`.
    Unit(()),
    /// `consume`, `is_consumed`, `advance_totp_step`, `refresh_revoke`, `device_use`,
    /// `device_remove`.
    Bool(bool),
    /// `attempts`, `settle_attempt`.
    Attempts(Attempts),
    /// `reserve_attempt`, `reserve_login`.
    Reservation(Reservation),
    /// `reserve_challenge`.
    Challenge(ChallengeReservation),
    /// `settle_challenge`.
    Settled(ChallengeOutcome),
    /// `use_dpop_proof`.
    Dpop(DpopUse),
    /// `get`.
    Value(Option<Vec<u8>>),
    /// `refresh_rotate`.
    Rotation(Rotation),
    /// `revoke_family`, `end_session`.
    Revocation(FamilyRevocation),
    /// `refresh_elevate`.
    Elevation(Elevation),
    /// `revoke_sessions`.
    Revoked(UserRevocations),
    /// `revocations_since`.
    Batch(RevocationBatch),
    /// `sessions`.
    Sessions(Vec<SessionInfo>),
    /// `devices`.
    Devices(Vec<DeviceInfo>),
}

/// The result of one operation.
pub type CallResult = Result<Answer, StoreError>;

/// The future of a hook.
pub type HookFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A store's answer type, back from an [`Answer`].
pub trait FromAnswer: Sized {
    /// The value, or a panic: a hook answered a call with another call's type.
    fn from_answer(answer: Answer, call: &str) -> Self;
}

macro_rules! answers {
    ($($variant:ident($ty:ty)),* $(,)?) => {$(
        impl From<$ty> for Answer {
            fn from(value: $ty) -> Self {
                Answer::$variant(value)
            }
        }
        impl FromAnswer for $ty {
            fn from_answer(answer: Answer, call: &str) -> Self {
                match answer {
                    Answer::$variant(value) => value,
                    other => panic!("a hook answered `{call}` with {other:?}"),
                }
            }
        }
    )*};
}

answers! {
    Unit(()),
    Bool(bool),
    Attempts(Attempts),
    Reservation(Reservation),
    Challenge(ChallengeReservation),
    Settled(ChallengeOutcome),
    Dpop(DpopUse),
    Value(Option<Vec<u8>>),
    Rotation(Rotation),
    Revocation(FamilyRevocation),
    Elevation(Elevation),
    Revoked(UserRevocations),
    Batch(RevocationBatch),
    Sessions(Vec<SessionInfo>),
    Devices(Vec<DeviceInfo>),
}

/// What a test store does around the inner store's operations. Both steps default to
/// doing nothing.
pub trait StoreHook: Send + Sync + 'static {
    /// Before `call` reaches `inner`: `Some(outcome)` answers it instead (the inner
    /// store is not called); `None` lets it through. May wait (a barrier, a yield).
    fn before<'a>(
        &'a self,
        inner: &'a dyn Store,
        call: &'a Call<'a>,
    ) -> HookFuture<'a, Option<CallResult>> {
        let _ = (inner, call);
        Box::pin(async { None })
    }

    /// After `call` was answered (by `inner` or by [`before`](StoreHook::before)): what
    /// the caller gets.
    fn after<'a>(
        &'a self,
        inner: &'a dyn Store,
        call: &'a Call<'a>,
        outcome: CallResult,
    ) -> HookFuture<'a, CallResult> {
        let _ = (inner, call);
        Box::pin(async move { outcome })
    }
}

/// A [`Store`] that delegates to `inner` through a [`StoreHook`]. Derefs to the hook, so
/// a test reads what its hook saw as `store.counts(…)`.
pub struct HookedStore<H> {
    /// The store underneath (calls to it bypass the hook).
    pub inner: Arc<dyn Store>,
    hook: H,
    /// Whether a verify's two steps go to the inner store whole.
    whole: bool,
}

impl<H: StoreHook> HookedStore<H> {
    /// `inner`, seen through `hook`, a verify's two steps made of single calls.
    pub fn with_hook(inner: Arc<dyn Store>, hook: H) -> Self {
        Self {
            inner,
            hook,
            whole: false,
        }
    }

    /// `inner`, seen through `hook`, a verify's two steps each one call of `inner`.
    pub fn whole(inner: Arc<dyn Store>, hook: H) -> Self {
        Self {
            inner,
            hook,
            whole: true,
        }
    }

    /// One operation: the hook before, the inner store (unless the hook answered), the
    /// hook after.
    fn run<'a, T>(
        &'a self,
        call: Call<'a>,
        op: impl FnOnce(&'a dyn Store) -> StoreFuture<'a, T> + Send + 'a,
    ) -> StoreFuture<'a, T>
    where
        T: Into<Answer> + FromAnswer + Send + 'a,
    {
        Box::pin(async move {
            let inner: &'a dyn Store = &*self.inner;
            let outcome = match self.hook.before(inner, &call).await {
                Some(outcome) => outcome,
                None => op(inner).await.map(Into::into),
            };
            let outcome = self.hook.after(inner, &call, outcome).await;
            outcome.map(|answer| T::from_answer(answer, call.name()))
        })
    }
}

impl<H> Deref for HookedStore<H> {
    type Target = H;

    fn deref(&self) -> &H {
        &self.hook
    }
}

impl<H: StoreHook> Store for HookedStore<H> {
    fn consume<'a>(&'a self, key: &'a str, expires_at: u64, now: u64) -> StoreFuture<'a, bool> {
        let call = Call::Consume {
            key,
            expires_at,
            now,
        };
        self.run(call, move |s| s.consume(key, expires_at, now))
    }

    fn is_consumed<'a>(&'a self, key: &'a str, now: u64) -> StoreFuture<'a, bool> {
        let call = Call::IsConsumed { key, now };
        self.run(call, move |s| s.is_consumed(key, now))
    }

    fn release<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        self.run(Call::Release { key }, move |s| s.release(key))
    }

    fn use_dpop_proof<'a>(
        &'a self,
        jkt: &'a str,
        jti: &'a str,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, DpopUse> {
        let call = Call::UseDpopProof {
            jkt,
            jti,
            expires_at,
            now,
        };
        self.run(call, move |s| s.use_dpop_proof(jkt, jti, expires_at, now))
    }

    fn attempts<'a>(&'a self, user: &'a str, now: u64) -> StoreFuture<'a, Attempts> {
        let call = Call::Attempts { user, now };
        self.run(call, move |s| s.attempts(user, now))
    }

    fn reserve_attempt<'a>(
        &'a self,
        key: &'a str,
        policy: AttemptPolicy,
        now: u64,
    ) -> StoreFuture<'a, Reservation> {
        let call = Call::ReserveAttempt { key, policy, now };
        self.run(call, move |s| s.reserve_attempt(key, policy, now))
    }

    fn settle_attempt<'a>(
        &'a self,
        key: &'a str,
        settlement: Settlement,
        policy: AttemptPolicy,
        now: u64,
    ) -> StoreFuture<'a, Attempts> {
        let call = Call::SettleAttempt {
            key,
            settlement,
            policy,
            now,
        };
        self.run(call, move |s| {
            s.settle_attempt(key, settlement, policy, now)
        })
    }

    fn reserve_challenge<'a>(
        &'a self,
        user: &'a str,
        challenge: &'a str,
        policy: AttemptPolicy,
        now: u64,
    ) -> StoreFuture<'a, ChallengeReservation> {
        if !self.whole {
            return Box::pin(stepwise::reserve_challenge(
                self, user, challenge, policy, now,
            ));
        }
        let call = Call::ReserveChallenge {
            user,
            challenge,
            policy,
            now,
        };
        self.run(call, move |s| {
            s.reserve_challenge(user, challenge, policy, now)
        })
    }

    fn settle_challenge<'a>(
        &'a self,
        settlement: &'a ChallengeSettlement,
        now: u64,
    ) -> StoreFuture<'a, ChallengeOutcome> {
        if !self.whole {
            return Box::pin(stepwise::settle_challenge(self, settlement, now));
        }
        let call = Call::SettleChallenge { settlement, now };
        self.run(call, move |s| s.settle_challenge(settlement, now))
    }

    fn reserve_login<'a>(
        &'a self,
        account: &'a str,
        client: &'a str,
        limits: LoginLimits,
        now: u64,
    ) -> StoreFuture<'a, Reservation> {
        let call = Call::ReserveLogin {
            account,
            client,
            limits,
            now,
        };
        self.run(call, move |s| s.reserve_login(account, client, limits, now))
    }

    fn settle_login<'a>(
        &'a self,
        account: &'a str,
        client: &'a str,
        settlement: Settlement,
        limits: LoginLimits,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        let call = Call::SettleLogin {
            account,
            client,
            settlement,
            limits,
            now,
        };
        self.run(call, move |s| {
            s.settle_login(account, client, settlement, limits, now)
        })
    }

    fn advance_totp_step<'a>(
        &'a self,
        user: &'a str,
        step: u64,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, bool> {
        let call = Call::AdvanceTotpStep {
            user,
            step,
            expires_at,
            now,
        };
        self.run(call, move |s| {
            s.advance_totp_step(user, step, expires_at, now)
        })
    }

    fn put<'a>(
        &'a self,
        key: &'a str,
        value: Vec<u8>,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        let call = Call::Put {
            key,
            value: value.clone(),
            expires_at,
            now,
        };
        self.run(call, move |s| s.put(key, value, expires_at, now))
    }

    fn get<'a>(&'a self, key: &'a str, now: u64) -> StoreFuture<'a, Option<Vec<u8>>> {
        self.run(Call::Get { key, now }, move |s| s.get(key, now))
    }

    fn delete<'a>(&'a self, key: &'a str) -> StoreFuture<'a, ()> {
        self.run(Call::Delete { key }, move |s| s.delete(key))
    }

    fn refresh_create<'a>(
        &'a self,
        token: TokenHash,
        record: RefreshRecord,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        let call = Call::RefreshCreate {
            token,
            record: record.clone(),
            now,
        };
        self.run(call, move |s| s.refresh_create(token, record, now))
    }

    fn refresh_rotate<'a>(
        &'a self,
        family: &'a FamilyRef,
        token: TokenHash,
        new_token: TokenHash,
        now: u64,
    ) -> StoreFuture<'a, Rotation> {
        let call = Call::RefreshRotate {
            family,
            token,
            new_token,
            now,
        };
        self.run(call, move |s| {
            s.refresh_rotate(family, token, new_token, now)
        })
    }

    fn refresh_revoke<'a>(
        &'a self,
        family: &'a FamilyRef,
        token: TokenHash,
        sub: &'a str,
        now: u64,
    ) -> StoreFuture<'a, bool> {
        let call = Call::RefreshRevoke {
            family,
            token,
            sub,
            now,
        };
        self.run(call, move |s| s.refresh_revoke(family, token, sub, now))
    }

    fn revoke_family<'a>(
        &'a self,
        user: &'a str,
        family: &'a str,
        now: u64,
    ) -> StoreFuture<'a, FamilyRevocation> {
        let call = Call::RevokeFamily { user, family, now };
        self.run(call, move |s| s.revoke_family(user, family, now))
    }

    fn refresh_elevate<'a>(
        &'a self,
        family: &'a str,
        new_token: TokenHash,
        session: Claims,
        issued_at: u64,
        now: u64,
    ) -> StoreFuture<'a, Elevation> {
        let call = Call::RefreshElevate {
            family,
            new_token,
            session: session.clone(),
            issued_at,
            now,
        };
        self.run(call, move |s| {
            s.refresh_elevate(family, new_token, session, issued_at, now)
        })
    }

    fn revoke_sessions<'a>(
        &'a self,
        revoked: &'a UserRevocations,
        now: u64,
    ) -> StoreFuture<'a, UserRevocations> {
        let call = Call::RevokeSessions { revoked, now };
        self.run(call, move |s| s.revoke_sessions(revoked, now))
    }

    fn revocations_since<'a>(&'a self, cursor: u64, now: u64) -> StoreFuture<'a, RevocationBatch> {
        let call = Call::RevocationsSince { cursor, now };
        self.run(call, move |s| s.revocations_since(cursor, now))
    }

    fn sessions<'a>(&'a self, user: &'a str, now: u64) -> StoreFuture<'a, Vec<SessionInfo>> {
        self.run(Call::Sessions { user, now }, move |s| s.sessions(user, now))
    }

    fn end_session<'a>(
        &'a self,
        user: &'a str,
        family: &'a str,
        now: u64,
    ) -> StoreFuture<'a, FamilyRevocation> {
        let call = Call::EndSession { user, family, now };
        self.run(call, move |s| s.end_session(user, family, now))
    }

    fn device_add<'a>(
        &'a self,
        user: &'a str,
        id: &'a str,
        expires_at: u64,
        now: u64,
    ) -> StoreFuture<'a, ()> {
        let call = Call::DeviceAdd {
            user,
            id,
            expires_at,
            now,
        };
        self.run(call, move |s| s.device_add(user, id, expires_at, now))
    }

    fn device_use<'a>(&'a self, user: &'a str, id: &'a str, now: u64) -> StoreFuture<'a, bool> {
        let call = Call::DeviceUse { user, id, now };
        self.run(call, move |s| s.device_use(user, id, now))
    }

    fn devices<'a>(&'a self, user: &'a str, now: u64) -> StoreFuture<'a, Vec<DeviceInfo>> {
        self.run(Call::Devices { user, now }, move |s| s.devices(user, now))
    }

    fn device_remove<'a>(&'a self, user: &'a str, id: &'a str, now: u64) -> StoreFuture<'a, bool> {
        let call = Call::DeviceRemove { user, id, now };
        self.run(call, move |s| s.device_remove(user, id, now))
    }

    fn devices_clear<'a>(&'a self, user: &'a str, now: u64) -> StoreFuture<'a, ()> {
        let call = Call::DevicesClear { user, now };
        self.run(call, move |s| s.devices_clear(user, now))
    }
}
