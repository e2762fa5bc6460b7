//! The grants service over a real SQLite ledger, with a manual clock: operations, events,
//! the deadline timer, restarts, and bad input that must write nothing.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use snowgate_grants::audit::verify;
use snowgate_grants::*;
use tempfile::TempDir;
use tokio::sync::broadcast;

struct Rig {
    grants: Grants,
    clock: Arc<ManualClock>,
    ledger: Arc<SqliteLedger>,
    anchor: Arc<MemoryAnchor>,
    dir: TempDir,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(t0()));
    let anchor = Arc::new(MemoryAnchor::new());
    start(dir, clock, anchor).await
}

async fn start(dir: TempDir, clock: Arc<ManualClock>, anchor: Arc<MemoryAnchor>) -> Rig {
    let ledger = Arc::new(SqliteLedger::open_in(dir.path()).await.unwrap());
    let grants = Grants::start(
        ledger.clone(),
        clock.clone(),
        policy(),
        Some(anchor.clone()),
    )
    .await
    .unwrap();
    Rig {
        grants,
        clock,
        ledger,
        anchor,
        dir,
    }
}

/// Stops the service and closes the ledger, as a quit would, then starts again on the same
/// data dir and clock.
async fn restart(rig: Rig) -> Rig {
    let Rig {
        grants,
        clock,
        ledger,
        anchor,
        dir,
    } = rig;
    drop(grants);
    ledger.close().await;
    drop(ledger);
    start(dir, clock, anchor).await
}

async fn next_event(rx: &mut broadcast::Receiver<GrantEvent>) -> GrantEvent {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("an event within 5 s")
        .expect("the channel is open")
}

async fn audit_len(rig: &Rig) -> usize {
    rig.grants
        .audit(&AuditQuery::default())
        .await
        .unwrap()
        .len()
}

async fn pending_analyst(rig: &Rig, hours_: u64) -> Grant {
    rig.grants
        .request(&alice(), ask("ANALYST", hours(hours_), "quarterly numbers"))
        .await
        .unwrap()
}

#[tokio::test]
async fn duration_above_maximum_is_refused_and_nothing_is_written() {
    let rig = rig().await;
    let err = rig
        .grants
        .request(&alice(), ask("ANALYST", hours(12), "quarterly numbers"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "ANALYST allows at most 8h; you asked for 12h"
    );
    assert!(matches!(err, ServiceError::Refused(_)));
    assert_eq!(audit_len(&rig).await, 0);
    assert!(rig
        .grants
        .list(&GrantFilter::all())
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_writes_nothing() {
    let rig = rig().await;
    let g = rig
        .grants
        .request(&erin(), ask("PROD_ADMIN", hours(1), "migration"))
        .await
        .unwrap();
    rig.grants.approve(&bob(), g.id(), None).await.unwrap();
    let records = audit_len(&rig).await;
    let stored = rig.grants.get(g.id()).await.unwrap();
    let unknown: GrantId = "g_aaaaaaaaaaaaaaaaaaaa".parse().unwrap();

    let refusals = [
        rig.grants
            .request(&alice(), ask("FOO", hours(1), "x"))
            .await
            .unwrap_err(),
        rig.grants.approve(&erin(), g.id(), None).await.unwrap_err(),
        rig.grants.approve(&bob(), g.id(), None).await.unwrap_err(),
        rig.grants
            .approve(&mallory(), g.id(), None)
            .await
            .unwrap_err(),
        rig.grants
            .approve(&bob(), &unknown, None)
            .await
            .unwrap_err(),
        rig.grants.cancel(&bob(), g.id()).await.unwrap_err(),
    ];
    let messages: Vec<String> = refusals.iter().map(|e| e.to_string()).collect();
    assert!(
        messages[0].starts_with("unknown role FOO; known roles: ANALYST"),
        "{}",
        messages[0]
    );
    assert_eq!(
        messages[1],
        "you can't approve your own request; ask someone in managers or security"
    );
    assert!(
        messages[2].starts_with("you already approved"),
        "{}",
        messages[2]
    );
    assert!(
        messages[3].contains("is not an approver for PROD_ADMIN"),
        "{}",
        messages[3]
    );
    assert_eq!(
        messages[4],
        "there is no grant g_aaaaaaaaaaaaaaaaaaaa you can act on; `snowgate grants --all` lists the ones you can"
    );
    assert!(
        messages[5].starts_with("only the requester"),
        "{}",
        messages[5]
    );
    assert!(refusals
        .iter()
        .all(|e| matches!(e, ServiceError::Refused(_))));
    assert_eq!(audit_len(&rig).await, records);
    assert_eq!(rig.grants.get(g.id()).await.unwrap(), stored);
}

#[tokio::test]
async fn decisions_are_announced_only_after_they_are_stored() {
    let rig = rig().await;
    let mut rx = rig.grants.subscribe();
    let g = pending_analyst(&rig, 2).await;
    let e = next_event(&mut rx).await;
    assert_eq!(e.kind.name(), "requested");
    assert_eq!(&e.grant, g.id());

    rig.clock.advance(mins(20));
    let active = rig
        .grants
        .approve(&bob(), g.id(), Some(Comment::new("go ahead").unwrap()))
        .await
        .unwrap();
    assert_eq!(active.state(), GrantState::Active);
    assert_eq!(active.approved_at(), Some(Timestamp::from(t0() + mins(20))));
    let approved = next_event(&mut rx).await;
    let activated = next_event(&mut rx).await;
    assert_eq!(approved.kind.name(), "approved");
    assert_eq!(approved.cause, Cause::Person(bob()));
    assert_eq!(
        activated.kind,
        GrantEventKind::Activated {
            approved_at: Timestamp::from(t0() + mins(20)),
            expires_at: Timestamp::from(t0() + mins(140)),
        }
    );
    assert_eq!(rig.ledger.grant(g.id()).await.unwrap().unwrap(), active);
    let kinds: Vec<String> = rig
        .grants
        .audit(&AuditQuery::default())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect();
    assert_eq!(
        kinds,
        ["grant.requested", "grant.approved", "grant.activated"]
    );
}

#[tokio::test]
async fn the_anchor_follows_every_append_once_it_is_synced() {
    let rig = rig().await;
    pending_analyst(&rig, 1).await;
    // A grant transition is synced before it returns, and anchored at once.
    let head = rig.ledger.chain_head().await.unwrap();
    assert_eq!(rig.anchor.get().await.unwrap(), head);
    rig.grants
        .record(AuditEntry::sign_in(t0(), &bob()))
        .await
        .unwrap();
    let head = rig.ledger.chain_head().await.unwrap();
    assert_eq!(head.map(|h| h.seq), Some(2));
    // Other records are anchored after the group commit's sync (every 10 ms).
    let mut anchored = None;
    for _ in 0..500 {
        anchored = rig.anchor.get().await.unwrap();
        if anchored == head {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(anchored, head);
    assert_eq!(rig.grants.verify_audit().await.unwrap(), head);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_records_are_group_committed_in_chain_order_and_none_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(SqliteLedger::open_in(dir.path()).await.unwrap());
    let anchor = Arc::new(MemoryAnchor::new());
    // A tiny queue, so most callers wait for room (backpressure) rather than being dropped.
    let options = GroupCommitOptions {
        max_batch: 32,
        queue: 8,
        ..GroupCommitOptions::default()
    };
    let grants = Grants::start_with(
        ledger.clone(),
        Arc::new(ManualClock::new(t0())),
        policy(),
        Some(anchor.clone()),
        options,
    )
    .await
    .unwrap();
    let n = 2000;
    let mut tasks = Vec::new();
    for i in 0..n {
        let grants = grants.clone();
        tasks.push(tokio::spawn(async move {
            let mut entry = AuditEntry::sign_in(t0(), &bob());
            entry.details = serde_json::json!({ "i": i });
            grants.record(entry).await.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let log = grants.audit(&AuditQuery::default()).await.unwrap();
    let seqs: Vec<u64> = log.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=n as u64).collect::<Vec<_>>(), "a gapless chain");
    let mut seen: Vec<i64> = log
        .iter()
        .map(|r| {
            let d: serde_json::Value = serde_json::from_str(&r.details).unwrap();
            d["i"].as_i64().unwrap()
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..n as i64).collect::<Vec<_>>(), "every record once");
    assert!(grants.audit_problem().is_none());
    let head = ledger.chain_head().await.unwrap();
    assert_eq!(grants.verify_audit().await.unwrap(), head);
}

#[tokio::test]
async fn verification_through_the_service_uses_the_anchor() {
    let rig = rig().await;
    pending_analyst(&rig, 1).await;
    let head = rig.anchor.get().await.unwrap().unwrap();
    // Pretend the anchor saw two more records than the database now holds.
    rig.anchor
        .set(ChainHead {
            seq: head.seq + 2,
            hash: head.hash,
        })
        .await
        .unwrap();
    let err = rig.grants.verify_audit().await.unwrap_err();
    assert!(
        matches!(
            err,
            AuditCheckError::Broken(VerifyError::Truncated {
                last: 1,
                anchored: 3
            })
        ),
        "{err}"
    );
}

#[tokio::test]
async fn the_timer_warns_then_expires_a_grant_at_its_deadline() {
    let rig = rig().await;
    let g = pending_analyst(&rig, 1).await;
    let g = rig.grants.approve(&bob(), g.id(), None).await.unwrap(); // t0 .. t0+1h
    let mut rx = rig.grants.subscribe();
    assert_eq!(
        rig.grants.next_deadline(),
        Some(Timestamp::from(t0() + mins(50)))
    );

    rig.clock.advance(mins(50));
    let warning = next_event(&mut rx).await;
    assert_eq!(
        warning.kind,
        GrantEventKind::ExpiringSoon {
            expires_at: g.expires_at().unwrap()
        }
    );

    rig.clock.advance(mins(10));
    let expired = next_event(&mut rx).await;
    assert_eq!(expired.kind, GrantEventKind::Expired);
    assert!(expired.kind.ends_grant());
    assert_eq!(expired.at, g.expires_at().unwrap());
    assert_eq!(
        rig.grants.get(g.id()).await.unwrap().state(),
        GrantState::Expired
    );
    assert_eq!(rig.grants.next_deadline(), None);
    let last = rig
        .grants
        .audit(&AuditQuery::default())
        .await
        .unwrap()
        .pop()
        .unwrap();
    assert_eq!(
        (last.kind.as_str(), last.actor.as_str()),
        ("grant.expired", "clock")
    );
}

#[tokio::test]
async fn the_timer_times_out_a_request_nobody_decided() {
    let rig = rig().await;
    let mut rx = rig.grants.subscribe();
    let g = pending_analyst(&rig, 1).await;
    next_event(&mut rx).await;
    rig.clock.advance(hours(1));
    let e = next_event(&mut rx).await;
    assert_eq!(e.kind, GrantEventKind::TimedOut);
    assert_eq!(
        rig.grants.get(g.id()).await.unwrap().state(),
        GrantState::TimedOut
    );
}

#[tokio::test]
async fn revocation_is_announced_as_the_end_of_the_grant() {
    let rig = rig().await;
    let g = pending_analyst(&rig, 1).await;
    rig.grants.approve(&bob(), g.id(), None).await.unwrap();
    let mut rx = rig.grants.subscribe();
    rig.grants
        .revoke(
            &carol(),
            g.id(),
            Some(Comment::new("incident closed").unwrap()),
        )
        .await
        .unwrap();
    let e = next_event(&mut rx).await;
    assert!(matches!(e.kind, GrantEventKind::Revoked { .. }));
    assert!(e.kind.ends_grant());
    assert!(rig
        .grants
        .usable(&alice().subject, None)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_extension_moves_the_timer() {
    let rig = rig().await;
    let g = pending_analyst(&rig, 1).await;
    rig.grants.approve(&bob(), g.id(), None).await.unwrap();
    rig.clock.advance(mins(30));
    rig.grants
        .extend(&alice(), g.id(), dur(hours(1)), reason("slow load"))
        .await
        .unwrap();
    let g = rig.grants.approve(&carol(), g.id(), None).await.unwrap();
    assert_eq!(g.expires_at(), Some(Timestamp::from(t0() + hours(2))));
    let mut rx = rig.grants.subscribe();
    rig.clock.advance(mins(31)); // t0+61m: past the original end
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        rx.try_recv().is_err(),
        "nothing happens at the original end"
    );
    assert_eq!(
        rig.grants
            .usable(&alice().subject, Some(&role("ANALYST")))
            .await
            .unwrap()
            .len(),
        1
    );
    rig.clock.advance(mins(49)); // t0+110m: ten minutes before the new end
    let e = next_event(&mut rx).await;
    assert_eq!(
        e.kind,
        GrantEventKind::ExpiringSoon {
            expires_at: g.expires_at().unwrap()
        }
    );
}

#[tokio::test]
async fn active_grants_and_their_timers_come_back_after_a_restart() {
    let rig = rig().await;
    let g = pending_analyst(&rig, 2).await;
    let g = rig.grants.approve(&bob(), g.id(), None).await.unwrap();
    let waiting = rig
        .grants
        .request(&alice(), ask("PROD_ADMIN", hours(1), "x"))
        .await
        .unwrap();
    let deadline = rig.grants.next_deadline();

    let rig = restart(rig).await;
    assert_eq!(rig.grants.next_deadline(), deadline);
    let usable = rig.grants.usable(&alice().subject, None).await.unwrap();
    assert_eq!(usable, std::slice::from_ref(&g));
    assert_eq!(
        rig.grants.get(waiting.id()).await.unwrap().state(),
        GrantState::Pending
    );

    let mut rx = rig.grants.subscribe();
    rig.clock.advance(hours(2));
    let mut ended = Vec::new();
    while ended.len() < 2 {
        let e = next_event(&mut rx).await;
        if e.kind.ends_grant() {
            ended.push((e.grant, e.kind));
        }
    }
    assert!(ended.contains(&(g.id().clone(), GrantEventKind::Expired)));
    assert!(ended.contains(&(waiting.id().clone(), GrantEventKind::TimedOut)));
}

#[tokio::test]
async fn grants_that_ended_while_snowgate_was_down_are_ended_at_start() {
    let rig = rig().await;
    let g = pending_analyst(&rig, 1).await;
    let g = rig.grants.approve(&bob(), g.id(), None).await.unwrap();
    let Rig {
        grants,
        clock,
        ledger,
        anchor,
        dir,
    } = rig;
    drop(grants);
    ledger.close().await;
    clock.advance(hours(5));
    let rig = start(dir, clock, anchor).await;
    let after = rig.grants.get(g.id()).await.unwrap();
    assert_eq!(after.state(), GrantState::Expired);
    assert_eq!(
        after.ended_at(),
        g.expires_at(),
        "ended at its expiry, not at restart"
    );
    assert_eq!(rig.grants.next_deadline(), None);
    rig.grants.verify_audit().await.unwrap();
}

#[tokio::test]
async fn approvers_see_what_waits_for_them_and_nothing_else() {
    let rig = rig().await;
    let analyst = pending_analyst(&rig, 1).await;
    rig.clock.advance(mins(1));
    let prod = rig
        .grants
        .request(&erin(), ask("PROD_ADMIN", hours(1), "x"))
        .await
        .unwrap();
    let ids = |gs: Vec<Grant>| gs.into_iter().map(|g| g.id().clone()).collect::<Vec<_>>();

    assert_eq!(
        ids(rig.grants.awaiting(&bob()).await.unwrap()),
        [prod.id().clone(), analyst.id().clone()]
    );
    assert_eq!(
        ids(rig.grants.awaiting(&dave()).await.unwrap()),
        [prod.id().clone()]
    );
    assert_eq!(
        ids(rig.grants.awaiting(&erin()).await.unwrap()),
        [analyst.id().clone()],
        "not her own"
    );
    assert!(rig.grants.awaiting(&mallory()).await.unwrap().is_empty());
    rig.grants.approve(&bob(), prod.id(), None).await.unwrap();
    assert_eq!(
        ids(rig.grants.awaiting(&bob()).await.unwrap()),
        [analyst.id().clone()],
        "already approved"
    );
    assert_eq!(
        ids(rig.grants.mine(&alice().subject).await.unwrap()),
        [analyst.id().clone()]
    );
}

#[tokio::test]
async fn two_services_deciding_on_one_file_both_land() {
    let rig = rig().await;
    let other = Grants::start(rig.ledger.clone(), rig.clock.clone(), policy(), None)
        .await
        .unwrap();
    for _ in 0..5 {
        let g = rig
            .grants
            .request(&alice(), ask("PROD_ADMIN", hours(1), "x"))
            .await
            .unwrap();
        let (bob, dave) = (bob(), dave());
        let (a, b) = tokio::join!(
            rig.grants.approve(&bob, g.id(), None),
            other.approve(&dave, g.id(), None)
        );
        a.unwrap();
        b.unwrap();
        let g = rig.grants.get(g.id()).await.unwrap();
        assert_eq!(g.state(), GrantState::Active);
        assert_eq!(g.approvals().len(), 2, "neither approval was lost");
    }
    rig.grants.verify_audit().await.unwrap();
}

#[tokio::test]
async fn expiry_is_announced_within_a_second_of_the_real_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(SqliteLedger::open_in(dir.path()).await.unwrap());
    let grants = Grants::start(ledger, Arc::new(SystemClock), policy(), None)
        .await
        .unwrap();
    let g = grants
        .request(
            &alice(),
            ask("ANALYST", Duration::from_secs(2), "a quick look"),
        )
        .await
        .unwrap();
    let g = grants.approve(&bob(), g.id(), None).await.unwrap();
    let mut rx = grants.subscribe();
    let e = loop {
        let e = next_event(&mut rx).await;
        if e.kind.ends_grant() {
            break e;
        }
    };
    let heard = SystemTime::now();
    let deadline = g.expires_at().unwrap().to_system_time();
    assert_eq!(e.kind, GrantEventKind::Expired);
    let late = heard
        .duration_since(deadline)
        .expect("not before the deadline");
    assert!(
        late < Duration::from_secs(1),
        "heard {late:?} after the deadline"
    );
}

/// Holds the ledger's write lock from another connection, as a grant transition or another
/// process would, until dropped.
struct WriteLockHeld(rusqlite::Connection);

impl WriteLockHeld {
    fn take(dir: &TempDir) -> WriteLockHeld {
        let c = rusqlite::Connection::open(dir.path().join(SqliteLedger::FILE_NAME)).unwrap();
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        WriteLockHeld(c)
    }
}

impl Drop for WriteLockHeld {
    fn drop(&mut self) {
        let _ = self.0.execute_batch("ROLLBACK");
    }
}

fn numbered(i: i64) -> AuditEntry {
    let mut entry = AuditEntry::sign_in(t0(), &bob());
    entry.details = serde_json::json!({ "i": i });
    entry
}

fn numbers(log: &[AuditRecord]) -> Vec<i64> {
    log.iter()
        .filter_map(|r| {
            let d: serde_json::Value = serde_json::from_str(&r.details).ok()?;
            d["i"].as_i64()
        })
        .collect()
}

#[tokio::test]
async fn an_append_on_the_callers_thread_steps_aside_while_the_write_lock_is_held() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = SqliteLedger::open_in(dir.path()).await.unwrap();
    let first = ledger.append_now(&[numbered(1)]).expect("the lock is free");
    assert_eq!(first.unwrap()[0].seq, 1);

    let held = WriteLockHeld::take(&dir);
    assert!(
        ledger.append_now(&[numbered(2)]).is_none(),
        "a held write lock must send the batch elsewhere, not block or fail"
    );
    // The waiting path takes it once the lock is released.
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(held);
    });
    let records = ledger.append(&[numbered(2), numbered(3)]).await.unwrap();
    release.await.unwrap();
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3]);
    let again = ledger
        .append_now(&[numbered(4)])
        .expect("the lock is free again");
    assert_eq!(again.unwrap()[0].seq, 4);
    let log = ledger.audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(numbers(&log), [1, 2, 3, 4]);
    verify(&log, None).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_are_kept_in_the_journal_while_the_write_lock_is_held_and_land_in_order() {
    let r = rig().await;
    r.grants.record(numbered(0)).await.unwrap();
    let held = WriteLockHeld::take(&r.dir);
    // Kept at once, one after the other: the journal does not need SQLite's write lock.
    for i in 1..=50 {
        tokio::time::timeout(Duration::from_secs(1), r.grants.record(numbered(i)))
            .await
            .expect("a record waited for SQLite's write lock")
            .unwrap();
    }
    // A read waits for the records to be moved into the chain, which waits for the lock.
    let read = {
        let grants = r.grants.clone();
        tokio::spawn(async move { grants.audit(&AuditQuery::default()).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !read.is_finished(),
        "the read did not wait for the kept records"
    );
    drop(held);
    let log = read.await.unwrap().unwrap();
    assert_eq!(
        numbers(&log),
        (0..=50).collect::<Vec<_>>(),
        "every record once, in order"
    );
    assert!(r.grants.audit_problem().is_none());
    r.grants.verify_audit().await.unwrap();
}

#[tokio::test]
async fn a_record_kept_later_is_written_without_another_record_to_carry_it() {
    let r = rig().await;
    r.grants.record(numbered(1)).await.unwrap();
    r.grants.record_later(numbered(2));
    // Nothing else is appended: the group commit's syncer writes it within its interval.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let log = r.grants.audit(&AuditQuery::default()).await.unwrap();
        if numbers(&log) == [1, 2] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the record kept later never reached the ledger: {:?}",
            numbers(&log)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // And one kept later goes in before the next record that is waited for.
    r.grants.record_later(numbered(3));
    r.grants.record(numbered(4)).await.unwrap();
    let log = r.grants.audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(numbers(&log), [1, 2, 3, 4]);
    r.grants.verify_audit().await.unwrap();
}

#[tokio::test]
async fn the_log_is_checkpointed_by_sync_not_inside_an_append() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = SqliteLedger::open_in(dir.path()).await.unwrap();
    let db = dir.path().join(SqliteLedger::FILE_NAME);
    let db_len = || std::fs::metadata(&db).unwrap().len();
    let before = db_len();
    // Well past the 4 MiB mark, in small transactions on the caller's thread.
    for i in 0..600 {
        let r = ledger.append_now(&[numbered(2 * i), numbered(2 * i + 1)]);
        r.expect("the lock is free").unwrap();
    }
    assert_eq!(
        db_len(),
        before,
        "an append copied the log into the database file (an automatic checkpoint)"
    );
    ledger.sync().await.unwrap();
    assert!(
        db_len() > before,
        "sync should have checkpointed a log past 4 MiB into the database file"
    );
    let log = ledger.audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(log.len(), 1200);
    verify(&log, None).unwrap();
}

/// Solo mode's rule for refusals, the team server's too: an id that names no grant gets the
/// same words from every verb; a grant the person can see (on a desktop, every grant in its
/// ledger) is refused with the reason.
#[tokio::test]
async fn every_verb_refuses_an_unknown_grant_in_the_same_words_and_a_known_one_with_the_reason() {
    let rig = rig().await;
    let unknown: GrantId = "g_aaaaaaaaaaaaaaaaaaaa".parse().unwrap();
    let no = Comment::new("no").unwrap();
    let refusals = [
        rig.grants
            .approve(&bob(), &unknown, None)
            .await
            .unwrap_err(),
        rig.grants
            .deny(&bob(), &unknown, no.clone())
            .await
            .unwrap_err(),
        rig.grants.revoke(&bob(), &unknown, None).await.unwrap_err(),
        rig.grants
            .extend(&alice(), &unknown, dur(hours(1)), reason("more"))
            .await
            .unwrap_err(),
        rig.grants.cancel(&alice(), &unknown).await.unwrap_err(),
    ];
    for e in &refusals {
        assert_eq!(
            e.to_string(),
            "there is no grant g_aaaaaaaaaaaaaaaaaaaa you can act on; `snowgate grants --all` lists the ones you can"
        );
    }

    let pending = pending_analyst(&rig, 1).await;
    let active = rig
        .grants
        .request(&alice(), ask("READER", hours(1), "a quick look"))
        .await
        .unwrap();
    let why = [
        (
            "approve",
            rig.grants
                .approve(&mallory(), pending.id(), None)
                .await
                .unwrap_err(),
            "is not an approver for ANALYST: approvers are members of managers",
        ),
        (
            "deny",
            rig.grants
                .deny(&mallory(), pending.id(), no.clone())
                .await
                .unwrap_err(),
            "is not an approver for ANALYST: approvers are members of managers",
        ),
        (
            "revoke",
            rig.grants
                .revoke(&mallory(), active.id(), None)
                .await
                .unwrap_err(),
            "only the requester or an approver for READER (members of managers) can revoke",
        ),
        (
            "extend",
            rig.grants
                .extend(&bob(), active.id(), dur(hours(1)), reason("more"))
                .await
                .unwrap_err(),
            "only the requester",
        ),
        (
            "cancel",
            rig.grants.cancel(&bob(), pending.id()).await.unwrap_err(),
            "only the requester",
        ),
    ];
    for (verb, e, want) in &why {
        println!("{verb}: {e}");
        assert!(e.to_string().contains(want), "{verb}: {e}");
    }
}
