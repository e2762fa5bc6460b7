//! The background task that keeps the IdP access token fresh.
//!
//! It sleeps (on the injected clock) until the session's next due time: about 75 % of the
//! IdP access token's lifetime with jitter, the next retry while the IdP is unreachable, or at
//! once after a restore (no access token yet). Then it refreshes through the session's refresh
//! lock, like any other caller. It wakes early whenever the session changes (sign-in, sign-out,
//! a refresh by someone else). Snowflake tokens are refreshed on demand only.
//!
//! The task holds the session alive; [`RefreshTask`] aborts it when the last
//! [`Identity`](super::Identity) handle is dropped.

use std::sync::Arc;

use tokio::task::JoinHandle;

use super::session::Session;

/// Aborts the background task when dropped.
#[derive(Debug)]
pub(crate) struct RefreshTask(JoinHandle<()>);

impl Drop for RefreshTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts the background refresh task of `session`.
pub(crate) fn spawn(session: Arc<Session>) -> RefreshTask {
    RefreshTask(tokio::spawn(async move {
        loop {
            let notified = session.wake.notified();
            tokio::pin!(notified);
            // Register before reading the schedule, so a change in between is not missed.
            notified.as_mut().enable();
            match session.next_due() {
                None => notified.await,
                Some(due) => {
                    tokio::select! {
                        _ = session.clock.sleep_until(due) => session.background_refresh().await,
                        _ = &mut notified => {}
                    }
                }
            }
        }
    }))
}
