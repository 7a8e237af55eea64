//! The demo app's configuration as the tests build it (`examples/axum_app/app.rs`,
//! included by each test crate as `mod app`), and as the tests start its binary: fixed
//! keys and secret, loopback.
#![allow(dead_code)]

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use tower_stepup::factor::totp::TotpSecret;

/// alice's TOTP secret in the tests.
pub const ALICE_SECRET: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";
/// The demo's signing key in the tests.
pub const SIGNING_KEY: [u8; 32] = [0x51; 32];
/// The demo's sealing key in the tests.
pub const SEALING_KEY: [u8; 32] = [0x5e; 32];

/// The same fixed keys and secret for the demo binary, as its environment (bound to a
/// free loopback port).
pub fn demo_env() -> [(&'static str, String); 4] {
    [
        ("STEPUP_BIND", "127.0.0.1:0".to_owned()),
        ("STEPUP_ALICE_TOTP_SECRET", ALICE_SECRET.to_owned()),
        ("STEPUP_SIGNING_KEY", STANDARD.encode(SIGNING_KEY)),
        ("STEPUP_SEALING_KEY", STANDARD.encode(SEALING_KEY)),
    ]
}

/// The origin the demo's passkeys are for in tests (a software authenticator signs for
/// it; nothing listens there).
pub const DEMO_WEBAUTHN_ORIGIN: &str = "http://localhost:8443";

/// The public URL of the demo in process (DPoP proofs name it; nothing listens there).
pub const DEMO_PUBLIC_URL: &str = "http://127.0.0.1:3000";

/// The demo with fixed keys and alice's fixed secret: `max_age` and mfa_tokens 300 s,
/// access tokens 900 s, `max_attempts` wrong codes before a lockout, sessions idle after
/// 24 h (as the demo's defaults).
pub fn demo_config(max_attempts: u32) -> crate::app::DemoConfig {
    crate::app::DemoConfig {
        bind: "127.0.0.1:0".to_owned(),
        alice_totp_secret: TotpSecret::from_base32(ALICE_SECRET).expect("base32"),
        alice_secret_was_random: false,
        max_age_secs: 300,
        mfa_token_ttl_secs: 300,
        access_ttl_secs: 900,
        max_attempts,
        signing_key: SIGNING_KEY,
        sealing_key: SEALING_KEY,
        keys_were_random: false,
        redis_url: None,
        login_max_failures: 10,
        login_account_max_failures: 100,
        trusted_proxies: tower_stepup::complete::TrustedProxies::none(),
        session_idle_secs: 24 * 3600,
        idp: None,
        revocation_staleness_secs: None,
        webauthn_rp_id: "localhost".to_owned(),
        webauthn_origin: DEMO_WEBAUTHN_ORIGIN.to_owned(),
        allow_accounts_without_mfa: false,
        public_url: DEMO_PUBLIC_URL.to_owned(),
        test_routes: false,
    }
}
