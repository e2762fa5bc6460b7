//! `snowgate serve --config server.toml`: the team server in the foreground until Ctrl-C or
//! SIGTERM. Everything it does lives in the `snowgate-server` crate; this only loads the
//! config, starts it and stops it.

use std::path::PathBuf;
use std::process::ExitCode;

/// Where the server's config is when `--config` is not given.
pub const DEFAULT_SERVER_CONFIG: &str = "/etc/snowgate/server.toml";

/// Runs the team server with the config at `config` (or [`DEFAULT_SERVER_CONFIG`]).
pub async fn run(config: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let path = config.unwrap_or_else(|| PathBuf::from(DEFAULT_SERVER_CONFIG));
    let config = snowgate_server::ServerConfig::load(&path)?;
    let server = snowgate_server::start(&config).await?;
    super::shutdown_signal().await;
    tracing::info!("stopping the team server");
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
