//! Just-in-time access end to end: the real `snowgate up` broker and CLI, the rig's IdP
//! (oidc-provider), Secret Service (gnome-keyring), Snowflake front (fakesnow) and the real
//! Python connector talking to the broker's gateway.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use snowgate_rig::clients::{run_python, PythonDriver, RunningClient};
use snowgate_rig::secret_service::KeyringState;

mod support;
use support::{py_error, stop, Rig};

async fn next_refusal(client: &mut RunningClient) -> Value {
    loop {
        let line = client
            .next_line(Duration::from_secs(15))
            .await
            .unwrap()
            .expect("the tool ended before it was refused");
        if line["ok"] == false {
            return line;
        }
    }
}

#[tokio::test]
async fn a_driver_is_refused_without_a_grant_works_with_one_and_is_cut_within_a_second_of_revocation(
) {
    let rig = Rig::start().await;
    let broker = rig.broker().await;
    let status: Value = serde_json::from_str(&rig.ok(&["status", "--json"]).await).unwrap();
    assert_eq!(status["gateway"]["state"], "serving", "{status:#}");

    // Signed out: the tool is told to sign in.
    let r = run_python(PythonDriver::V5, &rig.python("smoke").role("ANALYST"))
        .await
        .unwrap();
    let (_, msg) = py_error(&r);
    assert!(msg.contains("you are signed out"), "{msg}");
    assert!(msg.contains("snowgate login"), "{msg}");

    rig.login("alice").await;

    // Signed in, no grant: refused with how to ask for access.
    let r = run_python(PythonDriver::V5, &rig.python("smoke").role("ANALYST"))
        .await
        .unwrap();
    let (errno, msg) = py_error(&r);
    assert_eq!(errno, 390189, "{msg}");
    assert!(msg.contains("no active access to role ANALYST"), "{msg}");
    assert!(msg.contains("snowgate request ANALYST"), "{msg}");

    // Auto-approved within the cap; the driver now works, as alice, over OAuth, tagged.
    let id = rig.request("ANALYST", "5m").await;
    assert!(id.starts_with("g_"), "{id}");
    let r = run_python(PythonDriver::V5, &rig.python("smoke"))
        .await
        .unwrap();
    assert_eq!(r["ok"], true, "{r:#}\n{}", rig.log_tail());
    let session = rig
        .sf
        .session(r["session_id"].as_u64().unwrap())
        .await
        .unwrap();
    assert_eq!(session.authenticator, "OAUTH");
    assert_eq!(session.login_name.to_lowercase(), "alice");
    assert_eq!(session.role, "ANALYST");
    assert!(
        session
            .query_tag
            .as_deref()
            .unwrap_or("")
            .contains(id.as_str()),
        "{session:#?}"
    );
    let attempts = rig.sf.login_attempts().await.unwrap();
    assert!(
        attempts.iter().all(|a| !a.password_present),
        "{attempts:#?}"
    );

    // A held connection, then the requester gives the grant up.
    let (mut client, sf_session) = rig.hold("analyst", 30).await;
    let sessions: Value = serde_json::from_str(&rig.ok(&["sessions", "--json"]).await).unwrap();
    assert_eq!(sessions[0]["grant"], id.as_str(), "{sessions:#}");
    assert_eq!(sessions[0]["role"], "ANALYST");
    let t0 = Instant::now();
    rig.ok(&["revoke", &id, "--comment", "done"]).await;
    let closed = rig
        .wait_closed(sf_session, Duration::from_secs(5))
        .await
        .expect("the front still has the session open 5 s after revocation");
    let took = closed - t0;
    println!("revocation → session closed at the front: {took:?} (including the CLI round trip)");
    assert!(took < Duration::from_secs(3), "took {took:?}");

    let refused = next_refusal(&mut client).await;
    let msg = refused["error"]["msg"].as_str().unwrap_or("");
    assert!(
        msg.contains("your access to role ANALYST ended") && msg.contains("(revoked)"),
        "{refused:#}"
    );
    client.kill();

    // A new login is refused with the same sentence.
    let r = run_python(PythonDriver::V5, &rig.python("smoke").role("ANALYST"))
        .await
        .unwrap();
    let (_, relogin) = py_error(&r);
    assert!(relogin.contains("(revoked)"), "{relogin}");

    // Signing out ends the user's gateway sessions too.
    rig.request("ANALYST", "5m").await;
    let (mut client, sf_session) = rig.hold("ANALYST", 30).await;
    rig.ok(&["logout"]).await;
    rig.wait_closed(sf_session, Duration::from_secs(5))
        .await
        .expect("the session outlived the sign-out");
    let refused = next_refusal(&mut client).await;
    assert!(
        refused["error"]["msg"]
            .as_str()
            .unwrap_or("")
            .contains("(signed out)"),
        "{refused:#}"
    );
    client.kill();

    stop(broker).await;
}

#[tokio::test]
async fn a_gateway_port_in_use_is_reported_and_the_broker_still_runs() {
    let rig = Rig::start().await;
    let _squatter = std::net::TcpListener::bind(("127.0.0.1", rig.port)).unwrap();
    let broker = rig.broker().await;
    let status: Value = serde_json::from_str(&rig.ok(&["status", "--json"]).await).unwrap();
    assert_eq!(status["gateway"]["state"], "not_serving", "{status:#}");
    let problem = status["gateway"]["problem"].as_str().unwrap_or("");
    assert_eq!(
        problem,
        format!(
            "127.0.0.1:{} is in use by another program; change [gateway].listen",
            rig.port
        )
    );
    assert!(status["notes"].as_array().is_none_or(|n| n
        .iter()
        .all(|n| !n.as_str().unwrap_or("").starts_with("audit"))));
    let text = rig.ok(&["status"]).await;
    assert!(text.contains(&format!("Gateway:   {problem}")), "{text}");
    let (ok, _, err) = rig.run(&["sessions"]).await;
    assert!(!ok && err.contains("is in use by another program"), "{err}");
    stop(broker).await;
}

#[tokio::test]
async fn approvals_need_an_eligible_approver_signing_in_afresh_and_bad_input_writes_nothing() {
    let rig = Rig::start().await;
    let broker = rig.broker().await;
    rig.login("alice").await;
    let id = rig.request("ENGINEER", "1h").await;
    let before = rig.grants_all().await;
    assert_eq!(before[0]["state"], "pending", "{before:#}");

    let reason = "x".repeat(5000);
    let bad: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["request", "NOPE", "--duration", "1h", "--reason", "r"],
            "unknown role",
        ),
        (
            vec!["request", "ENGINEER", "--duration", "3h", "--reason", "r"],
            "at most",
        ),
        (
            vec!["request", "ENGINEER", "--duration", "0m", "--reason", "r"],
            "longer than zero",
        ),
        (
            vec!["request", "ENGINEER", "--duration=-1h", "--reason", "r"],
            "not a duration",
        ),
        (
            vec![
                "request",
                "ENGINEER",
                "--duration",
                "2 hrs",
                "--reason",
                "r",
            ],
            "\"2h\"",
        ),
        (
            vec!["request", "ENGINEER", "--duration", "1h", "--reason", "  "],
            "reason",
        ),
        (
            vec![
                "request",
                "ENGINEER",
                "--duration",
                "1h",
                "--reason",
                &reason,
            ],
            "at most",
        ),
        (
            vec!["approve", "g_aaaaaaaaaaaaaaaaaaaa", "--no-browser"],
            "no grant",
        ),
        (
            vec!["approve", "nonsense", "--no-browser"],
            "not a grant id",
        ),
        (vec!["deny", &id, "--no-browser"], "comment"),
    ];
    for (args, want) in &bad {
        let (ok, _, err) = rig.run(args).await;
        assert!(!ok, "snowgate {args:?} succeeded");
        assert!(
            err.contains(want),
            "snowgate {args:?}: {err}\nwanted: {want}"
        );
        assert_eq!(
            rig.grants_all().await,
            before,
            "snowgate {args:?} wrote something"
        );
    }

    // alice can't approve her own request, even after signing in afresh.
    let (ok, _, err) = rig
        .with_sign_in(&["approve", &id, "--no-browser"], "alice")
        .await;
    assert!(!ok);
    assert!(err.contains("your own request"), "{err}");
    // mallory is in no approver group.
    let (ok, _, err) = rig
        .with_sign_in(&["approve", &id, "--no-browser"], "mallory")
        .await;
    assert!(!ok);
    assert!(err.contains("not an approver"), "{err}");
    assert_eq!(rig.grants_all().await, before);

    // bob approves; the user's own sign-in is untouched.
    let (ok, _, err) = rig
        .with_sign_in(
            &["approve", &id, "--comment", "ok for Q3", "--no-browser"],
            "bob",
        )
        .await;
    assert!(ok, "{err}\n{}", rig.log_tail());
    let after = rig.grants_all().await;
    assert_eq!(after[0]["state"], "active", "{after:#}");
    let who: Value = serde_json::from_str(&rig.ok(&["whoami", "--json"]).await).unwrap();
    assert_eq!(who["subject"], "alice");

    // Approving twice is refused and writes nothing.
    let (ok, _, err) = rig
        .with_sign_in(&["approve", &id, "--no-browser"], "bob")
        .await;
    assert!(!ok);
    assert!(err.contains("nothing to decide"), "{err}");
    assert_eq!(rig.grants_all().await, after);

    // The approved grant works through the gateway (role named in lower case by the tool).
    let r = run_python(PythonDriver::V5, &rig.python("smoke").role("engineer"))
        .await
        .unwrap();
    assert_eq!(r["ok"], true, "{r:#}\n{}", rig.log_tail());
    let s = rig
        .sf
        .session(r["session_id"].as_u64().unwrap())
        .await
        .unwrap();
    assert_eq!(s.role, "ENGINEER");

    // The audit log has the request, the approval, the session and its statement (appended
    // as the gateway's events arrive), and it verifies.
    let wanted = [
        "auth.sign_in",
        "grant.requested",
        "grant.approved",
        "session.opened",
        "session.statement",
        "session.closed",
    ];
    let mut kinds: Vec<String> = Vec::new();
    for _ in 0..100 {
        let audit: Value = serde_json::from_str(&rig.ok(&["audit", "--json"]).await).unwrap();
        kinds = audit
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["kind"].as_str().map(str::to_string))
            .collect();
        if wanted.iter().all(|k| kinds.iter().any(|x| x == k)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for k in wanted {
        assert!(kinds.iter().any(|x| x == k), "no {k} in {kinds:?}");
    }
    rig.ok(&["audit", "verify"]).await;

    // An approver revokes alice's grant; a second request is denied with a comment.
    let (ok, _, err) = rig
        .with_sign_in(
            &[
                "revoke",
                &id,
                "--as-approver",
                "--comment",
                "project ended",
                "--no-browser",
            ],
            "bob",
        )
        .await;
    assert!(ok, "{err}");
    let waiting = rig
        .snowgate(&[
            "request",
            "ENGINEER",
            "--duration",
            "30m",
            "--reason",
            "backfill",
            "--wait",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let second = loop {
        let all = rig.grants_all().await;
        if let Some(g) = all
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["state"] == "pending" && g["reason"] == "backfill")
        {
            break g["id"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (ok, _, err) = rig
        .with_sign_in(
            &["deny", &second, "--comment", "use ANALYST", "--no-browser"],
            "bob",
        )
        .await;
    assert!(ok, "{err}");
    let all = rig.grants_all().await;
    let state = |gid: &str| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|g| g["id"] == gid)
            .map(|g| g["state"].as_str().unwrap().to_string())
    };
    assert_eq!(state(&id).as_deref(), Some("revoked"), "{all:#}");
    assert_eq!(state(&second).as_deref(), Some("denied"), "{all:#}");
    let out = tokio::time::timeout(Duration::from_secs(10), waiting.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        !out.status.success(),
        "`request --wait` exited 0 on a denial"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("was denied"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // An approver's sign-in is bound to the grant it was started for: straight on the control
    // socket, one started for another grant can't decide this one, and none starts unbound.
    {
        use snowgate_engine::control::{ControlClient, ErrorKind, Request};
        let other = rig.request("ENGINEER", "30m").await;
        let socket = rig.dir.path().join("runtime/snowgate/control.sock");
        let mut control = ControlClient::connect(&socket).await.unwrap();
        let unbound = control
            .call(&Request::ApproverLoginBegin { grant_id: None })
            .await
            .unwrap_err();
        assert!(unbound.message.contains("grant_id"), "{unbound:?}");
        let started = control
            .call(&Request::ApproverLoginBegin {
                grant_id: Some(other.clone()),
            })
            .await
            .unwrap();
        let refused = control
            .call(&Request::Approve {
                id: second.clone(),
                comment: None,
                approver_login_id: Some(started["login_id"].as_str().unwrap().to_string()),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.kind, ErrorKind::Forbidden, "{refused:?}");
        assert!(
            refused
                .message
                .contains(&format!("started for grant {other}, not {second}")),
            "{refused:?}"
        );
        rig.ok(&["cancel", &other]).await;
    }
    stop(broker).await;
}

#[tokio::test]
async fn expiry_cuts_sessions_within_a_second_and_an_extension_keeps_them_alive() {
    let rig = Rig::start().await;
    let broker = rig.broker().await;
    rig.login("alice").await;

    // Expiry: a 4 s grant; the held session is cut at its end.
    let id = rig.request("ANALYST", "4s").await;
    let g: Value = serde_json::from_str(&rig.ok(&["grants", "--json"]).await).unwrap();
    let expires: SystemTime =
        chrono::DateTime::parse_from_rfc3339(g[0]["expires_at"].as_str().unwrap())
            .unwrap()
            .into();
    let (mut client, sf_session) = rig.hold("ANALYST", 20).await;
    let closed = rig
        .wait_closed(sf_session, Duration::from_secs(10))
        .await
        .expect("the session outlived its grant");
    let late = SystemTime::now()
        .duration_since(expires)
        .unwrap_or_default()
        .saturating_sub(closed.elapsed());
    println!("expiry → session closed at the front: {late:?} after the grant's end");
    assert!(late < Duration::from_secs(3), "{late:?}");
    let refused = next_refusal(&mut client).await;
    assert!(
        refused["error"]["msg"]
            .as_str()
            .unwrap_or("")
            .contains("(expired)"),
        "{refused:#}"
    );
    client.kill();
    let g: Value = serde_json::from_str(&rig.ok(&["grants", "--json"]).await).unwrap();
    assert_eq!(g[0]["id"], id.as_str());
    assert_eq!(g[0]["state"], "expired");

    // Extension: a 5 s grant extended (auto-approved within the cap) keeps the session alive.
    let id = rig.request("ANALYST", "5s").await;
    let (mut client, sf_session) = rig.hold("ANALYST", 30).await;
    let (ok, _, err) = rig
        .run(&["extend", &id, "--by", "1m", "--reason", "one more query"])
        .await;
    assert!(ok, "{err}");
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(
        rig.sf.session(sf_session).await.unwrap().open,
        "the session was cut at the grant's original end"
    );
    let line = client
        .next_line(Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(line["ok"], true, "{line:#}");
    client.kill();
    stop(broker).await;
}

#[tokio::test]
async fn tokens_exec_audit_tampering_and_a_broker_killed_mid_grant() {
    let rig = Rig::start().await;
    let broker = rig.broker().await;
    rig.login("alice").await;

    // No grant: no token.
    let (ok, out, err) = rig.run(&["token", "--role", "ANALYST"]).await;
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("no active grant for ANALYST"), "{err}");

    let id = rig.request("ANALYST", "30m").await;
    let (ok, out, err) = rig.run(&["token", "--role", "ANALYST"]).await;
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    assert!(
        regex::Regex::new(r"^eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")
            .unwrap()
            .is_match(lines[0]),
        "not a JWT: {out}"
    );
    assert!(err.contains("outlive the grant"), "{err}");

    let out = rig
        .snowgate(&[
            "exec",
            "--role",
            "ANALYST",
            "--",
            "sh",
            "-c",
            "echo $SNOWFLAKE_ROLE $SNOWFLAKE_AUTHENTICATOR $SNOWFLAKE_ACCOUNT $SNOWFLAKE_PROTOCOL; exit 3",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "ANALYST oauth rigacct http"
    );

    let info = rig.ok(&["connect-info", "--tool", "python"]).await;
    assert!(info.contains(&format!("port={}", rig.port)), "{info}");
    assert!(info.contains("rigacct"), "{info}");
    assert!(info.contains("role=\"ANALYST\""), "{info}");
    let info = rig
        .ok(&["connect-info", "--tool", "python", "--role", "engineer"])
        .await;
    assert!(info.contains("role=\"ENGINEER\""), "{info}");
    let (ok, _, err) = rig.run(&["connect-info", "--role", "OWNER"]).await;
    assert!(!ok);
    assert!(
        err.contains("no role OWNER is configured; the roles are ANALYST, ENGINEER"),
        "{err}"
    );

    // kill -9 mid-grant, plus a short grant that runs out while the broker is down.
    let short = rig.request("ANALYST", "2s").await;
    let mut broker = broker;
    broker.start_kill().unwrap();
    let _ = broker.wait().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let broker = rig.broker().await;
    let all = rig.grants_all().await;
    let state = |gid: &str| {
        all.as_array()
            .unwrap()
            .iter()
            .find(|g| g["id"] == gid)
            .map(|g| g["state"].as_str().unwrap().to_string())
    };
    assert_eq!(state(&id).as_deref(), Some("active"), "{all:#}");
    assert_eq!(state(&short).as_deref(), Some("expired"), "{all:#}");
    let r = run_python(PythonDriver::V5, &rig.python("smoke").role("ANALYST"))
        .await
        .unwrap();
    assert_eq!(r["ok"], true, "{r:#}");

    let recent: Value =
        serde_json::from_str(&rig.ok(&["audit", "--json", "--since", "1h"]).await).unwrap();
    assert!(!recent.as_array().unwrap().is_empty());
    let future: Value = serde_json::from_str(
        &rig.ok(&["audit", "--json", "--since", "2099-01-01T00:00:00Z"])
            .await,
    )
    .unwrap();
    assert_eq!(future, serde_json::json!([]));
    let (ok, _, err) = rig.run(&["audit", "--since", "yesterday"]).await;
    assert!(!ok && err.contains("not a time"), "{err}");

    // The audit log verifies; its export is JSON Lines.
    let (ok, out, err) = rig.run(&["audit", "verify"]).await;
    assert!(ok, "{out}{err}");
    let export = rig.ok(&["audit", "export", "--format", "jsonl"]).await;
    let n = export.lines().count();
    assert!(n >= 5, "{export}");
    for line in export.lines() {
        let _: Value = serde_json::from_str(line).unwrap();
    }

    // One byte of one record edited in the database: verify fails and names it.
    stop(broker).await;
    let log = std::fs::read_to_string(rig.dir.path().join("broker.log")).unwrap();
    assert!(
        !regex::Regex::new(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
            .unwrap()
            .is_match(&log),
        "a JWT-shaped string is in the broker's log"
    );
    let db = rig.dir.path().join("data").join("ledger.sqlite3");
    edit_one_byte(&db, 3);
    let _broker = rig.broker().await;
    let (ok, out, err) = rig.run(&["audit", "verify"]).await;
    assert!(!ok, "verify passed after an edit: {out}");
    assert!(out.contains("audit record 3 was altered"), "{out}{err}");
}

/// Changes one byte of record `seq` (the last letter of its kind), with the sqlite3 CLI.
fn edit_one_byte(db: &Path, seq: u64) {
    // The file's owner can drop the append-only trigger; the hash chain is what catches it.
    let sql = format!(
        "DROP TRIGGER audit_is_append_only_update; \
         UPDATE audit SET kind = substr(kind, 1, length(kind) - 1) || \
         CASE WHEN substr(kind, -1) = 'x' THEN 'y' ELSE 'x' END WHERE seq = {seq};"
    );
    let out = std::process::Command::new("sqlite3")
        .arg(db)
        .arg(&sql)
        .output()
        .expect("running sqlite3 (apt-get install sqlite3; scripts/setup installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_locked_keyring_keeps_the_audit_anchor_in_memory_and_says_so() {
    let rig = Rig::start_with(KeyringState::Locked, "", "info,snowgate_engine=debug").await;
    let broker = rig.broker().await;
    let status: Value = serde_json::from_str(&rig.ok(&["status", "--json"]).await).unwrap();
    let notes = status["notes"].to_string();
    assert!(
        notes.contains("audit log's anchor is kept in memory"),
        "{status:#}"
    );
    assert_eq!(status["gateway"]["state"], "serving");
    let text = rig.ok(&["status"]).await;
    assert!(text.contains("Note:      audit:"), "{text}");
    stop(broker).await;
}
