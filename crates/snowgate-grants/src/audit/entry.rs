//! What callers append to the audit log.

use std::borrow::Cow;
use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::event::{Cause, GrantEvent, GrantEventKind};
use crate::model::{Actor, Grant, GrantId, RoleName, Subject};
use crate::timestamp::Timestamp;

/// Who a record is about: a person, or Snowgate acting on its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AuditActor {
    /// A person, by subject. Stored as `user:SUBJECT`.
    User(Subject),
    /// The auto-approval policy. Stored as `policy`.
    Policy,
    /// Time (timeouts and expiry). Stored as `clock`.
    Clock,
    /// Snowgate itself, for example closing sessions when a grant ends. Stored as `system`.
    System,
}

impl AuditActor {
    /// The stored form.
    pub fn as_stored(&self) -> Cow<'_, str> {
        match self {
            AuditActor::User(s) => Cow::Owned(format!("user:{s}")),
            AuditActor::Policy => Cow::Borrowed("policy"),
            AuditActor::Clock => Cow::Borrowed("clock"),
            AuditActor::System => Cow::Borrowed("system"),
        }
    }

    /// Reads the stored form back; `None` if it is not one.
    pub fn from_stored(s: &str) -> Option<AuditActor> {
        match s {
            "policy" => Some(AuditActor::Policy),
            "clock" => Some(AuditActor::Clock),
            "system" => Some(AuditActor::System),
            _ => s
                .strip_prefix("user:")
                .and_then(|sub| Subject::new(sub).ok())
                .map(AuditActor::User),
        }
    }
}

impl fmt::Display for AuditActor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_stored())
    }
}

impl From<&Cause> for AuditActor {
    fn from(cause: &Cause) -> AuditActor {
        match cause {
            Cause::Person(a) => AuditActor::User(a.subject.clone()),
            Cause::Policy => AuditActor::Policy,
            Cause::Clock => AuditActor::Clock,
        }
    }
}

/// The kind of a record, a dotted name like `grant.approved`. Open-ended, so records written
/// by a newer Snowgate still read and verify.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AuditKind(Cow<'static, str>);

impl AuditKind {
    pub const SIGN_IN: AuditKind = AuditKind::known("auth.sign_in");
    pub const SIGN_OUT: AuditKind = AuditKind::known("auth.sign_out");
    pub const SESSION_OPENED: AuditKind = AuditKind::known("session.opened");
    pub const SESSION_CLOSED: AuditKind = AuditKind::known("session.closed");
    pub const STATEMENT: AuditKind = AuditKind::known("session.statement");
    /// Snowflake's answer to a recorded statement: its query id (joined by `request_id`).
    pub const STATEMENT_ANSWERED: AuditKind = AuditKind::known("session.statement_answered");
    /// A statement the session's rules refused before it went upstream (read-only, a rate).
    pub const STATEMENT_REFUSED: AuditKind = AuditKind::known("session.statement_refused");
    /// A query's result fetched later (an async query's, a multi-statement child's).
    pub const RESULT_FETCHED: AuditKind = AuditKind::known("session.result_fetched");
    /// The team server's reaper ended a Snowflake session of a grant that ended.
    pub const SESSION_REAPED: AuditKind = AuditKind::known("session.reaped");

    const fn known(name: &'static str) -> AuditKind {
        AuditKind(Cow::Borrowed(name))
    }

    /// A kind by name.
    pub fn new(name: impl Into<String>) -> AuditKind {
        AuditKind(Cow::Owned(name.into()))
    }

    /// The kind for a grant event: `grant.` and the event's name (`grant.extension_denied`).
    pub fn for_grant_event(kind: &GrantEventKind) -> AuditKind {
        AuditKind(Cow::Owned(format!("grant.{}", kind.name())))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A record to append. The ledger gives it a sequence number and chains it.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEntry {
    /// When it happened.
    pub at: Timestamp,
    /// Who did it.
    pub actor: AuditActor,
    /// What kind of record.
    pub kind: AuditKind,
    /// The grant it concerns, if any.
    pub grant_id: Option<GrantId>,
    /// The role it concerns, if any.
    pub role: Option<RoleName>,
    /// Everything else, as a JSON object. Stored in canonical form (see [`super::chain`]).
    pub details: Value,
}

/// A gateway session, as session and statement records name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRef {
    /// The gateway's session id (never an upstream token).
    pub session: String,
    /// The tool, as the driver reported itself (`PythonConnector 3.12`, `JDBC`).
    pub tool: String,
    /// The role the session runs as.
    pub role: RoleName,
    /// The grant that authorized it.
    pub grant: GrantId,
}

/// A statement run through the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementRef<'a> {
    /// Snowflake's query id.
    pub query_id: &'a str,
    /// The SQL text. Hashed always; stored only when `keep_text` is set.
    pub text: &'a str,
    /// Whether config asks for statement text in the log.
    pub keep_text: bool,
}

impl AuditEntry {
    /// The record for a grant event, or `None` for events that record nothing new (the
    /// expiry warning, which is a notification rather than a change of access).
    pub fn for_event(event: &GrantEvent, grant: &Grant) -> Option<AuditEntry> {
        if matches!(event.kind, GrantEventKind::ExpiringSoon { .. }) {
            return None;
        }
        let mut details = serde_json::to_value(&event.kind).expect("events serialize");
        let obj = details
            .as_object_mut()
            .expect("events serialize as objects");
        obj.remove("event");
        if let Cause::Person(actor) = &event.cause {
            obj.insert("by".into(), actor_details(actor));
        }
        if matches!(event.kind, GrantEventKind::Requested { .. }) {
            obj.insert("requester".into(), actor_details(grant.requester()));
            if let Some(account) = grant.account() {
                obj.insert("account".into(), json!(account));
            }
            obj.insert(
                "pending_until".into(),
                json!(grant.pending_until().to_rfc3339()),
            );
        }
        Some(AuditEntry {
            at: event.at,
            actor: AuditActor::from(&event.cause),
            kind: AuditKind::for_grant_event(&event.kind),
            grant_id: Some(event.grant.clone()),
            role: Some(event.role.clone()),
            details,
        })
    }

    /// A person signed in; their verified email and groups are recorded.
    pub fn sign_in(at: SystemTime, who: &Actor) -> AuditEntry {
        AuditEntry {
            at: at.into(),
            actor: AuditActor::User(who.subject.clone()),
            kind: AuditKind::SIGN_IN,
            grant_id: None,
            role: None,
            details: json!({ "email": who.email, "groups": who.groups }),
        }
    }

    /// A person signed out, or was signed out (`why`: "logout", "refresh token revoked").
    pub fn sign_out(at: SystemTime, who: &Subject, why: &str) -> AuditEntry {
        AuditEntry {
            at: at.into(),
            actor: AuditActor::User(who.clone()),
            kind: AuditKind::SIGN_OUT,
            grant_id: None,
            role: None,
            details: json!({ "why": why }),
        }
    }

    /// A tool opened a gateway session under a grant.
    pub fn session_opened(at: SystemTime, who: &Subject, session: &SessionRef) -> AuditEntry {
        AuditEntry {
            at: at.into(),
            actor: AuditActor::User(who.clone()),
            kind: AuditKind::SESSION_OPENED,
            grant_id: Some(session.grant.clone()),
            role: Some(session.role.clone()),
            details: json!({ "session": session.session, "tool": session.tool }),
        }
    }

    /// A gateway session closed: by the tool (`actor` the user) or by Snowgate because the
    /// grant ended (`actor` [`AuditActor::System`]); `why` says which.
    pub fn session_closed(
        at: SystemTime,
        actor: AuditActor,
        session: &SessionRef,
        why: &str,
    ) -> AuditEntry {
        AuditEntry {
            at: at.into(),
            actor,
            kind: AuditKind::SESSION_CLOSED,
            grant_id: Some(session.grant.clone()),
            role: Some(session.role.clone()),
            details: json!({ "session": session.session, "tool": session.tool, "why": why }),
        }
    }

    /// A statement ran in a gateway session. The text's SHA-256 is always recorded, so a
    /// statement can be matched later without the log holding the SQL.
    pub fn statement(
        at: SystemTime,
        who: &Subject,
        session: &SessionRef,
        statement: &StatementRef<'_>,
    ) -> AuditEntry {
        let mut details = json!({
            "session": session.session,
            "tool": session.tool,
            "query_id": statement.query_id,
            "statement_sha256": statement_hash(statement.text),
        });
        if statement.keep_text {
            details["text"] = json!(statement.text);
        }
        AuditEntry {
            at: at.into(),
            actor: AuditActor::User(who.clone()),
            kind: AuditKind::STATEMENT,
            grant_id: Some(session.grant.clone()),
            role: Some(session.role.clone()),
            details,
        }
    }
}

/// The SHA-256 of a statement's text, as lowercase hex.
pub fn statement_hash(text: &str) -> String {
    super::chain::hex(&Sha256::digest(text.as_bytes()))
}

fn actor_details(actor: &Actor) -> Value {
    json!({ "subject": actor.subject, "email": actor.email, "groups": actor.groups })
}
