//! The broker's status, and starting the broker again after the person fixed the cause.

use snowgate_engine::BrokerStatus;
use tauri::{AppHandle, State};

use crate::broker::{BrokerHost, StartupError};
use crate::follow;

/// The broker's status, or `{ kind, message }` when the broker is not running.
#[tauri::command]
pub async fn broker_status(host: State<'_, BrokerHost>) -> Result<BrokerStatus, StartupError> {
    host.status().await
}

/// Stops the broker (if it runs), re-reads the config, starts a new broker from it and returns
/// the new status; the tray and the window follow the result.
#[tauri::command]
pub async fn reload_config(
    app: AppHandle,
    host: State<'_, BrokerHost>,
) -> Result<BrokerStatus, StartupError> {
    host.restart(&app).await;
    let status = host.status().await;
    follow::show(&app, &status);
    status
}
