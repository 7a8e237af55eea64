//! Users manage their second factors (DESIGN §8.4): `GET …/factors` lists them, `PATCH
//! …/factors/{id}` names one, `DELETE …/factors/{id}` removes one and `POST
//! …/mfa/recovery-codes` replaces the recovery codes. Removing and replacing need the
//! recent authentication of `recent.rs`, and are changes of factors: the user's
//! remembered devices are forgotten and their other sessions end
//! ([`Completion::factors_changed`]), before the directory changes, so that a failure
//! never leaves the new factors with the old sessions.
//!
//! # The last factor
//! Unless the application allows accounts without MFA, a user keeps at least one factor
//! that signs in (recovery codes alone do not count: they are the fallback of another
//! factor). A removal checks before it removes, and again after: two removals at once
//! of a user's last two factors both pass the first check, and whichever then finds
//! none left puts its factor back and answers `409 last_factor`. So at least one stays
//! (for the instant between the two, a password login of that user sees no factor).

use bytes::Bytes;
use http::request::Parts;
use http::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::error::{ErrorKind, Failure};
use super::recent::{authorize, path_id, signed_in, Caller};
use super::response::{json_ok, no_content};
use super::Completion;
use crate::audit::{Action, Outcome, Record};
use crate::factor::stored::{is_id, kind};
use crate::factor::{recovery, StoredFactor};
use crate::token::Claims;

/// The longest name of a factor, in characters (after trimming).
pub(crate) const MAX_NAME_CHARS: usize = 64;

/// How often a rename re-reads a factor whose data changed under it (a passkey's
/// counter, a spent recovery code).
const RENAME_TRIES: usize = 3;

/// Whether `factor` signs in on its own: any kind this crate knows but recovery codes.
fn signs_in(factor: &StoredFactor) -> bool {
    factor.kind != kind::RECOVERY_CODES && kind::requirement(&factor.kind).is_some()
}

/// `kind` as an audit reason: the crate's constant, or `other`.
fn kind_reason(k: &str) -> &'static str {
    [
        kind::TOTP,
        kind::RECOVERY_CODES,
        kind::PASSKEY,
        kind::EMAIL,
        kind::SMS,
    ]
    .into_iter()
    .find(|known| *known == k)
    .unwrap_or("other")
}

/// One factor as `GET …/factors` shows it: never its data.
fn factor_json(factor: &StoredFactor) -> Value {
    let mut shown = json!({
        "id": factor.id,
        "type": kind::requirement(&factor.kind).unwrap_or(factor.kind.as_str()),
        "name": factor.name,
        "created_at": factor.created_at,
    });
    if factor.is(kind::RECOVERY_CODES) {
        let remaining = recovery::from_data(&factor.data).map_or(0, |hashes| hashes.len());
        if let Some(object) = shown.as_object_mut() {
            object.insert("remaining".into(), remaining.into());
        }
    }
    shown
}

/// The factor id a `…/factors/{id}` path ends with (32 lowercase hex digits), else `400`.
fn factor_id(path: &str) -> Result<&str, Failure> {
    path_id(path)
        .ok()
        .filter(|id| is_id(id))
        .ok_or(Failure::invalid_request("the id is malformed"))
}

/// A name as the user gave it, trimmed: 1 to [`MAX_NAME_CHARS`] characters, none of them
/// a control character nor a bidirectional override or isolate (which would make the
/// name display as another), else `400`.
pub(crate) fn valid_name(name: &str) -> Result<String, Failure> {
    let name = name.trim();
    let bidi = |c: char| matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    let length = name.chars().count();
    if length == 0 || length > MAX_NAME_CHARS {
        return Err(Failure::invalid_request(
            "the name must be 1 to 64 characters",
        ));
    }
    if name.chars().any(|c| c.is_control() || bidi(c)) {
        return Err(Failure::invalid_request(
            "the name must not contain control characters",
        ));
    }
    Ok(name.to_owned())
}

/// `404 not_found` for a factor that is not the caller's.
fn no_such_factor(audit: &mut Record) -> Failure {
    audit.reason("no_such_factor");
    Failure::new(ErrorKind::NotFound).describe("no such factor")
}

/// `GET …/factors` → `{"factors":[…]}`, the caller's factors oldest first.
pub(crate) async fn list(
    completion: &Completion,
    parts: Parts,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure> {
    let claims = signed_in(completion, &parts, audit)?;
    let mut factors = completion.inner().factors.factors(claims.sub()).await?;
    // The directory lists them oldest first; a record put back or replaced may not be.
    factors.sort_by_key(|f| f.created_at);
    let shown: Vec<Value> = factors.iter().map(factor_json).collect();
    Ok(json_ok(&json!({ "factors": shown })))
}

/// The body of a rename.
#[derive(Deserialize)]
pub(crate) struct RenameBody {
    name: String,
}

/// `PATCH …/factors/{id}` `{"name"}` → `204`, by compare-and-set on the factor's data
/// (re-read a few times if it changes meanwhile, then `503`).
pub(crate) async fn rename(
    completion: &Completion,
    parts: Parts,
    body: Result<RenameBody, Failure>,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure> {
    let claims = signed_in(completion, &parts, audit)?;
    let sub = claims.sub();
    let body = body?;
    let id = factor_id(parts.uri.path())?;
    let name = valid_name(&body.name)?;
    let directory = &completion.inner().factors;
    for _ in 0..RENAME_TRIES {
        let factors = directory.factors(sub).await?;
        let Some(current) = factors.into_iter().find(|f| f.id == id) else {
            return Err(no_such_factor(audit));
        };
        let renamed = current.clone().named(Some(name.clone()));
        if directory
            .update_factor(sub, &renamed, &current.data)
            .await?
        {
            return Ok(no_content());
        }
    }
    tracing::warn!("a factor kept changing while it was renamed");
    audit.reason("factor_kept_changing");
    Err(Failure {
        retry_after: Some(1),
        ..Failure::new(ErrorKind::TemporarilyUnavailable)
    })
}

/// The caller of an endpoint that changes factors, in the order every endpoint answers:
/// `401` without one, the content type (as the endpoint checked it), the id if `id`,
/// then the recent-authentication rule (the step-up answer in `Err`).
async fn recent_caller<'p>(
    completion: &Completion,
    parts: &'p Parts,
    content_type: Result<(), Failure>,
    id: bool,
    audit: &mut Record,
) -> Result<Result<(Claims, &'p str), Response<Bytes>>, Failure> {
    let caller = Caller::of(completion, parts);
    if caller.claims.is_none() {
        return Err(Failure::new(ErrorKind::Unauthorized));
    }
    content_type?;
    let id = if id { factor_id(parts.uri.path())? } else { "" };
    let now = completion.inner().guard.clock().now();
    Ok(authorize(completion, caller, now, audit)
        .await?
        .map(|claims| (claims, id)))
}

/// `DELETE …/factors/{id}` → `204`; the last factor that signs in `409` unless allowed.
pub(crate) async fn remove(
    completion: &Completion,
    parts: Parts,
    content_type: Result<(), Failure>,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure> {
    let (claims, id) = match recent_caller(completion, &parts, content_type, true, audit).await? {
        Ok(authorized) => authorized,
        Err(step_up) => return Ok(step_up),
    };
    let (sub, inner) = (claims.sub(), completion.inner());
    let factors = inner.factors.factors(sub).await?;
    let Some(target) = factors.iter().find(|f| f.id == id).cloned() else {
        return Err(no_such_factor(audit));
    };
    let others = factors.iter().any(|f| f.id != id && signs_in(f));
    if signs_in(&target) && !others && !inner.allow_without_mfa {
        return Err(Failure::new(ErrorKind::LastFactor));
    }
    completion.factors_changed(sub, claims.sid()).await?;
    if !inner.factors.remove_factor(sub, id).await? {
        // A concurrent removal of the same factor.
        return Err(no_such_factor(audit));
    }
    if signs_in(&target) {
        settle(completion, sub, &target).await?;
    }
    let mut removed = Record::new(Action::FactorRemoved);
    removed.sub(sub);
    removed.emit(Outcome::Ok, Some(kind_reason(&target.kind)));
    inner.hooks.factor_removed(sub, &target.kind);
    Ok(no_content())
}

/// After `removed` (a factor that signs in) is gone: if the user has none left that
/// signs in (a concurrent removal took the other), either it goes back and the answer
/// is `409 last_factor`, or (accounts without MFA allowed) the recovery codes go too.
async fn settle(completion: &Completion, sub: &str, removed: &StoredFactor) -> Result<(), Failure> {
    let inner = completion.inner();
    let left = inner.factors.factors(sub).await?;
    if left.iter().any(signs_in) {
        return Ok(());
    }
    if !inner.allow_without_mfa {
        tracing::info!("a concurrent removal took the user's other factor; putting one back");
        inner.factors.add_factor(sub, removed.clone()).await?;
        return Err(Failure::new(ErrorKind::LastFactor));
    }
    for codes in left.iter().filter(|f| f.is(kind::RECOVERY_CODES)) {
        inner.factors.remove_factor(sub, &codes.id).await?;
    }
    Ok(())
}

/// `POST …/mfa/recovery-codes` → `{"recovery_codes":[…]}`: a new set replaces the old.
pub(crate) async fn regenerate(
    completion: &Completion,
    parts: Parts,
    content_type: Result<(), Failure>,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure> {
    let (claims, _) = match recent_caller(completion, &parts, content_type, false, audit).await? {
        Ok(authorized) => authorized,
        Err(step_up) => return Ok(step_up),
    };
    let (sub, inner) = (claims.sub(), completion.inner());
    let factors = inner.factors.factors(sub).await?;
    if !factors.iter().any(signs_in) {
        return Err(Failure::invalid_request(
            "recovery codes back up a factor: enroll a factor first",
        ));
    }
    let server_error = |_| Failure::new(ErrorKind::ServerError);
    let (codes, hashes) = recovery::generate().map_err(server_error)?;
    let now = inner.guard.clock().now();
    let set = StoredFactor::new(kind::RECOVERY_CODES, recovery::to_data(&hashes), now)
        .map_err(server_error)?;
    completion.factors_changed(sub, claims.sid()).await?;
    // One set per user: the new one replaces the old.
    inner.factors.add_factor(sub, set).await?;
    let mut enrolled = Record::new(Action::FactorEnrolled);
    enrolled.sub(sub);
    enrolled.emit(Outcome::Ok, Some(kind::RECOVERY_CODES));
    inner.hooks.factor_enrolled(sub);
    Ok(json_ok(&json!({ "recovery_codes": codes })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::factor::FactorData;

    #[test]
    fn names_are_trimmed_bounded_and_printable() {
        assert_eq!(
            valid_name("  YubiKey 5 ").ok().as_deref(),
            Some("YubiKey 5")
        );
        let longest = "é".repeat(MAX_NAME_CHARS);
        assert_eq!(valid_name(&longest).ok(), Some(longest.clone()));
        let too_long = format!("{longest}x");
        for bad in [
            "",
            "   ",
            "a\nb",
            "tab\there",
            "nul\0",
            "\u{202e}yek",
            &too_long,
        ] {
            let kind = valid_name(bad).err().map(|f| f.kind);
            assert_eq!(kind, Some(ErrorKind::InvalidRequest), "{bad:?}");
        }
    }

    #[test]
    fn ids_are_factor_ids() {
        let id = crate::factor::stored::new_id().unwrap();
        assert_eq!(
            factor_id(&format!("/auth/factors/{id}")).ok(),
            Some(id.as_str())
        );
        let upper = id.to_uppercase();
        for bad in [
            "/auth/factors/",
            "/auth/factors/abc",
            &format!("/auth/factors/{upper}"),
        ] {
            assert!(factor_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_factor_shows_no_data_and_recovery_codes_count() {
        let totp = StoredFactor::new(kind::TOTP, FactorData::new(vec![7; 20]), 5)
            .unwrap()
            .named(Some("phone".into()));
        assert_eq!(
            factor_json(&totp),
            json!({"id": totp.id, "type": "otp", "name": "phone", "created_at": 5})
        );
        let (_, hashes) = recovery::generate().unwrap();
        let codes = StoredFactor::new(kind::RECOVERY_CODES, recovery::to_data(&hashes), 6).unwrap();
        let shown = factor_json(&codes);
        assert_eq!(shown["type"], "recovery-code");
        assert_eq!(shown["name"], Value::Null);
        assert_eq!(shown["remaining"], hashes.len());
        assert!(signs_in(&totp) && !signs_in(&codes));
        assert_eq!(kind_reason(kind::PASSKEY), "passkey");
        assert_eq!(kind_reason("custom"), "other");
    }
}
