//! `snowgate mcp` with the official MCP Python SDK as the client (`tests/clients/mcp_client.py`,
//! `mcp` pinned in `tests/clients/requirements-mcp.txt`): over stdio, the client spawning
//! `snowgate mcp --agent NAME`, and over Streamable HTTP with the agent's secret as the bearer,
//! the client running as another OS user. Behind it the real broker, IdP, keyring and the
//! Snowflake front in its default mode (Arrow unless a client asks for JSON, as `snowgate mcp`
//! does at login).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use snowgate_rig::free_port;
use snowgate_rig::paths::{mcp_venv, tests_dir, SETUP_HINT};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

mod support;
use support::{stop, Rig};

/// The Python client, connected: steps go in as JSON lines, answers come back the same way.
struct PyClient {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl PyClient {
    /// Starts `mcp_client.py ARGS` with `env` only; returns it and its first line (ready or
    /// the reason it could not start).
    async fn start(
        args: &[&str],
        env: Vec<(String, String)>,
        prefix: &[&str],
        cwd: &Path,
    ) -> (PyClient, Value) {
        let python = mcp_venv().join("bin/python");
        assert!(
            python.exists(),
            "the MCP Python SDK's venv is missing; {SETUP_HINT}"
        );
        let script = tests_dir().join("clients/mcp_client.py");
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(&python);
                c
            }
            None => Command::new(&python),
        };
        cmd.arg(&script)
            .args(args)
            .env_clear()
            .envs(env)
            .current_dir(cwd)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("the Python MCP client starts");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut client = PyClient {
            child,
            stdin,
            lines,
        };
        let first = client.read().await;
        (client, first)
    }

    async fn read(&mut self) -> Value {
        let line = tokio::time::timeout(Duration::from_secs(90), self.lines.next_line())
            .await
            .expect("the Python MCP client answered nothing within 90 s")
            .unwrap()
            .expect("the Python MCP client ended without an answer");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    async fn send(&mut self, step: Value) {
        self.stdin
            .write_all(format!("{step}\n").as_bytes())
            .await
            .unwrap();
        self.stdin.flush().await.unwrap();
    }

    async fn step(&mut self, step: Value) -> Value {
        self.send(step).await;
        self.read().await
    }

    async fn call(&mut self, tool: &str, args: Value) -> Value {
        let a = self
            .step(json!({"op": "call", "tool": tool, "args": args}))
            .await;
        assert!(a.get("error").is_none(), "{tool}: {a:#}");
        a
    }

    /// The call succeeded; its structured answer.
    async fn ok(&mut self, tool: &str, args: Value) -> Value {
        let a = self.call(tool, args).await;
        assert_eq!(a["is_error"], false, "{tool}: {}", a["text"]);
        a
    }

    /// The call was refused with a tool error; its sentence.
    async fn refused(&mut self, tool: &str, args: Value) -> String {
        let a = self.call(tool, args).await;
        assert_eq!(a["is_error"], true, "{tool} was not refused: {a:#}");
        a["text"].as_str().unwrap().to_string()
    }

    async fn close(mut self) {
        drop(self.stdin);
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
        let _ = self.child.kill().await;
    }
}

/// `snowgate agent add NAME ARGS...`; returns the secret.
async fn add_agent(rig: &Rig, name: &str, args: &[&str]) -> String {
    let mut all = vec!["agent", "add", name];
    all.extend_from_slice(args);
    let secret = rig.ok(&all).await.trim().to_string();
    assert!(secret.starts_with("sga_"));
    secret
}

/// The environment the rig's own `snowgate` runs with.
fn rig_env(rig: &Rig) -> Vec<(String, String)> {
    let mut env = rig.env();
    env.push(("PATH".into(), std::env::var("PATH").unwrap_or_default()));
    env.push(("RUST_LOG".into(), "warn".into()));
    env
}

fn sha256(s: &str) -> String {
    Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The audit record of the statement `sql`, which must name `agent`.
async fn audited_for(rig: &Rig, sql: &str, agent: &str) {
    let audit: Value = serde_json::from_str(&rig.ok(&["audit", "--json"]).await).unwrap();
    let digest = sha256(sql);
    let record = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "session.statement" && r["details"]["statement_sha256"] == digest)
        .unwrap_or_else(|| panic!("no audit record of {sql:?}: {audit:#}"));
    assert_eq!(record["details"]["agent"], agent, "{record:#}");
}

const TOOLS: [&str; 6] = [
    "access",
    "cancel_query",
    "describe",
    "query_status",
    "request_access",
    "run_query",
];

#[tokio::test]
async fn the_python_sdk_over_stdio_queries_is_capped_waits_for_approval_and_is_refused_once_removed(
) {
    let rig = Rig::start().await;
    let broker = rig.broker().await;
    rig.login("alice").await;
    rig.request("ANALYST", "1h").await;
    add_agent(
        &rig,
        "pyagent",
        &["--roles", "ANALYST,ENGINEER", "--max-rows", "5"],
    )
    .await;

    let exe = env!("CARGO_BIN_EXE_snowgate");
    let (mut py, ready) = PyClient::start(
        &["stdio", exe, "mcp", "--agent", "pyagent"],
        rig_env(&rig),
        &[],
        &tests_dir(),
    )
    .await;
    assert_eq!(ready["ready"], true, "{ready:#}");

    let tools = py.step(json!({"op": "tools"})).await;
    assert_eq!(tools["tools"], json!(TOOLS), "{tools:#}");

    py.ok(
        "run_query",
        json!({"sql": "CREATE TABLE orders (id INTEGER, note VARCHAR)"}),
    )
    .await;
    let values: Vec<String> = (1..=20).map(|i| format!("({i}, 'order {i}')")).collect();
    py.ok(
        "run_query",
        json!({"sql": format!("INSERT INTO orders VALUES {}", values.join(", "))}),
    )
    .await;

    // More rows than the agent's cap of 5: five, and the truncated note.
    let sql = "SELECT id, note FROM orders ORDER BY id";
    let a = py.ok("run_query", json!({"sql": sql})).await;
    let q = &a["structured"];
    assert_eq!(
        (q["row_count"].clone(), q["truncated"].clone()),
        (json!(5), json!(true)),
        "{q:#}"
    );
    assert_eq!(q["rows"][4], json!(["5", "order 5"]), "{q:#}");
    let text = a["text"].as_str().unwrap();
    assert!(
        text.contains("TRUNCATED: showing the first 5 of 20 rows"),
        "{text}"
    );
    assert!(!text.contains("order 6"), "{text}");

    // Describe the table.
    let a = py.ok("describe", json!({"table": "orders"})).await;
    let names: Vec<&str> = a["structured"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|row| row[0].as_str())
        .collect();
    assert_eq!(names, ["ID", "NOTE"], "{a:#}");

    // The front answered JSON because the session asked for it, in the front's default mode.
    let sessions = rig.sf.sessions().await.unwrap();
    let mcp_session = sessions
        .iter()
        .find(|s| s.client_app_id.as_deref() == Some("SnowgateMCP"))
        .expect("the MCP server's session at the front");
    assert!(mcp_session.json_results, "{mcp_session:#?}");
    // Its QUERY_TAG names the grant and the agent; the audit log names the agent.
    let tag = mcp_session.login_query_tag.as_deref().unwrap_or_default();
    assert!(
        tag.starts_with("snowgate:grant=g_") && tag.ends_with(";agent=pyagent"),
        "{tag}"
    );
    audited_for(&rig, sql, "pyagent").await;

    // Ask for ENGINEER (no auto-approval) and wait, in the client, until a person approves.
    let a = py
        .ok(
            "request_access",
            json!({"role": "ENGINEER", "duration": "30m", "reason": "check the load jobs"}),
        )
        .await;
    assert_eq!(a["structured"]["grant"]["state"], "pending", "{a:#}");
    let grants = rig.grants_all().await;
    let pending = grants
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["role"] == "ENGINEER")
        .expect("the ENGINEER request");
    assert_eq!(
        pending["reason"],
        "requested by agent pyagent: check the load jobs"
    );
    let id = pending["id"].as_str().unwrap().to_string();
    py.send(json!({"op": "wait_for_grant", "role": "ENGINEER", "timeout": 60}))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (approved, _, err) = rig
        .with_sign_in(&["approve", &id, "--no-browser"], "bob")
        .await;
    assert!(approved, "{err}");
    let waited = py.read().await;
    assert!(waited.get("error").is_none(), "{waited:#}");
    assert!(waited["polls"].as_u64().unwrap() >= 3, "{waited:#}");
    assert!(waited["waited"].as_f64().unwrap() >= 1.5, "{waited:#}");
    // The approved role is usable at once: a session as ENGINEER at the front.
    let a = py
        .ok("run_query", json!({"sql": "SELECT 2", "role": "ENGINEER"}))
        .await;
    assert_eq!(a["structured"]["row_count"], 1, "{a:#}");
    let sessions = rig.sf.sessions().await.unwrap();
    assert!(
        sessions
            .iter()
            .any(|s| s.client_app_id.as_deref() == Some("SnowgateMCP")
                && s.role == "ENGINEER"
                && s.json_results),
        "{sessions:#?}"
    );

    // A removed agent is refused from its next call on.
    rig.ok(&["agent", "remove", "pyagent"]).await;
    let why = py.refused("run_query", json!({"sql": "SELECT 1"})).await;
    assert!(why.contains("not one Snowgate knows"), "{why}");
    py.close().await;

    // And stdio does not start for it again.
    let (mut py, first) = PyClient::start(
        &["stdio", exe, "mcp", "--agent", "pyagent"],
        rig_env(&rig),
        &[],
        &tests_dir(),
    )
    .await;
    assert!(first.get("ready").is_none(), "{first:#}");
    let _ = py.child.kill().await;
    stop(broker).await;
}

/// Starts `snowgate mcp --http 127.0.0.1:PORT`; returns it and the MCP URL.
async fn http_server(rig: &Rig) -> (Child, String) {
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

/// The Python client over HTTP as uid/gid 65534 (another OS user), with `bearer`.
async fn http_client_as_nobody(url: &str, bearer: &str) -> (PyClient, Value) {
    let env = vec![
        ("SNOWGATE_MCP_BEARER".to_string(), bearer.to_string()),
        ("PATH".to_string(), "/usr/bin:/bin".to_string()),
        ("HOME".to_string(), "/nonexistent".to_string()),
        ("PYTHONDONTWRITEBYTECODE".to_string(), "1".to_string()),
    ];
    PyClient::start(
        &["http", url],
        env,
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        &tests_dir().join("clients"),
    )
    .await
}

#[tokio::test]
async fn the_python_sdk_over_http_as_another_os_user_is_read_only_capped_and_expiry_refused() {
    let rig = Rig::start().await;
    let broker = rig.broker().await;
    rig.login("alice").await;
    rig.request("ANALYST", "1h").await;
    let secret = add_agent(
        &rig,
        "pyro",
        &["--roles", "ANALYST", "--max-rows", "2", "--read-only"],
    )
    .await;
    let (mut server, url) = http_server(&rig).await;

    let (mut py, ready) = http_client_as_nobody(&url, &secret).await;
    assert_eq!(ready["ready"], true, "{ready:#}");
    // The client really runs as the other user.
    let pid = py.child.id().unwrap();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert!(
        uid.split_whitespace().skip(1).all(|u| u == "65534"),
        "{uid}"
    );

    let tools = py.step(json!({"op": "tools"})).await;
    assert_eq!(tools["tools"], json!(TOOLS), "{tools:#}");
    let a = py.ok("access", json!({})).await;
    assert_eq!(a["structured"]["agent"], "pyro", "{a:#}");
    assert_eq!(a["structured"]["read_only"], true, "{a:#}");

    let sql = "SELECT * FROM (VALUES (1), (2), (3)) AS t(n)";
    let a = py.ok("run_query", json!({ "sql": sql })).await;
    let q = &a["structured"];
    assert_eq!(
        (q["row_count"].clone(), q["truncated"].clone()),
        (json!(2), json!(true)),
        "{q:#}"
    );
    assert!(a["text"].as_str().unwrap().contains("TRUNCATED"), "{a:#}");
    // Describe with nothing named lists the databases the role sees.
    let a = py.ok("describe", json!({})).await;
    let dbs = a["structured"]["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!dbs.is_empty(), "{a:#}");

    // DDL from a read-only agent: refused by the gateway's SQL policy, and nothing made.
    let why = py
        .refused("run_query", json!({"sql": "CREATE TABLE made (a INTEGER)"}))
        .await;
    assert!(why.contains("agent pyro is read-only"), "{why}");
    let why = py
        .refused("run_query", json!({"sql": "SELECT * FROM made"}))
        .await;
    assert!(why.to_lowercase().contains("made"), "{why}");

    audited_for(&rig, sql, "pyro").await;
    let sessions = rig.sf.sessions().await.unwrap();
    let s = sessions
        .iter()
        .find(|s| s.client_app_id.as_deref() == Some("SnowgateMCP"))
        .expect("the MCP server's session at the front");
    assert!(s.json_results, "{s:#?}");
    assert!(
        s.login_query_tag
            .as_deref()
            .unwrap_or_default()
            .ends_with(";agent=pyro"),
        "{s:#?}"
    );
    py.close().await;

    // An expired agent's secret gets no MCP session.
    let brief = add_agent(&rig, "brief", &["--roles", "ANALYST", "--expires", "1s"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (py, first) = http_client_as_nobody(&url, &brief).await;
    assert!(first.get("ready").is_none(), "{first:#}");
    // The SDK reports the refused initialize without the status; the 401 and its sentence
    // ("agent brief expired") are checked at the HTTP level in tests/mcp.rs.
    let why = first["error"].as_str().unwrap_or_default();
    assert!(why.contains("MCPError"), "{first:#}");
    assert!(!why.contains(&brief), "{why}");
    py.close().await;

    let _ = server.kill().await;
    stop(broker).await;
}
