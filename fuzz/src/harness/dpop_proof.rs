//! Target `dpop_proof`: `dpop::check_values` on arbitrary `DPoP` header bytes (and an
//! arbitrary access token for `ath`, an arbitrary nonce), on edited genuine proofs, and on
//! proofs with arbitrary header and claims bytes that carry a *correct* signature (so
//! the checks behind the signature are reached).
//!
//! The genuine proofs are built here, by hand, and signed with RustCrypto's `p256` 0.14
//! and `ed25519-dalek` 3, not with tower-stepup.
//!
//! Oracles:
//! - no panic; the same answer twice; a value over the length bound is `TooLong`, one with a
//!   comma `Malformed`, two values `Multiple`;
//! - an edited genuine proof never passes unless the edits gave back the same string;
//! - what passes really is what RFC 9449 §4.3 asks, read again here with `serde_json` and
//!   checked with the independent signature crates: `typ` `dpop+jwt`, `alg` ES256 or EdDSA
//!   with a public `jwk` of its type and a signature that verifies with it, `jti` of 1 to
//!   256 bytes, `htm` and `htu` of the request, `iat` in the window, `ath` the token's
//!   hash, the nonce when one is expected, `jkt` the RFC 7638 thumbprint computed here;
//! - `use_dpop_nonce` only when a nonce is expected.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::Signer as _;
use http::Method;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tower_stepup::dpop::{check_values, CheckedProof, DpopConfig, DpopError, Expected, Htu};

use super::fixture::T0;
use super::input::{mutate, Input};

/// The request URL every proof is checked against.
pub const URL: &str = "https://api.fuzz/me";
/// The access token the genuine proofs' `ath` hashes.
pub const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2ln";
/// The nonce the genuine proofs carry when asked to.
pub const NONCE: &str = "n-1";

/// The two keys proofs are signed with: ES256 (index 0) and Ed25519 (index 1).
pub enum Key {
    /// ES256.
    Es256(p256::ecdsa::SigningKey),
    /// EdDSA.
    Ed(ed25519_dalek::SigningKey),
}

impl Key {
    /// Key `i` (0: ES256, otherwise Ed25519), from a fixed seed.
    pub fn get(i: usize) -> Self {
        if i == 0 {
            Key::Es256(p256::ecdsa::SigningKey::from_slice(&[7; 32]).expect("p256 key"))
        } else {
            Key::Ed(ed25519_dalek::SigningKey::from_bytes(&[9; 32]))
        }
    }

    fn alg(&self) -> &'static str {
        match self {
            Key::Es256(_) => "ES256",
            Key::Ed(_) => "EdDSA",
        }
    }

    /// The public JWK, written by hand.
    pub fn jwk(&self) -> String {
        match self {
            Key::Es256(k) => {
                let point = k.verifying_key().to_sec1_point(false);
                let b = point.as_bytes();
                format!(
                    r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}"}}"#,
                    URL_SAFE_NO_PAD.encode(&b[1..33]),
                    URL_SAFE_NO_PAD.encode(&b[33..65])
                )
            }
            Key::Ed(k) => format!(
                r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
                URL_SAFE_NO_PAD.encode(k.verifying_key().to_bytes())
            ),
        }
    }

    fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Key::Es256(k) => {
                let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(k, message);
                sig.to_bytes().to_vec()
            }
            Key::Ed(k) => k.sign(message).to_bytes().to_vec(),
        }
    }

    /// The proof header of this key.
    pub fn header(&self) -> String {
        format!(
            r#"{{"typ":"dpop+jwt","alg":"{}","jwk":{}}}"#,
            self.alg(),
            self.jwk()
        )
    }
}

/// A compact JWS of exactly these bytes, signed by `key`.
pub fn sign(key: &Key, header: &[u8], payload: &[u8]) -> String {
    let mut out = URL_SAFE_NO_PAD.encode(header);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(payload, &mut out);
    let sig = key.sign(out.as_bytes());
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut out);
    out
}

fn b64_sha256(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(s.as_bytes()))
}

/// The claims of a genuine `GET` proof at `T0` for [`TOKEN`], with [`NONCE`] if asked.
pub fn claims(with_nonce: bool) -> String {
    let nonce = if with_nonce {
        format!(r#","nonce":"{NONCE}""#)
    } else {
        String::new()
    };
    format!(
        r#"{{"jti":"j-1","htm":"GET","htu":"{URL}","iat":{T0},"ath":"{}"{nonce}}}"#,
        b64_sha256(TOKEN)
    )
}

/// A genuine proof by key `i`.
pub fn genuine(i: usize, with_nonce: bool) -> String {
    let key = Key::get(i);
    sign(&key, key.header().as_bytes(), claims(with_nonce).as_bytes())
}

/// Times around `T0` and the window's edges.
fn time(input: &mut Input<'_>) -> u64 {
    match input.choose(8) {
        0 | 1 => T0,
        2 => T0 + u64::from(input.byte() % 16),
        3 => T0 - 64 + u64::from(input.byte() % 8),
        4 => T0.saturating_sub(u64::from(input.u16())),
        5 => input.u64(),
        6 => 0,
        _ => u64::MAX - u64::from(input.byte()),
    }
}

/// `template` with a range replaced by a chunk of the input.
fn splice(template: &str, input: &mut Input<'_>) -> Vec<u8> {
    let mut bytes = template.as_bytes().to_vec();
    let at = usize::from(input.u16()) % (bytes.len() + 1);
    let cut = (usize::from(input.byte() % 32)).min(bytes.len() - at);
    let with = input.chunk();
    bytes.splice(at..at + cut, with.iter().copied());
    bytes
}

/// One fuzz input. Returns the answer for the (main) proof.
pub fn run(data: &[u8]) -> Result<CheckedProof, DpopError> {
    let mut input = Input::new(data);
    let config = DpopConfig::default();
    let url = Htu::parse(URL).expect("the fixture URL");
    let mode = input.choose(4);
    let now = time(&mut input);
    let token = match input.choose(3) {
        0 => None,
        1 => Some(TOKEN.to_owned()),
        _ => Some(input.text()),
    };
    let nonce = match input.choose(3) {
        0 => None,
        1 => Some(NONCE.to_owned()),
        _ => Some(input.text()),
    };
    let method = if input.byte() % 4 == 3 {
        Method::POST
    } else {
        Method::GET
    };
    let expected = Expected {
        method: &method,
        url: &url,
        access_token: token.as_deref(),
        nonce: nonce.as_deref(),
        now,
    };
    let answer = |value: &[u8]| {
        let got = check_values(&config, [value], &expected);
        assert_eq!(
            got,
            check_values(&config, [value], &expected),
            "a second answer"
        );
        got
    };
    let (value, got): (Vec<u8>, _) = match mode {
        0 => {
            // Arbitrary bytes.
            let value = input.rest().to_vec();
            let got = answer(&value);
            if value.len() > config.max_proof_len() {
                assert_eq!(got, Err(DpopError::TooLong));
            } else if value.contains(&b',') {
                assert_eq!(got, Err(DpopError::Malformed));
            }
            (value, got)
        }
        1 => {
            // A genuine proof, edited.
            let original = genuine(input.choose(2), input.byte() & 1 == 1);
            let edited = mutate(&original, &mut input, 4);
            let got = answer(edited.as_bytes());
            if edited != original {
                assert!(
                    got.is_err(),
                    "an edited proof passed: {edited:?} -> {got:?}"
                );
            }
            (edited.into_bytes(), got)
        }
        2 => {
            // Any header and claims, correctly signed.
            let key = Key::get(input.choose(2));
            let header = match input.choose(4) {
                0 | 1 => key.header().into_bytes(),
                2 => splice(&key.header(), &mut input),
                _ => input.chunk().to_vec(),
            };
            let with_nonce = input.byte() & 1 == 1;
            let payload = match input.choose(4) {
                0 | 1 => claims(with_nonce).into_bytes(),
                2 => splice(&claims(with_nonce), &mut input),
                _ => input.long_chunk(2048).to_vec(),
            };
            let proof = sign(&key, &header, &payload);
            let got = answer(proof.as_bytes());
            (proof.into_bytes(), got)
        }
        _ => {
            // Two values: never accepted, whatever they are.
            let first = genuine(0, false);
            let second = input.rest().to_vec();
            let got = check_values(&config, [first.as_bytes(), &second[..]], &expected);
            assert_eq!(got, Err(DpopError::Multiple));
            return got;
        }
    };
    match &got {
        Ok(ok) => passed(&value, ok, &expected),
        Err(e) => assert!(
            !e.is_nonce_error() || expected.nonce.is_some(),
            "use_dpop_nonce without a nonce expected"
        ),
    }
    got
}

fn part(value: &str, i: usize) -> Vec<u8> {
    let p = value.split('.').nth(i).expect("three parts");
    URL_SAFE_NO_PAD.decode(p).expect("base64url")
}

/// What passed is what RFC 9449 §4.3 asks, checked here independently.
fn passed(value: &[u8], ok: &CheckedProof, expected: &Expected<'_>) {
    let value = std::str::from_utf8(value).expect("an accepted proof is text");
    assert_eq!(value.split('.').count(), 3);
    let header: Value = serde_json::from_slice(&part(value, 0)).expect("header JSON");
    let claims: Value = serde_json::from_slice(&part(value, 1)).expect("claims JSON");
    let signature = part(value, 2);
    assert_eq!(header["typ"], "dpop+jwt");
    assert!(header.get("crit").is_none());
    let jwk = header["jwk"].as_object().expect("a jwk");
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        assert!(!jwk.contains_key(private), "a private jwk member {private}");
    }
    let s = |v: &Value| v.as_str().expect("a string").to_owned();
    let signing_input = value.rsplit_once('.').expect("a signature").0;
    let tp_input = match header["alg"].as_str() {
        Some("ES256") => {
            assert_eq!(
                (s(&jwk["kty"]), s(&jwk["crv"])),
                ("EC".into(), "P-256".into())
            );
            let (x, y) = (s(&jwk["x"]), s(&jwk["y"]));
            let mut point = vec![4u8];
            point.extend(URL_SAFE_NO_PAD.decode(&x).expect("x"));
            point.extend(URL_SAFE_NO_PAD.decode(&y).expect("y"));
            let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point).expect("a P-256 point");
            let sig = p256::ecdsa::Signature::from_slice(&signature).expect("r||s");
            p256::ecdsa::signature::Verifier::verify(&key, signing_input.as_bytes(), &sig)
                .expect("the signature verifies");
            format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#)
        }
        Some("EdDSA") => {
            assert_eq!(
                (s(&jwk["kty"]), s(&jwk["crv"])),
                ("OKP".into(), "Ed25519".into())
            );
            let x = s(&jwk["x"]);
            let bytes: [u8; 32] = URL_SAFE_NO_PAD
                .decode(&x)
                .expect("x")
                .try_into()
                .expect("32 bytes");
            let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes).expect("an Ed25519 key");
            let sig = ed25519_dalek::Signature::from_slice(&signature).expect("64 bytes");
            key.verify_strict(signing_input.as_bytes(), &sig)
                .expect("the signature verifies");
            format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#)
        }
        other => panic!("accepted alg {other:?}"),
    };
    assert_eq!(
        ok.jkt,
        b64_sha256(&tp_input),
        "jkt is the RFC 7638 thumbprint"
    );
    let jti = s(&claims["jti"]);
    assert!(!jti.is_empty() && jti.len() <= 256);
    assert_eq!(ok.jti, jti);
    assert_eq!(s(&claims["htm"]), expected.method.as_str());
    assert_eq!(
        Htu::parse(&s(&claims["htu"])).as_ref(),
        Ok(expected.url),
        "htu is the request URL"
    );
    let iat = claims["iat"].as_u64().expect("an integer iat");
    assert_eq!(ok.iat, iat);
    assert!(
        iat.saturating_add(60) >= expected.now && iat <= expected.now.saturating_add(5),
        "iat in the window"
    );
    assert_eq!(ok.expires_at, iat.saturating_add(61));
    if let Some(token) = expected.access_token {
        assert_eq!(s(&claims["ath"]), b64_sha256(token));
    }
    if let Some(nonce) = expected.nonce {
        assert_eq!(s(&claims["nonce"]), nonce);
    }
}
