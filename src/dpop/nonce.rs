//! Server nonces (RFC 9449 §8): a value the server chooses that proofs must carry, so a
//! proof made in advance (by malware that held the key for a moment) is refused once the
//! nonce has changed.
//!
//! Stateless: the nonce of a period is the period's number and a keyed SHA-256 of it, so
//! every replica with the same secret makes and accepts the same nonces, with no store.
//! A proof may carry the current period's nonce or the previous one's: a client that
//! fetched its nonce just before the period changed is not refused at once.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::ConfigError;

/// The domain of the keyed hash: nothing else is hashed with the secret this way.
const DOMAIN: &[u8] = b"tower-stepup dpop-nonce v1";

/// The length of a nonce's tag, in bytes.
const TAG_LEN: usize = 16;

/// The server nonces a guard asks proofs to carry ([`GuardBuilder::dpop_nonces`]).
///
/// A nonce is `base64url(period ‖ tag)`, 32 characters, where `period` is
/// `now / period_length` (8 bytes, big-endian) and `tag` the first 16 bytes of
/// SHA-256(domain ‖ secret ‖ period) — a fixed-length input, so a prefix-keyed hash is a
/// MAC here. A nonce is accepted during its period and the next one.
///
/// ```
/// use std::time::Duration;
/// use tower_stepup::dpop::DpopNonces;
///
/// let nonces = DpopNonces::new([7u8; 32], Duration::from_secs(300))?;
/// let n = nonces.current(1_800_000_000);
/// assert!(nonces.accepts(&n, 1_800_000_000 + 299));
/// assert!(!nonces.accepts(&n, 1_800_000_000 + 600));
/// assert!(!nonces.accepts("made-up", 1_800_000_000));
/// # Ok::<(), tower_stepup::ConfigError>(())
/// ```
///
/// [`GuardBuilder::dpop_nonces`]: crate::layer::GuardBuilder::dpop_nonces
#[derive(Clone)]
pub struct DpopNonces {
    secret: Zeroizing<[u8; 32]>,
    period: u64,
}

impl fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopNonces")
            .field("period", &self.period)
            .finish_non_exhaustive()
    }
}

impl DpopNonces {
    /// Nonces made with `secret` (share it between replicas, keep it out of logs), each
    /// lasting `period` (10 s to 1 day, whole seconds).
    pub fn new(secret: [u8; 32], period: Duration) -> Result<Self, ConfigError> {
        let period = period.as_secs();
        if !(10..=86_400).contains(&period) {
            return Err(ConfigError::invalid(
                "dpop nonce period",
                "must be between 10 s and 1 day",
            ));
        }
        Ok(Self {
            secret: Zeroizing::new(secret),
            period,
        })
    }

    /// Nonces with a random secret of this process (one replica only: another replica
    /// would refuse them).
    pub fn generate(period: Duration) -> Result<Self, ConfigError> {
        let mut secret = Zeroizing::new([0u8; 32]);
        crate::random::fill(&mut *secret)
            .map_err(|e| ConfigError::invalid("dpop nonce secret", e.to_string()))?;
        Self::new(*secret, period)
    }

    /// The nonce of the period `now` is in.
    pub fn current(&self, now: u64) -> String {
        self.nonce_of(now / self.period)
    }

    /// Whether `nonce` is the nonce of `now`'s period or of the previous one.
    pub fn accepts(&self, nonce: &str, now: u64) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(nonce) else {
            return false;
        };
        let Some((period, tag)) = bytes.split_first_chunk::<8>() else {
            return false;
        };
        let period = u64::from_be_bytes(*period);
        let current = now / self.period;
        (period == current || period.checked_add(1) == Some(current))
            && bool::from(tag.ct_eq(&self.tag(period)))
    }

    fn nonce_of(&self, period: u64) -> String {
        let mut bytes = [0u8; 8 + TAG_LEN];
        bytes[..8].copy_from_slice(&period.to_be_bytes());
        bytes[8..].copy_from_slice(&self.tag(period));
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn tag(&self, period: u64) -> [u8; TAG_LEN] {
        let digest = Sha256::new()
            .chain_update(DOMAIN)
            .chain_update(*self.secret)
            .chain_update(period.to_be_bytes())
            .finalize();
        let mut tag = [0u8; TAG_LEN];
        for (t, d) in tag.iter_mut().zip(digest.iter()) {
            *t = *d;
        }
        tag
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_800_000_000;

    fn nonces(secret: u8) -> DpopNonces {
        DpopNonces::new([secret; 32], Duration::from_secs(60)).unwrap()
    }

    #[test]
    fn a_nonce_lasts_its_period_and_the_next() {
        let n = nonces(1);
        let start = T - T % 60;
        let nonce = n.current(start);
        assert_eq!(nonce.len(), 32);
        assert_eq!(n.current(start + 59), nonce);
        assert_ne!(n.current(start + 60), nonce);
        assert!(n.accepts(&nonce, start));
        assert!(n.accepts(&nonce, start + 119));
        assert!(!n.accepts(&nonce, start + 120));
        // Not before its period either.
        assert!(!n.accepts(&nonce, start - 1));
    }

    #[test]
    fn a_nonce_of_another_secret_or_edited_is_refused() {
        let (a, b) = (nonces(1), nonces(2));
        assert!(!b.accepts(&a.current(T), T));
        let mut edited = a.current(T).into_bytes();
        edited[20] = if edited[20] == b'A' { b'B' } else { b'A' };
        assert!(!a.accepts(std::str::from_utf8(&edited).unwrap(), T));
        // A nonce claiming a later period is not made from an earlier one.
        let later = a.current(T + 60);
        let mut forged = URL_SAFE_NO_PAD.decode(a.current(T)).unwrap();
        forged[..8].copy_from_slice(&(T / 60 + 1).to_be_bytes());
        assert!(!a.accepts(&URL_SAFE_NO_PAD.encode(forged), T + 60));
        assert!(a.accepts(&later, T + 60));
        for junk in ["", "!!", "AAAA", &"A".repeat(200)] {
            assert!(!a.accepts(junk, T), "{junk}");
        }
    }

    #[test]
    fn replicas_with_one_secret_agree_and_debug_hides_it() {
        assert_eq!(nonces(3).current(T), nonces(3).current(T));
        let debug = format!("{:?}", nonces(3));
        assert!(
            !debug.contains("secret") && !debug.contains("[3"),
            "{debug}"
        );
        assert!(DpopNonces::new([0; 32], Duration::from_secs(9)).is_err());
        assert!(DpopNonces::new([0; 32], Duration::from_secs(86_401)).is_err());
        assert!(DpopNonces::generate(Duration::from_secs(60)).is_ok());
    }
}
