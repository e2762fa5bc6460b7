//! A per-person limit on grant operations: a token bucket for each subject.
//!
//! Each person may make `burst` operations at once and then `per_minute` a minute. A call
//! over the limit is refused with 429 and `Retry-After` (seconds until one more is allowed).
//! Buckets live in memory, per replica; behind a load balancer a person's effective limit is
//! the sum over the replicas they reach, which is fine for what this guards against (a stuck
//! client looping, not a determined attacker, who is stopped by authentication).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How many buckets are kept before the full ones are forgotten.
const PRUNE_AT: usize = 10_000;

/// Token buckets keyed by subject.
#[derive(Debug)]
pub struct RateLimiter {
    per_sec: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// `per_minute` operations a minute after a burst of `burst`.
    pub fn new(per_minute: u32, burst: u32) -> RateLimiter {
        RateLimiter {
            per_sec: f64::from(per_minute.max(1)) / 60.0,
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one operation from `key`'s bucket at `now`, or says how long until one is free.
    pub fn check_at(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= PRUNE_AT {
            let (per_sec, burst) = (self.per_sec, self.burst);
            buckets
                .retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * per_sec < burst);
        }
        let b = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.per_sec).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - b.tokens) / self.per_sec))
        }
    }

    /// [`RateLimiter::check_at`] now.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        self.check_at(key, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_rate_applies_per_person() {
        let l = RateLimiter::new(60, 3);
        let t = Instant::now();
        for _ in 0..3 {
            l.check_at("alice", t).unwrap();
        }
        let wait = l.check_at("alice", t).unwrap_err();
        assert!(
            wait <= Duration::from_secs(1) && wait > Duration::from_millis(900),
            "{wait:?}"
        );
        l.check_at("bob", t).unwrap();
        l.check_at("alice", t + Duration::from_secs(1)).unwrap();
        assert!(l.check_at("alice", t + Duration::from_secs(1)).is_err());
    }
}
