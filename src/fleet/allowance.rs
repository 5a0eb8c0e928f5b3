//! Local-first fleet rate limits: which requests a replica may admit without a Redis round trip.
//!
//! Asking Redis on every request costs a cached token most of its throughput. Instead each answer
//! from the fleet's GCRA script says how many requests the key could still take at once (its
//! headroom), and the replica may admit a share of that on its own: headroom / (2 × fleet size).
//! Those admissions are charged to Redis in batches (whatever the state then: they were served),
//! so the long-run rate stays exact. Between two answers a replica holds at most two shares
//! unconfirmed (one granted, one spent while a batch was in flight), so the whole fleet admits at
//! most one burst beyond the exact count while the fleet size hint is at least the replica count.
//! A key the fleet refused is refused here until the fleet's retry time, also without asking.
//!
//! Pure: time is passed in; no I/O.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// What this replica can decide alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Local {
    /// Admitted on the allowance; charged to the fleet in the next batch.
    Admit,
    /// The fleet refused this key; wait this long.
    Deny(Duration),
    /// No allowance left (or the key is new): ask the fleet, sending [`Allowances::take_pending`].
    AskFleet,
}

/// The fleet's answer about one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// Requests the fleet could take at once after the call.
    pub headroom: u32,
    /// When the fleet refused the request asked for: how long until it would admit one.
    pub refused_for: Option<Duration>,
}

#[derive(Debug)]
struct Entry {
    allowance: u32,
    /// Admitted here and not yet charged to the fleet.
    pending: u32,
    denied_until: Option<Instant>,
    last_seen: Instant,
}

/// Per-key allowances, bounded to `capacity` keys: a key that finds no room is asked about every
/// time (exact, only slower).
#[derive(Debug)]
pub struct Allowances<K> {
    entries: HashMap<K, Entry>,
    capacity: usize,
    /// Two shares per replica: see the module comment.
    divisor: u32,
}

impl<K: Hash + Eq + Clone> Allowances<K> {
    pub fn new(capacity: usize, fleet_size: u32) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
            divisor: fleet_size.max(1).saturating_mul(2),
        }
    }

    pub fn decide(&mut self, key: &K, now: Instant) -> Local {
        let Some(entry) = self.entries.get_mut(key) else {
            return Local::AskFleet;
        };
        entry.last_seen = now;
        if let Some(until) = entry.denied_until {
            if now < until {
                return Local::Deny(until - now);
            }
            entry.denied_until = None;
        }
        if entry.allowance == 0 {
            return Local::AskFleet;
        }
        entry.allowance -= 1;
        entry.pending = entry.pending.saturating_add(1);
        Local::Admit
    }

    /// The key's uncharged admissions, to send with a call to the fleet about it.
    pub fn take_pending(&mut self, key: &K) -> u32 {
        self.entries
            .get_mut(key)
            .map_or(0, |entry| std::mem::take(&mut entry.pending))
    }

    /// Up to `max` keys with uncharged admissions and their counts, taken for one batch.
    pub fn take_batch(&mut self, max: usize) -> Vec<(K, u32)> {
        self.entries
            .iter_mut()
            .filter(|(_, entry)| entry.pending > 0)
            .take(max)
            .map(|(key, entry)| (key.clone(), std::mem::take(&mut entry.pending)))
            .collect()
    }

    /// Records the fleet's answer: a new allowance, or a refusal until its retry time.
    pub fn settle(&mut self, key: &K, answer: Answer, now: Instant) {
        if !self.entries.contains_key(key) && self.entries.len() >= self.capacity {
            return;
        }
        let entry = self.entries.entry(key.clone()).or_insert(Entry {
            allowance: 0,
            pending: 0,
            denied_until: None,
            last_seen: now,
        });
        entry.allowance = answer.headroom / self.divisor;
        entry.denied_until = answer.refused_for.map(|wait| now + wait);
    }

    /// The fleet gave no answer: `charged` goes back to be sent later, and nothing more is
    /// admitted on the allowance until the fleet answers again.
    pub fn unanswered(&mut self, key: &K, charged: u32) {
        if let Some(entry) = self.entries.get_mut(key) {
            entry.pending = entry.pending.saturating_add(charged);
            entry.allowance = 0;
        }
    }

    /// Forgets keys quiet for `idle` with nothing left to charge.
    pub fn forget_idle(&mut self, now: Instant, idle: Duration) {
        self.entries.retain(|_, entry| {
            entry.pending > 0 || now.saturating_duration_since(entry.last_seen) < idle
        });
        self.entries
            .shrink_to(self.capacity.min(self.entries.len() * 2));
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FLEET: u32 = 3;

    fn answer(headroom: u32) -> Answer {
        Answer {
            headroom,
            refused_for: None,
        }
    }

    #[test]
    fn a_new_key_asks_the_fleet() {
        let mut allowances = Allowances::<u8>::new(10, FLEET);
        assert_eq!(allowances.decide(&1, Instant::now()), Local::AskFleet);
    }

    #[test]
    fn a_share_of_the_headroom_is_admitted_locally_then_charged() {
        let now = Instant::now();
        let mut allowances = Allowances::new(10, FLEET);
        allowances.settle(&1, answer(60), now);
        // 60 / (2 × 3) = 10 admitted without asking.
        for _ in 0..10 {
            assert_eq!(allowances.decide(&1, now), Local::Admit);
        }
        assert_eq!(allowances.decide(&1, now), Local::AskFleet);
        assert_eq!(allowances.take_batch(8), vec![(1, 10)]);
        assert!(allowances.take_batch(8).is_empty(), "charged once");
    }

    #[test]
    fn a_small_headroom_grants_nothing_so_small_limits_stay_exact() {
        let now = Instant::now();
        let mut allowances = Allowances::new(10, FLEET);
        allowances.settle(&1, answer(5), now);
        assert_eq!(allowances.decide(&1, now), Local::AskFleet);
    }

    #[test]
    fn a_refusal_is_kept_until_the_fleets_retry_time() {
        let now = Instant::now();
        let mut allowances = Allowances::new(10, FLEET);
        let refused = Answer {
            headroom: 0,
            refused_for: Some(Duration::from_secs(12)),
        };
        allowances.settle(&1, refused, now);
        assert_eq!(
            allowances.decide(&1, now + Duration::from_secs(2)),
            Local::Deny(Duration::from_secs(10))
        );
        assert_eq!(
            allowances.decide(&1, now + Duration::from_secs(12)),
            Local::AskFleet
        );
    }

    #[test]
    fn charges_the_fleet_did_not_take_are_kept_and_the_allowance_stops() {
        let now = Instant::now();
        let mut allowances = Allowances::new(10, FLEET);
        allowances.settle(&1, answer(60), now);
        assert_eq!(allowances.decide(&1, now), Local::Admit);
        let pending = allowances.take_pending(&1);
        assert_eq!(pending, 1);
        allowances.unanswered(&1, pending);
        assert_eq!(allowances.decide(&1, now), Local::AskFleet);
        assert_eq!(allowances.take_pending(&1), 1);
    }

    #[test]
    fn keys_beyond_capacity_are_always_asked_about() {
        let now = Instant::now();
        let mut allowances = Allowances::new(2, FLEET);
        for key in 0..3 {
            allowances.settle(&key, answer(600), now);
        }
        assert_eq!(allowances.len(), 2);
        assert_eq!(allowances.decide(&2, now), Local::AskFleet);
    }

    #[test]
    fn quiet_keys_are_forgotten_unless_they_owe_charges() {
        let now = Instant::now();
        let mut allowances = Allowances::new(10, FLEET);
        allowances.settle(&1, answer(600), now);
        allowances.settle(&2, answer(600), now);
        assert_eq!(allowances.decide(&2, now), Local::Admit);
        allowances.forget_idle(now + Duration::from_secs(120), Duration::from_secs(60));
        assert_eq!(allowances.len(), 1, "key 2 still owes one charge");
        assert_eq!(allowances.take_batch(8), vec![(2, 1)]);
    }

    #[test]
    fn at_most_one_burst_is_unconfirmed_across_the_fleet() {
        // Every replica answered with the whole burst at the same moment, spends its share, then
        // gets the same headroom again before its batch lands: two shares each, one burst in all.
        let burst = 600;
        let now = Instant::now();
        let mut unconfirmed = 0;
        for _ in 0..FLEET {
            let mut replica = Allowances::new(10, FLEET);
            for _ in 0..2 {
                replica.settle(&1, answer(burst), now);
                while replica.decide(&1, now) == Local::Admit {
                    unconfirmed += 1;
                }
            }
        }
        assert_eq!(unconfirmed, burst);
    }
}
