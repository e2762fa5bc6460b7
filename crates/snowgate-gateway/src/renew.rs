//! `POST /session/token-request`: a tool renews its session with its master handle.
//!
//! The master handle (in the `Authorization` header) and the `oldSessionToken` (in the body)
//! are mapped to the upstream tokens they stand for, the request is forwarded, and Snowflake's
//! new session token is swapped for a **new** session handle (the master handle stays; if
//! Snowflake rotated the master token, the handle is remapped). The old session handle keeps
//! reaching its old upstream token for a while, so a request in flight with it gets
//! Snowflake's own 390112 and the driver renews again rather than failing.
//!
//! A master handle whose session ended gets the end-of-access sentence (390510); an unknown
//! master handle gets 390114 too, which tells the driver to log in again. When Snowflake says
//! the session is gone (390111, 390114, 390104), the session leaves the table.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, Method};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::codec;
use crate::codec::{content_length, json_response};
use crate::events::CloseReason;
use crate::handle::cap_validity;
use crate::handle::Handle;
use crate::handle_table::RenewalRefused;
use crate::snowflake_error::SnowflakeError;
use crate::state::Shared;
use crate::upstream::{self, BufferedAnswer};

/// Snowflake codes meaning the upstream session is gone for good.
pub(crate) const SESSION_GONE_CODES: &[&str] = &["390111", "390114", "390104", "390115"];

pub(crate) async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    match renew(&shared, request).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn renew(shared: &Arc<Shared>, request: Request) -> Result<Response, SnowflakeError> {
    if request.method() != Method::POST {
        return Err(SnowflakeError::bad_request(
            "a token-request must be a POST.",
        ));
    }
    let (parts, body) = request.into_parts();
    let master = codec::auth_token(&parts.headers)
        .map(Handle::from_tool)
        .ok_or_else(SnowflakeError::unknown_master_handle)?;
    let cfg = &shared.config;
    let raw = codec::read_capped(body, content_length(&parts.headers), cfg.max_body_bytes).await?;
    let mut json = codec::decode_json(&raw, cfg.max_decompressed_bytes)?;
    let old = json
        .value
        .get("oldSessionToken")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && *s != "None")
        .map(Handle::from_tool);
    let tokens =
        shared
            .table
            .renewal_tokens(&master, old.as_ref())
            .map_err(|refused| match refused {
                RenewalRefused::UnknownMaster => SnowflakeError::unknown_master_handle(),
                RenewalRefused::ForeignOldSession => SnowflakeError::foreign_old_session_token(),
                RenewalRefused::Ended { role, reason } => {
                    SnowflakeError::access_ended(reason.sentence(&role))
                }
            })?;
    if let (Some(obj), Some(up)) = (json.value.as_object_mut(), &tokens.upstream_old_session) {
        obj.insert(
            "oldSessionToken".into(),
            Value::String(up.expose_secret().to_string()),
        );
    }
    let mut headers = parts.headers.clone();
    headers.remove(header::ACCEPT_ENCODING);
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/session/token-request");
    let upstream = shared.upstream.to(tokens.session.route);
    let req = upstream.forward_request(
        &Method::POST,
        path_and_query,
        &headers,
        Some(&tokens.upstream_master),
        upstream::full(codec::encode_json(&json)),
    )?;
    let resp = upstream.send(req).await?;
    let BufferedAnswer { status, json, .. } = upstream::read_answer(resp).await?;
    let Some(mut body) = json else {
        return Err(SnowflakeError::upstream(format_args!(
            "Snowflake answered the session renewal with HTTP {status} and no Snowflake JSON."
        )));
    };
    let session = tokens.session;
    if body.get("success").and_then(Value::as_bool) != Some(true) {
        let code = body.get("code").and_then(Value::as_str).unwrap_or("");
        if SESSION_GONE_CODES.contains(&code) && shared.table.remove(session.id).is_some() {
            shared
                .events
                .record_done(session.closed_event(CloseReason::UpstreamGone))
                .await;
        }
        return Ok(json_response(status, &body));
    }
    let data = body
        .get_mut("data")
        .and_then(Value::as_object_mut)
        .ok_or_else(|| SnowflakeError::upstream("Snowflake's renewal answer has no data."))?;
    let new_session = data
        .get("sessionToken")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(SecretString::from)
        .ok_or_else(|| {
            SnowflakeError::upstream("Snowflake's renewal answer has no session token.")
        })?;
    let new_master = data
        .get("masterToken")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(SecretString::from);
    let master_validity = data
        .get("validityInSecondsMT")
        .or_else(|| data.get("masterValidityInSeconds"))
        .and_then(Value::as_u64)
        .map(Duration::from_secs);
    let Some(handle) =
        shared
            .table
            .renewed(session.id, new_session, new_master.clone(), master_validity)
    else {
        // Ended while the renewal was in flight.
        return Err(match shared.table.session_of(&master) {
            Some((s, Some(reason))) => SnowflakeError::access_ended(reason.sentence(&s.role)),
            _ => SnowflakeError::unknown_master_handle(),
        });
    };
    let remaining = session
        .grant_ends_at()
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    data.insert(
        "sessionToken".into(),
        Value::String(handle.expose().to_string()),
    );
    if data.contains_key("masterToken") {
        data.insert(
            "masterToken".into(),
            Value::String(master.expose().to_string()),
        );
    }
    for key in [
        "validityInSecondsST",
        "validityInSecondsMT",
        "masterValidityInSeconds",
    ] {
        if data.contains_key(key) {
            cap_validity(data, key, remaining);
        }
    }
    for key in ["idToken", "mfaToken", "remMeToken"] {
        if data.contains_key(key) {
            data.insert(key.into(), Value::Null);
        }
    }
    tracing::debug!(session = %session.id, "session renewed");
    Ok(json_response(status, &body))
}
