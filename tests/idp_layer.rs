//! The layer with identity providers' tokens, over real sockets: delegated step-up (no
//! mfa_token, no sealer), routes restricted to some issuers, and a key an identity
//! provider just started using, accepted on its first use.

#[path = "support/idp.rs"]
mod idp;
#[path = "support/reply.rs"]
mod reply;
#[path = "support/served.rs"]
mod served;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::Router;
use http::{Method, StatusCode};
use serde_json::json;
use tower_stepup::flow::DelegatedStepUp;
use tower_stepup::token::{KeySource, KeyWait, SharedKeys};
use tower_stepup::{
    Algorithm, Claims, Grant, Guard, Issuer, KeySet, ManualClock, Policy, RouteTable, SealingKey,
    SigningKey, StepUp, TrustedIssuer, Verifier, VerifyingKey,
};

use idp::{profile, token};
use reply::Reply;
use served::{serve, Served};

const NOW: u64 = 1_800_000_000;
const LOCAL: &str = "https://auth.local";
const SECRET: [u8; 32] = [9; 32];
const ADMIN_ACR: &str = "urn:okta:loa:2fa:any";

/// Who the handler saw: `iss sub`, or `anonymous`.
async fn whoami(claims: Option<axum::Extension<Claims>>) -> String {
    match claims {
        Some(axum::Extension(c)) => format!("{} {}", c.iss().unwrap_or("-"), c.sub()),
        None => "anonymous".to_owned(),
    }
}

fn table() -> RouteTable {
    let admin = StepUp::new()
        .acr_values([ADMIN_ACR])
        .max_age(Duration::from_secs(300));
    RouteTable::new()
        .route(
            Method::GET,
            "/api/orders",
            Policy::authenticated().scopes(["orders:read"]),
        )
        .route(Method::GET, "/api/admin", Policy::step_up(admin))
        .route(
            Method::GET,
            "/local",
            Policy::authenticated().issuers([LOCAL]),
        )
        .route(Method::GET, "/open", Policy::public().issuers([LOCAL]))
        .route(Method::GET, "/any", Policy::authenticated())
}

async fn serve_guard(guard: Guard) -> Served {
    let router = Router::new()
        .route("/api/orders", get(whoami))
        .route("/api/admin", get(whoami))
        .route("/local", get(whoami))
        .route("/open", get(whoami))
        .route("/any", get(whoami))
        .layer(guard.route_table(table()).unwrap());
    serve(router, "127.0.0.1:0").await
}

async fn get_with(served: &Served, path: &str, token: &str) -> Reply {
    let res = reqwest::Client::new()
        .get(format!("http://{}{path}", served.addr))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    Reply::from_reqwest(res).await
}

/// Okta's access token with `scp` and `acr` as given.
fn okta_token(scp: &[&str], acr: &str) -> String {
    token("okta", "access_token", &profile("okta"), NOW, |_, c| {
        c["scp"] = json!(scp);
        c["acr"] = json!(acr);
    })
}

#[tokio::test]
async fn a_step_up_for_a_providers_token_is_delegated_without_mfa_token_or_sealer() {
    let verifier = Verifier::builder().trust(profile("okta")).build().unwrap();
    let guard = Guard::builder()
        .verifier(verifier)
        .clock(ManualClock::new(NOW))
        .build()
        .expect("no sealer needed: no local issuer");
    assert!(guard.sealer().is_none());
    let served = serve_guard(guard).await;

    let one_factor = okta_token(&["orders:read"], "urn:okta:loa:1fa:any");
    let r = get_with(&served, "/api/orders", &one_factor).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.raw,
        b"https://dev-1.okta.com/oauth2/default alice@example.com"
    );

    let r = get_with(&served, "/api/admin", &one_factor).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(r.body["error"], "mfa_required");
    assert!(r.body.get("mfa_token").is_none(), "{}", r.body);
    assert!(r.body.get("mfa_requirements").is_none());
    assert_eq!(r.body["acr_values"], ADMIN_ACR);
    assert_eq!(r.body["max_age"], 300);
    let challenge = r.headers["www-authenticate"].to_str().unwrap();
    assert!(challenge.contains("error=\"insufficient_user_authentication\""));
    assert!(challenge.contains(&format!("acr_values=\"{ADMIN_ACR}\"")));
    assert!(challenge.contains("max_age=300"));
    let delegated = DelegatedStepUp::from_response(r.status, &r.headers, &r.body).unwrap();
    assert_eq!(delegated.acr_values, [ADMIN_ACR]);
    assert_eq!(delegated.max_age, Some(300));

    // Back from the provider with the second factor: through.
    let two_factors = okta_token(&["orders:read"], ADMIN_ACR);
    assert_eq!(
        get_with(&served, "/api/admin", &two_factors).await.status,
        200
    );
    // Without the scope: 403 insufficient_scope, as for local tokens.
    let r = get_with(&served, "/api/orders", &okta_token(&["openid"], ADMIN_ACR)).await;
    assert_eq!(
        (r.status.as_u16(), r.body["error"].as_str()),
        (403, Some("insufficient_scope"))
    );
}

fn local_issuer() -> Issuer {
    Issuer::builder()
        .issuer(LOCAL)
        .audience("https://api.local")
        .signing_key(SigningKey::hmac("local", Algorithm::HS256, &SECRET).unwrap())
        .clock(ManualClock::new(NOW))
        .build()
        .unwrap()
}

fn local_and(trusted: TrustedIssuer) -> Guard {
    let verifier = Verifier::builder()
        .issuer(LOCAL)
        .audience("https://api.local")
        .algorithms([Algorithm::HS256])
        .key(VerifyingKey::hmac("local", Algorithm::HS256, &SECRET).unwrap())
        .trust(trusted)
        .build()
        .unwrap();
    Guard::builder()
        .verifier(verifier)
        .sealing_key(SealingKey::generate("s1").unwrap())
        .clock(ManualClock::new(NOW))
        .build()
        .unwrap()
}

#[tokio::test]
async fn a_route_restricted_to_the_local_issuer_refuses_a_providers_user_of_the_same_name() {
    assert!(
        Guard::builder()
            .verifier(local_and(profile("auth0")).verifier().clone())
            .build()
            .is_err(),
        "a local issuer's guard needs its sealer"
    );
    let served = serve_guard(local_and(profile("auth0"))).await;
    let local = local_issuer()
        .issue_access(&Grant::new("alice").amr(["pwd"]).auth_time(NOW))
        .unwrap()
        .token;
    let idp_alice = token("auth0", "access_token", &profile("auth0"), NOW, |_, c| {
        c["sub"] = json!("alice")
    });
    assert_eq!(
        get_with(&served, "/local", &local).await.raw,
        format!("{LOCAL} alice").as_bytes()
    );
    let r = get_with(&served, "/local", &idp_alice).await;
    r.expect(401, "invalid_token");
    let r = get_with(&served, "/open", &idp_alice).await;
    assert_eq!(
        (r.status.as_u16(), r.raw.as_slice()),
        (200, b"anonymous".as_slice())
    );
    let r = get_with(&served, "/any", &idp_alice).await;
    assert_eq!(r.raw, b"https://example-tenant.us.auth0.com/ alice");
}

/// A provider's key source that fetches by adding `next` to its keys, counting fetches.
struct RotatingSource {
    keys: SharedKeys,
    next: KeySet,
    fetches: Arc<AtomicUsize>,
}

impl KeySource for RotatingSource {
    fn shared_keys(&self) -> &SharedKeys {
        &self.keys
    }

    fn unknown_kid(&self, _kid: Option<&str>) -> Option<KeyWait> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let (keys, next) = (self.keys.clone(), self.next.clone());
        Some(Box::pin(async move {
            tokio::task::yield_now().await;
            keys.replace(next);
        }))
    }
}

#[tokio::test]
async fn a_key_the_provider_just_started_using_is_accepted_on_its_first_use() {
    let old = VerifyingKey::rsa_pem(idp::KID, Algorithm::RS256, idp::RSA_PUBLIC).unwrap();
    let new = VerifyingKey::ec_pem("new", Algorithm::ES256, idp::EC_PUBLIC).unwrap();
    let fetches = Arc::new(AtomicUsize::new(0));
    let source = RotatingSource {
        keys: SharedKeys::new(KeySet::new().with(old.clone())),
        next: KeySet::new().with(old).with(new),
        fetches: Arc::clone(&fetches),
    };
    let okta = profile("okta")
        .algorithms([Algorithm::RS256, Algorithm::ES256])
        .key_source(source);
    let served = serve_guard(local_and(okta.clone())).await;
    let signed_by_new = token("okta", "access_token", &okta, NOW, |h, _| {
        h["alg"] = json!("ES256");
        h["kid"] = json!("new");
    });
    let r = get_with(&served, "/any", &signed_by_new).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // Known now: no fetch.
    assert_eq!(get_with(&served, "/any", &signed_by_new).await.status, 200);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    // A kid the fetch does not bring: one fetch, one more look, then 401 (no loop).
    let unknown = token("okta", "access_token", &okta, NOW, |h, _| {
        h["kid"] = json!("nope")
    });
    get_with(&served, "/any", &unknown)
        .await
        .expect(401, "invalid_token");
    assert_eq!(fetches.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn fixed_keys_never_wait() {
    let served = serve_guard(local_and(profile("okta"))).await;
    let unknown = token("okta", "access_token", &profile("okta"), NOW, |h, _| {
        h["kid"] = json!("nope")
    });
    get_with(&served, "/any", &unknown)
        .await
        .expect(401, "invalid_token");
}
