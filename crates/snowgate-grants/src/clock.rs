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

    /// A clock stopped at the current system time.
    pub fn starting_now() -> ManualClock {
        ManualClock::new(SystemTime::now())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_sleepers_wake_when_time_passes_their_deadline() {
        let clock = std::sync::Arc::new(ManualClock::starting_now());
        let deadline = clock.now() + Duration::from_secs(60);
        let c = clock.clone();
        let sleeper = tokio::spawn(async move { c.sleep_until(deadline).await });
        tokio::task::yield_now().await;
        clock.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_secs(1));
        tokio::time::timeout(Duration::from_secs(1), sleeper)
            .await
            .expect("woke")
            .unwrap();
    }

    #[tokio::test]
    async fn a_past_deadline_completes_at_once() {
        let clock = ManualClock::starting_now();
        clock
            .sleep_until(clock.now() - Duration::from_secs(1))
            .await;
        SystemClock
            .sleep_until(SystemTime::now() - Duration::from_secs(1))
            .await;
    }
}
