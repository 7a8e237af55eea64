//! One-time codes the application sends (email, SMS): [`CodeDigits`] digits, uniform,
//! alive for [`SENT_CODE_TTL`], bound to one challenge and one factor ([`PendingCode`]).
//!
//! ```
//! use tower_stepup::factor::sent::{self, Channel, CodeDigits, PendingCode};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let now = 1_700_000_000;
//! // Sending: a fresh code for the message, its hash for the store.
//! let (code, hash) = sent::generate(CodeDigits::DEFAULT)?;
//! assert_eq!(code.len(), 6);
//! let pending = PendingCode::new("factor-1", Channel::Email, hash, now);
//! let stored = pending.to_bytes();
//!
//! // Verifying: read it back, compare.
//! let pending = PendingCode::from_bytes(&stored).ok_or("unreadable")?;
//! let typed = format!("{}-{}", &code[..3], &code[3..]);
//! assert!(pending.accepts(&typed, now + 60));
//! assert!(!pending.accepts(&code, now + 300)); // expired
//! assert_eq!(Channel::Email.amr(), "otp");
//! assert_eq!(Channel::Sms.amr(), "sms");
//! # Ok(())
//! # }
//! ```
//!
//! # Security
//! - Codes come from the operating system's CSPRNG by rejection sampling, so every code
//!   of `n` digits is equally likely (no modulo bias).
//! - A code is short: 10^6 to 10^8 values. What protects it is its short life
//!   ([`SENT_CODE_TTL`]), single use (the caller deletes the [`PendingCode`] when it is
//!   accepted) and the attempt limit the verify service applies to every factor. The
//!   stored hash (SHA-256 with a domain prefix and a per-code random salt) keeps codes
//!   out of plain sight in store dumps and defeats tables computed in advance, but
//!   whoever reads the store while a code lives can find it by trying every value.
//! - [`SentCodeHash::matches`] compares in constant time, and refuses anything that is
//!   not exactly the expected number of ASCII digits once spaces and dashes are removed.
//! - Neither channel is phishing-resistant: a code typed into a look-alike page works
//!   for the attacker too. SMS is moreover a *restricted* authenticator (NIST SP
//!   800-63B-4 §3.1.3.3): a number can be ported or its messages redirected, so a
//!   verifier that offers it must offer an unrestricted alternative and tell users the
//!   risk ([`Channel::restricted`]).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::random::{self, RandomError};

/// How long a sent code can be used: 5 minutes.
pub const SENT_CODE_TTL: Duration = Duration::from_secs(300);

/// Longest input [`SentCodeHash::matches`] looks at, in bytes (spaces and dashes
/// included).
const MAX_INPUT_LEN: usize = 32;

/// Random salt bytes per code.
const SALT_LEN: usize = 16;

/// Bytes of [`SentCodeHash::to_bytes`]: digits, salt, digest.
const HASH_BYTES: usize = 1 + SALT_LEN + 32;

/// What is hashed before the salt and the code, so that the digest means nothing
/// anywhere else.
const DOMAIN: &[u8] = b"tower-stepup/sent-code/v1\0";

/// Draws of 32 random bits before [`generate`] gives up: each is refused with a
/// probability below 2.3 %, so 32 refusals in a row mean a broken random source.
const MAX_DRAWS: usize = 32;

/// How a code reaches the user.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    /// An email message (`"email"`).
    Email,
    /// A text message (`"sms"`).
    Sms,
}

impl Channel {
    /// The RFC 8176 `amr` value of a session proved with it: `otp` for email (RFC 8176
    /// has no email value; an emailed code is a one-time password), `sms` for SMS.
    pub const fn amr(self) -> &'static str {
        match self {
            Channel::Email => "otp",
            Channel::Sms => "sms",
        }
    }

    /// The `type` of its entry in `mfa_requirements`: `email` or `sms`.
    pub const fn requirement_type(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }

    /// Always `false`: a code the user types into a page works on a look-alike page
    /// too.
    pub const fn phishing_resistant(self) -> bool {
        false
    }

    /// Whether it is a *restricted authenticator* (NIST SP 800-63B-4 §3.1.3.3): `true`
    /// for SMS (the public telephone network: number porting, SIM swap, redirected
    /// messages), `false` for email. A verifier that offers a restricted authenticator
    /// must also offer an unrestricted one and tell the user of the risk.
    pub const fn restricted(self) -> bool {
        matches!(self, Channel::Sms)
    }

    /// The byte of [`PendingCode::to_bytes`].
    const fn to_byte(self) -> u8 {
        match self {
            Channel::Email => 1,
            Channel::Sms => 2,
        }
    }

    const fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Channel::Email),
            2 => Some(Channel::Sms),
            _ => None,
        }
    }
}

/// How many digits a sent code has: 6, 7 or 8.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CodeDigits(u8);

impl CodeDigits {
    /// The fewest digits: 6.
    pub const MIN: CodeDigits = CodeDigits(6);
    /// The most digits: 8.
    pub const MAX: CodeDigits = CodeDigits(8);
    /// The default: 6 digits.
    pub const DEFAULT: CodeDigits = CodeDigits(6);

    /// `digits` if it is 6, 7 or 8; `None` otherwise.
    pub const fn new(digits: u8) -> Option<Self> {
        if digits >= Self::MIN.0 && digits <= Self::MAX.0 {
            Some(Self(digits))
        } else {
            None
        }
    }

    /// The number of digits.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// 10^digits: how many codes there are.
    fn modulus(self) -> u32 {
        10u32.pow(u32::from(self.0))
    }
}

impl Default for CodeDigits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A fresh code of `digits` ASCII digits (leading zeros kept), uniform over all
/// 10^digits values, and its hash for the store.
///
/// Send the code to the user; store only the hash (in a [`PendingCode`]).
pub fn generate(digits: CodeDigits) -> Result<(Zeroizing<String>, SentCodeHash), RandomError> {
    let value = Zeroizing::new(uniform(digits.modulus(), draw)?);
    let code = spell(*value, digits);
    let mut salt = [0u8; SALT_LEN];
    random::fill(&mut salt)?;
    let hash = SentCodeHash {
        digits,
        salt,
        digest: digest(digits, &salt, code.as_bytes()),
    };
    Ok((code, hash))
}

/// 32 bits from the OS CSPRNG.
fn draw() -> Result<u32, RandomError> {
    let mut buf = Zeroizing::new([0u8; 4]);
    random::fill(buf.as_mut_slice())?;
    Ok(u32::from_be_bytes(*buf))
}

/// A value below `modulus`, uniform if `draw` is: draws at or above the largest
/// multiple of `modulus` that fits in 32 bits are refused and drawn again.
fn uniform(
    modulus: u32,
    mut draw: impl FnMut() -> Result<u32, RandomError>,
) -> Result<u32, RandomError> {
    let span = 1u64 << 32;
    let modulus = u64::from(modulus.max(1));
    let limit = span - span % modulus;
    for _ in 0..MAX_DRAWS {
        let x = u64::from(draw()?);
        if x < limit {
            return u32::try_from(x % modulus).map_err(|_| RandomError);
        }
    }
    Err(RandomError)
}

/// `value` as exactly `digits` decimal digits, leading zeros included.
fn spell(value: u32, digits: CodeDigits) -> Zeroizing<String> {
    let mut code = Zeroizing::new(String::with_capacity(usize::from(CodeDigits::MAX.0)));
    for place in (0..u32::from(digits.get())).rev() {
        let digit = (value / 10u32.pow(place)) % 10;
        code.push(char::from_digit(digit, 10).unwrap_or('0'));
    }
    code
}

/// SHA-256 of the domain, the number of digits, the salt and the code.
fn digest(digits: CodeDigits, salt: &[u8; SALT_LEN], code: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(DOMAIN);
    hasher.update([digits.get()]);
    hasher.update(salt);
    hasher.update(code);
    hasher.finalize().into()
}

/// The code as compared: spaces, tabs and dashes removed; `None` unless exactly
/// `digits` ASCII digits are left (or the input is longer than 32 bytes).
fn normalise(code: &str, digits: CodeDigits) -> Option<Zeroizing<String>> {
    if code.len() > MAX_INPUT_LEN {
        return None;
    }
    let kept: Zeroizing<String> = Zeroizing::new(
        code.chars()
            .filter(|c| *c != '-' && !c.is_ascii_whitespace())
            .collect(),
    );
    let right = kept.len() == usize::from(digits.get()) && kept.bytes().all(|b| b.is_ascii_digit());
    right.then_some(kept)
}

/// What the server keeps of a sent code: its number of digits, a random salt and the
/// salted SHA-256 digest (see the module's `# Security`).
///
/// `Debug` shows the number of digits only.
#[derive(Clone, PartialEq, Eq)]
pub struct SentCodeHash {
    digits: CodeDigits,
    salt: [u8; SALT_LEN],
    digest: [u8; 32],
}

impl SentCodeHash {
    /// Whether `code` is the code this hash was made from, compared in constant time.
    ///
    /// Spaces, tabs and dashes are removed first (`123 456`, `123-456`); what is left
    /// must be exactly [`digits`](Self::digits) ASCII digits, else nothing matches
    /// (other scripts' digits, letters, a code of another length, input over 32 bytes).
    pub fn matches(&self, code: &str) -> bool {
        let Some(code) = normalise(code, self.digits) else {
            return false;
        };
        let candidate = digest(self.digits, &self.salt, code.as_bytes());
        bool::from(candidate.ct_eq(&self.digest))
    }

    /// How many digits the code has.
    pub fn digits(&self) -> CodeDigits {
        self.digits
    }

    /// 49 bytes for the store: the number of digits, the salt, the digest.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HASH_BYTES);
        out.push(self.digits.get());
        out.extend_from_slice(&self.salt);
        out.extend_from_slice(&self.digest);
        out
    }

    /// A hash written by [`to_bytes`](Self::to_bytes); `None` for anything else (another
    /// length, a number of digits outside 6 to 8).
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; HASH_BYTES] = bytes.try_into().ok()?;
        let (digits, rest) = bytes.split_first()?;
        let (salt, digest) = rest.split_at_checked(SALT_LEN)?;
        Some(Self {
            digits: CodeDigits::new(*digits)?,
            salt: salt.try_into().ok()?,
            digest: digest.try_into().ok()?,
        })
    }
}

impl fmt::Debug for SentCodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not even a prefix of the digest: with the salt, a few bytes of it would be
        // enough to find a 6-digit code.
        f.debug_struct("SentCodeHash")
            .field("digits", &self.digits.get())
            .finish_non_exhaustive()
    }
}

/// The format version of [`PendingCode::to_bytes`].
const PENDING_VERSION: u8 = 1;

/// A sent code waiting to be typed: what the store keeps under the challenge it was
/// sent for (the mfa_token's `jti`), bound to one factor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingCode {
    /// The factor (the email address or phone number on file) the code was sent to.
    pub factor_id: String,
    /// How it was sent.
    pub channel: Channel,
    /// The code's hash.
    pub hash: SentCodeHash,
    /// When the code dies (Unix seconds).
    pub expires_at: u64,
}

impl PendingCode {
    /// A code sent at `now` to `factor_id` by `channel`: it dies [`SENT_CODE_TTL`]
    /// later.
    pub fn new(
        factor_id: impl Into<String>,
        channel: Channel,
        hash: SentCodeHash,
        now: u64,
    ) -> Self {
        Self {
            factor_id: factor_id.into(),
            channel,
            hash,
            expires_at: now.saturating_add(SENT_CODE_TTL.as_secs()),
        }
    }

    /// Whether the code is dead at `now`.
    pub fn is_expired(&self, now: u64) -> bool {
        now >= self.expires_at
    }

    /// Whether `code` is the sent code and it is alive at `now`
    /// ([`SentCodeHash::matches`]). A match is not yet a use: the caller deletes the
    /// pending code, and accepts only if that deletion was its own (single use).
    pub fn accepts(&self, code: &str, now: u64) -> bool {
        let matches = self.hash.matches(code);
        matches && !self.is_expired(now)
    }

    /// The stored form: a version byte (1), the channel, `expires_at` (8 bytes, big
    /// endian), the 49 bytes of the hash, then the factor id in UTF-8.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 8 + HASH_BYTES + self.factor_id.len());
        out.push(PENDING_VERSION);
        out.push(self.channel.to_byte());
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.extend_from_slice(&self.hash.to_bytes());
        out.extend_from_slice(self.factor_id.as_bytes());
        out
    }

    /// A pending code written by [`to_bytes`](Self::to_bytes); `None` for anything else:
    /// another version, an unknown channel, a bad hash, a factor id that is empty or not
    /// UTF-8, too few bytes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (&version, rest) = bytes.split_first()?;
        if version != PENDING_VERSION {
            return None;
        }
        let (&channel, rest) = rest.split_first()?;
        let (expires_at, rest) = rest.split_first_chunk::<8>()?;
        let (hash, factor_id) = rest.split_at_checked(HASH_BYTES)?;
        let factor_id = std::str::from_utf8(factor_id).ok()?;
        if factor_id.is_empty() {
            return None;
        }
        Some(Self {
            factor_id: factor_id.to_owned(),
            channel: Channel::from_byte(channel)?,
            hash: SentCodeHash::from_bytes(hash)?,
            expires_at: u64::from_be_bytes(*expires_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn digits(n: u8) -> CodeDigits {
        CodeDigits::new(n).unwrap()
    }

    #[test]
    fn channels_serialise_lowercase_and_map_to_their_amr() {
        assert_eq!(
            serde_json::to_string(&Channel::Email).unwrap(),
            r#""email""#
        );
        assert_eq!(serde_json::to_string(&Channel::Sms).unwrap(), r#""sms""#);
        assert_eq!(
            serde_json::from_str::<Channel>(r#""sms""#).unwrap(),
            Channel::Sms
        );
        assert!(serde_json::from_str::<Channel>(r#""SMS""#).is_err());
        assert!(serde_json::from_str::<Channel>(r#""voice""#).is_err());
        assert_eq!(Channel::Email.amr(), "otp");
        assert_eq!(Channel::Sms.amr(), "sms");
        assert_eq!(Channel::Email.requirement_type(), "email");
        assert_eq!(Channel::Sms.requirement_type(), "sms");
        assert!(!Channel::Email.phishing_resistant() && !Channel::Sms.phishing_resistant());
        assert!(Channel::Sms.restricted());
        assert!(!Channel::Email.restricted());
    }

    #[test]
    fn code_digits_are_six_to_eight() {
        assert_eq!(CodeDigits::default().get(), 6);
        for n in 6..=8 {
            assert_eq!(CodeDigits::new(n).map(CodeDigits::get), Some(n));
        }
        for n in [0, 1, 5, 9, 10, 255] {
            assert_eq!(CodeDigits::new(n), None, "{n}");
        }
        assert_eq!(SENT_CODE_TTL, Duration::from_secs(300));
    }

    #[test]
    fn generated_codes_have_the_asked_digits_and_match_their_hash_only() {
        for n in 6..=8 {
            let (code, hash) = generate(digits(n)).unwrap();
            assert_eq!(code.len(), usize::from(n));
            assert!(code.bytes().all(|b| b.is_ascii_digit()), "{}", *code);
            assert_eq!(hash.digits().get(), n);
            assert!(hash.matches(&code));
            let (other, other_hash) = generate(digits(n)).unwrap();
            // The salt differs even when (rarely) the codes are equal.
            assert_ne!(hash, other_hash);
            if *other != *code {
                assert!(!hash.matches(&other));
            }
        }
    }

    #[test]
    fn matches_strips_spaces_and_dashes_and_refuses_anything_else() {
        let salt = [3; SALT_LEN];
        let six = digits(6);
        let hash = SentCodeHash {
            digits: six,
            salt,
            digest: digest(six, &salt, b"012345"),
        };
        for typed in ["012345", "012 345", "012-345", " 0-1 2\t3-4 5\n"] {
            assert!(hash.matches(typed), "{typed:?}");
        }
        for wrong in [
            "",
            "012346",
            "12345",
            "0123456",
            "012345 6",
            "O12345",
            "01234５",
            "٠١٢٣٤٥",
            "+12345",
            "012_345",
            &format!("012345{}", " ".repeat(40)),
        ] {
            assert!(!hash.matches(wrong), "{wrong:?}");
        }
        // Seven digits of which the first six are right: another length, no match.
        let seven = SentCodeHash {
            digits: digits(7),
            salt,
            digest: digest(digits(7), &salt, b"0123456"),
        };
        assert!(seven.matches("0123456"));
        assert!(!seven.matches("012345"));
    }

    #[test]
    fn uniform_refuses_draws_in_the_biased_tail() {
        // 2^32 = 4,294,967,296: the last multiple of 10^6 below it is 4,294,000,000.
        let limit = 4_294_000_000u32;
        let mut draws = [limit, u32::MAX, limit - 1].into_iter();
        let value = uniform(1_000_000, || Ok(draws.next().unwrap())).unwrap();
        assert_eq!(value, (limit - 1) % 1_000_000);
        assert_eq!(draws.next(), None);
        assert_eq!(uniform(1_000_000, || Ok(0)).unwrap(), 0);
        assert_eq!(uniform(1_000_000, || Ok(1_234_567)).unwrap(), 234_567);
        // A source stuck in the tail, or failing, is an error, not a biased code.
        assert!(uniform(1_000_000, || Ok(u32::MAX)).is_err());
        assert!(uniform(1_000_000, || Err(RandomError)).is_err());
        // 10^8: the tail starts at 4,200,000,000.
        let mut draws = [4_200_000_000u32, 4_199_999_999].into_iter();
        assert_eq!(
            uniform(100_000_000, || Ok(draws.next().unwrap())).unwrap(),
            99_999_999
        );
    }

    #[test]
    fn spell_keeps_leading_zeros() {
        assert_eq!(*spell(0, digits(6)), "000000");
        assert_eq!(*spell(42, digits(6)), "000042");
        assert_eq!(*spell(999_999, digits(6)), "999999");
        assert_eq!(*spell(1_234_567, digits(7)), "1234567");
        assert_eq!(*spell(5, digits(8)), "00000005");
    }

    #[test]
    fn each_digit_position_is_roughly_uniform() {
        // 20,000 codes: each digit value appears ~2,000 times per position; a broken
        // sampler (e.g. a digit stuck, or only 3-digit values) lands far outside.
        let mut counts = [[0u32; 10]; 6];
        for _ in 0..20_000 {
            let (code, _) = generate(CodeDigits::DEFAULT).unwrap();
            for (position, b) in code.bytes().enumerate() {
                counts[position][usize::from(b - b'0')] += 1;
            }
        }
        for (position, row) in counts.iter().enumerate() {
            for (value, n) in row.iter().enumerate() {
                assert!((1_700..=2_300).contains(n), "{position}/{value}: {n}");
            }
        }
    }

    #[test]
    fn hash_bytes_round_trip_and_garbage_is_refused() {
        let (code, hash) = generate(digits(7)).unwrap();
        let bytes = hash.to_bytes();
        assert_eq!(bytes.len(), 49);
        let back = SentCodeHash::from_bytes(&bytes).unwrap();
        assert_eq!(back, hash);
        assert!(back.matches(&code));
        assert_eq!(SentCodeHash::from_bytes(&bytes[..48]), None);
        assert_eq!(
            SentCodeHash::from_bytes(&[bytes.clone(), vec![0]].concat()),
            None
        );
        let mut bad = bytes.clone();
        bad[0] = 9;
        assert_eq!(SentCodeHash::from_bytes(&bad), None);
        assert_eq!(SentCodeHash::from_bytes(&[]), None);
    }

    #[test]
    fn debug_shows_neither_salt_nor_digest() {
        let salt = [0xab; SALT_LEN];
        let hash = SentCodeHash {
            digits: digits(6),
            salt,
            digest: [0xcd; 32],
        };
        let pending = PendingCode::new("f1", Channel::Sms, hash.clone(), NOW);
        for text in [format!("{hash:?}"), format!("{pending:?}")] {
            assert!(text.contains("digits: 6"), "{text}");
            assert!(!text.to_lowercase().contains("ab"), "{text}");
            assert!(!text.contains("171") && !text.contains("205"), "{text}");
        }
    }

    #[test]
    fn pending_code_dies_after_five_minutes() {
        let (code, hash) = generate(CodeDigits::DEFAULT).unwrap();
        let pending = PendingCode::new("f1", Channel::Email, hash, NOW);
        assert_eq!(pending.expires_at, NOW + 300);
        assert!(pending.accepts(&code, NOW));
        assert!(pending.accepts(&code, NOW + 299));
        assert!(!pending.accepts(&code, NOW + 300));
        assert!(pending.is_expired(NOW + 300));
        assert!(!pending.accepts("000000", NOW) || *code == *"000000");
    }

    #[test]
    fn pending_code_bytes_round_trip() {
        let (code, hash) = generate(digits(8)).unwrap();
        for (factor, channel) in [("f1", Channel::Email), ("ünïcode-id", Channel::Sms)] {
            let pending = PendingCode::new(factor, channel, hash.clone(), NOW);
            let back = PendingCode::from_bytes(&pending.to_bytes()).unwrap();
            assert_eq!(back, pending);
            assert!(back.accepts(&code, NOW + 1));
        }
    }

    #[test]
    fn pending_code_from_bytes_refuses_garbage() {
        let (_, hash) = generate(CodeDigits::DEFAULT).unwrap();
        let good = PendingCode::new("f1", Channel::Sms, hash, NOW).to_bytes();
        assert!(PendingCode::from_bytes(&good).is_some());
        let with = |i: usize, b: u8| {
            let mut v = good.clone();
            v[i] = b;
            v
        };
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", vec![]),
            ("version 0", with(0, 0)),
            ("version 2", with(0, 2)),
            ("channel 0", with(1, 0)),
            ("channel 3", with(1, 3)),
            ("digits 5", with(10, 5)),
            ("no factor id", good[..good.len() - 2].to_vec()),
            ("cut in the hash", good[..40].to_vec()),
            ("cut in the time", good[..6].to_vec()),
            (
                "factor id not UTF-8",
                [&good[..good.len() - 2], &[0xff, 0xfe]].concat(),
            ),
            ("json", br#"{"factor_id":"f1"}"#.to_vec()),
        ];
        for (what, bytes) in cases {
            assert_eq!(PendingCode::from_bytes(&bytes), None, "{what}");
        }
    }
}
