//! Group commit for the audit records that are not grant transitions: sessions, statements,
//! sign-in and sign-out.
//!
//! Callers hand a record to [`GroupCommit::append`] and wait. One writer task takes every record
//! waiting in the queue (up to [`GroupCommitOptions::max_batch`]) and appends them in one
//! transaction, in the order they were queued, which is their order in the hash chain. When
//! `append` returns `Ok`, the record is committed to the ledger's write-ahead log and survives a
//! `kill -9` of the process. A syncer task then makes the log durable against a power cut
//! ([`Ledger::sync`]) at least every [`GroupCommitOptions::sync_every`], or sooner once
//! [`GroupCommitOptions::sync_after`] records wait for it, and only after that moves the audit
//! anchor, so the anchor never points past what a power cut could take away.
//!
//! The queue is bounded: when it is full, `append` waits for room (backpressure). Nothing is
//! dropped. When the ledger can't be written, every record of the failed batch gets the error,
//! and [`GroupCommit::problem`] says why until a later write succeeds.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::audit::{AnchorStore, AuditEntry, AuditRecord, ChainHead};
use crate::ledger::{Ledger, LedgerError};

/// How records are batched and synced.
#[derive(Debug, Clone, Copy)]
pub struct GroupCommitOptions {
    /// At most this many records per transaction.
    pub max_batch: usize,
    /// At most this many records wait in the queue; more callers wait for room.
    pub queue: usize,
    /// The longest a committed record waits for its fsync: the power-loss window.
    pub sync_every: Duration,
    /// Sync sooner once this many records wait for it.
    pub sync_after: u64,
}

impl Default for GroupCommitOptions {
    fn default() -> GroupCommitOptions {
        GroupCommitOptions {
            max_batch: 1024,
            queue: 8192,
            sync_every: Duration::from_millis(10),
            sync_after: 4096,
        }
    }
}

struct Job {
    entry: AuditEntry,
    done: oneshot::Sender<Result<AuditRecord, Arc<str>>>,
}

/// What the writer and the syncer share.
#[derive(Default)]
struct Progress {
    /// The last record committed (in the WAL).
    written: Mutex<Option<ChainHead>>,
    /// Why the last write or sync failed, until one succeeds.
    problem: Mutex<Option<String>>,
    /// Wakes the syncer early.
    wake: Notify,
}

/// The queue and its writer. Dropping it lets the writer finish the queue, sync, and stop.
pub(crate) struct GroupCommit {
    tx: mpsc::Sender<Job>,
    progress: Arc<Progress>,
}

/// Moves the audit anchor forward, never back. Shared by grant commits and the syncer.
pub(crate) struct Anchoring {
    store: Option<Arc<dyn AnchorStore>>,
    anchored: tokio::sync::Mutex<Option<u64>>,
}

impl Anchoring {
    pub fn new(store: Option<Arc<dyn AnchorStore>>) -> Anchoring {
        Anchoring {
            store,
            anchored: tokio::sync::Mutex::new(None),
        }
    }

    pub fn store(&self) -> Option<&Arc<dyn AnchorStore>> {
        self.store.as_ref()
    }

    /// Moves the anchor to `head` unless it is already there or further. A failure is logged:
    /// the records themselves are committed.
    pub async fn advance(&self, head: ChainHead) {
        let Some(store) = &self.store else { return };
        let mut anchored = self.anchored.lock().await;
        if anchored.is_some_and(|seq| seq >= head.seq) {
            return;
        }
        match store.set(head).await {
            Ok(()) => *anchored = Some(head.seq),
            Err(e) => tracing::warn!(error = %e, seq = head.seq, "could not move the audit anchor"),
        }
    }
}

impl GroupCommit {
    /// Starts the writer, the syncer and the anchorer. Must be called within a tokio runtime.
    pub fn start(
        ledger: Arc<dyn Ledger>,
        anchoring: Arc<Anchoring>,
        options: GroupCommitOptions,
    ) -> GroupCommit {
        let (tx, rx) = mpsc::channel(options.queue.max(1));
        let progress = Arc::new(Progress::default());
        let (synced_tx, synced_rx) = watch::channel(None);
        tokio::spawn(run_writer(
            ledger.clone(),
            rx,
            progress.clone(),
            options,
            synced_tx.clone(),
        ));
        tokio::spawn(run_syncer(
            ledger,
            Arc::downgrade(&progress),
            options,
            synced_tx,
        ));
        tokio::spawn(run_anchorer(anchoring, synced_rx));
        GroupCommit { tx, progress }
    }

    /// Queues `entry` and waits until it is committed to the ledger's write-ahead log.
    /// Waits for room when the queue is full.
    pub async fn append(&self, entry: AuditEntry) -> Result<AuditRecord, LedgerError> {
        let (done, answer) = oneshot::channel();
        let closed = || LedgerError::Storage {
            context: "appending to the audit log".into(),
            source: "the audit writer has stopped".into(),
        };
        self.tx
            .send(Job { entry, done })
            .await
            .map_err(|_| closed())?;
        match answer.await {
            Ok(Ok(record)) => Ok(record),
            Ok(Err(message)) => Err(LedgerError::Storage {
                context: "appending to the audit log".into(),
                source: message.to_string().into(),
            }),
            Err(_) => Err(closed()),
        }
    }

    /// Why the audit log can't be written right now, if it can't.
    pub fn problem(&self) -> Option<String> {
        self.progress.problem.lock().expect("problem lock").clone()
    }

    /// How many records wait in the queue.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

async fn run_writer(
    ledger: Arc<dyn Ledger>,
    mut rx: mpsc::Receiver<Job>,
    progress: Arc<Progress>,
    options: GroupCommitOptions,
    synced: watch::Sender<Option<ChainHead>>,
) {
    let mut jobs = Vec::with_capacity(options.max_batch);
    let mut unsynced: u64 = 0;
    while rx.recv_many(&mut jobs, options.max_batch).await > 0 {
        let (entries, dones): (Vec<AuditEntry>, Vec<_>) =
            jobs.drain(..).map(|j| (j.entry, j.done)).unzip();
        match ledger.append(&entries).await {
            Ok(records) => {
                if let Some(last) = records.last() {
                    let head = ChainHead {
                        seq: last.seq,
                        hash: last
                            .hash
                            .parse()
                            .expect("the ledger returns sealed records"),
                    };
                    *progress.written.lock().expect("written lock") = Some(head);
                }
                progress.problem.lock().expect("problem lock").take();
                unsynced += records.len() as u64;
                if unsynced >= options.sync_after {
                    unsynced = 0;
                    progress.wake.notify_one();
                }
                for (done, record) in dones.into_iter().zip(records) {
                    let _ = done.send(Ok(record));
                }
            }
            Err(e) => {
                let message = e.to_string();
                tracing::error!(error = %message, records = entries.len(), "could not append to the audit log");
                *progress.problem.lock().expect("problem lock") = Some(message.clone());
                let message: Arc<str> = message.into();
                for done in dones {
                    let _ = done.send(Err(message.clone()));
                }
            }
        }
    }
    // The queue is closed: make what was written durable before stopping.
    let head = *progress.written.lock().expect("written lock");
    if let Some(head) = head {
        if ledger.sync().await.is_ok() {
            let _ = synced.send(Some(head));
        }
    }
}

async fn run_syncer(
    ledger: Arc<dyn Ledger>,
    progress: Weak<Progress>,
    options: GroupCommitOptions,
    synced: watch::Sender<Option<ChainHead>>,
) {
    let mut tick = tokio::time::interval(options.sync_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<u64> = None;
    loop {
        let Some(p) = progress.upgrade() else { return };
        tokio::select! {
            _ = tick.tick() => {}
            _ = p.wake.notified() => {}
        }
        let head = *p.written.lock().expect("written lock");
        let Some(head) = head else { continue };
        if last.is_some_and(|s| s >= head.seq) {
            continue;
        }
        match ledger.sync().await {
            Ok(()) => {
                last = Some(head.seq);
                let _ = synced.send(Some(head));
            }
            Err(e) => {
                let message = e.to_string();
                tracing::error!(error = %message, "could not sync the audit log to disk");
                *p.problem.lock().expect("problem lock") = Some(message);
            }
        }
    }
}

async fn run_anchorer(anchoring: Arc<Anchoring>, mut synced: watch::Receiver<Option<ChainHead>>) {
    while synced.changed().await.is_ok() {
        let head = *synced.borrow_and_update();
        if let Some(head) = head {
            anchoring.advance(head).await;
        }
    }
}
