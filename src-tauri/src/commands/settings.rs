//! What the Settings screen shows: where the config is and what it says (no secret), and
//! whether Snowgate starts at login.

use std::path::PathBuf;

use serde::Serialize;
use snowgate_engine::control::{ControlError, ErrorKind};
use snowgate_engine::paths::{self, ProcessEnv};
use snowgate_engine::status::AccountStatus;
use tauri::{AppHandle, State};
use tauri_plugin_autostart::ManagerExt;

use super::running;
use crate::broker::BrokerHost;

/// The broker's settings as the window shows them. Holds no secret: the config's client
/// secret, if any, is not part of it.
#[derive(Debug, Serialize)]
pub struct Settings {
    /// The config file the broker reads (`$SNOWGATE_CONFIG`, else the XDG default).
    config_path: PathBuf,
    /// The IdP's issuer URL.
    issuer: String,
    /// Snowgate's OAuth client id at the IdP.
    client_id: String,
    /// The default Snowflake account behind the gateway (the first of `accounts`).
    snowflake_account: String,
    /// Every Snowflake account behind the gateway, in config order: the name tools give as
    /// their `account`, its identifier, and where its logins go.
    accounts: Vec<AccountStatus>,
    /// The loopback addresses the gateway listens on.
    gateway_listen: Vec<String>,
    /// The team server's URL in team mode; `null` in solo mode.
    team_server: Option<String>,
}

/// Where the config is and what the running broker read from it.
#[tauri::command]
pub async fn settings(host: State<'_, BrokerHost>) -> Result<Settings, ControlError> {
    let broker = running(&host).await?;
    let config_path = paths::config_file(None, &ProcessEnv)
        .map_err(|e| ControlError::new(ErrorKind::Internal, e))?
        .path;
    let status = broker.status();
    Ok(Settings {
        config_path,
        issuer: status.issuer,
        client_id: broker
            .engine()
            .config()
            .identity
            .client_id
            .as_str()
            .to_string(),
        snowflake_account: status.account,
        accounts: status.accounts,
        gateway_listen: status.gateway_listen,
        team_server: status.team_server,
    })
}

/// Whether Snowgate starts (in the tray, without a window) when the person logs in.
#[tauri::command]
pub async fn autostart_get(app: AppHandle) -> Result<bool, ControlError> {
    app.autolaunch().is_enabled().map_err(autostart_error)
}

/// Turns starting at login on or off; returns the new setting.
#[tauri::command]
pub async fn autostart_set(app: AppHandle, enabled: bool) -> Result<bool, ControlError> {
    let autolaunch = app.autolaunch();
    if enabled {
        autolaunch.enable()
    } else {
        autolaunch.disable()
    }
    .map_err(autostart_error)?;
    autolaunch.is_enabled().map_err(autostart_error)
}

fn autostart_error(e: tauri_plugin_autostart::Error) -> ControlError {
    ControlError::new(
        ErrorKind::Unavailable,
        format!("Snowgate cannot read or change starting at login: {e}"),
    )
}
