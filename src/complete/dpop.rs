//! DPoP at the completion endpoints (RFC 9449 §5, DESIGN §8.5): the proofs login, verify,
//! refresh, logout, the passkey challenge and the send endpoint read, checked by the
//! guard's DPoP side ([`DpopGuard`]: one place for the rules, the layer's).
//!
//! - A session is bound to a key only where the guard accepts DPoP ([`binding`]). There a
//!   login with a proof binds its partial token and its session to the proof's key, and
//!   is answered without cookies even in cookie mode (a cookie cannot carry a proof: the
//!   client is an API client); a login without one stays bearer (a browser's, with its
//!   cookies), and so does every session without DPoP on the guard (a `DPoP` header is
//!   then ignored).
//! - A token bound to a key (a partial token's or an mfa_token's binding, a refresh
//!   token's) needs a proof of that key wherever it is presented ([`required`]):
//!   missing, malformed or of another key is `400 invalid_dpop_proof`, checked before
//!   anything is spent.
//! - A proof's `jti` is used once ([`use_once`]) only after the request's other checks
//!   passed (the password, the factor): made-up proofs cost signature checks, never store
//!   writes.

use http::request::Parts;
use http::{HeaderMap, Method};

use super::error::{ErrorKind, Failure};
use super::Completion;
use crate::challenge::DenialKind;
use crate::dpop::{CheckedProof, DpopError, DPOP_HEADER};
use crate::layer::DpopGuard;

/// Where a proof is checked: the request's headers (its `DPoP` header), method (`htm`)
/// and path (`htu` is the guard's public URL plus this path, never the `Host`).
#[derive(Clone, Copy)]
pub(crate) struct Target<'a> {
    pub(crate) headers: &'a HeaderMap,
    pub(crate) method: &'a Method,
    pub(crate) path: &'a str,
}

impl<'a> Target<'a> {
    /// An HTTP request's.
    pub(crate) fn of(parts: &'a Parts) -> Self {
        Self {
            headers: &parts.headers,
            method: &parts.method,
            path: parts.uri.path(),
        }
    }
}

/// The guard's DPoP side if this completion binds new sessions to keys: the guard
/// accepts DPoP. (Browsers send no proof: their sessions stay bearer, in cookies.)
pub(crate) fn binding(completion: &Completion) -> Option<&DpopGuard> {
    completion.inner().guard.dpop()
}

/// A login's proof: `None` (a bearer session) where this completion does not bind or
/// the request has no `DPoP` header; else the proof, checked without the store (no
/// `ath`: no token is presented), or `400 invalid_dpop_proof`.
pub(crate) fn offered(
    completion: &Completion,
    target: Target<'_>,
    now: u64,
) -> Result<Option<CheckedProof>, Failure> {
    let Some(dpop) = binding(completion) else {
        return Ok(None);
    };
    if !target.headers.contains_key(DPOP_HEADER) {
        return Ok(None);
    }
    dpop.check(target.headers, target.method, target.path, None, now)
        .map(Some)
        .map_err(|e| refused(dpop, e))
}

/// The proof a token bound to `jkt` needs: the request's proof, checked without the
/// store, of that key, with `ath` the hash of `access` (the token the request sent in
/// the `DPoP` scheme, if any). A guard that does not accept DPoP cannot check one: the
/// bound token is refused.
pub(crate) fn required(
    completion: &Completion,
    target: Target<'_>,
    jkt: &str,
    access: Option<&str>,
    now: u64,
) -> Result<CheckedProof, Failure> {
    let Some(dpop) = completion.inner().guard.dpop() else {
        return Err(Failure::new(ErrorKind::InvalidDpopProof)
            .describe("the token is bound to a key and DPoP is not accepted here"));
    };
    dpop.check_key(target.headers, target.method, target.path, access, jkt, now)
        .map_err(|e| refused(dpop, e))
}

/// Uses `proof`'s `jti` once: a replay (or a key with too many live proofs) is `400
/// invalid_dpop_proof`, a store error `503`.
pub(crate) async fn use_once(
    completion: &Completion,
    proof: &CheckedProof,
    now: u64,
) -> Result<(), Failure> {
    let Some(dpop) = completion.inner().guard.dpop() else {
        return Err(Failure::new(ErrorKind::ServerError));
    };
    dpop.use_once(proof, now)
        .await
        .map_err(|denial| match denial.kind() {
            DenialKind::Unavailable => Failure::new(ErrorKind::TemporarilyUnavailable),
            _ => refused(dpop, DpopError::Replayed),
        })
}

/// `400 invalid_dpop_proof` for `error`; `400 use_dpop_nonce` with the current nonce
/// when only the server nonce is missing or stale (RFC 9449 §8).
fn refused(dpop: &DpopGuard, error: DpopError) -> Failure {
    tracing::debug!(%error, "a DPoP proof was refused at a completion endpoint");
    if error.is_nonce_error() {
        let mut failure = Failure::new(ErrorKind::UseDpopNonce);
        failure.dpop_nonce = dpop
            .current_nonce()
            .and_then(|n| http::HeaderValue::from_str(&n).ok())
            .map(Box::new);
        return failure;
    }
    let failure = Failure::new(ErrorKind::InvalidDpopProof);
    match error {
        DpopError::Missing => failure.describe("the token is bound to a key: send a DPoP proof"),
        DpopError::WrongKey => {
            failure.describe("the DPoP proof is not of the key the token is bound to")
        }
        DpopError::Replayed => failure.describe("the DPoP proof was used before"),
        _ => failure,
    }
}
