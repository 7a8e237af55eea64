//! What judging a second factor costs at verify, the passkey against a TOTP code and
//! against the one signature check at its core, measured in the same run (group
//! `second_factor_check`):
//!
//! - `totp`: [`totp::verify`] of the right code for the current step, the function verify
//!   judges a code with (three HMAC-SHA1 codes compared in constant time).
//! - `passkey_assertion`: [`PasskeyConfig::finish_authentication`] of a right assertion
//!   (the function verify judges a passkey with): the ceremony state read back from its
//!   stored bytes, the response from its JSON value, then webauthn-rs's finish (client
//!   data type and challenge, origin, RP ID hash, user presence and verification flags,
//!   backup flags, the ES256 signature, the signature counter), the user's credential
//!   found and the passkey with its new counter made. The authenticator is the tests'
//!   device-bound one (`SoftAuthenticator::hwk`, webauthn-rs's SoftPasskey, P-256): its
//!   counter moves at every assertion, the costlier case (an updated passkey).
//! - `es256_verify`: the baseline, one raw ES256 verification (P-256 ECDSA over SHA-256,
//!   DER signature) of the bytes an assertion signs (its authenticator data and the
//!   SHA-256 of its client data), with p256 0.14 through `passkey-crypto`'s RustCrypto
//!   backend (a dev-dependency already): the same p256 and ecdsa crates webauthn-rs
//!   verifies with (through `crypto-glue`), so the ratio is webauthn-rs's and this
//!   crate's overhead over the signature itself.
//!
//! Timed: those calls alone, and a check that each succeeded. Not timed: the user's
//! passkey registration (once), and per iteration (`iter_batched`) a fresh challenge
//! (`start_authentication`) and a fresh assertion signed by the authenticator for it;
//! the TOTP code and the signature are made once. Before timing, each check is shown to
//! refuse a wrong proof (a tampered signature, a wrong code), so the bench times real
//! checks.
//!
//! A passkey verify at the endpoint, counted from the code (`src/complete/verify.rs`,
//! `src/complete/passkey.rs`, `src/complete/proof.rs`), makes 3 store round trips:
//! `reserve_challenge` (the attempt), `get` of the pending challenge state (`pkc:{sub}`),
//! `settle_challenge` (token and assertion spent, attempt settled, session started or
//! stepped up). When the counter moves (device-bound passkeys; synced ones keep 0), the
//! settle does not start the session: the passkey is saved with its new counter first
//! (`Factors::update_factor`, a write to the application's factor directory, not the
//! store), then the session is a store step of its own (`refresh_create`, or
//! `refresh_elevate` at a step-up): 4 store round trips and one directory write. Every
//! verify also reads the user's factors from the directory (`Factors::factors`). A TOTP
//! verify makes 2 (reserve, settle; pinned by `tests/round_trips.rs`).
//!
//! Measured on 2026-12-07, 2-core machine (shared with other builds, load about 4), with
//! `cargo bench --all-features --bench passkey`, criterion's medians: `totp` 0.69 µs,
//! `passkey_assertion` 158 µs, `es256_verify` 149 µs; `passkey_assertion`/`es256_verify`
//! ≈ 1.06, `passkey_assertion`/`totp` ≈ 228 (a run before it: 0.66 µs, 164 µs, 161 µs;
//! 1.02 and 248). The passkey check is one P-256 verification and 3 to 9 µs of
//! webauthn-rs's parsing and checks around it; the absolute figures carry the load.

use std::hint::black_box;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use passkey_crypto::coset::iana;
use passkey_crypto::rust_crypto::RustCryptoBackend;
use passkey_crypto::{CryptoBackend, PublicKeyT, SecretKeyT};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::runtime::Runtime;
use tower_stepup::factor::passkey::{PasskeyConfig, StoredPasskey};
use tower_stepup::factor::totp::{self, TotpSecret};
use webauthn_rs::prelude::COSEAlgorithm;

#[path = "../tests/support/authenticator.rs"]
mod authenticator;

use authenticator::SoftAuthenticator;

const RP_ID: &str = "example.com";
const ORIGIN: &str = "https://login.example.com";
const T0: u64 = 1_700_000_000;

/// A relying party, a device-bound authenticator and the passkey it registered.
struct Passkeys {
    rt: Runtime,
    config: PasskeyConfig,
    auth: SoftAuthenticator,
    creds: Vec<StoredPasskey>,
}

impl Passkeys {
    fn new() -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = PasskeyConfig::new(RP_ID, ORIGIN, "Bench").unwrap();
        let mut auth = SoftAuthenticator::hwk(ORIGIN);
        let (options, state) = config.start_registration("alice", "alice", &[]).unwrap();
        let response = rt.block_on(auth.register(&options)).unwrap();
        let stored = config.finish_registration(&state, &response).unwrap();
        assert_eq!(
            *stored.passkey().cred_algorithm(),
            COSEAlgorithm::ES256,
            "the baseline is ES256: so must the passkey be"
        );
        assert!(!stored.backup_eligible(), "a device-bound passkey");
        Self {
            rt,
            config,
            auth,
            creds: vec![stored],
        }
    }
}

/// A fresh challenge's state and `auth`'s assertion for it.
fn assertion(
    rt: &Runtime,
    config: &PasskeyConfig,
    auth: &mut SoftAuthenticator,
    creds: &[StoredPasskey],
) -> (Vec<u8>, Value) {
    let (options, state) = config.start_authentication(creds).unwrap();
    let response = rt.block_on(auth.authenticate(&options)).unwrap();
    (state, response)
}

/// Judges one assertion: `Ok` when it passed with the user verified and its counter
/// moved, else why not.
fn judge(
    config: &PasskeyConfig,
    creds: &[StoredPasskey],
    state: &[u8],
    response: &Value,
) -> Result<(), String> {
    let done = config
        .finish_authentication(state, response, creds)
        .map_err(|e| e.to_string())?;
    if done.user_verified && done.updated.is_some() {
        Ok(())
    } else {
        Err("no user verification, or no new counter".into())
    }
}

/// A base64url field of an assertion's `response`.
fn field(response: &Value, name: &str) -> Vec<u8> {
    let text = response["response"][name].as_str().unwrap();
    URL_SAFE_NO_PAD.decode(text).unwrap()
}

fn second_factor_check(c: &mut Criterion) {
    let Passkeys {
        rt,
        config,
        mut auth,
        creds,
    } = Passkeys::new();
    let mut fresh = || assertion(&rt, &config, &mut auth, &creds);

    // TOTP (RFC 6238's secret): the code of the current step, right; another refused.
    let secret = TotpSecret::from_bytes(b"12345678901234567890".to_vec()).unwrap();
    let code = totp::code_at(&secret, totp::step_at(T0));
    assert_eq!(
        totp::verify(&secret, &code, T0),
        Some(totp::step_at(T0)),
        "the right code passes"
    );
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    assert_eq!(totp::verify(&secret, &wrong, T0), None, "a wrong code");

    // The passkey: a right assertion passes; the same with its signature's last byte
    // flipped is refused.
    let (state, response) = fresh();
    let mut tampered = response.clone();
    let mut signature = field(&response, "signature");
    if let Some(last) = signature.last_mut() {
        *last ^= 1;
    }
    tampered["response"]["signature"] = Value::from(URL_SAFE_NO_PAD.encode(&signature));
    assert!(
        judge(&config, &creds, &state, &tampered).is_err(),
        "tampered"
    );
    let (state, right) = fresh();
    assert_eq!(judge(&config, &creds, &state, &right), Ok(()));

    // ES256: what an assertion signs (authenticator data ‖ SHA-256(client data)),
    // signed by a fresh P-256 key; a flipped message byte is refused.
    let mut message = field(&response, "authenticatorData");
    message.extend_from_slice(&Sha256::digest(field(&response, "clientDataJSON")));
    let mut key = RustCryptoBackend
        .generate_key(iana::Algorithm::ES256)
        .unwrap();
    let der = key.sign(&message);
    let public = key.public_key();
    assert!(public.verify(&message, &der).is_ok(), "the right signature");
    let mut other = message.clone();
    other[0] ^= 1;
    assert!(public.verify(&other, &der).is_err(), "another message");

    let mut g = c.benchmark_group("second_factor_check");
    g.bench_function("totp", |b| {
        b.iter(|| {
            let step = totp::verify(black_box(&secret), black_box(&code), black_box(T0));
            assert!(step.is_some());
        })
    });
    g.bench_function("passkey_assertion", |b| {
        b.iter_batched(
            &mut fresh,
            |(state, response)| {
                let judged = judge(&config, &creds, black_box(&state), black_box(&response));
                assert_eq!(judged, Ok(()));
                (state, response)
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("es256_verify", |b| {
        b.iter(|| {
            let ok = public.verify(black_box(&message), black_box(&der));
            assert!(ok.is_ok());
        })
    });
    g.finish();
}

criterion_group!(benches, second_factor_check);
criterion_main!(benches);
