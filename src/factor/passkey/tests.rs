//! Configuration, user handles, options and errors. The ceremonies themselves, with
//! software authenticators, are in tests/passkey_ceremony.rs.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

use super::*;

fn config() -> PasskeyConfig {
    PasskeyConfig::new("example.com", "https://login.example.com", "Example").unwrap()
}

#[test]
fn a_domain_origin_under_the_rp_id_is_accepted() {
    let c = config();
    assert_eq!(c.rp_id(), "example.com");
    assert_eq!(c.origin(), "https://login.example.com");
    let same = PasskeyConfig::new("example.com", "https://example.com", "Example").unwrap();
    assert_eq!(same.origin(), "https://example.com");
    let dev = PasskeyConfig::new("localhost", "http://localhost:3000", "Demo").unwrap();
    assert_eq!(dev.origin(), "http://localhost:3000");
}

#[test]
fn unusable_configurations_are_refused() {
    let refused = [
        ("example.com", "https://127.0.0.1", "IP origin"),
        ("127.0.0.1", "https://127.0.0.1", "IP RP ID and origin"),
        ("example.com", "https://[::1]:8443", "IPv6 origin"),
        (
            "example.com",
            "https://example.org",
            "origin outside the RP ID",
        ),
        (
            "example.com",
            "https://notexample.com",
            "suffix without a dot",
        ),
        (
            "login.example.com",
            "https://example.com",
            "origin above the RP ID",
        ),
        ("example.com", "http://login.example.com", "plain http"),
        ("example.com", "ftp://login.example.com", "another scheme"),
        ("example.com", "https://login.example.com/app", "a path"),
        ("example.com", "https://login.example.com/?a=1", "a query"),
        (
            "example.com",
            "https://user@login.example.com",
            "credentials",
        ),
        ("example.com", "login.example.com", "not a URL"),
        (
            "example.com:443",
            "https://example.com",
            "a port in the RP ID",
        ),
    ];
    for (rp_id, origin, why) in refused {
        let err = PasskeyConfig::new(rp_id, origin, "Example").unwrap_err();
        assert!(matches!(err, PasskeyError::Config(_)), "{why}: {err:?}");
        assert!(!err.is_client_error(), "{why}");
    }
    assert_eq!(
        PasskeyConfig::new("example.com", "https://example.com", "").unwrap_err(),
        PasskeyError::Config("the RP name is empty")
    );
}

#[test]
fn user_handles_are_stable_distinct_and_not_the_id() {
    let a = user_handle("alice");
    assert_eq!(a, user_handle("alice"));
    assert_ne!(a, user_handle("bob"));
    assert_ne!(a, user_handle("alice "));
    assert_ne!(&a.as_bytes()[..5], b"alice");
    // Pinned: a stored passkey's user handle must never change across versions.
    let digest = Sha256::new()
        .chain_update(b"tower-stepup passkey user handle v1\0")
        .chain_update(b"alice")
        .finalize();
    assert_eq!(a.as_bytes()[..], digest[..16]);
}

#[test]
fn registration_options_require_user_verification_and_name_the_handle() {
    let (options, state) = config()
        .start_registration("user-1", "alice@example.com", &[])
        .unwrap();
    let pk = &options["publicKey"];
    assert_eq!(pk["rp"]["id"], "example.com");
    assert_eq!(pk["rp"]["name"], "Example");
    assert_eq!(pk["user"]["name"], "alice@example.com");
    assert_eq!(pk["authenticatorSelection"]["userVerification"], "required");
    assert_eq!(pk["attestation"], "none");
    let handle = URL_SAFE_NO_PAD.encode(user_handle("user-1").as_bytes());
    assert_eq!(pk["user"]["id"], handle.as_str());
    assert!(pk["challenge"].as_str().is_some_and(|c| c.len() >= 43));
    assert!(!state.is_empty());
    // A fresh challenge each time.
    let (again, _) = config()
        .start_registration("user-1", "alice@example.com", &[])
        .unwrap();
    assert_ne!(again["publicKey"]["challenge"], pk["challenge"]);
}

#[test]
fn starting_needs_a_user_name_and_a_passkey() {
    assert_eq!(
        config().start_registration("user-1", "", &[]).unwrap_err(),
        PasskeyError::EmptyUserName
    );
    let err = config().start_authentication(&[]).unwrap_err();
    assert_eq!(err, PasskeyError::NoCredentials);
    assert!(err.is_client_error());
}

#[test]
fn unreadable_state_and_stored_passkeys_are_server_errors() {
    let c = config();
    let response = serde_json::json!({});
    for state in [&b""[..], b"{}", b"not json", b"{\"rs\":1}"] {
        let err = c.finish_registration(state, &response).unwrap_err();
        assert_eq!(err, PasskeyError::StateUnreadable);
        assert!(!err.is_client_error());
        let err = c.finish_authentication(state, &response, &[]).unwrap_err();
        assert_eq!(err, PasskeyError::StateUnreadable);
    }
    // The state of one ceremony is not the state of the other.
    let (_, reg_state) = c.start_registration("user-1", "alice", &[]).unwrap();
    assert_eq!(
        c.finish_authentication(&reg_state, &response, &[])
            .unwrap_err(),
        PasskeyError::StateUnreadable
    );
    assert_eq!(
        StoredPasskey::from_bytes(b"{\"cred\":{}}").unwrap_err(),
        PasskeyError::StateUnreadable
    );
}

#[test]
fn a_malformed_response_is_a_client_error() {
    let c = config();
    let (_, state) = c.start_registration("user-1", "alice", &[]).unwrap();
    for response in [
        serde_json::json!({}),
        serde_json::json!("credential"),
        serde_json::json!({"id": "x", "rawId": "!!", "type": "public-key", "response": {}}),
    ] {
        let err = c.finish_registration(&state, &response).unwrap_err();
        assert_eq!(err, PasskeyError::MalformedResponse, "{response}");
        assert!(err.is_client_error());
    }
}

#[test]
fn webauthn_errors_map_to_their_kind() {
    use WebauthnError as W;
    let cases = [
        (
            W::InvalidRPOrigin,
            PasskeyError::CeremonyFailed(Mismatch::Origin),
        ),
        (
            W::CredentialCrossOrigin,
            PasskeyError::CeremonyFailed(Mismatch::Origin),
        ),
        (
            W::InvalidRPIDHash,
            PasskeyError::CeremonyFailed(Mismatch::RpId),
        ),
        (
            W::MismatchedChallenge,
            PasskeyError::CeremonyFailed(Mismatch::Challenge),
        ),
        (
            W::InvalidClientDataType,
            PasskeyError::CeremonyFailed(Mismatch::ClientDataType),
        ),
        (
            W::AuthenticationFailure,
            PasskeyError::CeremonyFailed(Mismatch::Signature),
        ),
        (
            W::UserNotPresent,
            PasskeyError::CeremonyFailed(Mismatch::UserNotPresent),
        ),
        (
            W::CredentialBackupEligibilityInconsistent,
            PasskeyError::CeremonyFailed(Mismatch::BackupFlags),
        ),
        (
            W::CredentialAlteredAlgFromRequest,
            PasskeyError::CeremonyFailed(Mismatch::CredentialRefused),
        ),
        (
            W::AttestationNotSupported,
            PasskeyError::CeremonyFailed(Mismatch::Other),
        ),
        (W::CredentialNotFound, PasskeyError::UnknownCredential),
        (W::UserNotVerified, PasskeyError::UserNotVerified),
        (
            W::CredentialPossibleCompromise,
            PasskeyError::CounterRegression,
        ),
        (W::ParseNOMFailure, PasskeyError::MalformedResponse),
        (W::COSEKeyInvalidType, PasskeyError::MalformedResponse),
    ];
    for (webauthn, ours) in cases {
        let mapped = error::from_finish(webauthn);
        assert_eq!(mapped, ours);
        assert!(mapped.is_client_error(), "{ours:?}");
    }
}

#[test]
fn error_codes_and_messages_are_stable_and_plain() {
    assert_eq!(PasskeyError::CounterRegression.code(), "counter_regression");
    assert_eq!(
        PasskeyError::CeremonyFailed(Mismatch::RpId).to_string(),
        "WebAuthn ceremony failed: wrong RP ID"
    );
    assert_eq!(PasskeyError::StateUnreadable.code(), "state_unreadable");
    assert_eq!(PasskeyError::NoCredentials.code(), "no_passkey");
}
