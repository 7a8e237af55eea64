//! Login: the password step, and the session or partial token it answers.

use crate::*;

impl Run {
    /// Logs in; the new partial token's index when the user has a factor.
    pub(crate) async fn login(
        &mut self,
        who: Who,
        right: bool,
    ) -> Result<Option<usize>, Violation> {
        let now = self.now();
        let (name, password) = match who {
            Who::User(u) if right => (u.name(), u.password()),
            Who::User(u) => (u.name(), "wrong-password"),
            Who::Unknown => ("mallory", "mallory-pw"),
        };
        let r = send(
            &self.w.app,
            post(
                "/auth/login",
                &json!({"username": name, "password": password}),
                None,
            ),
        )
        .await;
        self.note(format!(
            "login {name} ({} password) -> {}",
            if right { "right" } else { "wrong" },
            r.short()
        ));
        let user = match who {
            Who::User(u) if right => u,
            _ => {
                self.compare("login", Want::err(401, "invalid_credentials", MODEL), &r)?;
                return Ok(None);
            }
        };
        let has_factor = self.m.has_factor(user);
        if has_factor {
            ensure!(
                r.body.get("access_token").is_none() && r.body.get("refresh_token").is_none(),
                NO_ACCESS,
                "a login alone gave {user:?}, who has a second factor, tokens: {}",
                r.body
            );
        }
        self.compare("login", Want::status(200), &r)?;
        if !has_factor {
            self.session_from(&r, user, Source::Login, now)?;
            return Ok(None);
        }
        ensure!(
            r.body["status"] == "mfa_required" && r.body["expires_in"] == PARTIAL_TTL,
            MODEL,
            "login of {user:?}: {}",
            r.body
        );
        let token = r.str("partial_token")?;
        let verified = self
            .w
            .guard
            .verifier()
            .verify(&token, now)
            .map_err(|e| violation(MODEL, format!("the partial token does not verify: {e}")))?;
        let claims = &verified.claims;
        ensure!(
            verified.kind == TokenKind::Partial
                && claims.sub() == user.name()
                && claims.exp() == now + PARTIAL_TTL
                && claims.amr() == ["pwd"],
            MODEL,
            "partial token of {user:?}: {:?} {claims:?}",
            verified.kind
        );
        let jti = claims
            .jti()
            .ok_or_else(|| violation(MODEL, "a partial token without jti"))?
            .to_owned();
        self.m.partials.push(PartialTok {
            token,
            user,
            exp: claims.exp(),
            jti,
            used: false,
        });
        Ok(Some(self.m.partials.len() - 1))
    }

    /// Checks and records the access + refresh token of a 200.
    pub(crate) fn session_from(
        &mut self,
        r: &Answer,
        user: User,
        source: Source,
        now: u64,
    ) -> Result<(), Violation> {
        let access = r.str("access_token")?;
        let refresh = r.str("refresh_token")?;
        ensure!(
            r.body["token_type"] == "Bearer"
                && r.body["expires_in"] == ACCESS_TTL
                && r.body["scope"] == SCOPE,
            MODEL,
            "token response: {}",
            r.body
        );
        let verified = self.w.guard.verifier().verify(&access, now).map_err(|e| {
            violation(
                MODEL,
                format!("an issued access token does not verify: {e}"),
            )
        })?;
        let c = &verified.claims;
        ensure!(
            verified.kind == TokenKind::Access,
            NO_ACCESS,
            "the access token is of kind {:?}",
            verified.kind
        );
        ensure!(
            c.sub() == user.name(),
            NO_ACCESS,
            "an access token for {user:?} names {}",
            c.sub()
        );
        ensure!(
            c.exp() == now + ACCESS_TTL && c.scope() == Some(SCOPE),
            MODEL,
            "access token claims: {c:?}"
        );
        let sid = c
            .sid()
            .ok_or_else(|| violation(MODEL, "an access token without sid"))?
            .to_owned();
        let amr = c.amr().to_vec();
        let auth_time = c
            .auth_time()
            .ok_or_else(|| violation(MODEL, "an access token without auth_time"))?;
        let acr = c.acr().unwrap_or_default().to_owned();
        let family = match source {
            Source::Login => {
                ensure!(
                    !self.m.has_factor(user),
                    NO_ACCESS,
                    "a login alone gave {user:?}, who has a second factor, an access token"
                );
                ensure!(
                    amr == ["pwd"] && acr == DEFAULT_PASSWORD_ACR && auth_time == now,
                    MODEL,
                    "password session claims: {c:?}"
                );
                None
            }
            Source::Verify {
                amr: expected,
                acr: expected_acr,
                family,
            } => {
                // The factor's method and `mfa`, on top of what the challenge had; the
                // factor's level as `acr`.
                ensure!(
                    c.has_amr("mfa") && same_set(&amr, &expected),
                    NO_ACCESS,
                    "a session after a second factor has amr {amr:?}, expected {expected:?}"
                );
                ensure!(
                    acr == expected_acr,
                    NO_ACCESS,
                    "a session after a second factor has acr {acr}, expected {expected_acr}"
                );
                ensure!(auth_time == now, MODEL, "mfa session claims: {c:?}");
                self.m.ledger.mfa_sessions.insert(sid.clone(), user);
                if let Some(f) = family {
                    // A step-up continues its session: same sid, same absolute end.
                    let fam = &mut self.m.families[f];
                    ensure!(
                        sid == fam.sid,
                        REFRESH_REUSE,
                        "a step-up changed the session id: {sid} instead of {}",
                        fam.sid
                    );
                    (fam.amr, fam.acr, fam.auth_time) = (amr.clone(), acr.clone(), auth_time);
                    fam.elevated_at = now;
                }
                family
            }
            Source::Refresh(f) => {
                let fam = &self.m.families[f];
                ensure!(
                    sid == fam.sid
                        && amr == fam.amr
                        && acr == fam.acr
                        && auth_time == fam.auth_time,
                    NO_ACCESS,
                    "a refreshed access token changed the session (sid, amr, acr, auth_time): \
                     {c:?}, family {} {:?} {} {}",
                    fam.sid,
                    fam.amr,
                    fam.acr,
                    fam.auth_time
                );
                Some(f)
            }
        };
        // Any token that claims a second factor (of any kind) traces back to a verify of
        // that user.
        let second_factor_acr = [
            DEFAULT_MFA_ACR,
            PHISHING_RESISTANT_ACR,
            PHISHING_RESISTANT_HARDWARE_ACR,
        ];
        if ["mfa", "otp", "hwk", "swk"].iter().any(|m| c.has_amr(m))
            || second_factor_acr.contains(&acr.as_str())
        {
            ensure!(
                self.m.ledger.mfa_sessions.get(&sid) == Some(&user),
                NO_ACCESS,
                "an access token claims a second factor (amr {amr:?}, acr {acr}) for a session \
                 that no verify of {user:?} opened"
            );
        }
        let f = match family {
            Some(f) => {
                // A refresh or a step-up: the session was seen now.
                let fam = &mut self.m.families[f];
                fam.tokens.push(refresh.clone());
                fam.last_seen = now;
                f
            }
            None => {
                ensure!(
                    self.m.family_of_sid(&sid).is_none(),
                    MODEL,
                    "a new session reuses sid {sid}"
                );
                self.m.families.push(Family {
                    sid: sid.clone(),
                    user,
                    tokens: vec![refresh.clone()],
                    revoked: false,
                    expires_at: now + REFRESH_LIFETIME,
                    amr: amr.clone(),
                    acr,
                    auth_time,
                    elevated_at: 0,
                    created_at: now,
                    last_seen: now,
                });
                self.m.families.len() - 1
            }
        };
        self.m.refresh_tokens.push((refresh, f));
        self.m.access.push(AccessTok {
            token: access,
            user,
            sid,
            amr,
            auth_time,
            exp: c.exp(),
        });
        Ok(())
    }

    // --- verify --------------------------------------------------------------------------
}
