//! One-time codes sent by the application (email, SMS): the sender the application
//! implements ([`CodeSender`]), a demo sender that only logs ([`LogSender`]), the
//! per-user limit on sends ([`SendLimit`], [`reserve_send`]), and the completion side's
//! two halves: `POST …/mfa/send` ([`Completion::send_code`]) sends a code for a
//! challenge, and verify accepts it in `code` ([`judge`]).
//!
//! The codes themselves, their hashes and what the store keeps of them are in
//! [`factor::sent`](crate::factor::sent). A user's email addresses and phone numbers are
//! factors of the kinds [`kind::EMAIL`] and [`kind::SMS`] whose data is the destination
//! in UTF-8 ([`Completion::add_code_factor`]).
//!
//! # Security
//! - Every send costs the application money and the user attention, and every code is
//!   one more guess at the verify endpoint: sends are limited per user
//!   ([`SendLimit`], 5 per 15 minutes by default), counted in the [`Store`] so that all
//!   replicas share the count and a burst of concurrent requests cannot overrun it.
//! - A code is bound to the challenge it was sent for: it is stored (hashed) under the
//!   challenge token's `jti`, and only a verify of that very token reads it. It dies
//!   after [`SENT_CODE_TTL`](sent::SENT_CODE_TTL) or with the challenge, whichever is first; a second send for
//!   the same challenge replaces it. A wrong code is a failed attempt of the user, as a
//!   wrong TOTP code is, under the same reservation and lockout.
//! - A [`SentMessage`] carries the code: its `Debug` shows neither the code nor the
//!   whole destination. A [`CodeSender`] must not log the code either; neither the code
//!   nor the destination is in an audit event.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::Response;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::challenged::{self, Challenge, TokenPlaces};
use super::dpop::{self, Target};
use super::enrolled::Enrolled;
use super::error::{ErrorKind, Failure};
use super::response::no_content;
use super::{attempt, BackendError, BackendFuture, Completion};
use crate::audit::Record;
use crate::error::ConfigError;
use crate::factor::sent::{self, Channel, CodeDigits, PendingCode};
use crate::factor::stored::kind;
use crate::factor::{FactorData, StoredFactor};
use crate::store::{AttemptPolicy, JudgedProof, Reservation, Settlement, Store, StoreError};

/// One code to deliver, as [`CodeSender::send`] receives it.
#[non_exhaustive]
pub struct SentMessage<'a> {
    /// The user it is for (the tokens' `sub`).
    pub user: &'a str,
    /// How to deliver it.
    pub channel: Channel,
    /// Where to: the email address or phone number of the user's factor.
    pub destination: &'a str,
    /// The code (6 to 8 ASCII digits). Never log it.
    pub code: &'a str,
    /// How long the code can be used from now: tell the user.
    pub expires_in: Duration,
}

impl<'a> SentMessage<'a> {
    /// A message from its parts (e.g. to test a sender).
    pub fn new(
        user: &'a str,
        channel: Channel,
        destination: &'a str,
        code: &'a str,
        expires_in: Duration,
    ) -> Self {
        Self {
            user,
            channel,
            destination,
            code,
            expires_in,
        }
    }
}

impl fmt::Debug for SentMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentMessage")
            .field("user", &self.user)
            .field("channel", &self.channel)
            .field("destination", &masked(self.destination))
            .field("code", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// `destination` with most of it hidden, for logs: an email address keeps its first
/// character and its domain (`a…@example.com`), anything else its last two characters
/// (`…42`).
fn masked(destination: &str) -> String {
    if let Some((local, domain)) = destination.rsplit_once('@') {
        let first = local.chars().next().map(String::from).unwrap_or_default();
        return format!("{first}…@{domain}");
    }
    let count = destination.chars().count();
    let tail: String = destination.chars().skip(count.saturating_sub(2)).collect();
    format!("…{tail}")
}

/// Delivers one-time codes: the application's email or SMS gateway.
///
/// # Security
/// Never log [`SentMessage::code`]. An error is answered with
/// `503 temporarily_unavailable`; the send still counts against the user's
/// [`SendLimit`].
pub trait CodeSender: Send + Sync + 'static {
    /// Delivers `message` (or hands it to a queue that will).
    fn send<'a>(&'a self, message: &'a SentMessage<'a>) -> BackendFuture<'a, ()>;
}

/// How many users' last codes a [`LogSender`] keeps: sending to one more forgets the
/// user whose code was sent longest ago.
pub const LOG_SENDER_CAPACITY: usize = 1024;

/// A [`CodeSender`] for demos and tests: it logs that a code was sent (at `info`, with
/// the user, the channel and a masked destination, never the code) and keeps the last
/// code of each user in memory for [`last_code`](Self::last_code), so that a test, or a
/// demo's test-only route, can type it. At most [`LOG_SENDER_CAPACITY`] users' codes
/// are kept.
///
/// # Security
/// It delivers nothing. Expose [`last_code`](Self::last_code) only behind an explicit
/// test flag: whoever can read it can pass the second factor.
#[derive(Default)]
pub struct LogSender {
    last: Mutex<LastCodes>,
}

/// The last code of each user, with the order they were sent in.
#[derive(Default)]
struct LastCodes {
    codes: HashMap<String, (u64, Zeroizing<String>)>,
    sent: u64,
}

impl LastCodes {
    fn record(&mut self, user: &str, code: &str) {
        if self.codes.len() >= LOG_SENDER_CAPACITY && !self.codes.contains_key(user) {
            let oldest = self
                .codes
                .iter()
                .min_by_key(|(_, (order, _))| *order)
                .map(|(user, _)| user.clone());
            if let Some(oldest) = oldest {
                self.codes.remove(&oldest);
            }
        }
        self.sent = self.sent.saturating_add(1);
        let code = Zeroizing::new(code.to_owned());
        self.codes.insert(user.to_owned(), (self.sent, code));
    }
}

impl LogSender {
    /// No codes sent yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The last code sent to `user`, if any (kept after it expires or is used, until
    /// the next one replaces it).
    pub fn last_code(&self, user: &str) -> Option<Zeroizing<String>> {
        let last = self.last.lock().ok()?;
        last.codes.get(user).map(|(_, code)| code.clone())
    }

    /// How many codes it was given to send, to every user, since it was made.
    pub fn sent(&self) -> u64 {
        self.last.lock().map(|l| l.sent).unwrap_or(0)
    }
}

impl fmt::Debug for LogSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users = self.last.lock().map(|l| l.codes.len()).unwrap_or(0);
        f.debug_struct("LogSender").field("users", &users).finish()
    }
}

impl CodeSender for LogSender {
    fn send<'a>(&'a self, message: &'a SentMessage<'a>) -> BackendFuture<'a, ()> {
        let result = self
            .last
            .lock()
            .map(|mut last| last.record(message.user, message.code))
            .map_err(|_| BackendError("log sender poisoned".to_owned()));
        if result.is_ok() {
            tracing::info!(
                user = message.user,
                channel = message.channel.requirement_type(),
                destination = %masked(message.destination),
                expires_in_secs = message.expires_in.as_secs(),
                "one-time code sent (log sender: not delivered)"
            );
        }
        Box::pin(std::future::ready(result))
    }
}

/// The default number of sends per user within [`DEFAULT_SEND_WINDOW`]: 5.
pub const DEFAULT_MAX_SENDS: u32 = 5;

/// The default window of [`SendLimit`]: 15 minutes.
pub const DEFAULT_SEND_WINDOW: Duration = Duration::from_secs(15 * 60);

/// How many codes one user can be sent: at most `max_sends` within `window`, then none
/// until `window` has passed since the last one allowed. [`Default`]: 5 per 15 minutes.
///
/// The count lives in the [`Store`] as the attempt record of a key of the user's own
/// (each send one recorded "failure" of an [`AttemptPolicy`] of `max_sends` within
/// `window`, with a lockout as long as the window). Sends are forgotten only after a
/// quiet `window`: a user sent a code every 14 minutes reaches the limit too, after
/// `max_sends` of them. The count is apart from the user's wrong codes: sends never
/// lock the user out of verify, nor wrong codes out of sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendLimit {
    max_sends: u32,
    window_secs: u64,
}

impl Default for SendLimit {
    fn default() -> Self {
        Self {
            max_sends: DEFAULT_MAX_SENDS,
            window_secs: DEFAULT_SEND_WINDOW.as_secs(),
        }
    }
}

impl SendLimit {
    /// At most `max_sends` (at least 1) within `window` (at least 1 s).
    pub fn new(max_sends: u32, window: Duration) -> Result<Self, ConfigError> {
        let window_secs = window.as_secs();
        if max_sends == 0 || window_secs == 0 {
            return Err(ConfigError::invalid(
                "send_limit",
                "at least one send and a window of at least 1 s",
            ));
        }
        Ok(Self {
            max_sends,
            window_secs,
        })
    }

    /// Sends allowed within the window.
    pub fn max_sends(&self) -> u32 {
        self.max_sends
    }

    /// The window.
    pub fn window(&self) -> Duration {
        Duration::from_secs(self.window_secs)
    }

    fn policy(&self) -> AttemptPolicy {
        AttemptPolicy {
            max_attempts: self.max_sends,
            lockout_secs: self.window_secs,
            window_secs: self.window_secs,
        }
    }
}

/// The store key that counts `user`'s sends. It starts with U+001F, so that it is no
/// user's own attempt key (their `sub`, which has no control characters): sends and
/// wrong codes are counted apart.
fn send_key(user: &str) -> String {
    format!("\u{1f}send:{user}")
}

/// Counts one send to `user` at `now` if `limit` allows it: `Ok(Ok(()))`, send the
/// code; `Ok(Err(secs))`, refuse (`429` with `Retry-After: secs`): the limit is reached
/// until then, or (`secs` = 1) concurrent sends of the user fill what is left of it.
///
/// The send is counted before the code is sent, atomically with the check (reserved,
/// then recorded), so that N concurrent requests send at most `max_sends` codes, on any
/// store. A send that then fails still counts. A store error is `Err` (fail closed,
/// `503`, send nothing).
pub async fn reserve_send(
    store: &dyn Store,
    user: &str,
    limit: SendLimit,
    now: u64,
) -> Result<Result<(), u64>, StoreError> {
    let key = send_key(user);
    let policy = limit.policy();
    match store.reserve_attempt(&key, policy, now).await? {
        Reservation::Granted => {}
        Reservation::Locked { until } => return Ok(Err(until.saturating_sub(now).max(1))),
        // Busy, or anything a later version adds: refused for a second.
        _ => return Ok(Err(1)),
    }
    store
        .settle_attempt(&key, Settlement::Failed, policy, now)
        .await?;
    Ok(Ok(()))
}

/// The sending settings of a [`CompletionBuilder`](super::CompletionBuilder), as given.
#[derive(Default)]
pub(crate) struct SendSettings {
    pub(crate) sender: Option<Arc<dyn CodeSender>>,
    pub(crate) limit: Option<SendLimit>,
    pub(crate) digits: Option<u8>,
}

/// The sending settings of a [`Completion`], checked.
pub(crate) struct Sending {
    /// `None`: `POST …/mfa/send` answers `400`.
    sender: Option<Arc<dyn CodeSender>>,
    limit: SendLimit,
    digits: CodeDigits,
}

impl SendSettings {
    /// The settings, or the [`ConfigError`] of digits outside 6 to 8.
    pub(crate) fn build(self) -> Result<Sending, ConfigError> {
        let digits = match self.digits {
            None => CodeDigits::DEFAULT,
            Some(n) => CodeDigits::new(n)
                .ok_or_else(|| ConfigError::invalid("sent_code_digits", "6, 7 or 8 digits"))?,
        };
        Ok(Sending {
            sender: self.sender,
            limit: self.limit.unwrap_or_default(),
            digits,
        })
    }
}

/// The factor kind of a channel's destinations.
fn kind_of(channel: Channel) -> &'static str {
    match channel {
        Channel::Email => kind::EMAIL,
        Channel::Sms => kind::SMS,
    }
}

/// The longest destination [`add_factor`] takes, in bytes.
const MAX_DESTINATION_LEN: usize = 320;

/// [`Completion::add_code_factor`]: a factor of `channel`'s kind whose data is
/// `destination` in UTF-8; its id.
pub(crate) async fn add_factor(
    completion: &Completion,
    user: &str,
    channel: Channel,
    destination: &str,
    name: Option<&str>,
) -> Result<String, BackendError> {
    let bad = destination.is_empty()
        || destination.len() > MAX_DESTINATION_LEN
        || destination.chars().any(char::is_control);
    if bad {
        return Err(BackendError(
            "a destination is 1 to 320 bytes without control characters".to_owned(),
        ));
    }
    let now = completion.inner().guard.clock().now();
    let data = FactorData::new(destination.as_bytes().to_vec());
    let factor = StoredFactor::new(kind_of(channel), data, now)
        .map_err(|_| BackendError("no randomness for a factor id".to_owned()))?
        .named(name.map(str::to_owned));
    let id = factor.id.clone();
    completion.inner().factors.add_factor(user, factor).await?;
    Ok(id)
}

/// The store key of the code sent for the challenge `jti`.
fn pending_key(jti: &str) -> String {
    format!("sent:{jti}")
}

/// The body of `POST …/mfa/send`.
#[derive(Deserialize)]
pub(crate) struct SendBody {
    #[serde(default)]
    mfa_token: Option<String>,
    channel: Channel,
    #[serde(default)]
    factor_id: Option<String>,
}

/// `POST …/mfa/send`: checks in this order: a sender configured (`400`) → body
/// well-formed → challenge token genuine (as verify finds and opens it) → a factor of the
/// channel (`400`) → a send allowed by the [`SendLimit`] (`429` with `Retry-After`) →
/// the code stored for the challenge → sent (`503` if the sender fails) → `204`.
pub(crate) async fn handle(
    completion: &Completion,
    parts: Parts,
    body: Result<SendBody, Failure>,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure> {
    let sending = &completion.inner().sending;
    let Some(sender) = sending.sender.as_deref() else {
        return Err(Failure::invalid_request("codes cannot be sent here"));
    };
    let body = body?;
    let partial_cookie = completion.cookies().map(|c| c.partial_name());
    let places = TokenPlaces::of_request(&parts.headers, body.mfa_token.as_deref(), partial_cookie);
    let (token, access) = places.resolve()?;
    audit.token(token);
    let now = completion.inner().guard.clock().now();
    let challenge = challenged::open(completion, token, access, now, audit)?;
    audit.sub(&challenge.sub);
    // A bound challenge's proof: checked now, used once before anything is stored.
    let bound = challenge.bound_proof(completion, &places, Target::of(&parts), now)?;
    let enrolled = Enrolled::load(completion, &challenge.sub).await?;
    let (factor_id, destination) = destination(&enrolled, body.channel, body.factor_id.as_deref())?;
    if let Some(proof) = &bound {
        dpop::use_once(completion, proof, now).await?;
    }
    let store = &*completion.inner().store;
    if let Err(secs) = reserve_send(store, &challenge.sub, sending.limit, now).await? {
        audit.reason("send_limit");
        return Err(attempt::too_many(secs).describe("too many codes were sent; try again later"));
    }
    let outgoing = Outgoing {
        channel: body.channel,
        factor_id,
        destination,
    };
    outgoing.send(completion, sender, &challenge, now).await?;
    audit.reason(body.channel.requirement_type());
    Ok(no_content())
}

/// The user's factor of `channel` that a code goes to: `factor_id` if given, else the
/// oldest; its id and destination. None of that channel, or not `factor_id`: `400`.
fn destination(
    enrolled: &Enrolled,
    channel: Channel,
    factor_id: Option<&str>,
) -> Result<(String, String), Failure> {
    let mut factors = enrolled.of_kind(kind_of(channel));
    let factor = match factor_id {
        None => factors.min_by_key(|f| f.created_at),
        Some(id) => factors.find(|f| f.id == id),
    };
    let Some(factor) = factor else {
        return Err(Failure::invalid_request(match factor_id {
            None => "no factor of this channel is enrolled",
            Some(_) => "factor_id names no factor of this channel",
        }));
    };
    match std::str::from_utf8(factor.data.as_bytes()) {
        Ok(to) if !to.is_empty() => Ok((factor.id.clone(), to.to_owned())),
        _ => {
            tracing::error!("a code factor's destination is not UTF-8; refusing to send");
            Err(Failure::new(ErrorKind::ServerError))
        }
    }
}

/// A code about to be sent.
struct Outgoing {
    channel: Channel,
    factor_id: String,
    destination: String,
}

impl Outgoing {
    /// Makes a code, stores it for `challenge` (replacing any code sent for it before),
    /// then hands it to `sender`. It lives [`SENT_CODE_TTL`](sent::SENT_CODE_TTL), or as long as the
    /// challenge if that ends first. A store or sender error is a `503`; a code stored
    /// but not sent is never typed, and dies with its time.
    async fn send(
        self,
        completion: &Completion,
        sender: &dyn CodeSender,
        challenge: &Challenge,
        now: u64,
    ) -> Result<(), Failure> {
        let inner = completion.inner();
        let (code, hash) = sent::generate(inner.sending.digits)
            .map_err(|_| Failure::new(ErrorKind::ServerError))?;
        let mut pending = PendingCode::new(self.factor_id, self.channel, hash, now);
        pending.expires_at = pending.expires_at.min(challenge.expires_at);
        let key = pending_key(&challenge.jti);
        let expires_at = pending.expires_at;
        inner
            .store
            .put(&key, pending.to_bytes(), expires_at, now)
            .await?;
        let expires_in = Duration::from_secs(expires_at.saturating_sub(now));
        let message = SentMessage::new(
            &challenge.sub,
            self.channel,
            &self.destination,
            &code,
            expires_in,
        );
        sender.send(&message).await?;
        Ok(())
    }
}

/// A sent code that matched, for verify to spend: its channel, and the proof's single-use
/// key.
pub(crate) struct SentMatch {
    /// How it was sent.
    pub(crate) channel: Channel,
    /// `sent:<jti>:used`, remembered until the code dies.
    pub(crate) once: JudgedProof,
}

/// Whether `code` is the code sent for the challenge `jti` (verify's `code`, after TOTP
/// did not match): alive at `now`, and sent to a factor the user still has. `None` is a
/// wrong code. A user without an email or SMS factor costs no store read.
pub(crate) async fn judge(
    completion: &Completion,
    enrolled: &Enrolled,
    code: &str,
    jti: &str,
    now: u64,
) -> Result<Option<SentMatch>, Failure> {
    let mut code_factors = enrolled
        .of_kind(kind::EMAIL)
        .chain(enrolled.of_kind(kind::SMS));
    if code_factors.next().is_none() {
        return Ok(None);
    }
    let Some(bytes) = completion.inner().store.get(&pending_key(jti), now).await? else {
        return Ok(None);
    };
    let Some(pending) = PendingCode::from_bytes(&bytes) else {
        tracing::error!("a stored sent code is unreadable; refusing the verify");
        return Err(Failure::new(ErrorKind::ServerError));
    };
    let factor_kept = enrolled
        .of_kind(kind_of(pending.channel))
        .any(|f| f.id == pending.factor_id);
    if !factor_kept || !pending.accepts(code, now) {
        return Ok(None);
    }
    Ok(Some(SentMatch {
        channel: pending.channel,
        once: JudgedProof::Once {
            key: format!("{}:used", pending_key(jti)),
            forget_at: pending.expires_at,
        },
    }))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::store::MemoryStore;

    const T0: u64 = 1_800_000_000;

    async fn send(store: &MemoryStore, user: &str, now: u64) -> Result<(), u64> {
        reserve_send(store, user, SendLimit::default(), now)
            .await
            .unwrap()
    }

    #[test]
    fn settings_default_to_six_digits_and_refuse_other_lengths() {
        let sending = SendSettings::default().build().unwrap();
        assert_eq!(sending.digits, CodeDigits::DEFAULT);
        assert_eq!(sending.limit, SendLimit::default());
        assert!(sending.sender.is_none());
        for n in 6..=8 {
            let settings = SendSettings {
                digits: Some(n),
                ..SendSettings::default()
            };
            assert_eq!(settings.build().unwrap().digits.get(), n);
        }
        for n in [0, 5, 9] {
            let settings = SendSettings {
                digits: Some(n),
                ..SendSettings::default()
            };
            assert!(settings.build().is_err(), "{n}");
        }
        assert_eq!(kind_of(Channel::Email), kind::EMAIL);
        assert_eq!(kind_of(Channel::Sms), kind::SMS);
        assert_eq!(pending_key("j1"), "sent:j1");
    }

    #[test]
    fn send_limit_defaults_to_five_per_fifteen_minutes_and_refuses_zero() {
        let limit = SendLimit::default();
        assert_eq!(limit.max_sends(), 5);
        assert_eq!(limit.window(), Duration::from_secs(900));
        let custom = SendLimit::new(3, Duration::from_secs(60)).unwrap();
        assert_eq!((custom.max_sends(), custom.window().as_secs()), (3, 60));
        assert!(SendLimit::new(0, Duration::from_secs(60)).is_err());
        assert!(SendLimit::new(3, Duration::from_millis(999)).is_err());
    }

    #[tokio::test]
    async fn five_sends_then_refused_until_the_window_ends() {
        let store = MemoryStore::new();
        for i in 0..5 {
            assert_eq!(send(&store, "bob", T0 + i).await, Ok(()), "send {i}");
        }
        // The fifth send, at T0 + 4, starts a 900 s wait.
        assert_eq!(send(&store, "bob", T0 + 10).await, Err(894));
        assert_eq!(send(&store, "bob", T0 + 903).await, Err(1));
        // Refusals do not extend it.
        assert_eq!(send(&store, "bob", T0 + 904).await, Ok(()));
        // Then a fresh window: four more, and the fifth locks again.
        for i in 1..4 {
            assert_eq!(send(&store, "bob", T0 + 904 + i).await, Ok(()));
        }
        assert_eq!(send(&store, "bob", T0 + 910).await, Ok(()));
        assert_eq!(send(&store, "bob", T0 + 911).await, Err(899));
    }

    #[tokio::test]
    async fn sends_are_counted_per_user_and_apart_from_wrong_codes() {
        let store = MemoryStore::new();
        for i in 0..5 {
            assert_eq!(send(&store, "bob", T0 + i).await, Ok(()));
        }
        assert!(send(&store, "bob", T0 + 5).await.is_err());
        assert_eq!(send(&store, "alice", T0 + 5).await, Ok(()));
        // Bob's own attempts (his `sub` as the key, as verify counts them) are untouched.
        let attempts = store.attempts("bob", T0 + 5).await.unwrap();
        assert_eq!((attempts.failures, attempts.locked_until), (0, None));
        // And the other way round: wrong codes that lock carol out of verify leave her
        // sends alone.
        let policy = AttemptPolicy::default();
        for _ in 0..policy.max_attempts {
            store.reserve_attempt("carol", policy, T0).await.unwrap();
            store
                .settle_attempt("carol", Settlement::Failed, policy, T0)
                .await
                .unwrap();
        }
        assert!(store.attempts("carol", T0).await.unwrap().is_locked(T0));
        assert_eq!(send(&store, "carol", T0).await, Ok(()));
    }

    #[tokio::test]
    async fn a_quiet_window_forgets_the_sends() {
        let store = MemoryStore::new();
        for i in 0..4 {
            assert_eq!(send(&store, "bob", T0 + i).await, Ok(()));
        }
        // 900 s after the fourth: forgotten, five more fit.
        for i in 0..5 {
            assert_eq!(send(&store, "bob", T0 + 903 + i).await, Ok(()), "{i}");
        }
        assert!(send(&store, "bob", T0 + 908).await.is_err());
    }

    #[tokio::test]
    async fn sends_in_flight_fill_the_limit_for_a_second() {
        let store = MemoryStore::new();
        let limit = SendLimit::default();
        let key = send_key("bob");
        for _ in 0..5 {
            let r = store.reserve_attempt(&key, limit.policy(), T0).await;
            assert_eq!(r.unwrap(), Reservation::Granted);
        }
        assert_eq!(send(&store, "bob", T0).await, Err(1));
        store
            .settle_attempt(&key, Settlement::Released, limit.policy(), T0)
            .await
            .unwrap();
        assert_eq!(send(&store, "bob", T0).await, Ok(()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_of_twenty_concurrent_sends_grants_five() {
        let store = Arc::new(MemoryStore::new());
        let start = Arc::new(tokio::sync::Barrier::new(20));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let (store, start) = (store.clone(), start.clone());
            tasks.spawn(async move {
                start.wait().await;
                reserve_send(&*store, "bob", SendLimit::default(), T0).await
            });
        }
        let mut granted = 0;
        let mut refused = 0;
        while let Some(answer) = tasks.join_next().await {
            match answer.unwrap().unwrap() {
                Ok(()) => granted += 1,
                Err(secs) => {
                    assert!(secs == 1 || secs == 900, "{secs}");
                    refused += 1;
                }
            }
        }
        assert_eq!((granted, refused), (5, 15));
        assert_eq!(send(&store, "bob", T0 + 1).await, Err(899));
    }

    #[tokio::test]
    async fn a_store_error_is_an_error_not_a_send() {
        let full = MemoryStore::with_max_entries(0);
        let answer = reserve_send(&full, "bob", SendLimit::default(), T0).await;
        assert_eq!(answer, Err(StoreError::Full));
    }

    #[test]
    fn debug_redacts_the_code_and_masks_the_destination() {
        let code = "493817";
        for (destination, shown, hidden) in [
            ("alice@example.com", "a…@example.com", "alice"),
            ("+15551234567", "…67", "5551234"),
        ] {
            let message = SentMessage::new(
                "u1",
                Channel::Sms,
                destination,
                code,
                Duration::from_secs(300),
            );
            let text = format!("{message:?}");
            assert!(!text.contains(code), "{text}");
            assert!(text.contains("<redacted>"), "{text}");
            assert!(text.contains(shown), "{text}");
            assert!(!text.contains(hidden), "{text}");
        }
        assert_eq!(masked(""), "…");
        assert_eq!(masked("@x"), "…@x");
        assert_eq!(masked("é"), "…é");
    }

    #[tokio::test]
    async fn log_sender_keeps_the_last_code_per_user() {
        let sender = LogSender::new();
        assert!(sender.last_code("alice").is_none());
        for (user, code) in [
            ("alice", "111111"),
            ("bob", "22222222"),
            ("alice", "333333"),
        ] {
            let m = SentMessage::new(user, Channel::Email, "x@y.z", code, Duration::ZERO);
            sender.send(&m).await.unwrap();
        }
        assert_eq!(
            sender.last_code("alice").as_deref().map(|c| c.as_str()),
            Some("333333")
        );
        assert_eq!(
            sender.last_code("bob").as_deref().map(|c| c.as_str()),
            Some("22222222")
        );
        assert!(sender.last_code("carol").is_none());
        assert_eq!(format!("{sender:?}"), "LogSender { users: 2 }");
    }

    #[tokio::test]
    async fn log_sender_forgets_the_oldest_user_beyond_its_capacity() {
        let sender = LogSender::new();
        let send = |user: String| {
            let sender = &sender;
            async move {
                let m = SentMessage::new(&user, Channel::Sms, "+1", "123456", Duration::ZERO);
                sender.send(&m).await.unwrap();
            }
        };
        for i in 0..LOG_SENDER_CAPACITY {
            send(format!("u{i}")).await;
        }
        // u0 sends again: now u1 is the oldest.
        send("u0".to_owned()).await;
        send("new".to_owned()).await;
        assert!(sender.last_code("new").is_some());
        assert!(sender.last_code("u0").is_some());
        assert!(sender.last_code("u1").is_none());
        assert!(sender.last_code("u2").is_some());
        assert_eq!(
            format!("{sender:?}"),
            format!("LogSender {{ users: {LOG_SENDER_CAPACITY} }}")
        );
    }
}
