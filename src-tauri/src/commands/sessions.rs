//! The gateway's open sessions, and closing one from Snowgate's side.

use serde_json::Value;
use snowgate_engine::control::{ControlError, Request};
use tauri::State;

use super::forward;
use crate::broker::BrokerHost;

/// The sessions open through the gateway: id (`S1`), tool, process, role, grant, login name,
/// since, when the grant ends, and how many statements ran.
#[tauri::command]
pub async fn sessions(host: State<'_, BrokerHost>) -> Result<Value, ControlError> {
    forward(&host, Request::Sessions).await
}

/// Closes session `id`: the upstream session is deleted, the tool is told it was closed in
/// Snowgate, and the audit log records it. Returns `{ id, ended }`; `ended` is false when the
/// session was no longer open.
#[tauri::command]
pub async fn end_session(host: State<'_, BrokerHost>, id: String) -> Result<Value, ControlError> {
    forward(&host, Request::SessionEnd { id }).await
}
