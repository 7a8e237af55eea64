//! Security properties of the token verifier (`tower_stepup::Verifier`).
//!
//! Time is an input everywhere: issuers read a `ManualClock` and `Verifier::verify` is
//! given `now` explicitly, so no test sleeps.

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use tower_stepup::token::{IssuedToken, DEFAULT_PARTIAL_AUDIENCE, MAX_TOKEN_LEN};
use tower_stepup::{
    Algorithm, ConfigError, Grant, Issuer, KeySet, ManualClock, SigningKey, TokenError, TokenKind,
    Verifier, VerifyingKey,
};

const ISS: &str = "https://auth.example";
const AUD: &str = "https://api.example";
const NOW: u64 = 1_700_000_000;
/// Access-token lifetime used by the issuers below (the crate default).
const ACCESS_TTL: u64 = 900;
/// Partial-token lifetime used by the issuers below (the crate default).
const PARTIAL_TTL: u64 = 300;

const HS_SECRET: &[u8; 64] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
const OTHER_HS_SECRET: &[u8; 64] =
    b"fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";

const RSA_PRIVATE: &[u8] = include_bytes!("keys/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("keys/rsa_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("keys/ec_private.pem");
const EC_PUBLIC: &[u8] = include_bytes!("keys/ec_public.pem");
/// A second, unrelated P-256 key pair (generated with `openssl genpkey` for these tests).
const EC2_PRIVATE: &[u8] = include_bytes!("keys/ec2_private.pem");
const EC2_PUBLIC: &[u8] = include_bytes!("keys/ec2_public.pem");
const ED_PRIVATE: &[u8] = include_bytes!("keys/ed_private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("keys/ed_public.pem");

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn hs256_verifying(kid: &str) -> VerifyingKey {
    VerifyingKey::hmac(kid, Algorithm::HS256, HS_SECRET).unwrap()
}

fn hs256_signing(kid: &str) -> SigningKey {
    SigningKey::hmac(kid, Algorithm::HS256, HS_SECRET).unwrap()
}

fn rsa_verifying(kid: &str) -> VerifyingKey {
    VerifyingKey::rsa_pem(kid, Algorithm::RS256, RSA_PUBLIC).unwrap()
}

fn ec_verifying(kid: &str) -> VerifyingKey {
    VerifyingKey::ec_pem(kid, Algorithm::ES256, EC_PUBLIC).unwrap()
}

/// A verifier for `ISS` / `AUD` with the given allow-list and keys.
fn verifier(algorithms: &[Algorithm], keys: KeySet) -> Verifier {
    Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms(algorithms.iter().copied())
        .keys(keys)
        .build()
        .unwrap()
}

/// The usual HS256 verifier with one key, `k1`.
fn hs256_verifier() -> Verifier {
    verifier(
        &[Algorithm::HS256],
        KeySet::new().with(hs256_verifying("k1")),
    )
}

/// An issuer for `ISS` / `AUD` whose clock shows `NOW`.
fn issuer(key: SigningKey) -> Issuer {
    Issuer::builder()
        .issuer(ISS)
        .audience(AUD)
        .signing_key(key)
        .clock(ManualClock::new(NOW))
        .build()
        .unwrap()
}

fn access(issuer: &Issuer) -> IssuedToken {
    issuer.issue_access(&Grant::new("alice")).unwrap()
}

/// Makes sure jsonwebtoken has a crypto provider before the tests call it directly: with
/// `--all-features` both backends are compiled in and the crate's builders pick one.
fn ensure_provider() {
    let _ = hs256_verifier();
}

/// A JOSE header with exactly the given `alg`, `typ` and `kid`.
fn header(alg: Algorithm, typ: Option<&str>, kid: Option<&str>) -> Header {
    let mut h = Header::new(alg);
    h.typ = typ.map(str::to_owned);
    h.kid = kid.map(str::to_owned);
    h
}

/// Signs arbitrary claims with an arbitrary header, as an attacker (or another issuer) would.
fn sign(header: &Header, claims: &Value, key: &EncodingKey) -> String {
    ensure_provider();
    jsonwebtoken::encode(header, claims, key).unwrap()
}

/// Signs `claims` with the shared HMAC secret, HS256, kid `k1`, typ `typ`.
fn sign_hs256(typ: Option<&str>, claims: &Value) -> String {
    sign(
        &header(Algorithm::HS256, typ, Some("k1")),
        claims,
        &EncodingKey::from_secret(HS_SECRET),
    )
}

/// Valid access-token claims at `NOW`.
fn access_claims() -> Value {
    json!({
        "sub": "alice",
        "iss": ISS,
        "aud": AUD,
        "iat": NOW,
        "exp": NOW + ACCESS_TTL,
        "jti": "j-1",
    })
}

/// Valid partial-token claims at `NOW`.
fn partial_claims() -> Value {
    json!({
        "sub": "alice",
        "iss": ISS,
        "aud": DEFAULT_PARTIAL_AUDIENCE,
        "iat": NOW,
        "exp": NOW + PARTIAL_TTL,
        "jti": "j-2",
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims
        .as_object_mut()
        .unwrap()
        .insert(name.to_owned(), value);
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Signs the exact header JSON text and payload text given (so duplicate members and other
/// oddities survive), returning `b64(header).b64(payload).signature`.
fn sign_raw(header_json: &str, payload: &[u8], key: &EncodingKey, alg: Algorithm) -> String {
    ensure_provider();
    let message = format!("{}.{}", b64(header_json.as_bytes()), b64(payload));
    let sig = jsonwebtoken::crypto::sign(message.as_bytes(), key, alg).unwrap();
    format!("{message}.{sig}")
}

/// [`sign_raw`] with HS256 and the shared secret.
fn sign_raw_hs256(header_json: &str, payload: &[u8]) -> String {
    sign_raw(
        header_json,
        payload,
        &EncodingKey::from_secret(HS_SECRET),
        Algorithm::HS256,
    )
}

const HS256_HEADER: &str = r#"{"alg":"HS256","typ":"at+jwt","kid":"k1"}"#;

// ---------------------------------------------------------------------------------------
// 1. Round trips
// ---------------------------------------------------------------------------------------

/// Issues a fully populated access token with `signing`, verifies it with a verifier that
/// allows only `alg` and holds only `verifying`, and checks every claim comes back.
fn assert_access_round_trip(alg: Algorithm, signing: SigningKey, verifying: VerifyingKey) {
    assert_eq!(signing.algorithm(), alg);
    let issuer = issuer(signing);
    let grant = Grant::new("alice")
        .sid("session-1")
        .scope("me billing:read")
        .acr("urn:example:mfa")
        .amr(["pwd", "otp", "mfa"])
        .auth_time(NOW - 30)
        .claim("tenant", "acme");
    let issued = issuer.issue_access(&grant).unwrap();
    let verifier = verifier(&[alg], KeySet::new().with(verifying));

    let verified = verifier.verify(&issued.token, NOW).unwrap();

    assert_eq!(verified.kind, TokenKind::Access);
    let c = &verified.claims;
    assert_eq!(c.sub(), "alice");
    assert_eq!(c.iss(), Some(ISS));
    assert_eq!(c.aud(), [AUD.to_owned()]);
    assert_eq!(c.iat(), Some(NOW));
    assert_eq!(c.exp(), NOW + ACCESS_TTL);
    assert_eq!(c.sid(), Some("session-1"));
    assert_eq!(c.jti(), issued.claims.jti());
    assert!(c.jti().is_some_and(|j| !j.is_empty()));
    assert_eq!(c.scope(), Some("me billing:read"));
    assert!(c.has_scope("billing:read"));
    assert_eq!(c.acr(), Some("urn:example:mfa"));
    assert_eq!(c.amr(), ["pwd", "otp", "mfa"]);
    assert_eq!(c.auth_time(), Some(NOW - 30));
    assert_eq!(c.get("tenant"), Some(&json!("acme")));
    assert_eq!(c, &issued.claims);
}

#[test]
fn hs256_access_token_round_trips_with_all_claims() {
    assert_access_round_trip(
        Algorithm::HS256,
        SigningKey::hmac("h", Algorithm::HS256, &HS_SECRET[..32]).unwrap(),
        VerifyingKey::hmac("h", Algorithm::HS256, &HS_SECRET[..32]).unwrap(),
    );
}

#[test]
fn hs384_access_token_round_trips_with_all_claims() {
    assert_access_round_trip(
        Algorithm::HS384,
        SigningKey::hmac("h", Algorithm::HS384, &HS_SECRET[..48]).unwrap(),
        VerifyingKey::hmac("h", Algorithm::HS384, &HS_SECRET[..48]).unwrap(),
    );
}

#[test]
fn hs512_access_token_round_trips_with_all_claims() {
    assert_access_round_trip(
        Algorithm::HS512,
        SigningKey::hmac("h", Algorithm::HS512, HS_SECRET).unwrap(),
        VerifyingKey::hmac("h", Algorithm::HS512, HS_SECRET).unwrap(),
    );
}

#[test]
fn rs256_access_token_round_trips_with_all_claims() {
    assert_access_round_trip(
        Algorithm::RS256,
        SigningKey::rsa_pem("r", Algorithm::RS256, RSA_PRIVATE).unwrap(),
        VerifyingKey::rsa_pem("r", Algorithm::RS256, RSA_PUBLIC).unwrap(),
    );
}

#[test]
fn es256_access_token_round_trips_with_all_claims() {
    assert_access_round_trip(
        Algorithm::ES256,
        SigningKey::ec_pem("e", Algorithm::ES256, EC_PRIVATE).unwrap(),
        VerifyingKey::ec_pem("e", Algorithm::ES256, EC_PUBLIC).unwrap(),
    );
}

#[test]
fn eddsa_access_token_round_trips_with_all_claims() {
    assert_access_round_trip(
        Algorithm::EdDSA,
        SigningKey::ed_pem("d", ED_PRIVATE).unwrap(),
        VerifyingKey::ed_pem("d", ED_PUBLIC).unwrap(),
    );
}

#[test]
fn several_audiences_can_be_configured() {
    let verifier = Verifier::builder()
        .issuer(ISS)
        .audience("https://other.example")
        .audience(AUD)
        .algorithms([Algorithm::HS256])
        .key(hs256_verifying("k1"))
        .build()
        .unwrap();
    let token = access(&issuer(hs256_signing("k1"))).token;
    assert_eq!(
        verifier.verify(&token, NOW).unwrap().kind,
        TokenKind::Access
    );
}

#[test]
fn grant_cannot_override_registered_claims() {
    let issuer = issuer(hs256_signing("k1"));
    let grant = Grant::new("alice")
        .claim("aud", "https://evil.example")
        .claim("iss", "https://evil.example")
        .claim("exp", u64::MAX)
        .claim("sub", "mallory");
    let issued = issuer.issue_access(&grant).unwrap();
    let verified = hs256_verifier().verify(&issued.token, NOW).unwrap();
    assert_eq!(verified.claims.sub(), "alice");
    assert_eq!(verified.claims.iss(), Some(ISS));
    assert_eq!(verified.claims.aud(), [AUD.to_owned()]);
    assert_eq!(verified.claims.exp(), NOW + ACCESS_TTL);
    assert!(verified.claims.extra().is_empty());
}

// SRC BUG found by this test (regression test now): at commit fa7cc77,
// src/token/verify.rs line 289 (`v.algorithms = self.algorithms.clone();` in
// `VerifierBuilder::build`) handed the whole allow-list to `jsonwebtoken::decode`, and
// jsonwebtoken 11 (`verify_signature_body`) fails with `InvalidAlgorithm` unless *every*
// algorithm in `Validation::algorithms` belongs to the family of the key in use. So a
// verifier whose allow-list spans two families (HMAC + RSA, RSA + EC, EC + EdDSA, ...)
// rejected every genuine token with `TokenError::AlgorithmNotAllowed`. Fixed by giving
// each allowed algorithm its own single-algorithm `Validation`; this test (and the next)
// fail again if that regresses.
#[test]
fn one_verifier_accepts_tokens_of_every_allowed_algorithm_family() {
    let verifier = verifier(
        &[
            Algorithm::HS256,
            Algorithm::RS256,
            Algorithm::ES256,
            Algorithm::EdDSA,
        ],
        KeySet::new()
            .with(hs256_verifying("h"))
            .with(rsa_verifying("r"))
            .with(ec_verifying("e"))
            .with(VerifyingKey::ed_pem("d", ED_PUBLIC).unwrap()),
    );
    let signers = [
        hs256_signing("h"),
        SigningKey::rsa_pem("r", Algorithm::RS256, RSA_PRIVATE).unwrap(),
        SigningKey::ec_pem("e", Algorithm::ES256, EC_PRIVATE).unwrap(),
        SigningKey::ed_pem("d", ED_PRIVATE).unwrap(),
    ];
    let results: Vec<_> = signers
        .into_iter()
        .map(|signer| {
            let alg = signer.algorithm();
            let token = access(&issuer(signer)).token;
            (alg, verifier.verify(&token, NOW).map(|v| v.kind))
        })
        .collect();
    assert_eq!(
        results,
        [
            (Algorithm::HS256, Ok(TokenKind::Access)),
            (Algorithm::RS256, Ok(TokenKind::Access)),
            (Algorithm::ES256, Ok(TokenKind::Access)),
            (Algorithm::EdDSA, Ok(TokenKind::Access)),
        ]
    );
}

// Regression test for the same SRC BUG as above, in its most common form: an RS256
// deployment that also allows HS256 (for a second, internal issuer) could not verify its
// own RS256 tokens.
#[test]
fn rs256_token_is_accepted_when_hs256_is_also_allowed() {
    let verifier = verifier(
        &[Algorithm::RS256, Algorithm::HS256],
        KeySet::new()
            .with(rsa_verifying("rsa"))
            .with(hs256_verifying("h")),
    );
    let token = access(&issuer(
        SigningKey::rsa_pem("rsa", Algorithm::RS256, RSA_PRIVATE).unwrap(),
    ))
    .token;
    assert_eq!(
        verifier.verify(&token, NOW).map(|v| v.kind),
        Ok(TokenKind::Access)
    );
}

// ---------------------------------------------------------------------------------------
// 2. Type confusion
// ---------------------------------------------------------------------------------------

#[test]
fn partial_token_is_not_accepted_as_an_access_token() {
    let issuer = issuer(hs256_signing("k1"));
    let issued = issuer
        .issue_partial(&Grant::new("alice").amr(["pwd"]))
        .unwrap();
    let verified = hs256_verifier().verify(&issued.token, NOW).unwrap();
    assert_eq!(verified.kind, TokenKind::Partial);
    assert_ne!(verified.kind, TokenKind::Access);
    assert_eq!(verified.claims.aud(), [DEFAULT_PARTIAL_AUDIENCE.to_owned()]);
    assert_eq!(verified.claims.exp(), NOW + PARTIAL_TTL);
}

#[test]
fn access_token_is_verified_as_access_kind() {
    let token = access(&issuer(hs256_signing("k1"))).token;
    assert_eq!(
        hs256_verifier().verify(&token, NOW).unwrap().kind,
        TokenKind::Access
    );
}

#[test]
fn access_typ_with_the_partial_audience_is_rejected() {
    let token = sign_hs256(Some("at+jwt"), &partial_claims());
    assert_eq!(
        hs256_verifier().verify(&token, NOW),
        Err(TokenError::WrongAudience)
    );
}

#[test]
fn partial_typ_with_the_access_audience_is_rejected() {
    let token = sign_hs256(Some("stepup-partial+jwt"), &access_claims());
    assert_eq!(
        hs256_verifier().verify(&token, NOW),
        Err(TokenError::WrongAudience)
    );
}

#[test]
fn partial_token_naming_both_audiences_is_rejected() {
    // A partial token names the partial audience and nothing else (RFC 8725 §3.12), so
    // it can never pass as access, whatever else it claims.
    let claims = with(
        partial_claims(),
        "aud",
        json!([DEFAULT_PARTIAL_AUDIENCE, AUD]),
    );
    let token = sign_hs256(Some("stepup-partial+jwt"), &claims);
    assert_eq!(
        hs256_verifier().verify(&token, NOW),
        Err(TokenError::WrongAudience)
    );
}

#[test]
fn partial_token_for_a_custom_partial_audience_is_only_accepted_by_a_matching_verifier() {
    let issuer = Issuer::builder()
        .issuer(ISS)
        .audience(AUD)
        .partial_audience("urn:example:mfa")
        .signing_key(hs256_signing("k1"))
        .clock(ManualClock::new(NOW))
        .build()
        .unwrap();
    let token = issuer.issue_partial(&Grant::new("alice")).unwrap().token;

    assert_eq!(
        hs256_verifier().verify(&token, NOW),
        Err(TokenError::WrongAudience)
    );
    let matching = Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .partial_audience("urn:example:mfa")
        .algorithms([Algorithm::HS256])
        .key(hs256_verifying("k1"))
        .build()
        .unwrap();
    assert_eq!(
        matching.verify(&token, NOW).unwrap().kind,
        TokenKind::Partial
    );
}

#[test]
fn typ_jwt_is_rejected_as_wrong_type() {
    let token = sign_hs256(Some("JWT"), &access_claims());
    assert_eq!(
        hs256_verifier().verify(&token, NOW),
        Err(TokenError::WrongType)
    );
}

#[test]
fn missing_typ_is_rejected_as_wrong_type() {
    let token = sign_hs256(None, &access_claims());
    assert_eq!(
        hs256_verifier().verify(&token, NOW),
        Err(TokenError::WrongType)
    );
}

#[test]
fn mfa_token_typ_is_rejected_as_wrong_type() {
    for claims in [access_claims(), partial_claims()] {
        let token = sign_hs256(Some("stepup-mfa+jwt"), &claims);
        assert_eq!(
            hs256_verifier().verify(&token, NOW),
            Err(TokenError::WrongType)
        );
    }
}

#[test]
fn lookalike_typs_are_rejected_as_wrong_type() {
    for typ in [
        "",
        "at+jwt ",
        " at+jwt",
        "at-jwt",
        "application/",
        "application/jwt",
        "application/application/at+jwt",
        "text/at+jwt",
        "at+jwt; charset=utf-8",
        "stepup-partial",
    ] {
        let token = sign_hs256(Some(typ), &access_claims());
        assert_eq!(
            hs256_verifier().verify(&token, NOW),
            Err(TokenError::WrongType),
            "typ {typ:?}"
        );
    }
}

#[test]
fn media_type_and_uppercase_forms_of_at_jwt_are_accepted() {
    // RFC 7515 §4.1.9: the `application/` prefix may be omitted, and media types are
    // case-insensitive.
    for typ in ["application/at+jwt", "AT+JWT", "Application/At+Jwt"] {
        let token = sign_hs256(Some(typ), &access_claims());
        assert_eq!(
            hs256_verifier().verify(&token, NOW).map(|v| v.kind),
            Ok(TokenKind::Access),
            "typ {typ:?}"
        );
    }
}

#[test]
fn media_type_form_of_the_partial_typ_is_accepted_as_partial() {
    for typ in ["application/stepup-partial+jwt", "STEPUP-PARTIAL+JWT"] {
        let token = sign_hs256(Some(typ), &partial_claims());
        assert_eq!(
            hs256_verifier().verify(&token, NOW).map(|v| v.kind),
            Ok(TokenKind::Partial),
            "typ {typ:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 3. Algorithms
// ---------------------------------------------------------------------------------------

#[test]
fn alg_none_is_rejected_as_malformed() {
    let payload = b64(access_claims().to_string().as_bytes());
    for header in [
        r#"{"alg":"none","typ":"at+jwt"}"#,
        r#"{"alg":"none","typ":"at+jwt","kid":"k1"}"#,
        r#"{"alg":"None","typ":"at+jwt"}"#,
        r#"{"alg":"NONE","typ":"at+jwt"}"#,
        r#"{"alg":"","typ":"at+jwt"}"#,
        r#"{"typ":"at+jwt"}"#,
    ] {
        let unsigned = format!("{}.{payload}.", b64(header.as_bytes()));
        assert_eq!(
            hs256_verifier().verify(&unsigned, NOW),
            Err(TokenError::Malformed),
            "header {header}"
        );
        // Not even with a genuine HS256 signature of the same input appended.
        let genuine = sign_hs256(Some("at+jwt"), &access_claims());
        let sig = genuine.rsplit('.').next().unwrap();
        let resigned = format!("{}.{payload}.{sig}", b64(header.as_bytes()));
        assert_eq!(
            hs256_verifier().verify(&resigned, NOW),
            Err(TokenError::Malformed),
            "header {header}"
        );
    }
}

#[test]
fn algorithm_outside_the_allow_list_is_rejected() {
    // A genuine HS512 token, signed with the very secret the HS256 key holds.
    let token = sign(
        &header(Algorithm::HS512, Some("at+jwt"), Some("k1")),
        &access_claims(),
        &EncodingKey::from_secret(HS_SECRET),
    );
    assert_eq!(
        hs256_verifier().verify(&token, NOW),
        Err(TokenError::AlgorithmNotAllowed)
    );
}

#[test]
fn header_alg_that_differs_from_the_keys_alg_is_rejected() {
    // kid names the ES256 key, alg says RS256 (allowed, and an RSA key is in the set).
    let verifier = verifier(
        &[Algorithm::ES256, Algorithm::RS256],
        KeySet::new()
            .with(ec_verifying("ec"))
            .with(rsa_verifying("rsa")),
    );
    let token = sign(
        &header(Algorithm::RS256, Some("at+jwt"), Some("ec")),
        &access_claims(),
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    );
    assert_eq!(
        verifier.verify(&token, NOW),
        Err(TokenError::AlgorithmNotAllowed)
    );
}

#[test]
fn hmac_alg_that_differs_from_the_keys_hmac_alg_is_rejected() {
    // Same family, same secret, but the key is pinned to HS256 and the token says HS384.
    let verifier = verifier(
        &[Algorithm::HS256, Algorithm::HS384],
        KeySet::new().with(hs256_verifying("k1")),
    );
    let token = sign(
        &header(Algorithm::HS384, Some("at+jwt"), Some("k1")),
        &access_claims(),
        &EncodingKey::from_secret(HS_SECRET),
    );
    assert_eq!(
        verifier.verify(&token, NOW),
        Err(TokenError::AlgorithmNotAllowed)
    );
}

// ---------------------------------------------------------------------------------------
// 4. HMAC keyed with a public key (RFC 8725 §2.1)
// ---------------------------------------------------------------------------------------

/// Signs an access token with HS256 using `public_pem`'s bytes as the HMAC secret.
fn hs256_with_public_key_as_secret(public_pem: &[u8], kid: Option<&str>) -> String {
    sign(
        &header(Algorithm::HS256, Some("at+jwt"), kid),
        &access_claims(),
        &EncodingKey::from_secret(public_pem),
    )
}

#[test]
fn hs256_signed_with_the_rsa_public_key_is_never_accepted() {
    let rsa_only = verifier(
        &[Algorithm::RS256],
        KeySet::new().with(rsa_verifying("rsa")),
    );
    let with_hs256 = verifier(
        &[Algorithm::RS256, Algorithm::HS256],
        KeySet::new().with(rsa_verifying("rsa")),
    );
    let with_hs256_and_hmac_key = verifier(
        &[Algorithm::RS256, Algorithm::HS256],
        KeySet::new()
            .with(rsa_verifying("rsa"))
            .with(hs256_verifying("h")),
    );
    let named = hs256_with_public_key_as_secret(RSA_PUBLIC, Some("rsa"));
    let unnamed = hs256_with_public_key_as_secret(RSA_PUBLIC, None);

    for (verifier, token, expected) in [
        (&rsa_only, &named, TokenError::AlgorithmNotAllowed),
        (&with_hs256, &named, TokenError::AlgorithmNotAllowed),
        (&with_hs256, &unnamed, TokenError::AlgorithmNotAllowed),
        (
            &with_hs256_and_hmac_key,
            &named,
            TokenError::AlgorithmNotAllowed,
        ),
        (&with_hs256_and_hmac_key, &unnamed, TokenError::UnknownKey),
    ] {
        let result = verifier.verify(token, NOW);
        assert!(
            result.is_err(),
            "accepted an HMAC token keyed with the RSA public key"
        );
        assert_eq!(result, Err(expected));
    }
}

#[test]
fn hs256_signed_with_the_ec_public_key_is_never_accepted() {
    let ec_only = verifier(&[Algorithm::ES256], KeySet::new().with(ec_verifying("ec")));
    let with_hs256 = verifier(
        &[Algorithm::ES256, Algorithm::HS256],
        KeySet::new().with(ec_verifying("ec")),
    );
    let named = hs256_with_public_key_as_secret(EC_PUBLIC, Some("ec"));
    let unnamed = hs256_with_public_key_as_secret(EC_PUBLIC, None);

    for (verifier, token) in [
        (&ec_only, &named),
        (&with_hs256, &named),
        (&with_hs256, &unnamed),
    ] {
        let result = verifier.verify(token, NOW);
        assert!(
            result.is_err(),
            "accepted an HMAC token keyed with the EC public key"
        );
        assert_eq!(result, Err(TokenError::AlgorithmNotAllowed));
    }
}

// ---------------------------------------------------------------------------------------
// 5. Keys
// ---------------------------------------------------------------------------------------

#[test]
fn token_signed_with_another_hmac_secret_under_the_same_kid_has_a_bad_signature() {
    let token = sign(
        &header(Algorithm::HS256, Some("at+jwt"), Some("k1")),
        &access_claims(),
        &EncodingKey::from_secret(OTHER_HS_SECRET),
    );
    assert_eq!(
        hs256_verifier().verify(&token, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn token_signed_with_another_ec_key_under_the_same_kid_has_a_bad_signature() {
    let verifier = verifier(&[Algorithm::ES256], KeySet::new().with(ec_verifying("ec")));
    let impostor = issuer(SigningKey::ec_pem("ec", Algorithm::ES256, EC2_PRIVATE).unwrap());
    let token = access(&impostor).token;
    assert_eq!(verifier.verify(&token, NOW), Err(TokenError::BadSignature));
}

#[test]
fn tampered_claims_break_the_signature() {
    let token = access(&issuer(hs256_signing("k1"))).token;
    let mut parts: Vec<&str> = token.split('.').collect();
    let forged_claims = b64(with(access_claims(), "sub", json!("mallory"))
        .to_string()
        .as_bytes());
    parts[1] = &forged_claims;
    let forged = parts.join(".");
    assert_eq!(
        hs256_verifier().verify(&forged, NOW),
        Err(TokenError::BadSignature)
    );

    // A signature of the right length but the wrong bytes.
    let (message, _) = token.rsplit_once('.').unwrap();
    let zeroed = format!("{message}.{}", b64(&[0u8; 32]));
    assert_eq!(
        hs256_verifier().verify(&zeroed, NOW),
        Err(TokenError::BadSignature)
    );

    // A truncated signature (43 base64url chars cut to 40, still valid base64url).
    let truncated = &token[..token.len() - 3];
    assert_eq!(
        hs256_verifier().verify(truncated, NOW),
        Err(TokenError::BadSignature)
    );

    // An empty signature.
    let unsigned = format!("{message}.");
    assert_eq!(
        hs256_verifier().verify(&unsigned, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn unknown_kid_is_rejected() {
    let token = access(&issuer(hs256_signing("k2"))).token;
    assert_eq!(
        hs256_verifier().verify(&token, NOW),
        Err(TokenError::UnknownKey)
    );
}

#[test]
fn missing_kid_is_rejected_when_the_set_holds_two_keys() {
    let verifier = verifier(
        &[Algorithm::HS256],
        KeySet::new()
            .with(hs256_verifying("k1"))
            .with(VerifyingKey::hmac("k2", Algorithm::HS256, OTHER_HS_SECRET).unwrap()),
    );
    let token = sign(
        &header(Algorithm::HS256, Some("at+jwt"), None),
        &access_claims(),
        &EncodingKey::from_secret(HS_SECRET),
    );
    assert_eq!(verifier.verify(&token, NOW), Err(TokenError::UnknownKey));
}

#[test]
fn missing_kid_is_accepted_when_the_set_holds_one_key() {
    let token = sign(
        &header(Algorithm::HS256, Some("at+jwt"), None),
        &access_claims(),
        &EncodingKey::from_secret(HS_SECRET),
    );
    let verified = hs256_verifier().verify(&token, NOW).unwrap();
    assert_eq!(verified.kind, TokenKind::Access);
    assert_eq!(verified.claims.sub(), "alice");
}

#[test]
fn missing_kid_with_one_key_still_needs_the_right_secret() {
    let token = sign(
        &header(Algorithm::HS256, Some("at+jwt"), None),
        &access_claims(),
        &EncodingKey::from_secret(OTHER_HS_SECRET),
    );
    assert_eq!(
        hs256_verifier().verify(&token, NOW),
        Err(TokenError::BadSignature)
    );
}

// ---------------------------------------------------------------------------------------
// 6. iss and aud
// ---------------------------------------------------------------------------------------

#[test]
fn wrong_issuer_is_rejected() {
    let token = sign_hs256(
        Some("at+jwt"),
        &with(access_claims(), "iss", json!("https://evil.example")),
    );
    assert_eq!(
        hs256_verifier().verify(&token, NOW),
        Err(TokenError::WrongIssuer)
    );
}

#[test]
fn missing_issuer_is_rejected() {
    let token = sign_hs256(Some("at+jwt"), &without(access_claims(), "iss"));
    assert_eq!(
        hs256_verifier().verify(&token, NOW),
        Err(TokenError::WrongIssuer)
    );
}

#[test]
fn issuer_of_a_different_issuer_object_is_rejected() {
    let other = Issuer::builder()
        .issuer("https://other-auth.example")
        .audience(AUD)
        .signing_key(hs256_signing("k1"))
        .clock(ManualClock::new(NOW))
        .build()
        .unwrap();
    assert_eq!(
        hs256_verifier().verify(&access(&other).token, NOW),
        Err(TokenError::WrongIssuer)
    );
}

#[test]
fn issuer_array_is_not_accepted() {
    let token = sign_hs256(
        Some("at+jwt"),
        &with(access_claims(), "iss", json!(["https://evil.example", ISS])),
    );
    assert_eq!(
        hs256_verifier().verify(&token, NOW),
        Err(TokenError::InvalidClaims)
    );
}

#[test]
fn wrong_audience_is_rejected() {
    let token = sign_hs256(
        Some("at+jwt"),
        &with(access_claims(), "aud", json!("https://evil.example")),
    );
    assert_eq!(
        hs256_verifier().verify(&token, NOW),
        Err(TokenError::WrongAudience)
    );
}

#[test]
fn missing_audience_is_rejected() {
    let token = sign_hs256(Some("at+jwt"), &without(access_claims(), "aud"));
    assert_eq!(
        hs256_verifier().verify(&token, NOW),
        Err(TokenError::WrongAudience)
    );
}

#[test]
fn empty_audience_array_is_rejected() {
    let token = sign_hs256(Some("at+jwt"), &with(access_claims(), "aud", json!([])));
    assert_eq!(
        hs256_verifier().verify(&token, NOW),
        Err(TokenError::WrongAudience)
    );
}

#[test]
fn audience_array_without_the_configured_audience_is_rejected() {
    let token = sign_hs256(
        Some("at+jwt"),
        &with(
            access_claims(),
            "aud",
            json!(["https://evil.example", "https://api.example/"]),
        ),
    );
    assert_eq!(
        hs256_verifier().verify(&token, NOW),
        Err(TokenError::WrongAudience)
    );
}

#[test]
fn audience_array_containing_the_configured_audience_is_accepted() {
    let token = sign_hs256(
        Some("at+jwt"),
        &with(
            access_claims(),
            "aud",
            json!(["https://other.example", AUD]),
        ),
    );
    let verified = hs256_verifier().verify(&token, NOW).unwrap();
    assert_eq!(verified.kind, TokenKind::Access);
    assert_eq!(verified.claims.aud(), ["https://other.example", AUD]);
}

#[test]
fn missing_sub_or_exp_is_invalid_claims() {
    for claim in ["sub", "exp"] {
        let token = sign_hs256(Some("at+jwt"), &without(access_claims(), claim));
        assert_eq!(
            hs256_verifier().verify(&token, NOW),
            Err(TokenError::InvalidClaims),
            "without {claim}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// 7. exp, nbf and the leeway
// ---------------------------------------------------------------------------------------

#[test]
fn default_leeway_is_five_seconds() {
    assert_eq!(hs256_verifier().leeway(), 5);
}

#[test]
fn access_token_is_valid_until_exp_plus_leeway_then_expired() {
    let token = access(&issuer(hs256_signing("k1"))).token;
    let exp = NOW + ACCESS_TTL;
    let v = hs256_verifier();

    assert!(v.verify(&token, exp - 1).is_ok());
    assert!(v.verify(&token, exp).is_ok());
    // exp - 1 + 5: the last second within the leeway.
    assert!(v.verify(&token, exp + 4).is_ok());
    assert_eq!(
        v.verify(&token, exp + 5),
        Err(TokenError::Expired {
            kind: TokenKind::Access
        })
    );
    assert_eq!(
        v.verify(&token, exp + 10_000),
        Err(TokenError::Expired {
            kind: TokenKind::Access
        })
    );
}

#[test]
fn issuer_clock_sets_exp_and_an_advanced_clock_issues_later_tokens() {
    let clock = ManualClock::new(NOW);
    let issuer = Issuer::builder()
        .issuer(ISS)
        .audience(AUD)
        .signing_key(hs256_signing("k1"))
        .clock(clock.clone())
        .build()
        .unwrap();
    let early = access(&issuer);
    clock.advance(1_000);
    let late = access(&issuer);
    assert_eq!(early.claims.exp(), NOW + ACCESS_TTL);
    assert_eq!(late.claims.exp(), NOW + 1_000 + ACCESS_TTL);

    let v = hs256_verifier();
    let at = NOW + 1_000;
    assert_eq!(
        v.verify(&early.token, at),
        Err(TokenError::Expired {
            kind: TokenKind::Access
        })
    );
    assert!(v.verify(&late.token, at).is_ok());
}

#[test]
fn expired_partial_token_reports_the_partial_kind() {
    let issued = issuer(hs256_signing("k1"))
        .issue_partial(&Grant::new("alice"))
        .unwrap();
    let exp = NOW + PARTIAL_TTL;
    assert_eq!(issued.claims.exp(), exp);
    let v = hs256_verifier();
    assert_eq!(
        v.verify(&issued.token, exp + 4).unwrap().kind,
        TokenKind::Partial
    );
    assert_eq!(
        v.verify(&issued.token, exp + 5),
        Err(TokenError::Expired {
            kind: TokenKind::Partial
        })
    );
}

#[test]
fn nbf_within_the_leeway_is_accepted_and_beyond_is_not_yet_valid() {
    let v = hs256_verifier();
    let at = |nbf: u64| sign_hs256(Some("at+jwt"), &with(access_claims(), "nbf", json!(nbf)));

    assert!(v.verify(&at(NOW), NOW).is_ok());
    assert!(v.verify(&at(NOW + 5), NOW).is_ok());
    assert_eq!(v.verify(&at(NOW + 6), NOW), Err(TokenError::NotYetValid));
    assert_eq!(v.verify(&at(NOW + 600), NOW), Err(TokenError::NotYetValid));
}

#[test]
fn zero_leeway_moves_both_boundaries() {
    let v = Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([Algorithm::HS256])
        .key(hs256_verifying("k1"))
        .leeway(Duration::ZERO)
        .build()
        .unwrap();
    assert_eq!(v.leeway(), 0);

    let token = access(&issuer(hs256_signing("k1"))).token;
    let exp = NOW + ACCESS_TTL;
    assert!(v.verify(&token, exp - 1).is_ok());
    // RFC 7519 §4.1.4: not accepted on or after exp.
    assert_eq!(
        v.verify(&token, exp),
        Err(TokenError::Expired {
            kind: TokenKind::Access
        })
    );

    let at = |nbf: u64| sign_hs256(Some("at+jwt"), &with(access_claims(), "nbf", json!(nbf)));
    assert!(v.verify(&at(NOW), NOW).is_ok());
    assert_eq!(v.verify(&at(NOW + 1), NOW), Err(TokenError::NotYetValid));
}

#[test]
fn configured_leeway_of_sixty_seconds_moves_the_boundary() {
    let v = Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([Algorithm::HS256])
        .key(hs256_verifying("k1"))
        .leeway(Duration::from_secs(60))
        .build()
        .unwrap();
    let token = access(&issuer(hs256_signing("k1"))).token;
    let exp = NOW + ACCESS_TTL;
    assert!(v.verify(&token, exp + 59).is_ok());
    assert_eq!(
        v.verify(&token, exp + 60),
        Err(TokenError::Expired {
            kind: TokenKind::Access
        })
    );
}

#[test]
fn leeway_above_sixty_seconds_is_a_config_error() {
    for leeway in [Duration::from_secs(61), Duration::from_millis(60_001)] {
        let result = Verifier::builder()
            .issuer(ISS)
            .audience(AUD)
            .algorithms([Algorithm::HS256])
            .key(hs256_verifying("k1"))
            .leeway(leeway)
            .build();
        assert!(
            matches!(
                result,
                Err(ConfigError::Invalid {
                    setting: "leeway",
                    ..
                })
            ),
            "{leeway:?}: {result:?}"
        );
    }
}

#[test]
fn expiry_is_reported_only_for_genuine_tokens() {
    let exp = NOW + ACCESS_TTL;
    let late = exp + 3_600;
    let forged = sign(
        &header(Algorithm::HS256, Some("at+jwt"), Some("k1")),
        &access_claims(),
        &EncodingKey::from_secret(OTHER_HS_SECRET),
    );
    assert_eq!(
        hs256_verifier().verify(&forged, late),
        Err(TokenError::BadSignature)
    );
    let foreign = sign_hs256(
        Some("at+jwt"),
        &with(access_claims(), "aud", json!("https://evil.example")),
    );
    assert_eq!(
        hs256_verifier().verify(&foreign, late),
        Err(TokenError::WrongAudience)
    );
}

// ---------------------------------------------------------------------------------------
// 8. Key rotation
// ---------------------------------------------------------------------------------------

#[test]
fn rotation_accepts_old_and_new_keys_then_drops_the_old_one_for_every_clone() {
    let old_key = || VerifyingKey::ec_pem("old", Algorithm::ES256, EC_PUBLIC).unwrap();
    let new_key = || VerifyingKey::ec_pem("new", Algorithm::ES256, EC2_PUBLIC).unwrap();
    let old_token = access(&issuer(
        SigningKey::ec_pem("old", Algorithm::ES256, EC_PRIVATE).unwrap(),
    ))
    .token;
    let new_token = access(&issuer(
        SigningKey::ec_pem("new", Algorithm::ES256, EC2_PRIVATE).unwrap(),
    ))
    .token;

    let original = verifier(&[Algorithm::ES256], KeySet::new().with(old_key()));
    let clone = original.clone();
    assert!(original.verify(&old_token, NOW).is_ok());
    assert_eq!(
        original.verify(&new_token, NOW),
        Err(TokenError::UnknownKey)
    );

    // Both keys in force: tokens of either verify, on the original and on the clone.
    original
        .rotate_keys(KeySet::new().with(old_key()).with(new_key()))
        .unwrap();
    for v in [&original, &clone] {
        assert!(v.verify(&old_token, NOW).is_ok());
        assert!(v.verify(&new_token, NOW).is_ok());
    }

    // The old key dropped (through the clone this time): old tokens are unknown everywhere.
    clone.rotate_keys(KeySet::new().with(new_key())).unwrap();
    for v in [&original, &clone, &original.clone()] {
        assert_eq!(v.verify(&old_token, NOW), Err(TokenError::UnknownKey));
        assert!(v.verify(&new_token, NOW).is_ok());
    }
}

#[test]
fn rotation_to_an_invalid_key_set_is_refused_and_keeps_the_old_keys() {
    let v = hs256_verifier();
    let token = access(&issuer(hs256_signing("k1"))).token;

    let outside_allow_list = v.rotate_keys(KeySet::new().with(rsa_verifying("rsa")));
    assert!(matches!(
        outside_allow_list,
        Err(ConfigError::AlgorithmNotAllowed(Algorithm::RS256))
    ));
    let empty = v.rotate_keys(KeySet::new());
    assert!(matches!(empty, Err(ConfigError::Missing(_))));
    let duplicate = v.rotate_keys(
        KeySet::new()
            .with(hs256_verifying("k1"))
            .with(VerifyingKey::hmac("k1", Algorithm::HS256, OTHER_HS_SECRET).unwrap()),
    );
    assert!(matches!(duplicate, Err(ConfigError::DuplicateKid(k)) if k == "k1"));

    assert!(v.verify(&token, NOW).is_ok());
}

// ---------------------------------------------------------------------------------------
// 9. Builder errors
// ---------------------------------------------------------------------------------------

#[test]
fn builder_requires_an_algorithm_allow_list() {
    let result = Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .key(hs256_verifying("k1"))
        .build();
    assert!(matches!(
        result,
        Err(ConfigError::Missing("algorithm allow-list"))
    ));
    let empty = Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([])
        .key(hs256_verifying("k1"))
        .build();
    assert!(matches!(
        empty,
        Err(ConfigError::Missing("algorithm allow-list"))
    ));
}

#[test]
fn builder_requires_an_issuer() {
    let result = Verifier::builder()
        .audience(AUD)
        .algorithms([Algorithm::HS256])
        .key(hs256_verifying("k1"))
        .build();
    assert!(matches!(result, Err(ConfigError::Missing("issuer"))));
}

#[test]
fn builder_requires_an_audience() {
    let result = Verifier::builder()
        .issuer(ISS)
        .algorithms([Algorithm::HS256])
        .key(hs256_verifying("k1"))
        .build();
    assert!(matches!(result, Err(ConfigError::Missing("audience"))));
}

#[test]
fn builder_requires_a_key() {
    let result = Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([Algorithm::HS256])
        .build();
    assert!(matches!(
        result,
        Err(ConfigError::Missing("at least one verifying key"))
    ));
}

#[test]
fn hmac_secret_shorter_than_the_hash_output_is_refused() {
    for (alg, min) in [
        (Algorithm::HS256, 32),
        (Algorithm::HS384, 48),
        (Algorithm::HS512, 64),
    ] {
        let short = &HS_SECRET[..min - 1];
        let exact = &HS_SECRET[..min];
        assert!(
            matches!(VerifyingKey::hmac("k", alg, short), Err(ConfigError::Key { ref kid, .. }) if kid == "k"),
            "{alg:?} verifying key with {} bytes",
            min - 1
        );
        assert!(
            matches!(
                SigningKey::hmac("k", alg, short),
                Err(ConfigError::Key { .. })
            ),
            "{alg:?} signing key with {} bytes",
            min - 1
        );
        assert!(
            matches!(
                VerifyingKey::from_decoding_key(
                    "k",
                    alg,
                    jsonwebtoken::DecodingKey::from_secret(short)
                ),
                Err(ConfigError::Key { .. })
            ),
            "{alg:?} decoding key with {} bytes",
            min - 1
        );
        assert!(VerifyingKey::hmac("k", alg, exact).is_ok());
        assert!(SigningKey::hmac("k", alg, exact).is_ok());
    }
    assert!(matches!(
        VerifyingKey::hmac("k", Algorithm::HS256, b""),
        Err(ConfigError::Key { .. })
    ));
}

#[test]
fn hmac_key_with_a_non_hmac_algorithm_is_refused() {
    assert!(matches!(
        VerifyingKey::hmac("k", Algorithm::RS256, HS_SECRET),
        Err(ConfigError::Key { .. })
    ));
    assert!(matches!(
        SigningKey::hmac("k", Algorithm::ES256, HS_SECRET),
        Err(ConfigError::Key { .. })
    ));
}

#[test]
fn key_whose_algorithm_is_not_in_the_allow_list_is_refused() {
    let result = Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([Algorithm::HS256])
        .key(hs256_verifying("k1"))
        .key(rsa_verifying("rsa"))
        .build();
    assert!(matches!(
        result,
        Err(ConfigError::AlgorithmNotAllowed(Algorithm::RS256))
    ));
}

#[test]
fn duplicate_kid_is_refused() {
    let result = Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([Algorithm::HS256])
        .key(hs256_verifying("k1"))
        .key(VerifyingKey::hmac("k1", Algorithm::HS256, OTHER_HS_SECRET).unwrap())
        .build();
    assert!(matches!(result, Err(ConfigError::DuplicateKid(ref k)) if k == "k1"));
}

#[test]
fn partial_audience_equal_to_the_access_audience_is_refused() {
    let explicit = Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .partial_audience(AUD)
        .algorithms([Algorithm::HS256])
        .key(hs256_verifying("k1"))
        .build();
    assert!(matches!(
        explicit,
        Err(ConfigError::Invalid {
            setting: "partial_audience",
            ..
        })
    ));
    // The default partial audience used as (one of) the access audiences.
    let default = Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .audience(DEFAULT_PARTIAL_AUDIENCE)
        .algorithms([Algorithm::HS256])
        .key(hs256_verifying("k1"))
        .build();
    assert!(matches!(
        default,
        Err(ConfigError::Invalid {
            setting: "partial_audience",
            ..
        })
    ));
    let issuer = Issuer::builder()
        .issuer(ISS)
        .audience(AUD)
        .partial_audience(AUD)
        .signing_key(hs256_signing("k1"))
        .build();
    assert!(matches!(
        issuer,
        Err(ConfigError::Invalid {
            setting: "partial_audience",
            ..
        })
    ));
}

#[test]
fn ec_pem_given_with_rs256_is_refused() {
    assert!(matches!(
        VerifyingKey::ec_pem("k", Algorithm::RS256, EC_PUBLIC),
        Err(ConfigError::Key { .. })
    ));
    assert!(matches!(
        VerifyingKey::rsa_pem("k", Algorithm::RS256, EC_PUBLIC),
        Err(ConfigError::Key { .. })
    ));
    assert!(matches!(
        SigningKey::ec_pem("k", Algorithm::RS256, EC_PRIVATE),
        Err(ConfigError::Key { .. })
    ));
    assert!(matches!(
        VerifyingKey::rsa_pem("k", Algorithm::ES256, RSA_PUBLIC),
        Err(ConfigError::Key { .. })
    ));
}

#[test]
fn config_errors_do_not_contain_key_material() {
    let short = &HS_SECRET[..31];
    let err = VerifyingKey::hmac("k", Algorithm::HS256, short).unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(
        !text.contains(std::str::from_utf8(short).unwrap()),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------
// 10. Garbage
// ---------------------------------------------------------------------------------------

#[test]
fn garbage_is_malformed_and_never_panics() {
    let claims = b64(access_claims().to_string().as_bytes());
    let non_json_header = format!("{}.{claims}.c2ln", b64(b"this is not json"));
    let array_header = format!("{}.{claims}.c2ln", b64(b"[1,2,3]"));
    let string_header = format!("{}.{claims}.c2ln", b64(br#""at+jwt""#));
    let truncated_json_header = format!("{}.{claims}.c2ln", b64(br#"{"alg":"HS256","typ":"#));
    let padded_header = format!("{}==.{claims}.c2ln", b64(br#"{"alg":"HS256"}"#));
    let unknown_alg = format!(
        "{}.{claims}.c2ln",
        b64(br#"{"alg":"HS1024","typ":"at+jwt","kid":"k1"}"#)
    );
    let huge = "a".repeat(9 * 1024);
    let huge_dots = format!("{0}.{0}.{0}", "A".repeat(3 * 1024));

    let cases: Vec<(&str, &str)> = vec![
        ("empty", ""),
        ("one dot", "."),
        ("two dots", ".."),
        ("two parts", "a.b"),
        ("four parts", "a.b.c.d"),
        ("three parts of non-base64", "!!!.@@@.###"),
        ("non-ascii", "é.ü.ß"),
        ("whitespace", " . . "),
        ("nul bytes", "\0.\0.\0"),
        ("header base64 of non-JSON", &non_json_header),
        ("header JSON array", &array_header),
        ("header JSON string", &string_header),
        ("header truncated JSON", &truncated_json_header),
        ("header with padding", &padded_header),
        ("unknown alg", &unknown_alg),
        ("9 KiB", &huge),
        ("9 KiB in three parts", &huge_dots),
    ];
    let v = hs256_verifier();
    for (name, token) in cases {
        assert_eq!(v.verify(token, NOW), Err(TokenError::Malformed), "{name}");
    }
}

#[test]
fn genuine_token_longer_than_the_limit_is_malformed() {
    let issuer = issuer(hs256_signing("k1"));
    let big = issuer
        .issue_access(&Grant::new("alice").claim("padding", "x".repeat(7 * 1024)))
        .unwrap()
        .token;
    assert!(big.len() > MAX_TOKEN_LEN);
    assert_eq!(
        hs256_verifier().verify(&big, NOW),
        Err(TokenError::Malformed)
    );

    let fits = issuer
        .issue_access(&Grant::new("alice").claim("padding", "x".repeat(5 * 1024)))
        .unwrap()
        .token;
    assert!(fits.len() <= MAX_TOKEN_LEN);
    assert!(hs256_verifier().verify(&fits, NOW).is_ok());
}

#[test]
fn signed_garbage_claims_are_rejected() {
    let v = hs256_verifier();
    // Payload that is not base64url at all (signed over the raw text).
    let message = format!("{}.!!!not-base64!!!", b64(HS256_HEADER.as_bytes()));
    ensure_provider();
    let sig = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(HS_SECRET),
        Algorithm::HS256,
    )
    .unwrap();
    assert_eq!(
        v.verify(&format!("{message}.{sig}"), NOW),
        Err(TokenError::Malformed)
    );
    // Payload that is base64url of something other than a JSON object.
    for payload in [&b"not json"[..], b"", b"[]", b"42", b"null", b"{"] {
        assert_eq!(
            v.verify(&sign_raw_hs256(HS256_HEADER, payload), NOW),
            Err(TokenError::InvalidClaims),
            "{}",
            String::from_utf8_lossy(payload)
        );
    }
    // Claims of the wrong types.
    for claims in [
        with(access_claims(), "exp", json!("tomorrow")),
        with(access_claims(), "exp", json!(-1)),
        with(access_claims(), "exp", json!(null)),
        with(access_claims(), "sub", json!(42)),
        with(access_claims(), "aud", json!(7)),
        with(access_claims(), "aud", json!([AUD, 7])),
        with(access_claims(), "nbf", json!("now")),
    ] {
        let token = sign_raw_hs256(HS256_HEADER, claims.to_string().as_bytes());
        assert_eq!(
            v.verify(&token, NOW),
            Err(TokenError::InvalidClaims),
            "{claims}"
        );
    }
}

#[test]
fn duplicate_header_parameters_are_malformed() {
    let claims = access_claims().to_string();
    for header in [
        r#"{"alg":"HS256","alg":"HS256","typ":"at+jwt","kid":"k1"}"#,
        r#"{"alg":"HS256","typ":"JWT","typ":"at+jwt","kid":"k1"}"#,
        r#"{"alg":"HS256","typ":"at+jwt","kid":"nope","kid":"k1"}"#,
    ] {
        assert_eq!(
            hs256_verifier().verify(&sign_raw_hs256(header, claims.as_bytes()), NOW),
            Err(TokenError::Malformed),
            "{header}"
        );
    }
}

#[test]
fn duplicate_claims_are_rejected() {
    // Whichever copy a parser would pick, such a token must not pass.
    let exp = NOW + ACCESS_TTL;
    for payload in [
        format!(
            r#"{{"sub":"alice","iss":"{ISS}","aud":"https://evil.example","aud":"{AUD}","exp":{exp}}}"#
        ),
        format!(
            r#"{{"sub":"alice","iss":"https://evil.example","iss":"{ISS}","aud":"{AUD}","exp":{exp}}}"#
        ),
        format!(r#"{{"sub":"alice","iss":"{ISS}","aud":"{AUD}","exp":{NOW},"exp":{exp}}}"#),
        format!(r#"{{"sub":"mallory","sub":"alice","iss":"{ISS}","aud":"{AUD}","exp":{exp}}}"#),
    ] {
        assert_eq!(
            hs256_verifier().verify(&sign_raw_hs256(HS256_HEADER, payload.as_bytes()), NOW),
            Err(TokenError::InvalidClaims),
            "{payload}"
        );
    }
}

/// The x and y coordinates (base64url) of a P-256 public key in SPKI PEM.
fn ec_public_xy(pem: &[u8]) -> (String, String) {
    let body: String = std::str::from_utf8(pem)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let point = &der[der.len() - 64..];
    (b64(&point[..32]), b64(&point[32..]))
}

#[test]
fn keys_named_in_the_header_are_never_trusted() {
    // The attacker signs with their own EC key and points at it from the header: an
    // embedded `jwk`, a `jku` or an `x5u`. Only the configured keys count.
    let verifier = verifier(&[Algorithm::ES256], KeySet::new().with(ec_verifying("ec")));
    let (x, y) = ec_public_xy(EC2_PUBLIC);
    let attacker = EncodingKey::from_ec_pem(EC2_PRIVATE).unwrap();
    let claims = access_claims().to_string();
    let jwk = format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"}}"#);
    for (header, expected) in [
        (
            format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"ec","jwk":{jwk}}}"#),
            TokenError::BadSignature,
        ),
        (
            format!(r#"{{"alg":"ES256","typ":"at+jwt","kid":"attacker","jwk":{jwk}}}"#),
            TokenError::UnknownKey,
        ),
        (
            format!(r#"{{"alg":"ES256","typ":"at+jwt","jwk":{jwk}}}"#),
            TokenError::BadSignature,
        ),
        (
            r#"{"alg":"ES256","typ":"at+jwt","kid":"ec","jku":"https://evil.example/jwks"}"#
                .to_owned(),
            TokenError::BadSignature,
        ),
        (
            r#"{"alg":"ES256","typ":"at+jwt","kid":"ec","x5u":"https://evil.example/cert"}"#
                .to_owned(),
            TokenError::BadSignature,
        ),
    ] {
        let token = sign_raw(&header, claims.as_bytes(), &attacker, Algorithm::ES256);
        assert_eq!(verifier.verify(&token, NOW), Err(expected), "{header}");
    }
}

#[test]
fn token_error_display_never_contains_the_token() {
    let token = access(&issuer(hs256_signing("k1"))).token;
    let segments: Vec<&str> = token.split('.').collect();
    let all = [
        TokenError::Malformed,
        TokenError::WrongType,
        TokenError::AlgorithmNotAllowed,
        TokenError::UnknownKey,
        TokenError::BadSignature,
        TokenError::WrongIssuer,
        TokenError::WrongAudience,
        TokenError::InvalidClaims,
        TokenError::NotYetValid,
        TokenError::Expired {
            kind: TokenKind::Access,
        },
        TokenError::Expired {
            kind: TokenKind::Partial,
        },
    ];
    for err in all {
        let shown = format!("{err}");
        assert!(!shown.is_empty());
        assert!(!shown.contains(&token), "{shown}");
        for segment in &segments {
            assert!(!shown.contains(segment), "{shown}");
        }
    }

    // And the errors the verifier actually returns for real tokens.
    let v = hs256_verifier();
    let exp = NOW + ACCESS_TTL;
    let mut tampered = token.clone();
    tampered.push('A');
    for (input, at) in [(&token, exp + 100), (&tampered, NOW)] {
        let err = v.verify(input, at).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(input.as_str()), "{shown}");
        for segment in input.split('.') {
            assert!(!shown.contains(segment), "{shown}");
        }
    }
}

#[test]
fn critical_header_extensions_are_refused() {
    // RFC 7515 §4.1.11: a recipient that does not understand a `crit` extension must
    // reject the token, however well it is signed.
    let verifier = hs256_verifier();
    let header = r#"{"alg":"HS256","typ":"at+jwt","kid":"k1","crit":["urn:x:must-understand"],"urn:x:must-understand":true}"#;
    let token = sign_raw_hs256(header, access_claims().to_string().as_bytes());
    assert_eq!(verifier.verify(&token, NOW), Err(TokenError::Malformed));
    let plain = sign_raw_hs256(HS256_HEADER, access_claims().to_string().as_bytes());
    assert!(verifier.verify(&plain, NOW).is_ok());
}

#[test]
fn access_token_that_also_names_the_partial_audience_is_rejected() {
    // RFC 8725 §3.12: the rules of the two kinds are mutually exclusive, so a token
    // valid for the verify endpoint is never also valid for the API, whatever its typ.
    let verifier = hs256_verifier();
    let both = with(
        access_claims(),
        "aud",
        serde_json::json!([AUD, tower_stepup::token::DEFAULT_PARTIAL_AUDIENCE]),
    );
    let token = sign_raw_hs256(HS256_HEADER, both.to_string().as_bytes());
    assert_eq!(verifier.verify(&token, NOW), Err(TokenError::WrongAudience));
}

// ---------------------------------------------------------------------------------------
// 11. DPoP-bound access tokens (RFC 9449 §6.1: `cnf.jkt`)
// ---------------------------------------------------------------------------------------

/// The RFC 7638 thumbprint of a client's Ed25519 public key, as the layer computes it
/// from a proof's `jwk`.
fn client_jkt(seed: u8) -> String {
    let key = SigningKey::ed25519_from_seed("client", &[seed; 32]).unwrap();
    tower_stepup::dpop::thumbprint(&key.public_jwk().unwrap()).unwrap()
}

/// The payload of a compact JWS, as JSON.
fn payload_of(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// An HS256 verifier with the cache off.
fn uncached_hs256_verifier() -> Verifier {
    Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([Algorithm::HS256])
        .key(hs256_verifying("k1"))
        .cache(0)
        .build()
        .unwrap()
}

#[test]
fn a_bound_access_token_carries_cnf_jkt_and_verifies_with_it() {
    let jkt = client_jkt(1);
    assert_eq!(jkt.len(), 43);
    let issuer = issuer(hs256_signing("k1"));
    let issued = issuer
        .issue_access(&Grant::new("alice").amr(["pwd"]).dpop_jkt(&jkt))
        .unwrap();
    // On the wire exactly RFC 9449 §6.1's shape.
    assert_eq!(payload_of(&issued.token)["cnf"], json!({ "jkt": jkt }));
    let verified = hs256_verifier().verify(&issued.token, NOW).unwrap();
    assert_eq!(verified.kind, TokenKind::Access);
    assert_eq!(verified.claims.dpop_jkt(), Some(jkt.as_str()));
    assert!(verified.claims.get("cnf").is_none());
    assert!(verified.claims.extra().is_empty());
    // Another client's key has another thumbprint.
    assert_ne!(verified.claims.dpop_jkt(), Some(client_jkt(2).as_str()));
}

#[test]
fn an_unbound_access_token_has_no_jkt() {
    let issued = access(&issuer(hs256_signing("k1")));
    assert!(payload_of(&issued.token).get("cnf").is_none());
    let verified = hs256_verifier().verify(&issued.token, NOW).unwrap();
    assert_eq!(verified.claims.dpop_jkt(), None);
}

#[test]
fn partial_tokens_are_never_bound_and_a_bad_jkt_is_refused_at_issue() {
    let issuer = issuer(hs256_signing("k1"));
    let grant = Grant::new("alice").amr(["pwd"]).dpop_jkt(client_jkt(1));
    let partial = issuer.issue_partial(&grant).unwrap();
    assert!(payload_of(&partial.token).get("cnf").is_none());
    let verified = hs256_verifier().verify(&partial.token, NOW).unwrap();
    assert_eq!(verified.kind, TokenKind::Partial);
    assert_eq!(verified.claims.dpop_jkt(), None);
    for bad in [
        "",
        "x",
        &"A".repeat(44),
        &format!("{}=", &client_jkt(1)[..42]),
    ] {
        let refused = issuer.issue_access(&Grant::new("alice").dpop_jkt(bad));
        assert!(
            matches!(refused, Err(tower_stepup::token::IssueError::InvalidJkt)),
            "{bad:?}"
        );
    }
}

#[test]
fn a_hand_signed_token_with_a_malformed_cnf_is_refused_not_read_as_unbound() {
    let verifier = hs256_verifier();
    let jkt = client_jkt(1);
    // The same token with a well-formed cnf passes: only cnf makes the difference.
    let good = sign_hs256(
        Some("at+jwt"),
        &with(access_claims(), "cnf", json!({ "jkt": jkt })),
    );
    assert_eq!(
        verifier.verify(&good, NOW).unwrap().claims.dpop_jkt(),
        Some(jkt.as_str())
    );
    let cases = [
        json!("x"),
        json!({ "jkt": 5 }),
        Value::Null,
        json!(5),
        json!([jkt]),
        json!({}),
        json!({ "jkt": null }),
        json!({ "jkt": "short" }),
        json!({ "jkt": format!("{jkt}A") }),
        json!({ "x5t#S256": jkt }),
        json!({ "jkt": jkt, "jwk": { "kty": "OKP" } }),
    ];
    for cnf in cases {
        let token = sign_hs256(Some("at+jwt"), &with(access_claims(), "cnf", cnf.clone()));
        let refused = verifier.verify(&token, NOW);
        assert_eq!(refused, Err(TokenError::InvalidClaims), "cnf {cnf}");
        assert_eq!(refused.unwrap_err().reason(), "invalid_claims");
        // Never cached: asking again verifies in full again and refuses again.
        assert_eq!(verifier.verify(&token, NOW), Err(TokenError::InvalidClaims));
    }
    // Two `cnf` members, the first well-formed: refused too.
    let twice = format!(
        r#"{{"sub":"alice","iss":"{ISS}","aud":"{AUD}","exp":{},"cnf":{{"jkt":"{jkt}"}},"cnf":"x"}}"#,
        NOW + ACCESS_TTL
    );
    let token = sign_raw_hs256(HS256_HEADER, twice.as_bytes());
    assert_eq!(verifier.verify(&token, NOW), Err(TokenError::InvalidClaims));
    assert_eq!(
        verifier.cache_stats().entries,
        1,
        "only the good token is cached"
    );
}

#[test]
fn cached_and_uncached_verifications_agree_on_the_binding() {
    let issuer = issuer(hs256_signing("k1"));
    let jkt = client_jkt(3);
    let bound = issuer
        .issue_access(&Grant::new("alice").dpop_jkt(&jkt))
        .unwrap()
        .token;
    let unbound = access(&issuer).token;
    let cached = hs256_verifier();
    let uncached = uncached_hs256_verifier();
    for (token, expected) in [(&bound, Some(jkt.as_str())), (&unbound, None)] {
        let first = cached.verify(token, NOW).unwrap();
        let hit = cached.verify(token, NOW + 1).unwrap();
        let full = uncached.verify(token, NOW + 1).unwrap();
        assert_eq!(first.claims.dpop_jkt(), expected);
        assert_eq!(hit.claims.dpop_jkt(), expected);
        assert_eq!(full.claims.dpop_jkt(), expected);
        assert_eq!(hit, full);
    }
    assert_eq!(cached.cache_stats().hits, 2);
    assert_eq!(uncached.cache_stats().hits, 0);
}
