//! Headless Chromium driven over WebDriver (chromedriver on a free port, fantoccini), for
//! the browser tests of the demo's pages: waits that poll what the pages show,
//! screenshots, cookies as a request would carry them, and the WebDriver virtual
//! authenticator (WebAuthn §11: `POST /session/{id}/webauthn/authenticator`) for passkeys.
//!
//! Needs `chromium` and `chromedriver` (Debian: `apt-get install chromium
//! chromium-driver`; `.ci/run` installs them). Without them a test fails, never skips.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// How long a wait lasts before the test fails.
pub const WAIT: Duration = Duration::from_secs(15);

/// chromedriver on a free port, and a headless Chromium session through it.
pub struct Browser {
    /// The WebDriver session.
    pub client: Client,
    driver: tokio::process::Child,
    /// Where [`Browser::shot`] writes; `None` for a browser that takes no screenshots
    /// (and so leaves the directory of the one that does alone).
    pub shots: Option<PathBuf>,
    n: usize,
    _profile: TempDir,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn find(program: &str, candidates: &[&str]) -> PathBuf {
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{program} not found (looked at {candidates:?}): install Debian's chromium and \
                 chromium-driver (`apt-get install chromium chromium-driver`); `.ci/run` does"
            )
        })
}

impl Browser {
    /// A browser that takes screenshots into `target/<shots>/` (emptied first).
    pub async fn start(shots: &str) -> Browser {
        Self::launch(Some(shots)).await
    }

    /// A browser that takes none: it can run beside the one that does.
    pub async fn start_unrecorded() -> Browser {
        Self::launch(None).await
    }

    async fn launch(shots: Option<&str>) -> Browser {
        let chromium = find(
            "chromium",
            &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
        );
        let chromedriver = find("chromedriver", &["/usr/bin/chromedriver"]);
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let driver = tokio::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            // Its own process group, with the Chromium it starts: killed as one on drop.
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not listen"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = std::env::temp_dir().join(format!("stepup-chromium-{port}"));
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--window-size=1000,800",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        let shots = shots.map(|dir| {
            let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .parent()
                .unwrap()
                .join(dir);
            let _ = std::fs::remove_dir_all(&shots);
            std::fs::create_dir_all(&shots).unwrap();
            shots
        });
        Browser {
            client,
            driver,
            shots,
            n: 0,
            _profile: TempDir(profile),
        }
    }

    pub async fn shot(&mut self, name: &str) {
        self.n += 1;
        let png = self.client.screenshot().await.unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let shots = self
            .shots
            .as_ref()
            .expect("a browser started to take screenshots");
        std::fs::write(shots.join(format!("{:02}-{name}.png", self.n)), png).unwrap();
    }

    pub async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    /// Waits until `css` matches a visible element (`.hidden` is how the pages hide).
    ///
    /// A lookup that a navigation interrupts (chromedriver answers "aborted by
    /// navigation" while the next page loads) is asked again, within the same bound.
    pub async fn wait(&self, css: &str) -> fantoccini::elements::Element {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let found = self
                .client
                .wait()
                .at_most(left)
                .for_element(Locator::Css(css))
                .await;
            match found {
                Ok(element) => return element,
                Err(e)
                    if e.to_string().contains("aborted by navigation")
                        && std::time::Instant::now() < deadline => {}
                Err(e) => panic!("waiting for `{css}`: {e}"),
            }
        }
    }

    pub async fn page(&self) -> String {
        let body = self.wait("body[data-page]").await;
        body.attr("data-page").await.unwrap().unwrap()
    }

    /// Waits for the page `name` to be the one shown.
    pub async fn on(&self, name: &str) {
        self.wait(&format!("body[data-page='{name}']")).await;
    }

    pub async fn fill(&self, css: &str, text: &str) {
        let input = self.wait(css).await;
        input.clear().await.unwrap();
        input.send_keys(text).await.unwrap();
    }

    pub async fn click(&self, css: &str) {
        self.wait(css).await.click().await.unwrap();
    }

    pub async fn text(&self, css: &str) -> String {
        self.wait(css).await.text().await.unwrap()
    }

    /// Waits until the element `css` shows a text containing `needle` (the page updates
    /// after its request returns), and gives the text.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let text = match self.client.find(Locator::Css(css)).await {
                Ok(el) => el.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if text.contains(needle) {
                return text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "`{css}` never showed `{needle}`; it shows `{text}`"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until exactly `n` elements match `css` (the page re-renders after its
    /// request returns).
    pub async fn wait_count(&self, css: &str, n: usize) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let found = self.client.find_all(Locator::Css(css)).await.unwrap().len();
            if found == n {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "`{css}` matches {found}, not {n}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn url(&self) -> String {
        self.client.current_url().await.unwrap().to_string()
    }

    /// Waits until the browser is no longer on a URL starting with `prefix` (the page
    /// moves on after its request returns), and gives the URL it is on then.
    pub async fn url_after_leaving(&self, prefix: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let url = self.url().await;
            if !url.starts_with(prefix) {
                return url;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the browser stayed on `{url}`"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The cookies a request to `path` would carry (the partial cookie is scoped to the
    /// verify path, so the browser is taken there to read it, then back).
    pub async fn cookies_at(&self, base: &str, path: &str) -> Vec<(String, bool)> {
        let back = self.url().await;
        self.goto(&format!("{base}{path}")).await;
        let cookies = self
            .client
            .get_all_cookies()
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.name().to_owned(), c.http_only().unwrap_or(false)))
            .collect();
        self.goto(&back).await;
        cookies
    }

    /// The value of cookie `name` as a request to `path` would carry it.
    pub async fn cookie_value_at(&self, base: &str, path: &str, name: &str) -> Option<String> {
        let back = self.url().await;
        self.goto(&format!("{base}{path}")).await;
        let value = self
            .client
            .get_all_cookies()
            .await
            .unwrap()
            .into_iter()
            .find(|c| c.name() == name)
            .map(|c| c.value().to_owned());
        self.goto(&back).await;
        value
    }

    pub async fn sign_in(&self, base: &str, user: &str, password: &str) {
        self.sign_in_at(&format!("{base}/login"), user, password)
            .await;
    }

    /// Signs in on the login page at `url` (e.g. with a `next` parameter).
    pub async fn sign_in_at(&self, url: &str, user: &str, password: &str) {
        self.goto(url).await;
        self.on("login").await;
        self.fill("#username", user).await;
        self.fill("#password", password).await;
        self.click("#submit").await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // chromedriver and every Chromium process it started, even after a panic.
        if let Some(pid) = self.driver.id() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
        }
        let _ = self.driver.start_kill();
    }
}

/// A WebDriver command of the WebAuthn extension (`/session/{id}/webauthn/…`), which
/// fantoccini does not name: sent through [`Client::issue_cmd`].
#[derive(Debug)]
struct WebAuthn {
    method: http::Method,
    path: String,
    body: Option<Value>,
}

impl WebDriverCompatibleCommand for WebAuthn {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let session = session_id.unwrap_or_default();
        base_url.join(&format!("session/{session}/webauthn/{}", self.path))
    }

    fn method_and_body(&self, _: &url::Url) -> (http::Method, Option<String>) {
        (
            self.method.clone(),
            self.body.as_ref().map(Value::to_string),
        )
    }
}

/// A virtual authenticator's settings (WebAuthn §11.2, Virtual Authenticator Options).
#[derive(Clone, Copy, Debug)]
pub struct Authenticator {
    /// Whether it verifies the user (a fingerprint, a PIN) when asked.
    pub user_verified: bool,
    /// Whether the user consents (otherwise every ceremony is cancelled).
    pub user_consenting: bool,
    /// Whether its new credentials are backup-eligible and backed up (synced).
    pub synced: bool,
}

impl Default for Authenticator {
    /// A platform authenticator (`internal`, CTAP2, resident keys) whose user verifies.
    fn default() -> Self {
        Self {
            user_verified: true,
            user_consenting: true,
            synced: false,
        }
    }
}

impl Browser {
    async fn webauthn(&self, method: http::Method, path: String, body: Option<Value>) -> Value {
        let cmd = WebAuthn { method, path, body };
        let what = format!("{cmd:?}");
        self.client
            .issue_cmd(cmd)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"))
    }

    /// Adds a virtual authenticator to the browser: its id.
    pub async fn add_authenticator(&self, a: Authenticator) -> String {
        let options = json!({
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": true,
            "hasUserVerification": true,
            "isUserConsenting": a.user_consenting,
            "isUserVerified": a.user_verified,
            "defaultBackupEligibility": a.synced,
            "defaultBackupState": a.synced,
        });
        let id = self
            .webauthn(http::Method::POST, "authenticator".into(), Some(options))
            .await;
        id.as_str().expect("an authenticator id").to_owned()
    }

    /// Removes a virtual authenticator (its credentials go with it).
    pub async fn remove_authenticator(&self, id: &str) {
        self.webauthn(http::Method::DELETE, format!("authenticator/{id}"), None)
            .await;
    }

    /// Whether the authenticator verifies its user from now on.
    pub async fn set_user_verified(&self, id: &str, verified: bool) {
        let body = json!({ "isUserVerified": verified });
        self.webauthn(
            http::Method::POST,
            format!("authenticator/{id}/uv"),
            Some(body),
        )
        .await;
    }

    /// The credentials the authenticator holds (`credentialId`, `rpId`, `userHandle`,
    /// `signCount`, …).
    pub async fn credentials(&self, id: &str) -> Vec<Value> {
        let list = self
            .webauthn(
                http::Method::GET,
                format!("authenticator/{id}/credentials"),
                None,
            )
            .await;
        list.as_array().cloned().unwrap_or_default()
    }
}
