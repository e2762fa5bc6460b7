//! Cancelling a session's running queries at a cut.
//!
//! Snowflake does not cancel a session's running queries when the session is closed: they run
//! to their end. So at a cut (the grant ends or is revoked, the user signs out, a session is
//! closed from the tray, the gateway stops) the gateway first asks Snowflake to abort every
//! query the session may still be running, then closes the session ([`crate::closer`]).
//!
//! [`Running`] knows two kinds, per session:
//! - query-requests sent upstream and not answered yet. Their query id comes only with the
//!   answer, so they are aborted by the driver's `requestId`:
//!   `POST /queries/v1/abort-request` with `{"sqlText", "requestId"}`, as the Python
//!   connector cancels a statement;
//! - queries answered while still running: asynchronous ones (`asyncExec`) and those whose
//!   result the tool fetches later (`GET /queries/{id}/result`, which Snowflake also uses
//!   for a query that outlasts its request). They are aborted by query id:
//!   `POST /queries/{id}/abort-request`, as the Node.js sdk and the connectors' `abort_query`.
//!
//! A query that finished meanwhile is answered 000605 ("not currently executing"): that is
//! not a failure. A request leaves [`Running`] once its answer has been read for its query id
//! (an asynchronous one is then kept by that id); the newest [`MAX_DETACHED`] query ids are
//! kept. Once a cut has taken the session's queries, no new query-request is let through
//! ([`CutStarted`]), so none can slip in between the aborts and the close.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use secrecy::SecretString;
use serde_json::{json, Value};
use tokio::task::JoinSet;

use crate::handle_table::Session;
use crate::state::Shared;

/// Query ids of detached or polled queries kept per session.
pub(crate) const MAX_DETACHED: usize = 32;

/// Snowflake's answer to an abort of a query that is not executing any more.
const NOT_EXECUTING: &str = "000605";
/// The session token expired: renew, then abort again.
const SESSION_EXPIRED: &str = "390112";

/// The queries a session may still be running upstream.
#[derive(Default)]
pub(crate) struct Running {
    inner: Mutex<Inner>,
}

/// Counts only: statement text stays out of logs unless the audit asks for it.
impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("Running")
            .field("requests", &inner.requests.len())
            .field("detached", &inner.detached.len())
            .finish()
    }
}

#[derive(Default)]
struct Inner {
    /// A cut took the queries: nothing new goes upstream.
    cut: bool,
    next: u64,
    requests: HashMap<u64, InFlight>,
    detached: VecDeque<String>,
}

#[derive(Clone)]
struct InFlight {
    request_id: String,
    sql: String,
}

/// One abort to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Abort {
    /// A query-request not answered yet, by the driver's `requestId`.
    Request { request_id: String, sql: String },
    /// A query answered while still running, by its query id.
    Query { query_id: String },
}

/// The session is being cut: a query-request must not go upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CutStarted;

/// Keeps a query-request in [`Running`] until it is dropped (its answer came, or the tool
/// went away).
pub(crate) struct InFlightGuard {
    session: Arc<Session>,
    key: u64,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.session.running.lock().requests.remove(&self.key);
    }
}

impl Running {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Remembers a query-request going upstream. `Ok(None)` without a `requestId`: such a
    /// request can't be named in an abort. `Err` once a cut has started.
    pub fn request(
        session: &Arc<Session>,
        request_id: Option<&str>,
        sql: &str,
    ) -> Result<Option<InFlightGuard>, CutStarted> {
        let mut inner = session.running.lock();
        if inner.cut {
            return Err(CutStarted);
        }
        let Some(request_id) = request_id.filter(|r| !r.is_empty()) else {
            return Ok(None);
        };
        inner.next += 1;
        let key = inner.next;
        inner.requests.insert(
            key,
            InFlight {
                request_id: request_id.to_string(),
                sql: sql.to_string(),
            },
        );
        Ok(Some(InFlightGuard {
            session: session.clone(),
            key,
        }))
    }

    /// Remembers a query that may run on after its answer (async, or polled for).
    pub fn detached(&self, query_id: &str) {
        if !is_query_id(query_id) {
            return;
        }
        let mut inner = self.lock();
        if inner.detached.iter().any(|q| q == query_id) {
            return;
        }
        inner.detached.push_back(query_id.to_string());
        while inner.detached.len() > MAX_DETACHED {
            inner.detached.pop_front();
        }
    }

    /// Every abort the session needs now; forgets them, and lets no new query-request
    /// through from now on.
    pub fn take(&self) -> Vec<Abort> {
        let mut inner = self.lock();
        inner.cut = true;
        let mut requests: Vec<(u64, InFlight)> = inner.requests.drain().collect();
        requests.sort_by_key(|(k, _)| *k);
        let mut aborts: Vec<Abort> = requests
            .into_iter()
            .map(|(_, r)| Abort::Request {
                request_id: r.request_id,
                sql: r.sql,
            })
            .collect();
        aborts.extend(
            inner
                .detached
                .drain(..)
                .map(|query_id| Abort::Query { query_id }),
        );
        aborts
    }
}

/// A query id as Snowflake makes them (hex and dashes); anything else is not put in a path.
fn is_query_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// What sending the aborts found.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// Aborts Snowflake accepted (or answered "not executing").
    pub done: usize,
    /// Aborts refused with 390112: to send again after a renewal.
    pub expired: Vec<Abort>,
    /// Other failures, for the log.
    pub failed: Vec<String>,
}

/// Sends the aborts concurrently with the session token `token`.
pub(crate) async fn abort_all(
    shared: &Arc<Shared>,
    route: usize,
    token: &SecretString,
    aborts: Vec<Abort>,
) -> Outcome {
    let mut set = JoinSet::new();
    for abort in aborts {
        let shared = shared.clone();
        let token = token.clone();
        set.spawn(async move {
            let result = send(&shared, route, &token, &abort).await;
            (abort, result)
        });
    }
    let mut outcome = Outcome::default();
    while let Some(joined) = set.join_next().await {
        let Ok((abort, result)) = joined else {
            continue;
        };
        match result {
            Ok(None) => outcome.done += 1,
            Ok(Some(code)) if code == NOT_EXECUTING => outcome.done += 1,
            Ok(Some(code)) if code == SESSION_EXPIRED => outcome.expired.push(abort),
            Ok(Some(code)) => outcome
                .failed
                .push(format!("Snowflake refused the abort with {code}")),
            Err(e) => outcome.failed.push(e),
        }
    }
    outcome
}

/// One abort: `Ok(None)` when Snowflake accepted it, `Ok(Some(code))` when it refused.
async fn send(
    shared: &Shared,
    route: usize,
    token: &SecretString,
    abort: &Abort,
) -> Result<Option<String>, String> {
    let (path, body) = match abort {
        Abort::Request { request_id, sql } => (
            format!("/queries/v1/abort-request?requestId={}", new_request_id()),
            json!({"sqlText": sql, "requestId": request_id}),
        ),
        Abort::Query { query_id } => (format!("/queries/{query_id}/abort-request"), json!({})),
    };
    let answer = shared
        .upstream
        .to(route)
        .post_json(&path, token, &body)
        .await
        .map_err(|e| e.message().to_string())?;
    let Some(v) = answer.json else {
        return Err(format!(
            "Snowflake answered an abort with HTTP {} and no Snowflake JSON",
            answer.status
        ));
    };
    if v.get("success").and_then(Value::as_bool) == Some(true) {
        return Ok(None);
    }
    Ok(Some(match v.get("code") {
        Some(Value::String(c)) => c.clone(),
        Some(other) => other.to_string(),
        None => "unknown".to_string(),
    }))
}

/// A fresh request id for the abort itself (a random UUID, as drivers send).
fn new_request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_ids_are_bounded_deduplicated_and_checked() {
        let r = Running::default();
        r.detached("01b2-0000-aaaa");
        r.detached("01b2-0000-aaaa");
        r.detached("../session?delete=true");
        r.detached("");
        assert_eq!(
            r.take(),
            vec![Abort::Query {
                query_id: "01b2-0000-aaaa".into()
            }]
        );
        assert!(r.take().is_empty(), "take forgets");
        for i in 0..(MAX_DETACHED + 5) {
            r.detached(&format!("q-{i}"));
        }
        let taken = r.take();
        assert_eq!(taken.len(), MAX_DETACHED);
        assert_eq!(
            taken[0],
            Abort::Query {
                query_id: "q-5".into()
            }
        );
    }

    #[test]
    fn request_ids_look_like_uuids() {
        let id = new_request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.as_bytes()[14], b'4');
        assert_ne!(id, new_request_id());
    }
}
