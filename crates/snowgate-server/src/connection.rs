//! What one client connection may hold: a place under the replica's connection caps, and how
//! long it may keep that place without doing anything.
//!
//! [`ConnectionCaps`] admits a new connection only while the replica holds fewer than
//! `[server] max_connections` and its address fewer than `max_connections_per_address`; a
//! connection over either cap is closed as it arrives, so the ones already open go on being
//! served. Its [`Admitted`] place is given back when the connection ends.
//!
//! [`Deadlines`] closes a connection that holds on without sending a request. A connection is
//! always in one of three phases: waiting for a request (closed after `idle_timeout`), reading
//! a request's headers (closed `header_read_timeout` after their first byte), or busy with
//! requests (closed when no byte has moved either way for `idle_timeout`: a stalled upload or
//! a client that stopped reading; the event stream's keep-alives keep a healthy stream
//! moving). hyper's own `header_read_timeout` is not used: it starts when hyper starts waiting
//! for a request, so it would also close kept-alive connections after the header timeout, and
//! clients reuse their pooled connections for longer than that.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The replica's connection caps: in total and per client address.
#[derive(Debug)]
pub struct ConnectionCaps {
    total: usize,
    per_address: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverCap {
    /// The replica holds `max_connections`.
    Total,
    /// The address holds `max_connections_per_address`.
    Address,
}

/// A connection's place under the caps; given back when dropped.
#[derive(Debug)]
pub struct Admitted {
    caps: Arc<ConnectionCaps>,
    address: IpAddr,
}

impl ConnectionCaps {
    /// Caps of `total` open connections, `per_address` of them from one address.
    pub fn new(total: usize, per_address: usize) -> Arc<ConnectionCaps> {
        Arc::new(ConnectionCaps {
            total,
            per_address,
            open: Mutex::new(Open::default()),
        })
    }

    /// A place for a connection from `address`, if both caps allow one more.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Admitted, OverCap> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if open.total >= self.total {
            return Err(OverCap::Total);
        }
        let mine = open.by_address.entry(address).or_insert(0);
        if *mine >= self.per_address {
            return Err(OverCap::Address);
        }
        *mine += 1;
        open.total += 1;
        Ok(Admitted {
            caps: self.clone(),
            address,
        })
    }

    /// How many connections are open.
    pub fn open(&self) -> usize {
        self.open.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(|p| p.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(n) = open.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                open.by_address.remove(&self.address);
            }
        }
    }
}

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// No byte of the next request yet, since then.
    Waiting(Instant),
    /// The first byte of a request's headers came then.
    Headers(Instant),
    /// This many requests are being answered.
    Busy(usize),
}

#[derive(Debug)]
struct State {
    phase: Phase,
    /// When a byte last moved either way.
    last_io: Instant,
}

/// One connection's deadlines, shared by its I/O ([`Timed`]), its requests ([`Deadlines::begin`])
/// and the watch that closes it ([`Deadlines::expired`]).
#[derive(Debug)]
pub struct Deadlines {
    header_read: Duration,
    idle: Duration,
    state: Mutex<State>,
    changed: Notify,
}

impl Deadlines {
    /// Deadlines for a connection that has just been accepted.
    pub fn new(header_read: Duration, idle: Duration) -> Arc<Deadlines> {
        let now = Instant::now();
        Arc::new(Deadlines {
            header_read,
            idle,
            state: Mutex::new(State {
                phase: Phase::Waiting(now),
                last_io: now,
            }),
            changed: Notify::new(),
        })
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let r = f(&mut self.state.lock().unwrap_or_else(|p| p.into_inner()));
        self.changed.notify_one();
        r
    }

    fn moved(&self, read: bool) {
        self.with(|s| {
            let now = Instant::now();
            s.last_io = now;
            if read {
                if let Phase::Waiting(_) = s.phase {
                    s.phase = Phase::Headers(now);
                }
            }
        });
    }

    /// A request's headers have been read; it is being answered until the returned guard
    /// (kept with the response body) is dropped.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.with(|s| {
            s.phase = match s.phase {
                Phase::Busy(n) => Phase::Busy(n + 1),
                _ => Phase::Busy(1),
            };
            s.last_io = Instant::now();
        });
        InFlight(self.clone())
    }

    fn deadline(&self) -> (Instant, &'static str) {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.phase {
            Phase::Waiting(since) => (since + self.idle, "no request came"),
            Phase::Headers(since) => (
                since + self.header_read,
                "the request's headers did not arrive in time",
            ),
            Phase::Busy(_) => (s.last_io + self.idle, "the request stalled"),
        }
    }

    /// Resolves when the connection has passed its deadline, with the reason.
    pub async fn expired(&self) -> &'static str {
        loop {
            let changed = self.changed.notified();
            let (at, why) = self.deadline();
            if Instant::now() >= at {
                return why;
            }
            tokio::select! {
                _ = tokio::time::sleep_until(at) => {}
                _ = changed => {}
            }
        }
    }
}

/// A request being answered; when dropped (its response is written or abandoned), the
/// connection waits for the next one.
#[derive(Debug)]
pub struct InFlight(Arc<Deadlines>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.with(|s| {
            let now = Instant::now();
            s.phase = match s.phase {
                Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
                _ => Phase::Waiting(now),
            };
            s.last_io = now;
        });
    }
}

/// A connection's stream, telling its [`Deadlines`] when bytes move.
pub struct Timed<S> {
    inner: S,
    deadlines: Arc<Deadlines>,
}

impl<S> Timed<S> {
    pub fn new(inner: S, deadlines: Arc<Deadlines>) -> Timed<S> {
        Timed { inner, deadlines }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Timed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.deadlines.moved(true);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Timed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.deadlines.moved(false);
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.deadlines.moved(false);
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_caps_count_in_total_and_per_address_and_give_places_back() {
        let caps = ConnectionCaps::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = caps.admit(a).unwrap();
        let _a2 = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).unwrap_err(), OverCap::Address);
        let _b1 = caps.admit(b).unwrap();
        assert_eq!(caps.admit(b).unwrap_err(), OverCap::Total);
        drop(a1);
        assert_eq!(caps.open(), 2);
        let _b2 = caps.admit(b).unwrap();
        assert_eq!(caps.admit(b).unwrap_err(), OverCap::Total);
    }

    /// The deadline `d` sets now, as (seconds from now, rounded up; the reason).
    fn due(d: &Deadlines) -> (u64, &'static str) {
        let (at, why) = d.deadline();
        let left = at.saturating_duration_since(Instant::now());
        ((left + Duration::from_millis(999)).as_secs(), why)
    }

    #[test]
    fn each_phase_has_its_deadline() {
        let d = Deadlines::new(Duration::from_secs(10), Duration::from_secs(60));
        assert_eq!(due(&d), (60, "no request came"));
        // Writing (a TLS alert, say) does not start a request.
        d.moved(false);
        assert_eq!(due(&d).1, "no request came");
        d.moved(true);
        assert_eq!(
            due(&d),
            (10, "the request's headers did not arrive in time")
        );
        // More of the headers do not move their deadline.
        d.moved(true);
        assert_eq!(due(&d).1, "the request's headers did not arrive in time");
        let first = d.begin();
        assert_eq!(due(&d), (60, "the request stalled"));
        let second = d.begin();
        drop(first);
        assert_eq!(due(&d).1, "the request stalled");
        drop(second);
        assert_eq!(due(&d), (60, "no request came"));
    }
}
