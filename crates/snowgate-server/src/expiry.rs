//! Deadlines (expiry, the expiry warning, pending timeouts) applied from the database.
//!
//! Every replica runs this loop. It reads the earliest deadline of any live grant from the
//! database, sleeps until then (or until the event hub says grants changed, or at most
//! [`IDLE`]), and then asks the ledger to tick the grants that are due. The ledger claims them
//! under its write lock with `FOR UPDATE SKIP LOCKED` and commits each tick with its audit
//! records and events, so however many replicas wake at the same deadline, each expiry is
//! committed once; and since nothing about deadlines is kept in memory, a replica that is
//! killed loses nothing: the others see the same deadlines in the table.

use std::sync::Arc;
use std::time::Duration;

use snowgate_grants::{Clock, PgLedger, Timestamp};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The longest the loop sleeps without looking at the table.
pub const IDLE: Duration = Duration::from_secs(5);
/// How many grants one tick transaction takes.
const BATCH: u32 = 100;

/// Starts the loop; it runs until the handle is aborted.
pub fn spawn(ledger: PgLedger, clock: Arc<dyn Clock>, changed: Arc<Notify>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let now = clock.now();
            let next = match ledger.next_deadline().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "reading the next grant deadline failed; retrying in a second");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if next.is_some_and(|t| t <= Timestamp::from(now)) {
                match ledger.tick_due(now, BATCH).await {
                    Ok(done) => {
                        for t in &done {
                            for e in t.events() {
                                tracing::info!(grant = %e.grant, role = %e.role, event = e.kind.name(), "deadline applied");
                            }
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "applying grant deadlines failed; retrying in a second");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
                continue;
            }
            let cap = now + IDLE;
            let until = next
                .map(Timestamp::to_system_time)
                .filter(|t| *t < cap)
                .unwrap_or(cap);
            tokio::select! {
                _ = clock.sleep_until(until) => {}
                _ = changed.notified() => {}
            }
        }
    })
}
