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
//! Listeners and connections run on [`Serving`]: a few threads, each with a runtime of its own
//! (tokio's current-thread flavour), started by [`crate::Gateway::serve`]; how many is
//! [`GatewayConfig::serving_threads`](crate::GatewayConfig::serving_threads). Each accepted
//! connection is moved to the thread serving the fewest, and stays there: its requests, the
//! audit records they wait for (one write to the ledger's journal each), the upstream
//! connection's task (each serving thread has its own pool of upstream connections,
//! [`crate::upstream`]) and the answers streaming back all run on that one thread, so a
//! statement costs no hand-off between threads: on a multi-threaded runtime every such hand-off
//! can wake a parked worker (a futex wake and a context switch each). Several tools'
//! connections use several cores. The engine's work (grants, sign-in, the journal's moves
//! into SQLite) stays on the broker's runtime.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
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

/// The period of each serving thread's anchor timer: shorter than [`HEADER_READ_TIMEOUT`], so
/// a header-read timer is never the earliest one its runtime has.
const TIMER_ANCHOR: Duration = Duration::from_secs(10);

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

/// The gateway's serving threads and their runtimes. Dropping it lets each thread finish the
/// tasks still running there (a record kept after an answer, at most [`SERVING_DRAIN`]) and
/// stop.
pub(crate) struct Serving {
    threads: Vec<ServingThread>,
}

struct ServingThread {
    handle: tokio::runtime::Handle,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Connections being served on this thread.
    connections: Arc<AtomicUsize>,
}

/// How long a serving thread waits, once told to stop, for its last tasks.
const SERVING_DRAIN: Duration = Duration::from_secs(5);

thread_local! {
    /// Which serving thread this is (its index in [`Serving`]), on a serving thread.
    static SERVING_INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The index of the serving thread the caller runs on, if it runs on one: each has its own
/// upstream connections.
pub(crate) fn serving_index() -> Option<usize> {
    SERVING_INDEX.with(Cell::get)
}

impl Serving {
    /// Starts `threads` serving threads (at least one).
    pub fn start(threads: usize) -> std::io::Result<Serving> {
        let threads = (0..threads.max(1))
            .map(ServingThread::start)
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Serving { threads })
    }

    /// The first serving thread's runtime, where the listeners are registered and accepted
    /// from.
    pub fn handle(&self) -> &tokio::runtime::Handle {
        &self.threads[0].handle
    }

    /// The thread serving the fewest connections (the first of those).
    fn least_busy(&self) -> &ServingThread {
        self.threads
            .iter()
            .min_by_key(|t| t.connections.load(Ordering::Relaxed))
            .expect("at least one serving thread")
    }
}

impl ServingThread {
    fn start(index: usize) -> std::io::Result<ServingThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let metrics = handle.clone();
        std::thread::Builder::new()
            .name(format!("snowgate-gw-{index}"))
            .spawn(move || {
                SERVING_INDEX.with(|i| i.set(Some(index)));
                runtime.block_on(async move {
                    // Until told to stop, a timer due within TIMER_ANCHOR is always pending.
                    // Without one, each request's header-read timer would be the runtime's
                    // earliest, and tokio wakes its own thread (an eventfd write and an extra
                    // turn of the event loop) to register it: one per request on a lone
                    // connection.
                    let mut anchor = tokio::time::interval(TIMER_ANCHOR);
                    tokio::pin!(stopped);
                    loop {
                        tokio::select! {
                            _ = &mut stopped => break,
                            _ = anchor.tick() => {}
                        }
                    }
                    let deadline = tokio::time::Instant::now() + SERVING_DRAIN;
                    while metrics.metrics().num_alive_tasks() > 0
                        && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                });
            })?;
        Ok(ServingThread {
            handle,
            stop: Some(stop),
            connections: Arc::new(AtomicUsize::new(0)),
        })
    }
}

impl Drop for ServingThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Counts a connection on its serving thread while it is served.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(count: &Arc<AtomicUsize>) -> Counted {
        count.fetch_add(1, Ordering::Relaxed);
        Counted(count.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves one connection on its own task, on the serving thread serving the fewest. The
/// stream moves from the runtime it was accepted on to that thread's.
pub(crate) fn spawn_connection(
    serving: &Serving,
    (stream, peer, tls): Accepted,
    routes: Routes,
    watcher: Watcher,
) {
    let thread = serving.least_busy();
    let counted = Counted::new(&thread.connections);
    let stream = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, %peer, "could not hand a connection to a serving thread");
            return;
        }
    };
    thread.handle.spawn(async move {
        let _counted = counted;
        let stream = match TcpStream::from_std(stream) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, %peer, "could not register a connection on its serving thread");
                return;
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_goes_to_the_thread_serving_the_fewest() {
        let serving = Serving::start(3).unwrap();
        let index = |s: &Serving| {
            let t = s.least_busy();
            s.threads.iter().position(|x| std::ptr::eq(x, t)).unwrap()
        };
        assert_eq!(index(&serving), 0, "all idle: the first");
        let a = Counted::new(&serving.threads[0].connections);
        assert_eq!(index(&serving), 1);
        let b = Counted::new(&serving.threads[1].connections);
        let _c = Counted::new(&serving.threads[2].connections);
        let _d = Counted::new(&serving.threads[0].connections);
        assert_eq!(index(&serving), 1, "1 and 2 serve one each, 0 two");
        drop(b);
        assert_eq!(
            index(&serving),
            1,
            "a connection that ends frees its thread"
        );
        drop(a);
        assert_eq!(serving.threads[0].connections.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn each_serving_thread_knows_its_index_and_others_have_none() {
        let serving = Serving::start(2).unwrap();
        assert_eq!(serving_index(), None);
        for (i, t) in serving.threads.iter().enumerate() {
            let (tx, rx) = std::sync::mpsc::channel();
            t.handle
                .spawn(async move { tx.send(serving_index()).unwrap() });
            assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), Some(i));
        }
        assert_eq!(Serving::start(0).unwrap().threads.len(), 1, "at least one");
    }
}
