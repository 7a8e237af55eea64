//! The passkey ceremonies of `factor::passkey` against software authenticators: a
//! device-bound one (webauthn-rs's SoftPasskey, `hwk`) and a synced one (1Password's
//! passkey crates, `swk`), honest and misbehaving.

use serde_json::Value;
use tower_stepup::factor::passkey::{
    Authenticated, Mismatch, PasskeyConfig, PasskeyError, StoredPasskey, AMR_HWK, AMR_SWK,
};

#[path = "support/authenticator.rs"]
mod authenticator;

use authenticator::{Ceremony, SoftAuthenticator};

const RP_ID: &str = "example.com";
const ORIGIN: &str = "https://login.example.com";

fn config() -> PasskeyConfig {
    PasskeyConfig::new(RP_ID, ORIGIN, "Example").unwrap()
}

/// Both kinds of authenticator, named for the assertion messages.
fn both() -> [(&'static str, SoftAuthenticator); 2] {
    [
        ("hwk", SoftAuthenticator::hwk(ORIGIN)),
        ("swk", SoftAuthenticator::swk(ORIGIN)),
    ]
}

/// Registers a passkey for `sub` with `auth`, run as `how` says.
async fn try_register(
    config: &PasskeyConfig,
    auth: &mut SoftAuthenticator,
    sub: &str,
    how: &Ceremony,
) -> Result<StoredPasskey, PasskeyError> {
    let (options, state) = config.start_registration(sub, sub, &[]).unwrap();
    let response = auth.register_with(&options, how).await.unwrap();
    config.finish_registration(&state, &response)
}

async fn register(
    config: &PasskeyConfig,
    auth: &mut SoftAuthenticator,
    sub: &str,
) -> StoredPasskey {
    try_register(config, auth, sub, &Ceremony::default())
        .await
        .unwrap()
}

/// Authenticates with one of `creds` through `auth`, run as `how` says.
async fn try_authenticate(
    config: &PasskeyConfig,
    auth: &mut SoftAuthenticator,
    creds: &[StoredPasskey],
    how: &Ceremony,
) -> Result<Authenticated, PasskeyError> {
    let (options, state) = config.start_authentication(creds).unwrap();
    let response = auth.authenticate_with(&options, how).await.unwrap();
    config.finish_authentication(&state, &response, creds)
}

async fn authenticate(
    config: &PasskeyConfig,
    auth: &mut SoftAuthenticator,
    creds: &[StoredPasskey],
) -> Result<Authenticated, PasskeyError> {
    try_authenticate(config, auth, creds, &Ceremony::default()).await
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn a_device_bound_passkey_registers_and_authenticates_as_hwk() {
    let c = config();
    let mut auth = SoftAuthenticator::hwk(ORIGIN);
    let stored = register(&c, &mut auth, "alice").await;
    assert!(!stored.backup_eligible());
    assert_eq!(stored.amr(), AMR_HWK);

    let ok = authenticate(&c, &mut auth, std::slice::from_ref(&stored))
        .await
        .unwrap();
    assert_eq!(ok.credential_id, stored.credential_id());
    assert!(ok.user_verified);
    assert!(!ok.backup_eligible);
    assert_eq!(ok.amr(), "hwk");
    // SoftPasskey counts assertions: the counter went from 0 to 1, so save the update.
    let updated = ok.updated.expect("a new signature counter");
    assert_eq!(updated.credential_id(), stored.credential_id());
    assert_eq!(updated.amr(), "hwk");

    // The next assertion (counter 2) passes against the saved counter.
    let again = authenticate(&c, &mut auth, &[updated]).await.unwrap();
    assert!(again.updated.is_some());
}

#[tokio::test]
async fn a_synced_passkey_registers_and_authenticates_as_swk() {
    let c = config();
    let mut auth = SoftAuthenticator::swk(ORIGIN);
    let stored = register(&c, &mut auth, "alice").await;
    assert!(stored.backup_eligible());
    assert_eq!(stored.amr(), AMR_SWK);

    let ok = authenticate(&c, &mut auth, std::slice::from_ref(&stored))
        .await
        .unwrap();
    assert_eq!(ok.credential_id, stored.credential_id());
    assert!(ok.user_verified && ok.backup_eligible);
    assert_eq!(ok.amr(), "swk");
    // A zero counter and unchanged backup flags: nothing to save.
    assert!(ok.updated.is_none());
    // And a zero counter stays acceptable.
    let again = authenticate(&c, &mut auth, &[stored]).await.unwrap();
    assert!(again.updated.is_none());
}

#[tokio::test]
async fn localhost_works_for_the_demo() {
    let c = PasskeyConfig::new("localhost", "http://localhost:3000", "Demo").unwrap();
    for (kind, mut auth) in [
        ("hwk", SoftAuthenticator::hwk("http://localhost:3000")),
        ("swk", SoftAuthenticator::swk("http://localhost:3000")),
    ] {
        let stored = register(&c, &mut auth, "alice").await;
        let ok = authenticate(&c, &mut auth, &[stored]).await.unwrap();
        assert_eq!(ok.amr(), kind);
    }
}

#[tokio::test]
async fn options_list_excluded_and_allowed_credentials() {
    let c = config();
    let mut hwk = SoftAuthenticator::hwk(ORIGIN);
    let mut swk = SoftAuthenticator::swk(ORIGIN);
    let first = register(&c, &mut hwk, "alice").await;
    let second = register(&c, &mut swk, "alice").await;
    let creds = [first.clone(), second.clone()];
    let expected = vec![b64(first.credential_id()), b64(second.credential_id())];

    let (options, _) = c.start_registration("alice", "alice", &creds).unwrap();
    assert_eq!(ids(&options["publicKey"]["excludeCredentials"]), expected);
    // An authenticator that holds an excluded credential refuses to make another.
    let refused = swk.register(&options).await;
    // CTAP2_ERR_CREDENTIAL_EXCLUDED (0x19).
    assert_eq!(refused.unwrap_err(), "AuthenticatorError(25)");

    let (options, _) = c.start_authentication(&creds).unwrap();
    assert_eq!(options["publicKey"]["userVerification"], "required");
    assert_eq!(options["publicKey"]["rpId"], RP_ID);
    assert_eq!(ids(&options["publicKey"]["allowCredentials"]), expected);
    // Either passkey of the user can answer.
    assert_eq!(
        authenticate(&c, &mut hwk, &creds).await.unwrap().amr(),
        "hwk"
    );
    assert_eq!(
        authenticate(&c, &mut swk, &creds).await.unwrap().amr(),
        "swk"
    );
}

#[tokio::test]
async fn another_origin_is_refused() {
    let c = config();
    // A phishing page under the same RP ID, and the right host on another port.
    for origin in ["https://evil.example.com", "https://login.example.com:8443"] {
        let how = Ceremony::at_origin(origin);
        for (kind, mut auth) in both() {
            let err = try_register(&c, &mut auth, "alice", &how)
                .await
                .unwrap_err();
            assert_eq!(
                err,
                PasskeyError::CeremonyFailed(Mismatch::Origin),
                "{kind} {origin}"
            );
            assert!(err.is_client_error());

            let stored = register(&c, &mut auth, "alice").await;
            let err = try_authenticate(&c, &mut auth, &[stored], &how)
                .await
                .unwrap_err();
            assert_eq!(
                err,
                PasskeyError::CeremonyFailed(Mismatch::Origin),
                "{kind} {origin}"
            );
        }
    }
}

#[tokio::test]
async fn another_rp_id_is_refused() {
    let c = config();
    // The origin is right; the credential is scoped to the subdomain, not to example.com.
    let how = Ceremony::with_rp_id("login.example.com");
    for (kind, mut auth) in both() {
        let err = try_register(&c, &mut auth, "alice", &how)
            .await
            .unwrap_err();
        assert_eq!(err, PasskeyError::CeremonyFailed(Mismatch::RpId), "{kind}");

        let stored = register(&c, &mut auth, "alice").await;
        let err = try_authenticate(&c, &mut auth, &[stored], &how)
            .await
            .unwrap_err();
        assert_eq!(err, PasskeyError::CeremonyFailed(Mismatch::RpId), "{kind}");
    }
}

#[tokio::test]
async fn missing_user_verification_is_refused() {
    let c = config();
    let how = Ceremony::without_user_verification();
    for (kind, mut auth) in both() {
        let err = try_register(&c, &mut auth, "alice", &how)
            .await
            .unwrap_err();
        assert_eq!(err, PasskeyError::UserNotVerified, "{kind}");
        assert!(err.is_client_error());

        let stored = register(&c, &mut auth, "alice").await;
        let err = try_authenticate(&c, &mut auth, &[stored], &how)
            .await
            .unwrap_err();
        assert_eq!(err, PasskeyError::UserNotVerified, "{kind}");
    }
}

#[tokio::test]
async fn another_users_credential_is_refused() {
    let c = config();
    for (kind, mut mallory) in both() {
        let mut alices = SoftAuthenticator::swk(ORIGIN);
        let alice = register(&c, &mut alices, "alice").await;
        let bob = register(&c, &mut mallory, "bob").await;

        // Alice's challenge, answered by Bob's passkey: the attacker's browser swaps the
        // allowed credentials for Bob's.
        let (mut options, state) = c
            .start_authentication(std::slice::from_ref(&alice))
            .unwrap();
        let (bobs, _) = c.start_authentication(std::slice::from_ref(&bob)).unwrap();
        options["publicKey"]["allowCredentials"] = bobs["publicKey"]["allowCredentials"].clone();
        let response = mallory.authenticate(&options).await.unwrap();
        let err = c
            .finish_authentication(&state, &response, std::slice::from_ref(&alice))
            .unwrap_err();
        assert_eq!(err, PasskeyError::UnknownCredential, "{kind}");
        // Also when the caller passes both users' passkeys at the finish: the state only
        // allows Alice's.
        let err = c
            .finish_authentication(&state, &response, &[alice.clone(), bob.clone()])
            .unwrap_err();
        assert_eq!(err, PasskeyError::UnknownCredential, "{kind}");
    }
}

#[tokio::test]
async fn a_passkey_removed_since_the_challenge_is_refused() {
    let c = config();
    let mut auth = SoftAuthenticator::swk(ORIGIN);
    let kept = register(&c, &mut SoftAuthenticator::swk(ORIGIN), "alice").await;
    let removed = register(&c, &mut auth, "alice").await;
    let (options, state) = c.start_authentication(&[kept.clone(), removed]).unwrap();
    let response = auth.authenticate(&options).await.unwrap();
    let err = c
        .finish_authentication(&state, &response, &[kept])
        .unwrap_err();
    assert_eq!(err, PasskeyError::UnknownCredential);
}

#[tokio::test]
async fn a_counter_that_went_backwards_is_refused() {
    let c = config();
    let mut original = SoftAuthenticator::swk_with_counter(ORIGIN);
    let stored = register(&c, &mut original, "alice").await;
    let mut clone = original.fork();

    let ok = authenticate(&c, &mut original, &[stored]).await.unwrap();
    let saved = ok.updated.expect("the counter grew from 0 to 1");
    assert_eq!(saved.amr(), "swk");
    // The clone still signs with counter 1, which the server has seen.
    let err = authenticate(&c, &mut clone, std::slice::from_ref(&saved))
        .await
        .unwrap_err();
    assert_eq!(err, PasskeyError::CounterRegression);
    assert!(err.is_client_error());
    // The original goes on (counter 2).
    authenticate(&c, &mut original, &[saved]).await.unwrap();
}

#[tokio::test]
async fn a_response_for_another_challenge_is_refused() {
    let c = config();
    for (kind, mut auth) in both() {
        // Registration: the response to one start, finished with another's state.
        let (options, _) = c.start_registration("alice", "alice", &[]).unwrap();
        let (_, other_state) = c.start_registration("alice", "alice", &[]).unwrap();
        let response = auth.register(&options).await.unwrap();
        let err = c.finish_registration(&other_state, &response).unwrap_err();
        assert_eq!(
            err,
            PasskeyError::CeremonyFailed(Mismatch::Challenge),
            "{kind}"
        );

        // Authentication: two challenges for the same passkey (two mfa_tokens).
        let stored = register(&c, &mut auth, "alice").await;
        let creds = std::slice::from_ref(&stored);
        let (options, _) = c.start_authentication(creds).unwrap();
        let (_, other_state) = c.start_authentication(creds).unwrap();
        let response = auth.authenticate(&options).await.unwrap();
        let err = c
            .finish_authentication(&other_state, &response, creds)
            .unwrap_err();
        assert_eq!(
            err,
            PasskeyError::CeremonyFailed(Mismatch::Challenge),
            "{kind}"
        );
    }
}

#[tokio::test]
async fn malformed_responses_are_refused() {
    let c = config();
    for (kind, mut auth) in both() {
        let (options, state) = c.start_registration("alice", "alice", &[]).unwrap();
        let good = auth.register(&options).await.unwrap();
        let mut bad_cbor = good.clone();
        bad_cbor["response"]["attestationObject"] = b64(b"\xff\x00 not cbor").into();
        let mut bad_client_data = good.clone();
        bad_client_data["response"]["clientDataJSON"] = b64(b"not json").into();
        let mut not_base64 = good.clone();
        not_base64["response"]["clientDataJSON"] = "%%%".into();
        let mut no_response = good.clone();
        no_response["response"] = Value::Null;
        for (what, response) in [
            ("attestation object", bad_cbor),
            ("client data", bad_client_data),
            ("base64", not_base64),
            ("no response", no_response),
            ("not an object", Value::from(42)),
        ] {
            let err = c.finish_registration(&state, &response).unwrap_err();
            assert_eq!(err, PasskeyError::MalformedResponse, "{kind}: {what}");
            assert!(err.is_client_error());
        }
        // The state is still good for the untouched response.
        let stored = c.finish_registration(&state, &good).unwrap();

        let creds = std::slice::from_ref(&stored);
        let (options, state) = c.start_authentication(creds).unwrap();
        let good = auth.authenticate(&options).await.unwrap();
        let mut bad_auth_data = good.clone();
        bad_auth_data["response"]["authenticatorData"] = b64(b"short").into();
        let mut bad_client_data = good.clone();
        bad_client_data["response"]["clientDataJSON"] = b64(b"{").into();
        for (what, response) in [
            ("authenticator data", bad_auth_data),
            ("client data", bad_client_data),
            ("empty object", serde_json::json!({})),
        ] {
            let err = c
                .finish_authentication(&state, &response, creds)
                .unwrap_err();
            assert_eq!(err, PasskeyError::MalformedResponse, "{kind}: {what}");
        }
    }
}

#[tokio::test]
async fn a_forged_signature_is_refused() {
    let c = config();
    for (kind, mut auth) in both() {
        let stored = register(&c, &mut auth, "alice").await;
        let creds = std::slice::from_ref(&stored);
        let (options, state) = c.start_authentication(creds).unwrap();
        let mut response = auth.authenticate(&options).await.unwrap();
        // Another valid-looking ECDSA signature: the one of a second assertion.
        let (options2, _) = c.start_authentication(creds).unwrap();
        let other = auth.authenticate(&options2).await.unwrap();
        response["response"]["signature"] = other["response"]["signature"].clone();
        let err = c
            .finish_authentication(&state, &response, creds)
            .unwrap_err();
        assert_eq!(
            err,
            PasskeyError::CeremonyFailed(Mismatch::Signature),
            "{kind}"
        );
    }
}

#[tokio::test]
async fn stored_passkeys_and_states_round_trip_through_bytes() {
    let c = config();
    for (kind, mut auth) in both() {
        let (options, state) = c.start_registration("alice", "alice", &[]).unwrap();
        let response = auth.register(&options).await.unwrap();
        let response: Value = serde_json::from_str(&response.to_string()).unwrap();
        let stored = c.finish_registration(&state, &response).unwrap();

        let bytes = stored.to_bytes().unwrap();
        let loaded = StoredPasskey::from_bytes(&bytes).unwrap();
        assert_eq!(loaded.credential_id(), stored.credential_id(), "{kind}");
        assert_eq!(loaded.backup_eligible(), stored.backup_eligible(), "{kind}");
        assert_eq!(loaded.amr(), kind);
        assert_eq!(loaded.to_bytes().unwrap(), bytes);

        let ok = authenticate(&c, &mut auth, &[loaded]).await.unwrap();
        assert_eq!(ok.amr(), kind);
        if let Some(updated) = ok.updated {
            let reloaded = StoredPasskey::from_bytes(&updated.to_bytes().unwrap()).unwrap();
            authenticate(&c, &mut auth, &[reloaded]).await.unwrap();
        }
    }
}

/// Documents why the caller must consume a state atomically: webauthn-rs accepts the same
/// response with the same state again.
#[tokio::test]
async fn a_state_is_not_single_use_by_itself() {
    let c = config();
    let mut auth = SoftAuthenticator::swk(ORIGIN);
    let stored = register(&c, &mut auth, "alice").await;
    let creds = std::slice::from_ref(&stored);
    let (options, state) = c.start_authentication(creds).unwrap();
    let response = auth.authenticate(&options).await.unwrap();
    c.finish_authentication(&state, &response, creds).unwrap();
    c.finish_authentication(&state, &response, creds).unwrap();
}
