//! The demo's pages in a real browser: headless Chromium driven over WebDriver
//! (chromedriver + fantoccini), against the demo app on loopback with a clock the test
//! moves. alice signs in with a TOTP code computed here, reaches the dashboard, opens
//! the step-up page after `max_age`, completes it and lands back on it; bob enrolls an
//! authenticator and sees his recovery codes once; the error states (wrong code,
//! expired sign-in, lockout) are shown. A screenshot of each step goes to
//! `target/browser-screenshots/`.
//!
//! Needs `chromium` and `chromedriver` (`support/browser.rs`). Without them the test
//! fails, never skips.

use fantoccini::Locator;
use serde_json::{json, Value};
use tower_stepup::factor::totp::TotpSecret;
use tower_stepup::{Clock, ManualClock};

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

use browser::Browser;

struct Demo {
    base: String,
    clock: ManualClock,
    alice: TotpSecret,
    _site: demo_app::Site,
}

async fn demo() -> Demo {
    let site = demo_app::site(demo_config::demo_config(5)).await;
    Demo {
        base: site.base.clone(),
        clock: site.demo.clock.clone(),
        alice: site.demo.alice.clone(),
        _site: site,
    }
}

impl Demo {
    fn code(&self, secret: &TotpSecret) -> String {
        codes::code_now(secret, self.clock.now())
    }

    fn wrong_code(&self) -> String {
        codes::wrong_code(&self.alice, self.clock.now())
    }

    /// A POST to the demo from outside the browser (an API client): its JSON answer.
    async fn api(&self, path: &str, body: Value) -> (u16, Value) {
        let res = reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap()
            .post(format!(
                "{}{path}",
                self.base.replace("localhost", "127.0.0.1")
            ))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// alice signs in from an API client (at the next TOTP step): her refresh token.
    async fn alice_elsewhere(&self) -> String {
        self.clock.advance(30);
        let login = json!({"username": "alice", "password": "alice-password"});
        let (_, partial) = self.api("/auth/login", login).await;
        let verify = json!({"mfa_token": partial["partial_token"], "code": self.code(&self.alice)});
        let (status, tokens) = self.api("/auth/mfa/verify", verify).await;
        assert_eq!(status, 200, "{tokens}");
        tokens["refresh_token"].as_str().unwrap().to_owned()
    }

    /// Whether a refresh token still refreshes (it is rotated if so).
    async fn refreshes(&self, refresh: &str) -> bool {
        let (status, _) = self
            .api("/auth/refresh", json!({ "refresh_token": refresh }))
            .await;
        status == 200
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_step_up_and_enroll_in_headless_chromium() {
    let d = demo().await;
    let mut b = Browser::start("browser-screenshots").await;
    let mut visited = Vec::new();

    // 1. Sign in with the password: the code form, not the dashboard.
    b.goto(&format!("{}/dashboard", d.base)).await;
    b.on("login").await;
    b.shot("login").await;
    b.sign_in(&d.base, "alice", "alice-password").await;
    b.on("mfa").await;
    visited.push(b.url().await);
    b.shot("mfa-code-form").await;

    // The partial cookie: HttpOnly, sent only under /auth (verify, the passkey challenge,
    // the send endpoint), not to the pages.
    let at_verify = b.cookies_at(&d.base, "/auth/mfa/verify").await;
    assert!(
        at_verify.contains(&("__Secure-stepup-partial".to_owned(), true)),
        "{at_verify:?}"
    );
    let elsewhere = b.cookies_at(&d.base, "/dashboard").await;
    assert!(
        !elsewhere.iter().any(|(n, _)| n.contains("partial")),
        "{elsewhere:?}"
    );
    b.on("mfa").await;

    // 2. A wrong code: the attempts left.
    b.fill("#code", &d.wrong_code()).await;
    b.click("#submit").await;
    b.wait_text("#message:not(.hidden)", "4 attempts left")
        .await;
    b.shot("mfa-wrong-code").await;

    // 3. The right code: the dashboard, with a fresh session cookie; the partial cookie
    // is gone.
    b.fill("#code", &d.code(&d.alice)).await;
    b.click("#submit").await;
    b.on("dashboard").await;
    b.wait("#me:not(.hidden)").await;
    assert_eq!(b.text("#sub").await, "alice");
    assert!(b.text("#amr").await.contains("otp"));
    visited.push(b.url().await);
    b.shot("dashboard").await;
    let at_verify = b.cookies_at(&d.base, "/auth/mfa/verify").await;
    assert!(
        !at_verify.iter().any(|(n, _)| n.contains("partial")),
        "the partial cookie is gone after verify: {at_verify:?}"
    );
    assert!(
        at_verify.contains(&("__Host-stepup-session".to_owned(), true)),
        "{at_verify:?}"
    );

    // 4. After max_age, billing leads to the code form, and back to billing.
    d.clock.advance(301);
    b.goto(&format!("{}/billing", d.base)).await;
    b.on("mfa").await;
    b.wait_text("#mfa-title", "Confirm it's you").await;
    let url = b.url().await;
    assert!(url.ends_with("/mfa?next=%2Fbilling"), "{url}");
    visited.push(url);
    b.shot("step-up-code-form").await;
    d.clock.advance(30);
    b.fill("#code", &d.code(&d.alice)).await;
    b.click("#submit").await;
    b.on("billing").await;
    b.wait_text("#invoices:not(.hidden)", "INV-1001").await;
    visited.push(b.url().await);
    b.shot("billing-after-step-up").await;

    // The refresh cookie: HttpOnly, sent to /auth (refresh and logout) only.
    let at_refresh = b.cookies_at(&d.base, "/auth/refresh").await;
    assert!(
        at_refresh.contains(&("__Secure-stepup-refresh".to_owned(), true)),
        "{at_refresh:?}"
    );
    let at_billing = b.cookies_at(&d.base, "/billing").await;
    assert!(
        !at_billing.iter().any(|(n, _)| n.contains("refresh")),
        "{at_billing:?}"
    );

    // 5. The access token expires (900 s): the page refreshes silently with the refresh
    // cookie and still shows alice, under a new session cookie.
    let session_before = b
        .cookie_value_at(&d.base, "/dashboard", "__Host-stepup-session")
        .await
        .unwrap();
    // Past the access token's 900 s and the verifier's 5 s leeway.
    d.clock.advance(906);
    b.goto(&format!("{}/dashboard", d.base)).await;
    b.on("dashboard").await;
    b.wait("#me:not(.hidden)").await;
    assert_eq!(b.text("#sub").await, "alice");
    let session_after = b
        .cookie_value_at(&d.base, "/dashboard", "__Host-stepup-session")
        .await
        .unwrap();
    assert_ne!(session_before, session_after, "a silent refresh happened");
    b.shot("dashboard-after-silent-refresh").await;

    // Sign out ends the session on the server too: its refresh token is dead.
    let refresh = b
        .cookie_value_at(&d.base, "/auth/refresh", "__Secure-stepup-refresh")
        .await
        .unwrap();
    b.click("#logout").await;
    b.on("login").await;
    let res = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(format!(
            "{}/auth/refresh",
            d.base.replace("localhost", "127.0.0.1")
        ))
        .header("content-type", "application/json")
        .body(json!({ "refresh_token": refresh }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        400,
        "the refresh family is revoked at sign-out"
    );
    assert!(
        b.cookie_value_at(&d.base, "/auth/refresh", "__Secure-stepup-refresh")
            .await
            .is_none(),
        "the refresh cookie is cleared"
    );

    // 6. bob (password only) enrolls an authenticator: the QR code, then the recovery
    // codes, once.
    b.sign_in(&d.base, "bob", "bob-password").await;
    b.on("dashboard").await;
    b.goto(&format!("{}/security", d.base)).await;
    b.on("security").await;
    b.click("#start-enroll").await;
    b.wait("#qr svg").await;
    let secret = TotpSecret::from_base32(&b.text("#secret").await).unwrap();
    b.shot("enroll-qr").await;
    b.fill("#code", &d.code(&secret)).await;
    b.click("#confirm").await;
    b.wait("#recovery:not(.hidden)").await;
    let codes = b.client.find_all(Locator::Css("#codes li")).await.unwrap();
    assert_eq!(codes.len(), 10);
    b.shot("enroll-recovery-codes").await;

    // 7. An expired sign-in: a clear message and a way to start again.
    b.click("#logout").await;
    b.on("login").await;
    d.clock.advance(30);
    b.sign_in(&d.base, "alice", "alice-password").await;
    b.on("mfa").await;
    // Past the partial token's 300 s and the verifier's 5 s leeway.
    d.clock.advance(306);
    b.fill("#code", &d.code(&d.alice)).await;
    b.click("#submit").await;
    b.wait_text("#message:not(.hidden)", "expired").await;
    b.wait("#restart:not(.hidden) a#start-again").await;
    b.shot("mfa-expired").await;
    b.click("#start-again").await;
    b.on("login").await;

    // 8. Too many wrong codes: locked out, and when to retry.
    b.sign_in(&d.base, "alice", "alice-password").await;
    b.on("mfa").await;
    for left in (1..=4).rev() {
        b.fill("#code", &d.wrong_code()).await;
        b.click("#submit").await;
        b.wait_text("#message:not(.hidden)", &format!("{left} attempt"))
            .await;
    }
    b.fill("#code", &d.wrong_code()).await;
    b.click("#submit").await;
    b.wait("#restart:not(.hidden)").await;
    let message = b
        .wait_text("#message:not(.hidden)", "Too many failed attempts")
        .await;
    assert!(message.contains("15 minutes"), "{message}");
    b.shot("mfa-locked-out").await;

    // No token ever in a URL.
    visited.push(b.url().await);
    for url in &visited {
        assert!(!url.contains("eyJ") && !url.contains("token"), "{url}");
    }
    assert_eq!(b.page().await, "mfa");
    let shots = std::fs::read_dir(b.shots.as_ref().unwrap())
        .unwrap()
        .count();
    assert_eq!(shots, 11, "one screenshot per step");
    b.client.clone().close().await.unwrap();
}

/// The sessions page (issue 17): alice sees where she is signed in, this browser marked;
/// ends one other session; signs out everywhere else; and, past `max_age`, confirms a
/// code first and is brought back to end it.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_page_lists_ends_and_signs_out_everywhere_else() {
    let d = demo().await;
    let b = Browser::start_unrecorded().await;
    b.sign_in(&d.base, "alice", "alice-password").await;
    b.on("mfa").await;
    b.fill("#code", &d.code(&d.alice)).await;
    b.click("#submit").await;
    b.on("dashboard").await;
    let elsewhere = d.alice_elsewhere().await;

    b.goto(&format!("{}/sessions", d.base)).await;
    b.on("sessions").await;
    b.wait("#sessions-area:not(.hidden)").await;
    b.wait_count("tr.session", 2).await;
    assert_eq!(b.text("tr.session.current .tag").await, "This browser");
    assert!(b.text("tr.session.current").await.contains("pwd, otp, mfa"));

    // End the other session: one row left, and its refresh token is dead.
    b.click("tr.session:not(.current) button.end-session").await;
    b.wait_text("#sessions tbody", "This browser").await;
    b.wait_count("tr.session", 1).await;
    assert!(
        !d.refreshes(&elsewhere).await,
        "the ended session still refreshes"
    );

    // Two more elsewhere; "sign out everywhere else" ends both, and not this one.
    let (one, two) = (d.alice_elsewhere().await, d.alice_elsewhere().await);
    b.goto(&format!("{}/sessions", d.base)).await;
    b.on("sessions").await;
    b.wait("#sessions-area:not(.hidden)").await;
    b.wait_count("tr.session", 3).await;
    b.click("#end-others").await;
    b.wait_text("#message:not(.hidden)", "Signed out everywhere else")
        .await;
    b.wait_count("tr.session", 1).await;
    assert!(!d.refreshes(&one).await && !d.refreshes(&two).await);

    // Past max_age: the code first, then back here to end it.
    let late = d.alice_elsewhere().await;
    d.clock.advance(301);
    b.goto(&format!("{}/sessions", d.base)).await;
    b.on("sessions").await;
    b.click("tr.session:not(.current) button.end-session").await;
    b.on("mfa").await;
    b.wait_text("#mfa-title", "Confirm it's you").await;
    assert!(d.refreshes(&late).await, "nothing ended before the code");
    d.clock.advance(30);
    b.fill("#code", &d.code(&d.alice)).await;
    b.click("#submit").await;
    let url = b.url_after_leaving(&format!("{}/mfa", d.base)).await;
    assert_eq!(url, format!("{}/sessions", d.base));
    b.on("sessions").await;
    b.click("tr.session:not(.current) button.end-session").await;
    b.wait_count("tr.session", 1).await;
    b.client.clone().close().await.unwrap();
}

/// Remember this browser (issue 17): ticked on the code form, the next password sign-in
/// on this browser lands on the dashboard without a code, password-only (`amr` `pwd`:
/// billing still asks for the code); the sessions page lists the browser and forgets
/// it, its cookie goes, and the code is asked for again.
#[tokio::test(flavor = "multi_thread")]
async fn remember_this_browser_skips_the_code_until_forgotten() {
    let d = demo().await;
    let b = Browser::start_unrecorded().await;
    b.sign_in(&d.base, "alice", "alice-password").await;
    b.on("mfa").await;
    b.fill("#code", &d.code(&d.alice)).await;
    b.click("#remember").await;
    b.click("#submit").await;
    b.on("dashboard").await;
    let device = "__Host-stepup-device".to_owned();
    assert!(
        b.cookies_at(&d.base, "/dashboard")
            .await
            .contains(&(device.clone(), true)),
        "an HttpOnly device cookie"
    );
    b.click("#logout").await;
    b.on("login").await;

    // The password alone: the dashboard, password-only.
    b.sign_in(&d.base, "alice", "alice-password").await;
    b.on("dashboard").await;
    b.wait("#me:not(.hidden)").await;
    assert_eq!(b.text("#amr").await, "pwd");
    // Billing still asks for the code.
    b.goto(&format!("{}/billing", d.base)).await;
    b.on("mfa").await;
    b.wait_text("#mfa-title", "Confirm it's you").await;
    d.clock.advance(30);
    b.fill("#code", &d.code(&d.alice)).await;
    b.click("#submit").await;
    b.on("billing").await;
    b.wait_text("#invoices:not(.hidden)", "INV-1001").await;

    // Listed, and forgotten.
    b.goto(&format!("{}/sessions", d.base)).await;
    b.on("sessions").await;
    b.wait("#devices:not(.hidden)").await;
    assert!(b.text("tr.device.current").await.contains("This browser"));
    b.click("tr.device.current button.forget-device").await;
    b.wait("#no-devices:not(.hidden)").await;
    assert!(
        !b.cookies_at(&d.base, "/dashboard")
            .await
            .iter()
            .any(|(n, _)| *n == device),
        "the device cookie is cleared"
    );
    b.click("#logout").await;
    b.on("login").await;
    b.sign_in(&d.base, "alice", "alice-password").await;
    b.on("mfa").await;
    b.client.clone().close().await.unwrap();
}

/// Finding 7 of issue 14: the pages' `next` parameter was an open redirect. It was
/// accepted when it started with one `/`, but browsers read `/\evil.example` as
/// `//evil.example`, and drop a tab, so `/<TAB>/evil.example` is `//evil.example` too:
/// headless Chromium left for another host after signing in. Now only a path on the
/// demo's own origin is followed, on the login page and on the code page alike;
/// anything else lands on the default page, the dashboard.
#[tokio::test(flavor = "multi_thread")]
async fn sign_in_next_parameter_never_leaves_the_demo_origin() {
    let d = demo().await;
    let b = Browser::start_unrecorded().await;
    let dashboard = format!("{}/dashboard", d.base);

    // bob has no second factor: the login page itself follows `next`.
    for next in [
        "/%5Cevil.example",
        "/%09/evil.example",
        "%2F%09%2Fevil.example",
        "/%0A/evil.example",
        "//evil.example",
        "/%5C%5Cevil.example",
        "/.//evil.example",
        "https://evil.example/",
        "http:evil.example",
    ] {
        b.sign_in_at(
            &format!("{}/login?next={next}", d.base),
            "bob",
            "bob-password",
        )
        .await;
        let url = b.url_after_leaving(&format!("{}/login", d.base)).await;
        assert_eq!(url, dashboard, "next={next} led to {url}");
        b.on("dashboard").await;
    }
    // A path on the demo is followed.
    b.sign_in_at(
        &format!("{}/login?next=/security", d.base),
        "bob",
        "bob-password",
    )
    .await;
    let url = b.url_after_leaving(&format!("{}/login", d.base)).await;
    assert_eq!(url, format!("{}/security", d.base));
    b.on("security").await;

    // alice has one: the login page hands `next` to the code page, which follows it.
    b.sign_in_at(
        &format!("{}/login?next=/billing", d.base),
        "alice",
        "alice-password",
    )
    .await;
    b.on("mfa").await;
    assert_eq!(b.url().await, format!("{}/mfa?next=%2Fbilling", d.base));
    b.fill("#code", &d.code(&d.alice)).await;
    b.click("#submit").await;
    let url = b.url_after_leaving(&format!("{}/mfa", d.base)).await;
    assert_eq!(url, format!("{}/billing", d.base));
    b.on("billing").await;
    b.wait_text("#invoices:not(.hidden)", "INV-1001").await;

    // The code page refuses a foreign `next` of its own.
    d.clock.advance(30);
    b.sign_in(&d.base, "alice", "alice-password").await;
    b.on("mfa").await;
    b.goto(&format!("{}/mfa?next=/%5Cevil.example", d.base))
        .await;
    b.on("mfa").await;
    b.fill("#code", &d.code(&d.alice)).await;
    b.click("#submit").await;
    let url = b.url_after_leaving(&format!("{}/mfa", d.base)).await;
    assert_eq!(url, dashboard, "the code page followed a foreign next");
    b.on("dashboard").await;
    b.client.clone().close().await.unwrap();
}

/// A cross-site `POST` carrying the browser's cookies is refused before any endpoint.
#[tokio::test]
async fn cross_site_posts_are_refused() {
    let d = demo().await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = d.base.replace("localhost", "127.0.0.1");
    for (origin, site) in [
        (Some("http://evil.example"), None),
        (None, Some("cross-site")),
        (None, Some("same-site")),
    ] {
        let mut req = client
            .post(format!("{url}/auth/login"))
            .header("content-type", "application/json")
            .body(r#"{"username":"alice","password":"alice-password"}"#);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        if let Some(s) = site {
            req = req.header("sec-fetch-site", s);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 403, "{origin:?} {site:?}");
        assert!(res.headers().get("set-cookie").is_none());
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "cross_site_request");
    }
    // The same request from the page's own origin passes.
    let host = url.trim_start_matches("http://");
    let res = client
        .post(format!("{url}/auth/login"))
        .header("content-type", "application/json")
        .header("origin", format!("http://{host}"))
        .header("sec-fetch-site", "same-origin")
        .body(r#"{"username":"alice","password":"alice-password"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}
