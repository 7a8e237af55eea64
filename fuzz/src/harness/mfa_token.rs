//! Target `mfa_token`: `Sealer::open` on arbitrary strings, on edited genuine tokens, on
//! round trips of arbitrary claims through `seal`, and on JWEs with arbitrary header and
//! plaintext bytes encrypted under the real keys (so the parsing behind the
//! authentication tag is reached).
//!
//! Oracles:
//! - no panic; a token over `MAX_MFA_TOKEN_LEN` is `Malformed`;
//! - an edited genuine token never opens unless the edits gave back the same string;
//! - `seal` then `open` gives back the claims (or `TooLarge`, only for a long token);
//! - anything opened is sound: our header (`dir`, `A256GCM`, our `typ`, a known `kid`),
//!   its plaintext is exactly the claims returned, and it has not expired.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use tower_stepup::challenge::{MfaTokenClaims, OpenError, SealError, MAX_MFA_TOKEN_LEN};
use tower_stepup::Sealer;

use super::fixture::{self, jwe_header, mfa_claims_json, T0};
use super::input::{mutate, Input};

fn time(input: &mut Input<'_>) -> u64 {
    match input.choose(6) {
        0..=2 => T0,
        3 => T0 + u64::from(input.u16() % 700),
        4 => input.u64(),
        _ => u64::MAX,
    }
}

/// A genuine token of the fixture's keys, deterministic (fixed IV), opened at [`T0`].
pub fn genuine(kid_old: bool) -> String {
    let (key, kid) = if kid_old {
        (&fixture::OLD_SEAL_KEY, fixture::OLD_SEAL_KID)
    } else {
        (&fixture::SEAL_KEY, fixture::SEAL_KID)
    };
    fixture::seal_raw(
        key,
        jwe_header(kid).as_bytes(),
        [7; 12],
        mfa_claims_json(T0 + 300).as_bytes(),
    )
}

/// One fuzz input. Returns whether the token opened.
pub fn run(data: &[u8]) -> bool {
    let mut input = Input::new(data);
    let sealer = fixture::sealer();
    let now = time(&mut input);
    match input.choose(5) {
        0 => {
            let token = String::from_utf8_lossy(input.rest()).into_owned();
            open(&sealer, &token, now).is_ok()
        }
        1 => {
            let original = genuine(input.byte() & 1 == 1);
            let edited = mutate(&original, &mut input, 4);
            let got = open(&sealer, &edited, now);
            if edited == original {
                assert_eq!(got, sealer.open(&original, now));
            } else {
                assert!(
                    got.is_err(),
                    "an edited mfa_token opened: {edited:?} -> {got:?}"
                );
            }
            got.is_ok()
        }
        2 => round_trip(&sealer, &mut input, now),
        _ => {
            // Any header and plaintext, encrypted under a real key.
            let header: Vec<u8> = match input.choose(4) {
                0 | 1 => jwe_header(fixture::SEAL_KID).into_bytes(),
                2 => jwe_header(&input.text()).into_bytes(),
                _ => input.chunk().to_vec(),
            };
            let plaintext: Vec<u8> = match input.choose(3) {
                0 => input.long_chunk(3000).to_vec(),
                _ => {
                    let template = mfa_claims_json(T0 + 300);
                    let t = template.as_bytes();
                    let from = usize::from(input.u16()) % t.len();
                    let to = (from + usize::from(input.byte() % 48)).min(t.len());
                    let mut out = t[..from].to_vec();
                    out.extend_from_slice(input.chunk());
                    out.extend_from_slice(&t[to..]);
                    out
                }
            };
            let mut iv = [0u8; 12];
            iv.copy_from_slice(&{
                let mut b = input.take(12).to_vec();
                b.resize(12, 0);
                b
            });
            let key = match input.choose(8) {
                0 => [1; 32],
                1 => fixture::OLD_SEAL_KEY,
                _ => fixture::SEAL_KEY,
            };
            let token = fixture::seal_raw(&key, &header, iv, &plaintext);
            let got = open(&sealer, &token, now);
            if key == [1; 32] {
                assert!(got.is_err(), "a token under an unknown key opened");
            }
            if let Ok(claims) = got {
                // The plaintext is exactly what came back.
                let parsed: MfaTokenClaims =
                    serde_json::from_slice(&plaintext).expect("opened plaintext parses");
                assert_eq!(parsed, claims);
                return true;
            }
            false
        }
    }
}

/// Arbitrary claims through `seal` and back; whether they came back.
fn round_trip(sealer: &Sealer, input: &mut Input<'_>, now: u64) -> bool {
    let mut claims: Value = serde_json::from_str(&mfa_claims_json(T0 + 300)).expect("template");
    for _ in 0..input.choose(4) {
        let field = input.pick(&["sub", "sid", "method", "path", "jti", "scope"]);
        claims[field] = Value::String(if input.byte() & 1 == 0 {
            input.text()
        } else {
            String::from_utf8_lossy(input.long_chunk(4000)).into_owned()
        });
    }
    if input.byte() & 1 == 1 {
        claims["exp"] = Value::from(input.u64());
    }
    if input.byte() & 1 == 1 {
        claims["amr"] = Value::from(vec![input.text(), input.text()]);
    }
    let claims: MfaTokenClaims = serde_json::from_value(claims).expect("claims from JSON");
    match sealer.seal(&claims) {
        Ok(token) => {
            assert!(token.len() <= MAX_MFA_TOKEN_LEN);
            let opened = open(sealer, &token, now);
            if now < claims.exp {
                assert_eq!(opened, Ok(claims), "round trip");
                true
            } else {
                assert_eq!(opened, Err(OpenError::Expired));
                false
            }
        }
        Err(SealError::TooLarge) => {
            let json = serde_json::to_vec(&claims).expect("serialize");
            // base64 of the payload alone is past the limit, give or take the header.
            assert!(
                json.len() * 4 / 3 > MAX_MFA_TOKEN_LEN - 200,
                "TooLarge for a small token"
            );
            false
        }
        Err(e) => panic!("sealing failed: {e}"),
    }
}

/// Opens `token` and checks the answer's soundness.
pub fn open(sealer: &Sealer, token: &str, now: u64) -> Result<MfaTokenClaims, OpenError> {
    let got = sealer.open(token, now);
    if token.len() > MAX_MFA_TOKEN_LEN {
        assert_eq!(got, Err(OpenError::Malformed));
    }
    if let Ok(claims) = &got {
        assert!(now < claims.exp, "an expired mfa_token opened");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 5, "{token}");
        assert!(parts[1].is_empty(), "a JWE with an encrypted key opened");
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).expect("header b64"))
                .expect("header JSON");
        assert_eq!(header["alg"], "dir");
        assert_eq!(header["enc"], "A256GCM");
        assert_eq!(header["typ"], tower_stepup::challenge::MFA_TOKEN_TYP);
        assert!(
            header["kid"] == fixture::SEAL_KID || header["kid"] == fixture::OLD_SEAL_KID,
            "{header}"
        );
    }
    got
}
