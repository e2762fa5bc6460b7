//! Roles, requests, decisions, listings and Snowflake tokens.
//!
//! Input is parsed into the grants crate's types first (role names, durations, reasons,
//! comments, grant ids), so a bad value is a 400 that names it and nothing is written. Who may
//! do what is decided by the state machine under the configured policy; its refusals become
//! 403/409/422 with its sentence. Mutating calls count against the caller's rate limit.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use secrecy::ExposeSecret;
use serde_json::json;
use snowgate_grants::audit::{AuditActor, AuditKind};
use snowgate_grants::team_api::{
    Empty, ExtendRequest, GrantList, GrantsQuery, NewRequest, OneGrant, OptionalComment,
    RequiredComment, RoleInfo, RolesAnswer, SnowflakeToken, WireSecret,
};
use snowgate_grants::{
    AuditEntry, Comment, Grant, GrantDuration, GrantId, GrantRequest, GrantState, Ledger, Reason,
    RoleName, Ticket, Timestamp,
};

use crate::api::body::Body;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::minting::{self, MintError};
use crate::state::AppState;

/// Counts a mutating call against the caller's rate limit.
fn limit(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    state
        .limiter
        .check(caller.actor.subject.as_str())
        .map_err(|wait| ApiError::rate_limited(wait.as_secs().max(1)))
}

fn grant_id(raw: &str) -> Result<GrantId, ApiError> {
    raw.parse()
        .map_err(|e: snowgate_grants::InvalidValue| ApiError::bad_request(e.to_string()))
}

fn bad(field: &str) -> impl Fn(snowgate_grants::InvalidValue) -> ApiError + '_ {
    move |e| ApiError::bad_request(format!("`{field}`: {e}"))
}

fn one_grant(status: StatusCode, g: Grant) -> Response {
    (status, Json(OneGrant { grant: g })).into_response()
}

/// `GET /v1/roles`: every requestable role, its policy, and whether the caller approves it.
pub async fn roles(State(state): State<AppState>, caller: Caller) -> Json<RolesAnswer> {
    let roles = state
        .ops
        .policy()
        .roles()
        .iter()
        .map(|r| RoleInfo::new(r, r.is_approver(&caller.actor)))
        .collect();
    Json(RolesAnswer { roles })
}

/// `POST /v1/requests`: ask for a role. 201 with the grant (active if auto-approved).
pub async fn request(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<NewRequest>,
) -> Result<Response, ApiError> {
    limit(&state, &caller)?;
    // The grant pins its requester as this token names them; a login name that could not be
    // minted later is refused now, before anyone approves it.
    minting::login_name(&state.mint, &caller.actor, caller.email_verified)
        .map_err(|e| ApiError::forbidden(e.to_string()))?;
    let req = GrantRequest {
        role: RoleName::new(body.role).map_err(bad("role"))?,
        duration: GrantDuration::from_secs(body.duration_secs).map_err(bad("duration_secs"))?,
        reason: Reason::new(body.reason).map_err(bad("reason"))?,
        ticket: body
            .ticket
            .map(Ticket::new)
            .transpose()
            .map_err(bad("ticket"))?,
    };
    let g = state.ops.request(&caller.actor, req).await?;
    Ok(one_grant(StatusCode::CREATED, g))
}

/// `GET /v1/grants?mine=true|false&state=&limit=`: the caller's grants (`mine=true`, the
/// default), or also those of the roles they approve (`mine=false`).
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<GrantsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<GrantList>, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError::bad_request(format!(
            "bad query for GET /v1/grants ({}); it takes mine=true|false, state=pending|active|denied|cancelled|timed_out|expired|revoked and limit=N",
            e.body_text()
        ))
    })?;
    let states = match q.state.as_deref() {
        None | Some("") => Vec::new(),
        Some(s) => vec![s
            .parse::<GrantState>()
            .map_err(|e| ApiError::bad_request(format!("`state`: {e}")))?],
    };
    let limit = Some(q.limit.unwrap_or(200).clamp(1, 1000));
    let grants = if q.mine {
        state.ops.mine(&caller.actor, states, limit).await?
    } else {
        state
            .ops
            .mine_and_approvable(&caller.actor, states, limit)
            .await?
    };
    Ok(Json(GrantList { grants }))
}

/// `GET /v1/grants/{id}`: one grant, for its requester or an approver of its role.
pub async fn one(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let g = state.ops.visible(&caller.actor, &grant_id(&id)?).await?;
    Ok(one_grant(StatusCode::OK, g))
}

/// `GET /v1/approvals`: what waits for the caller's decision.
pub async fn approvals(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<GrantList>, ApiError> {
    let grants = state.ops.awaiting(&caller.actor).await?;
    Ok(Json(GrantList { grants }))
}

fn optional_comment(c: Option<String>) -> Result<Option<Comment>, ApiError> {
    c.filter(|c| !c.trim().is_empty())
        .map(Comment::new)
        .transpose()
        .map_err(bad("comment"))
}

/// `POST /v1/grants/{id}/approve`.
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<OptionalComment>,
) -> Result<Response, ApiError> {
    limit(&state, &caller)?;
    let id = grant_id(&id)?;
    let comment = optional_comment(body.comment)?;
    let g = state.ops.approve(&caller.actor, &id, comment).await?;
    Ok(one_grant(StatusCode::OK, g))
}

/// `POST /v1/grants/{id}/deny`: a comment is required.
pub async fn deny(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<RequiredComment>,
) -> Result<Response, ApiError> {
    limit(&state, &caller)?;
    let id = grant_id(&id)?;
    let comment = Comment::new(body.comment).map_err(bad("comment"))?;
    let g = state.ops.deny(&caller.actor, &id, comment).await?;
    Ok(one_grant(StatusCode::OK, g))
}

/// `POST /v1/grants/{id}/revoke`: by the requester or an approver of the role.
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<OptionalComment>,
) -> Result<Response, ApiError> {
    limit(&state, &caller)?;
    let id = grant_id(&id)?;
    let comment = optional_comment(body.comment)?;
    let g = state.ops.revoke(&caller.actor, &id, comment).await?;
    Ok(one_grant(StatusCode::OK, g))
}

/// `POST /v1/grants/{id}/extend`: the requester asks for more time (a new decision).
pub async fn extend(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(body): Body<ExtendRequest>,
) -> Result<Response, ApiError> {
    limit(&state, &caller)?;
    let id = grant_id(&id)?;
    let extra = GrantDuration::from_secs(body.by_secs).map_err(bad("by_secs"))?;
    let reason = Reason::new(body.reason).map_err(bad("reason"))?;
    let g = state.ops.extend(&caller.actor, &id, extra, reason).await?;
    Ok(one_grant(StatusCode::OK, g))
}

/// `POST /v1/grants/{id}/cancel`: the requester withdraws a pending request or extension.
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(_): Body<Empty>,
) -> Result<Response, ApiError> {
    limit(&state, &caller)?;
    let id = grant_id(&id)?;
    let g = state.ops.cancel(&caller.actor, &id).await?;
    Ok(one_grant(StatusCode::OK, g))
}

/// `POST /v1/grants/{id}/snowflake-token`: a Snowflake External OAuth token for the grant's
/// role, for the grant's requester, while the grant is active.
pub async fn snowflake_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Body(_): Body<Empty>,
) -> Result<Response, ApiError> {
    limit(&state, &caller)?;
    let id = grant_id(&id)?;
    let g = state.ops.visible(&caller.actor, &id).await?;
    if !g.requester().is(&caller.actor) {
        return Err(ApiError::forbidden(format!(
            "only the requester of grant {id} can get a Snowflake token for it"
        )));
    }
    let now = state.ops.now();
    if !g.is_usable_at(Timestamp::from(now)) {
        let message = match g.state() {
            GrantState::Pending => format!(
                "grant {id} is still waiting for approval; a token can be had once it is approved"
            ),
            GrantState::Active => format!(
                "grant {id} reached its end at {}; request a new grant",
                g.expires_at().map(|t| t.to_string()).unwrap_or_default()
            ),
            s => format!(
                "grant {id} has ended ({}{}); request a new grant",
                s.verb(),
                g.ended_at().map(|t| format!(" at {t}")).unwrap_or_default()
            ),
        };
        return Err(ApiError::conflict(message));
    }
    let minted = minting::mint(&state.keys, &state.mint, &g, caller.email_verified, now).map_err(
        |e| match e {
            MintError::NoEmail => ApiError::conflict(e.to_string()),
            MintError::UnverifiedEmail => ApiError::forbidden(e.to_string()),
            other => {
                tracing::error!(error = %other, grant = %id, "minting a Snowflake token failed");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the server could not sign a token; an admin should check its signing keys",
                )
            }
        },
    )?;
    let entry = AuditEntry {
        at: Timestamp::from(now),
        actor: AuditActor::User(caller.actor.subject.clone()),
        kind: AuditKind::new("token.minted"),
        grant_id: Some(id.clone()),
        role: Some(minted.role.clone()),
        details: json!({ "jti": minted.jti, "expires_at": minted.expires_at.to_rfc3339() }),
    };
    state.ops.ledger().append(&[entry]).await?;
    Ok(Json(SnowflakeToken {
        token: WireSecret::new(minted.token.expose_secret()),
        expires_at: minted.expires_at,
        role: minted.role,
        grant: id,
    })
    .into_response())
}
