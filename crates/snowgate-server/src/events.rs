//! Grant events for the SSE stream: read from the `events` table, woken by LISTEN/NOTIFY.
//!
//! Each replica runs one [`EventHub`]. A listener task holds a `LISTEN snowgate_events`
//! connection and only says "something happened" (it reconnects by itself when PostgreSQL goes
//! away). The hub then reads every row after the last id it has seen and broadcasts those rows
//! to the replica's SSE clients. The notification's payload is never trusted: the rows are read
//! from the table, in id order. Because the ledger draws event ids under its write lock, rows
//! become visible in id order, so "after the last id" never skips one. The hub also reads on a
//! timer ([`POLL`]) and after every reconnect, so a notification lost while the listener was
//! down costs at most that long.
//!
//! An SSE client replays from the table first (everything after its `Last-Event-ID` that
//! concerns it) and then follows the broadcast, skipping ids it already sent; if it falls too far
//! behind the broadcast, it reads the table again. See [`crate::api::events`].

use std::sync::Arc;
use std::time::Duration;

use snowgate_grants::postgres::EVENTS_CHANNEL;
use snowgate_grants::{LedgerError, PgLedger, StoredEvent};
use sqlx::postgres::PgListener;
use tokio::sync::{broadcast, mpsc, Notify};
use tokio::task::JoinHandle;

/// The hub reads the table at least this often, even without notifications.
pub const POLL: Duration = Duration::from_secs(5);
/// How many events one read takes.
const PAGE: u32 = 500;
/// How far an SSE client may fall behind the broadcast before it reads the table instead.
const BUFFER: usize = 4096;

/// One replica's event fan-out.
pub struct EventHub {
    tx: broadcast::Sender<Arc<StoredEvent>>,
    changed: Arc<Notify>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for EventHub {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl EventHub {
    /// Starts following the events table from its current end.
    pub async fn start(ledger: PgLedger) -> Result<EventHub, LedgerError> {
        let last = ledger.last_event_id().await?;
        let (tx, _) = broadcast::channel(BUFFER);
        let changed = Arc::new(Notify::new());
        let (wake_tx, wake_rx) = mpsc::channel(16);
        let listen = tokio::spawn(listen(ledger.clone(), wake_tx));
        let follow = tokio::spawn(follow(ledger, last, tx.clone(), changed.clone(), wake_rx));
        Ok(EventHub {
            tx,
            changed,
            tasks: vec![listen, follow],
        })
    }

    /// Every event row read from now on, in id order.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.tx.subscribe()
    }

    /// Notified whenever new events were read (grants changed somewhere).
    pub fn changed(&self) -> Arc<Notify> {
        self.changed.clone()
    }
}

/// Holds the LISTEN connection; sends a wake-up for each notification and each reconnect.
async fn listen(ledger: PgLedger, wake: mpsc::Sender<()>) {
    loop {
        let mut listener = match PgListener::connect_with(ledger.pool()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "listening for grant events failed; retrying in a second");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Err(e) = listener.listen(EVENTS_CHANNEL).await {
            tracing::warn!(error = %e, "listening for grant events failed; retrying in a second");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        // Whatever happened while not listening is read now.
        let _ = wake.try_send(());
        loop {
            match listener.try_recv().await {
                // A notification, or a lost connection that try_recv re-establishes next time.
                Ok(_) => {
                    let _ = wake.try_send(());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the grant events listener lost its connection; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

/// Reads new rows whenever woken (or every [`POLL`]) and broadcasts them.
async fn follow(
    ledger: PgLedger,
    mut last: i64,
    tx: broadcast::Sender<Arc<StoredEvent>>,
    changed: Arc<Notify>,
    mut wake: mpsc::Receiver<()>,
) {
    loop {
        tokio::select! {
            w = wake.recv() => if w.is_none() { return },
            _ = tokio::time::sleep(POLL) => {}
        }
        loop {
            match ledger.events_after(last, PAGE).await {
                Ok(rows) => {
                    let n = rows.len();
                    for row in rows {
                        last = row.id;
                        let _ = tx.send(Arc::new(row));
                    }
                    if n > 0 {
                        changed.notify_one();
                    }
                    if n < PAGE as usize {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading grant events failed; retrying");
                    break;
                }
            }
        }
    }
}
