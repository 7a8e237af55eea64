//! A verify's two steps in Redis, one script each, on keys of the user's slot: the
//! user's attempts (`P:att:{T}:<user>`), the challenge (`P:used:{T}:jti:<id>`), and for
//! the second the proof (the TOTP step `P:totp:{T}:<user>`, or the recovery code
//! `P:used:{T}:rc:…`) and the session (`P:fam:{T}:<family>`, `P:uf:{T}:<user>`).

use redis::{Script, Value};

use super::families::{elevation, reply_int, reply_u64, FAMILY_PARTS};
use super::{
    code, horizon, num, policy_args, script_text, tagged_key, user_tag, with_expiry, RedisStore,
    ATTEMPTS_KEY, ATTEMPTS_LIB, RESERVATION_SECS, TOTP_LIB, USED_LIB,
};
use crate::store::{
    AttemptPolicy, Attempts, ChallengeOutcome, ChallengeReservation, ChallengeSettlement,
    JudgedProof, SessionChange, StoreError,
};

/// KEYS: the user's attempts, the challenge. ARGV: now, max_attempts, pending_until.
/// Returns {LOCKED, locked_until}, {SPENT, 0}, {BUSY, 0} or {GRANTED, 0}, checked in
/// that order; only GRANTED holds an attempt.
const RESERVE_CHALLENGE: &str = r"
local a = att_load(KEYS[1])
local answer = att_check(a, ARGV[2])
if answer == LOCKED then return {LOCKED, a.l} end
if used_live(KEYS[2]) then return {SPENT, 0} end
if answer == BUSY then return {BUSY, 0} end
att_hold(a, ARGV[3])
att_save(KEYS[1], a)
return {GRANTED, 0}
";

/// KEYS: the user's attempts, the challenge, the proof (the user's TOTP step, or the
/// recovery code's key), the family, the user's set of families. ARGV: now, the
/// challenge's value (its expiry) and ttl ms, max_attempts, lock_until, window_until,
/// the proof (PROOF_WRONG, PROOF_TOTP, PROOF_RECOVERY), the step (or the code's value),
/// the step's expiry, the proof's ttl ms, the session change (SESSION_NONE,
/// SESSION_START, SESSION_ELEVATE), then from ARGV[12] on the family to start
/// (`family_create_at`) or the step-up (`family_elevate_at`).
///
/// Returns {SETTLED_SPENT} (spent meanwhile: the attempt given back), {SETTLED_FAILED,
/// failures, locked_until, replayed (0, 1)} (a lockout spends the challenge too), or
/// {SETTLED_SUCCEEDED} and, for a step-up, what `family_elevate_at` answered.
const SETTLE_CHALLENGE: &str = r"
local a = att_load(KEYS[1])
local function settle(settlement)
  att_settle(a, settlement, ARGV[4], ARGV[5], ARGV[6])
  att_save(KEYS[1], a)
end
if used_live(KEYS[2]) then
  settle(RELEASED)
  return {SETTLED_SPENT}
end
local proof, fresh = tonumber(ARGV[7]), false
if proof == PROOF_TOTP then
  fresh = totp_advance(KEYS[3], ARGV[8], ARGV[9], ARGV[10])
elseif proof == PROOF_RECOVERY then
  fresh = used_consume(KEYS[3], ARGV[8], ARGV[10])
end
if not fresh then
  settle(FAILED)
  if a.l > 0 then used_consume(KEYS[2], ARGV[2], ARGV[3]) end
  local replayed = 0
  if proof ~= PROOF_WRONG then replayed = 1 end
  return {SETTLED_FAILED, a.f, a.l, replayed}
end
used_consume(KEYS[2], ARGV[2], ARGV[3])
settle(SUCCEEDED)
local change = tonumber(ARGV[11])
if change == SESSION_START then
  family_create_at(KEYS[4], KEYS[5], 12)
elseif change == SESSION_ELEVATE then
  local e = family_elevate_at(KEYS[4], 12)
  return {SETTLED_SUCCEEDED, e[1], e[2], e[3]}
end
return {SETTLED_SUCCEEDED}
";

struct Scripts {
    reserve: Script,
    settle: Script,
}

/// The parts of every script of this module, as [`scripts`] joins them.
pub(super) fn script_parts() -> [Vec<&'static str>; 2] {
    let [now, idle, family] = FAMILY_PARTS;
    [
        vec![now, ATTEMPTS_LIB, ATTEMPTS_KEY, USED_LIB, RESERVE_CHALLENGE],
        vec![
            now,
            ATTEMPTS_LIB,
            ATTEMPTS_KEY,
            USED_LIB,
            TOTP_LIB,
            idle,
            family,
            SETTLE_CHALLENGE,
        ],
    ]
}

fn scripts() -> &'static Scripts {
    static SCRIPTS: std::sync::OnceLock<Scripts> = std::sync::OnceLock::new();
    SCRIPTS.get_or_init(|| {
        let [reserve, settle] = script_parts().map(|p| Script::new(&script_text(&p)));
        Scripts { reserve, settle }
    })
}

/// The keys of a verify of `user`: attempts, challenge, proof, family, set of families.
/// All in the user's slot; the family is the session's (a placeholder of the user's
/// when the settlement changes none).
pub(super) struct ChallengeKeys {
    pub(super) attempts: String,
    pub(super) challenge: String,
    pub(super) proof: String,
    pub(super) family: String,
    pub(super) families: String,
}

impl ChallengeKeys {
    /// The keys of settling (or, the first two, reserving) `challenge` of `user`, whose
    /// proof is `proof` and whose session is family `family`.
    pub(super) fn new(
        prefix: &str,
        user: &str,
        challenge: &str,
        proof: &JudgedProof,
        family: &str,
    ) -> Self {
        let tag = user_tag(user);
        let key = |kind, rest| tagged_key(prefix, kind, &tag, rest);
        let proof = match proof {
            JudgedProof::Once { key: code, .. } => key("used", code),
            _ => key("totp", user),
        };
        Self {
            attempts: key("att", user),
            challenge: key("used", challenge),
            proof,
            family: key("fam", family),
            families: key("uf", user),
        }
    }

    /// All five, in the order of `SETTLE_CHALLENGE`'s `KEYS`.
    pub(super) fn all(&self) -> [&str; 5] {
        [
            &self.attempts,
            &self.challenge,
            &self.proof,
            &self.family,
            &self.families,
        ]
    }
}

impl RedisStore {
    pub(super) async fn challenge_reserve(
        &self,
        user: &str,
        challenge: &str,
        policy: AttemptPolicy,
        now: u64,
    ) -> Result<ChallengeReservation, StoreError> {
        let keys = ChallengeKeys::new(&self.prefix, user, challenge, &JudgedProof::Wrong, "");
        let (pending_until, _) = horizon(now.saturating_add(RESERVATION_SECS), now);
        let (outcome, until): (i64, u64) = self
            .script_on(
                &scripts().reserve,
                &[&keys.attempts, &keys.challenge],
                &[
                    &num(now),
                    &num(policy.max_attempts.into()),
                    &num(pending_until),
                ],
            )
            .await?;
        // Anything unknown is a lockout (fails closed).
        Ok(match outcome {
            code::GRANTED => ChallengeReservation::Granted,
            code::BUSY => ChallengeReservation::Busy,
            code::SPENT => ChallengeReservation::Spent,
            _ => ChallengeReservation::Locked { until },
        })
    }

    pub(super) async fn challenge_settle(
        &self,
        s: &ChallengeSettlement,
        now: u64,
    ) -> Result<ChallengeOutcome, StoreError> {
        let (change, family, session_args) = self.session_args(s, now)?;
        let keys = ChallengeKeys::new(&self.prefix, &s.user, &s.challenge, &s.proof, &family);
        let (challenge_exp, challenge_ttl) = horizon(s.expires_at, now);
        let [max, lock_until, window_until] = policy_args(s.policy, now);
        let [kind, step, step_exp, proof_ttl] = proof_args(&s.proof, now);
        let head = [
            num(now),
            with_expiry(challenge_exp, b""),
            num(challenge_ttl),
            max,
            lock_until,
            window_until,
            kind,
            step,
            step_exp,
            proof_ttl,
            code_arg(change),
        ];
        let args: Vec<&[u8]> = head
            .iter()
            .chain(session_args.iter())
            .map(Vec::as_slice)
            .collect();
        let reply: Vec<Value> = self
            .script_on(&scripts().settle, &keys.all(), &args)
            .await?;
        outcome(&reply, s)
    }

    /// The session change of `s`: its code, its family, and its arguments. The
    /// session's user must be the settlement's (or its keys leave the user's slot).
    fn session_args(
        &self,
        s: &ChallengeSettlement,
        now: u64,
    ) -> Result<(i64, String, Vec<Vec<u8>>), StoreError> {
        let foreign = || StoreError::Unavailable("redis: a session of another user".to_owned());
        Ok(match &s.session {
            SessionChange::None => (code::SESSION_NONE, String::new(), Vec::new()),
            SessionChange::Start { token, record } => {
                if record.sub != s.user {
                    return Err(foreign());
                }
                let new = self.new_family(token, record, now)?;
                let family = record.family.clone();
                (code::SESSION_START, family, new.args.to_vec())
            }
            SessionChange::Elevate {
                family,
                new_token,
                session,
                issued_at,
            } => {
                if session.sub() != s.user {
                    return Err(foreign());
                }
                let step = self.step_up(family, new_token, session, *issued_at)?;
                (code::SESSION_ELEVATE, family.clone(), step.args.to_vec())
            }
        })
    }
}

/// The proof's arguments: its kind, the step (or the code's value: its expiry), the
/// step's expiry, and the ttl ms of either.
fn proof_args(proof: &JudgedProof, now: u64) -> [Vec<u8>; 4] {
    match proof {
        JudgedProof::TotpStep { step, forget_at } => {
            let (exp, ttl) = horizon(*forget_at, now);
            [code_arg(code::PROOF_TOTP), num(*step), num(exp), num(ttl)]
        }
        JudgedProof::Once { forget_at, .. } => {
            let (exp, ttl) = horizon(*forget_at, now);
            let value = with_expiry(exp, b"");
            [code_arg(code::PROOF_RECOVERY), value, num(exp), num(ttl)]
        }
        JudgedProof::Wrong => [code_arg(code::PROOF_WRONG), num(0), num(0), num(1)],
    }
}

/// A code as a script argument.
fn code_arg(code: i64) -> Vec<u8> {
    code.to_string().into_bytes()
}

/// What `SETTLE_CHALLENGE` answered to `s`.
fn outcome(reply: &[Value], s: &ChallengeSettlement) -> Result<ChallengeOutcome, StoreError> {
    Ok(match reply_int(reply, 0)? {
        code::SETTLED_SPENT => ChallengeOutcome::Spent,
        code::SETTLED_SUCCEEDED => ChallengeOutcome::Succeeded(match &s.session {
            SessionChange::Elevate {
                family, session, ..
            } => Some(elevation(reply, 1, family, session.clone())?),
            _ => None,
        }),
        // Anything unknown is a failure (fails closed).
        _ => {
            let locked = reply_u64(reply, 2)?;
            ChallengeOutcome::Failed {
                attempts: Attempts {
                    failures: reply_u64(reply, 1)?.try_into().unwrap_or(u32::MAX),
                    locked_until: (locked > 0).then_some(locked),
                },
                replayed: reply_u64(reply, 3)? == 1,
            }
        }
    })
}
