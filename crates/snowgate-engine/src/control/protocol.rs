//! The control socket's messages.

use serde::{Deserialize, Serialize};

/// A call from a client to the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
pub enum Request {
    /// The broker's status.
    ///
    /// Answer: [`crate::BrokerStatus`].
    Status,
    /// Start a sign-in: the browser flow, or the device flow with `device`. With
    /// `session_only`, tokens stay in memory instead of the OS keyring.
    ///
    /// Answer: [`crate::broker::LoginStart`].
    LoginBegin {
        #[serde(default)]
        device: bool,
        #[serde(default)]
        session_only: bool,
    },
    /// Wait for a sign-in started with `LoginBegin` to finish.
    ///
    /// Answer: [`crate::identity::Profile`].
    LoginWait { login_id: String },
    /// Sign out: revoke at the IdP, delete the keyring entry, drop every token.
    ///
    /// Answer: [`LogoutAnswer`](super::answers::LogoutAnswer).
    Logout,
    /// Who is signed in, and when their tokens expire (never a token value).
    ///
    /// Answer: [`WhoAmIAnswer`](super::answers::WhoAmIAnswer).
    Whoami,
    /// `snowgate doctor`: check the live setup (IdP, tokens, groups, gateway logins, team
    /// server) and answer with a checklist and its fixes.
    ///
    /// Answer: [`crate::doctor::Report`].
    Doctor,
    /// The requestable roles and their rules.
    ///
    /// Answer: a list of [`RoleInfo`](super::answers::RoleInfo).
    Roles,
    /// Ask for a role for a while, as the signed-in user.
    ///
    /// Answer: [`GrantView`](super::answers::GrantView).
    RequestAccess {
        role: String,
        duration_secs: u64,
        reason: String,
        #[serde(default)]
        ticket: Option<String>,
    },
    /// The signed-in user's grants, or everyone's with `all`.
    ///
    /// Answer: a list of [`GrantView`](super::answers::GrantView).
    Grants {
        #[serde(default)]
        all: bool,
    },
    /// One grant.
    ///
    /// Answer: [`GrantView`](super::answers::GrantView).
    GrantGet { id: String },
    /// Start an approver's fresh IdP sign-in (`prompt=login`); `grant_id` is checked first.
    ///
    /// Answer: [`ApproverLoginStart`](super::answers::ApproverLoginStart).
    ApproverLoginBegin {
        #[serde(default)]
        grant_id: Option<String>,
    },
    /// Approve a request or an extension. Solo mode: as the approver who signed in with
    /// `approver_login_id` (required). Team mode: as the signed-in user (none is needed).
    ///
    /// Answer: [`GrantView`](super::answers::GrantView).
    Approve {
        id: String,
        #[serde(default)]
        comment: Option<String>,
        #[serde(default)]
        approver_login_id: Option<String>,
    },
    /// Deny a request or an extension (a comment is required), as the approver (solo mode:
    /// `approver_login_id` is required) or the signed-in user (team mode).
    ///
    /// Answer: [`GrantView`](super::answers::GrantView).
    Deny {
        id: String,
        comment: String,
        #[serde(default)]
        approver_login_id: Option<String>,
    },
    /// Revoke an active grant: as an approver with `approver_login_id`, or without it as the
    /// signed-in user (solo mode: the requester giving up their own grant; team mode: the
    /// requester or an approver of the role, as the server decides).
    ///
    /// Answer: [`GrantView`](super::answers::GrantView).
    Revoke {
        id: String,
        #[serde(default)]
        comment: Option<String>,
        #[serde(default)]
        approver_login_id: Option<String>,
    },
    /// Ask for more time on an active grant.
    ///
    /// Answer: [`GrantView`](super::answers::GrantView).
    Extend {
        id: String,
        by_secs: u64,
        reason: String,
    },
    /// Withdraw a pending request or extension.
    ///
    /// Answer: [`GrantView`](super::answers::GrantView).
    Cancel { id: String },
    /// Audit records since an RFC 3339 time.
    ///
    /// Answer: a list of [`snowgate_grants::AuditRecord`].
    Audit {
        #[serde(default)]
        since: Option<String>,
        #[serde(default)]
        limit: Option<u32>,
    },
    /// Verify the audit log's hash chain and anchor.
    ///
    /// Answer: [`AuditVerification`](super::answers::AuditVerification).
    AuditVerify,
    /// The audit log as JSON Lines.
    ///
    /// Answer: [`AuditExport`](super::answers::AuditExport).
    AuditExport,
    /// The gateway's live sessions.
    ///
    /// Answer: a list of [`SessionInfo`](super::answers::SessionInfo).
    Sessions,
    /// Close one gateway session from Snowgate's side (`S12` or `12`); the tool is told why.
    ///
    /// Answer: [`SessionEnded`](super::answers::SessionEnded).
    SessionEnd { id: String },
    /// The settings that point a local tool at the gateway (host, port, account, user, ...).
    ///
    /// Answer: [`crate::connect_info::ConnectInfo`].
    ConnectInfo,
    /// A short-lived Snowflake token for a role the user holds a usable grant for.
    ///
    /// Answer: [`TokenAnswer`](super::answers::TokenAnswer).
    Token { role: String },
    /// Create a connection secret for a tool (replace it with `rotate`); the answer holds the
    /// secret, the only time it is shown.
    ///
    /// Answer: [`ToolSecretCreated`](super::answers::ToolSecretCreated).
    ToolSecretCreate {
        name: String,
        #[serde(default)]
        rotate: bool,
    },
    /// The tools that have a connection secret, with creation times (never a secret).
    ///
    /// Answer: a list of [`crate::tool_secrets::ToolSecretInfo`].
    ToolSecretList,
    /// Delete a tool's connection secret; logins with it are refused from now on.
    ///
    /// Answer: [`ToolSecretRevoked`](super::answers::ToolSecretRevoked).
    ToolSecretRevoke { name: String },
    /// Add an agent: a secret with a policy. The answer holds the secret, the only time it is
    /// shown. Roles must be configured ones; numbers at least 1; `expires_secs` from now.
    ///
    /// Answer: [`AgentAdded`](super::answers::AgentAdded).
    AgentAdd {
        name: String,
        #[serde(default)]
        roles: Option<Vec<String>>,
        #[serde(default)]
        read_only: bool,
        #[serde(default)]
        max_rows: Option<u64>,
        #[serde(default)]
        max_bytes: Option<u64>,
        #[serde(default)]
        statements_per_minute: Option<u32>,
        #[serde(default)]
        expires_secs: Option<u64>,
    },
    /// The agents with their policies (never a secret).
    ///
    /// Answer: a list of [`crate::agents::Agent`].
    AgentList,
    /// Remove an agent: its secret stops working and its gateway sessions end.
    ///
    /// Answer: [`AgentRemoved`](super::answers::AgentRemoved).
    AgentRemove { name: String },
    /// The agent whose secret this is, with its policy; refused with a sentence for a secret
    /// that is no agent's or an agent that expired.
    ///
    /// Answer: [`crate::agents::Agent`].
    AgentWhoami { secret: PresentedSecret },
    /// Ask for a role as the agent whose secret this is (`snowgate mcp`'s `request_access`):
    /// the secret is checked as for `agent_whoami`, the role must be one the agent's policy
    /// allows, and the request is filed as the signed-in user's with its reason starting
    /// "requested by agent NAME". A person decides it unless the role's policy approves it at
    /// once.
    ///
    /// Answer: [`GrantView`](super::answers::GrantView).
    AgentRequestAccess {
        secret: PresentedSecret,
        role: String,
        duration_secs: u64,
        reason: String,
    },
}

/// A secret a client presents to be checked (`agent_whoami`). It is read from and written to
/// the wire, but never `Debug`-printed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PresentedSecret(String);

impl PresentedSecret {
    pub fn new(secret: impl Into<String>) -> PresentedSecret {
        PresentedSecret(secret.into())
    }

    /// The secret itself, to check it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for PresentedSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Request {
    /// The request's method on the wire (`status`, `grant_get`, ...), for messages.
    pub fn method(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v["method"].as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// The broker's answer to one [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok(serde_json::Value),
    Error(ControlError),
}

/// What kind of failure a [`ControlError`] is, so clients can pick an exit code or a remedy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request was malformed or named something that does not exist.
    BadRequest,
    /// The caller may not do this.
    Forbidden,
    /// The user must sign in first.
    SignedOut,
    /// Something outside the broker (IdP, keyring, Snowflake) failed.
    Unavailable,
    /// A bug or an unexpected state in the broker.
    Internal,
}

/// A failure with a sentence a person can act on. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error, ts_rs::TS)]
#[error("{message}")]
pub struct ControlError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ControlError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ControlError {
        ControlError {
            kind,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_a_stable_wire_form() {
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"method":"status"}"#
        );
        let r: Request = serde_json::from_str(r#"{"method":"status"}"#).unwrap();
        assert_eq!(r, Request::Status);
        assert_eq!(
            serde_json::to_string(&Request::SessionEnd { id: "S3".into() }).unwrap(),
            r#"{"method":"session_end","params":{"id":"S3"}}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::ConnectInfo).unwrap(),
            r#"{"method":"connect_info"}"#
        );
    }

    #[test]
    fn a_presented_secret_is_on_the_wire_but_never_debug_printed() {
        let r = Request::AgentWhoami {
            secret: PresentedSecret::new("sga_sekrit"),
        };
        assert!(!format!("{r:?}").contains("sekrit"), "{r:?}");
        let json = serde_json::to_string(&r).unwrap();
        assert_eq!(
            json,
            r#"{"method":"agent_whoami","params":{"secret":"sga_sekrit"}}"#
        );
        let back: Request = serde_json::from_str(&json).unwrap();
        assert_eq!(back, r);
    }

    #[test]
    fn an_agent_add_needs_only_a_name() {
        let r: Request =
            serde_json::from_str(r#"{"method":"agent_add","params":{"name":"bot"}}"#).unwrap();
        assert_eq!(
            r,
            Request::AgentAdd {
                name: "bot".into(),
                roles: None,
                read_only: false,
                max_rows: None,
                max_bytes: None,
                statements_per_minute: None,
                expires_secs: None,
            }
        );
    }

    #[test]
    fn a_decision_may_come_without_an_approver_sign_in() {
        let r: Request =
            serde_json::from_str(r#"{"method":"approve","params":{"id":"g_x"}}"#).unwrap();
        assert_eq!(
            r,
            Request::Approve {
                id: "g_x".into(),
                comment: None,
                approver_login_id: None
            }
        );
        let r: Request = serde_json::from_str(
            r#"{"method":"deny","params":{"id":"g_x","comment":"no","approver_login_id":"abc"}}"#,
        )
        .unwrap();
        assert_eq!(
            r,
            Request::Deny {
                id: "g_x".into(),
                comment: "no".into(),
                approver_login_id: Some("abc".into())
            }
        );
    }
}
