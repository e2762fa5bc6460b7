//! The broker's background listeners: where grants, identity and the gateway meet.
//!
//! - [`grant_events`]: a grant that ends (expired, revoked, ...) has its gateway sessions
//!   closed at once through [`Gateway::end_grant`] (the grants timer fires at the exact
//!   deadline, so sessions are cut well within a second); an approved extension moves the
//!   sessions' end with [`Gateway::extend_grant`], so they carry on. In team mode the events
//!   come from the team server's stream and the local deadlines ([`crate::team`]).
//! - [`identity_events`]: sign-in and sign-out go to the audit log; a sign-out ends every
//!   gateway session.
//! - [`gateway_events`]: session open and close, and statements, go to the audit log.
//!
//! Audit records go through [`GrantsBackend::record`]: solo mode appends them to the local
//! ledger; team mode queues them for the team server's log (`POST /v1/audit/records`, see
//! [`crate::team::audit`]), which records them as the signed-in person.
//!
//! Each loop ends when its channel closes (the service it listens to is gone).

use std::collections::HashMap;
use std::time::SystemTime;

use serde_json::json;
use snowgate_gateway::{CloseReason, EndKind, EndReason, Gateway, GatewayEvent, SessionInfo};
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

/// Ends every open gateway session because the user signed out. Returns how many.
pub async fn end_all_sessions(gateway: &Gateway) -> usize {
    let reason = EndReason::new(EndKind::SignedOut, SystemTime::now());
    let mut grant_ids: Vec<String> = gateway
        .sessions()
        .into_iter()
        .filter(|s| s.ended.is_none())
        .map(|s| s.grant_id)
        .collect();
    grant_ids.sort();
    grant_ids.dedup();
    let mut n = 0;
    for id in grant_ids {
        n += gateway.end_grant(&id, reason).await;
    }
    n
}

/// Records the gateway's sessions and statements in the audit log.
pub async fn gateway_events(gateway: Gateway, grants: GrantsBackend) {
    let mut rx = gateway.subscribe();
    // Session id → (who, tool, role), from the open event, for the close and statement records.
    let mut open: HashMap<String, (Subject, String, RoleName)> = HashMap::new();
    loop {
        let event = match rx.recv().await {
            Ok(e) => e,
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(missed = n, "the audit log missed gateway events");
                continue;
            }
            Err(RecvError::Closed) => return,
        };
        match event {
            GatewayEvent::SessionOpened(info) => {
                let Some(who) = requester(&grants, &info.grant_id).await else {
                    continue;
                };
                let tool = tool_name(&info);
                let Some(session) =
                    session_ref(&info.id.to_string(), &tool, &info.role, &info.grant_id)
                else {
                    continue;
                };
                open.insert(
                    info.id.to_string(),
                    (who.clone(), tool, session.role.clone()),
                );
                record(
                    &grants,
                    AuditEntry::session_opened(info.opened_at, &who, &session),
                )
                .await;
            }
            GatewayEvent::SessionClosed {
                session,
                grant_id,
                role,
                reason,
            } => {
                let key = session.to_string();
                let (who, tool) = match open.remove(&key) {
                    Some((who, tool, _)) => (who, tool),
                    None => match requester(&grants, &grant_id).await {
                        Some(who) => (who, "unknown".to_string()),
                        None => continue,
                    },
                };
                let Some(sref) = session_ref(&key, &tool, &role, &grant_id) else {
                    continue;
                };
                let (actor, why) = match reason {
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
                };
                record(
                    &grants,
                    AuditEntry::session_closed(SystemTime::now(), actor, &sref, why),
                )
                .await;
            }
            GatewayEvent::Statement {
                session,
                grant_id,
                query_id,
                sql_sha256,
                sql_text,
                is_async,
                at,
            } => {
                let key = session.to_string();
                let Some((who, tool, role)) = open.get(&key).cloned() else {
                    continue;
                };
                let Ok(grant) = grant_id.parse::<GrantId>() else {
                    continue;
                };
                let mut details = json!({
                    "session": key,
                    "tool": tool,
                    "query_id": query_id,
                    "statement_sha256": sql_sha256,
                    "async": is_async,
                });
                if let Some(text) = sql_text {
                    details["text"] = json!(text);
                }
                let entry = AuditEntry {
                    at: at.into(),
                    actor: AuditActor::User(who),
                    kind: AuditKind::STATEMENT,
                    grant_id: Some(grant),
                    role: Some(role),
                    details,
                };
                record(&grants, entry).await;
            }
            _ => {}
        }
    }
}

async fn requester(grants: &GrantsBackend, grant_id: &str) -> Option<Subject> {
    let id = grant_id.parse::<GrantId>().ok()?;
    grants
        .get_for_audit(&id)
        .await
        .map(|g| g.requester().subject.clone())
}

fn tool_name(info: &SessionInfo) -> String {
    let mut parts: Vec<&str> = Vec::new();
    if let Some(a) = &info.tool.app_id {
        parts.push(a);
    }
    if let Some(v) = &info.tool.app_version {
        parts.push(v);
    }
    if parts.is_empty() {
        "unknown".into()
    } else {
        parts.join(" ")
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
