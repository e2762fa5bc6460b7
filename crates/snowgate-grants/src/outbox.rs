//! The outbox: audit records waiting for the team server, kept in the local SQLite ledger.
//!
//! In team mode the desktop's records (sign-in and sign-out, gateway sessions and statements)
//! belong in the server's log. They wait here, in the order they were written, until the
//! server has taken them: [`Outbox::push`] returns once a record is committed to the ledger's
//! write-ahead log (it survives `kill -9`, like the ledger's own appends). Pushes are
//! serialized, so ids follow the order of the calls, and ids are never reused.
//!
//! Delivery is exactly-once because every record has a stable identity: the ledger's
//! [`Outbox::source`] (random, drawn once by a migration) and the record's id. The server keeps
//! that pair with what it appends and acknowledges a record it already took without appending
//! it again, so a batch sent twice (the answer lost, the broker killed before it removed the
//! batch) still lands once.
//!
//! Nothing leaves the outbox but what the server took ([`Outbox::remove`]). Records of a person
//! other than the one signed in wait until that person signs in again ([`Outbox::peek_for`]
//! passes them over); records the server refused for good stay, marked with the server's
//! reason ([`Outbox::refuse`]), and are not offered again.

use std::str::FromStr;

use sqlx::sqlite::SqlitePool;
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::audit::{AuditActor, AuditEntry, AuditKind};
use crate::ledger::LedgerError;
use crate::model::{GrantId, RoleName, Subject};
use crate::sql::storage;
use crate::timestamp::Timestamp;

/// Records waiting for the team server, in the local ledger. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    pool: SqlitePool,
    context: String,
}

/// A record in the outbox, with its place in line (its `source_seq` on the wire).
#[derive(Debug, Clone, PartialEq)]
pub struct Waiting {
    pub id: u64,
    pub entry: AuditEntry,
}

/// What the outbox holds, as `snowgate status` tells it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Records not yet taken by the server and not refused, whoever's they are.
    pub waiting: u64,
    /// Of those, the records of people other than the one signed in: they wait until that
    /// person signs in again on this desktop.
    pub others: u64,
    /// How many people those records belong to.
    pub other_people: u64,
    /// Records the server refused for good, kept and no longer sent.
    pub refused: u64,
    /// The server's reason for the latest refusal.
    pub last_refusal: Option<String>,
}

/// The stored form of a person's actor, `user:SUBJECT`.
fn person(subject: &Subject) -> String {
    AuditActor::User(subject.clone()).as_stored().into_owned()
}

/// Records that may go with `?`'s batches: that person's, and those of no person (Snowgate's).
const SENDABLE_BY: &str = "refused_at IS NULL AND (actor = ? OR substr(actor, 1, 5) <> 'user:')";

impl Outbox {
    pub(crate) fn new(pool: SqlitePool, context: String) -> Outbox {
        Outbox { pool, context }
    }

    fn ctx(&self, what: &str) -> String {
        format!("{}: the outbox for the team server: {what}", self.context)
    }

    /// This ledger's source id: random, drawn once when the outbox was created, and the same
    /// for the life of the ledger file. With a record's id it names the record for the server.
    pub async fn source(&self) -> Result<String, LedgerError> {
        let row = sqlx::query("SELECT source FROM outbox_source WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(storage(&self.ctx("reading the source id")))?;
        row.map(|r| r.get::<String, _>(0))
            .ok_or_else(|| LedgerError::Corrupt {
                context: self.ctx("the source id"),
                message: "the row is missing".into(),
            })
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

    /// The oldest `limit` records not refused, whoever's they are, in order.
    pub async fn peek(&self, limit: u32) -> Result<Vec<Waiting>, LedgerError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, kind, grant_id, role, details FROM outbox
             WHERE refused_at IS NULL ORDER BY id LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(storage(&self.ctx("reading records")))?;
        rows.iter().map(|row| self.waiting_from_row(row)).collect()
    }

    /// The oldest `limit` records that may be sent as `subject` (the person signed in now), in
    /// order: theirs, and those of no person. Another person's records are passed over; they
    /// stay for when that person signs in.
    pub async fn peek_for(
        &self,
        subject: &Subject,
        limit: u32,
    ) -> Result<Vec<Waiting>, LedgerError> {
        let rows = sqlx::query(&format!(
            "SELECT id, at, actor, kind, grant_id, role, details FROM outbox
             WHERE {SENDABLE_BY} ORDER BY id LIMIT ?"
        ))
        .bind(person(subject))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(storage(&self.ctx("reading records")))?;
        rows.iter().map(|row| self.waiting_from_row(row)).collect()
    }

    fn waiting_from_row(&self, row: &sqlx::sqlite::SqliteRow) -> Result<Waiting, LedgerError> {
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
                details: serde_json::from_str(&details).map_err(|e| corrupt(e.to_string()))?,
            },
        })
    }

    /// Removes the records with these ids: the server took them. Nothing else leaves.
    pub async fn remove(&self, ids: &[u64]) -> Result<(), LedgerError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("DELETE FROM outbox WHERE id IN (");
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(*id as i64);
        }
        q.push(")");
        q.build()
            .execute(&self.pool)
            .await
            .map_err(storage(&self.ctx("removing records the server took")))?;
        Ok(())
    }

    /// Marks the records with these ids refused for good, with the server's `reason`: they
    /// stay in the outbox, are counted in the status, and are not sent again.
    pub async fn refuse(
        &self,
        ids: &[u64],
        reason: &str,
        at: Timestamp,
    ) -> Result<(), LedgerError> {
        if ids.is_empty() {
            return Ok(());
        }
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new("UPDATE outbox SET refused_at = ");
        q.push_bind(at.unix_millis())
            .push(", refused_reason = ")
            .push_bind(reason.to_string())
            .push(" WHERE id IN (");
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(*id as i64);
        }
        q.push(")");
        q.build()
            .execute(&self.pool)
            .await
            .map_err(storage(&self.ctx("marking refused records")))?;
        Ok(())
    }

    /// How many records are not yet taken and not refused.
    pub async fn waiting(&self) -> Result<u64, LedgerError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) FROM outbox WHERE refused_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(storage(&self.ctx("counting records")))?
            .get(0);
        Ok(n as u64)
    }

    /// What the outbox holds, seen from `subject` (the person signed in now, if anyone).
    pub async fn counts(&self, subject: Option<&Subject>) -> Result<OutboxCounts, LedgerError> {
        let ctx = self.ctx("counting records");
        let me = subject.map(person).unwrap_or_default();
        let row = sqlx::query(
            "SELECT
                 COUNT(*) FILTER (WHERE refused_at IS NULL),
                 COUNT(*) FILTER (WHERE refused_at IS NULL AND ?1 <> ''
                                  AND substr(actor, 1, 5) = 'user:' AND actor <> ?1),
                 COUNT(DISTINCT actor) FILTER (WHERE refused_at IS NULL AND ?1 <> ''
                                  AND substr(actor, 1, 5) = 'user:' AND actor <> ?1),
                 COUNT(*) FILTER (WHERE refused_at IS NOT NULL)
             FROM outbox",
        )
        .bind(&me)
        .fetch_one(&self.pool)
        .await
        .map_err(storage(&ctx))?;
        let last_refusal = sqlx::query(
            "SELECT refused_reason FROM outbox WHERE refused_at IS NOT NULL
             ORDER BY refused_at DESC, id DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(storage(&ctx))?
        .and_then(|r| r.get::<Option<String>, _>(0));
        Ok(OutboxCounts {
            waiting: row.get::<i64, _>(0) as u64,
            others: row.get::<i64, _>(1) as u64,
            other_people: row.get::<i64, _>(2) as u64,
            refused: row.get::<i64, _>(3) as u64,
            last_refusal,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use serde_json::json;

    use super::*;
    use crate::model::Actor;
    use crate::sqlite::SqliteLedger;

    fn record(who: Option<&str>, n: u32) -> AuditEntry {
        let subject = Subject::new(who.unwrap_or("nobody")).unwrap();
        let mut e = AuditEntry::sign_in(SystemTime::now(), &Actor::new(subject, None, vec![]));
        if who.is_none() {
            e.actor = AuditActor::System;
        }
        e.details = json!({ "n": n });
        e
    }

    fn ns(w: &[Waiting]) -> Vec<u64> {
        w.iter()
            .map(|w| w.entry.details["n"].as_u64().unwrap())
            .collect()
    }

    async fn outbox() -> (tempfile::TempDir, Outbox) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = SqliteLedger::open(&dir.path().join("ledger.sqlite3"))
            .await
            .unwrap();
        (dir, ledger.outbox())
    }

    #[tokio::test]
    async fn the_source_id_is_drawn_once_per_ledger_and_kept_across_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.sqlite3");
        let first = SqliteLedger::open(&path).await.unwrap();
        let source = first.outbox().source().await.unwrap();
        assert_eq!(source.len(), 32, "{source}");
        first.close().await;
        let again = SqliteLedger::open(&path).await.unwrap();
        assert_eq!(again.outbox().source().await.unwrap(), source);
        let (_other_dir, other) = outbox().await;
        assert_ne!(other.source().await.unwrap(), source);
    }

    #[tokio::test]
    async fn another_persons_records_are_passed_over_and_wait_for_that_person() {
        let (_dir, o) = outbox().await;
        let alice = Subject::new("alice").unwrap();
        let bob = Subject::new("bob").unwrap();
        o.push(&[
            record(Some("alice"), 1),
            record(None, 2),
            record(Some("bob"), 3),
            record(Some("alice"), 4),
        ])
        .await
        .unwrap();
        let for_bob = o.peek_for(&bob, 10).await.unwrap();
        assert_eq!(ns(&for_bob), [2, 3]);
        let counts = o.counts(Some(&bob)).await.unwrap();
        assert_eq!(
            (counts.waiting, counts.others, counts.other_people),
            (4, 2, 1)
        );
        o.remove(&for_bob.iter().map(|w| w.id).collect::<Vec<_>>())
            .await
            .unwrap();
        // Alice's records are still there, in order, when she signs in again.
        let for_alice = o.peek_for(&alice, 10).await.unwrap();
        assert_eq!(ns(&for_alice), [1, 4]);
        assert!(for_alice[0].id < for_alice[1].id);
        assert_eq!(o.peek_for(&bob, 10).await.unwrap(), []);
    }

    #[tokio::test]
    async fn refused_records_stay_with_the_reason_and_are_not_offered_again() {
        let (_dir, o) = outbox().await;
        let alice = Subject::new("alice").unwrap();
        o.push(&[record(Some("alice"), 1), record(Some("alice"), 2)])
            .await
            .unwrap();
        let first = o.peek_for(&alice, 1).await.unwrap();
        o.refuse(
            &[first[0].id],
            "records[0]: no such grant",
            Timestamp::from(SystemTime::now()),
        )
        .await
        .unwrap();
        assert_eq!(ns(&o.peek_for(&alice, 10).await.unwrap()), [2]);
        assert_eq!(ns(&o.peek(10).await.unwrap()), [2]);
        let counts = o.counts(Some(&alice)).await.unwrap();
        assert_eq!((counts.waiting, counts.refused), (1, 1));
        assert_eq!(
            counts.last_refusal.as_deref(),
            Some("records[0]: no such grant")
        );
        assert_eq!(o.waiting().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn ids_keep_growing_after_records_leave() {
        let (_dir, o) = outbox().await;
        o.push(&[record(None, 1)]).await.unwrap();
        let first = o.peek(1).await.unwrap()[0].id;
        o.remove(&[first]).await.unwrap();
        o.push(&[record(None, 2)]).await.unwrap();
        assert!(o.peek(1).await.unwrap()[0].id > first);
    }
}
