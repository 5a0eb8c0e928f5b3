//! Fleet-wide rate limits: GCRA in one Lua script, so that "1200 a minute per address" means
//! 1200 across the fleet, not 1200 per replica. The quota mirrors the local limiter's
//! (`governor`'s `Quota::per_minute(n).allow_burst(b)`): one request every period/rate, and at
//! most `burst` at once from rest.
//!
//! Keys are `{prefix}rl:{kind}:{digest}`: an address prefix or a subject reaches Redis only as
//! a keyed digest. Time is the server's unless a test passes it.

use std::num::NonZeroU32;
use std::sync::LazyLock;
use std::time::Duration;

use super::store::{FleetStore, StoreError};

static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/gcra.lua")));

/// A rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcraQuota {
    /// One request per `interval` in the long run.
    pub interval: Duration,
    /// Requests allowed at once after a quiet spell.
    pub burst: NonZeroU32,
}

impl GcraQuota {
    /// `rate` requests per `period`, `burst` at once.
    pub fn per_period(rate: NonZeroU32, period: Duration, burst: NonZeroU32) -> Self {
        Self {
            interval: period / rate.get(),
            burst,
        }
    }
}

/// What the limiter decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    Limited { retry_after: Duration },
}

/// What a limit counts: its kind is part of the key, its identity only as a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// An address prefix (IPv4 /24, IPv6 /64 by default).
    Network,
    /// A JWT subject within a profile.
    Subject,
}

impl LimitKind {
    fn label(self) -> &'static str {
        match self {
            Self::Network => "network",
            Self::Subject => "subject",
        }
    }
}

#[derive(Debug, Clone)]
pub struct FleetLimiter {
    store: FleetStore,
}

impl FleetLimiter {
    pub fn new(store: FleetStore) -> Self {
        Self { store }
    }

    /// The Redis key for `identity` (e.g. the text of an `IpNet`, or profile and subject).
    pub fn key(&self, kind: LimitKind, parts: &[&[u8]]) -> String {
        let digest = self.store.keyring().digest(kind.label(), parts);
        self.store.key(&format!("rl:{}:{digest}", kind.label()))
    }

    /// Counts one request against `key`.
    pub async fn check(&self, key: &str, quota: GcraQuota) -> Result<Decision, StoreError> {
        self.check_at(key, quota, None).await
    }

    /// [`Self::check`] at a given time in microseconds (tests), or the server's time (`None`).
    pub async fn check_at(
        &self,
        key: &str,
        quota: GcraQuota,
        now_us: Option<u64>,
    ) -> Result<Decision, StoreError> {
        let answer = self.reconcile_at(key, quota, 0, true, now_us).await?;
        Ok(answer.decision.unwrap_or(Decision::Allowed))
    }

    /// Charges `admitted` requests this replica already served on its own allowance and, when
    /// `ask`, asks for one more; the answer says how many more the fleet could take at once.
    pub async fn reconcile(
        &self,
        key: &str,
        quota: GcraQuota,
        admitted: u32,
        ask: bool,
    ) -> Result<Reconciled, StoreError> {
        self.reconcile_at(key, quota, admitted, ask, None).await
    }

    async fn reconcile_at(
        &self,
        key: &str,
        quota: GcraQuota,
        admitted: u32,
        ask: bool,
        now_us: Option<u64>,
    ) -> Result<Reconciled, StoreError> {
        let interval_us = u64::try_from(quota.interval.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let (allowed, retry_us, headroom): (i64, i64, i64) = self
            .store
            .script(
                SCRIPT
                    .key(key)
                    .arg(now_us.map(|us| us.to_string()).unwrap_or_default())
                    .arg(interval_us)
                    .arg(quota.burst.get())
                    .arg(admitted)
                    .arg(if ask { "1" } else { "0" }),
            )
            .await?;
        let decision = ask.then(|| {
            if allowed == 1 {
                Decision::Allowed
            } else {
                Decision::Limited {
                    retry_after: Duration::from_micros(u64::try_from(retry_us).unwrap_or(1).max(1)),
                }
            }
        });
        Ok(Reconciled {
            decision,
            headroom: u32::try_from(headroom.max(0)).unwrap_or(u32::MAX),
        })
    }
}

/// The fleet's answer to [`FleetLimiter::reconcile`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconciled {
    /// The decision on the one request asked for; `None` when only charging.
    pub decision: Option<Decision>,
    /// Requests the fleet could still take at once after this call.
    pub headroom: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quota_matches_the_local_limiter() {
        let quota = GcraQuota::per_period(
            NonZeroU32::new(1200).unwrap(),
            Duration::from_secs(60),
            NonZeroU32::new(20).unwrap(),
        );
        assert_eq!(quota.interval, Duration::from_millis(50));
        assert_eq!(quota.burst.get(), 20);
    }
}
