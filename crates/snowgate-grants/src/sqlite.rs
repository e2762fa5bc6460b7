//! The embedded ledger: SQLite through sqlx, in the data dir as `ledger.sqlite3`.
//!
//! Durability settings, and why:
//! - `journal_mode=WAL`: readers (the UI listing grants) never block the writer.
//! - `synchronous=NORMAL`: a commit writes the WAL but does not fsync it, so it survives
//!   `kill -9` of this process (the OS has the pages) but not a power cut or kernel crash.
//!   The fsync comes from [`Ledger::sync`], an `fdatasync` of the `-wal` file, which the
//!   audit log's group commit calls at least every 10 ms; that is the power-loss window for
//!   session and statement records, and the anchor moves only past synced records. A grant
//!   transition ([`Ledger::commit`]) syncs before it returns, as `synchronous=FULL` would:
//!   an approval the user was told about is never lost. Checkpoints sync the WAL first. The
//!   audit appender's connections don't checkpoint: [`Ledger::sync`] does, once the log passes
//!   4 MiB, so no statement waits for a checkpoint's copy and fsyncs.
//! - `busy_timeout=5s`: another connection holding the write lock makes us wait, not fail.
//! - Writes start with `BEGIN IMMEDIATE`, taking the write lock before reading the chain's
//!   head, so two appenders can never both read the same last `seq`. An in-process mutex
//!   queues our own grant writers first so they do not spin on the busy handler. Appends that
//!   are not grant transitions go through [`crate::appender`]: on the caller's thread when the
//!   write lock is free, else on a thread with a connection of its own (the same file lock
//!   orders them with the rest).
//! - The file is created with mode 0600 (SQLite gives its `-wal` and `-shm` files the same
//!   mode), and migrations run at open.
//! - The audit journal ([`crate::journal`], in `ledger.audit-journal/` beside the file) is
//!   part of the ledger: a record kept there is in the audit log as far as every reader is
//!   concerned. Every read of the audit log, grant commit and direct append first moves what
//!   waits in it into the `audit` table (or, while that fails, reads it through), and
//!   [`Ledger::sync`] moves it and fsyncs the log. It is replayed at open.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::migrate::Migrator;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use crate::audit::{AuditEntry, AuditRecord, ChainHash, ChainHead, UnsealedRecord};
use crate::journal::{Drained, Journal};
use crate::ledger::{AuditQuery, GrantFilter, Ledger, LedgerError};
use crate::machine::Transition;
use crate::model::{Grant, GrantId};
use crate::sql::storage;
use crate::timestamp::Timestamp;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// A [`Ledger`] in one SQLite file.
#[derive(Debug)]
pub struct SqliteLedger {
    pool: SqlitePool,
    path: PathBuf,
    writer: tokio::sync::Mutex<()>,
    appender: crate::appender::Appender,
    /// The audit journal, replayed at open.
    journal: Journal,
}

/// The write-ahead log is copied into the database file once it is this large. The audit
/// appender's connections don't checkpoint by themselves (see [`crate::appender`]); the sqlx
/// connections keep SQLite's default (1000 pages), which rarely comes due on their own few
/// writes.
const CHECKPOINT_AT_BYTES: u64 = 4 * 1024 * 1024;

/// At most one checkpoint this often. The `-wal` file keeps its size after a checkpoint (the
/// log restarts from its beginning), so past [`CHECKPOINT_AT_BYTES`] its size alone would ask
/// for one at every sync: a copy and an fsync of the database file every 10 ms.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The connection syncs checkpoint with (opened on first use), and when it last did.
#[derive(Default)]
struct Checkpointer {
    conn: Option<rusqlite::Connection>,
    last: Option<std::time::Instant>,
}

/// `fdatasync` of the `-wal` file, then a passive checkpoint if the log has grown past
/// [`CHECKPOINT_AT_BYTES`] (at most every [`CHECKPOINT_EVERY`]). Blocking: runs on the
/// blocking pool.
fn sync_and_checkpoint(
    path: &Path,
    checkpointer: &std::sync::Mutex<Checkpointer>,
) -> std::io::Result<()> {
    let mut wal = path.to_path_buf().into_os_string();
    wal.push("-wal");
    // fsync works on any descriptor of the file: it flushes the file, not the descriptor.
    let len = match std::fs::File::open(PathBuf::from(wal)) {
        Ok(f) => {
            f.sync_data()?;
            f.metadata()?.len()
        }
        // No WAL yet (nothing written since the last connection closed).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if len < CHECKPOINT_AT_BYTES {
        return Ok(());
    }
    let mut cp = checkpointer.lock().unwrap_or_else(|p| p.into_inner());
    if cp.last.is_some_and(|t| t.elapsed() < CHECKPOINT_EVERY) {
        return Ok(());
    }
    cp.last = Some(std::time::Instant::now());
    let slot = &mut cp.conn;
    let result = (|| -> Result<(), rusqlite::Error> {
        let conn = match slot.as_mut() {
            Some(c) => c,
            None => {
                let c = rusqlite::Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                c.busy_timeout(Duration::from_secs(1))?;
                c.execute_batch("PRAGMA synchronous = NORMAL;")?;
                slot.insert(c)
            }
        };
        // PASSIVE: copies what it can without waiting for readers or writers.
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
    })();
    if let Err(e) = result {
        // A checkpoint that can't run now runs at a later sync; the records are in the log.
        tracing::debug!(error = %e, "checkpointing the ledger's write-ahead log did not finish");
        slot.take();
    }
    Ok(())
}

impl SqliteLedger {
    /// The ledger's file name in the data dir.
    pub const FILE_NAME: &'static str = "ledger.sqlite3";

    /// Opens (creating if needed) `ledger.sqlite3` in `data_dir`, which must exist.
    pub async fn open_in(data_dir: &Path) -> Result<SqliteLedger, LedgerError> {
        SqliteLedger::open(&data_dir.join(Self::FILE_NAME)).await
    }

    /// Opens (creating if needed) the ledger at `path` and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<SqliteLedger, LedgerError> {
        let where_ = format!("opening the ledger at {}", path.display());
        create_private(path).map_err(|e| LedgerError::Storage {
            context: where_.clone(),
            source: Box::new(e),
        })?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(storage(&where_))?;
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| LedgerError::Storage {
                context: format!("{where_}: running migrations"),
                source: Box::new(e),
            })?;
        let checkpointer = Arc::new(std::sync::Mutex::new(Checkpointer::default()));
        let wal_sync: crate::journal::WalSync = {
            let path = path.to_path_buf();
            Box::new(move || sync_and_checkpoint(&path, &checkpointer))
        };
        let file = path.to_path_buf();
        let journal = tokio::task::spawn_blocking(move || Journal::open(&file, wal_sync))
            .await
            .map_err(|e| LedgerError::Storage {
                context: format!("{where_}: opening the audit journal"),
                source: Box::new(e),
            })??;
        Ok(SqliteLedger {
            pool,
            path: path.to_path_buf(),
            writer: tokio::sync::Mutex::new(()),
            appender: crate::appender::Appender::start(path),
            journal,
        })
    }

    /// The outbox of records waiting for the team server, in this ledger's file.
    pub fn outbox(&self) -> crate::outbox::Outbox {
        crate::outbox::Outbox::new(
            self.pool.clone(),
            format!("ledger at {}", self.path.display()),
        )
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the audit journal into the log and lets it go, then closes every connection,
    /// waiting for them to finish.
    pub async fn close(&self) {
        self.journal.close().await;
        self.pool.close().await;
    }

    /// The stored audit records matching `query`, without the journal.
    async fn stored_audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, LedgerError> {
        let rows = crate::sql::audit_query::<Sqlite>("1", query)
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(storage(&self.context("reading the audit log")))?;
        Ok(rows.iter().map(crate::sql::audit_record).collect())
    }

    /// The stored chain's head, without the journal.
    async fn stored_head(&self) -> Result<Option<ChainHead>, LedgerError> {
        let row = sqlx::query(crate::sql::CHAIN_HEAD_QUERY)
            .fetch_optional(&self.pool)
            .await
            .map_err(storage(&self.context("reading the audit log's head")))?;
        row.map(|row| crate::sql::chain_head(&row, |what| self.context(what)))
            .transpose()
    }

    /// The records that wait in the journal while it can't be moved, sealed after the stored
    /// head, as the move will seal them.
    async fn read_through(
        &self,
        waiting: &[UnsealedRecord],
    ) -> Result<Vec<AuditRecord>, LedgerError> {
        let (mut seq, mut prev) = match self.stored_head().await? {
            Some(h) => (h.seq, h.hash),
            None => (0, ChainHash::GENESIS),
        };
        Ok(waiting
            .iter()
            .map(|r| {
                seq += 1;
                let sealed = r.seal(seq, &prev);
                prev = sealed
                    .hash
                    .parse()
                    .expect("a sealed record's hash is valid");
                sealed
            })
            .collect())
    }

    fn context(&self, what: impl std::fmt::Display) -> String {
        format!("ledger at {}: {what}", self.path.display())
    }

    async fn begin_write(&self) -> Result<WriteTx, LedgerError> {
        let ctx = self.context("starting a write");
        let mut conn = self.pool.acquire().await.map_err(storage(&ctx))?;
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(storage(&ctx))?;
        Ok(WriteTx { conn, open: true })
    }

    async fn append_in(
        &self,
        tx: &mut WriteTx,
        entries: &[AuditEntry],
    ) -> Result<Vec<AuditRecord>, LedgerError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let ctx = self.context("appending to the audit log");
        let head = sqlx::query("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut **tx)
            .await
            .map_err(storage(&ctx))?;
        let (mut seq, mut prev) = match head {
            None => (0u64, ChainHash::GENESIS),
            Some(row) => {
                let seq: i64 = row.get(0);
                let hash: String = row.get(1);
                let hash = ChainHash::from_str(&hash).map_err(|message| LedgerError::Corrupt {
                    context: self.context(format!("audit record {seq}")),
                    message,
                })?;
                (seq as u64, hash)
            }
        };
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            seq += 1;
            let r = AuditRecord::seal(entry, seq, &prev);
            sqlx::query(
                "INSERT INTO audit (seq, at, actor, kind, grant_id, role, details, prev_hash, hash)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(r.seq as i64)
            .bind(r.at.unix_millis())
            .bind(&r.actor)
            .bind(&r.kind)
            .bind(&r.grant_id)
            .bind(&r.role)
            .bind(&r.details)
            .bind(&r.prev_hash)
            .bind(&r.hash)
            .execute(&mut **tx)
            .await
            .map_err(storage(&ctx))?;
            prev = r.hash.parse().expect("a sealed record's hash is valid");
            out.push(r);
        }
        Ok(out)
    }

    fn grant_from_row(&self, row: &SqliteRow) -> Result<Grant, LedgerError> {
        let id: String = row.get("id");
        let body: String = row.get("body");
        serde_json::from_str(&body).map_err(|e| LedgerError::Corrupt {
            context: self.context(format!("grant {id}")),
            message: e.to_string(),
        })
    }
}

#[async_trait]
impl Ledger for SqliteLedger {
    async fn commit(&self, change: &Transition) -> Result<Vec<AuditRecord>, LedgerError> {
        if change.is_empty() {
            return Ok(Vec::new());
        }
        let g = change.grant();
        let ctx = self.context(format!("writing grant {}", g.id()));
        let body = serde_json::to_string(g).expect("grants serialize");
        let entries = change.audit_entries();
        let _writer = self.writer.lock().await;
        // Every record kept before this change is chained before it.
        self.journal.drain().await?;
        let mut tx = self.begin_write().await?;
        match change.replaces_version() {
            None => {
                let inserted = sqlx::query(
                    "INSERT INTO grants (id, role, requester, state, awaiting_decision, created_at,
                                         expires_at, next_deadline, version, body, account)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )
                .bind(g.id().as_str())
                .bind(g.role().as_str())
                .bind(g.requester().subject.as_str())
                .bind(g.state().as_str())
                .bind(g.awaits_decision())
                .bind(g.created_at().unix_millis())
                .bind(g.expires_at().map(Timestamp::unix_millis))
                .bind(g.next_deadline().map(Timestamp::unix_millis))
                .bind(g.version() as i64)
                .bind(&body)
                .bind(g.account())
                .execute(&mut *tx)
                .await;
                match inserted {
                    Ok(_) => {}
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                        return Err(LedgerError::DuplicateId {
                            grant: g.id().clone(),
                        })
                    }
                    Err(e) => return Err(storage(&ctx)(e)),
                }
            }
            Some(version) => {
                let updated = sqlx::query(
                    "UPDATE grants SET state = ?, awaiting_decision = ?, expires_at = ?,
                                       next_deadline = ?, version = ?, body = ?
                     WHERE id = ? AND version = ?",
                )
                .bind(g.state().as_str())
                .bind(g.awaits_decision())
                .bind(g.expires_at().map(Timestamp::unix_millis))
                .bind(g.next_deadline().map(Timestamp::unix_millis))
                .bind(g.version() as i64)
                .bind(&body)
                .bind(g.id().as_str())
                .bind(version as i64)
                .execute(&mut *tx)
                .await
                .map_err(storage(&ctx))?;
                if updated.rows_affected() != 1 {
                    return Err(LedgerError::Conflict {
                        grant: g.id().clone(),
                    });
                }
            }
        }
        let records = self.append_in(&mut tx, &entries).await?;
        tx.commit().await.map_err(storage(&ctx))?;
        drop(_writer);
        self.sync().await?;
        Ok(records)
    }

    async fn append(&self, entries: &[AuditEntry]) -> Result<Vec<AuditRecord>, LedgerError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        self.journal.drain().await?;
        self.appender.append(entries.to_vec()).await
    }

    fn append_now(&self, entries: &[AuditEntry]) -> Option<Result<Vec<AuditRecord>, LedgerError>> {
        if entries.is_empty() {
            return Some(Ok(Vec::new()));
        }
        if self.journal.is_active() && self.journal.waiting() > 0 {
            // Those go first: `append` drains them.
            return None;
        }
        self.appender.try_append_now(entries)
    }

    fn journal(&self) -> Option<&Journal> {
        Some(&self.journal)
    }

    async fn grant(&self, id: &GrantId) -> Result<Option<Grant>, LedgerError> {
        let row = sqlx::query("SELECT id, body FROM grants WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(storage(&self.context(format!("reading grant {id}"))))?;
        row.map(|r| self.grant_from_row(&r)).transpose()
    }

    async fn grants(&self, filter: &GrantFilter) -> Result<Vec<Grant>, LedgerError> {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT id, body FROM grants WHERE 1");
        if let Some(r) = &filter.requester {
            q.push(" AND requester = ")
                .push_bind(r.as_str().to_string());
        }
        if !filter.states.is_empty() {
            q.push(" AND state IN (");
            let mut sep = q.separated(", ");
            for s in &filter.states {
                sep.push_bind(s.as_str());
            }
            q.push(")");
        }
        if let Some(roles) = &filter.roles {
            if roles.is_empty() {
                return Ok(Vec::new());
            }
            q.push(" AND role IN (");
            let mut sep = q.separated(", ");
            for r in roles {
                sep.push_bind(r.as_str().to_string());
            }
            q.push(")");
        }
        if filter.awaiting_decision {
            q.push(" AND awaiting_decision = 1");
        }
        q.push(" ORDER BY created_at DESC, id DESC");
        if let Some(limit) = filter.limit {
            q.push(" LIMIT ").push_bind(i64::from(limit));
        }
        let rows = q
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(storage(&self.context("listing grants")))?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            let g = self.grant_from_row(row)?;
            if filter.matches(&g) {
                out.push(g);
            }
        }
        Ok(out)
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, LedgerError> {
        let drained = self.journal.drain_for_read().await;
        let mut records = self.stored_audit(query).await?;
        if let Drained::Stuck { waiting, .. } = &drained {
            let limit = query.limit.map_or(usize::MAX, |l| l as usize);
            let more = self.read_through(waiting).await?.into_iter().filter(|r| {
                query.after_seq.is_none_or(|after| r.seq > after)
                    && query.since.is_none_or(|since| r.at >= since)
                    && query
                        .grant
                        .as_ref()
                        .is_none_or(|g| r.grant_id.as_deref() == Some(g.as_str()))
            });
            let room = limit.saturating_sub(records.len());
            records.extend(more.take(room));
        }
        Ok(records)
    }

    async fn chain_head(&self) -> Result<Option<ChainHead>, LedgerError> {
        let drained = self.journal.drain_for_read().await;
        if let Drained::Stuck { waiting, .. } = &drained {
            if let Some(last) = self.read_through(waiting).await?.last() {
                return Ok(Some(ChainHead {
                    seq: last.seq,
                    hash: last.hash.parse().expect("a sealed record's hash is valid"),
                }));
            }
        }
        self.stored_head().await
    }

    async fn sync(&self) -> Result<(), LedgerError> {
        self.journal.sync().await
    }
}

/// A write transaction on a pooled connection, begun with `BEGIN IMMEDIATE`. A failed write
/// (a full disk, say) must not hand the connection back still inside its transaction: a
/// failed `COMMIT` is rolled back, and a transaction dropped unfinished (an early return)
/// closes its connection, which rolls it back.
struct WriteTx {
    conn: PoolConnection<Sqlite>,
    open: bool,
}

impl WriteTx {
    async fn commit(mut self) -> Result<(), sqlx::Error> {
        let committed = sqlx::query("COMMIT").execute(&mut *self.conn).await;
        if committed.is_err()
            && sqlx::query("ROLLBACK")
                .execute(&mut *self.conn)
                .await
                .is_err()
        {
            self.conn.close_on_drop();
        }
        self.open = false;
        committed.map(|_| ())
    }
}

impl std::ops::Deref for WriteTx {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if self.open {
            self.conn.close_on_drop();
        }
    }
}

/// Creates `path` readable and writable by its owner only, or tightens an existing file.
fn create_private(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        options.mode(0o600);
        options.open(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    {
        options.open(path)?;
    }
    Ok(())
}
