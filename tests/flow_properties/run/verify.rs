//! Verify: resolving the challenge and proof an operation names, predicting the answer,
//! and spending codes and challenges in the model.

use crate::*;

impl Run {
    pub(crate) async fn resolve_challenge(
        &mut self,
        challenge: &Challenge,
    ) -> Result<Option<(Ch, String)>, Violation> {
        Ok(match challenge {
            Challenge::Fresh(user) => match self.login(Who::User(*user), true).await? {
                Some(i) => Some((Ch::Partial(i), self.m.partials[i].token.clone())),
                None => None,
            },
            Challenge::Latest => self
                .m
                .partials
                .len()
                .checked_sub(1)
                .map(|i| (Ch::Partial(i), self.m.partials[i].token.clone())),
            Challenge::Partial(ix) => (!self.m.partials.is_empty()).then(|| {
                let i = ix.index(self.m.partials.len());
                (Ch::Partial(i), self.m.partials[i].token.clone())
            }),
            Challenge::MfaToken(ix) => (!self.m.mfa_tokens.is_empty()).then(|| {
                let i = ix.index(self.m.mfa_tokens.len());
                (Ch::Mfa(i), self.m.mfa_tokens[i].token.clone())
            }),
            Challenge::AccessToken(ix) => (!self.m.access.is_empty()).then(|| {
                (
                    Ch::Bogus,
                    self.m.access[ix.index(self.m.access.len())].token.clone(),
                )
            }),
            Challenge::Forged(user) => {
                let forged = self
                    .w
                    .forger
                    .issue_partial(&tower_stepup::Grant::new(user.name()).amr(["pwd"]))
                    .unwrap();
                Some((Ch::Bogus, forged.token))
            }
            Challenge::Garbage => Some((Ch::Bogus, "not-a-token".to_owned())),
        })
    }

    pub(crate) fn resolve_proof(&self, proof: &Proof, ch_user: Option<User>, now: u64) -> Code {
        match proof {
            Proof::Totp { user, delta } => {
                let u = self.m.user(user.or(ch_user).unwrap_or(User::Alice));
                let secret = u
                    .factor
                    .as_ref()
                    .map(|f| &f.secret)
                    .or(u.pending.as_ref().map(|p| &p.secret));
                match secret {
                    Some(secret) => Code::Totp(code_at_delta(secret, now, *delta)),
                    None => Code::Totp(self.m.wrong_code(now)),
                }
            }
            Proof::Wrong => Code::Totp(self.m.wrong_code(now)),
            Proof::Replay(ix) => {
                let codes = &self.m.ledger.codes;
                if codes.is_empty() {
                    Code::Totp(self.m.wrong_code(now))
                } else {
                    codes[ix.index(codes.len())].clone()
                }
            }
            Proof::Recovery { user, pick } => {
                let known = &self
                    .m
                    .user(user.or(ch_user).unwrap_or(User::Carol))
                    .known_recovery;
                if known.is_empty() {
                    Code::Recovery(BOGUS_RECOVERY.to_owned())
                } else {
                    Code::Recovery(known[pick.index(known.len())].clone())
                }
            }
        }
    }

    pub(crate) fn pick_access(&self, pick: &AccessPick) -> Option<usize> {
        match pick {
            AccessPick::Latest(user) => self
                .m
                .access
                .iter()
                .rposition(|a| a.user == *user)
                .or(self.m.access.len().checked_sub(1)),
            AccessPick::Any(ix) => {
                (!self.m.access.is_empty()).then(|| ix.index(self.m.access.len()))
            }
        }
    }

    pub(crate) async fn verify(
        &mut self,
        challenge: &Challenge,
        proof: &Proof,
        as_bearer: bool,
        beside: Option<&AccessPick>,
    ) -> Result<(), Violation> {
        let Some((ch, token)) = self.resolve_challenge(challenge).await? else {
            self.note(format!("verify {challenge:?}: nothing to present, skipped"));
            return Ok(());
        };
        let beside = if as_bearer {
            None
        } else {
            beside.and_then(|p| self.pick_access(p))
        };
        self.verify_with(ch, token, proof, as_bearer, beside).await
    }

    pub(crate) async fn verify_with(
        &mut self,
        ch: Ch,
        token: String,
        proof: &Proof,
        as_bearer: bool,
        beside: Option<usize>,
    ) -> Result<(), Violation> {
        let now = self.now();
        let code = self.resolve_proof(proof, self.m.ch_user(ch), now);
        let beside_token = beside.map(|i| self.m.access[i].token.clone());
        let r = send(
            &self.w.app,
            verify_req(&token, &code, as_bearer, beside_token.as_deref()),
        )
        .await;
        self.note(format!(
            "verify {ch:?} of {:?} with {code:?}{}{} -> {}",
            self.m.ch_user(ch),
            if as_bearer { " (token as Bearer)" } else { "" },
            beside.map_or(String::new(), |i| format!(" beside access #{i}")),
            r.short()
        ));

        // The properties, on a success, before the prediction.
        if r.status == 200 {
            let Some(user) = self.m.ch_user(ch) else {
                return Err(violation(
                    NO_ACCESS,
                    format!(
                        "verify with a token that is no challenge opened a session: {}",
                        r.body
                    ),
                ));
            };
            self.check_accepted(user, &code, ch, now)?;
        }

        let want = match self.predict_verify(ch, &code, beside, now) {
            Ok(user) => {
                self.compare("verify", Want::status(200), &r)?;
                let (amr, family) = self.accept(user, &code, ch, now)?;
                return self.session_from(&r, user, Source::Verify { amr, family }, now);
            }
            Err(want) => want,
        };
        self.compare("verify", want, &r)
    }

    /// The properties of an accepted code, before the ledger records it.
    pub(crate) fn check_accepted(
        &self,
        user: User,
        code: &Code,
        ch: Ch,
        now: u64,
    ) -> Result<(), Violation> {
        match self.m.eval(user, code, now) {
            Match::Nothing => {
                return Err(violation(
                    NO_ACCESS,
                    format!(
                        "{user:?} got a session for {code:?}, which is none of their codes now \
                         (factor: {})",
                        self.m.user(user).factor.is_some()
                    ),
                ))
            }
            Match::Step { secret, step } => ensure!(
                !self.m.ledger.steps.contains(&(user, secret, step)),
                NO_CODE_TWICE,
                "the TOTP code of step {step} of {user:?} ({code:?}) was accepted a second time"
            ),
            Match::Recovery(c) => ensure!(
                !self.m.ledger.recovery.contains(&(user, c.clone())),
                NO_CODE_TWICE,
                "the recovery code {c} of {user:?} was accepted a second time"
            ),
        }
        let attempts = self.m.user(user).attempts;
        ensure!(
            !attempts.locked(now),
            LOCKOUT_HOLDS,
            "{user:?} got a session while locked out until t+{}",
            attempts.locked_until.unwrap_or_default() - self.w.start
        );
        if let Some(jti) = self.m.ch_jti(ch) {
            ensure!(
                !self.m.ledger.completed.contains(&jti),
                ONCE,
                "the challenge {ch:?} opened a second session"
            );
        }
        ensure!(
            !self.ended_session(ch, now),
            REFRESH_REUSE,
            "a step-up of a revoked session (logged out, reused or stepped up before) opened \
             a new one"
        );
        Ok(())
    }

    /// The predicted outcome of a verify: `Ok(user)` for a success (applied by
    /// [`Run::accept`]), or the refusal (already applied to the model).
    pub(crate) fn predict_verify(
        &mut self,
        ch: Ch,
        code: &Code,
        beside: Option<usize>,
        now: u64,
    ) -> Result<User, Want> {
        let user = match ch {
            Ch::Bogus => return Err(Want::err(400, "mfa_token_invalid", MODEL)),
            Ch::Partial(i) => {
                let p = &self.m.partials[i];
                if now >= p.exp + LEEWAY {
                    return Err(Want::err(401, "mfa_token_expired", MODEL));
                }
                p.user
            }
            Ch::Mfa(i) => {
                let t = &self.m.mfa_tokens[i];
                if now >= t.exp {
                    return Err(Want::err(401, "mfa_token_expired", MODEL));
                }
                if let Some(b) = beside {
                    let a = &self.m.access[b];
                    if now < a.exp + LEEWAY && !(a.user == t.user && a.sid == t.sid) {
                        return Err(Want::err(400, "mfa_token_invalid", MODEL));
                    }
                }
                t.user
            }
        };
        if self.m.user(user).factor.is_none() {
            return Err(Want::err(400, "invalid_request", NO_ACCESS));
        }
        if let Some(want) = self.m.locked_want(user, now) {
            return Err(want);
        }
        if self.m.ch_used(ch) {
            return Err(Want::err(404, "mfa_token_not_found", ONCE));
        }
        if !self.m.fresh(user, code, now) {
            return Err(self.m.fail(user, Some(ch), now));
        }
        if self.ended_session(ch, now) {
            // The code and the challenge are spent, but no session opens.
            self.spend(user, code, ch, now)
                .map_err(|_| Want::err(500, "model", MODEL))?;
            return Err(Want::err(404, "mfa_token_not_found", REFRESH_REUSE));
        }
        Ok(user)
    }

    /// Whether `ch` is a step-up of a session that has ended (revoked, or past its
    /// absolute end: a step-up cannot revive it nor extend its life), or that was stepped
    /// up since `ch` was issued (the challenge is stale).
    pub(crate) fn ended_session(&self, ch: Ch, now: u64) -> bool {
        let Ch::Mfa(i) = ch else {
            return false;
        };
        let t = &self.m.mfa_tokens[i];
        self.m.family_of_sid(&t.sid).is_none_or(|f| {
            let fam = &self.m.families[f];
            fam.revoked || now >= fam.expires_at || fam.elevated_at >= t.iat
        })
    }

    /// Records a code the server consumed, and the challenge it spent.
    pub(crate) fn spend(
        &mut self,
        user: User,
        code: &Code,
        ch: Ch,
        now: u64,
    ) -> Result<(), Violation> {
        match self.m.eval(user, code, now) {
            Match::Step { secret, step } => {
                self.m.ledger.steps.insert((user, secret, step));
                let u = self.m.user_mut(user);
                u.last_step = Some(u.last_step.map_or(step, |last| last.max(step)));
            }
            Match::Recovery(c) => {
                self.m.ledger.recovery.insert((user, c));
            }
            Match::Nothing => return Err(violation(MODEL, "spending a code that matches nothing")),
        }
        self.m.ledger.codes.push(code.clone());
        self.m.set_used(ch, true);
        self.m.user_mut(user).attempts = AttemptState::default();
        Ok(())
    }

    /// Records an accepted code; the `amr` the new session must have.
    pub(crate) fn accept(
        &mut self,
        user: User,
        code: &Code,
        ch: Ch,
        now: u64,
    ) -> Result<(Vec<String>, Option<usize>), Violation> {
        self.spend(user, code, ch, now)?;
        if let Some(jti) = self.m.ch_jti(ch) {
            self.m.ledger.completed.insert(jti);
        }
        let (mut amr, family) = match ch {
            Ch::Mfa(i) => {
                let t = &self.m.mfa_tokens[i];
                // The step-up continues the session that asked for it.
                (t.amr.clone(), self.m.family_of_sid(&t.sid))
            }
            _ => (vec!["pwd".to_owned()], None),
        };
        for m in ["otp", "mfa"] {
            if !amr.iter().any(|x| x == m) {
                amr.push(m.to_owned());
            }
        }
        Ok((amr, family))
    }

    // --- concurrent verifies ---------------------------------------------------------------
}
