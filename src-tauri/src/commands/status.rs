//! The broker's status, and re-reading the config after the person fixed it.

use snowgate_engine::BrokerStatus;
use tauri::{AppHandle, State};

use crate::broker::{Broker, StartupError};
use crate::tray;

/// The broker's status, or `{ kind, message }` when the engine is not running.
#[tauri::command]
pub fn broker_status(broker: State<'_, Broker>) -> Result<BrokerStatus, StartupError> {
    broker.status()
}

/// Re-reads the config, restarts the engine from it and returns the new status; the tray
/// follows the result.
#[tauri::command]
pub fn reload_config(
    app: AppHandle,
    broker: State<'_, Broker>,
) -> Result<BrokerStatus, StartupError> {
    broker.reload();
    let status = broker.status();
    tray::show(&app, &status);
    status
}
