//! The process-wide budget for `AssumeRole` calls, in two lanes.
//!
//! Alibaba allows about 100 `AssumeRole` calls per second for a whole account, shared by every
//! application in it (PROTOCOL.md §1.7). Every call stsvend makes goes through this one budget
//! (default 20) so stsvend can never spend the account's quota. The budget is a sliding window:
//! no one-second stretch ever holds more than the budget's calls, with a tenth of a second to
//! spare for network jitter. (A token bucket with a burst
//! of N would let nearly 2N through in the second after a quiet spell.) A `Throttling.*` answer
//! doubles the cost of each call (up to four times) for half a minute: the budget shrinks while
//! STS says the account is busy.
//!
//! Lanes, so that strangers cannot starve the service:
//! - the *service lane* (renewing the service's own base credentials, the shared per-profile
//!   tokens) may use the whole window;
//! - the *caller lane* (a token for one caller, [`Lane::Caller`]) may use the window minus a
//!   reserve of a fifth of the budget (times the throttling factor), which is therefore always
//!   free for the service lane.
//!
//! Callers that must wait queue, and each freed slot goes to the waiting caller whose profile,
//! wide network (IPv4 /16, IPv6 /48) and network (IPv4 /24, IPv6 /64) used the caller lane
//! least lately (a count that halves every ten seconds), ties to the longest waiting. A spray of
//! thousands of waiting requests from one network therefore cannot win the slots a newcomer
//! from elsewhere needs, whoever wakes first: the choice is [`State::pick`]'s, not a race. The
//! queue is bounded; when it is full a better-placed newcomer evicts the worst-placed waiter.
//!
//! In fleet mode the budget is shared by every replica ([`SharedBudget`], implemented by
//! `fleet::budget`): this budget still schedules (lanes, fair queue), and each call it grants
//! must then be granted by the shared one too. When the shared budget cannot answer, a local
//! budget of this replica's share stands in for it.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ipnet::IpNet;
use tokio::sync::oneshot;
use tokio::time::Instant;

/// One second, plus a tenth for the spread in network latency between us and STS: calls we
/// grant a second apart must still arrive at STS more than a second apart.
const WINDOW: Duration = Duration::from_millis(1100);
/// How long the budget stays shrunk after a `Throttling.*` answer.
const PENALTY: Duration = Duration::from_secs(30);
const MAX_PENALTY_FACTOR: usize = 4;
/// How fast a profile's or a network's recent use of the caller lane is forgotten.
const USAGE_HALF_LIFE: Duration = Duration::from_secs(10);
/// Usage entries kept before the forgotten ones are swept out (each grant adds three; at most
/// 100 grants a second, an entry is below the sweep threshold after about a minute).
const USAGE_SWEEP_AT: usize = 4096;
const USAGE_FORGOTTEN: f64 = 0.01;
/// Callers that may wait for the caller lane at once. Each waiter is one request in flight,
/// already bounded by the in-flight cap; this bounds the scheduler's own memory and work.
pub const MAX_WAITERS: usize = 4096;

/// Who asks for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The service's base credentials and the shared per-profile tokens.
    Service,
    /// A token for one caller.
    Caller(Claimant),
}

/// What the caller lane knows about a caller, to share slots fairly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Claimant {
    /// Any number that identifies the profile (a hash of its name).
    pub profile: u64,
    /// The caller's wide network (IPv4 /16, IPv6 /48): ordering only.
    pub wide: IpNet,
    /// The caller's network (IPv4 /24, IPv6 /64 by default).
    pub network: IpNet,
}

/// What a shared budget answers: `Ok(Ok(()))` granted, `Ok(Err(retry))` refused with when to
/// try again, `Err` when it cannot answer (its store is slow or gone).
pub type SharedAnswer = Result<Result<(), Duration>, SharedBudgetDown>;

/// A shared budget could not answer; the local share stands in for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the shared AssumeRole budget cannot answer")]
pub struct SharedBudgetDown;

/// A budget shared with other processes, asked after this one grants a call. Kept as a trait
/// here so that `sts` does not depend on the fleet store.
pub trait SharedBudget: Send + Sync + std::fmt::Debug {
    /// One call's worth, in the caller lane when `caller`, waiting at most `max_wait`.
    fn acquire(
        &self,
        caller: bool,
        max_wait: Duration,
    ) -> Pin<Box<dyn Future<Output = SharedAnswer> + Send + '_>>;

    /// STS answered `Throttling.*`: shrink the shared budget too.
    fn throttled(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

#[derive(Debug)]
struct Shared {
    budget: Arc<dyn SharedBudget>,
    /// This replica's share, spent while `budget` cannot answer.
    fallback: Arc<StsBudget>,
}

#[derive(Debug)]
pub struct StsBudget {
    /// Slots per window the caller lane leaves free (times the throttling factor).
    reserve: usize,
    state: Mutex<State>,
    /// Fleet mode: the budget every replica spends from.
    shared: OnceLock<Shared>,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    at: Instant,
    caller: bool,
}

#[derive(Debug)]
struct Waiter {
    claimant: Claimant,
    grant: oneshot::Sender<()>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum UsageKey {
    Profile(u64),
    Wide(IpNet),
    Network(IpNet),
}

/// A count that halves every [`USAGE_HALF_LIFE`].
#[derive(Debug, Clone, Copy)]
struct Usage {
    score: f64,
    at: Instant,
}

impl Usage {
    fn at(self, now: Instant) -> f64 {
        let halvings =
            now.saturating_duration_since(self.at).as_secs_f64() / USAGE_HALF_LIFE.as_secs_f64();
        self.score * 0.5_f64.powf(halvings)
    }
}

/// The budget's decisions; every method takes `now` and is free of I/O.
#[derive(Debug)]
struct State {
    per_second: usize,
    reserve: usize,
    /// The slots granted in the last window, oldest first; a penalised call takes several.
    granted: VecDeque<Slot>,
    /// How many of `granted` the caller lane holds.
    caller_slots: usize,
    factor: usize,
    penalty_until: Option<Instant>,
    waiters: HashMap<u64, Waiter>,
    next_seq: u64,
    /// Whether a task is granting slots to waiters.
    dispatching: bool,
    usage: HashMap<UsageKey, Usage>,
}

impl State {
    fn expire(&mut self, now: Instant) {
        while let Some(slot) = self.granted.front().copied() {
            if now.duration_since(slot.at) < WINDOW {
                break;
            }
            self.granted.pop_front();
            self.caller_slots -= usize::from(slot.caller);
        }
        if self.penalty_until.is_some_and(|until| until <= now) {
            self.factor = 1;
            self.penalty_until = None;
        }
    }

    fn cost(&self) -> usize {
        self.factor.min(self.per_second)
    }

    /// The most slots the caller lane may hold in a window right now.
    fn caller_cap(&self) -> usize {
        self.per_second.saturating_sub(self.reserve * self.factor)
    }

    fn has_room(&self, caller: bool) -> bool {
        let cost = self.cost();
        self.granted.len() + cost <= self.per_second
            && (!caller || self.caller_slots + cost <= self.caller_cap())
    }

    /// When the lane will have room, if nothing else is granted meanwhile.
    fn frees_at(&self, now: Instant, caller: bool) -> Instant {
        let cost = self.cost();
        if caller && cost > self.caller_cap() {
            // Throttled so hard that the reserve is all there is: callers wait it out.
            return self.penalty_until.unwrap_or(now + WINDOW);
        }
        let mut at = now;
        let used = self.granted.len();
        if used + cost > self.per_second {
            at = at.max(self.granted[used + cost - self.per_second - 1].at + WINDOW);
        }
        if caller && self.caller_slots + cost > self.caller_cap() {
            let must_expire = self.caller_slots + cost - self.caller_cap();
            if let Some(slot) = self
                .granted
                .iter()
                .filter(|s| s.caller)
                .nth(must_expire - 1)
            {
                at = at.max(slot.at + WINDOW);
            }
        }
        at
    }

    fn take(&mut self, now: Instant, claimant: Option<Claimant>) {
        let cost = self.cost();
        let caller = claimant.is_some();
        self.granted
            .extend(std::iter::repeat_n(Slot { at: now, caller }, cost));
        self.caller_slots += if caller { cost } else { 0 };
        let Some(claimant) = claimant else { return };
        for key in keys(claimant) {
            let usage = self.usage.entry(key).or_insert(Usage {
                score: 0.0,
                at: now,
            });
            *usage = Usage {
                score: usage.at(now) + 1.0,
                at: now,
            };
        }
        if self.usage.len() > USAGE_SWEEP_AT {
            self.usage
                .retain(|_, usage| usage.at(now) > USAGE_FORGOTTEN);
        }
    }

    /// Where `claimant` stands in the queue: lower goes first.
    fn rank(&self, now: Instant, claimant: Claimant, seq: u64) -> (f64, f64, f64, u64) {
        let [profile, wide, network] =
            keys(claimant).map(|key| self.usage.get(&key).map_or(0.0, |u| u.at(now)));
        (profile, wide, network, seq)
    }

    /// The waiter the next caller slot goes to.
    fn pick(&self, now: Instant) -> Option<u64> {
        self.waiters
            .iter()
            .map(|(seq, waiter)| self.rank(now, waiter.claimant, *seq))
            .min_by(cmp_rank)
            .map(|rank| rank.3)
    }

    /// The waiter a full queue gives up for a better-placed newcomer.
    fn worst(&self, now: Instant) -> Option<(u64, (f64, f64, f64, u64))> {
        self.waiters
            .iter()
            .map(|(seq, waiter)| (*seq, self.rank(now, waiter.claimant, *seq)))
            .max_by(|a, b| cmp_rank(&a.1, &b.1))
    }

    /// Grants free caller slots to the best-placed waiters.
    fn grant_waiting(&mut self, now: Instant) {
        while self.has_room(true) {
            let Some(seq) = self.pick(now) else { return };
            let Some(waiter) = self.waiters.remove(&seq) else {
                return;
            };
            // A waiter that gave up meanwhile does not spend the slot.
            if waiter.grant.send(()).is_ok() {
                self.take(now, Some(waiter.claimant));
            }
        }
    }
}

fn keys(claimant: Claimant) -> [UsageKey; 3] {
    [
        UsageKey::Profile(claimant.profile),
        UsageKey::Wide(claimant.wide),
        UsageKey::Network(claimant.network),
    ]
}

fn cmp_rank(a: &(f64, f64, f64, u64), b: &(f64, f64, f64, u64)) -> std::cmp::Ordering {
    a.0.total_cmp(&b.0)
        .then(a.1.total_cmp(&b.1))
        .then(a.2.total_cmp(&b.2))
        .then(a.3.cmp(&b.3))
}

impl StsBudget {
    pub fn new(per_second: NonZeroU32) -> Self {
        let per_second = usize::try_from(per_second.get()).unwrap_or(usize::MAX);
        // A fifth of the budget, at least one call; a budget of one has no room for a reserve.
        let reserve = if per_second >= 2 {
            per_second.div_ceil(5)
        } else {
            0
        };
        Self {
            reserve,
            state: Mutex::new(State {
                per_second,
                reserve,
                granted: VecDeque::with_capacity(per_second),
                caller_slots: 0,
                factor: 1,
                penalty_until: None,
                waiters: HashMap::new(),
                next_seq: 0,
                dispatching: false,
                usage: HashMap::new(),
            }),
            shared: OnceLock::new(),
        }
    }

    /// Fleet mode: from now on every call this budget grants must also be granted by `shared`;
    /// while `shared` cannot answer, a local budget of `local_share` calls a second stands in.
    /// A second call is ignored (one process has one fleet).
    pub fn share(&self, shared: Arc<dyn SharedBudget>, local_share: NonZeroU32) {
        let shared = Shared {
            budget: shared,
            fallback: Arc::new(Self::new(local_share)),
        };
        if self.shared.set(shared).is_err() {
            tracing::warn!("the AssumeRole budget is already shared; ignoring another fleet");
        }
    }

    /// The calls per window the caller lane leaves to the service lane (unthrottled).
    pub fn reserve(&self) -> usize {
        self.reserve
    }

    /// Takes one call's worth in `lane`, waiting at most `max_wait` (plus, in fleet mode, one
    /// bounded store command). `Err` carries when to try again.
    pub async fn acquire(self: &Arc<Self>, lane: Lane, max_wait: Duration) -> Result<(), Duration> {
        let Some(shared) = self.shared.get() else {
            return self.acquire_local(lane, max_wait).await;
        };
        let started = Instant::now();
        self.acquire_local(lane, max_wait).await?;
        let left = max_wait.saturating_sub(started.elapsed());
        match shared
            .budget
            .acquire(matches!(lane, Lane::Caller(_)), left)
            .await
        {
            Ok(answer) => answer.map_err(|retry| retry.max(Duration::from_secs(1))),
            Err(SharedBudgetDown) => {
                crate::metrics::record_fleet_fallback("budget");
                let left = max_wait.saturating_sub(started.elapsed());
                shared.fallback.acquire_local(lane, left).await
            }
        }
    }

    async fn acquire_local(
        self: &Arc<Self>,
        lane: Lane,
        max_wait: Duration,
    ) -> Result<(), Duration> {
        match lane {
            Lane::Service => self.acquire_service(max_wait).await,
            Lane::Caller(claimant) => self.acquire_caller(claimant, max_wait).await,
        }
    }

    /// The service lane is used by one task per profile and per base credential, never by a
    /// crowd, so it simply sleeps until its slot frees up.
    async fn acquire_service(&self, max_wait: Duration) -> Result<(), Duration> {
        let deadline = Instant::now() + max_wait;
        loop {
            let now = Instant::now();
            let wait = {
                let mut state = self.lock();
                state.expire(now);
                if state.has_room(false) {
                    state.take(now, None);
                    return Ok(());
                }
                state.frees_at(now, false).saturating_duration_since(now)
            };
            let wait = wait.max(Duration::from_millis(1));
            if now + wait > deadline {
                return Err(wait.max(Duration::from_secs(1)));
            }
            tokio::time::sleep(wait).await;
        }
    }

    async fn acquire_caller(
        self: &Arc<Self>,
        claimant: Claimant,
        max_wait: Duration,
    ) -> Result<(), Duration> {
        let refused = |state: &State, now: Instant| {
            state
                .frees_at(now, true)
                .saturating_duration_since(now)
                .max(Duration::from_secs(1))
        };
        let (seq, granted) = {
            let mut state = self.lock();
            let now = Instant::now();
            state.expire(now);
            if state.waiters.is_empty() && state.has_room(true) {
                state.take(now, Some(claimant));
                return Ok(());
            }
            if max_wait.is_zero() {
                return Err(refused(&state, now));
            }
            let seq = state.next_seq;
            state.next_seq += 1;
            if state.waiters.len() >= MAX_WAITERS {
                let mine = state.rank(now, claimant, seq);
                match state.worst(now) {
                    Some((worst, rank)) if cmp_rank(&mine, &rank).is_lt() => {
                        // Dropping its sender tells the evicted waiter at once.
                        state.waiters.remove(&worst);
                    }
                    _ => return Err(refused(&state, now)),
                }
            }
            let (grant, granted) = oneshot::channel();
            state.waiters.insert(seq, Waiter { claimant, grant });
            state.grant_waiting(now);
            if !state.dispatching && !state.waiters.is_empty() {
                state.dispatching = true;
                tokio::spawn(self.clone().dispatch());
            }
            (seq, granted)
        };
        let _leave = Leave { budget: self, seq };
        match tokio::time::timeout(max_wait, granted).await {
            Ok(Ok(())) => Ok(()),
            // Evicted, or timed out.
            Ok(Err(_)) | Err(_) => {
                let now = Instant::now();
                let state = self.lock();
                Err(refused(&state, now))
            }
        }
    }

    /// Grants caller slots to waiters as they free up, until nobody waits.
    async fn dispatch(self: Arc<Self>) {
        loop {
            let pause = {
                let mut state = self.lock();
                let now = Instant::now();
                state.expire(now);
                state.grant_waiting(now);
                if state.waiters.is_empty() {
                    state.dispatching = false;
                    return;
                }
                state.frees_at(now, true).saturating_duration_since(now)
            };
            tokio::time::sleep(pause.max(Duration::from_millis(1))).await;
        }
    }

    /// STS answered `Throttling.*`: shrink the budget for a while (in fleet mode the shared
    /// one and the local share too).
    pub fn throttled(&self) {
        let factor = self.penalise();
        tracing::warn!(
            factor,
            for_s = PENALTY.as_secs(),
            "STS is throttling: shrinking the AssumeRole budget"
        );
        if let Some(shared) = self.shared.get() {
            shared.fallback.penalise();
            let budget = shared.budget.clone();
            // Bounded by the store's command timeout; the caller need not wait for it.
            tokio::spawn(async move { budget.throttled().await });
        }
    }

    /// Doubles the cost of a call (up to four times) for [`PENALTY`]; returns the new factor.
    fn penalise(&self) -> usize {
        let now = Instant::now();
        let mut state = self.lock();
        let active = state.penalty_until.is_some_and(|until| until > now);
        state.factor = if active {
            (state.factor * 2).min(MAX_PENALTY_FACTOR)
        } else {
            2
        };
        state.penalty_until = Some(now + PENALTY);
        state.factor
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Takes a waiter out of the queue however its wait ends (granted, timed out, or the request
/// was dropped), so the queue only ever holds callers still waiting.
struct Leave<'a> {
    budget: &'a StsBudget,
    seq: u64,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.budget.lock().waiters.remove(&self.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(n: u32) -> Arc<StsBudget> {
        Arc::new(StsBudget::new(NonZeroU32::new(n).unwrap()))
    }

    fn claimant(profile: u64, ip: &str) -> Claimant {
        let grouping = crate::network::Grouping::default();
        let ip = ip.parse().unwrap();
        Claimant {
            profile,
            wide: grouping.wide(ip),
            network: grouping.network(ip),
        }
    }

    /// Keeps `n` callers from `spray(i)` waiting for the caller lane until `until`, each asking
    /// again as soon as it is granted or refused; returns how many were granted.
    fn flood(
        budget: &Arc<StsBudget>,
        n: usize,
        until: Instant,
        spray: impl Fn(usize) -> Claimant,
    ) -> Vec<tokio::task::JoinHandle<usize>> {
        (0..n)
            .map(|i| {
                let budget = budget.clone();
                let claimant = spray(i);
                tokio::spawn(async move {
                    let mut granted = 0;
                    while Instant::now() < until {
                        if budget
                            .acquire(Lane::Caller(claimant), Duration::from_secs(2))
                            .await
                            .is_ok()
                        {
                            granted += 1;
                        }
                    }
                    granted
                })
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn no_second_ever_holds_more_than_the_budget() {
        let budget = budget(5);
        let mut granted = Vec::new();
        let start = Instant::now();
        // Ask 50 times as fast as we like over 3 s, each allowed to wait 100 ms.
        for _ in 0..50 {
            if budget
                .acquire(Lane::Service, Duration::from_millis(100))
                .await
                .is_ok()
            {
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
            assert!(budget.acquire(Lane::Service, Duration::ZERO).await.is_ok());
        }
        let retry = budget
            .acquire(Lane::Service, Duration::ZERO)
            .await
            .unwrap_err();
        assert_eq!(retry, WINDOW);
        tokio::time::advance(Duration::from_millis(400)).await;
        let now = Instant::now();
        let frees_at = budget.lock().frees_at(now, false);
        assert!(frees_at - now <= WINDOW - Duration::from_millis(400));
        // Waiting for the slot is allowed when the caller may wait long enough.
        assert!(
            budget
                .acquire(Lane::Service, Duration::from_secs(1))
                .await
                .is_ok()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn throttling_doubles_the_cost_of_a_call_for_a_while() {
        let budget = budget(8);
        budget.throttled();
        let mut granted = 0;
        while budget.acquire(Lane::Service, Duration::ZERO).await.is_ok() {
            granted += 1;
        }
        assert_eq!(granted, 4, "8 slots at 2 per call");
        budget.throttled();
        assert_eq!(budget.lock().factor, 4);
        tokio::time::advance(PENALTY + WINDOW).await;
        let mut granted = 0;
        while budget.acquire(Lane::Service, Duration::ZERO).await.is_ok() {
            granted += 1;
        }
        assert_eq!(granted, 8, "the penalty wears off");
    }

    #[tokio::test(start_paused = true)]
    async fn callers_cannot_take_the_reserve_of_the_shared_tokens_and_base_credentials() {
        let budget = budget(20);
        assert_eq!(budget.reserve(), 4);
        let until = Instant::now() + Duration::from_secs(10);
        let flood = flood(&budget, 300, until, |i| {
            claimant(i as u64 % 3, &format!("10.{}.{}.1", i % 256, i / 256))
        });
        // Every half second while callers exhaust their lane, a renewal that may not wait at
        // all is still granted.
        let mut renewals = 0;
        while Instant::now() + Duration::from_millis(500) < until {
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(
                budget.acquire(Lane::Service, Duration::ZERO).await.is_ok(),
                "renewal refused at {:?}",
                until - Instant::now()
            );
            renewals += 1;
        }
        let callers: usize = futures_sum(flood).await;
        assert!(renewals >= 18, "{renewals}");
        // The caller lane was used to its cap (16 a window), not starved by the reserve.
        assert!(callers >= 16 * 8, "{callers} caller grants in 10 s");
        // Throttled, the reserve grows with the cost of a call.
        budget.throttled();
        assert_eq!(budget.lock().caller_cap(), 12);
    }

    async fn futures_sum(handles: Vec<tokio::task::JoinHandle<usize>>) -> usize {
        let mut sum = 0;
        for handle in handles {
            sum += handle.await.unwrap();
        }
        sum
    }

    /// The waiter for `claimant` that arrives after a flood has filled the queue: how long it
    /// waits for its slot.
    async fn newcomer_wait(budget: &Arc<StsBudget>, claimant: Claimant) -> Duration {
        let asked = Instant::now();
        budget
            .acquire(Lane::Caller(claimant), Duration::from_secs(2))
            .await
            .expect("the newcomer is served");
        Instant::now() - asked
    }

    #[tokio::test(start_paused = true)]
    async fn a_newcomer_gets_the_next_slot_ahead_of_a_spray_from_one_network() {
        let budget = budget(20);
        let until = Instant::now() + Duration::from_secs(6);
        let spray = flood(&budget, 1000, until, |i| {
            claimant(1, &format!("2001:db8:1:2::{i:x}"))
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        for i in 0..20 {
            let wait = newcomer_wait(&budget, claimant(1, &format!("10.{i}.0.1"))).await;
            assert!(wait <= WINDOW, "newcomer {i} waited {wait:?}");
        }
        futures_sum(spray).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_spray_over_every_network_of_a_slash_16_does_not_outrank_a_newcomer() {
        let budget = budget(20);
        let until = Instant::now() + Duration::from_secs(6);
        // 3000 addresses over all 256 /24s of one /16.
        let spray = flood(&budget, 3000, until, |i| {
            claimant(1, &format!("10.7.{}.{}", i % 256, i / 256 + 1))
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        for i in 0..20 {
            let wait = newcomer_wait(&budget, claimant(1, &format!("172.{}.0.1", 16 + i))).await;
            assert!(wait <= WINDOW, "newcomer {i} waited {wait:?}");
        }
        futures_sum(spray).await;
    }

    #[tokio::test(start_paused = true)]
    async fn one_profiles_callers_cannot_starve_another_profile() {
        let budget = budget(20);
        let until = Instant::now() + Duration::from_secs(6);
        // Profile 1's callers come from everywhere, each network once.
        let spray = flood(&budget, 2000, until, |i| {
            claimant(1, &format!("10.{}.{}.1", i % 256, i / 256))
        });
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut waits = Vec::new();
        for i in 0..20 {
            waits.push(newcomer_wait(&budget, claimant(2, &format!("10.{i}.0.1"))).await);
        }
        assert!(waits.iter().all(|w| *w <= WINDOW), "{waits:?}");
        futures_sum(spray).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_gives_up_its_worst_placed_waiter_for_a_better_newcomer() {
        let budget = budget(2);
        // Use the whole window so everyone queues.
        for _ in 0..2 {
            budget.acquire(Lane::Service, Duration::ZERO).await.unwrap();
        }
        let sprayer = claimant(1, "2001:db8:1:2::1");
        budget.lock().take(Instant::now(), Some(sprayer));
        let waiting: Vec<_> = (0..MAX_WAITERS)
            .map(|_| {
                let budget = budget.clone();
                tokio::spawn(async move {
                    budget
                        .acquire(Lane::Caller(sprayer), Duration::from_secs(30))
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(budget.lock().waiters.len(), MAX_WAITERS);
        // Another sprayer is refused at once; a newcomer from elsewhere takes a place.
        assert!(
            budget
                .acquire(Lane::Caller(sprayer), Duration::from_secs(30))
                .await
                .is_err()
        );
        let newcomer = budget.acquire(
            Lane::Caller(claimant(1, "10.0.0.1")),
            Duration::from_secs(3),
        );
        assert!(newcomer.await.is_ok());
        let refused = futures_count_err(waiting).await;
        assert!(refused >= 1, "the evicted waiter was told");
    }

    async fn futures_count_err(
        handles: Vec<tokio::task::JoinHandle<Result<(), Duration>>>,
    ) -> usize {
        let mut refused = 0;
        for handle in handles {
            refused += usize::from(handle.await.unwrap().is_err());
        }
        refused
    }

    /// A shared budget that answers what it is told to, and counts what it was asked.
    #[derive(Debug, Default)]
    struct FakeShared {
        down: std::sync::atomic::AtomicBool,
        refuse: std::sync::atomic::AtomicBool,
        asked: std::sync::atomic::AtomicUsize,
        throttled: std::sync::atomic::AtomicUsize,
    }

    impl SharedBudget for FakeShared {
        fn acquire(
            &self,
            _caller: bool,
            _max_wait: Duration,
        ) -> Pin<Box<dyn Future<Output = SharedAnswer> + Send + '_>> {
            use std::sync::atomic::Ordering::Relaxed;
            self.asked.fetch_add(1, Relaxed);
            let answer = if self.down.load(Relaxed) {
                Err(SharedBudgetDown)
            } else if self.refuse.load(Relaxed) {
                Ok(Err(Duration::from_millis(300)))
            } else {
                Ok(Ok(()))
            };
            Box::pin(std::future::ready(answer))
        }

        fn throttled(&self) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
            self.throttled
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::pin(std::future::ready(()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_shared_budget_decides_and_its_local_share_stands_in_when_it_is_down() {
        use std::sync::atomic::Ordering::Relaxed;
        let budget = budget(10);
        let shared = Arc::new(FakeShared::default());
        budget.share(shared.clone(), NonZeroU32::new(2).unwrap());
        let now = Duration::ZERO;
        assert!(budget.acquire(Lane::Service, now).await.is_ok());
        shared.refuse.store(true, Relaxed);
        let refused = budget.acquire(Lane::Service, now).await.unwrap_err();
        assert_eq!(
            refused,
            Duration::from_secs(1),
            "at least a second, as locally"
        );
        assert_eq!(
            shared.asked.load(Relaxed),
            2,
            "each local grant asks the fleet"
        );

        // Down: a budget of 2/s stands in, whatever the local scheduler would allow.
        shared.down.store(true, Relaxed);
        let granted =
            futures_util::future::join_all((0..6).map(|_| budget.acquire(Lane::Service, now)))
                .await;
        assert_eq!(granted.iter().filter(|g| g.is_ok()).count(), 2);

        budget.throttled();
        tokio::task::yield_now().await;
        assert_eq!(shared.throttled.load(Relaxed), 1, "the fleet is told");
    }
}
