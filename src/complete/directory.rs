//! Where the application keeps its users' second factors ([`Factors`]), and
//! [`MemoryFactors`] for tests and demos.

use std::collections::HashMap;
use std::fmt;
use std::sync::RwLock;

use super::{BackendError, BackendFuture};
use crate::factor::stored::{kind, FactorData, StoredFactor};
use crate::factor::{RecoveryCodeHash, TotpSecret};

/// Where the application keeps second factors: one [`StoredFactor`] record per factor
/// (see [`factor::stored`](crate::factor::stored) for the kinds). The directory stores
/// records; it never reads their data.
///
/// # Atomicity
/// [`update_factor`](Factors::update_factor) is a compare-and-set on the data: recovery
/// codes are spent and passkey counters advanced with it, so two sign-ins at once never
/// write each other's state back. Do it in one statement (`UPDATE … WHERE id = ? AND
/// data = ?`) or under the lock that guards the record.
pub trait Factors: Send + Sync + 'static {
    /// Every factor of `user`, oldest first.
    fn factors<'a>(&'a self, user: &'a str) -> BackendFuture<'a, Vec<StoredFactor>>;

    /// Adds `factor`. A user has at most one factor of the kinds
    /// [`kind::is_single`] names (TOTP, recovery codes): a new one replaces the old.
    fn add_factor<'a>(&'a self, user: &'a str, factor: StoredFactor) -> BackendFuture<'a, ()>;

    /// Sets the name and data of `user`'s factor `factor.id` to `factor`'s, if its data
    /// is still `previous`. Whether it did: `false` if the factor is gone or its data
    /// changed meanwhile.
    fn update_factor<'a>(
        &'a self,
        user: &'a str,
        factor: &'a StoredFactor,
        previous: &'a FactorData,
    ) -> BackendFuture<'a, bool>;

    /// Removes `user`'s factor `id`; whether there was one.
    fn remove_factor<'a>(&'a self, user: &'a str, id: &'a str) -> BackendFuture<'a, bool>;
}

/// An enrolled TOTP factor with its recovery codes (hashed): two records, for
/// [`MemoryFactors::insert`] and tests.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TotpFactor {
    /// The shared secret.
    pub secret: TotpSecret,
    /// SHA-256 hashes of the recovery codes.
    pub recovery_codes: Vec<RecoveryCodeHash>,
}

impl TotpFactor {
    /// A factor from its parts.
    pub fn new(secret: TotpSecret, recovery_codes: Vec<RecoveryCodeHash>) -> Self {
        Self {
            secret,
            recovery_codes,
        }
    }

    /// The two records: the TOTP secret and the recovery codes, added at `now`.
    pub fn records(&self, now: u64) -> Result<[StoredFactor; 2], crate::factor::RandomError> {
        let secret = FactorData::new(self.secret.as_bytes().to_vec());
        let codes = crate::factor::recovery::to_data(&self.recovery_codes);
        Ok([
            StoredFactor::new(kind::TOTP, secret, now)?,
            StoredFactor::new(kind::RECOVERY_CODES, codes, now)?,
        ])
    }
}

/// [`Factors`] in memory, for tests and demos.
#[derive(Default)]
pub struct MemoryFactors {
    factors: RwLock<HashMap<String, Vec<StoredFactor>>>,
}

/// Adds `factor` to `user`'s list; one of a single kind replaces the old.
fn add_to(map: &mut HashMap<String, Vec<StoredFactor>>, user: &str, factor: StoredFactor) {
    let list = map.entry(user.to_owned()).or_default();
    if kind::is_single(&factor.kind) {
        list.retain(|f| f.kind != factor.kind);
    }
    list.push(factor);
}

fn poisoned() -> BackendError {
    BackendError("factor map poisoned".to_owned())
}

impl MemoryFactors {
    /// No factors.
    pub fn new() -> Self {
        Self::default()
    }

    /// Enrolls `factor` (TOTP and recovery codes) for `user` directly.
    pub fn insert(&self, user: impl Into<String>, factor: TotpFactor) {
        let user = user.into();
        for record in factor.records(0).into_iter().flatten() {
            self.add(&user, record);
        }
    }

    /// Adds `factor` for `user` directly, as [`Factors::add_factor`].
    pub fn add(&self, user: &str, factor: StoredFactor) {
        if let Ok(mut map) = self.factors.write() {
            add_to(&mut map, user, factor);
        }
    }

    /// Whether `user` has a factor (synchronous, e.g. for
    /// [`GuardBuilder::mfa_requirements`](crate::layer::GuardBuilder::mfa_requirements)).
    pub fn contains(&self, user: &str) -> bool {
        !self.kinds(user).is_empty()
    }

    /// `user`'s TOTP factor and recovery codes, if they have a TOTP secret (synchronous,
    /// for tests).
    pub fn totp(&self, user: &str) -> Option<TotpFactor> {
        let map = self.factors.read().ok()?;
        let list = map.get(user)?;
        let of = |k: &str| list.iter().find(|f| f.is(k));
        let secret = TotpSecret::from_bytes(of(kind::TOTP)?.data.as_bytes().to_vec()).ok()?;
        let codes = of(kind::RECOVERY_CODES)
            .and_then(|f| crate::factor::recovery::from_data(&f.data))
            .unwrap_or_default();
        Some(TotpFactor::new(secret, codes))
    }

    /// The kinds of `user`'s factors, each once, in the order first added (synchronous).
    pub fn kinds(&self, user: &str) -> Vec<String> {
        let mut kinds: Vec<String> = Vec::new();
        if let Ok(map) = self.factors.read() {
            for f in map.get(user).into_iter().flatten() {
                if !kinds.contains(&f.kind) {
                    kinds.push(f.kind.clone());
                }
            }
        }
        kinds
    }
}

impl fmt::Debug for MemoryFactors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let users = self.factors.read().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("MemoryFactors")
            .field("users", &users)
            .finish()
    }
}

impl Factors for MemoryFactors {
    fn factors<'a>(&'a self, user: &'a str) -> BackendFuture<'a, Vec<StoredFactor>> {
        let result = self
            .factors
            .read()
            .map(|m| m.get(user).cloned().unwrap_or_default())
            .map_err(|_| poisoned());
        Box::pin(std::future::ready(result))
    }

    fn add_factor<'a>(&'a self, user: &'a str, factor: StoredFactor) -> BackendFuture<'a, ()> {
        let result = self
            .factors
            .write()
            .map(|mut map| add_to(&mut map, user, factor))
            .map_err(|_| poisoned());
        Box::pin(std::future::ready(result))
    }

    fn update_factor<'a>(
        &'a self,
        user: &'a str,
        factor: &'a StoredFactor,
        previous: &'a FactorData,
    ) -> BackendFuture<'a, bool> {
        // Under the write lock: compare, then set.
        let result = self
            .factors
            .write()
            .map(|mut m| {
                let found = m
                    .get_mut(user)
                    .and_then(|list| list.iter_mut().find(|f| f.id == factor.id))
                    .filter(|f| f.data == *previous);
                found.map(|f| *f = factor.clone()).is_some()
            })
            .map_err(|_| poisoned());
        Box::pin(std::future::ready(result))
    }

    fn remove_factor<'a>(&'a self, user: &'a str, id: &'a str) -> BackendFuture<'a, bool> {
        let result = self
            .factors
            .write()
            .map(|mut m| {
                let Some(list) = m.get_mut(user) else {
                    return false;
                };
                let before = list.len();
                list.retain(|f| f.id != id);
                list.len() != before
            })
            .map_err(|_| poisoned());
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block<T>(f: BackendFuture<'_, T>) -> T {
        use std::task::{Context, Poll, Waker};
        let mut f = f;
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(r) => r.unwrap(),
            Poll::Pending => panic!("memory factors never wait"),
        }
    }

    #[test]
    fn single_kinds_replace_and_updates_compare_and_set() {
        let dir = MemoryFactors::new();
        let a = StoredFactor::new(kind::TOTP, FactorData::new(vec![1]), 1).unwrap();
        let b = StoredFactor::new(kind::TOTP, FactorData::new(vec![2]), 2).unwrap();
        let p = StoredFactor::new(kind::PASSKEY, FactorData::new(vec![3]), 3).unwrap();
        for f in [a.clone(), p.clone(), b.clone()] {
            block(dir.add_factor("u", f));
        }
        let listed = block(dir.factors("u"));
        assert_eq!(
            listed,
            vec![p.clone(), b.clone()],
            "the second TOTP replaced the first"
        );
        let mut renamed = p.clone().named(Some("key".into()));
        renamed.data = FactorData::new(vec![4]);
        assert!(block(dir.update_factor("u", &renamed, &p.data)));
        assert!(
            !block(dir.update_factor("u", &renamed, &p.data)),
            "stale previous"
        );
        assert!(
            !block(dir.update_factor("v", &renamed, &renamed.data)),
            "other user"
        );
        assert!(block(dir.remove_factor("u", &p.id)));
        assert!(!block(dir.remove_factor("u", &p.id)));
        assert_eq!(dir.kinds("u"), vec![kind::TOTP.to_owned()]);
    }
}
