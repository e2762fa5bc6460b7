//! snowflake-connector-python through the gateway.

use std::time::Duration;

use serde_json::json;
use sha2::{Digest, Sha256};
use snowgate_gateway::{CloseReason, GatewayEvent};
use snowgate_rig::clients::{run_python, ClientRun, PythonDriver};

use crate::common::*;

fn run(url: &str, scenario: &str) -> ClientRun {
    ClientRun::password(url, "whoever", TOOL_PASSWORD, scenario).role("ANALYST")
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What the checksum of the clients' big_select is for `n` rows: sha256 over "N:row-N\n".
pub fn big_select_checksum(n: u64) -> String {
    let mut h = Sha256::new();
    for i in 0..n {
        h.update(format!("{i}:row-{i}\n").as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn python5_logs_in_as_the_grant_and_snowflake_never_sees_the_tools_password() {
    let rig = rig(|_| {}).await;
    rig.auth
        .grant("G-ana-1", "ANALYST", Duration::from_secs(600));
    let gw = rig.gateway();
    let mut events = gw.events();
    let url = gw.url();

    let result = run_python(PythonDriver::V5, &run(&url, "smoke"))
        .await
        .unwrap();
    ok(&result);
    assert_eq!(result["rows"], json!([[1]]));
    let s = rig.only_session().await;
    assert_eq!(s.authenticator, "OAUTH");
    assert_eq!(s.login_name, USER);
    assert_eq!(s.role, "ANALYST");
    assert_eq!(s.token_scopes, vec!["session:role:ANALYST".to_string()]);
    assert_eq!(s.client_app_id.as_deref(), Some("PythonConnector"));
    assert_eq!(s.login_query_tag.as_deref(), Some("snowgate:grant=G-ana-1"));
    assert!(!s.open, "the tool's close reached Snowflake: {s:#?}");
    assert_eq!(result["session_id"].as_u64(), Some(s.session_id));

    // A tool's own QUERY_TAG is kept next to the grant id.
    let result = run_python(
        PythonDriver::V5,
        &run(&url, "query").arg(["--query-tag", "nightly-report"]),
    )
    .await
    .unwrap();
    ok(&result);
    let attempts = rig.sf.login_attempts().await.unwrap();
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    assert!(attempts.iter().all(|a| !a.password_present && a.success));
    assert!(attempts
        .iter()
        .all(|a| a.authenticator.as_deref() == Some("OAUTH")
            && a.login_name.as_deref() == Some(USER)
            && a.requested_role.as_deref() == Some("ANALYST")));
    let tags: Vec<Option<String>> = rig
        .sessions()
        .await
        .into_iter()
        .map(|s| s.login_query_tag)
        .collect();
    assert!(
        tags.contains(&Some("snowgate:grant=G-ana-1 | nightly-report".to_string())),
        "{tags:?}"
    );

    // The authorizer saw the tool and its process, and no secret (tool secrets are off).
    let seen = rig.auth.seen.lock().unwrap().clone();
    assert_eq!(seen[0].login_name.as_deref(), Some("whoever"));
    assert_eq!(seen[0].requested_role.as_deref(), Some("ANALYST"));
    assert_eq!(seen[0].client_app_id.as_deref(), Some("PythonConnector"));
    assert!(seen[0].tool_secret.is_none());
    assert_eq!(
        seen[0].peer.uid,
        Some(snowgate_gateway::peer::current_uid())
    );
    assert!(seen[0].peer.pid.is_some(), "{:?}", seen[0].peer);
    assert!(
        seen[0]
            .peer
            .process_name
            .as_deref()
            .unwrap_or("")
            .contains("python"),
        "{:?}",
        seen[0].peer
    );

    // The events: opened, a statement with its hash and Snowflake's query id, closed by the tool.
    let got = drain(&mut events);
    let dump = format!("{got:?}");
    assert!(!dump.contains(TOOL_PASSWORD));
    let opened = got
        .iter()
        .filter(|e| matches!(e, GatewayEvent::SessionOpened(_)))
        .count();
    assert_eq!(opened, 2, "{got:#?}");
    let front_ids: Vec<String> = s
        .statements
        .iter()
        .filter_map(|st| st.query_id.clone())
        .collect();
    let stmt = got
        .iter()
        .find_map(|e| match e {
            GatewayEvent::Statement {
                sql_sha256,
                request_id,
                grant_id,
                sql_text,
                ..
            } if *sql_sha256 == sha256_hex("select 1") => {
                Some((request_id.clone(), grant_id.clone(), sql_text.clone()))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no statement event: {got:#?}"));
    assert_eq!(stmt.1, "G-ana-1");
    assert!(stmt.2.is_none(), "statement text is off by default");
    assert!(stmt.0.is_some(), "the driver's requestId is kept");
    // Its answer, joined by the request id, carries Snowflake's query id.
    let query_id = got
        .iter()
        .find_map(|e| match e {
            GatewayEvent::StatementAnswered {
                request_id,
                query_id,
                ..
            } if *request_id == stmt.0 => Some(query_id.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no answer event: {got:#?}"));
    assert!(
        query_id.as_ref().is_some_and(|q| front_ids.contains(q)),
        "query id {query_id:?} not among the front's {front_ids:?}"
    );
    assert!(got.iter().any(|e| matches!(
        e,
        GatewayEvent::SessionClosed {
            reason: CloseReason::ClosedByTool,
            ..
        }
    )));
    assert!(gw.gw.sessions().is_empty(), "{:?}", gw.gw.sessions());
}

#[tokio::test]
async fn python5_runs_ddl_dml_binds_async_and_100k_rows_through_the_gateway() {
    let rig = rig(|_| {}).await;
    rig.auth
        .grant("G-ana-2", "ANALYST", Duration::from_secs(600));
    let gw = rig.gateway();
    let url = gw.url();

    let result = run_python(PythonDriver::V5, &run(&url, "ddl_dml"))
        .await
        .unwrap();
    ok(&result);
    assert_eq!(
        result["steps"]["select"],
        json!([[1, "one", "1.50"], [2, "TWO", "2.25"], [3, "three", "3.00"]])
    );

    let result = run_python(PythonDriver::V5, &run(&url, "binds"))
        .await
        .unwrap();
    ok(&result);
    let r = &result["results"];
    assert_eq!(r["qmark_select"], json!([["two"]]), "{result:#}");
    assert_eq!(
        r["pyformat_select"],
        json!([[4, "four"], [5, "five"], [6, "six"]]),
        "{result:#}"
    );
    assert_eq!(r["count"], 6, "{result:#}");

    let result = run_python(PythonDriver::V5, &run(&url, "async"))
        .await
        .unwrap();
    ok(&result);
    assert_eq!(result["rows"], json!([[42, "async"]]));

    let result = run_python(PythonDriver::V5, &run(&url, "big_select"))
        .await
        .unwrap();
    ok(&result);
    assert_eq!(result["row_count"], 100_000, "{result:#}");
    assert_eq!(
        result["checksum"].as_str().unwrap(),
        big_select_checksum(100_000)
    );

    let sessions = rig.sessions().await;
    assert!(sessions.iter().all(|s| !s.open), "{sessions:#?}");
    assert!(sessions
        .iter()
        .any(|s| s.statements.iter().any(|st| st.is_async)));
}

#[tokio::test]
async fn python5_renews_through_the_gateway_after_the_session_token_expires() {
    let rig = rig(|o| o.session_validity = 5).await;
    rig.auth
        .grant("G-ana-3", "ANALYST", Duration::from_secs(600));
    let gw = rig.gateway();
    let result = run_python(
        PythonDriver::V5,
        &run(&gw.url(), "renew").arg(["--sleep", "6"]),
    )
    .await
    .unwrap();
    ok(&result);
    assert_eq!(result["query_after_sleep"], true, "{result:#}");
    assert_eq!(result["after"], json!([[2]]));
    let s = rig.only_session().await;
    assert!(s.renewals >= 1, "{s:#?}");
    assert_eq!(s.statements.len(), 2, "{s:#?}");
    assert!(!s.open, "{s:#?}");
}

#[tokio::test]
async fn python5_heartbeats_through_the_gateway_keep_an_idle_session_alive() {
    let rig = rig(|o| {
        o.session_validity = 2;
        o.master_validity = 4;
    })
    .await;
    rig.auth
        .grant("G-ana-4", "ANALYST", Duration::from_secs(600));
    let gw = rig.gateway();
    let result = run_python(
        PythonDriver::V5,
        &run(&gw.url(), "heartbeat").arg(["--sleep", "6", "--heartbeat-frequency", "1"]),
    )
    .await
    .unwrap();
    ok(&result);
    assert_eq!(result["query_after_sleep"], true, "{result:#}");
    let s = rig.only_session().await;
    assert!(s.heartbeats >= 2, "{s:#?}");
}

#[tokio::test]
async fn python4_smoke_and_async_through_the_gateway() {
    let rig = rig(|_| {}).await;
    rig.auth
        .grant("G-ro-1", "READONLY", Duration::from_secs(600));
    let gw = rig.gateway();
    // No role in the connection: the only active grant is used.
    let run = |scenario: &str| ClientRun::password(&gw.url(), "bob", TOOL_PASSWORD, scenario);
    let result = run_python(PythonDriver::V4, &run("smoke")).await.unwrap();
    ok(&result);
    assert!(result["driver_version"].as_str().unwrap().starts_with('4'));
    let s = rig.only_session().await;
    assert_eq!(s.login_name, USER);
    assert_eq!(s.role, "READONLY");
    assert_eq!(s.authenticator, "OAUTH");
    assert!(!s.open, "connector 4.x closes its session: {s:#?}");
    let result = run_python(PythonDriver::V4, &run("async")).await.unwrap();
    ok(&result);
    assert_eq!(result["rows"], json!([[42, "async"]]));
}

#[tokio::test]
async fn python5_multi_statement_request_gets_one_record_per_statement() {
    let rig = rig(|_| {}).await;
    rig.auth
        .grant("G-multi-1", "ANALYST", Duration::from_secs(600));
    let gw = rig.gateway();
    let mut events = gw.events();
    let url = gw.url();
    let statements = ["select 1", "select 'a;b'", "select 3"];
    let sql = statements.join("; ");
    let result = run_python(
        PythonDriver::V5,
        &run(&url, "multi").arg(["--sql", sql.as_str()]),
    )
    .await
    .unwrap();
    ok(&result);
    let got = drain(&mut events);
    // The one request with `num_statements`: three records, each its own statement's hash,
    // numbered 1 to 3, and all with the request's id.
    let multi: Vec<_> = got
        .iter()
        .filter_map(|e| match e {
            GatewayEvent::Statement {
                request_id,
                multi_statement: Some(_),
                part,
                sql_sha256,
                ..
            } => Some((request_id.clone(), *part, sql_sha256.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(multi.len(), 3, "{result:#} {got:#?}");
    for (i, (request_id, part, sha)) in multi.iter().enumerate() {
        assert_eq!(*part, Some((i + 1, 3)));
        assert_eq!(*sha, sha256_hex(statements[i]));
        assert_eq!(*request_id, multi[0].0);
        assert!(request_id.is_some());
    }
    // `execute_string` sends each statement as its own request (with its `;`, but for the
    // last): one plain record each.
    for s in statements {
        let sent = [sha256_hex(&format!("{s};")), sha256_hex(s)];
        let n = got
            .iter()
            .filter(|e| matches!(e, GatewayEvent::Statement { sql_sha256, multi_statement: None, .. } if sent.contains(sql_sha256)))
            .count();
        assert_eq!(n, 1, "{s}: {result:#} {got:#?}");
    }
}

#[tokio::test]
async fn python5_cannot_replace_or_remove_the_grants_query_tag() {
    let rig = rig(|_| {}).await;
    rig.auth
        .grant("G-tag-1", "ANALYST", Duration::from_secs(600));
    let gw = rig.gateway();
    let url = gw.url();
    for sql in [
        "alter session set query_tag = 'mine'",
        "ALTER SESSION UNSET QUERY_TAG",
        "select 1; alter session set query_tag = 'x'",
        "EXECUTE IMMEDIATE $$ BEGIN ALTER SESSION SET QUERY_TAG = 'x'; END $$",
    ] {
        let result = run_python(
            PythonDriver::V5,
            &run(&url, "query")
                .arg(["--sql", sql])
                .arg(["--query-tag", "nightly"]),
        )
        .await
        .unwrap();
        let (errno, msg) = py_error(&result);
        assert_eq!(errno, 390530, "{sql}: {result:#}");
        assert!(msg.contains("QUERY_TAG"), "{sql}: {msg}");
    }
    let sessions = rig.sessions().await;
    assert_eq!(sessions.len(), 4, "{sessions:#?}");
    for s in &sessions {
        // The tag the front saw last is still the grant's, in front of the tool's own.
        assert_eq!(
            s.query_tag.as_deref(),
            Some("snowgate:grant=G-tag-1 | nightly"),
            "{s:#?}"
        );
        assert!(
            s.statements
                .iter()
                .all(|st| !st.sql.to_uppercase().contains("QUERY_TAG")),
            "{s:#?}"
        );
    }
}
