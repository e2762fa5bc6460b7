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

pub mod audit;
pub mod checkpoint;
pub mod events;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use serde_json::{json, Value};
use snowgate_grants::{
    AuditEntry, Cause, Grant, GrantDuration, GrantEvent, GrantEventKind, GrantId, Outbox,
    OutboxCounts, Policy, RoleName, RolePolicy, Subject, Timestamp, Waiting,
};
use tokio::sync::{broadcast, Notify};
use url::Url;

use crate::config::{Config, TeamAuth};
use crate::control::{ControlError, ErrorKind};
use crate::identity::{Identity, IdentityError};

use self::audit::{ReportSink, Reporting, SendFailure};

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

/// The team server as the broker's status shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ts_rs::TS)]
pub struct TeamStatus {
    /// The server's URL.
    pub server: String,
    /// Whether the last call or the event stream reached it.
    pub reachable: bool,
    /// Why it can't be reached, when it can't.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub problem: Option<String>,
    /// Since when it can't be reached (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub unreachable_since: Option<String>,
    /// `connected` while the event stream is open, else `connecting`.
    pub events: String,
    /// The last event received over the stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub last_event: Option<LastEvent>,
    /// The audit records waiting to go to the server.
    pub audit: AuditReportStatus,
    /// How this desktop authenticates to the server (`[team] auth`).
    pub auth: String,
    /// Who the server takes the signed-in user for, once it has said.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub caller: Option<ServerCaller>,
}

/// The signed-in user as the team server sees them (`GET /v1/me`, or the session exchange).
#[derive(Debug, Clone, Serialize, PartialEq, Eq, serde::Deserialize, ts_rs::TS)]
pub struct ServerCaller {
    /// The subject the server read from the token.
    pub subject: String,
    /// The groups the server resolved (the token's and its own `[[groups]]`).
    pub groups: Vec<String>,
}

/// The server's session token, when `[team] auth = "id_token"`. Memory only.
#[derive(Clone)]
struct ServerSession {
    subject: String,
    token: SecretString,
    renew_at: SystemTime,
}

/// The desktop's audit records on their way to the team server. None is ever dropped: each
/// record is taken by the server, waits in the local outbox, or is kept there refused.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ts_rs::TS)]
pub struct AuditReportStatus {
    /// Records in the local outbox the server has not taken yet (refused ones not counted).
    #[ts(type = "number")]
    pub waiting: u64,
    /// Of those, records of people other than the one signed in (they signed out before their
    /// records went out): they wait until that person signs in again on this desktop.
    #[ts(type = "number")]
    pub others: u64,
    /// How many people those records belong to.
    #[ts(type = "number")]
    pub other_people: u64,
    /// Records the server refused for good: kept in the outbox, not sent again.
    #[ts(type = "number")]
    pub refused: u64,
    /// The server's reason for the latest refusal.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub refused_reason: Option<String>,
    /// Why the last send failed, until one succeeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub problem: Option<String>,
}

/// The last event received from the server's stream.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ts_rs::TS)]
pub struct LastEvent {
    /// The server's event id.
    pub id: String,
    /// The event's kind: `requested`, `approved`, `revoked`, ...
    pub event: String,
    /// The grant it is about.
    pub grant: String,
    /// When it arrived (RFC 3339).
    pub received_at: String,
}

/// A Snowflake token minted by the server for one grant.
#[derive(Clone)]
struct Minted {
    token: SecretString,
    expires_at: SystemTime,
    renew_at: SystemTime,
}

#[derive(Default)]
struct Reach {
    problem: Option<(String, SystemTime)>,
    connected: bool,
    last_event: Option<LastEvent>,
}

struct Inner {
    server: Url,
    server_text: String,
    auth: TeamAuth,
    /// The session token (`auth = "id_token"`); one exchange at a time.
    session: tokio::sync::Mutex<Option<ServerSession>>,
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

/// The root cause of a transport error, as a short phrase (never a URL with secrets: the
/// server URL carries none, and tokens travel only in headers).
fn cause_of(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer in time".into();
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if text.is_empty() || std::ptr::eq(cause as *const _ as *const u8, e as *const _ as *const u8) {
        if e.is_connect() {
            return "the connection failed".into();
        }
        return e.to_string();
    }
    text
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
                session: tokio::sync::Mutex::new(None),
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

    /// Whether the server answers, for the broker's status.
    pub fn status(&self) -> TeamStatus {
        let reach = self.inner.reach.lock().unwrap();
        TeamStatus {
            server: self.inner.server_text.clone(),
            reachable: reach.problem.is_none(),
            problem: reach.problem.as_ref().map(|(p, _)| p.clone()),
            unreachable_since: reach
                .problem
                .as_ref()
                .map(|(_, since)| Timestamp::from(*since).to_rfc3339()),
            events: if reach.connected {
                "connected".into()
            } else {
                "connecting".into()
            },
            last_event: reach.last_event.clone(),
            audit: self.report_status(),
            auth: self.inner.auth.as_str().to_string(),
            caller: self.inner.caller.lock().unwrap().clone(),
        }
    }

    fn report_status(&self) -> AuditReportStatus {
        let counts = self.inner.counts.lock().unwrap().clone();
        AuditReportStatus {
            waiting: counts.waiting,
            others: counts.others,
            other_people: counts.other_people,
            refused: counts.refused,
            refused_reason: counts.last_refusal,
            problem: self
                .inner
                .reports
                .lock()
                .unwrap()
                .problem()
                .map(str::to_string)
                .or_else(|| self.outbox_problem()),
        }
    }

    /// The person signed in now, whose token sends the records.
    fn signed_in_subject(&self) -> Option<Subject> {
        self.inner
            .identity
            .read()
            .unwrap()
            .as_ref()
            .and_then(|i| i.profile())
            .and_then(|p| Subject::new(p.subject).ok())
    }

    /// Reads the outbox's counts again, for the status.
    async fn recount(&self, outbox: &Outbox) {
        let subject = self.signed_in_subject();
        match outbox.counts(subject.as_ref()).await {
            Ok(c) => *self.inner.counts.lock().unwrap() = c,
            Err(e) => tracing::warn!(error = %e, "could not count the audit outbox"),
        }
    }

    /// Keeps the desktop's audit records in `outbox` (in the local ledger) until the server
    /// has them; `Err` (the ledger could not be opened) makes every record fail, so the
    /// gateway refuses statements rather than run them unrecorded.
    pub async fn set_outbox(&self, outbox: Result<Outbox, String>) {
        if let Ok(o) = &outbox {
            self.recount(o).await;
        }
        *self.inner.outbox.write().unwrap() = outbox;
        self.inner.reports_ready.notify_one();
    }

    fn outbox(&self) -> Result<Outbox, String> {
        self.inner.outbox.read().unwrap().clone()
    }

    /// Puts an audit record in the durable outbox for the server's log. `Ok` once it is
    /// committed to the local ledger (it survives a restart and any outage); waits, never drops.
    pub async fn report_durably(&self, entry: AuditEntry) -> Result<(), String> {
        let outbox = self.outbox()?;
        outbox
            .push(std::slice::from_ref(&entry))
            .await
            .map_err(|e| e.to_string())?;
        let waiting = {
            let mut c = self.inner.counts.lock().unwrap();
            c.waiting += 1;
            c.waiting
        };
        if waiting >= audit::FLUSH_AT as u64 {
            self.inner.reports_ready.notify_one();
        }
        Ok(())
    }

    /// Why audit records can't be kept for the server right now, if they can't.
    pub fn outbox_problem(&self) -> Option<String> {
        self.outbox().err()
    }

    /// Sends the audit records in the outbox: a batch every second, or as soon as enough
    /// wait, retrying with a backoff while the server can't take them. Runs until the broker
    /// stops.
    pub async fn report_audit(self) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(audit::FLUSH_EVERY) => {}
                _ = self.inner.reports_ready.notified() => {}
            }
            self.flush_reports(Instant::now()).await;
        }
    }

    /// Sends what the signed-in person may send, batch after batch, until nothing of theirs
    /// waits or a send fails ([`audit::flush`]). Returns whether everything of theirs went out.
    /// While nobody is signed in, records wait.
    async fn flush_reports(&self, now: Instant) -> bool {
        let Ok(outbox) = self.outbox() else {
            return false;
        };
        if self.inner.counts.lock().unwrap().waiting == 0 {
            return true;
        }
        let Some(subject) = self.signed_in_subject() else {
            return false;
        };
        let flushed = audit::flush(&outbox, &self.inner.reports, &Sink(self), &subject, now).await;
        if flushed.refused > 0 {
            tracing::warn!(
                refused = flushed.refused,
                problem = flushed.problem.as_deref().unwrap_or(""),
                "the team server refused audit records; they are kept in the local outbox, marked refused"
            );
        } else if let Some(p) = &flushed.problem {
            tracing::warn!(problem = %p, "audit records could not go to the team server yet; trying again");
        }
        self.recount(&outbox).await;
        flushed.done
    }

    /// Best effort at shutdown: sends what waits, for at most `within`, ignoring the backoff.
    /// What is left stays in the outbox for the next start.
    pub async fn flush_reports_now(&self, within: Duration) {
        if self.inner.counts.lock().unwrap().waiting == 0 {
            return;
        }
        let at = Instant::now() + audit::MAX_BACKOFF;
        if tokio::time::timeout(within, self.flush_reports(at))
            .await
            .map_or(true, |all| !all)
        {
            let left = self.inner.counts.lock().unwrap().waiting;
            if left > 0 {
                tracing::info!(
                    left,
                    server = %self.inner.server_text,
                    "stopping with audit records the team server did not take yet; they wait in the outbox"
                );
            }
        }
    }

    /// The URL of `path_and_query` (`/v1/grants?mine=true`) under the server's base URL.
    fn url(&self, path_and_query: &str) -> Url {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let mut url = self.inner.server.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}{path}"));
        url.set_query(query.filter(|q| !q.is_empty()));
        url
    }

    fn mark_reachable(&self) {
        let mut reach = self.inner.reach.lock().unwrap();
        if reach.problem.take().is_some() {
            tracing::info!(server = %self.inner.server_text, "the team server answers again");
        }
    }

    fn mark_unreachable(&self, cause: &str) {
        let mut reach = self.inner.reach.lock().unwrap();
        if reach.problem.is_none() {
            tracing::warn!(server = %self.inner.server_text, cause, "the team server can't be reached");
            reach.problem = Some((cause.to_string(), SystemTime::now()));
        } else if let Some((p, _)) = reach.problem.as_mut() {
            *p = cause.to_string();
        }
    }

    fn set_connected(&self, connected: bool) {
        self.inner.reach.lock().unwrap().connected = connected;
    }

    fn unreachable(&self, cause: String) -> TeamError {
        self.mark_unreachable(&cause);
        TeamError::Unreachable {
            server: self.inner.server_text.clone(),
            cause,
        }
    }

    /// The bearer token: the signed-in user's access token for the server's audience, or
    /// (`[team] auth = "id_token"`) the server's session token.
    async fn bearer(&self) -> Result<SecretString, TeamError> {
        let identity = self
            .inner
            .identity
            .read()
            .unwrap()
            .clone()
            .ok_or(TeamError::SignedOut)?;
        if self.inner.auth == TeamAuth::IdToken {
            return self.session_token(&identity).await;
        }
        match identity.team_server_token().await {
            Ok(t) => Ok(SecretString::from(t.token.expose_secret().to_string())),
            Err(IdentityError::NotSignedIn) => Err(TeamError::SignedOut),
            Err(e) => Err(TeamError::Identity(e.to_string())),
        }
    }

    /// The server's session token for the signed-in person: the cached one until its renewal
    /// time, else a fresh ID token exchanged at `POST /v1/session`.
    async fn session_token(&self, identity: &Identity) -> Result<SecretString, TeamError> {
        let mut session = self.inner.session.lock().await;
        let Some(subject) = identity.profile().map(|p| p.subject) else {
            *session = None;
            return Err(TeamError::SignedOut);
        };
        if let Some(s) = session.as_ref() {
            if s.subject == subject && SystemTime::now() < s.renew_at {
                return Ok(s.token.clone());
            }
        }
        *session = None;
        let id_token = match identity.fresh_id_token().await {
            Ok(t) => t,
            Err(IdentityError::NotSignedIn) => return Err(TeamError::SignedOut),
            Err(e) => return Err(TeamError::Identity(e.to_string())),
        };
        let resp = self
            .inner
            .http
            .post(self.url("/v1/session"))
            .json(&json!({ "id_token": id_token.expose_secret() }))
            .send()
            .await
            .map_err(|e| self.unreachable(cause_of(&e)))?;
        drop(id_token);
        self.mark_reachable();
        let status = resp.status();
        let json: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = json["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| {
                    format!(
                        "the team server at {} answered POST /v1/session with {status}",
                        self.inner.server_text
                    )
                });
            tracing::warn!(%status, error = %message, "the team server did not exchange the ID token");
            return Err(TeamError::Refused {
                status: status.as_u16(),
                code: json["error"]["code"].as_str().unwrap_or("").to_string(),
                message,
            });
        }
        let token = json["token"]
            .as_str()
            .ok_or_else(|| self.bad_answer("no `token` in the session answer"))?;
        let life = Duration::from_secs(json["expires_in"].as_u64().unwrap_or(60).max(1));
        let groups = json["groups"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|g| g.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        *self.inner.caller.lock().unwrap() = Some(ServerCaller {
            subject: json["subject"].as_str().unwrap_or(&subject).to_string(),
            groups,
        });
        let s = ServerSession {
            subject,
            token: SecretString::from(token.to_string()),
            renew_at: session_renew_at(SystemTime::now(), life),
        };
        tracing::debug!(expires_in = ?life, "exchanged an ID token for a team server session");
        let token = s.token.clone();
        *session = Some(s);
        Ok(token)
    }

    /// Forgets the session token after the server refused it (401), so the next call
    /// exchanges a fresh ID token.
    async fn forget_session(&self) {
        *self.inner.session.lock().await = None;
    }

    /// An unauthenticated `GET` of `path` (`/healthz`, `/.well-known/jwks.json`): its JSON
    /// whatever the status, or why it could not be read.
    pub async fn public_json(&self, path: &str) -> Result<Value, String> {
        let resp = self
            .inner
            .http
            .get(self.url(path))
            .send()
            .await
            .map_err(|e| cause_of(&e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| cause_of(&e))?;
        serde_json::from_str(&text)
            .map_err(|_| format!("{path} answered {status} with something that is not JSON"))
    }

    /// `GET /v1/me`: who the server takes the signed-in user for, with the groups it resolved
    /// (also kept for the status).
    pub async fn me(&self) -> Result<ServerCaller, TeamError> {
        let answer = self.call(Method::GET, "/v1/me", None).await?;
        let caller = ServerCaller {
            subject: answer["subject"].as_str().unwrap_or_default().to_string(),
            groups: answer["groups"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|g| g.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        };
        *self.inner.caller.lock().unwrap() = Some(caller.clone());
        Ok(caller)
    }

    /// One API call; the answer's JSON on success.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, TeamError> {
        match self.call_once(method.clone(), path, body.clone()).await {
            // A session the server no longer takes (expired, or its key rotated away): one
            // more try with a fresh exchange.
            Err(TeamError::Refused { status: 401, .. }) if self.inner.auth == TeamAuth::IdToken => {
                self.forget_session().await;
                self.call_once(method, path, body).await
            }
            other => other,
        }
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, TeamError> {
        let bearer = self.bearer().await?;
        let mut req = self
            .inner
            .http
            .request(method.clone(), self.url(path))
            .bearer_auth(bearer.expose_secret());
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.unreachable(cause_of(&e)))?;
        self.mark_reachable();
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| self.unreachable(cause_of(&e)))?;
        let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(json);
        }
        let message = json["error"]["message"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| {
                format!(
                    "the team server at {} answered {method} {path} with {status}",
                    self.inner.server_text
                )
            });
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::BAD_GATEWAY {
            self.mark_unreachable(&message);
        }
        Err(TeamError::Refused {
            status: status.as_u16(),
            code: json["error"]["code"].as_str().unwrap_or("").to_string(),
            message,
        })
    }

    fn bad_answer(&self, problem: impl std::fmt::Display) -> TeamError {
        TeamError::BadAnswer {
            server: self.inner.server_text.clone(),
            problem: problem.to_string(),
        }
    }

    fn one_grant(&self, answer: Value) -> Result<Grant, TeamError> {
        let g: Grant = serde_json::from_value(answer["grant"].clone())
            .map_err(|e| self.bad_answer(format!("a grant: {e}")))?;
        self.remember(std::slice::from_ref(&g));
        Ok(g)
    }

    fn grants(&self, answer: Value) -> Result<Vec<Grant>, TeamError> {
        let list: Vec<Grant> = serde_json::from_value(answer["grants"].clone())
            .map_err(|e| self.bad_answer(format!("a list of grants: {e}")))?;
        self.remember(&list);
        Ok(list)
    }

    /// Keeps the newest version of each grant seen.
    fn remember(&self, grants: &[Grant]) {
        let mut known = self.inner.known.lock().unwrap();
        let mut ended = self.inner.ended.lock().unwrap();
        for g in grants {
            let newer = known
                .get(g.id())
                .is_none_or(|old| old.version() <= g.version());
            if newer {
                if g.state().is_ended() {
                    self.inner.tokens.lock().unwrap().remove(g.id());
                } else if g.is_usable_at(Timestamp::from(SystemTime::now())) {
                    // Active again on the server's word (an extension, say).
                    ended.remove(g.id());
                }
                known.insert(g.id().clone(), g.clone());
            }
        }
        drop((known, ended));
        self.inner.changed.notify_one();
    }

    /// The requestable roles (`GET /v1/roles`), also kept as the policy for notices.
    pub async fn roles(&self) -> Result<Arc<Policy>, TeamError> {
        let answer = self.call(Method::GET, "/v1/roles", None).await?;
        let policy = policy_from_roles(&answer).map_err(|e| self.bad_answer(e))?;
        let policy = Arc::new(policy);
        *self.inner.policy.write().unwrap() = policy.clone();
        Ok(policy)
    }

    /// Asks for `role` (`POST /v1/requests`).
    pub async fn request(
        &self,
        role: &str,
        duration_secs: u64,
        reason: &str,
        ticket: Option<&str>,
    ) -> Result<Grant, TeamError> {
        let mut body = json!({ "role": role, "duration_secs": duration_secs, "reason": reason });
        if let Some(t) = ticket {
            body["ticket"] = json!(t);
        }
        let answer = self.call(Method::POST, "/v1/requests", Some(body)).await?;
        self.one_grant(answer)
    }

    /// The caller's grants, or also those of the roles they approve (`all`).
    pub async fn list(&self, all: bool) -> Result<Vec<Grant>, TeamError> {
        let path = format!("/v1/grants?mine={}&limit=1000", !all);
        let answer = self.call(Method::GET, &path, None).await?;
        self.grants(answer)
    }

    /// One grant.
    pub async fn get(&self, id: &GrantId) -> Result<Grant, TeamError> {
        let answer = self
            .call(Method::GET, &format!("/v1/grants/{id}"), None)
            .await?;
        self.one_grant(answer)
    }

    /// Requests and extensions waiting for the caller's decision.
    pub async fn awaiting(&self) -> Result<Vec<Grant>, TeamError> {
        let answer = self.call(Method::GET, "/v1/approvals", None).await?;
        self.grants(answer)
    }

    /// `approve`, `deny`, `revoke`, `cancel` or `extend` on grant `id`, as the caller.
    pub async fn act(&self, id: &GrantId, action: &str, body: Value) -> Result<Grant, TeamError> {
        let answer = self
            .call(
                Method::POST,
                &format!("/v1/grants/{id}/{action}"),
                Some(body),
            )
            .await?;
        let g = self.one_grant(answer)?;
        if g.state().is_ended() {
            self.inner.ended.lock().unwrap().insert(g.id().clone());
        }
        Ok(g)
    }

    /// Audit records (`GET /v1/audit`).
    pub async fn audit(
        &self,
        since: Option<Timestamp>,
        limit: Option<u32>,
    ) -> Result<Vec<Value>, TeamError> {
        let mut url = "/v1/audit?".to_string();
        if let Some(s) = since {
            url.push_str(&format!("since={}&", urlencode(&s.to_rfc3339())));
        }
        if let Some(l) = limit {
            url.push_str(&format!("limit={l}&"));
        }
        let answer = self
            .call(Method::GET, url.trim_end_matches(['?', '&']), None)
            .await?;
        Ok(answer["records"].as_array().cloned().unwrap_or_default())
    }

    /// Keeps the newest audit checkpoint seen in `path` (in the data dir).
    pub fn set_checkpoint_file(&self, path: PathBuf) {
        *self.inner.checkpoint_file.write().unwrap() = Some(path);
    }

    /// The kept checkpoint, if a file is set and holds one.
    pub fn kept_checkpoint(&self) -> Result<Option<checkpoint::KeptCheckpoint>, String> {
        let path = self.inner.checkpoint_file.read().unwrap().clone();
        match path {
            Some(p) => checkpoint::load(&p),
            None => Ok(None),
        }
    }

    /// A checkpoint the server announced (`data` as `GET /v1/audit/checkpoint` answers):
    /// checked with the server's checkpoint key and kept when it is newer than the kept one.
    pub async fn note_checkpoint(&self, data: &Value) -> Result<checkpoint::Kept, String> {
        let Some(path) = self.inner.checkpoint_file.read().unwrap().clone() else {
            return Ok(checkpoint::Kept::NotNewer);
        };
        let token = data["checkpoint"]
            .as_str()
            .ok_or("the server's checkpoint has no `checkpoint`")?;
        let kid = checkpoint::kid_of(token)?;
        let kept = checkpoint::load(&path)?;
        // The key kept with the last checkpoint, or else the one the server publishes.
        let key = match kept.as_ref().filter(|k| k.kid == kid) {
            Some(k) => k.key.clone(),
            None => {
                let jwks = self
                    .call(Method::GET, "/v1/audit/checkpoint-key", None)
                    .await
                    .map_err(|e| format!("the server's checkpoint key can't be read: {e}"))?;
                checkpoint::key_in(&jwks, &kid).ok_or_else(|| {
                    format!("the server does not publish the key {kid:?} its checkpoint names")
                })?
            }
        };
        let new = checkpoint::check(token, &key)?;
        // Before moving past the kept checkpoint, check that the log still holds its record
        // (when this person may read the log): a replica restarted over a rewritten database
        // signs the rewritten head, and that must not replace the anchor that proves it.
        if let Some(old) = kept.as_ref().filter(|k| k.seq < new.seq) {
            match self.record_hash(old.seq).await {
                Ok(Some(hash)) if hash == old.hash => {}
                Ok(_) => {
                    tracing::error!(
                        seq = old.seq,
                        "the team server's audit log no longer holds the record this desktop's checkpoint anchors; the checkpoint is kept, and `snowgate audit verify` reports it"
                    );
                    return Ok(checkpoint::Kept::Conflict);
                }
                // Not an audit reader: nothing to check it with.
                Err(TeamError::Refused { status: 403, .. }) => {}
                Err(e) => return Err(format!("the kept audit checkpoint can't be checked: {e}")),
            }
        }
        let kept = checkpoint::keep(&path, &new)?;
        match kept {
            checkpoint::Kept::Newer => {
                tracing::debug!(seq = new.seq, "kept the team server's audit checkpoint")
            }
            checkpoint::Kept::Conflict => tracing::error!(
                seq = new.seq,
                "the team server signed another hash for audit record {} than the checkpoint this desktop kept: its audit log was rewritten",
                new.seq
            ),
            checkpoint::Kept::NotNewer => {}
        }
        Ok(kept)
    }

    /// The hash of the server's audit record `seq`, if it has one.
    async fn record_hash(&self, seq: u64) -> Result<Option<String>, TeamError> {
        let page = self
            .call(
                Method::GET,
                &format!("/v1/audit?after_seq={}&limit=1", seq.saturating_sub(1)),
                None,
            )
            .await?;
        Ok(page["records"]
            .as_array()
            .and_then(|r| r.first())
            .filter(|r| r["seq"].as_u64() == Some(seq))
            .and_then(|r| r["hash"].as_str().map(str::to_string)))
    }

    /// `GET /v1/audit/verify`, presenting the newest checkpoint this desktop kept, and the
    /// answer checked here against that checkpoint too: a log the server says is intact but
    /// that ends before the kept `seq`, or has another record there, is reported not intact.
    pub async fn verify_audit(&self) -> Result<Value, TeamError> {
        // Have the server sign its head now (it checks the records since its last
        // checkpoint first), so what is kept is as new as it can be.
        if let Ok(c) = self
            .call(
                Method::POST,
                "/v1/audit/checkpoint",
                Some(serde_json::json!({})),
            )
            .await
        {
            if let Err(e) = self.note_checkpoint(&c).await {
                tracing::warn!(error = %e, "the team server's audit checkpoint was not kept");
            }
        }
        let kept = self.kept_checkpoint().map_err(|e| TeamError::Refused {
            status: 0,
            code: "checkpoint".into(),
            message: e,
        })?;
        let Some(kept) = kept else {
            return self.call(Method::GET, "/v1/audit/verify", None).await;
        };
        let mut answer = self
            .call(
                Method::GET,
                &format!(
                    "/v1/audit/verify?checkpoint={}",
                    urlencode(&kept.checkpoint)
                ),
                None,
            )
            .await?;
        let record = if answer["ok"] == true && answer["records"].as_u64().unwrap_or(0) >= kept.seq
        {
            self.record_hash(kept.seq).await?
        } else {
            None
        };
        if let Some(problem) = checkpoint::problem(&kept, &answer, record.as_deref()) {
            answer = serde_json::json!({ "ok": false, "problem": problem });
        }
        answer["desktop_checkpoint"] = serde_json::json!({
            "seq": kept.seq, "hash": kept.hash, "at": kept.at, "kid": kept.kid,
        });
        Ok(answer)
    }

    /// The whole audit log as JSON Lines (`GET /v1/audit/export`).
    pub async fn export_audit(&self) -> Result<(usize, String), TeamError> {
        let bearer = self.bearer().await?;
        let resp = self
            .inner
            .sse_http
            .get(self.url("/v1/audit/export"))
            .bearer_auth(bearer.expose_secret())
            .send()
            .await
            .map_err(|e| self.unreachable(cause_of(&e)))?;
        self.mark_reachable();
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| self.unreachable(cause_of(&e)))?;
        if !status.is_success() {
            let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            return Err(TeamError::Refused {
                status: status.as_u16(),
                code: json["error"]["code"].as_str().unwrap_or("").to_string(),
                message: json["error"]["message"]
                    .as_str()
                    .unwrap_or("the team server refused the audit export")
                    .to_string(),
            });
        }
        Ok((text.lines().filter(|l| !l.trim().is_empty()).count(), text))
    }

    /// The grants `who` may use now, optionally for one role: from the server, or while it
    /// can't be reached, from the grants already seen (active and not past `expires_at`).
    pub async fn usable(
        &self,
        who: &Subject,
        role: Option<&RoleName>,
    ) -> Result<Vec<Grant>, TeamError> {
        let fresh = match self
            .call(
                Method::GET,
                "/v1/grants?mine=true&state=active&limit=1000",
                None,
            )
            .await
        {
            Ok(answer) => Some(self.grants(answer)?),
            Err(e) if e.is_unreachable() => None,
            Err(e) => return Err(e),
        };
        let now = Timestamp::from(SystemTime::now());
        let ended = self.inner.ended.lock().unwrap().clone();
        let candidates: Vec<Grant> = match fresh {
            Some(list) => list,
            None => self.inner.known.lock().unwrap().values().cloned().collect(),
        };
        let mut usable: Vec<Grant> = candidates
            .into_iter()
            .filter(|g| &g.requester().subject == who)
            .filter(|g| g.is_usable_at(now) && !ended.contains(g.id()))
            .filter(|g| role.is_none_or(|r| g.role() == r))
            .collect();
        usable.sort_by_key(|g| std::cmp::Reverse(g.created_at()));
        Ok(usable)
    }

    /// A grant as last seen, without a call.
    pub fn known_grant(&self, id: &GrantId) -> Option<Grant> {
        self.inner.known.lock().unwrap().get(id).cloned()
    }

    /// The caller's grants as last seen (for refusal sentences while the server is away).
    pub fn known_of(&self, who: &Subject) -> Vec<Grant> {
        let known = self.inner.known.lock().unwrap();
        known
            .values()
            .filter(|g| &g.requester().subject == who)
            .cloned()
            .collect()
    }

    /// A Snowflake token for `grant` minted by the server, reused until shortly before its
    /// `exp`; while the server can't be reached, a minted token is used until its `exp`.
    /// Returns the token and its expiry.
    pub async fn snowflake_token(
        &self,
        grant: &GrantId,
    ) -> Result<(SecretString, SystemTime), TeamError> {
        let now = SystemTime::now();
        if let Some(m) = self.cached_token(grant, now, false) {
            return Ok((m.token, m.expires_at));
        }
        let _one = self.inner.mint_lock.lock().await;
        if let Some(m) = self.cached_token(grant, SystemTime::now(), false) {
            return Ok((m.token, m.expires_at));
        }
        let answer = match self
            .call(
                Method::POST,
                &format!("/v1/grants/{grant}/snowflake-token"),
                Some(json!({})),
            )
            .await
        {
            Ok(a) => a,
            Err(e) if e.is_unreachable() => {
                return match self.cached_token(grant, SystemTime::now(), true) {
                    Some(m) => {
                        tracing::debug!(grant = %grant, "the team server is unreachable; using the token minted before");
                        Ok((m.token, m.expires_at))
                    }
                    None => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let token = answer["token"]
            .as_str()
            .ok_or_else(|| self.bad_answer("no token in the minting answer"))?;
        let expires_at = answer["expires_at"]
            .as_str()
            .and_then(Timestamp::parse_rfc3339)
            .ok_or_else(|| self.bad_answer("no expires_at in the minting answer"))?
            .to_system_time();
        let minted_at = SystemTime::now();
        let life = expires_at.duration_since(minted_at).unwrap_or_default();
        let renew_at = expires_at - TOKEN_MARGIN.min(life / 5);
        let m = Minted {
            token: SecretString::from(token.to_string()),
            expires_at,
            renew_at,
        };
        self.inner
            .tokens
            .lock()
            .unwrap()
            .insert(grant.clone(), m.clone());
        Ok((m.token, m.expires_at))
    }

    /// The cached token for `grant`: fresh (before its renewal time), or with `unexpired`, any
    /// that has not expired yet (with two seconds to spare for the login).
    fn cached_token(&self, grant: &GrantId, now: SystemTime, unexpired: bool) -> Option<Minted> {
        let tokens = self.inner.tokens.lock().unwrap();
        let m = tokens.get(grant)?;
        let ok = if unexpired {
            now + Duration::from_secs(2) < m.expires_at
        } else {
            now < m.renew_at
        };
        ok.then(|| m.clone())
    }

    /// Notes an event from the stream; returns whether to pass it on (a grant's end that the
    /// local deadline already announced is not announced twice).
    fn note_event(&self, event: &GrantEvent) -> bool {
        if event.kind.ends_grant() {
            self.inner.tokens.lock().unwrap().remove(&event.grant);
            let first = self.inner.ended.lock().unwrap().insert(event.grant.clone());
            self.inner.changed.notify_one();
            return first || !matches!(event.kind, GrantEventKind::Expired);
        }
        true
    }

    fn note_last_event(&self, id: &str, event: &GrantEvent) {
        self.inner.reach.lock().unwrap().last_event = Some(LastEvent {
            id: id.to_string(),
            event: event.kind.name().to_string(),
            grant: event.grant.to_string(),
            received_at: Timestamp::from(SystemTime::now()).to_rfc3339(),
        });
    }

    /// Sends `event` to the broker's listeners.
    fn publish(&self, event: GrantEvent) {
        let _ = self.inner.events.send(event);
    }

    /// Runs the local deadlines: when an active grant's `expires_at` passes and no event has
    /// ended it, an `expired` event goes out locally (sessions are cut even while the server
    /// is away). Runs until aborted.
    pub async fn deadlines(self) {
        loop {
            let now = Timestamp::from(SystemTime::now());
            let due: Vec<Grant> = {
                let known = self.inner.known.lock().unwrap();
                let ended = self.inner.ended.lock().unwrap();
                known
                    .values()
                    .filter(|g| !ended.contains(g.id()) && !g.state().is_ended())
                    .filter(|g| g.approved_at().is_some())
                    .filter(|g| g.expires_at().is_some_and(|t| t <= now))
                    .cloned()
                    .collect()
            };
            for g in due {
                let first = self.inner.ended.lock().unwrap().insert(g.id().clone());
                if !first {
                    continue;
                }
                self.inner.tokens.lock().unwrap().remove(g.id());
                let at = g.expires_at().unwrap_or(now);
                tracing::info!(grant = %g.id(), "the grant reached its end (local deadline)");
                self.publish(GrantEvent {
                    grant: g.id().clone(),
                    role: g.role().clone(),
                    requester: g.requester().subject.clone(),
                    at,
                    cause: Cause::Clock,
                    kind: GrantEventKind::Expired,
                });
            }
            let next = {
                let known = self.inner.known.lock().unwrap();
                let ended = self.inner.ended.lock().unwrap();
                known
                    .values()
                    .filter(|g| !ended.contains(g.id()) && !g.state().is_ended())
                    .filter_map(|g| g.expires_at())
                    .min()
            };
            let wait = next
                .map(|t| {
                    t.to_system_time()
                        .duration_since(SystemTime::now())
                        .unwrap_or_default()
                })
                .unwrap_or(Duration::from_secs(3600));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.inner.changed.notified() => {}
            }
        }
    }

    /// Updates the grant an event is about from the server (best effort), so the cache knows
    /// an extension's new end or an approval's activation.
    async fn refresh_grant(&self, id: &GrantId) {
        if let Err(e) = self.get(id).await {
            tracing::debug!(grant = %id, error = %e, "could not re-read a grant after its event");
        }
    }

    /// Reads the caller's grants and the roles, to start from what the server knows.
    async fn resync(&self) {
        if let Err(e) = self.list(true).await {
            tracing::debug!(error = %e, "could not read the grants from the team server");
        }
        if let Err(e) = self.roles().await {
            tracing::debug!(error = %e, "could not read the roles from the team server");
        }
        if let Err(e) = self.me().await {
            tracing::debug!(error = %e, "could not read who the team server takes this user for");
        }
    }
}

/// When a server session that lives `life` from `now` is exchanged again: a fifth of its life
/// before its end, but never more than [`TOKEN_MARGIN`] before it.
fn session_renew_at(now: SystemTime, life: Duration) -> SystemTime {
    now + (life - (life / 5).min(TOKEN_MARGIN))
}

/// Percent-encodes a query value.
fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The policy described by a `GET /v1/roles` answer.
pub fn policy_from_roles(answer: &Value) -> Result<Policy, String> {
    let roles = answer["roles"]
        .as_array()
        .ok_or_else(|| "no `roles` list in GET /v1/roles".to_string())?;
    let mut out = Vec::new();
    for r in roles {
        let name = r["name"].as_str().unwrap_or_default();
        let bad = |what: &str| format!("role {name:?}: {what}");
        let secs = |key: &str| -> Result<GrantDuration, String> {
            r[key]
                .as_u64()
                .and_then(|s| GrantDuration::from_secs(s).ok())
                .ok_or_else(|| bad(key))
        };
        out.push(RolePolicy {
            name: RoleName::new(name).map_err(|e| bad(&e.to_string()))?,
            description: r["description"].as_str().unwrap_or_default().to_string(),
            max_duration: secs("max_duration_secs")?,
            approver_groups: r["approver_groups"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|g| g.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            approvals_required: r["approvals_required"]
                .as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .and_then(std::num::NonZeroU32::new)
                .ok_or_else(|| bad("approvals_required"))?,
            auto_approve_up_to: match r["auto_approve_up_to_secs"].as_u64() {
                Some(s) => Some(GrantDuration::from_secs(s).map_err(|e| bad(&e.to_string()))?),
                None => None,
            },
            pending_timeout: secs("pending_timeout_secs")?,
            extensions_allowed: r["extensions_allowed"].as_bool().unwrap_or(true),
        });
    }
    Policy::new(out).map_err(|e| format!("the server's roles can't be used: {e}"))
}

/// The team server as the sink of the audit outbox.
struct Sink<'a>(&'a TeamClient);

impl ReportSink for Sink<'_> {
    async fn send(&self, source: &str, batch: &[Waiting]) -> Result<(), SendFailure> {
        match self
            .0
            .call(
                Method::POST,
                "/v1/audit/records",
                Some(audit::report_body(source, batch)),
            )
            .await
        {
            Ok(_) => Ok(()),
            // The batch itself is wrong (400), or names a grant that isn't this person's
            // (403): sending it again would not help.
            Err(TeamError::Refused {
                status: 400 | 403,
                message,
                ..
            }) => Err(SendFailure::Refused(message)),
            Err(e) => Err(SendFailure::Retry(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_session_is_renewed_before_it_ends() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        // 15 minutes: renewed a minute before the end.
        assert_eq!(
            session_renew_at(now, Duration::from_secs(900)),
            now + Duration::from_secs(840)
        );
        // 1 minute: a fifth of it before the end.
        assert_eq!(
            session_renew_at(now, Duration::from_secs(60)),
            now + Duration::from_secs(48)
        );
    }

    #[test]
    fn the_servers_roles_become_a_policy() {
        let answer = json!({ "roles": [
            { "name": "ANALYST", "description": "Analytics", "max_duration_secs": 28800,
              "approver_groups": ["managers"], "approvals_required": 1,
              "auto_approve_up_to_secs": null, "pending_timeout_secs": 86400,
              "extensions_allowed": true, "you_can_approve": false },
            { "name": "READONLY", "max_duration_secs": 3600, "approver_groups": ["managers"],
              "approvals_required": 2, "auto_approve_up_to_secs": 3600,
              "pending_timeout_secs": 600, "extensions_allowed": false }
        ]});
        let p = policy_from_roles(&answer).unwrap();
        assert_eq!(p.roles().len(), 2);
        let ro = &p.roles()[1];
        assert_eq!(ro.name.as_str(), "READONLY");
        assert_eq!(ro.approvals_required.get(), 2);
        assert_eq!(ro.auto_approve_up_to.unwrap().as_secs(), 3600);
        assert!(!ro.extensions_allowed);
        let err = policy_from_roles(&json!({ "roles": [{ "name": "X" }] })).unwrap_err();
        assert!(err.contains("max_duration_secs"), "{err}");
    }

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
