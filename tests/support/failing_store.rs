//! A [`Store`] that is never there: every operation fails with `Unavailable`, for the
//! fail-closed tests. A [`HookedStore`] whose hook answers every call itself.
#![allow(dead_code)]

use std::sync::Arc;

use tower_stepup::store::{MemoryStore, Store, StoreError};

// The includer declares `#[path = "support/hooked_store.rs"] mod hooked_store;` beside
// this module.
use super::hooked_store::{Call, CallResult, HookFuture, HookedStore, StoreHook};

/// The hook of [`FailingStore`]: the store is down.
pub struct Down;

impl StoreHook for Down {
    fn before<'a>(
        &'a self,
        _: &'a dyn Store,
        _: &'a Call<'a>,
    ) -> HookFuture<'a, Option<CallResult>> {
        Box::pin(async { Some(Err(StoreError::Unavailable("down".into()))) })
    }
}

/// A store that is never there.
pub type FailingStore = HookedStore<Down>;

impl FailingStore {
    /// A store that is never there (its inner store is never reached).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        HookedStore::with_hook(Arc::new(MemoryStore::new()), Down)
    }
}
