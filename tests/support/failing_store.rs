//! A [`Store`] that is never there: every operation fails with `Unavailable`, for the
//! fail-closed tests.
#![allow(dead_code)]

use tower_stepup::store::{
    AttemptPolicy, Attempts, Elevation, LoginLimits, RefreshRecord, Reservation, Rotation,
    Settlement, Store, StoreError, StoreFuture, TokenHash,
};

/// A store that is never there.
pub struct FailingStore;

fn down<'a, T: Send + 'a>() -> StoreFuture<'a, T> {
    Box::pin(async { Err(StoreError::Unavailable("down".into())) })
}

impl Store for FailingStore {
    fn consume<'a>(&'a self, _: &'a str, _: u64, _: u64) -> StoreFuture<'a, bool> {
        down()
    }
    fn is_consumed<'a>(&'a self, _: &'a str, _: u64) -> StoreFuture<'a, bool> {
        down()
    }
    fn release<'a>(&'a self, _: &'a str) -> StoreFuture<'a, ()> {
        down()
    }
    fn attempts<'a>(&'a self, _: &'a str, _: u64) -> StoreFuture<'a, Attempts> {
        down()
    }
    fn reserve_attempt<'a>(
        &'a self,
        _: &'a str,
        _: AttemptPolicy,
        _: u64,
    ) -> StoreFuture<'a, Reservation> {
        down()
    }
    fn settle_attempt<'a>(
        &'a self,
        _: &'a str,
        _: Settlement,
        _: AttemptPolicy,
        _: u64,
    ) -> StoreFuture<'a, Attempts> {
        down()
    }
    fn reserve_login<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: LoginLimits,
        _: u64,
    ) -> StoreFuture<'a, Reservation> {
        down()
    }
    fn settle_login<'a>(
        &'a self,
        _: &'a str,
        _: &'a str,
        _: Settlement,
        _: LoginLimits,
        _: u64,
    ) -> StoreFuture<'a, ()> {
        down()
    }
    fn advance_totp_step<'a>(
        &'a self,
        _: &'a str,
        _: u64,
        _: u64,
        _: u64,
    ) -> StoreFuture<'a, bool> {
        down()
    }
    fn put<'a>(&'a self, _: &'a str, _: Vec<u8>, _: u64, _: u64) -> StoreFuture<'a, ()> {
        down()
    }
    fn get<'a>(&'a self, _: &'a str, _: u64) -> StoreFuture<'a, Option<Vec<u8>>> {
        down()
    }
    fn delete<'a>(&'a self, _: &'a str) -> StoreFuture<'a, ()> {
        down()
    }
    fn refresh_create<'a>(&'a self, _: TokenHash, _: RefreshRecord, _: u64) -> StoreFuture<'a, ()> {
        down()
    }
    fn refresh_rotate<'a>(
        &'a self,
        _: TokenHash,
        _: TokenHash,
        _: u64,
    ) -> StoreFuture<'a, Rotation> {
        down()
    }
    fn refresh_revoke<'a>(&'a self, _: TokenHash, _: &'a str, _: u64) -> StoreFuture<'a, bool> {
        down()
    }
    fn revoke_family<'a>(
        &'a self,
        _: &'a str,
        _: u64,
    ) -> StoreFuture<'a, tower_stepup::store::FamilyRevocation> {
        down()
    }
    fn refresh_elevate<'a>(
        &'a self,
        _: &'a str,
        _: TokenHash,
        _: String,
        _: u64,
        _: u64,
    ) -> StoreFuture<'a, Elevation> {
        down()
    }
}
