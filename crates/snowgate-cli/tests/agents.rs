//! Agents and SQL policy end to end: the real `snowgate up` broker, the rig's IdP, Secret
//! Service and Snowflake front, and the real Python connector logging in to the broker's
//! gateway with an agent's secret as its password (as `snowgate mcp` does).

use std::time::Duration;

use serde_json::Value;
use snowgate_rig::clients::{run_python, spawn_python, ClientRun, PythonDriver};

mod support;
use support::{py_error, stop, Rig};

/// A run of `scenario` as `role` with `password`.
fn client(rig: &Rig, password: &str, role: &str, scenario: &str) -> ClientRun {
    ClientRun::password(&rig.gateway_url(), "anyone", password, scenario)
        .role(role)
        .timeout(Duration::from_secs(60))
}

/// One query as `role`, with `password`.
async fn query(rig: &Rig, password: &str, role: &str, sql: &str) -> Value {
    run_python(
        PythonDriver::V5,
        &client(rig, password, role, "query").arg(["--sql", sql]),
    )
    .await
    .unwrap()
}

/// `snowgate agent add ARGS...`; the secret it printed.
async fn add_agent(rig: &Rig, args: &[&str]) -> String {
    let mut all = vec!["agent", "add"];
    all.extend_from_slice(args);
    let (ok, out, err) = rig.run(&all).await;
    assert!(ok, "{err}\n{}", rig.log_tail());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "the secret is alone on stdout: {out}");
    let secret = lines[0].trim().to_string();
    assert!(secret.starts_with("sga_") && secret.len() == 47, "{secret}");
    assert!(err.contains("It is shown only now."), "{err}");
    secret
}

#[tokio::test]
async fn an_agent_is_named_in_its_tag_and_audit_and_held_to_its_policy() {
    let rig = Rig::start().await;
    let broker = rig.broker().await;
    rig.login("alice").await;
    let grant = rig.request("ANALYST", "30m").await;

    // Bad input is refused with a sentence, and nothing is added.
    for (args, says) in [
        (vec!["no spaces"], "is not an agent name"),
        (
            vec!["bot", "--roles", "SYSADMIN"],
            "\"SYSADMIN\" is not one Snowgate grants",
        ),
        (vec!["bot", "--max-rows", "0"], "at least 1"),
        (
            vec!["bot", "--statements-per-minute", "many"],
            "--statements-per-minute",
        ),
        (vec!["bot", "--expires", "7 fortnights"], "--expires"),
        (vec!["bot", "--expires", "400d"], "between 1s and 366d"),
    ] {
        let mut all = vec!["agent", "add"];
        all.extend_from_slice(&args);
        let (ok, out, err) = rig.run(&all).await;
        assert!(!ok && out.is_empty(), "{args:?}: {out}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
    assert!(!rig.ok(&["agent", "list", "--json"]).await.contains("bot"));

    let reader = add_agent(
        &rig,
        &[
            "reader",
            "--roles",
            "analyst",
            "--read-only",
            "--max-rows",
            "100",
        ],
    )
    .await;
    let (ok, _, err) = rig.run(&["agent", "add", "reader"]).await;
    assert!(!ok && err.contains("already exists"), "{err}");

    // `agent_whoami` on the control socket: the agent and its policy for its secret; a sentence
    // for any other.
    {
        use snowgate_engine::agents::Agent;
        use snowgate_engine::control::{ControlClient, ErrorKind, PresentedSecret, Request};
        let socket = rig.dir.path().join("runtime/snowgate/control.sock");
        let mut control = ControlClient::connect(&socket).await.unwrap();
        let me: Agent = control
            .call_as(&Request::AgentWhoami {
                secret: PresentedSecret::new(reader.clone()),
            })
            .await
            .unwrap();
        assert_eq!(me.name, "reader");
        assert!(me.policy.read_only);
        assert_eq!(me.policy.max_rows, Some(100));
        assert_eq!(me.policy.roles, Some(vec!["ANALYST".to_string()]));
        let mut wrong = reader.clone();
        wrong.pop();
        let e = control
            .call(&Request::AgentWhoami {
                secret: PresentedSecret::new(wrong),
            })
            .await
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::Forbidden, "{e:?}");
        assert!(e.message.contains("not one Snowgate knows"), "{e:?}");
    }

    // Its SELECT runs, tagged with the grant and the agent, and the front saw no password.
    let r = query(&rig, &reader, "ANALYST", "select 41 + 1").await;
    assert_eq!(r["ok"], true, "{r:#}\n{}", rig.log_tail());
    assert_eq!(r["rows"][0][0], 42, "{r:#}");
    let front = rig
        .sf
        .session(r["session_id"].as_u64().unwrap())
        .await
        .unwrap();
    assert_eq!(front.authenticator, "OAUTH");
    assert_eq!(
        front.login_query_tag.as_deref(),
        Some(format!("snowgate:grant={grant};agent=reader").as_str()),
        "{front:#?}"
    );
    assert!(rig
        .sf
        .login_attempts()
        .await
        .unwrap()
        .iter()
        .all(|a| !a.password_present));

    // Its INSERT is refused before Snowflake, naming the statement and the rule.
    let r = query(
        &rig,
        &reader,
        "ANALYST",
        "select 1; insert into t values (1)",
    )
    .await;
    let (errno, msg) = py_error(&r);
    assert_eq!(errno, 390530, "{msg}");
    assert!(msg.contains("statement 2 (INSERT)"), "{msg}");
    assert!(msg.contains("agent reader is read-only"), "{msg}");
    let r = query(&rig, &reader, "ANALYST", "create table t (a int)").await;
    let (errno, msg) = py_error(&r);
    assert_eq!(errno, 390530, "{msg}");
    assert!(msg.contains("CREATE TABLE"), "{msg}");

    // A role outside its list is refused at login, naming the agent and the role.
    let r = query(&rig, &reader, "ENGINEER", "select 1").await;
    let (errno, msg) = py_error(&r);
    assert_eq!(errno, 390189, "{msg}");
    assert!(
        msg.contains("agent reader may not use role ENGINEER"),
        "{msg}"
    );

    // The audit names the agent on its session's records, and records the refusal.
    let audit: Value = serde_json::from_str(&rig.ok(&["audit", "--json"]).await).unwrap();
    let records = audit.as_array().unwrap();
    let agents_records: Vec<&Value> = records
        .iter()
        .filter(|r| r["details"]["agent"] == "reader")
        .collect();
    let kinds: Vec<&str> = agents_records
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .collect();
    for kind in [
        "session.opened",
        "session.statement",
        "session.statement_refused",
        "session.closed",
    ] {
        assert!(
            kinds.contains(&kind),
            "no {kind} naming the agent: {kinds:?}"
        );
    }
    let refused: Vec<&&Value> = agents_records
        .iter()
        .filter(|r| r["kind"] == "session.statement_refused")
        .collect();
    assert_eq!(refused.len(), 2, "{refused:#?}");
    assert_eq!(refused[0]["details"]["kind"], "INSERT");
    assert_eq!(refused[0]["details"]["rule"], "agent reader is read-only");
    let text = rig.ok(&["audit"]).await;
    assert!(text.contains("reader"), "{text}");

    // A rate: the fourth statement within a minute is refused with when to retry, and audited.
    let rated = add_agent(&rig, &["rated", "--statements-per-minute", "3"]).await;
    let run =
        client(&rig, &rated, "ANALYST", "hold").arg(["--interval", "0.05", "--duration", "2"]);
    let mut held = spawn_python(PythonDriver::V5, &run).await.unwrap();
    let mut outcomes = Vec::new();
    while let Some(line) = held.next_line(Duration::from_secs(20)).await.unwrap() {
        if line["event"] == "query" {
            outcomes.push(line);
        }
        if outcomes.len() == 5 {
            break;
        }
    }
    held.kill();
    assert_eq!(outcomes.len(), 5, "{outcomes:#?}");
    for o in &outcomes[..3] {
        assert_eq!(o["ok"], true, "{o:#}");
    }
    for o in &outcomes[3..] {
        assert_eq!(o["ok"], false, "{o:#}");
        assert_eq!(o["error"]["errno"], 390531, "{o:#}");
        let msg = o["error"]["msg"].as_str().unwrap();
        assert!(
            msg.contains("agent rated may send 3 statements a minute"),
            "{msg}"
        );
        // The first of the three left the window less than a second ago: about a minute to go.
        let secs: u64 = msg
            .split("retry in ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no wait in {msg}"));
        assert!((55..=60).contains(&secs), "{msg}");
    }
    let audit = rig.ok(&["audit", "--json"]).await;
    assert!(audit.contains("agent rated may send 3 statements a minute"));

    // `sessions` names the agent; removing it ends exactly its session.
    let hold =
        client(&rig, &reader, "ANALYST", "hold").arg(["--interval", "0.2", "--duration", "30"]);
    let mut running = spawn_python(PythonDriver::V5, &hold).await.unwrap();
    let connected = running
        .next_line(Duration::from_secs(20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(connected["event"], "connected", "{connected:#}");
    let session = connected["session_id"].as_u64().unwrap();
    let sessions: Value = serde_json::from_str(&rig.ok(&["sessions", "--json"]).await).unwrap();
    assert!(
        sessions
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["agent"] == "reader"),
        "{sessions:#}"
    );
    assert!(rig
        .ok(&["sessions"])
        .await
        .contains("agent reader: PythonConnector"));
    let list = rig.ok(&["agent", "list"]).await;
    assert!(
        list.contains("reader") && list.contains("read-only"),
        "{list}"
    );
    assert!(list.contains("roles ANALYST"), "{list}");
    assert!(!list.contains(&reader), "{list}");
    let out = rig.ok(&["agent", "remove", "reader"]).await;
    assert!(out.contains("its open session was closed"), "{out}");
    rig.wait_closed(session, Duration::from_secs(5))
        .await
        .expect("the removed agent's session is still open at the front");
    running.kill();
    let r = query(&rig, &reader, "ANALYST", "select 1").await;
    let (errno, msg) = py_error(&r);
    assert_eq!(errno, 390100, "{msg}");
    assert!(msg.contains("not one Snowgate knows"), "{msg}");
    let (ok, _, err) = rig.run(&["agent", "remove", "reader"]).await;
    assert!(!ok && err.contains("no agent named reader"), "{err}");

    // An expired agent is refused.
    let brief = add_agent(&rig, &["brief", "--expires", "1s"]).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let r = query(&rig, &brief, "ANALYST", "select 1").await;
    let (errno, msg) = py_error(&r);
    assert_eq!(errno, 390100, "{msg}");
    assert!(msg.contains("agent brief expired at"), "{msg}");
    assert!(rig.ok(&["agent", "list"]).await.contains("expired"));

    stop(broker).await;

    // No agent secret is in the data dir's files or the broker's log.
    for secret in [&reader, &rated, &brief] {
        let log = std::fs::read_to_string(rig.dir.path().join("broker.log")).unwrap();
        assert!(!log.contains(secret.as_str()), "a secret is in the log");
        let list =
            std::fs::read_to_string(rig.dir.path().join("data").join("agents.json")).unwrap();
        assert!(
            !list.contains(secret.as_str()),
            "a secret is in agents.json"
        );
    }
}

#[tokio::test]
async fn a_read_only_role_refuses_ddl_for_an_ordinary_tool() {
    let rig = Rig::start().await;
    let config = rig.dir.path().join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replacen(
        "auto_approve_up_to = \"1h\"",
        "auto_approve_up_to = \"1h\"\nstatements = \"read_only\"",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let broker = rig.broker().await;
    rig.login("alice").await;
    rig.request("ANALYST", "30m").await;

    let r = query(&rig, "any-password", "ANALYST", "select 6 * 7").await;
    assert_eq!(r["ok"], true, "{r:#}\n{}", rig.log_tail());
    assert_eq!(r["rows"][0][0], 42, "{r:#}");

    let r = query(
        &rig,
        "any-password",
        "ANALYST",
        "create table rig_ro (a int)",
    )
    .await;
    let (errno, msg) = py_error(&r);
    assert_eq!(errno, 390530, "{msg}");
    assert!(msg.contains("statement 1 (CREATE TABLE)"), "{msg}");
    assert!(
        msg.contains("role ANALYST allows only read-only statements"),
        "{msg}"
    );
    // The table was never made: Snowflake never saw the statement.
    let r = query(&rig, "any-password", "ANALYST", "select * from rig_ro").await;
    let (errno, msg) = py_error(&r);
    assert_ne!(errno, 390530, "{msg}");
    assert!(msg.to_lowercase().contains("rig_ro"), "{msg}");

    let audit = rig.ok(&["audit", "--json"]).await;
    assert!(audit.contains("session.statement_refused"), "{audit}");
    assert!(audit.contains("role ANALYST allows only read-only statements"));
    stop(broker).await;
}
