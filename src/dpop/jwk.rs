//! The proof's `jwk`: public keys only, of the type its `alg` names, and their RFC 7638
//! thumbprint.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, OctetKeyPairParameters, OctetKeyPairType, ThumbprintHash,
};
use jsonwebtoken::Algorithm;

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
/// `key_ops`, …) are allowed and ignored; a duplicate member is refused by serde.
#[derive(serde::Deserialize)]
pub(crate) struct RawJwk {
    #[serde(default)]
    kty: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
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

impl RawJwk {
    /// The public key for `alg`, or why this `jwk` is not one.
    pub(crate) fn public_key_for(&self, alg: Algorithm) -> Result<Jwk, DpopError> {
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
        let x = coordinate(self.x.as_deref(), size)?;
        let algorithm = if kty == "EC" {
            let y = coordinate(self.y.as_deref(), size)?;
            AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                key_type: EllipticCurveKeyType::EC,
                curve: if size == 32 {
                    EllipticCurve::P256
                } else {
                    EllipticCurve::P384
                },
                x,
                y,
            })
        } else {
            if self.y.is_some() {
                return Err(DpopError::InvalidJwk);
            }
            AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                key_type: OctetKeyPairType::OctetKeyPair,
                curve: EllipticCurve::Ed25519,
                x,
            })
        };
        Ok(Jwk {
            common: CommonParameters::default(),
            algorithm,
        })
    }
}

/// A coordinate: base64url without padding (canonical: no stray bits) of exactly `size`
/// bytes. Returned as given, which is then also its canonical spelling, so that one key
/// has one thumbprint.
fn coordinate(value: Option<&str>, size: usize) -> Result<String, DpopError> {
    let value = value.ok_or(DpopError::InvalidJwk)?;
    let decoded = URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| DpopError::InvalidJwk)?;
    if decoded.len() != size {
        return Err(DpopError::InvalidJwk);
    }
    Ok(value.to_owned())
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
    // jsonwebtoken writes the members into the JSON as they are: they must be base64url
    // (nothing to escape), and not empty.
    let members: [&str; 2] = match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(k) => [&k.x, &k.y],
        AlgorithmParameters::OctetKeyPair(k) => [&k.x, "AA"],
        AlgorithmParameters::RSA(k) => [&k.n, &k.e],
        _ => return Err(DpopError::InvalidJwk),
    };
    if !members.iter().all(|m| is_base64url(m)) {
        return Err(DpopError::InvalidJwk);
    }
    crate::token::ensure_crypto_provider();
    jwk.thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| DpopError::InvalidJwk)
}

fn is_base64url(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
