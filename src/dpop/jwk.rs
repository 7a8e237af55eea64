//! The proof's `jwk`: public keys only, of the type its `alg` names, and their RFC 7638
//! thumbprint.

use std::borrow::Cow;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey};
use sha2::{Digest, Sha256};

use super::error::DpopError;

/// A JSON member whose presence is all that matters (any value, `null` included).
#[derive(Default)]
pub(crate) struct Present(pub(crate) bool);

impl<'de> serde::Deserialize<'de> for Present {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| Present(true))
    }
}

/// The members of a `jwk` the check reads. Other members (`kid`, `use`, `alg`,
/// `key_ops`, …) are allowed and ignored; a duplicate member is refused by serde. The
/// strings are borrowed from the header's JSON when they have no escapes.
#[derive(serde::Deserialize)]
pub(crate) struct RawJwk<'a> {
    #[serde(borrow, default)]
    kty: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    crv: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    x: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    y: Option<Cow<'a, str>>,
    // Private (or symmetric) key members of RFC 7518 §6 and RFC 8037 §2.
    #[serde(default)]
    d: Present,
    #[serde(default)]
    p: Present,
    #[serde(default)]
    q: Present,
    #[serde(default)]
    dp: Present,
    #[serde(default)]
    dq: Present,
    #[serde(default)]
    qi: Present,
    #[serde(default)]
    oth: Present,
    #[serde(default)]
    k: Present,
}

/// The longest coordinate (P-384), in bytes.
const MAX_COORDINATE: usize = 48;

/// A proof's public key, checked: its coordinates decoded once (for the signature) and
/// kept as given (their canonical spelling, for the thumbprint).
pub(crate) struct PublicJwk<'j> {
    /// `EC` or `OKP`.
    kty: &'static str,
    /// `P-256`, `P-384` or `Ed25519`.
    crv: &'static str,
    x: &'j str,
    /// `Some` for EC keys only.
    y: Option<&'j str>,
    /// The key as the signature backend takes it: the SEC1 uncompressed point
    /// (`0x04 ‖ x ‖ y`) for EC, `x` itself for Ed25519.
    raw: [u8; 1 + 2 * MAX_COORDINATE],
    raw_len: usize,
}

impl RawJwk<'_> {
    /// The public key for `alg`, or why this `jwk` is not one.
    pub(crate) fn public_key_for(&self, alg: Algorithm) -> Result<PublicJwk<'_>, DpopError> {
        let private = [
            &self.d, &self.p, &self.q, &self.dp, &self.dq, &self.qi, &self.oth, &self.k,
        ];
        if private.iter().any(|m| m.0) {
            return Err(DpopError::PrivateKey);
        }
        let (kty, crv, size) = match alg {
            Algorithm::ES256 => ("EC", "P-256", 32),
            Algorithm::ES384 => ("EC", "P-384", 48),
            Algorithm::EdDSA => ("OKP", "Ed25519", 32),
            _ => return Err(DpopError::AlgorithmNotAllowed),
        };
        if self.kty.as_deref() != Some(kty) || self.crv.as_deref() != Some(crv) {
            return Err(DpopError::KeyMismatch);
        }
        // `raw` has room for `0x04 ‖ x ‖ y` of the largest curve (the splits cannot fail).
        let mut raw = [0u8; 1 + 2 * MAX_COORDINATE];
        let x = self.x.as_deref();
        let (x, y, raw_len) = if kty == "EC" {
            let (tag, rest) = raw.split_at_mut(1);
            let (px, rest) = rest
                .split_at_mut_checked(size)
                .ok_or(DpopError::InvalidJwk)?;
            let (py, _) = rest
                .split_at_mut_checked(size)
                .ok_or(DpopError::InvalidJwk)?;
            let x = coordinate(x, px)?;
            let y = coordinate(self.y.as_deref(), py)?;
            tag.fill(0x04);
            (x, Some(y), 1 + 2 * size)
        } else {
            let (px, _) = raw
                .split_at_mut_checked(size)
                .ok_or(DpopError::InvalidJwk)?;
            let x = coordinate(x, px)?;
            if self.y.is_some() {
                return Err(DpopError::InvalidJwk);
            }
            (x, None, size)
        };
        Ok(PublicJwk {
            kty,
            crv,
            x,
            y,
            raw,
            raw_len,
        })
    }
}

impl PublicJwk<'_> {
    /// The key, for jsonwebtoken: what `DecodingKey::from_ec_components` (or
    /// `from_ed_components`) makes of the same members, without decoding them again.
    pub(crate) fn decoding_key(&self) -> DecodingKey {
        let raw = self.raw.get(..self.raw_len).unwrap_or_default();
        if self.y.is_some() {
            DecodingKey::from_ec_der(raw)
        } else {
            DecodingKey::from_ed_der(raw)
        }
    }

    /// Its RFC 7638 thumbprint (see [`thumbprint`]).
    pub(crate) fn thumbprint(&self) -> String {
        match self.y {
            Some(y) => canonical_sha256(&[
                ("crv", self.crv),
                ("kty", self.kty),
                ("x", self.x),
                ("y", y),
            ]),
            None => canonical_sha256(&[("crv", self.crv), ("kty", self.kty), ("x", self.x)]),
        }
    }
}

/// A coordinate: base64url without padding (canonical: no stray bits) of exactly
/// `out.len()` bytes, decoded into `out`. Returned as given, which is then also its
/// canonical spelling, so that one key has one thumbprint.
fn coordinate<'j>(value: Option<&'j str>, out: &mut [u8]) -> Result<&'j str, DpopError> {
    let value = value.ok_or(DpopError::InvalidJwk)?;
    // Room for what a few characters too many would decode to: anything longer than
    // `out` is refused either way.
    let mut buf = [0u8; MAX_COORDINATE + 3];
    let n = URL_SAFE_NO_PAD
        .decode_slice(value, &mut buf)
        .map_err(|_| DpopError::InvalidJwk)?;
    match buf.get(..n) {
        Some(decoded) if n == out.len() => out.copy_from_slice(decoded),
        _ => return Err(DpopError::InvalidJwk),
    }
    Ok(value)
}

/// SHA-256 over the JSON object of `members` (in the order given, no whitespace), as
/// base64url without padding. The values must need no escaping (base64url, or the fixed
/// names above).
fn canonical_sha256(members: &[(&str, &str)]) -> String {
    // `{`, each member as `"name":"value"` after `{` or `,`, then `}`: written whole (on
    // the stack for the keys of a proof), then hashed at once.
    let len = 1 + members
        .iter()
        .map(|(name, value)| name.len() + value.len() + 6)
        .sum::<usize>();
    let mut stack = [0u8; 256];
    let mut heap;
    let json = match stack.get_mut(..len) {
        Some(json) => json,
        None => {
            heap = vec![0u8; len];
            &mut heap[..]
        }
    };
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        if let Some(to) = json.get_mut(at..at + bytes.len()) {
            to.copy_from_slice(bytes);
        }
        at += bytes.len();
    };
    let mut separator: &[u8] = b"{\"";
    for (name, value) in members {
        put(separator);
        put(name.as_bytes());
        put(b"\":\"");
        put(value.as_bytes());
        separator = b"\",\"";
    }
    put(b"\"}");
    URL_SAFE_NO_PAD.encode(Sha256::digest(json))
}

/// The RFC 7638 JWK SHA-256 thumbprint of a public key, base64url without padding: the
/// value of `cnf.jkt` (RFC 9449 §6.1) for a token bound to this key.
///
/// Only the required members take part, in lexicographic order (`crv`, `kty`, `x`, `y`
/// for EC; `crv`, `kty`, `x` for OKP; `e`, `kty`, `n` for RSA), as RFC 7638 §3.2 and
/// RFC 8037 §2 say; `kid`, `use`, `alg` and the like change nothing. A symmetric (`oct`)
/// key or a key type jsonwebtoken does not know is refused as
/// [`DpopError::InvalidJwk`]: its thumbprint would be a hash of the secret.
///
/// ```
/// use jsonwebtoken::jwk::Jwk;
///
/// // RFC 7638 §3.1.
/// let jwk: Jwk = serde_json::from_str(r#"{"kty":"RSA","e":"AQAB","alg":"RS256",
///   "kid":"2011-04-29","n":"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAt
/// VT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lq
/// t7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n
/// 91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur
/// -kEgU8awapJzKnqDKgw"}"#.replace('\n', "").as_str()).unwrap();
/// assert_eq!(
///     tower_stepup::dpop::thumbprint(&jwk).unwrap(),
///     "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
/// );
/// ```
pub fn thumbprint(jwk: &Jwk) -> Result<String, DpopError> {
    // The members go into the JSON as they are: they must be base64url (nothing to
    // escape), and not empty.
    let b64 = |m: &str| {
        if is_base64url(m) {
            Ok(())
        } else {
            Err(DpopError::InvalidJwk)
        }
    };
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(k) => {
            let crv = match k.curve {
                EllipticCurve::P256 => "P-256",
                EllipticCurve::P384 => "P-384",
                EllipticCurve::P521 => "P-521",
                // Ed25519 (an OKP curve), or one jsonwebtoken adds later.
                _ => return Err(DpopError::InvalidJwk),
            };
            b64(&k.x)?;
            b64(&k.y)?;
            Ok(canonical_sha256(&[
                ("crv", crv),
                ("kty", "EC"),
                ("x", &k.x),
                ("y", &k.y),
            ]))
        }
        AlgorithmParameters::OctetKeyPair(k) if k.curve == EllipticCurve::Ed25519 => {
            b64(&k.x)?;
            Ok(canonical_sha256(&[
                ("crv", "Ed25519"),
                ("kty", "OKP"),
                ("x", &k.x),
            ]))
        }
        AlgorithmParameters::RSA(k) => {
            b64(&k.e)?;
            b64(&k.n)?;
            Ok(canonical_sha256(&[
                ("e", &k.e),
                ("kty", "RSA"),
                ("n", &k.n),
            ]))
        }
        _ => Err(DpopError::InvalidJwk),
    }
}

fn is_base64url(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::jwk::ThumbprintHash;
    use serde_json::json;

    use super::*;

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// The members of a `jwk` as the proof's header would carry them.
    fn raw(value: &serde_json::Value) -> RawJwk<'_> {
        RawJwk::deserialize(value).unwrap()
    }

    use serde::Deserialize as _;

    // The key and the thumbprint made here without jsonwebtoken's JWK code are what it
    // makes: `DecodingKey::from_jwk` and `Jwk::thumbprint`, as the check used before.
    #[test]
    fn the_key_and_thumbprint_are_jsonwebtokens() {
        crate::token::ensure_crypto_provider();
        let (x32, y32, x48, y48) = (b64(&[1; 32]), b64(&[2; 32]), b64(&[3; 48]), b64(&[4; 48]));
        for (alg, jwk) in [
            (
                Algorithm::ES256,
                json!({"kty": "EC", "crv": "P-256", "x": x32, "y": y32}),
            ),
            (
                Algorithm::ES384,
                json!({"kty": "EC", "crv": "P-384", "x": x48, "y": y48}),
            ),
            (
                Algorithm::EdDSA,
                json!({"kty": "OKP", "crv": "Ed25519", "x": x32}),
            ),
        ] {
            let members = raw(&jwk);
            let ours = members.public_key_for(alg).unwrap();
            let theirs: Jwk = serde_json::from_value(jwk.clone()).unwrap();
            let want = DecodingKey::from_jwk(&theirs).unwrap();
            let got = ours.decoding_key();
            assert_eq!(got.family(), want.family(), "{jwk}");
            assert_eq!(
                got.try_get_as_bytes().unwrap(),
                want.try_get_as_bytes().unwrap(),
                "{jwk}"
            );
            let want = theirs.thumbprint(ThumbprintHash::SHA256).unwrap();
            assert_eq!(ours.thumbprint(), want, "{jwk}");
            assert_eq!(thumbprint(&theirs).unwrap(), want, "{jwk}");
        }
        // The public function's other key types: P-521 and RSA as jsonwebtoken hashes
        // them; an Ed25519 curve in an EC key, a P-256 curve in an OKP key, a symmetric
        // key: none.
        for jwk in [
            json!({"kty": "EC", "crv": "P-521", "x": b64(&[5; 66]), "y": b64(&[6; 66])}),
            json!({"kty": "RSA", "e": "AQAB", "n": b64(&[7; 256])}),
        ] {
            let theirs: Jwk = serde_json::from_value(jwk.clone()).unwrap();
            let want = theirs.thumbprint(ThumbprintHash::SHA256).unwrap();
            assert_eq!(thumbprint(&theirs).unwrap(), want, "{jwk}");
        }
        for jwk in [
            json!({"kty": "EC", "crv": "Ed25519", "x": x32, "y": y32}),
            json!({"kty": "OKP", "crv": "P-256", "x": x32}),
            json!({"kty": "oct", "k": x32}),
        ] {
            let theirs: Jwk = serde_json::from_value(jwk.clone()).unwrap();
            assert_eq!(thumbprint(&theirs), Err(DpopError::InvalidJwk), "{jwk}");
        }
    }

    #[test]
    fn a_coordinate_is_exactly_its_size_in_canonical_base64url() {
        for size in [32, 48] {
            let mut out = [0u8; 48];
            let out = &mut out[..size];
            for len in 0..=80 {
                let value = b64(&vec![9; len]);
                let got = coordinate(Some(&value), out);
                if len == size {
                    assert_eq!(got, Ok(value.as_str()));
                    assert_eq!(out, &vec![9; size][..]);
                } else {
                    assert_eq!(got, Err(DpopError::InvalidJwk), "{len}");
                }
            }
            // Padded, or with stray bits, or not base64url: refused.
            let value = b64(&vec![9; size]);
            for bad in [
                format!("{value}="),
                format!("{value}A"),
                value.replace('J', "+"),
            ] {
                assert_eq!(
                    coordinate(Some(&bad), out),
                    Err(DpopError::InvalidJwk),
                    "{bad}"
                );
            }
            assert_eq!(coordinate(None, out), Err(DpopError::InvalidJwk));
        }
    }
}
