//! axum integration (feature `axum`): the verified [`Claims`] as an extractor.
//!
//! ```
//! use axum::{routing::get, Router};
//! use tower_stepup::{Claims, Guard, Policy};
//!
//! async fn me(claims: Claims) -> String {
//!     claims.sub().to_owned()
//! }
//!
//! async fn greeting(claims: Option<Claims>) -> String {
//!     match claims {
//!         Some(c) => format!("hello {}", c.sub()),
//!         None => "hello stranger".to_owned(),
//!     }
//! }
//!
//! fn app(guard: &Guard) -> Result<Router, tower_stepup::ConfigError> {
//!     Ok(Router::new()
//!         .route("/", get(greeting).route_layer(guard.require(Policy::public())?))
//!         .route("/me", get(me).route_layer(guard.require(Policy::authenticated())?)))
//! }
//! ```
//!
//! `Claims` is present when a [`StepUpLayer`](crate::StepUpLayer) let the request through
//! with a valid access token. Without one the extractor answers `401 unauthorized`, so a
//! handler that names `Claims` never runs anonymously, even on a route whose policy was
//! forgotten. `Option<Claims>` never rejects.
//!
//! The refusal ([`MissingClaims`]) is the
//! [`MissingCredential`](crate::DenialKind::MissingCredential) denial rendered the way the
//! guard whose layer let the request through renders it: its realm, its
//! [`rejection`](crate::layer::GuardBuilder::rejection) hook. Without such a layer in front
//! (no `StepUpLayer` at all) it uses the default realm `"api"`.

use std::convert::Infallible;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use bytes::Bytes;
use http::request::Parts;

use crate::challenge::{self, Denial};
use crate::layer::{PendingRejection, DEFAULT_REALM};
use crate::token::Claims;
use crate::DenialKind;

/// Rejection of the [`Claims`] extractor: no verified access token on this request.
///
/// It answers the [`MissingCredential`](crate::DenialKind::MissingCredential) row of the
/// denial table, rendered by the guard whose layer let the request through (its realm,
/// its rejection hook), or with the default realm when no layer did.
#[derive(Debug)]
#[non_exhaustive]
pub struct MissingClaims {
    response: http::Response<Bytes>,
}

impl MissingClaims {
    /// The rejection of the request `parts`.
    /// Rendered by default here, with the request's head: a layer that let the request
    /// through renders it again its way on the way out.
    fn of(parts: &Parts) -> Self {
        let denial = Denial::new(DenialKind::MissingCredential);
        let mut response = challenge::http_response(denial, DEFAULT_REALM);
        response
            .extensions_mut()
            .insert(PendingRejection::of(parts));
        Self { response }
    }

    /// The denial (always [`MissingCredential`](crate::DenialKind::MissingCredential)).
    pub fn denial(&self) -> Option<&Denial> {
        self.response.extensions().get::<Denial>()
    }
}

impl Default for MissingClaims {
    /// The rejection with the default realm, as if no layer had been in front.
    fn default() -> Self {
        Self {
            response: challenge::http_response(
                Denial::new(DenialKind::MissingCredential),
                DEFAULT_REALM,
            ),
        }
    }
}

impl Clone for MissingClaims {
    fn clone(&self) -> Self {
        let mut response = http::Response::new(self.response.body().clone());
        *response.status_mut() = self.response.status();
        *response.version_mut() = self.response.version();
        *response.headers_mut() = self.response.headers().clone();
        *response.extensions_mut() = self.response.extensions().clone();
        Self { response }
    }
}

impl IntoResponse for MissingClaims {
    fn into_response(self) -> Response {
        self.response.map(axum_core::body::Body::from)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Claims {
    type Rejection = MissingClaims;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<Claims>() {
            Some(claims) => Ok(claims.clone()),
            None => Err(MissingClaims::of(parts)),
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for Claims {
    type Rejection = Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<Claims>().cloned())
    }
}
