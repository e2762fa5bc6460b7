//! The broker as the app runs it.
//!
//! The app is the broker for its OS user: at launch it resolves the config exactly as the CLI
//! does (`$SNOWGATE_CONFIG`, then the XDG default), starts the engine's [`Broker`] on Tauri's
//! Tokio runtime, and serves the control socket, so `snowgate status`, `login` and `whoami`
//! talk to the app just as they talk to `snowgate up`, except that a request for a token or a
//! tool secret first waits for the person to allow it in the window ([`crate::confirm`]). If any step fails, the shell keeps
//! running with the reason, so the window can say what is wrong and the tray can show the
//! error icon; [`BrokerHost::restart`] tries again after the person has fixed the cause.
//!
//! One broker per OS user is the rule, so the app checks the control socket before it starts
//! its own broker: a second broker would restore the same sign-in and refresh the same
//! refresh token, which the IdP treats as token reuse and answers by revoking the sign-in.

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use snowgate_engine::broker::{ControlServerTask, LaunchError};
use snowgate_engine::config::ConfigError;
use snowgate_engine::control::{default_socket_path, Confirmer};
use snowgate_engine::paths::{self, ProcessEnv};
use snowgate_engine::{Broker, BrokerStatus, Config, Engine};
use tauri::async_runtime::{self, JoinHandle};
use tauri::{AppHandle, Manager};
use tokio::sync::{Notify, RwLock};

use crate::confirm::{TrayConfirmer, Waiting};
use crate::follow;

/// Why the broker is not running. Serialized for the UI as `{ "kind": ..., "message": ... }`;
/// `message` is a sentence a person can act on, with the engine's own text where it has one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StartupError {
    /// The config file is missing, unreadable or invalid, or its path cannot be resolved.
    Config { message: String },
    /// The data directory could not be resolved or created.
    DataDir { message: String },
    /// Another broker (`snowgate up`, or another Snowgate app) already serves this user's
    /// control socket.
    AlreadyRunning { message: String },
    /// The control socket could not be opened (no `$XDG_RUNTIME_DIR`, or a directory that is
    /// not private).
    ControlSocket { message: String },
}

impl StartupError {
    /// The sentence shown in the window.
    pub fn message(&self) -> &str {
        match self {
            StartupError::Config { message }
            | StartupError::DataDir { message }
            | StartupError::AlreadyRunning { message }
            | StartupError::ControlSocket { message } => message,
        }
    }

    fn already_running(socket: &Path) -> StartupError {
        StartupError::AlreadyRunning {
            message: format!(
                "A Snowgate broker is already running for this user (snowgate up?); stop it, \
                 then choose Try again. Its control socket is {}.",
                socket.display()
            ),
        }
    }
}

/// A running broker and what the app keeps alive beside it.
pub struct Running {
    broker: Arc<Broker>,
    /// Dropping it stops serving the CLI and removes the socket file.
    control: Option<ControlServerTask>,
    /// Follow the broker's identity, grant and gateway events into the tray, the window and
    /// notifications.
    followers: Vec<JoinHandle<()>>,
    /// Tells the follower that the broker may hold a new identity to subscribe to.
    identity_changed: Arc<Notify>,
}

impl Running {
    /// Stops serving the CLI, stops following events, and shuts the broker's gateway down
    /// (its port is free and its upstream sessions are closed when this returns).
    async fn stop(mut self) {
        self.control.take();
        for follower in &self.followers {
            follower.abort();
        }
        self.broker.shutdown().await;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        for follower in &self.followers {
            follower.abort();
        }
    }
}

/// The app's broker, or why it could not start. Managed as Tauri state.
pub struct BrokerHost {
    /// `None` while [`BrokerHost::restart`] holds the write lock (nobody sees that), and after
    /// [`BrokerHost::stop`].
    slot: RwLock<Option<Result<Running, StartupError>>>,
}

impl BrokerHost {
    /// Starts the broker from the environment's config and data directory, and serves the
    /// control socket. Must run on Tauri's async runtime.
    pub async fn start(app: &AppHandle) -> BrokerHost {
        BrokerHost {
            slot: RwLock::new(Some(start(app).await)),
        }
    }

    /// Stops the running broker (control socket, event follower, gateway) and then starts a
    /// new one from a fresh read of the config, whether or not the previous start worked.
    pub async fn restart(&self, app: &AppHandle) {
        let mut slot = self.slot.write().await;
        // Stop the old broker before the new one restores the same sign-in and takes the
        // socket and the gateway's port.
        if let Some(Ok(running)) = slot.take() {
            running.stop().await;
        }
        *slot = Some(start(app).await);
    }

    /// Stops the broker and removes the control socket; used when the app quits.
    pub async fn stop(&self) {
        let running = self.slot.write().await.take();
        if let Some(Ok(running)) = running {
            running.stop().await;
            tracing::info!("broker stopped");
        }
    }

    /// The running broker, or why there is none.
    pub async fn broker(&self) -> Result<Arc<Broker>, StartupError> {
        self.with_running(|r| r.broker.clone()).await
    }

    /// The broker's status, or why the broker is not running.
    pub async fn status(&self) -> Result<BrokerStatus, StartupError> {
        self.with_running(|r| r.broker.status()).await
    }

    /// Says that the broker may have replaced its identity (a session-only sign-in does), so
    /// the event follower subscribes again.
    pub async fn identity_changed(&self) {
        let _ = self.with_running(|r| r.identity_changed.notify_one()).await;
    }

    async fn with_running<T>(&self, f: impl FnOnce(&Running) -> T) -> Result<T, StartupError> {
        match self.slot.read().await.as_ref() {
            Some(Ok(running)) => Ok(f(running)),
            Some(Err(problem)) => Err(problem.clone()),
            // Only after `stop`, while the app quits.
            None => Err(StartupError::ControlSocket {
                message: "Snowgate is quitting; its broker has stopped".into(),
            }),
        }
    }
}

async fn start(app: &AppHandle) -> Result<Running, StartupError> {
    let engine = start_engine()?;
    let socket =
        default_socket_path(&ProcessEnv).map_err(|message| StartupError::ControlSocket {
            message: format!("Snowgate can't open its control socket: {message}"),
        })?;
    // Control-socket requests for a token or a tool secret wait for the person's answer in
    // the window (when tool secrets are required).
    let confirmer: Arc<dyn Confirmer> = Arc::new(TrayConfirmer::new(
        app.clone(),
        app.state::<Arc<Waiting>>().inner().clone(),
    ));
    let launched = Broker::launch_confirming(engine, &socket, Some(confirmer)).await;
    let (broker, control) = launched.map_err(|e| match e {
        LaunchError::AlreadyRunning { socket } => {
            tracing::warn!(socket = %socket.display(), "another broker serves the control socket");
            StartupError::already_running(&socket)
        }
        e @ LaunchError::ControlSocket { .. } => StartupError::ControlSocket {
            message: e.to_string(),
        },
    })?;
    let identity_changed = Arc::new(Notify::new());
    let followers = vec![
        async_runtime::spawn(follow::identity_events(
            app.clone(),
            broker.clone(),
            identity_changed.clone(),
        )),
        async_runtime::spawn(follow::engine_events(app.clone(), broker.clone())),
    ];
    Ok(Running {
        broker,
        control: Some(control),
        followers,
        identity_changed,
    })
}

fn start_engine() -> Result<Engine, StartupError> {
    let located = paths::config_file(None, &ProcessEnv).map_err(|e| StartupError::Config {
        message: format!("cannot locate the config file: {e}"),
    })?;
    let config = load_config(&located.path, &located.how_found).map_err(|e| {
        tracing::warn!(error = %e, "config not usable");
        StartupError::Config {
            message: e.to_string(),
        }
    })?;
    let data = paths::data_dir(None, &ProcessEnv).map_err(|e| StartupError::DataDir {
        message: format!("cannot locate the data directory: {e}"),
    })?;
    let engine = Engine::new(config, data.path.clone()).map_err(|e| StartupError::DataDir {
        message: format!(
            "creating the data directory at {} ({}): {e}",
            data.path.display(),
            data.how_found
        ),
    })?;
    tracing::info!(config = %located.path.display(), data = %data.path.display(), "engine ready");
    Ok(engine)
}

/// Loads the config, turning "no such file" into the engine's own `Missing` error so that the
/// message says where the path came from and how to create the file.
fn load_config(path: &Path, how_found: &str) -> Result<Config, ConfigError> {
    match Config::load(path) {
        Err(ConfigError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            Err(ConfigError::Missing {
                path: path.to_path_buf(),
                how_found: how_found.to_string(),
            })
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn startup_error_serializes_as_kind_and_message() {
        let e = StartupError::Config {
            message: "line 3".into(),
        };
        assert_eq!(
            serde_json::to_value(e).unwrap(),
            serde_json::json!({ "kind": "config", "message": "line 3" })
        );
        let e = StartupError::DataDir {
            message: "denied".into(),
        };
        assert_eq!(serde_json::to_value(e).unwrap()["kind"], "data_dir");
        let e = StartupError::ControlSocket {
            message: "no runtime dir".into(),
        };
        assert_eq!(serde_json::to_value(e).unwrap()["kind"], "control_socket");
    }

    #[test]
    fn already_running_says_what_to_do_and_names_the_socket() {
        let e = StartupError::already_running(Path::new("/run/user/1000/snowgate/control.sock"));
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["kind"], "already_running");
        let text = e.message();
        assert!(
            text.starts_with("A Snowgate broker is already running for this user (snowgate up?)"),
            "{text}"
        );
        assert!(text.contains("stop it, then choose Try again"), "{text}");
        assert!(
            text.contains("/run/user/1000/snowgate/control.sock"),
            "{text}"
        );
    }

    #[test]
    fn a_missing_file_says_where_the_path_came_from() {
        let dir = std::env::temp_dir().join("snowgate-app-test-no-such-dir");
        let err = load_config(&dir.join("config.toml"), "from $SNOWGATE_CONFIG").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no config file at"), "{text}");
        assert!(text.contains("from $SNOWGATE_CONFIG"), "{text}");
    }
}
