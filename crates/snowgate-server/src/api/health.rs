//! Unauthenticated endpoints: the health check for load balancers and the JWKS for Snowflake.

use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use snowgate_grants::team_api::{ErrorBody, Health, HealthStatus, Jwks};

use crate::state::AppState;

/// How long the health check waits for the database.
const DB_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: 200 when the database answers (with how callers authenticate, so a
/// desktop or `snowgate doctor` can tell a mismatch, and with `[reaper]` the reaper's state and
/// the ended grants it has still to reap), 503 otherwise.
pub async fn healthz(State(state): State<AppState>) -> Response {
    let checked = tokio::time::timeout(DB_TIMEOUT, state.ops.ledger().ping()).await;
    match checked {
        Ok(Ok(())) => {
            let reaper = match &state.reaper {
                Some(r) => r.health(state.ops.ledger()).await,
                None => None,
            };
            (
                StatusCode::OK,
                Json(Health {
                    status: HealthStatus::Ok,
                    caller_auth: Some(state.auth.mode()),
                    error: None,
                    reaper,
                }),
            )
                .into_response()
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health check: the database does not answer");
            unhealthy("the database does not answer")
        }
        Err(_) => unhealthy("the database did not answer within 2 s"),
    }
}

fn unhealthy(why: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(Health {
            status: HealthStatus::Unavailable,
            caller_auth: None,
            reaper: None,
            error: Some(ErrorBody {
                code: "unavailable".into(),
                message: format!("{why}; the server retries by itself"),
            }),
        }),
    )
        .into_response()
}

/// `GET /.well-known/jwks.json`: the public halves of the signing keys.
pub async fn jwks(State(state): State<AppState>) -> Response {
    (
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json::<Jwks>(state.keys.jwks()),
    )
        .into_response()
}
