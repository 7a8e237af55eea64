//! TOTP (RFC 6238): HMAC-SHA1, [`DIGITS`] digits, [`STEP_SECS`]-second steps, a
//! [`SECRET_LEN`]-byte secret, and one step of clock drift either side.
//!
//! ```
//! use tower_stepup::factor::totp::{self, TotpSecret};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Enrolment: a fresh secret, shown to the user as a URI and a QR code.
//! let secret = TotpSecret::generate()?;
//! let uri = totp::otpauth_uri(&secret, "Example", "alice@example.com");
//! assert!(uri.starts_with("otpauth://totp/Example:alice%40example.com?secret="));
//! assert!(totp::qr_svg(&uri).is_some());
//!
//! // Verification: the code the app shows now is accepted, and names its step.
//! let now = 1_700_000_000;
//! let code = totp::code_at(&secret, totp::step_at(now));
//! assert_eq!(totp::verify(&secret, &code, now), Some(totp::step_at(now)));
//! assert_eq!(totp::verify(&secret, &code, now + 90), None);
//! # Ok(())
//! # }
//! ```
//!
//! # Security
//! - [`verify`] accepts a code for the previous, the current or the next step, no more
//!   (RFC 6238 §5.2 recommends at most one step of network delay).
//! - [`verify`] does not remember anything. A code must be accepted only once (RFC 6238
//!   §5.2): the caller records the step [`verify`] returns in the store and refuses a
//!   step it has already accepted for that user. Without that, a code seen over a
//!   shoulder or in a phishing proxy can be replayed for up to 90 seconds.
//! - A 6-digit code is one guess in a million: the caller also limits failed attempts.
//! - The URI and the QR code contain the secret. Send them once, over TLS, with
//!   `Cache-Control: no-store`, and never log them.

use std::fmt::{self, Write as _};

use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use totp_rs::{Algorithm, Builder, Totp};
use zeroize::Zeroizing;

use super::base32;
use crate::error::ConfigError;
use crate::random::{self, RandomError};

/// Length of a time step in seconds (RFC 6238 default `X = 30`).
pub const STEP_SECS: u64 = 30;

/// Digits in a code.
pub const DIGITS: usize = 6;

/// Length of a generated secret in bytes: 160 bits, the length RFC 4226 §4 recommends and
/// the output size of HMAC-SHA1.
pub const SECRET_LEN: usize = 20;

/// Shortest secret accepted: 128 bits, the minimum of RFC 4226 §4.
const MIN_SECRET_LEN: usize = 16;

/// Longest secret accepted: the HMAC-SHA1 block size. A longer key is hashed down to 20
/// bytes by HMAC anyway, and only makes the URI and the QR code larger.
const MAX_SECRET_LEN: usize = 64;

/// A TOTP shared secret.
///
/// The bytes are wiped from memory on drop (also in clones) and never printed by
/// `Debug`. Store them encrypted at rest: whoever reads them can compute every code.
///
/// # Security
/// While a code is computed, totp-rs holds a copy of the secret (and the HMAC output) for
/// the duration of the call; that copy is freed but not wiped, because totp-rs's own
/// `zeroize` feature is not enabled in this crate's dependencies.
#[derive(Clone)]
pub struct TotpSecret {
    bytes: Zeroizing<Vec<u8>>,
}

impl TotpSecret {
    /// A fresh [`SECRET_LEN`]-byte secret from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, RandomError> {
        let mut bytes = Zeroizing::new(vec![0u8; SECRET_LEN]);
        random::fill(bytes.as_mut_slice())?;
        Ok(Self { bytes })
    }

    /// A secret from raw bytes: at least 16 bytes (128 bits, RFC 4226 §4), at most 64.
    /// The bytes are wiped on drop, also when they are refused.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Self, ConfigError> {
        Self::checked(Zeroizing::new(bytes))
    }

    /// A secret from RFC 4648 base32, as authenticator apps and other servers export it:
    /// any case, `=` padding optional, spaces ignored. The decoded secret must be 16 to
    /// 64 bytes long.
    pub fn from_base32(s: &str) -> Result<Self, ConfigError> {
        let bytes = base32::decode(s)
            .ok_or_else(|| ConfigError::invalid("TOTP secret", "not RFC 4648 base32"))?;
        Self::checked(bytes)
    }

    fn checked(bytes: Zeroizing<Vec<u8>>) -> Result<Self, ConfigError> {
        if bytes.len() < MIN_SECRET_LEN {
            return Err(ConfigError::invalid(
                "TOTP secret",
                "shorter than 128 bits (RFC 4226 section 4)",
            ));
        }
        if bytes.len() > MAX_SECRET_LEN {
            return Err(ConfigError::invalid("TOTP secret", "longer than 64 bytes"));
        }
        Ok(Self { bytes })
    }

    /// The secret as uppercase base32 without padding, the form authenticator apps expect
    /// in an `otpauth://` URI or typed in by hand.
    pub fn to_base32(&self) -> String {
        base32::encode(&self.bytes)
    }

    /// The raw secret bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// SHA-256 of the secret, in hex: names one secret (a pending enrollment) in the
    /// store without revealing it.
    pub(crate) fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        super::recovery::hex(&Sha256::digest(&self.bytes[..]))
    }

    /// A totp-rs generator that takes the step number itself as its time (a step of one
    /// second), so no `step * STEP_SECS` can overflow. The length checks of `build` are
    /// ours ([`TotpSecret::checked`]); digits and algorithm are constants.
    fn generator(&self) -> Totp {
        Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(DIGITS_U8)
            .with_skew(0)
            .with_step_duration(1)
            .with_secret(self.as_bytes())
            .build_noncompliant()
    }
}

const DIGITS_U8: u8 = 6;
const _: () = assert!(DIGITS_U8 as usize == DIGITS);

impl fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpSecret").finish_non_exhaustive()
    }
}

/// The time step of `now` (seconds since the Unix epoch): `now / 30`.
pub fn step_at(now: u64) -> u64 {
    now / STEP_SECS
}

/// The 6-digit code (RFC 6238, HMAC-SHA1) of time step `step`, with leading zeros.
pub fn code_at(secret: &TotpSecret, step: u64) -> String {
    secret.generator().generate(step).to_string()
}

/// Checks `code` against the steps before, at and after `step_at(now)`, and returns the
/// step it matched.
///
/// Surrounding whitespace is ignored; anything else than exactly six ASCII digits is
/// refused. All three candidates are computed and compared in constant time, whichever
/// matches, so timing does not tell which step (or whether any) matched. Should two
/// steps share the code, the later one is returned.
///
/// # Security
/// This function has no memory. Accepting a step only once is the caller's job: record
/// the returned step for the user in the store and refuse a code whose step was already
/// accepted (RFC 6238 §5.2).
pub fn verify(secret: &TotpSecret, code: &str, now: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let generator = secret.generator();
    let current = step_at(now);
    let mut matched = Choice::from(0);
    let mut matched_step = 0u64;
    for step in [
        current.checked_sub(1),
        Some(current),
        current.checked_add(1),
    ]
    .into_iter()
    .flatten()
    {
        // Sized up front so the code is never left behind in a reallocated buffer.
        let mut candidate = Zeroizing::new(String::with_capacity(DIGITS));
        let _ = write!(candidate, "{}", generator.generate(step));
        let equal = candidate.as_bytes().ct_eq(code.as_bytes());
        matched_step.conditional_assign(&step, equal);
        matched |= equal;
    }
    bool::from(matched).then_some(matched_step)
}

/// The `otpauth://` URI an authenticator app enrols from (the Google Authenticator key
/// URI format):
///
/// ```text
/// otpauth://totp/{issuer}:{account}?secret={base32}&issuer={issuer}&algorithm=SHA1&digits=6&period=30
/// ```
///
/// `issuer` and `account` are percent-encoded as UTF-8, keeping only the RFC 3986
/// unreserved characters (`A-Z a-z 0-9 - . _ ~`); the colon between them stays literal.
/// The URI contains the secret: never log it.
pub fn otpauth_uri(secret: &TotpSecret, issuer: &str, account: &str) -> String {
    let issuer = percent_encode(issuer);
    format!(
        "otpauth://totp/{issuer}:{account}?secret={secret}&issuer={issuer}\
         &algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        account = percent_encode(account),
        secret = secret.to_base32(),
    )
}

/// Percent-encodes every byte of `s` except the RFC 3986 §2.3 unreserved characters.
fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            for nibble in [b >> 4, b & 0x0f] {
                out.push(char::from(
                    HEX.get(usize::from(nibble)).copied().unwrap_or(b'0'),
                ));
            }
        }
    }
    out
}

/// An SVG image (at least 200×200, black on white, with the quiet zone) of a QR code
/// holding `uri`, for the enrolment page. `None` if `uri` is too long for a QR code.
/// The image contains the secret: serve it with `Cache-Control: no-store`.
pub fn qr_svg(uri: &str) -> Option<String> {
    let code = qrcode::QrCode::new(uri.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .build(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The secret of RFC 6238 Appendix B for HMAC-SHA1.
    fn rfc_secret() -> TotpSecret {
        TotpSecret::from_bytes(b"12345678901234567890".to_vec()).unwrap()
    }

    #[test]
    fn rfc6238_sha1_test_vectors_give_the_last_six_digits() {
        let secret = rfc_secret();
        for (t, expected) in [
            (59, "287082"),
            (1_111_111_109, "081804"),
            (1_111_111_111, "050471"),
            (1_234_567_890, "005924"),
            (2_000_000_000, "279037"),
            (20_000_000_000, "353130"),
        ] {
            assert_eq!(code_at(&secret, step_at(t)), expected, "T = {t}");
            assert_eq!(verify(&secret, expected, t), Some(step_at(t)), "T = {t}");
        }
    }

    #[test]
    fn step_at_counts_thirty_second_steps() {
        assert_eq!(step_at(0), 0);
        assert_eq!(step_at(29), 0);
        assert_eq!(step_at(30), 1);
        assert_eq!(step_at(1_111_111_109), 37_037_036);
    }

    #[test]
    fn verify_accepts_previous_current_and_next_step_and_returns_it() {
        let secret = rfc_secret();
        let now = 1_111_111_111;
        let current = step_at(now);
        for step in [current - 1, current, current + 1] {
            let code = code_at(&secret, step);
            assert_eq!(verify(&secret, &code, now), Some(step), "step {step}");
        }
    }

    #[test]
    fn verify_rejects_a_code_two_steps_away() {
        let secret = rfc_secret();
        let now = 1_111_111_111;
        let current = step_at(now);
        for step in [current - 2, current + 2] {
            let code = code_at(&secret, step);
            // Only meaningful if the far code is not also a near one.
            assert!((current - 1..=current + 1).all(|s| code_at(&secret, s) != code));
            assert_eq!(verify(&secret, &code, now), None, "step {step}");
        }
    }

    #[test]
    fn verify_rejects_codes_that_are_not_six_ascii_digits() {
        let secret = rfc_secret();
        for bad in [
            "",
            "12345",
            "1234567",
            "12a456",
            "１２３４５６",
            "+28708",
            "287 082",
            "2870822",
        ] {
            assert_eq!(verify(&secret, bad, 59), None, "{bad:?}");
        }
    }

    #[test]
    fn verify_trims_surrounding_whitespace() {
        let secret = rfc_secret();
        assert_eq!(verify(&secret, " 287082 ", 59), Some(1));
        assert_eq!(verify(&secret, "\t287082\n", 59), Some(1));
    }

    #[test]
    fn verify_works_at_both_ends_of_time() {
        let secret = rfc_secret();
        assert_eq!(verify(&secret, &code_at(&secret, 0), 0), Some(0));
        assert_eq!(verify(&secret, &code_at(&secret, 1), 0), Some(1));
        let last = step_at(u64::MAX);
        assert_eq!(
            verify(&secret, &code_at(&secret, last), u64::MAX),
            Some(last)
        );
    }

    #[test]
    fn generated_secrets_are_160_bits_and_differ() {
        let a = TotpSecret::generate().unwrap();
        let b = TotpSecret::generate().unwrap();
        assert_eq!(a.as_bytes().len(), SECRET_LEN);
        assert_eq!(SECRET_LEN, 20);
        assert_ne!(a.as_bytes(), b.as_bytes());
    }

    #[test]
    fn base32_round_trip_is_unpadded_uppercase() {
        assert_eq!(rfc_secret().to_base32(), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        let secret = TotpSecret::generate().unwrap();
        let b32 = secret.to_base32();
        assert_eq!(b32.len(), 32);
        assert!(b32
            .bytes()
            .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b)));
        let back = TotpSecret::from_base32(&b32).unwrap();
        assert_eq!(back.as_bytes(), secret.as_bytes());
    }

    #[test]
    fn from_base32_accepts_lower_case_spaces_and_padding() {
        let expected = rfc_secret();
        for spelling in [
            "gezd gnbv gy3t qojq gezd gnbv gy3t qojq",
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ",
            " GezdGNBVgy3tQOJQ GEZDGNBVGY3TQOJQ ",
        ] {
            let secret = TotpSecret::from_base32(spelling).unwrap();
            assert_eq!(secret.as_bytes(), expected.as_bytes(), "{spelling}");
        }
        // 17 bytes: padded and unpadded spellings.
        let bytes = vec![0xA5u8; 17];
        let unpadded = TotpSecret::from_bytes(bytes.clone()).unwrap().to_base32();
        assert!(!unpadded.contains('='));
        let padded = format!("{unpadded}{}", "=".repeat(8 - unpadded.len() % 8));
        assert_eq!(TotpSecret::from_base32(&padded).unwrap().as_bytes(), bytes);
        assert_eq!(
            TotpSecret::from_base32(&unpadded).unwrap().as_bytes(),
            bytes
        );
    }

    #[test]
    fn from_base32_refuses_other_alphabets_and_short_secrets() {
        for bad in [
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJ1",
            "GEZDGNBVGY3TQOJQ-GEZDGNBVGY3TQOJQ",
            "GEZDGNBVGY3TQOJQ",
            "",
        ] {
            assert!(TotpSecret::from_base32(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn from_bytes_refuses_secrets_shorter_than_128_bits() {
        assert!(TotpSecret::from_bytes(vec![1; 10]).is_err());
        assert!(TotpSecret::from_bytes(vec![1; 15]).is_err());
        assert!(TotpSecret::from_bytes(vec![1; 16]).is_ok());
        assert!(TotpSecret::from_bytes(vec![1; 65]).is_err());
    }

    #[test]
    fn debug_never_prints_the_secret() {
        let secret = rfc_secret();
        let printed = format!("{secret:?} {:?}", secret.clone());
        assert!(!printed.contains(&secret.to_base32()));
        assert!(!printed.contains("1234567890"));
        assert!(!printed.contains("49, 50"));
    }

    #[test]
    fn otpauth_uri_percent_encodes_issuer_and_account() {
        assert_eq!(
            otpauth_uri(&rfc_secret(), "tower stepup", "alice@example.com"),
            "otpauth://totp/tower%20stepup:alice%40example.com\
             ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=tower%20stepup\
             &algorithm=SHA1&digits=6&period=30"
        );
        assert_eq!(percent_encode("a:b/é~"), "a%3Ab%2F%C3%A9~");
    }

    #[test]
    fn qr_svg_renders_an_svg_document() {
        let uri = otpauth_uri(&rfc_secret(), "tower stepup", "alice@example.com");
        let svg = qr_svg(&uri).unwrap();
        assert!(svg.starts_with("<?xml") || svg.starts_with("<svg"));
        assert!(svg.contains("</svg>"));
        let width: u32 = svg
            .split("width=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap()
            .parse()
            .unwrap();
        assert!(width >= 200, "{width}");
        // Far beyond the largest QR code (2953 bytes).
        assert_eq!(qr_svg(&"x".repeat(4000)), None);
    }
}
