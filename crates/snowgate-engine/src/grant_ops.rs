//! Just-in-time access as the control socket and the tray call it: roles, requests,
//! decisions, grants, sessions (listing and closing one), connection settings, tokens, the
//! audit log, and what the tray shows and notifies about the signed-in user's grants.
//!
//! Every input is checked into its domain type (role, duration, reason, grant id) before the
//! grants service sees it, so bad input is refused with a sentence and writes nothing. The
//! requester is the signed-in user. In solo mode an approver proves who they are with a fresh
//! IdP sign-in ([`GrantOps::approver_login_begin`]), whose verified identity makes the decision;
//! it never replaces the user's sign-in and keeps no token. In team mode the signed-in user
//! decides with their own token, and the team server checks that they may
//! ([`crate::backend::GrantsBackend`] hides which mode it is).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use snowgate_grants::{
    Actor, Comment, Grant, GrantDuration, GrantEvent, GrantId, GrantRequest, Policy, Reason,
    RoleName, Subject, Ticket, Timestamp,
};

use crate::backend::GrantsBackend;
use crate::broker::random_id;
use crate::config::Config;
use crate::control::answers::{
    ApproverLoginStart, AuditExport, AuditVerification, GrantView, RoleInfo, TokenAnswer,
};
use crate::control::{ControlError, ErrorKind};
use crate::engine::Engine;
use crate::identity::{CurrentIdentity, Identity, IdentityError, PendingApproverLogin, Profile};
use crate::notices::Notice;

/// How long an approver sign-in that no decision used is kept: the sign-in's own timeout
/// (`identity::DEFAULT_LOGIN_TIMEOUT`) plus a margin.
const APPROVER_LOGIN_KEPT: Duration = Duration::from_secs(6 * 60);

/// Builds the grants policy from `[[roles]]` (checked at load).
pub fn policy_from_config(config: &Config) -> Result<Policy, String> {
    snowgate_grants::role_config::policy(&config.roles)
        .map_err(|(i, e)| format!("the [[roles]] policy can't be used: roles[{i}]: {e}"))
}

/// An approver's sign-in under way, for one grant's decision.
pub(crate) struct ApproverLogin {
    pub started: Instant,
    /// The grant it was started for; only a decision on that grant may use it.
    pub grant: GrantId,
    pub pending: PendingApproverLogin,
}

/// Which decision an approver makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
    Revoke,
}

fn bad(message: impl Into<String>) -> ControlError {
    ControlError::new(ErrorKind::BadRequest, message)
}

pub(crate) fn actor_of(profile: &Profile) -> Result<Actor, ControlError> {
    let subject = Subject::new(profile.subject.clone()).map_err(|e| bad(e.to_string()))?;
    Ok(Actor::new(
        subject,
        profile.email.clone(),
        profile.groups.clone(),
    ))
}

fn grant_id(id: &str) -> Result<GrantId, ControlError> {
    id.trim()
        .parse::<GrantId>()
        .map_err(|e: snowgate_grants::InvalidValue| bad(e.to_string()))
}

fn duration(secs: u64, what: &str) -> Result<GrantDuration, ControlError> {
    GrantDuration::from_secs(secs).map_err(|e| bad(format!("{what}: {e}")))
}

/// The names of the requestable roles: `[[roles]]` in solo mode, the team server's roles (as
/// last read) in team mode.
pub(crate) fn role_names(
    config: &crate::config::Config,
    grants: Option<&GrantsBackend>,
) -> Vec<String> {
    match grants {
        Some(backend) if backend.is_team() => backend
            .policy()
            .roles()
            .iter()
            .map(|r| r.name.as_str().to_string())
            .collect(),
        _ => config
            .roles
            .iter()
            .map(|r| r.name.get_ref().as_str().to_string())
            .collect(),
    }
}

/// The grant and audit operations the control socket and the tray call, over the grants
/// backend, for the broker's current identity. Built once by the broker with what it needs;
/// it holds no broker.
pub struct GrantOps {
    engine: Arc<Engine>,
    identity: CurrentIdentity,
    grants: Result<GrantsBackend, String>,
    /// Approver sign-ins started and not yet used for a decision.
    approver_logins: Mutex<HashMap<String, ApproverLogin>>,
}

impl GrantOps {
    pub(crate) fn new(
        engine: Arc<Engine>,
        identity: CurrentIdentity,
        grants: Result<GrantsBackend, String>,
    ) -> GrantOps {
        GrantOps {
            engine,
            identity,
            grants,
            approver_logins: Mutex::new(HashMap::new()),
        }
    }

    /// The grants (solo: the local ledger; team: the team server), or why there are none.
    fn grants(&self) -> Result<GrantsBackend, ControlError> {
        self.grants
            .clone()
            .map_err(|e| ControlError::new(ErrorKind::Unavailable, e))
    }

    fn identity(&self) -> Option<Identity> {
        self.identity.get()
    }

    /// The signed-in user as an actor, or "not signed in".
    fn me(&self) -> Result<Actor, ControlError> {
        let profile = self.identity().and_then(|i| i.profile()).ok_or_else(|| {
            ControlError::new(ErrorKind::SignedOut, IdentityError::NotSignedIn.to_string())
        })?;
        actor_of(&profile)
    }

    /// The configured role named `name`, matched case-insensitively (Snowflake's roles are
    /// upper-case; people type them any way).
    fn role_name(&self, name: &str) -> Result<RoleName, ControlError> {
        let names = self.role_names();
        let canonical = names
            .iter()
            .map(String::as_str)
            .find(|r| r.eq_ignore_ascii_case(name.trim()))
            .unwrap_or(name.trim());
        RoleName::new(canonical).map_err(|e| bad(e.to_string()))
    }

    /// The names of the requestable roles ([`role_names`]).
    pub(crate) fn role_names(&self) -> Vec<String> {
        role_names(self.engine.config(), self.grants().ok().as_ref())
    }

    /// The requestable roles and their rules.
    pub async fn roles(&self) -> Result<Vec<RoleInfo>, ControlError> {
        let policy = self.grants()?.current_policy().await?;
        let config = self.engine.config();
        Ok(policy
            .roles()
            .iter()
            .map(|r| RoleInfo {
                name: r.name.as_str().to_string(),
                account: config.role_account(r.account.as_deref()).to_string(),
                description: r.description.clone(),
                max_duration: r.max_duration.to_string(),
                approver_groups: r.approver_groups.clone(),
                approvals_required: r.approvals_required.get(),
                auto_approve_up_to: r.auto_approve_up_to.map(|d| d.to_string()),
                pending_timeout: r.pending_timeout.to_string(),
                extensions_allowed: r.extensions_allowed,
            })
            .collect())
    }

    /// Asks for `role` for `duration_secs` as the signed-in user. Auto-approved grants come back
    /// active; others pending.
    pub async fn request_access(
        &self,
        role: &str,
        duration_secs: u64,
        reason: &str,
        ticket: Option<&str>,
    ) -> Result<GrantView, ControlError> {
        let grants = self.grants()?;
        let me = self.me()?;
        let req = GrantRequest {
            role: self.role_name(role)?,
            duration: duration(duration_secs, "duration")?,
            reason: Reason::new(reason).map_err(|e| bad(e.to_string()))?,
            ticket: match ticket {
                Some(t) => Some(Ticket::new(t).map_err(|e| bad(e.to_string()))?),
                None => None,
            },
        };
        let g = grants.request(&me, req, duration_secs).await?;
        Ok(g.into())
    }

    /// The signed-in user's grants (`all`: everyone's), newest first.
    pub async fn list_grants(&self, all: bool) -> Result<Vec<GrantView>, ControlError> {
        let grants = self.grants()?;
        let list = if all {
            grants.list_all().await?
        } else {
            grants.mine(&self.me()?.subject).await?
        };
        Ok(list.into_iter().map(GrantView::from).collect())
    }

    /// One grant.
    pub async fn grant(&self, id: &str) -> Result<GrantView, ControlError> {
        let g = self.grants()?.get(&grant_id(id)?).await?;
        Ok(g.into())
    }

    /// Starts an approver's fresh sign-in. With `grant`, checks first that the grant exists,
    /// so an unknown id is refused before anyone signs in.
    pub async fn approver_login_begin(
        &self,
        grant: Option<&str>,
    ) -> Result<ApproverLoginStart, ControlError> {
        if self.grants()?.is_team() {
            return Err(bad(
                "in team mode you decide with your own sign-in; no approver sign-in is needed (send the decision without approver_login_id)",
            ));
        }
        // An approver's sign-in is for one grant: a decision on another can't use it.
        let Some(id) = grant else {
            return Err(bad(
                "an approver's sign-in is started for the grant it decides; send grant_id (`snowgate approve ID` does)",
            ));
        };
        let bound = {
            let g = self.grants()?.get(&grant_id(id)?).await?;
            if g.state().is_ended() {
                return Err(bad(format!(
                    "grant {} already ended ({} at {})",
                    g.id(),
                    g.state().verb(),
                    g.ended_at().map(|t| t.to_rfc3339()).unwrap_or_default()
                )));
            }
            g.id().clone()
        };
        let identity = self.identity().ok_or_else(|| {
            ControlError::new(
                ErrorKind::Unavailable,
                "the identity provider is not set up",
            )
        })?;
        let pending = identity
            .begin_approver_login()
            .await
            .map_err(|e| ControlError::new(ErrorKind::Unavailable, e.to_string()))?;
        let login_id = random_id();
        let url = pending.start_url().to_string();
        let mut logins = self.approver_logins.lock().unwrap();
        // Sign-ins abandoned before a decision (a Cancel in the window, a closed terminal) are
        // dropped, with their loopback listeners, once no decision could still use them.
        logins.retain(|_, login| login.started.elapsed() < APPROVER_LOGIN_KEPT);
        logins.insert(
            login_id.clone(),
            ApproverLogin {
                started: Instant::now(),
                grant: bound,
                pending,
            },
        );
        Ok(ApproverLoginStart {
            login_id,
            authorize_url: url,
        })
    }

    /// Makes `decision` on grant `id`. Solo mode: waits for the approver's sign-in `login_id`
    /// and decides as them (without one it is refused). Team mode: decides as the signed-in
    /// user, whose token the server checks; an approver sign-in is not used.
    pub async fn decide(
        &self,
        decision: Decision,
        id: &str,
        comment: Option<&str>,
        login_id: Option<&str>,
    ) -> Result<GrantView, ControlError> {
        let grants = self.grants()?;
        let id = grant_id(id)?;
        let comment = match comment.filter(|c| !c.trim().is_empty()) {
            Some(c) => Some(Comment::new(c).map_err(|e| bad(e.to_string()))?),
            None if decision == Decision::Deny => {
                return Err(bad(
                    "a denial needs a comment saying why (--comment \"...\")",
                ))
            }
            None => None,
        };
        let approver = if grants.is_team() {
            if let Some(login_id) = login_id {
                // Team mode decides with the user's own token; a stray approver sign-in is
                // dropped (and with it its loopback listener).
                self.approver_logins.lock().unwrap().remove(login_id);
            }
            self.me()?
        } else {
            let login_id = login_id.ok_or_else(|| {
                bad("in solo mode a decision needs the approver's fresh sign-in; run `snowgate approve ID` (or deny/revoke), which starts it")
            })?;
            let login = {
                let mut logins = self.approver_logins.lock().unwrap();
                let started_for = logins
                    .get(login_id)
                    .map(|l| l.grant.clone())
                    .ok_or_else(|| bad("no approver sign-in with that id is under way"))?;
                if started_for != id {
                    return Err(ControlError::new(
                        ErrorKind::Forbidden,
                        format!("this approver sign-in was started for grant {started_for}, not {id}; a decision on {id} needs its own (`snowgate approve {id}`)"),
                    ));
                }
                logins.remove(login_id).expect("checked above")
            };
            let profile = login
                .pending
                .wait()
                .await
                .map_err(|e| ControlError::new(ErrorKind::Forbidden, e.to_string()))?;
            actor_of(&profile)?
        };
        tracing::info!(approver = %approver, grant = %id, decision = ?decision, mode = grants.mode(), "approver decision");
        let g = match decision {
            Decision::Approve => grants.approve(&approver, &id, comment).await,
            Decision::Deny => {
                grants
                    .deny(&approver, &id, comment.expect("checked above"))
                    .await
            }
            Decision::Revoke => grants.revoke(&approver, &id, comment).await,
        }?;
        Ok(g.into())
    }

    /// Revokes a grant as the signed-in user (giving up their own grant).
    pub async fn revoke_own(
        &self,
        id: &str,
        comment: Option<&str>,
    ) -> Result<GrantView, ControlError> {
        let grants = self.grants()?;
        let me = self.me()?;
        let comment = match comment.filter(|c| !c.trim().is_empty()) {
            Some(c) => Some(Comment::new(c).map_err(|e| bad(e.to_string()))?),
            None => None,
        };
        let g = grants.revoke(&me, &grant_id(id)?, comment).await?;
        Ok(g.into())
    }

    /// Asks for `by_secs` more on an active grant (a new decision under the same policy).
    pub async fn extend(
        &self,
        id: &str,
        by_secs: u64,
        reason: &str,
    ) -> Result<GrantView, ControlError> {
        let grants = self.grants()?;
        let me = self.me()?;
        let g = grants
            .extend(
                &me,
                &grant_id(id)?,
                duration(by_secs, "--by")?,
                Reason::new(reason).map_err(|e| bad(e.to_string()))?,
            )
            .await?;
        Ok(g.into())
    }

    /// Withdraws a pending request or extension.
    pub async fn cancel(&self, id: &str) -> Result<GrantView, ControlError> {
        let grants = self.grants()?;
        let me = self.me()?;
        let g = grants.cancel(&me, &grant_id(id)?).await?;
        Ok(g.into())
    }

    /// Audit records since `since` (RFC 3339), at most `limit`.
    pub async fn audit(
        &self,
        since: Option<&str>,
        limit: Option<u32>,
    ) -> Result<Vec<snowgate_grants::AuditRecord>, ControlError> {
        let since = match since {
            Some(s) => Some(Timestamp::parse_rfc3339(s).ok_or_else(|| {
                bad(format!(
                    "{s:?} is not a time; give RFC 3339 (2026-01-31T14:05:00Z) or a duration (2h)"
                ))
            })?),
            None => None,
        };
        self.grants()?.audit(since, limit).await
    }

    /// Verifies the whole audit log against the anchor. `ok: false` names the first bad record.
    pub async fn audit_verify(&self) -> Result<AuditVerification, ControlError> {
        self.grants()?.verify_audit().await
    }

    /// The whole audit log as JSON Lines.
    pub async fn audit_export(&self) -> Result<AuditExport, ControlError> {
        self.grants()?.export_audit().await
    }

    /// The signed-in person as the grants service knows them, if someone is signed in.
    pub fn signed_in_actor(&self) -> Option<Actor> {
        self.me().ok()
    }

    /// The signed-in user's own grants that are pending or active, newest first.
    pub async fn my_live_grants(&self) -> Result<Vec<Grant>, ControlError> {
        let grants = self.grants()?;
        let mut mine = grants.mine(&self.me()?.subject).await?;
        mine.retain(|g| !g.state().is_ended());
        Ok(mine)
    }

    /// The requests and extensions of other users the signed-in user may decide on now.
    pub async fn awaiting_my_decision(&self) -> Result<Vec<Grant>, ControlError> {
        let grants = self.grants()?;
        grants.awaiting(&self.me()?).await
    }

    /// The desktop notification the signed-in user should see for `event`, if any (see
    /// [`crate::notices`]); `None` when nobody is signed in.
    pub async fn notice_for(&self, event: &GrantEvent) -> Option<Notice> {
        let me = self.me().ok()?;
        let grants = self.grants().ok()?;
        let grant = grants.get(&event.grant).await.ok();
        crate::notices::notice_for(event, grant.as_ref(), &me, &grants.policy())
    }

    /// A short-lived Snowflake token for `role`, only while the user holds a usable grant
    /// for it. The token's value is in the answer: the control socket serves only this OS user.
    pub async fn vend_token(&self, role: &str) -> Result<TokenAnswer, ControlError> {
        let grants = self.grants()?;
        let me = self.me()?;
        let role = self.role_name(role)?;
        let usable: Vec<Grant> = grants.usable(&me.subject, Some(&role)).await?;
        let Some(grant) = usable.first() else {
            return Err(ControlError::new(
                ErrorKind::Forbidden,
                format!(
                    "you have no active grant for {role}; request one with `snowgate request {role} --duration 1h --reason \"...\"`"
                ),
            ));
        };
        let identity = self.identity().ok_or_else(|| {
            ControlError::new(ErrorKind::SignedOut, IdentityError::NotSignedIn.to_string())
        })?;
        let (token, token_expires_at) = grants
            .snowflake_token(&identity, grant)
            .await
            .map_err(|e| ControlError::new(ErrorKind::Unavailable, e))?;
        let grant_end = grant
            .expires_at()
            .map(|t| t.to_system_time())
            .unwrap_or_else(SystemTime::now);
        Ok(TokenAnswer {
            role: role.as_str().to_string(),
            grant: grant.id().as_str().to_string(),
            grant_ends_at: grant.expires_at(),
            token_expires_at: Timestamp::from(token_expires_at),
            grant_remaining_secs: grant_end
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO)
                .as_secs(),
            token: crate::control::answers::RevealedSecret::new(token),
        })
    }
}
