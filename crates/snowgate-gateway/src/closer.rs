//! Closing upstream sessions from Snowgate's side: when a grant ends, when the user closes a
//! session in the tray, and at shutdown.
//!
//! A close is `POST /session?delete=true` with the upstream session token. If that token has
//! expired (390112), the session is renewed with its master token and the close retried, so a
//! session idle past its session-token validity is still closed, not left to expire. Every
//! close has a deadline ([`CLOSE_DEADLINE`]); closes of many sessions run concurrently, so
//! ending a grant takes about one round trip whatever its number of sessions.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::handle_table::ToClose;
use crate::state::Shared;

/// How long closing one upstream session may take.
pub(crate) const CLOSE_DEADLINE: Duration = Duration::from_millis(900);

/// Closes the sessions upstream concurrently and waits for all (each within the deadline).
/// Returns how many Snowflake confirmed.
pub(crate) async fn close_all(shared: &Arc<Shared>, sessions: Vec<ToClose>) -> usize {
    let mut set = JoinSet::new();
    for s in sessions {
        let shared = shared.clone();
        set.spawn(async move {
            let id = s.session.id;
            match tokio::time::timeout(CLOSE_DEADLINE, close_one(&shared, &s)).await {
                Ok(Ok(())) => true,
                Ok(Err(why)) => {
                    tracing::warn!(session = %id, why = %why, "could not close the upstream session");
                    false
                }
                Err(_) => {
                    tracing::warn!(session = %id, "closing the upstream session timed out");
                    false
                }
            }
        });
    }
    let mut confirmed = 0;
    while let Some(r) = set.join_next().await {
        if matches!(r, Ok(true)) {
            confirmed += 1;
        }
    }
    confirmed
}

async fn close_one(shared: &Shared, s: &ToClose) -> Result<(), String> {
    let answer = delete(shared, &s.upstream_session).await?;
    match code(&answer).as_deref() {
        None => Ok(()),
        // Already gone upstream: closed is closed.
        Some("390111") | Some("390104") | Some("390114") => Ok(()),
        Some("390112") => {
            let renewed = shared
                .upstream
                .post_json(
                    "/session/token-request",
                    &s.upstream_master,
                    &json!({"oldSessionToken": secrecy::ExposeSecret::expose_secret(&s.upstream_session), "requestType": "RENEW"}),
                )
                .await
                .map_err(|e| e.to_string())?;
            let token = renewed
                .json
                .as_ref()
                .and_then(|v| v["data"]["sessionToken"].as_str())
                .map(SecretString::from)
                .ok_or_else(|| format!("renewal before close failed: {:?}", code(&renewed.json)))?;
            let answer = delete(shared, &token).await?;
            match code(&answer) {
                None => Ok(()),
                Some(c) => Err(format!("Snowflake refused the close with {c}")),
            }
        }
        Some(c) => Err(format!("Snowflake refused the close with {c}")),
    }
}

async fn delete(shared: &Shared, token: &SecretString) -> Result<Option<Value>, String> {
    let answer = shared
        .upstream
        .post_json("/session?delete=true", token, &json!({}))
        .await
        .map_err(|e| e.to_string())?;
    Ok(answer.json)
}

/// `None` for a success; the error code (or a stand-in) otherwise.
fn code(answer: &Option<Value>) -> Option<String> {
    let Some(v) = answer else {
        return Some("an answer that is not Snowflake JSON".to_string());
    };
    if v.get("success").and_then(Value::as_bool) == Some(true) {
        return None;
    }
    Some(
        v.get("code")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string(),
    )
}
