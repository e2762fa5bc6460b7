//! `snowgate serve --config server.toml`: the team server in the foreground until Ctrl-C or
//! SIGTERM, or with `--check`, only a check of its config. Everything it does lives in the
//! `snowgate-server` crate; this only loads the config, starts it and stops it.

use std::path::PathBuf;
use std::process::ExitCode;

/// Where the server's config is when `--config` is not given.
pub const DEFAULT_SERVER_CONFIG: &str = "/etc/snowgate/server.toml";

/// Runs the team server with the config at `config` (or [`DEFAULT_SERVER_CONFIG`]); with
/// `check`, validates the config and the files it names, prints a summary and stops.
pub async fn run(config: Option<PathBuf>, check: bool) -> anyhow::Result<ExitCode> {
    let path = config.unwrap_or_else(|| PathBuf::from(DEFAULT_SERVER_CONFIG));
    let config = snowgate_server::ServerConfig::load(&path)?;
    if check {
        let lines = snowgate_server::server::check(&config)
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", path.display()))?;
        eprintln!("{}: OK", path.display());
        for (what, value) in lines {
            println!("{:<14} {value}", format!("{what}:"));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let server = snowgate_server::start(&config).await?;
    super::shutdown_signal().await;
    tracing::info!("stopping the team server");
    server.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
