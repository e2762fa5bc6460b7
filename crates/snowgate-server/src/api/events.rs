//! `GET /v1/events`: the signed-in person's grant events as Server-Sent Events.
//!
//! What a person sees: everything about grants they requested (decisions, activation,
//! revocation, expiry, the expiry warning), everything they caused, and, for roles they approve,
//! requests and extensions waiting for a decision plus the decisions, cancellations and
//! timeouts that take them off the list.
//!
//! Each SSE event has `id:` = the events table id, `event:` = the kind (`requested`,
//! `approved`, `expired`, ...) and `data:` = the grant event as JSON. A client that reconnects
//! with `Last-Event-ID` (to this replica or any other) first gets every later row that concerns
//! it, read from the table, then follows live. Comments are sent as keep-alives.
//!
//! The stream also announces the replica's audit checkpoints ([`crate::checkpoint`]): the
//! newest when the stream opens (after the replay) and each new one, as `event: checkpoint`
//! with `data:` = what `GET /v1/audit/checkpoint` answers and no `id:` (they are not rows of
//! the events table, so they don't move `Last-Event-ID`). Desktops keep the newest they have
//! seen.
//!
//! A stream lives no longer than the token that opened it: when the caller's IdP access token
//! or session token expires (its `exp`, by the server's clock), the stream ends, and the desktop
//! reconnects with a fresh token and `Last-Event-ID`. So someone signed out, or no longer
//! allowed in, stops receiving events within one token's life.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use snowgate_grants::team_api::{EventData, EventsQuery};
use snowgate_grants::{Actor, GrantEventKind, PgLedger, RoleName, StoredEvent};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt as _;

use crate::auth::Caller;
use crate::checkpoint::SignedCheckpoint;
use crate::error::ApiError;
use crate::state::AppState;

/// How often a keep-alive comment is sent on an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Rows read per replay query.
const REPLAY_PAGE: u32 = 500;

/// Whether `who` (approving `roles`) is shown the event.
pub fn visible(ev: &StoredEvent, who: &Actor, roles: &[RoleName]) -> bool {
    if ev.concerns(&who.subject) {
        return true;
    }
    if !roles.contains(&ev.event.role) {
        return false;
    }
    match ev.event.kind {
        GrantEventKind::Requested { .. } | GrantEventKind::ExtensionRequested { .. } => {
            ev.awaiting_decision
        }
        GrantEventKind::Approved { .. }
        | GrantEventKind::ExtensionApproved { .. }
        | GrantEventKind::Denied { .. }
        | GrantEventKind::ExtensionDenied { .. }
        | GrantEventKind::Cancelled
        | GrantEventKind::ExtensionCancelled
        | GrantEventKind::TimedOut
        | GrantEventKind::ExtensionTimedOut => true,
        _ => false,
    }
}

fn sse_event(ev: &StoredEvent) -> Event {
    let data = EventData {
        id: ev.id,
        awaiting_decision: ev.awaiting_decision,
        event: ev.event.clone(),
    };
    Event::default()
        .id(ev.id.to_string())
        .event(ev.event.kind.name())
        .data(serde_json::to_string(&data).expect("an event serializes"))
}

/// An audit checkpoint as an SSE event (no `id:`).
fn checkpoint_event(c: &SignedCheckpoint) -> Event {
    Event::default()
        .event("checkpoint")
        .data(serde_json::to_string(&c.wire()).expect("a checkpoint serializes"))
}

/// `GET /v1/events`.
pub async fn stream(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    q: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let from_query = q
        .map_err(|e| {
            ApiError::bad_request(format!("bad query for GET /v1/events ({})", e.body_text()))
        })?
        .0
        .last_event_id;
    let from_header = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("not text").to_string());
    let last = match from_header.or(from_query) {
        Some(raw) if !raw.trim().is_empty() => Some(raw.trim().parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Last-Event-ID {raw:?} is not an event id; send the `id:` of the last event you received, or nothing to start from now"
            ))
        })?),
        _ => None,
    };
    // Subscribe before reading the table, so nothing committed in between is missed.
    let live = state.hub.subscribe();
    let ledger = state.ops.ledger().clone();
    let last = match last {
        Some(id) => id,
        None => ledger.last_event_id().await?,
    };
    let roles = state.ops.policy().roles_approvable_by(&caller.actor);
    let (tx, rx) = mpsc::channel(64);
    let clock = state.ops.clock();
    let until = caller.expires_at;
    let checkpoints = state.checkpoints.subscribe();
    tokio::spawn(async move {
        // Ending `follow` drops the sender, which ends the response after what is queued.
        tokio::select! {
            _ = follow(ledger, caller.actor, roles, last, live, checkpoints, tx) => {}
            _ = clock.sleep_until(until) => {}
        }
    });
    let stream = ReceiverStream::new(rx).map(Ok);
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// Replays from the table, then follows the hub, until the client goes away.
async fn follow(
    ledger: PgLedger,
    who: Actor,
    roles: Vec<RoleName>,
    mut last: i64,
    mut live: broadcast::Receiver<Arc<StoredEvent>>,
    mut checkpoints: watch::Receiver<Option<Arc<SignedCheckpoint>>>,
    tx: mpsc::Sender<Event>,
) {
    if replay_until_done(&ledger, &who, &roles, &mut last, &tx)
        .await
        .is_err()
    {
        return;
    }
    let newest = checkpoints.borrow_and_update().clone();
    if let Some(c) = newest {
        if tx.send(checkpoint_event(&c)).await.is_err() {
            return;
        }
    }
    loop {
        let next = tokio::select! {
            next = live.recv() => next,
            changed = checkpoints.changed() => {
                if changed.is_err() {
                    return;
                }
                let newest = checkpoints.borrow_and_update().clone();
                if let Some(c) = newest {
                    if tx.send(checkpoint_event(&c)).await.is_err() {
                        return;
                    }
                }
                continue;
            }
            _ = tx.closed() => return,
        };
        match next {
            Ok(ev) => {
                if ev.id <= last {
                    continue;
                }
                last = ev.id;
                if visible(&ev, &who, &roles) && tx.send(sse_event(&ev)).await.is_err() {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                if replay_until_done(&ledger, &who, &roles, &mut last, &tx)
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// Why a replay stopped.
enum ReplayError {
    /// The client went away.
    Gone,
    /// The table could not be read.
    Database,
}

/// [`replay`], retried every second while the database cannot be read (keep-alives go on
/// meanwhile). `Err` only when the client is gone.
async fn replay_until_done(
    ledger: &PgLedger,
    who: &Actor,
    roles: &[RoleName],
    last: &mut i64,
    tx: &mpsc::Sender<Event>,
) -> Result<(), ()> {
    loop {
        match replay(ledger, who, roles, last, tx).await {
            Ok(()) => return Ok(()),
            Err(ReplayError::Gone) => return Err(()),
            Err(ReplayError::Database) => {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = tx.closed() => return Err(()),
                }
            }
        }
    }
}

/// Sends every stored event after `last` that `who` may see, moving `last`.
async fn replay(
    ledger: &PgLedger,
    who: &Actor,
    roles: &[RoleName],
    last: &mut i64,
    tx: &mpsc::Sender<Event>,
) -> Result<(), ReplayError> {
    loop {
        let rows = match ledger
            .events_for(*last, &who.subject, roles, REPLAY_PAGE)
            .await
        {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!(error = %e, "replaying grant events failed; retrying in a second");
                return Err(ReplayError::Database);
            }
        };
        let n = rows.len();
        for ev in rows {
            *last = ev.id;
            if visible(&ev, who, roles) && tx.send(sse_event(&ev)).await.is_err() {
                return Err(ReplayError::Gone);
            }
        }
        if n < REPLAY_PAGE as usize {
            return Ok(());
        }
    }
}
