//! The HTTP API: the router and its handlers, grouped by domain.
//!
//! - [`grants`]: roles, requests, decisions, listings and Snowflake tokens (`/v1/...`).
//! - [`audit`]: reading, exporting and verifying the audit log, and the records desktops
//!   report, and the signed checkpoints of the chain's head (`/v1/audit...`); [`reported`]:
//!   the kinds a desktop reports and their details.
//! - [`events`]: the SSE stream (`/v1/events`).
//! - [`session`]: the ID-token exchange (`POST /v1/session`) and who the caller is (`/v1/me`).
//! - [`health`]: `/healthz` and the public JWKS (`/.well-known/jwks.json`).
//!
//! Every `/v1` handler but the exchange takes a [`Caller`](crate::auth::Caller), so no route
//! can forget authentication (the exchange authenticates its ID token itself); every refusal is an [`ApiError`](crate::error::ApiError).
//!
//! Request bodies, queries and answers are the types of [`snowgate_grants::team_api`], which the
//! desktop's team client sends and reads too, and from which `docs/openapi.yaml`'s schemas are
//! generated.

pub mod audit;
pub mod body;
pub mod events;
pub mod grants;
pub mod health;
pub mod reported;
pub mod session;

use axum::routing::{get, post};
use axum::Router;

use crate::error::ApiError;
use crate::state::AppState;

/// Every route the server serves, as (method, path) in OpenAPI's path syntax. The OpenAPI
/// document is checked against this list in the tests.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/healthz"),
    ("get", "/.well-known/jwks.json"),
    ("post", "/v1/session"),
    ("get", "/v1/me"),
    ("get", "/v1/roles"),
    ("post", "/v1/requests"),
    ("get", "/v1/grants"),
    ("get", "/v1/grants/{id}"),
    ("get", "/v1/approvals"),
    ("post", "/v1/grants/{id}/approve"),
    ("post", "/v1/grants/{id}/deny"),
    ("post", "/v1/grants/{id}/revoke"),
    ("post", "/v1/grants/{id}/extend"),
    ("post", "/v1/grants/{id}/cancel"),
    ("post", "/v1/grants/{id}/snowflake-token"),
    ("get", "/v1/audit"),
    ("post", "/v1/audit/records"),
    ("get", "/v1/audit/export"),
    ("get", "/v1/audit/verify"),
    ("get", "/v1/audit/checkpoint"),
    ("post", "/v1/audit/checkpoint"),
    ("get", "/v1/audit/checkpoint-key"),
    ("get", "/v1/events"),
];

/// The router with every route in [`ROUTES`].
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/.well-known/jwks.json", get(health::jwks))
        .route("/v1/session", post(session::exchange))
        .route("/v1/me", get(session::me))
        .route("/v1/roles", get(grants::roles))
        .route("/v1/requests", post(grants::request))
        .route("/v1/grants", get(grants::list))
        .route("/v1/grants/{id}", get(grants::one))
        .route("/v1/approvals", get(grants::approvals))
        .route("/v1/grants/{id}/approve", post(grants::approve))
        .route("/v1/grants/{id}/deny", post(grants::deny))
        .route("/v1/grants/{id}/revoke", post(grants::revoke))
        .route("/v1/grants/{id}/extend", post(grants::extend))
        .route("/v1/grants/{id}/cancel", post(grants::cancel))
        .route(
            "/v1/grants/{id}/snowflake-token",
            post(grants::snowflake_token),
        )
        .route("/v1/audit", get(audit::list))
        .route("/v1/audit/records", post(audit::report))
        .route("/v1/audit/export", get(audit::export))
        .route("/v1/audit/verify", get(audit::verify))
        .route(
            "/v1/audit/checkpoint",
            get(audit::checkpoint).post(audit::make_checkpoint),
        )
        .route("/v1/audit/checkpoint-key", get(audit::checkpoint_key))
        .route("/v1/events", get(events::stream))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "there is no {} here; the API is described in docs/openapi.yaml",
        uri.path()
    ))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!(
            "{} does not take {method}; see docs/openapi.yaml",
            uri.path()
        ),
    )
}
