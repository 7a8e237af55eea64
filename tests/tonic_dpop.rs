//! DPoP over gRPC: the layer's checks read the `authorization` and `dpop` metadata of a
//! call (`htm` `POST`, `htu` the public URL plus `/package.Service/Method`), with a real
//! tonic server on 127.0.0.1 around the tonic demo's `demo.Billing` service and a real
//! tonic client; proofs made independently of the crate (`tests/support/dpop.rs`).

use std::sync::Arc;
use std::time::Duration;

use http::uri::PathAndQuery;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Status};
use tonic_prost::ProstCodec;
use tower::Layer;
use tower_stepup::dpop::DpopConfig;
use tower_stepup::store::MemoryStore;
use tower_stepup::{
    Algorithm, Clock as _, Grant, Guard, Issuer, ManualClock, Sealer, SealingKey, SealingKeys,
    SigningKey, Verifier, VerifyingKey,
};

#[allow(dead_code)]
#[path = "../examples/tonic_app/app.rs"]
mod app;
#[path = "support/dpop.rs"]
mod dpop;

use dpop::Key;

const T0: u64 = 1_800_000_010;
const SECRET: [u8; 32] = [0x61; 32];
const ISS: &str = "https://auth.grpc.test";
const AUD: &str = "https://api.grpc.test";
const WAIT: Duration = Duration::from_secs(5);

struct Grpc {
    channel: Channel,
    base: String,
    issuer: Issuer,
    clock: ManualClock,
    task: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Drop for Grpc {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start() -> Grpc {
    let clock = ManualClock::new(T0);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = format!("http://{addr}");
    let verifier = Verifier::builder()
        .issuer(ISS)
        .audience(AUD)
        .algorithms([Algorithm::HS256])
        .key(VerifyingKey::hmac("g", Algorithm::HS256, &SECRET).unwrap())
        .build()
        .unwrap();
    let sealer = Sealer::new(SealingKeys::new(SealingKey::new("s", [0x6e; 32]).unwrap())).unwrap();
    let guard = Guard::builder()
        .verifier(verifier)
        .sealer(sealer)
        .clock(clock.clone())
        .dpop(
            DpopConfig::default(),
            base.clone(),
            Arc::new(MemoryStore::new()),
        )
        .build()
        .unwrap();
    let issuer = Issuer::builder()
        .issuer(ISS)
        .audience(AUD)
        .signing_key(SigningKey::hmac("g", Algorithm::HS256, &SECRET).unwrap())
        .clock(clock.clone())
        .build()
        .unwrap();
    let billing = guard
        .route_table(app::route_table(Duration::from_secs(300)))
        .unwrap()
        .layer(app::BillingServer);
    let incoming = tonic::transport::server::TcpIncoming::from(listener);
    let task = tokio::spawn(
        Server::builder()
            .add_service(billing)
            .serve_with_incoming(incoming),
    );
    let channel = Channel::from_shared(base.clone())
        .unwrap()
        .connect_timeout(WAIT)
        .timeout(WAIT)
        .connect()
        .await
        .unwrap();
    Grpc {
        channel,
        base,
        issuer,
        clock,
        task,
    }
}

impl Grpc {
    fn bound_token(&self, key: &Key) -> String {
        let grant = Grant::new("alice")
            .amr(["pwd"])
            .scope("billing:read")
            .dpop_jkt(key.thumbprint());
        self.issuer.issue_access(&grant).unwrap().token
    }

    fn proof(&self, key: &Key, token: &str) -> String {
        key.proof(
            "POST",
            &format!("{}{}", self.base, app::ME),
            Some(token),
            self.clock.now(),
        )
    }

    /// `demo.Billing/Me` with this `authorization` and these `dpop` metadata values.
    async fn me(&self, authorization: &str, proofs: &[&str]) -> Result<app::MeReply, Status> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone());
        grpc.ready().await.unwrap();
        let mut request = Request::new(app::MeRequest::default());
        request
            .metadata_mut()
            .insert("authorization", authorization.parse().unwrap());
        for proof in proofs {
            request
                .metadata_mut()
                .append("dpop", proof.parse().unwrap());
        }
        request.set_timeout(WAIT);
        let path: PathAndQuery = app::ME.parse().unwrap();
        tokio::time::timeout(WAIT, grpc.unary(request, path, ProstCodec::default()))
            .await
            .expect("an answer in time")
            .map(tonic::Response::into_inner)
    }
}

fn challenge(status: &Status) -> String {
    status
        .metadata()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_dpop_call_passes_once_with_a_proof_of_its_key() {
    let grpc = start().await;
    for key in [Key::es256(3), Key::ed(4)] {
        let token = grpc.bound_token(&key);
        let proof = grpc.proof(&key, &token);
        let reply = grpc.me(&format!("DPoP {token}"), &[&proof]).await.unwrap();
        assert_eq!(reply.sub, "alice");
        // The same proof again is a replay.
        let status = grpc
            .me(&format!("DPoP {token}"), &[&proof])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert!(
            challenge(&status)
                .starts_with(r#"DPoP algs="ES256 EdDSA", error="invalid_dpop_proof""#),
            "{status:?}"
        );
    }
}

#[tokio::test]
async fn a_grpc_proof_for_another_method_or_as_get_or_without_a_key_is_refused() {
    let grpc = start().await;
    let key = Key::es256(3);
    let token = grpc.bound_token(&key);
    let now = grpc.clock.now();
    let invoices = format!("{}{}", grpc.base, app::GET_INVOICES);
    let me = format!("{}{}", grpc.base, app::ME);
    for (what, proof) in [
        (
            "another method's htu",
            key.proof("POST", &invoices, Some(&token), now),
        ),
        ("htm GET", key.proof("GET", &me, Some(&token), now)),
        (
            "another key",
            Key::ed(9).proof("POST", &me, Some(&token), now),
        ),
    ] {
        let status = grpc
            .me(&format!("DPoP {token}"), &[&proof])
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{what}: {status:?}");
        assert!(
            challenge(&status).contains(r#"error="invalid_dpop_proof""#),
            "{what}: {status:?}"
        );
    }
    // Two proofs in the metadata.
    let (a, b) = (grpc.proof(&key, &token), grpc.proof(&key, &token));
    let status = grpc
        .me(&format!("DPoP {token}"), &[&a, &b])
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    // The bound token as a bearer token: invalid_token, Bearer challenge first.
    let status = grpc.me(&format!("Bearer {token}"), &[]).await.unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    assert!(
        challenge(&status).starts_with(r#"Bearer error="invalid_token""#),
        "{status:?}"
    );
}
