//! Per-caller tokens shared by the fleet (issue 15): the [`FarCache`] behind each replica's
//! local per-caller cache, so that a caller who meets several replicas costs one AssumeRole.
//!
//! The local cache stays the near-cache: a hit never reaches this module. On a local miss the
//! sealed token is read from Redis (one round trip that also takes the fetch lock when there is
//! none); the replica holding the lock fetches through the local cache's own STS path (new-token
//! limit, budget, metrics unchanged) and stores the result sealed, with a TTL that ends when the
//! token stops being servable; the others wait a bounded time for it, then fetch their own. A due
//! renewal goes the same way, accepting only a stored token that outlives the current one.
//!
//! Redis down or slow: the local cache's behaviour, exactly (each miss fetches its own). A
//! stored value that does not open, or that this replica may not serve, is replaced, never
//! served. Redis key names are keyed digests of the caller, never the subject.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::SecretSlice;
use tokio::time::Instant;

use super::store::FleetStore;
use super::stored;
use super::tokens::{Fetched, SingleFlight, Source, TokenStore, ttl_until};
use crate::clock::Clock;
use crate::metrics::{self, FleetTokenSource};
use crate::sts::FailureClass;
use crate::tokens::callers::{FarCache, HeldFuture, HeldToken};
use crate::tokens::keeper::Held;
use crate::tokens::schedule::Freshness;
use crate::tokens::{CallerKey, Refusal, Unavailable};

/// When to ask again if a flight ends without a token (not expected: every path that returns
/// one sets it).
const RETRY_SOON: Duration = Duration::from_secs(1);

/// One profile's caller tokens in the fleet store.
#[derive(Debug)]
pub struct FleetCallers {
    store: FleetStore,
    tokens: TokenStore,
    profile: String,
    /// What the keys are derived from: the profile's name and its STS call's fingerprint.
    keyed: String,
    clock: Clock,
    /// Tokens stored before this moment are not handed out again (the kill switch cleared them).
    not_before: Mutex<Option<DateTime<Utc>>>,
}

/// The bytes a caller's Redis key is derived from: every part of [`CallerKey`], length-prefixed
/// so that no two keys share them. They reach Redis only through the keyed digest.
fn identity(key: &CallerKey) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(64);
    let mut part = |flag: u8, value: &[u8]| {
        bytes.push(flag);
        bytes.extend_from_slice(&(value.len() as u64).to_be_bytes());
        bytes.extend_from_slice(value);
    };
    match key.caller {
        Some(caller) => part(1, caller.as_bytes()),
        None => part(0, b""),
    }
    match &key.session_name {
        Some(name) => part(1, name.as_bytes()),
        None => part(0, b""),
    }
    match key.ip {
        Some(ip) => part(1, ip.to_string().as_bytes()),
        None => part(0, b""),
    }
    bytes
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FleetCallers {
    /// `keyed` names the profile's version in the store (name and STS call fingerprint).
    pub fn new(store: FleetStore, profile: String, keyed: String, clock: Clock) -> Arc<Self> {
        Arc::new(Self {
            tokens: TokenStore::new(store.clone(), SingleFlight::default()),
            store,
            profile,
            keyed,
            clock,
            not_before: Mutex::new(None),
        })
    }

    /// The sealed form of `held` and how long to keep it: until it stops being servable (a
    /// token that cannot be written is kept for no time, i.e. not stored).
    fn fetched(&self, held: &HeldToken) -> Fetched {
        let now = self.clock.now();
        let plaintext = stored::plaintext(&held.value, held.serve_until, held.refresh_at, now);
        let ttl = ttl_until(stored::wall(held.serve_until, now), now);
        match (plaintext, ttl) {
            (Some(plaintext), Some(ttl)) => Fetched {
                plaintext: SecretSlice::from(plaintext),
                ttl,
            },
            _ => Fetched {
                plaintext: SecretSlice::from(Vec::new()),
                ttl: Duration::ZERO,
            },
        }
    }

    /// The token in a stored value, when this replica may serve it now.
    fn restore(&self, plaintext: &[u8]) -> Option<HeldToken> {
        let restored = stored::restore(plaintext, &self.clock)?;
        if lock(&self.not_before).is_some_and(|not_before| restored.stored_at < not_before) {
            return None;
        }
        let held = Held::new(restored.fresh);
        (held.freshness(Instant::now()) != Freshness::Unservable).then_some(held)
    }

    /// A token for `key`: a stored one that `accept` takes, else the one `fetch` produces,
    /// fetched by one replica of the fleet. `lost` is the answer if neither is there.
    async fn through<E: Send>(
        &self,
        key: &CallerKey,
        accept: impl Fn(&HeldToken) -> bool + Send + Sync,
        fetch: HeldFuture<'_, E>,
        lost: E,
    ) -> Result<HeldToken, E> {
        if !self.store.is_up() {
            // Down (or slow) a moment ago: not worth a bounded wait per miss. The store's
            // health ping notices when it is back.
            metrics::record_fleet_caller_token(&self.profile, FleetTokenSource::Local);
            return fetch.await;
        }
        let name = self.tokens.caller_key(&self.keyed, &identity(key));
        let slot = Mutex::new(None);
        let keep = |held: HeldToken| *lock(&slot) = Some(held);
        let flight = self
            .tokens
            .get_or_replace(
                &name,
                |plaintext| match self.restore(plaintext) {
                    Some(held) if accept(&held) => {
                        keep(held);
                        true
                    }
                    _ => false,
                },
                || async {
                    let held = fetch.await?;
                    let fetched = self.fetched(&held);
                    keep(held);
                    Ok(fetched)
                },
            )
            .await?;
        let source = match flight.source {
            Source::Stored => FleetTokenSource::Stored,
            Source::Fetched => FleetTokenSource::Fetched,
            Source::FetchedAlone => FleetTokenSource::Local,
        };
        metrics::record_fleet_caller_token(&self.profile, source);
        slot.into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .ok_or(lost)
    }
}

fn unavailable() -> Unavailable {
    Unavailable {
        class: Some(FailureClass::Unavailable),
        retry_after: RETRY_SOON,
    }
}

impl FarCache for FleetCallers {
    fn on_miss<'a>(
        &'a self,
        key: &'a CallerKey,
        fetch: HeldFuture<'a, Refusal>,
    ) -> HeldFuture<'a, Refusal> {
        Box::pin(self.through(key, |_| true, fetch, Refusal::Unavailable(unavailable())))
    }

    fn on_renewal<'a>(
        &'a self,
        key: &'a CallerKey,
        current: &'a HeldToken,
        fetch: HeldFuture<'a, Unavailable>,
    ) -> HeldFuture<'a, Unavailable> {
        // The stored token is most often the current one itself; only a successor will do.
        let successor = |held: &HeldToken| held.value.expiration > current.value.expiration;
        Box::pin(self.through(key, successor, fetch, unavailable()))
    }

    fn clear(&self) {
        *lock(&self.not_before) = Some(self.clock.now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::subject::caller_id;

    #[test]
    fn identities_differ_by_every_part() {
        let alice = CallerKey {
            caller: Some(caller_id(Some("https://issuer"), "alice@example.com")),
            session_name: Some("alice@example.com".into()),
            ip: None,
        };
        let mut keys = vec![
            alice.clone(),
            CallerKey {
                caller: Some(caller_id(Some("https://other"), "alice@example.com")),
                ..alice.clone()
            },
            CallerKey {
                session_name: Some("alice".into()),
                ..alice.clone()
            },
            CallerKey {
                ip: Some("203.0.113.0/24".parse().unwrap()),
                ..alice
            },
            CallerKey {
                caller: None,
                session_name: None,
                ip: Some("203.0.113.0/24".parse().unwrap()),
            },
            CallerKey {
                caller: None,
                session_name: None,
                ip: None,
            },
        ];
        let identities: Vec<Vec<u8>> = keys.iter().map(identity).collect();
        for (i, a) in identities.iter().enumerate() {
            for b in &identities[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_eq!(identity(&keys.remove(0)), identities[0], "deterministic");
    }
}
