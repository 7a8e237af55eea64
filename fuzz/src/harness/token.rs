//! Target `token`: `Verifier::verify` on arbitrary strings, on edited valid tokens, and
//! on tokens with arbitrary header and payload bytes that carry a *correct* signature
//! (so the parsing behind the signature check is reached).
//!
//! Oracles:
//! - no panic; a token over `MAX_TOKEN_LEN` is `Malformed`;
//! - the verifier with its cache and one without give the same answer, at the first
//!   time and at a second one (a cached verification changes no decision);
//! - an edited valid token never verifies unless the edits gave back the same string;
//! - anything accepted really is what it claims: `typ` names its kind, `alg` is HS256,
//!   `kid` is ours or absent, no `crit`, `iss`, `aud`, `exp`, `nbf` as configured.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use tower_stepup::token::{TokenKind, VerifiedToken, DEFAULT_PARTIAL_AUDIENCE, MAX_TOKEN_LEN};
use tower_stepup::{TokenError, Verifier};

use super::fixture::{self, Tokens, ACCESS_HEADER, AUD, ISS, KID, LEEWAY, PARTIAL_HEADER, T0};
use super::input::{mutate, Input};

/// Times worth trying around the fixture's tokens (`exp` = T0 + 900, leeway 5).
fn time(input: &mut Input<'_>) -> u64 {
    match input.choose(8) {
        0 | 1 => T0,
        2 => T0 + u64::from(input.u16() % 1_000),
        3 => T0 + 895 + u64::from(input.byte() % 16),
        4 => T0.saturating_sub(u64::from(input.u16())),
        5 => input.u64(),
        6 => 0,
        _ => u64::MAX - u64::from(input.byte()),
    }
}

/// One fuzz input. Returns whether the (last) token verified at the first time.
pub fn run(data: &[u8]) -> bool {
    let mut input = Input::new(data);
    let cached = fixture::verifier(8);
    let plain = fixture::verifier(0);
    let tokens = Tokens::issue();
    let mode = input.choose(4);
    let now = time(&mut input);
    let later = time(&mut input);
    match mode {
        0 => {
            // Arbitrary text.
            let token = String::from_utf8_lossy(input.rest()).into_owned();
            check(&cached, &plain, &token, now, later).is_ok()
        }
        1 => {
            // A valid token, edited.
            let original = tokens.all()[input.choose(5)];
            let edited = mutate(original, &mut input, 4);
            let got = check(&cached, &plain, &edited, now, later);
            let expected = plain.verify(original, now);
            if edited == original {
                assert_eq!(got, expected, "the unedited token changed its answer");
            } else {
                assert!(
                    got.is_err(),
                    "an edited token verified: {edited:?} (from {original:?}) -> {got:?}"
                );
            }
            got.is_ok()
        }
        _ => {
            // Any header and payload, correctly signed.
            let header: Vec<u8> = match input.choose(4) {
                0 => ACCESS_HEADER.as_bytes().to_vec(),
                1 => PARTIAL_HEADER.as_bytes().to_vec(),
                2 => spliced(ACCESS_HEADER, &mut input),
                _ => input.chunk().to_vec(),
            };
            let payload: Vec<u8> = match input.choose(3) {
                0 => input.long_chunk(4096).to_vec(),
                _ => {
                    let template = format!(
                        r#"{{"sub":"alice","iss":"{ISS}","aud":"{AUD}","exp":{}}}"#,
                        T0 + 900
                    );
                    spliced(&template, &mut input)
                }
            };
            let key: &[u8] = if input.choose(16) == 0 {
                b"another key, not the fixture's!!"
            } else {
                &fixture::HMAC_KEY
            };
            let token = fixture::sign_hs256(key, &header, &payload);
            let got = check(&cached, &plain, &token, now, later);
            if key != fixture::HMAC_KEY {
                assert!(got.is_err(), "a token signed with another key verified");
            }
            got.is_ok()
        }
    }
}

/// Raw bytes from the input inserted into `template` just before its closing brace
/// (with a separating comma), or replacing a stretch of it: nearly valid JSON.
fn spliced(template: &str, input: &mut Input<'_>) -> Vec<u8> {
    let t = template.as_bytes();
    let insert = input.chunk();
    if input.byte() & 1 == 0 {
        let cut = t.len() - 1;
        let mut out = t[..cut].to_vec();
        out.push(b',');
        out.extend_from_slice(insert);
        out.push(b'}');
        out
    } else {
        let from = usize::from(input.byte()) % t.len();
        let to = (from + usize::from(input.byte() % 32)).min(t.len());
        let mut out = t[..from].to_vec();
        out.extend_from_slice(insert);
        out.extend_from_slice(&t[to..]);
        out
    }
}

/// An answer for comparing verifiers. Exactly the answer: which of `WrongIssuer` and
/// `WrongAudience` a token missing both claims got once depended on a `HashSet`'s seeded
/// order (finding 1 in tests/fuzz_regressions.rs, fixed: `iss` is decided first).
pub fn comparable(answer: &Result<VerifiedToken, TokenError>) -> Result<VerifiedToken, TokenError> {
    answer.clone()
}

/// Verifies `token` at `now` and then at `later` with both verifiers, checks they agree
/// and that anything accepted is sound; returns the answer at `now`.
pub fn check(
    cached: &Verifier,
    plain: &Verifier,
    token: &str,
    now: u64,
    later: u64,
) -> Result<VerifiedToken, TokenError> {
    let first = plain.verify(token, now);
    let c = comparable(&first);
    assert_eq!(
        comparable(&cached.verify(token, now)),
        c,
        "cache changed the answer for {token:?} at {now}"
    );
    // Again at the same time (now possibly from the cache): the very same answer.
    let again = cached.verify(token, now);
    assert_eq!(comparable(&again), c, "second look at {now}");
    assert_eq!(
        cached.verify(token, now),
        again,
        "one verifier, two answers"
    );
    let second = plain.verify(token, later);
    assert_eq!(
        comparable(&cached.verify(token, later)),
        comparable(&second),
        "cache changed the answer for {token:?} at {later} (verified at {now})"
    );
    if token.len() > MAX_TOKEN_LEN {
        assert_eq!(first, Err(TokenError::Malformed));
    }
    for (answer, t) in [(&first, now), (&second, later)] {
        if let Ok(v) = answer {
            sound(token, v, t);
        }
    }
    first
}

/// What an accepted token must be.
fn sound(token: &str, v: &VerifiedToken, now: u64) {
    let header_b64 = token.split('.').next().unwrap_or_default();
    let header_json = URL_SAFE_NO_PAD
        .decode(header_b64)
        .expect("accepted token has a base64url header");
    let header: Value = serde_json::from_slice(&header_json).expect("header is JSON");
    assert_eq!(header["alg"], "HS256", "{token}");
    assert!(
        header.get("kid").is_none() || header["kid"] == KID,
        "unknown kid accepted: {token}"
    );
    assert!(header.get("crit").is_none(), "crit accepted: {token}");
    let typ = header["typ"].as_str().expect("typ is a string");
    assert_eq!(TokenKind::from_typ(typ), Some(v.kind), "{token}");
    // jsonwebtoken reads the same header the same way.
    let theirs = jsonwebtoken::decode_header(token).expect("jsonwebtoken reads the header");
    assert_eq!(theirs.typ.as_deref(), Some(typ));
    let c = &v.claims;
    assert_eq!(c.iss(), Some(ISS), "{token}");
    match v.kind {
        TokenKind::Access => {
            assert!(c.aud().iter().any(|a| a == AUD), "{token}");
            assert!(!c.aud().iter().any(|a| a == DEFAULT_PARTIAL_AUDIENCE));
        }
        TokenKind::Partial => {
            assert!(!c.aud().is_empty());
            assert!(
                c.aud().iter().all(|a| a == DEFAULT_PARTIAL_AUDIENCE),
                "{token}"
            );
        }
        _ => panic!("a token kind the harness does not know"),
    }
    assert!(now < c.exp().saturating_add(LEEWAY), "expired accepted");
    if let Some(nbf) = c.nbf() {
        assert!(nbf <= now.saturating_add(LEEWAY), "not yet valid accepted");
    }
}
