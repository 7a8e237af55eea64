//! The sessions a user can see and end (DESIGN §8.3, issue 17), over real sockets: the
//! demo app (`examples/axum_app/app.rs`) on `127.0.0.1:0`, on a [`ManualClock`] the
//! tests move, and reqwest.
//!
//! `GET /auth/sessions` lists the caller's sessions; `DELETE /auth/sessions/{id}` ends
//! one, after a recent authentication; another user's or an unknown id is `404` and
//! changes nothing; a malformed one `400`; in cookie mode too. A remembered browser
//! signs in with the password alone, `amr` `["pwd"]`, never passing a step-up route;
//! for its own user only; until it is forgotten or the user's factors change, which
//! also ends the user's other sessions. Sessions end when idle.

use std::collections::BTreeSet;
use std::sync::Arc;

use reqwest::header::{CACHE_CONTROL, CONTENT_TYPE, COOKIE, ORIGIN};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tower_stepup::factor::totp::{self, TotpSecret};
use tower_stepup::store::MemoryStore;
use tower_stepup::ManualClock;

#[allow(dead_code)]
#[path = "../examples/axum_app/app.rs"]
mod app;
#[path = "support/demo_app.rs"]
mod demo_app;
#[path = "support/demo_config.rs"]
mod demo_config;
#[path = "support/reply.rs"]
mod reply;

use demo_app::{serve, Demo, Http, Served};
use reply::Reply;

/// 10 s into a 30 s TOTP step.
const T0: u64 = 1_800_000_010;
/// The demo's session cookie (cookie mode, `CookieConfig::new()`).
const SESSION_COOKIE: &str = "__Host-stepup-session";
const REFRESH_COOKIE: &str = "__Secure-stepup-refresh";
const PARTIAL_COOKIE: &str = "__Secure-stepup-partial";
const DEVICE_COOKIE: &str = "__Host-stepup-device";
/// 30 days, the demo's (and the crate's longest) remembered device.
const MONTH: u64 = 30 * 24 * 3600;

/// The demo on its own port and clock, and a client.
struct Server {
    http: Http,
    clock: ManualClock,
    alice: TotpSecret,
    completion: tower_stepup::Completion,
    _served: Served,
}

/// One signed-in session, as its client holds it.
#[derive(Clone, Debug)]
struct Session {
    access: String,
    refresh: String,
    sid: String,
}

async fn start_with(config: app::DemoConfig) -> Server {
    let demo = Demo::build(&config, ManualClock::new(T0), Arc::new(MemoryStore::new()));
    let served = serve(demo.router.clone(), "127.0.0.1:0").await;
    Server {
        http: Http::to(&served),
        clock: demo.clock,
        alice: demo.alice,
        completion: demo.completion,
        _served: served,
    }
}

async fn start() -> Server {
    start_with(demo_config::demo_config(5)).await
}

impl Server {
    fn now(&self) -> u64 {
        tower_stepup::Clock::now(&self.clock)
    }

    /// alice's code for the server's current step.
    fn code(&self) -> String {
        totp::code_at(&self.alice, totp::step_at(self.now()))
    }

    /// Moves the clock to the next TOTP step (a code is accepted once per step).
    fn next_step(&self) {
        self.clock.advance(30);
    }

    async fn list(&self, access: &str) -> Reply {
        self.get("/auth/sessions", Some(access)).await
    }

    /// `DELETE /auth/sessions/{id}` as an API client sends it: the bearer token and
    /// `Content-Type: application/json`, no body.
    async fn end(&self, access: &str, id: &str) -> Reply {
        let path = format!("/auth/sessions/{id}");
        self.api(Method::DELETE, &path, None, Some(access)).await
    }

    async fn refresh(&self, refresh: &str) -> Reply {
        self.post("/auth/refresh", &json!({ "refresh_token": refresh }), None)
            .await
    }

    /// The session of a token response, its `sid` read back from `/api/me`.
    async fn session_of(&self, r: &Reply) -> Session {
        r.expect_ok();
        let access = r.str("access_token");
        let me = self.get("/api/me", Some(&access)).await;
        me.expect_ok();
        Session {
            sid: me.str("sid"),
            access,
            refresh: r.str("refresh_token"),
        }
    }

    /// alice signs in (password, then the code of a fresh step).
    async fn alice(&self) -> Session {
        self.next_step();
        let partial = self.login("alice").await.str("partial_token");
        let body = json!({"mfa_token": partial, "code": self.code()});
        let r = self.post("/auth/mfa/verify", &body, None).await;
        self.session_of(&r).await
    }

    /// bob (password only) signs in.
    async fn bob(&self) -> Session {
        let r = self.login("bob").await;
        self.session_of(&r).await
    }

    /// alice steps up in session `s` (the route answered 403 mfa_required): its new
    /// tokens, the same `sid`.
    async fn step_up(&self, s: &Session, denied: &Reply) -> Session {
        denied.expect(403, "mfa_required");
        self.next_step();
        let body = json!({"mfa_token": denied.str("mfa_token"), "code": self.code()});
        let r = self.post("/auth/mfa/verify", &body, Some(&s.access)).await;
        let stepped = self.session_of(&r).await;
        assert_eq!(stepped.sid, s.sid, "a step-up keeps the session");
        stepped
    }
}

impl std::ops::Deref for Server {
    type Target = Http;

    fn deref(&self) -> &Http {
        &self.http
    }
}

/// The ids of a sessions answer, in order, and which is current.
/// The refusal of an access token whose session has ended.
fn expect_session_ended(r: &Reply) {
    r.expect(401, "invalid_token");
    assert_eq!(
        r.body["error_description"], "the session has ended; sign in again",
        "{}",
        r.body
    );
}

fn ids(r: &Reply) -> Vec<(String, bool)> {
    r.expect_ok();
    r.body["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no sessions in {}", r.body))
        .iter()
        .map(|s| {
            let id = s["id"].as_str().unwrap().to_owned();
            (id, s["current"].as_bool().unwrap())
        })
        .collect()
}

/// The keys of a JSON object.
fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn strs(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

// ---------------------------------------------------------------------------------------
// GET /auth/sessions

/// The exact shape of DESIGN §8.3, the caller's own sessions only, oldest first, the
/// caller's marked `current`; `last_seen_at` moves with a refresh and a step-up, not
/// with a request.
#[tokio::test(flavor = "multi_thread")]
async fn sessions_are_listed_with_their_times_methods_and_the_current_one() {
    let s = start().await;
    let a = s.alice().await;
    let a_time = s.now();
    let b = s.alice().await;
    let b_time = s.now();
    let bob = s.bob().await;

    let r = s.list(&a.access).await;
    r.expect_ok();
    assert_eq!(r.header(CACHE_CONTROL), Some("no-store"));
    assert_eq!(keys(&r.body), BTreeSet::from(["devices", "sessions"]));
    assert_eq!(r.body["devices"], json!([]));
    let mfa = strs(&["pwd", "otp", "mfa"]);
    assert_eq!(
        r.body["sessions"],
        json!([
            {"id": a.sid, "created_at": a_time, "last_seen_at": a_time,
             "auth_time": a_time, "amr": mfa, "current": true},
            {"id": b.sid, "created_at": b_time, "last_seen_at": b_time,
             "auth_time": b_time, "amr": mfa, "current": false},
        ])
    );
    assert_eq!(
        ids(&s.list(&b.access).await),
        [(a.sid.clone(), false), (b.sid.clone(), true)]
    );
    // bob sees his own session only, password-only.
    let r = s.list(&bob.access).await;
    assert_eq!(ids(&r), [(bob.sid.clone(), true)]);
    assert_eq!(r.body["sessions"][0]["amr"], json!(["pwd"]));

    // Requests write nothing; a refresh moves last_seen_at (auth_time stays), a step-up
    // moves both.
    s.clock.advance(100);
    s.send(
        Method::GET,
        "/api/me",
        None,
        &[("authorization", format!("Bearer {}", a.access))],
    )
    .await
    .expect_ok();
    let refreshed_at = s.now();
    s.refresh(&b.refresh).await.expect_ok();
    s.clock.advance(300);
    let denied = s
        .send(
            Method::GET,
            "/api/billing",
            None,
            &[("authorization", format!("Bearer {}", a.access))],
        )
        .await;
    let a2 = s.step_up(&a, &denied).await;
    let stepped_at = s.now();
    let r = s.list(&a2.access).await;
    let sessions = r.body["sessions"].as_array().unwrap();
    assert_eq!(
        sessions[0],
        json!({"id": a.sid, "created_at": a_time, "last_seen_at": stepped_at,
               "auth_time": stepped_at, "amr": mfa, "current": true})
    );
    assert_eq!(
        (
            &sessions[1]["last_seen_at"],
            &sessions[1]["auth_time"],
            &sessions[1]["created_at"]
        ),
        (&json!(refreshed_at), &json!(b_time), &json!(b_time))
    );

    // No token: 401.
    let r = s.send(Method::GET, "/auth/sessions", None, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
}

// ---------------------------------------------------------------------------------------
// DELETE /auth/sessions/{id}

/// Ending a session: `204`, it is gone from the list, its refresh token is refused;
/// the caller's own session refreshes on; ending it again is `404`.
#[tokio::test(flavor = "multi_thread")]
async fn an_ended_session_is_gone_and_its_refresh_token_refused() {
    let s = start().await;
    let a = s.alice().await;
    let b = s.alice().await;
    let r = s.end(&a.access, &b.sid).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert!(r.raw.is_empty());
    assert!(r.set_cookies().is_empty(), "another session: no cookie");
    assert_eq!(r.header(CACHE_CONTROL), Some("no-store"));
    assert_eq!(ids(&s.list(&a.access).await), [(a.sid.clone(), true)]);
    s.refresh(&b.refresh).await.expect(400, "invalid_grant");
    // Its access token ends with it (DESIGN §8.3), the caller's lives on.
    expect_session_ended(&s.get("/api/me", Some(&b.access)).await);
    s.get("/api/me", Some(&a.access)).await.expect_ok();
    s.end(&a.access, &b.sid).await.expect(404, "not_found");
    let r = s.refresh(&a.refresh).await;
    r.expect_ok();
    // Ending one's own session: gone too.
    let a2 = s.session_of(&r).await;
    let r = s.end(&a2.access, &a2.sid).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    s.refresh(&a2.refresh).await.expect(400, "invalid_grant");
}

/// Another user's session id is `404`, exactly like an unknown one, and that session
/// lives on.
#[tokio::test(flavor = "multi_thread")]
async fn another_users_session_is_not_found_and_lives_on() {
    let s = start().await;
    let alice = s.alice().await;
    let bob = s.bob().await;
    let theirs = s.end(&bob.access, &alice.sid).await;
    theirs.expect(404, "not_found");
    let unknown = s.end(&bob.access, "AAAAAAAAAAAAAAAAAAAAAA").await;
    unknown.expect(404, "not_found");
    assert_eq!(theirs.body, unknown.body, "nothing tells them apart");
    assert_eq!(
        ids(&s.list(&alice.access).await),
        [(alice.sid.clone(), true)]
    );
    s.refresh(&alice.refresh).await.expect_ok();
    // And the other way round: alice cannot end bob's.
    s.end(&alice.access, &bob.sid)
        .await
        .expect(404, "not_found");
    s.refresh(&bob.refresh).await.expect_ok();
}

/// Ending a session needs a recent authentication, as enrollment does: alice (who has a
/// factor) past `max_age` gets the step-up challenge, and after it ends the session;
/// bob (who has none) must sign in again. Nothing ends before.
#[tokio::test(flavor = "multi_thread")]
async fn ending_a_session_needs_a_recent_authentication() {
    let s = start().await;
    let a = s.alice().await;
    let b = s.alice().await;
    let bob1 = s.bob().await;
    let bob2 = s.bob().await;
    s.clock.advance(301);
    // A refresh carries the old auth_time: not recent either.
    let a = s.session_of(&s.refresh(&a.refresh).await).await;
    let r = s.end(&a.access, &b.sid).await;
    r.expect(403, "mfa_required");
    assert!(
        r.www_authenticate().contains("max_age=300"),
        "{}",
        r.www_authenticate()
    );
    let a = s.step_up(&a, &r).await;
    let r = s.end(&a.access, &b.sid).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);

    let r = s.end(&bob1.access, &bob2.sid).await;
    r.expect(403, "reauthentication_required");
    assert!(
        r.www_authenticate().contains("max_age=300"),
        "{}",
        r.www_authenticate()
    );
    assert!(r.body.get("mfa_token").is_none(), "{}", r.body);
    s.refresh(&bob2.refresh).await.expect_ok();
    let fresh = s.bob().await;
    let r = s.end(&fresh.access, &bob2.sid).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
}

/// Bad ids: malformed ones `400 invalid_request`, well-formed unknown ones `404`, never
/// a `5xx`, and nothing ends.
#[tokio::test(flavor = "multi_thread")]
async fn bad_session_ids_are_400_or_404_never_5xx() {
    let s = start().await;
    let a = s.alice().await;
    let b = s.alice().await;
    let long = "A".repeat(129);
    let longest = "A".repeat(128);
    for (id, status, error) in [
        ("..%2F..%2Fhealthz", 400, "invalid_request"),
        ("a%00b", 400, "invalid_request"),
        ("%C3%A9", 400, "invalid_request"),
        ("a.b", 400, "invalid_request"),
        ("a%20b", 400, "invalid_request"),
        ("a:b", 400, "invalid_request"),
        (long.as_str(), 400, "invalid_request"),
        (longest.as_str(), 404, "not_found"),
        ("x", 404, "not_found"),
        ("AAAAAAAAAAAAAAAAAAAAAA", 404, "not_found"),
    ] {
        let r = s.end(&a.access, id).await;
        assert_eq!(
            (r.status.as_u16(), r.error()),
            (status, error),
            "{id}: {}",
            r.body
        );
        assert_eq!(r.header(CONTENT_TYPE), Some("application/json"), "{id}");
    }
    // Paths the route does not match (`%2e%2e` is `..` to the URL parser): the router's
    // 404 or 405, never a 5xx.
    for path in [
        "/auth/sessions/",
        "/auth/sessions/a/b",
        "/auth/sessions/%2e%2e",
    ] {
        let r = s
            .send(
                Method::DELETE,
                path,
                None,
                &[
                    ("authorization", format!("Bearer {}", a.access)),
                    ("content-type", "application/json".to_owned()),
                ],
            )
            .await;
        assert!(
            r.status.is_client_error(),
            "{path}: {} {}",
            r.status,
            r.body
        );
    }
    assert_eq!(
        ids(&s.list(&a.access).await),
        [(a.sid.clone(), true), (b.sid.clone(), false)]
    );
}

/// Cookie mode: the browser's session cookie lists and ends sessions; the CSRF rules of
/// the other cookie endpoints hold (JSON content type; the demo's same-origin check);
/// ending one's own session clears the cookies.
#[tokio::test(flavor = "multi_thread")]
async fn the_sessions_endpoints_work_with_the_session_cookie() {
    let s = start().await;
    let other = s.alice().await;
    // A browser's sign-in: the partial cookie to verify, the session cookie back.
    s.next_step();
    let login = s.login("alice").await;
    let partial = format!("{PARTIAL_COOKIE}={}", login.cookie(PARTIAL_COOKIE));
    let v = s
        .send(
            Method::POST,
            "/auth/mfa/verify",
            Some(&json!({ "code": s.code() })),
            &[(COOKIE.as_str(), partial)],
        )
        .await;
    v.expect_ok();
    let cookies = format!(
        "{SESSION_COOKIE}={}; {REFRESH_COOKIE}={}",
        v.cookie(SESSION_COOKIE),
        v.cookie(REFRESH_COOKIE)
    );
    let browser = s.session_of(&v).await;
    let jar = (COOKIE.as_str(), cookies.clone());

    let r = s
        .send(
            Method::GET,
            "/auth/sessions",
            None,
            std::slice::from_ref(&jar),
        )
        .await;
    assert_eq!(
        ids(&r),
        [(other.sid.clone(), false), (browser.sid.clone(), true)]
    );

    let path = format!("/auth/sessions/{}", other.sid);
    // A cross-site request, or one without the JSON content type: refused, nothing ends.
    let cross = s
        .send(
            Method::DELETE,
            &path,
            None,
            &[
                jar.clone(),
                (CONTENT_TYPE.as_str(), "application/json".to_owned()),
                (ORIGIN.as_str(), "http://evil.example".to_owned()),
            ],
        )
        .await;
    cross.expect(403, "cross_site_request");
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut headers = vec![jar.clone()];
        if let Some(ct) = ct {
            headers.push((CONTENT_TYPE.as_str(), ct.to_owned()));
        }
        let r = s.send(Method::DELETE, &path, None, &headers).await;
        r.expect(400, "invalid_request");
    }
    s.refresh(&other.refresh).await.expect_ok();

    // Same origin, JSON: ended.
    let host = s.base.trim_start_matches("http://").to_owned();
    let same_origin = [
        jar.clone(),
        (CONTENT_TYPE.as_str(), "application/json".to_owned()),
        (ORIGIN.as_str(), format!("http://{host}")),
        ("sec-fetch-site", "same-origin".to_owned()),
    ];
    let r = s.send(Method::DELETE, &path, None, &same_origin).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert!(r.set_cookies().is_empty());
    let r = s
        .send(
            Method::GET,
            "/auth/sessions",
            None,
            std::slice::from_ref(&jar),
        )
        .await;
    assert_eq!(ids(&r), [(browser.sid.clone(), true)]);

    // Its own session: ended, and both cookies cleared.
    let own = format!("/auth/sessions/{}", browser.sid);
    let r = s.send(Method::DELETE, &own, None, &same_origin).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        r.set_cookies(),
        [
            format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict"),
            format!("{REFRESH_COOKIE}=; Path=/auth; Max-Age=0; HttpOnly; Secure; SameSite=Strict"),
        ]
    );
    let r = s
        .send(Method::POST, "/auth/refresh", Some(&json!({})), &[jar])
        .await;
    r.expect(400, "invalid_grant");
}

// ---------------------------------------------------------------------------------------
// Remember this device

impl Server {
    /// alice signs in and asks to remember this browser: the session and the device
    /// cookie's value.
    async fn alice_remembered(&self) -> (Session, String) {
        self.next_step();
        let partial = self.login("alice").await.str("partial_token");
        let body = json!({"mfa_token": partial, "code": self.code(), "remember_device": true});
        let r = self.post("/auth/mfa/verify", &body, None).await;
        let device = r.cookie(DEVICE_COOKIE);
        (self.session_of(&r).await, device)
    }

    /// A password login carrying the device cookie `device`.
    async fn login_on(&self, user: &str, password: &str, device: &str) -> Reply {
        let body = json!({"username": user, "password": password});
        let cookie = (COOKIE.as_str(), format!("{DEVICE_COOKIE}={device}"));
        self.send(Method::POST, "/auth/login", Some(&body), &[cookie])
            .await
    }

    /// `GET /auth/sessions` with the bearer token and the device cookie.
    async fn list_on(&self, access: &str, device: &str) -> Reply {
        let headers = [
            ("authorization", format!("Bearer {access}")),
            (COOKIE.as_str(), format!("{DEVICE_COOKIE}={device}")),
        ];
        self.send(Method::GET, "/auth/sessions", None, &headers)
            .await
    }

    /// `DELETE /auth/devices/{id}` as an API client, with the device cookie when given.
    async fn forget(&self, access: &str, id: &str, device: Option<&str>) -> Reply {
        let mut headers = vec![
            ("authorization", format!("Bearer {access}")),
            ("content-type", "application/json".to_owned()),
        ];
        if let Some(device) = device {
            headers.push((COOKIE.as_str(), format!("{DEVICE_COOKIE}={device}")));
        }
        let path = format!("/auth/devices/{id}");
        self.send(Method::DELETE, &path, None, &headers).await
    }

    /// Enrolls a new TOTP factor from session `s` (recent enough): its secret.
    async fn enroll(&self, s: &Session) -> TotpSecret {
        let r = self
            .post("/auth/mfa/enroll", &json!({}), Some(&s.access))
            .await;
        r.expect_ok();
        let secret = TotpSecret::from_base32(&r.str("secret")).unwrap();
        self.next_step();
        let code = totp::code_at(&secret, totp::step_at(self.now()));
        let r = self
            .post(
                "/auth/mfa/enroll/confirm",
                &json!({ "code": code }),
                Some(&s.access),
            )
            .await;
        r.expect_ok();
        secret
    }
}

/// The ids of the devices a sessions answer lists.
fn device_ids(r: &Reply) -> Vec<String> {
    r.expect_ok();
    r.body["devices"]
        .as_array()
        .unwrap_or_else(|| panic!("no devices in {}", r.body))
        .iter()
        .map(|d| d["id"].as_str().unwrap().to_owned())
        .collect()
}

/// `remember_device` sets a sealed, HttpOnly, `__Host-` cookie for 30 days; a later
/// password login on that browser is a session without the second factor, `amr`
/// `["pwd"]` and the password `acr` only: a step-up route still asks for the code. The
/// device is listed, its `last_used_at` moves with each such login.
#[tokio::test(flavor = "multi_thread")]
async fn a_remembered_browser_signs_in_with_the_password_alone_and_pwd_only() {
    let s = start().await;
    // Not asked: no device cookie.
    s.next_step();
    let partial = s.login("alice").await.str("partial_token");
    let body = json!({"mfa_token": partial, "code": s.code()});
    let r = s.post("/auth/mfa/verify", &body, None).await;
    let names: Vec<String> = r.set_cookies();
    assert!(
        names.iter().all(|c| !c.starts_with(DEVICE_COOKIE)),
        "{names:?}"
    );
    let a = s.session_of(&r).await;
    let (b, device) = s.alice_remembered().await;
    let remembered_at = s.now();
    assert!(!device.is_empty() && !device.contains("alice"), "{device}");
    assert_eq!(device.split('.').count(), 5, "a JWE in compact form");
    // The cookie's attributes.
    s.next_step();
    let partial = s.login("alice").await.str("partial_token");
    let body = json!({"mfa_token": partial, "code": s.code(), "remember_device": true});
    let r = s.post("/auth/mfa/verify", &body, None).await;
    let set = r
        .set_cookies()
        .into_iter()
        .find(|c| c.starts_with(&format!("{DEVICE_COOKIE}=")))
        .unwrap();
    assert!(
        set.ends_with(&format!(
            "; Path=/; Max-Age={MONTH}; HttpOnly; Secure; SameSite=Strict"
        )),
        "{set}"
    );

    // Listed, this browser's marked.
    let r = s.list_on(&b.access, &device).await;
    let devices = r.body["devices"].as_array().unwrap().clone();
    assert_eq!(devices.len(), 2, "{}", r.body);
    let id = devices[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        devices[0],
        json!({"id": id, "created_at": remembered_at, "last_used_at": remembered_at,
               "expires_at": remembered_at + MONTH, "current": true})
    );
    assert_eq!(devices[1]["current"], false);
    assert_eq!(s.list(&a.access).await.body["devices"][0]["current"], false);

    // The password alone on that browser: a session, password-only.
    s.clock.advance(60);
    let used_at = s.now();
    let r = s.login_on("alice", "alice-password", &device).await;
    r.expect_ok();
    assert!(r.body.get("partial_token").is_none(), "{}", r.body);
    let p = s.session_of(&r).await;
    let me = s.get("/api/me", Some(&p.access)).await;
    assert_eq!(me.body["amr"], json!(["pwd"]));
    assert_eq!(me.body["acr"], "urn:tower-stepup:acr:pwd");
    // Never a step-up route: the code first, and then it is a full session.
    let denied = s.get("/api/billing", Some(&p.access)).await;
    denied.expect(403, "mfa_required");
    let stepped = s.step_up(&p, &denied).await;
    s.get("/api/billing", Some(&stepped.access))
        .await
        .expect_ok();
    let r = s.list_on(&stepped.access, &device).await;
    assert_eq!(r.body["devices"][0]["last_used_at"], used_at);
    let listed = r.body["sessions"].as_array().unwrap();
    assert_eq!(listed.len(), 4, "{}", r.body);
    // The wrong password with the cookie: refused as ever; without the cookie: the code.
    s.login_on("alice", "wrong", &device)
        .await
        .expect(401, "invalid_credentials");
    s.login("alice").await.expect_partial();
}

/// The cookie counts for its own user only, and only as sealed: another user (who has a
/// factor), a changed cookie, a partial token in its place, an expired one: the second
/// factor as ever. Nor is a device cookie ever an mfa_token.
#[tokio::test(flavor = "multi_thread")]
async fn another_user_or_a_forged_or_expired_cookie_still_needs_the_second_factor() {
    let s = start().await;
    let bob = s.bob().await;
    s.enroll(&bob).await;
    let (_, device) = s.alice_remembered().await;
    let needs_code = |r: &Reply, what: &str| {
        r.expect_ok_for(what);
        assert_eq!(r.body["status"], "mfa_required", "{what}: {}", r.body);
        assert!(r.body.get("access_token").is_none(), "{what}");
    };
    needs_code(
        &s.login_on("bob", "bob-password", &device).await,
        "bob with alice's cookie",
    );
    let mut forged = device.clone().into_bytes();
    let mid = forged.len() / 2;
    forged[mid] = if forged[mid] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    needs_code(
        &s.login_on("alice", "alice-password", &forged).await,
        "a changed cookie",
    );
    let partial = s.login("alice").await.str("partial_token");
    needs_code(
        &s.login_on("alice", "alice-password", &partial).await,
        "a partial token as the cookie",
    );
    let r = s
        .post(
            "/auth/mfa/verify",
            &json!({"mfa_token": device, "code": s.code()}),
            None,
        )
        .await;
    r.expect(400, "mfa_token_invalid");
    // alice's own, unchanged: the password alone.
    let r = s.login_on("alice", "alice-password", &device).await;
    assert!(r.body.get("access_token").is_some(), "{}", r.body);
    // 30 days on, it is forgotten.
    s.clock.advance(MONTH);
    needs_code(
        &s.login_on("alice", "alice-password", &device).await,
        "an expired cookie",
    );
}

/// `DELETE /auth/devices/{id}`: another user's or an unknown id `404` (nothing changes),
/// a malformed one `400`; a recent authentication first; forgotten, the browser needs
/// the code again, and its cookie is cleared.
#[tokio::test(flavor = "multi_thread")]
async fn a_forgotten_device_needs_the_second_factor_again() {
    let s = start().await;
    let (a, device) = s.alice_remembered().await;
    let id = device_ids(&s.list(&a.access).await).remove(0);
    let bob = s.bob().await;
    s.forget(&bob.access, &id, None)
        .await
        .expect(404, "not_found");
    s.forget(&a.access, "AAAAAAAAAAAAAAAAAAAAAA", None)
        .await
        .expect(404, "not_found");
    s.forget(&a.access, "a.b", None)
        .await
        .expect(400, "invalid_request");
    let r = s.login_on("alice", "alice-password", &device).await;
    assert!(r.body.get("access_token").is_some(), "{}", r.body);
    // Past max_age: the step-up first.
    s.clock.advance(301);
    let a = s.session_of(&s.refresh(&a.refresh).await).await;
    let denied = s.forget(&a.access, &id, Some(&device)).await;
    denied.expect(403, "mfa_required");
    let a = s.step_up(&a, &denied).await;
    let r = s.forget(&a.access, &id, Some(&device)).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(
        r.set_cookies(),
        [format!(
            "{DEVICE_COOKIE}=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict"
        )]
    );
    s.forget(&a.access, &id, None)
        .await
        .expect(404, "not_found");
    assert_eq!(device_ids(&s.list(&a.access).await), Vec::<String>::new());
    s.login_on("alice", "alice-password", &device)
        .await
        .expect_partial();
}

/// A change of factors (a confirmed enrollment) forgets every remembered device of the
/// user and ends their other sessions, the password-only ones too; the session that
/// enrolled lives on. `Completion::factors_changed` does the same for an application
/// that changes factors itself.
#[tokio::test(flavor = "multi_thread")]
async fn a_change_of_factors_forgets_devices_and_ends_the_other_sessions() {
    let s = start().await;
    let (other, device) = s.alice_remembered().await;
    let by_device = s
        .session_of(&s.login_on("alice", "alice-password", &device).await)
        .await;
    let bob = s.bob().await;
    let enrolling = s.alice().await;
    assert_eq!(ids(&s.list(&enrolling.access).await).len(), 3);

    let secret = s.enroll(&enrolling).await;
    let r = s.list(&enrolling.access).await;
    assert_eq!(ids(&r), [(enrolling.sid.clone(), true)]);
    assert_eq!(r.body["devices"], json!([]));
    for (what, refresh) in [("other", &other.refresh), ("by device", &by_device.refresh)] {
        let r = s.refresh(refresh).await;
        assert_eq!(r.error(), "invalid_grant", "{what}: {}", r.body);
    }
    // Their access tokens end with them; the enrolling session's and bob's live on.
    for access in [&other.access, &by_device.access] {
        expect_session_ended(&s.get("/api/me", Some(access)).await);
    }
    s.get("/api/me", Some(&enrolling.access)).await.expect_ok();
    s.get("/api/me", Some(&bob.access)).await.expect_ok();
    let enrolling = s.session_of(&s.refresh(&enrolling.refresh).await).await;
    let bob = s.session_of(&s.refresh(&bob.refresh).await).await;
    // The browser is no longer remembered: the new factor's code is asked for.
    let partial = s
        .login_on("alice", "alice-password", &device)
        .await
        .expect_partial();
    s.next_step();
    let code = totp::code_at(&secret, totp::step_at(s.now()));
    let body = json!({"mfa_token": partial, "code": code, "remember_device": true});
    let v = s.post("/auth/mfa/verify", &body, None).await;
    let again = v.cookie(DEVICE_COOKIE);
    let fresh = s.session_of(&v).await;

    // The application resets alice's factors itself: every session and device goes.
    let ended = s.completion.factors_changed("alice", None).await.unwrap();
    assert_eq!(ended, 2);
    for (refresh, access) in [
        (&fresh.refresh, &fresh.access),
        (&enrolling.refresh, &enrolling.access),
    ] {
        s.refresh(refresh).await.expect(400, "invalid_grant");
        expect_session_ended(&s.get("/api/me", Some(access)).await);
    }
    s.login_on("alice", "alice-password", &again)
        .await
        .expect_partial();
    s.refresh(&bob.refresh).await.expect_ok();
}

// ---------------------------------------------------------------------------------------
// Idle sessions

/// With an idle bound (the demo's `STEPUP_SESSION_IDLE_SECS`), a session that is neither
/// refreshed nor stepped up for that long ends: its refresh token is refused and it is
/// gone from the list, while a session in use lives on.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_session_ends_and_a_used_one_lives_on() {
    let mut config = demo_config::demo_config(5);
    config.session_idle_secs = 600;
    let s = start_with(config).await;
    let idle = s.alice().await;
    let idle_since = s.now();
    let busy = s.alice().await;
    // One second before the idle one's bound, the busy one refreshes.
    s.clock.set(idle_since + 599);
    let busy = s.session_of(&s.refresh(&busy.refresh).await).await;
    assert_eq!(ids(&s.list(&busy.access).await).len(), 2);
    s.clock.set(idle_since + 600);
    s.refresh(&idle.refresh).await.expect(400, "invalid_grant");
    assert_eq!(ids(&s.list(&busy.access).await), [(busy.sid.clone(), true)]);
    // The busy one: 599 s after its refresh, still alive.
    s.clock.set(idle_since + 599 + 599);
    s.refresh(&busy.refresh).await.expect_ok();
}
