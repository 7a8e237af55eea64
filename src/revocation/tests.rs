use super::*;

fn claims(sub: &str, sid: &str, iat: u64) -> Claims {
    serde_json::from_value(serde_json::json!({
        "sub": sub, "sid": sid, "iat": iat, "exp": iat + 300, "iss": "i", "aud": "a",
    }))
    .expect("claims")
}

const NOW: u64 = 1_000_000;

#[test]
fn a_revoked_session_is_refused_until_its_entry_expires() {
    let set = Revocations::new();
    let token = claims("alice", "s1", NOW);
    assert!(!set.is_revoked(&token, NOW));
    set.apply(
        &[UserRevocations::new("alice").session("s1", NOW + 300)],
        NOW,
    );
    assert!(set.is_revoked(&token, NOW));
    assert!(set.is_revoked(&token, NOW + 299));
    assert!(
        !set.is_revoked(&token, NOW + 300),
        "expired with its tokens"
    );
    // Other sessions and other users are untouched.
    assert!(!set.is_revoked(&claims("alice", "s2", NOW), NOW));
    assert!(!set.is_revoked(&claims("bob", "s1", NOW), NOW));
}

#[test]
fn a_cutoff_refuses_tokens_issued_up_to_it_only() {
    let set = Revocations::new();
    set.apply(&[UserRevocations::new("alice").before(NOW, NOW + 300)], NOW);
    assert!(set.is_revoked(&claims("alice", "s1", NOW - 10), NOW));
    assert!(set.is_revoked(&claims("alice", "s1", NOW), NOW));
    assert!(!set.is_revoked(&claims("alice", "s9", NOW + 1), NOW + 1));
    assert!(!set.is_revoked(&claims("bob", "s1", NOW - 10), NOW));
}

#[test]
fn applying_in_any_order_gives_the_union() {
    let a = UserRevocations::new("alice").session("s1", NOW + 100);
    let b = UserRevocations::new("alice")
        .session("s2", NOW + 200)
        .session("s1", NOW + 50);
    let one = Revocations::new();
    one.apply(std::slice::from_ref(&a), NOW);
    one.apply(std::slice::from_ref(&b), NOW);
    let two = Revocations::new();
    two.apply(&[b], NOW);
    two.apply(&[a], NOW);
    for set in [&one, &two] {
        assert!(set.is_revoked(&claims("alice", "s1", NOW), NOW + 99));
        assert!(!set.is_revoked(&claims("alice", "s1", NOW), NOW + 100));
        assert!(set.is_revoked(&claims("alice", "s2", NOW), NOW + 199));
    }
}

#[test]
fn one_user_collapses_into_a_cutoff_past_the_bound() {
    let set = Revocations::new();
    let mut many = UserRevocations::new("mallory");
    for i in 0..=REVOKED_SESSIONS_PER_USER {
        many = many.session(format!("s{i}"), NOW + 300);
    }
    set.apply(&[many], NOW);
    let inner = set.inner.set.load();
    let entry = inner.users.get("mallory").expect("entry");
    assert!(entry.sessions.is_empty(), "collapsed");
    assert_eq!(entry.until(), NOW + 300);
    assert_eq!(entry.before, Some((NOW, NOW + 300)));
    // Every token issued so far is refused; a later sign-in works.
    assert!(set.is_revoked(&claims("mallory", "s1", NOW), NOW));
    assert!(!set.is_revoked(&claims("mallory", "new", NOW + 1), NOW + 1));
}

#[test]
fn expired_entries_are_forgotten_when_others_arrive() {
    let set = Revocations::new();
    set.apply(
        &[UserRevocations::new("alice").session("s1", NOW + 10)],
        NOW,
    );
    set.apply(
        &[UserRevocations::new("bob").session("s1", NOW + 500)],
        NOW + 20,
    );
    assert_eq!(set.users(), 1, "alice's entry expired and was dropped");
}

#[test]
fn a_fed_set_is_stale_until_synced_and_after_the_bound() {
    let set = Revocations::fed(Duration::from_secs(60));
    let token = claims("alice", "s1", NOW);
    assert_eq!(set.check(&token, NOW), SessionCheck::Unknown, "never read");
    set.mark_synced(NOW);
    assert_eq!(set.check(&token, NOW + 60), SessionCheck::Live);
    assert_eq!(set.check(&token, NOW + 61), SessionCheck::Unknown);
    set.mark_synced(NOW + 61);
    set.apply(
        &[UserRevocations::new("alice").session("s1", NOW + 300)],
        NOW,
    );
    assert_eq!(set.check(&token, NOW + 61), SessionCheck::Ended);
}

#[test]
fn a_fed_set_may_keep_serving_when_stale() {
    let set = Revocations::fed(Duration::from_secs(60)).when_stale(WhenStale::Serve);
    let token = claims("alice", "s1", NOW);
    assert_eq!(set.check(&token, NOW + 1000), SessionCheck::Live);
    assert!(!set.is_stale(NOW + 1000));
}

#[test]
fn a_local_set_is_never_stale() {
    let set = Revocations::new();
    assert!(!set.is_fed());
    assert!(!set.is_stale(u64::MAX));
    set.mark_synced(NOW);
    assert_eq!(set.synced_at(), None);
}
