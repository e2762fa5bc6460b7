//! The audit journal: the part of the SQLite ledger where a record that a statement waits for
//! is kept first, with one `write()` on the caller's own thread.
//!
//! - **Append** ([`Journal::try_append`]): the record is framed outside any lock, then, under a
//!   short lock that also gives it its journal position, written to the current segment file
//!   in `<ledger>.audit-journal/` with one `write()`. When that returns, the OS has the bytes:
//!   the record survives a `kill -9` of the process. No other task or thread takes part, so a
//!   statement waits for no hand-off.
//! - **Deferred records** ([`Journal::defer`]): a record nobody waits on (a statement's query
//!   id, read from an answer already on its way) is framed and held in memory instead of being
//!   written at once. The next write takes it along, in front of its own record: the next
//!   append ([`Journal::try_append`], so many statements' query ids share their writes), the
//!   caller's flush task ([`Journal::flush_deferred`], once per batch of deferred records), or
//!   at the latest the next move. A deferred record is always younger than every written one,
//!   so the journal's order stays the order records were made.
//! - **Move**: the group commit's syncer (at least every 10 ms, see `group_commit.rs`),
//!   and a drain before every read of the audit log, every grant commit and every direct
//!   append, move the waiting records into the `audit` table in one transaction, sealing them
//!   into the hash chain in journal order; the same transaction sets `audit_journal.moved_upto`
//!   to the last journal position moved. So the chain is in the order records were kept, and a
//!   grant transition is chained after every record kept before it. A move starts a new
//!   segment once the current one passes 4 MiB; a segment is deleted once it is no longer
//!   written to, its records are moved, and the ledger's write-ahead log holding them has been
//!   fsynced.
//! - **Power-loss window**: each sync moves what waits and fsyncs the write-ahead log, so a
//!   record is on disk within the group commit's window (10 ms by default). When a move fails,
//!   the segments holding the waiting records are fsynced instead.
//! - **Replay**: when a ledger takes its journal (at open), every record after `moved_upto` is
//!   moved, the log fsynced, and the segments deleted. After a `kill -9` nothing written is
//!   lost and the chain verifies; after a power cut at most the window is.
//! - **Framing**: a segment starts with the bytes `SGAJRN01`; a frame is its payload's length and CRC-32,
//!   then the payload (journal position, time, and the record's stored text). A write that
//!   fails is cut off again (`ftruncate`), or the segment is given up for a new one, so a kept
//!   record never follows a torn frame; replay stops a segment at its first bad frame.
//! - **Bounded**: at most [`Journal::set_limit`] records wait to be moved; beyond that
//!   [`Journal::try_append`] answers [`Appended::Full`] and the caller waits for room.
//! - **Fail closed**: a write that fails is an error (the statement is refused with it). A move
//!   that fails makes every later append try a move first and refuse with the reason while it
//!   still fails; reads meanwhile see the waiting records sealed after the stored ones (read
//!   through), so nothing kept is ever missing from `snowgate audit`.
//! - **One owner**: the ledger that holds an exclusive `flock` on the directory owns the journal.
//!   Another ledger on the same file (another process, or a second open in this one) goes
//!   without one, appending straight to SQLite, and tries again at each sync.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Notify, OwnedMutexGuard};

use crate::audit::{AuditEntry, AuditRecord, ChainHead, UnsealedRecord};
use crate::ledger::LedgerError;
use crate::timestamp::Timestamp;

/// The first bytes of every segment file.
pub(crate) const MAGIC: &[u8; 8] = b"SGAJRN01";
const SEGMENT_EXT: &str = "seg";
/// Frame header: payload length and CRC-32, both little-endian `u32`.
const HEADER: usize = 8;
/// The smallest payload: position, time and five empty fields.
const MIN_PAYLOAD: usize = 8 + 8 + 5 * 4;
/// How an absent optional field is written.
const ABSENT: u32 = u32::MAX;
/// A move starts a new segment once the current one is this large. Creating and deleting
/// files is the dearest part of a move, so a segment holds many moves' records; those already
/// moved are skipped at replay by their position.
const ROTATE_AT: u64 = 4 * 1024 * 1024;

/// What [`Journal::defer`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deferred {
    /// Held for the next write. `first`: no other record was waiting for one, so the caller
    /// should see that a flush comes ([`Journal::flush_deferred`]).
    Held { first: bool },
    /// This ledger does not own its journal (now): append to the ledger another way.
    Inactive,
}

/// What [`Journal::try_append`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Written; it survives `kill -9`. `waiting` records (this one included) wait to be moved.
    Kept { waiting: usize },
    /// As many records wait as may: nothing was written. Wait for [`Journal::room`], retry.
    Full,
    /// This ledger does not own its journal (now): append to the ledger directly.
    Inactive,
}

/// The audit journal of one SQLite ledger. See the module docs.
pub struct Journal {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.inner.dir)
            .field("active", &self.inner.active())
            .finish_non_exhaustive()
    }
}

/// Makes the ledger's write-ahead log durable (an fsync); given by the ledger.
pub(crate) type WalSync = Box<dyn Fn() -> std::io::Result<()> + Send + Sync>;

struct Inner {
    dir: PathBuf,
    ledger: PathBuf,
    /// `ledger at PATH`, for errors.
    context: String,
    wal_sync: WalSync,
    /// The directory, open and `flock`ed while this ledger owns the journal.
    dir_lock: Mutex<Option<File>>,
    active: AtomicBool,
    closed: AtomicBool,
    state: Mutex<State>,
    mover: Arc<tokio::sync::Mutex<Mover>>,
    room: Notify,
    limit: AtomicUsize,
    /// Set while a write or a move has failed; `problems` says which.
    troubled: AtomicBool,
    problems: Mutex<Problems>,
    /// Records moved but not yet fsynced in the write-ahead log.
    unsynced: AtomicBool,
    /// The chain's head as of the last fsync after a move.
    synced: Mutex<Option<ChainHead>>,
}

#[derive(Default)]
struct Problems {
    /// The last write to the journal failed (cleared by the next that succeeds).
    write: Option<String>,
    /// The last move into the chain failed (cleared by the next that succeeds).
    moving: Option<String>,
    /// The last fsync of the log failed (cleared by the next that succeeds).
    syncing: Option<String>,
}

/// A record's frame (see [`encode`]) and the record.
type Frame = (Vec<u8>, UnsealedRecord);

/// What appends share, under the short lock.
#[derive(Default)]
struct State {
    segment: Option<Segment>,
    next_segment: u64,
    /// The journal position the next record gets.
    next_seq: u64,
    /// Records written and not yet moved, in order: positions `next_seq - waiting.len()` up
    /// to `next_seq - 1`.
    waiting: Vec<UnsealedRecord>,
    /// Records made after every written one and not written yet, in order, each with its
    /// frame (its position is set when it is written).
    deferred: Vec<Frame>,
    /// Segments no longer written to whose records wait.
    retired: Vec<PathBuf>,
}

struct Segment {
    file: Arc<File>,
    path: PathBuf,
    len: u64,
}

/// What only a move touches, under the mover lock.
pub(crate) struct Mover {
    conn: Option<rusqlite::Connection>,
    /// Retired segments whose records went back to waiting after a failed move.
    unmoved: Vec<PathBuf>,
    /// Segments whose records are all moved; deleted after the next fsync of the log.
    moved: Vec<PathBuf>,
    /// The chain's head after the last move.
    moved_head: Option<ChainHead>,
}

/// The outcome of [`Journal::drain_for_read`].
pub(crate) enum Drained {
    /// Every record kept is in the `audit` table.
    All,
    /// A move failed: these records wait, in order, to be chained after the stored ones.
    /// Reads hold `_guard` (no move can run) until they have read the table.
    Stuck {
        _guard: OwnedMutexGuard<Mover>,
        waiting: Vec<UnsealedRecord>,
    },
}

impl Journal {
    /// The journal of the ledger at `ledger`, in `<ledger without extension>.audit-journal/`,
    /// taken and replayed if no one else holds it. Blocking (replay reads and moves).
    pub(crate) fn open(ledger: &Path, wal_sync: WalSync) -> Result<Journal, LedgerError> {
        let journal = Journal {
            inner: Arc::new(Inner {
                dir: ledger.with_extension("audit-journal"),
                ledger: ledger.to_path_buf(),
                context: format!("ledger at {}", ledger.display()),
                wal_sync,
                dir_lock: Mutex::new(None),
                active: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                state: Mutex::new(State {
                    segment: None,
                    next_segment: 1,
                    next_seq: 1,
                    waiting: Vec::new(),
                    deferred: Vec::new(),
                    retired: Vec::new(),
                }),
                mover: Arc::new(tokio::sync::Mutex::new(Mover {
                    conn: None,
                    unmoved: Vec::new(),
                    moved: Vec::new(),
                    moved_head: None,
                })),
                room: Notify::new(),
                limit: AtomicUsize::new(8192),
                troubled: AtomicBool::new(false),
                problems: Mutex::new(Problems::default()),
                unsynced: AtomicBool::new(false),
                synced: Mutex::new(None),
            }),
        };
        {
            let mut mover = journal
                .inner
                .mover
                .try_lock()
                .expect("nobody else has it yet");
            if !journal.inner.try_activate(&mut mover)? {
                tracing::info!(journal = %journal.inner.dir.display(), "another ledger holds the audit journal; appending to the ledger directly until it is free");
            }
        }
        Ok(journal)
    }

    /// Whether this ledger owns its journal now.
    pub fn is_active(&self) -> bool {
        self.inner.active()
    }

    /// At most `limit` records wait to be moved.
    pub fn set_limit(&self, limit: usize) {
        self.inner.limit.store(limit.max(1), Ordering::Relaxed);
    }

    /// How many records wait to be moved (deferred ones included).
    pub fn waiting(&self) -> usize {
        let s = self.inner.state();
        s.waiting.len() + s.deferred.len()
    }

    /// Holds `entry`, a record nobody waits on, for the next write to the journal (see the
    /// module docs): it costs no write of its own. Until then it is in memory only; the caller
    /// flushes it soon ([`Journal::flush_deferred`]) when told it is the first, and the next
    /// move takes it in any case. Held records are not refused when the journal is full: they
    /// record what already happened, and the statements they follow are what waits for room.
    pub fn defer(&self, entry: &AuditEntry) -> Result<Deferred, LedgerError> {
        if !self.inner.active() {
            return Ok(Deferred::Inactive);
        }
        let (frame, record) = self.frame_of(entry)?;
        let mut s = self.inner.state();
        if !self.inner.active() {
            return Ok(Deferred::Inactive);
        }
        s.deferred.push((frame, record));
        Ok(Deferred::Held {
            first: s.deferred.len() == 1,
        })
    }

    /// `entry`'s record and its frame (made outside the lock).
    fn frame_of(&self, entry: &AuditEntry) -> Result<Frame, LedgerError> {
        let record = UnsealedRecord::from(entry);
        let frame = encode(&record).map_err(|message| LedgerError::Storage {
            context: format!("{}: writing the audit journal", self.inner.context),
            source: message.into(),
        })?;
        Ok((frame, record))
    }

    /// Writes the deferred records, all with one `write()`. `Ok` also when there were none, or
    /// when the journal is full or inactive (then they wait for the next write or move). An
    /// error leaves them held.
    pub fn flush_deferred(&self) -> Result<(), LedgerError> {
        let mut s = self.inner.state();
        if s.deferred.is_empty() || !self.inner.active() {
            return Ok(());
        }
        if s.waiting.len() >= self.inner.limit.load(Ordering::Relaxed) {
            return Ok(());
        }
        match self.inner.write_batch(&mut s, None) {
            Ok(()) => {
                drop(s);
                self.inner.wrote();
                Ok(())
            }
            Err(e) => {
                drop(s);
                Err(self.inner.write_failed(e))
            }
        }
    }

    /// Writes `entry` to the journal on this thread. `Ok(Kept)` means it survives `kill -9` and
    /// joins the chain before any later read or grant commit. An error means it is not kept.
    /// Does not look at a failing move: see [`Journal::failing`].
    pub fn try_append(&self, entry: &AuditEntry) -> Result<Appended, LedgerError> {
        if !self.inner.active() {
            return Ok(Appended::Inactive);
        }
        let (frame, record) = self.frame_of(entry)?;
        let mut s = self.inner.state();
        if !self.inner.active() {
            return Ok(Appended::Inactive);
        }
        if s.waiting.len() >= self.inner.limit.load(Ordering::Relaxed) {
            return Ok(Appended::Full);
        }
        // Deferred records go first, in the same write.
        match self.inner.write_batch(&mut s, Some((frame, record))) {
            Ok(()) => {
                let waiting = s.waiting.len();
                drop(s);
                self.inner.wrote();
                Ok(Appended::Kept { waiting })
            }
            Err(e) => {
                drop(s);
                Err(self.inner.write_failed(e))
            }
        }
    }

    /// Waits until records were moved (room was made), or `at_most`.
    pub async fn room(&self, at_most: Duration) {
        let _ = tokio::time::timeout(at_most, self.inner.room.notified()).await;
    }

    /// Why the last move into the chain failed, while it still fails. Appends should
    /// drain the journal first (the group commit does) and refuse with its error if that fails
    /// again.
    pub fn failing(&self) -> Option<String> {
        if !self.inner.troubled.load(Ordering::Relaxed) {
            return None;
        }
        self.inner.problems().moving.clone()
    }

    /// Why records can't be kept right now, if they can't.
    pub fn problem(&self) -> Option<String> {
        if !self.inner.troubled.load(Ordering::Relaxed) {
            return None;
        }
        let p = self.inner.problems();
        p.moving
            .clone()
            .or_else(|| p.write.clone())
            .or_else(|| p.syncing.clone())
    }

    /// Whether a sync has something to do: records to move, moved records to fsync, or a
    /// journal to take.
    pub fn needs_sync(&self) -> bool {
        if self.inner.closed.load(Ordering::Relaxed) {
            return false;
        }
        // `waiting` first: a move sets `unsynced` under the state lock before it takes the
        // records, so once the lock shows them gone, `unsynced` shows them moved.
        !self.inner.active()
            || self.inner.something_waits()
            || self.inner.unsynced.load(Ordering::Relaxed)
    }

    /// The chain's head as of the last sync that moved records: every record up to it is on
    /// disk (fsynced).
    pub fn synced_head(&self) -> Option<ChainHead> {
        *self.inner.synced.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves every waiting record into the chain now (no fsync).
    pub(crate) async fn drain(&self) -> Result<(), LedgerError> {
        if !self.inner.active() {
            return Ok(());
        }
        let mut mover = self.inner.mover.clone().lock_owned().await;
        if !self.inner.something_waits() {
            return Ok(());
        }
        let inner = self.inner.clone();
        blocking(move || inner.move_waiting(&mut mover)).await
    }

    /// [`Journal::drain`] for a read: when the move fails, the records that wait, for the
    /// reader to chain after the stored ones, and a guard that keeps any move from running
    /// until the reader has read the table.
    pub(crate) async fn drain_for_read(&self) -> Drained {
        if !self.inner.active() {
            return Drained::All;
        }
        let mut mover = self.inner.mover.clone().lock_owned().await;
        if !self.inner.something_waits() {
            return Drained::All;
        }
        let inner = self.inner.clone();
        let moved = blocking(move || {
            let r = inner.move_waiting(&mut mover);
            Ok((r, mover))
        })
        .await;
        match moved {
            Ok((Err(_), mover)) => {
                let waiting = {
                    let s = self.inner.state();
                    let deferred = s.deferred.iter().map(|(_, r)| r.clone());
                    s.waiting.iter().cloned().chain(deferred).collect()
                };
                // The guard keeps the mover: a move now would put these records in the table
                // while the reader also chains them itself.
                Drained::Stuck {
                    _guard: mover,
                    waiting,
                }
            }
            _ => Drained::All,
        }
    }

    /// Moves what waits, fsyncs the ledger's write-ahead log, deletes the segments moved
    /// before it, and records the head now on disk. Takes the journal if it is free and not
    /// ours yet. Without a journal, only fsyncs the log.
    pub(crate) async fn sync(&self) -> Result<(), LedgerError> {
        let mut mover = self.inner.mover.clone().lock_owned().await;
        let inner = self.inner.clone();
        blocking(move || inner.sync_locked(&mut mover)).await
    }

    /// Moves and fsyncs what waits, then lets the journal go (for another ledger to take).
    pub(crate) async fn close(&self) {
        let mut mover = self.inner.mover.clone().lock_owned().await;
        let inner = self.inner.clone();
        let closed = blocking(move || {
            let synced = if inner.active() {
                inner.sync_locked(&mut mover)
            } else {
                Ok(())
            };
            inner.closed.store(true, Ordering::SeqCst);
            {
                let mut s = inner.state();
                inner.flush_held(&mut s);
                inner.active.store(false, Ordering::SeqCst);
                // Everything in it was moved and synced, unless a record came meanwhile: then
                // it stays for the next open to replay.
                if let Some(seg) = s.segment.take() {
                    if s.waiting.is_empty() && synced.is_ok() {
                        remove(&seg.path);
                    }
                }
            }
            mover.conn = None;
            *inner.dir_lock.lock().unwrap_or_else(|p| p.into_inner()) = None;
            synced
        })
        .await;
        if let Err(e) = closed {
            tracing::warn!(error = %e, "the audit journal could not be moved into the ledger at close; it is replayed at the next open");
        }
    }
}

/// Runs blocking journal work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, LedgerError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(LedgerError::Storage {
            context: "moving the audit journal".into(),
            source: Box::new(e),
        })
    })
}

impl Inner {
    fn active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // Every update under the lock leaves the state consistent, so a poisoned lock is fine.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn problems(&self) -> MutexGuard<'_, Problems> {
        self.problems.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_problem(&self, f: impl FnOnce(&mut Problems)) {
        let mut p = self.problems();
        f(&mut p);
        self.troubled.store(
            p.write.is_some() || p.moving.is_some() || p.syncing.is_some(),
            Ordering::Relaxed,
        );
    }

    /// Writes the deferred records and then `record` (if given), in order, to the current
    /// segment with one `write()`, giving them the next positions; then they wait to be
    /// moved. On failure nothing of it is kept (a torn write is cut off again, or the segment
    /// given up, so a kept record never follows a torn frame) and the deferred records stay
    /// held.
    fn write_batch(&self, s: &mut State, mut record: Option<Frame>) -> std::io::Result<()> {
        if s.segment.is_none() {
            let id = s.next_segment;
            s.next_segment += 1;
            s.segment = Some(Segment::create(&self.dir, id)?);
        }
        let State {
            segment,
            next_seq,
            waiting,
            deferred,
            retired,
            ..
        } = s;
        let seg = segment.as_mut().expect("made above");
        let mut seq = *next_seq;
        for (frame, _) in deferred.iter_mut().chain(record.iter_mut()) {
            finish_frame(frame, seq);
            seq += 1;
        }
        let written = match (deferred.is_empty(), &record) {
            (true, Some((frame, _))) => (&*seg.file).write_all(frame).map(|()| frame.len()),
            _ => {
                let bytes = deferred
                    .iter()
                    .chain(record.iter())
                    .map(|(f, _)| f.as_slice())
                    .collect::<Vec<_>>()
                    .concat();
                (&*seg.file).write_all(&bytes).map(|()| bytes.len())
            }
        };
        match written {
            Ok(len) => {
                seg.len += len as u64;
                *next_seq = seq;
                waiting.extend(deferred.drain(..).chain(record).map(|(_, r)| r));
                Ok(())
            }
            Err(e) => {
                if seg.file.set_len(seg.len).is_err() {
                    let old = segment.take().expect("checked");
                    retired.push(old.path);
                }
                Err(e)
            }
        }
    }

    /// Writes the deferred records, if any, where the next open replays them; a failure is
    /// logged (they are lost with the process).
    fn flush_held(&self, s: &mut State) {
        if s.deferred.is_empty() || !self.active() {
            return;
        }
        if let Err(e) = self.write_batch(s, None) {
            tracing::error!(error = %e, records = s.deferred.len(), "could not write deferred audit records to the journal");
        }
    }

    /// Whether records wait to be moved: written, or deferred.
    fn something_waits(&self) -> bool {
        let s = self.state();
        !s.waiting.is_empty() || !s.deferred.is_empty()
    }

    /// A write succeeded: a write problem is over.
    fn wrote(&self) {
        if self.troubled.load(Ordering::Relaxed) {
            self.set_problem(|p| p.write = None);
        }
    }

    fn write_failed(&self, e: std::io::Error) -> LedgerError {
        let err = io_error(format!("{}: writing the audit journal", self.context), e);
        let message = err.to_string();
        tracing::error!(error = %message, "could not write the audit journal");
        self.set_problem(|p| p.write = Some(message));
        err
    }

    /// Takes the journal if it is free, replays it, and starts a segment. `Ok(false)`: another
    /// ledger holds it, or this one was closed.
    fn try_activate(&self, m: &mut Mover) -> Result<bool, LedgerError> {
        if self.active() {
            return Ok(true);
        }
        if self.closed.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let ctx = |what: &str| format!("{}: {what} the audit journal", self.context);
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|e| io_error(ctx("creating"), e))?;
        let dir = File::open(&self.dir).map_err(|e| io_error(ctx("opening"), e))?;
        // SAFETY: flock on a descriptor we own; it only takes or refuses an advisory lock.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == ErrorKind::WouldBlock {
                return Ok(false);
            }
            return Err(io_error(ctx("locking"), e));
        }
        let (next_seq, next_segment) = self.replay(m)?;
        let first = Segment::create(&self.dir, next_segment).ok();
        {
            let mut s = self.state();
            s.next_seq = next_seq;
            s.next_segment = next_segment + u64::from(first.is_some());
            s.segment = first;
            s.waiting.clear();
            s.retired.clear();
        }
        *self.dir_lock.lock().unwrap_or_else(|p| p.into_inner()) = Some(dir);
        self.active.store(true, Ordering::Release);
        Ok(true)
    }

    /// Moves every record a previous owner left after `moved_upto` into the chain, fsyncs the
    /// log and deletes the segments. Returns the next journal position and segment number.
    fn replay(&self, m: &mut Mover) -> Result<(u64, u64), LedgerError> {
        let ctx = format!("{}: replaying the audit journal", self.context);
        let mut segments: Vec<(u64, PathBuf)> = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| io_error(ctx.clone(), e))?;
        for e in entries {
            let e = e.map_err(|e| io_error(ctx.clone(), e))?;
            let path = e.path();
            if path.extension().and_then(|x| x.to_str()) != Some(SEGMENT_EXT) {
                continue;
            }
            if let Some(id) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u64>().ok())
            {
                segments.push((id, path));
            }
        }
        segments.sort();
        let next_segment = segments.last().map_or(1, |(id, _)| id + 1);
        let conn = self
            .conn(m)
            .map_err(|e| crate::appender::storage(&ctx, e))?;
        let moved_upto: i64 = conn
            .query_row(
                "SELECT moved_upto FROM audit_journal WHERE id = 1",
                [],
                |r| r.get(0),
            )
            .map_err(|e| crate::appender::storage(&ctx, e))?;
        let moved_upto = moved_upto as u64;
        let mut found: Vec<(u64, UnsealedRecord)> = Vec::new();
        for (_, path) in &segments {
            let bytes = std::fs::read(path).map_err(|e| io_error(ctx.clone(), e))?;
            let (frames, torn) = decode_segment(&bytes);
            if let Some(at) = torn {
                tracing::warn!(segment = %path.display(), offset = at, "the audit journal segment ends in a torn frame (a write cut short); what follows it was never kept");
            }
            found.extend(frames.into_iter().filter(|(seq, _)| *seq > moved_upto));
        }
        found.sort_by_key(|(seq, _)| *seq);
        found.dedup_by_key(|(seq, _)| *seq);
        let last = found.last().map_or(moved_upto, |(seq, _)| *seq);
        if !found.is_empty() {
            let expected = last - moved_upto;
            if found.len() as u64 != expected {
                tracing::warn!(
                    found = found.len(),
                    expected,
                    "the audit journal has gaps (records lost to a power cut within the sync window); what is there is replayed"
                );
            }
            let records: Vec<UnsealedRecord> = found.into_iter().map(|(_, r)| r).collect();
            let conn = self
                .conn(m)
                .map_err(|e| crate::appender::storage(&ctx, e))?;
            let written = crate::appender::write(conn, &records, Some(last));
            match written {
                Ok(sealed) => {
                    tracing::info!(
                        records = sealed.len(),
                        "replayed the audit journal into the ledger"
                    );
                    m.moved_head = sealed.last().map(head_of);
                }
                Err(e) => {
                    m.conn = None;
                    return Err(e.into_ledger(&ctx));
                }
            }
        }
        if !segments.is_empty() {
            (self.wal_sync)().map_err(|e| io_error(ctx.clone(), e))?;
            for (_, path) in &segments {
                remove(path);
            }
        }
        Ok((last + 1, next_segment))
    }

    /// The mover's connection, opened on first use.
    fn conn<'m>(&self, m: &'m mut Mover) -> Result<&'m mut rusqlite::Connection, rusqlite::Error> {
        if m.conn.is_none() {
            m.conn = Some(crate::appender::open(
                &self.ledger,
                crate::appender::BUSY_TIMEOUT,
            )?);
        }
        Ok(m.conn.as_mut().expect("just opened"))
    }

    /// Moves every waiting record into the chain in one transaction, starting a new segment
    /// for the appends that come meanwhile if the current one is full. On failure the records wait again, in front, and
    /// the segments holding them are fsynced (the power-loss window still holds).
    fn move_waiting(&self, m: &mut Mover) -> Result<(), LedgerError> {
        let ctx = format!(
            "{}: moving the audit journal into the audit log",
            self.context
        );
        let rotate = {
            let mut s = self.state();
            // Deferred records are written first, so that they are moved with the others and
            // the journal keeps its order. If that fails they stay held (younger than every
            // written record) and the written ones are moved.
            if !s.deferred.is_empty() {
                if let Err(e) = self.write_batch(&mut s, None) {
                    drop(s);
                    let _ = self.write_failed(e);
                    s = self.state();
                }
            }
            if s.waiting.is_empty() {
                return Ok(());
            }
            let full = s.segment.as_ref().is_none_or(|seg| seg.len >= ROTATE_AT);
            full.then(|| {
                s.next_segment += 1;
                s.next_segment - 1
            })
        };
        // Made outside the append lock; without it, appends carry on in the current segment,
        // which is retired at a later move.
        let fresh = rotate.and_then(|id| Segment::create(&self.dir, id).ok());
        let (batch, upto, retired) = {
            let mut s = self.state();
            // Before the records leave `waiting`, under its lock, so that `needs_sync` always finds
            // them in one place or the other while they are being moved.
            self.unsynced.store(true, Ordering::Relaxed);
            let batch = std::mem::take(&mut s.waiting);
            let upto = s.next_seq - 1;
            let mut retired = std::mem::take(&mut s.retired);
            if let Some(fresh) = fresh {
                if let Some(old) = s.segment.replace(fresh) {
                    retired.push(old.path);
                }
            }
            (batch, upto, retired)
        };
        let written = match self.conn(m) {
            Ok(conn) => {
                crate::appender::write(conn, &batch, Some(upto)).map_err(|e| e.into_ledger(&ctx))
            }
            Err(e) => Err(crate::appender::storage(&ctx, e)),
        };
        match written {
            Ok(sealed) => {
                m.moved.append(&mut m.unmoved);
                m.moved.extend(retired);
                if let Some(last) = sealed.last() {
                    m.moved_head = Some(head_of(last));
                }
                if self.troubled.load(Ordering::Relaxed) {
                    self.set_problem(|p| p.moving = None);
                }
                self.room.notify_waiters();
                Ok(())
            }
            Err(e) => {
                // A failed transaction must not stay open on the connection.
                m.conn = None;
                let current = {
                    let mut s = self.state();
                    let newer = std::mem::replace(&mut s.waiting, batch);
                    s.waiting.extend(newer);
                    s.segment.as_ref().map(|seg| seg.file.clone())
                };
                m.unmoved.extend(retired);
                let message = e.to_string();
                tracing::error!(error = %message, "could not move the audit journal into the audit log; statements are refused until it can be");
                self.set_problem(|p| p.moving = Some(message));
                self.fsync_waiting(m, current);
                Err(e)
            }
        }
    }

    /// Fsyncs the segments holding waiting records, and the directory naming them.
    fn fsync_waiting(&self, m: &Mover, current: Option<Arc<File>>) {
        let mut result = Ok(());
        for path in &m.unmoved {
            result = result.and(File::open(path).and_then(|f| f.sync_data()));
        }
        if let Some(f) = current {
            result = result.and(f.sync_data());
        }
        result = result.and(File::open(&self.dir).and_then(|d| d.sync_all()));
        if let Err(e) = result {
            tracing::error!(error = %e, "could not fsync the audit journal");
        }
    }

    fn sync_locked(&self, m: &mut Mover) -> Result<(), LedgerError> {
        if !self.active() && !self.try_activate(m)? {
            return (self.wal_sync)().map_err(|e| {
                io_error(
                    format!("{}: syncing the write-ahead log to disk", self.context),
                    e,
                )
            });
        }
        self.move_waiting(m)?;
        let head = m.moved_head;
        self.unsynced.store(false, Ordering::Relaxed);
        if let Err(e) = (self.wal_sync)() {
            self.unsynced.store(true, Ordering::Relaxed);
            let e = io_error(
                format!("{}: syncing the write-ahead log to disk", self.context),
                e,
            );
            let message = e.to_string();
            self.set_problem(|p| p.syncing = Some(message));
            return Err(e);
        }
        if self.troubled.load(Ordering::Relaxed) {
            self.set_problem(|p| p.syncing = None);
        }
        for path in m.moved.drain(..) {
            remove(&path);
        }
        *self.synced.lock().unwrap_or_else(|p| p.into_inner()) = head;
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A ledger dropped without a close: what was only held goes to the journal, for the
        // next open to replay.
        let state = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        let mut s = std::mem::take(state);
        self.flush_held(&mut s);
    }
}

impl Segment {
    fn create(dir: &Path, id: u64) -> std::io::Result<Segment> {
        let path = dir.join(format!("{id:020}.{SEGMENT_EXT}"));
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .mode(0o600)
            .open(&path)?;
        if let Err(e) = (&file).write_all(MAGIC) {
            drop(file);
            remove(&path);
            return Err(e);
        }
        Ok(Segment {
            file: Arc::new(file),
            path,
            len: MAGIC.len() as u64,
        })
    }
}

fn remove(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        // Left behind, it is skipped at replay: its records are at or before `moved_upto`.
        Err(e) => {
            tracing::warn!(segment = %path.display(), error = %e, "could not delete a moved audit journal segment")
        }
    }
}

fn head_of(r: &AuditRecord) -> ChainHead {
    ChainHead {
        seq: r.seq,
        hash: r.hash.parse().expect("the ledger returns sealed records"),
    }
}

/// An I/O error with what was being done; a full disk says so in words.
fn io_error(context: String, e: std::io::Error) -> LedgerError {
    let source: Box<dyn std::error::Error + Send + Sync> = if e.kind() == ErrorKind::StorageFull {
        format!("the disk is full ({e})").into()
    } else {
        Box::new(e)
    };
    LedgerError::Storage { context, source }
}

/// A frame for `r` with its position left blank ([`finish_frame`] fills it in).
fn encode(r: &UnsealedRecord) -> Result<Vec<u8>, String> {
    let text = [
        Some(r.actor.as_str()),
        Some(r.kind.as_str()),
        r.grant_id.as_deref(),
        r.role.as_deref(),
        Some(r.details.as_str()),
    ];
    let size = HEADER + MIN_PAYLOAD + text.iter().flatten().map(|t| t.len()).sum::<usize>();
    if size - HEADER > u32::MAX as usize - 1 {
        return Err(format!(
            "a record of {size} bytes is too large for the audit journal"
        ));
    }
    let mut b = Vec::with_capacity(size);
    b.extend_from_slice(&[0; HEADER + 8]);
    b.extend_from_slice(&r.at.unix_millis().to_le_bytes());
    for field in text {
        match field {
            Some(t) => {
                b.extend_from_slice(&(t.len() as u32).to_le_bytes());
                b.extend_from_slice(t.as_bytes());
            }
            None => b.extend_from_slice(&ABSENT.to_le_bytes()),
        }
    }
    Ok(b)
}

/// Puts the position `seq` into a frame from [`encode`] and seals it with its length and CRC.
fn finish_frame(b: &mut [u8], seq: u64) {
    b[HEADER..HEADER + 8].copy_from_slice(&seq.to_le_bytes());
    let len = (b.len() - HEADER) as u32;
    let crc = crc32fast::hash(&b[HEADER..]);
    b[0..4].copy_from_slice(&len.to_le_bytes());
    b[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// The frames of one segment file, and the offset of a torn or bad frame that ended it.
fn decode_segment(bytes: &[u8]) -> (Vec<(u64, UnsealedRecord)>, Option<usize>) {
    let mut out = Vec::new();
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        // Created but never written (a crash between the two), or not ours.
        return (out, (!bytes.is_empty()).then_some(0));
    }
    let mut at = MAGIC.len();
    while at < bytes.len() {
        match decode_frame(&bytes[at..]) {
            Some((seq, record, used)) => {
                out.push((seq, record));
                at += used;
            }
            None => return (out, Some(at)),
        }
    }
    (out, None)
}

fn decode_frame(b: &[u8]) -> Option<(u64, UnsealedRecord, usize)> {
    let len = u32::from_le_bytes(b.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(b.get(4..8)?.try_into().ok()?);
    if len < MIN_PAYLOAD {
        return None;
    }
    let payload = b.get(HEADER..HEADER.checked_add(len)?)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let mut r = Reader(payload);
    let seq = u64::from_le_bytes(r.take(8)?.try_into().ok()?);
    let at = i64::from_le_bytes(r.take(8)?.try_into().ok()?);
    let actor = r.text()??;
    let kind = r.text()??;
    let grant_id = r.text()?;
    let role = r.text()?;
    let details = r.text()??;
    if !r.0.is_empty() {
        return None;
    }
    Some((
        seq,
        UnsealedRecord {
            at: Timestamp::from_unix_millis(at),
            actor,
            kind,
            grant_id,
            role,
            details,
        },
        HEADER + len,
    ))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    /// A field: `None` if the frame is bad, `Some(None)` if the field is absent.
    fn text(&mut self) -> Option<Option<String>> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        if len == ABSENT {
            return Some(None);
        }
        let bytes = self.take(len as usize)?;
        Some(Some(String::from_utf8(bytes.to_vec()).ok()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(details: &str, grant: Option<&str>) -> UnsealedRecord {
        UnsealedRecord {
            at: Timestamp::from_unix_millis(1_750_000_000_123),
            actor: "user:alice".into(),
            kind: "session.statement".into(),
            grant_id: grant.map(str::to_string),
            role: None,
            details: details.into(),
        }
    }

    fn segment(records: &[(u64, UnsealedRecord)]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        for (seq, r) in records {
            let mut f = encode(r).unwrap();
            finish_frame(&mut f, *seq);
            b.extend(f);
        }
        b
    }

    #[test]
    fn frames_round_trip_every_field() {
        let rs = vec![
            (1, record(r#"{"a":1}"#, Some("g_1"))),
            (2, record("{}", None)),
            (3, record(r#"{"text":"sélect ☃"}"#, Some(""))),
        ];
        let (back, torn) = decode_segment(&segment(&rs));
        assert_eq!(torn, None);
        assert_eq!(back, rs);
    }

    #[test]
    fn a_torn_or_damaged_frame_ends_the_segment_and_nothing_after_it_is_read() {
        let rs = vec![(1, record("{}", None)), (2, record(r#"{"b":2}"#, None))];
        let full = segment(&rs);
        // Cut anywhere inside the second frame: only the first is read.
        let first_end = segment(&rs[..1]).len();
        for cut in first_end + 1..full.len() {
            let (back, torn) = decode_segment(&full[..cut]);
            assert_eq!(back, rs[..1].to_vec(), "cut at {cut}");
            assert_eq!(torn, Some(first_end), "cut at {cut}");
        }
        // A flipped bit in the first frame's payload: nothing is read.
        let mut bad = full.clone();
        bad[MAGIC.len() + HEADER + 9] ^= 1;
        let (back, torn) = decode_segment(&bad);
        assert!(back.is_empty());
        assert_eq!(torn, Some(MAGIC.len()));
        // Zeros where a frame should be (a hole) are not a frame.
        let mut holed = segment(&rs[..1]);
        holed.extend([0u8; 64]);
        assert_eq!(decode_segment(&holed).0, rs[..1].to_vec());
    }

    #[test]
    fn a_file_without_the_magic_holds_nothing() {
        assert_eq!(decode_segment(b""), (vec![], None));
        assert_eq!(decode_segment(b"SGAJ").0, vec![]);
        assert_eq!(decode_segment(b"not a journal segment").0, vec![]);
    }
}
