//! The process-wide budget for `AssumeRole` calls.
//!
//! Alibaba allows about 100 `AssumeRole` calls per second for a whole account, shared by every
//! application in it (PROTOCOL.md §1.7). Every call stsvend makes goes through this one limiter
//! (default 20 per second) so stsvend can never spend the account's quota. A `Throttling.*`
//! answer doubles the cost of each call (up to four times) for half a minute: the budget shrinks
//! while STS says the account is busy.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

/// How long the budget stays shrunk after a `Throttling.*` answer.
const PENALTY: Duration = Duration::from_secs(30);
const MAX_PENALTY_FACTOR: u32 = 4;

#[derive(Debug)]
pub struct StsBudget {
    limiter: DefaultDirectRateLimiter,
    clock: DefaultClock,
    penalty: Mutex<Penalty>,
}

#[derive(Debug, Clone, Copy)]
struct Penalty {
    factor: u32,
    until: Option<std::time::Instant>,
}

impl StsBudget {
    pub fn new(per_second: NonZeroU32) -> Self {
        // The burst allows a whole second's worth at once (and at least the largest penalty
        // factor, so a penalised call always fits).
        let burst = per_second.max(NonZeroU32::MIN.saturating_add(MAX_PENALTY_FACTOR - 1));
        let clock = DefaultClock::default();
        Self {
            limiter: RateLimiter::direct_with_clock(
                Quota::per_second(per_second).allow_burst(burst),
                clock.clone(),
            ),
            clock,
            penalty: Mutex::new(Penalty {
                factor: 1,
                until: None,
            }),
        }
    }

    /// Takes one call's worth, waiting at most `max_wait`. `Err` carries when to try again.
    pub async fn acquire(&self, max_wait: Duration) -> Result<(), Duration> {
        let deadline = tokio::time::Instant::now() + max_wait;
        loop {
            let cost = NonZeroU32::new(self.cost()).unwrap_or(NonZeroU32::MIN);
            let wait = match self.limiter.check_n(cost) {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(not_until)) => not_until.wait_time_from(self.clock.now()),
                // Cannot happen: the burst is at least the largest cost.
                Err(_) => Duration::from_secs(1),
            };
            let wake = tokio::time::Instant::now() + wait;
            if wake > deadline {
                return Err(wait.max(Duration::from_secs(1)));
            }
            tokio::time::sleep_until(wake).await;
        }
    }

    /// STS answered `Throttling.*`: shrink the budget for a while.
    pub fn throttled(&self) {
        let mut penalty = self
            .penalty
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let active = penalty
            .until
            .is_some_and(|until| until > std::time::Instant::now());
        penalty.factor = if active {
            (penalty.factor * 2).min(MAX_PENALTY_FACTOR)
        } else {
            2
        };
        penalty.until = Some(std::time::Instant::now() + PENALTY);
        tracing::warn!(
            factor = penalty.factor,
            for_s = PENALTY.as_secs(),
            "STS is throttling: shrinking the AssumeRole budget"
        );
    }

    fn cost(&self) -> u32 {
        let mut penalty = self
            .penalty
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match penalty.until {
            Some(until) if until > std::time::Instant::now() => penalty.factor,
            Some(_) => {
                *penalty = Penalty {
                    factor: 1,
                    until: None,
                };
                1
            }
            None => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_burst_is_granted_then_callers_are_refused_with_a_retry_time() {
        let budget = StsBudget::new(NonZeroU32::new(5).unwrap());
        for _ in 0..5 {
            assert!(budget.acquire(Duration::ZERO).await.is_ok());
        }
        let retry = budget.acquire(Duration::ZERO).await.unwrap_err();
        assert!(retry >= Duration::from_secs(1) - Duration::from_millis(1));
    }

    #[tokio::test]
    async fn a_caller_may_wait_for_the_next_slot() {
        let budget = StsBudget::new(NonZeroU32::new(10).unwrap());
        for _ in 0..10 {
            budget.acquire(Duration::ZERO).await.unwrap();
        }
        // The next slot comes within 100 ms at 10 per second.
        assert!(budget.acquire(Duration::from_millis(500)).await.is_ok());
    }

    #[tokio::test]
    async fn throttling_doubles_the_cost_of_a_call() {
        let budget = StsBudget::new(NonZeroU32::new(8).unwrap());
        budget.throttled();
        let mut granted = 0;
        while budget.acquire(Duration::ZERO).await.is_ok() {
            granted += 1;
        }
        assert_eq!(granted, 4, "8 cells at 2 per call");
        budget.throttled();
        assert_eq!(budget.cost(), 4);
    }
}
