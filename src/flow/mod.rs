//! The authentication flow as a typed state machine, for the clients that drive it.
//!
//! The states of a sign-in with a second factor — [`SignedOut`](State::SignedOut),
//! [`Authenticating`](State::Authenticating), [`MfaRequired`](State::MfaRequired),
//! [`SignedIn`](State::SignedIn), [`SessionExpired`](State::SessionExpired) — plus the
//! step-up detour ([`StepUpRequired`](State::StepUpRequired)) and an error state
//! ([`Failed`](State::Failed)) that says which recovery the user is offered.
//!
//! Each state carries only the data valid in it: the partial token and its expiry exist
//! only in `MfaRequired`; tokens only in `SignedIn`, `SessionExpired` and the step-up
//! detour (which happens inside a session). [`State::apply`] (by value) and
//! [`State::transition`] (in place) are the one transition function; a move the table
//! does not allow is refused with [`IllegalTransition`] (`transition` then leaves the
//! state as it was).
//!
//! A step-up the server cannot complete itself — the token came from an identity
//! provider (IdP) that performs MFA, so the denial carries no `mfa_token` — is a
//! [`DelegatedStepUp`]: read it from the answer with [`DelegatedStepUp::from_response`],
//! record it with [`Event::StepUpDelegated`] (the user stays `SignedIn`; nothing is sent
//! to the verify endpoint), and send the user back to the IdP with its `acr_values` and
//! `max_age` (RFC 9470 §4).
//!
//! [`TRANSITIONS`] is the same machine as data; [`mermaid`] renders it as a Mermaid
//! `stateDiagram-v2` (shown in `docs/flow.md`, and tested to stay equal).
//!
//! ```
//! use tower_stepup::flow::{Event, State};
//!
//! let now = 1_000;
//! let state = State::default()
//!     .apply(Event::SubmitCredentials)?
//!     .apply(Event::MfaEnabled { partial_token: "eyJ…".into(), expires_in: 300, now })?;
//! assert!(matches!(state, State::MfaRequired(_)));
//!
//! // Five minutes later the partial token is dead: nothing is sent, the user starts again.
//! let state = state.apply(Event::SubmitCode { now: now + 300 })?;
//! let State::Failed(error) = state else { unreachable!() };
//! assert_eq!(error.reason().as_str(), "partial_token_expired");
//! assert_eq!(error.recovery(), tower_stepup::flow::Recovery::StartAgain);
//! # Ok::<(), tower_stepup::flow::IllegalTransition>(())
//! ```

use std::fmt;

mod step_up;
#[cfg(test)]
mod tests;
pub(crate) mod www_authenticate;

pub use self::step_up::{DelegatedStepUp, MAX_ACR_VALUES, MAX_ACR_VALUE_LEN};

/// A bearer credential held by the client: never printed by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The token itself, to put on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Self(s)
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// The second factor is outstanding: what `MfaRequired` holds.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingMfa {
    /// The partial token, for the verify endpoint only.
    pub partial_token: Secret,
    /// When it expires (Unix seconds, the client's clock).
    pub expires_at: u64,
    /// Wrong codes left, once the server has said.
    pub attempts_remaining: Option<u32>,
}

/// A session: what `SignedIn` and `SessionExpired` hold.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Session {
    /// The access token.
    pub access_token: Secret,
    /// When it expires (Unix seconds, the client's clock).
    pub access_expires_at: u64,
    /// The refresh token, if the server gave one.
    pub refresh_token: Option<Secret>,
}

impl Session {
    /// A session from a token response received at `now`.
    pub fn new(
        access_token: impl Into<Secret>,
        expires_in: u64,
        refresh_token: Option<Secret>,
        now: u64,
    ) -> Self {
        Self {
            access_token: access_token.into(),
            access_expires_at: now.saturating_add(expires_in),
            refresh_token,
        }
    }

    /// Whether the access token has expired at `now`.
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.access_expires_at
    }
}

/// A route asked for a stronger or fresher authentication: what `StepUpRequired` holds.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingStepUp {
    /// The session, still good for every other route.
    pub session: Session,
    /// The mfa_token of the challenge.
    pub mfa_token: Secret,
    /// When the challenge expires (Unix seconds, the client's clock).
    pub expires_at: u64,
    /// Wrong codes left, once the server has said.
    pub attempts_remaining: Option<u32>,
}

/// Why the user is signed out, when there is something to say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignedOutReason {
    /// The username or password was wrong.
    InvalidCredentials,
    /// Too many wrong codes: sign in again at `retry_at` (Unix seconds).
    LockedOut {
        /// When the lockout ends.
        retry_at: u64,
    },
    /// The refresh token was refused (expired, revoked, reused): sign in again.
    RefreshFailed,
    /// The user logged out.
    LoggedOut,
}

/// Why the flow failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorReason {
    /// The partial token expired before a code was submitted (nothing was sent).
    PartialTokenExpired,
    /// The server said the challenge expired.
    ChallengeExpired,
    /// The server no longer knows the challenge (used already, or never issued).
    ChallengeNotFound,
    /// The server refused the challenge token as invalid.
    ChallengeInvalid,
    /// The server or the network failed; nothing was decided.
    Unavailable,
}

impl ErrorReason {
    /// The reason as a snake_case code, e.g. `partial_token_expired`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PartialTokenExpired => "partial_token_expired",
            Self::ChallengeExpired => "challenge_expired",
            Self::ChallengeNotFound => "challenge_not_found",
            Self::ChallengeInvalid => "challenge_invalid",
            Self::Unavailable => "unavailable",
        }
    }

    /// What the user can do about it.
    pub fn recovery(self) -> Recovery {
        match self {
            Self::Unavailable => Recovery::TryAgainLater,
            _ => Recovery::StartAgain,
        }
    }
}

/// The way out of an error state the user is offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recovery {
    /// Sign in again from the start (the old challenge is dead).
    StartAgain,
    /// Wait a little and sign in again.
    TryAgainLater,
}

impl Recovery {
    /// A sentence for the user.
    pub fn message(self) -> &'static str {
        match self {
            Self::StartAgain => "Your sign-in expired or was already used. Please sign in again.",
            Self::TryAgainLater => {
                "The service is unavailable right now. Please try again shortly."
            }
        }
    }
}

/// An error state: why, and the recovery offered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowError {
    reason: ErrorReason,
}

impl FlowError {
    /// Why the flow failed.
    pub fn reason(&self) -> ErrorReason {
        self.reason
    }

    /// The recovery the user is offered.
    pub fn recovery(&self) -> Recovery {
        self.reason.recovery()
    }
}

/// Where the user is.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum State {
    /// No credential; why, if there is something to show.
    SignedOut(Option<SignedOutReason>),
    /// Credentials sent, verdict pending.
    Authenticating,
    /// Password accepted, second factor outstanding (a code may be in flight).
    MfaRequired(PendingMfa),
    /// Signed in.
    SignedIn(Session),
    /// A route asked for step-up; the session stays good elsewhere.
    StepUpRequired(PendingStepUp),
    /// The access token expired; a silent refresh may bring the session back.
    SessionExpired(Session),
    /// The flow failed; [`FlowError::recovery`] says what the user can do.
    Failed(FlowError),
}

impl Default for State {
    fn default() -> Self {
        State::SignedOut(None)
    }
}

/// What happens: the user's actions, the server's answers, the clock.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The user submits a username and password.
    SubmitCredentials,
    /// The server issued a session: no second factor is enrolled.
    CredentialsValid(Session),
    /// The server refused the username or password.
    InvalidCredentials,
    /// The server accepted the password and wants a second factor.
    MfaEnabled {
        /// The partial token.
        partial_token: Secret,
        /// Its lifetime in seconds.
        expires_in: u64,
        /// When the answer arrived.
        now: u64,
    },
    /// The user submits a code; refused locally if the challenge has expired at `now`.
    SubmitCode {
        /// The client's clock.
        now: u64,
    },
    /// The server verified the code and issued a new session.
    CodeVerified(Session),
    /// The server refused the code; the same challenge takes another.
    CodeRejected {
        /// Wrong codes left.
        attempts_remaining: Option<u32>,
    },
    /// The server locked the user out.
    TooManyAttempts {
        /// Seconds until the lockout ends.
        retry_after: u64,
        /// When the answer arrived.
        now: u64,
    },
    /// The server refused the challenge token itself, or the request failed.
    RequestFailed(ErrorReason),
    /// A route answered `mfa_required`.
    StepUpChallenged {
        /// The mfa_token.
        mfa_token: Secret,
        /// Its lifetime in seconds: the step-up denial's `expires_in`
        /// ([`wire::EXPIRES_IN`](crate::wire::EXPIRES_IN)).
        expires_in: u64,
        /// When the answer arrived.
        now: u64,
    },
    /// A route answered a *delegated* step-up (`mfa_required` with no `mfa_token`):
    /// only the identity provider can give the authentication it asks for. The session
    /// stays as it is (`SignedIn`); the application sends the user to the IdP with the
    /// challenge's `acr_values` and `max_age`, and calls the route again with the token
    /// it brings back. No code is asked for, nothing goes to the verify endpoint.
    StepUpDelegated(DelegatedStepUp),
    /// The step-up challenge is given up (expired, locked out, or abandoned).
    StepUpAbandoned,
    /// The access token expired (the clock passed it, or a route said `invalid_token`
    /// with `"token_expired": true`, [`wire::TOKEN_EXPIRED`](crate::wire::TOKEN_EXPIRED)).
    TokenExpired,
    /// The refresh endpoint issued a new session.
    Refreshed(Session),
    /// The refresh endpoint refused the refresh token (or there is none).
    RefreshFailed,
    /// The user logs out.
    Logout,
    /// Leave an error state for the sign-in form.
    Restart,
}

/// A state's name, without its data: for [`TRANSITIONS`] and errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum StateName {
    /// [`State::SignedOut`].
    SignedOut,
    /// [`State::Authenticating`].
    Authenticating,
    /// [`State::MfaRequired`].
    MfaRequired,
    /// [`State::SignedIn`].
    SignedIn,
    /// [`State::StepUpRequired`].
    StepUpRequired,
    /// [`State::SessionExpired`].
    SessionExpired,
    /// [`State::Failed`].
    Failed,
}

/// An event's name, without its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
#[allow(missing_docs)]
pub enum EventName {
    SubmitCredentials,
    CredentialsValid,
    InvalidCredentials,
    MfaEnabled,
    SubmitCode,
    SubmitCodeExpired,
    CodeVerified,
    CodeRejected,
    TooManyAttempts,
    RequestFailed,
    StepUpChallenged,
    StepUpDelegated,
    StepUpAbandoned,
    TokenExpired,
    Refreshed,
    RefreshFailed,
    Logout,
    Restart,
}

impl State {
    /// This state's name.
    pub fn name(&self) -> StateName {
        match self {
            State::SignedOut(_) => StateName::SignedOut,
            State::Authenticating => StateName::Authenticating,
            State::MfaRequired(_) => StateName::MfaRequired,
            State::SignedIn(_) => StateName::SignedIn,
            State::StepUpRequired(_) => StateName::StepUpRequired,
            State::SessionExpired(_) => StateName::SessionExpired,
            State::Failed(_) => StateName::Failed,
        }
    }

    /// The session, in the states that have one.
    pub fn session(&self) -> Option<&Session> {
        match self {
            State::SignedIn(s) | State::SessionExpired(s) => Some(s),
            State::StepUpRequired(step_up) => Some(&step_up.session),
            _ => None,
        }
    }

    /// The next state after `event`, or the refusal of an illegal move.
    ///
    /// `SubmitCode` is decided locally: with an expired partial token the flow moves to
    /// [`Failed`](State::Failed) with [`ErrorReason::PartialTokenExpired`] (and with an
    /// expired step-up challenge, back to `SignedIn`) — the caller sends nothing.
    pub fn apply(self, event: Event) -> Result<State, IllegalTransition> {
        self.next(event).map_err(|(_, e)| e)
    }

    /// [`apply`](State::apply) in place: on a refusal the state is left as it was.
    pub fn transition(&mut self, event: Event) -> Result<(), IllegalTransition> {
        let current = std::mem::take(self);
        match current.next(event) {
            Ok(next) => {
                *self = next;
                Ok(())
            }
            Err((unchanged, e)) => {
                *self = unchanged;
                Err(e)
            }
        }
    }

    /// The transition function; a refusal gives the state back.
    fn next(self, event: Event) -> Result<State, (State, IllegalTransition)> {
        match self {
            State::SignedOut(_)
            | State::Authenticating
            | State::MfaRequired(_)
            | State::Failed(_) => self.next_signing_in(event),
            State::SignedIn(_) | State::StepUpRequired(_) | State::SessionExpired(_) => {
                self.next_in_session(event)
            }
        }
    }

    /// Transitions before a session exists: credentials, the second factor, failures.
    fn next_signing_in(self, event: Event) -> Result<State, (State, IllegalTransition)> {
        use State as S;
        Ok(match (self, event) {
            (S::SignedOut(_) | S::Failed(_), Event::SubmitCredentials) => S::Authenticating,
            (S::Authenticating, Event::CredentialsValid(session)) => S::SignedIn(session),
            (S::Authenticating, Event::InvalidCredentials) => {
                S::SignedOut(Some(SignedOutReason::InvalidCredentials))
            }
            (
                S::Authenticating,
                Event::MfaEnabled {
                    partial_token,
                    expires_in,
                    now,
                },
            ) => S::MfaRequired(PendingMfa {
                partial_token,
                expires_at: now.saturating_add(expires_in),
                attempts_remaining: None,
            }),
            (S::Authenticating, Event::RequestFailed(reason)) => S::Failed(FlowError { reason }),
            (S::MfaRequired(pending), Event::SubmitCode { now }) => {
                if now >= pending.expires_at {
                    S::Failed(FlowError {
                        reason: ErrorReason::PartialTokenExpired,
                    })
                } else {
                    S::MfaRequired(pending)
                }
            }
            (S::MfaRequired(_), Event::CodeVerified(session)) => S::SignedIn(session),
            (S::MfaRequired(pending), Event::CodeRejected { attempts_remaining }) => {
                S::MfaRequired(PendingMfa {
                    attempts_remaining,
                    ..pending
                })
            }
            (S::MfaRequired(_), Event::TooManyAttempts { retry_after, now }) => {
                S::SignedOut(Some(SignedOutReason::LockedOut {
                    retry_at: now.saturating_add(retry_after),
                }))
            }
            (S::MfaRequired(_), Event::RequestFailed(reason)) => S::Failed(FlowError { reason }),
            (S::MfaRequired(_), Event::Restart) => S::SignedOut(None),
            (S::Failed(_), Event::Restart) => S::SignedOut(None),
            (state, event) => return Err(state.refuse(&event)),
        })
    }

    /// Transitions inside a session: step-up, expiry, refresh, logout.
    fn next_in_session(self, event: Event) -> Result<State, (State, IllegalTransition)> {
        use State as S;
        Ok(match (self, event) {
            (
                S::SignedIn(session),
                Event::StepUpChallenged {
                    mfa_token,
                    expires_in,
                    now,
                },
            ) => S::StepUpRequired(PendingStepUp {
                session,
                mfa_token,
                expires_at: now.saturating_add(expires_in),
                attempts_remaining: None,
            }),
            // Nothing here completes it: the session stays, the IdP is the way on.
            (S::SignedIn(session), Event::StepUpDelegated(_)) => S::SignedIn(session),
            (S::StepUpRequired(step_up), Event::SubmitCode { now }) => {
                if now >= step_up.expires_at {
                    S::SignedIn(step_up.session)
                } else {
                    S::StepUpRequired(step_up)
                }
            }
            (S::StepUpRequired(_), Event::CodeVerified(session)) => S::SignedIn(session),
            (S::StepUpRequired(step_up), Event::CodeRejected { attempts_remaining }) => {
                S::StepUpRequired(PendingStepUp {
                    attempts_remaining,
                    ..step_up
                })
            }
            (
                S::StepUpRequired(step_up),
                Event::TooManyAttempts { .. } | Event::RequestFailed(_) | Event::StepUpAbandoned,
            ) => S::SignedIn(step_up.session),
            (
                S::SignedIn(session) | S::StepUpRequired(PendingStepUp { session, .. }),
                Event::TokenExpired,
            ) => S::SessionExpired(session),
            (S::SessionExpired(_), Event::Refreshed(session)) => S::SignedIn(session),
            (S::SessionExpired(_), Event::RefreshFailed) => {
                S::SignedOut(Some(SignedOutReason::RefreshFailed))
            }
            (S::SignedIn(_) | S::StepUpRequired(_) | S::SessionExpired(_), Event::Logout) => {
                S::SignedOut(Some(SignedOutReason::LoggedOut))
            }
            (state, event) => return Err(state.refuse(&event)),
        })
    }

    /// The refusal of `event` in this state, with the state given back.
    fn refuse(self, event: &Event) -> (State, IllegalTransition) {
        let e = IllegalTransition {
            from: self.name(),
            event: event.name(),
        };
        (self, e)
    }
}

impl Event {
    /// This event's name. `SubmitCode` is one name: whether it expires the challenge
    /// depends on the state's data, see [`State::apply`].
    pub fn name(&self) -> EventName {
        match self {
            Event::SubmitCredentials => EventName::SubmitCredentials,
            Event::CredentialsValid(_) => EventName::CredentialsValid,
            Event::InvalidCredentials => EventName::InvalidCredentials,
            Event::MfaEnabled { .. } => EventName::MfaEnabled,
            Event::SubmitCode { .. } => EventName::SubmitCode,
            Event::CodeVerified(_) => EventName::CodeVerified,
            Event::CodeRejected { .. } => EventName::CodeRejected,
            Event::TooManyAttempts { .. } => EventName::TooManyAttempts,
            Event::RequestFailed(_) => EventName::RequestFailed,
            Event::StepUpChallenged { .. } => EventName::StepUpChallenged,
            Event::StepUpDelegated(_) => EventName::StepUpDelegated,
            Event::StepUpAbandoned => EventName::StepUpAbandoned,
            Event::TokenExpired => EventName::TokenExpired,
            Event::Refreshed(_) => EventName::Refreshed,
            Event::RefreshFailed => EventName::RefreshFailed,
            Event::Logout => EventName::Logout,
            Event::Restart => EventName::Restart,
        }
    }
}

/// A move the flow does not allow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{event:?} is not allowed in {from:?}")]
pub struct IllegalTransition {
    /// The state the move was tried from.
    pub from: StateName,
    /// The event refused.
    pub event: EventName,
}

/// One allowed move: `from` --`event`--> `to`, with the label of the diagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Transition {
    /// The state before.
    pub from: StateName,
    /// The event.
    pub event: EventName,
    /// The state after.
    pub to: StateName,
    /// The edge's label in the diagram.
    pub label: &'static str,
}

macro_rules! transitions {
    ($($from:ident --$event:ident--> $to:ident : $label:literal;)*) => {
        /// Every allowed move, in the order of the diagram. [`State::apply`] implements
        /// exactly these (a test checks every row, and that every other pair is refused).
        pub const TRANSITIONS: &[Transition] = &[$(Transition {
            from: StateName::$from,
            event: EventName::$event,
            to: StateName::$to,
            label: $label,
        }),*];
    };
}

// `SubmitCodeExpired` is `SubmitCode` when the challenge has expired: one event, two rows.
transitions! {
    SignedOut --SubmitCredentials--> Authenticating : "Submit credentials";
    Authenticating --CredentialsValid--> SignedIn : "Credentials valid";
    Authenticating --InvalidCredentials--> SignedOut : "Invalid credentials";
    Authenticating --MfaEnabled--> MfaRequired : "MFA enabled";
    Authenticating --RequestFailed--> Failed : "Server unavailable";
    MfaRequired --SubmitCode--> MfaRequired : "Submit code";
    MfaRequired --SubmitCodeExpired--> Failed : "Partial token expired";
    MfaRequired --CodeVerified--> SignedIn : "Code verified";
    MfaRequired --CodeRejected--> MfaRequired : "Wrong code";
    MfaRequired --TooManyAttempts--> SignedOut : "Too many attempts";
    MfaRequired --RequestFailed--> Failed : "Challenge refused";
    MfaRequired --Restart--> SignedOut : "Start again";
    SignedIn --StepUpChallenged--> StepUpRequired : "Route needs step-up";
    SignedIn --StepUpDelegated--> SignedIn : "Step-up delegated to the IdP";
    StepUpRequired --SubmitCode--> StepUpRequired : "Submit code";
    StepUpRequired --SubmitCodeExpired--> SignedIn : "Challenge expired";
    StepUpRequired --CodeVerified--> SignedIn : "Code verified (elevated)";
    StepUpRequired --CodeRejected--> StepUpRequired : "Wrong code";
    StepUpRequired --TooManyAttempts--> SignedIn : "Too many attempts (step-up refused)";
    StepUpRequired --RequestFailed--> SignedIn : "Challenge refused";
    StepUpRequired --StepUpAbandoned--> SignedIn : "Step-up abandoned";
    StepUpRequired --TokenExpired--> SessionExpired : "Token expires";
    StepUpRequired --Logout--> SignedOut : "Logout";
    SignedIn --TokenExpired--> SessionExpired : "Token expires";
    SessionExpired --Refreshed--> SignedIn : "Silent refresh";
    SessionExpired --RefreshFailed--> SignedOut : "Refresh failed";
    SessionExpired --Logout--> SignedOut : "Logout";
    SignedIn --Logout--> SignedOut : "Logout";
    Failed --Restart--> SignedOut : "Start again";
    Failed --SubmitCredentials--> Authenticating : "Submit credentials";
}

impl StateName {
    /// The name in the diagram.
    pub fn as_str(self) -> &'static str {
        match self {
            StateName::SignedOut => "SignedOut",
            StateName::Authenticating => "Authenticating",
            StateName::MfaRequired => "MfaRequired",
            StateName::SignedIn => "SignedIn",
            StateName::StepUpRequired => "StepUpRequired",
            StateName::SessionExpired => "SessionExpired",
            StateName::Failed => "Failed",
        }
    }
}

/// [`TRANSITIONS`] as a Mermaid `stateDiagram-v2`, with a note on each error state's
/// recovery. `docs/flow.md` shows this text; a test keeps them equal.
pub fn mermaid() -> String {
    let mut out = String::from("stateDiagram-v2\n[*] --> SignedOut\n");
    for t in TRANSITIONS {
        out.push_str(&format!(
            "{} --> {}: {}\n",
            t.from.as_str(),
            t.to.as_str(),
            t.label
        ));
    }
    out.push_str(
        "note right of Failed\n    partial_token_expired, challenge_expired, challenge_not_found,\n    challenge_invalid: start again\n    unavailable: try again later\nend note\n",
    );
    out
}
