//! The fetcher seam: any `tower::Service<http::Request<()>>` answering
//! `http::Response<Bytes>`, kept behind one object-safe trait.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;

use bytes::Bytes;
use http::{Request, Response};
use tower_service::Service;

use super::error::BoxError;

/// A fetch in progress.
pub(crate) type FetchFuture =
    Pin<Box<dyn Future<Output = Result<Response<Bytes>, BoxError>> + Send>>;

/// A fetcher, whatever its type.
pub(crate) trait Fetch: Send + Sync {
    /// Sends one request.
    fn fetch(&self, request: Request<()>) -> FetchFuture;
}

/// A service used as a fetcher: each fetch calls a clone of it, once it is ready.
pub(crate) struct ServiceFetch<S>(Mutex<S>);

impl<S> ServiceFetch<S> {
    pub(crate) fn new(service: S) -> Self {
        Self(Mutex::new(service))
    }
}

impl<S> Fetch for ServiceFetch<S>
where
    S: Service<Request<()>, Response = Response<Bytes>, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    fn fetch(&self, request: Request<()>) -> FetchFuture {
        let mut service = match self.0.lock() {
            Ok(service) => service.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        Box::pin(async move {
            std::future::poll_fn(|cx| service.poll_ready(cx)).await?;
            service.call(request).await
        })
    }
}
