//! Tokens in the fleet store: sealed per-key values with a TTL that ends when the token stops
//! being servable, a fleet-wide single flight so that N replicas meeting a new caller make one
//! STS call, and a lease so that one replica refreshes each shared per-profile token.
//!
//! Values are opaque bytes here (the caller serialises its token): this module neither knows
//! nor depends on the token types above it. A value that does not open (wrong key, tampered,
//! moved) is an error the caller treats as a miss, never something served.
//!
//! Key names: `{prefix}tok:{<digest>}` for a caller's token and `…:lock` for its fetch lock (the
//! braces keep the two in one hash slot for the script that reads one and takes the other);
//! `{prefix}shared:{<digest>}` and `…:lease` for a profile's shared token.

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretSlice};
use tokio::time::Instant;

use super::seal::{OVERHEAD, SealError};
use super::store::{FleetStore, StoreError};

/// The largest plaintext stored or read back (an STS token's JSON is about 1.5 KiB).
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// No STS token lives longer than 12 hours; a longer TTL is a caller's mistake, cut short.
const MAX_TTL: Duration = Duration::from_secs(12 * 3600);

static GET_OR_LOCK: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/get_or_lock.lua")));
static RELEASE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/release.lua")));
static LEASE: LazyLock<redis::Script> =
    LazyLock::new(|| redis::Script::new(include_str!("scripts/lease.lua")));

/// How the fleet-wide single flight waits.
#[derive(Debug, Clone, Copy)]
pub struct SingleFlight {
    /// How long the fetch lock lives if its holder dies; longer than one STS call takes.
    pub lock_ttl: Duration,
    /// How long a replica waits for another's fetch before fetching its own.
    pub wait: Duration,
    /// How often a waiting replica looks again (with ±50 % jitter).
    pub poll: Duration,
}

impl Default for SingleFlight {
    fn default() -> Self {
        Self {
            lock_ttl: Duration::from_secs(10),
            wait: Duration::from_secs(3),
            poll: Duration::from_millis(25),
        }
    }
}

/// Where one token lives; built by [`TokenStore::caller_key`] or [`TokenStore::shared_key`].
#[derive(Debug, Clone)]
pub struct TokenKey {
    value: String,
    lock: String,
    /// The same token's name under the previous encryption key, while one is held.
    previous: Option<String>,
}

impl TokenKey {
    /// The Redis key name (a digest: it reveals neither profile nor identity).
    pub fn name(&self) -> &str {
        &self.value
    }
}

/// A token a fetch produced, and how long it stays servable.
#[derive(Debug)]
pub struct Fetched {
    pub plaintext: SecretSlice<u8>,
    pub ttl: Duration,
}

/// Where [`TokenStore::get_or_fetch`]'s token came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Another replica (or an earlier call) stored it.
    Stored,
    /// This call fetched it under the fleet-wide lock and stored it.
    Fetched,
    /// This call fetched it without the lock: the store was down, or the wait ran out.
    FetchedAlone,
}

#[derive(Debug)]
pub struct Flight {
    pub plaintext: SecretSlice<u8>,
    pub source: Source,
}

/// How long a token stays in the store: until it stops being servable, at most [`MAX_TTL`];
/// `None` when it already has.
pub fn ttl_until(servable_until: DateTime<Utc>, now: DateTime<Utc>) -> Option<Duration> {
    let left = (servable_until - now).to_std().ok()?;
    (!left.is_zero()).then(|| left.min(MAX_TTL))
}

#[derive(Debug, Clone)]
pub struct TokenStore {
    store: FleetStore,
    flight: SingleFlight,
}

impl TokenStore {
    pub fn new(store: FleetStore, flight: SingleFlight) -> Self {
        Self { store, flight }
    }

    fn key(&self, kind: &str, suffix: &str, parts: &[&[u8]]) -> TokenKey {
        let keyring = self.store.keyring();
        let name = |digest: String| self.store.key(&format!("{kind}:{{{digest}}}"));
        let value = name(keyring.digest(kind, parts));
        TokenKey {
            lock: format!("{value}:{suffix}"),
            value,
            previous: keyring.previous_digest(kind, parts).map(name),
        }
    }

    /// The key of one caller's token: `identity` is whatever the token is bound to (a JWT
    /// subject, a report id, an address); only its keyed digest reaches Redis.
    pub fn caller_key(&self, profile: &str, identity: &[u8]) -> TokenKey {
        self.key("tok", "lock", &[profile.as_bytes(), identity])
    }

    /// The key of a profile's shared token; its lock is the refresh lease.
    pub fn shared_key(&self, profile: &str) -> TokenKey {
        self.key("shared", "lease", &[profile.as_bytes()])
    }

    /// The stored token, `None` when there is none. A value that does not open is an error,
    /// never served.
    pub async fn get(&self, key: &TokenKey) -> Result<Option<SecretSlice<u8>>, StoreError> {
        if let Some(opened) = self.store.get_sealed(&key.value, MAX_TOKEN_BYTES).await? {
            return Ok(Some(opened.plaintext));
        }
        let Some(previous) = &key.previous else {
            return Ok(None);
        };
        // While a key is rolled, a token stored under the previous key's name still serves.
        Ok(self
            .store
            .get_sealed(previous, MAX_TOKEN_BYTES)
            .await?
            .map(|opened| opened.plaintext))
    }

    /// Stores a token for `ttl` (cut to [`MAX_TTL`]); a zero TTL stores nothing.
    pub async fn put(
        &self,
        key: &TokenKey,
        plaintext: &[u8],
        ttl: Duration,
    ) -> Result<(), StoreError> {
        if plaintext.len() > MAX_TOKEN_BYTES {
            return Err(StoreError::TooLarge(MAX_TOKEN_BYTES));
        }
        if ttl.is_zero() {
            return Ok(());
        }
        self.store
            .put_sealed(&key.value, plaintext, ttl.min(MAX_TTL))
            .await
    }

    /// The stored token, or one fetched by exactly one replica of the fleet while the others
    /// wait for it. Never fails for the store's sake: when the store is down or the wait runs
    /// out, this replica fetches its own. Only `fetch`'s own error is returned.
    pub async fn get_or_fetch<F, Fut, E>(&self, key: &TokenKey, fetch: F) -> Result<Flight, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched, E>>,
    {
        self.get_or_replace(key, |_| true, fetch).await
    }

    /// As [`Self::get_or_fetch`], but a stored token that `accept` refuses counts as none: one
    /// this replica may not serve, or the very token a renewal replaces. The replica that takes
    /// the lock fetches its replacement; the others wait for a token they accept.
    pub async fn get_or_replace<A, F, Fut, E>(
        &self,
        key: &TokenKey,
        mut accept: A,
        fetch: F,
    ) -> Result<Flight, E>
    where
        A: FnMut(&[u8]) -> bool,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched, E>>,
    {
        if key.previous.is_some() {
            // While a key is rolled, a token stored under the previous key's name still serves
            // (one more round trip, only then).
            if let Ok(Some(plaintext)) = self.get(key).await
                && accept(plaintext.expose_secret())
            {
                return Ok(Flight {
                    plaintext,
                    source: Source::Stored,
                });
            }
        }
        let deadline = Instant::now() + self.flight.wait;
        let owner = self.store.unique();
        let mut replace = false;
        loop {
            let Ok((value, locked)) = self.try_get_or_lock(key, &owner, replace).await else {
                return self.fetch_alone(key, fetch).await;
            };
            if !value.is_empty() {
                match self.store.keyring().open(&key.value, &value) {
                    Ok(opened) if !accept(opened.plaintext.expose_secret()) => {
                        // Replaced like a value that does not open, under the lock.
                        replace = true;
                    }
                    Ok(opened) => {
                        if locked {
                            self.release(&key.lock, &owner).await;
                        }
                        return Ok(Flight {
                            plaintext: opened.plaintext,
                            source: Source::Stored,
                        });
                    }
                    // Refused, not served: fetch a fresh one (under the lock) to replace it.
                    Err(SealError::Malformed | SealError::UnknownKey | SealError::Refused) => {
                        replace = true;
                    }
                    Err(_) => return self.fetch_alone(key, fetch).await,
                }
            }
            if locked {
                return self.fetch_locked(key, &owner, fetch).await;
            }
            if Instant::now() >= deadline {
                return self.fetch_alone(key, fetch).await;
            }
            let jitter = 0.5 + rand::random::<f64>();
            let pause = self.flight.poll.mul_f64(jitter);
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }

    async fn try_get_or_lock(
        &self,
        key: &TokenKey,
        owner: &str,
        even_with_value: bool,
    ) -> Result<(Vec<u8>, bool), StoreError> {
        let limit = MAX_TOKEN_BYTES + OVERHEAD;
        let lock_ms = u64::try_from(self.flight.lock_ttl.as_millis()).unwrap_or(u64::MAX);
        let (value, locked): (Vec<u8>, i64) = self
            .store
            .script(
                GET_OR_LOCK
                    .key(&key.value)
                    .key(&key.lock)
                    .arg(limit)
                    .arg(owner)
                    .arg(lock_ms.max(1))
                    .arg(if even_with_value { "1" } else { "0" }),
            )
            .await?;
        if value.len() > limit {
            return Err(StoreError::TooLarge(limit));
        }
        Ok((value, locked == 1))
    }

    async fn fetch_locked<F, Fut, E>(
        &self,
        key: &TokenKey,
        owner: &str,
        fetch: F,
    ) -> Result<Flight, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched, E>>,
    {
        let fetched = fetch().await;
        if let Ok(fetched) = &fetched {
            // A failed put costs the fleet a second fetch, never this caller its token.
            let _ = self
                .put(key, fetched.plaintext.expose_secret(), fetched.ttl)
                .await;
        }
        // On failure the lock goes too, so that a waiting replica tries next.
        self.release(&key.lock, owner).await;
        fetched.map(|fetched| Flight {
            plaintext: fetched.plaintext,
            source: Source::Fetched,
        })
    }

    async fn fetch_alone<F, Fut, E>(&self, key: &TokenKey, fetch: F) -> Result<Flight, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Fetched, E>>,
    {
        let fetched = fetch().await?;
        if self.store.is_up() {
            let _ = self
                .put(key, fetched.plaintext.expose_secret(), fetched.ttl)
                .await;
        }
        Ok(Flight {
            plaintext: fetched.plaintext,
            source: Source::FetchedAlone,
        })
    }

    async fn release(&self, lock: &str, owner: &str) {
        let _ = self.store.script::<i64>(RELEASE.key(lock).arg(owner)).await;
    }

    /// Takes or renews this replica's lease on `profile`'s shared token for `ttl`: `true` when
    /// this replica is the one that refreshes it until then; the others read it.
    pub async fn lease(&self, profile: &str, ttl: Duration) -> Result<bool, StoreError> {
        let key = self.shared_key(profile);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let held: i64 = self
            .store
            .script(
                LEASE
                    .key(&key.lock)
                    .arg(self.store.replica_id())
                    .arg(ttl_ms),
            )
            .await?;
        Ok(held == 1)
    }

    /// Gives the lease up (at shutdown), if this replica holds it.
    pub async fn release_lease(&self, profile: &str) -> Result<(), StoreError> {
        let key = self.shared_key(profile);
        self.store
            .script::<i64>(RELEASE.key(&key.lock).arg(self.store.replica_id()))
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_token_is_stored_until_it_stops_being_servable() {
        let now = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let until = now + chrono::Duration::milliseconds(90_500);
        assert_eq!(ttl_until(until, now), Some(Duration::from_millis(90_500)));
        assert_eq!(ttl_until(now, now), None);
        assert_eq!(ttl_until(now - chrono::Duration::seconds(1), now), None);
        assert_eq!(
            ttl_until(now + chrono::Duration::days(3), now),
            Some(MAX_TTL)
        );
    }
}
