//! Startup and shutdown: connect to the database (running migrations), load the signing keys,
//! start the event hub, the deadline loop and (with `[reaper]`) the session reaper, bind the listener and serve the API over TLS
//! (or plain HTTP when `behind_tls_proxy = true`).
//!
//! Each connection is served by hyper on its own task, once [`crate::connection`]'s caps admit
//! it, and closed at its deadlines (a request's headers, an idle or stalled connection).
//! [`RunningServer::shutdown`] stops
//! accepting, lets open requests finish for a few seconds (SSE streams are then cut; their
//! clients reconnect elsewhere with `Last-Event-ID`) and closes the pool.
//! [`RunningServer::abort`] stops everything at once, as a crash would.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use snowgate_grants::{Clock, PgLedger, SystemClock};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::TlsAcceptor;

use crate::auth::{Authenticator, IdpVerifier};
use crate::checkpoint::Checkpointer;
use crate::config::ServerConfig;
use crate::connection::{ConnectionCaps, Deadlines, OverCap, Timed};
use crate::events::EventHub;
use crate::groups::GroupDirectory;
use crate::minting::{MintPolicy, SigningKeys};
use crate::ops::GrantOps;
use crate::rate_limit::RateLimiter;
use crate::reaper::Reaper;
use crate::session::SessionKeys;
use crate::state::AppState;

/// How long open requests may take to finish at shutdown.
const GRACE: Duration = Duration::from_secs(5);
/// How long a TLS handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// How often the server says in its log that connections are being refused over a cap.
const CAP_WARNING_EVERY: Duration = Duration::from_secs(60);

/// What each connection is allowed: the caps and the deadlines of `[server]`.
#[derive(Debug, Clone)]
struct ConnectionRules {
    caps: Arc<ConnectionCaps>,
    header_read: Duration,
    idle: Duration,
}

/// A server that is accepting connections.
pub struct RunningServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    accept: JoinHandle<()>,
    expiry: JoinHandle<()>,
    checkpointing: JoinHandle<()>,
    reaping: Option<JoinHandle<()>>,
    hub: Arc<EventHub>,
    ledger: PgLedger,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// What `snowgate serve --check` found in a config that loaded: the files it names are read
/// (signing keys, session keys, TLS certificate and key) without opening the database or
/// listening. Returns lines of `(what, value)` for people.
pub fn check(config: &ServerConfig) -> Result<Vec<(&'static str, String)>> {
    let key_paths: Vec<&Path> = config
        .minting
        .key_files
        .iter()
        .map(|f| f.0.as_path())
        .collect();
    let keys = Arc::new(SigningKeys::load(&key_paths)?);
    let checkpoint_keys = checkpoint_keys(config, &keys)?;
    if let (Some(cert), Some(key)) = (&config.server.tls_cert, &config.server.tls_key) {
        tls_acceptor(&cert.0, &key.0)?;
    }
    let id = &config.identity;
    let callers = match id.caller_auth {
        crate::config::CallerAuth::AccessToken => format!(
            "access_token (IdP access tokens with aud {})",
            id.audience.as_ref().map(|a| a.as_str()).unwrap_or("-")
        ),
        mode => {
            let s = config.sessions.as_ref().expect("checked at load");
            let paths: Vec<&Path> = s.key_files.iter().map(|f| f.0.as_path()).collect();
            SessionKeys::load(&paths, &config.server.public_url.to_string(), s.lifetime.0)?;
            format!(
                "{} (ID tokens of client {} no older than {}, exchanged for {} sessions{})",
                mode.as_str(),
                id.client_id.as_ref().map(|c| c.as_str()).unwrap_or("-"),
                id.id_token_max_age,
                s.lifetime,
                match &id.audience {
                    Some(a) if mode.accepts_access_tokens() =>
                        format!("; or IdP access tokens with aud {}", a.as_str()),
                    _ => String::new(),
                }
            )
        }
    };
    let groups = match id.groups_from {
        crate::config::GroupsFrom::Both => format!(
            "the `{}` claim and {} [[groups]] table(s)",
            id.groups_claim.as_str(),
            config.groups.len()
        ),
        crate::config::GroupsFrom::Token => {
            format!("the `{}` claim only", id.groups_claim.as_str())
        }
        crate::config::GroupsFrom::Config => {
            format!("{} [[groups]] table(s) only", config.groups.len())
        }
    };
    let readers = config.audit_readers().join(", ");
    let readers = if config.audit.reader_groups.is_empty() {
        format!("{readers} (the default: every role's approver groups)")
    } else {
        readers
    };
    let roles: Vec<String> = config
        .roles
        .iter()
        .map(|r| r.name.get_ref().as_str().to_string())
        .collect();
    let reaper = match &config.reaper {
        None => "off (no [reaper])".to_string(),
        Some(r) => {
            let key = crate::reaper::snowflake::ReaperKey::load(&r.private_key_file.0)?;
            format!(
                "{} as {} with role {}; key fingerprint {} (DESCRIBE USER shows it as RSA_PUBLIC_KEY_FP)",
                r.account_url,
                r.user.as_str(),
                r.role.as_str(),
                key.fingerprint()
            )
        }
    };
    Ok(vec![
        ("public URL", config.server.public_url.to_string()),
        ("issuer", id.issuer.to_string()),
        ("callers", callers),
        ("groups from", groups),
        ("audit readers", readers),
        ("roles", roles.join(", ")),
        (
            "signing keys",
            format!("{} (signer kid {})", keys.kids().len(), keys.kids()[0]),
        ),
        (
            "checkpoint keys",
            if config.audit.checkpoint_key_files.is_empty() {
                format!(
                    "the signing keys (signer kid {}), every {}",
                    checkpoint_keys.kids()[0],
                    config.audit.checkpoint_every
                )
            } else {
                format!(
                    "{} (signer kid {}), every {}",
                    checkpoint_keys.kids().len(),
                    checkpoint_keys.kids()[0],
                    config.audit.checkpoint_every
                )
            },
        ),
        ("session reaper", reaper),
    ])
}

/// Starts the server from `config` with the system clock.
pub async fn start(config: &ServerConfig) -> Result<RunningServer> {
    start_with_clock(config, Arc::new(SystemClock)).await
}

/// Starts the server with `clock` (tests move time with a manual clock).
pub async fn start_with_clock(
    config: &ServerConfig,
    clock: Arc<dyn Clock>,
) -> Result<RunningServer> {
    let policy = config
        .policy()
        .map_err(|(i, m)| anyhow::anyhow!("roles[{i}]: {m}"))?;
    let key_paths: Vec<&Path> = config
        .minting
        .key_files
        .iter()
        .map(|f| f.0.as_path())
        .collect();
    let keys = Arc::new(SigningKeys::load(&key_paths)?);
    let checkpoint_keys = checkpoint_keys(config, &keys)?;
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) if !config.server.behind_tls_proxy => {
            Some(tls_acceptor(&cert.0, &key.0)?)
        }
        _ => None,
    };
    let http = idp_client(
        config
            .identity
            .extra_ca_file
            .as_ref()
            .map(|f| f.0.as_path()),
    )?;
    let ledger = PgLedger::connect_with(
        config.database.url.expose(),
        config.database.max_connections.0,
    )
    .await
    .context("opening the grants database ([database] url)")?;
    let hub = Arc::new(
        EventHub::start(ledger.clone())
            .await
            .context("reading the grant events")?,
    );
    let verifier = IdpVerifier::new(
        config.identity.issuer.0.as_str(),
        config
            .identity
            .audience
            .as_ref()
            .map(|a| a.as_str())
            .unwrap_or_default(),
        config.identity.groups_claim.as_str(),
        config.identity.clock_skew.0,
        http,
    );
    let sessions = match &config.sessions {
        Some(s) => {
            let paths: Vec<&Path> = s.key_files.iter().map(|f| f.0.as_path()).collect();
            Some(SessionKeys::load(
                &paths,
                &config.server.public_url.to_string(),
                s.lifetime.0,
            )?)
        }
        None => None,
    };
    let auth = Authenticator::new(
        config.identity.caller_auth,
        verifier,
        sessions,
        GroupDirectory::new(config.identity.groups_from, &config.groups),
        config
            .identity
            .client_id
            .as_ref()
            .map(|c| c.as_str().to_string()),
        config.identity.id_token_max_age.0,
        clock.clone(),
    );
    let checkpoints = Arc::new(Checkpointer::new(
        checkpoint_keys,
        config.server.public_url.to_string(),
        ledger.clone(),
        clock.clone(),
    ));
    let mint = Arc::new(MintPolicy {
        issuer: config.server.public_url.to_string(),
        audience: config.minting.audience.as_str().to_string(),
        user_claim: config.minting.user_claim.as_str().to_string(),
        user_value: config.minting.user_value,
        lifetime: config.minting.token_lifetime.0,
        accounts: config
            .snowflake
            .iter()
            .map(|a| crate::minting::AccountMint {
                name: a.name.get_ref().as_str().to_string(),
                issuer: a
                    .issuer
                    .as_ref()
                    .map(|i| i.as_str().to_string())
                    .unwrap_or_else(|| config.server.public_url.to_string()),
                audience: a
                    .audience
                    .as_ref()
                    .unwrap_or(&config.minting.audience)
                    .as_str()
                    .to_string(),
                user_claim: a
                    .user_claim
                    .as_ref()
                    .unwrap_or(&config.minting.user_claim)
                    .as_str()
                    .to_string(),
            })
            .collect(),
    });
    let (reaper_status, reaping) = match &config.reaper {
        Some(r) => {
            let reaper = Reaper::new(r, ledger.clone(), mint.clone(), clock.clone())
                .context("starting the session reaper ([reaper])")?;
            let status = reaper.status();
            (
                Some(status),
                Some(reaper.spawn(r.poll_interval.0, hub.subscribe())),
            )
        }
        None => (None, None),
    };
    let state = AppState {
        ops: GrantOps::new(ledger.clone(), policy, clock.clone()),
        auth: Arc::new(auth),
        keys,
        mint: mint.clone(),
        limiter: Arc::new(RateLimiter::new(
            config.server.mutations_per_minute.0,
            config.server.mutation_burst.0,
        )),
        audit_limiter: Arc::new(RateLimiter::new(
            crate::api::audit::REPORTS_PER_MINUTE,
            crate::api::audit::REPORT_BURST,
        )),
        hub: hub.clone(),
        checkpoints: checkpoints.clone(),
        audit_readers: Arc::new(config.audit_readers()),
        report_max_age: config.audit.report_max_age.0,
        reaper: reaper_status,
    };
    let expiry = crate::expiry::spawn(ledger.clone(), clock, hub.changed());
    let checkpointing = crate::checkpoint::spawn(
        checkpoints,
        config.audit.checkpoint_every.0,
        u64::from(config.audit.checkpoint_every_records.0),
    );
    let listener = TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("listening on {} ([server] listen)", config.server.listen))?;
    let addr = listener.local_addr()?;
    let (stop, stop_rx) = watch::channel(false);
    let app = crate::api::router(state);
    let rules = ConnectionRules {
        caps: ConnectionCaps::new(
            config.server.max_connections.0 as usize,
            config.server.max_connections_per_address.0 as usize,
        ),
        header_read: config.server.header_read_timeout.0,
        idle: config.server.idle_timeout.0,
    };
    let accept = tokio::spawn(accept_loop(listener, tls, app, rules, stop_rx));
    tracing::info!(
        %addr,
        public_url = %config.server.public_url,
        database = ledger.label(),
        tls = !config.server.behind_tls_proxy,
        caller_auth = config.identity.caller_auth.as_str(),
        reaper = config.reaper.is_some(),
        "snowgate server listening"
    );
    Ok(RunningServer {
        addr,
        stop,
        accept,
        expiry,
        checkpointing,
        reaping,
        hub,
        ledger,
    })
}

impl RunningServer {
    /// The address the listener is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, gives open requests [`GRACE`] to finish, and closes the pool.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(GRACE + Duration::from_secs(1), self.accept).await;
        self.expiry.abort();
        self.checkpointing.abort();
        if let Some(r) = &self.reaping {
            r.abort();
        }
        drop(self.hub);
        self.ledger.close().await;
    }

    /// Stops everything at once, as if the process had been killed: no request finishes,
    /// every connection (to clients and to the database) is dropped.
    pub fn abort(self) {
        self.accept.abort();
        self.expiry.abort();
        self.checkpointing.abort();
        if let Some(r) = &self.reaping {
            r.abort();
        }
        drop(self.hub);
        drop(self.ledger);
    }
}

/// The keys that sign audit checkpoints: `[audit] checkpoint_key_files`, or the minting keys.
fn checkpoint_keys(config: &ServerConfig, minting: &Arc<SigningKeys>) -> Result<Arc<SigningKeys>> {
    if config.audit.checkpoint_key_files.is_empty() {
        return Ok(minting.clone());
    }
    let paths: Vec<&Path> = config
        .audit
        .checkpoint_key_files
        .iter()
        .map(|f| f.0.as_path())
        .collect();
    Ok(Arc::new(
        SigningKeys::load(&paths).context("[audit] checkpoint_key_files")?,
    ))
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    rules: ConnectionRules,
    mut stop: watch::Receiver<bool>,
) {
    let mut conns = JoinSet::new();
    let mut warned: Option<tokio::time::Instant> = None;
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => continue,
        };
        let admitted = match rules.caps.admit(peer.ip()) {
            Ok(a) => a,
            Err(over) => {
                // Closed before anything is read: the connections already open go on.
                drop(tcp);
                if warned.is_none_or(|t| t.elapsed() >= CAP_WARNING_EVERY) {
                    warned = Some(tokio::time::Instant::now());
                    match over {
                        OverCap::Total => tracing::warn!(
                            open = rules.caps.open(),
                            "closing new connections: the server holds [server] max_connections"
                        ),
                        OverCap::Address => tracing::warn!(
                            peer = %peer.ip(),
                            "closing new connections from an address that holds [server] max_connections_per_address"
                        ),
                    }
                }
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        let deadlines = Deadlines::new(rules.header_read, rules.idle);
        conns.spawn(async move {
            let _admitted = admitted;
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => serve_connection(stream, app, deadlines, stop).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
                None => serve_connection::<TcpStream>(tcp, app, deadlines, stop).await,
            }
        });
    }
    // Let open requests finish, then drop whatever is left (long-lived SSE streams).
    let _ = tokio::time::timeout(GRACE, async { while conns.join_next().await.is_some() {} }).await;
}

async fn serve_connection<S>(
    stream: S,
    app: Router,
    deadlines: Arc<Deadlines>,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let watch = deadlines.clone();
    let service = tower::service_fn(move |req: axum::extract::Request<hyper::body::Incoming>| {
        // Counted as answered until its response body is written or dropped.
        let in_flight = deadlines.begin();
        let app = app.clone();
        async move {
            let resp = tower::ServiceExt::oneshot(app, req).await?;
            Ok::<_, std::convert::Infallible>(resp.map(move |body| {
                axum::body::Body::new(http_body_util::BodyExt::map_frame(body, move |frame| {
                    let _ = &in_flight;
                    frame
                }))
            }))
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(
            TokioIo::new(Timed::new(stream, watch.clone())),
            TowerToHyperService::new(service),
        )
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        }
        why = watch.expired() => {
            // Dropping the connection closes it.
            tracing::debug!(why, "closing a connection at its deadline");
        }
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(GRACE, conn).await;
        }
    }
}

fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| {
            format!(
                "reading the TLS certificate {} ([server] tls_cert)",
                cert.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!(
            "the TLS certificate file {} holds no certificate ([server] tls_cert)",
            cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "reading the TLS private key {} ([server] tls_key)",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("setting up TLS")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context(
            "the TLS certificate and key do not belong together ([server] tls_cert, tls_key)",
        )?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn idp_client(extra_ca: Option<&Path>) -> Result<reqwest::Client> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5));
    if let Some(path) = extra_ca {
        let pem = std::fs::read(path).with_context(|| {
            format!(
                "reading the extra CA {} ([identity] extra_ca_file)",
                path.display()
            )
        })?;
        let cert = reqwest::Certificate::from_pem(&pem).with_context(|| {
            format!(
                "the extra CA {} is not a PEM certificate ([identity] extra_ca_file)",
                path.display()
            )
        })?;
        b = b.add_root_certificate(cert);
    }
    b.build()
        .context("building the HTTP client for the identity provider")
}
