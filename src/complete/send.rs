//! One-time codes sent by the application (email, SMS): the sender the application
//! implements ([`CodeSender`]), a demo sender that only logs ([`LogSender`]), and the
//! per-user limit on sends ([`SendLimit`], [`reserve_send`]).
//!
//! The codes themselves, their hashes and what the store keeps of them are in
//! [`factor::sent`](crate::factor::sent).
//!
//! # Security
//! - Every send costs the application money and the user attention, and every code is
//!   one more guess at the verify endpoint: sends are limited per user
//!   ([`SendLimit`], 5 per 15 minutes by default), counted in the [`Store`] so that all
//!   replicas share the count and a burst of concurrent requests cannot overrun it.
//! - A [`SentMessage`] carries the code: its `Debug` shows neither the code nor the
//!   whole destination. A [`CodeSender`] must not log the code either.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;

use zeroize::Zeroizing;

use super::{BackendError, BackendFuture};
use crate::error::ConfigError;
use crate::factor::sent::Channel;
use crate::store::{AttemptPolicy, Reservation, Settlement, Store, StoreError};

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

    #[tokio::test]
    async fn log_sender_never_logs_the_code() {
        use std::io::Write;
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let sender = LogSender::new();
        let m = SentMessage::new(
            "alice",
            Channel::Email,
            "alice@example.com",
            "864209",
            Duration::from_secs(300),
        );
        let _guard = tracing::subscriber::set_default(subscriber);
        sender.send(&m).await.unwrap();
        let logged = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert!(logged.contains("one-time code sent"), "{logged}");
        assert!(logged.contains("a…@example.com"), "{logged}");
        assert!(!logged.contains("864209"), "{logged}");
        assert!(!logged.contains("alice@"), "{logged}");
    }
}
