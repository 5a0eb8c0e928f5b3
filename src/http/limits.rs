//! Per-profile rate limits: per client address (an IPv6 caller's whole prefix, see
//! [`crate::network`]) and, for JWT callers, per exact (issuer, subject).
//!
//! The state lives in the app state (a `governor` keyed limiter each), not in tower's
//! `RateLimitLayer`, which is neither keyed nor shared across clones. Keys that have been quiet
//! long enough to be full again are dropped periodically, so a flood of distinct addresses
//! cannot grow memory without bound.
//!
//! In fleet mode ([`RateLimits::share`]) the same quota is counted across every replica by the
//! fleet store's GCRA script, keyed by a keyed digest of the profile and the address prefix or
//! caller, local-first ([`super::fleet_limits`]); when the store does not answer within its
//! command timeout, this replica's own limiter decides, as a single process would.

use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use ipnet::IpNet;
use tokio_util::sync::CancellationToken;

use super::fleet_limits::FleetLimits;
use crate::auth::subject::CallerId;
use crate::config::RateLimit;
use crate::fleet::limits::GcraQuota;
use crate::fleet::store::FleetStore;
use crate::metrics;
use crate::network::Grouping;

/// A keyed limiter hashing with foldhash (hashbrown's default, seeded per map) instead of
/// governor's SipHash: every request looks its address up, and a JWT caller its subject too;
/// SipHash spent ~135 instructions a lookup on a 16-byte key.
type KeyedLimiter<K> = RateLimiter<
    K,
    DashMapStateStore<K, foldhash::fast::RandomState>,
    DefaultClock,
    NoOpMiddleware<<DefaultClock as Clock>::Instant>,
>;

#[derive(Debug)]
pub struct RateLimits {
    by_ip: KeyedLimiter<IpNet>,
    by_subject: KeyedLimiter<CallerId>,
    clock: DefaultClock,
    grouping: Grouping,
    limit: RateLimit,
    /// Fleet mode: the fleet-wide count, which decides while the store answers.
    fleet: Option<Arc<FleetLimits>>,
}

impl RateLimits {
    /// Limits grouping addresses the default way (IPv6 by /64).
    pub fn new(limit: RateLimit) -> Self {
        Self::with_grouping(limit, Grouping::default())
    }

    pub fn with_grouping(limit: RateLimit, grouping: Grouping) -> Self {
        let quota = Quota::per_minute(limit.per_minute).allow_burst(limit.burst);
        let clock = DefaultClock::default();
        Self {
            by_ip: RateLimiter::dashmap_with_clock_and_hasher(quota, clock.clone(), <_>::default()),
            by_subject: RateLimiter::dashmap_with_clock_and_hasher(
                quota,
                clock.clone(),
                <_>::default(),
            ),
            clock,
            grouping,
            limit,
            fleet: None,
        }
    }

    /// Fleet mode: count this profile's limits across the fleet through `store`, which
    /// `fleet_size` replicas share (the size hint); batches of charges stop at `cancel`.
    pub fn share(
        &mut self,
        store: &FleetStore,
        profile: &str,
        fleet_size: u32,
        cancel: &CancellationToken,
    ) {
        let quota = GcraQuota::per_period(
            self.limit.per_minute,
            Duration::from_secs(60),
            self.limit.burst,
        );
        self.fleet = Some(FleetLimits::start(
            store, profile, quota, fleet_size, cancel,
        ));
    }

    /// Whether the limits are the fleet's: then [`Self::check_ip_shared`] and
    /// [`Self::check_subject_shared`] are the checks to make.
    pub fn is_shared(&self) -> bool {
        self.fleet.is_some()
    }

    /// [`Self::check_ip`] across the fleet; this replica's alone when the store does not answer.
    pub async fn check_ip_shared(&self, caller: IpNet) -> Result<(), Duration> {
        let decision = match &self.fleet {
            Some(fleet) => fleet.check_ip(caller).await,
            None => None,
        };
        decision.unwrap_or_else(|| self.fall_back(|| self.check_ip(caller)))
    }

    /// [`Self::check_subject`] across the fleet; this replica's alone when the store does not
    /// answer.
    pub async fn check_subject_shared(&self, caller: CallerId) -> Result<(), Duration> {
        let decision = match &self.fleet {
            Some(fleet) => fleet.check_subject(caller).await,
            None => None,
        };
        decision.unwrap_or_else(|| self.fall_back(|| self.check_subject(caller)))
    }

    /// The local decision when the fleet has none, counted as a fallback in fleet mode.
    fn fall_back(&self, local: impl FnOnce() -> Result<(), Duration>) -> Result<(), Duration> {
        if self.fleet.is_some() {
            metrics::record_fleet_fallback("rate_limit");
        }
        local()
    }

    /// How this profile groups addresses (for its rate limits, caches and new-token limit).
    pub fn grouping(&self) -> Grouping {
        self.grouping
    }

    /// `caller` is the address as [`crate::network::Grouping::caller`] groups it. `Err`
    /// carries how long the caller should wait.
    pub fn check_ip(&self, caller: IpNet) -> Result<(), Duration> {
        self.by_ip
            .check_key(&caller)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Subjects are keyed by the fixed-size digest of (issuer, subject), however long the
    /// `sub` claim is.
    pub fn check_subject(&self, caller: CallerId) -> Result<(), Duration> {
        self.by_subject
            .check_key(&caller)
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Forgets keys whose buckets are full again; run periodically.
    pub fn forget_idle(&self) {
        self.by_ip.retain_recent();
        self.by_ip.shrink_to_fit();
        self.by_subject.retain_recent();
        self.by_subject.shrink_to_fit();
        if let Some(fleet) = &self.fleet {
            fleet.forget_idle();
        }
    }

    /// Addresses and subjects currently tracked.
    pub fn tracked(&self) -> usize {
        let fleet = self.fleet.as_ref().map_or(0, |fleet| fleet.tracked());
        self.by_ip.len() + self.by_subject.len() + fleet
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::subject::caller_id;
    use std::net::IpAddr;
    use std::num::NonZeroU32;

    fn net(text: &str) -> IpNet {
        Grouping::default().caller(text.parse().unwrap())
    }

    fn limits(per_minute: u32, burst: u32) -> RateLimits {
        RateLimits::new(RateLimit {
            per_minute: NonZeroU32::new(per_minute).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
        })
    }

    #[test]
    fn exactly_the_burst_is_admitted_per_address() {
        let limits = limits(60, 5);
        let a = net("198.51.100.1");
        let b = net("198.51.100.2");
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
    fn an_ipv6_prefix_is_one_bucket() {
        let limits = limits(1, 1);
        let admitted = (1..=40u16)
            .filter(|i| {
                limits
                    .check_ip(net(&format!("2001:db8:1:2::{i:x}")))
                    .is_ok()
            })
            .count();
        assert_eq!(admitted, 1, "40 addresses of one /64");
        assert!(limits.check_ip(net("2001:db8:1:3::1")).is_ok(), "next /64");
    }

    #[test]
    fn subjects_have_their_own_buckets() {
        let limits = limits(60, 2);
        let alice = caller_id(Some("idp"), "alice");
        assert!(limits.check_subject(alice).is_ok());
        assert!(limits.check_subject(alice).is_ok());
        assert!(limits.check_subject(alice).is_err());
        assert!(limits.check_subject(caller_id(Some("idp"), "bob")).is_ok());
        assert!(
            limits
                .check_subject(caller_id(Some("other"), "alice"))
                .is_ok(),
            "same sub, other issuer"
        );
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let limits = limits(6_000_000, 1);
        for i in 0..1000u32 {
            let _ = limits.check_ip(IpNet::from(IpAddr::from(i.to_be_bytes())));
        }
        assert_eq!(limits.tracked(), 1000);
        // At 100 000 per second a bucket refills in 10 µs.
        std::thread::sleep(Duration::from_millis(5));
        limits.forget_idle();
        assert_eq!(limits.tracked(), 0);
    }
}
