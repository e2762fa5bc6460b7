//! The rig shared by the CLI's end-to-end tests: the real `snowgate up` broker and CLI, with the
//! rig's IdP (oidc-provider), Secret Service (gnome-keyring) and Snowflake front (fakesnow),
//! and the real Python connector talking to the broker's gateway.
//!
//! Each test binary uses part of it, hence `dead_code` is allowed here.
#![allow(dead_code)]

use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use snowgate_rig::clients::{spawn_python, ClientRun, PythonDriver, RunningClient};
use snowgate_rig::idp::{Idp, IdpOptions, IdpProfile, CLIENT_ID};
use snowgate_rig::secret_service::{KeyringState, SecretService};
use snowgate_rig::snowflake::{Snowflake, SnowflakeOptions};
use snowgate_rig::{free_port, TestCa};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub struct Rig {
    pub idp: Idp,
    pub sf: Snowflake,
    pub keyring: SecretService,
    pub dir: tempfile::TempDir,
    pub port: u16,
    rust_log: String,
}

impl Rig {
    pub async fn start() -> Rig {
        Rig::start_with(KeyringState::Unlocked, "", "info,snowgate_engine=debug").await
    }

    /// A rig whose keyring is in `keyring` state, with `gateway_extra` appended to the
    /// `[gateway]` table of the broker's config and `rust_log` as the broker's RUST_LOG.
    pub async fn start_with(keyring: KeyringState, gateway_extra: &str, rust_log: &str) -> Rig {
        Rig::start_full(keyring, gateway_extra, rust_log, IdpProfile::Strict).await
    }

    /// A rig whose IdP behaves like `profile`'s provider, the broker configured with the
    /// matching `[identity] provider` preset and the Snowflake front trusting that provider the
    /// way its Snowflake security integration is set up.
    pub async fn start_profile(profile: IdpProfile) -> Rig {
        Rig::start_full(
            KeyringState::Unlocked,
            "",
            "info,snowgate_engine=debug",
            profile,
        )
        .await
    }

    async fn start_full(
        keyring: KeyringState,
        gateway_extra: &str,
        rust_log: &str,
        profile: IdpProfile,
    ) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::generate(&dir.path().join("tls")).unwrap();
        Rig::start_around(
            dir,
            ca,
            IdpOptions::profile(profile),
            Vec::new(),
            keyring,
            gateway_extra,
            rust_log,
        )
        .await
    }

    /// A rig in `dir` whose TLS parts use `ca`, whose IdP runs with `idp_opts` and whose
    /// Snowflake front gets `sf_env`: the caller made them first, e.g. to put the rig's fault
    /// proxy in front of the IdP, or to move the parts' clocks.
    pub async fn start_around(
        dir: tempfile::TempDir,
        ca: TestCa,
        idp_opts: IdpOptions,
        sf_env: Vec<(String, String)>,
        keyring: KeyringState,
        gateway_extra: &str,
        rust_log: &str,
    ) -> Rig {
        Rig::start_around_sf(dir, ca, idp_opts, keyring, gateway_extra, rust_log, |sf| {
            SnowflakeOptions { env: sf_env, ..sf }
        })
        .await
    }

    /// [`Rig::start`] with more flags for the Snowflake front (e.g. `--chunk-rows`).
    pub async fn start_front_args(front_args: &[&str]) -> Rig {
        let front_args: Vec<String> = front_args.iter().map(|a| a.to_string()).collect();
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::generate(&dir.path().join("tls")).unwrap();
        Rig::start_around_sf(
            dir,
            ca,
            IdpOptions::profile(IdpProfile::Strict),
            KeyringState::Unlocked,
            "",
            "info,snowgate_engine=debug",
            |sf| SnowflakeOptions {
                extra_args: front_args,
                ..sf
            },
        )
        .await
    }

    /// [`Rig::start_around`] with the Snowflake front's options changed by `sf`.
    pub async fn start_around_sf(
        dir: tempfile::TempDir,
        ca: TestCa,
        idp_opts: IdpOptions,
        keyring: KeyringState,
        gateway_extra: &str,
        rust_log: &str,
        sf: impl FnOnce(SnowflakeOptions) -> SnowflakeOptions,
    ) -> Rig {
        let idp = Idp::start(&ca, idp_opts).await.unwrap();
        let sf = Snowflake::start(sf(SnowflakeOptions::trusting(&idp)))
            .await
            .unwrap();
        let keyring = SecretService::start(keyring).await.unwrap();
        let port = free_port().unwrap();
        let config = format!(
            r#"
[identity]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
{preset}snowflake_audience = "https://snowflake.rig.test"
extra_ca_file = "{ca}"

[snowflake]
account = "rigacct"
url = "{sf_url}"

[gateway]
listen = "127.0.0.1:{port}"
{gateway_extra}

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
            preset = idp.snowgate_identity_lines(),
            ca = ca.ca_file.display(),
            sf_url = sf.url(),
        )
        .replace(
            "approvers = [\"managers\"]",
            &format!("approvers = [\"{}\"]", idp.group_name("managers")),
        );
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        Rig {
            idp,
            sf,
            keyring,
            dir,
            port,
            rust_log: rust_log.to_string(),
        }
    }

    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn env(&self) -> Vec<(String, String)> {
        let mut env = self.keyring.env();
        let p = |s: &str| self.dir.path().join(s).display().to_string();
        std::fs::create_dir_all(self.dir.path().join("runtime")).unwrap();
        env.push(("XDG_RUNTIME_DIR".into(), p("runtime")));
        env.push(("SNOWGATE_CONFIG".into(), p("config.toml")));
        env.push(("SNOWGATE_DATA_DIR".into(), p("data")));
        env
    }

    pub fn snowgate(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_snowgate"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.env())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    pub async fn broker(&self) -> Child {
        self.broker_with_env(&[]).await
    }

    /// [`Rig::broker`] with more environment for the broker process.
    pub async fn broker_with_env(&self, env: &[(String, String)]) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .unwrap();
        let child = self
            .snowgate(&["up"])
            .env("RUST_LOG", &self.rust_log)
            .envs(env.iter().map(|(k, v)| (k, v)))
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

    pub async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = self.snowgate(args).output().await.unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(ok, "snowgate {args:?} failed: {err}\n{}", self.log_tail());
        out
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A command that prints a URL on its first stdout line for `user` to sign in at
    /// (`snowgate login --no-browser`, `snowgate approve ID --no-browser`); the rig's headless
    /// browser signs `user` in there, and the command's output is returned.
    pub async fn with_sign_in(&self, args: &[&str], user: &str) -> (bool, String, String) {
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
        // The CLI opens a short local start URL, so the authorization request (state, nonce,
        // PKCE challenge) is on no command line.
        assert!(
            url.starts_with("http://127.0.0.1:") && url.contains("/start/") && !url.contains('?'),
            "{url}"
        );
        if args[0] != "login" {
            // An approver's sign-in asks for the password again, whatever the browser holds.
            let start = reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap()
                .get(&url)
                .send()
                .await
                .unwrap();
            assert_eq!(start.status().as_u16(), 303, "{url}");
            let to = start.headers()["location"].to_str().unwrap().to_string();
            assert!(
                to.contains("prompt=login") && to.contains("max_age=0"),
                "{to}"
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

    pub async fn login(&self, user: &str) {
        let (ok, _, err) = self.with_sign_in(&["login", "--no-browser"], user).await;
        assert!(ok, "login failed: {err}");
    }

    pub async fn grants_all(&self) -> Value {
        serde_json::from_str(&self.ok(&["grants", "--all", "--json"]).await).unwrap()
    }

    /// `snowgate request ...` as the signed-in user; returns the grant id.
    pub async fn request(&self, role: &str, duration: &str) -> String {
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

    pub fn python(&self, scenario: &str) -> ClientRun {
        ClientRun::password(&self.gateway_url(), "anyone", "any-password", scenario)
            .timeout(Duration::from_secs(60))
    }

    pub async fn hold(&self, role: &str, secs: u32) -> (RunningClient, u64) {
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
    pub async fn wait_closed(&self, session: u64, within: Duration) -> Option<Instant> {
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

/// Kills a broker started with [`Rig::broker`] and waits for it.
pub async fn stop(mut broker: Child) {
    let _ = broker.kill().await;
    let _ = broker.wait().await;
}

/// The errno and message of a driver run that was refused.
pub fn py_error(result: &Value) -> (i64, String) {
    assert_eq!(result["ok"], false, "expected a refusal: {result:#}");
    (
        result["error"]["errno"].as_i64().unwrap_or(0),
        result["error"]["msg"].as_str().unwrap_or("").to_string(),
    )
}
