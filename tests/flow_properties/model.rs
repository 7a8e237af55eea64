//! The model of the server's rules: per-user attempts and factors, the tokens and
//! refresh families it issued, and what it predicts ([`Want`]).

use crate::*;

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct AttemptState {
    pub(crate) failures: u32,
    /// Failures are forgotten at this time (no lockout).
    pub(crate) window_until: u64,
    pub(crate) locked_until: Option<u64>,
}

impl AttemptState {
    /// Locked out at `now`: the crate's rule ([`Attempts::is_locked`]).
    pub(crate) fn locked(&self, now: u64) -> bool {
        Attempts {
            failures: self.failures,
            locked_until: self.locked_until,
        }
        .is_locked(now)
    }

    /// Failures that count at `now`.
    pub(crate) fn current(&self, now: u64) -> u32 {
        match self.locked_until {
            Some(until) if until > now => self.failures,
            Some(_) => 0,
            None if self.window_until > now => self.failures,
            None => 0,
        }
    }

    /// One more failure at `now` under `policy`; the count, and whether it locks.
    pub(crate) fn record(&mut self, policy: AttemptPolicy, now: u64) -> (u32, bool) {
        let failures = self.current(now) + 1;
        let locks = failures >= policy.max_attempts;
        *self = AttemptState {
            failures,
            window_until: if locks { 0 } else { now + policy.window_secs },
            locked_until: locks.then_some(now + policy.lockout_secs),
        };
        (failures, locks)
    }
}

/// The send limit as an attempt policy (`src/complete/send.rs`: each send one failure,
/// locked for the window once the limit is reached).
pub(crate) const SEND_POLICY: AttemptPolicy = AttemptPolicy {
    max_attempts: MAX_SENDS,
    lockout_secs: SEND_WINDOW,
    window_secs: SEND_WINDOW,
};

/// The passkey challenge pending for a user (one at a time: a new one replaces it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PasskeyPending {
    /// The challenge token it is bound to.
    pub(crate) jti: String,
    /// Which challenge of the case it is: an assertion answers exactly one.
    pub(crate) serial: u32,
    pub(crate) expires_at: u64,
}

/// A passkey assertion made in the case.
#[derive(Clone, Debug)]
pub(crate) struct Assertion {
    /// Whose authenticator was asked (the user the challenge was for).
    pub(crate) user: User,
    /// The challenge it answers.
    pub(crate) serial: u32,
    /// Made by the user's registered authenticator (not the stranger's).
    pub(crate) registered: bool,
    pub(crate) json: String,
}

/// The code last sent for a challenge.
#[derive(Clone, Debug)]
pub(crate) struct SentCode {
    pub(crate) code: String,
    pub(crate) expires_at: u64,
}

#[derive(Clone)]
pub(crate) struct Factor {
    pub(crate) secret: TotpSecret,
    /// Tells secrets apart in the ledger.
    pub(crate) id: u32,
    /// Every recovery code issued with this factor (used ones too).
    pub(crate) recovery: Vec<String>,
}

#[derive(Clone)]
pub(crate) struct Pending {
    pub(crate) secret: TotpSecret,
    pub(crate) id: u32,
    pub(crate) expires_at: u64,
}

#[derive(Clone, Default)]
pub(crate) struct UserState {
    pub(crate) factor: Option<Factor>,
    /// The last TOTP step accepted for the user (verify or confirm).
    pub(crate) last_step: Option<u64>,
    pub(crate) attempts: AttemptState,
    pub(crate) pending: Option<Pending>,
    /// Until when the confirmed enrollment answers `409 enrollment_already_confirmed`
    /// (its tombstone), unless a new one starts.
    pub(crate) confirmed_until: Option<u64>,
    /// Every recovery code ever issued to the user, for replays of replaced ones.
    pub(crate) known_recovery: Vec<String>,
    /// A registered passkey: `Some(true)` device-bound (`hwk`), `Some(false)` synced.
    pub(crate) passkey: Option<bool>,
    /// An email factor (sent codes).
    pub(crate) email: bool,
    pub(crate) passkey_pending: Option<PasskeyPending>,
    /// The send limit's count.
    pub(crate) sends: AttemptState,
}

pub(crate) struct PartialTok {
    pub(crate) token: String,
    pub(crate) user: User,
    pub(crate) exp: u64,
    pub(crate) jti: String,
    pub(crate) used: bool,
}

pub(crate) struct MfaTok {
    pub(crate) token: String,
    pub(crate) user: User,
    pub(crate) sid: String,
    pub(crate) amr: Vec<String>,
    pub(crate) exp: u64,
    /// When it was issued (a challenge issued no later than its session's last step-up
    /// is stale).
    pub(crate) iat: u64,
    pub(crate) jti: String,
    pub(crate) used: bool,
}

pub(crate) struct AccessTok {
    pub(crate) token: String,
    pub(crate) user: User,
    pub(crate) sid: String,
    pub(crate) amr: Vec<String>,
    pub(crate) auth_time: u64,
    pub(crate) exp: u64,
}

pub(crate) struct Family {
    pub(crate) sid: String,
    pub(crate) user: User,
    /// Every refresh token of the family; the last is current.
    pub(crate) tokens: Vec<String>,
    pub(crate) revoked: bool,
    pub(crate) expires_at: u64,
    pub(crate) amr: Vec<String>,
    pub(crate) acr: String,
    pub(crate) auth_time: u64,
    /// When a step-up last elevated the session (0: never).
    pub(crate) elevated_at: u64,
    /// When it began, and when it was last seen (its sign-in, last refresh or step-up):
    /// what `GET /auth/sessions` shows.
    pub(crate) created_at: u64,
    pub(crate) last_seen: u64,
}

impl Family {
    /// Whether the store still links `token` to this family: the current token and the
    /// last [`REFRESH_HISTORY`] rotated ones.
    pub(crate) fn remembers(&self, token: &str) -> bool {
        self.tokens
            .iter()
            .rev()
            .take(REFRESH_HISTORY + 1)
            .any(|t| t == token)
    }
}

/// What the server consumed, for the properties (independent of the model's
/// predictions): codes accepted by verify or confirm, or spent by a step-up of a session
/// that had ended.
#[derive(Default)]
pub(crate) struct Ledger {
    /// (user, secret id, step) of every consumed TOTP code.
    pub(crate) steps: HashSet<(User, u32, u64)>,
    /// Every consumed recovery code.
    pub(crate) recovery: HashSet<(User, String)>,
    /// `jti` of every challenge that opened a session.
    pub(crate) completed: HashSet<String>,
    /// Session ids opened by a successful verify, and whose.
    pub(crate) mfa_sessions: HashMap<String, User>,
    /// Every consumed code, in order, for replays.
    pub(crate) codes: Vec<Code>,
    /// Challenges (jti) whose sent code was consumed, and the codes.
    pub(crate) sent_used: HashSet<String>,
    pub(crate) sent_codes: HashSet<(User, String)>,
    /// Challenges (jti) a passkey assertion was consumed for, and the assertions.
    pub(crate) passkeys_used: HashSet<String>,
    pub(crate) assertions: HashSet<usize>,
}

#[derive(Default)]
pub(crate) struct Model {
    pub(crate) users: [UserState; 3],
    pub(crate) partials: Vec<PartialTok>,
    pub(crate) mfa_tokens: Vec<MfaTok>,
    pub(crate) access: Vec<AccessTok>,
    pub(crate) families: Vec<Family>,
    /// Every refresh token issued: (token, family index).
    pub(crate) refresh_tokens: Vec<(String, usize)>,
    pub(crate) ledger: Ledger,
    pub(crate) next_secret_id: u32,
    /// Sessions that have ended (logout, refresh-token reuse, `DELETE
    /// /auth/sessions/{id}`, a change of factors): their access tokens are refused.
    pub(crate) ended: HashSet<String>,
    /// Sessions ended by the current operation, probed after it.
    pub(crate) just_ended: Vec<String>,
    /// The `last_seen_at` of each session as last listed.
    pub(crate) listed_seen: HashMap<String, u64>,
    /// The code last sent for each challenge (by jti).
    pub(crate) sent: HashMap<String, SentCode>,
    /// Every code sent, in order (for replays), with the user and jti it was sent for.
    pub(crate) sent_log: Vec<(User, String, String)>,
    /// Every passkey assertion made.
    pub(crate) assertions: Vec<Assertion>,
    pub(crate) next_serial: u32,
}

/// A challenge token as the model knows it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Ch {
    Partial(usize),
    Mfa(usize),
    /// Garbage, forged, or an access token: never a challenge.
    Bogus,
}

/// What a code matches for a user, by the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Match {
    Step {
        secret: u32,
        step: u64,
    },
    Recovery(String),
    /// The code sent for challenge `jti`.
    Sent {
        jti: String,
    },
    /// An assertion for the passkey challenge pending for `jti`.
    Passkey {
        jti: String,
        hardware: bool,
    },
    Nothing,
}

impl Match {
    /// What the session gains in `amr` besides `mfa`, and its `acr`.
    pub(crate) fn claims(&self) -> (&'static str, &'static str) {
        match self {
            Match::Passkey { hardware: true, .. } => ("hwk", PHISHING_RESISTANT_HARDWARE_ACR),
            Match::Passkey { .. } => ("swk", PHISHING_RESISTANT_ACR),
            _ => ("otp", DEFAULT_MFA_ACR),
        }
    }
}

/// The step of `code` among the previous, current and next step (the later one if two
/// match), written apart from `factor::totp::verify`.
pub(crate) fn totp_match(secret: &TotpSecret, code: &str, now: u64) -> Option<u64> {
    let current = now / STEP;
    [current - 1, current, current + 1]
        .into_iter()
        .rfind(|s| totp::code_at(secret, *s) == code)
}

pub(crate) fn code_at_delta(secret: &TotpSecret, now: u64, delta: i64) -> String {
    let step = (now / STEP).checked_add_signed(delta).unwrap();
    totp::code_at(secret, step)
}

impl Model {
    pub(crate) fn new() -> Self {
        let mut m = Model::default();
        m.users[User::Alice.index()].factor = Some(Factor {
            secret: alice_secret(),
            id: 1,
            recovery: Vec::new(),
        });
        let carol_codes: Vec<String> = CAROL_CODES.iter().map(|c| (*c).to_owned()).collect();
        m.users[User::Carol.index()].factor = Some(Factor {
            secret: carol_secret(),
            id: 2,
            recovery: carol_codes.clone(),
        });
        m.users[User::Carol.index()].known_recovery = carol_codes;
        m.users[User::Alice.index()].passkey = Some(true);
        m.users[User::Alice.index()].email = true;
        m.users[User::Carol.index()].passkey = Some(false);
        m.next_secret_id = 3;
        m
    }

    /// Whether `u` has any second factor (TOTP, a passkey, an email address).
    pub(crate) fn has_factor(&self, u: User) -> bool {
        let s = self.user(u);
        s.factor.is_some() || s.passkey.is_some() || s.email
    }

    /// Until when the server accepts challenge `ch` (a partial token `exp` + the
    /// verifier's leeway, an mfa_token `exp`).
    pub(crate) fn ch_expiry(&self, ch: Ch) -> Option<u64> {
        match ch {
            Ch::Partial(i) => Some(self.partials[i].exp + LEEWAY),
            Ch::Mfa(i) => Some(self.mfa_tokens[i].exp),
            Ch::Bogus => None,
        }
    }

    pub(crate) fn user(&self, u: User) -> &UserState {
        &self.users[u.index()]
    }

    pub(crate) fn user_mut(&mut self, u: User) -> &mut UserState {
        &mut self.users[u.index()]
    }

    /// What `code` matches for `user` on challenge `ch` (`src/complete/proof.rs`): a
    /// code is a TOTP code first (a step in the window, used or not), else the code
    /// sent for this very challenge while it lives; an assertion answers the passkey
    /// challenge pending for this very token, from the user's registered passkey.
    pub(crate) fn eval(&self, user: User, code: &Code, ch: Ch, now: u64) -> Match {
        let u = self.user(user);
        let jti = self.ch_jti(ch);
        match code {
            Code::Totp(c) | Code::Sent(c) => {
                let step = u.factor.as_ref().and_then(|f| {
                    totp_match(&f.secret, c, now).map(|step| Match::Step { secret: f.id, step })
                });
                if let Some(step) = step {
                    return step;
                }
                let sent = jti.as_ref().and_then(|j| self.sent.get(j));
                match (jti, sent) {
                    (Some(jti), Some(s)) if u.email && s.code == *c && now < s.expires_at => {
                        Match::Sent { jti }
                    }
                    _ => Match::Nothing,
                }
            }
            Code::Recovery(c) => match &u.factor {
                Some(f) if f.recovery.contains(c) => Match::Recovery(c.clone()),
                _ => Match::Nothing,
            },
            Code::Passkey { id, .. } => {
                let a = &self.assertions[*id];
                let pending = u.passkey_pending.as_ref().filter(|p| {
                    Some(&p.jti) == jti.as_ref() && p.serial == a.serial && now < p.expires_at
                });
                match (u.passkey, pending) {
                    (Some(hardware), Some(p)) if a.registered && a.user == user => Match::Passkey {
                        jti: p.jti.clone(),
                        hardware,
                    },
                    _ => Match::Nothing,
                }
            }
            Code::Malformed => Match::Nothing,
        }
    }

    /// Whether the server accepts `code` for `user` on `ch` now (its rule: a later step
    /// than any accepted, an unused recovery code of the current factor, a sent code or
    /// an assertion not yet spent).
    pub(crate) fn fresh(&self, user: User, code: &Code, ch: Ch, now: u64) -> bool {
        match self.eval(user, code, ch, now) {
            Match::Step { step, .. } => self.user(user).last_step.is_none_or(|last| step > last),
            Match::Recovery(c) => !self.ledger.recovery.contains(&(user, c)),
            Match::Sent { jti } => !self.ledger.sent_used.contains(&jti),
            Match::Passkey { jti, .. } => !self.ledger.passkeys_used.contains(&jti),
            Match::Nothing => false,
        }
    }

    /// Whether a malformed assertion is refused as such (`400`, no attempt): only when
    /// a passkey challenge is pending for this very token (else there is nothing to
    /// read it against, and it is a wrong proof).
    pub(crate) fn malformed_is_read(&self, user: User, ch: Ch, now: u64) -> bool {
        let jti = self.ch_jti(ch);
        self.user(user)
            .passkey_pending
            .as_ref()
            .is_some_and(|p| Some(&p.jti) == jti.as_ref() && now < p.expires_at)
    }

    /// A six-digit code that matches no secret of anyone within two steps of `now`.
    pub(crate) fn wrong_code(&self, now: u64) -> String {
        let step = now / STEP;
        let mut taken = HashSet::new();
        for u in &self.users {
            let secrets = u
                .factor
                .iter()
                .map(|f| &f.secret)
                .chain(u.pending.iter().map(|p| &p.secret));
            for secret in secrets {
                for s in step - 2..=step + 2 {
                    taken.insert(totp::code_at(secret, s));
                }
            }
        }
        taken.extend(self.sent.values().map(|s| s.code.clone()));
        [
            "918273", "827364", "736451", "645192", "554033", "463921", "372810",
        ]
        .into_iter()
        .find(|c| !taken.contains(*c))
        .unwrap()
        .to_owned()
    }

    pub(crate) fn ch_user(&self, ch: Ch) -> Option<User> {
        match ch {
            Ch::Partial(i) => Some(self.partials[i].user),
            Ch::Mfa(i) => Some(self.mfa_tokens[i].user),
            Ch::Bogus => None,
        }
    }

    pub(crate) fn ch_used(&self, ch: Ch) -> bool {
        match ch {
            Ch::Partial(i) => self.partials[i].used,
            Ch::Mfa(i) => self.mfa_tokens[i].used,
            Ch::Bogus => false,
        }
    }

    pub(crate) fn set_used(&mut self, ch: Ch, used: bool) {
        match ch {
            Ch::Partial(i) => self.partials[i].used = used,
            Ch::Mfa(i) => self.mfa_tokens[i].used = used,
            Ch::Bogus => {}
        }
    }

    pub(crate) fn ch_jti(&self, ch: Ch) -> Option<String> {
        match ch {
            Ch::Partial(i) => Some(self.partials[i].jti.clone()),
            Ch::Mfa(i) => Some(self.mfa_tokens[i].jti.clone()),
            Ch::Bogus => None,
        }
    }

    pub(crate) fn family_of_sid(&self, sid: &str) -> Option<usize> {
        self.families.iter().position(|f| f.sid == sid)
    }

    /// Whether family `f` is a live session at `now`: not revoked, not past its
    /// absolute end (what `GET /auth/sessions` lists, what `DELETE` can end).
    pub(crate) fn live(&self, f: usize, now: u64) -> bool {
        let fam = &self.families[f];
        !fam.revoked && now < fam.expires_at
    }

    /// Ends live family `f`: revoked, and its access tokens refused from now on.
    pub(crate) fn end_family(&mut self, f: usize, now: u64) {
        if self.live(f, now) {
            let sid = self.families[f].sid.clone();
            self.end_sid(sid);
        }
        self.families[f].revoked = true;
    }

    /// Session `sid` has ended: its access tokens are refused from now on.
    pub(crate) fn end_sid(&mut self, sid: String) {
        if self.ended.insert(sid.clone()) {
            self.just_ended.push(sid);
        }
    }

    /// A wrong or replayed code of `user`: one more failure, maybe a lockout that kills
    /// the challenge.
    pub(crate) fn fail(&mut self, user: User, ch: Option<Ch>, now: u64) -> Want {
        let (failures, locked) = self.user_mut(user).attempts.record(ATTEMPTS, now);
        if locked {
            if let Some(ch) = ch {
                self.set_used(ch, true);
            }
            Want {
                retry_after: Some(LOCKOUT),
                ..Want::err(429, "too_many_attempts", LOCKOUT_HOLDS)
            }
        } else {
            Want {
                attempts_remaining: Some(MAX_ATTEMPTS - failures),
                ..Want::err(401, "invalid_code", LOCKOUT_HOLDS)
            }
        }
    }

    pub(crate) fn locked_want(&self, user: User, now: u64) -> Option<Want> {
        let attempts = self.user(user).attempts;
        attempts.locked(now).then(|| Want {
            retry_after: attempts.locked_until.map(|until| until - now),
            ..Want::err(429, "too_many_attempts", LOCKOUT_HOLDS)
        })
    }
}

/// A predicted answer. `rule` names the property a mismatch violates.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Want {
    pub(crate) status: u16,
    pub(crate) error: &'static str,
    pub(crate) rule: &'static str,
    pub(crate) attempts_remaining: Option<u32>,
    pub(crate) retry_after: Option<u64>,
}

impl Want {
    pub(crate) fn status(status: u16) -> Self {
        Want {
            status,
            error: "",
            rule: MODEL,
            attempts_remaining: None,
            retry_after: None,
        }
    }

    pub(crate) fn err(status: u16, error: &'static str, rule: &'static str) -> Self {
        Want {
            error,
            rule,
            ..Want::status(status)
        }
    }
}

/// A credential as the model knows it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Credential {
    Access(usize),
    Partial(usize),
    Mfa,
}
