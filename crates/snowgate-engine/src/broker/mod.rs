//! The broker: the long-running service for one OS user, behind the control socket.
//!
//! `snowgate up` and the tray app both run a [`Broker`]. It owns the [`Engine`] and the
//! user's [`Identity`], and answers [`Request`](crate::control::Request)s from the control socket; the tray app calls
//! the same methods directly.
//!
//! The OS keyring is the default vault. When it cannot be reached at start, the broker still
//! runs: it reports the keyring problem, refuses a normal sign-in with that sentence, and
//! accepts a session-only sign-in (tokens in memory until the broker stops).
//!
//! At start the broker also opens the grants ledger (SQLite in the data dir), starts the
//! grants service under the policy built from `[[roles]]` with the audit anchor in the OS
//! keyring (in memory, with a status note, if the keyring can't be reached), binds the
//! loopback gateway with [`Access`] as its authorizer, and starts the listeners of
//! [`crate::enforcement`]. A gateway port in use does not stop the broker: the status says so.
//!
//! The broker is a few services, each built here once with what it needs and none holding the
//! broker: [`Access`] (the gateway's authorizer), [`GrantOps`] (grants and audit),
//! [`SessionOps`] (gateway sessions) and the tool secrets; the identity they share is a
//! [`CurrentIdentity`]. `handler` maps control requests to them; `sign_in` starts and
//! finishes sign-ins.
//!
//! With `[team]` in the config the broker runs in team mode: instead of the local ledger, the
//! team server keeps the grants and mints the Snowflake tokens ([`crate::team`]); the broker
//! follows its event stream and keeps local deadlines for active grants. Both modes sit behind
//! [`GrantsBackend`].

mod agent_access;
pub use agent_access::REQUESTED_BY_AGENT;
mod handler;
mod sign_in;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rand::RngCore;
use serde::Serialize;
use snowgate_gateway::Gateway;
use snowgate_grants::{AnchorStore, Grants, MemoryAnchor, SqliteLedger};
use tokio::task::JoinHandle;

use crate::access::Access;
use crate::backend::GrantsBackend;
use crate::connect_info::ConnectInfo;
use crate::grant_ops::GrantOps;
use crate::sessions::SessionOps;
use crate::team::TeamClient;

use crate::control::{ConfirmGate, Confirmer, ControlError, ControlServer, ErrorKind};
use crate::engine::Engine;
use crate::gateway_tls::GatewayTls;
use crate::identity::{
    Clock, CurrentIdentity, Identity, IdentityOptions, KeyringVault, PendingDeviceLogin,
    PendingLogin, SystemClock, Vault,
};
use crate::local_ca::LocalCa;
use crate::status::{BrokerStatus, GatewayStatus, GatewayTlsStatus};

/// How long stopping may take to send the audit records still waiting for the team server.
const SHUTDOWN_AUDIT_FLUSH: std::time::Duration = std::time::Duration::from_secs(3);

/// A sign-in that was started and not yet waited for.
enum Pending {
    Browser(Box<PendingLogin>),
    Device(Box<PendingDeviceLogin>),
}

/// How a sign-in was started, as the control socket answers `login_begin`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ts_rs::TS)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoginStart {
    /// Open `authorize_url` in a browser: a short local URL on the broker's redirect listener
    /// that sends the browser on to the IdP; the redirect comes back to the broker.
    Browser {
        login_id: String,
        authorize_url: String,
    },
    /// Show the code and the URL; the person confirms on any device.
    Device {
        login_id: String,
        user_code: String,
        verification_uri: String,
        verification_uri_complete: Option<String>,
        #[ts(type = "number")]
        expires_in_secs: u64,
    },
}

/// Why [`Broker::launch`] did not start a broker.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// Another broker of this user serves the control socket.
    #[error("a Snowgate broker is already running for this user (control socket {}); stop it first or use it", socket.display())]
    AlreadyRunning { socket: std::path::PathBuf },
    /// The control socket could not be opened.
    #[error("Snowgate can't open its control socket {}: {source}", socket.display())]
    ControlSocket {
        socket: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The running broker.
pub struct Broker {
    engine: Arc<Engine>,
    identity: CurrentIdentity,
    /// Why the OS keyring could not be used at start, if it could not.
    keyring_problem: Mutex<Option<String>>,
    pending: Mutex<HashMap<String, Pending>>,
    options: IdentityOptions,
    /// The grants (local ledger or team server), or why they can't be used.
    grants: Result<GrantsBackend, String>,
    /// The gateway, or why it could not be bound.
    gateway: Result<Gateway, String>,
    /// Notes for the status (e.g. the audit anchor fell back to memory).
    notes: Vec<String>,
    /// Grant and audit operations: requests, decisions, audit, tokens.
    ops: GrantOps,
    /// Listing and ending gateway sessions.
    session_ops: SessionOps,
    /// Stops the gateway, and its serving task.
    gateway_stop: Mutex<Option<(tokio::sync::oneshot::Sender<()>, JoinHandle<()>)>>,
    /// The background listeners; aborted when the broker is dropped.
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Per-tool connection secrets (keyring + list file in the data dir).
    tool_secrets: Arc<crate::tool_secrets::ToolSecrets>,
    /// Agent identities (keyring + list file in the data dir).
    agents: Arc<crate::agents::Agents>,
    /// Tools that logged in for a role with no grant (shared with [`Access`]).
    tool_asks: Arc<crate::tool_asks::ToolAsks>,
    /// The gateway's HTTPS certificate, when `[gateway] tls = true` and the CA could be used.
    https: Option<Arc<GatewayTls>>,
}

impl Drop for Broker {
    fn drop(&mut self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        // Without `shutdown()`, still stop the gateway: it closes its upstream sessions and
        // frees the port.
        if let Some((tx, _task)) = self.gateway_stop.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }
}

impl Broker {
    /// Starts the broker: restores the user's sign-in from the data dir and the OS keyring.
    pub async fn start(engine: Engine) -> Arc<Broker> {
        Broker::start_with(engine, IdentityOptions::default()).await
    }

    /// Like [`Broker::start`], with identity knobs that are not in the config.
    pub async fn start_with(engine: Engine, options: IdentityOptions) -> Arc<Broker> {
        let vault: Arc<dyn Vault> = Arc::new(KeyringVault::new());
        let (identity, problem) = match Identity::with_options(
            engine.config(),
            engine.data_dir(),
            vault,
            clock(),
            options.clone(),
        )
        .await
        {
            Ok(identity) => (Some(identity), None),
            Err(e) => {
                tracing::warn!(error = %e, "the OS keyring can't be used; sign-in needs --session-only");
                (None, Some(e.to_string()))
            }
        };
        let mut notes = Vec::new();
        let grants = match &engine.config().team {
            Some(_) => TeamClient::new(engine.config()).map(GrantsBackend::Team),
            None => start_grants(&engine, &mut notes)
                .await
                .map(GrantsBackend::Solo),
        };
        if let Ok(GrantsBackend::Team(team)) = &grants {
            team.set_identity(identity.clone());
            // The records waiting for the server are kept in the local ledger's outbox.
            let outbox = SqliteLedger::open_in(engine.data_dir())
                .await
                .map(|l| l.outbox())
                .map_err(|e| format!("the audit outbox can't be opened: {e}"));
            team.set_outbox(outbox).await;
            // The newest audit checkpoint the server signed is kept next to it.
            team.set_checkpoint_file(engine.data_dir().join(crate::team::checkpoint::FILE));
        }
        let engine = Arc::new(engine);
        let identity = CurrentIdentity::new(identity);
        let tool_secrets = Arc::new(crate::tool_secrets::ToolSecrets::new(engine.data_dir()));
        let agents = Arc::new(crate::agents::Agents::new(engine.data_dir()));
        let audit = Arc::new(crate::enforcement::GatewayAudit::new(
            grants
                .clone()
                .map_err(|e| format!("the audit log can't be opened: {e}")),
        ));
        let tool_asks = Arc::new(crate::tool_asks::ToolAsks::default());
        let access = Access::new(
            engine.clone(),
            identity.clone(),
            grants.clone(),
            tool_secrets.clone(),
            agents.clone(),
            tool_asks.clone(),
        );
        let https = match engine.config().gateway.tls {
            true => Some(
                GatewayTls::start(
                    &LocalCa::dir_in(engine.data_dir()),
                    engine.config().gateway.leaf_lifetime(),
                )
                .map(Arc::new),
            ),
            false => None,
        };
        let gateway = match &https {
            Some(Err(problem)) => Err(format!("HTTPS can't be served: {problem}")),
            Some(Ok(tls)) => {
                bind_gateway(&engine, Arc::new(access), audit, Some(tls.server_cert()))
            }
            None => bind_gateway(&engine, Arc::new(access), audit, None),
        };
        let https = https.and_then(Result::ok);
        let broker = Arc::new(Broker {
            ops: GrantOps::new(engine.clone(), identity.clone(), grants.clone()),
            session_ops: SessionOps::new(gateway.clone()),
            tool_secrets,
            agents,
            tool_asks,
            engine,
            identity,
            keyring_problem: Mutex::new(problem),
            pending: Mutex::new(HashMap::new()),
            options,
            grants,
            gateway,
            notes,
            gateway_stop: Mutex::new(None),
            tasks: Mutex::new(Vec::new()),
            https,
        });
        if let Some(https) = &broker.https {
            broker.spawn(https.clone().rotate_when_due());
        }
        if let Ok(gateway) = &broker.gateway {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let g = gateway.clone();
            let task = tokio::spawn(async move {
                if let Err(e) = g
                    .serve(async {
                        let _ = rx.await;
                    })
                    .await
                {
                    tracing::error!(error = %e, "the gateway stopped");
                }
            });
            *broker.gateway_stop.lock().unwrap() = Some((tx, task));
            if let Ok(grants) = &broker.grants {
                broker.spawn(crate::enforcement::grant_events(
                    grants.clone(),
                    gateway.clone(),
                ));
            }
        }
        if let Ok(GrantsBackend::Team(team)) = &broker.grants {
            broker.spawn(crate::team::events::follow(team.clone()));
            broker.spawn(team.clone().deadlines());
            broker.spawn(team.clone().report_audit());
        }
        if let Some(identity) = broker.identity() {
            broker.watch_identity(&identity);
        }
        broker
    }

    fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        self.tasks.lock().unwrap().push(tokio::spawn(f));
    }

    /// Listens to `identity`'s events: audit records for sign-in and sign-out, and the end of
    /// every gateway session at sign-out.
    fn watch_identity(&self, identity: &Identity) {
        self.spawn(crate::enforcement::identity_events(
            identity.clone(),
            self.grants.clone().ok(),
            self.gateway.clone().ok(),
        ));
    }

    /// Stops the gateway: no new connections, requests in flight finish (up to 5 s), and every
    /// open upstream session is closed. Idempotent.
    pub async fn shutdown(&self) {
        let stop = self.gateway_stop.lock().unwrap().take();
        if let Some((tx, task)) = stop {
            let _ = tx.send(());
            let _ = task.await;
        }
        if let Ok(GrantsBackend::Team(team)) = &self.grants {
            // Lets enforcement queue the records of the sessions just closed.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            team.flush_reports_now(SHUTDOWN_AUDIT_FLUSH).await;
        }
    }

    /// The grants (solo: the local ledger; team: the team server), or a [`ControlError`]
    /// saying why there are none.
    pub fn grants(&self) -> Result<GrantsBackend, ControlError> {
        self.grants
            .clone()
            .map_err(|e| ControlError::new(ErrorKind::Unavailable, e))
    }

    /// The gateway, if it could be bound.
    pub fn gateway(&self) -> Option<Gateway> {
        self.gateway.clone().ok()
    }

    /// The gateway's HTTPS certificate and its CA, when `[gateway] tls = true`.
    pub fn gateway_tls(&self) -> Option<&Arc<GatewayTls>> {
        self.https.as_ref()
    }

    /// The per-tool connection secrets.
    pub fn tool_secrets(&self) -> &crate::tool_secrets::ToolSecrets {
        &self.tool_secrets
    }

    /// The agent identities.
    pub fn agents(&self) -> &crate::agents::Agents {
        &self.agents
    }

    /// Removes the agent `name` and ends its open gateway sessions. Returns how many sessions
    /// were ended.
    pub async fn remove_agent(&self, name: &str) -> Result<usize, ControlError> {
        self.agents.remove(name).await.map_err(agent_error)?;
        Ok(self
            .end_sessions_where(|tool| tool.agent.as_deref() == Some(name))
            .await)
    }

    /// Revokes `name`'s tool secret and ends the open gateway sessions logged in with it.
    /// Returns how many sessions were ended.
    pub async fn revoke_tool_secret(&self, name: &str) -> Result<usize, ControlError> {
        self.tool_secrets
            .revoke(name)
            .await
            .map_err(tool_secret_error)?;
        Ok(self
            .end_sessions_where(|tool| tool.secret_name.as_deref() == Some(name))
            .await)
    }

    /// Ends the open gateway sessions whose tool matches; returns how many ended.
    async fn end_sessions_where(
        &self,
        matches: impl Fn(&snowgate_gateway::ToolInfo) -> bool,
    ) -> usize {
        let Some(gateway) = self.gateway() else {
            return 0;
        };
        let ids: Vec<_> = gateway
            .sessions()
            .into_iter()
            .filter(|s| s.ended.is_none() && matches(&s.tool))
            .map(|s| s.id)
            .collect();
        let mut ended = 0;
        for id in ids {
            if gateway.close_session(id).await {
                ended += 1;
            }
        }
        ended
    }

    /// The grant and audit operations.
    pub fn grant_ops(&self) -> &GrantOps {
        &self.ops
    }

    /// Tools that logged in for a role with no grant; the tray subscribes to new ones.
    pub fn tool_asks(&self) -> &crate::tool_asks::ToolAsks {
        &self.tool_asks
    }

    /// The desktop notification for a tool's new ask.
    pub fn tool_ask_notice(&self, ask: &crate::tool_asks::ToolAsk) -> crate::notices::Notice {
        let wait = self.engine.config().gateway.wait_for_approval.map(|d| d.0);
        crate::notices::tool_ask_notice(ask, wait)
    }

    /// Listing and ending gateway sessions.
    pub fn session_ops(&self) -> &SessionOps {
        &self.session_ops
    }

    /// The settings that point a local tool at the gateway.
    pub fn connect_info(&self) -> ConnectInfo {
        let config = self.engine().config();
        let login_name = self.identity().and_then(|i| i.profile()).and_then(|p| {
            crate::access::profile_claim(&p, config.snowflake.default_account().user_claim())
                .flatten()
        });
        let mut info = ConnectInfo::from_status(
            &self.status(),
            config.gateway.tool_secrets_required(),
            login_name,
        );
        let policy = self.grants.as_ref().ok().map(|g| g.policy());
        info.note_role_accounts(config, policy.as_deref());
        info
    }

    /// The engine the broker runs.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The user's identity, if the vault could be opened.
    pub fn identity(&self) -> Option<Identity> {
        self.identity.get()
    }

    /// How every front end starts the one broker of this OS user: refuses when another broker
    /// already serves the control socket at `socket` (a second one would refresh the same
    /// rotating refresh token, which the IdP reads as reuse and answers by revoking it), then
    /// starts the broker and serves the control socket. `snowgate up` and the tray app both
    /// start this way.
    pub async fn launch(
        engine: Engine,
        socket: &Path,
    ) -> Result<(Arc<Broker>, ControlServerTask), LaunchError> {
        Broker::launch_confirming(engine, socket, None).await
    }

    /// [`Broker::launch`] with the tray's [`Confirmer`]: when tool secrets are required, a
    /// control-socket request for a token or a tool secret waits for the person's answer
    /// (see [`crate::control::ConfirmGate`]).
    pub async fn launch_confirming(
        engine: Engine,
        socket: &Path,
        confirmer: Option<Arc<dyn Confirmer>>,
    ) -> Result<(Arc<Broker>, ControlServerTask), LaunchError> {
        if crate::control::ControlClient::connect(socket).await.is_ok() {
            return Err(LaunchError::AlreadyRunning {
                socket: socket.to_path_buf(),
            });
        }
        let broker = Broker::start(engine).await;
        let gate = confirmer
            .filter(|_| broker.engine.config().gateway.tool_secrets_required())
            .map(|c| Arc::new(ConfirmGate::new(c)));
        let control =
            broker
                .serve_control_gated(socket, gate)
                .await
                .map_err(|source| match source.kind() {
                    std::io::ErrorKind::AddrInUse => LaunchError::AlreadyRunning {
                        socket: socket.to_path_buf(),
                    },
                    _ => LaunchError::ControlSocket {
                        socket: socket.to_path_buf(),
                        source,
                    },
                })?;
        let status = broker.status();
        tracing::info!(
            account = %status.account,
            issuer = %status.issuer,
            gateway = %status.gateway_listen.join(","),
            data_dir = %broker.engine().data_dir().display(),
            control_socket = %control.path().display(),
            "broker started: {}",
            status.summary
        );
        for note in &status.notes {
            tracing::warn!("{note}");
        }
        Ok((broker, control))
    }

    /// Binds the control socket at `path` and serves it on a task of its own.
    pub async fn serve_control(
        self: &Arc<Self>,
        path: &Path,
    ) -> std::io::Result<ControlServerTask> {
        self.serve_control_gated(path, None).await
    }

    /// [`Broker::serve_control`], with requests that hand out a secret passed through `gate`.
    pub async fn serve_control_gated(
        self: &Arc<Self>,
        path: &Path,
        gate: Option<Arc<ConfirmGate>>,
    ) -> std::io::Result<ControlServerTask> {
        let server = ControlServer::bind(path).await?;
        let path = server.path().to_path_buf();
        let task = tokio::spawn(server.serve_gated(self.clone(), gate));
        Ok(ControlServerTask { task, path })
    }

    /// A snapshot of the broker's state; holds no secrets.
    pub fn status(&self) -> BrokerStatus {
        let mut status = self.engine.status();
        match self.identity() {
            Some(identity) => {
                let sign_in = identity.status();
                status.summary = sign_in.summary();
                status.sign_in = sign_in;
            }
            None => {
                let problem = self.keyring_problem.lock().unwrap().clone();
                status.summary = "Signed out; the OS keyring can't be reached".into();
                status.keyring_problem = problem;
            }
        }
        status.gateway = match &self.gateway {
            Ok(g) => GatewayStatus {
                listen: g.local_addrs().iter().map(|a| a.to_string()).collect(),
                state: if self.gateway_stop.lock().unwrap().is_some() {
                    "serving".into()
                } else {
                    "stopped".into()
                },
                problem: None,
                open_sessions: g.sessions().iter().filter(|s| s.ended.is_none()).count(),
                tls: self.https.as_ref().map(|tls| GatewayTlsStatus {
                    listen: g.tls_addrs().iter().map(|a| a.to_string()).collect(),
                    ca_file: tls.ca_file().display().to_string(),
                    leaf_expires_at: Some(crate::agents::rfc3339(tls.leaf_not_after())),
                }),
            },
            Err(problem) => GatewayStatus {
                state: "not_serving".into(),
                problem: Some(problem.clone()),
                ..status.gateway
            },
        };
        if let Ok(g) = &self.gateway {
            status.gateway_listen = g
                .local_addrs()
                .iter()
                .chain(g.tls_addrs().iter())
                .map(|a| a.to_string())
                .collect();
        }
        if self.gateway.is_err() && self.engine.config().gateway.tls {
            let config = &self.engine.config().gateway;
            status.gateway.tls = Some(GatewayTlsStatus {
                listen: config
                    .https_listen()
                    .iter()
                    .map(|a| a.to_string())
                    .collect(),
                ca_file: LocalCa::dir_in(self.engine.data_dir())
                    .join(crate::local_ca::CA_CERT_FILE)
                    .display()
                    .to_string(),
                leaf_expires_at: None,
            });
        }
        status.notes = self.notes.clone();
        status.tool_asks = self.tool_asks.recent(std::time::SystemTime::now());
        match &self.grants {
            Err(e) => status.notes.push(e.clone()),
            Ok(GrantsBackend::Team(team)) => {
                let team_status = team.status();
                status.mode = "team".into();
                status.team_server = Some(team.server().to_string());
                if let Some(problem) = &team_status.problem {
                    status.notes.push(format!(
                        "team server unreachable: {} ({problem}); active grants keep working until they end, and new requests fail until it is back",
                        team.server()
                    ));
                }
                status.roles = team
                    .policy()
                    .roles()
                    .iter()
                    .map(|r| r.name.as_str().to_string())
                    .collect();
                status.team = Some(team_status);
            }
            Ok(GrantsBackend::Solo(_)) => {}
        }
        if let Some(p) = &status.gateway.problem {
            status.notes.push(format!("gateway: {p}"));
        }
        if !snowgate_gateway::peer::same_user_check_supported() {
            let gateway = &self.engine.config().gateway;
            status.notes.push(if gateway.tool_secrets_required() {
                "this OS can't tell the gateway which user opens a connection, so each tool logs in with its own connection secret (`snowgate tool-secret create NAME`)".into()
            } else {
                "this OS can't tell the gateway which user opens a connection, and [gateway] require_tool_secrets = false: any local user's program can use your access".into()
            });
        }
        if let Some(p) = self.gateway().and_then(|g| g.audit_problem()) {
            status.notes.push(format!(
                "audit log: records can't be written ({p}); the gateway refuses statements and logins until they can"
            ));
        }
        status
    }
}

/// The control socket being served; dropping it stops serving and removes the socket file.
pub struct ControlServerTask {
    task: tokio::task::JoinHandle<()>,
    path: std::path::PathBuf,
}

impl ControlServerTask {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ControlServerTask {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Opens the ledger and starts the grants service; on failure, the sentence for the status.
async fn start_grants(engine: &Engine, notes: &mut Vec<String>) -> Result<Grants, String> {
    let policy = crate::grant_ops::policy_from_config(engine.config())?;
    let ledger = SqliteLedger::open_in(engine.data_dir())
        .await
        .map_err(|e| {
            format!(
                "the grants ledger in {} could not be opened: {e}",
                engine.data_dir().display()
            )
        })?;
    let keyring = crate::anchor::KeyringAnchor::new(engine.data_dir());
    let anchor: Arc<dyn AnchorStore> = match keyring.get().await {
        Ok(_) => Arc::new(keyring),
        Err(e) => {
            tracing::warn!(error = %e, "the audit anchor can't be kept in the OS keyring; keeping it in memory");
            notes.push(format!(
                "audit: the OS keyring can't be reached ({e}); the audit log's anchor is kept in memory only, so cutting records off its end is detected only while Snowgate runs"
            ));
            Arc::new(MemoryAnchor::new())
        }
    };
    Grants::start(
        Arc::new(ledger),
        Arc::new(snowgate_grants::SystemClock),
        policy,
        Some(anchor),
    )
    .await
    .map_err(|e| format!("the grants service could not start: {e}"))
}

/// Binds the gateway on `[gateway].listen`; on failure, the sentence for the status.
fn bind_gateway(
    engine: &Engine,
    access: Arc<Access>,
    audit: Arc<crate::enforcement::GatewayAudit>,
    tls_cert: Option<Arc<snowgate_gateway::ServerCert>>,
) -> Result<Gateway, String> {
    let config = engine.config();
    let first = config.snowflake.default_account();
    let mut gc = snowgate_gateway::GatewayConfig::new(
        config.gateway.plain_listen(),
        first.effective_url(),
        first.account.to_string(),
    );
    gc.accounts = config
        .snowflake
        .iter()
        .map(|a| snowgate_gateway::AccountRoute {
            name: a.name().to_string(),
            account: a.account.to_string(),
            upstream: a.effective_url(),
        })
        .collect();
    gc.extra_ca_file = config.identity.extra_ca_file.as_ref().map(|f| f.0.clone());
    gc.audit_statement_text = config.audit.statement_text;
    if tls_cert.is_some() {
        gc.tls_listen = config.gateway.https_listen();
        gc.tls_cert = tls_cert;
    }
    gc.require_tool_secrets = config.gateway.tool_secrets_required();
    if let Some(timeout) = config.gateway.snowflake_answer_timeout {
        gc.upstream_answer_timeout = timeout.0;
    }
    if let Some(n) = config.gateway.threads {
        gc.serving_threads = n as usize;
    }
    Gateway::bind_audited(gc, access, audit).map_err(|e| match &e {
        snowgate_gateway::GatewayError::Bind { addr, source }
            if source.kind() == std::io::ErrorKind::AddrInUse =>
        {
            // Name the key that holds the address: HTTPS may have its own.
            let key = match &config.gateway.listen_tls {
                Some(tls) if tls.0.contains(addr) => "listen_tls",
                _ => "listen",
            };
            format!("{addr} is in use by another program; change [gateway].{key}")
        }
        _ => e.to_string(),
    })
}

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn agent_error(e: crate::agents::AgentError) -> ControlError {
    use crate::agents::AgentError as E;
    let kind = match &e {
        E::BadName(_) | E::Exists(_) | E::NotFound(_) | E::BadPolicy(_) => ErrorKind::BadRequest,
        E::UnknownSecret | E::Expired { .. } => ErrorKind::Forbidden,
        E::Keyring { .. } => ErrorKind::Unavailable,
        E::List { .. } => ErrorKind::Internal,
    };
    ControlError::new(kind, e.to_string())
}

pub(super) fn tool_secret_error(e: crate::tool_secrets::ToolSecretError) -> ControlError {
    use crate::tool_secrets::ToolSecretError as E;
    let kind = match &e {
        E::BadName(_) | E::Exists(_) | E::NotFound(_) => ErrorKind::BadRequest,
        E::Keyring { .. } => ErrorKind::Unavailable,
        E::List { .. } => ErrorKind::Internal,
    };
    ControlError::new(kind, e.to_string())
}
