use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;

use super::{Guard, ResponseBody};
use crate::token::KeyWait;

/// What a waiting request does once its issuer's keys have been fetched: decide again.
type Retry<F, B> = Box<dyn FnOnce() -> ResponseFuture<F, B> + Send>;

/// Work before the decision is final (a key fetch, a DPoP proof's single use), which
/// ends in the response future that follows.
pub(crate) type Deferred<F, B> = Pin<Box<dyn Future<Output = ResponseFuture<F, B>> + Send>>;

pin_project! {
    /// Response future of [`StepUpService`](super::StepUpService).
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
        _body: std::marker::PhantomData<fn() -> B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Passed {
            #[pin]
            fut: F,
            // The guard that let an anonymous request through, to render a rejection of
            // the axum extractor its way (`None` otherwise, and without axum).
            guard: Option<Guard>,
        },
        Rejected {
            response: Option<Response<Bytes>>,
        },
        // Waiting before the decision is final: a token named a key its issuer's source
        // is fetching, or a DPoP proof's jti is being used.
        Waiting {
            next: Deferred<F, B>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn passed(fut: F, guard: Option<Guard>) -> Self {
        Self {
            kind: Kind::Passed { fut, guard },
            _body: std::marker::PhantomData,
        }
    }

    /// Waits for the key fetch, then decides again with `retry`.
    pub(crate) fn waiting(wait: KeyWait, retry: Retry<F, B>) -> Self
    where
        F: 'static,
        B: 'static,
    {
        #[allow(clippy::async_yields_async)] // the response future that follows
        Self::deferred(Box::pin(async move {
            wait.await;
            retry()
        }))
    }

    /// Waits for `next`, then goes on with the response future it gives.
    pub(crate) fn deferred(next: Deferred<F, B>) -> Self {
        Self {
            kind: Kind::Waiting { next },
            _body: std::marker::PhantomData,
        }
    }

    pub(crate) fn rejected(response: Response<Bytes>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(response),
            },
            _body: std::marker::PhantomData,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        while let KindProj::Waiting { next } = self.as_mut().project().kind.project() {
            let next = ready!(next.as_mut().poll(cx));
            self.set(next);
        }
        match self.project().kind.project() {
            KindProj::Passed { fut, guard } => {
                let response = ready!(fut.poll(cx))?;
                #[cfg(feature = "axum")]
                let response = match guard.take() {
                    Some(guard) => match super::rejection::render_pending(&guard, response) {
                        Ok(rendered) => return Poll::Ready(Ok(rendered.map(ResponseBody::full))),
                        Err(response) => response,
                    },
                    None => response,
                };
                #[cfg(not(feature = "axum"))]
                let _ = guard;
                Poll::Ready(Ok(response.map(ResponseBody::inner)))
            }
            KindProj::Rejected { response } => {
                // Polled again after completion: an empty 500 rather than a panic.
                let response = response.take().unwrap_or_else(server_error);
                Poll::Ready(Ok(response.map(ResponseBody::full)))
            }
            // Replaced above by what followed.
            KindProj::Waiting { .. } => Poll::Ready(Ok(server_error().map(ResponseBody::full))),
        }
    }
}

/// An empty 500: what a future polled again after completion answers, rather than panic.
fn server_error() -> Response<Bytes> {
    let mut r = Response::new(Bytes::new());
    *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
    r
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
