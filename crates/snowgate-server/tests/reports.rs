//! What a desktop may report to the audit log (`POST /v1/audit/records`): each record's `at`
//! within bounds (not older than `[audit] report_max_age`, not before the grant it is about
//! was requested, not ahead of the server's clock beyond the skew allowed), and its `details`
//! in the shape of its kind, as the desktop writes them. A refusal names the record at fault
//! (`records[i]`), so the desktop's outbox can set exactly that one aside. Against the real
//! server, the rig's IdP and PostgreSQL.

mod support;

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;
use serde_json::{json, Value};
use snowgate_grants::Timestamp;
use support::*;

fn at(offset_secs: i64) -> String {
    let now = SystemTime::now();
    let t = if offset_secs >= 0 {
        now + Duration::from_secs(offset_secs as u64)
    } else {
        now - Duration::from_secs(offset_secs.unsigned_abs())
    };
    Timestamp::from(t).to_rfc3339()
}

/// One well-formed record of every kind a desktop reports, as the desktop writes them.
fn every_kind(grant: &str, when: &str) -> Vec<Value> {
    let session = |kind: &str, details: Value| json!({ "kind": kind, "at": when, "grant_id": grant, "role": "ANALYST", "details": details });
    vec![
        json!({ "kind": "auth.sign_in", "at": when,
                "details": { "email": "alice@example.test", "groups": ["analysts"] } }),
        session(
            "session.opened",
            json!({ "session": "7", "tool": "PythonConnector 3.12" }),
        ),
        session(
            "session.statement",
            json!({ "session": "7", "tool": "PythonConnector 3.12", "request_id": "r-1",
                    "statement_sha256": "ab".repeat(32), "async": false,
                    "multi_statement": true, "statement_count": 2, "text": "select 1; select 2",
                    "split": false }),
        ),
        session(
            "session.statement",
            json!({ "session": "7", "tool": "PythonConnector 3.12", "request_id": "r-1b",
                    "statement_sha256": "cd".repeat(32), "async": false,
                    "multi_statement": true, "statement_count": 0,
                    "statement_index": 2, "statement_total": 2, "text": "select 2" }),
        ),
        session(
            "session.statement_answered",
            json!({ "session": "7", "request_id": "r-1", "query_id": "01b2-3c" }),
        ),
        session(
            "session.result_fetched",
            json!({ "session": "7", "tool": "PythonConnector 3.12", "query_id": "01b2-3c" }),
        ),
        session(
            "session.closed",
            json!({ "session": "7", "tool": "PythonConnector 3.12", "why": "closed by the tool" }),
        ),
        json!({ "kind": "auth.sign_out", "at": when, "details": { "why": "logout" } }),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_is_refused_naming_the_record_whose_time_or_details_do_not_fit() {
    let rig = Rig::start().await;
    let server = rig.replica().await;
    let (alice, bob) = tokio::join!(rig.token("alice"), rig.token("bob"));
    let g = server.request(&alice, "ANALYST", 3600).await;
    let id = g["id"].as_str().unwrap().to_string();
    let ok = server
        .post(&format!("/v1/grants/{id}/approve"), &bob, json!({}))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");

    // Every kind, as desktops write it, is taken.
    let good = every_kind(&id, &at(0));
    let r = server
        .post("/v1/audit/records", &alice, json!({ "records": good }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json["appended"], 8);

    // Each bad record, put third in a batch of good ones, is named; nothing is written.
    let session_opened = |details: Value| {
        let mut r = good[1].clone();
        r["details"] = details;
        r
    };
    let bad: Vec<(&str, Value, &str)> = vec![
        (
            "a month and more ago",
            json!({ "kind": "auth.sign_out", "at": at(-31 * 86_400), "details": { "why": "logout" } }),
            "`at`",
        ),
        (
            "before its grant was requested",
            json!({ "kind": "session.opened", "at": at(-3600), "grant_id": id, "role": "ANALYST",
                    "details": { "session": "8", "tool": "x" } }),
            "before grant",
        ),
        (
            "ahead of the server's clock",
            json!({ "kind": "auth.sign_out", "at": at(900), "details": { "why": "logout" } }),
            "ahead of the server's clock",
        ),
        (
            "an unknown detail",
            session_opened(json!({ "session": "8", "tool": "x", "rows": 5 })),
            "rows",
        ),
        (
            "a detail missing",
            session_opened(json!({ "tool": "x" })),
            "session",
        ),
        (
            "a detail of the wrong type",
            session_opened(json!({ "session": 8, "tool": "x" })),
            "session",
        ),
        (
            "no details at all",
            {
                let mut r = good[0].clone();
                r.as_object_mut().unwrap().remove("details");
                r
            },
            "details",
        ),
        (
            "details of another kind",
            {
                let mut r = good[6].clone();
                r["details"] = json!({ "email": null, "groups": [] });
                r
            },
            "why",
        ),
    ];
    let before = server.get("/v1/audit?limit=1000", Some(&bob)).await.json["records"]
        .as_array()
        .unwrap()
        .len();
    for (what, record, names) in bad {
        let batch = vec![good[0].clone(), good[6].clone(), record];
        let r = server
            .post("/v1/audit/records", &alice, json!({ "records": batch }))
            .await;
        println!("{what}: {} {}", r.status, r.message());
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {r:?}");
        assert!(r.message().contains("records[2]"), "{what}: {r:?}");
        assert!(r.message().contains(names), "{what}: {r:?}");
    }
    let after = server.get("/v1/audit?limit=1000", Some(&bob)).await.json["records"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, before, "nothing of a refused batch is written");
}
