//! The outbox: audit records waiting for the team server, kept in the local SQLite ledger.
//!
//! In team mode the desktop's records (sign-in and sign-out, gateway sessions and statements)
//! belong in the server's log. They wait here, in the order they were written, until the
//! server has taken them: [`Outbox::push`] returns once a record is committed to the ledger's
//! write-ahead log (it survives `kill -9`, like the ledger's own appends), and a record leaves
//! only through [`Outbox::remove_through`] after the server acknowledged it. Pushes are
//! serialized, so ids follow the order of the calls.

use std::str::FromStr;

use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::audit::{AuditActor, AuditEntry, AuditKind};
use crate::ledger::LedgerError;
use crate::model::{GrantId, RoleName};
use crate::sql::storage;
use crate::timestamp::Timestamp;

/// Records waiting for the team server, in the local ledger. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    pool: SqlitePool,
    context: String,
}

/// A record in the outbox, with its place in line.
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub id: u64,
    pub entry: AuditEntry,
}

impl Outbox {
    pub(crate) fn new(pool: SqlitePool, context: String) -> Outbox {
        Outbox { pool, context }
    }

    fn ctx(&self, what: &str) -> String {
        format!("{}: the outbox for the team server: {what}", self.context)
    }

    /// Adds records at the back, in one statement (so all or none). `Ok` once committed.
    pub async fn push(&self, entries: &[AuditEntry]) -> Result<(), LedgerError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut q: QueryBuilder<Sqlite> =
            QueryBuilder::new("INSERT INTO outbox (at, actor, kind, grant_id, role, details) ");
        q.push_values(entries, |mut row, e| {
            row.push_bind(e.at.unix_millis())
                .push_bind(e.actor.as_stored().into_owned())
                .push_bind(e.kind.as_str().to_string())
                .push_bind(e.grant_id.as_ref().map(|g| g.as_str().to_string()))
                .push_bind(e.role.as_ref().map(|r| r.as_str().to_string()))
                .push_bind(e.details.to_string());
        });
        q.build()
            .execute(&self.pool)
            .await
            .map_err(storage(&self.ctx("adding records")))?;
        Ok(())
    }

    /// The oldest `limit` records, in order.
    pub async fn peek(&self, limit: u32) -> Result<Vec<Waiting>, LedgerError> {
        let ctx = self.ctx("reading records");
        let rows = sqlx::query(
            "SELECT id, at, actor, kind, grant_id, role, details FROM outbox ORDER BY id LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(storage(&ctx))?;
        rows.iter()
            .map(|row| {
                let id: i64 = row.get("id");
                let corrupt = |message: String| LedgerError::Corrupt {
                    context: self.ctx(&format!("record {id}")),
                    message,
                };
                let actor: String = row.get("actor");
                let details: String = row.get("details");
                Ok(Waiting {
                    id: id as u64,
                    entry: AuditEntry {
                        at: Timestamp::from_unix_millis(row.get("at")),
                        actor: AuditActor::from_stored(&actor)
                            .ok_or_else(|| corrupt(format!("actor {actor:?}")))?,
                        kind: AuditKind::new(row.get::<String, _>("kind")),
                        grant_id: row
                            .get::<Option<String>, _>("grant_id")
                            .map(|g| GrantId::from_str(&g).map_err(|e| corrupt(e.to_string())))
                            .transpose()?,
                        role: row
                            .get::<Option<String>, _>("role")
                            .map(|r| RoleName::new(r).map_err(|e| corrupt(e.to_string())))
                            .transpose()?,
                        details: serde_json::from_str(&details)
                            .map_err(|e| corrupt(e.to_string()))?,
                    },
                })
            })
            .collect()
    }

    /// Removes every record up to and including `id` (the server took them).
    pub async fn remove_through(&self, id: u64) -> Result<(), LedgerError> {
        sqlx::query("DELETE FROM outbox WHERE id <= ?")
            .bind(id as i64)
            .execute(&self.pool)
            .await
            .map_err(storage(&self.ctx("removing sent records")))?;
        Ok(())
    }

    /// Removes the records with these ids (refused for good, or another person's).
    pub async fn remove(&self, ids: &[u64]) -> Result<(), LedgerError> {
        for id in ids {
            sqlx::query("DELETE FROM outbox WHERE id = ?")
                .bind(*id as i64)
                .execute(&self.pool)
                .await
                .map_err(storage(&self.ctx("removing dropped records")))?;
        }
        Ok(())
    }

    /// How many records wait.
    pub async fn waiting(&self) -> Result<u64, LedgerError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM outbox")
            .fetch_one(&self.pool)
            .await
            .map_err(storage(&self.ctx("counting records")))?
            .get(0);
        Ok(n as u64)
    }
}
