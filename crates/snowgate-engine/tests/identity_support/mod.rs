//! Shared setup for the identity integration tests: the rig's IdP over TLS, a config that
//! trusts the rig's CA, and drivers for the browser and device sign-ins.

#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use snowgate_engine::identity::{
    Clock, Identity, IdentityEvent, IdentityOptions, Profile, SystemClock, Vault,
};
use snowgate_engine::Config;
use snowgate_rig::idp::{Idp, IdpOptions, CLIENT_ID};
use snowgate_rig::TestCa;
use tokio::sync::broadcast;

pub const AUDIENCE: &str = "https://snowflake.rig.test";

/// The rig's IdP and a temporary directory for the CA and the broker's data.
pub struct Rig {
    pub idp: Idp,
    pub dir: tempfile::TempDir,
}

impl Rig {
    pub async fn start(opts: IdpOptions) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::generate(&dir.path().join("ca")).unwrap();
        let idp = Idp::start(&ca, opts).await.unwrap();
        Rig { idp, dir }
    }

    pub async fn start_default() -> Rig {
        Rig::start(IdpOptions::default()).await
    }

    /// The broker's data directory.
    pub fn data_dir(&self) -> PathBuf {
        let d = self.dir.path().join("data");
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A config for the rig's IdP with roles ANALYST and ENGINEER.
    pub fn config(&self) -> Config {
        self.config_with(&self.idp.issuer(), CLIENT_ID, "")
    }

    /// A config with another issuer or client id, plus extra `[identity]` lines. The IdP's
    /// provider preset is selected (see [`Idp::snowgate_identity_lines`]) unless
    /// `extra_identity` names a `provider` itself, and the approvers are the IdP's name for
    /// the managers group.
    pub fn config_with(&self, issuer: &str, client_id: &str, extra_identity: &str) -> Config {
        let preset = if extra_identity.contains("provider =") {
            String::new()
        } else {
            self.idp.snowgate_identity_lines()
        };
        let text = config_source(
            issuer,
            client_id,
            self.idp.ca_file(),
            &format!("{preset}{extra_identity}"),
        )
        .replace(
            "approvers = [\"managers\"]",
            &format!("approvers = [\"{}\"]", self.idp.group_name("managers")),
        );
        Config::parse(&text, Path::new("/test/snowgate.toml")).unwrap()
    }

    /// An [`Identity`] over the data dir with the system clock.
    pub async fn identity(&self, vault: Arc<dyn Vault>) -> Identity {
        self.identity_with(&self.config(), vault, Arc::new(SystemClock))
            .await
    }

    pub async fn identity_with(
        &self,
        config: &Config,
        vault: Arc<dyn Vault>,
        clock: Arc<dyn Clock>,
    ) -> Identity {
        Identity::with_options(
            config,
            &self.data_dir(),
            vault,
            clock,
            IdentityOptions {
                login_timeout: Duration::from_secs(20),
            },
        )
        .await
        .unwrap()
    }
}

pub fn config_text(issuer: &str, client_id: &str, ca_file: &Path, extra_identity: &str) -> Config {
    let text = config_source(issuer, client_id, ca_file, extra_identity);
    Config::parse(&text, Path::new("/test/snowgate.toml")).unwrap()
}

/// The text of [`config_text`].
pub fn config_source(
    issuer: &str,
    client_id: &str,
    ca_file: &Path,
    extra_identity: &str,
) -> String {
    format!(
        r#"
[identity]
issuer = "{issuer}"
client_id = "{client_id}"
snowflake_audience = "{AUDIENCE}"
extra_ca_file = "{ca}"
device_poll_interval = "1s"
{extra_identity}

[snowflake]
account = "acme-test"

[[roles]]
name = "ANALYST"
max_duration = "8h"
approvers = ["managers"]

[[roles]]
name = "ENGINEER"
max_duration = "4h"
approvers = ["managers"]
"#,
        ca = ca_file.display()
    )
}

/// A whole browser sign-in as `user`: the rig drives the IdP's pages and follows the redirect
/// to the broker's loopback listener. Returns the outcome and the page the browser got.
pub async fn browser_login(
    identity: &Identity,
    idp: &Idp,
    user: &str,
) -> (
    Result<Profile, snowgate_engine::identity::IdentityError>,
    (u16, String),
) {
    let pending = identity.begin_browser_login().await.unwrap();
    let url = pending.authorize_url().to_string();
    let (outcome, page) = tokio::join!(pending.wait(), idp.complete_login_and_follow(&url, user));
    (outcome, page.unwrap())
}

/// A whole device sign-in as `user`.
pub async fn device_login(identity: &Identity, idp: &Idp, user: &str) -> Profile {
    let pending = identity.begin_device_login().await.unwrap();
    let code = pending.user_code().to_string();
    let (outcome, confirmed) = tokio::join!(pending.wait(), idp.complete_device(&code, user));
    confirmed.unwrap();
    outcome.unwrap()
}

/// Waits up to `timeout` for an event that matches.
pub async fn next_event(
    rx: &mut broadcast::Receiver<IdentityEvent>,
    timeout: Duration,
    matches: impl Fn(&IdentityEvent) -> bool,
) -> IdentityEvent {
    tokio::time::timeout(timeout, async {
        loop {
            match rx.recv().await {
                Ok(e) if matches(&e) => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => panic!("the event channel closed"),
            }
        }
    })
    .await
    .expect("the expected event did not come in time")
}

/// Polls `check` every 50 ms until it holds or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, check: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    while !check().await {
        if tokio::time::Instant::now() >= deadline {
            panic!("{what} did not happen within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The role scopes of a JWT access token: its `scp`, or else its `scope` (as a string or a
/// list, space-separated, without any Application ID URI prefix).
pub fn scp(jwt: &str) -> String {
    let claims = snowgate_rig::idp::jwt_payload(jwt).unwrap();
    let value = claims.get("scp").or_else(|| claims.get("scope"));
    let items: Vec<String> = match value {
        Some(serde_json::Value::String(s)) => s.split(' ').map(str::to_string).collect(),
        Some(serde_json::Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    items
        .iter()
        .filter_map(|s| s.rsplit('/').next())
        .filter(|s| s.starts_with("session:role:"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Every file under `dir`, recursively, as (path, bytes).
pub fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.push((path, bytes));
            }
        }
    }
    out
}

/// Set in the environment of a child test process (see [`run_in_child`]).
pub const CHILD_ENV: &str = "SNOWGATE_TEST_CHILD";

/// Whether this process is a child started by [`run_in_child`].
pub fn in_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Runs the ignored test `name` of this test binary in a new process whose environment is
/// `env` (for example the rig's D-Bus session and HOME), and fails if it fails.
///
/// Why a child process: the keyring crate reads `DBUS_SESSION_BUS_ADDRESS` from the process
/// environment, and the rig's bus address is known only once the rig runs, by which time this
/// process has threads. Changing the environment of a process with threads is unsound (a
/// concurrent `getenv` in C code may read freed memory), so the environment is given to a new
/// process at exec instead.
pub async fn run_in_child(name: &str, env: Vec<(String, String)>) -> String {
    let exe = std::env::current_exe().unwrap();
    let out = tokio::process::Command::new(exe)
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .envs(env)
        .env(CHILD_ENV, "1")
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("----- child test {name} -----\n{text}\n----- end of child test {name} -----");
    assert!(
        out.status.success(),
        "the child test {name} failed:\n{text}"
    );
    assert!(
        text.contains("1 passed"),
        "the child test {name} did not run:\n{text}"
    );
    text
}

/// Reads the Snowgate entry for `account` with libsecret's `secret-tool`, independently of
/// the keyring crate. Uses this process's environment (so call it in a child).
pub async fn secret_tool_lookup(account: &str) -> Option<String> {
    let out = tokio::process::Command::new("secret-tool")
        .args(["lookup", "service", "snowgate", "username", account])
        .output()
        .await
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}
