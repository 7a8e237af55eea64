//! A second factor as the application keeps it: one [`StoredFactor`] record per factor,
//! whatever its kind. The directory ([`Factors`](crate::complete::Factors)) stores the
//! records and never reads their [`data`](StoredFactor::data); the factor's own module
//! does (a TOTP secret, recovery-code hashes, a passkey credential, an address to send
//! codes to).
//!
//! | [`kind`](StoredFactor::kind) | a user has | `mfa_requirements` type | `amr` | phishing-resistant |
//! | --- | --- | --- | --- | --- |
//! | [`kind::TOTP`] | at most one | `otp` | `otp` | no |
//! | [`kind::RECOVERY_CODES`] | at most one set | `recovery-code` | `otp` | no |
//! | [`kind::PASSKEY`] | several | `passkey` | `hwk`, or `swk` when backup-eligible (synced) | yes (user verification required) |
//! | [`kind::EMAIL`] | several | `email` | `otp` | no |
//! | [`kind::SMS`] | several | `sms` | `sms` | no (a restricted authenticator, NIST SP 800-63B-4) |
//!
//! Every session that passed one also gets `mfa`.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::random::{self, RandomError};

/// The kinds of [`StoredFactor`].
pub mod kind {
    /// A TOTP secret (RFC 6238); a user has at most one.
    pub const TOTP: &str = "totp";
    /// A user's set of recovery codes (their hashes); at most one set.
    pub const RECOVERY_CODES: &str = "recovery-codes";
    /// A WebAuthn passkey credential.
    pub const PASSKEY: &str = "passkey";
    /// An email address to send one-time codes to.
    pub const EMAIL: &str = "email";
    /// A phone number to send one-time codes to by SMS.
    pub const SMS: &str = "sms";

    /// Whether a user has at most one factor of `kind`: a new one replaces the old.
    pub fn is_single(kind: &str) -> bool {
        kind == TOTP || kind == RECOVERY_CODES
    }

    /// The `mfa_requirements` type of `kind` (`otp`, `recovery-code`, `passkey`,
    /// `email`, `sms`), `None` for a kind this crate does not know. The order of
    /// [`REQUIREMENT_ORDER`].
    pub fn requirement(kind: &str) -> Option<&'static str> {
        REQUIREMENTS
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, r)| *r)
    }

    /// The requirement types in the order challenges list them: the phishing-resistant
    /// first, recovery codes last.
    pub const REQUIREMENT_ORDER: [&str; 5] = ["passkey", "otp", "email", "sms", "recovery-code"];

    const REQUIREMENTS: [(&str, &str); 5] = [
        (PASSKEY, "passkey"),
        (TOTP, "otp"),
        (EMAIL, "email"),
        (SMS, "sms"),
        (RECOVERY_CODES, "recovery-code"),
    ];

    /// Whether a factor of `kind` is phishing-resistant: only a passkey (its user
    /// verification is required, and the browser binds its assertion to the origin).
    pub fn is_phishing_resistant(kind: &str) -> bool {
        kind == PASSKEY
    }
}

/// The factor's own data: secret bytes, wiped on drop, never shown by `Debug`, compared
/// in constant time.
#[derive(Clone, Default)]
pub struct FactorData(Zeroizing<Vec<u8>>);

impl FactorData {
    /// Data from its bytes.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq for FactorData {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && bool::from(self.0.ct_eq(&other.0))
    }
}

impl Eq for FactorData {}

impl fmt::Debug for FactorData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FactorData({} bytes)", self.0.len())
    }
}

/// One second factor of a user.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredFactor {
    /// Unique among the user's factors: 32 lowercase hex digits ([`new_id`]). What
    /// `GET /auth/factors` shows and `DELETE /auth/factors/{id}` names.
    pub id: String,
    /// One of [`kind`]'s constants.
    pub kind: String,
    /// The user's name for it ("YubiKey 5", "work phone"), if any.
    pub name: Option<String>,
    /// When it was added, Unix seconds.
    pub created_at: u64,
    /// What the factor's module keeps (secret).
    pub data: FactorData,
}

impl StoredFactor {
    /// A factor of `kind` with a new random id.
    pub fn new(kind: &str, data: FactorData, created_at: u64) -> Result<Self, RandomError> {
        Ok(Self {
            id: new_id()?,
            kind: kind.to_owned(),
            name: None,
            created_at,
            data,
        })
    }

    /// With this name.
    pub fn named(mut self, name: Option<String>) -> Self {
        self.name = name;
        self
    }

    /// Whether this is a factor of `kind`.
    pub fn is(&self, kind: &str) -> bool {
        self.kind == kind
    }
}

/// A new factor id: 128 random bits as 32 lowercase hex digits.
pub fn new_id() -> Result<String, RandomError> {
    let mut bytes = [0u8; 16];
    random::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `id` has the shape of a factor id (32 lowercase hex digits), checked before
/// any lookup.
pub fn is_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_random_hex_and_checked() {
        let (a, b) = (new_id().unwrap(), new_id().unwrap());
        assert_ne!(a, b);
        assert!(is_id(&a) && is_id(&b));
        for bad in [
            "",
            "ABCDEF0123456789abcdef0123456789",
            &a[..31],
            "x".repeat(32).as_str(),
        ] {
            assert!(!is_id(bad), "{bad}");
        }
    }

    #[test]
    fn data_is_never_printed_and_compares_by_value() {
        let d = FactorData::new(b"secret".to_vec());
        assert_eq!(format!("{d:?}"), "FactorData(6 bytes)");
        assert_eq!(d, FactorData::new(b"secret".to_vec()));
        assert_ne!(d, FactorData::new(b"secreT".to_vec()));
        assert_ne!(d, FactorData::new(b"secret!".to_vec()));
    }
}
