use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::Response;
use pin_project_lite::pin_project;

use super::{Guard, ResponseBody};

pin_project! {
    /// Response future of [`StepUpService`](super::StepUpService).
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F>,
        _body: std::marker::PhantomData<fn() -> B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
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
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn passed(fut: F, guard: Option<Guard>) -> Self {
        Self {
            kind: Kind::Passed { fut, guard },
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

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
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
                let response = response.take().unwrap_or_else(|| {
                    let mut r = Response::new(Bytes::new());
                    *r.status_mut() = http::StatusCode::INTERNAL_SERVER_ERROR;
                    r
                });
                Poll::Ready(Ok(response.map(ResponseBody::full)))
            }
        }
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
