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
    self, CheckedProof, DpopConfig, DpopError, DpopNonces, DpopUse, Htu, JtiStore, Request,
};
use crate::error::ConfigError;
use crate::token::Claims;

/// DPoP as a guard accepts it: the proof checks, the public URL `htu` is compared with,
/// and where used proofs are remembered.
#[derive(Clone)]
pub(crate) struct DpopGuard {
    config: DpopConfig,
    base: String,
    /// `base` without its trailing `/`, when it is in normal form (see
    /// [`request_url`](Self::request_url)).
    normal_base: Option<String>,
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
        let root = Htu::from_base_and_path(&public_url, "/")
            .map_err(|e| ConfigError::invalid("dpop public_url", e.to_string()))?;
        let stripped = public_url.strip_suffix('/').unwrap_or(&public_url);
        let normal_base =
            (root.as_str().strip_suffix('/') == Some(stripped)).then(|| stripped.to_owned());
        Ok(Self {
            config,
            normal_base,
            base: public_url,
            store,
            nonces,
            clock,
        })
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
        let url = self.request_url(path)?;
        let request = Request {
            method,
            url: url.as_str(),
            access_token,
            nonce: None,
            now,
        };
        let proof = dpop::check_request(&self.config, headers, &request)?;
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

    /// The normal form of the public URL of a request to `path` (a wrong `htu` if it has
    /// none): [`Htu::from_base_and_path`]'s. For a path that normalizing leaves as it is
    /// (unreserved characters and `/`, no dot segment; the query, dropped, only of
    /// characters a URI may contain) on a base in normal form, that is the base followed
    /// by the path, built without normalizing the URL again.
    fn request_url(&self, path: &str) -> Result<RequestUrl, DpopError> {
        if let Some(base) = &self.normal_base {
            let (path_only, rest) = path.split_at(path.find(['?', '#']).unwrap_or(path.len()));
            let plain = path_only.starts_with('/')
                && path_only
                    .bytes()
                    .all(|b| dpop::is_unreserved(b) || b == b'/')
                && !path_only.split('/').any(|s| s == "." || s == "..")
                && rest.bytes().all(dpop::is_uri_char);
            if plain {
                let mut url = String::with_capacity(base.len() + path_only.len());
                url.push_str(base);
                url.push_str(path_only);
                return Ok(RequestUrl::Plain(url));
            }
        }
        Htu::from_base_and_path(&self.base, path)
            .map(RequestUrl::Normalized)
            .map_err(|_| DpopError::WrongUrl)
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

/// The normal form of a request's public URL, built one way or the other.
enum RequestUrl {
    /// The normal base followed by a path in normal form.
    Plain(String),
    Normalized(Htu),
}

impl RequestUrl {
    fn as_str(&self) -> &str {
        match self {
            RequestUrl::Plain(url) => url,
            RequestUrl::Normalized(htu) => htu.as_str(),
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::clock::SystemClock;
    use crate::dpop::JtiFuture;

    struct NoStore;

    impl JtiStore for NoStore {
        fn use_proof<'a>(&'a self, _: &'a str, _: &'a str, _: u64, _: u64) -> JtiFuture<'a> {
            Box::pin(std::future::ready(Ok(DpopUse::Fresh)))
        }
    }

    fn guard(base: &str) -> DpopGuard {
        let store: Arc<dyn JtiStore> = Arc::new(NoStore);
        DpopGuard::new(
            DpopConfig::default(),
            base.to_owned(),
            store,
            None,
            Arc::new(SystemClock),
        )
        .unwrap()
    }

    const BASES: [&str; 10] = [
        "https://api.example",
        "https://api.example/",
        "https://api.example/v1",
        "https://api.example/v1/",
        "https://api.example//",
        "http://api.example:8080/a~b",
        // Not in normal form: every request URL is normalized.
        "HTTPS://API.example",
        "https://api.example:443/v1",
        "https://api.example/%7Ev1/./x/..",
        "https://api.example/a%2fb",
    ];

    /// What the layer builds is what `Htu::from_base_and_path` makes of the request, or
    /// a wrong `htu` where it refuses.
    fn agrees(base: &str, guard: &DpopGuard, path: &str) -> Result<(), String> {
        let want = Htu::from_base_and_path(base, path).map(|u| u.as_str().to_owned());
        let got = guard.request_url(path).map(|u| u.as_str().to_owned());
        match (&got, &want) {
            (Ok(a), Ok(b)) if a == b => Ok(()),
            (Err(DpopError::WrongUrl), Err(_)) => Ok(()),
            _ => Err(format!("{base} + {path:?}: {got:?}, not {want:?}")),
        }
    }

    #[test]
    fn the_normal_base_is_taken_only_in_normal_form() {
        let normal: Vec<bool> = BASES
            .iter()
            .map(|b| guard(b).normal_base.is_some())
            .collect();
        assert_eq!(
            normal,
            [true, true, true, true, true, true, false, false, false, false]
        );
    }

    #[test]
    fn the_request_url_is_the_normalized_one_for_every_character() {
        for base in BASES {
            let g = guard(base);
            for path in [
                "/",
                "/api/me",
                "/a/b/",
                "//a",
                "/a//b",
                "/.well-known/x",
                "/a.b/..c",
            ] {
                agrees(base, &g, path).unwrap();
            }
            for b in 0u8..=0x7f {
                let c = char::from(b);
                for path in [
                    format!("/a{c}b"),
                    format!("/{c}"),
                    format!("/a/{c}{c}/b"),
                    format!("/a?x{c}y"),
                    format!("/a?x#{c}"),
                    format!("/a#{c}"),
                    format!("{c}/a"),
                ] {
                    agrees(base, &g, &path).unwrap();
                }
            }
            for path in [
                "/é", "/a?é", "/%2e/a", "/%2E%2E", "/a/.", "/a/..", "/./a", "/%41",
            ] {
                agrees(base, &g, path).unwrap();
            }
        }
    }

    proptest! {
        #[test]
        fn the_request_url_is_the_normalized_one(
            base in 0..BASES.len(),
            path in "(/|\\.|\\.\\.|%2[eEfF]|%41|[aZ09~_@:!-]|\\?|#| |\\^){0,16}",
        ) {
            let base = BASES[base];
            if let Err(e) = agrees(base, &guard(base), &path) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}
