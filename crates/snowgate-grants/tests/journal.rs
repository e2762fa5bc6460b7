//! The SQLite ledger's audit journal on a real file: records kept with one write are part of
//! the audit log for every read and grant commit, survive being left behind (replayed once at
//! the next open, a torn last frame dropped), wait for room when the journal is full, and are
//! refused with the reason while they can't be moved into the chain, while reads still show
//! every record that was kept. The kill -9 test with a real process is `crash.rs`.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use snowgate_grants::audit::verify;
use snowgate_grants::journal::{Appended, Deferred};
use snowgate_grants::*;
use tempfile::TempDir;

fn numbered(i: i64) -> AuditEntry {
    let mut entry = AuditEntry::sign_in(t0(), &bob());
    entry.details = serde_json::json!({ "i": i });
    entry
}

fn numbers(log: &[AuditRecord]) -> Vec<i64> {
    log.iter()
        .filter_map(|r| r.details_value()["i"].as_i64())
        .collect()
}

fn keep(ledger: &SqliteLedger, i: i64) -> usize {
    match ledger.journal().unwrap().try_append(&numbered(i)).unwrap() {
        Appended::Kept { waiting } => waiting,
        other => panic!("record {i} was not kept: {other:?}"),
    }
}

fn segments(dir: &TempDir) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(dir.path().join("ledger.audit-journal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    out.sort();
    out
}

async fn log_of(ledger: &SqliteLedger) -> Vec<AuditRecord> {
    let log = ledger.audit(&AuditQuery::default()).await.unwrap();
    verify(&log, None).unwrap();
    log
}

#[tokio::test]
async fn a_kept_record_is_read_at_once_and_chained_before_a_later_grant_commit() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = SqliteLedger::open_in(dir.path()).await.unwrap();
    assert!(ledger.journal().unwrap().is_active());
    assert_eq!(keep(&ledger, 1), 1);
    assert_eq!(keep(&ledger, 2), 2);
    // Nothing has moved it yet, and a read shows it.
    assert_eq!(numbers(&log_of(&ledger).await), [1, 2]);
    keep(&ledger, 3);
    // A grant commit drains the journal first: the kept record comes before its records.
    let t = snowgate_grants::machine::request(
        &policy(),
        GrantId::generate(),
        &alice(),
        ask("READER", mins(30), "x"),
        t0(),
    )
    .unwrap();
    ledger.commit(&t).await.unwrap();
    let log = log_of(&ledger).await;
    let kinds: Vec<&str> = log.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "auth.sign_in",
            "auth.sign_in",
            "auth.sign_in",
            "grant.requested",
            "grant.approved",
            "grant.activated"
        ]
    );
    assert_eq!(ledger.chain_head().await.unwrap().map(|h| h.seq), Some(6));
    ledger.close().await;
    // Closed cleanly: nothing is left in the journal.
    assert!(segments(&dir).is_empty(), "{:?}", segments(&dir));
}

#[tokio::test]
async fn records_left_in_the_journal_are_replayed_once_at_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = SqliteLedger::open_in(dir.path()).await.unwrap();
        for i in 1..=3 {
            keep(&ledger, i);
        }
        // These three are moved into the chain (not yet synced, so their segment stays) ...
        assert_eq!(numbers(&log_of(&ledger).await), [1, 2, 3]);
        // ... and these two only written to the journal, as a kill -9 would leave them.
        keep(&ledger, 4);
        keep(&ledger, 5);
        drop(ledger);
    }
    assert!(!segments(&dir).is_empty());
    let ledger = SqliteLedger::open_in(dir.path()).await.unwrap();
    assert_eq!(numbers(&log_of(&ledger).await), [1, 2, 3, 4, 5]);
    assert!(
        segments(&dir).len() <= 1,
        "moved segments are deleted at open"
    );
    keep(&ledger, 6);
    ledger.close().await;
    let ledger = SqliteLedger::open_in(dir.path()).await.unwrap();
    assert_eq!(numbers(&log_of(&ledger).await), [1, 2, 3, 4, 5, 6]);
    ledger.close().await;
}

#[tokio::test]
async fn a_torn_last_frame_is_dropped_and_what_came_before_it_is_replayed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = SqliteLedger::open_in(dir.path()).await.unwrap();
        keep(&ledger, 1);
        keep(&ledger, 2);
        drop(ledger);
    }
    // A write cut short by a crash: the last frame loses its last bytes.
    let last = segments(&dir).pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let ledger = SqliteLedger::open_in(dir.path()).await.unwrap();
    assert_eq!(numbers(&log_of(&ledger).await), [1]);
    keep(&ledger, 3);
    assert_eq!(numbers(&log_of(&ledger).await), [1, 3]);
    ledger.close().await;
}

#[tokio::test]
async fn a_full_journal_takes_nothing_more_until_records_are_moved() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = SqliteLedger::open_in(dir.path()).await.unwrap();
    let journal = ledger.journal().unwrap();
    journal.set_limit(2);
    keep(&ledger, 1);
    keep(&ledger, 2);
    assert_eq!(journal.try_append(&numbered(3)).unwrap(), Appended::Full);
    ledger.sync().await.unwrap();
    assert_eq!(journal.waiting(), 0);
    assert_eq!(keep(&ledger, 3), 1);
    assert_eq!(numbers(&log_of(&ledger).await), [1, 2, 3]);
    ledger.close().await;
}

#[tokio::test]
async fn a_second_ledger_on_the_file_appends_directly_until_the_journal_is_free() {
    let dir = tempfile::tempdir().unwrap();
    let first = SqliteLedger::open_in(dir.path()).await.unwrap();
    let second = SqliteLedger::open_in(dir.path()).await.unwrap();
    assert!(first.journal().unwrap().is_active());
    assert!(
        !second.journal().unwrap().is_active(),
        "two ledgers must never both replay one journal"
    );
    assert_eq!(
        second.journal().unwrap().try_append(&numbered(0)).unwrap(),
        Appended::Inactive
    );
    keep(&first, 1);
    second.append(&[numbered(2)]).await.unwrap();
    first.close().await;
    // The first let it go; the second takes it at its next sync.
    second.sync().await.unwrap();
    assert!(second.journal().unwrap().is_active());
    keep(&second, 3);
    let mut seen = numbers(&log_of(&second).await);
    seen.sort_unstable();
    assert_eq!(seen, [1, 2, 3]);
    second.close().await;
}

/// Makes every insert into the audit table fail, as a full disk would, until dropped.
struct InsertsFail(rusqlite::Connection);

impl InsertsFail {
    fn install(dir: &TempDir) -> InsertsFail {
        let c = rusqlite::Connection::open(dir.path().join(SqliteLedger::FILE_NAME)).unwrap();
        c.busy_timeout(Duration::from_secs(5)).unwrap();
        c.execute_batch(
            "CREATE TRIGGER inserts_fail BEFORE INSERT ON audit
             BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
        )
        .unwrap();
        InsertsFail(c)
    }
}

impl Drop for InsertsFail {
    fn drop(&mut self) {
        self.0.execute_batch("DROP TRIGGER inserts_fail").unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_the_journal_cant_be_moved_records_are_refused_and_reads_show_every_kept_one() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(SqliteLedger::open_in(dir.path()).await.unwrap());
    let anchor = Arc::new(MemoryAnchor::new());
    let grants = Grants::start(
        ledger.clone(),
        Arc::new(ManualClock::new(t0())),
        policy(),
        Some(anchor.clone()),
    )
    .await
    .unwrap();
    grants.record(numbered(1)).await.unwrap();
    assert_eq!(
        numbers(&grants.audit(&AuditQuery::default()).await.unwrap()),
        [1]
    );

    let failing = InsertsFail::install(&dir);
    // Kept in the journal (it needs no insert) ...
    grants.record(numbered(2)).await.unwrap();
    // ... and read through while it can't be moved: the reader chains it after the stored
    // records, as the move will.
    let log = grants.audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(numbers(&log), [1, 2]);
    verify(&log, None).unwrap();
    let head = ledger.chain_head().await.unwrap().unwrap();
    assert_eq!(head.seq, 2);
    let problem = grants.audit_problem().expect("the status says why");
    assert!(problem.contains("full"), "{problem}");
    // Fail closed: the next record is refused with the reason, and is not kept.
    let refused = grants.record(numbered(3)).await.unwrap_err().to_string();
    assert!(refused.contains("full"), "{refused}");

    drop(failing);
    grants.record(numbered(4)).await.unwrap();
    let log = grants.audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(numbers(&log), [1, 2, 4]);
    assert_eq!(log.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
    // The record read through before is the record stored now: same place, same hash.
    assert_eq!(log[1].hash, head.hash.to_string());
    assert!(grants.audit_problem().is_none());
    grants.verify_audit().await.unwrap();
}

/// A kept record waits for a sync until one has run, even while a read is moving it into the
/// chain: the audit syncer sleeps when nothing needs a sync, so a record that looked synced
/// mid-move would stay off the disk (and the anchor) until the syncer's next idle look.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_record_needs_a_sync_even_while_a_read_moves_it() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(SqliteLedger::open_in(dir.path()).await.unwrap());
    for i in 0..100 {
        keep(&ledger, i);
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let (ledger, stop) = (ledger.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if !ledger.journal().unwrap().needs_sync() {
                        return false;
                    }
                }
                true
            })
        };
        // A read drains the journal: the record moves into the chain, not yet fsynced.
        ledger.chain_head().await.unwrap();
        stop.store(true, Ordering::SeqCst);
        assert!(
            watcher.join().unwrap(),
            "record {i} looked synced while a read moved it"
        );
        assert!(ledger.journal().unwrap().needs_sync());
        ledger.sync().await.unwrap();
        assert!(!ledger.journal().unwrap().needs_sync());
    }
}

/// How many frames the journal's segment files hold (each: length, CRC, payload).
fn frames_on_disk(dir: &TempDir) -> usize {
    segments(dir)
        .iter()
        .map(|path| {
            let bytes = std::fs::read(path).unwrap();
            let mut at = 8; // the magic
            let mut n = 0;
            while at + 8 <= bytes.len() {
                let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
                at += 8 + len;
                n += 1;
            }
            n
        })
        .sum()
}

fn defer(ledger: &SqliteLedger, i: i64) -> bool {
    match ledger.journal().unwrap().defer(&numbered(i)).unwrap() {
        Deferred::Held { first } => first,
        other => panic!("record {i} was not held: {other:?}"),
    }
}

#[tokio::test]
async fn deferred_records_go_with_the_next_append_in_front_of_it() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = SqliteLedger::open_in(dir.path()).await.unwrap();
    let journal = ledger.journal().unwrap();
    keep(&ledger, 1);
    assert!(defer(&ledger, 2), "the first held record asks for a flush");
    assert!(!defer(&ledger, 3), "a second one does not");
    // Held in memory only, yet counted as waiting.
    assert_eq!(frames_on_disk(&dir), 1);
    assert_eq!(journal.waiting(), 3);
    assert!(journal.needs_sync());
    // The next append writes them first: positions follow the order records were made.
    assert_eq!(keep(&ledger, 4), 4);
    assert_eq!(frames_on_disk(&dir), 4);
    assert_eq!(numbers(&log_of(&ledger).await), [1, 2, 3, 4]);
    ledger.close().await;
}

#[tokio::test]
async fn a_flush_writes_every_held_record_and_a_move_takes_those_never_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = SqliteLedger::open_in(dir.path()).await.unwrap();
    let journal = ledger.journal().unwrap();
    defer(&ledger, 1);
    defer(&ledger, 2);
    journal.flush_deferred().unwrap();
    assert_eq!(frames_on_disk(&dir), 2);
    journal.flush_deferred().unwrap();
    assert_eq!(frames_on_disk(&dir), 2, "nothing held, nothing written");
    // One never flushed: the sync's move writes and moves it.
    defer(&ledger, 3);
    ledger.sync().await.unwrap();
    assert_eq!(journal.waiting(), 0);
    assert!(!journal.needs_sync());
    assert_eq!(numbers(&log_of(&ledger).await), [1, 2, 3]);
    ledger.close().await;
}

#[tokio::test]
async fn held_records_are_not_lost_when_the_ledger_is_dropped_or_closed() {
    let dir = tempfile::tempdir().unwrap();
    {
        let ledger = SqliteLedger::open_in(dir.path()).await.unwrap();
        keep(&ledger, 1);
        defer(&ledger, 2);
        drop(ledger);
    }
    let ledger = SqliteLedger::open_in(dir.path()).await.unwrap();
    assert_eq!(numbers(&log_of(&ledger).await), [1, 2]);
    defer(&ledger, 3);
    ledger.close().await;
    let ledger = SqliteLedger::open_in(dir.path()).await.unwrap();
    assert_eq!(numbers(&log_of(&ledger).await), [1, 2, 3]);
    ledger.close().await;
}

#[tokio::test]
async fn a_full_journal_still_holds_records_nobody_waits_on_and_moves_them_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = SqliteLedger::open_in(dir.path()).await.unwrap();
    let journal = ledger.journal().unwrap();
    journal.set_limit(1);
    keep(&ledger, 1);
    assert_eq!(journal.try_append(&numbered(2)).unwrap(), Appended::Full);
    // What already happened is held, not refused, and not written past the limit.
    defer(&ledger, 3);
    journal.flush_deferred().unwrap();
    assert_eq!(frames_on_disk(&dir), 1);
    ledger.sync().await.unwrap();
    assert_eq!(numbers(&log_of(&ledger).await), [1, 3]);
    ledger.close().await;
}
