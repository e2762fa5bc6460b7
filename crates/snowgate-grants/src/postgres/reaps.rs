//! The session reaper's work list in the team ledger (`reaps`, migration 0004).
//!
//! A row is inserted by the same transaction that ends an active grant ([`super::PgLedger`]'s
//! `write_transition`, for `expired` and `revoked`), so an ended grant can't be missed. A
//! replica claims one due row with `FOR UPDATE SKIP LOCKED` and keeps the row locked in the
//! [`ReapClaim`]'s transaction while it works: another replica skips it, and if this one dies
//! the lock goes with its connection and the row is due again. [`ReapClaim::finish`] appends
//! the audit records of what was done and marks the row done in that same transaction (taking
//! the chain's write lock only then), so "reaped" and its records are committed together.

use std::time::SystemTime;

use sqlx::{Postgres, Row, Transaction};

use super::PgLedger;
use crate::audit::{AuditEntry, AuditRecord};
use crate::ledger::LedgerError;
use crate::model::Grant;
use crate::sql::storage;
use crate::timestamp::Timestamp;

/// An ended grant claimed for reaping. Dropping it without [`ReapClaim::finish`] or
/// [`ReapClaim::postpone`] rolls back: the row is due again at once.
pub struct ReapClaim {
    tx: Transaction<'static, Postgres>,
    ledger: PgLedger,
    /// The grant, as it ended.
    pub grant: Grant,
    /// When it ended (the reap row's `ended_at`).
    pub ended_at: Timestamp,
    /// How many attempts failed before this one.
    pub attempts: u32,
}

impl std::fmt::Debug for ReapClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReapClaim")
            .field("grant", self.grant.id())
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// How the work list stands, for health and status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReapCounts {
    /// Rows not done yet.
    pub pending: u64,
    /// Of those, rows whose last attempt failed.
    pub failing: u64,
}

impl PgLedger {
    /// Claims the oldest reap that is due at `now` and that no other replica holds, or `None`.
    pub async fn claim_reap(&self, now: SystemTime) -> Result<Option<ReapClaim>, LedgerError> {
        let ctx = self.context("claiming a grant to reap");
        let mut tx = self.pool.begin().await.map_err(storage(&ctx))?;
        let row = sqlx::query(
            "SELECT r.grant_id, r.ended_at, r.attempts, g.id, g.body
             FROM reaps r JOIN grants g ON g.id = r.grant_id
             WHERE r.done_at IS NULL AND r.next_attempt <= $1
             ORDER BY r.next_attempt
             LIMIT 1
             FOR UPDATE OF r SKIP LOCKED",
        )
        .bind(Timestamp::from(now).unix_millis())
        .fetch_optional(&mut *tx)
        .await
        .map_err(storage(&ctx))?;
        let Some(row) = row else {
            tx.rollback().await.map_err(storage(&ctx))?;
            return Ok(None);
        };
        let grant = self.grant_from_row(&row)?;
        Ok(Some(ReapClaim {
            tx,
            ledger: self.clone(),
            grant,
            ended_at: Timestamp::from_unix_millis(row.get::<i64, _>("ended_at")),
            attempts: row.get::<i32, _>("attempts").max(0) as u32,
        }))
    }

    /// The earliest `next_attempt` of a reap not done, if any.
    pub async fn next_reap(&self) -> Result<Option<Timestamp>, LedgerError> {
        let row = sqlx::query("SELECT min(next_attempt) FROM reaps WHERE done_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(storage(&self.context("reading the next reap")))?;
        Ok(row
            .get::<Option<i64>, _>(0)
            .map(Timestamp::from_unix_millis))
    }

    /// How many reaps wait, and how many of them failed last time.
    pub async fn reap_counts(&self) -> Result<ReapCounts, LedgerError> {
        let row = sqlx::query(
            "SELECT count(*), count(*) FILTER (WHERE attempts > 0)
             FROM reaps WHERE done_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(storage(&self.context("counting the reaps")))?;
        Ok(ReapCounts {
            pending: row.get::<i64, _>(0).max(0) as u64,
            failing: row.get::<i64, _>(1).max(0) as u64,
        })
    }
}

impl ReapClaim {
    /// Appends `entries` to the audit log and marks the reap done at `now`, in one
    /// transaction. Returns the records appended.
    pub async fn finish(
        mut self,
        entries: &[AuditEntry],
        now: SystemTime,
    ) -> Result<Vec<AuditRecord>, LedgerError> {
        let ctx = self
            .ledger
            .context(format!("finishing the reap of grant {}", self.grant.id()));
        sqlx::query("SELECT seq FROM chain_head WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *self.tx)
            .await
            .map_err(storage(&ctx))?;
        let records = self.ledger.append_in(&mut self.tx, entries, None).await?;
        sqlx::query(
            "UPDATE reaps SET done_at = $1, attempts = attempts + 1, last_error = NULL
             WHERE grant_id = $2",
        )
        .bind(Timestamp::from(now).unix_millis())
        .bind(self.grant.id().as_str())
        .execute(&mut *self.tx)
        .await
        .map_err(storage(&ctx))?;
        self.tx.commit().await.map_err(storage(&ctx))?;
        Ok(records)
    }

    /// Records a failed attempt (`error`, for people), appends `entries` (what was done before
    /// the failure), and makes the reap due again at `until`, in one transaction.
    pub async fn postpone(
        mut self,
        entries: &[AuditEntry],
        error: &str,
        until: SystemTime,
    ) -> Result<(), LedgerError> {
        let ctx = self
            .ledger
            .context(format!("postponing the reap of grant {}", self.grant.id()));
        if !entries.is_empty() {
            sqlx::query("SELECT seq FROM chain_head WHERE id = 1 FOR UPDATE")
                .fetch_one(&mut *self.tx)
                .await
                .map_err(storage(&ctx))?;
            self.ledger.append_in(&mut self.tx, entries, None).await?;
        }
        sqlx::query(
            "UPDATE reaps SET attempts = attempts + 1, next_attempt = $1, last_error = $2
             WHERE grant_id = $3",
        )
        .bind(Timestamp::from(until).unix_millis())
        .bind(error)
        .bind(self.grant.id().as_str())
        .execute(&mut *self.tx)
        .await
        .map_err(storage(&ctx))?;
        self.tx.commit().await.map_err(storage(&ctx))?;
        Ok(())
    }
}

/// Inserts the reap row for `grant`, ended at `at`, in `tx` (which ends it).
pub(super) async fn insert(
    ledger: &PgLedger,
    tx: &mut Transaction<'static, Postgres>,
    grant: &Grant,
    at: Timestamp,
) -> Result<(), LedgerError> {
    sqlx::query(
        "INSERT INTO reaps (grant_id, ended_at, next_attempt) VALUES ($1, $2, $2)
         ON CONFLICT (grant_id) DO NOTHING",
    )
    .bind(grant.id().as_str())
    .bind(at.unix_millis())
    .execute(&mut **tx)
    .await
    .map_err(storage(
        &ledger.context(format!("listing grant {} for the reaper", grant.id())),
    ))?;
    Ok(())
}
