//! The check of one DPoP proof, RFC 9449 §4.3 steps 1–12 (the single use of `jti` and the
//! `cnf.jkt` binding are the caller's: it stores `jti` until `expires_at` and compares
//! `jkt`).

use std::borrow::Cow;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::{DecodeSliceError, Engine as _};
use jsonwebtoken::Algorithm;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::DpopError;
use super::htu;
use super::jwk::RawJwk;
use super::{CheckedProof, DpopConfig, Expected, MAX_JTI_LEN};
use http::Method;

/// The `typ` of a DPoP proof (RFC 9449 §4.2).
const TYP: &str = "dpop+jwt";

#[derive(serde::Deserialize)]
struct Header<'a> {
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(borrow)]
    alg: Cow<'a, str>,
    #[serde(borrow, default)]
    jwk: Option<RawJwk<'a>>,
    #[serde(default)]
    crit: super::jwk::Present,
}

#[derive(serde::Deserialize)]
struct Claims<'a> {
    #[serde(borrow, default)]
    jti: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    htm: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    htu: Option<Cow<'a, str>>,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(borrow, default)]
    ath: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    nonce: Option<Cow<'a, str>>,
}

/// The algorithm an `alg` value names, among those a DPoP proof can use at all.
pub(crate) fn asymmetric(alg: &str) -> Option<Algorithm> {
    match alg {
        "ES256" => Some(Algorithm::ES256),
        "ES384" => Some(Algorithm::ES384),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// Signature length of each algorithm (raw `r‖s` for ECDSA, RFC 7518 §3.4).
fn signature_len(alg: Algorithm) -> usize {
    match alg {
        Algorithm::ES384 => 96,
        _ => 64,
    }
}

/// A character of a compact JWS: base64url, and `.` between the parts.
fn is_jws_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// The longest signature (ES384).
const MAX_SIGNATURE_LEN: usize = 96;

fn decode(part: &str) -> Result<Vec<u8>, DpopError> {
    if part.is_empty() {
        return Err(DpopError::Malformed);
    }
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| DpopError::Malformed)
}

/// The length of the signature `part` decodes to, as [`decode`] would find it, without
/// keeping the bytes: the backend takes the signature as base64url and decodes it
/// itself.
fn signature_len_of(part: &str) -> Result<usize, DpopError> {
    if part.is_empty() {
        return Err(DpopError::Malformed);
    }
    // Room for a few bytes more than the longest signature: a longer one is refused
    // anyway, once it is known to be base64url.
    let mut buf = [0u8; MAX_SIGNATURE_LEN + 3];
    match URL_SAFE_NO_PAD.decode_slice(part, &mut buf) {
        Ok(n) => Ok(n),
        Err(DecodeSliceError::OutputSliceTooSmall) => decode(part).map(|s| s.len()),
        Err(DecodeSliceError::DecodeError(_)) => Err(DpopError::Malformed),
    }
}

/// [`Expected`], with the URL as the string of its normal form (which the layer can build
/// without normalizing a URL that is in normal form already).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Request<'a> {
    pub(crate) method: &'a Method,
    /// In normal form ([`htu::normalize`]'s).
    pub(crate) url: &'a str,
    pub(crate) access_token: Option<&'a str>,
    pub(crate) nonce: Option<&'a str>,
    pub(crate) now: u64,
}

impl<'a> From<&Expected<'a>> for Request<'a> {
    fn from(expected: &Expected<'a>) -> Self {
        Self {
            method: expected.method,
            url: expected.url.as_str(),
            access_token: expected.access_token,
            nonce: expected.nonce,
            now: expected.now,
        }
    }
}

pub(crate) fn check_one(
    config: &DpopConfig,
    value: &[u8],
    expected: &Request<'_>,
) -> Result<CheckedProof, DpopError> {
    // Step 2: a well-formed compact JWS, within bounds.
    if value.len() > config.max_proof_len {
        return Err(DpopError::TooLong);
    }
    // Every byte, without stopping at the first bad one (at most `max_proof_len`): the
    // compiler makes this loop branch-free and vectorized.
    if !value.iter().fold(true, |ok, &b| ok & is_jws_char(b)) {
        return Err(DpopError::Malformed);
    }
    let proof = std::str::from_utf8(value).map_err(|_| DpopError::Malformed)?;
    let mut parts = proof.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DpopError::Malformed);
    };
    let header_json = decode(header_b64)?;
    let payload_json = decode(payload_b64)?;
    let signature_bytes = signature_len_of(signature_b64)?;

    // Steps 4, 5, 7: typ, an allowed asymmetric alg, a public jwk that fits it.
    let header: Header<'_> =
        serde_json::from_slice(&header_json).map_err(|_| DpopError::InvalidHeader)?;
    if header.typ.as_deref() != Some(TYP) {
        return Err(DpopError::WrongType);
    }
    let alg = asymmetric(&header.alg)
        .filter(|a| config.algorithms.contains(a))
        .ok_or(DpopError::AlgorithmNotAllowed)?;
    if header.crit.0 {
        return Err(DpopError::Critical);
    }
    let jwk = header
        .jwk
        .as_ref()
        .ok_or(DpopError::MissingJwk)?
        .public_key_for(alg)?;

    // Step 6: the signature, with that key.
    if signature_bytes != signature_len(alg) {
        return Err(DpopError::InvalidSignature);
    }
    crate::token::ensure_crypto_provider();
    let key = jwk.decoding_key();
    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    let signing_input = value.get(..signing_input_len).ok_or(DpopError::Malformed)?;
    // An error here is a key the backend refuses (a point not on its curve): aws-lc-rs
    // reports it as a failed verification, RustCrypto as an error; both are refusals.
    let verified =
        jsonwebtoken::crypto::verify(signature_b64, signing_input, &key, alg).unwrap_or(false);
    if !verified {
        return Err(DpopError::InvalidSignature);
    }

    // Step 3 (required claims) and 8–12.
    let claims: Claims<'_> =
        serde_json::from_slice(&payload_json).map_err(|_| DpopError::InvalidClaims)?;
    let jti = claims.jti.ok_or(DpopError::MissingClaim("jti"))?;
    let htm = claims.htm.ok_or(DpopError::MissingClaim("htm"))?;
    let htu = claims.htu.ok_or(DpopError::MissingClaim("htu"))?;
    let iat = claims.iat.ok_or(DpopError::MissingClaim("iat"))?;
    if jti.is_empty() || jti.len() > MAX_JTI_LEN {
        return Err(DpopError::InvalidJti);
    }
    if htm != expected.method.as_str() {
        return Err(DpopError::WrongMethod);
    }
    // `expected.url` is in normal form, and normalizing a URL in normal form changes
    // nothing: a claim spelled exactly like it needs no normalizing to be equal.
    if htu != expected.url {
        match htu::normalize(&htu) {
            Ok(normalized) if normalized == expected.url => {}
            _ => return Err(DpopError::WrongUrl),
        }
    }
    if iat.saturating_add(config.max_age) < expected.now {
        return Err(DpopError::TooOld);
    }
    if iat > expected.now.saturating_add(config.future_leeway) {
        return Err(DpopError::IssuedInFuture);
    }
    if let Some(token) = expected.access_token {
        let ath = claims.ath.ok_or(DpopError::MissingClaim("ath"))?;
        // base64url of the 32-byte hash: 43 characters, written here, not allocated.
        let mut want = [0u8; 43];
        let matches = URL_SAFE_NO_PAD
            .encode_slice(Sha256::digest(token.as_bytes()), &mut want)
            .is_ok_and(|n| n == want.len() && bool::from(ath.as_bytes().ct_eq(&want)));
        if !matches {
            return Err(DpopError::WrongAth);
        }
    }
    if let Some(want) = expected.nonce {
        let nonce = claims.nonce.as_deref().ok_or(DpopError::MissingNonce)?;
        if !bool::from(nonce.as_bytes().ct_eq(want.as_bytes())) {
            return Err(DpopError::WrongNonce);
        }
    }

    Ok(CheckedProof {
        jkt: jwk.thumbprint(),
        jti: jti.into_owned(),
        iat,
        // One second past the last one the window accepts: a store forgets a `jti` at
        // `expires_at` (it is live while `expires_at > now`), so a proof accepted in
        // the window's last second is still remembered then.
        expires_at: iat.saturating_add(config.max_age).saturating_add(1),
        nonce: claims.nonce.map(Cow::into_owned),
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_signature_length_is_what_decoding_finds() {
        // Around and far past the stack buffer, canonical or not, every length modulo 4.
        for len in 0..=300 {
            for tail in ["", "B", "Q", "_", "AB"] {
                let part = format!("{}{tail}", "A".repeat(len));
                assert_eq!(
                    signature_len_of(&part),
                    decode(&part).map(|s| s.len()),
                    "{part}"
                );
            }
        }
    }

    proptest! {
        // What lets `check_one` take a claim spelled exactly like the expected URL
        // without normalizing it.
        #[test]
        fn normalizing_a_normalized_url_changes_nothing(
            scheme in "(?i)https?",
            host in "(\\[[0-9a-fA-F:]{1,6}\\]|([a-zA-Z0-9.~!$&'()*+,;=-]|%[0-9a-fA-F]{2}){1,8})",
            port in "(:0{0,2}[0-9]{0,5})?",
            path in "(/|\\.|\\.\\.|%2[eEfF5]|%4[1aA]|%7[eE]|%3[fF]|[aZ0~_:@!-]|\\?|#){0,16}",
        ) {
            let url = format!("{scheme}://{host}{port}{path}");
            if let Ok(once) = htu::normalize(&url) {
                prop_assert_eq!(htu::normalize(&once).ok(), Some(once.clone()), "{}", url);
            }
        }
    }
}
