//! The fleet-wide STS budget: `STSVEND_STS_BUDGET_PER_SECOND` shared by every replica, checked
//! and spent atomically by one Lua script, with the two lanes of [`crate::sts::budget`] (whose
//! module comment explains them): the service lane (base credentials, shared tokens) may use
//! the whole window; the caller lane never takes the reserve.
//!
//! Time is the Redis server's, so replicas with skewed clocks still share one window. Fair
//! queueing among waiting callers stays local (each replica's [`crate::sts::budget::StsBudget`]);
//! this module only says yes or "try again in …". When the store is down, the caller falls back
//! to a local share of the budget: [`local_share`].

use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use tokio::time::Instant;

use super::store::{FleetStore, StoreError};
use crate::sts::budget::{SharedAnswer, SharedBudget, SharedBudgetDown, StsBudget};

/// One second plus a tenth for network jitter, as in the local budget.
pub const WINDOW: Duration = Duration::from_millis(1100);
/// How long the budget stays shrunk after a `Throttling.*` answer.
pub const PENALTY: Duration = Duration::from_secs(30);
/// Without `STSVEND_FLEET_SIZE_HINT`, a replica cut off from the store assumes it is one of
/// this many (a quarter of the budget each), so that a whole fleet falling back at once stays
/// within the account's quota for fleets of up to four replicas.
pub const ASSUMED_FLEET_SIZE: u32 = 4;

static SCRIPT: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/budget.lua")));

/// Who asks for a call (the local budget's [`crate::sts::budget::Lane`] without its claimant).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetLane {
    /// Base credentials and shared per-profile tokens.
    Service,
    /// A token for one caller.
    Caller,
}

/// A replica's conservative share of `per_second` while the store is unreachable: the budget
/// divided by the fleet size hint (or [`ASSUMED_FLEET_SIZE`]), at least one call.
pub fn local_share(per_second: NonZeroU32, fleet_size_hint: Option<NonZeroU32>) -> NonZeroU32 {
    let replicas = fleet_size_hint.map_or(ASSUMED_FLEET_SIZE, NonZeroU32::get);
    NonZeroU32::new(per_second.get() / replicas).unwrap_or(NonZeroU32::MIN)
}

#[derive(Debug, Clone)]
pub struct FleetBudget {
    store: FleetStore,
    per_second: NonZeroU32,
    keys: [String; 3],
}

impl FleetBudget {
    pub fn new(store: FleetStore, per_second: NonZeroU32) -> Self {
        let keys =
            ["all", "caller", "penalty"].map(|k| store.slotted_key("budget", &format!(":{k}")));
        Self {
            store,
            per_second,
            keys,
        }
    }

    /// Runs the script once; see its header for the arguments.
    async fn run(
        &self,
        now_ms: Option<u64>,
        lane: &str,
        mode: &str,
        penalty_ms: u64,
    ) -> Result<(i64, i64), StoreError> {
        let mut invocation = SCRIPT.prepare_invoke();
        for key in &self.keys {
            invocation.key(key);
        }
        invocation
            .arg(now_ms.map(|ms| ms.to_string()).unwrap_or_default())
            .arg(self.per_second.get())
            .arg(lane)
            .arg(window_ms())
            .arg(self.store.unique())
            .arg(mode)
            .arg(penalty_ms);
        self.store.script(&invocation).await
    }

    /// One try at a call in `lane`: `Ok(Ok(()))` granted, `Ok(Err(retry))` refused with when to
    /// try again. `now_ms` replaces the server's clock (tests only pass it).
    pub async fn try_acquire_at(
        &self,
        lane: FleetLane,
        now_ms: Option<u64>,
    ) -> Result<Result<(), Duration>, StoreError> {
        let lane = match lane {
            FleetLane::Service => "service",
            FleetLane::Caller => "caller",
        };
        let (granted, retry_ms) = self.run(now_ms, lane, "ask", 0).await?;
        Ok(match granted {
            1 => Ok(()),
            _ => Err(Duration::from_millis(
                u64::try_from(retry_ms).unwrap_or(1).clamp(1, 60_000),
            )),
        })
    }

    /// Takes one call's worth in `lane`, waiting at most `max_wait` for room. `Ok(Err(retry))`
    /// when there was none in time; `Err` when the store cannot answer (fall back to the local
    /// share).
    pub async fn acquire(
        &self,
        lane: FleetLane,
        max_wait: Duration,
    ) -> Result<Result<(), Duration>, StoreError> {
        let deadline = Instant::now() + max_wait;
        loop {
            let retry = match self.try_acquire_at(lane, None).await? {
                Ok(()) => return Ok(Ok(())),
                Err(retry) => retry,
            };
            if Instant::now() + retry > deadline {
                return Ok(Err(retry));
            }
            // Replicas refused together should not all ask again at the same instant.
            let jitter = Duration::from_millis(rand::random::<u64>() % 20);
            tokio::time::sleep(retry + jitter).await;
        }
    }

    /// Records a `Throttling.*` answer: for [`PENALTY`], every call costs twice as many slots
    /// (up to four times) fleet-wide. Returns the new factor.
    pub async fn throttled_at(&self, now_ms: Option<u64>) -> Result<u32, StoreError> {
        let penalty_ms = u64::try_from(PENALTY.as_millis()).unwrap_or(u64::MAX);
        let (factor, _) = self.run(now_ms, "service", "throttled", penalty_ms).await?;
        Ok(u32::try_from(factor).unwrap_or(1))
    }
}

/// Fleet mode for `budget`: every call it grants must also be granted by the fleet's budget of
/// `per_second`; while the store cannot answer, [`local_share`] of it stands in.
pub fn share(
    budget: &StsBudget,
    store: &FleetStore,
    per_second: NonZeroU32,
    fleet_size_hint: Option<NonZeroU32>,
) {
    let share = local_share(per_second, fleet_size_hint);
    budget.share(Arc::new(FleetBudget::new(store.clone(), per_second)), share);
}

impl SharedBudget for FleetBudget {
    fn acquire(
        &self,
        caller: bool,
        max_wait: Duration,
    ) -> Pin<Box<dyn Future<Output = SharedAnswer> + Send + '_>> {
        let lane = if caller {
            FleetLane::Caller
        } else {
            FleetLane::Service
        };
        Box::pin(async move {
            // Known down (the health ping says when it is back): no command to wait out.
            if !self.store.is_up() {
                return Err(SharedBudgetDown);
            }
            // The inherent `acquire` (it takes a `FleetLane`): the script with its retries.
            Self::acquire(self, lane, max_wait).await.map_err(|error| {
                tracing::debug!(%error, "fleet budget: no answer; using the local share");
                SharedBudgetDown
            })
        })
    }

    fn throttled(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(async move {
            if let Err(error) = self.throttled_at(None).await {
                tracing::warn!(%error, "fleet budget: cannot record STS throttling for the fleet");
            }
        })
    }
}

fn window_ms() -> u64 {
    u64::try_from(WINDOW.as_millis()).unwrap_or(1100)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(value: u32) -> NonZeroU32 {
        NonZeroU32::new(value).unwrap()
    }

    #[test]
    fn the_local_share_is_conservative() {
        assert_eq!(local_share(n(20), Some(n(3))), n(6));
        assert_eq!(local_share(n(20), None), n(5));
        assert_eq!(local_share(n(2), Some(n(10))), n(1));
        assert_eq!(local_share(n(100), Some(n(1))), n(100));
    }
}
