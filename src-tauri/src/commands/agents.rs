//! AI agents and automation with their own identities (`snowgate agent add`): the list, and
//! removing one, which ends its sessions. Agents are added with the CLI, which shows the new
//! secret once; the window never sees a secret.

use serde_json::Value;
use snowgate_engine::control::{ControlError, Request};
use tauri::State;

use super::forward;
use crate::broker::BrokerHost;

/// The agents: name, policy and when each was added; never a secret.
#[tauri::command]
pub async fn agent_list(host: State<'_, BrokerHost>) -> Result<Value, ControlError> {
    forward(&host, Request::AgentList).await
}

/// Removes agent `name`: its secret is deleted and its sessions end. Returns
/// `{ name, removed, sessions_ended }`.
#[tauri::command]
pub async fn agent_remove(
    host: State<'_, BrokerHost>,
    name: String,
) -> Result<Value, ControlError> {
    forward(&host, Request::AgentRemove { name }).await
}
