//! Identity providers as the tests play them: the ready-made profiles, their tokens
//! (the documented shapes in `tests/fixtures/idp/<name>/`, re-signed with a test key),
//! and their published key sets.
#![allow(dead_code)]

use jsonwebtoken::{EncodingKey, Header};
use serde_json::{json, Value};
use tower_stepup::token::JwkSet;
use tower_stepup::{Algorithm, KeySet, TrustedIssuer, VerifyingKey};

pub const RSA_PRIVATE: &[u8] = include_bytes!("../keys/rsa_private.pem");
pub const RSA_PUBLIC: &[u8] = include_bytes!("../keys/rsa_public.pem");
pub const EC_PRIVATE: &[u8] = include_bytes!("../keys/ec_private.pem");
pub const EC_PUBLIC: &[u8] = include_bytes!("../keys/ec_public.pem");

/// The `kid` the test key signs under.
pub const KID: &str = "idp-key";

/// The providers with a ready-made profile.
pub const PROVIDERS: [&str; 5] = ["auth0", "keycloak", "okta", "entra", "cognito"];

/// The profile of `name`, for the API the fixture tokens are made for, with the test key
/// as its only key.
pub fn profile(name: &str) -> TrustedIssuer {
    bare_profile(name).keys(test_keys())
}

/// The profile of `name` without keys.
pub fn bare_profile(name: &str) -> TrustedIssuer {
    match name {
        "auth0" => TrustedIssuer::auth0(
            "example-tenant.us.auth0.com",
            "https://api.example.com/orders",
        ),
        "keycloak" => TrustedIssuer::keycloak("https://kc.example/realms/demo", "orders-api"),
        "okta" => TrustedIssuer::okta("dev-1.okta.com", "default", "api://default"),
        "entra" => TrustedIssuer::entra(
            "9122040d-6c67-4c5b-b112-36a304b66dad",
            "6e74172b-be56-4843-9ff4-e66a39bb12e3",
        ),
        "cognito" => TrustedIssuer::cognito("us-east-1", "us-east-1_Example", [COGNITO_CLIENT]),
        other => panic!("no profile {other}"),
    }
}

/// The app client of the Cognito fixtures.
pub const COGNITO_CLIENT: &str = "6i0o6sela15jdctgeflkmj4gjo";

/// The test key, as the provider's published key.
pub fn test_keys() -> KeySet {
    KeySet::new().with(VerifyingKey::rsa_pem(KID, Algorithm::RS256, RSA_PUBLIC).unwrap())
}

/// A fixture file of `name` as JSON.
pub fn fixture(name: &str, file: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/idp/{name}/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// The provider's published key set (a real one).
pub fn published_jwks(name: &str) -> JwkSet {
    serde_json::from_value(fixture(name, "jwks.json")).unwrap()
}

/// A token of `name`'s documented shape (`access_token` or `id_token`), issued by
/// `profile`'s issuer at `now`, living 10 minutes, signed by the test key: the header and
/// claims as documented, with `iss`, the times and `kid` rewritten; `edit` changes
/// anything else.
pub fn token(
    name: &str,
    kind: &str,
    profile: &TrustedIssuer,
    now: u64,
    edit: impl FnOnce(&mut Value, &mut Value),
) -> String {
    let fixture = fixture(name, &format!("{kind}.json"));
    let (mut header, mut claims) = (fixture["header"].clone(), fixture["claims"].clone());
    header["kid"] = json!(KID);
    claims["iss"] = json!(profile.issuer());
    claims["iat"] = json!(now);
    claims["exp"] = json!(now + 600);
    for stamp in ["nbf", "auth_time"] {
        if claims.get(stamp).is_some() {
            claims[stamp] = json!(now);
        }
    }
    edit(&mut header, &mut claims);
    sign(&header, &claims)
}

/// Signs `claims` under `header` (whose `alg` says how) with the test RSA key, or the EC
/// key for an ES algorithm.
pub fn sign(header: &Value, claims: &Value) -> String {
    let header: Header = serde_json::from_value(header.clone()).unwrap();
    let key = match header.alg {
        Algorithm::ES256 => EncodingKey::from_ec_pem(EC_PRIVATE).unwrap(),
        _ => EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    };
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}
