//! Second factors: TOTP and recovery codes.
//!
//! - [`totp`]: time-based one-time passwords (RFC 6238) with the parameters every
//!   authenticator app understands: HMAC-SHA1, 6 digits, 30-second steps, a 160-bit
//!   secret, and a window of one step either side of the server's clock. Enrolment hands
//!   the user an `otpauth://` URI ([`totp::otpauth_uri`]) and its QR code
//!   ([`totp::qr_svg`]).
//! - [`recovery`]: ten single-use recovery codes of 80 bits each, for the user who lost the
//!   authenticator. Only their SHA-256 hashes ([`RecoveryCodeHash`]) are stored.
//!
//! These are the building blocks; the verify and enroll services call them.
//!
//! # Security
//! - TOTP secrets and recovery codes come from the operating system's CSPRNG, never from
//!   a seeded or user-space generator. Secret bytes are wiped from memory on drop and never
//!   printed by `Debug`.
//! - Codes are compared in constant time, against every candidate (all three TOTP steps,
//!   every stored recovery hash), so timing reveals neither which one matched nor how
//!   much of a code was right.
//! - Nothing here remembers what was used. RFC 6238 §5.2 wants each TOTP code accepted
//!   once, and a recovery code is single-use: the verify service enforces both with the
//!   store, by recording the step [`totp::verify`] returns and refusing it afterwards,
//!   and by consuming the hash [`recovery::find`] returns.

#[cfg(feature = "passkey")]
pub mod passkey;
pub mod recovery;
pub mod sent;
pub mod stored;
pub mod totp;

pub use self::recovery::RecoveryCodeHash;
pub use self::stored::{FactorData, StoredFactor};
pub use self::totp::TotpSecret;
pub use crate::random::RandomError;

/// RFC 4648 §6 base32 (alphabet `A-Z2-7`), shared by TOTP secrets and recovery codes.
mod base32 {
    use zeroize::Zeroizing;

    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

    /// The value of one base32 character, upper or lower case.
    pub(super) fn value(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a'),
            b'2'..=b'7' => Some(c - b'2' + 26),
            _ => None,
        }
    }

    /// Uppercase base32 without padding.
    pub(super) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
        let mut acc: u16 = 0;
        let mut bits: u32 = 0;
        for &b in bytes {
            acc = (acc << 8) | u16::from(b);
            bits += 8;
            while bits >= 5 {
                bits -= 5;
                push(&mut out, acc >> bits);
            }
            acc &= (1 << bits) - 1;
        }
        if bits > 0 {
            push(&mut out, acc << (5 - bits));
        }
        out
    }

    fn push(out: &mut String, index: u16) {
        let c = ALPHABET
            .get(usize::from(index & 0x1f))
            .copied()
            .unwrap_or(b'A');
        out.push(char::from(c));
    }

    /// Decodes base32: case-insensitive, ASCII whitespace ignored anywhere, `=` padding
    /// allowed only at the end. Refuses lengths no encoding produces (1, 3 or 6 characters
    /// modulo 8) and non-zero trailing bits (RFC 4648 §3.5), so each byte string has one
    /// accepted spelling up to case, spacing and padding.
    pub(super) fn decode(s: &str) -> Option<Zeroizing<Vec<u8>>> {
        let trimmed = s.trim_end_matches(|c: char| c == '=' || c.is_ascii_whitespace());
        let chars = trimmed.bytes().filter(|b| !b.is_ascii_whitespace());
        let count = chars.clone().count();
        if matches!(count % 8, 1 | 3 | 6) {
            return None;
        }
        let mut out = Zeroizing::new(Vec::with_capacity(count * 5 / 8));
        let mut acc: u16 = 0;
        let mut bits: u32 = 0;
        for c in chars {
            acc = (acc << 5) | u16::from(value(c)?);
            bits += 5;
            if bits >= 8 {
                bits -= 8;
                out.push(u8::try_from(acc >> bits).ok()?);
                acc &= (1 << bits) - 1;
            }
        }
        if acc != 0 {
            return None;
        }
        Some(out)
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn rfc4648_test_vectors_encode_and_decode() {
            for (plain, encoded) in [
                ("", ""),
                ("f", "MY"),
                ("fo", "MZXQ"),
                ("foo", "MZXW6"),
                ("foob", "MZXW6YQ"),
                ("fooba", "MZXW6YTB"),
                ("foobar", "MZXW6YTBOI"),
            ] {
                assert_eq!(encode(plain.as_bytes()), encoded);
                assert_eq!(decode(encoded).unwrap().as_slice(), plain.as_bytes());
            }
            assert_eq!(decode("MZXW6YQ=").unwrap().as_slice(), b"foob");
            assert_eq!(decode("mzxw 6yq").unwrap().as_slice(), b"foob");
        }

        #[test]
        fn decode_refuses_bad_characters_lengths_and_trailing_bits() {
            // A digit outside 2-7, impossible lengths, padding inside, set trailing bits
            // ("f" is "MY"; "MZ" would carry a stray 1 bit).
            for bad in ["MZXW6Y1", "M", "MZX", "MZXW6Y", "MZ=XQ", "MZXR", "MZ"] {
                assert!(decode(bad).is_none(), "{bad}");
            }
        }
    }
}
