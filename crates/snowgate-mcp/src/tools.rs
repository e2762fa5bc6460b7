//! The MCP tools an agent sees (the state they share is [`crate::state`]).
//!
//! Every call first asks the broker who the agent is (`agent_whoami` with its secret), so an
//! agent removed or expired since the last call is refused at once, and its caps are current.
//! Statements go through the gateway in a session per (agent, role), logged in with the
//! agent's secret ([`crate::snowflake`]); the gateway enforces everything else. A tool that
//! fails answers with a tool error that says why (Snowflake's or Snowgate's sentence and code),
//! never a protocol error, so the agent sees the reason.
//!
//! | tool | what it does |
//! | --- | --- |
//! | `access` | the agent's policy, the roles it may use, the active grants, pending requests |
//! | `request_access` | asks for a role for a while, as the agent ("requested by agent NAME") |
//! | `describe` | databases, schemas of a database, tables of a schema, columns of a table |
//! | `run_query` | a statement's result as a table, capped, with its query id |
//! | `query_status` | a long query's status, and its result once it finished |
//! | `cancel_query` | cancels a running query |

use std::sync::Arc;
use std::time::Duration;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ContentBlock, Extensions, Implementation, ServerCapabilities, ServerConfig,
};
use rmcp::{tool, tool_handler, tool_router, ErrorData as McpError, ServerHandler};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;
use snowgate_engine::agents::Agent;

use crate::answer::Caps;
use crate::broker::GrantFacts;
use crate::describe::{describe_sql, DescribeArgs};
use crate::render;
use crate::snowflake::{Gateway, Session, SnowflakeFailure, Submitted};
use crate::state::{AgentSecret, State};

/// How long `run_query` waits for a result before it answers "still running".
const DEFAULT_WAIT_SECS: u64 = 30;
const MAX_WAIT_SECS: u64 = 300;

/// The MCP server: one per stdio connection, one per HTTP session (sharing [`State`]).
#[derive(Clone)]
pub struct SnowgateMcp {
    state: Arc<State>,
    tool_router: ToolRouter<SnowgateMcp>,
}

/// A failed tool call: the sentence the agent sees.
type ToolResult = Result<CallToolResult, McpError>;

fn refused(message: impl Into<String>) -> ToolResult {
    Ok(CallToolResult::error(vec![ContentBlock::text(
        message.into(),
    )]))
}

fn answered(text: String, structured: serde_json::Value) -> ToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(text)]);
    r.structured_content = Some(structured);
    Ok(r)
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RequestAccessArgs {
    /// The Snowflake role, e.g. ANALYST.
    pub role: String,
    /// How long, counted from approval: 30m, 2h, 1h30m.
    pub duration: String,
    /// Why the agent needs it; approvers see it, and the audit log keeps it.
    pub reason: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct RunQueryArgs {
    /// The SQL statement.
    pub sql: String,
    /// The role to run it as; may be left out when exactly one usable role is active.
    #[serde(default)]
    pub role: Option<String>,
    /// How long to wait for the result before answering "still running" with the query id
    /// (default 30, at most 300).
    #[serde(default)]
    pub wait_seconds: Option<u64>,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct QueryIdArgs {
    /// The query id that `run_query` answered with.
    pub query_id: String,
}

impl SnowgateMcp {
    pub fn new(state: Arc<State>) -> SnowgateMcp {
        SnowgateMcp {
            state,
            tool_router: Self::tool_router(),
        }
    }

    /// The secret of the agent making this call: the stdio agent's, or the bearer that the
    /// HTTP layer checked and put in the request's extensions.
    fn secret(&self, extensions: &Extensions) -> Result<AgentSecret, String> {
        if let Some(s) = &self.state.fixed {
            return Ok(s.clone());
        }
        extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.extensions.get::<AgentSecret>())
            .cloned()
            .ok_or_else(|| "this request carries no agent secret".to_string())
    }

    /// The agent and its current policy, from the broker.
    async fn agent(&self, extensions: &Extensions) -> Result<(Agent, AgentSecret), String> {
        let secret = self.secret(extensions)?;
        let agent = self.state.broker().agent(&secret.0).await?;
        Ok((agent, secret))
    }

    /// The role to use: the one asked for (if the agent may use it), or the only active grant's
    /// role among those the agent may use.
    async fn pick_role(&self, agent: &Agent, asked: Option<&str>) -> Result<String, String> {
        if let Some(role) = asked.map(str::trim).filter(|r| !r.is_empty()) {
            if !agent.allows_role(role) {
                return Err(format!(
                    "agent {} may not use role {role}; its policy allows {}",
                    agent.name,
                    allowed_roles(agent)
                ));
            }
            return Ok(role.to_ascii_uppercase());
        }
        let grants = self.state.broker().grants().await?;
        let mut roles: Vec<String> = grants
            .iter()
            .map(GrantFacts::of)
            .filter(|g| g.is_active() && agent.allows_role(&g.role))
            .map(|g| g.role)
            .collect();
        roles.sort();
        roles.dedup();
        match roles.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(format!(
                "no active grant that agent {} may use; ask for one with the request_access tool (its policy allows {})",
                agent.name,
                allowed_roles(agent)
            )),
            many => Err(format!(
                "several roles are active ({}); say which one with `role`",
                many.join(", ")
            )),
        }
    }

    /// Runs `sql` as `role` for the agent, logging in again once if the session is gone.
    async fn run(
        &self,
        agent: &Agent,
        secret: &AgentSecret,
        role: &str,
        sql: &str,
        wait: Duration,
    ) -> ToolResult {
        let caps = Caps::from_policy(agent.policy.max_rows, agent.policy.max_bytes);
        let gateway = match self.state.gateway().await {
            Ok(g) => g,
            Err(e) => return refused(e),
        };
        let mut fresh = false;
        loop {
            let session = match self
                .state
                .session(&gateway, &agent.name, secret, role, fresh)
                .await
            {
                Ok(s) => s,
                Err(e) => return refused(e),
            };
            match gateway.submit(&session, sql, caps, wait).await {
                Ok(Submitted::Done(answer)) => {
                    if let Some(id) = &answer.query_id {
                        self.state.remember(id, &agent.name, role);
                    }
                    let (text, structured) = render::result(&answer, caps);
                    return answered(text, structured);
                }
                Ok(Submitted::Running { query_id }) => {
                    self.state.remember(&query_id, &agent.name, role);
                    return answered(
                        format!("query id: {query_id}\nThe query is still running after {}s. Check it with query_status, or stop it with cancel_query.\n", wait.as_secs()),
                        json!({"query_id": query_id, "status": "RUNNING"}),
                    );
                }
                Err(e) if e.session_gone() && !fresh => fresh = true,
                Err(e) => return refused(statement_failure(role, &e)),
            }
        }
    }

    /// The session that ran `query_id` for this agent.
    async fn session_of(
        &self,
        agent: &Agent,
        secret: &AgentSecret,
        query_id: &str,
    ) -> Result<(Gateway, Arc<Session>), String> {
        let role = self.state.ran_by(query_id, &agent.name).ok_or_else(|| {
            format!(
                "query {query_id} was not run by agent {} through this server",
                agent.name
            )
        })?;
        let gateway = self.state.gateway().await?;
        let session = self
            .state
            .session(&gateway, &agent.name, secret, &role, false)
            .await?;
        Ok((gateway, session))
    }
}

fn allowed_roles(agent: &Agent) -> String {
    match &agent.policy.roles {
        Some(r) if !r.is_empty() => r.join(", "),
        Some(_) => "no role".into(),
        None => "any role the user holds an active grant for".into(),
    }
}

fn statement_failure(role: &str, e: &SnowflakeFailure) -> String {
    format!("The statement was refused or failed (as {role}): {e}")
}

#[tool_router]
impl SnowgateMcp {
    /// The agent's policy, the roles it may use, the active grants and the pending requests.
    #[tool(
        description = "Show this agent's Snowflake access through Snowgate: its policy (read-only, row and byte caps), the roles it may use, the grants active now with their end times, pending requests, and the roles that can be requested.",
        annotations(title = "Snowflake access", read_only_hint = true)
    )]
    async fn access(&self, extensions: Extensions) -> ToolResult {
        let (agent, _) = match self.agent(&extensions).await {
            Ok(a) => a,
            Err(e) => return refused(e),
        };
        let (grants, roles) = match (
            self.state.broker().grants().await,
            self.state.broker().roles().await,
        ) {
            (Ok(g), Ok(r)) => (g, r),
            (Err(e), _) | (_, Err(e)) => return refused(e),
        };
        let caps = Caps::from_policy(agent.policy.max_rows, agent.policy.max_bytes);
        let grants: Vec<GrantFacts> = grants
            .iter()
            .map(GrantFacts::of)
            .filter(|g| agent.allows_role(&g.role))
            .collect();
        let active: Vec<&GrantFacts> = grants.iter().filter(|g| g.is_active()).collect();
        let pending: Vec<&GrantFacts> = grants.iter().filter(|g| g.is_pending()).collect();
        let requestable: Vec<_> = roles
            .iter()
            .filter(|r| agent.allows_role(&r.name))
            .collect();
        let mut text = format!(
            "Agent {}: {} statements; results capped at {} rows and {} bytes.\nRoles it may use: {}.\n",
            agent.name,
            if agent.policy.read_only { "read-only" } else { "any" },
            caps.max_rows,
            caps.max_bytes,
            allowed_roles(&agent),
        );
        if active.is_empty() {
            text.push_str("Active grants: none. Ask for one with request_access.\n");
        } else {
            text.push_str("Active grants:\n");
            for g in &active {
                text.push_str(&format!(
                    "- {} until {} ({})\n",
                    g.role,
                    g.expires_at.as_deref().unwrap_or("?"),
                    g.id
                ));
            }
        }
        for g in &pending {
            text.push_str(&format!(
                "Pending: {} ({}), waiting for a person's decision until {}.\n",
                g.role,
                g.id,
                g.pending_until.as_deref().unwrap_or("?")
            ));
        }
        text.push_str("Requestable roles:\n");
        for r in &requestable {
            let auto = r
                .auto_approve_up_to
                .as_ref()
                .map(|a| format!("; approved at once up to {a}"))
                .unwrap_or_default();
            text.push_str(&format!(
                "- {} (at most {}{auto})\n",
                r.name, r.max_duration
            ));
        }
        let structured = json!({
            "agent": agent.name,
            "read_only": agent.policy.read_only,
            "max_rows": caps.max_rows,
            "max_bytes": caps.max_bytes,
            "allowed_roles": agent.policy.roles,
            "active_grants": active,
            "pending_requests": pending,
            "requestable_roles": requestable.iter().map(|r| json!({"name": r.name, "max_duration": r.max_duration, "auto_approve_up_to": r.auto_approve_up_to})).collect::<Vec<_>>(),
        });
        answered(text, structured)
    }

    /// Asks for a role for a while, as the agent.
    #[tool(
        description = "Ask for a Snowflake role for a while (duration like 30m or 2h, and a reason). The request is marked as made by this agent; a person decides it in Snowgate unless the role's policy approves it at once. Check the outcome with the access tool.",
        annotations(
            title = "Request Snowflake access",
            read_only_hint = false,
            destructive_hint = false
        )
    )]
    async fn request_access(
        &self,
        Parameters(args): Parameters<RequestAccessArgs>,
        extensions: Extensions,
    ) -> ToolResult {
        let (agent, secret) = match self.agent(&extensions).await {
            Ok(a) => a,
            Err(e) => return refused(e),
        };
        let duration = match snowgate_engine::duration::parse(args.duration.trim()) {
            Ok(d) => d,
            Err(e) => return refused(format!("duration {:?}: {e}", args.duration)),
        };
        let view = match self
            .state
            .broker()
            .request_access(&secret.0, &args.role, duration.as_secs(), &args.reason)
            .await
        {
            Ok(v) => v,
            Err(e) => return refused(e),
        };
        let g = GrantFacts::of(&view);
        let text = if g.is_active() {
            format!(
                "Approved by policy: {} is usable until {} (grant {}).",
                g.role,
                g.expires_at.as_deref().unwrap_or("?"),
                g.id
            )
        } else {
            format!(
                "Requested {} (grant {}), as agent {}. It waits for a person's decision in Snowgate (until {}); check with the access tool.",
                g.role,
                g.id,
                agent.name,
                g.pending_until.as_deref().unwrap_or("?")
            )
        };
        answered(text, json!({"grant": g}))
    }

    /// Databases, a database's schemas, a schema's tables, or a table's columns.
    #[tool(
        description = "Describe what is in Snowflake: with nothing, the databases; with database, its schemas; with database and schema, its tables; with a table too, its columns and their types. Runs SHOW or DESCRIBE through Snowgate as the given (or the only active) role.",
        annotations(title = "Describe Snowflake objects", read_only_hint = true)
    )]
    async fn describe(
        &self,
        Parameters(args): Parameters<DescribeArgs>,
        extensions: Extensions,
    ) -> ToolResult {
        let (agent, secret) = match self.agent(&extensions).await {
            Ok(a) => a,
            Err(e) => return refused(e),
        };
        let sql = match describe_sql(&args) {
            Ok(s) => s,
            Err(e) => return refused(e),
        };
        let role = match self.pick_role(&agent, args.role.as_deref()).await {
            Ok(r) => r,
            Err(e) => return refused(e),
        };
        self.run(
            &agent,
            &secret,
            &role,
            &sql,
            Duration::from_secs(DEFAULT_WAIT_SECS),
        )
        .await
    }

    /// Runs one SQL statement and answers with its result, capped.
    #[tool(
        description = "Run one SQL statement in Snowflake through Snowgate, as the given (or the only active) role. Answers with the column names and types, the rows (capped by this agent's row and byte limits, with a TRUNCATED note when cut) and the query id. A query still running after wait_seconds is answered with its query id for query_status and cancel_query.",
        annotations(
            title = "Run a Snowflake query",
            read_only_hint = false,
            destructive_hint = true,
            open_world_hint = true
        )
    )]
    async fn run_query(
        &self,
        Parameters(args): Parameters<RunQueryArgs>,
        extensions: Extensions,
    ) -> ToolResult {
        let (agent, secret) = match self.agent(&extensions).await {
            Ok(a) => a,
            Err(e) => return refused(e),
        };
        if args.sql.trim().is_empty() {
            return refused("the sql is empty");
        }
        let role = match self.pick_role(&agent, args.role.as_deref()).await {
            Ok(r) => r,
            Err(e) => return refused(e),
        };
        let wait = Duration::from_secs(
            args.wait_seconds
                .unwrap_or(DEFAULT_WAIT_SECS)
                .min(MAX_WAIT_SECS),
        );
        self.run(&agent, &secret, &role, &args.sql, wait).await
    }

    /// The status of a query, and its result once it finished.
    #[tool(
        description = "The status of a query that run_query started (RUNNING, SUCCESS, FAILED_WITH_ERROR, ...); once it succeeded, its result, capped like run_query's.",
        annotations(title = "Query status", read_only_hint = true)
    )]
    async fn query_status(
        &self,
        Parameters(args): Parameters<QueryIdArgs>,
        extensions: Extensions,
    ) -> ToolResult {
        let (agent, secret) = match self.agent(&extensions).await {
            Ok(a) => a,
            Err(e) => return refused(e),
        };
        let (gateway, session) = match self.session_of(&agent, &secret, &args.query_id).await {
            Ok(s) => s,
            Err(e) => return refused(e),
        };
        let status = match gateway.status(&session, &args.query_id).await {
            Ok(s) => s,
            Err(e) => {
                return refused(format!(
                    "the status of query {} can't be had: {e}",
                    args.query_id
                ))
            }
        };
        if status.status != "SUCCESS" {
            let mut text = format!("query id: {}\nstatus: {}\n", status.query_id, status.status);
            if let Some(e) = &status.error {
                text.push_str(&format!("error: {e}\n"));
            }
            return answered(text, json!(status));
        }
        let caps = Caps::from_policy(agent.policy.max_rows, agent.policy.max_bytes);
        match gateway
            .result(&session, &args.query_id, caps, Duration::ZERO)
            .await
        {
            Ok(Submitted::Done(answer)) => {
                let (text, mut structured) = render::result(&answer, caps);
                structured["status"] = json!("SUCCESS");
                answered(format!("status: SUCCESS\n{text}"), structured)
            }
            Ok(Submitted::Running { query_id }) => answered(
                format!("query id: {query_id}\nstatus: RUNNING\n"),
                json!({"query_id": query_id, "status": "RUNNING"}),
            ),
            Err(e) => refused(format!(
                "the result of query {} can't be had: {e}",
                args.query_id
            )),
        }
    }

    /// Cancels a running query.
    #[tool(
        description = "Cancel a query that run_query started and that is still running.",
        annotations(
            title = "Cancel a query",
            read_only_hint = false,
            destructive_hint = false
        )
    )]
    async fn cancel_query(
        &self,
        Parameters(args): Parameters<QueryIdArgs>,
        extensions: Extensions,
    ) -> ToolResult {
        let (agent, secret) = match self.agent(&extensions).await {
            Ok(a) => a,
            Err(e) => return refused(e),
        };
        let (gateway, session) = match self.session_of(&agent, &secret, &args.query_id).await {
            Ok(s) => s,
            Err(e) => return refused(e),
        };
        match gateway.abort(&session, &args.query_id).await {
            Ok(()) => answered(
                format!("Cancelled query {}.", args.query_id),
                json!({"query_id": args.query_id, "cancelled": true}),
            ),
            Err(e) if e.code.as_deref() == Some("000605") => refused(format!(
                "query {} is not running (it finished or was already cancelled): {e}",
                args.query_id
            )),
            Err(e) => refused(format!(
                "query {} could not be cancelled: {e}",
                args.query_id
            )),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for SnowgateMcp {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("snowgate", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Snowflake through Snowgate. Start with the access tool: it shows the roles this agent may use and the grants active now. Without an active grant, ask for one with request_access (a person may have to approve it). Then use describe and run_query. Results are capped; narrow queries rather than paging.",
            )
    }
}
