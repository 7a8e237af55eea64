//! A [`RefreshRecord`] as `MemoryStore` keeps it: the session's claims as compact JSON,
//! small in memory (a family is kept for its whole life). `RedisStore` keeps the same
//! JSON of the claims in a field of the family's hash ([`session_json`]).

use super::{RefreshRecord, StoreError};
use crate::token::Claims;

/// A refresh record with its session serialized.
#[derive(Clone, Debug)]
pub(crate) struct StoredRecord {
    pub(crate) family: String,
    pub(crate) sub: String,
    /// The session's claims as JSON.
    pub(crate) session: String,
    pub(crate) expires_at: u64,
    /// The idle bound.
    pub(crate) idle_secs: Option<u64>,
}

impl StoredRecord {
    /// `record`, its claims serialized.
    pub(crate) fn new(record: RefreshRecord) -> Result<Self, StoreError> {
        Ok(Self {
            session: session_json(&record.session)?,
            family: record.family,
            sub: record.sub,
            expires_at: record.expires_at,
            idle_secs: record.idle_secs,
        })
    }

    /// The record, its claims read back.
    pub(crate) fn record(&self) -> Result<RefreshRecord, StoreError> {
        let session = serde_json::from_str(&self.session)
            .map_err(|_| StoreError::Corrupt("refresh session decoding".to_owned()))?;
        Ok(self.with_session(session))
    }

    /// The record with `session` as its claims (already known: nothing to read back).
    pub(crate) fn with_session(&self, session: Claims) -> RefreshRecord {
        RefreshRecord {
            family: self.family.clone(),
            sub: self.sub.clone(),
            session,
            expires_at: self.expires_at,
            idle_secs: self.idle_secs,
        }
    }

    /// Whether the family is idle at `now`: not started, refreshed or stepped up since
    /// `last_seen_at` for its whole idle bound.
    pub(crate) fn idle(&self, last_seen_at: u64, now: u64) -> bool {
        self.idle_secs
            .is_some_and(|idle| last_seen_at.saturating_add(idle) <= now)
    }
}

/// The claims as the stores keep them: JSON, shrunk to fit (kept for the family's whole
/// life, so no spare capacity from the serializer's growth).
pub(crate) fn session_json(claims: &Claims) -> Result<String, StoreError> {
    let mut json = serde_json::to_string(claims)
        .map_err(|_| StoreError::Unavailable("refresh session encoding".to_owned()))?;
    json.shrink_to_fit();
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        let json = r#"{"sub":"alice","exp":2000,"sid":"fam-1","amr":["pwd","otp"]}"#;
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}"))
    }

    fn record() -> RefreshRecord {
        RefreshRecord {
            family: "fam-1".to_owned(),
            sub: "alice".to_owned(),
            session: claims(),
            expires_at: 3000,
            idle_secs: None,
        }
    }

    #[test]
    fn round_trips() {
        let stored = StoredRecord::new(record()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stored.session.len(), stored.session.capacity());
        assert_eq!(stored.record(), Ok(record()));
    }

    #[test]
    fn an_idle_bound_is_read_back() {
        let idle = RefreshRecord {
            idle_secs: Some(600),
            ..record()
        };
        let stored = StoredRecord::new(idle.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(stored.record(), Ok(idle));
        assert!(!stored.idle(1000, 1599));
        assert!(stored.idle(1000, 1600));
        assert!(!StoredRecord::new(record()).unwrap().idle(0, u64::MAX));
    }

    #[test]
    fn unreadable_claims_are_corrupt_not_unavailable() {
        let stored = StoredRecord {
            family: "fam-1".to_owned(),
            sub: "alice".to_owned(),
            session: r#"{"no_sub":1}"#.to_owned(),
            expires_at: 3000,
            idle_secs: None,
        };
        assert!(matches!(stored.record(), Err(StoreError::Corrupt(_))));
    }
}
