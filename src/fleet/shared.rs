//! The shared per-profile token in fleet mode (issue 15): the [`FarShared`] behind each
//! replica's keeper, so that one replica refreshes a profile's token and the others read it.
//!
//! Each attempt of a replica's keeper (at start-up, and whenever its token is due):
//! 1. a stored token that is not yet due is published as it is (zero STS calls);
//! 2. otherwise the replica holding the profile's lease fetches one through its own keeper
//!    (budget, plan and backoff unchanged) and stores it sealed until it stops being servable;
//! 3. the others wait a bounded time for it; if it does not come they keep publishing the
//!    stored token while it is servable, looking again soon, and fetch their own only when none
//!    is servable.
//!
//! Every replica takes the lease when it is free and renews it while it holds it, so a dead
//! holder's lease passes on within [`LEASE_TTL`]; a replica gives it up when it stops. Followers
//! read a little after the holder's refresh time, so they find its successor already stored.
//!
//! After the kill switch clears the token, each replica fetches its own once: a stored token
//! is only published again if it was stored after the clear.
//!
//! Redis down or slow: the replica fetches its own, exactly as without a fleet. A stored value
//! that does not open is never published: the lease holder replaces it. The HTTP path only ever
//! reads the keeper's local `watch` channel: no Redis round trip per request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::store::FleetStore;
use super::stored;
use super::tokens::{SingleFlight, TokenKey, TokenStore, ttl_until};
use crate::clock::Clock;
use crate::metrics::{self, FleetTokenSource};
use crate::tokens::Token;
use crate::tokens::keeper::Fresh;
use crate::tokens::shared::{FarShared, FreshFuture, RefreshError};

/// How long a lease outlives its holder: the longest a dead holder keeps the others from
/// refreshing. Far longer than one STS call, so a live holder never loses it mid-refresh.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// How often every replica takes (when free) or renews (when held) the lease.
const LEASE_EVERY: Duration = Duration::from_secs(3);
/// How long a replica without the lease waits for the holder's new token.
const HOLDER_WAIT: Duration = Duration::from_secs(3);
/// How often it looks meanwhile (with ±50 % jitter).
const POLL: Duration = Duration::from_millis(100);
/// How long after the holder's refresh time the others read (plus as much again, at random):
/// by then its successor is stored.
const FOLLOW_LAG: Duration = Duration::from_secs(1);
/// When the holder is late, how soon a replica looks again.
const LOOK_AGAIN: Duration = Duration::from_secs(2);

/// One profile's shared token in the fleet store.
#[derive(Debug)]
pub struct FleetShared {
    store: FleetStore,
    tokens: TokenStore,
    key: TokenKey,
    profile: String,
    /// What the keys and the lease are derived from: the profile's name and its STS call's
    /// fingerprint, so a reloaded profile never takes a token minted for its old call.
    keyed: String,
    clock: Clock,
    /// Tokens stored before this moment are not published again (the kill switch cleared them).
    not_before: Mutex<Option<DateTime<Utc>>>,
    /// The next attempt follows a clear: it fetches at once rather than wait for the holder,
    /// whose new token may have been stored before this replica heard of the change.
    cleared: AtomicBool,
}

impl FleetShared {
    /// Starts holding (or waiting for) `profile`'s lease until `cancel` fires. `keyed` names
    /// the profile's version in the store (its name and its STS call's fingerprint).
    pub fn start(
        store: FleetStore,
        profile: String,
        keyed: String,
        clock: Clock,
        cancel: CancellationToken,
    ) -> Arc<Self> {
        let tokens = TokenStore::new(store.clone(), SingleFlight::default());
        let shared = Arc::new(Self {
            key: tokens.shared_key(&keyed),
            tokens,
            store,
            profile,
            keyed,
            clock,
            not_before: Mutex::new(None),
            cleared: AtomicBool::new(false),
        });
        tokio::spawn(hold_lease(shared.clone(), cancel));
        shared
    }

    /// The stored token, when there is one this replica may publish now; `Err` when the store
    /// does not answer. A value that does not open counts as none (and is replaced).
    async fn read(&self) -> Result<Option<Fresh<Arc<Token>>>, ()> {
        match self.tokens.get(&self.key).await {
            Ok(stored) => Ok(stored.and_then(|plaintext| self.restore(plaintext.expose_secret()))),
            Err(error) if error.is_down() => Err(()),
            Err(error) => {
                tracing::warn!(profile = %self.profile, %error, "the stored shared token is refused; it is fetched again");
                Ok(None)
            }
        }
    }

    fn restore(&self, plaintext: &[u8]) -> Option<Fresh<Arc<Token>>> {
        let restored = stored::restore(plaintext, &self.clock)?;
        let not_before = *self
            .not_before
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if not_before.is_some_and(|not_before| restored.stored_at < not_before) {
            return None;
        }
        (restored.fresh.serve_until > Instant::now()).then_some(restored.fresh)
    }

    /// Stores `fresh` for the others until it stops being servable. A failed write costs the
    /// others a fetch of their own, never this replica its token.
    async fn put(&self, fresh: &Fresh<Arc<Token>>) {
        let now = self.clock.now();
        let plaintext = stored::plaintext(&fresh.value, fresh.serve_until, fresh.refresh_at, now);
        let ttl = ttl_until(stored::wall(fresh.serve_until, now), now);
        let (Some(plaintext), Some(ttl)) = (plaintext, ttl) else {
            return;
        };
        if let Err(error) = self.tokens.put(&self.key, &plaintext, ttl).await {
            tracing::warn!(profile = %self.profile, %error, "could not store the shared token for the other replicas");
        }
    }

    /// Publishes a stored token: read again a little after the holder renews it.
    fn follow(&self, stored: Fresh<Arc<Token>>) -> Fresh<Arc<Token>> {
        metrics::record_fleet_shared_token(&self.profile, FleetTokenSource::Stored);
        let lag = FOLLOW_LAG.mul_f64(1.0 + rand::random::<f64>());
        Fresh {
            refresh_at: (stored.refresh_at + lag).min(stored.serve_until),
            ..stored
        }
    }

    async fn fetch(
        &self,
        fetch: FreshFuture<'_>,
        source: FleetTokenSource,
    ) -> Result<Fresh<Arc<Token>>, RefreshError> {
        let fresh = fetch.await?;
        metrics::record_fleet_shared_token(&self.profile, source);
        if source == FleetTokenSource::Fetched {
            self.put(&fresh).await;
        }
        Ok(fresh)
    }

    /// Waits (bounded) for the lease holder's new token. When it does not come, `last` (the
    /// stored token) is published again while servable and looked at again soon.
    async fn wait_for_holder(
        &self,
        mut last: Option<Fresh<Arc<Token>>>,
    ) -> Option<Fresh<Arc<Token>>> {
        let deadline = Instant::now() + HOLDER_WAIT;
        while Instant::now() < deadline {
            let pause = POLL.mul_f64(0.5 + rand::random::<f64>());
            tokio::time::sleep_until((Instant::now() + pause).min(deadline)).await;
            match self.read().await {
                Ok(Some(stored)) if stored.refresh_at > Instant::now() => {
                    return Some(self.follow(stored));
                }
                Ok(Some(stored)) => last = Some(stored),
                Ok(None) => {}
                Err(()) => return None,
            }
        }
        let stored = last.filter(|stored| stored.serve_until > Instant::now())?;
        tracing::debug!(profile = %self.profile, "the shared token's lease holder is late; publishing the stored token meanwhile");
        metrics::record_fleet_shared_token(&self.profile, FleetTokenSource::Stored);
        Some(Fresh {
            refresh_at: (Instant::now() + LOOK_AGAIN).min(stored.serve_until),
            ..stored
        })
    }

    async fn next(&self, fetch: FreshFuture<'_>) -> Result<Fresh<Arc<Token>>, RefreshError> {
        if !self.store.is_up() || self.cleared.swap(false, Ordering::AcqRel) {
            // Down a moment ago: not worth a bounded wait. The health ping notices its return.
            return self.fetch(fetch, FleetTokenSource::Local).await;
        }
        let Ok(stored) = self.read().await else {
            return self.fetch(fetch, FleetTokenSource::Local).await;
        };
        if let Some(stored) = stored {
            if stored.refresh_at > Instant::now() {
                return Ok(self.follow(stored));
            }
            return self.due(Some(stored), fetch).await;
        }
        self.due(None, fetch).await
    }

    /// The stored token is due or missing: the lease holder fetches, the others wait for it.
    async fn due(
        &self,
        stored: Option<Fresh<Arc<Token>>>,
        fetch: FreshFuture<'_>,
    ) -> Result<Fresh<Arc<Token>>, RefreshError> {
        match self.tokens.lease(&self.keyed, LEASE_TTL).await {
            Ok(true) => self.fetch(fetch, FleetTokenSource::Fetched).await,
            Ok(false) => match self.wait_for_holder(stored).await {
                Some(fresh) => Ok(fresh),
                None => self.fetch(fetch, FleetTokenSource::Local).await,
            },
            Err(_) => self.fetch(fetch, FleetTokenSource::Local).await,
        }
    }
}

impl FarShared for FleetShared {
    fn obtain<'a>(&'a self, fetch: FreshFuture<'a>) -> FreshFuture<'a> {
        Box::pin(self.next(fetch))
    }

    fn clear(&self) {
        *self
            .not_before
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(self.clock.now());
        self.cleared.store(true, Ordering::Release);
    }
}

/// Takes the profile's lease when it is free and renews it while held, until `cancel` fires;
/// then gives it up, so that another replica takes over at once rather than after
/// [`LEASE_TTL`]. Every command is bounded by the store's command timeout.
async fn hold_lease(shared: Arc<FleetShared>, cancel: CancellationToken) {
    let mut ticks = tokio::time::interval(LEASE_EVERY);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            _ = ticks.tick() => {
                if shared.store.is_up() {
                    let _ = shared.tokens.lease(&shared.keyed, LEASE_TTL).await;
                }
            }
        }
    }
    let _ = shared.tokens.release_lease(&shared.keyed).await;
}
