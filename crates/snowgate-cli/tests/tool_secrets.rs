//! Per-tool connection secrets end to end: the real `snowgate up` broker with
//! `require_tool_secrets = true`, the rig's IdP, Secret Service and Snowflake front, and the real
//! Python connector logging in to the broker's gateway with a tool secret as its password.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use snowgate_rig::clients::{run_python, spawn_python, ClientRun, PythonDriver};
use snowgate_rig::secret_service::KeyringState;

mod support;
use support::{py_error, stop, Rig};

/// A smoke run as ANALYST with `password` as the tool's password.
fn python(rig: &Rig, password: &str) -> ClientRun {
    ClientRun::password(&rig.gateway_url(), "anyone", password, "smoke")
        .role("ANALYST")
        .timeout(Duration::from_secs(60))
}

const NO_SECRET: &str = "Snowgate: this tool's connection secret is missing or revoked. Create one with `snowgate tool-secret create NAME` and use it as the password.";

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test]
async fn a_tool_logs_in_only_with_its_own_secret_until_it_is_revoked() {
    let rig = Rig::start_with(
        KeyringState::Unlocked,
        "require_tool_secrets = true",
        "trace",
    )
    .await;
    let broker = rig.broker().await;
    rig.login("alice").await;
    let id = rig.request("ANALYST", "5m").await;
    assert!(id.starts_with("g_"), "{id}");

    // Secrets required, none created: a wrong password is refused with the sentence.
    let r = run_python(PythonDriver::V5, &python(&rig, "any-password"))
        .await
        .unwrap();
    let (errno, msg) = py_error(&r);
    assert_eq!(errno, 390100, "{msg}");
    assert!(msg.contains(NO_SECRET), "{msg}");

    // Bad names are refused with a clear error, and nothing is created.
    let (ok, out, err) = rig.run(&["tool-secret", "create", "no spaces"]).await;
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("is not a tool name"), "{err}");

    // Create: one `sg_` secret alone on stdout, the advice on stderr.
    let (ok, out, err) = rig.run(&["tool-secret", "create", "dbeaver"]).await;
    assert!(ok, "{err}\n{}", rig.log_tail());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 1, "{out}");
    let secret = lines[0].trim().to_string();
    assert!(secret.starts_with("sg_") && secret.len() == 46, "{secret}");
    assert!(
        err.contains(
            "Use it as the password in dbeaver's Snowgate connection. It is shown only now."
        ),
        "{err}"
    );
    // A second create of the same name is an error without --rotate.
    let (ok, out, err) = rig.run(&["tool-secret", "create", "dbeaver"]).await;
    assert!(!ok && out.is_empty(), "{out}");
    assert!(err.contains("--rotate"), "{err}");

    // The secret works as the password; the front sees OAuth and never a password.
    let r = run_python(PythonDriver::V5, &python(&rig, &secret))
        .await
        .unwrap();
    assert_eq!(r["ok"], true, "{r:#}\n{}", rig.log_tail());
    let session = rig
        .sf
        .session(r["session_id"].as_u64().unwrap())
        .await
        .unwrap();
    assert_eq!(session.authenticator, "OAUTH");
    assert_eq!(session.role, "ANALYST");
    let attempts = rig.sf.login_attempts().await.unwrap();
    assert!(
        attempts.iter().all(|a| !a.password_present),
        "{attempts:#?}"
    );

    // The secret's login for a role with no grant is refused and asked for in the tool's
    // name: the secret's, with the driver beside it.
    let r = run_python(PythonDriver::V5, &python(&rig, &secret).role("ENGINEER"))
        .await
        .unwrap();
    assert_eq!(py_error(&r).0, 390189, "{r:#}");
    let status: serde_json::Value =
        serde_json::from_str(&rig.ok(&["status", "--json"]).await).unwrap();
    let asks = status["tool_asks"].as_array().cloned().unwrap_or_default();
    assert!(
        asks.iter()
            .any(|a| a["tool"] == "dbeaver (PythonConnector)" && a["role"] == "ENGINEER"),
        "{asks:#?}"
    );

    // A near miss is refused.
    let mut near = secret.clone();
    near.pop();
    near.push(if secret.ends_with('A') { 'B' } else { 'A' });
    let r = run_python(PythonDriver::V5, &python(&rig, &near))
        .await
        .unwrap();
    assert!(py_error(&r).1.contains(NO_SECRET));

    // List: the name and its creation time, never the secret.
    let list = rig.ok(&["tool-secret", "list"]).await;
    assert!(list.contains("dbeaver"), "{list}");
    assert!(!list.contains(&secret), "{list}");
    let json: Value =
        serde_json::from_str(&rig.ok(&["tool-secret", "list", "--json"]).await).unwrap();
    assert_eq!(json[0]["name"], "dbeaver", "{json:#}");
    assert!(json[0]["created_at"].is_string(), "{json:#}");
    assert!(!json.to_string().contains(&secret));

    // Two tools hold a connection each, with their own secrets. Each session carries the name
    // of the secret it logged in with. Revoking one secret closes exactly that tool's session.
    let (ok, out, err) = rig.run(&["tool-secret", "create", "notebook"]).await;
    assert!(ok, "{err}");
    let notebook_secret = out.trim().to_string();
    let hold = |password: &str| {
        let run = python(&rig, password).arg(["--interval", "0.2", "--duration", "30"]);
        ClientRun {
            scenario: "hold".into(),
            ..run
        }
    };
    let mut client = spawn_python(PythonDriver::V5, &hold(&secret))
        .await
        .unwrap();
    let mut notebook = spawn_python(PythonDriver::V5, &hold(&notebook_secret))
        .await
        .unwrap();
    let mut held_sessions = Vec::new();
    for c in [&mut client, &mut notebook] {
        let connected = c.next_line(Duration::from_secs(20)).await.unwrap().unwrap();
        assert_eq!(connected["event"], "connected", "{connected:#}");
        held_sessions.push(connected["session_id"].as_u64().unwrap());
    }
    let (held, notebook_held) = (held_sessions[0], held_sessions[1]);
    let sessions: Value = serde_json::from_str(&rig.ok(&["sessions", "--json"]).await).unwrap();
    let mut named: Vec<&str> = sessions
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["tool_secret"].as_str())
        .collect();
    named.sort();
    assert_eq!(named, ["dbeaver", "notebook"], "{sessions:#}");
    let text = rig.ok(&["sessions"]).await;
    assert!(text.contains("dbeaver: PythonConnector"), "{text}");
    let out = rig.ok(&["tool-secret", "revoke", "dbeaver"]).await;
    assert!(out.contains("Revoked"), "{out}");
    assert!(out.contains("its open session was closed"), "{out}");
    rig.wait_closed(held, Duration::from_secs(5))
        .await
        .expect("the session opened with the revoked secret is still open at the front");
    client.kill();
    assert!(
        rig.wait_closed(notebook_held, Duration::from_secs(1))
            .await
            .is_none(),
        "revoking dbeaver's secret closed the notebook's session"
    );
    let sessions: Value = serde_json::from_str(&rig.ok(&["sessions", "--json"]).await).unwrap();
    let left: Vec<&str> = sessions
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["tool_secret"].as_str())
        .collect();
    assert_eq!(left, ["notebook"], "{sessions:#}");
    notebook.kill();
    // The audit names each session's tool by its secret.
    let audit = rig.ok(&["audit", "--json"]).await;
    assert!(audit.contains("dbeaver (PythonConnector"), "{audit}");
    assert!(audit.contains("notebook (PythonConnector"), "{audit}");

    let r = run_python(PythonDriver::V5, &python(&rig, &secret))
        .await
        .unwrap();
    let (errno, msg) = py_error(&r);
    assert_eq!(errno, 390100, "{msg}");
    assert!(msg.contains(NO_SECRET), "{msg}");
    let list = rig.ok(&["tool-secret", "list", "--json"]).await;
    assert!(!list.contains("dbeaver"), "{list}");
    let (ok, _, err) = rig.run(&["tool-secret", "revoke", "dbeaver"]).await;
    assert!(!ok, "revoking twice succeeded");
    assert!(err.contains("no connection secret for dbeaver"), "{err}");

    stop(broker).await;

    // The secret is in no file under the data dir, and not in the broker's TRACE log.
    let data = rig.dir.path().join("data");
    let files = files_under(&data);
    assert!(!files.is_empty());
    for f in files {
        let bytes = std::fs::read(&f).unwrap_or_default();
        assert!(
            !contains(&bytes, &secret),
            "the secret is in {}",
            f.display()
        );
    }
    let log = std::fs::read(rig.dir.path().join("broker.log")).unwrap();
    assert!(log.len() > 10_000, "the TRACE log is suspiciously short");
    assert!(
        !contains(&log, &secret),
        "the secret is in the broker's log"
    );
    assert!(
        !contains(&log, &secret[3..]),
        "the secret's body is in the broker's log"
    );
}

#[tokio::test]
async fn an_unreachable_keyring_is_named_and_no_secret_is_created() {
    let rig = Rig::start_with(KeyringState::Locked, "require_tool_secrets = true", "trace").await;
    let broker = rig.broker().await;
    let (ok, out, err) = rig.run(&["tool-secret", "create", "dbeaver"]).await;
    assert!(!ok, "created a secret without a keyring: {out}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("the OS keyring can't be reached"), "{err}");
    let list = rig.ok(&["tool-secret", "list", "--json"]).await;
    assert!(!list.contains("dbeaver"), "{list}");
    // Logins are still refused with the sentence.
    let r = run_python(PythonDriver::V5, &python(&rig, "whatever"))
        .await
        .unwrap();
    assert!(py_error(&r).1.contains(NO_SECRET), "{r:#}");
    stop(broker).await;
}
