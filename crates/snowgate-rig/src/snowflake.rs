//! The rig's Snowflake: fakesnow (SQL on DuckDB) behind the front in `tests/snowflake/front.py`,
//! run by the Python of `.rig/venv-fakesnow` as a child process on a free loopback port.
//!
//! The front does what Snowflake does and fakesnow does not: it checks External OAuth tokens
//! like a Snowflake security integration (JWKS over HTTPS, `iss`, `aud`, `exp`/`nbf` with no
//! tolerance, `scp` = `session:role:ROLE`, the user claim against LOGIN_NAME), issues session
//! and master tokens, renews and expires them, answers heartbeats, close, telemetry and async
//! results, gives the Node.js driver JSON rowsets, and records every session and login attempt
//! for tests to read ([`Snowflake::sessions`], [`Snowflake::login_attempts`]). `SELECT
//! SYSTEM$WAIT(n)` runs for n seconds unless an abort-request cancels it (000604), and a test can
//! hold login answers ([`Snowflake::hold_logins`]) to act while a login is in flight.
//!
//! For the team server's session reaper it also takes key-pair logins (SNOWFLAKE_JWT) from the
//! users in [`SnowflakeOptions::key_pair_users`], and answers QUERY_HISTORY_BY_USER,
//! LOGIN_HISTORY_BY_USER, SYSTEM$ABORT_SESSION and SYSTEM$CANCEL_ALL_QUERIES from what it has
//! seen, as Snowflake documents them (`tests/snowflake/sf_monitor.py`); the reaper learns
//! nothing through the inspection API.
//!
//! Refusals, as the drivers see them (HTTP 200, `success: false`, `code` a string): 390303
//! invalid OAuth token, 390318 expired OAuth token, 390189 role not in the token's scope,
//! 390309 LOGIN_NAME not the token's user, 390100 password (or other) login not allowed,
//! 390112 session token expired (drivers renew), 390114 master token expired (log in again),
//! 390111 session closed, 390144 key-pair JWT invalid.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use rand::RngCore;
use serde::Deserialize;
use tokio::process::Command;

use crate::idp::Idp;
use crate::paths::{fakesnow_venv, tests_dir, SETUP_HINT};
use crate::process::{require_file, RigProcess};

const START_TIMEOUT: Duration = Duration::from_secs(60);
const ADMIN_HEADER: &str = "X-Rig-Admin-Key";

/// Which clients get JSON rowsets instead of Arrow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JsonResults {
    /// Only the Node.js snowflake-sdk (login CLIENT_APP_ID "JavaScript"), like Snowflake.
    #[default]
    Node,
    /// Every client (the Python connectors 4.x and 5.x read JSON too).
    All,
    /// No client: Arrow as fakesnow makes it.
    None,
}

impl JsonResults {
    fn flag(self) -> &'static str {
        match self {
            JsonResults::Node => "node",
            JsonResults::All => "all",
            JsonResults::None => "none",
        }
    }
}

/// How the front is configured. `Default` trusts no issuer and refuses password logins.
#[derive(Debug, Clone)]
pub struct SnowflakeOptions {
    /// JWKS URLs of trusted token issuers (fetched over HTTPS trusting `ca_file`).
    pub jwks_urls: Vec<String>,
    /// Accepted `iss` values.
    pub issuers: Vec<String>,
    /// The required `aud` (the security integration's EXTERNAL_OAUTH_AUDIENCE_LIST).
    pub audience: String,
    /// The claim that names the Snowflake user (TOKEN_USER_MAPPING_CLAIM).
    pub user_claim: String,
    /// The claim that carries the role scopes (EXTERNAL_OAUTH_SCOPE_MAPPING_ATTRIBUTE: `scp`
    /// or `scope`).
    pub scope_claim: String,
    /// An extra CA to trust when fetching the JWKS.
    pub ca_file: Option<PathBuf>,
    /// Session token lifetime, seconds.
    pub session_validity: u64,
    /// Master token idle lifetime, seconds (activity and heartbeats extend it).
    pub master_validity: u64,
    /// Accept password logins (any password) besides External OAuth.
    pub allow_password: bool,
    /// Which clients get JSON rowsets.
    pub json_results: JsonResults,
    /// More flags for `front.py` (e.g. `--default-namespace`, `--log-requests`).
    pub extra_args: Vec<String>,
    /// More environment for the front's process (e.g. [`crate::faults::Faketime::env`]).
    pub env: Vec<(String, String)>,
    /// The account name key-pair JWTs must carry in `iss` and `sub` (upper-case).
    pub account: String,
    /// Users who log in with key-pair authentication, each with its RSA public key (PEM), as
    /// `ALTER USER ... SET RSA_PUBLIC_KEY` registers it.
    pub key_pair_users: Vec<(String, PathBuf)>,
    /// Users whose role may see every user's query and login history and end their sessions
    /// (SYSTEM$ABORT_SESSION); everyone else only their own.
    pub session_admins: Vec<String>,
}

impl Default for SnowflakeOptions {
    fn default() -> Self {
        SnowflakeOptions {
            jwks_urls: Vec::new(),
            issuers: Vec::new(),
            audience: "https://snowflake.rig.test".to_string(),
            user_claim: "sub".to_string(),
            scope_claim: "scp".to_string(),
            ca_file: None,
            session_validity: 3600,
            master_validity: 14400,
            allow_password: false,
            json_results: JsonResults::Node,
            extra_args: Vec::new(),
            env: Vec::new(),
            account: "RIG".to_string(),
            key_pair_users: Vec::new(),
            session_admins: Vec::new(),
        }
    }
}

impl SnowflakeOptions {
    /// Options whose security integration trusts the rig's IdP as that provider's Snowflake
    /// integration is set up: its JWKS, issuer and CA, the audience of its Snowflake tokens,
    /// and the profile's scope-mapping attribute and user-mapping claim.
    pub fn trusting(idp: &Idp) -> SnowflakeOptions {
        let facts = idp.profile_facts();
        SnowflakeOptions {
            jwks_urls: vec![idp.jwks_uri()],
            issuers: vec![idp.issuer()],
            audience: idp.token_audience(),
            user_claim: facts.user_claim.clone(),
            scope_claim: facts.scope_claim.clone().unwrap_or_else(|| "scp".into()),
            ca_file: Some(idp.ca_file().to_path_buf()),
            ..SnowflakeOptions::default()
        }
    }
}

/// A statement the front saw in a session.
#[derive(Debug, Clone, Deserialize)]
pub struct FrontStatement {
    pub sql: String,
    pub query_id: Option<String>,
    /// Unix time, seconds.
    pub at: f64,
    pub success: bool,
    /// The Snowflake error code when it failed.
    pub code: Option<String>,
    /// Submitted with `asyncExec`.
    #[serde(rename = "async")]
    pub is_async: bool,
}

/// A session as the front records it. Never holds a token.
#[derive(Debug, Clone, Deserialize)]
pub struct FrontSession {
    pub session_id: u64,
    /// The Snowflake user: the token's user claim, or LOGIN_NAME for a password login.
    pub login_name: String,
    pub role: String,
    /// `OAUTH` or `SNOWFLAKE` (password).
    pub authenticator: String,
    /// The OAuth token's `iss`.
    pub token_iss: Option<String>,
    /// The OAuth token's `exp` (Unix seconds).
    pub token_exp: Option<i64>,
    /// The OAuth token's scopes.
    pub token_scopes: Vec<String>,
    pub client_app_id: Option<String>,
    pub client_app_version: Option<String>,
    pub database: Option<String>,
    pub schema: Option<String>,
    pub warehouse: Option<String>,
    /// The session's QUERY_TAG now (login SESSION_PARAMETERS, then ALTER SESSION).
    pub query_tag: Option<String>,
    /// The QUERY_TAG the login set.
    pub login_query_tag: Option<String>,
    pub open: bool,
    pub opened_at: f64,
    pub closed_at: Option<f64>,
    pub close_reason: Option<String>,
    pub session_token_expired: bool,
    pub master_token_expired: bool,
    pub json_results: bool,
    pub renewals: u32,
    pub heartbeats: u32,
    pub telemetry: u32,
    /// Status checks (`GET /monitoring/queries/{id}`) made in the session.
    #[serde(default)]
    pub monitoring: u32,
    pub statements: Vec<FrontStatement>,
    /// Statements still executing (a `SYSTEM$WAIT`), which an abort-request can cancel.
    #[serde(default)]
    pub running: Vec<FrontRunning>,
}

/// A statement the front is still executing.
#[derive(Debug, Clone, Deserialize)]
pub struct FrontRunning {
    pub query_id: String,
    /// The driver's `requestId` query parameter.
    pub request_id: Option<String>,
    pub sql: String,
}

/// A result chunk a client fetched from the front's storage.
#[derive(Debug, Clone, Deserialize)]
pub struct ChunkFetch {
    /// The result's storage key.
    pub key: String,
    /// Which chunk of the result (0 is the first after the inline rows).
    pub index: usize,
    pub at: f64,
}

/// A login attempt, accepted or refused. Holds no password and no token.
#[derive(Debug, Clone, Deserialize)]
pub struct LoginAttempt {
    pub at: f64,
    /// LOGIN_NAME as the request sent it.
    pub login_name: Option<String>,
    /// ACCOUNT_NAME as the request sent it.
    #[serde(default)]
    pub account_name: Option<String>,
    pub authenticator: Option<String>,
    pub client_app_id: Option<String>,
    pub client_app_version: Option<String>,
    /// The `roleName` query parameter.
    pub requested_role: Option<String>,
    /// Whether the request had a PASSWORD field (its value is never recorded).
    pub password_present: bool,
    pub token_present: bool,
    pub token_iss: Option<String>,
    /// The token's user claim, when the token could be decoded.
    pub token_user: Option<String>,
    pub success: bool,
    /// The Snowflake error code of a refusal.
    pub code: Option<String>,
    pub message: Option<String>,
    pub session_id: Option<u64>,
}

/// Which token of a session [`Snowflake::expire`] ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expire {
    /// The session token: the next request gets 390112 and the driver renews.
    Session,
    /// The master token (and the session token): the driver must log in again (390114).
    Master,
}

/// The rig's Snowflake front, running. Dropping it kills the front (and its database).
pub struct Snowflake {
    process: RigProcess,
    url: String,
    admin_key: String,
    http: reqwest::Client,
    opts: SnowflakeOptions,
}

impl std::fmt::Debug for Snowflake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snowflake")
            .field("url", &self.url)
            .field("opts", &self.opts)
            .finish()
    }
}

/// The Python of the fakesnow venv.
pub fn fakesnow_python() -> PathBuf {
    fakesnow_venv().join("bin/python")
}

/// `tests/snowflake/front.py`.
pub fn front_script() -> PathBuf {
    tests_dir().join("snowflake/front.py")
}

impl Snowflake {
    /// Starts a front with its own empty database on a free port.
    pub async fn start(opts: SnowflakeOptions) -> Result<Snowflake> {
        let python = fakesnow_python();
        require_file(
            &python,
            &format!("the fakesnow virtual environment is missing; {SETUP_HINT}"),
        )?;
        require_file(&front_script(), "the Snowflake front script is missing")?;

        let mut key = [0u8; 24];
        rand::thread_rng().fill_bytes(&mut key);
        let admin_key: String = key.iter().map(|b| format!("{b:02x}")).collect();

        let mut cmd = Command::new(&python);
        cmd.arg(front_script())
            .current_dir(tests_dir().join("snowflake"))
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .args(["--port", "0"])
            .args(["--audience", &opts.audience])
            .args(["--user-claim", &opts.user_claim])
            .args(["--scope-claim", &opts.scope_claim])
            .args(["--session-validity", &opts.session_validity.to_string()])
            .args(["--master-validity", &opts.master_validity.to_string()])
            .args(["--json-results", opts.json_results.flag()])
            .args(["--admin-key", &admin_key]);
        for url in &opts.jwks_urls {
            cmd.args(["--jwks-url", url]);
        }
        for iss in &opts.issuers {
            cmd.args(["--issuer", iss]);
        }
        if let Some(ca) = &opts.ca_file {
            cmd.arg("--ca-file").arg(ca);
        }
        if opts.allow_password {
            cmd.arg("--allow-password");
        }
        cmd.args(["--account", &opts.account]);
        for (user, key) in &opts.key_pair_users {
            cmd.arg("--key-pair-user")
                .arg(format!("{user}={}", key.display()));
        }
        for user in &opts.session_admins {
            cmd.args(["--session-admin", user]);
        }
        cmd.args(&opts.extra_args);
        cmd.envs(opts.env.iter().map(|(k, v)| (k, v)));

        let (process, ready) =
            RigProcess::spawn("Snowflake front", cmd, "SNOWFLAKE READY", START_TIMEOUT).await?;
        let url = ready
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .ok_or_else(|| anyhow!("the Snowflake front announced no URL: {ready:?}"))?
            .to_string();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(15))
            .build()?;
        Ok(Snowflake {
            process,
            url,
            admin_key,
            http,
            opts,
        })
    }

    /// `http://127.0.0.1:PORT`: where drivers (or the gateway) connect.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// The port the front listens on.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// The options the front was started with.
    pub fn options(&self) -> &SnowflakeOptions {
        &self.opts
    }

    /// The last lines the front printed.
    pub fn recent_output(&self) -> String {
        self.process.recent_output()
    }

    /// Every session the front opened, in no particular order.
    pub async fn sessions(&self) -> Result<Vec<FrontSession>> {
        self.admin_get("/__rig/sessions").await
    }

    /// The session with this id.
    pub async fn session(&self, session_id: u64) -> Result<FrontSession> {
        self.sessions()
            .await?
            .into_iter()
            .find(|s| s.session_id == session_id)
            .ok_or_else(|| anyhow!("the Snowflake front has no session {session_id}"))
    }

    /// Every login attempt, accepted or refused, oldest first.
    pub async fn login_attempts(&self) -> Result<Vec<LoginAttempt>> {
        self.admin_get("/__rig/login-attempts").await
    }

    /// The result chunks clients fetched from the front's storage (with `--chunk-rows`), in
    /// order.
    pub async fn chunk_fetches(&self) -> Result<Vec<ChunkFetch>> {
        self.admin_get("/__rig/chunk-fetches").await
    }

    /// Ends a session's token now, as if its validity had run out.
    pub async fn expire(&self, session_id: u64, which: Expire) -> Result<FrontSession> {
        let token = match which {
            Expire::Session => "session",
            Expire::Master => "master",
        };
        self.admin_post(&format!(
            "/__rig/sessions/{session_id}/expire?token={token}"
        ))
        .await
    }

    /// Closes a session from Snowflake's side (as an admin's SYSTEM$ABORT_SESSION would).
    pub async fn close_session(&self, session_id: u64) -> Result<FrontSession> {
        self.admin_post(&format!("/__rig/sessions/{session_id}/close"))
            .await
    }

    /// Holds the answer of every successful login from now on until [`Snowflake::release_logins`]:
    /// the session is opened (and listed by [`Snowflake::sessions`]) but its login answer
    /// waits, so a test can act while a login is in flight. The answer itself is unchanged.
    pub async fn hold_logins(&self) -> Result<()> {
        let _: serde_json::Value = self.admin_post("/__rig/logins/hold").await?;
        Ok(())
    }

    /// Sends every held login answer and stops holding new ones.
    pub async fn release_logins(&self) -> Result<()> {
        let _: serde_json::Value = self.admin_post("/__rig/logins/release").await?;
        Ok(())
    }

    /// Stops the front.
    pub async fn stop(self) {
        self.process.stop().await
    }

    async fn admin_get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let req = self.http.get(format!("{}{path}", self.url));
        self.admin_send(req, path).await
    }

    async fn admin_post<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T> {
        let req = self.http.post(format!("{}{path}", self.url));
        self.admin_send(req, path).await
    }

    async fn admin_send<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<T> {
        let resp = req
            .header(ADMIN_HEADER, &self.admin_key)
            .send()
            .await
            .with_context(|| {
                format!(
                    "asking the Snowflake front for {path}\n{}",
                    self.recent_output()
                )
            })?;
        let status = resp.status();
        let body = resp.text().await?;
        if !status.is_success() {
            bail!("the Snowflake front answered {path} with HTTP {status}: {body}");
        }
        serde_json::from_str(&body)
            .with_context(|| format!("reading the Snowflake front's {path}: {body}"))
    }
}
