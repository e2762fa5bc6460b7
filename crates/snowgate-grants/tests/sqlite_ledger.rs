//! The SQLite ledger: the shared ledger suite, plus what only a file on disk can show:
//! permissions, reopening, append-only triggers, and tampering with the file directly.

mod common;
#[macro_use]
mod suite;

use std::sync::Arc;

use common::*;
use snowgate_grants::audit::verify;
use snowgate_grants::machine::request;
use snowgate_grants::*;
use sqlx::{Connection, SqliteConnection};
use tempfile::TempDir;

async fn fresh_sqlite() -> (Arc<SqliteLedger>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ledger = SqliteLedger::open_in(dir.path()).await.unwrap();
    (Arc::new(ledger), dir)
}

ledger_suite!(fresh_sqlite().await);

/// A ledger with 6 audit records: two auto-approved READER grants (3 records each).
async fn ledger_with_six_records() -> (SqliteLedger, TempDir, ChainHead) {
    let (ledger, dir) = fresh_sqlite().await;
    for _ in 0..2 {
        let t = request(
            &policy(),
            GrantId::generate(),
            &alice(),
            ask("READER", mins(30), "x"),
            t0(),
        )
        .unwrap();
        ledger.commit(&t).await.unwrap();
    }
    let head = ledger.chain_head().await.unwrap().unwrap();
    assert_eq!(head.seq, 6);
    let ledger = Arc::try_unwrap(ledger).unwrap();
    ledger.close().await;
    (ledger, dir, head)
}

/// Runs SQL on the ledger file through a separate connection, as someone with the file would,
/// first dropping the append-only triggers.
async fn tamper(dir: &TempDir, sql: &str) {
    let path = dir.path().join(SqliteLedger::FILE_NAME);
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::raw_sql(
        "DROP TRIGGER IF EXISTS audit_is_append_only_update;
         DROP TRIGGER IF EXISTS audit_is_append_only_delete;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
}

async fn reopened_records(dir: &TempDir) -> Vec<AuditRecord> {
    let ledger = SqliteLedger::open_in(dir.path()).await.unwrap();
    let records = ledger.audit(&AuditQuery::default()).await.unwrap();
    ledger.close().await;
    records
}

#[tokio::test]
async fn the_ledger_file_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let (ledger, dir) = fresh_sqlite().await;
    ledger
        .append(&[AuditEntry::sign_in(t0(), &alice())])
        .await
        .unwrap();
    for name in ["ledger.sqlite3", "ledger.sqlite3-wal"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} has mode {:o}", mode & 0o777);
    }
}

#[tokio::test]
async fn an_existing_file_with_loose_permissions_is_tightened() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SqliteLedger::FILE_NAME);
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    SqliteLedger::open(&path).await.unwrap().close().await;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test]
async fn everything_committed_is_there_after_reopening() {
    let (_, dir, head) = ledger_with_six_records().await;
    let ledger = SqliteLedger::open_in(dir.path()).await.unwrap();
    assert_eq!(ledger.chain_head().await.unwrap(), Some(head));
    assert_eq!(
        ledger.grants(&GrantFilter::active()).await.unwrap().len(),
        2
    );
    let records = ledger.audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(verify(&records, Some(head)).unwrap(), Some(head));
}

#[tokio::test]
async fn the_audit_table_refuses_updates_and_deletes() {
    let (_, dir, _) = ledger_with_six_records().await;
    let path = dir.path().join(SqliteLedger::FILE_NAME);
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let err = sqlx::query("UPDATE audit SET actor = 'user:mallory' WHERE seq = 2")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("the audit log is append-only"),
        "{err}"
    );
    let err = sqlx::query("DELETE FROM audit WHERE seq = 6")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("the audit log is append-only"),
        "{err}"
    );
}

#[tokio::test]
async fn editing_one_byte_of_a_stored_record_is_caught_and_named() {
    let (_, dir, head) = ledger_with_six_records().await;
    // `"remaining":0` -> `"remaining":1` in record 2's details.
    tamper(&dir, "UPDATE audit SET details = replace(details, '\"remaining\":0', '\"remaining\":1') WHERE seq = 2").await;
    let records = reopened_records(&dir).await;
    assert!(
        records[1].details.contains("\"remaining\":1"),
        "the edit happened"
    );
    let err = verify(&records, Some(head)).unwrap_err();
    assert_eq!(err, VerifyError::Altered { seq: 2 });
    assert_eq!(
        err.to_string(),
        "audit record 2 was altered: its contents do not match its hash"
    );
}

#[tokio::test]
async fn an_edit_that_parses_to_the_same_json_is_still_caught() {
    let (_, dir, _) = ledger_with_six_records().await;
    tamper(
        &dir,
        "UPDATE audit SET details = replace(details, ':', ': ') WHERE seq = 4",
    )
    .await;
    assert_eq!(
        verify(&reopened_records(&dir).await, None),
        Err(VerifyError::Altered { seq: 4 })
    );
}

#[tokio::test]
async fn editing_the_actor_or_time_of_a_record_is_caught() {
    let (_, dir, _) = ledger_with_six_records().await;
    tamper(
        &dir,
        "UPDATE audit SET actor = 'user:mallory' WHERE seq = 1",
    )
    .await;
    assert_eq!(
        verify(&reopened_records(&dir).await, None),
        Err(VerifyError::Altered { seq: 1 })
    );
    let (_, dir, _) = ledger_with_six_records().await;
    tamper(&dir, "UPDATE audit SET at = at + 1 WHERE seq = 5").await;
    assert_eq!(
        verify(&reopened_records(&dir).await, None),
        Err(VerifyError::Altered { seq: 5 })
    );
}

#[tokio::test]
async fn a_record_deleted_from_the_middle_is_named() {
    let (_, dir, _) = ledger_with_six_records().await;
    tamper(&dir, "DELETE FROM audit WHERE seq = 3").await;
    let err = verify(&reopened_records(&dir).await, None).unwrap_err();
    assert_eq!(err, VerifyError::Missing { first: 3, last: 3 });
    assert_eq!(
        err.to_string(),
        "audit record 3 is missing: the log jumps from record 2 to 4 (records were deleted or moved)"
    );
}

#[tokio::test]
async fn a_deletion_papered_over_by_renumbering_breaks_the_link() {
    let (_, dir, _) = ledger_with_six_records().await;
    tamper(
        &dir,
        "DELETE FROM audit WHERE seq = 3; UPDATE audit SET seq = seq - 1 WHERE seq > 3",
    )
    .await;
    // Record 3 now holds what was record 4; its seq no longer matches its hash either, but the
    // first thing wrong is that it does not follow record 2.
    assert_eq!(
        verify(&reopened_records(&dir).await, None),
        Err(VerifyError::BrokenLink { seq: 3 })
    );
}

#[tokio::test]
async fn reordered_records_are_caught_at_the_first_one_out_of_place() {
    let (_, dir, _) = ledger_with_six_records().await;
    tamper(&dir, "UPDATE audit SET seq = -4 WHERE seq = 4; UPDATE audit SET seq = 4 WHERE seq = 5; UPDATE audit SET seq = 5 WHERE seq = -4;").await;
    assert_eq!(
        verify(&reopened_records(&dir).await, None),
        Err(VerifyError::BrokenLink { seq: 4 })
    );

    let (_, dir, _) = ledger_with_six_records().await;
    // Swap the contents of records 2 and 3 but keep their positions.
    tamper(
        &dir,
        "CREATE TEMP TABLE t AS SELECT * FROM audit WHERE seq IN (2, 3);
         UPDATE audit SET (at, actor, kind, grant_id, role, details, prev_hash, hash) =
           (SELECT at, actor, kind, grant_id, role, details, prev_hash, hash FROM t WHERE t.seq = 5 - audit.seq)
         WHERE seq IN (2, 3);",
    )
    .await;
    assert_eq!(
        verify(&reopened_records(&dir).await, None),
        Err(VerifyError::BrokenLink { seq: 2 })
    );
}

#[tokio::test]
async fn records_cut_off_the_end_are_caught_only_with_the_anchor() {
    let (_, dir, head) = ledger_with_six_records().await;
    tamper(&dir, "DELETE FROM audit WHERE seq > 4").await;
    let records = reopened_records(&dir).await;
    assert!(
        verify(&records, None).is_ok(),
        "without the anchor a shorter chain is still a chain"
    );
    let err = verify(&records, Some(head)).unwrap_err();
    assert_eq!(
        err,
        VerifyError::Truncated {
            last: 4,
            anchored: 6
        }
    );
    assert_eq!(
        err.to_string(),
        "the audit log ends at record 4 but the anchor kept outside the database says record 6 existed: records 5..=6 were cut off"
    );
}

#[tokio::test]
async fn a_cut_tail_with_new_records_appended_is_caught_by_the_anchor() {
    let (_, dir, head) = ledger_with_six_records().await;
    tamper(&dir, "DELETE FROM audit WHERE seq > 4").await;
    let ledger = SqliteLedger::open_in(dir.path()).await.unwrap();
    for _ in 0..3 {
        ledger
            .append(&[AuditEntry::sign_in(t0(), &mallory())])
            .await
            .unwrap();
    }
    let records = ledger.audit(&AuditQuery::default()).await.unwrap();
    assert!(verify(&records, None).is_ok());
    assert_eq!(
        verify(&records, Some(head)),
        Err(VerifyError::AnchorMismatch { seq: 6 })
    );
}

#[tokio::test]
async fn a_ledger_of_the_previous_schema_keeps_its_grants_and_new_ones_carry_their_account() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(SqliteLedger::FILE_NAME);
    let old = previous_grant();
    {
        let url = format!("sqlite://{}?mode=rwc", path.display());
        let mut conn = SqliteConnection::connect(&url).await.unwrap();
        previous_schema("migrations/sqlite")
            .await
            .run(&mut conn)
            .await
            .unwrap();
        // The grant row exactly as the previous ledger wrote it: no account column.
        sqlx::query(
            "INSERT INTO grants (id, role, requester, state, awaiting_decision, created_at,
                                 expires_at, next_deadline, version, body)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(old.id().as_str())
        .bind(old.role().as_str())
        .bind(old.requester().subject.as_str())
        .bind(old.state().as_str())
        .bind(old.awaits_decision())
        .bind(old.created_at().unix_millis())
        .bind(old.expires_at().map(|t| t.unix_millis()))
        .bind(old.next_deadline().map(|t| t.unix_millis()))
        .bind(old.version() as i64)
        .bind(serde_json::to_string(&old).unwrap())
        .execute(&mut conn)
        .await
        .unwrap();
        conn.close().await.unwrap();
    }

    let ledger = SqliteLedger::open(&path).await.unwrap();
    let kept = ledger
        .grant(old.id())
        .await
        .unwrap()
        .expect("the grant is kept");
    assert_eq!(kept, old);
    assert_eq!(
        kept.account(),
        None,
        "an old grant is the default account's"
    );
    let listed = ledger.grants(&GrantFilter::default()).await.unwrap();
    assert_eq!(listed.len(), 1);

    let t = request(
        &policy_with_accounts(),
        GrantId::generate(),
        &alice(),
        ask("READER", mins(30), "after the migration"),
        t0(),
    )
    .unwrap();
    let records = ledger.commit(&t).await.unwrap();
    let details: serde_json::Value = serde_json::from_str(&records[0].details).unwrap();
    assert_eq!(details["account"], "dev", "{details}");
    let new = ledger.grant(t.grant().id()).await.unwrap().unwrap();
    assert_eq!(new.account(), Some("dev"));
    ledger.sync().await.unwrap();
    drop(ledger);

    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let mut columns: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT id, account FROM grants")
            .fetch_all(&mut conn)
            .await
            .unwrap();
    columns.sort();
    let mut expected = vec![
        (old.id().as_str().to_string(), None),
        (new.id().as_str().to_string(), Some("dev".to_string())),
    ];
    expected.sort();
    assert_eq!(columns, expected);
}
