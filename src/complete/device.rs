//! Remember this device (DESIGN §8.3): after a verify that asked for it, the browser
//! gets a sealed `__Host-stepup-device` cookie naming its user and a device record in the
//! store; a later password login of the same user on that browser completes without
//! the second factor, with `amr` `["pwd"]` only, so it never meets a step-up route
//! (NIST SP 800-63B-4, remembered authenticators). Devices are listed with the sessions,
//! forgotten one by one (`DELETE …/devices/{id}`), and all at a change of factors.

use bytes::Bytes;
use http::header::SET_COOKIE;
use http::request::Parts;
use http::{HeaderMap, HeaderValue, Response};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::{ErrorKind, Failure};
use super::recent::authorize_delete;
use super::response::no_content;
use super::Completion;
use crate::audit::Record;
use crate::challenge::DEVICE_TYP;
use crate::layer::credential::{self, Credential};
use crate::random;
use crate::store::{DeviceInfo, StoreError};

/// What the device cookie seals: whose device, which record, until when.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeviceClaims {
    /// The user.
    sub: String,
    /// The device id (the store's record).
    did: String,
    /// When it was remembered.
    iat: u64,
    /// When the cookie stops counting (the record's expiry too).
    exp: u64,
}

/// The device cookie of a request, opened and unexpired: `(sub, device id)`. A missing,
/// malformed, tampered, foreign-key or expired cookie is none.
fn presented(completion: &Completion, headers: &HeaderMap, now: u64) -> Option<(String, String)> {
    let name = completion.cookies()?.device_name();
    let Credential::Bearer(token) = credential::cookie(headers, name) else {
        return None;
    };
    let sealer = completion.inner().guard.sealer()?;
    let claims: DeviceClaims = sealer.open_json(DEVICE_TYP, token).ok()?;
    (claims.exp > now).then_some((claims.sub, claims.did))
}

/// Whether the request's device cookie is a remembered device of `sub`, live in the
/// store (its `last_used_at` becomes now). Another user's cookie is no device.
pub(crate) async fn recognized(
    completion: &Completion,
    headers: &HeaderMap,
    sub: &str,
    now: u64,
) -> Result<bool, StoreError> {
    if completion.inner().remember_device.is_none() {
        return Ok(false);
    }
    match presented(completion, headers, now) {
        Some((owner, id)) if owner == sub => {
            completion.inner().store.device_use(sub, &id, now).await
        }
        _ => Ok(false),
    }
}

/// Remembers this browser for `sub` after a verify that asked for it: a new device
/// record and the sealed cookie that names it (replacing the record of the cookie the
/// browser had for `sub`, if any). `None` when remembering is off (no
/// `remember_device` lifetime, or no cookies).
pub(crate) async fn remember(
    completion: &Completion,
    headers: &HeaderMap,
    sub: &str,
    now: u64,
) -> Result<Option<HeaderValue>, Failure> {
    let inner = completion.inner();
    let (Some(lifetime), Some(cookies), Some(sealer)) = (
        inner.remember_device,
        completion.cookies(),
        inner.guard.sealer(),
    ) else {
        return Ok(None);
    };
    let expires_at = now.saturating_add(lifetime);
    let id = random::id().map_err(|_| Failure::new(ErrorKind::ServerError))?;
    if let Some((owner, old)) = presented(completion, headers, now) {
        if owner == sub {
            inner.store.device_remove(sub, &old, now).await?;
        }
    }
    inner.store.device_add(sub, &id, expires_at, now).await?;
    let claims = DeviceClaims {
        sub: sub.to_owned(),
        did: id,
        iat: now,
        exp: expires_at,
    };
    let sealed = sealer.seal_json(DEVICE_TYP, &claims).map_err(|e| {
        tracing::error!(error = %e, "could not seal a device cookie");
        Failure::new(ErrorKind::ServerError)
    })?;
    Ok(cookies.set_device(&sealed, lifetime))
}

/// Forgets every remembered device of `sub` (their factors changed).
pub(crate) async fn forget_all(
    completion: &Completion,
    sub: &str,
    now: u64,
) -> Result<(), StoreError> {
    completion.inner().store.devices_clear(sub, now).await
}

/// The caller's devices as the sessions answer lists them: `{"id","created_at",
/// "last_used_at","expires_at","current"}` (`current`: this browser's cookie names it).
pub(crate) async fn listed(
    completion: &Completion,
    headers: &HeaderMap,
    sub: &str,
    now: u64,
) -> Result<Vec<Value>, StoreError> {
    let devices = completion.inner().store.devices(sub, now).await?;
    let this = presented(completion, headers, now)
        .filter(|(owner, _)| owner == sub)
        .map(|(_, id)| id);
    Ok(devices
        .iter()
        .map(|d: &DeviceInfo| {
            json!({
                "id": d.id,
                "created_at": d.created_at,
                "last_used_at": d.last_used_at,
                "expires_at": d.expires_at,
                "current": this.as_deref() == Some(d.id.as_str()),
            })
        })
        .collect())
}

/// `DELETE …/devices/{id}` → `204`: forgets one of the caller's remembered devices (the
/// next password login there asks for the second factor again). The rules of `DELETE
/// …/sessions/{id}`: a recent authentication first; another user's or an unknown id is
/// `404`. Forgetting this browser also clears its device cookie.
pub(crate) async fn delete(
    completion: &Completion,
    parts: Parts,
    content_type: Result<(), Failure>,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure> {
    let now = completion.inner().guard.clock().now();
    let (claims, id) = match authorize_delete(completion, &parts, content_type, now, audit).await? {
        Ok(authorized) => authorized,
        Err(step_up) => return Ok(step_up),
    };
    let store = &completion.inner().store;
    if !store.device_remove(claims.sub(), id, now).await? {
        audit.reason("no_such_device");
        return Err(Failure::new(ErrorKind::NotFound));
    }
    let mut response = no_content();
    let this = presented(completion, &parts.headers, now);
    if this.is_some_and(|(owner, did)| owner == claims.sub() && did == id) {
        if let Some(v) = completion.cookies().and_then(|c| c.clear_device()) {
            response.headers_mut().append(SET_COOKIE, v);
        }
    }
    Ok(response)
}
