//! Strategies: how operations and cases are drawn.

use crate::*;

/// How often each kind of operation is drawn.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mix {
    pub(crate) login: u32,
    pub(crate) verify: u32,
    pub(crate) burst: u32,
    pub(crate) advance: u32,
    pub(crate) refresh: u32,
    pub(crate) logout: u32,
    pub(crate) get: u32,
    pub(crate) step_up: u32,
    pub(crate) enroll: u32,
    /// `GET /auth/sessions` and `DELETE /auth/sessions/{id}`.
    pub(crate) sessions: u32,
}

pub(crate) const BALANCED: Mix = Mix {
    login: 2,
    verify: 8,
    burst: 1,
    advance: 5,
    refresh: 3,
    logout: 1,
    get: 3,
    step_up: 3,
    enroll: 2,
    sessions: 2,
};

pub(crate) fn user() -> impl Strategy<Value = User> + Clone {
    prop_oneof![Just(User::Alice), Just(User::Carol), Just(User::Bob)]
}

pub(crate) fn access_pick() -> impl Strategy<Value = AccessPick> + Clone {
    prop_oneof![
        3 => user().prop_map(AccessPick::Latest),
        1 => any::<Index>().prop_map(AccessPick::Any),
    ]
}

pub(crate) fn cred() -> impl Strategy<Value = Cred> + Clone {
    prop_oneof![
        6 => access_pick().prop_map(Cred::Access),
        1 => Just(Cred::None),
        1 => any::<Index>().prop_map(Cred::Partial),
        1 => any::<Index>().prop_map(Cred::MfaToken),
    ]
}

pub(crate) fn refresh_pick() -> impl Strategy<Value = RefreshPick> + Clone {
    prop_oneof![
        3 => any::<Index>().prop_map(RefreshPick::Current),
        2 => any::<Index>().prop_map(RefreshPick::Any),
        1 => Just(RefreshPick::Unknown),
    ]
}

pub(crate) fn challenge() -> impl Strategy<Value = Challenge> {
    prop_oneof![
        5 => prop_oneof![3 => Just(User::Alice), 3 => Just(User::Carol), 1 => Just(User::Bob)]
            .prop_map(Challenge::Fresh),
        4 => Just(Challenge::Latest),
        2 => any::<Index>().prop_map(Challenge::Partial),
        3 => any::<Index>().prop_map(Challenge::MfaToken),
        1 => any::<Index>().prop_map(Challenge::AccessToken),
        1 => user().prop_map(Challenge::Forged),
        1 => Just(Challenge::Garbage),
    ]
}

pub(crate) fn proof() -> impl Strategy<Value = Proof> {
    prop_oneof![
        8 => (-1i64..=1).prop_map(|delta| Proof::Totp { user: None, delta }),
        1 => prop_oneof![Just(-2i64), Just(2)].prop_map(|delta| Proof::Totp { user: None, delta }),
        1 => (user(), -1i64..=1).prop_map(|(u, delta)| Proof::Totp { user: Some(u), delta }),
        3 => Just(Proof::Wrong),
        4 => any::<Index>().prop_map(Proof::Replay),
        3 => (proptest::option::of(user()), any::<Index>())
            .prop_map(|(user, pick)| Proof::Recovery { user, pick }),
        5 => passkey_proof().prop_map(Proof::Passkey),
        5 => sent_proof().prop_map(Proof::Sent),
    ]
}

/// Passkey assertions: mostly right, else the stranger's, another challenge's, a replay
/// or an unreadable one.
pub(crate) fn passkey_proof() -> impl Strategy<Value = PasskeyProof> {
    prop_oneof![
        5 => Just(PasskeyProof::Right),
        1 => Just(PasskeyProof::Unregistered),
        1 => Just(PasskeyProof::OtherChallenge),
        2 => any::<Index>().prop_map(PasskeyProof::Replay),
        1 => any::<bool>().prop_map(|challenged| PasskeyProof::Malformed { challenged }),
    ]
}

/// Sent codes: mostly right, else replaced, another challenge's, a replay, or after a
/// refused SMS.
pub(crate) fn sent_proof() -> impl Strategy<Value = SentProof> {
    prop_oneof![
        5 => Just(SentProof::Right),
        1 => Just(SentProof::Stale),
        1 => Just(SentProof::OtherChallenge),
        2 => any::<Index>().prop_map(SentProof::Replay),
        1 => Just(SentProof::Sms),
    ]
}

/// Clock moves: small ones within and across TOTP steps, and ones that land on either
/// side of every lifetime (partial token and mfa_token, their leeway, `max_age` and the
/// failure window, the lockout, the access token, the refresh family).
pub(crate) fn advance() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 1u64..=6,
        3 => 24u64..=36,
        2 => (PARTIAL_TTL - 3)..=(PARTIAL_TTL + LEEWAY + 2),
        1 => (WINDOW - 2)..=(WINDOW + 2),
        2 => (LOCKOUT - 3)..=(LOCKOUT + 3),
        1 => ACCESS_TTL..=(ACCESS_TTL + LEEWAY + 2),
        1 => Just(REFRESH_LIFETIME),
    ]
}

pub(crate) fn op(mix: Mix) -> impl Strategy<Value = Op> {
    let mut options: Vec<(u32, BoxedStrategy<Op>)> = Vec::new();
    let mut add = |weight: u32, s: BoxedStrategy<Op>| {
        if weight > 0 {
            options.push((weight, s));
        }
    };
    add(
        mix.login,
        (
            prop_oneof![4 => user().prop_map(Who::User), 1 => Just(Who::Unknown)],
            prop::bool::weighted(0.7),
        )
            .prop_map(|(who, right_password)| Op::Login {
                who,
                right_password,
            })
            .boxed(),
    );
    add(
        mix.verify,
        (
            challenge(),
            proof(),
            prop::bool::weighted(0.2),
            proptest::option::weighted(0.3, access_pick()),
        )
            .prop_map(|(challenge, proof, as_bearer, beside)| Op::Verify {
                challenge,
                proof,
                as_bearer,
                beside,
            })
            .boxed(),
    );
    add(
        mix.burst,
        (
            prop_oneof![3 => Just(User::Alice), 3 => Just(User::Carol), 1 => Just(User::Bob)],
            2usize..=6,
            prop_oneof![
                Just(BurstTarget::SharedPartial),
                Just(BurstTarget::OwnPartials),
                Just(BurstTarget::StepUps),
            ],
            prop_oneof![
                4 => Just(BurstCode::Right),
                2 => Just(BurstCode::Window),
                1 => any::<Index>().prop_map(BurstCode::Replay),
                2 => any::<Index>().prop_map(BurstCode::Recovery),
                2 => Just(BurstCode::Recoveries),
                1 => Just(BurstCode::Mixed),
                2 => Just(BurstCode::Passkeys),
                2 => Just(BurstCode::SentCodes),
            ],
        )
            .prop_map(|(user, n, target, code)| Op::Burst {
                user,
                n,
                target,
                code,
            })
            .boxed(),
    );
    add(mix.advance, advance().prop_map(Op::Advance).boxed());
    add(
        mix.refresh,
        prop_oneof![
            6 => refresh_pick().prop_map(Op::Refresh),
            1 => (any::<Index>(), 2usize..=4).prop_map(|(family, n)| Op::RefreshBurst { family, n }),
        ]
        .boxed(),
    );
    add(
        mix.logout,
        (cred(), refresh_pick())
            .prop_map(|(cred, refresh)| Op::Logout { cred, refresh })
            .boxed(),
    );
    add(
        mix.get,
        (prop_oneof![Just(Route::Me), Just(Route::Billing)], cred())
            .prop_map(|(route, cred)| Op::Get { route, cred })
            .boxed(),
    );
    add(
        mix.step_up,
        (user(), proof(), prop::bool::weighted(0.3))
            .prop_map(|(user, proof, beside)| Op::StepUp {
                user,
                proof,
                beside,
            })
            .boxed(),
    );
    let confirm_code = || {
        prop_oneof![
            4 => (-1i64..=1).prop_map(ConfirmCode::Pending),
            1 => prop_oneof![Just(-2i64), Just(2)].prop_map(ConfirmCode::Pending),
            1 => Just(ConfirmCode::Current),
            1 => Just(ConfirmCode::Wrong),
        ]
    };
    add(
        mix.enroll,
        prop_oneof![
            2 => (user(), confirm_code())
                .prop_map(|(user, code)| Op::EnrollAndConfirm { user, code }),
            1 => cred().prop_map(Op::Enroll),
            1 => (cred(), confirm_code()).prop_map(|(cred, code)| Op::Confirm { cred, code }),
        ]
        .boxed(),
    );
    add(mix.sessions, sessions_op().boxed());
    Union::new_weighted(options)
}

/// A session list, or the end of a session (mostly the caller's own, else another
/// user's, an unknown or a malformed id), or the clock near a session's absolute end.
pub(crate) fn sessions_op() -> impl Strategy<Value = Op> {
    let target = prop_oneof![
        4 => any::<Index>().prop_map(SessionPick::Own),
        2 => any::<Index>().prop_map(SessionPick::Any),
        1 => Just(SessionPick::Unknown),
        1 => any::<Index>().prop_map(SessionPick::Malformed),
    ];
    prop_oneof![
        2 => cred().prop_map(Op::ListSessions),
        3 => (cred(), target).prop_map(|(cred, target)| Op::EndSession { cred, target }),
        1 => (any::<Index>(), -30i64..=5)
            .prop_map(|(family, offset)| Op::ToFamilyEnd { family, offset }),
    ]
}

/// A case: where in a TOTP step the clock starts, and the operations.
pub(crate) fn scenario(mix: Mix) -> impl Strategy<Value = (u64, Vec<Op>)> {
    (0u64..STEP, proptest::collection::vec(op(mix), 1..=30))
}
