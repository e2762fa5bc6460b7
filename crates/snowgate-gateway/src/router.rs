//! The per-request pipeline: local-security checks, then one small handler per endpoint.
//!
//! | Path | Handler |
//! | --- | --- |
//! | `/session/v1/login-request` | [`crate::login`] |
//! | `/session/token-request` | [`crate::renew`] |
//! | `/session` (`?delete=true`) | [`crate::close`] |
//! | `/session/authenticator-request` | refused: Snowgate does the sign-in |
//! | `/queries/v1/query-request` | [`crate::passthrough::query_request`] (audited) |
//! | `/queries/{id}/result` | [`crate::passthrough::result_request`] (audited as a fetch) |
//! | anything else | [`crate::passthrough::handle`] (streamed) |
//!
//! Routing matches paths exactly, on the normal form of the path ([`crate::path`], applied by
//! [`normalize_path`] before routing): `//queries/v1/query-request` is routed, and forwarded,
//! as `/queries/v1/query-request`, and spellings that can't be normalised safely are refused.

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
        .route("/queries/{id}/result", any(passthrough::result_request))
        .fallback(passthrough::handle)
        .layer(from_fn_with_state(shared.clone(), guard::local_security))
        .with_state(shared)
}

/// Puts the request's path in its normal form before routing, keeping its query string, when
/// that form is one of the gateway's own endpoints; any other path is left untouched, byte for
/// byte, for the pass-through. `Err` is the refusal to answer with.
pub(crate) fn normalize_path<B>(request: &mut http::Request<B>) -> Result<(), SnowflakeError> {
    let uri = request.uri();
    let path = uri.path();
    let normal = match crate::path::normalize(path) {
        Ok(std::borrow::Cow::Borrowed(_)) => return Ok(()),
        Ok(std::borrow::Cow::Owned(normal)) if crate::path::is_routed(&normal) => normal,
        Ok(std::borrow::Cow::Owned(_)) => return Ok(()),
        Err(why) => return Err(SnowflakeError::path_refused(path, why)),
    };
    let path_and_query = match uri.query() {
        Some(q) => format!("{normal}?{q}"),
        None => normal,
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(
        path_and_query
            .parse()
            .map_err(|_| SnowflakeError::path_refused(path, "it can't be normalised"))?,
    );
    *request.uri_mut() = http::Uri::from_parts(parts)
        .map_err(|_| SnowflakeError::path_refused(path, "it can't be normalised"))?;
    Ok(())
}
