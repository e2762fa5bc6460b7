//! The broker's background listeners: where grants, identity and the gateway meet.
//!
//! - [`grant_events`]: a grant that ends (expired, revoked, ...) has its gateway sessions
//!   closed at once through [`Gateway::end_grant`] (the grants timer fires at the exact
//!   deadline, so sessions are cut well within a second); an approved extension moves the
//!   sessions' end with [`Gateway::extend_grant`], so they carry on. In team mode the events
//!   come from the team server's stream and the local deadlines ([`crate::team`]).
//! - [`identity_events`]: sign-in and sign-out go to the audit log; a sign-out ends every
//!   gateway session.
//! - [`GatewayAudit`]: the gateway's [`AuditLog`]. Session open and close, statements (and
//!   those the session's rules refused), their query ids and later result fetches are
//!   recorded before the gateway acts on them; every record of an agent's session names it.
//!
//! Audit records go through [`GrantsBackend::record_checked`]: solo mode appends them to the
//! local ledger through its group commit; team mode puts them in the durable outbox in the
//! local ledger, from which they go to the team server's log (`POST /v1/audit/records`, see
//! [`crate::team::audit`]), which records them as the signed-in person.
//!
//! Each loop ends when its channel closes (the service it listens to is gone).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use serde_json::json;
use snowgate_gateway::{
    AuditLog, CloseReason, EndKind, EndReason, Gateway, GatewayEvent, RecordFuture, SessionId,
    SessionInfo, Unrecorded,
};
use snowgate_grants::audit::{AuditActor, AuditKind, SessionRef};
use snowgate_grants::{Actor, AuditEntry, GrantEventKind, GrantId, RoleName, Subject, Timestamp};
use tokio::sync::broadcast::error::RecvError;

use crate::backend::GrantsBackend;
use crate::identity::{Identity, IdentityEvent};

/// Closes the sessions of grants that end, and extends those of grants that are extended.
pub async fn grant_events(grants: GrantsBackend, gateway: Gateway) {
    let mut rx = grants.subscribe();
    loop {
        let event = match rx.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "missed grant events; checking live sessions");
                resync(&grants, &gateway).await;
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        let id = event.grant.as_str();
        if event.kind.ends_grant() {
            let kind = match event.kind {
                GrantEventKind::Expired => EndKind::Expired,
                _ => EndKind::Revoked,
            };
            let n = gateway
                .end_grant(id, EndReason::new(kind, event.at.to_system_time()))
                .await;
            if n > 0 {
                tracing::info!(grant = %id, sessions = n, "grant ended; its sessions are closed");
            }
        } else if let GrantEventKind::Extended { to, .. } = &event.kind {
            let n = gateway.extend_grant(id, to.to_system_time());
            tracing::info!(grant = %id, sessions = n, until = %to.to_rfc3339(), "grant extended; its sessions carry on");
        }
    }
}

/// After missed events: end the sessions of grants that are no longer usable.
async fn resync(grants: &GrantsBackend, gateway: &Gateway) {
    let now = Timestamp::from(SystemTime::now());
    for s in gateway.sessions().into_iter().filter(|s| s.ended.is_none()) {
        let Ok(id) = s.grant_id.parse::<GrantId>() else {
            continue;
        };
        if let Ok(g) = grants.get(&id).await {
            if !g.is_usable_at(now) {
                let at = g
                    .ended_at()
                    .map(|t| t.to_system_time())
                    .unwrap_or_else(SystemTime::now);
                gateway
                    .end_grant(&s.grant_id, EndReason::new(EndKind::Revoked, at))
                    .await;
            }
        }
    }
}

/// Records sign-in and sign-out, and ends every gateway session at sign-out.
pub async fn identity_events(
    identity: Identity,
    grants: Option<GrantsBackend>,
    gateway: Option<Gateway>,
) {
    let mut rx = identity.subscribe();
    let mut subject = identity.profile().map(|p| p.subject);
    loop {
        let event = match rx.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        match event {
            IdentityEvent::SignedIn { subject: s } => {
                subject = Some(s.clone());
                let Some(grants) = &grants else { continue };
                let Some(profile) = identity.profile() else {
                    continue;
                };
                let Ok(sub) = Subject::new(profile.subject.clone()) else {
                    continue;
                };
                let actor = Actor::new(sub, profile.email.clone(), profile.groups.clone());
                record(grants, AuditEntry::sign_in(SystemTime::now(), &actor)).await;
            }
            IdentityEvent::SignedOut { reason, .. } => {
                if let Some(gateway) = &gateway {
                    end_all_sessions(gateway).await;
                }
                let (Some(grants), Some(s)) = (&grants, subject.take()) else {
                    continue;
                };
                if let Ok(sub) = Subject::new(s) {
                    let why = serde_json::to_value(reason)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_else(|| "logout".into());
                    record(grants, AuditEntry::sign_out(SystemTime::now(), &sub, &why)).await;
                }
            }
            _ => {}
        }
    }
}

/// Ends every open gateway session because the user signed out, and any login still in
/// flight. Returns how many sessions.
pub async fn end_all_sessions(gateway: &Gateway) -> usize {
    let reason = EndReason::new(EndKind::SignedOut, SystemTime::now());
    gateway.end_all(reason).await
}

/// The audit log the gateway waits on: session open and close, statements, their answers and
/// later result fetches become records through [`GrantsBackend::record_checked`] (solo: the
/// ledger's group commit; team: the durable outbox). The gateway acts only once this returns
/// `Ok`, so a statement Snowflake ran always has its record.
pub struct GatewayAudit {
    grants: Result<GrantsBackend, String>,
    /// Open sessions: who opened each, with which tool and role, from the open record.
    sessions: RwLock<HashMap<SessionId, Arc<SessionMeta>>>,
}

struct SessionMeta {
    who: Subject,
    tool: String,
    role: RoleName,
    grant: GrantId,
    /// The agent whose session it is: every record of the session names it.
    agent: Option<String>,
}

impl GatewayAudit {
    /// An audit log over `grants`; with `Err` (the grants service could not start) every
    /// record is refused with that reason.
    pub fn new(grants: Result<GrantsBackend, String>) -> GatewayAudit {
        GatewayAudit {
            grants,
            sessions: RwLock::new(HashMap::new()),
        }
    }

    async fn keep(&self, event: &GatewayEvent) -> Result<(), String> {
        let grants = self.grants.as_ref().map_err(|e| e.clone())?;
        let Some(entry) = self.entry(grants, event).await? else {
            return Ok(());
        };
        grants.record_checked(entry).await
    }

    fn session(&self, id: SessionId) -> Option<Arc<SessionMeta>> {
        self.sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    async fn entry(
        &self,
        grants: &GrantsBackend,
        event: &GatewayEvent,
    ) -> Result<Option<AuditEntry>, String> {
        let unknown = |id: SessionId| format!("session {id} is not known to the audit log");
        Ok(Some(match event {
            GatewayEvent::SessionOpened(info) => {
                let who = requester(grants, &info.grant_id)
                    .await
                    .ok_or_else(|| format!("grant {} is not known", info.grant_id))?;
                let tool = tool_name(info);
                let sref = session_ref(&info.id.to_string(), &tool, &info.role, &info.grant_id)
                    .ok_or_else(|| {
                        format!("grant {} or role {} is not valid", info.grant_id, info.role)
                    })?;
                let meta = Arc::new(SessionMeta {
                    who: who.clone(),
                    tool,
                    role: sref.role.clone(),
                    grant: sref.grant.clone(),
                    agent: info.tool.agent.clone(),
                });
                self.sessions
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(info.id, meta);
                let mut entry = with_agent(
                    AuditEntry::session_opened(info.opened_at, &who, &sref),
                    info.tool.agent.as_deref(),
                );
                if let (Some(account), Some(details)) =
                    (&info.account, entry.details.as_object_mut())
                {
                    details.insert("account".into(), json!(account));
                }
                entry
            }
            GatewayEvent::SessionClosed {
                session,
                grant_id,
                role,
                reason,
            } => {
                let meta = self
                    .sessions
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(session);
                let (who, tool, agent) = match meta {
                    Some(m) => (m.who.clone(), m.tool.clone(), m.agent.clone()),
                    None => match requester(grants, grant_id).await {
                        Some(who) => (who, "unknown".to_string(), None),
                        None => return Err(format!("grant {grant_id} is not known")),
                    },
                };
                let sref = session_ref(&session.to_string(), &tool, role, grant_id)
                    .ok_or_else(|| format!("grant {grant_id} or role {role} is not valid"))?;
                let (actor, why) = close_actor(who, *reason);
                with_agent(
                    AuditEntry::session_closed(SystemTime::now(), actor, &sref, why),
                    agent.as_deref(),
                )
            }
            GatewayEvent::StatementRefused {
                session,
                request_id,
                sql_sha256,
                sql_text,
                kind,
                rule,
                at,
                ..
            } => {
                let m = self.session(*session).ok_or_else(|| unknown(*session))?;
                let mut details = json!({
                    "session": session.to_string(),
                    "tool": m.tool,
                    "request_id": request_id,
                    "statement_sha256": sql_sha256,
                    "kind": kind,
                    "rule": rule,
                });
                if let Some(text) = sql_text {
                    details["text"] = json!(text);
                }
                m.entry(*at, AuditKind::STATEMENT_REFUSED, details)
            }
            GatewayEvent::Statement {
                session,
                request_id,
                sql_sha256,
                sql_text,
                is_async,
                multi_statement,
                part,
                at,
                ..
            } => {
                let m = self.session(*session).ok_or_else(|| unknown(*session))?;
                let mut details = json!({
                    "session": session.to_string(),
                    "tool": m.tool,
                    "request_id": request_id,
                    "statement_sha256": sql_sha256,
                    "async": is_async,
                });
                if let Some(n) = multi_statement {
                    // `statement_count` is what the tool asked for; `0` means "any number".
                    details["multi_statement"] = json!(true);
                    details["statement_count"] = json!(n);
                    match part {
                        Some((index, total)) => {
                            details["statement_index"] = json!(index);
                            details["statement_total"] = json!(total);
                        }
                        // The parser could not split it: one record for the whole request.
                        None => details["split"] = json!(false),
                    }
                }
                if let Some(text) = sql_text {
                    details["text"] = json!(text);
                }
                m.entry(*at, AuditKind::STATEMENT, details)
            }
            GatewayEvent::StatementAnswered { .. } => match self.answered_entry(event)? {
                Some(e) => e,
                None => return Ok(None),
            },
            GatewayEvent::ResultFetched {
                session,
                query_id,
                at,
                ..
            } => {
                let m = self.session(*session).ok_or_else(|| unknown(*session))?;
                let details = json!({
                    "session": session.to_string(),
                    "tool": m.tool,
                    "query_id": query_id,
                });
                m.entry(*at, AuditKind::RESULT_FETCHED, details)
            }
            _ => return Ok(None),
        }))
    }
}

impl GatewayAudit {
    /// The record of a statement's query id: built without waiting, from the session's open
    /// record.
    fn answered_entry(&self, event: &GatewayEvent) -> Result<Option<AuditEntry>, String> {
        let GatewayEvent::StatementAnswered {
            session,
            request_id,
            query_id,
            at,
            ..
        } = event
        else {
            return Ok(None);
        };
        let m = self
            .session(*session)
            .ok_or_else(|| format!("session {session} is not known to the audit log"))?;
        let details = json!({
            "session": session.to_string(),
            "request_id": request_id,
            "query_id": query_id,
        });
        Ok(Some(m.entry(*at, AuditKind::STATEMENT_ANSWERED, details)))
    }
}

impl SessionMeta {
    /// A record of this session, naming its agent if it has one.
    fn entry(&self, at: SystemTime, kind: AuditKind, details: serde_json::Value) -> AuditEntry {
        let entry = AuditEntry {
            at: at.into(),
            actor: AuditActor::User(self.who.clone()),
            kind,
            grant_id: Some(self.grant.clone()),
            role: Some(self.role.clone()),
            details,
        };
        with_agent(entry, self.agent.as_deref())
    }
}

/// `entry` with `"agent": NAME` in its details when the session is an agent's.
fn with_agent(mut entry: AuditEntry, agent: Option<&str>) -> AuditEntry {
    if let (Some(agent), Some(details)) = (agent, entry.details.as_object_mut()) {
        details.insert("agent".into(), json!(agent));
    }
    entry
}

impl AuditLog for GatewayAudit {
    fn record<'a>(&'a self, event: &'a GatewayEvent) -> RecordFuture<'a> {
        Box::pin(async move { self.keep(event).await.map_err(Unrecorded::new) })
    }

    /// A statement's query id joins the next batch of records (solo) or goes to the outbox
    /// from a task (team), without the gateway waiting.
    fn record_later(self: Arc<Self>, event: GatewayEvent) {
        let Ok(grants) = &self.grants else {
            tracing::error!("an audit record could not be kept: the grants service is not running");
            return;
        };
        match self.answered_entry(&event) {
            Ok(Some(entry)) => grants.record_later(entry),
            Ok(None) => {
                let this = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = this.keep(&event).await {
                        tracing::error!(reason = %e, "an audit record could not be kept");
                    }
                });
            }
            Err(e) => tracing::error!(reason = %e, "an audit record could not be kept"),
        }
    }

    fn problem(&self) -> Option<String> {
        match &self.grants {
            Err(e) => Some(e.clone()),
            Ok(g) => g.audit_problem(),
        }
    }
}

fn close_actor(who: Subject, reason: CloseReason) -> (AuditActor, &'static str) {
    match reason {
        CloseReason::ClosedByTool => (AuditActor::User(who), "closed by the tool"),
        // The user closed it from the tray or `snowgate sessions end`.
        CloseReason::Ended(r) if r.kind == EndKind::ClosedInSnowgate => {
            (AuditActor::User(who), "closed in Snowgate")
        }
        CloseReason::Ended(r) => (
            AuditActor::System,
            match r.kind {
                EndKind::Expired => "grant expired",
                EndKind::Revoked => "grant revoked",
                EndKind::SignedOut => "signed out",
                _ => "closed in Snowgate",
            },
        ),
        CloseReason::UpstreamGone => (AuditActor::System, "Snowflake ended it"),
        CloseReason::Shutdown => (AuditActor::System, "Snowgate stopped"),
    }
}

async fn requester(grants: &GrantsBackend, grant_id: &str) -> Option<Subject> {
    let id = grant_id.parse::<GrantId>().ok()?;
    grants
        .get_for_audit(&id)
        .await
        .map(|g| g.requester().subject.clone())
}

/// The tool as the audit names it: how it named itself (`PythonConnector 3.12.1`), after the
/// name of the tool secret it logged in with, if any (`notebook (PythonConnector 3.12.1)`).
fn tool_name(info: &SessionInfo) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if let Some(a) = &info.tool.app_id {
        parts.push(a);
    }
    if let Some(v) = &info.tool.app_version {
        parts.push(v);
    }
    let named = if parts.is_empty() {
        "unknown".to_string()
    } else {
        parts.join(" ")
    };
    match &info.tool.secret_name {
        Some(secret) => format!("{secret} ({named})"),
        None => named,
    }
}

fn session_ref(session: &str, tool: &str, role: &str, grant_id: &str) -> Option<SessionRef> {
    Some(SessionRef {
        session: session.to_string(),
        tool: tool.to_string(),
        role: RoleName::new(role).ok()?,
        grant: grant_id.parse().ok()?,
    })
}

async fn record(grants: &GrantsBackend, entry: AuditEntry) {
    grants.record(entry).await;
}
