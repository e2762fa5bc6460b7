//! Per-tool connection secrets end to end: the real `snowgate up` broker with
//! `require_tool_secrets = true`, the rig's IdP, Secret Service and Snowflake front, and the real
//! Python connector logging in to the broker's gateway with a tool secret as its password.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use snowgate_rig::clients::{run_python, spawn_python, ClientRun, PythonDriver};
use snowgate_rig::idp::{Idp, IdpOptions, CLIENT_ID};
use snowgate_rig::secret_service::{KeyringState, SecretService};
use snowgate_rig::snowflake::{Snowflake, SnowflakeOptions};
use snowgate_rig::{free_port, TestCa};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const NO_SECRET: &str = "Snowgate: this tool's connection secret is missing or revoked. Create one with `snowgate tool-secret create NAME` and use it as the password.";

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
require_tool_secrets = true

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
            .env("RUST_LOG", "trace")
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

    fn python(&self, password: &str) -> ClientRun {
        ClientRun::password(&self.gateway_url(), "anyone", password, "smoke")
            .role("ANALYST")
            .timeout(Duration::from_secs(60))
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

async fn stop(mut broker: Child) {
    let _ = broker.kill().await;
    let _ = broker.wait().await;
}

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
    let rig = Rig::start().await;
    let broker = rig.broker().await;
    rig.login("alice").await;
    let id = rig.request("ANALYST", "5m").await;
    assert!(id.starts_with("g_"), "{id}");

    // Secrets required, none created: a wrong password is refused with the sentence.
    let r = run_python(PythonDriver::V5, &rig.python("any-password"))
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
    let r = run_python(PythonDriver::V5, &rig.python(&secret))
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

    // A near miss is refused.
    let mut near = secret.clone();
    near.pop();
    near.push(if secret.ends_with('A') { 'B' } else { 'A' });
    let r = run_python(PythonDriver::V5, &rig.python(&near))
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

    // A held connection made with the secret, then revoke: its session is closed, and a new
    // login with the secret is refused.
    let run = rig
        .python(&secret)
        .arg(["--interval", "0.2", "--duration", "30"]);
    let run = ClientRun {
        scenario: "hold".into(),
        ..run
    };
    let mut client = spawn_python(PythonDriver::V5, &run).await.unwrap();
    let connected = client
        .next_line(Duration::from_secs(20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(connected["event"], "connected", "{connected:#}");
    let held = connected["session_id"].as_u64().unwrap();
    let out = rig.ok(&["tool-secret", "revoke", "dbeaver"]).await;
    assert!(out.contains("Revoked"), "{out}");
    rig.wait_closed(held, Duration::from_secs(5))
        .await
        .expect("the session opened with the revoked secret is still open at the front");
    client.kill();

    let r = run_python(PythonDriver::V5, &rig.python(&secret))
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
    let rig = Rig::start_with(KeyringState::Locked).await;
    let broker = rig.broker().await;
    let (ok, out, err) = rig.run(&["tool-secret", "create", "dbeaver"]).await;
    assert!(!ok, "created a secret without a keyring: {out}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("the OS keyring can't be reached"), "{err}");
    let list = rig.ok(&["tool-secret", "list", "--json"]).await;
    assert!(!list.contains("dbeaver"), "{list}");
    // Logins are still refused with the sentence.
    let r = run_python(PythonDriver::V5, &rig.python("whatever"))
        .await
        .unwrap();
    assert!(py_error(&r).1.contains(NO_SECRET), "{r:#}");
    stop(broker).await;
}
