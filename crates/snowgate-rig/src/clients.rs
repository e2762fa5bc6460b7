//! Real Snowflake drivers as client programs: `tests/clients/python_client.py` (run by the
//! Python of a venv: connector 5.x or 4.x) and `tests/clients/node_client.mjs` (the Node.js
//! snowflake-sdk from the repository's node_modules).
//!
//! A client run prints one JSON object saying what happened: `ok`, `connected`, scenario
//! results, and for a driver error `error` (Python: `errno`, `sqlstate`, `msg`, `type`; Node:
//! `code`, `sqlState`, `message`, `name`). A refused login is a normal result (`ok: false`), not
//! an `Err`: [`run_python`] and [`run_node`] fail only when the program could not run, timed out,
//! exited non-zero (a harness bug) or printed no JSON.
//!
//! The password and the token reach the program through its environment (`RIG_SF_PASSWORD`,
//! `RIG_SF_TOKEN`), never its command line.
//!
//! Python scenarios: smoke, query (`--sql`), multi (`--sql` with `num_statements`, then
//! `execute_string`), ddl_dml, big_select (`--rows`), binds, async, renew
//! (`--sleep`), heartbeat (`--sleep`, `--heartbeat-frequency`), close, hold (`--interval`,
//! `--duration`; one JSON line per query). Node scenarios: smoke, query, binds, big_select,
//! destroy, renew (`--sleep`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

use crate::paths::{client_venv, fakesnow_venv, repo_root, tests_dir, SETUP_HINT};
use crate::process::require_file;

/// Which snowflake-connector-python runs the Python client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PythonDriver {
    /// Connector 5.x, from `.rig/venv-client`.
    V5,
    /// Connector 4.x, from `.rig/venv-fakesnow` (the one fakesnow itself needs).
    V4,
}

impl PythonDriver {
    /// The venv's Python.
    pub fn python(self) -> PathBuf {
        match self {
            PythonDriver::V5 => client_venv().join("bin/python"),
            PythonDriver::V4 => fakesnow_venv().join("bin/python"),
        }
    }
}

/// One run of a client program. `Debug` hides the password and the token.
#[derive(Clone)]
pub struct ClientRun {
    /// `http://127.0.0.1:PORT` (the front, or the gateway).
    pub url: String,
    pub account: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// An OAuth access token: the client logs in with `authenticator=oauth`.
    pub token: Option<String>,
    pub role: Option<String>,
    pub scenario: String,
    /// More arguments for the program, e.g. `["--rows", "1000"]` or `["--query-tag", "x"]`.
    pub args: Vec<String>,
    /// How long the program may run before it is killed.
    pub timeout: Duration,
    /// More environment for the program (e.g. `NODE_EXTRA_CA_CERTS`, `REQUESTS_CA_BUNDLE`).
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for ClientRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRun")
            .field("url", &self.url)
            .field("account", &self.account)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("role", &self.role)
            .field("scenario", &self.scenario)
            .field("args", &self.args)
            .field("timeout", &self.timeout)
            .field("env", &self.env)
            .finish()
    }
}

impl ClientRun {
    /// A password login as `user` (account `rig`).
    pub fn password(url: &str, user: &str, password: &str, scenario: &str) -> ClientRun {
        ClientRun {
            url: url.to_string(),
            account: "rig".to_string(),
            user: Some(user.to_string()),
            password: Some(password.to_string()),
            token: None,
            role: None,
            scenario: scenario.to_string(),
            args: Vec::new(),
            timeout: Duration::from_secs(60),
            env: Vec::new(),
        }
    }

    /// An External OAuth login with `token` (account `rig`, no user: Snowflake takes it from
    /// the token).
    pub fn oauth(url: &str, token: &str, scenario: &str) -> ClientRun {
        ClientRun {
            url: url.to_string(),
            account: "rig".to_string(),
            user: None,
            password: None,
            token: Some(token.to_string()),
            role: None,
            scenario: scenario.to_string(),
            args: Vec::new(),
            timeout: Duration::from_secs(60),
            env: Vec::new(),
        }
    }

    pub fn user(mut self, user: &str) -> ClientRun {
        self.user = Some(user.to_string());
        self
    }

    /// The `account` the client connects with (default `rig`).
    pub fn account(mut self, account: &str) -> ClientRun {
        self.account = account.to_string();
        self
    }

    pub fn role(mut self, role: &str) -> ClientRun {
        self.role = Some(role.to_string());
        self
    }

    /// Appends program arguments.
    pub fn arg<I, S>(mut self, args: I) -> ClientRun
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets a variable in the program's environment.
    pub fn env(mut self, key: &str, value: &str) -> ClientRun {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> ClientRun {
        self.timeout = timeout;
        self
    }

    fn secret_env(&self, cmd: &mut Command) {
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd.env_remove("RIG_SF_PASSWORD").env_remove("RIG_SF_TOKEN");
        if let Some(password) = &self.password {
            cmd.env("RIG_SF_PASSWORD", password);
        }
        if let Some(token) = &self.token {
            cmd.env("RIG_SF_TOKEN", token);
        }
    }

    fn cli_args(&self) -> Vec<String> {
        let mut a = vec![
            "--url".to_string(),
            self.url.clone(),
            "--account".to_string(),
            self.account.clone(),
            "--scenario".to_string(),
            self.scenario.clone(),
        ];
        if let Some(user) = &self.user {
            a.extend(["--user".to_string(), user.clone()]);
        }
        // The password and the token go through the environment (see `secret_env`), not
        // the command line, which any local user can read.
        if self.token.is_some() {
            a.extend(["--authenticator".to_string(), "oauth".to_string()]);
        }
        if let Some(role) = &self.role {
            a.extend(["--role".to_string(), role.clone()]);
        }
        a.extend(self.args.iter().cloned());
        a
    }
}

/// `tests/clients/python_client.py`.
pub fn python_client_script() -> PathBuf {
    tests_dir().join("clients/python_client.py")
}

/// `tests/clients/node_client.mjs`.
pub fn node_client_script() -> PathBuf {
    tests_dir().join("clients/node_client.mjs")
}

fn python_command(driver: PythonDriver, run: &ClientRun) -> Result<Command> {
    let python = driver.python();
    require_file(
        &python,
        &format!("the Python venv of connector {driver:?} is missing; {SETUP_HINT}"),
    )?;
    let script = python_client_script();
    require_file(&script, "the Python client script is missing")?;
    let mut cmd = Command::new(python);
    cmd.arg(script)
        .args(run.cli_args())
        .current_dir(repo_root())
        .env("PYTHONUNBUFFERED", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("PYTHONWARNINGS", "ignore");
    run.secret_env(&mut cmd);
    Ok(cmd)
}

fn node_command(run: &ClientRun) -> Result<Command> {
    let script = node_client_script();
    require_file(&script, "the Node.js client script is missing")?;
    require_file(
        &repo_root().join("node_modules/snowflake-sdk/package.json"),
        &format!("npm package snowflake-sdk is not installed; {SETUP_HINT}"),
    )?;
    let mut cmd = Command::new("node");
    cmd.arg(script)
        .args(run.cli_args())
        .current_dir(repo_root())
        .env("NODE_NO_WARNINGS", "1");
    run.secret_env(&mut cmd);
    Ok(cmd)
}

/// Runs the Python client to its end and returns its JSON result.
pub async fn run_python(driver: PythonDriver, run: &ClientRun) -> Result<Value> {
    let cmd = python_command(driver, run)?;
    run_to_end(&format!("Python client ({driver:?})"), cmd, run).await
}

/// Runs the Node.js client to its end and returns its JSON result.
pub async fn run_node(run: &ClientRun) -> Result<Value> {
    let cmd = node_command(run)?;
    run_to_end("Node.js client", cmd, run).await
}

/// Starts the Python client and returns it running, to read its lines as they come (the `hold`
/// scenario prints one per query).
pub async fn spawn_python(driver: PythonDriver, run: &ClientRun) -> Result<RunningClient> {
    let cmd = python_command(driver, run)?;
    RunningClient::spawn(&format!("Python client ({driver:?})"), cmd, run.timeout)
}

/// Starts the Node.js client and returns it running.
pub async fn spawn_node(run: &ClientRun) -> Result<RunningClient> {
    let cmd = node_command(run)?;
    RunningClient::spawn("Node.js client", cmd, run.timeout)
}

async fn run_to_end(name: &str, cmd: Command, run: &ClientRun) -> Result<Value> {
    let client = RunningClient::spawn(name, cmd, run.timeout)?;
    client
        .finish()
        .await
        .with_context(|| format!("{name}, scenario {:?}", run.scenario))
}

fn prepare(cmd: &mut Command) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            #[cfg(target_os = "linux")]
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
}

/// A client program that is running. Dropping it kills it (and its process group).
pub struct RunningClient {
    name: String,
    child: Child,
    pgid: i32,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: tokio::task::JoinHandle<String>,
    deadline: tokio::time::Instant,
    seen: Vec<String>,
    exited: bool,
}

impl RunningClient {
    fn spawn(name: &str, mut cmd: Command, timeout: Duration) -> Result<RunningClient> {
        prepare(&mut cmd);
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting the {name}"))?;
        let pgid = child.id().map(|p| p as i32).unwrap_or(0);
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stderr = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = tokio::spawn(async move {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf).await;
            String::from_utf8_lossy(&buf).into_owned()
        });
        Ok(RunningClient {
            name: name.to_string(),
            child,
            pgid,
            lines: rx,
            stderr,
            deadline: tokio::time::Instant::now() + timeout,
            seen: Vec::new(),
            exited: false,
        })
    }

    /// The next JSON line the client prints, or `None` when its output has ended. Fails when
    /// `timeout` (or the run's own timeout) passes first.
    pub async fn next_line(&mut self, timeout: Duration) -> Result<Option<Value>> {
        let deadline = self.deadline.min(tokio::time::Instant::now() + timeout);
        loop {
            match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Err(_) => bail!(
                    "the {} printed no line within {timeout:?}; so far: {:?}",
                    self.name,
                    self.seen
                ),
                Ok(None) => return Ok(None),
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if let Ok(v) = serde_json::from_str::<Value>(line.trim()) {
                        return Ok(Some(v));
                    }
                    // Not JSON (a driver printing to stdout): keep it for error messages.
                }
            }
        }
    }

    /// Waits for the client to exit and returns its last JSON line (its result).
    pub async fn finish(mut self) -> Result<Value> {
        let mut last = None;
        loop {
            match tokio::time::timeout_at(self.deadline, self.lines.recv()).await {
                Err(_) => {
                    self.kill();
                    let stderr = self.stderr_text().await;
                    bail!(
                        "the {} did not finish in time; it printed {:?}; stderr:\n{stderr}",
                        self.name,
                        self.seen
                    );
                }
                Ok(None) => break,
                Ok(Some(line)) => {
                    self.seen.push(line.clone());
                    if let Ok(v) = serde_json::from_str::<Value>(line.trim()) {
                        last = Some(v);
                    }
                }
            }
        }
        let status = match tokio::time::timeout_at(self.deadline, self.child.wait()).await {
            Ok(status) => {
                self.exited = true;
                status?
            }
            Err(_) => {
                self.kill();
                bail!("the {} closed its output but did not exit", self.name);
            }
        };
        let stderr = self.stderr_text().await;
        match last {
            Some(v) if status.success() => Ok(v),
            Some(v) => Err(anyhow!(
                "the {} exited with {status} (a harness error): {v}\nstderr:\n{stderr}",
                self.name
            )),
            None => Err(anyhow!(
                "the {} exited with {status} and printed no JSON; stdout: {:?}\nstderr:\n{stderr}",
                self.name,
                self.seen
            )),
        }
    }

    /// Kills the client now.
    pub fn kill(&mut self) {
        if self.exited {
            return;
        }
        if self.pgid > 0 {
            // SAFETY: plain syscall; a group that is already gone gives ESRCH.
            unsafe {
                libc::kill(-self.pgid, libc::SIGKILL);
            }
        }
        let _ = self.child.start_kill();
    }

    async fn stderr_text(&mut self) -> String {
        match tokio::time::timeout(Duration::from_secs(2), &mut self.stderr).await {
            Ok(Ok(s)) => s,
            _ => "(stderr unavailable)".to_string(),
        }
    }
}

impl Drop for RunningClient {
    fn drop(&mut self) {
        self.kill();
    }
}
