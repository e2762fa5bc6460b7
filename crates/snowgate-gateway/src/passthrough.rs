//! Everything after login: the handle in `Authorization` is mapped to its upstream token, and
//! the request goes to Snowflake with its path and query string exactly as sent. The answer
//! streams back frame by frame, never buffered whole: heartbeat, async results, monitoring,
//! abort (both forms), telemetry, and endpoints the gateway does not know.
//!
//! `POST /queries/v1/query-request` is read first (capped) to hash its `sqlText`, is judged by
//! the session's own rules when it has any ([`crate::statement_policy`]), and goes upstream
//! only after its audit records are kept ([`crate::audit`]): one, or for a multi-statement
//! request (`MULTI_STATEMENT_COUNT` other than 1) one per statement, cut by the SQL parser
//! ([`snowgate_sqlpolicy::split`]) with each its own hash and text, all kept before the
//! request goes on (one not kept refuses it); text the parser can't cut keeps one record that
//! says so. The original bytes are
//! forwarded unchanged, and the answer is watched for its query id as it streams
//! ([`crate::statement`]). `GET /queries/{id}/result` is recorded as a fetch of that query id
//! before it goes upstream.
//!
//! Each session's queries that may still run upstream are kept in its
//! [`Running`](crate::cancel::Running), so a cut can abort them: a query-request until its
//! answer has been read for its query id, an asynchronous query's id from then on, and the id
//! of a query whose result is fetched.
//!
//! A request without a known handle never reaches Snowflake. Telemetry without one is
//! acknowledged and dropped, since drivers send it at odd moments (after close, say) and a
//! refusal there would only confuse them.

use std::borrow::Cow;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::cancel::{CutStarted, Running};
use crate::codec;
use crate::codec::{content_length, json_response};
use crate::events::GatewayEvent;
use crate::handle::{Handle, HandleKind};
use crate::handle_table::{Resolved, Unresolved};
use crate::snowflake_error::SnowflakeError;
use crate::state::Shared;
use crate::statement::{PendingStatement, StatementTap};
use crate::upstream::{self, forwardable_response_header};

const TELEMETRY_PATH: &str = "/telemetry/send";

/// Resolves the session handle in a request's `Authorization` header.
pub(crate) fn resolve(
    shared: &Shared,
    headers: &http::HeaderMap,
) -> Result<Resolved, SnowflakeError> {
    let token = codec::auth_token(headers).ok_or_else(SnowflakeError::no_session_token)?;
    let handle = Handle::from_tool(token);
    shared
        .table
        .resolve_session(&handle)
        .map_err(|unresolved| match unresolved {
            Unresolved::Ended { role, reason } => {
                SnowflakeError::access_ended(reason.sentence(&role))
            }
            Unresolved::Unknown if handle.claimed_kind() == Some(HandleKind::Master) => {
                SnowflakeError::unknown_master_handle()
            }
            Unresolved::Unknown => SnowflakeError::unknown_session_handle(),
        })
}

/// Any request the gateway has no special handling for.
pub(crate) async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    match forward(&shared, request).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn forward(shared: &Arc<Shared>, request: Request) -> Result<Response, SnowflakeError> {
    let resolved = match resolve(shared, request.headers()) {
        Ok(r) => r,
        Err(_) if request.uri().path() == TELEMETRY_PATH => {
            return Ok(json_response(
                http::StatusCode::OK,
                &serde_json::json!({"data": "Log Received", "code": null, "message": null, "success": true}),
            ));
        }
        Err(e) => return Err(e),
    };
    let (parts, body) = request.into_parts();
    let cap = shared.config.max_body_bytes;
    if content_length(&parts.headers).is_some_and(|n| n > cap as u64) {
        return Err(SnowflakeError::bad_request(format_args!(
            "the request body is larger than the {} MiB Snowgate accepts.",
            cap / (1024 * 1024)
        )));
    }
    let body = Limited::new(body, cap).boxed_unsync();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let upstream = shared.upstream.to(resolved.session.route);
    let req = upstream.forward_request(
        &parts.method,
        path_and_query,
        &parts.headers,
        Some(&resolved.upstream),
        body,
    )?;
    let resp = upstream.send(req).await?;
    Ok(to_tool(resp, |b| b))
}

/// The few fields of a query-request the audit needs. Everything else (bindings, which can be
/// large) is skipped by the parser without being built into values.
#[derive(Deserialize)]
struct QueryRequestBody<'a> {
    #[serde(rename = "sqlText", borrow, default)]
    sql_text: Option<Cow<'a, str>>,
    #[serde(rename = "asyncExec", default)]
    async_exec: Option<bool>,
    #[serde(default)]
    parameters: Option<QueryParameters>,
}

#[derive(Deserialize)]
struct QueryParameters {
    #[serde(rename = "MULTI_STATEMENT_COUNT", default)]
    multi_statement_count: Option<IgnoredOrCount>,
    /// The other parameters' names (their values are skipped): a `QUERY_TAG` in any case
    /// would replace the grant's tag for the request, and is refused.
    #[serde(flatten)]
    others: std::collections::HashMap<String, serde::de::IgnoredAny>,
}

impl QueryParameters {
    fn sets_query_tag(&self) -> bool {
        self.others
            .keys()
            .any(|k| k.eq_ignore_ascii_case("QUERY_TAG"))
    }
}

/// `MULTI_STATEMENT_COUNT` as a number or a numeric string; anything else reads as absent.
#[derive(Deserialize)]
#[serde(untagged)]
enum IgnoredOrCount {
    Number(u64),
    Text(String),
    Other(serde::de::IgnoredAny),
}

impl IgnoredOrCount {
    fn count(&self) -> Option<u64> {
        match self {
            IgnoredOrCount::Number(n) => Some(*n),
            IgnoredOrCount::Text(t) => t.trim().parse().ok(),
            IgnoredOrCount::Other(_) => None,
        }
    }
}

/// One statement record's own facts: its hash, its text (when kept), which statement of how
/// many it is.
type StatementRecord = (String, Option<String>, Option<(usize, usize)>);

/// `POST /queries/v1/query-request`: recorded in the audit log, then forwarded unchanged.
pub(crate) async fn query_request(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    match query(&shared, request).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn query(shared: &Arc<Shared>, request: Request) -> Result<Response, SnowflakeError> {
    let resolved = resolve(shared, request.headers())?;
    let (parts, body) = request.into_parts();
    let cfg = &shared.config;
    let raw = codec::read_capped(body, content_length(&parts.headers), cfg.max_body_bytes).await?;
    let plain = codec::plain_bytes(&raw, cfg.max_decompressed_bytes)?;
    let parsed: QueryRequestBody<'_> = serde_json::from_slice(&plain).map_err(|e| {
        SnowflakeError::bad_request(format_args!(
            "the query request body is not valid JSON ({e})."
        ))
    })?;
    let sql = parsed.sql_text.unwrap_or_default();
    let sql_sha256 = hex(&Sha256::digest(sql.as_bytes()));
    let multi_statement = parsed
        .parameters
        .as_ref()
        .and_then(|p| p.multi_statement_count.as_ref())
        .and_then(IgnoredOrCount::count)
        .filter(|n| *n != 1);
    let sql_text = cfg.audit_statement_text.then(|| sql.to_string());
    let session = resolved.session;
    let request_id = query_param(parts.uri.query(), "requestId");
    let is_async = parsed.async_exec.unwrap_or(false);
    let facts = crate::statement_policy::StatementFacts {
        sql: &sql,
        sql_sha256: &sql_sha256,
        sql_text: sql_text.as_deref(),
        request_id: request_id.as_deref(),
    };
    let parameters_tag = parsed
        .parameters
        .as_ref()
        .is_some_and(QueryParameters::sets_query_tag);
    crate::statement_policy::keep_grant_tag(shared, &session, &facts, parameters_tag).await?;
    if session.policy.restricts_statements() {
        crate::statement_policy::admit(shared, &session, facts).await?;
    }
    let pieces = multi_statement.and_then(|_| snowgate_sqlpolicy::split(&sql));
    let records: Vec<StatementRecord> = match &pieces {
        Some(pieces) if !pieces.is_empty() => pieces
            .iter()
            .map(|p| {
                (
                    hex(&Sha256::digest(p.text.as_bytes())),
                    cfg.audit_statement_text.then(|| p.text.to_string()),
                    Some((p.index, pieces.len())),
                )
            })
            .collect(),
        _ => vec![(sql_sha256, sql_text, None)],
    };
    for (sql_sha256, sql_text, part) in records {
        shared
            .events
            .record(GatewayEvent::Statement {
                session: session.id,
                grant_id: session.grant_id.clone(),
                request_id: request_id.clone(),
                sql_sha256,
                sql_text,
                is_async,
                multi_statement,
                part,
                at: SystemTime::now(),
            })
            .await
            .map_err(|e| SnowflakeError::audit_unavailable(&e.reason))?;
    }
    session.statements.fetch_add(1, Ordering::Relaxed);
    // Until its answer starts, a cut aborts it by request id; once a cut started, it stays.
    let in_flight = match Running::request(&session, request_id.as_deref(), &sql) {
        Ok(guard) => guard,
        Err(CutStarted) => {
            return Err(match resolve(shared, &parts.headers) {
                Err(ended) => ended,
                Ok(_) => SnowflakeError::access_ended(format!(
                    "Snowgate: your session as role {} is being closed. Connect again to open a new one.",
                    session.role
                )),
            })
        }
    };
    drop(sql);
    drop(plain);
    let pending = PendingStatement {
        events: shared.events.clone(),
        session: session.id,
        grant_id: session.grant_id.clone(),
        request_id,
        detached: is_async.then(|| session.clone()),
        in_flight,
    };
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let upstream = shared.upstream.to(session.route);
    let req = upstream.forward_request(
        &parts.method,
        path_and_query,
        &parts.headers,
        Some(&resolved.upstream),
        upstream::full(raw),
    )?;
    let resp = upstream.send(req).await?;
    Ok(to_tool(resp, |b| StatementTap::new(b, pending)))
}

/// `GET /queries/{id}/result`: a result fetched later (an async query's, or a multi-statement
/// child's), recorded as a fetch of that query id before it is forwarded.
pub(crate) async fn result_request(
    State(shared): State<Arc<Shared>>,
    request: Request,
) -> Response {
    // The router matched `/queries/{id}/result` on the normal path, so the id is segment 2.
    let query_id = request
        .uri()
        .path()
        .split('/')
        .nth(2)
        .unwrap_or_default()
        .to_string();
    let audited = match resolve(&shared, request.headers()) {
        Ok(resolved) => {
            // A result still being waited for may be of a query still running.
            resolved.session.running.detached(&query_id);
            shared
                .events
                .record(GatewayEvent::ResultFetched {
                    session: resolved.session.id,
                    grant_id: resolved.session.grant_id.clone(),
                    query_id,
                    at: SystemTime::now(),
                })
                .await
                .map_err(|e| SnowflakeError::audit_unavailable(&e.reason))
        }
        Err(e) => Err(e),
    };
    if let Err(e) = audited {
        return e.into_response();
    }
    match forward(&shared, request).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

/// The value of `name` in a query string, as sent (not decoded).
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// Turns Snowflake's answer into the tool's, streaming its body through `wrap`.
fn to_tool<B>(resp: http::Response<Incoming>, wrap: impl FnOnce(Incoming) -> B) -> Response
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    let (parts, body) = resp.into_parts();
    let mut out = Response::new(Body::new(wrap(body)));
    *out.status_mut() = parts.status;
    let headers = out.headers_mut();
    for (name, value) in &parts.headers {
        if forwardable_response_header(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    out
}
