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
use super::Completion;
use crate::audit::{Event, Outcome, Record};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Login,
    Verify,
    Enroll,
    EnrollConfirm,
    Refresh,
    Logout,
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
    fn event(self) -> Event {
        match self {
            Kind::Login => Event::Login,
            Kind::Verify => Event::Verify,
            Kind::Enroll => Event::Enroll,
            Kind::EnrollConfirm => Event::EnrollConfirm,
            Kind::Refresh => Event::Refresh,
            Kind::Logout => Event::Logout,
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
            let a = &mut audit;
            let result = if req.method() != Method::POST {
                Err(Failure::new(ErrorKind::MethodNotAllowed))
            } else {
                match kind {
                    Kind::Login => super::login::handle(&completion, req, a).await,
                    Kind::Verify => super::verify::handle(&completion, req, a).await,
                    Kind::Enroll => super::enroll::start(&completion, req, a).await,
                    Kind::EnrollConfirm => super::enroll::confirm(&completion, req, a).await,
                    Kind::Refresh => super::session::refresh(&completion, req, a).await,
                    Kind::Logout => super::session::logout(&completion, req, a).await,
                }
            };
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
