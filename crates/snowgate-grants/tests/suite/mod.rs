//! The ledger test suite: what every [`Ledger`] implementation must do, written once over
//! `impl Ledger` and instantiated per implementation with [`ledger_suite!`]:
//!
//! ```ignore
//! mod suite;
//! ledger_suite!(fresh_sqlite().await);   // an expression giving (Arc<impl Ledger>, guard)
//! ```
//!
//! The guard is kept alive for the test (a temp dir, a database to drop).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use snowgate_grants::audit::{verify, SessionRef, StatementRef};
use snowgate_grants::ledger::export_jsonl;
use snowgate_grants::machine::request;
use snowgate_grants::*;

use crate::common::*;

/// Expands to one `#[tokio::test]` per suite case, each on a fresh ledger from `$fresh`.
#[macro_export]
macro_rules! ledger_suite {
    ($fresh:expr) => {
        $crate::ledger_suite!(@cases $fresh;
            a_new_grant_is_stored_with_its_audit_records,
            an_auto_approved_request_records_every_event_in_order,
            a_commit_replaces_exactly_the_version_it_was_decided_on,
            a_grant_id_cannot_be_used_twice,
            an_empty_transition_writes_nothing,
            grants_come_back_exactly_as_stored,
            listing_filters_and_orders_newest_first,
            standalone_records_continue_the_same_chain,
            the_audit_log_can_be_read_by_page_time_and_grant,
            concurrent_appends_keep_seq_gapless_and_the_chain_valid,
            of_two_racing_decisions_exactly_one_is_stored,
            the_jsonl_export_reads_back_and_verifies,
        );
    };
    (@cases $fresh:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (ledger, _guard) = $fresh;
                suite::$case(ledger).await;
            }
        )*
    };
}

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

async fn all_records<L: Ledger>(ledger: &L) -> Vec<AuditRecord> {
    ledger.audit(&AuditQuery::default()).await.unwrap()
}

pub async fn a_new_grant_is_stored_with_its_audit_records<L: Ledger>(ledger: Arc<L>) {
    let t = new_request(&alice(), "ANALYST", hours(2));
    let records = ledger.commit(&t).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].seq, 1);
    assert_eq!(records[0].kind, "grant.requested");
    assert_eq!(records[0].actor, "user:alice");
    assert_eq!(
        records[0].grant_id.as_deref(),
        Some(t.grant().id().as_str())
    );
    assert_eq!(records[0].role.as_deref(), Some("ANALYST"));
    assert_eq!(records[0].details_value()["reason"], "numbers");
    assert_eq!(
        ledger.grant(t.grant().id()).await.unwrap().as_ref(),
        Some(t.grant())
    );
    assert_eq!(all_records(&*ledger).await, records);
    let head = ledger.chain_head().await.unwrap().unwrap();
    assert_eq!(head.seq, 1);
    assert_eq!(verify(&records, Some(head)).unwrap(), Some(head));
}

pub async fn an_auto_approved_request_records_every_event_in_order<L: Ledger>(ledger: Arc<L>) {
    let t = new_request(&alice(), "READER", Duration::from_secs(30 * 60));
    let records = ledger.commit(&t).await.unwrap();
    let kinds: Vec<&str> = records.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["grant.requested", "grant.approved", "grant.activated"]
    );
    let actors: Vec<&str> = records.iter().map(|r| r.actor.as_str()).collect();
    assert_eq!(actors, ["user:alice", "policy", "policy"]);
    assert_eq!(records.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2, 3]);
}

pub async fn a_commit_replaces_exactly_the_version_it_was_decided_on<L: Ledger>(ledger: Arc<L>) {
    let t = new_request(&alice(), "PROD_ADMIN", hours(1));
    ledger.commit(&t).await.unwrap();
    let v1 = t.into_grant();
    let by_bob = v1.approve(&policy(), &bob(), None, t0()).unwrap();
    ledger.commit(&by_bob).await.unwrap();
    assert_eq!(ledger.grant(v1.id()).await.unwrap().unwrap().version(), 2);

    // dave decided on the stale v1; storing that would lose bob's approval.
    let by_dave_on_v1 = v1.approve(&policy(), &dave(), None, t0()).unwrap();
    let before = all_records(&*ledger).await;
    let err = ledger.commit(&by_dave_on_v1).await.unwrap_err();
    assert!(matches!(err, LedgerError::Conflict { .. }), "{err}");
    assert_eq!(
        all_records(&*ledger).await,
        before,
        "a refused commit appends nothing"
    );
    assert_eq!(
        ledger.grant(v1.id()).await.unwrap().as_ref(),
        Some(by_bob.grant())
    );
}

pub async fn a_grant_id_cannot_be_used_twice<L: Ledger>(ledger: Arc<L>) {
    let t = new_request(&alice(), "ANALYST", hours(1));
    ledger.commit(&t).await.unwrap();
    let err = ledger.commit(&t).await.unwrap_err();
    assert!(matches!(err, LedgerError::DuplicateId { .. }), "{err}");
    assert_eq!(all_records(&*ledger).await.len(), 1);
}

pub async fn an_empty_transition_writes_nothing<L: Ledger>(ledger: Arc<L>) {
    let t = new_request(&alice(), "ANALYST", hours(1));
    ledger.commit(&t).await.unwrap();
    let nothing = t.grant().tick(t0());
    assert!(nothing.is_empty());
    assert!(ledger.commit(&nothing).await.unwrap().is_empty());
    assert_eq!(
        ledger
            .grant(t.grant().id())
            .await
            .unwrap()
            .unwrap()
            .version(),
        1
    );
}

type Step = dyn Fn(&Grant) -> Transition;

pub async fn grants_come_back_exactly_as_stored<L: Ledger>(ledger: Arc<L>) {
    let p = policy();
    let mut req = ask(
        "ANALYST",
        hours(2),
        "ünïcode reason \"quoted\"\nsecond line",
    );
    req.ticket = Some(Ticket::new("OPS-1234").unwrap());
    let mut t = request(&p, GrantId::generate(), &alice(), req, t0()).unwrap();
    ledger.commit(&t).await.unwrap();
    let steps: Vec<Box<Step>> = vec![
        Box::new(|g| {
            g.approve(
                &policy(),
                &bob(),
                Some(Comment::new("ok").unwrap()),
                t0() + mins(3),
            )
            .unwrap()
        }),
        Box::new(|g| {
            g.extend(
                &policy(),
                &alice(),
                dur(hours(1)),
                reason("more"),
                t0() + mins(90),
            )
            .unwrap()
        }),
        Box::new(|g| {
            g.deny(
                &policy(),
                &carol(),
                Comment::new("no").unwrap(),
                t0() + mins(91),
            )
            .unwrap()
        }),
        Box::new(|g| g.tick(t0() + hours(5))),
    ];
    for step in steps {
        t = step(t.grant());
        ledger.commit(&t).await.unwrap();
        assert_eq!(
            ledger.grant(t.grant().id()).await.unwrap().as_ref(),
            Some(t.grant())
        );
    }
    assert_eq!(t.grant().state(), GrantState::Expired);
    assert_eq!(t.grant().extensions()[0].state(), ExtensionState::Denied);
}

pub async fn listing_filters_and_orders_newest_first<L: Ledger>(ledger: Arc<L>) {
    let p = policy();
    let mut made = Vec::new();
    for (i, (who, role)) in [
        (alice(), "ANALYST"),
        (erin(), "ANALYST"),
        (alice(), "PROD_ADMIN"),
        (alice(), "READER"),
    ]
    .into_iter()
    .enumerate()
    {
        let length = if role == "READER" { mins(30) } else { hours(1) };
        let t = request(
            &p,
            GrantId::generate(),
            &who,
            ask(role, length, "x"),
            t0() + mins(i as u64),
        )
        .unwrap();
        ledger.commit(&t).await.unwrap();
        made.push(t.into_grant());
    }
    // erin's request is denied; alice's READER is active (auto) with a pending extension.
    let denied = made[1]
        .deny(&p, &bob(), Comment::new("no").unwrap(), t0() + mins(10))
        .unwrap();
    ledger.commit(&denied).await.unwrap();
    let ext = made[3]
        .extend(&p, &alice(), dur(hours(1)), reason("more"), t0() + mins(11))
        .unwrap();
    ledger.commit(&ext).await.unwrap();

    let ids = |gs: Vec<Grant>| gs.iter().map(|g| g.id().clone()).collect::<Vec<_>>();
    let all = ids(ledger.grants(&GrantFilter::all()).await.unwrap());
    assert_eq!(
        all,
        [3, 2, 1, 0].map(|i| made[i].id().clone()),
        "newest first"
    );
    let alices = ids(ledger
        .grants(&GrantFilter::requested_by(&alice().subject))
        .await
        .unwrap());
    assert_eq!(alices, [3, 2, 0].map(|i| made[i].id().clone()));
    let live = ids(ledger.grants(&GrantFilter::live()).await.unwrap());
    assert_eq!(live, [3, 2, 0].map(|i| made[i].id().clone()));
    let active = ids(ledger.grants(&GrantFilter::active()).await.unwrap());
    assert_eq!(active, [made[3].id().clone()]);
    let awaiting = ids(ledger
        .grants(&GrantFilter::awaiting_decision(vec![
            role("ANALYST"),
            role("READER"),
        ]))
        .await
        .unwrap());
    assert_eq!(
        awaiting,
        [3, 0].map(|i| made[i].id().clone()),
        "pending request and pending extension"
    );
    assert!(ledger
        .grants(&GrantFilter::awaiting_decision(vec![]))
        .await
        .unwrap()
        .is_empty());
    let limited = ledger
        .grants(&GrantFilter {
            limit: Some(2),
            ..GrantFilter::all()
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);
    let denied_only = GrantFilter {
        states: vec![GrantState::Denied],
        ..GrantFilter::all()
    };
    assert_eq!(
        ids(ledger.grants(&denied_only).await.unwrap()),
        [made[1].id().clone()]
    );
}

pub async fn standalone_records_continue_the_same_chain<L: Ledger>(ledger: Arc<L>) {
    let sign_in = AuditEntry::sign_in(t0(), &alice());
    ledger.append(std::slice::from_ref(&sign_in)).await.unwrap();
    let t = new_request(&alice(), "READER", mins(30));
    ledger.commit(&t).await.unwrap();
    let session = SessionRef {
        session: "s-1".into(),
        tool: "PythonConnector".into(),
        role: role("READER"),
        grant: t.grant().id().clone(),
    };
    let appended = ledger
        .append(&[
            AuditEntry::session_opened(t0(), &alice().subject, &session),
            AuditEntry::statement(
                t0(),
                &alice().subject,
                &session,
                &StatementRef {
                    query_id: "01b2",
                    text: "select 1",
                    keep_text: false,
                },
            ),
            AuditEntry::session_closed(t0(), audit::AuditActor::System, &session, "grant expired"),
            AuditEntry::sign_out(t0(), &alice().subject, "logout"),
        ])
        .await
        .unwrap();
    assert_eq!(
        appended.iter().map(|r| r.seq).collect::<Vec<_>>(),
        [5, 6, 7, 8]
    );
    let statement = appended[1].details_value();
    assert_eq!(statement["query_id"], "01b2");
    assert_eq!(
        statement["statement_sha256"],
        "822ae07d4783158bc1912bb623e5107cc9002d519e1143a9c200ed6ee18b6d0f"
    );
    assert!(
        statement.get("text").is_none(),
        "no statement text unless asked"
    );
    let records = all_records(&*ledger).await;
    assert_eq!(records.len(), 8);
    let head = ledger.chain_head().await.unwrap();
    assert_eq!(verify(&records, head).unwrap(), head);
}

pub async fn the_audit_log_can_be_read_by_page_time_and_grant<L: Ledger>(ledger: Arc<L>) {
    let mut grant_ids = Vec::new();
    for i in 0..5u64 {
        let t = request(
            &policy(),
            GrantId::generate(),
            &alice(),
            ask("READER", mins(30), "x"),
            t0() + hours(i),
        )
        .unwrap();
        ledger.commit(&t).await.unwrap(); // 3 records each
        grant_ids.push(t.grant().id().clone());
    }
    let page = ledger
        .audit(&AuditQuery {
            after_seq: Some(4),
            limit: Some(3),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.iter().map(|r| r.seq).collect::<Vec<_>>(), [5, 6, 7]);
    let since = ledger
        .audit(&AuditQuery {
            since: Some(Timestamp::from(t0() + hours(3))),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(since.first().map(|r| r.seq), Some(10));
    assert_eq!(since.len(), 6);
    let about = ledger
        .audit(&AuditQuery {
            grant: Some(grant_ids[1].clone()),
            ..AuditQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(about.iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 5, 6]);
}

pub async fn concurrent_appends_keep_seq_gapless_and_the_chain_valid<L: Ledger + 'static>(
    ledger: Arc<L>,
) {
    let mut tasks = Vec::new();
    for task in 0..8 {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..15 {
                if i % 3 == 0 {
                    let t = new_request(&alice(), "READER", mins(30));
                    ledger.commit(&t).await.unwrap();
                } else {
                    let who = person(&format!("user{task}"), &[]);
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
    let records = all_records(&*ledger).await;
    // Per task: 5 commits of 3 records and 10 appends of 1.
    assert_eq!(records.len(), 8 * (5 * 3 + 10));
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
    }
    verify(&records, ledger.chain_head().await.unwrap()).unwrap();
}

pub async fn of_two_racing_decisions_exactly_one_is_stored<L: Ledger + 'static>(ledger: Arc<L>) {
    let t = new_request(&alice(), "ANALYST", hours(1));
    ledger.commit(&t).await.unwrap();
    let approve = t.grant().approve(&policy(), &bob(), None, t0()).unwrap();
    let deny = t
        .grant()
        .deny(&policy(), &carol(), Comment::new("no").unwrap(), t0())
        .unwrap();
    let (a, b) = tokio::join!(
        {
            let l = ledger.clone();
            async move { l.commit(&approve).await.map(|_| GrantState::Active) }
        },
        {
            let l = ledger.clone();
            async move { l.commit(&deny).await.map(|_| GrantState::Denied) }
        },
    );
    let winners: Vec<GrantState> = [a, b].into_iter().filter_map(Result::ok).collect();
    assert_eq!(winners.len(), 1, "exactly one decision wins");
    let stored = ledger.grant(t.grant().id()).await.unwrap().unwrap();
    assert_eq!(stored.state(), winners[0]);
    assert_eq!(
        all_records(&*ledger).await.len(),
        1 + if winners[0] == GrantState::Active {
            2
        } else {
            1
        }
    );
}

pub async fn the_jsonl_export_reads_back_and_verifies<L: Ledger>(ledger: Arc<L>) {
    for _ in 0..3 {
        ledger
            .commit(&new_request(&alice(), "READER", mins(30)))
            .await
            .unwrap();
    }
    ledger
        .append(&[AuditEntry::sign_in(t0(), &alice())])
        .await
        .unwrap();
    let mut out = Vec::new();
    let n = export_jsonl(&*ledger, &AuditQuery::default(), &mut out)
        .await
        .unwrap();
    assert_eq!(n, 10);
    let text = String::from_utf8(out).unwrap();
    let back: Vec<AuditRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(back, all_records(&*ledger).await);
    verify(&back, ledger.chain_head().await.unwrap()).unwrap();
    let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert!(
        first["details"].is_object(),
        "details are inline JSON, not a string"
    );
}
