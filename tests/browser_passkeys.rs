//! Passkeys in the demo's pages, in a real browser: headless Chromium over WebDriver with
//! the WebDriver virtual authenticator (WebAuthn §11: CTAP2, `internal`, resident keys,
//! user verification), against the demo served at `http://localhost:<port>` with its
//! passkeys for that origin. alice registers a passkey on the Security page, steps up to
//! `/admin` with it (a TOTP session is not enough there), and signs in with it as her
//! second factor; the error states (a cancelled ceremony, a device that already holds a
//! passkey, a device without one) are shown and open nothing. Screenshots go to
//! `target/browser-screenshots-passkeys/` and `target/browser-screenshots-passkey-errors/`.
//!
//! Needs `chromium` and `chromedriver` (`support/browser.rs`). Without them the test
//! fails, never skips.

use tower_stepup::complete::Factors;
use tower_stepup::factor::stored::kind;
use tower_stepup::Clock;

#[allow(dead_code)]
#[path = "../examples/axum_app/app.rs"]
mod app;
#[path = "support/browser.rs"]
mod browser;
#[path = "support/codes.rs"]
mod codes;
#[path = "support/demo_app.rs"]
mod demo_app;
#[path = "support/demo_config.rs"]
mod demo_config;
#[path = "support/reply.rs"]
mod reply;

use browser::{Authenticator, Browser};
use demo_app::Site;

async fn site() -> Site {
    demo_app::site(demo_config::demo_config(5)).await
}

/// alice's TOTP code at the demo's time.
fn code(d: &Site) -> String {
    codes::code_now(&d.demo.alice, d.demo.clock.now())
}

/// The names of `user`'s passkeys in the demo's factor directory.
async fn passkeys_of(d: &Site, user: &str) -> Vec<String> {
    let factors = d.demo.factors.factors(user).await.expect("the directory");
    factors
        .into_iter()
        .filter(|f| f.kind == kind::PASSKEY)
        .map(|f| f.name.unwrap_or_default())
        .collect()
}

/// Signs alice in with her password and a TOTP code: the dashboard.
async fn sign_in_with_code(b: &Browser, d: &Site) {
    b.sign_in(&d.base, "alice", "alice-password").await;
    b.on("mfa").await;
    b.fill("#code", &code(d)).await;
    b.click("#submit").await;
    b.on("dashboard").await;
}

/// On the Security page, adds a passkey named `name` (the ceremony may fail: the page
/// says how).
async fn add_passkey(b: &Browser, d: &Site, name: &str) {
    b.goto(&format!("{}/security", d.base)).await;
    b.on("security").await;
    b.fill("#passkey-name", name).await;
    b.click("#add-passkey").await;
}

/// The sign-in form offers the passkey (and the code, unless `passkey_only`).
async fn offers_passkey(b: &Browser, passkey_only: bool) {
    b.wait("#passkey-option:not(.hidden)").await;
    let code_form = if passkey_only {
        "#code-option.hidden"
    } else {
        "#code-option:not(.hidden)"
    };
    b.client
        .find(fantoccini::Locator::Css(code_form))
        .await
        .unwrap_or_else(|_| panic!("expected `{code_form}`"));
}

/// Registration, a step-up to `/admin`, and a sign-in, each with the passkey.
#[tokio::test(flavor = "multi_thread")]
async fn a_passkey_is_registered_steps_up_to_admin_and_signs_in_in_chromium() {
    let d = site().await;
    let mut b = Browser::start("browser-screenshots-passkeys").await;
    let device = b.add_authenticator(Authenticator::default()).await;
    sign_in_with_code(&b, &d).await;

    // Admin wants a passkey; alice has none: the page says where to add one.
    b.goto(&format!("{}/admin", d.base)).await;
    b.on("mfa").await;
    b.wait("#enroll-passkey:not(.hidden)").await;
    b.client
        .find(fantoccini::Locator::Css("#code-option.hidden"))
        .await
        .expect("no code form: a code cannot open Admin");
    b.shot("admin-needs-a-passkey").await;

    // Security page: add one.
    b.goto(&format!("{}/security", d.base)).await;
    b.on("security").await;
    b.wait("#no-passkeys:not(.hidden)").await;
    b.shot("security-no-passkeys").await;
    add_passkey(&b, &d, "Laptop").await;
    b.wait_text("#message:not(.hidden)", "Passkey added.").await;
    let listed = b.wait_text("#passkeys", "Laptop").await;
    assert!(listed.contains("added"), "{listed}");
    b.shot("security-passkey-added").await;
    assert_eq!(passkeys_of(&d, "alice").await, ["Laptop"]);
    let held = b.credentials(&device).await;
    assert_eq!(held.len(), 1, "{held:?}");
    assert_eq!(held[0]["rpId"], "localhost");

    // Admin again: her TOTP session asks for the passkey, and only the passkey.
    b.goto(&format!("{}/admin", d.base)).await;
    b.on("mfa").await;
    offers_passkey(&b, true).await;
    b.wait_text("#mfa-title", "Confirm it's you").await;
    b.shot("admin-asks-for-the-passkey").await;
    b.click("#use-passkey").await;
    let back = b.url_after_leaving(&format!("{}/mfa", d.base)).await;
    assert_eq!(back, format!("{}/admin", d.base));
    b.on("admin").await;
    b.wait("#admin:not(.hidden)").await;
    assert_eq!(b.text("#sub").await, "alice");
    assert_eq!(b.text("#acr").await, "phrh", "a device-bound passkey");
    b.shot("admin").await;

    // Sign out, and in again with the password and the passkey.
    b.click("#logout").await;
    b.on("login").await;
    b.sign_in(&d.base, "alice", "alice-password").await;
    b.on("mfa").await;
    offers_passkey(&b, false).await;
    b.shot("sign-in-offers-the-passkey").await;
    b.click("#use-passkey").await;
    b.on("dashboard").await;
    b.wait("#me:not(.hidden)").await;
    let amr = b.text("#amr").await;
    assert!(
        amr.contains("hwk") && amr.contains("mfa") && !amr.contains("otp"),
        "{amr}"
    );
    assert_eq!(b.text("#acr").await, "phrh");
    b.shot("dashboard-signed-in-with-the-passkey").await;
    let held = b.credentials(&device).await;
    assert!(
        held[0]["signCount"].as_u64() >= Some(2),
        "two assertions signed: {held:?}"
    );
    b.client.clone().close().await.unwrap();
}

/// A cancelled ceremony, a device that already holds a passkey, a device without one:
/// each is said on the page, changes nothing and opens no session; the code still works.
#[tokio::test(flavor = "multi_thread")]
async fn passkey_ceremonies_that_fail_are_said_and_open_nothing_in_chromium() {
    let d = site().await;
    let mut b = Browser::start("browser-screenshots-passkey-errors").await;
    let device = b.add_authenticator(Authenticator::default()).await;
    sign_in_with_code(&b, &d).await;

    // The user cancels registration (the authenticator's user verification fails).
    b.set_user_verified(&device, false).await;
    add_passkey(&b, &d, "Laptop").await;
    b.wait_text("#message.error", "No passkey was added").await;
    b.shot("registration-cancelled").await;
    assert!(passkeys_of(&d, "alice").await.is_empty());
    assert!(b.credentials(&device).await.is_empty());

    // Added, then added again from the same device: refused by the browser.
    b.set_user_verified(&device, true).await;
    add_passkey(&b, &d, "Laptop").await;
    b.wait_text("#passkeys", "Laptop").await;
    add_passkey(&b, &d, "Laptop again").await;
    b.wait_text("#message.error", "already holds a passkey")
        .await;
    b.shot("registration-twice").await;
    assert_eq!(passkeys_of(&d, "alice").await, ["Laptop"]);

    // Sign-in: the user cancels the passkey; the form stays, nothing opens.
    b.click("#logout").await;
    b.on("login").await;
    b.sign_in(&d.base, "alice", "alice-password").await;
    b.on("mfa").await;
    offers_passkey(&b, false).await;
    b.set_user_verified(&device, false).await;
    b.click("#use-passkey").await;
    b.wait_text("#message.error", "cancelled or timed out")
        .await;
    b.shot("sign-in-passkey-cancelled").await;

    // Another device, without alice's passkey.
    b.remove_authenticator(&device).await;
    let other = b.add_authenticator(Authenticator::default()).await;
    b.click("#use-passkey").await;
    b.wait_text("#message.error", "this device has no passkey")
        .await;
    b.shot("sign-in-wrong-device").await;
    assert!(b.credentials(&other).await.is_empty());
    assert!(b.url().await.starts_with(&format!("{}/mfa", d.base)));

    // Nothing was spent: the code still signs her in, with every attempt left.
    d.demo.clock.advance(30);
    b.fill("#code", &code(&d)).await;
    b.click("#submit").await;
    b.on("dashboard").await;
    b.wait("#me:not(.hidden)").await;
    let amr = b.text("#amr").await;
    assert!(amr.contains("otp") && !amr.contains("hwk"), "{amr}");
    b.client.clone().close().await.unwrap();
}
