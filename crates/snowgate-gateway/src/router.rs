//! The per-request pipeline: local-security checks, then one small handler per endpoint.
//!
//! | Path | Handler |
//! | --- | --- |
//! | `/session/v1/login-request` | [`crate::login`] |
//! | `/session/token-request` | [`crate::renew`] |
//! | `/session` (`?delete=true`) | [`crate::close`] |
//! | `/session/authenticator-request` | refused: Snowgate does the sign-in |
//! | `/queries/v1/query-request` | [`crate::passthrough::query_request`] (audited), served by [`Routes::serve`] without the router |
//! | `/queries/{id}/result` | [`crate::passthrough::result_request`] (audited as a fetch) |
//! | anything else | [`crate::passthrough::handle`] (streamed) |
//!
//! Routing matches paths exactly, on the normal form of the path ([`crate::path`], applied by
//! [`normalize_path`] before routing): `//queries/v1/query-request` is routed, and forwarded,
//! as `/queries/v1/query-request`, and spellings that can't be normalised safely are refused.
//!
//! A query-request, one per statement, goes straight from [`Routes::serve`] to its handler after
//! the same local-security check ([`guard::refusal`]) the router's middleware makes: the
//! router's matching, boxed middleware and response mapping cost about 5 µs a request, a fifth
//! of what a plain hyper proxy spends on one (`scripts/bench-gateway`, README).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use tower::ServiceExt;

use crate::snowflake_error::SnowflakeError;
use crate::state::Shared;
use crate::{close, guard, login, passthrough, renew};

/// Every endpoint: the query-request directly, the others through the router.
#[derive(Clone)]
pub(crate) struct Routes {
    router: Router,
    shared: Arc<Shared>,
}

impl Routes {
    pub fn new(shared: Arc<Shared>) -> Routes {
        Routes {
            router: router(shared.clone()),
            shared,
        }
    }

    /// Serves one request whose path is in its normal form ([`normalize_path`]).
    pub async fn serve(self, request: Request) -> Response {
        if request.uri().path() == crate::path::QUERY_REQUEST {
            if let Some(refused) = guard::refusal(&self.shared, &request) {
                return refused;
            }
            return passthrough::query_request(State(self.shared), request).await;
        }
        match self.router.oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/session/v1/login-request", any(login::handle))
        .route("/session/token-request", any(renew::handle))
        .route("/session", any(close::handle))
        .route(
            "/session/authenticator-request",
            any(|| async { SnowflakeError::authenticator_request().into_response() }),
        )
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
