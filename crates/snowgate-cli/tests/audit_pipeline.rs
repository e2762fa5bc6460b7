//! The audit pipeline end to end: the real broker (`snowgate up`) with its SQLite ledger, the
//! rig's IdP, keyring and Snowflake front, and statements sent straight to the gateway as fast
//! as several connections allow. Records are read back through `snowgate audit`, never from a
//! counter.

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::Rig;

/// A tool's connection to the gateway: one keep-alive HTTP connection.
struct Tool {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Tool {
    async fn connect(rig: &Rig) -> Tool {
        let http = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(1)
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let base = rig.gateway_url();
        let answer: Value = http
            .post(format!(
                "{base}/session/v1/login-request?roleName=ANALYST&requestId=login"
            ))
            .json(&json!({"data": {
                "CLIENT_APP_ID": "LoadTest",
                "CLIENT_APP_VERSION": "1.0",
                "ACCOUNT_NAME": "rigacct",
                "LOGIN_NAME": "anyone",
                "PASSWORD": "any-password",
                "SESSION_PARAMETERS": {}
            }}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["success"], true, "{answer:#}\n{}", rig.log_tail());
        Tool {
            http,
            base,
            token: answer["data"]["token"].as_str().unwrap().to_string(),
        }
    }

    /// Sends one statement; `Ok(answer)` when an answer came back at all.
    async fn query(&self, request_id: &str, sql: &str) -> Result<Value, String> {
        let resp = self
            .http
            .post(format!(
                "{}/queries/v1/query-request?requestId={request_id}",
                self.base
            ))
            .header(
                "authorization",
                format!("Snowflake Token=\"{}\"", self.token),
            )
            .json(&json!({"sqlText": sql, "sequenceId": 1, "asyncExec": false}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        resp.json().await.map_err(|e| e.to_string())
    }
}

/// Runs `per_conn` statements on each of `conns` connections at once, and returns the request
/// ids whose answer reached the tool as a success. Stops a connection at its first failure
/// (the broker was killed) when `stop_on_error`.
async fn load(
    rig: &Rig,
    conns: usize,
    per_conn: usize,
    answered: Arc<Mutex<Vec<String>>>,
    stop_on_error: bool,
) {
    let mut tools = Vec::new();
    for _ in 0..conns {
        tools.push(Tool::connect(rig).await);
    }
    let mut tasks = Vec::new();
    for (c, tool) in tools.into_iter().enumerate() {
        let answered = answered.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_conn {
                let id = format!("load-{c}-{i}");
                match tool.query(&id, &format!("select {i}")).await {
                    Ok(a) if a["success"] == true => answered.lock().unwrap().push(id),
                    Ok(a) if !stop_on_error => panic!("statement {id} failed: {a:#}"),
                    Err(e) if !stop_on_error => panic!("statement {id} failed: {e}"),
                    _ => return,
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// The statement records in the audit log, by request id (each with how often it appears).
async fn statement_records(rig: &Rig) -> HashMap<String, usize> {
    records_by_request(rig, "session.statement").await
}

/// How many records of `kind` each request id has, read back through `snowgate audit`.
async fn records_by_request(rig: &Rig, kind: &str) -> HashMap<String, usize> {
    let audit: Value = serde_json::from_str(&rig.ok(&["audit", "--json"]).await).unwrap();
    let mut by_id = HashMap::new();
    for r in audit.as_array().unwrap() {
        if r["kind"] == kind {
            let id = r["details"]["request_id"]
                .as_str()
                .unwrap_or("")
                .to_string();
            *by_id.entry(id).or_insert(0) += 1;
        }
    }
    by_id
}

async fn signed_in_with_a_grant(rig: &Rig) {
    rig.login("alice").await;
    rig.request("ANALYST", "30m").await;
}

/// Context switches so far of each of the process's threads named `snowgate-gw-N` (the
/// gateway's serving threads), by name.
fn serving_threads(pid: u32) -> HashMap<String, u64> {
    let mut out = HashMap::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).unwrap() {
        let dir = task.unwrap().path();
        let Ok(name) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        let name = name.trim();
        if !name.starts_with("snowgate-gw-") {
            continue;
        }
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let switches = status
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| l.split_whitespace().last()?.parse::<u64>().ok())
            .sum();
        out.insert(name.to_string(), switches);
    }
    out
}

#[tokio::test]
async fn every_statement_under_load_has_exactly_one_record_and_the_log_verifies() {
    // Three serving threads for four connections: the load runs on all of them at once.
    let rig = Rig::start_with(
        snowgate_rig::secret_service::KeyringState::Unlocked,
        "threads = 3",
        "info",
    )
    .await;
    let broker = rig.broker().await;
    let pid = broker.id().unwrap();
    signed_in_with_a_grant(&rig).await;

    let before = serving_threads(pid);
    let mut names: Vec<&String> = before.keys().collect();
    names.sort();
    assert_eq!(
        names,
        ["snowgate-gw-0", "snowgate-gw-1", "snowgate-gw-2"],
        "[gateway] threads = 3"
    );
    let answered = Arc::new(Mutex::new(Vec::new()));
    load(&rig, 4, 60, answered.clone(), false).await;
    let answered = answered.lock().unwrap().clone();
    assert_eq!(answered.len(), 240);
    // Each thread served at least one connection's 60 statements, waiting for the tool or for
    // Snowflake between them.
    let after = serving_threads(pid);
    for (name, n) in &before {
        assert!(
            after[name] >= n + 60,
            "{name} served no connection: {before:?} -> {after:?}"
        );
    }

    let records = statement_records(&rig).await;
    let total: usize = records.values().sum();
    assert_eq!(total, 240, "statement records: {records:?}");
    for id in &answered {
        assert_eq!(records.get(id), Some(&1), "request {id}");
    }
    // And each answer's query id once (those records are held for the journal's next write).
    let query_ids = records_by_request(&rig, "session.statement_answered").await;
    for id in &answered {
        assert_eq!(
            query_ids.get(id),
            Some(&1),
            "query id of request {id}: {query_ids:?}"
        );
    }
    let verify = rig.ok(&["audit", "verify"]).await;
    assert!(verify.contains("intact"), "{verify}");
    support::stop(broker).await;
}

#[tokio::test]
async fn after_kill_9_mid_load_every_answered_statement_has_its_record() {
    let rig = Rig::start_with(
        snowgate_rig::secret_service::KeyringState::Unlocked,
        "",
        "info",
    )
    .await;
    let mut broker = rig.broker().await;
    signed_in_with_a_grant(&rig).await;

    let answered = Arc::new(Mutex::new(Vec::new()));
    // Load on this task, the kill from another once some statements went through.
    let kill = {
        let answered = answered.clone();
        async move {
            loop {
                if answered.lock().unwrap().len() >= 50 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            broker.start_kill().unwrap();
            broker.wait().await.unwrap();
        }
    };
    tokio::join!(load(&rig, 4, 1000, answered.clone(), true), kill);
    let answered = answered.lock().unwrap().clone();
    assert!(answered.len() >= 50, "{}", answered.len());
    assert!(answered.len() < 4000, "the broker was not killed mid-load");

    let broker = rig.broker().await;
    let records = statement_records(&rig).await;
    let missing: Vec<&String> = answered
        .iter()
        .filter(|id| !records.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} answered statements have no record: {missing:?}",
        missing.len(),
        answered.len()
    );
    let verify = rig.ok(&["audit", "verify"]).await;
    assert!(verify.contains("intact"), "{verify}");
    support::stop(broker).await;
}

/// Runs `snowgate up` in a mount namespace of its own, with its data dir on a `size` tmpfs
/// that disappears with it. Returns the broker and its pid (for `nsenter`).
async fn broker_on_tmpfs(rig: &Rig, size: &str) -> (tokio::process::Child, u32) {
    let data = rig.dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(rig.dir.path().join("broker.log"))
        .unwrap();
    let child = tokio::process::Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -t tmpfs -o size={size},mode=0700 snowgate-test \"$SNOWGATE_DATA_DIR\" && exec \"$0\" up"
        ))
        .arg(env!("CARGO_BIN_EXE_snowgate"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(rig.env())
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    for _ in 0..400 {
        if rig.run(&["status"]).await.0 {
            return (child, pid);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the broker did not start on its tmpfs: {}", rig.log_tail());
}

/// Runs `script` in the broker's mount namespace (where its tmpfs is).
async fn in_broker_namespace(pid: u32, data: &std::path::Path, script: &str) {
    let out = tokio::process::Command::new("nsenter")
        .args(["-t", &pid.to_string(), "-m", "sh", "-c", script])
        .env("DATA", data)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.code().is_some(),
        "nsenter failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn on_a_full_disk_statements_are_refused_with_the_reason_and_none_runs_unrecorded() {
    let rig = Rig::start_with(
        snowgate_rig::secret_service::KeyringState::Unlocked,
        "",
        "info",
    )
    .await;
    let (broker, pid) = broker_on_tmpfs(&rig, "4m").await;
    signed_in_with_a_grant(&rig).await;
    let tool = Tool::connect(&rig).await;
    let first = tool.query("full-0", "select 0").await.unwrap();
    assert_eq!(first["success"], true, "{first:#}");

    let data = rig.dir.path().join("data");
    in_broker_namespace(
        pid,
        &data,
        "dd if=/dev/zero of=\"$DATA/filler\" bs=4k 2>/dev/null; true",
    )
    .await;

    // Statements until one is refused (pages the ledger already holds may take a few more).
    let mut refusal = None;
    for i in 1..400 {
        let a = tool
            .query(&format!("full-{i}"), &format!("select {i}"))
            .await
            .unwrap();
        if a["success"] != true {
            refusal = Some((i, a));
            break;
        }
    }
    let (refused_i, refusal) = refusal.expect("no statement was refused on a full disk");
    assert_eq!(refusal["code"], "390520", "{refusal:#}");
    let msg = refusal["message"].as_str().unwrap();
    assert!(
        msg.contains("audit log") && msg.contains("full"),
        "the refusal does not say why: {msg}"
    );
    let status = rig.ok(&["status"]).await;
    assert!(
        status.contains("audit log: records can't be written"),
        "{status}"
    );

    // Everything Snowflake ran has its record; nothing was forwarded without one.
    let records = statement_records(&rig).await;
    let front = rig.sf.sessions().await.unwrap();
    let ran: Vec<String> = front
        .iter()
        .filter(|s| s.client_app_id.as_deref() == Some("LoadTest"))
        .flat_map(|s| s.statements.iter().map(|st| st.sql.clone()))
        .collect();
    assert!(!ran.is_empty());
    for sql in &ran {
        let i = sql.trim_start_matches("select ");
        assert!(
            records.contains_key(&format!("full-{i}")),
            "{sql} ran without a record"
        );
    }
    assert!(
        !ran.contains(&format!("select {refused_i}")),
        "the refused statement reached Snowflake"
    );
    assert!(!records.contains_key(&format!("full-{refused_i}")));

    // Room again: statements run again, and the status no longer complains.
    in_broker_namespace(pid, &data, "rm -f \"$DATA/filler\"").await;
    let again = tool.query("full-again", "select 'again'").await.unwrap();
    assert_eq!(again["success"], true, "{again:#}");
    let status = rig.ok(&["status"]).await;
    assert!(
        !status.contains("audit log: records can't be written"),
        "{status}"
    );
    let verify = rig.ok(&["audit", "verify"]).await;
    assert!(verify.contains("intact"), "{verify}");
    support::stop(broker).await;
}

#[tokio::test]
async fn a_multi_statement_request_has_one_record_per_statement_in_snowgate_audit() {
    let rig = Rig::start_with(
        snowgate_rig::secret_service::KeyringState::Unlocked,
        "",
        "info",
    )
    .await;
    let broker = rig.broker().await;
    signed_in_with_a_grant(&rig).await;
    let tool = Tool::connect(&rig).await;
    tool.http
        .post(format!(
            "{}/queries/v1/query-request?requestId=multi-1",
            tool.base
        ))
        .header(
            "authorization",
            format!("Snowflake Token=\"{}\"", tool.token),
        )
        .json(
            &json!({"sqlText": "select 1; select 2; select 3", "sequenceId": 1,
                      "parameters": {"MULTI_STATEMENT_COUNT": 3}}),
        )
        .send()
        .await
        .unwrap();
    let audit: Value = serde_json::from_str(&rig.ok(&["audit", "--json"]).await).unwrap();
    let mut parts: Vec<(u64, u64)> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "session.statement" && r["details"]["request_id"] == "multi-1")
        .map(|r| {
            (
                r["details"]["statement_index"].as_u64().unwrap(),
                r["details"]["statement_total"].as_u64().unwrap(),
            )
        })
        .collect();
    parts.sort_unstable();
    assert_eq!(parts, vec![(1, 3), (2, 3), (3, 3)], "{audit:#}");
    let verify = rig.ok(&["audit", "verify"]).await;
    assert!(verify.contains("intact"), "{verify}");
    support::stop(broker).await;
}
