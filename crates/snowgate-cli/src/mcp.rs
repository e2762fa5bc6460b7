//! `snowgate mcp`: the MCP server for AI agents (`snowgate_mcp`), over stdio as one agent, or
//! over Streamable HTTP on loopback for agents that connect by URL with their secret.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use snowgate_engine::control::default_socket_path;
use snowgate_engine::paths::ProcessEnv;
use snowgate_mcp::broker::BrokerLink;
use snowgate_mcp::http::{HttpServer, MCP_PATH};
use snowgate_mcp::State;

#[derive(Debug, Args)]
pub struct McpArgs {
    /// Serve over stdio as this agent (`snowgate agent add NAME`); its secret comes from
    /// $SNOWGATE_AGENT_SECRET, else from the OS keyring
    #[arg(long, value_name = "NAME", required_unless_present = "http")]
    agent: Option<String>,
    /// Serve Streamable HTTP on this loopback address (e.g. 127.0.0.1:8766) instead of stdio;
    /// each request carries an agent's secret as `Authorization: Bearer <secret>`
    #[arg(long, value_name = "ADDR", conflicts_with = "agent")]
    http: Option<SocketAddr>,
}

pub async fn run(args: McpArgs, data_dir: PathBuf) -> anyhow::Result<ExitCode> {
    let socket = default_socket_path(&ProcessEnv).map_err(anyhow::Error::msg)?;
    let broker = BrokerLink::new(socket);
    if let Some(addr) = args.http {
        let server = HttpServer::bind(addr).await?;
        let state = State::new(broker, None);
        let shutdown = snowgate_mcp::http::CancellationToken::new();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            crate::shutdown_signal().await;
            stop.cancel();
        });
        eprintln!(
            "snowgate mcp: serving MCP at http://{}{MCP_PATH}; agents send their secret as `Authorization: Bearer <secret>`. Ctrl-C stops it.",
            server.local_addr()
        );
        let served = server.serve(state.clone(), shutdown).await;
        state.close_sessions().await;
        served?;
        return Ok(ExitCode::SUCCESS);
    }
    let name = args.agent.expect("clap requires --agent without --http");
    let secret = snowgate_mcp::agent_secret(
        &name,
        &data_dir,
        std::env::var(snowgate_mcp::SECRET_ENV).ok(),
    )
    .await
    .map_err(anyhow::Error::msg)?;
    snowgate_mcp::serve_stdio(broker, &name, secret)
        .await
        .map_err(anyhow::Error::msg)?;
    Ok(ExitCode::SUCCESS)
}
