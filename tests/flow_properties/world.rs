//! The app under test: the guard's route table in front of the completion endpoints and
//! two protected routes, on a [`TestStore`] and a [`TestFactors`] directory.

use crate::*;

pub(crate) struct World {
    pub(crate) clock: ManualClock,
    pub(crate) start: u64,
    pub(crate) app: Router,
    pub(crate) guard: Guard,
    pub(crate) store: Arc<TestStore>,
    /// The factor directory behind the app's [`TestFactors`].
    pub(crate) factors: Arc<MemoryFactors>,
    /// Signs partial tokens for any user with a key the server does not know.
    pub(crate) forger: Issuer,
}

/// The factor directory at the start: alice and carol enrolled, bob not.
pub(crate) fn directory() -> Arc<MemoryFactors> {
    let factors = Arc::new(MemoryFactors::new());
    factors.insert("alice", TotpFactor::new(alice_secret(), Vec::new()));
    let carol_hashes: Vec<RecoveryCodeHash> =
        CAROL_CODES.iter().map(|c| recovery::hash(c)).collect();
    factors.insert("carol", TotpFactor::new(carol_secret(), carol_hashes));
    factors
}

pub(crate) fn world(faults: Faults, start: u64) -> World {
    world_with(faults, start, directory(), None)
}

/// The app on `factors`, its saves of factors through `save_gate` if any.
pub(crate) fn world_with(
    faults: Faults,
    start: u64,
    factors: Arc<MemoryFactors>,
    save_gate: Option<SaveGate>,
) -> World {
    let clock = ManualClock::new(start);
    let key = [0x42u8; 32];
    let (guard, layer_guard) = guards(faults, &clock, &key);
    let issuer_with = |key: &[u8; 32]| {
        Issuer::builder()
            .issuer(ISSUER)
            .audience(AUDIENCE)
            .signing_key(SigningKey::hmac("k1", Algorithm::HS256, key).unwrap())
            .access_ttl(Duration::from_secs(ACCESS_TTL))
            .partial_ttl(Duration::from_secs(PARTIAL_TTL))
            .clock(clock.clone())
            .build()
            .unwrap()
    };
    let issuer = issuer_with(&key);
    let forger = issuer_with(&[0x66; 32]);

    let store = Arc::new(TestStore::new(faults));
    let completion = Completion::builder()
        .guard(guard.clone())
        .issuer(issuer)
        .shared_store(store.clone() as Arc<dyn Store>)
        .accounts(
            PlainAccounts::new(&User::ALL.map(|u| (u.name(), u.password()))).with_scope(SCOPE),
        )
        .factors(Arc::new(TestFactors {
            inner: factors.clone(),
            lose_carol: faults.lost_factor,
            save_gate,
        }))
        .attempts(ATTEMPTS)
        .refresh_lifetime(Duration::from_secs(REFRESH_LIFETIME))
        .enroll_step_up(
            StepUp::new()
                .amr(["mfa"])
                .max_age(Duration::from_secs(MAX_AGE)),
        )
        .build()
        .unwrap();

    let app = app(&completion, &layer_guard);
    World {
        clock,
        start,
        app,
        guard,
        store,
        factors,
        forger,
    }
}

/// The completion's guard, and the layer's: the same one, or with `unrevoked_layer`
/// another, whose set of ended sessions the completion never writes to.
fn guards(faults: Faults, clock: &ManualClock, key: &[u8; 32]) -> (Guard, Guard) {
    let verifier = Verifier::builder()
        .issuer(ISSUER)
        .audience(AUDIENCE)
        .algorithms([Algorithm::HS256])
        .key(VerifyingKey::hmac("k1", Algorithm::HS256, key).unwrap())
        .build()
        .unwrap();
    let sealer = Sealer::new(SealingKeys::new(SealingKey::new("s1", [0x24; 32]).unwrap())).unwrap();
    let guard_with = |revocations: Revocations| {
        Guard::builder()
            .verifier(verifier.clone())
            .sealer(sealer.clone())
            .clock(clock.clone())
            .mfa_token_ttl(Duration::from_secs(MFA_TOKEN_TTL))
            .revocations(revocations)
            .build()
            .unwrap()
    };
    let guard = guard_with(Revocations::new());
    let layer_guard = if faults.unrevoked_layer {
        guard_with(Revocations::new())
    } else {
        guard.clone()
    };
    (guard, layer_guard)
}

/// The completion endpoints (the session list and end too) and the two protected
/// routes, behind `layer_guard`'s route table.
fn app(completion: &Completion, layer_guard: &Guard) -> Router {
    let step_up = StepUp::new()
        .amr(["mfa"])
        .max_age(Duration::from_secs(MAX_AGE));
    let table = completion_app::policies(
        RouteTable::new()
            .route(Method::GET, "/api/me", Policy::authenticated())
            .route(Method::GET, "/api/billing", Policy::step_up(step_up))
            .route(Method::GET, "/auth/sessions", Policy::authenticated())
            .route(
                Method::DELETE,
                "/auth/sessions/{id}",
                Policy::authenticated(),
            ),
    );
    let api = Router::new()
        .route("/api/me", get(whoami))
        .route("/api/billing", get(whoami))
        .route("/auth/sessions", get_service(completion.sessions()))
        .route(
            "/auth/sessions/{id}",
            delete_service(completion.end_session()),
        );
    completion_app::routes(api, completion).layer(layer_guard.route_table(table).unwrap())
}

pub(crate) async fn whoami(Extension(claims): Extension<Claims>) -> Json<Value> {
    Json(json!({"sub": claims.sub(), "sid": claims.sid()}))
}
