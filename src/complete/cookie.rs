//! Cookie transport for browsers.

use http::HeaderValue;

use crate::layer::CookieNames;

/// How the completion endpoints set cookies for browsers. Their names are those of
/// [`CookieNames`] ([`CookieNames::SECURE`], or [`CookieNames::INSECURE_HTTP`] for
/// plain-http testing):
///
/// - the **session cookie** carries the access token: `__Host-stepup-session`,
///   `Path=/`; read it in the layer with
///   [`GuardBuilder::cookie`](crate::layer::GuardBuilder::cookie)(`cookies.session_name()`);
/// - the **partial cookie** carries the partial token from login to the endpoints that
///   complete its challenge (verify, the passkey challenge, the send endpoint):
///   `__Secure-stepup-partial`, `Path=/auth` by default. No other endpoint reads it, and
///   the layer never takes it as a session. (`__Host-` cookies must have `Path=/`, so a
///   cookie scoped to a path takes the `__Secure-` prefix.)
/// - the **refresh cookie** carries the refresh token to the refresh and logout
///   endpoints: `__Secure-stepup-refresh`, `Path=/auth` by default (both endpoints must
///   be under it), for as long as the session's absolute lifetime remains. Refresh and
///   logout read the token from the body first, then from this cookie.
/// - the **device cookie** marks a browser whose user asked verify to remember it
///   (`"remember_device": true`, with [`CompletionBuilder::remember_device`]): a sealed
///   token naming the user and a device record, `__Host-stepup-device`, `Path=/`, for at
///   most 30 days; login reads it.
///
/// All are `HttpOnly; Secure; SameSite=Strict`. Verify clears the partial cookie and
/// sets a new session and refresh cookie; refresh replaces both; logout clears both.
/// The token responses still carry the tokens in their JSON body too, for API clients
/// of the same endpoints: a page should not keep them.
///
/// # Security
/// The endpoints accept only `Content-Type: application/json` bodies, which a cross-site
/// form cannot send without a CORS preflight; with `SameSite=Strict` this is the CSRF
/// defence of the completion endpoints. Your own state-changing routes need theirs.
///
/// [`CompletionBuilder::remember_device`]: super::CompletionBuilder::remember_device
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct CookieConfig {
    names: CookieNames,
    partial_path: String,
    refresh_path: String,
    secure: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl CookieConfig {
    /// The [`CookieNames::SECURE`] names; the partial and the refresh cookie scoped to
    /// `/auth`.
    pub fn new() -> Self {
        Self {
            names: CookieNames::SECURE,
            partial_path: "/auth".to_owned(),
            refresh_path: "/auth".to_owned(),
            secure: true,
        }
    }

    /// The path the refresh cookie is scoped to: a prefix of both the refresh and the
    /// logout endpoint's paths. Default `/auth`.
    pub fn refresh_path(mut self, path: impl Into<String>) -> Self {
        self.refresh_path = path.into();
        self
    }

    /// The path the partial cookie is scoped to: a prefix of the paths of verify, and of
    /// the passkey challenge and the send endpoint when they are mounted. Default `/auth`.
    pub fn partial_path(mut self, path: impl Into<String>) -> Self {
        self.partial_path = path.into();
        self
    }

    /// Plain-http local testing only: drops `Secure` and the `__Host-`/`__Secure-`
    /// prefixes (browsers refuse prefixed cookies without `Secure`).
    ///
    /// # Security
    /// Cookies without `Secure` travel in clear text over http.
    pub fn allow_insecure_http_for_testing(mut self) -> Self {
        self.secure = false;
        self.names = CookieNames::INSECURE_HTTP;
        self
    }

    /// The names of the cookies.
    pub fn names(&self) -> CookieNames {
        self.names
    }

    /// The session cookie's name.
    pub fn session_name(&self) -> &str {
        self.names.session
    }

    /// The partial cookie's name.
    pub fn partial_name(&self) -> &str {
        self.names.partial
    }

    /// The refresh cookie's name.
    pub fn refresh_name(&self) -> &str {
        self.names.refresh
    }

    /// The device cookie's name: `__Host-stepup-device` (`stepup-device` with
    /// [`allow_insecure_http_for_testing`](Self::allow_insecure_http_for_testing)).
    pub fn device_name(&self) -> &str {
        if self.secure {
            "__Host-stepup-device"
        } else {
            "stepup-device"
        }
    }

    pub(crate) fn set_device(&self, token: &str, max_age: u64) -> Option<HeaderValue> {
        self.build(self.device_name(), "/", token, max_age)
    }

    pub(crate) fn clear_device(&self) -> Option<HeaderValue> {
        self.build(self.device_name(), "/", "", 0)
    }

    pub(crate) fn set_refresh(&self, token: &str, max_age: u64) -> Option<HeaderValue> {
        self.build(self.names.refresh, &self.refresh_path, token, max_age)
    }

    pub(crate) fn clear_refresh(&self) -> Option<HeaderValue> {
        self.build(self.names.refresh, &self.refresh_path, "", 0)
    }

    pub(crate) fn set_session(&self, token: &str, max_age: u64) -> Option<HeaderValue> {
        self.build(self.names.session, "/", token, max_age)
    }

    pub(crate) fn clear_session(&self) -> Option<HeaderValue> {
        self.build(self.names.session, "/", "", 0)
    }

    pub(crate) fn set_partial(&self, token: &str, max_age: u64) -> Option<HeaderValue> {
        self.build(self.names.partial, &self.partial_path, token, max_age)
    }

    pub(crate) fn clear_partial(&self) -> Option<HeaderValue> {
        self.build(self.names.partial, &self.partial_path, "", 0)
    }

    fn build(&self, name: &str, path: &str, value: &str, max_age: u64) -> Option<HeaderValue> {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::try_from(format!(
            "{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly{secure}; SameSite=Strict"
        ))
        .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_httponly_secure_strict_and_prefixed() {
        let c = CookieConfig::new();
        assert_eq!(
            c.set_session("tok", 900).unwrap(),
            "__Host-stepup-session=tok; Path=/; Max-Age=900; HttpOnly; Secure; SameSite=Strict"
        );
        assert_eq!(
            c.set_partial("p", 300).unwrap(),
            "__Secure-stepup-partial=p; Path=/auth; Max-Age=300; HttpOnly; Secure; SameSite=Strict"
        );
        assert_eq!(
            c.clear_partial().unwrap(),
            "__Secure-stepup-partial=; Path=/auth; Max-Age=0; HttpOnly; Secure; SameSite=Strict"
        );
        assert_eq!(
            c.set_refresh("r", 86400).unwrap(),
            "__Secure-stepup-refresh=r; Path=/auth; Max-Age=86400; HttpOnly; Secure; SameSite=Strict"
        );
        assert_eq!(
            c.clear_refresh().unwrap(),
            "__Secure-stepup-refresh=; Path=/auth; Max-Age=0; HttpOnly; Secure; SameSite=Strict"
        );
        assert_eq!(
            c.set_device("d", 2_592_000).unwrap(),
            "__Host-stepup-device=d; Path=/; Max-Age=2592000; HttpOnly; Secure; SameSite=Strict"
        );
        assert_eq!(
            c.clear_device().unwrap(),
            "__Host-stepup-device=; Path=/; Max-Age=0; HttpOnly; Secure; SameSite=Strict"
        );
    }

    #[test]
    fn insecure_mode_is_explicit_and_drops_prefixes() {
        let c = CookieConfig::new().allow_insecure_http_for_testing();
        let v = c.set_session("t", 1).unwrap();
        assert_eq!(
            v,
            "stepup-session=t; Path=/; Max-Age=1; HttpOnly; SameSite=Strict"
        );
        assert_eq!(c.names(), CookieNames::INSECURE_HTTP);
        assert_eq!(
            (c.session_name(), c.partial_name(), c.refresh_name()),
            ("stepup-session", "stepup-partial", "stepup-refresh")
        );
        assert_eq!(CookieConfig::new().names(), CookieNames::SECURE);
        assert_eq!(c.device_name(), "stepup-device");
        assert!(!c
            .set_device("d", 1)
            .unwrap()
            .to_str()
            .unwrap()
            .contains("Secure"));
    }
}
