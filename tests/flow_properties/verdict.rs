//! Violations of the properties, and how often each outcome was reached.

use crate::*;

/// How often each outcome was reached, over a whole search (printed by `check`).
pub(crate) static REACHED: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());

pub(crate) fn reached(what: impl Into<String>) {
    let what = what.into();
    let mut counts = REACHED.lock().unwrap();
    match counts.iter_mut().find(|(w, _)| *w == what) {
        Some((_, n)) => *n += 1,
        None => counts.push((what, 1)),
    }
}

#[derive(Debug)]
pub(crate) struct Violation {
    pub(crate) property: &'static str,
    pub(crate) message: String,
}

pub(crate) fn violation(property: &'static str, message: impl Into<String>) -> Violation {
    Violation {
        property,
        message: message.into(),
    }
}

/// Where an access token came from.
pub(crate) enum Source {
    Login,
    /// A second factor: a new session, or (a step-up) the family it continues.
    Verify {
        amr: Vec<String>,
        /// The factor's level.
        acr: &'static str,
        family: Option<usize>,
    },
    Refresh(usize),
}

pub(crate) fn same_set(a: &[String], b: &[String]) -> bool {
    let a: HashSet<&String> = a.iter().collect();
    let b: HashSet<&String> = b.iter().collect();
    a == b
}
