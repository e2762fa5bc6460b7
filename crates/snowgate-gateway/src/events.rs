//! What the gateway tells the engine: sessions opening and closing, statements, refusals.
//!
//! The engine subscribes ([`crate::Gateway::subscribe`]) and writes audit records from these
//! events. Every event is also logged as a structured `tracing` event under the target
//! `snowgate::audit`, so the record exists even before an audit log does. No event carries a
//! token, a handle or a password; statement text appears only when the gateway's
//! `audit_statement_text` option is on.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use crate::audit::{AuditLog, Unrecorded};

use crate::authorizer::PeerInfo;

/// The gateway's own id for a session: stable across renewals, shown in the tray and in
/// audit records. It is a counter, not derived from any token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(pub u64);

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S{}", self.0)
    }
}

/// The tool as it named itself in its login-request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolInfo {
    /// `CLIENT_APP_ID`, e.g. `PythonConnector`, `JavaScript`, `JDBC`.
    pub app_id: Option<String>,
    /// `CLIENT_APP_VERSION`.
    pub app_version: Option<String>,
    /// The name of the tool secret its login presented (set by the authorizer), when tool
    /// secrets are required.
    pub secret_name: Option<String>,
    /// The name of the agent whose secret its login presented (set by the authorizer): its
    /// sessions, audit records and QUERY_TAG name it.
    pub agent: Option<String>,
}

/// A session as the tray shows it. Holds no token and no handle.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub id: SessionId,
    pub tool: ToolInfo,
    pub peer: PeerInfo,
    /// The Snowflake role the session runs as.
    pub role: String,
    /// The account it is on (its name), when the gateway serves more than one.
    pub account: Option<String>,
    /// The grant the session was opened under.
    pub grant_id: String,
    /// The Snowflake user (the grant's login name).
    pub login_name: String,
    /// Snowflake's own session id (`data.sessionId` of the login answer), to join with
    /// Snowflake's query and login history.
    pub snowflake_session_id: Option<u64>,
    pub opened_at: SystemTime,
    /// When the grant ends; the session cannot outlive it.
    pub grant_ends_at: SystemTime,
    /// Query-requests the tool sent in this session.
    pub statements: u64,
    /// Set once the session's grant has ended or Snowgate closed it; the tool is then told why.
    pub ended: Option<EndReason>,
}

/// Why access ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndKind {
    /// The grant ran out.
    Expired,
    /// An approver revoked the grant.
    Revoked,
    /// The user signed out of Snowgate.
    SignedOut,
    /// The user closed this session from Snowgate (the tray or the CLI).
    ClosedInSnowgate,
}

impl EndKind {
    fn word(self) -> &'static str {
        match self {
            EndKind::Expired => "expired",
            EndKind::Revoked => "revoked",
            EndKind::SignedOut => "signed out",
            EndKind::ClosedInSnowgate => "closed in Snowgate",
        }
    }
}

/// When and why access ended. [`EndReason::sentence`] is what the tool shows the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndReason {
    pub kind: EndKind,
    pub at: SystemTime,
}

impl EndReason {
    pub fn new(kind: EndKind, at: SystemTime) -> EndReason {
        EndReason { kind, at }
    }

    /// The sentence a tool gets for a session that ended, and that the engine can reuse to
    /// refuse a new login, e.g. "Snowgate: your access to role ANALYST ended at 14:05
    /// (expired). Request access again from the Snowgate tray." The time is local wall time.
    pub fn sentence(&self, role: &str) -> String {
        let at = crate::local_time::hour_minute(self.at);
        let what_now = match self.kind {
            EndKind::Expired | EndKind::Revoked => "Request access again from the Snowgate tray.",
            EndKind::SignedOut => "Sign in to Snowgate again from the tray, then reconnect.",
            EndKind::ClosedInSnowgate => "Connect again to open a new session.",
            #[allow(unreachable_patterns)]
            _ => "Open the Snowgate tray to see why.",
        };
        format!(
            "Snowgate: your access to role {role} ended at {at} ({}). {what_now}",
            self.kind.word()
        )
    }
}

/// Why a session left the gateway's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The tool closed it (`POST /session?delete=true`).
    ClosedByTool,
    /// Its grant ended or Snowgate closed it; the upstream session was deleted.
    Ended(EndReason),
    /// Snowflake no longer knows it (its master token lapsed, or an admin ended it).
    UpstreamGone,
    /// The gateway shut down and deleted the upstream session.
    Shutdown,
}

/// Something the engine may want to record.
#[derive(Debug, Clone)]
pub enum GatewayEvent {
    /// A tool logged in and got handles.
    SessionOpened(SessionInfo),
    /// A session left the table (its upstream session is closed or gone).
    SessionClosed {
        session: SessionId,
        grant_id: String,
        role: String,
        reason: CloseReason,
    },
    /// A tool sent a query-request. Recorded before the request goes upstream.
    Statement {
        session: SessionId,
        grant_id: String,
        /// The driver's `requestId` query parameter (a UUID), which joins this record to its
        /// [`GatewayEvent::StatementAnswered`].
        request_id: Option<String>,
        /// Hex SHA-256 of the statement's text: the request's `sqlText`, or this statement's
        /// own text when `part` is set.
        sql_sha256: String,
        /// The statement text itself, only with `audit_statement_text` on.
        sql_text: Option<String>,
        /// Whether the tool asked for asynchronous execution.
        is_async: bool,
        /// `Some(n)` for a multi-statement request (`MULTI_STATEMENT_COUNT` other than 1;
        /// 0 means any number).
        multi_statement: Option<u64>,
        /// For a multi-statement request the SQL parser split, which statement this record is
        /// (from 1) of how many: each statement has its own record. `None` with
        /// `multi_statement` set: the parser could not split the text, and this one record
        /// stands for all its statements.
        part: Option<(usize, usize)>,
        at: SystemTime,
    },
    /// A query-request the session's rules refused (read-only, an agent's rate): it never
    /// went upstream. Recorded before the tool is answered.
    StatementRefused {
        session: SessionId,
        grant_id: String,
        request_id: Option<String>,
        /// Hex SHA-256 of the request's `sqlText`.
        sql_sha256: String,
        /// The statement text itself, only with `audit_statement_text` on.
        sql_text: Option<String>,
        /// The refused statement's kind (`INSERT`, `CREATE TABLE`).
        kind: String,
        /// The rule that refused it (`agent bot is read-only`).
        rule: String,
        at: SystemTime,
    },
    /// Snowflake answered a query-request: its query id, read from the answer as it streams
    /// past; `None` when the answer had none (a refused request) or ended early.
    StatementAnswered {
        session: SessionId,
        grant_id: String,
        request_id: Option<String>,
        query_id: Option<String>,
        at: SystemTime,
    },
    /// A tool fetched a query's result later (`GET /queries/{id}/result`, after an async
    /// query or for a multi-statement child). Recorded before the request goes upstream.
    ResultFetched {
        session: SessionId,
        grant_id: String,
        query_id: String,
        at: SystemTime,
    },
    /// A login the authorizer or Snowflake refused.
    LoginRefused {
        peer: PeerInfo,
        tool: ToolInfo,
        requested_role: Option<String>,
        code: String,
        message: String,
    },
    /// A request refused by the local-security checks (another OS user, a browser, a foreign
    /// Host header).
    RequestRefused {
        peer: SocketAddr,
        uid: Option<u32>,
        code: String,
        message: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_names_role_time_reason_and_next_step() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        let hm = crate::local_time::hour_minute(at);
        let s = EndReason::new(EndKind::Expired, at).sentence("ANALYST");
        assert_eq!(
            s,
            format!("Snowgate: your access to role ANALYST ended at {hm} (expired). Request access again from the Snowgate tray.")
        );
        let s = EndReason::new(EndKind::SignedOut, at).sentence("ANALYST");
        assert!(s.contains("(signed out)") && s.contains("Sign in"), "{s}");
    }
}

/// Sends events to subscribers and logs each as a structured `tracing` event; the events
/// that make audit records go to the [`AuditLog`] first, and are waited for.
#[derive(Clone)]
pub(crate) struct EventSink {
    tx: tokio::sync::broadcast::Sender<GatewayEvent>,
    audit: Arc<dyn AuditLog>,
}

/// Events buffered per subscriber before the slowest one starts missing some.
const EVENT_BUFFER: usize = 4096;

impl EventSink {
    #[cfg(test)]
    pub fn new() -> EventSink {
        EventSink::with_audit(Arc::new(crate::audit::TracingOnly))
    }

    pub fn with_audit(audit: Arc<dyn AuditLog>) -> EventSink {
        EventSink {
            tx: tokio::sync::broadcast::channel(EVENT_BUFFER).0,
            audit,
        }
    }

    /// Why the audit log can't keep records right now, if it can't.
    pub fn audit_problem(&self) -> Option<String> {
        self.audit.problem()
    }

    /// Keeps `event`'s audit record, waiting for the audit log, then tells subscribers. On
    /// `Err` nothing is broadcast, and the caller must not act as if it was recorded.
    pub async fn record(&self, event: GatewayEvent) -> Result<(), Unrecorded> {
        log(&event);
        self.audit.record(&event).await?;
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(event);
        }
        Ok(())
    }

    /// [`EventSink::record`] for what has already happened (a session that closed): a
    /// failure to record it is logged, since there is nothing left to refuse.
    pub async fn record_done(&self, event: GatewayEvent) {
        if let Err(e) = self.record(event).await {
            tracing::error!(reason = %e.reason, "an audit record could not be kept");
        }
    }

    /// Keeps the record of something already done that nobody waits on, without waiting
    /// ([`AuditLog::record_later`]), and tells subscribers. Must be called within a tokio
    /// runtime.
    pub fn record_later(&self, event: GatewayEvent) {
        log(&event);
        if self.tx.receiver_count() > 0 {
            let _ = self.tx.send(event.clone());
        }
        self.audit.clone().record_later(event);
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<GatewayEvent> {
        self.tx.subscribe()
    }

    /// Logs and broadcasts an event that makes no audit record (a refusal).
    pub fn emit(&self, event: GatewayEvent) {
        log(&event);
        // No subscriber is fine: the tracing event above is the record.
        let _ = self.tx.send(event);
    }
}

fn log(event: &GatewayEvent) {
    match event {
        GatewayEvent::SessionOpened(s) => tracing::info!(
            target: "snowgate::audit",
            event = "session_opened",
            session = %s.id,
            grant_id = %s.grant_id,
            role = %s.role,
            login_name = %s.login_name,
            snowflake_session_id = ?s.snowflake_session_id,
            client_app_id = ?s.tool.app_id,
            client_app_version = ?s.tool.app_version,
            agent = ?s.tool.agent,
            peer_pid = ?s.peer.pid,
            peer_process = ?s.peer.process_name,
        ),
        GatewayEvent::SessionClosed {
            session,
            grant_id,
            role,
            reason,
        } => tracing::info!(
            target: "snowgate::audit",
            event = "session_closed",
            session = %session,
            grant_id = %grant_id,
            role = %role,
            reason = ?reason,
        ),
        GatewayEvent::Statement {
            session,
            grant_id,
            request_id,
            sql_sha256,
            is_async,
            multi_statement,
            part,
            ..
        } => tracing::debug!(
            target: "snowgate::audit",
            event = "statement",
            session = %session,
            grant_id = %grant_id,
            request_id = ?request_id,
            sql_sha256 = %sql_sha256,
            is_async = is_async,
            multi_statement = ?multi_statement,
            part = ?part,
        ),
        GatewayEvent::StatementRefused {
            session,
            grant_id,
            request_id,
            sql_sha256,
            kind,
            rule,
            ..
        } => tracing::info!(
            target: "snowgate::audit",
            event = "statement_refused",
            session = %session,
            grant_id = %grant_id,
            request_id = ?request_id,
            sql_sha256 = %sql_sha256,
            kind = %kind,
            rule = %rule,
        ),
        GatewayEvent::StatementAnswered {
            session,
            request_id,
            query_id,
            ..
        } => tracing::debug!(
            target: "snowgate::audit",
            event = "statement_answered",
            session = %session,
            request_id = ?request_id,
            query_id = ?query_id,
        ),
        GatewayEvent::ResultFetched {
            session, query_id, ..
        } => tracing::debug!(
            target: "snowgate::audit",
            event = "result_fetched",
            session = %session,
            query_id = %query_id,
        ),
        GatewayEvent::LoginRefused {
            peer,
            tool,
            requested_role,
            code,
            message,
        } => tracing::info!(
            target: "snowgate::audit",
            event = "login_refused",
            peer_pid = ?peer.pid,
            peer_process = ?peer.process_name,
            client_app_id = ?tool.app_id,
            requested_role = ?requested_role,
            code = %code,
            message = %message,
        ),
        GatewayEvent::RequestRefused {
            peer,
            uid,
            code,
            message,
        } => tracing::warn!(
            target: "snowgate::audit",
            event = "request_refused",
            peer = %peer,
            uid = ?uid,
            code = %code,
            message = %message,
        ),
    }
}
