//! `snowgate mcp --http 127.0.0.1:PORT`: the MCP server over Streamable HTTP on loopback, for
//! agents that connect by URL, among them agents running as another OS user or in a container
//! (see the README's "Where agents run").
//!
//! Every request passes, in order:
//! - the gateway's web checks ([`snowgate_gateway::web_checks`]): no `Origin` or `Sec-Fetch-*`
//!   header (no web page may call it), and a `Host` that is a loopback name with this port
//!   (against DNS rebinding); refused with 403;
//! - the bearer: `Authorization: Bearer <agent secret>`, checked by the broker
//!   (`agent_whoami`); a missing, unknown or expired agent's secret is refused with 401. The
//!   secret then rides in the request's extensions to the tools, which act as that agent.
//!
//! Unlike the gateway, this endpoint does not require the connecting process to be the OS
//! user who runs Snowgate: the agent's secret alone admits it, so an agent confined as
//! another user can reach it, and its policy binds it. The MCP sessions of all agents share
//! one [`State`].

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State as AxState};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use http::{header, StatusCode};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use secrecy::SecretString;
use snowgate_engine::control::ErrorKind;
pub use tokio_util::sync::CancellationToken;

use crate::state::{AgentSecret, State};
use crate::tools::SnowgateMcp;

/// The path MCP is served on.
pub const MCP_PATH: &str = "/mcp";

/// Why the HTTP server could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("snowgate mcp --http listens on loopback only; {0} is not a loopback address (use 127.0.0.1:PORT or [::1]:PORT)")]
    NotLoopback(SocketAddr),
    #[error("can't listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the MCP HTTP server stopped: {0}")]
    Serve(std::io::Error),
}

/// A bound, not yet serving, MCP HTTP endpoint.
pub struct HttpServer {
    listener: tokio::net::TcpListener,
    local: SocketAddr,
}

impl HttpServer {
    /// Binds `addr`, which must be a loopback address.
    pub async fn bind(addr: SocketAddr) -> Result<HttpServer, HttpError> {
        if !addr.ip().is_loopback() {
            return Err(HttpError::NotLoopback(addr));
        }
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError::Bind { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| HttpError::Bind { addr, source })?;
        Ok(HttpServer { listener, local })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn serve(
        self,
        state: Arc<State>,
        shutdown: CancellationToken,
    ) -> Result<(), HttpError> {
        let mcp_state = state.clone();
        let config = StreamableHttpServerConfig::default()
            // Host and Origin are checked by `web_checks`, port included.
            .disable_allowed_hosts()
            .with_cancellation_token(shutdown.child_token());
        let service = StreamableHttpService::new(
            move || Ok(SnowgateMcp::new(mcp_state.clone())),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        let guard = Guard {
            state,
            port: self.local.port(),
        };
        let app = axum::Router::new()
            .nest_service(MCP_PATH, service)
            .layer(from_fn_with_state(Arc::new(guard), check));
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await
            .map_err(HttpError::Serve)
    }
}

struct Guard {
    state: Arc<State>,
    port: u16,
}

fn refusal(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut r = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"snowgate mcp\""),
        );
    }
    r
}

async fn check(AxState(guard): AxState<Arc<Guard>>, mut request: Request, next: Next) -> Response {
    if let Err(e) = snowgate_gateway::web_checks(request.headers(), guard.port) {
        return refusal(StatusCode::FORBIDDEN, e.message());
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_string())
        })
        .filter(|t| !t.is_empty());
    let Some(presented) = presented else {
        return refusal(
            StatusCode::UNAUTHORIZED,
            "Snowgate: send the agent's secret as `Authorization: Bearer <secret>` (from `snowgate agent add NAME`).",
        );
    };
    let secret = SecretString::from(presented);
    match guard.state.broker().agent_checked(&secret).await {
        Ok(_) => {}
        Err(e) if matches!(e.kind, ErrorKind::Unavailable | ErrorKind::Internal) => {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("Snowgate can't check the agent's secret: {}", e.message),
            );
        }
        Err(e) => {
            tracing::info!(why = %e.message, "refused an MCP request: the bearer is no usable agent's secret");
            let why = e.message.trim_start_matches("Snowgate: ");
            return refusal(StatusCode::UNAUTHORIZED, &format!("Snowgate: {why}"));
        }
    }
    request.extensions_mut().insert(AgentSecret(secret));
    next.run(request).await
}
