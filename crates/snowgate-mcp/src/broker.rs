//! The MCP server's link to the Snowgate broker: the control socket, as the user who runs
//! `snowgate mcp` (the socket admits only that OS user).
//!
//! It asks for the gateway's address (`connect_info`), for the agent behind a secret with its
//! policy (`agent_whoami`, refused for a secret that is no agent's or an agent that expired or
//! was removed), for the user's grants and roles, and files access requests as the agent
//! (`agent_request_access`, which the broker marks "requested by agent NAME"). A connection
//! per call: the broker may restart between tool calls.

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use snowgate_engine::agents::Agent;
use snowgate_engine::connect_info::ConnectInfo;
use snowgate_engine::control::answers::{GrantView, RoleInfo};
use snowgate_engine::control::{ControlClient, ControlError, ErrorKind, PresentedSecret, Request};

/// The control socket of the broker that serves this user.
#[derive(Debug, Clone)]
pub struct BrokerLink {
    socket: PathBuf,
}

impl BrokerLink {
    pub fn new(socket: PathBuf) -> BrokerLink {
        BrokerLink { socket }
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, request: Request) -> Result<T, String> {
        self.call_typed(request).await.map_err(|e| e.message)
    }

    async fn call_typed<T: serde::de::DeserializeOwned>(
        &self,
        request: Request,
    ) -> Result<T, ControlError> {
        let mut client = ControlClient::connect(&self.socket)
            .await
            .map_err(|e| ControlError::new(ErrorKind::Unavailable, e.to_string()))?;
        client.call_as::<T>(&request).await
    }

    /// Where the gateway listens, for the account and user.
    pub async fn connect_info(&self) -> Result<ConnectInfo, String> {
        self.call(Request::ConnectInfo).await
    }

    /// The agent whose secret this is, with its policy, as the broker knows it now.
    pub async fn agent(&self, secret: &SecretString) -> Result<Agent, String> {
        self.agent_checked(secret).await.map_err(|e| e.message)
    }

    /// [`BrokerLink::agent`], with the kind of failure: `Unavailable` or `Internal` when the
    /// broker could not answer, anything else when it refused the secret.
    pub async fn agent_checked(&self, secret: &SecretString) -> Result<Agent, ControlError> {
        self.call_typed(Request::AgentWhoami {
            secret: PresentedSecret::new(secret.expose_secret()),
        })
        .await
    }

    /// The signed-in user's grants.
    pub async fn grants(&self) -> Result<Vec<GrantView>, String> {
        self.call(Request::Grants { all: false }).await
    }

    /// The requestable roles and their rules.
    pub async fn roles(&self) -> Result<Vec<RoleInfo>, String> {
        self.call(Request::Roles).await
    }

    /// Asks for `role` as the agent behind `secret`.
    pub async fn request_access(
        &self,
        secret: &SecretString,
        role: &str,
        duration_secs: u64,
        reason: &str,
    ) -> Result<GrantView, String> {
        self.call(Request::AgentRequestAccess {
            secret: PresentedSecret::new(secret.expose_secret()),
            role: role.to_string(),
            duration_secs,
            reason: reason.to_string(),
        })
        .await
    }
}

/// The few facts of a grant the tools show, read from its wire form.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GrantFacts {
    pub id: String,
    pub role: String,
    pub state: String,
    pub expires_at: Option<String>,
    pub pending_until: Option<String>,
    pub reason: String,
}

impl GrantFacts {
    pub fn of(view: &GrantView) -> GrantFacts {
        let v = serde_json::to_value(view).unwrap_or(Value::Null);
        let s = |k: &str| v[k].as_str().map(str::to_string);
        GrantFacts {
            id: s("id").unwrap_or_default(),
            role: s("role").unwrap_or_default(),
            state: s("state").unwrap_or_default().to_ascii_lowercase(),
            expires_at: s("expires_at"),
            pending_until: s("pending_until"),
            reason: s("reason").unwrap_or_default(),
        }
    }

    pub fn is_active(&self) -> bool {
        self.state == "active"
    }

    pub fn is_pending(&self) -> bool {
        self.state == "pending"
    }
}
