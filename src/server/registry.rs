//! Who holds a listener's connections: how many each client address has open (the per-address
//! cap), and which connection has been idle longest (the one to close when every slot is taken).
//!
//! Touched once when a connection opens and once when it closes, and scanned only at the global
//! cap; never per request.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::time::Instant;

use crate::network::Grouping;

use super::state::ConnState;

/// What the per-address cap counts: an IPv4 address, or an IPv6 prefix
/// (`STSVEND_IPV6_PREFIX_LENGTH`, /64 by default, as for rate limits): a host is commonly
/// handed a whole /64, so counting single addresses would let it open 2^64 × the cap.
pub(crate) type AddressKey = ipnet::IpNet;

/// One listener's open connections.
#[derive(Debug)]
pub(crate) struct Registry {
    max_per_address: usize,
    grouping: Grouping,
    /// The origin of [`ConnState`]'s idle times, in milliseconds.
    epoch: Instant,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: u64,
    per_address: HashMap<AddressKey, usize>,
    open: HashMap<u64, Arc<ConnState>>,
}

impl Registry {
    pub(crate) fn new(max_per_address: usize, grouping: Grouping) -> Self {
        Self {
            max_per_address,
            grouping,
            epoch: Instant::now(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Milliseconds from the registry's start to `at`, the unit of idle times.
    pub(crate) fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts a new connection from `peer` against its address's cap; `None` when the address
    /// already holds the cap. Called where connections are accepted, so that the admission's
    /// number and time follow the order of acceptance, not the order in which the connections'
    /// tasks happen to start (which the scheduler may change).
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Option<Admission> {
        let key = self.grouping.caller(peer);
        let accepted = Instant::now();
        let mut inner = self.lock();
        let count = inner.per_address.entry(key).or_insert(0);
        if *count >= self.max_per_address {
            return None;
        }
        *count += 1;
        let id = inner.next_id;
        inner.next_id += 1;
        Some(Admission {
            registry: self.clone(),
            key,
            id,
            accepted,
        })
    }

    /// Asks the connection idle longest (no request in flight, not already asked) to close, and
    /// says whether there was one.
    pub(crate) fn evict_idlest(&self) -> bool {
        let inner = self.lock();
        let victim = inner
            .open
            .iter()
            .filter(|(_, state)| state.evictable())
            .min_by_key(|(id, state)| (state.idle_since_ms(), **id))
            .map(|(_, state)| state.clone());
        drop(inner);
        victim.is_some_and(|state| state.evict())
    }
}

/// A connection's place under its address's cap and in the eviction list; both given back on
/// drop.
#[derive(Debug)]
pub(crate) struct Admission {
    registry: Arc<Registry>,
    key: AddressKey,
    /// Acceptance order: among connections idle since the same millisecond, the lowest goes
    /// first.
    id: u64,
    /// When the connection was accepted: where its age and idle time start.
    accepted: Instant,
}

impl Admission {
    /// When the connection was accepted: where its age and idle time start.
    pub(crate) fn accepted(&self) -> Instant {
        self.accepted
    }

    /// [`Self::accepted`] in milliseconds on the registry's clock.
    pub(crate) fn accepted_ms(&self) -> u64 {
        self.registry.millis(self.accepted)
    }

    /// Makes the connection a candidate for eviction.
    pub(crate) fn register(&self, state: Arc<ConnState>) {
        self.registry.lock().open.insert(self.id, state);
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        let mut inner = self.registry.lock();
        inner.open.remove(&self.id);
        if let Some(count) = inner.per_address.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                inner.per_address.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_peers_are_counted_by_their_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(Grouping::default().caller(a), Grouping::default().caller(b));
        assert_ne!(
            Grouping::default().caller(a),
            Grouping::default().caller(other)
        );
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let plain: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(
            Grouping::default().caller(mapped),
            Grouping::default().caller(plain)
        );
    }

    #[tokio::test]
    async fn an_address_holds_at_most_the_cap_and_gets_its_slots_back() {
        let registry = Arc::new(Registry::new(2, Grouping::default()));
        let one: IpAddr = "192.0.2.1".parse().unwrap();
        let two: IpAddr = "192.0.2.2".parse().unwrap();
        let first = registry.admit(one).unwrap();
        let _second = registry.admit(one).unwrap();
        assert!(registry.admit(one).is_none());
        assert!(registry.admit(two).is_some());
        drop(first);
        assert!(registry.admit(one).is_some());
    }

    #[tokio::test]
    async fn the_connection_idle_longest_is_evicted_and_busy_ones_never() {
        let registry = Arc::new(Registry::new(10, Grouping::default()));
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let states: Vec<_> = [5_000, 1_000, 3_000]
            .into_iter()
            .map(|idle_since| Arc::new(ConnState::new(idle_since)))
            .collect();
        let mut admissions = Vec::new();
        for state in &states {
            let admission = registry.admit(peer).unwrap();
            admission.register(state.clone());
            admissions.push(admission);
        }
        // The one idle since 1 000 ms has a request in flight: 3 000 goes first, then 5 000.
        let busy = states[1].request_started();
        assert!(registry.evict_idlest());
        assert!(states[2].is_evicted() && !states[0].is_evicted());
        assert!(registry.evict_idlest());
        assert!(states[0].is_evicted());
        assert!(!registry.evict_idlest(), "nothing idle is left");
        drop(busy);
        assert!(registry.evict_idlest());
    }

    #[tokio::test]
    async fn among_connections_idle_as_long_the_first_accepted_goes_first() {
        let registry = Arc::new(Registry::new(10, Grouping::default()));
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let first = registry.admit(peer).unwrap();
        let second = registry.admit(peer).unwrap();
        assert!(first.accepted_ms() <= second.accepted_ms());
        // Idle since the same millisecond, and their tasks register in the other order.
        let first_state = Arc::new(ConnState::new(7));
        let second_state = Arc::new(ConnState::new(7));
        second.register(second_state.clone());
        first.register(first_state.clone());
        assert!(registry.evict_idlest());
        assert!(first_state.is_evicted() && !second_state.is_evicted());
    }
}
