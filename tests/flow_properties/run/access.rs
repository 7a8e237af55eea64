//! The protected routes: credentials, the layer's decision, step-ups.

use crate::*;

impl Run {
    pub(crate) fn cred_token(&self, cred: &Cred) -> Option<Option<(Credential, String)>> {
        Some(match cred {
            Cred::None => None,
            Cred::Access(pick) => {
                let i = self.pick_access(pick)?;
                Some((Credential::Access(i), self.m.access[i].token.clone()))
            }
            Cred::Partial(ix) => {
                let i = (!self.m.partials.is_empty()).then(|| ix.index(self.m.partials.len()))?;
                Some((Credential::Partial(i), self.m.partials[i].token.clone()))
            }
            Cred::MfaToken(ix) => {
                let i =
                    (!self.m.mfa_tokens.is_empty()).then(|| ix.index(self.m.mfa_tokens.len()))?;
                Some((Credential::Mfa, self.m.mfa_tokens[i].token.clone()))
            }
        })
    }

    /// What the layer does with a credential on an authenticated route: the access token,
    /// or the refusal.
    pub(crate) fn layer_auth(&self, cred: Option<Credential>, now: u64) -> Result<usize, Want> {
        match cred {
            None => Err(Want::err(401, "unauthorized", MODEL)),
            Some(Credential::Partial(i)) => {
                if now < self.m.partials[i].exp + LEEWAY {
                    Err(Want::err(401, "mfa_incomplete", NO_ACCESS))
                } else {
                    Err(Want::err(401, "invalid_token", NO_ACCESS))
                }
            }
            Some(Credential::Mfa) => Err(Want::err(401, "invalid_token", NO_ACCESS)),
            Some(Credential::Access(i)) => {
                // Of a session that has ended (logout, refresh reuse, a session ended
                // from the list, a change of factors), or expired.
                let a = &self.m.access[i];
                if self.m.ended.contains(&a.sid) {
                    Err(Want::err(401, "invalid_token", SESSIONS))
                } else if now >= a.exp + LEEWAY {
                    Err(Want::err(401, "invalid_token", MODEL))
                } else {
                    Ok(i)
                }
            }
        }
    }

    /// Whether access token `i` meets the step-up requirement now.
    pub(crate) fn stepped_up(&self, i: usize, now: u64) -> bool {
        let a = &self.m.access[i];
        a.amr.iter().any(|m| m == "mfa") && now - a.auth_time <= MAX_AGE
    }

    /// Records the mfa_token of a `403 mfa_required` to access token `i`.
    pub(crate) fn record_mfa_token(
        &mut self,
        r: &Answer,
        i: usize,
        now: u64,
    ) -> Result<(), Violation> {
        let token = r.str("mfa_token")?;
        let claims = self
            .w
            .guard
            .sealer()
            .unwrap()
            .open(&token, now)
            .map_err(|e| violation(MODEL, format!("the mfa_token does not open: {e}")))?;
        let a = &self.m.access[i];
        ensure!(
            claims.sub == a.user.name()
                && claims.sid.as_deref() == Some(a.sid.as_str())
                && claims.exp == now + MFA_TOKEN_TTL
                && claims.amr == a.amr
                && claims.scope.as_deref() == Some(SCOPE),
            MODEL,
            "mfa_token claims {claims:?} for access token of {:?} sid {}",
            a.user,
            a.sid
        );
        self.m.mfa_tokens.push(MfaTok {
            token,
            user: a.user,
            sid: a.sid.clone(),
            amr: a.amr.clone(),
            exp: claims.exp,
            iat: claims.iat,
            jti: claims.jti,
            used: false,
        });
        Ok(())
    }

    pub(crate) async fn get(&mut self, route: Route, cred: &Cred) -> Result<(), Violation> {
        let Some(credential) = self.cred_token(cred) else {
            self.note(format!(
                "GET {route:?} with {cred:?}: nothing to present, skipped"
            ));
            return Ok(());
        };
        self.get_with(route, credential).await
    }

    pub(crate) async fn get_with(
        &mut self,
        route: Route,
        credential: Option<(Credential, String)>,
    ) -> Result<(), Violation> {
        let now = self.now();
        let path = match route {
            Route::Me => "/api/me",
            Route::Billing => "/api/billing",
        };
        let r = send(
            &self.w.app,
            get_req(path, credential.as_ref().map(|(_, t)| t.as_str())),
        )
        .await;
        let kind = credential.as_ref().map(|(k, _)| *k);
        self.note(format!("GET {path} with {kind:?} -> {}", r.short()));
        let a = match self.layer_auth(kind, now) {
            Err(want) => return self.compare(path, want, &r),
            Ok(a) => a,
        };
        if matches!(route, Route::Billing) && !self.stepped_up(a, now) {
            self.compare(path, Want::err(403, "mfa_required", MODEL), &r)?;
            return self.record_mfa_token(&r, a, now);
        }
        self.compare(path, Want::status(200), &r)?;
        ensure!(
            r.body["sub"] == self.m.access[a].user.name(),
            MODEL,
            "{path} answered for {}",
            r.body
        );
        Ok(())
    }

    /// The latest unexpired access token of `user`; signs them in (password, then the
    /// current code) if they have none.
    pub(crate) async fn session_of(&mut self, user: User) -> Result<Option<usize>, Violation> {
        let live = |run: &Self| {
            let now = run.now();
            run.m
                .access
                .iter()
                .rposition(|a| a.user == user && now < a.exp)
        };
        if let Some(a) = live(self) {
            return Ok(Some(a));
        }
        let current = Proof::Totp {
            user: None,
            delta: 0,
        };
        self.verify(&Challenge::Fresh(user), &current, false, None)
            .await?;
        Ok(live(self))
    }

    /// A session of `user` that needs a step-up for `/api/billing`: the latest one, aged
    /// past `max_age` (the clock moves) if it is fresh.
    pub(crate) async fn stale_session_of(
        &mut self,
        user: User,
    ) -> Result<Option<usize>, Violation> {
        let Some(a) = self.session_of(user).await? else {
            self.note(format!("step-up of {user:?}: no session, skipped"));
            return Ok(None);
        };
        if self.stepped_up(a, self.now()) {
            let wait = MAX_AGE + 1 - (self.now() - self.m.access[a].auth_time);
            self.w.clock.advance(wait);
            self.note(format!("clock +{wait}"));
        }
        Ok(Some(a))
    }

    /// A step-up: `GET /api/billing` with a session older than `max_age`, then a verify
    /// of the mfa_token.
    pub(crate) async fn step_up(
        &mut self,
        user: User,
        proof: &Proof,
        beside: bool,
    ) -> Result<(), Violation> {
        let Some(a) = self.stale_session_of(user).await? else {
            return Ok(());
        };
        let before = self.m.mfa_tokens.len();
        let credential = Some((Credential::Access(a), self.m.access[a].token.clone()));
        self.get_with(Route::Billing, credential).await?;
        if self.m.mfa_tokens.len() == before {
            return Ok(());
        }
        let token = self.m.mfa_tokens[before].token.clone();
        self.verify_with(Ch::Mfa(before), token, proof, false, beside.then_some(a))
            .await
    }

    // --- refresh and logout ----------------------------------------------------------------
}
