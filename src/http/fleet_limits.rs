//! The fleet side of [`super::limits::RateLimits`]: the fleet's GCRA count, asked only when this
//! replica's allowance for a key runs out (see [`crate::fleet::allowance`]), with what was
//! admitted on the allowance charged to Redis in batches every [`BATCH_EVERY`].

use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use tokio_util::sync::CancellationToken;

use crate::auth::subject::CallerId;
use crate::fleet::allowance::{Allowances, Answer, Local};
use crate::fleet::limits::{Decision, FleetLimiter, GcraQuota, LimitKind};
use crate::fleet::store::FleetStore;

/// How often admissions on allowances are charged to the fleet: the staleness of other
/// replicas' view, and at high rates the size of each charge.
pub const BATCH_EVERY: Duration = Duration::from_millis(50);
/// Keys charged per batch at most; the rest wait for the next batch.
const MAX_BATCH: usize = 256;
/// Keys with an allowance, per kind and profile; beyond it keys are asked about every time.
const MAX_KEYS: usize = 16 * 1024;
/// A key unused this long is forgotten (once it owes nothing).
const IDLE: Duration = Duration::from_secs(60);

/// What a limit counts, as the fleet's key names it.
pub trait Limited: Hash + Eq + Clone + Send + 'static {
    const KIND: LimitKind;
    fn identity(&self) -> Vec<u8>;
}

impl Limited for IpNet {
    const KIND: LimitKind = LimitKind::Network;
    fn identity(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl Limited for CallerId {
    const KIND: LimitKind = LimitKind::Subject;
    fn identity(&self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

#[derive(Debug)]
pub struct FleetLimits {
    store: FleetStore,
    limiter: FleetLimiter,
    quota: GcraQuota,
    /// The profile's name: each profile has its own limits, as locally.
    profile: String,
    by_ip: Mutex<Allowances<IpNet>>,
    by_subject: Mutex<Allowances<CallerId>>,
}

fn lock<K>(allowances: &Mutex<Allowances<K>>) -> MutexGuard<'_, Allowances<K>> {
    allowances.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FleetLimits {
    /// Limits counted across the fleet, charged in batches until `cancel`.
    pub fn start(
        store: &FleetStore,
        profile: &str,
        quota: GcraQuota,
        fleet_size: u32,
        cancel: &CancellationToken,
    ) -> Arc<Self> {
        let limits = Arc::new(Self {
            store: store.clone(),
            limiter: FleetLimiter::new(store.clone()),
            quota,
            profile: profile.to_owned(),
            by_ip: Mutex::new(Allowances::new(MAX_KEYS, fleet_size)),
            by_subject: Mutex::new(Allowances::new(MAX_KEYS, fleet_size)),
        });
        tokio::spawn(charge_in_batches(
            Arc::downgrade(&limits),
            cancel.child_token(),
        ));
        limits
    }

    /// The fleet's decision on one more request from the address prefix `caller`, `None` when
    /// the store cannot give one (known down, or no answer within its command timeout).
    pub async fn check_ip(&self, caller: IpNet) -> Option<Result<(), Duration>> {
        self.check(&self.by_ip, caller).await
    }

    /// As [`Self::check_ip`], for a JWT caller.
    pub async fn check_subject(&self, caller: CallerId) -> Option<Result<(), Duration>> {
        self.check(&self.by_subject, caller).await
    }

    async fn check<K: Limited>(
        &self,
        allowances: &Mutex<Allowances<K>>,
        key: K,
    ) -> Option<Result<(), Duration>> {
        if !self.store.is_up() {
            return None;
        }
        let pending = {
            let mut allowances = lock(allowances);
            match allowances.decide(&key, Instant::now()) {
                Local::Admit => return Some(Ok(())),
                Local::Deny(wait) => return Some(Err(wait)),
                Local::AskFleet => allowances.take_pending(&key),
            }
        };
        let redis_key = self.redis_key(&key);
        match self
            .limiter
            .reconcile(&redis_key, self.quota, pending, true)
            .await
        {
            Ok(answer) => {
                let refused_for = match answer.decision {
                    Some(Decision::Limited { retry_after }) => Some(retry_after),
                    Some(Decision::Allowed) | None => None,
                };
                let settled = Answer {
                    headroom: answer.headroom,
                    refused_for,
                };
                lock(allowances).settle(&key, settled, Instant::now());
                Some(refused_for.map_or(Ok(()), Err))
            }
            Err(error) => {
                lock(allowances).unanswered(&key, pending);
                tracing::debug!(%error, "fleet rate limit: no answer; using the local limiter");
                None
            }
        }
    }

    fn redis_key<K: Limited>(&self, key: &K) -> String {
        self.limiter
            .key(K::KIND, &[self.profile.as_bytes(), &key.identity()])
    }

    /// Charges one batch of admissions made on allowances.
    async fn charge<K: Limited>(&self, allowances: &Mutex<Allowances<K>>) {
        let batch = lock(allowances).take_batch(MAX_BATCH);
        if batch.is_empty() {
            return;
        }
        let answers = futures_util::future::join_all(batch.into_iter().map(|(key, admitted)| {
            let redis_key = self.redis_key(&key);
            async move {
                let answer = self
                    .limiter
                    .reconcile(&redis_key, self.quota, admitted, false)
                    .await;
                (key, admitted, answer)
            }
        }))
        .await;
        let now = Instant::now();
        let mut allowances = lock(allowances);
        for (key, admitted, answer) in answers {
            match answer {
                Ok(answer) => {
                    let settled = Answer {
                        headroom: answer.headroom,
                        refused_for: None,
                    };
                    allowances.settle(&key, settled, now);
                }
                Err(_) => allowances.unanswered(&key, admitted),
            }
        }
    }

    /// Forgets quiet keys; run periodically.
    pub fn forget_idle(&self) {
        let now = Instant::now();
        lock(&self.by_ip).forget_idle(now, IDLE);
        lock(&self.by_subject).forget_idle(now, IDLE);
    }

    /// Keys holding an allowance.
    pub fn tracked(&self) -> usize {
        lock(&self.by_ip).len() + lock(&self.by_subject).len()
    }
}

async fn charge_in_batches(limits: Weak<FleetLimits>, cancel: CancellationToken) {
    let mut every = tokio::time::interval(BATCH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = cancel.cancelled() => return,
        }
        let Some(limits) = limits.upgrade() else {
            return;
        };
        // While the store is down, charges wait (bounded by the allowances they came from).
        if limits.store.is_up() {
            limits.charge(&limits.by_ip).await;
            limits.charge(&limits.by_subject).await;
        }
    }
}
