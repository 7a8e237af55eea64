use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use super::{Guard, PolicySource, StepUpService};

/// Applies the [`Guard`]'s checks and a policy (or a route table of them) to a service.
///
/// Built by [`Guard::route_table`] or [`Guard::require`].
#[derive(Clone)]
#[must_use]
pub struct StepUpLayer {
    guard: Guard,
    source: Arc<PolicySource>,
}

impl StepUpLayer {
    pub(crate) fn new(guard: Guard, source: PolicySource) -> Self {
        Self {
            guard,
            source: Arc::new(source),
        }
    }
}

impl<S> Layer<S> for StepUpLayer {
    type Service = StepUpService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StepUpService::new(inner, self.guard.clone(), self.source.clone())
    }
}

impl fmt::Debug for StepUpLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepUpLayer")
            .field("guard", &self.guard)
            .finish_non_exhaustive()
    }
}
