//! What the broker's status says about the team server: whether it answers (the last call
//! or the event stream reached it, or since when it hasn't and why), the event stream's state
//! and last event, who the server takes the signed-in user for (`GET /v1/me`, or the session
//! exchange), and the audit records waiting to go to it.
//!
//! Every call marks the server reachable or not as it goes ([`TeamClient::mark_reachable`],
//! [`TeamClient::unreachable`]); a 502 or 503 counts as unreachable too.

use std::time::SystemTime;

use serde::Serialize;
use snowgate_grants::team_api::Me;
use snowgate_grants::{GrantEvent, Timestamp};

use super::{TeamClient, TeamError};

/// The team server as the broker's status shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ts_rs::TS)]
pub struct TeamStatus {
    /// The server's URL.
    pub server: String,
    /// Whether the last call or the event stream reached it.
    pub reachable: bool,
    /// Why it can't be reached, when it can't.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub problem: Option<String>,
    /// Since when it can't be reached (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub unreachable_since: Option<String>,
    /// `connected` while the event stream is open, else `connecting`.
    pub events: String,
    /// The last event received over the stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub last_event: Option<LastEvent>,
    /// The audit records waiting to go to the server.
    pub audit: AuditReportStatus,
    /// How this desktop authenticates to the server (`[team] auth`).
    pub auth: String,
    /// Who the server takes the signed-in user for, once it has said.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub caller: Option<ServerCaller>,
}

/// The signed-in user as the team server sees them (`GET /v1/me`, or the session exchange).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, serde::Deserialize, ts_rs::TS)]
pub struct ServerCaller {
    /// The subject the server read from the token.
    pub subject: String,
    /// The groups the server resolved (the token's and its own `[[groups]]`).
    pub groups: Vec<String>,
}

/// The desktop's audit records on their way to the team server. None is ever dropped: each
/// record is taken by the server, waits in the local outbox, or is kept there refused.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ts_rs::TS)]
pub struct AuditReportStatus {
    /// Records in the local outbox the server has not taken yet (refused ones not counted).
    #[ts(type = "number")]
    pub waiting: u64,
    /// Of those, records of people other than the one signed in (they signed out before their
    /// records went out): they wait until that person signs in again on this desktop.
    #[ts(type = "number")]
    pub others: u64,
    /// How many people those records belong to.
    #[ts(type = "number")]
    pub other_people: u64,
    /// Records the server refused for good: kept in the outbox, not sent again.
    #[ts(type = "number")]
    pub refused: u64,
    /// The server's reason for the latest refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub refused_reason: Option<String>,
    /// Why the last send failed, until one succeeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub problem: Option<String>,
}

/// The last event received from the server's stream.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ts_rs::TS)]
pub struct LastEvent {
    /// The server's event id.
    pub id: String,
    /// The event's kind: `requested`, `approved`, `revoked`, ...
    pub event: String,
    /// The grant it is about.
    pub grant: String,
    /// When it arrived (RFC 3339).
    pub received_at: String,
}

#[derive(Default)]
pub(super) struct Reach {
    pub(super) problem: Option<(String, SystemTime)>,
    pub(super) connected: bool,
    pub(super) last_event: Option<LastEvent>,
}

impl TeamClient {
    /// Whether the server answers, for the broker's status.
    pub fn status(&self) -> TeamStatus {
        let reach = self.inner.reach.lock().unwrap();
        TeamStatus {
            server: self.inner.server_text.clone(),
            reachable: reach.problem.is_none(),
            problem: reach.problem.as_ref().map(|(p, _)| p.clone()),
            unreachable_since: reach
                .problem
                .as_ref()
                .map(|(_, since)| Timestamp::from(*since).to_rfc3339()),
            events: if reach.connected {
                "connected".into()
            } else {
                "connecting".into()
            },
            last_event: reach.last_event.clone(),
            audit: self.report_status(),
            auth: self.inner.auth.as_str().to_string(),
            caller: self.inner.caller.lock().unwrap().clone(),
        }
    }

    pub(super) fn report_status(&self) -> AuditReportStatus {
        let counts = self.inner.counts.lock().unwrap().clone();
        AuditReportStatus {
            waiting: counts.waiting,
            others: counts.others,
            other_people: counts.other_people,
            refused: counts.refused,
            refused_reason: counts.last_refusal,
            problem: self
                .inner
                .reports
                .lock()
                .unwrap()
                .problem()
                .map(str::to_string)
                .or_else(|| self.outbox_problem()),
        }
    }

    pub(super) fn note_last_event(&self, id: &str, event: &GrantEvent) {
        self.inner.reach.lock().unwrap().last_event = Some(LastEvent {
            id: id.to_string(),
            event: event.kind.name().to_string(),
            grant: event.grant.to_string(),
            received_at: Timestamp::from(SystemTime::now()).to_rfc3339(),
        });
    }

    pub(super) fn mark_reachable(&self) {
        let mut reach = self.inner.reach.lock().unwrap();
        if reach.problem.take().is_some() {
            tracing::info!(server = %self.inner.server_text, "the team server answers again");
        }
    }

    pub(super) fn mark_unreachable(&self, cause: &str) {
        let mut reach = self.inner.reach.lock().unwrap();
        if reach.problem.is_none() {
            tracing::warn!(server = %self.inner.server_text, cause, "the team server can't be reached");
            reach.problem = Some((cause.to_string(), SystemTime::now()));
        } else if let Some((p, _)) = reach.problem.as_mut() {
            *p = cause.to_string();
        }
    }

    pub(super) fn set_connected(&self, connected: bool) {
        self.inner.reach.lock().unwrap().connected = connected;
    }

    pub(super) fn unreachable(&self, cause: String) -> TeamError {
        self.mark_unreachable(&cause);
        TeamError::Unreachable {
            server: self.inner.server_text.clone(),
            cause,
        }
    }

    /// `GET /v1/me`: who the server takes the signed-in user for, with the groups it resolved
    /// (also kept for the status).
    pub async fn me(&self) -> Result<ServerCaller, TeamError> {
        let me: Me = self.get_json("/v1/me").await?;
        let caller = ServerCaller {
            subject: me.subject,
            groups: me.groups,
        };
        *self.inner.caller.lock().unwrap() = Some(caller.clone());
        Ok(caller)
    }
}
