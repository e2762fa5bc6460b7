//! The listener: accepts loopback connections, learns who the peer is, and serves each
//! connection's HTTP/1.1 requests through the router.
//!
//! Each accepted socket gets `TCP_NODELAY` (without it Nagle's algorithm adds ~40 ms to every
//! small answer). The owner of the peer's socket is looked up once per connection, here, and
//! rides on every request as a [`Connection`] extension for [`crate::guard`] to check.
//! Connections are watched by hyper's graceful shutdown, which [`crate::Gateway::serve`] owns.
//! Each request's path is normalised ([`crate::path`]) before the router sees it.

use std::net::SocketAddr;
use std::time::Duration;

use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::Watcher;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tower::ServiceExt;

use crate::peer;
use crate::shutdown::Shutdown;
use crate::state::Connection;

/// How long a tool may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// An accepted connection on its way to being served.
pub(crate) type Accepted = (TcpStream, SocketAddr);

/// Accepts connections on one listener until shutdown and hands them on.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    accepted: mpsc::Sender<Accepted>,
    mut shutdown: Shutdown,
) {
    loop {
        let next = tokio::select! {
            _ = shutdown.recv() => return,
            next = listener.accept() => next,
        };
        match next {
            Ok(a) => {
                if accepted.send(a).await.is_err() {
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

/// Serves one connection on its own task.
pub(crate) fn spawn_connection((stream, peer): Accepted, router: Router, watcher: Watcher) {
    tokio::spawn(async move {
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
            let router = router.clone();
            async move {
                if let Err(refused) = crate::router::normalize_path(&mut req) {
                    return Ok(refused.into_response());
                }
                router.oneshot(req).await
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT);
        let connection =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        if let Err(e) = watcher.watch(connection).await {
            tracing::debug!(error = %e, "connection ended with an error");
        }
    });
}
