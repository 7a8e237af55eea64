//! A verify's two store steps made of the single-purpose methods, one call after the
//! other: the provided [`Store::reserve_challenge`] and [`Store::settle_challenge`].
//!
//! Each call is atomic on its own; the sequence is not, and needs not be: the challenge
//! is spent by one [`Store::consume`], which of concurrent verifies only one wins. A
//! backend with round trips does each step at once instead (`RedisStore`: one script).
//! A decorator that wants its hooks to see the single calls runs these on itself.

use super::{
    Attempts, ChallengeOutcome, ChallengeReservation, ChallengeSettlement, JudgedProof,
    Reservation, SessionChange, Settlement, Store, StoreError,
};

/// [`Store::reserve_challenge`] as [`Store::reserve_attempt`], then
/// [`Store::is_consumed`] of the challenge (unless locked out); a granted attempt on a
/// spent challenge is given back.
pub async fn reserve_challenge<S: Store + ?Sized>(
    store: &S,
    user: &str,
    challenge: &str,
    policy: super::AttemptPolicy,
    now: u64,
) -> Result<ChallengeReservation, StoreError> {
    let granted = match store.reserve_attempt(user, policy, now).await? {
        Reservation::Locked { until } => return Ok(ChallengeReservation::Locked { until }),
        Reservation::Granted => true,
        _ => false,
    };
    let spent = store.is_consumed(challenge, now).await;
    if granted && spent != Ok(false) {
        // Best effort: a reservation never settled runs out by itself.
        let _ = store
            .settle_attempt(user, Settlement::Released, policy, now)
            .await;
    }
    Ok(match (spent?, granted) {
        (true, _) => ChallengeReservation::Spent,
        (false, true) => ChallengeReservation::Granted,
        (false, false) => ChallengeReservation::Busy,
    })
}

/// How the challenge and the proof of one settlement turned out.
enum Spending {
    /// The challenge was spent before.
    Spent,
    /// A wrong proof, or (`true`) a replayed one: the challenge is not spent.
    Wrong(bool),
    /// Right and fresh: the challenge and the proof are spent now.
    Right,
}

/// [`Store::settle_challenge`]: for a wrong proof [`Store::is_consumed`] of the
/// challenge; for a right one [`Store::consume`] of it, then
/// [`Store::advance_totp_step`] (or `consume` of the recovery code), [`Store::release`]
/// of the challenge if that was a replay; then
/// [`Store::settle_attempt`], a lockout's `consume` of the challenge, and the session
/// change ([`Store::refresh_create`], [`Store::refresh_elevate`]). An error before the
/// attempt is settled gives it back.
pub async fn settle_challenge<S: Store + ?Sized>(
    store: &S,
    s: &ChallengeSettlement,
    now: u64,
) -> Result<ChallengeOutcome, StoreError> {
    let settle = |settlement| store.settle_attempt(&s.user, settlement, s.policy, now);
    match spend(store, s, now).await {
        Ok(Spending::Spent) => {
            let _ = settle(Settlement::Released).await;
            Ok(ChallengeOutcome::Spent)
        }
        Ok(Spending::Wrong(replayed)) => {
            let attempts: Attempts = settle(Settlement::Failed).await?;
            if attempts.is_locked(now) {
                store.consume(&s.challenge, s.expires_at, now).await?;
            }
            Ok(ChallengeOutcome::Failed { attempts, replayed })
        }
        Ok(Spending::Right) => {
            settle(Settlement::Succeeded).await?;
            let elevation = match &s.session {
                SessionChange::Start { token, record } => {
                    store.refresh_create(*token, record.clone(), now).await?;
                    None
                }
                SessionChange::Elevate {
                    family,
                    new_token,
                    session,
                    issued_at,
                } => Some(
                    store
                        .refresh_elevate(family, *new_token, session.clone(), *issued_at, now)
                        .await?,
                ),
                SessionChange::None => None,
            };
            Ok(ChallengeOutcome::Succeeded(elevation))
        }
        Err(e) => {
            let _ = settle(Settlement::Released).await;
            Err(e)
        }
    }
}

/// Spends the challenge and the proof, exactly once: of concurrent settlements of one
/// challenge, one gets past its `consume`. (It is released again if the proof is a
/// replay.)
async fn spend<S: Store + ?Sized>(
    store: &S,
    s: &ChallengeSettlement,
    now: u64,
) -> Result<Spending, StoreError> {
    if s.proof == JudgedProof::Wrong {
        return Ok(match store.is_consumed(&s.challenge, now).await? {
            true => Spending::Spent,
            false => Spending::Wrong(false),
        });
    }
    if !store.consume(&s.challenge, s.expires_at, now).await? {
        return Ok(Spending::Spent);
    }
    let fresh = match &s.proof {
        JudgedProof::TotpStep { step, forget_at } => {
            store
                .advance_totp_step(&s.user, *step, *forget_at, now)
                .await?
        }
        JudgedProof::Once { key, forget_at } => store.consume(key, *forget_at, now).await?,
        JudgedProof::Wrong => false,
    };
    if !fresh {
        store.release(&s.challenge).await?;
        return Ok(Spending::Wrong(true));
    }
    Ok(Spending::Right)
}
