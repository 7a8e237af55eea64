//! The sessions a user can see and end: `GET /auth/sessions`, `DELETE
//! /auth/sessions/{id}`, and the probe of every session an operation ended.

use crate::*;

/// An id of the well-formed kind that no session has.
const UNKNOWN_SID: &str = "AAAAAAAAAAAAAAAAAAAAAA";

impl Run {
    /// `GET /auth/sessions`: exactly the caller's live sessions, as the model knows them.
    pub(crate) async fn list_sessions(&mut self, cred: &Cred) -> Result<(), Violation> {
        let Some(credential) = self.cred_token(cred) else {
            self.note(format!(
                "list sessions {cred:?}: nothing to present, skipped"
            ));
            return Ok(());
        };
        let now = self.now();
        let r = send(
            &self.w.app,
            get_req(
                "/auth/sessions",
                credential.as_ref().map(|(_, t)| t.as_str()),
            ),
        )
        .await;
        let kind = credential.as_ref().map(|(k, _)| *k);
        let n = r.body["sessions"].as_array().map_or(0, Vec::len);
        self.note(format!(
            "list sessions with {kind:?} -> {} ({n} listed)",
            r.short()
        ));
        let a = match self.layer_auth(kind, now) {
            Err(want) => return self.compare("list sessions", want, &r),
            Ok(a) => a,
        };
        self.compare("list sessions", Want::status(200), &r)?;
        self.check_list(a, &r, now)
    }

    /// The list answered to access token `a`: the live families of its user (not
    /// revoked, not past their absolute end), oldest first, each exactly as the model
    /// knows it (`created_at`, `last_seen_at`, `auth_time`, `amr`), the caller's own
    /// marked `current`; no `last_seen_at` older than one listed before.
    fn check_list(&mut self, a: usize, r: &Answer, now: u64) -> Result<(), Violation> {
        let (user, current) = (self.m.access[a].user, self.m.access[a].sid.clone());
        let Some(listed) = r.body["sessions"].as_array() else {
            return Err(violation(SESSIONS, format!("no sessions: {}", r.body)));
        };
        ensure!(
            r.body["devices"] == json!([]),
            MODEL,
            "devices listed, none remembered: {}",
            r.body
        );
        let created: Vec<u64> = listed
            .iter()
            .map(|s| s["created_at"].as_u64().unwrap_or(0))
            .collect();
        ensure!(
            created.is_sorted(),
            SESSIONS,
            "the sessions of {user:?} are not oldest first: {}",
            r.body["sessions"]
        );
        let want: HashMap<String, Value> = (0..self.m.families.len())
            .filter(|&f| self.m.families[f].user == user && self.m.live(f, now))
            .map(|f| {
                let fam = &self.m.families[f];
                let entry = json!({
                    "id": fam.sid,
                    "created_at": fam.created_at,
                    "last_seen_at": fam.last_seen,
                    "auth_time": fam.auth_time,
                    "amr": fam.amr,
                    "current": fam.sid == current,
                });
                (fam.sid.clone(), entry)
            })
            .collect();
        let mut got: HashMap<String, Value> = HashMap::new();
        for s in listed {
            let id = s["id"].as_str().unwrap_or_default().to_owned();
            let seen = s["last_seen_at"].as_u64().unwrap_or(0);
            let before = self.m.listed_seen.insert(id.clone(), seen);
            ensure!(
                before.is_none_or(|b| b <= seen),
                SESSIONS,
                "session {id} was last seen at {seen}, listed at {before:?} before"
            );
            ensure!(
                got.insert(id.clone(), s.clone()).is_none(),
                SESSIONS,
                "session {id} listed twice"
            );
        }
        self.same_sessions(user, &want, &got)
    }

    /// The list property: the same ids, each listed as the model knows it.
    fn same_sessions(
        &self,
        user: User,
        want: &HashMap<String, Value>,
        got: &HashMap<String, Value>,
    ) -> Result<(), Violation> {
        for (id, entry) in got {
            let Some(expected) = want.get(id) else {
                let whose = self.m.family_of_sid(id).map(|f| {
                    let fam = &self.m.families[f];
                    (fam.user, fam.revoked, fam.expires_at - self.w.start)
                });
                return Err(violation(
                    SESSIONS,
                    format!(
                        "the list of {user:?} shows {entry}, which is not a live session of \
                         theirs (user, revoked, ends at t+: {whose:?})"
                    ),
                ));
            };
            ensure!(
                entry == expected,
                SESSIONS,
                "the list of {user:?} shows {entry}, expected {expected}"
            );
        }
        let missing: Vec<&String> = want.keys().filter(|id| !got.contains_key(*id)).collect();
        ensure!(
            missing.is_empty(),
            SESSIONS,
            "the list of {user:?} lacks the live sessions {missing:?}"
        );
        Ok(())
    }

    /// The id a `DELETE` names, and the model's family of it.
    fn pick_session(&self, target: &SessionPick, caller: Option<User>) -> (String, Option<usize>) {
        let families = &self.m.families;
        let any = |ix: &Index| (!families.is_empty()).then(|| ix.index(families.len()));
        let f = match target {
            SessionPick::Own(ix) => {
                let own: Vec<usize> = (0..families.len())
                    .filter(|&f| Some(families[f].user) == caller)
                    .collect();
                if own.is_empty() {
                    any(ix)
                } else {
                    Some(own[ix.index(own.len())])
                }
            }
            SessionPick::Any(ix) => any(ix),
            SessionPick::Unknown => None,
            SessionPick::Malformed(ix) => {
                return (
                    MALFORMED_IDS[ix.index(MALFORMED_IDS.len())].to_owned(),
                    None,
                )
            }
        };
        match f {
            Some(f) => (families[f].sid.clone(), Some(f)),
            None => (UNKNOWN_SID.to_owned(), None),
        }
    }

    /// `DELETE /auth/sessions/{id}`: after a recent authentication, `204` for a live
    /// session of the caller's (it ends, with its access tokens), else `404`; `400` for
    /// a malformed id.
    pub(crate) async fn end_session(
        &mut self,
        cred: &Cred,
        target: &SessionPick,
    ) -> Result<(), Violation> {
        let Some(credential) = self.cred_token(cred) else {
            self.note(format!("end session {cred:?}: nothing to present, skipped"));
            return Ok(());
        };
        let kind = credential.as_ref().map(|(k, _)| *k);
        let caller = match kind {
            Some(Credential::Access(i)) => Some(self.m.access[i].user),
            _ => None,
        };
        let (id, family) = self.pick_session(target, caller);
        let now = self.now();
        let mut req = Request::delete(format!("/auth/sessions/{id}"))
            .header(CONTENT_TYPE, "application/json");
        if let Some((_, token)) = &credential {
            req = req.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let r = send(&self.w.app, req.body(Body::empty()).unwrap()).await;
        self.note(format!(
            "end session {target:?} (family {family:?}) with {kind:?} -> {}",
            r.short()
        ));
        let a = match self.layer_auth(kind, now) {
            Err(want) => return self.compare("end session", want, &r),
            Ok(a) => a,
        };
        if matches!(target, SessionPick::Malformed(_)) {
            let want = Want::err(400, "invalid_request", MODEL);
            return self.compare("end session", want, &r);
        }
        if let Err(want) = self.recent_auth(kind, now) {
            self.compare("end session", want, &r)?;
            if want.error == "mfa_required" {
                self.record_mfa_token(&r, a, now)?;
            }
            return Ok(());
        }
        let user = self.m.access[a].user;
        let ours = family.filter(|&f| self.m.families[f].user == user && self.m.live(f, now));
        ensure!(
            r.status != 204 || ours.is_some(),
            SESSIONS,
            "{user:?} ended {id}, which is not a live session of theirs"
        );
        let Some(f) = ours else {
            return self.compare("end session", Want::err(404, "not_found", SESSIONS), &r);
        };
        self.compare(
            "end session",
            Want {
                rule: SESSIONS,
                ..Want::status(204)
            },
            &r,
        )?;
        self.m.end_family(f, now);
        Ok(())
    }

    /// Moves the clock to `offset` s from the absolute end of family `ix` (never back).
    pub(crate) fn near_family_end(&mut self, ix: Index, offset: i64) {
        if self.m.families.is_empty() {
            self.note("clock to a family's end: no family, skipped".to_owned());
            return;
        }
        let f = ix.index(self.m.families.len());
        let to = self.m.families[f].expires_at.saturating_add_signed(offset);
        let now = self.now();
        if to <= now {
            self.note(format!(
                "clock to family {f}'s end {offset:+}: passed, skipped"
            ));
            return;
        }
        self.w.clock.advance(to - now);
        self.note(format!("clock +{} (family {f}'s end {offset:+})", to - now));
    }

    /// Every session the last operation ended: its latest access token that has not
    /// expired (if any) is refused at once.
    pub(crate) async fn probe_endings(&mut self) -> Result<(), Violation> {
        let now = self.now();
        for sid in std::mem::take(&mut self.m.just_ended) {
            let Some(a) = self
                .m
                .access
                .iter()
                .rposition(|a| a.sid == sid && now < a.exp + LEEWAY)
            else {
                continue;
            };
            let r = send(
                &self.w.app,
                get_req("/api/me", Some(&self.m.access[a].token)),
            )
            .await;
            self.note(format!(
                "probe: GET /api/me with access #{a} of ended session -> {}",
                r.short()
            ));
            ensure!(
                r.status == 401 && r.error == "invalid_token",
                SESSIONS,
                "an access token of session {sid} was answered {} {} after the session \
                 ended: {}",
                r.status,
                r.error,
                r.body
            );
        }
        Ok(())
    }
}
