//! Tokens of identity providers: the ready-made profiles against each provider's
//! documented tokens and published key set, forgeries per profile, keys per issuer, and
//! the local issuer kept strict beside them.

#[path = "support/idp.rs"]
mod idp;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::json;
use tower_stepup::token::JwkSkip;
use tower_stepup::{
    Algorithm, Grant, Issuer, KeySet, SigningKey, TokenError, TokenKind, TrustedIssuer, Verifier,
    VerifyingKey,
};

use idp::{profile, token, PROVIDERS};

const NOW: u64 = 1_800_000_000;
const LOCAL: &str = "https://auth.local";
const SECRET: [u8; 32] = [9; 32];

fn local_issuer() -> Issuer {
    Issuer::builder()
        .issuer(LOCAL)
        .audience("https://api.local")
        .signing_key(SigningKey::hmac("local", Algorithm::HS256, &SECRET).unwrap())
        .clock(tower_stepup::ManualClock::new(NOW))
        .build()
        .unwrap()
}

/// A verifier of the local issuer's tokens and of `trusted`'s.
fn verifier_with(trusted: TrustedIssuer) -> Verifier {
    Verifier::builder()
        .issuer(LOCAL)
        .audience("https://api.local")
        .algorithms([Algorithm::HS256])
        .key(VerifyingKey::hmac("local", Algorithm::HS256, &SECRET).unwrap())
        .trust(trusted)
        .cache(0)
        .build()
        .unwrap()
}

fn verify(name: &str, token: &str) -> Result<tower_stepup::token::VerifiedToken, TokenError> {
    verifier_with(profile(name)).verify(token, NOW)
}

#[test]
fn every_profile_accepts_its_providers_access_token_with_its_scopes() {
    // Where each provider puts them: `scope` (a string) or `scp` (Okta: an array,
    // Entra: a string), read the same way.
    let scopes = [
        ("auth0", "openid profile email orders:read"),
        ("keycloak", "openid email profile"),
        ("okta", "openid orders:read"),
        ("entra", "Orders.Read Orders.Write"),
        (
            "cognito",
            "openid email https://api.example.com/orders.read",
        ),
    ];
    for (name, scope) in scopes {
        let t = token(name, "access_token", &profile(name), NOW, |_, _| {});
        let verified = verify(name, &t).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(verified.kind, TokenKind::Access, "{name}");
        assert_eq!(
            verified.claims.iss(),
            Some(profile(name).issuer()),
            "{name}"
        );
        assert_eq!(verified.claims.scope(), Some(scope), "{name}");
    }
}

#[test]
fn every_profile_refuses_its_providers_id_token_even_one_naming_the_api() {
    for name in PROVIDERS {
        let p = profile(name);
        let as_is = token(name, "id_token", &p, NOW, |_, _| {});
        assert!(verify(name, &as_is).is_err(), "{name}: ID token accepted");
        // The worst case: an ID token whose audience is the API (and, for Cognito, with
        // the app client named as an access token names it).
        let aimed = token(name, "id_token", &p, NOW, |_, c| {
            let access = idp::fixture(name, "access_token.json")["claims"].clone();
            for field in ["aud", "client_id"] {
                if let Some(v) = access.get(field) {
                    c[field] = v.clone();
                }
            }
        });
        let refused = verify(name, &aimed).expect_err(name);
        assert_eq!(refused, TokenError::WrongType, "{name}");
    }
}

#[test]
fn the_local_partial_token_never_passes_as_an_access_token_under_any_profile() {
    let partial = local_issuer()
        .issue_partial(&Grant::new("alice").amr(["pwd"]))
        .unwrap();
    for name in PROVIDERS {
        let verifier = verifier_with(profile(name));
        let verified = verifier.verify(&partial.token, NOW).unwrap();
        assert_eq!(verified.kind, TokenKind::Partial, "{name}");
        // A provider's token that claims the partial type, or the partial audience, is
        // no token at all.
        let p = profile(name);
        let typed = token(name, "access_token", &p, NOW, |h, _| {
            h["typ"] = json!("stepup-partial+jwt")
        });
        assert_eq!(
            verifier.verify(&typed, NOW),
            Err(TokenError::WrongType),
            "{name}"
        );
    }
}

#[test]
fn the_crate_own_issuer_stays_strict_beside_relaxed_profiles() {
    let verifier = verifier_with(profile("okta"));
    let header = json!({"alg": "HS256", "kid": "local"});
    let claims = json!({"iss": LOCAL, "aud": "https://api.local", "sub": "alice", "exp": NOW + 60});
    let untyped = jsonwebtoken::encode(
        &serde_json::from_value(header).unwrap(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&SECRET),
    )
    .unwrap();
    assert_eq!(verifier.verify(&untyped, NOW), Err(TokenError::WrongType));
}

#[test]
fn forgeries_are_refused_under_every_profile() {
    for name in PROVIDERS {
        let p = profile(name);
        let forge = |edit: &dyn Fn(&mut serde_json::Value, &mut serde_json::Value)| {
            token(name, "access_token", &p, NOW, |h, c| edit(h, c))
        };
        let cases: Vec<(&str, String, TokenError)> = vec![
            (
                "wrong iss",
                forge(&|_, c| c["iss"] = json!("https://evil.example/")),
                TokenError::WrongIssuer,
            ),
            (
                "expired",
                forge(&|_, c| c["exp"] = json!(NOW - 60)),
                TokenError::Expired {
                    kind: TokenKind::Access,
                },
            ),
            (
                "typ id+jwt",
                forge(&|h, _| h["typ"] = json!("id+jwt")),
                TokenError::WrongType,
            ),
            (
                "alg vs key type",
                forge(&|h, _| h["alg"] = json!("ES256")),
                TokenError::AlgorithmNotAllowed,
            ),
            (
                "alg none",
                none_alg(&forge(&|_, _| {})),
                TokenError::Malformed,
            ),
            (
                "HS256 keyed with the RSA public key",
                hs256_with_public_key(&forge(&|_, _| {})),
                TokenError::AlgorithmNotAllowed,
            ),
            (
                "unknown kid",
                forge(&|h, _| h["kid"] = json!("other")),
                TokenError::UnknownKey,
            ),
        ];
        for (what, t, want) in cases {
            assert_eq!(verify(name, &t).map(|_| ()), Err(want), "{name}: {what}");
        }
        let wrong_aud = forge(&|_, c| {
            c["aud"] = json!("https://other.api");
            c["client_id"] = json!("other-client");
        });
        assert_eq!(
            verify(name, &wrong_aud).map(|_| ()),
            Err(TokenError::WrongAudience),
            "{name}: aud"
        );
    }
}

#[test]
fn jku_x5u_and_jwk_headers_are_ignored() {
    let attacker_jwk: serde_json::Value = serde_json::to_value(
        SigningKey::ec_pem("attacker", Algorithm::ES256, idp::EC_PRIVATE)
            .unwrap()
            .public_jwk()
            .unwrap(),
    )
    .unwrap();
    for name in PROVIDERS {
        // ES256 allowed too, so that only the key set can refuse the attacker's key.
        let p = profile(name).algorithms([Algorithm::RS256, Algorithm::ES256]);
        let verifier = verifier_with(p.clone());
        // The provider's genuine token with the headers added verifies with its own key.
        let with_headers = token(name, "access_token", &p, NOW, |h, _| {
            h["jku"] = json!("https://evil.example/jwks.json");
            h["x5u"] = json!("https://evil.example/cert.pem");
        });
        assert!(verifier.verify(&with_headers, NOW).is_ok(), "{name}");
        // Signed by the attacker's key, which it names in `jwk` and `jku`.
        for kid in ["attacker", idp::KID] {
            let forged = token(name, "access_token", &p, NOW, |h, _| {
                h["alg"] = json!("ES256");
                h["kid"] = json!(kid);
                h["jwk"] = attacker_jwk.clone();
                h["jku"] = json!("https://evil.example/jwks.json");
                h["x5u"] = json!("https://evil.example/cert.pem");
            });
            let want = match kid {
                "attacker" => TokenError::UnknownKey,
                _ => TokenError::AlgorithmNotAllowed, // the real key is pinned to RS256
            };
            assert_eq!(
                verifier.verify(&forged, NOW).map(|_| ()),
                Err(want),
                "{name} {kid}"
            );
        }
    }
}

/// `token` re-headed `alg: none` with no signature.
fn none_alg(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"idp-key"}"#);
    format!("{header}.{payload}.")
}

/// `token` (header and claims) signed HS256 with the provider's RSA public key as the
/// secret.
fn hs256_with_public_key(token: &str) -> String {
    let part = |i: usize| -> serde_json::Value {
        let segment = token.split('.').nth(i).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
    };
    let (mut header, claims) = (part(0), part(1));
    header["alg"] = json!("HS256");
    let header: jsonwebtoken::Header = serde_json::from_value(header).unwrap();
    jsonwebtoken::encode(
        &header,
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(idp::RSA_PUBLIC),
    )
    .unwrap()
}

#[test]
fn a_tokens_keys_are_looked_up_in_its_own_issuers_set_only() {
    // Two providers, each with a key named "k1": Auth0's an RSA key, Keycloak's an EC key.
    let auth0 = idp::bare_profile("auth0").keys(
        KeySet::new().with(VerifyingKey::rsa_pem("k1", Algorithm::RS256, idp::RSA_PUBLIC).unwrap()),
    );
    let keycloak = idp::bare_profile("keycloak")
        .algorithms([Algorithm::ES256])
        .keys(
            KeySet::new()
                .with(VerifyingKey::ec_pem("k1", Algorithm::ES256, idp::EC_PUBLIC).unwrap()),
        );
    let verifier = Verifier::builder()
        .trust(auth0.clone())
        .trust(keycloak.clone())
        .build()
        .unwrap();
    let kc = token("keycloak", "access_token", &keycloak, NOW, |h, _| {
        h["alg"] = json!("ES256");
        h["kid"] = json!("k1");
    });
    assert!(verifier.verify(&kc, NOW).is_ok(), "Keycloak's own token");
    // The same EC-signed token claiming to be Auth0's: Auth0's "k1" is not that key.
    let as_auth0 = token("auth0", "access_token", &auth0, NOW, |h, _| {
        h["alg"] = json!("ES256");
        h["kid"] = json!("k1");
    });
    assert_eq!(
        verifier.verify(&as_auth0, NOW).map(|_| ()),
        Err(TokenError::AlgorithmNotAllowed)
    );
    // No local issuer here: a token of an issuer nobody trusts is a wrong issuer.
    let stranger = token(
        "auth0",
        "access_token",
        &TrustedIssuer::new("https://stranger/"),
        NOW,
        |h, _| {
            h["kid"] = json!("k1");
        },
    );
    assert_eq!(
        verifier.verify(&stranger, NOW).map(|_| ()),
        Err(TokenError::WrongIssuer)
    );
    assert_eq!(verifier.local_issuer(), None);
}

#[test]
fn each_providers_published_key_set_loads_its_usable_keys_and_skips_the_rest() {
    for name in PROVIDERS {
        let p = idp::bare_profile(name);
        let jwks = idp::published_jwks(name);
        let (keys, skipped) = KeySet::from_jwks(&jwks, p.allowed_algorithms());
        assert!(!keys.keys().is_empty(), "{name}: no usable key");
        assert_eq!(keys.keys().len() + skipped.len(), jwks.keys.len(), "{name}");
        assert!(
            keys.keys()
                .iter()
                .all(|k| k.algorithm() == Algorithm::RS256),
            "{name}"
        );
        // The profile builds with the provider's real keys.
        Verifier::builder().trust(p.keys(keys)).build().unwrap();
        if name == "keycloak" {
            assert_eq!(skipped.len(), 1, "the use: enc key");
            assert_eq!(skipped[0].reason, JwkSkip::NotForSignatures);
        } else {
            assert!(skipped.is_empty(), "{name}: {skipped:?}");
        }
    }
}

#[test]
fn a_trusted_issuer_can_never_be_taken_for_the_local_one() {
    let same_iss = TrustedIssuer::new(LOCAL)
        .audience("https://api.local")
        .algorithms([Algorithm::RS256])
        .keys(idp::test_keys());
    assert!(Verifier::builder()
        .issuer(LOCAL)
        .audience("https://api.local")
        .algorithms([Algorithm::HS256])
        .key(VerifyingKey::hmac("local", Algorithm::HS256, &SECRET).unwrap())
        .trust(same_iss)
        .build()
        .is_err());
    let partial_aud = profile("okta").audience(tower_stepup::token::DEFAULT_PARTIAL_AUDIENCE);
    assert!(Verifier::builder().trust(partial_aud).build().is_err());
    let twice = Verifier::builder()
        .trust(profile("okta"))
        .trust(profile("okta"))
        .build();
    assert!(twice.is_err());
    let no_aud = TrustedIssuer::new("https://idp").algorithms([Algorithm::RS256]);
    assert!(Verifier::builder().trust(no_aud).build().is_err());
}
