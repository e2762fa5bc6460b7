//! The end of access: a grant ends (revoked, or run out), its sessions are closed upstream
//! within a second, and the tool is told why.

use std::time::{Duration, Instant, SystemTime};

use snowgate_gateway::{CloseReason, EndKind, EndReason, GatewayEvent};
use snowgate_rig::clients::{run_python, spawn_python, ClientRun, PythonDriver};

use crate::common::*;
use crate::raw::Raw;

#[tokio::test]
async fn ending_a_grant_cuts_a_held_session_within_a_second_and_the_tool_is_told_why() {
    let rig = rig(|_| {}).await;
    rig.auth.grant("G-rev", "ANALYST", Duration::from_secs(600));
    let gw = rig.gateway();
    let mut events = gw.events();
    let run = ClientRun::password(&gw.url(), "me", TOOL_PASSWORD, "hold")
        .role("ANALYST")
        .arg(["--interval", "0.2", "--duration", "20"])
        .timeout(Duration::from_secs(30));
    let mut client = spawn_python(PythonDriver::V5, &run).await.unwrap();
    let wait = Duration::from_secs(15);
    let connected = client.next_line(wait).await.unwrap().unwrap();
    assert_eq!(connected["event"], "connected", "{connected:#}");
    let session_id = connected["session_id"].as_u64().unwrap();
    let first = client.next_line(wait).await.unwrap().unwrap();
    assert_eq!(first["ok"], true, "{first:#}");
    assert_eq!(gw.gw.sessions().len(), 1);

    let reason = EndReason::new(EndKind::Revoked, SystemTime::now());
    rig.auth.end("G-rev", reason);
    let t0 = Instant::now();
    let ended = gw.gw.end_grant("G-rev", reason).await;
    let took = t0.elapsed();
    assert_eq!(ended, 1);
    assert!(took < Duration::from_secs(1), "took {took:?}");
    let s = rig.sf.session(session_id).await.unwrap();
    assert!(!s.open, "Snowflake still has the session open: {s:#?}");

    let sentence = reason.sentence("ANALYST");
    let refused = loop {
        let line = client.next_line(wait).await.unwrap().unwrap();
        if line["ok"] == false {
            break line;
        }
    };
    assert_eq!(refused["error"]["errno"], 390510, "{refused:#}");
    assert!(
        refused["error"]["msg"]
            .as_str()
            .unwrap()
            .contains(&sentence),
        "{refused:#}\nwanted: {sentence}"
    );
    assert!(sentence.contains("(revoked)") && sentence.contains("Snowgate tray"));
    client.kill();

    // A new login for the ended grant is refused with the same sentence (the authorizer's).
    let result = run_python(
        PythonDriver::V5,
        &ClientRun::password(&gw.url(), "me", TOOL_PASSWORD, "smoke").role("ANALYST"),
    )
    .await
    .unwrap();
    let (errno, msg) = py_error(&result);
    assert_eq!(errno, 390189);
    assert!(msg.contains(&sentence), "{msg}");

    let got = drain(&mut events);
    assert!(
        got.iter().any(|e| matches!(
            e,
            GatewayEvent::SessionClosed { reason: CloseReason::Ended(r), grant_id, .. }
                if *r == reason && grant_id == "G-rev"
        )),
        "{got:#?}"
    );
}

#[tokio::test]
async fn a_grant_that_runs_out_is_ended_by_the_gateway_even_unasked() {
    let rig = rig(|_| {}).await;
    rig.auth.grant("G-short", "ANALYST", Duration::from_secs(4));
    let gw = rig.gateway();
    let raw = Raw::new(&gw.url());
    let a = raw
        .post(
            "/session/v1/login-request?roleName=ANALYST",
            None,
            crate::raw::login_body(),
        )
        .await;
    assert_eq!(a.json["success"], true, "{:#}", a.json);
    // The validities the tool is told never reach past the grant's end.
    assert!(
        a.json["data"]["validityInSeconds"].as_u64().unwrap() <= 4,
        "{:#}",
        a.json
    );
    assert!(a.json["data"]["masterValidityInSeconds"].as_u64().unwrap() <= 4);
    let st = a.json["data"]["token"].as_str().unwrap().to_string();
    let sf_session = a.json["data"]["sessionId"].as_u64().unwrap();
    assert_eq!(raw.query(&st, "select 1").await.json["success"], true);

    let front = &rig.sf;
    let closed = eventually(Duration::from_secs(7), || async {
        !front.session(sf_session).await.unwrap().open
    })
    .await;
    assert!(
        closed,
        "the gateway did not close the session when the grant ran out"
    );
    let m = raw.query(&st, "select 1").await.refused("390510");
    assert!(m.contains("(expired)") && m.contains("ANALYST"), "{m}");
    let info = gw.gw.sessions();
    assert_eq!(info.len(), 1);
    assert_eq!(info[0].ended.map(|e| e.kind), Some(EndKind::Expired));

    // Closing a session from the tray: the same, for one session.
    rig.auth
        .grant("G-long", "ANALYST", Duration::from_secs(600));
    let (st2, _) = raw.login("ANALYST").await;
    let id = gw
        .gw
        .sessions()
        .iter()
        .find(|s| s.grant_id == "G-long")
        .unwrap()
        .id;
    assert!(gw.gw.close_session(id).await);
    let m = raw.query(&st2, "select 1").await.refused("390510");
    assert!(m.contains("closed in Snowgate"), "{m}");
    // The tool's own close of an ended session is answered and forgets its handles.
    let a = raw
        .post("/session?delete=true", Some(&st2), serde_json::json!({}))
        .await;
    assert_eq!(a.json["success"], true);
    raw.query(&st2, "select 1").await.refused("390112");
}

#[tokio::test]
async fn shutdown_closes_every_upstream_session() {
    let rig = rig(|_| {}).await;
    rig.auth.grant("G-sd", "ANALYST", Duration::from_secs(600));
    let gw = rig.gateway();
    let raw = Raw::new(&gw.url());
    raw.login("ANALYST").await;
    raw.login("ANALYST").await;
    assert_eq!(rig.sessions().await.iter().filter(|s| s.open).count(), 2);
    gw.stop().await;
    assert!(rig.sessions().await.iter().all(|s| !s.open));
}

#[tokio::test]
async fn the_node_driver_shows_the_end_of_access_sentence() {
    let rig = rig(|_| {}).await;
    rig.auth
        .grant("G-node", "ANALYST", Duration::from_secs(600));
    let gw = rig.gateway();
    let run = ClientRun::password(&gw.url(), "me", TOOL_PASSWORD, "renew")
        .role("ANALYST")
        .arg(["--sleep", "3"]);
    let client = snowgate_rig::clients::spawn_node(&run).await.unwrap();
    let gateway = &gw.gw;
    let queried = eventually(Duration::from_secs(15), || async {
        gateway
            .sessions()
            .first()
            .is_some_and(|s| s.statements >= 1)
    })
    .await;
    assert!(queried, "the Node.js client never queried");
    let reason = EndReason::new(EndKind::Expired, SystemTime::now());
    assert_eq!(gw.gw.end_grant("G-node", reason).await, 1);
    let result = client.finish().await.unwrap();
    assert_eq!(result["query_after_sleep"], false, "{result:#}");
    assert_eq!(result["after_error"]["code"], "390510", "{result:#}");
    let msg = result["after_error"]["message"].as_str().unwrap();
    assert!(msg.contains(&reason.sentence("ANALYST")), "{msg}");
}
