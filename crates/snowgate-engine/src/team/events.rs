//! Following the team server's event stream (`GET /v1/events`, Server-Sent Events).
//!
//! [`follow`] keeps one stream open for the signed-in user. Each event's `data:` is the grants
//! crate's [`GrantEvent`] as JSON (plus the server's `id` and `awaiting_decision`: the API's
//! [`EventData`]); it is
//! broadcast to the broker's listeners exactly like a solo-mode event, and the grant it names
//! is re-read in the background so the local cache knows its new state. When the stream
//! breaks, it reconnects with `Last-Event-ID` (the server then replays what was missed), after
//! a pause that doubles from a quarter second up to [`MAX_BACKOFF`]. Before following, and
//! after every reconnect, it reads the user's grants and the roles, so local deadlines and the
//! policy start from what the server knows.

use std::time::Duration;

use eventsource_stream::Eventsource as _;
use futures_util::StreamExt as _;
use secrecy::ExposeSecret as _;
use snowgate_grants::team_api::{Checkpoint, EventData};
use snowgate_grants::GrantEvent;

use super::transport::{cause_of, refusal};
use super::{TeamClient, TeamError};

/// The longest pause between two connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(4);
/// The first pause after a failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The server sends a keep-alive every 15 s; a stream silent for longer is taken as broken.
const SILENCE: Duration = Duration::from_secs(40);

/// Follows the server's events until aborted.
pub async fn follow(team: TeamClient) {
    let mut last_id: Option<String> = None;
    let mut backoff = FIRST_BACKOFF;
    loop {
        match stream_once(&team, &mut last_id).await {
            Ok(delivered) => {
                if delivered {
                    backoff = FIRST_BACKOFF;
                }
                tracing::debug!("the team server's event stream ended; reconnecting");
            }
            Err(TeamError::SignedOut) => {
                // Nothing to follow until someone signs in.
                team.set_connected(false);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "the team server's event stream failed");
            }
        }
        team.set_connected(false);
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connection: opens the stream, resyncs, and passes events on until it ends. `Ok(true)`
/// if it was open (so the backoff starts over).
async fn stream_once(team: &TeamClient, last_id: &mut Option<String>) -> Result<bool, TeamError> {
    let bearer = team.bearer().await?;
    let mut req = team
        .inner
        .sse_http
        .get(team.url("/v1/events"))
        .bearer_auth(bearer.expose_secret())
        .header("accept", "text/event-stream");
    if let Some(id) = last_id.as_deref() {
        req = req.header("last-event-id", id);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| team.unreachable(cause_of(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        let text = resp.text().await.unwrap_or_default();
        let refused = refusal(status, &text, || {
            format!("the event stream answered {status}")
        });
        if status.is_server_error() {
            team.mark_unreachable(&refused.to_string());
        } else {
            if status == reqwest::StatusCode::UNAUTHORIZED {
                team.forget_session(&bearer).await;
            }
            team.mark_reachable();
            tracing::warn!(%status, error = %refused, "the team server refused the event stream");
        }
        return Err(refused);
    }
    team.mark_reachable();
    team.set_connected(true);
    tracing::info!(server = %team.server(), "following the team server's events");
    // Whatever changed while the stream was down (or before it first opened) is read now;
    // events after `last_id` are also replayed by the server.
    team.resync().await;
    let mut stream = resp.bytes_stream().eventsource();
    loop {
        let next = match tokio::time::timeout(SILENCE, stream.next()).await {
            Ok(next) => next,
            Err(_) => {
                team.mark_unreachable("the event stream went silent");
                return Ok(true);
            }
        };
        let event = match next {
            None => return Ok(true),
            Some(Err(e)) => {
                let cause = e.to_string();
                team.mark_unreachable(&cause);
                return Ok(true);
            }
            Some(Ok(event)) => event,
        };
        tracing::trace!(id = %event.id, kind = %event.event, "an event from the team server");
        if event.event == "checkpoint" {
            // An audit checkpoint, not a grant event: kept if newer; it has no id of its own.
            match serde_json::from_str::<Checkpoint>(&event.data) {
                Ok(data) => {
                    let t = team.clone();
                    tokio::spawn(async move {
                        if let Err(e) = t.note_checkpoint(&data).await {
                            tracing::warn!(error = %e, "the team server's audit checkpoint was not kept");
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "an audit checkpoint from the team server could not be read; skipped")
                }
            }
            continue;
        }
        if event.data.trim().is_empty() {
            continue;
        }
        let grant_event: GrantEvent = match serde_json::from_str::<EventData>(&event.data) {
            Ok(data) => data.event,
            Err(e) => {
                tracing::warn!(error = %e, kind = %event.event, "an event from the team server could not be read; skipped");
                if !event.id.is_empty() {
                    *last_id = Some(event.id.clone());
                }
                continue;
            }
        };
        if !event.id.is_empty() {
            *last_id = Some(event.id.clone());
        }
        tracing::debug!(grant = %grant_event.grant, event = grant_event.kind.name(), id = %event.id, "team server event");
        team.note_last_event(&event.id, &grant_event);
        if team.note_event(&grant_event) {
            team.publish(grant_event.clone());
        }
        let t = team.clone();
        let id = grant_event.grant.clone();
        tokio::spawn(async move { t.refresh_grant(&id).await });
    }
}

#[cfg(test)]
mod tests {
    use snowgate_grants::{Cause, GrantEvent, GrantEventKind, Timestamp};

    /// The `data:` of one server event: the grant event plus `id` and `awaiting_decision`.
    fn server_data(kind: GrantEventKind) -> (GrantEvent, String) {
        let event = GrantEvent {
            grant: "g_aaaaaaaaaaaaaaaaaaaa".parse().unwrap(),
            role: snowgate_grants::RoleName::new("ANALYST").unwrap(),
            requester: snowgate_grants::Subject::new("alice").unwrap(),
            at: Timestamp::parse_rfc3339("2026-01-31T14:05:00Z").unwrap(),
            cause: Cause::Clock,
            kind,
        };
        let mut data = serde_json::to_value(&event).unwrap();
        data["id"] = 42.into();
        data["awaiting_decision"] = false.into();
        (event, data.to_string())
    }

    #[test]
    fn server_event_data_reads_as_the_apis_event_data() {
        for kind in [
            GrantEventKind::Revoked { comment: None },
            GrantEventKind::Cancelled,
            GrantEventKind::Expired,
            GrantEventKind::Extended {
                from: Timestamp::parse_rfc3339("2026-01-31T15:00:00Z").unwrap(),
                to: Timestamp::parse_rfc3339("2026-01-31T16:00:00Z").unwrap(),
            },
        ] {
            let (event, data) = server_data(kind);
            let read: snowgate_grants::team_api::EventData = serde_json::from_str(&data).unwrap();
            assert_eq!(read.event, event, "{data}");
            assert_eq!((read.id, read.awaiting_decision), (42, false));
        }
    }
}
