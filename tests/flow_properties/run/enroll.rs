//! Enroll and confirm: a first factor, or a re-enrollment behind a step-up.

use crate::*;

impl Run {
    /// The layer and the recent-authentication rule of enroll, confirm and `DELETE
    /// /auth/sessions/{id}` (`src/complete/recent.rs`): `Ok(access index)` or the answer
    /// (the caller records a step-up).
    pub(crate) fn recent_auth(&self, kind: Option<Credential>, now: u64) -> Result<usize, Want> {
        let a = self.layer_auth(kind, now)?;
        let user = self.m.access[a].user;
        if self.m.has_factor(user) && !self.stepped_up(a, now) {
            return Err(Want::err(403, "mfa_required", MODEL));
        }
        // A first factor needs a recent authentication (DESIGN §8.2).
        if now - self.m.access[a].auth_time > MAX_AGE {
            return Err(Want::err(403, "reauthentication_required", MODEL));
        }
        Ok(a)
    }

    /// Starts an enrollment; whether it started.
    pub(crate) async fn enroll(&mut self, cred: &Cred) -> Result<bool, Violation> {
        let Some(credential) = self.cred_token(cred) else {
            self.note(format!("enroll {cred:?}: nothing to present, skipped"));
            return Ok(false);
        };
        let now = self.now();
        let r = send(
            &self.w.app,
            post(
                "/auth/mfa/enroll",
                &json!({}),
                credential.as_ref().map(|(_, t)| t.as_str()),
            ),
        )
        .await;
        let kind = credential.as_ref().map(|(k, _)| *k);
        self.note(format!("enroll with {kind:?} -> {}", r.short()));
        let a = match self.recent_auth(kind, now) {
            Err(want) => {
                self.compare("enroll", want, &r)?;
                if want.error == "mfa_required" {
                    let a = self.pick_from(kind);
                    self.record_mfa_token(&r, a, now)?;
                }
                return Ok(false);
            }
            Ok(a) => a,
        };
        self.compare("enroll", Want::status(200), &r)?;
        let secret = TotpSecret::from_base32(&r.str("secret")?)
            .map_err(|e| violation(MODEL, format!("enroll secret: {e}")))?;
        let id = self.m.next_secret_id;
        self.m.next_secret_id += 1;
        let user = self.m.access[a].user;
        let u = self.m.user_mut(user);
        u.pending = Some(Pending {
            secret,
            id,
            expires_at: now + ENROLL_TTL,
        });
        u.confirmed_until = None;
        Ok(true)
    }

    pub(crate) fn pick_from(&self, kind: Option<Credential>) -> usize {
        match kind {
            Some(Credential::Access(i)) => i,
            _ => unreachable!("a step-up answers only to an access token"),
        }
    }

    pub(crate) async fn confirm(
        &mut self,
        cred: &Cred,
        code: &ConfirmCode,
    ) -> Result<(), Violation> {
        let Some(credential) = self.cred_token(cred) else {
            self.note(format!("confirm {cred:?}: nothing to present, skipped"));
            return Ok(());
        };
        let now = self.now();
        let kind = credential.as_ref().map(|(k, _)| *k);
        // The user the code is for: the access token's, if any.
        let user = match kind {
            Some(Credential::Access(i)) => Some(self.m.access[i].user),
            _ => None,
        };
        let pending = user.and_then(|u| self.m.user(u).pending.clone());
        let code_str = match (code, user) {
            (ConfirmCode::Pending(delta), _) => match &pending {
                Some(p) => code_at_delta(&p.secret, now, *delta),
                None => self.m.wrong_code(now),
            },
            (ConfirmCode::Current, Some(u)) => match &self.m.user(u).factor {
                Some(f) => totp::code_at(&f.secret, now / STEP),
                None => self.m.wrong_code(now),
            },
            _ => self.m.wrong_code(now),
        };
        let r = send(
            &self.w.app,
            post(
                "/auth/mfa/enroll/confirm",
                &json!({ "code": code_str }),
                credential.as_ref().map(|(_, t)| t.as_str()),
            ),
        )
        .await;
        self.note(format!(
            "confirm with {kind:?}, code {code_str} ({code:?}) -> {}",
            r.short()
        ));
        let matched = pending
            .as_ref()
            .filter(|p| now < p.expires_at)
            .and_then(|p| totp_match(&p.secret, &code_str, now).map(|step| (p.clone(), step)));
        if r.status == 200 {
            let user = user
                .ok_or_else(|| violation(NO_ACCESS, "confirm succeeded without an access token"))?;
            let attempts = self.m.user(user).attempts;
            ensure!(
                !attempts.locked(now),
                LOCKOUT_HOLDS,
                "{user:?} confirmed an enrollment while locked out"
            );
            if let Some((p, step)) = &matched {
                ensure!(
                    !self.m.ledger.steps.contains(&(user, p.id, *step)),
                    NO_CODE_TWICE,
                    "the confirming code of step {step} was accepted twice"
                );
            }
        }
        let a = match self.recent_auth(kind, now) {
            Err(want) => {
                self.compare("confirm", want, &r)?;
                if want.error == "mfa_required" {
                    let a = self.pick_from(kind);
                    self.record_mfa_token(&r, a, now)?;
                }
                return Ok(());
            }
            Ok(a) => a,
        };
        let user = self.m.access[a].user;
        if let Some(want) = self.m.locked_want(user, now) {
            return self.compare("confirm", want, &r);
        }
        if self.m.user(user).confirmed_until.is_some_and(|t| now < t) {
            let want = Want::err(409, "enrollment_already_confirmed", MODEL);
            return self.compare("confirm", want, &r);
        }
        if pending.as_ref().is_none_or(|p| now >= p.expires_at) {
            return self.compare("confirm", Want::err(400, "invalid_request", MODEL), &r);
        }
        let Some((p, step)) = matched else {
            let want = self.m.fail(user, None, now);
            return self.compare("confirm", want, &r);
        };
        self.compare("confirm", Want::status(200), &r)?;
        let codes: Vec<String> = r.body["recovery_codes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|c| c.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        ensure!(codes.len() == 10, MODEL, "recovery codes: {}", r.body);
        self.m.ledger.steps.insert((user, p.id, step));
        self.m.ledger.codes.push(Code::Totp(code_str));
        let u = self.m.user_mut(user);
        u.last_step = Some(u.last_step.map_or(step, |last| last.max(step)));
        u.attempts = AttemptState::default();
        u.pending = None;
        u.confirmed_until = Some(now + ENROLL_TTL);
        u.known_recovery.extend(codes.iter().cloned());
        u.factor = Some(Factor {
            secret: p.secret,
            id: p.id,
            recovery: codes,
        });
        // A change of factors ends the user's other sessions (DESIGN §8.3), with their
        // access tokens: those that were live.
        let sid = self.m.access[a].sid.clone();
        for f in 0..self.m.families.len() {
            let fam = &self.m.families[f];
            if fam.user == user && fam.sid != sid {
                self.m.end_family(f, now);
            }
        }
        Ok(())
    }
}
