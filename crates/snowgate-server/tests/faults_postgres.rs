//! PostgreSQL killed in the middle of decisions: the team server on the rig's real PostgreSQL,
//! approvals in flight over the API while the database is killed (SIGKILL of its whole process
//! group) and started again. Part of the fault matrix (see `crates/snowgate-cli/tests/faults.rs`
//! and the README's "Faults").

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use support::*;

/// How long the server may take to answer again once PostgreSQL is back.
const BACK_WITHIN: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_killed_mid_decision_leaves_each_decision_whole_or_clearly_refused() {
    let mut rig = Rig::start().await;
    let server = rig.replica().await;
    let (alice, bob) = tokio::join!(rig.token("alice"), rig.token("bob"));
    let mut ids = Vec::new();
    for _ in 0..16 {
        let g = server.request(&alice, "ANALYST", 3600).await;
        ids.push(g["id"].as_str().unwrap().to_string());
    }

    // Bob approves the sixteen one after another, a few at a time in flight; PostgreSQL is
    // killed once three have gone through, with others under way and more still to come.
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let http = server.http.clone();
        let url = format!("{}/v1/grants/{id}/approve", server.url);
        let bob = bob.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(25 * i as u64)).await;
            let resp = http
                .post(url)
                .bearer_auth(bob)
                .json(&json!({ "comment": "quarter close" }))
                .send()
                .await;
            let out = match resp {
                Ok(r) => {
                    let status = r.status();
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    if status.is_success() {
                        done.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok((status, body))
                }
                Err(e) => Err(e.to_string()),
            };
            out
        }));
    }
    let started = Instant::now();
    while done.load(Ordering::SeqCst) < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no approval went through"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    rig.pg.stop().await;
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.unwrap());
    }
    rig.pg.restart().await.unwrap();

    // The server answers again once PostgreSQL is back, without a restart of its own.
    let back = Instant::now();
    let verified = loop {
        let v = server.get("/v1/audit/verify", Some(&bob)).await;
        if v.status == StatusCode::OK {
            break v;
        }
        assert!(
            back.elapsed() < BACK_WITHIN,
            "the server still fails {:?} after PostgreSQL came back: {v:?}",
            back.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(verified.json["ok"], true, "{verified:?}");

    let audit = server.get("/v1/audit?limit=1000", Some(&bob)).await;
    assert_eq!(audit.status, StatusCode::OK, "{audit:?}");
    let records = audit.json["records"].as_array().unwrap().clone();
    let mut refused = 0;
    for (id, reply) in ids.iter().zip(&replies) {
        let grant = server.get(&format!("/v1/grants/{id}"), Some(&bob)).await;
        assert_eq!(grant.status, StatusCode::OK, "{grant:?}");
        let state = grant.json["grant"]["state"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let approvals = records
            .iter()
            .filter(|r| r["kind"] == "grant.approved" && r["grant_id"] == id.as_str())
            .count();
        // Never half: the grant is active exactly when its approval is on record, once.
        match state.as_str() {
            "active" => assert_eq!(approvals, 1, "{id}: active with {approvals} approvals"),
            "pending" => assert_eq!(approvals, 0, "{id}: pending with {approvals} approvals"),
            other => panic!("{id}: state {other} after an approval: {grant:?}"),
        }
        match reply {
            Ok((status, body)) if status.is_success() => {
                assert_eq!(state, "active", "{id}: approved, then {state}: {body}");
            }
            Ok((status, body)) => {
                refused += 1;
                let message = body["error"]["message"].as_str().unwrap_or("");
                assert!(
                    status.is_server_error() && !message.is_empty(),
                    "{id}: a refusal must say why: {status} {body}"
                );
                assert!(!message.contains("eyJ"), "{message}");
                if refused == 1 {
                    println!("a refusal while PostgreSQL was down: {status} {message}");
                }
            }
            // The connection itself broke: the client knows the outcome is unknown.
            Err(_) => refused += 1,
        }
    }
    println!(
        "{refused} of {} decisions refused while PostgreSQL was down",
        ids.len()
    );
    // A decision after the outage goes through.
    let later = server.request(&alice, "ANALYST", 600).await;
    let id = later["id"].as_str().unwrap();
    let approved = server
        .post(&format!("/v1/grants/{id}/approve"), &bob, json!({}))
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
}
