//! The broker: the long-running service for one OS user, behind the control socket.
//!
//! `snowgate up` and the tray app both run a [`Broker`]. It owns the [`Engine`] and the
//! user's [`Identity`], and answers [`Request`]s from the control socket; the tray app calls
//! the same methods directly.
//!
//! The OS keyring is the default vault. When it cannot be reached at start, the broker still
//! runs: it reports the keyring problem, refuses a normal sign-in with that sentence, and
//! accepts a session-only sign-in (tokens in memory until the broker stops).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use rand::RngCore;
use serde::Serialize;

use crate::control::{ControlError, ControlServer, ErrorKind, Handler, Request};
use crate::engine::Engine;
use crate::identity::{
    Clock, Identity, IdentityError, IdentityOptions, KeyringVault, MemoryVault, PendingDeviceLogin,
    PendingLogin, SystemClock, Vault,
};
use crate::status::BrokerStatus;

/// A sign-in that was started and not yet waited for.
enum Pending {
    Browser(PendingLogin),
    Device(PendingDeviceLogin),
}

/// How a sign-in was started, as the control socket answers `login_begin`.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LoginStart {
    /// Open `authorize_url` in a browser; the redirect comes back to the broker.
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
        expires_in_secs: u64,
    },
}

/// The running broker.
pub struct Broker {
    engine: Engine,
    identity: Mutex<Option<Identity>>,
    /// Why the OS keyring could not be used at start, if it could not.
    keyring_problem: Mutex<Option<String>>,
    pending: Mutex<HashMap<String, Pending>>,
    options: IdentityOptions,
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
        Arc::new(Broker {
            engine,
            identity: Mutex::new(identity),
            keyring_problem: Mutex::new(problem),
            pending: Mutex::new(HashMap::new()),
            options,
        })
    }

    /// The engine the broker runs.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The user's identity, if the vault could be opened.
    pub fn identity(&self) -> Option<Identity> {
        self.identity.lock().unwrap().clone()
    }

    /// Binds the control socket at `path` and serves it on a task of its own.
    pub async fn serve_control(
        self: &Arc<Self>,
        path: &Path,
    ) -> std::io::Result<ControlServerTask> {
        let server = ControlServer::bind(path).await?;
        let path = server.path().to_path_buf();
        let task = tokio::spawn(server.serve(self.clone()));
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
        status
    }

    /// Starts a browser or device sign-in. `session_only` keeps the tokens in memory only.
    pub async fn login_begin(
        &self,
        device: bool,
        session_only: bool,
    ) -> Result<LoginStart, ControlError> {
        let identity = self.identity_for_login(session_only).await?;
        let login_id = random_id();
        let (pending, start) = if device {
            let p = identity
                .begin_device_login()
                .await
                .map_err(identity_error)?;
            let start = LoginStart::Device {
                login_id: login_id.clone(),
                user_code: p.user_code().to_string(),
                verification_uri: p.verification_uri().to_string(),
                verification_uri_complete: p.verification_uri_complete().map(str::to_string),
                expires_in_secs: p.expires_in().as_secs(),
            };
            (Pending::Device(p), start)
        } else {
            let p = identity
                .begin_browser_login()
                .await
                .map_err(identity_error)?;
            let start = LoginStart::Browser {
                login_id: login_id.clone(),
                authorize_url: p.authorize_url().to_string(),
            };
            (Pending::Browser(p), start)
        };
        self.pending.lock().unwrap().insert(login_id, pending);
        Ok(start)
    }

    /// Waits for a sign-in started with [`Broker::login_begin`] and returns who signed in.
    pub async fn login_wait(&self, login_id: &str) -> Result<serde_json::Value, ControlError> {
        let pending = self
            .pending
            .lock()
            .unwrap()
            .remove(login_id)
            .ok_or_else(|| {
                ControlError::new(
                    ErrorKind::BadRequest,
                    "no sign-in with that id is under way; start one with `snowgate login`",
                )
            })?;
        let profile = match pending {
            Pending::Browser(p) => p.wait().await,
            Pending::Device(p) => p.wait().await,
        }
        .map_err(identity_error)?;
        to_value(&profile)
    }

    async fn identity_for_login(&self, session_only: bool) -> Result<Identity, ControlError> {
        if session_only {
            let vault: Arc<dyn Vault> = Arc::new(MemoryVault::new());
            let identity = Identity::with_options(
                self.engine.config(),
                self.engine.data_dir(),
                vault,
                clock(),
                self.options.clone(),
            )
            .await
            .map_err(identity_error)?;
            *self.identity.lock().unwrap() = Some(identity.clone());
            *self.keyring_problem.lock().unwrap() = None;
            return Ok(identity);
        }
        if let Some(identity) = self.identity() {
            return Ok(identity);
        }
        let problem = self.keyring_problem.lock().unwrap().clone();
        Err(ControlError::new(
            ErrorKind::Unavailable,
            problem.unwrap_or_else(|| "the OS keyring can't be reached".into()),
        ))
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

fn clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

fn random_id() -> String {
    let mut bytes = [0u8; 12];
    rand::thread_rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, ControlError> {
    serde_json::to_value(value).map_err(|e| ControlError::new(ErrorKind::Internal, e.to_string()))
}

fn identity_error(e: IdentityError) -> ControlError {
    let kind = match &e {
        IdentityError::NotSignedIn => ErrorKind::SignedOut,
        IdentityError::Unreachable { .. }
        | IdentityError::Offline { .. }
        | IdentityError::Discovery { .. } => ErrorKind::Unavailable,
        _ => ErrorKind::BadRequest,
    };
    ControlError::new(kind, e.to_string())
}

impl Handler for Broker {
    async fn handle(&self, request: Request) -> Result<serde_json::Value, ControlError> {
        match request {
            Request::Status => to_value(&self.status()),
            Request::LoginBegin {
                device,
                session_only,
            } => to_value(&self.login_begin(device, session_only).await?),
            Request::LoginWait { login_id } => self.login_wait(&login_id).await,
            Request::Logout => {
                let identity = self
                    .identity()
                    .ok_or_else(|| ControlError::new(ErrorKind::SignedOut, "not signed in"))?;
                let report = identity.logout().await.map_err(identity_error)?;
                Ok(serde_json::json!({
                    "was_signed_in": report.was_signed_in,
                    "revoked": report.revoked,
                    "message": report.message(),
                }))
            }
            Request::Whoami => {
                let who = self
                    .identity()
                    .and_then(|i| i.whoami())
                    .ok_or_else(|| identity_error(IdentityError::NotSignedIn))?;
                to_value(&who)
            }
        }
    }
}
