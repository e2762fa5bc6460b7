//! A fault-injecting TCP proxy for the rig (Debian has no toxiproxy).
//!
//! [`FaultProxy`] listens on a free loopback port and forwards every connection to a target (the
//! IdP, the Snowflake front, PostgreSQL). A test switches it at run time, in process, between the
//! [`Fault`]s: pass, refuse new connections, hang (accept and never answer), answer a canned HTTP
//! status without forwarding, delay what the client sends, and cut the answer after N bytes.
//!
//! Each connection behaves as the fault it was accepted under. Switching the fault closes the
//! connections accepted under the previous one, so a client's pooled keep-alive connection meets
//! the new fault at its next request instead of slipping past it. A canned status over TLS needs
//! the proxy to end TLS itself: give it the rig's [`TestCa`] ([`FaultProxy::start_tls`]), and it
//! serves the CA's leaf for canned answers while passing other connections through untouched.
//!
//! [`Faketime`] moves a part's clocks instead: Debian's libfaketime, preloaded into the part's
//! process, reads an offset file on every clock call (`FAKETIME_NO_CACHE=1`), so a test can jump
//! the IdP's and the Snowflake front's clocks ahead at run time, as a laptop's suspend does to
//! everything but the sleeping machine.
//!
//! The file passes 600 lines only through its unit tests (each fault against a small HTTP
//! upstream), which stay beside the code they check.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio_rustls::rustls;

use crate::tls::TestCa;

/// Where Debian's `libfaketime` puts the library (`apt-get install libfaketime`).
pub const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// A clock offset file for libfaketime, changed at run time by [`Faketime::jump`].
pub struct Faketime {
    file: tempfile::NamedTempFile,
}

impl Faketime {
    /// A new offset file at `+0`: the parts' clocks run true until the first jump.
    pub fn new() -> Result<Faketime> {
        if !std::path::Path::new(LIBFAKETIME).exists() {
            anyhow::bail!("{LIBFAKETIME} is missing: apt-get install libfaketime (scripts/setup)");
        }
        let file = tempfile::Builder::new()
            .prefix("snowgate-faketime-")
            .tempfile()
            .context("creating the faketime offset file")?;
        std::fs::write(file.path(), "+0\n")?;
        Ok(Faketime { file })
    }

    /// The environment that makes a process's wall clock follow the offset file. The
    /// monotonic clock is left alone, as a real jump of the wall clock leaves it (libfaketime
    /// moves both by default, which fires every pending timer of a tokio runtime at once).
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
            ("LD_PRELOAD".into(), LIBFAKETIME.into()),
            (
                "FAKETIME_TIMESTAMP_FILE".into(),
                self.file.path().display().to_string(),
            ),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
        ]
    }

    /// Sets the offset from the true time, in whole seconds (negative: the past).
    pub fn jump(&self, offset_secs: i64) -> Result<()> {
        // Written whole and renamed over, so a reader never sees half a line.
        let tmp = self.file.path().with_extension("new");
        std::fs::write(&tmp, format!("{offset_secs:+}\n"))?;
        std::fs::rename(&tmp, self.file.path())?;
        Ok(())
    }
}

/// What the proxy does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Forward both ways, untouched.
    Pass,
    /// Refuse new connections: the port stops listening (clients get ECONNREFUSED).
    Refuse,
    /// Accept, read what the client sends, and never answer.
    Hang,
    /// Read one HTTP request and answer it with this status and a short plain-text body, without
    /// forwarding; then close.
    Status(u16),
    /// Forward, holding every chunk the client sends this long before it goes on.
    Delay(Duration),
    /// Forward, but close both sides once this many bytes of the answer reached the client.
    CutAfter(usize),
}

/// How many connections the proxy saw, by what it did with them.
#[derive(Debug, Default)]
struct Counters {
    accepted: AtomicU64,
    canned: AtomicU64,
}

/// A running proxy. Dropping it stops listening and closes every connection.
pub struct FaultProxy {
    addr: SocketAddr,
    mode: watch::Sender<(u64, Fault)>,
    counters: Arc<Counters>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on a free loopback port that forwards to `target`, in [`Fault::Pass`].
    pub async fn start(target: SocketAddr) -> Result<FaultProxy> {
        FaultProxy::launch(target, None).await
    }

    /// Like [`FaultProxy::start`] for a TLS target: canned statuses are answered over TLS with
    /// `ca`'s leaf (which clients of the rig trust); other faults pass TLS through untouched.
    pub async fn start_tls(target: SocketAddr, ca: &TestCa) -> Result<FaultProxy> {
        FaultProxy::launch(target, Some(tls_acceptor(ca)?)).await
    }

    async fn launch(
        target: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Result<FaultProxy> {
        let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let addr = listener.local_addr()?;
        let (mode, watch_rx) = watch::channel((0, Fault::Pass));
        let counters = Arc::new(Counters::default());
        let task = tokio::spawn(serve(
            listener,
            addr,
            target,
            tls,
            watch_rx,
            counters.clone(),
        ));
        Ok(FaultProxy {
            addr,
            mode,
            counters,
            task,
        })
    }

    /// Switches to `fault`. Connections accepted under the previous fault are closed.
    pub fn set(&self, fault: Fault) {
        self.mode.send_modify(|(generation, f)| {
            *generation += 1;
            *f = fault;
        });
    }

    /// The fault in force.
    pub fn fault(&self) -> Fault {
        self.mode.borrow().1
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the proxy listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Connections accepted so far (in any fault but [`Fault::Refuse`]).
    pub fn accepted(&self) -> u64 {
        self.counters.accepted.load(Ordering::SeqCst)
    }

    /// Requests answered with a canned status so far.
    pub fn canned_answers(&self) -> u64 {
        self.counters.canned.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        // A new generation ends every connection task.
        self.mode.send_modify(|(generation, _)| *generation += 1);
    }
}

fn bind(addr: SocketAddr) -> Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket
        .bind(addr)
        .with_context(|| format!("binding the fault proxy to {addr}"))?;
    Ok(socket.listen(128)?)
}

fn tls_acceptor(ca: &TestCa) -> Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&ca.cert_file)
        .with_context(|| format!("reading {}", ca.cert_file.display()))?
        .collect::<Result<Vec<_>, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&ca.key_file)
        .with_context(|| format!("reading {}", ca.key_file.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    target: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut mode: watch::Receiver<(u64, Fault)>,
    counters: Arc<Counters>,
) {
    let mut listener = Some(listener);
    loop {
        let (generation, fault) = *mode.borrow_and_update();
        if fault == Fault::Refuse {
            // Stop listening until the fault changes.
            listener = None;
            if mode.changed().await.is_err() {
                return;
            }
            continue;
        }
        let l = match &mut listener {
            Some(l) => l,
            None => loop {
                match bind(addr) {
                    Ok(l) => break listener.insert(l),
                    // The old socket may linger a moment; the port is still ours.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                }
            },
        };
        tokio::select! {
            accepted = l.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let _ = client.set_nodelay(true);
                counters.accepted.fetch_add(1, Ordering::SeqCst);
                let mut watch = mode.clone();
                let tls = tls.clone();
                let counters = counters.clone();
                tokio::spawn(async move {
                    let work = handle(client, target, fault, tls, counters);
                    tokio::select! {
                        _ = work => {}
                        _ = until_switched(&mut watch, generation) => {}
                    }
                });
            }
            changed = mode.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}

/// Returns once the fault is switched away from `generation` (or the proxy is gone).
async fn until_switched(watch: &mut watch::Receiver<(u64, Fault)>, generation: u64) {
    loop {
        if watch.borrow_and_update().0 != generation {
            return;
        }
        if watch.changed().await.is_err() {
            return;
        }
    }
}

async fn handle(
    mut client: TcpStream,
    target: SocketAddr,
    fault: Fault,
    tls: Option<tokio_rustls::TlsAcceptor>,
    counters: Arc<Counters>,
) {
    match fault {
        Fault::Refuse => {}
        Fault::Hang => {
            let mut sink = [0u8; 4096];
            while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {}
            // The client closed its side: hold ours open until the fault changes.
            std::future::pending::<()>().await;
        }
        Fault::Status(status) => {
            let answered = match tls {
                Some(acceptor) => match acceptor.accept(client).await {
                    Ok(mut stream) => canned(&mut stream, status).await,
                    Err(_) => false,
                },
                None => canned(&mut client, status).await,
            };
            if answered {
                counters.canned.fetch_add(1, Ordering::SeqCst);
            }
        }
        Fault::Pass | Fault::Delay(_) | Fault::CutAfter(_) => {
            let Ok(upstream) = TcpStream::connect(target).await else {
                return;
            };
            let _ = upstream.set_nodelay(true);
            forward(client, upstream, fault).await;
        }
    }
}

/// Reads one HTTP/1 request (head and a `Content-Length` body) and answers it with `status`.
/// Returns whether the answer was written.
async fn canned<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, status: u16) -> bool {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 64 * 1024 {
            return false;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let body_len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut have = buf.len() - head_end;
    while have < body_len {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => have += n,
        }
    }
    let reason = match status {
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Fault",
    };
    let body = format!("{status} {reason} (rig fault proxy)\n");
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    if stream.write_all(answer.as_bytes()).await.is_err() {
        return false;
    }
    let _ = stream.flush().await;
    let _ = stream.shutdown().await;
    true
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Copies client → upstream and upstream → client, applying a delay or a cut.
async fn forward(client: TcpStream, upstream: TcpStream, fault: Fault) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut up_read, mut up_write) = upstream.into_split();
    let delay = match fault {
        Fault::Delay(d) => d,
        _ => Duration::ZERO,
    };
    let limit = match fault {
        Fault::CutAfter(n) => Some(n),
        _ => None,
    };
    let requests = async {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match client_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if up_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = up_write.shutdown().await;
    };
    let answers = async {
        let mut buf = vec![0u8; 16 * 1024];
        let mut sent = 0usize;
        loop {
            let n = match up_read.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let n = match limit {
                Some(limit) => n.min(limit - sent),
                None => n,
            };
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
            sent += n;
            if limit == Some(sent) {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    // A cut ends the whole connection as soon as the answer is cut.
    if limit.is_some() {
        tokio::pin!(answers);
        tokio::select! {
            _ = requests => (&mut answers).await,
            _ = &mut answers => {}
        }
    } else {
        tokio::join!(requests, answers);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A tiny HTTP/1 upstream that answers every request with `body`, and counts requests.
    async fn upstream(body: &'static str) -> (SocketAddr, Arc<AtomicU64>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(AtomicU64::new(0));
        let count = seen.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let count = count.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        while find(&buf, b"\r\n\r\n").is_none() {
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        let end = find(&buf, b"\r\n\r\n").unwrap() + 4;
                        buf.drain(..end);
                        count.fetch_add(1, Ordering::SeqCst);
                        let answer = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                            body.len()
                        );
                        if s.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (addr, seen)
    }

    fn http() -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap()
    }

    fn url(proxy: &FaultProxy) -> String {
        format!("http://127.0.0.1:{}/x", proxy.port())
    }

    #[test]
    fn faketime_moves_a_child_process_clock_at_run_time() {
        if !std::path::Path::new(LIBFAKETIME).exists() {
            panic!("{LIBFAKETIME} is missing: run scripts/setup");
        }
        let clock = Faketime::new().unwrap();
        let date = |clock: &Faketime| -> i64 {
            let out = std::process::Command::new("date")
                .arg("+%s")
                .envs(clock.env())
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
        };
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64
        };
        assert!((date(&clock) - now()).abs() <= 2);
        clock.jump(7200).unwrap();
        assert!((date(&clock) - now() - 7200).abs() <= 2);
        clock.jump(-3600).unwrap();
        assert!((date(&clock) - now() + 3600).abs() <= 2);
    }

    #[tokio::test]
    async fn passes_requests_and_answers_through() {
        let (target, seen) = upstream("hello from upstream").await;
        let proxy = FaultProxy::start(target).await.unwrap();
        let text = http().get(url(&proxy)).send().await.unwrap();
        assert_eq!(text.text().await.unwrap(), "hello from upstream");
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        assert_eq!(proxy.accepted(), 1);
    }

    #[tokio::test]
    async fn refuse_closes_the_port_and_pass_opens_it_again() {
        let (target, _) = upstream("ok").await;
        let proxy = FaultProxy::start(target).await.unwrap();
        proxy.set(Fault::Refuse);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let err = TcpStream::connect(proxy.addr()).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
        proxy.set(Fault::Pass);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let resp = http().get(url(&proxy)).send().await.unwrap();
        assert_eq!(resp.text().await.unwrap(), "ok");
    }

    #[tokio::test]
    async fn hang_never_answers_and_forwards_nothing() {
        let (target, seen) = upstream("ok").await;
        let proxy = FaultProxy::start(target).await.unwrap();
        proxy.set(Fault::Hang);
        let client = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_millis(400))
            .build()
            .unwrap();
        let started = Instant::now();
        let err = client.get(url(&proxy)).send().await.unwrap_err();
        assert!(err.is_timeout(), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(400));
        assert_eq!(seen.load(Ordering::SeqCst), 0);
        assert_eq!(proxy.accepted(), 1);
    }

    #[tokio::test]
    async fn switching_the_fault_closes_a_hanging_connection() {
        let (target, _) = upstream("ok").await;
        let proxy = FaultProxy::start(target).await.unwrap();
        proxy.set(Fault::Hang);
        let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        proxy.set(Fault::Pass);
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(2), conn.read_to_end(&mut rest)).await;
        assert!(matches!(read, Ok(Ok(0))), "{read:?} {rest:?}");
    }

    #[tokio::test]
    async fn status_answers_without_forwarding() {
        let (target, seen) = upstream("ok").await;
        let proxy = FaultProxy::start(target).await.unwrap();
        proxy.set(Fault::Status(503));
        let resp = http()
            .post(url(&proxy))
            .body("x".repeat(100_000))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 503);
        assert!(resp.text().await.unwrap().contains("Service Unavailable"));
        assert_eq!(seen.load(Ordering::SeqCst), 0);
        assert_eq!(proxy.canned_answers(), 1);
    }

    #[tokio::test]
    async fn status_over_tls_uses_the_rig_leaf() {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::generate(dir.path()).unwrap();
        let (target, _) = upstream("ok").await;
        let proxy = FaultProxy::start_tls(target, &ca).await.unwrap();
        proxy.set(Fault::Status(500));
        let client = reqwest::Client::builder()
            .no_proxy()
            .add_root_certificate(ca.reqwest_root().unwrap())
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap();
        let resp = client
            .get(format!("https://127.0.0.1:{}/token", proxy.port()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 500);
    }

    #[tokio::test]
    async fn delay_holds_each_request() {
        let (target, _) = upstream("ok").await;
        let proxy = FaultProxy::start(target).await.unwrap();
        proxy.set(Fault::Delay(Duration::from_millis(300)));
        let started = Instant::now();
        let resp = http().get(url(&proxy)).send().await.unwrap();
        assert_eq!(resp.text().await.unwrap(), "ok");
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn cut_after_closes_mid_answer() {
        let (target, _) = upstream("0123456789abcdefghij").await;
        let proxy = FaultProxy::start(target).await.unwrap();
        proxy.set(Fault::CutAfter(40));
        let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(2), conn.read_to_end(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.len(), 40, "{}", String::from_utf8_lossy(&got));
        assert!(got.starts_with(b"HTTP/1.1 200 OK"));
        let failed = match http().get(url(&proxy)).send().await {
            Err(_) => true,
            Ok(resp) => resp.text().await.is_err(),
        };
        assert!(failed, "a cut answer must fail at the client");
    }
}
