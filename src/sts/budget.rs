//! The process-wide budget for `AssumeRole` calls.
//!
//! Alibaba allows about 100 `AssumeRole` calls per second for a whole account, shared by every
//! application in it (PROTOCOL.md §1.7). Every call stsvend makes goes through this one budget
//! (default 20) so stsvend can never spend the account's quota. The budget is a sliding window:
//! no one-second stretch ever holds more than the budget's calls, with a tenth of a second to
//! spare for network jitter. (A token bucket with a burst
//! of N would let nearly 2N through in the second after a quiet spell.) A `Throttling.*` answer
//! doubles the cost of each call (up to four times) for half a minute: the budget shrinks while
//! STS says the account is busy.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// One second, plus a tenth for the spread in network latency between us and STS: calls we
/// grant a second apart must still arrive at STS more than a second apart.
const WINDOW: Duration = Duration::from_millis(1100);
/// How long the budget stays shrunk after a `Throttling.*` answer.
const PENALTY: Duration = Duration::from_secs(30);
const MAX_PENALTY_FACTOR: usize = 4;

#[derive(Debug)]
pub struct StsBudget {
    per_second: usize,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// When each call of the last second was granted; a penalised call takes several slots.
    granted: VecDeque<Instant>,
    factor: usize,
    penalty_until: Option<Instant>,
}

impl StsBudget {
    pub fn new(per_second: NonZeroU32) -> Self {
        let per_second = usize::try_from(per_second.get()).unwrap_or(usize::MAX);
        Self {
            per_second,
            state: Mutex::new(State {
                granted: VecDeque::with_capacity(per_second),
                factor: 1,
                penalty_until: None,
            }),
        }
    }

    /// Takes one call's worth, waiting at most `max_wait`. `Err` carries when to try again.
    pub async fn acquire(&self, max_wait: Duration) -> Result<(), Duration> {
        let deadline = Instant::now() + max_wait;
        loop {
            let now = Instant::now();
            let wait = match self.try_take(now) {
                Ok(()) => return Ok(()),
                Err(wait) => wait,
            };
            if now + wait > deadline {
                return Err(wait.max(Duration::from_secs(1)));
            }
            tokio::time::sleep(wait).await;
        }
    }

    /// Grants a call at `now` if the last second has room for it; otherwise says how long until
    /// it will.
    fn try_take(&self, now: Instant) -> Result<(), Duration> {
        let mut state = self.lock();
        while state
            .granted
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            state.granted.pop_front();
        }
        if state.penalty_until.is_some_and(|until| until <= now) {
            state.factor = 1;
            state.penalty_until = None;
        }
        let cost = state.factor.min(self.per_second);
        let used = state.granted.len();
        if used + cost <= self.per_second {
            state.granted.extend(std::iter::repeat_n(now, cost));
            return Ok(());
        }
        // Enough of the oldest grants must leave the window to make room for `cost` slots.
        let must_expire = used + cost - self.per_second;
        let frees_at = state.granted[must_expire - 1] + WINDOW;
        Err(frees_at
            .saturating_duration_since(now)
            .max(Duration::from_millis(1)))
    }

    /// STS answered `Throttling.*`: shrink the budget for a while.
    pub fn throttled(&self) {
        let now = Instant::now();
        let mut state = self.lock();
        let active = state.penalty_until.is_some_and(|until| until > now);
        state.factor = if active {
            (state.factor * 2).min(MAX_PENALTY_FACTOR)
        } else {
            2
        };
        state.penalty_until = Some(now + PENALTY);
        tracing::warn!(
            factor = state.factor,
            for_s = PENALTY.as_secs(),
            "STS is throttling: shrinking the AssumeRole budget"
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(n: u32) -> StsBudget {
        StsBudget::new(NonZeroU32::new(n).unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn no_second_ever_holds_more_than_the_budget() {
        let budget = budget(5);
        let mut granted = Vec::new();
        let start = Instant::now();
        // Ask 50 times as fast as we like over 3 s, each allowed to wait 100 ms.
        for _ in 0..50 {
            if budget.acquire(Duration::from_millis(100)).await.is_ok() {
                granted.push(Instant::now());
            }
            tokio::time::advance(Duration::from_millis(50)).await;
        }
        assert!(Instant::now() - start >= Duration::from_secs(2));
        for (i, t) in granted.iter().enumerate() {
            let in_window = granted[i..]
                .iter()
                .take_while(|u| **u - *t < WINDOW)
                .count();
            assert!(in_window <= 5, "{in_window} grants within a second");
        }
        assert!(
            granted.len() >= 10,
            "the budget is used, not starved: {}",
            granted.len()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_caller_learns_when_to_retry() {
        let budget = budget(5);
        for _ in 0..5 {
            assert!(budget.acquire(Duration::ZERO).await.is_ok());
        }
        let retry = budget.acquire(Duration::ZERO).await.unwrap_err();
        assert_eq!(retry, WINDOW);
        tokio::time::advance(Duration::from_millis(400)).await;
        assert!(
            budget.try_take(Instant::now()).unwrap_err() <= WINDOW - Duration::from_millis(400)
        );
        // Waiting for the slot is allowed when the caller may wait long enough.
        assert!(budget.acquire(Duration::from_secs(1)).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_doubles_the_cost_of_a_call_for_a_while() {
        let budget = budget(8);
        budget.throttled();
        let mut granted = 0;
        while budget.acquire(Duration::ZERO).await.is_ok() {
            granted += 1;
        }
        assert_eq!(granted, 4, "8 slots at 2 per call");
        budget.throttled();
        assert_eq!(budget.lock().factor, 4);
        tokio::time::advance(PENALTY + WINDOW).await;
        let mut granted = 0;
        while budget.acquire(Duration::ZERO).await.is_ok() {
            granted += 1;
        }
        assert_eq!(granted, 8, "the penalty wears off");
    }
}
