//! The Tauri commands the UI may call, one module per domain. Each command forwards to the
//! engine through the running [`snowgate_engine::Broker`] (see [`crate::broker::BrokerHost`]),
//! builds the engine's control [`Request`] where one exists and returns its answer unchanged;
//! errors are the engine's `{ kind, message }`. A new command also needs its name in
//! `build.rs` and a permission in `capabilities/default.json`.
//!
//! - [`status`]: the broker's status, and restarting it after a fix.
//! - [`identity`]: signing in (browser or device code), signing out, and who is signed in.
//! - [`grants`]: roles, requests, the approver's sign-in and decisions, extend and cancel.
//! - [`sessions`]: the gateway's open sessions, and closing one.
//! - [`agents`]: the AI agents with their own identities, and removing one.
//! - [`connect`]: connection settings for local tools, and per-tool connection secrets.
//! - [`audit`]: reading, verifying and exporting the audit log, and saving text to a file.
//! - [`settings`]: where the config is and what it says, and starting at login.
//! - [`confirm`]: the person's answer to a control-socket request the tray asked about, and
//!   the questions still waiting.
//! - [`window`]: what a newly opened window shows first, and its first-paint figure.
//!
//! `sign_ins` is shared by [`identity`] and [`grants`]: Cancel for a sign-in a command waits
//! for, the user's own or an approver's.

pub mod agents;
pub mod audit;
pub mod confirm;
pub mod connect;
pub mod grants;
pub mod identity;
pub mod sessions;
pub mod settings;
mod sign_ins;
pub mod status;
pub mod window;

use std::sync::Arc;

use snowgate_engine::control::{ControlError, ErrorKind, Handler, Request};
use snowgate_engine::Broker;

use crate::broker::{BrokerHost, StartupError};

/// The running broker, or an `unavailable` error with the reason it is not running.
pub(crate) async fn running(host: &BrokerHost) -> Result<Arc<Broker>, ControlError> {
    host.broker().await.map_err(not_running)
}

/// Sends `request` to the running broker, exactly as the control socket would.
pub(crate) async fn forward(
    host: &BrokerHost,
    request: Request,
) -> Result<serde_json::Value, ControlError> {
    running(host).await?.handle(request).await
}

/// [`forward`], reading the answer as `T`, the type written on the request's variant
/// (`snowgate_engine::control::answers`).
pub(crate) async fn forward_as<T: serde::de::DeserializeOwned>(
    host: &BrokerHost,
    request: Request,
) -> Result<T, ControlError> {
    let method = request.method();
    let value = forward(host, request).await?;
    serde_json::from_value(value).map_err(|e| {
        ControlError::new(
            ErrorKind::Internal,
            format!("the broker's answer to {method} can't be read: {e}"),
        )
    })
}

pub(crate) fn not_running(problem: StartupError) -> ControlError {
    ControlError::new(ErrorKind::Unavailable, problem.message())
}
