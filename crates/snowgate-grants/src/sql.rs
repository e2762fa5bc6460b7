//! What the SQLite and PostgreSQL ledgers share: the audit log's query and row shape, the
//! chain head, and how a database error becomes a [`LedgerError`]. Both keep the audit log in
//! one `audit` table with the same columns, so reading it is written once, generic over the
//! sqlx database.

use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};

use crate::audit::{AuditRecord, ChainHead};
use crate::ledger::{AuditQuery, LedgerError};
use crate::timestamp::Timestamp;

/// Wraps a database error with what the ledger was doing.
pub(crate) fn storage(context: &str) -> impl FnOnce(sqlx::Error) -> LedgerError + '_ {
    move |e| LedgerError::Storage {
        context: context.to_string(),
        source: Box::new(e),
    }
}

/// `SELECT ... FROM audit` for `query`, oldest first. `always_true` is the database's
/// spelling of a true condition (`1` in SQLite, `TRUE` in PostgreSQL).
pub(crate) fn audit_query<'q, DB>(always_true: &str, query: &AuditQuery) -> QueryBuilder<'q, DB>
where
    DB: Database,
    i64: Encode<'q, DB> + Type<DB>,
    String: Encode<'q, DB> + Type<DB>,
{
    let mut q: QueryBuilder<DB> = QueryBuilder::new(format!(
        "SELECT seq, at, actor, kind, grant_id, role, details, prev_hash, hash FROM audit WHERE {always_true}"
    ));
    if let Some(after) = query.after_seq {
        q.push(" AND seq > ").push_bind(after as i64);
    }
    if let Some(since) = query.since {
        q.push(" AND at >= ").push_bind(since.unix_millis());
    }
    if let Some(grant) = &query.grant {
        q.push(" AND grant_id = ")
            .push_bind(grant.as_str().to_string());
    }
    q.push(" ORDER BY seq");
    if let Some(limit) = query.limit {
        q.push(" LIMIT ").push_bind(i64::from(limit));
    }
    q
}

/// One row of [`audit_query`] as a record.
pub(crate) fn audit_record<R>(row: &R) -> AuditRecord
where
    R: Row,
    for<'a> &'a str: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> Option<String>: Decode<'r, R::Database> + Type<R::Database>,
{
    AuditRecord {
        seq: row.get::<i64, _>("seq") as u64,
        at: Timestamp::from_unix_millis(row.get("at")),
        actor: row.get("actor"),
        kind: row.get("kind"),
        grant_id: row.get("grant_id"),
        role: row.get("role"),
        details: row.get("details"),
        prev_hash: row.get("prev_hash"),
        hash: row.get("hash"),
    }
}

/// The query for the newest audit record's sequence number and hash.
pub(crate) const CHAIN_HEAD_QUERY: &str = "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1";

/// A row of [`CHAIN_HEAD_QUERY`] as the chain's head; `context` names the ledger in errors.
pub(crate) fn chain_head<R>(
    row: &R,
    context: impl Fn(String) -> String,
) -> Result<ChainHead, LedgerError>
where
    R: Row,
    usize: ColumnIndex<R>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
{
    let seq: i64 = row.get(0);
    let hash: String = row.get(1);
    hash.parse()
        .map(|hash| ChainHead {
            seq: seq as u64,
            hash,
        })
        .map_err(|message| LedgerError::Corrupt {
            context: context(format!("audit record {seq}")),
            message,
        })
}
