//! Per-profile rate limits: per client IP and, for JWT callers, per subject.
//!
//! The state lives in the app state (a `governor` keyed limiter each), not in tower's
//! `RateLimitLayer`, which is neither keyed nor shared across clones. Keys that have been quiet
//! long enough to be full again are dropped periodically, so a flood of distinct addresses
//! cannot grow memory without bound.

use std::net::IpAddr;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimit;

#[derive(Debug)]
pub struct RateLimits {
    by_ip: DefaultKeyedRateLimiter<IpAddr>,
    by_subject: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

impl RateLimits {
    pub fn new(limit: RateLimit) -> Self {
        let quota = Quota::per_minute(limit.per_minute).allow_burst(limit.burst);
        let clock = DefaultClock::default();
        Self {
            by_ip: RateLimiter::dashmap_with_clock(quota, clock.clone()),
            by_subject: RateLimiter::dashmap_with_clock(quota, clock.clone()),
            clock,
        }
    }

    /// `Err` carries how long the caller should wait.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), Duration> {
        self.by_ip
            .check_key(&ip)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Subjects are keyed by their session name, which is at most 32 bytes however long the
    /// `sub` claim is.
    pub fn check_subject(&self, session_name: &str) -> Result<(), Duration> {
        self.by_subject
            .check_key(&session_name.to_owned())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets keys whose buckets are full again; run periodically.
    pub fn forget_idle(&self) {
        self.by_ip.retain_recent();
        self.by_ip.shrink_to_fit();
        self.by_subject.retain_recent();
        self.by_subject.shrink_to_fit();
    }

    /// Addresses and subjects currently tracked.
    pub fn tracked(&self) -> usize {
        self.by_ip.len() + self.by_subject.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroU32;

    fn limits(per_minute: u32, burst: u32) -> RateLimits {
        RateLimits::new(RateLimit {
            per_minute: NonZeroU32::new(per_minute).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        })
    }

    #[test]
    fn exactly_the_burst_is_admitted_per_address() {
        let limits = limits(60, 5);
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let b: IpAddr = "198.51.100.2".parse().unwrap();
        let admitted = (0..20).filter(|_| limits.check_ip(a).is_ok()).count();
        assert_eq!(admitted, 5);
        let wait = limits.check_ip(a).unwrap_err();
        assert!(
            wait <= Duration::from_secs(1),
            "one cell per second at 60/min: {wait:?}"
        );
        assert!(
            limits.check_ip(b).is_ok(),
            "other addresses are not affected"
        );
    }

    #[test]
    fn subjects_have_their_own_buckets() {
        let limits = limits(60, 2);
        assert!(limits.check_subject("alice").is_ok());
        assert!(limits.check_subject("alice").is_ok());
        assert!(limits.check_subject("alice").is_err());
        assert!(limits.check_subject("bob").is_ok());
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let limits = limits(6_000_000, 1);
        for i in 0..1000u32 {
            let _ = limits.check_ip(IpAddr::from(i.to_be_bytes()));
        }
        assert_eq!(limits.tracked(), 1000);
        // At 100 000 per second a bucket refills in 10 µs.
        std::thread::sleep(Duration::from_millis(5));
        limits.forget_idle();
        assert_eq!(limits.tracked(), 0);
    }
}
