//! Child processes of the rig that can never outlive it.
//!
//! Every part of the rig (the IdP, the Snowflake front, PostgreSQL, the Secret Service) runs as
//! a child process in a process group of its own. [`RigProcess`] kills that whole group when it
//! is dropped, so a test that fails or panics leaves nothing behind. On Linux the child also
//! gets `PR_SET_PDEATHSIG`, so a test process killed with SIGKILL takes its parts with it.

use std::collections::VecDeque;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// How many lines of a part's output are kept for error messages.
pub const KEPT_LINES: usize = 200;

/// A running part of the rig. Dropping it kills the part's whole process group.
pub struct RigProcess {
    name: String,
    child: Option<Child>,
    pgid: i32,
    output: Arc<Mutex<VecDeque<String>>>,
}

impl RigProcess {
    /// Starts `cmd` in a new process group and waits until a line of its output (stdout or
    /// stderr) contains `ready_marker`; an empty marker returns as soon as the process runs. Returns the process and that line. Fails with the part's recent output
    /// when it exits first or when `timeout` passes.
    pub async fn spawn(
        name: &str,
        mut cmd: Command,
        ready_marker: &str,
        timeout: Duration,
    ) -> Result<(RigProcess, String)> {
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
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting the rig's {name}"))?;
        let pgid = child.id().map(|p| p as i32).unwrap_or(0);
        let output = Arc::new(Mutex::new(VecDeque::new()));
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::unbounded_channel::<String>();

        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        for reader in [
            Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(stderr),
        ] {
            let output = output.clone();
            let marker = ready_marker.to_string();
            let ready_tx = ready_tx.clone();
            let part = name.to_string();
            tokio::spawn(async move {
                let mut lines = BufReader::new(reader).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if !marker.is_empty() && line.contains(&marker) {
                        let _ = ready_tx.send(line.clone());
                    }
                    if std::env::var_os("SNOWGATE_RIG_VERBOSE").is_some() {
                        eprintln!("[{part}] {line}");
                    }
                    let mut kept = output.lock().unwrap();
                    if kept.len() == KEPT_LINES {
                        kept.pop_front();
                    }
                    kept.push_back(line);
                }
            });
        }
        drop(ready_tx);

        let mut process = RigProcess {
            name: name.to_string(),
            child: Some(child),
            pgid,
            output,
        };
        if ready_marker.is_empty() {
            return Ok((process, String::new()));
        }
        let ready = tokio::time::timeout(timeout, async {
            tokio::select! {
                line = ready_rx.recv() => match line {
                    Some(line) => Ok(line),
                    None => Err(anyhow!("its output ended")),
                },
                status = process.child.as_mut().unwrap().wait() => {
                    // Let the readers drain what the part printed before it died.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Err(anyhow!("it exited with {}", status?))
                }
            }
        })
        .await;
        match ready {
            Ok(Ok(line)) => Ok((process, line)),
            Ok(Err(e)) => bail!(
                "the rig's {name} did not start: {e}\n{}",
                process.recent_output()
            ),
            Err(_) => bail!(
                "the rig's {name} did not print {ready_marker:?} within {timeout:?}\n{}",
                process.recent_output()
            ),
        }
    }

    /// The last lines the part printed, for error messages.
    pub fn recent_output(&self) -> String {
        let kept = self.output.lock().unwrap();
        kept.iter()
            .map(|l| format!("  | {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The part's process id.
    pub fn pid(&self) -> i32 {
        self.pgid
    }

    /// Kills the part's process group and waits for the leader to exit.
    pub async fn stop(mut self) {
        self.kill_group();
        if let Some(mut child) = self.child.take() {
            let _ = child.wait().await;
        }
    }

    fn kill_group(&mut self) {
        if self.pgid > 0 {
            // SAFETY: plain syscall; a group that is already gone gives ESRCH, which is fine.
            unsafe {
                libc::kill(-self.pgid, libc::SIGKILL);
            }
        }
    }

    /// The part's name, as used in messages.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for RigProcess {
    fn drop(&mut self) {
        self.kill_group();
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
    }
}

/// Finds a free TCP port on 127.0.0.1. The port is free when this returns; a part that binds it
/// later may, rarely, lose a race with another process.
pub fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

/// Checks that a program the rig needs exists, with a message that says how to get it.
pub fn require_file(path: &Path, how_to_get: &str) -> Result<()> {
    if path.exists() {
        Ok(())
    } else {
        bail!("{} is missing: {how_to_get}", path.display())
    }
}
