//! The engine as the shell holds it.
//!
//! At launch the shell resolves the config exactly as the CLI does (`$SNOWGATE_CONFIG`, then
//! the XDG default) and starts the engine from it. If that fails, the shell keeps running with
//! the reason, so the window can say what is wrong and the tray can show the error icon;
//! [`Broker::reload`] tries again after the person has fixed the file.

use std::path::Path;
use std::sync::RwLock;

use serde::Serialize;
use snowgate_engine::config::ConfigError;
use snowgate_engine::paths::{self, ProcessEnv};
use snowgate_engine::{BrokerStatus, Config, Engine};

/// Why the engine is not running. Serialized for the UI as `{ "kind": ..., "message": ... }`;
/// `message` is the engine's own text, which names the file, line and key where it can.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StartupError {
    /// The config file is missing, unreadable or invalid, or its path cannot be resolved.
    Config { message: String },
    /// The data directory could not be resolved or created.
    DataDir { message: String },
}

/// The broker engine, or why it could not start. Managed as Tauri state.
pub struct Broker {
    engine: RwLock<Result<Engine, StartupError>>,
}

impl Broker {
    /// Resolves the config and data directory from the environment and starts the engine.
    pub fn start() -> Broker {
        Broker {
            engine: RwLock::new(start_engine()),
        }
    }

    /// Re-reads the config and replaces the engine, whether or not the previous start worked.
    pub fn reload(&self) {
        let fresh = start_engine();
        *self
            .engine
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
    }

    /// The broker's status, or the reason the engine is not running.
    pub fn status(&self) -> Result<BrokerStatus, StartupError> {
        match &*self
            .engine
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
        {
            Ok(engine) => Ok(engine.status()),
            Err(problem) => Err(problem.clone()),
        }
    }
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
    tracing::info!(config = %located.path.display(), data = %data.path.display(), "engine started");
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
