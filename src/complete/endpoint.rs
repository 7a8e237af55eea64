//! The one service type behind every completion endpoint.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower_service::Service;

use super::error::{ErrorKind, Failure};
use super::request::{json, read_body, require_json};
use super::Completion;
use crate::audit::{Action, Outcome, Record};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Login,
    Verify,
    Enroll,
    EnrollConfirm,
    Refresh,
    Logout,
    Sessions,
    EndSession,
    EndDevice,
    #[cfg(feature = "passkey")]
    PasskeyRegisterStart,
    #[cfg(feature = "passkey")]
    PasskeyRegisterFinish,
    #[cfg(feature = "passkey")]
    PasskeyChallenge,
    Factors,
    RenameFactor,
    RemoveFactor,
    RecoveryCodes,
    SendCode,
}

/// A completion endpoint as a [`Service`]: `Error = Infallible`, every outcome is a
/// response. Built by the methods of [`Completion`].
#[derive(Clone)]
pub struct Endpoint {
    completion: Completion,
    kind: Kind,
}

/// The future of an [`Endpoint`].
pub type EndpointFuture =
    Pin<Box<dyn Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send>>;

impl Kind {
    fn event(self) -> Action {
        match self {
            Kind::Login => Action::Login,
            Kind::Verify => Action::Verify,
            Kind::Enroll => Action::Enroll,
            Kind::EnrollConfirm => Action::EnrollConfirm,
            Kind::Refresh => Action::Refresh,
            Kind::Logout => Action::Logout,
            Kind::Sessions => Action::Sessions,
            Kind::EndSession => Action::SessionEnd,
            Kind::EndDevice => Action::DeviceEnd,
            #[cfg(feature = "passkey")]
            Kind::PasskeyRegisterStart => Action::PasskeyRegisterStart,
            #[cfg(feature = "passkey")]
            Kind::PasskeyRegisterFinish => Action::PasskeyRegisterFinish,
            #[cfg(feature = "passkey")]
            Kind::PasskeyChallenge => Action::PasskeyChallenge,
            Kind::Factors => Action::Factors,
            Kind::RenameFactor => Action::FactorRename,
            Kind::RemoveFactor => Action::FactorRemove,
            Kind::RecoveryCodes => Action::RecoveryCodes,
            Kind::SendCode => Action::CodeSent,
        }
    }

    /// The one method the endpoint serves.
    fn method(self) -> Method {
        match self {
            Kind::Sessions | Kind::Factors => Method::GET,
            Kind::RenameFactor => Method::PATCH,
            Kind::EndSession | Kind::EndDevice | Kind::RemoveFactor => Method::DELETE,
            _ => Method::POST,
        }
    }
}

impl Endpoint {
    pub(crate) fn new(completion: Completion, kind: Kind) -> Self {
        Self { completion, kind }
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl<B> Service<Request<B>> for Endpoint
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = EndpointFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let completion = self.completion.clone();
        let kind = self.kind;
        Box::pin(async move {
            let mut audit = Record::new(kind.event());
            let result = dispatch(&completion, kind, req, &mut audit).await;
            // One audit event per request, whatever the outcome.
            match &result {
                Ok(_) => audit.emit(Outcome::Ok, None),
                Err(failure) => audit.emit(failure.outcome(), Some(failure.kind.reason())),
            }
            let response = result.unwrap_or_else(Failure::into_response);
            Ok(response.map(Full::new))
        })
    }
}

/// `405` for anything but the endpoint's method (`POST`; `GET`, `PATCH` or `DELETE` for
/// the sessions and factors endpoints), before the body is looked at; then the body is read and checked
/// once, here (content type, declared length, limit, JSON), and the handler gets it
/// parsed. A body that fails a check is handed on as its [`Failure`]: each
/// handler answers it at its turn, so that an endpoint that needs a caller says `401`
/// (and enroll-confirm its step-up) before anything about the body.
async fn dispatch<B>(
    completion: &Completion,
    kind: Kind,
    req: Request<B>,
    a: &mut Record,
) -> Result<Response<Bytes>, Failure>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let method = kind.method();
    if req.method() != method {
        return Err(match method {
            Method::GET => Failure::method_not_allowed("GET"),
            Method::DELETE => Failure::method_not_allowed("DELETE"),
            Method::PATCH => Failure::method_not_allowed("PATCH"),
            _ => Failure::new(ErrorKind::MethodNotAllowed),
        });
    }
    let (parts, body) = req.into_parts();
    let read = match kind {
        // No body is read, but the content type is required all the same (CSRF, see
        // `require_json`).
        Kind::Enroll
        | Kind::EndSession
        | Kind::EndDevice
        | Kind::RemoveFactor
        | Kind::RecoveryCodes => require_json(&parts.headers).map(|()| Bytes::new()),
        #[cfg(feature = "passkey")]
        Kind::PasskeyRegisterStart => require_json(&parts.headers).map(|()| Bytes::new()),
        // A read: no body, no side effect.
        Kind::Sessions | Kind::Factors => Ok(Bytes::new()),
        _ => read_body(&parts.headers, body, completion.inner().body_limit).await,
    };
    let c = completion;
    match kind {
        Kind::Login => super::login::handle(c, parts, json(read), a).await,
        Kind::Verify => super::verify::handle(c, parts, json(read), a).await,
        Kind::Enroll => super::enroll::start(c, parts, read.map(drop), a).await,
        Kind::EnrollConfirm => super::enroll::confirm(c, parts, json(read), a).await,
        Kind::Refresh => super::session::refresh(c, parts, json(read), a).await,
        Kind::Logout => super::session::logout(c, parts, json(read), a).await,
        Kind::Sessions => super::sessions::list(c, parts, a).await,
        Kind::EndSession => super::sessions::delete(c, parts, read.map(drop), a).await,
        Kind::EndDevice => super::device::delete(c, parts, read.map(drop), a).await,
        #[cfg(feature = "passkey")]
        Kind::PasskeyRegisterStart => {
            super::passkey::register_start(c, parts, read.map(drop), a).await
        }
        #[cfg(feature = "passkey")]
        Kind::PasskeyRegisterFinish => {
            super::passkey::register_finish(c, parts, json(read), a).await
        }
        #[cfg(feature = "passkey")]
        Kind::PasskeyChallenge => super::passkey::challenge(c, parts, json(read), a).await,
        Kind::Factors => super::manage::list(c, parts, a).await,
        Kind::RenameFactor => super::manage::rename(c, parts, json(read), a).await,
        Kind::RemoveFactor => super::manage::remove(c, parts, read.map(drop), a).await,
        Kind::RecoveryCodes => super::manage::regenerate(c, parts, read.map(drop), a).await,
        Kind::SendCode => super::send::handle(c, parts, json(read), a).await,
    }
}
