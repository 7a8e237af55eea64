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

use std::convert::Infallible;

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use crate::token::Claims;

/// Rejection of the [`Claims`] extractor: no verified access token on this request.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct MissingClaims;

impl IntoResponse for MissingClaims {
    /// The [`MissingCredential`](crate::DenialKind::MissingCredential) row of the denial
    /// table, with the default realm.
    fn into_response(self) -> Response {
        crate::challenge::response(
            crate::DenialKind::MissingCredential,
            crate::layer::DEFAULT_REALM,
            crate::challenge::DenialDetails::default(),
        )
        .map(axum_core::body::Body::from)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Claims {
    type Rejection = MissingClaims;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Claims>()
            .cloned()
            .ok_or(MissingClaims)
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
