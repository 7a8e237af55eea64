//! Audit events: one structured [`tracing`] event per security decision, and counters.
//!
//! Every request to a completion endpoint (login, verify, enroll, refresh, logout) ends
//! in exactly one event, whatever its outcome; the layer adds one for each step-up
//! challenge it issues and each request it refuses. A request the layer lets through is
//! not an event: that is your access log.
//!
//! Events have the target [`TARGET`] and these fields:
//!
//! | field        | always | what                                                        |
//! |--------------|--------|-------------------------------------------------------------|
//! | `event`      | yes    | [`Action::as_str`]: `login`, `verify`, `step_up`, …         |
//! | `outcome`    | yes    | [`Outcome::as_str`]: `ok`, `failed`, `lockout`, …           |
//! | `reason`     | no     | why it failed (`wrong_code`, `code_replayed`, an `error` code); the factor on a verify that passed |
//! | `sub`        | no     | the user id, once a token or password has established it    |
//! | `token_hash` | no     | the first 8 bytes of the SHA-256 of the token presented or issued, in hex: enough to correlate a challenge with its verify, or a refresh with its reuse, useless to replay |
//!
//! Never in an event: a token, a code, a recovery code, a secret, a password, a key, or
//! the username of a failed login (people type passwords into username fields).
//!
//! Levels: refusals by the layer are `debug` (client faults); completion outcomes are
//! `info`; a lockout and a refresh token reuse are `warn`; a store or backend failure is
//! `error`. Select them with a filter on the target, e.g.
//! `RUST_LOG=tower_stepup::audit=info`.
//!
//! # Counters
//! [`counters`] reads a process-wide count per [`Action`] and [`Outcome`], e.g. for a
//! metrics gauge or a health page. With the `metrics` feature, each event also increments
//! the counter [`METRIC`] of the [`metrics`](https://docs.rs/metrics) facade, labelled
//! `event` and `outcome`.
//!
//! ```
//! use tower_stepup::audit::{self, Action, Outcome};
//!
//! let lockouts = audit::counters().get(Action::Verify, Outcome::Lockout);
//! # let _ = lockouts;
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// The `tracing` target of every audit event.
pub const TARGET: &str = "tower_stepup::audit";

/// The name of the `metrics` counter (feature `metrics`).
pub const METRIC: &str = "tower_stepup_audit_events_total";

/// What was decided about: the `event` field of an audit event and the `event` label
/// of its counter. (Named `Action`, not `Event`, so it is not confused with
/// `flow::Event`, the input of the client's state machine.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// `POST …/login`: the first factor.
    Login,
    /// `POST …/mfa/verify`: the second factor, after login or a step-up challenge.
    Verify,
    /// The layer answered `mfa_required` with a fresh mfa_token.
    StepUp,
    /// The layer refused a request (no, invalid, expired or partial token; scope).
    Access,
    /// `POST …/mfa/enroll`: a TOTP enrollment started.
    Enroll,
    /// `POST …/mfa/enroll/confirm`: the first code of a new TOTP factor.
    EnrollConfirm,
    /// `POST …/refresh`: a refresh token rotated.
    Refresh,
    /// `POST …/logout`.
    Logout,
    /// A second factor was enrolled (after `enroll_confirm` succeeded, or a new set of
    /// recovery codes was made; the `reason` is its kind): worth telling the user about
    /// on another channel (see `complete::Hooks`).
    FactorEnrolled,
    /// `GET …/sessions`: a user listed their sessions and devices.
    Sessions,
    /// `DELETE …/sessions/{id}`: a user ended one of their sessions.
    SessionEnd,
    /// `DELETE …/devices/{id}`: a user forgot one of their remembered devices.
    DeviceEnd,
    /// `POST …/passkey/register/start`.
    PasskeyRegisterStart,
    /// `POST …/passkey/register/finish`.
    PasskeyRegisterFinish,
    /// `POST …/passkey/challenge`: the request options for a challenge token.
    PasskeyChallenge,
    /// `GET …/factors`: a user listed their second factors.
    Factors,
    /// `PATCH …/factors/{id}`: a user renamed one of their factors.
    FactorRename,
    /// `DELETE …/factors/{id}`: a user asked to remove one of their factors.
    FactorRemove,
    /// A second factor was removed (after `factor_remove` succeeded; the `reason` is
    /// its kind): worth telling the user about on another channel (see
    /// `complete::Hooks`).
    FactorRemoved,
    /// `POST …/mfa/recovery-codes`: a user asked for a new set of recovery codes (a
    /// new set is also a [`FactorEnrolled`](Action::FactorEnrolled)).
    RecoveryCodes,
    /// `POST …/mfa/send`: a one-time code sent by email or SMS (`reason`: the channel,
    /// `email` or `sms`; never the code nor the destination).
    CodeSent,
}

/// How it ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Outcome {
    /// Done: a session, a rotation, an enrollment, a logout.
    Ok,
    /// Login: the password is right and a second factor is outstanding (a partial token
    /// was issued).
    MfaRequired,
    /// Step-up: an mfa_token was issued.
    Issued,
    /// Refused for a client fault (see `reason`).
    Failed,
    /// The layer refused the request (see `reason`).
    Denied,
    /// This failure exhausted the attempts: the user is locked out for a while.
    Lockout,
    /// A rotated refresh token was presented again: its whole family is revoked.
    ReuseDetected,
    /// The store, a backend or the server failed: the request was refused (fail closed).
    Error,
}

const EVENTS: [Action; 21] = [
    Action::Login,
    Action::Verify,
    Action::StepUp,
    Action::Access,
    Action::Enroll,
    Action::EnrollConfirm,
    Action::Refresh,
    Action::Logout,
    Action::FactorEnrolled,
    Action::Sessions,
    Action::SessionEnd,
    Action::DeviceEnd,
    Action::PasskeyRegisterStart,
    Action::PasskeyRegisterFinish,
    Action::PasskeyChallenge,
    Action::Factors,
    Action::FactorRename,
    Action::FactorRemove,
    Action::FactorRemoved,
    Action::RecoveryCodes,
    Action::CodeSent,
];

const OUTCOMES: [Outcome; 8] = [
    Outcome::Ok,
    Outcome::MfaRequired,
    Outcome::Issued,
    Outcome::Failed,
    Outcome::Denied,
    Outcome::Lockout,
    Outcome::ReuseDetected,
    Outcome::Error,
];

impl Action {
    /// Every event.
    pub fn all() -> impl Iterator<Item = Self> {
        EVENTS.into_iter()
    }

    /// The value of the `event` field and label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::Verify => "verify",
            Self::StepUp => "step_up",
            Self::Access => "access",
            Self::Enroll => "enroll",
            Self::EnrollConfirm => "enroll_confirm",
            Self::Refresh => "refresh",
            Self::Logout => "logout",
            Self::FactorEnrolled => "factor_enrolled",
            Self::Sessions => "sessions",
            Self::SessionEnd => "session_end",
            Self::DeviceEnd => "device_end",
            Self::PasskeyRegisterStart => "passkey_register_start",
            Self::PasskeyRegisterFinish => "passkey_register_finish",
            Self::PasskeyChallenge => "passkey_challenge",
            Self::Factors => "factors",
            Self::FactorRename => "factor_rename",
            Self::FactorRemove => "factor_remove",
            Self::FactorRemoved => "factor_removed",
            Self::RecoveryCodes => "recovery_codes",
            Self::CodeSent => "code_sent",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl Outcome {
    /// Every outcome.
    pub fn all() -> impl Iterator<Item = Self> {
        OUTCOMES.into_iter()
    }

    /// The value of the `outcome` field and label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::MfaRequired => "mfa_required",
            Self::Issued => "issued",
            Self::Failed => "failed",
            Self::Denied => "denied",
            Self::Lockout => "lockout",
            Self::ReuseDetected => "reuse_detected",
            Self::Error => "error",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

static COUNTS: [[AtomicU64; OUTCOMES.len()]; EVENTS.len()] =
    [const { [const { AtomicU64::new(0) }; OUTCOMES.len()] }; EVENTS.len()];

/// A snapshot of the process-wide audit counters. See [`counters`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Counters {
    counts: [[u64; OUTCOMES.len()]; EVENTS.len()],
}

impl Counters {
    /// How many `event`s ended in `outcome` since the process started.
    pub fn get(&self, event: Action, outcome: Outcome) -> u64 {
        self.counts
            .get(event.index())
            .and_then(|row| row.get(outcome.index()))
            .copied()
            .unwrap_or(0)
    }

    /// Every non-zero count.
    pub fn iter(&self) -> impl Iterator<Item = (Action, Outcome, u64)> + '_ {
        Action::all().flat_map(move |e| {
            Outcome::all().filter_map(move |o| {
                let n = self.get(e, o);
                (n > 0).then_some((e, o, n))
            })
        })
    }
}

/// Reads the process-wide audit counters: one per [`Action`] × [`Outcome`], counted
/// whether or not a `tracing` subscriber listens.
pub fn counters() -> Counters {
    let mut counts = [[0; OUTCOMES.len()]; EVENTS.len()];
    for (row, atomics) in counts.iter_mut().zip(&COUNTS) {
        for (n, atomic) in row.iter_mut().zip(atomics) {
            *n = atomic.load(Ordering::Relaxed);
        }
    }
    Counters { counts }
}

/// The first 8 bytes of SHA-256 of a token, as 16 hex digits.
pub(crate) fn token_hash(token: &str) -> String {
    use fmt::Write;
    let digest = Sha256::digest(token.as_bytes());
    let mut out = String::with_capacity(16);
    for b in digest.iter().take(8) {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// A token named in an event: hashed when the event is written, or already hashed.
#[derive(Clone, Copy, Debug)]
pub(crate) enum TokenRef<'a> {
    Raw(&'a str),
    #[cfg(feature = "server")]
    Hashed(&'a str),
}

impl TokenRef<'_> {
    fn hash(self) -> std::borrow::Cow<'static, str> {
        match self {
            Self::Raw(token) => token_hash(token).into(),
            #[cfg(feature = "server")]
            Self::Hashed(hash) => hash.to_owned().into(),
        }
    }
}

/// One decision of a completion endpoint, filled in as it is made; the endpoint emits
/// it once, when the response is ready.
#[cfg(feature = "server")]
#[derive(Debug)]
pub(crate) struct Record {
    event: Action,
    outcome: Option<Outcome>,
    reason: Option<&'static str>,
    sub: Option<String>,
    token_hash: Option<String>,
}

#[cfg(feature = "server")]
impl Record {
    pub(crate) fn new(event: Action) -> Self {
        Self {
            event,
            outcome: None,
            reason: None,
            sub: None,
            token_hash: None,
        }
    }

    /// The user the decision is about.
    pub(crate) fn sub(&mut self, sub: &str) {
        if self.sub.as_deref() != Some(sub) {
            self.sub = Some(sub.to_owned());
        }
    }

    /// The token presented or issued (only its hash is kept).
    pub(crate) fn token(&mut self, token: &str) {
        self.token_hash = Some(token_hash(token));
    }

    /// Sets the outcome and reason now, instead of deriving them from the response.
    pub(crate) fn outcome(&mut self, outcome: Outcome, reason: Option<&'static str>) {
        self.outcome = Some(outcome);
        self.reason = reason;
    }

    /// The reason, if the response alone would not tell it (e.g. `code_replayed`).
    pub(crate) fn reason(&mut self, reason: &'static str) {
        self.reason = Some(reason);
    }

    /// Emits the event and counts it. `outcome` and `reason` apply unless set already.
    pub(crate) fn emit(&self, outcome: Outcome, reason: Option<&'static str>) {
        emit(
            self.event,
            self.outcome.unwrap_or(outcome),
            self.reason.or(reason),
            self.sub.as_deref(),
            self.token_hash.as_deref().map(TokenRef::Hashed),
        );
    }
}

/// Counts one decision and writes its event (a raw token is hashed only if a subscriber
/// wants the event).
pub(crate) fn emit(
    event: Action,
    outcome: Outcome,
    reason: Option<&'static str>,
    sub: Option<&str>,
    token: Option<TokenRef<'_>>,
) {
    if let Some(n) = COUNTS
        .get(event.index())
        .and_then(|row| row.get(outcome.index()))
    {
        n.fetch_add(1, Ordering::Relaxed);
    }
    #[cfg(feature = "metrics")]
    metrics::counter!(METRIC, "event" => event.as_str(), "outcome" => outcome.as_str())
        .increment(1);

    macro_rules! event_at {
        ($level:expr) => {
            tracing::event!(
                target: TARGET,
                $level,
                event = event.as_str(),
                outcome = outcome.as_str(),
                reason,
                sub,
                token_hash = token.map(TokenRef::hash).as_deref(),
                "audit"
            )
        };
    }
    match (event, outcome) {
        (_, Outcome::Error) => event_at!(tracing::Level::ERROR),
        (_, Outcome::Lockout | Outcome::ReuseDetected) => event_at!(tracing::Level::WARN),
        (Action::Access, _) => event_at!(tracing::Level::DEBUG),
        _ => event_at!(tracing::Level::INFO),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_hash_is_16_hex_digits_of_sha256() {
        // SHA-256("abc") = ba7816bf8f01cfea…
        assert_eq!(token_hash("abc"), "ba7816bf8f01cfea");
    }

    #[test]
    fn indexes_are_dense_and_distinct() {
        for (i, e) in Action::all().enumerate() {
            assert_eq!(e.index(), i);
        }
        for (i, o) in Outcome::all().enumerate() {
            assert_eq!(o.index(), i);
        }
    }
}
