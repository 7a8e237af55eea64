//! The proof a verify presents, judged against the user's factors: the one place where
//! each kind of factor says whether a proof matched, what it earns (`amr`, the session's
//! level) and what it spends. Verify ([`super::verify`]) does the rest the same way for
//! every factor: the attempt reserved first, the proof spent once, the lockout, the
//! audit.

use super::enrolled::Enrolled;
use super::error::Failure;
use super::{send, Completion};
use crate::factor::{recovery, totp, FactorData, RecoveryCodeHash, StoredFactor};
use crate::store::JudgedProof;

/// What a verify presents.
pub(crate) enum Proof {
    /// A one-time code: TOTP, else a code sent by email or SMS.
    Code(String),
    /// A recovery code.
    Recovery(String),
    /// A passkey assertion (`PublicKeyCredential.toJSON()`).
    #[cfg_attr(not(feature = "passkey"), allow(dead_code))]
    Passkey(serde_json::Value),
}

/// How strongly a factor authenticated: the session's `acr` follows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    /// A second factor (the completion's `mfa_acr`).
    Mfa,
    /// A phishing-resistant factor: a synced passkey with user verification
    /// ([`PHISHING_RESISTANT_ACR`](crate::policy::PHISHING_RESISTANT_ACR)).
    #[cfg_attr(not(feature = "passkey"), allow(dead_code))]
    PhishingResistant,
    /// A phishing-resistant factor whose key never leaves its device: a device-bound
    /// passkey with user verification
    /// ([`PHISHING_RESISTANT_HARDWARE_ACR`](crate::policy::PHISHING_RESISTANT_HARDWARE_ACR)).
    #[cfg_attr(not(feature = "passkey"), allow(dead_code))]
    PhishingResistantHardware,
}

/// A proof that matched one of the user's factors, not yet spent.
pub(crate) struct Accepted {
    /// The audit reason: `otp`, `recovery_code`, `email`, `sms`.
    pub(crate) method: &'static str,
    /// What it adds to `amr`, besides `mfa`.
    pub(crate) amr: &'static str,
    /// The level it earns.
    pub(crate) level: Level,
    /// What the store spends with it.
    pub(crate) once: JudgedProof,
    /// What changes in the user's factors once it is spent.
    pub(crate) after: After,
}

/// A change to a factor once its proof is spent.
pub(crate) enum After {
    /// None: the session's tokens are made before the store step.
    Nothing,
    /// A recovery code leaves the user's set.
    RemoveRecoveryCode(RecoveryCodeHash),
    /// A factor's data changes (a passkey's signature counter), if it is still
    /// `previous`.
    #[cfg_attr(not(feature = "passkey"), allow(dead_code))]
    Update {
        /// The factor as it is to be saved.
        factor: StoredFactor,
        /// Its data as the proof was judged against.
        previous: FactorData,
    },
}

/// The challenge a proof answers, as far as judging it needs.
pub(crate) struct Judging<'a> {
    /// The user.
    pub(crate) sub: &'a str,
    /// The challenge token's id: state bound to the challenge (a passkey challenge, a
    /// sent code) is kept under it.
    #[cfg_attr(not(feature = "passkey"), allow(dead_code))]
    pub(crate) jti: &'a str,
    pub(crate) now: u64,
}

/// The factor `proof` matches, if any: `None` is a wrong proof (a failed attempt).
pub(crate) async fn judge(
    completion: &Completion,
    enrolled: &Enrolled,
    proof: &Proof,
    at: &Judging<'_>,
) -> Result<Option<Accepted>, Failure> {
    Ok(match proof {
        Proof::Code(code) => match totp_code(enrolled, code, at.now) {
            Some(totp) => Some(totp),
            None => send::judge(completion, enrolled, code, at.jti, at.now)
                .await?
                .map(sent_code),
        },
        Proof::Recovery(code) => recovery_code(enrolled, code, at),
        #[cfg(feature = "passkey")]
        Proof::Passkey(response) => {
            let at = (at.sub, at.jti, at.now);
            super::passkey::judge(completion, enrolled, response, at)
                .await?
                .map(passkey)
        }
        #[cfg(not(feature = "passkey"))]
        Proof::Passkey(_) => {
            let _ = completion;
            return Err(Failure::invalid_request("passkeys are not enabled here"));
        }
    })
}

/// A code sent by email or SMS for this challenge: `amr` `otp` or `sms`.
fn sent_code(matched: send::SentMatch) -> Accepted {
    Accepted {
        method: matched.channel.requirement_type(),
        amr: matched.channel.amr(),
        level: Level::Mfa,
        once: matched.once,
        after: After::Nothing,
    }
}

/// A passkey assertion: phishing-resistant, at the hardware level for a device-bound
/// credential.
#[cfg(feature = "passkey")]
fn passkey(matched: super::passkey::PasskeyMatch) -> Accepted {
    Accepted {
        method: "passkey",
        amr: matched.amr,
        level: if matched.synced {
            Level::PhishingResistant
        } else {
            Level::PhishingResistantHardware
        },
        once: matched.once,
        after: match matched.update {
            Some((factor, previous)) => After::Update { factor, previous },
            None => After::Nothing,
        },
    }
}

fn totp_code(enrolled: &Enrolled, code: &str, now: u64) -> Option<Accepted> {
    let step = totp::verify(&enrolled.totp()?, code, now)?;
    Some(Accepted {
        method: "otp",
        amr: "otp",
        level: Level::Mfa,
        once: JudgedProof::TotpStep {
            step,
            forget_at: step.saturating_add(2).saturating_mul(totp::STEP_SECS),
        },
        after: After::Nothing,
    })
}

/// A recovery code is accepted once ever: its key names the user and the code's hash.
fn recovery_code(enrolled: &Enrolled, code: &str, at: &Judging<'_>) -> Option<Accepted> {
    let (_, hashes) = enrolled.recovery()?;
    let hash = recovery::find(&hashes, code)?;
    Some(Accepted {
        method: "recovery_code",
        amr: "otp",
        level: Level::Mfa,
        once: JudgedProof::Once {
            key: format!("rc:{}:{}", at.sub, hash.to_hex()),
            forget_at: at.now.saturating_add(super::RECOVERY_CODE_MEMORY.as_secs()),
        },
        after: After::RemoveRecoveryCode(hash),
    })
}

/// Makes `after` in the user's factors, once the store has spent the proof. A recovery
/// code leaves whatever set is current, by compare-and-set: a set replaced or changed
/// meanwhile is read again. Each round of compare-and-set lets one of the user's
/// concurrent removals through, and at most `max_attempts` verifies of a user are in
/// flight at once (the attempt reservation), so `max_attempts + 1` tries reach every
/// one of them.
pub(crate) async fn apply(completion: &Completion, sub: &str, after: After) -> Result<(), Failure> {
    match after {
        After::Nothing => Ok(()),
        After::RemoveRecoveryCode(hash) => remove_recovery_code(completion, sub, hash).await,
        After::Update { factor, previous } => {
            let factors = &completion.inner().factors;
            // A passkey used twice at once: the proof is spent either way (the store's
            // single use); the later counter is the one kept.
            if !factors.update_factor(sub, &factor, &previous).await? {
                tracing::debug!("a factor changed before its update was saved");
            }
            Ok(())
        }
    }
}

async fn remove_recovery_code(
    completion: &Completion,
    sub: &str,
    hash: RecoveryCodeHash,
) -> Result<(), Failure> {
    let tries = (completion.inner().attempts.max_attempts as usize).saturating_add(1);
    for _ in 0..tries {
        let enrolled = Enrolled::load(completion, sub).await?;
        let Some((set, hashes)) = enrolled.recovery() else {
            return Ok(());
        };
        if !hashes.contains(&hash) {
            return Ok(());
        }
        let rest: Vec<RecoveryCodeHash> = hashes.into_iter().filter(|h| *h != hash).collect();
        let updated = StoredFactor {
            data: recovery::to_data(&rest),
            ..set.clone()
        };
        let previous: &FactorData = &set.data;
        if completion
            .inner()
            .factors
            .update_factor(sub, &updated, previous)
            .await?
        {
            return Ok(());
        }
    }
    tracing::warn!("a used recovery code stays in a set that kept changing; the store refuses it");
    Ok(())
}
