//! Passkeys at the completion endpoints (DESIGN §8.4; feature `passkey`): registration
//! (start, finish), the challenge for a partial token or mfa_token, and the judging of
//! a passkey proof at verify. The ceremonies are webauthn-rs's
//! ([`factor::passkey`](crate::factor::passkey)); this module keeps their state in the
//! store, one per user, and takes it out once.
//!
//! - `POST …/passkey/register/start` `{}` (authenticated, recent authentication as for
//!   enroll) → `{"registration_id","publicKey":{…}}`. One pending registration per user:
//!   a new start replaces it.
//! - `POST …/passkey/register/finish` `{"registration_id","credential","name"?}` →
//!   `{"passkey_id"}`: the passkey is one of the user's factors, a change of factors
//!   (the user's other sessions end, remembered devices are forgotten).
//! - `POST …/passkey/challenge` `{"mfa_token"}` (or the partial token as verify finds
//!   it) → `{"publicKey":{…}}`: one pending challenge per user, bound to that token.
//! - verify `{"mfa_token","passkey":{…}}`: the assertion checked against the pending
//!   challenge of this very token and the user's passkeys, under verify's attempt
//!   reservation; it is spent with the token.

use bytes::Bytes;
use http::request::Parts;
use http::Response;
use serde::Deserialize;
use serde_json::{json, Value};

use super::challenged::{self, TokenPlaces};
use super::dpop::{self, Target};
use super::enrolled::Enrolled;
use super::error::{ErrorKind, Failure};
use super::manage::valid_name;
use super::recent::{authorize_start, signed_in};
use super::response::json_ok;
use super::Completion;
use crate::audit::{Action, Outcome, Record};
use crate::factor::passkey::{PasskeyConfig, PasskeyError, StoredPasskey};
use crate::factor::stored::kind;
use crate::factor::{FactorData, StoredFactor};
use crate::random;
use crate::store::JudgedProof;

/// How long a started registration or challenge waits: the options' 300-second timeout.
const CEREMONY_SECS: u64 = 300;

fn registration_key(sub: &str) -> String {
    format!("pkreg:{sub}")
}

fn challenge_key(sub: &str) -> String {
    format!("pkc:{sub}")
}

/// A state bound to an id (a registration id, a challenge token's jti): the id's length
/// (one byte), the id, the ceremony state.
fn bind(id: &str, state: &[u8]) -> Result<Vec<u8>, Failure> {
    let len = u8::try_from(id.len()).map_err(|_| Failure::new(ErrorKind::ServerError))?;
    let mut out = Vec::with_capacity(1 + id.len() + state.len());
    out.push(len);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(state);
    Ok(out)
}

/// The state of `bound` if it is bound to `id`.
fn unbind<'a>(bound: &'a [u8], id: &str) -> Option<&'a [u8]> {
    let (&len, rest) = bound.split_first()?;
    let (bound_id, state) = rest.split_at_checked(usize::from(len))?;
    (bound_id == id.as_bytes()).then_some(state)
}

/// The configuration, or `404`-like `invalid_request` when passkeys are off.
fn config(completion: &Completion) -> Result<&PasskeyConfig, Failure> {
    completion
        .inner()
        .passkeys
        .as_ref()
        .ok_or_else(|| Failure::invalid_request("passkeys are not enabled here"))
}

/// The user's passkeys that read back.
fn passkeys(enrolled: &Enrolled) -> Vec<(StoredFactor, StoredPasskey)> {
    enrolled
        .of_kind(kind::PASSKEY)
        .filter_map(|f| {
            Some((
                f.clone(),
                StoredPasskey::from_bytes(f.data.as_bytes()).ok()?,
            ))
        })
        .collect()
}

/// A ceremony error: the client's (`400 invalid_request` with what was wrong) or ours.
fn ceremony_failure(e: &PasskeyError) -> Failure {
    if e.is_client_error() {
        Failure::invalid_request("the passkey ceremony failed")
    } else {
        tracing::error!(error = %e, "passkey ceremony error");
        Failure::new(ErrorKind::ServerError)
    }
}

/// `POST …/passkey/register/start`: no body is read (`content_type` is the endpoint's
/// check of it).
pub(crate) async fn register_start(
    completion: &Completion,
    parts: Parts,
    content_type: Result<(), Failure>,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure> {
    let (claims, now) = match authorize_start(completion, &parts, content_type, audit).await? {
        Ok(authorized) => authorized,
        Err(step_up) => return Ok(step_up),
    };
    let config = config(completion)?;
    let sub = claims.sub();
    let existing = passkeys(&Enrolled::load(completion, sub).await?);
    let exclude: Vec<StoredPasskey> = existing.into_iter().map(|(_, p)| p).collect();
    let (options, state) = config
        .start_registration(sub, sub, &exclude)
        .map_err(|e| ceremony_failure(&e))?;
    let id = random::id().map_err(|_| Failure::new(ErrorKind::ServerError))?;
    let expires_at = now.saturating_add(CEREMONY_SECS);
    let value = bind(&id, &state)?;
    completion
        .inner()
        .store
        .put(&registration_key(sub), value, expires_at, now)
        .await?;
    let mut body = options;
    if let Some(obj) = body.as_object_mut() {
        obj.insert("registration_id".into(), id.into());
    }
    Ok(json_ok(&body))
}

/// The body of a registration's finish.
#[derive(Deserialize)]
pub(crate) struct FinishBody {
    registration_id: String,
    credential: Value,
    #[serde(default)]
    name: Option<String>,
}

/// `POST …/passkey/register/finish`.
pub(crate) async fn register_finish(
    completion: &Completion,
    parts: Parts,
    body: Result<FinishBody, Failure>,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure> {
    let inner = completion.inner();
    let now = inner.guard.clock().now();
    let claims = signed_in(completion, &parts, audit)?;
    let sub = claims.sub();
    let body = body?;
    let name = body.name.as_deref().map(valid_name).transpose()?;
    let config = config(completion)?;
    let state = take_registration(completion, sub, &body.registration_id, now).await?;
    let passkey = config
        .finish_registration(&state, &body.credential)
        .map_err(|e| ceremony_failure(&e))?;
    let enrolled = Enrolled::load(completion, sub).await?;
    let id = passkey.credential_id();
    if passkeys(&enrolled)
        .iter()
        .any(|(_, p)| p.credential_id() == id)
    {
        return Err(Failure::invalid_request(
            "this passkey is registered already",
        ));
    }
    let data = passkey.to_bytes().map_err(|e| ceremony_failure(&e))?;
    let record = StoredFactor::new(kind::PASSKEY, FactorData::new(data), now)
        .map_err(|_| Failure::new(ErrorKind::ServerError))?
        .named(name);
    let passkey_id = record.id.clone();
    inner.factors.add_factor(sub, record).await?;
    completion.factors_changed(sub, claims.sid()).await?;
    let mut enrolled_event = Record::new(Action::FactorEnrolled);
    enrolled_event.sub(sub);
    enrolled_event.emit(Outcome::Ok, Some("passkey"));
    inner.hooks.factor_enrolled(sub);
    Ok(json_ok(&json!({ "passkey_id": passkey_id })))
}

/// The pending registration `id` of `sub`, taken once: of concurrent finishes of one
/// registration, one gets it.
async fn take_registration(
    completion: &Completion,
    sub: &str,
    id: &str,
    now: u64,
) -> Result<Vec<u8>, Failure> {
    let store = &completion.inner().store;
    let unknown = || Failure::invalid_request("no such registration; start again");
    let bound = store
        .get(&registration_key(sub), now)
        .await?
        .ok_or_else(unknown)?;
    let state = unbind(&bound, id).ok_or_else(unknown)?.to_vec();
    let once = format!("pkreg-done:{sub}:{id}");
    if !store
        .consume(&once, now.saturating_add(CEREMONY_SECS), now)
        .await?
    {
        return Err(unknown());
    }
    store.delete(&registration_key(sub)).await?;
    Ok(state)
}

/// The body of a passkey challenge.
#[derive(Deserialize)]
pub(crate) struct ChallengeBody {
    #[serde(default)]
    mfa_token: Option<String>,
}

/// `POST …/passkey/challenge`: the request options for the user's passkeys, the state
/// kept for the challenge token's jti.
pub(crate) async fn challenge(
    completion: &Completion,
    parts: Parts,
    body: Result<ChallengeBody, Failure>,
    audit: &mut Record,
) -> Result<Response<Bytes>, Failure> {
    let inner = completion.inner();
    let body = body?;
    let partial_cookie = completion.cookies().map(|c| c.partial_name());
    let places = TokenPlaces::of_request(&parts.headers, body.mfa_token.as_deref(), partial_cookie);
    let (token, access) = places.resolve()?;
    audit.token(token);
    let now = inner.guard.clock().now();
    let challenge = challenged::open(completion, token, access, now, audit)?;
    audit.sub(&challenge.sub);
    // A bound challenge's proof: checked now, used once before anything is stored.
    let bound = challenge.bound_proof(completion, &places, Target::of(&parts), now)?;
    let config = config(completion)?;
    let creds: Vec<StoredPasskey> = passkeys(&Enrolled::load(completion, &challenge.sub).await?)
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    if creds.is_empty() {
        return Err(Failure::invalid_request("no passkey is registered"));
    }
    let (options, state) = config
        .start_authentication(&creds)
        .map_err(|e| ceremony_failure(&e))?;
    let expires_at = challenge.expires_at.min(now.saturating_add(CEREMONY_SECS));
    if let Some(proof) = &bound {
        dpop::use_once(completion, proof, now).await?;
    }
    let value = bind(&challenge.jti, &state)?;
    let key = challenge_key(&challenge.sub);
    inner.store.put(&key, value, expires_at, now).await?;
    Ok(json_ok(&options))
}

/// Verify's judging of a passkey assertion: the pending challenge of this challenge
/// token (another token's is no match), the user's passkeys, webauthn-rs's checks.
/// A malformed response is `400` (no attempt counted); a failed ceremony is a wrong
/// proof.
pub(crate) async fn judge(
    completion: &Completion,
    enrolled: &Enrolled,
    response: &Value,
    (sub, jti, now): (&str, &str, u64),
) -> Result<Option<PasskeyMatch>, Failure> {
    let config = config(completion)?;
    let store = &completion.inner().store;
    let Some(bound) = store.get(&challenge_key(sub), now).await? else {
        return Ok(None);
    };
    let Some(state) = unbind(&bound, jti) else {
        return Ok(None);
    };
    let owned = passkeys(enrolled);
    let creds: Vec<StoredPasskey> = owned.iter().map(|(_, p)| p.clone()).collect();
    let done = match config.finish_authentication(state, response, &creds) {
        Ok(done) => done,
        Err(PasskeyError::MalformedResponse) => {
            return Err(Failure::invalid_request(
                "the passkey response is malformed",
            ))
        }
        Err(e) if e.is_client_error() => {
            tracing::debug!(error = %e, "a passkey assertion was refused");
            return Ok(None);
        }
        Err(e) => return Err(ceremony_failure(&e)),
    };
    Ok(Some(PasskeyMatch {
        amr: done.amr(),
        synced: done.backup_eligible,
        once: JudgedProof::Once {
            key: format!("pk:{jti}"),
            forget_at: now.saturating_add(CEREMONY_SECS),
        },
        update: saved(&owned, done.updated.as_ref())?,
    }))
}

/// An assertion that passed: what verify's proof makes of it.
pub(crate) struct PasskeyMatch {
    /// `hwk` or `swk`.
    pub(crate) amr: &'static str,
    /// Whether the credential is backup-eligible (synced).
    pub(crate) synced: bool,
    /// What the store spends with it.
    pub(crate) once: JudgedProof,
    /// The passkey to save (its new counter or backup state) and its data as judged.
    pub(crate) update: Option<(StoredFactor, FactorData)>,
}

/// The change to save after an assertion: the passkey's new counter or backup state,
/// and its data as judged.
fn saved(
    owned: &[(StoredFactor, StoredPasskey)],
    updated: Option<&StoredPasskey>,
) -> Result<Option<(StoredFactor, FactorData)>, Failure> {
    let Some(updated) = updated else {
        return Ok(None);
    };
    let Some((record, _)) = owned
        .iter()
        .find(|(_, p)| p.credential_id() == updated.credential_id())
    else {
        return Ok(None);
    };
    let data = updated.to_bytes().map_err(|e| ceremony_failure(&e))?;
    let factor = StoredFactor {
        data: FactorData::new(data),
        ..record.clone()
    };
    Ok(Some((factor, record.data.clone())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_bound_to_its_id() {
        let bound = bind("jti-1", b"state").unwrap();
        assert_eq!(unbind(&bound, "jti-1"), Some(&b"state"[..]));
        assert_eq!(unbind(&bound, "jti-2"), None);
        assert_eq!(unbind(&bound, "jti-"), None);
        assert_eq!(unbind(&[], "x"), None);
        assert_eq!(unbind(&[200, b'a'], "a"), None, "a length past the end");
        assert!(bind(&"x".repeat(256), b"").is_err());
    }
}
