//! Attacks and bad input: each gets a clear, Snowflake-shaped refusal, and the gateway keeps
//! serving everyone else.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use snowgate_gateway::GatewayEvent;
use snowgate_rig::clients::{run_python, ClientRun, PythonDriver};

use crate::common::*;
use crate::raw::{headers_only, login_body, Raw};

#[tokio::test]
async fn attacks_and_bad_input_are_refused_while_others_are_served() {
    let rig = rig(|_| {}).await;
    rig.auth
        .grant("G-ana-r", "ANALYST", Duration::from_secs(600));
    let gw = rig.gateway();
    let mut events = gw.events();
    let raw = Raw::new(&gw.url());
    let (st, mt) = raw.login("ANALYST").await;
    assert!(
        st.len() >= 40 && mt.len() >= 40,
        "handles carry >= 128 random bits"
    );
    let still_served = || async {
        let a = raw.query(&st, "select 7").await;
        assert_eq!(a.json["success"], true, "{:#}", a.json);
    };
    still_served().await;

    // DNS rebinding: a foreign Host header.
    let a = raw
        .send(
            Method::POST,
            "/queries/v1/query-request",
            &[("host", "evil.example")],
            b"{}".to_vec(),
        )
        .await;
    let m = a.refused("390422");
    assert!(m.contains("evil.example"), "{m}");
    // Browsers: an Origin header, or Sec-Fetch-* headers.
    let a = raw
        .send(
            Method::POST,
            "/session/v1/login-request",
            &[("origin", "https://evil.example")],
            serde_json::to_vec(&login_body()).unwrap(),
        )
        .await;
    assert_eq!(a.status, 403);
    assert!(a.refused("390422").contains("browsers"));
    // A statement from a web page, even with a real session handle: the query-request, which
    // is served without the router, gets the same check.
    let auth = format!("Snowflake Token=\"{st}\"");
    let a = raw
        .send(
            Method::POST,
            "//queries/v1/query-request",
            &[("origin", "https://evil.example"), ("authorization", &auth)],
            serde_json::to_vec(&json!({"sqlText": "select 1"})).unwrap(),
        )
        .await;
    assert_eq!(a.status, 403);
    assert!(a.refused("390422").contains("browsers"));
    let a = raw
        .send(
            Method::GET,
            "/queries/x/result",
            &[("sec-fetch-mode", "no-cors")],
            vec![],
        )
        .await;
    assert_eq!(a.status, 403);
    a.refused("390422");
    still_served().await;

    // A forged session handle, a forged master handle, a request with no handle.
    let forged = "sgs-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    raw.query(forged, "select 1").await.refused("390112");
    raw.query("ver:1-hint:stolen-from-elsewhere", "select 1")
        .await
        .refused("390112");
    raw.post(
        "/session/token-request",
        Some("sgm-forged"),
        json!({"oldSessionToken": st, "requestType": "RENEW"}),
    )
    .await
    .refused("390114");
    // A real master handle cannot be used as a session token.
    raw.query(&mt, "select 1").await.refused("390114");
    raw.query("None", "select 1").await.refused("390103");
    // Unknown endpoints: without a handle refused; with one, passed to Snowflake as sent.
    raw.send(Method::GET, "/some/unknown?x=1", &[], vec![])
        .await
        .refused("390103");
    let a = raw
        .send(
            Method::GET,
            "/some/unknown?x=1",
            &[("authorization", &format!("Snowflake Token=\"{st}\""))],
            vec![],
        )
        .await;
    assert_ne!(a.json["code"], "390103", "{:#}", a.json);
    // SSO bootstrap is Snowgate's job.
    let a = raw
        .post("/session/authenticator-request", None, json!({"data": {}}))
        .await;
    assert!(a.refused("390190").contains("sign-in"));
    still_served().await;

    // Malformed JSON, a gzip bomb, a 100 MB login body.
    let a = raw
        .send(
            Method::POST,
            "/session/v1/login-request?roleName=ANALYST",
            &[],
            b"{\"data\": {".to_vec(),
        )
        .await;
    assert!(a.refused("390400").contains("not valid JSON"));
    let a = raw
        .send(
            Method::POST,
            "/queries/v1/query-request",
            &[("authorization", &format!("Snowflake Token=\"{st}\""))],
            b"not json".to_vec(),
        )
        .await;
    a.refused("390400");
    // 100 gzip members of 1 MiB each: 100 MiB inflated from ~100 KB on the wire.
    let member = gzip(&vec![b' '; 1 << 20]);
    let bomb: Vec<u8> = std::iter::repeat_n(member, 100).flatten().collect();
    assert!(bomb.len() < 1 << 20);
    let a = raw
        .send(
            Method::POST,
            "/session/v1/login-request?roleName=ANALYST",
            &[("content-encoding", "gzip")],
            bomb,
        )
        .await;
    assert!(a.refused("390400").contains("decompresses"), "{:#}", a.json);
    let v = headers_only(
        gw.addr,
        "/session/v1/login-request?roleName=ANALYST",
        100 * 1024 * 1024,
    )
    .await;
    assert_eq!(v["code"], "390400", "{v:#}");
    assert!(
        v["message"].as_str().unwrap().contains("larger than"),
        "{v:#}"
    );
    still_served().await;

    // The authorizer's refusal reaches the tool as it said it.
    let a = raw
        .post(
            "/session/v1/login-request?roleName=ENGINEER",
            None,
            login_body(),
        )
        .await;
    assert!(a.refused("390189").contains("ENGINEER"));

    // A handle used after its session was closed.
    let (st2, _) = raw.login("ANALYST").await;
    let a = raw
        .post("/session?delete=true", Some(&st2), json!({}))
        .await;
    assert_eq!(a.json["success"], true, "{:#}", a.json);
    raw.query(&st2, "select 1").await.refused("390112");
    still_served().await;

    // Nothing reached Snowflake from any of these: two logins, the queries that were served.
    let attempts = rig.sf.login_attempts().await.unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert!(attempts.iter().all(|a| !a.password_present));
    let got = drain(&mut events);
    let refused = got
        .iter()
        .filter(|e| matches!(e, GatewayEvent::RequestRefused { .. }))
        .count();
    assert_eq!(refused, 4, "{got:#?}");
    assert!(!format!("{got:?}").contains(&st), "an event holds a handle");
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn another_os_user_is_refused_and_the_owner_still_served() {
    let rig = rig(|_| {}).await;
    rig.auth
        .grant("G-ana-u", "ANALYST", Duration::from_secs(600));
    let gw = rig.gateway();
    let body = serde_json::to_string(&login_body()).unwrap();
    let out = tokio::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "curl",
            "-s",
            "--noproxy",
            "*",
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body,
        ])
        .arg(format!(
            "{}/session/v1/login-request?roleName=ANALYST",
            gw.url()
        ))
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("curl printed {:?}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(v["success"], false, "{v:#}");
    assert_eq!(v["code"], "390422", "{v:#}");
    assert!(
        v["message"].as_str().unwrap().contains("uid 65534"),
        "{v:#}"
    );
    assert!(
        rig.auth.seen.lock().unwrap().is_empty(),
        "the authorizer was asked"
    );

    // The owner, meanwhile, is served; and with per-tool secrets on, its password is the secret.
    *rig.auth.tool_secret.lock().unwrap() = Some("s3cret-for-this-tool".into());
    let gw2 = rig.gateway_with(|c| c.require_tool_secrets = true);
    let run = |pw: &str| ClientRun::password(&gw2.url(), "me", pw, "smoke").role("ANALYST");
    let result = run_python(PythonDriver::V5, &run("wrong")).await.unwrap();
    let (errno, msg) = py_error(&result);
    assert_eq!(errno, 390100, "{result:#}");
    assert!(msg.contains("connection secret"), "{msg}");
    ok(&run_python(PythonDriver::V5, &run("s3cret-for-this-tool"))
        .await
        .unwrap());
    let attempts = rig.sf.login_attempts().await.unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert!(!attempts[0].password_present);
    drop(gw);
}

#[tokio::test]
async fn snowflake_down_gets_a_sentence_not_a_stack_trace() {
    let rig = rig(|_| {}).await;
    rig.auth
        .grant("G-ana-d", "ANALYST", Duration::from_secs(600));
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let gw = start_gateway_to(&dead_url, rig.auth.clone(), |_| {});
    let a = Raw::new(&gw.url())
        .post(
            "/session/v1/login-request?roleName=ANALYST",
            None,
            login_body(),
        )
        .await;
    let m = a.refused("390503");
    assert!(
        m.contains("could not be reached") && m.contains(&dead_url),
        "{m}"
    );
    let run = ClientRun::password(&gw.url(), "me", TOOL_PASSWORD, "smoke").role("ANALYST");
    let result = run_python(PythonDriver::V5, &run).await.unwrap();
    let (errno, msg) = py_error(&result);
    assert_eq!(errno, 390503, "{result:#}");
    assert!(msg.contains("could not be reached"), "{msg}");
}
