//! The demo's browser pages: sign in, the second-factor form (a code or a passkey), the
//! dashboard, two step-up pages (billing: any second factor; admin: a passkey), the
//! security page (an authenticator app, passkeys) and the sessions. Static HTML and one script over the JSON
//! endpoints, in cookie mode; a same-origin check on every `POST` and `DELETE` (CSRF).

use axum::extract::Request;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HOST, ORIGIN, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

/// The pages, all public: what they show comes from the protected JSON routes.
pub const PAGES: &[&str] = &[
    "/",
    "/login",
    "/mfa",
    "/dashboard",
    "/billing",
    "/admin",
    "/security",
    "/sessions",
    "/static/app.css",
    "/static/app.js",
];

const LAYOUT: &str = include_str!("web/page.html");

const LOGIN: &str = r#"<h1>Sign in</h1>
<form id="login-form">
<label for="username">Username</label><input id="username" name="username" autocomplete="username" required>
<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>
<button id="submit" type="submit">Sign in</button>
</form>
<div id="message" class="notice hidden" role="alert"></div>
<p class="notice info">Try <strong>alice</strong> / alice-password (authenticator app) or <strong>bob</strong> / bob-password (password only).</p>"#;

const MFA: &str = r#"<h1 id="mfa-title">Two-step verification</h1>
<div id="passkey-option" class="hidden">
<p id="passkey-help">Use your passkey: your fingerprint, face or screen lock.</p>
<button id="use-passkey" type="button">Use a passkey</button>
</div>
<div id="code-option">
<p id="mfa-help">Enter the 6-digit code from your authenticator app.</p>
<form id="mfa-form">
<label for="code">Code</label><input id="code" class="code" inputmode="numeric" autocomplete="one-time-code" maxlength="6" required>
<label class="check"><input id="remember" type="checkbox"> Remember this browser for 30 days (your password alone signs you in here; pages like Billing still ask for a code)</label>
<button id="submit" type="submit">Verify</button>
</form>
</div>
<div id="message" class="notice hidden" role="alert"></div>
<p id="enroll-passkey" class="notice info hidden">This page needs a passkey, and your account has none yet. <a href="/security">Add a passkey</a> on the Security page, then come back.</p>
<p id="restart" class="hidden"><a id="start-again" href="/login">Start again</a></p>"#;

const DASHBOARD: &str = r#"<h1>Dashboard</h1>
<p id="loading">Loading…</p>
<dl id="me" class="hidden"><dt>User</dt><dd id="sub"></dd><dt>Methods</dt><dd id="amr"></dd><dt>Level</dt><dd id="acr"></dd><dt>Signed in at</dt><dd id="auth-time"></dd></dl>
<p><a href="/billing">Billing</a> asks for a second factor from the last 5 minutes; <a href="/admin">Admin</a> for a passkey from the last 5 minutes.</p>"#;

const BILLING: &str = r#"<h1>Billing</h1>
<p id="loading">Loading…</p>
<table id="invoices" class="hidden"><thead><tr><th>Invoice</th><th>Amount</th></tr></thead><tbody></tbody></table>"#;

const ADMIN: &str = r#"<h1>Admin</h1>
<p id="loading">Loading…</p>
<div id="admin" class="hidden"><div class="notice ok">You proved it's you with a passkey: this page resists phishing.</div>
<dl><dt>User</dt><dd id="sub"></dd><dt>Level</dt><dd id="acr"></dd></dl></div>"#;

const SECURITY: &str = r#"<h1>Security</h1>
<h2>Passkeys</h2>
<p>Sign in with your fingerprint, face or screen lock instead of a code. A passkey cannot be phished: pages like Admin ask for one.</p>
<ul id="passkeys" class="factors"></ul>
<p id="no-passkeys" class="hidden">No passkeys yet.</p>
<form id="passkey-form"><label for="passkey-name">Name of the new passkey</label><input id="passkey-name" maxlength="64" value="My passkey" required><button id="add-passkey" type="submit">Add a passkey</button></form>
<h2>Authenticator app</h2>
<p>Add an authenticator app as your second factor. (With one already set up, you confirm a fresh code first.)</p>
<button id="start-enroll" type="button">Set up an authenticator</button>
<div id="enroll" class="hidden">
<p>Scan this QR code with your authenticator app, or type the key.</p>
<div id="qr" class="qr"></div>
<p>Key: <code id="secret" class="secret"></code></p>
<form id="confirm-form"><label for="code">Code from the app</label><input id="code" class="code" inputmode="numeric" maxlength="6" required><button id="confirm" type="submit">Confirm</button></form>
</div>
<div id="recovery" class="hidden"><div class="notice ok">Authenticator added.</div>
<p><strong>Recovery codes, shown once.</strong> Keep them somewhere safe; each works once, when your phone is not at hand.</p>
<ol id="codes" class="codes"></ol></div>
<div id="message" class="notice hidden" role="alert"></div>"#;

const SESSIONS: &str = r#"<h1>Sessions</h1>
<p>Where you are signed in. Ending a session signs that browser or app out (it asks for a recent sign-in first).</p>
<p id="loading">Loading…</p>
<div id="sessions-area" class="hidden">
<table id="sessions"><thead><tr><th>Signed in</th><th>Last active</th><th>Methods</th><th></th></tr></thead><tbody></tbody></table>
<button id="end-others" type="button">Sign out everywhere else</button>
<h2>Remembered browsers</h2>
<p>Where your password alone signs you in, without a code (for 30 days).</p>
<p id="no-devices" class="hidden">None.</p>
<table id="devices" class="hidden"><thead><tr><th>Remembered</th><th>Last used</th><th>Until</th><th></th></tr></thead><tbody></tbody></table>
</div>
<div id="message" class="notice hidden" role="alert"></div>"#;

/// The page routes.
pub fn router() -> Router {
    Router::new()
        .route("/", get(|| async { Redirect::to("/dashboard") }))
        .route("/login", get(|| async { page("login", "Sign in", LOGIN) }))
        .route("/mfa", get(|| async { page("mfa", "Verify", MFA) }))
        .route(
            "/dashboard",
            get(|| async { page("dashboard", "Dashboard", DASHBOARD) }),
        )
        .route(
            "/billing",
            get(|| async { page("billing", "Billing", BILLING) }),
        )
        .route("/admin", get(|| async { page("admin", "Admin", ADMIN) }))
        .route(
            "/security",
            get(|| async { page("security", "Security", SECURITY) }),
        )
        .route(
            "/sessions",
            get(|| async { page("sessions", "Sessions", SESSIONS) }),
        )
        .route(
            "/static/app.css",
            get(|| async { asset("text/css", include_str!("web/app.css")) }),
        )
        .route(
            "/static/app.js",
            get(|| async { asset("text/javascript", include_str!("web/app.js")) }),
        )
}

/// A JSON body for the router's own `404` and `405` (a browser shows it as a page, not
/// as an error screen).
pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": "not_found" }))).into_response()
}

/// `405` with a JSON body.
pub async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({ "error": "method_not_allowed" })),
    )
        .into_response()
}

fn page(name: &str, title: &str, body: &str) -> Response {
    let html = LAYOUT
        .replace("{page}", name)
        .replace("{title}", title)
        .replace("{body}", body);
    let mut res = ([(CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    let h = res.headers_mut();
    // Scripts only from this origin (no inline script); no framing; no referrer leaks.
    h.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    h.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (CONTENT_TYPE, content_type),
            (X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// CSRF: a write (any method but `GET`, `HEAD`, `OPTIONS`, `TRACE`: `POST`, `PATCH`,
/// `DELETE`) that a browser marks as coming from another site, or
/// whose `Origin` is not this server, is refused before it reaches an endpoint. (The
/// endpoints also accept only `application/json`, and the cookies are
/// `SameSite=Strict`.)
pub async fn same_origin_writes(req: Request, next: Next) -> Response {
    let writes = !req.method().is_safe();
    if writes && !same_origin(req.headers()) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({
                "error": "cross_site_request",
                "error_description": "cross-site requests are refused",
            })),
        )
            .into_response();
    }
    next.run(req).await
}

fn same_origin(headers: &HeaderMap) -> bool {
    let header = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    // Fetch metadata (every current browser): same-origin, or typed by the user.
    if let Some(site) = header("sec-fetch-site") {
        if !matches!(site, "same-origin" | "none") {
            return false;
        }
    }
    // Origin, when sent, must name this host (http or https).
    match (header(ORIGIN.as_str()), header(HOST.as_str())) {
        (Some(origin), Some(host)) => {
            origin == format!("http://{host}") || origin == format!("https://{host}")
        }
        (Some(_), None) => false,
        (None, _) => true,
    }
}
