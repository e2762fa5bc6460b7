//! `snowgate`: the broker in the foreground (`snowgate up`) and the commands people type.
//!
//! Every command resolves the config and data directory the same way (flags, then
//! environment, then XDG defaults) and reports problems as one sentence a person can act on,
//! with a non-zero exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use snowgate_engine::control::{default_socket_path, ControlClient, Request};
use snowgate_engine::logging::{self, LogFormat};
use snowgate_engine::paths::{self, ProcessEnv};
use snowgate_engine::{Broker, Config, Engine};

mod login;
mod render;

/// Snowgate: sign in once, and give your local BI tools short-lived, approved Snowflake sessions.
#[derive(Debug, Parser)]
#[command(name = "snowgate", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct GlobalArgs {
    /// The config file [default: $SNOWGATE_CONFIG, else $XDG_CONFIG_HOME/snowgate/config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Where the ledger and profile live [default: $SNOWGATE_DATA_DIR, else $XDG_DATA_HOME/snowgate]
    #[arg(long, global = true, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// How log lines (on stderr) are written; levels come from RUST_LOG
    #[arg(long, global = true, value_enum, default_value_t = LogFormatArg::Text)]
    log_format: LogFormatArg,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the broker in the foreground until Ctrl-C (the tray app runs the same broker)
    Up,
    /// Show the running broker's status: account, gateway address, roles, sign-in state
    Status {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Sign in through your company's identity provider (opens the browser)
    Login {
        /// Use the device flow: show a code to confirm on any device (for SSH and headless machines)
        #[arg(long)]
        device: bool,
        /// Print the sign-in URL on its own line instead of opening a browser
        #[arg(long)]
        no_browser: bool,
        /// Keep tokens in memory only (when the OS keyring can't be used); sign in again after a restart
        #[arg(long)]
        session_only: bool,
    },
    /// Sign out: revoke the sign-in at the IdP and delete it from the OS keyring
    Logout,
    /// Show who is signed in, their groups, and when tokens expire (never a token)
    Whoami {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Work with the config file
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Validate the config and print the effective config, with defaults filled in and secrets redacted
    Check,
    /// Print where the config file and data directory are, and how each was chosen
    Path,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(match cli.global.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    });
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("snowgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Config(ConfigCommand::Check) => {
            let (config, located) = load_config(&cli.global)?;
            eprintln!("{}: OK", located.path.display());
            print!("{}", config.to_redacted_toml());
            Ok(ExitCode::SUCCESS)
        }
        Command::Config(ConfigCommand::Path) => {
            let config = paths::config_file(cli.global.config.clone(), &ProcessEnv)
                .map_err(anyhow::Error::msg)?;
            let data = paths::data_dir(cli.global.data_dir.clone(), &ProcessEnv)
                .map_err(anyhow::Error::msg)?;
            println!("config:   {} ({})", config.path.display(), config.how_found);
            println!("data dir: {} ({})", data.path.display(), data.how_found);
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            let status = block_on(call(Request::Status))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", render::status(&status));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Login {
            device,
            no_browser,
            session_only,
        } => block_on(login::run(device, no_browser, session_only)),
        Command::Logout => {
            let report = block_on(call(Request::Logout))?;
            println!("{}", report["message"].as_str().unwrap_or("signed out"));
            Ok(ExitCode::SUCCESS)
        }
        Command::Whoami { json } => {
            let who = block_on(call(Request::Whoami))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&who)?);
            } else {
                print!("{}", render::whoami(&who));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Up => {
            let engine = engine(&cli.global)?;
            let socket = default_socket_path(&ProcessEnv).map_err(anyhow::Error::msg)?;
            block_on(async {
                let broker = Broker::start(engine).await;
                let control = broker
                    .serve_control(&socket)
                    .await
                    .with_context(|| format!("opening the control socket {}", socket.display()))?;
                let status = broker.status();
                tracing::info!(
                    account = %status.account,
                    issuer = %status.issuer,
                    gateway = %status.gateway_listen.join(","),
                    data_dir = %broker.engine().data_dir().display(),
                    control_socket = %control.path().display(),
                    "broker started: {}",
                    status.summary
                );
                shutdown_signal().await;
                drop(control);
                tracing::info!("broker stopped");
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn load_config(global: &GlobalArgs) -> anyhow::Result<(Config, paths::Located)> {
    let located =
        paths::config_file(global.config.clone(), &ProcessEnv).map_err(anyhow::Error::msg)?;
    if !located.path.exists() {
        return Err(snowgate_engine::config::ConfigError::Missing {
            path: located.path.clone(),
            how_found: located.how_found.clone(),
        }
        .into());
    }
    let config = Config::load(&located.path)?;
    Ok((config, located))
}

fn engine(global: &GlobalArgs) -> anyhow::Result<Engine> {
    let (config, _) = load_config(global)?;
    let data = paths::data_dir(global.data_dir.clone(), &ProcessEnv).map_err(anyhow::Error::msg)?;
    Engine::new(config, data.path.clone()).map_err(|e| {
        anyhow::anyhow!(
            "creating the data directory {} ({}): {e}",
            data.path.display(),
            data.how_found
        )
    })
}

fn block_on<T>(f: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Runtime::new()?.block_on(f)
}

/// Sends one request to the running broker.
async fn call(request: Request) -> anyhow::Result<serde_json::Value> {
    let socket = default_socket_path(&ProcessEnv).map_err(anyhow::Error::msg)?;
    let mut client = ControlClient::connect(&socket).await?;
    Ok(client.call(&request).await?)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
