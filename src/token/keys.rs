//! Signing and verifying keys, chosen by `kid`.

use std::fmt;

use jsonwebtoken::jwk::{Jwk, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use zeroize::Zeroizing;

use crate::error::ConfigError;

/// Smallest HMAC secret accepted for each HMAC algorithm, in bytes: the size of the hash
/// output, as RFC 7518 §3.2 requires.
fn min_hmac_len(alg: Algorithm) -> Option<usize> {
    match alg {
        Algorithm::HS256 => Some(32),
        Algorithm::HS384 => Some(48),
        Algorithm::HS512 => Some(64),
        _ => None,
    }
}

fn key_err(kid: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        kid: kid.to_owned(),
        reason: reason.into(),
    }
}

// The rules every key obeys, signing or verifying: one place each.

/// An HMAC key needs an HMAC algorithm and a secret at least as long as its hash output.
fn check_hmac(kid: &str, alg: Algorithm, secret_len: usize) -> Result<(), ConfigError> {
    let min = min_hmac_len(alg).ok_or_else(|| key_err(kid, "not an HMAC algorithm"))?;
    if secret_len < min {
        return Err(key_err(
            kid,
            format!("HMAC secret shorter than {min} bytes"),
        ));
    }
    Ok(())
}

/// A key serves only the algorithms of its own family (no HMAC keyed with a public key).
fn check_family(kid: &str, alg: Algorithm, family: AlgorithmFamily) -> Result<(), ConfigError> {
    if family != alg.family() {
        return Err(key_err(kid, format!("key does not fit algorithm {alg:?}")));
    }
    Ok(())
}

/// A PEM that did not parse, as a [`ConfigError::Key`].
fn parsed_pem<K>(kid: &str, parsed: jsonwebtoken::errors::Result<K>) -> Result<K, ConfigError> {
    parsed.map_err(|e| key_err(kid, e.to_string()))
}

/// A key that verifies signatures, pinned to one algorithm.
///
/// # Security
/// A key verifies tokens of its own algorithm only: a token that names `HS256` is never
/// checked against an RSA or EC public key, whatever its `kid` says (the "HMAC keyed with a
/// public key" confusion, RFC 8725 §2.1).
#[derive(Clone)]
pub struct VerifyingKey {
    kid: String,
    alg: Algorithm,
    key: DecodingKey,
    /// A digest of the key material, to tell whether a replaced set still holds this
    /// very key (`None`: unknown, taken as changed).
    fingerprint: Option<[u8; 32]>,
}

/// SHA-256 of the bytes a key was made from.
fn fingerprint(material: &[u8]) -> Option<[u8; 32]> {
    use sha2::Digest;
    Some(sha2::Sha256::digest(material).into())
}

impl VerifyingKey {
    /// An HMAC secret (`HS256`, `HS384`, `HS512`). The secret must be at least as long as the
    /// hash output (32, 48 or 64 bytes).
    pub fn hmac(
        kid: impl Into<String>,
        alg: Algorithm,
        secret: &[u8],
    ) -> Result<Self, ConfigError> {
        let kid = kid.into();
        check_hmac(&kid, alg, secret.len())?;
        Ok(Self {
            key: DecodingKey::from_secret(secret),
            kid,
            alg,
            fingerprint: fingerprint(secret),
        })
    }

    /// An RSA public key in PEM (`RS256`/`RS384`/`RS512`/`PS256`/`PS384`/`PS512`).
    pub fn rsa_pem(
        kid: impl Into<String>,
        alg: Algorithm,
        pem: &[u8],
    ) -> Result<Self, ConfigError> {
        let kid = kid.into();
        let key = parsed_pem(&kid, DecodingKey::from_rsa_pem(pem))?;
        Self::from_decoding_key(kid, alg, key).map(|k| k.with_fingerprint(pem))
    }

    /// An EC public key in PEM (`ES256` with P-256, `ES384` with P-384).
    pub fn ec_pem(kid: impl Into<String>, alg: Algorithm, pem: &[u8]) -> Result<Self, ConfigError> {
        let kid = kid.into();
        let key = parsed_pem(&kid, DecodingKey::from_ec_pem(pem))?;
        Self::from_decoding_key(kid, alg, key).map(|k| k.with_fingerprint(pem))
    }

    /// An Ed25519 public key in PEM (`EdDSA`).
    pub fn ed_pem(kid: impl Into<String>, pem: &[u8]) -> Result<Self, ConfigError> {
        let kid = kid.into();
        let key = parsed_pem(&kid, DecodingKey::from_ed_pem(pem))?;
        Self::from_decoding_key(kid, Algorithm::EdDSA, key).map(|k| k.with_fingerprint(pem))
    }

    /// Any `jsonwebtoken` key (from a JWK, DER, components). Its family must fit `alg`.
    pub fn from_decoding_key(
        kid: impl Into<String>,
        alg: Algorithm,
        key: DecodingKey,
    ) -> Result<Self, ConfigError> {
        let kid = kid.into();
        check_family(&kid, alg, key.family())?;
        if key.family() == AlgorithmFamily::Hmac {
            let len = key.try_get_as_bytes().map(<[u8]>::len).unwrap_or(0);
            check_hmac(&kid, alg, len)?;
        }
        Ok(Self {
            kid,
            alg,
            key,
            fingerprint: None,
        })
    }

    /// The same key, known to be made from `material` (a PEM, a JWK's parameters).
    pub(crate) fn with_fingerprint(mut self, material: &[u8]) -> Self {
        self.fingerprint = fingerprint(material);
        self
    }

    /// Whether `other` is this very key: the same `kid`, algorithm and key material.
    fn same_as(&self, other: &VerifyingKey) -> bool {
        self.kid == other.kid
            && self.alg == other.alg
            && self.fingerprint.is_some()
            && self.fingerprint == other.fingerprint
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The one algorithm this key verifies.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub(crate) fn decoding_key(&self) -> &DecodingKey {
        &self.key
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The verifying keys in force at one time, chosen by the token's `kid`.
///
/// Hold the old and the new key together while tokens signed by the old one are still
/// alive, then drop the old one: rotation without downtime. Replace a running verifier's
/// keys with [`Verifier::rotate_keys`](crate::Verifier::rotate_keys).
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
}

impl KeySet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a key. `kid`s must be unique (checked when the verifier is built).
    pub fn with(mut self, key: VerifyingKey) -> Self {
        self.keys.push(key);
        self
    }

    /// The keys, in the order they were added.
    pub fn keys(&self) -> &[VerifyingKey] {
        &self.keys
    }

    /// Whether the set holds this very key (same `kid`, algorithm and material).
    pub(crate) fn contains(&self, key: &VerifyingKey) -> bool {
        self.keys.iter().any(|k| k.same_as(key))
    }

    /// The key for a token's `kid`. A token without `kid` is accepted only while the set
    /// holds exactly one key.
    pub(crate) fn select(&self, kid: Option<&str>) -> Option<&VerifyingKey> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid == kid),
            None => match self.keys.as_slice() {
                [only] => Some(only),
                _ => None,
            },
        }
    }

    pub(crate) fn validate(&self, allowed: &[Algorithm]) -> Result<(), ConfigError> {
        if self.keys.is_empty() {
            return Err(ConfigError::Missing("at least one verifying key"));
        }
        for (i, key) in self.keys.iter().enumerate() {
            if !allowed.contains(&key.alg) {
                return Err(ConfigError::AlgorithmNotAllowed(key.alg));
            }
            if self
                .keys
                .iter()
                .skip(i + 1)
                .any(|other| other.kid == key.kid)
            {
                return Err(ConfigError::DuplicateKid(key.kid.clone()));
            }
        }
        Ok(())
    }
}

/// A key that signs tokens, with the `kid` written into their header.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
}

impl SigningKey {
    /// An HMAC secret; at least as long as the hash output.
    pub fn hmac(
        kid: impl Into<String>,
        alg: Algorithm,
        secret: &[u8],
    ) -> Result<Self, ConfigError> {
        let kid = kid.into();
        check_hmac(&kid, alg, secret.len())?;
        Ok(Self {
            key: EncodingKey::from_secret(secret),
            kid,
            alg,
        })
    }

    /// An RSA private key in PEM.
    pub fn rsa_pem(
        kid: impl Into<String>,
        alg: Algorithm,
        pem: &[u8],
    ) -> Result<Self, ConfigError> {
        let kid = kid.into();
        let key = parsed_pem(&kid, EncodingKey::from_rsa_pem(pem))?;
        Self::checked(kid, alg, key)
    }

    /// An EC private key in PKCS#8 PEM.
    pub fn ec_pem(kid: impl Into<String>, alg: Algorithm, pem: &[u8]) -> Result<Self, ConfigError> {
        let kid = kid.into();
        let key = parsed_pem(&kid, EncodingKey::from_ec_pem(pem))?;
        Self::checked(kid, alg, key)
    }

    /// An Ed25519 private key in PKCS#8 PEM.
    pub fn ed_pem(kid: impl Into<String>, pem: &[u8]) -> Result<Self, ConfigError> {
        let kid = kid.into();
        let key = parsed_pem(&kid, EncodingKey::from_ed_pem(pem))?;
        Self::checked(kid, Algorithm::EdDSA, key)
    }

    /// An Ed25519 private key from its 32-byte seed (the private key of RFC 8032 §5.1.5):
    /// the same seed gives the same key, so replicas that share a secret derive one key
    /// (and, with [`with_thumbprint_kid`](Self::with_thumbprint_kid), one `kid`).
    ///
    /// # Security
    /// The seed is the private key: derive it from a secret with a hash and a
    /// domain-separation label of your own (never reuse raw key bytes across purposes).
    ///
    /// ```
    /// use tower_stepup::SigningKey;
    ///
    /// # fn main() -> Result<(), tower_stepup::ConfigError> {
    /// let key = SigningKey::ed25519_from_seed("k1", &[7; 32])?.with_thumbprint_kid()?;
    /// assert_eq!(key.kid().len(), 43); // base64url of a SHA-256
    /// # Ok(())
    /// # }
    /// ```
    pub fn ed25519_from_seed(kid: impl Into<String>, seed: &[u8; 32]) -> Result<Self, ConfigError> {
        let kid = kid.into();
        let der = ed25519_pkcs8_v1(seed);
        let key = Self::checked(kid, Algorithm::EdDSA, EncodingKey::from_ed_der(&der))?;
        // `from_ed_der` takes the bytes as they are; deriving the public half proves the
        // backend reads them.
        key.derived_jwk()?;
        Ok(key)
    }

    /// The same key, its `kid` replaced by its RFC 7638 thumbprint
    /// ([`thumbprint`](Self::thumbprint)), which every holder of the key computes alike.
    /// An error for an HMAC secret, which has no public half to take a thumbprint of.
    pub fn with_thumbprint_kid(mut self) -> Result<Self, ConfigError> {
        let jwk = self.derived_jwk()?;
        self.kid = jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| key_err(&self.kid, format!("no thumbprint: {e}")))?;
        Ok(self)
    }

    /// The key that verifies this key's signatures: the public half (from its JWK), or
    /// for an HMAC secret the secret itself. Same `kid` and algorithm.
    pub fn verifying_key(&self) -> Result<VerifyingKey, ConfigError> {
        if self.key.family() == AlgorithmFamily::Hmac {
            return VerifyingKey::hmac(self.kid.clone(), self.alg, self.key.as_bytes());
        }
        let jwk = self.derived_jwk()?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| key_err(&self.kid, e.to_string()))?;
        // The same fingerprint a verifier gives the key when it reads the published JWKS.
        let material =
            serde_json::to_vec(&jwk.algorithm).map_err(|e| key_err(&self.kid, e.to_string()))?;
        Ok(
            VerifyingKey::from_decoding_key(self.kid.clone(), self.alg, key)?
                .with_fingerprint(&material),
        )
    }

    /// The public JWK, or why there is none.
    fn derived_jwk(&self) -> Result<Jwk, ConfigError> {
        if self.key.family() == AlgorithmFamily::Hmac {
            return Err(key_err(&self.kid, "an HMAC secret has no public half"));
        }
        super::ensure_crypto_provider();
        let mut jwk = Jwk::from_encoding_key(&self.key, self.alg)
            .map_err(|e| key_err(&self.kid, format!("no public key: {e}")))?;
        jwk.common.key_id = Some(self.kid.clone());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(jwk)
    }

    fn checked(kid: String, alg: Algorithm, key: EncodingKey) -> Result<Self, ConfigError> {
        check_family(&kid, alg, key.family())?;
        Ok(Self { kid, alg, key })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The algorithm it signs with.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    pub(crate) fn encoding_key(&self) -> &EncodingKey {
        &self.key
    }

    /// The public half as a JSON Web Key (with `kid`, `alg` and `use: sig`), to publish
    /// in a JWKS; `None` for an HMAC secret, which has no public half.
    pub fn public_jwk(&self) -> Option<Jwk> {
        self.derived_jwk().ok()
    }

    /// The RFC 7638 SHA-256 thumbprint of the public key (base64url): a `kid` every
    /// replica derives alike from the same key. `None` for an HMAC secret.
    pub fn thumbprint(&self) -> Option<String> {
        self.public_jwk()?.thumbprint(ThumbprintHash::SHA256).ok()
    }
}

/// The PKCS#8 v1 DER of an Ed25519 private key (RFC 8410 §7, RFC 5958):
/// `SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING seed } }`.
fn ed25519_pkcs8_v1(seed: &[u8; 32]) -> Zeroizing<Vec<u8>> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, // SEQUENCE, 46 bytes
        0x02, 0x01, 0x00, // INTEGER 0: version v1
        0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, // AlgorithmIdentifier: id-Ed25519
        0x04, 0x22, 0x04, 0x20, // privateKey: OCTET STRING { CurvePrivateKey OCTET STRING }
    ];
    let mut der = Zeroizing::new(Vec::with_capacity(PREFIX.len() + seed.len()));
    der.extend_from_slice(&PREFIX);
    der.extend_from_slice(seed);
    der
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}
