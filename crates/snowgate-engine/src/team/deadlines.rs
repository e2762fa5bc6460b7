//! The local deadlines of team mode: a timer per active grant the client has seen. When a
//! grant's `expires_at` passes and no event has ended it, an `expired` event goes out locally,
//! so enforcement cuts its sessions even while the event stream is down. The server's own
//! `expired` for the same grant is then not announced again ([`TeamClient::note_event`]). The
//! timer sleeps until the nearest `expires_at`, and wakes early when the grants seen change
//! (an extension moves an end; a new grant brings a nearer one).

use std::time::{Duration, SystemTime};

use snowgate_grants::{Cause, Grant, GrantEvent, GrantEventKind, Timestamp};

use super::TeamClient;

impl TeamClient {
    /// Runs the local deadlines: when an active grant's `expires_at` passes and no event has
    /// ended it, an `expired` event goes out locally (sessions are cut even while the server
    /// is away). Runs until aborted.
    pub async fn deadlines(self) {
        loop {
            let now = Timestamp::from(SystemTime::now());
            let due: Vec<Grant> = {
                let known = self.inner.known.lock().unwrap();
                let ended = self.inner.ended.lock().unwrap();
                known
                    .values()
                    .filter(|g| !ended.contains(g.id()) && !g.state().is_ended())
                    .filter(|g| g.approved_at().is_some())
                    .filter(|g| g.expires_at().is_some_and(|t| t <= now))
                    .cloned()
                    .collect()
            };
            for g in due {
                let first = self.inner.ended.lock().unwrap().insert(g.id().clone());
                if !first {
                    continue;
                }
                self.inner.tokens.lock().unwrap().remove(g.id());
                let at = g.expires_at().unwrap_or(now);
                tracing::info!(grant = %g.id(), "the grant reached its end (local deadline)");
                self.publish(GrantEvent {
                    grant: g.id().clone(),
                    role: g.role().clone(),
                    requester: g.requester().subject.clone(),
                    at,
                    cause: Cause::Clock,
                    kind: GrantEventKind::Expired,
                });
            }
            let next = {
                let known = self.inner.known.lock().unwrap();
                let ended = self.inner.ended.lock().unwrap();
                known
                    .values()
                    .filter(|g| !ended.contains(g.id()) && !g.state().is_ended())
                    .filter_map(|g| g.expires_at())
                    .min()
            };
            let wait = next
                .map(|t| {
                    t.to_system_time()
                        .duration_since(SystemTime::now())
                        .unwrap_or_default()
                })
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.inner.changed.notified() => {}
            }
        }
    }
}
