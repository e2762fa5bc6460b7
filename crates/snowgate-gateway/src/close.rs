//! `POST /session?delete=true`: the tool closes its session.
//!
//! The close is forwarded with the upstream session token; once Snowflake confirms (or says the
//! session is already gone), both handles are forgotten and the session leaves the table. If
//! Snowflake answers 390112 (the session token expired), the handles stay: the driver renews
//! and closes again. A session whose access already ended was closed upstream by Snowgate, so
//! its close is answered here and only its handles are dropped. `POST /session` without
//! `delete=true` is passed through.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, Method, StatusCode};
use serde_json::{json, Value};

use crate::codec;
use crate::codec::json_response;
use crate::events::CloseReason;
use crate::handle::Handle;
use crate::login_rewrite::query_param;
use crate::passthrough;
use crate::renew::SESSION_GONE_CODES;
use crate::snowflake_error::SnowflakeError;
use crate::state::Shared;
use crate::upstream::{self, BufferedAnswer};

pub(crate) async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let is_delete = request.method() == Method::POST
        && query_param(request.uri().query().unwrap_or(""), "delete").as_deref() == Some("true");
    if !is_delete {
        return passthrough::handle(State(shared), request).await;
    }
    match close(&shared, request).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn close(shared: &Arc<Shared>, request: Request) -> Result<Response, SnowflakeError> {
    let token =
        codec::auth_token(request.headers()).ok_or_else(SnowflakeError::no_session_token)?;
    let handle = Handle::from_tool(token);
    if let Some((session, Some(_ended))) = shared.table.session_of(&handle) {
        shared.table.remove(session.id);
        return Ok(closed_ok());
    }
    let resolved = passthrough::resolve(shared, request.headers())?;
    let (parts, body) = request.into_parts();
    let raw = codec::read_capped(
        body,
        crate::codec::content_length(&parts.headers),
        shared.config.max_body_bytes,
    )
    .await?;
    let mut headers = parts.headers.clone();
    headers.remove(header::ACCEPT_ENCODING);
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/session?delete=true");
    let upstream = shared.upstream.to(resolved.session.route);
    let req = upstream.forward_request(
        &parts.method,
        path_and_query,
        &headers,
        Some(&resolved.upstream),
        upstream::full(raw),
    )?;
    let resp = upstream.send(req).await?;
    let BufferedAnswer { status, json, .. } = upstream::read_answer(resp).await?;
    let body = json.unwrap_or_else(
        || json!({"data": null, "code": null, "message": null, "success": status.is_success()}),
    );
    let success = body.get("success").and_then(Value::as_bool) == Some(true);
    let code = body.get("code").and_then(Value::as_str).unwrap_or("");
    if success || SESSION_GONE_CODES.contains(&code) {
        let session = resolved.session;
        if shared.table.remove(session.id).is_some() {
            shared
                .events
                .record_done(session.closed_event(CloseReason::ClosedByTool))
                .await;
        }
    }
    Ok(json_response(status, &body))
}

fn closed_ok() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"data": null, "code": null, "message": null, "success": true}),
    )
}
