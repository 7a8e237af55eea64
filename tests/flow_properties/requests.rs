//! Requests to the app, and its answers reduced to what the model predicts.

use crate::*;

/// An answer (the shared [`Reply`] of `tests/support/reply.rs`), reduced to what the model
/// predicts.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) error: String,
    pub(crate) retry_after: Option<u64>,
    pub(crate) body: Value,
}

impl Answer {
    pub(crate) fn short(&self) -> String {
        let mut s = format!("{} {}", self.status, self.error);
        if let Some(n) = self.body.get("attempts_remaining") {
            s.push_str(&format!(" (attempts_remaining {n})"));
        }
        if let Some(n) = self.retry_after {
            s.push_str(&format!(" (Retry-After {n})"));
        }
        if self.body.get("access_token").is_some() {
            s.push_str(" access_token");
        }
        if self.body.get("partial_token").is_some() {
            s.push_str(" partial_token");
        }
        if self.body.get("mfa_token").is_some() {
            s.push_str(" mfa_token");
        }
        s
    }

    pub(crate) fn str(&self, field: &str) -> Result<String, Violation> {
        self.body[field]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| violation(MODEL, format!("no string `{field}` in {}", self.body)))
    }
}

pub(crate) async fn send(app: &Router, req: Request<Body>) -> Answer {
    Answer::from(Reply::read(app.clone().oneshot(req).await.unwrap()).await)
}

/// Sends `reqs` at once: each from its own task, all released together by a barrier
/// (a synchronized burst); the answers in the order of `reqs`. `what` names them in a
/// violation when a task fails.
pub(crate) async fn send_together(
    app: &Router,
    reqs: Vec<Request<Body>>,
    what: &str,
) -> Result<Vec<Answer>, Violation> {
    let barrier = Arc::new(tokio::sync::Barrier::new(reqs.len()));
    let tasks: Vec<_> = reqs
        .into_iter()
        .map(|req| {
            let (app, barrier) = (app.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                send(&app, req).await
            })
        })
        .collect();
    let mut replies = Vec::new();
    for task in tasks {
        replies.push(
            task.await
                .map_err(|e| violation(MODEL, format!("a {what} task failed: {e}")))?,
        );
    }
    Ok(replies)
}

impl From<Reply> for Answer {
    fn from(r: Reply) -> Self {
        Answer {
            status: r.status.as_u16(),
            error: r.body["error"].as_str().unwrap_or_default().to_owned(),
            retry_after: r.header(RETRY_AFTER).and_then(|v| v.parse().ok()),
            body: r.body,
        }
    }
}

pub(crate) fn post(path: &str, body: &Value, bearer: Option<&str>) -> Request<Body> {
    let mut req = Request::post(path).header(CONTENT_TYPE, "application/json");
    if let Some(token) = bearer {
        req = req.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    req.body(Body::from(body.to_string())).unwrap()
}

pub(crate) fn get_req(path: &str, bearer: Option<&str>) -> Request<Body> {
    let mut req = Request::get(path);
    if let Some(token) = bearer {
        req = req.header(AUTHORIZATION, format!("Bearer {token}"));
    }
    req.body(Body::empty()).unwrap()
}

/// What is sent as the second factor.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum Code {
    Totp(String),
    Recovery(String),
    /// A code sent by email, typed in `code` as a TOTP code is.
    Sent(String),
    /// Passkey assertion `id` of the model's list, and its JSON.
    Passkey {
        id: usize,
        json: String,
    },
    /// A `passkey` that is no assertion.
    Malformed,
}

impl std::fmt::Debug for Code {
    /// An assertion by its number only (its JSON is long).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Code::Totp(c) => f.debug_tuple("Totp").field(c).finish(),
            Code::Recovery(c) => f.debug_tuple("Recovery").field(c).finish(),
            Code::Sent(c) => f.debug_tuple("Sent").field(c).finish(),
            Code::Passkey { id, .. } => write!(f, "Passkey(#{id})"),
            Code::Malformed => f.write_str("Malformed"),
        }
    }
}

/// What [`Code::Malformed`] sends: an object, but no `PublicKeyCredential`.
pub(crate) const MALFORMED_ASSERTION: &str = r#"{"id":"AAAA","type":"public-key"}"#;

pub(crate) fn verify_req(
    token: &str,
    code: &Code,
    token_as_bearer: bool,
    beside: Option<&str>,
) -> Request<Body> {
    let mut body = match code {
        Code::Totp(c) | Code::Sent(c) => json!({ "code": c }),
        Code::Recovery(c) => json!({ "recovery_code": c }),
        Code::Passkey { json, .. } => {
            json!({ "passkey": serde_json::from_str::<Value>(json).unwrap() })
        }
        Code::Malformed => {
            json!({ "passkey": serde_json::from_str::<Value>(MALFORMED_ASSERTION).unwrap() })
        }
    };
    if token_as_bearer {
        return post("/auth/mfa/verify", &body, Some(token));
    }
    body["mfa_token"] = json!(token);
    post("/auth/mfa/verify", &body, beside)
}
