//! A real Secret Service for keyring tests: gnome-keyring on a private D-Bus session bus.
//!
//! Nothing here touches the machine's own session: the bus, HOME and the XDG dirs all live in a
//! temp dir. Programs that should use this keyring get [`SecretService::env`] in their
//! environment. The keyring can be started unlocked (the normal case) or locked (to test the
//! broker's message when it cannot reach the secrets).

use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::Command;

use crate::process::RigProcess;

/// What state to start the keyring in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyringState {
    /// The login keyring exists and is unlocked.
    Unlocked,
    /// gnome-keyring runs but no keyring was unlocked, so reads and writes fail.
    Locked,
}

/// A private D-Bus session with gnome-keyring's secrets component on it.
pub struct SecretService {
    keyring: Option<RigProcess>,
    _bus: RigProcess,
    dir: tempfile::TempDir,
    bus_address: String,
}

impl SecretService {
    /// Starts the bus and the keyring daemon and waits until `org.freedesktop.secrets` is served.
    pub async fn start(state: KeyringState) -> Result<SecretService> {
        let dir = tempfile::Builder::new()
            .prefix("snowgate-keyring-")
            .tempdir()?;
        for sub in ["home", "runtime", "config", "data"] {
            std::fs::create_dir_all(dir.path().join(sub))?;
        }
        let socket = dir.path().join("bus");
        let mut bus = Command::new("dbus-daemon");
        bus.args(["--session", "--nofork", "--print-address=1"])
            .arg(format!("--address=unix:path={}", socket.display()));
        let (bus, line) = RigProcess::spawn("D-Bus", bus, "unix:path=", Duration::from_secs(10))
            .await
            .context("starting dbus-daemon (apt-get install dbus)")?;
        let mut service = SecretService {
            keyring: None,
            _bus: bus,
            bus_address: line.trim().to_string(),
            dir,
        };
        let script = match state {
            KeyringState::Unlocked => {
                "printf snowgate-rig | exec gnome-keyring-daemon --unlock --components=secrets --foreground"
            }
            KeyringState::Locked => {
                "exec gnome-keyring-daemon --components=secrets --foreground </dev/null"
            }
        };
        let mut keyring = Command::new("sh");
        keyring.args(["-c", script]).envs(service.env());
        let (keyring, _) = RigProcess::spawn("gnome-keyring", keyring, "", Duration::ZERO)
            .await
            .context("starting gnome-keyring-daemon (apt-get install gnome-keyring)")?;
        service.keyring = Some(keyring);
        service.wait_for_name().await?;
        Ok(service)
    }

    async fn wait_for_name(&self) -> Result<()> {
        for _ in 0..100 {
            let out = Command::new("dbus-send")
                .envs(self.env())
                .args([
                    "--session",
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.NameHasOwner",
                    "string:org.freedesktop.secrets",
                ])
                .output()
                .await
                .context("running dbus-send")?;
            if String::from_utf8_lossy(&out.stdout).contains("boolean true") {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "gnome-keyring did not take org.freedesktop.secrets on the bus within 5 s\n{}",
            self.keyring
                .as_ref()
                .map(|k| k.recent_output())
                .unwrap_or_default()
        )
    }

    /// Environment for a program that should use this keyring: the bus address, and HOME and
    /// the XDG dirs inside the rig's temp dir.
    pub fn env(&self) -> Vec<(String, String)> {
        let p = |sub: &str| self.dir.path().join(sub).display().to_string();
        vec![
            ("DBUS_SESSION_BUS_ADDRESS".into(), self.bus_address.clone()),
            ("HOME".into(), p("home")),
            ("XDG_RUNTIME_DIR".into(), p("runtime")),
            ("XDG_CONFIG_HOME".into(), p("config")),
            ("XDG_DATA_HOME".into(), p("data")),
        ]
    }

    /// Reads a secret with libsecret's `secret-tool`, as an independent check of what the
    /// broker stored. Returns `None` when no item matches.
    pub async fn lookup(&self, attributes: &[(&str, &str)]) -> Result<Option<String>> {
        let mut cmd = Command::new("secret-tool");
        cmd.arg("lookup").envs(self.env());
        for (k, v) in attributes {
            cmd.args([k, v]);
        }
        let out = cmd.output().await.context("running secret-tool")?;
        if out.status.success() {
            Ok(Some(String::from_utf8_lossy(&out.stdout).into_owned()))
        } else {
            Ok(None)
        }
    }

    /// Lists the attributes of every stored item, as `secret-tool search --all` prints them.
    pub async fn search_all(&self, attributes: &[(&str, &str)]) -> Result<String> {
        let mut cmd = Command::new("secret-tool");
        cmd.args(["search", "--all", "--unlock"]).envs(self.env());
        for (k, v) in attributes {
            cmd.args([k, v]);
        }
        let out = cmd.output().await.context("running secret-tool")?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// Stops the keyring daemon (the bus stays), to test a keyring that goes away.
    pub async fn stop_keyring(&mut self) {
        if let Some(k) = self.keyring.take() {
            k.stop().await;
        }
    }
}
