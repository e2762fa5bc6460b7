//! Access asked for from the tool, end to end: the real `snowgate up` broker, the rig's IdP,
//! Secret Service and Snowflake front, and the real Python connector logging in for a role the
//! user holds no grant for. Without `[gateway] wait_for_approval` the login is refused and the
//! ask is listed once in the status (the tray's notice); with it, a request is filed for the
//! tool and the login waits for its decision: auto-approved, approved by bob while it waits,
//! denied, or not decided in time.

use std::time::{Duration, Instant};

use serde_json::Value;
use snowgate_rig::clients::{run_python, PythonDriver};
use snowgate_rig::secret_service::KeyringState;

mod support;
use support::{py_error, stop, Rig};

async fn rig_waiting(wait: &str) -> Rig {
    Rig::start_with(
        KeyringState::Unlocked,
        &format!("wait_for_approval = \"{wait}\""),
        "info,snowgate_engine=debug",
    )
    .await
}

/// One query through the gateway as `role`, with the driver's own login timeout left as is.
async fn query(rig: &Rig, role: &str) -> Value {
    run_python(
        PythonDriver::V5,
        &rig.python("query")
            .role(role)
            .arg(["--sql", "select 40 + 2"])
            .timeout(Duration::from_secs(120)),
    )
    .await
    .unwrap()
}

async fn status(rig: &Rig) -> Value {
    serde_json::from_str(&rig.ok(&["status", "--json"]).await).unwrap()
}

/// The user's grants for `role`, newest first.
async fn grants_for(rig: &Rig, role: &str) -> Vec<Value> {
    let all: Value = serde_json::from_str(&rig.ok(&["grants", "--json"]).await).unwrap();
    all.as_array()
        .unwrap()
        .iter()
        .filter(|g| g["role"] == role)
        .cloned()
        .collect()
}

/// Waits for a pending request for `role` to appear; returns its id.
async fn pending_request(rig: &Rig, role: &str) -> String {
    for _ in 0..200 {
        if let Some(g) = grants_for(rig, role)
            .await
            .into_iter()
            .find(|g| g["state"] == "pending")
        {
            return g["id"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no pending {role} request appeared\n{}", rig.log_tail());
}

#[tokio::test]
async fn a_waiting_login_is_auto_approved_or_approved_by_bob_in_time() {
    let rig = rig_waiting("45s").await;
    let broker = rig.broker().await;
    rig.login("alice").await;

    // ANALYST auto-approves up to 1h, the default duration: the login simply succeeds.
    let r = query(&rig, "ANALYST").await;
    assert_eq!(r["ok"], true, "{r:#}\n{}", rig.log_tail());
    let analyst = grants_for(&rig, "ANALYST").await;
    assert_eq!(analyst.len(), 1, "{analyst:#?}");
    assert_eq!(analyst[0]["state"], "active", "{analyst:#?}");
    let reason = analyst[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("requested by PythonConnector (") && reason.ends_with(") at login"),
        "{reason}"
    );
    assert_eq!(analyst[0]["requester"]["subject"], "alice", "{analyst:#?}");

    // ENGINEER needs a manager: the login waits while bob approves from elsewhere.
    let started = Instant::now();
    let waiting = {
        let rig_url = rig.gateway_url();
        let run = rig
            .python("query")
            .role("ENGINEER")
            .arg(["--sql", "select 40 + 2"])
            .timeout(Duration::from_secs(120));
        assert!(rig_url.starts_with("http://127.0.0.1:"));
        tokio::spawn(async move { run_python(PythonDriver::V5, &run).await.unwrap() })
    };
    let id = pending_request(&rig, "ENGINEER").await;
    assert!(!waiting.is_finished(), "the login did not wait");
    let (ok, _, err) = rig
        .with_sign_in(&["approve", &id, "--no-browser"], "bob")
        .await;
    assert!(ok, "approve failed: {err}");
    let r = waiting.await.unwrap();
    assert_eq!(r["ok"], true, "{r:#}\n{}", rig.log_tail());
    assert!(started.elapsed() < Duration::from_secs(45));
    let engineer = grants_for(&rig, "ENGINEER").await;
    assert_eq!(engineer.len(), 1, "{engineer:#?}");
    assert_eq!(engineer[0]["state"], "active");

    // The audit log keeps the request with the tool's reason, as alice's.
    let mut found = None;
    for _ in 0..100 {
        let audit: Value = serde_json::from_str(&rig.ok(&["audit", "--json"]).await).unwrap();
        found = audit
            .as_array()
            .unwrap()
            .iter()
            .find(|r| {
                r["kind"] == "grant.requested"
                    && r["grant_id"] == id.as_str()
                    && r.to_string().contains("requested by PythonConnector (")
            })
            .cloned();
        if found.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let found = found.expect("no grant.requested record with the tool's reason");
    assert_eq!(found["actor"], "user:alice", "{found:#}");

    // The status lists both asks, with the requests filed for them.
    let asks = status(&rig).await["tool_asks"].clone();
    let asks = asks.as_array().unwrap();
    assert_eq!(asks.len(), 2, "{asks:#?}");
    assert_eq!(asks[0]["role"], "ENGINEER");
    assert_eq!(asks[0]["request"], id.as_str());
    assert_eq!(asks[0]["notice_raised"], true, "{asks:#?}");
    assert_eq!(asks[1]["role"], "ANALYST");
    assert_eq!(asks[1]["request"], analyst[0]["id"]);
    // The policy approved it at once: the tool simply connected, with no notice.
    assert_eq!(asks[1]["notice_raised"], false, "{asks:#?}");
    assert!(asks[0]["tool"]
        .as_str()
        .unwrap()
        .starts_with("PythonConnector ("));
    stop(broker).await;
}

#[tokio::test]
async fn a_login_not_approved_in_time_or_denied_says_so() {
    let rig = rig_waiting("8s").await;
    let broker = rig.broker().await;
    rig.login("alice").await;

    // Nobody decides: after the wait the driver shows what happened; the request stays.
    let started = Instant::now();
    let r = query(&rig, "ENGINEER").await;
    let waited = started.elapsed();
    let (errno, msg) = py_error(&r);
    assert_eq!(errno, 390189, "{msg}");
    let pending = grants_for(&rig, "ENGINEER").await;
    assert_eq!(pending.len(), 1, "{pending:#?}");
    assert_eq!(pending[0]["state"], "pending");
    let id = pending[0]["id"].as_str().unwrap().to_string();
    assert!(
        msg.contains(&format!(
            "ENGINEER was not approved within 8s; your request {id} is still pending — it will work once approved"
        )),
        "{msg}"
    );
    assert!(waited >= Duration::from_secs(8), "{waited:?}");
    assert!(waited < Duration::from_secs(40), "{waited:?}");

    // The next login waits on the same request (none is filed twice), and bob denies it.
    let run = rig
        .python("query")
        .role("ENGINEER")
        .arg(["--sql", "select 1"])
        .timeout(Duration::from_secs(120));
    let waiting = tokio::spawn(async move { run_python(PythonDriver::V5, &run).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (ok, _, err) = rig
        .with_sign_in(
            &["deny", &id, "--comment", "use ANALYST", "--no-browser"],
            "bob",
        )
        .await;
    assert!(ok, "deny failed: {err}");
    let r = waiting.await.unwrap();
    let (errno, msg) = py_error(&r);
    assert_eq!(errno, 390189, "{msg}");
    assert!(msg.contains("ENGINEER was denied by "), "{msg}");
    assert!(msg.contains(": use ANALYST"), "{msg}");
    let after = grants_for(&rig, "ENGINEER").await;
    assert_eq!(after.len(), 1, "{after:#?}");
    assert_eq!(after[0]["state"], "denied");

    // A sign-out ends a waiting login at once.
    let run = rig
        .python("query")
        .role("ENGINEER")
        .arg(["--sql", "select 1"])
        .timeout(Duration::from_secs(120));
    let started = Instant::now();
    let waiting = tokio::spawn(async move { run_python(PythonDriver::V5, &run).await.unwrap() });
    let filed = pending_request(&rig, "ENGINEER").await;
    rig.ok(&["logout"]).await;
    let r = waiting.await.unwrap();
    let (_, msg) = py_error(&r);
    assert!(msg.contains("you are signed out"), "{msg}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert_ne!(filed, id, "a denied request is not waited on again");

    // Signed out, a login never waits, and is no ask.
    let logins = status(&rig).await["tool_asks"][0]["logins"].clone();
    assert_eq!(logins, 3, "{logins}");
    let started = Instant::now();
    let r = query(&rig, "ENGINEER").await;
    let (_, msg) = py_error(&r);
    assert!(msg.contains("you are signed out"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(status(&rig).await["tool_asks"][0]["logins"], logins);
    stop(broker).await;
}

#[tokio::test]
async fn without_a_wait_the_login_is_refused_and_asked_for_once() {
    let rig = Rig::start().await;
    let broker = rig.broker().await;
    rig.login("alice").await;

    for _ in 0..3 {
        let r = query(&rig, "ENGINEER").await;
        let (errno, msg) = py_error(&r);
        assert_eq!(errno, 390189, "{msg}");
        assert!(msg.contains("no active access to role ENGINEER"), "{msg}");
    }
    // One ask, counting the three logins; nothing was requested.
    let asks = status(&rig).await["tool_asks"].clone();
    let asks = asks.as_array().unwrap();
    assert_eq!(asks.len(), 1, "{asks:#?}");
    assert_eq!(asks[0]["role"], "ENGINEER");
    assert_eq!(asks[0]["logins"], 3);
    assert_eq!(asks[0]["notice_raised"], true);
    assert_eq!(asks[0]["duration_secs"], 3600);
    assert!(asks[0].get("request").is_none(), "{asks:#?}");
    assert!(grants_for(&rig, "ENGINEER").await.is_empty());
    let text = rig.ok(&["status"]).await;
    assert!(
        text.contains("asked for ENGINEER (3 logins); request it with `snowgate request ENGINEER --duration 1h --reason \"...\"`"),
        "{text}"
    );

    // ANALYST's ask defaults to its auto-approval cap.
    let _ = query(&rig, "ANALYST").await;
    let asks = status(&rig).await["tool_asks"].clone();
    assert_eq!(asks[0]["role"], "ANALYST", "{asks:#}");
    assert_eq!(asks[0]["duration_secs"], 3600, "{asks:#}");
    stop(broker).await;
}

#[tokio::test]
async fn the_longest_wait_ends_before_either_python_connector_gives_up() {
    let rig = rig_waiting("50s").await;
    let broker = rig.broker().await;
    rig.login("alice").await;

    // Both connectors with their default timeouts (the rig's client lowers login_timeout to
    // 30 s unless told; 120 s is both connectors' default) wait the whole 50 s on one
    // request, and each shows Snowgate's sentence, not a timeout of its own.
    let run = |driver: PythonDriver| {
        let run = rig
            .python("query")
            .role("ENGINEER")
            .arg(["--sql", "select 1", "--login-timeout", "120"])
            .timeout(Duration::from_secs(150));
        tokio::spawn(async move { run_python(driver, &run).await.unwrap() })
    };
    let started = Instant::now();
    let (v5, v4) = (run(PythonDriver::V5), run(PythonDriver::V4));
    let (v5, v4) = (v5.await.unwrap(), v4.await.unwrap());
    let pending = grants_for(&rig, "ENGINEER").await;
    assert_eq!(pending.len(), 1, "{pending:#?}");
    let id = pending[0]["id"].as_str().unwrap();
    for r in [&v5, &v4] {
        let (errno, msg) = py_error(r);
        assert_eq!(errno, 390189, "{msg}");
        assert!(
            msg.contains(&format!(
                "ENGINEER was not approved within 50s; your request {id} is still pending"
            )),
            "{msg}"
        );
    }
    assert!(started.elapsed() >= Duration::from_secs(50));
    stop(broker).await;
}
