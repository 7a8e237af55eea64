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
    /// The relying party the app's passkeys are registered with.
    pub(crate) passkeys: PasskeyConfig,
    /// Where the app's sent codes go.
    pub(crate) sender: Arc<CapturingSender>,
}

/// The factor directory at the start: alice and carol enrolled (alice with an email
/// address too), bob not. Their passkeys are registered by [`Keys::register`].
pub(crate) fn directory() -> Arc<MemoryFactors> {
    let factors = Arc::new(MemoryFactors::new());
    factors.insert("alice", TotpFactor::new(alice_secret(), Vec::new()));
    let email = FactorData::new(ALICE_EMAIL.as_bytes().to_vec());
    factors.add("alice", StoredFactor::new(kind::EMAIL, email, 0).unwrap());
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
    let passkeys = PasskeyConfig::new(RP_ID, ORIGIN, "Flow").unwrap();
    let sender = Arc::new(CapturingSender::default());
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
        .passkeys(passkeys.clone())
        .code_sender(sender.clone() as Arc<dyn CodeSender>)
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
        passkeys,
        sender,
    }
}

/// The authenticators of a case: alice's device-bound passkey (`hwk`), carol's synced
/// one (`swk`), and one registered with the same relying party but in nobody's
/// directory.
pub(crate) struct Keys {
    pub(crate) alice: SoftAuthenticator,
    pub(crate) carol: SoftAuthenticator,
    pub(crate) stranger: SoftAuthenticator,
    /// The stranger's credential id (base64url), for an `allowCredentials` that names it.
    pub(crate) stranger_id: String,
}

impl Keys {
    /// Registers a passkey for alice and carol in `w`'s directory, and the stranger's
    /// nowhere.
    pub(crate) async fn register(w: &World) -> Keys {
        let mut alice = SoftAuthenticator::hwk(ORIGIN);
        let mut carol = SoftAuthenticator::swk(ORIGIN);
        let mut stranger = SoftAuthenticator::hwk(ORIGIN);
        for (user, key) in [(User::Alice, &mut alice), (User::Carol, &mut carol)] {
            let passkey = register_passkey(&w.passkeys, key, user.name()).await;
            let data = FactorData::new(passkey.to_bytes().unwrap());
            let record = StoredFactor::new(kind::PASSKEY, data, 0).unwrap();
            w.factors.add(user.name(), record);
        }
        let theirs = register_passkey(&w.passkeys, &mut stranger, "alice").await;
        let stranger_id =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(theirs.credential_id());
        Keys {
            alice,
            carol,
            stranger,
            stranger_id,
        }
    }

    /// The authenticator that holds `user`'s registered passkey, if any.
    pub(crate) fn of(&mut self, user: User) -> Option<&mut SoftAuthenticator> {
        match user {
            User::Alice => Some(&mut self.alice),
            User::Carol => Some(&mut self.carol),
            User::Bob => None,
        }
    }
}

async fn register_passkey(
    config: &PasskeyConfig,
    key: &mut SoftAuthenticator,
    user: &str,
) -> StoredPasskey {
    let (options, state) = config.start_registration(user, user, &[]).unwrap();
    let credential = key.register(&options).await.unwrap();
    config.finish_registration(&state, &credential).unwrap()
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
            .route(
                Method::POST,
                "/auth/passkey/challenge",
                Policy::mfa_verify(),
            )
            .route(Method::POST, "/auth/mfa/send", Policy::mfa_verify())
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
        .route(
            "/auth/passkey/challenge",
            post_service(completion.passkey_challenge()),
        )
        .route("/auth/mfa/send", post_service(completion.send_code()))
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
