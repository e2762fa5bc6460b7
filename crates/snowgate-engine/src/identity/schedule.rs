//! When to refresh, how long a cached token is good for, and how to back off.
//!
//! Pure functions of times and durations, so they are tested without a network or a sleep.
//! Access tokens are refreshed in the background at about 75 % of their lifetime, with jitter so
//! many brokers that signed in together do not hit the IdP together. A cached token is handed
//! out until shortly before it expires: 30 s before, or a tenth of its lifetime for short ones.
//! An unreachable IdP is retried with exponential backoff from 1 s up to 30 s.

use std::time::{Duration, SystemTime};

/// The share of a token's lifetime after which the background task refreshes it.
pub const REFRESH_AT: f64 = 0.75;
/// The jitter around [`REFRESH_AT`], as a share of the lifetime (plus or minus).
pub const REFRESH_JITTER: f64 = 0.05;
/// The most a cached token's remaining life may be before it counts as stale.
pub const MAX_STALE_MARGIN: Duration = Duration::from_secs(30);

/// When an access token was obtained and when it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifetime {
    /// When the broker received the token.
    pub issued_at: SystemTime,
    /// When the IdP said it stops working.
    pub expires_at: SystemTime,
}

impl Lifetime {
    /// A token received at `now` that lives `expires_in`.
    pub fn starting(now: SystemTime, expires_in: Duration) -> Lifetime {
        Lifetime {
            issued_at: now,
            expires_at: now + expires_in,
        }
    }

    /// The whole lifetime (zero for a token that came already expired).
    pub fn length(&self) -> Duration {
        self.expires_at
            .duration_since(self.issued_at)
            .unwrap_or(Duration::ZERO)
    }

    /// How long before expiry a cached token stops being handed out: a tenth of its lifetime,
    /// at most 30 s.
    pub fn stale_margin(&self) -> Duration {
        (self.length() / 10).min(MAX_STALE_MARGIN)
    }

    /// Whether the token may still be handed out as fresh at `now`.
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        now + self.stale_margin() < self.expires_at
    }

    /// Whether the token has not yet expired at `now` (it may still be used while the IdP is
    /// unreachable).
    pub fn is_unexpired(&self, now: SystemTime) -> bool {
        now < self.expires_at
    }

    /// When the background task should refresh it. `jitter` in `[-1, 1]` moves the time by up to
    /// [`REFRESH_JITTER`] of the lifetime either way; the result is never after the stale margin.
    pub fn refresh_at(&self, jitter: f64) -> SystemTime {
        let share = REFRESH_AT + REFRESH_JITTER * jitter.clamp(-1.0, 1.0);
        let at = self.issued_at + self.length().mul_f64(share);
        let latest = self
            .expires_at
            .checked_sub(self.stale_margin())
            .unwrap_or(self.issued_at);
        at.min(latest)
    }
}

/// Exponential backoff for retrying an unreachable IdP: 1 s, 2 s, 4 s ... capped at 30 s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The first delay.
    pub const BASE: Duration = Duration::from_secs(1);
    /// The longest delay.
    pub const CAP: Duration = Duration::from_secs(30);

    /// A backoff with no failures yet.
    pub fn new() -> Backoff {
        Backoff { failures: 0 }
    }

    /// Records a failure and returns how long to wait before the next attempt.
    pub fn fail(&mut self) -> Duration {
        let delay = Self::BASE
            .checked_mul(1u32 << self.failures.min(16))
            .unwrap_or(Self::CAP)
            .min(Self::CAP);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// How many failures in a row have been recorded.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn a_five_minute_token_is_refreshed_at_three_quarters_of_its_life() {
        let life = Lifetime::starting(t(0), Duration::from_secs(300));
        assert_eq!(life.refresh_at(0.0), t(225));
        assert_eq!(life.refresh_at(1.0), t(240));
        assert_eq!(life.refresh_at(-1.0), t(210));
        // Out-of-range jitter is clamped.
        assert_eq!(life.refresh_at(7.0), t(240));
    }

    #[test]
    fn a_cached_token_goes_stale_thirty_seconds_before_expiry_at_most() {
        let hour = Lifetime::starting(t(0), Duration::from_secs(3600));
        assert_eq!(hour.stale_margin(), Duration::from_secs(30));
        assert!(hour.is_fresh(t(3569)));
        assert!(!hour.is_fresh(t(3570)));
        assert!(hour.is_unexpired(t(3599)));
        assert!(!hour.is_unexpired(t(3600)));
    }

    #[test]
    fn a_short_token_goes_stale_at_ninety_percent_of_its_life() {
        let short = Lifetime::starting(t(0), Duration::from_secs(10));
        assert_eq!(short.stale_margin(), Duration::from_secs(1));
        assert!(short.is_fresh(t(8)));
        assert!(!short.is_fresh(t(9)));
        // Refresh is never scheduled after the token went stale.
        assert!(short.refresh_at(1.0) <= t(9));
    }

    #[test]
    fn an_already_expired_token_is_never_fresh_and_refreshes_at_once() {
        let dead = Lifetime {
            issued_at: t(10),
            expires_at: t(5),
        };
        assert_eq!(dead.length(), Duration::ZERO);
        assert!(!dead.is_fresh(t(10)));
        assert!(dead.refresh_at(0.5) <= t(10));
    }

    #[test]
    fn backoff_doubles_from_one_second_to_thirty() {
        let mut b = Backoff::new();
        let delays: Vec<u64> = (0..8).map(|_| b.fail().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(b.failures(), 8);
        for _ in 0..100 {
            assert_eq!(b.fail(), Backoff::CAP);
        }
    }
}
