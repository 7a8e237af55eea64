//! The other second factors, as a verify presents them: a passkey assertion (after
//! `POST /auth/passkey/challenge`, answered by a software authenticator) and a code sent
//! by `POST /auth/mfa/send` (read from the capturing sender). Both endpoints are
//! predicted too: the challenge token opens as at verify; a user without a passkey is
//! `400`; a send needs an email factor (`400`) and a send left within the limit (`429`
//! with `Retry-After`).

use crate::*;

/// How long a passkey challenge waits at most (`src/complete/passkey.rs`).
const CEREMONY_SECS: u64 = 300;

impl Run {
    /// `POST /auth/passkey/challenge` for `token` (challenge `ch`): the options and the
    /// pending challenge's serial on a `200`.
    pub(crate) async fn passkey_challenge(
        &mut self,
        ch: Ch,
        token: &str,
    ) -> Result<Option<(Value, u32)>, Violation> {
        let now = self.now();
        let body = json!({ "mfa_token": token });
        let r = send(&self.w.app, post("/auth/passkey/challenge", &body, None)).await;
        self.note(format!(
            "passkey-challenge {ch:?} of {:?} -> {}",
            self.m.ch_user(ch),
            r.short()
        ));
        let user = match self.open_challenge(ch, now) {
            Err(want) => return self.compare("passkey challenge", want, &r).map(|()| None),
            Ok(user) if self.m.user(user).passkey.is_none() => {
                let want = Want::err(400, "invalid_request", MODEL);
                return self.compare("passkey challenge", want, &r).map(|()| None);
            }
            Ok(user) => user,
        };
        self.compare("passkey challenge", Want::status(200), &r)?;
        ensure!(
            r.body["publicKey"]["challenge"].is_string(),
            MODEL,
            "passkey request options: {}",
            r.body
        );
        let serial = self.m.next_serial;
        self.m.next_serial += 1;
        let (Some(jti), Some(expiry)) = (self.m.ch_jti(ch), self.m.ch_expiry(ch)) else {
            return Err(violation(MODEL, "a challenge for no challenge token"));
        };
        // One pending challenge per user: this one replaces any other.
        self.m.user_mut(user).passkey_pending = Some(PasskeyPending {
            jti,
            serial,
            expires_at: expiry.min(now + CEREMONY_SECS),
        });
        Ok(Some((r.body, serial)))
    }

    /// An assertion of challenge `serial` (its `options`): by `user`'s registered
    /// authenticator, or by the stranger's (whose browser names its own credential in
    /// `allowCredentials`).
    pub(crate) async fn assertion(
        &mut self,
        user: User,
        options: &Value,
        serial: u32,
        registered: bool,
    ) -> Result<Code, Violation> {
        let answered = if registered {
            let Some(key) = self.keys.of(user) else {
                return Ok(Code::Malformed);
            };
            key.authenticate(options).await
        } else {
            let mut options = options.clone();
            options["publicKey"]["allowCredentials"] =
                json!([{ "type": "public-key", "id": self.keys.stranger_id }]);
            self.keys.stranger.authenticate(&options).await
        };
        let json = answered
            .map_err(|e| violation(MODEL, format!("the authenticator did not answer: {e}")))?
            .to_string();
        self.m.assertions.push(Assertion {
            user,
            serial,
            registered,
            json: json.clone(),
        });
        Ok(Code::Passkey {
            id: self.m.assertions.len() - 1,
            json,
        })
    }

    /// The assertion `proof` names for challenge `ch` (`token`).
    pub(crate) async fn passkey_proof(
        &mut self,
        proof: &PasskeyProof,
        ch: Ch,
        token: &str,
    ) -> Result<Code, Violation> {
        let user = self.m.ch_user(ch).unwrap_or(User::Alice);
        match proof {
            PasskeyProof::Right | PasskeyProof::Unregistered => {
                let registered = matches!(proof, PasskeyProof::Right);
                match self.passkey_challenge(ch, token).await? {
                    Some((options, serial)) => {
                        self.assertion(user, &options, serial, registered).await
                    }
                    // No options to answer: the verify is refused before any proof.
                    None => Ok(Code::Malformed),
                }
            }
            PasskeyProof::OtherChallenge => {
                let Some(i) = self.login(Who::User(user), true).await? else {
                    return Ok(Code::Malformed);
                };
                let other = self.m.partials[i].token.clone();
                match self.passkey_challenge(Ch::Partial(i), &other).await? {
                    Some((options, serial)) => self.assertion(user, &options, serial, true).await,
                    None => Ok(Code::Malformed),
                }
            }
            PasskeyProof::Replay(ix) => {
                let made = &self.m.assertions;
                if made.is_empty() {
                    return Ok(Code::Malformed);
                }
                let id = ix.index(made.len());
                Ok(Code::Passkey {
                    id,
                    json: made[id].json.clone(),
                })
            }
            PasskeyProof::Malformed { challenged } => {
                if *challenged {
                    self.passkey_challenge(ch, token).await?;
                }
                Ok(Code::Malformed)
            }
        }
    }

    /// `POST /auth/mfa/send` for `token` (challenge `ch`), by email or SMS: the code
    /// sent, on a `204`.
    pub(crate) async fn send_code(
        &mut self,
        ch: Ch,
        token: &str,
        sms: bool,
    ) -> Result<Option<String>, Violation> {
        let now = self.now();
        let channel = if sms { "sms" } else { "email" };
        let before = self.w.sender.count();
        let body = json!({ "mfa_token": token, "channel": channel });
        let r = send(&self.w.app, post("/auth/mfa/send", &body, None)).await;
        self.note(format!(
            "send {channel} for {ch:?} of {:?} -> {}",
            self.m.ch_user(ch),
            r.short()
        ));
        let sent = self.w.sender.count() > before;
        let user = match self.predict_send(ch, sms, now) {
            Err(want) => {
                self.compare("send", want, &r)?;
                ensure!(!sent, MODEL, "a refused send sent a code");
                return Ok(None);
            }
            Ok(user) => user,
        };
        self.compare("send", Want::status(204), &r)?;
        let code = self
            .w
            .sender
            .last(user.name())
            .filter(|_| sent)
            .ok_or_else(|| violation(MODEL, "a 204 of send, but no code was sent"))?;
        let (Some(jti), Some(expiry)) = (self.m.ch_jti(ch), self.m.ch_expiry(ch)) else {
            return Err(violation(MODEL, "a code sent for no challenge token"));
        };
        // The code replaces any sent for this challenge before; it dies with the
        // challenge if that is sooner than its own life.
        let expires_at = expiry.min(now + SENT_CODE_TTL);
        self.m.sent.insert(
            jti.clone(),
            SentCode {
                code: code.clone(),
                expires_at,
            },
        );
        self.m.sent_log.push((user, jti, code.clone()));
        Ok(Some(code))
    }

    /// The answer of a send (`src/complete/send.rs`): the token → a factor of the
    /// channel → the send limit, counted when it allows the send.
    fn predict_send(&mut self, ch: Ch, sms: bool, now: u64) -> Result<User, Want> {
        let user = self.open_challenge(ch, now)?;
        if sms || !self.m.user(user).email {
            return Err(Want::err(400, "invalid_request", MODEL));
        }
        let sends = &mut self.m.user_mut(user).sends;
        if let Some(until) = sends.locked_until.filter(|_| sends.locked(now)) {
            return Err(Want {
                retry_after: Some((until - now).max(1)),
                ..Want::err(429, "too_many_attempts", MODEL)
            });
        }
        sends.record(SEND_POLICY, now);
        Ok(user)
    }

    /// The code pending for challenge `ch`, if one was sent and lives; else a wrong one.
    fn pending_or_wrong(&self, ch: Ch, now: u64) -> Code {
        let pending = self
            .m
            .ch_jti(ch)
            .and_then(|jti| self.m.sent.get(&jti))
            .filter(|s| now < s.expires_at)
            .map(|s| s.code.clone());
        Code::Sent(pending.unwrap_or_else(|| self.m.wrong_code(now)))
    }

    /// The sent code `proof` names for challenge `ch` (`token`).
    pub(crate) async fn sent_proof(
        &mut self,
        proof: &SentProof,
        ch: Ch,
        token: &str,
    ) -> Result<Code, Violation> {
        let now = self.now();
        Ok(match proof {
            SentProof::Right => match self.send_code(ch, token, false).await? {
                Some(code) => Code::Sent(code),
                None => self.pending_or_wrong(ch, now),
            },
            SentProof::Stale => {
                let first = self.send_code(ch, token, false).await?;
                self.send_code(ch, token, false).await?;
                match first {
                    Some(code) => Code::Sent(code),
                    None => self.pending_or_wrong(ch, now),
                }
            }
            SentProof::OtherChallenge => {
                let user = self.m.ch_user(ch).unwrap_or(User::Alice);
                let Some(i) = self.login(Who::User(user), true).await? else {
                    return Ok(self.pending_or_wrong(ch, now));
                };
                let other = self.m.partials[i].token.clone();
                match self.send_code(Ch::Partial(i), &other, false).await? {
                    Some(code) => Code::Sent(code),
                    None => Code::Sent(self.m.wrong_code(now)),
                }
            }
            SentProof::Replay(ix) => {
                let log = &self.m.sent_log;
                if log.is_empty() {
                    Code::Sent(self.m.wrong_code(now))
                } else {
                    Code::Sent(log[ix.index(log.len())].2.clone())
                }
            }
            SentProof::Sms => {
                self.send_code(ch, token, true).await?;
                self.pending_or_wrong(ch, now)
            }
        })
    }
}
