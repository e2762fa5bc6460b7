//! What the server does with connections that hold on without sending a request: half-sent
//! request headers and idle connections are closed at their deadlines, and connections over
//! the total or per-address caps are closed at once, while every other caller is still
//! answered. Run against the real server (TLS, the rig's IdP and PostgreSQL), with real
//! sockets and TLS handshakes.

mod support;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

/// A TLS client that trusts the rig's CA.
fn connector(rig: &Rig) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&rig.ca.ca_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

fn server_addr(server: &Replica) -> SocketAddr {
    server.server.as_ref().unwrap().local_addr()
}

/// A TCP connection to `to` from the loopback address `from` (127.0.0.1, 127.0.0.2, ...).
async fn tcp_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(from), 0))?;
    socket.connect(to).await
}

/// A TLS connection from `from`, handshake done, nothing sent yet.
async fn tls_from(
    tls: &TlsConnector,
    from: Ipv4Addr,
    to: SocketAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = tcp_from(from, to).await?;
    let name = ServerName::try_from("127.0.0.1").unwrap();
    tokio::time::timeout(Duration::from_secs(10), tls.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("TLS handshake timed out"))?
}

/// Waits until the server closes `conn` (EOF or an error), for at most `limit`. Returns how
/// long that took, or `None` if it was still open.
async fn closed_within<S>(mut conn: S, limit: Duration) -> Option<Duration>
where
    S: tokio::io::AsyncRead + Unpin,
{
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    let read = async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .ok()
        .map(|_| start.elapsed())
}

/// Whether a new connection from `from` is served: it completes a TLS handshake and gets an
/// answer to `GET /healthz`.
async fn served(tls: &TlsConnector, from: Ipv4Addr, to: SocketAddr) -> bool {
    let attempt = async {
        let mut conn = tls_from(tls, from, to).await.ok()?;
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).await.ok();
        Some(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"))
    };
    tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_half_sent_headers_are_dropped_within_30_s_while_requests_are_answered() {
    let rig = Rig::start().await;
    let server = rig.replica().await;
    let addr = server_addr(&server);
    let tls = connector(&rig);

    let opened = Instant::now();
    let mut waits = Vec::new();
    for i in 0..300 {
        let mut conn = tls_from(&tls, Ipv4Addr::LOCALHOST, addr)
            .await
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        conn.write_all(b"GET /v1/roles HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthoriz")
            .await
            .unwrap();
        conn.flush().await.unwrap();
        waits.push(tokio::spawn(closed_within(conn, Duration::from_secs(35))));
    }
    println!("300 half-sent requests opened in {:?}", opened.elapsed());

    // Meanwhile the server answers, from a fresh connection each time.
    let mut answered = 0;
    let until = opened + Duration::from_secs(12);
    while Instant::now() < until {
        let fresh = rig.http(Some(Duration::from_secs(10)));
        let r = fresh
            .get(format!("{}/healthz", server.url))
            .send()
            .await
            .expect("a normal request is answered while the half-sent ones wait");
        assert_eq!(r.status(), StatusCode::OK);
        answered += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(answered > 5, "{answered}");

    let mut still_open = 0;
    for w in waits {
        match w.await.unwrap() {
            Some(_) => {}
            None => still_open += 1,
        }
    }
    let all_closed = opened.elapsed();
    println!("{answered} requests answered; {still_open} of 300 half-sent connections still open after {all_closed:?}");
    assert_eq!(
        still_open, 0,
        "half-sent requests are dropped within 30 s of being opened"
    );
    assert!(
        all_closed < Duration::from_secs(30),
        "all closed {all_closed:?} after the first was opened"
    );
    // And the server still serves.
    assert!(served(&tls, Ipv4Addr::LOCALHOST, addr).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_close_after_the_idle_timeout_and_half_headers_after_the_header_timeout() {
    let rig = Rig::start().await;
    let server = rig
        .replica_with(&Options {
            server_extra: "header_read_timeout = \"2s\"\nidle_timeout = \"16s\"\n".into(),
            ..Options::default()
        })
        .await;
    let addr = server_addr(&server);
    let tls = connector(&rig);

    let idle = tls_from(&tls, Ipv4Addr::LOCALHOST, addr).await.unwrap();
    let mut half = tls_from(&tls, Ipv4Addr::LOCALHOST, addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: 1")
        .await
        .unwrap();
    // A kept-alive connection after one answered request is idle, too.
    let mut kept = tls_from(&tls, Ipv4Addr::LOCALHOST, addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");

    let (idle, half, kept) = tokio::join!(
        closed_within(idle, Duration::from_secs(30)),
        closed_within(half, Duration::from_secs(30)),
        closed_within(kept, Duration::from_secs(30)),
    );
    println!("closed after: idle {idle:?}, half-sent header {half:?}, kept alive {kept:?}");
    let half = half.expect("the half-sent header is dropped");
    let idle = idle.expect("the idle connection is dropped");
    let kept = kept.expect("the idle kept-alive connection is dropped");
    assert!(
        half >= Duration::from_millis(1500) && half < Duration::from_secs(5),
        "{half:?}"
    );
    assert!(
        idle >= Duration::from_secs(15) && idle < Duration::from_secs(25),
        "{idle:?}"
    );
    assert!(
        kept >= Duration::from_secs(15) && kept < Duration::from_secs(25),
        "{kept:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_caps_are_closed_at_once_and_the_server_recovers() {
    let rig = Rig::start().await;
    let server = rig
        .replica_with(&Options {
            server_extra: "max_connections = 6\nmax_connections_per_address = 4\n".into(),
            ..Options::default()
        })
        .await;
    let addr = server_addr(&server);
    let tls = connector(&rig);
    let one = Ipv4Addr::new(127, 0, 0, 1);
    let two = Ipv4Addr::new(127, 0, 0, 2);

    // Four from one address fill its share.
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tls_from(&tls, one, addr).await.expect("under the cap"));
    }
    let over = tcp_from(one, addr).await.expect("the kernel accepts");
    let t = closed_within(over, Duration::from_secs(5)).await;
    println!("a fifth connection from 127.0.0.1 was closed after {t:?}");
    assert!(t.is_some(), "a fifth connection from one address is closed");
    assert!(!served(&tls, one, addr).await, "nor is it served");

    // Another address still gets in, until the server's total is reached.
    for _ in 0..2 {
        held.push(tls_from(&tls, two, addr).await.expect("under the total"));
    }
    let over = tcp_from(two, addr).await.expect("the kernel accepts");
    let t = closed_within(over, Duration::from_secs(5)).await;
    println!("a seventh connection in all was closed after {t:?}");
    assert!(t.is_some(), "a connection over the total is closed");

    // Those held are still served.
    let mut first = held.pop().unwrap();
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let mut status = [0u8; 12];
    first.read_exact(&mut status).await.unwrap();
    assert_eq!(&status, b"HTTP/1.1 200");
    held.push(first);

    // Once they close, everyone gets in again.
    drop(held);
    eventually(Duration::from_secs(10), "the caps free up", || {
        let tls = tls.clone();
        async move { served(&tls, one, addr).await }
    })
    .await;
    assert!(served(&tls, two, addr).await);
    let fresh = rig.http(Some(Duration::from_secs(10)));
    let r = fresh
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}
