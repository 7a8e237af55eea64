//! Every check of `check`, each failing for its own reason, with proofs built and signed
//! independently of the code under test: header and payload JSON by hand, base64url by
//! hand, signatures by RustCrypto's `p256` 0.14 and `ed25519-dalek` 3 (jsonwebtoken, which
//! verifies, uses aws-lc-rs or p256 0.13 / ed25519-dalek 2), and ES384 by aws-lc-rs
//! through rcgen's key and jsonwebtoken's signer. Thumbprints are recomputed here with
//! sha2 over the RFC 7638 JSON written by hand.

use std::sync::LazyLock;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, Method};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::*;

const T0: u64 = 1_800_000_000;
const TOKEN: &str = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
const URL: &str = "https://api.example/api/me";

// The key, its JWK, signature and RFC 7638 thumbprint by hand: the same independent
// maker the integration tests use.
#[path = "../../tests/support/dpop.rs"]
mod independent;

use independent::{ath, b64, Key};

/// A compact JWS of exactly these header and payload bytes, signed by `key`.
fn sign_raw(key: &Key, header: &[u8], payload: &[u8]) -> String {
    key.sign_raw(header, payload)
}

fn header(key: &Key) -> Value {
    json!({"typ": "dpop+jwt", "alg": key.alg(), "jwk": key.jwk()})
}

fn claims() -> Value {
    json!({"jti": "e1j3V_bKic8-LAEB", "htm": "GET", "htu": URL, "iat": T0, "ath": ath(TOKEN)})
}

/// A proof by `key` with its header and claims edited by `edit`.
fn proof_by(key: &Key, edit: impl FnOnce(&mut Value, &mut Value)) -> String {
    let (mut h, mut c) = (header(key), claims());
    edit(&mut h, &mut c);
    sign_raw(
        key,
        &serde_json::to_vec(&h).unwrap(),
        &serde_json::to_vec(&c).unwrap(),
    )
}

fn proof(edit: impl FnOnce(&mut Value, &mut Value)) -> String {
    proof_by(&Key::es256(7), edit)
}

fn url() -> Htu {
    Htu::parse(URL).unwrap()
}

fn expected<'a>(url: &'a Htu) -> Expected<'a> {
    Expected {
        method: &Method::GET,
        url,
        access_token: Some(TOKEN),
        nonce: None,
        now: T0,
    }
}

static HTU: LazyLock<Htu> = LazyLock::new(url);

fn run_with<'a>(
    config: &DpopConfig,
    proof: &str,
    edit: impl FnOnce(&mut Expected<'a>),
) -> Result<CheckedProof, DpopError> {
    let mut e = expected(&HTU);
    edit(&mut e);
    check_values(config, [proof.as_bytes()], &e)
}

fn run(proof: &str) -> Result<CheckedProof, DpopError> {
    run_with(&DpopConfig::default(), proof, |_| {})
}

fn refused(edit: impl FnOnce(&mut Value, &mut Value)) -> DpopError {
    run(&proof(edit)).unwrap_err()
}

// ---------------------------------------------------------------------------------------
// The right proofs.

#[test]
fn a_right_es256_proof_passes_with_its_thumbprint_jti_and_expiry() {
    let key = Key::es256(7);
    let got = run(&proof_by(&key, |_, _| {})).unwrap();
    assert_eq!(
        got,
        CheckedProof {
            jkt: key.thumbprint(),
            jti: "e1j3V_bKic8-LAEB".into(),
            iat: T0,
            expires_at: T0 + 61,
            nonce: None,
        }
    );
    assert_eq!(got.jkt.len(), 43, "SHA-256, base64url without padding");
}

#[test]
fn a_right_eddsa_proof_passes_with_its_thumbprint() {
    let key = Key::ed(9);
    let got = run(&proof_by(&key, |_, _| {})).unwrap();
    assert_eq!(got.jkt, key.thumbprint());
    // Another key, another thumbprint.
    let other = run(&proof_by(&Key::ed(10), |_, _| {})).unwrap();
    assert_ne!(other.jkt, got.jkt);
}

#[test]
fn the_header_map_form_reads_the_dpop_header_whatever_its_case() {
    let url = url();
    let mut headers = HeaderMap::new();
    headers.insert("DPoP", HeaderValue::from_str(&proof(|_, _| {})).unwrap());
    assert!(check(&DpopConfig::default(), &headers, &expected(&url)).is_ok());
    assert_eq!(
        check(&DpopConfig::default(), &HeaderMap::new(), &expected(&url)),
        Err(DpopError::Missing)
    );
    headers.append("dpop", HeaderValue::from_str(&proof(|_, _| {})).unwrap());
    assert_eq!(
        check(&DpopConfig::default(), &headers, &expected(&url)),
        Err(DpopError::Multiple)
    );
}

#[test]
fn es384_passes_once_allowed_and_not_before() {
    crate::token::ensure_crypto_provider();
    let kp = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let raw = kp.public_key_raw();
    assert_eq!(raw.len(), 97);
    let jwk = json!({"kty": "EC", "crv": "P-384", "x": b64(&raw[1..49]), "y": b64(&raw[49..])});
    let h = json!({"typ": "dpop+jwt", "alg": "ES384", "jwk": jwk});
    let input = format!(
        "{}.{}",
        b64(&serde_json::to_vec(&h).unwrap()),
        b64(&serde_json::to_vec(&claims()).unwrap())
    );
    let encoding = jsonwebtoken::EncodingKey::from_ec_der(&kp.serialize_der());
    let sig = jsonwebtoken::crypto::sign(input.as_bytes(), &encoding, Algorithm::ES384).unwrap();
    let proof = format!("{input}.{sig}");
    assert_eq!(run(&proof), Err(DpopError::AlgorithmNotAllowed));
    let config = DpopConfig::builder()
        .algorithms([Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA])
        .build()
        .unwrap();
    assert_eq!(config.algs_header(), r#"algs="ES256 ES384 EdDSA""#);
    let got = run_with(&config, &proof, |_| {}).unwrap();
    let tp = format!(
        r#"{{"crv":"P-384","kty":"EC","x":"{}","y":"{}"}}"#,
        b64(&raw[1..49]),
        b64(&raw[49..])
    );
    assert_eq!(got.jkt, b64(&Sha256::digest(tp.as_bytes())));
    // An ES384 key under ES256 is a mismatch.
    let mixed = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": h["jwk"].clone()});
    let p = sign_raw(
        &Key::es256(7),
        &serde_json::to_vec(&mixed).unwrap(),
        &serde_json::to_vec(&claims()).unwrap(),
    );
    assert_eq!(run_with(&config, &p, |_| {}), Err(DpopError::KeyMismatch));
}

// ---------------------------------------------------------------------------------------
// Step 1: exactly one header; step 2: a well-formed JWS.

#[test]
fn no_header_or_two_are_refused() {
    let url = url();
    let p = proof(|_, _| {});
    let config = DpopConfig::default();
    assert_eq!(
        check_values(&config, [], &expected(&url)),
        Err(DpopError::Missing)
    );
    assert_eq!(
        check_values(&config, [p.as_bytes(), p.as_bytes()], &expected(&url)),
        Err(DpopError::Multiple)
    );
    // Two proofs folded into one value.
    let folded = format!("{p}, {p}");
    assert_eq!(run(&folded), Err(DpopError::Malformed));
    assert_eq!(run(&format!("{p},{p}")), Err(DpopError::Malformed));
}

#[test]
fn a_proof_over_the_length_bound_is_refused_before_parsing() {
    // Over the smallest bound the builder takes (512): an extra claim, which is ignored.
    let p = proof(|_, c| c["pad"] = json!("x".repeat(600)));
    assert!(run(&p).is_ok());
    let exact = DpopConfig::builder()
        .max_proof_len(p.len())
        .build()
        .unwrap();
    assert!(run_with(&exact, &p, |_| {}).is_ok());
    let short = DpopConfig::builder()
        .max_proof_len(p.len() - 1)
        .build()
        .unwrap();
    assert_eq!(run_with(&short, &p, |_| {}), Err(DpopError::TooLong));
    assert_eq!(run(&"a".repeat(8 * 1024 + 1)), Err(DpopError::TooLong));
    assert_eq!(DpopConfig::default().max_proof_len(), 8 * 1024);
}

#[test]
fn what_is_not_three_base64url_parts_is_malformed() {
    let p = proof(|_, _| {});
    let (h, rest) = p.split_once('.').unwrap();
    let (c, s) = rest.split_once('.').unwrap();
    for bad in [
        String::new(),
        format!("{h}.{c}"),
        format!("{h}.{c}.{s}.{s}"),
        format!("{h}..{s}"),
        format!(".{c}.{s}"),
        format!("{h}.{c}."),
        format!("{h}={}.{c}.{s}", ""),
        format!("{h}.{c}.{s}="),
        format!(" {p}"),
        format!("{p} "),
        format!("{h}.{c}+.{s}"),
        format!("{h}.{c}.{s}\u{e9}"),
        // A part of one base64 character cannot decode.
        format!("{h}.{c}.A"),
    ] {
        assert_eq!(run(&bad), Err(DpopError::Malformed), "{bad:?}");
    }
    // Invalid UTF-8 in the header value.
    let url = url();
    assert_eq!(
        check_values(&DpopConfig::default(), [&b"\xff.a.b"[..]], &expected(&url)),
        Err(DpopError::Malformed)
    );
}

// ---------------------------------------------------------------------------------------
// Header: typ, alg, crit, jwk.

#[test]
fn a_header_that_is_not_the_expected_json_is_invalid() {
    let key = Key::es256(7);
    let payload = serde_json::to_vec(&claims()).unwrap();
    let jwk = key.jwk().to_string();
    for h in [
        "not json".to_owned(),
        "[]".to_owned(),
        r#"{"typ":"dpop+jwt","jwk":{}}"#.to_owned(),
        format!(r#"{{"typ":"dpop+jwt","alg":1,"jwk":{jwk}}}"#),
        format!(r#"{{"typ":"dpop+jwt","typ":"dpop+jwt","alg":"ES256","jwk":{jwk}}}"#),
        format!(r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":"{}"}}"#, "key"),
        format!(r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{jwk},"jwk":{jwk}}}"#),
    ] {
        assert_eq!(
            run(&sign_raw(&key, h.as_bytes(), &payload)),
            Err(DpopError::InvalidHeader),
            "{h}"
        );
    }
}

#[test]
fn typ_must_be_exactly_dpop_jwt() {
    for typ in [
        json!("JWT"),
        json!("DPoP+jwt"),
        json!("application/dpop+jwt"),
        json!("at+jwt"),
        json!(1),
        Value::Null,
    ] {
        assert_eq!(
            refused(|h, _| h["typ"] = typ.clone()),
            if typ.is_number() {
                DpopError::InvalidHeader
            } else {
                DpopError::WrongType
            },
            "{typ}"
        );
    }
    assert_eq!(
        refused(|h, _| {
            h.as_object_mut().unwrap().remove("typ");
        }),
        DpopError::WrongType
    );
}

#[test]
fn symmetric_none_rsa_and_unlisted_algorithms_are_refused() {
    for alg in [
        "HS256", "HS512", "none", "RS256", "PS256", "ES512", "es256", "",
    ] {
        assert_eq!(
            refused(|h, _| h["alg"] = json!(alg)),
            DpopError::AlgorithmNotAllowed,
            "{alg}"
        );
    }
    // An HS256 proof keyed with an `oct` jwk, correctly MACed: still refused.
    let key = b"a symmetric secret of 32 bytes!!";
    let h = json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": b64(key)}});
    let input = format!(
        "{}.{}",
        b64(&serde_json::to_vec(&h).unwrap()),
        b64(&serde_json::to_vec(&claims()).unwrap())
    );
    crate::token::ensure_crypto_provider();
    let sig = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &jsonwebtoken::EncodingKey::from_secret(key),
        Algorithm::HS256,
    )
    .unwrap();
    assert_eq!(
        run(&format!("{input}.{sig}")),
        Err(DpopError::AlgorithmNotAllowed)
    );
    // EdDSA only: an ES256 proof is refused.
    let ed_only = DpopConfig::builder()
        .algorithms([Algorithm::EdDSA])
        .build()
        .unwrap();
    assert_eq!(
        run_with(&ed_only, &proof(|_, _| {}), |_| {}),
        Err(DpopError::AlgorithmNotAllowed)
    );
    assert!(run_with(&ed_only, &proof_by(&Key::ed(1), |_, _| {}), |_| {}).is_ok());
}

#[test]
fn a_crit_header_is_refused() {
    assert_eq!(
        refused(|h, _| h["crit"] = json!(["exp"])),
        DpopError::Critical
    );
}

#[test]
fn a_header_without_jwk_is_refused() {
    assert_eq!(
        refused(|h, _| {
            h.as_object_mut().unwrap().remove("jwk");
            h["kid"] = json!("k1");
        }),
        DpopError::MissingJwk
    );
}

#[test]
fn a_jwk_with_a_private_member_is_refused_even_when_the_signature_is_right() {
    for key in [Key::es256(7), Key::ed(9)] {
        let d = key.d();
        for (member, value) in [
            ("d", json!(d)),
            ("d", Value::Null),
            ("k", json!("AAAA")),
            ("p", json!("AAAA")),
            ("qi", json!("AAAA")),
            ("oth", json!([])),
        ] {
            assert_eq!(
                run(&proof_by(&key, |h, _| h["jwk"][member] = value.clone())),
                Err(DpopError::PrivateKey),
                "{member}"
            );
        }
        // Other public members change nothing, not even the thumbprint.
        let got = run(&proof_by(&key, |h, _| {
            h["jwk"]["kid"] = json!("k1");
            h["jwk"]["use"] = json!("sig");
            h["jwk"]["alg"] = json!(key.alg());
        }))
        .unwrap();
        assert_eq!(got.jkt, key.thumbprint());
    }
}

#[test]
fn a_jwk_of_another_type_than_alg_names_is_a_mismatch() {
    let ec = Key::es256(7).jwk();
    let okp = Key::ed(9).jwk();
    let cases = [
        // ES256 with an OKP key, EdDSA with an EC key.
        (Key::es256(7), okp.clone()),
        (Key::ed(9), ec.clone()),
        // The right coordinates under the wrong kty or crv.
        (Key::es256(7), {
            let mut j = ec.clone();
            j["crv"] = json!("P-384");
            j
        }),
        (Key::es256(7), {
            let mut j = ec.clone();
            j["kty"] = json!("OKP");
            j
        }),
        (Key::ed(9), {
            let mut j = okp.clone();
            j["kty"] = json!("EC");
            j
        }),
        (Key::ed(9), {
            let mut j = okp.clone();
            j["crv"] = json!("X25519");
            j
        }),
        (Key::es256(7), {
            let mut j = ec.clone();
            j.as_object_mut().unwrap().remove("kty");
            j
        }),
        (
            Key::es256(7),
            json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}),
        ),
    ];
    for (key, jwk) in cases {
        assert_eq!(
            run(&proof_by(&key, |h, _| h["jwk"] = jwk.clone())),
            Err(DpopError::KeyMismatch),
            "{jwk}"
        );
    }
}

#[test]
fn a_jwk_with_bad_coordinates_is_invalid() {
    let key = Key::es256(7);
    let jwk = key.jwk();
    let x = jwk["x"].as_str().unwrap().to_owned();
    let cases: Vec<(&str, Value)> = vec![
        ("x", json!(format!("{x}="))),
        ("x", json!(&x[1..])),
        ("x", json!(format!("{x}AA"))),
        ("x", json!(b64(&[1; 33]))),
        ("y", Value::Null),
        ("x", json!(1)),
    ];
    for (member, value) in cases {
        let got = run(&proof_by(&key, |h, _| h["jwk"][member] = value.clone()));
        let want = if value.is_number() {
            DpopError::InvalidHeader
        } else {
            DpopError::InvalidJwk
        };
        assert_eq!(got, Err(want), "{member}: {value}");
    }
    // Non-canonical base64url (stray low bits in the last character) would give one key
    // two thumbprints: refused.
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = *x.as_bytes().last().unwrap();
    let i = ALPHABET.iter().position(|&a| a == last).unwrap();
    assert_eq!(
        i & 3,
        0,
        "43 characters for 32 bytes: the last one's low 2 bits are 0"
    );
    let stray = format!("{}{}", &x[..42], char::from(ALPHABET[i | 1]));
    assert_eq!(
        run(&proof_by(&key, |h, _| h["jwk"]["x"] = json!(stray.clone()))),
        Err(DpopError::InvalidJwk)
    );
    // An OKP key with a `y`.
    assert_eq!(
        run(&proof_by(&Key::ed(9), |h, _| h["jwk"]["y"] = json!(x.clone()))),
        Err(DpopError::InvalidJwk)
    );
}

// ---------------------------------------------------------------------------------------
// Step 6: the signature.

#[test]
fn a_signature_that_does_not_verify_with_the_jwk_is_refused() {
    for (key, other) in [(Key::es256(7), Key::es256(8)), (Key::ed(9), Key::ed(10))] {
        // Signed by another key than the jwk names.
        let p = proof_by(&other, |h, _| h["jwk"] = key.jwk());
        assert_eq!(run(&p), Err(DpopError::InvalidSignature));
        // A flipped signature byte, a changed payload, a truncated signature.
        let good = proof_by(&key, |_, _| {});
        let (input, sig) = good.rsplit_once('.').unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
        raw[10] ^= 1;
        assert_eq!(
            run(&format!("{input}.{}", b64(&raw))),
            Err(DpopError::InvalidSignature)
        );
        assert_eq!(
            run(&format!("{input}.{}", b64(&raw[..63]))),
            Err(DpopError::InvalidSignature)
        );
        let (h, _) = input.split_once('.').unwrap();
        let mut c = claims();
        c["jti"] = json!("another");
        let swapped = format!("{h}.{}.{sig}", b64(&serde_json::to_vec(&c).unwrap()));
        assert_eq!(run(&swapped), Err(DpopError::InvalidSignature));
    }
    // ES256 signature in DER form (what some libraries emit) is not the JWS form.
    let key = Key::es256(7);
    let p = proof_by(&key, |_, _| {});
    let (input, _) = p.rsplit_once('.').unwrap();
    let Key::Es256(sk) = &key else { unreachable!() };
    let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(sk, input.as_bytes());
    let der = sig.to_der();
    assert_eq!(
        run(&format!("{input}.{}", b64(der.as_bytes()))),
        Err(DpopError::InvalidSignature)
    );
}

#[test]
fn a_jwk_that_is_not_a_curve_point_is_refused() {
    let key = Key::es256(7);
    let p = proof_by(&key, |h, _| {
        h["jwk"]["x"] = json!(b64(&[1; 32]));
        h["jwk"]["y"] = json!(b64(&[2; 32]));
    });
    assert_eq!(run(&p), Err(DpopError::InvalidSignature));
}

// ---------------------------------------------------------------------------------------
// Claims.

#[test]
fn claims_that_are_not_the_expected_json_are_invalid() {
    let key = Key::es256(7);
    let h = serde_json::to_vec(&header(&key)).unwrap();
    let mut cases: Vec<Vec<u8>> = vec![b"not json".to_vec(), b"[1]".to_vec()];
    for (claim, value) in [
        ("iat", json!("1800000000")),
        ("iat", json!(1_800_000_000.5)),
        ("iat", json!(-1)),
        ("jti", json!(1)),
        ("htm", json!(["GET"])),
        ("htu", json!({})),
        ("ath", json!(1)),
        ("nonce", json!(1)),
    ] {
        let mut c = claims();
        c[claim] = value;
        cases.push(serde_json::to_vec(&c).unwrap());
    }
    let dup = format!(
        r#"{{"jti":"a","jti":"b","htm":"GET","htu":"{URL}","iat":{T0},"ath":"{}"}}"#,
        ath(TOKEN)
    );
    cases.push(dup.into_bytes());
    for c in cases {
        assert_eq!(
            run(&sign_raw(&key, &h, &c)),
            Err(DpopError::InvalidClaims),
            "{}",
            String::from_utf8_lossy(&c)
        );
    }
}

#[test]
fn each_required_claim_is_required() {
    for claim in ["jti", "htm", "htu", "iat", "ath"] {
        assert_eq!(
            refused(|_, c| {
                c.as_object_mut().unwrap().remove(claim);
            }),
            DpopError::MissingClaim(claim),
            "{claim}"
        );
        assert_eq!(
            refused(|_, c| c[claim] = Value::Null),
            DpopError::MissingClaim(claim)
        );
    }
}

#[test]
fn jti_is_one_to_256_bytes() {
    assert_eq!(refused(|_, c| c["jti"] = json!("")), DpopError::InvalidJti);
    assert_eq!(
        refused(|_, c| c["jti"] = json!("x".repeat(257))),
        DpopError::InvalidJti
    );
    let got = run(&proof(|_, c| c["jti"] = json!("x".repeat(256)))).unwrap();
    assert_eq!(got.jti.len(), 256);
}

#[test]
fn htm_must_be_the_request_method() {
    for htm in ["POST", "get", "GET ", ""] {
        assert_eq!(
            refused(|_, c| c["htm"] = json!(htm)),
            DpopError::WrongMethod,
            "{htm}"
        );
    }
    let p = proof(|_, c| c["htm"] = json!("POST"));
    let post = Method::POST;
    assert!(run_with(&DpopConfig::default(), &p, |e| e.method = &post).is_ok());
}

#[test]
fn htu_must_be_the_request_url_after_normalization() {
    for htu in [
        "https://api.example/api/you",
        "https://api.example/api/me/",
        "https://api.example/API/me",
        "http://api.example/api/me",
        "https://api.example:8443/api/me",
        "https://evil.example/api/me",
        "https://api.example.evil/api/me",
        "https://user@api.example/api/me",
        "/api/me",
        "api.example/api/me",
        "",
    ] {
        assert_eq!(
            refused(|_, c| c["htu"] = json!(htu)),
            DpopError::WrongUrl,
            "{htu}"
        );
    }
    for htu in [
        "https://api.example/api/me?page=2",
        "https://api.example/api/me#top",
        "HTTPS://API.Example:443/api/me",
        "https://api.example/api/./x/../me",
        "https://api.example/%61pi/me",
    ] {
        assert!(run(&proof(|_, c| c["htu"] = json!(htu))).is_ok(), "{htu}");
    }
}

/// Found in review: with `expires_at = iat + max_age`, a proof accepted in the window's
/// last second was forgotten by the store in that same second, and could be replayed
/// for the whole of it.
#[cfg(feature = "server")]
#[tokio::test]
async fn a_proof_in_the_windows_last_second_stays_single_use_in_the_store() {
    use crate::store::{DpopUse, MemoryStore, Store};
    let got = run(&proof(|_, c| c["iat"] = json!(T0 - 60))).unwrap();
    let store = MemoryStore::new();
    let use_it = || store.use_dpop_proof(&got.jkt, &got.jti, got.expires_at, T0);
    assert_eq!(use_it().await, Ok(DpopUse::Fresh));
    assert_eq!(use_it().await, Ok(DpopUse::Replayed));
}

#[test]
fn iat_must_be_within_the_window() {
    let at = |iat: u64| run(&proof(|_, c| c["iat"] = json!(iat)));
    assert!(at(T0 - 60).is_ok());
    assert_eq!(at(T0 - 61), Err(DpopError::TooOld));
    assert_eq!(at(0), Err(DpopError::TooOld));
    assert!(at(T0 + 5).is_ok());
    assert_eq!(at(T0 + 6), Err(DpopError::IssuedInFuture));
    assert_eq!(at(u64::MAX), Err(DpopError::IssuedInFuture));
    // Remembered past the last second the window accepts it (a store forgets a `jti`
    // at `expires_at`): accepted at T0, still remembered at T0.
    assert_eq!(at(T0 - 60).unwrap().expires_at, T0 + 1);
    assert_eq!(at(T0 + 5).unwrap().expires_at, T0 + 66);
    // A configured window.
    let config = DpopConfig::builder()
        .iat_window(Duration::from_secs(10), Duration::ZERO)
        .build()
        .unwrap();
    let at = |iat: u64| run_with(&config, &proof(|_, c| c["iat"] = json!(iat)), |_| {});
    assert!(at(T0 - 10).is_ok());
    assert_eq!(at(T0 - 10).unwrap().expires_at, T0 + 1);
    assert_eq!(at(T0 - 11), Err(DpopError::TooOld));
    assert!(at(T0).is_ok());
    assert_eq!(at(T0 + 1), Err(DpopError::IssuedInFuture));
}

#[test]
fn ath_must_be_the_hash_of_the_access_token() {
    assert_eq!(
        refused(|_, c| c["ath"] = json!(ath("another token"))),
        DpopError::WrongAth
    );
    // Padded, or the hex of the hash: not the base64url form.
    assert_eq!(
        refused(|_, c| c["ath"] = json!(format!("{}=", ath(TOKEN)))),
        DpopError::WrongAth
    );
    let hex: String = Sha256::digest(TOKEN.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(refused(|_, c| c["ath"] = json!(hex)), DpopError::WrongAth);
    // Without an access token (the token endpoints), ath is not required and not read.
    let config = DpopConfig::default();
    for p in [
        proof(|_, c| {
            c.as_object_mut().unwrap().remove("ath");
        }),
        proof(|_, c| c["ath"] = json!("anything")),
    ] {
        assert!(run_with(&config, &p, |e| e.access_token = None).is_ok());
    }
    // With another access token, the same proof is refused.
    let p = proof(|_, _| {});
    assert_eq!(
        run_with(&config, &p, |e| e.access_token = Some("other")),
        Err(DpopError::WrongAth)
    );
}

#[test]
fn the_nonce_is_checked_when_expected_and_answers_use_dpop_nonce() {
    let config = DpopConfig::default();
    let with = |nonce: Option<&str>, want: Option<&'static str>| {
        let p = proof(|_, c| {
            if let Some(n) = nonce {
                c["nonce"] = json!(n);
            }
        });
        run_with(&config, &p, |e| e.nonce = want)
    };
    assert!(with(Some("n-1"), Some("n-1")).is_ok());
    let missing = with(None, Some("n-1")).unwrap_err();
    assert_eq!(missing, DpopError::MissingNonce);
    assert_eq!(missing.error_code(), "use_dpop_nonce");
    let stale = with(Some("n-0"), Some("n-1")).unwrap_err();
    assert_eq!(stale, DpopError::WrongNonce);
    assert!(stale.is_nonce_error());
    // Not expected: a nonce in the proof is not read.
    assert!(with(Some("n-0"), None).is_ok());
    assert!(with(None, None).is_ok());
    // Every other refusal is invalid_dpop_proof.
    assert_eq!(DpopError::WrongAth.error_code(), "invalid_dpop_proof");
    assert!(!DpopError::TooOld.is_nonce_error());
}

#[test]
fn error_texts_never_carry_the_proof_the_token_or_the_jti() {
    let p = proof(|_, c| c["ath"] = json!(ath("x")));
    let errors = [
        run(&p).unwrap_err(),
        run(&format!("{p}.")).unwrap_err(),
        refused(|_, c| c["jti"] = json!("")),
        refused(|_, c| c["htu"] = json!("https://secret.example/")),
        DpopError::MissingClaim("ath"),
    ];
    for e in errors {
        let text = e.to_string();
        assert!(text.len() < 80, "{text}");
        for secret in [&p[..20], TOKEN, "e1j3V_bKic8", "secret.example"] {
            assert!(!text.contains(secret), "{text}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Configuration.

#[test]
fn the_builder_refuses_symmetric_rsa_and_empty_algorithm_lists_and_bad_bounds() {
    for algs in [
        vec![Algorithm::HS256],
        vec![Algorithm::ES256, Algorithm::HS512],
        vec![Algorithm::RS256],
        vec![Algorithm::PS256],
        vec![],
    ] {
        assert!(
            DpopConfig::builder()
                .algorithms(algs.clone())
                .build()
                .is_err(),
            "{algs:?}"
        );
    }
    let window = |a, f| {
        DpopConfig::builder()
            .iat_window(Duration::from_secs(a), Duration::from_secs(f))
            .build()
    };
    assert!(window(0, 5).is_err());
    assert!(window(301, 5).is_err());
    assert!(window(60, 61).is_err());
    assert!(window(300, 60).is_ok());
    assert!(DpopConfig::builder().max_proof_len(511).build().is_err());
    assert!(DpopConfig::builder()
        .max_proof_len(64 * 1024 + 1)
        .build()
        .is_err());
    // Defaults, and duplicates listed once.
    let d = DpopConfig::default();
    assert_eq!(d.algorithms(), &[Algorithm::ES256, Algorithm::EdDSA]);
    assert_eq!((d.max_age(), d.future_leeway()), (60, 5));
    assert_eq!(d.algs_header(), r#"algs="ES256 EdDSA""#);
    let c = DpopConfig::builder()
        .algorithms([Algorithm::EdDSA, Algorithm::EdDSA, Algorithm::ES256])
        .build()
        .unwrap();
    assert_eq!(c.algs_header(), r#"algs="EdDSA ES256""#);
}

// ---------------------------------------------------------------------------------------
// htu normalization (RFC 9449 §4.3, RFC 3986 §6.2.2–6.2.3).

#[test]
fn htu_normalization_cases() {
    let n = |s: &str| Htu::parse(s).map(|h| h.as_str().to_owned());
    for (input, want) in [
        ("HTTPS://Example.COM:443/a?x#y", "https://example.com/a"),
        ("https://example.com/a", "https://example.com/a"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("https://example.com:80/a", "https://example.com:80/a"),
        ("https://example.com:/a", "https://example.com/a"),
        ("https://example.com:0443/a", "https://example.com/a"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com?q", "https://example.com/"),
        ("https://example.com#f", "https://example.com/"),
        ("https://example.com/a#f?x", "https://example.com/a"),
        ("https://example.com/a/./b/../c", "https://example.com/a/c"),
        ("https://example.com/../../a", "https://example.com/a"),
        ("https://example.com/a/..", "https://example.com/"),
        ("https://example.com/a/.", "https://example.com/a/"),
        ("https://example.com/%7Euser", "https://example.com/~user"),
        ("https://example.com/%7euser", "https://example.com/~user"),
        ("https://example.com/a%2fb", "https://example.com/a%2Fb"),
        ("https://example.com/%2E%2E/a", "https://example.com/a"),
        ("https://example.com/A/B", "https://example.com/A/B"),
        ("https://EXAMPLE.com/%41", "https://example.com/A"),
        ("https://ex%41mple.com/", "https://example.com/"),
        ("https://[2001:DB8::1]:443/x", "https://[2001:db8::1]/x"),
        (
            "https://[2001:db8::1]:8443/x",
            "https://[2001:db8::1]:8443/x",
        ),
        ("https://192.0.2.1/x", "https://192.0.2.1/x"),
        ("https://example.com/a:b@c", "https://example.com/a:b@c"),
    ] {
        assert_eq!(n(input).as_deref(), Ok(want), "{input}");
    }
    for bad in [
        "",
        "example.com/a",
        "//example.com/a",
        "ftp://example.com/a",
        "https:/example.com/a",
        "https:///a",
        "https://:443/a",
        "https://user@example.com/a",
        "https://user:pw@example.com/a",
        "https://example.com:99999/a",
        "https://example.com:65536/a",
        "https://example.com:4x3/a",
        "https://example.com:1:2/a",
        "https://exa mple.com/a",
        "https://example.com/a b",
        "https://example.com/\u{e9}",
        "https://example.com/%zz",
        "https://example.com/%4",
        "https://[::1/a",
        "https://[::1]x/a",
        "https://[]/a",
        "https://exa<mple.com/",
    ] {
        assert!(n(bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        n("https://example.com:65535/").unwrap(),
        "https://example.com:65535/"
    );
}

#[test]
fn the_request_url_is_the_public_base_plus_the_path() {
    let url = |b: &str, p: &str| Htu::from_base_and_path(b, p).map(|h| h.to_string());
    assert_eq!(url("https://api.example", "/api/me").unwrap(), URL);
    assert_eq!(url("https://api.example/", "/api/me").unwrap(), URL);
    assert_eq!(url("https://API.example:443", "/api/me?x=1").unwrap(), URL);
    assert_eq!(
        url("https://example.com/api", "/me").unwrap(),
        "https://example.com/api/me"
    );
    assert!(url("https://api.example?x", "/api/me").is_err());
    assert!(url("https://api.example", "api/me").is_err());
    assert!(url("api.example", "/api/me").is_err());
    // Dot segments: the router would see another path than the proof's.
    for path in [
        "/a/../api/me",
        "/api/./me",
        "/api/me/..",
        "/a/%2e%2E/api/me",
        "/a/.%2e/api/me",
        "/api/%2E/me?x=1",
    ] {
        assert!(url("https://api.example", path).is_err(), "{path}");
    }
    assert_eq!(
        url("https://api.example", "/api/...me/.x").unwrap(),
        "https://api.example/api/...me/.x"
    );
}

// ---------------------------------------------------------------------------------------
// RFC 7638 thumbprints.

#[test]
fn thumbprint_of_the_rfc_7638_example() {
    // RFC 7638 §3.1, with its `alg` and `kid` (not part of the thumbprint).
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29"
    }))
    .unwrap();
    assert_eq!(
        thumbprint(&jwk).unwrap(),
        "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
    );
}

#[test]
fn thumbprints_of_ec_and_okp_keys_match_rfc_7638_by_hand() {
    for key in [Key::es256(3), Key::ed(4)] {
        let mut jwk = key.jwk();
        // Member order and extra members do not matter.
        jwk["kid"] = json!("some-id");
        jwk["use"] = json!("sig");
        let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk).unwrap();
        assert_eq!(thumbprint(&parsed).unwrap(), key.thumbprint());
    }
    // RFC 8037 Appendix A.3: the Ed25519 key of A.2 has this thumbprint.
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(json!({
        "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
    }))
    .unwrap();
    assert_eq!(
        thumbprint(&jwk).unwrap(),
        "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    );
    // A symmetric key has no thumbprint here; neither has a member that is not base64url.
    let oct: jsonwebtoken::jwk::Jwk =
        serde_json::from_value(json!({"kty": "oct", "k": "c2VjcmV0"})).unwrap();
    assert_eq!(thumbprint(&oct), Err(DpopError::InvalidJwk));
    let quoted: jsonwebtoken::jwk::Jwk = serde_json::from_value(json!({
        "kty": "OKP", "crv": "Ed25519", "x": "a\",\"kty\":\"x"
    }))
    .unwrap();
    assert_eq!(thumbprint(&quoted), Err(DpopError::InvalidJwk));
}
