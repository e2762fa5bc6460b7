//! Just-in-time access end to end: the real `snowgate up` broker and CLI, the rig's IdP
//! (oidc-provider), Secret Service (gnome-keyring), Snowflake front (fakesnow) and the real
//! Python connector talking to the broker's gateway.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;
use snowgate_rig::clients::{run_python, spawn_python, ClientRun, PythonDriver, RunningClient};
use snowgate_rig::idp::{Idp, IdpOptions, CLIENT_ID};
use snowgate_rig::secret_service::{KeyringState, SecretService};
use snowgate_rig::snowflake::{Snowflake, SnowflakeOptions};
use snowgate_rig::{free_port, TestCa};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

struct Rig {
    idp: Idp,
    sf: Snowflake,
    keyring: SecretService,
    dir: tempfile::TempDir,
    port: u16,
}

impl Rig {
    async fn start() -> Rig {
        Rig::start_with(KeyringState::Unlocked).await
    }

    async fn start_with(keyring: KeyringState) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::generate(&dir.path().join("tls")).unwrap();
        let idp = Idp::start(&ca, IdpOptions::default()).await.unwrap();
        let sf = Snowflake::start(SnowflakeOptions::trusting(&idp))
            .await
            .unwrap();
        let keyring = SecretService::start(keyring).await.unwrap();
        let port = free_port().unwrap();
        let config = format!(
            r#"
[identity]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
scopes = ["openid", "profile", "email", "groups", "offline_access"]
snowflake_audience = "https://snowflake.rig.test"
extra_ca_file = "{ca}"

[snowflake]
account = "rigacct"
url = "{sf_url}"

[gateway]
listen = "127.0.0.1:{port}"

[[roles]]
name = "ANALYST"
description = "Read the analytics schemas"
max_duration = "8h"
approvers = ["managers"]
auto_approve_up_to = "1h"

[[roles]]
name = "ENGINEER"
max_duration = "2h"
approvers = ["managers"]
"#,
            issuer = idp.issuer(),
            ca = ca.ca_file.display(),
            sf_url = sf.url(),
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        Rig {
            idp,
            sf,
            keyring,
            dir,
            port,
        }
    }

    fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn env(&self) -> Vec<(String, String)> {
        let mut env = self.keyring.env();
        let p = |s: &str| self.dir.path().join(s).display().to_string();
        std::fs::create_dir_all(self.dir.path().join("runtime")).unwrap();
        env.push(("XDG_RUNTIME_DIR".into(), p("runtime")));
        env.push(("SNOWGATE_CONFIG".into(), p("config.toml")));
        env.push(("SNOWGATE_DATA_DIR".into(), p("data")));
        env
    }

    fn snowgate(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_snowgate"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    async fn broker(&self) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .unwrap();
        let child = self
            .snowgate(&["up"])
            .env("RUST_LOG", "info,snowgate_engine=debug")
            .stderr(log)
            .spawn()
            .unwrap();
        for _ in 0..400 {
            if self.run(&["status"]).await.0 {
                return child;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the broker did not open its control socket");
    }

    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.snowgate(args).output().await.unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(ok, "snowgate {args:?} failed: {err}\n{}", self.log_tail());
        out
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A command that prints a URL on its first stdout line for `user` to sign in at
    /// (`snowgate login --no-browser`, `snowgate approve ID --no-browser`); the rig's headless
    /// browser signs `user` in there, and the command's output is returned.
    async fn with_sign_in(&self, args: &[&str], user: &str) -> (bool, String, String) {
        let mut child = self
            .snowgate(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), stdout.next_line())
            .await
            .expect("the command printed no URL")
            .unwrap();
        let Some(url) = line else {
            let out = child.wait_with_output().await.unwrap();
            return (
                out.status.success(),
                String::new(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        };
        let url = url.trim().to_string();
        if args[0] != "login" {
            // An approver's sign-in asks for the password again, whatever the browser holds.
            assert!(
                url.contains("prompt=login") && url.contains("max_age=0"),
                "{url}"
            );
        }
        if let Err(e) = self.idp.complete_login_and_follow(&url, user).await {
            panic!("signing {user} in at the IdP: {e:#}");
        }
        let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        (
            out.status.success(),
            String::new(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    async fn login(&self, user: &str) {
        let (ok, _, err) = self.with_sign_in(&["login", "--no-browser"], user).await;
        assert!(ok, "login failed: {err}");
    }

    async fn grants_all(&self) -> Value {
        serde_json::from_str(&self.ok(&["grants", "--all", "--json"]).await).unwrap()
    }

    /// `snowgate request ...` as the signed-in user; returns the grant id.
    async fn request(&self, role: &str, duration: &str) -> String {
        self.ok(&[
            "request",
            role,
            "--duration",
            duration,
            "--reason",
            "quarterly revenue report",
        ])
        .await
        .trim()
        .to_string()
    }

    fn python(&self, scenario: &str) -> ClientRun {
        ClientRun::password(&self.gateway_url(), "anyone", "any-password", scenario)
            .timeout(Duration::from_secs(60))
    }

    async fn hold(&self, role: &str, secs: u32) -> (RunningClient, u64) {
        let run = self.python("hold").role(role).arg([
            "--interval",
            "0.2",
            "--duration",
            &secs.to_string(),
        ]);
        let mut client = spawn_python(PythonDriver::V5, &run).await.unwrap();
        let wait = Duration::from_secs(20);
        let connected = client.next_line(wait).await.unwrap().unwrap();
        assert_eq!(connected["event"], "connected", "{connected:#}");
        let session = connected["session_id"].as_u64().unwrap();
        let first = client.next_line(wait).await.unwrap().unwrap();
        assert_eq!(first["ok"], true, "{first:#}");
        (client, session)
    }

    /// Polls the front until `session` is closed; returns when it saw it closed.
    async fn wait_closed(&self, session: u64, within: Duration) -> Option<Instant> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if !self.sf.session(session).await.unwrap().open {
                return Some(Instant::now());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

fn py_error(result: &Value) -> (i64, String) {
    assert_eq!(result["ok"], false, "expected a refusal: {result:#}");
    (
        result["error"]["errno"].as_i64().unwrap_or(0),
        result["error"]["msg"].as_str().unwrap_or("").to_string(),
    )
}

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

async fn stop(mut broker: Child) {
    let _ = broker.kill().await;
    let _ = broker.wait().await;
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
    let rig = Rig::start_with(KeyringState::Locked).await;
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
