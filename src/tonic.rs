//! tonic integration (feature `tonic`).
//!
//! A tonic `Router` needs each service's gRPC name ([`NamedService`]); the layer's service
//! keeps the name of the service it wraps, so one gRPC service can be guarded on its own:
//!
//! ```text
//! Server::builder()
//!     .add_service(guard.require(Policy::authenticated())?.layer(GreeterServer::new(greeter)))
//! ```
//!
//! gRPC-aware denials (Trailers-Only responses with `grpc-status`) are not built yet: a
//! gRPC client currently receives the plain HTTP denial.

use tonic::server::NamedService;

use crate::layer::StepUpService;

impl<S: NamedService> NamedService for StepUpService<S> {
    const NAME: &'static str = S::NAME;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        Algorithm, Guard, Policy, Sealer, SealingKey, SealingKeys, Verifier, VerifyingKey,
    };
    use tower_layer::Layer;

    struct Greeter;
    impl NamedService for Greeter {
        const NAME: &'static str = "helloworld.Greeter";
    }

    fn name_of<S: NamedService>(_: &S) -> &'static str {
        S::NAME
    }

    #[test]
    fn wrapped_service_keeps_its_grpc_name() {
        let verifier = Verifier::builder()
            .issuer("i")
            .audience("a")
            .algorithms([Algorithm::HS256])
            .key(VerifyingKey::hmac("k", Algorithm::HS256, &[1; 32]).unwrap())
            .build()
            .unwrap();
        let sealer = Sealer::new(SealingKeys::new(SealingKey::new("s", [2; 32]).unwrap())).unwrap();
        let guard = Guard::builder()
            .verifier(verifier)
            .sealer(sealer)
            .build()
            .unwrap();
        let svc = guard
            .require(Policy::authenticated())
            .unwrap()
            .layer(Greeter);
        assert_eq!(name_of(&svc), "helloworld.Greeter");
    }
}
