//! Reading the audit log: a page of records, a streamed JSON Lines export, and verification of
//! the whole hash chain. Only members of the audit reader groups may read it (by default the
//! approver groups of any role; `[audit] reader_groups` overrides).

use std::convert::Infallible;

use axum::body::Body as HttpBody;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use snowgate_grants::ledger::verify_ledger;
use snowgate_grants::{AuditQuery, GrantId, Ledger, Timestamp};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Records per page read from the database during an export.
const EXPORT_PAGE: u32 = 1000;

fn require_reader(state: &AppState, caller: &Caller) -> Result<(), ApiError> {
    if caller.actor.in_any_of(&state.audit_readers) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "reading the audit log is for members of {}; ask one of them",
            if state.audit_readers.is_empty() {
                "the audit reader groups (none are configured)".to_string()
            } else {
                state.audit_readers.join(", ")
            }
        )))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    #[serde(default)]
    since: Option<String>,
    #[serde(default)]
    after_seq: Option<u64>,
    #[serde(default)]
    grant: Option<String>,
    #[serde(default)]
    limit: Option<u32>,
}

fn query(
    q: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
    what: &str,
) -> Result<AuditQuery, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError::bad_request(format!(
            "bad query for {what} ({}); it takes since=RFC 3339 time, after_seq=N, grant=ID and limit=N",
            e.body_text()
        ))
    })?;
    let since = q
        .since
        .map(|s| {
            Timestamp::parse_rfc3339(&s).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "`since`: {s:?} is not an RFC 3339 time (like 2025-06-01T00:00:00Z)"
                ))
            })
        })
        .transpose()?;
    let grant = q
        .grant
        .map(|g| {
            g.parse::<GrantId>()
                .map_err(|e| ApiError::bad_request(format!("`grant`: {e}")))
        })
        .transpose()?;
    Ok(AuditQuery {
        after_seq: q.after_seq,
        since,
        grant,
        limit: q.limit,
    })
}

/// `GET /v1/audit?since=&after_seq=&grant=&limit=`: records in order (at most 1000 a page).
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_reader(&state, &caller)?;
    let mut q = query(q, "GET /v1/audit")?;
    q.limit = Some(q.limit.unwrap_or(100).clamp(1, 1000));
    let records = state.ops.ledger().audit(&q).await?;
    Ok(Json(json!({ "records": records })))
}

/// `GET /v1/audit/export`: every matching record as JSON Lines, streamed page by page.
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require_reader(&state, &caller)?;
    let q = query(q, "GET /v1/audit/export")?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let ledger = state.ops.ledger().clone();
    tokio::spawn(async move {
        let mut after = q.after_seq;
        loop {
            let page = ledger
                .audit(&AuditQuery {
                    after_seq: after,
                    limit: Some(EXPORT_PAGE),
                    ..q.clone()
                })
                .await;
            let page = match page {
                Ok(p) => p,
                Err(e) => {
                    // The client sees a truncated body (no final newline count to trust); the
                    // chain check on import catches it.
                    tracing::warn!(error = %e, "audit export: reading the log failed mid-way");
                    return;
                }
            };
            let mut chunk = String::new();
            for r in &page {
                chunk.push_str(&r.to_json_line());
                chunk.push('\n');
            }
            if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
                return;
            }
            match page.last() {
                Some(last) if page.len() == EXPORT_PAGE as usize => after = Some(last.seq),
                _ => return,
            }
        }
    });
    let stream = ReceiverStream::new(rx).map(Ok::<_, Infallible>);
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"snowgate-audit.jsonl\"",
            ),
        ],
        HttpBody::from_stream(stream),
    )
        .into_response())
}

/// `GET /v1/audit/verify`: checks the whole chain. `ok` says whether it is intact.
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_reader(&state, &caller)?;
    match verify_ledger(state.ops.ledger(), None).await {
        Ok(head) => Ok(Json(json!({
            "ok": true,
            "records": head.map(|h| h.seq).unwrap_or(0),
            "head": head,
        }))),
        Err(snowgate_grants::AuditCheckError::Broken(e)) => Ok(Json(json!({
            "ok": false,
            "problem": e.to_string(),
        }))),
        Err(e) => Err(ApiError::unavailable("verifying the audit log", &e)),
    }
}
