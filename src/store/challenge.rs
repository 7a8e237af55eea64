//! The types of the two store steps of a verify ([`Store::reserve_challenge`],
//! [`Store::settle_challenge`]), and where a refresh family is found ([`FamilyRef`]).
//!
//! [`Store::reserve_challenge`]: super::Store::reserve_challenge
//! [`Store::settle_challenge`]: super::Store::settle_challenge

use sha2::{Digest, Sha256};

use super::{AttemptPolicy, Attempts, Elevation, RefreshRecord, TokenHash};
use crate::factor::recovery::hex;
use crate::token::Claims;

/// The length of a user's tag ([`FamilyRef::user_tag`]): hex digits.
pub const USER_TAG_LEN: usize = 16;

/// Where a refresh family is found: its user's tag and its id, as a refresh token
/// carries them.
///
/// The tag is the first [`USER_TAG_LEN`] hex digits of the SHA-256 of the user: a
/// refresh token names its family's user without showing it, and a store can keep
/// everything of one user together (`RedisStore` keeps one user's keys in one Redis
/// Cluster slot, so that one script decides on all of them). A reference whose tag is
/// not its family's user's finds nothing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FamilyRef {
    user_tag: String,
    family: String,
}

impl FamilyRef {
    /// Family `family` of user `user`.
    pub fn new(user: &str, family: impl Into<String>) -> Self {
        Self {
            user_tag: user_tag(user),
            family: family.into(),
        }
    }

    /// As a refresh token carries it: `None` unless `user_tag` is [`USER_TAG_LEN`]
    /// lowercase hex digits and `family` is not empty.
    pub fn from_parts(user_tag: &str, family: &str) -> Option<Self> {
        let tag_ok = user_tag.len() == USER_TAG_LEN
            && user_tag
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        (tag_ok && !family.is_empty()).then(|| Self {
            user_tag: user_tag.to_owned(),
            family: family.to_owned(),
        })
    }

    /// The tag of the family's user.
    pub fn user_tag(&self) -> &str {
        &self.user_tag
    }

    /// The family id (the session id, `sid`).
    pub fn family(&self) -> &str {
        &self.family
    }

    /// Whether `user` is the family's user as far as the tag tells.
    pub(crate) fn tags(&self, user: &str) -> bool {
        user_tag(user) == self.user_tag
    }
}

/// The tag of `user`: the first [`USER_TAG_LEN`] hex digits of its SHA-256.
pub(crate) fn user_tag(user: &str) -> String {
    let digest = Sha256::digest(user.as_bytes());
    let mut tag = hex(&digest);
    tag.truncate(USER_TAG_LEN);
    tag
}

/// What [`Store::reserve_challenge`](super::Store::reserve_challenge) found, in the order
/// of the checks (DESIGN §4): a lockout, then a spent challenge, then the attempts in
/// flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChallengeReservation {
    /// One attempt is reserved: judge one proof, then
    /// [`settle_challenge`](super::Store::settle_challenge).
    Granted,
    /// Recorded failures reached the limit: locked out until then (Unix seconds).
    Locked {
        /// The end of the lockout.
        until: u64,
    },
    /// The challenge was spent already: nothing reserved (not a guess).
    Spent,
    /// Only reservations in flight fill the remaining attempts: try again in a second.
    Busy,
}

/// The proof of a reserved attempt, as the endpoint judged it, with what it spends.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JudgedProof {
    /// It matched no factor: a failure.
    Wrong,
    /// It matched TOTP time step `step`: accepted only if later than every step accepted
    /// for the user ([`advance_totp_step`](super::Store::advance_totp_step)), remembered
    /// until `forget_at`; else a replay, counted as a failure.
    TotpStep {
        /// The matched step.
        step: u64,
        /// Until when the step is remembered.
        forget_at: u64,
    },
    /// It matched a single-use proof (a recovery code, a passkey assertion, a sent
    /// code): accepted only the first time `key` (the proof's single-use key) is spent,
    /// remembered until `forget_at`; else a replay.
    Once {
        /// The proof's single-use key.
        key: String,
        /// Until when it is remembered.
        forget_at: u64,
    },
}

/// What a right proof does to the sessions, in the same step.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SessionChange {
    /// Nothing: the caller starts or continues the session afterwards.
    None,
    /// Starts a refresh family ([`refresh_create`](super::Store::refresh_create)).
    Start {
        /// The hash of the family's first refresh token.
        token: TokenHash,
        /// The family.
        record: RefreshRecord,
    },
    /// Steps up a session ([`refresh_elevate`](super::Store::refresh_elevate)).
    Elevate {
        /// The family id.
        family: String,
        /// The hash of the session's new refresh token.
        new_token: TokenHash,
        /// The session's new claims (of the family's user).
        session: Claims,
        /// When the challenge was issued.
        issued_at: u64,
    },
}

/// The end of a reserved verify attempt: what
/// [`Store::settle_challenge`](super::Store::settle_challenge) decides, in one step.
#[derive(Clone, Debug, PartialEq)]
pub struct ChallengeSettlement {
    /// The user whose attempt was reserved.
    pub user: String,
    /// The challenge's single-use key (`jti:<jti>`), one of the user's.
    pub challenge: String,
    /// Until when the challenge must stay spent (its expiry, leeway included).
    pub expires_at: u64,
    /// The judged proof.
    pub proof: JudgedProof,
    /// The attempt policy of the reservation.
    pub policy: AttemptPolicy,
    /// What a right proof does to the sessions.
    pub session: SessionChange,
}

/// What [`Store::settle_challenge`](super::Store::settle_challenge) decided.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ChallengeOutcome {
    /// The challenge had been spent meanwhile: nothing judged, the attempt given back
    /// (a `404`, not a guess).
    Spent,
    /// A wrong proof, or a right one used before (`replayed`): one more recorded failure,
    /// and the state it left. A failure that starts a lockout spends the challenge too;
    /// a replay leaves it usable.
    Failed {
        /// The user's attempts after this failure.
        attempts: Attempts,
        /// Whether the proof was right but used before.
        replayed: bool,
    },
    /// Right and fresh: the challenge and the proof are spent, the failures forgotten,
    /// and the session changed: `Some` with what
    /// [`refresh_elevate`](super::Store::refresh_elevate) found for
    /// [`SessionChange::Elevate`], else `None`.
    Succeeded(Option<Elevation>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_tag_is_sixteen_hex_digits_of_the_users_sha256() {
        // SHA-256("alice") = 2bd806c97f0e00af1a1fc3328fa763a9269723c8db8fac4f93af71db186d6e90
        assert_eq!(user_tag("alice"), "2bd806c97f0e00af");
        assert_eq!(user_tag("").len(), USER_TAG_LEN);
        assert_ne!(user_tag("alice"), user_tag("alice "));
        let r = FamilyRef::new("alice", "fam-1");
        assert_eq!((r.user_tag(), r.family()), ("2bd806c97f0e00af", "fam-1"));
        assert!(r.tags("alice") && !r.tags("bob"));
    }

    #[test]
    fn a_family_ref_from_a_token_has_a_strict_tag() {
        let r = FamilyRef::from_parts("2bd806c97f0e00af", "fam-1");
        assert_eq!(r, Some(FamilyRef::new("alice", "fam-1")));
        for (tag, family) in [
            ("2BD806C97F0E00AF", "fam-1"),
            ("2bd806c97f0e00a", "fam-1"),
            ("2bd806c97f0e00af0", "fam-1"),
            ("2bd806c97f0e00ag", "fam-1"),
            ("2bd806c97f0e00af", ""),
            ("", "fam-1"),
        ] {
            assert_eq!(
                FamilyRef::from_parts(tag, family),
                None,
                "{tag:?} {family:?}"
            );
        }
    }
}
