//! Pointing local tools at the gateway: the connection settings, and per-tool connection
//! secrets (`[gateway] require_tool_secrets`).
//!
//! A secret created here is in the answer to [`tool_secret_create`] once, for the window to
//! show; the shell never logs or keeps it.

use serde_json::Value;
use snowgate_engine::control::{ControlError, Request};
use tauri::State;

use super::forward;
use crate::broker::BrokerHost;

/// `{ host, port, account, user, protocol: "http", require_tool_secrets, roles }`, as
/// `snowgate connect-info` prints them.
#[tauri::command]
pub async fn connect_info(host: State<'_, BrokerHost>) -> Result<Value, ControlError> {
    forward(&host, Request::ConnectInfo).await
}

/// The tools that have a connection secret, with creation times (never a secret).
#[tauri::command]
pub async fn tool_secret_list(host: State<'_, BrokerHost>) -> Result<Value, ControlError> {
    forward(&host, Request::ToolSecretList).await
}

/// Creates `name`'s connection secret (replaces it with `rotate`). The answer,
/// `{ name, secret, required }`, is the only time the secret is shown.
#[tauri::command]
pub async fn tool_secret_create(
    host: State<'_, BrokerHost>,
    name: String,
    rotate: bool,
) -> Result<Value, ControlError> {
    forward(&host, Request::ToolSecretCreate { name, rotate }).await
}

/// Deletes `name`'s connection secret and ends the sessions opened with it:
/// `{ name, revoked, sessions_ended }`.
#[tauri::command]
pub async fn tool_secret_revoke(
    host: State<'_, BrokerHost>,
    name: String,
) -> Result<Value, ControlError> {
    forward(&host, Request::ToolSecretRevoke { name }).await
}
