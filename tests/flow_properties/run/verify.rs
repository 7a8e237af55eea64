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

    /// The proof `proof` names for challenge `ch` (`token`): a passkey assertion or a
    /// sent code asks the app for its challenge or code first.
    pub(crate) async fn resolve_proof(
        &mut self,
        proof: &Proof,
        ch: Ch,
        token: &str,
        now: u64,
    ) -> Result<Code, Violation> {
        Ok(match proof {
            Proof::Passkey(p) => self.passkey_proof(p, ch, token).await?,
            Proof::Sent(p) => self.sent_proof(p, ch, token).await?,
            _ => self.code_proof(proof, self.m.ch_user(ch), now),
        })
    }

    /// A typed proof: a TOTP code, a recovery code or a replay.
    pub(crate) fn code_proof(&self, proof: &Proof, ch_user: Option<User>, now: u64) -> Code {
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
            Proof::Passkey(_) | Proof::Sent(_) => Code::Totp(self.m.wrong_code(now)),
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
        let code = self.resolve_proof(proof, ch, &token, now).await?;
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
                let (amr, acr, family) = self.accept(user, &code, ch, now)?;
                let source = Source::Verify { amr, acr, family };
                return self.session_from(&r, user, source, now);
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
        match self.m.eval(user, code, ch, now) {
            Match::Nothing => {
                // A code sent or an assertion made for a challenge, consumed there, and
                // accepted again here.
                let twice = match code {
                    Code::Sent(c) | Code::Totp(c) => {
                        self.m.ledger.sent_codes.contains(&(user, c.clone()))
                    }
                    Code::Passkey { id, .. } => self.m.ledger.assertions.contains(id),
                    _ => false,
                };
                ensure!(
                    !twice,
                    NO_CODE_TWICE,
                    "{user:?} got a session for {code:?} on {ch:?}, a proof consumed before"
                );
                return Err(violation(
                    NO_ACCESS,
                    format!(
                        "{user:?} got a session for {code:?} on {ch:?}, which is none of their \
                         proofs for this challenge now (any factor: {})",
                        self.m.has_factor(user)
                    ),
                ));
            }
            Match::Sent { jti } => ensure!(
                !self.m.ledger.sent_used.contains(&jti),
                NO_CODE_TWICE,
                "the code sent for {ch:?} of {user:?} ({code:?}) was accepted a second time"
            ),
            Match::Passkey { jti, .. } => ensure!(
                !self.m.ledger.passkeys_used.contains(&jti),
                NO_CODE_TWICE,
                "a passkey assertion for {ch:?} of {user:?} was accepted a second time"
            ),
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
    /// The user of challenge `ch` if its token opens now (`src/complete/challenged.rs`,
    /// for verify, a passkey challenge and a send alike), or the refusal.
    pub(crate) fn open_challenge(&self, ch: Ch, now: u64) -> Result<User, Want> {
        match ch {
            Ch::Bogus => Err(Want::err(400, "mfa_token_invalid", MODEL)),
            Ch::Partial(i) => {
                let p = &self.m.partials[i];
                if now >= p.exp + LEEWAY {
                    return Err(Want::err(401, "mfa_token_expired", MODEL));
                }
                Ok(p.user)
            }
            Ch::Mfa(i) => {
                let t = &self.m.mfa_tokens[i];
                if now >= t.exp {
                    return Err(Want::err(401, "mfa_token_expired", MODEL));
                }
                Ok(t.user)
            }
        }
    }

    pub(crate) fn predict_verify(
        &mut self,
        ch: Ch,
        code: &Code,
        beside: Option<usize>,
        now: u64,
    ) -> Result<User, Want> {
        let user = self.open_challenge(ch, now)?;
        if let (Ch::Mfa(i), Some(b)) = (ch, beside) {
            let (t, a) = (&self.m.mfa_tokens[i], &self.m.access[b]);
            if now < a.exp + LEEWAY && !(a.user == t.user && a.sid == t.sid) {
                return Err(Want::err(400, "mfa_token_invalid", MODEL));
            }
        }
        // The lockout first (DESIGN §4), then a factor at all (nothing reserved without
        // one), then the spent token.
        if let Some(want) = self.m.locked_want(user, now) {
            return Err(want);
        }
        if !self.m.has_factor(user) {
            return Err(Want::err(400, "invalid_request", NO_ACCESS));
        }
        if self.m.ch_used(ch) {
            return Err(Want::err(404, "mfa_token_not_found", ONCE));
        }
        // An unreadable assertion is the client's error, and costs nothing, where there
        // is a pending challenge to read it against.
        if *code == Code::Malformed && self.m.malformed_is_read(user, ch, now) {
            return Err(Want::err(400, "invalid_request", LOCKOUT_HOLDS));
        }
        if !self.m.fresh(user, code, ch, now) {
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
        match self.m.eval(user, code, ch, now) {
            Match::Step { secret, step } => {
                self.m.ledger.steps.insert((user, secret, step));
                let u = self.m.user_mut(user);
                u.last_step = Some(u.last_step.map_or(step, |last| last.max(step)));
            }
            Match::Recovery(c) => {
                self.m.ledger.recovery.insert((user, c));
            }
            Match::Sent { jti } => {
                self.m.ledger.sent_used.insert(jti);
                if let Code::Sent(c) | Code::Totp(c) = code {
                    self.m.ledger.sent_codes.insert((user, c.clone()));
                }
            }
            Match::Passkey { jti, .. } => {
                self.m.ledger.passkeys_used.insert(jti);
                if let Code::Passkey { id, .. } = code {
                    self.m.ledger.assertions.insert(*id);
                }
            }
            Match::Nothing => return Err(violation(MODEL, "spending a code that matches nothing")),
        }
        self.m.ledger.codes.push(code.clone());
        self.m.set_used(ch, true);
        self.m.user_mut(user).attempts = AttemptState::default();
        Ok(())
    }

    /// Records an accepted code; the `amr` and `acr` the new session must have (the
    /// factor's), and the family a step-up continues.
    pub(crate) fn accept(
        &mut self,
        user: User,
        code: &Code,
        ch: Ch,
        now: u64,
    ) -> Result<(Vec<String>, &'static str, Option<usize>), Violation> {
        let (method, acr) = self.m.eval(user, code, ch, now).claims();
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
        for m in [method, "mfa"] {
            if !amr.iter().any(|x| x == m) {
                amr.push(m.to_owned());
            }
        }
        Ok((amr, acr, family))
    }

    // --- concurrent verifies ---------------------------------------------------------------
}
