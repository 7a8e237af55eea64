//! Verifying keys from a JSON Web Key Set (RFC 7517), as an identity provider publishes
//! them: each usable key loaded and pinned to one algorithm, every other entry skipped
//! with its reason, so one odd entry never blocks the rest of a rotation.

use std::fmt;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, KeyAlgorithm, KeyOperations};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};

use super::{KeySet, VerifyingKey};

/// Why an entry of a JWKS was not loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwkSkip {
    /// No `kid`: a token could not name it.
    NoKid,
    /// `use` is not `sig`.
    NotForSignatures,
    /// `key_ops` does not include `verify`.
    NotForVerifying,
    /// A symmetric (`oct`) key: a shared secret never comes from a published set.
    SymmetricKey,
    /// A key type or curve this crate does not verify with (e.g. P-521).
    Unsupported,
    /// No `alg`, and the key type leaves several allowed algorithms (an RSA key with
    /// both `RS256` and `PS256` allowed).
    AmbiguousAlgorithm,
    /// Its algorithm is not in the verifier's allow-list.
    AlgorithmNotAllowed(Algorithm),
    /// Its `alg` does not fit its key type or curve.
    KeyDoesNotFitAlgorithm,
    /// The key material could not be read.
    Malformed,
    /// An earlier entry has the same `kid`: the first one is kept.
    DuplicateKid,
}

impl fmt::Display for JwkSkip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoKid => f.write_str("no kid"),
            Self::NotForSignatures => f.write_str("use is not sig"),
            Self::NotForVerifying => f.write_str("key_ops does not include verify"),
            Self::SymmetricKey => f.write_str("a symmetric key"),
            Self::Unsupported => f.write_str("an unsupported key type or curve"),
            Self::AmbiguousAlgorithm => f.write_str("no alg, and several fit"),
            Self::AlgorithmNotAllowed(alg) => write!(f, "algorithm {alg:?} not allowed"),
            Self::KeyDoesNotFitAlgorithm => f.write_str("the key does not fit its alg"),
            Self::Malformed => f.write_str("malformed key material"),
            Self::DuplicateKid => f.write_str("duplicate kid"),
        }
    }
}

/// An entry of a JWKS that was not loaded: its `kid` (if any) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SkippedJwk {
    /// The entry's `kid`.
    pub kid: Option<String>,
    /// Why it was skipped.
    pub reason: JwkSkip,
}

impl KeySet {
    /// The usable keys of `set` for a verifier that allows `allowed`, and the entries
    /// skipped (to log them; none is an error).
    ///
    /// A key is pinned to its `alg`; without one, to the only allowed algorithm its key
    /// type fits (`ES256` for P-256, `ES384` for P-384, `EdDSA` for Ed25519, the one
    /// allowed RSA algorithm). The set may come out empty: a verifier built from it
    /// refuses to build, and [`Verifier::rotate_keys`](crate::Verifier::rotate_keys)
    /// refuses it, so the last good keys stay.
    pub fn from_jwks(set: &JwkSet, allowed: &[Algorithm]) -> (KeySet, Vec<SkippedJwk>) {
        // Reading key material goes through jsonwebtoken's process-wide provider, which
        // with both backends compiled in must be chosen before its first use.
        super::ensure_crypto_provider();
        let mut keys = KeySet::new();
        let mut skipped = Vec::new();
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone();
            let loaded = match &kid {
                Some(kid) if keys.keys().iter().any(|k| k.kid() == kid) => {
                    Err(JwkSkip::DuplicateKid)
                }
                Some(kid) => verifying_key(kid, jwk, allowed),
                None => Err(JwkSkip::NoKid),
            };
            match loaded {
                Ok(key) => keys = keys.with(key),
                Err(reason) => skipped.push(SkippedJwk { kid, reason }),
            }
        }
        (keys, skipped)
    }
}

/// One entry as a verifying key, or why not.
fn verifying_key(kid: &str, jwk: &Jwk, allowed: &[Algorithm]) -> Result<VerifyingKey, JwkSkip> {
    usable_for_verifying(jwk)?;
    let alg = algorithm(jwk, allowed)?;
    if !allowed.contains(&alg) {
        return Err(JwkSkip::AlgorithmNotAllowed(alg));
    }
    if !fits(jwk, alg) {
        return Err(JwkSkip::KeyDoesNotFitAlgorithm);
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| JwkSkip::Malformed)?;
    let material = serde_json::to_vec(&jwk.algorithm).map_err(|_| JwkSkip::Malformed)?;
    VerifyingKey::from_decoding_key(kid, alg, key)
        .map(|k| k.with_fingerprint(&material))
        .map_err(|_| JwkSkip::KeyDoesNotFitAlgorithm)
}

/// `use` and `key_ops`, when given, must allow verifying signatures; no symmetric keys.
fn usable_for_verifying(jwk: &Jwk) -> Result<(), JwkSkip> {
    let common = &jwk.common;
    if common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return Err(JwkSkip::NotForSignatures);
    }
    if common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return Err(JwkSkip::NotForVerifying);
    }
    match &jwk.algorithm {
        AlgorithmParameters::OctetKey(_) => Err(JwkSkip::SymmetricKey),
        AlgorithmParameters::Other(_) => Err(JwkSkip::Unsupported),
        _ => Ok(()),
    }
}

/// The entry's algorithm: its `alg`, or the one its key type implies among `allowed`.
fn algorithm(jwk: &Jwk, allowed: &[Algorithm]) -> Result<Algorithm, JwkSkip> {
    if let Some(alg) = jwk.common.key_algorithm {
        return signature_algorithm(alg).ok_or(JwkSkip::Unsupported);
    }
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) => curve_algorithm(&p.curve),
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            Ok(Algorithm::EdDSA)
        }
        AlgorithmParameters::RSA(_) => {
            let mut rsa = allowed
                .iter()
                .filter(|a| a.family() == AlgorithmFamily::Rsa);
            match (rsa.next(), rsa.next()) {
                (Some(alg), None) => Ok(*alg),
                (None, _) => Err(JwkSkip::AlgorithmNotAllowed(Algorithm::RS256)),
                (Some(_), Some(_)) => Err(JwkSkip::AmbiguousAlgorithm),
            }
        }
        _ => Err(JwkSkip::Unsupported),
    }
}

/// The ECDSA algorithm of a curve.
fn curve_algorithm(curve: &EllipticCurve) -> Result<Algorithm, JwkSkip> {
    match curve {
        EllipticCurve::P256 => Ok(Algorithm::ES256),
        EllipticCurve::P384 => Ok(Algorithm::ES384),
        _ => Err(JwkSkip::Unsupported),
    }
}

/// Whether the key's type (and curve) is the one `alg` signs with.
fn fits(jwk: &Jwk, alg: Algorithm) -> bool {
    match &jwk.algorithm {
        AlgorithmParameters::EllipticCurve(p) => curve_algorithm(&p.curve) == Ok(alg),
        AlgorithmParameters::OctetKeyPair(p) => {
            p.curve == EllipticCurve::Ed25519 && alg == Algorithm::EdDSA
        }
        AlgorithmParameters::RSA(_) => alg.family() == AlgorithmFamily::Rsa,
        _ => false,
    }
}

/// A JWK `alg` that names a signature algorithm (not an encryption one).
fn signature_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::HS256 => Algorithm::HS256,
        KeyAlgorithm::HS384 => Algorithm::HS384,
        KeyAlgorithm::HS512 => Algorithm::HS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::EncodingKey;
    use serde_json::{json, Value};

    const EC: &[u8] = include_bytes!("../../tests/keys/ec_private.pem");
    const ED: &[u8] = include_bytes!("../../tests/keys/ed_private.pem");
    const RSA: &[u8] = include_bytes!("../../tests/keys/rsa_private.pem");

    /// The public JWK of a private PEM, with `kid` and the given extra members.
    fn jwk(kid: &str, key: EncodingKey, alg: Algorithm, extra: Value) -> Value {
        super::super::ensure_crypto_provider();
        let mut v = serde_json::to_value(Jwk::from_encoding_key(&key, alg).unwrap()).unwrap();
        let obj = v.as_object_mut().unwrap();
        obj.insert("kid".into(), kid.into());
        for (k, x) in extra.as_object().unwrap() {
            if x.is_null() {
                obj.remove(k);
            } else {
                obj.insert(k.clone(), x.clone());
            }
        }
        v
    }

    fn ec(kid: &str, extra: Value) -> Value {
        jwk(
            kid,
            EncodingKey::from_ec_pem(EC).unwrap(),
            Algorithm::ES256,
            extra,
        )
    }

    fn ed(kid: &str, extra: Value) -> Value {
        jwk(
            kid,
            EncodingKey::from_ed_pem(ED).unwrap(),
            Algorithm::EdDSA,
            extra,
        )
    }

    fn rsa(kid: &str, extra: Value) -> Value {
        jwk(
            kid,
            EncodingKey::from_rsa_pem(RSA).unwrap(),
            Algorithm::RS256,
            extra,
        )
    }

    fn load(keys: Vec<Value>, allowed: &[Algorithm]) -> (KeySet, Vec<SkippedJwk>) {
        let set: JwkSet = serde_json::from_value(json!({ "keys": keys })).unwrap();
        KeySet::from_jwks(&set, allowed)
    }

    fn kids(set: &KeySet) -> Vec<(&str, Algorithm)> {
        set.keys()
            .iter()
            .map(|k| (k.kid(), k.algorithm()))
            .collect()
    }

    const ALL: &[Algorithm] = &[Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256];

    #[test]
    fn usable_keys_load_pinned_to_their_algorithm() {
        let (set, skipped) = load(
            vec![
                ec("e", json!({"use": "sig"})),
                ed("d", json!({"key_ops": ["verify"]})),
                rsa("r", json!({})),
            ],
            ALL,
        );
        assert_eq!(skipped, vec![]);
        assert_eq!(
            kids(&set),
            vec![
                ("e", Algorithm::ES256),
                ("d", Algorithm::EdDSA),
                ("r", Algorithm::RS256)
            ]
        );
    }

    #[test]
    fn without_alg_the_key_type_decides_among_the_allowed() {
        let no_alg = json!({"alg": null});
        let (set, skipped) = load(vec![ec("e", no_alg.clone()), ed("d", no_alg.clone())], ALL);
        assert_eq!(skipped, vec![]);
        assert_eq!(
            kids(&set),
            vec![("e", Algorithm::ES256), ("d", Algorithm::EdDSA)]
        );
        // RSA without alg: only when exactly one RSA algorithm is allowed.
        let (set, _) = load(vec![rsa("r", no_alg.clone())], &[Algorithm::PS256]);
        assert_eq!(kids(&set), vec![("r", Algorithm::PS256)]);
        let (set, skipped) = load(
            vec![rsa("r", no_alg)],
            &[Algorithm::RS256, Algorithm::PS256],
        );
        assert!(set.keys().is_empty());
        assert_eq!(skipped[0].reason, JwkSkip::AmbiguousAlgorithm);
    }

    #[test]
    fn odd_entries_are_skipped_with_their_reason_and_the_rest_load() {
        let (set, skipped) = load(
            vec![
                ec("enc", json!({"use": "enc"})),
                ec("ops", json!({"key_ops": ["sign"]})),
                json!({"kty": "oct", "kid": "secret", "k": "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}),
                ec("p384", json!({"alg": "ES384"})),
                ec("hs", json!({"alg": "HS256"})),
                ed("not-allowed", json!({})),
                ec("broken", json!({"x": "!!!"})),
                ec("twice", json!({})),
                ec("twice", json!({})),
                ec("no-kid", json!({"kid": null})),
                json!({"kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA"}),
                rsa("good", json!({})),
            ],
            &[Algorithm::ES256, Algorithm::ES384, Algorithm::RS256],
        );
        assert_eq!(
            kids(&set),
            vec![("twice", Algorithm::ES256), ("good", Algorithm::RS256)]
        );
        let reasons: Vec<(Option<&str>, &JwkSkip)> = skipped
            .iter()
            .map(|s| (s.kid.as_deref(), &s.reason))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (Some("enc"), &JwkSkip::NotForSignatures),
                (Some("ops"), &JwkSkip::NotForVerifying),
                (Some("secret"), &JwkSkip::SymmetricKey),
                (Some("p384"), &JwkSkip::KeyDoesNotFitAlgorithm),
                (Some("hs"), &JwkSkip::AlgorithmNotAllowed(Algorithm::HS256)),
                (
                    Some("not-allowed"),
                    &JwkSkip::AlgorithmNotAllowed(Algorithm::EdDSA)
                ),
                (Some("broken"), &JwkSkip::Malformed),
                (Some("twice"), &JwkSkip::DuplicateKid),
                (None, &JwkSkip::NoKid),
                (Some("p521"), &JwkSkip::Unsupported),
            ]
        );
    }

    #[test]
    fn an_hmac_alg_never_loads_even_when_allowed() {
        // A published set holds public keys: an HS256 `alg` on a public key is the
        // algorithm-confusion attack (RFC 8725 §2.1), refused whatever the allow-list.
        let (set, skipped) = load(
            vec![ec("hs", json!({"alg": "HS256"}))],
            &[Algorithm::HS256, Algorithm::ES256],
        );
        assert!(set.keys().is_empty());
        assert_eq!(skipped[0].reason, JwkSkip::KeyDoesNotFitAlgorithm);
    }

    #[test]
    fn an_issuer_publishes_what_a_verifier_loads() {
        let now = 1_800_000_000u64;
        for (key, alg) in [
            (
                crate::SigningKey::ed_pem("k", ED).unwrap(),
                Algorithm::EdDSA,
            ),
            (
                crate::SigningKey::ec_pem("k", Algorithm::ES256, EC).unwrap(),
                Algorithm::ES256,
            ),
            (
                crate::SigningKey::rsa_pem("k", Algorithm::RS256, RSA).unwrap(),
                Algorithm::RS256,
            ),
        ] {
            // The RFC 7638 thumbprint as kid, as replicas would derive it.
            let kid = key.thumbprint().unwrap();
            assert_eq!(kid.len(), 43, "{alg:?}: SHA-256, base64url without padding");
            let key = match alg {
                Algorithm::EdDSA => crate::SigningKey::ed_pem(kid.clone(), ED),
                Algorithm::ES256 => crate::SigningKey::ec_pem(kid.clone(), alg, EC),
                _ => crate::SigningKey::rsa_pem(kid.clone(), alg, RSA),
            }
            .unwrap();
            let issuer = crate::Issuer::builder()
                .issuer("https://auth.test")
                .audience("https://api.test")
                .signing_key(key)
                .clock(crate::ManualClock::new(now))
                .build()
                .unwrap();
            let published = issuer.jwks();
            let text = serde_json::to_string(&published).unwrap();
            assert!(
                !text.contains("\"d\""),
                "{alg:?}: no private part in {text}"
            );
            let (keys, skipped) = KeySet::from_jwks(&published, &[alg]);
            assert_eq!(skipped, vec![]);
            assert_eq!(kids(&keys), vec![(kid.as_str(), alg)]);
            let verifier = crate::Verifier::builder()
                .issuer("https://auth.test")
                .audience("https://api.test")
                .algorithms([alg])
                .keys(keys)
                .build()
                .unwrap();
            let token = issuer
                .issue_access(&crate::Grant::new("alice"))
                .unwrap()
                .token;
            assert_eq!(verifier.verify(&token, now).unwrap().claims.sub(), "alice");
        }
        // An HMAC issuer publishes nothing: its secret has no public half.
        let hmac = crate::SigningKey::hmac("h", Algorithm::HS256, &[7; 32]).unwrap();
        assert_eq!(hmac.public_jwk(), None);
        assert_eq!(hmac.thumbprint(), None);
    }

    #[test]
    fn a_token_signed_by_the_providers_key_verifies_with_the_published_one() {
        let (keys, _) = load(vec![ec("idp-1", json!({}))], ALL);
        let verifier = crate::Verifier::builder()
            .issuer("https://idp.test")
            .audience("https://api.test")
            .algorithms([Algorithm::ES256])
            .keys(keys)
            .build()
            .unwrap();
        let mut header = jsonwebtoken::Header::new(Algorithm::ES256);
        header.kid = Some("idp-1".into());
        header.typ = Some("at+jwt".into());
        let now = 1_800_000_000u64;
        let claims = json!({"iss": "https://idp.test", "aud": "https://api.test",
            "sub": "alice", "iat": now, "exp": now + 300, "jti": "j1"});
        let token =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ec_pem(EC).unwrap()).unwrap();
        let verified = verifier.verify(&token, now).unwrap();
        assert_eq!(verified.claims.sub(), "alice");
    }
}
