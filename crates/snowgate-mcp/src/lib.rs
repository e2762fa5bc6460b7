//! `snowgate mcp`: a Model Context Protocol server (on the official Rust SDK, `rmcp`) that
//! gives an AI agent Snowflake through Snowgate, under the agent's own identity and policy.
//!
//! The server is a client of the broker's loopback gateway, the same endpoint BI tools use: it
//! logs in with the agent's secret as the password, so every statement passes the gateway's
//! authorization, login rewrite, QUERY_TAG, SQL policy, audit and cut at the grant's end, and
//! it never holds a Snowflake token. It talks to the broker's control socket only for the
//! gateway's address, the agent's policy (`agent_whoami`), the user's grants and roles, and
//! access requests made as the agent.
//!
//! # Codemap
//! - [`tools`]: the MCP tools; [`state`]: what they share (gateway sessions per agent and role,
//!   the queries each agent ran); `describe`: the SQL the `describe` tool runs.
//! - [`snowflake`]: the Snowflake REST client to the gateway (login, async statements, result
//!   fetches, status, abort, close).
//! - [`answer`]: Snowflake's JSON answers read incrementally, stopping at the row and byte caps.
//! - [`render`]: the result as a text table and as structured JSON, with the "truncated" note.
//! - [`broker`]: the control-socket calls.
//! - [`http`]: Streamable HTTP on loopback, with the gateway's Host/Origin checks and the
//!   agent's secret as the bearer; stdio is [`serve_stdio`].
//!
//! # Invariants
//! - The agent's secret is never logged, printed or put in an error; it leaves the process only
//!   as the gateway login's password and in control-socket calls.
//! - Every tool call asks the broker for the agent afresh, so a removed or expired agent is
//!   refused from its next call on (the gateway also ends its sessions).
//! - Results are read under the caps: the server stops reading at the cap and never fetches a
//!   later chunk the caps leave no room for.

pub mod answer;
pub mod broker;
mod describe;
pub mod http;
pub mod render;
pub mod snowflake;
pub mod state;
pub mod tools;

use secrecy::SecretString;
use snowgate_engine::agents::{AgentError, Agents};
use std::path::Path;

pub use state::{AgentSecret, State};
pub use tools::SnowgateMcp;

/// The environment variable that can carry the agent's secret for stdio.
pub const SECRET_ENV: &str = "SNOWGATE_AGENT_SECRET";

/// The agent `name`'s secret: from [`SECRET_ENV`] when set, else from the agent store
/// ([`snowgate_engine::agents::Agents::secret`]), which reads the OS keyring entry `snowgate
/// agent add` made.
pub async fn agent_secret(
    name: &str,
    data_dir: &Path,
    env_secret: Option<String>,
) -> Result<SecretString, String> {
    if let Some(s) = env_secret.filter(|s| !s.trim().is_empty()) {
        return Ok(SecretString::from(s.trim().to_string()));
    }
    match Agents::new(data_dir).secret(name).await {
        Ok(Some(secret)) => Ok(secret),
        Ok(None) => Err(format!(
            "no secret for agent {name} in the OS keyring; add the agent with `snowgate agent add {name}`, or set {SECRET_ENV}"
        )),
        Err(e @ AgentError::Keyring { .. }) => Err(format!(
            "{e}; set {SECRET_ENV} to the agent's secret instead"
        )),
        Err(e) => Err(e.to_string()),
    }
}

/// Serves MCP over stdin/stdout as the agent `name` whose secret is `secret`, until the client
/// closes the connection; then closes the gateway sessions it opened.
pub async fn serve_stdio(
    broker: broker::BrokerLink,
    name: &str,
    secret: SecretString,
) -> Result<(), String> {
    let agent = broker.agent(&secret).await?;
    if agent.name != name {
        return Err(format!(
            "the secret given is agent {}'s, not {name}'s",
            agent.name
        ));
    }
    let state = State::new(broker, Some(AgentSecret(secret)));
    use rmcp::ServiceExt;
    let served = SnowgateMcp::new(state.clone())
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| format!("the MCP client did not start a session: {e}"))?;
    let ended = served.waiting().await;
    state.close_sessions().await;
    ended
        .map(|_| ())
        .map_err(|e| format!("the MCP session ended with an error: {e}"))
}
