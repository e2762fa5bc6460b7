//! A throwaway PostgreSQL server from Debian's packages.
//!
//! `initdb` refuses to run as root, so when the rig runs as root it runs PostgreSQL's programs
//! as the `postgres` OS user (through `setpriv`) in a temp dir that user owns. The server
//! listens on 127.0.0.1 on a free port, with trust auth for the `postgres` superuser, fsync off
//! (a test database need not survive a power cut) and its socket in the temp dir.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::Command;

use crate::process::{free_port, RigProcess};

/// A running PostgreSQL server; stopped and deleted when dropped.
pub struct Postgres {
    process: Option<RigProcess>,
    dir: tempfile::TempDir,
    port: u16,
    bin: PathBuf,
}

fn bin_dir() -> Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (apt-get install postgresql)")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions
        .pop()
        .context("no /usr/lib/postgresql/*/bin/initdb found (apt-get install postgresql)")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a PostgreSQL program as the `postgres` user when we are root.
fn pg_command(bin: &Path, program: &str) -> Command {
    if is_root() {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(bin.join(program));
        cmd
    } else {
        Command::new(bin.join(program))
    }
}

impl Postgres {
    /// Creates a cluster in a temp dir and starts it on a free loopback port.
    pub async fn start() -> Result<Postgres> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("snowgate-pg-")
            .tempdir()
            .context("creating a temp dir for PostgreSQL")?;
        if is_root() {
            let status = std::process::Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()?;
            if !status.success() {
                bail!("chown of {} to postgres failed", dir.path().display());
            }
        }
        let out = pg_command(&bin, "initdb")
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(dir.path().join("data"))
            .output()
            .await
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut pg = Postgres {
            process: None,
            dir,
            port: free_port()?,
            bin,
        };
        pg.launch().await?;
        Ok(pg)
    }

    async fn launch(&mut self) -> Result<()> {
        let mut cmd = pg_command(&self.bin, "postgres");
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .args(["-c", "fsync=off", "-c", "max_connections=200"]);
        let (process, _) = RigProcess::spawn(
            "PostgreSQL",
            cmd,
            "database system is ready to accept connections",
            Duration::from_secs(30),
        )
        .await?;
        self.process = Some(process);
        Ok(())
    }

    /// A connection URL for the `postgres` superuser and database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the server abruptly (like a crash) and starts it again on the same port and data.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop().await;
        self.launch().await
    }

    /// Stops the server abruptly; `restart` brings it back.
    pub async fn stop(&mut self) {
        if let Some(process) = self.process.take() {
            process.stop().await;
        }
        // A killed postmaster leaves its pid file; the next start checks that the pid is gone.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
