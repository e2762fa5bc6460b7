//! The team server (`snowgate serve`) as a part of the rig: a config that puts it on the rig's
//! PostgreSQL, trusting the rig's IdP and serving TLS with the rig CA's leaf for 127.0.0.1, an
//! RSA key to sign the Snowflake tokens it mints, and the process itself, started from a built
//! `snowgate` binary and waited for until `GET /healthz` answers.
//!
//! The server's config, signing key and log live in a directory the caller owns
//! (`server.toml`, `signing.pem`, `server.log`). [`TeamServer::stop`] and
//! [`TeamServer::launch`] stop and start the same server again, on the same port and database.
//!
//! How desktops authenticate to the server follows the IdP's profile ([`caller_auth_for`]):
//! providers that mint access tokens for the server's API get `caller_auth = "access_token"`;
//! an ID-token-only provider (`google`) gets `caller_auth = "id_token"`, a `[sessions]` key and
//! `[[groups]]` for the groups it does not send. [`TeamServerOptions::for_idp`] and
//! [`desktop_config`] write both sides the same way for `snowgate-rig up --team` and the tests.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio::process::{Child, Command};

use crate::idp::{Idp, IdpProfile, CLIENT_ID};
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
    /// Lines added to `[minting]` (`user_claim`, `user_value`).
    pub minting_extra: String,
    /// The PostgreSQL connection URL.
    pub database_url: String,
    /// The `[[roles]]` tables, as TOML.
    pub roles: String,
}

/// How desktops authenticate to a team server that trusts an IdP of `profile`: `"id_token"`
/// where the provider mints no access tokens for the server's API (Google), else
/// `"access_token"`.
pub fn caller_auth_for(profile: IdpProfile) -> &'static str {
    match profile {
        IdpProfile::Google => "id_token",
        _ => "access_token",
    }
}

/// The email the rig's IdP gives `user` (verified under every profile).
pub fn email_of(user: &str) -> String {
    format!("{user}@example.test")
}

impl TeamServerOptions {
    /// The options of a team server trusting `idp` as its provider ships, on `database_url`,
    /// minting tokens with `minting_audience`, with `roles` (`[[roles]]` tables).
    ///
    /// With [`caller_auth_for`] = `"id_token"`, the server exchanges ID tokens (audience
    /// [`CLIENT_ID`]) for session tokens signed with `session_key` (written by
    /// [`generate_session_key`]), takes its groups from `groups` (group name, member users;
    /// listed by their verified emails, since Google's `sub` is an opaque number) and mints
    /// tokens whose `sub` is the caller's email. Otherwise callers bring the IdP's access
    /// tokens for the profile's token audience, with groups in them.
    pub fn for_idp(
        idp: &Idp,
        database_url: &str,
        minting_audience: &str,
        roles: &str,
        session_key: &Path,
        groups: &[(&str, &[&str])],
    ) -> TeamServerOptions {
        let base = TeamServerOptions {
            issuer: idp.issuer(),
            api_audience: idp.token_audience(),
            identity_extra: String::new(),
            tail: String::new(),
            minting_audience: minting_audience.to_string(),
            minting_extra: String::new(),
            database_url: database_url.to_string(),
            roles: roles.to_string(),
        };
        if caller_auth_for(idp.profile()) != "id_token" {
            return base;
        }
        let mut tail = format!("[sessions]\nkey_files = [\"{}\"]\n", session_key.display());
        for (name, members) in groups {
            let emails: Vec<String> = members
                .iter()
                .map(|u| format!("\"{}\"", email_of(u)))
                .collect();
            tail.push_str(&format!(
                "\n[[groups]]\nname = \"{name}\"\nemails = [{}]\n",
                emails.join(", ")
            ));
        }
        TeamServerOptions {
            api_audience: String::new(),
            identity_extra: format!(
                "caller_auth = \"id_token\"\nclient_id = \"{CLIENT_ID}\"\ngroups_from = \"config\"\n"
            ),
            tail,
            minting_extra: "user_value = \"email\"\n".to_string(),
            ..base
        }
    }
}

/// Writes 48 random bytes to `path` with `openssl rand`: a `[sessions] key_files` key.
pub async fn generate_session_key(path: &Path) -> Result<()> {
    let out = Command::new("openssl")
        .args(["rand", "-out"])
        .arg(path)
        .arg("48")
        .output()
        .await
        .context("running openssl to make a session key")?;
    if !out.status.success() {
        bail!(
            "openssl rand failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// A team-mode desktop config for `idp`'s profile: the provider preset, the team server at
/// `server_url` with the caller auth [`caller_auth_for`] picks, the Snowflake front at
/// `snowflake_url` (account `account`) and a gateway on `gateway`. Scopes are the preset's
/// defaults, so nothing is asked of the provider that it refuses (Google: no `groups`, no
/// `offline_access`, no role scopes); in access-token mode the server's API is asked for as
/// the profile's token audience.
pub fn desktop_config(
    idp: &Idp,
    ca: &TestCa,
    server_url: &str,
    snowflake_url: &str,
    account: &str,
    gateway: &str,
) -> String {
    let team_auth = match caller_auth_for(idp.profile()) {
        "id_token" => "auth = \"id_token\"".to_string(),
        _ => format!("audience = \"{}\"", idp.token_audience()),
    };
    format!(
        r#"# Written by the Snowgate test rig: Snowgate in team mode against the rig's team server ({profile} profile).
[identity]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
{provider}extra_ca_file = "{ca}"
device_poll_interval = "1s"

[snowflake]
account = "{account}"
url = "{snowflake_url}"

[gateway]
listen = "{gateway}"

[team]
server = "{server_url}"
{team_auth}
"#,
        profile = idp.profile(),
        issuer = idp.issuer(),
        provider = idp.snowgate_identity_lines(),
        ca = ca.ca_file.display(),
    )
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
{minting_extra}

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
        minting_extra = opts.minting_extra,
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
