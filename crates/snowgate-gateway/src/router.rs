//! The per-request pipeline: local-security checks, then one small handler per endpoint.
//!
//! | Path | Handler |
//! | --- | --- |
//! | `/session/v1/login-request` | [`crate::login`] |
//! | `/session/token-request` | [`crate::renew`] |
//! | `/session` (`?delete=true`) | [`crate::close`] |
//! | `/session/authenticator-request` | refused: Snowgate does the sign-in |
//! | `/queries/v1/query-request` | [`crate::passthrough::query_request`] (audited) |
//! | anything else | [`crate::passthrough::handle`] (streamed) |
//!
//! Routing matches paths exactly; a path with a doubled slash (`/monitoring/queries//ID`)
//! falls to the pass-through, which forwards it as sent.

use std::sync::Arc;

use axum::middleware::from_fn_with_state;
use axum::response::IntoResponse;
use axum::routing::any;
use axum::Router;

use crate::snowflake_error::SnowflakeError;
use crate::state::Shared;
use crate::{close, guard, login, passthrough, renew};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/session/v1/login-request", any(login::handle))
        .route("/session/token-request", any(renew::handle))
        .route("/session", any(close::handle))
        .route(
            "/session/authenticator-request",
            any(|| async { SnowflakeError::authenticator_request().into_response() }),
        )
        .route("/queries/v1/query-request", any(passthrough::query_request))
        .fallback(passthrough::handle)
        .layer(from_fn_with_state(shared.clone(), guard::local_security))
        .with_state(shared)
}
