//! `snowgate`: the broker in the foreground (`snowgate up`) and the commands people type.
//!
//! Every command resolves the config and data directory the same way (flags, then
//! environment, then XDG defaults) and reports problems as one sentence a person can act on,
//! with a non-zero exit code.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use snowgate_engine::control::answers::{
    LogoutAnswer, ToolSecretCreated, ToolSecretRevoked, WhoAmIAnswer,
};
use snowgate_engine::control::{default_socket_path, ControlClient, Request};
use snowgate_engine::logging::{self, LogFormat};
use snowgate_engine::paths::{self, ProcessEnv};
use snowgate_engine::tool_secrets::ToolSecretInfo;
use snowgate_engine::{Broker, Config, Engine};

mod access;
mod agents;
mod connect_info;
mod generate;
mod login;
mod mcp;
mod render;
mod serve;
mod trust;

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
    /// Run the team server (grants on PostgreSQL, HTTPS API, Snowflake tokens) until Ctrl-C
    Serve {
        /// The server's config file [default: /etc/snowgate/server.toml]
        #[arg(long, value_name = "PATH")]
        config: Option<PathBuf>,
        /// Only check the config and the files it names (keys, TLS), print a summary, and exit
        #[arg(long)]
        check: bool,
    },
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
    /// Check the live setup (IdP, sign-in, tokens, groups, gateway logins, team server) and print
    /// a checklist with a fix for each failure; exits non-zero when a check fails
    Doctor {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Work with the config file
    #[command(subcommand)]
    Config(ConfigCommand),
    /// List the roles you can request, with their limits and approvers
    Roles {
        #[arg(long)]
        json: bool,
    },
    /// Ask for a role for a while; prints the grant id
    Request {
        /// The Snowflake role, e.g. ANALYST
        role: String,
        /// How long, counted from approval: 30m, 2h, 1h30m
        #[arg(long)]
        duration: String,
        /// Why you need it (shown to approvers and kept in the audit log)
        #[arg(long)]
        reason: String,
        /// A ticket reference
        #[arg(long)]
        ticket: Option<String>,
        /// Wait until the request is decided; exit non-zero if it is denied or times out
        #[arg(long)]
        wait: bool,
        #[arg(long)]
        json: bool,
    },
    /// List your grants (all grants with --all)
    Grants {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Approve a request or extension: in team mode as yourself; in solo mode after the
    /// approver signs in afresh at the IdP
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        /// Print the approver's sign-in URL instead of opening a browser
        #[arg(long)]
        no_browser: bool,
    },
    /// Deny a request or extension (a comment is required): in team mode as yourself; in solo
    /// mode after the approver signs in afresh
    Deny {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        #[arg(long)]
        no_browser: bool,
    },
    /// End a grant early: your own directly; anyone else's as yourself in team mode, or after an
    /// approver signs in afresh in solo mode
    Revoke {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        /// Revoke as an approver even if the grant is yours
        #[arg(long)]
        as_approver: bool,
        #[arg(long)]
        no_browser: bool,
    },
    /// Ask for more time on an active grant (a new decision under the same policy)
    Extend {
        id: String,
        /// How much longer: 30m, 1h
        #[arg(long)]
        by: String,
        #[arg(long)]
        reason: String,
    },
    /// Withdraw a pending request or extension
    Cancel { id: String },
    /// Print the shell completion script for bash, zsh or fish (for packagers)
    #[command(hide = true)]
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (snowgate.1 and one per command) into DIR (for packagers)
    #[command(hide = true)]
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
    /// Read, verify or export the audit log
    Audit {
        #[command(subcommand)]
        command: Option<AuditCommand>,
        #[arg(long)]
        json: bool,
        /// Only records since this time: RFC 3339, or a duration back from now (2h)
        #[arg(long)]
        since: Option<String>,
    },
    /// The sessions open through the gateway: tool, role, grant, since, statements
    Sessions {
        #[command(subcommand)]
        command: Option<SessionsCommand>,
        #[arg(long)]
        json: bool,
    },
    /// Print a short-lived Snowflake token for ROLE (needs an active grant); only the token goes to stdout
    Token {
        #[arg(long)]
        role: String,
    },
    /// Run a command with SNOWFLAKE_* variables (an OAuth token for ROLE) set; passes on its exit code
    Exec {
        #[arg(long)]
        role: String,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Create, list or revoke per-tool connection secrets (passwords for the gateway)
    #[command(subcommand)]
    ToolSecret(ToolSecretCommand),
    /// Add, list or remove agents: secrets with a policy (roles, read-only, caps, rate, expiry)
    #[command(subcommand)]
    Agent(agents::AgentCommand),
    /// Serve the Model Context Protocol to an AI agent: over stdio as one agent, or over
    /// Streamable HTTP on loopback for agents that connect with their secret
    Mcp(mcp::McpArgs),
    /// Trust the local CA of the gateway's HTTPS ([gateway] tls = true): install, uninstall, status
    #[command(subcommand)]
    Trust(trust::TrustCommand),
    /// Print settings that point a tool at the gateway
    ConnectInfo {
        /// python, node, jdbc, dbeaver, odbc, go, dbt or sqlalchemy
        #[arg(long)]
        tool: Option<String>,
        /// The role the settings name [default: the role of your active grant, else the
        /// first configured role]
        #[arg(long)]
        role: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Check the hash chain and its anchor; names the first bad record
    Verify,
    /// Write the whole log to stdout
    Export {
        /// Only jsonl
        #[arg(long, default_value = "jsonl")]
        format: String,
    },
}

#[derive(Debug, Subcommand)]
enum SessionsCommand {
    /// Close one session (S1, as `snowgate sessions` lists it); the tool is told it was closed in Snowgate
    End { id: String },
}

#[derive(Debug, Subcommand)]
enum ToolSecretCommand {
    /// Create a connection secret for a tool; prints it once, alone on stdout
    Create {
        /// The tool's name: 1 to 64 letters, digits, `-`, `_` or `.` (e.g. dbeaver)
        name: String,
        /// Replace the tool's existing secret (the old one stops working)
        #[arg(long)]
        rotate: bool,
    },
    /// List the tools that have a secret, with when it was created (never a secret)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Delete a tool's secret; new logins with it are refused
    Revoke { name: String },
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
        Command::Completions { shell } => generate::completions(Cli::command(), shell),
        Command::Man { dir } => generate::man(Cli::command(), &dir),
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
            let status: snowgate_engine::BrokerStatus = block_on(call(Request::Status))?;
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
            let report: LogoutAnswer = block_on(call(Request::Logout))?;
            println!("{}", report.message);
            Ok(ExitCode::SUCCESS)
        }
        Command::Whoami { json } => {
            let who: WhoAmIAnswer = block_on(call(Request::Whoami))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&who)?);
            } else {
                print!("{}", render::whoami(&who));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor { json } => {
            let report: snowgate_engine::doctor::Report = block_on(call(Request::Doctor))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", snowgate_engine::doctor::render(&report));
            }
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Roles { json } => block_on(access::roles(json)),
        Command::Request {
            role,
            duration,
            reason,
            ticket,
            wait,
            json,
        } => block_on(access::request(role, duration, reason, ticket, wait, json)),
        Command::Grants { all, json } => block_on(access::grants(all, json)),
        Command::Approve {
            id,
            comment,
            no_browser,
        } => block_on(access::decide(
            access::Decide::Approve,
            id,
            comment,
            no_browser,
        )),
        Command::Deny {
            id,
            comment,
            no_browser,
        } => block_on(access::decide(
            access::Decide::Deny,
            id,
            comment,
            no_browser,
        )),
        Command::Revoke {
            id,
            comment,
            as_approver,
            no_browser,
        } => block_on(access::revoke(id, comment, as_approver, no_browser)),
        Command::Extend { id, by, reason } => block_on(access::extend(id, by, reason)),
        Command::Cancel { id } => block_on(access::cancel(id)),
        Command::Audit {
            command,
            json,
            since,
        } => match command {
            None => block_on(access::audit(json, since)),
            Some(AuditCommand::Verify) => block_on(access::audit_verify()),
            Some(AuditCommand::Export { format }) => {
                if format != "jsonl" {
                    anyhow::bail!("--format {format}: only jsonl is supported");
                }
                block_on(access::audit_export())
            }
        },
        Command::Sessions { command, json } => match command {
            None => block_on(access::sessions(json)),
            Some(SessionsCommand::End { id }) => block_on(access::end_session(id)),
        },
        Command::Token { role } => block_on(access::token(role)),
        Command::Exec { role, command } => block_on(access::exec(role, command)),
        Command::ToolSecret(command) => block_on(tool_secret(command)),
        Command::Agent(command) => block_on(agents::run(command)),
        Command::Mcp(args) => {
            let data = paths::data_dir(cli.global.data_dir.clone(), &ProcessEnv)
                .map_err(anyhow::Error::msg)?;
            block_on(mcp::run(args, data.path))
        }
        Command::ConnectInfo { tool, role } => block_on(access::connect_info(tool, role)),
        Command::Trust(command) => {
            let data = paths::data_dir(cli.global.data_dir.clone(), &ProcessEnv)
                .map_err(anyhow::Error::msg)?;
            let is_status = matches!(command, trust::TrustCommand::Status(_));
            let code = trust::run(command, &data.path)?;
            if is_status {
                match block_on(call::<snowgate_engine::BrokerStatus>(Request::Status)) {
                    Ok(status) => match status.gateway.tls {
                        Some(tls) => println!(
                            "Gateway HTTPS on {}: leaf expires {} (renewed before)",
                            tls.listen.join(", "),
                            tls.leaf_expires_at
                                .as_deref()
                                .unwrap_or("unknown (not serving)")
                        ),
                        None => println!("Gateway HTTPS: off ([gateway] tls = true turns it on)"),
                    },
                    Err(_) => println!("Gateway HTTPS: no broker is running"),
                }
            }
            Ok(code)
        }
        Command::Serve { config, check } => {
            // `snowgate --config X serve` works too: the global flag lands before the command.
            block_on(serve::run(config.or(cli.global.config.clone()), check))
        }
        Command::Up => {
            let engine = engine(&cli.global)?;
            let socket = default_socket_path(&ProcessEnv).map_err(anyhow::Error::msg)?;
            block_on(async {
                let (broker, control) = Broker::launch(engine, &socket).await?;
                shutdown_signal().await;
                drop(control);
                broker.shutdown().await;
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

/// Sends one request to the running broker and reads the answer as the request's type.
async fn call<T: serde::de::DeserializeOwned>(request: Request) -> anyhow::Result<T> {
    let socket = default_socket_path(&ProcessEnv).map_err(anyhow::Error::msg)?;
    let mut client = ControlClient::connect(&socket).await?;
    Ok(client.call_as(&request).await?)
}

async fn tool_secret(command: ToolSecretCommand) -> anyhow::Result<ExitCode> {
    match command {
        ToolSecretCommand::Create { name, rotate } => {
            let answer: ToolSecretCreated = call(Request::ToolSecretCreate {
                name: name.clone(),
                rotate,
            })
            .await?;
            // Shown this once, on stdout: the person asked for it.
            println!("{}", answer.secret.expose());
            eprintln!(
                "Use it as the password in {name}'s Snowgate connection. It is shown only now."
            );
            if !answer.required {
                eprintln!(
                    "Note: [gateway] require_tool_secrets is off in the config, so the gateway does not ask for it yet."
                );
            }
        }
        ToolSecretCommand::List { json } => {
            let items: Vec<ToolSecretInfo> = call(Request::ToolSecretList).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                if items.is_empty() {
                    eprintln!("No tool has a connection secret; create one with `snowgate tool-secret create NAME`.");
                }
                for t in items {
                    println!("{:<24} created {}", t.name, t.created_at);
                }
            }
        }
        ToolSecretCommand::Revoke { name } => {
            let answer: ToolSecretRevoked =
                call(Request::ToolSecretRevoke { name: name.clone() }).await?;
            let ended = answer.sessions_ended;
            println!(
                "Revoked the connection secret for {name}; new logins with it are refused{}.",
                match ended {
                    0 => String::new(),
                    1 => " and its open session was closed".into(),
                    n => format!(" and its {n} open sessions were closed"),
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks over every command and argument (what the completions and
    /// man pages are generated from).
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
