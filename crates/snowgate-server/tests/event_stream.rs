//! The event stream (`GET /v1/events`) lives no longer than the token that opened it: it ends
//! when the caller's IdP access token or session token expires, and the desktop reconnects
//! with a fresh token and `Last-Event-ID`, missing nothing that happened in between. Against
//! the real server, the rig's IdP and PostgreSQL.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::json;
use snowgate_grants::ManualClock;
use snowgate_rig::idp::jwt_payload;
use support::*;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_its_access_token_expires_and_a_fresh_token_continues_without_loss() {
    let rig = Rig::start_with_ttl(Duration::from_secs(10)).await;
    let server = rig
        .replica_with(&Options {
            clock_skew: "1s".into(),
            ..Options::default()
        })
        .await;
    let alice = rig.token("alice").await;
    let exp = jwt_payload(&alice).unwrap()["exp"].as_f64().unwrap();
    let mut events = server.events(&alice, None).await;
    let g = server.request(&alice, "ANALYST", 3600).await;
    let id = g["id"].as_str().unwrap().to_string();
    let seen = events.until("requested", &id, Duration::from_secs(5)).await;
    let last = seen.last().unwrap().id.unwrap();

    let ended = events.end(Duration::from_secs(30)).await;
    let at = unix_now();
    println!(
        "the stream opened with a token expiring at {exp} ended {:?} s after it",
        ended.as_ref().map(|_| at - exp)
    );
    assert!(
        ended.is_some(),
        "the stream outlived its token by 20 s and more"
    );
    assert!(
        at >= exp - 1.0 && at <= exp + 6.0,
        "ended {} s from the token's expiry",
        at - exp
    );

    // While alice's desktop is away, bob approves.
    let bob = rig.token("bob").await;
    let ok = server
        .post(&format!("/v1/grants/{id}/approve"), &bob, json!({}))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");

    // A fresh token picks up after the last event seen.
    let fresh = rig.token("alice").await;
    let mut again = server.events(&fresh, Some(last)).await;
    let seen = again.until("activated", &id, Duration::from_secs(10)).await;
    let kinds: Vec<&str> = seen.iter().map(|e| e.kind.as_str()).collect();
    println!("after reconnecting: {kinds:?}");
    assert_eq!(
        kinds,
        ["approved", "activated"],
        "nothing lost, nothing twice"
    );
    assert!(seen.iter().all(|e| e.id.unwrap() > last));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_its_session_token_expires_by_the_servers_clock() {
    let rig = Rig::start().await;
    let key = rig.dir.path().join("session.key");
    std::fs::write(&key, [7u8; 48]).unwrap();
    let clock = Arc::new(ManualClock::starting_now());
    let server = rig
        .replica_with_clock(
            &Options {
                audience: String::new(),
                identity_extra: "caller_auth = \"id_token\"\nclient_id = \"snowgate-desktop\"\n"
                    .into(),
                tail: format!(
                    "[sessions]\nkey_files = [\"{}\"]\nlifetime = \"15m\"\n",
                    key.display()
                ),
                ..Options::default()
            },
            clock.clone(),
        )
        .await;
    let id_token = rig
        .idp
        .login("alice", &["openid", "email", "offline_access"], None)
        .await
        .unwrap()
        .id_token
        .unwrap();
    let r = server
        .http
        .post(format!("{}/v1/session", server.url))
        .json(&json!({ "id_token": id_token }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let session: serde_json::Value = r.json().await.unwrap();
    let session = session["token"].as_str().unwrap().to_string();

    let mut events = server.events(&session, None).await;
    clock.advance(Duration::from_secs(14 * 60));
    assert!(
        events.end(Duration::from_secs(2)).await.is_none(),
        "open while the session lasts"
    );
    clock.advance(Duration::from_secs(61));
    assert!(
        events.end(Duration::from_secs(5)).await.is_some(),
        "the stream outlived its session token"
    );
}
