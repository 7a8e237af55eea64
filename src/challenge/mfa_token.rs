//! The step-up `mfa_token`: a JWE (RFC 7516) in compact form, `alg: dir`, `enc: A256GCM`.
//!
//! ```text
//! BASE64URL(header) . "" . BASE64URL(iv) . BASE64URL(ciphertext) . BASE64URL(tag)
//! header = {"alg":"dir","enc":"A256GCM","kid":"…","typ":"stepup-mfa+jwt"}
//! AAD    = ASCII(BASE64URL(header))
//! ```
//!
//! The payload (sub, sid, the unmet requirement, the method and path that asked, jti, iat,
//! exp) is encrypted and authenticated: the client can neither read nor change it.

use std::fmt;
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{is_header_param_safe, ConfigError};
use crate::policy::StepUp;
use crate::random::{self, RandomError};

/// `typ` header of mfa_tokens.
pub const MFA_TOKEN_TYP: &str = "stepup-mfa+jwt";

/// `typ` header of the sealed remembered-device cookie (`complete`'s
/// `remember_device`): sealed by the same keys, but never opened as an mfa_token, nor an
/// mfa_token as a device cookie (the `typ` is in the authenticated header).
pub const DEVICE_TYP: &str = "stepup-device+jwt";

/// Longest mfa_token [`Sealer::open`] looks at, in bytes.
pub const MAX_MFA_TOKEN_LEN: usize = 4 * 1024;

const IV_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// A 256-bit AES-GCM key with its `kid`. The key bytes are wiped from memory on drop and
/// never printed.
#[derive(Clone)]
pub struct SealingKey {
    kid: String,
    key: Zeroizing<[u8; 32]>,
}

impl SealingKey {
    /// A key from 32 secret bytes. Derive them from a CSPRNG or a KDF, never a password.
    pub fn new(kid: impl Into<String>, key: [u8; 32]) -> Result<Self, ConfigError> {
        let kid = kid.into();
        if kid.is_empty() || !is_header_param_safe(&kid) {
            return Err(ConfigError::invalid(
                "sealing key id",
                "printable ASCII, not empty",
            ));
        }
        Ok(Self {
            kid,
            key: Zeroizing::new(key),
        })
    }

    /// A key from standard base64 of 32 bytes.
    pub fn from_base64(kid: impl Into<String>, b64: &str) -> Result<Self, ConfigError> {
        let kid = kid.into();
        let bytes = Zeroizing::new(STANDARD.decode(b64.trim()).map_err(|_| ConfigError::Key {
            kid: kid.clone(),
            reason: "not standard base64".to_owned(),
        })?);
        let key: [u8; 32] = bytes.as_slice().try_into().map_err(|_| ConfigError::Key {
            kid: kid.clone(),
            reason: "a sealing key is exactly 32 bytes".to_owned(),
        })?;
        Self::new(kid, key)
    }

    /// A fresh random key.
    pub fn generate(kid: impl Into<String>) -> Result<Self, ConfigError> {
        let mut key = Zeroizing::new([0u8; 32]);
        random::fill(key.as_mut_slice())
            .map_err(|e| ConfigError::invalid("sealing key", e.to_string()))?;
        Self::new(kid, *key)
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

impl fmt::Debug for SealingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealingKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The sealing keys in force: one that seals new tokens, and older ones still accepted
/// for opening while their tokens live (at most the mfa_token TTL after a rotation).
#[derive(Clone, Debug)]
pub struct SealingKeys {
    current: SealingKey,
    accepted: Vec<SealingKey>,
}

impl SealingKeys {
    /// `current` seals and opens.
    pub fn new(current: SealingKey) -> Self {
        Self {
            current,
            accepted: Vec::new(),
        }
    }

    /// `key` opens tokens but seals none (a retiring key).
    pub fn accept(mut self, key: SealingKey) -> Self {
        self.accepted.push(key);
        self
    }

    fn compile(&self) -> Result<Ciphers, ConfigError> {
        let mut all: Vec<(String, Aes256Gcm)> = Vec::with_capacity(1 + self.accepted.len());
        for key in std::iter::once(&self.current).chain(&self.accepted) {
            if all.iter().any(|(kid, _)| *kid == key.kid) {
                return Err(ConfigError::DuplicateKid(key.kid.clone()));
            }
            let cipher = Aes256Gcm::new_from_slice(key.key.as_slice())
                .map_err(|_| ConfigError::invalid("sealing key", "wrong length"))?;
            all.push((key.kid.clone(), cipher));
        }
        let header = |typ: &str| {
            serde_json::to_vec(&JweHeader {
                alg: "dir".to_owned(),
                enc: "A256GCM".to_owned(),
                kid: self.current.kid.clone(),
                typ: typ.to_owned(),
            })
            .map(|json| URL_SAFE_NO_PAD.encode(json))
            .map_err(|e| ConfigError::invalid("sealing key", e.to_string()))
        };
        Ok(Ciphers {
            current_header: header(MFA_TOKEN_TYP)?,
            device_header: header(DEVICE_TYP)?,
            all,
        })
    }
}

struct Ciphers {
    /// base64url of the protected header naming the current key; also the AAD.
    current_header: String,
    /// The same for [`DEVICE_TYP`].
    device_header: String,
    /// The current key first.
    all: Vec<(String, Aes256Gcm)>,
}

impl Ciphers {
    /// The current header of `typ` ([`MFA_TOKEN_TYP`] or [`DEVICE_TYP`]).
    fn header(&self, typ: &str) -> Option<&str> {
        match typ {
            MFA_TOKEN_TYP => Some(&self.current_header),
            DEVICE_TYP => Some(&self.device_header),
            _ => None,
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct JweHeader {
    alg: String,
    enc: String,
    kid: String,
    typ: String,
}

/// What an mfa_token binds. Only the server that holds the sealing key can read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct MfaTokenClaims {
    /// The user who must complete the challenge.
    pub sub: String,
    /// The session of the access token that was refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The requirement the access token failed.
    pub requirement: StepUp,
    /// The method of the refused request.
    pub method: String,
    /// The path of the refused request (without the query).
    pub path: String,
    /// Unique id: the store marks it used, so each mfa_token completes once.
    pub jti: String,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
    /// The `scope` of the refused access token, carried into the stepped-up one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The `amr` of the refused access token; the stepped-up one adds to it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// The DPoP key (RFC 7638 thumbprint) the refused access token was bound to
    /// (`cnf.jkt`): the mfa_token is redeemed only with a proof of that key, and the
    /// stepped-up token is bound to it too. `None` for a bearer session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
}

/// Why an mfa_token could not be sealed. A server fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// No randomness for the IV.
    #[error(transparent)]
    Random(#[from] RandomError),
    /// Encryption or serialisation failed.
    #[error("sealing failed")]
    Encrypt,
    /// The token would be longer than [`MAX_MFA_TOKEN_LEN`] (a very long bound path), so
    /// it could never be opened.
    #[error("mfa_token too large")]
    TooLarge,
}

/// Why an mfa_token was not accepted. Everything but [`OpenError::Expired`] is an invalid
/// token (`400 mfa_token_invalid`); `Expired` is `401 mfa_token_expired`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Not five base64url parts, too long, or not the expected JSON.
    #[error("malformed mfa_token")]
    Malformed,
    /// The header names another algorithm, encryption or `typ`.
    #[error("not an mfa_token")]
    WrongKind,
    /// No sealing key with this `kid` (never issued here, or retired).
    #[error("unknown sealing key")]
    UnknownKey,
    /// Authentication failed: the token was changed, or sealed under another key.
    #[error("mfa_token failed authentication")]
    Tampered,
    /// A genuine mfa_token, past its `exp`.
    #[error("mfa_token expired")]
    Expired,
}

impl OpenError {
    /// Whether the token was genuine but expired.
    pub fn is_expired(self) -> bool {
        self == OpenError::Expired
    }
}

/// Seals and opens mfa_tokens. Cheap to clone; clones share keys, so
/// [`rotate_keys`](Sealer::rotate_keys) reaches every clone.
#[derive(Clone)]
pub struct Sealer {
    ciphers: Arc<RwLock<Arc<Ciphers>>>,
}

impl Sealer {
    /// A sealer with these keys.
    pub fn new(keys: SealingKeys) -> Result<Self, ConfigError> {
        Ok(Self {
            ciphers: Arc::new(RwLock::new(Arc::new(keys.compile()?))),
        })
    }

    /// Replaces the keys of this sealer and all its clones. Keep the previous key among
    /// the accepted ones until the tokens it sealed have expired.
    pub fn rotate_keys(&self, keys: SealingKeys) -> Result<(), ConfigError> {
        let compiled = Arc::new(keys.compile()?);
        *self
            .ciphers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = compiled;
        Ok(())
    }

    fn ciphers(&self) -> Arc<Ciphers> {
        self.ciphers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Seals `claims` under the current key.
    pub fn seal(&self, claims: &MfaTokenClaims) -> Result<String, SealError> {
        let buf = serde_json::to_vec(claims).map_err(|_| SealError::Encrypt)?;
        self.seal_payload(MFA_TOKEN_TYP, buf)
    }

    /// Seals the JSON of `value` as a token of kind `typ` ([`DEVICE_TYP`]): the same JWE
    /// form and keys as an mfa_token, told apart by the authenticated `typ`.
    #[cfg(feature = "server")]
    pub(crate) fn seal_json<T: Serialize>(
        &self,
        typ: &'static str,
        value: &T,
    ) -> Result<String, SealError> {
        let buf = serde_json::to_vec(value).map_err(|_| SealError::Encrypt)?;
        self.seal_payload(typ, buf)
    }

    /// Opens a token of kind `typ` sealed by [`seal_json`](Self::seal_json): its JSON
    /// read back (no time check: the caller checks the expiry its type carries).
    #[cfg(feature = "server")]
    pub(crate) fn open_json<T: serde::de::DeserializeOwned>(
        &self,
        typ: &'static str,
        token: &str,
    ) -> Result<T, OpenError> {
        let buf = self.open_payload(typ, token)?;
        serde_json::from_slice(&buf).map_err(|_| OpenError::Malformed)
    }

    fn seal_payload(&self, typ: &str, mut buf: Vec<u8>) -> Result<String, SealError> {
        let ciphers = self.ciphers();
        let header = ciphers.header(typ).ok_or(SealError::Encrypt)?;
        let (_, cipher) = ciphers.all.first().ok_or(SealError::Encrypt)?;
        let mut iv = [0u8; IV_LEN];
        random::fill(&mut iv)?;
        let tag = cipher
            .encrypt_in_place_detached(&Nonce::from(iv), header.as_bytes(), &mut buf)
            .map_err(|_| SealError::Encrypt)?;
        let mut out = String::with_capacity(header.len() + buf.len() * 4 / 3 + 48);
        out.push_str(header);
        out.push_str("..");
        URL_SAFE_NO_PAD.encode_string(iv, &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(&buf, &mut out);
        out.push('.');
        URL_SAFE_NO_PAD.encode_string(tag, &mut out);
        if out.len() > MAX_MFA_TOKEN_LEN {
            return Err(SealError::TooLarge);
        }
        Ok(out)
    }

    /// Opens `token` at time `now`: checks form, kind, key and integrity, then expiry.
    pub fn open(&self, token: &str, now: u64) -> Result<MfaTokenClaims, OpenError> {
        let buf = self.open_payload(MFA_TOKEN_TYP, token)?;
        let claims: MfaTokenClaims =
            serde_json::from_slice(&buf).map_err(|_| OpenError::Malformed)?;
        if now >= claims.exp {
            return Err(OpenError::Expired);
        }
        Ok(claims)
    }

    /// The authenticated plaintext of `token`, a JWE of kind `typ`.
    fn open_payload(&self, typ: &str, token: &str) -> Result<Vec<u8>, OpenError> {
        if token.len() > MAX_MFA_TOKEN_LEN {
            return Err(OpenError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(header_b64), Some(encrypted_key), Some(iv), Some(ciphertext), Some(tag), None) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next(),
        ) else {
            return Err(OpenError::Malformed);
        };
        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| OpenError::Malformed)?;
        let header: JweHeader =
            serde_json::from_slice(&header_json).map_err(|_| OpenError::Malformed)?;
        if header.alg != "dir"
            || header.enc != "A256GCM"
            || header.typ != typ
            || !encrypted_key.is_empty()
        {
            return Err(OpenError::WrongKind);
        }
        let iv: [u8; IV_LEN] = decode_exact(iv)?;
        let tag: [u8; TAG_LEN] = decode_exact(tag)?;
        let mut buf = URL_SAFE_NO_PAD
            .decode(ciphertext)
            .map_err(|_| OpenError::Malformed)?;
        let ciphers = self.ciphers();
        let (_, cipher) = ciphers
            .all
            .iter()
            .find(|(kid, _)| *kid == header.kid)
            .ok_or(OpenError::UnknownKey)?;
        cipher
            .decrypt_in_place_detached(
                &Nonce::from(iv),
                header_b64.as_bytes(),
                &mut buf,
                &Tag::from(tag),
            )
            .map_err(|_| OpenError::Tampered)?;
        Ok(buf)
    }
}

fn decode_exact<const N: usize>(part: &str) -> Result<[u8; N], OpenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| OpenError::Malformed)?;
    bytes
        .as_slice()
        .try_into()
        .map_err(|_| OpenError::Malformed)
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<String> = self.ciphers().all.iter().map(|(k, _)| k.clone()).collect();
        f.debug_struct("Sealer").field("kids", &kids).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn claims(exp: u64) -> MfaTokenClaims {
        MfaTokenClaims {
            sub: "alice".into(),
            sid: Some("s1".into()),
            requirement: StepUp::new().amr(["mfa"]).max_age(Duration::from_secs(300)),
            method: "GET".into(),
            path: "/api/billing".into(),
            jti: "j1".into(),
            iat: 1000,
            exp,
            scope: None,
            amr: vec!["pwd".into()],
            jkt: None,
        }
    }

    fn key(kid: &str, byte: u8) -> SealingKey {
        SealingKey::new(kid, [byte; 32]).unwrap()
    }

    #[test]
    fn sealed_token_opens_to_the_same_claims_and_hides_them() {
        let sealer = Sealer::new(SealingKeys::new(key("k1", 1))).unwrap();
        let token = sealer.seal(&claims(1300)).unwrap();
        assert_eq!(token.split('.').count(), 5);
        assert!(!token.contains("alice"));
        let payload = token.split('.').nth(3).unwrap();
        assert!(
            !String::from_utf8_lossy(&URL_SAFE_NO_PAD.decode(payload).unwrap()).contains("alice")
        );
        assert_eq!(sealer.open(&token, 1299).unwrap(), claims(1300));
    }

    #[cfg(feature = "server")]
    #[test]
    fn a_device_token_and_an_mfa_token_never_open_as_each_other() {
        #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
        struct Device {
            sub: String,
            exp: u64,
        }
        let sealer = Sealer::new(SealingKeys::new(key("k1", 1))).unwrap();
        let device = Device {
            sub: "alice".into(),
            exp: 5000,
        };
        let sealed = sealer.seal_json(DEVICE_TYP, &device).unwrap();
        assert_eq!(sealer.open_json::<Device>(DEVICE_TYP, &sealed), Ok(device));
        assert!(!sealed.contains("alice"));
        assert_eq!(sealer.open(&sealed, 1000), Err(OpenError::WrongKind));
        let mfa = sealer.seal(&claims(1300)).unwrap();
        assert_eq!(
            sealer.open_json::<Device>(DEVICE_TYP, &mfa),
            Err(OpenError::WrongKind)
        );
        // The typ is authenticated: a device token relabelled as an mfa_token fails.
        let parts: Vec<&str> = sealed.split('.').collect();
        let relabelled = format!(
            "{}.{}",
            sealer
                .seal(&claims(1300))
                .unwrap()
                .split('.')
                .next()
                .unwrap(),
            parts[1..].join(".")
        );
        assert_eq!(sealer.open(&relabelled, 1000), Err(OpenError::Tampered));
    }

    #[test]
    fn expired_is_told_apart_from_invalid() {
        let sealer = Sealer::new(SealingKeys::new(key("k1", 1))).unwrap();
        let token = sealer.seal(&claims(1300)).unwrap();
        assert_eq!(sealer.open(&token, 1300), Err(OpenError::Expired));
        assert!(sealer.open(&token, 1300).unwrap_err().is_expired());
    }

    #[test]
    fn any_changed_byte_is_tampering() {
        let sealer = Sealer::new(SealingKeys::new(key("k1", 1))).unwrap();
        let token = sealer.seal(&claims(1300)).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        for (i, expected) in [
            (2, OpenError::Tampered),
            (3, OpenError::Tampered),
            (4, OpenError::Tampered),
        ] {
            let mut bytes = URL_SAFE_NO_PAD.decode(parts[i]).unwrap();
            bytes[0] ^= 1;
            let mut changed = parts.clone();
            let enc = URL_SAFE_NO_PAD.encode(&bytes);
            changed[i] = &enc;
            assert_eq!(
                sealer.open(&changed.join("."), 1000),
                Err(expected),
                "part {i}"
            );
        }
        // A re-encoded header with the same meaning is a different AAD: tampering too.
        let header = URL_SAFE_NO_PAD.decode(parts[0]).unwrap();
        let mut spaced = header.clone();
        spaced.insert(1, b' ');
        let enc = URL_SAFE_NO_PAD.encode(&spaced);
        let mut changed = parts.clone();
        changed[0] = &enc;
        assert_eq!(
            sealer.open(&changed.join("."), 1000),
            Err(OpenError::Tampered)
        );
    }

    #[test]
    fn wrong_kind_and_malformed_tokens_are_invalid() {
        let sealer = Sealer::new(SealingKeys::new(key("k1", 1))).unwrap();
        for bad in [
            "",
            "a.b.c",
            "a.b.c.d.e",
            "....",
            &"x".repeat(MAX_MFA_TOKEN_LEN + 1),
        ] {
            assert_eq!(
                sealer.open(bad, 1000),
                Err(OpenError::Malformed),
                "{bad:.20}"
            );
        }
        let header = URL_SAFE_NO_PAD
            .encode(r#"{"alg":"dir","enc":"A128GCM","kid":"k1","typ":"stepup-mfa+jwt"}"#);
        let token = sealer.seal(&claims(1300)).unwrap();
        let rest = token.split_once('.').unwrap().1;
        assert_eq!(
            sealer.open(&format!("{header}.{rest}"), 1000),
            Err(OpenError::WrongKind)
        );
        let jwt_typ =
            URL_SAFE_NO_PAD.encode(r#"{"alg":"dir","enc":"A256GCM","kid":"k1","typ":"at+jwt"}"#);
        assert_eq!(
            sealer.open(&format!("{jwt_typ}.{rest}"), 1000),
            Err(OpenError::WrongKind)
        );
    }

    #[test]
    fn rotation_keeps_old_tokens_while_the_old_key_is_accepted() {
        let sealer = Sealer::new(SealingKeys::new(key("k1", 1))).unwrap();
        let old = sealer.seal(&claims(1300)).unwrap();
        sealer
            .rotate_keys(SealingKeys::new(key("k2", 2)).accept(key("k1", 1)))
            .unwrap();
        assert_eq!(sealer.open(&old, 1000).unwrap().sub, "alice");
        let new = sealer.seal(&claims(1300)).unwrap();
        assert!(URL_SAFE_NO_PAD
            .decode(new.split('.').next().unwrap())
            .map(|h| String::from_utf8(h).unwrap().contains("\"k2\""))
            .unwrap());
        // Retire k1: its tokens die.
        sealer.rotate_keys(SealingKeys::new(key("k2", 2))).unwrap();
        assert_eq!(sealer.open(&old, 1000), Err(OpenError::UnknownKey));
        assert!(sealer.open(&new, 1000).is_ok());
    }

    #[test]
    fn a_token_under_a_different_key_with_the_same_kid_fails_authentication() {
        let a = Sealer::new(SealingKeys::new(key("k1", 1))).unwrap();
        let b = Sealer::new(SealingKeys::new(key("k1", 9))).unwrap();
        let token = a.seal(&claims(1300)).unwrap();
        assert_eq!(b.open(&token, 1000), Err(OpenError::Tampered));
    }

    #[test]
    fn a_token_that_could_not_be_opened_is_never_sealed() {
        let sealer = Sealer::new(SealingKeys::new(key("k1", 1))).unwrap();
        let mut long = claims(1300);
        long.path = format!("/{}", "a".repeat(MAX_MFA_TOKEN_LEN));
        assert!(matches!(sealer.seal(&long), Err(SealError::TooLarge)));
        long.path = format!("/{}", "a".repeat(2000));
        let token = sealer.seal(&long).unwrap();
        assert_eq!(sealer.open(&token, 1000).unwrap().path.len(), 2001);
    }

    #[test]
    fn keys_are_never_printed() {
        let k = SealingKey::from_base64("k1", &STANDARD.encode([7u8; 32])).unwrap();
        assert!(!format!("{k:?}").contains('7'));
        assert!(SealingKey::from_base64("k1", &STANDARD.encode([7u8; 31])).is_err());
    }
}
