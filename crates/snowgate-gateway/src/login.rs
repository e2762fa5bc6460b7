//! `POST /session/v1/login-request`: a tool logs in, Snowgate authorizes it, and the tool gets
//! handles to a session Snowflake opened for the grant.
//!
//! The steps: read the body (capped, gzip by magic); ask the [`Authorizer`](crate::Authorizer)
//! with what the tool asked for and who it is (pid and process name are looked up here, once
//! per login); rewrite the body and query string ([`crate::login_rewrite`]); forward; and on
//! success swap Snowflake's tokens for fresh handles ([`swap_login_tokens`]) and register the
//! session on the account the authorizer chose (its upstream, its identifier as
//! `ACCOUNT_NAME`), which the session keeps for all its requests. Snowflake's refusals are
//! passed to the tool as they are (they are Snowflake-shaped already). The tool's password is
//! never forwarded or logged.
//!
//! A login can outlive the access it was authorized for: the grant is revoked or ends, or the
//! user signs out, while Snowflake is still answering. The handle table then refuses to
//! register the session ([`crate::handle_table::HandleTable::open`]); the gateway records it
//! as opened and at once closed for that reason, closes it upstream, and tells the tool the
//! end-of-access sentence (390510), as it would have told it on its first request.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http::{header, Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::authorizer::{LoginContext, PeerInfo, Refusal};
use crate::codec;
use crate::events::{CloseReason, GatewayEvent, ToolInfo};
use crate::handle::{self, Handle};
use crate::handle_table::{LateLogin, NewSession, DEFAULT_MASTER_VALIDITY};
use crate::login_rewrite::{self, Rewrite};
use crate::snowflake_error::SnowflakeError;
use crate::state::{Connection, Shared};
use crate::upstream::{self, BufferedAnswer};

/// How long a login may take upstream.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);
/// Snowflake's "OAuth access token expired" login error.
const OAUTH_TOKEN_EXPIRED: &str = "390318";

/// Answer fields that are long-lived credentials of their own; a tool behind Snowgate gets none.
const CREDENTIAL_ANSWER_FIELDS: &[&str] = &["idToken", "mfaToken", "remMeToken"];

/// The index of the account the authorizer chose; an account the gateway does not serve is
/// refused (the authorizer and the gateway were configured apart).
fn route_of(cfg: &crate::GatewayConfig, account: Option<&str>) -> Result<usize, Refusal> {
    let Some(name) = account else {
        return Ok(0);
    };
    cfg.accounts
        .iter()
        .position(|r| r.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| {
            Refusal::login(format!(
                "Snowgate: the gateway serves no account named {name} (accounts: {}).",
                cfg.accounts
                    .iter()
                    .map(|r| r.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

pub(crate) async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    match login(&shared, request).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn login(shared: &Arc<Shared>, request: Request) -> Result<Response, SnowflakeError> {
    if request.method() != Method::POST {
        return Err(SnowflakeError::bad_request(
            "a login-request must be a POST.",
        ));
    }
    let conn = request
        .extensions()
        .get::<Connection>()
        .cloned()
        .expect("the listener attaches the connection");
    let (parts, body) = request.into_parts();
    let cfg = &shared.config;
    let raw = codec::read_capped(
        body,
        codec::content_length(&parts.headers),
        cfg.max_body_bytes,
    )
    .await?;
    let mut json = codec::decode_json(&raw, cfg.max_decompressed_bytes)?;
    let fields = login_rewrite::read_login_fields(&json.value)?;
    let query = parts.uri.query().unwrap_or("");
    let requested_role =
        login_rewrite::query_param(query, "roleName").filter(|r| !r.trim().is_empty());

    let peer = peer_info(&conn).await;
    let tool = ToolInfo {
        app_id: fields.client_app_id.clone(),
        app_version: fields.client_app_version.clone(),
        secret_name: None,
        agent: None,
    };
    let is_agent = fields
        .password
        .as_ref()
        .is_some_and(|p| p.expose_secret().starts_with(crate::AGENT_SECRET_PREFIX));
    let tool_secret = if cfg.require_tool_secrets || is_agent {
        fields.password.clone()
    } else {
        None
    };
    let make_ctx = || LoginContext {
        requested_role: requested_role.clone(),
        login_name: fields.login_name.clone(),
        account: fields.account.clone(),
        client_app_id: fields.client_app_id.clone(),
        client_app_version: fields.client_app_version.clone(),
        tool_secret: tool_secret.clone(),
        peer: peer.clone(),
    };
    // Read before the authorizer decides: a sign-out from here on refuses this login.
    let sign_out_epoch = shared.table.sign_out_epoch();
    let refused = |code: String, message: String| {
        shared.events.emit(GatewayEvent::LoginRefused {
            peer: peer.clone(),
            tool: tool.clone(),
            requested_role: requested_role.clone(),
            code,
            message,
        });
    };
    // At most two rounds: Snowflake may call a token expired that the broker's clock still
    // calls fresh (the clocks disagree, as after a laptop's sleep); the authorizer then drops
    // it and the login is authorized once more with a new one.
    let mut retried = false;
    let ((grant, route), answer) = loop {
        let grant = match shared.authorizer.authorize_login(make_ctx()).await {
            Ok(g) => g,
            Err(refusal) => {
                refused(refusal.code.to_string(), refusal.message.clone());
                return Err(refusal.into());
            }
        };
        let route = match route_of(cfg, grant.account.as_deref()) {
            Ok(r) => r,
            Err(refusal) => {
                refused(refusal.code.to_string(), refusal.message.clone());
                return Err(refusal.into());
            }
        };
        let upstream = shared.upstream.to(route);
        let stripped = login_rewrite::rewrite_login(
            &mut json.value,
            &Rewrite {
                upstream_token: grant.upstream_token.expose_secret(),
                login_name: &grant.login_name,
                account: &cfg.accounts[route].account,
                grant_id: &grant.grant_id,
                agent: grant.policy.agent.as_deref(),
            },
        )?;
        if !stripped.is_empty() {
            tracing::debug!(fields = ?stripped, "stripped the tool's credential fields from a login");
        }
        let path_and_query = format!(
            "{}?{}",
            parts.uri.path(),
            login_rewrite::force_role(query, &grant.role)
        );
        let mut headers = parts.headers.clone();
        // The answer is read whole to swap tokens: ask for it plain.
        headers.remove(header::ACCEPT_ENCODING);
        let req = upstream.forward_request(
            &Method::POST,
            &path_and_query,
            &headers,
            None,
            upstream::full(codec::encode_json(&json)),
        )?;
        let answer = tokio::time::timeout(LOGIN_TIMEOUT, async {
            let resp = upstream.send(req).await?;
            upstream::read_answer(resp).await
        })
        .await
        .map_err(|_| {
            SnowflakeError::upstream(format_args!(
                "Snowflake at {} did not answer the login within {} s. Retry in a moment.",
                upstream.display(),
                LOGIN_TIMEOUT.as_secs()
            ))
        })??;
        let expired = answer
            .json
            .as_ref()
            .and_then(|b| b.get("code"))
            .map(code_text)
            .is_some_and(|c| c == OAUTH_TOKEN_EXPIRED);
        if expired && !retried {
            retried = true;
            tracing::info!(role = %grant.role, "Snowflake called the upstream token expired; logging in again with a new one");
            shared.authorizer.upstream_token_expired(&grant.role);
            continue;
        }
        break ((grant, route), answer);
    };
    drop(json);
    drop(fields);
    let tool = ToolInfo {
        secret_name: grant.tool_secret_name.clone(),
        agent: grant.policy.agent.clone(),
        ..tool.clone()
    };

    let BufferedAnswer { status, json, .. } = answer;
    let Some(mut body) = json else {
        return Err(SnowflakeError::upstream(format_args!(
            "Snowflake at {} answered the login with HTTP {status} and no Snowflake JSON.",
            shared.upstream.to(route).display()
        )));
    };
    if body.get("success").and_then(Value::as_bool) != Some(true) {
        let code = body.get("code").map(code_text).unwrap_or_default();
        let message = body
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        refused(code, message);
        strip_credential_answer_fields(&mut body);
        return Ok(codec::json_response(status, &body));
    }

    let tokens = upstream_tokens(&body).ok_or_else(|| {
        SnowflakeError::upstream("Snowflake's login answer has no session or master token.")
    })?;
    let remaining = grant
        .grant_ends_at
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    let master_validity = body["data"]
        .get("masterValidityInSeconds")
        .and_then(Value::as_u64)
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_MASTER_VALIDITY);
    let snowflake_session_id = body["data"].get("sessionId").and_then(Value::as_u64);
    let opened = shared.table.open(
        NewSession {
            grant_id: grant.grant_id.clone(),
            role: grant.role.clone(),
            login_name: grant.login_name.clone(),
            route,
            account: (cfg.accounts.len() > 1).then(|| cfg.accounts[route].name.clone()),
            grant_ends_at: grant.grant_ends_at,
            tool: tool.clone(),
            peer,
            snowflake_session_id,
            upstream_session: tokens.0,
            upstream_master: tokens.1,
            master_validity,
            policy: grant.policy.clone(),
        },
        sign_out_epoch,
    );
    let (session, session_handle, master_handle) = match opened {
        Ok(opened) => opened,
        Err(late) => return Err(refuse_late_login(shared, late).await),
    };
    swap_login_tokens(&mut body, &session_handle, &master_handle, remaining);
    let info = shared.table.info(session.id).expect("just opened");
    if let Err(e) = shared
        .events
        .record(GatewayEvent::SessionOpened(info))
        .await
    {
        // No handles without the open record: the session is closed again upstream.
        if let Some(s) = shared.table.end_session(
            session.id,
            crate::events::EndReason::new(
                crate::events::EndKind::ClosedInSnowgate,
                SystemTime::now(),
            ),
        ) {
            shared.table.remove(session.id);
            crate::closer::close_all(shared, vec![s]).await;
        }
        return Err(SnowflakeError::audit_unavailable(&e.reason));
    }
    Ok(codec::json_response(StatusCode::OK, &body))
}

/// A session whose access ended while its login was in flight: recorded as opened and closed
/// for that reason, closed upstream (its running queries first, though it has none), and the
/// tool told why.
async fn refuse_late_login(shared: &Arc<Shared>, late: LateLogin) -> SnowflakeError {
    let LateLogin { to_close, reason } = late;
    let session = to_close.session.clone();
    tracing::info!(
        session = %session.id,
        grant_id = %session.grant_id,
        "access ended while the login was in flight; closing its Snowflake session"
    );
    shared
        .events
        .record_done(GatewayEvent::SessionOpened(session.info(Some(reason))))
        .await;
    shared
        .events
        .record_done(session.closed_event(CloseReason::Ended(reason)))
        .await;
    crate::closer::close_all(shared, vec![to_close]).await;
    SnowflakeError::access_ended(reason.sentence(&session.role))
}

/// The pid and process name of the tool, looked up now (once per login).
async fn peer_info(conn: &Connection) -> PeerInfo {
    let inode = conn.peer_socket.map(|p| p.inode);
    let process = match inode {
        Some(inode) => tokio::task::spawn_blocking(move || crate::peer::process_holding(inode))
            .await
            .ok()
            .flatten(),
        None => None,
    };
    PeerInfo {
        addr: conn.peer,
        uid: conn.peer_socket.map(|p| p.uid),
        pid: process.as_ref().map(|p| p.0),
        process_name: process.and_then(|p| p.1),
    }
}

fn upstream_tokens(body: &Value) -> Option<(SecretString, SecretString)> {
    let data = body.get("data")?;
    let st = data.get("token")?.as_str().filter(|s| !s.is_empty())?;
    let mt = data
        .get("masterToken")?
        .as_str()
        .filter(|s| !s.is_empty())?;
    Some((SecretString::from(st), SecretString::from(mt)))
}

/// Puts the handles where Snowflake's tokens were, caps the validities at the time the grant
/// has left (at least 1 s), and blanks any other credential in the answer.
pub(crate) fn swap_login_tokens(
    body: &mut Value,
    session: &Handle,
    master: &Handle,
    grant_remaining: Duration,
) {
    strip_credential_answer_fields(body);
    let Some(data) = body.get_mut("data").and_then(Value::as_object_mut) else {
        return;
    };
    data.insert("token".into(), Value::String(session.expose().to_string()));
    data.insert(
        "masterToken".into(),
        Value::String(master.expose().to_string()),
    );
    for key in ["validityInSeconds", "masterValidityInSeconds"] {
        handle::cap_validity(data, key, grant_remaining);
    }
}

fn strip_credential_answer_fields(body: &mut Value) {
    if let Some(data) = body.get_mut("data").and_then(Value::as_object_mut) {
        for key in CREDENTIAL_ANSWER_FIELDS {
            if data.contains_key(*key) {
                data.insert((*key).into(), Value::Null);
            }
        }
    }
}

fn code_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handle::HandleKind;
    use serde_json::json;

    #[test]
    fn login_answer_carries_handles_and_capped_validities_only() {
        let mut body = json!({"data": {
            "token": "ver:1-hint:real-session", "masterToken": "ver:1-hint:real-master",
            "validityInSeconds": 3600, "masterValidityInSeconds": 14400,
            "idToken": "long-lived", "sessionId": 42, "sessionInfo": {"roleName": "ANALYST"}
        }, "success": true});
        let st = Handle::generate(HandleKind::Session);
        let mt = Handle::generate(HandleKind::Master);
        swap_login_tokens(&mut body, &st, &mt, Duration::from_secs(600));
        let d = &body["data"];
        assert_eq!(d["token"], st.expose());
        assert_eq!(d["masterToken"], mt.expose());
        assert_eq!(d["validityInSeconds"], 600);
        assert_eq!(d["masterValidityInSeconds"], 600);
        assert!(d["idToken"].is_null());
        assert_eq!(d["sessionId"], 42);
        assert!(!body.to_string().contains("real-"));
        // A grant with longer left keeps Snowflake's own validities.
        let mut body = json!({"data": {"token": "a", "masterToken": "b", "validityInSeconds": 5}});
        swap_login_tokens(&mut body, &st, &mt, Duration::from_secs(3600));
        assert_eq!(body["data"]["validityInSeconds"], 5);
        assert_eq!(body["data"]["masterValidityInSeconds"], 3600);
        // A grant about to end still reports at least a second.
        let mut body = json!({"data": {"token": "a", "masterToken": "b", "validityInSeconds": 5}});
        swap_login_tokens(&mut body, &st, &mt, Duration::from_millis(200));
        assert_eq!(body["data"]["validityInSeconds"], 1);
    }
}
