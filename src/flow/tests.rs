//! Every row of the table, and every pair outside it.

use std::collections::BTreeSet;

use super::*;

const NOW: u64 = 1_000;

fn session(tag: &str) -> Session {
    Session::new(
        format!("access-{tag}"),
        900,
        Some(format!("refresh-{tag}").into()),
        NOW,
    )
}

fn pending() -> PendingMfa {
    PendingMfa {
        partial_token: "partial".into(),
        expires_at: NOW + 300,
        attempts_remaining: None,
    }
}

fn step_up() -> PendingStepUp {
    PendingStepUp {
        session: session("old"),
        mfa_token: "mfa".into(),
        expires_at: NOW + 300,
        attempts_remaining: None,
    }
}

/// A delegated step-up, as a route of an IdP-issued token answers it.
fn delegated() -> DelegatedStepUp {
    DelegatedStepUp {
        acr_values: vec!["urn:idp:mfa".into()],
        max_age: Some(300),
        description: None,
    }
}

/// One state of each name.
fn states() -> Vec<State> {
    vec![
        State::SignedOut(None),
        State::Authenticating,
        State::MfaRequired(pending()),
        State::SignedIn(session("a")),
        State::StepUpRequired(step_up()),
        State::SessionExpired(session("a")),
        State::Failed(FlowError {
            reason: ErrorReason::Unavailable,
        }),
    ]
}

/// One event of each name (`SubmitCode` before the challenges expire).
fn events() -> Vec<Event> {
    vec![
        Event::SubmitCredentials,
        Event::CredentialsValid(session("new")),
        Event::InvalidCredentials,
        Event::MfaEnabled {
            partial_token: "partial".into(),
            expires_in: 300,
            now: NOW,
        },
        Event::SubmitCode { now: NOW + 10 },
        Event::CodeVerified(session("new")),
        Event::CodeRejected {
            attempts_remaining: Some(4),
        },
        Event::TooManyAttempts {
            retry_after: 900,
            now: NOW,
        },
        Event::RequestFailed(ErrorReason::ChallengeNotFound),
        Event::StepUpChallenged {
            mfa_token: "mfa".into(),
            expires_in: 300,
            now: NOW,
        },
        Event::StepUpDelegated(delegated()),
        Event::StepUpAbandoned,
        Event::TokenExpired,
        Event::Refreshed(session("new")),
        Event::RefreshFailed,
        Event::Logout,
        Event::Restart,
    ]
}

fn row(from: StateName, event: EventName) -> Option<&'static Transition> {
    TRANSITIONS
        .iter()
        .find(|t| t.from == from && t.event == event)
}

#[test]
fn every_pair_follows_the_table() {
    let mut used = BTreeSet::new();
    for state in states() {
        for event in events() {
            let (from, name) = (state.name(), event.name());
            match (state.clone().apply(event), row(from, name)) {
                (Ok(next), Some(t)) => {
                    assert_eq!(next.name(), t.to, "{from:?} --{name:?}-->");
                    used.insert((from, name));
                }
                (Err(e), None) => {
                    assert_eq!(e, IllegalTransition { from, event: name });
                }
                (Ok(next), None) => panic!("{from:?} --{name:?}--> {next:?} is not in the table"),
                (Err(e), Some(t)) => panic!("{t:?} is in the table but refused: {e}"),
            }
        }
    }
    // The expiring `SubmitCode` rows.
    for state in [
        State::MfaRequired(pending()),
        State::StepUpRequired(step_up()),
    ] {
        let from = state.name();
        let next = state.apply(Event::SubmitCode { now: NOW + 300 }).unwrap();
        let t = row(from, EventName::SubmitCodeExpired).unwrap();
        assert_eq!(next.name(), t.to);
        used.insert((from, EventName::SubmitCodeExpired));
    }
    let all: BTreeSet<_> = TRANSITIONS.iter().map(|t| (t.from, t.event)).collect();
    assert_eq!(used, all, "every row is reachable");
    assert_eq!(all.len(), TRANSITIONS.len(), "no row twice");
}

#[test]
fn the_seed_diagram_is_contained() {
    // ../shared/seeds/001: every transition of the original diagram.
    let seed = [
        ("SignedOut", "Authenticating", "Submit credentials"),
        ("Authenticating", "SignedIn", "Credentials valid"),
        ("Authenticating", "SignedOut", "Invalid credentials"),
        ("Authenticating", "MfaRequired", "MFA enabled"),
        ("MfaRequired", "SignedIn", "Code verified"),
        ("MfaRequired", "SignedOut", "Too many attempts"),
        ("SignedIn", "SessionExpired", "Token expires"),
        ("SessionExpired", "SignedIn", "Silent refresh"),
        ("SessionExpired", "SignedOut", "Refresh failed"),
        ("SignedIn", "SignedOut", "Logout"),
    ];
    let diagram = mermaid();
    for (from, to, label) in seed {
        let line = format!("{from} --> {to}: {label}\n");
        assert!(diagram.contains(&line), "missing `{line}`");
    }
    assert!(diagram.starts_with("stateDiagram-v2\n[*] --> SignedOut\n"));
}

#[test]
fn an_expired_partial_token_fails_before_anything_is_sent() {
    let state = State::MfaRequired(pending());
    // One second before: still good, the code may be sent.
    let still = state
        .clone()
        .apply(Event::SubmitCode { now: NOW + 299 })
        .unwrap();
    assert_eq!(still, State::MfaRequired(pending()));
    let State::Failed(error) = state.apply(Event::SubmitCode { now: NOW + 300 }).unwrap() else {
        panic!("not failed")
    };
    assert_eq!(error.reason(), ErrorReason::PartialTokenExpired);
    assert_eq!(error.reason().as_str(), "partial_token_expired");
    assert_eq!(error.recovery(), Recovery::StartAgain);
    // The only ways out: start again, or sign in again.
    let failed = State::Failed(error);
    assert_eq!(
        failed.clone().apply(Event::Restart).unwrap(),
        State::SignedOut(None)
    );
    assert_eq!(
        failed.clone().apply(Event::SubmitCredentials).unwrap(),
        State::Authenticating
    );
    assert!(failed.apply(Event::CodeVerified(session("x"))).is_err());
}

#[test]
fn data_lives_only_in_its_states() {
    // The partial token leaves with MfaRequired; the new session replaces it.
    let signed_in = State::MfaRequired(pending())
        .apply(Event::CodeVerified(session("new")))
        .unwrap();
    assert_eq!(signed_in, State::SignedIn(session("new")));
    // Signed out keeps no token, whatever the way out.
    for state in [
        State::SignedIn(session("a")),
        State::StepUpRequired(step_up()),
        State::SessionExpired(session("a")),
    ] {
        let out = state.apply(Event::Logout).unwrap();
        assert_eq!(out, State::SignedOut(Some(SignedOutReason::LoggedOut)));
        assert!(out.session().is_none());
    }
    let locked = State::MfaRequired(pending())
        .apply(Event::TooManyAttempts {
            retry_after: 900,
            now: NOW,
        })
        .unwrap();
    assert_eq!(
        locked,
        State::SignedOut(Some(SignedOutReason::LockedOut {
            retry_at: NOW + 900
        }))
    );
    // Step-up keeps the session it interrupts, and gives it back when abandoned.
    let back = State::StepUpRequired(step_up())
        .apply(Event::StepUpAbandoned)
        .unwrap();
    assert_eq!(back, State::SignedIn(session("old")));
    // A wrong code keeps the challenge and records what is left.
    let again = State::MfaRequired(pending())
        .apply(Event::CodeRejected {
            attempts_remaining: Some(2),
        })
        .unwrap();
    let State::MfaRequired(p) = again else {
        panic!()
    };
    assert_eq!(p.attempts_remaining, Some(2));
    assert_eq!(p.partial_token, pending().partial_token);
}

#[test]
fn secrets_do_not_print() {
    let state = State::MfaRequired(pending());
    let printed = format!("{state:?} {:?}", State::SignedIn(session("a")));
    assert!(!printed.contains("partial\""), "{printed}");
    assert!(!printed.contains("access-a"), "{printed}");
    assert!(!printed.contains("refresh-a"), "{printed}");
    assert!(printed.contains("Secret(…)"));
}

#[test]
fn a_refused_move_leaves_the_state_as_it_was() {
    let mut state = State::MfaRequired(pending());
    let e = state
        .transition(Event::Refreshed(session("x")))
        .unwrap_err();
    assert_eq!(
        e,
        IllegalTransition {
            from: StateName::MfaRequired,
            event: EventName::Refreshed
        }
    );
    assert_eq!(state, State::MfaRequired(pending()));
    state.transition(Event::CodeVerified(session("x"))).unwrap();
    assert_eq!(state, State::SignedIn(session("x")));
}

#[test]
fn a_delegated_step_up_keeps_the_session_and_holds_no_mfa_token() {
    let state = State::SignedIn(session("a"));
    let next = state
        .clone()
        .apply(Event::StepUpDelegated(delegated()))
        .unwrap();
    assert_eq!(next, state, "the same session, nothing pending");
    // Not in the middle of a local step-up, nor without a session.
    for from in [
        State::StepUpRequired(step_up()),
        State::SignedOut(None),
        State::SessionExpired(session("a")),
    ] {
        let name = from.name();
        let e = from.apply(Event::StepUpDelegated(delegated())).unwrap_err();
        assert_eq!(e.event, EventName::StepUpDelegated, "{name:?}");
    }
}
