//! The client's DPoP key (RFC 9449): [`DpopKey`] signs a fresh proof for every request;
//! and the reading of the server's nonce and nonce challenges (§8, §9).

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{HeaderMap, Method, StatusCode};
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, EllipticCurve, EllipticCurveKeyParameters,
    EllipticCurveKeyType, Jwk, OctetKeyPairParameters, OctetKeyPairType,
};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::challenge::DPOP_NONCE_HEADER;
use crate::dpop::{Htu, HtuError};
use crate::flow::www_authenticate;

/// The `error` of a nonce challenge (RFC 9449 §8, §9).
const USE_DPOP_NONCE: &str = "use_dpop_nonce";

/// The longest server nonce remembered; a longer one is ignored.
pub(crate) const MAX_NONCE_LEN: usize = 1024;

/// Why a DPoP key could not be made or could not sign.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DpopKeyError {
    /// The operating system's random source failed.
    #[error("the operating system's random number generator failed")]
    Random,
    /// Not an algorithm a DPoP key signs with here (ES256, ES384, EdDSA).
    #[error("DPoP keys sign with ES256, ES384 or EdDSA")]
    UnsupportedAlgorithm,
    /// The PKCS#8 document is not a private key of the algorithm's type that the
    /// signature backend accepts.
    #[error("not a usable private key for this algorithm")]
    InvalidKey,
    /// The `htu` is not an absolute `http`/`https` URL.
    #[error(transparent)]
    Htu(#[from] HtuError),
    /// The signature backend failed to sign.
    #[error("the DPoP proof could not be signed")]
    Sign,
}

/// A key pair that signs DPoP proofs (RFC 9449 §4.2), for
/// [`AuthClientBuilder::dpop`](super::AuthClientBuilder::dpop).
///
/// An ES256 (P-256) or Ed25519 key pair, generated from the operating system's random
/// source or loaded from an application's PKCS#8 document. It signs through jsonwebtoken,
/// with whichever signature backend the crate was built with (`aws-lc-rs` or
/// `rust-crypto`): generation needs nothing more than random bytes and the PKCS#8 form
/// both backends read.
///
/// ```
/// use http::Method;
/// use tower_stepup::client::DpopKey;
///
/// let key = DpopKey::generate_es256()?;
/// let token = Some("eyJ…");
/// let proof = key.proof(&Method::GET, "https://api.example/me?x=1", token, None, 1_800_000_000)?;
/// assert_eq!(proof.split('.').count(), 3);
/// // What a bound token's `cnf.jkt` is.
/// assert_eq!(key.jkt(), tower_stepup::dpop::thumbprint(&key.public_jwk())?);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// The private key lives in jsonwebtoken's [`EncodingKey`], which zeroizes it when
/// dropped; the buffers it was made from are zeroized too. `Debug` shows the algorithm
/// and the public thumbprint only.
pub struct DpopKey {
    alg: Algorithm,
    key: EncodingKey,
    jwk: Jwk,
    /// The JOSE header, base64url: the same for every proof.
    header: String,
    jkt: String,
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("alg", &self.alg)
            .field("jkt", &self.jkt)
            .finish_non_exhaustive()
    }
}

/// PKCS#8 v1 of a P-256 private key (RFC 5915 inside RFC 5208), the 32-byte scalar
/// last; the public key is left out (both backends compute it).
const P256_PKCS8_PREFIX: [u8; 35] = [
    0x30, 0x41, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01,
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x27, 0x30, 0x25, 0x02, 0x01,
    0x01, 0x04, 0x20,
];

/// The order of P-256 minus one, big-endian: a scalar must be in `1..=n-1`.
const P256_ORDER_MINUS_1: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x50,
];

/// PKCS#8 v1 of an Ed25519 private key (RFC 8410 §7), the 32-byte seed last: the
/// 48-byte form jsonwebtoken reads the public key from.
const ED25519_PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// The start of a PKCS#8 v2 Ed25519 document (RFC 8410 §7, with the public key after the
/// seed), from the version on: `version 1, id-Ed25519, OCTET STRING { OCTET STRING seed }`.
const ED25519_PKCS8_V2_BODY: [u8; 14] = [
    0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Whether a big-endian 32-byte scalar is in `1..n` for P-256, without branching on its
/// bytes.
fn p256_scalar_in_range(d: &[u8; 32]) -> bool {
    // d ≤ n - 1 exactly when (n - 1) - d does not borrow.
    let mut borrow: i16 = 0;
    for (m, x) in P256_ORDER_MINUS_1.iter().rev().zip(d.iter().rev()) {
        let diff = i16::from(*m) - i16::from(*x) - borrow;
        borrow = (diff >> 15) & 1;
    }
    let nonzero = d.iter().fold(0u8, |acc, b| acc | b) != 0;
    borrow == 0 && nonzero
}

impl DpopKey {
    /// A new ES256 (P-256) key from the operating system's random source.
    pub fn generate_es256() -> Result<Self, DpopKeyError> {
        let mut scalar = Zeroizing::new([0u8; 32]);
        // A uniformly random 32-byte string is out of range with probability < 2^-32:
        // draw again (rejection sampling); failing 8 times means a broken source.
        for _ in 0..8 {
            crate::random::fill(&mut *scalar).map_err(|_| DpopKeyError::Random)?;
            if p256_scalar_in_range(&scalar) {
                let mut der = Zeroizing::new(Vec::with_capacity(67));
                der.extend_from_slice(&P256_PKCS8_PREFIX);
                der.extend_from_slice(&*scalar);
                return Self::from_encoding_key(Algorithm::ES256, EncodingKey::from_ec_der(&der));
            }
        }
        Err(DpopKeyError::Random)
    }

    /// A new Ed25519 (`EdDSA`) key from the operating system's random source.
    pub fn generate_ed25519() -> Result<Self, DpopKeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        crate::random::fill(&mut *seed).map_err(|_| DpopKeyError::Random)?;
        Self::from_ed25519_seed(&*seed)
    }

    fn from_ed25519_seed(seed: &[u8]) -> Result<Self, DpopKeyError> {
        let mut der = Zeroizing::new(Vec::with_capacity(48));
        der.extend_from_slice(&ED25519_PKCS8_V1_PREFIX);
        der.extend_from_slice(seed);
        Self::from_encoding_key(Algorithm::EdDSA, EncodingKey::from_ed_der(&der))
    }

    /// An application's key: an unencrypted PKCS#8 document (DER) of a private key for
    /// `alg` — ES256 (P-256), ES384 (P-384) or EdDSA (Ed25519, PKCS#8 v1 or v2). The key
    /// is checked by signing with it once; an Ed25519 v2 document's public key must match
    /// its seed.
    pub fn from_pkcs8_der(alg: Algorithm, der: &[u8]) -> Result<Self, DpopKeyError> {
        match alg {
            Algorithm::ES256 | Algorithm::ES384 => {
                Self::from_encoding_key(alg, EncodingKey::from_ec_der(der))
            }
            Algorithm::EdDSA => {
                if der.len() == 48 && der.starts_with(&ED25519_PKCS8_V1_PREFIX) {
                    return Self::from_encoding_key(alg, EncodingKey::from_ed_der(der));
                }
                // v2: the backend checks the public key against the seed; the key is
                // then kept in the v1 form jsonwebtoken derives the public key from.
                let seed = der
                    .get(2..)
                    .filter(|rest| {
                        der.first() == Some(&0x30) && rest.starts_with(&ED25519_PKCS8_V2_BODY)
                    })
                    .and_then(|rest| {
                        rest.get(ED25519_PKCS8_V2_BODY.len()..ED25519_PKCS8_V2_BODY.len() + 32)
                    })
                    .ok_or(DpopKeyError::InvalidKey)?;
                crate::token::ensure_crypto_provider();
                jsonwebtoken::crypto::sign(b"probe", &EncodingKey::from_ed_der(der), alg)
                    .map_err(|_| DpopKeyError::InvalidKey)?;
                Self::from_ed25519_seed(seed)
            }
            _ => Err(DpopKeyError::UnsupportedAlgorithm),
        }
    }

    fn from_encoding_key(alg: Algorithm, key: EncodingKey) -> Result<Self, DpopKeyError> {
        crate::token::ensure_crypto_provider();
        let derived = Jwk::from_encoding_key(&key, alg).map_err(|_| DpopKeyError::InvalidKey)?;
        let (members, algorithm) = match (&derived.algorithm, alg) {
            (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256 | Algorithm::ES384) => {
                let (crv, curve) = if alg == Algorithm::ES256 {
                    ("P-256", EllipticCurve::P256)
                } else {
                    ("P-384", EllipticCurve::P384)
                };
                if ec.curve != curve {
                    return Err(DpopKeyError::InvalidKey);
                }
                (
                    json!({ "kty": "EC", "crv": crv, "x": ec.x, "y": ec.y }),
                    AlgorithmParameters::EllipticCurve(EllipticCurveKeyParameters {
                        key_type: EllipticCurveKeyType::EC,
                        curve,
                        x: ec.x.clone(),
                        y: ec.y.clone(),
                    }),
                )
            }
            (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA)
                if okp.curve == EllipticCurve::Ed25519 =>
            {
                (
                    json!({ "kty": "OKP", "crv": "Ed25519", "x": okp.x }),
                    AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                        key_type: OctetKeyPairType::OctetKeyPair,
                        curve: EllipticCurve::Ed25519,
                        x: okp.x.clone(),
                    }),
                )
            }
            _ => return Err(DpopKeyError::InvalidKey),
        };
        // Signing once proves the backend takes the key as it will for every proof.
        jsonwebtoken::crypto::sign(b"probe", &key, alg).map_err(|_| DpopKeyError::InvalidKey)?;
        let jwk = Jwk {
            common: CommonParameters::default(),
            algorithm,
        };
        let jkt = crate::dpop::thumbprint(&jwk).map_err(|_| DpopKeyError::InvalidKey)?;
        let alg_name = match alg {
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            _ => "EdDSA",
        };
        let header = json!({ "typ": "dpop+jwt", "alg": alg_name, "jwk": members });
        Ok(Self {
            alg,
            key,
            jwk,
            header: URL_SAFE_NO_PAD.encode(header.to_string()),
            jkt,
        })
    }

    /// The algorithm the proofs are signed with.
    pub fn alg(&self) -> Algorithm {
        self.alg
    }

    /// The public key as a JWK: `kty`, `crv` and the coordinates only.
    pub fn public_jwk(&self) -> Jwk {
        self.jwk.clone()
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key (base64url): the `cnf.jkt` of
    /// the tokens bound to this key, equal to
    /// [`dpop::thumbprint`](crate::dpop::thumbprint) of [`public_jwk`](Self::public_jwk).
    pub fn jkt(&self) -> &str {
        &self.jkt
    }

    /// A proof for one request (RFC 9449 §4.2): a compact JWS whose header is
    /// `{"typ":"dpop+jwt","alg":…,"jwk":{public key}}` and whose claims are a fresh
    /// random `jti` (128 bits, base64url), `htm` (the method), `htu` (`htu` normalized,
    /// without its query and fragment), `iat`, `ath` (base64url of the SHA-256 of the
    /// access token) when an access token is sent with it, and `nonce` when given.
    pub fn proof(
        &self,
        method: &Method,
        htu: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
        iat: u64,
    ) -> Result<String, DpopKeyError> {
        let htu = Htu::parse(htu)?;
        let jti = crate::random::id().map_err(|_| DpopKeyError::Random)?;
        let mut claims = Map::new();
        claims.insert("jti".into(), Value::String(jti));
        claims.insert("htm".into(), Value::String(method.as_str().to_owned()));
        claims.insert("htu".into(), Value::String(htu.as_str().to_owned()));
        claims.insert("iat".into(), Value::from(iat));
        if let Some(token) = access_token {
            let ath = URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()));
            claims.insert("ath".into(), Value::String(ath));
        }
        if let Some(nonce) = nonce {
            claims.insert("nonce".into(), Value::String(nonce.to_owned()));
        }
        let payload = Value::Object(claims).to_string();
        let mut jws = String::with_capacity(self.header.len() + payload.len() * 4 / 3 + 100);
        jws.push_str(&self.header);
        jws.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut jws);
        crate::token::ensure_crypto_provider();
        let signature = jsonwebtoken::crypto::sign(jws.as_bytes(), &self.key, self.alg)
            .map_err(|_| DpopKeyError::Sign)?;
        jws.push('.');
        jws.push_str(&signature);
        Ok(jws)
    }
}

/// The server's nonce from an answer's `DPoP-Nonce` header, if it is one: 1 to
/// [`MAX_NONCE_LEN`] `NQCHAR`s (RFC 9449 §8.1).
pub(crate) fn nonce_of(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(DPOP_NONCE_HEADER)?.as_bytes();
    let nqchar = |b: &u8| matches!(b, 0x21 | 0x23..=0x5b | 0x5d..=0x7e);
    let valid = !value.is_empty() && value.len() <= MAX_NONCE_LEN && value.iter().all(nqchar);
    valid
        .then(|| std::str::from_utf8(value).ok().map(str::to_owned))
        .flatten()
}

/// Whether an answer asks for a proof with the server's nonce (RFC 9449 §8, §9): a
/// `DPoP-Nonce` header, and either a `400` whose JSON `error` is `use_dpop_nonce` (an
/// authorization server's form) or a `401` whose `WWW-Authenticate` challenge (or, for
/// the token endpoints, JSON `error`) says `use_dpop_nonce` (a resource server's).
pub(crate) fn asks_for_nonce(
    status: StatusCode,
    headers: &HeaderMap,
    body: Option<&Value>,
) -> bool {
    if nonce_of(headers).is_none() {
        return false;
    }
    let in_body = body.and_then(|b| b.get("error")).and_then(Value::as_str) == Some(USE_DPOP_NONCE);
    match status {
        StatusCode::BAD_REQUEST => in_body,
        StatusCode::UNAUTHORIZED => in_body || www_authenticate::has_error(headers, USE_DPOP_NONCE),
        _ => false,
    }
}

/// The `htu` of a request to `uri`: scheme, host, port and path (no userinfo, query or
/// fragment), normalized.
pub(crate) fn htu_of(uri: &http::Uri) -> Result<Htu, HtuError> {
    let scheme = uri.scheme_str().unwrap_or("");
    let host = uri.host().unwrap_or("");
    let url = match uri.port_u16() {
        Some(port) => format!("{scheme}://{host}:{port}{}", uri.path()),
        None => format!("{scheme}://{host}{}", uri.path()),
    };
    Htu::parse(&url)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use base64::engine::general_purpose::STANDARD;
    use http::HeaderValue;

    use super::*;
    use crate::dpop::{check, thumbprint, DpopConfig, DpopError, Expected};

    const NOW: u64 = 1_800_000_000;
    const URL: &str = "https://api.example:8443/orders/7";

    fn keys() -> Vec<DpopKey> {
        vec![
            DpopKey::generate_es256().unwrap(),
            DpopKey::generate_ed25519().unwrap(),
        ]
    }

    /// The proof checked by the server side against a request.
    fn checked(
        proof: &str,
        method: &Method,
        url: &str,
        token: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<crate::dpop::CheckedProof, DpopError> {
        let mut headers = HeaderMap::new();
        headers.insert("dpop", HeaderValue::from_str(proof).unwrap());
        let url = Htu::parse(url).unwrap();
        let expected = Expected {
            method,
            url: &url,
            access_token: token,
            nonce,
            now: NOW,
        };
        check(&DpopConfig::default(), &headers, &expected)
    }

    fn part(proof: &str, i: usize) -> Value {
        let part = proof.split('.').nth(i).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn proofs_of_both_key_types_pass_the_servers_check() {
        for key in keys() {
            let proof = key
                .proof(&Method::POST, URL, Some("the-token"), Some("n-1"), NOW)
                .unwrap();
            let ok = checked(&proof, &Method::POST, URL, Some("the-token"), Some("n-1"))
                .unwrap_or_else(|e| panic!("{:?}: {e}", key.alg()));
            assert_eq!(ok.jkt, key.jkt());
            assert_eq!(ok.iat, NOW);
            // Each claim is the one checked: another request refuses the same proof.
            let refused = |m: &Method, u: &str, t: Option<&str>, n: Option<&str>| {
                checked(&proof, m, u, t, n).unwrap_err()
            };
            let t = Some("the-token");
            let n = Some("n-1");
            assert_eq!(refused(&Method::GET, URL, t, n), DpopError::WrongMethod);
            assert_eq!(
                refused(&Method::POST, "https://api.example:8443/orders/8", t, n),
                DpopError::WrongUrl
            );
            assert_eq!(
                refused(&Method::POST, "https://api.example/orders/7", t, n),
                DpopError::WrongUrl
            );
            assert_eq!(
                refused(&Method::POST, URL, Some("other"), n),
                DpopError::WrongAth
            );
            assert_eq!(
                refused(&Method::POST, URL, t, Some("n-2")),
                DpopError::WrongNonce
            );
            let c = part(&proof, 1);
            assert_eq!(c["htm"], "POST");
            assert_eq!(c["htu"], URL);
            assert_eq!(c["iat"], NOW);
            assert_eq!(c["nonce"], "n-1");
            assert_eq!(
                c["ath"],
                URL_SAFE_NO_PAD.encode(Sha256::digest(b"the-token")),
                "base64url(SHA-256(token))"
            );
        }
    }

    #[test]
    fn without_a_token_or_nonce_there_is_no_ath_or_nonce_and_the_htu_has_no_query() {
        for key in keys() {
            let proof = key
                .proof(
                    &Method::POST,
                    "HTTPS://API.example:443/auth/login?x=1#frag",
                    None,
                    None,
                    NOW,
                )
                .unwrap();
            let c = part(&proof, 1);
            assert_eq!(c["htu"], "https://api.example/auth/login");
            assert!(c.get("ath").is_none() && c.get("nonce").is_none(), "{c}");
            checked(
                &proof,
                &Method::POST,
                "https://api.example/auth/login",
                None,
                None,
            )
            .unwrap();
            // A server that expects a nonce refuses it, as the nonce retry needs.
            assert_eq!(
                checked(
                    &proof,
                    &Method::POST,
                    "https://api.example/auth/login",
                    None,
                    Some("n")
                )
                .unwrap_err(),
                DpopError::MissingNonce
            );
            // An iat outside the server's window is refused.
            let old = key.proof(&Method::GET, URL, None, None, NOW - 61).unwrap();
            assert_eq!(
                checked(&old, &Method::GET, URL, None, None).unwrap_err(),
                DpopError::TooOld
            );
        }
    }

    #[test]
    fn jkt_is_the_thumbprint_of_the_public_jwk() {
        for key in keys() {
            assert_eq!(key.jkt(), thumbprint(&key.public_jwk()).unwrap());
            assert_eq!(key.jkt().len(), 43, "base64url of 32 bytes");
        }
        let (a, b) = (
            DpopKey::generate_es256().unwrap(),
            DpopKey::generate_es256().unwrap(),
        );
        assert_ne!(a.jkt(), b.jkt(), "two keys");
    }

    #[test]
    fn every_proof_has_a_fresh_jti_of_128_bits() {
        for key in keys() {
            let mut seen = HashSet::new();
            for _ in 0..50 {
                let proof = key.proof(&Method::GET, URL, None, None, NOW).unwrap();
                let jti = part(&proof, 1)["jti"].as_str().unwrap().to_owned();
                assert_eq!(URL_SAFE_NO_PAD.decode(&jti).unwrap().len(), 16);
                assert!(seen.insert(jti), "a jti twice");
            }
        }
    }

    #[test]
    fn the_header_is_typ_alg_and_a_public_jwk_only() {
        for key in keys() {
            let proof = key.proof(&Method::GET, URL, None, None, NOW).unwrap();
            let h = part(&proof, 0);
            assert_eq!(h["typ"], "dpop+jwt");
            let mut members: Vec<&str> =
                h.as_object().unwrap().keys().map(String::as_str).collect();
            members.sort_unstable();
            assert_eq!(members, ["alg", "jwk", "typ"]);
            let mut jwk: Vec<&str> = h["jwk"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            jwk.sort_unstable();
            match key.alg() {
                Algorithm::ES256 => {
                    assert_eq!(h["alg"], "ES256");
                    assert_eq!(jwk, ["crv", "kty", "x", "y"]);
                }
                _ => {
                    assert_eq!(h["alg"], "EdDSA");
                    assert_eq!(jwk, ["crv", "kty", "x"]);
                }
            }
        }
    }

    /// The PKCS#8 DER of a PEM file of tests/keys.
    fn pem_der(pem: &str) -> Vec<u8> {
        let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        STANDARD.decode(b64).unwrap()
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let der = pem_der(include_str!("../../tests/keys/ec_private.pem"));
        let key = DpopKey::from_pkcs8_der(Algorithm::ES256, &der).unwrap();
        let scalar = &der[36..68];
        let shown = format!("{key:?} {key:#?}");
        assert!(shown.contains(key.jkt()), "{shown}");
        for private in [
            URL_SAFE_NO_PAD.encode(scalar),
            STANDARD.encode(scalar),
            scalar.iter().map(|b| format!("{b:02x}")).collect(),
            format!("{scalar:?}"),
        ] {
            assert!(!shown.contains(&private), "{shown}");
        }
        assert!(
            !shown.contains("EncodingKey") && !shown.contains("content"),
            "{shown}"
        );
    }

    #[test]
    fn generated_keys_sign_their_known_public_keys() {
        // The templates, checked by known answers: the scalar 1 is the generator of
        // P-256 (SEC 2), the seed of RFC 8032 §7.1 test 1 its public key.
        let mut der = P256_PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&[0; 31]);
        der.push(1);
        let key = DpopKey::from_pkcs8_der(Algorithm::ES256, &der).unwrap();
        let AlgorithmParameters::EllipticCurve(ec) = &key.public_jwk().algorithm else {
            panic!()
        };
        let hex = |s: &str| {
            URL_SAFE_NO_PAD
                .decode(s)
                .unwrap()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        };
        assert_eq!(
            hex(&ec.x),
            "6b17d1f2e12c4247f8bce6e563a440f277037d812deb33a0f4a13945d898c296"
        );
        assert_eq!(
            hex(&ec.y),
            "4fe342e2fe1a7f9b8ee7eb4a7c0f9e162bce33576b315ececbb6406837bf51f5"
        );

        let seed = decode_hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60");
        let key = DpopKey::from_ed25519_seed(&seed).unwrap();
        let AlgorithmParameters::OctetKeyPair(okp) = &key.public_jwk().algorithm else {
            panic!()
        };
        assert_eq!(
            hex(&okp.x),
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        );
    }

    fn decode_hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn the_p256_scalar_range_is_1_to_n_minus_1() {
        let mut n = P256_ORDER_MINUS_1;
        assert!(p256_scalar_in_range(&n), "n - 1");
        n[31] += 1;
        assert!(!p256_scalar_in_range(&n), "n");
        assert!(!p256_scalar_in_range(&[0xff; 32]));
        assert!(!p256_scalar_in_range(&[0; 32]), "zero");
        let mut one = [0; 32];
        one[31] = 1;
        assert!(p256_scalar_in_range(&one));
        let mut below = P256_ORDER_MINUS_1;
        below[0] = 0xfe;
        below[31] = 0xff;
        assert!(
            p256_scalar_in_range(&below),
            "a low byte above n's, a high one below"
        );
    }

    #[test]
    fn application_keys_in_pkcs8() {
        let ec = pem_der(include_str!("../../tests/keys/ec_private.pem"));
        let key = DpopKey::from_pkcs8_der(Algorithm::ES256, &ec).unwrap();
        let proof = key.proof(&Method::GET, URL, None, None, NOW).unwrap();
        assert_eq!(
            checked(&proof, &Method::GET, URL, None, None).unwrap().jkt,
            key.jkt()
        );
        // The same key as an Ed25519 or ES384 key, or garbage: refused.
        assert!(matches!(
            DpopKey::from_pkcs8_der(Algorithm::EdDSA, &ec),
            Err(DpopKeyError::InvalidKey)
        ));
        assert!(matches!(
            DpopKey::from_pkcs8_der(Algorithm::ES384, &ec),
            Err(DpopKeyError::InvalidKey)
        ));
        assert!(matches!(
            DpopKey::from_pkcs8_der(Algorithm::ES256, b"\x30\x00"),
            Err(DpopKeyError::InvalidKey)
        ));
        assert!(matches!(
            DpopKey::from_pkcs8_der(Algorithm::HS256, &ec),
            Err(DpopKeyError::UnsupportedAlgorithm)
        ));

        let ed = pem_der(include_str!("../../tests/keys/ed_private.pem"));
        let v1 = DpopKey::from_pkcs8_der(Algorithm::EdDSA, &ed).unwrap();
        assert!(matches!(
            DpopKey::from_pkcs8_der(Algorithm::ES256, &ed),
            Err(DpopKeyError::InvalidKey)
        ));
        // PKCS#8 v2: the seed and its public key (RFC 8410 §7); a wrong public key is
        // refused by the backend.
        let AlgorithmParameters::OctetKeyPair(okp) = &v1.public_jwk().algorithm else {
            panic!()
        };
        let public = URL_SAFE_NO_PAD.decode(&okp.x).unwrap();
        let mut v2 = vec![0x30, 0x51];
        v2.extend_from_slice(&ED25519_PKCS8_V2_BODY);
        v2.extend_from_slice(&ed[16..48]);
        v2.extend_from_slice(&[0x81, 0x21, 0x00]);
        v2.extend_from_slice(&public);
        let key = DpopKey::from_pkcs8_der(Algorithm::EdDSA, &v2).unwrap();
        assert_eq!(key.jkt(), v1.jkt());
        let last = v2.len() - 1;
        v2[last] ^= 1;
        assert!(matches!(
            DpopKey::from_pkcs8_der(Algorithm::EdDSA, &v2),
            Err(DpopKeyError::InvalidKey)
        ));
    }

    /// The signatures checked by another implementation than the signer's: RustCrypto's
    /// `p256` 0.14 and `ed25519-dalek` 3 (jsonwebtoken signs with aws-lc-rs, or `p256`
    /// 0.13 / `ed25519-dalek` 2).
    #[test]
    fn signatures_verify_with_an_independent_implementation() {
        for key in keys() {
            let proof = key.proof(&Method::GET, URL, None, None, NOW).unwrap();
            let (input, sig) = proof.rsplit_once('.').unwrap();
            let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
            let b = |s: &str| URL_SAFE_NO_PAD.decode(s).unwrap();
            match &key.public_jwk().algorithm {
                AlgorithmParameters::EllipticCurve(ec) => {
                    let point = [vec![4], b(&ec.x), b(&ec.y)].concat();
                    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).unwrap();
                    let sig = p256::ecdsa::Signature::from_slice(&sig).unwrap();
                    p256::ecdsa::signature::Verifier::verify(&vk, input.as_bytes(), &sig).unwrap();
                }
                AlgorithmParameters::OctetKeyPair(okp) => {
                    let x: [u8; 32] = b(&okp.x).try_into().unwrap();
                    let vk = ed25519_dalek::VerifyingKey::from_bytes(&x).unwrap();
                    let sig = ed25519_dalek::Signature::from_slice(&sig).unwrap();
                    vk.verify_strict(input.as_bytes(), &sig).unwrap();
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn an_es384_application_key() {
        crate::token::ensure_crypto_provider();
        let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let key = DpopKey::from_pkcs8_der(Algorithm::ES384, &kp.serialize_der()).unwrap();
        assert_eq!(key.alg(), Algorithm::ES384);
        let proof = key.proof(&Method::GET, URL, None, None, NOW).unwrap();
        assert_eq!(part(&proof, 0)["alg"], "ES384");
        assert_eq!(part(&proof, 0)["jwk"]["crv"], "P-384");
        let config = DpopConfig::builder()
            .algorithms([Algorithm::ES256, Algorithm::ES384])
            .build()
            .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("dpop", HeaderValue::from_str(&proof).unwrap());
        let url = Htu::parse(URL).unwrap();
        let expected = Expected {
            method: &Method::GET,
            url: &url,
            access_token: None,
            nonce: None,
            now: NOW,
        };
        assert_eq!(check(&config, &headers, &expected).unwrap().jkt, key.jkt());
        assert!(matches!(
            DpopKey::from_pkcs8_der(Algorithm::ES256, &kp.serialize_der()),
            Err(DpopKeyError::InvalidKey)
        ));
    }

    #[test]
    fn a_bad_htu_is_refused() {
        let key = DpopKey::generate_ed25519().unwrap();
        for url in ["/relative", "ftp://x.example/", "https://user@x.example/"] {
            assert!(
                matches!(
                    key.proof(&Method::GET, url, None, None, NOW),
                    Err(DpopKeyError::Htu(_))
                ),
                "{url}"
            );
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn nonce_challenges_as_servers_send_them() {
        let rs = r#"DPoP algs="ES256 EdDSA", error="use_dpop_nonce", error_description="a nonce""#;
        let nonce = ("dpop-nonce", "eyJ7S_zG.8Xv-2~!");
        let body = json!({ "error": "use_dpop_nonce" });
        let yes = [
            (
                StatusCode::UNAUTHORIZED,
                headers(&[("www-authenticate", rs), nonce]),
                None,
            ),
            // Behind a Bearer challenge, in another header line.
            (
                StatusCode::UNAUTHORIZED,
                headers(&[
                    ("www-authenticate", "Bearer realm=\"x\""),
                    ("www-authenticate", rs),
                    nonce,
                ]),
                None,
            ),
            (StatusCode::BAD_REQUEST, headers(&[nonce]), Some(&body)),
            (StatusCode::UNAUTHORIZED, headers(&[nonce]), Some(&body)),
        ];
        for (status, h, b) in &yes {
            assert!(asks_for_nonce(*status, h, *b), "{status} {h:?}");
        }
        let other = json!({ "error": "invalid_dpop_proof" });
        let no = [
            // No DPoP-Nonce header: nothing to retry with.
            (
                StatusCode::UNAUTHORIZED,
                headers(&[("www-authenticate", rs)]),
                Some(&body),
            ),
            (StatusCode::BAD_REQUEST, headers(&[]), Some(&body)),
            // Another error.
            (
                StatusCode::UNAUTHORIZED,
                headers(&[
                    ("www-authenticate", r#"DPoP error="invalid_dpop_proof""#),
                    nonce,
                ]),
                Some(&other),
            ),
            // The word in a description only, or in a malformed value.
            (
                StatusCode::UNAUTHORIZED,
                headers(&[
                    (
                        "www-authenticate",
                        r#"DPoP error="invalid_token", error_description="use_dpop_nonce""#,
                    ),
                    nonce,
                ]),
                None,
            ),
            (
                StatusCode::UNAUTHORIZED,
                headers(&[("www-authenticate", r#"DPoP error="use_dpop_nonce"#), nonce]),
                None,
            ),
            // Another status.
            (
                StatusCode::FORBIDDEN,
                headers(&[("www-authenticate", rs), nonce]),
                Some(&body),
            ),
            (
                StatusCode::BAD_REQUEST,
                headers(&[("www-authenticate", rs), nonce]),
                None,
            ),
            // A nonce that is not one (a space, a quote).
            (
                StatusCode::BAD_REQUEST,
                headers(&[("dpop-nonce", "a b")]),
                Some(&body),
            ),
            (
                StatusCode::BAD_REQUEST,
                headers(&[("dpop-nonce", "a\"b")]),
                Some(&body),
            ),
        ];
        for (status, h, b) in &no {
            assert!(!asks_for_nonce(*status, h, *b), "{status} {h:?}");
        }
        let long = "n".repeat(MAX_NONCE_LEN + 1);
        assert_eq!(nonce_of(&headers(&[("dpop-nonce", &long)])), None);
        assert_eq!(
            nonce_of(&headers(&[nonce])).as_deref(),
            Some("eyJ7S_zG.8Xv-2~!")
        );
    }

    #[test]
    fn the_htu_of_a_request() {
        for (uri, htu) in [
            (
                "http://127.0.0.1:3000/api/me?x=1",
                "http://127.0.0.1:3000/api/me",
            ),
            (
                "https://someone@API.example:443/a/./b",
                "https://api.example/a/b",
            ),
            ("http://[::1]:8080/", "http://[::1]:8080/"),
        ] {
            assert_eq!(htu_of(&uri.parse().unwrap()).unwrap().as_str(), htu);
        }
    }
}
