//! Closing upstream sessions from Snowgate's side: when a grant ends, when the user closes a
//! session in the tray or signs out, when a login comes back after its access ended, and at
//! shutdown.
//!
//! A cut first aborts the queries the session may still be running ([`crate::cancel`]),
//! since closing a Snowflake session does not stop them, then closes the session with
//! `POST /session?delete=true` and the upstream session token. If that token has expired
//! (390112), the session is renewed with its master token and the abort or close retried, so
//! a session idle past its session-token validity is still cut, not left to expire. Every cut
//! has a deadline ([`CLOSE_DEADLINE`]), of which the aborts get at most [`CANCEL_DEADLINE`];
//! cuts of many sessions run concurrently, so ending a grant takes about two round trips
//! whatever its number of sessions.

use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::cancel::{self, Abort};
use crate::handle_table::ToClose;
use crate::state::Shared;

/// How long cutting one upstream session (aborts and close) may take.
pub(crate) const CLOSE_DEADLINE: Duration = Duration::from_millis(900);
/// How much of that the aborts of its running queries may take; the close gets the rest.
pub(crate) const CANCEL_DEADLINE: Duration = Duration::from_millis(450);

/// Aborts the sessions' running queries and closes the sessions upstream, concurrently, and
/// waits for all (each within the deadline). Returns how many closes Snowflake confirmed.
pub(crate) async fn close_all(shared: &Arc<Shared>, sessions: Vec<ToClose>) -> usize {
    let mut set = JoinSet::new();
    for s in sessions {
        let shared = shared.clone();
        set.spawn(async move {
            let id = s.session.id;
            match tokio::time::timeout(CLOSE_DEADLINE, cut_one(&shared, &s)).await {
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

/// Aborts the session's running queries (within [`CANCEL_DEADLINE`]), then closes it.
async fn cut_one(shared: &Arc<Shared>, s: &ToClose) -> Result<(), String> {
    let aborts = s.session.running.take();
    let mut renewed = None;
    if !aborts.is_empty() {
        let n = aborts.len();
        match tokio::time::timeout(CANCEL_DEADLINE, cancel_queries(shared, s, aborts)).await {
            Ok((token, failed)) => {
                renewed = token;
                for why in failed {
                    tracing::warn!(session = %s.session.id, why = %why, "could not abort a running query");
                }
                tracing::info!(session = %s.session.id, queries = n, "aborted the session's running queries");
            }
            Err(_) => {
                tracing::warn!(session = %s.session.id, "aborting the session's running queries timed out")
            }
        }
    }
    match renewed {
        Some(token) => close_with(shared, s.session.route, &token, None).await,
        None => close_with(shared, s.session.route, &s.upstream_session, Some(s)).await,
    }
}

/// Sends the aborts; renews the session once if its token expired. Returns the renewed
/// token (if any) and the failures.
async fn cancel_queries(
    shared: &Arc<Shared>,
    s: &ToClose,
    aborts: Vec<Abort>,
) -> (Option<SecretString>, Vec<String>) {
    let outcome = cancel::abort_all(shared, s.session.route, &s.upstream_session, aborts).await;
    let mut failed = outcome.failed;
    if outcome.expired.is_empty() {
        return (None, failed);
    }
    match renew(shared, s).await {
        Ok(token) => {
            let again = cancel::abort_all(shared, s.session.route, &token, outcome.expired).await;
            failed.extend(again.failed);
            if !again.expired.is_empty() {
                failed.push("Snowflake refused the abort with 390112 after a renewal".into());
            }
            (Some(token), failed)
        }
        Err(e) => {
            failed.push(e);
            (None, failed)
        }
    }
}

/// Closes with `token`; with `renewable` set, renews once on 390112 and closes again.
async fn close_with(
    shared: &Shared,
    route: usize,
    token: &SecretString,
    renewable: Option<&ToClose>,
) -> Result<(), String> {
    let answer = delete(shared, route, token).await?;
    match (code(&answer).as_deref(), renewable) {
        (None, _) => Ok(()),
        // Already gone upstream: closed is closed.
        (Some("390111") | Some("390104") | Some("390114"), _) => Ok(()),
        (Some("390112"), Some(s)) => {
            let token = renew(shared, s).await?;
            let answer = delete(shared, route, &token).await?;
            match code(&answer) {
                None => Ok(()),
                Some(c) => Err(format!("Snowflake refused the close with {c}")),
            }
        }
        (Some(c), _) => Err(format!("Snowflake refused the close with {c}")),
    }
}

/// A fresh upstream session token from the master token.
async fn renew(shared: &Shared, s: &ToClose) -> Result<SecretString, String> {
    let renewed = shared
        .upstream
        .to(s.session.route)
        .post_json(
            "/session/token-request",
            &s.upstream_master,
            &json!({"oldSessionToken": secrecy::ExposeSecret::expose_secret(&s.upstream_session), "requestType": "RENEW"}),
        )
        .await
        .map_err(|e| e.to_string())?;
    renewed
        .json
        .as_ref()
        .and_then(|v| v["data"]["sessionToken"].as_str())
        .map(SecretString::from)
        .ok_or_else(|| format!("renewal before close failed: {:?}", code(&renewed.json)))
}

async fn delete(
    shared: &Shared,
    route: usize,
    token: &SecretString,
) -> Result<Option<Value>, String> {
    let answer = shared
        .upstream
        .to(route)
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
