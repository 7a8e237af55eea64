//! The guard's DPoP side (RFC 9449): which scheme a request used, the proof checked
//! against the request and its token, and the single use of the proof's `jti`.
//!
//! The rules, in the order the layer applies them to a verified token:
//! - a token bound to a key (`cnf.jkt`) is accepted only as `Authorization: DPoP`, with
//!   a proof of that key (§7.2: it is not a bearer token);
//! - a token sent as `Authorization: DPoP` must be bound (an unbound token in the DPoP
//!   scheme is refused: the proof would bind nothing);
//! - a route whose policy requires DPoP ([`Policy::require_dpop`]) refuses a bearer
//!   token;
//! - the proof passes every check of [`dpop::check`](crate::dpop::check), with `ath` the
//!   hash of the token and `htu` the configured public URL plus the request path;
//! - last, its `jti` is used once through the [`JtiStore`]: asynchronously, only for a
//!   request that passed everything else (a flood of made-up proofs costs signature
//!   checks, never store writes).
//!
//! [`Policy::require_dpop`]: crate::policy::Policy::require_dpop

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, Method};

use crate::challenge::{Denial, DenialKind, RequestScheme};
use crate::clock::SharedClock;
use crate::dpop::{
    self, CheckedProof, DpopConfig, DpopError, DpopNonces, DpopUse, Expected, Htu, JtiStore,
};
use crate::error::ConfigError;
use crate::token::Claims;

/// DPoP as a guard accepts it: the proof checks, the public URL `htu` is compared with,
/// and where used proofs are remembered.
#[derive(Clone)]
pub(crate) struct DpopGuard {
    config: DpopConfig,
    base: String,
    store: Arc<dyn JtiStore>,
    nonces: Option<DpopNonces>,
    clock: SharedClock,
}

impl fmt::Debug for DpopGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopGuard")
            .field("config", &self.config)
            .field("public_url", &self.base)
            .finish_non_exhaustive()
    }
}

impl DpopGuard {
    /// Checks `public_url`: an absolute `http(s)` URL without query or fragment.
    pub(crate) fn new(
        config: DpopConfig,
        public_url: String,
        store: Arc<dyn JtiStore>,
        nonces: Option<DpopNonces>,
        clock: SharedClock,
    ) -> Result<Self, ConfigError> {
        if let Err(e) = Htu::from_base_and_path(&public_url, "/") {
            return Err(ConfigError::invalid("dpop public_url", e.to_string()));
        }
        Ok(Self {
            config,
            base: public_url,
            store,
            nonces,
            clock,
        })
    }

    /// The proof checks.
    #[allow(dead_code)] // the completion endpoints read it (issue 19, next)
    pub(crate) fn config(&self) -> &DpopConfig {
        &self.config
    }

    /// The request's proof checked against the request (`method`, the public URL plus
    /// `path`), `access_token` (for `ath`; `None` at the token endpoints) and `now`. A
    /// path that cannot be a public URL (a dot segment) is a wrong `htu`. With server
    /// nonces, a proof that passes everything else must carry the current (or the
    /// previous) nonce: `use_dpop_nonce` otherwise.
    pub(crate) fn check(
        &self,
        headers: &HeaderMap,
        method: &Method,
        path: &str,
        access_token: Option<&str>,
        now: u64,
    ) -> Result<CheckedProof, DpopError> {
        let url = Htu::from_base_and_path(&self.base, path).map_err(|_| DpopError::WrongUrl)?;
        let expected = Expected {
            method,
            url: &url,
            access_token,
            nonce: None,
            now,
        };
        let proof = dpop::check(&self.config, headers, &expected)?;
        if let Some(nonces) = &self.nonces {
            match proof.nonce.as_deref() {
                None => return Err(DpopError::MissingNonce),
                Some(nonce) if !nonces.accepts(nonce, now) => return Err(DpopError::WrongNonce),
                Some(_) => {}
            }
        }
        Ok(proof)
    }

    /// The request's proof checked as [`check`](Self::check) does, and of the key whose
    /// thumbprint is `jkt` (a bound challenge's or refresh token's, at the completion
    /// endpoints): another key's proof is [`DpopError::WrongKey`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn check_key(
        &self,
        headers: &HeaderMap,
        method: &Method,
        path: &str,
        access_token: Option<&str>,
        jkt: &str,
        now: u64,
    ) -> Result<CheckedProof, DpopError> {
        let proof = self.check(headers, method, path, access_token, now)?;
        if !constant_time_eq(&proof.jkt, jkt) {
            return Err(DpopError::WrongKey);
        }
        Ok(proof)
    }

    /// Uses `proof`'s `jti` once: `Ok(())` the first time; a replay, or a key with too
    /// many live proofs, is the denial to answer; a store error is `503` (fail closed).
    pub(crate) async fn use_once(&self, proof: &CheckedProof, now: u64) -> Result<(), Denial> {
        let used = self
            .store
            .use_proof(&proof.jkt, &proof.jti, proof.expires_at, now)
            .await;
        match used {
            Ok(DpopUse::Fresh) => Ok(()),
            Ok(_) => Err(self.refused(DpopError::Replayed)),
            Err(e) => {
                tracing::error!(error = %e, "the DPoP proof store failed; refusing the request");
                let denial = Denial::new(DenialKind::Unavailable)
                    .described("the DPoP proof could not be checked; try again shortly");
                Err(self.finish(denial, RequestScheme::Dpop))
            }
        }
    }

    /// A refused proof, with this guard's challenge.
    pub(crate) fn refused(&self, error: DpopError) -> Denial {
        self.finish(Denial::dpop_refused(error), RequestScheme::Dpop)
    }

    /// The server nonce proofs must carry now, if the guard uses nonces.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub(crate) fn current_nonce(&self) -> Option<String> {
        let nonces = self.nonces.as_ref()?;
        Some(nonces.current(self.clock.now()))
    }

    /// `denial` as a guard that accepts DPoP answers a request of `scheme`: the DPoP
    /// challenge, and with server nonces the current one in `DPoP-Nonce` (RFC 9449 §8.1:
    /// any answer may carry it; `use_dpop_nonce` must).
    pub(crate) fn finish(&self, denial: Denial, scheme: RequestScheme) -> Denial {
        let denial = denial.with_dpop(self.config.algs_header(), scheme);
        match self.current_nonce() {
            Some(nonce) => denial.with_dpop_nonce(nonce),
            None => denial,
        }
    }

    /// The proof of a verified token sent in `scheme`, checked; `Ok(None)` for a bearer
    /// token this route takes as one. `require` is the route's policy asking for DPoP.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn bind(
        &self,
        claims: &Claims,
        scheme: RequestScheme,
        token: &str,
        require: bool,
        request: (&HeaderMap, &Method, &str),
        now: u64,
    ) -> Result<Option<CheckedProof>, Refused> {
        let (headers, method, path) = request;
        match (scheme, claims.dpop_jkt()) {
            (RequestScheme::Bearer, Some(_)) => Err(Refused::BoundAsBearer),
            (RequestScheme::Bearer, None) if require => Err(Refused::BearerOnDpopRoute),
            (RequestScheme::Bearer, None) => Ok(None),
            (RequestScheme::Dpop, None) => Err(Refused::Proof(DpopError::WrongKey)),
            (RequestScheme::Dpop, Some(jkt)) => self
                .check_key(headers, method, path, Some(token), jkt, now)
                .map(Some)
                .map_err(Refused::Proof),
        }
    }
}

/// Why [`DpopGuard::bind`] refused a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A token bound to a key, sent as a bearer token (or in the cookie).
    BoundAsBearer,
    /// A bearer token on a route that requires DPoP.
    BearerOnDpopRoute,
    /// The proof failed a check, or is of another key than the token's.
    Proof(DpopError),
}

impl Refused {
    /// The audit reason.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Refused::BoundAsBearer => "dpop_bound_token_without_proof",
            Refused::BearerOnDpopRoute => "dpop_required",
            Refused::Proof(_) => "invalid_dpop_proof",
        }
    }

    /// The denial `guard` answers (`None`: a guard without DPoP, which refuses every bound
    /// token as an invalid token).
    pub(crate) fn denial(self, guard: Option<&DpopGuard>) -> Denial {
        let Some(guard) = guard else {
            return Denial::refused(DenialKind::InvalidToken, None);
        };
        match self {
            Refused::BoundAsBearer => guard.finish(
                Denial::refused(DenialKind::InvalidToken, None),
                RequestScheme::Bearer,
            ),
            // Answered in the DPoP scheme only: the client must use DPoP here.
            Refused::BearerOnDpopRoute => guard.finish(
                Denial::refused(DenialKind::InvalidToken, None)
                    .described("this resource requires a DPoP-bound token"),
                RequestScheme::Dpop,
            ),
            Refused::Proof(error) => guard.refused(error),
        }
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}
