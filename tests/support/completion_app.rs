//! The completion endpoints mounted the way the demo mounts them: their policies in a
//! route table and their services on an axum router, under `/auth/…`. A test adds its own
//! API routes to both.

use axum::routing::post_service;
use axum::Router;
use http::Method;
use tower_stepup::{Completion, Policy, RouteTable};

/// `table` with the policies of the six completion endpoints.
pub fn policies(table: RouteTable) -> RouteTable {
    table
        .route(Method::POST, "/auth/login", Policy::public())
        .route(Method::POST, "/auth/mfa/verify", Policy::mfa_verify())
        .route(Method::POST, "/auth/mfa/enroll", Policy::authenticated())
        .route(
            Method::POST,
            "/auth/mfa/enroll/confirm",
            Policy::authenticated(),
        )
        .route(Method::POST, "/auth/refresh", Policy::public())
        .route(Method::POST, "/auth/logout", Policy::authenticated())
}

/// `router` with the six completion endpoints of `completion`.
pub fn routes(router: Router, completion: &Completion) -> Router {
    router
        .route("/auth/login", post_service(completion.login()))
        .route("/auth/mfa/verify", post_service(completion.verify()))
        .route("/auth/mfa/enroll", post_service(completion.enroll()))
        .route(
            "/auth/mfa/enroll/confirm",
            post_service(completion.enroll_confirm()),
        )
        .route("/auth/refresh", post_service(completion.refresh()))
        .route("/auth/logout", post_service(completion.logout()))
}
