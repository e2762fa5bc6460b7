//! The listener: accepts loopback connections, learns who the peer is, and serves each
//! connection's HTTP/1.1 requests through the router.
//!
//! Each accepted socket gets `TCP_NODELAY` (without it Nagle's algorithm adds ~40 ms to every
//! small answer). The owner of the peer's socket is looked up once per connection, here, and
//! rides on every request as a [`Connection`] extension for [`crate::guard`] to check.
//! Connections are watched by hyper's graceful shutdown, which [`crate::Gateway::serve`] owns.
//! Each request's path is normalised ([`crate::path`]) before the router sees it.
//!
//! A TLS listener's connections are handshaken here ([`crate::tls`]'s acceptor, within
//! [`HEADER_READ_TIMEOUT`]) before hyper sees them; a plain listener's go straight to hyper, so
//! the plain path carries no TLS cost. Either way the peer is looked up on the TCP socket.
//!
//! Listeners and connections run on [`Serving`]: one thread with a runtime of its own
//! (tokio's current-thread flavour), started by [`crate::Gateway::serve`]. A request, the
//! audit record it waits for (one write to the ledger's journal), the upstream connection's
//! task and the answer streaming back all run on that thread, so a statement costs no
//! hand-off between threads: on a multi-threaded runtime every such hand-off can wake a parked
//! worker (a futex wake and a context switch each). The gateway serves one person's tools, and
//! Snowflake's own latency (milliseconds) dwarfs what one thread adds; the engine's work
//! (grants, sign-in, the journal's moves into SQLite) stays on the broker's runtime.

use std::net::SocketAddr;
use std::time::Duration;

use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use crate::peer;
use crate::router::Routes;
use crate::shutdown::Shutdown;
use crate::state::Connection;

/// How long a tool may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// An accepted connection on its way to being served, with its listener's TLS acceptor if it
/// is an HTTPS one.
pub(crate) type Accepted = (TcpStream, SocketAddr, Option<TlsAcceptor>);

/// Accepts connections on one listener until shutdown and hands them on.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    accepted: mpsc::Sender<Accepted>,
    mut shutdown: Shutdown,
) {
    loop {
        let next = tokio::select! {
            _ = shutdown.recv() => return,
            next = listener.accept() => next,
        };
        match next {
            Ok((stream, peer)) => {
                if accepted.send((stream, peer, tls.clone())).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: pause instead of spinning.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The gateway's serving thread and its runtime. Dropping it lets the thread finish the tasks
/// still running there (a record kept after an answer, at most [`SERVING_DRAIN`]) and stop.
pub(crate) struct Serving {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// How long the serving thread waits, once told to stop, for its last tasks.
const SERVING_DRAIN: Duration = Duration::from_secs(5);

impl Serving {
    pub fn start() -> std::io::Result<Serving> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics = handle.clone();
        std::thread::Builder::new()
            .name("snowgate-gateway".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let _ = stopped.await;
                    let deadline = tokio::time::Instant::now() + SERVING_DRAIN;
                    while metrics.metrics().num_alive_tasks() > 0
                        && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                });
            })?;
        Ok(Serving {
            handle,
            stop: Some(stop),
        })
    }

    /// The serving runtime, to register listeners with and spawn on.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.handle
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves one connection on its own task, on the serving thread (where its stream was
/// accepted and is registered).
pub(crate) fn spawn_connection(
    serving: &Serving,
    (stream, peer, tls): Accepted,
    routes: Routes,
    watcher: Watcher,
) {
    serving.handle.spawn(async move {
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "setting TCP_NODELAY failed");
        }
        let Ok(local) = stream.local_addr() else {
            return;
        };
        let conn = Connection {
            peer,
            local,
            peer_socket: peer::lookup(local, peer),
        };
        let service = tower::service_fn(move |mut req: http::Request<Incoming>| {
            req.extensions_mut().insert(conn.clone());
            let routes = routes.clone();
            async move {
                if let Err(refused) = crate::router::normalize_path(&mut req) {
                    return Ok(refused.into_response());
                }
                Ok::<_, std::convert::Infallible>(routes.serve(req.map(axum::body::Body::new)).await)
            }
        });
        match tls {
            None => serve_io(stream, service, watcher).await,
            Some(acceptor) => {
                match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve_io(stream, service, watcher).await,
                    Ok(Err(e)) => tracing::info!(error = %e, %peer, "a TLS handshake failed; a tool that does not trust the local CA fails this way (snowgate trust install)"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                }
            }
        }
    });
}

/// Serves HTTP/1.1 on one connection (plain or TLS) until it ends or shutdown cuts it.
async fn serve_io<S, F>(io: S, service: tower::util::ServiceFn<F>, watcher: Watcher)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    tower::util::ServiceFn<F>: tower::Service<
            http::Request<Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    <tower::util::ServiceFn<F> as tower::Service<http::Request<Incoming>>>::Future: Send + 'static,
{
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(true)
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}
