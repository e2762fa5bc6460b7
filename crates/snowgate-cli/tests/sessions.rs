//! Ending one gateway session from Snowgate's side (`snowgate sessions end`, the tray's
//! Sessions screen), end to end: the real `snowgate up` broker, the rig's IdP, keyring and
//! Snowflake front, and a real Python connector holding the session.

use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::{stop, Rig};

#[tokio::test]
async fn ending_a_session_closes_it_upstream_tells_the_tool_and_is_audited() {
    let rig = Rig::start().await;
    let broker = rig.broker().await;
    rig.login("alice").await;

    let summary = rig.ok(&["connect-info"]).await;
    assert!(
        summary.contains(&format!("port:     {}", rig.port)),
        "{summary}"
    );
    assert!(summary.contains("user:     alice"), "{summary}");

    let grant = rig.request("ANALYST", "5m").await;
    let (mut client, sf_session) = rig.hold("ANALYST", 30).await;
    let sessions: Value = serde_json::from_str(&rig.ok(&["sessions", "--json"]).await).unwrap();
    let id = sessions[0]["id"].as_str().unwrap().to_string();
    assert!(id.starts_with('S'), "{sessions:#}");

    let t0 = Instant::now();
    let (ok, _, err) = rig.run(&["sessions", "end", &id]).await;
    assert!(ok, "{err}");
    assert!(err.contains(&format!("Closed session {id}")), "{err}");
    let closed = rig
        .wait_closed(sf_session, Duration::from_secs(5))
        .await
        .expect("the front still has the session open 5 s after it was ended");
    println!("sessions end → closed at the front: {:?}", closed - t0);

    // The tool's next request is refused with why.
    let refused = loop {
        let line = client
            .next_line(Duration::from_secs(15))
            .await
            .unwrap()
            .expect("the tool ended before it was refused");
        if line["ok"] == false {
            break line;
        }
    };
    let msg = refused["error"]["msg"].as_str().unwrap_or("");
    assert!(msg.contains("(closed in Snowgate)"), "{refused:#}");
    client.kill();

    // The session is gone from the list, the grant is untouched, and the audit log says who.
    let sessions: Value = serde_json::from_str(&rig.ok(&["sessions", "--json"]).await).unwrap();
    assert!(
        sessions
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["id"] != id.as_str()),
        "{sessions:#}"
    );
    let grants: Value = serde_json::from_str(&rig.ok(&["grants", "--json"]).await).unwrap();
    assert_eq!(grants[0]["id"], grant.as_str());
    assert_eq!(grants[0]["state"], "active");
    // The record is written by the broker's audit listener, a moment after the close.
    let deadline = Instant::now() + Duration::from_secs(5);
    let record = loop {
        let audit: Value = serde_json::from_str(&rig.ok(&["audit", "--json"]).await).unwrap();
        let found = audit
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == "session.closed" && r["details"]["session"] == id.as_str());
        match found {
            Some(record) => break record.clone(),
            None if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            None => panic!("no session.closed record for {id}: {audit:#}"),
        }
    };
    assert_eq!(record["details"]["why"], "closed in Snowgate", "{record:#}");
    assert_eq!(record["actor"], "user:alice", "{record:#}");

    // Ending it again, or something that is no session id, is refused.
    let (ok, _, err) = rig.run(&["sessions", "end", &id]).await;
    assert!(!ok);
    assert!(err.contains("no open session"), "{err}");
    let (ok, _, err) = rig.run(&["sessions", "end", &grant]).await;
    assert!(!ok);
    assert!(err.contains("is not a session id"), "{err}");

    stop(broker).await;
}
