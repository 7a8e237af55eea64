//! Login, stage one: the password.

use bytes::Bytes;
use http::header::SET_COOKIE;
use http::request::Parts;
use http::Response;
use serde::Deserialize;
use serde_json::json;

use super::dpop::{self, Target};
use super::enrolled::Enrolled;
use super::error::{ErrorKind, Failure};
use super::response::json_ok;
use super::username::canonical_username;
use super::{attempt, device, session, Account, Completion};
use crate::audit::{Outcome, Record};
use crate::store::{Reservation, Settlement};
use crate::token::Grant;

/// The body of a login.
#[derive(Deserialize)]
pub(crate) struct LoginBody {
    username: String,
    password: String,
}

/// Longest username or password looked at; longer ones fail like a wrong password.
const MAX_FIELD_LEN: usize = 1024;

/// Checks the password under a reserved login attempt (DESIGN §8.2): `429` while the
/// account (from this client, or at all) is locked out, even for the right password;
/// unknown usernames are counted and answered exactly like wrong passwords.
async fn authenticate(
    completion: &Completion,
    parts: &Parts,
    body: &LoginBody,
    audit: &mut Record,
) -> Result<Option<Account>, Failure> {
    let inner = completion.inner();
    if body.username.len() > MAX_FIELD_LEN || body.password.len() > MAX_FIELD_LEN {
        // Never an account: nothing to guess, nothing to count.
        return Ok(None);
    }
    // One canonical name for counting and for the password check.
    let username = canonical_username(&body.username);
    let throttle = &inner.login_throttle;
    let keys = throttle.keys(&username, parts);
    let (store, limits, now) = (&inner.store, throttle.limits(), inner.guard.clock().now());
    let refused = match store
        .reserve_login(&keys.account, &keys.client, limits, now)
        .await?
    {
        Reservation::Granted => None,
        Reservation::Locked { until } => Some(until.saturating_sub(now).max(1)),
        _ => Some(1),
    };
    if let Some(retry_after) = refused {
        audit.reason("login_throttled");
        return Err(
            attempt::too_many(retry_after).describe("too many failed sign-ins; try again later")
        );
    }
    let checked = inner.accounts.authenticate(&username, &body.password).await;
    let settlement = match &checked {
        Ok(Some(_)) => Settlement::Succeeded,
        Ok(None) => Settlement::Failed,
        Err(_) => Settlement::Released,
    };
    store
        .settle_login(&keys.account, &keys.client, settlement, limits, now)
        .await?;
    Ok(checked?)
}

/// `POST …/login`, its body as the endpoint read it. With a factor enrolled the answer
/// is a partial token only: password OK is not logged in. Unless the browser is a
/// device the user asked to remember (see `device.rs`): then a session with `amr`
/// `["pwd"]` only, never `mfa`.
///
/// Where the completion binds sessions to keys (see `dpop.rs`), a `DPoP` proof is
/// checked before the password (`400 invalid_dpop_proof`) and used once after it: the
/// partial token and the session are bound to its key.
pub(crate) async fn handle(
    completion: &Completion,
    parts: Parts,
    body: Result<LoginBody, Failure>,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure> {
    let inner = completion.inner();
    let body = body?;
    let offered = dpop::offered(completion, Target::of(&parts), inner.guard.clock().now())?;
    let account = authenticate(completion, &parts, &body, audit).await?;
    // The username of a failed login is not audited: people type passwords there.
    let Some(account) = account else {
        return Err(Failure::new(ErrorKind::InvalidCredentials));
    };
    audit.sub(&account.id);
    let mut grant = Grant::new(account.id.clone()).amr(["pwd"]);
    if let Some(scope) = &account.scope {
        grant = grant.scope(scope.clone());
    }
    let now = inner.guard.clock().now();
    let bound = offered.is_some();
    if let Some(proof) = offered {
        // The password checked out: only now does the proof cost a store write.
        dpop::use_once(completion, &proof, now).await?;
        grant = grant.dpop_jkt(proof.jkt);
    }
    let enrolled = Enrolled::load(completion, &account.id).await?;
    let skip = if enrolled.is_empty() {
        Some("no_second_factor")
    } else if device::recognized(completion, &parts.headers, &account.id, now).await? {
        Some("remembered_device")
    } else {
        None
    };
    if let Some(why) = skip {
        // Password only: the password `acr`, `amr` ["pwd"]: no step-up route opens.
        let grant = grant.acr(inner.password_acr.clone());
        let session = session::start(completion, &grant).await?;
        audit.token(&session.access.token);
        audit.reason(why);
        return Ok(session.response(completion));
    }
    let partial = inner.issuer.issue_bound_partial(&grant).map_err(|e| {
        tracing::error!(error = %e, "could not issue a partial token");
        Failure::new(ErrorKind::ServerError)
    })?;
    audit.token(&partial.token);
    audit.outcome(Outcome::MfaRequired, None);
    let mut response = json_ok(&json!({
        "status": "mfa_required",
        "partial_token": partial.token,
        "expires_in": partial.expires_in,
        "mfa_requirements": enrolled.requirements(false),
    }));
    // A partial token bound to a key goes to an API client, never in a cookie.
    let cookies = completion.cookies().filter(|_| !bound);
    if let Some(v) = cookies.and_then(|c| c.set_partial(&partial.token, partial.expires_in)) {
        response.headers_mut().append(SET_COOKIE, v);
    }
    Ok(response)
}
