//! Group commit for the audit records that are not grant transitions: sessions, statements,
//! sign-in and sign-out.
//!
//! Callers hand a record to [`GroupCommit::append`] and wait. With a ledger that keeps an audit
//! journal ([`Ledger::journal`], the SQLite ledger), the record is written to the journal on
//! the caller's own thread with one `write()`: no other task or thread takes part, and when
//! `append` returns the record survives a `kill -9`. The syncer task moves the journal into the
//! hash chain and makes it durable against a power cut ([`Ledger::sync`]) at least every
//! [`GroupCommitOptions::sync_every`], or sooner once [`GroupCommitOptions::sync_after`]
//! records wait, and only after that moves the audit anchor, so the anchor never points past
//! what a power cut could take away. At most [`GroupCommitOptions::queue`] records wait in the
//! journal; more callers wait for room (backpressure). While the journal can't be moved into
//! the chain, every append tries to move it first and is refused with the reason if that still
//! fails.
//!
//! Without a journal (another ledger, or another instance holding this one's journal), one
//! writer at a time (the first caller to find nobody writing, or a task it hands over to)
//! takes every record waiting in the queue (up to [`GroupCommitOptions::max_batch`]) and
//! appends them in one transaction, in the order they were queued, which is their order in the
//! hash chain. The leader writes a batch on its own thread when the ledger can do that at once
//! ([`Ledger::append_now`]), otherwise the ledger's own writer takes it. When `append` returns
//! `Ok`, the record is committed to the ledger's write-ahead log. The queue is bounded in the
//! same way.
//!
//! [`GroupCommit::append_later`] keeps a record nobody waits on, to go with the next batch.
//! Nothing is dropped. When the ledger can't be written, the record's caller gets the error,
//! and [`GroupCommit::problem`] says why until a later write succeeds.

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};

use tokio::sync::{oneshot, watch, Notify, Semaphore};

use crate::audit::{AnchorStore, AuditEntry, AuditRecord, ChainHead};
use crate::journal::{Appended, Deferred};
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
    /// The syncer found nothing to do and sleeps until [`Progress::dirty`] wakes it: an idle
    /// broker has no timer ticking.
    idle: AtomicBool,
}

impl Progress {
    /// Called after a record was made to wait for a sync (kept in the journal, written, or
    /// queued): wakes the syncer if it sleeps for want of work. One load per record while it
    /// is awake.
    fn dirty(&self) {
        // Pairs with the fence in `run_syncer`: either the syncer sees this record's work, or
        // this sees it idle and wakes it (Notify keeps the permit if it is not waiting yet).
        fence(Ordering::SeqCst);
        if self.idle.load(Ordering::Relaxed) && self.idle.swap(false, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }
}

/// The queue and its writer. Dropping it syncs what was written.
pub(crate) struct GroupCommit {
    writer: Arc<Writer>,
}

/// The queue, and who writes it: the first caller to find nobody writing becomes the
/// leader and writes every waiting record as one batch, again while more wait (for a round
/// or two, then a task takes over), so a lone statement costs no hand-off to a writer task.
struct Writer {
    ledger: Arc<dyn Ledger>,
    room: Semaphore,
    queue: Mutex<Queue>,
    progress: Arc<Progress>,
    options: GroupCommitOptions,
    unsynced: AtomicU64,
    synced: watch::Sender<Option<ChainHead>>,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    leading: bool,
}

/// Batches a leading caller writes before it hands the lead to a task and returns.
const LEADER_ROUNDS: usize = 2;

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
    /// Starts the syncer and the anchorer. Must be called within a tokio runtime.
    pub fn start(
        ledger: Arc<dyn Ledger>,
        anchoring: Arc<Anchoring>,
        options: GroupCommitOptions,
    ) -> GroupCommit {
        let (synced_tx, synced_rx) = watch::channel(None);
        if let Some(journal) = ledger.journal() {
            journal.set_limit(options.queue);
        }
        let writer = Arc::new(Writer {
            ledger,
            room: Semaphore::new(options.queue.max(1)),
            queue: Mutex::new(Queue::default()),
            progress: Arc::new(Progress::default()),
            options,
            unsynced: AtomicU64::new(0),
            synced: synced_tx,
        });
        tokio::spawn(run_syncer(Arc::downgrade(&writer)));
        tokio::spawn(run_anchorer(anchoring, synced_rx));
        GroupCommit { writer }
    }

    /// Keeps `entry`: in the ledger's journal if it has one, else committed to its
    /// write-ahead log. Either way it survives a `kill -9` once this returns `Ok`. Waits for
    /// room when the queue is full.
    pub async fn append(&self, entry: AuditEntry) -> Result<(), LedgerError> {
        match self.journal_append(&entry).await {
            Some(kept) => kept,
            None => self.queue_append(entry).await.map(|_| ()),
        }
    }

    /// [`GroupCommit::append`] through the ledger's journal; `None` when it has none now.
    async fn journal_append(&self, entry: &AuditEntry) -> Option<Result<(), LedgerError>> {
        let journal = self.writer.ledger.journal()?;
        loop {
            if journal.failing().is_some() {
                // Fail closed while the journal can't be moved into the chain: try once more.
                if let Err(e) = journal.drain().await {
                    return Some(Err(e));
                }
            }
            match journal.try_append(entry) {
                Ok(Appended::Kept { waiting }) => {
                    if waiting as u64 >= self.writer.options.sync_after {
                        self.writer.progress.wake.notify_one();
                    } else {
                        self.writer.progress.dirty();
                    }
                    return Some(Ok(()));
                }
                Ok(Appended::Full) => {
                    self.writer.progress.wake.notify_one();
                    journal.room(self.writer.options.sync_every).await;
                }
                Ok(Appended::Inactive) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }

    /// Queues `entry` and waits until it is committed to the ledger's write-ahead log.
    /// Waits for room when the queue is full.
    async fn queue_append(&self, entry: AuditEntry) -> Result<AuditRecord, LedgerError> {
        let closed = || LedgerError::Storage {
            context: "appending to the audit log".into(),
            source: "the audit writer has stopped".into(),
        };
        let _room = self.writer.room.acquire().await.map_err(|_| closed())?;
        let (done, answer) = oneshot::channel();
        let lead = {
            let mut q = self.writer.queue.lock().expect("queue lock");
            q.jobs.push(Job { entry, done });
            !std::mem::replace(&mut q.leading, true)
        };
        if lead {
            let mut guard = LeadGuard(Some(self.writer.clone()));
            self.writer.lead(Some(LEADER_ROUNDS)).await;
            guard.0 = None;
        }
        match answer.await {
            Ok(Ok(record)) => Ok(record),
            Ok(Err(message)) => Err(LedgerError::Storage {
                context: "appending to the audit log".into(),
                source: message.to_string().into(),
            }),
            Err(_) => Err(closed()),
        }
    }

    /// Keeps `entry` without waiting for it. For a record of something that already happened
    /// and that nobody waits on (a statement's query id, read from an answer already on its
    /// way to the tool). With a journal it is deferred ([`Journal::defer`](crate::journal::Journal::defer)):
    /// the next append writes it in front of its own record, else a flush task made for the
    /// first deferred record writes all of them at once, and at the latest the syncer's next
    /// move (within [`GroupCommitOptions::sync_every`]) takes it; so it costs neither a
    /// transaction nor a `write()` of its own. Without one it is queued for the next batch
    /// (when the queue is full, a task appends it the usual way, waiting for room). A failure
    /// to write it is logged.
    pub fn append_later(&self, entry: AuditEntry) {
        if let Some(journal) = self.writer.ledger.journal() {
            match journal.defer(&entry) {
                Ok(Deferred::Held { first }) => {
                    if first {
                        self.flush_soon();
                    }
                    // The syncer's next move takes it in any case.
                    self.writer.progress.dirty();
                    return;
                }
                Ok(Deferred::Inactive) => {}
                Err(e) => {
                    tracing::error!(error = %e, "could not append to the audit log");
                    return;
                }
            }
        }
        let (done, _ignored) = oneshot::channel();
        let entry = {
            let mut q = self.writer.queue.lock().expect("queue lock");
            if q.jobs.len() < self.writer.options.queue {
                q.jobs.push(Job { entry, done });
                drop(q);
                self.writer.progress.dirty();
                return;
            }
            entry
        };
        let writer = self.writer.clone();
        tokio::spawn(async move {
            if let Err(e) = (GroupCommit { writer }).append(entry).await {
                tracing::error!(error = %e, "could not append to the audit log");
            }
        });
    }

    /// Writes the journal's deferred records from a task of their own: it runs once the
    /// caller's task yields (on a serving thread, after the answer that made the record went
    /// to the tool), and every record deferred until then goes with the same write. Without a
    /// runtime, at once.
    fn flush_soon(&self) {
        let writer = self.writer.clone();
        let flush = move || {
            if let Some(journal) = writer.ledger.journal() {
                if let Err(e) = journal.flush_deferred() {
                    // Still held: the next write or move takes them.
                    tracing::warn!(error = %e, "deferred audit records wait for the next write");
                }
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn(async move { flush() })),
            Err(_) => flush(),
        }
    }

    /// Why the audit log can't be written right now, if it can't.
    pub fn problem(&self) -> Option<String> {
        let journal = self.writer.ledger.journal().and_then(|j| j.problem());
        journal.or_else(|| {
            self.writer
                .progress
                .problem
                .lock()
                .expect("problem lock")
                .clone()
        })
    }

    /// How many records wait to be written (in the queue, or in the journal to be moved).
    pub fn queued(&self) -> usize {
        let journal = self.writer.ledger.journal().map_or(0, |j| j.waiting());
        journal + self.writer.queue.lock().expect("queue lock").jobs.len()
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        // Make what was written durable before the syncer goes.
        let writer = self.writer.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                writer.lead_if_idle().await;
                let written = *writer.progress.written.lock().expect("written lock");
                let journal = writer.ledger.journal();
                if written.is_none() && !journal.is_some_and(|j| j.needs_sync()) {
                    return;
                }
                if writer.ledger.sync().await.is_ok() {
                    let moved = journal.and_then(|j| j.synced_head());
                    if let Some(head) = [written, moved].into_iter().flatten().max_by_key(|h| h.seq)
                    {
                        let _ = writer.synced.send(Some(head));
                    }
                }
            });
        }
    }
}

/// A leader dropped mid-way (its request was cancelled) hands the lead to a task, so the
/// records waiting behind it are still written.
struct LeadGuard(Option<Arc<Writer>>);

impl Drop for LeadGuard {
    fn drop(&mut self) {
        if let Some(writer) = self.0.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(lead_task(writer));
            }
        }
    }
}

/// A task that takes the lead (a named future type, so that `lead` can spawn it).
fn lead_task(
    writer: Arc<Writer>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(async move { writer.lead(None).await })
}

impl Writer {
    /// Whether the syncer has something to do: records queued, written since the last sync
    /// (`last`), or in the journal to be moved and synced.
    fn has_work(&self, last: Option<u64>) -> bool {
        let written = *self.progress.written.lock().expect("written lock");
        written.is_some_and(|head| last.is_none_or(|s| s < head.seq))
            || !self.queue.lock().expect("queue lock").jobs.is_empty()
            || self.ledger.journal().is_some_and(|j| j.needs_sync())
    }

    /// Writes what waits in the queue unless a leader is already at it.
    async fn lead_if_idle(self: &Arc<Self>) {
        let lead = {
            let mut q = self.queue.lock().expect("queue lock");
            !q.jobs.is_empty() && !std::mem::replace(&mut q.leading, true)
        };
        if lead {
            self.lead(None).await;
        }
    }

    /// Writes batches while records wait; with `rounds`, hands the lead to a task after that
    /// many batches if more wait. Only the leader calls it.
    async fn lead(self: &Arc<Self>, rounds: Option<usize>) {
        let mut done = 0;
        loop {
            let jobs = {
                let mut q = self.queue.lock().expect("queue lock");
                if q.jobs.is_empty() {
                    q.leading = false;
                    return;
                }
                if rounds.is_some_and(|r| done >= r) {
                    tokio::spawn(lead_task(self.clone()));
                    return;
                }
                let n = q.jobs.len().min(self.options.max_batch);
                q.jobs.drain(..n).collect::<Vec<_>>()
            };
            self.write(jobs).await;
            done += 1;
        }
    }

    async fn write(&self, jobs: Vec<Job>) {
        let (entries, dones): (Vec<AuditEntry>, Vec<_>) =
            jobs.into_iter().map(|j| (j.entry, j.done)).unzip();
        // On this thread when the ledger can do it without waiting, else on its own thread.
        let written = match self.ledger.append_now(&entries) {
            Some(result) => result,
            None => self.ledger.append(&entries).await,
        };
        match written {
            Ok(records) => {
                if let Some(last) = records.last() {
                    let head = ChainHead {
                        seq: last.seq,
                        hash: last
                            .hash
                            .parse()
                            .expect("the ledger returns sealed records"),
                    };
                    *self.progress.written.lock().expect("written lock") = Some(head);
                }
                self.progress.problem.lock().expect("problem lock").take();
                let unsynced = self
                    .unsynced
                    .fetch_add(records.len() as u64, Ordering::Relaxed)
                    + records.len() as u64;
                if unsynced >= self.options.sync_after {
                    self.unsynced.store(0, Ordering::Relaxed);
                    self.progress.wake.notify_one();
                } else {
                    self.progress.dirty();
                }
                for (done, record) in dones.into_iter().zip(records) {
                    let _ = done.send(Ok(record));
                }
            }
            Err(e) => {
                let message = e.to_string();
                tracing::error!(error = %message, records = entries.len(), "could not append to the audit log");
                *self.progress.problem.lock().expect("problem lock") = Some(message.clone());
                let message: Arc<str> = message.into();
                for done in dones {
                    let _ = done.send(Err(message.clone()));
                }
            }
        }
    }
}

/// How long an idle syncer sleeps before it looks again without being woken.
const IDLE_CHECK: Duration = Duration::from_secs(30);

/// Syncs the ledger at least every [`GroupCommitOptions::sync_every`] (sooner when woken), and
/// on each round writes records queued with [`GroupCommit::append_later`] that no batch took.
/// With nothing waiting for a sync it sleeps, without a timer, until a record comes
/// ([`Progress::dirty`]). Ends when the group commit is dropped.
async fn run_syncer(writer: Weak<Writer>) {
    let Some(every) = writer.upgrade().map(|w| w.options.sync_every) else {
        return;
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<u64> = None;
    loop {
        let Some(w) = writer.upgrade() else { return };
        let p = w.progress.clone();
        if !w.has_work(last) {
            p.idle.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            if w.has_work(last) {
                p.idle.store(false, Ordering::SeqCst);
            } else {
                // Sleep without holding the writer; look again after IDLE_CHECK in any case,
                // which is also how the task ends once the group commit is gone.
                drop(w);
                let _ = tokio::time::timeout(IDLE_CHECK, p.wake.notified()).await;
                p.idle.store(false, Ordering::SeqCst);
                tick.reset();
                continue;
            }
        }
        tokio::select! {
            _ = tick.tick() => {}
            _ = p.wake.notified() => {}
        }
        w.lead_if_idle().await;
        if let Some(journal) = w.ledger.journal() {
            if journal.needs_sync() {
                match w.ledger.sync().await {
                    Ok(()) => {
                        if let Some(head) = journal.synced_head() {
                            let _ = w.synced.send(Some(head));
                        }
                    }
                    // The journal keeps the problem for the status until a move or fsync
                    // succeeds.
                    Err(e) => tracing::error!(error = %e, "could not sync the audit log to disk"),
                }
            }
        }
        let head = *p.written.lock().expect("written lock");
        let Some(head) = head else { continue };
        if last.is_some_and(|s| s >= head.seq) {
            continue;
        }
        match w.ledger.sync().await {
            Ok(()) => {
                last = Some(head.seq);
                let _ = w.synced.send(Some(head));
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

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::sqlite::SqliteLedger;
    use crate::{Actor, Subject};

    fn sign_in() -> AuditEntry {
        let who = Actor::new(Subject::new("alice").unwrap(), None, Vec::new());
        AuditEntry::sign_in(SystemTime::now(), &who)
    }

    async fn synced(rx: &mut watch::Receiver<Option<ChainHead>>, seq: u64) {
        tokio::time::timeout(Duration::from_secs(5), async {
            while !rx.borrow_and_update().is_some_and(|h| h.seq >= seq) {
                rx.changed().await.unwrap();
            }
        })
        .await
        .unwrap_or_else(|_| panic!("record {seq} not synced within 5 s"));
    }

    /// An idle broker has no timer ticking in its audit syncer (it woke 100 times a second),
    /// and a record that comes after the idle spell is still synced within moments, not at the
    /// idle syncer's next look.
    #[tokio::test]
    async fn the_syncer_sleeps_while_idle_and_wakes_for_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let ledger: Arc<dyn Ledger> = Arc::new(SqliteLedger::open_in(dir.path()).await.unwrap());
        let commit = GroupCommit::start(
            ledger,
            Arc::new(Anchoring::new(None)),
            GroupCommitOptions::default(),
        );
        let mut rx = commit.writer.synced.subscribe();
        let progress = commit.writer.progress.clone();
        for round in 1..=3u64 {
            commit.append(sign_in()).await.unwrap();
            synced(&mut rx, round).await;
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while !progress.idle.load(Ordering::SeqCst) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the syncer never went idle"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        // append_later wakes it too.
        commit.append_later(sign_in());
        synced(&mut rx, 4).await;
    }
}
