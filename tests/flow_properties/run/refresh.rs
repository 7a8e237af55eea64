//! Refresh and logout: rotation, reuse detection, revocation.

use crate::*;

impl Run {
    pub(crate) fn pick_refresh(&self, pick: &RefreshPick) -> Option<(String, Option<usize>)> {
        match pick {
            RefreshPick::Current(ix) => (!self.m.families.is_empty()).then(|| {
                let f = ix.index(self.m.families.len());
                (self.m.families[f].tokens.last().unwrap().clone(), Some(f))
            }),
            RefreshPick::Any(ix) => (!self.m.refresh_tokens.is_empty()).then(|| {
                let (t, f) = &self.m.refresh_tokens[ix.index(self.m.refresh_tokens.len())];
                (t.clone(), Some(*f))
            }),
            RefreshPick::Unknown => Some(("A".repeat(43), None)),
        }
    }

    pub(crate) async fn refresh(&mut self, pick: &RefreshPick) -> Result<(), Violation> {
        let Some((token, family)) = self.pick_refresh(pick) else {
            self.note(format!("refresh {pick:?}: nothing to present, skipped"));
            return Ok(());
        };
        let now = self.now();
        let r = send(
            &self.w.app,
            post("/auth/refresh", &json!({ "refresh_token": token }), None),
        )
        .await;
        let current = family.is_some_and(|f| self.m.families[f].tokens.last() == Some(&token));
        self.note(format!(
            "refresh ({} token of family {family:?}) -> {}",
            if current { "current" } else { "old/unknown" },
            r.short()
        ));
        if r.status == 200 {
            let Some(f) = family else {
                return Err(violation(
                    REFRESH_REUSE,
                    "an unknown refresh token was accepted",
                ));
            };
            let fam = &self.m.families[f];
            ensure!(
                !fam.revoked,
                REFRESH_REUSE,
                "a refresh token of a revoked family (reused, logged out or stepped up) was \
                 accepted"
            );
            ensure!(
                current,
                REFRESH_REUSE,
                "a rotated refresh token was accepted again"
            );
            ensure!(
                now < fam.expires_at,
                REFRESH_REUSE,
                "a refresh token was accepted after its family's absolute lifetime"
            );
        }
        let want = match family {
            None => Want::err(400, "invalid_grant", MODEL),
            Some(f) => {
                let fam = &self.m.families[f];
                if now >= fam.expires_at || fam.revoked {
                    Want::err(400, "invalid_grant", REFRESH_REUSE)
                } else if !current {
                    // A replay of a token the family still remembers revokes it, and
                    // ends the session's access tokens; an older one is merely invalid
                    // (the store's bound per family).
                    if fam.remembers(&token) {
                        self.m.end_family(f, now);
                    }
                    Want::err(400, "invalid_grant", REFRESH_REUSE)
                } else {
                    Want {
                        rule: REFRESH_REUSE,
                        ..Want::status(200)
                    }
                }
            }
        };
        self.compare("refresh", want, &r)?;
        if let (200, Some(f)) = (want.status, family) {
            let user = self.m.families[f].user;
            self.session_from(&r, user, Source::Refresh(f), now)?;
        }
        Ok(())
    }

    /// Concurrent refreshes of one token: one rotates it, every other one presents a
    /// rotated token, which revokes the family (the new token included).
    pub(crate) async fn refresh_burst(&mut self, family: Index, n: usize) -> Result<(), Violation> {
        if self.m.families.is_empty() {
            self.note("refresh burst: no family, skipped".to_owned());
            return Ok(());
        }
        let f = family.index(self.m.families.len());
        let token = self.m.families[f].tokens.last().unwrap().clone();
        let now = self.now();
        let reqs = (0..n)
            .map(|_| post("/auth/refresh", &json!({ "refresh_token": token }), None))
            .collect();
        let replies = send_together(&self.w.app, reqs, "refresh").await?;
        self.note(format!(
            "burst of {n} refreshes of family {f} -> [{}]",
            replies
                .iter()
                .map(Answer::short)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let fam = &self.m.families[f];
        let live = !fam.revoked && now < fam.expires_at;
        let winners: Vec<usize> = (0..n).filter(|i| replies[*i].status == 200).collect();
        ensure!(
            winners.len() <= 1,
            REFRESH_REUSE,
            "{} of {n} concurrent refreshes with one token succeeded",
            winners.len()
        );
        ensure!(
            live || winners.is_empty(),
            REFRESH_REUSE,
            "a refresh token of a revoked or expired family was accepted"
        );
        for r in &replies {
            if r.status != 200 {
                self.compare(
                    "refresh burst",
                    Want::err(400, "invalid_grant", REFRESH_REUSE),
                    r,
                )?;
            }
        }
        if live {
            ensure!(
                winners.len() == 1,
                MODEL,
                "of {n} concurrent refreshes with the current token, none succeeded"
            );
            let user = self.m.families[f].user;
            self.session_from(&replies[winners[0]], user, Source::Refresh(f), now)?;
            // The others presented a rotated token: the family is revoked, and its
            // session ends.
            if n > 1 {
                self.m.end_family(f, now);
            }
        }
        Ok(())
    }

    pub(crate) async fn logout(
        &mut self,
        cred: &Cred,
        pick: &RefreshPick,
    ) -> Result<(), Violation> {
        let (Some(credential), Some((token, family))) =
            (self.cred_token(cred), self.pick_refresh(pick))
        else {
            self.note(format!(
                "logout {cred:?} {pick:?}: nothing to present, skipped"
            ));
            return Ok(());
        };
        let now = self.now();
        let r = send(
            &self.w.app,
            post(
                "/auth/logout",
                &json!({ "refresh_token": token }),
                credential.as_ref().map(|(_, t)| t.as_str()),
            ),
        )
        .await;
        let kind = credential.as_ref().map(|(k, _)| *k);
        self.note(format!(
            "logout with {kind:?}, refresh token of family {family:?} -> {}",
            r.short()
        ));
        let a = match self.layer_auth(kind, now) {
            Err(want) => return self.compare("logout", want, &r),
            Ok(a) => a,
        };
        // The caller's session ends, with its access tokens and its family.
        let sid = self.m.access[a].sid.clone();
        if let Some(f) = self.m.family_of_sid(&sid) {
            self.m.end_family(f, now);
        }
        self.m.end_sid(sid);
        // So does the session of the refresh token, if it is the caller's (DESIGN §8.3:
        // logout ends the session's access tokens too).
        if let Some(f) = family {
            let user = self.m.access[a].user;
            let fam = &self.m.families[f];
            if fam.user == user && fam.remembers(&token) {
                self.m.end_family(f, now);
            }
        }
        self.compare("logout", Want::status(204), &r)
    }

    // --- enrollment -------------------------------------------------------------------------
}
