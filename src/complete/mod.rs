//! The completion side: mountable services that finish what the layer starts.
//!
//! | endpoint | service | does |
//! | --- | --- | --- |
//! | `POST /auth/login` | [`Completion::login`] | checks the password; with a factor enrolled, answers only a partial token |
//! | `POST /auth/mfa/verify` | [`Completion::verify`] | a partial token or mfa_token plus a TOTP code, a sent code or a recovery code → a new session, or (step-up) new tokens of the same one |
//! | `POST /auth/mfa/send` | [`Completion::send_code`] | a partial token or mfa_token → a one-time code sent by email or SMS for it |
//! | `POST /auth/mfa/enroll` | [`Completion::enroll`] | a new TOTP secret (step-up first if the user has a factor) |
//! | `POST /auth/mfa/enroll/confirm` | [`Completion::enroll_confirm`] | the first code → the factor is on, recovery codes once |
//! | `POST /auth/refresh` | [`Completion::refresh`] | rotates the refresh token; reuse revokes the family |
//! | `POST /auth/logout` | [`Completion::logout`] | revokes the refresh family |
//! | `GET /auth/sessions` | [`Completion::sessions`] | the caller's live sessions |
//! | `DELETE /auth/sessions/{id}` | [`Completion::end_session`] | ends one of them (recent authentication first) |
//! | `DELETE /auth/devices/{id}` | [`Completion::end_device`] | forgets a remembered device (recent authentication first) |
//! | `GET /auth/factors` | [`Completion::factors`] | the caller's second factors |
//! | `PATCH /auth/factors/{id}` | [`Completion::rename_factor`] | names one of them |
//! | `DELETE /auth/factors/{id}` | [`Completion::remove_factor`] | removes one (recent authentication first; not the last unless allowed) |
//! | `POST /auth/mfa/recovery-codes` | [`Completion::regenerate_recovery_codes`] | a new set of recovery codes (recent authentication first) |
//!
//! Each is a plain [`tower_service::Service`] with `Error = Infallible` ([`Endpoint`]):
//! mount it with axum's `route_service`, or serve it with hyper directly. Put the
//! [`StepUpLayer`](crate::StepUpLayer) in front with [`Policy::public`](crate::Policy::public)
//! for login and refresh, [`Policy::mfa_verify`](crate::Policy::mfa_verify) for verify and send,
//! and [`Policy::authenticated`](crate::Policy::authenticated) for enroll, confirm,
//! logout and the sessions and factors endpoints (they read the verified [`Claims`](crate::Claims)).
//!
//! The application plugs in its users ([`Accounts`]) and where second factors are kept
//! ([`Factors`]); what must be atomic lives in a [`Store`] (see [`store`](crate::store)).
//!
//! Every refusal is one row of [`ERROR_TABLE`]; a store or backend error answers
//! `503 temporarily_unavailable`, never a pass.
//!
//! With DPoP on the guard ([`GuardBuilder::dpop`](crate::layer::GuardBuilder::dpop)) and
//! no cookies, a login with a `DPoP` proof (RFC 9449 §5) binds the session to the proof's
//! key: its partial token, access tokens (`cnf.jkt`, `token_type: "DPoP"`) and refresh
//! tokens. Verify, the passkey challenge and the send endpoint then need a proof of that
//! key with the partial token or the step-up mfa_token, refresh and logout with the
//! refresh token (`400 invalid_dpop_proof` otherwise, nothing spent); rotated and
//! stepped-up tokens stay bound. Without a proof, or in cookie mode, sessions are bearer.

mod attempt;
mod challenged;
mod cookie;
mod device;
mod directory;
mod dpop;
mod endpoint;
mod enroll;
mod enrolled;
mod error;
mod login;
mod manage;
#[cfg(feature = "passkey")]
mod passkey;
mod peer;
mod proof;
mod recent;
mod request;
mod response;
mod revoke;
mod send;
mod session;
mod sessions;
mod throttle;
mod username;
pub(crate) mod verify;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::error::ConfigError;
use crate::layer::Guard;
use crate::policy::StepUp;
use crate::store::{AttemptPolicy, Store};
use crate::token::Issuer;

pub use self::cookie::CookieConfig;
pub use self::directory::{Factors, MemoryFactors, TotpFactor};
pub use self::endpoint::{Endpoint, EndpointFuture};
pub use self::error::{ErrorKind, ErrorRow, ERROR_TABLE};
pub use self::peer::{PeerAddr, TrustedProxies};
pub use self::request::DEFAULT_BODY_LIMIT;
pub use self::send::{
    reserve_send, CodeSender, LogSender, SendLimit, SentMessage, DEFAULT_MAX_SENDS,
    DEFAULT_SEND_WINDOW, LOG_SENDER_CAPACITY,
};
pub use self::throttle::{
    LoginThrottle, DEFAULT_LOGIN_ACCOUNT_MAX_FAILURES, DEFAULT_LOGIN_MAX_FAILURES,
};

/// A boxed future of a backend call.
pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BackendError>> + Send + 'a>>;

/// The application's user directory or factor storage failed. Answered with 503.
#[derive(Debug, thiserror::Error)]
#[error("backend unavailable: {0}")]
pub struct BackendError(pub String);

/// A user whose password was accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Account {
    /// The stable user id: the tokens' `sub`.
    pub id: String,
    /// The scope their tokens get, space-delimited.
    pub scope: Option<String>,
}

impl Account {
    /// A user `id` with no scope.
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            scope: None,
        }
    }

    /// With this scope.
    pub fn with_scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }
}

/// The first factor: the application's users and their passwords.
///
/// # Security
/// Implementations must take about the same time for an unknown user as for a wrong
/// password (hash a dummy password), so that login does not reveal who has an account.
pub trait Accounts: Send + Sync + 'static {
    /// The account if `password` is right for `username`, `None` otherwise.
    ///
    /// `username` comes canonicalized (trimmed, Unicode NFKC, case-folded): keep account
    /// names in that form, so that `Alice` and `alice` are one account, for sign-in as for
    /// throttling.
    fn authenticate<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> BackendFuture<'a, Option<Account>>;
}

/// How long the store remembers that a recovery code was used: 400 days. Every store
/// entry expires, so this is finite; removing the code from the user's set
/// ([`Factors::update_factor`]) makes the use permanent.
pub const RECOVERY_CODE_MEMORY: Duration = Duration::from_secs(400 * 24 * 3600);

/// What the completion endpoints tell the application as it happens, e.g. to notify the
/// user on another channel. Every method has an empty default.
pub trait Hooks: Send + Sync + 'static {
    /// A second factor was enrolled for `user` (tell them: if it was not them, their
    /// account is being taken over).
    fn factor_enrolled(&self, user: &str) {
        let _ = user;
    }

    /// A second factor of `kind` (one of [`kind`](crate::factor::stored::kind)'s
    /// constants) was removed from `user`'s account (tell them, as for
    /// [`factor_enrolled`](Self::factor_enrolled)). When the last factor goes, the
    /// recovery codes that go with it are not told separately.
    fn factor_removed(&self, user: &str, kind: &str) {
        let _ = (user, kind);
    }
}

/// No hooks.
struct NoHooks;

impl Hooks for NoHooks {}

/// The default `acr` of a session that passed a second factor.
pub const DEFAULT_MFA_ACR: &str = "urn:tower-stepup:acr:mfa";
/// The default `acr` of a password-only session.
pub const DEFAULT_PASSWORD_ACR: &str = "urn:tower-stepup:acr:pwd";
/// The default absolute lifetime of a refresh family.
pub const DEFAULT_REFRESH_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// How long a started enrollment waits for its confirmation.
pub const ENROLLMENT_TTL: Duration = Duration::from_secs(600);
/// The longest a browser can be remembered ([`CompletionBuilder::remember_device`]): 30
/// days.
pub const MAX_REMEMBER_DEVICE: Duration = Duration::from_secs(30 * 24 * 3600);

/// The shared configuration of the completion endpoints. Cheap to clone.
#[derive(Clone)]
pub struct Completion {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) guard: Guard,
    pub(crate) issuer: Issuer,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) accounts: Arc<dyn Accounts>,
    pub(crate) factors: Arc<dyn Factors>,
    pub(crate) attempts: AttemptPolicy,
    pub(crate) refresh_lifetime: u64,
    /// Sessions end after this many seconds without a sign-in, refresh or step-up.
    pub(crate) session_idle: Option<u64>,
    /// How long a remembered device counts, in seconds (`None`: not offered).
    pub(crate) remember_device: Option<u64>,
    pub(crate) mfa_acr: String,
    pub(crate) password_acr: String,
    pub(crate) totp_issuer: String,
    pub(crate) enroll_step_up: StepUp,
    pub(crate) cookies: Option<CookieConfig>,
    pub(crate) body_limit: usize,
    pub(crate) hooks: Arc<dyn Hooks>,
    pub(crate) login_throttle: LoginThrottle,
    /// The relying party of passkeys, when they are on.
    #[cfg(feature = "passkey")]
    pub(crate) passkeys: Option<crate::factor::passkey::PasskeyConfig>,
    /// Whether a user may remove their last factor that signs in.
    pub(crate) allow_without_mfa: bool,
    pub(crate) sending: send::Sending,
}

impl Completion {
    /// Starts a configuration.
    pub fn builder() -> CompletionBuilder {
        CompletionBuilder::default()
    }

    /// `POST …/login` `{"username","password"}`.
    pub fn login(&self) -> Endpoint {
        Endpoint::new(self.clone(), endpoint::Kind::Login)
    }

    /// `POST …/mfa/verify` `{"mfa_token","code"}` or `{"mfa_token","recovery_code"}`.
    pub fn verify(&self) -> Endpoint {
        Endpoint::new(self.clone(), endpoint::Kind::Verify)
    }

    /// `POST …/mfa/send` `{"mfa_token"?, "channel": "email"|"sms", "factor_id"?}` → `204`:
    /// a one-time code for the challenge, sent to the user's factor of that channel
    /// ([`factor_id`](crate::factor::StoredFactor::id) picks one; default the oldest) by
    /// the [`CodeSender`] ([`CompletionBuilder::code_sender`]). The token is found as
    /// verify finds it: the body's `mfa_token`, else `Authorization: Bearer`, else the
    /// partial cookie. Verify then takes the code in `code`. Mount it with
    /// [`Policy::mfa_verify`](crate::Policy::mfa_verify), as verify.
    ///
    /// Checks in this order: a sender configured (else `400 invalid_request` "codes
    /// cannot be sent here") → body well-formed → token genuine → a factor of that channel
    /// (`400 invalid_request`) → a send allowed by the [`SendLimit`] (`429
    /// too_many_attempts` with `Retry-After`) → the code stored (hashed) under the
    /// challenge, alive for [`SENT_CODE_TTL`](crate::factor::sent::SENT_CODE_TTL) or
    /// until the challenge expires, replacing one sent before for it → sent (`503
    /// temporarily_unavailable` if the sender fails).
    pub fn send_code(&self) -> Endpoint {
        Endpoint::new(self.clone(), endpoint::Kind::SendCode)
    }

    /// Adds a factor of `channel` for `user`: an email address or phone number
    /// (`destination`, kept in UTF-8 as the factor's data) that
    /// [`send_code`](Self::send_code) sends codes to. Its id.
    ///
    /// # Security
    /// Verify that the user owns `destination` first (a link or code sent to it): a
    /// factor added here is trusted as the user's second factor at once. It ends no
    /// sessions; call [`factors_changed`](Self::factors_changed) if the change should.
    /// A destination that is empty, over 320 bytes or has control characters is an
    /// error.
    pub async fn add_code_factor(
        &self,
        user: &str,
        channel: crate::factor::sent::Channel,
        destination: &str,
        name: Option<&str>,
    ) -> Result<String, BackendError> {
        send::add_factor(self, user, channel, destination, name).await
    }

    /// `POST …/mfa/enroll` (authenticated; step-up when the user has a factor).
    pub fn enroll(&self) -> Endpoint {
        Endpoint::new(self.clone(), endpoint::Kind::Enroll)
    }

    /// `POST …/mfa/enroll/confirm` `{"code"}` (authenticated).
    pub fn enroll_confirm(&self) -> Endpoint {
        Endpoint::new(self.clone(), endpoint::Kind::EnrollConfirm)
    }

    /// `POST …/refresh` `{"refresh_token"}`.
    pub fn refresh(&self) -> Endpoint {
        Endpoint::new(self.clone(), endpoint::Kind::Refresh)
    }

    /// `POST …/logout` `{"refresh_token"}` (authenticated).
    pub fn logout(&self) -> Endpoint {
        Endpoint::new(self.clone(), endpoint::Kind::Logout)
    }

    /// `POST …/passkey/register/start` `{}` (authenticated; the recent-authentication rule
    /// of [`enroll`](Self::enroll)) → `{"registration_id","publicKey":{…creation
    /// options…}}` (feature `passkey`, with [`CompletionBuilder::passkeys`]).
    #[cfg(feature = "passkey")]
    pub fn passkey_register_start(&self) -> Endpoint {
        Endpoint::new(self.clone(), endpoint::Kind::PasskeyRegisterStart)
    }

    /// `POST …/passkey/register/finish` `{"registration_id","credential","name"?}`
    /// (authenticated, the user who started it) → `{"passkey_id"}`: a change of factors,
    /// as a confirmed enrollment (the user's other sessions end).
    #[cfg(feature = "passkey")]
    pub fn passkey_register_finish(&self) -> Endpoint {
        Endpoint::new(self.clone(), endpoint::Kind::PasskeyRegisterFinish)
    }

    /// `POST …/passkey/challenge` `{"mfa_token"}` (or the partial token where verify
    /// finds it) → `{"publicKey":{…request options…}}`, for a verify with
    /// `{"mfa_token","passkey":{…}}`. Mount it beside verify, with
    /// [`Policy::mfa_verify`](crate::Policy::mfa_verify).
    #[cfg(feature = "passkey")]
    pub fn passkey_challenge(&self) -> Endpoint {
        Endpoint::new(self.clone(), endpoint::Kind::PasskeyChallenge)
    }

    /// Ends every session of `sub` (an administrator's or the application's call: an
    /// account taken over, a user deleted or disabled): its refresh families are revoked
    /// and its access tokens refused, on every replica that follows the store (see
    /// [`revocation`](crate::revocation)). Returns how many live sessions it ended.
    ///
    /// Every token of the user issued up to now is refused, whichever session it
    /// belongs to; a sign-in after the call starts a new session that works.
    pub async fn revoke_user(&self, sub: &str) -> Result<usize, crate::store::StoreError> {
        sessions::end_user(self, sub).await
    }

    /// `GET …/sessions` (authenticated) → `{"sessions":[{"id","created_at","last_seen_at",
    /// "auth_time","amr","current"}],"devices":[{"id","created_at","last_used_at",
    /// "expires_at","current"}]}`: the caller's live sessions and remembered devices,
    /// oldest first, times in Unix seconds; `current` marks the caller's own session, and
    /// the device this browser's cookie names. `last_seen_at` is the session's last
    /// sign-in, refresh or step-up (nothing is written per request); `last_used_at` the
    /// device's last login without the second factor (its `created_at` if none).
    pub fn sessions(&self) -> Endpoint {
        Endpoint::new(self.clone(), endpoint::Kind::Sessions)
    }

    /// `DELETE …/sessions/{id}` (authenticated; `Content-Type: application/json`, no
    /// body) → `204`: ends the caller's session `id` (its refresh token is refused from
    /// now on). Mount it on a path that ends with the id, e.g. `/auth/sessions/{id}`.
    ///
    /// It needs a recent authentication, the rule of [`enroll`](Self::enroll)
    /// ([`CompletionBuilder::enroll_step_up`]): for a user with a second factor, `amr`
    /// with `mfa` and `auth_time` within its `max_age`, else the step-up challenge (`403
    /// mfa_required` with an mfa_token); for one without, `auth_time` within the
    /// `max_age`, else `403 reauthentication_required`. Another user's or an unknown
    /// id is `404 not_found` and changes nothing; a malformed id `400 invalid_request`.
    /// Ending one's own session also clears the session cookies (cookie mode).
    pub fn end_session(&self) -> Endpoint {
        Endpoint::new(self.clone(), endpoint::Kind::EndSession)
    }

    /// `DELETE …/devices/{id}` (authenticated; `Content-Type: application/json`, no body)
    /// → `204`: forgets the caller's remembered device `id` (the next password login
    /// there asks for the second factor again). The rules of
    /// [`end_session`](Self::end_session): a recent authentication first, `404
    /// not_found` for another user's or an unknown id, `400` for a malformed one.
    /// Forgetting this browser's device also clears its cookie. Mount it on a path that
    /// ends with the id, e.g. `/auth/devices/{id}`.
    pub fn end_device(&self) -> Endpoint {
        Endpoint::new(self.clone(), endpoint::Kind::EndDevice)
    }

    /// `GET …/factors` (authenticated) → `{"factors":[{"id","type","name","created_at"}]}`:
    /// the caller's second factors, oldest first (`created_at` in Unix seconds). `type`
    /// is the factor's `mfa_requirements` type (`otp`, `recovery-code`, `passkey`,
    /// `email`, `sms`; see [`kind::requirement`](crate::factor::stored::kind::requirement)),
    /// `name` the user's name for it or `null`; a set of recovery codes also says how
    /// many are left (`"remaining": n`). Nothing of a factor's secret data is shown.
    pub fn factors(&self) -> Endpoint {
        Endpoint::new(self.clone(), endpoint::Kind::Factors)
    }

    /// `PATCH …/factors/{id}` `{"name"}` (authenticated) → `204`: names the caller's
    /// factor `id`. The name is trimmed and must then be 1 to 64 characters without
    /// control characters (else `400 invalid_request`); another user's or an unknown id
    /// is `404 not_found`, a malformed one `400`. Mount it on a path that ends with the
    /// id, e.g. `/auth/factors/{id}`.
    pub fn rename_factor(&self) -> Endpoint {
        Endpoint::new(self.clone(), endpoint::Kind::RenameFactor)
    }

    /// `DELETE …/factors/{id}` (authenticated; `Content-Type: application/json`, no
    /// body) → `204`: removes the caller's factor `id`. It needs the recent
    /// authentication of [`end_session`](Self::end_session) (with a factor: `mfa` within
    /// the `max_age` of [`CompletionBuilder::enroll_step_up`], else the step-up
    /// challenge); another user's or an unknown id is `404 not_found` and changes
    /// nothing, a malformed one `400`.
    ///
    /// The account's last factor that signs in (recovery codes do not count) is `409
    /// last_factor` and stays, unless
    /// [`CompletionBuilder::allow_accounts_without_mfa`]; then the recovery codes go
    /// with it, and the user signs in with the password alone. A removal is a change of
    /// factors: the user's remembered devices are forgotten and their other sessions
    /// end, as [`factors_changed`](Self::factors_changed) does, and
    /// [`Hooks::factor_removed`] hears of it.
    pub fn remove_factor(&self) -> Endpoint {
        Endpoint::new(self.clone(), endpoint::Kind::RemoveFactor)
    }

    /// `POST …/mfa/recovery-codes` (authenticated; `Content-Type: application/json`, no
    /// body is read) → `{"recovery_codes":[…]}`, shown once: a new set replaces the
    /// caller's recovery codes, and the old ones are refused from now on. The recent
    /// authentication of [`remove_factor`](Self::remove_factor) first; a user without a
    /// factor that signs in gets `400 invalid_request` (enroll one first). A new set is a
    /// change of factors, as a removal is ([`Hooks::factor_enrolled`] hears of it).
    pub fn regenerate_recovery_codes(&self) -> Endpoint {
        Endpoint::new(self.clone(), endpoint::Kind::RecoveryCodes)
    }

    /// For an application that changes a user's factors outside these endpoints (a
    /// support desk resetting a lost authenticator): forgets all of `user`'s remembered
    /// devices and ends their sessions but `keep` (OWASP ASVS 5.0 V7.4.3), as a
    /// confirmed enrollment does. How many sessions it ended.
    pub async fn factors_changed(
        &self,
        user: &str,
        keep: Option<&str>,
    ) -> Result<usize, crate::store::StoreError> {
        let now = self.inner.guard.clock().now();
        device::forget_all(self, user, now).await?;
        sessions::end_others(self, user, keep, now).await
    }

    /// The cookie settings, if cookies are on.
    pub fn cookies(&self) -> Option<&CookieConfig> {
        self.inner.cookies.as_ref()
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }

    /// The caller's claims, as the layer verified them, if they are of a token of the
    /// local issuer: identity is (`iss`, `sub`), and an identity provider's user whose
    /// `sub` is `alice` is not the local alice, so the endpoints serve local users only.
    pub(crate) fn local_caller(&self, extensions: &http::Extensions) -> Option<crate::Claims> {
        extensions
            .get::<crate::Claims>()
            .filter(|claims| self.inner.guard.verifier().is_local(claims))
            .cloned()
    }
}

impl fmt::Debug for Completion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Completion")
            .field("guard", &self.inner.guard)
            .field("issuer", &self.inner.issuer)
            .field("attempts", &self.inner.attempts)
            .field("refresh_lifetime", &self.inner.refresh_lifetime)
            .field("session_idle", &self.inner.session_idle)
            .field("remember_device", &self.inner.remember_device)
            .field("cookies", &self.inner.cookies)
            .finish_non_exhaustive()
    }
}

/// Refuses an issuer whose tokens the guard would refuse: mints an access token and a
/// partial token of a probe grant and verifies them with the guard's verifier, at the
/// guard's time. Otherwise every sign-in would mint tokens the application's own layer
/// rejects (a wrong issuer name, audience, key or algorithm), found only in production.
/// The guard's verifier thus has a local issuer, and the guard a sealer.
fn probe(guard: &Guard, issuer: &Issuer) -> Result<(), ConfigError> {
    let mismatch = |what: &'static str, why: String| {
        ConfigError::invalid(
            "issuer",
            format!("the guard's verifier refuses the issuer's {what}: {why}"),
        )
    };
    let now = guard.clock().now();
    let grant = crate::token::Grant::new("tower-stepup-probe")
        .amr(["pwd"])
        .auth_time(now);
    for (what, kind) in [
        ("access tokens", crate::token::TokenKind::Access),
        ("partial tokens", crate::token::TokenKind::Partial),
    ] {
        let issued = match kind {
            crate::token::TokenKind::Partial => issuer.issue_partial(&grant),
            _ => issuer.issue_access(&grant),
        }
        .map_err(|e| mismatch(what, e.to_string()))?;
        match guard.verifier().verify(&issued.token, now) {
            Ok(v) if v.kind == kind && guard.verifier().is_local(&v.claims) => {}
            Ok(v) if v.kind == kind => {
                return Err(mismatch(what, "taken for a trusted issuer's".to_owned()))
            }
            Ok(v) => return Err(mismatch(what, format!("taken for {:?}", v.kind))),
            Err(e) => return Err(mismatch(what, e.to_string())),
        }
    }
    Ok(())
}

/// Configuration of [`Completion`].
#[derive(Default)]
#[must_use]
pub struct CompletionBuilder {
    guard: Option<Guard>,
    issuer: Option<Issuer>,
    store: Option<Arc<dyn Store>>,
    accounts: Option<Arc<dyn Accounts>>,
    factors: Option<Arc<dyn Factors>>,
    attempts: Option<AttemptPolicy>,
    refresh_lifetime: Option<Duration>,
    session_idle: Option<Duration>,
    remember_device: Option<Duration>,
    mfa_acr: Option<String>,
    password_acr: Option<String>,
    totp_issuer: Option<String>,
    enroll_step_up: Option<StepUp>,
    cookies: Option<CookieConfig>,
    body_limit: Option<usize>,
    hooks: Option<Arc<dyn Hooks>>,
    login_throttle: Option<LoginThrottle>,
    #[cfg(feature = "passkey")]
    passkeys: Option<crate::factor::passkey::PasskeyConfig>,
    allow_without_mfa: bool,
    sending: send::SendSettings,
}

impl CompletionBuilder {
    /// The guard of the protected routes: its verifier checks partial tokens, its sealer
    /// opens mfa_tokens, its clock is the time. Required.
    pub fn guard(mut self, guard: Guard) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Signs the access and partial tokens. Required. It reads the guard's clock (one
    /// clock for the whole completion side), whatever clock it was built with.
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuer = Some(issuer);
        self
    }

    /// The shared state. Required.
    pub fn store(mut self, store: impl Store) -> Self {
        self.store = Some(Arc::new(store));
        self
    }

    /// The shared state, already shared.
    pub fn shared_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The users. Required.
    pub fn accounts(mut self, accounts: impl Accounts) -> Self {
        self.accounts = Some(Arc::new(accounts));
        self
    }

    /// The second factors. Required.
    pub fn factors(mut self, factors: Arc<dyn Factors>) -> Self {
        self.factors = Some(factors);
        self
    }

    /// Wrong codes before lockout (default 5), lockout and memory of failures.
    pub fn attempts(mut self, policy: AttemptPolicy) -> Self {
        self.attempts = Some(policy);
        self
    }

    /// The absolute lifetime of a refresh family (default 24 h): no refresh after it,
    /// however often the tokens were rotated.
    pub fn refresh_lifetime(mut self, lifetime: Duration) -> Self {
        self.refresh_lifetime = Some(lifetime);
        self
    }

    /// Ends a session that has not been refreshed or stepped up (nor started) for this
    /// long (default: none, sessions live to their absolute end): its refresh token is
    /// refused, and it is gone from the list of sessions. Requests that only present an
    /// access token do not count (nothing is written per request): choose it longer
    /// than the access tokens' lifetime.
    pub fn session_idle_timeout(mut self, idle: Duration) -> Self {
        self.session_idle = Some(idle);
        self
    }

    /// Offers "remember this device" for `lifetime` (at most [`MAX_REMEMBER_DEVICE`], 30
    /// days; default: not offered). Needs [`cookies`](Self::cookies).
    ///
    /// A verify whose body says `"remember_device": true` then also sets a sealed device
    /// cookie (see [`CookieConfig`]) and remembers the device for the user (at most
    /// [`MAX_DEVICES_PER_USER`](crate::store::MAX_DEVICES_PER_USER), expiring with the
    /// cookie). A later password login of the same user presenting that cookie completes
    /// without the second factor, with `amr` `["pwd"]` only and the password `acr`: never
    /// `mfa`, so it never meets a step-up route, which asks for the second factor as
    /// ever. Another user's cookie counts for nothing. Devices are listed by
    /// [`Completion::sessions`], forgotten by [`Completion::end_device`], and all
    /// forgotten when the user's factors change.
    pub fn remember_device(mut self, lifetime: Duration) -> Self {
        self.remember_device = Some(lifetime);
        self
    }

    /// The `acr` of sessions after a second factor (default [`DEFAULT_MFA_ACR`]).
    pub fn mfa_acr(mut self, acr: impl Into<String>) -> Self {
        self.mfa_acr = Some(acr.into());
        self
    }

    /// The `acr` of password-only sessions (default [`DEFAULT_PASSWORD_ACR`]).
    pub fn password_acr(mut self, acr: impl Into<String>) -> Self {
        self.password_acr = Some(acr.into());
        self
    }

    /// The issuer name shown in authenticator apps (default `tower-stepup`).
    pub fn totp_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.totp_issuer = Some(issuer.into());
        self
    }

    /// What a user who already has a factor must meet to enroll another, to end a
    /// session, or to remove a factor or replace the recovery codes (default: `amr` contains `mfa`, `auth_time` within 300 s); a user without
    /// one must have signed in within its `max_age`.
    pub fn enroll_step_up(mut self, requirement: StepUp) -> Self {
        self.enroll_step_up = Some(requirement);
        self
    }

    /// Also set session and partial cookies, and read the partial cookie at verify.
    pub fn cookies(mut self, cookies: CookieConfig) -> Self {
        self.cookies = Some(cookies);
        self
    }

    /// The largest JSON body read (default [`DEFAULT_BODY_LIMIT`], 64 KiB).
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = Some(bytes);
        self
    }

    /// How password sign-in is throttled (default [`LoginThrottle::default`]: 10 failures
    /// per account and client in 15 minutes, 100 per account in an hour).
    pub fn login_throttle(mut self, throttle: LoginThrottle) -> Self {
        self.login_throttle = Some(throttle);
        self
    }

    /// Passkeys (WebAuthn) for this relying party: the registration and challenge
    /// endpoints answer, and verify accepts a passkey (feature `passkey`; default off).
    #[cfg(feature = "passkey")]
    pub fn passkeys(mut self, config: crate::factor::passkey::PasskeyConfig) -> Self {
        self.passkeys = Some(config);
        self
    }

    /// Whether a user may remove their last factor that signs in, and so have an account
    /// protected by the password alone (default `false`: `DELETE …/factors/{id}` answers
    /// `409 last_factor`). See [`Completion::remove_factor`].
    pub fn allow_accounts_without_mfa(mut self, allow: bool) -> Self {
        self.allow_without_mfa = allow;
        self
    }

    /// What the application hears of as it happens (default: nothing).
    pub fn hooks(mut self, hooks: impl Hooks) -> Self {
        self.hooks = Some(Arc::new(hooks));
        self
    }

    /// Sends one-time codes by email or SMS ([`Completion::send_code`]). Default: none,
    /// and `POST …/mfa/send` answers `400 invalid_request`.
    pub fn code_sender(mut self, sender: Arc<dyn CodeSender>) -> Self {
        self.sending.sender = Some(sender);
        self
    }

    /// How many codes one user can be sent (default [`SendLimit::default`]: 5 per 15
    /// minutes).
    pub fn send_limit(mut self, limit: SendLimit) -> Self {
        self.sending.limit = Some(limit);
        self
    }

    /// The digits of a sent code: 6 (the default), 7 or 8; anything else is a
    /// [`ConfigError`] at [`build`](Self::build).
    pub fn sent_code_digits(mut self, digits: u8) -> Self {
        self.sending.digits = Some(digits);
        self
    }

    /// Checks the configuration and builds it.
    pub fn build(self) -> Result<Completion, ConfigError> {
        let attempts = self.attempts.unwrap_or_default();
        if attempts.max_attempts == 0 || attempts.lockout_secs == 0 {
            return Err(ConfigError::invalid(
                "attempts",
                "at least one attempt and a lockout of at least 1 s",
            ));
        }
        let refresh_lifetime = self
            .refresh_lifetime
            .unwrap_or(DEFAULT_REFRESH_LIFETIME)
            .as_secs();
        if refresh_lifetime == 0 {
            return Err(ConfigError::invalid("refresh_lifetime", "at least 1 s"));
        }
        let session_idle = self.session_idle.map(|idle| idle.as_secs());
        if session_idle == Some(0) {
            return Err(ConfigError::invalid("session_idle_timeout", "at least 1 s"));
        }
        let remember_device = self.remember_device.map(|d| d.as_secs());
        if remember_device.is_some_and(|d| d == 0 || d > MAX_REMEMBER_DEVICE.as_secs()) {
            return Err(ConfigError::invalid(
                "remember_device",
                "between 1 s and 30 days",
            ));
        }
        if remember_device.is_some() && self.cookies.is_none() {
            return Err(ConfigError::invalid(
                "remember_device",
                "a remembered device is a cookie: set cookies too",
            ));
        }
        let login_throttle = self.login_throttle.unwrap_or_default();
        if !login_throttle.is_valid() {
            return Err(ConfigError::invalid(
                "login_throttle",
                "at least one attempt and a window of at least 1 s",
            ));
        }
        let sending = self.sending.build()?;
        let guard = self.guard.ok_or(ConfigError::Missing("guard"))?;
        let issuer = self
            .issuer
            .ok_or(ConfigError::Missing("issuer"))?
            .with_clock(guard.shared_clock());
        probe(&guard, &issuer)?;
        Ok(Completion {
            inner: Arc::new(Inner {
                guard,
                issuer,
                store: self.store.ok_or(ConfigError::Missing("store"))?,
                accounts: self.accounts.ok_or(ConfigError::Missing("accounts"))?,
                factors: self.factors.ok_or(ConfigError::Missing("factors"))?,
                attempts,
                refresh_lifetime,
                session_idle,
                remember_device,
                mfa_acr: self.mfa_acr.unwrap_or_else(|| DEFAULT_MFA_ACR.to_owned()),
                password_acr: self
                    .password_acr
                    .unwrap_or_else(|| DEFAULT_PASSWORD_ACR.to_owned()),
                totp_issuer: self
                    .totp_issuer
                    .unwrap_or_else(|| "tower-stepup".to_owned()),
                enroll_step_up: self.enroll_step_up.unwrap_or_else(|| {
                    StepUp::new().amr(["mfa"]).max_age(Duration::from_secs(300))
                }),
                cookies: self.cookies,
                body_limit: self.body_limit.unwrap_or(DEFAULT_BODY_LIMIT),
                hooks: self.hooks.unwrap_or_else(|| Arc::new(NoHooks)),
                login_throttle,
                #[cfg(feature = "passkey")]
                passkeys: self.passkeys,
                allow_without_mfa: self.allow_without_mfa,
                sending,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use crate::{
        Algorithm, ManualClock, Sealer, SealingKey, SealingKeys, SigningKey, Verifier, VerifyingKey,
    };

    const T0: u64 = 1_800_000_000;
    const KEY: [u8; 32] = [7; 32];

    struct NoAccounts;

    impl Accounts for NoAccounts {
        fn authenticate<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> BackendFuture<'a, Option<Account>> {
            Box::pin(std::future::ready(Ok(None)))
        }
    }

    fn guard() -> Guard {
        let verifier = Verifier::builder()
            .issuer("https://auth.test")
            .audience("https://api.test")
            .algorithms([Algorithm::HS256])
            .key(VerifyingKey::hmac("k1", Algorithm::HS256, &KEY).unwrap())
            .build()
            .unwrap();
        let sealer =
            Sealer::new(SealingKeys::new(SealingKey::new("s1", [9; 32]).unwrap())).unwrap();
        Guard::builder()
            .verifier(verifier)
            .sealer(sealer)
            .clock(ManualClock::new(T0))
            .build()
            .unwrap()
    }

    fn issuer(iss: &str, aud: &str, key: [u8; 32], now: u64) -> Issuer {
        Issuer::builder()
            .issuer(iss)
            .audience(aud)
            .signing_key(SigningKey::hmac("k1", Algorithm::HS256, &key).unwrap())
            .clock(ManualClock::new(now))
            .build()
            .unwrap()
    }

    fn build(issuer: Issuer) -> Result<Completion, ConfigError> {
        Completion::builder()
            .guard(guard())
            .issuer(issuer)
            .store(MemoryStore::new())
            .accounts(NoAccounts)
            .factors(Arc::new(MemoryFactors::new()))
            .build()
    }

    #[test]
    fn an_issuer_the_guard_accepts_builds() {
        let ok = issuer("https://auth.test", "https://api.test", KEY, T0);
        assert!(build(ok).is_ok());
    }

    #[test]
    fn the_issuer_reads_the_guards_clock() {
        // Built two hours behind the guard: its tokens would be refused as expired.
        let behind = issuer("https://auth.test", "https://api.test", KEY, T0 - 7200);
        let completion = build(behind).unwrap();
        let grant = crate::token::Grant::new("alice").amr(["pwd"]);
        let issued = completion.inner().issuer.issue_access(&grant).unwrap();
        assert_eq!(issued.claims.iat(), Some(T0));
        assert_eq!(completion.inner().issuer.clock().now(), T0);
    }

    #[test]
    fn an_issuer_whose_tokens_the_guard_refuses_is_a_config_error() {
        for (what, bad) in [
            (
                "name",
                issuer("https://other.test", "https://api.test", KEY, T0),
            ),
            (
                "audience",
                issuer("https://auth.test", "https://web.test", KEY, T0),
            ),
            (
                "key",
                issuer("https://auth.test", "https://api.test", [8; 32], T0),
            ),
        ] {
            let err = build(bad).err().unwrap_or_else(|| panic!("{what}: built"));
            let text = err.to_string();
            assert!(text.contains("issuer"), "{what}: {text}");
            assert!(text.contains("access tokens"), "{what}: {text}");
        }
    }
}
