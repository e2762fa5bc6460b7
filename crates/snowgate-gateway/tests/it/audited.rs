//! The audit boundary, with the real front: a statement reaches Snowflake only after its record
//! is kept, whatever spelling of the path the tool uses, and is refused when the record can't
//! be kept. The audit log here is a recording one (the ledger behind it is tested in the CLI's
//! end-to-end tests); what is checked is the gateway's side of the boundary.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use snowgate_gateway::{AuditLog, GatewayEvent, RecordFuture, Unrecorded};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::raw::Raw;

/// Keeps every record in memory; refuses them all while `failing` is set.
#[derive(Default)]
struct Recording {
    kept: Mutex<Vec<GatewayEvent>>,
    failing: AtomicBool,
}

impl AuditLog for Recording {
    fn record<'a>(&'a self, event: &'a GatewayEvent) -> RecordFuture<'a> {
        Box::pin(async move {
            if self.failing.load(Ordering::SeqCst) {
                return Err(Unrecorded::new("the disk is full"));
            }
            self.kept.lock().unwrap().push(event.clone());
            Ok(())
        })
    }
}

impl Recording {
    fn statement_hashes(&self) -> Vec<String> {
        self.kept
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| match e {
                GatewayEvent::Statement { sql_sha256, .. } => Some(sql_sha256.clone()),
                _ => None,
            })
            .collect()
    }
}

fn sha256_hex(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Sends one request over a fresh TCP connection, with the path exactly as given (no client
/// library in between to tidy it), and returns the answer's JSON body.
async fn send_raw(
    addr: std::net::SocketAddr,
    method: &str,
    target: &str,
    token: &str,
    body: &str,
) -> Value {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {target} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Snowflake Token=\"{token}\"\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), s.read_to_end(&mut raw))
        .await
        .expect("the gateway answered within a minute")
        .unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    serde_json::from_str(&body).unwrap_or_else(|_| json!({"not_json": text}))
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = &tail[n + 2..];
    }
    out
}

#[tokio::test]
async fn every_spelling_of_a_statement_is_audited_or_refused() {
    let rig = rig(|_| {}).await;
    rig.auth
        .grant("G-path-1", "ANALYST", Duration::from_secs(600));
    let audit = Arc::new(Recording::default());
    let gw = start_audited_gateway_to(&rig.sf.url(), rig.auth.clone(), audit.clone(), |_| {});
    let (token, _) = Raw::new(&gw.url()).login("ANALYST").await;

    // (spelling, whether Snowflake may run it: audited) — the rest must be refused.
    let spellings = [
        ("/queries/v1/query-request", true),
        ("/queries/v1//query-request", true),
        ("//queries/v1/query-request", true),
        ("/queries/v1/query-request/", true),
        ("/queries//v1///query-request//", true),
        ("/%71ueries/v1/query%2Drequest", true),
        ("/queries%2Fv1/query-request", false),
        ("/queries/v1/./query-request", false),
        ("/queries/x/../v1/query-request", false),
        ("/queries/v1/%2e%2e/v1/query-request", false),
        ("/Queries/v1/query-request", false),
        ("/queries/v1/QUERY-REQUEST", false),
        ("/queries/v1/query-request;jsessionid=1", false),
        ("/queries/v1/query-request%20", false),
        ("/queries/v1/query-request.json", false),
        ("/queries\\v1\\query-request", false),
    ];
    for (i, (path, audited)) in spellings.iter().enumerate() {
        let sql = format!("select {}", 1000 + i);
        let body = json!({"sqlText": sql, "sequenceId": 1}).to_string();
        let answer = send_raw(
            gw.addr,
            "POST",
            &format!("{path}?requestId=r{i}"),
            &token,
            &body,
        )
        .await;
        if *audited {
            assert_eq!(answer["success"], true, "{path}: {answer:#}");
            assert!(
                audit.statement_hashes().contains(&sha256_hex(&sql)),
                "{path} ran without a record"
            );
        } else {
            assert_eq!(answer["success"], false, "{path}: {answer:#}");
            assert_eq!(answer["code"], "390521", "{path}: {answer:#}");
            let msg = answer["message"].as_str().unwrap_or("");
            assert!(
                msg.starts_with("Snowgate") && msg.contains("refused"),
                "{msg}"
            );
        }
    }
    // Whatever reached Snowflake has its record, and nothing refused reached it.
    let ran: Vec<String> = rig
        .only_session()
        .await
        .statements
        .iter()
        .map(|s| s.sql.clone())
        .collect();
    let kept = audit.statement_hashes();
    for sql in &ran {
        assert!(kept.contains(&sha256_hex(sql)), "{sql} ran unrecorded");
    }
    let expected_runs = spellings.iter().filter(|(_, a)| *a).count();
    assert_eq!(ran.len(), expected_runs, "{ran:?}");
}

#[tokio::test]
async fn a_statement_the_audit_log_cannot_keep_is_refused_and_never_sent() {
    let rig = rig(|_| {}).await;
    rig.auth
        .grant("G-full-1", "ANALYST", Duration::from_secs(600));
    let audit = Arc::new(Recording::default());
    let gw = start_audited_gateway_to(&rig.sf.url(), rig.auth.clone(), audit.clone(), |_| {});
    let raw = Raw::new(&gw.url());
    let (token, _) = raw.login("ANALYST").await;

    audit.failing.store(true, Ordering::SeqCst);
    let refused = raw.query(&token, "select 42").await;
    let msg = refused.refused("390520");
    assert!(
        msg.contains("audit log") && msg.contains("the disk is full"),
        "{msg}"
    );
    assert!(
        rig.only_session().await.statements.is_empty(),
        "a statement without a record reached Snowflake"
    );

    // A login is refused too, and the session it opened upstream is closed again.
    let answer = raw
        .post(
            "/session/v1/login-request?roleName=ANALYST",
            None,
            crate::raw::login_body(),
        )
        .await;
    answer.refused("390520");
    assert!(
        eventually(Duration::from_secs(10), || async {
            rig.sessions().await.iter().filter(|s| s.open).count() == 1
        })
        .await,
        "the refused login's upstream session stayed open: {:#?}",
        rig.sessions().await
    );

    // Once records can be kept again, statements run again, each with its record.
    audit.failing.store(false, Ordering::SeqCst);
    let ok = raw.query(&token, "select 43").await;
    assert_eq!(ok.json["success"], true, "{:#}", ok.json);
    assert_eq!(audit.statement_hashes(), vec![sha256_hex("select 43")]);
}

#[tokio::test]
async fn async_results_fetched_later_and_multi_statements_are_recorded() {
    let rig = rig(|_| {}).await;
    rig.auth
        .grant("G-async-1", "ANALYST", Duration::from_secs(600));
    let audit = Arc::new(Recording::default());
    let gw = start_audited_gateway_to(&rig.sf.url(), rig.auth.clone(), audit.clone(), |_| {});
    let raw = Raw::new(&gw.url());
    let (token, _) = raw.login("ANALYST").await;

    let submitted = raw
        .post(
            "/queries/v1/query-request?requestId=a-1",
            Some(&token),
            json!({"sqlText": "select 7", "sequenceId": 1, "asyncExec": true}),
        )
        .await;
    assert_eq!(submitted.json["success"], true, "{:#}", submitted.json);
    let query_id = submitted.json["data"]["queryId"]
        .as_str()
        .unwrap()
        .to_string();
    // Fetched by the path Snowflake gave, and by a spelling with a doubled slash.
    for path in [
        format!("/queries/{query_id}/result"),
        format!("//queries/{query_id}//result"),
    ] {
        let fetched = send_raw(gw.addr, "GET", &path, &token, "").await;
        assert_eq!(fetched["success"], true, "{path}: {fetched:#}");
    }
    let kept = audit.kept.lock().unwrap().clone();
    assert!(kept.iter().any(|e| matches!(e,
        GatewayEvent::Statement { is_async: true, request_id: Some(r), .. } if r == "a-1")));
    let fetches = kept
        .iter()
        .filter(|e| matches!(e, GatewayEvent::ResultFetched { query_id: q, .. } if *q == query_id))
        .count();
    assert_eq!(fetches, 2, "{kept:#?}");

    // A multi-statement request: one record per statement, each with its own hash, before
    // it is sent; text the parser can't split keeps one record for the whole request.
    for (id, sql) in [
        ("m-1", "select 1; select 'a;b'"),
        ("m-2", "select 1; frobnicate"),
    ] {
        raw.post(
            &format!("/queries/v1/query-request?requestId={id}"),
            Some(&token),
            json!({"sqlText": sql, "sequenceId": 2,
                   "parameters": {"MULTI_STATEMENT_COUNT": 2}}),
        )
        .await;
    }
    let kept = audit.kept.lock().unwrap().clone();
    let of = |id: &str| -> Vec<_> {
        kept.iter()
            .filter_map(|e| match e {
                GatewayEvent::Statement {
                    request_id: Some(r),
                    multi_statement,
                    part,
                    sql_sha256,
                    ..
                } if r == id => Some((*multi_statement, *part, sql_sha256.clone())),
                _ => None,
            })
            .collect()
    };
    let sha = |s: &str| -> String {
        use sha2::Digest;
        sha2::Sha256::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(
        of("m-1"),
        vec![
            (Some(2), Some((1, 2)), sha("select 1")),
            (Some(2), Some((2, 2)), sha("select 'a;b'")),
        ]
    );
    assert_eq!(
        of("m-2"),
        vec![(Some(2), None, sha("select 1; frobnicate"))]
    );
}

#[tokio::test]
async fn a_request_setting_its_own_query_tag_is_refused_and_recorded() {
    let rig = rig(|_| {}).await;
    rig.auth
        .grant("G-tag-2", "ANALYST", Duration::from_secs(600));
    let audit = Arc::new(Recording::default());
    let gw = start_audited_gateway_to(&rig.sf.url(), rig.auth.clone(), audit.clone(), |_| {});
    let raw = Raw::new(&gw.url());
    let (token, _) = raw.login("ANALYST").await;
    for (i, key) in ["QUERY_TAG", "query_tag", "Query_Tag"].iter().enumerate() {
        let answer = raw
            .post(
                &format!("/queries/v1/query-request?requestId=t-{i}"),
                Some(&token),
                json!({"sqlText": "select 1", "sequenceId": i + 1,
                       "parameters": {*key: "mine"}}),
            )
            .await;
        assert_eq!(answer.json["success"], false, "{key}: {:#}", answer.json);
        assert_eq!(answer.json["code"], "390530", "{key}: {:#}", answer.json);
    }
    let kept = audit.kept.lock().unwrap().clone();
    let refused = kept
        .iter()
        .filter(|e| matches!(e, GatewayEvent::StatementRefused { rule, .. } if rule.contains("QUERY_TAG")))
        .count();
    assert_eq!(refused, 3, "{kept:#?}");
    assert!(
        !kept
            .iter()
            .any(|e| matches!(e, GatewayEvent::Statement { .. })),
        "{kept:#?}"
    );
    assert!(rig.sessions().await.iter().all(|s| s.statements.is_empty()));
}
