//! The team server (`snowgate serve`) as a part of the rig: a config that puts it on the rig's
//! PostgreSQL, trusting the rig's IdP and serving TLS with the rig CA's leaf for 127.0.0.1, an
//! RSA key to sign the Snowflake tokens it mints, and the process itself, started from a built
//! `snowgate` binary and waited for until `GET /healthz` answers.
//!
//! The server's config, signing key and log live in a directory the caller owns
//! (`server.toml`, `signing.pem`, `server.log`). [`TeamServer::stop`] and
//! [`TeamServer::launch`] stop and start the same server again, on the same port and database.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

use crate::process::free_port;
use crate::tls::TestCa;

/// How long [`TeamServer::launch`] waits for `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What the team server is configured with.
#[derive(Debug, Clone)]
pub struct TeamServerOptions {
    /// The IdP's issuer: callers' access tokens must carry it as `iss`.
    pub issuer: String,
    /// The `aud` the server requires of callers' IdP access tokens (`[identity] audience`);
    /// no `audience` line when empty (a server that takes only ID tokens).
    pub api_audience: String,
    /// Lines added to `[identity]` (`caller_auth`, `client_id`, `groups_from`, ...).
    pub identity_extra: String,
    /// Tables added after `[[roles]]` (`[sessions]`, `[[groups]]`).
    pub tail: String,
    /// The `aud` of the Snowflake tokens it mints (`[minting] audience`).
    pub minting_audience: String,
    /// The PostgreSQL connection URL.
    pub database_url: String,
    /// The `[[roles]]` tables, as TOML.
    pub roles: String,
}

/// A team server the rig prepared, and runs while [`TeamServer::launch`]ed. Dropping it kills
/// the server.
pub struct TeamServer {
    bin: PathBuf,
    config: PathBuf,
    log: PathBuf,
    url: String,
    http: reqwest::Client,
    child: Option<Child>,
}

/// Writes a new 2048-bit RSA private key (PKCS#8 PEM, what `[minting] key_files` takes) to
/// `path`, with `openssl genpkey`.
pub async fn generate_signing_key(path: &Path) -> Result<()> {
    let out = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(path)
        .output()
        .await
        .context("running openssl to make a signing key")?;
    if !out.status.success() {
        bail!(
            "openssl genpkey failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// The server config for `opts`, listening on 127.0.0.1:`port`, with the TLS files of `ca` and
/// the signing key at `key`.
pub fn server_config(port: u16, ca: &TestCa, key: &Path, opts: &TeamServerOptions) -> String {
    format!(
        r#"# Written by the Snowgate test rig: the team server on the rig's PostgreSQL and IdP.
[server]
listen = "127.0.0.1:{port}"
public_url = "https://127.0.0.1:{port}"
tls_cert = "{cert}"
tls_key = "{tls_key}"

[database]
url = "{db}"

[identity]
issuer = "{issuer}"
{api_audience}extra_ca_file = "{ca_file}"
{identity_extra}

[minting]
audience = "{minting_audience}"
key_files = ["{key}"]

{roles}
{tail}"#,
        cert = ca.cert_file.display(),
        tls_key = ca.key_file.display(),
        db = opts.database_url,
        issuer = opts.issuer,
        api_audience = if opts.api_audience.is_empty() {
            String::new()
        } else {
            format!("audience = \"{}\"\n", opts.api_audience)
        },
        identity_extra = opts.identity_extra,
        tail = opts.tail,
        ca_file = ca.ca_file.display(),
        minting_audience = opts.minting_audience,
        key = key.display(),
        roles = opts.roles,
    )
}

impl TeamServer {
    /// Makes a signing key and writes the server's config into `dir`, for a server on a free
    /// loopback port, without starting it. `bin` is the `snowgate` binary.
    pub async fn prepare(
        bin: &Path,
        dir: &Path,
        ca: &TestCa,
        opts: &TeamServerOptions,
    ) -> Result<TeamServer> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let key = dir.join("signing.pem");
        generate_signing_key(&key).await?;
        let port = free_port()?;
        let config = dir.join("server.toml");
        std::fs::write(&config, server_config(port, ca, &key, opts))
            .with_context(|| format!("writing {}", config.display()))?;
        let http = reqwest::Client::builder()
            .add_root_certificate(ca.reqwest_root()?)
            .no_proxy()
            .timeout(Duration::from_secs(2))
            .build()?;
        Ok(TeamServer {
            bin: bin.to_path_buf(),
            config,
            log: dir.join("server.log"),
            url: format!("https://127.0.0.1:{port}"),
            http,
            child: None,
        })
    }

    /// [`TeamServer::prepare`] and [`TeamServer::launch`].
    pub async fn start(
        bin: &Path,
        dir: &Path,
        ca: &TestCa,
        opts: &TeamServerOptions,
    ) -> Result<TeamServer> {
        let mut server = TeamServer::prepare(bin, dir, ca, opts).await?;
        server.launch().await?;
        Ok(server)
    }

    /// Starts `snowgate --config server.toml serve` (its log appended to `server.log`) and
    /// waits until `/healthz` answers; fails with the log's last lines if it doesn't.
    pub async fn launch(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let mut child = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} serve", self.bin.display()))?;
        let deadline = tokio::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(r) = self.http.get(format!("{}/healthz", self.url)).send().await {
                if r.status().is_success() {
                    self.child = Some(child);
                    return Ok(());
                }
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "the team server exited ({status}) before it answered:\n{}",
                    self.log_tail(30)
                );
            }
            if tokio::time::Instant::now() >= deadline {
                let _ = child.kill().await;
                bail!(
                    "the team server did not answer /healthz within {START_TIMEOUT:?}:\n{}",
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills the server and waits for it; [`TeamServer::launch`] starts it again.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
            let _ = child.wait().await;
        }
    }

    /// `https://127.0.0.1:PORT`: the server's `public_url`, and the `iss` of the tokens it mints.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Where the server publishes the keys of the tokens it mints.
    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.url)
    }

    /// The server's config file.
    pub fn config_file(&self) -> &Path {
        &self.config
    }

    /// The file the server logs to.
    pub fn log_file(&self) -> &Path {
        &self.log
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}
