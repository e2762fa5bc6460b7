//! Sign-in through the real CLI and broker processes, with the rig's real IdP (oidc-provider
//! over TLS) and a real Secret Service (gnome-keyring on a private D-Bus).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use snowgate_rig::idp::{Idp, IdpOptions, CLIENT_ID};
use snowgate_rig::secret_service::{KeyringState, SecretService};
use snowgate_rig::TestCa;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

struct Rig {
    idp: Idp,
    keyring: SecretService,
    dir: tempfile::TempDir,
}

impl Rig {
    async fn start(state: KeyringState) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::generate(&dir.path().join("tls")).unwrap();
        let idp = Idp::start(&ca, IdpOptions::default()).await.unwrap();
        let keyring = SecretService::start(state).await.unwrap();
        let config = format!(
            r#"
[identity]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
scopes = ["openid", "profile", "email", "groups", "offline_access"]
snowflake_audience = "https://snowflake.rig.test"
extra_ca_file = "{ca}"
device_poll_interval = "1s"

[snowflake]
account = "rigacct"
url = "http://127.0.0.1:9"

[[roles]]
name = "ANALYST"
max_duration = "8h"
approvers = ["managers"]
"#,
            issuer = idp.issuer(),
            ca = ca.ca_file.display(),
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        Rig { idp, keyring, dir }
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

    /// Starts `snowgate up` with all logs at TRACE into `broker.log`.
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
        for _ in 0..200 {
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

    /// `snowgate login [extra]` with the browser step done by the rig's headless driver.
    async fn browser_login(&self, user: &str, extra: &[&str]) -> (bool, String, String) {
        let mut args = vec!["login", "--no-browser"];
        args.extend_from_slice(extra);
        let mut child = self
            .snowgate(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), stdout.next_line())
            .await
            .expect("login printed no URL")
            .unwrap();
        let Some(url) = line else {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .await
                .unwrap();
            return (child.wait().await.unwrap().success(), err, String::new());
        };
        let (_, page) = self
            .idp
            .complete_login_and_follow(url.trim(), user)
            .await
            .unwrap();
        let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
            .await
            .unwrap()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            page,
        )
    }

    fn files_under(&self, dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
        out
    }
}

fn account(idp: &Idp, sub: &str) -> String {
    format!("{}|{CLIENT_ID}|{sub}", idp.issuer().trim_end_matches('/'))
}

fn jwt_like(text: &str) -> bool {
    regex::Regex::new(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
        .unwrap()
        .is_match(text)
}

#[tokio::test]
async fn browser_sign_in_survives_a_restart_and_logout_revokes_it() {
    let rig = Rig::start(KeyringState::Unlocked).await;
    let mut broker = rig.broker().await;

    let (ok, out, _) = rig.run(&["whoami"]).await;
    assert!(!ok && out.is_empty());

    let (ok, stderr, page) = rig.browser_login("alice", &[]).await;
    assert!(ok, "{stderr}");
    assert!(page.contains("return to the app"), "{page}");
    assert!(
        stderr.contains("Signed in as alice@example.test (groups: analysts)"),
        "{stderr}"
    );

    let (ok, out, err) = rig.run(&["whoami", "--json"]).await;
    assert!(ok, "{err}");
    let who: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(who["subject"], "alice");
    assert_eq!(who["groups"], serde_json::json!(["analysts"]));
    assert_eq!(who["vault"], "os_keyring");
    let (_, status, _) = rig.run(&["status"]).await;
    assert!(status.starts_with("Signed in as alice"), "{status}");

    // The refresh token is in the OS keyring, and nowhere on disk.
    let refresh = rig
        .keyring
        .lookup(&[
            ("service", "snowgate"),
            ("username", &account(&rig.idp, "alice")),
        ])
        .await
        .unwrap()
        .expect("the refresh token is in the keyring");
    assert!(refresh.len() > 16);

    // A restarted broker restores the sign-in from the keyring.
    broker.kill().await.unwrap();
    let _ = broker.wait().await;
    let mut broker = rig.broker().await;
    let (ok, out, err) = rig.run(&["whoami"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("Subject:   alice"), "{out}");
    assert!(out.contains("the OS keyring"), "{out}");

    let (ok, out, err) = rig.run(&["logout"]).await;
    assert!(ok, "{err}");
    assert!(out.to_lowercase().contains("revoked"), "{out}");
    let (ok, _, err) = rig.run(&["whoami"]).await;
    assert!(!ok);
    assert!(err.contains("not signed in"), "{err}");
    assert_eq!(
        rig.keyring
            .lookup(&[
                ("service", "snowgate"),
                ("username", &account(&rig.idp, "alice"))
            ])
            .await
            .unwrap(),
        None
    );
    // The IdP no longer honours the old refresh token.
    assert!(rig.idp.refresh(refresh.trim(), None, None).await.is_err());

    broker.kill().await.unwrap();
    let _ = broker.wait().await;

    // No token in the broker's TRACE logs or in any file under the data dir.
    let log = std::fs::read_to_string(rig.dir.path().join("broker.log")).unwrap();
    assert!(log.contains("TRACE"), "the broker logged at TRACE");
    assert!(!log.contains(refresh.trim()));
    assert!(
        !jwt_like(&log),
        "a JWT-shaped string is in the broker's log"
    );
    for file in rig.files_under(&rig.dir.path().join("data")) {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
        assert!(!text.contains(refresh.trim()), "{}", file.display());
        assert!(!jwt_like(&text), "{}", file.display());
    }
}

#[tokio::test]
async fn device_sign_in_shows_a_code_and_completes() {
    let rig = Rig::start(KeyringState::Unlocked).await;
    let _broker = rig.broker().await;
    let mut child = rig
        .snowgate(&["login", "--device"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let code = tokio::time::timeout(Duration::from_secs(20), stdout.next_line())
        .await
        .unwrap()
        .unwrap()
        .expect("a user code");
    rig.idp.complete_device(code.trim(), "bob").await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("enter the code"), "{stderr}");
    assert!(
        stderr.contains("Signed in as bob@example.test (groups: managers)"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_locked_keyring_is_explained_and_session_only_mode_works() {
    let rig = Rig::start(KeyringState::Locked).await;
    let _broker = rig.broker().await;
    let (ok, stderr, _) = rig.browser_login("carol", &[]).await;
    assert!(!ok);
    assert!(stderr.contains("keyring"), "{stderr}");
    assert!(stderr.contains("--session-only"), "{stderr}");

    let (ok, stderr, _) = rig.browser_login("carol", &["--session-only"]).await;
    assert!(ok, "{stderr}");
    let (ok, out, _) = rig.run(&["whoami"]).await;
    assert!(ok);
    assert!(out.contains("memory only"), "{out}");
}
