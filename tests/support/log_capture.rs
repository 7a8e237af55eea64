//! Every event the code under test emits, at every level and whatever the target, as the
//! tests read it: one global subscriber for the whole test binary, and a [`Watch`] per
//! test that keeps the events of the test's own thread (a current-thread runtime runs
//! the server there too).
//!
//! Global, not thread-local: a subscriber set with `set_default` races with the other
//! tests' threads over the callsites' cached interest, and missed events (about one run
//! in six). [`install`] must run before any test of the binary runs the code under test.
//!
//! ```ignore
//! let log = log_capture::watch();
//! // … drive the demo on this thread …
//! let e = log.one(); // the one audit event since the last look
//! assert_eq!(e.field("outcome"), Some("ok"));
//! ```
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread::ThreadId;

use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// One event, every field as text.
#[derive(Clone, Debug)]
pub struct Captured {
    /// Its target (`tower_stepup::audit::TARGET` for an audit event).
    pub target: String,
    /// Its level.
    pub level: tracing::Level,
    /// Every field, `message` included, as text (`Debug` for what is not a string).
    pub fields: BTreeMap<String, String>,
}

impl Captured {
    /// The field `name`, if the event has it.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

#[derive(Default)]
struct FieldText(BTreeMap<String, String>);

impl Visit for FieldText {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// The events of each watched thread since its watch's last look.
fn watched() -> MutexGuard<'static, HashMap<ThreadId, Vec<Captured>>> {
    static WATCHED: OnceLock<Mutex<HashMap<ThreadId, Vec<Captured>>>> = OnceLock::new();
    WATCHED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// The layer of the global subscriber: keeps the events of watched threads.
struct Capture;

impl<S: tracing::Subscriber> Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        let thread = std::thread::current().id();
        if !watched().contains_key(&thread) {
            return;
        }
        // Fields are read outside the lock: a field's `Debug` may itself emit.
        let mut fields = FieldText::default();
        event.record(&mut fields);
        let captured = Captured {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields: fields.0,
        };
        if let Some(events) = watched().get_mut(&thread) {
            events.push(captured);
        }
    }
}

/// Sets the binary's one global subscriber (every level), once. Call it before the code
/// under test runs, in every test of the binary that runs it.
pub fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let subscriber = tracing_subscriber::registry()
            .with(Capture.with_filter(tracing::level_filters::LevelFilter::TRACE));
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
    });
}

/// [`install`], then keeps every event this thread emits from now on, until the watch is
/// dropped.
pub fn watch() -> Watch {
    install();
    let thread = std::thread::current().id();
    watched().insert(thread, Vec::new());
    Watch {
        thread,
        _this_thread: PhantomData,
    }
}

/// The events of one thread (not `Send`: it reads the thread that made it).
pub struct Watch {
    thread: ThreadId,
    _this_thread: PhantomData<*const ()>,
}

impl Watch {
    /// Every event since the last look, and forget them.
    pub fn take(&self) -> Vec<Captured> {
        watched()
            .get_mut(&self.thread)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// The audit events since the last look, and forget every event.
    pub fn audit(&self) -> Vec<Captured> {
        self.take()
            .into_iter()
            .filter(|e| e.target == tower_stepup::audit::TARGET)
            .collect()
    }

    /// Exactly one audit event since the last look: that one.
    #[track_caller]
    pub fn one(&self) -> Captured {
        let mut events = self.audit();
        assert_eq!(events.len(), 1, "expected one audit event, got {events:#?}");
        events.remove(0)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        watched().remove(&self.thread);
    }
}
