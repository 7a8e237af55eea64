//! The fixed configuration every target uses: keys, tokens, a guard, an issuer, and a
//! way to drive futures without a runtime.

use std::future::Future;
use std::task::{Context, Poll, Waker};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sha2::{Digest, Sha256};
use tower_stepup::{
    Algorithm, Guard, Issuer, ManualClock, Sealer, SealingKey, SealingKeys, SigningKey, Verifier,
    VerifyingKey,
};

/// The fixture's "now".
pub const T0: u64 = 1_800_000_000;
/// `iss` of every token.
pub const ISS: &str = "https://auth.fuzz";
/// `aud` of access tokens.
pub const AUD: &str = "https://api.fuzz";
/// The HS256 secret behind `KID`.
pub const HMAC_KEY: [u8; 32] = [42; 32];
/// The verifying key's id.
pub const KID: &str = "k1";
/// The current sealing key.
pub const SEAL_KEY: [u8; 32] = [9; 32];
/// Its id.
pub const SEAL_KID: &str = "s1";
/// A retired sealing key that still opens tokens.
pub const OLD_SEAL_KEY: [u8; 32] = [8; 32];
/// Its id.
pub const OLD_SEAL_KID: &str = "s0";
/// The guard's session cookie.
pub const COOKIE: &str = "sess";
/// Access token lifetime (the issuer's default).
pub const ACCESS_TTL: u64 = 900;
/// The verifier's leeway (the default).
pub const LEEWAY: u64 = 5;

/// Polls `fut` to completion without a runtime. Nothing the harness drives waits on
/// I/O, so every future is ready after a few polls; one that is not is a finding.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..1_000 {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
    }
    panic!("a future stayed pending although nothing here waits on I/O");
}

/// A verifier for the fixture's key; `cache` entries (0: no cache).
pub fn verifier(cache: usize) -> Verifier {
    Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([Algorithm::HS256])
        .key(VerifyingKey::hmac(KID, Algorithm::HS256, &HMAC_KEY).expect("hmac key"))
        .cache(cache)
        .build()
        .expect("verifier")
}

/// The sealer: `s1` seals, `s0` still opens.
pub fn sealer() -> Sealer {
    Sealer::new(
        SealingKeys::new(SealingKey::new(SEAL_KID, SEAL_KEY).expect("sealing key"))
            .accept(SealingKey::new(OLD_SEAL_KID, OLD_SEAL_KEY).expect("old sealing key")),
    )
    .expect("sealer")
}

/// A guard on `clock` that also reads the `sess` cookie.
pub fn guard(clock: &ManualClock, cache: usize) -> Guard {
    Guard::builder()
        .verifier(verifier(cache))
        .sealer(sealer())
        .clock(clock.clone())
        .cookie(COOKIE)
        .realm("fuzz")
        .build()
        .expect("guard")
}

/// An issuer on `clock`, signing with the fixture's key.
pub fn issuer(clock: &ManualClock) -> Issuer {
    Issuer::builder()
        .issuer(ISS)
        .audience(AUD)
        .signing_key(SigningKey::hmac(KID, Algorithm::HS256, &HMAC_KEY).expect("signing key"))
        .clock(clock.clone())
        .build()
        .expect("issuer")
}

/// The tokens every target starts from, issued at [`T0`]. Signed here with fixed claims
/// (the [`Issuer`] adds a random `jti`), so every fuzz input replays exactly.
pub struct Tokens {
    /// alice, password only, scope `me`, session `sid-pwd`.
    pub access_pwd: String,
    /// alice after a second factor, scope `me billing:read`, acr `urn:gold`.
    pub access_mfa: String,
    /// bob, no `sid`, no `auth_time`, no scope.
    pub access_bare: String,
    /// alice's partial token (password accepted, second factor outstanding).
    pub partial: String,
    /// An access token that expired long before [`T0`].
    pub access_expired: String,
}

/// The JOSE header of an access token.
pub const ACCESS_HEADER: &str = r#"{"typ":"at+jwt","alg":"HS256","kid":"k1"}"#;
/// The JOSE header of a partial token.
pub const PARTIAL_HEADER: &str = r#"{"typ":"stepup-partial+jwt","alg":"HS256","kid":"k1"}"#;

impl Tokens {
    /// The tokens, signed once per process (they are constants).
    pub fn shared() -> &'static Tokens {
        static TOKENS: std::sync::OnceLock<Tokens> = std::sync::OnceLock::new();
        TOKENS.get_or_init(Tokens::issue)
    }

    /// The claims of every fixture token that is an access token, with its `exp`, as
    /// the verifier reads them (verified once per process, at time 0).
    pub fn access_claims() -> &'static [tower_stepup::Claims] {
        static CLAIMS: std::sync::OnceLock<Vec<tower_stepup::Claims>> = std::sync::OnceLock::new();
        CLAIMS.get_or_init(|| {
            let v = verifier(0);
            Tokens::shared()
                .all()
                .iter()
                .filter_map(|t| v.verify(t, 0).ok())
                .filter(|v| v.kind == tower_stepup::token::TokenKind::Access)
                .map(|v| v.claims)
                .collect()
        })
    }

    /// Signs them.
    pub fn issue() -> Self {
        let sign = |header: &str, payload: String| {
            sign_hs256(&HMAC_KEY, header.as_bytes(), payload.as_bytes())
        };
        let exp = T0 + ACCESS_TTL;
        let access_pwd = sign(
            ACCESS_HEADER,
            format!(
                r#"{{"sub":"alice","iss":"{ISS}","aud":"{AUD}","exp":{exp},"iat":{T0},"jti":"j-pwd","sid":"sid-pwd","scope":"me","amr":["pwd"],"auth_time":{T0}}}"#
            ),
        );
        let access_mfa = sign(
            ACCESS_HEADER,
            format!(
                r#"{{"sub":"alice","iss":"{ISS}","aud":["{AUD}"],"exp":{exp},"iat":{T0},"jti":"j-mfa","sid":"sid-mfa","scope":"me billing:read","acr":"urn:gold","amr":["pwd","otp","mfa"],"auth_time":{T0}}}"#
            ),
        );
        let access_bare = sign(
            ACCESS_HEADER,
            format!(r#"{{"sub":"bob","iss":"{ISS}","aud":"{AUD}","exp":{exp}}}"#),
        );
        let partial = sign(
            PARTIAL_HEADER,
            format!(
                r#"{{"sub":"alice","iss":"{ISS}","aud":"{}","exp":{},"iat":{T0},"jti":"j-partial","amr":["pwd"]}}"#,
                tower_stepup::token::DEFAULT_PARTIAL_AUDIENCE,
                T0 + 300
            ),
        );
        let access_expired = sign(
            ACCESS_HEADER,
            format!(
                r#"{{"sub":"alice","iss":"{ISS}","aud":"{AUD}","exp":{},"iat":{},"jti":"j-old","sid":"sid-old","amr":["pwd"],"auth_time":{}}}"#,
                T0 - 9_000,
                T0 - 10_000,
                T0 - 10_000
            ),
        );
        Self {
            access_pwd,
            access_mfa,
            access_bare,
            partial,
            access_expired,
        }
    }

    /// All of them, the three unexpired access tokens first.
    pub fn all(&self) -> [&str; 5] {
        [
            &self.access_pwd,
            &self.access_mfa,
            &self.access_bare,
            &self.partial,
            &self.access_expired,
        ]
    }
}

/// HMAC-SHA256 (RFC 2104), so the harness can sign headers and payloads of its choice
/// with the fixture's key.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(Sha256::digest(key).as_slice());
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    let outer = Sha256::new()
        .chain_update(&opad)
        .chain_update(inner.as_slice())
        .finalize();
    let mut out = [0u8; 32];
    out.copy_from_slice(outer.as_slice());
    out
}

/// A compact JWS of exactly these header and payload bytes, signed HS256 with `key`.
pub fn sign_hs256(key: &[u8], header: &[u8], payload: &[u8]) -> String {
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut token);
    let sig = hmac_sha256(key, token.as_bytes());
    token.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut token);
    token
}

/// A compact JWE (`dir`, A256GCM) of exactly these header and plaintext bytes under
/// `key` and `iv`: what [`Sealer`] opens, with any header and payload the harness wants.
pub fn seal_raw(key: &[u8; 32], header: &[u8], iv: [u8; 12], plaintext: &[u8]) -> String {
    let header_b64 = URL_SAFE_NO_PAD.encode(header);
    let cipher = Aes256Gcm::new_from_slice(key).expect("aes key");
    let mut buf = plaintext.to_vec();
    let tag = cipher
        .encrypt_in_place_detached(&Nonce::from(iv), header_b64.as_bytes(), &mut buf)
        .expect("encrypt");
    let mut out = header_b64;
    out.push_str("..");
    URL_SAFE_NO_PAD.encode_string(iv, &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(&buf, &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(tag, &mut out);
    out
}

/// The protected header the sealer writes for key `kid`.
pub fn jwe_header(kid: &str) -> String {
    format!(r#"{{"alg":"dir","enc":"A256GCM","kid":"{kid}","typ":"stepup-mfa+jwt"}}"#)
}

/// A plausible mfa_token payload for alice, expiring at `exp`.
pub fn mfa_claims_json(exp: u64) -> String {
    format!(
        r#"{{"sub":"alice","sid":"sid-pwd","requirement":{{"amr":["mfa"],"max_age":300}},"method":"GET","path":"/billing","jti":"j-1","iat":{},"exp":{exp},"scope":"me","amr":["pwd"]}}"#,
        exp.saturating_sub(300)
    )
}
