//! Where grants get the time.
//!
//! Every decision that depends on time (a request timing out, a grant expiring, the warning ten
//! minutes before) reads the wall clock through [`Clock`], so tests move time with a
//! [`ManualClock`] instead of sleeping. The clock is wall time (`SystemTime`) because expiry
//! times are shown to people and stored across restarts, where a monotonic clock means nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

/// A future returned by [`Clock::sleep_until`].
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// Completes once [`Clock::now`] has reached `deadline` (at once if it already has).
    fn sleep_until(&self, deadline: SystemTime) -> Sleep<'_>;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// The longest single timer the system clock arms, so a wall clock that jumps (suspend, NTP)
/// is noticed within this long. Shorter timers fire at their deadline, not on this period.
const MAX_TIMER: Duration = Duration::from_secs(30);

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep_until(&self, deadline: SystemTime) -> Sleep<'_> {
        Box::pin(async move {
            loop {
                let Ok(left) = deadline.duration_since(SystemTime::now()) else {
                    return;
                };
                if left.is_zero() {
                    return;
                }
                tokio::time::sleep(left.min(MAX_TIMER)).await;
            }
        })
    }
}

/// A clock that moves only when told to, for tests. Sleepers wake when it passes their deadline.
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<SystemTime>,
    tick: watch::Sender<SystemTime>,
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: SystemTime) -> ManualClock {
        ManualClock {
            now: Mutex::new(start),
            tick: watch::channel(start).0,
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().expect("clock lock");
        *now += by;
        self.tick.send_replace(*now);
    }

    /// Sets the clock to `to` (it may go backwards, like a real wall clock).
    pub fn set(&self, to: SystemTime) {
        *self.now.lock().expect("clock lock") = to;
        self.tick.send_replace(to);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock().expect("clock lock")
    }

    fn sleep_until(&self, deadline: SystemTime) -> Sleep<'_> {
        let mut rx = self.tick.subscribe();
        Box::pin(async move {
            // The sender lives as long as `self`, which outlives this future.
            let _ = rx.wait_for(|now| *now >= deadline).await;
        })
    }
}
