//! The audit log's appender for records that are not grant transitions. A batch is written in
//! one `BEGIN IMMEDIATE` transaction that reads the chain's head and inserts the records after
//! it, on a connection of the appender's own (rusqlite, not sqlx), in one of two places:
//!
//! - **Right here** ([`Appender::try_append_now`]): on the caller's thread, when the batch is
//!   small and nobody else holds the ledger's write lock. The connection's busy timeout is
//!   zero, so a held lock answers `SQLITE_BUSY` at once instead of blocking the caller's
//!   thread; the batch then goes to the thread below. An uncontended write costs tens of
//!   microseconds and no thread hand-off, which is what a lone statement waits for.
//! - **On the appender thread** ([`Appender::append`]): its own connection with a 5 s busy
//!   timeout, for large batches and for when the write lock is held (a grant transition being
//!   written through sqlx, a checkpoint). One hand-off in and one out.
//!
//! Why not sqlx: every statement of a sqlx transaction is a round trip to sqlx's worker
//! thread, and on a small machine those wake-ups cost more than the writes. The file lock of
//! `BEGIN IMMEDIATE` orders all these writes with each other and with the grant transitions
//! written through sqlx, so the chain stays linear.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::audit::{AuditEntry, AuditRecord, ChainHash, UnsealedRecord};
use crate::ledger::LedgerError;

type Reply = oneshot::Sender<Result<Vec<AuditRecord>, LedgerError>>;

/// Batches larger than this always go to the appender thread: a caller's thread is not held
/// for long.
const MAX_INLINE_BATCH: usize = 64;

struct Job {
    entries: Vec<AuditEntry>,
    done: Reply,
}

/// A handle on the appender thread; the thread stops when the last handle is dropped.
#[derive(Debug)]
pub(crate) struct Appender {
    tx: std::sync::mpsc::Sender<Job>,
    path: PathBuf,
    /// The connection for writes on the caller's thread (busy timeout zero); `None` until
    /// first used, and again after a failed write.
    inline: std::sync::Mutex<Option<rusqlite::Connection>>,
}

impl Appender {
    pub fn start(path: &Path) -> Appender {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let file = path.to_path_buf();
        std::thread::Builder::new()
            .name("audit-appender".into())
            .spawn(move || run(&file, rx))
            .expect("spawning the audit appender thread");
        Appender {
            tx,
            path: path.to_path_buf(),
            inline: std::sync::Mutex::new(None),
        }
    }

    /// Appends `entries` on the calling thread if that can be done without waiting: the batch
    /// is small, no other caller is using the inline connection, and no other connection holds
    /// the ledger's write lock. `None` means "not now": the caller should use
    /// [`Appender::append`]. Errors other than a busy lock (a full disk, say) are answered
    /// as they are, so the caller fails closed.
    pub fn try_append_now(
        &self,
        entries: &[AuditEntry],
    ) -> Option<Result<Vec<AuditRecord>, LedgerError>> {
        if entries.len() > MAX_INLINE_BATCH {
            return None;
        }
        let mut slot = self.inline.try_lock().ok()?;
        let ctx = || {
            format!(
                "ledger at {}: appending to the audit log",
                self.path.display()
            )
        };
        let conn = match slot.as_mut() {
            Some(c) => c,
            None => match open(&self.path, Duration::ZERO) {
                Ok(c) => slot.insert(c),
                Err(e) if is_busy(&e) => return None,
                Err(e) => return Some(Err(storage(&ctx(), e))),
            },
        };
        match write_entries(conn, entries) {
            Ok(records) => Some(Ok(records)),
            Err(e) => {
                // Never leave the connection inside its transaction.
                if let Some(c) = slot.take() {
                    let _ = c.execute_batch("ROLLBACK");
                }
                if e.is_busy() {
                    None
                } else {
                    Some(Err(e.into_ledger(&ctx())))
                }
            }
        }
    }

    /// Appends `entries` in one transaction, in order; returns their records.
    pub async fn append(&self, entries: Vec<AuditEntry>) -> Result<Vec<AuditRecord>, LedgerError> {
        let (done, answer) = oneshot::channel();
        let stopped = || LedgerError::Storage {
            context: format!(
                "ledger at {}: appending to the audit log",
                self.path.display()
            ),
            source: "the audit appender has stopped".into(),
        };
        self.tx.send(Job { entries, done }).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// How long the appender thread (and the journal's mover) waits for the write lock.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

fn run(path: &Path, rx: std::sync::mpsc::Receiver<Job>) {
    let mut conn: Option<rusqlite::Connection> = None;
    while let Ok(job) = rx.recv() {
        let ctx = format!("ledger at {}: appending to the audit log", path.display());
        let result = match conn.as_mut() {
            Some(c) => write_entries(c, &job.entries).map_err(|e| e.into_ledger(&ctx)),
            None => match open(path, BUSY_TIMEOUT) {
                Ok(c) => {
                    write_entries(conn.insert(c), &job.entries).map_err(|e| e.into_ledger(&ctx))
                }
                Err(e) => Err(storage(&ctx, e)),
            },
        };
        if result.is_err() {
            // A failed write (a full disk, say) must not leave the connection inside its
            // transaction: the next batch starts on a fresh one.
            if let Some(c) = conn.take() {
                let _ = c.execute_batch("ROLLBACK");
            }
        }
        let _ = job.done.send(result);
    }
}

pub(crate) fn open(
    path: &Path,
    busy_timeout: Duration,
) -> Result<rusqlite::Connection, rusqlite::Error> {
    let c = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(busy_timeout)?;
    // The same settings as the sqlx pool (see `sqlite.rs`); WAL is a property of the file.
    // No automatic checkpoints from here: one would copy the log into the database file and
    // fsync both inside a statement's wait. [`Ledger::sync`] checkpoints instead, off the
    // statements' path.
    c.execute_batch(
        "PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; PRAGMA wal_autocheckpoint = 0;",
    )?;
    Ok(c)
}

pub(crate) fn storage(ctx: &str, e: rusqlite::Error) -> LedgerError {
    LedgerError::Storage {
        context: ctx.to_string(),
        source: Box::new(e),
    }
}

/// Why a write failed: SQLite's error, or a head that does not parse.
pub(crate) enum WriteError {
    Sqlite(rusqlite::Error),
    Corrupt { seq: i64, message: String },
}

impl From<rusqlite::Error> for WriteError {
    fn from(e: rusqlite::Error) -> WriteError {
        WriteError::Sqlite(e)
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl WriteError {
    fn is_busy(&self) -> bool {
        matches!(self, WriteError::Sqlite(e) if is_busy(e))
    }

    pub(crate) fn into_ledger(self, ctx: &str) -> LedgerError {
        match self {
            WriteError::Sqlite(e) => storage(ctx, e),
            WriteError::Corrupt { seq, message } => LedgerError::Corrupt {
                context: format!("{ctx}: audit record {seq}"),
                message,
            },
        }
    }
}

fn write_entries(
    c: &mut rusqlite::Connection,
    entries: &[AuditEntry],
) -> Result<Vec<AuditRecord>, WriteError> {
    let records: Vec<UnsealedRecord> = entries.iter().map(UnsealedRecord::from).collect();
    write(c, &records, None)
}

/// Appends `records` after the chain's head in one `BEGIN IMMEDIATE` transaction, in order,
/// and returns them sealed. With `journal_upto`, the same transaction sets
/// `audit_journal.moved_upto`: the records are the audit journal's, up to that position.
pub(crate) fn write(
    c: &mut rusqlite::Connection,
    records: &[UnsealedRecord],
    journal_upto: Option<u64>,
) -> Result<Vec<AuditRecord>, WriteError> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let head: Option<(i64, String)> = {
        let mut q = tx.prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")?;
        let mut rows = q.query([])?;
        match rows.next()? {
            Some(r) => Some((r.get(0)?, r.get(1)?)),
            None => None,
        }
    };
    let (mut seq, mut prev) = match head {
        None => (0u64, ChainHash::GENESIS),
        Some((seq, hash)) => {
            let hash = ChainHash::from_str(&hash)
                .map_err(|message| WriteError::Corrupt { seq, message })?;
            (seq as u64, hash)
        }
    };
    let mut out = Vec::with_capacity(records.len());
    {
        let mut insert = tx.prepare_cached(
            "INSERT INTO audit (seq, at, actor, kind, grant_id, role, details, prev_hash, hash)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )?;
        for record in records {
            seq += 1;
            let (r, hash) = record.seal_after(seq, &prev);
            insert.execute(rusqlite::params![
                r.seq as i64,
                r.at.unix_millis(),
                r.actor,
                r.kind,
                r.grant_id,
                r.role,
                r.details,
                r.prev_hash,
                r.hash,
            ])?;
            prev = hash;
            out.push(r);
        }
    }
    if let Some(upto) = journal_upto {
        tx.prepare_cached("UPDATE audit_journal SET moved_upto = ? WHERE id = 1")?
            .execute([upto as i64])?;
    }
    tx.commit()?;
    Ok(out)
}
