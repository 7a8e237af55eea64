//! A user's second factors as login, verify and the recent-authentication rule read them:
//! loaded once per request from the application's [`Factors`](super::Factors).

use super::error::Failure;
use super::Completion;
use crate::challenge::MfaRequirements;
use crate::factor::stored::kind;
use crate::factor::{recovery, RecoveryCodeHash, StoredFactor, TotpSecret};

/// The factors of one user.
pub(crate) struct Enrolled {
    records: Vec<StoredFactor>,
}

impl Enrolled {
    /// `user`'s factors from the directory (`503` when it fails).
    pub(crate) async fn load(completion: &Completion, user: &str) -> Result<Self, Failure> {
        let records = completion.inner().factors.factors(user).await?;
        Ok(Self { records })
    }

    /// Whether the user has no factor that signs in. A set of recovery codes alone
    /// counts: it was enrolled with one, and still proves the second factor.
    pub(crate) fn is_empty(&self) -> bool {
        !self
            .records
            .iter()
            .any(|f| kind::requirement(&f.kind).is_some())
    }

    /// The factors of `kind`.
    pub(crate) fn of_kind<'a>(&'a self, k: &'a str) -> impl Iterator<Item = &'a StoredFactor> {
        self.records.iter().filter(move |f| f.is(k))
    }

    /// The TOTP secret, if the user has one that reads back.
    pub(crate) fn totp(&self) -> Option<TotpSecret> {
        let record = self.of_kind(kind::TOTP).next()?;
        TotpSecret::from_bytes(record.data.as_bytes().to_vec()).ok()
    }

    /// The set of recovery codes and their hashes, if the user has one.
    pub(crate) fn recovery(&self) -> Option<(&StoredFactor, Vec<RecoveryCodeHash>)> {
        let record = self.of_kind(kind::RECOVERY_CODES).next()?;
        Some((record, recovery::from_data(&record.data)?))
    }

    /// What a challenge asks of this user: every type of factor they have but recovery
    /// codes (always accepted beside the others), the phishing-resistant first (only those when `phishing_resistant`); enroll a passkey
    /// when that leaves none.
    pub(crate) fn requirements(&self, phishing_resistant: bool) -> MfaRequirements {
        let usable =
            |f: &&StoredFactor| !phishing_resistant || kind::is_phishing_resistant(&f.kind);
        let have: Vec<&str> = self
            .records
            .iter()
            .filter(usable)
            // Recovery codes are the fallback of every challenge, not listed as one.
            .filter(|f| f.kind != kind::RECOVERY_CODES)
            .filter_map(|f| kind::requirement(&f.kind))
            .collect();
        let types: Vec<&str> = kind::REQUIREMENT_ORDER
            .into_iter()
            .filter(|t| have.contains(t))
            .collect();
        match (types.is_empty(), phishing_resistant) {
            (true, true) => MfaRequirements::enroll(["passkey"]),
            (true, false) => MfaRequirements::enroll(["otp"]),
            (false, _) => MfaRequirements::challenge(types),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::factor::FactorData;

    fn record(k: &str, data: Vec<u8>) -> StoredFactor {
        StoredFactor::new(k, FactorData::new(data), 0).unwrap()
    }

    #[test]
    fn requirements_list_each_type_once_phishing_resistant_first() {
        let (_, hashes) = recovery::generate().unwrap();
        let user = Enrolled {
            records: vec![
                record(kind::TOTP, vec![0; 20]),
                record(
                    kind::RECOVERY_CODES,
                    recovery::to_data(&hashes).as_bytes().to_vec(),
                ),
                record(kind::PASSKEY, vec![1]),
                record(kind::PASSKEY, vec![2]),
            ],
        };
        let types = |r: MfaRequirements| -> Vec<String> {
            r.challenge.into_iter().map(|t| t.kind).collect()
        };
        assert_eq!(types(user.requirements(false)), ["passkey", "otp"]);
        assert_eq!(types(user.requirements(true)), ["passkey"]);
        assert!(!user.is_empty());
    }

    #[test]
    fn without_a_passkey_a_phishing_resistant_challenge_asks_to_enroll_one() {
        let user = Enrolled {
            records: vec![
                record(kind::TOTP, vec![0; 20]),
                record(kind::RECOVERY_CODES, Vec::new()),
            ],
        };
        assert_eq!(
            user.requirements(true),
            MfaRequirements::enroll(["passkey"])
        );
        assert_eq!(
            user.requirements(false),
            MfaRequirements::challenge(["otp"]),
            "recovery codes are not listed"
        );
        let nobody = Enrolled { records: vec![] };
        assert!(nobody.is_empty());
        assert_eq!(nobody.requirements(false), MfaRequirements::enroll(["otp"]));
    }
}
