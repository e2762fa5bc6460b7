//! `snowgate mcp` end to end: rmcp's own client against the real `snowgate mcp`, over stdio
//! (spawned as a child process, the agent's secret read from the rig's keyring) and over
//! Streamable HTTP with the agent's secret as the bearer; behind it the real broker, IdP,
//! keyring and the Snowflake front (fakesnow), reached only through the broker's gateway.

use std::process::Stdio;
use std::time::Duration;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use snowgate_rig::free_port;
use tokio::io::{AsyncBufReadExt, BufReader};

mod support;
use support::{stop, Rig};

type Client = RunningService<RoleClient, ()>;

async fn call(client: &Client, tool: &str, args: Value) -> CallToolResult {
    let mut params = CallToolRequestParams::new(tool.to_string());
    params.arguments = args.as_object().cloned();
    tokio::time::timeout(Duration::from_secs(60), client.call_tool(params))
        .await
        .unwrap_or_else(|_| panic!("{tool} did not answer within 60 s"))
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The call succeeded; its structured answer.
fn ok(r: &CallToolResult) -> Value {
    assert_eq!(r.is_error, Some(false), "{}", text(r));
    r.structured_content.clone().unwrap_or(Value::Null)
}

/// The call was refused with a tool error; its sentence.
fn refused(r: &CallToolResult) -> String {
    assert_eq!(r.is_error, Some(true), "expected a refusal: {}", text(r));
    text(r)
}

/// `snowgate agent add NAME ARGS...`; returns the secret.
async fn add_agent(rig: &Rig, name: &str, args: &[&str]) -> String {
    let mut all = vec!["agent", "add", name];
    all.extend_from_slice(args);
    let out = rig.ok(&all).await;
    let secret = out.trim().to_string();
    assert!(secret.starts_with("sga_"), "{out}");
    secret
}

/// A signed-in rig with ANALYST granted (approved at once by policy) and a table of 20 orders.
async fn orders_rig() -> (Rig, tokio::process::Child) {
    let rig = Rig::start().await;
    let broker = rig.broker().await;
    rig.login("alice").await;
    rig.request("ANALYST", "1h").await;
    (rig, broker)
}

async fn stdio_client(rig: &Rig, agent: &str) -> Client {
    let mut cmd = rig.snowgate(&["mcp", "--agent", agent]);
    cmd.env("RUST_LOG", "info");
    let (transport, _) = TokioChildProcess::builder(cmd)
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    tokio::time::timeout(Duration::from_secs(30), ().serve(transport))
        .await
        .expect("the MCP handshake over stdio took over 30 s")
        .expect("the MCP handshake over stdio failed")
}

#[tokio::test]
async fn an_agent_over_stdio_lists_describes_queries_under_its_caps_and_asks_for_access() {
    let (rig, broker) = orders_rig().await;
    add_agent(
        &rig,
        "claude",
        &["--roles", "ANALYST,ENGINEER", "--max-rows", "5"],
    )
    .await;
    let client = stdio_client(&rig, "claude").await;

    let mut tools: Vec<String> = client
        .list_all_tools()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    tools.sort();
    assert_eq!(
        tools,
        [
            "access",
            "cancel_query",
            "describe",
            "query_status",
            "request_access",
            "run_query"
        ]
    );

    let access = call(&client, "access", json!({})).await;
    let a = ok(&access);
    assert_eq!(a["agent"], "claude");
    assert_eq!(a["max_rows"], 5);
    assert_eq!(a["active_grants"][0]["role"], "ANALYST", "{a:#}");

    // Make the data: 20 rows, more than the agent's cap of 5.
    let created = call(
        &client,
        "run_query",
        json!({"sql": "CREATE TABLE orders (id INTEGER, note VARCHAR)"}),
    )
    .await;
    ok(&created);
    let values: Vec<String> = (1..=20).map(|i| format!("({i}, 'order {i}')")).collect();
    let inserted = call(
        &client,
        "run_query",
        json!({"sql": format!("INSERT INTO orders VALUES {}", values.join(", "))}),
    )
    .await;
    ok(&inserted);

    // A result larger than the cap: 5 rows, a TRUNCATED note, columns with types, a query id.
    let sql = "SELECT id, note FROM orders ORDER BY id";
    let r = call(&client, "run_query", json!({"sql": sql, "role": "ANALYST"})).await;
    let q = ok(&r);
    assert_eq!(q["row_count"], 5, "{q:#}");
    assert_eq!(q["truncated"], true, "{q:#}");
    assert_eq!(q["rows"][4], json!(["5", "order 5"]), "{q:#}");
    assert_eq!(q["columns"][0]["name"], "ID", "{q:#}");
    assert_eq!(q["columns"][1]["name"], "NOTE", "{q:#}");
    assert!(
        q["columns"][1]["type"].as_str().unwrap().contains("TEXT"),
        "{q:#}"
    );
    let query_id = q["query_id"].as_str().expect("a query id").to_string();
    let t = text(&r);
    assert!(t.contains(&format!("query id: {query_id}")), "{t}");
    assert!(
        t.contains("TRUNCATED: showing the first 5 of 20 rows"),
        "{t}"
    );
    assert!(
        t.contains("| 5 | order 5 |") && !t.contains("order 6"),
        "{t}"
    );

    // Within the cap: no note.
    let r = call(
        &client,
        "run_query",
        json!({"sql": "SELECT id FROM orders WHERE id <= 3"}),
    )
    .await;
    let q = ok(&r);
    assert_eq!(
        (q["row_count"].clone(), q["truncated"].clone()),
        (json!(3), json!(false))
    );

    // Describe a table: its columns.
    let r = call(&client, "describe", json!({"table": "orders"})).await;
    let d = ok(&r);
    let names: Vec<&str> = d["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|row| row[0].as_str())
        .collect();
    assert_eq!(names, ["ID", "NOTE"], "{d:#}");

    // Snowflake's error, said plainly.
    let r = call(
        &client,
        "run_query",
        json!({"sql": "SELECT * FROM no_such_table"}),
    )
    .await;
    let why = refused(&r);
    assert!(
        why.contains("The statement was refused or failed (as ANALYST)"),
        "{why}"
    );
    assert!(why.to_lowercase().contains("no_such_table"), "{why}");

    // A role outside the agent's policy is refused before anything is sent.
    let r = call(
        &client,
        "run_query",
        json!({"sql": "SELECT 1", "role": "SYSADMIN"}),
    )
    .await;
    assert!(refused(&r).contains("agent claude may not use role SYSADMIN"));

    // A long query: answered "still running" with its id, its status, then cancelled.
    let r = call(
        &client,
        "run_query",
        json!({"sql": "SELECT SYSTEM$WAIT(60)", "wait_seconds": 1}),
    )
    .await;
    let running = ok(&r);
    assert_eq!(running["status"], "RUNNING", "{running:#}");
    let long_id = running["query_id"].as_str().unwrap().to_string();
    let r = call(&client, "query_status", json!({"query_id": long_id})).await;
    assert_eq!(ok(&r)["status"], "RUNNING", "{}", text(&r));
    let r = call(&client, "cancel_query", json!({"query_id": long_id})).await;
    assert_eq!(ok(&r)["cancelled"], true);
    let r = call(&client, "query_status", json!({"query_id": long_id})).await;
    let s = ok(&r);
    assert_eq!(s["status"], "FAILED_WITH_ERROR", "{s:#}");
    assert!(text(&r).contains("SQL execution canceled"), "{}", text(&r));
    // A finished query's status carries its (capped) result.
    let r = call(&client, "query_status", json!({"query_id": query_id})).await;
    let s = ok(&r);
    assert_eq!(
        (s["status"].clone(), s["row_count"].clone()),
        (json!("SUCCESS"), json!(5))
    );

    // Asking for ENGINEER: no auto-approval, so it waits for a person, marked as the agent's.
    let r = call(
        &client,
        "request_access",
        json!({"role": "ENGINEER", "duration": "30m", "reason": "inspect the load jobs"}),
    )
    .await;
    let g = ok(&r);
    assert_eq!(g["grant"]["state"], "pending", "{g:#}");
    assert!(
        text(&r).contains("waits for a person's decision"),
        "{}",
        text(&r)
    );
    let grants = rig.grants_all().await;
    let engineer = grants
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["role"] == "ENGINEER")
        .expect("the ENGINEER request");
    assert_eq!(
        engineer["reason"], "requested by agent claude: inspect the load jobs",
        "{engineer:#}"
    );
    let r = call(
        &client,
        "request_access",
        json!({"role": "SYSADMIN", "duration": "30m", "reason": "x"}),
    )
    .await;
    assert!(refused(&r).contains("may not use role SYSADMIN"));
    let r = call(
        &client,
        "request_access",
        json!({"role": "ANALYST", "duration": "soon", "reason": "x"}),
    )
    .await;
    assert!(refused(&r).contains("duration \"soon\""));

    // The agent's statements are in Snowgate's audit log (by their SHA-256), from its session.
    let audit: Value = serde_json::from_str(&rig.ok(&["audit", "--json"]).await).unwrap();
    let digest: String = Sha256::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let statement = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "session.statement" && r["details"]["statement_sha256"] == digest)
        .unwrap_or_else(|| panic!("no audit record of {sql:?}: {audit:#}"));
    assert_eq!(statement["role"], "ANALYST", "{statement:#}");
    assert_eq!(statement["details"]["agent"], "claude", "{statement:#}");
    // At Snowflake, the session's QUERY_TAG names the grant and the agent.
    let sessions = rig.sf.sessions().await.unwrap();
    let mcp_session = sessions
        .iter()
        .find(|s| s.client_app_id.as_deref() == Some("SnowgateMCP"))
        .expect("the MCP server's session at the front");
    let tag = mcp_session.login_query_tag.as_deref().unwrap_or_default();
    assert!(
        tag.starts_with("snowgate:grant=g_") && tag.ends_with(";agent=claude"),
        "{tag}"
    );
    assert!(
        statement["details"]["tool"]
            .as_str()
            .unwrap()
            .contains("SnowgateMCP"),
        "{statement:#}"
    );

    // Removing the agent refuses its next call.
    rig.ok(&["agent", "remove", "claude"]).await;
    let r = call(&client, "run_query", json!({"sql": "SELECT 1"})).await;
    let why = refused(&r);
    assert!(why.contains("not one Snowgate knows"), "{why}");

    client.cancel().await.unwrap();
    stop(broker).await;
}

#[tokio::test]
async fn a_chunked_result_is_fetched_only_as_far_as_the_caps_reach() {
    // The front splits JSON results like Snowflake: 10 rows inline, then chunks of 10 at its
    // storage. It answers Arrow unless a client asks for JSON, as `snowgate mcp` does at login.
    let rig = Rig::start_front_args(&["--chunk-rows", "10"]).await;
    let broker = rig.broker().await;
    rig.login("alice").await;
    rig.request("ANALYST", "1h").await;
    add_agent(&rig, "capped", &["--roles", "ANALYST", "--max-rows", "25"]).await;
    let roomy_secret = add_agent(&rig, "roomy", &["--roles", "ANALYST"]).await;
    let capped = stdio_client(&rig, "capped").await;
    let values: Vec<String> = (1..=100).map(|i| format!("({i})")).collect();
    for sql in [
        "CREATE TABLE events (n INTEGER)".to_string(),
        format!("INSERT INTO events VALUES {}", values.join(", ")),
    ] {
        ok(&call(&capped, "run_query", json!({ "sql": sql })).await);
    }
    let sql = "SELECT n FROM events ORDER BY n";

    // 25 rows: the inline 10 and two chunks; the seven chunks after them are never fetched.
    let q = ok(&call(&capped, "run_query", json!({ "sql": sql })).await);
    assert_eq!(
        (q["row_count"].clone(), q["truncated"].clone()),
        (json!(25), json!(true))
    );
    let got: Vec<&str> = q["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r[0].as_str().unwrap())
        .collect();
    let want: Vec<String> = (1..=25).map(|i| i.to_string()).collect();
    assert_eq!(got, want);
    let fetches = rig.sf.chunk_fetches().await.unwrap();
    let indexes: Vec<usize> = fetches.iter().map(|f| f.index).collect();
    assert_eq!(indexes, [0, 1], "{fetches:#?}");

    // Without a small cap, every chunk is fetched, in order.
    let roomy = stdio_client(&rig, "roomy").await;
    let q = ok(&call(&roomy, "run_query", json!({ "sql": sql })).await);
    assert_eq!(
        (q["row_count"].clone(), q["truncated"].clone()),
        (json!(100), json!(false))
    );
    assert_eq!(q["rows"][99][0], "100");
    let fetches = rig.sf.chunk_fetches().await.unwrap();
    let indexes: Vec<usize> = fetches[2..].iter().map(|f| f.index).collect();
    assert_eq!(indexes, (0..9).collect::<Vec<_>>(), "{fetches:#?}");

    capped.cancel().await.unwrap();
    roomy.cancel().await.unwrap();

    // stdio needs the named agent's own secret, and says so.
    let (ok, _, err) = rig.run(&["mcp", "--agent", "ghost"]).await;
    assert!(
        !ok && err.contains("no secret for agent ghost in the OS keyring"),
        "{err}"
    );
    let out = rig
        .snowgate(&["mcp", "--agent", "capped"])
        .env("SNOWGATE_AGENT_SECRET", &roomy_secret)
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("the secret given is agent roomy's, not capped's"),
        "{err}"
    );
    assert!(!err.contains(&roomy_secret), "{err}");
    stop(broker).await;
}

/// Starts `snowgate mcp --http 127.0.0.1:PORT`; returns it and the MCP URL.
async fn http_server(rig: &Rig) -> (tokio::process::Child, String) {
    let port = free_port().unwrap();
    let mut child = rig
        .snowgate(&["mcp", "--http", &format!("127.0.0.1:{port}")])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("snowgate mcp --http said nothing within 20 s")
        .unwrap()
        .unwrap_or_default();
    let url = format!("http://127.0.0.1:{port}/mcp");
    assert!(line.contains(&url), "{line}");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, url)
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "probe", "version": "1"}}})
}

#[tokio::test]
async fn an_agent_over_http_needs_its_secret_as_the_bearer_and_a_loopback_host_without_origin() {
    let (rig, broker) = orders_rig().await;
    let secret = add_agent(
        &rig,
        "cursor",
        &["--roles", "ANALYST", "--max-rows", "2", "--read-only"],
    )
    .await;
    let (mut server, url) = http_server(&rig).await;

    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.clone()).auth_header(secret.clone()),
    );
    let client: Client = tokio::time::timeout(Duration::from_secs(30), ().serve(transport))
        .await
        .unwrap()
        .expect("the MCP handshake over HTTP failed");
    let tools = client.list_all_tools().await.unwrap();
    assert_eq!(tools.len(), 6);
    let a = ok(&call(&client, "access", json!({})).await);
    assert_eq!(a["agent"], "cursor");
    let r = call(
        &client,
        "run_query",
        json!({"sql": "SELECT * FROM (VALUES (1), (2), (3)) AS t(n)"}),
    )
    .await;
    let q = ok(&r);
    assert_eq!(
        (q["row_count"].clone(), q["truncated"].clone()),
        (json!(2), json!(true)),
        "{q:#}"
    );
    // A read-only agent's DDL is refused by the gateway's SQL policy, and the agent is told why.
    let r = call(
        &client,
        "run_query",
        json!({"sql": "CREATE TABLE t (a INTEGER)"}),
    )
    .await;
    let why = refused(&r);
    assert!(why.contains("agent cursor is read-only"), "{why}");
    assert!(why.contains("(Snowflake code 390530)"), "{why}");
    client.cancel().await.unwrap();

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let post = |bearer: Option<&str>, extra: &[(&str, &str)]| {
        let mut r = http
            .post(&url)
            .header("accept", "application/json, text/event-stream")
            .header("content-type", "application/json")
            .body(initialize().to_string());
        if let Some(b) = bearer {
            r = r.header("authorization", format!("Bearer {b}"));
        }
        for (k, v) in extra {
            r = r.header(*k, *v);
        }
        r.send()
    };
    // The right bearer starts a session; a wrong one, or none, is refused with 401.
    let r = post(Some(&secret), &[]).await.unwrap();
    assert_eq!(r.status(), 200);
    let mut wrong = secret.clone();
    wrong.pop();
    wrong.push(if secret.ends_with('A') { 'B' } else { 'A' });
    for bearer in [Some(wrong.as_str()), None] {
        let r = post(bearer, &[]).await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().contains_key("www-authenticate"));
        let body = r.text().await.unwrap();
        assert!(body.contains("Snowgate"), "{body}");
        assert!(!body.contains(&wrong), "{body}");
    }
    // rmcp's client with a wrong bearer does not get a session either.
    let transport = StreamableHttpClientTransport::from_config(
        StreamableHttpClientTransportConfig::with_uri(url.clone()).auth_header(wrong.clone()),
    );
    assert!(().serve(transport).await.is_err());
    // A web page can't call it: Origin or Sec-Fetch-* is refused, and so is a foreign Host
    // (DNS rebinding), whatever the bearer.
    for extra in [
        [("origin", "https://evil.example")],
        [("sec-fetch-mode", "cors")],
        [("host", "evil.example")],
    ] {
        let r = post(Some(&secret), &extra).await.unwrap();
        assert_eq!(r.status(), 403, "{extra:?}");
        let body = r.text().await.unwrap();
        assert!(body.contains("refused"), "{body}");
    }

    // Another local OS user reaches it on the agent's secret alone (the gateway itself admits
    // only the user who runs Snowgate), and is refused without it.
    let as_nobody = |bearer: Option<&str>| {
        let mut cmd = tokio::process::Command::new("setpriv");
        cmd.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "curl",
            "-s",
        ])
        .args(["-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .args(["-H", "content-type: application/json"])
        .args(["-H", "accept: application/json, text/event-stream"])
        .args(["--data", &initialize().to_string()]);
        if let Some(b) = bearer {
            cmd.args(["-H", &format!("authorization: Bearer {b}")]);
        }
        cmd.arg(&url).env_clear().output()
    };
    let out = as_nobody(Some(&secret)).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200", "{out:?}");
    let out = as_nobody(None).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401", "{out:?}");

    // An agent that expired is refused at the door.
    let brief = add_agent(&rig, "brief", &["--roles", "ANALYST", "--expires", "1s"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = post(Some(&brief), &[]).await.unwrap();
    assert_eq!(r.status(), 401);
    let body = r.text().await.unwrap();
    assert!(body.contains("agent brief expired"), "{body}");

    let _ = server.kill().await;
    stop(broker).await;
}
