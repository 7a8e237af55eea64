//! The operations a case is made of ([`Op`]) and what they pick.

use crate::*;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Who {
    User(User),
    Unknown,
}

/// The token presented to verify.
#[derive(Clone, Debug)]
pub(crate) enum Challenge {
    /// Log in (right password) and use the new partial token.
    Fresh(User),
    /// The latest partial token issued.
    Latest,
    /// Any partial token issued so far (used, expired, anyone's).
    Partial(Index),
    /// Any step-up mfa_token issued so far.
    MfaToken(Index),
    /// An access token, where a challenge token is expected.
    AccessToken(Index),
    /// A partial token for this user signed with an unknown key.
    Forged(User),
    Garbage,
}

#[derive(Clone, Debug)]
pub(crate) enum Proof {
    /// The TOTP code of step `now/30 + delta` of `user` (the challenge's user if `None`).
    Totp { user: Option<User>, delta: i64 },
    /// A six-digit code that is nobody's within two steps.
    Wrong,
    /// A code accepted before (by verify or confirm), sent again.
    Replay(Index),
    /// A recovery code ever issued to `user` (the challenge's user if `None`).
    Recovery { user: Option<User>, pick: Index },
    /// A passkey assertion (`POST /auth/passkey/challenge` first, as the proof needs).
    Passkey(PasskeyProof),
    /// A code sent by `POST /auth/mfa/send` (email, unless said otherwise).
    Sent(SentProof),
}

/// Which passkey assertion a verify presents.
#[derive(Clone, Debug)]
pub(crate) enum PasskeyProof {
    /// A challenge for this very token, answered by the user's registered authenticator.
    Right,
    /// A challenge for this token, answered by an authenticator registered with the
    /// same relying party but in nobody's directory (its browser swaps
    /// `allowCredentials` for its own credential).
    Unregistered,
    /// A fresh login's partial token of the user challenged and answered (which replaces
    /// any challenge pending for this token): an assertion for another challenge.
    OtherChallenge,
    /// Any assertion made so far (used or not, for whichever challenge).
    Replay(Index),
    /// Not an assertion: a JSON object webauthn cannot read; after a challenge for this
    /// token if `challenged` (`400`, no attempt), else with none pending for it.
    Malformed { challenged: bool },
}

/// Which sent code a verify presents.
#[derive(Clone, Debug)]
pub(crate) enum SentProof {
    /// A code sent for this very token.
    Right,
    /// A code sent for this token, then replaced by a second send.
    Stale,
    /// A code sent for a fresh login's partial token of the user.
    OtherChallenge,
    /// Any code sent so far (used or not, for whichever challenge).
    Replay(Index),
    /// A send by SMS (nobody has a phone factor: `400`), then the code pending for this
    /// token, if any.
    Sms,
}

/// What a burst of concurrent verifies presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BurstTarget {
    /// One fresh partial token, shared by all.
    SharedPartial,
    /// A fresh partial token each.
    OwnPartials,
    /// An mfa_token each, all of one session (older than `max_age`).
    StepUps,
}

#[derive(Clone, Debug)]
pub(crate) enum BurstCode {
    /// The current step's code.
    Right,
    /// Request `i` sends the code of step `now/30 - 1 + i % 3`: three different right
    /// codes.
    Window,
    /// Request `i` sends the user's `i`th recovery code.
    Recoveries,
    /// A code accepted before.
    Replay(Index),
    /// A recovery code of the user.
    Recovery(Index),
    /// Request `i` sends the right code, a wrong one or the last accepted one, by `i % 3`.
    Mixed,
    /// Each challenge is challenged for a passkey and answered in turn (so only the last
    /// one's assertion is still pending); request `i` presents challenge `i`'s assertion.
    Passkeys,
    /// A code is sent for each challenge in turn (within the send limit); request `i`
    /// presents challenge `i`'s code (a wrong one if none could be sent).
    SentCodes,
}

#[derive(Clone, Debug)]
pub(crate) enum AccessPick {
    /// The latest access token issued to the user (or to anyone, if none).
    Latest(User),
    /// Any access token issued so far.
    Any(Index),
}

#[derive(Clone, Debug)]
pub(crate) enum Cred {
    None,
    Access(AccessPick),
    Partial(Index),
    MfaToken(Index),
}

#[derive(Clone, Debug)]
pub(crate) enum RefreshPick {
    /// The current token of one of the families.
    Current(Index),
    /// Any refresh token issued so far.
    Any(Index),
    /// Well formed, never issued.
    Unknown,
}

/// The session a `DELETE /auth/sessions/{id}` names.
#[derive(Clone, Debug)]
pub(crate) enum SessionPick {
    /// One of the caller's families (live or ended), or any family if they have none.
    Own(Index),
    /// Any family the model knows (mostly another user's).
    Any(Index),
    /// Well formed, never issued.
    Unknown,
    /// Not an id at all (`400`), one of [`MALFORMED_IDS`].
    Malformed(Index),
}

/// Session ids the endpoint refuses as malformed (the route still matches them).
pub(crate) const MALFORMED_IDS: [&str; 4] = ["a.b", "a:b", "%C3%A9", "a%20b"];

#[derive(Clone, Copy, Debug)]
pub(crate) enum Route {
    Me,
    Billing,
}

#[derive(Clone, Debug)]
pub(crate) enum ConfirmCode {
    /// The pending enrollment's code of step `now/30 + delta`.
    Pending(i64),
    /// The code of the user's current factor.
    Current,
    Wrong,
}

#[derive(Clone, Debug)]
pub(crate) enum Op {
    Login {
        who: Who,
        right_password: bool,
    },
    Verify {
        challenge: Challenge,
        proof: Proof,
        /// The token as `Authorization: Bearer` instead of in the body.
        as_bearer: bool,
        /// An access token sent as Bearer beside the token in the body.
        beside: Option<AccessPick>,
    },
    Burst {
        user: User,
        n: usize,
        target: BurstTarget,
        code: BurstCode,
    },
    Advance(u64),
    Refresh(RefreshPick),
    /// `n` concurrent refreshes with one family's current token.
    RefreshBurst {
        family: Index,
        n: usize,
    },
    Logout {
        cred: Cred,
        refresh: RefreshPick,
    },
    Get {
        route: Route,
        cred: Cred,
    },
    /// `GET /api/billing` with the user's latest access token, and on `403
    /// mfa_required` a verify of its mfa_token at once (optionally with the access token
    /// as Bearer beside it).
    StepUp {
        user: User,
        proof: Proof,
        beside: bool,
    },
    Enroll(Cred),
    Confirm {
        cred: Cred,
        code: ConfirmCode,
    },
    /// Enroll with the user's latest access token, then confirm at once.
    EnrollAndConfirm {
        user: User,
        code: ConfirmCode,
    },
    /// The clock to `offset` s from the absolute end of one of the families (`-30..=5`;
    /// skipped if that time has passed): a session's last tokens near its end.
    ToFamilyEnd {
        family: Index,
        offset: i64,
    },
    /// `GET /auth/sessions`.
    ListSessions(Cred),
    /// `DELETE /auth/sessions/{id}` (`Content-Type: application/json`, no body).
    EndSession {
        cred: Cred,
        target: SessionPick,
    },
}
