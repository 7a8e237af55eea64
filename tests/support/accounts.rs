//! The tests' user directory: fixed users with plain-text passwords (the timing of
//! password hashing is the demo suite's business: `tests/demo.rs`, argon2 with a dummy
//! hash).
//!
//! ```ignore
//! let accounts = PlainAccounts::new(&[("alice", "alice-pw"), ("bob", "bob-pw")]).with_scope("me");
//! ```
#![allow(dead_code)]

use tower_stepup::complete::{Account, Accounts, BackendFuture};

/// Users and their plain passwords; a match signs in an account of that name, with the
/// scope if one is set.
pub struct PlainAccounts {
    users: Vec<(String, String)>,
    scope: Option<String>,
}

impl PlainAccounts {
    /// These `(username, password)` pairs, no scope.
    pub fn new<'a>(users: impl IntoIterator<Item = &'a (&'a str, &'a str)>) -> Self {
        PlainAccounts {
            users: users
                .into_iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            scope: None,
        }
    }

    /// Every account signed in gets `scope`.
    pub fn with_scope(mut self, scope: &str) -> Self {
        self.scope = Some(scope.to_owned());
        self
    }
}

impl Accounts for PlainAccounts {
    fn authenticate<'a>(
        &'a self,
        username: &'a str,
        password: &'a str,
    ) -> BackendFuture<'a, Option<Account>> {
        let account = self
            .users
            .iter()
            .find(|(u, p)| u == username && p == password)
            .map(|(u, _)| match &self.scope {
                Some(scope) => Account::new(u.as_str()).with_scope(scope.as_str()),
                None => Account::new(u.as_str()),
            });
        Box::pin(async move { Ok(account) })
    }
}
