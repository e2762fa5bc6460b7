//! The PostgreSQL ledger on a real PostgreSQL from the rig: the shared ledger suite, plus what
//! only a shared database shows: several writers (separate pools, as separate replicas would
//! have) keeping one chain, the events table and its notifications, and the deadline sweep
//! committing each expiry exactly once.

mod common;
#[macro_use]
mod suite;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use snowgate_grants::ledger::verify_ledger;
use snowgate_grants::machine::request;
use snowgate_grants::postgres::EVENTS_CHANNEL;
use snowgate_grants::*;
use snowgate_rig::postgres::Postgres;
use sqlx::postgres::PgListener;

async fn fresh_pg() -> (Arc<PgLedger>, Postgres) {
    let pg = Postgres::start()
        .await
        .expect("starting the rig's PostgreSQL");
    let ledger = PgLedger::connect(&pg.url()).await.unwrap();
    (Arc::new(ledger), pg)
}

ledger_suite!(fresh_pg().await);

fn new_request(who: &Actor, role: &str, length: Duration) -> Transition {
    request(
        &policy(),
        GrantId::generate(),
        who,
        ask(role, length, "numbers"),
        t0(),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_appending_in_parallel_keep_one_chain() {
    let (_, pg) = fresh_pg().await;
    let a = Arc::new(PgLedger::connect(&pg.url()).await.unwrap());
    let b = Arc::new(PgLedger::connect(&pg.url()).await.unwrap());
    let mut tasks = Vec::new();
    for (n, ledger) in [a.clone(), b.clone(), a.clone(), b.clone()]
        .into_iter()
        .enumerate()
    {
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                if i % 2 == 0 {
                    ledger
                        .commit(&new_request(&alice(), "READER", mins(30)))
                        .await
                        .unwrap();
                } else {
                    let who = person(&format!("writer{n}"), &[]);
                    ledger
                        .append(&[AuditEntry::sign_in(t0(), &who)])
                        .await
                        .unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let records = a.audit(&AuditQuery::default()).await.unwrap();
    // Per task: 10 auto-approved requests of 3 records each and 10 sign-ins.
    assert_eq!(records.len(), 4 * (10 * 3 + 10));
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=records.len() as u64).collect::<Vec<_>>());
    let head = verify_ledger(&*b, None).await.unwrap();
    assert_eq!(head, b.chain_head().await.unwrap());
    assert_eq!(head.unwrap().seq, records.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_transition_writes_its_events_in_order_with_the_people_concerned() {
    let (ledger, _pg) = fresh_pg().await;
    assert_eq!(ledger.last_event_id().await.unwrap(), 0);
    let t = new_request(&alice(), "ANALYST", hours(1));
    ledger.commit(&t).await.unwrap();
    let approve = t.grant().approve(&policy(), &bob(), None, t0()).unwrap();
    ledger.commit(&approve).await.unwrap();

    let events = ledger.events_after(0, 100).await.unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.event.kind.name()).collect();
    assert_eq!(kinds, ["requested", "approved", "activated"]);
    assert!(events.windows(2).all(|w| w[0].id < w[1].id));
    assert!(
        events[0].awaiting_decision,
        "the request waits for a decision"
    );
    assert!(!events[2].awaiting_decision);
    assert_eq!(events[0].subjects, ["alice"]);
    assert_eq!(events[1].subjects, ["alice", "bob"]);
    assert!(events[1].concerns(&bob().subject));
    assert_eq!(&events[1].event, &approve.events()[0]);

    // Someone with nothing to do with it sees nothing; an approver of the role sees all three.
    let none = ledger
        .events_for(0, &mallory().subject, &[], 100)
        .await
        .unwrap();
    assert!(none.is_empty());
    let by_role = ledger
        .events_for(0, &carol().subject, &[role("ANALYST")], 100)
        .await
        .unwrap();
    assert_eq!(by_role.len(), 3);
    let after_first = ledger
        .events_for(events[0].id, &alice().subject, &[], 100)
        .await
        .unwrap();
    assert_eq!(after_first.len(), 2);
    assert_eq!(
        ledger.last_event_id().await.unwrap(),
        events.last().unwrap().id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_commit_writes_no_event() {
    let (ledger, _pg) = fresh_pg().await;
    let t = new_request(&alice(), "ANALYST", hours(1));
    ledger.commit(&t).await.unwrap();
    let approve = t.grant().approve(&policy(), &bob(), None, t0()).unwrap();
    let deny = t
        .grant()
        .deny(&policy(), &carol(), Comment::new("no").unwrap(), t0())
        .unwrap();
    ledger.commit(&approve).await.unwrap();
    assert!(matches!(
        ledger.commit(&deny).await,
        Err(LedgerError::Conflict { .. })
    ));
    let kinds: Vec<String> = ledger
        .events_after(0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event.kind.name().to_string())
        .collect();
    assert_eq!(kinds, ["requested", "approved", "activated"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listeners_are_notified_with_the_last_event_id_after_the_commit() {
    let (ledger, pg) = fresh_pg().await;
    let mut listener = PgListener::connect(&pg.url()).await.unwrap();
    listener.listen(EVENTS_CHANNEL).await.unwrap();
    let t = new_request(&alice(), "READER", mins(30));
    ledger.commit(&t).await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a notification within 10 s")
        .unwrap();
    let id: i64 = n.payload().parse().unwrap();
    assert_eq!(id, ledger.last_event_id().await.unwrap());
    let events = ledger.events_after(0, 100).await.unwrap();
    assert_eq!(events.len(), 3, "requested, approved by policy, activated");
    assert_eq!(events.last().unwrap().id, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_sweeping_deadlines_expire_each_grant_exactly_once() {
    let (_, pg) = fresh_pg().await;
    let a = Arc::new(PgLedger::connect(&pg.url()).await.unwrap());
    let b = Arc::new(PgLedger::connect(&pg.url()).await.unwrap());
    let mut ids = Vec::new();
    for _ in 0..30 {
        let t = new_request(&alice(), "READER", mins(30));
        a.commit(&t).await.unwrap();
        ids.push(t.grant().id().clone());
    }
    assert_eq!(
        a.next_deadline().await.unwrap(),
        Some(Timestamp::from(t0()).plus(mins(20))),
        "the first deadline is the expiry warning"
    );
    let late = t0() + mins(31);
    let mut sweeps = Vec::new();
    for ledger in [a.clone(), b.clone(), a.clone(), b.clone()] {
        sweeps.push(tokio::spawn(async move {
            let mut n = 0;
            loop {
                let done = ledger.tick_due(late, 4).await.unwrap();
                if done.is_empty() {
                    return n;
                }
                n += done.len();
            }
        }));
    }
    let mut total = 0;
    for s in sweeps {
        total += s.await.unwrap();
    }
    assert_eq!(total, 30, "each grant is ticked by exactly one sweeper");
    for id in &ids {
        let g = a.grant(id).await.unwrap().unwrap();
        assert_eq!(g.state(), GrantState::Expired);
    }
    let records = a.audit(&AuditQuery::default()).await.unwrap();
    let expired = records.iter().filter(|r| r.kind == "grant.expired").count();
    assert_eq!(expired, 30);
    assert_eq!(a.next_deadline().await.unwrap(), None);
    verify_ledger(&*a, None).await.unwrap();
    let expired_events = a
        .events_after(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.event.kind.name() == "expired")
        .count();
    assert_eq!(expired_events, 30);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_table_refuses_updates_and_deletes() {
    let (ledger, pg) = fresh_pg().await;
    ledger
        .append(&[AuditEntry::sign_in(t0(), &alice())])
        .await
        .unwrap();
    let pool = sqlx::PgPool::connect(&pg.url()).await.unwrap();
    for sql in [
        "UPDATE audit SET actor = 'user:mallory'",
        "DELETE FROM audit",
        "TRUNCATE audit",
    ] {
        let err = sqlx::query(sql).execute(&pool).await.unwrap_err();
        assert!(
            err.to_string().contains("append-only"),
            "{sql} was not refused as it should be: {err}"
        );
    }
    assert_eq!(ledger.audit(&AuditQuery::default()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_database_of_the_previous_schema_keeps_its_grants_and_new_ones_carry_their_account() {
    use sqlx::Connection;
    let pg = Postgres::start()
        .await
        .expect("starting the rig's PostgreSQL");
    let old = previous_grant();
    {
        let mut conn = sqlx::PgConnection::connect(&pg.url()).await.unwrap();
        previous_schema("migrations/postgres")
            .await
            .run(&mut conn)
            .await
            .unwrap();
        // The grant row exactly as the previous ledger wrote it: no account column.
        sqlx::query(
            "INSERT INTO grants (id, role, requester, state, awaiting_decision, created_at,
                                 expires_at, next_deadline, version, body)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
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

    let ledger = PgLedger::connect(&pg.url()).await.unwrap();
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

    let t = request(
        &policy_with_accounts(),
        GrantId::generate(),
        &alice(),
        ask("READER", Duration::from_secs(1800), "after the migration"),
        t0(),
    )
    .unwrap();
    let records = ledger.commit(&t).await.unwrap();
    let details: serde_json::Value = serde_json::from_str(&records[0].details).unwrap();
    assert_eq!(details["account"], "dev", "{details}");
    let new = ledger.grant(t.grant().id()).await.unwrap().unwrap();
    assert_eq!(new.account(), Some("dev"));

    let mut conn = sqlx::PgConnection::connect(&pg.url()).await.unwrap();
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
