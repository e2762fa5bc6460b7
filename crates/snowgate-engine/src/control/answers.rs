//! The typed answer to each control [`Request`](super::Request).
//!
//! The broker builds these values and serializes them onto the socket; the CLI reads them back
//! into the same types ([`ControlClient::call_as`](super::ControlClient::call_as)); the tray app
//! hands them to the window. The window's TypeScript types are generated from these types and
//! the ones they hold (ts-rs, into `ui/src/lib/bindings/`), and the engine's `bindings` test
//! fails when the generated files are not current, so the three can't drift apart.
//!
//! Which answer goes with which request is written on each [`Request`](super::Request)
//! variant. The CLI reads every one through its type, so the CLI's tests against a real
//! broker (`crates/snowgate-cli/tests/`) fail when an answer and its type part.

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use snowgate_grants::{Grant, Timestamp};
use ts_rs::TS;

use crate::identity::WhoAmI;

/// A secret the person asked to see (a Snowflake token from `snowgate token`, a new tool
/// secret): it is serialized in the clear, because showing it is the point, and nowhere else.
/// `Debug` prints `[redacted]`, so it never reaches a log by accident.
#[derive(Clone, TS)]
#[ts(type = "string")]
pub struct RevealedSecret(SecretString);

impl RevealedSecret {
    /// Wraps `secret` for an answer.
    pub fn new(secret: SecretString) -> RevealedSecret {
        RevealedSecret(secret)
    }

    /// The secret's value, for the one place that shows it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for RevealedSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for RevealedSecret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.expose_secret())
    }
}

impl<'de> Deserialize<'de> for RevealedSecret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(RevealedSecret(SecretString::from(String::deserialize(d)?)))
    }
}

/// A grant as the desktop shows it: the grant, and what follows from it so that no client
/// works it out again. Answers `request`, `grants`, `grant_get` and every decision.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
pub struct GrantView {
    #[serde(flatten)]
    pub grant: Grant,
    /// It waits for an approver: a pending request, or an active grant's pending extension
    /// ([`Grant::awaits_decision`]).
    pub awaits_decision: bool,
    /// Seconds it runs in all: asked for, plus approved extensions.
    #[ts(type = "number")]
    pub granted_secs: u64,
}

impl From<Grant> for GrantView {
    fn from(grant: Grant) -> GrantView {
        GrantView {
            awaits_decision: grant.awaits_decision(),
            granted_secs: grant.granted_secs(),
            grant,
        }
    }
}

/// A requestable role and its rules; durations in Snowgate's grammar (`8h`, `1h30m`).
/// Answers `roles`, as a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct RoleInfo {
    pub name: String,
    /// The Snowflake account the role belongs to (its `[[snowflake]]` name).
    pub account: String,
    pub description: String,
    pub max_duration: String,
    pub approver_groups: Vec<String>,
    pub approvals_required: u32,
    /// Requests up to this long are approved at once; `None`: every request needs an approver.
    pub auto_approve_up_to: Option<String>,
    pub pending_timeout: String,
    pub extensions_allowed: bool,
}

/// An approver's fresh sign-in, started for one decision. Answers `approver_login_begin`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ApproverLoginStart {
    pub login_id: String,
    /// The page to open in the approver's browser: a short local URL that sends the browser
    /// on to the IdP's sign-in page.
    pub authorize_url: String,
}

/// What signing out did. Answers `logout`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct LogoutAnswer {
    /// Whether anyone was signed in.
    pub was_signed_in: bool,
    /// Whether the IdP revoked the refresh token.
    pub revoked: bool,
    /// The sentence to show.
    pub message: String,
}

/// Who is signed in, and in team mode who the server takes them for. Answers `whoami`.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
pub struct WhoAmIAnswer {
    #[serde(flatten)]
    pub who: WhoAmI,
    /// Team mode: the groups the server resolved (the token's and its own `[[groups]]`),
    /// which are the ones its decisions use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub server_groups: Option<Vec<String>>,
    /// Team mode: why the server could not be asked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub server_problem: Option<String>,
}

/// What verifying the audit log found. Answers `audit_verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct AuditVerification {
    /// The chain is intact up to its anchor.
    pub ok: bool,
    /// Records verified, when intact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional, type = "number")]
    pub records: Option<u64>,
    /// The verified head as `SEQ:HASH`; `None` for an empty log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub head: Option<String>,
    /// The first problem, naming the record, when not intact.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub problem: Option<String>,
}

/// The whole audit log. Answers `audit_export`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct AuditExport {
    /// How many records.
    #[ts(type = "number")]
    pub records: u64,
    /// One JSON record per line, in chain order.
    pub jsonl: String,
}

/// A live gateway session of a local tool. Answers `sessions`, as a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct SessionInfo {
    /// `S12`.
    pub id: String,
    /// The tool as it named itself (`PythonConnector`, `JDBC`), if it did.
    pub tool: Option<String>,
    pub tool_version: Option<String>,
    /// The name of the tool secret its login presented, when tool secrets are required.
    pub tool_secret: Option<String>,
    /// The agent whose secret its login presented, if any.
    pub agent: Option<String>,
    /// The process on the other end, when the OS says.
    pub process: Option<String>,
    pub pid: Option<u32>,
    pub role: String,
    /// The Snowflake account, when the gateway serves more than one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub account: Option<String>,
    pub grant: String,
    pub login_name: String,
    pub since: Timestamp,
    pub grant_ends_at: Timestamp,
    #[ts(type = "number")]
    pub statements: u64,
}

/// Whether a session was closed. Answers `session_end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct SessionEnded {
    pub id: String,
    /// `false`: it was not open.
    pub ended: bool,
}

/// A short-lived Snowflake token the person asked for. Answers `token`.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
pub struct TokenAnswer {
    pub role: String,
    pub grant: String,
    pub grant_ends_at: Option<Timestamp>,
    pub token_expires_at: Timestamp,
    #[ts(type = "number")]
    pub grant_remaining_secs: u64,
    pub token: RevealedSecret,
}

/// A tool's new connection secret, shown this once. Answers `tool_secret_create`.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
pub struct ToolSecretCreated {
    pub name: String,
    pub secret: RevealedSecret,
    /// Whether the gateway requires tool secrets (`[gateway] require_tool_secrets`).
    pub required: bool,
}

/// A tool secret deleted, and the sessions that used it ended. Answers `tool_secret_revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct ToolSecretRevoked {
    pub name: String,
    pub revoked: bool,
    #[ts(type = "number")]
    pub sessions_ended: u64,
}

/// A new agent and its secret, shown this once. Answers `agent_add`.
#[derive(Debug, Clone, Serialize, Deserialize, TS)]
pub struct AgentAdded {
    pub agent: crate::agents::Agent,
    pub secret: RevealedSecret,
}

/// An agent removed, and its sessions ended. Answers `agent_remove`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, TS)]
pub struct AgentRemoved {
    pub name: String,
    pub removed: bool,
    #[ts(type = "number")]
    pub sessions_ended: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revealed_secret_is_serialized_but_never_debug_printed() {
        let s = RevealedSecret::new(SecretString::from("sekrit-value".to_string()));
        assert_eq!(format!("{s:?}"), "[redacted]");
        let answer = ToolSecretCreated {
            name: "dbeaver".into(),
            secret: s,
            required: true,
        };
        assert!(!format!("{answer:?}").contains("sekrit-value"));
        let json = serde_json::to_string(&answer).unwrap();
        assert!(json.contains("\"secret\":\"sekrit-value\""), "{json}");
        let back: ToolSecretCreated = serde_json::from_str(&json).unwrap();
        assert_eq!(back.secret.expose(), "sekrit-value");
    }
}
