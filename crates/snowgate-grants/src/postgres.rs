//! The team ledger: PostgreSQL through sqlx, shared by any number of server replicas.
//!
//! It keeps the [`Ledger`] guarantees with several writers in several processes:
//! - **One write at a time.** Every write transaction first locks the one row of `chain_head`
//!   (`SELECT ... FOR UPDATE`) and holds it until it commits. The audit chain's next `seq` and
//!   previous hash are read from that row and written back in the same transaction, so the
//!   chain stays a single linear chain whichever replica appends.
//! - **No lost updates.** A grant is replaced only at the version it was decided on
//!   (`UPDATE ... WHERE version = $n`); otherwise [`LedgerError::Conflict`].
//! - **Events.** Each committed transition also writes its [`GrantEvent`]s to the `events` table
//!   (with the subjects they concern) and sends `NOTIFY snowgate_events` with the last id, all in
//!   the same transaction. Because ids are drawn under the lock, a reader that sees event `n`
//!   also sees every event before it, so "every row after the last id I saw" never skips one.
//!   The notification is only a hint to look; [`PgLedger::events_after`] is the truth.
//! - **Deadlines in the database.** [`PgLedger::tick_due`] claims the grants whose deadline has
//!   passed (`FOR UPDATE SKIP LOCKED`, under the write lock) and commits their ticks, so any
//!   replica may run the sweep, a killed replica loses nothing, and each expiry is committed
//!   exactly once.
//! - **Desktop reports exactly once.** A record a desktop reports carries its ledger's random
//!   `source` and its outbox id (`source_seq`), kept in the `audit` row under a unique index;
//!   [`PgLedger::append_reported`] skips what the log already has, under the same write lock,
//!   so a batch sent again after a lost answer is not appended twice.
//!
//! - **The reaper's work list.** The transaction that ends an active grant (expiry or revoke)
//!   also inserts its `reaps` row ([`reaps`]), which one replica's session reaper claims.
//!
//! Migrations (`migrations/postgres`) run at connect; sqlx serializes concurrent migrators with
//! an advisory lock, so replicas may start together.
//!
//! Why one long file: it is the whole `Ledger` for PostgreSQL, each query beside the locking
//! rule that keeps the audit chain linear across replicas.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Serialize;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row, Transaction};

use crate::audit::{AuditEntry, AuditRecord, ChainHash, ChainHead};
use crate::event::{Cause, GrantEvent, GrantEventKind};
use crate::ledger::{AuditQuery, GrantFilter, Ledger, LedgerError};
use crate::machine::Transition;
use crate::model::{Grant, GrantId, RoleName, Subject};
use crate::sql::storage;
use crate::timestamp::Timestamp;

mod reaps;

pub use reaps::{ReapClaim, ReapCounts};

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// The channel `NOTIFY` is sent on after each transition; its payload is the last event id.
pub const EVENTS_CHANNEL: &str = "snowgate_events";

/// How many connections a ledger keeps at most, unless told otherwise.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 10;

/// A [`Ledger`] in a PostgreSQL database. Cheap to clone (the pool is shared).
#[derive(Debug, Clone)]
pub struct PgLedger {
    pool: PgPool,
    label: String,
}

/// One row of the `events` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredEvent {
    /// The row's id: increasing in commit order, possibly with gaps.
    pub id: i64,
    /// The people the event concerns: the grant's requester and the person who caused it.
    pub subjects: Vec<String>,
    /// Whether the grant waited for a decision after the transition the event belongs to.
    pub awaiting_decision: bool,
    /// The event.
    pub event: GrantEvent,
}

/// What [`PgLedger::append_reported`] did with a desktop's batch.
#[derive(Debug, Clone, Default)]
pub struct ReportedAppend {
    /// The records appended now, in order.
    pub appended: Vec<AuditRecord>,
    /// Records the log already had (sent before, the answer lost): acknowledged, not appended.
    pub duplicates: usize,
}

impl StoredEvent {
    /// Whether `who` is among the people the event concerns.
    pub fn concerns(&self, who: &Subject) -> bool {
        self.subjects.iter().any(|s| s == who.as_str())
    }
}

impl PgLedger {
    /// Connects to the database at `url` (a `postgres://` URL; `sslmode` and `sslrootcert` as
    /// in libpq) and brings its schema up to date.
    pub async fn connect(url: &str) -> Result<PgLedger, LedgerError> {
        PgLedger::connect_with(url, DEFAULT_MAX_CONNECTIONS).await
    }

    /// [`PgLedger::connect`] with a pool of at most `max_connections`.
    pub async fn connect_with(url: &str, max_connections: u32) -> Result<PgLedger, LedgerError> {
        let options = PgConnectOptions::from_str(url).map_err(|e| LedgerError::Storage {
            context: "reading the database URL".into(),
            source: Box::new(e),
        })?;
        let label = format!(
            "PostgreSQL at {}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("postgres")
        );
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(true)
            .connect_with(options)
            .await
            .map_err(storage(&format!("connecting to {label}")))?;
        PgLedger::open(pool, label).await
    }

    /// Uses an existing pool; runs the migrations.
    pub async fn from_pool(pool: PgPool) -> Result<PgLedger, LedgerError> {
        let o = pool.connect_options();
        let label = format!(
            "PostgreSQL at {}:{}/{}",
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or("postgres")
        );
        PgLedger::open(pool, label).await
    }

    async fn open(pool: PgPool, label: String) -> Result<PgLedger, LedgerError> {
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| LedgerError::Storage {
                context: format!("{label}: running migrations"),
                source: Box::new(e),
            })?;
        Ok(PgLedger { pool, label })
    }

    /// The connection pool, for listeners and health checks.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Where the ledger is, for messages: `PostgreSQL at host:port/db` (never credentials).
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Closes every connection, waiting for them to finish.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Checks that the database answers.
    pub async fn ping(&self) -> Result<(), LedgerError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(storage(&self.context("checking the connection")))?;
        Ok(())
    }

    /// Applies every deadline that `now` has passed (timeouts, expiry warnings, expiry) to at
    /// most `limit` grants, committing each tick with its audit records and events. Grants that
    /// another writer holds are skipped (it is deciding on them, and its commit moves their
    /// deadline). Returns the committed transitions.
    pub async fn tick_due(
        &self,
        now: SystemTime,
        limit: u32,
    ) -> Result<Vec<Transition>, LedgerError> {
        let ctx = self.context("applying the grants' deadlines");
        let at = Timestamp::from(now);
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(
            "SELECT id, body FROM grants
             WHERE next_deadline IS NOT NULL AND next_deadline <= $1
             ORDER BY next_deadline
             LIMIT $2
             FOR UPDATE SKIP LOCKED",
        )
        .bind(at.unix_millis())
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(storage(&ctx))?;
        let mut done = Vec::new();
        for row in &rows {
            let g = self.grant_from_row(row)?;
            let t = g.tick(now);
            if t.is_empty() {
                // The stored deadline is stale (written by an older version, or edited); fix it
                // so the sweep does not pick this grant again and again.
                sqlx::query("UPDATE grants SET next_deadline = $1 WHERE id = $2")
                    .bind(g.next_deadline().map(Timestamp::unix_millis))
                    .bind(g.id().as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(storage(&ctx))?;
                continue;
            }
            self.write_transition(&mut tx, &t).await?;
            done.push(t);
        }
        tx.commit().await.map_err(storage(&ctx))?;
        Ok(done)
    }

    /// The earliest deadline of any live grant, if there is one.
    pub async fn next_deadline(&self) -> Result<Option<Timestamp>, LedgerError> {
        let row = sqlx::query("SELECT min(next_deadline) FROM grants")
            .fetch_one(&self.pool)
            .await
            .map_err(storage(&self.context("reading the next deadline")))?;
        Ok(row
            .get::<Option<i64>, _>(0)
            .map(Timestamp::from_unix_millis))
    }

    /// Events with an id above `after`, oldest first, at most `limit`.
    pub async fn events_after(
        &self,
        after: i64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, LedgerError> {
        let rows = sqlx::query(
            "SELECT id, subjects, awaiting_decision, payload::text AS payload FROM events
             WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(storage(&self.context("reading events")))?;
        rows.iter().map(|r| self.event_from_row(r)).collect()
    }

    /// Events with an id above `after` that concern `who` (as requester or actor) or belong to
    /// one of `roles`, oldest first, at most `limit`.
    pub async fn events_for(
        &self,
        after: i64,
        who: &Subject,
        roles: &[RoleName],
        limit: u32,
    ) -> Result<Vec<StoredEvent>, LedgerError> {
        let roles: Vec<&str> = roles.iter().map(RoleName::as_str).collect();
        let rows = sqlx::query(
            "SELECT id, subjects, awaiting_decision, payload::text AS payload FROM events
             WHERE id > $1 AND ($2 = ANY(subjects) OR role = ANY($3))
             ORDER BY id LIMIT $4",
        )
        .bind(after)
        .bind(who.as_str())
        .bind(&roles)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(storage(&self.context("reading events")))?;
        rows.iter().map(|r| self.event_from_row(r)).collect()
    }

    /// The highest event id so far (0 if there is none).
    pub async fn last_event_id(&self) -> Result<i64, LedgerError> {
        let row = sqlx::query("SELECT coalesce(max(id), 0) FROM events")
            .fetch_one(&self.pool)
            .await
            .map_err(storage(&self.context("reading the last event id")))?;
        Ok(row.get(0))
    }

    /// Appends records a desktop reported, exactly once: `entries[i]` is the record with
    /// `source_seq = seqs[i]` in the desktop ledger `source` (`seqs` strictly increasing).
    /// Under the write lock, a record is skipped as a duplicate if that pair is already in the
    /// log, or if its `source_seq` is not above the last one taken from `source` for the same
    /// actor (a person's records from one source arrive in order; another person's records
    /// from the same desktop may come later, when they sign in again). The rest are appended in
    /// one transaction, all or none.
    pub async fn append_reported(
        &self,
        source: &str,
        seqs: &[u64],
        entries: &[AuditEntry],
    ) -> Result<ReportedAppend, LedgerError> {
        assert_eq!(seqs.len(), entries.len(), "one source_seq per record");
        if entries.is_empty() {
            return Ok(ReportedAppend::default());
        }
        let ctx = self.context(format!("appending records reported by source {source}"));
        let mut tx = self.begin_write().await?;
        let all: Vec<i64> = seqs.iter().map(|s| *s as i64).collect();
        let taken: std::collections::HashSet<u64> =
            sqlx::query("SELECT source_seq FROM audit WHERE source = $1 AND source_seq = ANY($2)")
                .bind(source)
                .bind(&all)
                .fetch_all(&mut *tx)
                .await
                .map_err(storage(&ctx))?
                .iter()
                .map(|r| r.get::<i64, _>(0) as u64)
                .collect();
        let mut last: std::collections::HashMap<String, u64> = std::collections::HashMap::new();
        let mut keep_entries = Vec::with_capacity(entries.len());
        let mut keep_seqs = Vec::with_capacity(entries.len());
        for (seq, entry) in seqs.iter().zip(entries) {
            let actor = entry.actor.as_stored().into_owned();
            let last_taken = match last.get(&actor) {
                Some(n) => *n,
                None => {
                    let n = sqlx::query(
                        "SELECT coalesce(max(source_seq), 0) FROM audit
                         WHERE source = $1 AND actor = $2",
                    )
                    .bind(source)
                    .bind(&actor)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(storage(&ctx))?
                    .get::<i64, _>(0) as u64;
                    last.insert(actor.clone(), n);
                    n
                }
            };
            if *seq <= last_taken || taken.contains(seq) {
                continue;
            }
            last.insert(actor, *seq);
            keep_entries.push(entry.clone());
            keep_seqs.push(*seq);
        }
        let appended = self
            .append_in(&mut tx, &keep_entries, Some((source, &keep_seqs)))
            .await?;
        tx.commit().await.map_err(storage(&ctx))?;
        Ok(ReportedAppend {
            duplicates: entries.len() - appended.len(),
            appended,
        })
    }

    fn context(&self, what: impl std::fmt::Display) -> String {
        format!("{}: {what}", self.label)
    }

    /// Starts a write: a transaction holding the lock on the chain's head.
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, LedgerError> {
        let ctx = self.context("starting a write");
        let mut tx = self.pool.begin().await.map_err(storage(&ctx))?;
        sqlx::query("SELECT seq FROM chain_head WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *tx)
            .await
            .map_err(storage(&ctx))?;
        Ok(tx)
    }

    /// Stores a transition's grant, audit records and events in `tx` (which holds the lock).
    async fn write_transition(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        change: &Transition,
    ) -> Result<Vec<AuditRecord>, LedgerError> {
        let g = change.grant();
        let ctx = self.context(format!("writing grant {}", g.id()));
        let body = serde_json::to_string(g).expect("grants serialize");
        match change.replaces_version() {
            None => {
                let inserted = sqlx::query(
                    "INSERT INTO grants (id, role, requester, state, awaiting_decision, created_at,
                                         expires_at, next_deadline, version, body, account)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
                .execute(&mut **tx)
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
                    "UPDATE grants SET state = $1, awaiting_decision = $2, expires_at = $3,
                                       next_deadline = $4, version = $5, body = $6
                     WHERE id = $7 AND version = $8",
                )
                .bind(g.state().as_str())
                .bind(g.awaits_decision())
                .bind(g.expires_at().map(Timestamp::unix_millis))
                .bind(g.next_deadline().map(Timestamp::unix_millis))
                .bind(g.version() as i64)
                .bind(&body)
                .bind(g.id().as_str())
                .bind(version as i64)
                .execute(&mut **tx)
                .await
                .map_err(storage(&ctx))?;
                if updated.rows_affected() != 1 {
                    return Err(LedgerError::Conflict {
                        grant: g.id().clone(),
                    });
                }
            }
        }
        let records = self.append_in(tx, &change.audit_entries(), None).await?;
        self.insert_events(tx, change).await?;
        // An active grant that ends leaves sessions only Snowflake can end: list it for the
        // reaper in this same transaction.
        if g.approved_at().is_some() {
            for event in change.events() {
                if matches!(
                    event.kind,
                    GrantEventKind::Expired | GrantEventKind::Revoked { .. }
                ) {
                    reaps::insert(self, tx, g, event.at).await?;
                }
            }
        }
        Ok(records)
    }

    async fn insert_events(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        change: &Transition,
    ) -> Result<(), LedgerError> {
        let ctx = self.context("recording events");
        let awaiting = change.grant().awaits_decision();
        let mut last = None;
        for event in change.events() {
            let mut subjects = vec![event.requester.as_str().to_string()];
            if let Cause::Person(actor) = &event.cause {
                if actor.subject != event.requester {
                    subjects.push(actor.subject.as_str().to_string());
                }
            }
            let payload = serde_json::to_string(event).expect("events serialize");
            let row = sqlx::query(
                "INSERT INTO events (kind, grant_id, role, subjects, awaiting_decision, payload)
                 VALUES ($1, $2, $3, $4, $5, $6::jsonb) RETURNING id",
            )
            .bind(event.kind.name())
            .bind(event.grant.as_str())
            .bind(event.role.as_str())
            .bind(&subjects)
            .bind(awaiting)
            .bind(&payload)
            .fetch_one(&mut **tx)
            .await
            .map_err(storage(&ctx))?;
            last = Some(row.get::<i64, _>(0));
        }
        if let Some(id) = last {
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(EVENTS_CHANNEL)
                .bind(id.to_string())
                .execute(&mut **tx)
                .await
                .map_err(storage(&ctx))?;
        }
        Ok(())
    }

    /// Appends `entries` after the head read from the (locked) `chain_head` row, and moves it.
    /// `reported` gives each entry's desktop identity (source, source_seq), when it has one.
    async fn append_in(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        entries: &[AuditEntry],
        reported: Option<(&str, &[u64])>,
    ) -> Result<Vec<AuditRecord>, LedgerError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let ctx = self.context("appending to the audit log");
        let head = sqlx::query("SELECT seq, hash FROM chain_head WHERE id = 1")
            .fetch_one(&mut **tx)
            .await
            .map_err(storage(&ctx))?;
        let mut seq = head.get::<i64, _>(0) as u64;
        let hash: String = head.get(1);
        let mut prev = ChainHash::from_str(&hash).map_err(|message| LedgerError::Corrupt {
            context: self.context("the audit chain's head"),
            message,
        })?;
        let mut out = Vec::with_capacity(entries.len());
        for (i, entry) in entries.iter().enumerate() {
            seq += 1;
            let r = AuditRecord::seal(entry, seq, &prev);
            let (source, source_seq) = match reported {
                Some((source, seqs)) => (Some(source), Some(seqs[i] as i64)),
                None => (None, None),
            };
            sqlx::query(
                "INSERT INTO audit (seq, at, actor, kind, grant_id, role, details, prev_hash, hash,
                                    source, source_seq)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
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
            .bind(source)
            .bind(source_seq)
            .execute(&mut **tx)
            .await
            .map_err(storage(&ctx))?;
            prev = r.hash.parse().expect("a sealed record's hash is valid");
            out.push(r);
        }
        sqlx::query("UPDATE chain_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(seq as i64)
            .bind(prev.to_string())
            .execute(&mut **tx)
            .await
            .map_err(storage(&ctx))?;
        Ok(out)
    }

    fn grant_from_row(&self, row: &PgRow) -> Result<Grant, LedgerError> {
        let id: String = row.get("id");
        let body: String = row.get("body");
        serde_json::from_str(&body).map_err(|e| LedgerError::Corrupt {
            context: self.context(format!("grant {id}")),
            message: e.to_string(),
        })
    }

    fn event_from_row(&self, row: &PgRow) -> Result<StoredEvent, LedgerError> {
        let id: i64 = row.get("id");
        let payload: String = row.get("payload");
        let event = serde_json::from_str(&payload).map_err(|e| LedgerError::Corrupt {
            context: self.context(format!("event {id}")),
            message: e.to_string(),
        })?;
        Ok(StoredEvent {
            id,
            subjects: row.get("subjects"),
            awaiting_decision: row.get("awaiting_decision"),
            event,
        })
    }
}

#[async_trait]
impl Ledger for PgLedger {
    async fn commit(&self, change: &Transition) -> Result<Vec<AuditRecord>, LedgerError> {
        if change.is_empty() {
            return Ok(Vec::new());
        }
        let ctx = self.context(format!("writing grant {}", change.grant().id()));
        let mut tx = self.begin_write().await?;
        let records = self.write_transition(&mut tx, change).await?;
        tx.commit().await.map_err(storage(&ctx))?;
        Ok(records)
    }

    async fn append(&self, entries: &[AuditEntry]) -> Result<Vec<AuditRecord>, LedgerError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let records = self.append_in(&mut tx, entries, None).await?;
        tx.commit()
            .await
            .map_err(storage(&self.context("appending to the audit log")))?;
        Ok(records)
    }

    async fn grant(&self, id: &GrantId) -> Result<Option<Grant>, LedgerError> {
        let row = sqlx::query("SELECT id, body FROM grants WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(storage(&self.context(format!("reading grant {id}"))))?;
        row.map(|r| self.grant_from_row(&r)).transpose()
    }

    async fn grants(&self, filter: &GrantFilter) -> Result<Vec<Grant>, LedgerError> {
        let mut q: QueryBuilder<Postgres> =
            QueryBuilder::new("SELECT id, body FROM grants WHERE TRUE");
        if let Some(r) = &filter.requester {
            q.push(" AND requester = ")
                .push_bind(r.as_str().to_string());
        }
        if !filter.states.is_empty() {
            let states: Vec<String> = filter
                .states
                .iter()
                .map(|s| s.as_str().to_string())
                .collect();
            q.push(" AND state = ANY(").push_bind(states).push(")");
        }
        if let Some(roles) = &filter.roles {
            if roles.is_empty() {
                return Ok(Vec::new());
            }
            let roles: Vec<String> = roles.iter().map(|r| r.as_str().to_string()).collect();
            q.push(" AND role = ANY(").push_bind(roles).push(")");
        }
        if filter.awaiting_decision {
            q.push(" AND awaiting_decision");
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
        let rows = crate::sql::audit_query::<Postgres>("TRUE", query)
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(storage(&self.context("reading the audit log")))?;
        Ok(rows.iter().map(crate::sql::audit_record).collect())
    }

    async fn chain_head(&self) -> Result<Option<ChainHead>, LedgerError> {
        let row = sqlx::query(crate::sql::CHAIN_HEAD_QUERY)
            .fetch_optional(&self.pool)
            .await
            .map_err(storage(&self.context("reading the audit log's head")))?;
        row.map(|row| crate::sql::chain_head(&row, |what| self.context(what)))
            .transpose()
    }
}
