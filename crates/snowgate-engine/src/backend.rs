//! Where grants live: the local ledger (solo mode) or the team server (team mode).
//!
//! [`GrantsBackend`] is what [`crate::grant_ops`], [`crate::access`] and
//! [`crate::enforcement`] call, so they work the same in both modes:
//! - **Solo**: the grants service on the local SQLite ledger, under the policy from
//!   `[[roles]]`; decisions need the approver's fresh sign-in (checked by the caller); Snowflake
//!   tokens come from the IdP (`identity.snowflake_token(role)`).
//! - **Team**: the [`TeamClient`]; the server applies its policy to the signed-in user's own
//!   token, and mints the Snowflake tokens for active grants.
//!
//! Both give the same [`GrantEvent`] broadcast and the same error sentences ([`ControlError`]).

use std::sync::Arc;
use std::time::SystemTime;

use secrecy::SecretString;
use snowgate_grants::{
    Actor, AuditEntry, AuditQuery, AuditRecord, Comment, Grant, GrantDuration, GrantEvent,
    GrantFilter, GrantId, GrantRequest, Grants, Policy, Reason, RoleName, ServiceError, Subject,
    Timestamp,
};
use tokio::sync::broadcast;

use crate::control::answers::{AuditExport, AuditVerification};
use crate::control::{ControlError, ErrorKind};
use crate::identity::Identity;
use crate::team::TeamClient;

/// The grants of solo or team mode. Cheap to clone.
#[derive(Clone, Debug)]
pub enum GrantsBackend {
    /// The local ledger and policy.
    Solo(Grants),
    /// The team server.
    Team(TeamClient),
}

/// The solo grants service's errors as control errors.
pub(crate) fn service_error(e: ServiceError) -> ControlError {
    match e {
        ServiceError::Refused(g) => ControlError::new(ErrorKind::BadRequest, g.to_string()),
        ServiceError::Ledger(l) => ControlError::new(
            ErrorKind::Unavailable,
            format!("the grants ledger failed: {l}"),
        ),
    }
}

impl GrantsBackend {
    /// `solo` or `team`.
    pub fn mode(&self) -> &'static str {
        match self {
            GrantsBackend::Solo(_) => "solo",
            GrantsBackend::Team(_) => "team",
        }
    }

    /// Whether this is team mode.
    pub fn is_team(&self) -> bool {
        matches!(self, GrantsBackend::Team(_))
    }

    /// Grant events from now on: transitions, deadlines, and in team mode the server's stream.
    pub fn subscribe(&self) -> broadcast::Receiver<GrantEvent> {
        match self {
            GrantsBackend::Solo(g) => g.subscribe(),
            GrantsBackend::Team(t) => t.subscribe(),
        }
    }

    /// The policy as last known (team mode: the last `GET /v1/roles`), without a call.
    pub fn policy(&self) -> Arc<Policy> {
        match self {
            GrantsBackend::Solo(g) => g.policy(),
            GrantsBackend::Team(t) => t.policy(),
        }
    }

    /// The requestable roles and their rules (team mode asks the server).
    pub async fn current_policy(&self) -> Result<Arc<Policy>, ControlError> {
        match self {
            GrantsBackend::Solo(g) => Ok(g.policy()),
            GrantsBackend::Team(t) => Ok(t.roles().await?),
        }
    }

    /// Asks for a role as `me`.
    pub async fn request(
        &self,
        me: &Actor,
        req: GrantRequest,
        duration_secs: u64,
    ) -> Result<Grant, ControlError> {
        match self {
            GrantsBackend::Solo(g) => g.request(me, req).await.map_err(service_error),
            GrantsBackend::Team(t) => Ok(t
                .request(
                    req.role.as_str(),
                    duration_secs,
                    req.reason.as_str(),
                    req.ticket.as_ref().map(|t| t.as_str()),
                )
                .await?),
        }
    }

    /// Every grant the signed-in user may see: everyone's in solo mode; in team mode their
    /// own plus those of the roles they approve.
    pub async fn list_all(&self) -> Result<Vec<Grant>, ControlError> {
        match self {
            GrantsBackend::Solo(g) => g.list(&GrantFilter::all()).await.map_err(service_error),
            GrantsBackend::Team(t) => Ok(t.list(true).await?),
        }
    }

    /// `me`'s own grants, newest first.
    pub async fn mine(&self, me: &Subject) -> Result<Vec<Grant>, ControlError> {
        match self {
            GrantsBackend::Solo(g) => g.mine(me).await.map_err(service_error),
            GrantsBackend::Team(t) => Ok(t.list(false).await?),
        }
    }

    /// One grant.
    pub async fn get(&self, id: &GrantId) -> Result<Grant, ControlError> {
        match self {
            GrantsBackend::Solo(g) => g.get(id).await.map_err(service_error),
            GrantsBackend::Team(t) => Ok(t.get(id).await?),
        }
    }

    /// What waits for `me`'s decision.
    pub async fn awaiting(&self, me: &Actor) -> Result<Vec<Grant>, ControlError> {
        match self {
            GrantsBackend::Solo(g) => g.awaiting(me).await.map_err(service_error),
            GrantsBackend::Team(t) => Ok(t.awaiting().await?),
        }
    }

    /// Approves as `who` (team mode: the signed-in user, whose token the server checks).
    pub async fn approve(
        &self,
        who: &Actor,
        id: &GrantId,
        comment: Option<Comment>,
    ) -> Result<Grant, ControlError> {
        match self {
            GrantsBackend::Solo(g) => g.approve(who, id, comment).await.map_err(service_error),
            GrantsBackend::Team(t) => Ok(t.approve(id, comment.as_ref()).await?),
        }
    }

    /// Denies as `who`.
    pub async fn deny(
        &self,
        who: &Actor,
        id: &GrantId,
        comment: Comment,
    ) -> Result<Grant, ControlError> {
        match self {
            GrantsBackend::Solo(g) => g.deny(who, id, comment).await.map_err(service_error),
            GrantsBackend::Team(t) => Ok(t.deny(id, &comment).await?),
        }
    }

    /// Revokes as `who` (the requester giving it up, or an approver).
    pub async fn revoke(
        &self,
        who: &Actor,
        id: &GrantId,
        comment: Option<Comment>,
    ) -> Result<Grant, ControlError> {
        match self {
            GrantsBackend::Solo(g) => g.revoke(who, id, comment).await.map_err(service_error),
            GrantsBackend::Team(t) => Ok(t.revoke(id, comment.as_ref()).await?),
        }
    }

    /// Asks for more time as `who`.
    pub async fn extend(
        &self,
        who: &Actor,
        id: &GrantId,
        by: GrantDuration,
        reason: Reason,
    ) -> Result<Grant, ControlError> {
        match self {
            GrantsBackend::Solo(g) => g.extend(who, id, by, reason).await.map_err(service_error),
            GrantsBackend::Team(t) => Ok(t.extend(id, by, &reason).await?),
        }
    }

    /// Withdraws a pending request or extension as `who`.
    pub async fn cancel(&self, who: &Actor, id: &GrantId) -> Result<Grant, ControlError> {
        match self {
            GrantsBackend::Solo(g) => g.cancel(who, id).await.map_err(service_error),
            GrantsBackend::Team(t) => Ok(t.cancel(id).await?),
        }
    }

    /// The grants `who` may use now, optionally for one role, newest first. In team mode,
    /// while the server can't be reached, the grants already seen that are still active.
    pub async fn usable(
        &self,
        who: &Subject,
        role: Option<&RoleName>,
    ) -> Result<Vec<Grant>, ControlError> {
        match self {
            GrantsBackend::Solo(g) => g.usable(who, role).await.map_err(service_error),
            GrantsBackend::Team(t) => Ok(t.usable(who, role).await?),
        }
    }

    /// `who`'s grants for refusal sentences: from the ledger, or in team mode from the
    /// server (or, while it can't be reached, as last seen).
    pub async fn mine_for_refusal(&self, who: &Subject) -> Vec<Grant> {
        match self {
            GrantsBackend::Solo(g) => g.mine(who).await.unwrap_or_default(),
            GrantsBackend::Team(t) => match t.list(false).await {
                Ok(list) => list,
                Err(_) => t.known_of(who),
            },
        }
    }

    /// Appends a record the broker saw (sign-in and sign-out, gateway sessions, statements):
    /// to the local ledger in solo mode; in team mode to the queue for the team server's log
    /// (never waiting for the server).
    /// Keeps an audit record, or says why it could not: solo mode appends it to the ledger
    /// (through the group commit, `Ok` once it is in the write-ahead log); team mode puts it
    /// in the durable outbox for the team server.
    pub async fn record_checked(&self, entry: AuditEntry) -> Result<(), String> {
        match self {
            GrantsBackend::Solo(g) => g.record(entry).await.map(|_| ()).map_err(|e| e.to_string()),
            GrantsBackend::Team(t) => t.report_durably(entry).await,
        }
    }

    /// Keeps a record nobody waits on (a statement's query id) without waiting for it: solo,
    /// it goes into the ledger with the next batch; team, into the outbox from a task. A
    /// failure is logged.
    pub fn record_later(&self, entry: AuditEntry) {
        match self {
            GrantsBackend::Solo(g) => g.record_later(entry),
            GrantsBackend::Team(_) => {
                let this = self.clone();
                tokio::spawn(async move { this.record(entry).await });
            }
        }
    }

    /// Why audit records can't be kept right now, if they can't.
    pub fn audit_problem(&self) -> Option<String> {
        match self {
            GrantsBackend::Solo(g) => g.audit_problem(),
            GrantsBackend::Team(t) => t.outbox_problem(),
        }
    }

    pub async fn record(&self, entry: AuditEntry) {
        match self {
            GrantsBackend::Solo(g) => {
                let kind = entry.kind.to_string();
                if let Err(e) = g.record(entry).await {
                    tracing::error!(error = %e, kind = %kind, "could not append to the audit log");
                }
            }
            GrantsBackend::Team(t) => {
                let kind = entry.kind.to_string();
                if let Err(e) = t.report_durably(entry).await {
                    tracing::error!(error = %e, kind = %kind, "could not keep an audit record for the team server");
                }
            }
        }
    }

    /// A grant for the audit records: from the ledger or the server, or in team mode while the
    /// server can't be reached, as last seen.
    pub async fn get_for_audit(&self, id: &GrantId) -> Option<Grant> {
        match self {
            GrantsBackend::Solo(g) => g.get(id).await.ok(),
            GrantsBackend::Team(t) => match t.known_grant(id) {
                Some(g) => Some(g),
                None => t.get(id).await.ok(),
            },
        }
    }

    /// Audit records as JSON objects.
    pub async fn audit(
        &self,
        since: Option<Timestamp>,
        limit: Option<u32>,
    ) -> Result<Vec<AuditRecord>, ControlError> {
        match self {
            GrantsBackend::Solo(g) => g
                .audit(&AuditQuery {
                    since,
                    limit,
                    ..AuditQuery::default()
                })
                .await
                .map_err(service_error),
            GrantsBackend::Team(t) => Ok(t.audit(since, limit).await?),
        }
    }

    /// Verifies the audit log: `{ ok, records, head }` or `{ ok: false, problem }`.
    pub async fn verify_audit(&self) -> Result<AuditVerification, ControlError> {
        match self {
            GrantsBackend::Solo(g) => match g.verify_audit().await {
                Ok(head) => Ok(AuditVerification {
                    ok: true,
                    records: Some(head.map(|h| h.seq).unwrap_or(0)),
                    head: head.map(|h| h.to_string()),
                    problem: None,
                }),
                Err(snowgate_grants::AuditCheckError::Broken(e)) => Ok(AuditVerification {
                    ok: false,
                    records: None,
                    head: None,
                    problem: Some(e.to_string()),
                }),
                Err(e) => Err(ControlError::new(ErrorKind::Unavailable, e.to_string())),
            },
            GrantsBackend::Team(t) => {
                let v = t.verify_audit().await?;
                Ok(AuditVerification {
                    ok: v.ok,
                    records: v.records,
                    head: v.head.map(|h| format!("{}:{}", h.seq, h.hash)),
                    problem: v.problem,
                })
            }
        }
    }

    /// The whole audit log as JSON Lines: `{ records, jsonl }`.
    pub async fn export_audit(&self) -> Result<AuditExport, ControlError> {
        match self {
            GrantsBackend::Solo(g) => {
                let mut out: Vec<u8> = Vec::new();
                let n = snowgate_grants::ledger::export_jsonl(
                    g.ledger().as_ref(),
                    &AuditQuery::default(),
                    &mut out,
                )
                .await
                .map_err(|e| ControlError::new(ErrorKind::Unavailable, e.to_string()))?;
                Ok(AuditExport {
                    records: n,
                    jsonl: String::from_utf8_lossy(&out).into_owned(),
                })
            }
            GrantsBackend::Team(t) => {
                let (n, text) = t.export_audit().await?;
                Ok(AuditExport {
                    records: n as u64,
                    jsonl: text,
                })
            }
        }
    }

    /// A Snowflake token for `grant`'s role and its expiry: from the IdP in solo mode (through
    /// the one refresh lock), minted by the server for the grant in team mode.
    pub async fn snowflake_token(
        &self,
        identity: &Identity,
        grant: &Grant,
    ) -> Result<(SecretString, SystemTime), String> {
        match self {
            GrantsBackend::Solo(_) => {
                let t = identity
                    .snowflake_token(grant.role().as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((
                    SecretString::from(t.token.expose_secret().to_string()),
                    t.expires_at,
                ))
            }
            GrantsBackend::Team(t) => t
                .snowflake_token(grant.id())
                .await
                .map_err(|e| e.to_string()),
        }
    }
}
