//! Caller sessions: `POST /v1/session` exchanges a fresh ID token for a session token the
//! server signs, and `GET /v1/me` says who the server takes the caller for.
//!
//! The exchange is for IdPs that mint no access tokens for custom APIs (Google Workspace, for
//! one). The desktop sends an ID token it got minutes ago (from a sign-in or a refresh); the
//! server checks it ([`crate::auth::IdpVerifier::verify_id_token`]), records its SHA-256 in
//! `id_token_uses` so it is exchanged once across all replicas, and answers with a session
//! token that lives `[sessions] lifetime`. Before that runs out the desktop refreshes its
//! sign-in at the IdP (through its one refresh lock) and exchanges the new ID token.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::{ExposeSecret, SecretString};
use snowgate_grants::team_api::{Me, SessionAnswer, SessionRequest, WireSecret};
use snowgate_grants::Timestamp;

use crate::api::body::Body;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// `POST /v1/session`: a session token for a fresh ID token.
pub async fn exchange(
    State(state): State<AppState>,
    Body(body): Body<SessionRequest>,
) -> Result<Response, ApiError> {
    let id_token = SecretString::from(body.id_token.into_inner());
    let who = state.auth.exchangeable(&id_token).await?;
    state
        .limiter
        .check(&who.subject)
        .map_err(|wait| ApiError::rate_limited(wait.as_secs().max(1)))?;
    let digest = ring::digest::digest(&ring::digest::SHA256, id_token.expose_secret().as_bytes());
    let digest: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    let now = state.auth.now();
    let now_secs = Timestamp::from(now).unix_millis().div_euclid(1000);
    let pool = state.ops.ledger().pool();
    let stored = async {
        sqlx::query("DELETE FROM id_token_uses WHERE expires_at < $1")
            .bind(now_secs)
            .execute(pool)
            .await?;
        sqlx::query(
            "INSERT INTO id_token_uses (digest, subject, expires_at) VALUES ($1, $2, $3) ON CONFLICT (digest) DO NOTHING",
        )
        .bind(&digest)
        .bind(&who.subject)
        .bind(who.exp.max(now_secs))
        .execute(pool)
        .await
    }
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "recording an ID token exchange failed");
        ApiError::unavailable("recording the ID token exchange", &e)
    })?;
    if stored.rows_affected() == 0 {
        tracing::warn!(subject = %who.subject, "an ID token was presented for exchange a second time");
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "id_token_replayed",
            "this ID token was already exchanged; each ID token is exchanged once. Refresh the sign-in for a new one and retry",
        ));
    }
    let keys = state
        .auth
        .sessions()
        .ok_or_else(|| ApiError::unauthenticated("this server does not exchange ID tokens"))?;
    let (token, claims) = keys
        .issue(
            &who.subject,
            who.email.clone(),
            who.email_verified,
            who.token_groups.clone(),
            now,
        )
        .map_err(|e| {
            tracing::error!(error = %e, "signing a session token failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "the server could not sign a session token; see its log",
            )
        })?;
    let groups = state.auth.resolve_groups(
        &who.subject,
        who.email.as_deref(),
        who.email_verified,
        &who.token_groups,
    );
    tracing::info!(subject = %who.subject, groups = ?groups, "exchanged an ID token for a session");
    let expires_at = Timestamp::from_unix_millis(claims.exp * 1000);
    Ok((
        StatusCode::CREATED,
        Json(SessionAnswer {
            token: WireSecret::new(token.expose_secret()),
            token_type: "Bearer".into(),
            expires_at,
            expires_in: u64::try_from(claims.exp - claims.iat).unwrap_or(0),
            subject: who.subject,
            email: who.email,
            groups,
        }),
    )
        .into_response())
}

/// `GET /v1/me`: the caller as the server sees them: subject, email, the groups it resolved,
/// and how they authenticated.
pub async fn me(State(state): State<AppState>, caller: Caller) -> Json<Me> {
    Json(Me {
        subject: caller.actor.subject.as_str().to_string(),
        email: caller.actor.email,
        groups: caller.actor.groups,
        via: caller.via,
        caller_auth: state.auth.mode(),
    })
}
