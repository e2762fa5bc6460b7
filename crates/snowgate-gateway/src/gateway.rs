//! [`Gateway`]: the public face of the crate. Bind it, serve it, and from the engine list its
//! sessions, end a grant's sessions, close one, and subscribe to its events.

use std::future::Future;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};
use tokio_rustls::TlsAcceptor;

use crate::audit::{AuditLog, TracingOnly};
use crate::authorizer::Authorizer;
use crate::closer;
use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::events::{
    CloseReason, EndKind, EndReason, EventSink, GatewayEvent, SessionId, SessionInfo,
};
use crate::handle_table::{HandleTable, ToClose};
use crate::listener;
use crate::peer;
use crate::router;
use crate::shutdown::{self, Shutdown};
use crate::state::Shared;
use crate::tls;
use crate::upstream::Upstream;

/// How long in-flight requests may run on after shutdown is asked.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// How often the table is swept for grants that ran out and sessions long gone.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

/// The loopback Snowflake endpoint. Cheap to clone: clones share one gateway.
///
/// Guarantees:
/// - it listens only on 127.0.0.1 and/or [::1], and serves only the OS user running it (on
///   Linux), never a request carrying a browser's headers or a foreign `Host`;
/// - a tool never gets an upstream token, only handles of at least 128 random bits, and
///   never a validity reaching past its grant's end;
/// - within about a second of [`Gateway::end_grant`] (or of the grant's end time, even
///   without that call) every session under the grant has its running queries aborted and is
///   closed upstream, and the tool's next request gets a sentence saying why;
/// - a login authorized before a grant ended or the user signed out, and answered by
///   Snowflake after, gets no session: it is closed upstream and the tool told why;
/// - no token, handle or password is logged.
#[derive(Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
    /// The plain listeners, then the TLS ones, until [`Gateway::serve`] takes them.
    listeners: Arc<Mutex<Option<Vec<StdListener>>>>,
    local_addrs: Vec<SocketAddr>,
    tls_addrs: Vec<SocketAddr>,
    tls: Option<TlsAcceptor>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("local_addrs", &self.local_addrs)
            .field("tls_addrs", &self.tls_addrs)
            .field("upstream", &self.shared.upstream.display())
            .finish()
    }
}

impl Gateway {
    /// Checks the configuration, sets up the upstream client and binds the listen addresses.
    /// Nothing is served until [`Gateway::serve`].
    ///
    /// Its audit records are only logged ([`TracingOnly`]); a broker uses
    /// [`Gateway::bind_audited`].
    pub fn bind(
        config: GatewayConfig,
        authorizer: Arc<dyn Authorizer>,
    ) -> Result<Gateway, GatewayError> {
        Gateway::bind_audited(config, authorizer, Arc::new(TracingOnly))
    }

    /// [`Gateway::bind`] with an audit log: no statement goes upstream, and no session's
    /// handles go to a tool, until `audit` has kept the record; when it can't, the tool gets a
    /// Snowflake-shaped refusal saying why.
    pub fn bind_audited(
        config: GatewayConfig,
        authorizer: Arc<dyn Authorizer>,
        audit: Arc<dyn AuditLog>,
    ) -> Result<Gateway, GatewayError> {
        config.validate()?;
        let upstream = Upstream::new(&config)?;
        let (mut listeners, local_addrs) = bind_all(&config.listen)?;
        let (tls_listeners, tls_addrs) = bind_all(&config.tls_listen)?;
        let tls = match &config.tls_cert {
            Some(cert) if !tls_listeners.is_empty() => Some(tls::acceptor(cert.clone())?),
            _ => None,
        };
        listeners.extend(tls_listeners);
        if !peer::same_user_check_supported() {
            tracing::warn!("this OS does not tell the gateway who owns a loopback connection: the same-user check is off, and per-tool secrets are what keeps other local users out (required unless [gateway] require_tool_secrets = false)");
        }
        let shared = Arc::new(Shared {
            config,
            authorizer,
            table: HandleTable::new(),
            upstream,
            events: EventSink::with_audit(audit),
            uid: peer::current_uid(),
            rates: Default::default(),
        });
        Ok(Gateway {
            shared,
            listeners: Arc::new(Mutex::new(Some(listeners))),
            local_addrs,
            tls_addrs,
            tls,
        })
    }

    /// The plain-HTTP addresses actually bound (with the ports chosen for port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.local_addrs.clone()
    }

    /// The HTTPS addresses actually bound (with the ports chosen for port 0).
    pub fn tls_addrs(&self) -> Vec<SocketAddr> {
        self.tls_addrs.clone()
    }

    /// Serves until `shutdown` resolves. Then it stops accepting, lets requests in flight
    /// finish (up to 5 s), and closes every open upstream session (each within 1 s), emitting
    /// [`GatewayEvent::SessionClosed`] with [`CloseReason::Shutdown`]. Callable once.
    pub async fn serve(
        &self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), GatewayError> {
        let listeners = self
            .listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or(GatewayError::AlreadyServing)?;
        let (signal, stop) = shutdown::channel();
        let (tx, mut accepted) = mpsc::channel(256);
        let serving = listener::Serving::start(self.shared.config.serving_threads)
            .map_err(GatewayError::Serving)?;
        let plain = self.local_addrs.iter().map(|a| (a, None));
        let tls = self.tls_addrs.iter().map(|a| (a, self.tls.clone()));
        for (std_listener, (addr, tls)) in listeners.into_iter().zip(plain.chain(tls)) {
            // Registered with the first serving thread's runtime, where it is accepted from.
            let listener = {
                let _serving = serving.handle().enter();
                TcpListener::from_std(std_listener).map_err(|source| GatewayError::Bind {
                    addr: *addr,
                    source,
                })?
            };
            serving.handle().spawn(listener::accept_loop(
                listener,
                tls,
                tx.clone(),
                stop.clone(),
            ));
        }
        drop(tx);
        tokio::spawn(sweeper(self.shared.clone(), stop.clone()));
        tracing::info!(addrs = ?self.local_addrs, tls_addrs = ?self.tls_addrs, upstream = %self.shared.upstream.display(), "gateway serving");

        let routes = router::Routes::new(self.shared.clone());
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                next = accepted.recv() => match next {
                    Some(a) => listener::spawn_connection(&serving, a, routes.clone(), graceful.watcher()),
                    None => break,
                },
            }
        }
        signal.trigger();
        if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!("requests still running after the shutdown grace period were cut");
        }
        let open = self.shared.table.drain();
        for s in &open {
            self.record_closed(s, CloseReason::Shutdown).await;
        }
        closer::close_all(&self.shared, open).await;
        drop(serving);
        tracing::info!("gateway stopped");
        Ok(())
    }

    /// Every session the gateway holds, ended ones included until their handles are dropped.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.shared.table.snapshot()
    }

    /// Ends every session opened under `grant_id`: marks their handles so the tool's next
    /// request gets [`EndReason::sentence`], aborts their running queries and closes them
    /// upstream concurrently, returning once all finished (each within 1 s). Returns how many
    /// sessions were ended. Refusing new logins for the grant is the authorizer's business;
    /// a login already authorized for it and still waiting on Snowflake is refused here when
    /// Snowflake answers, and its session closed.
    pub async fn end_grant(&self, grant_id: &str, reason: EndReason) -> usize {
        let ended = self.shared.table.end_grant(grant_id, reason);
        self.cut(ended, reason).await
    }

    /// Ends every session, whatever its grant, because the user signed out: like
    /// [`Gateway::end_grant`] for all grants at once, and a login in flight (authorized
    /// before this call) is refused when Snowflake answers it. Returns how many sessions were
    /// ended.
    pub async fn end_all(&self, reason: EndReason) -> usize {
        let ended = self.shared.table.end_all(reason);
        self.cut(ended, reason).await
    }

    async fn cut(&self, ended: Vec<ToClose>, reason: EndReason) -> usize {
        let n = ended.len();
        for s in &ended {
            self.record_closed(s, CloseReason::Ended(reason)).await;
        }
        closer::close_all(&self.shared, ended).await;
        n
    }

    /// Closes one session from Snowgate's side (the tray's "close"), like
    /// [`Gateway::end_grant`] for a single session. `false` if it is not open.
    pub async fn close_session(&self, id: SessionId) -> bool {
        let reason = EndReason::new(EndKind::ClosedInSnowgate, SystemTime::now());
        let Some(s) = self.shared.table.end_session(id, reason) else {
            return false;
        };
        self.record_closed(&s, CloseReason::Ended(reason)).await;
        closer::close_all(&self.shared, vec![s]).await;
        true
    }

    /// Moves the end of every open session under `grant_id` to `ends_at`, after an extension
    /// was approved: the sessions carry on, and the sweeper ends them at the new time.
    /// Returns how many sessions were extended.
    pub fn extend_grant(&self, grant_id: &str, ends_at: SystemTime) -> usize {
        self.shared.table.extend_grant(grant_id, ends_at)
    }

    /// The gateway's events, from now on, for display (the tray). A subscriber that falls
    /// more than a few thousand events behind misses the oldest (`RecvError::Lagged`). The
    /// audit records don't come from here: they are kept through the [`AuditLog`] before the
    /// gateway acts.
    pub fn subscribe(&self) -> broadcast::Receiver<GatewayEvent> {
        self.shared.events.subscribe()
    }

    /// Why the audit log can't keep records right now, if it can't: statements are refused.
    pub fn audit_problem(&self) -> Option<String> {
        self.shared.events.audit_problem()
    }

    async fn record_closed(&self, s: &ToClose, reason: CloseReason) {
        self.shared
            .events
            .record_done(s.session.closed_event(reason))
            .await;
    }
}

/// Binds each address (non-blocking). A port-0 address after a bound one tries that port first.
fn bind_all(addrs: &[SocketAddr]) -> Result<(Vec<StdListener>, Vec<SocketAddr>), GatewayError> {
    let mut listeners = Vec::new();
    let mut local_addrs = Vec::new();
    let mut first_port: Option<u16> = None;
    for addr in addrs {
        let reused = match (addr.port(), first_port) {
            (0, Some(port)) => StdListener::bind(SocketAddr::new(addr.ip(), port)).ok(),
            _ => None,
        };
        let listener = match reused {
            Some(l) => l,
            None => StdListener::bind(addr).map_err(|source| GatewayError::Bind {
                addr: *addr,
                source,
            })?,
        };
        listener
            .set_nonblocking(true)
            .map_err(|source| GatewayError::Bind {
                addr: *addr,
                source,
            })?;
        let local = listener.local_addr().map_err(|source| GatewayError::Bind {
            addr: *addr,
            source,
        })?;
        first_port.get_or_insert(local.port());
        local_addrs.push(local);
        listeners.push(listener);
    }
    Ok((listeners, local_addrs))
}

/// Ends sessions whose grant ran out (even if the engine never calls `end_grant`) and drops
/// sessions long ended or idle past Snowflake's master validity.
async fn sweeper(shared: Arc<Shared>, mut stop: Shutdown) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.recv() => return,
            _ = tick.tick() => {}
        }
        let sweep = shared.table.sweep(SystemTime::now(), Instant::now());
        let mut to_close = Vec::new();
        for (s, reason) in sweep.expired {
            shared
                .events
                .record_done(s.session.closed_event(CloseReason::Ended(reason)))
                .await;
            to_close.push(s);
        }
        for (session, reason) in sweep.dropped {
            shared
                .events
                .record_done(session.closed_event(reason))
                .await;
        }
        if !to_close.is_empty() {
            let shared = shared.clone();
            tokio::spawn(async move {
                closer::close_all(&shared, to_close).await;
            });
        }
    }
}
