//! Reading the audit log: a page of records, a streamed JSON Lines export, and verification of
//! the whole hash chain. Only members of the audit reader groups may read it (by default the
//! approver groups of any role; `[audit] reader_groups` overrides).
//!
//! Desktops in team mode also report what only they see (sign-in and sign-out, gateway
//! sessions and statements) with `POST /v1/audit/records`. Any signed-in person may report,
//! only those kinds, each with its kind's details ([`super::reported`]), and always as
//! themselves: the record's actor is the caller, whatever the body says, and its details carry
//! `"source": "desktop"`.
//!
//! A reported `at` is bounded. It may be ahead of the server's clock by [`REPORT_CLOCK_SKEW`]
//! at most (a desktop's clock is its own). It may not be older than `[audit] report_max_age`
//! (30 days by default): a desktop sends its records within seconds while its person is signed
//! in and the server reachable, but keeps another person's records until that person signs in
//! there again, so a month covers leave and travel; a record older than that is refused and
//! stays in the desktop's outbox marked refused, counted by `snowgate status`, so it is not
//! lost, only kept out of the log. And a record about a grant may not predate the grant's
//! request. A refusal names the record (`records[i]`), so the desktop's outbox, which halves a
//! refused batch down to the record at fault, sets exactly that one aside.
//!
//! Reports are idempotent. A desktop names each record by its ledger's random `source` and the
//! record's `source_seq` (its id in the desktop's outbox, growing); a record the log already has,
//! or one whose `source_seq` is not above the last taken from that source for that person, is
//! acknowledged without being appended again. So a batch sent twice (the answer lost, or the
//! broker killed before it removed the batch from its outbox) lands once, in order. Reports
//! without `source` (from desktops older than this) are still taken, appended as they come: at
//! least once, as those desktops always had it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::{Duration, SystemTime};

use axum::body::Body as HttpBody;
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde_json::json;
use snowgate_grants::audit::{AuditActor, AuditKind};
use snowgate_grants::ledger::verify_ledger;
use snowgate_grants::team_api::{
    AuditPage, AuditParams, Checkpoint, CheckpointFrom, CheckpointSummary, Jwks, ReportAnswer,
    ReportBody, ReportedRecord, Verification, VerifyParams,
};
use snowgate_grants::{AuditEntry, AuditQuery, ChainHead, GrantId, Ledger, RoleName, Timestamp};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;

use crate::api::body::Body;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Records per page read from the database during an export.
const EXPORT_PAGE: u32 = 1000;

/// The most records one `POST /v1/audit/records` may carry.
pub const MAX_REPORTED: usize = 100;
/// Desktop reports a person may send a minute, after a burst of [`REPORT_BURST`]. Separate from
/// (and larger than) the grant-operation budget: a desktop sends at most about one batch a
/// second while queries run, more while it catches up after the server was away.
pub const REPORTS_PER_MINUTE: u32 = 300;
/// Desktop reports a person may send at once.
pub const REPORT_BURST: u32 = 60;
/// How far a desktop's clock may be from the server's: a reported time may be this far ahead
/// of the server's clock, or this far before the request of the grant it is about.
pub const REPORT_CLOCK_SKEW: Duration = Duration::from_secs(300);

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
) -> Result<Json<AuditPage>, ApiError> {
    require_reader(&state, &caller)?;
    let mut q = query(q, "GET /v1/audit")?;
    q.limit = Some(q.limit.unwrap_or(100).clamp(1, 1000));
    let records = state.ops.ledger().audit(&q).await?;
    Ok(Json(AuditPage { records }))
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

/// `GET /v1/audit/verify?checkpoint=`: checks the whole chain, against the checkpoint the
/// caller presents (its signature checked first) and the newest this replica made. `ok` says
/// whether it is intact; a log shorter than a checkpoint's `seq`, or with another record at
/// that `seq`, is not. `checkpoints` names the checkpoints it was checked against.
pub async fn verify(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<VerifyParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Verification>, ApiError> {
    require_reader(&state, &caller)?;
    let Query(q) = q.map_err(|e| {
        ApiError::bad_request(format!(
            "bad query for GET /v1/audit/verify ({}); it takes checkpoint=JWS",
            e.body_text()
        ))
    })?;
    let given = q
        .checkpoint
        .as_deref()
        .map(|t| {
            state
                .checkpoints
                .verify(t.trim())
                .map_err(|e| ApiError::bad_request(e.to_string()))
        })
        .transpose()?;
    let held = state.checkpoints.newest();
    let mut anchors: Vec<(Option<CheckpointSummary>, Option<ChainHead>)> = Vec::new();
    if let Some(c) = given {
        anchors.push((
            Some(CheckpointSummary {
                seq: c.seq,
                hash: c.hash.to_string(),
                at: c.at,
                kid: None,
                from: CheckpointFrom::Caller,
            }),
            Some(c.head()),
        ));
    }
    if let Some(h) = &held {
        if anchors.iter().all(|(_, a)| *a != Some(h.checkpoint.head())) {
            anchors.push((Some(h.summary()), Some(h.checkpoint.head())));
        }
    }
    if anchors.is_empty() {
        anchors.push((None, None));
    }
    let mut head = None;
    for (shown, anchor) in &anchors {
        match verify_ledger(state.ops.ledger(), *anchor).await {
            Ok(h) => head = h,
            Err(snowgate_grants::AuditCheckError::Broken(e)) => {
                return Ok(Json(Verification {
                    ok: false,
                    records: None,
                    head: None,
                    problem: Some(e.to_string()),
                    checkpoint: shown.clone(),
                    checkpoints: None,
                }))
            }
            Err(e) => return Err(ApiError::unavailable("verifying the audit log", &e)),
        }
    }
    let used: Vec<CheckpointSummary> = anchors.into_iter().filter_map(|(s, _)| s).collect();
    Ok(Json(Verification {
        ok: true,
        records: Some(head.map(|h| h.seq).unwrap_or(0)),
        head,
        problem: None,
        checkpoint: used.first().cloned(),
        checkpoints: Some(used),
    }))
}

/// `GET /v1/audit/checkpoint`: the newest signed checkpoint of the chain's head this replica
/// made. Any signed-in person may read it (it names only a record number and a hash), so
/// every desktop can keep a copy.
pub async fn checkpoint(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<Checkpoint>, ApiError> {
    match state.checkpoints.newest() {
        Some(c) => Ok(Json(c.wire())),
        None => Err(ApiError::not_found(
            "no audit checkpoint yet: the audit log is empty, or the replica has just started; an audit reader can make one with POST /v1/audit/checkpoint",
        )),
    }
}

/// `POST /v1/audit/checkpoint`: checks the records since the last checkpoint and signs one
/// now. For audit readers (an admin copying a checkpoint out before a change, a test).
pub async fn make_checkpoint(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Checkpoint>, ApiError> {
    require_reader(&state, &caller)?;
    match state.checkpoints.make(true).await {
        Ok(Some(c)) => Ok(Json(c.wire())),
        Ok(None) => Err(ApiError::not_found(
            "the audit log is empty, so there is no head to sign yet",
        )),
        Err(e @ crate::checkpoint::CheckpointError::Broken(_)) => {
            Err(ApiError::conflict(e.to_string()))
        }
        Err(e) => Err(ApiError::unavailable("making an audit checkpoint", &e)),
    }
}

/// `GET /v1/audit/checkpoint-key`: the public keys that check checkpoints, as a JWKS. Any
/// signed-in person may read them.
pub async fn checkpoint_key(State(state): State<AppState>, _caller: Caller) -> Json<Jwks> {
    Json(state.checkpoints.jwks())
}

/// The longest `source` taken.
const MAX_SOURCE_LEN: usize = 64;

/// One reported record as an audit entry. Its `actor` is ignored: the caller is the actor.
fn reported_entry(
    i: usize,
    r: ReportedRecord,
    caller: &Caller,
    now: SystemTime,
    max_age: Duration,
) -> Result<AuditEntry, ApiError> {
    let at_fault = |what: String| ApiError::bad_request(format!("`records[{i}]`: {what}"));
    let kind = super::reported::desktop_kind(&r.kind).map_err(at_fault)?;
    let at = Timestamp::parse_rfc3339(&r.at).ok_or_else(|| {
        at_fault(format!(
            "`at`: {:?} is not an RFC 3339 time (like 2025-06-01T00:00:00Z)",
            r.at
        ))
    })?;
    let now = Timestamp::from(now);
    if at > now.plus(REPORT_CLOCK_SKEW) {
        return Err(at_fault(format!(
            "`at`: {} is more than {} minutes ahead of the server's clock; check the desktop's clock",
            r.at,
            REPORT_CLOCK_SKEW.as_secs() / 60
        )));
    }
    if at < now.minus(max_age) {
        return Err(at_fault(format!(
            "`at`: {} is older than the {} a desktop's record is taken for ([audit] report_max_age on the server); the desktop keeps it, marked refused",
            r.at,
            snowgate_config::duration::format(max_age)
        )));
    }
    let grant_id = r
        .grant_id
        .map(|g| {
            g.parse::<GrantId>()
                .map_err(|e| at_fault(format!("`grant_id`: {e}")))
        })
        .transpose()?;
    let role = r
        .role
        .map(|n| RoleName::new(n).map_err(|e| at_fault(format!("`role`: {e}"))))
        .transpose()?;
    let session_kind = kind != AuditKind::SIGN_IN && kind != AuditKind::SIGN_OUT;
    if session_kind && (grant_id.is_none() || role.is_none()) {
        return Err(at_fault(format!(
            "{kind} records need `grant_id` and `role` (the grant and role of the session)"
        )));
    }
    super::reported::check_details(&kind, r.details.as_ref()).map_err(at_fault)?;
    let mut details = r.details.unwrap_or_else(|| json!({}));
    details["source"] = json!("desktop");
    Ok(AuditEntry {
        at,
        actor: AuditActor::User(caller.actor.subject.clone()),
        kind,
        grant_id,
        role,
        details,
    })
}

/// `POST /v1/audit/records`: appends what a desktop reports (at most [`MAX_REPORTED`] records,
/// all or none), as the caller, skipping records the log already has. Answers with how many
/// were appended, how many were already there (`duplicates`), and the last `seq` appended.
pub async fn report(
    State(state): State<AppState>,
    caller: Caller,
    Body(body): Body<ReportBody>,
) -> Result<Json<ReportAnswer>, ApiError> {
    state
        .audit_limiter
        .check(caller.actor.subject.as_str())
        .map_err(|wait| {
            let secs = wait.as_secs().max(1);
            ApiError::rate_limited_because(
                secs,
                format!("too many audit reports in a short time; send them in batches of up to {MAX_REPORTED}, and try again in {secs} s"),
            )
        })?;
    if body.records.len() > MAX_REPORTED {
        return Err(ApiError::bad_request(format!(
            "`records` has {} records; send at most {MAX_REPORTED} a call",
            body.records.len()
        )));
    }
    let seqs = source_seqs(body.source.as_deref(), &body.records)?;
    let now = state.ops.now();
    let entries = body
        .records
        .into_iter()
        .enumerate()
        .map(|(i, r)| reported_entry(i, r, &caller, now, state.report_max_age))
        .collect::<Result<Vec<_>, _>>()?;
    if entries.is_empty() {
        return Ok(Json(ReportAnswer {
            appended: 0,
            duplicates: 0,
            last_seq: None,
        }));
    }
    // A desktop reports only on its own person's grants: each named grant must be the
    // caller's, for the role the record names.
    let mut checked: HashMap<GrantId, (RoleName, Timestamp)> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let Some(id) = &e.grant_id else { continue };
        if !checked.contains_key(id) {
            let grant = state.ops.ledger().grant(id).await?.ok_or_else(|| {
                ApiError::bad_request(format!("records[{i}]: there is no grant {id}"))
            })?;
            if grant.requester().subject != caller.actor.subject {
                return Err(ApiError::forbidden(format!(
                    "records[{i}]: grant {id} is not yours; a desktop reports only on its own person's grants"
                )));
            }
            checked.insert(id.clone(), (grant.role().clone(), grant.created_at()));
        }
        let (role, requested) = &checked[id];
        if e.at < requested.minus(REPORT_CLOCK_SKEW) {
            return Err(ApiError::bad_request(format!(
                "records[{i}]: `at` {} is before grant {id} was requested (at {}); a desktop reports only what happened under the grant",
                e.at.to_rfc3339(),
                requested.to_rfc3339()
            )));
        }
        if e.role.as_ref().is_some_and(|r| r != role) {
            return Err(ApiError::bad_request(format!(
                "records[{i}]: grant {id} is for {role}, not {}",
                e.role.as_ref().map(|r| r.as_str()).unwrap_or_default()
            )));
        }
    }
    let (written, duplicates) = match (&body.source, seqs) {
        (Some(source), Some(seqs)) => {
            let r = state
                .ops
                .ledger()
                .append_reported(source, &seqs, &entries)
                .await?;
            (r.appended, r.duplicates)
        }
        _ => (state.ops.ledger().append(&entries).await?, 0),
    };
    Ok(Json(ReportAnswer {
        appended: written.len() as u64,
        duplicates: duplicates as u64,
        last_seq: written.last().map(|r| r.seq),
    }))
}

/// Each record's `source_seq` when the report names its `source`: all present and strictly
/// growing. `None` for a report without ids (an older desktop).
fn source_seqs(
    source: Option<&str>,
    records: &[ReportedRecord],
) -> Result<Option<Vec<u64>>, ApiError> {
    let Some(source) = source else {
        if let Some(i) = records.iter().position(|r| r.source_seq.is_some()) {
            return Err(ApiError::bad_request(format!(
                "`records[{i}]`: `source_seq` needs the report's `source` (the desktop ledger it numbers records in)"
            )));
        }
        return Ok(None);
    };
    if source.is_empty()
        || source.len() > MAX_SOURCE_LEN
        || !source
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(ApiError::bad_request(format!(
            "`source` must be 1 to {MAX_SOURCE_LEN} letters, digits, `-` or `_`"
        )));
    }
    let mut seqs = Vec::with_capacity(records.len());
    for (i, r) in records.iter().enumerate() {
        let seq = match r.source_seq {
            Some(n) if n >= 1 && n <= i64::MAX as u64 => n,
            Some(_) => {
                return Err(ApiError::bad_request(format!(
                    "`records[{i}]`: `source_seq` must be a positive whole number"
                )))
            }
            None => {
                return Err(ApiError::bad_request(format!(
                    "`records[{i}]`: `source_seq` is missing; a report with `source` numbers every record"
                )))
            }
        };
        if seqs.last().is_some_and(|prev| seq <= *prev) {
            return Err(ApiError::bad_request(format!(
                "`records[{i}]`: `source_seq` {seq} is not above the record before it; send a source's records in order"
            )));
        }
        seqs.push(seq);
    }
    Ok(Some(seqs))
}
