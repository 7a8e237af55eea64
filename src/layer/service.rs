use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use tower_service::Service;

use super::{Decision, Guard, PolicySource, ResponseBody, ResponseFuture};
use crate::challenge::Denial;
use crate::token::Claims;

/// The service built by [`StepUpLayer`](super::StepUpLayer).
///
/// A refusal is an `Ok` response (the inner service is not called); `Error` is the inner
/// service's. A passing request carries the verified [`Claims`] in its extensions; an
/// anonymous one on a public route carries none.
#[derive(Clone)]
pub struct StepUpService<S> {
    inner: S,
    guard: Guard,
    source: Arc<PolicySource>,
}

impl<S> StepUpService<S> {
    pub(crate) fn new(inner: S, guard: Guard, source: Arc<PolicySource>) -> Self {
        Self {
            inner,
            guard,
            source,
        }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped service, unwrapped.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

/// The service needs `S: Clone` (as tower-http's async authorization does) for two paths
/// that wait before calling it: a token that names a key its issuer's source does not
/// have yet waits for the source to fetch it, and a DPoP request waits for its proof's
/// single use in the store. The request then goes to the inner service taken out of this
/// one (a clone, not yet ready, stays behind).
impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for StepUpService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    ReqBody: Send + 'static,
    ResBody: 'static,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        self.handle(req, true)
    }
}

impl<S> StepUpService<S> {
    /// Decides `req` and calls the inner service or renders the denial. With `may_wait`,
    /// a token refused for an unknown `kid` whose issuer's source starts (or joins) a
    /// fetch waits for it, then is decided once more, without waiting again.
    fn handle<ReqBody, ResBody>(
        &mut self,
        req: Request<ReqBody>,
        may_wait: bool,
    ) -> ResponseFuture<S::Future, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
        ReqBody: Send + 'static,
        ResBody: 'static,
    {
        let policy = self.source.policy_for(req.method(), req.uri().path());
        let denial = match self
            .guard
            .decide(policy, req.method(), req.uri().path(), req.headers())
        {
            Decision::Pass(claims) => return self.pass(req, claims),
            Decision::PassOnce(claims, proof, now) => {
                let mut ready = self.take_ready();
                // The block's value is the response future that follows, polled next.
                #[allow(clippy::async_yields_async)]
                return ResponseFuture::deferred(Box::pin(async move {
                    match ready.guard.use_proof(&claims, &proof, now).await {
                        Ok(()) => ready.pass(req, Some(claims)),
                        Err(denial) => ready.reject(req, denial),
                    }
                }));
            }
            Decision::Deny(denial) => denial,
        };
        if let Some(wait) = may_wait
            .then(|| self.guard.key_wait(&denial, req.headers()))
            .flatten()
        {
            let mut ready = self.take_ready();
            return ResponseFuture::waiting(wait, Box::new(move || ready.handle(req, false)));
        }
        self.reject(req, denial)
    }

    /// This service, holding the inner service made ready by `poll_ready`, for a request
    /// decided later; a clone, not yet ready, stays behind.
    fn take_ready(&mut self) -> Self
    where
        S: Clone,
    {
        let clone = self.inner.clone();
        StepUpService {
            inner: std::mem::replace(&mut self.inner, clone),
            guard: self.guard.clone(),
            source: Arc::clone(&self.source),
        }
    }

    /// Refuses `req`: decided, and rendered once, here at the edge. The request goes no
    /// further.
    fn reject<ReqBody, ResBody>(
        &self,
        req: Request<ReqBody>,
        denial: Denial,
    ) -> ResponseFuture<S::Future, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        let (parts, _body) = req.into_parts();
        ResponseFuture::rejected(self.guard.render(denial, &parts))
    }

    /// Calls the inner service with `claims` (or none) in the extensions.
    fn pass<ReqBody, ResBody>(
        &mut self,
        mut req: Request<ReqBody>,
        claims: Option<Claims>,
    ) -> ResponseFuture<S::Future, ResBody>
    where
        S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    {
        // Claims in the extensions always come from this decision, never from whoever
        // handled the request before.
        let ext = req.extensions_mut();
        match claims {
            Some(claims) => {
                ext.insert(claims);
                ResponseFuture::passed(self.inner.call(req), None)
            }
            None => {
                ext.remove::<Claims>();
                // A handler that needs claims after all (the axum extractor) refuses; its
                // refusal is rendered this guard's way on the way out (by default, as the
                // extractor did already).
                #[cfg(feature = "axum")]
                let guard = self.guard.renders_its_own_way().then(|| self.guard.clone());
                #[cfg(not(feature = "axum"))]
                let guard = None;
                ResponseFuture::passed(self.inner.call(req), guard)
            }
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for StepUpService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepUpService")
            .field("inner", &self.inner)
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}
