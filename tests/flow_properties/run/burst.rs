//! Concurrent verifies: a burst, its allowed answers and counts, and the model re-read
//! from the store afterwards.

use crate::*;

impl Run {
    pub(crate) async fn burst(
        &mut self,
        user: User,
        n: usize,
        target: BurstTarget,
        kind: &BurstCode,
    ) -> Result<(), Violation> {
        // The challenges: fresh partial tokens, or step-up mfa_tokens of one session.
        let mut challenges: Vec<Ch> = Vec::new();
        match target {
            BurstTarget::SharedPartial | BurstTarget::OwnPartials => {
                let logins = if target == BurstTarget::SharedPartial {
                    1
                } else {
                    n
                };
                for _ in 0..logins {
                    match self.login(Who::User(user), true).await? {
                        Some(i) => challenges.push(Ch::Partial(i)),
                        None => return Ok(()),
                    }
                }
            }
            BurstTarget::StepUps => {
                let Some(a) = self.stale_session_of(user).await? else {
                    return Ok(());
                };
                for _ in 0..n {
                    let before = self.m.mfa_tokens.len();
                    let credential = Some((Credential::Access(a), self.m.access[a].token.clone()));
                    self.get_with(Route::Billing, credential).await?;
                    if self.m.mfa_tokens.len() == before {
                        return Ok(());
                    }
                    challenges.push(Ch::Mfa(before));
                }
            }
        }
        let now = self.now();
        let Some(factor) = self.m.user(user).factor.clone() else {
            // Step-ups of a user without a factor: every verify is refused.
            return self.burst_without_factor(user, challenges).await;
        };
        let last_accepted = self
            .m
            .ledger
            .codes
            .last()
            .cloned()
            .unwrap_or_else(|| Code::Totp(self.m.wrong_code(now)));
        let known = self.m.user(user).known_recovery.clone();
        // Assertions and sent codes are made for each challenge in turn, before the burst.
        let mut per_challenge: Vec<Code> = Vec::new();
        if matches!(kind, BurstCode::Passkeys | BurstCode::SentCodes) {
            for &ch in &challenges {
                let token = self.token_of(ch);
                let code = if matches!(kind, BurstCode::Passkeys) {
                    self.passkey_proof(&PasskeyProof::Right, ch, &token).await?
                } else {
                    self.sent_proof(&SentProof::Right, ch, &token).await?
                };
                per_challenge.push(code);
            }
        }
        let codes: Vec<Code> = (0..n)
            .map(|i| match kind {
                BurstCode::Right => Code::Totp(totp::code_at(&factor.secret, now / STEP)),
                BurstCode::Window => {
                    Code::Totp(code_at_delta(&factor.secret, now, i as i64 % 3 - 1))
                }
                BurstCode::Replay(ix) => self.code_proof(&Proof::Replay(*ix), Some(user), now),
                BurstCode::Recovery(ix) => self.code_proof(
                    &Proof::Recovery {
                        user: None,
                        pick: *ix,
                    },
                    Some(user),
                    now,
                ),
                BurstCode::Recoveries => Code::Recovery(
                    known
                        .get(i % known.len().max(1))
                        .cloned()
                        .unwrap_or_else(|| BOGUS_RECOVERY.to_owned()),
                ),
                BurstCode::Mixed => match i % 3 {
                    0 => Code::Totp(totp::code_at(&factor.secret, now / STEP)),
                    1 => Code::Totp(self.m.wrong_code(now)),
                    _ => last_accepted.clone(),
                },
                BurstCode::Passkeys | BurstCode::SentCodes => {
                    per_challenge[i % per_challenge.len()].clone()
                }
            })
            .collect();
        let uniform = codes.iter().all(|c| *c == codes[0]);
        let locked = self.m.user(user).attempts.locked(now);
        let code_ok = self.m.fresh(user, &codes[0], challenges[0], now);
        let ended = self.ended_session(challenges[0], now);

        let before = self.w.store.judged();
        let replies = self.fire(&challenges, &codes).await?;
        let after = self.w.store.judged();
        let judged = (after[0] - before[0], after[1] - before[1]);
        self.note(format!(
            "burst of {n} verifies of {user:?} ({target:?}, {kind:?}) with {:?} -> [{}]",
            if uniform { &codes[0..1] } else { &codes[..] },
            replies
                .iter()
                .map(Answer::short)
                .collect::<Vec<_>>()
                .join(", ")
        ));

        for (i, r) in replies.iter().enumerate() {
            let allowed = match (r.status, r.error.as_str()) {
                (200, _) | (401, "invalid_code") | (429, "too_many_attempts") => true,
                (404, "mfa_token_not_found") => target != BurstTarget::OwnPartials,
                _ => false,
            };
            ensure!(
                allowed,
                MODEL,
                "burst verify #{i}: unexpected {} {}: {}",
                r.status,
                r.error,
                r.body
            );
            if locked {
                ensure!(
                    r.status == 429,
                    LOCKOUT_HOLDS,
                    "burst verify #{i} of {user:?}, locked out: {} {}",
                    r.status,
                    r.error
                );
            }
        }
        let winners: Vec<usize> = (0..n).filter(|i| replies[*i].status == 200).collect();
        match target {
            BurstTarget::SharedPartial => ensure!(
                winners.len() <= 1,
                if uniform { NO_CODE_TWICE } else { ONCE },
                "{} of {n} concurrent verifies of one challenge succeeded",
                winners.len()
            ),
            BurstTarget::StepUps => ensure!(
                winners.len() <= 1,
                REFRESH_REUSE,
                "{} of {n} concurrent step-ups of one session succeeded: it was replaced twice",
                winners.len()
            ),
            BurstTarget::OwnPartials => {}
        }
        let duplicates = uniform && code_ok && !locked && target == BurstTarget::SharedPartial;
        self.check_reservations(user, &replies, judged, duplicates, now)?;
        // Every success, and every step-up refused because the session had ended, spent
        // its code: in index order, none twice.
        for i in 0..n {
            let ch = challenges[i % challenges.len()];
            let spent_without_session = target == BurstTarget::StepUps && replies[i].status == 404;
            if replies[i].status == 200 {
                self.check_accepted(user, &codes[i], ch, now)?;
                let (amr, acr, family) = self.accept(user, &codes[i], ch, now)?;
                let source = Source::Verify { amr, acr, family };
                self.session_from(&replies[i], user, source, now)?;
            } else if spent_without_session {
                ensure!(
                    self.m.eval(user, &codes[i], ch, now) != Match::Nothing,
                    MODEL,
                    "a step-up refused for an ended session with a code that is none of {user:?}'s"
                );
                self.check_not_consumed(user, &codes[i], ch, now)?;
                self.spend(user, &codes[i], ch, now)?;
            }
        }
        if uniform && code_ok && !locked && !ended {
            ensure!(
                winners.len() == 1,
                MODEL,
                "of {n} concurrent verifies with a right, unused code, none succeeded"
            );
        }
        if ended {
            ensure!(
                winners.is_empty(),
                REFRESH_REUSE,
                "a step-up of a revoked session opened a new one"
            );
        }
        self.resync(user, &challenges, &replies, now).await?;
        Ok(())
    }

    /// The attempt reservations of a burst (DESIGN §8.2): of any number of concurrent
    /// verifies, at most the attempts left are judged wrong (settled as failed; a success
    /// clears the count); every 429 says when to retry; of a burst of one right,
    /// unused code on one challenge, the others lost a race (404, or 429 with
    /// `Retry-After: 1`).
    pub(crate) fn check_reservations(
        &self,
        user: User,
        replies: &[Answer],
        (failed, succeeded): (usize, usize),
        duplicates_of_a_right_code: bool,
        now: u64,
    ) -> Result<(), Violation> {
        let attempts = self.m.user(user).attempts;
        let left = if attempts.locked(now) {
            0
        } else {
            MAX_ATTEMPTS.saturating_sub(attempts.current(now)) as usize
        };
        // A success clears the count: all attempts are there again after it.
        let allowed = left + succeeded * MAX_ATTEMPTS as usize;
        ensure!(
            failed <= allowed,
            RESERVATIONS,
            "{failed} wrong codes of {user:?} judged in one burst with {left} attempts left \
             ({succeeded} right ones)"
        );
        for r in replies.iter().filter(|r| r.status == 429) {
            ensure!(
                r.retry_after.is_some(),
                RESERVATIONS,
                "a 429 without Retry-After: {}",
                r.body
            );
        }
        if duplicates_of_a_right_code {
            for r in replies.iter().filter(|r| r.status != 200) {
                let lost_race = r.status == 404 || r.retry_after == Some(1);
                // (The challenge is spent once, so a duplicate is never judged.)
                ensure!(
                    lost_race,
                    ONCE,
                    "a duplicate of a right code was answered {} {} (not a lost race)",
                    r.status,
                    r.error
                );
            }
        }
        Ok(())
    }

    /// `n` concurrent verifies: challenge `i % len` with code `i`, released together.
    pub(crate) async fn fire(
        &self,
        challenges: &[Ch],
        codes: &[Code],
    ) -> Result<Vec<Answer>, Violation> {
        let reqs = codes
            .iter()
            .enumerate()
            .map(|(i, code)| {
                let token = self.token_of(challenges[i % challenges.len()]);
                verify_req(&token, code, false, None)
            })
            .collect();
        send_together(&self.w.app, reqs, "verify").await
    }

    /// The token of challenge `ch`.
    pub(crate) fn token_of(&self, ch: Ch) -> String {
        match ch {
            Ch::Partial(c) => self.m.partials[c].token.clone(),
            Ch::Mfa(c) => self.m.mfa_tokens[c].token.clone(),
            Ch::Bogus => String::new(),
        }
    }

    /// Step-ups of a user without a factor, all at once: each is refused.
    pub(crate) async fn burst_without_factor(
        &mut self,
        user: User,
        challenges: Vec<Ch>,
    ) -> Result<(), Violation> {
        let now = self.now();
        let code = Code::Totp(self.m.wrong_code(now));
        let codes = vec![code; challenges.len()];
        let replies = self.fire(&challenges, &codes).await?;
        self.note(format!(
            "burst of {} step-ups of {user:?} (no factor) -> [{}]",
            codes.len(),
            replies
                .iter()
                .map(Answer::short)
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let want = match self.m.locked_want(user, now) {
            Some(want) => want,
            None => Want::err(400, "invalid_request", NO_ACCESS),
        };
        for r in &replies {
            self.compare("step-up without a factor", want, r)?;
        }
        Ok(())
    }

    /// The property of a code the server consumed without opening a session.
    pub(crate) fn check_not_consumed(
        &self,
        user: User,
        code: &Code,
        ch: Ch,
        now: u64,
    ) -> Result<(), Violation> {
        match self.m.eval(user, code, ch, now) {
            Match::Step { secret, step } => ensure!(
                !self.m.ledger.steps.contains(&(user, secret, step)),
                NO_CODE_TWICE,
                "the TOTP code of step {step} of {user:?} was consumed a second time"
            ),
            Match::Recovery(c) => ensure!(
                !self.m.ledger.recovery.contains(&(user, c.clone())),
                NO_CODE_TWICE,
                "the recovery code {c} of {user:?} was consumed a second time"
            ),
            Match::Sent { jti } => ensure!(
                !self.m.ledger.sent_used.contains(&jti),
                NO_CODE_TWICE,
                "the code sent for {ch:?} of {user:?} was consumed a second time"
            ),
            Match::Passkey { jti, .. } => ensure!(
                !self.m.ledger.passkeys_used.contains(&jti),
                NO_CODE_TWICE,
                "an assertion for {ch:?} of {user:?} was consumed a second time"
            ),
            Match::Nothing => {}
        }
        Ok(())
    }

    /// After a burst, the interleaving decided the failure count and which challenges
    /// died: read them back from the store.
    pub(crate) async fn resync(
        &mut self,
        user: User,
        challenges: &[Ch],
        replies: &[Answer],
        now: u64,
    ) -> Result<(), Violation> {
        let failed = replies.iter().any(|r| r.status == 401);
        let stored = self.w.store.attempts(user.name(), now).await.unwrap();
        ensure!(
            stored.failures <= MAX_ATTEMPTS,
            LOCKOUT_HOLDS,
            "{} failures counted for {user:?}",
            stored.failures
        );
        let model = &mut self.m.user_mut(user).attempts;
        *model = match stored.locked_until {
            Some(until) => AttemptState {
                failures: stored.failures,
                window_until: 0,
                locked_until: Some(until),
            },
            None if stored.failures == 0 => AttemptState::default(),
            None => AttemptState {
                failures: stored.failures,
                window_until: if failed {
                    now + WINDOW
                } else {
                    model.window_until
                },
                locked_until: None,
            },
        };
        for &ch in challenges {
            let key = format!("jti:{}", self.m.ch_jti(ch).unwrap_or_default());
            let used = self.w.store.is_consumed(&key, now).await.unwrap();
            if self.m.ch_used(ch) {
                ensure!(used, ONCE, "a spent challenge is usable again");
            }
            self.m.set_used(ch, used);
        }
        Ok(())
    }

    // --- the layer ------------------------------------------------------------------------
}
