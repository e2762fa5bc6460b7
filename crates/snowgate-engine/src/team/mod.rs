//! Team mode: the team server (`snowgate serve`) as the broker's ledger and token source.
//!
//! [`TeamClient`] calls the server's `/v1` API (see `docs/openapi.yaml`) over HTTPS. The bearer
//! is, per `[team] auth`, the signed-in user's IdP access token for the server's audience
//! (`access_token`), or the server's own session token (`id_token`): a fresh ID token (one
//! refresh through the identity's one refresh lock) exchanged at `POST /v1/session`, kept in
//! memory only, and exchanged again when a fifth of its life (at most a minute) is left or the
//! server calls it expired. Every decision is the caller's own: a manager approves from
//! their own machine with their own sign-in, and the server applies the policy.
//!
//! Besides the calls, the client keeps what the desktop must know to go on while the server
//! can't be reached:
//! - the grants it has seen (from answers and events), so the gateway still authorizes logins
//!   for grants that are active and not past their `expires_at`;
//! - the Snowflake tokens it minted, per grant, reused until shortly before their `exp` (and,
//!   while the server is unreachable, until their `exp`);
//! - a local deadline per active grant ([`TeamClient::deadlines`]): when one passes, an
//!   `expired` event goes out locally, so enforcement cuts the sessions even while the event
//!   stream is down;
//! - whether the server answers ([`TeamClient::status`]), for the broker's status;
//! - the audit records only the desktop sees (sign-in and sign-out, gateway sessions and
//!   statements), kept in the durable outbox and sent exactly once, in order, in batches to
//!   `POST /v1/audit/records` ([`audit`], [`TeamClient::report_durably`],
//!   [`TeamClient::report_audit`]).
//!
//! [`events::follow`] follows `GET /v1/events` and turns each server event into the same
//! [`GrantEvent`] broadcast solo mode has, so enforcement, notices and the app consume both
//! alike. New requests are never queued: while the server is unreachable they fail with a
//! sentence naming the server and the cause.
//!
//! Every body sent and every answer read is a type of [`snowgate_grants::team_api`], the
//! server's own. The client is split by concern, each file an `impl TeamClient` block:
//! - this file: the client, its shared state (`Inner`) and [`TeamError`];
//! - [`transport`]: the HTTP calls and the bearer (access token, or the session exchange);
//! - [`grants`]: roles, requests, listings and decisions;
//! - [`cache`]: the grants seen and the Snowflake tokens minted, and what is usable offline;
//! - [`deadlines`]: the local expiry timers;
//! - [`status`]: reachability, the caller, and the status the broker shows;
//! - [`reports`]: the audit outbox's sending ([`audit`]: batching, backoff, refusals);
//! - [`verify`]: reading and verifying the server's audit log against the kept checkpoint
//!   ([`checkpoint`]: the file it is kept in);
//! - [`events`]: the event stream.

pub mod audit;
mod cache;
pub mod checkpoint;
mod deadlines;
pub mod events;
mod grants;
mod reports;
mod status;
mod transport;
mod verify;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use snowgate_grants::{Grant, GrantEvent, GrantId, Outbox, OutboxCounts, Policy};
use tokio::sync::{broadcast, Notify};
use url::Url;

use crate::config::{Config, TeamAuth};
use crate::control::{ControlError, ErrorKind};
use crate::identity::Identity;

use self::audit::Reporting;
use self::cache::Minted;
use self::status::Reach;
use self::transport::SessionSlot;

pub use self::status::{AuditReportStatus, LastEvent, ServerCaller, TeamStatus};

/// How long one API call may take before the server counts as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A minted token is renewed this long before its `exp` (or at four fifths of its life, if
/// that is sooner), while the server answers.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// Why a call to the team server failed. Never carries a token.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TeamError {
    /// Nobody is signed in, so there is no bearer token.
    #[error("you are signed out; sign in with `snowgate login` first")]
    SignedOut,
    /// The IdP would not give an access token for the server.
    #[error("Snowgate could not get an access token for the team server from the IdP: {0}")]
    Identity(String),
    /// The server could not be reached (connection, TLS, timeout).
    #[error("the team server at {server} can't be reached ({cause}); try again when it is back")]
    Unreachable { server: String, cause: String },
    /// The server answered with an error; `message` is its sentence.
    #[error("{message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    /// The server's answer could not be read.
    #[error("the team server at {server} sent an answer Snowgate can't read: {problem}")]
    BadAnswer { server: String, problem: String },
}

impl TeamError {
    /// Whether the server could not be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, TeamError::Unreachable { .. })
    }
}

impl From<TeamError> for ControlError {
    fn from(e: TeamError) -> ControlError {
        let kind = match &e {
            TeamError::SignedOut => ErrorKind::SignedOut,
            TeamError::Identity(_)
            | TeamError::Unreachable { .. }
            | TeamError::BadAnswer { .. } => ErrorKind::Unavailable,
            TeamError::Refused { status, .. } => match *status {
                403 => ErrorKind::Forbidden,
                400 | 404 | 409 | 422 => ErrorKind::BadRequest,
                401 => ErrorKind::SignedOut,
                _ => ErrorKind::Unavailable,
            },
        };
        ControlError::new(kind, e.to_string())
    }
}

/// What every clone of a [`TeamClient`] shares.
struct Inner {
    server: Url,
    server_text: String,
    auth: TeamAuth,
    /// The session token (`auth = "id_token"`); one exchange at a time.
    session: tokio::sync::Mutex<SessionSlot>,
    /// Who the server says the caller is.
    caller: Mutex<Option<ServerCaller>>,
    http: reqwest::Client,
    sse_http: reqwest::Client,
    identity: RwLock<Option<Identity>>,
    events: broadcast::Sender<GrantEvent>,
    reach: Mutex<Reach>,
    policy: RwLock<Arc<Policy>>,
    /// Grants seen in answers and events, by id.
    known: Mutex<HashMap<GrantId, Grant>>,
    /// Grants known to have ended (by an event or the local deadline) since they were seen.
    ended: Mutex<HashSet<GrantId>>,
    tokens: Mutex<HashMap<GrantId, Minted>>,
    /// One minting at a time (so concurrent logins share one token).
    mint_lock: tokio::sync::Mutex<()>,
    /// Poked when the known grants change, for the deadline task.
    changed: Notify,
    /// The backoff and the last problem of the reporting; the records themselves wait in the
    /// outbox.
    reports: Mutex<Reporting>,
    /// The durable outbox in the local ledger, or why it could not be opened.
    outbox: RwLock<Result<Outbox, String>>,
    /// What the outbox holds (as of the last push or send), for the status.
    counts: Mutex<OutboxCounts>,
    /// Poked when enough records wait for a batch.
    reports_ready: Notify,
    /// Where the newest audit checkpoint seen is kept (`None` until the data dir is known).
    checkpoint_file: RwLock<Option<PathBuf>>,
}

/// The team server's client. Cheap to clone; clones share the caches and the event broadcast.
#[derive(Clone)]
pub struct TeamClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TeamClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TeamClient")
            .field("server", &self.inner.server_text)
            .finish()
    }
}

impl TeamClient {
    /// A client for `[team]` in `config`. Fails (with a sentence for the status) if the extra
    /// CA file can't be read.
    pub fn new(config: &Config) -> Result<TeamClient, String> {
        let team = config
            .team
            .as_ref()
            .ok_or_else(|| "no [team] table in the config".to_string())?;
        let ca = team
            .extra_ca_file
            .as_ref()
            .or(config.identity.extra_ca_file.as_ref())
            .map(|f| f.0.clone());
        let build = |timeout: Option<Duration>| -> Result<reqwest::Client, String> {
            let mut b = reqwest::Client::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .user_agent(concat!("snowgate/", env!("CARGO_PKG_VERSION")));
            if let Some(t) = timeout {
                b = b.timeout(t);
            }
            if let Some(path) = &ca {
                let pem = std::fs::read(path).map_err(|e| {
                    format!(
                        "the team server's CA file {} can't be read: {e}",
                        path.display()
                    )
                })?;
                let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| {
                    format!(
                        "the team server's CA file {} is not PEM: {e}",
                        path.display()
                    )
                })?;
                b = b.add_root_certificate(cert);
            }
            b.build()
                .map_err(|e| format!("the team server's HTTP client can't be set up: {e}"))
        };
        let (events, _) = broadcast::channel(256);
        let server = team.server.0.clone();
        Ok(TeamClient {
            inner: Arc::new(Inner {
                server_text: team.server.to_string(),
                server,
                auth: team.auth,
                session: tokio::sync::Mutex::new(SessionSlot::default()),
                caller: Mutex::new(None),
                http: build(Some(CALL_TIMEOUT))?,
                sse_http: build(None)?,
                identity: RwLock::new(None),
                events,
                reach: Mutex::new(Reach::default()),
                policy: RwLock::new(Arc::new(Policy::new(Vec::new()).expect("an empty policy"))),
                known: Mutex::new(HashMap::new()),
                ended: Mutex::new(HashSet::new()),
                tokens: Mutex::new(HashMap::new()),
                mint_lock: tokio::sync::Mutex::new(()),
                changed: Notify::new(),
                reports: Mutex::new(Reporting::default()),
                outbox: RwLock::new(Err("the local outbox is not open yet".into())),
                counts: Mutex::new(OutboxCounts::default()),
                reports_ready: Notify::new(),
                checkpoint_file: RwLock::new(None),
            }),
        })
    }

    /// The server's URL, as configured (no trailing slash).
    pub fn server(&self) -> &str {
        &self.inner.server_text
    }

    /// Uses `identity`'s sign-in for the bearer token from now on.
    pub fn set_identity(&self, identity: Option<Identity>) {
        *self.inner.identity.write().unwrap() = identity;
    }

    /// Grant events: from the server's stream and the local deadlines.
    pub fn subscribe(&self) -> broadcast::Receiver<GrantEvent> {
        self.inner.events.subscribe()
    }

    /// The policy from the last `GET /v1/roles` (empty before the first answer).
    pub fn policy(&self) -> Arc<Policy> {
        self.inner.policy.read().unwrap().clone()
    }

    /// Sends `event` to the broker's listeners.
    fn publish(&self, event: GrantEvent) {
        let _ = self.inner.events.send(event);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_keep_the_servers_sentence_and_map_to_kinds() {
        let e = TeamError::Refused {
            status: 403,
            code: "forbidden".into(),
            message: "you cannot approve your own request".into(),
        };
        let c: ControlError = e.into();
        assert_eq!(c.kind, ErrorKind::Forbidden);
        assert_eq!(c.message, "you cannot approve your own request");
        let e = TeamError::Unreachable {
            server: "https://snowgate.example.com".into(),
            cause: "Connection refused (os error 111)".into(),
        };
        let c: ControlError = e.into();
        assert_eq!(c.kind, ErrorKind::Unavailable);
        assert!(
            c.message.contains("https://snowgate.example.com"),
            "{}",
            c.message
        );
        assert!(c.message.contains("Connection refused"), "{}", c.message);
    }
}
