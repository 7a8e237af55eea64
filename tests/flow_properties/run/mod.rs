//! The engine: one case. [`Run`] drives the app and the model side by side; its
//! operations are split by concern into the submodules.

use crate::*;

mod access;
mod burst;
mod enroll;
mod factors;
mod login;
mod refresh;
mod sessions;
mod verify;

pub(crate) struct Run {
    pub(crate) w: World,
    pub(crate) m: Model,
    pub(crate) trace: Vec<String>,
    /// The case's authenticators (alice's and carol's passkeys are in the directory).
    pub(crate) keys: Keys,
}

impl Run {
    pub(crate) async fn new(faults: Faults, start: u64) -> Self {
        let w = world(faults, start);
        let keys = Keys::register(&w).await;
        Run {
            w,
            m: Model::new(),
            trace: Vec::new(),
            keys,
        }
    }

    pub(crate) fn now(&self) -> u64 {
        self.w.clock.now()
    }

    pub(crate) fn note(&mut self, line: String) {
        let t = self.now() - self.w.start;
        self.trace.push(format!("    t+{t:<5} {line}"));
    }

    /// Compares an answer with the prediction.
    pub(crate) fn compare(&self, what: &str, want: Want, got: &Answer) -> Result<(), Violation> {
        let same_status =
            got.status == want.status && (want.status < 400 || got.error == want.error);
        let property = if want.rule != MODEL {
            want.rule
        } else if got.error == "too_many_attempts" {
            LOCKOUT_HOLDS
        } else {
            MODEL
        };
        ensure!(
            same_status,
            property,
            "{what}: expected {} {}, got {} {}: {}",
            want.status,
            want.error,
            got.status,
            got.error,
            got.body
        );
        if let Some(n) = want.attempts_remaining {
            ensure!(
                got.body["attempts_remaining"] == n,
                LOCKOUT_HOLDS,
                "{what}: expected attempts_remaining {n}: {}",
                got.body
            );
        }
        if let Some(secs) = want.retry_after {
            ensure!(
                got.retry_after == Some(secs),
                LOCKOUT_HOLDS,
                "{what}: expected Retry-After {secs}, got {:?}",
                got.retry_after
            );
        }
        Ok(())
    }

    pub(crate) async fn step(&mut self, op: &Op) -> Result<(), Violation> {
        let before = self.trace.len();
        let result = match self.step_inner(op).await {
            Ok(()) => match self.probe_endings().await {
                Ok(()) => self.check_directory().await,
                Err(v) => Err(v),
            },
            Err(v) => Err(v),
        };
        for line in &self.trace[before..] {
            let outcome = line
                .split(" -> ")
                .nth(1)
                .or_else(|| line.contains("skipped").then_some("skipped"))
                .unwrap_or("");
            let head: String = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let sub = if line.contains("Mfa(") {
                " mfa_token"
            } else {
                ""
            };
            // Which factor a verify presented.
            let factor = if head != "verify" && head != "burst" {
                ""
            } else if line.contains("Passkey(") {
                " (passkey)"
            } else if line.contains("Sent(") {
                " (sent code)"
            } else if line.contains("Malformed") {
                " (malformed passkey)"
            } else if line.contains("Recovery(") {
                " (recovery code)"
            } else {
                ""
            };
            reached(format!(
                "{head}{sub}{factor} -> {}",
                outcome.split(" (").next().unwrap_or("")
            ));
        }
        result
    }

    pub(crate) async fn step_inner(&mut self, op: &Op) -> Result<(), Violation> {
        match op {
            Op::Login {
                who,
                right_password,
            } => self.login(*who, *right_password).await.map(|_| ()),
            Op::Verify {
                challenge,
                proof,
                as_bearer,
                beside,
            } => {
                self.verify(challenge, proof, *as_bearer, beside.as_ref())
                    .await
            }
            Op::Burst {
                user,
                n,
                target,
                code,
            } => self.burst(*user, *n, *target, code).await,
            Op::Advance(secs) => {
                self.w.clock.advance(*secs);
                self.note(format!("clock +{secs}"));
                Ok(())
            }
            Op::Refresh(pick) => self.refresh(pick).await,
            Op::RefreshBurst { family, n } => self.refresh_burst(*family, *n).await,
            Op::Logout { cred, refresh } => self.logout(cred, refresh).await,
            Op::Get { route, cred } => self.get(*route, cred).await,
            Op::StepUp {
                user,
                proof,
                beside,
            } => self.step_up(*user, proof, *beside).await,
            Op::Enroll(cred) => self.enroll(cred).await.map(|_| ()),
            Op::Confirm { cred, code } => self.confirm(cred, code).await,
            Op::EnrollAndConfirm { user, code } => {
                if self.session_of(*user).await?.is_none() {
                    return Ok(());
                }
                let cred = Cred::Access(AccessPick::Latest(*user));
                if self.enroll(&cred).await? {
                    self.confirm(&cred, code).await?;
                }
                Ok(())
            }
            Op::ToFamilyEnd { family, offset } => {
                self.near_family_end(*family, *offset);
                Ok(())
            }
            Op::ListSessions(cred) => self.list_sessions(cred).await,
            Op::EndSession { cred, target } => self.end_session(cred, target).await,
        }
    }

    /// A used recovery code is gone from the factor directory ("removing it makes the use
    /// permanent"): the store forgets it after 400 days, a `MemoryStore` on restart.
    pub(crate) async fn check_directory(&self) -> Result<(), Violation> {
        for user in User::ALL {
            let Some(factor) = &self.m.user(user).factor else {
                continue;
            };
            let stored = self
                .w
                .factors
                .totp(user.name())
                .map(|f| f.recovery_codes)
                .unwrap_or_default();
            for code in &factor.recovery {
                let used = self.m.ledger.recovery.contains(&(user, code.clone()));
                ensure!(
                    stored.contains(&recovery::hash(code)) != used,
                    NO_CODE_TWICE,
                    "the recovery code {code} of {user:?} ({}) is {} the factor directory",
                    if used { "used" } else { "unused" },
                    if used {
                        "still or again in"
                    } else {
                        "missing from"
                    }
                );
            }
        }
        Ok(())
    }

    // --- login ---------------------------------------------------------------------------
}
