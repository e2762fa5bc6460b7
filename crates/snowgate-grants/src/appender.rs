//! The audit log's appender for records that are not grant transitions: one thread with its
//! own SQLite connection to the ledger's file, which takes a batch, reads the chain's head and
//! writes the batch in one `BEGIN IMMEDIATE` transaction, all without leaving the thread.
//!
//! Why a thread of its own: through sqlx, every statement of a transaction is a round trip to
//! sqlx's worker thread, and on a small machine those wake-ups cost more than the writes. Here
//! a batch costs one hand-off in and one out. The file lock of `BEGIN IMMEDIATE` orders these
//! writes with the grant transitions written through sqlx, so the chain stays linear.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::audit::{AuditEntry, AuditRecord, ChainHash};
use crate::ledger::LedgerError;

type Reply = oneshot::Sender<Result<Vec<AuditRecord>, LedgerError>>;

struct Job {
    entries: Vec<AuditEntry>,
    done: Reply,
}

/// A handle on the appender thread; the thread stops when the last handle is dropped.
#[derive(Debug)]
pub(crate) struct Appender {
    tx: std::sync::mpsc::Sender<Job>,
    path: PathBuf,
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

fn run(path: &Path, rx: std::sync::mpsc::Receiver<Job>) {
    let mut conn: Option<rusqlite::Connection> = None;
    while let Ok(job) = rx.recv() {
        let ctx = format!("ledger at {}: appending to the audit log", path.display());
        let result = match conn.as_mut() {
            Some(c) => write(c, &job.entries, &ctx),
            None => match open(path) {
                Ok(c) => write(conn.insert(c), &job.entries, &ctx),
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

fn open(path: &Path) -> Result<rusqlite::Connection, rusqlite::Error> {
    let c = rusqlite::Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    c.busy_timeout(Duration::from_secs(5))?;
    // The same settings as the sqlx pool (see `sqlite.rs`); WAL is a property of the file.
    c.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
    Ok(c)
}

fn storage(ctx: &str, e: rusqlite::Error) -> LedgerError {
    LedgerError::Storage {
        context: ctx.to_string(),
        source: Box::new(e),
    }
}

fn write(
    c: &mut rusqlite::Connection,
    entries: &[AuditEntry],
    ctx: &str,
) -> Result<Vec<AuditRecord>, LedgerError> {
    let tx = c
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(|e| storage(ctx, e))?;
    let head: Option<(i64, String)> = {
        let mut q = tx
            .prepare_cached("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .map_err(|e| storage(ctx, e))?;
        let mut rows = q.query([]).map_err(|e| storage(ctx, e))?;
        match rows.next().map_err(|e| storage(ctx, e))? {
            Some(r) => Some((
                r.get(0).map_err(|e| storage(ctx, e))?,
                r.get(1).map_err(|e| storage(ctx, e))?,
            )),
            None => None,
        }
    };
    let (mut seq, mut prev) = match head {
        None => (0u64, ChainHash::GENESIS),
        Some((seq, hash)) => {
            let hash = ChainHash::from_str(&hash).map_err(|message| LedgerError::Corrupt {
                context: format!("{ctx}: audit record {seq}"),
                message,
            })?;
            (seq as u64, hash)
        }
    };
    let mut out = Vec::with_capacity(entries.len());
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO audit (seq, at, actor, kind, grant_id, role, details, prev_hash, hash)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .map_err(|e| storage(ctx, e))?;
        for entry in entries {
            seq += 1;
            let r = AuditRecord::seal(entry, seq, &prev);
            insert
                .execute(rusqlite::params![
                    r.seq as i64,
                    r.at.unix_millis(),
                    r.actor,
                    r.kind,
                    r.grant_id,
                    r.role,
                    r.details,
                    r.prev_hash,
                    r.hash,
                ])
                .map_err(|e| storage(ctx, e))?;
            prev = r.hash.parse().expect("a sealed record's hash is valid");
            out.push(r);
        }
    }
    tx.commit().map_err(|e| storage(ctx, e))?;
    Ok(out)
}
