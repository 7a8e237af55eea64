//! Recovery codes: [`RECOVERY_CODE_COUNT`] single-use codes for the user who lost the
//! authenticator.
//!
//! A code is 80 bits from the operating system's CSPRNG, written as 16 RFC 4648 base32
//! characters in four groups: `XXXX-XXXX-XXXX-XXXX` (the alphabet `A-Z2-7` has no `0`,
//! `1`, `8` or `9` to mistake for a letter). The user sees the codes once; the server
//! stores only their SHA-256 hashes ([`RecoveryCodeHash`]).
//!
//! ```
//! use tower_stepup::factor::recovery;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (codes, hashes) = recovery::generate()?;
//! // Show `codes` to the user once; store `hashes`.
//! let typed = codes[3].to_lowercase().replace('-', " ");
//! assert_eq!(recovery::find(&hashes, &typed), Some(hashes[3]));
//! assert_eq!(recovery::find(&hashes, "AAAA-AAAA-AAAA-AAAA"), None);
//! # Ok(())
//! # }
//! ```
//!
//! # Security
//! - The hashes are plain, unsalted SHA-256. That is safe only because each code carries
//!   80 random bits: someone who steals the stored hashes would need about 2^79 guesses
//!   per code on average, out of reach offline. Shorter or user-chosen codes would need
//!   a slow, salted hash (Argon2) instead.
//! - Each code works once: the verify service removes the hash [`find`] returned from
//!   the store, atomically with accepting it.
//! - [`find`] compares the candidate against every stored hash in constant time.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

use super::base32;
use super::stored::FactorData;
use crate::random::{self, RandomError};

/// How many codes [`generate`] makes.
pub const RECOVERY_CODE_COUNT: usize = 10;

/// Random bytes in a code: 80 bits, exactly 16 base32 characters.
const CODE_BYTES: usize = 10;

/// Base32 characters in a code, dashes not counted.
const CODE_CHARS: usize = 16;

/// Characters per dash-separated group.
const GROUP_LEN: usize = 4;

/// Longest input [`find`] looks at, in bytes.
const MAX_INPUT_LEN: usize = 64;

/// The SHA-256 hash of a normalised recovery code: what the server stores.
///
/// `Debug` shows only the first four bytes, enough to correlate in logs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RecoveryCodeHash([u8; 32]);

impl RecoveryCodeHash {
    /// The 32 hash bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The hash as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }

    /// A hash from 64 hex digits (either case); `None` for anything else.
    pub fn from_hex(s: &str) -> Option<Self> {
        let s = s.as_bytes();
        if s.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
            let [hi, lo] = pair else { return None };
            *byte = (hex_value(*hi)? << 4) | hex_value(*lo)?;
        }
        Some(Self(out))
    }
}

impl fmt::Debug for RecoveryCodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = self.0.get(..4).unwrap_or_default();
        write!(f, "RecoveryCodeHash({}…)", hex(prefix))
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 0x0f] {
            out.push(char::from(
                DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    out
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// [`RECOVERY_CODE_COUNT`] fresh codes, formatted `XXXX-XXXX-XXXX-XXXX`, and their hashes
/// in the same order. No two codes are equal.
///
/// Show the codes to the user once and store only the hashes.
pub fn generate() -> Result<(Vec<String>, Vec<RecoveryCodeHash>), RandomError> {
    let mut codes = Vec::with_capacity(RECOVERY_CODE_COUNT);
    let mut hashes = Vec::with_capacity(RECOVERY_CODE_COUNT);
    // A duplicate among 80-bit codes means a broken random source: retry a little, then
    // fail rather than loop for ever.
    let mut attempts = 0;
    while codes.len() < RECOVERY_CODE_COUNT {
        attempts += 1;
        if attempts > 2 * RECOVERY_CODE_COUNT {
            return Err(RandomError);
        }
        let mut raw = Zeroizing::new([0u8; CODE_BYTES]);
        random::fill(raw.as_mut_slice())?;
        let code = format_code(raw.as_slice());
        let code_hash = hash(&code);
        if hashes.contains(&code_hash) {
            continue;
        }
        codes.push(code);
        hashes.push(code_hash);
    }
    Ok((codes, hashes))
}

/// `XXXX-XXXX-XXXX-XXXX` from the 10 raw bytes of a code.
fn format_code(raw: &[u8]) -> String {
    let plain = Zeroizing::new(base32::encode(raw));
    let mut out = String::with_capacity(CODE_CHARS + CODE_CHARS / GROUP_LEN);
    for (i, c) in plain.chars().enumerate() {
        if i > 0 && i % GROUP_LEN == 0 {
            out.push('-');
        }
        out.push(c);
    }
    out
}

/// The code as hashed: ASCII uppercase, with dashes and whitespace removed.
fn normalise(code: &str) -> Zeroizing<String> {
    Zeroizing::new(
        code.chars()
            .filter(|c| *c != '-' && !c.is_whitespace())
            .map(|c| c.to_ascii_uppercase())
            .collect(),
    )
}

/// The SHA-256 hash of `code` after normalising it (uppercase, dashes and whitespace
/// removed), so `abcd-efgh-ijkl-mnop`, `ABCDEFGHIJKLMNOP` and `abcd efgh ijkl mnop` hash
/// alike.
pub fn hash(code: &str) -> RecoveryCodeHash {
    RecoveryCodeHash(Sha256::digest(normalise(code).as_bytes()).into())
}

/// The stored hash that `code` matches, if any.
///
/// The code may be typed in any case, with or without dashes and spaces. Every entry of
/// `hashes` is compared in constant time, without stopping at a match. Input longer than
/// 64 bytes, or that is not 16 base32 characters once normalised, matches nothing (no
/// generated code looks like that).
///
/// # Security
/// A match is not yet a use: the caller removes the returned hash from the store, and
/// accepts the code only if that removal succeeded (each code works once).
pub fn find(hashes: &[RecoveryCodeHash], code: &str) -> Option<RecoveryCodeHash> {
    if code.len() > MAX_INPUT_LEN {
        return None;
    }
    let normalised = normalise(code);
    if normalised.len() != CODE_CHARS || !normalised.bytes().all(|b| base32::value(b).is_some()) {
        return None;
    }
    let candidate = RecoveryCodeHash(Sha256::digest(normalised.as_bytes()).into());
    let mut found = Choice::from(0);
    let mut matched = [0u8; 32];
    for stored in hashes {
        let equal = stored.0.ct_eq(&candidate.0);
        for (out, byte) in matched.iter_mut().zip(stored.0.iter()) {
            out.conditional_assign(byte, equal);
        }
        found |= equal;
    }
    bool::from(found).then_some(RecoveryCodeHash(matched))
}

/// The stored form of a set of codes ([`kind::RECOVERY_CODES`](super::stored::kind::RECOVERY_CODES)):
/// their hashes, 32 bytes each, in order.
pub fn to_data(hashes: &[RecoveryCodeHash]) -> FactorData {
    FactorData::new(hashes.iter().flat_map(|h| h.0).collect())
}

/// The hashes of a stored set ([`to_data`]); `None` for data of another shape.
pub fn from_data(data: &FactorData) -> Option<Vec<RecoveryCodeHash>> {
    let bytes = data.as_bytes();
    if !bytes.len().is_multiple_of(32) {
        return None;
    }
    let hashes = bytes.chunks_exact(32).map(|c| {
        let mut h = [0u8; 32];
        h.copy_from_slice(c);
        RecoveryCodeHash(h)
    });
    Some(hashes.collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_code_format(code: &str) -> bool {
        let groups: Vec<&str> = code.split('-').collect();
        groups.len() == 4
            && groups.iter().all(|g| {
                g.len() == 4
                    && g.bytes()
                        .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
            })
    }

    #[test]
    fn generate_gives_ten_distinct_grouped_base32_codes_with_their_hashes() {
        let (codes, hashes) = generate().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODE_COUNT);
        assert_eq!(RECOVERY_CODE_COUNT, 10);
        assert_eq!(hashes.len(), RECOVERY_CODE_COUNT);
        for (code, code_hash) in codes.iter().zip(&hashes) {
            assert!(is_code_format(code), "{code}");
            assert_eq!(code.len(), 19);
            assert_eq!(hash(code), *code_hash);
        }
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), codes.len());
        let (again, _) = generate().unwrap();
        assert!(again.iter().all(|c| !codes.contains(c)));
    }

    #[test]
    fn format_code_writes_80_bits_as_four_groups_of_four() {
        assert_eq!(format_code(&[0; 10]), "AAAA-AAAA-AAAA-AAAA");
        assert_eq!(format_code(&[0xff; 10]), "7777-7777-7777-7777");
        assert_eq!(format_code(b"foobarbazq"), "MZXW-6YTB-OJRG-C6TR");
    }

    #[test]
    fn hash_ignores_dashes_spaces_and_case() {
        let expected = hash("ABCD-EFGH-IJKL-MNOP");
        for spelling in [
            "ABCDEFGHIJKLMNOP",
            "abcd-efgh-ijkl-mnop",
            "abcd efgh ijkl mnop",
            " AbCd-EfGh ijkl-MNOP\n",
        ] {
            assert_eq!(hash(spelling), expected, "{spelling}");
        }
        assert_ne!(hash("ABCD-EFGH-IJKL-MNOQ"), expected);
        // The stored value is SHA-256 of the normalised code, nothing else.
        assert_eq!(
            expected.as_bytes(),
            &<[u8; 32]>::from(Sha256::digest(b"ABCDEFGHIJKLMNOP"))
        );
    }

    #[test]
    fn find_returns_the_matching_hash_in_any_spelling() {
        let (codes, hashes) = generate().unwrap();
        for (i, code) in codes.iter().enumerate() {
            assert_eq!(find(&hashes, code), Some(hashes[i]));
            let typed = code.to_lowercase().replace('-', "");
            assert_eq!(find(&hashes, &typed), Some(hashes[i]));
        }
    }

    #[test]
    fn find_rejects_wrong_malformed_and_oversized_codes() {
        let (codes, hashes) = generate().unwrap();
        let mut wrong = codes[0].clone();
        let last = if wrong.ends_with('A') { "B" } else { "A" };
        wrong.replace_range(wrong.len() - 1.., last);
        assert_eq!(find(&hashes, &wrong), None);
        assert_eq!(find(&hashes, ""), None);
        assert_eq!(find(&hashes, "not a code"), None);
        assert_eq!(find(&hashes, &"A".repeat(1024)), None);
        // Padded with spaces past 64 bytes: refused before any work.
        assert_eq!(
            find(&hashes, &format!("{}{}", codes[0], " ".repeat(60))),
            None
        );
        assert_eq!(find(&[], &codes[0]), None);
    }

    #[test]
    fn hex_round_trips_and_debug_shows_a_prefix_only() {
        let h = hash("ABCD-EFGH-IJKL-MNOP");
        let hex = h.to_hex();
        assert_eq!(hex.len(), 64);
        assert!(hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(RecoveryCodeHash::from_hex(&hex), Some(h));
        assert_eq!(RecoveryCodeHash::from_hex(&hex.to_uppercase()), Some(h));
        assert_eq!(RecoveryCodeHash::from_hex(&hex[..62]), None);
        assert_eq!(
            RecoveryCodeHash::from_hex(&format!("{}zz", &hex[..62])),
            None
        );
        assert_eq!(RecoveryCodeHash::from_hex(&format!("{hex}00")), None);
        let debug = format!("{h:?}");
        assert!(debug.contains(&hex[..8]));
        assert!(!debug.contains(&hex[..10]));
    }

    #[test]
    fn hash_serialises_and_deserialises() {
        let h = hash("ABCD-EFGH-IJKL-MNOP");
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<RecoveryCodeHash>(&json).unwrap(), h);
    }
}
